/*
 * Checkpoint repair (DESIGN.md decision 9), leader only: a task whose newest
 * checkpoint fails its checksum, met at hand-over (the heartbeat answer), on
 * GET /api/v1/tasks/{id}/checkpoint or by a policy's check_consistency, is
 * repaired from the first good copy of:
 *
 *   1. an older version the task still holds (the newest that verifies);
 *   2. the newest completed backup (of up to RD_SCHED_REPAIR_BACKUPS, newest
 *      first) that holds a version of it no newer than the bad one and that
 *      verifies: read back from its target and decoded off the loop by the
 *      backup module (env.backup_checkpoints);
 *   3. nothing: the task starts over, as an agent handed a task without a
 *      checkpoint does.
 *
 * Every repair is a data_corruption fault (major; node_id the task's agent
 * or ""; metadata {task_id, version, restored_from}) opened once the source
 * is known, then a checkpoint_restore command that resolves it in the same
 * step. With no good copy the fault stays open and says why (metadata
 * reason), and this leadership does not search again for that version.
 *
 * At most one repair per task runs; while it does, the task's key is in
 * s->inflight, so nothing moves the task (a reassign after a
 * check_consistency waits for the repair). A fault left open by a leader
 * that went away mid-repair is taken up again by the sweep (every pass, at
 * most once a second), which also resolves the faults of checkpoints that
 * moved on (a newer version, a task gone).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "recoveryd/error.h"
#include "sched_int.h"

#define SWEEP_NS 1000000000ULL

struct waiter {
    rd_sched_repair_cb cb;
    void *data;
    struct waiter *next;
};

/* A version of a task this leadership found no good copy of (the map's key
 * points into it). */
struct unrepairable {
    uint64_t version;
    char task_id[40];
};

struct rd_repair {
    struct rd_sched *s;
    char task_id[40];
    uint64_t bad_version;
    char node_id[RD_NODE_ID_MAX + 1]; /* the task's agent when it was met, or "" */
    char fault_id[40];                /* its fault: found open, or opened by this repair */
    /* The source, once chosen. */
    bool from_backup;
    uint64_t version;
    int64_t at;
    uint64_t checksum;
    char *data;
    size_t size;
    char source[96];
    bool holds_key; /* the task's key in s->inflight is this repair's */
    /* Backups still to read, newest first, and what the read ones said. */
    char backups[RD_SCHED_REPAIR_BACKUPS][65];
    unsigned n_backups, next_backup;
    char tried[512];
    struct waiter *waiters;
};

/* ---- the choice of source ------------------------------------------------ */

size_t rd_sched__repair_backups(const struct rd_fsm *f, const struct rd_backup **out, size_t max)
{
    size_t n_recs, n = 0;
    const struct rd_backup *const *recs = rd_fsm_backups(f, &n_recs);
    for (size_t i = 0; i < n_recs; i++) {
        const struct rd_backup *b = recs[i];
        if (b->status != RD_BACKUP_COMPLETED)
            continue;
        /* Insert by index, newest first (then by completion time). */
        size_t at = n;
        while (at > 0 && (out[at - 1]->index < b->index ||
                          (out[at - 1]->index == b->index &&
                           out[at - 1]->completed_at_ms < b->completed_at_ms)))
            at--;
        if (at >= max)
            continue;
        size_t last = n < max ? n : max - 1;
        memmove(&out[at + 1], &out[at], (last - at) * sizeof(*out));
        out[at] = b;
        if (n < max)
            n++;
    }
    return n;
}

const struct rd_checkpoint *rd_sched__repair_pick(const struct rd_checkpoint *ckpts, unsigned n,
                                                  uint64_t bad_version)
{
    for (unsigned k = n; k-- > 0;)
        if (ckpts[k].version <= bad_version && rd_checkpoint_verifies(&ckpts[k]))
            return &ckpts[k];
    return NULL;
}

/* ---- bookkeeping --------------------------------------------------------- */

static bool leading(const struct rd_sched *s)
{
    return s->env.log.is_leader(s->env.log.data) && !*s->env.shutting_down;
}

/* The open data_corruption fault about version `version` of `task_id`'s
 * checkpoint, or NULL. */
