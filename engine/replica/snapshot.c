/*
 * raft's own snapshots taken off the loop (snapshot.h).
 *
 * A job's life: the state machine's snapshot callback forks the child and
 * returns one placeholder buffer (a marker naming the job); libraft calls
 * snapshot_put with it at once (legacyTakeSnapshot), which holds the request;
 * the child's image arrives (image.c), replaces the placeholder's bytes, and
 * the request goes on to libraft's own snapshot_put. A close while a job is
 * held waits for its child (killed) and answers the request RAFT_CANCELED
 * first, the one failure libraft takes.
 *
 * The byte bound (snapshot.h) rides on the same wrapping: apply counts, the
 * snapshot callback (libraft calls it at the index it snapshots, right after
 * the apply that reached it) starts the count again.
 */
#include "snapshot.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "fsm/fsm.h"
#include "image.h"
#include "recoveryd/error.h"
#include "replica.h"

#define MARKER_MAGIC "RDSNAPJOB"

struct marker {
    char magic[sizeof(MARKER_MAGIC)];
    struct rd_snap_job *job;
};

struct rd_snap_job {
    struct rd_snapshotter *s;
    struct rd_image_job img;
    struct rd_wbuf image;
    uint64_t started_ns;
    bool image_in; /* the child's image is in (or the child failed: status) */
    int status;
    /* The held snapshot_put, once libraft called it. */
    bool put_held;
    unsigned trailing;
    struct raft_io_snapshot_put *req;
    const struct raft_snapshot *snapshot;
    raft_io_snapshot_put_cb cb;
};

static struct rd_snapshotter *of_raft(struct raft *raft)
{
    struct rd_replica *r = raft != NULL ? raft->data : NULL;
    return r != NULL && r->snap.attached ? &r->snap : NULL;
}

static void job_free(struct rd_snap_job *job)
{
    rd_w_free(&job->image);
    free(job);
}

/* The held request answered RAFT_CANCELED, then the close goes on. */
static void close_now(struct rd_snapshotter *s)
{
    struct rd_snap_job *job = s->job;
    s->job = NULL;
    if (job != NULL) {
        if (job->put_held)
            job->cb(job->req, RAFT_CANCELED);
        job_free(job);
    }
    raft_io_close_cb cb = s->close_cb;
    s->close_cb = NULL;
    s->io_close(s->io, cb);
}

/* The image is in: into the placeholder's place, and on to libraft's put. */
static void release(struct rd_snap_job *job)
{
    struct rd_snapshotter *s = job->s;
    if (job->status != 0) {
        s->failed++;
        char why[256];
        snprintf(why, sizeof(why),
                 "the child imaging raft's snapshot at index %llu failed (%s): that state cannot "
                 "be imaged any more",
                 (unsigned long long)job->snapshot->index, job->img.errmsg);
        RD_ERROR("replica", "snapshot_failed",
                 "index=%llu error=%s detail=\"%s; the replica stops after a clean close, its "
                 "log holds every entry (nothing committed is lost) and the next start "
                 "snapshots again\"",
                 (unsigned long long)job->snapshot->index, rd_err_name(job->status),
                 job->img.errmsg);
        if (s->on_failed != NULL)
            s->on_failed(s->on_failed_data, why); /* the request stays held until the close */
        return;
    }
    /* raft frees the buffers with raft_free: its default heap is malloc's
     * (fsm.c hands its buffers over the same way). */
    struct raft_buffer *buf = (struct raft_buffer *)&job->snapshot->bufs[0];
    raft_free(buf->base);
    buf->base = job->image.p;
    buf->len = job->image.len;
    rd_w_init(&job->image);
    s->job = NULL;
    s->last_image_ms = (rd_mono_ns() - job->started_ns) / 1000000;
    s->last_bytes = buf->len;
    RD_INFO("replica", "snapshot_imaged", "index=%llu bytes=%zu ms=%llu fork_us=%llu",
            (unsigned long long)job->snapshot->index, buf->len,
            (unsigned long long)s->last_image_ms, (unsigned long long)job->img.fork_us);
    int rv = s->io_put(s->io, job->trailing, job->req, job->snapshot, job->cb);
    if (rv != 0) {
        /* libraft's put refused at once (only while closing: it takes no
         * other failure); the request is answered as canceled. */
        RD_WARN("replica", "snapshot_put_refused", "error=\"%s\"", raft_strerror(rv));
        job->cb(job->req, RAFT_CANCELED);
    }
    job_free(job);
}

