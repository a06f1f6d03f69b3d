#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "common/util.h"
#include "recoveryd/error.h"
#include "tls.h"

/*
 * A connection goes CONNECTING (outbound: name lookup and TCP connect) ->
 * TLS (handshake) -> PREAMBLE (inbound: reading libraft's handshake inside
 * TLS) -> PUMP (raft has its end of the socketpair) -> CLOSING.
 */
enum link_state { L_CONNECTING, L_TLS, L_PREAMBLE, L_PUMP, L_CLOSING };

#define HANDSHAKE_TIMEOUT_MS 5000              /* connect + TLS + libraft's handshake */
#define CLOSE_TIMEOUT_MS     2000              /* flushing what is queued at a close */
#define MAX_HANDSHAKES       256               /* inbound connections not yet handed to raft */
#define MAX_HANDSHAKES_HOST  16                /* ... of them from one address */
#define HIGH_WATER           ((size_t)4 << 20) /* queued to one side: stop reading the other */
#define LOW_WATER            ((size_t)1 << 20)
#define PREAMBLE_LEN         24   /* libraft: protocol, server id, address length (u64 LE) */
#define MAX_PEER_ADDRESS     1024 /* bytes of address accepted in that handshake */
#define HANDSHAKE_PROTOCOL   1
#define LOG_BURST            10 /* peer_refused lines per window, then counted */
#define LOG_WINDOW_MS        10000

struct tls;

struct link {
    struct tls *t;
    struct link *prev, *next;
    enum link_state state;
    bool inbound;
    bool tcp_connected; /* uv_shutdown makes sense on it */
    bool pipe_open;     /* our end of the socketpair is open */
    bool tcp_reading, pipe_reading;
    bool handles_closing;
    bool resolving; /* a uv_getaddrinfo is in flight (it holds the link) */
    bool counted;   /* counted in t->n_handshakes */
    unsigned open_handles;
    unsigned shutdowns;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    uv_shutdown_t sd_tcp, sd_pipe;
    SSL *ssl;
    BIO *rbio, *wbio; /* network bytes in / out (owned by ssl) */
    char peer[64];    /* IP:port of the other end, for the log */
    /* The peer's raft id and address: dialled (outbound) or claimed (inbound). */
    raft_id id;
    char address[RD_CFG_STR];
    struct raft_uv_connect *req; /* outbound: raft's request, until its callback */
    int status;                  /* what req->cb gets when the link ends first */
    unsigned char hs[PREAMBLE_LEN + MAX_PEER_ADDRESS];
    size_t hs_len;
};

struct tls {
    struct raft_uv_transport *transport;
    uv_loop_t *loop;
    const struct rd_config *cfg;
    SSL_CTX *ctx;
    raft_id id;          /* ours, from init */
    const char *address; /* ours, from init */
    uv_tcp_t listener;
    bool listening;
    raft_uv_accept_cb accept_cb;
    struct link *links;
    unsigned n_links, n_handshakes;
    bool closing;
    raft_uv_transport_close_cb close_cb;
    uint64_t refused;
    int64_t log_window_ms;
    unsigned log_lines, log_suppressed;
    char buf[64 * 1024]; /* reads land here: consumed before the callback returns */
};

struct wreq {
    uv_write_t req;
    struct link *l;
    size_t len;
    char data[];
};

static void link_close(struct link *l);
static void link_fail(struct link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void drain_tls(struct link *l);

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

/* OpenSSL's last error as text ("" when none); clears the queue. */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    buf[0] = '\0';
    if (e != 0) {
        const char *r = ERR_reason_error_string(e);
        if (r != NULL)
            snprintf(buf, cap, "%s", r);
        else
            ERR_error_string_n(e, buf, cap);
    }
    ERR_clear_error();
    return buf;
}

static void peer_name(uv_tcp_t *tcp, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    snprintf(out, cap, "?");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
    }
    snprintf(out, cap, "%s:%u", ip, port);
}

/* "IP:port" strings of one IP. */
static bool same_host(const char *a, const char *b)
{
    const char *ca = strrchr(a, ':'), *cb = strrchr(b, ':');
    return ca != NULL && cb != NULL && ca - a == cb - b && memcmp(a, b, (size_t)(ca - a)) == 0;
}

