/*
 * The replica: libraft 0.22 on the engine's libuv loop (uv I/O backend, TCP
 * transport) driving the state machine. The single-node default is a cluster
 * of one voter: the same code path as 3 or 5 replicas. Loop-thread only.
 */
#ifndef RD_REPLICA_H
#define RD_REPLICA_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <uv.h>

#include "common/busy.h"
#include "config/config.h"
#include "fsm/fsm.h"
#include "metrics/metrics.h"
#include "replica/damage.h"
#include "replica/gate.h"
#include "replica/snapshot.h"

/*
 * Called once a submitted command was applied (status 0, `value` is the
 * command's answer: see rd_fsm_result) or refused by the machine (status is
 * the refusal, e.g. RD_EFENCED), or its outcome is unknown
 * (RD_EOUTCOME_UNKNOWN: leadership was lost, or raft stopped, with the entry
 * in the log; another leader may still commit it), or it was not written
 * (RD_EIO, RD_ENOSPACE: a failed append is never sent). RD_ENOTLEADER and
 * RD_ESHUTDOWN only come from the call itself: nothing was proposed.
 */
typedef void (*rd_submit_cb)(void *data, int status, uint64_t value);

struct rd_timed_io;  /* replica.c: a timed append or snapshot_put */
struct rd_group_cmd; /* replica.c: a command waiting for the next entry */
struct rd_submit;    /* replica.c: an entry proposed, and its writes */

