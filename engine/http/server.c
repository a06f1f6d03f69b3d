#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "cluster/cluster.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "fsm/fsm.h"
#include "fsm/tasks.h"
#include "plugin/host.h"
#include "policy/policy.h"
#include "recover/sched.h"
#include "registry/registry.h"
#include "replica/replica.h"
#include "http.h"
#include "http/auth.h"
#include "input_limits.h"
#include "recoveryd/error.h"

/* h2o buffers a request body up to this many times our limit, so bodies a
 * little over the limit get our JSON 413 on HTTP/2 too (h2o itself resets an
 * HTTP/2 stream over its own limit, which clients retry). */
#define H2O_BODY_FACTOR 8

struct route_def {
    const char *method;
    const char *pattern;
    const char *name;
    void (*fn)(struct rd_http_req *);
    enum rd_access access;
    const char *segs[8];
    int n_segs;
};

static struct route_def routes[] = {
#define RD__ROUTE_DEF(id, method, pattern, name, access)                                           \
    {method, pattern, name, rd_api_##id, RD_ACCESS_##access, {0}, 0},
    RD_ROUTE_LIST(RD__ROUTE_DEF)
#undef RD__ROUTE_DEF
};

static char route_seg_store[1024];

static void routes_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    size_t off = 0;
    for (size_t i = 0; i < RD_ARRAY_SIZE(routes); i++) {
        struct route_def *r = &routes[i];
        const char *p = r->pattern + 1;
        while (*p && r->n_segs < 8) {
            const char *e = strchr(p, '/');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            memcpy(route_seg_store + off, p, n);
            route_seg_store[off + n] = '\0';
            r->segs[r->n_segs++] = route_seg_store + off;
            off += n + 1;
            p += n + (e ? 1 : 0);
        }
    }
}

static const int status_slots[RD_STATUS_SLOTS - 1] = {200, 201, 202, 204, 307, 400, 401, 403, 404,
                                                      405, 409, 413, 415, 429, 500, 503, 504, 507};

static int status_slot(int status)
{
    for (int i = 0; i < RD_STATUS_SLOTS - 1; i++)
        if (status_slots[i] == status)
            return i;
    return RD_STATUS_SLOTS - 1;
}

int rd_http_status_of_slot(int slot)
{
    return slot < RD_STATUS_SLOTS - 1 ? status_slots[slot] : 0;
}

const char *rd_http_route_name(int route)
{
    return route < (int)RD_ARRAY_SIZE(routes) ? routes[route].name : "unmatched";
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 307:
        return "Temporary Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    case 507:
        return "Insufficient Storage";
    default:
        return "Internal Server Error";
    }
}

/* ---- the audit trail ----------------------------------------------------- */

/* Denials recorded alone per second, at most (the rest are counted). */
#define RD_HTTP_AUDIT_DENIALS_PER_SECOND 100

bool rd_http_route_audited(int route)
{
    if (route < 0 || route >= (int)RD_ARRAY_SIZE(routes))
        return false;
    if (route == RD_ROUTE_NODE_HEARTBEAT || route == RD_ROUTE_TASK_CHECKPOINT_PUT)
        return false;
    return strcmp(routes[route].method, "GET") != 0;
}

/* The status a route answers when its change applied. */
static int success_status(int route)
{
    switch (route) {
    case RD_ROUTE_NODES_REGISTER:
    case RD_ROUTE_TASKS_SUBMIT:
        return 201;
    case RD_ROUTE_RECOVERY_TRIGGER:
    case RD_ROUTE_BACKUP_TRIGGER:
    case RD_ROUTE_CONSISTENCY_CHECK:
        return 202;
    default:
        return 200;
    }
}

static void who_details(struct rd_http_req *hr);

void rd_http_audit_part(struct rd_http_req *hr, struct rd_cmd_audit *a, const char *target,
                        int status)
{
    who_details(hr);
    size_t tlen = strlen(target);
    *a = (struct rd_cmd_audit){
        .present = 1,
        .principal = RD_STR(hr->who.id[0] ? hr->who.id : "anonymous"),
        .role = (uint8_t)hr->who.role,
        .source = RD_STR(hr->who.source),
        .method = RD_STR(routes[hr->route].method),
        .action = RD_STR(routes[hr->route].name),
        .target = {target, (uint32_t)(tlen > RD_AUDIT_TARGET_MAX ? RD_AUDIT_TARGET_MAX : tlen)},
        .status = (uint16_t)status,
        .error = RD_STR(hr->audit_error),
        .request_id = RD_STR(hr->who.request_id),
        .cause = RD_STR(""),
    };
}

static void audit_noted(void *data, int status, uint64_t value)
{
    (void)data;
    (void)status;
    (void)value;
}

/*
 * At the answer: a request whose record did not go with a change (a denial,
 * a failure, an answer with nothing to change, an action that is no log
 * command) is recorded alone. Redirects and answers that say this replica
 * cannot write are not: the leader records the request it serves.
 */
static void audit_answer(struct rd_http_req *hr, int status)
{
    if (hr->audited || hr->route >= (int)RD_ARRAY_SIZE(routes))
        return;
    if (!rd_http_route_audited(hr->route) && status != 401 && status != 403)
        return;
    hr->audited = true;
    if (status == 307 || status == 503 || status == 507)
        return;
    struct rd_http *http = hr->env->http;
    if (status == 401 || status == 403) {
        uint64_t second = rd_mono_ns() / 1000000000ULL;
        if (second != http->audit_denials_second) {
            http->audit_denials_second = second;
            http->audit_denials_in_second = 0;
        }
        if (++http->audit_denials_in_second > RD_HTTP_AUDIT_DENIALS_PER_SECOND) {
            http->audit_denials_suppressed++;
            return;
        }
    }
    struct rd_cmd cmd = {.type = RD_CMD_AUDIT};
    rd_http_audit_part(hr, &cmd.audit, hr->audit_target, status);
    if (!rd_replica_is_leader(hr->env->replica) ||
        rd_replica_propose(hr->env->replica, &cmd, audit_noted, NULL) != 0) {
        http->audit_dropped++;
        if (status == 401 || status == 403) /* a follower's denials: counted, not logged */
            return;
        RD_WARN("http", "audit_dropped",
                "route=%s status=%d request_id=%s detail=\"this replica could not propose the "
                "request's audit record\"",
                routes[hr->route].name, status, hr->who.request_id);
        return;
    }
    http->audit_proposed++;
}

void rd_http_audit_ahead(struct rd_http_req *hr)
{
    if (hr->audited || !rd_http_route_audited(hr->route))
        return;
    struct rd_cmd cmd = {.type = RD_CMD_AUDIT};
    rd_http_audit_part(hr, &cmd.audit, hr->audit_target, 202);
    if (rd_replica_propose(hr->env->replica, &cmd, audit_noted, NULL) == 0) {
        hr->audited = true;
        hr->env->http->audit_proposed++;
    }
}

/* ---- answering --------------------------------------------------------- */

void rd_http_count_answer(struct rd_http_req *hr, int status)
{
    hr->env->http->requests[hr->route][status_slot(status)]++;
    audit_answer(hr, status);
}

