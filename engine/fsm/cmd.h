/*
 * Log commands: the only way state changes. Every command is
 *
 *   u8 format (RD_CMD_FORMAT) | u8 type | u16 flags (0) | i64 time_ms | body
 *
 * little-endian, strings as u32 length + bytes. The leader stamps `time_ms`
 * (and any id) into the command, so applying it reads no clock and no random
 * source. New command types append to the enum; a body only grows by
 * appending fields that old decoders ignore (they stop at their last field),
 * and a changed meaning takes a new type. A replica that meets a format or
 * type it does not know refuses to apply it (RD_EUNSUPPORTED) rather than
 * diverge.
 */
#ifndef RD_CMD_H
#define RD_CMD_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"

#define RD_CMD_FORMAT      1
#define RD_CMD_HEADER_SIZE 12
/* Format 2: the header, then an audit part (struct rd_cmd_audit), then the
 * body as in format 1. Written only for a command that carries an audit
 * part, so every other command stays format 1 (older replicas refuse a
 * format 2 entry as unknown rather than misread it). */
#define RD_CMD_FORMAT_AUDIT 2
/*
 * Format 3: a batch (group commit: docs/architecture.md, "The write path"),
 * many commands in one raft entry:
 *
 *   u8 format (3) | u8 type (0) | u16 flags (0) | i64 time_ms | u32 count |
 *   count x (u32 length | one command, format 1 or 2, unpadded)
 *
 * `time_ms` is the newest of its commands' stamps. The machine applies the
 * commands in order, each exactly as if it were an entry of its own, at the
 * entry's raft index; each has its own result. Only the types
 * rd_cmd_batchable() accepts go in one. Replicas older than the format refuse
 * a batch as unknown (RD_EUNSUPPORTED) rather than misread it; a log without
 * batches reads as before.
 */
#define RD_CMD_FORMAT_BATCH      3
#define RD_CMD_BATCH_HEADER_SIZE 16
#define RD_CMD_BATCH_MAX         256 /* commands in one batch */

enum rd_cmd_type {
    RD_CMD_NOOP = 1,            /* barrier; changes nothing but the applied count */
    RD_CMD_NODE_REGISTER = 2,   /* register or re-register an agent: new epoch */
    RD_CMD_NODE_TRANSITION = 3, /* move an agent to another state, fenced by epoch */
    RD_CMD_FAULT_OPEN = 4,      /* record a fault, optionally moving its node in the same step */
    RD_CMD_FAULT_RESOLVE = 5,   /* resolve one fault, or every open fault of a node */
    RD_CMD_TASK_SUBMIT = 6,     /* a new task (idempotent by id) */
    RD_CMD_TASK_ASSIGN = 7,     /* place a task on an agent: attempt + 1, fenced by attempt */
    RD_CMD_TASK_CHECKPOINT = 8, /* store a checkpoint version, fenced by attempt */
    RD_CMD_TASK_FINISH = 9,     /* complete, fail, cancel, pause or requeue a task */
    RD_CMD_RECOVERY_OPEN = 10,  /* a recovery run for an agent's tasks */
    RD_CMD_RECOVERY_CLOSE = 11, /* the run ended: succeeded, partial or failed */
    RD_CMD_REPLICA_INFO = 12,   /* a replica's API URL, for redirects and health */
    RD_CMD_BACKUP = 13,         /* a backup's record: begun, completed, failed, verified, removed */
    RD_CMD_ARCHIVE = 14,        /* the archive target holds every entry up to an index */
    RD_CMD_CHECK = 15,          /* a consistency check: each replica digests its state here */
    RD_CMD_CHECK_RESULT = 16,   /* what the replicas reported for a check, and the verdict */
    RD_CMD_CLUSTER_ID = 17,     /* names the cluster once (backups carry it); later ones refused */
    /* Repairs checkpoints that failed their checksum: an older version, a backup's. */
    RD_CMD_CHECKPOINT_RESTORE = 18,
    /* An audit record alone (no body): a denied or failed request, or an
     * action whose change is not a log command (issue 12). */
    RD_CMD_AUDIT = 19,
    /* PostgreSQL holds every record changed up to an index (docs/records.md). */
    RD_CMD_RECORDS_EXPORT = 20,
    /* An operator's cancel or retry of a task, or the prune of finished
     * tasks past their retention (struct rd_cmd_task_lifecycle). */
    RD_CMD_TASK_LIFECYCLE = 21,
    /* Availability mode: a write of a superseded attempt, recorded with the
     * resolution the leader chose and carried out in the same step
     * (struct rd_cmd_conflict). */
    RD_CMD_CONFLICT = 22,
    RD_CMD_TYPE_MAX
};

