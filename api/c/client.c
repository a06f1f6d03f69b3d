/*
 * librecoveryd-client (include/recoveryd/client.h): one libcurl easy handle
 * per client, reused across calls (keep-alive), and the replica rules of the
 * header in rdc_request().
 */
#include "recoveryd/client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>

#define DEFAULT_ENDPOINT   "http://127.0.0.1:8080"
#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_RETRY_MS   10000
#define MAX_ENDPOINTS      16
#define MAX_REDIRECTS      5
#define MAX_BODY           (64u << 20) /* answers larger than this are refused */
#define AGENT_CALL         4           /* rdc_request flag: the agent timeout applies */

struct rdc_client {
    char *endpoints[MAX_ENDPOINTS];
    size_t n_endpoints;
    size_t cur;  /* the endpoint that answered last */
    char *hint;  /* the leader's base URL from a 307 when it is not in the list */
    char *token; /* NULL: none */
    char *ca_file;
    long timeout_ms; /* 0: defaults (DEFAULT_TIMEOUT_MS, agent_timeout_ms) */
    long agent_timeout_ms;
    long retry_ms;
    CURL *curl;
    rdc_progress_fn progress;
    void *progress_arg;
    int64_t call_start_ms;
    int64_t progress_last_ms;
    long status;
    json_t *err_body; /* the last error answer's JSON, NULL when none */
    char errmsg[1024];
    char errcode[64];
    char endpoint[256];
};

/* One answer of one endpoint. */
struct answer {
    long status;
    CURLcode curl_code;
    bool sent; /* the request left (pretransfer done): a write may have landed */
    char *body;
    size_t len;
    char location[512];
    long retry_after; /* seconds, -1 when absent */
    char curl_error[CURL_ERROR_SIZE];
};

/* ---- errors ------------------------------------------------------------------ */

const char *rdc_strerror(int err)
{
    switch (err) {
    case RDC_OK:
        return "ok";
#define RDC__ERR_STR(name, code, msg)                                                              \
    case RDC_E##name:                                                                              \
        return msg;
        RDC_ERRNO_MAP(RDC__ERR_STR)
#undef RDC__ERR_STR
    }
    return "unknown error";
}

const char *rdc_err_name(int err)
{
    switch (err) {
    case RDC_OK:
        return "RDC_OK";
#define RDC__ERR_NAME(name, code, msg)                                                             \
    case RDC_E##name:                                                                              \
        return "RDC_E" #name;
        RDC_ERRNO_MAP(RDC__ERR_NAME)
#undef RDC__ERR_NAME
    }
    return "RDC_UNKNOWN_ERROR";
}

__attribute__((format(printf, 4, 5))) static int fail(rdc_client *c, int err, const char *code,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    snprintf(c->errcode, sizeof c->errcode, "%s", code ? code : "");
    return err;
}

const char *rdc_errmsg(const rdc_client *c)
{
    return c->errmsg;
}

const json_t *rdc_error_body(const rdc_client *c)
{
    return c->err_body;
}

const char *rdc_errcode(const rdc_client *c)
{
    return c->errcode;
}

long rdc_status(const rdc_client *c)
{
    return c->status;
}

const char *rdc_endpoint(const rdc_client *c)
{
    return c->endpoint;
}

void rdc_set_progress(rdc_client *c, rdc_progress_fn fn, void *arg)
{
    c->progress = fn;
    c->progress_arg = arg;
}

/* ---- the client ---------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const char *env_or(const char *v, const char *name)
{
    if (v != NULL)
        return v;
    const char *e = getenv(name);
    return e != NULL && e[0] != '\0' ? e : NULL;
}

/* Splits `list` at commas into c->endpoints (trailing slashes dropped). */
static int parse_endpoints(rdc_client *c, const char *list, char *err, size_t err_len)
{
    const char *p = list;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && (p[0] == ' ' || p[0] == '\t'))
            p++, n--;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '/'))
            n--;
        if (n > 0) {
            if (c->n_endpoints == MAX_ENDPOINTS) {
                snprintf(err, err_len, "endpoints: at most %d", MAX_ENDPOINTS);
                return RDC_EINVAL;
            }
            if (!((n > 7 && strncmp(p, "http://", 7) == 0) ||
                  (n > 8 && strncmp(p, "https://", 8) == 0)) ||
                n >= 200) {
                snprintf(err, err_len,
                         "endpoints: '%.*s' is not a base URL like http://127.0.0.1:8080", (int)n,
                         p);
                return RDC_EINVAL;
            }
            char *s = strndup(p, n);
            if (s == NULL)
                return RDC_ENOMEM;
            c->endpoints[c->n_endpoints++] = s;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    if (c->n_endpoints == 0) {
        snprintf(err, err_len, "endpoints: no URL in '%s'", list);
        return RDC_EINVAL;
    }
    return 0;
}

