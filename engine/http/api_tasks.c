/* Tasks and their fenced, versioned checkpoints. */
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
#include "input_limits.h"
#include "recoveryd/error.h"

#define MAX_SLOTS      RD_LIMIT_SLOTS
#define CHECKPOINT_MAX RD_LIMIT_DOC_BYTES /* bytes of checkpoint data, as canonical JSON */

static json_t *json_or_null(const char *text)
{
    json_t *v = text && text[0] ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return v ? v : json_null();
}

static void checksum_text(uint64_t sum, char out[32])
{
    snprintf(out, 32, "fnv1a64:%016llx", (unsigned long long)sum);
}

json_t *rd_api_checkpoint_json(const struct rd_checkpoint *c, bool with_data)
{
    char at[RD_TIME_STRLEN], sum[32];
    rd_time_format(c->at, at);
    checksum_text(c->checksum, sum);
    json_t *o = json_pack("{s:I,s:s,s:I,s:s}", "version", (json_int_t)c->version, "updated_at", at,
                          "size", (json_int_t)c->size, "checksum", sum);
    if (o != NULL && with_data)
        json_object_set_new(o, "data", json_or_null(c->data));
    return o;
}

json_t *rd_api_task_json(const struct rd_task *t)
{
    char created[RD_TIME_STRLEN], updated[RD_TIME_STRLEN];
    rd_time_format(t->created_at, created);
    rd_time_format(t->updated_at, updated);
    const struct rd_checkpoint *c = rd_task_checkpoint(t);
    json_t *ckpt = c != NULL ? rd_api_checkpoint_json(c, false) : json_null();
    json_t *o = json_pack(
        "{s:s,s:s,s:i,s:b,s:s?,s:I,s:o,s:s,s:s,s:{s:I,s:o},s:o,s:I,s:I}", "task_id", t->id, "state",
        rd_task_state_name(t->state), "priority", t->priority, "critical", t->critical, "node_id",
        t->node_id[0] ? t->node_id : NULL, "attempt", (json_int_t)t->attempt, "checkpoint", ckpt,
        "created_at", created, "updated_at", updated, "requirements", "slots", (json_int_t)t->slots,
        "labels", json_or_null(t->labels_json), "payload", json_or_null(t->payload_json),
        "max_attempts", (json_int_t)t->max_attempts, "failures", (json_int_t)t->failures);
    if (o != NULL && t->deadline_ms != 0) {
        char deadline[RD_TIME_STRLEN];
        rd_time_format(t->deadline_ms, deadline);
        json_object_set_new(o, "deadline", json_string(deadline));
    }
    if (o != NULL && t->result_json[0] && t->state == RD_TASK_COMPLETED) {
        json_t *r = json_loads(t->result_json, JSON_DECODE_ANY, NULL);
        json_object_set_new(o, "result", r ? r : json_string(t->result_json));
    } else if (o != NULL && t->result_json[0]) {
        /* The agent's (or the scheduler's) words, as they were given: a
         * string, even when it happens to parse as JSON ("404"). */
        json_object_set_new(o, "error", json_string(t->result_json));
    }
    return o;
}

/* The task id from the path; answers 400/404 itself and returns NULL. */
static const struct rd_task *path_task(struct rd_http_req *hr)
{
    h2o_iovec_t id = hr->params[0];
    char buf[40];
    if (id.len >= sizeof(buf) || (memcpy(buf, id.base, id.len), buf[id.len] = '\0', 0) ||
        !rd_uuid_valid(buf)) {
        rd_http_bad_request(hr, "task_id", "task_id must be a UUID");
        return NULL;
    }
    const struct rd_task *t = rd_fsm_task(hr->env->fsm, buf);
    if (t == NULL)
        rd_http_send_error(hr, 404, "not_found", NULL, "no task %s", buf);
    return t;
}

/* ---- answering after a commit -------------------------------------------- */

/*
 * 409 fenced: a write from an attempt that may no longer write to `t`
 * (`sent`, the attempt the agent named; 0 when not at hand), saying where the
 * task is now, so the agent (and whoever reads its log) knows why.
 */
