#!/bin/bash
# The Lua policy host: rd_policy_plan (select + the strategy's plan) per
# strategy for 1 task / 10 nodes, 10 tasks / 200 nodes and 100 tasks / 1,000
# nodes (calls per second, latency p50/p99/max), then RELOADS reloads of the
# whole directory (load + swap + free of the old host), alone and with a plan
# call right after each swap. Budget and memory limit are the engine's
# defaults (50 ms, 64 MiB). Exits non-zero when any plan call or reload fails.
#
#   tests/bench/policy/run.sh
#   DURATION=3 WARMUP=0.5 RELOADS=200 tests/bench/policy/run.sh     (the defaults)
#
# Environment: DURATION, WARMUP (seconds per case), RELOADS, POLICIES (the
# directory, policies/), BUILD (build-bench). tests/bench/lib/common.sh does
# what every benchmark's script does.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-0.5}
RELOADS=${RELOADS:-200}
POLICIES=${POLICIES:-$ROOT/policies}

bench_build bench_policy

echo "recoveryd policy host benchmark: $(bench_cores), $(bench_now)"
echo "load average before: $(bench_loadavg)"
rc=0
"$BUILD_DIR/bin/bench_policy" --dir "$POLICIES" --duration "$DURATION" --warmup "$WARMUP" \
    --reloads "$RELOADS" || rc=$?
echo "load average after: $(bench_loadavg)"
exit "$rc"
