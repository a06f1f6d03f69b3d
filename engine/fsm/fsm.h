/*
 * The replicated state machine: everything that must survive lives here and
 * changes only by applying log commands (cmd.h). Apply is deterministic: it
 * reads no clock, no random source and nothing outside this struct, so
 * replicas that apply the same log hold byte-identical state (compare with
 * rd_fsm_digest()). Loop-thread only.
 */
#ifndef RD_FSM_H
#define RD_FSM_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "backups.h"
#include "checks.h"
#include "cmd.h"
#include "common/map.h"
#include "conflicts.h"
#include "digest.h"
#include "export.h"
/* The records, one header per kind (and its .c file). */
#include "faults.h"
#include "nodes.h"
#include "recovery.h"
#include "replicas.h"
#include "snapshot.h"
#include "tasks.h"

/* What the last applied command did; valid until the next apply. */
struct rd_fsm_result {
    int status;                   /* 0 or RD_E*: a refused command changes nothing */
    uint8_t type;                 /* the command's type */
    const struct rd_node *node;   /* node the command touched, or NULL */
    const struct rd_fault *fault; /* fault the command opened or resolved, or NULL */
    const struct rd_task *task;   /* task the command touched, or NULL */
    char old_node[256];           /* task_assign: where the task was */
    int old_state;                /* node state before, -1 for a new node */
    uint64_t value;               /* the command's answer: a node's epoch after it */
};

/*
 * What travels from apply to the submitter's callback. libraft 0.22 may fire
 * apply callbacks after later entries were applied, and followers have no
 * callback to free anything, so the result is packed into the pointer
 * itself: the status and a 56-bit value, nothing that points into the machine.
 */
static inline void *rd_fsm_pack(int status, uint64_t value)
{
    return (void *)(uintptr_t)(((value & 0x00ffffffffffffffULL) << 8) | (uint8_t)(-status));
}

static inline void rd_fsm_unpack(const void *packed, int *status, uint64_t *value)
{
    uintptr_t v = (uintptr_t)packed;
    *status = -(int)(v & 0xff);
    *value = (uint64_t)v >> 8;
}

/*
 * Observer called after a command changed a node (not on refusals, not on
 * restore). For local bookkeeping only (metrics, soft state): it must not
 * touch the machine.
 */
typedef void (*rd_fsm_node_cb)(void *data, const struct rd_node *node, int old_state);
/* Observer called after a fault was opened or resolved (same rules). */
typedef void (*rd_fsm_fault_cb)(void *data, const struct rd_fault *fault);
/* Observer called after a command changed a task (same rules). */
typedef void (*rd_fsm_task_cb)(void *data, const struct rd_task *task, int old_state,
                               const char *old_node);
/*
 * Observer called after every applied command that decoded (refused ones
 * included: replaying them gives the same state), with its raft index (see
 * applying_index), its leader time and its encoded bytes (valid during the
 * call only). Continuous archiving ships these. Same rules as above.
 */
typedef void (*rd_fsm_entry_cb)(void *data, uint64_t index, int64_t time_ms, const void *buf,
                                size_t len);
/*
 * Observer called after each command of a batch entry (cmd.h, format 3) was
 * applied or refused, with the entry's raft index, the command's position in
 * the batch and its result (as rd_fsm_pack would carry it for an entry of
 * its own). The leader answers each write of a batch with it (replica.c).
 * Same rules as above.
 */
typedef void (*rd_fsm_item_cb)(void *data, uint64_t index, uint32_t pos, int status,
                               uint64_t value);
/*
 * Observer called after each command applied (not refused, not one that
 * could not be read), alone in its entry or in a batch, with the entry's
 * raft index and the decoded command (its strings point into the entry:
 * valid during the call only). What a command says beyond the records it
 * changed (the recovery run a placement belongs to) is read here, where it
 * is this command's whatever else shares its entry. Same rules as above.
 */
typedef void (*rd_fsm_command_cb)(void *data, uint64_t index, const struct rd_cmd *cmd);
/* Observer called when this replica applied a consistency check, with the
 * digest it computed (same rules). */