static const struct rd_fault *open_fault_of(const struct rd_fsm *f, const char *task_id,
                                            uint64_t version)
{
    size_t seen = 0;
    for (size_t i = f->n_faults; i-- > 0 && seen < f->open_faults;) {
        const struct rd_fault *x = f->faults[i];
        if (x->status != RD_FAULT_OPEN_ST)
            continue;
        seen++;
        if (x->type != RD_FAULT_DATA_CORRUPTION)
            continue;
        json_t *m = json_loads(x->metadata_json, 0, NULL);
        const char *tid = json_string_value(json_object_get(m, "task_id"));
        json_t *v = json_object_get(m, "version");
        bool match = tid != NULL && strcmp(tid, task_id) == 0 && json_is_integer(v) &&
                     (uint64_t)json_integer_value(v) == version;
        json_decref(m);
        if (match)
            return x;
    }
    return NULL;
}

static void repair_free(struct rd_repair *r)
{
    while (r->waiters != NULL) {
        struct waiter *w = r->waiters;
        r->waiters = w->next;
        free(w);
    }
    free(r->data);
    free(r);
}

/* The repair ended: the task may move again, and whoever waits is told. */
static void finish(struct rd_repair *r, int status)
{
    struct rd_sched *s = r->s;
    rd_map_del(&s->repairs, r->task_id, strlen(r->task_id));
    if (r->holds_key)
        free(rd_map_del(&s->inflight, r->task_id, strlen(r->task_id)));
    for (struct waiter *w = r->waiters; w != NULL; w = w->next)
        if (w->cb != NULL)
            w->cb(w->data, status);
    repair_free(r);
    rd_sched_kick(s);
}

static int add_waiter(struct rd_repair *r, rd_sched_repair_cb cb, void *data)
{
    if (cb == NULL)
        return 0;
    struct waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return RD_ENOMEM;
    w->cb = cb;
    w->data = data;
    w->next = r->waiters;
    r->waiters = w;
    return 0;
}

/* ---- committing: the fault, then the repair ------------------------------ */

static void restored(void *data, int status, uint64_t value)
{
    struct rd_repair *r = data;
    struct rd_sched *s = r->s;
    (void)value;
    if (status == 0) {
        s->repairs_total[r->from_backup ? RD_REPAIR_FROM_BACKUP : RD_REPAIR_FROM_VERSION]++;
        RD_INFO("recovery", "checkpoint_restored",
                "task=%s bad_version=%llu source=\"%s\" fault=%s", r->task_id,
                (unsigned long long)r->bad_version, r->source, r->fault_id);
    } else {
        /* Refused: a newer checkpoint came, or the version went (the sweep
         * settles the fault); or the log could not take it. */
        RD_WARN("recovery", "checkpoint_restore_refused", "task=%s bad_version=%llu error=%s",
                r->task_id, (unsigned long long)r->bad_version, rd_err_name(status));
    }
    finish(r, status);
}

static void propose_restore(struct rd_repair *r)
{
    struct rd_sched *s = r->s;
    struct rd_cmd cmd = {.type = RD_CMD_CHECKPOINT_RESTORE};
    struct rd_cmd_checkpoint_restore *c = &cmd.u.crestore;
    c->task_id = RD_STR(r->task_id);
    c->bad_version = r->bad_version;
    c->version = r->version;
    c->from_backup = r->from_backup ? 1 : 0;
    c->at = r->at;
    c->checksum = r->checksum;
    c->data_json = (struct rd_str){r->data ? r->data : "", (uint32_t)r->size};
    c->source = RD_STR(r->source);
    c->fault_id = RD_STR(r->fault_id);
    rd_cmd_audit_engine(&cmd, "checkpoint_repair", r->task_id, r->fault_id);
    int rv = leading(s) ? s->env.log.propose(s->env.log.data, &cmd, restored, r) : RD_ENOTLEADER;
    if (rv != 0)
        finish(r, rv);
}

static void fault_opened(void *data, int status, uint64_t value)
{
    struct rd_repair *r = data;
    (void)value;
    if (status != 0 && status != RD_EEXISTS) {
        finish(r, status);
        return;
    }
    if (r->source[0] == '\0') { /* nothing good: the fault says so and stays open */
        finish(r, RD_ECORRUPT);
        return;
    }
    propose_restore(r);
}

/* Records the corruption: a major data_corruption fault about the task
 * (unless one is open already), then the repair when there is a source. */
