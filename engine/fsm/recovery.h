/*
 * Recovery runs and their task_recovery records in the state machine
 * (recovery.c). Part of the state machine's API: include fsm.h.
 */
#ifndef RD_FSM_RECOVERY_H
#define RD_FSM_RECOVERY_H

#include <stdint.h>

#include "digest.h"

struct rd_fsm;

/* A task_recovery record (the requirement's table). */
struct rd_recovery_item {
    char id[40];
    char task_id[40];
    char *failed_node_id;
    char *recovery_node_id; /* "" when the task went back to pending */
    char *strategy;
    int64_t started_at;
    int64_t completed_at;
    uint8_t success; /* 1 placed on a new agent, 0 not (error says why) */
    char *error;
};

/* A recovery run: one lost agent's tasks moved elsewhere. */
struct rd_recovery {
    char id[40];
    char *node_id;
    char *strategy; /* requested, then what acted */
    char *reason;
    uint8_t status; /* enum rd_recovery_status */
    int64_t started_at;
    int64_t completed_at;
    uint32_t total, recovered, failed;
    struct rd_recovery_item *items;
    uint32_t n_items, cap_items;
    uint64_t changed; /* raft index of its last change (export.h) */
    struct rd_dg dg;  /* local: its term of the digest (digest.h) */
};

#define RD_FSM_MAX_RECOVERIES 1000 /* finished runs beyond this are pruned, oldest first */

const struct rd_recovery *rd_fsm_recovery(const struct rd_fsm *f, const char *id);
/* The newest run of `node_id` still open (initiated or running), or NULL. */
const struct rd_recovery *rd_fsm_open_recovery(const struct rd_fsm *f, const char *node_id);

#endif
