#!/bin/bash
# Heartbeat ingest cost: recoveryd's POST /api/v1/nodes/{id}/heartbeat with
# 1,000 registered agents, against h2o's own server (Debian's h2o 2.2.5, one
# thread) sending a tiny static file, with the same h2load settings, in the
# same run. Prints requests/s and server CPU microseconds per request (from
# /proc/PID/schedstat, nanosecond resolution) and the ratios.
#
#   tests/bench/heartbeats/run.sh [REQUESTS]      (default 400000)
#
# Environment: CLIENTS (50), STREAMS (10), NODES (1000), BUILD (build-bench).
# tests/bench/lib/common.sh does what every benchmark's script does.
#
# Target (issue 2): heartbeat CPU per request <= 1.5x the static file's.
# Then (issue 12): the same heartbeats on an engine with a token file, each
# carrying an agent token, against the open engine, in turns: target
# <= 1.10x the CPU per request.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
N=${1:-400000}
CLIENTS=${CLIENTS:-50}
STREAMS=${STREAMS:-10}
NODES=${NODES:-1000}

scripts/bootstrap --bench
bench_build recoveryd heartbeat health_probe metrics log
bench_workdir hb

# run_load NAME PID ARGS... : runs h2load, prints one result line
run_load() {
    local name=$1 pid=$2
    shift 2
    local before after out
    before=$(bench_cpu_ns "$pid")
    out=$(h2load "$@" 2>&1)
    after=$(bench_cpu_ns "$pid")
    local rps ok
    rps=$(echo "$out" | awk '/^finished in/ {gsub(",","",$4); print $4}')
    ok=$(echo "$out" | awk '/^status codes:/ {print $3}')
    local failed
    failed=$(echo "$out" | awk '/^requests:/ {print $10}')
    if [ "${failed:-1}" != "0" ]; then
        echo "$out" >&2
        echo "bench: $name had failed requests" >&2
        exit 1
    fi
    local us
    us=$(awk -v a="$before" -v b="$after" -v n="$ok" 'BEGIN {printf "%.3f", (b - a) / 1000 / n}')
    printf '%-34s %10s req/s %8s us CPU/req  (%s 2xx)\n' "$name" "$rps" "$us" "$ok"
    echo "$name $rps $us" >>"$WORK/results"
}

# ---- recoveryd ----------------------------------------------------------
bench_free_port RD_PORT
bench_free_port RAFT_PORT
# The default detectors all run (the hot path includes them); a long
# heartbeat interval keeps the agents from being judged while h2load is busy
# with h2o's turn.
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

# Register the agents over one keep-alive connection.
: >"$WORK/register.curl"
for i in $(seq 1 "$NODES"); do
    printf 'url = "http://127.0.0.1:%s/api/v1/nodes"\ndata = "{\\"node_id\\":\\"bench-%s\\",\\"capacity\\":{\\"slots\\":8}}"\nheader = "Content-Type: application/json"\noutput = /dev/null\nwrite-out = "%%{http_code}\\n"\n' \
        "$RD_PORT" "$i" >>"$WORK/register.curl"
    [ "$i" -lt "$NODES" ] && echo next >>"$WORK/register.curl"
done
created=$(curl -s -K "$WORK/register.curl" | grep -c '^201$' || true)
if [ "$created" != "$NODES" ]; then
    echo "bench: registered $created of $NODES agents" >&2
    exit 1
fi
for i in $(seq 1 "$NODES"); do
    echo "http://127.0.0.1:$RD_PORT/api/v1/nodes/bench-$i/heartbeat"
done >"$WORK/uris"
echo '{"epoch":1,"load":{"slots_used":3},"metrics":{"error_rate":0.01,"latency_ms":42.5,"cpu":0.4,"mem":0.5}}' >"$WORK/hb.json"

# ---- h2o reference ------------------------------------------------------
bench_free_port H2O_PORT
mkdir -p "$WORK/www"
printf 'ok' >"$WORK/www/index.txt"
cat >"$WORK/h2o.conf" <<CONF
num-threads: 1
listen:
  host: 127.0.0.1
  port: $H2O_PORT
hosts:
  default:
    paths:
      /:
        file.dir: $WORK/www
access-log: /dev/null
error-log: $WORK/h2o-error.log
user: $(id -un)
CONF
h2o -c "$WORK/h2o.conf" >"$WORK/h2o.out" 2>&1 &
H2O_PID=$!
bench_track "$H2O_PID"
bench_wait_http "http://127.0.0.1:$H2O_PORT/index.txt" "$H2O_PID" "$WORK/h2o-error.log"
# With num-threads: 1 h2o serves from this process (no worker is forked).

echo "recoveryd heartbeat benchmark: $N requests, $NODES agents, $(nproc) cores, $(bench_now)"
echo "h2load -c $CLIENTS -m $STREAMS (h2c prior knowledge) and --h1 -c $CLIENTS (HTTP/1.1 keep-alive)"
: >"$WORK/results"
# Warm-up, so page faults and first allocations do not count.
h2load -n 20000 -c "$CLIENTS" -m "$STREAMS" -d "$WORK/hb.json" -H 'content-type: application/json' -i "$WORK/uris" >/dev/null
h2load -n 20000 -c "$CLIENTS" -m "$STREAMS" "http://127.0.0.1:$H2O_PORT/index.txt" >/dev/null