static void record(struct rd_repair *r, const char *reason)
{
    struct rd_sched *s = r->s;
    const struct rd_fsm *f = s->env.fsm;
    const struct rd_fault *open = open_fault_of(f, r->task_id, r->bad_version);
    if (open != NULL) {
        snprintf(r->fault_id, sizeof(r->fault_id), "%s", open->id);
        fault_opened(r, 0, 0);
        return;
    }
    if (rd_uuid_v4(r->fault_id) != 0) {
        finish(r, RD_EIO);
        return;
    }
    json_t *m =
        json_pack("{s:s,s:I,s:o}", "task_id", r->task_id, "version", (json_int_t)r->bad_version,
                  "restored_from", r->source[0] ? json_string(r->source) : json_null());
    if (m != NULL && reason != NULL)
        json_object_set_new(m, "reason", json_string(reason));
    char *meta = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(m);
    if (meta == NULL) {
        finish(r, RD_ENOMEM);
        return;
    }
    /* On its agent when it has one that still exists, else cluster-wide. */
    const char *node =
        r->node_id[0] && rd_fsm_node(f, r->node_id, strlen(r->node_id)) != NULL ? r->node_id : "";
    struct rd_cmd cmd = rd_cmd_cluster_fault(0, r->fault_id, RD_FAULT_DATA_CORRUPTION, RD_SEV_MAJOR,
                                             meta, "\"restore_checkpoint\"");
    cmd.u.fopen.node_id = RD_STR(node);
    int rv =
        leading(s) ? s->env.log.propose(s->env.log.data, &cmd, fault_opened, r) : RD_ENOTLEADER;
    free(meta);
    if (rv != 0)
        finish(r, rv);
}

/* ---- finding a source ---------------------------------------------------- */

/* No good copy anywhere: the task starts over; the fault says why. */
static void nothing_good(struct rd_repair *r)
{
    struct rd_sched *s = r->s;
    char reason[768];
    snprintf(reason, sizeof(reason),
             "no older version of the checkpoint verifies; %s; the task starts over without a "
             "checkpoint",
             r->n_backups == 0 ? "no completed backup to read" : r->tried);
    RD_ERROR("recovery", "checkpoint_unrepairable", "task=%s version=%llu reason=\"%s\"",
             r->task_id, (unsigned long long)r->bad_version, reason);
    s->repairs_total[RD_REPAIR_NONE]++;
    /* This leadership does not search again for that version. */
    struct unrepairable *u = calloc(1, sizeof(*u));
    if (u != NULL) {
        u->version = r->bad_version;
        snprintf(u->task_id, sizeof(u->task_id), "%s", r->task_id);
        free(rd_map_del(&s->unrepairable, u->task_id, strlen(u->task_id)));
        if (rd_map_put(&s->unrepairable, u->task_id, strlen(u->task_id), u) != 0)
            free(u);
    }
    record(r, reason);
}

static void note_tried(struct rd_repair *r, const char *id, const char *what)
{
    size_t used = strlen(r->tried);
    snprintf(r->tried + used, sizeof(r->tried) - used, "%sbackup %s %s", used ? "; " : "", id,
             what);
}

static void next_backup(struct rd_repair *r);

static void backup_read(void *data, int status, const struct rd_checkpoint *ckpts, unsigned n,
                        const char *detail)
{
    struct rd_repair *r = data;
    const char *id = r->backups[r->next_backup - 1];
    if (!leading(r->s)) {
        finish(r, RD_ENOTLEADER);
        return;
    }
    if (status != 0) {
        RD_WARN("recovery", "checkpoint_backup_unreadable",
                "task=%s backup=%s error=%s detail=\"%s\"", r->task_id, id, rd_err_name(status),
                detail ? detail : "");
        note_tried(r, id, "could not be read");
        next_backup(r);
        return;
    }
    const struct rd_checkpoint *c = rd_sched__repair_pick(ckpts, n, r->bad_version);
    if (c == NULL) {
        note_tried(r, id, n ? "holds no version that verifies" : "holds no checkpoint of it");
        next_backup(r);
        return;
    }
    r->data = malloc(c->size + 1);
    if (r->data == NULL) {
        finish(r, RD_ENOMEM);
        return;
    }
    memcpy(r->data, c->data, c->size);
    r->data[c->size] = '\0';
    r->size = c->size;
    r->from_backup = true;
    r->version = c->version;
    r->at = c->at;
    r->checksum = c->checksum;
    snprintf(r->source, sizeof(r->source), "backup %s", id);
    record(r, NULL);
}

