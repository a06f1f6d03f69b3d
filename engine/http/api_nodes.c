/* Agents: registration, heartbeats, reads and graceful leave. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
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
#include "input_limits.h"
#include "recoveryd/error.h"

#define MAX_SLOTS   RD_LIMIT_SLOTS
#define MAX_URL_LEN RD_LIMIT_URL_LEN

/* The node id from the path, validated; answers 400 itself and returns NULL. */
static const char *path_node_id(struct rd_http_req *hr, size_t *len)
{
    h2o_iovec_t id = hr->params[0];
    if (!rd_node_id_valid(id.base, id.len)) {
        rd_http_bad_request(hr, "node_id", "node_id must be 1-255 characters of [A-Za-z0-9._:-]");
        return NULL;
    }
    *len = id.len;
    return id.base;
}

static json_t *node_json(const struct rd_http_env *env, const struct rd_node *n)
{
    char reg[RD_TIME_STRLEN], upd[RD_TIME_STRLEN], hb[RD_TIME_STRLEN];
    rd_time_format(n->registered_at, reg);
    rd_time_format(n->updated_at, upd);
    json_t *labels = json_loads(n->labels_json, 0, NULL);
    struct rd_soft *s = rd_registry_get(env->registry, n->node_id, n->id_len);
    if (s != NULL && s->epoch != n->epoch)
        s = NULL;
    json_t *last_hb = json_null();
    if (s != NULL && s->last_wall_ms != 0) {
        rd_time_format(s->last_wall_ms, hb);
        last_hb = json_string(hb);
    }
    /* phi as the heartbeat detector last reported it while the agent is in
     * trouble; null while its heartbeats are on time. */
    double phi_v;
    json_t *phi =
        s != NULL && rd_analysis_phi(env->analysis, s, &phi_v) ? json_real(phi_v) : json_null();
    json_t *o = json_pack("{s:s#,s:I,s:s,s:{s:I},s:o,s:{s:I},s:o,s:o,s:i,s:s,s:s,s:s,s:s}",
                          "node_id", n->node_id, n->id_len, "epoch", (json_int_t)n->epoch, "state",
                          rd_node_state_name(n->state), "capacity", "slots", (json_int_t)n->slots,
                          "labels", labels ? labels : json_object(), "load", "slots_used",
                          (json_int_t)(s ? s->slots_used : 0), "last_heartbeat_at", last_hb, "phi",
                          phi, "tasks", (int)n->n_tasks, "reason", n->reason, "registered_at", reg,
                          "updated_at", upd, "health_url", n->health_url);
    if (o != NULL && n->address[0])
        json_object_set_new(o, "address", json_string(n->address));
    return o;
}

/* ---- POST /api/v1/nodes ------------------------------------------------ */

struct reg_input {
    const char *node_id;
    size_t id_len;
    uint32_t slots;
    char *labels_json; /* malloc'd */
    const char *health_url;
    const char *address;
};

