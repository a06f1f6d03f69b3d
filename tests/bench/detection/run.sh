#!/bin/bash
# Fault detection: 1,000 simulated agents heartbeating every 500 ms (+/- 100
# ms of jitter) over HTTP/2 against one recoveryd, with its heartbeat,
# health_probe, metrics and log plugins. After the warm-up 10% crash, 5% hang
# and 5% degrade; the load generator (loadgen.c) prints, per kind, the time
# from the injection to suspect, to the fault record and to isolation, the
# false failures among the healthy 80%, and PASS/FAIL per target. This
# script prints the engine's CPU time on top.
#
#   tests/bench/detection/run.sh [LOADGEN OPTIONS...]
#   WARMUP=30 DURATION=600 tests/bench/detection/run.sh     (the defaults)
#
# Environment: WARMUP, DURATION (seconds), AGENTS (1000), PROBE_INTERVAL
# (the health_probe plugin's interval, 500ms), NICE (see below), BUILD
# (build-bench), DUMP (a file for one line per agent), ENGINE_LOG (a file to
# keep the engine's log in).
#
# Targets (issue 3): crash failed within 1.6 s p99 and suspect within 1 s,
# 0 false failures over 10 minutes, a predicted fault for the degrading
# group before any of them fails.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
WARMUP=${WARMUP:-30}
DURATION=${DURATION:-600}
AGENTS=${AGENTS:-1000}
PROBE_INTERVAL=${PROBE_INTERVAL:-500ms}
# On a shared machine, NICE=-10 (as root) runs the engine and the load
# generator ahead of everything else; 0 (the default) leaves priorities alone.
NICE=${NICE:-0}

scripts/bootstrap --bench
BUILD=${BUILD:-build-bench}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target recoveryd heartbeat health_probe metrics log \
    webhook bench_detection_loadgen >/dev/null

WORK=$(mktemp -d /tmp/rd-bench-det.XXXXXX)
RD_PID=""
LG_PID=""
cleanup() {
    for p in $LG_PID $RD_PID; do kill "$p" 2>/dev/null || true; done
    for p in $LG_PID $RD_PID; do wait "$p" 2>/dev/null || true; done
    if [ -n "${ENGINE_LOG:-}" ] && [ -f "$WORK/rd.log" ]; then cp "$WORK/rd.log" "$ENGINE_LOG"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    # Ask the kernel for a free loopback port (bash's /dev/tcp cannot bind).
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

wait_http() {
    local url=$1 i
    for i in $(seq 1 300); do
        curl -sf -o /dev/null "$url" && return 0
        sleep 0.05
    done
    echo "bench: $url did not come up" >&2
    tail -20 "$WORK/rd.log" >&2 || true
    exit 1
}

# User + system CPU seconds of the whole process (threads that ended included).
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' \
        "/proc/$1/stat"
}

# Busy and total jiffies of the whole machine (all cores), from /proc/stat.
machine_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

# One agent per port, plus the probes' connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

RD_PORT=$(free_port)
RAFT_PORT=$(free_port)
cat >"$WORK/rd.yaml" <<YAML
cluster:
  raft_address: 127.0.0.1:$RAFT_PORT
logging:
  level: warn
plugins:
  instances:
    - name: heartbeat
      required: true
    - name: health_probe
      config:
        interval: $PROBE_INTERVAL
    - name: metrics
    - name: log
fault_tolerance:
  detection:
    heartbeat_interval: 500ms
    health_check_timeout: 1s
    failure_threshold: 3
    recovery_threshold: 2
YAML
nice -n "$NICE" "$BUILD/bin/recoveryd" --config "$WORK/rd.yaml" --listen "127.0.0.1:$RD_PORT" \
    --data-dir "$WORK/rd-data" --plugins-dir "$ROOT/$BUILD/plugins" 2>"$WORK/rd.log" &
RD_PID=$!
wait_http "http://127.0.0.1:$RD_PORT/ready"

echo "recoveryd fault detection benchmark: $AGENTS agents, warm-up ${WARMUP} s, ${DURATION} s" \
    "after the faults, health probes every $PROBE_INTERVAL, nice $NICE; $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(date -u +%FT%TZ)"
LG_ARGS=(--url "http://127.0.0.1:$RD_PORT" --agents "$AGENTS" --warmup "$WARMUP"
    --duration "$DURATION")
[ -n "${DUMP:-}" ] && LG_ARGS+=(--dump "$DUMP")
echo "engine built from $(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "($(git status --porcelain 2>/dev/null | grep -vc '^??' || true) files modified in the tree)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cpu0=$(cpu_s "$RD_PID")
read -r busy0 total0 < <(machine_jiffies)
t0=$(date +%s.%N)
# Bounded: the run itself plus three minutes for registration and the report.
timeout -k 10 $((WARMUP + DURATION + 180)) nice -n "$NICE" "$BUILD/bin/bench_detection_loadgen" "${LG_ARGS[@]}" \
    "$@" &
LG_PID=$!
rc=0
wait "$LG_PID" || rc=$?
LG_PID=""
cpu1=$(cpu_s "$RD_PID")
read -r busy1 total1 < <(machine_jiffies)
t1=$(date +%s.%N)
awk -v c0="$cpu0" -v c1="$cpu1" -v t0="$t0" -v t1="$t1" 'BEGIN {
    printf "recoveryd CPU during the run: %.1f s (user + system) over %.0f s of wall time: %.1f%% of one core\n",
        c1 - c0, t1 - t0, 100 * (c1 - c0) / (t1 - t0) }'
# The machine is shared: say how busy it was in all (recoveryd, the load
# generator, and anything else that ran meanwhile).
awk -v b0="$busy0" -v b1="$busy1" -v a0="$total0" -v a1="$total1" -v n="$(nproc)" 'BEGIN {
    printf "machine CPU during the run: %.2f of %d cores busy on average\n", n * (b1 - b0) / (a1 - a0), n }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Stop the engine (bounded), then look at what it logged.
kill -TERM "$RD_PID" 2>/dev/null || true
for _ in $(seq 1 150); do kill -0 "$RD_PID" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$RD_PID" 2>/dev/null || true
wait "$RD_PID" 2>/dev/null || true
RD_PID=""
echo "engine log: $(grep -c 'node_failed' "$WORK/rd.log" || true) node_failed lines," \
    "$(grep -c 'partition_suspected' "$WORK/rd.log" || true) partition_suspected," \
    "$(grep -c 'level=error' "$WORK/rd.log" || true) errors"
exit "$rc"
