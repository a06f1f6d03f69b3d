/*
 * Records in PostgreSQL (records.h, docs/records.md): the connection, the
 * migrations and the export's batches, each a chain of statements sent one
 * at a time on a non-blocking libpq connection watched by a uv_poll.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "http/auth.h"
#include "records/migrations.h"
#include "records/records.h"
#include "recoveryd/error.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* pg_advisory_xact_lock's key while migrating: "rdmigrat" */
#define MIGRATE_LOCK "7243794366438385012"

static const char *const tables[RD_EXPORT_KINDS] = {"fault_records", "task_recovery", "audit_log",
                                                    "backup_records"};

const char *rd_records_table(int kind)
{
    return kind >= 0 && kind < RD_EXPORT_KINDS ? tables[kind] : "unknown";
}

/* The upserts, one statement per table: the batch's rows travel as one JSON
 * array parameter, typed by jsonb_to_recordset; ms times become timestamps
 * (0 and null: NULL). */
static const char *const upserts[RD_EXPORT_KINDS] = {
    "INSERT INTO fault_records (id, node_id, fault_type, severity_level, detected_at, "
    "resolved_at, recovery_action, status, metadata) "
    "SELECT x.id, x.node_id, x.fault_type, x.severity_level, "
    "to_timestamp(x.detected_at / 1000.0), to_timestamp(x.resolved_at / 1000.0), "
    "x.recovery_action, x.status, x.metadata "
    "FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, node_id varchar, fault_type varchar, "
    "severity_level varchar, detected_at bigint, resolved_at bigint, recovery_action jsonb, "
    "status varchar, metadata jsonb) "
    "ON CONFLICT (id) DO UPDATE SET node_id = EXCLUDED.node_id, "
    "fault_type = EXCLUDED.fault_type, severity_level = EXCLUDED.severity_level, "
    "detected_at = EXCLUDED.detected_at, resolved_at = EXCLUDED.resolved_at, "
    "recovery_action = EXCLUDED.recovery_action, status = EXCLUDED.status, "
    "metadata = EXCLUDED.metadata",

    "INSERT INTO task_recovery (id, original_task_id, failed_node_id, recovery_node_id, "
    "recovery_strategy, started_at, completed_at, success, error_message) "
    "SELECT x.id, x.original_task_id, x.failed_node_id, x.recovery_node_id, "
    "x.recovery_strategy, to_timestamp(x.started_at / 1000.0), "
    "to_timestamp(x.completed_at / 1000.0), x.success, x.error_message "
    "FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, original_task_id uuid, "
    "failed_node_id varchar, recovery_node_id varchar, recovery_strategy varchar, "
    "started_at bigint, completed_at bigint, success boolean, error_message text) "
    "ON CONFLICT (id) DO UPDATE SET original_task_id = EXCLUDED.original_task_id, "
    "failed_node_id = EXCLUDED.failed_node_id, recovery_node_id = EXCLUDED.recovery_node_id, "
    "recovery_strategy = EXCLUDED.recovery_strategy, started_at = EXCLUDED.started_at, "
    "completed_at = EXCLUDED.completed_at, success = EXCLUDED.success, "
    "error_message = EXCLUDED.error_message",

    "INSERT INTO audit_log (id, at, principal, role, source, method, action, target, status, "
    "error, request_id, cause) "
    "SELECT x.id, to_timestamp(x.at / 1000.0), x.principal, x.role, x.source, x.method, "
    "x.action, x.target, x.status, x.error, x.request_id, x.cause "
    "FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, at bigint, principal varchar, "
    "role varchar, source varchar, method varchar, action varchar, target varchar, "
    "status integer, error varchar, request_id varchar, cause varchar) "
    "ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at, principal = EXCLUDED.principal, "
    "role = EXCLUDED.role, source = EXCLUDED.source, method = EXCLUDED.method, "
    "action = EXCLUDED.action, target = EXCLUDED.target, status = EXCLUDED.status, "
    "error = EXCLUDED.error, request_id = EXCLUDED.request_id, cause = EXCLUDED.cause",

    "INSERT INTO backup_records (id, target, status, raft_index, raft_term, size_bytes, "
    "checksum, digest, started_at, completed_at, verified_at, verify_ok, error) "
    "SELECT x.id, x.target, x.status, x.raft_index, x.raft_term, x.size_bytes, x.checksum, "
    "x.digest, to_timestamp(x.started_at / 1000.0), to_timestamp(x.completed_at / 1000.0), "
    "to_timestamp(x.verified_at / 1000.0), x.verify_ok, x.error "
    "FROM jsonb_to_recordset($1::jsonb) AS x(id varchar, target varchar, status varchar, "
    "raft_index bigint, raft_term bigint, size_bytes bigint, checksum char(16), "
    "digest char(16), started_at bigint, completed_at bigint, verified_at bigint, "
    "verify_ok boolean, error text) "
    "ON CONFLICT (id) DO UPDATE SET target = EXCLUDED.target, status = EXCLUDED.status, "
    "raft_index = EXCLUDED.raft_index, raft_term = EXCLUDED.raft_term, "
    "size_bytes = EXCLUDED.size_bytes, checksum = EXCLUDED.checksum, "
    "digest = EXCLUDED.digest, started_at = EXCLUDED.started_at, "
    "completed_at = EXCLUDED.completed_at, verified_at = EXCLUDED.verified_at, "
    "verify_ok = EXCLUDED.verify_ok, error = EXCLUDED.error",
};

/* Steps of a batch's transaction. */
enum { STEP_BEGIN = 0, STEP_ADVANCE, STEP_UPSERT, STEP_COMMIT = STEP_UPSERT + RD_EXPORT_KINDS };
/* Steps of a connection's start. */
enum { STEP_VERSIONS = 0, STEP_MIGRATE };

