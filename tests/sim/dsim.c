/*
 * Deterministic simulation (issue 16): three replicas of the state machine
 * on libraft's in-memory fixture (raft/fixture.h), each with the engine's
 * leader modules (registry, analysis, scheduler, the shipped policies) wired
 * as engine/core does, simulated agents (register, heartbeat, checkpoint,
 * complete, crash, pause, come back) and random faults drawn from one seed.
 * Every clock the engine reads is the fixture's (the link wraps rd_mono_ns,
 * rd_now_ms and rd_uuid_v4, tests/CMakeLists.txt), so a seed replays
 * exactly. docs/testing.md says what runs and what is next.
 *
 * After every step the invariants of the chaos checker are checked:
 *   I1 no acknowledged checkpoint is lost (on any replica that applied it);
 *   I2 a task's newest checkpoint version never goes backwards (per replica);
 *   I3 no task is completed by two attempts;
 *   I4 no write is accepted from an attempt after a newer one existed;
 *   I5 at most one leader per term;
 *   I6 once faults stop, every task ends (completed, or failed by the
 *      engine's own rules) within a bounded simulated time, and the
 *      replicas converge to one digest;
 *   I7 a replica's commit index never goes down (libraft's, below the
 *      engine: DSIM_REORDER=1 reaches the case patch 0006 fixes);
 *   I8 every replica applies the same command at each index.
 * A failing seed prints the seed, the violation and the trace of what led
 * to it (the task's events and the last steps), and exits 1.
 *
 *   dsim [SEED] [COUNT]     run COUNT seeds from SEED (env SEED, SEEDS too)
 *   DSIM_VERBOSE=1 dsim S 1 print the whole trace of seed S
 *   DSIM_LIST, DSIM_RAFT, DSIM_POLICY=0, DSIM_REORDER: docs/testing.md
 */
#include <inttypes.h>
#include <raft.h>
#include <raft/fixture.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/util.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "fsm/fsm.h"
#include "plugin/host.h"
#include "policy/policy.h"
#include "recover/sched.h"
#include "registry/registry.h"

#define N_REPLICAS     3
#define N_AGENTS       10
#define N_TASKS        16
#define AGENT_SLOTS    2
#define TICK_MS        10
#define MAX_DEAD       2     /* agents that may crash for good */
#define PASS_MS        100   /* the analysis's and the scheduler's timers */
#define FAULT_MS       40000 /* faults are drawn until then */
#define SETTLE_MS      90000 /* then every task must end within this */
#define TRACE_KEEP     4096
#define MAX_HELD       8
#define MAX_VERSION    16 /* versions a task writes, at most (3 + up to 4 steps, then the end) */
#define WALL_EPOCH_MS  1767225600000LL /* 2026-01-01T00:00:00Z */
#define MONO_OFFSET_NS 1000000000ULL

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : dflt;
}

/* ---- the seeded random source -------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned rng_below(unsigned n)
{
    return n ? (unsigned)(rng_next() % n) : 0;
}

/* True with probability `per_mille`/1000. */
static bool rng_chance(unsigned per_mille)
{
    return rng_below(1000) < per_mille;
}

/* ---- the world ----------------------------------------------------------- */

#define MAX_INDEX 16384 /* I8 checks indexes below this (runs stay far under) */

struct engine { /* one replica's leader modules, wired as engine/core does */
    unsigned i;
    uv_loop_t loop; /* never run but to close the analysis's timer (never fired) */
    struct rd_fsm fsm;
    struct rd_registry registry;
    struct rd_analysis analysis;
    struct rd_plugin_host alerts; /* zeroed: no alert instance */
    struct rd_sched sched;
    bool leader;
    bool shutting_down;
    uint64_t leader_since_ns;
    /* The simulated heartbeat detector's last verdict per node index. */
    int8_t hb_verdict[N_AGENTS];
    uint64_t hb_epoch[N_AGENTS];
};

struct held {
    int task;         /* index into w.task_ids */
    uint32_t attempt; /* the attempt it was handed over with */
    uint64_t version; /* the next checkpoint version to write */
    bool busy;        /* a write of it is in flight */
};

enum agent_state { AG_UP = 0, AG_DOWN, AG_PAUSED };

struct agent {
    char id[16];
    enum agent_state state;
    uint64_t incarnation; /* bumped at each crash: late answers to the old one are ignored */
    uint64_t epoch;       /* 0 while not registered */
    bool registering;
    bool cut;    /* its link to the engine drops everything */
    bool hb_cut; /* only its heartbeats are lost: it works on, a zombie once its tasks move */
    uint64_t until_ms;
    uint64_t next_hb_ms;
    uint64_t next_work_ms;
    struct held held[MAX_HELD];
    unsigned n_held;
};

/* A replica's disk as libraft's libuv backend (with patch 0010) and the
 * engine present it to raft (DSIM_IO_FAULTS=1), by the simulation's own
 * wrappers of the fixture's raft_io methods. Not the fixture's io_fault: it
 * fails an append after it was queued, which the real backend never reports
 * (a failed write is retried), and the term and vote writes, after whose
 * failure the engine stops the replica (metadata_failed_stop), which the
 * fixture cannot restart (docs/libraft.md, docs/testing.md). */
struct disk {
    int (*append)(struct raft_io *, struct raft_io_append *, const struct raft_entry[], unsigned,
                  raft_io_append_cb);
    int (*snapshot_put)(struct raft_io *, unsigned, struct raft_io_snapshot_put *,
                        const struct raft_snapshot *, raft_io_snapshot_put_cb);
    uint64_t fail_until; /* ms: every write fails until then */
    unsigned refuse;     /* appends to refuse at submission */
    uint64_t floor;      /* ms: the latest write queued completes then (one queue, in order) */
    uint64_t n_retried, n_refused; /* counted for the summary */
};

struct world {
    uint64_t seed;
    struct raft_fixture f;
    struct raft_configuration conf;
    struct rd_config cfg;
    struct engine eng[N_REPLICAS];
    struct agent ag[N_AGENTS];
    char task_ids[N_TASKS][40];
    unsigned steps[N_TASKS];              /* checkpoints each task needs before it completes */
    bool submitted[N_TASKS];              /* acknowledged */
    bool submitting[N_TASKS];             /* in flight */
    uint64_t acked_v[N_TASKS];            /* I1: the newest acknowledged version */
    uint64_t acked_at[N_TASKS];           /* the raft index it was applied at */
    uint64_t seen_v[N_REPLICAS][N_TASKS]; /* I2 */
    uint32_t completed_by[N_TASKS];       /* I3: the attempt whose completion was acked */
    /* What each replica applied, seen by the state machine's entry
     * observer: the raft index of each checkpoint version of a task (an
     * answer comes later than its apply, libraft queues them), the newest
     * attempt each task had, whether it completed. */
    uint64_t ckpt_index[N_REPLICAS][N_TASKS][MAX_VERSION];
    uint32_t max_attempt[N_REPLICAS][N_TASKS];
    bool done_on[N_REPLICAS][N_TASKS];
    uint64_t leader_of_term[256];     /* I5: server id + 1 by term (terms < 256) */
    uint64_t commit_seen[N_REPLICAS]; /* I7 */
    uint64_t entry_hash[MAX_INDEX];   /* I8: the command applied at each index (hash | 1) */
    unsigned entry_by[MAX_INDEX];     /* the replica that applied it first */
    bool killed[N_REPLICAS];
    bool cut[N_REPLICAS][N_REPLICAS];
    bool faults_on;
    struct rd_policy_host *policy; /* policies/ (the shipped Lua), or NULL: DSIM_POLICY=0 */
    unsigned snapshot_every;       /* DSIM_SNAPSHOT: raft's snapshot threshold, 0: its default */
    bool reorder;                  /* DSIM_REORDER: latency changes, so messages overtake others */
    bool io_faults;                /* DSIM_IO_FAULTS: failing disks (struct disk) */
    unsigned disk_ms[N_REPLICAS];  /* each replica's disk latency: only grows */
    struct disk disk[N_REPLICAS];
    struct raft_tracer tracer[N_REPLICAS]; /* DSIM_LIBRAFT: libraft's own diagnostics */
    bool closing;  /* raft is closing: nothing proposes (the replica's r->closing) */
    unsigned dead; /* agents crashed for good */
    uint64_t n_faults, n_leaderships, n_refused; /* counted for the summary */
    uint64_t uuid_counter;
    uint64_t hash; /* of the trace: a replay must give the same */
    char *trace[TRACE_KEEP];
    unsigned n_trace; /* lines written (the ring keeps the last TRACE_KEEP) */
    bool verbose;
    bool failed;
    char failure[512];
    int fail_task; /* the task the violation is about, or -1 */
};

