/*
 * postgres: a backup target in a PostgreSQL table, through libpq.
 *
 * Each object is one row of TABLE (default recoveryd_backup_objects,
 * created at the first connection when missing):
 *
 *   name text primary key, data bytea not null, size bigint not null,
 *   updated_at timestamptz not null default now()
 *
 * write is one INSERT ... ON CONFLICT (name) DO UPDATE (one statement, so
 * one transaction: a reader sees the old row or the new one), read a SELECT
 * (no row: RD_ENOTFOUND), remove a DELETE, list a SELECT of name and size
 * with the prefix as a LIKE pattern (its wildcards escaped), ordered COLLATE
 * "C" so that the order is bytewise whatever the database's collation. The
 * bytes travel as binary parameters and results. A bytea holds at most 1 GiB.
 *
 * conninfo is a libpq connection string or URI; empty, libpq takes
 * everything from its PG* environment variables (PGHOST, PGPORT, PGUSER,
 * PGDATABASE, PGPASSWORD, ...) and ~/.pgpass. application_name defaults to
 * recoveryd and connect_timeout to 10 s; conninfo overrides both.
 *
 * Threads: the statements run on the pool (backup_target.h) over one
 * connection per instance, taken under a mutex (one statement at a time; a
 * backup target is not a hot path). A connection found broken is closed and
 * made again, and the statement retried once (each is idempotent).
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* strdup, also when built outside this tree */
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "../common/backup_target.h"
#include "recoveryd/plugin.h"

#define BYTEA_MAX ((size_t)1 << 30) /* PostgreSQL's limit on one field */

struct pg {
    struct bk_target base; /* first: the ops get this state */
    char *conninfo;
    char *table;  /* as configured: NAME or SCHEMA.NAME */
    char *qtable; /* quoted for SQL: "NAME" or "SCHEMA"."NAME" */
    char *where;  /* the server, for details: "host=... port=... dbname=..." */
    uint64_t timeout_ms;
    pthread_mutex_t lock; /* guards conn (pool threads) */
    bool lock_inited;
    PGconn *conn;
};

static const struct rd_plugin_key keys[] = {
    {"conninfo", RD_KEY_STRING, "", 0, 0,
     "libpq connection string or URI; empty: libpq's PG* environment variables"},
    {"table", RD_KEY_STRING, "recoveryd_backup_objects", 0, 0,
     "table the objects are rows of (NAME or SCHEMA.NAME), created when missing"},
    {"timeout", RD_KEY_DURATION, "10m", 0, 86400000,
     "statement_timeout of the plugin's statements (0ms = none)"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* ---- connection (pool threads, under the lock) --------------------------------------- */

/* The SQLSTATE of `res` mapped to an RD_E* status. */
static int sqlstate_status(const PGresult *res)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!st)
        return RD_EIO;
    if (strcmp(st, "53100") == 0) /* disk_full */
        return RD_ENOSPACE;
    if (strcmp(st, "53200") == 0) /* out_of_memory */
        return RD_ENOMEM;
    if (strcmp(st, "57014") == 0) /* query_canceled: statement_timeout */
        return RD_ETIMEOUT;
    if (strcmp(st, "54000") == 0) /* program_limit_exceeded */
        return RD_ETOOLARGE;
    return RD_EIO;
}

/* "ERROR 42501: permission denied for table x" of a failed result, or the
 * connection's message. */
static void describe(const struct pg *p, const PGresult *res, char *out, size_t len)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *sev = res ? PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED) : NULL;
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (primary)
        snprintf(out, len, "%s %s: %s", sev ? sev : "ERROR", st ? st : "?", primary);
    else
        snprintf(out, len, "%s", p->conn ? PQerrorMessage(p->conn) : "no connection");
}

static PGresult *exec0(struct pg *p, const char *sql)
{
    return PQexecParams(p->conn, sql, 0, NULL, NULL, NULL, NULL, 0);
}

/* The server's notices ("relation ... already exists, skipping") are not
 * for recoveryd's stderr. */
static void no_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* True when the table exists. Asked first: CREATE TABLE IF NOT EXISTS needs
 * the right to create in the schema even when the table is there, which a
 * role given only rights on a table made for it does not have. */
