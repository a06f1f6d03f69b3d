/*
 * bench_scale_loadgen: the scale benchmark's load generator
 * (tests/bench/scale/run.sh and storm.sh start the engine and run this).
 *
 * One process simulates a large fleet against a running recoveryd: the
 * agents are split among --threads workers, each with its own HTTP/2
 * connections (--conns, 1 by default; h2o takes 100 requests at a time on
 * one, so a worker whose agents outnumber its streams queues heartbeats
 * behind its checkpoints when the engine's answers slow, as a fleet with a
 * connection per agent would not) (h2c, tests/bench/lib/h2c.h: every request a loop turn
 * submits goes out in one send(2); with libcurl 7.88's one send per frame
 * the load generator used most of a core for 20,000 heartbeats/s and sent
 * late). A worker registers its agents
 * (REG_IN_FLIGHT at a time), then heartbeats each every interval +/- uniform
 * jitter. Due heartbeats (and, in the storm, due checkpoints) are kept in a
 * queue of due times per worker (rdb_dueq), so the cost per request does not
 * grow with the fleet. An agent whose previous heartbeat is still in flight
 * when the next is due skips it (counted); an agent the engine declared
 * failed (409) registers again and goes on, as a real agent does, so the
 * offered load stays the wanted one (before, it stopped for good: a
 * registration burst that failed 4,000 agents left 6,000 heartbeating and
 * the run offered 12,000 of the 20,000 heartbeats/s wanted).
 *
 * With --tasks N it runs the failure storm of issue 16 instead of a steady
 * fleet: it submits N tasks once the fleet is registered; an agent takes the
 * `assignments` of its heartbeat answers, drops the `revoked` ones and
 * checkpoints each task at once and then every --ckpt-ms. Once every task
 * runs and the warm-up passed, --crash-share of the agents crash one after
 * the other over --crash-spread seconds (no more heartbeats nor
 * checkpoints); 10 s later --partition-share of the agents go silent for
 * --partition seconds (alive, but they reach nothing: a partition as the
 * engine sees it) and then come back with their epoch and tasks. It measures
 * the time from each crash to each of the agent's tasks reaching its new
 * agent (and to its first checkpoint there), the tasks of partitioned agents
 * moved while the partition lasted, the partitioned agents failed, and the
 * checkpoint throughput of the agents that neither crash nor are
 * partitioned (on tasks that never moved) during the storm as a share of
 * before, the answers that were not 2xx and the checkpoints lost (below).
 *
 * With --tasks N and both --crash-share and --partition-share 0 the run is
 * steady instead (the soak, tests/bench/soak/run.sh): the tasks run and
 * checkpoint for --warmup and then --duration seconds and nothing fails.
 * With --task-steps S tasks also churn: an agent completes a task (POST
 * .../complete with its attempt) once its checkpoint version reaches S (1
 * to S for the first N, spread so that they do not all end together), and
 * its worker submits the task's successor (task number n + N), so N tasks
 * stay live. Each window line then carries the acknowledged checkpoints/s,
 * the completions/s and the checkpoints' mean round trip; the report counts
 * every answer that was not 2xx by request and status, and the checkpoints
 * lost: an assignment that hands a task over (by rebalancing) at a version
 * below one acknowledged before.
 *
 * --url takes the replicas (comma-separated; it starts on the first) and it
 * follows the leader (rdb_leader, tests/bench/lib/bench.h): on a 307, a 503
 * not_leader or no_quorum, or a leader that is gone, every worker reopens
 * its connection to the leader named (or the next replica) within its loop
 * (an opening is given OPEN_MS; the loop, and its coordination of the
 * run, goes on meanwhile) and sends the refused requests again, those of
 * agents that crashed or are cut off meanwhile excepted; the report counts
 * the switches, the time without a leader and the openings that failed.
 * --engine-pids gives the replicas' PIDs in the same order: the RSS sampled
 * is the current leader's, and so are the loop's CPU and run-queue wait
 * (/proc/PID/schedstat of its main thread, the event loop's) per window: a
 * window whose round trips were slow while the loop ran little and waited
 * long for a CPU was the machine's doing, not the engine's work. In the
 * storm a window also shows the checkpoints' mean round trip, the tries of
 * a due checkpoint that found every stream of its connection busy (they
 * wait 20 ms and try again), and the leader process's minor page faults a
 * second (/proc/PID/stat): tens outside a snapshot, thousands while a
 * forked child images it and the loop copies each page it writes first.
 *
 * It measures heartbeat round trips (p50, p99, max), the heartbeats offered
 * against those due, how late the sends were, and once a second the engine's
 * resident memory (VmRSS of --engine-pid). It prints a line per 10-second
 * window, the totals and PASS/FAIL against the targets of issue 16 (engine
 * RSS under 512 MiB, heartbeat p99 under 50 ms; in the storm: recovery p99
 * within 3 s, healthy throughput at 90% or more). It exits 0 when the run
 * took place, whatever the figures; 1 on a setup error, 2 on bad usage.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "h2c.h"
#include "harness.h"

#define REG_IN_FLIGHT 32  /* registrations per worker at a time */
#define SUB_IN_FLIGHT 16  /* task submissions per worker at a time */
#define POOL          512 /* requests per worker besides heartbeats (submits, checkpoints) */
/* Requests in flight per worker (its connection), below h2o's 100 concurrent
 * streams: what waits beyond them is due and late (the lateness figure
 * shows it). Before, with libcurl 7.88, transfers beyond them were parked as
 * pending and walked at every add, removal and completion; with thousands
 * parked when the engine fell behind, the load generator spent its time
 * there and sent almost nothing. */
#define MAX_STREAMS    96
#define HB_RESERVE     32 /* of them for heartbeats only */
#define MAX_HOLDS      32 /* tasks one agent holds at once */
#define MAX_THREADS    32
#define MAX_CONNS      H2C_STEP_MAX /* connections per worker (--conns) */
#define RESP_MAX       512
#define URL_LEN        192 /* a request's URL: the leader's base and the path */
#define HIST_US        50 /* histogram slots of 50 us: 2 s (RDB_HIST_SLOTS); beyond counts as over */
#define WIN_S          10
#define MAX_WINDOWS    1024
#define MAX_SECS       (MAX_WINDOWS * WIN_S)
#define RSS_LIMIT_KIB  (512 * 1024)
#define P99_LIMIT_US   50000
#define SETUP_MS       240000 /* for the fleet to register and every task to run */
#define STORM_GAP_MS   10000  /* from the last crash to the partition */
#define AFTER_MS       20000  /* measured after the heal */
#define BASE_MS        20000  /* the baseline: the warm-up's last 20 s at least (base_ms()) */
#define TARGET_MOVE_MS 3000
#define TARGET_SHARE   90.0
/* For a worker's connection to open (a replica that does not answer). */
#define OPEN_MS RDB_LEADER_STALL_MS
#define REQ_MS  5000 /* for a request's answer (a transport error after it) */

struct opts {
    const char *url, *engine_pids;
    unsigned agents, interval_ms, jitter_ms, warmup_s, duration_s, engine_pid, threads;
    unsigned tasks, ckpt_ms, crash_share, crash_spread_s, partition_share, partition_s, slots;
    unsigned task_steps, conns;
    uint64_t seed;
};

enum role { HEALTHY, DOOMED, PARTED };
enum tag { T_AGENT = 1, T_REQ, T_OPEN };
enum cause { C_NONE, C_CRASH, C_PARTITION };

struct agent {
    uint8_t tag; /* T_AGENT: a request's h2c user pointer is an agent or a req */
    uint8_t role;
    char id[24];
    long long epoch;
    char url[URL_LEN];
    char body[224];
    struct rdb_buf resp; /* grows: assignments can be long */
    bool registered, in_flight, in_queue, crashed, parted_now, reregistering;
    bool added;        /* submitted on the connection (in_flight: there or parked) */
    unsigned gen;      /* the leader's generation it was sent on */
    int64_t crash_off; /* DOOMED: ms after the storm's start */
    unsigned reg_tries;
    unsigned n_holds;
    struct rdb_hold *holds; /* MAX_HOLDS, storm only */
};

enum rkind { K_SUBMIT, K_CKPT, K_COMPLETE };

/* The requests whose answers are counted by status (non-2xx ones reported). */
enum skind { S_REGISTER, S_HEARTBEAT, S_SUBMIT, S_CKPT, S_COMPLETE, S_KINDS };
static const char *const skind_name[S_KINDS] = {"registration", "heartbeat", "submission",
                                                "checkpoint", "completion"};
#define STATUS_MAX 600

struct req {
    uint8_t tag; /* T_REQ */
    uint8_t kind;
    struct req *next_free;
    unsigned agent, slot, task;
    uint32_t attempt;
    uint64_t version;
    int64_t sent_ms;
    bool added;   /* submitted on the connection */
    unsigned gen; /* the leader's generation it was sent on */
    char url[URL_LEN], body[256];
    struct rdb_buf resp;
    char resp_mem[RESP_MAX];
};

/* What the storm knows about one task (written by the workers of the agents
 * that hold it: atomics). */
struct task {
    _Atomic int64_t lost_at;         /* monotonic ms its agent crashed or was cut off; 0: never */
    _Atomic uint32_t lost_attempt;   /* the attempt it held then */
    _Atomic uint8_t cause;           /* enum cause */
    _Atomic int64_t moved_ms;        /* lost_at to a newer attempt reaching another agent */
    _Atomic int64_t first_ckpt_ms;   /* lost_at to that attempt's first acknowledged checkpoint */
    _Atomic bool running;            /* some checkpoint was acknowledged */
    _Atomic bool moved_in_partition; /* cause C_PARTITION, moved before the heal */
    _Atomic bool moved_after_heal;   /* cause C_PARTITION, moved after it (released) */
    _Atomic uint64_t acked;          /* the highest acknowledged version of its current id */
};

struct window {
    uint64_t sent, ok, errors;
    uint64_t ck_ok, done; /* acknowledged checkpoints, completed tasks */
    int64_t ck_us;        /* their checkpoints' round trips, summed */
    uint64_t ck_deferred; /* checkpoints due that found every stream of theirs busy (tries) */
    int64_t max_us;
    struct rdb_hist *h;    /* this window's round trips */
    struct rdb_hist *h_rx; /* the same to the answer's arrival at the socket */
};

struct bench;