static void fail(struct rd_records *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void schedule(struct rd_records *r, uint64_t ms);

/* ---- the connection ------------------------------------------------------------- */

static void no_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void poll_closed(uv_handle_t *h)
{
    free(h);
}

static void unwatch(struct rd_records *r)
{
    if (r->poll != NULL) {
        uv_poll_stop(r->poll);
        uv_close((uv_handle_t *)r->poll, poll_closed);
        r->poll = NULL;
    }
    r->fd = -1;
}

static void free_batch(struct rd_records *r)
{
    for (int k = 0; k < RD_EXPORT_KINDS; k++) {
        free(r->batch_json[k]);
        r->batch_json[k] = NULL;
        r->batch_rows[k] = 0;
    }
}

static void disconnect(struct rd_records *r)
{
    if (r->resolving != NULL) {
        /* Its callback still runs (cancelled, or with an answer no one
         * wants) and frees it. */
        r->resolving->data = NULL;
        uv_cancel((uv_req_t *)r->resolving);
        r->resolving = NULL;
    }
    unwatch(r); /* before the socket closes */
    if (r->conn != NULL) {
        PQfinish(r->conn);
        r->conn = NULL;
    }
    PQclear(r->rows);
    r->rows = NULL;
    free_batch(r);
    uv_timer_stop(&r->deadline);
    r->in_flight = false;
    r->pg_known = false;
    r->phase = RD_RECORDS_OFF;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches the connection's socket (it may change while connecting). */
static void watch(struct rd_records *r, int events)
{
    int fd = PQsocket(r->conn);
    if (fd < 0) {
        fail(r, "connection has no socket: %s", PQerrorMessage(r->conn));
        return;
    }
    if (r->poll != NULL && fd != r->fd)
        unwatch(r);
    if (r->poll == NULL) {
        r->poll = malloc(sizeof(*r->poll));
        if (r->poll == NULL || uv_poll_init_socket(r->env.loop, r->poll, fd) != 0) {
            free(r->poll);
            r->poll = NULL;
            fail(r, "cannot watch the connection's socket");
            return;
        }
        r->poll->data = r;
        r->fd = fd;
    }
    uv_poll_start(r->poll, events, on_poll);
}

static void on_deadline(uv_timer_t *t)
{
    struct rd_records *r = t->data;
    fail(r, "no answer within %" PRIu64 " ms (%s)", r->env.cfg->fault_tolerance.records.timeout_ms,
         r->resolving != NULL                ? "resolving the host's name"
         : r->phase == RD_RECORDS_CONNECTING ? "connecting"
                                             : "statement");
}

static void arm_deadline(struct rd_records *r)
{
    uv_timer_start(&r->deadline, on_deadline, r->env.cfg->fault_tolerance.records.timeout_ms, 0);
}

static void connect_step(struct rd_records *r, PostgresPollingStatusType st);

/* Connects; `hostaddr` ("" for none) is the address resolve() found for the
 * conninfo's host, so that libpq makes no name lookup of its own. */
static void connect_to(struct rd_records *r, const char *hostaddr)
{
    const struct rd_config *c = r->env.cfg;
    /* Defaults first: the expanded conninfo (dbname) overrides them; what
     * it leaves out libpq takes from PG* variables and ~/.pgpass. Then the
     * address, over whatever the conninfo said (it said none: resolve()). */
    const char *k[] = {"application_name", "dbname", hostaddr[0] ? "hostaddr" : NULL, NULL};
    const char *v[] = {"recoveryd", c->fault_tolerance.records.conninfo, hostaddr, NULL};
    r->conn = PQconnectStartParams(k, v, 1);
    if (r->conn == NULL) {
        fail(r, "connect: out of memory");
        return;
    }
    if (PQstatus(r->conn) == CONNECTION_BAD) {
        fail(r, "connect: %s", PQerrorMessage(r->conn));
        return;
    }
    PQsetNoticeProcessor(r->conn, no_notices, NULL);
    r->phase = RD_RECORDS_CONNECTING;
    arm_deadline(r);
    /* As if PQconnectPoll had said "writing" (libpq's documented start). */
    connect_step(r, PGRES_POLLING_WRITING);
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rd_records *r = req->data;
    free(req);
    if (r == NULL) { /* given up on (disconnect) */
        uv_freeaddrinfo(res);
        return;
    }
    r->resolving = NULL;
    char ip[64] = "";
    if (status == 0 && res != NULL)
        uv_ip_name(res->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    if (ip[0] == '\0') {
        fail(r, "cannot resolve host %s: %s", r->host, status ? uv_strerror(status) : "no address");
        return;
    }
    connect_to(r, ip);
}

/*
 * The host libpq would look up by name, into r->host: the conninfo's (or
 * PGHOST's) when it is one name and no hostaddr is given. libpq's lookup
 * is a blocking getaddrinfo on the calling thread (its documentation says
 * so of PQconnectStart): made on the loop, a slow or absent DNS server would
 * hold it for seconds. False when there is no name to look up (a socket
 * directory, an address given) or libpq must (several hosts, a service
 * file): then it connects as it would.
 */
static bool name_to_resolve(struct rd_records *r)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(r->env.cfg->fault_tolerance.records.conninfo, &err);
    if (opts == NULL) {
        PQfreemem(err); /* libpq says what is wrong when it connects */
        return false;
    }
    const char *host = NULL, *hostaddr = NULL, *service = NULL;
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "service") == 0)
            service = o->val;
    }
    if (host == NULL || host[0] == '\0')
        host = getenv("PGHOST");
    if (hostaddr == NULL || hostaddr[0] == '\0')
        hostaddr = getenv("PGHOSTADDR");
    if (service == NULL || service[0] == '\0')
        service = getenv("PGSERVICE");
    bool name = host != NULL && host[0] != '\0' && host[0] != '/' && host[0] != '@' &&
                strchr(host, ',') == NULL && strlen(host) < sizeof(r->host) &&
                (hostaddr == NULL || hostaddr[0] == '\0') &&
                (service == NULL || service[0] == '\0');
    if (name)
        snprintf(r->host, sizeof(r->host), "%s", host);
    else if (host != NULL && strchr(host, ',') != NULL && !r->warned_hosts) {
        r->warned_hosts = true;
        RD_WARN("records", "hosts_resolved_by_libpq",
                "detail=\"conninfo names several hosts: libpq looks their names up itself, on the "
                "loop; give their addresses in hostaddr to spare it\"");
    }
    PQconninfoFree(opts);
    return name;
}

