/*
 * The state machine's glue: applying one log command (decode, dispatch to
 * the file of its record kind, the applied count and time, the node
 * observer), the result handed back to raft, and the raft_fsm callbacks
 * (apply, snapshot, restore) with the machine's life cycle. The records live
 * in nodes.c, faults.c, tasks.c, recovery.c, replicas.c, backups.c and
 * checks.c; snapshots in snapshot.c; the digest in digest.c.
 */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "fsm_int.h"
#include "recoveryd/error.h"

/* The raft index of the entry about to be applied (fsm.h: applying_index). */
static uint64_t index_being_applied(const struct rd_fsm *f)
{
    if (f->raft_ref != NULL)
        return raft_last_applied(f->raft_ref) + 1;
    return f->n_applied + 1;
}

static int apply_cmd(struct rd_fsm *f, const void *buf, size_t len, int64_t *time_ms);

/* A batch entry (cmd.h, format 3): its commands in order, each answered
 * through on_item. A command that cannot be read is refused alone, as an
 * entry of its own would be; RD_ENOMEM stops the entry (raft retries it). */
static int apply_batch(struct rd_fsm *f, const void *buf, size_t len, int64_t *time_ms,
                       bool *decoded)
{
    struct rd_cmd_batch b;
    int rv = rd_cmd_batch_open(&b, buf, len);
    if (rv != 0) {
        memset(&f->result, 0, sizeof(f->result));
        f->result.old_state = -1;
        f->result.status = rv;
        snprintf(f->errmsg, sizeof(f->errmsg), "cannot apply batch (%zu bytes): %s", len,
                 rd_strerror(rv));
        return rv;
    }
    *time_ms = b.time_ms;
    *decoded = true;
    int first_err = 0;
    const uint8_t *cmd;
    size_t n;
    uint32_t pos = 0;
    while ((rv = rd_cmd_batch_next(&b, &cmd, &n)) == 1) {
        int64_t t;
        int crv = apply_cmd(f, cmd, n, &t);
        if (crv == RD_ENOMEM) {
            *decoded = false;
            return crv;
        }
        if (crv != 0 && first_err == 0)
            first_err = crv;
        if (f->on_item != NULL)
            f->on_item(f->on_item_data, f->applying_index, pos, f->result.status, f->result.value);
        pos++;
    }
    if (rv != 0) {
        /* Cut short: the commands before the cut stand; those after it are
         * refused (their writers hear RD_EPARSE from the entry's result). */
        f->result.status = rv;
        snprintf(f->errmsg, sizeof(f->errmsg), "batch cut short after %u of %u commands: %s", pos,
                 b.count, rd_strerror(rv));
        return rv;
    }
    return first_err;
}

int rd_fsm_apply(struct rd_fsm *f, const void *buf, size_t len, const struct rd_fsm_result **out)
{
    f->applying_index = index_being_applied(f);
    if (out)
        *out = &f->result;
    int64_t time_ms = 0;
    bool decoded = false;
    int rv;
    if (rd_cmd_is_batch(buf, len)) {
        rv = apply_batch(f, buf, len, &time_ms, &decoded);
    } else {
        rv = apply_cmd(f, buf, len, &time_ms);
        decoded = rv == 0;
    }
    /* Every entry that decoded, refused commands included (replaying them
     * gives the same state): a batch once, whole. */
    if (decoded && f->on_entry != NULL)
        f->on_entry(f->on_entry_data, f->applying_index, time_ms, buf, len);
    f->applying_index = 0;
    return rv;
}

/* One command (not a batch): decode, apply, count. *time_ms is its stamp
 * once it decoded. */
