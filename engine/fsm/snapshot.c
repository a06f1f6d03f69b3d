/*
 * Snapshots of the whole state machine: the container and the order of its
 * sections. Each record kind writes and reads its own section (nodes.c,
 * faults.c, tasks.c, recovery.c, replicas.c); this file frames them:
 *
 *   header:  "RDSNAP\0\1" | u32 format | u64 raw length | u64 FNV-1a of raw
 *   frame:   zstd (level 3) of raw
 *   raw:     u64 applied | i64 last time | nodes | faults | tasks
 *            | recovery runs | replicas (format 3 on)
 *            | backups and the archive position | checks (format 4 on)
 *            | audit records (format 5 on) | the export position and the
 *            records' changed indexes (format 6 on) | conflict records
 *            (format 8 on)
 *
 * The header's checksum is FNV-1a over the raw bytes (it checks the
 * transfer); the state digest is another thing (digest.h).
 *
 * Formats only grow by appending (docs/architecture.md): 2 added failure
 * times to each task, 3 the replicas section, 4 backups, the archive and
 * checks, 5 audit records, 6 the export section, 7 each task's attempt
 * base, deadline and finishing index, 8 conflict records, 9 the time each
 * task last left an agent, 10 the nodes of each task's newest attempts;
 * every older format still
 * reads. tests/unit/fsm/test_snapshot.c holds the current format to a
 * golden file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/util.h"
#include "fsm_int.h"
#include "recoveryd/error.h"

#define SNAP_MAGIC "RDSNAP\0\1"
/* 10: tasks carry the nodes of their newest attempts; 9: tasks carry moved_at; 8: conflict records;
 * 7: tasks carry attempt_base, deadline_ms, finished; 6: the export section; 5: audit records; 4:
 * backups, archive and checks; 3: replica API URLs; 2: tasks carry failure times; 1 to 3 are still
 * read */
#define SNAP_FORMAT 10

static void write_state(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u64(w, f->n_applied);
    rd_w_i64(w, f->last_time_ms);
    rd_fsm__nodes_write(f, w);
    rd_fsm__faults_write(f, w);
    rd_fsm__tasks_write(f, w);
    rd_fsm__recoveries_write(f, w);
    rd_fsm__replicas_write(f, w);
    rd_fsm__backups_write(f, w);
    rd_fsm__checks_write(f, w);
    rd_fsm__audits_write(f, w);
    rd_fsm__export_write(f, w);
    rd_fsm__conflicts_write(f, w);
}

static int read_state(struct rd_fsm *f, const void *p, size_t len, unsigned format)
{
    struct rd_rbuf r;
    rd_r_init(&r, p, len);
    f->n_applied = rd_r_u64(&r);
    f->last_time_ms = rd_r_i64(&r);
    int rv = rd_fsm__nodes_read(f, &r);
    if (rv == 0)
        rv = rd_fsm__faults_read(f, &r);
    if (rv == 0)
        rv = rd_fsm__tasks_read(f, &r, format);
    if (rv == 0)
        rv = rd_fsm__recoveries_read(f, &r);
    if (rv == 0 && format >= 3)
        rv = rd_fsm__replicas_read(f, &r);
    if (rv == 0 && format >= 4)
        rv = rd_fsm__backups_read(f, &r);
    if (rv == 0 && format >= 4)
        rv = rd_fsm__checks_read(f, &r);
    if (rv == 0 && format >= 5)
        rv = rd_fsm__audits_read(f, &r);
    if (rv == 0 && format >= 6)
        rv = rd_fsm__export_read(f, &r);
    else if (rv == 0)
        rd_fsm__export_read_old(f);
    if (rv == 0 && format >= 8)
        rv = rd_fsm__conflicts_read(f, &r);
    if (rv != 0)
        return rv;
    return r.off == r.len ? 0 : RD_ECORRUPT;
}

int rd_fsm_snapshot_raw(const struct rd_fsm *f, struct rd_wbuf *raw)
{
    write_state(f, raw);
    return raw->err;
}

