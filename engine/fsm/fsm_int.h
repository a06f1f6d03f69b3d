/* Between the state machine's files (fsm.c, tasks.c); nothing else includes it. */
#ifndef RD_FSM_INT_H
#define RD_FSM_INT_H

#include "fsm.h"

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

int rd_fsm__recovery_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
/* Records a move of `t` (from `old_node`) in run `rid` as item `iid`. */
int rd_fsm__recovery_item(struct rd_fsm *f, const struct rd_cmd_task_assign *c,
                          const struct rd_task *t, const char *old_node, int64_t time_ms);
void rd_fsm__recoveries_write(const struct rd_fsm *f, struct rd_wbuf *w);
int rd_fsm__recoveries_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__recoveries_clear(struct rd_fsm *f);
void rd_fsm__recoveries_move(struct rd_fsm *to, struct rd_fsm *from);

#endif