static int apply_cmd(struct rd_fsm *f, const void *buf, size_t len, int64_t *time_ms)
{
    struct rd_cmd cmd;
    memset(&f->result, 0, sizeof(f->result));
    f->result.old_state = -1;
    int rv = rd_cmd_decode(buf, len, &cmd);
    if (rv != 0) {
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "cannot apply command (format %u, type %u, %zu bytes): %s",
                 len > 0 ? ((const uint8_t *)buf)[0] : 0, len > 1 ? ((const uint8_t *)buf)[1] : 0,
                 len, rd_strerror(rv));
        f->result.status = rv;
        return rv;
    }
    f->result.type = cmd.type;
    *time_ms = cmd.time_ms;
    switch (cmd.type) {
    case RD_CMD_NOOP:
        break;
    case RD_CMD_NODE_REGISTER:
        rv = rd_fsm__node_apply(f, &cmd);
        break;
    case RD_CMD_NODE_TRANSITION:
        rv = rd_fsm__node_apply(f, &cmd);
        /* A transition that clears the node's faults (it recovered): the
         * faults' side, applied here so that nodes and faults stay apart. */
        if (rv == 0 && f->result.status == 0 && cmd.u.trans.resolve_faults)
            rv = rd_fsm__faults_resolve_node(f, (struct rd_node *)f->result.node, cmd.time_ms,
                                             cmd.u.trans.reason);
        break;
    case RD_CMD_FAULT_OPEN:
    case RD_CMD_FAULT_RESOLVE:
        rv = rd_fsm__fault_apply(f, &cmd);
        break;
    case RD_CMD_TASK_SUBMIT:
    case RD_CMD_TASK_ASSIGN:
    case RD_CMD_TASK_CHECKPOINT:
    case RD_CMD_TASK_FINISH:
        rv = rd_fsm__task_apply(f, &cmd);
        break;
    case RD_CMD_TASK_LIFECYCLE:
        rv = rd_fsm__task_apply(f, &cmd);
        /* A retried task's quarantine or deadline fault is over: the
         * faults' side, applied here so that tasks and faults stay apart. */
        if (rv == 0 && f->result.status == 0 && cmd.u.tlife.op == RD_TASK_OP_RETRY)
            rv = rd_fsm__faults_resolve_task(f, cmd.u.tlife.task_id, cmd.time_ms,
                                             RD_STR("task retried by an operator"));
        break;
    case RD_CMD_CHECKPOINT_RESTORE:
        rv = rd_fsm__task_apply(f, &cmd);
        /* The repair settles its data_corruption fault in the same step:
         * the faults' side, applied here so that tasks and faults stay apart. */
        if (rv == 0 && f->result.status == 0 && cmd.u.crestore.fault_id.len > 0) {
            char why[320];
            snprintf(why, sizeof(why), "checkpoint restored from %.*s",
                     (int)cmd.u.crestore.source.len, cmd.u.crestore.source.p);
            rv = rd_fsm__fault_resolve(f, cmd.u.crestore.fault_id, cmd.time_ms, RD_STR(why));
        }
        break;
    case RD_CMD_REPLICA_INFO:
        rv = rd_fsm__replica_apply(f, &cmd);
        break;
    case RD_CMD_RECOVERY_OPEN:
    case RD_CMD_RECOVERY_CLOSE:
        rv = rd_fsm__recovery_apply(f, &cmd);
        break;
    case RD_CMD_BACKUP:
        rv = rd_fsm__backup_apply(f, &cmd);
        break;
    case RD_CMD_ARCHIVE:
    case RD_CMD_CLUSTER_ID:
        rv = rd_fsm__archive_apply(f, &cmd);
        break;
    case RD_CMD_CHECK:
    case RD_CMD_CHECK_RESULT:
        rv = rd_fsm__check_apply(f, &cmd);
        break;
    case RD_CMD_RECORDS_EXPORT:
        rv = rd_fsm__export_apply(f, &cmd);
        break;
    case RD_CMD_CONFLICT:
        rv = rd_fsm__conflict_apply(f, &cmd);
        break;
    case RD_CMD_AUDIT:
        break;
    }
    /* The record of who asked, in the same apply as the change (or its
     * refusal): a change is never in the state without its record. */
    if (rv == 0 && cmd.audit.present)
        rv = rd_fsm__audit_apply(f, &cmd, f->result.status);
    /* Whatever the command did (a refusal changes nothing; on RD_ENOMEM
     * part of it may have happened), the digest follows the records. */
    rd_fsm__dg_commit(f);
    if (rv != 0) {
        f->result.status = rv;
        f->result.node = NULL;
        snprintf(f->errmsg, sizeof(f->errmsg), "apply %s: %s", rd_cmd_type_name(cmd.type),
                 rd_strerror(rv));
        return rv;
    }
    f->n_applied++;
    if (cmd.time_ms > f->last_time_ms)
        f->last_time_ms = cmd.time_ms;
    if (f->result.node != NULL)
        f->result.value = f->result.node->epoch;
    if (f->result.status == 0 && f->result.node != NULL && f->on_node != NULL)
        f->on_node(f->on_node_data, f->result.node, f->result.old_state);
    if (f->result.status == 0 && f->on_command != NULL)
        f->on_command(f->on_command_data, f->applying_index, &cmd);
    return 0;
}

