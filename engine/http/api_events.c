/*
 * GET /api/v1/events: the live event stream (docs/events.md), as
 * Server-Sent Events through h2o's streaming responses.
 *
 * A stream holds its position in the ring (events.h) and a buffer for the
 * one batch h2o is sending; h2o_send is called again only from proceed
 * (h2o asks for more) or, when nothing was in flight, when new events come
 * (the ring's notify). A stream whose position the ring overwrote while a
 * batch was in flight fell behind: it ends with a final `dropped` event at
 * its next proceed, and when h2o never asks again (a client that stopped
 * reading) its connection is shut down after server.events.stall_timeout.
 * A client that goes away disposes the request: the stream unlinks itself
 * from the pool's dispose callback and is never touched again.
 */
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "events/events.h"
#include "fsm/fsm.h"
#include "http.h"
#include "replica/replica.h"
#include "recoveryd/error.h"

/* Bytes of events one h2o_send carries, at most (one event always fits). */
#define BATCH_BYTES (32 * 1024)

static const char KEEPALIVE[] = ": keepalive\n\n";

struct rd_stream {
    h2o_generator_t gen; /* first: h2o hands it back to proceed and stop */
    h2o_linklist_t link;
    struct rd_http *http;
    h2o_req_t *req;                    /* NULL once disposed */
    uint64_t pos;                      /* seq of the next event to look at */
    uint32_t kinds;                    /* bit per enum rd_event_kind; all bits when no filter */
    char node[RD_EVENTS_NODE_MAX + 1]; /* ?node=, or "" */
    char principal[96];
    bool linked;
    bool inflight; /* h2o_send called, proceed not yet */
    bool finished; /* the final send went (or the connection was shut down) */
    bool behind;   /* the ring overwrote what it had not sent */
    bool hello;    /* the opening comment goes first */
    bool resync;   /* a resync event goes first (after the opening) */
    uint64_t behind_ms;
    uint64_t last_send_ms;
    char *buf;
    size_t cap;
};

static const char *const end_names[RD_STREAM_END_COUNT] = {"client", "behind", "stalled",
                                                           "shutdown"};

const char *rd_http_stream_end_name(int why)
{
    return why >= 0 && why < RD_STREAM_END_COUNT ? end_names[why] : "unknown";
}

static uint64_t now_ms(void)
{
    return rd_mono_ns() / 1000000ULL;
}

static void unlink_stream(struct rd_stream *s, int why)
{
    if (!s->linked)
        return;
    s->linked = false;
    h2o_linklist_unlink(&s->link);
    s->http->streams.n--;
    s->http->streams.ended[why]++;
}

static bool reserve(struct rd_stream *s, size_t need)
{
    if (need <= s->cap)
        return true;
    size_t cap = (need + 1023) & ~(size_t)1023;
    char *b = realloc(s->buf, cap);
    if (b == NULL)
        return false;
    s->buf = b;
    s->cap = cap;
    return true;
}

static void send_buf(struct rd_stream *s, size_t len, h2o_send_state_t state)
{
    h2o_iovec_t v = h2o_iovec_init(s->buf, len);
    s->inflight = true;
    s->last_send_ms = now_ms();
    if (state == H2O_SEND_STATE_FINAL)
        s->finished = true;
    h2o_send(s->req, &v, 1, state);
}

/* The last send: a `dropped` (or `shutdown`) event, then the end. */
static void finish(struct rd_stream *s, int why, const char *kind, const char *message)
{
    struct rd_events *ev = s->http->env.events;
    json_t *d = json_pack("{s:s,s:s,s:I}", "reason", rd_http_stream_end_name(why), "message",
                          message, "ring_size", (json_int_t)ev->cap);
    char *data = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    int n = snprintf(NULL, 0, "event: %s\ndata: %s\n\n", kind, data ? data : "{}");
    size_t len = 0;
    if (reserve(s, (size_t)n + 1))
        len = (size_t)snprintf(s->buf, (size_t)n + 1, "event: %s\ndata: %s\n\n", kind,
                               data ? data : "{}");
    free(data);
    unlink_stream(s, why);
    s->http->streams.sent++;
    send_buf(s, len, H2O_SEND_STATE_FINAL);
}

