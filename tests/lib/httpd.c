#include <h2o.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "httpd.h"

struct conn {
    uv_tcp_t tcp; /* first: h2o closes it with our callback */
    struct endpoint *ep;
    struct conn *prev, *next;
};

struct endpoint {
    struct rdt_httpd *s;
    unsigned idx;
    uint16_t port;
    uv_tcp_t listener;
    bool listening;
    bool closing;
    _Atomic int mode;
    _Atomic int status;
    _Atomic unsigned hits;
    struct conn *conns;
    char **bodies; /* under s->mu */
    unsigned n_bodies, cap_bodies;
};

/* A request a hung endpoint is sitting on, until the client gives up (its
 * pool goes away: dispose unlinks it) or the server stops (answered then). */
struct hung {
    h2o_req_t *req;
    struct rdt_httpd *s;
    struct hung *prev, *next;
};

struct rdt_httpd {
    struct hung *hung;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t async;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    struct endpoint *eps;
    unsigned n;
    uint32_t *by_port; /* 1 + the index of the endpoint on each port, 0: none */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned requested, applied; /* generations of mode changes */
    bool stop, started, failed;
    bool stop_seen; /* loop thread only */
};

static struct endpoint *ep_of(struct rdt_httpd *s, h2o_req_t *req)
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_sockname(req->conn, (struct sockaddr *)&ss);
    if (len == 0 || ss.ss_family != AF_INET)
        return NULL;
    /* Looked up, not searched: the detection benchmark's load generator
     * has 10,000 endpoints, probed 1,000-3,000 times a second. */
    uint32_t i = s->by_port[ntohs(((struct sockaddr_in *)&ss)->sin_port)];
    return i != 0 ? &s->eps[i - 1] : NULL;
}

static void respond(h2o_req_t *req, int status, const char *body)
{
    /* One request per connection: no idle keep-alive connection outlives a
     * stop (h2o 2.2 cannot close those itself). */
    req->http1_is_persistent = 0;
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : "Service Unavailable";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    req->res.content_length = strlen(body);
    h2o_send_inline(req, body, strlen(body));
}

static void hung_dispose(void *p)
{
    struct hung *h = p;
    if (h->prev)
        h->prev->next = h->next;
    else if (h->s->hung == h)
        h->s->hung = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->prev = h->next = NULL;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct rdt_httpd *s = *(struct rdt_httpd **)(self + 1);
    struct endpoint *ep = ep_of(s, req);
    if (ep == NULL) {
        respond(req, 404, "{}");
        return 0;
    }
    atomic_fetch_add(&ep->hits, 1);
    switch (atomic_load(&ep->mode)) {
    case RDT_EP_OK:
        if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
            char *copy = malloc(req->entity.len + 1);
            if (copy != NULL) {
                memcpy(copy, req->entity.base ? req->entity.base : "", req->entity.len);
                copy[req->entity.len] = '\0';
                pthread_mutex_lock(&s->mu);
                if (ep->n_bodies == ep->cap_bodies) {
                    unsigned ncap = ep->cap_bodies ? ep->cap_bodies * 2 : 16;
                    char **nb = realloc(ep->bodies, ncap * sizeof(*nb));
                    if (nb != NULL) {
                        ep->bodies = nb;
                        ep->cap_bodies = ncap;
                    }
                }
                if (ep->n_bodies < ep->cap_bodies)
                    ep->bodies[ep->n_bodies++] = copy;
                else
                    free(copy);
                pthread_mutex_unlock(&s->mu);
            }
        }
        respond(req, 200, "{\"status\":\"ok\"}");
        return 0;
    case RDT_EP_STATUS:
        respond(req, atomic_load(&ep->status), "{\"status\":\"unavailable\"}");
        return 0;
    case RDT_EP_HANG: {
        struct hung *h = h2o_mem_alloc_shared(&req->pool, sizeof(*h), hung_dispose);
        h->req = req;
        h->s = s;
        h->prev = NULL;
        h->next = s->hung;
        if (s->hung)
            s->hung->prev = h;
        s->hung = h;
        return 0;
    }
    default:
        respond(req, 503, "{\"status\":\"down\"}");
        return 0;
    }
}

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    if (c->prev)
        c->prev->next = c->next;
    else if (c->ep)
        c->ep->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void on_accept(uv_stream_t *listener, int status)
{
    struct endpoint *ep = listener->data;
    if (status != 0)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    uv_tcp_init(listener->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    c->ep = ep;
    c->next = ep->conns;
    if (ep->conns)
        ep->conns->prev = c;
    ep->conns = c;
    if (atomic_load(&ep->mode) == RDT_EP_HANG)
        atomic_fetch_add(&ep->hits, 1); /* accepted counts as a hit for a hung endpoint */
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, conn_closed);
    h2o_accept(&ep->s->accept_ctx, sock);
}