static struct world *W; /* the one world of this run (the clock wrappers read it) */

static uint64_t now_ms(void)
{
    return (uint64_t)raft_fixture_time(&W->f);
}

/* ---- the engine's clocks and ids, from the simulation --------------------- */

uint64_t __wrap_rd_mono_ns(void);
int64_t __wrap_rd_now_ms(void);
int __wrap_rd_uuid_v4(char out[RD_UUID_STRLEN]);
uint64_t __real_rd_mono_ns(void);

uint64_t __wrap_rd_mono_ns(void)
{
    return W ? MONO_OFFSET_NS + now_ms() * 1000000ULL : __real_rd_mono_ns();
}

int64_t __wrap_rd_now_ms(void)
{
    return WALL_EPOCH_MS + (int64_t)(W ? now_ms() : 0);
}

int __wrap_rd_uuid_v4(char out[RD_UUID_STRLEN])
{
    uint64_t n = W ? ++W->uuid_counter : 0;
    snprintf(out, RD_UUID_STRLEN, "00000000-0000-4000-8000-%012" PRIx64,
             (uint64_t)(n & 0xffffffffffffULL));
    return 0;
}

/* ---- the trace ----------------------------------------------------------- */

__attribute__((format(printf, 1, 2))) static void trace(const char *fmt, ...)
{
    char line[400];
    int k = snprintf(line, sizeof line, "%7" PRIu64 " ", now_ms());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + k, sizeof line - (size_t)k, fmt, ap);
    va_end(ap);
    W->hash = rd_fnv1a(W->hash, line, strlen(line));
    if (strncmp(line + k, "FAULT ", 6) == 0 && strncmp(line + k, "FAULT heal", 10) != 0)
        W->n_faults++;
    unsigned slot = W->n_trace++ % TRACE_KEEP;
    free(W->trace[slot]);
    W->trace[slot] = strdup(line);
    if (W->verbose)
        printf("%s\n", line);
}

__attribute__((format(printf, 2, 3))) static void violation(int task, const char *fmt, ...)
{
    if (W->failed)
        return;
    W->failed = true;
    W->fail_task = task;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(W->failure, sizeof W->failure, fmt, ap);
    va_end(ap);
    trace("VIOLATION %s", W->failure);
}

static void print_failure(void)
{
    printf("dsim: seed %" PRIu64 " FAILED at %" PRIu64 " ms: %s\n", W->seed, now_ms(), W->failure);
    printf("replay: SEED=%" PRIu64 " SEEDS=1 DSIM_VERBOSE=1 <build>/bin/dsim\n", W->seed);
    unsigned first = W->n_trace > TRACE_KEEP ? W->n_trace - TRACE_KEEP : 0;
    const char *tid = W->fail_task >= 0 ? W->task_ids[W->fail_task] : NULL;
    if (tid != NULL) {
        printf("-- the events of task %s and every fault --\n", tid);
        for (unsigned k = first; k < W->n_trace; k++) {
            const char *l = W->trace[k % TRACE_KEEP];
            if (strstr(l, tid) || strstr(l, "FAULT") || strstr(l, "leader"))
                printf("%s\n", l);
        }
    }
    printf("-- the last steps --\n");
    unsigned from = W->n_trace > 40 ? W->n_trace - 40 : 0;
    if (from < first)
        from = first;
    for (unsigned k = from; k < W->n_trace; k++)
        printf("%s\n", W->trace[k % TRACE_KEEP]);
}

/* ---- the disk: a failing one, as the real backend and engine meet it ----- */

/* The engine's raft_uv_set_disk_retry (engine/replica/replica.c). */
#define DISK_RETRY_MS 250

static unsigned disk_index(struct raft_io *io)
{
    for (unsigned i = 0; i < N_REPLICAS; i++)
        if (raft_fixture_get(&W->f, i)->io == io)
            return i;
    abort();
}

/* When a write queued now completes: after the disk's latency, after every
 * write queued before it (the backend writes one queue in order; the fixture
 * completes each request after its own latency), and, on a failing disk,
 * only once a retry finds it working again. */
static unsigned disk_latency_now(unsigned i, bool retried)
{
    struct disk *d = &W->disk[i];
    uint64_t now = now_ms(), at = now;
    if (retried && now < d->fail_until)
        at = now + (d->fail_until - now + DISK_RETRY_MS - 1) / DISK_RETRY_MS * DISK_RETRY_MS;
    uint64_t done = at + W->disk_ms[i];
    if (done < d->floor)
        done = d->floor;
    d->floor = done;
    return (unsigned)(done - now);
}

/* A log append. Refused at submission (RAFT_IOERR: the backend could not
 * set up the segment's writer, descriptors exhausted), libraft drops the
 * entries and fails their requests (patch 0002). A write the disk fails is
 * retried every DISK_RETRY_MS by the backend (patch 0010) and completes
 * once the disk works: raft sees a slow write, never a failed one. */
static int disk_append(struct raft_io *io, struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    unsigned i = disk_index(io);
    struct disk *d = &W->disk[i];
    if (d->refuse > 0) {
        d->refuse--;
        d->n_refused++;
        trace("disk r%u refuses an append of %u entries", i, n);
        return RAFT_IOERR;
    }
    if (now_ms() < d->fail_until) {
        d->n_retried++;
        trace("disk r%u fails an append of %u entries: retried until %" PRIu64 " ms", i, n,
              d->fail_until);
    }
    raft_fixture_set_disk_latency(&W->f, i, disk_latency_now(i, true));
    int rv = d->append(io, req, entries, n, cb);
    raft_fixture_set_disk_latency(&W->f, i, W->disk_ms[i]);
    return rv;
}

/* A snapshot write (the replica's own, or an install) waits behind the
 * appends queued before it (the backend's barrier) and for a failing disk:
 * snapshot writes that fail are not simulated (the fixture has no such
 * failure), so the disk hangs for them instead. */
static int disk_snapshot_put(struct raft_io *io, unsigned trailing,
                             struct raft_io_snapshot_put *req, const struct raft_snapshot *snapshot,
                             raft_io_snapshot_put_cb cb)
{
    unsigned i = disk_index(io);
    raft_fixture_set_disk_latency(&W->f, i, disk_latency_now(i, true));
    int rv = W->disk[i].snapshot_put(io, trailing, req, snapshot, cb);
    raft_fixture_set_disk_latency(&W->f, i, W->disk_ms[i]);
    return rv;
}

static void disk_wrap(unsigned i)
{
    struct raft_io *io = raft_fixture_get(&W->f, i)->io;
    struct disk *d = &W->disk[i];
    d->append = io->append;
    d->snapshot_put = io->snapshot_put;
    io->append = disk_append;
    io->snapshot_put = disk_snapshot_put;
}

/* ---- proposals: the replica's way into the log, on the fixture ----------- */

struct submit {
    struct raft_apply req;
    struct engine *e;
    rd_submit_cb cb;
    void *data;
};

static bool alive(unsigned i)
{
    return !W->killed[i] && !W->closing;
}

static bool eng_is_leader(void *data)
{
    struct engine *e = data;
    return alive(e->i) && raft_state(raft_fixture_get(&W->f, e->i)) == RAFT_LEADER;
}

/* As engine/replica/replica.c's apply_cb: a raft error after the proposal
 * is an unknown outcome (another leader may still commit it). */
static void submit_done(struct raft_apply *req, int status, void *result)
{
    struct submit *s = req->data;
    int st = 0;
    uint64_t value = 0;
    if (status != 0)
        st = RD_EOUTCOME_UNKNOWN;
    else
        rd_fsm_unpack(result, &st, &value);
    s->cb(s->data, st, value);
    free(s);
}

