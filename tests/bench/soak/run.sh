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
# With TASKS above 0 the fleet also runs tasks (the load generator's steady
# task mode: no crash, no partition): TASKS tasks submitted once the fleet is
# registered, each checkpointed by its agent every CKPT_MS and completed
# (POST .../complete) after STEPS checkpoints, when the load generator
# submits a new one, so TASKS stay live while tasks churn. The engine keeps
# finished tasks RETENTION seconds (fault_tolerance.tasks.retention), so the
# pruning of finished tasks, the raft log's compaction (snapshots) and the
# task table are exercised the whole time. The warm-up then lasts
# 60 + 2 x RETENTION s (the finished tasks pile up for a retention before
# pruning holds them level), and the sampler also records, from /metrics,
# the engine's tasks (recoveryd_tasks, all states and the unfinished ones),
# the raft log's bytes since the newest snapshot, the tasks pruned and the
# snapshots taken. More checks then:
#
#   tasks        the engine's task count (all states) rises under
#                TASKS_MAX_PCT_H % of its fitted start per hour (10)
#   raft log     bytes since the last snapshot under LOG_MAX_MIB_H MiB per
#                hour (32), and some snapshot and some pruning took place
#   completions  the mean completions/s of the last third of the windows
#                within 10% of the first third's
#   checkpoints  none lost (the load generator: no task handed over below a
#                version acknowledged before), no 5xx answer to any request
#
# PASS/FAIL per series and in all; exit 1 on any FAIL. `make soak` runs it
# (DURATION=3600 unless given; TASKS, CKPT_MS, STEPS, RETENTION passed
# through). The samples are kept in SAMPLES (a file) if set.
#
#   DURATION=1200 NICE=-10 tests/bench/soak/run.sh
#   AGENTS=1000 TASKS=10000 CKPT_MS=10000 STEPS=10 RETENTION=120 tests/bench/soak/run.sh
#
# Environment as tests/bench/scale/run.sh: AGENTS, WARMUP (60, with tasks
# 60 + 2 x RETENTION), DURATION (3600), NICE, BUILD, ENGINE_LOG; and SAMPLE
# (10, seconds), TASKS (0), CKPT_MS (10000), STEPS (10; 0: tasks never
# end), RETENTION (120, seconds).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../scale/engine.sh
. tests/bench/scale/engine.sh
AGENTS=${AGENTS:-2000}
TASKS=${TASKS:-0}
CKPT_MS=${CKPT_MS:-10000}
STEPS=${STEPS:-10}
RETENTION=${RETENTION:-120}
if [ "$TASKS" -gt 0 ]; then WARMUP=${WARMUP:-$((60 + 2 * RETENTION))}; else WARMUP=${WARMUP:-60}; fi
DURATION=${DURATION:-3600}
SAMPLE=${SAMPLE:-10}
RSS_MAX_MIB_H=${RSS_MAX_MIB_H:-16}
FDS_MAX_H=${FDS_MAX_H:-8}
DISK_MAX_MIB_H=${DISK_MAX_MIB_H:-64}
TASKS_MAX_PCT_H=${TASKS_MAX_PCT_H:-10}
LOG_MAX_MIB_H=${LOG_MAX_MIB_H:-32}

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
task_args=()
if [ "$TASKS" -gt 0 ]; then
    # fault_tolerance is the configuration's last section: finished tasks
    # are pruned RETENTION s after they ended.
    printf '  tasks:\n    retention: %ss\n' "$RETENTION" >>"$WORK/rd.yaml"
    task_args=(--tasks "$TASKS" --ckpt-ms "$CKPT_MS" --task-steps "$STEPS" --crash-share 0
        --partition-share 0)
fi
# shellcheck disable=SC2119 # the engine takes no arguments here
bench_start_engine

echo "recoveryd soak: $AGENTS agents, warm-up ${WARMUP} s, ${DURATION} s measured, a sample" \
    "every ${SAMPLE} s, nice $NICE; $(bench_cores), $(bench_now)"
if [ "$TASKS" -gt 0 ]; then
    echo "tasks: $TASKS live, a checkpoint every $CKPT_MS ms, completed after $STEPS" \
        "checkpoints and replaced; finished tasks retained $RETENTION s"
