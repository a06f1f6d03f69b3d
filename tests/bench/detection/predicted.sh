#!/bin/bash
# Predicted faults act (part of the detection benchmark): 40 agents of 4
# slots with 2 tasks each, heartbeating every 500 ms with metrics and
# writing a checkpoint of every task every 2 s (fleet.py, standard-library
# Python over HTTP/1.1 keep-alive, one thread: about 120 requests a second,
# what it keeps up with on a busy 2-core machine). After the warm-up 10% degrade: latency_ms
# ramps by 40 ms per heartbeat from 20 ms past the metrics plugin's 5000 ms
# limit. The metrics trend predicts each failure, select.lua's predicted hook
# drains the agent, and its tasks move with their checkpoints before it
# fails (failure_threshold 6: what is measured is whether the tasks move
# first, not how fast a crash is seen). Prints per target PASS/FAIL: every degrading agent's task moved
# before its agent failed, 0 tasks lost, 0 checkpoints lost.
#
#   tests/bench/detection/predicted.sh          (under flock /tmp/rd-bench.lock)
#
# Environment: AGENTS (40), SHARE (10, percent degrading), WARMUP (20 s),
# DRAINS (prediction.drains_per_minute, 10), NICE, BUILD (build-bench).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
AGENTS=${AGENTS:-40}
SHARE=${SHARE:-10}
WARMUP=${WARMUP:-20}
DRAINS=${DRAINS:-10}

bench_fleet_setup predicted metrics
cat >>"$WORK/rd.yaml" <<YAML
fault_tolerance:
  detection:
    heartbeat_interval: 500ms
    failure_threshold: 6        # a 3 s lease: the one-thread simulator stalls on a busy machine,
                                # and a healthy agent failed for that would spoil the count
  prediction:
    drains_per_minute: $DRAINS
    min_healthy_capacity: 50%
YAML
bench_fleet_run "recoveryd predicted faults (detection benchmark): $AGENTS agents, ${SHARE}% degrading, drains_per_minute $DRAINS, warm-up ${WARMUP} s" \
    --scenario predicted --agents "$AGENTS" --share "$SHARE" --warmup "$WARMUP" \
    --checkpoint-s 2 --duration 240 "$@"
echo "engine log: $(grep -c 'event=predicted_drain ' "$WORK/rd.log" || true) predicted drains," \
    "$(grep -c 'event=node_failed' "$WORK/rd.log" || true) node_failed," \
    "$(grep -c 'level=error' "$WORK/rd.log" || true) errors"
exit "$FLEET_RC"
