/*
 * Placement: puts pending tasks on agents (leader only). Critical tasks
 * first, then by priority (9 highest), then oldest; on a working agent
 * (alive or probation, not draining) whose labels include the task's, with
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

struct rd_engine;

struct rd_sched {
    struct rd_engine *eng;
    uv_timer_t timer;
    bool started;
    bool kicked;
    struct rd_map inflight; /* task id (or op key) -> itself while its proposal is committed */
    uint64_t placements_total;
    uint64_t refused_total;    /* proposals the state machine refused (decided on stale state) */
    uint64_t recoveries_total; /* tasks moved off failed, departed or draining agents */
    uint64_t policy_errors_total;
    uint64_t poison_total;      /* tasks quarantined as poison */
    uint64_t runs_timed_out;    /* runs closed partial at their strategy's max_time */
    uint64_t passes_total;      /* passes run as leader (recovery, resumes, placement) */
    unsigned performance_limit; /* degraded mode's share of capacity, from the last degrade */
    double partition_tokens;    /* moves allowed while a partition is suspected */
    uint64_t partition_tokens_ns;
    json_t **labels; /* nodes' labels parsed this pass, by node index */
    size_t n_labels;
};

void rd_sched_init(struct rd_sched *s, struct rd_engine *eng);
void rd_sched_start(struct rd_sched *s);
void rd_sched_stop(struct rd_sched *s);
void rd_sched_close(struct rd_sched *s);
/* Asks for a placement pass soon (coalesced). */
void rd_sched_kick(struct rd_sched *s);

struct rd_node;
/*
 * Opens a recovery run for `n` (POST /api/v1/recovery/trigger): `cb` fires
 * once it is committed. `strategy` "" lets the policies choose. 0 or RD_E*.
 */
int rd_sched_open_run(struct rd_sched *s, const struct rd_node *n, const char *strategy,
                      const char *reason, char id_out[37],
                      void (*cb)(void *data, int status, uint64_t value), void *data);

/*
 * Keeps the scheduler from opening its own run for `node` while an
 * operator's trigger opens one (drain, then open with the requested
 * strategy). False when a run for it is being opened already.
 */
bool rd_sched_hold_open(struct rd_sched *s, const char *node);
void rd_sched_release_open(struct rd_sched *s, const char *node);

/*
 * Degraded mode (degraded_service): a partition is suspected, or tasks are
 * paused until their agents' faults are over. Derived from the log and the
 * partition guard, so it survives restarts and leader changes. While
 * degraded, non-critical placements fill an agent only up to `limit_pct`
 * (the degrade action's performance_limit) of its slots.
 */
bool rd_sched_degraded(const struct rd_sched *s, unsigned *limit_pct);

/* True when `task_labels` (a JSON object) is a subset of `node_labels`. */
bool rd_sched_labels_match(const char *task_labels, const char *node_labels);

#endif