/* One worker: its agents (a contiguous share), its connection, its figures. */
struct worker {
    struct bench *b;
    pthread_t thread;
    unsigned index;
    struct agent *agents;
    unsigned n, first;      /* its agents are first..first+n-1 of the fleet */
    struct rdb_dueq hb, ck; /* heartbeats by agent; checkpoints by agent * MAX_HOLDS + slot */
    struct req *reqs, *free_reqs;
    struct h2c *h2[MAX_CONNS]; /* its connections (--conns), to one replica */
    unsigned n_h2;
    unsigned streams, cap; /* requests submitted on them; at most cap (MAX_STREAMS each) */
    unsigned hb_reserve;   /* of them for heartbeats only (all but MAX_STREAMS - HB_RESERVE) */
    /* Following the leader (rdb_leader): the base URL of its connection and
     * the generation it was opened for (0: none open), the requests refused
     * for want of a leader waiting to go again (agents and reqs) */
    char base[RDB_URL_MAX];
    unsigned gen;
    bool opening;     /* its connection being opened (the GET /health of open_tag), for open_gen */
    uint8_t open_tag; /* T_OPEN */
    unsigned open_gen;
    int64_t reopen_at, resend_at;
    char **parked;
    size_t n_parked, parked_cap;
    uint64_t refused_307, refused_503, failed_resent, resent, reopened, open_failed;
    uint64_t rng;
    unsigned reg_next, reg_done, reg_failed;
    unsigned sub_next, sub_in_flight; /* its tasks: index % threads == its index */
    uint64_t due, sent, ok, fenced, other, errors, skipped, reregistered, parted_fenced;
    uint64_t ck_sent, ck_ok, ck_fenced, ck_other, ck_errors, ck_deferred, hold_overflow;
    uint64_t ck_stale, done_sent, done_ok, done_refused, done_errors, resubmitted, lost;
    uint64_t answered; /* requests that ended while measuring */
    unsigned *resub;   /* churn: completed tasks' next ids waiting to be submitted (a ring) */
    size_t resub_head, resub_n, resub_cap;
    uint32_t status[S_KINDS][STATUS_MAX]; /* answers by status; [0]: no answer */
    unsigned errors_printed;
    struct rdb_hist rtt, rtt_rx, lag, ck_rtt, done_rtt;
    struct window win[MAX_WINDOWS];
    int rc;
};

struct bench {
    struct opts o;
    struct rdb_leader leader;
    unsigned pids[RDB_MAX_REPLICAS], n_pids; /* --engine-pids, by replica of --url */
    struct worker *w;
    struct task *tasks;
    atomic_uint registered, failed_reg, workers_done, submitted, sub_failed, running;
    atomic_uint resub_failed;
    atomic_bool submit;
    _Atomic int64_t measure_from; /* monotonic ms; 0 until all registered (and running) */
    _Atomic int64_t measure_to;
    /* the storm (monotonic ms; 0 until set up) */
    _Atomic int64_t storm_at, part_from, part_to;
    _Atomic uint32_t hacks[MAX_SECS];  /* healthy agents' acknowledged checkpoints per second */
    _Atomic uint32_t hdue[MAX_SECS];   /* ... and their checkpoints due then, by schedule */
    int64_t origin;                    /* hacks[0]'s second */
    long rss_first, rss_max, rss_last; /* KiB, while measuring (worker 0) */
    long rss_win[MAX_WINDOWS];
    /* The leader's loop thread (schedstat): ns on a CPU and waiting for one,
     * per window, and the last sample (0: none yet, or another leader). */
    uint64_t loop_run_win[MAX_WINDOWS], loop_wait_win[MAX_WINDOWS];
    uint64_t loop_run_last, loop_wait_last;
    /* ... and the whole process's minor page faults (the copy-on-write
     * faults a snapshot's fork leaves it show there) */
    uint64_t flt_win[MAX_WINDOWS], flt_last;
    unsigned loop_pid;
    int64_t next_rss_ms, reg_start, reg_end, sub_end, run_end;
    struct rdb_cpu_mark cpu_from; /* the load generator's CPU at the measurement's start
                                   * (worker 0); at_ms 0: not yet */
};

/* ---- windows and the engine's memory ---------------------------------------- */

/* The window `now` falls in, or -1 outside the measurement. */
static int window_index(const struct bench *b, int64_t now)
{
    int64_t from = atomic_load(&b->measure_from);
    if (from == 0 || now < from || now >= atomic_load(&b->measure_to))
        return -1;
    int64_t i = (now - from) / (WIN_S * 1000);
    return i < MAX_WINDOWS ? (int)i : -1;
}

static struct window *window_at(struct worker *w, int64_t now)
{
    int i = window_index(w->b, now);
    if (i < 0)
        return NULL;
    struct window *win = &w->win[i];
    if (win->h == NULL && (win->h = malloc(2 * sizeof(*win->h))) != NULL) {
        win->h_rx = win->h + 1;
        rdb_hist_init(win->h, HIST_US);
        rdb_hist_init(win->h_rx, HIST_US);
    }
    return win->h ? win : NULL;
}

static long rss_kib(unsigned pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%u/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* The main thread's time on a CPU and waiting on a run queue (ns) since it
 * started: the first two fields of /proc/PID/schedstat. */
static bool loop_sched(unsigned pid, uint64_t *run, uint64_t *wait)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%u/schedstat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool ok = fscanf(f, "%" SCNu64 " %" SCNu64, run, wait) == 2;
    fclose(f);
    return ok;
}

/* The process's minor page faults since it started: field 10 of
 * /proc/PID/stat (after the command's closing parenthesis, the 8th). */
static bool minor_faults(unsigned pid, uint64_t *flt)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%u/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')');
    return p != NULL && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %" SCNu64, flt) == 1;
}

/* The loop's CPU and run-queue wait since the last sample, and the
 * process's minor faults, into window i (the first sample of a process
 * only sets the mark). */
static void sample_loop(struct bench *b, unsigned pid, int i)
{
    uint64_t run, wait, flt;
    if (!loop_sched(pid, &run, &wait) || !minor_faults(pid, &flt)) {
        b->loop_pid = 0;
        return;
    }
    if (pid == b->loop_pid && run >= b->loop_run_last && wait >= b->loop_wait_last &&
        flt >= b->flt_last) {
        b->loop_run_win[i] += run - b->loop_run_last;
        b->loop_wait_win[i] += wait - b->loop_wait_last;
        b->flt_win[i] += flt - b->flt_last;
    }
    b->loop_pid = pid;
    b->loop_run_last = run, b->loop_wait_last = wait, b->flt_last = flt;
}

/* Worker 0 only: the engine's RSS once a second while measuring. */
static void sample_rss(struct bench *b, int64_t now)
{
    if ((b->o.engine_pid == 0 && b->n_pids == 0) || now < b->next_rss_ms)
        return;
    b->next_rss_ms = now + 1000;
    int i = window_index(b, now);
    unsigned pid = b->o.engine_pid;
    if (b->n_pids > 0) { /* the leader's, when it is one of --url */
        pthread_mutex_lock(&b->leader.mu);
        int at = b->leader.idx;
        pthread_mutex_unlock(&b->leader.mu);
        pid = at >= 0 && (unsigned)at < b->n_pids ? b->pids[at] : 0;
    }
    long kib = i < 0 || pid == 0 ? -1 : rss_kib(pid);
    if (kib < 0)
        return;
    sample_loop(b, pid, i);
    if (b->rss_first == 0)
        b->rss_first = kib;
    b->rss_last = kib;
    if (kib > b->rss_max)
        b->rss_max = kib;
    if (kib > b->rss_win[i])
        b->rss_win[i] = kib;
}

/* ---- transfers ------------------------------------------------------------- */

/* A run with tasks (the storm's or the steady one's). */
static bool storm(const struct bench *b)
{
    return b->o.tasks > 0;
}

/* Tasks without a storm (no agent crashes nor is cut off): a steady fleet
 * with tasks, measured for --duration, as the soak runs it. */
static bool steady(const struct bench *b)
{
    return b->o.tasks > 0 && b->o.crash_share + b->o.partition_share == 0;
}

/* Counts an answer of kind `k` by its HTTP status (0: none came). */
static void count_status(struct worker *w, enum skind k, CURLcode rc, long status)
{
    long s = rc != CURLE_OK || status < 0 || status >= STATUS_MAX ? 0 : status;
    w->status[k][s]++;
}

static void park(struct worker *w, char *priv);

/* A request's path: its URL from the base on. */
static const char *path_of(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    return p ? p : "/";
}

/* Submits the request of `priv` (an agent or a req: POST, or PUT for a
 * checkpoint) on the worker's connection; when it takes none now (it broke
 * or is full) the request is parked, still in flight for its agent, and
 * goes again once the connection is (re)opened (resend_parked). True when
 * submitted. */
static bool send_on(struct worker *w, char *priv, const char *url, const char *body, bool put,
                    struct rdb_buf *resp)
{
    rdb_buf_clear(resp);
    struct h2c *c = w->h2[0];
    for (unsigned i = 1; i < w->n_h2; i++)
        if (h2c_room(w->h2[i]) > h2c_room(c))
            c = w->h2[i];
    if (h2c_submit(c, put ? "PUT" : "POST", path_of(url), body, strlen(body), REQ_MS, priv) == 0) {
        w->streams++;
        return true;
    }
    park(w, priv);
    return false;
}

static void start_transfer(struct worker *w, struct agent *a, const char *body)
{
    a->in_flight = true;
    a->gen = w->gen;
    a->added = send_on(w, (char *)a, a->url, body, false, &a->resp);
}