static void start_connect(struct rd_records *r)
{
    if (!name_to_resolve(r)) {
        connect_to(r, "");
        return;
    }
    /* The lookup on libuv's thread pool; the statement timeout bounds it. */
    uv_getaddrinfo_t *req = malloc(sizeof(*req));
    if (req == NULL) {
        fail(r, "connect: out of memory");
        return;
    }
    req->data = r;
    r->resolving = req;
    r->phase = RD_RECORDS_CONNECTING;
    arm_deadline(r);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rv = uv_getaddrinfo(r->env.loop, req, resolved, r->host, NULL, &hints);
    if (rv != 0) {
        r->resolving = NULL;
        free(req);
        fail(r, "cannot resolve host %s: %s", r->host, uv_strerror(rv));
    }
}

/* ---- statements ------------------------------------------------------------------- */

static void send_query(struct rd_records *r, const char *sql, int nparams,
                       const char *const *values)
{
    PQclear(r->rows);
    r->rows = NULL;
    r->failed = false;
    r->error[0] = '\0';
    r->in_flight = true;
    int ok = nparams > 0 ? PQsendQueryParams(r->conn, sql, nparams, NULL, values, NULL, NULL, 0)
                         : PQsendQuery(r->conn, sql);
    if (!ok) {
        fail(r, "send: %s", PQerrorMessage(r->conn));
        return;
    }
    arm_deadline(r);
    int f = PQflush(r->conn);
    if (f < 0) {
        fail(r, "send: %s", PQerrorMessage(r->conn));
        return;
    }
    watch(r, UV_READABLE | (f > 0 ? UV_WRITABLE : 0));
}

/* "ERROR 42501: permission denied for table x". */
static void describe(const PGresult *res, char *out, size_t len)
{
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (primary != NULL)
        snprintf(out, len, "%s %s: %s", sev ? sev : "ERROR", st ? st : "?", primary);
    else
        snprintf(out, len, "%s", PQresultErrorMessage(res));
}

static void take_result(struct rd_records *r, PGresult *res)
{
    switch (PQresultStatus(res)) {
    case PGRES_TUPLES_OK:
        PQclear(r->rows);
        r->rows = res;
        return;
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
        PQclear(res);
        return;
    default:
        if (!r->failed) { /* the first error says why; the rest follow from it */
            describe(res, r->error, sizeof(r->error));
            r->failed = true;
        }
        PQclear(res);
        return;
    }
}

static void statement_done(struct rd_records *r);

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct rd_records *r = h->data;
    if (r->poll != h || r->conn == NULL)
        return;
    if (status < 0) {
        fail(r, "socket: %s", uv_strerror(status));
        return;
    }
    if (r->phase == RD_RECORDS_CONNECTING) {
        connect_step(r, PQconnectPoll(r->conn));
        return;
    }
    if (events & UV_READABLE) {
        if (!PQconsumeInput(r->conn)) {
            fail(r, "read: %s", PQerrorMessage(r->conn));
            return;
        }
    }
    if (!r->in_flight) {
        /* Between statements: only the server ending the connection (an
         * error message, then EOF) has anything to say. */
        if (PQstatus(r->conn) == CONNECTION_BAD)
            fail(r, "connection lost: %s", PQerrorMessage(r->conn));
        return;
    }
    /* Whatever woke us, what is left to send goes on (libpq's non-blocking
     * rule: after reading, flush again). */
    int f = PQflush(r->conn);
    if (f < 0) {
        fail(r, "send: %s", PQerrorMessage(r->conn));
        return;
    }
    while (!PQisBusy(r->conn)) {
        PGresult *res = PQgetResult(r->conn);
        if (res == NULL) {
            uv_timer_stop(&r->deadline);
            r->in_flight = false;
            statement_done(r);
            return;
        }
        take_result(r, res);
    }
    watch(r, UV_READABLE | (f > 0 ? UV_WRITABLE : 0));
}

/* ---- migrations ------------------------------------------------------------------- */

static void start_migrations(struct rd_records *r)
{
    const char *schema = r->env.cfg->fault_tolerance.records.schema; /* config: [a-z_][a-z0-9_]* */
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SET statement_timeout = %" PRIu64 ";\n"
             "BEGIN;\n"
             "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ");\n"
             "CREATE SCHEMA IF NOT EXISTS %s;\n"
             "SET search_path TO %s;\n"
             "CREATE TABLE IF NOT EXISTS schema_migrations (\n"
             "    version BIGINT PRIMARY KEY,\n"
             "    name VARCHAR(255) NOT NULL,\n"
             "    applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()\n"
             ");\n"
             "SELECT version FROM schema_migrations ORDER BY version;",
             r->env.cfg->fault_tolerance.records.timeout_ms, schema, schema);
    r->phase = RD_RECORDS_MIGRATING;
    r->step = STEP_VERSIONS;
    send_query(r, sql, 0, NULL);
}