static int ep_listen(struct endpoint *ep)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", ep->port, &a);
    uv_tcp_init(&ep->s->loop, &ep->listener);
    ep->listener.data = ep;
    if (uv_tcp_bind(&ep->listener, (struct sockaddr *)&a, 0) != 0 ||
        uv_listen((uv_stream_t *)&ep->listener, 512, on_accept) != 0) {
        uv_close((uv_handle_t *)&ep->listener, NULL);
        return -1;
    }
    if (ep->port == 0) {
        int len = sizeof(a);
        uv_tcp_getsockname(&ep->listener, (struct sockaddr *)&a, &len);
        ep->port = ntohs(a.sin_port);
        ep->s->by_port[ep->port] = ep->idx + 1;
    }
    ep->listening = true;
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    struct endpoint *ep = h->data;
    ep->closing = false;
}

/* Like a crashed process: no listener, and open connections torn down. */
static void ep_down(struct endpoint *ep)
{
    if (ep->listening) {
        ep->listening = false;
        ep->closing = true;
        uv_close((uv_handle_t *)&ep->listener, listener_closed);
    }
    for (struct conn *c = ep->conns; c; c = c->next) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            shutdown(fd, SHUT_RDWR);
    }
}

static void apply_modes(struct rdt_httpd *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        struct endpoint *ep = &s->eps[i];
        int mode = atomic_load(&ep->mode);
        if (mode == RDT_EP_DOWN)
            ep_down(ep);
        else if (!ep->listening && !ep->closing)
            ep_listen(ep);
    }
}

