/*
 * The asynchronous HTTP client on a real libuv loop with real sockets on
 * 127.0.0.1: the daemon (started once for the file) answers real HTTP; small
 * libuv servers in this file stand for a peer that accepts and never answers
 * and for canned answers; a raw listener with a full accept queue stands for
 * a peer that never completes the handshake. Waiting is always "run the loop
 * until a condition or a deadline", never a fixed sleep.
 */
#include "cmocka_all.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <netdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "harness.h"
#include "net/httpc.h"

static struct rdt_proc g_proc;

/* ---- fixture: a loop, a tick so UV_RUN_ONCE never blocks for long, a client */

struct fx {
    uv_loop_t loop;
    uv_timer_t tick;
    struct rd_httpc *c;
    int closed; /* rd_httpc_close's done calls */
};

#define AWAIT(fx, expr, ms)                                                                        \
    do {                                                                                           \
        int64_t dl_ = rdt_now_ms() + (ms);                                                         \
        while (!(expr) && rdt_now_ms() < dl_)                                                      \
            uv_run(&(fx)->loop, UV_RUN_ONCE);                                                      \
    } while (0)

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void on_client_closed(void *data)
{
    struct fx *f = data;
    f->closed++;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f || uv_loop_init(&f->loop) != 0)
        return -1;
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, on_tick, 10, 10);
    if (rd_httpc_new(&f->loop, &f->c) != 0)
        return -1;
    *state = f;
    return 0;
}

/* Closes the client (unless the test did), then checks no handle is left. */
static int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (f->closed == 0 && f->c) {
        rd_httpc_close(f->c, on_client_closed, f);
        AWAIT(f, f->closed == 1, 5000);
    }
    int ok = f->closed == 1;
    uv_close((uv_handle_t *)&f->tick, NULL);
    int64_t dl = rdt_now_ms() + 5000;
    while (uv_loop_alive(&f->loop) && rdt_now_ms() < dl)
        uv_run(&f->loop, UV_RUN_ONCE);
    if (uv_loop_close(&f->loop) != 0) {
        fprintf(stderr, "handles left open on the loop\n");
        ok = 0;
    }
    free(f);
    return ok ? 0 : -1;
}

/* ---- responses ------------------------------------------------------------------- */

struct res {
    int fired;
    int status;
    int cause;
    char error[256];
    char body[4096]; /* the start of it */
    size_t body_len;
    uint64_t elapsed_ns;
    bool fired_inside_request;
    /* Optional re-entry from the callback. */
    struct rd_httpc *c;
    void (*then)(struct res *r);
    int then_rv;
};

static bool g_in_request;

static void on_res(void *data, const struct rd_http_response *resp)
{
    struct res *r = data;
    r->fired++;
    r->fired_inside_request = g_in_request;
    r->status = resp->status;
    r->cause = resp->cause;
    snprintf(r->error, sizeof r->error, "%s", resp->error ? resp->error : "(null)");
    r->body_len = resp->body_len;
    size_t n = resp->body_len < sizeof r->body - 1 ? resp->body_len : sizeof r->body - 1;
    if (n)
        memcpy(r->body, resp->body, n);
    r->body[n] = '\0';
    r->elapsed_ns = resp->elapsed_ns;
    if (r->then)
        r->then(r);
}

static int req(struct rd_httpc *c, void *owner, const char *method, const char *url,
               const char *body, uint64_t timeout_ms, struct res *out)
{
    struct rd_http_request rq = {
        .method = method,
        .url = url,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .timeout_ms = timeout_ms,
    };
    g_in_request = true;
    int rv = rd_httpc_request(c, owner, &rq, on_res, out);
    g_in_request = false;
    return rv;
}

static void daemon_url(char *buf, size_t len, const char *path)
{
    snprintf(buf, len, "%s%s", g_proc.base_url, path);
}

static int all_fired(const struct res *r, int n)
{
    for (int i = 0; i < n; i++)
        if (r[i].fired == 0)
            return 0;
    return 1;
}

/* ---- test servers on the loop -------------------------------------------------------- */

