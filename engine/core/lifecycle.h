/*
 * The task life cycle's leader side (issue 17): a task whose deadline passed
 * fails with a fault (fault_open with the task, fenced by its attempt: the
 * same step fails it, and its agent is told in its next heartbeat), and
 * finished tasks past fault_tolerance.tasks.retention are pruned by
 * RD_CMD_TASK_LIFECYCLE (PRUNE), which every replica applies alike. Cancel
 * and retry are operators' requests (engine/http/api_tasks.c). Leader only,
 * loop thread.
 */
#ifndef RD_LIFECYCLE_H
#define RD_LIFECYCLE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "fsm/fsm.h"
#include "replica/replica.h"

struct rd_lifecycle_env {
    uv_loop_t *loop;
    const struct rd_config *cfg;
    const struct rd_fsm *fsm;
    struct rd_proposer log;
};

#define RD_LIFECYCLE_TICK_MS       250  /* how often deadlines are looked at */
#define RD_LIFECYCLE_PRUNE_MAX     1000 /* tasks one prune command drops, at most */
#define RD_LIFECYCLE_DEADLINES_MAX 64   /* deadline faults one tick proposes, at most */

struct rd_lifecycle {
    struct rd_lifecycle_env env;
    uv_timer_t timer;
    bool started;
    unsigned outstanding;     /* proposals not answered yet: no new ones until they are */
    uint64_t next_prune_ms;   /* leader time of the next look for prunable tasks */
    uint64_t deadlines_total; /* tasks failed at their deadline (committed, this leader's) */
    uint64_t pruned_total;    /* finished tasks pruned (committed, this leader's) */
};

void rd_lifecycle_init(struct rd_lifecycle *lc, const struct rd_lifecycle_env *env);
/* Leadership gained / lost. */
void rd_lifecycle_start(struct rd_lifecycle *lc);
void rd_lifecycle_stop(struct rd_lifecycle *lc);
/* One look (the timer's): deadlines passed, tasks to prune. */
void rd_lifecycle_tick(struct rd_lifecycle *lc);

#endif
