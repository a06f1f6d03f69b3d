#!/bin/bash
# Soak: a fleet (AGENTS, 2,000 by default) heartbeating every 500 ms against
# one recoveryd (the scale benchmark's engine and load generator,
# tests/bench/scale) for DURATION seconds (an hour by default), while this
# script samples the engine every SAMPLE seconds: resident memory (VmRSS),
# open descriptors (/proc/PID/fd) and the size of its data directory (raft
# log and snapshots). At the end a least-squares line is fitted to each
# series after the warm-up, and to the load generator's heartbeat p99 per
# 10-second window, and its rise over an hour is checked against a limit:
#
#   RSS     under RSS_MAX_MIB_H   MiB per hour (16)
#   fds     under FDS_MAX_H       descriptors per hour (8)
#   disk    under DISK_MAX_MIB_H  MiB per hour (64)
#
# The heartbeat p99 of a 10-s window jumps with the machine's other work, so
# a line through it extrapolates noise: instead the median of the windows'
# p99 in the last third of the run must stay under 1.5 times that of the
# first third plus 5 ms.
#
# PASS/FAIL per series and in all; exit 1 on any FAIL. `make soak` runs it
# (DURATION=3600 unless given). The samples are kept in SAMPLES (a file) if
# set.
#
#   DURATION=1200 NICE=-10 tests/bench/soak/run.sh
#
# Environment as tests/bench/scale/run.sh: AGENTS, WARMUP (60), DURATION
# (3600), NICE, BUILD, ENGINE_LOG; and SAMPLE (10, seconds).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../scale/engine.sh
. tests/bench/scale/engine.sh
AGENTS=${AGENTS:-2000}
WARMUP=${WARMUP:-60}
DURATION=${DURATION:-3600}
SAMPLE=${SAMPLE:-10}
RSS_MAX_MIB_H=${RSS_MAX_MIB_H:-16}
FDS_MAX_H=${FDS_MAX_H:-8}
DISK_MAX_MIB_H=${DISK_MAX_MIB_H:-64}

scripts/bootstrap --bench
bench_build recoveryd heartbeat health_probe metrics log webhook bench_scale_loadgen
bench_workdir soak disk
# shellcheck disable=SC2317 # run at exit by common.sh
bench_on_exit() {
    if [ -n "${ENGINE_LOG:-}" ] && [ -f "$WORK/rd.log" ]; then cp "$WORK/rd.log" "$ENGINE_LOG"; fi
    if [ -n "${SAMPLES:-}" ] && [ -f "$WORK/samples" ]; then cp "$WORK/samples" "$SAMPLES"; fi
}
bench_raise_nofile

bench_free_port RD_PORT
bench_free_port RAFT_PORT
# shellcheck disable=SC2153 # RAFT_PORT is set by bench_free_port
scale_engine_yaml "$WORK/rd.yaml" "$RAFT_PORT"
# shellcheck disable=SC2119 # the engine takes no arguments here
bench_start_engine

echo "recoveryd soak: $AGENTS agents, warm-up ${WARMUP} s, ${DURATION} s measured, a sample" \
    "every ${SAMPLE} s, nice $NICE; $(bench_cores), $(bench_now)"
echo "engine built from $(bench_commit)"
echo "load average before: $(bench_loadavg); scheduling group: $(cat /proc/self/autogroup 2>/dev/null || echo none)"

