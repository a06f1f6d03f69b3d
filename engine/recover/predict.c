/*
 * Predicted faults act (leader only). The analysis records a trend that
 * heads for a limit as an open fault with metadata.predicted = true (the
 * agent keeps working). Each pass, every such fault of a working agent
 * (alive or probation) that this leadership has not answered yet becomes a
 * `predicted` event for select.lua's predicted hook, with the metric, its
 * trend and the expected time of failure. "drain" drains the agent at once
 * (a node_transition through the log, audited, the fault its cause): its
 * tasks then move with their checkpoints as any drained agent's do, while
 * it still runs. The engine allows at most prediction.drains_per_minute
 * such drains (a token bucket, burst as many, a token taken when the
 * drain is proposed and given back when it is refused; a new leader's
 * starts from the drains the audit records show, so the limit holds across
 * leader changes) and none that would leave
 * less than prediction.min_healthy_capacity of the fleet's slots on working
 * agents; a drain held back by either is tried again each pass while the
 * prediction stands. "watch", no hook, or a failing hook (a policy_error
 * fault, counted) leave the agent alone.
 *
 * An agent drained on a prediction whose fault was resolved (its signals
 * went back to normal) while it still drains goes back through probation:
 * the failure did not come.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "policy/policy.h"
#include "recoveryd/error.h"
#include "sched_int.h"

#define PREDICTED_AUDIT_ACTION "drain_by_prediction"

/* What this leadership did with a prediction (the map's values, keyed by
 * the fault id they hold). */
enum { ANSWERED = 1, HELD };

struct answer {
    char fault_id[40];
    int what;
};

static bool working(const struct rd_node *n)
{
    return n->state == RD_NODE_ALIVE || n->state == RD_NODE_PROBATION;
}

/* One drain from the bucket, if any (refilled at drains_per_minute). */
static bool drain_allowed(struct rd_sched *s)
{
    double rate = s->env.cfg->fault_tolerance.prediction.drains_per_minute;
    if (rate <= 0)
        return false;
    uint64_t now = rd_mono_ns();
    if (s->drain_tokens_ns == 0)
        s->drain_tokens =
            rd_sched__bucket_seed(s->env.fsm, PREDICTED_AUDIT_ACTION, rate / 60, rate, rd_now_ms());
    else
        s->drain_tokens += (double)(now - s->drain_tokens_ns) / 60e9 * rate;
    if (s->drain_tokens > rate)
        s->drain_tokens = rate;
    s->drain_tokens_ns = now;
    return s->drain_tokens >= 1.0;
}

/* True when draining `n` leaves at least min_healthy_capacity percent of
 * the fleet's slots (agents that did not leave) on working agents the
 * detectors do not hold in trouble (rd_sched__placeable): a silent agent
 * whose failure has not committed yet is no capacity to drain onto. */
static bool capacity_allows(struct rd_sched *s, const struct rd_node *n)
{
    const struct rd_fsm *f = s->env.fsm;
    uint64_t total = 0, healthy = 0;
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *x = f->nodes[i];
        if (x->state == RD_NODE_LEFT)
            continue;
        total += x->slots;
        if (x != n && rd_sched__placeable(s, x))
            healthy += x->slots;
    }
    return healthy * 100 >=
           (uint64_t)s->env.cfg->fault_tolerance.prediction.min_healthy_capacity * total;
}

/* The `predicted` event: the node's event with the prediction. */
static json_t *predicted_event(struct rd_sched *s, const struct rd_node *n, json_t *meta)
{
    struct rd_task *todo[256];
    size_t k = 0;
    for (struct rd_task *t = n->tasks; t != NULL && k < RD_ARRAY_SIZE(todo); t = t->next_on_node)
        todo[k++] = t;
    json_t *event = rd_sched__event(s, n, todo, k);
    if (event == NULL)
        return NULL;
    json_object_set_new(event, "kind", json_string("predicted"));
    json_t *trend = json_object_get(meta, "trend");
    json_t *p =
        json_pack("{s:O?,s:f,s:O?,s:O?,s:O?}", "metric", json_object_get(meta, "metric"), "trend",
                  json_is_number(trend) ? json_number_value(trend) : 0.0, "eta_ms",
                  json_object_get(meta, "eta_ms"), "detail", json_object_get(meta, "detail"),
                  "last_metrics", json_object_get(meta, "last_metrics"));
    json_object_set_new(event, "prediction", p ? p : json_object());
    return event;
}

