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
/* While a partition is suspected, critical tasks move at most this many per
 * second (burst as many): a vanished half of the fleet must not turn into a
 * stampede onto the other half (DESIGN.md decision 6). */
#define PARTITION_MOVES_PER_S 10.0

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

/* The run ends: its agent holds no more tasks, came back, or the run
 * passed its strategy's max_time (`forced` RD_REC_PARTIAL, else -1). */
static void run_close(struct rd_sched *s, const struct rd_recovery *run, int forced)
{
    char key[64];
    snprintf(key, sizeof(key), "close:%s", run->id);
    struct rd_cmd cmd = {.type = RD_CMD_RECOVERY_CLOSE};
    cmd.u.rclose.id = RD_STR(run->id);
    cmd.u.rclose.status = forced >= 0          ? (uint8_t)forced
                          : run->failed == 0   ? RD_REC_SUCCEEDED
                          : run->recovered > 0 ? RD_REC_PARTIAL
                                               : RD_REC_FAILED;
    cmd.u.rclose.strategy = RD_STR("");
    rd_sched__propose_keyed(s, &cmd, key);
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
static json_t *build_event(struct rd_sched *s, const struct rd_node *n, struct rd_task **todo,
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

/* The cluster as the policy may see it, read-only. */
static json_t *build_view(struct rd_sched *s)
{
    const struct rd_fsm *f = s->env.fsm;
    const struct rd_config *c = s->env.cfg;
    json_t *nodes = json_array();
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *n = f->nodes[i];
        if (n->state == RD_NODE_LEFT)
            continue;
        json_array_append_new(
            nodes,
            json_pack("{s:s,s:s,s:o,s:{s:I},s:I,s:{s:I}}", "node_id", n->node_id, "state",
                      rd_node_state_name(n->state), "labels", labels_of(n->labels_json), "capacity",
                      "slots", (json_int_t)n->slots, "free_slots",
                      (json_int_t)(n->slots > n->slots_in_use ? n->slots - n->slots_in_use : 0),
                      "load", "slots_used", (json_int_t)n->slots_in_use));
    }
#define RS c->fault_tolerance.recovery_strategies
    return json_pack(
        "{s:o,s:s,s:b,s:{s:{s:I,s:i},s:{s:I,s:b},s:{s:b,s:i}},s:I}", "nodes", nodes, "mode",
        rd_sched_degraded(s, NULL) ? "degraded" : "normal", "partition_suspected",
        s->env.analysis->partition_suspected, "strategies", rd_strategy_names[RD_STRATEGY_FAST],
        "max_time_ms", (json_int_t)RS.fast_recovery.max_time_ms, "resource_limit",
        (int)RS.fast_recovery.resource_limit, rd_strategy_names[RD_STRATEGY_SAFE], "max_time_ms",
        (json_int_t)RS.safe_recovery.max_time_ms, "consistency_check",
        RS.safe_recovery.consistency_check, rd_strategy_names[RD_STRATEGY_DEGRADED],
        "essential_services_only", RS.degraded_service.essential_services_only, "performance_limit",
        (int)RS.degraded_service.performance_limit, "now_ms", (json_int_t)rd_now_ms());
#undef RS
}

/* safe_recovery's wait: until the lost agent's lease has surely expired
 * (its last heartbeat + lease + one interval for clock drift), so the task
 * never runs twice at once. 0 when it has (or nothing is known). */
static uint64_t lease_left_ns(struct rd_sched *s, const struct rd_node *n)
{
    struct rd_soft *soft = rd_registry_get(s->env.registry, n->node_id, n->id_len);
    /* Nothing heard from it since this replica became leader (a restart, a
     * new leader): its lease may have been renewed just before, so it
     * counts from then. */
    uint64_t last = soft != NULL && soft->epoch == n->epoch && soft->last_mono_ns != 0
                        ? soft->last_mono_ns
                        : *s->env.leader_since_ns;
    uint64_t margin = (rd_config_lease_ms(s->env.cfg) +
                       s->env.cfg->fault_tolerance.detection.heartbeat_interval_ms) *
                      1000000ULL;
    uint64_t now = rd_mono_ns(), end = last + margin;
    return now >= end ? 0 : end - now;
}

bool rd_sched__lease_expired(struct rd_sched *s, const struct rd_node *n)
{
    return lease_left_ns(s, n) == 0;
}

/* While a partition is suspected: one move from the token bucket, if any. */
static bool partition_allows(struct rd_sched *s)
{
    uint64_t now = rd_mono_ns();
    if (s->partition_tokens_ns == 0)
        s->partition_tokens = PARTITION_MOVES_PER_S;
    else
        s->partition_tokens += (double)(now - s->partition_tokens_ns) / 1e9 * PARTITION_MOVES_PER_S;
    if (s->partition_tokens > PARTITION_MOVES_PER_S)
        s->partition_tokens = PARTITION_MOVES_PER_S;
    s->partition_tokens_ns = now;
    if (s->partition_tokens < 1.0)
        return false;
    s->partition_tokens -= 1.0;
    return true;
}

/* Moves `t` off `from` (to `target` when the policy chose one). Returns 1
 * when a move was proposed, 0 when the task must wait (a suspected
 * partition: non-critical tasks wait for their agents, critical ones for
 * the rate limit), -1 when proposing failed (stop this pass). */
int rd_sched__move_task(struct rd_sched *s, struct rd_task *t, const struct rd_node *from,
                        const char *target, uint32_t *extra, unsigned limit, const char *why)
{
    if (s->env.analysis->partition_suspected && (!t->critical || !partition_allows(s)))
        return 0;
    const struct rd_recovery *run = rd_fsm_open_recovery(s->env.fsm, from->node_id);
    const struct rd_fsm *f = s->env.fsm;
    size_t best = SIZE_MAX;
    if (target != NULL) {
        for (size_t i = 0; i < f->n_nodes; i++)
            if (strcmp(f->nodes[i]->node_id, target) == 0)
                best = i;
        const struct rd_node *to = best != SIZE_MAX ? f->nodes[best] : NULL;
        /* The engine validates what the policy chose: a working agent with room. */
        if (to == NULL || (to->state != RD_NODE_ALIVE && to->state != RD_NODE_PROBATION) ||
            to->slots_in_use + extra[best] + t->slots > to->slots) {
            RD_WARN("recovery", "target_refused",
                    "task=%s target=%s: not a working agent with room", t->id, target);
            best = SIZE_MAX;
        }
    }
    if (best == SIZE_MAX)
        best = rd_sched__choose(s, t, extra, limit ? limit : 100);
    const struct rd_node *to = best == SIZE_MAX ? NULL : f->nodes[best];
    if (!rd_sched__propose_assign_in(s, t, to, to ? RD_TASK_RECOVERING : RD_TASK_PENDING,
                                     run ? run->id : NULL, why, NULL))
        return -1;
    if (to != NULL)
        extra[best] += t->slots;
    s->recoveries_total++;
    RD_INFO("recovery", "task_moved",
            "task=%s from=%s to=%s attempt=%u critical=%d priority=%u strategy=%s", t->id,
            from->node_id, to ? to->node_id : "(pending)", t->attempt + (to ? 1 : 0), t->critical,
            t->priority, why);
    return 1;
}

void rd_sched__pause_task(struct rd_sched *s, struct rd_task *t)
{
    struct rd_cmd cmd = {.type = RD_CMD_TASK_FINISH};
    cmd.u.tfinish.task_id = RD_STR(t->id);
    cmd.u.tfinish.attempt = 0;
    cmd.u.tfinish.state = RD_TASK_PAUSED;
    cmd.u.tfinish.result_json = RD_STR("paused by degraded_service");
    rd_sched__propose_keyed(s, &cmd, t->id);
}

/* A policy's isolate action: the node is fenced off like an operator's
 * isolate (any epoch); unknown or departed nodes are refused in apply. */
void rd_sched__isolate_node(struct rd_sched *s, const char *node, const char *strategy)
{
    char key[RD_NODE_ID_MAX + 16], reason[96];
    snprintf(key, sizeof(key), "isolate:%s", node);
    snprintf(reason, sizeof(reason), "isolated by the %s policy", strategy ? strategy : "recovery");
    const struct rd_node *n = rd_fsm_node(s->env.fsm, node, strlen(node));
    if (n == NULL || n->state == RD_NODE_ISOLATED || n->state == RD_NODE_LEFT) {
        RD_WARN("recovery", "isolate_refused", "node=%s: %s", node,
                n == NULL ? "not registered" : "isolated or left already");
        return;
    }
    struct rd_cmd cmd = {.type = RD_CMD_NODE_TRANSITION};
    cmd.u.trans.node_id = RD_STR(node);
    cmd.u.trans.epoch = 0;
    cmd.u.trans.state = RD_NODE_ISOLATED;
    cmd.u.trans.reason = RD_STR(reason);
    cmd.u.trans.from_state = n->state;
    RD_WARN("recovery", "isolate", "node=%s strategy=%s", node, strategy ? strategy : "-");
    rd_sched__propose_keyed(s, &cmd, key);
}

/* ---- poison tasks ---------------------------------------------------------- */

/* True when `t` has failed max_failures times within the window, counting
 * `now_failing` more (1: its agent just failed under it). */
bool rd_sched__poisoned(const struct rd_sched *s, const struct rd_task *t, unsigned now_failing)
{
    const struct rd_config *c = s->env.cfg;
    int64_t since = rd_now_ms() - (int64_t)c->fault_tolerance.poison.window_ms;
    return rd_task_failures_since(t, since) + now_failing >= c->fault_tolerance.poison.max_failures;
}

/* Fails `t` with a poison_task fault in one command (which alerts) instead
 * of placing it again. */
void rd_sched__quarantine(struct rd_sched *s, const struct rd_task *t, unsigned now_failing)
{
    const struct rd_config *c = s->env.cfg;
    char id[RD_UUID_STRLEN];
    if (rd_map_get(&s->inflight, t->id, strlen(t->id)) || rd_uuid_v4(id) != 0)
        return;
    int64_t since = rd_now_ms() - (int64_t)c->fault_tolerance.poison.window_ms;
    unsigned n = rd_task_failures_since(t, since) + now_failing;
    json_t *meta =
        json_pack("{s:s,s:s,s:I,s:i,s:I,s:i,s:s}", "task_id", t->id, "last_node_id", t->node_id,
                  "attempt", (json_int_t)t->attempt, "failures", (int)n, "window_ms",
                  (json_int_t)c->fault_tolerance.poison.window_ms, "max_failures",
                  (int)c->fault_tolerance.poison.max_failures, "last_error", t->result_json);
    char *meta_s = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(meta);
    struct rd_cmd cmd = rd_cmd_cluster_fault(
        0, id, RD_FAULT_POISON_TASK, RD_SEV_MAJOR, meta_s ? meta_s : "{}",
        "{\"action\":\"quarantine\",\"detail\":\"task failed; not placed again\"}");
    cmd.u.fopen.task_id = RD_STR(t->id);
    cmd.u.fopen.task_attempt = t->attempt;
    RD_WARN("recovery", "poison_task", "task=%s failures=%u window_ms=%llu last_node=%s fault=%s",
            t->id, n, (unsigned long long)c->fault_tolerance.poison.window_ms, t->node_id, id);
    s->poison_total++;
    rd_sched__propose_keyed(s, &cmd, t->id);
    free(meta_s);
}

/* ---- degraded mode ------------------------------------------------------- */

bool rd_sched_degraded(const struct rd_sched *s, unsigned *limit_pct)
{
    if (limit_pct != NULL)
        *limit_pct = s->performance_limit ? s->performance_limit
                                          : s->env.cfg->fault_tolerance.recovery_strategies
                                                .degraded_service.performance_limit;
    return s->env.analysis->partition_suspected || s->env.fsm->tasks_by_state[RD_TASK_PAUSED] > 0;
}

/* Paused tasks go back to pending (attempt + 1 when placed, so whoever
 * held them is fenced) once no partition is suspected. Not only when their
 * agent returns: an agent that really crashed during the partition never
 * does, and its tasks must not wait for it. */
void rd_sched__resume_paused(struct rd_sched *s)
{
    const struct rd_fsm *f = s->env.fsm;
    if (s->env.analysis->partition_suspected || f->tasks_by_state[RD_TASK_PAUSED] == 0)
        return;
    for (size_t i = 0; i < f->n_tasks; i++) {
        const struct rd_task *t = f->tasks[i];
        if (t->state != RD_TASK_PAUSED || rd_map_get(&s->inflight, t->id, strlen(t->id)))
            continue;
        RD_INFO("recovery", "task_resumed", "task=%s paused_on=%s", t->id,
                t->node_id[0] ? t->node_id : "-");
        if (!rd_sched__propose_assign(s, t, NULL, RD_TASK_PENDING))
            return;
    }
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
    snprintf(key, sizeof(key), "close:%s", run->id);
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
                          .starts_at_ms = rd_now_ms()};
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
            if (died && rd_sched__poisoned(s, t, 1))
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
             * policy host converts it per call and never changes it). */
            if (view == NULL)
                view = build_view(s);
            json_t *event = build_event(s, n, todo, k);
            int rv = rd_policy_plan(*s->env.policy, event, view, &plan, err, sizeof(err));
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
            uint64_t wait = lease_left_ns(s, n), cap = RD_SCHED_REPLAN_BACKOFF_MS * 1000000ULL;
            *replan_at = now_ns + (wait > 0 && wait < cap ? wait : cap);
        }
    }
    json_decref(view); /* NULL when no policy ran */
}
