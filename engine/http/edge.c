/*
 * The API's edge (edge.h): connection caps at accept, and an HTTP/2 frame
 * inspector standing in front of h2o's read callback.
 *
 * How it sits in front of h2o 2.2: every accepted socket's read callback
 * (h2o_socket_t._cb.read) is replaced by edge_on_read, which calls h2o's
 * afterwards. A cleartext connection starts as HTTP/1.1 and becomes HTTP/2
 * inside that call (h2c prior knowledge), a TLS one inside the handshake's
 * read (ALPN h2): both times h2o installs its HTTP/2 reader while we are on
 * the stack, so we see the change and step in front again. An h2c upgrade
 * switches from a write callback: we step in front at its first request
 * (rd_edge_h2_request). HTTP/2 readers are never replaced after that in h2o
 * 2.2. HTTP/1.1 readers are (after each request): HTTP/1.1 keeps h2o's own
 * limits. The socket's on_close slot, unused by h2o's server side, points
 * back to our record.
 *
 * Frames are inspected whole, in the order h2o will parse them, before h2o
 * sees them; `off` is how far into the socket's input we have looked (h2o
 * consumes whole frames from the front). Cutting a connection queues GOAWAY
 * on h2o's own write buffer and tells h2o the client went away: h2o closes
 * it once the GOAWAY is written, as it does on a protocol error.
 */
#include "edge.h"

/* after <h2o.h>, which it needs */
#include <h2o/http2.h>
#include <h2o/http2_internal.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/log.h"
#include "common/util.h"
#include "metrics/metrics.h"
#include "recoveryd/error.h"

#define ADDR_BUCKETS 1024
#define MAX_STREAMS  128 /* h2o 2.2 allows 100 open streams per connection */
#define MAX_FRAME    16384
#define HPACK_TABLE  4096 /* h2o's SETTINGS_HEADER_TABLE_SIZE */
#define HPACK_SLOTS  (HPACK_TABLE / 32)
#define SWEEP_MS     250
#define LINGER_MS    250 /* from GOAWAY to close */

struct rd_edge_addr {
    struct rd_edge_addr *next;
    uint8_t key[16]; /* IPv6, or IPv4-mapped */
    unsigned conns;
    uint64_t blocked_until_ms;
};

struct edge_stream {
    uint32_t id;
    uint64_t since_ms;
    size_t body; /* DATA bytes received so far */
};

/*
 * Upper bounds of the sizes of the entries in the client's HPACK dynamic
 * table, newest first. Every bound is at least the real size, so this table
 * never holds more entries than the decoder's: its entry i is the decoder's
 * entry i, and an index past it refers to an entry of at most HPACK_TABLE.
 */
struct hpack_bounds {
    uint32_t size[HPACK_SLOTS];
    unsigned head, n; /* ring: head is the newest */
    size_t total, max;
};

struct edge_conn {
    uv_tcp_t tcp; /* first: h2o's close callback hands it back */
    struct rd_edge *edge;
    h2o_linklist_t link;
    struct rd_edge_addr *addr;
    char peer[INET6_ADDRSTRLEN];
    h2o_socket_t *sock;        /* NULL once h2o disposed of it */
    h2o_socket_cb inner;       /* h2o's read callback, called after ours */
    h2o_socket_cb inner_write; /* h2o's write callback, while a TLS handshake ends */
    h2o_http2_conn_t *h2;      /* once the connection speaks HTTP/2 */
    bool cut;
    uint64_t cut_ms;
    size_t off;          /* input bytes inspected */
    uint32_t max_stream; /* highest stream the client opened */
    uint64_t last_request_ms;
    /* a header block continued in CONTINUATION frames */
    bool hb_open;
    uint64_t hb_since_ms;
    uint8_t *hb;
    size_t hb_len, hb_cap;
    /* streams whose body is still arriving */
    struct edge_stream streams[MAX_STREAMS];
    unsigned n_streams;
    size_t body_buffered;
    /* token buckets: spent by resets and by frames without request data */
    double reset_tokens, frame_tokens;
    uint64_t tokens_ms;
    struct hpack_bounds hpack;
};

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN 24

static const char *const cut_names[RD_EDGE_CUT_COUNT] = {
    "stream_resets", "empty_frames", "header_list", "request_body", "request_timeout", "idle"};
