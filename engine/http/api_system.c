/* Probes, metrics and the cluster's health. */
#include <stdio.h>
#include <string.h>

#include "backup/backup.h"
#include "common/util.h"
#include "consistency/consistency.h"
#include "cluster/cluster.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "fsm/fsm.h"
#include "plugin/host.h"
#include "policy/policy.h"
#include "records/records.h"
#include "recover/sched.h"
#include "registry/registry.h"
#include "replica/replica.h"
#include "http.h"
#include "http/auth.h"
#include "recoveryd/revision.h"
#include "recoveryd/version.h"
#include "events/events.h"
#include "metrics/ops.h"
#include "common/log.h"

/* Liveness, plus what the other replicas poll for their view of this one. */
void rd_api_HEALTH(struct rd_http_req *hr)
{
    struct rd_replica *r = hr->env->replica;
    uint64_t leader;
    const char *addr;
    rd_replica_leader(r, &leader, &addr);
    char body[256];
    int n = snprintf(body, sizeof(body),
                     "{\"status\":\"ok\",\"replica_id\":%llu,\"role\":\"%s\",\"term\":%llu,"
                     "\"applied_index\":%llu,\"commit_index\":%llu,\"leader\":%llu}",
                     (unsigned long long)hr->env->cfg->cluster.replica_id, rd_replica_role_name(r),
                     (unsigned long long)rd_replica_term(r),
                     (unsigned long long)rd_replica_applied_index(r),
                     (unsigned long long)rd_replica_commit_index(r), (unsigned long long)leader);
    rd_http_send_raw(hr, 200, "application/json", body, (size_t)n);
}

void rd_api_READY(struct rd_http_req *hr)
{
    struct rd_replica *r = hr->env->replica;
    uint64_t leader;
    const char *addr;
    rd_replica_leader(r, &leader, &addr);
    uint64_t applied = rd_replica_applied_index(r), commit = 0;
    bool caught_up = rd_cluster_caught_up(hr->env->cluster, &commit);
    if (*hr->env->shutting_down) {
        rd_http_send_error(hr, 503, "not_ready", NULL, "the engine is shutting down");
    } else if (leader == 0) {
        rd_http_send_error(hr, 503, "not_ready", NULL, "no leader is known yet");
    } else if (!caught_up && commit == 0) {
        rd_http_send_error(hr, 503, "not_ready",
                           json_pack("{s:I}", "applied_index", (json_int_t)applied),
                           "waiting to hear the leader's commit index (%llu applied)",
                           (unsigned long long)applied);
    } else if (!caught_up) {
        rd_http_send_error(hr, 503, "not_ready",
                           json_pack("{s:I,s:I}", "applied_index", (json_int_t)applied,
                                     "leader_commit_index", (json_int_t)commit),
                           "applied index %llu is behind the leader's commit index %llu",
                           (unsigned long long)applied, (unsigned long long)commit);
    } else {
        rd_http_send_json(hr, 200,
                          json_pack("{s:s,s:I,s:I}", "status", "ready", "applied_index",
                                    (json_int_t)applied, "leader", (json_int_t)leader));
    }
}

void rd_api_CLUSTER_HEALTH(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    struct rd_replica *r = env->replica;
    const size_t *c = env->fsm->count_by_state;
    size_t total = env->fsm->n_nodes - c[RD_NODE_LEFT];
    size_t healthy = c[RD_NODE_ALIVE] + c[RD_NODE_PROBATION] + c[RD_NODE_DRAINING];
    size_t failed = c[RD_NODE_FAILED], suspect = c[RD_NODE_SUSPECT], isolated = c[RD_NODE_ISOLATED];
    uint64_t leader;
    const char *leader_addr;
    rd_replica_leader(r, &leader, &leader_addr);
    bool quorum = rd_cluster_has_quorum(env->cluster);
    const char *overall = "healthy";
    if (!quorum || (total > 0 && (failed + isolated) * 2 >= total))
        overall = "critical";
    else if (failed + suspect + isolated > 0)
        overall = "degraded";
    json_t *replicas = rd_cluster_replicas_json(env->cluster);
    char now[RD_TIME_STRLEN];
    rd_time_format(rd_now_ms(), now);
    json_t *o =
        json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:{s:b,s:o,s:I,s:o},s:s}", "overall_health", overall,
                  "healthy_nodes", (json_int_t)healthy, "failed_nodes", (json_int_t)failed,
                  "suspect_nodes", (json_int_t)suspect, "isolated_nodes", (json_int_t)isolated,
                  "total_nodes", (json_int_t)total, "quorum", "has_quorum", quorum, "leader",
                  leader ? json_integer((json_int_t)leader) : json_null(), "term",
                  (json_int_t)rd_replica_term(r), "replicas", replicas, "last_updated", now);
    rd_http_send_json(hr, 200, o);
}

