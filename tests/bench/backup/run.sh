#!/bin/bash
# Backups, archiving and consistency checks (issue 11), on one recoveryd
# (single replica, data dir on the real disk) with a `file` backup target:
#
#   1. a large state (NODES agents, TASKS tasks each with one SIZE-byte
#      checkpoint, loaded over HTTP/2 with curl and h2load); backup time from
#      POST /api/v1/backup/trigger to the record's `completed` (polled every
#      10 ms) and MB/s of the image, REPS times; restore time of `recoveryd
#      restore --from file://...`; then, in the same run, etcd 3.4 (Debian's
#      etcd-server, one member) holding as many value bytes as the state
#      (ETCD_BYTES); every checkpoint holds the same data (one h2load body),
#      so the image compresses far better than varied data would:
#      `etcdctl snapshot save` and `etcdctl snapshot restore` (etcd 3.4 has no
#      etcdutl);
#   2. heartbeat latency p50/p99 (h2load --log-file, HB_CLIENTS in flight over
#      the registered agents) for HB_SECONDS without a backup and for
#      HB_SECONDS with backups triggered back to back;
#   3. POST /api/v1/consistency/check to its verdict on that state, REPS times,
#      and bench_backup_digest (rd_fsm_digest vs rd_fsm_digest_full at 1k,
#      100k and 1M records, and the loop-side serialisation and the zstd pack
#      of a backup of those states);
#   4. archive lag at ARCH_RATE checkpoint writes/s (h2load --rps, one connection) for ARCH_SECONDS on a
#      fresh engine with archiving on (max_delay 1 s): recoveryd_archive_lag_seconds
#      sampled from /metrics every 100 ms, p50/p99/max of the samples.
#
#   tests/bench/backup/run.sh
#   NODES=1000 TASKS=10000 tests/bench/backup/run.sh        (a quick run)
#
# Environment: NODES (10000), TASKS (100000), SIZE (256), REPS (3),
# HB_SECONDS (15), HB_CLIENTS (8), ARCH_RATE (1000), ARCH_SECONDS (30),
# ARCH_TASKS (ARCH_SECONDS x ARCH_RATE: one round),
# DIGEST_SIZES ("1000 100000 1000000"), ETCD_BYTES (raw: etcd's values add up
# to the engine's raw state bytes; image: to its zstd image's bytes),
# CPU_SHARE (10: fault_tolerance.backup.cpu_share, the engine's default),
# NICE, BUILD. Targets: heartbeat p99 during backups within 2x of without;
# archive lag p99 <= 1 s. Exit status 0 when the run took place.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
NODES=${NODES:-10000}
TASKS=${TASKS:-100000}
SIZE=${SIZE:-256}
REPS=${REPS:-3}
HB_SECONDS=${HB_SECONDS:-15}
HB_CLIENTS=${HB_CLIENTS:-8}
ARCH_RATE=${ARCH_RATE:-1000}
ARCH_SECONDS=${ARCH_SECONDS:-30}
DIGEST_SIZES=${DIGEST_SIZES:-1000 100000 1000000}
ETCD_BYTES=${ETCD_BYTES:-raw}
CPU_SHARE=${CPU_SHARE:-10}
# One h2load over as many tasks as the run writes: no pause between rounds.
ARCH_TASKS=${ARCH_TASKS:-$((ARCH_SECONDS * ARCH_RATE))}

for c in etcd etcdctl h2load; do
    command -v "$c" >/dev/null || { echo "bench: $c missing (apt-get install etcd-server etcd-client nghttp2-client)" >&2; exit 1; }
done
bench_build recoveryd heartbeat file bench_backup_digest
bench_workdir backup disk
bench_raise_nofile
API=""

ms() { date +%s%3N; }
json_field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$2"; }
# pcts FILE: p50, p99 and max of the numbers in FILE's first column.
pcts() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (!NR) { print "n/a"; exit }
    i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999)
    printf "p50 %s p99 %s max %s (%d samples)", v[i50], v[i99], v[NR], NR }'; }

