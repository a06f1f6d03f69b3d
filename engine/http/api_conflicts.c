/*
 * Conflict records (issue 17, availability mode): GET /api/v1/conflicts and
 * GET /api/v1/conflicts/{id}. Records live in the state machine
 * (fsm/conflicts.c), so every replica serves the same ones. Oldest first;
 * filters task_id, resolution, since (RFC 3339, inclusive); ?limit= (1-1000,
 * 100); ?cursor= the seq of the last record of the previous page
 * (next_cursor). Role: reader.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "fsm/fsm.h"
#include "http.h"

static json_t *text_or_null(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

json_t *rd_api_conflict_json(const struct rd_conflict *c)
{
    char at[RD_TIME_STRLEN];
    rd_time_format(c->at, at);
    /* What was written: a checkpoint's data and a result as the JSON they
     * were, an error as its text. */
    json_t *data = c->kind == RD_CONFLICT_FAIL ? json_string(c->data)
                                               : json_loads(c->data, JSON_DECODE_ANY, NULL);
    return json_pack("{s:s,s:I,s:s,s:I,s:I,s:s,s:o,s:I,s:o,s:o,s:s,s:b,s:s,s:s,s:o,s:s}",
                     "conflict_id", c->id, "seq", (json_int_t)c->seq, "task_id", c->task_id,
                     "attempt", (json_int_t)c->attempt, "task_attempt", (json_int_t)c->task_attempt,
                     "kind", rd_conflict_kind_name(c->kind), "version",
                     c->kind == RD_CONFLICT_CHECKPOINT ? json_integer((json_int_t)c->version)
                                                       : json_null(),
                     "stored_version", (json_int_t)c->stored_version, "node_id",
                     text_or_null(c->node_id), "task_node_id", text_or_null(c->task_node_id),
                     "resolution", rd_conflict_res_name(c->resolution), "adopted", c->adopted,
                     "reason", c->reason, "resolved_by", rd_conflict_by_name(c->resolved_by),
                     "data", data ? data : json_string(c->data), "at", at);
}

void rd_api_CONFLICTS_LIST(struct rd_http_req *hr)
{
    const struct rd_fsm *f = hr->env->fsm;
    int limit = rd_api_list_limit(hr);
    if (limit < 0)
        return;
    const char *task = rd_http_query(hr, "task_id");
    const char *rq = rd_http_query(hr, "resolution");
    const char *sq = rd_http_query(hr, "since");
    int res = -1;
    int64_t since = INT64_MIN;
    if (task != NULL && !rd_uuid_valid(task)) {
        rd_http_bad_request(hr, "task_id", "task_id must be a UUID");
        return;
    }
    if (rq != NULL && (res = rd_conflict_res_parse(rq)) < 0) {
        rd_http_bad_request(hr, "resolution",
                            "resolution must be keep_newer, keep_progress or fail_task");
        return;
    }
    if (sq != NULL && rd_time_parse(sq, &since) != 0) {
        rd_http_bad_request(hr, "since",
                            "since must be an RFC 3339 time like 2026-11-24T03:04:05Z");
        return;
    }
    uint64_t seq;
    if (!rd_api_seq_cursor(hr, &seq))
        return;
    size_t n;
    const struct rd_conflict *const *cs = rd_fsm_conflicts(f, &n);
    /* After the cursor's record (pruned since: from the oldest left). */
    size_t i = seq ? rd_fsm_conflict_index(f, seq + 1) : 0;
    json_t *items = json_array();
    uint64_t last = 0;
    bool more = false;
    for (; i < n; i++) {
        const struct rd_conflict *c = cs[i];
        if ((task && strcmp(task, c->task_id) != 0) || (res >= 0 && c->resolution != res) ||
            c->at < since)
            continue;
        if ((int)json_array_size(items) == limit) {
            more = true;
            break;
        }
        json_array_append_new(items, rd_api_conflict_json(c));
        last = c->seq;
    }
    rd_api_send_seq_page(hr, items, more, last);
}

void rd_api_CONFLICT_GET(struct rd_http_req *hr)
{
    h2o_iovec_t id = hr->params[0];
    char buf[40];
    if (id.len >= sizeof(buf) || (memcpy(buf, id.base, id.len), buf[id.len] = '\0', 0) ||
        !rd_uuid_valid(buf)) {
        rd_http_bad_request(hr, "conflict_id", "conflict_id must be a UUID");
        return;
    }
    const struct rd_conflict *c = rd_fsm_conflict_find(hr->env->fsm, buf);
    if (c == NULL)
        rd_http_send_error(hr, 404, "not_found", NULL,
                           "no conflict %s (never recorded, or pruned with its task or past the "
                           "newest %d)",
                           buf, RD_FSM_MAX_CONFLICTS);
    else
        rd_http_send_json(hr, 200, rd_api_conflict_json(c));
}
