#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "fsm/fsm.h"
#include "plugin/host.h"
#include "policy/policy.h"
#include "registry/registry.h"
#include "replica/replica.h"
#include "sched_int.h"
static bool node_gone(const struct rd_node *n)
{
    return n->state == RD_NODE_FAILED || n->state == RD_NODE_LEFT || n->state == RD_NODE_ISOLATED ||
           n->state == RD_NODE_DRAINING;
}

/* ---- recovery -------------------------------------------------------------- */

/* A recovery_open command for `n` with run id `id` (strings borrowed). */
static struct rd_cmd ropen_cmd(struct rd_sched *s, const struct rd_node *n, const char *id,
                               const char *strategy, const char *reason)
{
    struct rd_cmd cmd = {.type = RD_CMD_RECOVERY_OPEN};
    cmd.u.ropen.id = RD_STR(id);
    cmd.u.ropen.node_id = (struct rd_str){n->node_id, (uint32_t)n->id_len};
    cmd.u.ropen.strategy = RD_STR(strategy);
    cmd.u.ropen.reason = RD_STR(reason);
    rd_cmd_audit_engine(&cmd, "recovery_open", n->node_id, id);
    return cmd;
}

static int open_run(struct rd_sched *s, const struct rd_node *n, const char *strategy,
                    const char *reason, char id_out[RD_UUID_STRLEN], rd_submit_cb cb, void *data)
{
    if (rd_uuid_v4(id_out) != 0)
        return RD_EIO;
    struct rd_cmd cmd = ropen_cmd(s, n, id_out, strategy, reason);
    return s->env.log.propose(s->env.log.data, &cmd, cb, data);
}

static bool hold_open(struct rd_sched *s, const char *node)
{
    char key[RD_NODE_ID_MAX + 8];
    snprintf(key, sizeof(key), "open:%s", node);
    char *k = rd_map_get(&s->inflight, key, strlen(key)) ? NULL : strdup(key);
    if (k == NULL || rd_map_put(&s->inflight, k, strlen(k), k) != 0) {
        free(k);
        return false;
    }
    return true;
}

static void release_open(struct rd_sched *s, const char *node)
{
    char key[RD_NODE_ID_MAX + 8];
    snprintf(key, sizeof(key), "open:%s", node);
    free(rd_map_del(&s->inflight, key, strlen(key)));
    rd_sched_kick(s);
}

/* ---- an operator's trigger ------------------------------------------------- */

struct trigger {
    struct rd_sched *s;
    char node[RD_NODE_ID_MAX + 1];
    char strategy[64];
    char run_id[RD_UUID_STRLEN];
    rd_sched_trigger_cb cb;
    void *data;
};

#define TRIGGER_REASON "manual: POST /api/v1/recovery/trigger"

static void trigger_end(struct trigger *t, int status)
{
    const struct rd_recovery *run = status == 0 ? rd_fsm_recovery(t->s->env.fsm, t->run_id) : NULL;
    if (status == 0 && run == NULL)
        status = RD_EINTERNAL;
    release_open(t->s, t->node);
    t->cb(t->data, status, run);
    free(t);
}

static void trigger_opened(void *data, int status, uint64_t value)
{
    (void)value;
    trigger_end(data, status);
}

static void trigger_drained(void *data, int status, uint64_t value)
{
    struct trigger *t = data;
    (void)value;
    const struct rd_node *n = rd_fsm_node(t->s->env.fsm, t->node, strlen(t->node));
    if (status == 0 && n == NULL)
        status = RD_ENOTFOUND;
    if (status == 0)
        status = open_run(t->s, n, t->strategy, TRIGGER_REASON, t->run_id, trigger_opened, t);
    if (status != 0)
        trigger_end(t, status);
}

