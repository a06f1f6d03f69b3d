/*
 * Continuous archiving (docs/backup.md): every applied log command reaches
 * the archive target within fault_tolerance.backup.archive.max_delay, so a
 * backup plus the archive after it restores to any index or time in
 * between (point-in-time recovery), and a disaster loses at most that much.
 *
 * Every replica keeps the commands it applied after the committed archive
 * position in a ring (the fsm's entry observer), so whichever replica leads
 * next can ship what the last leader had not. The leader cuts a segment at
 * least every max_delay / 2 (or at SEGMENT_MAX bytes), writes it as
 *
 *   archive/<cluster id>/<first:020>-<last:020>.zst
 *
 * and then proposes ARCHIVE(last): every applied command with first <=
 * index <= last is in that object, and segments follow each other without a
 * hole (first = the previous last + 1). ARCHIVE commands themselves are not
 * archived (they only say where archiving stands; an idle cluster writes
 * nothing). A leader whose ring does not reach back to the committed
 * position (it restarted from a snapshot past it, or its ring overflowed)
 * takes a full backup to bridge the gap, and says so; restore refuses to
 * replay across a hole.
 *
 * A segment, zstd-compressed as one frame:
 *   "RDARCH\0\1" | u32 format (2) | str cluster id | u64 first | u64 last
 *   | u32 count | count x (u64 index | i64 time_ms | u32 len | len bytes)
 *
 * Format 2 frames carry zstd's content checksum (XXH64 of what they
 * decompress to), which the replay checks: a segment damaged where it is
 * stored is refused, never applied as other commands. Format 1 (before
 * 2026-12-05) had none; such segments are still read, and a damage that
 * decompresses cleanly there is caught only if a command does not decode.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/util.h"
#include "backup_int.h"
#include "common/log.h"
#include "recoveryd/error.h"

#define ARCH_MAGIC     "RDARCH\0\1"
#define ARCH_FORMAT    2                   /* 1: no content checksum in the frame */
#define RING_MAX_BYTES ((size_t)256 << 20) /* then the oldest go, and a leader must bridge */
#define SEGMENT_MAX    ((size_t)8 << 20)   /* cut a segment at least this often (bytes) */
#define RETRY_MIN_MS   100
#define RETRY_MAX_MS   5000

struct entry {
    uint64_t index;
    int64_t time_ms;
    uint64_t arrival_ns;
    uint32_t len;
    uint8_t data[];
};

struct segment {
    struct rd_archiver *a;
    uv_work_t work;
    struct rd_wbuf raw;
    struct rd_wbuf z;
    int status;
    uint64_t first, last;
    size_t count;
    char name[RD_BACKUP_NAME_MAX];
};

struct rd_archiver {
    struct rd_backups *b;
    const char *target; /* the archive target's name */
    /* The commands applied after the committed archive position: every replica. */
    struct entry **ring;
    size_t head, n, cap, bytes;
    uint64_t base;      /* entries up to here are not all in the ring */
    uint64_t last_seen; /* newest index the observer saw */
    uint64_t restores;  /* the fsm's snapshot restores at the last entry */
    bool seen_any;
    /* The leader's side. */
    bool leading;
    uv_timer_t timer;
    uint64_t shipped; /* every command up to here is in a segment written */
    size_t unshipped; /* bytes of the ring's commands after `shipped` */
    bool need_bridge;
    char bridge_id[RD_UUID_STRLEN]; /* the backup that bridges a gap, until it ended */
    struct segment *seg;            /* the segment being written */
    uint64_t retry_at_ns;
    unsigned backoff_ms;
    uint64_t segments_total, gaps_total, write_errors_total, bytes_total;
};

/* ---- the ring ---------------------------------------------------------------------- */

static struct entry *at(const struct rd_archiver *a, size_t i)
{
    return a->ring[(a->head + i) % a->cap];
}

static void drop_oldest(struct rd_archiver *a)
{
    struct entry *e = at(a, 0);
    a->bytes -= e->len;
    if (e->index > a->shipped)
        a->unshipped -= e->len;
    a->head = (a->head + 1) % a->cap;
    a->n--;
    free(e);
}