int rdc_client_new(const struct rdc_options *opts, rdc_client **out, char *err, size_t err_len)
{
    char scratch[8];
    if (err == NULL) {
        err = scratch;
        err_len = sizeof scratch;
    }
    err[0] = '\0';
    *out = NULL;
    struct rdc_options o = {0};
    if (opts != NULL)
        o = *opts;
    if (o.timeout_ms < 0 || o.retry_ms < 0) {
        snprintf(err, err_len, "timeout_ms and retry_ms must not be negative");
        return RDC_EINVAL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, err_len, "curl_global_init failed");
        return RDC_ENOMEM;
    }
    rdc_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, err_len, "out of memory");
        return RDC_ENOMEM;
    }
    const char *eps = env_or(o.endpoints, "RECOVERYD_ENDPOINTS");
    int rc = parse_endpoints(c, eps ? eps : DEFAULT_ENDPOINT, err, err_len);
    const char *token = env_or(o.token, "RECOVERYD_TOKEN");
    const char *ca = env_or(o.ca_file, "RECOVERYD_CACERT");
    if (rc == 0 && token != NULL && (c->token = strdup(token)) == NULL)
        rc = RDC_ENOMEM;
    if (rc == 0 && ca != NULL && (c->ca_file = strdup(ca)) == NULL)
        rc = RDC_ENOMEM;
    if (rc == 0 && (c->curl = curl_easy_init()) == NULL)
        rc = RDC_ENOMEM;
    if (rc != 0) {
        if (rc == RDC_ENOMEM && err[0] == '\0')
            snprintf(err, err_len, "out of memory");
        rdc_client_free(c);
        return rc;
    }
    c->timeout_ms = o.timeout_ms;
    c->retry_ms = o.retry_ms > 0 ? o.retry_ms : DEFAULT_RETRY_MS;
    *out = c;
    return 0;
}

void rdc_client_free(rdc_client *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_endpoints; i++)
        free(c->endpoints[i]);
    free(c->hint);
    free(c->token);
    free(c->ca_file);
    json_decref(c->err_body);
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    free(c);
}

/* ---- one request to one endpoint --------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n;
    if (a->len + len > MAX_BODY)
        return 0;
    char *b = realloc(a->body, a->len + len + 1);
    if (b == NULL)
        return 0;
    memcpy(b + a->len, data, len);
    a->len += len;
    b[a->len] = '\0';
    a->body = b;
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n;
    if (len > 9 && strncasecmp(data, "location:", 9) == 0) {
        const char *v = data + 9;
        size_t vl = len - 9;
        while (vl > 0 && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        snprintf(a->location, sizeof a->location, "%.*s", (int)vl, v);
    } else if (len > 12 && strncasecmp(data, "retry-after:", 12) == 0) {
        a->retry_after = strtol(data + 12, NULL, 10);
    }
    return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    rdc_client *c = arg;
    int64_t now = now_ms();
    if (c->progress != NULL && now - c->progress_last_ms >= 100) {
        c->progress_last_ms = now;
        c->progress(c->progress_arg, (long)(now - c->call_start_ms));
    }
    return 0;
}

static void answer_free(struct answer *a)
{
    free(a->body);
    memset(a, 0, sizeof *a);
}

static int send_once(rdc_client *c, const char *method, const char *url, const char *body,
                     long timeout_ms, struct answer *a)
{
    answer_free(a);
    a->retry_after = -1;
    CURL *h = c->curl;
    curl_easy_reset(h);
    struct curl_slist *hdrs = NULL;
    char auth[1100];
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    /* Every POST, PUT and DELETE says JSON, with a body or without: the
     * engine refuses another Content-Type (and curl's default is a form). */
    if (strcmp(method, "GET") != 0)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (c->token != NULL) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(body != NULL ? strlen(body) : 0));
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 3000 ? timeout_ms : 3000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, a->curl_error);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "librecoveryd-client/" RDC_VERSION_STRING);
    if (c->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    a->curl_error[0] = '\0';
    a->curl_code = curl_easy_perform(h);
    curl_off_t pre = 0;
    curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pre);
    a->sent = pre > 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(hdrs);
    if (a->curl_code != CURLE_OK && a->curl_error[0] == '\0')
        snprintf(a->curl_error, sizeof a->curl_error, "%s", curl_easy_strerror(a->curl_code));
    return a->curl_code == CURLE_OK ? 0 : -1;
}