static const char *const cut_text[RD_EDGE_CUT_COUNT] = {
    "too many streams reset by the client", "too many frames without request data",
    "header list over the limit",           "request bodies buffered over the limit",
    "request not complete in time",         "idle timeout"};
static const char *const refusal_names[RD_EDGE_REFUSED_COUNT] = {"max_connections",
                                                                 "max_per_address", "blocked"};

const char *rd_edge_cut_name(int cut)
{
    return cut >= 0 && cut < RD_EDGE_CUT_COUNT ? cut_names[cut] : "unknown";
}

const char *rd_edge_refusal_name(int why)
{
    return why >= 0 && why < RD_EDGE_REFUSED_COUNT ? refusal_names[why] : "unknown";
}

static void edge_on_read(h2o_socket_t *sock, const char *err);
static void edge_on_write(h2o_socket_t *sock, const char *err);

/* The clock itself, not the loop's cached time: one read can take long
 * (a burst of requests), and deadlines must not count that as silence. */
static uint64_t now_ms(void)
{
    return rd_mono_ns() / 1000000;
}

/* ---- source addresses ---------------------------------------------------- */

static void addr_key(const struct sockaddr_storage *ss, uint8_t key[16], char *shown, size_t len)
{
    memset(key, 0, 16);
    shown[0] = '\0';
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a->sin_addr, 4);
        inet_ntop(AF_INET, &a->sin_addr, shown, (socklen_t)len);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        memcpy(key, &a->sin6_addr, 16);
        inet_ntop(AF_INET6, &a->sin6_addr, shown, (socklen_t)len);
    }
}

static unsigned addr_bucket(const uint8_t key[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % ADDR_BUCKETS;
}

static struct rd_edge_addr *addr_get(struct rd_edge *e, const uint8_t key[16], bool create)
{
    struct rd_edge_addr **b = &e->addrs[addr_bucket(key)];
    for (struct rd_edge_addr *a = *b; a != NULL; a = a->next)
        if (memcmp(a->key, key, 16) == 0)
            return a;
    if (!create)
        return NULL;
    struct rd_edge_addr *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    memcpy(a->key, key, 16);
    a->next = *b;
    *b = a;
    return a;
}

/* Drops the records of addresses with no connection and no block. */
static void addr_collect(struct rd_edge *e, uint64_t now)
{
    for (unsigned i = 0; i < ADDR_BUCKETS; i++) {
        struct rd_edge_addr **p = &e->addrs[i];
        while (*p != NULL) {
            struct rd_edge_addr *a = *p;
            if (a->conns == 0 && a->blocked_until_ms <= now) {
                *p = a->next;
                free(a);
            } else {
                p = &a->next;
            }
        }
    }
}

/* ---- connections ----------------------------------------------------------- */

/* After rd_edge_stop: what no connection refers to any more goes. */
static void edge_release(struct rd_edge *e)
{
    if (e->addrs == NULL)
        return;
    addr_collect(e, UINT64_MAX);
    if (e->n_conns == 0) {
        free(e->addrs);
        e->addrs = NULL;
    }
}

static void conn_free(uv_handle_t *h)
{
    free(h); /* struct edge_conn starts with its uv_tcp_t */
}

/* h2o disposed of the socket (on_close): forget it, the memory goes with the handle. */
static void conn_sock_disposed(void *data)
{
    struct edge_conn *c = data;
    struct rd_edge *e = c->edge;
    c->sock = NULL;
    h2o_linklist_unlink(&c->link);
    e->n_conns--;
    c->addr->conns--;
    free(c->hb);
    c->hb = NULL;
    if (e->stopped)
        edge_release(e);
}

static void wrap_reader(struct edge_conn *c, h2o_socket_t *sock)
{
    c->inner = sock->_cb.read;
    sock->_cb.read = edge_on_read;
}

static void log_refusal(struct rd_edge *e, int why, const char *peer)
{
    uint64_t now = now_ms();
    if (now - e->last_refusal_log_ms < 1000 && e->last_refusal_log_ms != 0)
        return; /* at most one line a second: a flood must not flood the log */
    e->last_refusal_log_ms = now;
    RD_WARN("http", "connection_refused",
            "peer=%s reason=%s connections=%u max_connections=%u max_per_address=%u "
            "refused_total=%llu",
            peer, refusal_names[why], e->n_conns, e->max_total, e->lim.max_per_address,
            (unsigned long long)(e->refused[0] + e->refused[1] + e->refused[2]));
}

static void follow(struct edge_conn *c, h2o_socket_t *sock);

void rd_edge_accept(struct rd_edge *e, uv_stream_t *listener, int status)
{
    if (status != 0) {
        /* libuv has already closed what it could not accept (its spare
         * descriptor): count it, the reserve should make this rare. */
        e->accept_errors++;
        uint64_t now = now_ms();
        if (now - e->last_refusal_log_ms >= 1000 || e->last_refusal_log_ms == 0) {
            e->last_refusal_log_ms = now;
            RD_WARN("http", "accept_failed", "error=\"%s\" connections=%u fd_limit=%lu",
                    uv_strerror(status), e->n_conns, e->fd_limit);
        }
        return;
    }
    struct edge_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    uv_tcp_init(e->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_free);
        return;
    }
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen);
    uint8_t key[16];
    addr_key(&ss, key, c->peer, sizeof(c->peer));
    uint64_t now = now_ms();
    int why = -1;
    struct rd_edge_addr *a = NULL;
    if (e->n_conns >= e->max_total) {
        why = RD_EDGE_REFUSED_TOTAL;
    } else if ((a = addr_get(e, key, true)) == NULL) {
        why = RD_EDGE_REFUSED_TOTAL;
    } else if (a->blocked_until_ms > now) {
        why = RD_EDGE_REFUSED_BLOCKED;
    } else if (a->conns >= e->lim.max_per_address) {
        why = RD_EDGE_REFUSED_ADDRESS;
    }
    if (why >= 0) {
        e->refused[why]++;
        log_refusal(e, why, c->peer);
        uv_close((uv_handle_t *)&c->tcp, conn_free);
        return;
    }
    c->edge = e;
    c->addr = a;
    a->conns++;
    e->n_conns++;
    h2o_linklist_insert(&e->conns, &c->link);
    uv_tcp_nodelay(&c->tcp, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, conn_free);
    c->sock = sock;
    sock->on_close.cb = conn_sock_disposed;
    sock->on_close.data = c;
    h2o_accept(e->accept_ctx, sock);
    if (c->sock != NULL)
        follow(c, sock);
}