enum { SRV_SILENT = 1, SRV_CANNED = 2, SRV_HANGUP = 3 };

struct tconn {
    uv_tcp_t h;
    struct tsrv *s;
    struct tconn *next;
    char acc[8192];
    size_t acc_len;
    bool answered, closing;
    uv_write_t w;
};

struct tsrv {
    uv_tcp_t listener;
    uint16_t port;
    int mode;
    char *canned; /* the whole response, for SRV_CANNED */
    size_t canned_len;
    struct tconn *conns;
    int accepted;
    int peer_closed; /* connections the client ended */
    int open;        /* handles not yet closed */
};

static void on_tconn_closed(uv_handle_t *h)
{
    struct tconn *t = h->data;
    struct tsrv *s = t->s;
    for (struct tconn **pp = &s->conns; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    free(t);
    s->open--;
}

static void tconn_close(struct tconn *t)
{
    if (!t->closing) {
        t->closing = true;
        uv_close((uv_handle_t *)&t->h, on_tconn_closed);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char rbuf[65536];
    (void)h;
    (void)hint;
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_written(uv_write_t *w, int status)
{
    struct tconn *t = w->data;
    (void)status;
    tconn_close(t); /* Content-Length was sent: the close ends nothing early */
}

static void on_tread(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct tconn *t = st->data;
    if (nread < 0) {
        t->s->peer_closed++;
        tconn_close(t);
        return;
    }
    if (t->s->mode != SRV_CANNED || t->answered)
        return;
    size_t n = (size_t)nread;
    if (n > sizeof t->acc - 1 - t->acc_len)
        n = sizeof t->acc - 1 - t->acc_len;
    memcpy(t->acc + t->acc_len, buf->base, n);
    t->acc_len += n;
    t->acc[t->acc_len] = '\0';
    if (strstr(t->acc, "\r\n\r\n")) {
        t->answered = true;
        uv_buf_t b = uv_buf_init(t->s->canned, (unsigned)t->s->canned_len);
        t->w.data = t;
        uv_write(&t->w, st, &b, 1, on_written);
    }
}

static void on_tconnection(uv_stream_t *l, int status)
{
    struct tsrv *s = l->data;
    if (status != 0)
        return;
    struct tconn *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->s = s;
    uv_tcp_init(l->loop, &t->h);
    t->h.data = t;
    s->open++;
    if (uv_accept(l, (uv_stream_t *)&t->h) != 0) {
        tconn_close(t);
        return;
    }
    t->next = s->conns;
    s->conns = t;
    s->accepted++;
    if (s->mode == SRV_HANGUP) {
        tconn_close(t); /* accepts, then closes without a word */
        return;
    }
    uv_read_start((uv_stream_t *)&t->h, on_alloc, on_tread);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct tsrv *s = h->data;
    s->open--;
}

static void tsrv_start(struct fx *f, struct tsrv *s, int mode)
{
    s->mode = mode;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_init(&f->loop, &s->listener), 0);
    s->listener.data = s;
    s->open = 1;
    assert_int_equal(uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 128, on_tconnection), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    assert_int_equal(uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len), 0);
    s->port = ntohs(got.sin_port);
}

static void tsrv_stop(struct fx *f, struct tsrv *s)
{
    for (struct tconn *t = s->conns; t; t = t->next)
        tconn_close(t);
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    AWAIT(f, s->open == 0, 5000);
    assert_int_equal(s->open, 0);
    free(s->canned);
}

/* A canned response with `body_len` bytes of 'x'. */
static void tsrv_canned(struct tsrv *s, int status, size_t body_len)
{
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d Whatever\r\nContent-Type: text/plain\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, body_len);
    s->canned_len = (size_t)hl + body_len;
    s->canned = malloc(s->canned_len);
    assert_non_null(s->canned);
    memcpy(s->canned, head, (size_t)hl);
    memset(s->canned + hl, 'x', body_len);
}

/*
 * A listener whose accept queue is full: further SYNs are dropped, so a
 * connect to it neither succeeds nor fails until the client gives up.
 * Returns the listening fd; `fills` gets the client fds that filled it.
 */