/* Drops the entries up to `index` (archived, or behind a restore). */
static void trim(struct rd_archiver *a, uint64_t index)
{
    while (a->n > 0 && at(a, 0)->index <= index)
        drop_oldest(a);
}

static void clear(struct rd_archiver *a)
{
    while (a->n > 0)
        drop_oldest(a);
}

static int push(struct rd_archiver *a, uint64_t index, int64_t time_ms, const void *buf, size_t len)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        struct entry **r = malloc(cap * sizeof(*r));
        if (r == NULL)
            return RD_ENOMEM;
        for (size_t i = 0; i < a->n; i++)
            r[i] = at(a, i);
        free(a->ring);
        a->ring = r;
        a->cap = cap;
        a->head = 0;
    }
    struct entry *e = malloc(sizeof(*e) + len);
    if (e == NULL)
        return RD_ENOMEM;
    e->index = index;
    e->time_ms = time_ms;
    e->arrival_ns = rd_mono_ns();
    e->len = (uint32_t)len;
    memcpy(e->data, buf, len);
    a->ring[(a->head + a->n) % a->cap] = e;
    a->n++;
    a->bytes += len;
    if (index > a->shipped)
        a->unshipped += len;
    /* Bounded: the oldest go, and whoever leads must bridge them (a
     * leader that loses commands it has not shipped has a gap). */
    while (a->bytes > RING_MAX_BYTES && a->n > 1) {
        a->base = at(a, 0)->index;
        if (a->leading && a->base > a->shipped && !a->need_bridge) {
            a->need_bridge = true;
            RD_WARN("archive", "ring_overflow", "dropped=%llu shipped=%llu",
                    (unsigned long long)a->base, (unsigned long long)a->shipped);
        }
        drop_oldest(a);
    }
    return 0;
}

/* Sets what was shipped, and the bytes still to ship after it. */
static void set_shipped(struct rd_archiver *a, uint64_t index)
{
    a->shipped = index;
    a->unshipped = 0;
    for (size_t i = a->n; i-- > 0 && at(a, i)->index > index;)
        a->unshipped += at(a, i)->len;
}

/* Entries not archived yet: after the committed position and, on the
 * leader, after what it has written. */
static uint64_t archived(const struct rd_archiver *a)
{
    uint64_t pos = rd_fsm_archive(a->b->env.fsm)->index;
    return a->leading && a->shipped > pos ? a->shipped : pos;
}

static void flush(struct rd_archiver *a);

void rd_backup_entry(struct rd_backups *b, uint64_t index, int64_t time_ms, const void *buf,
                     size_t len)
{
    struct rd_archiver *a = b->archiver;
    if (a == NULL)
        return;
    const struct rd_fsm *f = b->env.fsm;
    if (!a->seen_any || f->restores != a->restores) {
        /* The first entry this process applies, or the first after a
         * snapshot was installed: nothing before it is in the ring. */
        clear(a);
        a->base = index > 0 ? index - 1 : 0;
        a->restores = f->restores;
        a->seen_any = true;
    }
    a->last_seen = index;
    const uint8_t *p = buf;
    if (len > 1 && p[1] == RD_CMD_ARCHIVE) {
        trim(a, archived(a));
        return; /* where archiving stands is not archived */
    }
    if (push(a, index, time_ms, buf, len) != 0) {
        clear(a);
        a->base = index;
        a->need_bridge = a->leading; /* what it had not shipped is gone */
        RD_WARN("archive", "ring_lost", "index=%llu error=out_of_memory",
                (unsigned long long)index);
    }
    trim(a, rd_fsm_archive(f)->index);
    if (a->leading && a->seg == NULL && a->unshipped >= SEGMENT_MAX)
        flush(a);
}

/* ---- segments (leader) ------------------------------------------------------------ */

static void segment_free(struct segment *s)
{
    rd_w_free(&s->raw);
    rd_w_free(&s->z);
    free(s);
}

static void archived_cb(void *data, int status, uint64_t value)
{
    (void)value;
    (void)data;
    if (status != 0)
        RD_DEBUG("archive", "position_unrecorded", "error=%s", rd_err_name(status));
}

