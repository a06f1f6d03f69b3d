/*
 * Fault records in the state machine (faults.c). Part of the state
 * machine's API: include fsm.h.
 */
#ifndef RD_FSM_FAULTS_H
#define RD_FSM_FAULTS_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct rd_fsm;

/* Resolved records beyond this many are pruned, oldest first, in apply. */
#define RD_FSM_MAX_FAULTS 50000

/* A fault record: the requirement's fault_records table. */
struct rd_fault {
    uint64_t seq;     /* order of opening, from 1 */
    char id[40];      /* UUID */
    char *node_id;    /* "" for cluster-wide faults */
    uint8_t type;     /* enum rd_fault_type */
    uint8_t severity; /* enum rd_severity */
    uint8_t status;   /* enum rd_fault_status */
    int64_t detected_at;
    int64_t resolved_at; /* 0 while open */
    char *recovery_action_json;
    char *metadata_json;
    char *resolution; /* why it was resolved ("" while open) */
    uint64_t changed; /* raft index of its last change (export.h) */
    struct rd_dg dg;  /* local: its term of the digest (digest.h) */
};

const struct rd_fault *rd_fsm_fault(const struct rd_fsm *f, const char *id);

/* Index into f->faults of the fault with `seq`, or of the first with a larger seq. */
size_t rd_fsm_fault_index(const struct rd_fsm *f, uint64_t seq);

/* Open faults of `node_id` (0 when none). */
size_t rd_fsm_node_open_faults(const struct rd_fsm *f, const char *node_id);

#endif
