/*
 * Placement: puts pending tasks on agents (leader only). Critical tasks
 * first, then by priority (9 highest), then oldest; on a working agent
 * (alive or probation, not draining) that the detectors do not hold in
 * trouble (rd_analysis_troubled), whose labels include the task's, with
 * free slots, least loaded first. Every placement is a task_assign command
 * fenced by the attempt it was decided on.
 */
#ifndef RD_SCHED_H
#define RD_SCHED_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "common/map.h"
#include "fsm/fsm.h"
#include "metrics/metrics.h"
#include "replica/replica.h"

struct rd_analysis;
struct rd_checkpoint;
struct rd_config;
struct rd_fsm;
struct rd_plugin_host;
struct rd_policy_host;
struct rd_registry;
struct rd_soft;

/* A task's checkpoints as a backup holds them (oldest first; valid during
 * the call only), or status != 0 with `detail` saying why it could not be
 * read. */
typedef void (*rd_sched_backup_cb)(void *data, int status, const struct rd_checkpoint *ckpts,
                                   unsigned n, const char *detail);

/* What the scheduler reads and acts through, given at init; all outlive it. */
struct rd_sched_env {
    uv_loop_t *loop;
    const struct rd_config *cfg;
    const struct rd_fsm *fsm;
    struct rd_registry *registry;         /* soft state: leases */
    struct rd_proposer log;               /* leadership, the way into the log */
    const struct rd_analysis *analysis;   /* whether a partition is suspected */
    struct rd_plugin_host *alerts;        /* RecoveryPolicy, RecoveryTimeout alerts */
    struct rd_policy_host *const *policy; /* the policies in force (reloads swap it) */
    /* A policy failed at run time: recorded as a policy_error fault. */
    void (*policy_error)(void *data, const char *msg);
    void *policy_error_data;
    const bool *shutting_down;       /* no new passes once the engine stops */
    const uint64_t *leader_since_ns; /* when this replica became leader, 0 if not */
    /* Reads task `task_id`'s checkpoints back from completed backup
     * `backup_id` (its target, decoded off the loop): 0 and `cb` fires once,
     * later, or RD_E* at once (`cb` not called). NULL: checkpoint repairs do
     * not look in backups. */
    int (*backup_checkpoints)(void *data, const char *backup_id, const char *task_id,
                              rd_sched_backup_cb cb, void *cb_data);
    void *backup_data;
};

/* Checkpoint repairs by where the good copy came from (rd_sched.repairs_total). */
enum { RD_REPAIR_FROM_VERSION = 0, RD_REPAIR_FROM_BACKUP, RD_REPAIR_NONE, RD_REPAIR_KINDS };

/* What became of predicted faults (recoveryd_predicted_faults_total). */
enum {
    RD_PREDICTED_DRAINED = 0,
    RD_PREDICTED_WATCHED,
    RD_PREDICTED_RATE_LIMITED,
    RD_PREDICTED_NO_CAPACITY,
    RD_PREDICTED_ERROR,
    RD_PREDICTED_READMITTED,
    RD_PREDICTED_KINDS
};

/* Rebalancing moves by kind (recoveryd_rebalance_moves_total). */
enum { RD_RB_QUEUED = 0, RD_RB_RUNNING, RD_RB_KINDS };

/* Completed backups read, newest first, for a good copy of a checkpoint. */
#define RD_SCHED_REPAIR_BACKUPS 4