/* A refused peer, with a bound on the lines a flood of attempts can write. */
static void log_refused(struct link *l, const char *why)
{
    struct tls *t = l->t;
    t->refused++;
    int64_t now = rd_now_ms();
    if (now - t->log_window_ms >= LOG_WINDOW_MS) {
        t->log_window_ms = now;
        t->log_lines = 0;
    }
    if (t->log_lines >= LOG_BURST) {
        t->log_suppressed++;
        return;
    }
    t->log_lines++;
    char id[32] = "";
    if (l->id != 0)
        snprintf(id, sizeof(id), " id=%llu", (unsigned long long)l->id);
    RD_WARN("raft", "peer_refused",
            "direction=%s peer=%s%s reason=\"%s\" refused_total=%llu suppressed=%u",
            l->inbound ? "in" : "out", l->peer, id, why, (unsigned long long)t->refused,
            t->log_suppressed);
    t->log_suppressed = 0;
}

/* ---- the transport's bookkeeping -------------------------------------------- */

static void maybe_closed(struct tls *t)
{
    if (!t->closing || t->listening || t->n_links > 0 || t->close_cb == NULL)
        return;
    raft_uv_transport_close_cb cb = t->close_cb;
    t->close_cb = NULL;
    cb(t->transport);
}

static void link_free(struct link *l)
{
    struct tls *t = l->t;
    if (l->open_handles > 0 || l->resolving)
        return;
    if (l->prev)
        l->prev->next = l->next;
    else
        t->links = l->next;
    if (l->next)
        l->next->prev = l->prev;
    t->n_links--;
    if (l->counted)
        t->n_handshakes--;
    if (l->ssl)
        SSL_free(l->ssl);
    struct raft_uv_connect *req = l->req;
    int status = t->closing ? RAFT_CANCELED : l->status;
    free(l);
    if (req != NULL)
        req->cb(req, NULL, status);
    maybe_closed(t);
}

static void handle_closed(uv_handle_t *h)
{
    struct link *l = h->data;
    l->open_handles--;
    link_free(l);
}

/* Closes every handle now (what is queued is dropped). */
static void link_close_now(struct link *l)
{
    if (l->handles_closing)
        return;
    l->handles_closing = true;
    l->state = L_CLOSING;
    uv_close((uv_handle_t *)&l->timer, handle_closed);
    uv_close((uv_handle_t *)&l->tcp, handle_closed);
    if (l->pipe_open)
        uv_close((uv_handle_t *)&l->pipe, handle_closed);
    if (l->resolving)
        uv_cancel((uv_req_t *)&l->gai);
}

static void shut_done(uv_shutdown_t *req, int status)
{
    (void)status;
    struct link *l = req->data;
    if (l->shutdowns > 0 && --l->shutdowns == 0)
        link_close_now(l);
}

static void close_timeout(uv_timer_t *timer)
{
    link_close_now(timer->data);
}

static void flush_net(struct link *l);

/*
 * Ends the link cleanly: a TLS close_notify to the peer, what is queued on
 * either side flushed, then both shut down (raft reads what came before
 * its EOF), then closed; at most CLOSE_TIMEOUT_MS.
 */
static void link_close(struct link *l)
{
    if (l->state == L_CLOSING)
        return;
    l->state = L_CLOSING;
    uv_timer_stop(&l->timer);
    if (l->tcp_reading)
        uv_read_stop((uv_stream_t *)&l->tcp);
    if (l->pipe_reading)
        uv_read_stop((uv_stream_t *)&l->pipe);
    l->tcp_reading = l->pipe_reading = false;
    if (l->ssl != NULL && SSL_is_init_finished(l->ssl)) {
        SSL_shutdown(l->ssl);
        ERR_clear_error();
        flush_net(l);
    }
    l->shutdowns = 0;
    l->sd_tcp.data = l->sd_pipe.data = l;
    if (l->tcp_connected && uv_shutdown(&l->sd_tcp, (uv_stream_t *)&l->tcp, shut_done) == 0)
        l->shutdowns++;
    if (l->pipe_open && uv_shutdown(&l->sd_pipe, (uv_stream_t *)&l->pipe, shut_done) == 0)
        l->shutdowns++;
    if (l->shutdowns == 0) {
        link_close_now(l);
        return;
    }
    uv_timer_start(&l->timer, close_timeout, CLOSE_TIMEOUT_MS, 0);
}

/* A refusal or a failure: logged (as a refusal before raft had the link),
 * then closed. */