/* The log level in force on this replica (docs/operations.md, "Logs"). */
static json_t *log_level_json(void)
{
    return json_pack("{s:s,s:s}", "level", rd_log_level_name(rd_log_get_level()), "format",
                     rd_log_format_name(rd_log_get_format()));
}

/* Who the caller is to this replica: its principal and role, so that a
 * client (the dashboard) offers only what the role may do. */
void rd_api_WHOAMI(struct rd_http_req *hr)
{
    /* Without authentication every caller may do everything: admin. */
    enum rd_role role = hr->env->http->auth_on ? hr->who.role : RD_ROLE_ADMIN;
    rd_http_send_json(hr, 200,
                      json_pack("{s:s,s:s}", "principal", hr->who.id[0] ? hr->who.id : "anonymous",
                                "role", rd_role_name(role)));
}

void rd_api_LOG_LEVEL_GET(struct rd_http_req *hr)
{
    rd_http_send_json(hr, 200, log_level_json());
}

/* Changes the level of this replica only, until the next change or restart. */
void rd_api_LOG_LEVEL_SET(struct rd_http_req *hr)
{
    json_t *body = rd_http_body_object(hr);
    if (body == NULL)
        return;
    json_t *lv = json_object_get(body, "level");
    enum rd_log_level level;
    if (!json_is_string(lv) || rd_log_level_parse(json_string_value(lv), &level) != 0) {
        rd_http_bad_request(hr, "level",
                            "level: expected \"debug\", \"info\", \"warn\" or \"error\"");
        json_decref(body);
        return;
    }
    json_decref(body);
    snprintf(hr->audit_target, sizeof(hr->audit_target), "%s", rd_log_level_name(level));
    char by[160];
    snprintf(by, sizeof(by), "api:%s", hr->who.id[0] ? hr->who.id : "anonymous");
    rd_log_change_level(level, by);
    rd_http_send_json(hr, 200, log_level_json());
}

/* The event stream (docs/events.md). */
static void streams_metrics(const struct rd_http_env *env, struct rd_mbuf *b)
{
    const struct rd_http_streams *st = &env->http->streams;
    rd_metric_header(b, "recoveryd_events_streams", "gauge", "Event streams open on this replica.");
    rd_mbuf_printf(b, "recoveryd_events_streams %u\n", st->n);
    rd_metric_header(b, "recoveryd_events_streams_opened_total", "counter",
                     "Event streams opened on this replica.");
    rd_mbuf_printf(b, "recoveryd_events_streams_opened_total %llu\n",
                   (unsigned long long)st->opened);
    rd_metric_header(b, "recoveryd_events_streams_ended_total", "counter",
                     "Event streams ended, by why: client (it went away), behind (it fell behind "
                     "the ring: dropped), stalled (behind and reading nothing: closed), "
                     "shutdown.");
    for (int i = 0; i < RD_STREAM_END_COUNT; i++)
        rd_mbuf_printf(b, "recoveryd_events_streams_ended_total{reason=\"%s\"} %llu\n",
                       rd_http_stream_end_name(i), (unsigned long long)st->ended[i]);
    rd_metric_header(b, "recoveryd_events_streams_refused_total", "counter",
                     "Event streams refused over server.events.max_streams_per_principal (429) "
                     "or max_streams (503).");
    rd_mbuf_printf(b, "recoveryd_events_streams_refused_total{limit=\"principal\"} %llu\n",
                   (unsigned long long)st->refused[0]);
    rd_mbuf_printf(b, "recoveryd_events_streams_refused_total{limit=\"total\"} %llu\n",
                   (unsigned long long)st->refused[1]);
    rd_metric_header(b, "recoveryd_events_sent_total", "counter",
                     "Events sent on all streams (resync and dropped included).");
    rd_mbuf_printf(b, "recoveryd_events_sent_total %llu\n", (unsigned long long)st->sent);
    rd_metric_header(b, "recoveryd_events_keepalives_total", "counter",
                     "Keepalive comments sent on idle event streams.");
    rd_mbuf_printf(b, "recoveryd_events_keepalives_total %llu\n",
                   (unsigned long long)st->keepalives);
    const struct rd_events *ev = env->events;
    if (ev == NULL)
        return;
    rd_metric_header(b, "recoveryd_events_total", "counter",
                     "Events this replica put in its ring (log-derived and local).");
    rd_mbuf_printf(b, "recoveryd_events_total %llu\n", (unsigned long long)ev->pushed);
    rd_metric_header(b, "recoveryd_events_ring_events", "gauge",
                     "Events held in the ring (at most server.events.ring_size).");
    rd_mbuf_printf(b, "recoveryd_events_ring_events %llu\n",
                   (unsigned long long)(ev->next - ev->head));
    rd_metric_header(b, "recoveryd_events_ring_bytes", "gauge",
                     "Bytes of the events held in the ring.");
    rd_mbuf_printf(b, "recoveryd_events_ring_bytes %zu\n", ev->bytes);
}