static void send_fenced(struct rd_http_req *hr, const struct rd_task *t, unsigned long long sent)
{
    char who[48];
    if (sent != 0)
        snprintf(who, sizeof(who), "attempt %llu", sent);
    else
        snprintf(who, sizeof(who), "this attempt");
    const char *state = rd_task_state_name(t->state);
    json_t *d = json_pack("{s:I,s:s}", "attempt", (json_int_t)t->attempt, "state", state);
    bool placed = t->state == RD_TASK_ASSIGNED || t->state == RD_TASK_RUNNING ||
                  t->state == RD_TASK_RECOVERING;
    if (placed && t->node_id[0] != '\0')
        rd_http_send_error(hr, 409, "fenced", d,
                           "%s may not write to task %s: the task is attempt %u, %s on node %s; "
                           "drop it",
                           who, t->id, t->attempt, state, t->node_id);
    else if (t->state == RD_TASK_PENDING && t->attempt == 0)
        rd_http_send_error(hr, 409, "fenced", d,
                           "task %s is pending and was never placed on a node: %s may not write "
                           "to it",
                           t->id, who);
    else if (t->state == RD_TASK_PENDING)
        rd_http_send_error(hr, 409, "fenced", d,
                           "task %s is pending (attempt %u was taken back from its node and waits "
                           "to be placed again): %s may no longer write to it; drop it",
                           t->id, t->attempt, who);
    else
        rd_http_send_error(hr, 409, "fenced", d,
                           "task %s is %s (attempt %u): %s may no longer write to it; drop it",
                           t->id, state, t->attempt, who);
}

static void answer_task(struct rd_http_pending *p, int status, int ok_code)
{
    const struct rd_http_env *env = p->hr.env;
    const struct rd_task *t = rd_fsm_task(env->fsm, p->key);
    if (status == 0 && t != NULL) {
        rd_http_send_json(&p->hr, ok_code, rd_api_task_json(t));
    } else if (status == RD_EFENCED && t != NULL) {
        send_fenced(&p->hr, t, 0);
    } else if (status == RD_ECONFLICT && t != NULL) {
        rd_http_send_error(&p->hr, 409, "conflict",
                           json_pack("{s:s}", "state", rd_task_state_name(t->state)),
                           "task %s is %s", t->id, rd_task_state_name(t->state));
    } else {
        rd_http_send_rd_error(&p->hr, status, NULL);
    }
}

/* ---- availability mode: conflicts ------------------------------------------ */

static bool availability(const struct rd_http_env *env)
{
    return env->cfg->fault_tolerance.partition.mode == RD_PARTITION_AVAILABILITY;
}

static bool placed_state(int state)
{
    return state == RD_TASK_ASSIGNED || state == RD_TASK_RUNNING || state == RD_TASK_RECOVERING;
}

/*
 * In availability mode, a write the task refuses from `attempt` because the
 * attempt was superseded (a later one exists, or it was taken back, or the
 * task finished) is a conflict. Not one: an attempt the task never had.
 */
static bool is_conflict(const struct rd_http_env *env, const struct rd_task *t, uint64_t attempt)
{
    return availability(env) && attempt >= 1 && attempt <= t->attempt &&
           (attempt < t->attempt || !placed_state(t->state));
}

/* In availability mode a write the log refused as fenced after the handler
 * let it through (the task moved meanwhile) is answered "send it again":
 * the SDK keeps it buffered and its replay becomes a conflict. */
static bool moved_meanwhile(struct rd_http_pending *p, int status)
{
    if (status != RD_EFENCED || !availability(p->hr.env))
        return false;
    rd_http_send_error(&p->hr, 503, "unavailable", json_pack("{s:b}", "retry", 1),
                       "task %s moved while this write was committing; send it again (it is "
                       "then recorded as a conflict)",
                       p->key);
    return true;
}

static void conflict_done(void *data, int status, uint64_t seq)
{
    struct rd_http_pending *p = data;
    const struct rd_fsm *f = p->hr.env->fsm;
    if (rd_http_pending_alive(p)) {
        const struct rd_task *t = rd_fsm_task(f, p->key);
        const struct rd_conflict *c = status == 0 ? rd_fsm_conflict_by_seq(f, seq) : NULL;
        if (c != NULL && t != NULL) {
            const char *state = rd_task_state_name(t->state);
            json_t *d = json_pack("{s:s,s:s,s:b,s:I,s:s}", "conflict_id", c->id, "resolution",
                                  rd_conflict_res_name(c->resolution), "adopted", c->adopted,
                                  "attempt", (json_int_t)t->attempt, "state", state);
            rd_http_send_error(&p->hr, 409, "conflict", d,
                               "attempt %u of task %s was superseded (the task is attempt %u, "
                               "%s): this %s is conflict %s, resolved %s by %s%s; drop the "
                               "attempt",
                               c->attempt, t->id, t->attempt, state, rd_conflict_kind_name(c->kind),
                               c->id, rd_conflict_res_name(c->resolution),
                               rd_conflict_by_name(c->resolved_by),
                               c->adopted ? " (its data was adopted)" : "");
        } else if (status == RD_EFENCED && t != NULL) {
            send_fenced(&p->hr, t, 0);
        } else if (status == 0 || status == RD_ECONFLICT) {
            /* The record went already (pruned), or the attempt may write
             * again (cannot happen: attempts only grow): try again. */
            rd_http_send_error(&p->hr, 503, "unavailable", json_pack("{s:b}", "retry", 1),
                               "task %s changed while this write was committing; send it again",
                               p->key);
        } else {
            rd_http_send_rd_error(&p->hr, status, NULL);
        }
    }
    if (status == 0)
        rd_sched_kick(p->hr.env->sched);
    rd_http_pending_done(p);
}