/* The versions found: apply the missing ones, read the position, commit. */
static void apply_migrations(struct rd_records *r)
{
    bool have[256] = {false};
    unsigned newest = 0;
    int n = r->rows ? PQntuples(r->rows) : 0;
    for (int i = 0; i < n; i++) {
        unsigned long long v = strtoull(PQgetvalue(r->rows, i, 0), NULL, 10);
        if (v > newest)
            newest = v > 1000000 ? 1000000 : (unsigned)v;
        if (v < sizeof(have))
            have[v] = true;
    }
    if (newest > rd_n_migrations) {
        fail(r,
             "the database's schema is at version %u, newer than this recoveryd knows (%u): "
             "upgrade recoveryd",
             newest, rd_n_migrations);
        return;
    }
    struct rd_wbuf w;
    rd_w_init(&w);
    char names[256] = "";
    size_t nl = 0;
    for (unsigned i = 0; i < rd_n_migrations; i++) {
        const struct rd_migration *m = &rd_migrations[i];
        if (m->version < sizeof(have) && have[m->version])
            continue;
        char row[160];
        int len = snprintf(row, sizeof(row),
                           "\nINSERT INTO schema_migrations (version, name) VALUES (%u, '%s');\n",
                           m->version, m->name);
        rd_w_bytes(&w, m->sql, strlen(m->sql));
        rd_w_bytes(&w, row, (size_t)len);
        nl += (size_t)snprintf(names + nl, nl < sizeof(names) ? sizeof(names) - nl : 0, "%s%s",
                               nl ? "," : "", m->name);
        if (nl >= sizeof(names))
            nl = sizeof(names) - 1;
    }
    static const char tail[] = "SELECT raft_index FROM export_position WHERE id = 1;\nCOMMIT;";
    rd_w_bytes(&w, tail, sizeof(tail)); /* with its NUL */
    if (w.err) {
        rd_w_free(&w);
        fail(r, "migrations: out of memory");
        return;
    }
    if (names[0] != '\0')
        RD_INFO("records", "migrating", "schema=%s apply=%s",
                r->env.cfg->fault_tolerance.records.schema, names);
    r->step = STEP_MIGRATE;
    send_query(r, (const char *)w.p, 0, NULL);
    rd_w_free(&w);
}

/* ---- proposals ---------------------------------------------------------------------- */

static void proposed(void *data, int status, uint64_t value)
{
    struct rd_records *r = data;
    (void)value;
    r->proposing = false;
    if (status != 0 && status != RD_ENOTLEADER && status != RD_EOUTCOME_UNKNOWN)
        RD_WARN("records", "position_refused", "error=%s", rd_err_name(status));
}

static void propose(struct rd_records *r, bool enabled, uint64_t index)
{
    if (r->proposing || !r->env.log.is_leader(r->env.log.data))
        return;
    struct rd_cmd cmd = {.type = RD_CMD_RECORDS_EXPORT, .time_ms = rd_fsm_stamp(r->env.fsm)};
    cmd.u.rexport.enabled = enabled ? 1 : 0;
    cmd.u.rexport.index = index;
    cmd.u.rexport.max_retained = enabled ? r->env.cfg->fault_tolerance.records.max_retained
                                         : rd_fsm_export(r->env.fsm)->max_retained;
    r->proposing = true;
    int rv = r->env.log.propose(r->env.log.data, &cmd, proposed, r);
    if (rv != 0) {
        r->proposing = false;
        RD_WARN("records", "position_not_proposed", "error=%s", rd_err_name(rv));
    }
}

/* The state machine learns what PostgreSQL holds, and that export is on
 * with the configured bound. */
static void propose_position(struct rd_records *r)
{
    const struct rd_export_pos *e = rd_fsm_export(r->env.fsm);
    uint64_t want = r->pg_known && r->pg_index > e->index ? r->pg_index : e->index;
    if (!e->enabled || want != e->index ||
        e->max_retained != r->env.cfg->fault_tolerance.records.max_retained)
        propose(r, true, want);
}

/* ---- batches ------------------------------------------------------------------------ */

struct pend {
    uint64_t changed;
    int kind;
    const void *rec;
    size_t rows;
};

static int by_changed(const void *a, const void *b)
{
    const struct pend *x = a, *y = b;
    return x->changed < y->changed ? -1 : x->changed > y->changed;
}

/* The k-th smallest (from 0) `changed` of v[0..n), n > k; reorders v
 * (Hoare's selection). */
static uint64_t kth_changed(struct pend *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint64_t pivot = v[lo + (hi - lo) / 2].changed;
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i].changed < pivot)
                i++;
            while (v[j].changed > pivot)
                j--;
            if (i <= j) {
                struct pend t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j && j < hi)
            hi = j;
        else if (k >= i && i > lo)
            lo = i;
        else
            return v[k].changed;
    }
    return v[k].changed;
}

static int64_t run_time(const struct rd_recovery *run)
{
    return run->completed_at ? run->completed_at : run->started_at;
}

static int64_t backup_time(const struct rd_backup *b)
{
    int64_t t = b->started_at_ms;
    if (b->completed_at_ms > t)
        t = b->completed_at_ms;
    return b->verified_at_ms > t ? b->verified_at_ms : t;
}

/* Calls `fn` for every record changed after `after`; returns false when
 * `fn` did (out of memory). */
