/*
 * Backups (issue 11; docs/backup.md): the leader takes a consistent image of
 * the state machine at a known raft index and term (the bytes of
 * rd_fsm_snapshot()), writes it with a manifest to each backup target (a
 * backup plugin instance: file, s3, postgres), and records every backup
 * through the log (RD_CMD_BACKUP), so every replica and every new leader
 * knows the history. Scheduled every fault_tolerance.backup.interval and on
 * demand, kept by retention_period and keep_min, verified on demand by
 * reading it back. Continuous archiving ships every applied command to the
 * archive target within archive.max_delay (archive.c). `recoveryd restore`
 * builds a data directory from a backup and the archive (restore.c).
 *
 * Loop-thread only; compression, checksums and decoding run on the libuv
 * thread pool.
 */
#ifndef RD_BACKUP_H
#define RD_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "common/util.h"
#include "config/config.h"
#include "fsm/fsm.h"
#include "metrics/metrics.h"
#include "recoveryd/plugin.h"
#include "replica/replica.h"

struct rd_plugin_host;

/* ---- object layout (docs/backup.md) --------------------------------------- */

#define RD_BACKUP_MANIFEST_VERSION 1
#define RD_BACKUP_PREFIX           "backups/"
#define RD_ARCHIVE_PREFIX          "archive/"
#define RD_BACKUP_NAME_MAX         256

/* "backups/<id>.img" and "backups/<id>.json". */
void rd_backup_image_name(const char *id, char out[RD_BACKUP_NAME_MAX]);
void rd_backup_manifest_name(const char *id, char out[RD_BACKUP_NAME_MAX]);

/* What backups/<id>.json says: written after the image, so its presence
 * means the backup is complete. */
struct rd_backup_manifest {
    unsigned manifest_version;
    char backup_id[65];
    char cluster_id[65];
    uint64_t index; /* raft index the image was taken at */
    uint64_t term;  /* the leader's term then */
    int64_t created_at_ms;
    char engine_version[32];
    unsigned snapshot_format;
    uint64_t size;     /* bytes of the image */
    uint64_t checksum; /* FNV-1a 64 of the image */
    uint64_t digest;   /* rd_fsm_digest of the state in it */
    char image[RD_BACKUP_NAME_MAX];
};

/* The manifest as JSON (malloc'd, NUL-terminated; the caller frees it), or
 * NULL on ENOMEM. */
char *rd_backup_manifest_encode(const struct rd_backup_manifest *m);

/* Parses a manifest; 0, or RD_EPARSE / RD_EUNSUPPORTED with what is wrong in
 * `err` ("manifest: field index: expected an integer"). */
int rd_backup_manifest_decode(const void *buf, size_t len, struct rd_backup_manifest *m, char *err,
                              size_t errlen);

/* 16 lower-case hex digits, and back (0 or RD_EPARSE). */
void rd_backup_hex16(uint64_t v, char out[17]);
int rd_backup_parse_hex16(const char *s, uint64_t *v);

/* The snapshot format in an image's header, 0 when it has none. */
unsigned rd_backup_image_format(const void *img, size_t len);

/* ---- retention (retention.c) ---------------------------------------------- */

enum rd_backup_keep {
    RD_BACKUP_KEEP = 0, /* leave it */
    RD_BACKUP_DROP,     /* delete its objects, then its record (REMOVE) */
    RD_BACKUP_CLEAN,    /* a failed backup: delete its objects, keep the record a while */
};

/*
 * What retention does with each of `n` records (in the order they began,
 * oldest first) at `now_ms`, into out[i]: per target, the `keep_min` newest
 * completed backups stay whatever their age; an older completed one goes
 * when it began more than `retention_ms` ago. A failed one's objects go at
 * once, its record after `retention_ms`. Running ones stay.
 */
void rd_backup_retention(const struct rd_backup *const *recs, size_t n, int64_t now_ms,
                         uint64_t retention_ms, unsigned keep_min, uint8_t *out);

/* ---- targets given as URLs (url.c) ------------------------------------------ */

#define RD_BACKUP_URL_MAX_KEYS 12

/*
 * `recoveryd restore --from URL`: which backup plugin and which instance
 * config the URL stands for.
 *   file:///srv/backups                       -> file     {dir: /srv/backups}
 *   s3://bucket/some/prefix?endpoint=http://h:9000&region=eu-west-1
 *                                             -> s3       {bucket, prefix "some/prefix/",
 *                                                          endpoint, region, ...}
 *   postgres://user@host/db?table=backups     -> postgres {conninfo: the URL without table,
 *   postgresql://...                                        table}
 */
