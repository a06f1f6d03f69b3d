/*
 * Backup records, the archive position and the cluster id in the state
 * machine (issue 11), so that every replica and every new leader knows the
 * history: a backup in flight during a leader change is still on record,
 * and the next leader resumes archiving where the last one stopped.
 *
 * A backup's life: BEGIN (running) then COMPLETE or FAIL, each once; VERIFY
 * on a completed one, as often as it is read back; REMOVE when retention
 * deleted its objects. Records are kept in order of BEGIN with a map by id,
 * at most RD_FSM_MAX_BACKUPS (the oldest finished ones go first).
 *
 * Section (snapshot format 4 on):
 *   str cluster_id | str archive target | u64 archive index
 *   | str archive object | i64 archive time | u64 count | count records
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm_int.h"
#include "recoveryd/error.h"

static void backup_free(struct rd_backup *b)
{
    if (b == NULL)
        return;
    free(b->error);
    free(b);
}

void rd_fsm__backups_clear(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_backups; i++)
        backup_free(f->backups[i]);
    free(f->backups);
    rd_map_free(&f->backups_by_id);
    rd_map_init(&f->backups_by_id);
    f->backups = NULL;
    f->n_backups = f->cap_backups = 0;
    memset(&f->archive, 0, sizeof(f->archive));
    memset(f->cluster_id, 0, sizeof(f->cluster_id));
}

void rd_fsm__backups_move(struct rd_fsm *to, struct rd_fsm *from)
{
    to->backups = from->backups;
    to->n_backups = from->n_backups;
    to->cap_backups = from->cap_backups;
    to->backups_by_id = from->backups_by_id;
    to->archive = from->archive;
    memcpy(to->cluster_id, from->cluster_id, sizeof(to->cluster_id));
    from->backups = NULL;
    from->n_backups = from->cap_backups = 0;
    rd_map_init(&from->backups_by_id);
    memset(&from->archive, 0, sizeof(from->archive));
    memset(from->cluster_id, 0, sizeof(from->cluster_id));
}

const struct rd_backup *rd_fsm_backup_find(const struct rd_fsm *f, const char *id)
{
    return rd_map_get(&f->backups_by_id, id, strlen(id));
}

const struct rd_backup *const *rd_fsm_backups(const struct rd_fsm *f, size_t *n)
{
    *n = f->n_backups;
    return (const struct rd_backup *const *)f->backups;
}

const struct rd_archive_pos *rd_fsm_archive(const struct rd_fsm *f)
{
    return &f->archive;
}

const char *rd_fsm_cluster_id(const struct rd_fsm *f)
{
    return f->cluster_id;
}

void rd_fsm_rename_cluster(struct rd_fsm *f, const char *id)
{
    snprintf(f->cluster_id, sizeof(f->cluster_id), "%s", id);
}

static int insert(struct rd_fsm *f, struct rd_backup *b)
{
    if (f->n_backups == f->cap_backups) {
        size_t ncap = f->cap_backups ? f->cap_backups * 2 : 16;
        struct rd_backup **nb = realloc(f->backups, ncap * sizeof(*nb));
        if (nb == NULL)
            return RD_ENOMEM;
        f->backups = nb;
        f->cap_backups = ncap;
    }
    if (rd_map_put(&f->backups_by_id, b->id, strlen(b->id), b) != 0)
        return RD_ENOMEM;
    f->backups[f->n_backups++] = b;
    return 0;
}

/* Drops the oldest records that are not running beyond RD_FSM_MAX_BACKUPS
 * and are exported (all of them when export is off), and beyond the
 * export's hard bound the oldest that are not running whatever they are
 * (export.h). */
static void prune(struct rd_fsm *f)
{
    if (f->n_backups <= RD_FSM_MAX_BACKUPS)
        return;
    size_t excess = f->n_backups - RD_FSM_MAX_BACKUPS, kept = 0;
    size_t bound = rd_fsm_export_bound(f, RD_FSM_MAX_BACKUPS);
    size_t forced = f->n_backups > bound ? f->n_backups - bound : 0;
    for (size_t i = 0; i < f->n_backups; i++) {
        struct rd_backup *b = f->backups[i];
        bool done = rd_fsm_export_done(f, b->changed);
        if (b->status != RD_BACKUP_RUNNING && ((excess > 0 && done) || forced > 0)) {
            if (!done)
                rd_fsm__export_lost(f, RD_EXPORT_BACKUPS);
            rd_map_del(&f->backups_by_id, b->id, strlen(b->id));
            rd_fsm__dg_remove(f, RD_DG_BACKUP, b);
            backup_free(b);
            excess -= excess > 0;
            forced -= forced > 0;
        } else {
            f->backups[kept++] = b;
        }
    }
    f->n_backups = kept;
}