struct rd_sched {
    struct rd_sched_env env;
    uv_timer_t timer;
    void (*run_pass)(struct rd_sched *s); /* what the timer runs: rd_sched_pass */
    bool started;
    bool kicked;
    struct rd_map inflight;  /* task id (or op key) -> itself while its proposal is committed */
    struct rd_map assigning; /* task id -> where its placement in flight goes (sched.c) */
    uint64_t placements_total;
    uint64_t refused_total;    /* proposals the state machine refused (decided on stale state) */
    uint64_t recoveries_total; /* tasks moved off failed, departed or draining agents */
    uint64_t reclaimed_total;  /* tasks assigned again after their agent registered again */
    uint64_t policy_errors_total;
    uint64_t poison_total;   /* tasks quarantined as poison */
    uint64_t runs_timed_out; /* runs closed partial at their strategy's max_time */
    /* Recovery runs this replica closed as leader, counted when the commit
     * of their recovery_close answers it: by outcome (enum
     * rd_recovery_status: succeeded, partial, failed), and how long each
     * took (started_at to completed_at, as the log stamped them; on the
     * duration scale). Only the proposer counts, so summed over the replicas
     * every run counts once (rd_sched_run_metrics). */
    uint64_t runs_closed[RD_REC_STATUS_COUNT];
    struct rd_hist run_duration;
    uint64_t passes_total;      /* passes run as leader (recovery, resumes, placement) */
    unsigned performance_limit; /* degraded mode's share of capacity, from the last degrade */
    double partition_tokens;    /* moves allowed while a partition is suspected */
    uint64_t partition_tokens_ns;
    /* Agents failed within partition.mass_failure_window by the log
     * (rd_fsm_nodes_failed_since, a walk over the agents), kept for the
     * passes of the same quarter second while the failed count holds
     * (moves.c, mass_failure). */
    struct {
        int64_t quarter; /* rd_now_ms() / 250 when counted; 0: never */
        uint32_t failed; /* the machine's count of failed agents then */
        size_t n;
    } failed_recent;
    json_t **labels; /* nodes' labels parsed this pass, by node index */
    size_t n_labels;
    /* Placement's index of the agents for this pass (placement.c): a
     * tournament tree over the node indices whose inner entries hold the
     * most free slots (at 100 % of capacity) and the least share of slots
     * used below them, so rd_sched__choose finds its node without scoring
     * every agent. Rebuilt at the first choice of a pass, and whenever the
     * state machine or the pass's load array changed under it; the pass's
     * placements update it on the way (rd_sched__add_load). The agents the
     * analysis holds in trouble are left out of it like those that do not
     * work: its verdicts change only between passes (detector callbacks). */
    struct rd_place_ix {
        size_t width;          /* leaves: a power of two >= n_nodes (0: not built) */
        size_t n_nodes;        /* the machine's nodes when built */
        uint64_t applied;      /* the machine's n_applied when built */
        const uint32_t *extra; /* the pass's load it was built with */
        int64_t *room;         /* by tree entry; -1: no working agent below */
        double *load;          /* by tree entry; 2.0: no working agent below */
    } ix;
    /* What found no room this pass, by "limit:labels": the fewest slots
     * that found none (load only grows within a pass, so a task as large
     * or larger with the same labels and limit fits nowhere either). */
    struct rd_map place_fail;
    /* A plan that moved nothing is not asked again before replan_at_ns
     * (waiting for a lease to run out, or for room): the scheduler's own
     * soft state per node, by registry slot (rd_soft.generation). */
    struct rd_sched_soft {
        uint64_t generation; /* rd_soft.generation it belongs to */
        uint64_t replan_at_ns;
        uint64_t epoch_clean; /* the node's epoch once no task of an older one was left */
    } * by_slot;
    size_t n_by_slot;
    /* Nodes whose tasks may be stranded by a registration (their ids, in the
     * order they registered again; rd_sched_node_registered), walked by the
     * reclaim instead of the whole fleet; every node once after init and at
     * each start of a leadership (reclaim_all). */
    char **reclaim;
    size_t n_reclaim, cap_reclaim;
    bool reclaim_all;
    /* Checkpoint repairs (repair.c): the one running per task, by task id;
     * the versions this leadership found no good copy of; the sweep of
     * their faults. */
    struct rd_map repairs;
    struct rd_map unrepairable;
    uint64_t repair_sweep_ns;
    bool repair_sweeping;
    uint64_t repairs_total[RD_REPAIR_KINDS]; /* this leader's, by source */
    /* Predicted faults (predict.c): the answers of this leadership, by
     * fault id; the open predictions, by fault seq, and the last fault
     * looked at (every fault is read once); the drain bucket; what became
     * of predictions. */
    struct rd_map predicted;
    uint64_t *pred_open;
    size_t n_pred_open, cap_pred_open;
    uint64_t pred_seen_seq;
    double drain_tokens;
    uint64_t drain_tokens_ns;
    uint64_t predicted_total[RD_PREDICTED_KINDS];
    /* Rebalancing (rebalance.c): when tasks last moved, by task id; running
     * tasks waiting for their next checkpoint to move, by task id; the move
     * bucket; whether balancing is on, and why. */
    struct rd_map moved;
    struct rd_map rb_pending;
    double rb_tokens;
    uint64_t rb_tokens_ns;
    uint64_t rb_prune_ns;
    uint64_t rb_backoff_until_ns; /* after a failed rebalance hook */
    uint64_t rb_quiet_until_ns;   /* after a plan with nothing to move */
    uint64_t rb_changed_ns;       /* when the working agents' slots last changed */
    /* The fleet's scan is skipped while it found nothing to do, nothing in
     * the fleet changed since (rd_fsm.fleet_changes) and its timers (the
     * settle, the quiet after an empty plan) have not run out. */
    uint64_t rb_scanned_changes;
    uint64_t rb_rescan_ns;
    uint64_t rb_scans; /* scans of the fleet made */
    bool rb_balancing;
    bool rb_joined; /* agents joined since rebalancing last started */
    char rb_why[64];
    uint64_t rb_working_slots; /* at the last pass: more means agents joined */
    double rb_skew_pct;
    uint64_t rb_moves[RD_RB_KINDS];
    uint64_t rb_refused, rb_expired, rb_policy_errors, rb_episodes;
    uint64_t rb_episode_moves; /* moves decided since rebalancing last started */
};