/* error.code and error.message of an error body into `code` and `msg`. */
static void error_fields(json_t *doc, char *code, size_t code_len, char *msg, size_t msg_len)
{
    json_t *e = json_object_get(doc, "error");
    const char *cs = json_string_value(json_object_get(e, "code"));
    const char *ms = json_string_value(json_object_get(e, "message"));
    snprintf(code, code_len, "%s", cs ? cs : "");
    snprintf(msg, msg_len, "%s", ms ? ms : "");
}

static bool is_transient_503(const char *code)
{
    return strcmp(code, "not_leader") == 0 || strcmp(code, "no_quorum") == 0 ||
           strcmp(code, "not_ready") == 0 || strcmp(code, "shutting_down") == 0 ||
           strcmp(code, "storage_unavailable") == 0 || code[0] == '\0';
}

/* The base URL of a Location that is `path` on another replica, in `out`. */
static bool location_base(const char *loc, const char *path, char *out, size_t len)
{
    size_t ll = strlen(loc), pl = strlen(path);
    if (strncmp(loc, "http://", 7) != 0 && strncmp(loc, "https://", 8) != 0)
        return false;
    const char *q = strchr(path, '?');
    size_t cmp = q ? (size_t)(q - path) : pl; /* the engine repeats the path, maybe not the query */
    const char *at = strstr(loc + 8, "/");
    if (at == NULL || (size_t)(ll - (size_t)(at - loc)) < cmp || strncmp(at, path, cmp) != 0)
        return false;
    snprintf(out, len, "%.*s", (int)(at - loc), loc);
    return true;
}

/* The error of a non-2xx answer with the engine's `code`. */
static int status_error(long status, const char *code)
{
    if (status == 404)
        return RDC_ENOTFOUND;
    if (status == 401 || status == 403)
        return RDC_EAUTH;
    if (status == 409)
        return strcmp(code, "fenced") == 0 ? RDC_EFENCED : RDC_ECONFLICT;
    if (status == 503)
        return strcmp(code, "outcome_unknown") == 0 ? RDC_EUNKNOWN : RDC_EUNAVAILABLE;
    return RDC_EHTTP;
}