/* The error text to keep: NULL for "" (none). On ENOMEM *out is untouched. */
static int error_of(struct rd_str s, char **out)
{
    if (s.len == 0) {
        *out = NULL;
        return 0;
    }
    char *e = rd_str_dup(s);
    if (e == NULL)
        return RD_ENOMEM;
    *out = e;
    return 0;
}

static int apply_begin(struct rd_fsm *f, const struct rd_cmd *cmd, const char *id)
{
    const struct rd_cmd_backup *c = &cmd->u.backup;
    if (rd_fsm_backup_find(f, id) != NULL) {
        f->result.status = RD_ECONFLICT;
        return 0;
    }
    struct rd_backup *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return RD_ENOMEM;
    memcpy(b->id, id, strlen(id) + 1);
    memcpy(b->target, c->target.p, c->target.len); /* decode: at most 63 */
    b->status = RD_BACKUP_RUNNING;
    b->started_at_ms = cmd->time_ms;
    b->verify_ok = -1;
    if (insert(f, b) != 0) {
        rd_map_del(&f->backups_by_id, b->id, strlen(b->id));
        backup_free(b);
        return RD_ENOMEM;
    }
    rd_fsm__dg_add(f, RD_DG_BACKUP, b);
    prune(f);
    return 0;
}

/* Removes record `b` (retention deleted its objects). */
static void remove_backup(struct rd_fsm *f, struct rd_backup *b)
{
    size_t i = 0;
    while (i < f->n_backups && f->backups[i] != b)
        i++;
    memmove(&f->backups[i], &f->backups[i + 1], (f->n_backups - i - 1) * sizeof(*f->backups));
    f->n_backups--;
    rd_map_del(&f->backups_by_id, b->id, strlen(b->id));
    rd_fsm__dg_remove(f, RD_DG_BACKUP, b);
    backup_free(b);
}

/* An id or name with a NUL inside would be cut short once stored (and an
 * empty id makes a snapshot unreadable): refused. */
static bool has_nul(struct rd_str s)
{
    return memchr(s.p, '\0', s.len) != NULL;
}

int rd_fsm__backup_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_backup *c = &cmd->u.backup;
    if (has_nul(c->id) || has_nul(c->target)) {
        f->result.status = RD_EINVAL;
        return 0;
    }
    char id[65];
    memcpy(id, c->id.p, c->id.len); /* decode: 1 to 64 bytes */
    id[c->id.len] = '\0';
    if (c->op == RD_BACKUP_OP_BEGIN)
        return apply_begin(f, cmd, id);
    struct rd_backup *b = (struct rd_backup *)rd_fsm_backup_find(f, id);
    if (b == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    char *err = NULL;
    switch (c->op) {
    case RD_BACKUP_OP_COMPLETE:
        if (b->status != RD_BACKUP_RUNNING) {
            f->result.status = RD_ECONFLICT;
            return 0;
        }
        rd_fsm__dg_touch(f, RD_DG_BACKUP, b);
        b->status = RD_BACKUP_COMPLETED;
        b->index = c->index;
        b->term = c->term;
        b->size = c->size;
        b->checksum = c->checksum;
        b->digest = c->digest;
        b->completed_at_ms = cmd->time_ms;
        return 0;
    case RD_BACKUP_OP_FAIL:
        if (b->status != RD_BACKUP_RUNNING) {
            f->result.status = RD_ECONFLICT;
            return 0;
        }
        if (error_of(c->error, &err) != 0)
            return RD_ENOMEM;
        rd_fsm__dg_touch(f, RD_DG_BACKUP, b);
        free(b->error);
        b->error = err;
        b->status = RD_BACKUP_FAILED;
        b->completed_at_ms = cmd->time_ms;
        return 0;
    case RD_BACKUP_OP_VERIFY:
        if (b->status != RD_BACKUP_COMPLETED) {
            f->result.status = RD_ECONFLICT;
            return 0;
        }
        if (error_of(c->error, &err) != 0)
            return RD_ENOMEM;
        rd_fsm__dg_touch(f, RD_DG_BACKUP, b);
        free(b->error);
        b->error = err;
        b->verified_at_ms = cmd->time_ms;
        b->verify_ok = c->ok ? 1 : 0;
        return 0;
    default: /* RD_BACKUP_OP_REMOVE (decode refuses other ops) */
        if (b->status == RD_BACKUP_RUNNING) {
            f->result.status = RD_ECONFLICT; /* finish or fail it first */
            return 0;
        }
        remove_backup(f, b);
        return 0;
    }
}

