/* h2c (tests/bench/lib/h2c.h) against a real h2o server (rdt_httpd):
 * answers, the stream limit, timeouts, a refused port, a connection lost
 * with requests in flight, and connecting again; against a small nghttp2
 * server of its own: RST_STREAM and GOAWAY, which h2o sends only in its own
 * circumstances. */
#include "cmocka_all.h"

#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h2c.h"
#include "harness.h"
#include "httpd.h"

#define MAX_ENDED 256

/* What the done callback saw, in order. */
struct seen {
    unsigned n;
    struct {
        void *user;
        int err, status;
        char body[64];
        int64_t us, rx_us;
    } r[MAX_ENDED];
};

static void on_done(void *ctx, const struct h2c_resp *r)
{
    struct seen *s = ctx;
    assert_true(s->n < MAX_ENDED);
    s->r[s->n].user = r->user;
    s->r[s->n].err = r->err;
    s->r[s->n].status = r->status;
    s->r[s->n].us = r->us;
    s->r[s->n].rx_us = r->rx_us;
    assert_true(r->rx_us >= 0 && r->rx_us <= r->us);
    assert_int_equal(strlen(r->body), r->len);
    snprintf(s->r[s->n].body, sizeof(s->r[s->n].body), "%s", r->body);
    s->n++;
}

/* Steps until `want` requests ended in all (or 5 s passed). */
static void step_until(struct h2c *c, struct seen *s, unsigned want)
{
    for (int64_t end = rdt_now_ms() + 5000; s->n < want && rdt_now_ms() < end;)
        h2c_step(c, 20);
    assert_int_equal(s->n, want);
}

/* Steps until the server counted `hits` on endpoint `ep` (or 5 s passed). */
static void step_until_hits(struct h2c *c, struct rdt_httpd *srv, unsigned ep, unsigned hits)
{
    for (int64_t end = rdt_now_ms() + 5000; rdt_httpd_hits(srv, ep) < hits && rdt_now_ms() < end;)
        h2c_step(c, 20);
    assert_int_equal(rdt_httpd_hits(srv, ep), hits);
}

static void url_of(struct rdt_httpd *srv, unsigned ep, char *url, size_t len)
{
    snprintf(url, len, "http://127.0.0.1:%u", rdt_httpd_port(srv, ep));
}

/* Many requests in one step all come back, each once with its user
 * pointer, status and body; a POST's body reaches the server. */
static void test_answers(void **state)
{
    struct rdt_httpd *srv = rdt_httpd_start(2);
    assert_non_null(srv);
    static struct seen s;
    memset(&s, 0, sizeof(s));
    struct h2c *c = h2c_new(64, on_done, &s);
    assert_non_null(c);
    char url[64];
    url_of(srv, 0, url, sizeof(url));
    assert_int_equal(h2c_connect(c, url, 1000), 0);
    assert_int_equal(h2c_state(c), H2C_CONNECTING);
    static int users[50];
    for (int i = 0; i < 50; i++) {
        char body[32];
        int n = snprintf(body, sizeof(body), "{\"i\":%d}", i);
        assert_int_equal(h2c_submit(c, "POST", "/api/v1/x", body, (size_t)n, 5000, &users[i]), 0);
    }
    assert_int_equal(h2c_in_flight(c), 50);
    step_until(c, &s, 50);
    assert_int_equal(h2c_state(c), H2C_OPEN);
    assert_int_equal(h2c_in_flight(c), 0);
    bool got[50] = {0};
    for (unsigned i = 0; i < s.n; i++) {
        int k = (int)((int *)s.r[i].user - users);
        assert_true(k >= 0 && k < 50);
        assert_false(got[k]);
        got[k] = true;
        assert_int_equal(s.r[i].err, H2C_OK);
        assert_int_equal(s.r[i].status, 200);
        assert_string_equal(s.r[i].body, "{\"status\":\"ok\"}");
        assert_true(s.r[i].us > 0);
    }
    assert_int_equal(rdt_httpd_bodies(srv, 0), 50);
    bool body_seen[50] = {0};
    for (unsigned i = 0; i < 50; i++) {
        char *b = rdt_httpd_body(srv, 0, i);
        int k = -1;
        assert_int_equal(sscanf(b, "{\"i\":%d}", &k), 1);
        assert_true(k >= 0 && k < 50);
        body_seen[k] = true;
        free(b);
    }
    for (int i = 0; i < 50; i++)
        assert_true(body_seen[i]);

    /* A GET without a body; a status other than 200 is an answer too. */
    assert_int_equal(h2c_submit(c, "GET", "/health", NULL, 0, 5000, NULL), 0);
    step_until(c, &s, 51);
    assert_int_equal(s.r[50].status, 200);
    assert_int_equal(rdt_httpd_set(srv, 0, RDT_EP_STATUS, 503), 0);
    assert_int_equal(h2c_submit(c, "GET", "/health", NULL, 0, 5000, NULL), 0);
    step_until(c, &s, 52);
    assert_int_equal(s.r[51].err, H2C_OK);
    assert_int_equal(s.r[51].status, 503);
    assert_string_equal(s.r[51].body, "{\"status\":\"unavailable\"}");

    /* Bad URLs are refused. */
    assert_int_equal(h2c_connect(c, "https://127.0.0.1:1", 1000), -1);
    assert_int_equal(h2c_connect(c, "http://127.0.0.1", 1000), -1);
    assert_int_equal(h2c_state(c), H2C_DOWN);
    h2c_free(c);
    rdt_httpd_stop(srv);
}

