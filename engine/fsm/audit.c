/*
 * Audit records in the state machine (issue 12). A command's audit part
 * (cmd.h) becomes a record in the same apply as its change, whatever the
 * change's outcome (a refused command is recorded with the refusal); an
 * RD_CMD_AUDIT command is a record alone. Records are kept oldest first in
 * an array whose live part starts at `audit_head` (pruning drops from the
 * front), their sequence numbers contiguous. Retention: after each insert,
 * the oldest go while there are more than the command's `keep`, or while
 * they are older than its `max_age_s` before the command's time (both
 * stamped by the leader, so every replica prunes alike); while export to
 * PostgreSQL is on, a record not exported yet stays up to its hard bound
 * (export.h).
 *
 * Section (snapshot format 5 on): u64 last seq | u64 count | count records
 * (u64 seq, i64 at, u8 role, u16 status, strings principal, source, method,
 * action, target, error, request_id, cause).
 */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "fsm_int.h"
#include "recoveryd/error.h"

#define N_STRINGS 8

void rd_fsm__audits_clear(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_audits; i++)
        free(f->audits[f->audit_head + i]);
    free(f->audits);
    f->audits = NULL;
    f->n_audits = f->cap_audits = f->audit_head = 0;
    f->audit_seq = 0;
}

void rd_fsm__audits_move(struct rd_fsm *to, struct rd_fsm *from)
{
    to->audits = from->audits;
    to->n_audits = from->n_audits;
    to->cap_audits = from->cap_audits;
    to->audit_head = from->audit_head;
    to->audit_seq = from->audit_seq;
    from->audits = NULL;
    from->n_audits = from->cap_audits = from->audit_head = 0;
    from->audit_seq = 0;
}

const struct rd_audit *const *rd_fsm_audits(const struct rd_fsm *f, size_t *n)
{
    *n = f->n_audits;
    return f->audits ? (const struct rd_audit *const *)f->audits + f->audit_head : NULL;
}

size_t rd_fsm_audit_index(const struct rd_fsm *f, uint64_t seq)
{
    if (f->n_audits == 0)
        return 0;
    uint64_t first = f->audits[f->audit_head]->seq; /* contiguous from here */
    if (seq <= first)
        return 0;
    return seq - first >= f->n_audits ? f->n_audits : (size_t)(seq - first);
}

