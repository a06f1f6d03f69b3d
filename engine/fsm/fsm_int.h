/*
 * What the state machine's files call in each other; nothing outside
 * engine/fsm/ includes it. Included by every file that holds part of the
 * machine: fsm.c (the glue: apply dispatch, raft callbacks, life cycle),
 * nodes.c, faults.c, tasks.c, recovery.c, replicas.c, backups.c, checks.c
 * (one record kind each), snapshot.c (the snapshot container and the order
 * of its sections), digest.c (the incremental digest) and inject.c (fault
 * injection, test builds only).
 *
 * Each record kind offers the same five entry points: apply (the commands
 * that change it; a refusal goes in f->result.status and returns 0, only
 * RD_ENOMEM is returned), write and read (its snapshot section), clear
 * (frees it) and move (hands it from one machine to another: restore's
 * swap). Beyond those, only what one kind's commands do to another kind
 * (a fault that moves its node or quarantines a task, a transition that
 * resolves faults, a move that joins a recovery run).
 *
 * The digest (digest.c): a record kind that carries a hash (enum
 * rd_dg_kind) also writes one record alone (rd_fsm__<kind>_write_one, the
 * bytes its section holds for it), and every change to such a record in
 * apply goes through the touch list: rd_fsm__dg_touch(f, kind, rec) before
 * the first change to a record (a new record: right after it joined the
 * machine), rd_fsm__dg_remove(f, kind, rec) before a record is freed.
 * rd_fsm_apply() commits the list (rd_fsm__dg_commit) after each command:
 * the new hashes are taken once more than dg.pending_max records wait.
 * A change without its touch is a bug rd_fsm_digest_full() catches and
 * tests/unit/fsm/test_digest.c hunts for.
 */
#ifndef RD_FSM_INT_H
#define RD_FSM_INT_H

#include "fsm.h"

/* fsm.c: frees every record and zeroes the applied count and time. */
void rd_fsm__clear(struct rd_fsm *f);

/* digest.c: the touch list. `rec` is the record of `kind` (struct rd_node *
 * for RD_DG_NODE, ...). Touch takes its hash out of the sums until a flush
 * puts its new hash in (again and again until then: once). */
void rd_fsm__dg_touch(struct rd_fsm *f, int kind, void *rec);
/* A record that joins the machine in this apply (its hash is not in the
 * sums): call after it is in the machine. */
void rd_fsm__dg_add(struct rd_fsm *f, int kind, void *rec);
/* A record that leaves the machine: its hash goes; call before freeing it. */
void rd_fsm__dg_remove(struct rd_fsm *f, int kind, void *rec);
/* After each command: flushes when more than dg.pending_max records wait
 * (or the list was lost). */
void rd_fsm__dg_commit(struct rd_fsm *f);
/* Hashes the touched records into the sums and empties the list. Never in
 * the middle of a command (what it changes after would not follow). */
void rd_fsm__dg_flush(struct rd_fsm *f);
/* Recomputes every record's hash and the sums (after a restore). */
void rd_fsm__dg_rebuild(struct rd_fsm *f);
/* Zeroes the sums and forgets the list (every record is gone). */
void rd_fsm__dg_reset(struct rd_fsm *f);
/* Frees the list (rd_fsm_close). */
void rd_fsm__dg_free(struct rd_fsm *f);
/* The hash of one record of `kind` as it is now; `scratch` is a writer the
 * caller owns (reused: emptied first). */
uint64_t rd_fsm__dg_hash(int kind, const void *rec, struct rd_wbuf *scratch);

/* nodes.c: node_register and node_transition. */
int rd_fsm__node_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
/* Moves `n` to `state` for `reason` at `time_ms` (state counts follow); on
 * RD_ENOMEM nothing changed. */
int rd_fsm__node_move(struct rd_fsm *f, struct rd_node *n, uint8_t state, struct rd_str reason,
                      int64_t time_ms);
void rd_fsm__nodes_write(const struct rd_fsm *f, struct rd_wbuf *w);
void rd_fsm__node_write_one(struct rd_wbuf *w, const struct rd_node *n);
int rd_fsm__nodes_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__nodes_clear(struct rd_fsm *f);
void rd_fsm__nodes_move(struct rd_fsm *to, struct rd_fsm *from);

