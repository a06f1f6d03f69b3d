#!/bin/bash
# Replication: checkpoint writes per second and p50/p99 commit latency on 3
# recoveryd replicas (raft, fsync on every commit, data dirs on the real
# disk), at 1, 16 and 256 writes in flight over HTTP/2 to the leader; and in
# the same run three references, each a cluster of 3 on loopback:
# - libraft alone (rawraft.c): the same patched libraft with recoveryd's
#   settings and a state machine that only counts, N raft_apply in flight on
#   the leader: the library's own commit rate, no HTTP, no JSON;
# - etcd (Debian's etcd-server) through its own gRPC client (etcdput.go,
#   clientv3, built offline from Debian's golang-etcd-server-dev): etcd's
#   fastest path, puts of the same value size and concurrency;
# - etcd through its JSON gateway, driven by the same client as recoveryd
#   (loadgen.c): etcd 3.4's gateway speaks HTTP/1.1 only (HTTP/2 on its
#   cleartext client port goes to gRPC), so one HTTP/1.1 connection per write
#   in flight; h2load's figure for it (--h1, the same concurrency) beside it.
# The clusters run one after the other, never together. The table at the end
# gives them all, the ratios and PASS/FAIL per concurrency.
#
#   tests/bench/replication/run.sh
#   DURATION=5 LEVELS=1,16 tests/bench/replication/run.sh       (a quick run)
#
# Environment: DURATION (10 s measured per level), WARMUP (1 s per level),
# LEVELS (1,16,256), SIZE (256: bytes of the stored value: recoveryd's
# checkpoint data as JSON, etcd's value before base64), RD_PROTO (h2; h1 to
# drive recoveryd over HTTP/1.1 like etcd), NICE (0; -10 as root runs the
# servers and the clients ahead of everything else on a shared machine),
# BUILD (build-bench), KEEP_LOGS (a directory to copy the servers' logs to, and
# the core file of a replica that crashed: core dumps are enabled with it),
# RD_CONFIG_EXTRA (YAML appended to every replica's configuration, for
# experiments: empty by default, the shipped defaults are what is measured),
# RD_TLS (1: the replicas talk raft over mutual TLS, certificates from
# deploy/make-certs.sh; docs/security.md), RD_ONLY (1: recoveryd only, no
# etcd run and no comparison table: for recoveryd against itself), RD_AB (1:
# recoveryd a second time with cluster.group_commit false, before libraft:
# group commit's own effect in the same run), RD_AB_CLUSTER (the lines under
# cluster: of that second run instead, e.g. "  group_commit_delay: 0ms").
# tests/bench/lib/common.sh does what every benchmark's script does.
#
# After the recoveryd run, one line per replica: its peak RSS (VmHWM, read
# just before it is stopped), the snapshot files libraft wrote in its data
# dir during the run (sampled every 50 ms; libraft keeps the last two) and,
# among them, the snapshot installs it received from the leader (its
# snapshot_restored log events); etcd's members get their peak RSS too.
#
# Targets (issue 16, "Replicated writes at depth"): recoveryd's throughput at
# least 2x etcd's gRPC path at every concurrency, and at least 70% of
# libraft alone at 256 in flight (the ratio is printed at every level). The
# gateway figures are printed for comparison with earlier runs. Exit status:
# 0 when the run took place
# (whatever the figures), 3 when an acknowledged checkpoint version was
# missing at the end, 1 on a setup error.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
LEVELS=${LEVELS:-1,16,256}
SIZE=${SIZE:-256}
RD_PROTO=${RD_PROTO:-h2}

scripts/bootstrap --bench
# etcd and h2load: installed here when missing (not build dependencies).
need=""
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
command -v h2load >/dev/null 2>&1 || need="$need nghttp2-client"
if [ -n "$need" ]; then
    echo "bench: installing$need" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
bench_build recoveryd heartbeat health_probe metrics log bench_replication_loadgen \
    bench_replication_rawraft