static bool wanted(const struct rd_stream *s, const struct rd_event *e)
{
    if (!(s->kinds & (1u << e->kind)))
        return false;
    return s->node[0] == '\0' || strcmp(s->node, e->node) == 0;
}

/* Sends what the stream has not seen, when nothing is in flight. */
static void pump(struct rd_stream *s)
{
    struct rd_events *ev = s->http->env.events;
    if (s->req == NULL || s->inflight || s->finished)
        return;
    if (s->behind || s->pos < ev->head) {
        finish(s, RD_STREAM_END_BEHIND, "dropped",
               "this stream fell behind the event ring (the client read too slowly): reconnect "
               "with Last-Event-ID to resume, or reread the state if told to resync");
        return;
    }
    size_t len = 0;
    if (s->hello) {
        /* The headers go with the first bytes: a comment, and the client's
         * reconnection delay. */
        static const char HELLO[] = ": recoveryd event stream\nretry: 2000\n\n";
        if (!reserve(s, sizeof(HELLO)))
            return;
        memcpy(s->buf, HELLO, sizeof(HELLO) - 1);
        len = sizeof(HELLO) - 1;
        s->hello = false;
    }
    if (s->resync) {
        static const char RESYNC[] = "event: resync\ndata: {\"reason\":\"the events after the "
                                     "id given are no longer held: reread the state\"}\n\n";
        if (!reserve(s, len + sizeof(RESYNC)))
            return;
        memcpy(s->buf + len, RESYNC, sizeof(RESYNC) - 1);
        len += sizeof(RESYNC) - 1;
        s->resync = false;
        s->http->streams.sent++;
    }
    while (s->pos < ev->next && len < BATCH_BYTES) {
        const struct rd_event *e = rd_events_at(ev, s->pos);
        if (wanted(s, e)) {
            if (!reserve(s, len + e->len))
                break;
            memcpy(s->buf + len, e->frame, e->len);
            len += e->len;
            s->http->streams.sent++;
        }
        s->pos++;
    }
    if (len > 0)
        send_buf(s, len, H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    struct rd_stream *s = (struct rd_stream *)g;
    (void)req;
    s->inflight = false;
    pump(s);
    if (!s->inflight) { /* idle: an idle stream holds no buffer */
        free(s->buf);
        s->buf = NULL;
        s->cap = 0;
    }
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
    struct rd_stream *s = (struct rd_stream *)g;
    (void)req;
    s->finished = true;
    unlink_stream(s, RD_STREAM_END_CLIENT);
}

static void on_dispose(void *p)
{
    struct rd_stream *s = p;
    unlink_stream(s, RD_STREAM_END_CLIENT);
    s->req = NULL;
    free(s->buf);
    s->buf = NULL;
}

/* New events in the ring: every idle stream sends; one in flight that the
 * ring overwrote is behind. */
static void on_events(void *data)
{
    struct rd_http *http = data;
    struct rd_events *ev = http->env.events;
    h2o_linklist_t *n = http->streams.list.next;
    while (n != &http->streams.list) {
        struct rd_stream *s = H2O_STRUCT_FROM_MEMBER(struct rd_stream, link, n);
        n = n->next; /* pump may unlink s */
        if (!s->inflight)
            pump(s);
        else if (!s->behind && s->pos < ev->head) {
            s->behind = true;
            s->behind_ms = now_ms();
        }
    }
}

/* Closes the connection under a stream whose client reads nothing: h2o's
 * write then fails and it disposes the request as for a client gone. */
static void cut_stalled(struct rd_stream *s)
{
    h2o_conn_t *conn = s->req->conn;
    h2o_socket_t *sock = conn->callbacks->get_socket ? conn->callbacks->get_socket(conn) : NULL;
    int fd = sock != NULL ? h2o_socket_get_fd(sock) : -1;
    RD_WARN("http", "event_stream_stalled",
            "principal=%s detail=\"behind the event ring and reading nothing for %llu ms: "
            "connection closed\"",
            s->principal, (unsigned long long)s->http->env.cfg->server.events.stall_timeout_ms);
    unlink_stream(s, RD_STREAM_END_STALLED);
    s->finished = true;
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

static void on_timer(uv_timer_t *t)
{
    struct rd_http *http = t->data;
    const struct rd_cfg_events *c = &http->env.cfg->server.events;
    uint64_t now = now_ms();
    h2o_linklist_t *n = http->streams.list.next;
    while (n != &http->streams.list) {
        struct rd_stream *s = H2O_STRUCT_FROM_MEMBER(struct rd_stream, link, n);
        n = n->next;
        if (s->behind && s->inflight) {
            if (now - s->behind_ms >= c->stall_timeout_ms)
                cut_stalled(s);
            continue;
        }
        if (!s->inflight && now - s->last_send_ms >= c->keepalive_ms) {
            s->inflight = true;
            s->last_send_ms = now;
            http->streams.keepalives++;
            h2o_iovec_t v = h2o_iovec_init(KEEPALIVE, sizeof(KEEPALIVE) - 1);
            h2o_send(s->req, &v, 1, H2O_SEND_STATE_IN_PROGRESS);
        }
    }
}

void rd_http_streams_init(struct rd_http *http)
{
    struct rd_http_streams *st = &http->streams;
    h2o_linklist_init_anchor(&st->list);
    if (http->env.events == NULL)
        return;
    http->env.events->notify = on_events;
    http->env.events->notify_data = http;
    const struct rd_cfg_events *c = &http->env.cfg->server.events;
    uint64_t tick = c->keepalive_ms < c->stall_timeout_ms ? c->keepalive_ms : c->stall_timeout_ms;
    tick = tick / 4 > 50 ? tick / 4 : 50;
    uv_timer_init(http->env.loop, &st->timer);
    st->timer.data = http;
    uv_timer_start(&st->timer, on_timer, tick, tick);
    uv_unref((uv_handle_t *)&st->timer);
    st->timer_on = true;
}

void rd_http_streams_shutdown(struct rd_http *http)
{
    struct rd_http_streams *st = &http->streams;
    if (st->timer_on) {
        st->timer_on = false;
        uv_timer_stop(&st->timer);
        uv_close((uv_handle_t *)&st->timer, NULL);
    }
    if (http->env.events != NULL)
        http->env.events->notify = NULL;
    /* Idle streams end now with a last event; one in flight ends with its
     * connection, which h2o winds down. */
    h2o_linklist_t *n = st->list.next;
    while (n != NULL && n != &st->list) {
        struct rd_stream *s = H2O_STRUCT_FROM_MEMBER(struct rd_stream, link, n);
        n = n->next;
        if (!s->inflight && s->req != NULL)
            finish(s, RD_STREAM_END_SHUTDOWN, "shutdown",
                   "the engine is shutting down: reconnect (to another replica) with "
                   "Last-Event-ID");
    }
}

/* ?kind=a,b: the bits of the kinds named; false (answered 400) for an unknown one. */
static bool parse_kinds(struct rd_http_req *hr, const char *q, uint32_t *bits)
{
    *bits = 0;
    const char *p = q;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int k = rd_event_kind_parse(p, n);
        if (k < 0) {
            json_t *known = json_array();
            for (int i = 0; i < RD_EV_KIND_COUNT; i++)
                json_array_append_new(known, json_string(rd_event_kind_name(i)));
            rd_http_send_error(hr, 400, "bad_request",
                               json_pack("{s:s,s:o}", "field", "kind", "known", known),
                               "kind: unknown event kind '%.*s'", (int)(n < 64 ? n : 64), p);
            return false;
        }
        *bits |= 1u << k;
        p += n + (comma ? 1 : 0);
    }
    if (*bits == 0) {
        rd_http_bad_request(hr, "kind", "kind: expected one or more event kinds, comma-separated");
        return false;
    }
    return true;
}

static unsigned streams_of(const struct rd_http *http, const char *principal)
{
    unsigned n = 0;
    for (h2o_linklist_t *i = http->streams.list.next; i != &http->streams.list; i = i->next) {
        const struct rd_stream *s = H2O_STRUCT_FROM_MEMBER(struct rd_stream, link, i);
        n += strcmp(s->principal, principal) == 0;
    }
    return n;
}

void rd_api_EVENTS(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    struct rd_http *http = env->http;
    struct rd_events *ev = env->events;
    const struct rd_cfg_events *c = &env->cfg->server.events;
    h2o_req_t *req = hr->req;
    if (ev == NULL || *env->shutting_down) {
        rd_http_send_rd_error(hr, RD_ESHUTDOWN, "the engine is shutting down");
        return;
    }
    /* Filters and where to start, checked before anything is held. */
    uint32_t kinds = (1u << RD_EV_KIND_COUNT) - 1;
    const char *q = rd_http_query(hr, "kind");
    if (q != NULL && !parse_kinds(hr, q, &kinds))
        return;
    const char *node = rd_http_query(hr, "node");
    if (node != NULL && (node[0] == '\0' || strlen(node) > RD_EVENTS_NODE_MAX)) {
        rd_http_bad_limit(hr, "node", RD_EVENTS_NODE_MAX,
                          "node: expected a node id of 1 to %d bytes", RD_EVENTS_NODE_MAX);
        return;
    }
    /* HEAD: the headers a stream would have, and no stream. */
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        rd_http_send_raw(hr, 200, "text/event-stream", "", 0);
        return;
    }
    const char *since = rd_http_query(hr, "since");
    h2o_iovec_t last = {NULL, 0};
    ssize_t hi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
    if (hi >= 0)
        last = req->headers.entries[hi].value;
    else if (since != NULL)
        last = h2o_iovec_init(since, strlen(since));
    struct rd_event_id after;
    bool resume = last.base != NULL;
    if (resume && !rd_event_id_parse(last.base, last.len, &after)) {
        rd_http_bad_request(hr, hi >= 0 ? "Last-Event-ID" : "since",
                            "%s: expected an event id INDEX.ORD (as in the stream's id: lines), "
                            "got '%.*s'",
                            hi >= 0 ? "Last-Event-ID" : "since",
                            (int)(last.len < 64 ? last.len : 64), last.base);
        return;
    }
    /* The caps: per principal (429), in all (503). */
    const char *who = hr->who.id[0] ? hr->who.id : "anonymous";
    if (http->streams.n >= c->max_streams) {
        http->streams.refused[1]++;
        rd_http_send_error(hr, 503, "too_many_streams",
                           json_pack("{s:I}", "limit", (json_int_t)c->max_streams),
                           "this replica serves %u event streams already "
                           "(server.events.max_streams): retry later or ask another replica",
                           c->max_streams);
        return;
    }
    if (streams_of(http, who) >= c->max_per_principal) {
        http->streams.refused[0]++;
        rd_http_send_error(
            hr, 429, "too_many_streams",
            json_pack("{s:I,s:s}", "limit", (json_int_t)c->max_per_principal, "principal", who),
            "%s holds %u event streams on this replica already "
            "(server.events.max_streams_per_principal): close one first",
            who, c->max_per_principal);
        return;
    }

    struct rd_stream *s = h2o_mem_alloc_shared(&req->pool, sizeof(*s), on_dispose);
    memset(s, 0, sizeof(*s));
    s->gen.proceed = on_proceed;
    s->gen.stop = on_stop;
    s->http = http;
    s->req = req;
    s->kinds = kinds;
    snprintf(s->node, sizeof(s->node), "%s", node ? node : "");
    snprintf(s->principal, sizeof(s->principal), "%s", who);
    rd_events_note_restores(ev, env->fsm->restores, rd_replica_applied_index(env->replica));
    s->pos = ev->next;
    if (resume && !rd_events_resume(ev, after, &s->pos)) {
        s->pos = ev->next;
        s->resync = true;
    }
    h2o_linklist_insert(&http->streams.list, &s->link);
    s->linked = true;
    http->streams.n++;
    http->streams.opened++;

    rd_http_count_answer(hr, 200);
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-cache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL,
                          H2O_STRLIT("no"));
    h2o_start_response(req, &s->gen);
    s->hello = true;
    pump(s);
}