static void segment_written(void *data, int status, const char *detail)
{
    struct segment *s = data;
    struct rd_archiver *a = s->a;
    struct rd_backups *b = a->b;
    a->seg = NULL;
    if (status != 0) {
        a->write_errors_total++;
        a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : RETRY_MIN_MS;
        if (a->backoff_ms > RETRY_MAX_MS)
            a->backoff_ms = RETRY_MAX_MS;
        a->retry_at_ns = rd_mono_ns() + (uint64_t)a->backoff_ms * 1000000;
        RD_WARN("archive", "write_failed", "object=%s target=%s retry_ms=%u error=\"%s\"", s->name,
                a->target, a->backoff_ms, detail ? detail : rd_strerror(status));
        segment_free(s);
        return;
    }
    a->backoff_ms = 0;
    a->segments_total++;
    a->bytes_total += s->z.len;
    if (s->last > a->shipped)
        set_shipped(a, s->last);
    RD_DEBUG("archive", "segment", "object=%s commands=%zu bytes=%zu", s->name, s->count, s->z.len);
    if (a->leading) {
        struct rd_cmd cmd = {.type = RD_CMD_ARCHIVE};
        cmd.u.archive.target = RD_STR(a->target);
        cmd.u.archive.index = s->last;
        cmd.u.archive.object = RD_STR(s->name);
        b->env.log.propose(b->env.log.data, &cmd, archived_cb, NULL);
    }
    segment_free(s);
}

static void compress_work(uv_work_t *w)
{
    struct segment *s = w->data;
    size_t bound = ZSTD_compressBound(s->raw.len);
    s->z.p = malloc(bound);
    if (s->z.p == NULL) {
        s->status = RD_ENOMEM;
        return;
    }
    s->z.cap = bound;
    ZSTD_CCtx *z = ZSTD_createCCtx();
    size_t n = z == NULL ? 0 : ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, 3);
    if (z != NULL && !ZSTD_isError(n))
        n = ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
    if (z != NULL && !ZSTD_isError(n))
        n = ZSTD_compress2(z, s->z.p, bound, s->raw.p, s->raw.len);
    ZSTD_freeCCtx(z);
    if (z == NULL || ZSTD_isError(n)) {
        s->status = z == NULL ? RD_ENOMEM : RD_EINTERNAL;
        return;
    }
    s->z.len = n;
}

static void compress_done(uv_work_t *w, int status)
{
    struct segment *s = w->data;
    struct rd_archiver *a = s->a;
    struct rd_backups *b = a->b;
    b->work_inflight--;
    const struct rd_backup_ops *ops;
    void *state;
    const char *why = NULL;
    int rv = status != 0 ? RD_ESHUTDOWN : s->status;
    if (rv == 0)
        rv = rd_backup__target(b, a->target, &ops, &state, &why);
    if (rv == 0)
        rv = ops->write(state, s->name, s->z.p, s->z.len, segment_written, s);
    if (rv != 0)
        segment_written(s, rv, why);
}

/* Cuts a segment of everything applied after what was shipped. */
static void flush(struct rd_archiver *a)
{
    struct rd_backups *b = a->b;
    if (a->seg != NULL || a->need_bridge || rd_mono_ns() < a->retry_at_ns)
        return;
    size_t first_i = a->n;
    while (first_i > 0 && at(a, first_i - 1)->index > a->shipped)
        first_i--;
    if (first_i == a->n)
        return;
    struct segment *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return;
    s->a = a;
    s->first = a->shipped + 1;
    s->last = a->last_seen;
    s->count = a->n - first_i;
    rd_w_init(&s->raw);
    rd_w_init(&s->z);
    const char *cid = rd_fsm_cluster_id(b->env.fsm);
    rd_w_bytes(&s->raw, ARCH_MAGIC, 8);
    rd_w_u32(&s->raw, ARCH_FORMAT);
    rd_w_str(&s->raw, cid, strlen(cid));
    rd_w_u64(&s->raw, s->first);
    rd_w_u64(&s->raw, s->last);
    rd_w_u32(&s->raw, (uint32_t)s->count);
    for (size_t i = first_i; i < a->n; i++) {
        const struct entry *e = at(a, i);
        rd_w_u64(&s->raw, e->index);
        rd_w_i64(&s->raw, e->time_ms);
        rd_w_u32(&s->raw, e->len);
        rd_w_bytes(&s->raw, e->data, e->len);
    }
    snprintf(s->name, sizeof(s->name), RD_ARCHIVE_PREFIX "%s/%020" PRIu64 "-%020" PRIu64 ".zst",
             cid, s->first, s->last);
    s->work.data = s;
    if (s->raw.err != 0 ||
        uv_queue_work(b->env.loop, &s->work, compress_work, compress_done) != 0) {
        segment_free(s);
        return;
    }
    b->work_inflight++;
    a->seg = s;
}

