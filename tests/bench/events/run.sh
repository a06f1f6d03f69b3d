#!/bin/bash
# What event streams cost: STREAMS idle GET /api/v1/events streams (HTTP/1.1,
# one connection each) held open on one engine, then the same streams while
# events flow (operators isolating and readmitting agents: one `node` event
# per request, ~500 bytes each, sent to every stream). Prints the engine's
# RSS before the streams, with them idle and after the flow, the CPU the
# engine spent per event delivered, and checks every stream got every event.
#
#   tests/bench/events/run.sh [STREAMS]      (default 500)
#
# Environment: EVENTS (2000), AGENTS (20), BUILD (build-bench), NICE.
# tests/bench/lib/common.sh does what every benchmark's script does.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
STREAMS=${1:-500}
EVENTS=${EVENTS:-2000}
AGENTS=${AGENTS:-20}

bench_build recoveryd heartbeat health_probe metrics log
bench_workdir events
bench_raise_nofile
bench_free_port RD_PORT
bench_free_port RAFT_PORT
cat >"$WORK/rd.yaml" <<YAML
cluster:
  raft_address: 127.0.0.1:$RAFT_PORT
logging:
  level: warn
server:
  edge:
    max_connections: $((STREAMS + 200))
    max_connections_per_address: $((STREAMS + 200))
  events:
    max_streams: $((STREAMS + 10))
    max_streams_per_principal: $((STREAMS + 10))
fault_tolerance:
  detection:
    heartbeat_interval: 1h
YAML
bench_start_engine

rss_kib() { awk '/^VmRSS:/ {print $2}' /proc/"$1"/status; }
metric() { curl -s "http://127.0.0.1:$RD_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

J='Content-Type: application/json'
for i in $(seq 1 "$AGENTS"); do
    curl -sf -o /dev/null -XPOST "http://127.0.0.1:$RD_PORT/api/v1/nodes" -H "$J" \
        -d "{\"node_id\":\"bench-agent-$i\",\"capacity\":{\"slots\":1}}"
done

sleep 1
rss0=$(rss_kib "$RD_PID")

# For comparison: as many bare HTTP/1.1 connections (h2o's own cost of a
# connection that has sent no request yet), held for a second.
python3 - "$RD_PORT" "$STREAMS" "$WORK" <<'PY' &
import os, socket, sys, time
port, n, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
open(work + "/bare", "w").close()
while not os.path.exists(work + "/bare-stop"):
    time.sleep(0.05)
PY
BARE_PID=$!
bench_track "$BARE_PID"
for _ in $(seq 1 300); do [ -e "$WORK/bare" ] && break; sleep 0.1; done
sleep 1
rss_bare=$(rss_kib "$RD_PID")
touch "$WORK/bare-stop"
wait "$BARE_PID"
bench_forget "$BARE_PID"
sleep 1

# The streams: one process holding them all, counting each one's events.
cat >"$WORK/streams.py" <<'PY'
import os, selectors, socket, sys, time
port, n, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sel = selectors.DefaultSelector()
counts, opened = {}, set()
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/v1/events?kind=node HTTP/1.1\r\nHost: x\r\n\r\n")
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, i)
    counts[i] = 0
tail = {}
while not os.path.exists(work + "/stop"):
    for key, _ in sel.select(timeout=0.1):
        data = key.fileobj.recv(65536)
        if not data:
            sys.exit("stream %d ended" % key.data)
        text = tail.get(key.data, b"") + data
        if key.data not in opened and b" 200 " in text.split(b"\r\n", 1)[0]:
            opened.add(key.data)
            if len(opened) == n:
                open(work + "/open", "w").close()
        counts[key.data] += text.count(b"\nevent: node\n")
        tail[key.data] = text[-12:]
c = sorted(counts.values())
print("%d %d" % (c[0], c[-1]))
PY
python3 "$WORK/streams.py" "$RD_PORT" "$STREAMS" "$WORK" >"$WORK/streams.out" &
PY_PID=$!
bench_track "$PY_PID"

echo "recoveryd event streams benchmark: $STREAMS streams, $EVENTS events, $(bench_cores), $(bench_now)"
echo "commit $(bench_commit); load average $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq 1 300); do [ -e "$WORK/open" ] && break; sleep 0.1; done
[ -e "$WORK/open" ] || { echo "bench: the streams did not all open" >&2; exit 1; }
sleep 1
rss1=$(rss_kib "$RD_PID")
echo "open streams (engine): $(metric recoveryd_events_streams)"
printf 'engine RSS: %s KiB without streams, %s KiB with %s bare connections (%s bytes each)\n' \
    "$rss0" "$rss_bare" "$STREAMS" "$(((rss_bare - rss0) * 1024 / STREAMS))"
printf 'engine RSS: %s KiB with %s idle streams (%s bytes a stream, its connection included)\n' \
    "$rss1" "$STREAMS" "$(((rss1 - rss0) * 1024 / STREAMS))"

# Events flowing: EVENTS operator actions over one keep-alive connection.
: >"$WORK/actions.curl"
for i in $(seq 1 "$EVENTS"); do
    a=$(((i - 1) % AGENTS + 1))
    op=isolate
    [ $((((i - 1) / AGENTS) % 2)) = 1 ] && op=readmit
    printf 'url = "http://127.0.0.1:%s/api/v1/nodes/bench-agent-%s/%s"\ndata = "{\\"reason\\":\\"bench\\"}"\nheader = "Content-Type: application/json"\noutput = /dev/null\nwrite-out = "%%{http_code}\\n"\n' \
        "$RD_PORT" "$a" "$op" >>"$WORK/actions.curl"
    [ "$i" -lt "$EVENTS" ] && echo next >>"$WORK/actions.curl"
done
sent0=$(metric recoveryd_events_sent_total)
cpu0=$(bench_cpu_ns "$RD_PID")
t0=$(date +%s.%N)
ok=$(curl -s -K "$WORK/actions.curl" | grep -c '^200$' || true)
t1=$(date +%s.%N)
[ "$ok" = "$EVENTS" ] || { echo "bench: $ok of $EVENTS actions succeeded" >&2; exit 1; }
# Until every stream has every event (the engine's count of frames sent).
want=$((sent0 + EVENTS * STREAMS))
for _ in $(seq 1 600); do [ "$(metric recoveryd_events_sent_total)" -ge "$want" ] && break; sleep 0.1; done
cpu1=$(bench_cpu_ns "$RD_PID")
rss2=$(rss_kib "$RD_PID")
touch "$WORK/stop"
wait "$PY_PID"
bench_forget "$PY_PID"
read -r min max <"$WORK/streams.out"
printf 'events: %s actions in %.2f s; every stream got %s to %s node events (want %s)\n' \
    "$EVENTS" "$(echo "$t1 - $t0" | bc)" "$min" "$max" "$EVENTS"
printf 'engine CPU: %.2f us per event delivered (actions and streams together), %.1f ms per action\n' \
    "$(echo "($cpu1 - $cpu0) / 1000 / ($EVENTS * $STREAMS)" | bc -l)" \
    "$(echo "($cpu1 - $cpu0) / 1000000 / $EVENTS" | bc -l)"
printf 'engine RSS after the flow: %s KiB; ring %s events, %s bytes; streams dropped: %s\n' \
    "$rss2" "$(metric recoveryd_events_ring_events)" "$(metric recoveryd_events_ring_bytes)" \
    "$(metric 'recoveryd_events_streams_ended_total{reason="behind"}')"
[ "$min" -ge "$EVENTS" ] || { echo "bench: a stream missed events" >&2; exit 1; }