void rd_sched_init(struct rd_sched *s, const struct rd_sched_env *env);
void rd_sched_start(struct rd_sched *s);
void rd_sched_stop(struct rd_sched *s);
void rd_sched_close(struct rd_sched *s);
/* Asks for a placement pass soon (coalesced). */
void rd_sched_kick(struct rd_sched *s);
/* One pass now (what the timer runs; a unit test calls it itself). */
void rd_sched_pass(struct rd_sched *s);
/* Node `id` registered again (a new epoch): its tasks of the older one are
 * looked at by the next pass (reclaimed). */
void rd_sched_node_registered(struct rd_sched *s, const char *id, size_t len);

struct rd_node;
struct rd_recovery;
struct rd_task;

/* The end of a trigger: status 0 with the run opened, or RD_E*. */
typedef void (*rd_sched_trigger_cb)(void *data, int status, const struct rd_recovery *run);

/*
 * An operator's recovery of `node` (POST /api/v1/recovery/trigger) with
 * `strategy` ("" lets the policies choose): keeps the scheduler from opening
 * its own run for the node meanwhile, drains a working agent first (so it
 * gets no new work while its tasks move), then opens the run. Returns 0 and
 * `cb` fires once, or an error at once without `cb`: RD_ENOTFOUND (no such
 * node), RD_ECONFLICT (a run for it is being opened already), or the log's.
 */
int rd_sched_trigger(struct rd_sched *s, const char *node, const char *strategy,
                     rd_sched_trigger_cb cb, void *data);

/*
 * Degraded mode (degraded_service): a partition is suspected, or tasks are
 * paused until their agents' faults are over. Derived from the log and the
 * partition guard, so it survives restarts and leader changes. While
 * degraded, non-critical placements fill an agent only up to `limit_pct`
 * (the degrade action's performance_limit) of its slots.
 */
bool rd_sched_degraded(const struct rd_sched *s, unsigned *limit_pct);

/*
 * Checkpoint repair (repair.c; DESIGN.md decision 9), leader only. Task
 * `task_id`'s newest checkpoint fails its checksum: it is repaired from the
 * newest older version that verifies, else from the newest completed backup
 * (of the RD_SCHED_REPAIR_BACKUPS newest) holding a version of it that
 * verifies, else not at all (the task starts over). The repair is recorded
 * as a data_corruption fault (major; node_id the task's agent or "";
 * metadata task_id, version, restored_from) resolved by the commit of the
 * repair itself (checkpoint_restore), or left open with the reason when no
 * good copy exists. One repair per task at a time; while it runs the task
 * does not move.
 *
 * Returns 0 when there is nothing to repair (no checkpoint, or the newest
 * verifies; `cb` not called); 1 when a repair runs, started now or joined:
 * `cb` (may be NULL) fires once when it ended, possibly before this
 * returns, with 0 (committed: the newest checkpoint is the repaired one),
 * RD_ECORRUPT (no good copy: the task starts over, the fault stays open) or
 * what stopped it (RD_ENOTLEADER, RD_ECONFLICT: the task moved on, ...);
 * RD_ECORRUPT when this leadership already found no good copy of this
 * version; RD_ENOTFOUND, RD_ENOTLEADER, RD_ENOMEM (`cb` not called).
 */
