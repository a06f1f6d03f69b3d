/* Between the state machine's files (fsm.c, tasks.c); nothing else includes it. */
#ifndef RD_FSM_INT_H
#define RD_FSM_INT_H

#include "fsm.h"

int rd_fsm__task_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
void rd_fsm__tasks_write(const struct rd_fsm *f, struct rd_wbuf *w);
int rd_fsm__tasks_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__tasks_clear(struct rd_fsm *f);
/* Moves the task table of `from` into `to` (restore's swap). */
void rd_fsm__tasks_move(struct rd_fsm *to, struct rd_fsm *from);

int rd_fsm__recovery_apply(struct rd_fsm *f, const struct rd_cmd *cmd);
/* Records a move of `t` (from `old_node`) in run `rid` as item `iid`. */
int rd_fsm__recovery_item(struct rd_fsm *f, struct rd_str rid, struct rd_str iid,
                          struct rd_str strategy, const struct rd_task *t, const char *old_node,
                          int64_t time_ms);
void rd_fsm__recoveries_write(const struct rd_fsm *f, struct rd_wbuf *w);
int rd_fsm__recoveries_read(struct rd_fsm *f, struct rd_rbuf *r);
void rd_fsm__recoveries_clear(struct rd_fsm *f);
void rd_fsm__recoveries_move(struct rd_fsm *to, struct rd_fsm *from);

#endif