int rd_sched_trigger(struct rd_sched *s, const char *node, const char *strategy,
                     rd_sched_trigger_cb cb, void *data)
{
    const struct rd_node *n = rd_fsm_node(s->env.fsm, node, strlen(node));
    if (n == NULL)
        return RD_ENOTFOUND;
    struct trigger *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return RD_ENOMEM;
    t->s = s;
    snprintf(t->node, sizeof(t->node), "%s", node);
    snprintf(t->strategy, sizeof(t->strategy), "%s", strategy);
    t->cb = cb;
    t->data = data;
    if (!hold_open(s, node)) {
        free(t);
        return RD_ECONFLICT;
    }
    int rv;
    if (n->state == RD_NODE_ALIVE || n->state == RD_NODE_PROBATION || n->state == RD_NODE_SUSPECT) {
        struct rd_cmd cmd = {.type = RD_CMD_NODE_TRANSITION};
        cmd.u.trans.node_id = (struct rd_str){n->node_id, (uint32_t)n->id_len};
        cmd.u.trans.state = RD_NODE_DRAINING;
        cmd.u.trans.reason = RD_STR("draining: recovery triggered by an operator");
        cmd.u.trans.from_state = n->state;
        rv = s->env.log.propose(s->env.log.data, &cmd, trigger_drained, t);
    } else {
        rv = open_run(s, n, t->strategy, TRIGGER_REASON, t->run_id, trigger_opened, t);
    }
    if (rv != 0) {
        release_open(s, node);
        free(t);
    }
    return rv;
}

static void run_open(struct rd_sched *s, const struct rd_node *n, const char *strategy,
                     const char *reason)
{
    char key[RD_NODE_ID_MAX + 8], id[RD_UUID_STRLEN];
    snprintf(key, sizeof(key), "open:%s", n->node_id);
    if (rd_map_get(&s->inflight, key, strlen(key)) || rd_uuid_v4(id) != 0)
        return;
    struct rd_cmd cmd = ropen_cmd(s, n, id, strategy, reason);
    rd_sched__propose_keyed(s, &cmd, key);
}

#define CLOSE_KEY "close:"

/* The commit of a run's close answered this leader: counted by its
 * outcome, with its duration. Counting here, on the proposer, and not in
 * the state machine (which every replica applies, and replays after a
 * restart) keeps each run counted once in the sum over the replicas, and
 * no replay at start looks like a burst of fresh runs. A close committed
 * while its proposer lost leadership is not counted (rare: an election in
 * that instant). */
static void run_closed(struct rd_sched *s, const char *key, int status)
{
    if (status != 0)
        return;
    const struct rd_recovery *run = rd_fsm_recovery(s->env.fsm, key + strlen(CLOSE_KEY));
    if (run == NULL || run->status < RD_REC_SUCCEEDED || run->status >= RD_REC_STATUS_COUNT)
        return;
    s->runs_closed[run->status]++;
    int64_t ms = run->completed_at - run->started_at;
    rd_hist_observe(&s->run_duration, ms > 0 ? (double)ms / 1000 : 0);
}

void rd_sched_run_metrics(const struct rd_sched *s, struct rd_mbuf *b)
{
    rd_metric_header(b, "recoveryd_recovery_runs_total", "counter",
                     "Recovery runs ended, by outcome, counted by the leader that closed them "
                     "(sum over the replicas: each run counts once).");
    for (int st = RD_REC_SUCCEEDED; st < RD_REC_STATUS_COUNT; st++)
        rd_mbuf_printf(b, "recoveryd_recovery_runs_total{outcome=\"%s\"} %llu\n",
                       rd_recovery_status_name(st), (unsigned long long)s->runs_closed[st]);
    rd_metric_header(b, "recoveryd_recovery_duration_seconds", "histogram",
                     "Time from a recovery run's start to its end, counted by the leader that "
                     "closed it.");
    rd_metric_hist(b, "recoveryd_recovery_duration_seconds", "", &s->run_duration);
}

/* The run ends: its agent holds no more tasks, came back, or the run
 * passed its strategy's max_time (`forced` RD_REC_PARTIAL, else -1). */
