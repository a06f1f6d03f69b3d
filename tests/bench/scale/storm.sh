#!/bin/bash
# The failure storm of issue 16 ("Scale"): 10,000 agents heartbeating every
# 500 ms against three recoveryd replicas, 100,000 tasks checkpointing every
# 30 s; once every task runs, 20% of the agents crash one after the other
# within a minute, then 30% are cut off for 20 s (alive, but reaching
# nothing: a partition as the engine sees it) and come back. The load
# generator (loadgen.c with --tasks) prints heartbeat round trips and the
# offered load, the time from each crash to each of the crashed agents'
# tasks reaching another agent (and to its first checkpoint there), whether
# the partition guard held the partitioned agents' tasks, and the healthy
# agents' checkpoint throughput during the storm as a share of before (per
# checkpoint due on their schedule: the tasks checkpoint in waves); this
# script adds the leader's RSS and CPU, its snapshots (the forked child's
# imaging time, from its log), each replica's loop lag (bench_loop_lag) and
# the restart of a follower on that state (snapshot load and log replay
# until it answers /ready). A replica that
# died during the storm is named (and its core file, if the system wrote
# one in its directory, is kept with the logs in KEEP_LOGS).
#
#   tests/bench/scale/storm.sh [LOADGEN OPTIONS...]
#   AGENTS=1000 TASKS=10000 WARMUP=10 tests/bench/scale/storm.sh     (a smaller storm)
#
# Environment: AGENTS (10000), TASKS (100000), WARMUP (40 s from every task
# running to the first crash), CKPT_MS (30000), GUARD_SHARE (25%: the
# mass-failure guard's threshold, below the 30% cut off and far above the
# crashes' share of any 10 s), ELECTION (raft's election timeout, 1500ms),
# THREADS (8: the load generator's workers, each with CONNS HTTP/2 connections
# of at most 96 streams; the storm's checkpoints need more streams in
# flight than a steady fleet's heartbeats, whose default is 4: with 4 the
# 10,000-agent storm could not offer its 3,333 checkpoints/s once the
# engine's answers slowed), CONNS (1: HTTP/2 connections per worker; the
# ones past the first carry heartbeats only, so that a worker's 1,250
# agents do not queue their heartbeats behind its checkpoints when the
# leader's answers slow, as a fleet with a connection per agent would not;
# the checkpoints keep one connection's streams whatever CONNS),
# NICE (0; -10 as root runs the benchmark ahead
# of everything else on a shared machine), BUILD (build-bench), KEEP_LOGS (a
# directory to copy the replicas' logs to), KILL_LEADER_AT (seconds after the
# load generator starts, or +S: S seconds after the storm begins, whatever
# the setup took: the leader is killed with SIGKILL then and started
# again; the load generator follows the new leader and reports the switches
# and the time without one), STALL_LEADER_AT (seconds after the load
# generator starts, instead of a kill: the leader's raft log writes hang for
# STALL_FOR seconds, 10 by default, past the engine's 3-s threshold for a
# stalled write; the replicas then run with tests/preload/failio.c
# preloaded, and its `hang-io` file in the leader's directory holds the
# writes; with STALL_ALL=1 every replica's writes hang, one disk under them
# all; the script reports each replica's storage and handover events and
# the leaderships), ENGINE_CPUS and LOAD_CPUS (taskset CPU lists:
# the replicas on the first, the load generator on the second, so that
# neither takes the other's CPU, as with the load generator on another
# host; `ENGINE_CPUS=0 LOAD_CPUS=1` on 2 cores), LEADER_CPUS and
# FOLLOWER_CPUS (taskset CPU lists applied once the leader is known: the
# leader alone on a CPU as on a host of its own, `LEADER_CPUS=1
# FOLLOWER_CPUS=0 LOAD_CPUS=0`), LOAD_POLICY (the load generator's
# scheduling policy: `normal`, or `batch` (chrt -b), under which its
# threads, woken by the replicas' answers, do not preempt the replica that
# woke them: agents on other hosts would not take its CPU at each answer;
# normal by default), LEADER_NICE (the leader's threads
# reniced once it is known: ahead of the rest of the run, as a replica
# that has its host to itself would be), SNAP_THRESHOLD (the
# replicas' storage.snapshot_threshold, the engine's default 65536 when
# unset: each snapshot forks the replica, and the copy-on-write faults its
# loop takes while the child runs slowed its answers for half a second at
# 10,000 agents at the old default 8192, docs/benchmarks.md), GROUP_DELAY
# (cluster.group_commit_delay, the engine's default 5ms when unset; 0ms to
# compare against no delay), CPU_SHARE (fault_tolerance.backup.cpu_share, the
# snapshot child's pace; the engine's default 10 when unset),
# HB_INPUT_LAG_MAX (the heartbeat detector's input_lag_max, its default 1s
# when unset; 0ms judges silence up to now, as before it existed).
# tests/bench/lib/common.sh does what every benchmark's script does.
#
# A stall shows the leader's answer to a hung disk (docs/libraft.md): it
# hands over once the other voters have committed the entries it cannot
# write (event=leadership_handover), and keeps leading when they have not
# (event=handover_withheld: their disks hang too, STALL_ALL=1).
#
#   STALL_LEADER_AT=40 AGENTS=2000 TASKS=20000 WARMUP=10 CKPT_MS=5000 \
#       tests/bench/scale/storm.sh --crash-spread 10 --partition 8
#
# Targets (issue 16): engine RSS under 512 MiB, heartbeat p99 under 50 ms,
# the crashed agents' tasks running elsewhere within 3 s p99, healthy
# throughput at 90% or more; snapshot and restart in seconds.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=SCRIPTDIR/engine.sh
. tests/bench/scale/engine.sh
AGENTS=${AGENTS:-10000}
TASKS=${TASKS:-100000}
WARMUP=${WARMUP:-40}
CKPT_MS=${CKPT_MS:-30000}
GUARD_SHARE=${GUARD_SHARE:-25%}
ELECTION=${ELECTION:-1500ms}
THREADS=${THREADS:-8}
CONNS=${CONNS:-1}
STALL_FOR=${STALL_FOR:-10}
LOAD_POLICY=${LOAD_POLICY:-normal}
case $LOAD_POLICY in
normal) LOAD_CHRT=() ;;
batch) LOAD_CHRT=(chrt -b 0) ;;
*)
    echo "storm: LOAD_POLICY is normal or batch, not '$LOAD_POLICY'" >&2
    exit 2
    ;;