void rd_http_send_raw(struct rd_http_req *hr, int status, const char *ctype, const char *body,
                      size_t len)
{
    h2o_req_t *req = hr->req;
    struct rd_http *http = hr->env->http;
    http->requests[hr->route][status_slot(status)]++;
    rd_hist_observe(&http->latency[hr->route], (double)(rd_mono_ns() - hr->t0) / 1e9);
    audit_answer(hr, status);
    if (req == NULL)
        return;
    /* The id is on every answer to a request that sent one (its own, or
     * the replacement of one too long or not printable); a generated one
     * otherwise only on answers that were audited (where it finds the
     * record). A unique header on every heartbeat would cost HPACK work on
     * both ends for nothing: h2o 2.2 indexes every header it sends. */
    if (hr->request_id_given || hr->audited) {
        who_details(hr);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                              hr->who.request_id, strlen(hr->who.request_id));
    }
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype,
                   strlen(ctype));
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void rd_http_send_json(struct rd_http_req *hr, int status, json_t *body)
{
    char stack[2048];
    size_t n = json_dumpb(body, stack, sizeof(stack), JSON_COMPACT);
    if (n <= sizeof(stack)) {
        rd_http_send_raw(hr, status, "application/json", stack, n);
    } else {
        char *s = json_dumps(body, JSON_COMPACT);
        if (s != NULL)
            rd_http_send_raw(hr, status, "application/json", s, strlen(s));
        else
            rd_http_send_raw(hr, 500, "application/json",
                             "{\"error\":{\"code\":\"internal\",\"message\":\"out of "
                             "memory\",\"details\":{}}}",
                             68);
        free(s);
    }
    json_decref(body);
}

static void send_error_v(struct rd_http_req *hr, int status, const char *code, json_t *details,
                         const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    snprintf(hr->audit_error, sizeof(hr->audit_error), "%s", code);
    json_t *err = json_pack("{s:{s:s,s:s,s:o}}", "error", "code", code, "message", msg, "details",
                            details ? details : json_object());
    if (hr->req != NULL && (status == 503 || status == 429))
        h2o_add_header(&hr->req->pool, &hr->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                       H2O_STRLIT("1"));
    rd_http_send_json(hr, status, err);
}

void rd_http_send_error(struct rd_http_req *hr, int status, const char *code, json_t *details,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_error_v(hr, status, code, details, fmt, ap);
    va_end(ap);
}

void rd_http_bad_request(struct rd_http_req *hr, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *details = field ? json_pack("{s:s}", "field", field) : NULL;
    send_error_v(hr, 400, "bad_request", details, fmt, ap);
    va_end(ap);
}

void rd_http_bad_limit(struct rd_http_req *hr, const char *field, long long limit, const char *fmt,
                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *details = json_pack("{s:s,s:I}", "field", field, "limit", (json_int_t)limit);
    send_error_v(hr, 400, "bad_request", details, fmt, ap);
    va_end(ap);
}

/*
 * This replica's log cannot be written (descriptors exhausted, an I/O error,
 * a full disk): 503 storage_unavailable (507 no_space for a full disk) with
 * libraft's own words for the cause and when writes are tried again.
 */
static bool send_storage_fault(struct rd_http_req *hr, int err)
{
    const char *cause;
    uint64_t retry_ms;
    int code = rd_replica_storage_fault(hr->env->replica, &cause, &retry_ms);
    if (code == 0 || code != err)
        return false;
    json_t *d = json_pack("{s:s, s:I}", "cause", cause, "retry_after_ms", (json_int_t)retry_ms);
    if (err == RD_ENOSPACE)
        rd_http_send_error(hr, 507, "no_space", d,
                           "the disk holding %s is full: nothing was written; free space there "
                           "and retry (%s)",
                           hr->env->replica->raft_dir, cause);
    else
        rd_http_send_error(hr, 503, "storage_unavailable", d,
                           "this replica cannot write its log in %s: %s; nothing was written, "
                           "writes are tried again in %llu ms",
                           hr->env->replica->raft_dir, cause, (unsigned long long)retry_ms);
    return true;
}

void rd_http_send_rd_error(struct rd_http_req *hr, int err, const char *message)
{
    const char *msg = message ? message : rd_strerror(err);
    if (message == NULL && send_storage_fault(hr, err))
        return;
    switch (err) {
    case RD_ENOTFOUND:
        rd_http_send_error(hr, 404, "not_found", NULL, "%s", msg);
        break;
    case RD_EFENCED:
        rd_http_send_error(hr, 409, "fenced", NULL, "%s", msg);
        break;
    case RD_ECONFLICT:
    case RD_EEXISTS:
        rd_http_send_error(hr, 409, "conflict", NULL, "%s", msg);
        break;
    case RD_ESTALE_VERSION:
        rd_http_send_error(hr, 409, "stale_version", NULL, "%s", msg);
        break;
    case RD_ETOOLARGE:
        rd_http_send_error(hr, 413, "too_large", NULL, "%s", msg);
        break;
    case RD_EINVAL:
    case RD_EPARSE:
        rd_http_send_error(hr, 400, "bad_request", NULL, "%s", msg);
        break;
    case RD_ENOTLEADER: {
        uint64_t id;
        const char *addr;
        rd_replica_leader(hr->env->replica, &id, &addr);
        const char *url = rd_cluster_api_url(hr->env->cluster, id);
        json_t *d = json_pack("{s:s?}", "leader", url);
        rd_http_send_error(hr, 503, "not_leader", d, "%s", msg);
        break;
    }
    case RD_EOUTCOME_UNKNOWN: {
        /* Proposed, then leadership was lost (or raft stopped): the change
         * may still commit. Only idempotent writes are safe to send again. */
        uint64_t id;
        const char *addr;
        rd_replica_leader(hr->env->replica, &id, &addr);
        const char *url = id != 0 && id != hr->env->cfg->cluster.replica_id
                              ? rd_cluster_api_url(hr->env->cluster, id)
                              : NULL;
        rd_http_send_error(hr, 503, "outcome_unknown", json_pack("{s:s?}", "leader", url),
                           "%s%sthe change was proposed, then this replica stopped leading: it "
                           "may still commit; read the state before writing again (a checkpoint, "
                           "complete, fail, or a submit naming its task_id repeats safely)",
                           message ? message : "", message ? ": " : "");
        break;
    }
    case RD_ENOQUORUM:
        rd_http_send_error(hr, 503, "no_quorum", NULL, "%s", msg);
        break;
    case RD_ESHUTDOWN:
        rd_http_send_error(hr, 503, "shutting_down", NULL, "%s", msg);
        break;
    case RD_EBUSY:
        rd_http_send_error(hr, 429, "rate_limited", NULL, "%s", msg);
        break;
    case RD_ENOSPACE:
        rd_http_send_error(hr, 507, "no_space", NULL,
                           "the disk holding %s is full: nothing was written; free space there "
                           "and retry",
                           hr->env->replica->raft_dir);
        break;
    default:
        rd_http_send_error(hr, 500, "internal", NULL, "%s", msg);
        break;
    }
}

/* ---- deferred answers -------------------------------------------------- */

struct rd_http_guard {
    struct rd_http_pending *p;
};

static void guard_dispose(void *g)
{
    struct rd_http_guard *guard = g;
    if (guard->p != NULL)
        guard->p->hr.req = NULL; /* the client went away: never touch req again */
}