static int eng_propose(void *data, const struct rd_cmd *cmd, rd_submit_cb cb, void *cb_data)
{
    struct engine *e = data;
    if (W->closing)
        return RD_ESHUTDOWN;
    if (!eng_is_leader(e))
        return RD_ENOTLEADER;
    struct rd_cmd c = *cmd;
    if (c.time_ms == 0)
        c.time_ms = rd_fsm_stamp(&e->fsm);
    struct rd_wbuf w;
    rd_w_init(&w);
    int rv = rd_cmd_encode(&c, &w);
    while (rv == 0 && w.len % 8)
        rd_w_u8(&w, 0);
    if (rv != 0 || w.err) {
        rd_w_free(&w);
        return rv ? rv : w.err;
    }
    struct submit *s = calloc(1, sizeof(*s));
    s->e = e;
    s->cb = cb;
    s->data = cb_data;
    s->req.data = s;
    struct raft_buffer buf = {.base = w.p, .len = w.len};
    rv = raft_apply(raft_fixture_get(&W->f, e->i), &s->req, &buf, 1, submit_done);
    if (rv != 0) {
        free(s);
        rd_w_free(&w);
        return RD_ENOTLEADER;
    }
    return 0;
}

static struct rd_proposer eng_proposer(struct engine *e)
{
    return (struct rd_proposer){.data = e, .is_leader = eng_is_leader, .propose = eng_propose};
}

/* The current leader's engine, if one is alive and leads. */
static struct engine *leader(void)
{
    for (unsigned i = 0; i < N_REPLICAS; i++)
        if (W->eng[i].leader && eng_is_leader(&W->eng[i]))
            return &W->eng[i];
    return NULL;
}

/* ---- the engine's observers (engine/core/engine.c, in small) ------------- */

static int task_index(const char *id);

static void on_node(void *data, const struct rd_node *node, int old_state)
{
    struct engine *e = data;
    rd_analysis_node_changed(
        &e->analysis, rd_registry_get(&e->registry, node->node_id, node->id_len), node, old_state);
    if (e->leader && node->state != RD_NODE_LEFT) {
        struct rd_soft *s =
            rd_registry_touch(&e->registry, node->node_id, node->id_len, node->epoch, rd_mono_ns(),
                              rd_config_lease_ms(&W->cfg) * 1000000ULL);
        if (s != NULL && (int)node->state != old_state)
            rd_registry_state_entered(&e->registry, s);
    }
    /* A new epoch: the scheduler looks at the node's older tasks (reclaim),
     * as engine.c's node hook tells it. */
    if (e->leader && old_state >= 0 && node->state != RD_NODE_LEFT &&
        e->fsm.result.type == RD_CMD_NODE_REGISTER)
        rd_sched_node_registered(&e->sched, node->node_id, node->id_len);
    if (e->leader)
        trace("r%u node %s epoch %" PRIu64 " %s -> %s", e->i, node->node_id, node->epoch,
              old_state < 0 ? "new" : rd_node_state_name(old_state),
              rd_node_state_name(node->state));
    if (node->state == RD_NODE_LEFT)
        rd_registry_forget(&e->registry, node->node_id, node->id_len);
}

static void on_task(void *data, const struct rd_task *t, int old_state, const char *old_node)
{
    struct engine *e = data;
    if (e->leader)
        trace("r%u task %s attempt %u %s -> %s on %s", e->i, t->id, t->attempt,
              old_state < 0 ? "new" : rd_task_state_name(old_state), rd_task_state_name(t->state),
              t->node_id[0] ? t->node_id : "-");
    bool held = t->state == RD_TASK_ASSIGNED || t->state == RD_TASK_RUNNING ||
                t->state == RD_TASK_RECOVERING;
    if (!e->leader || old_node == NULL || old_node[0] == '\0' ||
        (held && strcmp(old_node, t->node_id) == 0))
        return;
    struct rd_soft *s = rd_registry_get(&e->registry, old_node, strlen(old_node));
    uint32_t ran = held && t->attempt > 0 ? t->attempt - 1 : t->attempt;
    if (s != NULL)
        rd_registry_revoke(&e->registry, s, t->id, ran);
}

/* Every command each replica applies: I4 (no write accepted from an
 * attempt older than the newest the task had) and completed tasks that
 * stay completed, on every replica, in log order. */
static void on_entry(void *data, uint64_t index, int64_t time_ms, const void *buf, size_t len)
{
    struct engine *e = data;
    (void)time_ms;
    /* I8: every replica applies the same command at each index. */
    if (index < MAX_INDEX) {
        uint64_t h = rd_fnv1a(RD_FNV_INIT, buf, len) | 1;
        if (W->entry_hash[index] == 0) {
            W->entry_hash[index] = h;
            W->entry_by[index] = e->i;
        } else if (W->entry_hash[index] != h) {
            violation(-1, "I8 index %" PRIu64 ": r%u applied another command than r%u did", index,
                      e->i, W->entry_by[index]);
        }
    }
    struct rd_cmd c;
    bool accepted = e->fsm.result.status == 0;
    int drc = rd_cmd_decode(buf, len, &c);
    if (drc == 0 && e->leader && c.type != RD_CMD_TASK_CHECKPOINT && c.type != RD_CMD_TASK_FINISH &&
        c.type != RD_CMD_TASK_ASSIGN && c.type != RD_CMD_NODE_REGISTER)
        trace("r%u applied %s at %" PRIu64 ": %s%s%.*s", e->i, rd_cmd_type_name(c.type), index,
              rd_strerror(e->fsm.result.status),
              c.type == RD_CMD_RECOVERY_CLOSE ? " strategy " : "",
              c.type == RD_CMD_RECOVERY_CLOSE ? (int)c.u.rclose.strategy.len : 0,
              c.type == RD_CMD_RECOVERY_CLOSE ? c.u.rclose.strategy.p : "");
    if (drc == 0 && e->leader && c.type == RD_CMD_TASK_ASSIGN && c.u.tassign.strategy.len > 0)
        trace("r%u applied task_assign at %" PRIu64 ": %s by %.*s", e->i, index,
              rd_strerror(e->fsm.result.status), (int)c.u.tassign.strategy.len,
              c.u.tassign.strategy.p);
    if (drc == 0 && accepted &&
        (c.type == RD_CMD_TASK_CHECKPOINT || c.type == RD_CMD_TASK_FINISH)) {
        char id[40];
        struct rd_str sid =
            c.type == RD_CMD_TASK_CHECKPOINT ? c.u.tckpt.task_id : c.u.tfinish.task_id;
        snprintf(id, sizeof id, "%.*s", (int)sid.len, sid.p);
        int t = task_index(id);
        uint32_t attempt =
            c.type == RD_CMD_TASK_CHECKPOINT ? c.u.tckpt.attempt : c.u.tfinish.attempt;
        if (t >= 0 && attempt != 0 && attempt < W->max_attempt[e->i][t])
            violation(t,
                      "I4 r%u index %" PRIu64 ": a write of task %s by attempt %u accepted "
                      "after attempt %u existed",
                      e->i, index, id, attempt, W->max_attempt[e->i][t]);
        if (t >= 0 && c.type == RD_CMD_TASK_CHECKPOINT && c.u.tckpt.version < MAX_VERSION)
            W->ckpt_index[e->i][t][c.u.tckpt.version] = index;
    }
    for (int t = 0; t < N_TASKS; t++) {
        const struct rd_task *k = rd_fsm_task(&e->fsm, W->task_ids[t]);
        if (k == NULL)
            continue;
        if (k->attempt > W->max_attempt[e->i][t])
            W->max_attempt[e->i][t] = k->attempt;
        if (W->done_on[e->i][t] && k->state != RD_TASK_COMPLETED)
            violation(t, "I3 r%u index %" PRIu64 ": completed task %s is %s again", e->i, index,
                      W->task_ids[t], rd_task_state_name(k->state));
        W->done_on[e->i][t] = k->state == RD_TASK_COMPLETED;
    }
}

static void policy_error(void *data, const char *msg)
{
    struct engine *e = data;
    trace("r%u policy_error %s", e->i, msg);
}