/* At most max_streams in flight: beyond them submit refuses (nothing
 * reported); a timed-out request ends with H2C_ETIMEOUT once, after its
 * time, and frees its place once its stream is cancelled. */
static void test_limit_and_timeout(void **state)
{
    struct rdt_httpd *srv = rdt_httpd_start(1);
    assert_non_null(srv);
    assert_int_equal(rdt_httpd_set(srv, 0, RDT_EP_HANG, 0), 0);
    static struct seen s;
    memset(&s, 0, sizeof(s));
    struct h2c *c = h2c_new(4, on_done, &s);
    char url[64];
    url_of(srv, 0, url, sizeof(url));
    assert_int_equal(h2c_room(c), 0); /* no connection */
    assert_int_equal(h2c_submit(c, "GET", "/health", NULL, 0, 0, NULL), -1);
    assert_int_equal(h2c_connect(c, url, 1000), 0);
    assert_int_equal(h2c_room(c), 4);
    int64_t t0 = rdt_now_ms();
    for (int i = 0; i < 3; i++)
        assert_int_equal(h2c_submit(c, "GET", "/health", NULL, 0, 0, NULL), 0);
    assert_int_equal(h2c_submit(c, "GET", "/health", NULL, 0, 300, c), 0);
    assert_int_equal(h2c_room(c), 0);
    assert_int_equal(h2c_submit(c, "GET", "/health", NULL, 0, 0, NULL), -1);
    step_until(c, &s, 1);
    assert_true(rdt_now_ms() - t0 >= 300);
    assert_ptr_equal(s.r[0].user, c);
    assert_int_equal(s.r[0].err, H2C_ETIMEOUT);
    assert_int_equal(s.r[0].status, 0);
    assert_true(s.r[0].us >= 300000);
    /* Its stream is cancelled (RST_STREAM) and its place comes back. */
    for (int64_t end = rdt_now_ms() + 5000; h2c_room(c) == 0 && rdt_now_ms() < end;)
        h2c_step(c, 20);
    assert_int_equal(h2c_room(c), 1);
    assert_int_equal(h2c_in_flight(c), 3);
    assert_int_equal(s.n, 1);
    assert_int_equal(h2c_state(c), H2C_OPEN);
    h2c_free(c); /* reports nothing */
    assert_int_equal(s.n, 1);
    rdt_httpd_stop(srv);
}

/* A refused port: what was submitted ends with H2C_ECONNECT. Requests in
 * flight when the server goes away all end with H2C_ELOST, each once;
 * connecting again works. h2c_drop forgets without reporting. */