bench_workdir repl disk
# shellcheck disable=SC2317 # run at exit by common.sh
bench_on_exit() {
    if [ -n "${KEEP_LOGS:-}" ]; then
        mkdir -p "$KEEP_LOGS"
        cp "$WORK"/*.log "$WORK"/*.snapshots "$KEEP_LOGS"/ 2>/dev/null || true
        for c in "$WORK"/rd?/core*; do [ -f "$c" ] && cp "$c" "$KEEP_LOGS/$(basename "$(dirname "$c")")-$(basename "$c")"; done
    fi
}

# log_summary FILE LINES: the warnings and errors among the first LINES lines
# (those written before the shutdown), by event (recoveryd) or message (etcd).
log_summary() {
    local f=$1 what
    what=$(bench_log_events "$f" "$2")
    echo "$(basename "$f" .log) log during the run: ${what:-no warnings or errors}"
}

# peak_rss PID: the process's peak resident set (VmHWM) in MiB, or "n/a" once it is gone.
peak_rss() {
    awk '/^VmHWM:/ { printf "%.1f MiB", $2 / 1024; f = 1 } END { if (!f) printf "n/a" }' \
        "/proc/$1/status" 2>/dev/null || echo "n/a"
}

# snapshot_watch: every 50 ms, the name of each snapshot file new in a
# replica's raft dir (libraft keeps only the last two) appended to rdN.snapshots.
snapshot_watch() {
    local i f
    declare -A seen
    while :; do
        for i in 1 2 3; do
            for f in "$WORK/rd$i/data/raft"/snapshot-*.meta; do
                [ -e "$f" ] && [ -z "${seen[rd$i/${f##*/}]:-}" ] || continue
                seen[rd$i/${f##*/}]=1
                echo "${f##*/}" >>"$WORK/rd$i.snapshots"
            done
        done
        sleep 0.05
    done
}

bench_raise_nofile
[ -z "${KEEP_LOGS:-}" ] || ulimit -c unlimited 2>/dev/null || true

echo "== replication benchmark: recoveryd (3 replicas) vs etcd (3 members) =="
echo "machine: $(bench_cores), $(free -g | awk '/^Mem:/ { print $2 }') GiB;" \
    "data dirs on $(stat -f -c %T "$WORK") ($WORK); $(bench_now)"
echo "recoveryd built from $(bench_commit), Release; raft $(bench_raft_version)"
echo "etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p') ($(etcd --version 2>/dev/null | sed -n 's/^Go Version: //p'));" \
    "$(h2load --version 2>/dev/null | head -1); libcurl $(curl-config --version 2>/dev/null | sed 's/libcurl //' || echo '?')"
echo "levels $LEVELS in flight, ${DURATION} s each after ${WARMUP} s of warm-up, ${SIZE}-byte values, nice $NICE"
[ -z "${RD_CONFIG_EXTRA:-}" ] || echo "recoveryd configuration added to the defaults: $(tr '\n' ' ' <<<"$RD_CONFIG_EXTRA")"
echo "load average before: $(bench_loadavg)"
# What bounds a write at 1 in flight: an fsync'd append on the leader and on a
# follower (in parallel), on this disk: 500 O_DIRECT|O_DSYNC 4-KiB writes over
# a file written before (as libraft writes into preallocated segments).
dd if=/dev/zero of="$WORK/dsync" bs=4k count=500 2>/dev/null
dsync=$(LC_ALL=C dd if=/dev/zero of="$WORK/dsync" bs=4k count=500 oflag=dsync,direct conv=notrunc 2>&1 |
    awk '/copied/ { print $(NF-3) }')
echo "disk: 500 fsync'd 4-KiB overwrites (dd oflag=dsync,direct) in ${dsync:-?} s:" \
    "$(awk -v t="${dsync:-0}" 'BEGIN { if (t > 0) printf "%.0f writes/s, %.3f ms each", 500 / t, t * 2 }')"
rm -f "$WORK/dsync"
echo

# ---- recoveryd: 3 replicas, the shipped defaults -------------------------------------------
# run_recoveryd OUT EXTRA: one run of the 3 replicas (configuration EXTRA added
# under cluster:), the load generator's output in $WORK/OUT.
run_recoveryd() {
    local out=$1 extra=$2
    rm -rf "$WORK"/rd[123]
    bench_cluster_config 3 "$extra"
    if [ "${RD_TLS:-0}" = 1 ]; then
        "$ROOT/deploy/make-certs.sh" "$WORK/certs" 1 2 3 >/dev/null
        for i in 1 2 3; do
            cp "$WORK/certs/ca.crt" "$WORK/rd$i/ca.crt"
            cp "$WORK/certs/replica-$i.crt" "$WORK/rd$i/replica.crt"
            cp "$WORK/certs/replica-$i.key" "$WORK/rd$i/replica.key"
            sed -i '/^  raft_address:/a\  tls: {ca: ca.crt, cert: replica.crt, key: replica.key}' "$WORK/rd$i/rd.yaml"
        done
        echo "raft transport: mutual TLS (cluster.tls, certificates of deploy/make-certs.sh)"
    else
        echo "raft transport: plain TCP (loopback)"
    fi
    RD_LINES=()
    for i in 1 2 3; do bench_start_replica "$i"; done
    for i in 1 2 3; do bench_wait_replica "$i"; done
    for i in 1 2 3; do : >"$WORK/rd$i.snapshots"; done
    snapshot_watch &
    WATCH_PID=$!
    bench_track "$WATCH_PID"

    LG=("$BUILD_DIR/bin/bench_replication_loadgen" --levels "$LEVELS" --duration "$DURATION"
        --warmup "$WARMUP" --size "$SIZE")
    echo "-- recoveryd: checkpoints (PUT /api/v1/tasks/{id}/checkpoint) to the leader, $RD_PROTO --"
    bench_run "$WORK/$out" "${LG[@]}" --target recoveryd --proto "$RD_PROTO" \
        --url "${RD_URLS[1]}" --url "${RD_URLS[2]}" --url "${RD_URLS[3]}" \
        --pid "${RD_PIDS[1]}" --pid "${RD_PIDS[2]}" --pid "${RD_PIDS[3]}" || rc=$?
    grep -v '^RESULT' "$WORK/$out" || true
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
        echo "bench: the recoveryd load generator failed ($rc)" >&2
        for i in 1 2 3; do tail -5 "$WORK/rd$i.log" >&2; done
        exit 1
    fi
    for i in 1 2 3; do RD_LINES[i]=$(wc -l <"$WORK/rd$i.log"); done
    # A replica that died during the run: how, and the end of its log.
    DIED=""
    for i in 1 2 3; do
        kill -0 "${RD_PIDS[i]}" 2>/dev/null && continue
        st=0
        bench_wait "${RD_PIDS[i]}" || st=$?
        DIED="$DIED rd$i"
        echo "bench: replica rd$i (pid ${RD_PIDS[i]}) DIED during the run: exit status $st$([ "$st" -gt 128 ] && echo " (signal $((st - 128)))"); the end of its log:"
        tail -15 "$WORK/rd$i.log" | sed 's/^/    /'
    done
    bench_stop "$WATCH_PID"
    for i in 1 2 3; do
        files=$(wc -l <"$WORK/rd$i.snapshots")
        installs=$(head -n "${RD_LINES[i]}" "$WORK/rd$i.log" | grep -c 'event=snapshot_restored' || true)
        echo "rd$i: peak RSS $(peak_rss "${RD_PIDS[i]}"); snapshot files written during the run: $files," \
            "of which installs received: $installs (taken: $((files - installs)))"
    done
    # Group commit at work: commands per raft entry (the leader's counters,
    # over all levels and the setup).
    for i in 1 2 3; do
        m=$(curl -sf --max-time 2 "${RD_URLS[i]}/metrics" || true)
        e=$(awk '$1 == "recoveryd_raft_proposed_entries_total" { print $2 }' <<<"$m")
        c=$(awk '$1 == "recoveryd_raft_proposed_commands_total" { print $2 }' <<<"$m")
        d=$(awk '$1 == "recoveryd_raft_group_delayed_entries_total" { print $2 }' <<<"$m")
        [ -n "$e" ] && [ "$e" != 0 ] || continue
        echo "rd$i proposed $c commands in $e raft entries: $(awk -v c="$c" -v e="$e" 'BEGIN { printf "%.1f", c / e }') per entry; ${d:-0} entries waited for the group commit's delay"
    done
    bench_stop "${RD_PIDS[@]}"
    for i in 1 2 3; do log_summary "$WORK/rd$i.log" "${RD_LINES[i]}"; done
    echo
    for i in 1 2 3; do mv "$WORK/rd$i.log" "$WORK/${out%.out}-rd$i.log"; done
}
rc=0
run_recoveryd rd.out "${RD_CONFIG_EXTRA:-}"
AB_CLUSTER=${RD_AB_CLUSTER:-  group_commit: false}
if [ "${RD_AB:-0}" = 1 ]; then
    echo "-- recoveryd again, cluster:$(tr '\n' ' ' <<<"$AB_CLUSTER") --"
    run_recoveryd rd-nogroup.out "$(printf '%s\n%s' "${RD_CONFIG_EXTRA:-}" "$AB_CLUSTER")"
fi
if [ "${RD_ONLY:-0}" = 1 ]; then
    echo "load average after: $(bench_loadavg)"
    grep '^RESULT' "$WORK/rd.out"
    exit "$rc"
fi

# ---- libraft alone: 3 replicas of rawraft.c, recoveryd's raft settings ---------------------
echo "-- libraft alone: raft_apply of ${SIZE}-byte entries on the leader, nothing around it --"
RAW_PIDS=()
RAW_PEERS=()
for i in 1 2 3; do
    bench_free_port RAW_PORT
    RAW_PEERS+=(--peer "$i=127.0.0.1:$RAW_PORT")
done
for i in 1 2 3; do
    mkdir -p "$WORK/raw$i"
    nice -n "$NICE" "$BUILD_DIR/bin/bench_replication_rawraft" --id "$i" --dir "$WORK/raw$i" \
        "${RAW_PEERS[@]}" --levels "$LEVELS" --duration "$DURATION" --warmup "$WARMUP" \
        --size "$SIZE" >"$WORK/raw$i.out" 2>"$WORK/raw$i.log" &
    RAW_PIDS[i]=$!
    bench_track "${RAW_PIDS[i]}"
done
# The leader ends on its own after the last level; the others then stop.
RAW_LEADER=""
while [ -z "$RAW_LEADER" ]; do
    for i in 1 2 3; do
        kill -0 "${RAW_PIDS[i]}" 2>/dev/null && continue
        st=0
        bench_wait "${RAW_PIDS[i]}" || st=$?
        [ "$st" -eq 0 ] || { echo "bench: rawraft $i failed ($st): $(tail -3 "$WORK/raw$i.log")" >&2; exit 1; }
        RAW_LEADER=$i
        break
    done
    sleep 0.2
done
bench_stop "${RAW_PIDS[@]}"
grep -v '^RESULT' "$WORK/raw$RAW_LEADER.out" || true
cp "$WORK/raw$RAW_LEADER.out" "$WORK/raw.out"
echo

# ---- etcd: 3 members, its defaults ----------------------------------------------------------
CL_PORTS=()
PEER_PORTS=()
for i in 1 2 3; do
    bench_free_port "CL_PORTS[$i]"
    bench_free_port "PEER_PORTS[$i]"
done
INITIAL="m1=http://127.0.0.1:${PEER_PORTS[1]},m2=http://127.0.0.1:${PEER_PORTS[2]},m3=http://127.0.0.1:${PEER_PORTS[3]}"
ETCD_PIDS=()
ETCD_URLS=()
ETCD_LINES=()
for i in 1 2 3; do
    ETCD_URLS[i]="http://127.0.0.1:${CL_PORTS[i]}"
    nice -n "$NICE" etcd --name "m$i" --data-dir "$WORK/etcd$i" \
        --listen-client-urls "${ETCD_URLS[i]}" --advertise-client-urls "${ETCD_URLS[i]}" \
        --listen-peer-urls "http://127.0.0.1:${PEER_PORTS[i]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${PEER_PORTS[i]}" \
        --initial-cluster "$INITIAL" --initial-cluster-state new \
        --initial-cluster-token "rd-bench-$$" --logger zap --log-level warn \
        2>"$WORK/etcd$i.log" &
    ETCD_PIDS[i]=$!
    bench_track "${ETCD_PIDS[i]}"
done
for i in 1 2 3; do bench_wait_http "${ETCD_URLS[i]}/health" "${ETCD_PIDS[i]}" "$WORK/etcd$i.log" '"health":"true"'; done
# The leader: the member whose own id is the leader it reports.
LEADER=""
for _ in $(seq 1 100); do
    for i in 1 2 3; do
        st=$(curl -sf --max-time 1 -X POST -d '{}' "${ETCD_URLS[i]}/v3/maintenance/status" || true)
        me=$(sed -n 's/.*"member_id":"\([0-9]*\)".*/\1/p' <<<"$st")
        lead=$(sed -n 's/.*"leader":"\([0-9]*\)".*/\1/p' <<<"$st")
        if [ -n "$me" ] && [ "$me" = "$lead" ]; then LEADER=$i; break 2; fi
    done
    sleep 0.1
done
[ -n "$LEADER" ] || { echo "bench: no etcd member leads" >&2; exit 1; }

echo "-- etcd: puts (POST /v3/kv/put) to the leader m$LEADER, HTTP/1.1 --"
erc=0
bench_run "$WORK/etcd.out" "${LG[@]}" --target etcd --proto h1 --url "${ETCD_URLS[LEADER]}" \
    --pid "${ETCD_PIDS[1]}" --pid "${ETCD_PIDS[2]}" --pid "${ETCD_PIDS[3]}" || erc=$?
grep -v '^RESULT' "$WORK/etcd.out" || true
[ "$erc" -eq 0 ] || { echo "bench: the etcd load generator failed ($erc)" >&2; exit 1; }

# h2load: one key, the same value, -c clients with one request each (HTTP/1.1).
key64=$(printf 'bench/h2load' | base64 -w0)
value64=$(awk -v n="$SIZE" 'BEGIN { for (i = 0; i < n; i++) printf "%c", 97 + (i * 7 + 3) % 26 }' | base64 -w0)
printf '{"key":"%s","value":"%s"}' "$key64" "$value64" >"$WORK/put.json"
echo
echo "-- etcd: h2load --h1 -c N -m 1 -D $DURATION --warm-up-time $WARMUP, the same body size --"
for n in ${LEVELS//,/ }; do
    nice -n "$NICE" h2load --h1 -c "$n" -m 1 -D "$DURATION" --warm-up-time "$WARMUP" \
        -d "$WORK/put.json" -H 'Content-Type: application/json' \
        "${ETCD_URLS[LEADER]}/v3/kv/put" >"$WORK/h2load-$n.out" 2>&1 || true
    # "finished in 10.00s, 1234.50 req/s, ..."; "time for request: min max mean sd ...";
    # "status codes: N 2xx, ..."
    rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$WORK/h2load-$n.out")
    mean=$(awk '/^time for request:/ { print $6 }' "$WORK/h2load-$n.out")
    ok2=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$WORK/h2load-$n.out")
    reqs=$(sed -n 's/^requests: \(.*\)/\1/p' "$WORK/h2load-$n.out")
    echo "etcd (h2load), $n in flight: ${rps:-?} req/s, mean ${mean:-?}; ${ok2:-?} answered 2xx; requests: ${reqs:-?}"
    echo "H2LOAD inflight=$n rate=${rps:-0} mean=${mean:-?}" >>"$WORK/h2load.res"
done
# etcd's own gRPC client (clientv3), built offline from Debian's Go sources.
echo
echo "-- etcd: puts through its gRPC client (clientv3 $(dpkg-query -W -f='${Version}' golang-etcd-server-dev 2>/dev/null), $(go version 2>/dev/null | awk '{ print $3 }')) to the leader m$LEADER --"
mkdir -p "$WORK/go"
GO111MODULE=off GOPATH="$WORK/go:/usr/share/gocode" GOCACHE="${RD_GOCACHE:-$HOME/.cache/rd-bench-go}" GOFLAGS= \
    go build -o "$WORK/etcdput" "$ROOT/tests/bench/replication/etcdput.go"
grc=0
bench_run "$WORK/grpc.out" "$WORK/etcdput" -endpoint "${ETCD_URLS[LEADER]}" -levels "$LEVELS" \
    -duration "$DURATION" -warmup "$WARMUP" -size "$SIZE" \
    -pids "${ETCD_PIDS[1]},${ETCD_PIDS[2]},${ETCD_PIDS[3]}" || grc=$?
grep -v '^RESULT' "$WORK/grpc.out" || true
[ "$grc" -eq 0 ] || { echo "bench: the etcd gRPC client failed ($grc)" >&2; exit 1; }
for i in 1 2 3; do ETCD_LINES[i]=$(wc -l <"$WORK/etcd$i.log"); done
echo "etcd peak RSS: m1 $(peak_rss "${ETCD_PIDS[1]}"), m2 $(peak_rss "${ETCD_PIDS[2]}"), m3 $(peak_rss "${ETCD_PIDS[3]}")"
bench_stop "${ETCD_PIDS[@]}"
for i in 1 2 3; do log_summary "$WORK/etcd$i.log" "${ETCD_LINES[i]}"; done
echo "load average after: $(bench_loadavg)"

# ---- the table ----------------------------------------------------------------------------
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
echo
echo "== results: ${DURATION} s per level, ${SIZE}-byte values; latency from send to answer (ms) =="
printf '%-9s | %-27s | %-27s | %-27s | %-18s | %-9s | %-9s | %s\n' "" "recoveryd (3, $RD_PROTO)" \
    "etcd gRPC (3, clientv3)" "libraft alone (3)" "etcd gateway/h2load" "rd/gRPC" "rd/raft" ""
printf '%-9s | %10s %7s %8s | %10s %7s %8s | %10s %7s %8s | %8s %9s | %-9s | %-9s | %s\n' "in flight" \
    "writes/s" "p50" "p99" "puts/s" "p50" "p99" "commits/s" "p50" "p99" "gateway" "h2load" \
    "(>= 2)" "(>= 0.7)" "verdict"
for n in ${LEVELS//,/ }; do
    r=$(grep "^RESULT target=recoveryd inflight=$n " "$WORK/rd.out" || true)
    g=$(grep "^RESULT target=etcd-grpc inflight=$n " "$WORK/grpc.out" || true)
    l=$(grep "^RESULT target=libraft inflight=$n " "$WORK/raw.out" || true)
    e=$(grep "^RESULT target=etcd inflight=$n " "$WORK/etcd.out" || true)
    h=$(grep "^H2LOAD inflight=$n " "$WORK/h2load.res" || true)
    awk -v n="$n" -v rr="$(field rate "$r")" -v r50="$(field p50_us "$r")" -v r99="$(field p99_us "$r")" \
        -v gr="$(field rate "$g")" -v g50="$(field p50_us "$g")" -v g99="$(field p99_us "$g")" \
        -v lr="$(field rate "$l")" -v l50="$(field p50_us "$l")" -v l99="$(field p99_us "$l")" \
        -v er="$(field rate "$e")" -v hr="$(field rate "$h")" 'BEGIN {
        grpc = gr + 0 > 0 ? rr / gr : 0
        raft = lr + 0 > 0 ? rr / lr : 0
        ok = grpc >= 2 && (n != 256 || raft >= 0.7)
        printf "%-9s | %10.1f %7.2f %8.2f | %10.1f %7.2f %8.2f | %10.1f %7.2f %8.2f | %8.1f %9.1f | %9.2f | %9.2f | %s\n",
            n, rr, r50 / 1000, r99 / 1000, gr, g50 / 1000, g99 / 1000, lr, l50 / 1000, l99 / 1000,
            er, hr, grpc, raft, ok ? "PASS" : "FAIL"
    }'
done | tee "$WORK/table.txt"
echo "(verdict: PASS when recoveryd's writes/s is at least 2x etcd's gRPC puts/s and, at 256 in"
echo " flight, at least 0.7x libraft alone's commits/s)"
if [ -f "$WORK/rd-nogroup.out" ]; then
    echo
    echo "the defaults against cluster:$(tr '\n' ' ' <<<"$AB_CLUSTER") (RD_AB=1, the same run):"
    for n in ${LEVELS//,/ }; do
        r=$(grep "^RESULT target=recoveryd inflight=$n " "$WORK/rd.out" || true)
        o=$(grep "^RESULT target=recoveryd inflight=$n " "$WORK/rd-nogroup.out" || true)
        awk -v n="$n" -v rr="$(field rate "$r")" -v orr="$(field rate "$o")" -v r99="$(field p99_us "$r")" \
            -v o99="$(field p99_us "$o")" -v rc="$(field cpu_us "$r")" -v oc="$(field cpu_us "$o")" 'BEGIN {
            x = orr + 0 > 0 ? rr / orr : 0
            printf "%-4s in flight: %9.1f writes/s (p99 %.2f ms, %.1f us CPU/write) defaults, %9.1f (p99 %.2f ms, %.1f us) the other: x%.2f\n",
                n, rr, r99 / 1000, rc, orr, o99 / 1000, oc, x
        }'
    done
fi
printf '\n%-9s | %-26s | %-26s | %-26s | %s\n' "in flight" "recoveryd server CPU/write" \
    "etcd server CPU/put, gRPC" "etcd server CPU/put, gateway" "machine busy (rd / etcd gateway)"
for n in ${LEVELS//,/ }; do
    r=$(grep "^RESULT target=recoveryd inflight=$n " "$WORK/rd.out" || true)
    g=$(grep "^RESULT target=etcd-grpc inflight=$n " "$WORK/grpc.out" || true)
    e=$(grep "^RESULT target=etcd inflight=$n " "$WORK/etcd.out" || true)
    # 0: a server process was gone by the end of the window (no figure).
    cpu() { sed -n 's/.* cpu_us=\([^ ]*\).*/\1/p' <<<"$1" | sed 's/^0\.0$/n\/a/'; }
    printf '%-9s | %23s us | %23s us | %23s us | %s / %s of %s cores\n' "$n" "$(cpu "$r")" "$(cpu "$g")" \
        "$(cpu "$e")" "$(field busy_cores "$r")" "$(field busy_cores "$e")" "$(nproc)"
done
[ -z "$DIED" ] || echo "WARNING: recoveryd replica(s)$DIED died during the run (see above): the figures" \
    "after that moment are of the replicas left"
if grep -q FAIL "$WORK/table.txt"; then
    echo "FAIL recoveryd below a target at some concurrency"
else
    echo "PASS recoveryd at 2x etcd's gRPC path at every concurrency and 0.7x libraft at 256"
fi
exit "$rc"