static void start_register(struct worker *w, struct agent *a)
{
    snprintf(a->url, sizeof(a->url), "%s/api/v1/nodes", w->base);
    snprintf(a->body, sizeof(a->body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":%u}}", a->id,
             w->b->o.slots);
    a->registered = false;
    start_transfer(w, a, a->body);
}

static struct req *req_get(struct worker *w)
{
    struct req *r = w->free_reqs;
    if (r != NULL)
        w->free_reqs = r->next_free;
    return r;
}

static void req_put(struct worker *w, struct req *r)
{
    r->next_free = w->free_reqs;
    w->free_reqs = r;
}

/* Sends `r` (or parks it: send_on); true, it is in flight either way. */
static bool req_start(struct worker *w, struct req *r, bool put)
{
    r->sent_ms = rdt_now_ms();
    r->gen = w->gen;
    r->added = send_on(w, (char *)r, r->url, r->body, put, &r->resp);
    return true;
}

/* The number in a task id: below --tasks, or (with churn) any, task n
 * being the (n / tasks)-th successor of task n % tasks. */
static unsigned task_index(const struct bench *b, const char *id)
{
    unsigned i = rdb_task_index(id);
    return i < b->o.tasks || (b->o.task_steps > 0 && i != UINT32_MAX) ? i : UINT32_MAX;
}

/*
 * With churn, whether task number n has taken its steps at `version`: the
 * first --tasks take 1 to --task-steps of them (n % steps + 1), their
 * successors all of them. Otherwise the first tasks, submitted together,
 * would end together and so would their successors: completions and
 * submissions in waves, all within a few seconds of each cycle.
 */
static bool steps_done(const struct bench *b, unsigned n, uint64_t version)
{
    unsigned s = b->o.task_steps;
    return s > 0 && version >= (n < b->o.tasks ? n % s + 1 : s);
}

/* What the run knows of task number n (shared by its successors). */
static struct task *task_of(struct bench *b, unsigned n)
{
    return &b->tasks[n % b->o.tasks];
}

static void second_add(_Atomic uint32_t *per_sec, const struct bench *b, int64_t at)
{
    int64_t s = (at - b->origin) / 1000;
    if (s >= 0 && s < MAX_SECS)
        atomic_fetch_add(&per_sec[s], 1);
}

static void ck_schedule(struct worker *w, struct agent *a, unsigned slot, int64_t due)
{
    a->holds[slot].due = due;
    rdb_dueq_push(&w->ck, due, (unsigned)(a - w->agents) * MAX_HOLDS + slot);
}

/* The next checkpoint of the task in `slot` on its schedule (not a retry
 * of one the pool deferred): counted as due for a healthy agent's task
 * that never moved, whose acknowledgements second_add counts. The tasks'
 * checkpoints come in waves (each task checkpoints every ckpt_ms from
 * when it started, and the setup started them unevenly), so a phase of
 * the storm shorter than ckpt_ms sees more or fewer of them than the
 * average: throughput is measured against what was due. */
static void ck_schedule_next(struct worker *w, struct agent *a, unsigned slot, int64_t due)
{
    struct bench *b = w->b;
    if (a->role == HEALTHY && atomic_load(&task_of(b, a->holds[slot].task)->lost_at) == 0)
        second_add(b->hdue, b, due);
    ck_schedule(w, a, slot, due);
}

/* A task of an agent that crashed or was cut off: from then on a newer
 * attempt on another agent is its recovery. */
static void mark_lost(struct bench *b, struct agent *a, int64_t at, enum cause c)
{
    for (unsigned i = 0; i < a->n_holds; i++) {
        struct rdb_hold *h = &a->holds[i];
        if (!h->active)
            continue;
        struct task *t = task_of(b, h->task);
        atomic_store(&t->lost_attempt, h->attempt);
        atomic_store(&t->cause, (uint8_t)c);
        atomic_store(&t->lost_at, at);
    }
}

/* A heartbeat answer being read: the worker and agent it answered, and when. */
struct answer {
    struct worker *w;
    struct agent *a;
    int64_t now;
};

/* One entry of a heartbeat answer's `assignments`. */
static void take(void *ctx, const struct rdb_assignment *as)
{
    struct answer *ans = ctx;
    struct worker *w = ans->w;
    struct agent *a = ans->a;
    int64_t now = ans->now;
    struct bench *b = w->b;
    unsigned ti = task_index(b, as->task_id);
    long long attempt = as->attempt;
    uint64_t version = as->version;
    if (ti == UINT32_MAX || attempt < 1)
        return;
    int slot = rdb_hold_slot(a->holds, &a->n_holds, MAX_HOLDS, ti, (uint32_t)attempt);
    if (slot == -2)
        w->hold_overflow++;
    if (slot < 0)
        return;
    struct rdb_hold *h = &a->holds[slot];
    bool busy = h->in_flight && h->task == ti;
    struct task *t = task_of(b, ti);
    /* Handed over below a version acknowledged before: a checkpoint lost. */
    if (version < atomic_load(&t->acked) && w->lost++ < 3)
        fprintf(stderr,
                "loadgen: task %u handed to %s (attempt %lld) at version %llu, below the "
                "acknowledged %llu\n",
                ti, a->id, attempt, (unsigned long long)version,
                (unsigned long long)atomic_load(&t->acked));
    *h = (struct rdb_hold){.task = ti,
                           .attempt = (uint32_t)attempt,
                           .version = version,
                           .active = true,
                           .in_flight = busy};
    ck_schedule_next(w, a, (unsigned)slot, now); /* it checkpoints at once when it starts a task */
    int64_t lost = atomic_load(&t->lost_at), zero = 0;
    if (lost != 0 && (uint32_t)attempt > atomic_load(&t->lost_attempt) &&
        atomic_compare_exchange_strong(&t->moved_ms, &zero, now > lost ? now - lost : 1) &&
        atomic_load(&t->cause) == C_PARTITION)
        atomic_store(now < atomic_load(&b->part_to) ? &t->moved_in_partition : &t->moved_after_heal,
                     true);
}

static void drop(void *ctx, const char *task_id)
{
    struct answer *ans = ctx;
    struct agent *a = ans->a;
    unsigned ti = task_index(ans->w->b, task_id);
    for (unsigned i = 0; ti != UINT32_MAX && i < a->n_holds; i++)
        if (a->holds[i].task == ti)
            a->holds[i].active = false;
}

static void on_registered(struct worker *w, struct agent *a, CURLcode rc, long status)
{
    struct bench *b = w->b;
    count_status(w, S_REGISTER, rc, status);
    a->epoch = rdb_epoch_of(status, a->resp.p);
    if (a->reregistering) {
        if (a->epoch <= 0) { /* tried again at its next heartbeat */
            w->errors_printed++;
            return;
        }
        a->reregistering = false;
        a->registered = true;
        snprintf(a->url, sizeof(a->url), "%s/api/v1/nodes/%s/heartbeat", w->base, a->id);
        return;
    }
    if (a->epoch <= 0 && (status == 503 || status == 429 || status == 0) && a->reg_tries++ < 20) {
        start_register(w, a); /* an election or a busy edge: again */
        return;
    }
    w->reg_done++;
    if (a->epoch <= 0) {
        if (w->reg_failed++ < 3)
            fprintf(stderr, "loadgen: registering %s: %s, HTTP %ld: %.200s\n", a->id,
                    curl_easy_strerror(rc), status, a->resp.p ? a->resp.p : "");
        atomic_fetch_add(&b->failed_reg, 1);
        return;
    }
    atomic_fetch_add(&b->registered, 1);
    a->registered = true;
    snprintf(a->url, sizeof(a->url), "%s/api/v1/nodes/%s/heartbeat", w->base, a->id);
    /* The first heartbeat at a random point of its first interval. */
    a->in_queue = true;
    rdb_dueq_push(&w->hb, rdt_now_ms() + (int64_t)rdb_uniform(&w->rng, 0, b->o.interval_ms),
                  (unsigned)(a - w->agents));
}

static void on_heartbeat_done(struct worker *w, struct agent *a, CURLcode rc, long status,
                              int64_t us, int64_t rx_us)
{
    int64_t now = rdt_now_ms();
    struct window *win = window_at(w, now);
    count_status(w, S_HEARTBEAT, rc, status);
    if (rc != CURLE_OK) {
        if (win) {
            w->errors++;
            win->errors++;
        }
        if (w->errors_printed++ < 3)
            fprintf(stderr, "loadgen: heartbeat of %s: %s\n", a->id, curl_easy_strerror(rc));
        return;
    }
    if (status == 409) {
        /* Declared failed while it runs: it drops its tasks and registers
         * again (a new epoch), as an agent does. */
        if (win)
            w->fenced++;
        if (a->role == PARTED && atomic_load(&w->b->part_from) != 0)
            w->parted_fenced++;
        for (unsigned i = 0; i < a->n_holds; i++)
            a->holds[i].active = false;
        w->reregistered++;
        a->reregistering = true;
        start_register(w, a);
        return;
    }
    if (win) {
        rdb_hist_add(&w->rtt, us);
        rdb_hist_add(&w->rtt_rx, rx_us);
        rdb_hist_add(win->h, us);
        rdb_hist_add(win->h_rx, rx_us);
        if (us > win->max_us)
            win->max_us = us;
        if (status == 200) {
            w->ok++;
            win->ok++;
        } else if (w->other++ < 3) {
            fprintf(stderr, "loadgen: heartbeat of %s: HTTP %ld %.200s\n", a->id, status,
                    a->resp.p ? a->resp.p : "");
        }
    }
    if (!storm(w->b) || status != 200 || a->crashed)
        return;
    rdb_heartbeat_answer(a->resp.p, take, drop, &(struct answer){w, a, now});
}

/* True when it sent the submission again (an election, a busy engine:
 * submitting is idempotent by task_id). */
static bool on_submitted(struct worker *w, struct req *r, CURLcode rc, long status)
{
    struct bench *b = w->b;
    bool first = r->task < b->o.tasks; /* else a completed task's successor */
    count_status(w, S_SUBMIT, rc, status);
    if (rc == CURLE_OK && (status == 201 || status == 200)) {
        w->sub_in_flight--;
        if (first)
            atomic_fetch_add(&b->submitted, 1);
        else
            w->resubmitted++;
        return false;
    }
    bool again = status == 0 || status == 429 || status >= 500;
    if (w->errors_printed++ < 3)
        fprintf(stderr, "loadgen: submitting task %u: %s, HTTP %ld: %.200s%s\n", r->task,
                curl_easy_strerror(rc), status, r->resp.p ? r->resp.p : "",
                again && r->version < 20 ? " (again)" : "");
    if (again && r->version++ < 20) {
        r->gen = w->gen;
        r->added = send_on(w, (char *)r, r->url, r->body, false, &r->resp);
        return true;
    }
    w->sub_in_flight--;
    atomic_fetch_add(first ? &b->sub_failed : &b->resub_failed, 1);
    return false;
}

static void on_checkpoint(struct worker *w, struct req *r, CURLcode rc, long status)
{
    struct bench *b = w->b;
    struct agent *a = &w->agents[r->agent];
    struct rdb_hold *h = &a->holds[r->slot];
    struct task *t = task_of(b, r->task);
    bool mine = h->active && h->task == r->task && h->attempt == r->attempt;
    if (h->task == r->task)
        h->in_flight = false;
    int64_t now = rdt_now_ms();
    count_status(w, S_CKPT, rc, status);
    if (rc != CURLE_OK) {
        w->ck_errors++;
        return;
    }
    if (status == 200) {
        w->ck_ok++;
        int64_t us = (now - r->sent_ms) * 1000;
        rdb_hist_add(&w->ck_rtt, us);
        struct window *win = window_at(w, now);
        if (win) {
            win->ck_ok++;
            win->ck_us += us;
        }
        uint64_t acked = atomic_load(&t->acked);
        while (r->version > acked && !atomic_compare_exchange_weak(&t->acked, &acked, r->version))
            ;
        if (mine)
            h->version = r->version;
        if (mine && steps_done(b, r->task, h->version))
            ck_schedule(w, a, r->slot, now); /* its last step: it completes at once */
        bool was = false;
        if (atomic_compare_exchange_strong(&t->running, &was, true))
            atomic_fetch_add(&b->running, 1);
        if (a->role == HEALTHY && atomic_load(&t->lost_at) == 0)
            second_add(b->hacks, b, now);
        int64_t lost = atomic_load(&t->lost_at), zero = 0;
        if (lost != 0 && r->attempt > atomic_load(&t->lost_attempt))
            atomic_compare_exchange_strong(&t->first_ckpt_ms, &zero, now > lost ? now - lost : 1);
    } else if (status == 409) {
        w->ck_fenced++;
        if (mine && strstr(r->resp.p ? r->resp.p : "", "stale_version")) {
            w->ck_stale++;
            h->version += 100; /* someone wrote above it: write above that */
        } else if (mine)
            h->active = false; /* moved away: fenced */
    } else if (w->ck_other++ < 3) {
        fprintf(stderr, "loadgen: checkpoint of task %u: HTTP %ld %.200s\n", r->task, status,
                r->resp.p ? r->resp.p : "");
    }
}

/* Task number n completed: its successor n + tasks waits to be submitted,
 * so that --tasks stay live. */
static void resubmit_later(struct worker *w, unsigned n)
{
    struct bench *b = w->b;
    atomic_store(&task_of(b, n)->acked, 0);
    if (w->resub_n == w->resub_cap || n > UINT32_MAX - 1 - b->o.tasks) {
        atomic_fetch_add(&b->resub_failed, 1);
        return;
    }
    w->resub[(w->resub_head + w->resub_n++) % w->resub_cap] = n + b->o.tasks;
}

static void on_completed(struct worker *w, struct req *r, CURLcode rc, long status)
{
    struct agent *a = &w->agents[r->agent];
    struct rdb_hold *h = &a->holds[r->slot];
    bool mine = h->active && h->task == r->task && h->attempt == r->attempt;
    int64_t now = rdt_now_ms();
    count_status(w, S_COMPLETE, rc, status);
    if (h->task == r->task) {
        h->in_flight = false;
        h->completing = false;
    }
    if (rc == CURLE_OK && status == 200) {
        w->done_ok++;
        rdb_hist_add(&w->done_rtt, (now - r->sent_ms) * 1000);
        struct window *win = window_at(w, now);
        if (win)
            win->done++;
        if (mine)
            h->active = false;
        resubmit_later(w, r->task);
        return;
    }
    bool again = rc != CURLE_OK || status == 429 || status >= 500;
    if (!again) { /* 409: fenced (moved on) or ended otherwise; 404: gone */
        if (w->done_refused++ < 3)
            fprintf(stderr, "loadgen: completing task %u: HTTP %ld %.200s\n", r->task, status,
                    r->resp.p ? r->resp.p : "");
        if (mine)
            h->active = false;
        return;
    }
    w->done_errors++;
    if (mine)
        ck_schedule(w, a, r->slot, now + 1000); /* the same attempt again: idempotent */
}

/* ---- following the leader ------------------------------------------------------ */

/* A request to send again once there is a leader (it stays in flight for its
 * agent meanwhile). */
static void park(struct worker *w, char *priv)
{
    if (w->n_parked < w->parked_cap)
        w->parked[w->n_parked++] = priv;
}

/*
 * Whether the answer `d` to a request sent on generation `gen` refused it
 * for want of a leader (a follower's 307, 503 not_leader or no_quorum) or
 * came from a leader that is gone (rdb_leader_failed): then the leader's
 * URL is updated (rdb_leader) and the caller parks the request. Any other
 * answer tells that a leader answers.
 */
static bool refused(struct worker *w, const struct rdb_done *d, unsigned gen, const char *body)
{
    struct rdb_leader *l = &w->b->leader;
    int64_t now = rdt_now_ms();
    char named[RDB_URL_MAX];
    if (d->rc != CURLE_OK) {
        if (!rdb_leader_failed(l, gen, d->rc, now))
            return false; /* one failure, the leader still answers: counted as before */
        w->failed_resent++;
        return true;
    }
    if (!rdb_not_leader(d->status, body, named, sizeof(named))) {
        if (d->status < 500)
            rdb_leader_ok(l, now);
        return false;
    }
    if (d->status == 307)
        w->refused_307++;
    else
        w->refused_503++;
    rdb_leader_refused(l, gen, named, now);
    if (gen == rdb_leader_gen(l))
        w->resend_at = now + RDB_LEADER_RETRY_MS; /* no switch (an election): again later */
    return true;
}

/* Whether agent `a` reaches nothing at `now`: it crashed, or the partition
 * cuts it off. */
static bool silent(struct bench *b, const struct agent *a, int64_t now)
{
    int64_t at = atomic_load(&b->storm_at);
    int64_t from = atomic_load(&b->part_from), to = atomic_load(&b->part_to);
    return at != 0 && ((a->role == DOOMED && now >= at + a->crash_off) ||
                       (a->role == PARTED && from != 0 && now >= from && now < to));
}

/* A parked request of an agent that went silent meanwhile: it sends
 * nothing again (its checkpoint is no longer in flight); true then. */
static bool drop_silent(struct worker *w, char *priv, int64_t now)
{
    if ((uint8_t)priv[0] != T_REQ) {
        struct agent *a = (struct agent *)priv;
        if (!silent(w->b, a, now))
            return false;
        a->in_flight = false;
        return true;
    }
    struct req *r = (struct req *)priv;
    if (r->kind == K_SUBMIT || !silent(w->b, &w->agents[r->agent], now))
        return false;
    struct rdb_hold *h = &w->agents[r->agent].holds[r->slot];
    if (h->task == r->task)
        h->in_flight = h->completing = false;
    req_put(w, r);
    return true;
}

/* Sends parked requests again on the connection in use, as many as there
 * are free streams. */
static void resend_parked(struct worker *w)
{
    int64_t now = rdt_now_ms();
    while (w->n_parked > 0 && w->streams < w->cap) {
        char *priv = w->parked[--w->n_parked];
        char *url, *body;
        struct rdb_buf *resp;
        bool *added, put = false;
        unsigned *gen;
        if (drop_silent(w, priv, now))
            continue;
        if ((uint8_t)priv[0] == T_REQ) {
            struct req *r = (struct req *)priv;
            url = r->url, body = r->body, resp = &r->resp, added = &r->added, gen = &r->gen;
            put = r->kind == K_CKPT;
        } else {
            struct agent *a = (struct agent *)priv;
            url = a->url, body = a->body, resp = &a->resp, added = &a->added, gen = &a->gen;
        }
        rdb_rebase_url(url, URL_LEN, w->base);
        *gen = w->gen;
        *added = send_on(w, priv, url, body, put, resp); /* parked again when not */
        w->resent++;
        if (!*added)
            break;
    }
}

static void opened(struct worker *w, bool ok);

/*
 * The leader moved (or the connection never opened, or broke): every
 * request still in flight on it is parked and a connection to the new base
 * URL is opened, within the worker's loop (h2c connects without blocking
 * and a GET /health on it tells that it speaks HTTP/2: the loop goes on
 * meanwhile, and an opening overtaken by another switch is dropped for the
 * newer one); once it is open (opened()) the parked requests are sent
 * there. When it cannot be opened within OPEN_MS (connected within
 * RDB_H2_CONNECT_MS) the next replica is tried (rdb_leader_failed) and the
 * worker tries again 100 ms later.
 */
static void reconnect(struct worker *w)
{
    struct bench *b = w->b;
    for (unsigned i = 0; i < w->n; i++) {
        struct agent *a = &w->agents[i];
        if (a->added) {
            a->added = false;
            w->streams--;
            park(w, (char *)a);
        }
    }
    for (unsigned i = 0; w->reqs && i < POOL; i++) {
        struct req *r = &w->reqs[i];
        if (r->added) {
            r->added = false;
            w->streams--;
            park(w, (char *)r);
        }
    }
    for (unsigned i = 0; i < w->n_h2; i++)
        h2c_drop(w->h2[i]); /* forgets what was in flight: parked above */
    w->gen = 0;
    w->open_gen = rdb_leader_get(&b->leader, w->base, sizeof(w->base));
    /* The first connection's GET /health tells that the replica speaks
     * HTTP/2; the others' requests wait for their connect (a failure
     * ends them as a lost leader does). */
    w->opening = true;
    for (unsigned i = 0; i < w->n_h2 && w->opening; i++)
        w->opening = h2c_connect(w->h2[i], w->base, RDB_H2_CONNECT_MS) == 0;
    w->opening =
        w->opening && h2c_submit(w->h2[0], "GET", "/health", NULL, 0, OPEN_MS, &w->open_tag) == 0;
    if (!w->opening) {
        for (unsigned i = 0; i < w->n_h2; i++)
            h2c_drop(w->h2[i]);
        opened(w, false);
    }
}

/* The opening of the worker's connection finished (`ok`: it speaks
 * HTTP/2), or could not start. */
static void opened(struct worker *w, bool ok)
{
    struct rdb_leader *l = &w->b->leader;
    int64_t now = rdt_now_ms();
    if (!ok) {
        w->open_failed++;
        rdb_leader_failed(l, w->open_gen, CURLE_COULDNT_CONNECT, now);
        w->reopen_at = now + 100;
        return;
    }
    w->reopened++;
    if (w->open_gen != rdb_leader_gen(l))
        return; /* the leader moved meanwhile: the loop reconnects */
    w->gen = w->open_gen;
    resend_parked(w);
}

/* An h2c error as the libcurl result the handlers and rdb_leader_failed
 * know (a refused connection is CURLE_COULDNT_CONNECT there too). */
static CURLcode curl_rc(int err)
{
    switch (err) {
    case H2C_OK:
        return CURLE_OK;
    case H2C_ECONNECT:
        return CURLE_COULDNT_CONNECT;
    case H2C_ETIMEOUT:
        return CURLE_OPERATION_TIMEDOUT;
    case H2C_ERESET:
        return CURLE_HTTP2_STREAM;
    default:
        return CURLE_RECV_ERROR;
    }
}

/* A request of the worker's connection ended (h2c's callback, within
 * h2c_step). */
static void on_done(void *ctx, const struct h2c_resp *hr)
{
    struct worker *w = ctx;
    char *priv = hr->user;
    struct rdb_done d = {.priv = priv,
                         .rc = curl_rc(hr->err),
                         .status = hr->status,
                         .us = hr->us,
                         .rx_us = hr->rx_us};
    if ((uint8_t)priv[0] == T_OPEN) {
        w->opening = false;
        opened(w, hr->err == H2C_OK);
        return;
    }
    w->streams--;
    if (window_index(w->b, rdt_now_ms()) >= 0)
        w->answered++;
    if ((uint8_t)priv[0] == T_REQ) {
        struct req *r = (struct req *)priv;
        r->added = false;
        rdb_buf_write((char *)hr->body, 1, hr->len, &r->resp);
        if (refused(w, &d, r->gen, r->resp.p)) {
            park(w, priv);
            return;
        }
        if (r->kind == K_SUBMIT && on_submitted(w, r, d.rc, d.status))
            return;
        if (r->kind == K_CKPT)
            on_checkpoint(w, r, d.rc, d.status);
        if (r->kind == K_COMPLETE)
            on_completed(w, r, d.rc, d.status);
        req_put(w, r);
        return;
    }
    struct agent *a = (struct agent *)priv;
    a->added = false;
    rdb_buf_write((char *)hr->body, 1, hr->len, &a->resp);
    if (refused(w, &d, a->gen, a->resp.p)) {
        park(w, priv);
        return;
    }
    a->in_flight = false;
    if (a->registered)
        on_heartbeat_done(w, a, d.rc, d.status, d.us, d.rx_us);
    else
        on_registered(w, a, d.rc, d.status);
}

static void register_more(struct worker *w)
{
    while (w->reg_next < w->n && w->reg_next - w->reg_done < REG_IN_FLIGHT &&
           w->streams < w->cap - w->hb_reserve)
        start_register(w, &w->agents[w->reg_next++]);
}

/* This worker's share of the tasks (index % threads == its index). */
static void submit_more(struct worker *w)
{
    struct bench *b = w->b;
    unsigned nt = b->o.threads;
    while (atomic_load(&b->submit) && w->sub_in_flight < SUB_IN_FLIGHT &&
           w->streams < w->cap - w->hb_reserve) {
        unsigned ti = w->sub_next * nt + w->index;
        bool again = ti >= b->o.tasks; /* its share went out: completed tasks' successors */
        if (again && w->resub_n == 0)
            return;
        struct req *r = req_get(w);
        if (r == NULL)
            return;
        if (again) {
            ti = w->resub[w->resub_head];
            w->resub_head = (w->resub_head + 1) % w->resub_cap;
            w->resub_n--;
        } else {
            w->sub_next++;
        }
        r->kind = K_SUBMIT;
        r->task = ti;
        r->version = 0; /* here: the tries */
        snprintf(r->url, sizeof(r->url), "%s/api/v1/tasks", w->base);
        snprintf(r->body, sizeof(r->body),
                 "{\"task_id\":\"" RDB_TASK_PREFIX "%012u\",\"priority\":%u,\"payload\":{\"n\":%u},"
                 "\"requirements\":{\"slots\":1}}",
                 ti, ti % 10, ti);
        if (req_start(w, r, false))
            w->sub_in_flight++;
    }
}

/* The storm's events for agent `a` at its due heartbeat: its crash, the
 * partition's start and heal. False when it sends nothing now. */
static bool storm_allows(struct worker *w, struct agent *a, int64_t now)
{
    struct bench *b = w->b;
    int64_t at = atomic_load(&b->storm_at);
    if (at == 0 || now < at)
        return true;
    if (a->role == DOOMED && now >= at + a->crash_off) {
        if (!a->crashed) {
            a->crashed = true;
            mark_lost(b, a, at + a->crash_off, C_CRASH);
        }
        return false;
    }
    int64_t from = atomic_load(&b->part_from), to = atomic_load(&b->part_to);
    if (a->role == PARTED && from != 0 && now >= from && now < to) {
        if (!a->parted_now) {
            a->parted_now = true;
            mark_lost(b, a, from, C_PARTITION);
        }
        return false;
    }
    a->parted_now = false; /* healed (its tasks keep their marks: moved or not) */
    return true;
}

/* Sends every heartbeat that is due; returns ms until the next one. */
static int64_t send_due(struct worker *w)
{
    const struct opts *o = &w->b->o;
    int64_t now = rdt_now_ms();
    struct rdb_due d = {0};
    while (w->streams < w->cap && rdb_dueq_pop_due(&w->hb, now, &d)) {
        struct agent *a = &w->agents[d.idx];
        int64_t next = d.due + rdb_jittered_ms(&w->rng, o->interval_ms, o->jitter_ms);
        if (next < now - (int64_t)o->interval_ms)
            next = now; /* fell far behind: no catching up in a burst */
        bool live = storm_allows(w, a, now);
        if (a->crashed)
            continue; /* out of the queue for good */
        rdb_dueq_push(&w->hb, next, d.idx);
        if (!live || a->reregistering) {
            if (a->reregistering && !a->in_flight)
                start_register(w, a); /* the last try failed: again */
            continue;
        }
        struct window *win = window_at(w, now);
        if (win)
            w->due++;
        if (a->in_flight) {
            if (win)
                w->skipped++;
            continue;
        }
        if (win) {
            rdb_hist_add(&w->lag, (now - d.due) * 1000);
            w->sent++;
            win->sent++;
        }
        double cpu = 0.30 + rdb_uniform(&w->rng, -0.03, 0.03);
        unsigned used = 0;
        for (unsigned i = 0; i < a->n_holds; i++)
            used += a->holds[i].active;
        snprintf(a->body, sizeof(a->body),
                 "{\"epoch\":%lld,\"load\":{\"slots_used\":%u},\"metrics\":{\"error_rate\":"
                 "0.01,\"latency_ms\":20,\"cpu\":%.3f,\"mem\":0.4}}",
                 a->epoch, used, cpu);
        start_transfer(w, a, a->body);
    }
    if (w->streams >= w->cap)
        return 100; /* full: a completion wakes the poll */
    return d.due > now ? d.due - now : 100;
}

/* Sends every checkpoint that is due; returns ms until it should look
 * again (while the connection or the pool is full, overdue entries stay on
 * top: waiting for them by their due time would spin). */
static int64_t send_checkpoints(struct worker *w)
{
    struct bench *b = w->b;
    int64_t now = rdt_now_ms(), at = atomic_load(&b->storm_at);
    int64_t from = atomic_load(&b->part_from), to = atomic_load(&b->part_to);
    struct rdb_due d = {0};
    while (rdb_dueq_pop_due(&w->ck, now, &d)) {
        struct agent *a = &w->agents[d.idx / MAX_HOLDS];
        unsigned slot = d.idx % MAX_HOLDS;
        struct rdb_hold *h = &a->holds[slot];
        if (!h->active || h->due != d.due || a->crashed || !a->registered ||
            (a->role == DOOMED && at != 0 && now >= at + a->crash_off))
            continue; /* stale, dropped or dead: out of the queue */
        int64_t next = now + rdb_jittered_ms(&w->rng, b->o.ckpt_ms, b->o.ckpt_ms / 10);
        bool cut = a->role == PARTED && from != 0 && now >= from && now < to;
        if (cut || h->in_flight) {
            ck_schedule_next(w, a, slot, next);
            continue;
        }
        struct req *r = w->streams < w->cap - w->hb_reserve ? req_get(w) : NULL;
        if (r == NULL) {
            w->ck_deferred++;
            struct window *win = window_at(w, now);
            if (win)
                win->ck_deferred++;
            ck_schedule(w, a, slot, now + 20);
            return 20;
        }
        r->agent = d.idx / MAX_HOLDS;
        r->slot = slot;
        r->task = h->task;
        r->attempt = h->attempt;
        if (steps_done(b, h->task, h->version)) {
            /* Its steps are done: it completes (not scheduled again; a
             * failed try is, by on_completed). */
            r->kind = K_COMPLETE;
            r->version = h->version;
            snprintf(r->url, sizeof(r->url), "%s/api/v1/tasks/" RDB_TASK_PREFIX "%012u/complete",
                     w->base, h->task);
            snprintf(r->body, sizeof(r->body),
                     "{\"attempt\":%u,\"result\":{\"steps\":%llu},\"node_id\":\"%s\"}", h->attempt,
                     (unsigned long long)h->version, a->id);
            if (req_start(w, r, false)) {
                h->in_flight = h->completing = true;
                w->done_sent++;
            }
            continue;
        }
        r->kind = K_CKPT;
        r->version = h->version + 1;
        snprintf(r->url, sizeof(r->url), "%s/api/v1/tasks/" RDB_TASK_PREFIX "%012u/checkpoint",
                 w->base, h->task);
        snprintf(r->body, sizeof(r->body),
                 "{\"attempt\":%u,\"version\":%llu,\"data\":{\"n\":%llu}}", h->attempt,
                 (unsigned long long)r->version, (unsigned long long)r->version);
        if (!req_start(w, r, true))
            continue;
        h->in_flight = true;
        w->ck_sent++;
        ck_schedule_next(w, a, slot, next);
    }
    return w->ck.n > 0 && d.due > now ? d.due - now : 100;
}

/* ---- the workers ---------------------------------------------------------------- */

/* Who crashes and who is partitioned: a share of the fleet each, spread
 * over it by the seed. */
static enum role role_of(struct bench *b, uint64_t *rng)
{
    double x = rdb_uniform(rng, 0, 100);
    if (!storm(b))
        return HEALTHY;
    if (x < b->o.crash_share)
        return DOOMED;
    return x < b->o.crash_share + b->o.partition_share ? PARTED : HEALTHY;
}

static int worker_init(struct bench *b, struct worker *w, unsigned first, unsigned n, unsigned t)
{
    w->b = b;
    w->n = n;
    w->first = first;
    w->index = t;
    w->rng = rdb_seed(b->o.seed + t);
    rdb_hist_init(&w->rtt, HIST_US);
    rdb_hist_init(&w->rtt_rx, HIST_US);
    rdb_hist_init(&w->lag, HIST_US);
    rdb_hist_init(&w->ck_rtt, HIST_US);
    rdb_hist_init(&w->done_rtt, HIST_US);
    w->agents = calloc(n, sizeof(*w->agents));
    w->n_h2 = b->o.conns;
    w->cap = MAX_STREAMS * w->n_h2;
    /* The connections past the first carry heartbeats only: the
     * checkpoints' and submissions' share stays one connection's, so the
     * offered checkpoint load is the same whatever --conns (with more, the
     * leader took every checkpoint a slow moment had queued at once and
     * fell behind: 2,324 checkpoint timeouts in a 10,000-agent storm). */
    w->hb_reserve = w->cap - (MAX_STREAMS - HB_RESERVE);
    for (unsigned i = 0; i < w->n_h2; i++)
        if ((w->h2[i] = h2c_new(MAX_STREAMS, on_done, w)) == NULL)
            return -1;
    w->open_tag = T_OPEN;
    w->parked_cap = (size_t)n + POOL;
    w->parked = calloc(w->parked_cap, sizeof(*w->parked));
    if (!w->agents || !w->parked || rdb_dueq_init(&w->hb, n) != 0)
        return -1;
    if (storm(b)) {
        w->reqs = calloc(POOL, sizeof(*w->reqs));
        if (w->reqs == NULL || rdb_dueq_init(&w->ck, (size_t)n * MAX_HOLDS * 4) != 0)
            return -1;
        w->resub_cap = b->o.tasks;
        if (b->o.task_steps > 0 && (w->resub = calloc(w->resub_cap, sizeof(*w->resub))) == NULL)
            return -1;
        for (unsigned i = 0; i < POOL; i++) {
            struct req *r = &w->reqs[i];
            r->tag = T_REQ;
            rdb_buf_fixed(&r->resp, r->resp_mem, sizeof(r->resp_mem));
            req_put(w, r);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        struct agent *a = &w->agents[i];
        a->tag = T_AGENT;
        snprintf(a->id, sizeof(a->id), "scale-%05u", first + i + 1);
        a->role = (uint8_t)role_of(b, &w->rng);
        a->crash_off = (int64_t)rdb_uniform(&w->rng, 0, b->o.crash_spread_s * 1000.0);
        if (storm(b) && (a->holds = calloc(MAX_HOLDS, sizeof(*a->holds))) == NULL)
            return -1;
    }
    return 0;
}

static void worker_free(struct worker *w)
{
    for (unsigned i = 0; i < w->n_h2; i++)
        h2c_free(w->h2[i]);
    for (unsigned i = 0; w->agents && i < w->n; i++) {
        struct agent *a = &w->agents[i];
        rdb_buf_free(&a->resp);
        free(a->holds);
    }
    for (unsigned i = 0; i < MAX_WINDOWS; i++)
        free(w->win[i].h);
    rdb_dueq_free(&w->hb);
    rdb_dueq_free(&w->ck);
    free(w->reqs);
    free(w->resub);
    free(w->parked);
    free(w->agents);
}

/*
 * The baseline's length, the end of the warm-up: BASE_MS or all of a
 * shorter warm-up, stretched or cut to whole checkpoint intervals when the
 * warm-up holds one. Tasks submitted within a few seconds checkpoint in
 * waves of one interval; with 30 s between checkpoints, the last 20 s of
 * the warm-up held two thirds of a wave and set the baseline by where the
 * wave fell (450/s against 341/s over whole intervals in a 2,000-agent run).
 */
static int64_t base_ms(const struct opts *o)
{
    int64_t w = (int64_t)o->warmup_s * 1000, p = o->ckpt_ms;
    int64_t base = w < BASE_MS ? w : BASE_MS;
    if (p <= w)
        base = ((base > p ? base : p) / p) * p;
    return base;
}

/* Worker 0's steps from one phase to the next. True to go on, false when
 * the run cannot take place. */
static bool coordinate(struct bench *b, int64_t now)
{
    const struct opts *o = &b->o;
    unsigned done = atomic_load(&b->registered) + atomic_load(&b->failed_reg);
    if (b->reg_end == 0 && done == o->agents) {
        b->reg_end = now;
        if (atomic_load(&b->failed_reg) > 0) {
            fprintf(stderr, "loadgen: %u of %u agents could not register\n",
                    atomic_load(&b->failed_reg), o->agents);
            return false;
        }
        fprintf(stderr, "loadgen: %u agents registered in %.1f s\n", o->agents,
                (double)(now - b->reg_start) / 1000);
        if (!storm(b)) {
            atomic_store(&b->measure_to, now + ((int64_t)o->warmup_s + o->duration_s) * 1000);
            atomic_store(&b->measure_from, now + (int64_t)o->warmup_s * 1000);
            return true;
        }
        atomic_store(&b->submit, true);
    }
    if (b->reg_end == 0) {
        if (now - b->reg_start > 120000) {
            fprintf(stderr, "loadgen: registrations did not finish within 120 s\n");
            return false;
        }
        return true;
    }
    if (!storm(b) || b->run_end != 0)
        return true;
    unsigned sub = atomic_load(&b->submitted), bad = atomic_load(&b->sub_failed);
    if (b->sub_end == 0 && sub + bad >= o->tasks) {
        b->sub_end = now;
        fprintf(stderr, "loadgen: %u tasks submitted (%u failed) in %.1f s\n", sub, bad,
                (double)(now - b->reg_end) / 1000);
    }
    bool all = b->sub_end != 0 && atomic_load(&b->running) >= sub;
    if (!all && now - b->reg_end < SETUP_MS)
        return true;
    b->run_end = now;
    if (b->sub_end == 0)
        b->sub_end = now;
    if (steady(b)) {
        fprintf(stderr,
                "loadgen: %u of %u tasks running %.1f s after the fleet registered; measured "
                "after %u s of warm-up\n",
                atomic_load(&b->running), sub, (double)(now - b->reg_end) / 1000, o->warmup_s);
        atomic_store(&b->measure_to, now + ((int64_t)o->warmup_s + o->duration_s) * 1000);
        atomic_store(&b->measure_from, now + (int64_t)o->warmup_s * 1000);
        return true;
    }
    atomic_store(&b->submit, false); /* what did not get in by now stays out of the storm */
    int64_t at = now + (int64_t)o->warmup_s * 1000;
    int64_t base = base_ms(o);
    int64_t from = at + (int64_t)o->crash_spread_s * 1000 + STORM_GAP_MS;
    fprintf(stderr,
            "loadgen: %u of %u tasks running %.1f s after the fleet registered; storm in %u s\n",
            atomic_load(&b->running), sub, (double)(now - b->reg_end) / 1000, o->warmup_s);
    atomic_store(&b->part_to, from + (int64_t)o->partition_s * 1000);
    atomic_store(&b->part_from, from);
    atomic_store(&b->storm_at, at);
    atomic_store(&b->measure_to, atomic_load(&b->part_to) + AFTER_MS);
    atomic_store(&b->measure_from, at - base);
    return true;
}

/* Registers this worker's agents (and submits its share of the tasks) and
 * runs them until the measurement ends. Worker 0 also moves the run from
 * phase to phase and samples the engine's RSS. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    bool first = w == &b->w[0];
    w->rc = -1;
    for (;;) {
        int64_t now = rdt_now_ms();
        unsigned lgen = rdb_leader_gen(&b->leader);
        /* A new leader, or its connection broke (h2c reported what was on it). */
        bool lost = false;
        for (unsigned i = 0; w->gen != 0 && i < w->n_h2; i++)
            lost = lost || h2c_state(w->h2[i]) == H2C_DOWN;
        if ((w->gen != lgen || lost) && now >= w->reopen_at && (!w->opening || w->open_gen != lgen))
            reconnect(w);
        bool up = w->gen != 0 && w->gen == rdb_leader_gen(&b->leader);
        if (up && w->n_parked > 0 && now >= w->resend_at)
            resend_parked(w);
        if (up) {
            register_more(w);
            submit_more(w);
        }
        now = rdt_now_ms();
        if (first && !coordinate(b, now)) {
            atomic_store(&b->measure_to, -1); /* ends every worker */
            return NULL;
        }
        int64_t from = atomic_load(&b->measure_from), to = atomic_load(&b->measure_to);
        if (to < 0 || (from != 0 && now >= to) || rdb_interrupted)
            break;
        if (first && b->cpu_from.at_ms == 0 && from != 0 && now >= from)
            rdb_cpu_mark(&b->cpu_from);
        if (first)
            sample_rss(b, now);
        int64_t wait = up ? send_due(w) : 20;
        if (up && storm(b)) {
            int64_t ck = send_checkpoints(w);
            wait = ck < wait ? ck : wait;
        }
        /* What this turn submitted goes out in one send; then the answers. */
        h2c_step_many(w->h2, w->n_h2, (int)(wait < 0 ? 0 : wait > 100 ? 100 : wait));
    }
    w->rc = atomic_load(&b->measure_to) < 0 ? -1 : 0;
    return NULL;
}