/* A gap behind the committed position: a full backup bridges it, and
 * archiving goes on from the backup's index. */
static void bridge(struct rd_archiver *a)
{
    struct rd_backups *b = a->b;
    if (b->run != NULL || rd_fsm_cluster_id(b->env.fsm)[0] == '\0')
        return; /* after the run in flight; once the cluster is named */
    struct rd_backup_started st;
    uint64_t from = rd_fsm_archive(b->env.fsm)->index;
    int rv = rd_backup__start_bridge(b, &st);
    if (rv != 0) {
        RD_WARN("archive", "bridge_failed", "error=%s", rd_err_name(rv));
        return;
    }
    uint64_t at_index = rd_backup__run_index(b);
    trim(a, at_index);
    set_shipped(a, at_index);
    a->need_bridge = false;
    int k = rd_backup__target_index(b, a->target);
    snprintf(a->bridge_id, sizeof(a->bridge_id), "%s",
             st.ids[k >= 0 && (unsigned)k < st.n ? k : 0]);
    if (from > 0) {
        a->gaps_total++;
        RD_WARN("archive", "gap",
                "from=%llu to=%llu backup=%s reason=\"this leader no longer "
                "holds the commands after the archived index: the backup covers "
                "them\"",
                (unsigned long long)from + 1, (unsigned long long)at_index, a->bridge_id);
    } else {
        RD_INFO("archive", "started", "target=%s backup=%s index=%llu", a->target, a->bridge_id,
                (unsigned long long)at_index);
    }
}

static void tick(uv_timer_t *t)
{
    struct rd_archiver *a = t->data;
    struct rd_backups *b = a->b;
    if (!a->leading || *b->env.shutting_down || !b->env.log.is_leader(b->env.log.data))
        return;
    if (a->bridge_id[0] != '\0') {
        const struct rd_backup *r = rd_fsm_backup_find(b->env.fsm, a->bridge_id);
        if (r != NULL && r->status == RD_BACKUP_FAILED) {
            RD_WARN("archive", "bridge_lost", "backup=%s", a->bridge_id);
            a->need_bridge = true;
        }
        if (r == NULL || r->status != RD_BACKUP_RUNNING)
            a->bridge_id[0] = '\0';
    }
    if (a->need_bridge) {
        bridge(a);
        return;
    }
    /* Cut when the oldest command waiting is half the delay old: the write
     * takes the other half at most. */
    uint64_t half_ns = b->env.cfg->fault_tolerance.backup.archive.max_delay_ms * 500000ULL;
    for (size_t i = 0; i < a->n; i++) {
        const struct entry *e = at(a, i);
        if (e->index <= a->shipped)
            continue;
        if (rd_mono_ns() - e->arrival_ns >= half_ns)
            flush(a);
        break;
    }
}

/* ---- the module's hooks ------------------------------------------------------------- */

int rd_backup__archive_init(struct rd_backups *b, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    if (b->archive_target < 0)
        return 0;
    struct rd_archiver *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return RD_ENOMEM;
    a->b = b;
    a->target = b->targets[b->archive_target].name;
    uv_timer_init(b->env.loop, &a->timer);
    a->timer.data = a;
    b->archiver = a;
    return 0;
}