int rd_fsm__archive_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    if (cmd->type == RD_CMD_CLUSTER_ID) {
        const struct rd_str id = cmd->u.cid.id; /* decode: 1 to 64 bytes */
        if (has_nul(id)) {
            f->result.status = RD_EINVAL;
            return 0;
        }
        if (f->cluster_id[0] != '\0') {
            bool same = strlen(f->cluster_id) == id.len && memcmp(f->cluster_id, id.p, id.len) == 0;
            f->result.status = same ? 0 : RD_ECONFLICT;
            return 0;
        }
        memcpy(f->cluster_id, id.p, id.len);
        f->cluster_id[id.len] = '\0';
        return 0;
    }
    const struct rd_cmd_archive *c = &cmd->u.archive;
    if (has_nul(c->target) || has_nul(c->object)) {
        f->result.status = RD_EINVAL;
        return 0;
    }
    /* Only forward: a leader that archived less than its predecessor (an
     * old proposal applied late) must not move the position back. */
    if (c->index < f->archive.index) {
        f->result.status = RD_ECONFLICT;
        f->result.value = f->archive.index;
        return 0;
    }
    memset(&f->archive, 0, sizeof(f->archive));
    memcpy(f->archive.target, c->target.p, c->target.len); /* decode: at most 63 */
    memcpy(f->archive.object, c->object.p, c->object.len); /* decode: at most 255 */
    f->archive.index = c->index;
    f->archive.at_ms = cmd->time_ms;
    f->result.value = c->index;
    return 0;
}

/* ---- snapshot section --------------------------------------------------- */

void rd_fsm__archive_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_str(w, f->cluster_id, strlen(f->cluster_id));
    rd_w_str(w, f->archive.target, strlen(f->archive.target));
    rd_w_u64(w, f->archive.index);
    rd_w_str(w, f->archive.object, strlen(f->archive.object));
    rd_w_i64(w, f->archive.at_ms);
}

void rd_fsm__backup_write_one(struct rd_wbuf *w, const struct rd_backup *b)
{
    rd_w_str(w, b->id, strlen(b->id));
    rd_w_str(w, b->target, strlen(b->target));
    rd_w_u8(w, b->status);
    rd_w_u64(w, b->index);
    rd_w_u64(w, b->term);
    rd_w_u64(w, b->size);
    rd_w_u64(w, b->checksum);
    rd_w_u64(w, b->digest);
    rd_w_i64(w, b->started_at_ms);
    rd_w_i64(w, b->completed_at_ms);
    rd_w_i64(w, b->verified_at_ms);
    rd_w_u8(w, (uint8_t)b->verify_ok);
    rd_w_str(w, b->error, b->error ? strlen(b->error) : 0);
}

void rd_fsm__backups_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_fsm__archive_write(f, w);
    rd_w_u64(w, f->n_backups);
    for (size_t i = 0; i < f->n_backups; i++)
        rd_fsm__backup_write_one(w, f->backups[i]);
}

/* Copies `s` into a fixed field of `size` bytes; false when it does not fit. */
static bool fixed(char *out, size_t size, struct rd_str s)
{
    if (s.len >= size || rd_str_has_nul(s))
        return false;
    memcpy(out, s.p, s.len);
    out[s.len] = '\0';
    return true;
}

int rd_fsm__backups_read(struct rd_fsm *f, struct rd_rbuf *r)
{
    struct rd_str cid = rd_r_text(r), target = rd_r_text(r);
    f->archive.index = rd_r_u64(r);
    struct rd_str object = rd_r_text(r);
    f->archive.at_ms = rd_r_i64(r);
    uint64_t count = rd_r_u64(r);
    if (r->err || !fixed(f->cluster_id, sizeof(f->cluster_id), cid) ||
        !fixed(f->archive.target, sizeof(f->archive.target), target) ||
        !fixed(f->archive.object, sizeof(f->archive.object), object) || count > r->len)
        return RD_ECORRUPT;
    for (uint64_t i = 0; i < count; i++) {
        struct rd_backup *b = calloc(1, sizeof(*b));
        if (b == NULL)
            return RD_ENOMEM;
        struct rd_str id = rd_r_text(r), tgt = rd_r_text(r);
        b->status = rd_r_u8(r);
        b->index = rd_r_u64(r);
        b->term = rd_r_u64(r);
        b->size = rd_r_u64(r);
        b->checksum = rd_r_u64(r);
        b->digest = rd_r_u64(r);
        b->started_at_ms = rd_r_i64(r);
        b->completed_at_ms = rd_r_i64(r);
        b->verified_at_ms = rd_r_i64(r);
        b->verify_ok = (int8_t)rd_r_u8(r);
        struct rd_str err = rd_r_text(r);
        bool bad = r->err || id.len == 0 || !fixed(b->id, sizeof(b->id), id) ||
                   !fixed(b->target, sizeof(b->target), tgt) ||
                   b->status >= RD_BACKUP_STATUS_COUNT || b->verify_ok < -1 || b->verify_ok > 1 ||
                   rd_fsm_backup_find(f, b->id) != NULL;
        if (!bad && err.len > 0) {
            b->error = rd_str_dup(err);
            bad = b->error == NULL;
        }
        if (bad || insert(f, b) != 0) {
            backup_free(b);
            return RD_ECORRUPT;
        }
    }
    return 0;
}