/* Counted when the log took it: a transition refused (the agent changed
 * state on the way, a new leader) is asked about again, and counting the
 * proposal would count one drain twice. A refused drain gives its token
 * back: no agent was drained. (Leadership lost with it in flight: the
 * next leadership's bucket starts from the audit records anyway.) */
static void drained(struct rd_sched *s, const char *key, int status)
{
    (void)key;
    if (status == 0)
        s->predicted_total[RD_PREDICTED_DRAINED]++;
    else
        s->drain_tokens += 1.0;
}

static void readmitted(struct rd_sched *s, const char *key, int status)
{
    (void)key;
    if (status == 0)
        s->predicted_total[RD_PREDICTED_READMITTED]++;
}

static void drain(struct rd_sched *s, const struct rd_node *n, const struct rd_fault *x,
                  json_t *meta)
{
    const char *metric = json_string_value(json_object_get(meta, "metric"));
    json_t *eta = json_object_get(meta, "eta_ms");
    char reason[160], key[RD_NODE_ID_MAX + 16];
    snprintf(reason, sizeof(reason), RD_SCHED_PREDICTED_REASON " (%s, about %.0f s left)",
             metric ? metric : "metrics", json_is_number(eta) ? json_number_value(eta) / 1000 : 0);
    snprintf(key, sizeof(key), "drain:%s", n->node_id);
    struct rd_cmd cmd = {.type = RD_CMD_NODE_TRANSITION};
    cmd.u.trans.node_id = (struct rd_str){n->node_id, (uint32_t)n->id_len};
    cmd.u.trans.epoch = n->epoch;
    cmd.u.trans.state = RD_NODE_DRAINING;
    cmd.u.trans.reason = RD_STR(reason);
    cmd.u.trans.from_state = n->state;
    rd_cmd_audit_engine(&cmd, PREDICTED_AUDIT_ACTION, n->node_id, x->id);
    /* A token per drain proposed (given back if refused: drained); none
     * when this agent's drain is on its way already. */
    if (rd_sched__propose_keyed_then(s, &cmd, key, drained) > 0) {
        s->drain_tokens -= 1.0;
        RD_WARN("recovery", "predicted_drain", "node=%s fault=%s metric=%s eta_ms=%.0f", n->node_id,
                x->id, metric ? metric : "-", json_is_number(eta) ? json_number_value(eta) : 0);
    }
}

/* Asks the hook about one prediction: ANSWERED (watch, no hook, an error),
 * HELD (drain wanted, not allowed yet), or 0 (drained, or proposing). */
static int ask(struct rd_sched *s, const struct rd_node *n, const struct rd_fault *x, json_t *meta,
               bool asked_before, json_t **view, struct rd_policy_nodes *nodes)
{
    struct rd_policy_host *h = *s->env.policy;
    if (!asked_before) {
        if (!rd_policy_has_hook(h, RD_HOOK_PREDICTED)) {
            s->predicted_total[RD_PREDICTED_WATCHED]++;
            return ANSWERED;
        }
        if (*view == NULL)
            *view = rd_sched__view_settings(s);
        json_t *event = predicted_event(s, n, meta), *answer = NULL;
        char err[RD_POLICY_ERRLEN] = "";
        int rv = event && *view ? rd_policy_hook(h, RD_HOOK_PREDICTED, event, *view, nodes, &answer,
                                                 err, sizeof(err))
                                : RD_ENOMEM;
        json_decref(event);
        if (rv != 0) {
            s->policy_errors_total++;
            s->predicted_total[RD_PREDICTED_ERROR]++;
            RD_ERROR("recovery", "policy_error",
                     "hook=predicted node=%s fault=%s error=%s detail=\"%s\" fallback=watch",
                     n->node_id, x->id, rd_err_name(rv), err);
            s->env.policy_error(s->env.policy_error_data, err);
            return ANSWERED;
        }
        bool wants = strcmp(json_string_value(answer), "drain") == 0;
        json_decref(answer);
        if (!wants) {
            s->predicted_total[RD_PREDICTED_WATCHED]++;
            RD_INFO("recovery", "predicted_watch", "node=%s fault=%s", n->node_id, x->id);
            return ANSWERED;
        }
    }
    bool rate = drain_allowed(s), room = rate && capacity_allows(s, n);
    if (!rate || !room) {
        if (!asked_before) {
            s->predicted_total[rate ? RD_PREDICTED_NO_CAPACITY : RD_PREDICTED_RATE_LIMITED]++;
            RD_WARN("recovery", "predicted_drain_held",
                    "node=%s fault=%s why=\"%s\": tried again while the prediction stands",
                    n->node_id, x->id,
                    rate ? "it would leave less than prediction.min_healthy_capacity"
                         : "prediction.drains_per_minute reached");
        }
        return HELD;
    }
    drain(s, n, x, meta);
    return 0;
}

