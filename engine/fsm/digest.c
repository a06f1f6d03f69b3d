/*
 * The state digest, incremental (digest.h): per-record hashes summed per
 * kind, the touch list that keeps the sums in step with every apply, and
 * the full recomputation that checks them.
 *
 * A record's hash is FNV-1a 64 over its kind and its serialised bytes (what
 * its snapshot section holds for it), through a 64-bit finaliser (MurmurHash3's
 * fmix64): FNV-1a alone mixes its last bytes poorly into the high bits, and
 * the sums add hashes, so every bit of each should depend on every byte.
 *
 * A changed record's new hash is taken lazily: it waits on the pending list
 * (out of the sums) until more than pending_max records wait, a digest is
 * audited, or the state is rebuilt; a digest counts what waits as it is
 * then. A record changed again while it waits costs nothing more, so a hot
 * record (a task checkpointing many times a second) is hashed once per
 * flush rather than once per write. The value is the same either way.
 */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "fsm_int.h"
#include "recoveryd/error.h"

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static struct rd_dg *dg_of(int kind, void *rec)
{
    switch (kind) {
    case RD_DG_NODE:
        return &((struct rd_node *)rec)->dg;
    case RD_DG_FAULT:
        return &((struct rd_fault *)rec)->dg;
    case RD_DG_TASK:
        return &((struct rd_task *)rec)->dg;
    case RD_DG_RECOVERY:
        return &((struct rd_recovery *)rec)->dg;
    case RD_DG_BACKUP:
        return &((struct rd_backup *)rec)->dg;
    case RD_DG_AUDIT:
        return &((struct rd_audit *)rec)->dg;
    case RD_DG_CONFLICT:
        return &((struct rd_conflict *)rec)->dg;
    default:
        return &((struct rd_check *)rec)->dg;
    }
}

uint64_t rd_fsm__dg_hash(int kind, const void *rec, struct rd_wbuf *w)
{
    w->len = 0;
    w->err = 0;
    switch (kind) {
    case RD_DG_NODE:
        rd_fsm__node_write_one(w, rec);
        break;
    case RD_DG_FAULT:
        rd_fsm__fault_write_one(w, rec);
        break;
    case RD_DG_TASK:
        rd_fsm__task_write_one(w, rec);
        break;
    case RD_DG_RECOVERY:
        rd_fsm__recovery_write_one(w, rec);
        break;
    case RD_DG_BACKUP:
        rd_fsm__backup_write_one(w, rec);
        break;
    case RD_DG_AUDIT:
        rd_fsm__audit_write_one(w, rec);
        break;
    case RD_DG_CONFLICT:
        rd_fsm__conflict_write_one(w, rec);
        break;
    default:
        rd_fsm__check_write_one(w, rec);
        break;
    }
    uint8_t k = (uint8_t)kind;
    uint64_t h = rd_fnv1a(RD_FNV_INIT, &k, 1);
    /* Out of memory while serialising: a hash of what was written plus a
     * marker. Both sides of a comparison would have to fail alike to agree,
     * so this can only make a digest differ, never hide a difference. */
    if (w->err)
        h = rd_fnv1a(h, "\xff\xff", 2);
    return mix64(rd_fnv1a(h, w->p, w->len));
}

/* ---- the touch list ------------------------------------------------------ */

static void push(struct rd_fsm *f, int kind, void *rec)
{
    struct rd_fsm_dg *d = &f->dg;
    if (d->n_touched == d->cap_touched) {
        size_t ncap = d->cap_touched ? d->cap_touched * 2 : 16;
        struct rd_fsm_dg_touch *nt = realloc(d->touched, ncap * sizeof(*nt));
        if (nt == NULL) {
            /* Cannot follow this record: the next commit rebuilds everything. */
            d->lost = true;
            return;
        }
        d->touched = nt;
        d->cap_touched = ncap;
    }
    d->touched[d->n_touched++] = (struct rd_fsm_dg_touch){.kind = (uint8_t)kind, .rec = rec};
    dg_of(kind, rec)->touched = (uint32_t)d->n_touched;
}

void rd_fsm__dg_touch(struct rd_fsm *f, int kind, void *rec)
{
    rd_fsm__export_changed(f, kind, rec);
    struct rd_dg *g = dg_of(kind, rec);
    if (g->touched)
        return;
    f->dg.sum[kind] -= g->hash;
    g->hash = 0;
    push(f, kind, rec);
}