struct rd_http_pending *rd_http_defer(struct rd_http_req *hr)
{
    struct rd_http_pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    who_details(hr); /* while the connection is there to ask */
    p->hr = *hr;
    p->guard = h2o_mem_alloc_shared(&hr->req->pool, sizeof(*p->guard), guard_dispose);
    p->guard->p = p;
    /* A change the handler proposes from here on is the pending's. */
    struct rd_replica *r = hr->env->replica;
    if (r != NULL && r->audit_ambient_used == &hr->audited)
        r->audit_ambient_used = &p->hr.audited;
    hr->env->http->pending++;
    return p;
}

void rd_http_pending_done(struct rd_http_pending *p)
{
    /* If the pool is gone, so is the guard; otherwise unhook it. */
    if (p->hr.req != NULL)
        p->guard->p = NULL;
    struct rd_replica *r = p->hr.env->replica;
    if (r != NULL && r->audit_ambient_used == &p->hr.audited)
        r->audit_ambient_used = NULL; /* a handler that gave up on its pending at once */
    p->hr.env->http->pending--;
    free(p);
}

void rd_http_propose(struct rd_http_req *hr, const struct rd_cmd *cmd, const char *key,
                     size_t key_len, void (*done)(void *data, int status, uint64_t value))
{
    const struct rd_http_env *env = hr->env;
    if (*env->shutting_down) {
        rd_http_send_rd_error(hr, RD_ESHUTDOWN, "the engine is shutting down");
        return;
    }
    struct rd_http_pending *p = rd_http_defer(hr);
    if (p == NULL) {
        rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
        return;
    }
    size_t n = key_len < sizeof(p->key) - 1 ? key_len : sizeof(p->key) - 1;
    memcpy(p->key, key, n);
    p->key[n] = '\0';
    /* The change and its audit record commit together (one command). */
    struct rd_cmd c = *cmd;
    bool audit = rd_http_route_audited(hr->route) && !p->hr.audited && !c.audit.present;
    if (audit) /* the target: what the handler named, else the key */
        rd_http_audit_part(&p->hr, &c.audit, p->hr.audit_target[0] ? p->hr.audit_target : p->key,
                           success_status(hr->route));
    int rv = rd_replica_propose(env->replica, &c, done, p);
    if (rv == 0 && audit)
        p->hr.audited = true;
    if (rv != 0) {
        rd_http_send_rd_error(&p->hr, rv, NULL);
        rd_http_pending_done(p);
    }
}

/* ---- request helpers --------------------------------------------------- */

#define LIST_DEFAULT 100
#define LIST_MAX     1000

int rd_api_list_limit(struct rd_http_req *hr)
{
    const char *s = rd_http_query(hr, "limit");
    if (s == NULL)
        return LIST_DEFAULT;
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > LIST_MAX) {
        rd_http_bad_limit(hr, "limit", LIST_MAX, "limit must be an integer from 1 to %d", LIST_MAX);
        return -1;
    }
    return (int)v;
}

bool rd_api_seq_cursor(struct rd_http_req *hr, uint64_t *seq)
{
    const char *cursor = rd_http_query(hr, "cursor");
    *seq = 0;
    if (cursor == NULL || cursor[0] == '\0')
        return true;
    char *end;
    unsigned long long v = strtoull(cursor, &end, 10);
    if (*end != '\0' || v == 0 || cursor[0] == '-') {
        rd_http_bad_request(hr, "cursor", "cursor is not one this server returned");
        return false;
    }
    *seq = v;
    return true;
}

void rd_api_send_seq_page(struct rd_http_req *hr, json_t *items, bool more, uint64_t last)
{
    char next[32];
    snprintf(next, sizeof(next), "%llu", (unsigned long long)last);
    rd_http_send_json(hr, 200,
                      json_pack("{s:o,s:o}", "items", items, "next_cursor",
                                more ? json_string(next) : json_null()));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+n) onto the pool; `plus` maps '+' to ' ' (queries).
 * Returns {NULL, 0} on a bad escape. */
static h2o_iovec_t pct_decode(h2o_mem_pool_t *pool, const char *s, size_t n, bool plus)
{
    char *d = h2o_mem_alloc_pool(pool, n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
                return h2o_iovec_init(NULL, 0);
            d[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (plus && s[i] == '+') {
            d[o++] = ' ';
        } else {
            d[o++] = s[i];
        }
    }
    d[o] = '\0';
    return h2o_iovec_init(d, o);
}

const char *rd_http_query(struct rd_http_req *hr, const char *name)
{
    size_t nlen = strlen(name);
    const char *q = hr->query.base, *end = q + hr->query.len;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - q) == nlen && memcmp(q, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : stop;
            h2o_iovec_t d = pct_decode(&hr->req->pool, v, (size_t)(stop - v), true);
            return d.base;
        }
        q = amp ? amp + 1 : end;
    }
    return NULL;
}

json_t *rd_http_body_object(struct rd_http_req *hr)
{
    h2o_req_t *req = hr->req;
    enum rd_decode_err err;
    char why[320];
    json_t *obj =
        rd_limits_decode_object(req->entity.base, req->entity.len, &err, why, sizeof(why));
    if (obj == NULL && err == RD_DECODE_TOO_DEEP)
        rd_http_send_error(hr, 400, "bad_request", json_pack("{s:i}", "limit", RD_LIMIT_JSON_DEPTH),
                           "%s", why);
    else if (obj == NULL)
        rd_http_bad_request(hr, NULL, "%s", why);
    return obj;
}

/* ---- routing ----------------------------------------------------------- */

/* ---- replicas: who answers what ------------------------------------------ */

/* Answered by whichever replica is asked: its own liveness, readiness,
 * metrics, view of the cluster, plugins and policies. */
static bool route_local(int route)
{
    switch (route) {
    case RD_ROUTE_HEALTH:
    case RD_ROUTE_READY:
    case RD_ROUTE_METRICS:
    case RD_ROUTE_CLUSTER_HEALTH:
    case RD_ROUTE_PLUGINS_LIST:
    case RD_ROUTE_POLICIES_RELOAD:
    case RD_ROUTE_LOG_LEVEL_GET:
    case RD_ROUTE_LOG_LEVEL_SET:
    case RD_ROUTE_REPLICAS_LIST:
    case RD_ROUTE_CONSISTENCY_LOCAL:
    case RD_ROUTE_EVENTS: /* every replica streams the events it applied */
    case RD_ROUTE_WHOAMI:
        return true;
    default:
        return false;
    }
}

static void applied_header(struct rd_http_req *hr)
{
    h2o_req_t *req = hr->req;
    if (req == NULL)
        return;
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%llu",
                     (unsigned long long)rd_replica_applied_index(hr->env->replica));
    h2o_iovec_t v = h2o_strdup(&req->pool, buf, (size_t)n);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-recoveryd-applied-index"), 0,
                          NULL, v.base, v.len);
}

static void read_confirmed(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    (void)value;
    if (rd_http_pending_alive(p)) {
        if (status == 0) {
            applied_header(&p->hr);
            routes[p->hr.route].fn(&p->hr);
        } else {
            rd_http_send_rd_error(&p->hr, status,
                                  "leadership was lost before the read could be confirmed");
        }
    }
    rd_http_pending_done(p);
}