typedef void (*rd_sched_repair_cb)(void *data, int status);
int rd_sched_repair_checkpoint(struct rd_sched *s, const char *task_id, rd_sched_repair_cb cb,
                               void *data);

/*
 * The checkpoint task `t` resumes from when it is handed over to its agent
 * (the heartbeat answer): 0 with `*out` its newest checkpoint, or NULL to
 * start over (none, or no good copy exists); RD_EBUSY while the newest
 * fails its checksum and its repair runs (started here if need be): hold
 * the task back, a later answer hands it over with the repaired checkpoint.
 * Where no repair can run (not leader), the newest version that verifies.
 */
int rd_sched_resume_checkpoint(struct rd_sched *s, const struct rd_task *t,
                               const struct rd_checkpoint **out);

/* A task a heartbeat answer hands over, with the checkpoint it resumes
 * from (NULL: start over). */
struct rd_handover {
    const struct rd_task *task;
    const struct rd_checkpoint *ckpt;
};

/*
 * What the heartbeat answer of node `n` (soft state `soft`, arriving at
 * `now_ns`) hands over, most urgent first, into `out` (room for
 * n->n_tasks): the tasks placed on its current epoch and not started yet
 * (assigned, recovering), each told once and again only when it has not
 * started one lease later, then 2, 4 and 8 leases later (rd_told: an answer
 * can be lost; a slow first checkpoint must not make every heartbeat carry
 * the same tasks). A task whose checkpoint is under repair is held back
 * (rd_sched_resume_checkpoint). Records what it returns as told: their
 * number. Leader, loop thread.
 */
size_t rd_sched_handover(struct rd_sched *s, const struct rd_node *n, struct rd_soft *soft,
                         uint64_t now_ns, struct rd_handover *out);

/* recoveryd_recovery_runs_total{outcome} and
 * recoveryd_recovery_duration_seconds, this replica's (see runs_closed). */
void rd_sched_run_metrics(const struct rd_sched *s, struct rd_mbuf *b);

/* recoveryd_predicted_faults_total{outcome}, and the rebalancing metrics
 * (recoveryd_rebalance_*): this replica's. */
void rd_sched_predict_metrics(const struct rd_sched *s, struct rd_mbuf *b);
void rd_sched_rebalance_metrics(const struct rd_sched *s, struct rd_mbuf *b);

/* A write of a superseded attempt (availability mode), as the leader sees
 * it before it proposes RD_CMD_CONFLICT. */
struct rd_conflict_write {
    const char *conflict_id; /* the UUID the record will have */
    int kind;                /* enum rd_conflict_kind */
    uint32_t attempt;        /* the writer's */
    uint64_t version;        /* checkpoints */
    const char *node_id;     /* the writer, as it named itself ("" when it did not) */
};

/* What the leader proposes for it. */
struct rd_conflict_decision {
    uint8_t resolution;  /* enum rd_conflict_res */
    uint8_t resolved_by; /* enum rd_conflict_by */
    char reason[200];
};

/*
 * Resolves a conflict on task `t` (conflict.c): a finished task is recorded
 * (keep_newer, the engine's); else select.lua's on_conflict hook decides,
 * or the config's partition.on_conflict when there is no hook or it fails
 * (a policy_error fault). Loop thread, leader.
 */
void rd_sched_conflict_decide(struct rd_sched *s, const struct rd_task *t,
                              const struct rd_conflict_write *w, struct rd_conflict_decision *out);

/* True when `task_labels` (a JSON object) is a subset of `node_labels`. */
bool rd_sched_labels_match(const char *task_labels, const char *node_labels);

#endif