/* Proposes the conflict of a write of `attempt` to `t` with the resolution
 * the leader decides now (a follower answers not_leader on proposing). */
static void propose_conflict(struct rd_http_req *hr, const struct rd_task *t, int kind,
                             uint64_t attempt, uint64_t version, const char *data, size_t len,
                             const char *node_id)
{
    char id[RD_UUID_STRLEN];
    if (rd_uuid_v4(id) != 0) {
        rd_http_send_rd_error(hr, RD_EIO, "no random source for the conflict id");
        return;
    }
    struct rd_conflict_write w = {.conflict_id = id,
                                  .kind = kind,
                                  .attempt = (uint32_t)attempt,
                                  .version = version,
                                  .node_id = node_id};
    struct rd_conflict_decision d;
    /* The same write again: its record answers (no second record, no
     * second question to the policy). */
    const struct rd_conflict *same =
        rd_fsm_conflict_same(hr->env->fsm, t->id, (uint32_t)attempt, kind, version);
    if (same != NULL) {
        d.resolution = same->resolution;
        d.resolved_by = same->resolved_by;
        snprintf(d.reason, sizeof(d.reason), "%s", same->reason);
    } else {
        rd_sched_conflict_decide(hr->env->sched, t, &w, &d);
    }
    struct rd_cmd cmd = {.type = RD_CMD_CONFLICT};
    struct rd_cmd_conflict *c = &cmd.u.conflict;
    c->id = RD_STR(id);
    c->task_id = RD_STR(t->id);
    c->attempt = (uint32_t)attempt;
    c->kind = (uint8_t)kind;
    c->version = version;
    c->data_json = (struct rd_str){data, (uint32_t)len};
    c->checksum = rd_checkpoint_checksum(data, len);
    c->node_id = RD_STR(node_id);
    c->resolution = d.resolution;
    c->resolved_by = d.resolved_by;
    c->reason = RD_STR(d.reason);
    c->keep = RD_TASK_KEEP;
    /* The audit trail names it: the route, the task, the conflict. */
    rd_http_audit_part(hr, &cmd.audit, t->id, 409);
    cmd.audit.action = RD_STR("task_conflict");
    cmd.audit.error = RD_STR("conflict");
    cmd.audit.cause = RD_STR(id);
    hr->audited = true;
    rd_http_propose(hr, &cmd, t->id, strlen(t->id), conflict_done);
}

/* An agent let through only for a conflict (http.h: conflict_only) whose
 * write is none, or of an attempt that did not run on the node it names (or
 * whose node the task no longer knows): 403, as for any task not on its
 * nodes. True: answered. */
static bool refused_unless_conflict(struct rd_http_req *hr, const struct rd_task *t, bool conflict,
                                    uint64_t attempt, const char *writer)
{
    if (!hr->conflict_only)
        return false;
    if (conflict && rd_task_ran_on(t, (uint32_t)attempt, writer) == 1)
        return false;
    if (conflict) {
        rd_http_send_error(hr, 403, "forbidden",
                           json_pack("{s:s,s:s,s:s,s:s}", "required_role", "agent", "principal",
                                     hr->who.id, "role", "agent", "node", writer),
                           "attempt %llu of task %s did not run on node %s (or is too old for "
                           "the engine to know where it ran): agent %s may not send its writes",
                           (unsigned long long)attempt, t->id, writer, hr->who.id);
        return true;
    }
    rd_http_send_error(hr, 403, "forbidden",
                       json_pack("{s:s,s:s,s:s,s:s}", "required_role", "agent", "principal",
                                 hr->who.id, "role", "agent", "node", t->node_id),
                       "task %s is %s%s; agent %s may write to it only as a superseded attempt "
                       "(a conflict)",
                       t->id, t->node_id[0] ? "assigned to node " : "assigned to no node",
                       t->node_id, hr->who.id);
    return true;
}

