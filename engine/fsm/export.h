/*
 * Where the export of records to PostgreSQL stands, in the state machine
 * (export.c; docs/records.md). Part of the state machine's API: include
 * fsm.h.
 *
 * Every exported kind of record (fault, recovery run, audit record, backup)
 * carries `changed`, the raft index of the apply that last changed it (set
 * where the digest's touch list takes the record: rd_fsm__dg_touch and
 * rd_fsm__dg_add, so no change escapes it). The leader writes the records
 * changed after the exported position to PostgreSQL, and the position with
 * them in the same transaction; once PostgreSQL committed it proposes
 * RD_CMD_RECORDS_EXPORT with the new position. While export is enabled, a
 * record changed after the position is not pruned by the usual bounds
 * (RD_FSM_MAX_FAULTS, RD_FSM_MAX_RECOVERIES, the audit retention,
 * RD_FSM_MAX_BACKUPS); beyond `max_retained` records of one kind the oldest
 * go all the same, and are counted in `lost`.
 */
#ifndef RD_FSM_EXPORT_H
#define RD_FSM_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rd_fsm;

enum rd_export_kind {
    RD_EXPORT_FAULTS = 0,
    RD_EXPORT_RECOVERIES, /* recovery runs: their items are task_recovery rows */
    RD_EXPORT_AUDITS,
    RD_EXPORT_BACKUPS,
    RD_EXPORT_KINDS
};

/* The hard bound when a command does not say. */
#define RD_FSM_EXPORT_RETAIN_DEFAULT 200000

struct rd_export_pos {
    uint8_t enabled;       /* 1: records wait for export before they are pruned */
    uint64_t index;        /* every record changed at or before this raft index is exported */
    uint64_t max_retained; /* per kind, exported or not (at least the kind's usual bound) */
    int64_t at_ms;         /* the leader's stamp of the last RD_CMD_RECORDS_EXPORT */
    uint64_t lost[RD_EXPORT_KINDS]; /* records pruned before they were exported */
};

/* Never NULL. */
const struct rd_export_pos *rd_fsm_export(const struct rd_fsm *f);

/* The kind's name as the metrics and logs say it ("faults", ...). */
const char *rd_export_kind_name(int kind);

/*
 * The pruning rule, for each kind's prune (the same on every replica: it
 * reads only the state). A record changed at raft index `changed` may go
 * under the kind's usual bound when export is off or it is exported.
 */
bool rd_fsm_export_done(const struct rd_fsm *f, uint64_t changed);

/* How many records of a kind whose usual bound is `usual` may be kept
 * unexported: `usual` when export is off, else max(usual, max_retained). */
size_t rd_fsm_export_bound(const struct rd_fsm *f, size_t usual);

#endif