static void run_close(struct rd_sched *s, const struct rd_recovery *run, int forced)
{
    char key[64];
    snprintf(key, sizeof(key), CLOSE_KEY "%s", run->id);
    struct rd_cmd cmd = {.type = RD_CMD_RECOVERY_CLOSE};
    cmd.u.rclose.id = RD_STR(run->id);
    cmd.u.rclose.status = forced >= 0          ? (uint8_t)forced
                          : run->failed == 0   ? RD_REC_SUCCEEDED
                          : run->recovered > 0 ? RD_REC_PARTIAL
                                               : RD_REC_FAILED;
    cmd.u.rclose.strategy = RD_STR("");
    rd_cmd_audit_engine(&cmd, "recovery_close", run->node_id, run->id);
    rd_sched__propose_keyed_then(s, &cmd, key, run_closed);
}

static const char *event_kind(const struct rd_node *n)
{
    switch (n->state) {
    case RD_NODE_FAILED:
        return "node_failed";
    case RD_NODE_LEFT:
        return "node_left";
    case RD_NODE_DRAINING:
        return "node_drained";
    default:
        return "manual";
    }
}

static json_t *labels_of(const char *json)
{
    json_t *v = json_loads(json, 0, NULL);
    return v ? v : json_object();
}

static json_t *fault_of(const struct rd_fsm *f, const struct rd_node *n)
{
    for (size_t i = f->n_faults; i-- > 0;) {
        const struct rd_fault *x = f->faults[i];
        if (x->status == RD_FAULT_OPEN_ST && strcmp(x->node_id, n->node_id) == 0) {
            json_t *meta = json_loads(x->metadata_json, 0, NULL);
            bool predicted = meta && json_is_true(json_object_get(meta, "predicted"));
            return json_pack("{s:s,s:s,s:s,s:b,s:o}", "id", x->id, "fault_type",
                             rd_fault_type_name(x->type), "severity_level",
                             rd_severity_name(x->severity), "predicted", predicted, "metadata",
                             meta ? meta : json_object());
        }
    }
    return json_null();
}

/* What happened and to which tasks (policies/README.md has the shape). */
json_t *rd_sched__event(struct rd_sched *s, const struct rd_node *n, struct rd_task **todo,
                        size_t k)
{
    int64_t now = rd_now_ms();
    json_t *tasks = json_array();
    for (size_t j = 0; j < k; j++) {
        const struct rd_task *t = todo[j];
        const struct rd_checkpoint *c = rd_task_checkpoint(t);
        json_t *ck =
            c ? json_pack("{s:I,s:I,s:b}", "version", (json_int_t)c->version, "age_ms",
                          (json_int_t)(now - c->at), "checksum_ok", rd_checkpoint_verifies(c))
              : json_null();
        json_array_append_new(
            tasks, json_pack("{s:s,s:i,s:b,s:I,s:{s:I,s:o},s:o}", "task_id", t->id, "priority",
                             t->priority, "critical", t->critical, "attempt",
                             (json_int_t)t->attempt, "requirements", "slots", (json_int_t)t->slots,
                             "labels", labels_of(t->labels_json), "checkpoint", ck));
    }
    const struct rd_recovery *run = rd_fsm_open_recovery(s->env.fsm, n->node_id);
    return json_pack("{s:s,s:s?,s:o,s:{s:s,s:I,s:s,s:o,s:{s:I}},s:o}", "kind", event_kind(n),
                     "strategy", run && run->strategy[0] ? run->strategy : NULL, "fault",
                     fault_of(s->env.fsm, n), "node", "node_id", n->node_id, "epoch",
                     (json_int_t)n->epoch, "state", rd_node_state_name(n->state), "labels",
                     labels_of(n->labels_json), "capacity", "slots", (json_int_t)n->slots, "tasks",
                     tasks);
}

