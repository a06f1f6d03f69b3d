/*
 * The REST API on h2o (libuv flavour): HTTP/1.1, h2c with prior knowledge
 * and h2c upgrade on one cleartext listener. One h2o handler at "/" routes by
 * method and path segments (h2o has no path parameters). Handlers answer at
 * once, or defer their answer until a log commit with rd_http_defer().
 * Loop-thread only.
 */
#ifndef RD_HTTP_H
#define RD_HTTP_H

#include <h2o.h>
#include <openssl/ssl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "http/edge.h"
#include "http/principal.h"
#include "metrics/metrics.h"

struct rd_analysis;
struct rd_backups;
struct rd_cluster;
struct rd_config;
struct rd_consistency;
struct rd_events;
struct rd_fsm;
struct rd_http;
struct rd_http_req;
struct rd_plugin_host;
struct rd_policy_host;
struct rd_records;
struct rd_registry;
struct rd_replica;
struct rd_sched;
struct rd_tokens;

/*
 * What the API serves from and acts through, given at start: the modules
 * (the handlers parse, call one of them, render), the engine's own figures
 * for /health and /metrics, and the policy reload. All outlive the server.
 */
struct rd_http_env {
    uv_loop_t *loop;
    const struct rd_config *cfg;
    struct rd_fsm *fsm;
    struct rd_replica *replica;
    struct rd_registry *registry;
    struct rd_analysis *analysis;
    struct rd_sched *sched;
    struct rd_cluster *cluster;
    struct rd_consistency *consistency;
    struct rd_plugin_host *plugins;
    struct rd_backups *backups; /* backups and their records */
    struct rd_records *records; /* the export to PostgreSQL (metrics) */
    /* The task life cycle's counters (core/lifecycle.h), for /metrics. */
    const uint64_t *task_deadlines_total;
    const uint64_t *tasks_pruned_total;
    struct rd_events *events;             /* the event ring GET /api/v1/events streams */
    struct rd_policy_host *const *policy; /* the policies in force (reloads swap it) */
    struct rd_http *http;                 /* the server itself (pending answers, metrics) */
    const bool *shutting_down;
    const uint64_t *started_ns;
    const uint64_t *policy_reloads_ok;
    const uint64_t *policy_reloads_failed;
    /* SIGHUP's reload, for POST /api/v1/policies/reload: 0 or RD_E* with `err`. */
    int (*reload_policies)(void *data, char *err, size_t errlen);
    void *reload_data;
    /* Test builds only (recoveryd-fi): serves POST /debug/...; NULL in the
     * daemon users run, where those paths are 404 like any unknown one. */
    void (*debug)(struct rd_http_req *hr, void *data);
    void *debug_data;
};

/*
 * Every route: its id, method, path ("*" is one segment), metric name and who
 * may call it (the one table of access; enum rd_access, docs/security.md):
 * OPEN anyone; METRICS anyone, or reader when security.metrics_open is
 * false; READER reader, operator, admin; OPERATOR operator, admin; ADMIN
 * admin; AGENT an agent token for its own nodes (the node in the path or
 * body, or the task's assigned node), or admin; AGENT_READER the same
 * agents, or reader and up.
 */