/* Runs a write's handler on the leader. A change a module proposes while the
 * handler runs carries the request's audit record (replica.h:
 * audit_ambient). */
static void run_write(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    int route = hr->route;
    if (route < 0 || route >= RD_ROUTE_NONE)
        return; /* only matched routes get here */
    struct rd_cmd_audit part;
    bool audit = rd_http_route_audited(route);
    if (audit) {
        rd_http_audit_part(hr, &part, hr->audit_target, success_status(route));
        env->replica->audit_ambient = &part;
        env->replica->audit_ambient_used = &hr->audited;
        env->replica->audit_ambient_target = hr->audit_target;
    }
    routes[route].fn(hr);
    if (audit) {
        env->replica->audit_ambient = NULL;
        env->replica->audit_ambient_used = NULL;
        env->replica->audit_ambient_target = NULL;
    }
}

/* A new leader's state became current (or it stopped leading first). */
static void state_current(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    (void)value;
    bool read = strcmp(routes[p->hr.route].method, "GET") == 0;
    if (rd_http_pending_alive(p) && status == 0 && read &&
        rd_replica_voters(p->hr.env->replica) > 1) {
        /* A consistent read still waits for a barrier appended after it. */
        status = rd_replica_read_barrier(p->hr.env->replica, read_confirmed, p);
        if (status == 0)
            return;
    }
    if (rd_http_pending_alive(p)) {
        if (status == 0 && read) {
            applied_header(&p->hr);
            routes[p->hr.route].fn(&p->hr);
        } else if (status == 0) {
            run_write(&p->hr);
        } else {
            rd_http_send_rd_error(&p->hr, status,
                                  "this replica stopped leading before its state was current: "
                                  "nothing was proposed; retry at the leader");
        }
    }
    rd_http_pending_done(p);
}

/* This replica is not the leader: send the client to it (307, same method
 * and body), or say why there is none to send it to. */
static void not_here(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    uint64_t id;
    const char *addr;
    rd_replica_leader(env->replica, &id, &addr);
    const char *url =
        id != 0 && id != env->cfg->cluster.replica_id ? rd_cluster_api_url(env->cluster, id) : NULL;
    if (url != NULL) {
        h2o_req_t *req = hr->req;
        size_t ul = strlen(url);
        char *loc = h2o_mem_alloc_pool(&req->pool, ul + req->path.len + 1);
        memcpy(loc, url, ul);
        memcpy(loc + ul, req->path.base, req->path.len);
        loc[ul + req->path.len] = '\0';
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc,
                       ul + req->path.len);
        rd_http_send_error(hr, 307, "not_leader",
                           json_pack("{s:s,s:I}", "leader", url, "leader_id", (json_int_t)id),
                           "this replica is a follower: the leader is replica %llu at %s",
                           (unsigned long long)id, url);
        return;
    }
    /* Nobody leads. Briefly, that is an election; for longer, this side
     * cannot reach a majority. */
    uint64_t leaderless = rd_replica_leaderless_ns(env->replica);
    if (leaderless > 2 * env->cfg->cluster.election_timeout_ms * 1000000ULL)
        rd_http_send_rd_error(hr, RD_ENOQUORUM,
                              "this replica cannot reach a majority of the replicas: writes and "
                              "consistent reads are refused; ?stale=true reads are served");
    else
        rd_http_send_rd_error(hr, RD_ENOTLEADER, "an election is running; retry shortly");
}

static bool query_true(struct rd_http_req *hr, const char *name)
{
    const char *v = rd_http_query(hr, name);
    return v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/*
 * Writes go to the leader. Reads are linearizable on the leader (a read
 * barrier when there are other voters), or with ?stale=true served by any
 * replica from what it has applied (X-Recoveryd-Applied-Index says how far).
 */
static void dispatch(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    int route = hr->route;
    if (route < 0 || route >= RD_ROUTE_NONE)
        return; /* on_req dispatches only matched routes */
    if (route_local(route)) {
        routes[route].fn(hr);
        return;
    }
    bool read = strcmp(routes[route].method, "GET") == 0;
    if (read && query_true(hr, "stale")) {
        applied_header(hr);
        routes[route].fn(hr);
        return;
    }
    if (!rd_replica_is_leader(env->replica)) {
        not_here(hr);
        return;
    }
    /* A new leader answers only from current state: handlers answer 404 or
     * 409 fenced from it before proposing (replica.h, rd_replica_current). */
    if (!rd_replica_current(env->replica)) {
        struct rd_http_pending *p = rd_http_defer(hr);
        int rv = p ? rd_replica_await_current(env->replica, state_current, p) : RD_ENOMEM;
        if (rv != 0) {
            rd_http_send_rd_error(p ? &p->hr : hr, rv, NULL);
            if (p)
                rd_http_pending_done(p);
        }
        return;
    }
    if (!read || rd_replica_voters(env->replica) <= 1) {
        if (read) {
            applied_header(hr);
            routes[route].fn(hr);
            return;
        }
        run_write(hr);
        return;
    }
    struct rd_http_pending *p = rd_http_defer(hr);
    int rv = p ? rd_replica_read_barrier(env->replica, read_confirmed, p) : RD_ENOMEM;
    if (rv != 0) {
        rd_http_send_rd_error(p ? &p->hr : hr, rv, NULL);
        if (p)
            rd_http_pending_done(p);
    }
}

static bool method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

/* ---- who is asking ------------------------------------------------------ */

/* A new request id: this process's random UUID with a counter in its last
 * 12 hex digits, unique without a system call per request. */
static void new_request_id(char out[48])
{
    static char base[RD_UUID_STRLEN];
    static uint64_t n;
    if (base[0] == '\0' && rd_uuid_v4(base) != 0)
        memcpy(base, "00000000-0000-4000-8000-000000000000", RD_UUID_STRLEN);
    memcpy(out, base, 24);
    snprintf(out + 24, 13, "%012llx", (unsigned long long)(++n & 0xffffffffffffULL));
}

/* Who is asking: anonymous until authenticated, and the client's
 * X-Request-Id when it is 1-47 printable characters. The client's address
 * and a request id of our own (when the client's is missing or unfit) come
 * later, when something reads them (who_details). */
static void fill_who(struct rd_http_req *hr)
{
    h2o_req_t *req = hr->req;
    struct rd_principal *who = &hr->who;
    memcpy(who->id, "anonymous", sizeof("anonymous"));
    who->role = RD_ROLE_NONE;
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        bool ok = v.len > 0 && v.len < sizeof(who->request_id);
        for (size_t k = 0; ok && k < v.len; k++)
            ok = v.base[k] > 0x20 && v.base[k] < 0x7f;
        if (ok) {
            memcpy(who->request_id, v.base, v.len);
            who->request_id[v.len] = '\0';
        }
    }
    /* Echoed (rd_http_send) when the client sent one or the request is
     * audited: a fresh id on every heartbeat's answer would cost each one a
     * new HPACK table entry. */
    hr->request_id_given = i >= 0;
    hr->who_later = true;
}

/* The client's address (from the connection, while the request is there)
 * and, when the client gave none fit to use, a new request id. */
