# What every benchmark's run.sh does, sourced by it right after
# `set -euo pipefail`:
#
#   . "$(dirname "$0")/../lib/common.sh"
#
# It moves to the repository root (ROOT) and sets BUILD (the build directory,
# build-bench unless set; BUILD_DIR is its absolute path) and NICE (0 unless
# set: NICE=-10 as root runs what the benchmark starts ahead of other work on
# a shared machine). Then, by what the scripts need:
#
#   building        bench_build TARGET...
#   a work dir      bench_workdir NAME [disk]  (WORK, removed at exit; a script
#                   may define bench_on_exit to copy logs out of it first)
#   processes       bench_run, bench_track, bench_wait, bench_stop: by PID,
#                   only what the script started; whatever still runs at exit
#                   is stopped
#   ports, engines  bench_free_port, bench_wait_http, bench_start_engine,
#                   bench_cluster_config, bench_start_replica, bench_raise_nofile
#   one engine      bench_fleet_setup, bench_fleet_run (fleet.py)
#   the record      bench_cores, bench_commit, bench_raft_version, bench_now,
#                   bench_loadavg, bench_cpu_start / bench_cpu_report,
#                   bench_log_events
#
# Bash only (arrays, printf -v).

# NICE only orders processes within one session: with Linux's autogroup
# scheduling (/proc/sys/kernel/sched_autogroup_enabled) the CPU is first
# shared evenly between sessions, so a benchmark run at nice -10 from one
# shell still got a share like every other shell's build (the scale
# benchmark's engine spent most of its time runnable but waiting for a CPU:
# docs/benchmarks.md, "Scale"). With NICE below 0 the script therefore runs
# again in a session of its own (setsid, waited for) whose autogroup gets
# the same nice; the session, and its priority, end with the script.
if [ "${NICE:-0}" -lt 0 ] && [ -z "${BENCH_SESSION:-}" ] && [ -w /proc/self/autogroup ] &&
    command -v setsid >/dev/null; then
    BENCH_SESSION=1 exec setsid -w "$0" "$@"
fi
if [ -n "${BENCH_SESSION:-}" ]; then
    echo "${NICE:-0}" >/proc/self/autogroup 2>/dev/null || true
fi

cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1
ROOT=$PWD
BUILD=${BUILD:-build-bench}
case $BUILD in
/*) BUILD_DIR=$BUILD ;;
*) BUILD_DIR=$ROOT/$BUILD ;;
esac
NICE=${NICE:-0}
WORK=""
BENCH_PIDS=()

# ---- building ----------------------------------------------------------------

# bench_build TARGET...: a Release build of the targets in $BUILD, quietly.
bench_build() {
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j "$(nproc)" --target "$@" >/dev/null
}

# ---- the work directory and the end -------------------------------------------

# bench_workdir NAME [disk]: WORK=/tmp/rd-bench-NAME.XXXXXX, removed at exit.
# With "disk", not on tmpfs: raft needs O_DIRECT and an fsync that reaches
# the disk (then /var/tmp when /tmp is a tmpfs).
bench_workdir() {
    local base=/tmp
    if [ "${2:-}" = disk ] && [ "$(stat -f -c %T /tmp)" = tmpfs ]; then base=/var/tmp; fi
    WORK=$(mktemp -d "$base/rd-bench-$1.XXXXXX")
}

# Runs at exit, after the processes are stopped and before WORK is removed:
# keeps the engine's log ($WORK/rd.log) in the file ENGINE_LOG when that is
# set; a script redefines it to keep other logs (KEEP_LOGS).
bench_on_exit() {
    if [ -n "${ENGINE_LOG:-}" ] && [ -f "$WORK/rd.log" ]; then cp "$WORK/rd.log" "$ENGINE_LOG"; fi
}

bench_cleanup() {
    bench_stop "${BENCH_PIDS[@]}"
    if [ -n "$WORK" ]; then
        bench_on_exit || true
        rm -rf "$WORK"
    fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# ---- processes, by PID ----------------------------------------------------------

# bench_track PID...: processes this script started (in the background); they
# are stopped at exit unless waited for or stopped before.
bench_track() { BENCH_PIDS+=("$@"); }

# bench_forget PID...: no longer tracked (reaped: the PID may be reused).
bench_forget() {
    local keep=() p q gone
    for p in "${BENCH_PIDS[@]}"; do
        gone=0
        for q in "$@"; do [ "$p" = "$q" ] && gone=1; done
        [ "$gone" -eq 1 ] || keep+=("$p")
    done
    BENCH_PIDS=("${keep[@]}")
}

# bench_tracked PID: true while PID is tracked.
bench_tracked() {
    local p
    for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$1" ] && return 0; done
    return 1
}

# bench_wait PID: waits until the process ends, forgets it and returns its
# exit status. Quiet: bash's notice of a process killed by a signal (the
# failover tool kills a replica on purpose) is not printed.
bench_wait() {
    local rc=0
    { wait "$1"; } 2>/dev/null || rc=$?
    bench_forget "$1"
    return "$rc"
}

# bench_run OUT CMD...: runs CMD (niced by NICE) in the background, its
# stdout to the file OUT ("-": the script's), and waits for it: returns its
# exit status. In the background so that the script's traps run at once on
# Ctrl-C; stopped with the script if that ends first.
bench_run() {
    local out=$1 pid rc=0
    shift
    if [ "$out" = - ]; then
        nice -n "$NICE" "$@" &
    else
        nice -n "$NICE" "$@" >"$out" &
    fi
    pid=$!
    bench_track "$pid"
    bench_wait "$pid" || rc=$?
    return "$rc"
}

# bench_stop PID...: SIGTERM, then SIGKILL whatever is left after 15 s, and
# reaps them. Only tracked processes: a PID already waited for is skipped.
bench_stop() {
    local pids=() p alive
    for p in "$@"; do bench_tracked "$p" && pids+=("$p"); done
    [ "${#pids[@]}" -gt 0 ] || return 0
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 1 150); do
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do { wait "$p"; } 2>/dev/null || true; done
    bench_forget "${pids[@]}"
}

# ---- ports and engines ----------------------------------------------------------

# Below the ephemeral range: a port there can be free of listeners and still
# be taken by the local end of an outgoing connection (bind fails then).
BENCH_EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$BENCH_EPHEMERAL_LOW" -gt 21000 ] || BENCH_EPHEMERAL_LOW=40000
BENCH_USED_PORTS=" "

# bench_free_port VAR: sets VAR (a name, "ARR[i]" too) to a loopback port
# nothing listens on, below the ephemeral range, never one this script was
# given before (bash's /dev/tcp can connect, not bind: a refused connection
# says free).
bench_free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % (BENCH_EPHEMERAL_LOW - 20000)))
        case "$BENCH_USED_PORTS" in *" $p "*) continue ;; esac
        (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
        BENCH_USED_PORTS="$BENCH_USED_PORTS$p "
        printf -v "$1" '%s' "$p"
        return
    done
}

# bench_wait_http URL PID LOG [PATTERN]: until URL answers 2xx (with a body
# matching PATTERN), for 60 s at most. When PID dies or time runs out, prints
# the end of LOG and exits the script.
bench_wait_http() {
    local url=$1 pid=$2 log=$3 match=${4:-} body end=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$end" ]; do
        if body=$(curl -sf --max-time 1 "$url" 2>/dev/null); then
            [ -z "$match" ] && return 0
            grep -q "$match" <<<"$body" && return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "bench: $url did not come up" >&2
    tail -20 "$log" >&2 || true
    exit 1
}

# bench_raise_nofile: the soft limit on open files up to the hard one (one
# port or connection per simulated agent).
bench_raise_nofile() { ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; }

# bench_start_engine [ARG...]: one recoveryd in the background with
# $WORK/rd.yaml, its API on 127.0.0.1:$RD_PORT, its data in $WORK/rd-data,
# its log in $WORK/rd.log, the build's plugins and ARGs; RD_PID. Returns once
# it answers GET /ready.
bench_start_engine() {
    nice -n "$NICE" "$BUILD_DIR/bin/recoveryd" --config "$WORK/rd.yaml" \
        --listen "127.0.0.1:$RD_PORT" --data-dir "$WORK/rd-data" \
        --plugins-dir "$BUILD_DIR/plugins" "$@" 2>"$WORK/rd.log" &
    RD_PID=$!
    bench_track "$RD_PID"
    bench_wait_http "http://127.0.0.1:$RD_PORT/ready" "$RD_PID" "$WORK/rd.log"
}

# ---- one engine and a fleet (fleet.py, or a load generator of its own) -------

# bench_fleet_setup NAME [PLUGIN...] [-- TARGET...]: builds recoveryd with the
# heartbeat plugin, the PLUGINs and the TARGETs, a work directory NAME, the
# engine's ports, and the head of $WORK/rd.yaml (cluster, logging at
# BENCH_LOG_LEVEL, info unless set, the plugins: heartbeat required, then
# each PLUGIN, written NAME or
# NAME:KEY=VALUE[,KEY=VALUE...] for its config); the script appends its
# fault_tolerance section, then bench_fleet_run (or starts the engine itself).
bench_fleet_setup() {
    local name=$1 p kv plugins=() targets=() kvs
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        plugins+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift && targets=("$@")
    bench_build recoveryd heartbeat "${plugins[@]%%:*}" "${targets[@]}"
    bench_workdir "$name"
    bench_free_port RD_PORT
    bench_free_port RAFT_PORT
    cat >"$WORK/rd.yaml" <<YAML
cluster:
  raft_address: 127.0.0.1:$RAFT_PORT
logging:
  level: ${BENCH_LOG_LEVEL:-info}
plugins:
  instances:
    - name: heartbeat
      required: true
YAML
    for p in "${plugins[@]}"; do
        echo "    - name: ${p%%:*}" >>"$WORK/rd.yaml"
        [ "$p" = "${p%%:*}" ] && continue
        echo "      config:" >>"$WORK/rd.yaml"
        IFS=, read -ra kvs <<<"${p#*:}"
        for kv in "${kvs[@]}"; do echo "        ${kv%%=*}: ${kv#*=}" >>"$WORK/rd.yaml"; done
    done
}

# bench_fleet_run TITLE ARG...: starts the engine, prints TITLE with the
# machine and the time, the commit and the load average, runs fleet.py with
# the ARGs against it (400 s at most), prints the load average again and
# stops the engine; FLEET_RC is fleet.py's exit status.
bench_fleet_run() {
    local title=$1
    shift
    bench_start_engine
    echo "$title; $(bench_cores), $(bench_now)"
    echo "engine built from $(bench_commit)"
    echo "load average before: $(bench_loadavg)"
    FLEET_RC=0
    bench_run - timeout -k 10 400 python3 tests/bench/detection/fleet.py \
        --url "http://127.0.0.1:$RD_PORT" "$@" || FLEET_RC=$?
    echo "load average after: $(bench_loadavg)"
    bench_stop "$RD_PID"
}

# bench_cluster_config N [YAML]: N replicas' ports (RD_PORTS[i], RAFT_PORTS[i],
# i from 1), API URLs (RD_URLS[i]) and configurations ($WORK/rdI/rd.yaml:
# every replica a peer with its API URL, then YAML if given); RD_PIDS emptied.
bench_cluster_config() {
    local n=$1 extra=${2:-} i k
    RD_PORTS=()
    RAFT_PORTS=()
    RD_URLS=()
    RD_PIDS=()
    for i in $(seq 1 "$n"); do
        bench_free_port "RD_PORTS[$i]"
        bench_free_port "RAFT_PORTS[$i]"
        RD_URLS[i]="http://127.0.0.1:${RD_PORTS[i]}"
    done
    for i in $(seq 1 "$n"); do
        mkdir -p "$WORK/rd$i/data"
        {
            echo "cluster:"
            echo "  node_id: rd$i"
            echo "  replica_id: $i"
            echo "  raft_address: 127.0.0.1:${RAFT_PORTS[i]}"
            echo "  peers:"
            for k in $(seq 1 "$n"); do
                echo "    - {id: $k, address: 127.0.0.1:${RAFT_PORTS[k]}, api_url: ${RD_URLS[k]}}"
            done
            if [ -n "$extra" ]; then printf '%s\n' "$extra"; fi
        } >"$WORK/rd$i/rd.yaml"
    done
}

# bench_start_replica I: replica I in the background in $WORK/rdI, its log
# appended to $WORK/rdI.log (a restart keeps the history); RD_PIDS[I]. With
# ENGINE_CPUS set (a taskset list, "0") the replicas run on those CPUs only:
# a load generator pinned to the others (LOAD_CPUS, where a script supports
# it) then does not take the engine's CPU, as on another host. With
# BENCH_PRELOAD set (a shared library) the replicas preload it (LD_PRELOAD:
# tests/preload/failio.c's hung disk in storm.sh).
bench_start_replica() {
    local i=$1
    echo "---- bench: starting replica $i ----" >>"$WORK/rd$i.log"
    (cd "$WORK/rd$i" && exec ${BENCH_PRELOAD:+env LD_PRELOAD="$BENCH_PRELOAD"} ${ENGINE_CPUS:+taskset -c "$ENGINE_CPUS"} nice -n "$NICE" "$BUILD_DIR/bin/recoveryd" --config rd.yaml \
        --listen "127.0.0.1:${RD_PORTS[i]}" --data-dir data --plugins-dir "$BUILD_DIR/plugins" \
        --policies-dir "$ROOT/policies") 2>>"$WORK/rd$i.log" &
    RD_PIDS[i]=$!
    bench_track "${RD_PIDS[i]}"
}

# bench_wait_replica I: until replica I answers GET /ready 200.
bench_wait_replica() { bench_wait_http "${RD_URLS[$1]}/ready" "${RD_PIDS[$1]}" "$WORK/rd$1.log"; }

# ---- the record -------------------------------------------------------------------

# "2 cores (AMD EPYC)"
bench_cores() { echo "$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))"; }

# "723efe4 (3 files modified in the tree)": what the binaries were built from.
bench_commit() {
    echo "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "($(git status --porcelain 2>/dev/null | grep -vc '^??' || true) files modified in the tree)"
}

# The libraft the build links: its stamp ("0.22.1 <sha256> patches=..."), or
# pkg-config's version, or "?".
bench_raft_version() {
    sed 's/^raft //' "$(sed -n 's/^RAFT_PREFIX:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null)/stamp" 2>/dev/null ||
        pkg-config --modversion raft 2>/dev/null || echo '?'
}

bench_now() { date -u +%FT%TZ; }
bench_loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# User + system CPU seconds of the whole process (threads that ended included).
_bench_cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' \
        "/proc/$1/stat"
}

# Busy and total jiffies of the whole machine (all cores), from /proc/stat.
_bench_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

# bench_cpu_ns PID: the CPU time of every thread of the process, in ns
# (/proc/PID/task/*/schedstat: nanosecond resolution).
bench_cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'; }

