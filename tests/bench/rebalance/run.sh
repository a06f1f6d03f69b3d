#!/bin/bash
# Dynamic rebalancing: 30 agents of 10 slots with 5 low-priority tasks each,
# heartbeating every 500 ms and checkpointing every task every 2 s
# (tests/bench/detection/fleet.py). After the warm-up a third of the agents
# crash; once their tasks run elsewhere they register again, empty. Measures
# the time from their return until every agent holds within 10% of its slots
# of the even load (rebalance.settle included), the moves made, the most
# interruptions of one task (the storm's move counts: at most 1 is the
# target), tasks and checkpoints lost.
#
#   tests/bench/rebalance/run.sh          (under flock /tmp/rd-bench.lock)
#
# Environment: AGENTS (30), SLOTS (10), PER_AGENT (5), SHARE (33, percent
# crashing), MOVES (rebalance.moves_per_minute, 600), ENABLED (rebalance.enabled,
# true; false is the reference: what the engine did before), NICE, BUILD.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
AGENTS=${AGENTS:-30}
SLOTS=${SLOTS:-10}
PER_AGENT=${PER_AGENT:-5}
SHARE=${SHARE:-33}
MOVES=${MOVES:-600}
ENABLED=${ENABLED:-true}

bench_fleet_setup rebalance
cat >>"$WORK/rd.yaml" <<YAML
fault_tolerance:
  detection:
    heartbeat_interval: 500ms
    failure_threshold: 6        # a 3 s lease: the one-thread simulator stalls on a busy machine
  partition:
    min_nodes: 1000             # a third of the fleet down at once is the storm, not a partition
  rebalance:
    enabled: $ENABLED
    moves_per_minute: $MOVES
YAML
bench_fleet_run "recoveryd rebalancing after a storm: $AGENTS agents x $SLOTS slots, $PER_AGENT tasks each, ${SHARE}% crash and return, rebalance.enabled $ENABLED, moves_per_minute $MOVES" \
    --scenario storm --agents "$AGENTS" --slots "$SLOTS" --tasks-per-agent "$PER_AGENT" \
    --share "$SHARE" --warmup 10 --checkpoint-s 2 --duration 120 "$@"
echo "engine log: $(grep -c 'comp=rebalance event=task_moved' "$WORK/rd.log" || true) queued moves," \
    "$(grep -c 'event=move_at_checkpoint' "$WORK/rd.log" || true) moves at a checkpoint," \
    "$(grep -c 'level=error' "$WORK/rd.log" || true) errors"
exit "$FLEET_RC"
