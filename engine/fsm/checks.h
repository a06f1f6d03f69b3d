/*
 * Consistency checks (checks.c): the replicated record of each check and
 * this replica's own digest at the check's index (DESIGN.md decision 9).
 * Part of the state machine's API: include fsm.h.
 */
#ifndef RD_FSM_CHECKS_H
#define RD_FSM_CHECKS_H

#include <stdint.h>

struct rd_fsm;

struct rd_check {
    char id[65];
    uint64_t index; /* the raft index of the check command */
    int64_t started_at_ms;
    int64_t completed_at_ms; /* 0 while pending */
    uint8_t status;          /* enum rd_check_status */
    char *digests_json;      /* NULL while pending */
    char *diverged_json;     /* NULL while pending */
};

/* What this replica computed when it applied a check (local, not replicated:
 * a diverged replica's digest differs by definition). */
struct rd_check_local {
    char id[65];
    uint64_t index;
    uint64_t digest;
};

/* The record of check `id`, or NULL. */
const struct rd_check *rd_fsm_check_find(const struct rd_fsm *f, const char *id);
/* This replica's digest for check `id`, or NULL when it has not applied it
 * (or it fell out of the local ring). */
const struct rd_check_local *rd_fsm_check_local(const struct rd_fsm *f, const char *id);

#endif