/* An agent drained on a prediction that no open predicted fault stands
 * for any more: back through probation. */
static void readmit(struct rd_sched *s, const struct rd_node *n)
{
    char key[RD_NODE_ID_MAX + 16];
    snprintf(key, sizeof(key), "drain:%s", n->node_id);
    struct rd_cmd cmd = {.type = RD_CMD_NODE_TRANSITION};
    cmd.u.trans.node_id = (struct rd_str){n->node_id, (uint32_t)n->id_len};
    cmd.u.trans.epoch = n->epoch;
    cmd.u.trans.state = RD_NODE_PROBATION;
    cmd.u.trans.reason = RD_STR("the predicted failure did not come: back through probation");
    cmd.u.trans.from_state = RD_NODE_DRAINING;
    rd_cmd_audit_engine(&cmd, "readmit_after_prediction", n->node_id, "prediction withdrawn");
    if (rd_sched__propose_keyed_then(s, &cmd, key, readmitted) > 0) {
        RD_INFO("recovery", "predicted_readmit", "node=%s", n->node_id);
    }
}

static bool is_prediction(const struct rd_fault *x, json_t **meta)
{
    *meta = json_loads(x->metadata_json, 0, NULL);
    if (json_is_true(json_object_get(*meta, "predicted")))
        return true;
    json_decref(*meta);
    *meta = NULL;
    return false;
}

/* Forgets what this leadership answered about the fault with `id`. */
static void answer_forget(struct rd_sched *s, const char *id)
{
    free(rd_map_del(&s->predicted, id, strlen(id)));
}

/* Forgets every answer whose fault is no longer an open record. */
static void answers_sweep(struct rd_sched *s)
{
    for (size_t i = 0; i < s->predicted.cap; i++) {
        struct answer *a = s->predicted.slots[i].value; /* NULL in empty and deleted slots */
        if (a == NULL)
            continue;
        const struct rd_fault *x = rd_fsm_fault(s->env.fsm, a->fault_id);
        if (x == NULL || x->status != RD_FAULT_OPEN_ST)
            answer_forget(s, a->fault_id);
    }
}

/* The faults opened since the last pass: the open predictions of agents
 * among them kept by seq (each fault's metadata is read once: after a mass
 * failure thousands of open faults are not predictions, and a pass used to
 * look each of them up every 100 ms). On ENOMEM the rest waits for the
 * next pass. */
static void predictions_note(struct rd_sched *s)
{
    const struct rd_fsm *f = s->env.fsm;
    for (size_t i = rd_fsm_fault_index(f, s->pred_seen_seq + 1); i < f->n_faults; i++) {
        const struct rd_fault *x = f->faults[i];
        json_t *meta = NULL;
        if (x->status == RD_FAULT_OPEN_ST && x->node_id[0] != '\0' && is_prediction(x, &meta)) {
            json_decref(meta);
            if (s->n_pred_open == s->cap_pred_open) {
                size_t cap = s->cap_pred_open ? 2 * s->cap_pred_open : 16;
                uint64_t *p = realloc(s->pred_open, cap * sizeof(*p));
                if (p == NULL)
                    return;
                s->pred_open = p;
                s->cap_pred_open = cap;
            }
            s->pred_open[s->n_pred_open++] = x->seq;
        }
        s->pred_seen_seq = x->seq;
    }
}

