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

#include "cmd.h"
#include "common/map.h"

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
    struct rd_task *tasks; /* derived: those tasks, a list through rd_task.next_on_node */
};

#define RD_TASK_MAX_KEEP  16 /* checkpoint versions kept per task, at most */
#define RD_TASK_FAIL_KEEP 16 /* failure times kept per task (poison detection) */

struct rd_checkpoint {
    uint64_t version;
    int64_t at;
    uint64_t checksum; /* FNV-1a of data */
    uint32_t size;
    char *data; /* JSON */
};

/* A task (API.md): durable, including its last checkpoint versions. */
struct rd_task {
    char id[40];
    uint8_t state; /* enum rd_task_state */
    uint8_t priority;
    uint8_t critical;
    uint32_t slots;
    char *labels_json; /* requirements.labels */
    char *payload_json;
    uint32_t max_attempts;
    uint32_t attempt; /* fencing token: only this attempt may write; 0 before the first placement */
    uint32_t failures;                  /* attempts that failed or were moved off a failed agent */
    int64_t fail_at[RD_TASK_FAIL_KEEP]; /* leader times of the newest failures, oldest first */
    uint8_t n_fail_at;
    char *node_id; /* "" when not placed */
    uint64_t node_epoch;
    int64_t created_at;
    int64_t updated_at;
    char *result_json; /* completion result or failure text, "" when none */
    struct rd_checkpoint ckpts[RD_TASK_MAX_KEEP]; /* oldest first */
    uint8_t n_ckpts;
    struct rd_task *next_on_node, *prev_on_node; /* derived: the node's task list */
};

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
};

#define RD_FSM_MAX_RECOVERIES 1000 /* finished runs beyond this are pruned, oldest first */

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
};

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

#define RD_FSM_MAX_REPLICAS 16

/* What the log knows of an engine replica beyond raft's configuration. */
struct rd_replica_info {
    uint64_t id;
    char api_url[256];
};

struct rd_fsm {
    struct rd_node **nodes; /* sorted by node_id (bytewise) */
    size_t n_nodes;
    size_t cap_nodes;
    struct rd_map by_id;
    uint64_t n_applied;   /* commands applied, refused ones included */
    int64_t last_time_ms; /* newest leader stamp applied */
    size_t count_by_state[RD_NODE_STATE_COUNT];
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
    struct rd_recovery **recoveries; /* in order of opening */
    size_t n_recoveries;
    size_t cap_recoveries;
    struct rd_map recoveries_by_id;
    struct rd_replica_info replicas[RD_FSM_MAX_REPLICAS]; /* by id, ascending */
    unsigned n_replicas;
    struct rd_fsm_result result;
    uint64_t restores; /* snapshots restored (local count, not state) */
    rd_fsm_node_cb on_node;
    void *on_node_data;
    rd_fsm_fault_cb on_fault;
    void *on_fault_data;
    rd_fsm_task_cb on_task;
    void *on_task_data;
    struct raft_fsm raft; /* handed to raft_init; raft.data = this */
    char errmsg[256];
};

int rd_fsm_init(struct rd_fsm *f);
void rd_fsm_close(struct rd_fsm *f);

/*
 * Applies one encoded command. Returns 0 when the command was applied or
 * refused (see result->status), RD_EUNSUPPORTED / RD_EPARSE for a command
 * this version cannot read (errmsg says why) and RD_ENOMEM. `out` may be NULL.
 */
int rd_fsm_apply(struct rd_fsm *f, const void *buf, size_t len, const struct rd_fsm_result **out);

/*
 * Serialises the whole state into `out` (initialised by the caller), zstd
 * compressed behind a small header. Deterministic: equal states give equal
 * bytes. Returns 0 or an RD_E* code; the caller frees `out` either way.
 */
int rd_fsm_snapshot(const struct rd_fsm *f, struct rd_wbuf *out);

/*
 * Replaces the state with the one in a snapshot. The new state is built
 * aside and swapped in only when the whole snapshot decoded, so a corrupt
 * snapshot leaves the machine as it was (RD_ECORRUPT / RD_EUNSUPPORTED).
 * The caller keeps `buf`.
 */
int rd_fsm_restore(struct rd_fsm *f, const void *buf, size_t len);

/* FNV-1a over the uncompressed serialised state: equal on equal states. */
uint64_t rd_fsm_digest(const struct rd_fsm *f);
/* The time to stamp a new command with: the wall clock, never behind the
 * newest stamp applied (a leader whose clock went back keeps time moving). */
int64_t rd_fsm_stamp(const struct rd_fsm *f);

const struct rd_node *rd_fsm_node(const struct rd_fsm *f, const char *id, size_t len);

const struct rd_fault *rd_fsm_fault(const struct rd_fsm *f, const char *id);

const struct rd_task *rd_fsm_task(const struct rd_fsm *f, const char *id);
const struct rd_recovery *rd_fsm_recovery(const struct rd_fsm *f, const char *id);
/* The newest run of `node_id` still open (initiated or running), or NULL. */
const struct rd_recovery *rd_fsm_open_recovery(const struct rd_fsm *f, const char *node_id);
/* Index of the first task whose id sorts strictly after `id` (paging). */
size_t rd_fsm_task_after(const struct rd_fsm *f, const char *id);
/* The newest checkpoint of `t`, or NULL. */
const struct rd_checkpoint *rd_task_checkpoint(const struct rd_task *t);
/* True when `c`'s data still matches the checksum it was written with. */
bool rd_checkpoint_verifies(const struct rd_checkpoint *c);
/* Where an attempt resumes: the newest checkpoint that verifies, or NULL
 * (none kept, or none verifies: start over). */
const struct rd_checkpoint *rd_task_resume_checkpoint(const struct rd_task *t);
/* qsort() comparator over `const struct rd_task *`: most urgent first
 * (critical, then higher priority, then older, then by id). */
int rd_task_cmp_urgency(const void *a, const void *b);
/* Failures of `t` at or after `since_ms` (leader time), up to RD_TASK_FAIL_KEEP. */
unsigned rd_task_failures_since(const struct rd_task *t, int64_t since_ms);

/* Index into f->faults of the fault with `seq`, or of the first with a larger seq. */
size_t rd_fsm_fault_index(const struct rd_fsm *f, uint64_t seq);

/* Open faults of `node_id` (0 when none). */
size_t rd_fsm_node_open_faults(const struct rd_fsm *f, const char *node_id);

/* The API URL the log holds for replica `id`, or NULL. */
const char *rd_fsm_replica_url(const struct rd_fsm *f, uint64_t id);

/* Index of the first node whose id sorts strictly after `id` (paging). */
size_t rd_fsm_node_after(const struct rd_fsm *f, const char *id, size_t len);

#endif