struct rd_backup_url {
    char plugin[64];
    unsigned n;
    struct {
        char key[64];
        char value[RD_CFG_STR];
    } kv[RD_BACKUP_URL_MAX_KEYS];
};

/* 0, or RD_EINVAL with what is wrong (and what is expected) in `err`. */
int rd_backup_url_parse(const char *url, struct rd_backup_url *out, char *err, size_t errlen);

/* ---- the engine's module -------------------------------------------------------- */

/* What the module reads and acts through, given at init; all outlive it. */
struct rd_backup_env {
    uv_loop_t *loop;
    const struct rd_config *cfg;
    struct rd_fsm *fsm;             /* read only: records, state to image */
    struct rd_proposer log;         /* leadership, the way into the log */
    struct rd_plugin_host *plugins; /* the backup targets, by instance name */
    /* This replica's raft position. */
    uint64_t (*applied_index)(void *data);
    uint64_t (*term)(void *data);
    void *raft;
    const bool *shutting_down;
};

struct rd_backup_target {
    char name[64];
    const struct rd_backup_ops *ops; /* NULL when the instance is not running */
    void *state;
};

struct rd_backup_run;
struct rd_backup_check;
struct rd_backup_ckpt_read;
struct rd_archiver;

#define RD_BACKUP_MAX_QUEUE  8 /* triggers waiting for the run in flight */
#define RD_BACKUP_MAX_VERIFY 2 /* verifications at once */

struct rd_backups {
    struct rd_backup_env env;
    struct rd_backup_target targets[RD_CFG_MAX_PLUGINS];
    unsigned n_targets;
    int archive_target; /* index in targets, -1 when archiving is off */
    bool bound;
    bool leading;
    uv_timer_t timer; /* schedule, retention, stuck records, cluster id */
    uint64_t leader_since_ms;
    /* The next scheduled backup, on the monotonic clock (0: to compute),
     * and the newest record's start it was computed from. */
    uint64_t due_ns;
    int64_t due_from_ms;
    struct rd_backup_run *run; /* the run in flight (possibly abandoned), or NULL */
    unsigned n_runs_alive;     /* runs not freed yet (an abandoned one and a new one) */
    struct {
        unsigned n_ids;
        char ids[RD_CFG_MAX_PLUGINS][RD_UUID_STRLEN];
        char targets[RD_CFG_MAX_PLUGINS][64];
    } queue[RD_BACKUP_MAX_QUEUE];
    unsigned n_queue;
    unsigned n_verify;      /* verifications in flight */
    unsigned work_inflight; /* thread-pool jobs (pack, verify decode) not back yet */
    bool retention_busy;
    bool resolving; /* reading a running record's manifest */
    bool cluster_id_inflight;
    char resolved[16][RD_UUID_STRLEN]; /* running records this leadership already acted on */
    unsigned n_resolved;
    char cleaned[64][RD_UUID_STRLEN]; /* failed backups whose objects this leadership deleted */
    unsigned n_cleaned;
    struct rd_archiver *archiver; /* continuous archiving (archive.c), NULL when off */
    /* Checkpoints read back for repairs (checkpoints.c): one image at a
     * time, the others wait in order. */
    struct rd_backup_ckpt_read *ckpt_reading, *ckpt_head, *ckpt_tail;
    /* This replica's own counts (as leader). */
    uint64_t completed_total;
    uint64_t failed_total;
    uint64_t verified_ok_total;
    uint64_t verified_bad_total;
    uint64_t removed_total;
    uint64_t last_run_ms;  /* duration of the last run this replica ended */
    uint64_t last_fork_us; /* how long the newest image's fork held the loop */
    char errmsg[512];
};

/* Prepares the module (no I/O). 0 or RD_ENOMEM. */
int rd_backup_init(struct rd_backups *b, const struct rd_backup_env *env);

/*
 * After the plugins loaded: resolves the targets (fault_tolerance.backup.
 * targets, or every backup instance) and the archive target. 0, or
 * RD_ECONFIG with the reason in `err` (a listed instance that is not a
 * backup plugin).
 */
int rd_backup_bind(struct rd_backups *b, char *err, size_t errlen);

/* This replica became leader / stopped being leader (or shuts down). */
void rd_backup_start(struct rd_backups *b);
void rd_backup_stop(struct rd_backups *b);

/* True while thread-pool work of the module has not come back: the engine
 * waits for it before it ends the loop. */
bool rd_backup_busy(const struct rd_backups *b);

/* Frees what is left (after the loop ended). */
void rd_backup_close(struct rd_backups *b);

/* Configured targets (0: backups are off). */
static inline unsigned rd_backup_target_count(const struct rd_backups *b)
{
    return b->n_targets;
}

