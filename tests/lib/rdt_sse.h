/*
 * A small Server-Sent Events reader for tests (GET /api/v1/events): one
 * HTTP/1.1 request on a raw loopback socket, the chunked answer decoded, the
 * events parsed as they come. A raw socket, so a test can also stop reading
 * (a stalled consumer) and see exactly what the server sent.
 */
#ifndef RDT_SSE_H
#define RDT_SSE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

struct rdt_sse_event {
    char id[32];   /* "" when the event had none (resync, dropped) */
    char kind[32]; /* the event: line ("message" when none) */
    char *data;    /* the data: line(s), malloc'd */
    json_t *json;  /* data parsed, or NULL */
};

struct rdt_sse {
    int fd;
    int status; /* HTTP status, 0 until the headers came */
    char content_type[64];
    bool eof;
    bool headers_done;
    /* raw input not yet decoded, and the decoded body not yet parsed */
    char *in;
    size_t in_len, in_cap;
    char *body;
    size_t body_len, body_cap;
    long chunk_left; /* bytes of the current chunk still to come; -1 between chunks */
    size_t keepalives;
};

static inline void rdt_sse__append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n + 1)
            c *= 2;
        *buf = realloc(*buf, c);
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static inline void rdt_sse__consume(char *buf, size_t *len, size_t n)
{
    memmove(buf, buf + n, *len - n);
    *len -= n;
    buf[*len] = '\0';
}

/*
 * Opens a stream to 127.0.0.1:`port` at `path` ("/api/v1/events?kind=..."),
 * with Last-Event-ID when `last_id` is not NULL, the harness's bearer token
 * (rdt_bearer) when set, and a receive buffer of `rcvbuf` bytes when not 0.
 * 0 or -1.
 */
static inline int rdt_sse_open(struct rdt_sse *s, int port, const char *path, const char *last_id,
                               int rcvbuf)
{
    memset(s, 0, sizeof(*s));
    s->chunk_left = -1;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n", path);
    if (last_id != NULL)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "Last-Event-ID: %s\r\n", last_id);
    if (rdt_bearer != NULL)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "Authorization: Bearer %s\r\n", rdt_bearer);
    n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    if (write(s->fd, req, (size_t)n) != n)
        return -1;
    return 0;
}

/* Decodes what came: headers, then chunks into body. */
static inline void rdt_sse__decode(struct rdt_sse *s)
{
    if (!s->headers_done) {
        char *end = strstr(s->in, "\r\n\r\n");
        if (end == NULL)
            return;
        sscanf(s->in, "HTTP/1.%*d %d", &s->status);
        const char *ct = strcasestr(s->in, "\r\ncontent-type: ");
        if (ct != NULL && ct < end)
            snprintf(s->content_type, sizeof(s->content_type), "%.*s",
                     (int)strcspn(ct + 16, "\r\n"), ct + 16);
        bool chunked = strcasestr(s->in, "transfer-encoding: chunked") != NULL;
        s->headers_done = true;
        rdt_sse__consume(s->in, &s->in_len, (size_t)(end + 4 - s->in));
        if (!chunked) { /* an error answer with a length: the body as it is */
            s->chunk_left = -2;
        }
    }
    for (;;) {
        if (s->chunk_left == -3) { /* the CRLF after a chunk */
            if (s->in_len < 2)
                return;
            rdt_sse__consume(s->in, &s->in_len, 2);
            s->chunk_left = -1;
        }
        if (s->chunk_left == -2) {
            rdt_sse__append(&s->body, &s->body_len, &s->body_cap, s->in, s->in_len);
            rdt_sse__consume(s->in, &s->in_len, s->in_len);
            return;
        }
        if (s->chunk_left < 0) {
            char *crlf = strstr(s->in, "\r\n");
            if (crlf == NULL)
                return;
            long n = strtol(s->in, NULL, 16);
            rdt_sse__consume(s->in, &s->in_len, (size_t)(crlf + 2 - s->in));
            if (n == 0) { /* the last chunk: the stream ended */
                s->eof = true;
                return;
            }
            s->chunk_left = n;
        }
        size_t take = s->in_len < (size_t)s->chunk_left ? s->in_len : (size_t)s->chunk_left;
        if (take == 0)
            return;
        rdt_sse__append(&s->body, &s->body_len, &s->body_cap, s->in, take);
        rdt_sse__consume(s->in, &s->in_len, take);
        s->chunk_left -= (long)take;
        if (s->chunk_left == 0)
            s->chunk_left = -3;
    }
}

/* Reads what is there, waiting up to `timeout_ms` for something. 1 when
 * bytes came, 0 on timeout, -1 at the end of the connection. */
static inline int rdt_sse_read(struct rdt_sse *s, int timeout_ms)
{
    if (s->eof)
        return -1;
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    char buf[65536];
    ssize_t n = read(s->fd, buf, sizeof(buf));
    if (n <= 0) {
        s->eof = true;
        return -1;
    }
    rdt_sse__append(&s->in, &s->in_len, &s->in_cap, buf, (size_t)n);
    rdt_sse__decode(s);
    return 1;
}

static inline void rdt_sse_event_free(struct rdt_sse_event *e)
{
    free(e->data);
    json_decref(e->json);
    memset(e, 0, sizeof(*e));
}

/* The next event already read (comments are counted and skipped): 1, or 0
 * when no whole event is buffered. */
static inline int rdt_sse_take(struct rdt_sse *s, struct rdt_sse_event *e)
{
    for (;;) {
        char *end = s->body ? strstr(s->body, "\n\n") : NULL;
        if (end == NULL)
            return 0;
        memset(e, 0, sizeof(*e));
        snprintf(e->kind, sizeof(e->kind), "message");
        bool any = false;
        for (char *line = s->body; line < end;) {
            char *nl = memchr(line, '\n', (size_t)(end + 1 - line));
            size_t len = (size_t)(nl - line);
            if (len >= 4 && strncmp(line, "id: ", 4) == 0) {
                snprintf(e->id, sizeof(e->id), "%.*s", (int)(len - 4), line + 4);
                any = true;
            } else if (len >= 7 && strncmp(line, "event: ", 7) == 0) {
                snprintf(e->kind, sizeof(e->kind), "%.*s", (int)(len - 7), line + 7);
                any = true;
            } else if (len >= 6 && strncmp(line, "data: ", 6) == 0) {
                e->data = strndup(line + 6, len - 6);
                any = true;
            } else if (len > 0 && line[0] == ':' && strstr(line, "keepalive") != NULL) {
                s->keepalives++;
            }
            line = nl + 1;
        }
        rdt_sse__consume(s->body, &s->body_len, (size_t)(end + 2 - s->body));
        if (!any) /* a comment or retry: line alone */
            continue;
        if (e->data != NULL)
            e->json = json_loads(e->data, 0, NULL);
        return 1;
    }
}

/* The next event, waiting up to `timeout_ms`: 1, 0 on timeout, -1 at the end. */
static inline int rdt_sse_next(struct rdt_sse *s, struct rdt_sse_event *e, int timeout_ms)
{
    int64_t until = rdt_now_ms() + timeout_ms;
    for (;;) {
        if (rdt_sse_take(s, e) == 1)
            return 1;
        int64_t left = until - rdt_now_ms();
        if (left <= 0)
            return 0;
        if (rdt_sse_read(s, (int)left) < 0)
            return rdt_sse_take(s, e) == 1 ? 1 : -1;
    }
}

static inline void rdt_sse_close(struct rdt_sse *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    free(s->in);
    free(s->body);
    s->in = s->body = NULL;
}

#endif