static void next_backup(struct rd_repair *r)
{
    struct rd_sched *s = r->s;
    while (r->next_backup < r->n_backups) {
        const char *id = r->backups[r->next_backup++];
        int rv = s->env.backup_checkpoints(s->env.backup_data, id, r->task_id, backup_read, r);
        if (rv == 0)
            return;
        RD_WARN("recovery", "checkpoint_backup_unreadable", "task=%s backup=%s error=%s",
                r->task_id, id, rd_err_name(rv));
        note_tried(r, id, "could not be read");
    }
    nothing_good(r);
}

/* Starts the repair of `t`, whose newest checkpoint fails its checksum. */
static int start(struct rd_sched *s, const struct rd_task *t, rd_sched_repair_cb cb, void *data)
{
    const struct rd_checkpoint *bad = rd_task_checkpoint(t);
    struct rd_repair *r = calloc(1, sizeof(*r));
    char *key = strdup(t->id);
    if (r == NULL || key == NULL || add_waiter(r, cb, data) != 0) {
        free(key);
        if (r != NULL)
            repair_free(r);
        return RD_ENOMEM;
    }
    r->s = s;
    snprintf(r->task_id, sizeof(r->task_id), "%s", t->id);
    snprintf(r->node_id, sizeof(r->node_id), "%s", t->node_id);
    r->bad_version = bad->version;
    /* The task's key keeps it from moving meanwhile; when a proposal about
     * it holds the key already, that one's commit releases it. */
    bool take_key = rd_map_get(&s->inflight, t->id, strlen(t->id)) == NULL;
    if (rd_map_put(&s->repairs, r->task_id, strlen(r->task_id), r) != 0 ||
        (take_key && rd_map_put(&s->inflight, key, strlen(key), key) != 0)) {
        rd_map_del(&s->repairs, r->task_id, strlen(r->task_id));
        free(key);
        repair_free(r);
        return RD_ENOMEM;
    }
    r->holds_key = take_key;
    if (!take_key)
        free(key);
    RD_WARN("recovery", "checkpoint_corrupt", "task=%s version=%llu node=%s", t->id,
            (unsigned long long)bad->version, t->node_id[0] ? t->node_id : "-");
    /* 1. An older version the task still holds. */
    const struct rd_checkpoint *older = rd_task_resume_checkpoint(t);
    if (older != NULL) {
        r->version = older->version;
        snprintf(r->source, sizeof(r->source), "version %llu", (unsigned long long)older->version);
        record(r, NULL);
        return 1;
    }
    /* 2. The newest completed backups, read one after the other. */
    if (s->env.backup_checkpoints != NULL) {
        const struct rd_backup *recs[RD_SCHED_REPAIR_BACKUPS];
        r->n_backups =
            (unsigned)rd_sched__repair_backups(s->env.fsm, recs, RD_SCHED_REPAIR_BACKUPS);
        for (unsigned i = 0; i < r->n_backups; i++)
            snprintf(r->backups[i], sizeof(r->backups[i]), "%s", recs[i]->id);
        next_backup(r);
        return 1;
    }
    /* 3. Nothing. */
    nothing_good(r);
    return 1;
}

/* ---- the module's entry points ------------------------------------------ */

int rd_sched_repair_checkpoint(struct rd_sched *s, const char *task_id, rd_sched_repair_cb cb,
                               void *data)
{
    const struct rd_task *t = rd_fsm_task(s->env.fsm, task_id);
    if (t == NULL)
        return RD_ENOTFOUND;
    const struct rd_checkpoint *c = rd_task_checkpoint(t);
    if (c == NULL || rd_checkpoint_verifies(c))
        return 0;
    struct rd_repair *r = rd_map_get(&s->repairs, t->id, strlen(t->id));
    if (r != NULL)
        return add_waiter(r, cb, data) == 0 ? 1 : RD_ENOMEM;
    const struct unrepairable *known = rd_map_get(&s->unrepairable, t->id, strlen(t->id));
    if (known != NULL && known->version == c->version)
        return RD_ECORRUPT;
    if (!leading(s))
        return RD_ENOTLEADER;
    return start(s, t, cb, data);
}