static void link_fail(struct link *l, const char *fmt, ...)
{
    if (l->state == L_CLOSING)
        return;
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    /* A certificate's subject or a claimed address may hold anything: keep
     * the log line one line of key=value. */
    for (char *c = why; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
            *c = '?';
    if (l->state == L_TLS || l->state == L_PREAMBLE)
        log_refused(l, why);
    else if (l->state == L_PUMP)
        RD_DEBUG("raft", "peer_link_failed", "direction=%s peer=%s id=%llu reason=\"%s\"",
                 l->inbound ? "in" : "out", l->peer, (unsigned long long)l->id, why);
    else
        RD_DEBUG("raft", "peer_unreachable", "peer=%s id=%llu reason=\"%s\"", l->address,
                 (unsigned long long)l->id, why);
    link_close(l);
}

static void handshake_timeout(uv_timer_t *timer)
{
    struct link *l = timer->data;
    link_fail(l, "no TLS connection within %d ms", HANDSHAKE_TIMEOUT_MS);
}

static struct link *link_new(struct tls *t, bool inbound)
{
    struct link *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->t = t;
    l->inbound = inbound;
    l->status = RAFT_NOCONNECTION;
    l->state = inbound ? L_TLS : L_CONNECTING;
    uv_tcp_init(t->loop, &l->tcp);
    uv_timer_init(t->loop, &l->timer);
    l->tcp.data = l->timer.data = l;
    l->open_handles = 2;
    l->next = t->links;
    if (t->links)
        t->links->prev = l;
    t->links = l;
    t->n_links++;
    return l;
}

/* ---- moving bytes -------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct link *l = h->data;
    buf->base = l->t->buf;
    buf->len = sizeof(l->t->buf);
}

static void tcp_written(uv_write_t *req, int status);
static void pipe_written(uv_write_t *req, int status);
static void tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static int send_bytes(struct link *l, uv_stream_t *s, const void *p, size_t n, uv_write_cb cb)
{
    struct wreq *w = malloc(sizeof(*w) + n);
    if (w == NULL)
        return UV_ENOMEM;
    w->l = l;
    w->len = n;
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rv = uv_write(&w->req, s, &b, 1, cb);
    if (rv != 0)
        free(w);
    return rv;
}

/* What TLS produced for the network: onto the TCP socket. */
static void flush_net(struct link *l)
{
    size_t n;
    while ((n = BIO_ctrl_pending(l->wbio)) > 0) {
        struct wreq *w = malloc(sizeof(*w) + n);
        if (w == NULL) {
            link_close_now(l);
            return;
        }
        int got = BIO_read(l->wbio, w->data, (int)n);
        if (got <= 0) {
            free(w);
            return;
        }
        w->l = l;
        w->len = (size_t)got;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)got);
        if (uv_write(&w->req, (uv_stream_t *)&l->tcp, &b, 1, tcp_written) != 0) {
            free(w);
            link_close_now(l);
            return;
        }
    }
}

static void tcp_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct link *l = w->l;
    free(w);
    if (status < 0) {
        if (status != UV_ECANCELED)
            link_fail(l, "write to the peer: %s", uv_strerror(status));
        return;
    }
    if (l->state == L_PUMP && !l->pipe_reading && l->tcp.write_queue_size < LOW_WATER)
        l->pipe_reading = uv_read_start((uv_stream_t *)&l->pipe, alloc_cb, pipe_read) == 0;
}

static void pipe_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct link *l = w->l;
    free(w);
    if (status < 0) {
        if (status != UV_ECANCELED)
            link_fail(l, "write to raft: %s", uv_strerror(status));
        return;
    }
    if (l->state == L_PUMP && !l->tcp_reading && l->pipe.write_queue_size < LOW_WATER) {
        drain_tls(l); /* what TLS still holds decrypted first */
        if (l->state == L_PUMP && !l->tcp_reading && l->pipe.write_queue_size < LOW_WATER)
            l->tcp_reading = uv_read_start((uv_stream_t *)&l->tcp, alloc_cb, tcp_read) == 0;
    }
}

/* Raft wrote: encrypt it for the peer. */
static void pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct link *l = s->data;
    if (n == 0 || l->state != L_PUMP)
        return;
    if (n < 0) {
        if (n != UV_EOF)
            RD_DEBUG("raft", "peer_link_failed", "peer=%s reason=\"raft side: %s\"", l->peer,
                     uv_strerror((int)n));
        link_close(l); /* raft closed its end */
        return;
    }
    int w = SSL_write(l->ssl, buf->base, (int)n);
    if (w != (int)n) {
        char r[256];
        link_fail(l, "TLS write: %s", ssl_reason(r, sizeof(r)));
        return;
    }
    flush_net(l);
    if (l->state == L_PUMP && l->tcp.write_queue_size > HIGH_WATER) {
        uv_read_stop((uv_stream_t *)&l->pipe);
        l->pipe_reading = false;
    }
}