static void engine_init(struct engine *e, unsigned i)
{
    memset(e, 0, sizeof(*e));
    e->i = i;
    uv_loop_init(&e->loop);
    rd_fsm_init(&e->fsm);
    e->fsm.on_node = on_node;
    e->fsm.on_node_data = e;
    e->fsm.on_task = on_task;
    e->fsm.on_task_data = e;
    e->fsm.on_entry = on_entry;
    e->fsm.on_entry_data = e;
    rd_registry_init(&e->registry);
    rd_analysis_init(&e->analysis, &e->loop, &W->cfg, &e->fsm, &e->registry, eng_proposer(e), NULL);
    struct rd_sched_env env = {
        .loop = &e->loop,
        .cfg = &W->cfg,
        .fsm = &e->fsm,
        .registry = &e->registry,
        .log = eng_proposer(e),
        .analysis = &e->analysis,
        .alerts = &e->alerts,
        .policy = &W->policy,
        .policy_error = policy_error,
        .policy_error_data = e,
        .shutting_down = &e->shutting_down,
        .leader_since_ns = &e->leader_since_ns,
    };
    rd_sched_init(&e->sched, &env);
}

/* engine/core/engine.c's on_role when leadership is lost: the analysis
 * stops, the detectors forget every agent. The registry and the
 * scheduler's soft state stay, as they do in the engine. */
static void engine_step_down(struct engine *e)
{
    rd_analysis_stop(&e->analysis);
    uv_run(&e->loop, UV_RUN_NOWAIT); /* closes its timer */
    memset(e->hb_verdict, 0, sizeof(e->hb_verdict));
    memset(e->hb_epoch, 0, sizeof(e->hb_epoch));
}

/* engine/core/engine.c's on_role. The pass timers are not started: the
 * simulation runs the passes itself every PASS_MS, as the timers would. */
static void engine_role(struct engine *e, bool lead)
{
    e->leader = lead;
    if (lead) {
        e->leader_since_ns = rd_mono_ns();
        uint64_t grace = rd_config_lease_ms(&W->cfg) * 1000000ULL;
        for (size_t k = 0; k < e->fsm.n_nodes; k++) {
            const struct rd_node *n = e->fsm.nodes[k];
            if (n->state != RD_NODE_LEFT)
                rd_registry_touch(&e->registry, n->node_id, n->id_len, n->epoch, e->leader_since_ns,
                                  grace);
        }
        rd_analysis_reset(&e->analysis);
        rd_analysis_start(&e->analysis); /* its timer never fires: the loop is not run */
        W->n_leaderships++;
        struct raft *r = raft_fixture_get(&W->f, e->i);
        trace("leader r%u term %" PRIu64, e->i, (uint64_t)r->current_term);
    } else {
        e->leader_since_ns = 0;
        engine_step_down(e);
        trace("follower r%u", e->i);
    }
}

static void engine_close(struct engine *e)
{
    rd_sched_close(&e->sched);
    rd_analysis_stop(&e->analysis);
    rd_analysis_close(&e->analysis);
    rd_registry_close(&e->registry);
    rd_fsm_close(&e->fsm);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    uv_loop_close(&e->loop);
}

/* ---- the simulated heartbeat detector ------------------------------------ */

/* What plugins/heartbeat reports, in small: suspect after two intervals
 * without a heartbeat, failed after failure_threshold, ok when they come
 * again. Its grace is the registry's (new leader, new epoch). */
static void detect(struct engine *e)
{
    uint64_t now = rd_mono_ns();
    uint64_t interval = W->cfg.fault_tolerance.detection.heartbeat_interval_ms * 1000000ULL;
    uint64_t lease = rd_config_lease_ms(&W->cfg) * 1000000ULL;
    for (size_t k = 0; k < e->fsm.n_nodes; k++) {
        const struct rd_node *n = e->fsm.nodes[k];
        int a = atoi(n->node_id + strlen("agent-"));
        if (a < 0 || a >= N_AGENTS)
            continue;
        if (e->hb_epoch[a] != n->epoch) {
            e->hb_epoch[a] = n->epoch;
            e->hb_verdict[a] = RD_VERDICT_OK;
        }
        struct rd_soft *s = rd_registry_get(&e->registry, n->node_id, n->id_len);
        if (s == NULL || now < s->grace_until_ns)
            continue;
        uint64_t last = s->last_mono_ns > s->grace_until_ns - lease ? s->last_mono_ns
                                                                    : s->grace_until_ns - lease;
        int v = RD_VERDICT_OK;
        if (now - last >= lease)
            v = RD_VERDICT_FAILED;
        else if (now - last >= 2 * interval)
            v = RD_VERDICT_SUSPECT;
        if (v == e->hb_verdict[a])
            continue;
        e->hb_verdict[a] = (int8_t)v;
        struct rd_observation o = {
            .node_id = n->node_id,
            .epoch = n->epoch,
            .signal = RD_SIG_HEARTBEAT,
            .verdict = v,
            .value = (double)(now - last) / (double)interval,
            .since_ns = v == RD_VERDICT_OK ? 0 : last,
            .detail = "simulated heartbeat detector",
        };
        rd_analysis_observe(&e->analysis, "heartbeat", &o);
    }
    /* One check is one batch: the loop is not run, so it is flushed here. */
    rd_analysis_flush(&e->analysis);
}

/* ---- agents ---------------------------------------------------------------- */

enum op_kind { OP_REGISTER, OP_CHECKPOINT, OP_COMPLETE, OP_SUBMIT, OP_OPERATOR };

struct op {
    enum op_kind kind;
    struct engine *e;
    int agent, task;
    uint64_t incarnation;
    uint32_t attempt;
    uint64_t version;
};

static struct held *holding(struct agent *g, int task)
{
    for (unsigned k = 0; k < g->n_held; k++)
        if (g->held[k].task == task)
            return &g->held[k];
    return NULL;
}

static void drop(struct agent *g, int task)
{
    for (unsigned k = 0; k < g->n_held; k++) {
        if (g->held[k].task == task) {
            g->held[k] = g->held[--g->n_held];
            return;
        }
    }
}

static int task_index(const char *id)
{
    for (int t = 0; t < N_TASKS; t++)
        if (strcmp(W->task_ids[t], id) == 0)
            return t;
    return -1;
}

static void ckpt_data(char *out, size_t n, int task, uint64_t version)
{
    snprintf(out, n, "{\"task\":%d,\"v\":%" PRIu64 "}", task, version);
}

static void op_done(void *data, int status, uint64_t value)
{
    struct op *o = data;
    struct agent *g = o->agent >= 0 ? &W->ag[o->agent] : NULL;
    bool current = g != NULL && g->incarnation == o->incarnation;
    const char *tid = o->task >= 0 ? W->task_ids[o->task] : "-";
    switch (o->kind) {
    case OP_SUBMIT:
        W->submitting[o->task] = false;
        if (status == 0 || status == RD_EEXISTS) { /* a retry of one that committed */
            W->submitted[o->task] = true;
            trace("client submit %s acked", tid);
        }
        break;
    case OP_REGISTER:
        if (current) {
            g->registering = false;
            if (status == 0) {
                g->epoch = value;
                g->next_hb_ms = now_ms();
            }
        }
        trace("%s register -> %s epoch %" PRIu64, g->id, rd_strerror(status), value);
        break;
    case OP_OPERATOR:
        trace("operator %s %s -> %s", o->version ? "drain" : "readmit", W->ag[o->agent].id,
              rd_strerror(status));
        break;
    case OP_CHECKPOINT:
    case OP_COMPLETE: {
        bool complete = o->kind == OP_COMPLETE;
        if (status != 0 && status != RD_EOUTCOME_UNKNOWN)
            W->n_refused++;
        trace("%s %s %s attempt %u v%" PRIu64 " -> %s", g->id, complete ? "complete" : "checkpoint",
              tid, o->attempt, o->version, rd_strerror(status));
        if (status == 0) {
            if (complete) {
                if (W->completed_by[o->task] != 0 && W->completed_by[o->task] != o->attempt)
                    violation(o->task, "I3 task %s completed by attempt %u and attempt %u", tid,
                              W->completed_by[o->task], o->attempt);
                W->completed_by[o->task] = o->attempt;
            } else if (o->version > W->acked_v[o->task]) {
                W->acked_v[o->task] = o->version;
                W->acked_at[o->task] = W->ckpt_index[o->e->i][o->task][o->version];
            }
        }
        struct held *h = current ? holding(g, o->task) : NULL;
        if (h == NULL || h->attempt != o->attempt)
            break;
        h->busy = false;
        if (status == 0 && complete)
            drop(g, o->task);
        else if (status == 0)
            h->version = o->version + 1;
        else if (status != RD_EOUTCOME_UNKNOWN)
            drop(g, o->task); /* fenced, gone, stale: the task is not ours any more */
        break;
    }
    }
    free(o);
}

