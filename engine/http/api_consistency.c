/* Consistency checks: POST /api/v1/consistency/check, the records, and this
 * replica's own digest at a check (what the leader gathers). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "consistency/consistency.h"
#include "fsm/fsm.h"
#include "http.h"
#include "recoveryd/error.h"

static json_t *time_or_null(int64_t ms)
{
    char buf[RD_TIME_STRLEN];
    if (ms == 0)
        return json_null();
    rd_time_format(ms, buf);
    return json_string(buf);
}

/* Replicas repaired after each check: its data_corruption faults, resolved,
 * by check_id (one scan of the faults for a whole page of checks). */
static json_t *repaired_by_check(const struct rd_fsm *f)
{
    json_t *out = json_object();
    for (size_t i = 0; i < f->n_faults; i++) {
        const struct rd_fault *x = f->faults[i];
        if (x->type != RD_FAULT_DATA_CORRUPTION || x->status != RD_FAULT_RESOLVED)
            continue;
        json_t *m = json_loads(x->metadata_json, 0, NULL);
        const char *cid = json_string_value(json_object_get(m, "check_id"));
        json_t *rid = json_object_get(m, "replica_id");
        if (cid != NULL && json_is_integer(rid)) {
            json_t *list = json_object_get(out, cid);
            if (list == NULL) {
                list = json_array();
                json_object_set_new(out, cid, list);
            }
            json_array_append(list, rid);
        }
        json_decref(m);
    }
    return out;
}

static json_t *check_json(const struct rd_check *c, json_t *repaired)
{
    json_t *digests = c->digests_json ? json_loads(c->digests_json, 0, NULL) : NULL;
    json_t *diverged = c->diverged_json ? json_loads(c->diverged_json, 0, NULL) : NULL;
    json_t *mine = json_object_get(repaired, c->id);
    return json_pack("{s:s,s:I,s:s,s:o,s:o,s:o,s:o,s:o}", "check_id", c->id, "index",
                     (json_int_t)c->index, "status", rd_check_status_name(c->status), "started_at",
                     time_or_null(c->started_at_ms), "completed_at",
                     time_or_null(c->completed_at_ms), "digests", digests ? digests : json_object(),
                     "diverged", diverged ? diverged : json_array(), "repaired",
                     mine ? json_incref(mine) : json_array());
}

static void triggered(void *data, int status, const char *id, uint64_t index)
{
    struct rd_http_pending *p = data;
    if (rd_http_pending_alive(p)) {
        if (status == 0)
            rd_http_send_json(&p->hr, 202,
                              json_pack("{s:s,s:I,s:s}", "check_id", id, "index", (json_int_t)index,
                                        "status", "pending"));
        else
            rd_http_send_rd_error(&p->hr, status, NULL);
    }
    rd_http_pending_done(p);
}

void rd_api_CONSISTENCY_CHECK(struct rd_http_req *hr)
{
    struct rd_http_pending *p = rd_http_defer(hr);
    if (p == NULL) {
        rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
        return;
    }
    int rv = rd_consistency_trigger(hr->env->consistency, triggered, p);
    if (rv == RD_ECONFLICT)
        rd_http_send_error(&p->hr, 409, "conflict", NULL,
                           "a consistency check is being committed; retry, or find it in "
                           "GET /api/v1/consistency/checks shortly");
    else if (rv != 0)
        rd_http_send_rd_error(&p->hr, rv, NULL);
    if (rv != 0)
        rd_http_pending_done(p);
}

/* Checks, newest first: ?status= filters, ?limit= (1-1000, 100), ?cursor=
 * the check_id of the last check of the previous page. */
void rd_api_CONSISTENCY_CHECKS(struct rd_http_req *hr)
{
    const struct rd_fsm *f = hr->env->fsm;
    const char *status = rd_http_query(hr, "status"), *cursor = rd_http_query(hr, "cursor");
    int limit = rd_api_list_limit(hr);
    if (limit < 0)
        return;
    size_t n = 0;
    const struct rd_check *const *all = rd_fsm_checks(f, &n);
    size_t i = n;
    if (cursor != NULL && cursor[0] != '\0') {
        if (!rd_uuid_valid(cursor)) {
            rd_http_bad_request(hr, "cursor", "cursor is not one this server returned");
            return;
        }
        size_t at = 0;
        while (at < n && strcmp(all[at]->id, cursor) != 0)
            at++;
        i = at < n ? at : 0;
    }
    json_t *items = json_array(), *repaired = repaired_by_check(f);
    const char *last = NULL;
    bool more = false;
    while (i-- > 0) {
        if (status && strcmp(status, rd_check_status_name(all[i]->status)) != 0)
            continue;
        if ((int)json_array_size(items) == limit) {
            more = true;
            break;
        }
        json_array_append_new(items, check_json(all[i], repaired));
        last = all[i]->id;
    }
    json_decref(repaired);
    rd_http_send_json(hr, 200,
                      json_pack("{s:o,s:o}", "items", items, "next_cursor",
                                more ? json_string(last) : json_null()));
}

static bool param_id(struct rd_http_req *hr, char *buf, size_t n)
{
    h2o_iovec_t id = hr->params[0];
    if (id.len == 0 || id.len >= n) {
        rd_http_send_error(hr, 404, "not_found", NULL, "no consistency check %.*s", (int)id.len,
                           id.base);
        return false;
    }
    memcpy(buf, id.base, id.len);
    buf[id.len] = '\0';
    return true;
}

void rd_api_CONSISTENCY_CHECK_GET(struct rd_http_req *hr)
{
    char id[80];
    if (!param_id(hr, id, sizeof(id)))
        return;
    const struct rd_check *c = rd_fsm_check_find(hr->env->fsm, id);
    if (c == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL, "no consistency check %s", id);
        return;
    }
    json_t *repaired = repaired_by_check(hr->env->fsm);
    rd_http_send_json(hr, 200, check_json(c, repaired));
    json_decref(repaired);
}

/* Served by every replica from what it applied: its own digest at the
 * check's index (404 until it applied the check). */
void rd_api_CONSISTENCY_LOCAL(struct rd_http_req *hr)
{
    char id[80], hex[17];
    if (!param_id(hr, id, sizeof(id)))
        return;
    const struct rd_check_local *l = rd_fsm_check_local(hr->env->fsm, id);
    if (l == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL,
                           "replica %llu has not applied consistency check %s (yet)",
                           (unsigned long long)hr->env->cfg->cluster.replica_id, id);
        return;
    }
    snprintf(hex, sizeof(hex), "%016" PRIx64, l->digest);
    rd_http_send_json(hr, 200,
                      json_pack("{s:I,s:s,s:I,s:s}", "replica_id",
                                (json_int_t)hr->env->cfg->cluster.replica_id, "check_id", l->id,
                                "index", (json_int_t)l->index, "digest", hex));
}
