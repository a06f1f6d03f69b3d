#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"
#include "sched.h"
#include "policy/policy.h"

#define PASS_MS 100 /* at most this long between passes while work waits */
/* While a partition is suspected, critical tasks move at most this many per
 * second (burst as many): a vanished half of the fleet must not turn into a
 * stampede onto the other half (DESIGN.md decision 6). */
#define PARTITION_MOVES_PER_S 10.0
/* A plan that moved nothing for an agent is not asked again before this. */
#define REPLAN_BACKOFF_MS 1000

/* True when every key of `want` has an equal value in `have`. */
static bool labels_subset(json_t *want, json_t *have)
{
    const char *k;
    json_t *v;
    if (want == NULL || have == NULL)
        return false;
    json_object_foreach(want, k, v)
    {
        json_t *h = json_object_get(have, k);
        if (h == NULL || !json_equal(h, v))
            return false;
    }
    return true;
}

bool rd_sched_labels_match(const char *task_labels, const char *node_labels)
{
    if (task_labels == NULL || strcmp(task_labels, "{}") == 0)
        return true;
    json_t *want = json_loads(task_labels, 0, NULL), *have = json_loads(node_labels, 0, NULL);
    bool ok = labels_subset(want, have);
    json_decref(want);
    json_decref(have);
    return ok;
}

/* The labels of node `i`, parsed once per pass (NULL when unparsable). */
static json_t *node_labels(struct rd_sched *s, size_t i)
{
    struct rd_fsm *f = &s->eng->fsm;
    if (s->labels == NULL || s->n_labels != f->n_nodes) {
        for (size_t k = 0; k < s->n_labels; k++)
            json_decref(s->labels[k]);
        free(s->labels);
        s->labels = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*s->labels));
        s->n_labels = s->labels ? f->n_nodes : 0;
        if (s->labels == NULL)
            return NULL;
    }
    if (s->labels[i] == NULL)
        s->labels[i] = json_loads(f->nodes[i]->labels_json, 0, NULL);
    return s->labels[i];
}

/* Forgets the parsed labels (the node table may change between passes). */
static void labels_reset(struct rd_sched *s)
{
    for (size_t k = 0; k < s->n_labels; k++)
        json_decref(s->labels[k]);
    free(s->labels);
    s->labels = NULL;
    s->n_labels = 0;
}

static int by_urgency(const void *a, const void *b)
{
    const struct rd_task *x = *(const struct rd_task *const *)a;
    const struct rd_task *y = *(const struct rd_task *const *)b;
    if (x->critical != y->critical)
        return y->critical - x->critical;
    if (x->priority != y->priority)
        return y->priority - x->priority;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* The working agent with the most room for `t`, or SIZE_MAX. `limit_pct`
 * caps how full a node may get (100: its whole capacity; at least one slot). */
static size_t choose(struct rd_sched *s, const struct rd_task *t, const uint32_t *extra,
                     unsigned limit_pct)
{
    struct rd_fsm *f = &s->eng->fsm;
    bool any_label = t->labels_json != NULL && strcmp(t->labels_json, "{}") != 0;
    json_t *want = any_label ? json_loads(t->labels_json, 0, NULL) : NULL;
    size_t best = SIZE_MAX;
    double best_load = 2.0;
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *nd = f->nodes[i];
        if (nd->state != RD_NODE_ALIVE && nd->state != RD_NODE_PROBATION)
            continue;
        uint32_t cap = (uint32_t)((uint64_t)nd->slots * limit_pct / 100);
        if (cap < 1)
            cap = 1;
        uint32_t used = nd->slots_in_use + extra[i];
        if (used + t->slots > cap)
            continue;
        double load = (double)used / (double)nd->slots;
        if (load < best_load && (!any_label || labels_subset(want, node_labels(s, i)))) {
            best_load = load;
            best = i;
        }
    }
    json_decref(want);
    return best;
}

/* A proposal guarded in the in-flight map by `key` until its commit (or
 * refusal): the op owns the key string, which is also the map's key. */
