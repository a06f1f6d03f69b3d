/*
 * Backups on the leader: the schedule, runs (image, BEGIN, objects,
 * COMPLETE or FAIL), records left running by a leader that went away,
 * retention, verification and the cluster id. docs/backup.md tells the
 * story; backup.h the contract.
 *
 * A run takes one image for every target at one instant (the state, its
 * raft index and term, its digest): a forked child serialises and packs it
 * (zstd, checksum) from the copy-on-write view the fork gave it, so the loop
 * pays only the fork (image.h); the run writes it to each target as its own
 * backup (one record each). Only one run is in flight at a time; triggers
 * meanwhile wait in a short queue. A run whose leader lost its leadership is
 * abandoned: the writes under way finish, nothing more is proposed, and the
 * next leader finds the records still running and settles them from what
 * the target holds (the manifest is written last: present means complete).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "backup_int.h"
#include "common/log.h"
#include "replica/image.h"
#include "plugin/host.h"
#include "recoveryd/error.h"
#include "recoveryd/version.h"

/* The tick: schedule, stuck records, retention, cluster id. */
#define TICK_MAX_MS 1000
#define TICK_MIN_MS 50

struct rd_backup_part {
    struct rd_backup_run *run;
    char id[RD_UUID_STRLEN];
    char target[64];
    bool begun;   /* BEGIN committed: the record exists */
    bool writing; /* an object write is under way */
    bool done;
    char error[512];
};

struct rd_backup_run {
    struct rd_backups *b;
    struct rd_image_job img; /* the image from a forked child (image.h) */
    bool forked;             /* the image comes from img, not the thread pool */
    uv_work_t work;
    struct rd_wbuf raw;   /* the serialised state, until packed */
    struct rd_wbuf image; /* the snapshot bytes: what backups/<id>.img holds */
    int pack_status;
    bool packed;
    bool abandoned; /* leadership lost: finish the I/O, propose nothing */
    bool scheduled;
    uint64_t index, term, digest, checksum;
    int64_t created_at_ms;
    uint64_t started_ns;
    char cluster_id[65];
    unsigned n_parts;
    unsigned outstanding; /* callbacks still to come (proposals, writes, the pack) */
    struct rd_backup_part parts[RD_CFG_MAX_PLUGINS];
};

/* ---- targets ---------------------------------------------------------------- */

int rd_backup__target(struct rd_backups *b, const char *name, const struct rd_backup_ops **ops,
                      void **state, const char **why)
{
    return rd_plugin_host_backup(b->env.plugins, name, ops, state, why);
}