/* ---- handing the link to raft --------------------------------------------------- */

static void raft_handle_free(uv_handle_t *h)
{
    raft_free(h);
}

static void handle_free(uv_handle_t *h)
{
    free(h);
}

/* A socketpair: raft's end as a uv_pipe_t (raft_malloc'd: raft frees it), ours in l->pipe. */
static int make_pair(struct link *l, uv_stream_t **raft_end)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return -errno;
    uv_pipe_t *p = raft_malloc(sizeof(*p));
    if (p == NULL) {
        close(fds[0]);
        close(fds[1]);
        return -ENOMEM;
    }
    uv_pipe_init(l->t->loop, p, 0);
    uv_pipe_init(l->t->loop, &l->pipe, 0);
    l->pipe.data = l;
    l->pipe_open = true;
    l->open_handles++;
    int rv = uv_pipe_open(p, fds[0]);
    if (rv != 0) {
        close(fds[0]);
        close(fds[1]);
        uv_close((uv_handle_t *)p, raft_handle_free);
        return rv;
    }
    rv = uv_pipe_open(&l->pipe, fds[1]);
    if (rv != 0) {
        close(fds[1]);
        uv_close((uv_handle_t *)p, raft_handle_free); /* closes fds[0] */
        return rv;
    }
    *raft_end = (uv_stream_t *)p;
    return 0;
}

/* Both sides read: the link pumps from now on. */
static void start_pump(struct link *l)
{
    l->state = L_PUMP;
    uv_timer_stop(&l->timer);
    if (l->counted) {
        l->counted = false;
        l->t->n_handshakes--;
    }
    l->pipe_reading = uv_read_start((uv_stream_t *)&l->pipe, alloc_cb, pipe_read) == 0;
}

/* The certificate names `replica-<id>` (subject CN or DNS SAN). */
static bool names_replica(X509 *cert, raft_id id)
{
    char name[40];
    snprintf(name, sizeof(name), "replica-%llu", (unsigned long long)id);
    return X509_check_host(cert, name, 0,
                           X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT | X509_CHECK_FLAG_NO_WILDCARDS,
                           NULL) == 1;
}