struct keyed_op {
    struct rd_sched *s;
    char *key;
};

static void keyed_done(void *data, int status, uint64_t value)
{
    struct keyed_op *op = data;
    struct rd_sched *s = op->s;
    (void)value;
    rd_map_del(&s->inflight, op->key, strlen(op->key));
    if (status != 0) {
        s->refused_total++; /* a fenced or stale decision: the next pass decides again */
        RD_DEBUG("sched", "proposal_refused", "key=%s error=%s", op->key, rd_err_name(status));
    }
    free(op->key);
    free(op);
    rd_sched_kick(s);
}

/* Proposes `cmd` unless `key` is in flight already. False when it could
 * not be proposed (the pass should stop). */
static bool propose_keyed(struct rd_sched *s, const struct rd_cmd *cmd, const char *key)
{
    if (rd_map_get(&s->inflight, key, strlen(key)))
        return true;
    struct rd_wbuf w;
    rd_w_init(&w);
    struct keyed_op *op = calloc(1, sizeof(*op));
    bool ok = false;
    if (op != NULL && (op->key = strdup(key)) != NULL && rd_cmd_encode(cmd, &w) == 0) {
        op->s = s;
        if (rd_replica_submit(&s->eng->replica, &w, keyed_done, op) == 0) {
            rd_map_put(&s->inflight, op->key, strlen(op->key), op->key);
            ok = true;
        }
    }
    if (!ok) {
        if (op != NULL)
            free(op->key);
        free(op);
    }
    rd_w_free(&w);
    return ok;
}

static bool propose_assign_in(struct rd_sched *s, const struct rd_task *t, const struct rd_node *nd,
                              int state, const char *run, const char *strategy, const char *note);

static bool propose_assign(struct rd_sched *s, const struct rd_task *t, const struct rd_node *nd,
                           int state)
{
    return propose_assign_in(s, t, nd, state, NULL, NULL, NULL);
}

static bool propose_assign_in(struct rd_sched *s, const struct rd_task *t, const struct rd_node *nd,
                              int state, const char *run, const char *strategy, const char *note)
{
    char item[RD_UUID_STRLEN] = "";
    if (run != NULL && rd_uuid_v4(item) != 0)
        return false;
    struct rd_engine *eng = s->eng;
    struct rd_cmd cmd = {.type = RD_CMD_TASK_ASSIGN, .time_ms = rd_engine_stamp(eng)};
    cmd.u.tassign.task_id = RD_STR(t->id);
    cmd.u.tassign.attempt = t->attempt;
    cmd.u.tassign.node_id = nd ? (struct rd_str){nd->node_id, (uint32_t)nd->id_len} : RD_STR("");
    cmd.u.tassign.node_epoch = nd ? nd->epoch : 0;
    cmd.u.tassign.state = (uint8_t)state;
    cmd.u.tassign.recovery_id = RD_STR(run ? run : "");
    cmd.u.tassign.item_id = RD_STR(item);
    cmd.u.tassign.strategy = RD_STR(strategy ? strategy : "");
    cmd.u.tassign.note = RD_STR(note ? note : "");
    return propose_keyed(s, &cmd, t->id);
}

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
    struct rd_cmd cmd = {.type = RD_CMD_RECOVERY_OPEN, .time_ms = rd_engine_stamp(s->eng)};
    cmd.u.ropen.id = RD_STR(id);
    cmd.u.ropen.node_id = (struct rd_str){n->node_id, (uint32_t)n->id_len};
    cmd.u.ropen.strategy = RD_STR(strategy);
    cmd.u.ropen.reason = RD_STR(reason);
    return cmd;
}

int rd_sched_open_run(struct rd_sched *s, const struct rd_node *n, const char *strategy,
                      const char *reason, char id_out[RD_UUID_STRLEN], rd_submit_cb cb, void *data)
{
    if (rd_uuid_v4(id_out) != 0)
        return RD_EIO;
    struct rd_cmd cmd = ropen_cmd(s, n, id_out, strategy, reason);
    struct rd_wbuf w;
    rd_w_init(&w);
    int rv = rd_cmd_encode(&cmd, &w);
    if (rv == 0)
        rv = rd_replica_submit(&s->eng->replica, &w, cb, data);
    rd_w_free(&w);
    return rv;
}