/* ---- HTTP/2 ---------------------------------------------------------------- */

static void refill(struct edge_conn *c, uint64_t now)
{
    const struct rd_cfg_edge *l = &c->edge->lim;
    double dt = (double)(now - c->tokens_ms) / 1000.0;
    c->tokens_ms = now;
    /* Each budget comes back in ten seconds. */
    c->reset_tokens += dt * l->reset_budget / 10.0;
    if (c->reset_tokens > l->reset_budget)
        c->reset_tokens = l->reset_budget;
    c->frame_tokens += dt * l->frame_budget / 10.0;
    if (c->frame_tokens > l->frame_budget)
        c->frame_tokens = l->frame_budget;
}

static bool spend(double *tokens)
{
    if (*tokens < 1.0)
        return false;
    *tokens -= 1.0;
    return true;
}

static void start_h2(struct edge_conn *c, h2o_http2_conn_t *h2)
{
    c->h2 = h2;
    c->off = 0;
    c->last_request_ms = c->tokens_ms = now_ms();
    c->reset_tokens = c->edge->lim.reset_budget;
    c->frame_tokens = c->edge->lim.frame_budget;
    c->hpack.max = HPACK_TABLE;
}

/* The reader changed inside h2o's: to HTTP/2 when this socket's connection
 * is the newest of h2o's HTTP/2 connections. */
static void became_h2(struct edge_conn *c, h2o_socket_t *sock)
{
    h2o_linklist_t *list = &c->edge->accept_ctx->ctx->http2._conns;
    if (h2o_linklist_is_empty(list))
        return;
    h2o_http2_conn_t *h2 = H2O_STRUCT_FROM_MEMBER(h2o_http2_conn_t, _conns, list->prev);
    if (h2->sock == sock)
        start_h2(c, h2);
}