# bench_cpu_start PID, then bench_cpu_report PID: the process's CPU time and
# how busy the whole machine was in between (it is shared: recoveryd, the
# load generator and anything else that ran meanwhile), two lines.
bench_cpu_start() {
    BENCH_CPU0=$(_bench_cpu_s "$1")
    read -r BENCH_BUSY0 BENCH_TOTAL0 < <(_bench_jiffies)
    BENCH_T0=$(date +%s.%N)
}
bench_cpu_report() {
    local cpu1 busy1 total1 t1
    cpu1=$(_bench_cpu_s "$1")
    read -r busy1 total1 < <(_bench_jiffies)
    t1=$(date +%s.%N)
    awk -v c0="$BENCH_CPU0" -v c1="$cpu1" -v t0="$BENCH_T0" -v t1="$t1" 'BEGIN {
        printf "recoveryd CPU during the run: %.1f s (user + system) over %.0f s of wall time: %.1f%% of one core\n",
            c1 - c0, t1 - t0, 100 * (c1 - c0) / (t1 - t0) }'
    awk -v b0="$BENCH_BUSY0" -v b1="$busy1" -v a0="$BENCH_TOTAL0" -v a1="$total1" -v n="$(nproc)" 'BEGIN {
        printf "machine CPU during the run: %.2f of %d cores busy on average\n", n * (b1 - b0) / (a1 - a0), n }'
}

