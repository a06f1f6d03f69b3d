#!/bin/bash
# Fault detection: 1,000 simulated agents (AGENTS) heartbeating every 500 ms
# (+/- 100 ms of jitter) over HTTP/2 against one recoveryd, with its heartbeat,
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
# (the health_probe plugin's interval, 500ms), IDLE_INTERVAL (its
# idle_interval, unset: the plugin's default; 0ms probes every agent every
# interval), PROBE_MAX_IN_FLIGHT (its max_in_flight, unset: the default),
# NICE (0; -10 as root runs the engine and the load generator ahead of
# everything else on a shared machine), BUILD (build-bench), DUMP (a
# file for one line per agent), ENGINE_LOG (a file to keep the engine's log
# in), LOG_LEVEL (the engine's logging.level, warn).
# tests/bench/lib/common.sh does what every benchmark's script does.
#
# Targets (issue 3): crash failed within 1.6 s p99 and suspect within 1 s,
# 0 false failures over 10 minutes, a predicted fault for the degrading
# group before any of them fails.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
WARMUP=${WARMUP:-30}
DURATION=${DURATION:-600}
AGENTS=${AGENTS:-1000}
PROBE_INTERVAL=${PROBE_INTERVAL:-500ms}

scripts/bootstrap --bench
BENCH_LOG_LEVEL=${LOG_LEVEL:-warn} bench_fleet_setup det \
    "health_probe:interval=$PROBE_INTERVAL${IDLE_INTERVAL:+,idle_interval=$IDLE_INTERVAL}${PROBE_MAX_IN_FLIGHT:+,max_in_flight=$PROBE_MAX_IN_FLIGHT}" \
    metrics log \
    -- webhook bench_detection_loadgen
# One agent per port, plus the probes' connections.
bench_raise_nofile

# The load generator stands for the whole fleet on a few HTTP/2 connections
# (a worker's each): the edge's per-connection budgets are scaled to the
# agents behind them, and an abuse cut does not block the fleet's only
# address, as in the scale benchmark (tests/bench/scale/engine.sh): heartbeats
# that time out reset their streams, and after 20 the edge cut a worker's
# connection and refused it for 10 s in a 10,000-agent run.
cat >>"$WORK/rd.yaml" <<YAML
server:
  edge:
    stream_reset_budget: 100000
    abuse_block: 0s
fault_tolerance:
  detection:
    heartbeat_interval: 500ms
    health_check_timeout: 1s
    failure_threshold: 3
    recovery_threshold: 2
YAML
bench_start_engine

echo "recoveryd fault detection benchmark: $AGENTS agents, warm-up ${WARMUP} s, ${DURATION} s" \
    "after the faults, health probes every $PROBE_INTERVAL (idle agents: ${IDLE_INTERVAL:-default}," \
    "in flight at most: ${PROBE_MAX_IN_FLIGHT:-default})," \
    "nice $NICE; $(bench_cores), $(bench_now)"
LG_ARGS=(--url "http://127.0.0.1:$RD_PORT" --agents "$AGENTS" --warmup "$WARMUP"
    --duration "$DURATION")
[ -n "${DUMP:-}" ] && LG_ARGS+=(--dump "$DUMP")
echo "engine built from $(bench_commit)"
echo "load average before: $(bench_loadavg)"
# The health_probe plugin's counters (probes sent; ticks that sent nothing;
# probes not sent because max_in_flight were in flight).
probe_counters() {
    curl -sf --max-time 5 "http://127.0.0.1:$RD_PORT/metrics" |
        awk '/^recoveryd_plugin_probes_total\{plugin_instance="health_probe"\}/ { p = $2 }
             /^recoveryd_plugin_idle_skips_total\{plugin_instance="health_probe"\}/ { s = $2 }
             /^recoveryd_plugin_probes_deferred_total\{plugin_instance="health_probe"\}/ { d = $2 }
             END { printf "%d %d %d\n", p, s, d }'
}
read -r PROBES0 SKIPS0 DEFERRED0 < <(probe_counters || echo "0 0 0")
PROBE_T0=$SECONDS
bench_cpu_start "$RD_PID"
# Bounded: the run itself plus three minutes for registration and the report.
rc=0
bench_run - timeout -k 10 $((WARMUP + DURATION + 180)) "$BUILD_DIR/bin/bench_detection_loadgen" \
    "${LG_ARGS[@]}" "$@" || rc=$?
bench_cpu_report "$RD_PID"
read -r PROBES1 SKIPS1 DEFERRED1 < <(probe_counters || echo "0 0 0")
echo "health probes during the run: $((PROBES1 - PROBES0)) sent" \
    "($(((PROBES1 - PROBES0) / (SECONDS - PROBE_T0 > 0 ? SECONDS - PROBE_T0 : 1)))/s)," \
    "$((SKIPS1 - SKIPS0)) idle ticks skipped, $((DEFERRED1 - DEFERRED0)) deferred (max_in_flight" \
    "in flight)"
echo "load average after: $(bench_loadavg)"

# Stop the engine (bounded), then look at what it logged.
bench_stop "$RD_PID"
echo "engine log: $(grep -c 'node_failed' "$WORK/rd.log" || true) node_failed lines," \
    "$(grep -c 'partition_suspected' "$WORK/rd.log" || true) partition_suspected," \
    "$(grep -c 'level=error' "$WORK/rd.log" || true) errors"
exit "$rc"