#define RD_ROUTE_LIST(X)                                                                           \
    X(HEALTH, "GET", "/health", "health", OPEN)                                                    \
    X(READY, "GET", "/ready", "ready", OPEN)                                                       \
    X(METRICS, "GET", "/metrics", "metrics", METRICS)                                              \
    X(NODES_LIST, "GET", "/api/v1/nodes", "nodes_list", READER)                                    \
    X(NODES_REGISTER, "POST", "/api/v1/nodes", "nodes_register", AGENT)                            \
    X(NODE_GET, "GET", "/api/v1/nodes/*", "node_get", READER)                                      \
    X(NODE_DELETE, "DELETE", "/api/v1/nodes/*", "node_delete", ADMIN)                              \
    X(NODE_HEARTBEAT, "POST", "/api/v1/nodes/*/heartbeat", "node_heartbeat", AGENT)                \
    X(NODE_DRAIN, "POST", "/api/v1/nodes/*/drain", "node_drain", OPERATOR)                         \
    X(NODE_ISOLATE, "POST", "/api/v1/nodes/*/isolate", "node_isolate", OPERATOR)                   \
    X(NODE_READMIT, "POST", "/api/v1/nodes/*/readmit", "node_readmit", OPERATOR)                   \
    X(CLUSTER_HEALTH, "GET", "/api/v1/health/cluster", "cluster_health", READER)                   \
    X(FAULTS_STATUS, "GET", "/api/v1/faults/status", "faults_status", READER)                      \
    X(FAULTS_RECORDS, "GET", "/api/v1/faults/records", "faults_records", READER)                   \
    X(FAULT_GET, "GET", "/api/v1/faults/records/*", "fault_get", READER)                           \
    X(PLUGINS_LIST, "GET", "/api/v1/plugins", "plugins_list", READER)                              \
    X(TASKS_SUBMIT, "POST", "/api/v1/tasks", "tasks_submit", OPERATOR)                             \
    X(TASKS_LIST, "GET", "/api/v1/tasks", "tasks_list", READER)                                    \
    X(TASK_GET, "GET", "/api/v1/tasks/*", "task_get", AGENT_READER)                                \
    X(TASK_CHECKPOINT_PUT, "PUT", "/api/v1/tasks/*/checkpoint", "task_checkpoint_put", AGENT)      \
    X(TASK_CHECKPOINT_GET, "GET", "/api/v1/tasks/*/checkpoint", "task_checkpoint_get",             \
      AGENT_READER)                                                                                \
    X(TASK_COMPLETE, "POST", "/api/v1/tasks/*/complete", "task_complete", AGENT)                   \
    X(TASK_FAIL, "POST", "/api/v1/tasks/*/fail", "task_fail", AGENT)                               \
    X(TASK_CANCEL, "POST", "/api/v1/tasks/*/cancel", "task_cancel", OPERATOR)                      \
    X(TASK_RETRY, "POST", "/api/v1/tasks/*/retry", "task_retry", OPERATOR)                         \
    X(POLICIES_RELOAD, "POST", "/api/v1/policies/reload", "policies_reload", OPERATOR)             \
    X(LOG_LEVEL_GET, "GET", "/api/v1/system/log-level", "log_level_get", READER)                   \
    X(LOG_LEVEL_SET, "PUT", "/api/v1/system/log-level", "log_level_set", ADMIN)                    \
    X(RECOVERY_TRIGGER, "POST", "/api/v1/recovery/trigger", "recovery_trigger", OPERATOR)          \
    X(RECOVERY_LIST, "GET", "/api/v1/recovery/tasks", "recovery_list", READER)                     \
    X(RECOVERY_GET, "GET", "/api/v1/recovery/tasks/*", "recovery_get", READER)                     \
    X(REPLICAS_LIST, "GET", "/api/v1/cluster/replicas", "replicas_list", READER)                   \
    X(REPLICAS_CHANGE, "POST", "/api/v1/cluster/replicas", "replicas_change", ADMIN)               \
    X(REPLICA_DELETE, "DELETE", "/api/v1/cluster/replicas/*", "replica_delete", ADMIN)             \
    X(REPLICA_REJOIN, "POST", "/api/v1/cluster/replicas/*/rejoin", "replica_rejoin", ADMIN)        \
    X(CONSISTENCY_CHECK, "POST", "/api/v1/consistency/check", "consistency_check", OPERATOR)       \
    X(CONSISTENCY_CHECKS, "GET", "/api/v1/consistency/checks", "consistency_checks", READER)       \
    X(CONSISTENCY_CHECK_GET, "GET", "/api/v1/consistency/checks/*", "consistency_check_get",       \
      READER)                                                                                      \
    X(CONSISTENCY_LOCAL, "GET", "/api/v1/consistency/checks/*/local", "consistency_local", READER) \
    X(BACKUP_TRIGGER, "POST", "/api/v1/backup/trigger", "backup_trigger", OPERATOR)                \
    X(BACKUPS_LIST, "GET", "/api/v1/backups", "backups_list", READER)                              \
    X(BACKUP_GET, "GET", "/api/v1/backups/*", "backup_get", READER)                                \
    X(BACKUP_VERIFY, "POST", "/api/v1/backups/*/verify", "backup_verify", OPERATOR)                \
    X(AUDIT_LIST, "GET", "/api/v1/audit", "audit_list", READER)                                    \
    X(EVENTS, "GET", "/api/v1/events", "events", READER)                                           \
    X(CONFLICTS_LIST, "GET", "/api/v1/conflicts", "conflicts_list", READER)                        \
    X(CONFLICT_GET, "GET", "/api/v1/conflicts/*", "conflict_get", READER)                          \
    X(WHOAMI, "GET", "/api/v1/auth/whoami", "whoami", ANY)