int rdc_request(rdc_client *c, const char *method, const char *path, const json_t *body, int flags,
                json_t **out)
{
    if (out != NULL)
        *out = NULL;
    c->status = 0;
    c->errmsg[0] = c->errcode[0] = '\0';
    json_decref(c->err_body);
    c->err_body = NULL;
    if (method == NULL || path == NULL || path[0] != '/')
        return fail(c, RDC_EINVAL, NULL, "a method and a path starting with / are required");
    bool idempotent = (flags & RDC_IDEMPOTENT) || strcmp(method, "GET") == 0;
    char *text = NULL;
    if (body != NULL && (text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
        return fail(c, RDC_EINVAL, NULL, "the request body cannot be encoded as JSON");
    long timeout = c->timeout_ms > 0 ? c->timeout_ms : DEFAULT_TIMEOUT_MS;
    if (c->timeout_ms == 0 && c->agent_timeout_ms > 0 && (flags & AGENT_CALL))
        timeout = c->agent_timeout_ms;

    c->call_start_ms = c->progress_last_ms = now_ms();
    int64_t deadline = c->call_start_ms + c->retry_ms;
    struct answer a = {0};
    char base[256], url[2048], why[1024] = "";
    size_t idx = c->cur, tried = 0, dead_rounds = 0, dead_in_round = 0;
    bool redirected = false, saw_503 = false;
    int redirects = 0, rc;
    long backoff = 50;
    for (;;) {
        bool from_hint = !redirected && c->hint != NULL;
        if (!redirected)
            snprintf(base, sizeof base, "%s", from_hint ? c->hint : c->endpoints[idx]);
        snprintf(url, sizeof url, "%s%s", base, path);
        if (send_once(c, method, url, text, timeout, &a) != 0) {
            snprintf(why, sizeof why, "%s: %s", base, a.curl_error);
            if (a.sent && !idempotent) {
                rc = fail(c, RDC_EUNKNOWN, "outcome_unknown",
                          "%s %s: %s; the request was sent, so it may have been applied", method,
                          path, why);
                goto done;
            }
            /* A replica that redirected us to a dead leader did answer: only
             * the listed endpoints themselves count as dead. */
            if (!redirected)
                dead_in_round++;
        } else if (a.status == 307 && a.location[0] != '\0') {
            if (++redirects > MAX_REDIRECTS) {
                rc = fail(c, RDC_EPROTO, "not_leader", "%s %s: more than %d redirects (last: %s)",
                          method, path, MAX_REDIRECTS, a.location);
                goto done;
            }
            /* Never from https to http: the token would then cross in clear text. */
            bool downgrade =
                strncmp(base, "https://", 8) == 0 && strncmp(a.location, "https://", 8) != 0;
            if (downgrade || !location_base(a.location, path, base, sizeof base)) {
                rc = fail(c, RDC_EPROTO, "not_leader", "%s %s: a redirect to an unexpected URL %s",
                          method, path, a.location);
                goto done;
            }
            redirected = true;
            continue;
        } else if (a.status == 503 || a.status == 429) {
            json_t *doc = json_loads(a.body ? a.body : "", 0, NULL);
            char code[64], msg[512];
            error_fields(doc, code, sizeof code, msg, sizeof msg);
            json_decref(doc);
            snprintf(why, sizeof why, "%s answered %ld %s: %s", base, a.status, code, msg);
            c->status = a.status;
            if (a.status == 429) {
                long wait = a.retry_after > 0 ? a.retry_after * 1000 : 1000;
                if (now_ms() + wait > deadline) {
                    rc = fail(c, RDC_EHTTP, code, "%s %s: %s", method, path, msg);
                    goto done;
                }
                sleep_ms(wait);
                continue;
            }
            bool unknown = strcmp(code, "outcome_unknown") == 0;
            if (unknown && !idempotent) {
                rc = fail(c, RDC_EUNKNOWN, code, "%s %s: %s", method, path, msg);
                goto done;
            }
            if (!unknown && !is_transient_503(code)) {
                rc = fail(c, RDC_EUNAVAILABLE, code, "%s %s: %s", method, path, msg);
                goto done;
            }
            saw_503 = true;
        } else {
            break; /* an answer to hand back */
        }
        /* On to the next endpoint. */
        if (from_hint) {
            free(c->hint);
            c->hint = NULL;
        } else {
            idx = (idx + 1) % c->n_endpoints;
            tried++;
        }
        redirected = false;
        redirects = 0;
        if (tried > 0 && tried % c->n_endpoints == 0) {
            /* A whole round without an answer: twice nothing but connection
             * errors means nothing is there; otherwise wait a little (an
             * election) and go round again. */
            if (dead_in_round >= c->n_endpoints && ++dead_rounds >= 2) {
                rc = fail(c, RDC_EUNREACHABLE, NULL, "no endpoint answered (%zu tried; last: %s)",
                          c->n_endpoints, why);
                goto done;
            }
            dead_in_round = 0;
            sleep_ms(backoff);
            backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
        }
        if (now_ms() >= deadline) {
            rc = fail(c, saw_503 ? RDC_EUNAVAILABLE : RDC_EUNREACHABLE, NULL,
                      "%s %s: no answer within %ld ms (last: %s)", method, path, c->retry_ms, why);
            goto done;
        }
    }

    /* An answer: remember who gave it, and whether that is a listed endpoint. */
    c->status = a.status;
    snprintf(c->endpoint, sizeof c->endpoint, "%s", base);
    bool listed = false;
    for (size_t i = 0; i < c->n_endpoints; i++) {
        if (strcmp(c->endpoints[i], base) == 0) {
            c->cur = i;
            listed = true;
        }
    }
    free(c->hint);
    c->hint = listed ? NULL : strdup(base);

    json_t *doc = NULL;
    if (a.len > 0) {
        json_error_t je;
        doc = json_loadb(a.body, a.len, JSON_DECODE_ANY, &je);
        if (doc == NULL) {
            rc = fail(c, RDC_EPROTO, NULL, "%s %s: the %ld answer of %s is not JSON: %s", method,
                      path, a.status, base, je.text);
            goto done;
        }
    } else {
        doc = json_null();
    }
    if (a.status >= 200 && a.status < 300) {
        rc = 0;
    } else {
        char code[64], msg[512];
        error_fields(doc, code, sizeof code, msg, sizeof msg);
        if (msg[0] == '\0')
            snprintf(msg, sizeof msg, "%s %s: HTTP %ld", method, path, a.status);
        rc = fail(c, status_error(a.status, code), code, "%s", msg);
        c->err_body = doc;
        doc = NULL;
    }
    if (out != NULL)
        *out = doc;
    else
        json_decref(doc);
done:
    answer_free(&a);
    free(text);
    return rc;
}

/* ---- calls ------------------------------------------------------------------------- */

/* PREFIX/escaped(id)SUFFIX?params into `buf`. */
static int make_path(rdc_client *c, char *buf, size_t len, const char *prefix, const char *id,
                     const char *suffix, const char *const *params)
{
    size_t o = (size_t)snprintf(buf, len, "%s", prefix);
    if (id != NULL) {
        if (id[0] == '\0')
            return fail(c, RDC_EINVAL, NULL, "an empty id");
        char *e = curl_easy_escape(NULL, id, 0);
        if (e == NULL)
            return fail(c, RDC_ENOMEM, NULL, "out of memory");
        o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "%s", e);
        curl_free(e);
    }
    if (suffix != NULL)
        o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "%s", suffix);
    char sep = '?';
    for (size_t i = 0; params != NULL && params[i] != NULL; i += 2) {
        const char *v = params[i + 1];
        if (v == NULL || v[0] == '\0')
            continue;
        char *e = curl_easy_escape(NULL, v, 0);
        if (e == NULL)
            return fail(c, RDC_ENOMEM, NULL, "out of memory");
        o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "%c%s=%s", sep, params[i], e);
        curl_free(e);
        sep = '&';
        if (params[i + 1] == NULL)
            break;
    }
    if (o >= len)
        return fail(c, RDC_EINVAL, NULL, "the request path is too long");
    return 0;
}

