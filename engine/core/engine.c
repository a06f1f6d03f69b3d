#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "engine.h"
#include "http/auth.h"
#include "net/httpc.h"
#include "recoveryd/error.h"
#include "recoveryd/version.h"

/* After the last in-flight answer, give h2o this long to flush its writes
 * (HTTP/2 frames go out on the next loop turn) before raft closes. */
#define FLUSH_GRACE_NS (100ULL * 1000 * 1000)
/* How long raft may take to close at shutdown before the process stops
 * without it (docs/operations.md, "Signals"): 3 s while a log write waits
 * (the disk has not finished it; it waited out shutdown_timeout already),
 * 10 s else (a snapshot being written, say). With the default 10 s
 * shutdown_timeout both end before systemd's TimeoutStopSec=30. */
#define RAFT_CLOSE_GRACE_MS 3000
#define RAFT_CLOSE_MAX_MS   10000

uint64_t rd_engine_lease_ms(const struct rd_engine *eng)
{
    return rd_config_lease_ms(&eng->cfg);
}

/* Detectors' observations go to the analysis (wired at plugin load). */
static bool observe(void *data, const char *detector, const struct rd_observation *obs)
{
    return rd_analysis_observe(data, detector, obs);
}

static void on_node_change(void *data, const struct rd_node *node, int old_state)
{
    struct rd_engine *eng = data;
    rd_events_node(&eng->events, eng->fsm.applying_index, node, old_state);
    bool leader = eng->leader_since_ns != 0;
    /* Soft state follows the durable state: a new epoch starts afresh, a
     * node that left is forgotten (after the detectors heard of it). */
    rd_analysis_node_changed(&eng->analysis,
                             rd_registry_get(&eng->registry, node->node_id, node->id_len), node,
                             old_state);
    if (leader && node->state != RD_NODE_LEFT) {
        uint64_t grace = rd_engine_lease_ms(eng) * 1000000ULL;
        struct rd_soft *s = rd_registry_touch(&eng->registry, node->node_id, node->id_len,
                                              node->epoch, rd_mono_ns(), grace);
        /* Probation counts the good heartbeats since the node entered it. */
        if (s != NULL && (int)node->state != old_state)
            rd_registry_state_entered(&eng->registry, s);
    }
    if (leader) {
        int event = RD_NODE_EV_STATE;
        if (node->state == RD_NODE_LEFT)
            event = RD_NODE_EV_REMOVED;
        else if (eng->fsm.result.type == RD_CMD_NODE_REGISTER)
            event = old_state < 0 ? RD_NODE_EV_ADDED : RD_NODE_EV_EPOCH;
        rd_plugin_host_node(&eng->plugins, event, node);
        if (event == RD_NODE_EV_EPOCH)
            rd_sched_node_registered(&eng->sched, node->node_id, node->id_len);
        /* New capacity for pending work, or tasks to move off a lost agent. */
        rd_sched_kick(&eng->sched);
    }
    if (node->state == RD_NODE_LEFT)
        rd_registry_forget(&eng->registry, node->node_id, node->id_len);
}

/* Tasks moved off an agent are told to it in its next heartbeat answer. */
static void on_task(void *data, const struct rd_task *t, int old_state, const char *old_node)
{
    struct rd_engine *eng = data;
    rd_events_task(&eng->events, eng->fsm.applying_index, t, old_state, old_node);
    bool held = t->state == RD_TASK_ASSIGNED || t->state == RD_TASK_RUNNING ||
                t->state == RD_TASK_RECOVERING;
    /* Revoked from an agent when it moved, or stopped being held there
     * (paused tasks keep the agent's name but not its slot). */
    if (eng->leader_since_ns == 0 || old_node == NULL || old_node[0] == '\0' ||
        (held && strcmp(old_node, t->node_id) == 0))
        return;
    struct rd_soft *s = rd_registry_get(&eng->registry, old_node, strlen(old_node));
    /* The attempt the agent ran: a placement elsewhere made a new one. */
    uint32_t ran = held && t->attempt > 0 ? t->attempt - 1 : t->attempt;
    if (s != NULL)
        rd_registry_revoke(&eng->registry, s, t->id, ran);
}

/* Every fault opens an alert; its resolution resolves it (leader only: the
 * replica that decided sends, once). */

/* An open data_corruption fault of a check names this replica. */
static bool self_diverged(struct rd_engine *eng)
{
    char check[80];
    for (size_t i = eng->fsm.n_faults; i-- > 0;)
        if (rd_consistency_fault_replica(eng->fsm.faults[i], NULL, check, sizeof(check)) ==
            eng->cfg.cluster.replica_id)
            return true;
    return false;
}

/* Never inside raft's apply: from a timer. Only once this replica caught
 * up with the leader, and only while the fault is still open: replaying an
 * old log at start meets faults that were resolved later in it. */