enum rd_access {
    RD_ACCESS_OPEN,
    RD_ACCESS_METRICS,
    RD_ACCESS_READER,
    RD_ACCESS_OPERATOR,
    RD_ACCESS_ADMIN,
    RD_ACCESS_AGENT,
    RD_ACCESS_AGENT_READER,
    RD_ACCESS_ANY, /* any known caller: paths that match no route (404, 405) */
};

enum rd_route {
#define RD__ROUTE_ENUM(id, method, pattern, name, access) RD_ROUTE_##id,
    RD_ROUTE_LIST(RD__ROUTE_ENUM)
#undef RD__ROUTE_ENUM
        RD_ROUTE_NONE, /* unmatched: 404 / 405 */
    RD_ROUTE_COUNT
};

#define RD_HTTP_MAX_PARAMS 2
/* Statuses counted by their code (server.c's status_slots), one slot for
 * the others: every 5xx the engine answers has its own, so the
 * availability alert rule (status=~"5..") sees them all. */
#define RD_STATUS_SLOTS 19

/* One request while its handler runs (on the stack) or waits (in a pending). */
struct rd_http_req {
    h2o_req_t *req; /* NULL once the client went away */
    const struct rd_http_env *env;
    int route;
    uint64_t t0;
    h2o_iovec_t params[RD_HTTP_MAX_PARAMS]; /* decoded path segments, on req->pool */
    h2o_iovec_t query;                      /* raw query string without '?' */
    /* The audit trail (issue 12): true once this request's record is
     * proposed (with its change, or alone at the answer); the error code of
     * the answer; what it acted on (the path's id, or what a handler sets). */
    bool audited;
    bool request_id_given; /* the client sent X-Request-Id: the answer carries the id used */
    /* who.source and a generated who.request_id are filled when first read
     * (the audit, a deferral, an answer that echoes the id): a heartbeat
     * never reads them, and formatting them cost every request. */
    bool who_later;
    /* An agent whose token does not cover the task's node, let through as
     * the node its write names (availability mode): only a conflict (a
     * write of a superseded attempt) may come of it, never a write to the
     * live attempt. */
    bool conflict_only;
    char audit_error[32];
    char audit_target[128];
    struct rd_principal who;
};

/* Why an event stream ended (metric label: rd_http_stream_end_name). */
enum rd_stream_end {
    RD_STREAM_END_CLIENT,   /* the client went away */
    RD_STREAM_END_BEHIND,   /* it fell behind the ring: final `dropped` event */
    RD_STREAM_END_STALLED,  /* behind, and it read nothing for stall_timeout: closed */
    RD_STREAM_END_SHUTDOWN, /* the engine is stopping */
    RD_STREAM_END_COUNT
};

/* The open event streams (api_events.c). */
struct rd_http_streams {
    h2o_linklist_t list; /* struct rd_stream, oldest first */
    unsigned n;
    uv_timer_t timer; /* keepalives and stalled streams */
    bool timer_on;
    uint64_t opened;                     /* streams opened */
    uint64_t refused[2];                 /* over the cap per principal, in total */
    uint64_t ended[RD_STREAM_END_COUNT]; /* streams ended, by why */
    uint64_t sent;                       /* events sent (resync and dropped included) */
    uint64_t keepalives;                 /* keepalive comments sent */
};