void rd_api_METRICS(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    struct rd_http *http = env->http;
    struct rd_replica *r = env->replica;
    struct rd_mbuf b;
    rd_mbuf_init(&b);

    rd_metric_header(&b, "recoveryd_build_info", "gauge",
                     "Build information: the version and the git revision built (\"unknown\" "
                     "outside a git checkout).");
    rd_mbuf_printf(&b, "recoveryd_build_info{version=\"%s\",revision=\"%s\"} 1\n",
                   RD_VERSION_STRING, RD_GIT_REVISION);
    rd_process_metrics(&b);
    rd_metric_header(&b, "recoveryd_uptime_seconds", "gauge", "Seconds since the engine started.");
    rd_mbuf_printf(&b, "recoveryd_uptime_seconds %.3f\n",
                   (double)(rd_mono_ns() - *env->started_ns) / 1e9);

    rd_metric_header(&b, "recoveryd_http_requests_total", "counter",
                     "HTTP requests answered, by route and status.");
    for (int rt = 0; rt < RD_ROUTE_COUNT; rt++) {
        for (int s = 0; s < RD_STATUS_SLOTS; s++) {
            uint64_t v = http->requests[rt][s];
            if (v == 0)
                continue;
            int code = rd_http_status_of_slot(s);
            if (code)
                rd_mbuf_printf(&b,
                               "recoveryd_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                               rd_http_route_name(rt), code, (unsigned long long)v);
            else
                rd_mbuf_printf(
                    &b, "recoveryd_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                    rd_http_route_name(rt), (unsigned long long)v);
        }
    }
    /* Conflicts (availability mode; docs/operations.md). */
    rd_metric_header(&b, "recoveryd_conflicts_total", "counter",
                     "Writes of superseded attempts recorded as conflicts (availability mode) that "
                     "this replica applied, by what was written and how it was resolved.");
    for (int k = 0; k < RD_CONFLICT_KIND_COUNT; k++)
        for (int res = 0; res < RD_CONFLICT_RES_COUNT; res++)
            rd_mbuf_printf(&b, "recoveryd_conflicts_total{kind=\"%s\",resolution=\"%s\"} %llu\n",
                           rd_conflict_kind_name(k), rd_conflict_res_name(res),
                           (unsigned long long)env->fsm->conflicts_written[k][res]);
    rd_metric_header(&b, "recoveryd_conflicts", "gauge",
                     "Conflict records held (at most 10,000; pruned with their task).");
    rd_mbuf_printf(&b, "recoveryd_conflicts %zu\n", env->fsm->n_conflicts);
    /* The audit trail (docs/security.md). */
    rd_metric_header(&b, "recoveryd_audit_records_written_total", "counter",
                     "Audit records this replica applied to its state (with their change or "
                     "alone).");
    rd_mbuf_printf(&b, "recoveryd_audit_records_written_total %llu\n",
                   (unsigned long long)env->fsm->audits_written);
    rd_metric_header(&b, "recoveryd_audit_records", "gauge",
                     "Audit records held (bounded by security.audit.max_records and max_age).");
    rd_mbuf_printf(&b, "recoveryd_audit_records %zu\n", env->fsm->n_audits);
    rd_metric_header(&b, "recoveryd_audit_proposed_total", "counter",
                     "Audit records this replica proposed alone: denials, failures, answers "
                     "without a log change.");
    rd_mbuf_printf(&b, "recoveryd_audit_proposed_total %llu\n",
                   (unsigned long long)http->audit_proposed);
    rd_metric_header(&b, "recoveryd_audit_dropped_total", "counter",
                     "Audited requests whose record could not be proposed (this replica was not "
                     "the leader, or its log refused the write).");
    rd_mbuf_printf(&b, "recoveryd_audit_dropped_total %llu\n",
                   (unsigned long long)http->audit_dropped);
    rd_metric_header(&b, "recoveryd_audit_denials_suppressed_total", "counter",
                     "Denied requests (401, 403) beyond 100 a second: counted here, not recorded "
                     "one by one.");
    rd_mbuf_printf(&b, "recoveryd_audit_denials_suppressed_total %llu\n",
                   (unsigned long long)http->audit_denials_suppressed);
    rd_metric_header(&b, "recoveryd_audit_unaudited_requests_total", "counter",
                     "Requests counted here instead of audited one by one (heartbeats, "
                     "checkpoint writes), by route.");
    for (int rt = 0; rt < RD_ROUTE_COUNT; rt++) {
        if (rt != RD_ROUTE_NODE_HEARTBEAT && rt != RD_ROUTE_TASK_CHECKPOINT_PUT)
            continue;
        uint64_t v = 0;
        for (int s = 0; s < RD_STATUS_SLOTS; s++)
            v += http->requests[rt][s];
        rd_mbuf_printf(&b, "recoveryd_audit_unaudited_requests_total{route=\"%s\"} %llu\n",
                       rd_http_route_name(rt), (unsigned long long)v);
    }
    rd_metric_header(&b, "recoveryd_http_request_duration_seconds", "histogram",
                     "Time from request to answer, by route (commits included).");
    for (int rt = 0; rt < RD_ROUTE_COUNT; rt++) {
        if (http->latency[rt].count == 0)
            continue;
        char labels[64];
        snprintf(labels, sizeof(labels), "route=\"%s\"", rd_http_route_name(rt));
        rd_metric_hist(&b, "recoveryd_http_request_duration_seconds", labels, &http->latency[rt]);
    }
    rd_metric_header(&b, "recoveryd_http_pending_commits", "gauge",
                     "Answers waiting for a log commit.");
    rd_mbuf_printf(&b, "recoveryd_http_pending_commits %llu\n", (unsigned long long)http->pending);
    rd_metric_header(&b, "recoveryd_http_connections", "gauge", "Open HTTP connections.");
    rd_mbuf_printf(&b, "recoveryd_http_connections %zu\n", rd_http_connections(http));
    rd_metric_header(&b, "recoveryd_http_auth_denied_total", "counter",
                     "Requests refused by the access check (docs/security.md): 401 "
                     "unauthenticated, 403 forbidden.");
    rd_mbuf_printf(&b, "recoveryd_http_auth_denied_total{reason=\"unauthenticated\"} %llu\n",
                   (unsigned long long)http->auth_denied[0]);
    rd_mbuf_printf(&b, "recoveryd_http_auth_denied_total{reason=\"forbidden\"} %llu\n",
                   (unsigned long long)http->auth_denied[1]);
    rd_metric_header(&b, "recoveryd_http_tokens", "gauge",
                     "Tokens in force from security.tokens_file.");
    rd_mbuf_printf(&b, "recoveryd_http_tokens %zu\n", http->tokens ? http->tokens->n : 0);
    rd_edge_metrics(&http->edge, &b);
    streams_metrics(env, &b);

    rd_metric_header(&b, "recoveryd_heartbeats_total", "counter", "Heartbeats accepted.");
    rd_mbuf_printf(&b, "recoveryd_heartbeats_total %llu\n",
                   (unsigned long long)env->registry->heartbeats_total);
    rd_metric_header(&b, "recoveryd_nodes", "gauge", "Registered agents by state.");
    for (int s = 0; s < RD_NODE_STATE_COUNT; s++)
        rd_mbuf_printf(&b, "recoveryd_nodes{state=\"%s\"} %zu\n", rd_node_state_name(s),
                       env->fsm->count_by_state[s]);

    rd_metric_header(&b, "recoveryd_raft_commit_duration_seconds", "histogram",
                     "Time from proposing a command to its apply on this leader.");
    rd_metric_hist(&b, "recoveryd_raft_commit_duration_seconds", "", &r->commit_latency);
    rd_metric_u64(&b, "recoveryd_raft_commits_total", "counter", "Commands committed.",
                  r->commits_total);
    rd_metric_u64(&b, "recoveryd_raft_proposed_entries_total", "counter",
                  "raft entries this replica proposed with commands (group commit: one entry "
                  "carries the commands proposed in one turn of the loop).",
                  r->group.entries_total);
    rd_metric_u64(&b, "recoveryd_raft_proposed_commands_total", "counter",
                  "Commands in those entries.", r->group.commands_total);
    rd_metric_u64(&b, "recoveryd_raft_group_delayed_entries_total", "counter",
                  "Entries whose writes waited for cluster.group_commit_delay (only while the "
                  "loop is saturated) for more writes to join them.",
                  r->group.delayed_total);
    rd_metric_u64(&b, "recoveryd_raft_commit_errors_total", "counter",
                  "Proposals that failed to commit.", r->commit_errors_total);
    rd_metric_header(&b, "recoveryd_raft_snapshots_total", "counter",
                     "raft's own snapshots taken, by how: imaged by a forked child, or "
                     "serialised on the loop because the fork failed.");
    rd_mbuf_printf(&b, "recoveryd_raft_snapshots_total{how=\"forked\"} %llu\n",
                   (unsigned long long)r->snap.forked);
    rd_mbuf_printf(&b, "recoveryd_raft_snapshots_total{how=\"on_loop\"} %llu\n",
                   (unsigned long long)r->snap.on_loop);
    rd_metric_header(&b, "recoveryd_raft_snapshot_failures_total", "counter",
                     "Snapshot children that died (the engine then stops: docs/operations.md).");
    rd_mbuf_printf(&b, "recoveryd_raft_snapshot_failures_total %llu\n",
                   (unsigned long long)r->snap.failed);
    rd_metric_u64(&b, "recoveryd_raft_snapshots_on_bytes_total", "counter",
                  "raft's own snapshots asked for by storage.snapshot_threshold_bytes (the log "
                  "since the last snapshot held that many bytes).",
                  r->snap.on_bytes);
    rd_metric_u64(&b, "recoveryd_raft_log_bytes_since_snapshot", "gauge",
                  "Bytes of the entries applied since the newest snapshot started (held in "
                  "memory by libraft until the next one).",
                  r->snap.since_bytes);
    rd_metric_u64(&b, "recoveryd_raft_snapshot_trailing_entries", "gauge",
                  "Entries the newest snapshot kept behind it (storage.snapshot_trailing, fewer "
                  "when storage.snapshot_trailing_bytes holds less).",
                  r->snap.last_trailing);
    rd_metric_header(&b, "recoveryd_raft_snapshot_fork_seconds", "gauge",
                     "How long the newest snapshot's fork held the loop.");
    rd_mbuf_printf(&b, "recoveryd_raft_snapshot_fork_seconds %.6f\n",
                   (double)r->snap.last_fork_us / 1e6);
    rd_metric_header(&b, "recoveryd_raft_applied_index", "gauge", "Last log index applied.");
    rd_mbuf_printf(&b, "recoveryd_raft_applied_index %llu\n",
                   (unsigned long long)rd_replica_applied_index(r));
    rd_metric_header(&b, "recoveryd_raft_commit_index", "gauge", "Last log index known committed.");
    rd_mbuf_printf(&b, "recoveryd_raft_commit_index %llu\n",
                   (unsigned long long)rd_replica_commit_index(r));
    rd_metric_header(&b, "recoveryd_raft_term", "gauge", "Current raft term.");
    rd_mbuf_printf(&b, "recoveryd_raft_term %llu\n", (unsigned long long)rd_replica_term(r));
    rd_metric_header(&b, "recoveryd_raft_is_leader", "gauge", "1 on the leader.");
    rd_mbuf_printf(&b, "recoveryd_raft_is_leader %d\n", rd_replica_is_leader(r) ? 1 : 0);
    rd_metric_header(&b, "recoveryd_raft_has_leader", "gauge",
                     "1 while this replica knows a leader.");
    rd_mbuf_printf(&b, "recoveryd_raft_has_leader %d\n", rd_replica_has_leader(r) ? 1 : 0);
    rd_metric_header(&b, "recoveryd_raft_leader_changes_total", "counter",
                     "Leader changes this replica saw (a leader after none or another, the "
                     "first included; polled every 10 ms).");
    rd_mbuf_printf(&b, "recoveryd_raft_leader_changes_total %llu\n",
                   (unsigned long long)r->ops.leader_changes_total);
    rd_metric_header(&b, "recoveryd_loop_lag_seconds", "histogram",
                     "How late the event loop ran a 10-ms timer: time it spent on other work or "
                     "waiting for a CPU.");
    rd_metric_hist(&b, "recoveryd_loop_lag_seconds", "", &r->ops.loop_lag);
    rd_metric_header(&b, "recoveryd_raft_append_duration_seconds", "histogram",
                     "Time to persist a batch of log entries, fsync included (libraft's "
                     "append, from the call to its callback).");
    rd_metric_hist(&b, "recoveryd_raft_append_duration_seconds", "", &r->ops.append_latency);
    rd_metric_header(&b, "recoveryd_raft_append_errors_total", "counter",
                     "Log appends that failed.");
    rd_mbuf_printf(&b, "recoveryd_raft_append_errors_total %llu\n",
                   (unsigned long long)r->ops.append_errors_total);
    rd_metric_u64(&b, "recoveryd_raft_storage_fault", "gauge",
                  "1 while this replica refuses writes because its log cannot be written (an I/O "
                  "error, a full disk, exhausted descriptors, a log write that has not "
                  "completed for 3 s).",
                  rd_replica_storage_fault(r, NULL, NULL) != 0);
    rd_metric_u64(&b, "recoveryd_raft_storage_faults_total", "counter",
                  "Storage faults this replica has had (each ends at its first write that "
                  "goes through).",
                  r->storage.faults_total);
    rd_metric_u64(&b, "recoveryd_raft_handovers_withheld_total", "counter",
                  "Storage stalls during which this leader kept its leadership because the other "
                  "voters had not stored the stalled entries either (their disks stall too).",
                  r->storage.withheld_total);
    rd_metric_header(&b, "recoveryd_raft_snapshot_duration_seconds", "histogram",
                     "Time to persist a snapshot: taken here (imaged by a forked child, then "
                     "written) or installed from the leader (libraft's snapshot_put, from the "
                     "call to its callback).");
    rd_metric_hist(&b, "recoveryd_raft_snapshot_duration_seconds", "", &r->ops.snapshot_latency);
    rd_metric_header(&b, "recoveryd_raft_snapshot_size_bytes", "gauge",
                     "Size of the last snapshot persisted (0 before the first).");
    rd_mbuf_printf(&b, "recoveryd_raft_snapshot_size_bytes %llu\n",
                   (unsigned long long)r->ops.snapshot_size_bytes);
    if (r->ops.log_size_known) {
        rd_metric_header(&b, "recoveryd_raft_log_size_bytes", "gauge",
                         "Bytes of the files in <data_dir>/raft (segments at their preallocated "
                         "size, snapshots, metadata), measured every 5 s off the loop.");
        rd_mbuf_printf(&b, "recoveryd_raft_log_size_bytes %llu\n",
                       (unsigned long long)r->ops.log_size_bytes);
    }
    rd_cluster_metrics(env->cluster, &b);

    rd_analysis_metrics(env->analysis, &b);
    rd_metric_header(&b, "recoveryd_policy_info", "gauge",
                     "The policies in force (version label).");
    rd_mbuf_printf(&b, "recoveryd_policy_info{version=\"%s\"} 1\n",
                   rd_policy_version(*env->policy));
    rd_metric_header(&b, "recoveryd_policy_reloads_total", "counter", "Policy reloads by result.");
    rd_mbuf_printf(&b, "recoveryd_policy_reloads_total{result=\"ok\"} %llu\n",
                   (unsigned long long)*env->policy_reloads_ok);
    rd_mbuf_printf(&b, "recoveryd_policy_reloads_total{result=\"failed\"} %llu\n",
                   (unsigned long long)*env->policy_reloads_failed);
    const struct rd_sched *sc = env->sched;
    rd_metric_header(&b, "recoveryd_tasks", "gauge", "Tasks by state.");
    for (int st = 0; st < RD_TASK_STATE_COUNT; st++)
        rd_mbuf_printf(&b, "recoveryd_tasks{state=\"%s\"} %zu\n", rd_task_state_name(st),
                       env->fsm->tasks_by_state[st]);
    rd_metric_header(&b, "recoveryd_recovery_tasks_moved_total", "counter",
                     "Tasks moved off failed, departed or draining agents (this leader).");
    rd_mbuf_printf(&b, "recoveryd_recovery_tasks_moved_total %llu\n",
                   (unsigned long long)sc->recoveries_total);
    rd_metric_header(&b, "recoveryd_tasks_reclaimed_total", "counter",
                     "Tasks assigned again, as a new attempt, after the agent running them "
                     "registered again (this leader).");
    rd_mbuf_printf(&b, "recoveryd_tasks_reclaimed_total %llu\n",
                   (unsigned long long)sc->reclaimed_total);
    rd_metric_header(&b, "recoveryd_recovery_policy_errors_total", "counter",
                     "Policy calls that failed; the built-in default acted.");
    rd_mbuf_printf(&b, "recoveryd_recovery_policy_errors_total %llu\n",
                   (unsigned long long)sc->policy_errors_total);
    rd_metric_header(&b, "recoveryd_recovery_runs_timed_out_total", "counter",
                     "Recovery runs closed partial at their strategy's max_time.");
    rd_mbuf_printf(&b, "recoveryd_recovery_runs_timed_out_total %llu\n",
                   (unsigned long long)sc->runs_timed_out);
    rd_sched_run_metrics(sc, &b);
    rd_sched_predict_metrics(sc, &b);
    rd_sched_rebalance_metrics(sc, &b);
    rd_metric_header(&b, "recoveryd_poison_tasks_total", "counter",
                     "Tasks quarantined as poison (this leader).");
    rd_mbuf_printf(&b, "recoveryd_poison_tasks_total %llu\n", (unsigned long long)sc->poison_total);
    if (env->task_deadlines_total != NULL && env->tasks_pruned_total != NULL) {
        rd_metric_header(&b, "recoveryd_task_deadlines_total", "counter",
                         "Tasks failed with a fault at their deadline (proposed by this leader).");
        rd_mbuf_printf(&b, "recoveryd_task_deadlines_total %llu\n",
                       (unsigned long long)*env->task_deadlines_total);
        rd_metric_header(&b, "recoveryd_tasks_pruned_total", "counter",
                         "Finished tasks pruned after their retention (proposed by this leader).");
        rd_mbuf_printf(&b, "recoveryd_tasks_pruned_total %llu\n",
                       (unsigned long long)*env->tasks_pruned_total);
    }
    rd_metric_header(&b, "recoveryd_checkpoint_repairs_total", "counter",
                     "Checkpoints that failed their checksum, repaired by this leader, by where "
                     "the good copy came from (none: the task started over).");
    static const char *const repair_sources[RD_REPAIR_KINDS] = {"version", "backup", "none"};
    for (int k = 0; k < RD_REPAIR_KINDS; k++)
        rd_mbuf_printf(&b, "recoveryd_checkpoint_repairs_total{source=\"%s\"} %llu\n",
                       repair_sources[k], (unsigned long long)sc->repairs_total[k]);
    rd_metric_header(&b, "recoveryd_scheduler_passes_total", "counter",
                     "Scheduler passes run as leader (recovery, paused tasks, placement).");
    rd_mbuf_printf(&b, "recoveryd_scheduler_passes_total %llu\n",
                   (unsigned long long)sc->passes_total);
    rd_metric_header(&b, "recoveryd_degraded", "gauge",
                     "1 while in degraded mode (partition suspected or tasks paused).");
    rd_mbuf_printf(&b, "recoveryd_degraded %d\n", rd_sched_degraded(sc, NULL) ? 1 : 0);
    /* The NoQuorum alert rule's input (what GET /api/v1/health/cluster
     * calls quorum.has_quorum). */
    rd_metric_header(&b, "recoveryd_quorum", "gauge",
                     "1 while this replica knows a leader and reaches a majority of the voters "
                     "(commits can go through), else 0.");
    rd_mbuf_printf(&b, "recoveryd_quorum %d\n", rd_cluster_has_quorum(env->cluster) ? 1 : 0);
    rd_plugin_host_metrics(env->plugins, &b);
    rd_backup_metrics(env->backups, &b);
    rd_consistency_metrics(env->consistency, &b);
    if (env->records != NULL)
        rd_records_metrics(env->records, &b);

    if (b.err) {
        rd_mbuf_free(&b);
        rd_http_send_error(hr, 500, "internal", NULL, "out of memory rendering metrics");
        return;
    }
    rd_http_send_raw(hr, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    rd_mbuf_free(&b);
}