/* Validates the registration body; answers 400 itself and returns false. */
static bool parse_register(struct rd_http_req *hr, json_t *body, struct reg_input *in)
{
    json_t *id = json_object_get(body, "node_id");
    if (id == NULL) {
        rd_http_bad_request(hr, "node_id", "node_id is required");
        return false;
    }
    if (!json_is_string(id) || !rd_node_id_valid(json_string_value(id), json_string_length(id))) {
        rd_http_bad_request(hr, "node_id",
                            "node_id must be a string of 1-255 characters of [A-Za-z0-9._:-]");
        return false;
    }
    in->node_id = json_string_value(id);
    in->id_len = json_string_length(id);
    in->slots = 1;
    json_t *cap = json_object_get(body, "capacity");
    if (cap != NULL) {
        if (!json_is_object(cap)) {
            rd_http_bad_request(hr, "capacity", "capacity must be an object like {\"slots\": 8}");
            return false;
        }
        json_t *slots = json_object_get(cap, "slots");
        if (slots != NULL) {
            if (!json_is_integer(slots) || json_integer_value(slots) < 1 ||
                json_integer_value(slots) > MAX_SLOTS) {
                rd_http_bad_limit(hr, "capacity.slots", MAX_SLOTS,
                                  "capacity.slots must be an integer from 1 to %d", MAX_SLOTS);
                return false;
            }
            in->slots = (uint32_t)json_integer_value(slots);
        }
    }
    json_t *labels = json_object_get(body, "labels");
    char why[200];
    if (labels != NULL && !rd_limits_labels_ok(labels, why, sizeof(why))) {
        rd_http_bad_limit(hr, "labels", RD_LIMIT_LABELS, "%s", why);
        return false;
    }
    in->health_url = "";
    json_t *url = json_object_get(body, "health_url");
    if (url != NULL && !json_is_null(url)) {
        const char *u = json_string_value(url);
        if (u == NULL || json_string_length(url) > MAX_URL_LEN ||
            (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0 &&
             strncmp(u, "tcp://", 6) != 0)) {
            rd_http_bad_limit(hr, "health_url", MAX_URL_LEN,
                              "health_url must be an http://, https:// or tcp:// URL of at most "
                              "%d characters",
                              MAX_URL_LEN);
            return false;
        }
        in->health_url = u;
    }
    in->address = "";
    json_t *addr = json_object_get(body, "address");
    if (addr != NULL && !json_is_null(addr)) {
        if (!json_is_string(addr) || json_string_length(addr) > RD_LIMIT_ADDRESS_LEN) {
            rd_http_bad_limit(hr, "address", RD_LIMIT_ADDRESS_LEN,
                              "address must be a string of at most %d characters",
                              RD_LIMIT_ADDRESS_LEN);
            return false;
        }
        in->address = json_string_value(addr);
    }
    /* Canonical form: sorted keys, compact, so every replica stores the same bytes. */
    in->labels_json = labels ? json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
    if (in->labels_json == NULL) {
        rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
        return false;
    }
    return true;
}

static void register_done(void *data, int status, uint64_t epoch)
{
    struct rd_http_pending *p = data;
    if (rd_http_pending_alive(p)) {
        const struct rd_http_env *env = p->hr.env;
        if (status == 0) {
            json_t *o =
                json_pack("{s:s,s:I,s:I,s:I,s:s}", "node_id", p->key, "epoch", (json_int_t)epoch,
                          "heartbeat_interval_ms",
                          (json_int_t)env->cfg->fault_tolerance.detection.heartbeat_interval_ms,
                          "lease_ms", (json_int_t)rd_config_lease_ms(env->cfg), "partition_mode",
                          rd_partition_mode_name(env->cfg->fault_tolerance.partition.mode));
            rd_http_send_json(&p->hr, 201, o);
        } else if (status == RD_ECONFLICT) {
            rd_http_send_error(&p->hr, 409, "conflict", json_pack("{s:s}", "state", "isolated"),
                               "node %s is isolated by an operator: POST "
                               "/api/v1/nodes/%s/readmit first",
                               p->key, p->key);
        } else {
            rd_http_send_rd_error(&p->hr, status, NULL);
        }
    }
    rd_http_pending_done(p);
}

void rd_api_NODES_REGISTER(struct rd_http_req *hr)
{
    json_t *body = rd_http_body_object(hr);
    if (body == NULL)
        return;
    struct reg_input in;
    if (parse_register(hr, body, &in)) {
        struct rd_cmd cmd = {.type = RD_CMD_NODE_REGISTER};
        cmd.u.reg.node_id = (struct rd_str){in.node_id, (uint32_t)in.id_len};
        cmd.u.reg.slots = in.slots;
        cmd.u.reg.labels_json = RD_STR(in.labels_json);
        cmd.u.reg.health_url = RD_STR(in.health_url);
        cmd.u.reg.address = RD_STR(in.address);
        rd_http_propose(hr, &cmd, in.node_id, in.id_len, register_done);
        free(in.labels_json);
    }
    json_decref(body);
}

