#!/bin/bash
# Records in PostgreSQL under a failure storm (docs/records.md): one
# recoveryd exporting to a PostgreSQL this script starts (Debian's
# postgresql, initdb in the work directory, a private socket, fsync on), and
# the load generator (loadgen.c) making FAULTS fault records in SECONDS (an
# operator isolating and readmitting 100 agents: each fault's row written,
# then updated, two audit records each). It prints the export lag during
# the storm (rows waiting, age of the oldest unexported change), the time to
# drain after it, the rows exported per second, and whether PostgreSQL holds
# exactly the engine's fault records. Then OUTAGE: the same storm with
# PostgreSQL stopped for its first OUTAGE_S seconds, and the backlog's drain.
#
#   tests/bench/records/run.sh
#   FAULTS=10000 SECONDS_=60 OUTAGE_S=20 tests/bench/records/run.sh   (the defaults)
#
# Environment: FAULTS, SECONDS_ (the storm's length), OUTAGE_S (0: no
# outage run), BATCH (batch_size, 500), NICE, BUILD (build-bench).
# tests/bench/lib/common.sh does what every benchmark's script does.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
FAULTS=${FAULTS:-10000}
SECONDS_=${SECONDS_:-60}
OUTAGE_S=${OUTAGE_S:-20}
BATCH=${BATCH:-500}

scripts/bootstrap --bench
bench_build recoveryd heartbeat health_probe metrics log bench_records_loadgen
bench_workdir records disk
chmod 755 "$WORK"

PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
AS_PG=() # PostgreSQL refuses root: as root, setpriv execs it as postgres (same PID)
if [ "$(id -u)" -eq 0 ]; then AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --); fi
mkdir -p "$WORK/pg/sock"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$WORK/pg"; fi
"${AS_PG[@]}" "$PGBIN/initdb" -D "$WORK/pg/data" -U recoveryd -A trust -E UTF8 \
    --locale=C.UTF-8 --no-instructions >"$WORK/initdb.log"
CONNINFO="host=$WORK/pg/sock port=5432 dbname=postgres user=recoveryd"
PG_PID=""
pg_start() {
    "${AS_PG[@]}" "$PGBIN/postgres" -D "$WORK/pg/data" -k "$WORK/pg/sock" -p 5432 \
        -c listen_addresses= >>"$WORK/pg.log" 2>&1 &
    PG_PID=$!
    bench_track "$PG_PID"
    for _ in $(seq 1 300); do
        if "$PGBIN/pg_isready" -q -h "$WORK/pg/sock" -p 5432; then return 0; fi
        sleep 0.1 # until it accepts connections
    done
    echo "PostgreSQL did not start" >&2
    tail "$WORK/pg.log" >&2
    exit 1
}
pg_stop() { # fast shutdown (SIGINT): the engine's connection is cut, not waited for
    kill -INT "$PG_PID"
    bench_wait "$PG_PID" || true
}

bench_free_port RD_PORT
bench_free_port RAFT_PORT
run_storm() { # NAME [OUTAGE seconds]
    local name=$1 outage=${2:-0}
    rm -rf "$WORK/rd-data"
    cat >"$WORK/rd.yaml" <<YAML
cluster:
  raft_address: 127.0.0.1:$RAFT_PORT
logging:
  level: warn
fault_tolerance:
  detection:
    heartbeat_interval: 30s
  partition:
    min_nodes: 100000
  records:
    export: true
    conninfo: "$CONNINFO"
    schema: $name
    batch_size: $BATCH
YAML
    bench_start_engine
    echo
    echo "---- $name: $FAULTS faults in $SECONDS_ s, batch_size $BATCH$([ "$outage" -gt 0 ] &&
        echo ", PostgreSQL stopped for the first $outage s") ----"
    echo "load average before: $(bench_loadavg)"
    bench_cpu_start "$RD_PID"
    if [ "$outage" -gt 0 ]; then
        # The schema exists (the engine migrated it): then PostgreSQL goes away.
        for _ in $(seq 1 100); do
            curl -sf "http://127.0.0.1:$RD_PORT/metrics" |
                grep -q '^recoveryd_records_export_up 1' && break
            sleep 0.1 # until the engine connected
        done
        pg_stop
        (sleep "$outage" && echo "PostgreSQL back at +$outage s") &
        OUTAGE_PID=$!
        bench_track "$OUTAGE_PID"
    fi
    local rc=0 lg_pid
    "$BUILD_DIR/bin/bench_records_loadgen" --url "http://127.0.0.1:$RD_PORT" \
        --conninfo "$CONNINFO" --schema "$name" --faults "$FAULTS" --seconds "$SECONDS_" \
        >"$WORK/lg-$name.out" 2>&1 &
    lg_pid=$!
    bench_track "$lg_pid"
    if [ "$outage" -gt 0 ]; then
        bench_wait "$OUTAGE_PID" || true
        pg_start
    fi
    bench_wait "$lg_pid" || rc=$?
    cat "$WORK/lg-$name.out"
    bench_cpu_report "$RD_PID"
    echo "export errors (engine): $(curl -s "http://127.0.0.1:$RD_PORT/metrics" |
        sed -n 's/^recoveryd_records_export_errors_total //p'), lost: $(curl -s \
        "http://127.0.0.1:$RD_PORT/metrics" | grep '^recoveryd_records_export_lost_total' |
        awk '{s += $2} END {print s}')"
    bench_stop "$RD_PID"
    return "$rc"
}

echo "recoveryd records benchmark: $(bench_cores), $(bench_now), engine built from $(bench_commit)," \
    "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (fsync on), nice $NICE"
pg_start
rc=0
run_storm storm || rc=1
if [ "$OUTAGE_S" -gt 0 ]; then run_storm outage "$OUTAGE_S" || rc=1; fi
pg_stop
exit "$rc"