static void who_details(struct rd_http_req *hr)
{
    if (!hr->who_later)
        return;
    hr->who_later = false;
    struct rd_principal *who = &hr->who;
    if (who->request_id[0] == '\0')
        new_request_id(who->request_id);
    h2o_req_t *req = hr->req;
    if (req == NULL)
        return;
    struct sockaddr_storage sa;
    socklen_t sl = req->conn->callbacks->get_peername
                       ? req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&sa)
                       : 0;
    char ip[INET6_ADDRSTRLEN] = "";
    if (sl > 0 && sa.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(who->source, sizeof(who->source), "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (sl > 0 && sa.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(who->source, sizeof(who->source), "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    }
}

/* h2o 2.2 keeps the SSL of a TLS socket in a private struct that starts
 * with the context and the SSL (lib/common/socket.c); the context is
 * compared with ours before the SSL is used, so a different layout only
 * means "no certificate". */
struct h2o_ssl_head {
    SSL_CTX *ssl_ctx;
    SSL *ossl;
};

/* The verified client certificate's subject CN into `cn`, or false. */
static bool client_cn(struct rd_http_req *hr, char *cn, size_t len)
{
    struct rd_http *http = hr->env->http;
    if (!http->client_certs || hr->req->conn->callbacks->get_socket == NULL)
        return false;
    h2o_socket_t *sock = hr->req->conn->callbacks->get_socket(hr->req->conn);
    if (sock == NULL || sock->ssl == NULL)
        return false;
    const struct h2o_ssl_head *head = (const struct h2o_ssl_head *)(const void *)sock->ssl;
    if (head->ssl_ctx != http->ssl_ctx || head->ossl == NULL)
        return false;
    X509 *cert = SSL_get0_peer_certificate(head->ossl);
    if (cert == NULL || SSL_get_verify_result(head->ossl) != X509_V_OK)
        return false;
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, (int)len);
    /* A CN with a NUL in it would compare as its prefix: no such names. */
    return n > 0 && (size_t)n < len && memchr(cn, '\0', (size_t)n) == NULL;
}

struct auth {
    const char *nodes; /* agents: the node patterns they may act as */
};

static void send_401(struct rd_http_req *hr, bool invalid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void send_401(struct rd_http_req *hr, bool invalid, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    h2o_req_t *req = hr->req;
    const char *hdr = invalid ? "Bearer realm=\"recoveryd\", error=\"invalid_token\""
                              : "Bearer realm=\"recoveryd\"";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, hdr,
                   strlen(hdr));
    hr->env->http->auth_denied[0]++;
    rd_http_send_error(hr, 401, "unauthorized", NULL, "%s", msg);
}

/*
 * Who is asking: a bearer token, else a mapped client certificate. Fills
 * hr->who and `a`; answers 401 itself and returns false when neither is
 * there or valid.
 */
static bool authenticate(struct rd_http_req *hr, struct auth *a)
{
    struct rd_http *http = hr->env->http;
    const struct rd_config *cfg = hr->env->cfg;
    h2o_req_t *req = hr->req;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (v.len < 8 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer "))) {
            send_401(hr, true, "the Authorization header must be 'Bearer <token>'");
            return false;
        }
        const char *s = v.base + 7;
        size_t n = v.len - 7;
        while (n > 0 && *s == ' ')
            s++, n--;
        const struct rd_token *t = rd_tokens_find(http->tokens, s, n);
        if (t == NULL) {
            send_401(hr, true, "the bearer token is not known");
            return false;
        }
        if (rd_token_expired(t, rd_now_ms())) {
            char at[RD_TIME_STRLEN];
            rd_time_format(t->expires_ms, at);
            send_401(hr, true, "token %s expired at %s", t->id, at);
            return false;
        }
        snprintf(hr->who.id, sizeof(hr->who.id), "%s", t->id);
        hr->who.role = t->role;
        a->nodes = t->nodes;
        return true;
    }
    char cn[RD_CFG_STR];
    if (client_cn(hr, cn, sizeof(cn))) {
        for (unsigned k = 0; k < cfg->security.n_client_certs; k++) {
            const struct rd_cfg_cert_map *m = &cfg->security.client_certs[k];
            if (strcmp(m->subject, cn) != 0)
                continue;
            if (m->principal[0])
                snprintf(hr->who.id, sizeof(hr->who.id), "%s", m->principal);
            else
                snprintf(hr->who.id, sizeof(hr->who.id), "cn:%.90s", cn);
            hr->who.role = (enum rd_role)rd_role_parse(m->role);
            a->nodes = m->nodes;
            return true;
        }
        send_401(hr, false,
                 "the client certificate CN=%.100s is not mapped to a role in "
                 "security.client_certs",
                 cn);
        return false;
    }
    send_401(hr, false, "authentication required: send 'Authorization: Bearer <token>'%s",
             http->client_certs ? " or a client certificate" : "");
    return false;
}

static bool role_allows(enum rd_access acc, enum rd_role r, bool metrics_open)
{
    switch (acc) {
    case RD_ACCESS_OPEN:
        return true;
    case RD_ACCESS_METRICS:
        return metrics_open || r >= RD_ROLE_READER;
    case RD_ACCESS_READER:
        return r >= RD_ROLE_READER;
    case RD_ACCESS_OPERATOR:
        return r >= RD_ROLE_OPERATOR;
    case RD_ACCESS_ADMIN:
        return r == RD_ROLE_ADMIN;
    case RD_ACCESS_AGENT:
        return r == RD_ROLE_AGENT || r == RD_ROLE_ADMIN;
    case RD_ACCESS_AGENT_READER:
        return r == RD_ROLE_AGENT || r >= RD_ROLE_READER;
    case RD_ACCESS_ANY:
        return r != RD_ROLE_NONE;
    }
    return false;
}

static const char *access_needs(enum rd_access acc)
{
    switch (acc) {
    case RD_ACCESS_OPEN:
        return "none";
    case RD_ACCESS_METRICS:
    case RD_ACCESS_READER:
        return "reader";
    case RD_ACCESS_OPERATOR:
        return "operator";
    case RD_ACCESS_ADMIN:
        return "admin";
    case RD_ACCESS_AGENT:
        return "agent";
    case RD_ACCESS_AGENT_READER:
        return "agent or reader";
    case RD_ACCESS_ANY:
        return "any";
    }
    return "admin";
}

static void send_403(struct rd_http_req *hr, const char *needs, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void send_403(struct rd_http_req *hr, const char *needs, json_t *extra, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *d = json_pack("{s:s,s:s,s:s}", "required_role", needs, "principal", hr->who.id, "role",
                          rd_role_name(hr->who.role));
    if (extra != NULL) {
        json_object_update(d, extra);
        json_decref(extra);
    }
    hr->env->http->auth_denied[1]++;
    rd_http_send_error(hr, 403, "forbidden", d, "%s", msg);
}

/* The node an agent's request acts for: the path's node, the body's
 * node_id, or the task's assigned node. NULL when the request does not
 * say (the handler answers 400 or 404 then, changing nothing). */
/* The body's "node_id" into `buf`, or NULL. */
static const char *body_node(struct rd_http_req *hr, char *buf, size_t len)
{
    h2o_req_t *req = hr->req;
    if (req->entity.base == NULL)
        return NULL;
    json_t *b = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, NULL);
    const char *id = json_string_value(json_object_get(b, "node_id"));
    const char *r = NULL;
    if (id != NULL && strlen(id) < len) {
        snprintf(buf, len, "%s", id);
        r = buf;
    }
    json_decref(b);
    return r;
}

