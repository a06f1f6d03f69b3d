/* Recovery runs: manual triggers and their task_recovery records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "cluster/cluster.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "fsm/fsm.h"
#include "plugin/host.h"
#include "policy/policy.h"
#include "recover/sched.h"
#include "registry/registry.h"
#include "replica/replica.h"
#include "http.h"
#include "policy/policy.h"
#include "recoveryd/error.h"

static json_t *time_or_null(int64_t ms)
{
    char buf[RD_TIME_STRLEN];
    if (ms == 0)
        return json_null();
    rd_time_format(ms, buf);
    return json_string(buf);
}

static json_t *run_json(const struct rd_recovery *r)
{
    json_t *items = json_array();
    for (uint32_t i = 0; i < r->n_items; i++) {
        const struct rd_recovery_item *it = &r->items[i];
        json_array_append_new(
            items,
            json_pack("{s:s,s:s,s:s,s:s?,s:s,s:o,s:o,s:b,s:s?}", "id", it->id, "original_task_id",
                      it->task_id, "failed_node_id", it->failed_node_id, "recovery_node_id",
                      it->recovery_node_id[0] ? it->recovery_node_id : NULL, "recovery_strategy",
                      it->strategy, "started_at", time_or_null(it->started_at), "completed_at",
                      time_or_null(it->completed_at), "success", it->success == 1, "error_message",
                      it->error[0] ? it->error : NULL));
    }
    return json_pack("{s:s,s:s,s:s?,s:s,s:o,s:o,s:I,s:I,s:I,s:s,s:o}", "recovery_id", r->id,
                     "node_id", r->node_id, "strategy", r->strategy[0] ? r->strategy : NULL,
                     "status", rd_recovery_status_name(r->status), "started_at",
                     time_or_null(r->started_at), "completed_at", time_or_null(r->completed_at),
                     "tasks_total", (json_int_t)r->total, "tasks_recovered",
                     (json_int_t)r->recovered, "tasks_failed", (json_int_t)r->failed, "reason",
                     r->reason, "items", items);
}

/* Runs, newest first: ?node_id= and ?status= filter, ?limit= (1-1000, 100),
 * ?cursor= the recovery_id of the last run of the previous page. */
void rd_api_RECOVERY_LIST(struct rd_http_req *hr)
{
    const struct rd_fsm *f = hr->env->fsm;
    const char *node = rd_http_query(hr, "node_id"), *status = rd_http_query(hr, "status"),
               *cursor = rd_http_query(hr, "cursor");
    int limit = rd_api_list_limit(hr);
    if (limit < 0)
        return;
    size_t i = f->n_recoveries;
    if (cursor != NULL && cursor[0] != '\0') {
        if (!rd_uuid_valid(cursor)) {
            rd_http_bad_request(hr, "cursor", "cursor is not one this server returned");
            return;
        }
        /* Runs are kept in order of opening and the oldest pruned first: a
         * cursor no longer kept had nothing older after it. */
        size_t at = 0;
        while (at < f->n_recoveries && strcmp(f->recoveries[at]->id, cursor) != 0)
            at++;
        i = at < f->n_recoveries ? at : 0;
    }
    json_t *items = json_array();
    const char *last = NULL;
    bool more = false;
    while (i-- > 0) {
        const struct rd_recovery *r = f->recoveries[i];
        if ((node && strcmp(node, r->node_id) != 0) ||
            (status && strcmp(status, rd_recovery_status_name(r->status)) != 0))
            continue;
        if ((int)json_array_size(items) == limit) {
            more = true;
            break;
        }
        json_array_append_new(items, run_json(r));
        last = r->id;
    }
    rd_http_send_json(hr, 200,
                      json_pack("{s:o,s:o}", "items", items, "next_cursor",
                                more ? json_string(last) : json_null()));
}

void rd_api_RECOVERY_GET(struct rd_http_req *hr)
{
    h2o_iovec_t id = hr->params[0];
    char buf[40];
    const struct rd_recovery *r = NULL;
    if (id.len < sizeof(buf)) {
        memcpy(buf, id.base, id.len);
        buf[id.len] = '\0';
        r = rd_fsm_recovery(hr->env->fsm, buf);
    }
    if (r == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL, "no recovery run %.*s", (int)id.len,
                           id.base);
        return;
    }
    rd_http_send_json(hr, 200, run_json(r));
}

/* 202 with the run (a new one, or the one already open for the agent). */
static void answer_run(struct rd_http_req *hr, const struct rd_recovery *r)
{
    /* A rough estimate: one lease (safe waits for it) plus the moves. */
    double secs = (double)rd_config_lease_ms(hr->env->cfg) / 1000.0 + 0.1 * r->total;
    rd_http_send_json(hr, 202,
                      json_pack("{s:s,s:s,s:f,s:I}", "recovery_id", r->id, "status", "initiated",
                                "estimated_time", secs, "tasks_total", (json_int_t)r->total));
}

/* The trigger's run is open (or it failed): answer. */
static void triggered(void *data, int status, const struct rd_recovery *run)
{
    struct rd_http_pending *p = data;
    if (rd_http_pending_alive(p)) {
        if (status == 0)
            answer_run(&p->hr, run);
        else
            rd_http_send_rd_error(&p->hr, status, NULL);
    }
    rd_http_pending_done(p);
}

void rd_api_RECOVERY_TRIGGER(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    json_t *body = rd_http_body_object(hr);
    if (body == NULL)
        return;
    json_t *jn = json_object_get(body, "node_id"), *js = json_object_get(body, "strategy");
    const char *node = json_string_value(jn), *strategy = js ? json_string_value(js) : "";
    if (node == NULL || !rd_node_id_valid(node, strlen(node))) {
        rd_http_bad_request(hr, "node_id",
                            "node_id is required: 1-255 characters of [A-Za-z0-9._:-]");
        goto out;
    }
    snprintf(hr->audit_target, sizeof(hr->audit_target), "%s", node); /* the trail's target */
    if (strategy == NULL || (strategy[0] && !rd_policy_has_strategy(*env->policy, strategy))) {
        char names[128] = "";
        for (int i = 0; i < RD_STRATEGY_COUNT; i++)
            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "",
                     rd_strategy_names[i]);
        rd_http_bad_request(hr, "strategy", "strategy must be one of the loaded strategies (%s)",
                            names);
        goto out;
    }
    const struct rd_node *n = rd_fsm_node(env->fsm, node, strlen(node));
    if (n == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL, "node %s is not registered", node);
        goto out;
    }
    if (n->state == RD_NODE_LEFT && n->tasks == NULL) {
        rd_http_send_error(hr, 409, "conflict", json_pack("{s:s}", "state", "left"),
                           "node %s left and holds no task", node);
        goto out;
    }
    const struct rd_recovery *open = rd_fsm_open_recovery(env->fsm, node);
    if (open != NULL) { /* one run per agent at a time: that one answers */
        answer_run(hr, open);
        goto out;
    }
    struct rd_http_pending *p = rd_http_defer(hr);
    if (p == NULL) {
        rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
        goto out;
    }
    int rv = rd_sched_trigger(env->sched, node, strategy, triggered, p);
    if (rv == RD_ECONFLICT)
        rd_http_send_error(&p->hr, 409, "conflict", NULL,
                           "a recovery run for node %s is being opened; retry", node);
    else if (rv != 0)
        rd_http_send_rd_error(&p->hr, rv, NULL);
    if (rv != 0)
        rd_http_pending_done(p);
out:
    json_decref(body);
}