/* The peer's certificate may speak for raft id l->id. 0, or -1 after the refusal. */
static int check_identity(struct link *l)
{
    X509 *cert = SSL_get1_peer_certificate(l->ssl);
    if (cert == NULL) {
        link_fail(l, "no peer certificate");
        return -1;
    }
    char subject[256];
    X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    for (char *c = subject; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
            *c = '?';
    bool ok = !l->t->cfg->cluster.tls.check_replica_id || names_replica(cert, l->id);
    X509_free(cert);
    if (!ok) {
        link_fail(l,
                  "certificate %s does not name replica-%llu, the raft id it %s "
                  "(cluster.tls.check_replica_id)",
                  subject, (unsigned long long)l->id, l->inbound ? "claims" : "was dialled as");
        return -1;
    }
    RD_DEBUG("raft", "peer_authenticated", "direction=%s peer=%s id=%llu subject=\"%s\"",
             l->inbound ? "in" : "out", l->peer, (unsigned long long)l->id, subject);
    return 0;
}

/* Outbound, TLS up: libraft's handshake, then raft gets its stream. */
static void outbound_ready(struct link *l)
{
    if (check_identity(l) != 0)
        return;
    size_t alen = strlen(l->t->address) + 1;
    size_t padded = (alen + 7) / 8 * 8;
    unsigned char hs[PREAMBLE_LEN + RD_CFG_STR + 8] = {0};
    if (padded > sizeof(hs) - PREAMBLE_LEN) {
        link_fail(l, "own address too long");
        return;
    }
    put_le64(hs, HANDSHAKE_PROTOCOL);
    put_le64(hs + 8, l->t->id);
    put_le64(hs + 16, padded);
    memcpy(hs + PREAMBLE_LEN, l->t->address, alen);
    if (SSL_write(l->ssl, hs, (int)(PREAMBLE_LEN + padded)) <= 0) {
        char r[256];
        link_fail(l, "TLS write: %s", ssl_reason(r, sizeof(r)));
        return;
    }
    flush_net(l);
    uv_stream_t *stream = NULL;
    int rv = make_pair(l, &stream);
    if (rv != 0) {
        link_fail(l, "socketpair: %s", uv_strerror(rv));
        return;
    }
    start_pump(l);
    struct raft_uv_connect *req = l->req;
    l->req = NULL;
    req->cb(req, stream, 0);
}

/* Inbound: plaintext that belongs to libraft's handshake. Returns how many
 * bytes of `p` it took (the rest is raft's), or -1 after a refusal. */
static ssize_t preamble_take(struct link *l, const unsigned char *p, size_t n)
{
    size_t want = PREAMBLE_LEN;
    if (l->hs_len >= PREAMBLE_LEN)
        want = PREAMBLE_LEN + (size_t)get_le64(l->hs + 16);
    size_t take = 0;
    while (take < n) {
        size_t k = want - l->hs_len;
        if (k > n - take)
            k = n - take;
        memcpy(l->hs + l->hs_len, p + take, k);
        l->hs_len += k;
        take += k;
        if (l->hs_len < want)
            break;
        if (want == PREAMBLE_LEN) {
            uint64_t proto = get_le64(l->hs), alen = get_le64(l->hs + 16);
            if (proto != HANDSHAKE_PROTOCOL || alen == 0 || alen > MAX_PEER_ADDRESS) {
                link_fail(l, "malformed raft handshake (protocol %llu, address of %llu bytes)",
                          (unsigned long long)proto, (unsigned long long)alen);
                return -1;
            }
            want = PREAMBLE_LEN + (size_t)alen;
            continue;
        }
        break; /* complete */
    }
    if (l->hs_len < PREAMBLE_LEN || l->hs_len < want)
        return (ssize_t)take;
    /* Complete: who it claims to be. */
    size_t alen = want - PREAMBLE_LEN;
    const char *addr = (const char *)l->hs + PREAMBLE_LEN;
    if (strnlen(addr, alen) == alen || strnlen(addr, alen) >= sizeof(l->address)) {
        link_fail(l, "malformed raft handshake (address not terminated)");
        return -1;
    }
    l->id = get_le64(l->hs + 8);
    snprintf(l->address, sizeof(l->address), "%s", addr);
    if (l->id == 0) {
        link_fail(l, "malformed raft handshake (raft id 0)");
        return -1;
    }
    if (check_identity(l) != 0)
        return -1;
    uv_stream_t *stream = NULL;
    int rv = make_pair(l, &stream);
    if (rv != 0) {
        link_fail(l, "socketpair: %s", uv_strerror(rv));
        return -1;
    }
    start_pump(l);
    l->t->accept_cb(l->t->transport, l->id, l->address, stream);
    return (ssize_t)take;
}

/* Decrypted bytes: libraft's handshake (inbound), then raft's. */
static void drain_tls(struct link *l)
{
    while (l->state == L_PREAMBLE || l->state == L_PUMP) {
        if (l->state == L_PUMP && l->pipe.write_queue_size > HIGH_WATER) {
            if (l->tcp_reading)
                uv_read_stop((uv_stream_t *)&l->tcp);
            l->tcp_reading = false;
            break;
        }
        int n = SSL_read(l->ssl, l->t->buf, sizeof(l->t->buf));
        if (n <= 0) {
            int e = SSL_get_error(l->ssl, n);
            char r[256];
            if (e == SSL_ERROR_WANT_READ) {
                ERR_clear_error();
                break;
            }
            if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify */
                ERR_clear_error();
                link_close(l);
                return;
            }
            link_fail(l, "TLS read: %s", ssl_reason(r, sizeof(r)));
            return;
        }
        size_t off = 0;
        if (l->state == L_PREAMBLE) {
            ssize_t took = preamble_take(l, (unsigned char *)l->t->buf, (size_t)n);
            if (took < 0)
                return;
            off = (size_t)took;
        }
        if (off < (size_t)n && l->state == L_PUMP &&
            send_bytes(l, (uv_stream_t *)&l->pipe, l->t->buf + off, (size_t)n - off,
                       pipe_written) != 0) {
            link_fail(l, "write to raft failed");
            return;
        }
    }
    if (l->state != L_CLOSING)
        flush_net(l);
}

/* Why the TLS handshake failed, for the log. */
static void handshake_reason(struct link *l, int e, char *out, size_t cap)
{
    char r[256];
    ssl_reason(r, sizeof(r));
    long v = SSL_get_verify_result(l->ssl);
    if (v != X509_V_OK)
        snprintf(out, cap, "peer certificate rejected: %s", X509_verify_cert_error_string(v));
    else if (r[0] != '\0')
        snprintf(out, cap, "TLS handshake failed: %s", r);
    else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
        snprintf(out, cap, "connection closed during the TLS handshake");
    else
        snprintf(out, cap, "TLS handshake failed (error %d)", e);
}