/* ---- the report ------------------------------------------------------------------ */

/* The load generator's own CPU while measuring, and per request that ended
 * then (of any kind): what a request costs it. */
static void load_cpu(const struct bench *b)
{
    uint64_t n = 0;
    for (unsigned t = 0; t < b->o.threads; t++)
        n += b->w[t].answered;
    rdb_print_cpu_since(&b->cpu_from, n);
}

/* Per second over [from, to) of a count kept per second (hacks, hdue). */
static double per_sec_rate(const _Atomic uint32_t *per_sec, const struct bench *b, int64_t from,
                           int64_t to)
{
    int64_t s0 = (from - b->origin) / 1000, s1 = (to - b->origin) / 1000;
    uint64_t n = 0;
    if (s0 < 0 || s1 > MAX_SECS || s1 <= s0)
        return 0;
    for (int64_t s = s0; s < s1; s++)
        n += atomic_load(&per_sec[s]);
    return (double)n / (double)(s1 - s0);
}

/* Healthy agents' acknowledged checkpoints per second over [from, to). */
static double ack_rate(const struct bench *b, int64_t from, int64_t to)
{
    return per_sec_rate(b->hacks, b, from, to);
}

/* Those acknowledged over [from, to) per 100 due then by their schedule. */
static double ack_due(const struct bench *b, int64_t from, int64_t to)
{
    double due = per_sec_rate(b->hdue, b, from, to);
    return due > 0 ? 100 * ack_rate(b, from, to) / due : 0;
}

