/*
 * Registered agents in the state machine (nodes.c). Part of the state
 * machine's API: include fsm.h.
 */
#ifndef RD_FSM_NODES_H
#define RD_FSM_NODES_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct rd_fsm;
struct rd_task;

/* A registered agent: the durable part. Heartbeats are soft state elsewhere. */
struct rd_node {
    char *node_id;
    size_t id_len;
    uint64_t epoch; /* fencing token, +1 at every registration */
    uint8_t state;  /* enum rd_node_state */
    uint32_t slots;
    char *labels_json; /* canonical compact JSON object */
    char *health_url;  /* "" when none */
    char *address;     /* "" when none */
    char *reason;      /* why it entered its state ("" when none) */
    int64_t registered_at;
    int64_t updated_at;
    uint32_t open_faults;  /* derived: open fault records of this node */
    uint32_t slots_in_use; /* derived: slots of the tasks placed on this node */
    uint32_t n_tasks;      /* derived: tasks placed on this node */
    uint32_t n_unstarted;  /* derived: of those, assigned or recovering (not started) */
    /* derived: those tasks, a list through rd_task.next_on_node, the
     * unstarted ones first (a heartbeat's handover walks only those) */
    struct rd_task *tasks, *tasks_tail;
    struct rd_dg dg; /* local: its term of the digest (digest.h) */
};

const struct rd_node *rd_fsm_node(const struct rd_fsm *f, const char *id, size_t len);

/* Index of the first node whose id sorts strictly after `id` (paging). */
size_t rd_fsm_node_after(const struct rd_fsm *f, const char *id, size_t len);

/* Nodes failed (state failed) by a transition the log stamped at or after
 * `since_ms`, whoever led then: a walk over the nodes. */
size_t rd_fsm_nodes_failed_since(const struct rd_fsm *f, int64_t since_ms);

#endif