static bool table_exists(struct pg *p)
{
    const char *values[1] = {p->qtable};
    PGresult *res =
        PQexecParams(p->conn, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, values, NULL, NULL, 0);
    bool yes = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
               strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return yes;
}

/* Fails `op` with what `res` (or the connection) says, and drops the
 * connection. Returns -1. */
static int connect_failed(struct pg *p, struct bk_op *op, PGresult *res, const char *step)
{
    char why[512];
    describe(p, res, why, sizeof why);
    bk_fail(op, res ? sqlstate_status(res) : RD_EIO, "%s %s: %s on %s: %s", bk_kind_name(op->kind),
            op->name, step, p->where, why);
    PQclear(res);
    PQfinish(p->conn);
    p->conn = NULL;
    return -1;
}

/* Makes the connection when there is none (or it broke): connects, sets the
 * statement timeout, creates the table when missing. 0 or a failure on `op`. */
static int connect_db(struct pg *p, struct bk_op *op)
{
    if (p->conn && PQstatus(p->conn) == CONNECTION_OK)
        return 0;
    if (p->conn)
        PQfinish(p->conn);
    /* Defaults first: the expanded conninfo (dbname) overrides them. */
    const char *k[] = {"application_name", "connect_timeout", "dbname", NULL};
    const char *v[] = {"recoveryd", "10", p->conninfo, NULL};
    p->conn = PQconnectdbParams(k, v, 1);
    if (!p->conn) {
        bk_fail(op, RD_ENOMEM, "%s %s: connect to %s: out of memory", bk_kind_name(op->kind),
                op->name, p->where);
        return -1;
    }
    if (PQstatus(p->conn) != CONNECTION_OK) {
        bk_fail(op, RD_EIO, "%s %s: connect to %s: %s", bk_kind_name(op->kind), op->name, p->where,
                PQerrorMessage(p->conn));
        PQfinish(p->conn);
        p->conn = NULL;
        return -1;
    }
    PQsetNoticeProcessor(p->conn, no_notices, NULL);
    char sql[1024];
    snprintf(sql, sizeof sql, "SET statement_timeout = %llu", (unsigned long long)p->timeout_ms);
    PGresult *res = exec0(p, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return connect_failed(p, op, res, "set statement_timeout");
    PQclear(res);
    if (table_exists(p))
        return 0;
    snprintf(sql, sizeof sql,
             "CREATE TABLE IF NOT EXISTS %s (name text PRIMARY KEY, data bytea NOT NULL, "
             "size bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
             p->qtable);
    res = exec0(p, sql);
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        return 0;
    }
    /* Two replicas creating it at once: one of them may see a unique
     * violation on the catalog; the table is there all the same. */
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (st && (strcmp(st, "23505") == 0 || strcmp(st, "42P07") == 0) && table_exists(p)) {
        PQclear(res);
        return 0;
    }
    char step[300];
    snprintf(step, sizeof step, "prepare table %s", p->table);
    return connect_failed(p, op, res, step);
}

/*
 * Runs one statement with parameters, connecting first when needed and once
 * more when the connection turns out to be broken. Returns the result
 * (status `want`), or NULL with the failure set on `op`.
 */
static PGresult *run(struct pg *p, struct bk_op *op, const char *sql, int n,
                     const char *const *values, const int *lengths, const int *formats,
                     int result_format, ExecStatusType want)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (connect_db(p, op) != 0)
            return NULL;
        PGresult *res =
            PQexecParams(p->conn, sql, n, NULL, values, lengths, formats, result_format);
        if (PQresultStatus(res) == want)
            return res;
        if (PQstatus(p->conn) == CONNECTION_BAD && attempt == 0) {
            /* The server went away (restart, failover, idle timeout): again,
             * on a new connection. */
            PQclear(res);
            PQfinish(p->conn);
            p->conn = NULL;
            continue;
        }
        char why[512];
        describe(p, res, why, sizeof why);
        bk_fail(op, sqlstate_status(res), "%s %s: table %s on %s: %s", bk_kind_name(op->kind),
                op->name, p->table, p->where, why);
        PQclear(res);
        return NULL;
    }
    return NULL;
}

/* ---- the operations (pool threads) ---------------------------------------------------- */