void rd_fsm__dg_add(struct rd_fsm *f, int kind, void *rec)
{
    rd_fsm__export_changed(f, kind, rec);
    struct rd_dg *g = dg_of(kind, rec);
    g->hash = 0;
    g->touched = 0;
    push(f, kind, rec);
}

void rd_fsm__dg_remove(struct rd_fsm *f, int kind, void *rec)
{
    struct rd_dg *g = dg_of(kind, rec);
    if (!g->touched) {
        f->dg.sum[kind] -= g->hash;
        g->hash = 0;
        return;
    }
    /* Pending: its hash is out of the sums already; it leaves the list (the
     * last one takes its place) so no flush reads freed memory. */
    struct rd_fsm_dg *d = &f->dg;
    size_t i = g->touched - 1;
    if (i < d->n_touched && d->touched[i].rec == rec) {
        d->touched[i] = d->touched[--d->n_touched];
        if (i < d->n_touched)
            dg_of(d->touched[i].kind, d->touched[i].rec)->touched = (uint32_t)(i + 1);
    }
    g->touched = 0;
}

void rd_fsm__dg_flush(struct rd_fsm *f)
{
    struct rd_fsm_dg *d = &f->dg;
    if (d->n_touched == 0 && !d->lost)
        return;
    struct rd_wbuf w;
    rd_w_init(&w);
    for (size_t i = 0; i < d->n_touched; i++) {
        int kind = d->touched[i].kind;
        struct rd_dg *g = dg_of(kind, d->touched[i].rec);
        g->hash = rd_fsm__dg_hash(kind, d->touched[i].rec, &w);
        g->touched = 0;
        d->sum[kind] += g->hash;
    }
    d->n_touched = 0;
    rd_w_free(&w);
    if (d->lost) {
        d->lost = false;
        rd_fsm__dg_rebuild(f);
    }
}

void rd_fsm__dg_commit(struct rd_fsm *f)
{
    if (f->dg.lost || f->dg.n_touched > f->dg.pending_max)
        rd_fsm__dg_flush(f);
}

/* ---- sums ---------------------------------------------------------------- */

/* Calls `fn` on every record of every kind. */
static void each_record(const struct rd_fsm *f, void (*fn)(void *arg, int kind, void *rec),
                        void *arg)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        fn(arg, RD_DG_NODE, f->nodes[i]);
    for (size_t i = 0; i < f->n_faults; i++)
        fn(arg, RD_DG_FAULT, f->faults[i]);
    for (size_t i = 0; i < f->n_tasks; i++)
        fn(arg, RD_DG_TASK, f->tasks[i]);
    for (size_t i = 0; i < f->n_recoveries; i++)
        fn(arg, RD_DG_RECOVERY, f->recoveries[i]);
    for (size_t i = 0; i < f->n_backups; i++)
        fn(arg, RD_DG_BACKUP, f->backups[i]);
    for (size_t i = 0; i < f->n_checks; i++)
        fn(arg, RD_DG_CHECK, f->checks[i]);
    for (size_t i = 0; i < f->n_audits; i++)
        fn(arg, RD_DG_AUDIT, f->audits[f->audit_head + i]);
    for (size_t i = 0; i < f->n_conflicts; i++)
        fn(arg, RD_DG_CONFLICT, f->conflicts[f->conflict_head + i]);
}

struct summer {
    uint64_t sum[RD_DG_KINDS];
    struct rd_wbuf w;
    bool store; /* rebuild: keep each hash in its record */
};

static void sum_one(void *arg, int kind, void *rec)
{
    struct summer *s = arg;
    uint64_t h = rd_fsm__dg_hash(kind, rec, &s->w);
    s->sum[kind] += h;
    if (s->store) {
        struct rd_dg *g = dg_of(kind, rec);
        g->hash = h;
        g->touched = 0;
    }
}

void rd_fsm__dg_rebuild(struct rd_fsm *f)
{
    struct summer s = {.store = true};
    rd_w_init(&s.w);
    each_record(f, sum_one, &s);
    rd_w_free(&s.w);
    memcpy(f->dg.sum, s.sum, sizeof(f->dg.sum));
    f->dg.n_touched = 0;
    f->dg.lost = false;
}

void rd_fsm__dg_reset(struct rd_fsm *f)
{
    memset(f->dg.sum, 0, sizeof(f->dg.sum));
    f->dg.n_touched = 0;
    f->dg.lost = false;
}

void rd_fsm__dg_free(struct rd_fsm *f)
{
    free(f->dg.touched);
    f->dg.touched = NULL;
    f->dg.n_touched = f->dg.cap_touched = 0;
}

/* ---- the digest ------------------------------------------------------------ */

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return rd_fnv1a(h, b, 8);
}