static void on_async(uv_async_t *a)
{
    struct rdt_httpd *s = a->data;
    pthread_mutex_lock(&s->mu);
    unsigned gen = s->requested;
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    if (stop) {
        /* Answer what hung, so h2o can finish and close those connections. */
        for (struct hung *h = s->hung, *next; h; h = next) {
            next = h->next;
            hung_dispose(h);
            respond(h->req, 503, "{\"status\":\"stopping\"}");
        }
        for (unsigned i = 0; i < s->n; i++) {
            atomic_store(&s->eps[i].mode, RDT_EP_DOWN);
            ep_down(&s->eps[i]);
        }
        uv_close((uv_handle_t *)&s->async, NULL);
        s->stop_seen = true;
        return;
    }
    apply_modes(s);
    /* Wait for listeners being closed to finish before acknowledging. */
    while (1) {
        bool busy = false;
        for (unsigned i = 0; i < s->n; i++)
            busy |= s->eps[i].closing;
        if (!busy)
            break;
        uv_run(&s->loop, UV_RUN_NOWAIT);
    }
    apply_modes(s); /* a DOWN -> OK flip while closing */
    pthread_mutex_lock(&s->mu);
    s->applied = gen;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void run(void *arg)
{
    struct rdt_httpd *s = arg;
    while (!s->stop_seen)
        uv_run(&s->loop, UV_RUN_ONCE);
    /* Connections shut down: let h2o notice and release them (bounded). */
    for (int i = 0; i < 200; i++) {
        bool any = false;
        for (unsigned e = 0; e < s->n; e++)
            any |= s->eps[e].conns != NULL;
        if (!any)
            break;
        uv_run(&s->loop, UV_RUN_NOWAIT);
        uv_sleep(5);
    }
    h2o_timeout_unlink(&s->ctx.http2._graceful_shutdown_timeout);
    h2o_context_dispose(&s->ctx);
    h2o_config_dispose(&s->config);
    uv_walk(&s->loop, close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
}

struct rdt_httpd *rdt_httpd_start(unsigned n)
{
    struct rdt_httpd *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->eps = calloc(n, sizeof(*s->eps));
    s->by_port = calloc(UINT16_MAX + 1, sizeof(*s->by_port));
    if (s->eps == NULL || s->by_port == NULL) {
        free(s->eps);
        free(s->by_port);
        free(s);
        return NULL;
    }
    s->n = n;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->async, on_async);
    s->async.data = s;
    h2o_config_init(&s->config);
    h2o_hostconf_t *host =
        h2o_config_register_host(&s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(path, sizeof(*h) + sizeof(s));
    h->on_req = on_req;
    *(struct rdt_httpd **)(h + 1) = s;
    h2o_context_init(&s->ctx, &s->loop, &s->config);
    s->accept_ctx.ctx = &s->ctx;
    s->accept_ctx.hosts = s->config.hosts;
    for (unsigned i = 0; i < n; i++) {
        s->eps[i].s = s;
        s->eps[i].idx = i;
        atomic_store(&s->eps[i].status, 503);
        if (ep_listen(&s->eps[i]) != 0) {
            fprintf(stderr, "rdt_httpd: cannot listen\n");
            return NULL;
        }
    }
    if (uv_thread_create(&s->thread, run, s) != 0)
        return NULL;
    s->started = true;
    return s;
}

uint16_t rdt_httpd_port(struct rdt_httpd *s, unsigned ep)
{
    return ep < s->n ? s->eps[ep].port : 0;
}

int rdt_httpd_set(struct rdt_httpd *s, unsigned ep, enum rdt_ep_mode mode, int status)
{
    return rdt_httpd_set_many(s, &ep, 1, mode, status);
}

int rdt_httpd_set_many(struct rdt_httpd *s, const unsigned *eps, unsigned n, enum rdt_ep_mode mode,
                       int status)
{
    for (unsigned i = 0; i < n; i++)
        if (eps[i] >= s->n)
            return -1;
    for (unsigned i = 0; i < n; i++) {
        atomic_store(&s->eps[eps[i]].status, status ? status : 503);
        atomic_store(&s->eps[eps[i]].mode, (int)mode);
    }
    pthread_mutex_lock(&s->mu);
    unsigned gen = ++s->requested;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->async);
    pthread_mutex_lock(&s->mu);
    while (s->applied < gen)
        pthread_cond_wait(&s->cond, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

unsigned rdt_httpd_hits(struct rdt_httpd *s, unsigned ep)
{
    return ep < s->n ? atomic_load(&s->eps[ep].hits) : 0;
}

unsigned rdt_httpd_bodies(struct rdt_httpd *s, unsigned ep)
{
    pthread_mutex_lock(&s->mu);
    unsigned n = ep < s->n ? s->eps[ep].n_bodies : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

char *rdt_httpd_body(struct rdt_httpd *s, unsigned ep, unsigned i)
{
    char *copy = NULL;
    pthread_mutex_lock(&s->mu);
    if (ep < s->n && i < s->eps[ep].n_bodies)
        copy = strdup(s->eps[ep].bodies[i]);
    pthread_mutex_unlock(&s->mu);
    return copy;
}

void rdt_httpd_stop(struct rdt_httpd *s)
{
    if (s == NULL)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_mutex_unlock(&s->mu);
        uv_async_send(&s->async);
        uv_thread_join(&s->thread);
    }
    for (unsigned i = 0; i < s->n; i++) {
        for (unsigned b = 0; b < s->eps[i].n_bodies; b++)
            free(s->eps[i].bodies[b]);
        free(s->eps[i].bodies);
    }
    free(s->eps);
    free(s->by_port);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    free(s);
}

/*
 * libh2o keeps freed buffers in thread-local recycle bins
 * (h2o_mem_alloc_recycle); when this server's thread exits they become
 * unreachable, which LeakSanitizer reports at the test's exit. Only test
 * binaries link this file, so the daemon's own leak checks are untouched.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:h2o_mem_alloc_recycle\n";
}