/* Node states, shared by the state machine, the API and metrics. */
enum rd_node_state {
    RD_NODE_ALIVE = 0,
    RD_NODE_SUSPECT,
    RD_NODE_FAILED,
    RD_NODE_ISOLATED,
    RD_NODE_PROBATION,
    RD_NODE_DRAINING,
    RD_NODE_LEFT,
    RD_NODE_STATE_COUNT
};

const char *rd_node_state_name(int state);
/* "alive" -> RD_NODE_ALIVE; -1 when unknown. */
int rd_node_state_parse(const char *name, size_t len);

#define RD_STATE_ANY 0xff /* a transition's from_state that accepts any state */

/* Fault records: the requirement's fault_type and severity_level values. */
enum rd_fault_type {
    RD_FAULT_CRASH = 0,
    RD_FAULT_HANG,
    RD_FAULT_NETWORK,
    RD_FAULT_OVERLOAD,
    RD_FAULT_DEGRADED,
    RD_FAULT_PARTITION,
    RD_FAULT_DATA_CORRUPTION,
    RD_FAULT_POLICY_ERROR,
    RD_FAULT_MANUAL,
    RD_FAULT_POISON_TASK, /* a task that keeps failing or taking its agents down */
    RD_FAULT_TYPE_COUNT
};

enum rd_severity { RD_SEV_CRITICAL = 0, RD_SEV_MAJOR, RD_SEV_MINOR, RD_SEV_WARNING, RD_SEV_COUNT };

enum rd_fault_status { RD_FAULT_OPEN_ST = 0, RD_FAULT_RESOLVED, RD_FAULT_STATUS_COUNT };

/* Task states (API.md). */
enum rd_task_state {
    RD_TASK_PENDING = 0,
    RD_TASK_ASSIGNED,
    RD_TASK_RUNNING,
    RD_TASK_RECOVERING,
    RD_TASK_COMPLETED,
    RD_TASK_FAILED,
    RD_TASK_CANCELLED,
    RD_TASK_PAUSED,
    RD_TASK_STATE_COUNT
};

const char *rd_task_state_name(int s);
int rd_task_state_parse(const char *name);

const char *rd_fault_type_name(int t);
const char *rd_severity_name(int s);
const char *rd_fault_status_name(int s);
/* Name -> value; -1 when unknown. */
int rd_fault_type_parse(const char *name);
int rd_severity_parse(const char *name);
int rd_fault_status_parse(const char *name);

struct rd_cmd_register {
    struct rd_str node_id;
    uint32_t slots;
    struct rd_str labels_json; /* canonical compact JSON object, sorted keys */
    struct rd_str health_url;  /* "" when none */
    struct rd_str address;     /* "" when none */
};

struct rd_cmd_transition {
    struct rd_str node_id;
    uint64_t epoch; /* fencing token: 0 = operator action on any epoch */
    uint8_t state;  /* enum rd_node_state */
    struct rd_str reason;
    uint8_t from_state;     /* refuse (RD_ECONFLICT) unless the node is in it; RD_STATE_ANY */
    uint8_t resolve_faults; /* 1: resolve the node's open faults in the same step */
};

