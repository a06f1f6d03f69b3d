/*
 * Inside the scheduler (recover/): what its files share. sched.c runs the
 * passes and owns proposing (keyed, in-flight guarded); placement.c puts
 * pending tasks on agents; repair.c repairs checkpoints that fail their
 * checksum; runs.c moves tasks off lost agents in recovery runs (operator
 * triggers, poison tasks, degraded mode, leases); plan.c carries out a
 * policy's plan. Not for use outside recover/.
 */
#ifndef RD_SCHED_INT_H
#define RD_SCHED_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fsm/fsm.h"
#include "registry/registry.h"
#include "sched.h"

/* A plan that moved nothing for an agent is not asked again before this. */
#define RD_SCHED_REPLAN_BACKOFF_MS 1000
/* At most this long between passes while work waits. */
#define RD_SCHED_PASS_MS 100

/* ---- sched.c: proposing ---- */

/* Proposes `cmd` unless `key` is in flight already. False when it could
 * not be proposed (the pass should stop). */
bool rd_sched__propose_keyed(struct rd_sched *s, const struct rd_cmd *cmd, const char *key);
/* Called once when a keyed proposal ended: status 0 when the state machine
 * accepted it, else what stopped it (refused on stale state, leadership
 * lost, the log's error). */
typedef void (*rd_sched_keyed_cb)(struct rd_sched *s, const char *key, int status);
/* The same with `done` (may be NULL): 1 when proposed now (`done` fires
 * later), 0 when `key` was in flight already (nothing proposed, `done` not
 * called), -1 when it could not be proposed (`done` not called). */
int rd_sched__propose_keyed_then(struct rd_sched *s, const struct rd_cmd *cmd, const char *key,
                                 rd_sched_keyed_cb done);
/* True when `t`, not started, sits on a failed or isolated agent that never
 * heard of its attempt (its last heartbeat, as this leader heard it, came
 * before the attempt was given to it): the move says so (`undelivered`)
 * and the agent's death is not counted against the task. */
bool rd_sched__undelivered(struct rd_sched *s, const struct rd_task *t);
/* Assigns `t` to `nd` (NULL: back to pending) in `state`; within recovery
 * run `run` (NULL: none) by `strategy`, with `note` on its item. */
bool rd_sched__propose_assign_in(struct rd_sched *s, const struct rd_task *t,
                                 const struct rd_node *nd, int state, const char *run,
                                 const char *strategy, const char *note);
bool rd_sched__propose_assign(struct rd_sched *s, const struct rd_task *t, const struct rd_node *nd,
                              int state);
/* Proposes task_assign `cmd` of `t` to `nd` (NULL: back to pending), keyed
 * by the task: until its commit the slots count against `nd`. */
bool rd_sched__propose_assign_cmd(struct rd_sched *s, const struct rd_cmd *cmd,
                                  const struct rd_task *t, const struct rd_node *nd);
/* Adds the slots of placements still on their way through the log to
 * `extra` (by node index): a pass that runs before they commit must not
 * fill their nodes again. */
void rd_sched__inflight_load(struct rd_sched *s, uint32_t *extra);
/* True when a placement of `t` on another node than its own is in flight. */
bool rd_sched__assigning_elsewhere(struct rd_sched *s, const struct rd_task *t);
/* Sets `mark[i]` (by node index) for each node holding a task whose
 * placement on another node is in flight (a superset of those for which
 * rd_sched__assigning_elsewhere holds): in-flight placements, not tasks. */
void rd_sched__assigning_mark(struct rd_sched *s, bool *mark);
void rd_sched__assigning_free(struct rd_sched *s);
/* The index of node `id` in the state machine's nodes, or SIZE_MAX. */
size_t rd_sched__node_index(const struct rd_fsm *f, const char *id);
/* The scheduler's replan time for a node (its own table by registry slot). */
uint64_t *rd_sched__replan_at_of(struct rd_sched *s, const struct rd_soft *soft);
/* Tasks left under an older epoch of a working agent, assigned again. */
void rd_sched__reclaim_stranded(struct rd_sched *s);
/* A token bucket filled at `rate` a second up to `burst`, as a leader that
 * takes over at `now_ms` (leader time) finds it: the engine's own actions
 * named `action` that applied (audit records, replicated) over the last
 * burst / rate seconds are replayed into a bucket empty before them. Never
 * fuller than the bucket of the leader that took them; full when there
 * were none. Rate limits thus hold across leader changes. */
double rd_sched__bucket_seed(const struct rd_fsm *f, const char *action, double rate, double burst,
                             int64_t now_ms);
/* Starts the pass timer: first after `first_ms`, then every RD_SCHED_PASS_MS
 * (each firing calls s->run_pass). */