static bool send_op(struct engine *e, struct op *o, const struct rd_cmd *c)
{
    o->e = e;
    int rv = eng_propose(e, c, op_done, o);
    if (rv != 0) {
        free(o);
        return false;
    }
    return true;
}

static struct op *new_op(enum op_kind kind, int agent, int task)
{
    struct op *o = calloc(1, sizeof(*o));
    o->kind = kind;
    o->agent = agent;
    o->task = task;
    if (agent >= 0)
        o->incarnation = W->ag[agent].incarnation;
    return o;
}

static void agent_register(struct engine *e, int a)
{
    struct agent *g = &W->ag[a];
    struct rd_cmd c = {.type = RD_CMD_NODE_REGISTER};
    c.u.reg.node_id = RD_STR(g->id);
    c.u.reg.slots = AGENT_SLOTS;
    c.u.reg.labels_json = RD_STR("{}");
    c.u.reg.health_url = RD_STR("");
    c.u.reg.address = RD_STR("");
    if (send_op(e, new_op(OP_REGISTER, a, -1), &c))
        g->registering = true;
}

/* The heartbeat handler (http/api_nodes.c, with its rd_sched_handover) and
 * the agent's reading of its answer: fenced drops everything and registers
 * again; assignments are taken with the checkpoint to resume from (an
 * assignment is told once, and again only after a lease without a start);
 * revocations are dropped. */
static void agent_heartbeat(struct engine *e, int a)
{
    struct agent *g = &W->ag[a];
    struct rd_heartbeat_in in = {
        .node_id = g->id, .id_len = strlen(g->id), .epoch = g->epoch, .progress = -1};
    in.slots_used = g->n_held;
    const struct rd_node *n;
    struct rd_soft *s;
    int rv = rd_analysis_take_heartbeat(&e->analysis, &in, &n, &s);
    if (rv == RD_EFENCED || rv == RD_ENOTFOUND) {
        trace("%s heartbeat epoch %" PRIu64 " -> %s: drops %u tasks", g->id, g->epoch,
              rd_strerror(rv), g->n_held);
        g->n_held = 0;
        g->epoch = 0;
        return;
    }
    if (rv != 0)
        return;
    struct rd_handover *todo = calloc(n->n_tasks ? n->n_tasks : 1, sizeof(*todo));
    size_t k_todo = todo != NULL ? rd_sched_handover(&e->sched, n, s, s->last_mono_ns, todo) : 0;
    for (size_t i = 0; i < k_todo; i++) {
        const struct rd_task *t = todo[i].task;
        const struct rd_checkpoint *c = todo[i].ckpt;
        int ti = task_index(t->id);
        struct held *h = holding(g, ti);
        if (ti < 0 || (h != NULL && h->attempt == t->attempt))
            continue;
        if (h == NULL) {
            if (g->n_held == MAX_HELD)
                continue;
            h = &g->held[g->n_held++];
        }
        *h = (struct held){.task = ti, .attempt = t->attempt, .version = c ? c->version + 1 : 1};
        trace("%s takes %s attempt %u from v%" PRIu64, g->id, t->id, t->attempt, h->version - 1);
    }
    free(todo);
    struct rd_revocation gone[RD_REVOKED_MAX];
    unsigned n_gone = rd_registry_take_revoked(&e->registry, s, gone);
    for (unsigned k = 0; k < n_gone; k++) {
        struct held *h = holding(g, task_index(gone[k].task_id));
        if (h != NULL && h->attempt == gone[k].attempt) {
            trace("%s revoked %s attempt %u", g->id, gone[k].task_id, gone[k].attempt);
            drop(g, h->task);
        }
    }
}

/* One step of work on each task held: the next checkpoint, or the
 * completion once the task had its steps. A write in flight is not
 * repeated; a write whose outcome is unknown is sent again alike. */
static void agent_work(struct engine *e, int a)
{
    struct agent *g = &W->ag[a];
    for (unsigned k = 0; k < g->n_held; k++) {
        struct held *h = &g->held[k];
        if (h->busy || !rng_chance(600))
            continue;
        const char *tid = W->task_ids[h->task];
        struct rd_cmd c;
        struct op *o;
        char data[64];
        if (h->version > W->steps[h->task]) {
            c = (struct rd_cmd){.type = RD_CMD_TASK_FINISH};
            c.u.tfinish.task_id = RD_STR(tid);
            c.u.tfinish.attempt = h->attempt;
            c.u.tfinish.state = RD_TASK_COMPLETED;
            c.u.tfinish.result_json = RD_STR("{\"ok\":true}");
            o = new_op(OP_COMPLETE, a, h->task);
        } else {
            ckpt_data(data, sizeof data, h->task, h->version);
            c = (struct rd_cmd){.type = RD_CMD_TASK_CHECKPOINT};
            c.u.tckpt.task_id = RD_STR(tid);
            c.u.tckpt.attempt = h->attempt;
            c.u.tckpt.version = h->version;
            c.u.tckpt.data_json = RD_STR(data);
            c.u.tckpt.checksum = rd_checkpoint_checksum(data, strlen(data));
            c.u.tckpt.keep = RD_TASK_KEEP;
            o = new_op(OP_CHECKPOINT, a, h->task);
        }
        o->attempt = h->attempt;
        o->version = h->version;
        if (send_op(e, o, &c))
            h->busy = true;
    }
}

static void agents_step(void)
{
    uint64_t now = now_ms();
    uint64_t interval = W->cfg.fault_tolerance.detection.heartbeat_interval_ms;
    for (int a = 0; a < N_AGENTS; a++) {
        struct agent *g = &W->ag[a];
        if (g->state != AG_UP) {
            if (now < g->until_ms)
                continue;
            trace("%s %s", g->id, g->state == AG_DOWN ? "restarts" : "resumes");
            if (g->state == AG_DOWN) {
                g->epoch = 0;
                g->registering = false;
                g->n_held = 0;
            }
            g->state = AG_UP;
        }
        struct engine *e = leader();
        if (e == NULL || g->cut)
            continue;
        if (g->epoch == 0) {
            if (!g->registering && now >= g->next_hb_ms) {
                agent_register(e, a);
                g->next_hb_ms = now + interval;
            }
            continue;
        }
        /* Work before the heartbeat now and then: an agent back from a
         * pause or a cut writes with what it held before it learns of
         * what changed meanwhile. */
        bool work_first = rng_chance(500);
        if (work_first && now >= g->next_work_ms) {
            agent_work(e, a);
            g->next_work_ms = now + 100 + rng_below(400);
        }
        if (now >= g->next_hb_ms) {
            if (!g->hb_cut)
                agent_heartbeat(e, a);
            g->next_hb_ms = now + interval - 50 + rng_below(100);
        }
        if (!work_first && g->epoch != 0 && now >= g->next_work_ms) {
            agent_work(e, a);
            g->next_work_ms = now + 100 + rng_below(400);
        }
    }
}

static void client_step(void)
{
    struct engine *e = leader();
    if (e == NULL)
        return;
    for (int t = 0; t < N_TASKS; t++) {
        /* Submitted over the first part of the run, retried until acked. */
        if (W->submitted[t] || W->submitting[t] || now_ms() < (uint64_t)t * 2000 || !rng_chance(50))
            continue;
        struct rd_cmd c = {.type = RD_CMD_TASK_SUBMIT};
        c.u.tsubmit.task_id = RD_STR(W->task_ids[t]);
        c.u.tsubmit.priority = (uint8_t)(t % 10);
        c.u.tsubmit.critical = t % 5 == 0;
        c.u.tsubmit.slots = 1;
        c.u.tsubmit.labels_json = RD_STR("{}");
        c.u.tsubmit.payload_json = RD_STR("{}");
        c.u.tsubmit.max_attempts = 1000;
        if (send_op(e, new_op(OP_SUBMIT, -1, t), &c))
            W->submitting[t] = true;
    }
}