/* The settings beside the strategies a policy may weigh (policies/README.md,
 * "The view"): fault_tolerance's prediction, rebalance, tasks and poison. */
static void view_settings(json_t *view, const struct rd_config *c)
{
#define FT c->fault_tolerance
    json_object_set_new(view, "prediction",
                        json_pack("{s:i,s:i}", "drains_per_minute",
                                  (int)FT.prediction.drains_per_minute, "min_healthy_capacity",
                                  (int)FT.prediction.min_healthy_capacity));
    json_object_set_new(view, "rebalance",
                        json_pack("{s:b,s:i,s:i,s:i,s:I,s:I,s:I}", "enabled", FT.rebalance.enabled,
                                  "skew_threshold", (int)FT.rebalance.skew_threshold,
                                  "cpu_threshold", (int)FT.rebalance.cpu_threshold,
                                  "moves_per_minute", (int)FT.rebalance.moves_per_minute,
                                  "cooldown_ms", (json_int_t)FT.rebalance.cooldown_ms,
                                  "checkpoint_wait_ms", (json_int_t)FT.rebalance.checkpoint_wait_ms,
                                  "settle_ms", (json_int_t)FT.rebalance.settle_ms));
    json_object_set_new(view, "tasks",
                        json_pack("{s:I}", "retention_ms", (json_int_t)FT.tasks.retention_ms));
    json_object_set_new(view, "poison",
                        json_pack("{s:i,s:I}", "max_failures", (int)FT.poison.max_failures,
                                  "window_ms", (json_int_t)FT.poison.window_ms));
#undef FT
}

/* The view without its nodes: the mode and the settings, whatever the
 * fleet's size. */
json_t *rd_sched__view_settings(struct rd_sched *s)
{
    const struct rd_config *c = s->env.cfg;
#define RS c->fault_tolerance.recovery_strategies
    json_t *view = json_pack(
        "{s:s,s:b,s:{s:{s:I,s:i},s:{s:I,s:b},s:{s:b,s:i}},s:I}", "mode",
        rd_sched_degraded(s, NULL) ? "degraded" : "normal", "partition_suspected",
        s->env.analysis->partition_suspected, "strategies", rd_strategy_names[RD_STRATEGY_FAST],
        "max_time_ms", (json_int_t)RS.fast_recovery.max_time_ms, "resource_limit",
        (int)RS.fast_recovery.resource_limit, rd_strategy_names[RD_STRATEGY_SAFE], "max_time_ms",
        (json_int_t)RS.safe_recovery.max_time_ms, "consistency_check",
        RS.safe_recovery.consistency_check, rd_strategy_names[RD_STRATEGY_DEGRADED],
        "essential_services_only", RS.degraded_service.essential_services_only, "performance_limit",
        (int)RS.degraded_service.performance_limit, "now_ms", (json_int_t)rd_now_ms());
#undef RS
    if (view != NULL)
        view_settings(view, c);
    return view;
}

/* The cluster's agents as the policy may see them, read-only: every one
 * but those that left. */
json_t *rd_sched__view_nodes(void *data)
{
    struct rd_sched *s = data;
    const struct rd_fsm *f = s->env.fsm;
    json_t *nodes = json_array();
    for (size_t i = 0; nodes != NULL && i < f->n_nodes; i++) {
        const struct rd_node *n = f->nodes[i];
        if (n->state == RD_NODE_LEFT)
            continue;
        /* in_trouble: working by the log, but the detectors hold it (a
         * verdict not ok, or its suspect or failed transition on its way):
         * the engine refuses it as a target (rd_sched__placeable). */
        json_t *o = json_pack(
            "{s:s,s:s,s:b,s:o,s:{s:I},s:I,s:{s:I}}", "node_id", n->node_id, "state",
            rd_node_state_name(n->state), "in_trouble", rd_analysis_troubled(s->env.analysis, n),
            "labels", labels_of(n->labels_json), "capacity", "slots", (json_int_t)n->slots,
            "free_slots", (json_int_t)(n->slots > n->slots_in_use ? n->slots - n->slots_in_use : 0),
            "load", "slots_used", (json_int_t)n->slots_in_use);
        if (o == NULL || json_array_append_new(nodes, o) != 0) {
            json_decref(nodes);
            nodes = NULL;
        }
    }
    return nodes;
}

