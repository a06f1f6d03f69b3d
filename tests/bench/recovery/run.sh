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
# NICE (0; -10 as root runs the engine and the load generator ahead of
# everything else on a shared machine), BUILD (build-bench), ENGINE_LOG (a
# file to keep the engine's log in). tests/bench/lib/common.sh does what
# every benchmark's script does.
#
# Targets (the recovery issue): under fast_recovery with 500 ms heartbeats,
# the assignment reaches the new agent within 2 s p99 and its first
# checkpoint is acknowledged within 2.5 s p99; the healthy agents keep at
# least 90% of their checkpoint throughput; no task, no acknowledged
# checkpoint version lost, no task completed twice. The exit status is the
# load generator's: 3 when a correctness figure fails.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
AGENTS=${AGENTS:-200}
TASKS_PER_AGENT=${TASKS_PER_AGENT:-10}
CRASH_SHARE=${CRASH_SHARE:-20}
WARMUP=${WARMUP:-20}
DURATION=${DURATION:-30}
PROBE_INTERVAL=${PROBE_INTERVAL:-500ms}

scripts/bootstrap --bench
# The shipped defaults (deploy/recoveryd.yaml), with what a benchmark needs:
# its own ports, probes every PROBE_INTERVAL, and info logging for the
# task_moved lines counted at the end.
bench_fleet_setup rec "health_probe:interval=$PROBE_INTERVAL" metrics log -- bench_recovery_loadgen
# One health endpoint (port) per agent, plus the probes' connections.
bench_raise_nofile

cat >>"$WORK/rd.yaml" <<YAML
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
bench_start_engine --policies-dir "$ROOT/policies"

echo "recoveryd task recovery benchmark: $AGENTS agents x $TASKS_PER_AGENT tasks, $CRASH_SHARE% crash," \
    "warm-up ${WARMUP} s, ${DURATION} s after the crash, health probes every $PROBE_INTERVAL, nice $NICE;" \
    "$(bench_cores), $(bench_now)"
echo "engine built from $(bench_commit)"
echo "load average before: $(bench_loadavg)"
LG_ARGS=(--url "http://127.0.0.1:$RD_PORT" --agents "$AGENTS" --tasks-per-agent "$TASKS_PER_AGENT"
    --crash-share "$CRASH_SHARE" --warmup "$WARMUP" --duration "$DURATION")
bench_cpu_start "$RD_PID"
# Bounded: the run itself plus three minutes for registration, the tasks'
# start, the completions and the reads.
rc=0
bench_run - timeout -k 10 $((WARMUP + DURATION + 180)) "$BUILD_DIR/bin/bench_recovery_loadgen" \
    "${LG_ARGS[@]}" "$@" || rc=$?
# The log up to here: once the fleet is gone, every agent fails in turn.
log_lines=$(wc -l <"$WORK/rd.log")
bench_cpu_report "$RD_PID"
echo "load average after: $(bench_loadavg)"

# Stop the engine (bounded), then look at what it logged during the run.
bench_stop "$RD_PID"
head -n "$log_lines" "$WORK/rd.log" >"$WORK/run.log"
strategies=$(grep -o 'event=task_moved.*strategy=[a-z_]*' "$WORK/run.log" | sed 's/.*strategy=//' |
    sort | uniq -c | awk '{ printf "%s%d x %s", (NR > 1 ? ", " : ""), $1, $2 }' || true)
echo "engine log during the run: $(grep -c 'event=task_moved' "$WORK/run.log" || true) task_moved" \
    "(${strategies:-none}), $(grep -c 'event=node_failed' "$WORK/run.log" || true) node_failed," \
    "$(grep -c 'event=partition_suspected' "$WORK/run.log" || true) partition_suspected," \
    "$(grep -c 'event=policy_error' "$WORK/run.log" || true) policy_error," \
    "$(grep -c 'level=error' "$WORK/run.log" || true) errors, $(grep -c 'level=warn' "$WORK/run.log" || true) warnings"
exit "$rc"