static const char *agent_target(struct rd_http_req *hr, char *buf, size_t len, bool *task)
{
    *task = false;
    switch (hr->route) {
    case RD_ROUTE_NODE_HEARTBEAT:
        return hr->params[0].base;
    case RD_ROUTE_NODES_REGISTER:
        return body_node(hr, buf, len);
    case RD_ROUTE_TASK_GET:
    case RD_ROUTE_TASK_CHECKPOINT_GET:
    case RD_ROUTE_TASK_CHECKPOINT_PUT:
    case RD_ROUTE_TASK_COMPLETE:
    case RD_ROUTE_TASK_FAIL: {
        *task = true;
        const struct rd_task *t = rd_fsm_task(hr->env->fsm, hr->params[0].base);
        if (t == NULL)
            return NULL;
        snprintf(buf, len, "%s", t->node_id);
        return buf;
    }
    default:
        return "";
    }
}

/*
 * The one access check, before anything else is done: 401 without valid
 * credentials, 403 when the role (or, for an agent, the node) does not fit
 * the route's row in RD_ROUTE_LIST. `acc` is the route's access (ADMIN for
 * the test build's /debug/ routes, ANY for unmatched paths, which then get
 * their 404 or 405 once the caller is known). True: go on.
 */
static bool authorize(struct rd_http_req *hr, enum rd_access acc, struct auth *a)
{
    struct rd_http *http = hr->env->http;
    bool metrics_open = hr->env->cfg->security.metrics_open;
    a->nodes = "";
    if (!http->auth_on || acc == RD_ACCESS_OPEN || (acc == RD_ACCESS_METRICS && metrics_open))
        return true;
    if (!authenticate(hr, a))
        return false;
    if (!role_allows(acc, hr->who.role, metrics_open)) {
        const char *needs = access_needs(acc);
        h2o_req_t *req = hr->req;
        size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
        if (hr->route != RD_ROUTE_NONE)
            send_403(hr, needs, NULL, "%s %s needs the role %s%s; %s has the role %s",
                     routes[hr->route].method, routes[hr->route].pattern, needs,
                     acc == RD_ACCESS_ADMIN ? "" : " (or admin)", hr->who.id,
                     rd_role_name(hr->who.role));
        else
            send_403(hr, needs, NULL, "%.*s %.*s needs the role %s; %s has the role %s",
                     (int)req->method.len, req->method.base, (int)(plen < 200 ? plen : 200),
                     req->path.base, needs, hr->who.id, rd_role_name(hr->who.role));
        return false;
    }
    return true;
}

/* An agent acts only for its own nodes: the check needs the body (register)
 * or the task, so it runs after the size and media type checks. */
static bool agent_allowed(struct rd_http_req *hr, const struct auth *a)
{
    if (!hr->env->http->auth_on || hr->who.role != RD_ROLE_AGENT || hr->route == RD_ROUTE_WHOAMI)
        return true; /* whoami acts for no node */
    char buf[RD_NODE_ID_MAX + 1];
    bool task;
    const char *node = agent_target(hr, buf, sizeof(buf), &task);
    if (node == NULL)
        return true; /* the handler refuses it: 400 / 404 */
    if (node[0] != '\0' && rd_nodes_match(a->nodes, node, strlen(node)))
        return true;
    /* Availability mode: an agent cut off while its task moved replays the
     * writes of its old attempt as the node it names in the body; only a
     * conflict may come of them (conflict_only; the handler checks). */
    char named_buf[RD_NODE_ID_MAX + 1];
    const char *named = NULL;
    if (task && hr->route != RD_ROUTE_TASK_GET && hr->route != RD_ROUTE_TASK_CHECKPOINT_GET &&
        hr->env->cfg->fault_tolerance.partition.mode == RD_PARTITION_AVAILABILITY &&
        (named = body_node(hr, named_buf, sizeof(named_buf))) != NULL && named[0] != '\0' &&
        rd_nodes_match(a->nodes, named, strlen(named))) {
        hr->conflict_only = true;
        return true;
    }
    if (task)
        send_403(hr, "agent", json_pack("{s:s}", "node", node),
                 "task %s is %s%s; agent %s may act only as %s", hr->params[0].base,
                 node[0] ? "assigned to node " : "assigned to no node", node, hr->who.id, a->nodes);
    else
        send_403(hr, "agent", json_pack("{s:s}", "node", node),
                 "agent %s may act only as %s, not as node %s", hr->who.id, a->nodes, node);
    return false;
}

/* Cross-site request forgery: a browser sends text/plain, form types or
 * none without asking; application/json it must ask for (CORS preflight,
 * which is never granted). So a POST or PUT with a body, or with any
 * content type, must say application/json. */
