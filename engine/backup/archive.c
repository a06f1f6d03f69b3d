/*
 * Continuous archiving (docs/backup.md): not built yet; archiving is off.
 */
#include "backup_int.h"

int rd_backup__archive_init(struct rd_backups *b, char *err, size_t errlen)
{
    (void)b;
    (void)err;
    (void)errlen;
    return 0;
}

void rd_backup__archive_start(struct rd_backups *b)
{
    (void)b;
}

void rd_backup__archive_stop(struct rd_backups *b)
{
    (void)b;
}

bool rd_backup__archive_busy(const struct rd_backups *b)
{
    (void)b;
    return false;
}

void rd_backup__archive_close(struct rd_backups *b)
{
    (void)b;
}

void rd_backup__archive_metrics(struct rd_backups *b, struct rd_mbuf *m)
{
    (void)b;
    (void)m;
}

int rd_backup__replay(struct rd_fsm *f, struct rd_restore_io *io,
                      const struct rd_backup_manifest *m, const struct rd_restore_opts *o,
                      uint64_t *index, FILE *out, char *err, size_t errlen)
{
    (void)f, (void)io, (void)m, (void)o, (void)index, (void)out, (void)err, (void)errlen;
    return 0;
}