void rd_sched__predicted(struct rd_sched *s)
{
    const struct rd_fsm *f = s->env.fsm;
    predictions_note(s);
    json_t *view = NULL; /* one per pass, its nodes built only if the hook reads them */
    struct rd_policy_nodes nodes = {.build = rd_sched__view_nodes, .data = s};
    size_t kept = 0, answered = 0; /* open predictions kept, and of them with an answer */
    for (size_t k = 0; k < s->n_pred_open; k++) {
        size_t i = rd_fsm_fault_index(f, s->pred_open[k]);
        const struct rd_fault *x =
            i < f->n_faults && f->faults[i]->seq == s->pred_open[k] ? f->faults[i] : NULL;
        if (x == NULL || x->status != RD_FAULT_OPEN_ST) {
            if (x != NULL)
                answer_forget(s, x->id); /* a fault's answer is needed while it is open */
            continue;
        }
        s->pred_open[kept++] = s->pred_open[k];
        size_t idlen = strlen(x->id);
        struct answer *a = rd_map_get(&s->predicted, x->id, idlen);
        answered += a != NULL;
        if (a != NULL && a->what == ANSWERED)
            continue;
        const struct rd_node *n = rd_fsm_node(f, x->node_id, strlen(x->node_id));
        char key[RD_NODE_ID_MAX + 16];
        if (n != NULL)
            snprintf(key, sizeof(key), "drain:%s", n->node_id);
        if (n == NULL || !working(n) || rd_map_get(&s->inflight, key, strlen(key)))
            continue;
        json_t *meta = json_loads(x->metadata_json, 0, NULL); /* a prediction's: noted so */
        int rv = ask(s, n, x, meta, a != NULL, &view, &nodes);
        json_decref(meta);
        if (rv == 0)
            continue;
        if (a == NULL && (a = calloc(1, sizeof(*a))) != NULL) {
            snprintf(a->fault_id, sizeof(a->fault_id), "%s", x->id);
            if (rd_map_put(&s->predicted, a->fault_id, idlen, a) != 0) {
                free(a);
                continue;
            }
            answered++;
        }
        if (a != NULL)
            a->what = rv;
    }
    s->n_pred_open = kept;
    /* More answers than open predictions with one: a fault answered went
     * away unseen (resolved and pruned between two passes, its seq no
     * longer found), whose answer no pass above can name. Forgotten here. */
    if (s->predicted.len > answered)
        answers_sweep(s);
    json_decref(view);
    rd_policy_nodes_release(&nodes);
    /* Drained on a prediction that no longer stands: readmit. */
    if (f->count_by_state[RD_NODE_DRAINING] == 0)
        return;
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *n = f->nodes[i];
        if (n->state != RD_NODE_DRAINING ||
            strncmp(n->reason, RD_SCHED_PREDICTED_REASON, strlen(RD_SCHED_PREDICTED_REASON)) != 0)
            continue;
        if (n->open_faults == 0) /* the state machine's count of its open records */
            readmit(s, n);
    }
}

void rd_sched__predicted_stop(struct rd_sched *s)
{
    for (size_t i = 0; i < s->predicted.cap; i++)
        free(s->predicted.slots[i].value); /* NULL in empty and deleted slots */
    rd_map_free(&s->predicted);
    rd_map_init(&s->predicted);
    /* The next leadership reads every fault once again. */
    free(s->pred_open);
    s->pred_open = NULL;
    s->n_pred_open = s->cap_pred_open = 0;
    s->pred_seen_seq = 0;
}

void rd_sched_predict_metrics(const struct rd_sched *s, struct rd_mbuf *b)
{
    static const char *const outcomes[RD_PREDICTED_KINDS] = {
        "drained", "watched", "rate_limited", "no_capacity", "policy_error", "readmitted"};
    rd_metric_header(b, "recoveryd_predicted_faults_total", "counter",
                     "Predicted faults answered by this leader, by outcome: drained early, "
                     "watched (the predicted hook said so, or there is none), drain held back "
                     "(rate_limited, no_capacity: tried again while the prediction stands), "
                     "policy_error (the hook failed: watched), readmitted (the failure did not "
                     "come).");
    for (int k = 0; k < RD_PREDICTED_KINDS; k++)
        rd_mbuf_printf(b, "recoveryd_predicted_faults_total{outcome=\"%s\"} %llu\n", outcomes[k],
                       (unsigned long long)s->predicted_total[k]);
}