void rd_edge_h2_request(h2o_req_t *req)
{
    h2o_http2_conn_t *h2 = (h2o_http2_conn_t *)req->conn;
    h2o_socket_t *sock = h2->sock;
    if (sock == NULL || sock->on_close.cb != conn_sock_disposed)
        return;
    struct edge_conn *c = sock->on_close.data;
    if (c->h2 != NULL)
        return;
    /* An h2c upgrade: h2o started its HTTP/2 reader from a write callback. */
    start_h2(c, h2);
    if (sock->_cb.read != NULL && sock->_cb.read != edge_on_read)
        wrap_reader(c, sock);
}

static struct edge_stream *stream_find(struct edge_conn *c, uint32_t id)
{
    for (unsigned i = 0; i < c->n_streams; i++)
        if (c->streams[i].id == id)
            return &c->streams[i];
    return NULL;
}

static void stream_drop(struct edge_conn *c, struct edge_stream *s)
{
    if (s == NULL)
        return;
    c->body_buffered -= s->body;
    *s = c->streams[--c->n_streams];
}

/* HPACK integer with an N-bit prefix; false when malformed (h2o refuses it). */
static bool hp_int(const uint8_t **p, const uint8_t *end, int bits, uint64_t *v)
{
    if (*p >= end)
        return false;
    uint64_t max = (1u << bits) - 1;
    *v = **p & max;
    (*p)++;
    if (*v < max)
        return true;
    for (int shift = 0; shift < 35; shift += 7) {
        if (*p >= end)
            return false;
        uint8_t b = *(*p)++;
        *v += (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

/* A string's decoded length, at most: Huffman codes are 5 bits or more. */
static bool hp_str(const uint8_t **p, const uint8_t *end, uint64_t *len)
{
    if (*p >= end)
        return false;
    bool huff = (**p & 0x80) != 0;
    uint64_t n;
    if (!hp_int(p, end, 7, &n) || n > (uint64_t)(end - *p))
        return false;
    *p += n;
    *len = huff ? (n * 8 + 4) / 5 : n;
    return true;
}

/* The size bound of the entry at HPACK index `idx` (1-based, static first). */
static uint64_t hp_entry(const struct hpack_bounds *t, uint64_t idx)
{
    if (idx <= 61)
        return 64; /* the largest static entry is 28 bytes + 32 */
    uint64_t j = idx - 62;
    if (j < t->n)
        return t->size[(t->head + j) % HPACK_SLOTS];
    return HPACK_TABLE;
}

static void hp_evict(struct hpack_bounds *t, size_t room)
{
    while (t->n > 0 && t->total + room > t->max) {
        t->total -= t->size[(t->head + t->n - 1) % HPACK_SLOTS];
        t->n--;
    }
}

static void hp_insert(struct hpack_bounds *t, uint64_t size)
{
    if (size > t->max) {
        t->n = 0;
        t->total = 0;
        return;
    }
    hp_evict(t, (size_t)size);
    if (t->n == HPACK_SLOTS) {
        t->total -= t->size[(t->head + t->n - 1) % HPACK_SLOTS];
        t->n--;
    }
    t->head = (t->head + HPACK_SLOTS - 1) % HPACK_SLOTS;
    t->size[t->head] = (uint32_t)size;
    t->n++;
    t->total += size;
}

/*
 * A bound of the decoded size of one header block (name + value + 32 per
 * field, as SETTINGS_MAX_HEADER_LIST_SIZE counts), keeping the table of
 * bounds in step. Stops counting past `cap`. A malformed block is left to
 * h2o, which refuses it.
 */
static uint64_t hpack_block_size(struct hpack_bounds *t, const uint8_t *p, size_t len, uint64_t cap)
{
    const uint8_t *end = p + len;
    uint64_t total = 0, idx, name, value;
    while (p < end && total <= cap) {
        uint8_t b = *p;
        if (b & 0x80) { /* indexed field */
            if (!hp_int(&p, end, 7, &idx))
                break;
            total += hp_entry(t, idx);
        } else if ((b & 0xe0) == 0x20) { /* table size update */
            if (!hp_int(&p, end, 5, &idx))
                break;
            t->max = idx < HPACK_TABLE ? (size_t)idx : HPACK_TABLE;
            hp_evict(t, 0);
        } else { /* literal: with indexing (01), without (0000), never (0001) */
            bool indexing = (b & 0xc0) == 0x40;
            if (!hp_int(&p, end, indexing ? 6 : 4, &idx))
                break;
            if (idx != 0)
                name = hp_entry(t, idx);
            else if (!hp_str(&p, end, &name))
                break;
            if (!hp_str(&p, end, &value))
                break;
            total += name + value + 32;
            if (indexing)
                hp_insert(t, name + value + 32);
        }
    }
    return total;
}

static int header_block(struct edge_conn *c, const uint8_t *p, size_t len)
{
    uint64_t cap = c->edge->lim.max_header_list;
    return hpack_block_size(&c->hpack, p, len, cap) > cap ? RD_EDGE_CUT_HEADER_LIST : -1;
}

static int hb_append(struct edge_conn *c, const uint8_t *p, size_t len)
{
    if (c->hb_len + len > c->edge->lim.max_header_list)
        return RD_EDGE_CUT_HEADER_LIST; /* the encoded block alone is too large */
    if (c->hb_len + len > c->hb_cap) {
        size_t cap = c->hb_cap ? c->hb_cap * 2 : 4096;
        while (cap < c->hb_len + len)
            cap *= 2;
        uint8_t *nb = realloc(c->hb, cap);
        if (nb == NULL)
            return RD_EDGE_CUT_HEADER_LIST;
        c->hb = nb;
        c->hb_cap = cap;
    }
    memcpy(c->hb + c->hb_len, p, len);
    c->hb_len += len;
    return -1;
}

static int on_headers(struct edge_conn *c, uint8_t flags, uint32_t sid, const uint8_t *p,
                      size_t len, uint64_t now)
{
    size_t skip = 0, pad = 0;
    if (flags & H2O_HTTP2_FRAME_FLAG_PADDED) {
        if (len < 1)
            return -1;
        pad = p[0];
        skip = 1;
    }
    if (flags & H2O_HTTP2_FRAME_FLAG_PRIORITY)
        skip += 5;
    if (c->hb_open || skip + pad > len)
        return -1; /* a protocol error: h2o sends GOAWAY itself */
    bool end_stream = (flags & H2O_HTTP2_FRAME_FLAG_END_STREAM) != 0;
    if (sid > c->max_stream) {
        c->max_stream = sid;
        c->last_request_ms = now;
        if (!end_stream && c->n_streams < MAX_STREAMS)
            c->streams[c->n_streams++] = (struct edge_stream){.id = sid, .since_ms = now};
    } else if (end_stream) {
        stream_drop(c, stream_find(c, sid)); /* trailers end the body */
    }
    const uint8_t *block = p + skip;
    size_t blen = len - skip - pad;
    if (flags & H2O_HTTP2_FRAME_FLAG_END_HEADERS)
        return header_block(c, block, blen);
    c->hb_open = true;
    c->hb_since_ms = now;
    c->hb_len = 0;
    return hb_append(c, block, blen);
}

/* One whole frame, before h2o parses it: -1, or why to cut the connection. */
static int on_frame(struct edge_conn *c, uint8_t type, uint8_t flags, uint32_t sid,
                    const uint8_t *p, size_t len, uint64_t now)
{
    bool end_stream = (flags & H2O_HTTP2_FRAME_FLAG_END_STREAM) != 0;
    bool ack = (flags & H2O_HTTP2_FRAME_FLAG_ACK) != 0;
    switch (type) {
    case H2O_HTTP2_FRAME_TYPE_DATA: {
        if (len == 0 && !end_stream && !spend(&c->frame_tokens))
            return RD_EDGE_CUT_EMPTY_FRAMES;
        struct edge_stream *s = stream_find(c, sid);
        if (s != NULL) {
            s->body += len;
            c->body_buffered += len;
            if (c->body_buffered > c->edge->lim.max_body_buffered)
                return RD_EDGE_CUT_BODY;
            if (end_stream)
                stream_drop(c, s);
        }
        return -1;
    }
    case H2O_HTTP2_FRAME_TYPE_HEADERS:
        return on_headers(c, flags, sid, p, len, now);
    case H2O_HTTP2_FRAME_TYPE_CONTINUATION: {
        if (!c->hb_open)
            return -1; /* h2o refuses it */
        if (len == 0 && !spend(&c->frame_tokens))
            return RD_EDGE_CUT_EMPTY_FRAMES;
        int why = hb_append(c, p, len);
        if (why >= 0 || (flags & H2O_HTTP2_FRAME_FLAG_END_HEADERS) == 0)
            return why;
        c->hb_open = false;
        return header_block(c, c->hb, c->hb_len);
    }
    case H2O_HTTP2_FRAME_TYPE_RST_STREAM:
        stream_drop(c, stream_find(c, sid));
        return spend(&c->reset_tokens) ? -1 : RD_EDGE_CUT_RESETS;
    case H2O_HTTP2_FRAME_TYPE_PING:
    case H2O_HTTP2_FRAME_TYPE_SETTINGS:
        return ack || spend(&c->frame_tokens) ? -1 : RD_EDGE_CUT_EMPTY_FRAMES;
    case H2O_HTTP2_FRAME_TYPE_PRIORITY:
        return spend(&c->frame_tokens) ? -1 : RD_EDGE_CUT_EMPTY_FRAMES;
    default:
        return -1;
    }
}

/* Inspects the frames h2o has not seen yet: -1, or why to cut. */
static int inspect(struct edge_conn *c, h2o_socket_t *sock)
{
    const uint8_t *in = (const uint8_t *)sock->input->bytes;
    size_t n = sock->input->size, p = c->off;
    uint64_t now = now_ms();
    refill(c, now);
    if (p == 0 && n > 0 && in[0] == PREFACE[0]) {
        /* The client preface (no frame starts with 'P': too long). */
        if (n < PREFACE_LEN)
            return -1;
        if (memcmp(in, PREFACE, PREFACE_LEN) != 0)
            return -1; /* not HTTP/2: h2o refuses it */
        p = PREFACE_LEN;
    }
    while (n - p >= 9) {
        size_t len = (size_t)in[p] << 16 | (size_t)in[p + 1] << 8 | in[p + 2];
        if (len > MAX_FRAME || n - p - 9 < len)
            break; /* incomplete, or too large: h2o refuses it */
        uint32_t sid = ((uint32_t)in[p + 5] << 24 | (uint32_t)in[p + 6] << 16 |
                        (uint32_t)in[p + 7] << 8 | in[p + 8]) &
                       0x7fffffffu;
        int why = on_frame(c, in[p + 3], in[p + 4], sid, in + p + 9, len, now);
        if (why >= 0)
            return why;
        p += 9 + len;
    }
    c->off = p;
    return -1;
}

/*
 * GOAWAY with the reason, on h2o's write buffer. What the client sends from
 * then on is dropped unread; the connection closes LINGER_MS later (sweep),
 * so the client reads the GOAWAY before the close (closing a socket with
 * unread input sends a reset, which can overtake it).
 */
static void cut(struct edge_conn *c, int why)
{
    struct rd_edge *e = c->edge;
    h2o_http2_conn_t *h2 = c->h2;
    uint64_t now = now_ms();
    c->cut = true;
    c->cut_ms = now;
    e->cuts[why]++;
    if (why != RD_EDGE_CUT_IDLE) {
        if (e->lim.abuse_block_ms > 0)
            c->addr->blocked_until_ms = now + e->lim.abuse_block_ms;
        RD_WARN("http", "client_cut",
                "peer=%s reason=%s detail=\"%s\" streams=%u body_buffered=%zu blocked_ms=%llu",
                c->peer, cut_names[why], cut_text[why], c->max_stream, c->body_buffered,
                (unsigned long long)e->lim.abuse_block_ms);
    }
    if (h2->state == H2O_HTTP2_CONN_STATE_OPEN) {
        int code =
            why == RD_EDGE_CUT_IDLE ? H2O_HTTP2_ERROR_NONE : H2O_HTTP2_ERROR_ENHANCE_YOUR_CALM;
        h2o_http2_encode_goaway_frame(&h2->_write.buf, h2->pull_stream_ids.max_open, code,
                                      h2o_iovec_init(cut_text[why], strlen(cut_text[why])));
        h2o_http2_conn_request_write(h2);
    }
    h2o_buffer_consume(&c->sock->input, c->sock->input->size);
}

/* The end of a cut connection: h2o closes it as if the client had. */
static void finish_cut(struct edge_conn *c)
{
    c->inner(c->sock, h2o_socket_error_closed);
}

/*
 * After h2o's callback: if it installed another reader (the TLS handshake
 * ended, or the connection became HTTP/2), stand in front of it again. A
 * TLS handshake that ends with bytes to send (TLS 1.2's last flight, TLS
 * 1.3's tickets) hands over to HTTP/2 from the write callback: until the
 * connection is HTTP/2, stand in front of a TLS connection's writes too.
 */
static void follow(struct edge_conn *c, h2o_socket_t *sock)
{
    if (sock->_cb.read != NULL && sock->_cb.read != edge_on_read) {
        if (c->h2 == NULL)
            became_h2(c, sock);
        wrap_reader(c, sock);
    }
    if (c->h2 == NULL && sock->ssl != NULL && sock->_cb.write != NULL &&
        sock->_cb.write != edge_on_write) {
        c->inner_write = sock->_cb.write;
        sock->_cb.write = edge_on_write;
    }
}

static void edge_on_read(h2o_socket_t *sock, const char *err)
{
    struct edge_conn *c = sock->on_close.data;
    if (c->cut) {
        if (err != NULL)
            finish_cut(c);
        else
            h2o_buffer_consume(&sock->input, sock->input->size);
        return;
    }
    if (err == NULL && c->h2 != NULL) {
        int why = inspect(c, sock);
        if (why >= 0) {
            cut(c, why);
            return;
        }
    }
    size_t before = sock->input->size;
    c->inner(sock, err);
    if (c->sock == NULL)
        return; /* closed */
    if (c->h2 != NULL) {
        size_t used = before > sock->input->size ? before - sock->input->size : 0;
        c->off = c->off > used ? c->off - used : 0;
    }
    follow(c, sock);
}

/* A write of a TLS connection not yet HTTP/2 completed (edge_on_read put
 * us there): h2o may have switched readers in its callback. */
static void edge_on_write(h2o_socket_t *sock, const char *err)
{
    struct edge_conn *c = sock->on_close.data;
    h2o_socket_cb cb = c->inner_write;
    c->inner_write = NULL;
    cb(sock, err);
    if (c->sock != NULL)
        follow(c, sock);
}

/* ---- deadlines -------------------------------------------------------------- */

static int overdue(struct edge_conn *c, uint64_t now)
{
    const struct rd_cfg_edge *l = &c->edge->lim;
    if (c->hb_open && now - c->hb_since_ms >= l->request_timeout_ms)
        return RD_EDGE_CUT_REQUEST_TIMEOUT;
    for (unsigned i = 0; i < c->n_streams; i++)
        if (now - c->streams[i].since_ms >= l->request_timeout_ms)
            return RD_EDGE_CUT_REQUEST_TIMEOUT;
    /* Idle: nothing asked and nothing being answered (PINGs do not count). */
    if (!c->hb_open && c->n_streams == 0 && c->h2->num_streams.pull.half_closed == 0 &&
        c->h2->num_streams.push.half_closed == 0 && now - c->last_request_ms >= l->idle_timeout_ms)
        return RD_EDGE_CUT_IDLE;
    return -1;
}

static void on_sweep(uv_timer_t *t)
{
    struct rd_edge *e = t->data;
    uint64_t now = now_ms();
    h2o_linklist_t *n = e->conns.next;
    while (n != &e->conns) {
        struct edge_conn *c = H2O_STRUCT_FROM_MEMBER(struct edge_conn, link, n);
        n = n->next; /* cut() may unlink c */
        if (c->h2 == NULL || c->sock == NULL || c->h2->state >= H2O_HTTP2_CONN_STATE_IS_CLOSING)
            continue;
        if (c->cut) {
            if (now - c->cut_ms >= LINGER_MS)
                finish_cut(c);
            continue;
        }
        int why = overdue(c, now);
        if (why >= 0)
            cut(c, why);
    }
    addr_collect(e, now);
}

/* ---- metrics ------------------------------------------------------------------ */

void rd_edge_metrics(const struct rd_edge *e, struct rd_mbuf *b)
{
    rd_metric_header(b, "recoveryd_http_connections_max", "gauge",
                     "Connections clients may hold (server.edge.max_connections, less the "
                     "descriptor reserve).");
    rd_mbuf_printf(b, "recoveryd_http_connections_max %u\n", e->max_total);
    rd_metric_header(b, "recoveryd_http_connections_refused_total", "counter",
                     "Connections closed at accept, by reason.");
    for (int i = 0; i < RD_EDGE_REFUSED_COUNT; i++)
        rd_mbuf_printf(b, "recoveryd_http_connections_refused_total{reason=\"%s\"} %llu\n",
                       refusal_names[i], (unsigned long long)e->refused[i]);
    rd_metric_header(b, "recoveryd_http_connections_cut_total", "counter",
                     "HTTP/2 connections closed by the edge (GOAWAY), by reason.");
    for (int i = 0; i < RD_EDGE_CUT_COUNT; i++)
        rd_mbuf_printf(b, "recoveryd_http_connections_cut_total{reason=\"%s\"} %llu\n",
                       cut_names[i], (unsigned long long)e->cuts[i]);
    rd_metric_header(b, "recoveryd_http_accept_errors_total", "counter",
                     "Connections the listener could not accept (descriptors exhausted).");
    rd_mbuf_printf(b, "recoveryd_http_accept_errors_total %llu\n",
                   (unsigned long long)e->accept_errors);
}

/* ---- setup ---------------------------------------------------------------- */

int rd_edge_init(struct rd_edge *e, uv_loop_t *loop, const struct rd_config *cfg,
                 h2o_globalconf_t *conf, h2o_accept_ctx_t *accept_ctx)
{
    memset(e, 0, sizeof(*e));
    e->loop = loop;
    e->accept_ctx = accept_ctx;
    e->lim = cfg->server.edge;
    /* One whole body of server.max_body always fits. */
    if (e->lim.max_body_buffered < cfg->server.max_body_bytes)
        e->lim.max_body_buffered = cfg->server.max_body_bytes;
    h2o_linklist_init_anchor(&e->conns);
    e->addrs = calloc(ADDR_BUCKETS, sizeof(*e->addrs));
    if (e->addrs == NULL)
        return RD_ENOMEM;

    /* Clients never take the last reserved_fds descriptors: raft's log
     * segments, its peers, backups and the listener need them. */
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    e->fd_limit = rl.rlim_cur == RLIM_INFINITY ? 1048576ul : (unsigned long)rl.rlim_cur;
    unsigned long reserve = e->lim.reserved_fds;
    if (reserve > 0 && e->fd_limit < 2 * reserve)
        reserve = e->fd_limit / 2; /* a tiny limit: half for clients */
    unsigned long room = e->fd_limit > reserve ? e->fd_limit - reserve : 1;
    e->max_total = e->lim.max_connections;
    if (room < e->max_total) {
        e->max_total = (unsigned)room;
        RD_WARN("http", "connections_limited",
                "max_connections=%u configured=%u fd_limit=%lu reserved_fds=%lu "
                "hint=\"raise RLIMIT_NOFILE (LimitNOFILE=) to serve more clients\"",
                e->max_total, e->lim.max_connections, e->fd_limit, reserve);
    }
    if (e->lim.max_per_address > e->max_total)
        e->lim.max_per_address = e->max_total;

    /* h2o's own deadlines: an HTTP/1.1 request's headers and body (and the
     * keep-alive wait), TLS handshakes, and HTTP/2 silence (a backstop). */
    conf->http1.req_timeout = e->lim.request_timeout_ms;
    conf->handshake_timeout = e->lim.request_timeout_ms;
    conf->http2.idle_timeout = e->lim.idle_timeout_ms + 1000; /* ours first (it ignores PINGs) */

    uv_timer_init(loop, &e->sweep);
    e->sweep.data = e;
    uv_timer_start(&e->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&e->sweep);
    e->sweeping = true;
    RD_INFO("http", "edge_limits",
            "max_connections=%u max_per_address=%u fd_limit=%lu reserved_fds=%lu "
            "request_timeout_ms=%llu idle_timeout_ms=%llu max_header_list=%zu "
            "max_body_buffered=%zu stream_reset_budget=%u empty_frame_budget=%u",
            e->max_total, e->lim.max_per_address, e->fd_limit, reserve,
            (unsigned long long)e->lim.request_timeout_ms,
            (unsigned long long)e->lim.idle_timeout_ms, e->lim.max_header_list,
            e->lim.max_body_buffered, e->lim.reset_budget, e->lim.frame_budget);
    return 0;
}

void rd_edge_stop(struct rd_edge *e)
{
    if (e->sweeping) {
        e->sweeping = false;
        uv_close((uv_handle_t *)&e->sweep, NULL);
    }
    e->stopped = true;
    edge_release(e);
}