/* ---- faults --------------------------------------------------------------- */

/* An operator drains a working agent or readmits a draining one, as
 * api_nodes.c's handlers do (at most MAX_DRAINED draining at once, so the
 * fleet keeps capacity for I6). */
#define MAX_DRAINED 2
static void operator_step(int a, bool readmit_only)
{
    struct engine *e = leader();
    if (e == NULL)
        return;
    unsigned draining = 0;
    for (int k = 0; k < N_AGENTS; k++) {
        const struct rd_node *m = rd_fsm_node(&e->fsm, W->ag[k].id, strlen(W->ag[k].id));
        draining += m != NULL && m->state == RD_NODE_DRAINING;
    }
    const char *id = W->ag[a].id;
    const struct rd_node *n = rd_fsm_node(&e->fsm, id, strlen(id));
    if (n == NULL)
        return;
    bool drain = n->state == RD_NODE_ALIVE || n->state == RD_NODE_PROBATION;
    if (drain ? readmit_only || draining >= MAX_DRAINED : n->state != RD_NODE_DRAINING)
        return;
    struct rd_cmd c = {.type = RD_CMD_NODE_TRANSITION};
    c.u.trans.node_id = RD_STR(id);
    c.u.trans.state = drain ? RD_NODE_DRAINING : RD_NODE_PROBATION;
    c.u.trans.reason = RD_STR(drain ? "drained by an operator" : "readmitted by an operator");
    c.u.trans.from_state = n->state;
    c.u.trans.resolve_faults = !drain;
    struct op *o = new_op(OP_OPERATOR, a, -1);
    o->version = drain;
    send_op(e, o, &c);
}

static void fault_step(void)
{
    if (!rng_chance(15)) /* a fault drawn about every 0.7 s (some are no-ops) */
        return;
    unsigned kind = rng_below(11);
    unsigned i = rng_below(N_REPLICAS), j = rng_below(N_REPLICAS);
    int a = (int)rng_below(N_AGENTS);
    struct agent *g = &W->ag[a];
    switch (kind) {
    case 0: { /* a replica killed, or one killed before revived */
        if (W->killed[i]) {
            raft_fixture_revive(&W->f, i);
            W->killed[i] = false;
            trace("FAULT revive r%u", i);
        } else {
            /* One replica down at a time, and only one whose links are all
             * up: the fixture's kill saturates them, which its debug build
             * asserts is done on connected links only. */
            unsigned dead = 0;
            for (unsigned k = 0; k < N_REPLICAS; k++)
                dead += W->killed[k] + W->cut[i][k];
            if (dead > 0)
                return;
            raft_fixture_kill(&W->f, i);
            W->killed[i] = true;
            if (W->eng[i].leader)
                engine_role(&W->eng[i], false);
            trace("FAULT kill r%u", i);
        }
        break;
    }
    case 1: /* a link between two replicas cut, both ways, or healed */
        if (i == j || W->killed[i] || W->killed[j]) /* see the kill above */
            return;
        if (W->cut[i][j]) {
            raft_fixture_reconnect(&W->f, i, j);
            raft_fixture_reconnect(&W->f, j, i);
            trace("FAULT reconnect r%u r%u", i, j);
        } else {
            raft_fixture_disconnect(&W->f, i, j);
            raft_fixture_disconnect(&W->f, j, i);
            trace("FAULT disconnect r%u r%u", i, j);
        }
        W->cut[i][j] = W->cut[j][i] = !W->cut[i][j];
        break;
    case 2: { /* network latency between replicas changes */
        /* A lower latency delivers later messages before earlier ones, which
         * TCP never does and which trips libraft: a delayed AppendEntries
         * lowers a follower's commit index (replication.c, docs/testing.md).
         * Only with DSIM_REORDER=1; otherwise each run keeps the latency it
         * drew at its start. */
        unsigned ms = 5 + rng_below(200);
        if (!W->reorder)
            return;
        for (unsigned k = 0; k < N_REPLICAS; k++)
            raft_fixture_set_network_latency(&W->f, k, ms);
        trace("FAULT latency %ums", ms);
        break;
    }
    case 3: /* an agent crashes */
        if (g->state != AG_UP)
            return;
        g->state = AG_DOWN;
        g->incarnation++;
        /* Some never come back (at most MAX_DEAD): their tasks must move. */
        if (W->dead < MAX_DEAD && rng_chance(300)) {
            W->dead++;
            g->until_ms = UINT64_MAX;
            trace("FAULT crash %s for good", g->id);
            break;
        }
        g->until_ms = now_ms() + 500 + rng_below(8000);
        trace("FAULT crash %s for %" PRIu64 " ms", g->id, g->until_ms - now_ms());
        break;
    case 4: /* an agent pauses (SIGSTOP), longer or shorter than its lease */
        if (g->state != AG_UP)
            return;
        g->state = AG_PAUSED;
        g->until_ms = now_ms() + 200 + rng_below(4000);
        trace("FAULT pause %s for %" PRIu64 " ms", g->id, g->until_ms - now_ms());
        break;
    case 5: /* an agent's link to the engine cut, or healed */
        g->cut = !g->cut;
        trace("FAULT %s %s", g->cut ? "cut" : "uncut", g->id);
        break;
    case 7: /* an agent's heartbeats lost (its writes still arrive), or back */
        g->hb_cut = !g->hb_cut;
        trace("FAULT %s %s", g->hb_cut ? "heartbeats lost from" : "heartbeats back from", g->id);
        break;
    case 8: { /* a replica's disk becomes slower (fsync of up to 120 ms) */
        /* Only slower: the fixture completes each write after its own
         * latency, so a faster disk would finish a later append before an
         * earlier one, which libraft's libuv backend never does (it writes
         * one segment in order). */
        unsigned ms = W->disk_ms[i] + 1 + rng_below(40);
        if (ms > 120)
            return;
        W->disk_ms[i] = ms;
        raft_fixture_set_disk_latency(&W->f, i, ms);
        trace("FAULT disk latency r%u %ums", i, ms);
        break;
    }
    case 9: { /* a replica's disk fails its writes for a while, or refuses an append */
        if (W->killed[i] || !W->io_faults)
            return;
        struct disk *d = &W->disk[i];
        if (rng_chance(300)) {
            d->refuse++;
            trace("FAULT disk r%u refuses its next append", i);
            break;
        }
        uint64_t until = now_ms() + 10 + rng_below(2000);
        if (until > d->fail_until)
            d->fail_until = until;
        trace("FAULT disk r%u fails writes until %" PRIu64 " ms", i, d->fail_until);
        break;
    }
    case 10: /* an operator drains an agent, or readmits a drained one */
        operator_step(a, false);
        break;
    case 6: { /* half the agents cut at once (a partition of the fleet), or all healed */
        bool any = false;
        for (int k = 0; k < N_AGENTS; k++)
            any |= W->ag[k].cut;
        for (int k = 0; k < N_AGENTS; k++)
            W->ag[k].cut = false;
        for (int k = 0; k < N_AGENTS / 2 && !any; k++)
            W->ag[(a + k) % N_AGENTS].cut = true;
        if (any)
            trace("FAULT agents' links healed");
        else
            trace("FAULT partition agents %d..%d", a, (a + N_AGENTS / 2 - 1) % N_AGENTS);
        break;
    }
    }
}

static void heal(void)
{
    /* Links first: a revive desaturates them, which needs them connected. */
    for (unsigned i = 0; i < N_REPLICAS; i++) {
        for (unsigned j = 0; j < N_REPLICAS; j++) {
            if (W->cut[i][j]) {
                raft_fixture_reconnect(&W->f, i, j);
                W->cut[i][j] = false;
            }
        }
    }
    for (unsigned i = 0; i < N_REPLICAS; i++) {
        if (W->killed[i]) {
            raft_fixture_revive(&W->f, i);
            W->killed[i] = false;
        }
        if (W->reorder) /* back to a short latency: what is sent now overtakes */
            raft_fixture_set_network_latency(&W->f, i, 15);
    }
    for (unsigned i = 0; i < N_REPLICAS; i++) {
        W->disk[i].fail_until = 0;
        W->disk[i].refuse = 0;
    }
    /* The operator readmits every agent it drained. */
    for (int a = 0; a < N_AGENTS; a++)
        operator_step(a, true);
    for (int a = 0; a < N_AGENTS; a++)
        W->ag[a].cut = W->ag[a].hb_cut = false;
    W->faults_on = false;
    trace("FAULT heal: no more faults");
}