static void image_in(struct rd_image_job *img, int status)
{
    struct rd_snap_job *job = img->data;
    struct rd_snapshotter *s = job->s;
    job->image_in = true;
    job->status = status;
    if (s->closing) {
        close_now(s);
        return;
    }
    if (job->put_held)
        release(job);
}

/* ---- the log bounded by bytes ----------------------------------------------- */

static void bytes_applied(struct rd_snapshotter *s, size_t len)
{
    if (s->raft == NULL)
        return;
    s->since_bytes += len;
    if (s->sizes_cap > 0) {
        s->sizes[s->sizes_head] = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
        s->sizes_head = (s->sizes_head + 1) % s->sizes_cap;
        if (s->sizes_n < s->sizes_cap)
            s->sizes_n++;
    }
    if (s->threshold_bytes == 0 || s->armed || s->since_bytes < s->threshold_bytes)
        return;
    /* libraft snapshots once commit - last snapshot reaches its threshold,
     * checked after this apply's step: 1 takes one now (or as soon as the one
     * in flight is done). */
    s->armed = true;
    raft_set_snapshot_threshold(s->raft, 1);
    RD_DEBUG("replica", "snapshot_on_bytes", "bytes=%llu threshold_bytes=%llu",
             (unsigned long long)s->since_bytes, (unsigned long long)s->threshold_bytes);
}

/* The newest entries, at most `trailing`, whose bytes fit in trailing_bytes. */
static unsigned trailing_fit(const struct rd_snapshotter *s)
{
    if (s->trailing_bytes == 0)
        return s->trailing;
    uint64_t sum = 0;
    unsigned k = 0;
    while (k < s->trailing && k < s->sizes_n) {
        unsigned at = (s->sizes_head + s->sizes_cap - 1 - k) % s->sizes_cap;
        if (sum + s->sizes[at] > s->trailing_bytes)
            break;
        sum += s->sizes[at];
        k++;
    }
    return k;
}

/* ---- snapshots staggered across the replicas -------------------------------- */

static bool staggered(const struct rd_snapshotter *s)
{
    return s->of > 1 && s->threshold >= s->of;
}

/* libraft's own threshold when nothing is armed. */
static unsigned base_threshold(const struct rd_snapshotter *s)
{
    if (!staggered(s))
        return s->threshold;
    return s->threshold > UINT_MAX / 2 ? UINT_MAX : 2 * s->threshold;
}

uint64_t rd_snapshot_next_at(uint64_t last, unsigned threshold, unsigned place, unsigned of)
{
    if (of <= 1 || threshold < of)
        return last + threshold;
    uint64_t t = threshold, phase = t * (place % of) / of;
    uint64_t earliest = last + t / 2;
    /* The first index >= earliest that is phase past a multiple of t. */
    uint64_t at = earliest - earliest % t + phase;
    return at >= earliest ? at : at + t;
}

/* After each apply: at the index picked, libraft's threshold goes to 1 so
 * that it snapshots right after this apply (it reads the threshold after
 * every step). */
static void phase_applied(struct rd_snapshotter *s)
{
    if (!staggered(s) || s->phase_armed || s->raft == NULL)
        return;
    uint64_t index = raft_last_applied(s->raft) + 1; /* libraft sets it after apply */
    if (s->next_at == 0) /* from the start or a restore: the index before is the last one */
        s->next_at = rd_snapshot_next_at(index - 1, s->threshold, s->place, s->of);
    if (index < s->next_at)
        return;
    s->phase_armed = true;
    raft_set_snapshot_threshold(s->raft, 1);
}

/* Where the byte count starts (rd_snapshotter_stagger). */
static uint64_t bytes_credit(const struct rd_snapshotter *s)
{
    return staggered(s) && s->threshold_bytes > 0 ? s->threshold_bytes * s->place / s->of : 0;
}