/* The lowest rate over 5-second steps in [from, to). */
static double ack_rate_min(const struct bench *b, int64_t from, int64_t to)
{
    double lo = -1;
    for (int64_t t = from; t + 5000 <= to; t += 5000) {
        double r = ack_rate(b, t, t + 5000);
        lo = lo < 0 || r < lo ? r : lo;
    }
    return lo < 0 ? 0 : lo;
}

static void print_lat(const char *what, int64_t *v, size_t n, size_t of)
{
    struct rdb_lat l = rdb_lat_of(v, n, of);
    printf("%s: %zu of %zu; p50 %lld ms, p99 %lld ms, max %lld ms\n", what, l.n, l.of,
           (long long)l.p50, (long long)l.p99, (long long)l.max);
}

/* The storm's figures; true when its targets were met. */
/* Prints the answers that were not 2xx over the whole run, by request and
 * status, and returns how many were 5xx. */
static uint64_t print_answers(const struct bench *b)
{
    static uint64_t status[S_KINDS][STATUS_MAX];
    memset(status, 0, sizeof(status));
    for (unsigned t = 0; t < b->o.threads; t++)
        for (int k = 0; k < S_KINDS; k++)
            for (int c = 0; c < STATUS_MAX; c++)
                status[k][c] += b->w[t].status[k][c];
    printf("answers other than 2xx (whole run, by request and status; 0: no answer):");
    bool any = false;
    uint64_t fives = 0;
    for (int k = 0; k < S_KINDS; k++)
        for (int c = 0; c < STATUS_MAX; c++) {
            if (status[k][c] == 0 || (c >= 200 && c < 300))
                continue;
            printf("%s %s %d x %llu", any ? ";" : "", skind_name[k], c,
                   (unsigned long long)status[k][c]);
            any = true;
            fives += c >= 500 ? status[k][c] : 0;
        }
    printf("%s\n", any ? "" : " none");
    return fives;
}