esac
if [ -n "${KILL_LEADER_AT:-}" ] && [ -n "${STALL_LEADER_AT:-}" ]; then
    echo "storm: KILL_LEADER_AT and STALL_LEADER_AT are one or the other" >&2
    exit 2
fi

scripts/bootstrap --bench
bench_build recoveryd heartbeat health_probe metrics log bench_scale_loadgen rdt_failio
if [ -n "${STALL_LEADER_AT:-}" ]; then BENCH_PRELOAD=$BUILD_DIR/plugins/librdt_failio.so; fi
bench_workdir storm disk
# shellcheck disable=SC2317 # run at exit by common.sh
bench_on_exit() {
    if [ -n "${KEEP_LOGS:-}" ]; then
        mkdir -p "$KEEP_LOGS"
        cp "$WORK"/*.log "$KEEP_LOGS"/ 2>/dev/null || true
        for i in 1 2 3; do
            for c in "$WORK/rd$i"/core*; do
                if [ -f "$c" ]; then cp "$c" "$KEEP_LOGS/rd$i-$(basename "$c")"; fi
            done
        done
    fi
}
bench_raise_nofile
ulimit -c unlimited 2>/dev/null || true # a replica that crashes leaves its core (KEEP_LOGS)

# As the scale benchmark (engine.sh: the edge's budgets scaled to a load
# generator that multiplexes the fleet), three replicas, info logging for the
# snapshots' lines, and the guard's threshold. Raft's election timeout is
# ELECTION (1500ms; the default 300ms deposed the leader during the 10,000
# registrations on this shared 2-core machine: its followers did not hear
# from it in time); the first two lines continue bench_cluster_config's
# `cluster:` block.
bench_cluster_config 3 "$(
    printf '  election_timeout: %s\n  heartbeat_timeout: %sms\n' "$ELECTION" "$((${ELECTION%ms} / 10))"
    if [ -n "${GROUP_DELAY:-}" ]; then printf '  group_commit_delay: %s\n' "$GROUP_DELAY"; fi
    printf 'logging:\n  level: info\n'
    scale_engine_common
    printf '  partition:\n    mass_failure_share: %s\n' "$GUARD_SHARE"
    if [ -n "${CPU_SHARE:-}" ]; then printf '  backup:\n    cpu_share: %s%%\n' "$CPU_SHARE"; fi
    if [ -n "${SNAP_THRESHOLD:-}" ]; then printf 'storage:\n  snapshot_threshold: %s\n' "$SNAP_THRESHOLD"; fi
)"
for i in 1 2 3; do bench_start_replica "$i"; done
for i in 1 2 3; do bench_wait_replica "$i"; done

# The replica that answers /health as the leader (nothing when none does).
current_leader() {
    local i
    for i in 1 2 3; do
        if curl -sf --max-time 2 "${RD_URLS[i]}/health" | grep -q '"role":"leader"'; then
            echo "$i"
            return
        fi
    done
}

# await_loadgen S: S seconds, or less if the load generator ends first.
await_loadgen() {
    for _ in $(seq 1 "$1"); do
        kill -0 "$LOADGEN" 2>/dev/null || return 0
        sleep 1
    done
}

# await_at S or +S: S seconds after the load generator started (the caller
# started it just before), or S seconds after the storm begins: the load
# generator says "storm in W s" once every task runs, after a setup whose
# length the machine decides (30-120 s at 10,000 agents).
await_at() {
    case $1 in
    +*)
        local w=
        while kill -0 "$LOADGEN" 2>/dev/null; do
            w=$(sed -n 's/.*storm in \([0-9]*\) s.*/\1/p' "$WORK/loadgen.err" 2>/dev/null | head -n 1 || true)
            [ -z "$w" ] || break
            sleep 1
        done
        await_loadgen "$((${w:-0} + ${1#+}))"
        ;;
    *) await_loadgen "$1" ;;
    esac
}