# engine_config ARCHIVE_YAML: $WORK/rd.yaml with the file target in $WORK/bk.
# shellcheck disable=SC2153 # RAFT_PORT is set by bench_free_port
engine_config() {
    bench_free_port RD_PORT
    bench_free_port RAFT_PORT
    API="http://127.0.0.1:$RD_PORT"
    cat >"$WORK/rd.yaml" <<YAML
cluster:
  raft_address: 127.0.0.1:$RAFT_PORT
logging:
  level: warn
fault_tolerance:
  detection:
    heartbeat_interval: 1h
  backup:
    interval: 24h
    consistency_check_interval: 24h
    cpu_share: $CPU_SHARE%
    archive: $1
plugins:
  instances:
    - {name: heartbeat, required: true}
    - {name: local, plugin: file, config: {dir: "$WORK/bk"}}
YAML
}

# backup: triggers one, waits for `completed`; "ms size fork_seconds" on stdout.
# A trigger while a run is in flight waits in the queue: its record appears
# (404 until then) once it began. The wait polls every 50 ms with one curl and
# bash's own matching: the driver must cost the machine little, or the
# heartbeats measured beside it pay for the driver, not for the backup.
backup() {
    local t0 r id st="" rec code re='"status":"([a-z_]*)"'
    t0=$(ms)
    r=$(curl -s -XPOST "$API/api/v1/backup/trigger")
    [[ $r =~ \"backup_id\":\"([^\"]*)\" ]] && id=${BASH_REMATCH[1]}
    [ -n "${id:-}" ] || { echo "bench: trigger refused: $r" >&2; return 1; }
    while :; do
        rec=$(curl -s -w '\n%{http_code}' "$API/api/v1/backups/$id")
        code=${rec##*$'\n'}
        rec=${rec%$'\n'*}
        st=""
        [[ $rec =~ $re ]] && st=${BASH_REMATCH[1]}
        [ "$code" = 404 ] || [ "$st" = running ] || break
        sleep 0.05
    done
    [ "$st" = completed ] || { echo "bench: backup $id: $code $rec" >&2; return 1; }
    echo "$(($(ms) - t0)) $(json_field size "$rec")" \
        "$(curl -sf "$API/metrics" | awk '/^recoveryd_backup_fork_seconds / { print $2 }')"
}

# load_tasks N BODY_FILE: N tasks (server-chosen ids) and one checkpoint each.
load_tasks() {
    h2load -n "$1" -c 1 -m 32 -d "$WORK/task.json" -H 'content-type: application/json' \
        "$API/api/v1/tasks" | grep -q "status codes: $1 2xx" || { echo "bench: task submission failed" >&2; exit 1; }
    local cursor="" page
    : >"$WORK/ck.uris"
    while :; do
        page=$(curl -sf "$API/api/v1/tasks?limit=1000${cursor:+&cursor=$cursor}")
        grep -o '"task_id":"[^"]*"' <<<"$page" | cut -d'"' -f4 |
            sed "s|^|$API/api/v1/tasks/|; s|\$|/checkpoint|" >>"$WORK/ck.uris"
        cursor=$(json_field next_cursor "$page")
        if [ -z "$cursor" ] || [ "$cursor" = null ]; then break; fi
    done
    h2load -n "$(wc -l <"$WORK/ck.uris")" -c 1 -m 32 -d "$2" -H ':method: PUT' \
        -H 'content-type: application/json' -i "$WORK/ck.uris" >"$WORK/ck.out"
    grep '^status codes' "$WORK/ck.out"
}

# ck_body FILE VERSION: a checkpoint whose data is SIZE bytes of JSON.
ck_body() {
    printf '{"attempt":1,"version":%s,"data":{"blob":"%s"}}' "$2" \
        "$(head -c $((SIZE * 2)) /dev/urandom | base64 -w0 | head -c $((SIZE - 11)))" >"$1"
}

echo "== backup benchmark: recoveryd (1 replica, file target) vs etcd 3.4 (1 member) =="
echo "machine: $(bench_cores), $(free -g | awk '/^Mem:/ { print $2 }') GiB; data on $(stat -f -c %T "$WORK") ($WORK); $(bench_now)"
echo "recoveryd built from $(bench_commit), Release; raft $(bench_raft_version); etcd $(etcd --version | sed -n 's/^etcd Version: //p')"
echo "state: $NODES agents, $TASKS tasks with one ${SIZE}-byte checkpoint each; load average before: $(bench_loadavg)"
echo

# ---- 1. the large state, backups and restore ------------------------------------------
engine_config '{target: ""}'
bench_start_engine --policies-dir "$ROOT/policies"
t0=$(ms)
: >"$WORK/register.curl"
slots=$(((TASKS + NODES - 1) / NODES + 1))
for i in $(seq 1 "$NODES"); do
    [ "$i" -eq 1 ] || echo next >>"$WORK/register.curl"
    printf 'url = "%s/api/v1/nodes"\ndata = "{\\"node_id\\":\\"bench-%s\\",\\"capacity\\":{\\"slots\\":%s}}"\nheader = "Content-Type: application/json"\noutput = /dev/null\nwrite-out = "%%{http_code}\\n"\n' \
        "$API" "$i" "$slots" >>"$WORK/register.curl"
done
created=$(curl -s -K "$WORK/register.curl" | grep -c '^201$' || true)
[ "$created" = "$NODES" ] || { echo "bench: registered $created of $NODES agents" >&2; exit 1; }
echo '{"priority":5,"payload":{"bench":"backup"},"requirements":{"slots":1}}' >"$WORK/task.json"
ck_body "$WORK/ck1.json" 1
echo "checkpoints: $(load_tasks "$TASKS" "$WORK/ck1.json")"
echo "loaded in $((($(ms) - t0) / 1000)) s; engine RSS $(awk '/^VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$RD_PID/status");" \
    "raft dir $(du -sm "$WORK/rd-data" | cut -f1) MiB"

echo "-- backups (trigger to completed), $REPS times --"
: >"$WORK/backups"
for r in $(seq 1 "$REPS"); do
    read -r took size _ < <(backup)
    echo "$took $size" >>"$WORK/backups"
    awk -v t="$took" -v s="$size" -v r="$r" 'BEGIN { printf "backup %d: %d ms, image %.2f MB (zstd), %.1f MB/s\n", r, t, s / 1e6, s / 1e6 / (t / 1000) }'
done
IMG=$(tail -1 "$WORK/backups" | cut -d' ' -f2)
# The state's raw bytes: the image header's u64 raw length (engine/fsm/snapshot.c).
IMGS=("$WORK"/bk/backups/*.img)
RAW=$(od -An -tu8 -j12 -N8 "${IMGS[0]}" | tr -d ' ')
awk -v r="$RAW" -v s="$IMG" 'BEGIN { printf "state %.2f MB raw (the snapshot encoding before zstd), image %.2f MB: %.1fx\n", r / 1e6, s / 1e6, r / s }'
awk -v r="$RAW" '{ printf "backup %d: %.1f MB/s of raw state\n", NR, r / 1e6 / ($1 / 1000) }' "$WORK/backups"
echo "-- restore: recoveryd restore --from file://$WORK/bk --data-dir ... --replica-id 1 --"
t0=$(ms)
bench_run "$WORK/restore.out" "$BUILD_DIR/bin/recoveryd" restore --from "file://$WORK/bk" \
    --data-dir "$WORK/restored" --replica-id 1 --plugins-dir "$BUILD_DIR/plugins" 2>"$WORK/restore.err" ||
    { cat "$WORK/restore.err" >&2; exit 1; }
took=$(($(ms) - t0))
awk -v t="$took" -v s="$IMG" -v r="$RAW" 'BEGIN { printf "restore: %d ms, %.1f MB/s of image, %.1f MB/s of raw state\n", t, s / 1e6 / (t / 1000), r / 1e6 / (t / 1000) }'
echo "restored data dir: $(du -sm "$WORK/restored" | cut -f1) MiB"

# ---- 2. heartbeats with and without backups ----------------------------------------------
echo
echo "-- heartbeats: h2load -c $HB_CLIENTS -m 1 -D $HB_SECONDS over $NODES agents --"
for i in $(seq 1 "$NODES"); do echo "$API/api/v1/nodes/bench-$i/heartbeat"; done >"$WORK/hb.uris"
echo '{"epoch":1,"load":{"slots_used":1}}' >"$WORK/hb.json"
hb_run() {
    h2load -c "$HB_CLIENTS" -m 1 -D "$HB_SECONDS" -d "$WORK/hb.json" -H 'content-type: application/json' \
        -i "$WORK/hb.uris" --log-file "$WORK/hb-$1.log" >"$WORK/hb-$1.out"
    awk -F'\t' '$2 != 200 { bad++ } { print $3 / 1000 } END { if (bad) print bad " non-200" > "/dev/stderr" }' \
        "$WORK/hb-$1.log" >"$WORK/hb-$1.ms"
    echo "$1: $(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$WORK/hb-$1.out") req/s; latency ms $(pcts "$WORK/hb-$1.ms");" \
        "$(awk '$1 > 100 { n++ } END { print n + 0 }' "$WORK/hb-$1.ms") of $(wc -l <"$WORK/hb-$1.ms") over 100 ms"
}
hb_run idle
( while :; do backup >>"$WORK/hb-backups" || exit 1; done ) &
BK_LOOP=$!
bench_track "$BK_LOOP"
hb_run backups
bench_stop "$BK_LOOP"
echo "backups completed during the second run: $(wc -l <"$WORK/hb-backups")," \
    "$(awk '{ s += $1 } END { printf "%.0f ms each on average", NR ? s / NR : 0 }' "$WORK/hb-backups")"
awk '{ print $3 * 1000 }' "$WORK/hb-backups" >"$WORK/fork-ms"
echo "the loop's share of each backup (recoveryd_backup_fork_seconds after each), ms: $(pcts "$WORK/fork-ms")"
p_idle=$(pcts "$WORK/hb-idle.ms" | awk '{ print $4 }')
p_bk=$(pcts "$WORK/hb-backups.ms" | awk '{ print $4 }')
awk -v a="$p_idle" -v b="$p_bk" 'BEGIN { printf "heartbeat p99 with backups / without: %.2fx (target <= 2): %s\n", b / a, b <= 2 * a ? "PASS" : "FAIL (missed)" }'

# ---- 3. consistency checks -----------------------------------------------------------------
echo
echo "-- consistency check: POST /api/v1/consistency/check to its verdict, $REPS times --"
for r in $(seq 1 "$REPS"); do
    t0=$(ms)
    id=$(json_field check_id "$(curl -sf -XPOST "$API/api/v1/consistency/check")")
    while :; do
        rec=$(curl -sf "$API/api/v1/consistency/checks/$id")
        st=$(json_field status "$rec")
        [ "$st" = pending ] || break
        sleep 0.005
    done
    echo "check $r: $(($(ms) - t0)) ms, $st"
done
RD_RSS=$(awk '/^VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$RD_PID/status")
echo "recoveryd peak RSS: $RD_RSS; its log: $(bench_log_events "$WORK/rd.log")"
bench_stop "$RD_PID"
echo "-- bench_backup_digest (in process, rd_fsm_apply-built states) --"
# shellcheck disable=SC2086
bench_run - "$BUILD_DIR/bin/bench_backup_digest" $DIGEST_SIZES

# ---- 1b. etcd with as many bytes ----------------------------------------------------------------
echo
bench_free_port E_PORT
bench_free_port E_PEER
EURL="http://127.0.0.1:$E_PORT"
etcd --name m1 --data-dir "$WORK/etcd" --listen-client-urls "$EURL" --advertise-client-urls "$EURL" \
    --listen-peer-urls "http://127.0.0.1:$E_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$E_PEER" \
    --initial-cluster "m1=http://127.0.0.1:$E_PEER" --logger zap --log-level warn 2>"$WORK/etcd.log" &
E_PID=$!
bench_track "$E_PID"
bench_wait_http "$EURL/health" "$E_PID" "$WORK/etcd.log" '"health":"true"'
KEYS=1000
if [ "$ETCD_BYTES" = image ]; then VAL=$((IMG / KEYS)); else VAL=$((RAW / KEYS)); fi
: >"$WORK/put.curl"
for i in $(seq 1 "$KEYS"); do
    [ "$i" -eq 1 ] || echo next >>"$WORK/put.curl"
    printf 'url = "%s/v3/kv/put"\ndata = "{\\"key\\":\\"%s\\",\\"value\\":\\"%s\\"}"\noutput = /dev/null\n' "$EURL" \
        "$(printf 'bench/%06d' "$i" | base64 -w0)" "$(head -c "$VAL" /dev/urandom | base64 -w0)" >>"$WORK/put.curl"
done
curl -s -K "$WORK/put.curl"
echo "-- etcd: $KEYS keys x $VAL random bytes = $((KEYS * VAL / 1000000)) MB of values (ETCD_BYTES=$ETCD_BYTES) --"
t0=$(ms)
ETCDCTL_API=3 etcdctl --endpoints "$EURL" snapshot save "$WORK/etcd.snap" >/dev/null 2>&1
took=$(($(ms) - t0))
SNAP=$(stat -c %s "$WORK/etcd.snap")
awk -v t="$took" -v s="$SNAP" 'BEGIN { printf "etcdctl snapshot save: %d ms, %.2f MB file, %.1f MB/s\n", t, s / 1e6, s / 1e6 / (t / 1000) }'
bench_stop "$E_PID"
t0=$(ms)
ETCDCTL_API=3 etcdctl snapshot restore "$WORK/etcd.snap" --data-dir "$WORK/etcd-restored" >/dev/null 2>&1
took=$(($(ms) - t0))
awk -v t="$took" -v s="$SNAP" 'BEGIN { printf "etcdctl snapshot restore: %d ms, %.1f MB/s\n", t, s / 1e6 / (t / 1000) }'

# ---- 4. archive lag ------------------------------------------------------------------------------
echo
rm -rf "$WORK/rd-data" "$WORK/bk"
engine_config '{target: local, max_delay: 1s}'
bench_start_engine --policies-dir "$ROOT/policies"
curl -sf -XPOST "$API/api/v1/nodes" -H 'content-type: application/json' -d "{\"node_id\":\"arch\",\"capacity\":{\"slots\":$ARCH_TASKS}}" >/dev/null
load_tasks "$ARCH_TASKS" "$WORK/ck1.json" >/dev/null
echo "-- archive lag: $ARCH_RATE checkpoint writes/s (h2load --rps) for ${ARCH_SECONDS} s, $ARCH_TASKS tasks (one h2load per version) --"
( while :; do curl -sf "$API/metrics" | awk '/^recoveryd_archive_lag_seconds / { print $2 }'; sleep 0.1; done ) >"$WORK/lag" &
LAG_PID=$!
bench_track "$LAG_PID"
t0=$(ms)
ROUNDS=$(((ARCH_SECONDS * ARCH_RATE + ARCH_TASKS - 1) / ARCH_TASKS))
for v in $(seq 2 $((ROUNDS + 1))); do
    ck_body "$WORK/ckv.json" "$v"
    h2load -n "$ARCH_TASKS" -c 1 -m 16 --rps "$ARCH_RATE" -d "$WORK/ckv.json" -H ':method: PUT' \
        -H 'content-type: application/json' -i "$WORK/ck.uris" >"$WORK/arch.out"
    grep -q "status codes: $ARCH_TASKS 2xx" "$WORK/arch.out" || echo "bench: version $v: $(grep '^status codes' "$WORK/arch.out")"
done
took=$(($(ms) - t0))
bench_stop "$LAG_PID"
echo "achieved: $((ROUNDS * ARCH_TASKS * 1000 / took)) writes/s over $((took / 1000)) s"
echo "recoveryd_archive_lag_seconds (every 100 ms): $(pcts "$WORK/lag")"
p99=$(pcts "$WORK/lag" | awk '{ print $4 }')
awk -v p="$p99" 'BEGIN { printf "archive lag p99 %s s (target <= 1 s): %s\n", p, p <= 1 ? "PASS" : "FAIL (missed)" }'
curl -sf "$API/metrics" | grep -E '^recoveryd_archive_(segments_total|bytes_total|write_errors_total|gaps_total|index) '
echo "recoveryd log: $(bench_log_events "$WORK/rd.log")"
echo "load average after: $(bench_loadavg)"