struct rd_cmd_fault_open {
    struct rd_str id;                   /* UUID chosen by the leader */
    struct rd_str node_id;              /* "" for a cluster-wide fault (partition) */
    uint8_t fault_type;                 /* enum rd_fault_type */
    uint8_t severity;                   /* enum rd_severity */
    struct rd_str metadata_json;        /* JSON object */
    struct rd_str recovery_action_json; /* JSON value ("null" when none) */
    uint8_t set_state;  /* move the node to this state too, or RD_STATE_ANY for none */
    uint64_t epoch;     /* with set_state: fencing token (0 = any) */
    uint8_t from_state; /* with set_state: required current state, or RD_STATE_ANY */
    /* Appended (older entries end before them: "" and 0). A poison task's
     * quarantine: fail this task, fenced by its attempt, in the same step. */
    struct rd_str task_id;
    uint32_t task_attempt;
};

struct rd_cmd_fault_resolve {
    struct rd_str id;      /* the fault, or "" for every open fault of node_id */
    struct rd_str node_id; /* with an empty id */
    struct rd_str note;    /* why, stored in metadata.resolution */
};

struct rd_cmd_task_submit {
    struct rd_str task_id; /* UUID */
    uint8_t priority;      /* 0-9 */
    uint8_t critical;
    uint32_t slots;
    struct rd_str labels_json;  /* requirements.labels, canonical JSON */
    struct rd_str payload_json; /* canonical JSON */
    uint32_t max_attempts;
    /* Appended (older entries end before it: 0): leader time after which
     * the task fails with a fault; 0 for none. */
    int64_t deadline_ms;
};

struct rd_cmd_task_assign {
    struct rd_str task_id;
    uint32_t attempt;          /* the task's current attempt: fencing; the new one is +1 */
    struct rd_str node_id;     /* "" = back to pending (revoked) */
    uint64_t node_epoch;       /* the agent's epoch it is given to */
    uint8_t state;             /* RD_TASK_ASSIGNED, or RD_TASK_RECOVERING when moved */
    struct rd_str recovery_id; /* the run this move belongs to, or "" */
    struct rd_str item_id;     /* its task_recovery record's id (UUID) */
    struct rd_str strategy;    /* the strategy that moved it */
    /* Appended (older entries end before it: ""): why a recovery move left
     * the task unplaced, for its task_recovery record. */
    struct rd_str note;
    /* Appended after `note` (older entries end before it: 0): 1 when the
     * failed agent the task leaves never heard of this attempt (its last
     * heartbeat came before the attempt was given to it, by the leader
     * that proposes the move): its death is not counted against the task
     * (poison.max_failures). */
    uint8_t undelivered;
};

enum rd_recovery_status {
    RD_REC_INITIATED = 0,
    RD_REC_RUNNING,
    RD_REC_SUCCEEDED,
    RD_REC_PARTIAL,
    RD_REC_FAILED,
    RD_REC_STATUS_COUNT
};
const char *rd_recovery_status_name(int s);

struct rd_cmd_recovery_open {
    struct rd_str id; /* UUID */
    struct rd_str node_id;
    struct rd_str strategy; /* requested ("" = the policies choose) */
    struct rd_str reason;
};

struct rd_cmd_recovery_close {
    struct rd_str id;
    uint8_t status;         /* SUCCEEDED, PARTIAL or FAILED */
    struct rd_str strategy; /* what acted */
};

struct rd_cmd_task_checkpoint {
    struct rd_str task_id;
    uint32_t attempt;
    uint64_t version;
    uint64_t checksum; /* FNV-1a of data_json, computed by the leader */
    struct rd_str data_json;
    uint8_t keep; /* versions kept (the leader stamps its config) */
};

struct rd_cmd_task_finish {
    struct rd_str task_id;
    uint32_t attempt;          /* 0 = operator or engine action on any attempt */
    uint8_t state;             /* COMPLETED, FAILED, CANCELLED, PAUSED or PENDING (retry) */
    struct rd_str result_json; /* result, or the error text */
};

/* What RD_CMD_TASK_LIFECYCLE does. */
enum rd_task_op {
    RD_TASK_OP_CANCEL = 0, /* revoke and cancel a task that has not finished */
    RD_TASK_OP_RETRY,      /* a failed task back to pending: a new attempt budget and poison
                              window, resuming from its last checkpoint */
    RD_TASK_OP_PRUNE,      /* drop finished tasks older than retention_ms (once exported) */
    RD_TASK_OP_COUNT
};