static void advance_tls(struct link *l)
{
    ERR_clear_error();
    int rv = SSL_do_handshake(l->ssl);
    flush_net(l); /* the next flight, or an alert saying why not */
    if (rv != 1) {
        int e = SSL_get_error(l->ssl, rv);
        if (e == SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            return;
        }
        char why[384];
        handshake_reason(l, e, why, sizeof(why));
        link_fail(l, "%s", why);
        return;
    }
    if (l->inbound) {
        l->state = L_PREAMBLE;
        drain_tls(l); /* libraft's handshake may have come with the last flight */
    } else {
        outbound_ready(l);
        if (l->state == L_PUMP)
            drain_tls(l);
    }
}

static void tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct link *l = s->data;
    if (n == 0 || l->state == L_CLOSING)
        return;
    if (n < 0) {
        if (l->state == L_PUMP) {
            link_close(l); /* the peer went: raft sees its EOF after what came before */
            return;
        }
        if (n == UV_EOF)
            link_fail(l, "connection closed before the TLS connection was up");
        else
            link_fail(l, "read: %s", uv_strerror((int)n));
        return;
    }
    if (BIO_write(l->rbio, buf->base, (int)n) != (int)n) {
        link_fail(l, "out of memory");
        return;
    }
    if (l->state == L_TLS)
        advance_tls(l);
    else
        drain_tls(l);
}

/* TLS state for a connected socket (SSL over two memory BIOs). 0 or -1. */
static int tls_begin(struct link *l)
{
    l->ssl = SSL_new(l->t->ctx);
    l->rbio = BIO_new(BIO_s_mem());
    l->wbio = BIO_new(BIO_s_mem());
    if (l->ssl == NULL || l->rbio == NULL || l->wbio == NULL) {
        BIO_free(l->rbio);
        BIO_free(l->wbio);
        l->rbio = l->wbio = NULL;
        return -1;
    }
    BIO_set_mem_eof_return(l->rbio, -1); /* empty means "wait", not EOF */
    SSL_set_bio(l->ssl, l->rbio, l->wbio);
    if (l->inbound)
        SSL_set_accept_state(l->ssl);
    else
        SSL_set_connect_state(l->ssl);
    l->state = L_TLS;
    uv_tcp_nodelay(&l->tcp, 1);
    l->tcp_reading = uv_read_start((uv_stream_t *)&l->tcp, alloc_cb, tcp_read) == 0;
    return l->tcp_reading ? 0 : -1;
}

/* ---- inbound --------------------------------------------------------------------- */

static void on_accept(uv_stream_t *server, int status)
{
    struct tls *t = server->data;
    if (status < 0) {
        RD_WARN("raft", "accept_failed", "error=\"%s\"", uv_strerror(status));
        return;
    }
    struct link *l = link_new(t, true);
    if (l == NULL) {
        /* Take it off the backlog and drop it. */
        uv_tcp_t *tmp = malloc(sizeof(*tmp));
        if (tmp != NULL) {
            uv_tcp_init(t->loop, tmp);
            uv_accept(server, (uv_stream_t *)tmp);
            uv_close((uv_handle_t *)tmp, handle_free);
        }
        return;
    }
    if (uv_accept(server, (uv_stream_t *)&l->tcp) != 0) {
        link_close_now(l);
        return;
    }
    l->tcp_connected = true;
    peer_name(&l->tcp, l->peer, sizeof(l->peer));
    if (t->n_handshakes >= MAX_HANDSHAKES || t->closing) {
        link_fail(l, "%u TLS handshakes already in progress", t->n_handshakes);
        return;
    }
    /* One address cannot take every slot: replicas elsewhere still get in. */
    unsigned same = 0;
    for (struct link *o = t->links; o != NULL; o = o->next)
        same += o->counted && same_host(o->peer, l->peer);
    if (same >= MAX_HANDSHAKES_HOST) {
        link_fail(l, "%u TLS handshakes already in progress from this address", same);
        return;
    }
    l->counted = true;
    t->n_handshakes++;
    uv_timer_start(&l->timer, handshake_timeout, HANDSHAKE_TIMEOUT_MS, 0);
    if (tls_begin(l) != 0)
        link_fail(l, "cannot set up TLS");
}

