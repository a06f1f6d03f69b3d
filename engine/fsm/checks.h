/*
 * Consistency checks (checks.c): the replicated record of each check and
 * this replica's own digest at the check's index (DESIGN.md decision 9).
 * Part of the state machine's API: include fsm.h.
 */
#ifndef RD_FSM_CHECKS_H
#define RD_FSM_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct rd_fsm;

struct rd_check {
    char id[65];
    uint64_t index; /* the raft index of the check command */
    int64_t started_at_ms;
    int64_t completed_at_ms; /* 0 while pending */
    uint8_t status;          /* enum rd_check_status */
    char *digests_json;      /* NULL while pending */
    char *diverged_json;     /* NULL while pending */
    struct rd_dg dg;         /* local: its term of the digest (digest.h) */
};

/* Records beyond this many are dropped in apply, the oldest that is not
 * pending first. */
#define RD_FSM_MAX_CHECKS 1000
/* Local digests kept (a ring: the oldest goes). */
#define RD_FSM_CHECK_LOCAL_KEEP 64

/* What this replica computed when it applied a check (local, not replicated:
 * a diverged replica's digest differs by definition). */
struct rd_check_local {
    char id[65];
    uint64_t index;
    uint64_t digest;
};

/* Every check record in the order they were applied (oldest first); `*n`
 * gets their count. The array belongs to the machine: valid until the next
 * apply or restore. */
const struct rd_check *const *rd_fsm_checks(const struct rd_fsm *f, size_t *n);

/* The record of check `id`, or NULL. */
const struct rd_check *rd_fsm_check_find(const struct rd_fsm *f, const char *id);
/* This replica's digest for check `id`, or NULL when it has not applied it
 * (or it fell out of the local ring). */
const struct rd_check_local *rd_fsm_check_local(const struct rd_fsm *f, const char *id);

#endif
