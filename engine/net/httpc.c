/*
 * libcurl multi-socket on libuv (see httpc.h for the contract).
 *
 * Shape, after curl's own multi-uv example: curl tells us through
 * on_curl_socket() which sockets to watch for what (one uv_poll each, its
 * context attached to the socket with curl_multi_assign) and through
 * on_curl_timer() when to call it back regardless (one uv_timer). Both feed
 * curl_multi_socket_action(), after which finished transfers are collected
 * with curl_multi_info_read().
 *
 * Callbacks are never fired from inside a curl callback or from inside
 * rd_httpc_request(); every request whose callback is about to fire is first
 * detached from the pending list (and its easy handle from the multi handle),
 * so a callback may start, cancel or close anything without pulling the
 * floor from under the loop that fired it.
 *
 * Lifetimes: an HTTP request is freed right after its callback. A tcp://
 * request owns libuv handles (a timer, a TCP handle, maybe a getaddrinfo),
 * so it is freed when the last of them has called back (`refs`). The client
 * itself is freed once closing and every handle it owns has been closed
 * (`alive`).
 */
#include "net/httpc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "common/util.h"
#include "recoveryd/error.h"
#include "recoveryd/version.h"

#define HOST_MAX 255

enum req_kind { REQ_HTTP = 1, REQ_TCP = 2 };

/* One socket curl asked us to watch. */
struct sock_ctx {
    uv_poll_t poll;
    struct rd_httpc *c;
    curl_socket_t fd;
    struct sock_ctx *prev, *next; /* c->socks */
};

struct req {
    struct rd_httpc *c;
    struct req *prev, *next; /* c->pending until the callback fires, then a local list */
    void *owner;
    rd_http_cb cb;
    void *data;
    uint64_t start_ns;
    uint64_t timeout_ms;
    int kind;
    bool finished; /* the callback has fired (or is firing) */

    /* http:// and https:// */
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t body_len, body_cap;
    bool truncated; /* the body reached RD_HTTPC_BODY_MAX */
    bool nomem;
    char errbuf[CURL_ERROR_SIZE];

    /* tcp:// */
    char host[HOST_MAX + 1];
    char port[8];
    uv_timer_t timer; /* the timeout; also delivers a deferred failure */
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_getaddrinfo_t gai;
    struct addrinfo *ai;      /* resolved addresses (freed with the request) */
    struct addrinfo *ai_next; /* the next one to try after a failed connect */
    bool timer_open, tcp_open, gai_busy;
    int refs;      /* handles and requests that still have to call back */
    bool deferred; /* the timer delivers d_* instead of a timeout */
    int d_cause;
    char d_error[128];
    int last_err; /* libuv error of the last failed connect */
};

struct rd_httpc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct req *head, *tail; /* pending requests, oldest first */
    size_t pending;
    struct sock_ctx *socks;
    size_t alive; /* the timer + socket contexts + tcp requests not yet freed */
    bool closing;
    void (*done)(void *data);
    void *done_data;
};

/* ---- bookkeeping ------------------------------------------------------------ */

static void pending_link(struct rd_httpc *c, struct req *r)
{
    r->prev = c->tail;
    r->next = NULL;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->pending++;
}

static void pending_unlink(struct rd_httpc *c, struct req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        c->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        c->tail = r->prev;
    r->prev = r->next = NULL;
    c->pending--;
}

/* Frees the client once it is closing and nothing it owns is still open. */
static void maybe_done(struct rd_httpc *c)
{
    if (!c->closing || c->alive > 0)
        return;
    void (*done)(void *) = c->done;
    void *data = c->done_data;
    free(c);
    curl_global_cleanup();
    if (done)
        done(data);
}

static uint64_t elapsed_since(uint64_t start_ns)
{
    uint64_t now = rd_mono_ns();
    return now > start_ns ? now - start_ns : 0;
}

/* ---- curl's sockets and timer --------------------------------------------------- */

static void check_done(struct rd_httpc *c);

static void on_sock_closed(uv_handle_t *h)
{
    struct sock_ctx *sc = h->data;
    struct rd_httpc *c = sc->c;
    free(sc);
    c->alive--;
    maybe_done(c);
}

