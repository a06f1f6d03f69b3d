/*
 * Tasks and their checkpoints in the state machine (tasks.c). Part of the
 * state machine's API: include fsm.h.
 */
#ifndef RD_FSM_TASKS_H
#define RD_FSM_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct rd_fsm;

#define RD_TASK_MAX_KEEP  16 /* checkpoint versions kept per task, at most */
#define RD_TASK_KEEP      3  /* checkpoint versions a new checkpoint keeps (retention) */
#define RD_TASK_FAIL_KEEP 16 /* failure times kept per task (poison detection) */
#define RD_TASK_RAN_KEEP  4  /* attempts whose node a task remembers */

struct rd_checkpoint {
    uint64_t version;
    int64_t at;
    uint64_t checksum; /* FNV-1a of data */
    uint32_t size;
    char *data; /* JSON */
};

/* A task (API.md): durable, including its last checkpoint versions. */
struct rd_task {
    char id[40];
    uint8_t state; /* enum rd_task_state */
    uint8_t priority;
    uint8_t critical;
    uint32_t slots;
    char *labels_json; /* requirements.labels */
    char *payload_json;
    uint32_t max_attempts;
    uint32_t attempt; /* fencing token: only this attempt may write; 0 before the first placement */
    uint32_t attempt_base; /* `attempt` at the last retry: max_attempts counts from here */
    int64_t deadline_ms;   /* leader time after which it fails with a fault; 0: none */
    uint64_t finished;     /* raft index at which it finished (completed, failed, cancelled) */
    int64_t moved_at; /* leader time it last left an agent (moved, revoked); 0: never (format 9) */
    /* The newest attempts placed on a node, newest first (0: none), and
     * the FNV-1a of that node's id: who may send a superseded attempt's
     * writes as conflicts (format 10; an older snapshot knows none). */
    uint32_t ran_attempt[RD_TASK_RAN_KEEP];
    uint64_t ran_node[RD_TASK_RAN_KEEP];
    uint32_t failures;                  /* attempts that failed or were moved off a failed agent */
    int64_t fail_at[RD_TASK_FAIL_KEEP]; /* leader times of the newest failures, oldest first */
    uint8_t n_fail_at;
    char *node_id; /* "" when not placed */
    uint64_t node_epoch;
    int64_t created_at;
    int64_t updated_at;
    char *result_json; /* completion result or failure text, "" when none */
    struct rd_checkpoint ckpts[RD_TASK_MAX_KEEP]; /* oldest first */
    uint8_t n_ckpts;
    struct rd_task *next_on_node, *prev_on_node; /* derived: the node's task list */
    size_t deadline_pos; /* derived: 1 + its place in the deadline heap, 0 when not in it */
    size_t pending_pos;  /* derived: 1 + its place in the pending heap, 0 when not in it */
    struct rd_dg dg;     /* local: its term of the digest (digest.h) */
};

const struct rd_task *rd_fsm_task(const struct rd_fsm *f, const char *id);
/* Whether attempt `attempt` of `t` ran on node `node`: 1 yes, 0 on another
 * node, -1 not known (older than the RD_TASK_RAN_KEEP newest attempts, or
 * placed before format 10). */
int rd_task_ran_on(const struct rd_task *t, uint32_t attempt, const char *node);
/* Index of the first task whose id sorts strictly after `id` (paging). */
size_t rd_fsm_task_after(const struct rd_fsm *f, const char *id);
/* The newest checkpoint of `t`, or NULL. */
const struct rd_checkpoint *rd_task_checkpoint(const struct rd_task *t);
/* True when `c`'s data still matches the checksum it was written with. */
bool rd_checkpoint_verifies(const struct rd_checkpoint *c);
/* The checksum a checkpoint of `data` is written with (fnv1a-64; the API
 * shows it as "fnv1a64:<hex>"). */
uint64_t rd_checkpoint_checksum(const char *data, size_t len);
/* Where an attempt resumes: the newest checkpoint that verifies, or NULL
 * (none kept, or none verifies: start over). */
const struct rd_checkpoint *rd_task_resume_checkpoint(const struct rd_task *t);
/* qsort() comparator over `const struct rd_task *`: most urgent first
 * (critical, then higher priority, then older, then by id). */
int rd_task_cmp_urgency(const void *a, const void *b);
/* True for completed, failed and cancelled tasks. */
bool rd_task_finished(const struct rd_task *t);
/* Finished tasks rd_fsm's prune would drop at leader time `now_ms` with
 * `retention_ms` (finished that long ago, and exported where export is on),
 * counting at most `max`. */
size_t rd_fsm_tasks_prunable(const struct rd_fsm *f, int64_t now_ms, int64_t retention_ms,
                             size_t max);
/* Up to `max` unfinished tasks whose deadline is at or before `now_ms` into
 * `out` (earliest first is not promised); returns how many. The tasks with a
 * deadline are kept in a min-heap, so this costs the passed ones, not the
 * task table. */
size_t rd_fsm_deadlines_passed(const struct rd_fsm *f, int64_t now_ms, const struct rd_task **out,
                               size_t max);
/* Unfinished tasks with a deadline (the heap's size). */
size_t rd_fsm_deadlines_pending(const struct rd_fsm *f);

/* A heap of tasks (the state machine keeps two: fsm.h). */
struct rd_task_heap {
    struct rd_task **at;
    size_t n;
};

/*
 * The pending tasks, most urgent first (rd_task_cmp_urgency), from the
 * state machine's pending heap: each step costs O(log k) after k steps, so
 * a pass that stops early never pays for the whole queue. Valid while the
 * machine does not change (a pass proposes; the commits apply later):
 *
 *   struct rd_pending_iter it;
 *   rd_fsm_pending_begin(f, &it);
 *   for (struct rd_task *t; (t = rd_fsm_pending_next(&it)) != NULL;) ...
 *   rd_fsm_pending_end(&it);
 *
 * rd_fsm_pending_next returns NULL at the end, and early when out of memory.
 */
struct rd_pending_iter {
    const struct rd_fsm *f;
    size_t *q; /* a min-heap of positions in the pending heap: the frontier */
    size_t n, cap;
};
void rd_fsm_pending_begin(const struct rd_fsm *f, struct rd_pending_iter *it);
struct rd_task *rd_fsm_pending_next(struct rd_pending_iter *it);
void rd_fsm_pending_end(struct rd_pending_iter *it);
/* The pending tasks in no particular order: `i` from 0 below the count. */
size_t rd_fsm_pending_count(const struct rd_fsm *f);
struct rd_task *rd_fsm_pending_at(const struct rd_fsm *f, size_t i);
/* Failures of `t` at or after `since_ms` (leader time), up to RD_TASK_FAIL_KEEP. */
unsigned rd_task_failures_since(const struct rd_task *t, int64_t since_ms);

#endif