void rd_backup__archive_start(struct rd_backups *b)
{
    struct rd_archiver *a = b->archiver;
    if (a == NULL || a->leading)
        return;
    a->leading = true;
    a->retry_at_ns = 0;
    a->backoff_ms = 0;
    const struct rd_archive_pos *pos = rd_fsm_archive(b->env.fsm);
    set_shipped(a, pos->index);
    /* Resume after the committed position, when this replica still holds
     * every command after it; otherwise bridge with a full backup. */
    a->need_bridge = pos->index == 0 || strcmp(pos->target, a->target) != 0 || !a->seen_any ||
                     pos->index < a->base;
    if (!a->need_bridge)
        trim(a, pos->index);
    uint64_t period = b->env.cfg->fault_tolerance.backup.archive.max_delay_ms / 4;
    uv_timer_start(&a->timer, tick, 0, period < 10 ? 10 : period);
}

void rd_backup__archive_stop(struct rd_backups *b)
{
    struct rd_archiver *a = b->archiver;
    if (a == NULL || !a->leading)
        return;
    a->leading = false;
    uv_timer_stop(&a->timer);
    a->bridge_id[0] = '\0';
}

bool rd_backup__archive_busy(const struct rd_backups *b)
{
    (void)b; /* its compression counts in b->work_inflight */
    return false;
}

void rd_backup__archive_close(struct rd_backups *b)
{
    struct rd_archiver *a = b->archiver;
    if (a == NULL)
        return;
    clear(a);
    free(a->ring);
    /* A segment still being written waits for a callback that will not
     * come (the loop ended): left as it is. */
    if (a->seg == NULL)
        free(a);
    b->archiver = NULL;
}

void rd_backup__archive_metrics(struct rd_backups *b, struct rd_mbuf *m)
{
    struct rd_archiver *a = b->archiver;
    rd_metric_header(m, "recoveryd_archive_enabled", "gauge",
                     "1 when continuous archiving is configured.");
    rd_mbuf_printf(m, "recoveryd_archive_enabled %d\n", a != NULL);
    if (a == NULL)
        return;
    const struct rd_archive_pos *pos = rd_fsm_archive(b->env.fsm);
    uint64_t done = archived(a), waiting = 0;
    double lag_s = 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct entry *e = at(a, i);
        if (e->index <= done)
            continue;
        if (waiting++ == 0)
            lag_s = (double)(rd_mono_ns() - e->arrival_ns) / 1e9;
    }
    rd_metric_header(m, "recoveryd_archive_index", "gauge",
                     "Every command up to this raft index is archived (committed position).");
    rd_mbuf_printf(m, "recoveryd_archive_index %llu\n", (unsigned long long)pos->index);
    rd_metric_header(m, "recoveryd_archive_lag_entries", "gauge",
                     "Commands applied here and not archived yet.");
    rd_mbuf_printf(m, "recoveryd_archive_lag_entries %llu\n", (unsigned long long)waiting);
    rd_metric_header(m, "recoveryd_archive_lag_seconds", "gauge",
                     "How long the oldest command not archived yet has waited (0: none waits).");
    rd_mbuf_printf(m, "recoveryd_archive_lag_seconds %.3f\n", lag_s);
    rd_metric_header(m, "recoveryd_archive_segments_total", "counter",
                     "Archive segments this replica wrote as leader.");
    rd_mbuf_printf(m, "recoveryd_archive_segments_total %llu\n",
                   (unsigned long long)a->segments_total);
    rd_metric_header(m, "recoveryd_archive_bytes_total", "counter",
                     "Bytes of archive segments this replica wrote as leader.");
    rd_mbuf_printf(m, "recoveryd_archive_bytes_total %llu\n", (unsigned long long)a->bytes_total);
    rd_metric_header(m, "recoveryd_archive_write_errors_total", "counter",
                     "Archive segment writes that failed (retried).");
    rd_mbuf_printf(m, "recoveryd_archive_write_errors_total %llu\n",
                   (unsigned long long)a->write_errors_total);
    rd_metric_header(m, "recoveryd_archive_gaps_total", "counter",
                     "Gaps this replica bridged with a full backup as leader.");
    rd_mbuf_printf(m, "recoveryd_archive_gaps_total %llu\n", (unsigned long long)a->gaps_total);
}