static int get(rdc_client *c, const char *prefix, const char *id, const char *suffix,
               const char *const *params, json_t **out)
{
    char path[4096];
    int rc = make_path(c, path, sizeof path, prefix, id, suffix, params);
    if (out != NULL)
        *out = NULL;
    return rc != 0 ? rc : rdc_request(c, "GET", path, NULL, 0, out);
}

/* `method` PREFIX/id SUFFIX with `body` (which this releases). */
static int send_json(rdc_client *c, const char *method, const char *prefix, const char *id,
                     const char *suffix, json_t *body, int flags, json_t **out)
{
    char path[2048];
    if (out != NULL)
        *out = NULL;
    int rc = make_path(c, path, sizeof path, prefix, id, suffix, NULL);
    if (rc == 0)
        rc = rdc_request(c, method, path, body, flags, out);
    json_decref(body);
    return rc;
}

int rdc_health(rdc_client *c, json_t **out)
{
    return rdc_request(c, "GET", "/health", NULL, RDC_LOCAL, out);
}

int rdc_cluster_health(rdc_client *c, json_t **out)
{
    return rdc_request(c, "GET", "/api/v1/health/cluster", NULL, RDC_LOCAL, out);
}

int rdc_nodes_list(rdc_client *c, const char *const *params, json_t **out)
{
    return get(c, "/api/v1/nodes", NULL, NULL, params, out);
}

int rdc_node_get(rdc_client *c, const char *node_id, json_t **out)
{
    return get(c, "/api/v1/nodes/", node_id, NULL, NULL, out);
}

static json_t *reason_body(const char *reason)
{
    return reason != NULL ? json_pack("{s:s}", "reason", reason) : json_object();
}

/* Drain, isolate and readmit answer the node unchanged when it is in that
 * state already: a retry after an unknown outcome is safe. */
int rdc_node_drain(rdc_client *c, const char *node_id, const char *reason, json_t **out)
{
    return send_json(c, "POST", "/api/v1/nodes/", node_id, "/drain", reason_body(reason),
                     RDC_IDEMPOTENT, out);
}

