/*
 * engine/replica/tls.c without raft: two transports on one loop, on
 * loopback, with certificates of deploy/make-certs.sh, playing raft's part
 * with the streams they hand out:
 *
 *   - B dials A as raft does; A's accept callback gets B's raft id and
 *     address from libraft's handshake (sent inside TLS), B's connect
 *     callback a stream;
 *   - 64 MiB written on B's stream while A's raft does not read: the
 *     transports hold a bounded amount (most of it stays queued on B's raft
 *     stream: back-pressure reached the writer), then A reads it all, in
 *     order, byte for byte;
 *   - B's raft closes its stream: A's raft reads the rest, then EOF;
 *     the same the other way round on a second connection;
 *   - closing both transports closes every handle (the loop closes empty).
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "config/config.h"
#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_server.h"
#include "recoveryd/error.h"
#include "replica/tls.h"

#define BIG ((size_t)64 << 20)

static char certs[256];
static bool no_openssl;

struct side {
    struct rd_config cfg;
    struct raft_uv_transport t;
    char address[64];
    uv_stream_t *stream; /* the raft end it handed out */
    raft_id peer_id;
    char peer_address[64];
    size_t got; /* bytes read on `stream` */
    bool eof, bad_byte;
    bool closed;
};

static uv_loop_t loop;
static struct side A, B;
static struct raft_uv_connect req;
static int connect_status = 1;

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 131 + (i >> 13)) & 0xff);
}

static void setup_side(struct side *s, int id, uint16_t port)
{
    rd_config_defaults(&s->cfg);
    s->cfg.cluster.replica_id = (uint64_t)id;
    snprintf(s->address, sizeof s->address, "127.0.0.1:%u", (unsigned)port);
    snprintf(s->cfg.cluster.raft_address, sizeof s->cfg.cluster.raft_address, "%s", s->address);
    snprintf(s->cfg.cluster.tls.ca, RD_CFG_STR, "%s/ca.crt", certs);
    snprintf(s->cfg.cluster.tls.cert, RD_CFG_STR, "%s/replica-%d.crt", certs, id);
    snprintf(s->cfg.cluster.tls.key, RD_CFG_STR, "%s/replica-%d.key", certs, id);
    s->t.version = 1;
    char err[512];
    int rv = rd_raft_tls_init(&s->t, &loop, &s->cfg, err, sizeof err);
    if (rv != 0)
        fail_msg("rd_raft_tls_init: %s", err);
    assert_int_equal(s->t.init(&s->t, (raft_id)id, s->address), 0);
}

static void on_accept(struct raft_uv_transport *t, raft_id id, const char *address,
                      uv_stream_t *stream)
{
    (void)t;
    A.peer_id = id;
    snprintf(A.peer_address, sizeof A.peer_address, "%s", address);
    A.stream = stream;
    stream->data = &A;
}

static void on_connect(struct raft_uv_connect *r, uv_stream_t *stream, int status)
{
    (void)r;
    connect_status = status;
    B.stream = stream;
    if (stream != NULL)
        stream->data = &B;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    static char mem[256 * 1024];
    (void)suggested;
    buf->base = mem;
    buf->len = sizeof mem;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct side *me = s->data;
    if (n < 0) {
        me->eof = true;
        uv_read_stop(s);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        if ((unsigned char)buf->base[i] != pattern(me->got + (size_t)i))
            me->bad_byte = true;
    me->got += (size_t)n;
}

static void written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void write_big(uv_stream_t *s, unsigned char *data)
{
    uv_write_t *w = malloc(sizeof *w);
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)BIG);
    assert_int_equal(uv_write(w, s, &b, 1, written), 0);
}

static void stream_closed(uv_handle_t *h)
{
    raft_free(h);
}

static void shutdown_done(uv_shutdown_t *r, int status)
{
    (void)status;
    uv_close((uv_handle_t *)r->handle, stream_closed);
    free(r);
}

/* Closes the raft end as raft does after its last write. */
static void raft_close_stream(uv_stream_t *s)
{
    uv_shutdown_t *r = malloc(sizeof *r);
    assert_int_equal(uv_shutdown(r, s, shutdown_done), 0);
}

static void tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until `cond()` or `ms` passed (a 10 ms timer keeps each
 * iteration bounded). */
static bool run_until(bool (*cond)(void), int ms)
{
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    uv_timer_start(&timer, tick, 10, 10);
    uv_update_time(&loop);
    uint64_t end = uv_now(&loop) + (uint64_t)ms;
    bool ok = cond();
    while (!ok && uv_now(&loop) <= end) {
        uv_run(&loop, UV_RUN_ONCE);
        ok = cond();
    }
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&loop, UV_RUN_NOWAIT); /* the timer's close */
    return ok;
}

static bool both_linked(void)
{
    return A.stream != NULL && connect_status != 1;
}
static bool a_has_all(void)
{
    return A.got >= BIG || A.bad_byte;
}
static bool a_eof(void)
{
    return A.eof;
}
static bool b_has_all(void)
{
    return B.got >= BIG || B.bad_byte;
}
static bool b_eof(void)
{
    return B.eof;
}
static bool never(void)
{
    return false;
}
static bool both_closed(void)
{
    return A.closed && B.closed;
}

