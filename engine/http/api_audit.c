/*
 * The audit trail (issue 12): GET /api/v1/audit. Records live in the state
 * machine (fsm/audit.c), so every replica and every new leader serves the
 * same trail. Newest first by default (?order=asc: oldest first); filters
 * principal, action, target (exact), since and until (RFC 3339, inclusive);
 * ?limit= (1-1000, 100); ?cursor= the seq of the last record of the
 * previous page (next_cursor). Role: reader (docs/security.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "fsm/fsm.h"
#include "http.h"

static const char *role_name(int role)
{
    static const char *const names[] = {"none", "agent", "reader", "operator", "admin"};
    return role >= 0 && role < (int)RD_ARRAY_SIZE(names) ? names[role] : "unknown";
}

static json_t *opt_string(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

static json_t *audit_json(const struct rd_audit *a)
{
    char at[RD_TIME_STRLEN];
    rd_time_format(a->at_ms, at);
    return json_pack("{s:I,s:s,s:s,s:s,s:o,s:o,s:s,s:o,s:{s:i,s:o},s:o,s:o}", "seq",
                     (json_int_t)a->seq, "time", at, "principal", a->principal, "role",
                     role_name(a->role), "source", opt_string(a->source), "method",
                     opt_string(a->method), "action", a->action, "target", opt_string(a->target),
                     "outcome", "status", (int)a->status, "error", opt_string(a->error),
                     "request_id", opt_string(a->request_id), "cause", opt_string(a->cause));
}

/* A filter's value: NULL when absent; answers 400 and sets *bad when too long. */
static const char *filter(struct rd_http_req *hr, const char *name, size_t max, bool *bad)
{
    const char *v = rd_http_query(hr, name);
    if (v != NULL && (v[0] == '\0' || strlen(v) > max)) {
        rd_http_bad_request(hr, name, "%s must be 1 to %zu characters", name, max);
        *bad = true;
        return NULL;
    }
    return v;
}

static bool time_filter(struct rd_http_req *hr, const char *name, int64_t *ms)
{
    const char *v = rd_http_query(hr, name);
    if (v == NULL)
        return true;
    if (rd_time_parse(v, ms) != 0) {
        rd_http_bad_request(hr, name, "%s must be an RFC 3339 time like 2026-11-24T03:04:05Z",
                            name);
        return false;
    }
    return true;
}

void rd_api_AUDIT_LIST(struct rd_http_req *hr)
{
    const struct rd_fsm *f = hr->env->fsm;
    int limit = rd_api_list_limit(hr);
    if (limit < 0)
        return;
    bool bad = false;
    const char *principal = filter(hr, "principal", RD_AUDIT_PRINCIPAL_MAX, &bad);
    const char *action = bad ? NULL : filter(hr, "action", RD_AUDIT_ACTION_MAX, &bad);
    const char *target = bad ? NULL : filter(hr, "target", RD_AUDIT_TARGET_MAX, &bad);
    if (bad)
        return;
    int64_t since = INT64_MIN, until = INT64_MAX;
    if (!time_filter(hr, "since", &since) || !time_filter(hr, "until", &until))
        return;
    const char *order = rd_http_query(hr, "order");
    bool asc = false;
    if (order != NULL && strcmp(order, "asc") == 0)
        asc = true;
    else if (order != NULL && strcmp(order, "desc") != 0) {
        rd_http_bad_request(hr, "order", "order must be desc (newest first) or asc");
        return;
    }
    size_t n;
    const struct rd_audit *const *recs = rd_fsm_audits(f, &n);
    /* i: the next position to look at (asc), or one past it (desc). */
    size_t i = asc ? 0 : n;
    uint64_t seq;
    if (!rd_api_seq_cursor(hr, &seq))
        return;
    /* Records pruned since the cursor was handed out: the page starts at
     * the oldest left (asc) or ends there (desc). */
    if (seq != 0)
        i = asc ? rd_fsm_audit_index(f, seq + 1) : rd_fsm_audit_index(f, seq);
    json_t *items = json_array();
    uint64_t last = 0;
    bool more = false;
    while (asc ? i < n : i > 0) {
        const struct rd_audit *a = asc ? recs[i++] : recs[--i];
        if (a->at_ms < since || a->at_ms > until ||
            (principal && strcmp(principal, a->principal)) ||
            (action && strcmp(action, a->action)) || (target && strcmp(target, a->target)))
            continue;
        if ((int)json_array_size(items) == limit) {
            more = true;
            break;
        }
        json_array_append_new(items, audit_json(a));
        last = a->seq;
    }
    rd_api_send_seq_page(hr, items, more, last);
}