/* ---- invariants ------------------------------------------------------------ */

static void check_step(void)
{
    for (unsigned i = 0; i < N_REPLICAS; i++) {
        struct raft *r = raft_fixture_get(&W->f, i);
        /* I5: one leader per term. */
        if (raft_state(r) == RAFT_LEADER && r->current_term < 256) {
            uint64_t *who = &W->leader_of_term[r->current_term];
            if (*who == 0)
                *who = r->id;
            else if (*who != r->id)
                violation(-1,
                          "I5 term %" PRIu64 " has two leaders: server %" PRIu64
                          " and server %" PRIu64,
                          (uint64_t)r->current_term, *who, (uint64_t)r->id);
        }
        /* I7: the commit index only grows (a killed replica keeps its own). */
        if (r->commit_index < W->commit_seen[i])
            violation(-1, "I7 r%u's commit index went down from %" PRIu64 " to %" PRIu64, i,
                      W->commit_seen[i], (uint64_t)r->commit_index);
        W->commit_seen[i] = r->commit_index;
        uint64_t applied = raft_last_applied(r);
        for (int t = 0; t < N_TASKS; t++) {
            const struct rd_task *k = rd_fsm_task(&W->eng[i].fsm, W->task_ids[t]);
            const struct rd_checkpoint *c = k ? rd_task_checkpoint(k) : NULL;
            uint64_t v = c ? c->version : 0;
            /* I2 */
            if (v < W->seen_v[i][t])
                violation(t, "I2 task %s: replica r%u went from v%" PRIu64 " back to v%" PRIu64,
                          W->task_ids[t], i, W->seen_v[i][t], v);
            W->seen_v[i][t] = v;
            /* I1: every replica that applied the ack's entry holds it. */
            if (W->acked_v[t] > 0 && applied >= W->acked_at[t] && v < W->acked_v[t] &&
                (k == NULL || k->state != RD_TASK_COMPLETED))
                violation(t,
                          "I1 task %s: acked v%" PRIu64 " (index %" PRIu64
                          ") lost on r%u, which holds v%" PRIu64 " at index %" PRIu64,
                          W->task_ids[t], W->acked_v[t], W->acked_at[t], i, v, applied);
        }
    }
}

static bool all_ended(const struct rd_fsm *f)
{
    for (int t = 0; t < N_TASKS; t++) {
        const struct rd_task *k = rd_fsm_task(f, W->task_ids[t]);
        if (!W->submitted[t] || k == NULL ||
            (k->state != RD_TASK_COMPLETED && k->state != RD_TASK_FAILED))
            return false;
    }
    return true;
}

static bool converged(void)
{
    uint64_t idx = raft_last_applied(raft_fixture_get(&W->f, 0));
    uint64_t d = rd_fsm_digest(&W->eng[0].fsm);
    for (unsigned i = 1; i < N_REPLICAS; i++)
        if (raft_last_applied(raft_fixture_get(&W->f, i)) != idx ||
            rd_fsm_digest(&W->eng[i].fsm) != d)
            return false;
    return true;
}

/* ---- one seed -------------------------------------------------------------- */

struct outcome {
    bool ok;
    uint64_t hash;
    uint64_t end_ms;
    unsigned completed, failed;
    /* What the seed exercised: faults drawn, leaderships, writes refused
     * (fenced, stale), tasks moved off lost agents, recovery runs closed,
     * policy errors (summed over the replicas). */
    uint64_t faults, leaderships, refused, moves, runs, policy_errors, restores;
    uint64_t disk_retried, disk_refused; /* DSIM_IO_FAULTS */
};

static void step(uint64_t tick)
{
    raft_fixture_step_until_elapsed(&W->f, TICK_MS);
    for (unsigned i = 0; i < N_REPLICAS; i++) {
        bool lead = alive(i) && raft_state(raft_fixture_get(&W->f, i)) == RAFT_LEADER;
        if (lead != W->eng[i].leader)
            engine_role(&W->eng[i], lead);
    }
    /* The fixture pins each server's randomized election timeout; raft
     * draws a new one at each election. Drawn again from the seed here, or
     * two candidates that timed out together split their votes forever. */
    if (tick % (PASS_MS / TICK_MS) == 0)
        for (unsigned i = 0; i < N_REPLICAS; i++)
            raft_fixture_set_randomized_election_timeout(&W->f, i, 1000 + rng_below(1000));
    struct engine *e = leader();
    if (e != NULL && tick % (PASS_MS / TICK_MS) == 0) {
        detect(e);
        rd_analysis_tick(&e->analysis);
        rd_sched_pass(&e->sched);
    }
    if (getenv("DSIM_RAFT") && (tick % 100 == 0 || now_ms() >= env_u64("DSIM_RAFT", 0)))
        for (unsigned i = 0; i < N_REPLICAS; i++) {
            struct raft *r = raft_fixture_get(&W->f, i);
            trace("raft r%u %s term %" PRIu64 " voted %" PRIu64 " last %" PRIu64 " commit %" PRIu64,
                  i, raft_state_name(raft_state(r)), (uint64_t)r->current_term,
                  (uint64_t)r->voted_for, (uint64_t)raft_last_index(r), (uint64_t)r->commit_index);
        }
    client_step();
    agents_step();
    if (W->faults_on)
        fault_step();
    check_step();
}

/* DSIM_LIBRAFT=1: libraft's own diagnostics (its infof lines) in the trace,
 * named by replica. */
static void libraft_trace(struct raft_tracer *t, int type, const void *data)
{
    const struct raft_tracer_info *info = data;
    const struct engine *e = t->impl;
    if (type == RAFT_TRACER_DIAGNOSTIC && info->diagnostic.level <= 3)
        trace("libraft r%u %s:%d %s", e->i, info->diagnostic.file, info->diagnostic.line,
              info->diagnostic.message);
}

