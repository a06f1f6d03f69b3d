/*
 * librecoveryd-client: a small C client of the recoveryd REST API
 * (api/openapi.yaml) on libcurl and jansson, for agents and tools written in C.
 *
 * Build against it with `pkg-config --cflags --libs recoveryd-client`.
 *
 * Conventions (those of the engine, include/recoveryd/error.h):
 *   - every function returns 0 (RDC_OK) or a negative RDC_E* code; the human
 *     detail of the last failure is in rdc_errmsg(), the engine's machine code
 *     (bad_request, fenced, ...) in rdc_errcode() and the HTTP status in
 *     rdc_status();
 *   - a function that answers a document stores it in `*out` (a jansson value
 *     the caller owns and releases with json_decref()); on error `*out` is
 *     NULL (the engine's error answer, when there was one, is
 *     rdc_error_body()'s). `out` may be NULL when the caller does not want
 *     the answer;
 *   - JSON arguments are borrowed: the library never keeps or releases them;
 *   - what rdc_errmsg(), rdc_errcode(), rdc_endpoint() and rdc_error_body()
 *     return belongs to the client and lives until its next call or
 *     rdc_client_free().
 *
 * Threads: a client is used by one thread at a time; use one client per
 * thread. curl_global_init() is called by rdc_client_new() (libcurl 7.84 and
 * later make that thread-safe).
 *
 * Replicas and retries (api/openapi.yaml, DESIGN.md):
 *   - the client knows a list of endpoints (base URLs of the replicas); it
 *     sends to the one that answered last, follows a 307 to the leader
 *     (Location, same method and body), and on a connection error, a timeout
 *     or 503 (not_leader, no_quorum, not_ready, shutting_down,
 *     storage_unavailable: nothing was done) tries the next endpoint, until
 *     an answer or `retry_ms`;
 *   - 429 rate_limited is retried after Retry-After (within `retry_ms`);
 *   - a write whose outcome is unknown (503 outcome_unknown, a timeout or a
 *     connection lost after the request was sent) is retried only when it is
 *     idempotent: reads, heartbeats, checkpoint writes, completion and
 *     failure reports of an attempt, task submission with a task_id (the
 *     library chooses one when the caller did not), drain, isolate, readmit
 *     and remove of a node (the engine answers a node already in that state
 *     unchanged), backup verification and consistency checks (which change
 *     nothing but their record).
 *     Anything else answers RDC_EUNKNOWN: it may or may not have happened.
 */
#ifndef RECOVERYD_CLIENT_H
#define RECOVERYD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RDC_API __attribute__((visibility("default")))
#else
#define RDC_API
#endif

#define RDC_VERSION_STRING "0.1.0"

/* The error codes: enum, rdc_strerror() and rdc_err_name() from one table. */
#define RDC_ERRNO_MAP(X)                                                                           \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(NOTFOUND, -3, "not found")                                                                   \
    X(UNREACHABLE, -4, "no endpoint answered")                                                     \
    X(UNAVAILABLE, -5, "the engine cannot serve this now (no leader or no quorum)")                \
    X(UNKNOWN, -6, "the outcome of the write is unknown")                                          \
    X(AUTH, -7, "not authorized")                                                                  \
    X(CONFLICT, -8, "conflicting state")                                                           \
    X(FENCED, -9, "stale fencing token")                                                           \
    X(HTTP, -10, "the engine refused the request")                                                 \
    X(PROTO, -11, "unexpected answer")

enum rdc_errno {
    RDC_OK = 0,
#define RDC__ERR_ENUM(name, code, msg) RDC_E##name = (code),
    RDC_ERRNO_MAP(RDC__ERR_ENUM)
#undef RDC__ERR_ENUM
};

/* Static human description of `err`; "unknown error" for anything else. */
RDC_API const char *rdc_strerror(int err);

/* Static symbolic name of `err` ("RDC_EFENCED"); "RDC_UNKNOWN_ERROR" otherwise. */
RDC_API const char *rdc_err_name(int err);

typedef struct rdc_client rdc_client;