struct rd_http {
    struct rd_http_env env;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    bool listening;
    bool ctx_inited;
    SSL_CTX *ssl_ctx;    /* NULL for cleartext */
    struct rd_edge edge; /* connection caps and HTTP/2 limits (edge.h) */
    bool ui_on;          /* the dashboard is served at /ui/ (server.ui_dir) */
    /* Authentication (auth.h): on with a token file or a client CA. */
    bool auth_on;
    bool client_certs;        /* the TLS context asks for client certificates */
    struct rd_tokens *tokens; /* the tokens in force (a reload swaps it); may be NULL */
    uint64_t auth_denied[2];  /* 401s, 403s */
    size_t max_body;
    uint64_t pending; /* answers waiting for a commit */
    uint64_t requests[RD_ROUTE_COUNT][RD_STATUS_SLOTS];
    uint64_t audit_proposed; /* records proposed alone (denials, failures, no-log actions) */
    uint64_t audit_dropped;  /* records that could not be proposed (not the leader, ...) */
    /* Denials (401, 403) recorded alone, per second: beyond the budget they
     * are counted, not written (a flood of bad tokens must not flood the log). */
    uint64_t audit_denials_second;
    unsigned audit_denials_in_second;
    uint64_t audit_denials_suppressed;
    struct rd_hist latency[RD_ROUTE_COUNT];
    struct rd_http_streams streams;
    /* The answers to heartbeats with nothing to hand over, by node state
     * (api_nodes.c): most heartbeats get one, formatted again only when
     * the lease or the partition mode is not the one it was made with. */
    struct rd_http_idle {
        char text[224];
        int len;
        uint64_t lease_ms;
        unsigned mode;
    } idle[8];
    char errmsg[256];
};

/*
 * server.ui_dir: 0 with `on` set when it holds the dashboard (index.html),
 * 0 with `on` clear when it is empty or the built-in default is missing,
 * RD_ECONFIG with `err` (the key, the directory, where it was set) when a
 * directory the config or a flag names has no index.html.
 */
int rd_http_ui_check(const struct rd_config *cfg, bool *on, char *err, size_t errlen);

/*
 * Binds host:port and starts serving. With `tls_cert` and `tls_key` (PEM
 * paths, both or neither) the port speaks TLS with ALPN h2 and http/1.1;
 * otherwise cleartext HTTP/1.1 and h2c. 0 or RD_E* with http->errmsg set:
 * RD_EINVAL or RD_EIO when the address is at fault (server.listen; "API
 * address 127.0.0.1:8080 is already in use ..."), RD_ECONFIG when a TLS file
 * is (the message names server.tls.cert or server.tls.key). Requests are
 * answered once the loop runs: bind before raft starts, serve after.
 */
int rd_http_start(struct rd_http *http, const struct rd_http_env *env, const char *host,
                  uint16_t port, size_t max_body, const char *tls_cert, const char *tls_key);
/*
 * Reads security.tokens_file (when set) into a new set and swaps it in; a
 * file that does not parse keeps the set in force and says why in `err`
 * ("FILE:LINE: ..."). 0 or RD_E*. rd_http_start() calls it first.
 */
int rd_http_reload_tokens(struct rd_http *http, char *err, size_t errlen);
/* Stops accepting and asks h2o to wind connections down (GOAWAY). */
void rd_http_begin_shutdown(struct rd_http *http);
/* Open HTTP/1 and HTTP/2 connections. */
size_t rd_http_connections(struct rd_http *http);
/* Metric labels: a route's name and the status a counter slot stands for. */
const char *rd_http_route_name(int route);
int rd_http_status_of_slot(int slot);

/* ---- answering --------------------------------------------------------- */

/* Counts an answer of `status` (metrics, audit) without sending anything:
 * for answers h2o streams (the event stream). */
void rd_http_count_answer(struct rd_http_req *hr, int status);

/* The event streams: started by rd_http_start, ended at shutdown. */
void rd_http_streams_init(struct rd_http *http);
void rd_http_streams_shutdown(struct rd_http *http);
const char *rd_http_stream_end_name(int why);

/* Sends `body` (stolen) as JSON with `status`. */
void rd_http_send_json(struct rd_http_req *hr, int status, json_t *body);
/* Sends `len` bytes (copied) with `status` and content type. */
void rd_http_send_raw(struct rd_http_req *hr, int status, const char *ctype, const char *body,
                      size_t len);
/*
 * Sends the one error shape {"error":{"code","message","details"}}.
 * `details` (stolen, may be NULL) becomes the details object.
 */