static bool report_storm(struct bench *b)
{
    const struct opts *o = &b->o;
    size_t nt = o->tasks, crashed = 0, n_move = 0, n_ck = 0, parted = 0, parted_moved = 0;
    size_t released = 0;
    int64_t *move = calloc(nt ? nt : 1, sizeof(*move)), *ck = calloc(nt ? nt : 1, sizeof(*ck));
    if (move == NULL || ck == NULL) {
        free(move);
        free(ck);
        return false;
    }
    for (size_t i = 0; i < nt; i++) {
        struct task *t = &b->tasks[i];
        uint8_t c = atomic_load(&t->cause);
        if (c == C_CRASH) {
            crashed++;
            int64_t m = atomic_load(&t->moved_ms), f = atomic_load(&t->first_ckpt_ms);
            if (m > 0)
                move[n_move++] = m;
            else if (crashed - n_move <= 5) /* the first few that never moved, to look up */
                fprintf(stderr,
                        "loadgen: crashed agent's task " RDB_TASK_PREFIX
                        "%012zu (attempt %u then) never reached another agent\n",
                        i, (unsigned)atomic_load(&t->lost_attempt));
            if (f > 0)
                ck[n_ck++] = f;
        } else if (c == C_PARTITION) {
            parted++;
            parted_moved += atomic_load(&t->moved_in_partition);
            released += atomic_load(&t->moved_after_heal);
        }
    }
    unsigned doomed = 0, cut = 0;
    uint64_t ck_sent = 0, ck_ok = 0, ck_fenced = 0, ck_err = 0, deferred = 0, overflow = 0;
    uint64_t rereg = 0, pf = 0, lost = 0;
    for (unsigned t = 0; t < o->threads; t++) {
        const struct worker *w = &b->w[t];
        for (unsigned i = 0; i < w->n; i++) {
            doomed += w->agents[i].role == DOOMED;
            cut += w->agents[i].role == PARTED;
        }
        ck_sent += w->ck_sent, ck_ok += w->ck_ok, ck_fenced += w->ck_fenced;
        ck_err += w->ck_errors, deferred += w->ck_deferred, overflow += w->hold_overflow;
        rereg += w->reregistered, pf += w->parted_fenced, lost += w->lost;
    }
    int64_t at = atomic_load(&b->storm_at), from = atomic_load(&b->part_from);
    int64_t to = atomic_load(&b->part_to), end = atomic_load(&b->measure_to);
    int64_t base_from = atomic_load(&b->measure_from);
    printf("\n== failure storm ==\n");
    printf("setup: %u agents registered in %.1f s, %u tasks submitted in %.1f s (%u failed), %u "
           "running %.1f s after registration; %u agents x %u slots\n",
           o->agents, (double)(b->reg_end - b->reg_start) / 1000, atomic_load(&b->submitted),
           (double)(b->sub_end - b->reg_end) / 1000, atomic_load(&b->sub_failed),
           atomic_load(&b->running), (double)(b->run_end - b->reg_end) / 1000, o->agents, o->slots);
    printf("storm: %u agents (%u%%) crash over %u s, then %u (%u%%) cut off for %u s from +%.0f s, "
           "healed at +%.0f s, measured until +%.0f s\n",
           doomed, o->crash_share, o->crash_spread_s, cut, o->partition_share, o->partition_s,
           (double)(from - at) / 1000, (double)(to - at) / 1000, (double)(end - at) / 1000);
    printf("checkpoints (every %u ms per task): %llu sent, %llu acknowledged, %llu fenced, %llu "
           "transport errors, %llu deferred (connection or pool of %u per worker busy), %llu "
           "assignments over "
           "%u held tasks; %llu re-registrations after a 409\n",
           o->ckpt_ms, (unsigned long long)ck_sent, (unsigned long long)ck_ok,
           (unsigned long long)ck_fenced, (unsigned long long)ck_err, (unsigned long long)deferred,
           POOL, (unsigned long long)overflow, MAX_HOLDS, (unsigned long long)rereg);
    print_lat("crashed agents' tasks: crash to the task's assignment reaching another agent", move,
              n_move, crashed);
    print_lat("crashed agents' tasks: crash to its first checkpoint acknowledged there", ck, n_ck,
              crashed);
    struct rdb_lat lm = rdb_lat_of(move, n_move, crashed);
    printf("partitioned agents' tasks: %zu; moved while the partition lasted: %zu, after the heal: "
           "%zu; partitioned agents answered 409 (failed) after the heal: %llu of %u\n",
           parted, parted_moved, released, (unsigned long long)pf, cut);
    double before = ack_rate(b, base_from, at), crash = ack_rate(b, at, from);
    double part = ack_rate(b, from, to), after = ack_rate(b, to, end);
    double low = ack_rate_min(b, at, end);
    double due_before = ack_due(b, base_from, at), due_crash = ack_due(b, at, from);
    double due_part = ack_due(b, from, to), due_after = ack_due(b, to, end);
    double lower = due_crash < due_part ? due_crash : due_part;
    double share = due_before > 0 ? 100.0 * lower / due_before : 0;
    printf("healthy agents' checkpoints/s on tasks that never moved: before %.0f (the warm-up's "
           "last %.0f s); crashes %.0f "
           "(%.0f%%); partition %.0f (%.0f%%); after the heal %.0f (%.0f%%); lowest 5 s of the "
           "storm %.0f (%.0f%%)\n",
           before, (double)(at - base_from) / 1000, crash, before > 0 ? 100 * crash / before : 0,
           part, before > 0 ? 100 * part / before : 0, after, before > 0 ? 100 * after / before : 0,
           low, before > 0 ? 100 * low / before : 0);
    printf("the same, acknowledged per 100 due on their schedule (the tasks checkpoint in waves, "
           "and a phase shorter than %u ms sees more or fewer than the average): before %.0f; "
           "crashes %.0f (%.0f%% of before's); partition %.0f (%.0f%%); after the heal %.0f "
           "(%.0f%%)\n",
           o->ckpt_ms, due_before, due_crash, due_before > 0 ? 100 * due_crash / due_before : 0,
           due_part, due_before > 0 ? 100 * due_part / due_before : 0, due_after,
           due_before > 0 ? 100 * due_after / due_before : 0);
    print_answers(b); /* 503s are expected here: elections, a stalled disk */
    printf("\n");
    bool ok_move = lm.n == lm.of && lm.of > 0 && lm.p99 <= TARGET_MOVE_MS;
    printf(
        "%s crashed agents' tasks running elsewhere within 3 s p99: %lld ms (%zu of %zu moved)\n",
        ok_move ? "PASS" : "FAIL", (long long)lm.p99, lm.n, lm.of);
    printf("%s healthy throughput during the storm at 90%% or more of before: %.0f%% (the lower "
           "of the two phases' checkpoints acknowledged per due, against before's)\n",
           share >= TARGET_SHARE ? "PASS" : "FAIL", share);
    printf("%s the partition guard held the partitioned agents' tasks: %zu of %zu moved\n",
           parted_moved == 0 ? "PASS" : "FAIL", parted_moved, parted);
    printf("%s no acknowledged checkpoint lost: %llu tasks handed over below a version "
           "acknowledged before\n",
           lost == 0 ? "PASS" : "FAIL", (unsigned long long)lost);
    free(move);
    free(ck);
    return ok_move && share >= TARGET_SHARE && parted_moved == 0 && lost == 0;
}