typedef void (*rd_fsm_check_cb)(void *data, const struct rd_check_local *local);

/* The incremental digest's bookkeeping (digest.c). */
struct rd_fsm_dg_touch {
    uint8_t kind; /* enum rd_dg_kind */
    void *rec;
};

struct rd_fsm_dg {
    uint64_t sum[RD_DG_KINDS];       /* per kind: sum of the records' hashes */
    struct rd_fsm_dg_touch *touched; /* records changed, their hashes not yet taken */
    size_t n_touched;
    size_t cap_touched;
    size_t pending_max; /* flush past this many (RD_DG_PENDING_MAX; 0: after every command) */
    bool lost;          /* the touch list could not grow: rebuild at the next commit */
};

struct rd_fsm {
    struct rd_node **nodes; /* sorted by node_id (bytewise) */
    size_t n_nodes;
    size_t cap_nodes;
    struct rd_map by_id;
    uint64_t n_applied;   /* commands applied, refused ones included */
    int64_t last_time_ms; /* newest leader stamp applied */
    size_t count_by_state[RD_NODE_STATE_COUNT];
    /* Local: bumped by every change of a node's state, epoch, slots or
     * slots in use, and by a restore (the rebalancer skips its scan of the
     * fleet while none came). */
    uint64_t fleet_changes;
    struct rd_fault **faults; /* in order of seq (oldest first) */
    size_t n_faults;
    size_t cap_faults;
    struct rd_map faults_by_id;
    uint64_t fault_seq; /* last seq handed out */
    size_t open_faults;
    struct rd_task **tasks; /* sorted by id */
    size_t n_tasks;
    size_t cap_tasks;
    struct rd_map tasks_by_id;
    size_t tasks_by_state[RD_TASK_STATE_COUNT];
    /* derived, each as large as `tasks` (never grows on its own): a
     * min-heap by deadline_ms of the unfinished tasks with one, and one in
     * urgency order (rd_task_cmp_urgency) of the pending tasks */
    struct rd_task_heap deadlines;
    struct rd_task_heap pending;
    struct rd_recovery **recoveries; /* in order of opening */
    size_t n_recoveries;
    size_t cap_recoveries;
    struct rd_map recoveries_by_id;
    struct rd_replica_info replicas[RD_FSM_MAX_REPLICAS]; /* by id, ascending */
    unsigned n_replicas;
    struct rd_backup **backups; /* in order of BEGIN (oldest first) */
    size_t n_backups;
    size_t cap_backups;
    struct rd_map backups_by_id;
    struct rd_archive_pos archive;
    struct rd_export_pos exp; /* the export of records to PostgreSQL (export.h) */
    char cluster_id[65];      /* "" until RD_CMD_CLUSTER_ID */
    struct rd_check **checks; /* in order of application (oldest first) */
    size_t n_checks;
    size_t cap_checks;
    struct rd_map checks_by_id;
    /* Audit records: audits[audit_head .. audit_head + n_audits), oldest
     * first (audit.c). */
    struct rd_audit **audits;
    size_t audit_head;
    size_t n_audits;
    size_t cap_audits;
    uint64_t audit_seq;      /* last seq handed out */
    uint64_t audits_written; /* records this replica applied (local count, not state) */
    /* Conflict records (conflicts.c): conflicts[conflict_head ..
     * conflict_head + n_conflicts), oldest first, by id and by the write
     * they record (task, attempt, kind, version: rd_fsm_conflict_same). */
    struct rd_conflict **conflicts;
    size_t conflict_head;
    size_t n_conflicts;
    size_t cap_conflicts;
    struct rd_map conflicts_by_id;
    struct rd_map conflicts_by_write;
    uint64_t conflict_seq; /* last seq handed out */
    /* Records this replica applied, by kind and resolution (local count). */
    uint64_t conflicts_written[RD_CONFLICT_KIND_COUNT][RD_CONFLICT_RES_COUNT];
    /* This replica's digests at the checks it applied: a ring, local (not
     * state: kept across restores, never in a snapshot). */
    struct rd_check_local check_local[RD_FSM_CHECK_LOCAL_KEEP];
    unsigned n_check_local;    /* held, up to RD_FSM_CHECK_LOCAL_KEEP */
    unsigned check_local_next; /* where the next one goes */
    struct rd_fsm_dg dg;
    /*
     * The raft index of the entry being applied, during rd_fsm_apply (0
     * outside). Bound to a raft instance (rd_fsm_bind_raft) it is
     * raft_last_applied() + 1: libraft 0.22 (src/legacy.c, applyCommand)
     * moves last_applied only after fsm->apply returned, and entries are
     * applied in index order. Unbound (unit tests, tools replaying
     * commands) it is n_applied + 1, which equals the index only for a log
     * of commands alone.
     */
    uint64_t applying_index;
    struct raft *raft_ref; /* the raft instance applying to this machine, or NULL */
    struct rd_fsm_result result;
    uint64_t restores;           /* snapshots restored (local count, not state) */
    uint64_t digest_audits;      /* rd_fsm_digest_audit() runs (local count) */
    uint64_t digest_audit_fixes; /* records (or sums) they found wrong and corrected */
    rd_fsm_node_cb on_node;
    void *on_node_data;
    rd_fsm_fault_cb on_fault;
    void *on_fault_data;
    rd_fsm_task_cb on_task;
    void *on_task_data;
    rd_fsm_entry_cb on_entry;
    void *on_entry_data;
    rd_fsm_command_cb on_command;
    void *on_command_data;
    rd_fsm_check_cb on_check;
    void *on_check_data;
    rd_fsm_item_cb on_item;
    void *on_item_data;
    struct raft_fsm raft; /* handed to raft_init; raft.data = this */
    char errmsg[256];
};