struct rd_replica {
    uv_loop_t *loop;
    const struct rd_config *cfg;
    struct rd_fsm *fsm;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct rd_snapshotter snap; /* raft's snapshots imaged off the loop (snapshot.h) */
    uv_timer_t watch;           /* polls role and term: libraft has no leadership callback */
    char raft_dir[512];
    char lock_path[512]; /* <data_dir>/recoveryd.lock, held from rd_replica_lock() on */
    int lock_fd;         /* its descriptor while held (locked) */
    bool locked;
    bool transport_inited;         /* raft_uv_tcp_init succeeded: raft_uv_tcp_close is needed */
    bool tls;                      /* the transport is mutual TLS (tls.h), not libraft's TCP */
    bool listening;                /* the transport listens on cluster.raft_address */
    raft_uv_accept_cb raft_accept; /* libraft's accept callback, once raft started */
    bool inited;                   /* raft_init succeeded: raft_close is needed */
    bool started;
    bool closing;
    int last_state; /* last observed enum raft_state */
    /*
     * What operators watch (docs/operations.md, "Metrics"): kept across a
     * rejoin's reset, so counters only grow. libraft's append and
     * snapshot_put are wrapped (io_append: the uv backend's own;
     * io_snapshot_put: the snapshotter's, which holds a put until its
     * child's image is in) to time each from the call to its callback, on
     * the loop: an append's time includes its fsync.
     */
    struct {
        uint64_t leader_changes_total; /* a leader seen after none or another */
        uint64_t leader_last;          /* the leader at the last watch tick, 0 none */
        struct rd_hist append_latency; /* entries persisted (fsync included) */
        struct rd_hist loop_lag;       /* how late the 10-ms watch timer ran */
        uint64_t watch_due_ns;         /* when the next watch tick is due, 0 before the first */
        uint64_t append_errors_total;
        struct rd_hist snapshot_latency; /* snapshots persisted (taken or installed) */
        uint64_t snapshot_size_bytes;    /* of the last one persisted */
        uint64_t snapshots_total;
        uint64_t log_size_bytes; /* files in <data_dir>/raft, measured off the loop */
        bool log_size_known;
        bool log_size_busy;
        unsigned log_size_ticks;
    } ops;
    int (*io_append)(struct raft_io *io, struct raft_io_append *req,
                     const struct raft_entry entries[], unsigned n, raft_io_append_cb cb);
    int (*io_snapshot_put)(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                           const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb);
    /* The uv backend's own term and vote writes (replica.c stops the
     * replica when one fails). */
    int (*io_set_term)(struct raft_io *io, raft_term term);
    int (*io_set_vote)(struct raft_io *io, raft_id server_id);
    struct rd_timed_io *io_orphans; /* ours, of requests the backend refused (replica.c) */
    /* Appends the backend has taken and not answered, newest first from
     * `appends`, oldest at `appends_oldest`: its age tells a stalled disk
     * (replica.c). */
    struct rd_timed_io *appends;
    struct rd_timed_io *appends_oldest;
    unsigned n_appends;
    uint64_t appends_done_ns; /* the last append that completed (rd_mono_ns) */
    /*
     * Group commit (docs/architecture.md, "The write path"): commands
     * proposed during one turn of the loop wait in `q` (encoded into `buf`, the
     * batch entry to be: no copy at the flush) and go to
     * raft together at its check phase, as one batch entry (cmd.h, format
     * 3) when more than one is waiting; `idle` keeps the loop from blocking
     * while any wait. While raft has two entries of ours in flight, what
     * arrives waits for one of them to be answered and joins the next. Batches in flight are listed
     * (oldest first) so that apply can hand each write its own result (fsm.h, on_item).
     */
    struct {
        struct rd_group_cmd *q; /* RD_CMD_BATCH_MAX slots, from the start */
        unsigned n;
        struct rd_wbuf buf; /* the batch: header room, then (u32 length, command) each */
        uv_check_t check;
        uv_idle_t idle;
        uv_timer_t delay_timer;    /* the delay's end, while writes wait for it */
        uint64_t delay_ns;         /* cluster.group_commit_delay */
        uint64_t last_flush_ns;    /* when the last entry went to raft */
        struct rd_busy busy;       /* whether the loop is saturated */
        bool waited;               /* the commands waiting waited for the delay */
        unsigned waited_n;         /* ... and were this many when they began to */
        unsigned futile;           /* waits in a row that no write joined */
        uint64_t no_wait_until_ns; /* after a wait nobody joined: no wait until then */
        uint64_t delayed_total;    /* entries that waited for the delay */
        bool on;                   /* the handles were initialised (raft started) */
        struct rd_submit *batches, *batches_tail, *hit;
        unsigned entries_inflight; /* proposed, not yet answered */
        uint64_t entries_total;    /* raft entries proposed with commands */
        uint64_t commands_total;   /* commands in them */
    } group;
    uint64_t inflight;
    uint64_t commits_total;
    uint64_t commit_errors_total;
    struct rd_hist commit_latency;
    /*
     * The audit part of the API request being handled (issue 12), set by the
     * API around a handler's synchronous run: the first command proposed
     * while it is set carries this one (in place of an engine's part: the
     * request caused it; the change commits with its record), and
     * *audit_ambient_used becomes true. NULL outside handlers.
     */
    const struct rd_cmd_audit *audit_ambient;
    bool *audit_ambient_used;
    const char *audit_ambient_target; /* read at the proposal: what the handler named by then */
    /* Told when this replica becomes or stops being the leader. */
    void (*on_role)(void *data, bool leader);
    void *on_role_data; /* also on_leader's */
    /* Told when this replica sees a leader after none, or another one. */
    void (*on_leader)(void *data, uint64_t leader_id, uint64_t term);
    uint64_t leader_seen_ns; /* last watch tick that knew a leader */
    /* Read barriers: callers waiting for the one in flight's successor,
     * and the batch the barrier in flight answers. */
    struct rd_read_wait *reads_next, *reads_inflight;
    bool barrier_busy;
    struct raft_barrier barrier;
    /* A new leader's state is current once a barrier of its term was
     * applied (gate.h); requests wait for it in `gate_waiting`. */
    struct rd_leader_gate gate;
    struct rd_read_wait *gate_waiting;
    void (*close_cb)(void *data);
    void *close_data;
    char errmsg[3072];
    /*
     * Damage on disk (damage.h), decided by rd_replica_check_disk() before
     * raft reads anything, and the acknowledged mark kept from then on.
     */
    bool rejoin;               /* start empty, without bootstrap: rejoining from the peers */
    struct rd_mark mark_start; /* the mark found at start (its members: whom to ask) */
    bool has_mark_start;
    uint64_t expect_last;     /* raft must load at least up to this entry (the scan's end) */
    unsigned corrupt_before;  /* corrupt-* files before raft loaded the directory */
    char damaged_dir[512];    /* where damaged files went at this start ("" when none) */
    char damage_report[2048]; /* what the start found damaged ("" when nothing) */
    struct {
        uv_timer_t timer;
        uv_work_t work;
        bool on;    /* the timer runs (raft started) */
        bool busy;  /* a write is in the thread pool */
        bool final; /* the write in flight is the clean-shutdown one */
        bool final_wanted;
        struct rd_mark pending, written;
        struct rd_mark_files files; /* opened by the first write (thread pool) */
        uint64_t seq;               /* of the last write */
        int rv;
        char why[256];
        uint64_t writes_total, failures_total;
    } mark;
    /*
     * Storage faults: libraft could not persist (an append failed with
     * descriptors exhausted, a full disk, an I/O error). Submissions are
     * refused with `code` until `retry_at_ns`, then let through again; the
     * first commit after that clears the fault. A leader with other voters
     * hands its leadership over meanwhile.
     */
    struct {
        int code;             /* RD_EIO, RD_ENOSPACE, RD_ENOMEM; 0 = none */
        char cause[384];      /* libraft's message, e.g. "append 1 entries: ..." */
        uint64_t since_ns;    /* first failure of this fault */
        uint64_t retry_at_ns; /* refuse until then */
        unsigned backoff_ms;  /* doubles per failure, 100 ms .. 1 s */
        uint64_t faults_total;
        bool transferring;
        bool handed_over; /* a handover was tried for this fault */
        bool stalled;     /* the fault is an append the disk has not finished (replica.c) */
        bool withheld;    /* a handover was held back: the other voters' disks stall too */
        uint64_t withheld_total;
        struct raft_transfer transfer;
    } storage;
};