/* What a trigger started: one backup per target. */
struct rd_backup_started {
    unsigned n;
    char ids[RD_CFG_MAX_PLUGINS][RD_UUID_STRLEN];
    char targets[RD_CFG_MAX_PLUGINS][64];
    double estimated_s; /* a rough estimate of the run's duration */
    bool queued;        /* behind the run in flight */
};

/*
 * Starts a backup now (POST /api/v1/backup/trigger) on `target`, or on every
 * target when it is NULL or "": leader only. Returns 0 with `out` filled, or
 * RD_ENOTLEADER, RD_ECONFLICT (no target is configured), RD_ENOTFOUND (no
 * such target), RD_EBUSY (too many triggers wait already), RD_ESHUTDOWN,
 * with the reason in b->errmsg.
 */
int rd_backup_trigger(struct rd_backups *b, const char *target, struct rd_backup_started *out);

/*
 * The end of a verification: status 0 with the record as it is after the
 * VERIFY command (verified_at, verify_ok, error), or RD_E* (the outcome could
 * not be recorded) with `detail`.
 */
typedef void (*rd_backup_verify_cb)(void *data, int status, const struct rd_backup *rec,
                                    const char *detail);

/*
 * POST /api/v1/backups/{id}/verify: reads the manifest and the image back
 * from the backup's target, checks size and checksum, decompresses and
 * decodes the image into a scratch state machine, recomputes its digest in
 * full and compares everything with the manifest and the record; records
 * the outcome (VERIFY). Returns 0 and `cb` fires once, later; or at once
 * RD_ENOTFOUND (no such backup), RD_ECONFLICT (not completed, or its target
 * is not configured here), RD_EBUSY, RD_ENOTLEADER, with b->errmsg.
 */
int rd_backup_verify(struct rd_backups *b, const char *id, rd_backup_verify_cb cb, void *data);

/*
 * The fsm's entry observer (every replica): command `buf` (`len` bytes,
 * valid during the call) was applied at raft `index` with leader time
 * `time_ms`. Continuous archiving keeps it until it is archived.
 */
void rd_backup_entry(struct rd_backups *b, uint64_t index, int64_t time_ms, const void *buf,
                     size_t len);

/*
 * A task's checkpoints as completed backup `id` holds them (oldest first;
 * valid during the call only; n 0 when the backup has no such task or it
 * had none), or status RD_E* with `detail` saying why they could not be read.
 */
typedef void (*rd_backup_ckpts_cb)(void *data, int status, const struct rd_checkpoint *ckpts,
                                   unsigned n, const char *detail);

/*
 * For the repair of a checkpoint that failed its checksum (recover/repair.c):
 * reads backup `id`'s image back from its target, checks its size and
 * checksum against the record, decodes it into a scratch state machine on
 * the thread pool and copies task `task_id`'s checkpoints out of it there.
 * One image is decoded at a time; later calls wait their turn. Returns 0
 * and `cb` fires once, later, on the loop; or at once RD_ENOTFOUND (no such
 * backup), RD_ECONFLICT (not completed, or its target is not configured
 * here), RD_ENOMEM, with b->errmsg.
 */
int rd_backup_task_checkpoints(struct rd_backups *b, const char *id, const char *task_id,
                               rd_backup_ckpts_cb cb, void *data);

/* Prometheus lines: last success, duration, size, counts, archive lag. */
void rd_backup_metrics(struct rd_backups *b, struct rd_mbuf *m);

/* ---- restore (restore.c) ---------------------------------------------------------- */

struct rd_restore_opts {
    const char *from;      /* target URL */
    const char *backup_id; /* NULL: the newest complete backup */
    uint64_t to_index;     /* 0: none */
    int64_t to_time_ms;    /* 0: none */
    bool has_to_time;
    const char *data_dir;
    bool no_archive;         /* the backup alone, without the archive after it */
    const char *plugins_dir; /* where file.so, s3.so, postgres.so are */
    uint64_t replica_id;
    const char *raft_address; /* this replica's, when no peers are given */
    unsigned n_peers;
    struct rd_cfg_peer peers[RD_CFG_MAX_PEERS]; /* the new cluster's voters (this one included) */
};

/*
 * `recoveryd restore`: fetches a backup (and the archive after it) from the
 * target the URL names, verifies it, and writes a raft data directory in
 * opts->data_dir for a new cluster whose voters are the peers (or this
 * replica alone) and whose state is the backup's (plus the archived
 * commands up to to_index / to_time). Progress lines go to `out`. 0, or
 * RD_E* with a sentence saying what is wrong in `err`.
 */
int rd_restore(const struct rd_restore_opts *opts, FILE *out, char *err, size_t errlen);

#endif