/* ---- POST /api/v1/nodes/{id}/heartbeat --------------------------------- */

/* Reads an optional non-negative number field; false (400 sent) when invalid. */
static bool opt_number(struct rd_http_req *hr, json_t *obj, const char *key, const char *field,
                       double max, double *out, bool *present)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return true;
    double d = json_number_value(v);
    if (!json_is_number(v) || !isfinite(d) || d < 0 || d > max) {
        rd_http_bad_limit(hr, field, (long long)max, "%s must be a number from 0 to %g", field,
                          max);
        return false;
    }
    *out = d;
    *present = true;
    return true;
}

/* The answer of a heartbeat with nothing to hand over or take away: no
 * JSON built (most heartbeats of a fleet). */
_Static_assert(RD_NODE_STATE_COUNT <= RD_ARRAY_SIZE(((struct rd_http *)0)->idle),
               "an idle answer per node state");

static void send_idle_answer(struct rd_http_req *hr, const struct rd_node *n)
{
    const struct rd_http_env *env = hr->env;
    uint64_t lease_ms = rd_config_lease_ms(env->cfg);
    unsigned mode = env->cfg->fault_tolerance.partition.mode;
    unsigned st = n->state < RD_NODE_STATE_COUNT ? n->state : RD_NODE_ALIVE;
    struct rd_http_idle *a = &env->http->idle[st];
    if (a->len <= 0 || a->lease_ms != lease_ms || a->mode != mode) {
        a->len = snprintf(a->text, sizeof(a->text),
                          "{\"state\":\"%s\",\"lease_ms\":%llu,\"partition_mode\":\"%s\","
                          "\"assignments\":[],\"revoked\":[],\"revocations\":[]}",
                          rd_node_state_name((int)st), (unsigned long long)lease_ms,
                          rd_partition_mode_name(mode));
        a->lease_ms = lease_ms, a->mode = mode;
    }
    rd_http_send_raw(hr, 200, "application/json", a->text, (size_t)a->len);
}