static int tls_listen(struct raft_uv_transport *transport, raft_uv_accept_cb cb)
{
    struct tls *t = transport->impl;
    const char *address = rd_config_raft_bind(t->cfg);
    char host[RD_CFG_STR], service[8];
    uint16_t port;
    t->accept_cb = cb;
    if (rd_config_parse_hostport(address, host, &port) != 0) {
        snprintf(transport->errmsg, sizeof(transport->errmsg), "bad address %s", address);
        return RAFT_INVALID;
    }
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    /* IPv4, as libraft's own transport listens. */
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host[0] ? host : NULL, service, &hints, &res) != 0 || res == NULL) {
        snprintf(transport->errmsg, sizeof(transport->errmsg), "cannot resolve %s", host);
        return RAFT_IOERR;
    }
    uv_tcp_init(t->loop, &t->listener);
    t->listener.data = t;
    int rv = uv_tcp_bind(&t->listener, res->ai_addr, 0);
    freeaddrinfo(res);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&t->listener, 128, on_accept);
    t->listening = true; /* the handle must be closed either way */
    if (rv != 0) {
        snprintf(transport->errmsg, sizeof(transport->errmsg), "listen on %s: %s", address,
                 uv_strerror(rv));
        return RAFT_IOERR;
    }
    return 0;
}

/* ---- outbound -------------------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
    struct link *l = req->data;
    if (l->state == L_CLOSING || status == UV_ECANCELED)
        return;
    if (status != 0) {
        link_fail(l, "connect: %s", uv_strerror(status));
        return;
    }
    l->tcp_connected = true;
    peer_name(&l->tcp, l->peer, sizeof(l->peer));
    if (tls_begin(l) != 0) {
        link_fail(l, "cannot set up TLS");
        return;
    }
    advance_tls(l); /* the ClientHello */
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct link *l = req->data;
    l->resolving = false;
    if (l->state == L_CLOSING) {
        uv_freeaddrinfo(res);
        link_free(l);
        return;
    }
    if (status != 0 || res == NULL) {
        uv_freeaddrinfo(res);
        link_fail(l, "cannot resolve: %s", uv_strerror(status));
        return;
    }
    l->connect.data = l;
    int rv = uv_tcp_connect(&l->connect, &l->tcp, res->ai_addr, on_connect);
    uv_freeaddrinfo(res);
    if (rv != 0)
        link_fail(l, "connect: %s", uv_strerror(rv));
}

static int tls_connect(struct raft_uv_transport *transport, struct raft_uv_connect *req, raft_id id,
                       const char *address, raft_uv_connect_cb cb)
{
    struct tls *t = transport->impl;
    char host[RD_CFG_STR], service[8];
    uint16_t port;
    if (t->closing)
        return RAFT_CANCELED;
    if (rd_config_parse_hostport(address, host, &port) != 0) {
        snprintf(transport->errmsg, sizeof(transport->errmsg), "cannot split %s into host:port",
                 address);
        return RAFT_NOCONNECTION;
    }
    struct link *l = link_new(t, false);
    if (l == NULL)
        return RAFT_NOMEM;
    l->id = id;
    snprintf(l->address, sizeof(l->address), "%s", address);
    snprintf(l->peer, sizeof(l->peer), "%s", address);
    req->cb = cb;
    l->req = req;
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    l->gai.data = l;
    if (uv_getaddrinfo(t->loop, &l->gai, on_resolved, host, service, &hints) != 0) {
        l->req = NULL; /* refused synchronously: raft hears it from the return value */
        link_close_now(l);
        return RAFT_NOCONNECTION;
    }
    l->resolving = true;
    uv_timer_start(&l->timer, handshake_timeout, HANDSHAKE_TIMEOUT_MS, 0);
    return 0;
}

/* ---- the rest of the interface --------------------------------------------------- */

static int tls_init_id(struct raft_uv_transport *transport, raft_id id, const char *address)
{
    struct tls *t = transport->impl;
    t->id = id;
    t->address = address;
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    struct tls *t = h->data;
    t->listening = false;
    maybe_closed(t);
}

static void tls_close(struct raft_uv_transport *transport, raft_uv_transport_close_cb cb)
{
    struct tls *t = transport->impl;
    t->closing = true;
    t->close_cb = cb;
    if (t->listening)
        uv_close((uv_handle_t *)&t->listener, listener_closed);
    for (struct link *l = t->links; l != NULL; l = l->next)
        link_close_now(l);
    maybe_closed(t);
}

/* ---- loading the certificates ---------------------------------------------------- */