/* ---- replay (recoveryd restore) ------------------------------------------------------ */

struct seg_name {
    char *name;
    uint64_t first, last;
};

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

/* Applies the commands of one segment after `*cur`, up to the point asked
 * for; *stopped when it was reached. */
static int replay_segment(struct rd_fsm *f, const struct seg_name *sn, const uint8_t *z,
                          size_t zlen, const char *cluster_id, const struct rd_restore_opts *o,
                          uint64_t *cur, size_t *applied, bool *stopped, char *err, size_t errlen)
{
    unsigned long long raw_len = ZSTD_getFrameContentSize(z, zlen);
    if (raw_len == ZSTD_CONTENTSIZE_ERROR || raw_len == ZSTD_CONTENTSIZE_UNKNOWN ||
        raw_len > ((unsigned long long)1 << 34))
        return fail(err, errlen, RD_ECORRUPT, "archive segment %s is damaged (not a zstd frame)",
                    sn->name);
    /* The frame header descriptor's Content_Checksum_flag (RFC 8878,
     * 3.1.1.1.1: the byte after the 4-byte magic, bit 2); a valid frame
     * (above) has that byte. */
    bool summed = (z[4] & 0x04) != 0;
    /* Grown as the frame delivers (rd_zstd_inflate), not the size it claims. */
    uint8_t *raw = NULL;
    size_t got = 0;
    int zrv = rd_zstd_inflate(z, zlen, (size_t)raw_len, &raw, &got);
    if (zrv == RD_ENOMEM)
        return fail(err, errlen, RD_ENOMEM, "out of memory reading %s", sn->name);
    int rv = 0;
    if (zrv != 0 || got != raw_len) {
        rv = fail(err, errlen, RD_ECORRUPT, "archive segment %s is damaged (%s)", sn->name,
                  summed ? "decompression or its checksum failed" : "decompression failed");
        goto out;
    }
    struct rd_rbuf r;
    rd_r_init(&r, raw, got);
    const uint8_t *magic = rd_r_bytes(&r, 8);
    uint32_t format = rd_r_u32(&r);
    struct rd_str cid = rd_r_str(&r);
    uint64_t first = rd_r_u64(&r), last = rd_r_u64(&r);
    uint32_t count = rd_r_u32(&r);
    /* A format 2 segment without its checksum lost it to the damage. */
    bool checked = format == 1 || (format == ARCH_FORMAT && summed);
    if (r.err || memcmp(magic, ARCH_MAGIC, 8) != 0 || !checked || first != sn->first ||
        last != sn->last || cid.len != strlen(cluster_id) || memcmp(cid.p, cluster_id, cid.len)) {
        rv = fail(err, errlen, RD_ECORRUPT,
                  "archive segment %s is damaged or not this cluster's (format %u, range "
                  "%" PRIu64 "-%" PRIu64 ")",
                  sn->name, format, first, last);
        goto out;
    }
    uint64_t to = o->to_index ? o->to_index : UINT64_MAX;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t index = rd_r_u64(&r);
        int64_t time_ms = rd_r_i64(&r);
        uint32_t len = rd_r_u32(&r);
        const uint8_t *cmd = rd_r_bytes(&r, len);
        if (r.err) {
            rv = fail(err, errlen, RD_ECORRUPT, "archive segment %s is truncated at command %u",
                      sn->name, i);
            goto out;
        }
        if (index <= *cur)
            continue;
        if (index > to || (o->has_to_time && time_ms > o->to_time_ms)) {
            *stopped = true;
            break;
        }
        const struct rd_fsm_result *res;
        rv = rd_fsm_apply(f, cmd, len, &res);
        if (rv != 0) {
            rv = fail(err, errlen, rv,
                      "archived command at index %" PRIu64 " (in %s) cannot be applied: %s", index,
                      sn->name, f->errmsg);
            goto out;
        }
        (*applied)++;
        *cur = index;
    }
    if (!*stopped)
        *cur = last;
    else if (o->to_index)
        *cur = o->to_index; /* the entries after the last command up to it are raft's own */
