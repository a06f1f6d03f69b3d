#include <stdarg.h>
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
    const char *segs[8];
    int n_segs;
};

static struct route_def routes[] = {
#define RD__ROUTE_DEF(id, method, pattern, name) {method, pattern, name, rd_api_##id, {0}, 0},
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

static const int status_slots[RD_STATUS_SLOTS - 1] = {200, 201, 202, 204, 307, 400, 401, 403,
                                                      404, 405, 409, 413, 429, 500, 503};

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

/* ---- answering --------------------------------------------------------- */

void rd_http_send_raw(struct rd_http_req *hr, int status, const char *ctype, const char *body,
                      size_t len)
{
    h2o_req_t *req = hr->req;
    struct rd_http *http = hr->env->http;
    http->requests[hr->route][status_slot(status)]++;
    rd_hist_observe(&http->latency[hr->route], (double)(rd_mono_ns() - hr->t0) / 1e9);
    if (req == NULL)
        return;
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
    p->hr = *hr;
    p->guard = h2o_mem_alloc_shared(&hr->req->pool, sizeof(*p->guard), guard_dispose);
    p->guard->p = p;
    hr->env->http->pending++;
    return p;
}

void rd_http_pending_done(struct rd_http_pending *p)
{
    /* If the pool is gone, so is the guard; otherwise unhook it. */
    if (p->hr.req != NULL)
        p->guard->p = NULL;
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
    int rv = rd_replica_propose(env->replica, cmd, done, p);
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
        rd_http_bad_request(hr, "limit", "limit must be an integer from 1 to %d", LIST_MAX);
        return -1;
    }
    return (int)v;
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
    if (req->entity.base == NULL || req->entity.len == 0) {
        rd_http_bad_request(hr, NULL, "request body is empty: a JSON object is required");
        return NULL;
    }
    json_error_t jerr;
    json_t *obj = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        rd_http_bad_request(hr, NULL, "malformed JSON at line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        rd_http_bad_request(hr, NULL, "request body must be a JSON object");
        return NULL;
    }
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
    case RD_ROUTE_REPLICAS_LIST:
    case RD_ROUTE_CONSISTENCY_LOCAL:
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
    if (!read || rd_replica_voters(env->replica) <= 1) {
        if (read)
            applied_header(hr);
        routes[route].fn(hr);
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

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct rd_http *http = *(struct rd_http **)(self + 1);
    if (req->version >= 0x200)
        rd_edge_h2_request(req);
    struct rd_http_req hr = {
        .req = req, .env = &http->env, .route = RD_ROUTE_NONE, .t0 = rd_mono_ns()};
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
        http->env.debug(&hr, http->env.debug_data);
        return 0;
    }
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
    if (req->entity.len > http->max_body) {
        rd_http_send_error(&hr, 413, "too_large",
                           json_pack("{s:I}", "limit", (json_int_t)http->max_body),
                           "request body of %zu bytes is over the limit of %zu bytes",
                           req->entity.len, http->max_body);
        return 0;
    }
    dispatch(&hr);
    return 0;
}

/* ---- listener ---------------------------------------------------------- */

static void on_accept(uv_stream_t *listener, int status)
{
    struct rd_http *http = listener->data;
    rd_edge_accept(&http->edge, listener, status);
}

static int tls_setup(struct rd_http *http, const char *cert, const char *key)
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
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    http->ssl_ctx = ctx;
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
        int rv = tls_setup(http, tls_cert, tls_key);
        if (rv != 0)
            return rv;
        http->accept_ctx.ssl_ctx = http->ssl_ctx;
    }

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