static void repair_tick(uv_timer_t *t)
{
    struct rd_engine *eng = t->data;
    if (!eng->repair_wanted || eng->shutting_down)
        return;
    uint64_t leader_commit;
    if (!rd_cluster_caught_up(&eng->cluster, &leader_commit)) {
        uv_timer_start(&eng->repair_timer, repair_tick, 500, 0);
        return;
    }
    if (!self_diverged(eng)) {
        eng->repair_wanted = false;
        return;
    }
    int rv = rd_engine_rejoin(eng, eng->repair_reason);
    if (rv == RD_ECONFLICT) { /* still leads: the handover is under way */
        uv_timer_start(&eng->repair_timer, repair_tick, 500, 0);
        return;
    }
    eng->repair_wanted = false;
    if (rv == 0 || rv == RD_EBUSY)
        RD_WARN("consistency", "repairing_self", "reason=\"%s\"", eng->repair_reason);
    else
        RD_ERROR("consistency", "repair_failed", "error=%s reason=\"%s\"", rd_err_name(rv),
                 eng->repair_reason);
}

static void alert_fault(struct rd_engine *eng, const struct rd_fault *x);

/* A local event (events.h): now, at the index this replica applied (after
 * the entry's own events when raised during its apply). */
static void local_event(struct rd_engine *eng, int kind, const char *node, json_t *fields)
{
    rd_events_local(&eng->events, rd_replica_applied_index(&eng->replica), eng->fsm.applying_index,
                    rd_now_ms(), kind, node, fields);
}

static void on_fault(void *data, const struct rd_fault *x)
{
    struct rd_engine *eng = data;
    rd_events_fault(&eng->events, eng->fsm.applying_index, x);
    if (x->status == RD_FAULT_OPEN_ST)
        rd_analysis_fault_applied(&eng->analysis, x->type, x->severity);
    char check[80];
    if (rd_consistency_fault_replica(x, NULL, check, sizeof(check)) ==
            eng->cfg.cluster.replica_id &&
        eng->repair_timer_inited) {
        /* Every replica applies the fault; the one it names repairs itself:
         * its state moves aside and it rejoins from the leader's snapshot. */
        snprintf(eng->repair_reason, sizeof(eng->repair_reason),
                 "state digest diverged from the majority at consistency check %s", check);
        eng->repair_wanted = true;
        uv_timer_start(&eng->repair_timer, repair_tick, 0, 0);
    }
    if (eng->leader_since_ns != 0)
        alert_fault(eng, x);
}

/* A fault's alert (the leader's: raised when the fault opens or resolves,
 * and for every open fault when this replica takes the lead). */
static void alert_fault(struct rd_engine *eng, const struct rd_fault *x)
{
    char summary[512], description[1024];
    bool cluster = x->node_id[0] == '\0';
    snprintf(summary, sizeof(summary), "%s%s%s (%s)", cluster ? "cluster: " : "agent ",
             cluster ? "" : x->node_id, cluster ? rd_fault_type_name(x->type) : "",
             rd_severity_name(x->severity));
    if (!cluster)
        snprintf(summary, sizeof(summary), "agent %s: %s (%s)", x->node_id,
                 rd_fault_type_name(x->type), rd_severity_name(x->severity));
    snprintf(description, sizeof(description), "%s", x->metadata_json);
    struct rd_alert a = {
        .fingerprint = x->id,
        .resolved = x->status == RD_FAULT_RESOLVED,
        .alertname = x->type == RD_FAULT_PARTITION         ? "PartitionSuspected"
                     : x->type == RD_FAULT_POISON_TASK     ? "PoisonTask"
                     : x->type == RD_FAULT_POLICY_ERROR    ? "RecoveryPolicyError"
                     : x->type == RD_FAULT_DATA_CORRUPTION ? "DataInconsistent"
                                                           : "AgentFault",
        .node_id = x->node_id,
        .fault_type = rd_fault_type_name(x->type),
        .severity = rd_severity_name(x->severity),
        .summary = summary,
        .description = description,
        .starts_at_ms = x->detected_at,
        .ends_at_ms = x->resolved_at,
        .labels_json = NULL,
        .scope = RD_ALERT_LEADER,
    };
    rd_plugin_host_alert(&eng->plugins, &a);
    local_event(eng, RD_EV_ALERT, x->node_id,
                json_pack("{s:s,s:s,s:b,s:s,s:s,s:s}", "fingerprint", x->id, "alertname",
                          a.alertname, "resolved", a.resolved, "fault_type", a.fault_type,
                          "severity", a.severity, "summary", summary));
}

static void announced(void *data, int status, uint64_t value)
{
    (void)data;
    (void)value;
    if (status != 0)
        RD_WARN("cluster", "replica_info_refused", "error=%s", rd_err_name(status));
}

/* A new leader writes what the log lacks of the replicas' API URLs: its
 * own, and those of the configured peers (later members bring theirs with
 * POST /api/v1/cluster/replicas). Followers redirect and poll with them. */
static void announce_replicas(struct rd_engine *eng)
{
    const struct rd_config *c = &eng->cfg;
    for (unsigned i = 0; i <= c->cluster.n_peers; i++) {
        uint64_t id = i < c->cluster.n_peers ? c->cluster.peers[i].id : c->cluster.replica_id;
        if (rd_fsm_replica_url(&eng->fsm, id) != NULL)
            continue;
        const char *url = rd_cluster_api_url(&eng->cluster, id);
        if (url == NULL)
            continue;
        struct rd_cmd cmd = {.type = RD_CMD_REPLICA_INFO};
        cmd.u.rinfo.id = id;
        cmd.u.rinfo.api_url = RD_STR(url);
        rd_replica_propose(&eng->replica, &cmd, announced, NULL);
    }
}

/* raft's snapshot could not be imaged (replica/snapshot.h): the engine
 * stops cleanly with exit code 1; the log keeps every entry. */