/* The optional "node_id" of an agent's write (who wrote it, for a conflict
 * record): "" when absent; answers 400 itself and returns NULL. */
static const char *writer_of(struct rd_http_req *hr, json_t *body)
{
    json_t *v = json_object_get(body, "node_id");
    if (v == NULL || json_is_null(v))
        return "";
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s == NULL || !rd_node_id_valid(s, strlen(s))) {
        rd_http_bad_request(hr, "node_id", "node_id must be 1-255 characters of [A-Za-z0-9._:-]");
        return NULL;
    }
    return s;
}

static void submit_done(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    (void)value;
    if (rd_http_pending_alive(p)) {
        /* The same task_id again answers 200 with the existing task. */
        if (status == RD_EEXISTS)
            answer_task(p, 0, 200);
        else
            answer_task(p, status, 201);
    }
    if (status == 0)
        rd_sched_kick(p->hr.env->sched);
    rd_http_pending_done(p);
}

static void finish_done(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    (void)value;
    if (rd_http_pending_alive(p) && !moved_meanwhile(p, status))
        answer_task(p, status, 200);
    if (status == 0)
        rd_sched_kick(p->hr.env->sched);
    rd_http_pending_done(p);
}

static void checkpoint_done(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    if (rd_http_pending_alive(p) && !moved_meanwhile(p, status)) {
        if (status == 0)
            rd_http_send_json(&p->hr, 200, json_pack("{s:I}", "version", (json_int_t)value));
        else if (status == RD_ESTALE_VERSION)
            rd_http_send_error(&p->hr, 409, "stale_version",
                               json_pack("{s:I}", "stored_version", (json_int_t)value),
                               "version is not greater than the stored version %llu",
                               (unsigned long long)value);
        else
            answer_task(p, status, 200);
    }
    rd_http_pending_done(p);
}

/* ---- POST /api/v1/tasks ---------------------------------------------------- */

void rd_api_TASKS_SUBMIT(struct rd_http_req *hr)
{
    json_t *body = rd_http_body_object(hr);
    if (body == NULL)
        return;
    char id[RD_UUID_STRLEN];
    json_t *jid = json_object_get(body, "task_id");
    json_t *prio = json_object_get(body, "priority");
    json_t *crit = json_object_get(body, "critical");
    json_t *payload = json_object_get(body, "payload");
    json_t *req = json_object_get(body, "requirements");
    json_t *maxa = json_object_get(body, "max_attempts");
    json_t *jdeadline = json_object_get(body, "deadline");
    int64_t deadline = 0;
    json_t *slots = req ? json_object_get(req, "slots") : NULL;
    json_t *labels = req ? json_object_get(req, "labels") : NULL;
    char *labels_s = NULL, *payload_s = NULL;
    if (jid != NULL && !json_is_null(jid)) {
        if (!json_is_string(jid) || !rd_uuid_valid(json_string_value(jid))) {
            rd_http_bad_request(hr, "task_id", "task_id must be a UUID");
            goto out;
        }
        snprintf(id, sizeof(id), "%s", json_string_value(jid));
        for (char *c = id; *c; c++) /* one spelling of each id */
            if (*c >= 'A' && *c <= 'F')
                *c = (char)(*c - 'A' + 'a');
    } else if (rd_uuid_v4(id) != 0) {
        rd_http_send_rd_error(hr, RD_EIO, "no random source for the task id");
        goto out;
    }
    if (prio != NULL && !rd_limits_int_in(prio, 0, RD_LIMIT_PRIORITY)) {
        rd_http_bad_limit(hr, "priority", RD_LIMIT_PRIORITY,
                          "priority must be an integer from 0 to %d", RD_LIMIT_PRIORITY);
        goto out;
    }
    if (crit != NULL && !json_is_boolean(crit)) {
        rd_http_bad_request(hr, "critical", "critical must be true or false");
        goto out;
    }
    if (req != NULL && !json_is_object(req)) {
        rd_http_bad_request(hr, "requirements", "requirements must be an object");
        goto out;
    }
    if (slots != NULL && (!json_is_integer(slots) || json_integer_value(slots) < 1 ||
                          json_integer_value(slots) > MAX_SLOTS)) {
        rd_http_bad_limit(hr, "requirements.slots", MAX_SLOTS,
                          "requirements.slots must be an integer from 1 to %d", MAX_SLOTS);
        goto out;
    }
    char why[200];
    if (labels != NULL && !rd_limits_labels_ok(labels, why, sizeof(why))) {
        rd_http_bad_limit(hr, "requirements.labels", RD_LIMIT_LABELS, "requirements.%s", why);
        goto out;
    }
    if (maxa != NULL && !rd_limits_int_in(maxa, 1, RD_LIMIT_MAX_ATTEMPTS)) {
        rd_http_bad_limit(hr, "max_attempts", RD_LIMIT_MAX_ATTEMPTS,
                          "max_attempts must be an integer from 1 to %d", RD_LIMIT_MAX_ATTEMPTS);
        goto out;
    }
    if (jdeadline != NULL && !json_is_null(jdeadline) &&
        (!json_is_string(jdeadline) ||
         rd_time_parse(json_string_value(jdeadline), &deadline) != 0 || deadline <= 0)) {
        rd_http_bad_request(hr, "deadline",
                            "deadline must be an RFC 3339 time (2026-11-24T03:04:05Z), or null");
        goto out;
    }
    labels_s = labels ? json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
    payload_s = payload ? json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                        : strdup("{}");
    if (labels_s == NULL || payload_s == NULL) {
        rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
        goto out;
    }
    if (strlen(payload_s) > RD_LIMIT_DOC_BYTES) {
        rd_http_send_error(hr, 413, "too_large",
                           json_pack("{s:s,s:i}", "field", "payload", "limit", RD_LIMIT_DOC_BYTES),
                           "payload of %zu bytes (as compact JSON) is over the limit of %d bytes",
                           strlen(payload_s), RD_LIMIT_DOC_BYTES);
        goto out;
    }
    struct rd_cmd cmd = {.type = RD_CMD_TASK_SUBMIT};
    cmd.u.tsubmit.task_id = RD_STR(id);
    cmd.u.tsubmit.priority = (uint8_t)(prio ? json_integer_value(prio) : 5);
    cmd.u.tsubmit.critical = crit && json_is_true(crit);
    cmd.u.tsubmit.slots = (uint32_t)(slots ? json_integer_value(slots) : 1);
    cmd.u.tsubmit.labels_json = RD_STR(labels_s);
    cmd.u.tsubmit.payload_json = RD_STR(payload_s);
    cmd.u.tsubmit.max_attempts = (uint32_t)(maxa ? json_integer_value(maxa) : 5);
    cmd.u.tsubmit.deadline_ms = deadline;
    rd_http_propose(hr, &cmd, id, strlen(id), submit_done);
out:
    free(labels_s);
    free(payload_s);
    json_decref(body);
}

