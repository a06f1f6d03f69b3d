/* Backups: triggers, records, verification (docs/backup.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup/backup.h"
#include "common/util.h"
#include "fsm/fsm.h"
#include "http.h"
#include "input_limits.h"
#include "recoveryd/error.h"

static json_t *time_or_null(int64_t ms)
{
    char buf[RD_TIME_STRLEN];
    if (ms == 0)
        return json_null();
    rd_time_format(ms, buf);
    return json_string(buf);
}

static json_t *hex_or_null(uint64_t v, bool known)
{
    char buf[17];
    if (!known)
        return json_null();
    rd_backup_hex16(v, buf);
    return json_string(buf);
}

/* A backup record as the API shows it (API.md). */
static json_t *backup_json(const struct rd_backup *r)
{
    bool done = r->status == RD_BACKUP_COMPLETED;
    json_t *verified = r->verify_ok < 0 ? json_null() : json_boolean(r->verify_ok == 1);
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:s?}", "backup_id", r->id,
                     "target", r->target, "status", rd_backup_status_name(r->status), "index",
                     done ? json_integer((json_int_t)r->index) : json_null(), "term",
                     done ? json_integer((json_int_t)r->term) : json_null(), "size",
                     done ? json_integer((json_int_t)r->size) : json_null(), "checksum",
                     hex_or_null(r->checksum, done), "digest", hex_or_null(r->digest, done),
                     "started_at", time_or_null(r->started_at_ms), "completed_at",
                     time_or_null(r->status == RD_BACKUP_RUNNING ? 0 : r->completed_at_ms),
                     "verified_at", time_or_null(r->verified_at_ms), "verified", verified, "error",
                     r->error);
}

/* The path's backup id, or NULL after answering 400 (on the request's pool). */
static const char *backup_id_param(struct rd_http_req *hr)
{
    h2o_iovec_t id = hr->params[0];
    char *s = h2o_mem_alloc_pool(&hr->req->pool, id.len + 1);
    memcpy(s, id.base, id.len);
    s[id.len] = '\0';
    if (!rd_uuid_valid(s)) {
        rd_http_bad_request(hr, "backup_id", "a backup id is a UUID, got '%s'", s);
        return NULL;
    }
    return s;
}

void rd_api_BACKUP_TRIGGER(struct rd_http_req *hr)
{
    const char *target = NULL;
    json_t *body = NULL;
    /* The body is optional: no body (or {}) backs up to every target. */
    if (hr->req->entity.base != NULL && hr->req->entity.len > 0) {
        if ((body = rd_http_body_object(hr)) == NULL)
            return;
        json_t *jt = json_object_get(body, "target");
        if (jt != NULL && !json_is_null(jt) &&
            ((target = json_string_value(jt)) == NULL ||
             json_string_length(jt) > RD_LIMIT_NAME_LEN)) {
            rd_http_bad_limit(hr, "target", RD_LIMIT_NAME_LEN,
                              "target must be the name of a backup target (at most %d characters)",
                              RD_LIMIT_NAME_LEN);
            json_decref(body);
            return;
        }
    }
    struct rd_backups *b = hr->env->backups;
    struct rd_backup_started st;
    int rv = rd_backup_trigger(b, target, &st);
    if (rv == RD_ENOTFOUND) {
        rd_http_bad_request(hr, "target", "%s", b->errmsg);
    } else if (rv == RD_ECONFLICT) {
        rd_http_send_error(hr, 409, "conflict", json_pack("{s:i}", "targets", 0), "%s", b->errmsg);
    } else if (rv != 0) {
        rd_http_send_rd_error(hr, rv, b->errmsg);
    } else {
        /* The trail names the backup (when the first BEGIN did not carry it). */
        snprintf(hr->audit_target, sizeof(hr->audit_target), "%s", st.ids[0]);
        json_t *ids = json_array(), *targets = json_array();
        for (unsigned i = 0; i < st.n; i++) {
            json_array_append_new(ids, json_string(st.ids[i]));
            json_array_append_new(targets, json_string(st.targets[i]));
        }
        rd_http_send_json(hr, 202,
                          json_pack("{s:s,s:s,s:f,s:o,s:o,s:b}", "backup_id", st.ids[0], "status",
                                    "initiated", "estimated_time", st.estimated_s, "backup_ids",
                                    ids, "targets", targets, "queued", st.queued));
    }
    json_decref(body);
}