static void snapshot_failed(void *data, const char *why)
{
    struct rd_engine *eng = data;
    fprintf(stderr, "recoveryd: %s; stopping (the raft log holds every entry: restart me)\n", why);
    eng->exit_code = 1;
    rd_engine_shutdown(eng);
}

/* Every replica tells its streams who leads, as it learns it. */
static void on_leader(void *data, uint64_t leader_id, uint64_t term)
{
    struct rd_engine *eng = data;
    local_event(eng, RD_EV_LEADER, NULL,
                json_pack("{s:I,s:I,s:I,s:b}", "leader_id", (json_int_t)leader_id, "term",
                          (json_int_t)term, "replica_id", (json_int_t)eng->cfg.cluster.replica_id,
                          "self", leader_id == eng->cfg.cluster.replica_id));
}

static void on_role(void *data, bool leader)
{
    struct rd_engine *eng = data;
    if (leader) {
        /* Logged before the grace starts, so the line's time is never later
         * than its start: operators (and test_grace) measure from it. */
        RD_INFO("engine", "leader", "nodes=%zu grace_ms=%llu", eng->fsm.n_nodes,
                (unsigned long long)rd_engine_lease_ms(eng));
        rd_notify_status(&eng->notify, "leader");
        /* Soft state is rebuilt from scratch: every node gets one full lease
         * of grace before anything judges it (DESIGN.md decision 2). */
        eng->leader_since_ns = rd_mono_ns();
        uint64_t grace = rd_engine_lease_ms(eng) * 1000000ULL;
        for (size_t i = 0; i < eng->fsm.n_nodes; i++) {
            const struct rd_node *n = eng->fsm.nodes[i];
            if (n->state != RD_NODE_LEFT)
                rd_registry_touch(&eng->registry, n->node_id, n->id_len, n->epoch,
                                  eng->leader_since_ns, grace);
        }
        rd_registry_untell_all(&eng->registry);
        rd_registry_watch_from(&eng->registry, rd_fsm_stamp(&eng->fsm));
        rd_analysis_reset(&eng->analysis);
        rd_analysis_start(&eng->analysis);
        rd_sched_start(&eng->sched);
        rd_backup_start(&eng->backups);
        rd_records_start(&eng->records);
        rd_lifecycle_start(&eng->lifecycle);
        for (size_t i = 0; i < eng->fsm.n_nodes; i++) {
            const struct rd_node *n = eng->fsm.nodes[i];
            if (n->state != RD_NODE_LEFT)
                rd_plugin_host_node(&eng->plugins, RD_NODE_EV_ADDED, n);
        }
        announce_replicas(eng);
        /* Alert plugins hold (re-send) the open faults' alerts from here on:
         * a new leader raises them all again, as firing. */
        rd_plugin_host_leadership(&eng->plugins, true);
        for (size_t i = 0; i < eng->fsm.n_faults; i++)
            if (eng->fsm.faults[i]->status == RD_FAULT_OPEN_ST)
                alert_fault(eng, eng->fsm.faults[i]);
    } else {
        eng->leader_since_ns = 0;
        rd_analysis_stop(&eng->analysis);
        rd_sched_stop(&eng->sched);
        rd_backup_stop(&eng->backups);
        rd_records_stop(&eng->records);
        rd_lifecycle_stop(&eng->lifecycle);
        /* The leader alone detects: detectors forget every agent (no more
         * probes from here) until this replica leads again. */
        for (size_t i = 0; i < eng->fsm.n_nodes; i++) {
            const struct rd_node *n = eng->fsm.nodes[i];
            if (n->state != RD_NODE_LEFT)
                rd_plugin_host_node(&eng->plugins, RD_NODE_EV_REMOVED, n);
        }
        rd_plugin_host_leadership(&eng->plugins, false);
        RD_INFO("engine", "follower", "%s", "");
        rd_notify_status(&eng->notify, "follower");
    }
}

/* Checkpoint repairs read a task's checkpoints back from backups. */
static int backup_checkpoints(void *data, const char *backup_id, const char *task_id,
                              rd_sched_backup_cb cb, void *cb_data)
{
    return rd_backup_task_checkpoints(data, backup_id, task_id, cb, cb_data);
}

static uint64_t raft_applied(void *data)
{
    return rd_replica_applied_index(data);
}

static uint64_t raft_current(void *data)
{
    return rd_replica_term(data);
}

/* Every applied command, for continuous archiving. */
static void on_entry(void *data, uint64_t index, int64_t time_ms, const void *buf, size_t len)
{
    struct rd_engine *eng = data;
    rd_backup_entry(&eng->backups, index, time_ms, buf, len);
    rd_events_entry(&eng->events, &eng->fsm, index, time_ms);
}