/* The steady run's tasks: checkpoints, completions and their successors
 * (with --task-steps), answers that were not 2xx, lost checkpoints; true
 * when none was lost and no answer was a 5xx. */
static bool report_tasks(struct bench *b)
{
    const struct opts *o = &b->o;
    static struct rdb_hist ck, done;
    rdb_hist_init(&ck, HIST_US);
    rdb_hist_init(&done, HIST_US);
    uint64_t ck_sent = 0, ck_ok = 0, ck_fenced = 0, ck_stale = 0, ck_err = 0, deferred = 0;
    uint64_t overflow = 0, rereg = 0, d_sent = 0, d_ok = 0, d_fenced = 0, d_err = 0, resub = 0;
    uint64_t lost = 0, fives = 0, waiting = 0, win_done = 0;
    for (unsigned t = 0; t < o->threads; t++) {
        const struct worker *w = &b->w[t];
        ck_sent += w->ck_sent, ck_ok += w->ck_ok, ck_fenced += w->ck_fenced;
        ck_stale += w->ck_stale, ck_err += w->ck_errors, deferred += w->ck_deferred;
        overflow += w->hold_overflow, rereg += w->reregistered;
        d_sent += w->done_sent, d_ok += w->done_ok, d_fenced += w->done_refused;
        d_err += w->done_errors, resub += w->resubmitted, lost += w->lost;
        waiting += w->resub_n;
        rdb_hist_merge(&ck, &w->ck_rtt);
        rdb_hist_merge(&done, &w->done_rtt);
        for (unsigned i = 0; i < MAX_WINDOWS; i++)
            win_done += w->win[i].done;
    }
    double secs = (double)(atomic_load(&b->measure_to) - atomic_load(&b->measure_from)) / 1000.0;
    printf("\n== tasks ==\n");
    printf("setup: %u agents registered in %.1f s, %u tasks submitted in %.1f s (%u failed), %u "
           "running %.1f s after registration; %u agents x %u slots\n",
           o->agents, (double)(b->reg_end - b->reg_start) / 1000, atomic_load(&b->submitted),
           (double)(b->sub_end - b->reg_end) / 1000, atomic_load(&b->sub_failed),
           atomic_load(&b->running), (double)(b->run_end - b->reg_end) / 1000, o->agents, o->slots);
    printf("checkpoints (every %u ms per task): %llu sent, %llu acknowledged, %llu fenced (%llu "
           "stale_version), %llu transport errors, %llu deferred (connection or pool of %u per "
           "worker busy), %llu assignments over %u held tasks; %llu re-registrations after a "
           "409\n",
           o->ckpt_ms, (unsigned long long)ck_sent, (unsigned long long)ck_ok,
           (unsigned long long)ck_fenced, (unsigned long long)ck_stale, (unsigned long long)ck_err,
           (unsigned long long)deferred, POOL, (unsigned long long)overflow, MAX_HOLDS,
           (unsigned long long)rereg);
    printf("checkpoint round trip (whole run): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           (double)rdb_hist_quantile(&ck, 0.50) / 1000, (double)rdb_hist_quantile(&ck, 0.99) / 1000,
           (double)ck.max_us / 1000);
    if (o->task_steps > 0) {
        printf(
            "completions (after %u checkpoints): %llu sent, %llu completed (%llu in the "
            "measurement: %.1f/s), %llu refused (409 fenced or ended otherwise, other 4xx), "
            "%llu tried again (no answer, 429, 5xx); round trip p50 %.2f ms, p99 %.2f ms, max %.2f "
            "ms\n",
            o->task_steps, (unsigned long long)d_sent, (unsigned long long)d_ok,
            (unsigned long long)win_done, secs > 0 ? (double)win_done / secs : 0,
            (unsigned long long)d_fenced, (unsigned long long)d_err,
            (double)rdb_hist_quantile(&done, 0.50) / 1000,
            (double)rdb_hist_quantile(&done, 0.99) / 1000, (double)done.max_us / 1000);
        printf("successors submitted: %llu, %u failed, %llu waiting at the end (live tasks "
               "wanted: %u)\n",
               (unsigned long long)resub, atomic_load(&b->resub_failed),
               (unsigned long long)waiting, o->tasks);
    }
    fives = print_answers(b);
    printf("\n");
    printf("%s no acknowledged checkpoint lost: %llu tasks handed over below a version "
           "acknowledged before\n",
           lost == 0 ? "PASS" : "FAIL", (unsigned long long)lost);
    printf("%s no 5xx answer: %llu\n", fives == 0 ? "PASS" : "FAIL", (unsigned long long)fives);
    return lost == 0 && fives == 0;
}