# at_text S or +S: when, in words.
at_text() {
    case $1 in
    +*) echo "${1#+} s after the storm began" ;;
    *) echo "$1 s after the load generator started" ;;
    esac
}

LEADER=$(current_leader)
[ -n "$LEADER" ] || {
    echo "storm: no leader among the replicas" >&2
    exit 1
}
FOLLOWER=$((LEADER % 3 + 1))
# LEADER_CPUS / FOLLOWER_CPUS: the replicas placed once the leader is known
# (every thread; a snapshot child inherits its replica's CPUs).
placement="replicas on CPUs ${ENGINE_CPUS:-any}"
if [ -n "${LEADER_CPUS:-}${FOLLOWER_CPUS:-}" ]; then
    for i in 1 2 3; do
        cpus=${FOLLOWER_CPUS:-}
        [ "$i" = "$LEADER" ] && cpus=${LEADER_CPUS:-}
        [ -z "$cpus" ] || taskset -a -p -c "$cpus" "${RD_PIDS[i]}" >/dev/null
    done
    placement="leader on CPUs ${LEADER_CPUS:-any}, followers on CPUs ${FOLLOWER_CPUS:-any}"
fi
# LEADER_NICE: the leader's threads at that nice (within the run's own
# scheduling group), ahead of the followers and the load generator.
if [ -n "${LEADER_NICE:-}" ]; then
    for t in /proc/"${RD_PIDS[LEADER]}"/task/*; do renice -n "$LEADER_NICE" -p "${t##*/}" >/dev/null; done
    placement+=", leader at nice $LEADER_NICE"
fi

echo "recoveryd failure storm: $AGENTS agents, $TASKS tasks (a checkpoint every $CKPT_MS ms each)," \
    "3 replicas (leader rd$LEADER), warm-up ${WARMUP} s, guard at $GUARD_SHARE, nice $NICE, $THREADS load generator workers ($CONNS connections each)," \
    "$placement, load generator on CPUs ${LOAD_CPUS:-any} ($LOAD_POLICY policy);" \
    "$(bench_cores), $(bench_now)"
echo "engine built from $(bench_commit); leader's PID ${RD_PIDS[LEADER]}"
echo "load average before: $(bench_loadavg); scheduling group: $(cat /proc/self/autogroup 2>/dev/null || echo none)"
# The load generator starts on the leader and knows the others (it follows
# the leader when that changes), with their PIDs for the leader's RSS.
replica_urls=${RD_URLS[LEADER]}
replica_pids=${RD_PIDS[LEADER]}
for i in 1 2 3; do
    if [ "$i" != "$LEADER" ]; then
        replica_urls+=",${RD_URLS[i]}"
        replica_pids+=",${RD_PIDS[i]}"
    fi
done
FIRST_LEADER=$LEADER
bench_cpu_start "${RD_PIDS[LEADER]}"
# Every replica's CPU seconds at the start, for its share over the run.
declare -A CPU0
for i in 1 2 3; do CPU0[$i]=$(_bench_cpu_s "${RD_PIDS[i]}"); done
T0_RUN=$(date +%s.%N)
rc=0
${LOAD_CPUS:+taskset -c "$LOAD_CPUS"} "${LOAD_CHRT[@]}" nice -n "$NICE" timeout -k 10 1200 "$BUILD_DIR/bin/bench_scale_loadgen" \
    --url "$replica_urls" --engine-pids "$replica_pids" --agents "$AGENTS" --tasks "$TASKS" --ckpt-ms "$CKPT_MS" \
    --warmup "$WARMUP" --threads "$THREADS" --conns "$CONNS" "$@" 2> >(tee "$WORK/loadgen.err" >&2) &