int rd_fsm_snapshot_pack(const void *raw, size_t len, struct rd_wbuf *out)
{
    size_t bound = ZSTD_compressBound(len);
    rd_w_bytes(out, SNAP_MAGIC, 8);
    rd_w_u32(out, SNAP_FORMAT);
    rd_w_u64(out, len);
    rd_w_u64(out, rd_fnv1a(RD_FNV_INIT, raw, len));
    size_t hdr = out->len;
    /* Reserve room for the compressed frame, then compress in place. */
    if (out->err == 0 && out->cap < hdr + bound) {
        uint8_t *np = realloc(out->p, hdr + bound);
        if (np == NULL)
            out->err = RD_ENOMEM;
        else {
            out->p = np;
            out->cap = hdr + bound;
        }
    }
    if (out->err)
        return out->err;
    size_t z = ZSTD_compress(out->p + hdr, bound, raw, len, 3);
    if (ZSTD_isError(z))
        return RD_EINTERNAL;
    out->len = hdr + z;
    return 0;
}

/* ---- streamed (rd_fsm_snapshot_stream) ----------------------------------------------------- */

#define STREAM_CHUNK (256u << 10) /* the walk's buffer: well inside a core's L2 */

struct stream {
    uint64_t len, sum;
    ZSTD_CCtx *z;
    struct rd_wbuf *out;
};

/* Feeds `n` bytes (or, with ZSTD_e_end, the frame's end) into s->out. */
static int compress_some(struct stream *s, const void *p, size_t n, ZSTD_EndDirective end)
{
    ZSTD_inBuffer in = {p, n, 0};
    struct rd_wbuf *out = s->out;
    for (;;) {
        size_t room = ZSTD_CStreamOutSize();
        if (out->cap - out->len < room) {
            size_t ncap = out->cap * 2 > out->len + room ? out->cap * 2 : out->len + room;
            uint8_t *np = realloc(out->p, ncap);
            if (np == NULL)
                return out->err = RD_ENOMEM;
            out->p = np;
            out->cap = ncap;
        }
        ZSTD_outBuffer o = {out->p, out->cap, out->len};
        size_t left = ZSTD_compressStream2(s->z, &o, &in, end);
        if (ZSTD_isError(left))
            return RD_EINTERNAL;
        out->len = o.pos;
        if (end == ZSTD_e_end ? left == 0 : in.pos == in.size)
            return 0;
    }
}

/* A chunk of the walk: into the checksum and the compressor. */
static void compress_sink(struct rd_wbuf *w, void *data)
{
    struct stream *s = data;
    s->len += w->len;
    s->sum = rd_fnv1a(s->sum, w->p, w->len);
    int rv = compress_some(s, w->p, w->len, ZSTD_e_continue);
    if (rv != 0)
        w->err = rv;
}

int rd_fsm_snapshot_stream(const struct rd_fsm *f, struct rd_wbuf *out, uint64_t *raw_len)
{
    /* The length first (a walk that keeps nothing): the frame says its
     * content size, as ZSTD_compress's does, and readers check it against
     * the header (unpack). */
    struct rd_wbuf w;
    rd_w_init_count(&w);
    write_state(f, &w);
    uint64_t len = w.len;
    if (w.err)
        return w.err;
    struct stream s = {.sum = RD_FNV_INIT, .out = out};
    rd_w_bytes(out, SNAP_MAGIC, 8);
    rd_w_u32(out, SNAP_FORMAT);
    rd_w_u64(out, len);
    size_t sum_at = out->len;
    rd_w_u64(out, 0); /* the checksum, known at the end */
    int rv = out->err;
    s.z = rv == 0 ? ZSTD_createCCtx() : NULL;
    if (rv == 0 &&
        (s.z == NULL || ZSTD_isError(ZSTD_CCtx_setParameter(s.z, ZSTD_c_compressionLevel, 3)) ||
         ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(s.z, len))))
        rv = RD_ENOMEM;
    if (rv == 0)
        rv = rd_w_init_sink(&w, STREAM_CHUNK, compress_sink, &s);
    if (rv == 0) {
        write_state(f, &w);
        rd_w_flush(&w);
        rv = w.err;
    }
    if (rv == 0)
        rv = s.len == len ? compress_some(&s, NULL, 0, ZSTD_e_end) : RD_EINTERNAL;
    ZSTD_freeCCtx(s.z);
    rd_w_free(&w);
    if (rv != 0)
        return rv;
    for (int i = 0; i < 8; i++)
        out->p[sum_at + i] = (uint8_t)(s.sum >> (8 * i));
    *raw_len = len;
    return 0;
}