static bool each_pending(const struct rd_fsm *f, uint64_t after,
                         bool (*fn)(void *arg, const struct pend *p, int64_t at), void *arg)
{
    for (size_t i = 0; i < f->n_faults; i++) {
        const struct rd_fault *x = f->faults[i];
        if (x->changed > after && !fn(arg, &(struct pend){x->changed, RD_EXPORT_FAULTS, x, 1},
                                      x->resolved_at ? x->resolved_at : x->detected_at))
            return false;
    }
    for (size_t i = 0; i < f->n_recoveries; i++) {
        const struct rd_recovery *run = f->recoveries[i];
        if (run->changed > after &&
            !fn(arg, &(struct pend){run->changed, RD_EXPORT_RECOVERIES, run, run->n_items},
                run_time(run)))
            return false;
    }
    size_t n;
    const struct rd_audit *const *as = rd_fsm_audits(f, &n);
    for (size_t i = rd_fsm_audit_first_after(f, after); i < n; i++)
        if (!fn(arg, &(struct pend){as[i]->changed, RD_EXPORT_AUDITS, as[i], 1}, as[i]->at_ms))
            return false;
    for (size_t i = 0; i < f->n_backups; i++) {
        const struct rd_backup *b = f->backups[i];
        if (b->changed > after &&
            !fn(arg, &(struct pend){b->changed, RD_EXPORT_BACKUPS, b, 1}, backup_time(b)))
            return false;
    }
    return true;
}

struct collect {
    struct pend *v;
    size_t n, cap;
};

static bool collect_one(void *arg, const struct pend *p, int64_t at)
{
    (void)at;
    struct collect *c = arg;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 256;
        struct pend *nv = realloc(c->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return false;
        c->v = nv;
        c->cap = ncap;
    }
    c->v[c->n++] = *p;
    return true;
}

struct lag {
    uint64_t rows;
    int64_t oldest;
};

static bool lag_one(void *arg, const struct pend *p, int64_t at)
{
    struct lag *l = arg;
    l->rows += p->rows;
    if (l->oldest == 0 || at < l->oldest)
        l->oldest = at;
    return true;
}

/* A string for a varchar(max) column (max 0: text): at most `max` bytes
 * cut at a character's start, and bytes that are not UTF-8 as '?' (the
 * state holds what clients sent). */
static json_t *jstr(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (max > 0 && len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
            len--;
    }
    json_t *j = json_stringn(s, len);
    if (j != NULL)
        return j;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    j = json_stringn(copy, len);
    free(copy);
    return j;
}

static json_t *jopt(const char *s, size_t max)
{
    return s == NULL || s[0] == '\0' ? json_null() : jstr(s, max);
}

static json_t *jtime(int64_t ms)
{
    return ms > 0 ? json_integer(ms) : json_null();
}

/* A JSON document as stored; not JSON (a client's free text): as a string. */
static json_t *jdoc(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return json_null();
    json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
    return j != NULL ? j : jstr(s, 0);
}

static json_t *jhex(uint64_t v)
{
    char hex[17];
    snprintf(hex, sizeof(hex), "%016" PRIx64, v);
    return json_string(hex);
}

/* Appends the rows of `p` to `arr`; false when a record cannot be a row
 * (counted in r->skipped) or out of memory (*oom). */
static void add_rows(struct rd_records *r, json_t *arr, const struct pend *p, bool *oom)
{
    json_t *o = NULL;
    switch (p->kind) {
    case RD_EXPORT_FAULTS: {
        const struct rd_fault *x = p->rec;
        if (!rd_uuid_valid(x->id)) {
            r->skipped++;
            return;
        }
        /* The metadata as GET /api/v1/faults/records shows it: with the
         * resolution in it. */
        json_t *meta = jdoc(x->metadata_json);
        if (json_is_object(meta) && x->resolution[0] != '\0')
            json_object_set_new(meta, "resolution", jstr(x->resolution, 0));
        o = json_pack("{s:s,s:o,s:s,s:s,s:o,s:o,s:o,s:s,s:o}", "id", x->id, "node_id",
                      jstr(x->node_id, 255), "fault_type", rd_fault_type_name(x->type),
                      "severity_level", rd_severity_name(x->severity), "detected_at",
                      jtime(x->detected_at), "resolved_at", jtime(x->resolved_at),
                      "recovery_action", jdoc(x->recovery_action_json), "status",
                      rd_fault_status_name(x->status), "metadata", meta);
        break;
    }
    case RD_EXPORT_RECOVERIES: {
        const struct rd_recovery *run = p->rec;
        for (uint32_t i = 0; i < run->n_items; i++) {
            const struct rd_recovery_item *it = &run->items[i];
            if (!rd_uuid_valid(it->id) || !rd_uuid_valid(it->task_id)) {
                r->skipped++;
                continue;
            }
            json_t *row = json_pack(
                "{s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:b,s:o}", "id", it->id, "original_task_id",
                it->task_id, "failed_node_id", jopt(it->failed_node_id, 255), "recovery_node_id",
                jopt(it->recovery_node_id, 255), "recovery_strategy", jopt(it->strategy, 100),
                "started_at", jtime(it->started_at), "completed_at", jtime(it->completed_at),
                "success", it->success != 0, "error_message", jopt(it->error, 0));
            if (row == NULL || json_array_append_new(arr, row) != 0)
                *oom = true;
        }
        return;
    }
    case RD_EXPORT_AUDITS: {
        const struct rd_audit *a = p->rec;
        o = json_pack("{s:I,s:o,s:o,s:s,s:o,s:o,s:o,s:o,s:i,s:o,s:o,s:o}", "id", (json_int_t)a->seq,
                      "at", jtime(a->at_ms), "principal", jstr(a->principal, 255), "role",
                      rd_role_name(a->role), "source", jopt(a->source, 255), "method",
                      jopt(a->method, 50), "action", jstr(a->action, 100), "target",
                      jopt(a->target, 255), "status", (int)a->status, "error", jopt(a->error, 100),
                      "request_id", jopt(a->request_id, 100), "cause", jopt(a->cause, 100));
        break;
    }
    default: {
        const struct rd_backup *b = p->rec;
        bool done = b->status == RD_BACKUP_COMPLETED;
        o = json_pack(
            "{s:o,s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "id", jstr(b->id, 65),
            "target", jstr(b->target, 64), "status", rd_backup_status_name(b->status), "raft_index",
            b->index ? json_integer((json_int_t)b->index) : json_null(), "raft_term",
            b->term ? json_integer((json_int_t)b->term) : json_null(), "size_bytes",
            done ? json_integer((json_int_t)b->size) : json_null(), "checksum",
            done ? jhex(b->checksum) : json_null(), "digest", done ? jhex(b->digest) : json_null(),
            "started_at", jtime(b->started_at_ms), "completed_at", jtime(b->completed_at_ms),
            "verified_at", jtime(b->verified_at_ms), "verify_ok",
            b->verify_ok < 0 ? json_null() : json_boolean(b->verify_ok > 0), "error",
            jopt(b->error, 0));
        break;
    }
    }
    if (o == NULL || json_array_append_new(arr, o) != 0)
        *oom = true;
}