struct rd_cmd_task_lifecycle {
    uint8_t op;            /* enum rd_task_op */
    struct rd_str task_id; /* CANCEL, RETRY */
    struct rd_str reason;  /* CANCEL: the task's error text ("" for the default) */
    int64_t retention_ms;  /* PRUNE: finished at least this long before the command's time */
    uint32_t max;          /* PRUNE: at most this many tasks go */
};

/* What a conflicting write was (RD_CMD_CONFLICT). */
enum rd_conflict_kind {
    RD_CONFLICT_CHECKPOINT = 0,
    RD_CONFLICT_COMPLETE,
    RD_CONFLICT_FAIL,
    RD_CONFLICT_KIND_COUNT
};

/* How a conflict is resolved: the same values, in the same order, as the
 * config's enum rd_cfg_conflict (fault_tolerance.partition.on_conflict). */
enum rd_conflict_res {
    RD_CONFLICT_KEEP_NEWER = 0, /* the record only: the task is untouched */
    RD_CONFLICT_KEEP_PROGRESS,  /* the further progress wins (a newer checkpoint, a result) */
    RD_CONFLICT_FAIL_TASK,      /* the task fails, its running attempt fenced */
    RD_CONFLICT_RES_COUNT
};

/* Who chose the resolution. */
enum rd_conflict_by {
    RD_CONFLICT_BY_POLICY = 0, /* select.lua's on_conflict */
    RD_CONFLICT_BY_CONFIG,     /* partition.on_conflict: no hook, or it failed */
    RD_CONFLICT_BY_ENGINE,     /* the task had finished: recorded, nothing to resolve */
    RD_CONFLICT_BY_COUNT
};

const char *rd_conflict_kind_name(int k);
const char *rd_conflict_res_name(int r);
const char *rd_conflict_by_name(int b);
/* Name -> value; -1 when unknown. */
int rd_conflict_kind_parse(const char *name);
int rd_conflict_res_parse(const char *name);

/*
 * A write of attempt `attempt` that its task no longer accepts from it (the
 * attempt was superseded, taken back, or the task finished after it), in
 * availability mode. Apply records it (struct rd_conflict) and carries out
 * `resolution` on the task in the same step; a task that finished by then
 * is recorded with keep_newer whatever the command says (resolved_by
 * engine). The same write again (task, attempt, kind, version) finds its
 * record and changes nothing. Refused: RD_ENOTFOUND (no task), RD_EFENCED
 * (attempt 0 or above the task's: not a conflict), RD_ECONFLICT (the
 * attempt may still write: not a conflict either).
 */
struct rd_cmd_conflict {
    struct rd_str id; /* UUID chosen by the leader */
    struct rd_str task_id;
    uint32_t attempt;        /* the writer's (stale) attempt */
    uint8_t kind;            /* enum rd_conflict_kind */
    uint64_t version;        /* CHECKPOINT: its version; else 0 */
    uint64_t checksum;       /* CHECKPOINT: FNV-1a of data_json, computed by the leader */
    struct rd_str data_json; /* the checkpoint data, the result, or the error text */
    struct rd_str node_id;   /* the writer, as it named itself ("" when it did not) */
    uint8_t resolution;      /* enum rd_conflict_res */
    uint8_t resolved_by;     /* enum rd_conflict_by */
    struct rd_str reason;    /* why (the policy's hook, or the fallback and its error) */
    uint8_t keep;            /* CHECKPOINT adopted: versions kept (the leader's config) */
};

struct rd_cmd_replica_info {
    uint64_t id;           /* raft server id */
    struct rd_str api_url; /* http(s)://HOST:PORT; "" forgets the replica */
};

/* Backups (issue 11). A backup's record lives in the state machine, so every
 * replica and every new leader knows the history. */
enum rd_backup_op {
    RD_BACKUP_OP_BEGIN = 0, /* the leader starts backup `id` on `target` (status running) */
    RD_BACKUP_OP_COMPLETE,  /* stored: index, term, size, checksum, digest (completed) */
    RD_BACKUP_OP_FAIL,      /* gave up: error (failed) */
    RD_BACKUP_OP_VERIFY,    /* read back from its target: ok, error (verified_at) */
    RD_BACKUP_OP_REMOVE,    /* retention deleted it from its target (the record goes) */
    RD_BACKUP_OP_COUNT
};

