#!/bin/bash
# Task recovery: 200 simulated agents with 10 tasks each, checkpointing every
# second over HTTP/2 against one recoveryd (its heartbeat, health_probe,
# metrics and log plugins, the policies in policies/). After the warm-up 20%
# of the agents crash at once (no heartbeats, their health endpoint refuses
# connections; they stay as zombies that go on writing with their old
# attempt). The load generator (loadgen.c) prints the time from the crash to
# each moved task's assignment reaching its new agent and to its first
# checkpoint there, tasks and acknowledged checkpoint versions lost, tasks
# completed by two attempts, the healthy agents' checkpoint throughput during
# the recovery as a share of before, and PASS/FAIL per target. This script
# prints the engine's CPU time and what its log says on top.
#
#   tests/bench/recovery/run.sh [LOADGEN OPTIONS...]
#   AGENTS=50 WARMUP=10 DURATION=15 tests/bench/recovery/run.sh     (a quick run)
#
# Environment: AGENTS (200), TASKS_PER_AGENT (10), CRASH_SHARE (20, percent),
# WARMUP (20 s, from every task running to the crash), DURATION (30 s after
# the crash), PROBE_INTERVAL (the health_probe plugin's interval, 500ms),
# NICE (see below), BUILD (build-bench), ENGINE_LOG (a file to keep the
# engine's log in).
#
# Targets (the recovery issue): under fast_recovery with 500 ms heartbeats,
# the assignment reaches the new agent within 2 s p99 and its first
# checkpoint is acknowledged within 2.5 s p99; the healthy agents keep at
# least 90% of their checkpoint throughput; no task, no acknowledged
# checkpoint version lost, no task completed twice. The exit status is the
# load generator's: 3 when a correctness figure fails.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
AGENTS=${AGENTS:-200}
TASKS_PER_AGENT=${TASKS_PER_AGENT:-10}
CRASH_SHARE=${CRASH_SHARE:-20}
WARMUP=${WARMUP:-20}
DURATION=${DURATION:-30}
PROBE_INTERVAL=${PROBE_INTERVAL:-500ms}
# On a shared machine, NICE=-10 (as root) runs the engine and the load
# generator ahead of everything else; 0 (the default) leaves priorities alone.
NICE=${NICE:-0}

scripts/bootstrap --bench
BUILD=${BUILD:-build-bench}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target recoveryd heartbeat health_probe metrics log \
    bench_recovery_loadgen >/dev/null

WORK=$(mktemp -d /tmp/rd-bench-rec.XXXXXX)
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

# Below the ephemeral range: a port there can be free of listeners and still
# be taken by the local end of an outgoing connection (bind fails then).
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPHEMERAL_LOW" -gt 21000 ] || EPHEMERAL_LOW=40000
free_port() {
    # Ask the kernel for a free loopback port (bash's /dev/tcp cannot bind).
    local p
    while :; do
        p=$((20000 + RANDOM % (EPHEMERAL_LOW - 20000)))
        (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

wait_http() {
    local url=$1 i
    for i in $(seq 1 300); do
        curl -sf -o /dev/null "$url" && return 0
        kill -0 "$RD_PID" 2>/dev/null || break
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

# One health endpoint (port) per agent, plus the probes' connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

RD_PORT=$(free_port)
RAFT_PORT=$(free_port)
# The shipped defaults (deploy/recoveryd.yaml), with what a benchmark needs:
# its own ports, probes every PROBE_INTERVAL, and info logging for the
# task_moved lines counted at the end.
cat >"$WORK/rd.yaml" <<YAML
cluster:
  raft_address: 127.0.0.1:$RAFT_PORT
logging:
  level: info
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
  recovery_strategies:
    fast_recovery:
      max_time: 2m
      resource_limit: 80%
YAML
nice -n "$NICE" "$BUILD/bin/recoveryd" --config "$WORK/rd.yaml" --listen "127.0.0.1:$RD_PORT" \
    --data-dir "$WORK/rd-data" --plugins-dir "$ROOT/$BUILD/plugins" \
    --policies-dir "$ROOT/policies" 2>"$WORK/rd.log" &
RD_PID=$!
wait_http "http://127.0.0.1:$RD_PORT/ready"

echo "recoveryd task recovery benchmark: $AGENTS agents x $TASKS_PER_AGENT tasks, $CRASH_SHARE% crash," \
    "warm-up ${WARMUP} s, ${DURATION} s after the crash, health probes every $PROBE_INTERVAL, nice $NICE;" \
    "$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(date -u +%FT%TZ)"
echo "engine built from $(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "($(git status --porcelain 2>/dev/null | grep -vc '^??' || true) files modified in the tree)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
LG_ARGS=(--url "http://127.0.0.1:$RD_PORT" --agents "$AGENTS" --tasks-per-agent "$TASKS_PER_AGENT"
    --crash-share "$CRASH_SHARE" --warmup "$WARMUP" --duration "$DURATION")
cpu0=$(cpu_s "$RD_PID")
read -r busy0 total0 < <(machine_jiffies)
t0=$(date +%s.%N)
# Bounded: the run itself plus three minutes for registration, the tasks'
# start, the completions and the reads.
timeout -k 10 $((WARMUP + DURATION + 180)) nice -n "$NICE" "$BUILD/bin/bench_recovery_loadgen" \
    "${LG_ARGS[@]}" "$@" &
LG_PID=$!
rc=0
wait "$LG_PID" || rc=$?
LG_PID=""
# The log up to here: once the fleet is gone, every agent fails in turn.
log_lines=$(wc -l <"$WORK/rd.log")
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

# Stop the engine (bounded), then look at what it logged during the run.
kill -TERM "$RD_PID" 2>/dev/null || true
for _ in $(seq 1 150); do kill -0 "$RD_PID" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$RD_PID" 2>/dev/null || true
wait "$RD_PID" 2>/dev/null || true
RD_PID=""
head -n "$log_lines" "$WORK/rd.log" >"$WORK/run.log"
strategies=$(grep -o 'event=task_moved.*strategy=[a-z_]*' "$WORK/run.log" | sed 's/.*strategy=//' |
    sort | uniq -c | awk '{ printf "%s%d x %s", (NR > 1 ? ", " : ""), $1, $2 }' || true)
echo "engine log during the run: $(grep -c 'event=task_moved' "$WORK/run.log" || true) task_moved" \
    "(${strategies:-none}), $(grep -c 'event=node_failed' "$WORK/run.log" || true) node_failed," \
    "$(grep -c 'event=partition_suspected' "$WORK/run.log" || true) partition_suspected," \
    "$(grep -c 'event=policy_error' "$WORK/run.log" || true) policy_error," \
    "$(grep -c 'level=error' "$WORK/run.log" || true) errors, $(grep -c 'level=warn' "$WORK/run.log" || true) warnings"
exit "$rc"