/*
 * The next batch: the records changed after the position, oldest change
 * first, at least batch_size rows and then every record changed at the
 * same index as the last one taken (so the position can move past it).
 * 0: a batch (r->batch_*), RD_ENOTFOUND: nothing waits, RD_ENOMEM.
 */
static int build_batch(struct rd_records *r)
{
    const struct rd_fsm *f = r->env.fsm;
    struct collect c = {NULL, 0, 0};
    if (!each_pending(f, r->pg_index, collect_one, &c)) {
        free(c.v);
        return RD_ENOMEM;
    }
    if (c.n == 0) {
        free(c.v);
        return RD_ENOTFOUND;
    }
    size_t limit = r->env.cfg->fault_tolerance.records.batch_size, rows = 0, take = 0;
    size_t pending = c.n, n = c.n;
    if (n > 2 * limit) {
        /* A backlog: only the records up to the limit-th oldest change
         * (and its ties) can be in this batch; sort those alone, so a batch
         * costs the loop O(backlog), not O(backlog log backlog). */
        uint64_t cut = kth_changed(c.v, n, limit - 1);
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (c.v[i].changed <= cut)
                c.v[m++] = c.v[i];
        n = m;
    }
    qsort(c.v, n, sizeof(*c.v), by_changed);
    while (take < n && (rows < limit || c.v[take].changed == c.v[take - 1].changed))
        rows += c.v[take++].rows;
    json_t *arr[RD_EXPORT_KINDS];
    for (int k = 0; k < RD_EXPORT_KINDS; k++)
        arr[k] = json_array();
    bool oom = false;
    r->skipped = 0;
    for (size_t i = 0; i < take && !oom; i++)
        if (arr[c.v[i].kind] != NULL)
            add_rows(r, arr[c.v[i].kind], &c.v[i], &oom);
    r->batch_to = c.v[take - 1].changed;
    r->batch_more = take < pending;
    free(c.v);
    for (int k = 0; k < RD_EXPORT_KINDS; k++) {
        if (arr[k] == NULL) {
            oom = true;
            continue;
        }
        r->batch_rows[k] = json_array_size(arr[k]);
        if (!oom && r->batch_rows[k] > 0) {
            r->batch_json[k] = json_dumps(arr[k], JSON_COMPACT);
            oom = r->batch_json[k] == NULL;
        }
        json_decref(arr[k]);
    }
    if (oom) {
        free_batch(r);
        return RD_ENOMEM;
    }
    return 0;
}

static void next_batch(struct rd_records *r)
{
    const struct rd_fsm *f = r->env.fsm;
    if (f->n_applied == r->scanned_applied && f->restores == r->scanned_restores) {
        schedule(r, r->env.cfg->fault_tolerance.records.interval_ms);
        return; /* nothing applied since the last look found nothing */
    }
    int rv = build_batch(r);
    if (rv == RD_ENOTFOUND) {
        r->scanned_applied = f->n_applied;
        r->scanned_restores = f->restores;
        schedule(r, r->env.cfg->fault_tolerance.records.interval_ms);
        return;
    }
    if (rv != 0) {
        fail(r, "batch: out of memory");
        return;
    }
    r->phase = RD_RECORDS_EXPORTING;
    r->step = STEP_BEGIN;
    send_query(r, "BEGIN", 0, NULL);
}