enum rd_backup_status {
    RD_BACKUP_RUNNING = 0,
    RD_BACKUP_COMPLETED,
    RD_BACKUP_FAILED,
    RD_BACKUP_STATUS_COUNT
};
const char *rd_backup_status_name(int s);

struct rd_cmd_backup {
    uint8_t op;           /* enum rd_backup_op */
    struct rd_str id;     /* UUID chosen by the leader */
    struct rd_str target; /* BEGIN: the backup plugin instance's name */
    uint64_t index;       /* COMPLETE: the raft index the image was taken at */
    uint64_t term;        /* COMPLETE: the term of that index */
    uint64_t size;        /* COMPLETE: compressed bytes of the image */
    uint64_t checksum;    /* COMPLETE: FNV-1a 64 of the compressed bytes */
    uint64_t digest;      /* COMPLETE: the state digest (rd_fsm_digest) of the image */
    uint8_t ok;           /* VERIFY: 1 = the read-back matched the manifest */
    struct rd_str error;  /* FAIL, VERIFY: why ("" when none) */
};

/* Continuous archiving: the archive target holds every applied command up to
 * `index` (objects named in docs/backup.md); the next leader resumes after it. */
struct rd_cmd_archive {
    struct rd_str target; /* the backup plugin instance's name */
    uint64_t index;       /* archived through this raft index */
    struct rd_str object; /* the last object written ("" when none) */
};

/* The export of records to PostgreSQL (export.h): on, and where it stands.
 * Proposed by the leader when it starts leading (on or off, as its config
 * says) and after each transaction PostgreSQL committed. */
struct rd_cmd_records_export {
    uint8_t enabled;       /* 1: records wait for export before they are pruned */
    uint64_t index;        /* PostgreSQL holds every record changed up to here */
    uint64_t max_retained; /* the hard bound per kind (0: the default) */
};

/* A consistency check: applying it, every replica computes its state digest
 * at this very index (DESIGN.md decision 9) and keeps it locally. */
struct rd_cmd_check {
    struct rd_str id; /* UUID chosen by the leader */
};

/* The leader's verdict once the replicas reported (or did not in time). */
struct rd_cmd_check_result {
    struct rd_str id;
    uint8_t status;              /* enum rd_check_status */
    struct rd_str digests_json;  /* {"<replica id>": "<16 hex digits>" | null (no answer)} */
    struct rd_str diverged_json; /* [replica ids that differ from the majority] */
};

enum rd_check_status {
    RD_CHECK_PENDING = 0, /* committed, digests not in yet */
    RD_CHECK_CONSISTENT,  /* every replica that answered agrees */
    RD_CHECK_MISMATCH,    /* some replica differs (diverged lists them) */
    RD_CHECK_INCOMPLETE,  /* too few answers to tell (no majority digest) */
    RD_CHECK_STATUS_COUNT
};
const char *rd_check_status_name(int s);

struct rd_cmd_cluster_id {
    struct rd_str id; /* UUID chosen by the first leader that finds none */
};

/*
 * The repair of a task whose newest checkpoint failed its checksum on the
 * leader (DESIGN.md decision 9). Applied alike on every replica: apply looks
 * at versions only, never at checksums, which may differ between replicas
 * when one copy is damaged. Refused (RD_ECONFLICT) unless `bad_version` is
 * still the task's newest version: a checkpoint written since, or a repair
 * committed before, wins.
 * - from_backup 0: `version` is an older version the task holds (RD_ENOTFOUND
 *   when it is gone); every version above it goes.
 * - from_backup 1: every version the task holds goes (none verified on the
 *   leader) and `version` comes back as a backup held it: at, checksum, data.
 * With a `fault_id`, the same step resolves that open data_corruption fault,
 * its resolution naming the source.
 */
