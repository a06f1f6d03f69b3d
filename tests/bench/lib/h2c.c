/* h2c: see h2c.h. */
#include "h2c.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)
#define WINDOW     (16 * 1024 * 1024) /* ours, per stream and for the connection */

/* One request in flight. A timed-out one is reported at once and kept
 * (a zombie, user NULL) until nghttp2 closes its stream. */
struct stream {
    struct stream *next_free;
    void *user;
    bool busy, reported;
    bool timed_out;
    int32_t id;
    int status;
    uint32_t error_code; /* of its close */
    int64_t started_us, deadline_ms;
    int64_t rx_us; /* the kernel's arrival stamp of the read that ended it; 0: none */
    char *body;    /* the answer, NUL-terminated */
    size_t len, cap;
    char *req; /* the request's body */
    size_t req_len, req_off, req_cap;
    char path[256], clen[24];
};

struct h2c {
    h2c_done_fn *done;
    void *ctx;
    nghttp2_session *s;
    int fd;
    enum h2c_state state;
    bool goaway;
    int64_t connect_deadline_ms, last_expire_ms;
    char authority[128];
    struct stream *streams, *free_streams;
    unsigned cap, busy;
    struct stream **ended; /* closed by nghttp2, to report after reading */
    unsigned n_ended;
    uint8_t *out; /* what nghttp2 wrote, from out_off to out_len not yet sent */
    size_t out_len, out_off, out_cap;
    int64_t rx_us; /* the read being handed to nghttp2: its arrival (now_us's clock) */
    uint8_t in[READ_CHUNK];
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *h2c_strerror(int err)
{
    switch (err) {
    case H2C_OK:
        return "ok";
    case H2C_ECONNECT:
        return "could not connect";
    case H2C_ELOST:
        return "connection lost";
    case H2C_ERESET:
        return "stream reset by the server";
    case H2C_ETIMEOUT:
        return "timed out";
    }
    return "?";
}

/* Appends n bytes to a growing buffer (kept NUL-terminated); -1 when out of memory. */
static int append(char **p, size_t *len, size_t *cap, const void *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (*len + n + 1 > c)
            c *= 2;
        char *q = realloc(*p, c);
        if (q == NULL)
            return -1;
        *p = q, *cap = c;
    }
    memcpy(*p + *len, data, n);
    *len += n;
    (*p)[*len] = '\0';
    return 0;
}

static void stream_put(struct h2c *c, struct stream *st)
{
    st->busy = false;
    st->user = NULL;
    st->next_free = c->free_streams;
    c->free_streams = st;
    c->busy--;
}

static void report(struct h2c *c, struct stream *st, int err)
{
    if (st->reported)
        return;
    st->reported = true;
    int64_t us = now_us() - st->started_us;
    int64_t rx = st->rx_us > 0 ? st->rx_us - st->started_us : us;
    struct h2c_resp r = {.user = st->user,
                         .err = err,
                         .status = err == H2C_OK ? st->status : 0,
                         .body = st->body ? st->body : "",
                         .len = st->len,
                         .us = us,
                         .rx_us = rx < 0    ? 0
                                  : rx > us ? us
                                            : rx};
    c->done(c->ctx, &r);
}