/* ---- GET /api/v1/tasks/{id}, GET /api/v1/tasks ---------------------------- */

void rd_api_TASK_GET(struct rd_http_req *hr)
{
    const struct rd_task *t = path_task(hr);
    if (t != NULL)
        rd_http_send_json(hr, 200, rd_api_task_json(t));
}

/* The filter `label=KEY=VALUE` as the text its pair is in a task's
 * canonical labels ("KEY":"VALUE"), malloc'd; NULL when malformed. */
static char *label_needle(const char *q)
{
    const char *eq = strchr(q, '=');
    if (eq == NULL || eq == q || eq - q > RD_LIMIT_LABEL_LEN || strlen(eq + 1) > RD_LIMIT_LABEL_LEN)
        return NULL;
    json_t *o = json_object();
    char key[RD_LIMIT_LABEL_LEN + 1];
    snprintf(key, sizeof(key), "%.*s", (int)(eq - q), q);
    json_object_set_new(o, key, json_string(eq + 1));
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL; /* {"KEY":"VALUE"} */
    json_decref(o);
    if (text == NULL)
        return NULL;
    size_t n = strlen(text);
    memmove(text, text + 1, n - 2);
    text[n - 2] = '\0';
    return text;
}

/* True when the canonical labels object `labels` holds the pair `needle`
 * (a whole member: strings in it are escaped, so a match that starts after
 * '{' or ',' and ends before ',' or '}' is one). */
static bool has_label(const char *labels, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = strstr(labels, needle); p != NULL; p = strstr(p + 1, needle))
        if (p > labels && (p[-1] == '{' || p[-1] == ',') && (p[n] == ',' || p[n] == '}'))
            return true;
    return false;
}