void rd_snapshotter_stagger(struct rd_snapshotter *s, unsigned place, unsigned of)
{
    s->place = of > 0 ? place % of : 0;
    s->of = of;
    s->next_at = 0;
    s->phase_armed = false;
    if (s->raft == NULL)
        return;
    raft_set_snapshot_threshold(s->raft, base_threshold(s));
    /* The byte count starts place / of of the way in: byte-bound
     * snapshots apart from the start too. */
    s->since_bytes = bytes_credit(s);
}

/* libraft takes a snapshot at the last applied index: the byte count
 * starts again, the entry threshold is put back, the trailing entries
 * fitted, the next staggered index picked. */
static void snapshot_started(struct rd_snapshotter *s)
{
    if (s->raft == NULL)
        return;
    if (s->armed) {
        s->on_bytes++;
        RD_INFO("replica", "snapshot_on_bytes", "bytes=%llu threshold_bytes=%llu",
                (unsigned long long)s->since_bytes, (unsigned long long)s->threshold_bytes);
    }
    if (s->armed || s->phase_armed)
        raft_set_snapshot_threshold(s->raft, base_threshold(s));
    s->armed = s->phase_armed = false;
    s->next_at = staggered(s) ? rd_snapshot_next_at(raft_last_applied(s->raft), s->threshold,
                                                    s->place, s->of)
                              : 0;
    s->since_bytes = 0;
    s->last_trailing = trailing_fit(s);
    raft_set_snapshot_trailing(s->raft, s->last_trailing);
}

static int fsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
    struct rd_fsm *f = rf->data;
    struct rd_snapshotter *s = of_raft(f->raft_ref);
    if (s == NULL)
        return RAFT_NOMEM; /* never: raft applies only while the machine is bound to it */
    int rv = s->fsm_apply(rf, buf, result);
    bytes_applied(s, buf->len);
    phase_applied(s);
    return rv;
}

/* An installed snapshot (or the one loaded at start): the log before it is
 * gone, the count starts again; the entries replayed after it count. */
static int fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    struct rd_fsm *f = rf->data;
    struct rd_snapshotter *s = of_raft(f->raft_ref);
    if (s == NULL)
        return RAFT_NOMEM; /* never, as apply */
    int rv = s->fsm_restore(rf, buf);
    if (rv == 0) {
        s->since_bytes = bytes_credit(s);
        s->sizes_n = 0;
        s->next_at = 0; /* from the snapshot's index: the next apply's, less one */
    }
    return rv;
}

int rd_snapshotter_bound(struct rd_snapshotter *s, struct raft *raft, unsigned threshold,
                         unsigned trailing, uint64_t threshold_bytes, uint64_t trailing_bytes)
{
    unsigned cap = trailing_bytes == 0            ? 0
                   : trailing < RD_SNAP_SIZES_MAX ? trailing
                                                  : RD_SNAP_SIZES_MAX;
    uint32_t *sizes = NULL;
    if (cap > 0 && (sizes = calloc(cap, sizeof(*sizes))) == NULL)
        return RD_ENOMEM;
    rd_snapshotter_free(s);
    s->sizes = sizes;
    s->sizes_cap = cap;
    s->raft = raft;
    s->threshold = threshold;
    s->trailing = trailing;
    s->threshold_bytes = threshold_bytes;
    s->trailing_bytes = trailing_bytes;
    s->since_bytes = 0;
    s->armed = false;
    s->last_trailing = trailing;
    s->of = 1;
    s->place = 0;
    s->next_at = 0;
    s->phase_armed = false;
    raft_set_snapshot_threshold(raft, threshold);
    raft_set_snapshot_trailing(raft, trailing);
    return 0;
}

void rd_snapshotter_free(struct rd_snapshotter *s)
{
    free(s->sizes);
    s->sizes = NULL;
    s->sizes_cap = s->sizes_head = s->sizes_n = 0;
}

/* ---- the snapshot imaged by a child ---------------------------------------- */