int rdc_node_isolate(rdc_client *c, const char *node_id, const char *reason, json_t **out)
{
    return send_json(c, "POST", "/api/v1/nodes/", node_id, "/isolate", reason_body(reason),
                     RDC_IDEMPOTENT, out);
}

int rdc_node_readmit(rdc_client *c, const char *node_id, const char *reason, json_t **out)
{
    return send_json(c, "POST", "/api/v1/nodes/", node_id, "/readmit", reason_body(reason),
                     RDC_IDEMPOTENT, out);
}

/* Deleting a node that left answers the same: idempotent. */
int rdc_node_remove(rdc_client *c, const char *node_id, json_t **out)
{
    return send_json(c, "DELETE", "/api/v1/nodes/", node_id, NULL, NULL, RDC_IDEMPOTENT, out);
}

int rdc_tasks_list(rdc_client *c, const char *const *params, json_t **out)
{
    return get(c, "/api/v1/tasks", NULL, NULL, params, out);
}

int rdc_task_get(rdc_client *c, const char *task_id, json_t **out)
{
    return get(c, "/api/v1/tasks/", task_id, NULL, NULL, out);
}

static int random_uuid(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return 0;
}

int rdc_task_submit(rdc_client *c, const json_t *spec, json_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (spec != NULL && !json_is_object(spec))
        return fail(c, RDC_EINVAL, NULL, "a task spec is a JSON object");
    json_t *body = spec != NULL ? json_deep_copy(spec) : json_object();
    if (body == NULL)
        return fail(c, RDC_ENOMEM, NULL, "out of memory");
    json_t *id = json_object_get(body, "task_id");
    if (id == NULL || json_is_null(id)) {
        char uuid[37];
        if (random_uuid(uuid) != 0) {
            json_decref(body);
            return fail(c, RDC_EINVAL, NULL, "getrandom: %s", strerror(errno));
        }
        json_object_set_new(body, "task_id", json_string(uuid));
    }
    return send_json(c, "POST", "/api/v1/tasks", NULL, NULL, body, RDC_IDEMPOTENT, out);
}

/* POST /api/v1/tasks/{id}/<verb> (cancel, retry): neither is idempotent (a
 * second one answers 409). An engine without the route answers 404 or 405:
 * said so, unless the task itself is missing. */
static int task_action(rdc_client *c, const char *task_id, const char *verb, json_t *body,
                       json_t **out)
{
    char suffix[16];
    snprintf(suffix, sizeof suffix, "/%s", verb);
    int rc = send_json(c, "POST", "/api/v1/tasks/", task_id, suffix, body, 0, out);
    long status = c->status;
    if (rc != RDC_ENOTFOUND && !(rc == RDC_EHTTP && status == 405))
        return rc;
    /* 404 is either no such task or no such route: ask for the task. */
    json_t *task = NULL;
    int grc = rdc_task_get(c, task_id, &task);
    json_decref(task);
    if (grc != 0)
        return grc;
    c->status = status;
    return fail(c, RDC_EHTTP, "unsupported",
                "this engine cannot %s tasks (POST /api/v1/tasks/%s/%s answered %ld)", verb,
                task_id, verb, status);
}

int rdc_task_cancel(rdc_client *c, const char *task_id, json_t **out)
{
    return rdc_task_cancel_reason(c, task_id, NULL, out);
}

int rdc_task_cancel_reason(rdc_client *c, const char *task_id, const char *reason, json_t **out)
{
    return task_action(c, task_id, "cancel", reason_body(reason), out);
}

int rdc_task_retry(rdc_client *c, const char *task_id, json_t **out)
{
    return task_action(c, task_id, "retry", json_object(), out);
}

int rdc_faults_status(rdc_client *c, json_t **out)
{
    return rdc_request(c, "GET", "/api/v1/faults/status", NULL, 0, out);
}

int rdc_faults_list(rdc_client *c, const char *const *params, json_t **out)
{
    return get(c, "/api/v1/faults/records", NULL, NULL, params, out);
}

int rdc_fault_get(rdc_client *c, const char *fault_id, json_t **out)
{
    return get(c, "/api/v1/faults/records/", fault_id, NULL, NULL, out);
}

int rdc_conflicts_list(rdc_client *c, const char *const *params, json_t **out)
{
    return get(c, "/api/v1/conflicts", NULL, NULL, params, out);
}

int rdc_conflict_get(rdc_client *c, const char *conflict_id, json_t **out)
{
    return get(c, "/api/v1/conflicts/", conflict_id, NULL, NULL, out);
}