static int full_backlog_listener(uint16_t *port, int fills[8], int *nfills)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l, 0), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    *nfills = 0;
    for (int i = 0; i < 8; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(fd >= 0);
        fills[(*nfills)++] = fd;
        int rv = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        assert_true(rv == 0 || errno == EINPROGRESS);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (rv != 0 && poll(&p, 1, 300) == 0)
            return l; /* this one hangs in SYN_SENT: the queue is full */
    }
    fail_msg("could not fill the accept queue of a listen(0) socket");
    return -1;
}

/* ---- a name only this file resolves ------------------------------------------------------ */

/* FAKE_HOST resolves to 127.0.0.1 through this getaddrinfo, which stands
 * before libc's for libcurl's resolver threads; every other name goes to
 * libc's. g_resolves counts FAKE_HOST's look-ups. */
#define FAKE_HOST "httpc-test.invalid"
static atomic_int g_resolves;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    int (*next)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(
            RTLD_NEXT, "getaddrinfo");
    if (node && strcmp(node, FAKE_HOST) == 0) {
        atomic_fetch_add(&g_resolves, 1);
        node = "127.0.0.1";
    }
    return next ? next(node, service, hints, res) : EAI_FAIL;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_get_health(void **state)
{
    struct fx *f = *state;
    char url[128];
    daemon_url(url, sizeof url, "/health");
    struct res r[2] = {0};
    assert_int_equal(req(f->c, NULL, "GET", url, NULL, 2000, &r[0]), 0);
    assert_int_equal(rd_httpc_pending(f->c), 1);
    assert_int_equal(r[0].fired, 0);
    AWAIT(f, r[0].fired, 5000);
    assert_int_equal(r[0].fired, 1);
    assert_false(r[0].fired_inside_request);
    assert_int_equal(r[0].status, 200);
    assert_int_equal(r[0].cause, RD_PROBE_NONE);
    assert_string_equal(r[0].error, "");
    assert_true(r[0].elapsed_ns > 0);
    json_error_t je;
    json_t *j = json_loads(r[0].body, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    assert_int_equal(rd_httpc_pending(f->c), 0);

    /* Again, on the kept-alive connection. */
    assert_int_equal(req(f->c, NULL, NULL, url, NULL, 0, &r[1]), 0);
    AWAIT(f, r[1].fired, 5000);
    assert_int_equal(r[1].status, 200);
}

static void test_status_404(void **state)
{
    struct fx *f = *state;
    char url[128];
    daemon_url(url, sizeof url, "/no/such/path");
    struct res r = {0};
    assert_int_equal(req(f->c, NULL, "GET", url, NULL, 2000, &r), 0);
    AWAIT(f, r.fired, 5000);
    assert_int_equal(r.fired, 1);
    assert_int_equal(r.status, 404);
    assert_int_equal(r.cause, RD_PROBE_STATUS);
    assert_string_equal(r.error, "status 404");
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_object(json_object_get(j, "error")));
    json_decref(j);
}

static void test_post_body(void **state)
{
    struct fx *f = *state;
    char url[128];
    daemon_url(url, sizeof url, "/api/v1/nodes");
    char body[64];
    snprintf(body, sizeof body, "{\"node_id\":\"httpc-a\",\"capacity\":{\"slots\":2}}");
    struct res r = {0};
    assert_int_equal(req(f->c, NULL, "POST", url, body, 2000, &r), 0);
    memset(body, '!', sizeof body - 1); /* the client copied it */
    AWAIT(f, r.fired, 5000);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.cause, RD_PROBE_NONE);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "node_id")), "httpc-a");
    json_decref(j);
}