void rd_api_NODE_HEARTBEAT(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    size_t id_len;
    const char *id = path_node_id(hr, &id_len);
    if (id == NULL)
        return;
    if (!rd_replica_is_leader(env->replica)) {
        rd_http_send_rd_error(hr, RD_ENOTLEADER, "heartbeats go to the leader");
        return;
    }
    json_t *body = rd_http_body_object(hr);
    if (body == NULL)
        return;
    json_t *ep = json_object_get(body, "epoch");
    json_t *load = json_object_get(body, "load");
    json_t *metrics = json_object_get(body, "metrics");
    json_t *used = load ? json_object_get(load, "slots_used") : NULL;
    struct rd_node_metrics m = {0};
    double progress = -1;
    bool has_progress = false;
    if (!rd_limits_int_in(ep, 1, RD_LIMIT_INT)) {
        rd_http_bad_limit(hr, "epoch", RD_LIMIT_INT,
                          "epoch must be the positive integer from registration (at most %lld)",
                          RD_LIMIT_INT);
        goto out;
    }
    if (load != NULL && !json_is_object(load)) {
        rd_http_bad_request(hr, "load", "load must be an object like {\"slots_used\": 1}");
        goto out;
    }
    if (used != NULL && (!json_is_integer(used) || json_integer_value(used) < 0 ||
                         json_integer_value(used) > MAX_SLOTS)) {
        rd_http_bad_limit(hr, "load.slots_used", MAX_SLOTS,
                          "load.slots_used must be an integer from 0 to %d", MAX_SLOTS);
        goto out;
    }
    if (metrics != NULL && !json_is_null(metrics)) {
        if (!json_is_object(metrics)) {
            rd_http_bad_request(hr, "metrics", "metrics must be an object");
            goto out;
        }
        if (!opt_number(hr, metrics, "error_rate", "metrics.error_rate", RD_LIMIT_METRIC_ERROR_RATE,
                        &m.error_rate, &m.present) ||
            !opt_number(hr, metrics, "latency_ms", "metrics.latency_ms", RD_LIMIT_METRIC_LATENCY_MS,
                        &m.latency_ms, &m.present) ||
            !opt_number(hr, metrics, "cpu", "metrics.cpu", RD_LIMIT_METRIC_CPU, &m.cpu,
                        &m.present) ||
            !opt_number(hr, metrics, "mem", "metrics.mem", RD_LIMIT_METRIC_MEM, &m.mem,
                        &m.present) ||
            !opt_number(hr, metrics, "progress", "metrics.progress", RD_LIMIT_METRIC_PROGRESS,
                        &progress, &has_progress))
            goto out;
    }
    struct rd_heartbeat_in in = {
        .node_id = id,
        .id_len = id_len,
        .epoch = (uint64_t)json_integer_value(ep),
        .slots_used = used ? (uint32_t)json_integer_value(used) : 0,
        .metrics = m,
        .progress = has_progress ? progress : -1,
    };
    const struct rd_node *n;
    struct rd_soft *s;
    int rv = rd_analysis_take_heartbeat(env->analysis, &in, &n, &s);
    if (rv == RD_ENOTFOUND) {
        rd_http_send_error(hr, 404, "not_found", NULL, "node %.*s is not registered", (int)id_len,
                           id);
        goto out;
    }
    if (rv == RD_EFENCED) {
        json_t *d = json_pack("{s:I,s:s}", "epoch", (json_int_t)n->epoch, "state",
                              rd_node_state_name(n->state));
        rd_http_send_error(
            hr, 409, "fenced", d,
            in.epoch != n->epoch ? "epoch %llu is not the current epoch of node %.*s: drop its "
                                   "tasks and register again"
                                 : "epoch %llu of node %.*s is fenced (the node is %s): drop its "
                                   "tasks and register again",
            (unsigned long long)in.epoch, (int)id_len, id, rd_node_state_name(n->state));
        goto out;
    }
    if (rv != 0) {
        rd_http_send_rd_error(hr, rv, NULL);
        goto out;
    }
    if (n->tasks == NULL && s->n_revoked == 0) {
        /* The hot path: nothing to hand over. */
        send_idle_answer(hr, n);
        goto out;
    }
    /* Tasks placed on this epoch and not yet started, most urgent first (an
     * agent that starts them in the order given starts the critical ones
     * first), each told once and again only after a while without a start
     * (rd_sched_handover), and tasks moved away. */
    struct rd_handover few[64], *todo = few;
    if (n->n_tasks > sizeof(few) / sizeof(few[0]) &&
        (todo = calloc(n->n_tasks, sizeof(*todo))) == NULL) {
        rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
        goto out;
    }
    /* s->last_mono_ns: this heartbeat's arrival. */
    size_t k_todo = rd_sched_handover(env->sched, n, s, s->last_mono_ns, todo);
    if (k_todo == 0 && s->n_revoked == 0) {
        if (todo != few)
            free(todo);
        send_idle_answer(hr, n);
        goto out;
    }
    json_t *assignments = json_array(), *revoked = json_array();
    for (size_t i = 0; i < k_todo; i++) {
        const struct rd_task *t = todo[i].task;
        json_t *a = rd_api_task_json(t);
        if (a != NULL && todo[i].ckpt != NULL)
            json_object_set_new(a, "checkpoint", rd_api_checkpoint_json(todo[i].ckpt, true));
        else if (a != NULL && t->n_ckpts > 0)
            json_object_set_new(a, "checkpoint", json_null()); /* none verifies: start over */
        json_array_append_new(assignments, a);
    }
    if (todo != few)
        free(todo);
    /* Revocations name the attempt taken away. `revoked` (task ids only)
     * leaves out a task this agent holds again under a new attempt (paused
     * or failed, then placed back here): an agent that applied it after the
     * assignment would drop the live attempt. */
    struct rd_revocation gone[RD_REVOKED_MAX];
    unsigned n_gone = rd_registry_take_revoked(env->registry, s, gone);
    json_t *revocations = json_array();
    for (unsigned i = 0; i < n_gone; i++) {
        json_array_append_new(revocations, json_pack("{s:s,s:I}", "task_id", gone[i].task_id,
                                                     "attempt", (json_int_t)gone[i].attempt));
        const struct rd_task *t = rd_fsm_task(env->fsm, gone[i].task_id);
        bool held_here = t != NULL && t->node_epoch == n->epoch &&
                         strncmp(t->node_id, n->node_id, n->id_len) == 0 &&
                         t->node_id[n->id_len] == '\0' &&
                         (t->state == RD_TASK_ASSIGNED || t->state == RD_TASK_RUNNING ||
                          t->state == RD_TASK_RECOVERING);
        bool listed = false;
        for (size_t k = 0; k < json_array_size(revoked) && !listed; k++)
            listed = strcmp(json_string_value(json_array_get(revoked, k)), gone[i].task_id) == 0;
        if (!held_here && !listed)
            json_array_append_new(revoked, json_string(gone[i].task_id));
    }
    rd_http_send_json(
        hr, 200,
        json_pack("{s:s,s:I,s:s,s:o,s:o,s:o}", "state", rd_node_state_name(n->state), "lease_ms",
                  (json_int_t)rd_config_lease_ms(env->cfg), "partition_mode",
                  rd_partition_mode_name(env->cfg->fault_tolerance.partition.mode), "assignments",
                  assignments, "revoked", revoked, "revocations", revocations));
out:
    json_decref(body);
}