static bool media_type_ok(struct rd_http_req *hr)
{
    h2o_req_t *req = hr->req;
    if (!method_is(req, "POST") && !method_is(req, "PUT"))
        return true;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0 && req->entity.len == 0)
        return true;
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        size_t n = 0;
        while (n < v.len && v.base[n] != ';' && v.base[n] != ' ')
            n++;
        if (n == 16 && h2o_lcstris(v.base, 16, H2O_STRLIT("application/json")))
            return true;
        rd_http_send_error(
            hr, 415, "unsupported_media_type", json_pack("{s:s}", "expected", "application/json"),
            "%.*s needs Content-Type: application/json, got '%.*s'", (int)req->method.len,
            req->method.base, (int)(v.len < 64 ? v.len : 64), v.base);
        return false;
    }
    rd_http_send_error(hr, 415, "unsupported_media_type",
                       json_pack("{s:s}", "expected", "application/json"),
                       "%.*s with a body needs Content-Type: application/json, got none",
                       (int)req->method.len, req->method.base);
    return false;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct rd_http *http = *(struct rd_http **)(self + 1);
    if (req->version >= 0x200)
        rd_edge_h2_request(req);
    struct rd_http_req hr = {
        .req = req, .env = &http->env, .route = RD_ROUTE_NONE, .t0 = rd_mono_ns()};
    fill_who(&hr);
    struct auth a;
    /* Split the raw path (h2o's normalised one has already decoded %2F). */
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    if (req->query_at != SIZE_MAX)
        hr.query =
            h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
    h2o_iovec_t segs[8];
    int n_segs = 0;
    bool bad_escape = false, too_deep = false;
    const char *p = req->path.base, *end = req->path.base + plen;
    if (p < end && *p == '/')
        p++;
    while (p < end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = slash ? slash : end;
        if (n_segs == 8) {
            too_deep = true;
            break;
        }
        segs[n_segs] = pct_decode(&req->pool, p, (size_t)(stop - p), false);
        if (segs[n_segs].base == NULL)
            bad_escape = true;
        n_segs++;
        p = slash ? slash + 1 : end;
    }

    /* /ui without its slash: to the dashboard, whose links are relative. */
    if (http->ui_on && h2o_memis(req->path.base, plen, H2O_STRLIT("/ui"))) {
        h2o_send_redirect(req, 301, "Moved Permanently", H2O_STRLIT("/ui/"));
        return 0;
    }

    bool is_head = method_is(req, "HEAD");
    char allow[64] = "";
    if (!bad_escape && !too_deep) {
        for (size_t i = 0; i < RD_ARRAY_SIZE(routes); i++) {
            struct route_def *r = &routes[i];
            if (r->n_segs != n_segs)
                continue;
            int np = 0;
            bool match = true;
            for (int s = 0; s < n_segs && match; s++) {
                if (strcmp(r->segs[s], "*") == 0) {
                    if (segs[s].len == 0)
                        match = false;
                    else if (np < RD_HTTP_MAX_PARAMS)
                        hr.params[np++] = segs[s];
                } else {
                    match = h2o_memis(segs[s].base, segs[s].len, r->segs[s], strlen(r->segs[s]));
                }
            }
            if (!match)
                continue;
            if (method_is(req, r->method) || (is_head && strcmp(r->method, "GET") == 0)) {
                hr.route = (int)i;
                break;
            }
            if (!strstr(allow, r->method)) {
                if (allow[0])
                    strcat(allow, ", ");
                strcat(allow, r->method);
            }
        }
    }

    if (hr.route == RD_ROUTE_NONE && http->env.debug != NULL && !bad_escape && n_segs >= 2 &&
        h2o_memis(segs[0].base, segs[0].len, H2O_STRLIT("debug"))) {
        if (authorize(&hr, RD_ACCESS_ADMIN, &a))
            http->env.debug(&hr, http->env.debug_data);
        return 0;
    }
    if (!authorize(&hr, hr.route == RD_ROUTE_NONE ? RD_ACCESS_ANY : routes[hr.route].access, &a))
        return 0;
    if (hr.route == RD_ROUTE_NONE) {
        if (bad_escape) {
            rd_http_bad_request(&hr, "path", "malformed percent-encoding in the path");
        } else if (allow[0]) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow,
                           strlen(allow));
            rd_http_send_error(&hr, 405, "method_not_allowed", NULL,
                               "method %.*s is not allowed here; allowed: %s", (int)req->method.len,
                               req->method.base, allow);
        } else {
            rd_http_send_error(&hr, 404, "not_found", NULL, "no route for %.*s %.*s",
                               (int)req->method.len, req->method.base, (int)plen, req->path.base);
        }
        return 0;
    }
    if (!media_type_ok(&hr))
        return 0;
    if (hr.params[0].base != NULL) {
        size_t n = hr.params[0].len < sizeof(hr.audit_target) - 1 ? hr.params[0].len
                                                                  : sizeof(hr.audit_target) - 1;
        memcpy(hr.audit_target, hr.params[0].base, n);
        hr.audit_target[n] = '\0';
    }
    size_t body_max = rd_limits_body_max(hr.route, http->max_body);
    if (req->entity.len > body_max) {
        rd_http_send_error(&hr, 413, "too_large", json_pack("{s:I}", "limit", (json_int_t)body_max),
                           "request body of %zu bytes is over the limit of %zu bytes for %s %s",
                           req->entity.len, body_max, routes[hr.route].method,
                           routes[hr.route].pattern);
        return 0;
    }
    if (hr.query.len > RD_LIMIT_QUERY_LEN) {
        rd_http_bad_limit(&hr, "query", RD_LIMIT_QUERY_LEN,
                          "query string of %zu bytes is over the limit of %d bytes", hr.query.len,
                          RD_LIMIT_QUERY_LEN);
        return 0;
    }
    if (!agent_allowed(&hr, &a))
        return 0;
    dispatch(&hr);
    return 0;
}

/* ---- listener ---------------------------------------------------------- */

static void on_accept(uv_stream_t *listener, int status)
{
    struct rd_http *http = listener->data;
    rd_edge_accept(&http->edge, listener, status);
}