static void do_write(struct pg *p, struct bk_op *op)
{
    if (op->len >= BYTEA_MAX) {
        bk_fail(op, RD_ETOOLARGE, "write %s: %zu bytes, a bytea holds less than 1 GiB", op->name,
                op->len);
        return;
    }
    char sql[512], size[32];
    snprintf(sql, sizeof sql,
             "INSERT INTO %s (name, data, size, updated_at) VALUES ($1, $2, $3, now()) "
             "ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data, size = EXCLUDED.size, "
             "updated_at = EXCLUDED.updated_at",
             p->qtable);
    snprintf(size, sizeof size, "%zu", op->len);
    const char *values[3] = {op->name, op->buf, size};
    int lengths[3] = {0, (int)op->len, 0};
    int formats[3] = {0, 1, 0}; /* the bytes as binary */
    PGresult *res = run(p, op, sql, 3, values, lengths, formats, 0, PGRES_COMMAND_OK);
    PQclear(res);
}

static void free_result(void *extra)
{
    PQclear(extra);
}

static void do_read(struct pg *p, struct bk_op *op)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT data FROM %s WHERE name = $1", p->qtable);
    const char *values[1] = {op->name};
    PGresult *res = run(p, op, sql, 1, values, NULL, NULL, 1, PGRES_TUPLES_OK);
    if (!res)
        return;
    if (PQntuples(res) == 0) {
        bk_fail(op, RD_ENOTFOUND, "read %s: table %s on %s: no such object", op->name, p->table,
                p->where);
        PQclear(res);
        return;
    }
    /* The bytes stay in the result until the callback returned. */
    op->extra = res;
    op->buf = PQgetvalue(res, 0, 0);
    op->len = (size_t)PQgetlength(res, 0, 0);
}

static void do_remove(struct pg *p, struct bk_op *op)
{
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE name = $1", p->qtable);
    const char *values[1] = {op->name};
    PQclear(run(p, op, sql, 1, values, NULL, NULL, 0, PGRES_COMMAND_OK));
}

static void do_list(struct pg *p, struct bk_op *op)
{
    /* The prefix as a LIKE pattern: its '_' (and '%', '\', never in a name)
     * escaped with the default escape character, '\'. */
    char pattern[2 * BK_NAME_MAX + 2];
    size_t o = 0;
    for (const char *c = op->name; *c; c++) {
        if (*c == '%' || *c == '_' || *c == '\\')
            pattern[o++] = '\\';
        pattern[o++] = *c;
    }
    pattern[o++] = '%';
    pattern[o] = '\0';
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT name, size FROM %s WHERE name LIKE $1 ORDER BY name COLLATE \"C\"", p->qtable);
    const char *values[1] = {pattern};
    PGresult *res = run(p, op, sql, 1, values, NULL, NULL, 0, PGRES_TUPLES_OK);
    if (!res)
        return;
    int n = PQntuples(res);
    char why[8];
    for (int i = 0; i < n; i++) {
        const char *name = PQgetvalue(res, i, 0);
        if (!bk_name_valid(name, why, sizeof why))
            continue; /* a row someone else put there, no object name of ours */
        if (bk_list_add(&op->list, name, strlen(name), strtoull(PQgetvalue(res, i, 1), NULL, 10)) !=
            0) {
            bk_fail(op, RD_ENOMEM, "list %s: out of memory after %zu objects", op->name,
                    op->list.n);
            bk_list_free(&op->list);
            break;
        }
    }
    PQclear(res);
}

static void perform(struct bk_target *t, struct bk_op *op)
{
    struct pg *p = (struct pg *)t;
    pthread_mutex_lock(&p->lock);
    switch (op->kind) {
    case BK_WRITE:
        do_write(p, op);
        break;
    case BK_READ:
        do_read(p, op);
        break;
    case BK_REMOVE:
        do_remove(p, op);
        break;
    case BK_LIST:
        do_list(p, op);
        break;
    }
    pthread_mutex_unlock(&p->lock);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

/* [a-z_][a-z0-9_]{0,62}: an identifier that needs no quoting (and is
 * quoted all the same). */
static bool ident_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* "host=... port=... dbname=... user=..." of conninfo (environment and
 * defaults where it says nothing), without the password. */
static char *describe_conninfo(const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    PQfreemem(err);
    const char *host = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        const char *v = o->val && o->val[0] ? o->val : NULL;
        if (strcmp(o->keyword, "host") == 0 || (strcmp(o->keyword, "hostaddr") == 0 && !host))
            host = v ? v : host;
        else if (strcmp(o->keyword, "port") == 0)
            port = v;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = v;
        else if (strcmp(o->keyword, "user") == 0)
            user = v;
    }
    if (!host)
        host = getenv("PGHOST");
    if (!port)
        port = getenv("PGPORT");
    if (!db)
        db = getenv("PGDATABASE");
    if (!user)
        user = getenv("PGUSER");
    char buf[1024];
    snprintf(buf, sizeof buf, "postgres host=%s port=%s dbname=%s user=%s",
             host ? host : "(default)", port ? port : "(default)", db ? db : "(default)",
             user ? user : "(default)");
    PQconninfoFree(opts);
    /* "postgres " is the first word of every detail already. */
    return strdup(buf + strlen("postgres "));
}