struct rd_cmd_checkpoint_restore {
    struct rd_str task_id;
    uint64_t bad_version; /* the newest version, whose checksum failed */
    uint64_t version;     /* the newest version after the repair: <= bad_version */
    uint8_t from_backup;  /* 0: a held version; 1: at, checksum and data below */
    int64_t at;           /* from_backup: when the version was written (leader time) */
    uint64_t checksum;    /* from_backup: FNV-1a of data_json (decode checks it) */
    struct rd_str data_json;
    struct rd_str source;   /* "version 4" or "backup <id>", for the record */
    struct rd_str fault_id; /* the fault this repair resolves, "" for none */
};

/*
 * Who asked for a command and why (issue 12: the audit trail). Carried by
 * the command that makes the change (format 2), so the change and its record
 * commit together in one apply; alone in RD_CMD_AUDIT. The record's outcome
 * is the apply's: `status` when the command applied (or, for RD_CMD_AUDIT,
 * always), else the refusal's status and code (rd_audit_outcome).
 */
struct rd_cmd_audit {
    uint8_t present;          /* 0: no audit part (format 1) */
    struct rd_str principal;  /* token id, certificate subject, "anonymous", "recoveryd" */
    uint8_t role;             /* enum rd_role (http/principal.h) */
    struct rd_str source;     /* client "ip:port", "" for the engine */
    struct rd_str method;     /* HTTP method, "" for the engine */
    struct rd_str action;     /* the route's name, or the engine's action */
    struct rd_str target;     /* node, task, replica or backup id ("" when none) */
    uint16_t status;          /* HTTP status on success (RD_CMD_AUDIT: the outcome) */
    struct rd_str error;      /* error code ("" when none) */
    struct rd_str request_id; /* X-Request-Id */
    struct rd_str cause;      /* the engine's: the fault or run that caused it */
    uint32_t keep;            /* retention the leader stamps: records kept (0: default) */
    uint32_t max_age_s;       /* and their age (0: default) */
};

/* Limits on the audit part's strings (decode refuses longer). */
#define RD_AUDIT_PRINCIPAL_MAX 95
#define RD_AUDIT_SOURCE_MAX    63
#define RD_AUDIT_METHOD_MAX    15
#define RD_AUDIT_ACTION_MAX    63
#define RD_AUDIT_TARGET_MAX    255
#define RD_AUDIT_ERROR_MAX     63
#define RD_AUDIT_REQID_MAX     47
#define RD_AUDIT_CAUSE_MAX     64

struct rd_cmd {
    uint8_t type;
    int64_t time_ms;
    struct rd_cmd_audit audit;
    union {
        struct rd_cmd_register reg;
        struct rd_cmd_transition trans;
        struct rd_cmd_fault_open fopen;
        struct rd_cmd_fault_resolve fresolve;
        struct rd_cmd_task_submit tsubmit;
        struct rd_cmd_task_assign tassign;
        struct rd_cmd_task_checkpoint tckpt;
        struct rd_cmd_task_finish tfinish;
        struct rd_cmd_recovery_open ropen;
        struct rd_cmd_recovery_close rclose;
        struct rd_cmd_replica_info rinfo;
        struct rd_cmd_backup backup;
        struct rd_cmd_archive archive;
        struct rd_cmd_check check;
        struct rd_cmd_check_result cresult;
        struct rd_cmd_cluster_id cid;
        struct rd_cmd_checkpoint_restore crestore;
        struct rd_cmd_records_export rexport;
        struct rd_cmd_task_lifecycle tlife;
        struct rd_cmd_conflict conflict;
    } u;
};

/* A cluster-wide fault_open: no node, no transition (strings borrowed). */
static inline struct rd_cmd rd_cmd_cluster_fault(int64_t time_ms, const char *id, int type,
                                                 int severity, const char *metadata_json,
                                                 const char *recovery_action_json)
{
    struct rd_cmd c = {.type = RD_CMD_FAULT_OPEN, .time_ms = time_ms};
    c.u.fopen.id = RD_STR(id);
    c.u.fopen.node_id = RD_STR("");
    c.u.fopen.fault_type = (uint8_t)type;
    c.u.fopen.severity = (uint8_t)severity;
    c.u.fopen.metadata_json = RD_STR(metadata_json);
    c.u.fopen.recovery_action_json = RD_STR(recovery_action_json);
    c.u.fopen.set_state = RD_STATE_ANY;
    c.u.fopen.from_state = RD_STATE_ANY;
    return c;
}