static void test_refused(void **state)
{
    struct fx *f = *state;
    uint16_t a, b;
    assert_int_equal(rdt_free_ports(&a, &b), 0);
    char url[2][64];
    snprintf(url[0], sizeof url[0], "http://127.0.0.1:%u/health", a);
    snprintf(url[1], sizeof url[1], "tcp://127.0.0.1:%u", b);
    struct res r[2] = {0};
    assert_int_equal(req(f->c, NULL, "GET", url[0], NULL, 2000, &r[0]), 0);
    assert_int_equal(req(f->c, NULL, "GET", url[1], NULL, 2000, &r[1]), 0);
    AWAIT(f, all_fired(r, 2), 5000);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r[i].fired, 1);
        assert_false(r[i].fired_inside_request);
        assert_int_equal(r[i].status, 0);
        assert_int_equal(r[i].cause, RD_PROBE_REFUSED);
        assert_string_equal(r[i].error, "connection refused");
    }
}

/* No DNS answer is kept: two requests to the same name and port, neither
 * leaving a connection behind (nothing listens), resolve the name twice.
 * libcurl 7.88 walks its whole DNS cache after every transfer, and the
 * probes of a fleet would fill it with an entry per agent. */
static void test_no_dns_cache(void **state)
{
    struct fx *f = *state;
    uint16_t a, b;
    assert_int_equal(rdt_free_ports(&a, &b), 0);
    char url[96];
    snprintf(url, sizeof url, "http://" FAKE_HOST ":%u/health", a);
    atomic_store(&g_resolves, 0);
    for (int i = 0; i < 2; i++) {
        struct res r = {0};
        assert_int_equal(req(f->c, NULL, "GET", url, NULL, 2000, &r), 0);
        AWAIT(f, r.fired, 5000);
        assert_int_equal(r.fired, 1);
        assert_int_equal(r.cause, RD_PROBE_REFUSED);
        assert_int_equal(atomic_load(&g_resolves), i + 1);
    }
}

static void test_timeout_silent_peer(void **state)
{
    struct fx *f = *state;
    struct tsrv s = {0};
    tsrv_start(f, &s, SRV_SILENT);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/health", s.port);
    struct res r = {0};
    int64_t t0 = rdt_now_ms();
    assert_int_equal(req(f->c, NULL, "GET", url, NULL, 300, &r), 0);
    AWAIT(f, r.fired, 5000);
    int64_t took = rdt_now_ms() - t0;
    assert_int_equal(r.fired, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.cause, RD_PROBE_TIMEOUT);
    assert_string_equal(r.error, "no answer within 300 ms");
    assert_true(took >= 290 && took < 3000);
    assert_true(r.elapsed_ns >= 290 * 1000000ull);
    assert_int_equal(s.accepted, 1);
    /* The client hung up the connection it gave up on. */
    AWAIT(f, s.peer_closed == 1, 5000);
    assert_int_equal(s.peer_closed, 1);
    tsrv_stop(f, &s);
}

static void test_peer_hangs_up(void **state)
{
    struct fx *f = *state;
    struct tsrv s = {0};
    tsrv_start(f, &s, SRV_HANGUP);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/health", s.port);
    struct res r = {0};
    assert_int_equal(req(f->c, NULL, "GET", url, NULL, 2000, &r), 0);
    AWAIT(f, r.fired, 5000);
    assert_int_equal(r.fired, 1);
    assert_int_equal(r.status, 0);
    /* Dropped by the peer: like a refusal, the process behind it is gone. */
    assert_int_equal(r.cause, RD_PROBE_REFUSED);
    assert_non_null(strstr(r.error, "connection dropped by the agent"));
    tsrv_stop(f, &s);
}

static void test_tcp_connect(void **state)
{
    struct fx *f = *state;
    char url[3][64];
    snprintf(url[0], sizeof url[0], "tcp://127.0.0.1:%u", g_proc.port);
    snprintf(url[1], sizeof url[1], "tcp://localhost:%u/", g_proc.port); /* resolved */
    struct tsrv s = {0};
    tsrv_start(f, &s, SRV_SILENT);
    snprintf(url[2], sizeof url[2], "tcp://127.0.0.1:%u", s.port);
    struct res r[3] = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(req(f->c, NULL, NULL, url[i], NULL, 2000, &r[i]), 0);
    AWAIT(f, all_fired(r, 3), 5000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].fired, 1);
        assert_false(r[i].fired_inside_request);
        assert_int_equal(r[i].status, 200);
        assert_int_equal(r[i].cause, RD_PROBE_NONE);
    }
    /* Connected, then closed at once. */
    AWAIT(f, s.peer_closed == 1, 5000);
    assert_int_equal(s.accepted, 1);
    assert_int_equal(s.peer_closed, 1);
    tsrv_stop(f, &s);
}