LOADGEN=$!
bench_track "$LOADGEN"
if [ -n "${KILL_LEADER_AT:-}" ]; then
    await_at "$KILL_LEADER_AT"
    if kill -0 "$LOADGEN" 2>/dev/null; then
        echo "storm: $(bench_now) kill -9 of the leader rd$LEADER (PID ${RD_PIDS[LEADER]})" \
            "$(at_text "$KILL_LEADER_AT"); started again at once" >&2
        bench_cpu_report "${RD_PIDS[LEADER]}"
        kill -9 "${RD_PIDS[LEADER]}"
        bench_wait "${RD_PIDS[LEADER]}" || true
        bench_start_replica "$LEADER"
    fi
elif [ -n "${STALL_LEADER_AT:-}" ]; then
    await_at "$STALL_LEADER_AT"
    STALLED=$(current_leader)
    for _ in $(seq 1 20); do # an election on its way: its outcome
        if [ -n "$STALLED" ] || ! kill -0 "$LOADGEN" 2>/dev/null; then break; fi
        sleep 0.5
        STALLED=$(current_leader)
    done
    if [ -n "$STALLED" ] && kill -0 "$LOADGEN" 2>/dev/null; then
        hung=("$STALLED")
        if [ "${STALL_ALL:-0}" = 1 ]; then hung=(1 2 3); fi
        for i in "${hung[@]}"; do : >"$WORK/rd$i/hang-io"; done
        echo "storm: $(bench_now) the log writes of ${hung[*]/#/rd} hang (hang-io; the leader rd$STALLED)" \
            "$(at_text "$STALL_LEADER_AT"), for ${STALL_FOR} s" >&2
        await_loadgen "$STALL_FOR"
        for i in "${hung[@]}"; do
            echo "storm: $(bench_now) rd$i's disk answers again:" \
                "$(stat -c %s "$WORK/rd$i/hang-io") log writes had waited" >&2
            rm -f "$WORK/rd$i/hang-io"
        done
    elif kill -0 "$LOADGEN" 2>/dev/null; then
        echo "storm: FAIL no leader $(at_text "$STALL_LEADER_AT"): nothing stalled" >&2
        rc=1
    fi
fi
bench_wait "$LOADGEN" || rc=$?
# The leader at the end (another one after a kill, a stall or an election).
LEADER=$(current_leader)
[ -n "$LEADER" ] || LEADER=$FIRST_LEADER
FOLLOWER=$((LEADER % 3 + 1))
if [ "$LEADER" != "$FIRST_LEADER" ]; then
    echo "the leader at the end: rd$LEADER (PID ${RD_PIDS[LEADER]}); rd$FIRST_LEADER led at the start"
else
    bench_cpu_report "${RD_PIDS[LEADER]}"
fi
echo "load average after the storm: $(bench_loadavg)"
# Each replica's share of a core over the run (a replica killed and started
# again during it: its new process's CPU over the whole run's time), and the leader's
# raft entries and the commands in them (group commit's batches).
for i in 1 2 3; do
    c1=$(_bench_cpu_s "${RD_PIDS[i]}" 2>/dev/null || echo 0)
    awk -v i="$i" -v c0="${CPU0[$i]}" -v c1="$c1" -v t0="$T0_RUN" -v t1="$(date +%s.%N)" 'BEGIN {
        if (c1 < c0) c0 = 0
        printf "rd%s CPU over the run: %.1f s, %.1f%% of one core\n", i, c1 - c0, 100 * (c1 - c0) / (t1 - t0) }'
done
curl -sf --max-time 5 "${RD_URLS[LEADER]}/metrics" | awk '
    /^recoveryd_raft_proposed_entries_total / { e = $2 }
    /^recoveryd_raft_proposed_commands_total / { c = $2 }
    /^recoveryd_raft_group_delayed_entries_total / { d = $2 }
    END { if (e > 0) printf "leader'"'"'s proposals: %d raft entries, %d commands, %.2f commands per entry; %d entries waited for the group commit'"'"'s delay\n", e, c, c / e, d }' || true
