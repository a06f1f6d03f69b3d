/* Which backups retention deletes (pure: the leader acts on the answer). */
#include <string.h>

#include "backup.h"

void rd_backup_retention(const struct rd_backup *const *recs, size_t n, int64_t now_ms,
                         uint64_t retention_ms, unsigned keep_min, uint8_t *out)
{
    int64_t horizon = now_ms - (int64_t)retention_ms;
    for (size_t i = 0; i < n; i++)
        out[i] = RD_BACKUP_KEEP;
    /* Newest first, so the completed ones of a target are counted as they
     * come: each target holds its own copies, and keeps its own keep_min. */
    struct {
        const char *target;
        unsigned completed;
    } seen[RD_CFG_MAX_PLUGINS * 4];
    size_t n_seen = 0;
    for (size_t k = n; k-- > 0;) {
        const struct rd_backup *r = recs[k];
        if (r->status == RD_BACKUP_FAILED) {
            out[k] = r->started_at_ms <= horizon ? RD_BACKUP_DROP : RD_BACKUP_CLEAN;
            continue;
        }
        if (r->status != RD_BACKUP_COMPLETED)
            continue;
        size_t t = 0;
        while (t < n_seen && strcmp(seen[t].target, r->target) != 0)
            t++;
        if (t == n_seen) {
            if (n_seen == RD_ARRAY_SIZE(seen))
                continue; /* more targets than ever configured: keep, decide next time */
            seen[n_seen].target = r->target;
            seen[n_seen++].completed = 0;
        }
        if (seen[t].completed++ >= keep_min && r->started_at_ms <= horizon)
            out[k] = RD_BACKUP_DROP;
    }
}