static void test_connect_timeout(void **state)
{
    struct fx *f = *state;
    uint16_t port;
    int fills[8], nfills;
    int l = full_backlog_listener(&port, fills, &nfills);
    char url[2][64];
    snprintf(url[0], sizeof url[0], "tcp://127.0.0.1:%u", port);
    snprintf(url[1], sizeof url[1], "http://127.0.0.1:%u/", port);
    struct res r[2] = {0};
    for (int i = 0; i < 2; i++)
        assert_int_equal(req(f->c, NULL, NULL, url[i], NULL, 300, &r[i]), 0);
    AWAIT(f, all_fired(r, 2), 5000);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r[i].fired, 1);
        assert_int_equal(r[i].status, 0);
        assert_int_equal(r[i].cause, RD_PROBE_TIMEOUT);
        assert_true(r[i].elapsed_ns >= 290 * 1000000ull);
        assert_true(r[i].elapsed_ns < 3000 * 1000000ull);
    }
    for (int i = 0; i < nfills; i++)
        close(fills[i]);
    close(l);
}

static void test_body_cap_and_status(void **state)
{
    struct fx *f = *state;
    struct tsrv big = {0}, err = {0};
    tsrv_start(f, &big, SRV_CANNED);
    tsrv_canned(&big, 200, 2 * RD_HTTPC_BODY_MAX);
    tsrv_start(f, &err, SRV_CANNED);
    tsrv_canned(&err, 503, 5);
    char url[2][64];
    snprintf(url[0], sizeof url[0], "http://127.0.0.1:%u/big", big.port);
    snprintf(url[1], sizeof url[1], "http://127.0.0.1:%u/health", err.port);
    struct res r[2] = {0};
    for (int i = 0; i < 2; i++)
        assert_int_equal(req(f->c, NULL, "GET", url[i], NULL, 5000, &r[i]), 0);
    AWAIT(f, all_fired(r, 2), 10000);
    assert_int_equal(r[0].status, 200);
    assert_int_equal(r[0].cause, RD_PROBE_NONE);
    assert_int_equal(r[0].body_len, RD_HTTPC_BODY_MAX);
    assert_int_equal(r[0].body[0], 'x');
    assert_int_equal(r[1].status, 503);
    assert_int_equal(r[1].cause, RD_PROBE_STATUS);
    assert_string_equal(r[1].error, "status 503");
    assert_string_equal(r[1].body, "xxxxx");
    tsrv_stop(f, &big);
    tsrv_stop(f, &err);
}

static void test_many_concurrent(void **state)
{
    enum { N = 200 };
    struct fx *f = *state;
    char url[128];
    daemon_url(url, sizeof url, "/health");
    struct res *r = calloc(N, sizeof *r);
    assert_non_null(r);
    for (int i = 0; i < N; i++)
        assert_int_equal(req(f->c, NULL, "GET", url, NULL, 10000, &r[i]), 0);
    assert_int_equal(rd_httpc_pending(f->c), N);
    AWAIT(f, rd_httpc_pending(f->c) == 0, 20000);
    assert_int_equal(rd_httpc_pending(f->c), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].fired, 1);
        assert_int_equal(r[i].status, 200);
    }
    /* And a second wave over the kept-alive connections. */
    memset(r, 0, N * sizeof *r);
    for (int i = 0; i < N; i++)
        assert_int_equal(req(f->c, NULL, "GET", url, NULL, 10000, &r[i]), 0);
    AWAIT(f, rd_httpc_pending(f->c) == 0, 20000);
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].status, 200);
    free(r);
}

static char g_reentry_url[128];