/*
 * Starting is three steps, so that what can be refused is refused before
 * raft reads or writes anything and before this replica can campaign:
 *
 * rd_replica_lock() takes storage.data_dir for this process: it creates the
 * directory and holds an exclusive flock(2) on <data_dir>/recoveryd.lock
 * (which names the holder's pid) until the process exits. A second recoveryd
 * on the same directory (two `make run`) stops here. 0, or RD_EBUSY (another
 * process holds it) or RD_EIO, with r->errmsg set.
 */
int rd_replica_lock(struct rd_replica *r, const struct rd_config *cfg);

/*
 * After rd_replica_lock(), before raft reads anything: scans
 * <data_dir>/raft and compares it with the acknowledged mark (damage.h).
 * Nothing damaged: 0 (a torn final write outside the mark, or damage the
 * snapshot covers, is handled and logged as a warning). Damaged:
 * - storage.accept_data_loss (--accept-data-loss): the files are copied to
 *   <data_dir>/damaged-<UTC time>/raft, the log is cut where it stops being
 *   loadable, an error line says what was lost; 0;
 * - a replica with peers (cluster.peers, or members in the mark): the raft
 *   directory and the mark move to <data_dir>/damaged-<UTC time>/, a rejoin
 *   note is written, r->rejoin is set: the caller starts raft only once the
 *   leader demoted this replica (rd_cluster_rejoin); 0;
 * - a single replica: RD_ECORRUPT, nothing changed, r->errmsg names the
 *   file, what is lost and the restore command.
 * A rejoin note left by an interrupted rejoin sets r->rejoin too.
 */
int rd_replica_check_disk(struct rd_replica *r, const struct rd_config *cfg);

/*
 * A rejoin while running (the engine's rd_engine_rejoin), once raft closed
 * (rd_replica_close completed): moves <data_dir>/raft and the mark into
 * <data_dir>/damaged-<UTC time>/ and notes it in the rejoin note. 0, or
 * RD_EBUSY (raft still runs) / RD_EIO with r->errmsg.
 */
int rd_replica_set_aside(struct rd_replica *r);

/*
 * After rd_replica_close completed: back to the state rd_replica_lock()
 * left (the lock, the role callback and the start's mark are kept), ready
 * for rd_replica_listen() and rd_replica_start() again.
 */
void rd_replica_reset(struct rd_replica *r);

/*
 * Binds cluster.raft_address and listens on it with libraft's TCP
 * transport; connections are handed to raft once it started. 0, or RD_EIO
 * with r->errmsg set ("raft address 127.0.0.1:7080 is already in use ...").
 * `cfg` must outlive the replica.
 */
int rd_replica_listen(struct rd_replica *r, uv_loop_t *loop, const struct rd_config *cfg);

/*
 * After rd_replica_listen(): prepares <storage.data_dir>/raft, the I/O
 * backend and the raft instance, bootstraps the initial configuration on a
 * fresh directory and starts raft. `fsm` must outlive the replica. Returns 0
 * or an RD_E* code with r->errmsg set. After any step failed, the caller
 * still calls rd_replica_close() and runs the loop until it is done.
 */
int rd_replica_start(struct rd_replica *r, struct rd_fsm *fsm);

/*
 * The one way into the log: stamps `cmd` (when its time_ms is 0) with
 * rd_fsm_stamp(), encodes it and proposes it. On 0 `cb` fires exactly once,
 * later, with the machine's answer (rd_fsm_result) or the raft error; on an
 * error (RD_ENOTLEADER, RD_ESHUTDOWN, a storage fault, RD_ENOMEM) `cb` will
 * not fire. `cmd` and its strings are only read during the call.
 * Commands proposed in one turn of the loop share a raft entry (group
 * commit, cmd.h rd_cmd_batchable) and keep their order; each hears its own
 * result. One that was waiting when raft refused the entry (leadership lost
 * within the turn) hears RD_ENOTLEADER or RD_ESHUTDOWN through `cb`:
 * nothing was proposed.
 */