struct rdc_options {
    /* Comma-separated base URLs ("http://10.0.0.1:8080,http://10.0.0.2:8080").
     * NULL: $RECOVERYD_ENDPOINTS, else http://127.0.0.1:8080. Copied. */
    const char *endpoints;
    /* Bearer token. NULL: $RECOVERYD_TOKEN, else none. Copied. */
    const char *token;
    /* CA file (PEM) trusted for https:// endpoints. NULL: $RECOVERYD_CACERT,
     * else the system's. Copied. */
    const char *ca_file;
    /* Time limit of one request to one endpoint, in ms. 0: 5000 for operator
     * calls; agent calls use a third of the lease once registered. */
    long timeout_ms;
    /* How long one call keeps trying (other endpoints, elections, 429), in
     * ms. 0: 10000. */
    long retry_ms;
};

/*
 * Makes a client. `opts` may be NULL (every default); its strings are copied.
 * On 0 `*out` is the caller's, released with rdc_client_free(). On error
 * `*out` is NULL and `err` (when not NULL, `err_len` bytes) says why.
 */
RDC_API int rdc_client_new(const struct rdc_options *opts, rdc_client **out, char *err,
                           size_t err_len);

/* Releases the client and everything it holds. NULL is a no-op. */
RDC_API void rdc_client_free(rdc_client *c);

/* The last failure's detail (owned by the client; "" after a success). */
RDC_API const char *rdc_errmsg(const rdc_client *c);
/* The engine's error code of the last failure ("fenced"; "" when none). Owned by the client. */
RDC_API const char *rdc_errcode(const rdc_client *c);
/* The last error answer's JSON ({"error": {"code", "message", "details"}}),
 * borrowed from the client; NULL when the last call got none. */
RDC_API const json_t *rdc_error_body(const rdc_client *c);
/* The HTTP status of the last answer; 0 when none arrived. */
RDC_API long rdc_status(const rdc_client *c);
/* The base URL the last answer came from ("" before any). Owned by the client. */
RDC_API const char *rdc_endpoint(const rdc_client *c);

/*
 * Called during a transfer about every 100 ms (from inside the call, on its
 * thread) with the milliseconds since the call began, so a tool can draw
 * progress while a slow request runs. NULL removes it. `arg` is borrowed.
 */
typedef void (*rdc_progress_fn)(void *arg, long elapsed_ms);
RDC_API void rdc_set_progress(rdc_client *c, rdc_progress_fn fn, void *arg);

/* ---- the generic call ----------------------------------------------------------- */

/* Flags of rdc_request(). */
#define RDC_IDEMPOTENT 1 /* a retry after an unknown outcome is safe */
#define RDC_LOCAL      2 /* answered by the replica asked: no 307 expected */

/*
 * Sends `method` `path` (starting with "/", query included and already
 * encoded) with `body` (borrowed; NULL: none) under the replica and retry
 * rules above. GET is always idempotent. On 0 (any 2xx) `*out` holds the
 * answer's JSON (the caller's; JSON null when the body was empty).
 */
RDC_API int rdc_request(rdc_client *c, const char *method, const char *path, const json_t *body,
                        int flags, json_t **out);

/*
 * Query parameters of the list calls: a NULL-terminated array of key, value
 * pairs ({"state", "alive", "limit", "10", NULL}); a NULL or "" value leaves
 * its key out. Values are percent-encoded by the library. Borrowed.
 */
typedef const char *const rdc_params[];

/* ---- operator calls ---------------------------------------------------------------
 * Each answers the engine's document in `*out` (the caller's), as
 * api/openapi.yaml describes it. `params` may be NULL. */

/* GET /health of the endpoint in use (which replica, its role, the leader). */
RDC_API int rdc_health(rdc_client *c, json_t **out);
/* GET /api/v1/health/cluster: agents by health, quorum and replicas. */
RDC_API int rdc_cluster_health(rdc_client *c, json_t **out);

/* GET /api/v1/nodes (params: state, limit, cursor). */
RDC_API int rdc_nodes_list(rdc_client *c, const char *const *params, json_t **out);
RDC_API int rdc_node_get(rdc_client *c, const char *node_id, json_t **out);
/* POST .../drain, .../isolate, .../readmit with {"reason"} (`reason` may be NULL). */
RDC_API int rdc_node_drain(rdc_client *c, const char *node_id, const char *reason, json_t **out);
RDC_API int rdc_node_isolate(rdc_client *c, const char *node_id, const char *reason, json_t **out);
RDC_API int rdc_node_readmit(rdc_client *c, const char *node_id, const char *reason, json_t **out);
/* DELETE /api/v1/nodes/{id}: graceful leave, its tasks move at once. */
RDC_API int rdc_node_remove(rdc_client *c, const char *node_id, json_t **out);