/* faults.c: fault_open and fault_resolve. Nodes are read before faults
 * (a fault counts itself on its node). */
int rd_fsm__fault_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
/* Resolves every open fault of `n` (a node that recovered or left). */
int rd_fsm__faults_resolve_node(struct rd_fsm *f, struct rd_node *n, int64_t t, struct rd_str why);
/* Resolves fault `id` with `why` when it is open (a repair that settles its
 * fault in the same step); nothing when it is missing or resolved. */
int rd_fsm__fault_resolve(struct rd_fsm *f, struct rd_str id, int64_t t, struct rd_str why);
/* Resolves the open cluster-wide faults of task `task_id` (a poison task's
 * quarantine, a passed deadline: metadata.task_id names it) with `why`. */
int rd_fsm__faults_resolve_task(struct rd_fsm *f, struct rd_str task_id, int64_t t,
                                struct rd_str why);
void rd_fsm__faults_write(const struct rd_fsm *f, struct rd_wbuf *w);
void rd_fsm__fault_write_one(struct rd_wbuf *w, const struct rd_fault *x);
int rd_fsm__faults_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__faults_clear(struct rd_fsm *f);
void rd_fsm__faults_move(struct rd_fsm *to, struct rd_fsm *from);

/* tasks.c: task_submit, task_assign, task_checkpoint, task_finish,
 * checkpoint_restore and task_lifecycle (cancel, retry, prune). Nodes
 * are read before tasks (a placed task counts itself on its node). */
int rd_fsm__task_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
void rd_fsm__tasks_write(const struct rd_fsm *f, struct rd_wbuf *w);
void rd_fsm__task_write_one(struct rd_wbuf *w, const struct rd_task *t);
/* `format`: the snapshot's format (1 had no failure times). */
int rd_fsm__tasks_read(struct rd_fsm *f, struct rd_rbuf *r, unsigned format);
/* A poison task's quarantine (fault_open with a task): 0 when `task_id` at
 * `attempt` may be failed, else the refusal (RD_ENOTFOUND, RD_EFENCED,
 * RD_ECONFLICT). */
int rd_fsm__task_quarantine_check(const struct rd_fsm *f, struct rd_str task_id, uint32_t attempt);
/* Fails it (after the check) with `why` as its result. */
int rd_fsm__task_quarantine(struct rd_fsm *f, struct rd_str task_id, const char *why,
                            int64_t time_ms);
void rd_fsm__tasks_clear(struct rd_fsm *f);
/* Moves the task table of `from` into `to` (restore's swap). */
void rd_fsm__tasks_move(struct rd_fsm *to, struct rd_fsm *from);

/* tasks.c, for conflicts.c: true when `attempt` (at most the task's) may no
 * longer write to `t` (superseded, taken back, or the task finished). */
bool rd_fsm__task_superseded(const struct rd_task *t, uint32_t attempt);
/* Carries out resolution `res` of the conflict `cmd` on `t` (keep_newer:
 * nothing; keep_progress: a newer checkpoint becomes the task's and a
 * placed task is taken back, or a result completes it; fail_task: it
 * fails). *adopted: the write's data became the task's; *changed: the task
 * changed. On RD_ENOMEM nothing changed. */
int rd_fsm__task_conflict(struct rd_fsm *f, struct rd_task *t, const struct rd_cmd *cmd,
                          uint8_t res, bool *adopted, bool *changed);

/* conflicts.c: RD_CMD_CONFLICT. Section in snapshots of format 8 on. */
int rd_fsm__conflict_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
/* Drops the records of tasks that are gone (after a prune). */
void rd_fsm__conflicts_drop_pruned(struct rd_fsm *f);
void rd_fsm__conflicts_write(const struct rd_fsm *f, struct rd_wbuf *w);
void rd_fsm__conflict_write_one(struct rd_wbuf *w, const struct rd_conflict *c);
int rd_fsm__conflicts_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__conflicts_clear(struct rd_fsm *f);
void rd_fsm__conflicts_move(struct rd_fsm *to, struct rd_fsm *from);