int rd_replica_propose(struct rd_replica *r, const struct rd_cmd *cmd, rd_submit_cb cb, void *data);

/*
 * Where a module's decisions go and whether it may decide: the replica for
 * the engine, a fake in unit tests (raft's io interface, in small).
 * `propose` has rd_replica_propose's contract.
 */
struct rd_proposer {
    void *data;
    bool (*is_leader)(void *data);
    int (*propose)(void *data, const struct rd_cmd *cmd, rd_submit_cb cb, void *cb_data);
};

/* The replica as a proposer. */
struct rd_proposer rd_replica_proposer(struct rd_replica *r);

/*
 * The storage fault in force (0 when writes go through): its RD_E* code, and
 * the cause and the ms until the next try in `cause` / `retry_ms`.
 */
int rd_replica_storage_fault(struct rd_replica *r, const char **cause, uint64_t *retry_ms);

/* Log appends the backend has taken and not finished, and in `*oldest_ms`
 * (when not NULL) how long the oldest has waited (0 when none). */
unsigned rd_replica_appends_waiting(const struct rd_replica *r, uint64_t *oldest_ms);

bool rd_replica_is_leader(struct rd_replica *r);
/* Leader's id and raft address (0 / NULL when unknown). */
void rd_replica_leader(struct rd_replica *r, uint64_t *id, const char **address);
uint64_t rd_replica_applied_index(struct rd_replica *r);
uint64_t rd_replica_commit_index(struct rd_replica *r);
uint64_t rd_replica_term(struct rd_replica *r);
const char *rd_replica_role_name(struct rd_replica *r);

/*
 * Hands leadership to voter `to`, or to the most up-to-date voter when `to`
 * is 0 (leader with other voters only), logging `why`. Until it is done
 * (or, when `to` does not catch up, given up after an election timeout),
 * raft refuses every proposal. 0, RD_ENOTLEADER, RD_EINVAL (`to` is not
 * another voter), RD_ECONFLICT (no other voter, or a handover already
 * running).
 */
int rd_replica_hand_over(struct rd_replica *r, uint64_t to, const char *why);

/* Membership (leader only): add (as spare, then `role`), assign a role
 * (RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE), remove. `cb` fires once the new
 * configuration committed (or with the error). 0 or RD_E* (cb not called). */
int rd_replica_add(struct rd_replica *r, uint64_t id, const char *address, int role,
                   rd_submit_cb cb, void *data);
int rd_replica_assign(struct rd_replica *r, uint64_t id, int role, rd_submit_cb cb, void *data);
int rd_replica_remove(struct rd_replica *r, uint64_t id, rd_submit_cb cb, void *data);
/* The configuration in force (raft's own; read-only). */
const struct raft_configuration *rd_replica_configuration(struct rd_replica *r);
/* Voters in the configuration. */
unsigned rd_replica_voters(struct rd_replica *r);

/*
 * Linearizable reads: `cb` fires once a barrier appended after this call
 * committed on this leader, so every write acknowledged before the call is
 * applied and no other leader can have committed since. Concurrent callers
 * share a barrier (never one started before they called). 0 or RD_E*.
 */
int rd_replica_read_barrier(struct rd_replica *r, rd_submit_cb cb, void *data);

/*
 * True when this replica leads and its state is current: it has applied an
 * entry of its own term (gate.h), so everything any leader acknowledged is
 * in its state machine. Handlers that answer from local state (404, 409
 * fenced) before proposing wait for it.
 */
bool rd_replica_current(struct rd_replica *r);
/*
 * Calls `cb` once this replica's state is current (status 0), or once it
 * stopped leading first (RD_ENOTLEADER: nothing was proposed) or stops
 * (RD_ESHUTDOWN). 0 (`cb` will be called, never before this returns), or an
 * error (RD_ENOTLEADER, RD_ESHUTDOWN, a storage fault, RD_ENOMEM) and `cb`
 * will not be called.
 */
int rd_replica_await_current(struct rd_replica *r, rd_submit_cb cb, void *data);

/* Whether a leader is known here now. */
bool rd_replica_has_leader(struct rd_replica *r);

/* Monotonic ns since a leader was last known here (0 while one is). */
uint64_t rd_replica_leaderless_ns(struct rd_replica *r);

/*
 * Closes raft and its I/O; pending submissions fire with RD_EOUTCOME_UNKNOWN
 * (read barriers with RD_ESHUTDOWN).
 * `cb` runs once everything was released.
 */
void rd_replica_close(struct rd_replica *r, void (*cb)(void *data), void *data);

#endif