static int file_check(const char *key, const char *path, char *err, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, cap, "%s: cannot read %s: %s", key, path, strerror(errno));
        return RD_ECONFIG;
    }
    fclose(f);
    return 0;
}

static int load_ctx(struct tls *t, char *err, size_t cap)
{
    const struct rd_config *cfg = t->cfg;
    const char *ca = cfg->cluster.tls.ca, *cert = cfg->cluster.tls.cert,
               *key = cfg->cluster.tls.key;
    int rv;
    if ((rv = file_check("cluster.tls.ca", ca, err, cap)) != 0 ||
        (rv = file_check("cluster.tls.cert", cert, err, cap)) != 0 ||
        (rv = file_check("cluster.tls.key", key, err, cap)) != 0)
        return rv;
    char r[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        snprintf(err, cap, "cluster.tls: cannot create a TLS context");
        return RD_ENOMEM;
    }
    t->ctx = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        snprintf(err, cap, "cluster.tls.ca: %s holds no PEM CA certificate (%s)", ca,
                 ssl_reason(r, sizeof(r)));
        return RD_ECONFIG;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, cap, "cluster.tls.cert: cannot load the PEM certificate chain %s (%s)", cert,
                 ssl_reason(r, sizeof(r)));
        return RD_ECONFIG;
    }
    /* Read first, then matched: "unreadable" and "another key" are two messages. */
    FILE *kf = fopen(key, "r");
    EVP_PKEY *pkey = kf ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
    if (kf)
        fclose(kf);
    if (pkey == NULL) {
        snprintf(err, cap, "cluster.tls.key: cannot load the PEM private key %s (%s)", key,
                 ssl_reason(r, sizeof(r)));
        return RD_ECONFIG;
    }
    int used = SSL_CTX_use_PrivateKey(ctx, pkey);
    EVP_PKEY_free(pkey);
    if (used != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, cap,
                 "cluster.tls.key: %s does not match the certificate in cluster.tls.cert %s", key,
                 cert);
        return RD_ECONFIG;
    }
    /* Our own certificate as a peer will see it: signed by the CA, naming us. */
    X509 *own = SSL_CTX_get0_certificate(ctx);
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    if (vc == NULL) {
        snprintf(err, cap, "cluster.tls: out of memory");
        return RD_ENOMEM;
    }
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(ctx, &chain);
    int ok = X509_STORE_CTX_init(vc, SSL_CTX_get_cert_store(ctx), own, chain) == 1 &&
             X509_verify_cert(vc) == 1;
    int verr = X509_STORE_CTX_get_error(vc);
    X509_STORE_CTX_free(vc);
    ERR_clear_error();
    if (!ok) {
        snprintf(err, cap,
                 "cluster.tls.cert: %s does not verify against the CA in cluster.tls.ca %s (%s): "
                 "the other replicas would refuse it",
                 cert, ca, X509_verify_cert_error_string(verr));
        return RD_ECONFIG;
    }
    if (cfg->cluster.tls.check_replica_id && !names_replica(own, cfg->cluster.replica_id)) {
        ERR_clear_error();
        snprintf(err, cap,
                 "cluster.tls.cert: %s does not name replica-%llu (subject CN or DNS "
                 "subjectAltName), the raft id of this replica (cluster.replica_id): the other "
                 "replicas would refuse it (deploy/make-certs.sh; or set "
                 "cluster.tls.check_replica_id: false)",
                 cert, (unsigned long long)cfg->cluster.replica_id);
        return RD_ECONFIG;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return 0;
}

int rd_raft_tls_init(struct raft_uv_transport *transport, uv_loop_t *loop,
                     const struct rd_config *cfg, char *err, size_t cap)
{
    struct tls *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, cap, "cluster.tls: out of memory");
        return RD_ENOMEM;
    }
    t->transport = transport;
    t->loop = loop;
    t->cfg = cfg;
    int rv = load_ctx(t, err, cap);
    if (rv != 0) {
        SSL_CTX_free(t->ctx);
        free(t);
        return rv;
    }
    void *data = transport->data;
    int version = transport->version;
    memset(transport, 0, sizeof(*transport));
    transport->version = version;
    transport->data = data;
    transport->impl = t;
    transport->init = tls_init_id;
    transport->listen = tls_listen;
    transport->connect = tls_connect;
    transport->close = tls_close;
    return 0;
}

void rd_raft_tls_free(struct raft_uv_transport *transport)
{
    struct tls *t = transport->impl;
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
    transport->impl = NULL;
}
