/*
 * The engine's replicas as the log knows them (replicas.c). Part of the
 * state machine's API: include fsm.h.
 */
#ifndef RD_FSM_REPLICAS_H
#define RD_FSM_REPLICAS_H

#include <stdint.h>

struct rd_fsm;

#define RD_FSM_MAX_REPLICAS 16

/* What the log knows of an engine replica beyond raft's configuration. */
struct rd_replica_info {
    uint64_t id;
    char api_url[256];
};

/* The API URL the log holds for replica `id`, or NULL. */
const char *rd_fsm_replica_url(const struct rd_fsm *f, uint64_t id);

#endif
