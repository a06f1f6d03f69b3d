#!/bin/bash
# The leader's CPU per heartbeat when its agents hold tasks they have not
# started (assigned, no first checkpoint committed): the failure storm's
# setup, where first checkpoints commit slowly (docs/benchmarks.md, "Failure
# storm"). One recoveryd; BUSY agents with SLOTS slots each, every slot
# filled with a task that never starts (nobody checkpoints), and IDLE agents
# without tasks in the same run (the hot path, for reference). h2load sends
# REQUESTS heartbeats round-robin over each group; the engine's CPU per
# heartbeat is from /proc/PID/task/*/schedstat (all threads, ns).
#
#   tests/bench/heartbeats/assigned.sh [REQUESTS]     (default 100000)
#
# Environment: BUSY (200), SLOTS (50: 10,000 tasks), IDLE (200), CLIENTS
# (20), STREAMS (10), BUILD (build-bench). The agents' heartbeat interval is
# 1 h, so nobody is judged while h2load works on the other group; the lease
# is then 3 h, so an engine that tells an assignment once (and again only a
# lease later) tells each task once in the run, and one that tells every
# unstarted task in every answer encodes SLOTS tasks per heartbeat.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
N=${1:-100000}
BUSY=${BUSY:-200}
SLOTS=${SLOTS:-50}
IDLE=${IDLE:-200}
CLIENTS=${CLIENTS:-20}
STREAMS=${STREAMS:-10}

scripts/bootstrap --bench
BENCH_LOG_LEVEL=warn bench_fleet_setup hbassigned health_probe metrics log
cat >>"$WORK/rd.yaml" <<YAML
fault_tolerance:
  detection:
    heartbeat_interval: 1h
YAML
# shellcheck disable=SC2119 # the engine takes no arguments here
bench_start_engine
URL="http://127.0.0.1:$RD_PORT"

# register GROUP COUNT SLOTS LABELS: agents GROUP-1 .. GROUP-COUNT over one
# keep-alive connection; their heartbeat URIs in $WORK/GROUP.uris.
register() {
    local group=$1 count=$2 slots=$3 labels=$4 i
    : >"$WORK/$group.curl"
    for i in $(seq 1 "$count"); do
        printf 'url = "%s/api/v1/nodes"\ndata = "{\\"node_id\\":\\"%s-%s\\",\\"capacity\\":{\\"slots\\":%s},\\"labels\\":%s}"\nheader = "Content-Type: application/json"\noutput = /dev/null\nwrite-out = "%%{http_code}\\n"\n' \
            "$URL" "$group" "$i" "$slots" "$labels" >>"$WORK/$group.curl"
        [ "$i" -lt "$count" ] && echo next >>"$WORK/$group.curl"
    done
    local created
    created=$(curl -s -K "$WORK/$group.curl" | grep -c '^201$' || true)
    if [ "$created" != "$count" ]; then
        echo "bench: registered $created of $count $group agents" >&2
        exit 1
    fi
    for i in $(seq 1 "$count"); do echo "$URL/api/v1/nodes/$group-$i/heartbeat"; done >"$WORK/$group.uris"
}
register busy "$BUSY" "$SLOTS" '{\"pool\":\"busy\"}'
register idle "$IDLE" 1 '{}'

# Every slot of the busy agents gets a task (one slot each, a payload of
# about 100 bytes); nobody starts them.
TASKS=$((BUSY * SLOTS))
echo '{"priority":5,"payload":{"job":"render","input":"s3://bench-bucket/frames/000123.exr","frames":[1,240]},"requirements":{"slots":1,"labels":{"pool":"busy"}}}' >"$WORK/task.json"
h2load -n "$TASKS" -c 4 -m 16 -d "$WORK/task.json" -H 'content-type: application/json' \
    "$URL/api/v1/tasks" >"$WORK/submit.out" 2>&1 || {
    cat "$WORK/submit.out" >&2
    exit 1
}
tasks_in() { curl -s "$URL/metrics" | awk -v s="$1" '$1 == "recoveryd_tasks{state=\"" s "\"}" {print $2}'; }
for _ in $(seq 1 600); do
    [ "$(tasks_in assigned)" = "$TASKS" ] && break
    sleep 0.1
done
if [ "$(tasks_in assigned)" != "$TASKS" ]; then
    echo "bench: $(tasks_in assigned) of $TASKS tasks assigned (pending $(tasks_in pending))" >&2
    exit 1
fi
echo '{"epoch":1,"load":{"slots_used":0},"metrics":{"error_rate":0.01,"latency_ms":42.5,"cpu":0.4,"mem":0.5}}' >"$WORK/hb.json"

echo "recoveryd heartbeats with unstarted tasks: $BUSY agents holding $SLOTS assigned tasks each" \
    "($TASKS), $IDLE agents holding none; $N heartbeats per group and round," \
    "h2load -c $CLIENTS -m $STREAMS (h2c); $(bench_cores), $(bench_now)"
echo "engine built from $(bench_commit)"
echo "load average before: $(bench_loadavg)"
# run GROUP ROUND: one h2load round over GROUP's agents, one result line.
run() {
    local before after out ok bytes
    before=$(bench_cpu_ns "$RD_PID")
    out=$(h2load -n "$N" -c "$CLIENTS" -m "$STREAMS" -d "$WORK/hb.json" \
        -H 'content-type: application/json' -i "$WORK/$1.uris" 2>&1)
    after=$(bench_cpu_ns "$RD_PID")
    ok=$(echo "$out" | awk '/^status codes:/ {print $3}')
    bytes=$(echo "$out" | awk '/^traffic:/ {gsub(/[()]/, "", $3); print $3}')
    if [ "${ok:-0}" != "$N" ]; then
        echo "$out" >&2
        echo "bench: $ok of $N heartbeats of the $1 agents answered 2xx" >&2
        exit 1
    fi
    awk -v g="$1" -v r="$2" -v a="$before" -v b="$after" -v n="$N" -v by="$bytes" 'BEGIN {
        printf "%-5s agents, round %d: %8.1f us CPU per heartbeat, %8.0f bytes received per heartbeat\n",
            g, r, (b - a) / 1000 / n, by / n }'
}
for round in 1 2 3; do
    run busy "$round"
    run idle "$round"
done
echo "load average after: $(bench_loadavg)"
echo "tasks still assigned (never started): $(tasks_in assigned) of $TASKS"