# bench_loop_lag URL: how late the replica's event loop ran its 10-ms watch
# timer since it started (recoveryd_loop_lag_seconds from URL/metrics): a
# loop busy or starved of CPU against senders that are late themselves.
bench_loop_lag() {
    curl -sf --max-time 5 "$1/metrics" | awk '
        /^recoveryd_loop_lag_seconds_bucket/ {
            match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); b[le] = $2 }
        /^recoveryd_loop_lag_seconds_sum/ { sum = $2 }
        /^recoveryd_loop_lag_seconds_count/ { n = $2 }
        END {
            if (n == 0) { print "loop lag: no figure (no /metrics answer)"; exit }
            printf "loop lag (the 10-ms timer, %d runs): mean %.1f ms; later than 25 ms %d, 50 ms %d, 100 ms %d, 500 ms %d, 1 s %d\n",
                n, 1000 * sum / n, n - b["0.025"], n - b["0.05"], n - b["0.1"], n - b["0.5"], n - b["1"] }' ||
        echo "loop lag: no figure (no /metrics answer)"
}

# bench_log_events FILE [LINES]: the warnings and errors among the first
# LINES lines of FILE (all by default), counted by event (recoveryd) or
# message (etcd): "3 x commit_failed, 1 x ..."; nothing when there is none.
bench_log_events() {
    head -n "${2:-999999999}" "$1" | awk '
        /level=(warn|error)/ { match($0, /event=[^ ]*/); k = substr($0, RSTART + 6, RLENGTH - 6); c[k]++ }
        /"level":"(warn|error)"/ { match($0, /"msg":"[^"]*"/); k = substr($0, RSTART + 7, RLENGTH - 8); c[k]++ }
        END { for (k in c) printf "%s%d x %s", (n++ ? ", " : ""), c[k], k }'
}