void rd_api_TASKS_LIST(struct rd_http_req *hr)
{
    const struct rd_fsm *f = hr->env->fsm;
    int limit = rd_api_list_limit(hr);
    if (limit < 0)
        return;
    int state = -1, prio = -1;
    const char *st = rd_http_query(hr, "state");
    const char *node = rd_http_query(hr, "node_id");
    const char *pq = rd_http_query(hr, "priority");
    const char *lq = rd_http_query(hr, "label");
    const char *cursor = rd_http_query(hr, "cursor");
    if (st != NULL && (state = rd_task_state_parse(st)) < 0) {
        rd_http_bad_request(hr, "state",
                            "state must be pending, assigned, running, recovering, completed, "
                            "failed, cancelled or paused");
        return;
    }
    if (node != NULL && !rd_node_id_valid(node, strlen(node))) {
        rd_http_bad_request(hr, "node_id", "node_id must be 1-255 characters of [A-Za-z0-9._:-]");
        return;
    }
    if (pq != NULL) {
        char *end;
        long v = strtol(pq, &end, 10);
        if (*pq == '\0' || *end != '\0' || v < 0 || v > RD_LIMIT_PRIORITY) {
            rd_http_bad_request(hr, "priority", "priority must be an integer from 0 to 9");
            return;
        }
        prio = (int)v;
    }
    char *needle = NULL;
    if (lq != NULL && (needle = label_needle(lq)) == NULL) {
        rd_http_bad_request(hr, "label",
                            "label must be KEY=VALUE (a 1-%d character key, a value of at most "
                            "%d characters)",
                            RD_LIMIT_LABEL_LEN, RD_LIMIT_LABEL_LEN);
        return;
    }
    if (cursor != NULL && cursor[0] && !rd_uuid_valid(cursor)) {
        free(needle);
        rd_http_bad_request(hr, "cursor", "cursor is not one this server returned");
        return;
    }
    size_t i = cursor && cursor[0] ? rd_fsm_task_after(f, cursor) : 0;
    json_t *items = json_array();
    const struct rd_task *last = NULL;
    bool more = false;
    for (; i < f->n_tasks; i++) {
        const struct rd_task *t = f->tasks[i];
        if ((state >= 0 && t->state != state) || (node && strcmp(node, t->node_id) != 0) ||
            (prio >= 0 && t->priority != prio) || (needle && !has_label(t->labels_json, needle)))
            continue;
        if ((int)json_array_size(items) == limit) {
            more = true;
            break;
        }
        json_array_append_new(items, rd_api_task_json(t));
        last = t;
    }
    free(needle);
    rd_http_send_json(hr, 200,
                      json_pack("{s:o,s:o}", "items", items, "next_cursor",
                                more && last ? json_string(last->id) : json_null()));
}

/* ---- checkpoints ------------------------------------------------------------ */

