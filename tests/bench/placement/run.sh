#!/bin/bash
# The scheduler's placement pass at scale (issue 16): rd_sched__place_pending
# on a state machine of NODES agents and TASKS tasks against the pass it
# replaced (a walk over the task table, a sort, a score of every agent per
# task), the same state, the same run: initial placement of every task, a
# trickle of 100 pending, a storm (a fifth of the agents failed, their tasks
# pending) and a saturated fleet (every slot taken, a fifth more waiting).
# Both passes must make the same placements (exit 1 when not). Before them,
# the rebalancing pass on the same fleet size (steady, a fifth of the agents
# joined empty, and the same with every task cooling down): its CPU time
# and a digest of the moves it decided, to compare two builds. PASS=policy
# runs instead the passes that give the Lua policies (policies/) the whole
# view: a recovery pass with 1 and with 20 agents lost (and the same without
# policies, the reference), and a rebalancing pass calling the `rebalance`
# hook.
#
#   tests/bench/placement/run.sh
#   NODES=2000 TASKS=20000 REPS=5 tests/bench/placement/run.sh
#   PASS=rebalance tests/bench/placement/run.sh
#   PASS=policy REPS=21 tests/bench/placement/run.sh
#
# Environment: NODES (10000), TASKS (100000), REPS (5 passes per case, the
# median reported), OLD_MAX_S (30: the old pass of a case runs once more
# only while it took less), PASS (all, placement, rebalance or
# policy), BUILD (build-bench). tests/bench/lib/common.sh
# does what every benchmark's script does.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
NODES=${NODES:-10000}
TASKS=${TASKS:-100000}
REPS=${REPS:-5}
OLD_MAX_S=${OLD_MAX_S:-30}
PASS=${PASS:-all}

bench_build bench_placement

echo "recoveryd placement pass benchmark: $NODES agents, $TASKS tasks, $REPS passes a case;" \
    "$(bench_cores), $(bench_now)"
echo "engine built from $(bench_commit)"
echo "load average before: $(bench_loadavg)"
rc=0
nice -n "$NICE" "$BUILD_DIR/bin/bench_placement" --nodes "$NODES" --tasks "$TASKS" --reps "$REPS" \
    --old-max-s "$OLD_MAX_S" --pass "$PASS" --policies "$ROOT/policies" || rc=$?
echo "load average after: $(bench_loadavg)"
exit "$rc"
