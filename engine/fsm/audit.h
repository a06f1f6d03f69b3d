/*
 * Audit records (audit.c): who did what, from where, with which outcome
 * (issue 12). A record joins the state in the same apply as the change it
 * describes (the command's audit part, cmd.h), or alone (RD_CMD_AUDIT: a
 * denial, a failure, an action that is no log command). Part of the state
 * machine's API: include fsm.h.
 */
#ifndef RD_FSM_AUDIT_H
#define RD_FSM_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct rd_fsm;

struct rd_audit {
    uint64_t seq;  /* 1, 2, ...: one more per record, never reused */
    int64_t at_ms; /* the leader's stamp of the command */
    uint8_t role;  /* enum rd_role (http/principal.h) */
    uint16_t status;
    const char *principal, *source, *method, *action, *target, *error, *request_id, *cause;
    uint64_t changed; /* raft index of the apply that wrote it (export.h) */
    struct rd_dg dg;  /* local: its term of the digest (digest.h) */
    char strings[];   /* the eight strings above, NUL-terminated, one after another */
};

/* Retention when the command does not say (the leader stamps its config,
 * security.audit.max_records and security.audit.max_age). */
#define RD_FSM_AUDIT_KEEP_DEFAULT    100000
#define RD_FSM_AUDIT_MAX_AGE_DEFAULT (30u * 86400u)

/* Every audit record, oldest first; `*n` gets their count. Valid until the
 * next apply or restore. */
const struct rd_audit *const *rd_fsm_audits(const struct rd_fsm *f, size_t *n);

/* The position in rd_fsm_audits() of the record with sequence `seq`, or of
 * the first one after it (n when none). */
size_t rd_fsm_audit_index(const struct rd_fsm *f, uint64_t seq);

/* The position in rd_fsm_audits() of the first record written after raft
 * index `index` (n when none): records are written in index order. */
size_t rd_fsm_audit_first_after(const struct rd_fsm *f, uint64_t index);

/* The HTTP status and error code of a refusal RD_E* `err` as the API answers
 * it (the outcome a record of a refused command shows). */
int rd_audit_outcome(int err, const char **code);

#endif