/* The next statement of the batch's transaction. */
static void batch_step(struct rd_records *r)
{
    if (r->step == STEP_BEGIN) {
        char from[24], to[24], replica[24], term[24];
        snprintf(from, sizeof(from), "%" PRIu64, r->pg_index);
        snprintf(to, sizeof(to), "%" PRIu64, r->batch_to);
        snprintf(replica, sizeof(replica), "%" PRIu64, r->env.cfg->cluster.replica_id);
        snprintf(term, sizeof(term), "%" PRIu64, r->env.term(r->env.raft));
        const char *v[] = {from, to, replica, term};
        r->step = STEP_ADVANCE;
        send_query(r, "SELECT export_advance($1::bigint, $2::bigint, $3::bigint, $4::bigint)", 4,
                   v);
        return;
    }
    int k = r->step == STEP_ADVANCE ? 0 : r->step - STEP_UPSERT + 1;
    while (k < RD_EXPORT_KINDS && r->batch_json[k] == NULL)
        k++;
    if (k < RD_EXPORT_KINDS) {
        const char *v[] = {r->batch_json[k]};
        r->step = STEP_UPSERT + k;
        send_query(r, upserts[k], 1, v);
        return;
    }
    if (r->step != STEP_COMMIT) {
        r->step = STEP_COMMIT;
        send_query(r, "COMMIT", 0, NULL);
        return;
    }
    /* Committed: PostgreSQL holds every record changed up to batch_to. */
    size_t total = 0;
    for (int kk = 0; kk < RD_EXPORT_KINDS; kk++) {
        r->exported_total[kk] += r->batch_rows[kk];
        total += r->batch_rows[kk];
    }
    if (r->skipped > 0) {
        r->skipped_total += r->skipped;
        RD_WARN("records", "records_skipped",
                "count=%zu detail=\"an id that is not a UUID cannot be a row of the "
                "requirement's tables\"",
                r->skipped);
    }
    RD_DEBUG("records", "exported", "rows=%zu from=%" PRIu64 " to=%" PRIu64, total, r->pg_index,
             r->batch_to);
    r->pg_index = r->batch_to;
    r->batches_total++;
    free_batch(r);
    r->phase = RD_RECORDS_READY;
    propose_position(r);
    if (r->batch_more)
        next_batch(r);
    else
        schedule(r, r->env.cfg->fault_tolerance.records.interval_ms);
}

static void statement_done(struct rd_records *r)
{
    if (r->failed) {
        fail(r, "%s: %s",
             r->phase == RD_RECORDS_MIGRATING                  ? "migrating"
             : r->step == STEP_ADVANCE                         ? "moving the position"
             : r->step >= STEP_UPSERT && r->step < STEP_COMMIT ? tables[r->step - STEP_UPSERT]
                                                               : "transaction",
             r->error);
        return;
    }
    if (r->phase == RD_RECORDS_MIGRATING) {
        if (r->step == STEP_VERSIONS) {
            apply_migrations(r);
            return;
        }
        if (r->rows == NULL || PQntuples(r->rows) != 1) {
            fail(r, "migrating: export_position has no row");
            return;
        }
        r->pg_index = strtoull(PQgetvalue(r->rows, 0, 0), NULL, 10);
        r->pg_known = true;
        r->backoff_ms = 0;
        r->connected_ns = rd_mono_ns();
        r->scanned_applied = UINT64_MAX; /* look at once */
        r->phase = RD_RECORDS_READY;
        const struct rd_export_pos *e = rd_fsm_export(r->env.fsm);
        RD_INFO("records", "connected", "position=%" PRIu64 " state_position=%" PRIu64, r->pg_index,
                e->index);
        r->last_error[0] = '\0';
        if (r->pg_index < e->index)
            RD_WARN("records", "database_behind",
                    "position=%" PRIu64 " state_position=%" PRIu64
                    " detail=\"this database holds less than the cluster exported (another "
                    "database, or one restored from an older copy): records pruned after the "
                    "cluster's position are not in it\"",
                    r->pg_index, e->index);
        propose_position(r);
        next_batch(r);
        return;
    }
    batch_step(r);
}

/* ---- the life cycle -------------------------------------------------------------- */

static void connect_step(struct rd_records *r, PostgresPollingStatusType st)
{
    switch (st) {
    case PGRES_POLLING_OK:
        uv_timer_stop(&r->deadline);
        if (PQsetnonblocking(r->conn, 1) != 0) {
            fail(r, "non-blocking mode: %s", PQerrorMessage(r->conn));
            return;
        }
        start_migrations(r);
        return;
    case PGRES_POLLING_FAILED:
        fail(r, "connect: %s", PQerrorMessage(r->conn));
        return;
    default:
        /* While connecting libpq may close its socket and open another
         * (the next address of a host, the next host) that gets the same
         * descriptor number: a fresh watch each time, never a stale one. */
        unwatch(r);
        watch(r, st == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE);
        return;
    }
}

/* Records the state pruned unexported past the hard bound since the last
 * look: said once, by the leader (every replica counts them alike). */
static void note_lost(struct rd_records *r)
{
    const struct rd_export_pos *e = rd_fsm_export(r->env.fsm);
    for (int k = 0; k < RD_EXPORT_KINDS; k++) {
        if (e->lost[k] > r->lost_seen[k])
            RD_WARN("records", "records_lost",
                    "table=%s count=%" PRIu64 " total=%" PRIu64 " max_retained=%" PRIu64
                    " detail=\"pruned before they were exported: PostgreSQL was away longer "
                    "than the state could hold them\"",
                    tables[k], e->lost[k] - r->lost_seen[k], e->lost[k], e->max_retained);
        r->lost_seen[k] = e->lost[k];
    }
}

static void on_timer(uv_timer_t *t)
{
    struct rd_records *r = t->data;
    if (!r->leading || !r->enabled)
        return;
    note_lost(r);
    if (r->phase == RD_RECORDS_WAIT || r->phase == RD_RECORDS_OFF) {
        start_connect(r);
        return;
    }
    if (r->phase == RD_RECORDS_READY) {
        propose_position(r);
        next_batch(r);
    }
}

static void schedule(struct rd_records *r, uint64_t ms)
{
    uv_timer_start(&r->timer, on_timer, ms, 0);
}

/* Every failure: drop the connection (the server rolls back what was not
 * committed), count, log (once per cause in a row), try again later. */
