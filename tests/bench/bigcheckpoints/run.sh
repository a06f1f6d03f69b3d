#!/bin/bash
# Max-size checkpoints: writes per second and p50/p99 latency of checkpoints
# of the API's largest size (512 KiB of data) on 3 recoveryd replicas (raft,
# fsync on every commit, data dirs on the real disk), at 1, 4 and 16 writes
# in flight (tests/bench/replication's load generator), with at the same time
# an agent's heartbeats (curl, HB_RATE a second) timed from send to answer,
# and every replica's resident memory (VmRSS) sampled every 0.5 s. The
# reference, in the same run and on the same disk: `dd oflag=dsync bs=512k`
# (each 512-KiB write reaches the disk before the next), before and after
# the cluster's run. All three replicas write to that one disk: every
# checkpoint is written three times.
#
#   tests/bench/bigcheckpoints/run.sh
#   DURATION=5 LEVELS=1,16 tests/bench/bigcheckpoints/run.sh        (a quick run)
#   RD_CONFIG_EXTRA=$'storage:\n  snapshot_threshold_bytes: 0\n  snapshot_trailing_bytes: 0' \
#       tests/bench/bigcheckpoints/run.sh       (the log bounded by entries only, as before)
#
# Environment: DURATION (10 s measured per level), WARMUP (1 s), LEVELS
# (1,4,16), SIZE (524288: bytes of checkpoint data as JSON), HB_RATE (20
# heartbeats a second), STREAMS (4 writes per HTTP/2 connection at most: the
# engine cuts a connection buffering more than server.edge.max_body_buffered,
# 4 MiB, of request bodies), DD_COUNT (200 writes of 512 KiB per dd run), NICE,
# BUILD (build-bench), KEEP_LOGS (a directory to copy the replicas' logs,
# the load generator's and heartbeats' output and rss.tsv to), RD_CONFIG_EXTRA (YAML appended to every replica's
# configuration). Run it under `flock /tmp/rd-bench.lock`.
# tests/bench/lib/common.sh does what every benchmark's script does.
#
# Targets (issue 16): every replica's VmRSS under 512 MiB all along; the
# checkpoints' bytes written to the disk per second (writes/s x size x 3
# replicas) compared with dd's fsync'd rate. Exit status: 0 when the run
# took place, 3 when an acknowledged checkpoint version was missing at the
# end, 1 on a setup error.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
LEVELS=${LEVELS:-1,4,16}
SIZE=${SIZE:-524288}
HB_RATE=${HB_RATE:-20}
STREAMS=${STREAMS:-4}
DD_COUNT=${DD_COUNT:-200}
RSS_LIMIT_MIB=512