static int tls_setup(struct rd_http *http, const char *cert, const char *key, const char *ca)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(http->errmsg, sizeof(http->errmsg), "TLS: cannot create a context");
        return RD_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(http->errmsg, sizeof(http->errmsg),
                 "server.tls.cert: cannot load the PEM certificate chain %s", cert);
        SSL_CTX_free(ctx);
        return RD_ECONFIG;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(http->errmsg, sizeof(http->errmsg),
                 "server.tls.key: cannot load %s, or it does not match server.tls.cert", key);
        SSL_CTX_free(ctx);
        return RD_ECONFIG;
    }
    if (ca != NULL && ca[0] != '\0') {
        /* Asked for, not required: a client without one may still send a
         * bearer token. One that sends a certificate the CA did not sign
         * fails the handshake. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            if (names != NULL)
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            snprintf(http->errmsg, sizeof(http->errmsg),
                     "security.client_ca: cannot load the PEM CA certificate %s", ca);
            SSL_CTX_free(ctx);
            return RD_ECONFIG;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        static const unsigned char sid[] = "recoveryd-api";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
        http->client_certs = true;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    http->ssl_ctx = ctx;
    return 0;
}

int rd_http_reload_tokens(struct rd_http *http, char *err, size_t errlen)
{
    const char *path = http->env.cfg->security.tokens_file;
    if (path[0] == '\0')
        return 0;
    struct rd_tokens *fresh;
    int rv = rd_tokens_load(path, &fresh, err, errlen);
    if (rv != 0)
        return rv;
    rd_tokens_free(http->tokens);
    http->tokens = fresh;
    RD_INFO("http", "tokens_loaded", "file=%s tokens=%zu", path, fresh->n);
    return 0;
}

static bool host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

/* Authentication at start: the token file must load, and an API others can
 * reach must not be open unless that is asked for explicitly. */
static int auth_setup(struct rd_http *http, const char *host, uint16_t port)
{
    const struct rd_config *cfg = http->env.cfg;
    const struct rd_cfg_security *sec = &cfg->security;
    char err[512];
    int rv = rd_http_reload_tokens(http, err, sizeof(err));
    if (rv != 0) {
        snprintf(http->errmsg, sizeof(http->errmsg), "security.tokens_file: %s", err);
        return RD_ECONFIG;
    }
    http->auth_on = sec->tokens_file[0] != '\0' || http->client_certs;
    if (http->auth_on)
        return 0;
    if (host_is_loopback(host)) {
        RD_WARN("http", "unauthenticated",
                "addr=%s detail=\"no security.tokens_file or security.client_ca: anyone on "
                "this machine may call every route\"",
                host);
        return 0;
    }
    if (sec->allow_unauthenticated) {
        RD_WARN("http", "unauthenticated",
                "addr=%s detail=\"security.allow_unauthenticated: anyone who reaches this "
                "address may call every route\"",
                host);
        return 0;
    }
    char shown[RD_CFG_STR + 16];
    snprintf(shown, sizeof(shown), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    snprintf(http->errmsg, sizeof(http->errmsg),
             "server.listen %s is not a loopback address and the API has no authentication: "
             "set security.tokens_file (or security.client_ca), or set "
             "security.allow_unauthenticated: true to serve it open",
             shown);
    return RD_ECONFIG;
}

/* ---- the dashboard's files ------------------------------------------------ */

/* Every file under /ui/: revalidated on each load (the ETag and
 * Last-Modified h2o's file handler sends make that a 304), read as the type
 * h2o names, and loaded only as the page itself (no framing, no scripts or
 * connections from elsewhere). */
static h2o_iovec_t ui_csp_name = {H2O_STRLIT("content-security-policy")};
static h2o_iovec_t ui_nosniff_name = {H2O_STRLIT("x-content-type-options")};
static h2o_iovec_t ui_referrer_name = {H2O_STRLIT("referrer-policy")};
static h2o_headers_command_t ui_headers[] = {
    {H2O_HEADERS_CMD_SET, &H2O_TOKEN_CACHE_CONTROL->buf, {H2O_STRLIT("no-cache")}},
    {H2O_HEADERS_CMD_SET, &ui_nosniff_name, {H2O_STRLIT("nosniff")}},
    {H2O_HEADERS_CMD_SET, &ui_referrer_name, {H2O_STRLIT("no-referrer")}},
    {H2O_HEADERS_CMD_SET,
     &ui_csp_name,
     {H2O_STRLIT("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                 "frame-ancestors 'none'; form-action 'none'; base-uri 'none'")}},
    {H2O_HEADERS_CMD_NULL, NULL, {NULL, 0}},
};

/*
 * server.ui_dir: h2o's file handler serves its files at /ui/ with no token
 * (the page asks for one and sends it on every API call). h2o normalises the
 * path before the handler sees it ("..", "%2e%2e" and "//" cannot climb out
 * of the directory). The directory must hold index.html; the built-in
 * default may be missing (a daemon run outside the tree serves no UI), a
 * directory named in the config may not.
 */
int rd_http_ui_check(const struct rd_config *cfg, bool *on, char *err, size_t errlen)
{
    const char *dir = cfg->server.ui_dir;
    *on = false;
    if (dir[0] == '\0')
        return 0;
    char index[RD_CFG_STR + 16];
    snprintf(index, sizeof(index), "%s/index.html", dir);
    struct stat st;
    if (stat(index, &st) == 0 && S_ISREG(st.st_mode) && access(index, R_OK) == 0) {
        *on = true;
        return 0;
    }
    if (cfg->origin[RD_CFG_UI_DIR] == 0)
        return 0; /* the built-in default, not there: no dashboard */
    char origin[RD_CFG_ERRLEN];
    snprintf(err, errlen,
             "server.ui_dir: %s has no readable index.html (the dashboard's files; empty turns "
             "the dashboard off) (%s)",
             dir, rd_config_origin(cfg, RD_CFG_UI_DIR, origin, sizeof(origin)));
    return RD_ECONFIG;
}

static int ui_setup(struct rd_http *http, h2o_hostconf_t *hostconf)
{
    const struct rd_config *cfg = http->env.cfg;
    const char *dir = cfg->server.ui_dir;
    bool on;
    int rv = rd_http_ui_check(cfg, &on, http->errmsg, sizeof(http->errmsg));
    http->ui_on = false;
    if (rv != 0)
        return rv;
    if (!on) {
        RD_INFO("http", "ui_off", "dir=%s detail=\"%s: no dashboard at /ui/\"", dir,
                dir[0] ? "no index.html there (the built-in default)" : "server.ui_dir is empty");
        return 0;
    }
    h2o_pathconf_t *ui = h2o_config_register_path(hostconf, "/ui/", 0);
    h2o_headers_register(ui, ui_headers);
    static const char *index_files[] = {"index.html", NULL};
    if (h2o_file_register(ui, dir, index_files, NULL, 0) == NULL) {
        snprintf(http->errmsg, sizeof(http->errmsg), "out of memory");
        return RD_ENOMEM;
    }
    http->ui_on = true;
    RD_INFO("http", "ui_on", "dir=%s path=/ui/", dir);
    return 0;
}

int rd_http_start(struct rd_http *http, const struct rd_http_env *env, const char *host,
                  uint16_t port, size_t max_body, const char *tls_cert, const char *tls_key)
{
    routes_init();
    http->env = *env;
    http->env.http = http;
    http->max_body = max_body;
    h2o_config_init(&http->config);
    http->config.max_request_entity_size = max_body * H2O_BODY_FACTOR;
    h2o_hostconf_t *hostconf =
        h2o_config_register_host(&http->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    /* h2o takes the first path that matches: /ui/ before the API's "/". */
    int urv = ui_setup(http, hostconf);
    if (urv != 0)
        return urv;
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler) + sizeof(http));
    handler->on_req = on_req;
    *(struct rd_http **)(handler + 1) = http;

    if (rd_edge_init(&http->edge, env->loop, env->cfg, &http->config, &http->accept_ctx) != 0) {
        snprintf(http->errmsg, sizeof(http->errmsg), "out of memory");
        return RD_ENOMEM;
    }
    h2o_context_init(&http->ctx, env->loop, &http->config);
    http->ctx_inited = true;
    http->accept_ctx.ctx = &http->ctx;
    http->accept_ctx.hosts = http->config.hosts;
    if (tls_cert != NULL && tls_cert[0] != '\0') {
        int rv = tls_setup(http, tls_cert, tls_key, env->cfg->security.client_ca);
        if (rv != 0)
            return rv;
        http->accept_ctx.ssl_ctx = http->ssl_ctx;
    }
    int arv = auth_setup(http, host, port);
    if (arv != 0)
        return arv;

    struct sockaddr_storage addr;
    int rv;
    if (strchr(host, ':') != NULL)
        rv = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    else
        rv = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    /* "[::1]:8080" as it is written in server.listen. */
    char shown[RD_CFG_STR + 16];
    snprintf(shown, sizeof(shown), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    if (rv != 0) {
        snprintf(http->errmsg, sizeof(http->errmsg), "API address %s: %s", shown, uv_strerror(rv));
        return RD_EINVAL;
    }
    uv_tcp_init(env->loop, &http->listener);
    http->listener.data = http;
    http->listening = true;
    if ((rv = uv_tcp_bind(&http->listener, (struct sockaddr *)&addr, 0)) != 0 ||
        (rv = uv_listen((uv_stream_t *)&http->listener, 1024, on_accept)) != 0) {
        if (rv == UV_EADDRINUSE)
            snprintf(http->errmsg, sizeof(http->errmsg),
                     "API address %s is already in use by another process", shown);
        else
            snprintf(http->errmsg, sizeof(http->errmsg), "cannot listen on API address %s: %s",
                     shown, uv_strerror(rv));
        return RD_EIO;
    }
    rd_http_streams_init(http);
    RD_INFO("http", "listening", "addr=%s:%u protocols=%s max_body=%zu", host, port,
            http->ssl_ctx ? "tls(h2,http/1.1)" : "http/1.1,h2c", max_body);
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    (void)h;
}

void rd_http_begin_shutdown(struct rd_http *http)
{
    if (http->listening) {
        http->listening = false;
        uv_close((uv_handle_t *)&http->listener, listener_closed);
    }
    rd_edge_stop(&http->edge);
    rd_http_streams_shutdown(http);
    if (http->ctx_inited)
        h2o_context_request_shutdown(&http->ctx);
}

static size_t list_len(h2o_linklist_t *l)
{
    size_t n = 0;
    for (h2o_linklist_t *i = l->next; i != l; i = i->next)
        n++;
    return n;
}

size_t rd_http_connections(struct rd_http *http)
{
    if (!http->ctx_inited)
        return 0;
    return list_len(&http->ctx.http1._conns) + list_len(&http->ctx.http2._conns);
}
