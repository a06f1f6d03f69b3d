/*
 * The API's edge: what one client may hold of the server. Stands between
 * the listener and h2o (2.2, which limits little of this itself):
 *
 * - connections: a total cap (never more than RLIMIT_NOFILE less
 *   server.edge.reserved_fds, so raft always has descriptors for its log)
 *   and a cap per source address; an address whose connection was cut for
 *   abuse is refused for server.edge.abuse_block;
 * - HTTP/2, frame by frame before h2o parses them: a budget of streams the
 *   client resets (CVE-2023-44487, rapid reset), a budget of frames that
 *   carry no request (empty DATA or CONTINUATION, PING, SETTINGS,
 *   PRIORITY), the decoded size of a header list (HPACK amplification,
 *   CONTINUATION floods), the request bodies buffered per connection, a
 *   deadline for a request's headers and body (slowloris) and for an idle
 *   connection. A client over a limit gets GOAWAY (ENHANCE_YOUR_CALM, the
 *   reason in its debug data) and the connection is closed;
 * - HTTP/1.1 keeps h2o's own limits (docs/security.md, "HTTP edge").
 *
 * Loop-thread only.
 */
#ifndef RD_HTTP_EDGE_H
#define RD_HTTP_EDGE_H

#include <h2o.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

/* Why a connection was cut (metric label: rd_edge_cut_name). */
enum rd_edge_cut {
    RD_EDGE_CUT_RESETS,          /* stream reset budget spent */
    RD_EDGE_CUT_EMPTY_FRAMES,    /* budget of frames without request data spent */
    RD_EDGE_CUT_HEADER_LIST,     /* a header list over server.edge.max_header_list */
    RD_EDGE_CUT_BODY,            /* request bodies over server.edge.max_body_buffered */
    RD_EDGE_CUT_REQUEST_TIMEOUT, /* headers or body not complete in time */
    RD_EDGE_CUT_IDLE,            /* no request for server.edge.idle_timeout */
    RD_EDGE_CUT_COUNT
};

/* Why a connection was refused at accept (metric label: rd_edge_refusal_name). */
enum rd_edge_refusal {
    RD_EDGE_REFUSED_TOTAL,   /* max_connections (after the descriptor reserve) */
    RD_EDGE_REFUSED_ADDRESS, /* max_connections_per_address */
    RD_EDGE_REFUSED_BLOCKED, /* the address was cut for abuse a moment ago */
    RD_EDGE_REFUSED_COUNT
};

struct rd_edge_addr;

struct rd_edge {
    uv_loop_t *loop;
    h2o_accept_ctx_t *accept_ctx;
    struct rd_cfg_edge lim;
    unsigned max_total;     /* connections, after the descriptor reserve */
    unsigned long fd_limit; /* RLIMIT_NOFILE at start */
    h2o_linklist_t conns;   /* struct edge_conn */
    unsigned n_conns;
    struct rd_edge_addr **addrs; /* hash buckets by source address */
    uv_timer_t sweep;
    bool sweeping;
    bool stopped;
    uint64_t refused[RD_EDGE_REFUSED_COUNT];
    uint64_t cuts[RD_EDGE_CUT_COUNT];
    uint64_t accept_errors;
    uint64_t last_refusal_log_ms;
};

/*
 * Prepares the edge from cfg->server.edge and h2o's timeouts in `conf`
 * (call before h2o_context_init). 0 or RD_ENOMEM.
 */
int rd_edge_init(struct rd_edge *e, uv_loop_t *loop, const struct rd_config *cfg,
                 h2o_globalconf_t *conf, h2o_accept_ctx_t *accept_ctx);
/* The listener's connection callback: admits the client to h2o or refuses it. */
void rd_edge_accept(struct rd_edge *e, uv_stream_t *listener, int status);
/* Each HTTP/2 request, from the handler: finds connections that became
 * HTTP/2 by an h2c upgrade (h2o switches readers outside ours then). */
void rd_edge_h2_request(h2o_req_t *req);
/* Stops the edge's timer (at shutdown; connections stay h2o's to wind down;
 * the edge's memory goes with the last of them). */
void rd_edge_stop(struct rd_edge *e);
struct rd_mbuf;
/* The edge's figures in the Prometheus text format (GET /metrics). */
void rd_edge_metrics(const struct rd_edge *e, struct rd_mbuf *b);
const char *rd_edge_cut_name(int cut);
const char *rd_edge_refusal_name(int why);

#endif