for i in 1 2 3; do echo "rd$i $(bench_loop_lag "${RD_URLS[i]}")"; done
for i in 1 2 3; do
    st=$(sed 's/.*) //' "/proc/${RD_PIDS[i]}/stat" 2>/dev/null | cut -d' ' -f1 || true)
    if [ -z "$st" ] || [ "$st" = Z ]; then # gone, or dead and not yet reaped
        echo "storm: FAIL replica rd$i (PID ${RD_PIDS[i]}) died during the run: $(tail -n 3 "$WORK/rd$i.log" | tr '\n' ' ')"
        rc=1
    fi
done
# Each replica's storage faults and handovers, and the leaderships
# (role_changed to=leader) in the order they began.
for i in 1 2 3; do
    l="$WORK/rd$i.log"
    echo "rd$i raft: $(grep -c 'event=storage_stalled' "$l" || true) storage_stalled," \
        "$(grep -c 'event=storage_recovered' "$l" || true) storage_recovered," \
        "$(grep -c 'event=handover_withheld' "$l" || true) handover_withheld," \
        "$(grep -c 'event=leadership_handover' "$l" || true) leadership_handover," \
        "$(grep -c 'event=role_changed .*to=leader' "$l" || true) times leader"
done
for i in 1 2 3; do
    { grep 'event=role_changed .*to=leader' "$WORK/rd$i.log" || true; } |
        sed -n "s/^ts=\([^ ]*\) .* term=\([0-9]*\).*/\1 rd$i term \2/p"
done | sort | awk '{ s = s (n++ ? ", " : "") $2 " (" $3 " " $4 ", " substr($1, 12, 12) ")" }
    END { print "leaderships: " n (n ? ": " s : "") }'
if [ -n "${STALL_LEADER_AT:-}" ]; then
    # The stall's events, all replicas, in order (the first 40).
    for i in 1 2 3; do
        { grep -E 'event=(storage_stalled|storage_recovered|storage_failed|handover_withheld|leadership_hand|role_changed)' \
            "$WORK/rd$i.log" || true; } | sed "s/^ts=\([^ ]*\) /\1 rd$i /"
    done | sort -s -k1,1 | head -n 40 | cut -c 1-220
fi
log="$WORK/rd$LEADER.log"
echo "leader's log: $(grep -c 'event=node_failed' "$log" || true) node_failed," \
    "$(grep -c 'event=partition_suspected' "$log" || true) partition_suspected," \
    "$(grep -c 'event=poison_task' "$log" || true) poison_task (tasks quarantined)," \
    "$(grep -c 'level=error' "$log" || true) errors"
# Each trip of the mass-failure guard, with what its troubled agents were
# troubled by (the first 5), and the heartbeat detector's counters: checks
# that judged silence before now because the loop had not read all its
# input (checks_behind), checks skipped as a stall of the engine.
{ grep 'event=partition_suspected' "$log" || true; } | head -n 5 |
    sed 's/^ts=\([^ ]*\) .*event=partition_suspected /\1 partition_suspected /' | cut -c 1-240
echo "leader's heartbeat detector: $(curl -sf --max-time 5 "${RD_URLS[LEADER]}/metrics" |
    sed -n 's/^recoveryd_plugin_heartbeat_\([a-z_]*\)_total{[^}]*} /\1=/p' | tr '\n' ' ' || true)"
# The snapshots the leader took (a forked child images the state: ms, bytes;
# none in a short run, which is no failure).
{ grep 'event=snapshot_imaged' "$log" || true; } | sed -n 's/.*index=\([0-9]*\) bytes=\([0-9]*\) ms=\([0-9]*\).*/\1 \2 \3/p' |
    awk '{ n++; if ($3 > max) max = $3; last = $0 } END {
        if (n) { split(last, f, " ");
            printf "leader snapshots: %d, imaging max %d ms; the last at index %d: %.1f MiB in %d ms\n",
                n, max, f[1], f[2] / 1048576, f[3] }
        else print "leader snapshots: none" }'
echo "raft data of rd$FOLLOWER: $(du -sh "$WORK/rd$FOLLOWER/data" | cut -f1)"

# The restart of a follower on that state: its snapshot loaded and the log
# after it replayed until it answers /ready (the leader goes on meanwhile).
bench_stop "${RD_PIDS[FOLLOWER]}"
t0=$(date +%s%N)
bench_start_replica "$FOLLOWER"
bench_wait_replica "$FOLLOWER"
t1=$(date +%s%N)
echo "restart of follower rd$FOLLOWER to /ready: $(((t1 - t0) / 1000000)) ms" \
    "(its log: $(grep -c 'snapshot' "$WORK/rd$FOLLOWER.log" || true) snapshot lines)"
echo "load average at the end: $(bench_loadavg)"
exit "$rc"