static void start_another(struct res *r)
{
    static struct res next;
    memset(&next, 0, sizeof next);
    r->then_rv = req(r->c, &g_reentry_url, "GET", g_reentry_url, NULL, 2000, &next);
}

static void test_cancel_owner(void **state)
{
    struct fx *f = *state;
    int owner_a, owner_b;
    char health[128], tcp[64];
    daemon_url(health, sizeof health, "/health");
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%u", g_proc.port);

    /* Cancelled before the loop ever ran: both kinds. */
    struct res early[2] = {0};
    assert_int_equal(req(f->c, &owner_a, "GET", health, NULL, 2000, &early[0]), 0);
    assert_int_equal(req(f->c, &owner_a, NULL, tcp, NULL, 2000, &early[1]), 0);
    rd_httpc_cancel_owner(f->c, &owner_a);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(early[i].fired, 1);
        assert_int_equal(early[i].status, 0);
        assert_int_equal(early[i].cause, RD_PROBE_CANCELLED);
        assert_string_equal(early[i].error, "cancelled");
    }
    assert_int_equal(rd_httpc_pending(f->c), 0);

    /* Cancelled mid-flight, while another owner's requests go on. */
    struct tsrv s = {0};
    tsrv_start(f, &s, SRV_SILENT);
    char silent[64];
    snprintf(silent, sizeof silent, "http://127.0.0.1:%u/x", s.port);
    struct res a[5] = {0}, b[3] = {0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(req(f->c, &owner_a, "GET", silent, NULL, 10000, &a[i]), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(req(f->c, &owner_b, "GET", health, NULL, 5000, &b[i]), 0);
    AWAIT(f, all_fired(b, 3) && s.accepted == 5, 5000);
    assert_int_equal(s.accepted, 5);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b[i].status, 200);
    for (int i = 0; i < 5; i++)
        assert_int_equal(a[i].fired, 0);
    assert_int_equal(rd_httpc_pending(f->c), 5);

    /* One callback starts a new request for the same owner: it survives. */
    snprintf(g_reentry_url, sizeof g_reentry_url, "%s", health);
    a[0].c = f->c;
    a[0].then = start_another;
    rd_httpc_cancel_owner(f->c, &owner_a);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(a[i].fired, 1);
        assert_int_equal(a[i].status, 0);
        assert_int_equal(a[i].cause, RD_PROBE_CANCELLED);
        assert_string_equal(a[i].error, "cancelled");
    }
    assert_int_equal(a[0].then_rv, 0);
    assert_int_equal(rd_httpc_pending(f->c), 1);
    AWAIT(f, rd_httpc_pending(f->c) == 0 && s.peer_closed == 5, 5000);
    assert_int_equal(rd_httpc_pending(f->c), 0);
    assert_int_equal(s.peer_closed, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(a[i].fired, 1); /* exactly once */
    for (int i = 0; i < 3; i++)
        assert_int_equal(b[i].fired, 1);
    tsrv_stop(f, &s);
}

static void request_while_closing(struct res *r)
{
    static struct res never;
    r->then_rv = req(r->c, NULL, "GET", "http://127.0.0.1:1/", NULL, 100, &never);
}

static void test_close_in_flight(void **state)
{
    struct fx *f = *state;
    struct tsrv s = {0};
    tsrv_start(f, &s, SRV_SILENT);
    char silent[64], health[128], tcp[64];
    snprintf(silent, sizeof silent, "http://127.0.0.1:%u/x", s.port);
    daemon_url(health, sizeof health, "/health");
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%u", g_proc.port);
    struct res r[6] = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(req(f->c, NULL, "GET", silent, NULL, 10000, &r[i]), 0);
    AWAIT(f, s.accepted == 3, 5000);
    assert_int_equal(s.accepted, 3);
    assert_int_equal(req(f->c, NULL, "GET", health, NULL, 10000, &r[3]), 0);
    assert_int_equal(req(f->c, NULL, NULL, tcp, NULL, 10000, &r[4]), 0);
    assert_int_equal(req(f->c, NULL, NULL, "tcp://localhost:9", NULL, 10000, &r[5]), 0);
    r[0].c = f->c;
    r[0].then = request_while_closing;
    rd_httpc_close(f->c, on_client_closed, f);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(r[i].fired, 1);
        assert_string_equal(r[i].error, "cancelled");
    }
    assert_int_equal(r[0].then_rv, RD_ESHUTDOWN);
    assert_int_equal(f->closed, 0);            /* never from inside the call */
    rd_httpc_close(f->c, on_client_closed, f); /* a second call does nothing */
    AWAIT(f, f->closed == 1 && s.peer_closed == 3, 5000);
    assert_int_equal(f->closed, 1);
    assert_int_equal(s.peer_closed, 3);
    for (int i = 0; i < 6; i++)
        assert_int_equal(r[i].fired, 1);
    tsrv_stop(f, &s);
}