/* A run that passed its strategy's max_time ends partial and alerts; what
 * its agent still holds goes back to pending for ordinary placement. Not
 * while a partition is suspected: then waiting is the plan. */
static bool run_timed_out(struct rd_sched *s, const struct rd_recovery *run,
                          const struct rd_node *n)
{
    const struct rd_config *c = s->env.cfg;
    const char *st = run->strategy[0] ? run->strategy
                     : run->n_items   ? run->items[run->n_items - 1].strategy
                                      : rd_strategy_names[RD_STRATEGY_FAST];
    uint64_t max = rd_config_strategy_max_time_ms(c, st);
    int64_t age = rd_now_ms() - run->started_at;
    if (max == 0 || age <= (int64_t)max || s->env.analysis->partition_suspected)
        return false;
    char note[128];
    snprintf(note, sizeof(note), "%s passed its max_time (%llu ms): back to pending", st,
             (unsigned long long)max);
    unsigned left = 0;
    for (struct rd_task *t = n ? n->tasks : NULL; t != NULL; t = t->next_on_node) {
        if (rd_map_get(&s->inflight, t->id, strlen(t->id)))
            continue;
        if (!rd_sched__propose_assign_in(s, t, NULL, RD_TASK_PENDING, run->id, st, note))
            return true;
        left++;
    }
    char key[64];
    snprintf(key, sizeof(key), CLOSE_KEY "%s", run->id);
    if (rd_map_get(&s->inflight, key, strlen(key)))
        return true;
    run_close(s, run, RD_REC_PARTIAL);
    s->runs_timed_out++;
    char summary[256], fp[64];
    snprintf(summary, sizeof(summary),
             "recovery run %s of agent %s passed %s max_time (%llu ms): partial, %u task(s) back "
             "to pending",
             run->id, run->node_id, st, (unsigned long long)max, left);
    snprintf(fp, sizeof(fp), "max-time-%s", run->id);
    RD_WARN("recovery", "max_time", "run=%s node=%s strategy=%s age_ms=%lld pending=%u", run->id,
            run->node_id, st, (long long)age, left);
    struct rd_alert al = {.fingerprint = fp,
                          .alertname = "RecoveryMaxTime",
                          .node_id = run->node_id,
                          .fault_type = "recovery",
                          .severity = "major",
                          .summary = summary,
                          .description = st,
                          .starts_at_ms = rd_now_ms(),
                          .scope = RD_ALERT_EVENT};
    rd_plugin_host_alert(s->env.alerts, &al);
    return true;
}

/* Moves the tasks of failed, isolated, departed and draining agents as the
 * Lua policies plan it (select, then the chosen strategy); if a policy
 * errors, runs past its budget or returns an invalid plan, that is recorded
 * as a policy_error fault and the built-in fast recovery acts instead
 * (DESIGN.md decision 7). While a partition is suspected only critical
 * tasks move, rate-limited; the others wait for their agents or are paused
 * by degraded_service. A task that keeps failing is quarantined instead. */