static void report(struct bench *b)
{
    static struct rdb_hist rtt, rtt_rx, lag, wh, wh_rx;
    rdb_hist_init(&rtt, HIST_US);
    rdb_hist_init(&rtt_rx, HIST_US);
    rdb_hist_init(&lag, HIST_US);
    uint64_t due = 0, sent = 0, ok = 0, fenced = 0, other = 0, errors = 0, skipped = 0;
    for (unsigned t = 0; t < b->o.threads; t++) {
        const struct worker *w = &b->w[t];
        due += w->due, sent += w->sent, ok += w->ok, fenced += w->fenced, other += w->other;
        errors += w->errors, skipped += w->skipped;
        rdb_hist_merge(&rtt, &w->rtt);
        rdb_hist_merge(&rtt_rx, &w->rtt_rx);
        rdb_hist_merge(&lag, &w->lag);
    }
    double secs = (double)(atomic_load(&b->measure_to) - atomic_load(&b->measure_from)) / 1000.0;
    printf("\n== scale benchmark ==\n");
    printf("%u agents heartbeating every %u +/- %u ms over HTTP/2 (%s, %u workers with %u "
           "connection%s each, %s); measured %.0f s%s\n",
           b->o.agents, b->o.interval_ms, b->o.jitter_ms, "prior knowledge", b->o.threads,
           b->o.conns, b->o.conns == 1 ? "" : "s", b->o.url, secs,
           rdb_interrupted ? " (interrupted early)" : "");
    double want = (double)b->o.agents * 1000.0 / b->o.interval_ms;
    printf("heartbeats offered: %.0f/s sent of %.0f/s due (the live agents' schedule; %.0f/s "
           "wanted for the whole fleet), %llu skipped (previous one still in flight)\n",
           (double)sent / secs, (double)due / secs, want, (unsigned long long)skipped);
    printf("heartbeats achieved: %.0f/s answered 200; %llu answered 409 (the agent was failed: it "
           "registers again), %llu other, %llu transport errors\n",
           (double)ok / secs, (unsigned long long)fenced, (unsigned long long)other,
           (unsigned long long)errors);
    printf("heartbeat round trip: p50 %.2f ms, p99 %.2f ms, max %.2f ms; send lateness p99 %lld "
           "ms, max %lld ms\n",
           (double)rdb_hist_quantile(&rtt, 0.50) / 1000,
           (double)rdb_hist_quantile(&rtt, 0.99) / 1000, (double)rtt.max_us / 1000,
           (long long)(rdb_hist_quantile(&lag, 0.99) / 1000), (long long)(lag.max_us / 1000));
    /* The same to the kernel's receive stamp of the answer (h2c's rx_us):
     * the time a worker thread of this process waited for a CPU before it
     * read an answer that had arrived is out of it. */
    printf("heartbeat round trip to the answer's arrival at the agent's socket (the kernel's "
           "receive stamp): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           (double)rdb_hist_quantile(&rtt_rx, 0.50) / 1000,
           (double)rdb_hist_quantile(&rtt_rx, 0.99) / 1000, (double)rtt_rx.max_us / 1000);
    uint64_t r307 = 0, r503 = 0, failed = 0, resent = 0, reopened = 0, open_failed = 0;
    for (unsigned t = 0; t < b->o.threads; t++) {
        const struct worker *w = &b->w[t];
        r307 += w->refused_307, r503 += w->refused_503, failed += w->failed_resent;
        resent += w->resent, reopened += w->reopened, open_failed += w->open_failed;
    }
    rdb_leader_print(&b->leader, rdt_now_ms());
    printf("refused for want of a leader: %llu answers 307, %llu 503 not_leader or no_quorum, "
           "%llu without an answer from a leader that was gone; %llu requests sent again, %llu "
           "connections opened, %llu openings failed (refused, or no answer within %d ms; "
           "%u workers)\n",
           (unsigned long long)r307, (unsigned long long)r503, (unsigned long long)failed,
           (unsigned long long)resent, (unsigned long long)reopened,
           (unsigned long long)open_failed, OPEN_MS, b->o.threads);
    load_cpu(b);
    if (b->o.engine_pid || b->n_pids)
        printf("engine RSS: %.1f MiB at the start of the measurement, %.1f MiB at the end, %.1f "
               "MiB max\n",
               (double)b->rss_first / 1024, (double)b->rss_last / 1024, (double)b->rss_max / 1024);
    bool pids = b->o.engine_pid || b->n_pids;
    printf("\nwindow (s)  sent/s   ok/s    p99 ms  sock p99   max ms   RSS MiB%s%s\n",
           pids ? "  loop cpu%  loop waited%" : "",
           steady(b)  ? "   ckpt/s  done/s  ckpt ms"
           : storm(b) ? "  healthy ckpt/s  ckpt ms  ckpt waits/s  faults/s"
                      : "");
    int64_t mfrom = atomic_load(&b->measure_from);
    for (unsigned i = 0; i < MAX_WINDOWS; i++) {
        uint64_t ws = 0, wo = 0, wck = 0, wdone = 0, wdef = 0;
        int64_t wmax = 0, wck_us = 0;
        bool any = false;
        rdb_hist_init(&wh, HIST_US);
        rdb_hist_init(&wh_rx, HIST_US);
        for (unsigned t = 0; t < b->o.threads; t++) {
            const struct window *w = &b->w[t].win[i];
            if (w->h == NULL)
                continue;
            any = true;
            ws += w->sent, wo += w->ok;
            wck += w->ck_ok, wdone += w->done, wck_us += w->ck_us, wdef += w->ck_deferred;
            wmax = w->max_us > wmax ? w->max_us : wmax;
            rdb_hist_merge(&wh, w->h);
            rdb_hist_merge(&wh_rx, w->h_rx);
        }
        if (!any)
            break;
        printf("%4u-%-4u  %7.0f  %7.0f  %7.2f  %8.2f  %7.2f  %8.1f", i * WIN_S, (i + 1) * WIN_S,
               (double)ws / WIN_S, (double)wo / WIN_S, (double)rdb_hist_quantile(&wh, 0.99) / 1000,
               (double)rdb_hist_quantile(&wh_rx, 0.99) / 1000, (double)wmax / 1000,
               (double)b->rss_win[i] / 1024);
        if (pids) /* ns in a window of WIN_S s: percent of one core */
            printf("  %9.1f  %12.1f", (double)b->loop_run_win[i] / (WIN_S * 1e7),
                   (double)b->loop_wait_win[i] / (WIN_S * 1e7));
        if (steady(b))
            printf("  %7.0f  %6.1f  %7.2f", (double)wck / WIN_S, (double)wdone / WIN_S,
                   wck ? (double)wck_us / (double)wck / 1000 : 0);
        else if (storm(b)) {
            printf("  %14.0f  %7.1f  %12.0f",
                   ack_rate(b, mfrom + (int64_t)i * WIN_S * 1000,
                            mfrom + (int64_t)(i + 1) * WIN_S * 1000),
                   wck ? (double)wck_us / (double)wck / 1000 : 0, (double)wdef / WIN_S);
            if (pids)
                printf("  %8.0f", (double)b->flt_win[i] / WIN_S);
            else
                printf("  %8s", "-");
        }
        printf("\n");
    }
    bool storm_ok = steady(b) ? report_tasks(b) : storm(b) ? report_storm(b) : true;
    if (!storm(b))
        printf("\n");
    if (b->o.engine_pid || b->n_pids)
        printf("%s engine RSS under 512 MiB: max %.1f MiB\n",
               b->rss_max > 0 && b->rss_max < RSS_LIMIT_KIB ? "PASS" : "FAIL",
               (double)b->rss_max / 1024);
    int64_t p99 = rdb_hist_quantile(&rtt, 0.99);
    bool all = sent > 0 && ok + fenced + other + errors >= sent * 99 / 100;
    printf("%s heartbeat p99 under 50 ms: %.2f ms (%llu answered of %llu sent; %.2f ms to the "
           "answers' arrival at the agents' sockets)\n",
           all && p99 < P99_LIMIT_US ? "PASS" : "FAIL", (double)p99 / 1000, (unsigned long long)ok,
           (unsigned long long)sent, (double)rdb_hist_quantile(&rtt_rx, 0.99) / 1000);
    /* A heartbeat waiting for a free stream is not counted due until it
     * goes: the lateness tells the backlog. */
    int64_t late = rdb_hist_quantile(&lag, 0.99) / 1000;
    printf("%s offered load: %.1f%% of the due heartbeats sent, send lateness p99 %lld ms (under "
           "one interval wanted)\n",
           due > 0 && sent * 100 >= due * 99 && late < b->o.interval_ms ? "PASS" : "FAIL",
           due > 0 ? 100.0 * (double)sent / (double)due : 0, (long long)late);
    if (!storm(b) || steady(b))
        printf("%s no healthy agent failed: %llu heartbeats answered 409\n",
               fenced == 0 ? "PASS" : "FAIL", (unsigned long long)fenced);
    (void)storm_ok;
    rdb_print_self_cpu();
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_scale_loadgen [--url URL[,URL...] (the replicas; it starts on the "
            "first and follows the leader)] [--engine-pids PID,... (the replicas' by --url: "
            "the leader's RSS)] [--agents N (10000)] [--interval-ms MS "
            "(500)] [--jitter-ms MS (100, less than the interval)] [--warmup S (20)] "
            "[--duration S (60)] [--engine-pid PID (its RSS)] [--threads N (4, at most the "
            "agents)] [--conns N (1: HTTP/2 connections per worker, at most %d)] [--seed N (42)]\n"
            "  the failure storm: --tasks N (0: none, a steady fleet) [--ckpt-ms MS (30000)] "
            "[--crash-share PCT (20)] [--crash-spread S (60)] [--partition-share PCT (30; "
            "with the crash share at most 100)] [--partition S (20)] [--slots N (32, at most "
            "%d)]\n"
            "  steady tasks (the soak): --tasks N --crash-share 0 --partition-share 0 [--ckpt-ms "
            "MS] [--task-steps N (0: tasks never end; else each completes after N checkpoints "
            "and a new one is submitted)]\n",
            MAX_CONNS, MAX_HOLDS);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.url = "http://127.0.0.1:8080",
                       .agents = 10000,
                       .interval_ms = 500,
                       .jitter_ms = 100,
                       .warmup_s = 20,
                       .duration_s = 60,
                       .threads = 4,
                       .conns = 1,
                       .ckpt_ms = 30000,
                       .crash_share = 20,
                       .crash_spread_s = 60,
                       .partition_share = 30,
                       .partition_s = 20,
                       .slots = 32};
    unsigned seed = 42;
    const struct rdb_opt opts[] = {
        {"url", .str = &o->url},
        {"engine-pids", .str = &o->engine_pids},
        {"agents", .num = &o->agents, .min = 1, .max = 200000},
        {"interval-ms", .num = &o->interval_ms, .min = 10, .max = 600000},
        {"jitter-ms", .num = &o->jitter_ms, .min = 0, .max = 600000},
        {"warmup", .num = &o->warmup_s, .min = 0, .max = 86400},
        {"duration", .num = &o->duration_s, .min = 1, .max = (MAX_WINDOWS - 1) * WIN_S},
        {"engine-pid", .num = &o->engine_pid, .min = 1, .max = 4194304},
        {"threads", .num = &o->threads, .min = 1, .max = MAX_THREADS},
        {"conns", .num = &o->conns, .min = 1, .max = MAX_CONNS},
        {"seed", .num = &seed, .min = 1, .max = UINT32_MAX},
        {"tasks", .num = &o->tasks, .min = 0, .max = 10000000},
        {"ckpt-ms", .num = &o->ckpt_ms, .min = 100, .max = 3600000},
        {"crash-share", .num = &o->crash_share, .min = 0, .max = 100},
        {"crash-spread", .num = &o->crash_spread_s, .min = 0, .max = 3600},
        {"partition-share", .num = &o->partition_share, .min = 0, .max = 100},
        {"partition", .num = &o->partition_s, .min = 1, .max = 3600},
        {"slots", .num = &o->slots, .min = 1, .max = MAX_HOLDS},
        {"task-steps", .num = &o->task_steps, .min = 0, .max = 1000000},
        {NULL},
    };
    if (rdb_parse_opts(argc, argv, opts, NULL, usage) != 0 || o->jitter_ms >= o->interval_ms ||
        o->threads > o->agents || o->crash_share + o->partition_share > 100 ||
        (o->task_steps > 0 && (o->tasks == 0 || o->crash_share + o->partition_share > 0))) {
        usage(stderr);
        return -1;
    }
    o->seed = seed;
    return 0;
}

/* --engine-pids: a PID per replica of --url, in that order. */
static int parse_pids(struct bench *b)
{
    const char *p = b->o.engine_pids;
    while (p != NULL && *p != '\0') {
        char one[16];
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0 || n >= sizeof(one) || b->n_pids == RDB_MAX_REPLICAS)
            return -1;
        memcpy(one, p, n);
        one[n] = '\0';
        if (!rdb_parse_uint(one, 1, 4194304, &b->pids[b->n_pids++]))
            return -1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct bench b;
    if (parse_opts(argc, argv, &b.o) != 0)
        return 2;
    if (rdb_init() != 0)
        return 1;
    int rc = 1;
    unsigned nt = b.o.threads, started = 0;
    b.w = calloc(nt, sizeof(*b.w)); /* large (histograms): on the heap */
    b.tasks = calloc(b.o.tasks ? b.o.tasks : 1, sizeof(*b.tasks));
    bool ok = b.w != NULL && b.tasks != NULL;
    if (rdb_leader_init(&b.leader, b.o.url, rdt_now_ms()) != 0 || parse_pids(&b) != 0) {
        fprintf(stderr, "loadgen: bad --url or --engine-pids: %s\n", b.o.url);
        usage(stderr);
        return 2;
    }
    for (unsigned t = 0, first = 0; ok && t < nt; t++) {
        unsigned n = b.o.agents / nt + (t < b.o.agents % nt);
        ok = worker_init(&b, &b.w[t], first, n, t) == 0;
        first += n;
    }
    if (!ok)
        fprintf(stderr, "loadgen: cannot set up %u agents\n", b.o.agents);
    b.reg_start = b.origin = rdt_now_ms();
    for (; ok && started < nt; started++)
        ok = pthread_create(&b.w[started].thread, NULL, worker_main, &b.w[started]) == 0;
    bool all_ran = ok;
    for (unsigned t = 0; t < started; t++) {
        pthread_join(b.w[t].thread, NULL);
        all_ran = all_ran && b.w[t].rc == 0;
    }
    if (all_ran && atomic_load(&b.measure_from) != 0) {
        report(&b);
        rc = 0;
    }
    for (unsigned t = 0; b.w && t < nt; t++)
        worker_free(&b.w[t]);
    free(b.w);
    free(b.tasks);
    rdb_leader_free(&b.leader);
    rdb_end();
    return rc;
}