void rd_fsm_bind_raft(struct rd_fsm *f, struct raft *raft)
{
    f->raft_ref = raft;
}

int64_t rd_fsm_stamp(const struct rd_fsm *f)
{
    int64_t now = rd_now_ms();
    return now > f->last_time_ms ? now : f->last_time_ms;
}

/* ---- raft_fsm callbacks and life cycle ----------------------------------- */

static int fsm_apply_cb(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
    struct rd_fsm *f = rf->data;
    const struct rd_fsm_result *res;
    int rv = rd_fsm_apply(f, buf->base, buf->len, &res);
    *result = rd_fsm_pack(res->status, res->value);
    if (rv == RD_ENOMEM)
        return RAFT_NOMEM;
    /* An unreadable command is refused for this entry only: stopping here
     * would wedge the replica forever; the error travels in the result and
     * the log (errmsg), and the digest check will show any divergence. */
    return 0;
}

static int fsm_snapshot_cb(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n)
{
    struct rd_fsm *f = rf->data;
    /* The occasional full recomputation of the digest: what changed without
     * its hash following shows in the next consistency check. */
    size_t wrong = rd_fsm_digest_audit(f);
    if (wrong != 0)
        RD_ERROR("fsm", "state_digest_audit",
                 "records=%zu detail=\"records changed without their digest following (memory "
                 "corruption or a bug in apply); the digest now covers them, the next "
                 "consistency check compares them with the other replicas\"",
                 wrong);
    struct rd_wbuf w;
    rd_w_init(&w);
    int rv = rd_fsm_snapshot(f, &w);
    if (rv != 0) {
        rd_w_free(&w);
        return RAFT_NOMEM;
    }
    /* raft's default heap is malloc/free, so the buffers pass straight over;
     * raft frees both the array and the data (fsm version 1). */
    *bufs = raft_malloc(sizeof(**bufs));
    if (*bufs == NULL) {
        rd_w_free(&w);
        return RAFT_NOMEM;
    }
    (*bufs)[0].base = w.p;
    (*bufs)[0].len = w.len;
    *n = 1;
    return 0;
}

static int fsm_restore_cb(struct raft_fsm *rf, struct raft_buffer *buf)
{
    struct rd_fsm *f = rf->data;
    int rv = rd_fsm_restore(f, buf->base, buf->len);
    if (rv != 0) {
        RD_ERROR("fsm", "snapshot_refused", "bytes=%zu error=\"%s\"", buf->len, f->errmsg);
        return rv == RD_ENOMEM ? RAFT_NOMEM : RAFT_CORRUPT;
    }
    RD_INFO("fsm", "snapshot_restored", "bytes=%zu nodes=%zu tasks=%zu applied=%llu", buf->len,
            f->n_nodes, f->n_tasks, (unsigned long long)f->n_applied);
    raft_free(buf->base);
    return 0;
}

int rd_fsm_init(struct rd_fsm *f)
{
    memset(f, 0, sizeof(*f));
    rd_map_init(&f->by_id);
    rd_map_init(&f->faults_by_id);
    rd_map_init(&f->tasks_by_id);
    rd_map_init(&f->recoveries_by_id);
    rd_map_init(&f->backups_by_id);
    rd_map_init(&f->checks_by_id);
    rd_map_init(&f->conflicts_by_id);
    rd_map_init(&f->conflicts_by_write);
    f->raft.version = 1;
    f->raft.data = f;
    f->raft.apply = fsm_apply_cb;
    f->raft.snapshot = fsm_snapshot_cb;
    f->raft.restore = fsm_restore_cb;
    f->dg.pending_max = RD_DG_PENDING_MAX;
    return 0;
}

void rd_fsm__clear(struct rd_fsm *f)
{
    rd_fsm__dg_reset(f); /* first: the pending list points at the records */
    rd_fsm__nodes_clear(f);
    rd_fsm__faults_clear(f);
    rd_fsm__tasks_clear(f);
    rd_fsm__recoveries_clear(f);
    rd_fsm__replicas_clear(f);
    rd_fsm__backups_clear(f);
    rd_fsm__checks_clear(f);
    rd_fsm__audits_clear(f);
    rd_fsm__conflicts_clear(f);
    rd_fsm__export_clear(f);
    f->n_applied = 0;
    f->last_time_ms = 0;
}

void rd_fsm_close(struct rd_fsm *f)
{
    rd_fsm__clear(f);
    rd_fsm__dg_free(f);
}