void rd_http_send_error(struct rd_http_req *hr, int status, const char *code, json_t *details,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* 400 bad_request naming `field` in details.field. */
void rd_http_bad_request(struct rd_http_req *hr, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 400 bad_request over a limit: details.field and details.limit (input_limits.h). */
void rd_http_bad_limit(struct rd_http_req *hr, const char *field, long long limit, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));
/* Maps an RD_E* code to its status and error code (503 with Retry-After, ...). */
void rd_http_send_rd_error(struct rd_http_req *hr, int err, const char *message);

/* ---- deferred answers -------------------------------------------------- */

/*
 * A request whose answer waits for a commit. The pending record owns a copy
 * of the request context; if the client goes away first, pending->hr.req
 * becomes NULL and the answer is dropped (the write itself still commits).
 * Every pending must end with rd_http_pending_done() exactly once.
 */
struct rd_http_pending {
    struct rd_http_req hr;
    struct rd_http_guard *guard;
    char key[256]; /* what the answer is about: a node or task id */
};

struct rd_http_pending *rd_http_defer(struct rd_http_req *hr);

struct rd_cmd;
/*
 * Encodes `cmd`, proposes it and answers through `done` (called with the
 * pending record) after the commit; `key` is copied into pending->key.
 * Answers refusals and errors (shutting down, not leader, ...) itself.
 */
void rd_http_propose(struct rd_http_req *hr, const struct rd_cmd *cmd, const char *key,
                     size_t key_len, void (*done)(void *data, int status, uint64_t value));
/* True while the client still waits for the answer. */
static inline bool rd_http_pending_alive(const struct rd_http_pending *p)
{
    return p->hr.req != NULL;
}
void rd_http_pending_done(struct rd_http_pending *p);

/* ---- request helpers --------------------------------------------------- */

struct rd_cmd_audit;
/* Whether a route's requests are audited one by one: every route that
 * changes something except heartbeats and checkpoint writes (counted in
 * recoveryd_http_requests_total instead). Denials (401, 403) of any route
 * are audited too. */
bool rd_http_route_audited(int route);
/*
 * For a change that is no log command (a membership change): proposes the
 * request's record now, before the change, with status 202 (the change
 * follows), so the log never holds the change without its record. A
 * callback that then answers a failure clears hr->audited first: the
 * failure is recorded too.
 */
void rd_http_audit_ahead(struct rd_http_req *hr);
/* Fills `a` with the audit part of `hr`: its principal, the route, `target`
 * and the success `status` (strings borrowed from `hr`). */
void rd_http_audit_part(struct rd_http_req *hr, struct rd_cmd_audit *a, const char *target,
                        int status);

struct rd_task;
struct rd_checkpoint;
/* The API's view of a task (API.md). */
json_t *rd_api_task_json(const struct rd_task *t);
struct rd_conflict;
/* The API's view of a conflict record (GET /api/v1/conflicts). */
json_t *rd_api_conflict_json(const struct rd_conflict *c);
/* A checkpoint's version, updated_at, size, checksum (and its data). */
json_t *rd_api_checkpoint_json(const struct rd_checkpoint *c, bool with_data);

/* Parses ?limit= (default 100, 1-1000); answers 400 itself and returns -1. */
int rd_api_list_limit(struct rd_http_req *hr);
/* ?cursor= of a list paged by record seq (audit, conflicts): 0 when absent
 * or empty; answers 400 itself and returns false when it is not one. */
bool rd_api_seq_cursor(struct rd_http_req *hr, uint64_t *seq);
/* Answers a page of such a list: {"items", "next_cursor": `last`'s seq as
 * a string when `more`, else null}. */
void rd_api_send_seq_page(struct rd_http_req *hr, json_t *items, bool more, uint64_t last);

/* An operator action's optional {"reason": "..."} body into `buf`: "dflt"
 * or "dflt: reason"; false (400 sent) when malformed (api_nodes.c). */
bool rd_api_operator_reason(struct rd_http_req *hr, char *buf, size_t len, const char *dflt);
/* Parses the body as a JSON object; answers 400/413 itself and returns NULL. */
json_t *rd_http_body_object(struct rd_http_req *hr);
/* Value of query parameter `name` (percent-decoded, on the pool) or NULL. */
const char *rd_http_query(struct rd_http_req *hr, const char *name);

/* Handlers, in api_*.c. */
#define RD__ROUTE_DECL(id, method, pattern, name, access) void rd_api_##id(struct rd_http_req *hr);
RD_ROUTE_LIST(RD__ROUTE_DECL)
#undef RD__ROUTE_DECL

#endif