void rd_sched__arm(struct rd_sched *s, uint64_t first_ms);

/* ---- placement.c ---- */

/* True when `nd` may take tasks: working (alive or probation) by the state
 * machine, and not held in trouble by the analysis (rd_analysis_troubled:
 * its suspect or failed transition may not have committed yet). Placement,
 * recovery moves and rebalancing choose their targets among these. */
bool rd_sched__placeable(const struct rd_sched *s, const struct rd_node *nd);
/* True when node `i`'s labels (parsed once per pass) include `want`. */
bool rd_sched__node_fits(struct rd_sched *s, json_t *want, size_t i);
/* Forgets what the last pass learnt of the nodes: their parsed labels,
 * the placement index and the failed placements. */
void rd_sched__labels_reset(struct rd_sched *s);
/* The working agent with the most room for `t`, or SIZE_MAX (`limit_pct`
 * caps how full a node may get): the least share of its slots used (the
 * first by node index on a tie) among the placeable agents whose labels match
 * and where the task's slots fit under the cap. Through the placement
 * index (rd_sched.ix); `extra` may only grow within a pass, best through
 * rd_sched__add_load. */
size_t rd_sched__choose(struct rd_sched *s, const struct rd_task *t, const uint32_t *extra,
                        unsigned limit_pct);
/* The same choice by scoring every node (the reference the index is tested
 * against; used for a limit above 100 %). */
size_t rd_sched__choose_scan(struct rd_sched *s, const struct rd_task *t, const uint32_t *extra,
                             unsigned limit_pct);
/* Adds `slots` placed this pass on node `i` to `extra` (and the index). */
void rd_sched__add_load(struct rd_sched *s, uint32_t *extra, size_t i, uint32_t slots);
/* The most free slots of any working agent at 100 % of capacity with the
 * pass's load (`extra`), or -1 when no agent works: a task larger than
 * this fits nowhere. */
int64_t rd_sched__most_room(struct rd_sched *s, const uint32_t *extra);

/* ---- repair.c ---- */

struct rd_backup;
/* The completed backups a repair reads, newest first (by index, then by
 * completion), at most `max` of them, into `out`; their count. */
size_t rd_sched__repair_backups(const struct rd_fsm *f, const struct rd_backup **out, size_t max);
/* Of a task's checkpoints as a backup holds them (oldest first), the newest
 * no newer than `bad_version` that verifies, or NULL. */
const struct rd_checkpoint *rd_sched__repair_pick(const struct rd_checkpoint *ckpts, unsigned n,
                                                  uint64_t bad_version);
/* Settles the data_corruption faults of checkpoints that moved on, and
 * takes up repairs a leader did not finish (each pass; once a second). */
void rd_sched__repair_sweep(struct rd_sched *s);
/* Leadership lost: forgets what it learnt (the unrepairable versions). */
void rd_sched__repair_stop(struct rd_sched *s);
void rd_sched__repair_close(struct rd_sched *s);

/* ---- moves.c ---- */

/* Degraded mode over: paused tasks go back to work. */
void rd_sched__resume_paused(struct rd_sched *s);
/* How long the lease of lost agent `n` may still run (0: surely expired). */
uint64_t rd_sched__lease_left_ns(struct rd_sched *s, const struct rd_node *n);
bool rd_sched__lease_expired(struct rd_sched *s, const struct rd_node *n);
/* Moves `t` off `from` (to `target`, or where placement chooses): 1 when
 * proposed, 0 when it must wait, -1 when proposing failed. */
int rd_sched__move_task(struct rd_sched *s, struct rd_task *t, const struct rd_node *from,
                        const char *target, uint32_t *extra, unsigned limit, const char *why);
void rd_sched__pause_task(struct rd_sched *s, struct rd_task *t);
void rd_sched__isolate_node(struct rd_sched *s, const char *node, const char *strategy);
/* Poison tasks: failed too often within the window; quarantined. */
bool rd_sched__poisoned(struct rd_sched *s, const struct rd_task *t, unsigned now_failing);
void rd_sched__quarantine(struct rd_sched *s, const struct rd_task *t, unsigned now_failing);

/* ---- plan.c ---- */

/* Carries out a policy's `plan` for the tasks of lost agent `n`: the
 * number of proposals made, or -1 when proposing failed. */
struct rd_plan;
int rd_sched__execute(struct rd_sched *s, const struct rd_node *n, struct rd_task **todo, size_t k,
                      const struct rd_plan *plan, uint32_t *extra);

/* ---- runs.c ---- */

/* Moves tasks off lost agents (and ends runs): one pass. */
void rd_sched__recover(struct rd_sched *s, uint32_t *extra);
/* A policy event about node `n` and its tasks `todo` (kind from the node's
 * state; callers may change it), and the view of the cluster
 * (policies/README.md has both shapes). New references. */