static void transport_closed(struct raft_uv_transport *t)
{
    (t == &A.t ? &A : &B)->closed = true;
}

static int group_setup(void **state)
{
    (void)state;
    char openssl[256];
    if (rdt_which("openssl", openssl, sizeof openssl) != 0) {
        no_openssl = true;
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(certs, sizeof certs, "%s/rdt-tls-unit-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(certs) == NULL)
        return -1;
    char script[512], log[400];
    snprintf(script, sizeof script, "%s/deploy/make-certs.sh", RD_SOURCE_DIR);
    snprintf(log, sizeof log, "%s/make-certs.log", certs);
    char *argv[] = {(char *)"/bin/sh", script, certs, (char *)"1", (char *)"2", NULL};
    return rdt_server_run(argv, NULL, log, RDT_SAME_USER, RDT_SAME_USER, 60000) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (certs[0] && !getenv("RDT_KEEP"))
        rdt_rmtree(certs);
    return 0;
}

static void test_pump_both_ways(void **state)
{
    (void)state;
    if (no_openssl)
        skip();
    assert_int_equal(uv_loop_init(&loop), 0);
    uint16_t pa, pb;
    assert_int_equal(rdt_free_ports(&pa, &pb), 0);
    setup_side(&A, 1, pa);
    setup_side(&B, 2, pb);
    assert_int_equal(A.t.listen(&A.t, on_accept), 0);
    assert_int_equal(B.t.connect(&B.t, &req, 1, A.address, on_connect), 0);
    assert_true(run_until(both_linked, 10000));
    assert_int_equal(connect_status, 0);
    assert_non_null(B.stream);
    /* A heard who dialled: libraft's handshake, inside TLS. */
    assert_int_equal(A.peer_id, 2);
    assert_string_equal(A.peer_address, B.address);

    unsigned char *data = malloc(BIG);
    assert_non_null(data);
    for (size_t i = 0; i < BIG; i++)
        data[i] = pattern(i);

    /* B writes 64 MiB; A's raft does not read yet. */
    write_big(B.stream, data);
    run_until(never, 1500);
    size_t held = B.stream->write_queue_size;
    print_message("%zu of %zu bytes still queued at the writer after 1.5 s\n", held, BIG);
    /* What is not still queued on B's raft stream sits in socket buffers and
     * in the transports' queues: bounded (two 4 MiB high-water marks plus the
     * kernel's buffers), not 64 MiB. */
    if (held < BIG / 2)
        fail_msg("only %zu of %zu bytes still wait at the writer: the transports took the rest "
                 "in",
                 held, BIG);
    assert_int_equal(uv_read_start(A.stream, alloc_cb, read_cb), 0);
    assert_true(run_until(a_has_all, 60000));
    assert_false(A.bad_byte);
    assert_int_equal(A.got, BIG);
    /* B's raft is done: A's raft sees EOF after everything. */
    raft_close_stream(B.stream);
    B.stream = NULL;
    assert_true(run_until(a_eof, 10000));
    assert_int_equal(A.got, BIG);
    uv_close((uv_handle_t *)A.stream, stream_closed);
    A.stream = NULL;

    /* The other way: a second connection, A's raft writes and closes. */
    A.got = B.got = 0;
    A.eof = B.eof = false;
    connect_status = 1;
    assert_int_equal(B.t.connect(&B.t, &req, 1, A.address, on_connect), 0);
    assert_true(run_until(both_linked, 10000));
    assert_int_equal(connect_status, 0);
    assert_int_equal(uv_read_start(B.stream, alloc_cb, read_cb), 0);
    write_big(A.stream, data);
    raft_close_stream(A.stream);
    A.stream = NULL;
    assert_true(run_until(b_has_all, 60000));
    assert_false(B.bad_byte);
    assert_true(run_until(b_eof, 10000));
    assert_int_equal(B.got, BIG);
    uv_close((uv_handle_t *)B.stream, stream_closed);
    B.stream = NULL;

    /* Closing the transports closes everything they hold. */
    A.t.close(&A.t, transport_closed);
    B.t.close(&B.t, transport_closed);
    assert_true(run_until(both_closed, 10000));
    rd_raft_tls_free(&A.t);
    rd_raft_tls_free(&B.t);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(data);
}

/* A transport closed while a connect is pending answers it RAFT_CANCELED. */
static void test_close_cancels_connect(void **state)
{
    (void)state;
    if (no_openssl)
        skip();
    memset(&A, 0, sizeof A);
    memset(&B, 0, sizeof B);
    assert_int_equal(uv_loop_init(&loop), 0);
    uint16_t pa, pb;
    assert_int_equal(rdt_free_ports(&pa, &pb), 0);
    setup_side(&B, 2, pb);
    connect_status = 1;
    /* Nobody listens on pa: the connect is refused or still pending. */
    assert_int_equal(B.t.connect(&B.t, &req, 1, "127.0.0.1:1", on_connect), 0);
    B.t.close(&B.t, transport_closed);
    A.closed = true;
    assert_true(run_until(both_closed, 10000));
    assert_int_equal(connect_status, RAFT_CANCELED);
    assert_null(B.stream);
    rd_raft_tls_free(&B.t);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pump_both_ways),
        cmocka_unit_test(test_close_cancels_connect),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return rdt_exit_code(failed, no_openssl);
}