/* ---- GET /api/v1/nodes/{id}, GET /api/v1/nodes ------------------------- */

void rd_api_NODE_GET(struct rd_http_req *hr)
{
    size_t id_len;
    const char *id = path_node_id(hr, &id_len);
    if (id == NULL)
        return;
    const struct rd_node *n = rd_fsm_node(hr->env->fsm, id, id_len);
    if (n == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL, "node %.*s is not registered", (int)id_len,
                           id);
        return;
    }
    rd_http_send_json(hr, 200, node_json(hr->env, n));
}

void rd_api_NODES_LIST(struct rd_http_req *hr)
{
    struct rd_fsm *fsm = hr->env->fsm;
    int limit = rd_api_list_limit(hr);
    if (limit < 0)
        return;
    int state = -1;
    const char *st = rd_http_query(hr, "state");
    if (st != NULL && (state = rd_node_state_parse(st, strlen(st))) < 0) {
        rd_http_bad_request(hr, "state",
                            "state must be one of alive, suspect, failed, isolated, probation, "
                            "draining, left");
        return;
    }
    /* The cursor is the last node_id of the previous page: stable under inserts. */
    const char *cursor = rd_http_query(hr, "cursor");
    size_t i = 0;
    if (cursor != NULL && cursor[0] != '\0') {
        if (!rd_node_id_valid(cursor, strlen(cursor))) {
            rd_http_bad_request(hr, "cursor", "cursor is not one this server returned");
            return;
        }
        i = rd_fsm_node_after(fsm, cursor, strlen(cursor));
    }
    json_t *items = json_array();
    const struct rd_node *last = NULL;
    bool more = false;
    for (; i < fsm->n_nodes; i++) {
        const struct rd_node *n = fsm->nodes[i];
        if (state >= 0 && n->state != state)
            continue;
        if ((int)json_array_size(items) == limit) {
            more = true;
            break;
        }
        json_array_append_new(items, node_json(hr->env, n));
        last = n;
    }
    json_t *next = more && last ? json_stringn(last->node_id, last->id_len) : json_null();
    rd_http_send_json(hr, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor", next));
}

/* ---- DELETE /api/v1/nodes/{id} ----------------------------------------- */

/* Answers an operation on a node with the node as it is after the commit. */
static void node_op_done(void *data, int status, uint64_t epoch)
{
    struct rd_http_pending *p = data;
    (void)epoch;
    if (rd_http_pending_alive(p)) {
        const struct rd_http_env *env = p->hr.env;
        const struct rd_node *n = rd_fsm_node(env->fsm, p->key, strlen(p->key));
        if (status == 0 && n != NULL)
            rd_http_send_json(&p->hr, 200, node_json(env, n));
        else
            rd_http_send_rd_error(&p->hr, status ? status : RD_ENOTFOUND, NULL);
    }
    rd_http_pending_done(p);
}

void rd_api_NODE_DELETE(struct rd_http_req *hr)
{
    size_t id_len;
    const char *id = path_node_id(hr, &id_len);
    if (id == NULL)
        return;
    const struct rd_node *n = rd_fsm_node(hr->env->fsm, id, id_len);
    if (n == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL, "node %.*s is not registered", (int)id_len,
                           id);
        return;
    }
    if (n->state == RD_NODE_LEFT) { /* idempotent: nothing to commit */
        rd_http_send_json(hr, 200, node_json(hr->env, n));
        return;
    }
    struct rd_cmd cmd = {.type = RD_CMD_NODE_TRANSITION};
    cmd.u.trans.node_id = (struct rd_str){id, (uint32_t)id_len};
    cmd.u.trans.epoch = 0;
    cmd.u.trans.state = RD_NODE_LEFT;
    cmd.u.trans.reason = RD_STR("left: DELETE /api/v1/nodes");
    cmd.u.trans.from_state = RD_STATE_ANY;
    cmd.u.trans.resolve_faults = 1;
    rd_http_propose(hr, &cmd, id, id_len, node_op_done);
}