/* GET /api/v1/tasks (params: state, node_id, priority, label (KEY=VALUE), limit, cursor). */
RDC_API int rdc_tasks_list(rdc_client *c, const char *const *params, json_t **out);
RDC_API int rdc_task_get(rdc_client *c, const char *task_id, json_t **out);
/*
 * POST /api/v1/tasks with `spec` (borrowed: priority, critical, payload,
 * requirements, max_attempts, deadline, task_id). Without a task_id the library adds a
 * random one to a copy, so that a retry cannot submit the task twice.
 */
RDC_API int rdc_task_submit(rdc_client *c, const json_t *spec, json_t **out);
/* POST /api/v1/tasks/{id}/cancel. An engine without that route answers
 * RDC_EHTTP with rdc_errcode() "unsupported" and a message saying so. */
RDC_API int rdc_task_cancel(rdc_client *c, const char *task_id, json_t **out);
/* The same with the operator's `reason` (NULL: none), kept in the task's error. */
RDC_API int rdc_task_cancel_reason(rdc_client *c, const char *task_id, const char *reason,
                                   json_t **out);
/* POST /api/v1/tasks/{id}/retry: a failed (or quarantined poison) task back
 * to pending on a new attempt; another state answers RDC_ECONFLICT (409). */
RDC_API int rdc_task_retry(rdc_client *c, const char *task_id, json_t **out);

/* GET /api/v1/faults/status. */
RDC_API int rdc_faults_status(rdc_client *c, json_t **out);
/* GET /api/v1/faults/records (params: node_id, status, severity_level, fault_type, since, ...). */
RDC_API int rdc_faults_list(rdc_client *c, const char *const *params, json_t **out);
RDC_API int rdc_fault_get(rdc_client *c, const char *fault_id, json_t **out);

/* GET /api/v1/conflicts (params: task_id, resolution, since, limit, cursor): the
 * writes of superseded attempts in availability mode and their resolutions. */
RDC_API int rdc_conflicts_list(rdc_client *c, const char *const *params, json_t **out);
RDC_API int rdc_conflict_get(rdc_client *c, const char *conflict_id, json_t **out);

/* GET /api/v1/recovery/tasks (params: node_id, status, limit, cursor). */
RDC_API int rdc_recoveries_list(rdc_client *c, const char *const *params, json_t **out);
RDC_API int rdc_recovery_get(rdc_client *c, const char *recovery_id, json_t **out);
/* POST /api/v1/recovery/trigger {"node_id", "strategy"} (`strategy` may be NULL). */
RDC_API int rdc_recovery_trigger(rdc_client *c, const char *node_id, const char *strategy,
                                 json_t **out);

/* POST /api/v1/backup/trigger {"target"} (`target` NULL: every target). */
RDC_API int rdc_backup_trigger(rdc_client *c, const char *target, json_t **out);
/* GET /api/v1/backups (params: status, target, limit, cursor). */
RDC_API int rdc_backups_list(rdc_client *c, const char *const *params, json_t **out);
RDC_API int rdc_backup_get(rdc_client *c, const char *backup_id, json_t **out);
/* POST /api/v1/backups/{id}/verify: the record after verification (verified true or false). */
RDC_API int rdc_backup_verify(rdc_client *c, const char *backup_id, json_t **out);

/* GET /api/v1/cluster/replicas as the endpoint in use sees them. */
RDC_API int rdc_replicas_list(rdc_client *c, json_t **out);
/* POST /api/v1/cluster/replicas: a new replica (`address` raft HOST:PORT,
 * `api_url`), in `role` (NULL: voter). */
RDC_API int rdc_replica_add(rdc_client *c, uint64_t id, const char *address, const char *api_url,
                            const char *role, json_t **out);
