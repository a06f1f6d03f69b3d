#!/bin/bash
# The HTTP edge under attack: a well-behaved agent's heartbeat latency with
# no attack, then under each attack of tests/attack/h2attack.py (one
# attacker from its own loopback address, 127.0.0.x), against one recoveryd
# with the default server.edge limits and TASKS tasks (the rapid reset asks
# for GET /api/v1/tasks?limit=1000). Prints, per scenario: the agent's
# heartbeats, failures, p50/p99/max latency (ms), the daemon's peak RSS and
# CPU, and what the attacker saw (cut off, GOAWAY).
#
#   tests/bench/attacks/run.sh
#
# Environment: DURATION (10 s per scenario), RATE (200 heartbeats/s), TASKS
# (50000), BUILD (build-bench). docs/benchmarks.md records runs; run it when
# `uptime` shows a low load. Goal (issue 12): p99 under attack within 2x the
# p99 without one.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
DURATION=${DURATION:-10}
RATE=${RATE:-200}
TASKS=${TASKS:-50000}
ATTACK="python3 $ROOT/tests/attack/h2attack.py"

bench_build recoveryd
bench_workdir attacks disk
bench_free_port RD_PORT
bench_free_port RAFT_PORT
cat >"$WORK/rd.yaml" <<YAML
cluster:
  raft_address: 127.0.0.1:$RAFT_PORT
logging:
  level: warn
fault_tolerance:
  detection:
    heartbeat_interval: 1h
YAML
bench_start_engine

curl -sf -o /dev/null -H 'Content-Type: application/json' \
    -d '{"node_id":"legit-1","capacity":{"slots":1}}' "http://127.0.0.1:$RD_PORT/api/v1/nodes"
# The tasks, over a few kept-alive connections.
loaders=()
for part in 0 1 2 3; do
    : >"$WORK/tasks$part.curl"
    for i in $(seq 1 $((TASKS / 4))); do
        [ "$i" -gt 1 ] && echo next >>"$WORK/tasks$part.curl"
        printf 'url = "http://127.0.0.1:%s/api/v1/tasks"\ndata = "{\\"priority\\":1,\\"payload\\":{\\"n\\":1}}"\nheader = "Content-Type: application/json"\noutput = /dev/null\n' \
            "$RD_PORT" >>"$WORK/tasks$part.curl"
    done
    curl -s -K "$WORK/tasks$part.curl" &
    loaders+=($!)
done
wait "${loaders[@]}" # not a bare wait: the engine is a child too

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$RD_PID/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$RD_PID/stat"; }

echo "recoveryd HTTP edge under attack: $TASKS tasks, heartbeats at $RATE/s for ${DURATION}s per scenario"
echo "$(bench_cores), $(bench_now), load $(bench_loadavg), commit $(bench_commit)"
printf '%-18s %6s %5s %8s %8s %8s %9s %7s  %s\n' scenario beats fail p50_ms p99_ms max_ms peak_rss cpu_s attacker
src=10
for scenario in none rapid_reset continuation huge_headers hpack_amp unfinished_bodies empty_data \
    idle_conns slowloris slowloris_h1; do
    src=$((src + 1))
    $ATTACK legit --port "$RD_PORT" --node legit-1 --epoch 1 --rate "$RATE" \
        --duration "$DURATION" >"$WORK/legit.json" &
    legit=$!
    cpu0=$(cpu_s)
    peak=$(rss_kb)
    sleep 0.5
    attacker=""
    case $scenario in
    none) echo '{}' >"$WORK/attack.json" ;;
    rapid_reset) $ATTACK rapid_reset --port "$RD_PORT" --source "127.0.0.$src" --reconnect \
        --duration $((DURATION - 1)) --path '/api/v1/tasks?limit=1000' >"$WORK/attack.json" & ;;
    idle_conns) $ATTACK idle_conns --port "$RD_PORT" --source "127.0.0.$src" --conns 1100 \
        --duration $((DURATION - 1)) >"$WORK/attack.json" & ;;
    slowloris | slowloris_h1) $ATTACK "$scenario" --port "$RD_PORT" --source "127.0.0.$src" \
        --conns 100 --duration $((DURATION - 1)) >"$WORK/attack.json" & ;;
    *) $ATTACK "$scenario" --port "$RD_PORT" --source "127.0.0.$src" \
        --duration $((DURATION - 1)) >"$WORK/attack.json" & ;;
    esac
    [ "$scenario" = none ] || attacker=$!
    while kill -0 "$legit" 2>/dev/null; do
        r=$(rss_kb)
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.1
    done
    wait "$legit"
    [ -z "$attacker" ] || wait "$attacker"
    cpu=$(awk -v a="$cpu0" -v b="$(cpu_s)" 'BEGIN {printf "%.2f", b - a}')
    python3 - "$WORK/legit.json" "$WORK/attack.json" "$scenario" "$peak" "$cpu" <<'PY'
import json, sys
legit = json.load(open(sys.argv[1]))
att = json.load(open(sys.argv[2]))
g = att.get("goaway") or {}
seen = "-" if sys.argv[3] == "none" else "cut_off=%s %s" % (
    att.get("cut_off"), ("%s \"%s\"" % (g["code"], g["debug"])) if g else "(closed)")
print("%-18s %6d %5d %8.2f %8.2f %8.2f %7.1fMB %7s  %s" % (
    sys.argv[3], legit["requests"], legit["failures"], legit["p50_ms"], legit["p99_ms"],
    legit["max_ms"], int(sys.argv[4]) / 1024, sys.argv[5], seen))
PY
    # The next attacker comes from another address; let the last one's
    # connections close first.
    sleep 1
done