int rd_sched_resume_checkpoint(struct rd_sched *s, const struct rd_task *t,
                               const struct rd_checkpoint **out)
{
    *out = rd_task_checkpoint(t);
    if (*out == NULL || rd_checkpoint_verifies(*out))
        return 0;
    int rv = rd_sched_repair_checkpoint(s, t->id, NULL, NULL);
    if (rv == 1)
        return RD_EBUSY;
    /* No good copy (RD_ECORRUPT: start over), or no repair possible here:
     * the newest version that verifies, if any, as before repairs existed. */
    *out = rv == RD_ECORRUPT ? NULL : rd_task_resume_checkpoint(t);
    return 0;
}

/* Settles a data_corruption fault whose checkpoint moved on. */
static void sweep_resolved(void *data, int status, uint64_t value)
{
    struct rd_sched *s = data;
    (void)value;
    s->repair_sweeping = false;
    if (status != 0)
        RD_DEBUG("recovery", "checkpoint_fault_resolve_refused", "error=%s", rd_err_name(status));
}

void rd_sched__repair_sweep(struct rd_sched *s)
{
    const struct rd_fsm *f = s->env.fsm;
    uint64_t now = rd_mono_ns();
    if (f->open_faults == 0 || s->repair_sweeping || now < s->repair_sweep_ns)
        return;
    s->repair_sweep_ns = now + SWEEP_NS;
    size_t seen = 0;
    for (size_t i = f->n_faults; i-- > 0 && seen < f->open_faults;) {
        const struct rd_fault *x = f->faults[i];
        if (x->status != RD_FAULT_OPEN_ST)
            continue;
        seen++;
        if (x->type != RD_FAULT_DATA_CORRUPTION)
            continue;
        json_t *m = json_loads(x->metadata_json, 0, NULL);
        const char *tid = json_string_value(json_object_get(m, "task_id"));
        json_t *jv = json_object_get(m, "version");
        char task_id[40];
        uint64_t version = json_is_integer(jv) ? (uint64_t)json_integer_value(jv) : 0;
        bool ours = tid != NULL && strlen(tid) < sizeof(task_id) && version != 0;
        if (ours)
            snprintf(task_id, sizeof(task_id), "%s", tid);
        json_decref(m);
        if (!ours || rd_map_get(&s->repairs, task_id, strlen(task_id)))
            continue;
        const struct rd_task *t = rd_fsm_task(f, task_id);
        const struct rd_checkpoint *c = t ? rd_task_checkpoint(t) : NULL;
        char note[160];
        if (t == NULL)
            snprintf(note, sizeof(note), "the task is gone");
        else if (c == NULL)
            snprintf(note, sizeof(note), "the task holds no checkpoint any more");
        else if (c->version != version && rd_checkpoint_verifies(c))
            snprintf(note, sizeof(note), "checkpoint version %llu, written since, verifies",
                     (unsigned long long)c->version);
        else {
            /* Still the bad version: a repair a leader did not finish. */
            if (c->version == version)
                rd_sched_repair_checkpoint(s, task_id, NULL, NULL);
            continue;
        }
        struct rd_cmd cmd = {.type = RD_CMD_FAULT_RESOLVE};
        cmd.u.fresolve.id = RD_STR(x->id);
        cmd.u.fresolve.node_id = RD_STR("");
        cmd.u.fresolve.note = RD_STR(note);
        /* One at a time: the next sweep sees it resolved and goes on. */
        if (s->env.log.propose(s->env.log.data, &cmd, sweep_resolved, s) == 0)
            s->repair_sweeping = true;
        return;
    }
}

void rd_sched__repair_stop(struct rd_sched *s)
{
    /* What this leadership learnt of good copies is not the next one's. */
    for (size_t i = 0; i < s->unrepairable.cap; i++)
        free(s->unrepairable.slots[i].value); /* NULL in empty and deleted slots */
    rd_map_free(&s->unrepairable);
    rd_map_init(&s->unrepairable);
}

void rd_sched__repair_close(struct rd_sched *s)
{
    rd_sched__repair_stop(s);
    /* Repairs still here wait for callbacks that will never come (the loop
     * ended): free them, and their keys in s->inflight go with it. */
    for (size_t i = 0; i < s->repairs.cap; i++)
        if (s->repairs.slots[i].value != NULL)
            repair_free(s->repairs.slots[i].value);
    rd_map_free(&s->repairs);
}