int rd_fsm_init(struct rd_fsm *f);
void rd_fsm_close(struct rd_fsm *f);

/*
 * Tells the machine which raft instance applies to it, so that apply knows
 * the index of the entry it applies (applying_index); NULL unbinds (before
 * the raft instance goes away). The machine only reads raft_last_applied().
 */
void rd_fsm_bind_raft(struct rd_fsm *f, struct raft *raft);

/*
 * Applies one log entry: an encoded command, or a batch of them (cmd.h,
 * format 3) applied in order, each as if it were an entry of its own (at the
 * same raft index), its result told to on_item. Returns 0 when the command
 * was applied or refused (see result->status; for a batch, its last
 * command's), RD_EUNSUPPORTED / RD_EPARSE for a command or batch this
 * version cannot read (errmsg says why; a batch's other commands still
 * apply) and RD_ENOMEM. `out` may be NULL. The digest follows every change
 * (digest.h). The entry observer sees the entry once, whole.
 */
int rd_fsm_apply(struct rd_fsm *f, const void *buf, size_t len, const struct rd_fsm_result **out);

/* The time to stamp a new command with: the wall clock, never behind the
 * newest stamp applied (a leader whose clock went back keeps time moving). */
int64_t rd_fsm_stamp(const struct rd_fsm *f);

#ifdef RD_FAULT_INJECTION
/*
 * Test builds only (inject.c, the rdinject library): corrupts this
 * replica's state as a bug would. `what` "node": flips a byte of node
 * `id`'s labels; "checkpoint": of task `id`'s newest checkpoint data (its
 * checksum then fails). The record is re-hashed, so rd_fsm_digest() shows
 * the change. Returns 0, RD_ENOTFOUND (no such record or checkpoint) or
 * RD_EINVAL (unknown `what`). Loop thread, outside apply.
 */
int rd_fsm_inject_corrupt(struct rd_fsm *f, const char *what, const char *id);
/* Corrupts only the incremental digest (the state stays): rd_fsm_digest()
 * then differs from rd_fsm_digest_full(). Returns 0. */
int rd_fsm_inject_digest_skew(struct rd_fsm *f);
#endif

#endif
