/*
 * What the state machine's files call in each other; nothing outside
 * engine/fsm/ includes it. Included by every file that holds part of the
 * machine: fsm.c (the glue: apply dispatch, raft callbacks, life cycle),
 * nodes.c, faults.c, tasks.c, recovery.c, replicas.c, backups.c, checks.c
 * (one record kind each)
 * and snapshot.c (the snapshot container and the order of its sections).
 *
 * Each record kind offers the same five entry points: apply (the commands
 * that change it; a refusal goes in f->result.status and returns 0, only
 * RD_ENOMEM is returned), write and read (its snapshot section), clear
 * (frees it) and move (hands it from one machine to another: restore's
 * swap). Beyond those, only what one kind's commands do to another kind
 * (a fault that moves its node or quarantines a task, a transition that
 * resolves faults, a move that joins a recovery run).
 */
#ifndef RD_FSM_INT_H
#define RD_FSM_INT_H

#include "fsm.h"

/* fsm.c: frees every record and zeroes the applied count and time. */
void rd_fsm__clear(struct rd_fsm *f);

/* nodes.c: node_register and node_transition. */
int rd_fsm__node_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
/* Moves `n` to `state` for `reason` at `time_ms` (state counts follow); on
 * RD_ENOMEM nothing changed. */
int rd_fsm__node_move(struct rd_fsm *f, struct rd_node *n, uint8_t state, struct rd_str reason,
                      int64_t time_ms);
void rd_fsm__nodes_write(const struct rd_fsm *f, struct rd_wbuf *w);
int rd_fsm__nodes_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__nodes_clear(struct rd_fsm *f);
void rd_fsm__nodes_move(struct rd_fsm *to, struct rd_fsm *from);

/* faults.c: fault_open and fault_resolve. Nodes are read before faults
 * (a fault counts itself on its node). */
int rd_fsm__fault_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
/* Resolves every open fault of `n` (a node that recovered or left). */
int rd_fsm__faults_resolve_node(struct rd_fsm *f, struct rd_node *n, int64_t t, struct rd_str why);
void rd_fsm__faults_write(const struct rd_fsm *f, struct rd_wbuf *w);
int rd_fsm__faults_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__faults_clear(struct rd_fsm *f);
void rd_fsm__faults_move(struct rd_fsm *to, struct rd_fsm *from);

/* tasks.c: task_submit, task_assign, task_checkpoint and task_finish. Nodes
 * are read before tasks (a placed task counts itself on its node). */
int rd_fsm__task_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
void rd_fsm__tasks_write(const struct rd_fsm *f, struct rd_wbuf *w);
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

/* recovery.c: recovery_open and recovery_close. */
int rd_fsm__recovery_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
/* Records a move of `t` (from `old_node`) in run `rid` as item `iid`. */
int rd_fsm__recovery_item(struct rd_fsm *f, const struct rd_cmd_task_assign *c,
                          const struct rd_task *t, const char *old_node, int64_t time_ms);
void rd_fsm__recoveries_write(const struct rd_fsm *f, struct rd_wbuf *w);
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
int rd_fsm__backups_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__backups_clear(struct rd_fsm *f);
void rd_fsm__backups_move(struct rd_fsm *to, struct rd_fsm *from);

/* checks.c: check and check_result. Section in snapshots of format 4 on. */
int rd_fsm__check_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
void rd_fsm__checks_write(const struct rd_fsm *f, struct rd_wbuf *w);
int rd_fsm__checks_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__checks_clear(struct rd_fsm *f);
void rd_fsm__checks_move(struct rd_fsm *to, struct rd_fsm *from);

#endif