static void sock_close(struct sock_ctx *sc)
{
    struct rd_httpc *c = sc->c;
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        c->socks = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    /* uv_close stops the poll (and drops the fd from epoll) before curl
     * closes the socket, so a reused fd number is never watched twice. */
    uv_close((uv_handle_t *)&sc->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *sc = h->data;
    struct rd_httpc *c = sc->c;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(c->multi, sc->fd, flags, &running);
    check_done(c);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct rd_httpc *c = userp;
    struct sock_ctx *sc = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            curl_multi_assign(c->multi, s, NULL);
            sock_close(sc);
        }
        return 0;
    }
    if (c->closing)
        return 0;
    if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (!sc)
            return -1;
        if (uv_poll_init_socket(c->loop, &sc->poll, s) != 0) {
            free(sc);
            return -1;
        }
        sc->c = c;
        sc->fd = s;
        sc->poll.data = sc;
        sc->next = c->socks;
        if (c->socks)
            c->socks->prev = sc;
        c->socks = sc;
        c->alive++;
        curl_multi_assign(c->multi, s, sc);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&sc->poll, events, on_poll) == 0 ? 0 : -1;
}

static void on_timeout(uv_timer_t *t)
{
    struct rd_httpc *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

/* Never calls curl back from here (curl forbids it): a 0 ms timeout is run
 * by the uv_timer on the next loop iteration. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct rd_httpc *c = userp;
    (void)multi;
    if (c->closing)
        return 0;
    if (timeout_ms < 0) {
        uv_timer_stop(&c->timer);
    } else {
        uv_update_time(c->loop); /* curl counts from now, not from the loop's cached time */
        uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

/* ---- HTTP requests ------------------------------------------------------------- */

static void http_free(struct req *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct req *r = ud;
    size_t len = size * n;
    size_t room = RD_HTTPC_BODY_MAX - r->body_len;
    size_t take = len < room ? len : room;
    if (r->body_len + take + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + take + 1)
            cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb) {
            r->nomem = true;
            return 0;
        }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, p, take);
    r->body_len += take;
    r->body[r->body_len] = '\0';
    if (take < len) {
        /* Ends the transfer (CURLE_WRITE_ERROR): an endless answer costs at
         * most the cap, and what came is still reported with its status. */
        r->truncated = true;
        return 0;
    }
    return len;
}