json_t *rd_sched__event(struct rd_sched *s, const struct rd_node *n, struct rd_task **todo,
                        size_t k);
/* The view without `nodes`: the mode and the settings (all on_conflict
 * gets: a conflict is about one task). */
json_t *rd_sched__view_settings(struct rd_sched *s);
/* The view's `nodes` (a JSON array, NULL on ENOMEM), `data` the scheduler:
 * the build of a struct rd_policy_nodes, which the policy host calls only
 * when a policy reads view.nodes, so the calls that give the whole view
 * pass {.build = rd_sched__view_nodes, .data = s} beside the settings. */
json_t *rd_sched__view_nodes(void *data);

/* ---- predict.c ---- */

/* The reason a drain on a prediction writes (the readmit looks for it). */
#define RD_SCHED_PREDICTED_REASON "draining: failure predicted"
/* Open predicted faults of working agents go to select.lua's predicted hook
 * (drains rate-limited, never below the minimum of healthy capacity);
 * agents drained on a prediction that did not come are readmitted. */
void rd_sched__predicted(struct rd_sched *s);
/* Leadership lost: forgets which predictions were answered. */
void rd_sched__predicted_stop(struct rd_sched *s);

/* ---- passes.c ---- */

/* Places the pending tasks, most urgent first (the pass's second half). */
void rd_sched__place_pending(struct rd_sched *s, uint32_t *extra);

/* ---- rebalance.c ---- */

/* The planner's view of a working agent (by node index; slots 0: not
 * working, never a target). */
struct rd_rb_node {
    uint32_t slots;
    uint32_t used;  /* slots in use, counting moves planned */
    uint32_t used0; /* slots in use when `cpu` was reported */
    uint32_t limit; /* most slots a move may fill (resource_limit); 0: in trouble, no target */
    double cpu;     /* reported cpu share, or -1: load by slots only */
};

/* A task the planner may offer. */
struct rd_rb_task {
    size_t index; /* the caller's */
    size_t node;  /* where it is (node index) */
    uint32_t slots;
    uint8_t priority;
    bool running; /* else queued: offered first */
    bool movable; /* false once moved in this plan */
    /* Whether the task may go to node `node` (its labels); NULL: anywhere. */
    bool (*fits)(void *data, size_t task, size_t node);
    void *fits_data;
};

struct rd_rb_move {
    size_t task, from, to;
};

/*
 * Plans up to `max_moves` moves toward even load, the best first: each
 * takes a task off a node to the node that ends least loaded, only when the
 * target stays within its limit, is at or below the fleet's mean share of
 * slots used before the move, and ends no more loaded than the source (so
 * no move undoes another). A node's load is its share of slots used,
 * or its reported cpu scaled by the slots in use when that is higher.
 * Updates `nodes` and `tasks` as if the moves were made; returns the
 * number of moves written to `out`.
 */
size_t rd_sched__rb_plan(struct rd_rb_node *nodes, size_t n_nodes, struct rd_rb_task *tasks,
                         size_t n_tasks, size_t max_moves, struct rd_rb_move *out);
/* Where the planner gets the tasks it may offer from a node. */
struct rd_rb_offer {
    /* The tasks node `node` offers (its movable ones), `*n` of them: asked
     * once per node and plan, the first time the node is a source (the
     * most loaded first), never for a node that cannot give a move. The
     * array is the caller's and need last only until the next call; the
     * tasks it points to, until the plan returns (the planner updates them
     * as rd_sched__rb_plan does). */
    struct rd_rb_task *const *(*tasks_of)(void *data, size_t node, size_t *n);
    void *data;
    /* No offered task takes fewer slots (what bounds the sources tried). */
    uint32_t min_slots;
};
/* The same plan, with the tasks asked of `offer` node by node: a pass
 * costs the nodes, and the tasks of the sources tried, not every task. */
size_t rd_sched__rb_plan_offered(struct rd_rb_node *nodes, size_t n_nodes,
                                 const struct rd_rb_offer *offer, size_t max_moves,
                                 struct rd_rb_move *out);
/* Max - min share of slots used over the nodes with slots, and of their
 * reported cpu (`cpu_skew`, may be NULL). */
double rd_sched__rb_skew(const struct rd_rb_node *nodes, size_t n, double *cpu_skew);
/* Moves work toward spare capacity (the pass's last step). */
void rd_sched__rebalance(struct rd_sched *s, uint32_t *extra);
/* Leadership lost: forgets moves and pending moves. */
void rd_sched__rebalance_stop(struct rd_sched *s);
/* Task `task_id` moved now: not moved again within rebalance.cooldown. */
void rd_sched__note_moved(struct rd_sched *s, const char *task_id);

#endif