static void test_connection_lost(void **state)
{
    struct rdt_httpd *srv = rdt_httpd_start(2);
    assert_non_null(srv);
    static struct seen s;
    memset(&s, 0, sizeof(s));
    struct h2c *c = h2c_new(32, on_done, &s);
    char down[64], hang[64];
    url_of(srv, 1, down, sizeof(down));
    url_of(srv, 0, hang, sizeof(hang));
    assert_int_equal(rdt_httpd_set(srv, 1, RDT_EP_DOWN, 0), 0);
    assert_int_equal(h2c_connect(c, down, 1000), 0);
    assert_int_equal(h2c_submit(c, "GET", "/health", NULL, 0, 5000, &s), 0);
    step_until(c, &s, 1);
    assert_int_equal(s.r[0].err, H2C_ECONNECT);
    assert_ptr_equal(s.r[0].user, &s);
    assert_int_equal(h2c_state(c), H2C_DOWN);
    assert_int_equal(h2c_in_flight(c), 0);

    /* Ten requests the server holds, then it goes down. */
    assert_int_equal(rdt_httpd_set(srv, 0, RDT_EP_HANG, 0), 0);
    assert_int_equal(h2c_connect(c, hang, 1000), 0);
    static int users[10];
    for (int i = 0; i < 10; i++)
        assert_int_equal(h2c_submit(c, "POST", "/api/v1/x", "{}", 2, 0, &users[i]), 0);
    step_until_hits(c, srv, 0, 11); /* the connection, then its ten requests */
    assert_int_equal(s.n, 1);
    assert_int_equal(rdt_httpd_set(srv, 0, RDT_EP_DOWN, 0), 0);
    step_until(c, &s, 11);
    bool got[10] = {0};
    for (unsigned i = 1; i < s.n; i++) {
        int k = (int)((int *)s.r[i].user - users);
        assert_true(k >= 0 && k < 10);
        assert_false(got[k]);
        got[k] = true;
        assert_int_equal(s.r[i].err, H2C_ELOST);
        assert_int_equal(s.r[i].status, 0);
    }
    assert_int_equal(h2c_state(c), H2C_DOWN);
    assert_int_equal(h2c_room(c), 0);
    assert_int_equal(h2c_in_flight(c), 0);
    for (int i = 0; i < 5; i++)
        h2c_step(c, 10);
    assert_int_equal(s.n, 11); /* nothing twice */

    /* Back up: the same client connects again. */
    assert_int_equal(rdt_httpd_set(srv, 0, RDT_EP_OK, 0), 0);
    assert_int_equal(h2c_connect(c, hang, 1000), 0);
    assert_int_equal(h2c_submit(c, "GET", "/health", NULL, 0, 5000, NULL), 0);
    step_until(c, &s, 12);
    assert_int_equal(s.r[11].err, H2C_OK);
    assert_int_equal(s.r[11].status, 200);

    /* h2c_drop forgets its requests. */
    assert_int_equal(rdt_httpd_set(srv, 0, RDT_EP_HANG, 0), 0);
    unsigned hits = rdt_httpd_hits(srv, 0);
    assert_int_equal(h2c_submit(c, "GET", "/health", NULL, 0, 0, NULL), 0);
    step_until_hits(c, srv, 0, hits + 1);
    h2c_drop(c);
    assert_int_equal(h2c_state(c), H2C_DOWN);
    assert_int_equal(h2c_in_flight(c), 0);
    h2c_step(c, 10);
    assert_int_equal(s.n, 12);
    h2c_free(c);
    rdt_httpd_stop(srv);
}

/* ---- a small HTTP/2 server: one connection, scripted by path ------------------- */

/*
 * /ok answers 200, /rst resets its stream (INTERNAL_ERROR), /hold never
 * answers, /goaway sends GOAWAY naming stream 1 as the last one it
 * processes. `close_now` shuts the connection down.
 */