/* Fills the failure part of `resp` from curl's result. */
static void http_failure(struct req *r, CURLcode rc, long os_errno, char *msg, size_t msg_len,
                         struct rd_http_response *resp)
{
    resp->status = 0;
    if (r->nomem) {
        resp->cause = RD_PROBE_NETWORK;
        snprintf(msg, msg_len, "out of memory for the response body");
    } else if (rc == CURLE_OPERATION_TIMEDOUT ||
               (rc == CURLE_COULDNT_CONNECT && os_errno == ETIMEDOUT)) {
        resp->cause = RD_PROBE_TIMEOUT;
        snprintf(msg, msg_len, "no answer within %" PRIu64 " ms", r->timeout_ms);
    } else if (rc == CURLE_COULDNT_CONNECT && os_errno == ECONNREFUSED) {
        resp->cause = RD_PROBE_REFUSED;
        snprintf(msg, msg_len, "connection refused");
    } else if ((rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) &&
               (os_errno == 0 || os_errno == ECONNRESET || os_errno == EPIPE)) {
        /* The agent's host answered and dropped the connection: whatever
         * listened is gone or closing, as a crashed process's sockets are. */
        resp->cause = RD_PROBE_REFUSED;
        snprintf(msg, msg_len, "connection dropped by the agent: %s",
                 r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
    } else {
        resp->cause = RD_PROBE_NETWORK;
        snprintf(msg, msg_len, "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
    }
    resp->error = msg;
}

/* A transfer ended (curl's result `rc`): reports it and frees the request. */
static void http_finish(struct req *r, CURLcode rc)
{
    struct rd_httpc *c = r->c;
    long code = 0;
    long os_errno = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
    curl_multi_remove_handle(c->multi, r->easy);
    pending_unlink(c, r);
    r->finished = true;

    char msg[CURL_ERROR_SIZE + 64];
    struct rd_http_response resp = {
        .body = r->body ? r->body : "",
        .body_len = r->body_len,
        .elapsed_ns = elapsed_since(r->start_ns),
    };
    bool answered = code >= 100 && (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && r->truncated));
    if (answered) {
        resp.status = (int)code;
        if (code >= 200 && code < 300) {
            resp.cause = RD_PROBE_NONE;
            resp.error = "";
        } else {
            resp.cause = RD_PROBE_STATUS;
            snprintf(msg, sizeof msg, "status %ld", code);
            resp.error = msg;
        }
    } else {
        http_failure(r, rc, os_errno, msg, sizeof msg, &resp);
    }
    r->cb(r->data, &resp);
    http_free(r);
}

static void check_done(struct rd_httpc *c)
{
    CURLMsg *m;
    int left;
    /* A callback that closed the client also cleaned the multi handle up. */
    while (!c->closing && (m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct req *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        http_finish(r, m->data.result);
    }
}

/* True when `s` is a method token of 1-16 upper-case letters. */
static bool method_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return true;
}

static int http_start(struct req *r, const struct rd_http_request *req, const char *authorization)
{
    const char *method = req->method ? req->method : "GET";
    if (!method_valid(method))
        return RD_EINVAL;
    if (req->content_type && strpbrk(req->content_type, "\r\n"))
        return RD_EINVAL;
    if (authorization && strpbrk(authorization, "\r\n"))
        return RD_EINVAL;

    /* Refuse a malformed URL now rather than through the callback. */
    CURLU *u = curl_url();
    if (!u)
        return RD_ENOMEM;
    char *scheme = NULL;
    int rv = 0;
    if (curl_url_set(u, CURLUPART_URL, req->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        rv = RD_EINVAL;
    curl_free(scheme);
    curl_url_cleanup(u);
    if (rv != 0)
        return rv;

    CURL *e = curl_easy_init();
    if (!e)
        return RD_ENOMEM;
    r->easy = e;
    bool ok = true;
#define SET(opt, val) ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_NOPROXY, "*");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)r->timeout_ms);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    /* No DNS answer kept: libcurl 7.88 walks its whole DNS cache at the end
     * of every transfer, and health probes fill it with an entry per agent
     * (host and port): at 10,000 agents that walk took a third of the
     * engine's CPU (docs/benchmarks.md, "Crash detection latency against the
     * fleet size"). A name is resolved for each new connection instead (an
     * address, the usual health_url, needs no resolving). */
    SET(CURLOPT_DNS_CACHE_TIMEOUT, 0L);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_USERAGENT, "recoveryd/" RD_VERSION_STRING);

    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    if (!h)
        return RD_ENOMEM;
    r->headers = h;
    if (authorization) {
        char ah[512];
        snprintf(ah, sizeof ah, "Authorization: %s", authorization);
        h = curl_slist_append(r->headers, ah);
        if (!h)
            return RD_ENOMEM;
        r->headers = h;
    }
    if (req->body) {
        char ct[512];
        snprintf(ct, sizeof ct, "Content-Type: %s",
                 req->content_type ? req->content_type : "application/json");
        h = curl_slist_append(r->headers, ct);
        if (!h)
            return RD_ENOMEM;
        r->headers = h;
        /* COPYPOSTFIELDS copies the body: the caller's buffer may go now. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SET(CURLOPT_COPYPOSTFIELDS, req->body);
        if (strcmp(method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "POST") == 0) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        SET(CURLOPT_COPYPOSTFIELDS, "");
    } else {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
    SET(CURLOPT_HTTPHEADER, r->headers);
#undef SET
    if (!ok)
        return RD_EINTERNAL;
    if (curl_multi_add_handle(r->c->multi, e) != CURLM_OK)
        return RD_EINTERNAL;
    return 0;
}

/* ---- tcp:// requests ------------------------------------------------------------- */

static void tcp_connect(struct req *r, const struct sockaddr *sa);

/* Frees a finished tcp:// request once its handles have all called back. */
static void tcp_maybe_free(struct req *r)
{
    if (!r->finished || r->refs > 0)
        return;
    struct rd_httpc *c = r->c;
    if (r->ai)
        uv_freeaddrinfo(r->ai);
    free(r);
    c->alive--;
    maybe_done(c);
}

static void on_tcp_timer_closed(uv_handle_t *h)
{
    struct req *r = h->data;
    r->refs--;
    tcp_maybe_free(r);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct req *r = h->data;
    r->tcp_open = false;
    r->refs--;
    if (!r->finished && r->ai_next) {
        /* The previous address failed: try the next one (the handle is
         * embedded, so only now may it be initialised again). */
        const struct sockaddr *sa = r->ai_next->ai_addr;
        r->ai_next = r->ai_next->ai_next;
        tcp_connect(r, sa);
        return;
    }
    tcp_maybe_free(r);
}

/* Releases whatever the request still holds; it is freed when all is back. */
static void tcp_teardown(struct req *r)
{
    if (r->gai_busy)
        uv_cancel((uv_req_t *)&r->gai); /* its callback still comes */
    if (r->tcp_open && !uv_is_closing((uv_handle_t *)&r->tcp))
        uv_close((uv_handle_t *)&r->tcp, on_tcp_closed);
    if (r->timer_open && !uv_is_closing((uv_handle_t *)&r->timer))
        uv_close((uv_handle_t *)&r->timer, on_tcp_timer_closed);
}

static void tcp_finish(struct req *r, int status, int cause, const char *error)
{
    pending_unlink(r->c, r);
    r->finished = true;
    struct rd_http_response resp = {
        .status = status,
        .cause = cause,
        .error = error,
        .body = "",
        .body_len = 0,
        .elapsed_ns = elapsed_since(r->start_ns),
    };
    r->cb(r->data, &resp);
    tcp_teardown(r);
    tcp_maybe_free(r);
}

static void on_tcp_timer(uv_timer_t *t);

/* Makes the timer deliver a failure on the next loop iteration (never from
 * inside rd_httpc_request). */
static void tcp_defer(struct req *r, int cause, const char *error)
{
    r->deferred = true;
    r->d_cause = cause;
    snprintf(r->d_error, sizeof r->d_error, "%s", error);
    uv_timer_start(&r->timer, on_tcp_timer, 0, 0);
}

static void tcp_fail(struct req *r, int err)
{
    char msg[160];
    if (err == UV_ECONNREFUSED) {
        tcp_finish(r, 0, RD_PROBE_REFUSED, "connection refused");
    } else if (err == UV_ETIMEDOUT) {
        snprintf(msg, sizeof msg, "no answer within %" PRIu64 " ms", r->timeout_ms);
        tcp_finish(r, 0, RD_PROBE_TIMEOUT, msg);
    } else {
        snprintf(msg, sizeof msg, "connect to %s:%s: %s", r->host, r->port, uv_strerror(err));
        tcp_finish(r, 0, RD_PROBE_NETWORK, msg);
    }
}

static void on_tcp_timer(uv_timer_t *t)
{
    struct req *r = t->data;
    if (r->finished)
        return;
    if (r->deferred) {
        tcp_finish(r, 0, r->d_cause, r->d_error);
        return;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "no answer within %" PRIu64 " ms", r->timeout_ms);
    tcp_finish(r, 0, RD_PROBE_TIMEOUT, msg);
}

static void on_connect(uv_connect_t *conn, int status)
{
    struct req *r = conn->data;
    if (r->finished || status == UV_ECANCELED)
        return; /* our own close; on_tcp_closed follows */
    if (status == 0) {
        tcp_finish(r, 200, RD_PROBE_NONE, "");
        return;
    }
    r->last_err = status;
    if (r->ai_next) {
        uv_close((uv_handle_t *)&r->tcp, on_tcp_closed); /* tries the next address */
        return;
    }
    tcp_fail(r, status);
}

static void tcp_connect(struct req *r, const struct sockaddr *sa)
{
    int rv = uv_tcp_init(r->c->loop, &r->tcp);
    if (rv != 0) {
        tcp_defer(r, RD_PROBE_NETWORK, uv_strerror(rv));
        return;
    }
    r->tcp.data = r;
    r->tcp_open = true;
    r->refs++;
    r->conn.data = r;
    rv = uv_tcp_connect(&r->conn, &r->tcp, sa, on_connect);
    if (rv != 0) {
        /* libuv reports ECONNREFUSED itself later; other immediate errors
         * (unreachable network, ...) go through the timer, never from here. */
        r->last_err = rv;
        if (r->ai_next) {
            uv_close((uv_handle_t *)&r->tcp, on_tcp_closed);
            return;
        }
        if (rv == UV_ECONNREFUSED)
            tcp_defer(r, RD_PROBE_REFUSED, "connection refused");
        else
            tcp_defer(r, RD_PROBE_NETWORK, uv_strerror(rv));
    }
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    struct req *r = gai->data;
    r->gai_busy = false;
    r->refs--;
    r->ai = res; /* freed with the request */
    if (r->finished) {
        tcp_maybe_free(r);
        return;
    }
    if (status != 0 || !res) {
        char msg[HOST_MAX + 64];
        snprintf(msg, sizeof msg, "cannot resolve %s: %s", r->host,
                 status ? uv_strerror(status) : "no address");
        tcp_finish(r, 0, RD_PROBE_NETWORK, msg);
        return;
    }
    r->ai_next = res->ai_next;
    tcp_connect(r, res->ai_addr);
}

/* Splits "tcp://HOST:PORT" (HOST may be "[v6]"; one trailing '/' allowed). */
static int tcp_parse(const char *url, char host[HOST_MAX + 1], char port[8])
{
    const char *p = url + 6;
    const char *hend, *colon;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend || hend[1] != ':')
            return RD_EINVAL;
        colon = hend + 1;
        p++;
    } else {
        colon = strrchr(p, ':');
        if (!colon)
            return RD_EINVAL;
        hend = colon;
    }
    size_t hlen = (size_t)(hend - p);
    if (hlen == 0 || hlen > HOST_MAX)
        return RD_EINVAL;
    memcpy(host, p, hlen);
    host[hlen] = '\0';
    if (strpbrk(host, "/?#@ []"))
        return RD_EINVAL;
    const char *q = colon + 1;
    unsigned long v = 0;
    size_t digits = 0;
    while (*q >= '0' && *q <= '9' && digits < 6) {
        v = v * 10 + (unsigned long)(*q - '0');
        q++;
        digits++;
    }
    if (digits == 0 || v == 0 || v > 65535)
        return RD_EINVAL;
    if (*q == '/')
        q++;
    if (*q != '\0')
        return RD_EINVAL;
    snprintf(port, 8, "%lu", v);
    return 0;
}

static int tcp_start(struct req *r, const char *url)
{
    int rv = tcp_parse(url, r->host, r->port);
    if (rv != 0)
        return rv;
    rv = uv_timer_init(r->c->loop, &r->timer);
    if (rv != 0)
        return RD_EINTERNAL;
    r->timer.data = r;
    r->timer_open = true;
    r->refs++;
    /* From here on the request is committed: failures come through cb. The
     * loop's cached time may be old (a long callback): count from now. */
    uv_update_time(r->c->loop);
    uv_timer_start(&r->timer, on_tcp_timer, r->timeout_ms, 0);

    struct sockaddr_storage ss;
    int port = atoi(r->port);
    if (uv_ip4_addr(r->host, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(r->host, port, (struct sockaddr_in6 *)&ss) == 0) {
        tcp_connect(r, (const struct sockaddr *)&ss);
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    r->gai.data = r;
    rv = uv_getaddrinfo(r->c->loop, &r->gai, on_resolved, r->host, r->port, &hints);
    if (rv != 0) {
        tcp_defer(r, RD_PROBE_NETWORK, uv_strerror(rv));
        return 0;
    }
    r->gai_busy = true;
    r->refs++;
    return 0;
}

/* ---- public API --------------------------------------------------------------- */

int rd_httpc_new(uv_loop_t *loop, struct rd_httpc **out)
{
    if (!loop || !out)
        return RD_EINVAL;
    /* Reference-counted and thread-safe since curl 7.84. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return RD_EINTERNAL;
    struct rd_httpc *c = calloc(1, sizeof *c);
    if (!c) {
        curl_global_cleanup();
        return RD_ENOMEM;
    }
    c->loop = loop;
    c->multi = curl_multi_init();
    if (!c->multi || uv_timer_init(loop, &c->timer) != 0) {
        int rv = c->multi ? RD_EINTERNAL : RD_ENOMEM;
        if (c->multi)
            curl_multi_cleanup(c->multi);
        free(c);
        curl_global_cleanup();
        return rv;
    }
    c->timer.data = c;
    c->alive = 1;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)RD_HTTPC_MAX_PER_HOST);
    *out = c;
    return 0;
}

int rd_httpc_request(struct rd_httpc *c, void *owner, const struct rd_http_request *req,
                     rd_http_cb cb, void *data)
{
    return rd_httpc_request_auth(c, owner, req, NULL, cb, data);
}

int rd_httpc_request_auth(struct rd_httpc *c, void *owner, const struct rd_http_request *req,
                          const char *authorization, rd_http_cb cb, void *data)
{
    if (!c || !req || !req->url || !cb || (req->body == NULL && req->body_len > 0))
        return RD_EINVAL;
    if (c->closing)
        return RD_ESHUTDOWN;
    bool tcp = strncmp(req->url, "tcp://", 6) == 0;
    if (!tcp && strncmp(req->url, "http://", 7) != 0 && strncmp(req->url, "https://", 8) != 0)
        return RD_EINVAL;
    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return RD_ENOMEM;
    r->c = c;
    r->owner = owner;
    r->cb = cb;
    r->data = data;
    r->start_ns = rd_mono_ns();
    r->timeout_ms = req->timeout_ms ? req->timeout_ms : RD_HTTPC_DEFAULT_TIMEOUT_MS;
    if (r->timeout_ms > INT32_MAX)
        r->timeout_ms = INT32_MAX;
    int rv;
    if (tcp) {
        r->kind = REQ_TCP;
        rv = tcp_start(r, req->url);
        if (rv != 0) {
            free(r);
            return rv;
        }
        c->alive++;
    } else {
        r->kind = REQ_HTTP;
        rv = http_start(r, req, authorization);
        if (rv != 0) {
            http_free(r);
            return rv;
        }
    }
    pending_link(c, r);
    return 0;
}

/* Ends every pending request of `owner` (of anyone when `all`). */
static void cancel_where(struct rd_httpc *c, bool all, void *owner)
{
    /* Detach first, so the callbacks below cannot reach these requests
     * through the client, and so the multi handle no longer holds them. */
    struct req *head = NULL, *tail = NULL;
    for (struct req *r = c->head, *next; r; r = next) {
        next = r->next;
        if (!all && r->owner != owner)
            continue;
        pending_unlink(c, r);
        r->finished = true;
        if (r->kind == REQ_HTTP)
            curl_multi_remove_handle(c->multi, r->easy);
        r->prev = tail;
        if (tail)
            tail->next = r;
        else
            head = r;
        tail = r;
    }
    struct rd_http_response resp = {
        .status = 0,
        .cause = RD_PROBE_CANCELLED,
        .error = "cancelled",
        .body = "",
    };
    for (struct req *r = head, *next; r; r = next) {
        next = r->next;
        resp.elapsed_ns = elapsed_since(r->start_ns);
        r->cb(r->data, &resp);
        if (r->kind == REQ_HTTP) {
            http_free(r);
        } else {
            tcp_teardown(r);
            tcp_maybe_free(r);
        }
    }
}

void rd_httpc_cancel_owner(struct rd_httpc *c, void *owner)
{
    if (!c || c->closing)
        return;
    cancel_where(c, false, owner);
}

size_t rd_httpc_pending(struct rd_httpc *c)
{
    return c ? c->pending : 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct rd_httpc *c = h->data;
    c->alive--;
    maybe_done(c);
}

void rd_httpc_close(struct rd_httpc *c, void (*done)(void *data), void *data)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    c->done = done;
    c->done_data = data;
    cancel_where(c, true, NULL);
    /* Sockets curl still watches (none once every transfer is gone, but do
     * not rely on it): stop watching before curl closes them. */
    while (c->socks) {
        struct sock_ctx *sc = c->socks;
        curl_multi_assign(c->multi, sc->fd, NULL);
        sock_close(sc);
    }
    curl_multi_cleanup(c->multi); /* closes the kept-alive connections */
    c->multi = NULL;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
