/*
 * Conflict records (conflicts.c): in availability mode, a write of an
 * attempt that its task no longer accepts from it (superseded while its
 * agent was cut off, taken back, or the task finished after it), with the
 * resolution that was carried out (docs/operations.md, "Partitions:
 * consistency or availability"). Part of the state machine's API: include
 * fsm.h.
 */
#ifndef RD_FSM_CONFLICTS_H
#define RD_FSM_CONFLICTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct rd_fsm;

/* Records kept at most: beyond, the oldest goes. A record also goes with
 * its task (the task lifecycle's prune). */
#define RD_FSM_MAX_CONFLICTS 10000

/* A write's key: its task id, NUL, attempt (4 bytes), kind (1), version (8). */
#define RD_CONFLICT_WRITE_KEY_MAX (40 + 4 + 1 + 8)

struct rd_conflict {
    char id[40];  /* UUID chosen by the leader */
    uint64_t seq; /* order of recording, from 1 */
    char task_id[40];
    uint32_t attempt;        /* the writer's (stale) attempt */
    uint32_t task_attempt;   /* the task's when the write arrived */
    uint8_t kind;            /* enum rd_conflict_kind */
    uint8_t resolution;      /* enum rd_conflict_res, as carried out */
    uint8_t resolved_by;     /* enum rd_conflict_by */
    uint8_t adopted;         /* 1: the write's data became the task's (checkpoint, result) */
    uint64_t version;        /* checkpoints: the written version; else 0 */
    uint64_t stored_version; /* the task's newest checkpoint version when it arrived */
    uint64_t checksum;       /* checkpoints: FNV-1a of data */
    char *node_id;           /* the writer ("" when it did not say) */
    char *task_node_id;      /* where the task was ("" when nowhere) */
    char *reason;            /* why this resolution */
    char *data;              /* the written checkpoint data, result or error: nothing is lost */
    uint32_t data_size;
    int64_t at;      /* leader time it was recorded */
    struct rd_dg dg; /* local: its term of the digest (digest.h) */
    /* local: its key in the map of writes (task, attempt, kind, version) */
    uint8_t write_key_len;
    char write_key[RD_CONFLICT_WRITE_KEY_MAX];
};

/* Every record, oldest first; `*n` gets their count. Valid until the next
 * apply or restore. */
const struct rd_conflict *const *rd_fsm_conflicts(const struct rd_fsm *f, size_t *n);
/* The record `id`, or NULL. */
const struct rd_conflict *rd_fsm_conflict_find(const struct rd_fsm *f, const char *id);
/* The position of the first record whose seq is `seq` or above (paging). */
size_t rd_fsm_conflict_index(const struct rd_fsm *f, uint64_t seq);
/* The record with sequence number `seq`, or NULL. */
const struct rd_conflict *rd_fsm_conflict_by_seq(const struct rd_fsm *f, uint64_t seq);
/* The record of the same write (task, attempt, kind, version), or NULL: a
 * write replayed again answers with it. */
const struct rd_conflict *rd_fsm_conflict_same(const struct rd_fsm *f, const char *task_id,
                                               uint32_t attempt, int kind, uint64_t version);

#endif