/* An engine-initiated action's audit part on `c` (strings borrowed):
 * principal "recoveryd", the action, its target and its cause. */
static inline void rd_cmd_audit_engine(struct rd_cmd *c, const char *action, const char *target,
                                       const char *cause)
{
    c->audit = (struct rd_cmd_audit){.present = 1,
                                     .principal = RD_STR("recoveryd"),
                                     .source = RD_STR(""),
                                     .method = RD_STR(""),
                                     .action = RD_STR(action),
                                     .target = RD_STR(target ? target : ""),
                                     .status = 200,
                                     .error = RD_STR(""),
                                     .request_id = RD_STR(""),
                                     .cause = RD_STR(cause ? cause : "")};
}

/*
 * Encodes `cmd` into `w` (initialised by the caller). Returns 0 or the
 * writer's error; on error the caller frees `w`.
 */
int rd_cmd_encode(const struct rd_cmd *cmd, struct rd_wbuf *w);

/*
 * Decodes `len` bytes at `p` into `cmd`; its strings point into `p`, which
 * must outlive `cmd`. Returns 0, RD_EPARSE (truncated or bad field) or
 * RD_EUNSUPPORTED (unknown format or type).
 */
int rd_cmd_decode(const void *p, size_t len, struct rd_cmd *cmd);

const char *rd_cmd_type_name(int type);

/*
 * Whether a command of `type` may share a raft entry with others: the
 * commands whose effects (observers, events, archive) are the same at any
 * position in an entry (what a command says beyond its records reaches the
 * events through the per-command observer, fsm.h on_command). The others
 * keep an entry each: what images the state at its index (consistency
 * checks and their verdicts, backups) or marks a position in the log
 * (archive and export marks, the cluster id), a conflict's resolution, an
 * operator's task life cycle and checkpoint restore.
 */
bool rd_cmd_batchable(uint8_t type);

/* True when the `len` bytes at `p` start a batch (format 3). */
bool rd_cmd_is_batch(const void *p, size_t len);

/*
 * Writing a batch: rd_cmd_batch_begin with the number of commands that
 * follow and the newest stamp among them, then rd_cmd_batch_add once per
 * command (its encoded bytes, rd_cmd_encode's output). Errors land in w->err.
 */
void rd_cmd_batch_begin(struct rd_wbuf *w, uint32_t count, int64_t time_ms);
void rd_cmd_batch_add(struct rd_wbuf *w, const void *cmd, size_t len);

/*
 * Or in place, each command encoded once, straight into the entry (group
 * commit): rd_cmd_batch_append per command into an empty or appended-to
 * writer (the first leaves room for the header), then rd_cmd_batch_seal
 * with the count and the newest stamp: the batch, or for one command that
 * command alone (format 1 or 2, as if never batched). Append returns 0 or
 * the error, and then leaves `w` as it was; seal's errors land in w->err.
 */
int rd_cmd_batch_append(struct rd_wbuf *w, const struct rd_cmd *cmd);
void rd_cmd_batch_seal(struct rd_wbuf *w, uint32_t count, int64_t time_ms);

/* Reading one: rd_cmd_batch_open (0, RD_EPARSE, RD_EUNSUPPORTED: not a
 * batch, or more than RD_CMD_BATCH_MAX commands), then rd_cmd_batch_next
 * until it returns 0 (the end) or RD_EPARSE (cut short: the commands read so
 * far stand). The bytes point into the batch. */
struct rd_cmd_batch {
    struct rd_rbuf r;
    uint32_t count;
    uint32_t next; /* commands read so far */
    int64_t time_ms;
};
int rd_cmd_batch_open(struct rd_cmd_batch *b, const void *p, size_t len);
/* 1 with the next command in *cmd / *len, 0 at the end, RD_EPARSE. */
int rd_cmd_batch_next(struct rd_cmd_batch *b, const uint8_t **cmd, size_t *len);

#endif