static struct fx *g_fx;

static void close_from_callback_fx(struct res *r)
{
    rd_httpc_close(r->c, on_client_closed, g_fx);
}

static void test_close_from_callback(void **state)
{
    struct fx *f = *state;
    g_fx = f;
    struct tsrv s = {0};
    tsrv_start(f, &s, SRV_SILENT);
    char silent[64], health[128];
    snprintf(silent, sizeof silent, "http://127.0.0.1:%u/x", s.port);
    daemon_url(health, sizeof health, "/health");
    struct res r[3] = {0};
    assert_int_equal(req(f->c, NULL, "GET", health, NULL, 5000, &r[0]), 0);
    assert_int_equal(req(f->c, NULL, "GET", silent, NULL, 5000, &r[1]), 0);
    assert_int_equal(req(f->c, NULL, "GET", silent, NULL, 5000, &r[2]), 0);
    r[0].c = f->c;
    r[0].then = close_from_callback_fx;
    AWAIT(f, f->closed == 1, 5000);
    assert_int_equal(f->closed, 1);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[1].error, "cancelled");
    assert_string_equal(r[2].error, "cancelled");
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i].fired, 1);
    tsrv_stop(f, &s);
}

static void test_invalid_requests(void **state)
{
    struct fx *f = *state;
    const char *bad[] = {
        "ftp://127.0.0.1/x", "127.0.0.1:80",   "tcp://127.0.0.1", "tcp://127.0.0.1:0",
        "tcp://:80",         "tcp://h:99999",  "tcp://h:80/path", "tcp://[::1:80",
        "http://[::1/x",     "http://a b.c/x",
    };
    struct res r = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rv = req(f->c, NULL, "GET", bad[i], NULL, 100, &r);
        if (rv != RD_EINVAL)
            fail_msg("%s: %d", bad[i], rv);
    }
    assert_int_equal(req(f->c, NULL, "G T", "http://127.0.0.1:1/", NULL, 100, &r), RD_EINVAL);
    struct rd_http_request rq = {.url = NULL};
    assert_int_equal(rd_httpc_request(f->c, NULL, &rq, on_res, &r), RD_EINVAL);
    rq.url = "http://127.0.0.1:1/";
    assert_int_equal(rd_httpc_request(f->c, NULL, &rq, NULL, &r), RD_EINVAL);
    rq.body_len = 3;
    assert_int_equal(rd_httpc_request(f->c, NULL, &rq, on_res, &r), RD_EINVAL);
    assert_int_equal(rd_httpc_pending(f->c), 0);
    AWAIT(f, false, 50);
    assert_int_equal(r.fired, 0);
}

/* ---- runner ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (rdt_proc_start(&g_proc, NULL) != 0) {
        rdt_proc_cleanup(&g_proc);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rdt_proc_cleanup(&g_proc);
    return 0;
}

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_get_health),          T(test_status_404),
        T(test_post_body),           T(test_refused),
        T(test_timeout_silent_peer), T(test_peer_hangs_up),
        T(test_tcp_connect),         T(test_connect_timeout),
        T(test_body_cap_and_status), T(test_many_concurrent),
        T(test_cancel_owner),        T(test_close_in_flight),
        T(test_close_from_callback), T(test_invalid_requests),
        T(test_no_dns_cache),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