/* ---- nghttp2's callbacks ------------------------------------------------------- */

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *data)
{
    (void)flags, (void)data;
    struct stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (st && namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3)
        st->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *user)
{
    (void)flags, (void)user;
    struct stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (st && !st->reported && append(&st->body, &st->len, &st->cap, data, len) != 0)
        return nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *data)
{
    struct h2c *c = data;
    struct stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (st == NULL)
        return 0;
    st->error_code = error_code;
    st->rx_us = c->rx_us;
    c->ended[c->n_ended++] = st; /* at most one per busy stream */
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *frame, void *data)
{
    (void)s;
    struct h2c *c = data;
    if (frame->hd.type == NGHTTP2_GOAWAY)
        c->goaway = true;
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *data)
{
    (void)s, (void)id, (void)data;
    struct stream *st = src->ptr;
    size_t n = st->req_len - st->req_off;
    if (n > len)
        n = len;
    memcpy(buf, st->req + st->req_off, n);
    st->req_off += n;
    if (st->req_off == st->req_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- the connection ------------------------------------------------------------- */

/* Reports the streams nghttp2 closed (and frees them). */
static int report_ended(struct h2c *c)
{
    int n = 0;
    for (unsigned i = 0; i < c->n_ended; i++) {
        struct stream *st = c->ended[i];
        int err = H2C_OK;
        if (st->timed_out)
            err = H2C_ETIMEOUT;
        else if (st->error_code != NGHTTP2_NO_ERROR || st->status == 0)
            err = H2C_ERESET;
        n += !st->reported;
        report(c, st, err);
        stream_put(c, st);
    }
    c->n_ended = 0;
    return n;
}

static void close_fd(struct h2c *c)
{
    if (c->s)
        nghttp2_session_del(c->s);
    c->s = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = H2C_DOWN;
    c->goaway = false;
    c->out_len = c->out_off = 0;
    c->n_ended = 0;
}

/* The connection is gone: every request in flight ends with `err`. */
static int fail_all(struct h2c *c, int err)
{
    int n = report_ended(c); /* those that ended before */
    close_fd(c);
    for (unsigned i = 0; i < c->cap; i++) {
        struct stream *st = &c->streams[i];
        if (!st->busy)
            continue;
        n += !st->reported;
        report(c, st, err);
        stream_put(c, st);
    }
    return n;
}

void h2c_drop(struct h2c *c)
{
    close_fd(c);
    for (unsigned i = 0; i < c->cap; i++)
        if (c->streams[i].busy)
            stream_put(c, &c->streams[i]);
}

struct h2c *h2c_new(unsigned max_streams, h2c_done_fn *done, void *ctx)
{
    struct h2c *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->fd = -1;
    c->done = done;
    c->ctx = ctx;
    c->cap = max_streams;
    c->streams = calloc(max_streams, sizeof(*c->streams));
    c->ended = calloc(max_streams, sizeof(*c->ended));
    if (c->streams == NULL || c->ended == NULL) {
        h2c_free(c);
        return NULL;
    }
    for (unsigned i = max_streams; i-- > 0;) {
        c->streams[i].next_free = c->free_streams;
        c->free_streams = &c->streams[i];
    }
    return c;
}

void h2c_free(struct h2c *c)
{
    if (c == NULL)
        return;
    h2c_drop(c);
    for (unsigned i = 0; c->streams && i < c->cap; i++) {
        free(c->streams[i].body);
        free(c->streams[i].req);
    }
    free(c->streams);
    free(c->ended);
    free(c->out);
    free(c);
}

/* "http://host:port[/...]" into host and port. */
static int parse_url(const char *url, char *host, size_t len, char *port, size_t plen)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0)
        return -1;
    p += 7;
    const char *colon = strchr(p, ':'), *slash = strchr(p, '/');
    if (colon == NULL || (slash && slash < colon) || (size_t)(colon - p) >= len || colon == p)
        return -1;
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = '\0';
    size_t n = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);
    if (n == 0 || n >= plen)
        return -1;
    memcpy(port, colon + 1, n);
    port[n] = '\0';
    return 0;
}

static int new_session(struct h2c *c)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    int rv = nghttp2_session_client_new(&c->s, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        return -1;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW}};
    if (nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, WINDOW) != 0)
        return -1;
    return 0;
}