static struct outcome run_seed(uint64_t seed, bool verbose)
{
    struct world *w = calloc(1, sizeof(*w));
    W = w;
    w->seed = seed;
    w->verbose = verbose;
    w->fail_task = -1;
    w->reorder = env_u64("DSIM_REORDER", 0) != 0;
    w->io_faults = env_u64("DSIM_IO_FAULTS", 0) != 0;
    for (unsigned i = 0; i < N_REPLICAS; i++)
        w->disk_ms[i] = 10; /* the fixture's default */
    w->snapshot_every = (unsigned)env_u64("DSIM_SNAPSHOT", 0);
    rd_config_defaults(&w->cfg);
    /* The policies the engine ships (select.lua and the strategies): the
     * scheduler asks them for every plan, as in the engine. */
    if (env_u64("DSIM_POLICY", 1)) {
        char err[512];
        /* Budgets run on real time (policy.c), which the simulation does
         * not control: a loaded machine (CI under the sanitizers) must not
         * turn a call's overrun into a failed or diverging seed, so the
         * budget here is ten seconds, not the engine's 500 ms. */
        if (rd_policy_load(RD_SOURCE_DIR "/policies", 10000, w->cfg.policies.memory_limit,
                           &w->policy, err, sizeof err) != 0) {
            fprintf(stderr, "dsim: policies: %s\n", err);
            exit(2);
        }
    }
    w->hash = RD_FNV_INIT;
    rng_state = seed;
    raft_fixture_initialize(&w->f);
    for (unsigned i = 0; i < N_REPLICAS; i++) {
        engine_init(&w->eng[i], i);
        raft_fixture_grow(&w->f, &w->eng[i].fsm.raft);
        disk_wrap(i);
        rd_fsm_bind_raft(&w->eng[i].fsm, raft_fixture_get(&w->f, i));
        raft_fixture_get(&w->f, i)->tracer = getenv("DSIM_LIBRAFT") ? &w->tracer[i] : NULL;
        w->tracer[i] =
            (struct raft_tracer){.impl = &w->eng[i], .version = 2, .emit = libraft_trace};
        /* Snapshots often (DSIM_SNAPSHOT=<entries>, 0: libraft's default),
         * so lagging replicas catch up by snapshot installs. */
        if (w->snapshot_every) {
            raft_set_snapshot_threshold(raft_fixture_get(&w->f, i), w->snapshot_every);
            raft_set_snapshot_trailing(raft_fixture_get(&w->f, i), w->snapshot_every / 4);
        }
        /* Election timeouts from the seed, so who leads first varies. */
        raft_fixture_set_randomized_election_timeout(&w->f, i, 1000 + rng_below(1000));
    }
    unsigned latency = 5 + rng_below(100);
    for (unsigned i = 0; i < N_REPLICAS; i++)
        raft_fixture_set_network_latency(&w->f, i, latency);
    raft_fixture_configuration(&w->f, N_REPLICAS, &w->conf);
    raft_fixture_bootstrap(&w->f, &w->conf);
    raft_configuration_close(&w->conf);
    raft_fixture_start(&w->f);
    for (int a = 0; a < N_AGENTS; a++) {
        snprintf(w->ag[a].id, sizeof w->ag[a].id, "agent-%d", a);
        w->ag[a].next_hb_ms = rng_below(1000);
    }
    for (int t = 0; t < N_TASKS; t++) {
        snprintf(w->task_ids[t], 40, "00000000-0000-4000-9000-%012d", t);
        w->steps[t] = 3 + rng_below(5);
    }
    w->faults_on = true;
    uint64_t tick = 0, end = FAULT_MS + SETTLE_MS;
    bool done = false;
    while (!w->failed && now_ms() < end) {
        if (w->faults_on && now_ms() >= FAULT_MS)
            heal();
        step(tick++);
        struct engine *e = leader();
        if (!w->faults_on && e != NULL && all_ended(&e->fsm) && converged()) {
            done = true;
            break;
        }
    }
    /* I6: after the faults stopped, everything ends and the replicas agree. */
    if (!w->failed && !done) {
        int stuck = -1;
        struct engine *e = leader();
        for (int t = 0; t < N_TASKS && e != NULL && stuck < 0; t++) {
            const struct rd_task *k = rd_fsm_task(&e->fsm, w->task_ids[t]);
            if (k == NULL || (k->state != RD_TASK_COMPLETED && k->state != RD_TASK_FAILED))
                stuck = t;
        }
        if (e == NULL)
            violation(-1, "I6 no leader %d ms after the faults stopped", SETTLE_MS);
        else if (stuck >= 0) {
            const struct rd_task *k = rd_fsm_task(&e->fsm, w->task_ids[stuck]);
            violation(stuck, "I6 task %s not ended %d ms after the faults stopped (%s on %s)",
                      w->task_ids[stuck], SETTLE_MS, k ? rd_task_state_name(k->state) : "unknown",
                      k && k->node_id[0] ? k->node_id : "-");
        } else {
            char d[300] = "";
            size_t k = 0;
            for (unsigned i = 0; i < N_REPLICAS && k < sizeof d; i++) {
                struct raft *r = raft_fixture_get(&w->f, i);
                k += (size_t)snprintf(
                    d + k, sizeof d - k,
                    " r%u:%s applied %" PRIu64 " commit %" PRIu64 " digest %016" PRIx64, i,
                    raft_state_name(raft_state(r)), (uint64_t)raft_last_applied(r),
                    (uint64_t)r->commit_index, rd_fsm_digest(&w->eng[i].fsm));
            }
            violation(-1, "I6 the replicas did not converge to one digest:%s", d);
        }
    }
    struct outcome out = {.ok = !w->failed,
                          .hash = w->hash,
                          .end_ms = now_ms(),
                          .faults = w->n_faults,
                          .leaderships = w->n_leaderships,
                          .refused = w->n_refused};
    for (unsigned i = 0; i < N_REPLICAS; i++) {
        const struct rd_sched *sc = &w->eng[i].sched;
        out.moves += sc->recoveries_total;
        out.policy_errors += sc->policy_errors_total;
        out.restores += w->eng[i].fsm.restores;
        out.disk_retried += w->disk[i].n_retried;
        out.disk_refused += w->disk[i].n_refused;
        for (int k = 0; k < RD_REC_STATUS_COUNT; k++)
            out.runs += sc->runs_closed[k];
    }
    struct engine *e = leader();
    for (int t = 0; t < N_TASKS && e != NULL; t++) {
        const struct rd_task *k = rd_fsm_task(&e->fsm, w->task_ids[t]);
        out.completed += k && k->state == RD_TASK_COMPLETED;
        out.failed += k && k->state == RD_TASK_FAILED;
    }
    if (w->failed && e != NULL) {
        for (size_t k = 0; k < e->fsm.n_nodes; k++) {
            const struct rd_node *n = e->fsm.nodes[k];
            trace("end: node %s epoch %" PRIu64 " %s tasks %u", n->node_id, n->epoch,
                  rd_node_state_name(n->state), n->n_tasks);
        }
        trace("end: leader r%u partition_suspected %d open faults %zu", e->i,
              e->analysis.partition_suspected, e->fsm.open_faults);
    }
    if (w->failed)
        print_failure();
    w->closing = true;
    raft_fixture_close(&w->f); /* answers what is still in flight */
    for (unsigned i = 0; i < N_REPLICAS; i++)
        engine_close(&w->eng[i]);
    rd_policy_free(w->policy);
    for (unsigned k = 0; k < TRACE_KEEP; k++)
        free(w->trace[k]);
    W = NULL;
    free(w);
    return out;
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : env_u64("SEED", 1);
    uint64_t count = argc > 2 ? strtoull(argv[2], NULL, 10) : env_u64("SEEDS", 1);
    bool verbose = env_u64("DSIM_VERBOSE", 0) != 0;
    rd_log_set_level(RD_LOG_ERROR);
    /* The first seed twice: the same trace, or the simulation is not
     * deterministic and no failure could be replayed. */
    struct outcome first = run_seed(seed, verbose);
    if (first.ok && !verbose) {
        struct outcome again = run_seed(seed, false);
        if (again.hash != first.hash) {
            printf("dsim: seed %" PRIu64 " is not deterministic: two runs, two traces\n", seed);
            return 1;
        }
    }
    unsigned failures = 0, completed = 0, failed_tasks = 0;
    uint64_t sim_ms = 0;
    struct outcome sum = {0};
    for (uint64_t s = seed; s < seed + count; s++) {
        struct outcome o = s == seed ? first : run_seed(s, verbose);
        failures += !o.ok;
        completed += o.completed;
        failed_tasks += o.failed;
        sim_ms += o.end_ms;
        sum.faults += o.faults;
        sum.leaderships += o.leaderships;
        sum.refused += o.refused;
        sum.moves += o.moves;
        sum.runs += o.runs;
        sum.policy_errors += o.policy_errors;
        sum.restores += o.restores;
        sum.disk_retried += o.disk_retried;
        sum.disk_refused += o.disk_refused;
        if (env_u64("DSIM_LIST", 0))
            printf("seed %" PRIu64 ": %s, tasks completed %u, failed %u, %.1f simulated s\n", s,
                   o.ok ? "ok" : "FAILED", o.completed, o.failed, (double)o.end_ms / 1000);
        if (!o.ok && failures >= 3)
            break;
    }
    printf("dsim: seeds %" PRIu64 "..%" PRIu64 ": %u failed; tasks completed %u, failed %u; "
           "%.0f simulated seconds\n",
           seed, seed + count - 1, failures, completed, failed_tasks, (double)sim_ms / 1000);
    printf("dsim: exercised: %" PRIu64 " faults, %" PRIu64 " leaderships, %" PRIu64
           " writes refused, %" PRIu64 " tasks moved off lost agents, %" PRIu64
           " recovery runs, %" PRIu64 " policy errors, %" PRIu64 " snapshot restores\n",
           sum.faults, sum.leaderships, sum.refused, sum.moves, sum.runs, sum.policy_errors,
           sum.restores);
    if (env_u64("DSIM_IO_FAULTS", 0))
        printf("dsim: disks: %" PRIu64 " appends retried, %" PRIu64 " refused\n", sum.disk_retried,
               sum.disk_refused);
    return failures ? 1 : 0;
}