static void on_command(void *data, uint64_t index, const struct rd_cmd *cmd)
{
    struct rd_engine *eng = data;
    rd_events_command(&eng->events, &eng->fsm, index, cmd);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_raft_closed(void *data)
{
    struct rd_engine *eng = data;
    eng->raft_closed = true;
}

static void on_plugins_stopped(void *data)
{
    struct rd_engine *eng = data;
    eng->plugins_stopped = true;
}

static void on_httpc_closed(void *data)
{
    struct rd_engine *eng = data;
    eng->httpc = NULL;
}

/* A start that failed half-way: release what was started, in order. */
static void abort_start(struct rd_engine *eng)
{
    uv_loop_t *loop = eng->loop;
    eng->exit_code = 1;
    rd_http_begin_shutdown(&eng->http);
    rd_plugin_host_stop(&eng->plugins, on_plugins_stopped, eng);
    while ((!eng->plugins_stopped || rd_plugin_host_busy(&eng->plugins)) &&
           uv_run(loop, UV_RUN_ONCE))
        ;
    if (eng->httpc != NULL) {
        eng->httpc_closing = true;
        rd_httpc_close(eng->httpc, on_httpc_closed, eng);
        while (eng->httpc != NULL && uv_run(loop, UV_RUN_ONCE))
            ;
    }
    rd_replica_close(&eng->replica, on_raft_closed, eng);
    while (!eng->raft_closed && uv_run(loop, UV_RUN_ONCE))
        ;
    rd_plugin_host_close(&eng->plugins);
}

/*
 * Raft has not closed in time (RAFT_CLOSE_GRACE_MS, or RAFT_CLOSE_MAX_MS
 * when no log write waits): a write the disk never finishes (a hung disk)
 * holds it, and would hold the process until systemd kills it. Its requests were answered when the
 * close began (503), nothing it acknowledged is pending (acknowledged means committed, on a
 * majority's disks), and so the process stops here, with EX_IOERR: the log
 * was not closed, its end is replayed at the next start. _exit: libuv's
 * exit handler would wait for the write too.
 */
static void raft_close_wait(struct rd_engine *eng, uint64_t now)
{
    uint64_t oldest_ms = 0, waited_ms = (now - eng->raft_closing_ns) / 1000000;
    unsigned appends = rd_replica_appends_waiting(&eng->replica, &oldest_ms);
    if (waited_ms <= (appends > 0 ? RAFT_CLOSE_GRACE_MS : RAFT_CLOSE_MAX_MS))
        return;
    RD_ERROR("engine", "raft_close_abandoned",
             "after_ms=%llu appends_waiting=%u oldest_ms=%llu raft_dir=%s detail=\"raft did not "
             "close: a write the disk has not finished holds it (a hung disk?); the requests "
             "were answered and nothing acknowledged is lost; the process stops without it\"",
             (unsigned long long)waited_ms, appends, (unsigned long long)oldest_ms,
             eng->replica.raft_dir);
    _exit(EX_IOERR);
}

static void shutdown_tick(uv_timer_t *t)
{
    struct rd_engine *eng = t->data;
    uint64_t now = rd_mono_ns();
    bool deadline =
        now - eng->shutdown_started_ns > eng->cfg.server.shutdown_timeout_ms * 1000000ULL;
    if (eng->http.pending > 0 && !deadline)
        return;
    if (eng->drained_ns == 0) {
        eng->drained_ns = now;
        if (eng->http.pending > 0)
            RD_WARN("engine", "shutdown_deadline", "unanswered=%llu",
                    (unsigned long long)eng->http.pending);
    }
    rd_backup_stop(&eng->backups);
    rd_records_stop(&eng->records);
    if (!eng->plugins_stopped || rd_plugin_host_busy(&eng->plugins) ||
        rd_backup_busy(&eng->backups))
        return;
    if (eng->httpc != NULL) {
        if (!eng->httpc_closing) {
            rd_cluster_stop(&eng->cluster);
            rd_consistency_stop(&eng->consistency);
            eng->httpc_closing = true;
            rd_httpc_close(eng->httpc, on_httpc_closed, eng);
        }
        return;
    }
    if (!eng->replica.closing) {
        if (now - eng->drained_ns < FLUSH_GRACE_NS && rd_http_connections(&eng->http) > 0)
            return;
        rd_analysis_stop(&eng->analysis);
        rd_sched_stop(&eng->sched);
        rd_lifecycle_stop(&eng->lifecycle);
        eng->raft_closing_ns = now;
        rd_replica_close(&eng->replica, on_raft_closed, eng);
        return;
    }
    if (!eng->raft_closed) {
        if (eng->raft_closing_ns == 0) /* a rejoin began to close it */
            eng->raft_closing_ns = now;
        raft_close_wait(eng, now);
        return;
    }
    uv_timer_stop(t);
    close_handle((uv_handle_t *)&eng->shutdown_timer);
    close_handle((uv_handle_t *)&eng->sig_int);
    close_handle((uv_handle_t *)&eng->sig_term);
    close_handle((uv_handle_t *)&eng->sig_hup);
    close_handle((uv_handle_t *)&eng->sig_usr2);
    rd_notify_close(&eng->notify);
    rd_drained_stop(&eng->drained);
    if (eng->repair_timer_inited)
        close_handle((uv_handle_t *)&eng->repair_timer);
    RD_INFO("engine", "stopped", "commands_applied=%llu", (unsigned long long)eng->fsm.n_applied);
    /* Idle keep-alive connections are still open (h2o 2.2 cannot close them
     * gracefully); the process exits and the kernel closes them. */
    uv_stop(eng->loop);
}

void rd_engine_shutdown(struct rd_engine *eng)
{
    if (eng->shutting_down)
        return;
    eng->shutting_down = true;
    eng->shutdown_started_ns = rd_mono_ns();
    rd_notify_stopping(&eng->notify);
    RD_INFO("engine", "shutdown", "pending=%llu connections=%zu",
            (unsigned long long)eng->http.pending, rd_http_connections(&eng->http));
    rd_http_begin_shutdown(&eng->http);
    rd_plugin_host_stop(&eng->plugins, on_plugins_stopped, eng);
    uv_timer_init(eng->loop, &eng->shutdown_timer);
    eng->shutdown_timer.data = eng;
    uv_timer_start(&eng->shutdown_timer, shutdown_tick, 0, 5);
}

static void fsm_setup(struct rd_engine *eng)
{
    rd_fsm_init(&eng->fsm);
    eng->fsm.on_node = on_node_change;
    eng->fsm.on_node_data = eng;
    eng->fsm.on_fault = on_fault;
    eng->fsm.on_fault_data = eng;
    eng->fsm.on_task = on_task;
    eng->fsm.on_task_data = eng;
    eng->fsm.on_entry = on_entry;
    eng->fsm.on_entry_data = eng;
    eng->fsm.on_command = on_command;
    eng->fsm.on_command_data = eng;
}

static int rejoin_start_empty(struct rd_engine *eng)
{
    eng->replica.rejoin = true;
    int rv = rd_replica_start(&eng->replica, &eng->fsm);
    if (rv != 0) {
        RD_ERROR("engine", "raft_failed", "error=%s detail=\"%s\"", rd_err_name(rv),
                 eng->replica.errmsg);
        fprintf(stderr, "recoveryd: %s\n", eng->replica.errmsg);
        eng->exit_code = 1;
        rd_engine_shutdown(eng);
        return rv;
    }
    rd_cluster_start(&eng->cluster, eng->httpc);
    rd_notify_ready(&eng->notify, eng->loop, "follower (rejoining)");
    return 0;
}

/* A running replica's raft closed for its rejoin: its state goes aside, the
 * machine starts over empty, raft starts again without bootstrap. */
static void rejoin_closed(void *data)
{
    struct rd_engine *eng = data;
    eng->rejoin_restarting = false;
    if (eng->shutting_down) {
        eng->raft_closed = true;
        return;
    }
    int rv = rd_replica_set_aside(&eng->replica);
    if (rv == 0) {
        rd_fsm_close(&eng->fsm);
        fsm_setup(eng);
        rd_replica_reset(&eng->replica);
        rv = rd_replica_listen(&eng->replica, eng->loop, &eng->cfg);
    }
    if (rv == 0) {
        rejoin_start_empty(eng);
        return;
    }
    RD_ERROR("engine", "rejoin_failed", "error=%s detail=\"%s\"", rd_err_name(rv),
             eng->replica.errmsg);
    eng->exit_code = 1;
    eng->raft_closed = true;
    rd_engine_shutdown(eng);
}

/*
 * The leader demoted this replica: raft (re)starts here empty. At start it
 * never ran; while running (rd_engine_rejoin) it closes first. A start
 * that fails ends the process as a failed start would have.
 */
static int rejoin_left(void *data)
{
    struct rd_engine *eng = data;
    if (eng->shutting_down)
        return RD_ESHUTDOWN;
    if (!eng->replica.started)
        return rejoin_start_empty(eng);
    eng->rejoin_restarting = true;
    rd_replica_close(&eng->replica, rejoin_closed, eng);
    return 0;
}

int rd_engine_rejoin(struct rd_engine *eng, const char *reason)
{
    if (eng->shutting_down || eng->rejoin_restarting)
        return RD_ESHUTDOWN;
    if (rd_replica_is_leader(&eng->replica))
        return RD_ECONFLICT; /* its peers cannot demote it: transfer the leadership first */
    return rd_cluster_rejoin(&eng->cluster, eng->httpc, reason, rejoin_left, eng);
}

static void policy_fault_done(void *data, int status, uint64_t value)
{
    (void)data, (void)status, (void)value;
}

/* A policy that failed (a reload, or a plan at run time) is a fault, and so
 * an alert, decided by the leader. */
static void policy_error(void *data, const char *msg)
{
    struct rd_engine *eng = data;
    if (!rd_replica_is_leader(&eng->replica))
        return;
    char id[RD_UUID_STRLEN];
    if (rd_uuid_v4(id) != 0)
        return;
    json_t *meta =
        json_pack("{s:s,s:s}", "error", msg, "policy_version", rd_policy_version(eng->policy));
    char *meta_s = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
    struct rd_cmd cmd = rd_cmd_cluster_fault(
        0, id, RD_FAULT_POLICY_ERROR, RD_SEV_MAJOR, meta_s ? meta_s : "{}",
        "{\"action\":\"fallback\",\"detail\":\"previous policies or the built-in default act\"}");
    rd_replica_propose(&eng->replica, &cmd, policy_fault_done, NULL);
    free(meta_s);
}

/*
 * Loads every policy file into a fresh host, runs their self-tests, and
 * swaps it in only if all passed (SIGHUP and POST /api/v1/policies/reload).
 * On failure the old policies stay in force, the error (file:line) is logged,
 * recorded as a policy_error fault (on the leader, so it alerts) and returned
 * in `err`. 0 or RD_E*.
 */
static int reload_policies(void *data, char *err, size_t errlen)
{
    struct rd_engine *eng = data;
    const struct rd_config *c = &eng->cfg;
    /* The tokens first, on their own: a broken token file keeps the tokens
     * in force and fails the reload, whatever the policies do. */
    char terr[512];
    int trv = rd_http_reload_tokens(&eng->http, terr, sizeof(terr));
    if (trv != 0)
        RD_ERROR("http", "tokens_reload_failed", "file=%s error=\"%s\"", c->security.tokens_file,
                 terr);
    struct rd_policy_host *fresh = NULL;
    uint64_t t0 = rd_mono_ns();
    int rv = rd_policy_load(c->policies.dir, c->policies.budget_ms, c->policies.memory_limit,
                            &fresh, err, errlen);
    if (rv != 0) {
        eng->policy_reloads_failed++;
        RD_ERROR("policy", "reload_failed", "dir=%s version_in_force=%s error=\"%s\"",
                 c->policies.dir, rd_policy_version(eng->policy), err);
        policy_error(eng, err);
        local_event(eng, RD_EV_POLICY_RELOAD, NULL,
                    json_pack("{s:b,s:s,s:s}", "ok", 0, "version", rd_policy_version(eng->policy),
                              "error", err));
        if (trv != 0) {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, "; security.tokens_file: %s (the tokens in force stay)",
                     terr);
        }
        return rv;
    }
    if (trv != 0) {
        snprintf(err, errlen,
                 "security.tokens_file: %s (the tokens in force stay; the policies were reloaded)",
                 terr);
        rv = trv;
    }
    struct rd_policy_host *old = eng->policy;
    eng->policy = fresh; /* the swap: one pointer, on the loop thread */
    eng->policy_reloads_ok++;
    RD_INFO("policy", "reloaded", "version=%s previous=%s swap_us=%.0f", rd_policy_version(fresh),
            rd_policy_version(old), (double)(rd_mono_ns() - t0) / 1e3);
    local_event(eng, RD_EV_POLICY_RELOAD, NULL,
                json_pack("{s:b,s:s,s:s}", "ok", 1, "version", rd_policy_version(fresh), "previous",
                          rd_policy_version(old)));
    rd_policy_free(old);
    return rv;
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct rd_engine *eng = s->data;
    if (signum == SIGHUP) {
        /* Reload the policies; never ends the process. */
        char err[RD_POLICY_ERRLEN];
        RD_INFO("engine", "sighup", "%s", "action=reload_policies");
        reload_policies(eng, err, sizeof(err));
        return;
    }
    if (signum == SIGUSR2) {
        /* Debug lines on and off (docs/operations.md, "Logs"): to debug,
         * or back to logging.level when already at debug. */
        enum rd_log_level base = eng->cfg.logging.level;
        if (base == RD_LOG_DEBUG)
            base = RD_LOG_INFO; /* configured at debug: the signal toggles with info */
        enum rd_log_level to = rd_log_get_level() == RD_LOG_DEBUG ? base : RD_LOG_DEBUG;
        rd_log_change_level(to, "SIGUSR2");
        return;
    }
    RD_INFO("engine", "signal", "signal=%s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    rd_engine_shutdown(eng);
}

int rd_engine_run(struct rd_engine *eng, uv_loop_t *loop, const struct rd_config *cfg)
{
    int rv;
    eng->loop = loop;
    eng->cfg = *cfg;
    eng->started_ns = rd_mono_ns();
    rd_log_set_level(eng->cfg.logging.level);
    rd_log_set_format(eng->cfg.logging.format);
    signal(SIGPIPE, SIG_IGN);
    if (rd_events_init(&eng->events, eng->cfg.server.events.ring_size) != 0) {
        fprintf(stderr, "recoveryd: out of memory for server.events.ring_size %u\n",
                eng->cfg.server.events.ring_size);
        return 1;
    }
    fsm_setup(eng);
    rd_registry_init(&eng->registry);
    rd_analysis_init(&eng->analysis, loop, &eng->cfg, &eng->fsm, &eng->registry,
                     rd_replica_proposer(&eng->replica), &eng->plugins);
    struct rd_sched_env senv = {
        .loop = loop,
        .cfg = &eng->cfg,
        .fsm = &eng->fsm,
        .registry = &eng->registry,
        .log = rd_replica_proposer(&eng->replica),
        .analysis = &eng->analysis,
        .alerts = &eng->plugins,
        .policy = &eng->policy,
        .policy_error = policy_error,
        .policy_error_data = eng,
        .shutting_down = &eng->shutting_down,
        .leader_since_ns = &eng->leader_since_ns,
        .backup_checkpoints = backup_checkpoints,
        .backup_data = &eng->backups,
    };
    rd_sched_init(&eng->sched, &senv);
    rd_cluster_init(&eng->cluster, loop, &eng->cfg, &eng->fsm, &eng->replica, &eng->plugins);
    struct rd_backup_env benv = {
        .loop = loop,
        .cfg = &eng->cfg,
        .fsm = &eng->fsm,
        .log = rd_replica_proposer(&eng->replica),
        .plugins = &eng->plugins,
        .applied_index = raft_applied,
        .term = raft_current,
        .raft = &eng->replica,
        .shutting_down = &eng->shutting_down,
    };
    rd_backup_init(&eng->backups, &benv);
    struct rd_records_env renv = {
        .loop = loop,
        .cfg = &eng->cfg,
        .fsm = &eng->fsm,
        .log = rd_replica_proposer(&eng->replica),
        .term = raft_current,
        .raft = &eng->replica,
    };
    rd_records_init(&eng->records, &renv);
    struct rd_lifecycle_env lenv = {
        .loop = loop,
        .cfg = &eng->cfg,
        .fsm = &eng->fsm,
        .log = rd_replica_proposer(&eng->replica),
    };
    rd_lifecycle_init(&eng->lifecycle, &lenv);
    struct rd_consistency_env cenv = {
        .loop = loop,
        .cfg = &eng->cfg,
        .fsm = &eng->fsm,
        .log = rd_replica_proposer(&eng->replica),
        .replica = &eng->replica,
        .cluster = &eng->cluster,
    };
    rd_consistency_init(&eng->consistency, &cenv);
    eng->replica.on_role = on_role;
    eng->replica.on_leader = on_leader;
    eng->replica.on_role_data = eng;
    eng->replica.snap.on_failed = snapshot_failed;
    eng->replica.snap.on_failed_data = eng;

    RD_INFO("engine", "starting", "version=%s config=%s data_dir=%s replica_id=%llu",
            RD_VERSION_STRING, eng->cfg.path[0] ? eng->cfg.path : "(defaults)",
            eng->cfg.storage.data_dir, (unsigned long long)eng->cfg.cluster.replica_id);

    /*
     * Claim what another process may hold before anything else: the data
     * directory, then the API and raft addresses. A second instance stops
     * here, with one line, before raft reads, writes or campaigns.
     */
    char origin[RD_CFG_ERRLEN];
    rv = rd_replica_lock(&eng->replica, &eng->cfg);
    if (rv != 0) {
        rd_config_origin(&eng->cfg, RD_CFG_DATA_DIR, origin, sizeof(origin));
        RD_ERROR("engine", "data_dir_failed", "error=%s detail=\"%s\" origin=\"%s\"",
                 rd_err_name(rv), eng->replica.errmsg, origin);
        fprintf(stderr, "recoveryd: %s (%s)\n", eng->replica.errmsg, origin);
        eng->exit_code = 1;
        goto out;
    }
    /* Damage on disk is judged before raft reads anything (issue 11). */
    rv = rd_replica_check_disk(&eng->replica, &eng->cfg);
    if (rv != 0) {
        fprintf(stderr, "recoveryd: %s\n", eng->replica.errmsg);
        if (rv != RD_ECORRUPT)
            RD_ERROR("engine", "data_dir_failed", "error=%s detail=\"%s\"", rd_err_name(rv),
                     eng->replica.errmsg);
        eng->exit_code = 1;
        goto out;
    }
    if (eng->cfg.security.peer_token_file[0] != '\0') {
        char terr[512];
        rv = rd_peer_token_read(eng->cfg.security.peer_token_file,
                                eng->cfg.security.peer_authorization,
                                sizeof(eng->cfg.security.peer_authorization), terr, sizeof(terr));
        if (rv != 0) {
            RD_ERROR("engine", "peer_token_failed", "error=%s detail=\"%s\"", rd_err_name(rv),
                     terr);
            fprintf(stderr, "recoveryd: security.peer_token_file: %s\n", terr);
            eng->exit_code = 1;
            goto out;
        }
    }
    struct rd_http_env henv = {
        .loop = loop,
        .cfg = &eng->cfg,
        .fsm = &eng->fsm,
        .replica = &eng->replica,
        .registry = &eng->registry,
        .analysis = &eng->analysis,
        .sched = &eng->sched,
        .task_deadlines_total = &eng->lifecycle.deadlines_total,
        .tasks_pruned_total = &eng->lifecycle.pruned_total,
        .cluster = &eng->cluster,
        .consistency = &eng->consistency,
        .plugins = &eng->plugins,
        .backups = &eng->backups,
        .records = &eng->records,
        .events = &eng->events,
        .policy = &eng->policy,
        .shutting_down = &eng->shutting_down,
        .started_ns = &eng->started_ns,
        .policy_reloads_ok = &eng->policy_reloads_ok,
        .policy_reloads_failed = &eng->policy_reloads_failed,
        .reload_policies = reload_policies,
        .reload_data = eng,
        .debug = eng->debug,
        .debug_data = &eng->fsm,
    };
    rv = rd_http_start(&eng->http, &henv, eng->cfg.server.listen_host, eng->cfg.server.listen_port,
                       eng->cfg.server.max_body_bytes, eng->cfg.server.tls_cert,
                       eng->cfg.server.tls_key);
    if (rv != 0) {
        /* An address error says where server.listen was set; a TLS one
         * names its key already. */
        origin[0] = '\0';
        if (rv == RD_EIO || rv == RD_EINVAL ||
            strncmp(eng->http.errmsg, "server.listen ", 14) == 0) /* open on a public address */
            rd_config_origin(&eng->cfg, RD_CFG_SERVER_LISTEN, origin, sizeof(origin));
        RD_ERROR("engine", "http_failed", "error=%s detail=\"%s\" origin=\"%s\"", rd_err_name(rv),
                 eng->http.errmsg, origin);
        fprintf(stderr, "recoveryd: %s%s%s%s\n", eng->http.errmsg, origin[0] ? " (" : "", origin,
                origin[0] ? ")" : "");
        abort_start(eng);
        goto out;
    }
    rv = rd_replica_listen(&eng->replica, loop, &eng->cfg);
    if (rv != 0) {
        /* A cluster.tls error names its key and file already. */
        origin[0] = '\0';
        if (rv != RD_ECONFIG)
            rd_config_origin(&eng->cfg, RD_CFG_RAFT_ADDRESS, origin, sizeof(origin));
        RD_ERROR("engine", "raft_failed", "error=%s detail=\"%s\" origin=\"%s\"", rd_err_name(rv),
                 eng->replica.errmsg, origin);
        fprintf(stderr, "recoveryd: %s%s%s%s\n", eng->replica.errmsg, origin[0] ? " (" : "", origin,
                origin[0] ? ")" : "");
        abort_start(eng);
        goto out;
    }

    char perr[1024];
    rv = rd_policy_load(eng->cfg.policies.dir, eng->cfg.policies.budget_ms,
                        eng->cfg.policies.memory_limit, &eng->policy, perr, sizeof(perr));
    if (rv != 0) {
        rd_config_origin(&eng->cfg, RD_CFG_POLICIES_DIR, origin, sizeof(origin));
        RD_ERROR("engine", "policies_failed", "dir=%s error=\"%s\" origin=\"%s\"",
                 eng->cfg.policies.dir, perr, origin);
        fprintf(stderr, "recoveryd: policies.dir: %s (%s)\n", perr, origin);
        abort_start(eng);
        goto out;
    }
    RD_INFO("policy", "loaded", "dir=%s version=%s", eng->cfg.policies.dir,
            rd_policy_version(eng->policy));
    rv = rd_drained_start(&eng->drained, loop, rd_mono_ns);
    if (rv != 0) /* judged up to now, as before */
        RD_WARN("engine", "loop_metrics_off", "error=\"%s\"", uv_strerror(rv));
    rv = rd_httpc_new(loop, &eng->httpc);
    if (rv == 0) {
        struct rd_plugin_env env = {
            .loop = loop,
            .cfg = &eng->cfg,
            .fsm = &eng->fsm,
            .registry = &eng->registry,
            .httpc = eng->httpc,
            .observe = observe,
            .observe_data = &eng->analysis,
            .drained = &eng->drained,
        };
        rv = rd_plugin_host_load(&eng->plugins, &env, perr, sizeof(perr));
    }
    if (rv == 0)
        rv = rd_plugin_host_start(&eng->plugins, perr, sizeof(perr));
    if (rv == 0)
        rv = rd_backup_bind(&eng->backups, perr, sizeof(perr));
    if (rv != 0) {
        RD_ERROR("engine", "plugins_failed", "error=%s detail=\"%s\"", rd_err_name(rv), perr);
        fprintf(stderr, "recoveryd: %s\n", perr);
        abort_start(eng);
        goto out;
    }

    if (eng->replica.rejoin) {
        /* Raft starts once the leader demoted this replica (rejoin_left). */
        rv = rd_cluster_rejoin(&eng->cluster, eng->httpc, NULL, rejoin_left, eng);
        if (rv != 0) {
            fprintf(stderr,
                    "recoveryd: this replica must rejoin its cluster (its data directory was "
                    "damaged) but knows no other replica's API URL: give cluster.peers with "
                    "api_url (or --peer ID=HOST:PORT=URL)\n");
            abort_start(eng);
            goto out;
        }
    } else {
        rv = rd_replica_start(&eng->replica, &eng->fsm);
        if (rv != 0) {
            RD_ERROR("engine", "raft_failed", "error=%s detail=\"%s\"", rd_err_name(rv),
                     eng->replica.errmsg);
            fprintf(stderr, "recoveryd: %s\n", eng->replica.errmsg);
            abort_start(eng);
            goto out;
        }
        rd_cluster_start(&eng->cluster, eng->httpc);
    }
    rd_consistency_start(&eng->consistency, eng->httpc);
    uv_signal_init(loop, &eng->sig_int);
    uv_signal_init(loop, &eng->sig_term);
    uv_signal_init(loop, &eng->sig_hup);
    uv_signal_init(loop, &eng->sig_usr2);
    uv_timer_init(loop, &eng->repair_timer);
    eng->repair_timer.data = eng;
    eng->repair_timer_inited = true;
    eng->sig_int.data = eng->sig_term.data = eng->sig_hup.data = eng->sig_usr2.data = eng;
    uv_signal_start(&eng->sig_int, on_signal, SIGINT);
    uv_signal_start(&eng->sig_term, on_signal, SIGTERM);
    uv_signal_start(&eng->sig_hup, on_signal, SIGHUP);
    uv_signal_start(&eng->sig_usr2, on_signal, SIGUSR2);
    /* The API listens and raft runs (a rejoining replica's starts later, in
     * rejoin_start_empty): systemd's Type=notify may count it started. */
    if (!eng->replica.rejoin)
        rd_notify_ready(&eng->notify, loop,
                        rd_replica_is_leader(&eng->replica) ? "leader" : "follower");

    uv_run(loop, UV_RUN_DEFAULT);
    rd_plugin_host_close(&eng->plugins);
out:
    rd_policy_free(eng->policy);
    eng->policy = NULL;
    rd_backup_close(&eng->backups);
    rd_records_close(&eng->records);
    rd_sched_close(&eng->sched);
    rd_analysis_close(&eng->analysis);
    rd_registry_close(&eng->registry);
    rd_fsm_close(&eng->fsm);
    rd_events_close(&eng->events);
    return eng->exit_code;
}