int h2c_connect(struct h2c *c, const char *base_url, int connect_ms)
{
    char host[96], port[16];
    h2c_drop(c);
    if (parse_url(base_url, host, sizeof(host), port, sizeof(port)) != 0)
        return -1;
    snprintf(c->authority, sizeof(c->authority), "%s:%s", host, port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (c->fd < 0 || setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) != 0 ||
        new_session(c) != 0) {
        freeaddrinfo(ai);
        close_fd(c);
        return -1;
    }
    int rv = connect(c->fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    c->state = H2C_CONNECTING;
    c->connect_deadline_ms = now_us() / 1000 + connect_ms;
    if (rv != 0 && errno != EINPROGRESS)
        c->connect_deadline_ms = 0; /* refused at once: found out by h2c_step */
    return 0;
}

enum h2c_state h2c_state(const struct h2c *c)
{
    return c->state;
}

unsigned h2c_in_flight(const struct h2c *c)
{
    return c->busy;
}

unsigned h2c_room(const struct h2c *c)
{
    if (c->s == NULL || c->goaway)
        return 0;
    unsigned max = c->cap;
    uint32_t peer =
        nghttp2_session_get_remote_settings(c->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    if (peer < max)
        max = peer;
    return c->busy < max ? max - c->busy : 0;
}

int h2c_submit(struct h2c *c, const char *method, const char *path, const char *body, size_t len,
               int timeout_ms, void *user)
{
    if (h2c_room(c) == 0 || strlen(path) >= sizeof(c->free_streams->path))
        return -1;
    struct stream *st = c->free_streams;
    st->req_len = st->req_off = 0;
    if (body && len > 0 && st->req_cap < len) {
        char *q = realloc(st->req, len);
        if (q == NULL)
            return -1;
        st->req = q, st->req_cap = len;
    }
    if (body && len > 0)
        memcpy(st->req, body, len);
    st->req_len = body ? len : 0;
    strcpy(st->path, path);
    snprintf(st->clen, sizeof(st->clen), "%zu", st->req_len);
    uint8_t nc = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
#define NV(n, v, vl) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), nc}
    nghttp2_nv nv[] = {
        NV(":method", method, strlen(method)),
        NV(":scheme", "http", 4),
        NV(":authority", c->authority, strlen(c->authority)),
        NV(":path", st->path, strlen(st->path)),
        NV("content-type", "application/json", 16),
        NV("content-length", st->clen, strlen(st->clen)),
    };
#undef NV
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    size_t n = body ? 6 : 4;
    int32_t id = nghttp2_submit_request(c->s, NULL, nv, n, body ? &prd : NULL, st);
    if (id < 0)
        return -1;
    c->free_streams = st->next_free;
    c->busy++;
    st->busy = true;
    st->reported = st->timed_out = false;
    st->user = user;
    st->id = id;
    st->status = 0;
    st->rx_us = 0;
    st->error_code = 0;
    st->len = 0;
    if (st->body)
        st->body[0] = '\0';
    st->started_us = now_us();
    /* Rounded up to the millisecond, so a request never ends before its time. */
    st->deadline_ms = timeout_ms > 0 ? (st->started_us + 999) / 1000 + timeout_ms : 0;
    return 0;
}

/* Sends what is left and what nghttp2 has pending, together. -1 when the
 * connection broke. */
static int flush(struct h2c *c)
{
    if (c->state != H2C_OPEN)
        return 0;
    if (c->out_off > 0) { /* what a partial write left, to the front */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->s, &data);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (append((char **)&c->out, &c->out_len, &c->out_cap, data, (size_t)n) != 0)
            return -1;
    }
    if (c->out_len == 0)
        return 0;
    ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    c->out_off = (size_t)n;
    if (c->out_off == c->out_len)
        c->out_len = c->out_off = 0;
    return 0;
}

/* When the bytes a recvmsg returned reached the socket, on now_us's clock:
 * the kernel's receive stamp (SO_TIMESTAMPNS, the wall clock; on loopback
 * taken as the sender's write entered the receive path, and for several
 * segments read at once the latest one's), else now. */
static int64_t arrival_us(struct msghdr *mh)
{
    int64_t now = now_us();
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_TIMESTAMPNS)
            continue;
        struct timespec at, wall;
        memcpy(&at, CMSG_DATA(cm), sizeof(at));
        if (at.tv_sec == 0 || clock_gettime(CLOCK_REALTIME, &wall) != 0)
            break;
        int64_t ago = ((int64_t)wall.tv_sec - at.tv_sec) * 1000000 +
                      ((int64_t)wall.tv_nsec - at.tv_nsec) / 1000;
        return ago > 0 ? now - ago : now;
    }
    return now;
}

/* Reads all there is. -1 when the connection broke or ended. */
static int read_all(struct h2c *c)
{
    for (;;) {
        char ctl[CMSG_SPACE(sizeof(struct timespec))];
        struct iovec iov = {.iov_base = c->in, .iov_len = sizeof(c->in)};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
        ssize_t n = recvmsg(c->fd, &mh, 0);
        if (n == 0)
            return -1;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        c->rx_us = arrival_us(&mh);
        ssize_t took = nghttp2_session_mem_recv(c->s, c->in, (size_t)n);
        c->rx_us = 0; /* a stream closed outside a read has no arrival */
        if (took != n)
            return -1;
        if ((size_t)n < sizeof(c->in))
            return 0;
    }
}

