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

#endif