struct mini {
    int lfd, fd;
    uint16_t port;
    pthread_t thread;
    nghttp2_session *s;
    char paths[64][16];      /* by stream id / 2 */
    bool ok_pending;         /* an /ok or /held answer not sent yet */
    _Atomic unsigned ok_out; /* /ok and /held answers sent */
    _Atomic int32_t held;    /* the stream of a /held request, until answered */
    _Atomic bool release;    /* answer it now */
    _Atomic bool close_now, stop;
};

static int mini_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *data)
{
    (void)s, (void)flags;
    struct mini *m = data;
    int32_t id = f->hd.stream_id;
    if (namelen == 5 && memcmp(name, ":path", 5) == 0 && id / 2 < 64 && valuelen < 16) {
        memcpy(m->paths[id / 2], value, valuelen);
        m->paths[id / 2][valuelen] = '\0';
    }
    return 0;
}

static int mini_frame(nghttp2_session *s, const nghttp2_frame *f, void *data)
{
    struct mini *m = data;
    int32_t id = f->hd.stream_id;
    if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM) || id / 2 >= 64 ||
        (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
        return 0;
    const char *path = m->paths[id / 2];
    if (strcmp(path, "/ok") == 0) {
        nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE};
        nghttp2_submit_response(s, id, &nv, 1, NULL);
        m->ok_pending = true;
    } else if (strcmp(path, "/held") == 0) {
        atomic_store(&m->held, id);
    } else if (strcmp(path, "/rst") == 0) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
    } else if (strcmp(path, "/goaway") == 0) {
        nghttp2_submit_goaway(s, NGHTTP2_FLAG_NONE, 1, NGHTTP2_NO_ERROR, NULL, 0);
    }
    return 0;
}

static void *mini_main(void *arg)
{
    struct mini *m = arg;
    m->fd = accept(m->lfd, NULL, NULL);
    int one = 1; /* as h2o: no answer waits behind Nagle for an ACK */
    setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, mini_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, mini_frame);
    nghttp2_session_server_new(&m->s, cb, m);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(m->s, NGHTTP2_FLAG_NONE, NULL, 0);
    uint8_t buf[16384];
    while (m->fd >= 0 && !atomic_load(&m->stop)) {
        const uint8_t *out;
        ssize_t n;
        int32_t held = atomic_load(&m->held);
        if (held != 0 && atomic_exchange(&m->release, false)) {
            nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE};
            nghttp2_submit_response(m->s, held, &nv, 1, NULL);
            atomic_store(&m->held, 0);
            m->ok_pending = true;
        }
        while ((n = nghttp2_session_mem_send(m->s, &out)) > 0)
            if (send(m->fd, out, (size_t)n, MSG_NOSIGNAL) != n)
                break;
        if (m->ok_pending) {
            m->ok_pending = false;
            atomic_fetch_add(&m->ok_out, 1);
        }
        if (atomic_load(&m->close_now)) {
            shutdown(m->fd, SHUT_RDWR);
            break;
        }
        struct pollfd p = {.fd = m->fd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0)
            continue;
        n = recv(m->fd, buf, sizeof(buf), 0);
        if (n <= 0 || nghttp2_session_mem_recv(m->s, buf, (size_t)n) != n)
            break;
    }
    while (!atomic_load(&m->stop)) /* the connection stays until the test ends */
        usleep(1000);
    nghttp2_session_del(m->s);
    if (m->fd >= 0)
        close(m->fd);
    return NULL;
}

static void mini_start(struct mini *m)
{
    memset(m, 0, sizeof(*m));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    m->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(m->lfd >= 0);
    assert_int_equal(bind(m->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(m->lfd, 1), 0);
    assert_int_equal(getsockname(m->lfd, (struct sockaddr *)&a, &len), 0);
    m->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&m->thread, NULL, mini_main, m), 0);
}

static void mini_stop(struct mini *m)
{
    atomic_store(&m->stop, true);
    pthread_join(m->thread, NULL);
    close(m->lfd);
}

/* A mini server started afresh and a client (16 streams, reporting to `s`,
 * emptied) connecting to it. */