static void pg_free(struct pg *p)
{
    if (p->conn)
        PQfinish(p->conn);
    p->conn = NULL;
    if (p->lock_inited)
        pthread_mutex_destroy(&p->lock);
    p->lock_inited = false;
    free(p->conninfo);
    free(p->table);
    free(p->qtable);
    free(p->where);
    p->conninfo = p->table = p->qtable = p->where = NULL;
}

static int pg_init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    struct pg *p = state;
    bk_target_init(&p->base, inst, host, "postgres");
    p->base.perform = perform;
    p->base.free_extra = free_result;
    const char *conninfo = host->config_string(inst, "conninfo");
    const char *table = host->config_string(inst, "table");
    if (!conninfo)
        conninfo = "";
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (!opts) {
        host->set_error(inst, "conninfo: not a libpq connection string: %s",
                        err ? err : "out of memory");
        PQfreemem(err);
        return RD_ECONFIG;
    }
    PQconninfoFree(opts);
    const char *dot = table ? strchr(table, '.') : NULL;
    bool ok =
        table && (dot ? ident_ok(table, (size_t)(dot - table)) && ident_ok(dot + 1, strlen(dot + 1))
                      : ident_ok(table, strlen(table)));
    if (!ok) {
        host->set_error(inst,
                        "table: expected NAME or SCHEMA.NAME of [a-z_][a-z0-9_]* (at most 63 "
                        "each), got '%s'",
                        table ? table : "");
        return RD_ECONFIG;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        host->set_error(inst, "pthread_mutex_init failed");
        return RD_EIO;
    }
    p->lock_inited = true;
    p->conninfo = strdup(conninfo);
    p->table = strdup(table);
    size_t qn = strlen(table) + 8;
    p->qtable = malloc(qn);
    p->where = describe_conninfo(conninfo);
    if (!p->conninfo || !p->table || !p->qtable || !p->where) {
        pg_free(p);
        host->set_error(inst, "out of memory");
        return RD_ENOMEM;
    }
    if (dot)
        snprintf(p->qtable, qn, "\"%.*s\".\"%s\"", (int)(dot - table), table, dot + 1);
    else
        snprintf(p->qtable, qn, "\"%s\"", table);
    p->timeout_ms = host->config_uint(inst, "timeout");
    return 0;
}

static int pg_start(void *state)
{
    struct pg *p = state;
    p->base.host->log(p->base.inst, RD_PLOG_INFO, "backup_target", "table=%s %s", p->table,
                      p->where);
    return 0;
}

static void pg_stop(void *state, void (*done)(rd_plugin_instance_t *inst))
{
    struct pg *p = state;
    bk_target_stop(&p->base, done);
}

static void pg_destroy(void *state)
{
    pg_free(state);
}

static const struct rd_backup_ops ops = {
    .version = RD_BACKUP_OPS_VERSION,
    .size = sizeof(struct rd_backup_ops),
    .write = bk_write,
    .read = bk_read,
    .remove = bk_remove,
    .list = bk_list,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = "postgres",
    .version = "1.0.0",
    .kind = RD_PLUGIN_BACKUP,
    .description = "keeps backup objects as rows of a PostgreSQL table (one upsert per object)",
    .keys = keys,
    .state_size = sizeof(struct pg),
    .init = pg_init,
    .start = pg_start,
    .stop = pg_stop,
    .destroy = pg_destroy,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}