for round in 1 2; do
    run_load "h2c   recoveryd heartbeat #$round" "$RD_PID" -n "$N" -c "$CLIENTS" -m "$STREAMS" \
        -d "$WORK/hb.json" -H 'content-type: application/json' -i "$WORK/uris"
    run_load "h2c   h2o static file #$round" "$H2O_PID" -n "$N" -c "$CLIENTS" -m "$STREAMS" \
        "http://127.0.0.1:$H2O_PORT/index.txt"
    run_load "http1 recoveryd heartbeat #$round" "$RD_PID" --h1 -n "$((N / 2))" -c "$CLIENTS" \
        -d "$WORK/hb.json" -H 'content-type: application/json' -i "$WORK/uris"
    run_load "http1 h2o static file #$round" "$H2O_PID" --h1 -n "$((N / 2))" -c "$CLIENTS" \
        "http://127.0.0.1:$H2O_PORT/index.txt"
done

beats=$(curl -s "http://127.0.0.1:$RD_PORT/metrics" | awk '/^recoveryd_heartbeats_total/ {print $2}')
echo "recoveryd_heartbeats_total after the run: $beats"
awk '
  { split($0, f, " "); proto = f[1]; kind = ($2 == "recoveryd") ? "rd" : "h2o";
    rps[proto, kind] += f[NF-1]; us[proto, kind] += f[NF]; n[proto, kind]++ }
  END {
    split("h2c http1", ps, " ");
    for (i = 1; i <= 2; i++) {
      pr = ps[i];
      ru = us[pr, "rd"] / n[pr, "rd"]; hu = us[pr, "h2o"] / n[pr, "h2o"];
      rr = rps[pr, "rd"] / n[pr, "rd"]; hr = rps[pr, "h2o"] / n[pr, "h2o"];
      printf "%-6s mean: recoveryd %.3f us/req %.0f req/s | h2o %.3f us/req %.0f req/s | CPU ratio %.2fx (target <= 1.50) | throughput ratio %.2f\n", pr, ru, rr, hu, hr, ru / hu, rr / hr
    }
  }' "$WORK/results"

# ---- authentication on versus off (issue 12, docs/security.md) -----------------
# A second engine with a token file: every heartbeat carries an agent token
# (nodes=bench-*) that is hashed, looked up and matched against the node in
# the path. Both engines take turns in the same run; the ratio of their CPU
# per request is the cost of authentication (target: at most 1.10).
SECRET=$("$BUILD_DIR/bin/recoveryd" token new --id bench-agents --role agent --nodes 'bench-*' |
    tee "$WORK/token.out" | sed -n 's/^secret: //p')
sed -n 's/^line: *//p' "$WORK/token.out" >"$WORK/tokens"
bench_free_port RD2_PORT
bench_free_port RAFT2_PORT
cat >"$WORK/rd2.yaml" <<YAML
cluster:
  raft_address: 127.0.0.1:$RAFT2_PORT
logging:
  level: warn
fault_tolerance:
  detection:
    heartbeat_interval: 1h
security:
  tokens_file: $WORK/tokens
YAML
nice -n "$NICE" "$BUILD_DIR/bin/recoveryd" --config "$WORK/rd2.yaml" \
    --listen "127.0.0.1:$RD2_PORT" --data-dir "$WORK/rd2-data" \
    --plugins-dir "$BUILD_DIR/plugins" 2>"$WORK/rd2.log" &
RD2_PID=$!
bench_track "$RD2_PID"
bench_wait_http "http://127.0.0.1:$RD2_PORT/ready" "$RD2_PID" "$WORK/rd2.log"
sed -e "s/:$RD_PORT\//:$RD2_PORT\//" "$WORK/register.curl" |
    awk -v h="header = \"Authorization: Bearer $SECRET\"" '{print} /^header = "Content-Type/ {print h}' \
        >"$WORK/register2.curl"
created=$(curl -s -K "$WORK/register2.curl" | grep -c '^201$' || true)
if [ "$created" != "$NODES" ]; then
    echo "bench: registered $created of $NODES agents with a token" >&2
    exit 1
fi
sed "s/:$RD_PORT\//:$RD2_PORT\//" "$WORK/uris" >"$WORK/uris2"
# The second engine gets the first one's warm-up (20,000 requests and the
# rounds above) before the two are compared.
h2load -n "$N" -c "$CLIENTS" -m "$STREAMS" -d "$WORK/hb.json" -H 'content-type: application/json' \
    -H "authorization: Bearer $SECRET" -i "$WORK/uris2" >/dev/null
: >"$WORK/results"
for round in 1 2 3; do
    run_load "h2c   auth off heartbeat #$round" "$RD_PID" -n "$N" -c "$CLIENTS" -m "$STREAMS" \
        -d "$WORK/hb.json" -H 'content-type: application/json' -i "$WORK/uris"
    run_load "h2c   auth on  heartbeat #$round" "$RD2_PID" -n "$N" -c "$CLIENTS" -m "$STREAMS" \
        -d "$WORK/hb.json" -H 'content-type: application/json' -H "authorization: Bearer $SECRET" \
        -i "$WORK/uris2"
done
awk '{ k = $3; us[k] += $NF; rps[k] += $(NF-1); n[k]++ }
  END { printf "auth   mean: on %.3f us/req %.0f req/s | off %.3f us/req %.0f req/s | CPU ratio %.2fx (target <= 1.10)\n",
        us["on"] / n["on"], rps["on"] / n["on"], us["off"] / n["off"], rps["off"] / n["off"],
        (us["on"] / n["on"]) / (us["off"] / n["off"]) }' "$WORK/results"