/* recovery.c: recovery_open and recovery_close. */
int rd_fsm__recovery_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
/* Records a move of `t` (from `old_node`) in run `rid` as item `iid`. */
int rd_fsm__recovery_item(struct rd_fsm *f, const struct rd_cmd_task_assign *c,
                          const struct rd_task *t, const char *old_node, int64_t time_ms);
void rd_fsm__recoveries_write(const struct rd_fsm *f, struct rd_wbuf *w);
void rd_fsm__recovery_write_one(struct rd_wbuf *w, const struct rd_recovery *r);
int rd_fsm__recoveries_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__recoveries_clear(struct rd_fsm *f);
void rd_fsm__recoveries_move(struct rd_fsm *to, struct rd_fsm *from);

/* replicas.c: replica_info. Its section is in snapshots of format 3 on. */
int rd_fsm__replica_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
void rd_fsm__replicas_write(const struct rd_fsm *f, struct rd_wbuf *w);
int rd_fsm__replicas_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__replicas_clear(struct rd_fsm *f);
void rd_fsm__replicas_move(struct rd_fsm *to, struct rd_fsm *from);

/* backups.c: backup (records), archive (the position) and cluster_id (both
 * through rd_fsm__archive_apply). Sections in
 * snapshots of format 4 on. */
int rd_fsm__backup_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
int rd_fsm__archive_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
void rd_fsm__backups_write(const struct rd_fsm *f, struct rd_wbuf *w);
void rd_fsm__backup_write_one(struct rd_wbuf *w, const struct rd_backup *b);
/* The cluster id and the archive position, as the section holds them (the
 * digest hashes them as scalars). */
void rd_fsm__archive_write(const struct rd_fsm *f, struct rd_wbuf *w);
int rd_fsm__backups_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__backups_clear(struct rd_fsm *f);
void rd_fsm__backups_move(struct rd_fsm *to, struct rd_fsm *from);

/* checks.c: check and check_result. Section in snapshots of format 4 on. */
int rd_fsm__check_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
void rd_fsm__checks_write(const struct rd_fsm *f, struct rd_wbuf *w);
void rd_fsm__check_write_one(struct rd_wbuf *w, const struct rd_check *c);
int rd_fsm__checks_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__checks_clear(struct rd_fsm *f);
void rd_fsm__checks_move(struct rd_fsm *to, struct rd_fsm *from);

/* audit.c: a command's audit part (or RD_CMD_AUDIT) becomes a record;
 * `outcome` is what the command's own apply decided (0 or its refusal).
 * Section in snapshots of format 5 on. */
int rd_fsm__audit_apply(struct rd_fsm *f, const struct rd_cmd *cmd, int outcome);
void rd_fsm__audits_write(const struct rd_fsm *f, struct rd_wbuf *w);
void rd_fsm__audit_write_one(struct rd_wbuf *w, const struct rd_audit *a);
int rd_fsm__audits_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__audits_clear(struct rd_fsm *f);
void rd_fsm__audits_move(struct rd_fsm *to, struct rd_fsm *from);

/* export.c: records_export; the records' changed index (called by
 * rd_fsm__dg_touch and rd_fsm__dg_add, so every change sets it); a record a
 * prune dropped before it was exported; the export section (format 6 on;
 * read after every other section) and its scalars (the digest's). */
int rd_fsm__export_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
void rd_fsm__export_changed(struct rd_fsm *f, int kind, void *rec);
void rd_fsm__export_lost(struct rd_fsm *f, int kind);
/* The lowest `changed` of a record not exported yet (UINT64_MAX: none):
 * every record changed before it is in PostgreSQL (a finished task's prune). */
uint64_t rd_fsm__export_pending_from(const struct rd_fsm *f);
void rd_fsm__export_write(const struct rd_fsm *f, struct rd_wbuf *w);
void rd_fsm__export_write_scalars(const struct rd_fsm *f, struct rd_wbuf *w);
int rd_fsm__export_read(struct rd_fsm *f, struct rd_rbuf *r);
/* An older snapshot: every record read as changed at index 1. */
void rd_fsm__export_read_old(struct rd_fsm *f);
void rd_fsm__export_clear(struct rd_fsm *f);
void rd_fsm__export_move(struct rd_fsm *to, struct rd_fsm *from);

#endif