/* Mixes the per-kind sums with the counts and the scalar state. The
 * replicas section (16 entries at most) and the archive position are
 * hashed whole: bounded, so still O(1). */
static uint64_t combine(const struct rd_fsm *f, const uint64_t sum[RD_DG_KINDS])
{
    const uint64_t counts[RD_DG_KINDS] = {f->n_nodes,   f->n_faults, f->n_tasks,  f->n_recoveries,
                                          f->n_backups, f->n_checks, f->n_audits, f->n_conflicts};
    uint64_t h = rd_fnv1a(RD_FNV_INIT, "rd-digest-1", 11);
    h = fnv_u64(h, f->n_applied);
    h = fnv_u64(h, (uint64_t)f->last_time_ms);
    h = fnv_u64(h, f->fault_seq);
    /* Audit records (issue 12) and conflict records (issue 17) count only
     * once there were any: a state without them digests as it did before
     * they existed. */
    if (f->audit_seq > 0)
        h = fnv_u64(h, f->audit_seq);
    if (f->conflict_seq > 0)
        h = fnv_u64(h, f->conflict_seq);
    for (int k = 0; k < RD_DG_KINDS; k++) {
        if ((k == RD_DG_AUDIT && f->audit_seq == 0) ||
            (k == RD_DG_CONFLICT && f->conflict_seq == 0))
            continue;
        h = fnv_u64(h, counts[k]);
        h = fnv_u64(h, mix64(sum[k] ^ (uint64_t)(k + 1)));
    }
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_fsm__replicas_write(f, &w);
    rd_fsm__archive_write(f, &w);
    /* The export position counts once it was ever set (a state without it
     * digests as it did before it existed). The records' changed indexes
     * are not in their hashes. */
    if (f->exp.enabled || f->exp.index != 0 || f->exp.at_ms != 0)
        rd_fsm__export_write_scalars(f, &w);
    if (w.err)
        h = rd_fnv1a(h, "\xff\xff", 2);
    h = rd_fnv1a(h, w.p, w.len);
    rd_w_free(&w);
    return mix64(h);
}

uint64_t rd_fsm_digest(const struct rd_fsm *f)
{
    /* The records pending (changed since their hashes were last taken, at
     * most pending_max + what one command touches) are out of the sums: count
     * them as they are now. */
    uint64_t sum[RD_DG_KINDS];
    memcpy(sum, f->dg.sum, sizeof(sum));
    if (f->dg.n_touched > 0 || f->dg.lost) {
        if (f->dg.lost)
            return rd_fsm_digest_full(f);
        struct rd_wbuf w;
        rd_w_init(&w);
        for (size_t i = 0; i < f->dg.n_touched; i++)
            sum[f->dg.touched[i].kind] +=
                rd_fsm__dg_hash(f->dg.touched[i].kind, f->dg.touched[i].rec, &w);
        rd_w_free(&w);
    }
    return combine(f, sum);
}

uint64_t rd_fsm_digest_full(const struct rd_fsm *f)
{
    struct summer s = {.store = false};
    rd_w_init(&s.w);
    each_record(f, sum_one, &s);
    rd_w_free(&s.w);
    return combine(f, s.sum);
}

/* ---- the audit -------------------------------------------------------------- */

struct auditor {
    uint64_t sum[RD_DG_KINDS];
    struct rd_wbuf w;
    size_t wrong; /* records whose kept hash was not their bytes' */
};

static void audit_one(void *arg, int kind, void *rec)
{
    struct auditor *a = arg;
    uint64_t h = rd_fsm__dg_hash(kind, rec, &a->w);
    struct rd_dg *g = dg_of(kind, rec);
    if (g->hash != h) {
        g->hash = h;
        a->wrong++;
    }
    a->sum[kind] += h;
}

size_t rd_fsm_digest_audit(struct rd_fsm *f)
{
    if (f->applying_index != 0)
        return 0; /* inside an apply: never */
    rd_fsm__dg_flush(f);
    struct auditor a = {.wrong = 0};
    rd_w_init(&a.w);
    each_record(f, audit_one, &a);
    rd_w_free(&a.w);
    bool skewed = memcmp(a.sum, f->dg.sum, sizeof(a.sum)) != 0;
    memcpy(f->dg.sum, a.sum, sizeof(f->dg.sum));
    f->dg.lost = false;
    size_t fixed = a.wrong ? a.wrong : skewed ? 1 : 0;
    f->digest_audits++;
    f->digest_audit_fixes += fixed;
    return fixed;
}