void rd_sched__recover(struct rd_sched *s, uint32_t *extra)
{
    const struct rd_fsm *f = s->env.fsm;
    unsigned limit = s->env.cfg->fault_tolerance.recovery_strategies.fast_recovery.resource_limit;
    json_t *view = NULL;
    struct rd_policy_nodes nodes = {.build = rd_sched__view_nodes, .data = s};
    uint64_t now_ns = rd_mono_ns();
    /* Runs end when their agent holds no more tasks or is working again,
     * or when they pass their max_time. */
    for (size_t i = 0; i < f->n_recoveries; i++) {
        const struct rd_recovery *run = f->recoveries[i];
        if (run->status != RD_REC_INITIATED && run->status != RD_REC_RUNNING)
            continue;
        const struct rd_node *n = rd_fsm_node(f, run->node_id, strlen(run->node_id));
        if (n == NULL || n->tasks == NULL || !node_gone(n))
            run_close(s, run, -1);
        else
            run_timed_out(s, run, n);
    }
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *n = f->nodes[i];
        if (n->tasks == NULL || !node_gone(n))
            continue;
        struct rd_soft *soft = rd_registry_get(s->env.registry, n->node_id, n->id_len);
        uint64_t *replan_at = soft != NULL ? rd_sched__replan_at_of(s, soft) : NULL;
        if (replan_at != NULL && *replan_at > now_ns)
            continue;
        bool died = n->state == RD_NODE_FAILED || n->state == RD_NODE_ISOLATED;
        struct rd_task *todo[256];
        size_t k = 0;
        for (struct rd_task *t = n->tasks; t != NULL && k < RD_ARRAY_SIZE(todo);
             t = t->next_on_node) {
            if (rd_map_get(&s->inflight, t->id, strlen(t->id)))
                continue;
            /* Its agent's death counts against it unless the agent never
             * heard of it (rd_sched__undelivered, as the move records):
             * asked only of a task this death would make poison. */
            if (died && rd_sched__poisoned(s, t, 1) && !rd_sched__undelivered(s, t))
                rd_sched__quarantine(s, t, 1);
            else
                todo[k++] = t;
        }
        if (k == 0)
            continue;
        const struct rd_recovery *run = rd_fsm_open_recovery(f, n->node_id);
        /* Every move belongs to a recovery run: open one first. */
        if (run == NULL) {
            run_open(s, n, "", event_kind(n));
            continue;
        }
        qsort(todo, k, sizeof(*todo), rd_task_cmp_urgency);
        struct rd_plan plan = {0};
        bool planned = false;
        char err[RD_POLICY_ERRLEN] = "";
        if (*s->env.policy != NULL) {
            /* One view per pass, whatever the number of lost agents (the
             * policy host converts it per call and never changes it); its
             * nodes built only if a policy reads them, then once. */
            if (view == NULL)
                view = rd_sched__view_settings(s);
            json_t *event = rd_sched__event(s, n, todo, k);
            int rv = rd_policy_plan(*s->env.policy, event, view, &nodes, &plan, err, sizeof(err));
            planned = rv == 0;
            json_decref(event);
            if (rv != 0) {
                s->policy_errors_total++;
                RD_ERROR("recovery", "policy_error",
                         "node=%s error=%s detail=\"%s\" fallback=builtin", n->node_id,
                         rd_err_name(rv), err);
                s->env.policy_error(s->env.policy_error_data, err);
            }
        }
        int proposed = 0;
        if (planned) {
            proposed = rd_sched__execute(s, n, todo, k, &plan, extra);
            rd_plan_free(&plan);
        } else {
            for (size_t j = 0; j < k && proposed >= 0; j++) {
                int rv =
                    rd_sched__move_task(s, todo[j], n, NULL, extra, limit, "builtin_fast_recovery");
                proposed = rv < 0 ? -1 : proposed + rv;
            }
        }
        if (proposed < 0)
            break;
        /* Nothing could act (a lease to wait out, no room, a partition):
         * ask again when the lease runs out, or after a backoff. */
        if (proposed == 0 && replan_at != NULL) {
            uint64_t wait = rd_sched__lease_left_ns(s, n),
                     cap = RD_SCHED_REPLAN_BACKOFF_MS * 1000000ULL;
            *replan_at = now_ns + (wait > 0 && wait < cap ? wait : cap);
        }
    }
    json_decref(view); /* NULL when no policy ran */
    rd_policy_nodes_release(&nodes);
}