static struct h2c *mini_client(struct mini *m, struct seen *s)
{
    mini_start(m);
    memset(s, 0, sizeof(*s));
    struct h2c *c = h2c_new(16, on_done, s);
    assert_non_null(c);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", m->port);
    assert_int_equal(h2c_connect(c, url, 1000), 0);
    return c;
}

/* A stream the server resets ends with H2C_ERESET and the connection goes
 * on; after a GOAWAY naming stream 1 the streams above it end with
 * H2C_ERESET (refused), nothing more is taken, and stream 1 ends with
 * H2C_ELOST when the server closes the connection. */
static void test_reset_and_goaway(void **state)
{
    static struct mini m;
    static struct seen s;
    struct h2c *c = mini_client(&m, &s);
    static int users[8];
    assert_int_equal(h2c_submit(c, "GET", "/rst", NULL, 0, 5000, &users[0]), 0);
    step_until(c, &s, 1);
    assert_ptr_equal(s.r[0].user, &users[0]);
    assert_int_equal(s.r[0].err, H2C_ERESET);
    assert_int_equal(h2c_submit(c, "POST", "/ok", "{}", 2, 5000, &users[1]), 0);
    step_until(c, &s, 2);
    assert_int_equal(s.r[1].err, H2C_OK);
    assert_int_equal(s.r[1].status, 200);
    assert_string_equal(s.r[1].body, "");

    /* A new connection: stream 1 held, 3 and 5 held, 7 asks for the GOAWAY. */
    h2c_free(c);
    mini_stop(&m);
    c = mini_client(&m, &s);
    for (int i = 0; i < 3; i++)
        assert_int_equal(h2c_submit(c, "GET", "/hold", NULL, 0, 0, &users[i]), 0);
    assert_int_equal(h2c_submit(c, "GET", "/goaway", NULL, 0, 0, &users[3]), 0);
    step_until(c, &s, 3);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(s.r[i].err, H2C_ERESET);
        assert_true(s.r[i].user != &users[0]); /* stream 1 is still processed */
    }
    assert_int_equal(h2c_room(c), 0);
    assert_int_equal(h2c_submit(c, "GET", "/ok", NULL, 0, 0, NULL), -1);
    assert_int_equal(h2c_in_flight(c), 1);
    atomic_store(&m.close_now, true);
    step_until(c, &s, 4);
    assert_ptr_equal(s.r[3].user, &users[0]);
    assert_int_equal(s.r[3].err, H2C_ELOST);
    assert_int_equal(h2c_state(c), H2C_DOWN);
    h2c_free(c);
    mini_stop(&m);
}

/* rx_us: the answer's arrival at the socket, without the time the caller
 * took to read it. The caller here reads 200 ms after the answer was sent
 * (a load generator's thread waiting for a CPU): `us` counts the 200 ms,
 * rx_us does not. */
static void test_arrival_apart_from_reading(void **state)
{
    static struct mini m;
    static struct seen s;
    struct h2c *c = mini_client(&m, &s);
    assert_int_equal(h2c_submit(c, "GET", "/held", NULL, 0, 5000, NULL), 0);
    for (int64_t end = rdt_now_ms() + 5000; atomic_load(&m.held) == 0 && rdt_now_ms() < end;)
        h2c_step(c, 10);
    assert_int_not_equal(atomic_load(&m.held), 0);
    assert_int_equal(s.n, 0);
    atomic_store(&m.release, true); /* the server answers; this thread reads it late */
    for (int64_t end = rdt_now_ms() + 5000; atomic_load(&m.ok_out) == 0 && rdt_now_ms() < end;)
        usleep(1000);
    assert_int_equal(atomic_load(&m.ok_out), 1);
    usleep(200 * 1000);
    step_until(c, &s, 1);
    assert_int_equal(s.r[0].status, 200);
    assert_true(s.r[0].us >= 200000);
    assert_true(s.r[0].us - s.r[0].rx_us >= 195000); /* the late read is not in rx_us */
    h2c_free(c);
    mini_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_limit_and_timeout),
        cmocka_unit_test(test_connection_lost),
        cmocka_unit_test(test_reset_and_goaway),
        cmocka_unit_test(test_arrival_apart_from_reading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