/* Ends the requests past their time (once per millisecond at most). */
static void expire(struct h2c *c, int64_t now_ms)
{
    if (now_ms == c->last_expire_ms)
        return;
    c->last_expire_ms = now_ms;
    for (unsigned i = 0; i < c->cap; i++) {
        struct stream *st = &c->streams[i];
        if (!st->busy || st->reported || st->deadline_ms == 0 || now_ms < st->deadline_ms)
            continue;
        st->timed_out = true;
        report(c, st, H2C_ETIMEOUT);
        st->user = NULL; /* a zombie until its stream closes */
        nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    }
}

/* A step's first half, before the poll: writes what is pending and says
 * what to wait for in *p (and lowers *wait_ms to a connect's deadline).
 * False when there is nothing to poll: down, or it failed (*n: the
 * requests that reported). */
static bool step_before(struct h2c *c, struct pollfd *p, int *wait_ms, int *n)
{
    *n = 0;
    if (c->state == H2C_DOWN)
        return false;
    if (flush(c) != 0) {
        *n = fail_all(c, H2C_ELOST);
        return false;
    }
    *p = (struct pollfd){.fd = c->fd, .events = POLLIN};
    if (c->state == H2C_CONNECTING || c->out_len > c->out_off)
        p->events |= POLLOUT;
    int64_t now_ms = now_us() / 1000;
    if (c->state == H2C_CONNECTING && *wait_ms > c->connect_deadline_ms - now_ms)
        *wait_ms = c->connect_deadline_ms > now_ms ? (int)(c->connect_deadline_ms - now_ms) : 0;
    return true;
}

/* The second half, with what the poll said (`polled` false: it failed). */
static int step_after(struct h2c *c, short revents, bool polled)
{
    if (!polled)
        return fail_all(c, c->state == H2C_CONNECTING ? H2C_ECONNECT : H2C_ELOST);
    int64_t now_ms = now_us() / 1000;
    if (c->state == H2C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (revents == 0 && now_ms < c->connect_deadline_ms)
            return 0;
        if (revents == 0 || getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
            return fail_all(c, H2C_ECONNECT);
        c->state = H2C_OPEN; /* the preface and what was submitted go out now */
        if (flush(c) != 0)
            return fail_all(c, H2C_ELOST);
        revents &= ~POLLOUT;
    }
    if ((revents & (POLLIN | POLLERR | POLLHUP)) && read_all(c) != 0)
        return fail_all(c, H2C_ELOST);
    if (revents & POLLOUT && flush(c) != 0)
        return fail_all(c, H2C_ELOST);
    expire(c, now_ms);
    int n = report_ended(c);
    if (c->s && !nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s))
        n += fail_all(c, H2C_ELOST); /* after a GOAWAY, once its streams ended */
    return n;
}

int h2c_step(struct h2c *c, int wait_ms)
{
    return h2c_step_many(&c, 1, wait_ms);
}

int h2c_step_many(struct h2c *const *cs, unsigned n, int wait_ms)
{
    struct pollfd p[H2C_STEP_MAX];
    bool on[H2C_STEP_MAX];
    int ended = 0, k;
    unsigned live = 0;
    if (n > H2C_STEP_MAX)
        n = H2C_STEP_MAX;
    for (unsigned i = 0; i < n; i++) {
        p[i] = (struct pollfd){.fd = -1}; /* poll skips it */
        on[i] = step_before(cs[i], &p[i], &wait_ms, &k);
        ended += k;
        live += on[i];
    }
    if (live == 0) {
        if (wait_ms > 0 && ended == 0)
            poll(NULL, 0, wait_ms);
        return ended;
    }
    bool polled = poll(p, n, ended > 0 ? 0 : wait_ms) >= 0 || errno == EINTR;
    for (unsigned i = 0; i < n; i++)
        if (on[i])
            ended += step_after(cs[i], polled ? p[i].revents : 0, polled);
    return ended;
}