int rdc_recoveries_list(rdc_client *c, const char *const *params, json_t **out)
{
    return get(c, "/api/v1/recovery/tasks", NULL, NULL, params, out);
}

int rdc_recovery_get(rdc_client *c, const char *recovery_id, json_t **out)
{
    return get(c, "/api/v1/recovery/tasks/", recovery_id, NULL, NULL, out);
}

/* Not retried after an unknown outcome: a repeat answers the open run, but
 * once that run closed it would open another. */
int rdc_recovery_trigger(rdc_client *c, const char *node_id, const char *strategy, json_t **out)
{
    if (node_id == NULL || node_id[0] == '\0')
        return fail(c, RDC_EINVAL, NULL, "a node id is required");
    json_t *body = json_pack("{s:s}", "node_id", node_id);
    if (strategy != NULL)
        json_object_set_new(body, "strategy", json_string(strategy));
    return send_json(c, "POST", "/api/v1/recovery/trigger", NULL, NULL, body, 0, out);
}

int rdc_backup_trigger(rdc_client *c, const char *target, json_t **out)
{
    json_t *body = target != NULL ? json_pack("{s:s}", "target", target) : json_object();
    return send_json(c, "POST", "/api/v1/backup/trigger", NULL, NULL, body, 0, out);
}

int rdc_backups_list(rdc_client *c, const char *const *params, json_t **out)
{
    return get(c, "/api/v1/backups", NULL, NULL, params, out);
}

int rdc_backup_get(rdc_client *c, const char *backup_id, json_t **out)
{
    return get(c, "/api/v1/backups/", backup_id, NULL, NULL, out);
}

int rdc_backup_verify(rdc_client *c, const char *backup_id, json_t **out)
{
    return send_json(c, "POST", "/api/v1/backups/", backup_id, "/verify", NULL, RDC_IDEMPOTENT,
                     out);
}

int rdc_replicas_list(rdc_client *c, json_t **out)
{
    return rdc_request(c, "GET", "/api/v1/cluster/replicas", NULL, RDC_LOCAL, out);
}

int rdc_replica_add(rdc_client *c, uint64_t id, const char *address, const char *api_url,
                    const char *role, json_t **out)
{
    if (id == 0 || address == NULL || api_url == NULL)
        return fail(c, RDC_EINVAL, NULL, "a replica id, its raft address and its API URL");
    json_t *body = json_pack("{s:I,s:s,s:s,s:s}", "id", (json_int_t)id, "address", address,
                             "api_url", api_url, "role", role ? role : "voter");
    return send_json(c, "POST", "/api/v1/cluster/replicas", NULL, NULL, body, 0, out);
}

int rdc_replica_set_role(rdc_client *c, uint64_t id, const char *role, json_t **out)
{
    if (id == 0 || role == NULL)
        return fail(c, RDC_EINVAL, NULL, "a replica id and a role are required");
    json_t *body = json_pack("{s:I,s:s}", "id", (json_int_t)id, "role", role);
    return send_json(c, "POST", "/api/v1/cluster/replicas", NULL, NULL, body, 0, out);
}

int rdc_replica_remove(rdc_client *c, uint64_t id, json_t **out)
{
    char sid[24];
    snprintf(sid, sizeof sid, "%llu", (unsigned long long)id);
    return send_json(c, "DELETE", "/api/v1/cluster/replicas/", sid, NULL, NULL, 0, out);
}

int rdc_audit_list(rdc_client *c, const char *const *params, json_t **out)
{
    return get(c, "/api/v1/audit", NULL, NULL, params, out);
}

/* A check while one is gathered answers that one: idempotent. */
int rdc_consistency_check(rdc_client *c, json_t **out)
{
    return send_json(c, "POST", "/api/v1/consistency/check", NULL, NULL, NULL, RDC_IDEMPOTENT, out);
}

int rdc_consistency_get(rdc_client *c, const char *check_id, json_t **out)
{
    return get(c, "/api/v1/consistency/checks/", check_id, NULL, NULL, out);
}

int rdc_consistency_list(rdc_client *c, const char *const *params, json_t **out)
{
    return get(c, "/api/v1/consistency/checks", NULL, NULL, params, out);
}