/* A positive integer field up to `max`; answers 400 itself and returns false. */
static bool positive(struct rd_http_req *hr, json_t *body, const char *key, long long max,
                     uint64_t *out)
{
    json_t *v = json_object_get(body, key);
    if (!rd_limits_int_in(v, 1, max)) {
        rd_http_bad_limit(hr, key, max, "%s must be an integer from 1 to %lld", key, max);
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

void rd_api_TASK_CHECKPOINT_PUT(struct rd_http_req *hr)
{
    const struct rd_task *t = path_task(hr);
    if (t == NULL)
        return;
    json_t *body = rd_http_body_object(hr);
    if (body == NULL)
        return;
    uint64_t attempt, version;
    json_t *data = json_object_get(body, "data");
    char *data_s = NULL;
    const char *writer;
    if (!positive(hr, body, "attempt", RD_LIMIT_ATTEMPT, &attempt) ||
        !positive(hr, body, "version", RD_LIMIT_INT, &version) ||
        (writer = writer_of(hr, body)) == NULL)
        goto out;
    if (data == NULL) {
        rd_http_bad_request(hr, "data", "data is required (any JSON value)");
        goto out;
    }
    data_s = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (data_s == NULL) {
        rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
        goto out;
    }
    size_t len = strlen(data_s);
    if (len > CHECKPOINT_MAX) {
        rd_http_send_error(
            hr, 413, "too_large", json_pack("{s:s,s:i}", "field", "data", "limit", CHECKPOINT_MAX),
            "checkpoint data of %zu bytes is over the limit of %d bytes", len, CHECKPOINT_MAX);
        goto out;
    }
    /* Answer fencing at once when it is already clear; the log re-checks. */
    bool live = t->state == RD_TASK_ASSIGNED || t->state == RD_TASK_RUNNING ||
                t->state == RD_TASK_RECOVERING;
    if (refused_unless_conflict(hr, t, is_conflict(hr->env, t, attempt), attempt, writer))
        goto out;
    if (attempt != t->attempt || !live) {
        if (is_conflict(hr->env, t, attempt))
            propose_conflict(hr, t, RD_CONFLICT_CHECKPOINT, attempt, version, data_s, len, writer);
        else
            send_fenced(hr, t, (unsigned long long)attempt);
        goto out;
    }
    struct rd_cmd cmd = {.type = RD_CMD_TASK_CHECKPOINT};
    cmd.u.tckpt.task_id = RD_STR(t->id);
    cmd.u.tckpt.attempt = (uint32_t)attempt;
    cmd.u.tckpt.version = version;
    cmd.u.tckpt.data_json = (struct rd_str){data_s, (uint32_t)len};
    cmd.u.tckpt.checksum = rd_checkpoint_checksum(data_s, len);
    cmd.u.tckpt.keep = RD_TASK_KEEP;
    rd_http_propose(hr, &cmd, t->id, strlen(t->id), checkpoint_done);
out:
    free(data_s);
    json_decref(body);
}

/* The task's newest checkpoint, as GET .../checkpoint answers it. */
static void send_checkpoint(struct rd_http_req *hr, const struct rd_task *t)
{
    const struct rd_checkpoint *c = rd_task_checkpoint(t);
    if (c == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL, "task %s has no checkpoint", t->id);
        return;
    }
    char at[RD_TIME_STRLEN], sum[32];
    rd_time_format(c->at, at);
    checksum_text(c->checksum, sum);
    rd_http_send_json(hr, 200,
                      json_pack("{s:I,s:o,s:s,s:s,s:I}", "version", (json_int_t)c->version, "data",
                                json_or_null(c->data), "checksum", sum, "updated_at", at, "attempt",
                                (json_int_t)t->attempt));
}

/* The repair of a checkpoint that failed its checksum ended. */
static void checkpoint_repaired(void *data, int status)
{
    struct rd_http_pending *p = data;
    if (rd_http_pending_alive(p)) {
        const struct rd_task *t = rd_fsm_task(p->hr.env->fsm, p->key);
        if (t == NULL)
            rd_http_send_error(&p->hr, 404, "not_found", NULL, "no task %s", p->key);
        else if (status == 0 || status == RD_ECONFLICT) /* repaired, or moved on */
            send_checkpoint(&p->hr, t);
        else if (status == RD_ECORRUPT)
            rd_http_send_error(&p->hr, 404, "not_found", NULL,
                               "task %s has no checkpoint that verifies: version %llu failed its "
                               "checksum and no older version or backup holds a good copy (a "
                               "data_corruption fault records it); the task starts over",
                               t->id, (unsigned long long)rd_task_checkpoint(t)->version);
        else
            rd_http_send_rd_error(&p->hr, status, "the damaged checkpoint could not be repaired");
    }
    rd_http_pending_done(p);
}

void rd_api_TASK_CHECKPOINT_GET(struct rd_http_req *hr)
{
    const struct rd_task *t = path_task(hr);
    if (t == NULL)
        return;
    const struct rd_checkpoint *c = rd_task_checkpoint(t);
    /* One that fails its checksum is repaired first (on the leader: a
     * stale read elsewhere shows what that replica holds). */
    if (c == NULL || rd_checkpoint_verifies(c) || !rd_replica_is_leader(hr->env->replica)) {
        send_checkpoint(hr, t);
        return;
    }
    struct rd_http_pending *p = rd_http_defer(hr);
    if (p == NULL) {
        rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
        return;
    }
    snprintf(p->key, sizeof(p->key), "%s", t->id);
    int rv = rd_sched_repair_checkpoint(hr->env->sched, t->id, checkpoint_repaired, p);
    if (rv != 1) /* no repair runs: its outcome now */
        checkpoint_repaired(p, rv);
}

/* ---- complete, fail ---------------------------------------------------------- */

static void finish(struct rd_http_req *hr, bool complete)
{
    const struct rd_task *t = path_task(hr);
    if (t == NULL)
        return;
    json_t *body = rd_http_body_object(hr);
    if (body == NULL)
        return;
    uint64_t attempt;
    char *text = NULL;
    const char *writer;
    if (!positive(hr, body, "attempt", RD_LIMIT_ATTEMPT, &attempt) ||
        (writer = writer_of(hr, body)) == NULL)
        goto out;
    int to;
    if (complete) {
        json_t *res = json_object_get(body, "result");
        text =
            res ? json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("{}");
        to = RD_TASK_COMPLETED;
    } else {
        json_t *err = json_object_get(body, "error");
        json_t *retry = json_object_get(body, "retryable");
        if (err == NULL || !json_is_string(err)) {
            rd_http_bad_request(hr, "error", "error must be a string saying what went wrong");
            goto out;
        }
        if (json_string_length(err) > RD_LIMIT_ERROR_LEN) {
            rd_http_bad_limit(hr, "error", RD_LIMIT_ERROR_LEN,
                              "error must be at most %d characters", RD_LIMIT_ERROR_LEN);
            goto out;
        }
        if (retry != NULL && !json_is_boolean(retry)) {
            rd_http_bad_request(hr, "retryable", "retryable must be true or false");
            goto out;
        }
        text = strdup(json_string_value(err));
        to = retry && json_is_true(retry) ? RD_TASK_PENDING : RD_TASK_FAILED;
    }
    if (text == NULL || strlen(text) > CHECKPOINT_MAX) {
        rd_http_send_error(hr, 413, "too_large",
                           json_pack("{s:s,s:i}", "field", "result", "limit", CHECKPOINT_MAX),
                           "the result is over the limit of %d bytes (as compact JSON)",
                           CHECKPOINT_MAX);
        goto out;
    }
    /* Availability mode: what consistency would refuse as fenced (a
     * superseded attempt, a cancelled task) is a conflict; an attempt the
     * task never had is fenced at once, so that one the log fences later
     * can only have moved meanwhile (moved_meanwhile). */
    bool conflict =
        is_conflict(hr->env, t, attempt) && (attempt < t->attempt || t->state == RD_TASK_CANCELLED);
    if (refused_unless_conflict(hr, t, conflict, attempt, writer))
        goto out;
    if (conflict) {
        propose_conflict(hr, t, complete ? RD_CONFLICT_COMPLETE : RD_CONFLICT_FAIL, attempt, 0,
                         text, strlen(text), writer);
        goto out;
    }
    if (availability(hr->env) && attempt > t->attempt) {
        send_fenced(hr, t, (unsigned long long)attempt);
        goto out;
    }
    struct rd_cmd cmd = {.type = RD_CMD_TASK_FINISH};
    cmd.u.tfinish.task_id = RD_STR(t->id);
    cmd.u.tfinish.attempt = (uint32_t)attempt;
    cmd.u.tfinish.state = (uint8_t)to;
    cmd.u.tfinish.result_json = RD_STR(text);
    rd_http_propose(hr, &cmd, t->id, strlen(t->id), finish_done);
out:
    free(text);
    json_decref(body);
}

void rd_api_TASK_COMPLETE(struct rd_http_req *hr)
{
    finish(hr, true);
}

void rd_api_TASK_FAIL(struct rd_http_req *hr)
{
    finish(hr, false);
}

/* ---- cancel, retry (operators) ---------------------------------------------- */

static void lifecycle_done(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    (void)value;
    if (rd_http_pending_alive(p)) {
        const struct rd_task *t = rd_fsm_task(p->hr.env->fsm, p->key);
        bool retry = p->hr.route == RD_ROUTE_TASK_RETRY;
        if (status == RD_ECONFLICT && t != NULL) {
            const char *state = rd_task_state_name(t->state);
            json_t *d = json_pack("{s:s}", "state", state);
            if (retry)
                rd_http_send_error(&p->hr, 409, "conflict", d,
                                   "task %s is %s: only a failed task (a quarantined poison task "
                                   "too) can be retried",
                                   t->id, state);
            else
                rd_http_send_error(&p->hr, 409, "conflict", d,
                                   "task %s is already %s: a finished task cannot be cancelled",
                                   t->id, state);
        } else {
            answer_task(p, status, 200);
        }
    }
    if (status == 0)
        rd_sched_kick(p->hr.env->sched);
    rd_http_pending_done(p);
}

static void lifecycle(struct rd_http_req *hr, int op)
{
    const struct rd_task *t = path_task(hr);
    if (t == NULL)
        return;
    char reason[700] = "", dflt[160];
    snprintf(dflt, sizeof(dflt), "cancelled by %s", hr->who.id[0] ? hr->who.id : "an operator");
    if (op == RD_TASK_OP_CANCEL && !rd_api_operator_reason(hr, reason, sizeof(reason), dflt))
        return;
    struct rd_cmd cmd = {.type = RD_CMD_TASK_LIFECYCLE};
    cmd.u.tlife.op = (uint8_t)op;
    cmd.u.tlife.task_id = RD_STR(t->id);
    cmd.u.tlife.reason = RD_STR(reason);
    rd_http_propose(hr, &cmd, t->id, strlen(t->id), lifecycle_done);
}

void rd_api_TASK_CANCEL(struct rd_http_req *hr)
{
    lifecycle(hr, RD_TASK_OP_CANCEL);
}

void rd_api_TASK_RETRY(struct rd_http_req *hr)
{
    lifecycle(hr, RD_TASK_OP_RETRY);
}
