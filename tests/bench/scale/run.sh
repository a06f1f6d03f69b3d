#!/bin/bash
# Scale: a large fleet (10,000 agents by default) heartbeating every 500 ms
# (+/- 100 ms of jitter) over HTTP/2 against one recoveryd with its default
# detectors (heartbeat, health_probe, metrics) and the log plugin. The load
# generator (loadgen.c) registers them, warms up, then measures heartbeat
# round trips and the engine's RSS and prints PASS/FAIL against issue 16's
# targets (RSS under 512 MiB, heartbeat p99 under 50 ms). This script prints
# the engine's CPU time and its loop's lag (bench_loop_lag) on top.
#
#   tests/bench/scale/run.sh [LOADGEN OPTIONS...]
#   AGENTS=3000 WARMUP=20 DURATION=60 tests/bench/scale/run.sh
#
# The load generator splits the agents among --threads workers (4), each
# with its own HTTP/2 connection and at most 96 transfers in flight on it.
#
# Environment: AGENTS (10000), WARMUP (20), DURATION (60; seconds), NICE
# (0; -10 as root runs the engine and the load generator ahead of everything
# else on a shared machine), BUILD (build-bench), ENGINE_LOG (a file to keep
# the engine's log in). tests/bench/lib/common.sh does what every
# benchmark's script does.
#
# The engine's configuration is tests/bench/scale/engine.sh (shared with
# tests/bench/soak). The failure storm (100,000 tasks with checkpoints, three
# replicas, crashes and a partition) is tests/bench/scale/storm.sh; not yet
# (issue 16): health endpoints for the agents.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=SCRIPTDIR/engine.sh
. tests/bench/scale/engine.sh
AGENTS=${AGENTS:-10000}
WARMUP=${WARMUP:-20}
DURATION=${DURATION:-60}

scripts/bootstrap --bench
bench_build recoveryd heartbeat health_probe metrics log webhook bench_scale_loadgen
bench_workdir scale
bench_raise_nofile

bench_free_port RD_PORT
bench_free_port RAFT_PORT
# shellcheck disable=SC2153 # RAFT_PORT is set by bench_free_port
scale_engine_yaml "$WORK/rd.yaml" "$RAFT_PORT"
# shellcheck disable=SC2119 # the engine takes no arguments here
bench_start_engine

echo "recoveryd scale benchmark: $AGENTS agents, warm-up ${WARMUP} s, ${DURATION} s measured," \
    "nice $NICE; $(bench_cores), $(bench_now)"
echo "engine built from $(bench_commit)"
echo "load average before: $(bench_loadavg); scheduling group: $(cat /proc/self/autogroup 2>/dev/null || echo none)"
bench_cpu_start "$RD_PID"
rc=0
bench_run - timeout -k 10 $((WARMUP + DURATION + 240)) "$BUILD_DIR/bin/bench_scale_loadgen" \
    --url "http://127.0.0.1:$RD_PORT" --agents "$AGENTS" --warmup "$WARMUP" \
    --duration "$DURATION" --engine-pid "$RD_PID" "$@" || rc=$?
bench_cpu_report "$RD_PID"
bench_loop_lag "http://127.0.0.1:$RD_PORT"
echo "load average after: $(bench_loadavg)"
bench_stop "$RD_PID"
echo "engine log: $(grep -c 'node_failed' "$WORK/rd.log" || true) node_failed lines," \
    "$(grep -c 'partition_suspected' "$WORK/rd.log" || true) partition_suspected," \
    "$(grep -c 'level=error' "$WORK/rd.log" || true) errors; warnings: $(bench_log_events "$WORK/rd.log")"
exit "$rc"