/* ---- operator actions: drain, isolate, readmit ------------------------- */

bool rd_api_operator_reason(struct rd_http_req *hr, char *buf, size_t len, const char *dflt)
{
    snprintf(buf, len, "%s", dflt);
    if (hr->req->entity.base == NULL || hr->req->entity.len == 0)
        return true;
    json_t *body = rd_http_body_object(hr);
    if (body == NULL)
        return false;
    json_t *r = json_object_get(body, "reason");
    bool ok = true;
    if (r != NULL && !json_is_null(r)) {
        if (!json_is_string(r) || json_string_length(r) > RD_LIMIT_REASON_LEN) {
            rd_http_bad_limit(hr, "reason", RD_LIMIT_REASON_LEN,
                              "reason must be a string of at most %d characters",
                              RD_LIMIT_REASON_LEN);
            ok = false;
        } else {
            snprintf(buf, len, "%s: %s", dflt, json_string_value(r));
        }
    }
    json_decref(body);
    return ok;
}

/* Finds the path's node; answers 400/404 itself and returns NULL. */
static const struct rd_node *path_node(struct rd_http_req *hr, const char **id, size_t *id_len)
{
    *id = path_node_id(hr, id_len);
    if (*id == NULL)
        return NULL;
    const struct rd_node *n = rd_fsm_node(hr->env->fsm, *id, *id_len);
    if (n == NULL)
        rd_http_send_error(hr, 404, "not_found", NULL, "node %.*s is not registered", (int)*id_len,
                           *id);
    return n;
}

static void conflict(struct rd_http_req *hr, const struct rd_node *n, const char *what)
{
    rd_http_send_error(hr, 409, "conflict",
                       json_pack("{s:s}", "state", rd_node_state_name(n->state)),
                       "node %s is %s: %s", n->node_id, rd_node_state_name(n->state), what);
}