fi
echo "engine built from $(bench_commit)"
echo "load average before: $(bench_loadavg); scheduling group: $(cat /proc/self/autogroup 2>/dev/null || echo none)"

# What /metrics says: the engine's tasks in all states, the unfinished
# ones, the raft log's bytes since the newest snapshot, the tasks pruned, the
# snapshots taken ("- - - - -" when it did not answer).
metrics() {
    { curl -s --max-time 5 "http://127.0.0.1:$RD_PORT/metrics" 2>/dev/null || true; } | awk '
        /^recoveryd_tasks\{/ { all += $2; if ($1 !~ /completed|failed|cancelled/) live += $2; n++ }
        /^recoveryd_raft_log_bytes_since_snapshot / { lb = $2 }
        /^recoveryd_tasks_pruned_total / { pruned = $2 }
        /^recoveryd_raft_snapshots_total\{/ { snaps += $2 }
        END { if (n) print all, live, lb + 0, pruned + 0, snaps + 0; else print "- - - - -" }'
}

# One line per sample: seconds since the start, RSS KiB, open fds, data
# bytes; then the five figures of metrics() when there are tasks. Every
# command may fail (errexit and pipefail hold here too): du when a snapshot
# replaces a file under it, curl when the engine does not answer within 5 s
# (a storage stall); before, either ended the sampler for the rest of the run.
sampler() {
    local t0=$SECONDS rss fds disk more
    while kill -0 "$RD_PID" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$RD_PID/status" 2>/dev/null || true)
        fds=$(find "/proc/$RD_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l || true)
        disk=$({ du -sb "$WORK/rd-data" 2>/dev/null || true; } | cut -f1)
        more=""
        if [ "$TASKS" -gt 0 ]; then more=" $(metrics)"; fi
        if [ -n "$rss" ]; then
            echo "$((SECONDS - t0)) $rss $fds ${disk:-0}$more" >>"$WORK/samples"
        fi
        sleep "$SAMPLE"
    done
}
sampler &
bench_track $!

bench_cpu_start "$RD_PID"
rc=0
bench_run "$WORK/loadgen.out" timeout -k 10 $((WARMUP + DURATION + 420)) \
    "$BUILD_DIR/bin/bench_scale_loadgen" --url "http://127.0.0.1:$RD_PORT" --agents "$AGENTS" \
    --warmup "$WARMUP" --duration "$DURATION" --engine-pid "$RD_PID" "${task_args[@]}" "$@" ||
    rc=$?
cat "$WORK/loadgen.out"
bench_cpu_report "$RD_PID"
echo "load average after: $(bench_loadavg)"
if [ "$rc" -ne 0 ]; then
    echo "FAIL the load generator exited with $rc"
    exit 1
fi

# fit COLUMN SCALE FROM < "x y..." lines: the least-squares slope of column
# COLUMN (times SCALE) against column 1 over the lines with x >= FROM (and a
# value in that column), per hour; then the first and last fitted values.
fit() {
    awk -v c="$1" -v k="$2" -v from="$3" '
        $1 >= from && $c != "-" && $c != "" { x = $1; y = $c * k; n++; sx += x; sy += y; sxx += x * x; sxy += x * y
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

# Samples from the end of the warm-up on: the load generator registers the
# fleet (and submits the tasks and waits for them all to run) first, as its
# setup line says, then warms up.
setup=$(sed -n 's/^setup: [0-9]* agents registered in \([0-9.]*\) s.* running \([0-9.]*\) s after registration.*/\1 \2/p' \
    "$WORK/loadgen.out" | awk '{ printf "%d", $1 + $2 + 1 }')
from=$((WARMUP + ${setup:-0} + 10))
ok=0
check "engine RSS" MiB "$RSS_MAX_MIB_H" "$(fit 2 0.0009765625 "$from" <"$WORK/samples")" || ok=1
check "open descriptors" fds "$FDS_MAX_H" "$(fit 3 1 "$from" <"$WORK/samples")" || ok=1
check "data directory" MiB "$DISK_MAX_MIB_H" "$(fit 4 0.00000095367431640625 "$from" \
    <"$WORK/samples")" || ok=1
# The load generator's window lines: "  0-10  sent/s ok/s p99 sock-p99 max RSS".
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
if [ "$TASKS" -gt 0 ]; then
    # The task table: its rise per hour against TASKS_MAX_PCT_H % of its level.
    read -r slope first last n <<<"$(fit 5 1 "$from" <"$WORK/samples")"
    tlimit=$(awk -v f="$first" -v p="$TASKS_MAX_PCT_H" 'BEGIN { printf "%.0f", f * p / 100 }')
    check "engine tasks (all states)" tasks "$tlimit" "$slope $first $last $n" || ok=1
    awk -v from="$from" '$1 >= from && $5 != "-" {
            if (!n++ || $5 < lo) lo = $5; if ($5 > hi) hi = $5
            if (!m || $6 < llo) llo = $6; if ($6 > lhi) lhi = $6; m++ }
        END { printf "  tasks in the engine: %d to %d (unfinished %d to %d) over %d samples\n", lo, hi, llo, lhi, n }' \
        "$WORK/samples"
    check "raft log since the last snapshot" MiB "$LOG_MAX_MIB_H" \
        "$(fit 7 0.00000095367431640625 "$from" <"$WORK/samples")" || ok=1
    # Pruning and snapshots took place during the measurement.
    read -r pruned snaps logmax <<<"$(awk -v from="$from" '$1 >= from && $5 != "-" {
            if (!n++) { p0 = $8; s0 = $9 } p1 = $8; s1 = $9; if ($7 > lm) lm = $7 }
        END { printf "%d %d %.1f\n", p1 - p0, s1 - s0, lm / 1048576 }' "$WORK/samples")"
    if [ "${pruned:-0}" -gt 0 ] && [ "${snaps:-0}" -gt 0 ]; then
        echo "PASS retention and compaction at work: $pruned finished tasks pruned, $snaps" \
            "snapshots taken during the measurement (the log since a snapshot at most $logmax MiB)"
    else
        echo "FAIL retention or compaction idle: ${pruned:-0} finished tasks pruned, ${snaps:-0}" \
            "snapshots taken during the measurement"
        ok=1
    fi
    # Completions/s of the windows (the column after ckpt/s, the last but
    # one of a window's line: counted from the end, since the loop's and
    # the socket's columns came before it; $8 read the loop's wait since
    # those): the last third's mean within 10% of the first third's.
    awk '$1 ~ /^[0-9]+-[0-9]+$/ { print $(NF - 1) }' "$WORK/loadgen.out" >"$WORK/done"
    n=$(wc -l <"$WORK/done")
    third=$((n / 3))
    mean() { awk '{ s += $1 } END { printf "%.1f", NR ? s / NR : 0 }'; }
    c1=$(head -n "$third" "$WORK/done" | mean)
    c3=$(tail -n "$third" "$WORK/done" | mean)
    if [ "$third" -ge 1 ] && awk -v a="$c1" -v b="$c3" 'BEGIN { exit !(a > 0 && b >= 0.9 * a && b <= 1.1 * a) }'; then
        echo "PASS completions steady: $c1/s in the first third, $c3/s in the last ($n windows; limit +/- 10%)"
    else
        echo "FAIL completions not steady: $c1/s in the first third, $c3/s in the last ($n windows; limit +/- 10%)"
        ok=1
    fi
    # The load generator's own verdicts: no checkpoint lost, no 5xx.
    for what in "no acknowledged checkpoint lost" "no 5xx answer"; do
        if ! grep -q "^PASS $what" "$WORK/loadgen.out"; then ok=1; fi
    done
    grep -E '^(PASS|FAIL) no (acknowledged checkpoint lost|5xx answer)' "$WORK/loadgen.out" || true
fi
echo "engine log: $(grep -c 'node_failed' "$WORK/rd.log" || true) node_failed lines," \
    "$(grep -c 'level=error' "$WORK/rd.log" || true) errors; warnings: $(bench_log_events "$WORK/rd.log")"
if [ "$ok" -eq 0 ]; then echo "PASS soak"; else echo "FAIL soak"; fi
exit "$ok"
