/*
 * Backup records and the archive position (backups.c): the history every
 * replica and every new leader knows (issue 11). Part of the state machine's
 * API: include fsm.h.
 */
#ifndef RD_FSM_BACKUPS_H
#define RD_FSM_BACKUPS_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct rd_fsm;

struct rd_backup {
    char id[65];
    char target[64]; /* the backup plugin instance */
    uint8_t status;  /* enum rd_backup_status */
    uint64_t index;  /* the raft index the image was taken at (0 until completed) */
    uint64_t term;
    uint64_t size;     /* compressed bytes */
    uint64_t checksum; /* FNV-1a 64 of the compressed bytes */
    uint64_t digest;   /* the state digest of the image */
    int64_t started_at_ms;
    int64_t completed_at_ms; /* 0 while running; when it failed for a failed one */
    int64_t verified_at_ms;  /* 0 when never verified */
    int8_t verify_ok;        /* -1 never verified, 0 failed, 1 matched */
    char *error;             /* NULL when none */
    uint64_t changed;        /* raft index of its last change (export.h) */
    struct rd_dg dg;         /* local: its term of the digest (digest.h) */
};

/* Records beyond this many are dropped in apply, the oldest that is not
 * running first (a running backup is never lost track of). */
#define RD_FSM_MAX_BACKUPS 10000

/* Where continuous archiving stands (zeroed when it never ran). */
struct rd_archive_pos {
    char target[64];
    uint64_t index; /* every applied entry up to this raft index is archived */
    char object[256];
    int64_t at_ms;
};

/* The record of backup `id`, or NULL. */
const struct rd_backup *rd_fsm_backup_find(const struct rd_fsm *f, const char *id);

/* Every backup record in the order they began (oldest first); `*n` gets
 * their count. The array belongs to the machine: valid until the next apply
 * or restore. */
const struct rd_backup *const *rd_fsm_backups(const struct rd_fsm *f, size_t *n);

/* Where continuous archiving stands (index 0: it never ran). Never NULL. */
const struct rd_archive_pos *rd_fsm_archive(const struct rd_fsm *f);

/* The cluster's id (RD_CMD_CLUSTER_ID), "" until one was applied. */
const char *rd_fsm_cluster_id(const struct rd_fsm *f);

/*
 * `recoveryd restore` only, on a machine that no raft instance applies to:
 * the state restored from a backup becomes a new cluster's, with a new id
 * (as etcdutl snapshot restore gives the restored cluster a new cluster
 * id), so its backups and archive are told apart from the old cluster's.
 * Never a log command: a running cluster's id is set once. `id` is at most
 * 64 bytes. The digest follows (it reads the id as it is).
 */
void rd_fsm_rename_cluster(struct rd_fsm *f, const char *id);

#endif
