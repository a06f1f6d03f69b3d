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

bench_build recoveryd heartbeat metrics
bench_workdir rebalance
bench_free_port RD_PORT
bench_free_port RAFT_PORT
cat >"$WORK/rd.yaml" <<YAML
cluster:
  raft_address: 127.0.0.1:$RAFT_PORT
logging:
  level: info
plugins:
  instances:
    - name: heartbeat
      required: true
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
bench_start_engine
echo "recoveryd rebalancing after a storm: $AGENTS agents x $SLOTS slots, $PER_AGENT tasks each," \
    "${SHARE}% crash and return, rebalance.enabled $ENABLED, moves_per_minute $MOVES; $(bench_cores), $(bench_now)"
echo "engine built from $(bench_commit)"
echo "load average before: $(bench_loadavg)"
rc=0
bench_run - timeout -k 10 400 python3 tests/bench/detection/fleet.py --scenario storm \
    --url "http://127.0.0.1:$RD_PORT" --agents "$AGENTS" --slots "$SLOTS" \
    --tasks-per-agent "$PER_AGENT" --share "$SHARE" --warmup 10 --checkpoint-s 2 --duration 120 "$@" || rc=$?
echo "load average after: $(bench_loadavg)"
bench_stop "$RD_PID"
echo "engine log: $(grep -c 'comp=rebalance event=task_moved' "$WORK/rd.log" || true) queued moves," \
    "$(grep -c 'event=move_at_checkpoint' "$WORK/rd.log" || true) moves at a checkpoint," \
    "$(grep -c 'level=error' "$WORK/rd.log" || true) errors"
exit "$rc"