/* Records, newest first: ?status= and ?target= filter, ?limit= (1-1000,
 * 100), ?cursor= the backup_id of the last record of the previous page. */
void rd_api_BACKUPS_LIST(struct rd_http_req *hr)
{
    const struct rd_fsm *f = hr->env->fsm;
    const char *status = rd_http_query(hr, "status"), *target = rd_http_query(hr, "target"),
               *cursor = rd_http_query(hr, "cursor");
    int limit = rd_api_list_limit(hr);
    if (limit < 0)
        return;
    if (status != NULL && strcmp(status, "running") != 0 && strcmp(status, "completed") != 0 &&
        strcmp(status, "failed") != 0) {
        rd_http_bad_request(hr, "status", "status must be running, completed or failed");
        return;
    }
    size_t n;
    const struct rd_backup *const *recs = rd_fsm_backups(f, &n);
    size_t i = n;
    if (cursor != NULL && cursor[0] != '\0') {
        if (!rd_uuid_valid(cursor)) {
            rd_http_bad_request(hr, "cursor", "cursor is not one this server returned");
            return;
        }
        /* Records are kept in the order they began; one removed since the
         * cursor was handed out had nothing older after it. */
        size_t at = 0;
        while (at < n && strcmp(recs[at]->id, cursor) != 0)
            at++;
        i = at < n ? at : 0;
    }
    json_t *items = json_array();
    const char *last = NULL;
    bool more = false;
    while (i-- > 0) {
        const struct rd_backup *r = recs[i];
        if ((status && strcmp(status, rd_backup_status_name(r->status)) != 0) ||
            (target && strcmp(target, r->target) != 0))
            continue;
        if ((int)json_array_size(items) == limit) {
            more = true;
            break;
        }
        json_array_append_new(items, backup_json(r));
        last = r->id;
    }
    rd_http_send_json(hr, 200,
                      json_pack("{s:o,s:o}", "items", items, "next_cursor",
                                more ? json_string(last) : json_null()));
}

void rd_api_BACKUP_GET(struct rd_http_req *hr)
{
    const char *id = backup_id_param(hr);
    if (id == NULL)
        return;
    const struct rd_backup *r = rd_fsm_backup_find(hr->env->fsm, id);
    if (r == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL, "no backup %s", id);
        return;
    }
    rd_http_send_json(hr, 200, backup_json(r));
}

static void verified(void *data, int status, const struct rd_backup *rec, const char *detail)
{
    struct rd_http_pending *p = data;
    if (rd_http_pending_alive(p)) {
        if (status == 0 && rec != NULL)
            rd_http_send_json(&p->hr, 200, backup_json(rec));
        else if (status == 0)
            rd_http_send_error(&p->hr, 404, "not_found", NULL,
                               "backup %s was removed while it was verified", p->key);
        else
            rd_http_send_rd_error(&p->hr, status, detail);
    }
    rd_http_pending_done(p);
}

void rd_api_BACKUP_VERIFY(struct rd_http_req *hr)
{
    const char *id = backup_id_param(hr);
    if (id == NULL)
        return;
    struct rd_backups *b = hr->env->backups;
    struct rd_http_pending *p = rd_http_defer(hr);
    if (p == NULL) {
        rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
        return;
    }
    snprintf(p->key, sizeof(p->key), "%s", id);
    int rv = rd_backup_verify(b, id, verified, p);
    if (rv != 0) {
        rd_http_send_rd_error(&p->hr, rv, b->errmsg);
        rd_http_pending_done(p);
    }
}