scripts/bootstrap --bench
bench_build recoveryd heartbeat health_probe metrics log bench_replication_loadgen
bench_workdir bigckpt disk
# shellcheck disable=SC2317 # run at exit by common.sh
bench_on_exit() {
    if [ -n "${KEEP_LOGS:-}" ]; then
        mkdir -p "$KEEP_LOGS"
        cp "$WORK"/*.log "$WORK"/*.out "$WORK"/rss.tsv "$KEEP_LOGS"/ 2>/dev/null || true
    fi
}

# dd_rate: one fsync'd sequential write of DD_COUNT x 512 KiB in WORK:
# "writes/s MB/s".
dd_rate() {
    local out
    out=$(dd if=/dev/zero of="$WORK/dd.bin" bs=512k count="$DD_COUNT" oflag=dsync 2>&1 | tail -1)
    rm -f "$WORK/dd.bin"
    # "104857600 bytes (105 MB, 100 MiB) copied, 2.5 s, 41.9 MB/s"
    awk -v n="$DD_COUNT" '{ s = $(NF - 3); b = $1; printf "%.1f %.1f\n", n / s, b / s / 1e6 }' <<<"$out"
}

# rss_watch: every 0.5 s, seconds since the start and each replica's VmRSS
# in KiB (0 once gone), one line into rss.tsv.
rss_watch() {
    local t0 i line
    t0=$(date +%s.%N)
    while :; do
        line=$(awk -v t0="$t0" -v t="$(date +%s.%N)" 'BEGIN { printf "%.1f", t - t0 }')
        for i in 1 2 3; do
            line="$line $(awk '/^VmRSS:/ { print $2; f = 1 } END { if (!f) print 0 }' \
                "/proc/${RD_PIDS[i]}/status" 2>/dev/null || echo 0)"
        done
        echo "$line" >>"$WORK/rss.tsv"
        sleep 0.5
    done
}

bench_raise_nofile
echo "== max-size checkpoints: recoveryd (3 replicas) against the disk's fsync'd write rate =="
echo "machine: $(bench_cores), $(free -g | awk '/^Mem:/ { print $2 }') GiB;" \
    "data dirs on $(stat -f -c %T "$WORK") ($WORK, $(df -P "$WORK" | awk 'NR == 2 { print $1 }')); $(bench_now)"
echo "recoveryd built from $(bench_commit), Release; raft $(bench_raft_version)"
echo "levels $LEVELS in flight, ${DURATION} s each after ${WARMUP} s of warm-up, ${SIZE}-byte" \
    "checkpoint data; heartbeats $HB_RATE/s; nice $NICE"
[ -z "${RD_CONFIG_EXTRA:-}" ] || echo "recoveryd configuration added to the defaults: $(tr '\n' ' ' <<<"$RD_CONFIG_EXTRA")"
echo "load average before: $(bench_loadavg)"
read -r DD1_W DD1_MB < <(dd_rate)
echo "dd oflag=dsync bs=512k count=$DD_COUNT, before: $DD1_W writes/s, $DD1_MB MB/s"
echo

# Agents judged on a 5-s heartbeat interval: a heartbeat late under this load
# must not fence the probe or the load generator's agent (409 from then on).
bench_cluster_config 3 "$(printf 'fault_tolerance:\n  detection:\n    heartbeat_interval: 5s\n%s' "${RD_CONFIG_EXTRA:-}")"
for i in 1 2 3; do bench_start_replica "$i"; done
for i in 1 2 3; do bench_wait_replica "$i"; done
LEADER=""
for _ in $(seq 1 100); do
    for i in 1 2 3; do
        if curl -sf --max-time 1 "${RD_URLS[i]}/health" | grep -q '"role":"leader"'; then
            LEADER=$i
            break 2
        fi
    done
    sleep 0.1
done
[ -n "$LEADER" ] || { echo "bench: no replica leads" >&2; exit 1; }

# The heartbeat probe: its own agent on the leader (drained), heartbeats at HB_RATE/s
# over one kept-alive connection (curl --rate), each one's time printed.
HB_URL="${RD_URLS[LEADER]}/api/v1/nodes/bench-hb-probe"
epoch=$(curl -sf -X POST -H 'Content-Type: application/json' \
    -d '{"node_id":"bench-hb-probe","capacity":{"slots":1},"labels":{"role":"probe"}}' \
    "${RD_URLS[LEADER]}/api/v1/nodes" | sed -n 's/.*"epoch":\([0-9]*\).*/\1/p')
[ -n "$epoch" ] || { echo "bench: the heartbeat probe could not register" >&2; exit 1; }
# Drained: it heartbeats, and the load generator's tasks never land on it.
curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d '{}' "$HB_URL/drain" ||
    { echo "bench: the heartbeat probe could not be drained" >&2; exit 1; }
n_levels=$(tr ',' '\n' <<<"$LEVELS" | wc -l)
hb_n=$((HB_RATE * (n_levels * (DURATION + WARMUP + 10) + 30)))
for _ in $(seq 1 "$hb_n"); do printf 'url = "%s/heartbeat"\noutput = "/dev/null"\n' "$HB_URL"; done >"$WORK/hb.curl"

: >"$WORK/rss.tsv"
rss_watch &
RSS_PID=$!
bench_track "$RSS_PID"
curl -s --rate "$HB_RATE/s" -X POST -H 'Content-Type: application/json' \
    -d "{\"epoch\":$epoch,\"load\":{\"slots_used\":0}}" \
    -w '%{http_code} %{time_total}\n' --config "$WORK/hb.curl" >"$WORK/hb.out" 2>/dev/null &
HB_PID=$!
bench_track "$HB_PID"

echo "-- recoveryd: max-size checkpoints (PUT /api/v1/tasks/{id}/checkpoint) to the leader rd$LEADER, HTTP/2 --"
rc=0
bench_run "$WORK/rd.out" "$BUILD_DIR/bin/bench_replication_loadgen" --target recoveryd \
    --levels "$LEVELS" --duration "$DURATION" --warmup "$WARMUP" --size "$SIZE" --streams "$STREAMS" \
    --url "${RD_URLS[1]}" --url "${RD_URLS[2]}" --url "${RD_URLS[3]}" \
    --pid "${RD_PIDS[1]}" --pid "${RD_PIDS[2]}" --pid "${RD_PIDS[3]}" || rc=$?
bench_stop "$HB_PID" "$RSS_PID"
grep -v '^RESULT' "$WORK/rd.out" || true
if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
    echo "bench: the load generator failed ($rc)" >&2
    for i in 1 2 3; do tail -5 "$WORK/rd$i.log" >&2; done
    exit 1
fi
for i in 1 2 3; do
    snaps=$(curl -sf --max-time 5 "${RD_URLS[i]}/metrics" |
        awk '/^recoveryd_raft_snapshots_total\{how="forked"\}/ { f = $2 }
             /^recoveryd_raft_snapshots_on_bytes_total / { b = $2 }
             END { printf "%d snapshots (%d on the byte threshold)", f, b }' || echo "?")
    echo "rd$i: $snaps; peak VmRSS $(awk '/^VmHWM:/ { printf "%.1f MiB", $2 / 1024 }' "/proc/${RD_PIDS[i]}/status" 2>/dev/null || echo n/a)"
done
bench_stop "${RD_PIDS[@]}"
for i in 1 2 3; do
    what=$(bench_log_events "$WORK/rd$i.log")
    echo "rd$i log: ${what:-no warnings or errors}"
done
read -r DD2_W DD2_MB < <(dd_rate)
echo "dd oflag=dsync bs=512k count=$DD_COUNT, after: $DD2_W writes/s, $DD2_MB MB/s"
echo "load average after: $(bench_loadavg)"

echo
echo "== VmRSS over time (MiB; every 2 s) =="
awk 'NR % 4 == 1 { printf "%6.1f s  rd1 %7.1f  rd2 %7.1f  rd3 %7.1f\n", $1, $2 / 1024, $3 / 1024, $4 / 1024 }' \
    "$WORK/rss.tsv"
peak=$(awk '{ for (i = 2; i <= 4; i++) if ($i > m) m = $i } END { printf "%.1f", m / 1024 }' "$WORK/rss.tsv")

echo
echo "== heartbeats during the writes =="
sort -k2,2n "$WORK/hb.out" | awk '{ n++; if ($1 == 200) ok++; t[n] = $2 * 1000 }
     END {
        if (n == 0) { print "no heartbeat answered"; exit }
        i50 = int(n * 0.50); if (i50 < n * 0.50) i50++
        i99 = int(n * 0.99); if (i99 < n * 0.99) i99++
        printf "%d heartbeats (%d answered 200), from send to answer: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
            n, ok, t[i50], t[i99], t[n] }' \
    | tee "$WORK/hb.txt"

echo
echo "== results: ${SIZE}-byte checkpoints; latency from send to answer (ms) =="
printf '%-9s | %9s %8s %8s | %12s | %s\n' "in flight" "writes/s" "p50" "p99" "disk MB/s" "of dd's fsync'd MB/s (before / after)"
for n in ${LEVELS//,/ }; do
    r=$(grep "^RESULT target=recoveryd inflight=$n " "$WORK/rd.out" || true)
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
    awk -v n="$n" -v rr="$(field rate "$r")" -v r50="$(field p50_us "$r")" -v r99="$(field p99_us "$r")" \
        -v size="$SIZE" -v d1="$DD1_MB" -v d2="$DD2_MB" 'BEGIN {
        mb = rr * size * 3 / 1e6
        printf "%-9s | %9.1f %8.1f %8.1f | %12.1f | %.0f%% / %.0f%%\n", n, rr, r50 / 1000, r99 / 1000, mb,
            (d1 > 0 ? 100 * mb / d1 : 0), (d2 > 0 ? 100 * mb / d2 : 0)
    }'
done
echo "(disk MB/s: writes/s x ${SIZE} bytes x 3 replicas sharing the disk; raft adds its own framing)"
echo "peak VmRSS of any replica, sampled: $peak MiB (target under $RSS_LIMIT_MIB MiB):" \
    "$(awk -v p="$peak" -v l="$RSS_LIMIT_MIB" 'BEGIN { print (p < l ? "PASS" : "FAIL") }')"
exit "$rc"