int rdc_policies_reload(rdc_client *c, json_t **out)
{
    return send_json(c, "POST", "/api/v1/policies/reload", NULL, NULL, NULL,
                     RDC_LOCAL | RDC_IDEMPOTENT, out);
}

/* ---- agent calls ---------------------------------------------------------------------- */

int rdc_agent_register(rdc_client *c, const char *node_id, int slots, const json_t *labels,
                       json_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (node_id == NULL || node_id[0] == '\0' || slots < 0)
        return fail(c, RDC_EINVAL, NULL, "a node id and slots >= 0 are required");
    json_t *body =
        json_pack("{s:s,s:{s:i}}", "node_id", node_id, "capacity", "slots", slots > 0 ? slots : 1);
    if (labels != NULL)
        json_object_set_new(body, "labels", json_deep_copy(labels));
    json_t *ans = NULL;
    int rc = send_json(c, "POST", "/api/v1/nodes", NULL, NULL, body, 0, &ans);
    if (rc == 0) {
        json_int_t lease = json_integer_value(json_object_get(ans, "lease_ms"));
        if (lease > 0)
            c->agent_timeout_ms = (long)(lease / 3 > 100 ? lease / 3 : 100);
    }
    if (out != NULL)
        *out = ans;
    else
        json_decref(ans);
    return rc;
}

int rdc_agent_heartbeat(rdc_client *c, const char *node_id, int64_t epoch, int slots_used,
                        const json_t *metrics, json_t **out)
{
    json_t *body =
        json_pack("{s:I,s:{s:i}}", "epoch", (json_int_t)epoch, "load", "slots_used", slots_used);
    if (metrics != NULL)
        json_object_set_new(body, "metrics", json_deep_copy(metrics));
    return send_json(c, "POST", "/api/v1/nodes/", node_id, "/heartbeat", body,
                     RDC_IDEMPOTENT | AGENT_CALL, out);
}

int rdc_heartbeat_revokes(const json_t *hb, const char *task_id, int64_t attempt)
{
    if (hb == NULL || task_id == NULL)
        return 0;
    json_t *revs = json_object_get(hb, "revocations");
    size_t i;
    json_t *e;
    if (json_is_array(revs)) {
        json_array_foreach(revs, i, e)
        {
            const char *id = json_string_value(json_object_get(e, "task_id"));
            if (id != NULL && strcmp(id, task_id) == 0 &&
                json_integer_value(json_object_get(e, "attempt")) == attempt)
                return 1;
        }
        return 0;
    }
    json_array_foreach(json_object_get(hb, "revoked"), i, e)
    {
        const char *id = json_string_value(e);
        if (id != NULL && strcmp(id, task_id) == 0)
            return 1;
    }
    return 0;
}

int rdc_agent_checkpoint(rdc_client *c, const char *task_id, int64_t attempt, int64_t version,
                         const json_t *data, json_t **out)
{
    json_t *body =
        json_pack("{s:I,s:I}", "attempt", (json_int_t)attempt, "version", (json_int_t)version);
    json_object_set_new(body, "data", data != NULL ? json_deep_copy(data) : json_null());
    return send_json(c, "PUT", "/api/v1/tasks/", task_id, "/checkpoint", body,
                     RDC_IDEMPOTENT | AGENT_CALL, out);
}

int rdc_agent_complete(rdc_client *c, const char *task_id, int64_t attempt, const json_t *result,
                       json_t **out)
{
    json_t *body = json_pack("{s:I}", "attempt", (json_int_t)attempt);
    if (result != NULL)
        json_object_set_new(body, "result", json_deep_copy(result));
    return send_json(c, "POST", "/api/v1/tasks/", task_id, "/complete", body,
                     RDC_IDEMPOTENT | AGENT_CALL, out);
}

int rdc_agent_fail(rdc_client *c, const char *task_id, int64_t attempt, const char *error,
                   int retryable, json_t **out)
{
    json_t *body = json_pack("{s:I,s:s,s:b}", "attempt", (json_int_t)attempt, "error",
                             error ? error : "", "retryable", retryable != 0);
    return send_json(c, "POST", "/api/v1/tasks/", task_id, "/fail", body,
                     RDC_IDEMPOTENT | AGENT_CALL, out);
}

int rdc_task_checkpoint(rdc_client *c, const char *task_id, json_t **out)
{
    return get(c, "/api/v1/tasks/", task_id, "/checkpoint", NULL, out);
}