int rd_fsm_snapshot(const struct rd_fsm *f, struct rd_wbuf *out)
{
    struct rd_wbuf raw;
    rd_w_init(&raw);
    int rv = rd_fsm_snapshot_raw(f, &raw);
    if (rv == 0)
        rv = rd_fsm_snapshot_pack(raw.p, raw.len, out);
    rd_w_free(&raw);
    return rv;
}

/*
 * The raw state inside an image: header, size, decompression and checksum
 * checked. 0 with *raw (malloc'd), *raw_len and *format, or RD_E* with the
 * reason in `why`.
 */
static int unpack(const void *buf, size_t len, uint8_t **raw_out, size_t *raw_len_out,
                  uint32_t *format_out, char *why, size_t n)
{
    struct rd_rbuf r;
    rd_r_init(&r, buf, len);
    const uint8_t *magic = rd_r_bytes(&r, 8);
    uint32_t format = rd_r_u32(&r);
    uint64_t raw_len = rd_r_u64(&r);
    uint64_t sum = rd_r_u64(&r);
    if (r.err || memcmp(magic, SNAP_MAGIC, 8) != 0) {
        snprintf(why, n, "snapshot: bad magic or short header");
        return RD_ECORRUPT;
    }
    if (format < 1 || format > SNAP_FORMAT) {
        snprintf(why, n, "snapshot: format %u, this version reads 1 to %u", format, SNAP_FORMAT);
        return RD_EUNSUPPORTED;
    }
    unsigned long long frame = ZSTD_getFrameContentSize(r.p + r.off, r.len - r.off);
    if (frame != raw_len || raw_len > (1ULL << 34)) {
        snprintf(why, n, "snapshot: size mismatch");
        return RD_ECORRUPT;
    }
    uint8_t *raw = NULL;
    size_t got = 0;
    /* Never the size the header claims up front (rd_zstd_inflate): a 44-byte
     * snapshot claiming 16 GiB made the restore allocate it at once. */
    int zrv = rd_zstd_inflate(r.p + r.off, r.len - r.off, (size_t)raw_len, &raw, &got);
    if (zrv == RD_ENOMEM) {
        snprintf(why, n, "snapshot: out of memory decompressing %llu bytes",
                 (unsigned long long)raw_len);
        return RD_ENOMEM;
    }
    if (zrv != 0 || got != raw_len || rd_fnv1a(RD_FNV_INIT, raw, got) != sum) {
        free(raw);
        snprintf(why, n, "snapshot: checksum or decompression failed");
        return RD_ECORRUPT;
    }
    *raw_out = raw;
    *raw_len_out = got;
    *format_out = format;
    return 0;
}

int rd_fsm_snapshot_check(const void *buf, size_t len, char *why, size_t n)
{
    uint8_t *raw;
    size_t got;
    uint32_t format;
    int rv = unpack(buf, len, &raw, &got, &format, why, n);
    if (rv == 0)
        free(raw);
    return rv;
}

int rd_fsm_restore(struct rd_fsm *f, const void *buf, size_t len)
{
    uint8_t *raw;
    size_t got;
    uint32_t format;
    int rv = unpack(buf, len, &raw, &got, &format, f->errmsg, sizeof(f->errmsg));
    if (rv != 0)
        return rv;
    struct rd_fsm fresh;
    rd_fsm_init(&fresh);
    rv = read_state(&fresh, raw, got, format);
    free(raw);
    if (rv != 0) {
        rd_fsm__clear(&fresh);
        snprintf(f->errmsg, sizeof(f->errmsg), "snapshot: %s", rd_strerror(rv));
        return rv;
    }
    /* Everything decoded: swap the new state in (observers, raft glue and
     * local counts stay). */
    rd_fsm__clear(f);
    rd_fsm__nodes_move(f, &fresh);
    rd_fsm__faults_move(f, &fresh);
    rd_fsm__tasks_move(f, &fresh);
    rd_fsm__recoveries_move(f, &fresh);
    rd_fsm__replicas_move(f, &fresh);
    rd_fsm__backups_move(f, &fresh);
    rd_fsm__checks_move(f, &fresh);
    rd_fsm__audits_move(f, &fresh);
    rd_fsm__conflicts_move(f, &fresh);
    rd_fsm__export_move(f, &fresh);
    f->n_applied = fresh.n_applied;
    f->last_time_ms = fresh.last_time_ms;
    f->restores++;
    /* The records' hashes were never taken while reading: the one walk of
     * the whole state the incremental digest needs. */
    rd_fsm__dg_rebuild(f);
    return 0;
}