void rd_api_NODE_DRAIN(struct rd_http_req *hr)
{
    const char *id;
    size_t id_len;
    const struct rd_node *n = path_node(hr, &id, &id_len);
    char reason[600];
    if (n == NULL || !rd_api_operator_reason(hr, reason, sizeof(reason), "drained by an operator"))
        return;
    if (n->state == RD_NODE_DRAINING) {
        rd_http_send_json(hr, 200, node_json(hr->env, n));
        return;
    }
    if (n->state == RD_NODE_LEFT || n->state == RD_NODE_FAILED || n->state == RD_NODE_ISOLATED) {
        conflict(hr, n, "only a working node can be drained");
        return;
    }
    struct rd_cmd cmd = {.type = RD_CMD_NODE_TRANSITION};
    cmd.u.trans.node_id = (struct rd_str){id, (uint32_t)id_len};
    cmd.u.trans.state = RD_NODE_DRAINING;
    cmd.u.trans.reason = RD_STR(reason);
    cmd.u.trans.from_state = n->state;
    rd_http_propose(hr, &cmd, id, id_len, node_op_done);
}

void rd_api_NODE_ISOLATE(struct rd_http_req *hr)
{
    const char *id;
    size_t id_len;
    const struct rd_node *n = path_node(hr, &id, &id_len);
    char reason[600];
    if (n == NULL || !rd_api_operator_reason(hr, reason, sizeof(reason), "isolated by an operator"))
        return;
    if (n->state == RD_NODE_ISOLATED) {
        rd_http_send_json(hr, 200, node_json(hr->env, n));
        return;
    }
    if (n->state == RD_NODE_LEFT) {
        conflict(hr, n, "a node that left cannot be isolated");
        return;
    }
    /* Isolation is recorded as a fault of type manual, in the same step. */
    char fid[RD_UUID_STRLEN];
    if (rd_uuid_v4(fid) != 0) {
        rd_http_send_rd_error(hr, RD_EIO, "no random source for the fault id");
        return;
    }
    json_t *meta =
        json_pack("{s:b,s:s,s:I}", "operator", 1, "reason", reason, "epoch", (json_int_t)n->epoch);
    char *meta_s = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
    struct rd_cmd cmd = {.type = RD_CMD_FAULT_OPEN};
    cmd.u.fopen.id = RD_STR(fid);
    cmd.u.fopen.node_id = (struct rd_str){id, (uint32_t)id_len};
    cmd.u.fopen.fault_type = RD_FAULT_MANUAL;
    cmd.u.fopen.severity = RD_SEV_MAJOR;
    cmd.u.fopen.metadata_json = RD_STR(meta_s ? meta_s : "{}");
    cmd.u.fopen.recovery_action_json = RD_STR("{\"action\":\"isolate\"}");
    cmd.u.fopen.set_state = RD_NODE_ISOLATED;
    cmd.u.fopen.epoch = 0;
    cmd.u.fopen.from_state = RD_STATE_ANY;
    rd_http_propose(hr, &cmd, id, id_len, node_op_done);
    free(meta_s);
}

void rd_api_NODE_READMIT(struct rd_http_req *hr)
{
    const char *id;
    size_t id_len;
    const struct rd_node *n = path_node(hr, &id, &id_len);
    char reason[600];
    if (n == NULL ||
        !rd_api_operator_reason(hr, reason, sizeof(reason), "readmitted by an operator"))
        return;
    if (n->state == RD_NODE_PROBATION) { /* readmitted already */
        rd_http_send_json(hr, 200, node_json(hr->env, n));
        return;
    }
    if (n->state != RD_NODE_ISOLATED && n->state != RD_NODE_FAILED &&
        n->state != RD_NODE_DRAINING) {
        conflict(hr, n, "only an isolated, failed or draining node can be readmitted");
        return;
    }
    /* Back through probation: it earns "alive" with good heartbeats. */
    struct rd_cmd cmd = {.type = RD_CMD_NODE_TRANSITION};
    cmd.u.trans.node_id = (struct rd_str){id, (uint32_t)id_len};
    cmd.u.trans.state = RD_NODE_PROBATION;
    cmd.u.trans.reason = RD_STR(reason);
    cmd.u.trans.from_state = n->state;
    cmd.u.trans.resolve_faults = 1;
    rd_http_propose(hr, &cmd, id, id_len, node_op_done);
}