bool rd_sched_hold_open(struct rd_sched *s, const char *node)
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

void rd_sched_release_open(struct rd_sched *s, const char *node)
{
    char key[RD_NODE_ID_MAX + 8];
    snprintf(key, sizeof(key), "open:%s", node);
    free(rd_map_del(&s->inflight, key, strlen(key)));
    rd_sched_kick(s);
}

static void run_open(struct rd_sched *s, const struct rd_node *n, const char *strategy,
                     const char *reason)
{
    char key[RD_NODE_ID_MAX + 8], id[RD_UUID_STRLEN];
    snprintf(key, sizeof(key), "open:%s", n->node_id);
    if (rd_map_get(&s->inflight, key, strlen(key)) || rd_uuid_v4(id) != 0)
        return;
    struct rd_cmd cmd = ropen_cmd(s, n, id, strategy, reason);
    propose_keyed(s, &cmd, key);
}

/* The run ends: its agent holds no more tasks, came back, or the run
 * passed its strategy's max_time (`forced` RD_REC_PARTIAL, else -1). */
static void run_close(struct rd_sched *s, const struct rd_recovery *run, int forced)
{
    char key[64];
    snprintf(key, sizeof(key), "close:%s", run->id);
    struct rd_cmd cmd = {.type = RD_CMD_RECOVERY_CLOSE, .time_ms = rd_engine_stamp(s->eng)};
    cmd.u.rclose.id = RD_STR(run->id);
    cmd.u.rclose.status = forced >= 0          ? (uint8_t)forced
                          : run->failed == 0   ? RD_REC_SUCCEEDED
                          : run->recovered > 0 ? RD_REC_PARTIAL
                                               : RD_REC_FAILED;
    cmd.u.rclose.strategy = RD_STR("");
    propose_keyed(s, &cmd, key);
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

static json_t *fault_of(struct rd_fsm *f, const struct rd_node *n)
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

static bool checksum_ok(const struct rd_checkpoint *c)
{
    return rd_fnv1a(RD_FNV_INIT, c->data, c->size) == c->checksum;
}

/* What happened and to which tasks (policies/README.md has the shape). */
static json_t *build_event(struct rd_engine *eng, const struct rd_node *n, struct rd_task **todo,
                           size_t k)
{
    int64_t now = rd_now_ms();
    json_t *tasks = json_array();
    for (size_t j = 0; j < k; j++) {
        const struct rd_task *t = todo[j];
        const struct rd_checkpoint *c = rd_task_checkpoint(t);
        json_t *ck = c ? json_pack("{s:I,s:I,s:b}", "version", (json_int_t)c->version, "age_ms",
                                   (json_int_t)(now - c->at), "checksum_ok", checksum_ok(c))
                       : json_null();
        json_array_append_new(
            tasks, json_pack("{s:s,s:i,s:b,s:I,s:{s:I,s:o},s:o}", "task_id", t->id, "priority",
                             t->priority, "critical", t->critical, "attempt",
                             (json_int_t)t->attempt, "requirements", "slots", (json_int_t)t->slots,
                             "labels", labels_of(t->labels_json), "checkpoint", ck));
    }
    const struct rd_recovery *run = rd_fsm_open_recovery(&eng->fsm, n->node_id);
    return json_pack("{s:s,s:s?,s:o,s:{s:s,s:I,s:s,s:o,s:{s:I}},s:o}", "kind", event_kind(n),
                     "strategy", run && run->strategy[0] ? run->strategy : NULL, "fault",
                     fault_of(&eng->fsm, n), "node", "node_id", n->node_id, "epoch",
                     (json_int_t)n->epoch, "state", rd_node_state_name(n->state), "labels",
                     labels_of(n->labels_json), "capacity", "slots", (json_int_t)n->slots, "tasks",
                     tasks);
}

/* The cluster as the policy may see it, read-only. */
static json_t *build_view(struct rd_engine *eng)
{
    struct rd_fsm *f = &eng->fsm;
    const struct rd_config *c = &eng->cfg;
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
    return json_pack("{s:o,s:s,s:b,s:{s:{s:I,s:i},s:{s:I,s:b},s:{s:b,s:i}},s:I}", "nodes", nodes,
                     "mode", rd_sched_degraded(&eng->sched, NULL) ? "degraded" : "normal",
                     "partition_suspected", eng->analysis.partition_suspected, "strategies",
                     "fast_recovery", "max_time_ms", (json_int_t)RS.fast_recovery.max_time_ms,
                     "resource_limit", (int)RS.fast_recovery.resource_limit, "safe_recovery",
                     "max_time_ms", (json_int_t)RS.safe_recovery.max_time_ms, "consistency_check",
                     RS.safe_recovery.consistency_check, "degraded_service",
                     "essential_services_only", RS.degraded_service.essential_services_only,
                     "performance_limit", (int)RS.degraded_service.performance_limit, "now_ms",
                     (json_int_t)rd_now_ms());
#undef RS
}

/* safe_recovery's wait: until the lost agent's lease has surely expired
 * (its last heartbeat + lease + one interval for clock drift), so the task
 * never runs twice at once. 0 when it has (or nothing is known). */
static uint64_t lease_left_ns(struct rd_engine *eng, const struct rd_node *n)
{
    struct rd_soft *soft = rd_registry_get(&eng->registry, n->node_id, n->id_len);
    /* Nothing heard from it since this replica became leader (a restart, a
     * new leader): its lease may have been renewed just before, so it
     * counts from then. */
    uint64_t last = soft != NULL && soft->epoch == n->epoch && soft->last_mono_ns != 0
                        ? soft->last_mono_ns
                        : eng->leader_since_ns;
    uint64_t margin =
        (rd_engine_lease_ms(eng) + eng->cfg.fault_tolerance.detection.heartbeat_interval_ms) *
        1000000ULL;
    uint64_t now = rd_mono_ns(), end = last + margin;
    return now >= end ? 0 : end - now;
}

static bool lease_expired(struct rd_engine *eng, const struct rd_node *n)
{
    return lease_left_ns(eng, n) == 0;
}

static struct rd_task *task_in(struct rd_task **todo, size_t k, const char *id)
{
    for (size_t j = 0; id != NULL && j < k; j++)
        if (strcmp(todo[j]->id, id) == 0)
            return todo[j];
    return NULL;
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
static int move_task(struct rd_sched *s, struct rd_task *t, const struct rd_node *from,
                     const char *target, uint32_t *extra, unsigned limit, const char *why)
{
    if (s->eng->analysis.partition_suspected && (!t->critical || !partition_allows(s)))
        return 0;
    const struct rd_recovery *run = rd_fsm_open_recovery(&s->eng->fsm, from->node_id);
    struct rd_fsm *f = &s->eng->fsm;
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
        best = choose(s, t, extra, limit ? limit : 100);
    const struct rd_node *to = best == SIZE_MAX ? NULL : f->nodes[best];
    if (!propose_assign_in(s, t, to, to ? RD_TASK_RECOVERING : RD_TASK_PENDING,
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

static void pause_task(struct rd_sched *s, struct rd_task *t)
{
    struct rd_cmd cmd = {.type = RD_CMD_TASK_FINISH, .time_ms = rd_engine_stamp(s->eng)};
    cmd.u.tfinish.task_id = RD_STR(t->id);
    cmd.u.tfinish.attempt = 0;
    cmd.u.tfinish.state = RD_TASK_PAUSED;
    cmd.u.tfinish.result_json = RD_STR("paused by degraded_service");
    propose_keyed(s, &cmd, t->id);
}

/* A policy's isolate action: the node is fenced off like an operator's
 * isolate (any epoch); unknown or departed nodes are refused in apply. */
static void isolate_node(struct rd_sched *s, const char *node, const char *strategy)
{
    char key[RD_NODE_ID_MAX + 16], reason[96];
    snprintf(key, sizeof(key), "isolate:%s", node);
    snprintf(reason, sizeof(reason), "isolated by the %s policy", strategy ? strategy : "recovery");
    const struct rd_node *n = rd_fsm_node(&s->eng->fsm, node, strlen(node));
    if (n == NULL || n->state == RD_NODE_ISOLATED || n->state == RD_NODE_LEFT) {
        RD_WARN("recovery", "isolate_refused", "node=%s: %s", node,
                n == NULL ? "not registered" : "isolated or left already");
        return;
    }
    struct rd_cmd cmd = {.type = RD_CMD_NODE_TRANSITION, .time_ms = rd_engine_stamp(s->eng)};
    cmd.u.trans.node_id = RD_STR(node);
    cmd.u.trans.epoch = 0;
    cmd.u.trans.state = RD_NODE_ISOLATED;
    cmd.u.trans.reason = RD_STR(reason);
    cmd.u.trans.from_state = n->state;
    RD_WARN("recovery", "isolate", "node=%s strategy=%s", node, strategy ? strategy : "-");
    propose_keyed(s, &cmd, key);
}

/* ---- poison tasks ---------------------------------------------------------- */

/* True when `t` has failed max_failures times within the window, counting
 * `now_failing` more (1: its agent just failed under it). */
static bool poisoned(const struct rd_sched *s, const struct rd_task *t, unsigned now_failing)
{
    const struct rd_config *c = &s->eng->cfg;
    int64_t since = rd_now_ms() - (int64_t)c->fault_tolerance.poison.window_ms;
    return rd_task_failures_since(t, since) + now_failing >= c->fault_tolerance.poison.max_failures;
}

/* Fails `t` with a poison_task fault in one command (which alerts) instead
 * of placing it again. */
static void quarantine(struct rd_sched *s, const struct rd_task *t, unsigned now_failing)
{
    const struct rd_config *c = &s->eng->cfg;
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
        rd_engine_stamp(s->eng), id, RD_FAULT_POISON_TASK, RD_SEV_MAJOR, meta_s ? meta_s : "{}",
        "{\"action\":\"quarantine\",\"detail\":\"task failed; not placed again\"}");
    cmd.u.fopen.task_id = RD_STR(t->id);
    cmd.u.fopen.task_attempt = t->attempt;
    RD_WARN("recovery", "poison_task", "task=%s failures=%u window_ms=%llu last_node=%s fault=%s",
            t->id, n, (unsigned long long)c->fault_tolerance.poison.window_ms, t->node_id, id);
    s->poison_total++;
    propose_keyed(s, &cmd, t->id);
    free(meta_s);
}

/* ---- degraded mode ------------------------------------------------------- */

bool rd_sched_degraded(const struct rd_sched *s, unsigned *limit_pct)
{
    const struct rd_engine *eng = s->eng;
    if (limit_pct != NULL)
        *limit_pct =
            s->performance_limit
                ? s->performance_limit
                : eng->cfg.fault_tolerance.recovery_strategies.degraded_service.performance_limit;
    return eng->analysis.partition_suspected || eng->fsm.tasks_by_state[RD_TASK_PAUSED] > 0;
}

/* Paused tasks go back to pending (attempt + 1 when placed, so whoever
 * held them is fenced) once no partition is suspected. Not only when their
 * agent returns: an agent that really crashed during the partition never
 * does, and its tasks must not wait for it. */
static void resume_paused(struct rd_sched *s)
{
    struct rd_fsm *f = &s->eng->fsm;
    if (s->eng->analysis.partition_suspected || f->tasks_by_state[RD_TASK_PAUSED] == 0)
        return;
    for (size_t i = 0; i < f->n_tasks; i++) {
        const struct rd_task *t = f->tasks[i];
        if (t->state != RD_TASK_PAUSED || rd_map_get(&s->inflight, t->id, strlen(t->id)))
            continue;
        RD_INFO("recovery", "task_resumed", "task=%s paused_on=%s", t->id,
                t->node_id[0] ? t->node_id : "-");
        if (!propose_assign(s, t, NULL, RD_TASK_PENDING))
            return;
    }
}

/* ---- executing a plan ------------------------------------------------------ */

/* Executes a validated plan; anything the plan leaves out of this node's
 * tasks waits for the next pass. Returns the number of changes proposed,
 * -1 when proposing failed. */
static int execute(struct rd_sched *s, const struct rd_node *n, struct rd_task **todo, size_t k,
                   json_t *plan, uint32_t *extra)
{
    struct rd_engine *eng = s->eng;
    const char *strategy = json_string_value(json_object_get(plan, "strategy"));
    unsigned limit = eng->cfg.fault_tolerance.recovery_strategies.fast_recovery.resource_limit;
    json_t *actions = json_object_get(plan, "actions");
    int proposed = 0;
    /* Side actions first, then reassignments in the policy's order. */
    size_t na = json_array_size(actions);
    for (int stage = 0; stage < 2; stage++) {
        for (size_t i = 0; i < na; i++) {
            json_t *a = json_array_get(actions, i);
            const char *what = json_string_value(json_object_get(a, "action"));
            struct rd_task *t = task_in(todo, k, json_string_value(json_object_get(a, "task_id")));
            if (stage == 0) {
                if (strcmp(what, "alert") == 0) {
                    char fp[64];
                    snprintf(fp, sizeof(fp), "policy-%s", n->node_id);
                    struct rd_alert al = {
                        .fingerprint = fp,
                        .alertname = "RecoveryPolicy",
                        .node_id = n->node_id,
                        .fault_type = "policy",
                        .severity = json_string_value(json_object_get(a, "severity")),
                        .summary = json_string_value(json_object_get(a, "summary")),
                        .description = strategy,
                        .starts_at_ms = rd_now_ms()};
                    rd_plugin_host_alert(&eng->plugins, &al);
                } else if (strcmp(what, "pause") == 0 && t != NULL &&
                           !rd_map_get(&s->inflight, t->id, strlen(t->id))) {
                    pause_task(s, t);
                    proposed++;
                } else if (strcmp(what, "isolate") == 0) {
                    isolate_node(s, json_string_value(json_object_get(a, "node_id")), strategy);
                    proposed++;
                } else if (strcmp(what, "degrade") == 0) {
                    json_int_t pct = json_integer_value(json_object_get(a, "performance_limit"));
                    s->performance_limit = pct < 1 ? 1 : pct > 100 ? 100 : (unsigned)pct;
                } else if (strcmp(what, "check_consistency") == 0 && t != NULL) {
                    const struct rd_checkpoint *c = rd_task_checkpoint(t);
                    if (c != NULL && !checksum_ok(c))
                        RD_ERROR("recovery", "checkpoint_corrupt", "task=%s version=%llu", t->id,
                                 (unsigned long long)c->version);
                }
                continue;
            }
            if (t == NULL || rd_map_get(&s->inflight, t->id, strlen(t->id)))
                continue;
            int rv = 0;
            if (strcmp(what, "reassign") == 0) {
                /* safe_recovery never lets a task run twice at once: it moves
                 * only once the lost agent's lease has surely expired. */
                if (strategy != NULL && strcmp(strategy, "safe_recovery") == 0 &&
                    !lease_expired(eng, n))
                    continue;
                rv = move_task(s, t, n, json_string_value(json_object_get(a, "target")), extra,
                               limit, strategy);
            } else if (strcmp(what, "wait") == 0 && lease_expired(eng, n)) {
                /* The lease has run out: it is safe to move now. */
                rv = move_task(s, t, n, NULL, extra, limit, strategy);
            }
            if (rv < 0)
                return -1;
            proposed += rv;
        }
    }
    return proposed;
}

/* A run that passed its strategy's max_time ends partial and alerts; what
 * its agent still holds goes back to pending for ordinary placement. Not
 * while a partition is suspected: then waiting is the plan. */
static bool run_timed_out(struct rd_sched *s, const struct rd_recovery *run,
                          const struct rd_node *n)
{
    const struct rd_config *c = &s->eng->cfg;
    const char *st = run->strategy[0] ? run->strategy
                     : run->n_items   ? run->items[run->n_items - 1].strategy
                                      : "fast_recovery";
    uint64_t max = strcmp(st, "safe_recovery") == 0
                       ? c->fault_tolerance.recovery_strategies.safe_recovery.max_time_ms
                   : strcmp(st, "degraded_service") == 0
                       ? 0 /* waits for the fault to end by design */
                       : c->fault_tolerance.recovery_strategies.fast_recovery.max_time_ms;
    int64_t age = rd_now_ms() - run->started_at;
    if (max == 0 || age <= (int64_t)max || s->eng->analysis.partition_suspected)
        return false;
    char note[128];
    snprintf(note, sizeof(note), "%s passed its max_time (%llu ms): back to pending", st,
             (unsigned long long)max);
    unsigned left = 0;
    for (struct rd_task *t = n ? n->tasks : NULL; t != NULL; t = t->next_on_node) {
        if (rd_map_get(&s->inflight, t->id, strlen(t->id)))
            continue;
        if (!propose_assign_in(s, t, NULL, RD_TASK_PENDING, run->id, st, note))
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
    rd_plugin_host_alert(&s->eng->plugins, &al);
    return true;
}

/* Moves the tasks of failed, isolated, departed and draining agents as the
 * Lua policies plan it (select, then the chosen strategy); if a policy
 * errors, runs past its budget or returns an invalid plan, that is recorded
 * as a policy_error fault and the built-in fast recovery acts instead
 * (DESIGN.md decision 7). While a partition is suspected only critical
 * tasks move, rate-limited; the others wait for their agents or are paused
 * by degraded_service. A task that keeps failing is quarantined instead. */
static void recover(struct rd_sched *s, uint32_t *extra)
{
    struct rd_engine *eng = s->eng;
    struct rd_fsm *f = &eng->fsm;
    unsigned limit = eng->cfg.fault_tolerance.recovery_strategies.fast_recovery.resource_limit;
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
        struct rd_soft *soft = rd_registry_get(&eng->registry, n->node_id, n->id_len);
        if (soft != NULL && soft->replan_at_ns > now_ns)
            continue;
        bool died = n->state == RD_NODE_FAILED || n->state == RD_NODE_ISOLATED;
        struct rd_task *todo[256];
        size_t k = 0;
        for (struct rd_task *t = n->tasks; t != NULL && k < RD_ARRAY_SIZE(todo);
             t = t->next_on_node) {
            if (rd_map_get(&s->inflight, t->id, strlen(t->id)))
                continue;
            if (died && poisoned(s, t, 1))
                quarantine(s, t, 1);
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
        qsort(todo, k, sizeof(*todo), by_urgency);
        json_t *plan = NULL;
        char err[RD_POLICY_ERRLEN] = "";
        if (eng->policy != NULL) {
            /* One view per pass, whatever the number of lost agents (the
             * policy host converts it per call and never changes it). */
            if (view == NULL)
                view = build_view(eng);
            json_t *event = build_event(eng, n, todo, k);
            int rv = rd_policy_plan(eng->policy, event, view, &plan, err, sizeof(err));
            json_decref(event);
            if (rv != 0) {
                s->policy_errors_total++;
                RD_ERROR("recovery", "policy_error",
                         "node=%s error=%s detail=\"%s\" fallback=builtin", n->node_id,
                         rd_err_name(rv), err);
                rd_engine_policy_error(eng, err);
                plan = NULL;
            }
        }
        int proposed = 0;
        if (plan != NULL) {
            proposed = execute(s, n, todo, k, plan, extra);
            json_decref(plan);
        } else {
            for (size_t j = 0; j < k && proposed >= 0; j++) {
                int rv = move_task(s, todo[j], n, NULL, extra, limit, "builtin_fast_recovery");
                proposed = rv < 0 ? -1 : proposed + rv;
            }
        }
        if (proposed < 0)
            break;
        /* Nothing could act (a lease to wait out, no room, a partition):
         * ask again when the lease runs out, or after a backoff. */
        if (proposed == 0 && soft != NULL) {
            uint64_t wait = lease_left_ns(eng, n), cap = REPLAN_BACKOFF_MS * 1000000ULL;
            soft->replan_at_ns = now_ns + (wait > 0 && wait < cap ? wait : cap);
        }
    }
    json_decref(view); /* NULL when no policy ran */
}

static void pass(struct rd_sched *s)
{
    struct rd_engine *eng = s->eng;
    struct rd_fsm *f = &eng->fsm;
    s->kicked = false;
    if (!rd_replica_is_leader(&eng->replica) || eng->shutting_down)
        return;
    /* Tentative load of this pass, so one pass does not overfill an agent. */
    uint32_t *extra = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*extra));
    if (extra == NULL)
        return;
    labels_reset(s); /* labels are parsed at most once per node per pass */
    /* Counted first: /metrics, on this thread, sees it after the whole pass. */
    s->passes_total++;
    recover(s, extra);
    resume_paused(s);
    if (f->tasks_by_state[RD_TASK_PENDING] == 0) {
        free(extra);
        return;
    }
    size_t n = 0;
    struct rd_task **todo = malloc(f->tasks_by_state[RD_TASK_PENDING] * sizeof(*todo));
    if (todo == NULL) {
        free(extra);
        return;
    }
    for (size_t i = 0; i < f->n_tasks && n < f->tasks_by_state[RD_TASK_PENDING]; i++) {
        struct rd_task *t = f->tasks[i];
        if (t->state != RD_TASK_PENDING || rd_map_get(&s->inflight, t->id, strlen(t->id)))
            continue;
        if (poisoned(s, t, 0))
            quarantine(s, t, 0);
        else
            todo[n++] = t;
    }
    qsort(todo, n, sizeof(*todo), by_urgency);
    unsigned degraded_limit = 100;
    bool degraded = rd_sched_degraded(s, &degraded_limit);
    for (size_t k = 0; k < n; k++) {
        struct rd_task *t = todo[k];
        /* Degraded: non-critical work only up to performance_limit. */
        size_t best = choose(s, t, extra, degraded && !t->critical ? degraded_limit : 100);
        if (best == SIZE_MAX)
            continue; /* waits for capacity */
        if (!propose_assign(s, t, f->nodes[best], RD_TASK_ASSIGNED))
            break;
        extra[best] += t->slots;
        s->placements_total++;
    }
    free(extra);
    free(todo);
}

static void on_timer(uv_timer_t *t)
{
    pass(t->data);
}

void rd_sched_init(struct rd_sched *s, struct rd_engine *eng)
{
    memset(s, 0, sizeof(*s));
    s->eng = eng;
    rd_map_init(&s->inflight);
}

void rd_sched_start(struct rd_sched *s)
{
    if (s->started)
        return;
    uv_timer_init(s->eng->loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_timer, PASS_MS, PASS_MS);
    s->started = true;
    rd_sched_kick(s);
}

void rd_sched_kick(struct rd_sched *s)
{
    if (!s->started || s->kicked)
        return;
    s->kicked = true;
    uv_timer_start(&s->timer, on_timer, 0, PASS_MS);
}

void rd_sched_stop(struct rd_sched *s)
{
    if (!s->started)
        return;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, NULL);
    s->started = false;
}

void rd_sched_close(struct rd_sched *s)
{
    labels_reset(s);
    for (size_t i = 0; i < s->inflight.cap; i++)
        if (s->inflight.slots && s->inflight.slots[i].value)
            free(s->inflight.slots[i].value);
    rd_map_free(&s->inflight);
}
