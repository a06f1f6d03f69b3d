/*
 * The export position (export.h, docs/records.md): RD_CMD_RECORDS_EXPORT,
 * the records' `changed` index, the pruning rule the record kinds follow,
 * and the export section of a snapshot (format 6 on):
 *
 *   u8 enabled | u64 index | u64 max_retained | i64 at_ms | 4 x u64 lost
 *   | for faults, recovery runs, audit records, backups (in that order):
 *     u64 count | count x u64 changed (in the order of the kind's section)
 *
 * A snapshot of an older format has no changed indexes: its records read
 * as changed at index 1 (before anything a leader exported, so the first
 * export writes them all).
 */
#include <string.h>

#include "fsm_int.h"
#include "recoveryd/error.h"

const struct rd_export_pos *rd_fsm_export(const struct rd_fsm *f)
{
    return &f->exp;
}

const char *rd_export_kind_name(int kind)
{
    static const char *const names[RD_EXPORT_KINDS] = {"faults", "recoveries", "audits", "backups"};
    return kind >= 0 && kind < RD_EXPORT_KINDS ? names[kind] : "unknown";
}

bool rd_fsm_export_done(const struct rd_fsm *f, uint64_t changed)
{
    return !f->exp.enabled || changed <= f->exp.index;
}

size_t rd_fsm_export_bound(const struct rd_fsm *f, size_t usual)
{
    if (!f->exp.enabled || f->exp.max_retained <= usual)
        return usual;
    return f->exp.max_retained > SIZE_MAX ? SIZE_MAX : (size_t)f->exp.max_retained;
}

void rd_fsm__export_changed(struct rd_fsm *f, int kind, void *rec)
{
    if (f->applying_index == 0)
        return; /* outside apply (fault injection): not a change of state */
    switch (kind) {
    case RD_DG_FAULT:
        ((struct rd_fault *)rec)->changed = f->applying_index;
        break;
    case RD_DG_RECOVERY:
        ((struct rd_recovery *)rec)->changed = f->applying_index;
        break;
    case RD_DG_AUDIT:
        ((struct rd_audit *)rec)->changed = f->applying_index;
        break;
    case RD_DG_BACKUP:
        ((struct rd_backup *)rec)->changed = f->applying_index;
        break;
    default:
        break;
    }
}

uint64_t rd_fsm__export_pending_from(const struct rd_fsm *f)
{
    uint64_t low = UINT64_MAX, done = f->exp.index;
#define RD__PENDING(c)                                                                             \
    do {                                                                                           \
        if ((c) > done && (c) < low)                                                               \
            low = (c);                                                                             \
    } while (0)
    for (size_t i = 0; i < f->n_faults; i++)
        RD__PENDING(f->faults[i]->changed);
    for (size_t i = 0; i < f->n_recoveries; i++)
        RD__PENDING(f->recoveries[i]->changed);
    for (size_t i = 0; i < f->n_audits; i++)
        RD__PENDING(f->audits[f->audit_head + i]->changed);
    for (size_t i = 0; i < f->n_backups; i++)
        RD__PENDING(f->backups[i]->changed);
#undef RD__PENDING
    return low;
}

void rd_fsm__export_lost(struct rd_fsm *f, int kind)
{
    f->exp.lost[kind]++;
}

int rd_fsm__export_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_records_export *c = &cmd->u.rexport;
    f->exp.enabled = c->enabled;
    /* Only forward: an old proposal applied late never moves it back. */
    if (c->index > f->exp.index)
        f->exp.index = c->index;
    f->exp.max_retained = c->max_retained ? c->max_retained : RD_FSM_EXPORT_RETAIN_DEFAULT;
    f->exp.at_ms = cmd->time_ms;
    f->result.value = f->exp.index;
    return 0;
}

void rd_fsm__export_clear(struct rd_fsm *f)
{
    memset(&f->exp, 0, sizeof(f->exp));
}

void rd_fsm__export_move(struct rd_fsm *to, struct rd_fsm *from)
{
    to->exp = from->exp;
    memset(&from->exp, 0, sizeof(from->exp));
}

void rd_fsm__export_write_scalars(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u8(w, f->exp.enabled);
    rd_w_u64(w, f->exp.index);
    rd_w_u64(w, f->exp.max_retained);
    rd_w_i64(w, f->exp.at_ms);
    for (int k = 0; k < RD_EXPORT_KINDS; k++)
        rd_w_u64(w, f->exp.lost[k]);
}

void rd_fsm__export_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_fsm__export_write_scalars(f, w);
    rd_w_u64(w, f->n_faults);
    for (size_t i = 0; i < f->n_faults; i++)
        rd_w_u64(w, f->faults[i]->changed);
    rd_w_u64(w, f->n_recoveries);
    for (size_t i = 0; i < f->n_recoveries; i++)
        rd_w_u64(w, f->recoveries[i]->changed);
    rd_w_u64(w, f->n_audits);
    for (size_t i = 0; i < f->n_audits; i++)
        rd_w_u64(w, f->audits[f->audit_head + i]->changed);
    rd_w_u64(w, f->n_backups);
    for (size_t i = 0; i < f->n_backups; i++)
        rd_w_u64(w, f->backups[i]->changed);
}

/* Reads the changed indexes of the `n` records of export kind `kind`. */
static int read_changed(struct rd_rbuf *r, struct rd_fsm *f, int kind, size_t n)
{
    uint64_t count = rd_r_u64(r);
    if (r->err || count != n)
        return RD_ECORRUPT;
    for (size_t i = 0; i < n; i++) {
        uint64_t c = rd_r_u64(r);
        switch (kind) {
        case RD_EXPORT_FAULTS:
            f->faults[i]->changed = c;
            break;
        case RD_EXPORT_RECOVERIES:
            f->recoveries[i]->changed = c;
            break;
        case RD_EXPORT_AUDITS:
            f->audits[f->audit_head + i]->changed = c;
            break;
        default:
            f->backups[i]->changed = c;
            break;
        }
    }
    return r->err ? RD_ECORRUPT : 0;
}

int rd_fsm__export_read(struct rd_fsm *f, struct rd_rbuf *r)
{
    f->exp.enabled = rd_r_u8(r);
    f->exp.index = rd_r_u64(r);
    f->exp.max_retained = rd_r_u64(r);
    f->exp.at_ms = rd_r_i64(r);
    for (int k = 0; k < RD_EXPORT_KINDS; k++)
        f->exp.lost[k] = rd_r_u64(r);
    if (r->err || f->exp.enabled > 1)
        return RD_ECORRUPT;
    const size_t counts[RD_EXPORT_KINDS] = {f->n_faults, f->n_recoveries, f->n_audits,
                                            f->n_backups};
    for (int k = 0; k < RD_EXPORT_KINDS; k++) {
        int rv = read_changed(r, f, k, counts[k]);
        if (rv != 0)
            return rv;
    }
    return 0;
}

void rd_fsm__export_read_old(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_faults; i++)
        f->faults[i]->changed = 1;
    for (size_t i = 0; i < f->n_recoveries; i++)
        f->recoveries[i]->changed = 1;
    for (size_t i = 0; i < f->n_audits; i++)
        f->audits[f->audit_head + i]->changed = 1;
    for (size_t i = 0; i < f->n_backups; i++)
        f->backups[i]->changed = 1;
}