static int fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n)
{
    struct rd_fsm *f = rf->data;
    struct rd_snapshotter *s = of_raft(f->raft_ref);
    if (s == NULL || s->job != NULL)
        return s != NULL ? RAFT_BUSY : RAFT_NOMEM; /* neither happens: one snapshot at a time */
    snapshot_started(s);
    struct rd_snap_job *job = calloc(1, sizeof(*job));
    struct marker *m = raft_malloc(sizeof(*m));
    *bufs = raft_malloc(sizeof(**bufs));
    if (job == NULL || m == NULL || *bufs == NULL) {
        free(job);
        raft_free(m);
        raft_free(*bufs);
        *bufs = NULL;
        return RAFT_NOMEM;
    }
    job->s = s;
    job->started_ns = rd_mono_ns();
    rd_w_init(&job->image);
    int rv = rd_image_fork(s->loop, f, s->cpu_share, &job->image, &job->img, image_in, job);
    if (rv != 0) {
        free(job);
        raft_free(m);
        raft_free(*bufs);
        *bufs = NULL;
        s->on_loop++;
        RD_WARN("replica", "snapshot_fork_failed",
                "error=%s detail=\"serialising raft's snapshot on the loop instead\"",
                rd_err_name(rv));
        return s->fsm_snapshot(rf, bufs, n);
    }
    memcpy(m->magic, MARKER_MAGIC, sizeof(m->magic));
    m->job = job;
    (*bufs)[0].base = m;
    (*bufs)[0].len = sizeof(*m);
    *n = 1;
    s->job = job;
    s->forked++;
    s->last_fork_us = job->img.fork_us;
    RD_DEBUG("replica", "snapshot_forked", "pid=%d fork_us=%llu", (int)job->img.pid,
             (unsigned long long)job->img.fork_us);
    return 0;
}

static struct rd_snap_job *placeholder_of(const struct rd_snapshotter *s,
                                          const struct raft_snapshot *snapshot)
{
    if (s->job == NULL || snapshot->n_bufs != 1 || snapshot->bufs[0].len != sizeof(struct marker))
        return NULL;
    const struct marker *m = snapshot->bufs[0].base;
    if (memcmp(m->magic, MARKER_MAGIC, sizeof(m->magic)) != 0 || m->job != s->job)
        return NULL;
    return s->job;
}

static int io_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                  const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct rd_snapshotter *s = of_raft(io->data);
    struct rd_snap_job *job = s != NULL ? placeholder_of(s, snapshot) : NULL;
    if (job == NULL) /* an installed snapshot, or one made on the loop */
        return s->io_put(io, trailing, req, snapshot, cb);
    if (job->put_held)
        return RAFT_BUSY;
    job->put_held = true;
    job->trailing = trailing;
    job->req = req;
    job->snapshot = snapshot;
    job->cb = cb;
    /* The child cannot have answered yet: its image arrives through the
     * loop, and libraft puts right after it snapshots. */
    if (job->image_in)
        RD_WARN("replica", "snapshot_image_early", "detail=\"held until the next read\"");
    return 0;
}

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct rd_snapshotter *s = of_raft(io->data);
    s->closing = true;
    s->close_cb = cb;
    if (s->job != NULL && !s->job->image_in) {
        rd_image_cancel(&s->job->img); /* image_in follows, then the close */
        return;
    }
    close_now(s);
}

void rd_snapshotter_attach(struct rd_snapshotter *s, uv_loop_t *loop, struct rd_fsm *fsm,
                           struct raft_io *io)
{
    s->loop = loop;
    s->fsm = fsm;
    s->io = io;
    /* A machine attached before (a replica started again on it) already
     * calls this file's callback: what it wraps stays the machine's own. */
    if (fsm->raft.snapshot != fsm_snapshot)
        s->fsm_snapshot = fsm->raft.snapshot;
    if (fsm->raft.apply != fsm_apply)
        s->fsm_apply = fsm->raft.apply;
    if (fsm->raft.restore != fsm_restore)
        s->fsm_restore = fsm->raft.restore;
    s->io_put = io->snapshot_put;
    s->io_close = io->close;
    fsm->raft.snapshot = fsm_snapshot;
    fsm->raft.apply = fsm_apply;
    fsm->raft.restore = fsm_restore;
    io->snapshot_put = io_put;
    io->close = io_close;
    s->attached = true;
}

pid_t rd_snapshotter_child(const struct rd_snapshotter *s)
{
    return s->job != NULL && !s->job->image_in ? s->job->img.pid : 0;
}
