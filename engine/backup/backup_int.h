/*
 * What the backup module's files share (backup.c, archive.c); nothing
 * outside engine/backup/ includes it.
 */
#ifndef RD_BACKUP_INT_H
#define RD_BACKUP_INT_H

#include "backup.h"

/* The backup instance `name` (plugin host): 0 with ops and state, or RD_E*
 * with `why`. */
int rd_backup__target(struct rd_backups *b, const char *name, const struct rd_backup_ops **ops,
                      void **state, const char **why);
/* Index of target `name` in b->targets, or -1. */
int rd_backup__target_index(const struct rd_backups *b, const char *name);

/* backup.c: a backup on every target now, bridging a gap in the archive
 * (0 with `st` filled, or RD_E*), and the raft index of the run in flight's
 * image. */
int rd_backup__start_bridge(struct rd_backups *b, struct rd_backup_started *st);
uint64_t rd_backup__run_index(const struct rd_backups *b);

/* checkpoints.c: frees the reads that never started (rd_backup_close). */
void rd_backup__ckpt_close(struct rd_backups *b);

/* archive.c: continuous archiving on the archive target (off when
 * b->archive_target < 0). */
int rd_backup__archive_init(struct rd_backups *b, char *err, size_t errlen);
void rd_backup__archive_start(struct rd_backups *b);
void rd_backup__archive_stop(struct rd_backups *b);
bool rd_backup__archive_busy(const struct rd_backups *b);
void rd_backup__archive_close(struct rd_backups *b);
void rd_backup__archive_metrics(struct rd_backups *b, struct rd_mbuf *m);

/* restore.c: blocking calls to a target on the restore's private loop. */
struct rd_restore_io {
    uv_loop_t *loop;
    const struct rd_backup_ops *ops;
    void *state;
};
/* Object `name` into a malloc'd *buf (the caller frees it). 0 or RD_E*. */
int rd_restore__get(struct rd_restore_io *io, const char *name, uint8_t **buf, size_t *len);
/* The names under `prefix` (malloc'd: rd_restore__names_free). 0 or RD_E*
 * with the target's words in `detail`. */
int rd_restore__list(struct rd_restore_io *io, const char *prefix, char ***names, size_t *n,
                     char *detail, size_t dlen);
void rd_restore__names_free(char **names, size_t n);

/* archive.c: applies the archived commands after the backup's index (up to
 * o->to_index / o->to_time) to `f`; *index becomes the last one applied
 * (unchanged when none). 0 or RD_E* with `err`. */
int rd_backup__replay(struct rd_fsm *f, struct rd_restore_io *io,
                      const struct rd_backup_manifest *m, const struct rd_restore_opts *o,
                      uint64_t *index, FILE *out, char *err, size_t errlen);

#endif
