/*
 * The agent registry's soft state: heartbeats, reported load and metrics.
 * Lives in the leader's memory only and is never written to the log
 * (DESIGN.md decision 2); the durable part of a node is in the state machine.
 * A new epoch resets a node's soft state. Loop-thread only.
 */
#ifndef RD_REGISTRY_H
#define RD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/map.h"

struct rd_node_metrics {
    bool present;
    double error_rate;
    double latency_ms;
    double cpu;
    double mem;
};

#define RD_REVOKED_MAX 16

/* A task taken from an agent: the attempt it ran there is fenced. */
struct rd_revocation {
    char task_id[40];
    uint32_t attempt;
};

/* An assignment told to the agent in a heartbeat answer and not started
 * there yet as far as the engine knows (the task is still assigned or
 * recovering under that attempt: its first checkpoint has not committed).
 * An answer can be lost (a client timeout, a connection cut), so it is told
 * again, first after one resend interval, then after twice as long and so
 * on up to RD_TOLD_BACKOFF_MAX intervals: a slow commit (a loaded leader)
 * does not make every heartbeat encode the same tasks again. */
struct rd_told {
    char task_id[40];
    uint32_t attempt;
    uint32_t times;  /* answers it went out in */
    uint64_t due_ns; /* when it is told again */
    bool seen;       /* still to tell in the current answer (rd_registry_tell_*) */
};

#define RD_TOLD_BACKOFF_MAX 8

struct rd_soft {
    char *node_id;
    size_t id_len;
    uint32_t slot;                /* dense number for plugins (struct rd_node_view) */
    uint64_t generation;          /* new for each node and each epoch of it: side tables kept by
                                     slot (the plugins', the scheduler's) start afresh when it
                                     differs from the one they stored */
    uint64_t epoch;               /* the epoch this soft state belongs to */
    uint64_t heartbeats;          /* accepted in this epoch */
    uint64_t heartbeats_at_state; /* `heartbeats` when the node entered its state */
    uint64_t last_mono_ns;        /* monotonic arrival of the last heartbeat, 0 = none */
    int64_t last_wall_ms;         /* wall-clock arrival, for the API */
    int64_t watch_wall_ms;        /* wall clock when this replica began to hear this epoch's
                                     heartbeats: the soft state made or reset for it, or the
                                     replica leads again (rd_registry_watch_from) */
    uint64_t grace_until_ns;      /* not judged before this (new leader, restart) */
    uint32_t slots_used;
    struct rd_node_metrics metrics;
    /* Tasks moved off this agent, told in its next heartbeat answer
     * (rd_registry_revoke, rd_registry_take_revoked). */
    struct rd_revocation revoked[RD_REVOKED_MAX];
    uint8_t n_revoked;
    /* Assignments told, sorted by task id (rd_registry_tell_begin ...). */
    struct rd_told *told;
    uint32_t n_told, cap_told;
    uint32_t n_told_sorted; /* during an answer: the sorted prefix, the rest appended */
    /* Other modules keep their own soft state of the node in tables by
     * `slot`, reset when `generation` changes: the analysis's verdicts, the
     * scheduler's replan time, the plugins' state. */
};

#define RD_SOFT_CHUNK 256

struct rd_registry {
    struct rd_map by_id;
    uint64_t generation; /* the last rd_soft.generation handed out */
    uint64_t heartbeats_total;
    uint32_t next_slot;
    /* The soft states by slot, RD_SOFT_CHUNK to a chunk: chunks never move
     * (the map points into them) and are out of the forked children's
     * sight (rd_nofork_realloc: every heartbeat writes here). */
    struct rd_soft **chunks;
    size_t n_chunks;
    uint32_t *free_slots;
    size_t n_free;
    size_t cap_free;
};

void rd_registry_init(struct rd_registry *r);
void rd_registry_close(struct rd_registry *r);

/* Soft state of `id`, or NULL when none was recorded. */
struct rd_soft *rd_registry_get(struct rd_registry *r, const char *id, size_t len);

/*
 * Soft state of `id` for `epoch`, created or reset (when the epoch changed).
 * `now_ns` starts the node's grace period of `grace_ns`. NULL on ENOMEM.
 */
struct rd_soft *rd_registry_touch(struct rd_registry *r, const char *id, size_t len, uint64_t epoch,
                                  uint64_t now_ns, uint64_t grace_ns);

/* Records an accepted heartbeat. */
void rd_registry_heartbeat(struct rd_registry *r, struct rd_soft *s, uint64_t now_ns,
                           int64_t wall_ms, uint32_t slots_used, const struct rd_node_metrics *m);

/* The node entered a new state: probation counts heartbeats from here. */
void rd_registry_state_entered(struct rd_registry *r, struct rd_soft *s);

/* Attempt `attempt` of task `task_id` was taken off the agent: told in its
 * next heartbeat answer (the oldest RD_REVOKED_MAX are kept; the same
 * revocation twice is kept once). */
void rd_registry_revoke(struct rd_registry *r, struct rd_soft *s, const char *task_id,
                        uint32_t attempt);

/* The revocations since the last call, into `out` (at most RD_REVOKED_MAX),
 * forgotten here: their count. */
unsigned rd_registry_take_revoked(struct rd_registry *r, struct rd_soft *s,
                                  struct rd_revocation out[RD_REVOKED_MAX]);

/*
 * The assignments of one heartbeat answer, between rd_registry_tell_begin
 * and rd_registry_tell_end: rd_registry_tell_due for every task the node
 * holds assigned or recovering (each task once), rd_registry_told for each
 * one the answer carries. What tell_due was not asked about in the round
 * (the task started, finished or moved) is forgotten at the end.
 */
void rd_registry_tell_begin(struct rd_soft *s);

/* Whether attempt `attempt` of `task_id` goes out in the answer at
 * `now_ns`: never told (or an older attempt was), or its resend time has
 * come. */
bool rd_registry_tell_due(struct rd_soft *s, const char *task_id, uint32_t attempt,
                          uint64_t now_ns);

/* The answer at `now_ns` carries attempt `attempt` of `task_id`: told again
 * after `resend_ns` x 1, 2, 4 ... RD_TOLD_BACKOFF_MAX (one more answer
 * telling it at once on ENOMEM). */
void rd_registry_told(struct rd_soft *s, const char *task_id, uint32_t attempt, uint64_t now_ns,
                      uint64_t resend_ns);

void rd_registry_tell_end(struct rd_soft *s);

/* Forgets every assignment told (this replica leads again: what it told in
 * an earlier leadership may never have arrived, and nobody else's answers
 * are known): each is told in the node's next answer. */
void rd_registry_untell_all(struct rd_registry *r);

/* This replica leads again from `wall_ms` (its fsm stamp): what it heard in an
 * earlier leadership says nothing of what was told since, so every node's
 * heartbeats count from here (watch_wall_ms). */
void rd_registry_watch_from(struct rd_registry *r, int64_t wall_ms);

/* Forgets `id` (the node left). */
void rd_registry_forget(struct rd_registry *r, const char *id, size_t len);

#endif
