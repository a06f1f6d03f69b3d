#!/bin/bash
# The example fleet, end to end on this machine: three replicas, AGENTS
# agents running a simulated model pipeline (examples/fleet/pipeline_agent.py:
# each task is STEPS steps of STEP_MS, a checkpoint after each), TASKS
# tasks. Then agents holding work are killed (-9), then the leader replica;
# `recoveryctl status --watch` shows the cluster meanwhile. At the end every
# task must have completed, each resumed from its last checkpoint: its final
# checkpoint version is exactly STEPS (a step redone from an older
# checkpoint would have written one more) and the attempt that completed it
# ran only the steps after the checkpoint it was handed.
#
#   examples/demo.sh                  (builds first if build/ lacks a binary)
#   AGENTS=10 TASKS=20 examples/demo.sh
#
# Environment: AGENTS (20), TASKS (40), STEPS (8), STEP_MS (400), KILL (4
# agents killed), BASE_PORT (18080: APIs on BASE_PORT+1..3, raft on
# BASE_PORT+11..13; "auto": free ones), BUILD (build), WATCH (1 on a terminal: the live status;
# 0: a line now and then), KEEP (1: keep the logs and data in the work
# directory). Exit status 0 when every task finished from its last
# checkpoint.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
AGENTS=${AGENTS:-20}
TASKS=${TASKS:-40}
STEPS=${STEPS:-8}
STEP_MS=${STEP_MS:-400}
KILL=${KILL:-4}
BASE_PORT=${BASE_PORT:-18080}
if [ "$BASE_PORT" = auto ]; then # six free ports in a row (the tests run it so)
    BASE_PORT=$(python3 -c '
import random, socket
for _ in range(200):
    base = random.randrange(20000, 60000)
    try:
        socks = []
        for p in [base + i for i in (1, 2, 3, 11, 12, 13)]:
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    print(base)
    break')
fi
if [ -t 1 ]; then WATCH=${WATCH:-1}; else WATCH=${WATCH:-0}; fi
KEEP=${KEEP:-0}

if [ ! -x "$BUILD/bin/recoveryd" ] || [ ! -x "$BUILD/bin/recoveryctl" ]; then
    make -C "$ROOT" build
fi
CTL="$BUILD/bin/recoveryctl"
CHECK="$ROOT/examples/fleet/check_tasks.py"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/recoveryd-demo.XXXXXX")
declare -A REPLICA AGENT
# Every process started, by PID (the faults may run in a subshell: the file
# is what both see).
PIDS="$DIR/pids"
: >"$PIDS"
cleanup() {
    local pids
    pids=$(cat "$PIDS" 2>/dev/null || true)
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for pid in $pids; do
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    if [ "$KEEP" = 1 ]; then echo "demo: logs and data kept in $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
[ -t 1 ] || say() { printf 'demo: %s\n' "$*"; }

# ---- three replicas -------------------------------------------------------------------
EP=""
PEERS=""
for i in 1 2 3; do
    EP+="${EP:+,}http://127.0.0.1:$((BASE_PORT + i))"
    PEERS+="    - {id: $i, address: 127.0.0.1:$((BASE_PORT + 10 + i)), api_url: http://127.0.0.1:$((BASE_PORT + i))}
"
done
start_replica() {
    local i=$1
    "$BUILD/bin/recoveryd" --config "$DIR/r$i.yaml" >>"$DIR/r$i.log" 2>&1 &
    REPLICA[$i]=$!
    echo "$!" >>"$PIDS"
    disown "$!"
}
for i in 1 2 3; do
    mkdir -p "$DIR/r$i"
    cat >"$DIR/r$i.yaml" <<YAML
server:
  listen: 127.0.0.1:$((BASE_PORT + i))
storage:
  data_dir: $DIR/r$i
cluster:
  name: demo
  node_id: rd$i
  replica_id: $i
  raft_address: 127.0.0.1:$((BASE_PORT + 10 + i))
  peers:
$PEERS
plugins:
  dir: $BUILD/plugins
policies:
  dir: $ROOT/policies
logging:
  level: info
YAML
    start_replica "$i"
done
export RECOVERYD_ENDPOINTS=$EP
# leader [ENDPOINT]: the leader's replica id as the cluster (or that one replica) sees it.
leader() { "$CTL" ${1:+--endpoints "$1"} status --json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
q = s.get("quorum") or s.get("cluster", {}).get("quorum") or {}
print(q.get("leader") or "")' 2>/dev/null || true; }
for _ in $(seq 1 100); do
    [ -n "$(leader)" ] && break
    sleep 0.1
done
[ -n "$(leader)" ] || { say "no leader after 10 s; see $DIR/r*.log"; KEEP=1; exit 1; }
say "three replicas up ($EP), leader replica $(leader)"

# ---- agents and work ------------------------------------------------------------------
for k in $(seq 1 "$AGENTS"); do
    python3 "$ROOT/examples/fleet/pipeline_agent.py" --id "agent-$k" --endpoints "$EP" \
        --zone "zone-$((k % 3))" >"$DIR/agent-$k.log" 2>&1 &
    AGENT[$k]=$!
    echo "$!" >>"$PIDS"
    disown "$!"
done
for t in $(seq 1 "$TASKS"); do
    "$CTL" tasks submit --priority $((t % 10)) \
        --payload "{\"model\":\"model-$t\",\"steps\":$STEPS,\"step_ms\":$STEP_MS}" >/dev/null
done
say "$AGENTS agents, $TASKS pipelines of $STEPS steps submitted"

status_line() { [ "$WATCH" = 1 ] || "$CTL" status 2>/dev/null | head -12 || true; }

chaos() {
    # ---- faults: agents with work, then the leader ------------------------------------------
    sleep $((STEP_MS * 3 / 1000 + 1))
    status_line
    killed=0
    for node in $("$CTL" tasks list --state running --json --all | python3 "$CHECK" --nodes 0); do
        [ "$killed" -ge "$KILL" ] && break
        k=${node#agent-}
        [ -n "${AGENT[$k]:-}" ] || continue
        kill -9 "${AGENT[$k]}" 2>/dev/null || true
        unset "AGENT[$k]"
        killed=$((killed + 1))
        say "killed $node (kill -9) while it ran tasks"
    done
    sleep 2
    L=$(leader)
    if [ -n "$L" ] && [ -n "${REPLICA[$L]:-}" ]; then
        kill -9 "${REPLICA[$L]}"
        say "killed the leader, replica $L (kill -9)"
        sleep 3
        start_replica "$L"
        for _ in $(seq 1 100); do
            [ -n "$(leader "http://127.0.0.1:$((BASE_PORT + L))")" ] && break
            sleep 0.1
        done
        say "replica $L started again and rejoined: it follows replica $(leader "http://127.0.0.1:$((BASE_PORT + L))")"
    fi

    # ---- every task done, each from its last checkpoint -----------------------------------
    deadline=$((SECONDS + 60 + TASKS * STEPS * STEP_MS / 1000 / AGENTS * 4))
    while :; do
        left=$("$CTL" tasks list --json --all 2>/dev/null | python3 "$CHECK" --count "$TASKS" || echo "$TASKS")
        [ "$left" = 0 ] && break
        if [ "$SECONDS" -gt "$deadline" ]; then
            say "$left of $TASKS tasks not completed in time; see $DIR"
            KEEP=1
            exit 1
        fi
        status_line
        sleep 1
    done

}

# With WATCH, the faults run in the background (their lines kept for the
# end) while `recoveryctl status --watch` shows the cluster live.
if [ "$WATCH" = 1 ]; then
    chaos >"$DIR/demo.events" 2>&1 &
    CHAOS=$!
    "$CTL" status --watch --interval 1 &
    WATCHER=$!
    rc=0
    wait "$CHAOS" || rc=$?
    kill "$WATCHER" 2>/dev/null || true
    wait "$WATCHER" 2>/dev/null || true
    cat "$DIR/demo.events"
    if [ "$rc" != 0 ]; then KEEP=1; exit "$rc"; fi
else
    chaos
fi
"$CTL" status || true
"$CTL" tasks list --json --all | python3 "$CHECK" --verify "$TASKS" "$STEPS"
