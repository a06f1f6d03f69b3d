/*
 * Records in PostgreSQL (docs/records.md): the leader exports fault records,
 * task_recovery records, audit records and backup records to PostgreSQL
 * through libpq in non-blocking mode on the loop (PQconnectStartParams and
 * PQconnectPoll, PQsendQuery / PQsendQueryParams, PQflush and
 * PQconsumeInput driven by a uv_poll on PQsocket, a timer bounding each
 * step), so a slow, hung or absent server never holds the loop.
 *
 * At each connection the schema's migrations (sql/migrations/, built in:
 * migrations.h) that the database lacks are applied in one transaction with
 * their schema_migrations rows, under an advisory lock, and the export
 * position (the raft index exported up to) is read. Then, as long as this
 * replica leads, batches: one transaction moves the position from where it
 * was read to the newest change in the batch (export_advance(), which
 * refuses when another leader moved it first) and upserts the batch's rows
 * by id; once PostgreSQL committed, RD_CMD_RECORDS_EXPORT tells every
 * replica, whose state machine then lets the exported records be pruned
 * (fsm/export.h). Every failure drops the connection (the server rolls back
 * what was not committed) and the next try reconnects and reads the
 * position again, with a backoff: no gap, no duplicate.
 *
 * Loop thread only.
 */
#ifndef RD_RECORDS_H
#define RD_RECORDS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "fsm/fsm.h"
#include "metrics/metrics.h"
#include "replica/replica.h"

struct rd_records_env {
    uv_loop_t *loop;
    const struct rd_config *cfg;
    struct rd_fsm *fsm;     /* read only: the records */
    struct rd_proposer log; /* leadership, the way into the log */
    uint64_t (*term)(void *data);
    void *raft;
};

enum rd_records_phase {
    RD_RECORDS_OFF = 0,    /* not leading, or export is off */
    RD_RECORDS_WAIT,       /* after a failure, until the next try */
    RD_RECORDS_CONNECTING, /* PQconnectPoll */
    RD_RECORDS_MIGRATING,  /* reading and applying the migrations, reading the position */
    RD_RECORDS_READY,      /* connected, between two batches */
    RD_RECORDS_EXPORTING,  /* a batch's transaction in flight */
};

struct rd_records {
    struct rd_records_env env;
    bool enabled; /* fault_tolerance.records.export */
    bool leading;
    int phase;
    PGconn *conn;
    /* The host's name looked up on the thread pool before libpq connects
     * (malloc'd; one given up on frees itself). */
    uv_getaddrinfo_t *resolving;
    char host[256];
    bool warned_hosts;
    uv_poll_t *poll; /* on PQsocket(conn) (malloc'd: a closing one frees itself) */
    int fd;
    uv_timer_t timer;    /* the next try, the next batch */
    uv_timer_t deadline; /* the connection or the statement in flight */
    /* The statement in flight. */
    int step;
    bool in_flight; /* sent, its results not all read */
    bool failed;
    char error[512];
    PGresult *rows; /* its last result with rows */
    /* Where PostgreSQL stands: known once migrated on this connection. */
    bool pg_known;
    uint64_t pg_index;
    /* The batch in flight. */
    uint64_t batch_to;
    size_t batch_rows[4];
    char *batch_json[4];
    bool batch_more;          /* records beyond the batch wait */
    size_t skipped;           /* records that cannot be rows (an id that is no UUID) */
    uint64_t scanned_applied; /* the state last found with nothing to export */
    uint64_t scanned_restores;
    bool proposing;
    unsigned backoff_ms;
    uint64_t connected_ns;
    uint64_t lost_seen[4]; /* the state's lost counts this leader already logged */
    /* This replica's counts (as leader). */
    uint64_t exported_total[4]; /* rows, by table */
    uint64_t errors_total;
    uint64_t batches_total;
    uint64_t skipped_total;
    char last_error[512];
};

void rd_records_init(struct rd_records *r, const struct rd_records_env *env);
/* This replica became leader / stopped being leader (or shuts down). */
void rd_records_start(struct rd_records *r);
void rd_records_stop(struct rd_records *r);
/* Frees what is left (after the loop ended). */
void rd_records_close(struct rd_records *r);

/* The table a kind of record goes to (enum rd_export_kind). */
const char *rd_records_table(int kind);

/*
 * What waits for export as this replica knows it (the leader: from
 * PostgreSQL's position; a follower: from the state's): rows (a recovery
 * run counts its task_recovery records), and the age in seconds of the
 * oldest change among them (0 when none), at `now_ms`.
 */
void rd_records_lag(const struct rd_records *r, int64_t now_ms, uint64_t *rows, double *age_s);

void rd_records_metrics(const struct rd_records *r, struct rd_mbuf *m);

#endif