static void fail(struct rd_records *r, const char *fmt, ...)
{
    char msg[sizeof(r->last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\n')
            *p = *p == '"' ? '\'' : ' ';
    r->errors_total++;
    r->backoff_ms = r->backoff_ms == 0                   ? BACKOFF_MIN_MS
                    : r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                         : r->backoff_ms * 2;
    if (strcmp(msg, r->last_error) != 0)
        RD_WARN("records", "export_failed", "retry_ms=%u error=\"%s\"", r->backoff_ms, msg);
    else
        RD_DEBUG("records", "export_failed", "retry_ms=%u error=\"%s\"", r->backoff_ms, msg);
    snprintf(r->last_error, sizeof(r->last_error), "%s", msg);
    disconnect(r);
    if (r->leading && r->enabled) {
        r->phase = RD_RECORDS_WAIT;
        schedule(r, r->backoff_ms);
    }
}

void rd_records_init(struct rd_records *r, const struct rd_records_env *env)
{
    memset(r, 0, sizeof(*r));
    r->env = *env;
    r->enabled = env->cfg->fault_tolerance.records.enabled;
    r->fd = -1;
    uv_timer_init(env->loop, &r->timer);
    r->timer.data = r;
    uv_timer_init(env->loop, &r->deadline);
    r->deadline.data = r;
}

void rd_records_start(struct rd_records *r)
{
    r->leading = true;
    const struct rd_export_pos *e = rd_fsm_export(r->env.fsm);
    memcpy(r->lost_seen, e->lost, sizeof(r->lost_seen));
    if (!r->enabled) {
        if (e->enabled) /* export was on: the usual bounds again */
            propose(r, false, e->index);
        return;
    }
    /* Records wait for export from now on, PostgreSQL up or not. */
    propose_position(r);
    if (r->phase == RD_RECORDS_OFF)
        start_connect(r);
}

void rd_records_stop(struct rd_records *r)
{
    r->leading = false;
    uv_timer_stop(&r->timer);
    disconnect(r);
}

void rd_records_close(struct rd_records *r)
{
    /* After the loop ended: the handles are never touched again. */
    if (r->conn != NULL)
        PQfinish(r->conn);
    r->conn = NULL;
    PQclear(r->rows);
    r->rows = NULL;
    free_batch(r);
}

/* ---- what it shows -------------------------------------------------------------- */

void rd_records_lag(const struct rd_records *r, int64_t now_ms, uint64_t *rows, double *age_s)
{
    const struct rd_export_pos *e = rd_fsm_export(r->env.fsm);
    uint64_t pos = r->pg_known && r->pg_index > e->index ? r->pg_index : e->index;
    struct lag l = {0, 0};
    if (r->enabled || e->enabled)
        each_pending(r->env.fsm, pos, lag_one, &l);
    *rows = l.rows;
    *age_s = l.oldest > 0 && now_ms > l.oldest ? (double)(now_ms - l.oldest) / 1000.0 : 0;
}

void rd_records_metrics(const struct rd_records *r, struct rd_mbuf *m)
{
    uint64_t rows;
    double age;
    rd_records_lag(r, rd_now_ms(), &rows, &age);
    const struct rd_export_pos *e = rd_fsm_export(r->env.fsm);
    rd_metric_header(m, "recoveryd_records_export_enabled", "gauge",
                     "1 when this replica's config exports records to PostgreSQL.");
    rd_mbuf_printf(m, "recoveryd_records_export_enabled %d\n", r->enabled ? 1 : 0);
    rd_metric_header(m, "recoveryd_records_export_up", "gauge",
                     "1 while this replica (the leader) is connected to PostgreSQL with the "
                     "schema migrated.");
    rd_mbuf_printf(m, "recoveryd_records_export_up %d\n", r->pg_known && r->conn != NULL ? 1 : 0);
    rd_metric_header(m, "recoveryd_records_export_lag_records", "gauge",
                     "Records (rows) changed after the export position: not in PostgreSQL yet.");
    rd_mbuf_printf(m, "recoveryd_records_export_lag_records %" PRIu64 "\n", rows);
    rd_metric_header(m, "recoveryd_records_export_lag_seconds", "gauge",
                     "Age of the oldest change not in PostgreSQL yet (0 when none).");
    rd_mbuf_printf(m, "recoveryd_records_export_lag_seconds %.3f\n", age);
    rd_metric_header(m, "recoveryd_records_exported_total", "counter",
                     "Rows this replica upserted into PostgreSQL as leader, by table.");
    for (int k = 0; k < RD_EXPORT_KINDS; k++)
        rd_mbuf_printf(m, "recoveryd_records_exported_total{table=\"%s\"} %" PRIu64 "\n", tables[k],
                       r->exported_total[k]);
    rd_metric_header(m, "recoveryd_records_export_errors_total", "counter",
                     "Failed connections, migrations and export transactions (this replica).");
    rd_mbuf_printf(m, "recoveryd_records_export_errors_total %" PRIu64 "\n", r->errors_total);
    rd_metric_header(m, "recoveryd_records_export_position", "gauge",
                     "The raft index every record changed up to is exported (the state's).");
    rd_mbuf_printf(m, "recoveryd_records_export_position %" PRIu64 "\n", e->index);
    rd_metric_header(m, "recoveryd_records_export_lost_total", "counter",
                     "Records pruned past the hard bound (max_retained) before they were "
                     "exported, by table (state: the same on every replica).");
    for (int k = 0; k < RD_EXPORT_KINDS; k++)
        rd_mbuf_printf(m, "recoveryd_records_export_lost_total{table=\"%s\"} %" PRIu64 "\n",
                       tables[k], e->lost[k]);
}