out:
    free(raw);
    return rv;
}

int rd_backup__replay(struct rd_fsm *f, struct rd_restore_io *io,
                      const struct rd_backup_manifest *m, const struct rd_restore_opts *o,
                      uint64_t *index, FILE *out, char *err, size_t errlen)
{
    if (o->no_archive || m->cluster_id[0] == '\0')
        return 0;
    char prefix[RD_BACKUP_NAME_MAX], detail[512];
    snprintf(prefix, sizeof(prefix), RD_ARCHIVE_PREFIX "%s/", m->cluster_id);
    char **names;
    size_t n;
    int rv = rd_restore__list(io, prefix, &names, &n, detail, sizeof(detail));
    if (rv != 0)
        return fail(err, errlen, rv, "cannot list the archive %s: %s", prefix,
                    detail[0] ? detail : rd_strerror(rv));
    uint64_t cur = m->index;
    size_t applied = 0, segments = 0;
    bool stopped = false;
    int64_t last_time = 0;
    for (size_t i = 0; i < n && rv == 0 && !stopped; i++) {
        struct seg_name sn = {.name = names[i]};
        unsigned long long a, b;
        int used = 0;
        if (sscanf(names[i] + strlen(prefix), "%20llu-%20llu.zst%n", &a, &b, &used) != 2 ||
            names[i][strlen(prefix) + (size_t)used] != '\0' || a > b)
            continue; /* not a segment */
        sn.first = a;
        sn.last = b;
        if (sn.last <= cur)
            continue;
        if (sn.first > cur + 1) {
            if (o->to_index > cur)
                rv = fail(err, errlen, RD_ENOTFOUND,
                          "the archive has a hole: nothing covers indexes %" PRIu64 " to %" PRIu64
                          " (the next segment is %s), so index %" PRIu64
                          " cannot be reached from backup %s; the newest reachable is %" PRIu64,
                          cur + 1, sn.first - 1, names[i], o->to_index, m->backup_id, cur);
            else
                fprintf(out,
                        "restore: warning: the archive has a hole after index %" PRIu64
                        " (next segment: %s): restoring up to index %" PRIu64 "\n",
                        cur, names[i], cur);
            break;
        }
        if (o->to_index != 0 && sn.first > o->to_index)
            break; /* nothing asked for is in it (nor in those after) */
        uint8_t *z;
        size_t zlen;
        rv = rd_restore__get(io, names[i], &z, &zlen);
        if (rv != 0) {
            rv = fail(err, errlen, rv, "cannot read archive segment %s: %s", names[i],
                      rd_strerror(rv));
            break;
        }
        uint64_t before = cur;
        rv = replay_segment(f, &sn, z, zlen, m->cluster_id, o, &cur, &applied, &stopped, err,
                            errlen);
        free(z);
        if (rv == RD_ECORRUPT) {
            /* What can still be restored: up to the segment before it. */
            size_t have = strlen(err);
            snprintf(err + have, errlen - have,
                     "; backup %s and the archive before it reach index %" PRIu64
                     " (--to-index %" PRIu64 "), or restore the backup alone (--no-archive)",
                     m->backup_id, before, before);
        }
        segments++;
        last_time = f->last_time_ms;
    }
    rd_restore__names_free(names, n);
    if (rv != 0)
        return rv;
    if (o->to_index > cur)
        return fail(err, errlen, RD_ENOTFOUND,
                    "--to-index %" PRIu64 " is past the end of the archive: backup %s and the "
                    "archive after it reach index %" PRIu64,
                    o->to_index, m->backup_id, cur);
    char when[RD_TIME_STRLEN] = "-";
    if (last_time > 0)
        rd_time_format(last_time, when);
    fprintf(out,
            "restore: replayed %zu archived commands from %zu segments: state at index %" PRIu64
            " (newest command %s)\n",
            applied, segments, cur, when);
    if (o->has_to_time && !stopped)
        fprintf(out, "restore: note: the archive ends before --to-time; restored to its end\n");
    *index = cur;
    return 0;
}