# One line per sample: seconds since the start, RSS KiB, open fds, data bytes.
sampler() {
    local t0=$SECONDS rss fds disk
    while kill -0 "$RD_PID" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$RD_PID/status" 2>/dev/null || echo "")
        fds=$(find "/proc/$RD_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        disk=$(du -sb "$WORK/rd-data" 2>/dev/null | cut -f1)
        if [ -n "$rss" ]; then echo "$((SECONDS - t0)) $rss $fds ${disk:-0}" >>"$WORK/samples"; fi
        sleep "$SAMPLE"
    done
}
sampler &
bench_track $!

bench_cpu_start "$RD_PID"
rc=0
bench_run "$WORK/loadgen.out" timeout -k 10 $((WARMUP + DURATION + 240)) \
    "$BUILD_DIR/bin/bench_scale_loadgen" --url "http://127.0.0.1:$RD_PORT" --agents "$AGENTS" \
    --warmup "$WARMUP" --duration "$DURATION" --engine-pid "$RD_PID" "$@" || rc=$?
cat "$WORK/loadgen.out"
bench_cpu_report "$RD_PID"
echo "load average after: $(bench_loadavg)"
if [ "$rc" -ne 0 ]; then
    echo "FAIL the load generator exited with $rc"
    exit 1
fi

# fit COLUMN SCALE FROM < "x y..." lines: the least-squares slope of column
# COLUMN (times SCALE) against column 1 over the lines with x >= FROM, per
# hour; then the first and last fitted values.
fit() {
    awk -v c="$1" -v k="$2" -v from="$3" '
        $1 >= from { x = $1; y = $c * k; n++; sx += x; sy += y; sxx += x * x; sxy += x * y
                     if (n == 1) x0 = x; x1 = x }
        END {
            if (n < 3 || sxx * n == sx * sx) { print "nan 0 0 0"; exit }
            b = (n * sxy - sx * sy) / (n * sxx - sx * sx); a = (sy - b * sx) / n
            printf "%.3f %.1f %.1f %d\n", b * 3600, a + b * x0, a + b * x1, n
        }'
}

# check NAME UNIT LIMIT "slope first last n": prints PASS/FAIL; 1 on FAIL.
check() {
    local name=$1 unit=$2 limit=$3 slope first last n
    read -r slope first last n <<<"$4"
    if [ "$slope" = nan ]; then
        echo "FAIL $name: too few samples ($n)"
        return 1
    fi
    if awk -v s="$slope" -v l="$limit" 'BEGIN { exit !(s < l) }'; then
        echo "PASS $name flat: $slope $unit per hour (fitted $first -> $last over $n samples; limit $limit)"
    else
        echo "FAIL $name grows: $slope $unit per hour (fitted $first -> $last over $n samples; limit $limit)"
        return 1
    fi
}

# Samples from the end of the warm-up on (the load generator registers the
# fleet first: a few seconds, counted in the warm-up).
from=$((WARMUP + 10))
ok=0
check "engine RSS" MiB "$RSS_MAX_MIB_H" "$(fit 2 0.0009765625 "$from" <"$WORK/samples")" || ok=1
check "open descriptors" fds "$FDS_MAX_H" "$(fit 3 1 "$from" <"$WORK/samples")" || ok=1
check "data directory" MiB "$DISK_MAX_MIB_H" "$(fit 4 0.00000095367431640625 "$from" \
    <"$WORK/samples")" || ok=1
# The load generator's window lines: "  0-10  sent/s ok/s p99 max RSS".
awk '$1 ~ /^[0-9]+-[0-9]+$/ { split($1, w, "-"); print w[1], $4 }' "$WORK/loadgen.out" \
    >"$WORK/p99"
# p99 of the windows: medians of the first and the last third.
median() { sort -n | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }'; }
n=$(wc -l <"$WORK/p99")
third=$((n / 3))
p1=$(head -n "$third" "$WORK/p99" | cut -d' ' -f2 | median)
p3=$(tail -n "$third" "$WORK/p99" | cut -d' ' -f2 | median)
if [ "$third" -lt 1 ]; then
    echo "FAIL heartbeat p99: too few windows ($n)"
    ok=1
elif awk -v a="$p1" -v b="$p3" 'BEGIN { exit !(b <= 1.5 * a + 5) }'; then
    echo "PASS heartbeat p99 flat: median of the window p99s $p1 ms in the first third, $p3 ms in the last ($n windows; limit 1.5 x + 5 ms)"
else
    echo "FAIL heartbeat p99 grows: median of the window p99s $p1 ms in the first third, $p3 ms in the last ($n windows; limit 1.5 x + 5 ms)"
    ok=1
fi
echo "engine log: $(grep -c 'node_failed' "$WORK/rd.log" || true) node_failed lines," \
    "$(grep -c 'level=error' "$WORK/rd.log" || true) errors; warnings: $(bench_log_events "$WORK/rd.log")"
if [ "$ok" -eq 0 ]; then echo "PASS soak"; else echo "FAIL soak"; fi
exit "$ok"