int rd_backup__target_index(const struct rd_backups *b, const char *name)
{
    for (unsigned i = 0; i < b->n_targets; i++)
        if (strcmp(b->targets[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void target_list(const struct rd_backups *b, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < b->n_targets && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "", b->targets[i].name);
}

/* ---- life cycle --------------------------------------------------------------- */

int rd_backup_init(struct rd_backups *b, const struct rd_backup_env *env)
{
    memset(b, 0, sizeof(*b));
    b->env = *env;
    b->archive_target = -1;
    uv_timer_init(env->loop, &b->timer);
    b->timer.data = b;
    return 0;
}

int rd_backup_bind(struct rd_backups *b, char *err, size_t errlen)
{
    const struct rd_config *cfg = b->env.cfg;
    const char *file = cfg->path[0] ? cfg->path : "(defaults)";
    int line = cfg->origin[RD_CFG_BACKUP_TARGETS];
    b->n_targets = 0;
    if (line != 0) {
        for (unsigned i = 0; i < cfg->fault_tolerance.backup.n_targets; i++) {
            const char *name = cfg->fault_tolerance.backup.targets[i];
            const struct rd_backup_ops *ops;
            void *state;
            const char *why;
            int rv = rd_backup__target(b, name, &ops, &state, &why);
            if (rv == RD_ENOTFOUND || rv == RD_EINVAL) {
                snprintf(err, errlen,
                         "%s:%d: fault_tolerance.backup.targets[%u]: instance '%s' is %s%s, not a "
                         "backup target (backup plugins: file, s3, postgres)",
                         file, line, i, name, rv == RD_EINVAL ? "a plugin of kind " : "",
                         why ? why : "");
                return RD_ECONFIG;
            }
            snprintf(b->targets[b->n_targets++].name, sizeof(b->targets[0].name), "%s", name);
        }
    } else {
        const char *name;
        for (unsigned i = 0; (name = rd_plugin_host_backup_at(b->env.plugins, i)) != NULL &&
                             b->n_targets < RD_CFG_MAX_PLUGINS;
             i++)
            snprintf(b->targets[b->n_targets++].name, sizeof(b->targets[0].name), "%s", name);
    }
    const char *arch = cfg->fault_tolerance.backup.archive.target;
    b->archive_target = -1;
    if (cfg->origin[RD_CFG_ARCHIVE_TARGET] == 0) {
        if (b->n_targets > 0)
            b->archive_target = 0;
    } else if (arch[0] != '\0') {
        b->archive_target = rd_backup__target_index(b, arch);
        if (b->archive_target < 0) {
            char list[512];
            target_list(b, list, sizeof(list));
            snprintf(err, errlen,
                     "%s:%d: fault_tolerance.backup.archive.target: '%s' is not a backup target "
                     "(targets: %s)",
                     file, cfg->origin[RD_CFG_ARCHIVE_TARGET], arch, list[0] ? list : "none");
            return RD_ECONFIG;
        }
    }
    b->bound = true;
    char list[512];
    target_list(b, list, sizeof(list));
    RD_INFO("backup", "targets", "targets=\"%s\" archive=%s interval_ms=%llu", list,
            b->archive_target >= 0 ? b->targets[b->archive_target].name : "off",
            (unsigned long long)cfg->fault_tolerance.backup.interval_ms);
    return rd_backup__archive_init(b, err, errlen);
}

static uint64_t tick_ms(const struct rd_backups *b)
{
    uint64_t t = b->env.cfg->fault_tolerance.backup.interval_ms / 4;
    return t > TICK_MAX_MS ? TICK_MAX_MS : t < TICK_MIN_MS ? TICK_MIN_MS : t;
}

static void tick(uv_timer_t *t);

void rd_backup_start(struct rd_backups *b)
{
    if (b->leading || !b->bound)
        return;
    b->leading = true;
    b->leader_since_ms = rd_now_ms();
    b->due_ns = 0;
    b->n_resolved = 0;
    b->n_cleaned = 0;
    uv_timer_start(&b->timer, tick, 0, tick_ms(b));
    rd_backup__archive_start(b);
}

void rd_backup_stop(struct rd_backups *b)
{
    if (!b->leading)
        return;
    b->leading = false;
    uv_timer_stop(&b->timer);
    if (b->run != NULL) {
        b->run->abandoned = true;
        /* No part of an abandoned run writes an object: its image's child
         * need not finish. */
        if (b->run->forked && !b->run->packed)
            rd_image_cancel(&b->run->img);
    }
    if (b->n_queue > 0)
        RD_WARN("backup", "queue_dropped", "triggers=%u reason=\"no longer the leader\"",
                b->n_queue);
    b->n_queue = 0;
    rd_backup__archive_stop(b);
}

bool rd_backup_busy(const struct rd_backups *b)
{
    return b->work_inflight > 0 || rd_backup__archive_busy(b);
}

void rd_backup_close(struct rd_backups *b)
{
    rd_backup__archive_close(b);
    rd_backup__ckpt_close(b);
    /* A run or check still alive waits for callbacks that will never come
     * (the loop ended): nothing of it is touched again. */
}

/* ---- runs ------------------------------------------------------------------------ */

static void advance(struct rd_backup_part *p);
static void start_queued(struct rd_backups *b);

static void run_free(struct rd_backup_run *run)
{
    rd_w_free(&run->raw);
    rd_w_free(&run->image);
    free(run);
}

/* Ends the run once every part is done and no callback is due. */
static void maybe_finish(struct rd_backup_run *run)
{
    if (run->outstanding > 0)
        return;
    for (unsigned i = 0; i < run->n_parts; i++)
        if (!run->parts[i].done)
            return;
    struct rd_backups *b = run->b;
    b->last_run_ms = (rd_mono_ns() - run->started_ns) / 1000000;
    if (b->run == run)
        b->run = NULL;
    RD_DEBUG("backup", "run_ended", "index=%llu ms=%llu abandoned=%s",
             (unsigned long long)run->index, (unsigned long long)b->last_run_ms,
             run->abandoned ? "true" : "false");
    run_free(run);
    if (b->leading)
        start_queued(b);
}

static void failed_done(void *data, int status, uint64_t value)
{
    struct rd_backup_part *p = data;
    struct rd_backup_run *run = p->run;
    (void)value;
    run->outstanding--;
    p->done = true;
    if (status == 0)
        run->b->failed_total++;
    else
        RD_WARN("backup", "fail_unrecorded", "id=%s error=%s", p->id, rd_err_name(status));
    maybe_finish(run);
}

/* The part failed with `fmt`: recorded (FAIL) when its record exists. */
static void fail_part(struct rd_backup_part *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fail_part(struct rd_backup_part *p, const char *fmt, ...)
{
    struct rd_backup_run *run = p->run;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
    RD_WARN("backup", "failed", "id=%s target=%s error=\"%s\"", p->id, p->target, p->error);
    if (!p->begun || run->abandoned) {
        p->done = true;
        return;
    }
    struct rd_cmd cmd = {.type = RD_CMD_BACKUP};
    cmd.u.backup.op = RD_BACKUP_OP_FAIL;
    cmd.u.backup.id = RD_STR(p->id);
    cmd.u.backup.target = RD_STR(p->target);
    cmd.u.backup.error = RD_STR(p->error);
    rd_cmd_audit_engine(&cmd, "backup_fail", p->id, "");
    struct rd_proposer *log = &run->b->env.log;
    if (log->propose(log->data, &cmd, failed_done, p) != 0) {
        p->done = true; /* the next leader settles the record */
        return;
    }
    run->outstanding++;
}

static void completed_done(void *data, int status, uint64_t value)
{
    struct rd_backup_part *p = data;
    struct rd_backup_run *run = p->run;
    (void)value;
    run->outstanding--;
    p->done = true;
    if (status == 0) {
        run->b->completed_total++;
        RD_INFO("backup", "completed", "id=%s target=%s index=%llu term=%llu bytes=%zu ms=%llu",
                p->id, p->target, (unsigned long long)run->index, (unsigned long long)run->term,
                run->image.len, (unsigned long long)((rd_mono_ns() - run->started_ns) / 1000000));
    } else {
        RD_WARN("backup", "complete_unrecorded", "id=%s error=%s", p->id, rd_err_name(status));
    }
    maybe_finish(run);
}

static void manifest_written(void *data, int status, const char *detail)
{
    struct rd_backup_part *p = data;
    struct rd_backup_run *run = p->run;
    char name[RD_BACKUP_NAME_MAX];
    run->outstanding--;
    p->writing = false;
    if (status != 0) {
        rd_backup_manifest_name(p->id, name);
        fail_part(p, "writing %s to target %s: %s", name, p->target,
                  detail ? detail : rd_strerror(status));
    } else if (run->abandoned) {
        p->done = true;
    } else {
        struct rd_cmd cmd = {.type = RD_CMD_BACKUP};
        cmd.u.backup.op = RD_BACKUP_OP_COMPLETE;
        cmd.u.backup.id = RD_STR(p->id);
        cmd.u.backup.target = RD_STR(p->target);
        cmd.u.backup.index = run->index;
        cmd.u.backup.term = run->term;
        cmd.u.backup.size = run->image.len;
        cmd.u.backup.checksum = run->checksum;
        cmd.u.backup.digest = run->digest;
        cmd.u.backup.error = RD_STR("");
        rd_cmd_audit_engine(&cmd, "backup_complete", p->id, "");
        struct rd_proposer *log = &run->b->env.log;
        if (log->propose(log->data, &cmd, completed_done, p) == 0)
            run->outstanding++;
        else
            p->done = true; /* the next leader finds the manifest and completes it */
    }
    maybe_finish(run);
}

static void image_written(void *data, int status, const char *detail)
{
    struct rd_backup_part *p = data;
    struct rd_backup_run *run = p->run;
    char name[RD_BACKUP_NAME_MAX];
    run->outstanding--;
    p->writing = false;
    if (status != 0) {
        rd_backup_image_name(p->id, name);
        fail_part(p, "writing %s to target %s: %s", name, p->target,
                  detail ? detail : rd_strerror(status));
    } else if (run->abandoned) {
        p->done = true; /* no manifest: the next leader records it failed */
    } else {
        struct rd_backup_manifest m = {
            .manifest_version = RD_BACKUP_MANIFEST_VERSION,
            .index = run->index,
            .term = run->term,
            .created_at_ms = run->created_at_ms,
            .snapshot_format = rd_backup_image_format(run->image.p, run->image.len),
            .size = run->image.len,
            .checksum = run->checksum,
            .digest = run->digest,
        };
        snprintf(m.backup_id, sizeof(m.backup_id), "%s", p->id);
        snprintf(m.cluster_id, sizeof(m.cluster_id), "%s", run->cluster_id);
        snprintf(m.engine_version, sizeof(m.engine_version), "%s", RD_VERSION_STRING);
        rd_backup_image_name(p->id, m.image);
        char *json = rd_backup_manifest_encode(&m);
        const struct rd_backup_ops *ops;
        void *state;
        const char *why;
        rd_backup_manifest_name(p->id, name);
        int rv = json ? rd_backup__target(run->b, p->target, &ops, &state, &why) : RD_ENOMEM;
        if (rv == 0)
            rv = ops->write(state, name, json, strlen(json), manifest_written, p);
        else
            why = json ? why : "out of memory";
        free(json); /* the target copied it (backup ops version 2 never borrow) */
        if (rv == 0) {
            run->outstanding++;
            p->writing = true;
        } else {
            fail_part(p, "writing %s to target %s: %s", name, p->target,
                      rv == RD_ENOMEM ? "out of memory"
                      : why           ? why
                                      : rd_strerror(rv));
        }
    }
    maybe_finish(run);
}

/* Writes the image once it is packed and the record exists. */
static void advance(struct rd_backup_part *p)
{
    struct rd_backup_run *run = p->run;
    if (p->done || p->writing || !run->packed || !p->begun)
        return;
    if (run->abandoned) {
        p->done = true;
        return;
    }
    if (run->pack_status != 0) {
        fail_part(p, "cannot compress the image: %s", rd_strerror(run->pack_status));
        return;
    }
    const struct rd_backup_ops *ops;
    void *state;
    const char *why;
    char name[RD_BACKUP_NAME_MAX];
    rd_backup_image_name(p->id, name);
    int rv = rd_backup__target(run->b, p->target, &ops, &state, &why);
    if (rv != 0) {
        fail_part(p, "target %s cannot be written: %s", p->target, why);
        return;
    }
    rv = ops->write(state, name, run->image.p, run->image.len, image_written, p);
    if (rv != 0) {
        fail_part(p, "writing %s to target %s: %s", name, p->target, rd_strerror(rv));
        return;
    }
    run->outstanding++;
    p->writing = true;
}

static void begun(void *data, int status, uint64_t value)
{
    struct rd_backup_part *p = data;
    struct rd_backup_run *run = p->run;
    (void)value;
    run->outstanding--;
    if (status == 0) {
        p->begun = true;
        advance(p);
    } else {
        /* Not recorded (or not known to be): nothing was written yet. */
        RD_WARN("backup", "begin_refused", "id=%s target=%s error=%s", p->id, p->target,
                rd_err_name(status));
        p->done = true;
    }
    maybe_finish(run);
}

static void pack_work(uv_work_t *w)
{
    struct rd_backup_run *run = w->data;
    run->pack_status = rd_fsm_snapshot_pack(run->raw.p, run->raw.len, &run->image);
    rd_w_free(&run->raw);
    if (run->pack_status == 0)
        run->checksum = rd_fnv1a(RD_FNV_INIT, run->image.p, run->image.len);
}

static void pack_done(uv_work_t *w, int status)
{
    struct rd_backup_run *run = w->data;
    run->b->work_inflight--;
    run->outstanding--;
    if (status != 0 && run->pack_status == 0)
        run->pack_status = RD_ESHUTDOWN;
    run->packed = true;
    for (unsigned i = 0; i < run->n_parts; i++)
        advance(&run->parts[i]);
    maybe_finish(run);
}

/* The image is in (or its child failed): the parts go on. */
static void image_done(struct rd_image_job *job, int status)
{
    struct rd_backup_run *run = job->data;
    run->pack_status = status;
    if (status == 0) {
        run->checksum = job->checksum;
        RD_INFO("backup", "image_ready",
                "index=%llu raw_bytes=%llu image_bytes=%zu fork_us=%llu ms=%llu",
                (unsigned long long)run->index, (unsigned long long)job->raw_len, run->image.len,
                (unsigned long long)job->fork_us,
                (unsigned long long)((rd_mono_ns() - run->started_ns) / 1000000));
    } else {
        RD_WARN("backup", "image_failed", "index=%llu error=\"%s\"", (unsigned long long)run->index,
                job->errmsg);
    }
    pack_done(&run->work, 0);
}

/*
 * The image of the state at this instant. A forked child takes it (the loop
 * pays the fork); where the process cannot fork, the loop serialises it and
 * the thread pool compresses it. 0, or RD_E* (nothing started).
 */
static int image_start(struct rd_backups *b, struct rd_backup_run *run)
{
    int rv = rd_image_fork(b->env.loop, b->env.fsm, b->env.cfg->fault_tolerance.backup.cpu_share,
                           &run->image, &run->img, image_done, run);
    if (rv == 0) {
        run->forked = true;
        b->last_fork_us = run->img.fork_us;
        RD_INFO("backup", "image_forked", "index=%llu pid=%d fork_us=%llu",
                (unsigned long long)run->index, (int)run->img.pid,
                (unsigned long long)run->img.fork_us);
        return 0;
    }
    RD_WARN("backup", "fork_failed",
            "error=%s detail=\"serialising the state on the loop instead\"", rd_err_name(rv));
    uint64_t t0 = rd_mono_ns();
    rv = rd_fsm_snapshot_raw(b->env.fsm, &run->raw);
    if (rv != 0)
        return rv;
    RD_INFO("backup", "image_serialised", "index=%llu raw_bytes=%zu serialise_us=%llu",
            (unsigned long long)run->index, run->raw.len,
            (unsigned long long)((rd_mono_ns() - t0) / 1000));
    run->work.data = run;
    if (uv_queue_work(b->env.loop, &run->work, pack_work, pack_done) != 0)
        return RD_EIO;
    return 0;
}

/*
 * Starts a run of `n` backups (ids[i] on targets[i]): the image of the state
 * at this instant (image_start), a BEGIN per target.
 */
static int run_start(struct rd_backups *b, unsigned n, char ids[][RD_UUID_STRLEN],
                     char targets[][64], bool scheduled)
{
    struct rd_backup_run *run = calloc(1, sizeof(*run));
    if (run == NULL)
        return RD_ENOMEM;
    run->b = b;
    run->scheduled = scheduled;
    run->started_ns = rd_mono_ns();
    rd_w_init(&run->raw);
    rd_w_init(&run->image);
    run->work.data = run;
    /* One instant: the state, its index and term, its digest. */
    run->index = b->env.applied_index(b->env.raft);
    run->term = b->env.term(b->env.raft);
    run->digest = rd_fsm_digest(b->env.fsm);
    run->created_at_ms = rd_fsm_stamp(b->env.fsm);
    snprintf(run->cluster_id, sizeof(run->cluster_id), "%s", rd_fsm_cluster_id(b->env.fsm));
    int rv = image_start(b, run);
    if (rv != 0) {
        run_free(run);
        return rv;
    }
    b->work_inflight++;
    run->outstanding++;
    b->run = run;
    run->n_parts = n;
    for (unsigned i = 0; i < n; i++) {
        struct rd_backup_part *p = &run->parts[i];
        p->run = run;
        snprintf(p->id, sizeof(p->id), "%s", ids[i]);
        snprintf(p->target, sizeof(p->target), "%s", targets[i]);
        struct rd_cmd cmd = {.type = RD_CMD_BACKUP};
        cmd.u.backup.op = RD_BACKUP_OP_BEGIN;
        cmd.u.backup.id = RD_STR(p->id);
        cmd.u.backup.target = RD_STR(p->target);
        cmd.u.backup.error = RD_STR("");
        rd_cmd_audit_engine(&cmd, "backup_begin", p->id, "");
        rv = b->env.log.propose(b->env.log.data, &cmd, begun, p);
        if (rv == 0) {
            run->outstanding++;
        } else {
            RD_WARN("backup", "begin_failed", "id=%s target=%s error=%s", p->id, p->target,
                    rd_err_name(rv));
            p->done = true;
        }
        RD_INFO("backup", "started", "id=%s target=%s index=%llu term=%llu scheduled=%s", p->id,
                p->target, (unsigned long long)run->index, (unsigned long long)run->term,
                scheduled ? "true" : "false");
    }
    return 0;
}

static void start_queued(struct rd_backups *b)
{
    if (b->run != NULL || b->n_queue == 0 || !b->leading)
        return;
    unsigned n = b->queue[0].n_ids;
    char ids[RD_CFG_MAX_PLUGINS][RD_UUID_STRLEN], targets[RD_CFG_MAX_PLUGINS][64];
    memcpy(ids, b->queue[0].ids, sizeof(ids));
    memcpy(targets, b->queue[0].targets, sizeof(targets));
    memmove(&b->queue[0], &b->queue[1], (b->n_queue - 1) * sizeof(b->queue[0]));
    b->n_queue--;
    int rv = run_start(b, n, ids, targets, false);
    if (rv != 0)
        RD_WARN("backup", "trigger_dropped", "id=%s error=%s", ids[0], rd_err_name(rv));
}

int rd_backup__start_bridge(struct rd_backups *b, struct rd_backup_started *st)
{
    memset(st, 0, sizeof(*st));
    if (b->run != NULL || !b->leading)
        return RD_EBUSY;
    for (unsigned i = 0; i < b->n_targets; i++) {
        if (rd_uuid_v4(st->ids[i]) != 0)
            return RD_EIO;
        snprintf(st->targets[i], sizeof(st->targets[0]), "%s", b->targets[i].name);
    }
    st->n = b->n_targets;
    return run_start(b, st->n, st->ids, st->targets, false);
}

uint64_t rd_backup__run_index(const struct rd_backups *b)
{
    return b->run != NULL ? b->run->index : 0;
}

/* ---- trigger ------------------------------------------------------------------------ */

int rd_backup_trigger(struct rd_backups *b, const char *target, struct rd_backup_started *out)
{
    memset(out, 0, sizeof(*out));
    if (*b->env.shutting_down) {
        snprintf(b->errmsg, sizeof(b->errmsg), "the engine is shutting down");
        return RD_ESHUTDOWN;
    }
    if (!b->env.log.is_leader(b->env.log.data) || !b->leading) {
        snprintf(b->errmsg, sizeof(b->errmsg), "this replica is not the leader");
        return RD_ENOTLEADER;
    }
    if (b->n_targets == 0) {
        snprintf(b->errmsg, sizeof(b->errmsg),
                 "no backup target is configured: add a backup plugin instance to "
                 "plugins.instances (for example name: backups, plugin: file, config: {dir: "
                 "/var/lib/recoveryd/backups}); every backup instance is a target unless "
                 "fault_tolerance.backup.targets lists them (docs/backup.md)");
        return RD_ECONFLICT;
    }
    if (target != NULL && target[0] != '\0') {
        if (rd_backup__target_index(b, target) < 0) {
            char list[512];
            target_list(b, list, sizeof(list));
            snprintf(b->errmsg, sizeof(b->errmsg), "no backup target named %s (targets: %s)",
                     target, list);
            return RD_ENOTFOUND;
        }
        snprintf(out->targets[0], sizeof(out->targets[0]), "%s", target);
        out->n = 1;
    } else {
        for (unsigned i = 0; i < b->n_targets; i++)
            snprintf(out->targets[i], sizeof(out->targets[0]), "%s", b->targets[i].name);
        out->n = b->n_targets;
    }
    for (unsigned i = 0; i < out->n; i++)
        if (rd_uuid_v4(out->ids[i]) != 0) {
            snprintf(b->errmsg, sizeof(b->errmsg), "cannot draw a backup id");
            return RD_EIO;
        }
    double last = (double)b->last_run_ms / 1000.0;
    out->estimated_s = last < 1.0 ? 1.0 : last;
    if (b->run == NULL && b->n_queue == 0) {
        int rv = run_start(b, out->n, out->ids, out->targets, false);
        if (rv != 0) {
            snprintf(b->errmsg, sizeof(b->errmsg), "cannot start the backup: %s", rd_strerror(rv));
            return rv;
        }
        return 0;
    }
    if (b->n_queue == RD_BACKUP_MAX_QUEUE) {
        snprintf(b->errmsg, sizeof(b->errmsg),
                 "%d triggered backups wait for the one in flight already; retry when it ended",
                 RD_BACKUP_MAX_QUEUE);
        return RD_EBUSY;
    }
    b->queue[b->n_queue].n_ids = out->n;
    memcpy(b->queue[b->n_queue].ids, out->ids, sizeof(out->ids));
    memcpy(b->queue[b->n_queue].targets, out->targets, sizeof(out->targets));
    b->n_queue++;
    out->queued = true;
    out->estimated_s *= 1 + b->n_queue;
    return 0;
}

/* ---- the tick: schedule, stuck records, retention, cluster id ------------------------- */

static bool run_has(const struct rd_backups *b, const char *id)
{
    if (b->run == NULL)
        return false;
    for (unsigned i = 0; i < b->run->n_parts; i++)
        if (strcmp(b->run->parts[i].id, id) == 0)
            return true;
    return false;
}

static bool in_ring(char ring[][RD_UUID_STRLEN], unsigned n, unsigned cap, const char *id)
{
    for (unsigned i = 0; i < n && i < cap; i++)
        if (strcmp(ring[i], id) == 0)
            return true;
    return false;
}

static void ring_add(char ring[][RD_UUID_STRLEN], unsigned *n, unsigned cap, const char *id)
{
    snprintf(ring[*n % cap], RD_UUID_STRLEN, "%s", id);
    (*n)++;
}

struct settle {
    struct rd_backups *b;
    char id[RD_UUID_STRLEN];
    char target[64];
};

static void settled(void *data, int status, uint64_t value)
{
    struct settle *s = data;
    (void)value;
    s->b->resolving = false;
    if (status != 0)
        RD_WARN("backup", "settle_unrecorded", "id=%s error=%s", s->id, rd_err_name(status));
    free(s);
}

/* Records `s`'s backup failed (`why`) or, with `m`, completed. */
static void settle(struct settle *s, const struct rd_backup_manifest *m, const char *why)
{
    struct rd_backups *b = s->b;
    ring_add(b->resolved, &b->n_resolved, RD_ARRAY_SIZE(b->resolved), s->id);
    struct rd_cmd cmd = {.type = RD_CMD_BACKUP};
    cmd.u.backup.id = RD_STR(s->id);
    cmd.u.backup.target = RD_STR(s->target);
    cmd.u.backup.error = RD_STR("");
    if (m != NULL) {
        cmd.u.backup.op = RD_BACKUP_OP_COMPLETE;
        cmd.u.backup.index = m->index;
        cmd.u.backup.term = m->term;
        cmd.u.backup.size = m->size;
        cmd.u.backup.checksum = m->checksum;
        cmd.u.backup.digest = m->digest;
        RD_INFO("backup", "settled", "id=%s target=%s status=completed index=%llu", s->id,
                s->target, (unsigned long long)m->index);
    } else {
        cmd.u.backup.op = RD_BACKUP_OP_FAIL;
        cmd.u.backup.error = RD_STR(why);
        RD_WARN("backup", "settled", "id=%s target=%s status=failed error=\"%s\"", s->id, s->target,
                why);
    }
    if (!b->leading || b->env.log.propose(b->env.log.data, &cmd, settled, s) != 0) {
        b->resolving = false;
        free(s);
    }
}

static void settle_read(void *data, int status, const void *buf, size_t len)
{
    struct settle *s = data;
    struct rd_backups *b = s->b;
    if (!b->leading) {
        b->resolving = false;
        free(s);
        return;
    }
    struct rd_backup_manifest m;
    char err[256];
    if (status == RD_ENOTFOUND) {
        settle(s, NULL, "leader changed before it completed");
    } else if (status != 0) {
        /* The target could not say: ask again on a later tick. */
        RD_WARN("backup", "settle_deferred", "id=%s target=%s error=%s", s->id, s->target,
                rd_err_name(status));
        b->resolving = false;
        free(s);
    } else if (rd_backup_manifest_decode(buf, len, &m, err, sizeof(err)) != 0 ||
               strcmp(m.backup_id, s->id) != 0) {
        char why[400];
        snprintf(why, sizeof(why),
                 "leader changed before it completed; its manifest is unreadable: %s",
                 strcmp(m.backup_id, s->id) != 0 && m.backup_id[0] ? "another backup's id" : err);
        settle(s, NULL, why);
    } else {
        settle(s, &m, NULL);
    }
}

/* A record still running that no run of this replica owns: its leader went
 * away. Completed if its manifest made it to the target, else failed. */
static void resolve_stuck(struct rd_backups *b)
{
    if (b->resolving)
        return;
    size_t n;
    const struct rd_backup *const *recs = rd_fsm_backups(b->env.fsm, &n);
    for (size_t i = 0; i < n; i++) {
        const struct rd_backup *r = recs[i];
        if (r->status != RD_BACKUP_RUNNING || run_has(b, r->id) ||
            in_ring(b->resolved, b->n_resolved, RD_ARRAY_SIZE(b->resolved), r->id))
            continue;
        struct settle *s = calloc(1, sizeof(*s));
        if (s == NULL)
            return;
        s->b = b;
        snprintf(s->id, sizeof(s->id), "%s", r->id);
        snprintf(s->target, sizeof(s->target), "%s", r->target);
        b->resolving = true;
        const struct rd_backup_ops *ops;
        void *state;
        const char *why;
        char name[RD_BACKUP_NAME_MAX];
        rd_backup_manifest_name(r->id, name);
        if (rd_backup__target(b, r->target, &ops, &state, &why) != 0) {
            char msg[400];
            snprintf(msg, sizeof(msg),
                     "leader changed before it completed, and target %s is not usable on the new "
                     "leader: %s",
                     r->target, why);
            settle(s, NULL, msg);
        } else if (ops->read(state, name, settle_read, s) != 0) {
            b->resolving = false;
            free(s);
        }
        return; /* one at a time */
    }
}

/* ---- retention ------------------------------------------------------------------------- */

struct prune {
    struct rd_backups *b;
    char id[RD_UUID_STRLEN];
    char target[64];
    bool drop; /* REMOVE the record after its objects */
    int step;  /* 0: manifest, 1: image, 2: record */
};

static void prune_step(struct prune *p);
static void retention(struct rd_backups *b);

/* One backup pruned: on to the next at once (a long list after the
 * retention was shortened is not worked off one a tick). */
static void pruned(struct prune *p, bool ok)
{
    struct rd_backups *b = p->b;
    free(p);
    b->retention_busy = false;
    if (ok && b->leading && !*b->env.shutting_down)
        retention(b);
}

static void prune_removed(void *data, int status, uint64_t value)
{
    struct prune *p = data;
    (void)value;
    if (status == 0) {
        p->b->removed_total++;
        RD_INFO("backup", "removed", "id=%s target=%s", p->id, p->target);
    }
    pruned(p, status == 0);
}

static void prune_object_gone(void *data, int status, const char *detail)
{
    struct prune *p = data;
    if (status != 0 && status != RD_ENOTFOUND) {
        RD_WARN("backup", "retention_failed", "id=%s target=%s error=\"%s\"", p->id, p->target,
                detail ? detail : rd_strerror(status));
        p->b->retention_busy = false;
        free(p);
        return;
    }
    p->step++;
    prune_step(p);
}

static void prune_step(struct prune *p)
{
    struct rd_backups *b = p->b;
    if (!b->leading) {
        b->retention_busy = false;
        free(p);
        return;
    }
    if (p->step < 2) {
        const struct rd_backup_ops *ops;
        void *state;
        const char *why;
        char name[RD_BACKUP_NAME_MAX];
        /* The manifest first: a backup without it is not complete to anyone. */
        if (p->step == 0)
            rd_backup_manifest_name(p->id, name);
        else
            rd_backup_image_name(p->id, name);
        int rv = rd_backup__target(b, p->target, &ops, &state, &why);
        if (rv == 0)
            rv = ops->remove(state, name, prune_object_gone, p);
        if (rv != 0) {
            b->retention_busy = false;
            free(p);
        }
        return;
    }
    ring_add(b->cleaned, &b->n_cleaned, RD_ARRAY_SIZE(b->cleaned), p->id);
    if (!p->drop) {
        pruned(p, false); /* the next failed one on the next tick */
        return;
    }
    struct rd_cmd cmd = {.type = RD_CMD_BACKUP};
    cmd.u.backup.op = RD_BACKUP_OP_REMOVE;
    cmd.u.backup.id = RD_STR(p->id);
    cmd.u.backup.target = RD_STR(p->target);
    cmd.u.backup.error = RD_STR("");
    if (b->env.log.propose(b->env.log.data, &cmd, prune_removed, p) != 0) {
        b->retention_busy = false;
        free(p);
    }
}

static void retention(struct rd_backups *b)
{
    if (b->retention_busy)
        return;
    size_t n;
    const struct rd_backup *const *recs = rd_fsm_backups(b->env.fsm, &n);
    if (n == 0)
        return;
    uint8_t *act = malloc(n);
    if (act == NULL)
        return;
    const struct rd_config *cfg = b->env.cfg;
    rd_backup_retention(recs, n, rd_now_ms(), cfg->fault_tolerance.backup.retention_period_ms,
                        cfg->fault_tolerance.backup.keep_min, act);
    for (size_t i = 0; i < n; i++) {
        const struct rd_backup *r = recs[i];
        if (act[i] == RD_BACKUP_KEEP || run_has(b, r->id))
            continue;
        bool cleaned = in_ring(b->cleaned, b->n_cleaned, RD_ARRAY_SIZE(b->cleaned), r->id);
        if (act[i] == RD_BACKUP_CLEAN && cleaned)
            continue;
        const struct rd_backup_ops *ops;
        void *state;
        const char *why;
        if (rd_backup__target(b, r->target, &ops, &state, &why) != 0)
            continue; /* its target is gone from the configuration: left as it is */
        struct prune *p = calloc(1, sizeof(*p));
        if (p == NULL)
            break;
        p->b = b;
        snprintf(p->id, sizeof(p->id), "%s", r->id);
        snprintf(p->target, sizeof(p->target), "%s", r->target);
        p->drop = act[i] == RD_BACKUP_DROP;
        p->step = cleaned ? 2 : 0;
        b->retention_busy = true;
        prune_step(p);
        break; /* one at a time; the next tick goes on */
    }
    free(act);
}

/* ---- cluster id ------------------------------------------------------------------------- */

static void cluster_id_done(void *data, int status, uint64_t value)
{
    struct rd_backups *b = data;
    (void)value;
    b->cluster_id_inflight = false;
    if (status != 0)
        RD_WARN("backup", "cluster_id_unrecorded", "error=%s", rd_err_name(status));
}

static void name_cluster(struct rd_backups *b)
{
    if (b->cluster_id_inflight || rd_fsm_cluster_id(b->env.fsm)[0] != '\0')
        return;
    char id[RD_UUID_STRLEN];
    if (rd_uuid_v4(id) != 0)
        return;
    struct rd_cmd cmd = {.type = RD_CMD_CLUSTER_ID};
    cmd.u.cid.id = RD_STR(id);
    if (b->env.log.propose(b->env.log.data, &cmd, cluster_id_done, b) == 0) {
        b->cluster_id_inflight = true;
        RD_INFO("backup", "cluster_named", "cluster_id=%s", id);
    }
}

/* ---- the schedule -------------------------------------------------------------------------- */

static void schedule(struct rd_backups *b)
{
    if (b->n_targets == 0 || b->run != NULL || b->n_queue > 0)
        return;
    size_t n;
    const struct rd_backup *const *recs = rd_fsm_backups(b->env.fsm, &n);
    int64_t last = n > 0 ? recs[n - 1]->started_at_ms : 0;
    for (size_t i = 0; i < n; i++)
        if (recs[i]->started_at_ms > last)
            last = recs[i]->started_at_ms;
    /* One interval after the newest backup the log knows of, so a new
     * leader keeps the cadence; a cluster without any waits one interval
     * from its leader. Counted on this replica's monotonic clock from when
     * it first saw that backup: the record's start is the wall clock of
     * whoever took it, which may be ahead of this one's (a clock stepped
     * back, a leader whose clock ran fast), and must not hold the next
     * backup back for longer than an interval. */
    if (b->due_ns == 0 || last != b->due_from_ms) {
        b->due_ns = rd_due_mono_ns(last > 0 ? last : (int64_t)b->leader_since_ms,
                                   b->env.cfg->fault_tolerance.backup.interval_ms);
        b->due_from_ms = last;
    }
    if (rd_mono_ns() < b->due_ns)
        return;
    char ids[RD_CFG_MAX_PLUGINS][RD_UUID_STRLEN], targets[RD_CFG_MAX_PLUGINS][64];
    for (unsigned i = 0; i < b->n_targets; i++) {
        if (rd_uuid_v4(ids[i]) != 0)
            return;
        snprintf(targets[i], sizeof(targets[0]), "%s", b->targets[i].name);
    }
    int rv = run_start(b, b->n_targets, ids, targets, true);
    if (rv != 0)
        RD_WARN("backup", "schedule_failed", "error=%s", rd_err_name(rv));
    else
        b->due_ns = 0; /* the next from this run's record (or, stamped before
                        * the newest, an interval from when it is seen) */
}

static void tick(uv_timer_t *t)
{
    struct rd_backups *b = t->data;
    if (!b->leading || *b->env.shutting_down || !b->env.log.is_leader(b->env.log.data))
        return;
    name_cluster(b);
    resolve_stuck(b);
    schedule(b);
    retention(b);
}

/* ---- verify ------------------------------------------------------------------------------ */

struct rd_backup_check {
    struct rd_backups *b;
    char id[RD_UUID_STRLEN];
    char target[64];
    rd_backup_verify_cb cb;
    void *data;
    /* What the record says. */
    uint64_t index, size, checksum, digest;
    struct rd_backup_manifest m;
    uint8_t *img;
    size_t img_len;
    uv_work_t work;
    bool ok;
    char error[512];
};

static void check_free(struct rd_backup_check *c)
{
    c->b->n_verify--;
    free(c->img);
    free(c);
}

static void verify_recorded(void *data, int status, uint64_t value)
{
    struct rd_backup_check *c = data;
    (void)value;
    if (status == 0) {
        if (c->ok)
            c->b->verified_ok_total++;
        else
            c->b->verified_bad_total++;
    }
    c->cb(c->data, status, status == 0 ? rd_fsm_backup_find(c->b->env.fsm, c->id) : NULL,
          status == 0 ? NULL : "the verification's outcome could not be recorded");
    check_free(c);
}

/* Records the outcome (VERIFY) and answers through the callback. */
static void check_record(struct rd_backup_check *c)
{
    struct rd_backups *b = c->b;
    if (c->ok)
        RD_INFO("backup", "verified", "id=%s target=%s ok=true", c->id, c->target);
    else
        RD_WARN("backup", "verified", "id=%s target=%s ok=false error=\"%s\"", c->id, c->target,
                c->error);
    struct rd_cmd cmd = {.type = RD_CMD_BACKUP};
    cmd.u.backup.op = RD_BACKUP_OP_VERIFY;
    cmd.u.backup.id = RD_STR(c->id);
    cmd.u.backup.target = RD_STR(c->target);
    cmd.u.backup.ok = c->ok ? 1 : 0;
    cmd.u.backup.error = RD_STR(c->ok ? "" : c->error);
    int rv = b->env.log.propose(b->env.log.data, &cmd, verify_recorded, c);
    if (rv != 0) {
        c->cb(c->data, rv, NULL, "the verification's outcome could not be recorded");
        check_free(c);
    }
}

/* Off the loop: everything the image and manifest must agree on. */
static void check_work(uv_work_t *w)
{
    struct rd_backup_check *c = w->data;
    char s1[17], s2[17];
    c->ok = false;
    if (strcmp(c->m.backup_id, c->id) != 0) {
        snprintf(c->error, sizeof(c->error), "the manifest names backup %s", c->m.backup_id);
        return;
    }
    if (c->img_len != c->m.size || c->img_len != c->size) {
        snprintf(c->error, sizeof(c->error),
                 "the image holds %zu bytes, the manifest says %" PRIu64 " and the record %" PRIu64,
                 c->img_len, c->m.size, c->size);
        return;
    }
    uint64_t sum = rd_fnv1a(RD_FNV_INIT, c->img, c->img_len);
    if (sum != c->m.checksum || sum != c->checksum) {
        rd_backup_hex16(sum, s1);
        rd_backup_hex16(c->checksum, s2);
        snprintf(c->error, sizeof(c->error),
                 "checksum mismatch: the image's bytes hash to %s, the record says %s: the object "
                 "was damaged or replaced",
                 s1, s2);
        return;
    }
    if (c->m.index != c->index) {
        snprintf(c->error, sizeof(c->error),
                 "the manifest says index %" PRIu64 ", the record %" PRIu64, c->m.index, c->index);
        return;
    }
    struct rd_fsm scratch;
    rd_fsm_init(&scratch);
    int rv = rd_fsm_restore(&scratch, c->img, c->img_len);
    if (rv != 0) {
        snprintf(c->error, sizeof(c->error), "the image does not decode: %s", scratch.errmsg);
        rd_fsm_close(&scratch);
        return;
    }
    uint64_t digest = rd_fsm_digest_full(&scratch);
    rd_fsm_close(&scratch);
    if (digest != c->m.digest || digest != c->digest) {
        rd_backup_hex16(digest, s1);
        rd_backup_hex16(c->digest, s2);
        snprintf(c->error, sizeof(c->error),
                 "digest mismatch: the decoded state digests to %s, the record says %s", s1, s2);
        return;
    }
    c->ok = true;
}

static void check_done(uv_work_t *w, int status)
{
    struct rd_backup_check *c = w->data;
    c->b->work_inflight--;
    free(c->img);
    c->img = NULL;
    if (status != 0) {
        c->cb(c->data, RD_ESHUTDOWN, NULL, "the engine is shutting down");
        check_free(c);
        return;
    }
    check_record(c);
}

static void check_image_read(void *data, int status, const void *buf, size_t len)
{
    struct rd_backup_check *c = data;
    char name[RD_BACKUP_NAME_MAX];
    rd_backup_image_name(c->id, name);
    if (status != 0) {
        snprintf(c->error, sizeof(c->error), "cannot read %s from target %s: %s", name, c->target,
                 status == RD_ENOTFOUND ? "it is missing" : rd_strerror(status));
        check_record(c);
        return;
    }
    c->img = malloc(len ? len : 1);
    if (c->img == NULL) {
        snprintf(c->error, sizeof(c->error), "out of memory reading %s (%zu bytes)", name, len);
        check_record(c);
        return;
    }
    memcpy(c->img, buf, len);
    c->img_len = len;
    c->work.data = c;
    if (uv_queue_work(c->b->env.loop, &c->work, check_work, check_done) != 0) {
        snprintf(c->error, sizeof(c->error), "cannot queue the check");
        check_record(c);
        return;
    }
    c->b->work_inflight++;
}

static void check_manifest_read(void *data, int status, const void *buf, size_t len)
{
    struct rd_backup_check *c = data;
    char name[RD_BACKUP_NAME_MAX], err[256];
    rd_backup_manifest_name(c->id, name);
    if (status != 0) {
        snprintf(c->error, sizeof(c->error), "cannot read %s from target %s: %s", name, c->target,
                 status == RD_ENOTFOUND ? "it is missing" : rd_strerror(status));
        check_record(c);
        return;
    }
    if (rd_backup_manifest_decode(buf, len, &c->m, err, sizeof(err)) != 0) {
        snprintf(c->error, sizeof(c->error), "%s: %s", name, err);
        check_record(c);
        return;
    }
    const struct rd_backup_ops *ops;
    void *state;
    const char *why;
    int rv = rd_backup__target(c->b, c->target, &ops, &state, &why);
    if (rv == 0) {
        rd_backup_image_name(c->id, name);
        rv = ops->read(state, name, check_image_read, c);
    }
    if (rv != 0) {
        snprintf(c->error, sizeof(c->error), "cannot read the image from target %s: %s", c->target,
                 why ? why : rd_strerror(rv));
        check_record(c);
    }
}

int rd_backup_verify(struct rd_backups *b, const char *id, rd_backup_verify_cb cb, void *data)
{
    const struct rd_backup *r = rd_fsm_backup_find(b->env.fsm, id);
    if (r == NULL) {
        snprintf(b->errmsg, sizeof(b->errmsg), "no backup %s", id);
        return RD_ENOTFOUND;
    }
    if (r->status != RD_BACKUP_COMPLETED) {
        snprintf(b->errmsg, sizeof(b->errmsg),
                 "backup %s is %s: only a completed backup can be "
                 "verified",
                 id, rd_backup_status_name(r->status));
        return RD_ECONFLICT;
    }
    if (!b->leading || !b->env.log.is_leader(b->env.log.data)) {
        snprintf(b->errmsg, sizeof(b->errmsg), "this replica is not the leader");
        return RD_ENOTLEADER;
    }
    const struct rd_backup_ops *ops;
    void *state;
    const char *why;
    if (rd_backup__target(b, r->target, &ops, &state, &why) != 0) {
        snprintf(b->errmsg, sizeof(b->errmsg),
                 "backup %s is on target %s, which cannot be read here: %s", id, r->target, why);
        return RD_ECONFLICT;
    }
    if (b->n_verify >= RD_BACKUP_MAX_VERIFY) {
        snprintf(b->errmsg, sizeof(b->errmsg), "%d verifications run already; retry when one ended",
                 RD_BACKUP_MAX_VERIFY);
        return RD_EBUSY;
    }
    struct rd_backup_check *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return RD_ENOMEM;
    c->b = b;
    snprintf(c->id, sizeof(c->id), "%s", id);
    snprintf(c->target, sizeof(c->target), "%s", r->target);
    c->cb = cb;
    c->data = data;
    c->index = r->index;
    c->size = r->size;
    c->checksum = r->checksum;
    c->digest = r->digest;
    char name[RD_BACKUP_NAME_MAX];
    rd_backup_manifest_name(id, name);
    int rv = ops->read(state, name, check_manifest_read, c);
    if (rv != 0) {
        snprintf(b->errmsg, sizeof(b->errmsg), "cannot read %s from target %s: %s", name, r->target,
                 rd_strerror(rv));
        free(c);
        return rv;
    }
    b->n_verify++;
    return 0;
}

/* ---- metrics ------------------------------------------------------------------------------ */

void rd_backup_metrics(struct rd_backups *b, struct rd_mbuf *m)
{
    size_t n;
    const struct rd_backup *const *recs = rd_fsm_backups(b->env.fsm, &n);
    const struct rd_backup *last = NULL;
    size_t by_status[RD_BACKUP_STATUS_COUNT] = {0};
    for (size_t i = 0; i < n; i++) {
        const struct rd_backup *r = recs[i];
        if (r->status < RD_BACKUP_STATUS_COUNT)
            by_status[r->status]++;
        if (r->status == RD_BACKUP_COMPLETED &&
            (last == NULL || r->completed_at_ms > last->completed_at_ms))
            last = r;
    }
    rd_metric_header(m, "recoveryd_backup_targets", "gauge",
                     "Backup targets configured (0: backups are off).");
    rd_mbuf_printf(m, "recoveryd_backup_targets %u\n", b->n_targets);
    rd_metric_header(m, "recoveryd_backup_interval_seconds", "gauge",
                     "fault_tolerance.backup.interval.");
    rd_mbuf_printf(m, "recoveryd_backup_interval_seconds %.3f\n",
                   (double)b->env.cfg->fault_tolerance.backup.interval_ms / 1000.0);
    rd_metric_header(m, "recoveryd_backup_last_success_timestamp_seconds", "gauge",
                     "When the newest completed backup completed (Unix time; 0: none).");
    rd_mbuf_printf(m, "recoveryd_backup_last_success_timestamp_seconds %.3f\n",
                   last ? (double)last->completed_at_ms / 1000.0 : 0.0);
    rd_metric_header(m, "recoveryd_backup_duration_seconds", "gauge",
                     "How long the newest completed backup took, from BEGIN to COMPLETE.");
    rd_mbuf_printf(m, "recoveryd_backup_duration_seconds %.3f\n",
                   last ? (double)(last->completed_at_ms - last->started_at_ms) / 1000.0 : 0.0);
    rd_metric_header(m, "recoveryd_backup_fork_seconds", "gauge",
                     "How long the fork of the newest backup's image held the loop (Redis's "
                     "latest_fork_usec; 0: none yet).");
    rd_mbuf_printf(m, "recoveryd_backup_fork_seconds %.6f\n", (double)b->last_fork_us / 1e6);
    rd_metric_header(m, "recoveryd_backup_size_bytes", "gauge",
                     "Bytes of the newest completed backup's image.");
    rd_mbuf_printf(m, "recoveryd_backup_size_bytes %llu\n",
                   last ? (unsigned long long)last->size : 0ULL);
    rd_metric_header(m, "recoveryd_backup_index", "gauge",
                     "Raft index of the newest completed backup.");
    rd_mbuf_printf(m, "recoveryd_backup_index %llu\n",
                   last ? (unsigned long long)last->index : 0ULL);
    rd_metric_header(m, "recoveryd_backup_records", "gauge", "Backup records kept, by status.");
    for (int s = 0; s < RD_BACKUP_STATUS_COUNT; s++)
        rd_mbuf_printf(m, "recoveryd_backup_records{status=\"%s\"} %zu\n", rd_backup_status_name(s),
                       by_status[s]);
    rd_metric_header(m, "recoveryd_backups_total", "counter",
                     "Backups this replica ended as leader, by outcome.");
    rd_mbuf_printf(m, "recoveryd_backups_total{status=\"completed\"} %llu\n",
                   (unsigned long long)b->completed_total);
    rd_mbuf_printf(m, "recoveryd_backups_total{status=\"failed\"} %llu\n",
                   (unsigned long long)b->failed_total);
    rd_metric_header(m, "recoveryd_backup_verifications_total", "counter",
                     "Backups this replica read back and checked, by result.");
    rd_mbuf_printf(m, "recoveryd_backup_verifications_total{result=\"ok\"} %llu\n",
                   (unsigned long long)b->verified_ok_total);
    rd_mbuf_printf(m, "recoveryd_backup_verifications_total{result=\"mismatch\"} %llu\n",
                   (unsigned long long)b->verified_bad_total);
    rd_metric_header(m, "recoveryd_backup_removed_total", "counter",
                     "Backups retention deleted (this replica as leader).");
    rd_mbuf_printf(m, "recoveryd_backup_removed_total %llu\n",
                   (unsigned long long)b->removed_total);
    rd_backup__archive_metrics(b, m);
}