/* POST /api/v1/cluster/replicas {"id", "role"}: changes a member's role (promote: "voter"). */
RDC_API int rdc_replica_set_role(rdc_client *c, uint64_t id, const char *role, json_t **out);
/* DELETE /api/v1/cluster/replicas/{id}. */
RDC_API int rdc_replica_remove(rdc_client *c, uint64_t id, json_t **out);

/* GET /api/v1/audit (params: principal, action, target, since, until, order, limit, cursor). */
RDC_API int rdc_audit_list(rdc_client *c, const char *const *params, json_t **out);

/* POST /api/v1/consistency/check: {"check_id", "index", "status": "pending"}. */
RDC_API int rdc_consistency_check(rdc_client *c, json_t **out);
RDC_API int rdc_consistency_get(rdc_client *c, const char *check_id, json_t **out);
/* GET /api/v1/consistency/checks (params: status, limit, cursor). */
RDC_API int rdc_consistency_list(rdc_client *c, const char *const *params, json_t **out);

/* POST /api/v1/policies/reload on the endpoint in use (each replica loads its own). */
RDC_API int rdc_policies_reload(rdc_client *c, json_t **out);

/* ---- agent calls --------------------------------------------------------------- */

/*
 * POST /api/v1/nodes: registers `node_id` with `slots` (0: 1) and `labels`
 * (a borrowed JSON object of strings, may be NULL). On 0 `*out` holds
 * {"node_id", "epoch", "heartbeat_interval_ms", "lease_ms"}, and the
 * client's agent calls then time out after a third of lease_ms (unless
 * rdc_options.timeout_ms was set).
 */
RDC_API int rdc_agent_register(rdc_client *c, const char *node_id, int slots, const json_t *labels,
                               json_t **out);

/*
 * POST /api/v1/nodes/{id}/heartbeat {"epoch", "load": {"slots_used"},
 * "metrics"} (`metrics` borrowed, may be NULL). On 0 `*out` holds
 * {"state", "lease_ms", "assignments", "revoked"[, "revocations"]}. A
 * fenced epoch is RDC_EFENCED: drop every task and register again. An
 * agent drops a running task on a revocation only when the attempt it names
 * ("revocations": [{"task_id", "attempt"}]) is the attempt it runs
 * (rdc_heartbeat_revokes() decides), and
 * stops writing for a task once it could not renew its lease within
 * lease_ms (DESIGN.md decision 4): this library does not run tasks, so
 * that is the caller's to do.
 */
RDC_API int rdc_agent_heartbeat(rdc_client *c, const char *node_id, int64_t epoch, int slots_used,
                                const json_t *metrics, json_t **out);

/*
 * Whether the heartbeat answer `hb` (borrowed) revokes `task_id` as run in
 * `attempt`: 1 when a "revocations" entry names that task and attempt (an
 * entry for another attempt is about an older placement: keep running), or,
 * from an engine that sends no "revocations", when "revoked" lists the
 * task; else 0.
 */
RDC_API int rdc_heartbeat_revokes(const json_t *hb, const char *task_id, int64_t attempt);

/*
 * PUT /api/v1/tasks/{id}/checkpoint {"attempt", "version", "data"} (`data`
 * borrowed). Retried on an unknown outcome (the engine answers a repeat of
 * the stored checkpoint as success). RDC_EFENCED: the attempt is no longer
 * the task's; stop working on it. RDC_ECONFLICT with rdc_errcode()
 * "stale_version": the version is not newer than the stored one.
 */
RDC_API int rdc_agent_checkpoint(rdc_client *c, const char *task_id, int64_t attempt,
                                 int64_t version, const json_t *data, json_t **out);

/* POST /api/v1/tasks/{id}/complete {"attempt", "result"} (`result` borrowed, may be NULL). */
RDC_API int rdc_agent_complete(rdc_client *c, const char *task_id, int64_t attempt,
                               const json_t *result, json_t **out);

/* POST /api/v1/tasks/{id}/fail {"attempt", "error", "retryable"}. */
RDC_API int rdc_agent_fail(rdc_client *c, const char *task_id, int64_t attempt, const char *error,
                           int retryable, json_t **out);

/* GET /api/v1/tasks/{id}/checkpoint: the newest checkpoint, data included. */
RDC_API int rdc_task_checkpoint(rdc_client *c, const char *task_id, json_t **out);

#ifdef __cplusplus
}
#endif
#endif