size_t rd_fsm_audit_first_after(const struct rd_fsm *f, uint64_t index)
{
    size_t lo = 0, hi = f->n_audits;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->audits[f->audit_head + mid]->changed <= index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int rd_audit_outcome(int err, const char **code)
{
    switch (err) {
    case 0:
        *code = "";
        return 200;
    case RD_ENOTFOUND:
        *code = "not_found";
        return 404;
    case RD_EFENCED:
        *code = "fenced";
        return 409;
    case RD_ECONFLICT:
    case RD_EEXISTS:
        *code = "conflict";
        return 409;
    case RD_ESTALE_VERSION:
        *code = "stale_version";
        return 409;
    case RD_ETOOLARGE:
        *code = "too_large";
        return 413;
    case RD_EINVAL:
    case RD_EPARSE:
        *code = "bad_request";
        return 400;
    default:
        *code = "internal";
        return 500;
    }
}

/* A record with copies of `s` (N_STRINGS of them); NULL on ENOMEM. */
static struct rd_audit *audit_new(const struct rd_str s[N_STRINGS])
{
    size_t total = 0;
    for (int i = 0; i < N_STRINGS; i++)
        total += s[i].len + 1;
    struct rd_audit *a = calloc(1, sizeof(*a) + total);
    if (a == NULL)
        return NULL;
    const char **field[N_STRINGS] = {&a->principal, &a->source, &a->method,     &a->action,
                                     &a->target,    &a->error,  &a->request_id, &a->cause};
    char *p = a->strings;
    for (int i = 0; i < N_STRINGS; i++) {
        if (s[i].len > 0)
            memcpy(p, s[i].p, s[i].len);
        p[s[i].len] = '\0';
        *field[i] = p;
        p += s[i].len + 1;
    }
    return a;
}

static int append(struct rd_fsm *f, struct rd_audit *a)
{
    struct rd_audit **na =
        rd_array_room(f->audits, sizeof(*na), &f->audit_head, f->n_audits, &f->cap_audits, 64);
    if (na == NULL)
        return RD_ENOMEM;
    f->audits = na;
    f->audits[f->audit_head + f->n_audits++] = a;
    return 0;
}

static void prune(struct rd_fsm *f, int64_t now_ms, uint32_t keep, uint32_t max_age_s)
{
    if (keep == 0)
        keep = RD_FSM_AUDIT_KEEP_DEFAULT;
    if (max_age_s == 0)
        max_age_s = RD_FSM_AUDIT_MAX_AGE_DEFAULT;
    int64_t oldest = now_ms - (int64_t)max_age_s * 1000;
    while (f->n_audits > 1) { /* the record just written stays */
        struct rd_audit *a = f->audits[f->audit_head];
        if (f->n_audits <= keep && a->at_ms >= oldest)
            break;
        /* Not exported yet (export.h): it waits, up to the hard bound. The
         * records after it were written later: none of them is exported
         * either. */
        if (!rd_fsm_export_done(f, a->changed)) {
            if (f->n_audits <= rd_fsm_export_bound(f, keep))
                break;
            rd_fsm__export_lost(f, RD_EXPORT_AUDITS);
        }
        rd_fsm__dg_remove(f, RD_DG_AUDIT, a);
        free(a);
        f->audits[f->audit_head] = NULL;
        f->audit_head++;
        f->n_audits--;
    }
    if (f->n_audits == 0)
        f->audit_head = 0;
}

int rd_fsm__audit_apply(struct rd_fsm *f, const struct rd_cmd *cmd, int outcome)
{
    const struct rd_cmd_audit *p = &cmd->audit;
    uint16_t status = p->status;
    struct rd_str error = p->error;
    if (cmd->type != RD_CMD_AUDIT && outcome != 0) {
        const char *code;
        status = (uint16_t)rd_audit_outcome(outcome, &code);
        error = RD_STR(code);
    }
    const struct rd_str s[N_STRINGS] = {p->principal, p->source, p->method,     p->action,
                                        p->target,    error,     p->request_id, p->cause};
    for (int i = 0; i < N_STRINGS; i++)
        if (s[i].len > 0 && memchr(s[i].p, '\0', s[i].len) != NULL)
            return 0; /* cannot be stored as a string: decode lets it by, apply drops it */
    struct rd_audit *a = audit_new(s);
    if (a == NULL || append(f, a) != 0) {
        free(a);
        return RD_ENOMEM;
    }
    a->seq = ++f->audit_seq;
    a->at_ms = cmd->time_ms;
    a->role = p->role;
    a->status = status;
    rd_fsm__dg_add(f, RD_DG_AUDIT, a);
    f->audits_written++;
    prune(f, cmd->time_ms, p->keep, p->max_age_s);
    return 0;
}

/* ---- snapshot section --------------------------------------------------- */

void rd_fsm__audit_write_one(struct rd_wbuf *w, const struct rd_audit *a)
{
    rd_w_u64(w, a->seq);
    rd_w_i64(w, a->at_ms);
    rd_w_u8(w, a->role);
    rd_w_u16(w, a->status);
    const char *s[N_STRINGS] = {a->principal, a->source, a->method,     a->action,
                                a->target,    a->error,  a->request_id, a->cause};
    for (int i = 0; i < N_STRINGS; i++)
        rd_w_str(w, s[i], strlen(s[i]));
}

void rd_fsm__audits_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u64(w, f->audit_seq);
    rd_w_u64(w, f->n_audits);
    for (size_t i = 0; i < f->n_audits; i++)
        rd_fsm__audit_write_one(w, f->audits[f->audit_head + i]);
}

int rd_fsm__audits_read(struct rd_fsm *f, struct rd_rbuf *r)
{
    uint64_t last = rd_r_u64(r);
    uint64_t count = rd_r_u64(r);
    if (r->err || count > r->len || count > last)
        return RD_ECORRUPT;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t seq = rd_r_u64(r);
        int64_t at = rd_r_i64(r);
        uint8_t role = rd_r_u8(r);
        uint16_t status = rd_r_u16(r);
        struct rd_str s[N_STRINGS];
        for (int k = 0; k < N_STRINGS; k++)
            s[k] = rd_r_str(r);
        /* Contiguous sequence numbers ending at `last`. */
        if (r->err || seq != last - count + 1 + i)
            return RD_ECORRUPT;
        for (int k = 0; k < N_STRINGS; k++)
            if (s[k].len > 0 && memchr(s[k].p, '\0', s[k].len) != NULL)
                return RD_ECORRUPT;
        struct rd_audit *a = audit_new(s);
        if (a == NULL)
            return RD_ENOMEM;
        a->seq = seq;
        a->at_ms = at;
        a->role = role;
        a->status = status;
        if (append(f, a) != 0) {
            free(a);
            return RD_ENOMEM;
        }
    }
    f->audit_seq = last;
    return 0;
}
