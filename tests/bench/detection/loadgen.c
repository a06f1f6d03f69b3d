/*
 * bench_detection_loadgen: the fault detection benchmark's load generator
 * (tests/bench/detection/run.sh starts the engine and runs this).
 *
 * One process simulates a fleet of agents against a running recoveryd:
 *
 *   - every agent's health endpoint is a real port of an rdt_httpd server
 *     (tests/lib/httpd.h) in a thread of this process;
 *   - the agents are split among --threads workers, each with its own
 *     HTTP/2 connection (h2c, tests/bench/lib/h2c.h, on nghttp2 with prior
 *     knowledge: every request a loop turn submits goes out in one send(2);
 *     with libcurl 7.88's multi interface, one send per frame, a heartbeat
 *     cost the load generator about 60 us of CPU and 10,000 agents left the
 *     machine no room) and at most MAX_STREAMS requests in flight on it; a
 *     worker registers its agents
 *     (REG_IN_FLIGHT at a time), and each agent heartbeats every interval
 *     +/- uniform jitter from its registration on (due heartbeats in a queue
 *     of due times per worker, so the cost per heartbeat does not grow with
 *     the fleet). 20,000 heartbeats/s (10,000 agents) on one connection
 *     would need round trips under 5 ms, on 4 under 19 ms: with 4 workers
 *     the engine's slower answers at 10,000 agents queued heartbeats here,
 *     the engine saw them late and spent its probes on healthy agents, so
 *     8 by default (docs/benchmarks.md, "the detection load generator on
 *     nghttp2");
 *   - after the warm-up (from the last registration), faults are injected:
 *     10% crash (no heartbeats, the endpoint refuses connections), 5% hang
 *     (heartbeats go on, the endpoint never answers), 5% degrade
 *     (latency_ms ramps by 40 ms per heartbeat from 20 ms to well past the
 *     engine's 5000 ms limit); the other 80% stay healthy with slightly
 *     noisy metrics all along;
 *   - a poller thread reads GET /api/v1/nodes (the suspect and the failed
 *     ones) and the new /api/v1/faults/records every 100 ms (on libcurl's
 *     easy interface, a request at a time: tens per second) and keeps, per
 *     agent, when it became suspect and failed (the leader's updated_at
 *     stamp), its fault records and their types.
 *
 * At the end it prints a report per kind of fault, the false failures among
 * the healthy agents and PASS/FAIL per target. It exits 0 when the run took
 * place, whatever the figures; 1 on a setup error, 2 on bad usage.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "h2c.h"
#include "harness.h"
#include "httpd.h"

enum kind { HEALTHY = 0, CRASH, HANG, DEGRADE, N_KINDS };
static const char *const kind_names[N_KINDS] = {"healthy", "crash", "hang", "degrading"};

#define MAX_TALLY     24
#define REG_IN_FLIGHT 32 /* registrations per worker at a time */
/* Requests in flight on a worker's connection, below h2o's 100 streams (as
 * the scale benchmark's load generator, tests/bench/scale/loadgen.c). */
#define MAX_STREAMS      96
#define HB_RESERVE       32   /* of them for heartbeats only */
#define REQ_MS           5000 /* for a request's answer (a transport error after it) */
#define RECONNECT_MS     100  /* between two openings of a worker's connection */
#define MAX_THREADS      16
#define REG_MS           60000 /* for the whole fleet to register */
#define TL_SLOT_MS       10000 /* the stall timeline: 10-second windows */
#define TL_SLOTS         1024
#define STALL_MS         500
#define LATE_MS          100 /* a heartbeat sent later than this is reported by window */
#define ZOMBIES_PER_POLL 10

struct opts {
    const char *url;
    const char *dump;
    unsigned agents;
    unsigned warmup_s, duration_s;
    unsigned interval_ms, jitter_ms, poll_ms, threads;
    bool poll_all;
    uint64_t seed;
};

/* A moment seen by the poller: wall-clock ms, and the record's seq if any. */
struct mark {
    bool seen;
    int64_t ms;
    uint64_t seq;
};

struct agent {
    char id[32];
    enum kind kind;
    long long epoch;
    /* heartbeat side: its worker only */
    char path[64]; /* of its heartbeats, once registered */
    bool registered, in_flight, stopped;
    int64_t due_ms; /* monotonic */
    unsigned ramp;  /* heartbeats since the injection (degrading) */
    struct mark refused;
    /* poller side: the poller thread only, read by main after the join */
    struct mark suspect, failed, record, fail_record, predicted;
    char first_type[32];
    bool suspect_direct;
    int64_t last_suspect_stamp;
    unsigned suspect_episodes;
    bool pre_suspect, pre_failed;
    unsigned pre_bad_records, bad_records, warn_records;
    bool zombie_sent, zombie_fenced;
    bool killed; /* hung, isolated, then its port closed */
};

struct tally {
    char key[64];
    unsigned n;
};

struct counters {
    uint64_t sent, ok, fenced, other, errors, crash_stopped, connects;
};

/* One worker: its agents (a contiguous share), its connection, its figures. */
struct worker {
    struct bench *b;
    pthread_t thread;
    bool started;
    unsigned first, n; /* its agents: b->agents[first .. first + n - 1] */
    unsigned reg_next, reg_in_flight;
    struct h2c *h2;       /* its connection */
    bool opened;          /* the connection answered its first GET /health */
    int64_t reconnect_at; /* monotonic: when it may open its connection again */
    uint64_t answered;    /* its requests that ended while measuring */
    double cpu_from_s;    /* its thread's CPU when the measurement started (< 0: not yet) */
    double cpu_s;         /* its thread's CPU while measuring, when it ended */
    struct rdb_dueq due;  /* registered agents by due_ms (a walk over 10,000 per loop turn starved
                           * the registrations: issue 16) */
    uint64_t rng;
    struct counters c;
    struct rdb_hist rtt, lag;
    int64_t loop_gap_ms, loop_gap_at; /* longest pause of its loop */
    int64_t rtt_max_at;
    uint32_t tl_rtt_ms[TL_SLOTS]; /* worst round trip per window */
    uint32_t tl_lag_ms[TL_SLOTS]; /* worst send lateness per window */
};

struct bench {
    struct opts o;
    struct agent *agents;
    unsigned n_kind[N_KINDS];
    struct worker *w;
    struct worker all; /* the workers' figures merged, for the report */
    atomic_uint reg_done, reg_failed;
    int64_t reg_ms;               /* how long the fleet took to register */
    atomic_bool threads_started;  /* the poller and the injector */
    struct rdb_cpu_mark cpu_from; /* the process's CPU when the warm-up started */
    atomic_bool measuring;        /* from then on */
    pthread_t injector, poller;
    struct rdt_httpd *httpd;
    struct curl_slist *hdrs; /* the poller's */
    int64_t inject_mono_ms, end_mono_ms, start_wall_ms;
    _Atomic int64_t inject_wall_ms; /* 0 until the faults are injected */
    int64_t inject_apply_ms;        /* how long changing the endpoints took */
    atomic_bool stop;               /* heartbeats end */
    int64_t poll_max_at;
    uint32_t tl_poll_ms[TL_SLOTS]; /* worst poll per window */
    /* poller */
    CURL *poll_easy;
    struct rdb_buf poll;
    int64_t fault_since_ms;
    uint64_t fault_max_seq;
    uint8_t *seq_seen; /* records already counted, by seq */
    size_t seq_cap;
    unsigned polls, poll_errors, partition_records, pre_records;
    uint64_t poll_requests; /* while measuring */
    int64_t poll_max_ms;
    struct tally tallies[N_KINDS][MAX_TALLY];
    long long engine_p50, engine_p99;
};

/* ---- small helpers ------------------------------------------------------- */

static void mark_min(struct mark *m, int64_t ms, uint64_t seq)
{
    if (!m->seen || ms < m->ms || (ms == m->ms && seq < m->seq)) {
        m->seen = true;
        m->ms = ms;
        m->seq = seq;
    }
}

/* Keeps the worst value of the 10-second window `now_wall` falls in. */
static void tl_note(const struct bench *b, uint32_t *tl, int64_t now_wall, int64_t ms)
{
    int64_t i = (now_wall - b->start_wall_ms) / TL_SLOT_MS;
    if (i < 0 || i >= TL_SLOTS)
        return;
    if (ms > (int64_t)tl[i])
        tl[i] = (uint32_t)(ms > UINT32_MAX ? UINT32_MAX : ms);
}

/* ---- options --------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_detection_loadgen [--url URL] [--agents N] [--warmup S]\n"
               "         [--duration S] [--interval-ms MS] [--jitter-ms MS] [--poll-ms MS]\n"
               "         [--threads N] [--seed N] [--dump FILE] [--poll-all]\n"
               "  --url          the engine's API (default http://127.0.0.1:8080)\n"
               "  --agents       simulated agents (default 1000, at least 20)\n"
               "  --warmup       seconds of heartbeats before the faults (default 30)\n"
               "  --duration     seconds measured after the faults (default 600)\n"
               "  --interval-ms  heartbeat interval (default 500)\n"
               "  --jitter-ms    uniform jitter around it, +/- (default 100)\n"
               "  --poll-ms      how often the engine's API is read (default 100)\n"
               "  --threads      workers, each with its own connection to the engine (default 8)\n"
               "  --seed         seed of the jitter and the metrics' noise (default 42)\n"
               "  --poll-all     read every node each poll, not only the suspect and failed ones\n"
               "                (about 15 ms of the engine's loop per 1,000 nodes)\n"
               "  --dump         write one line per agent (tab-separated) to FILE\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.url = "http://127.0.0.1:8080",
                       .agents = 1000,
                       .warmup_s = 30,
                       .duration_s = 600,
                       .interval_ms = 500,
                       .jitter_ms = 100,
                       .poll_ms = 100,
                       .threads = 8};
    unsigned seed = 42;
    const struct rdb_opt opts[] = {
        {"url", .str = &o->url},
        {"agents", .num = &o->agents, .min = 20, .max = 100000},
        {"warmup", .num = &o->warmup_s, .min = 1, .max = 86400},
        {"duration", .num = &o->duration_s, .min = 1, .max = 86400},
        {"interval-ms", .num = &o->interval_ms, .min = 10, .max = 600000},
        {"jitter-ms", .num = &o->jitter_ms, .min = 0, .max = 600000},
        {"poll-ms", .num = &o->poll_ms, .min = 10, .max = 60000},
        {"threads", .num = &o->threads, .min = 1, .max = MAX_THREADS},
        {"seed", .num = &seed, .min = 1, .max = UINT32_MAX},
        {"dump", .str = &o->dump},
        {"poll-all", .flag = &o->poll_all},
        {NULL},
    };
    int rc = rdb_parse_opts(argc, argv, opts, NULL, usage);
    o->seed = seed;
    if (rc != 0 || o->jitter_ms >= o->interval_ms) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* ---- the fleet ------------------------------------------------------------- */

/* Kinds interleaved over the agents: out of every 20, 2 crash, 1 hangs, 1 degrades. */
static enum kind kind_of(unsigned i)
{
    switch (i % 20) {
    case 3:
    case 13:
        return CRASH;
    case 7:
        return HANG;
    case 17:
        return DEGRADE;
    default:
        return HEALTHY;
    }
}

static void on_done(void *ctx, const struct h2c_resp *r);

/* Worker t's share: agents [first, first + n), the remainder spread over the first ones. */
static int worker_init(struct bench *b, struct worker *w, unsigned t)
{
    unsigned nt = b->o.threads, per = b->o.agents / nt, extra = b->o.agents % nt;
    w->b = b;
    w->first = t * per + (t < extra ? t : extra);
    w->n = per + (t < extra);
    w->reg_next = w->first;
    w->rng = rdb_seed(b->o.seed + t);
    rdb_hist_init(&w->rtt, 50);
    rdb_hist_init(&w->lag, 1000);
    w->cpu_from_s = -1;
    w->h2 = h2c_new(MAX_STREAMS, on_done, w);
    return w->h2 != NULL && rdb_dueq_init(&w->due, w->n) == 0 ? 0 : -1;
}

static int fleet_init(struct bench *b)
{
    unsigned n = b->o.agents;
    if (b->o.threads > n)
        b->o.threads = n;
    b->agents = calloc(n, sizeof(*b->agents));
    b->w = calloc(b->o.threads, sizeof(*b->w));
    b->httpd = rdt_httpd_start(n);
    b->hdrs = curl_slist_append(NULL, "Content-Type: application/json"); /* the poller's */
    if (b->agents == NULL || b->w == NULL || b->httpd == NULL || b->hdrs == NULL)
        return -1;
    for (unsigned t = 0; t < b->o.threads; t++)
        if (worker_init(b, &b->w[t], t) != 0)
            return -1;
    for (unsigned i = 0; i < n; i++) {
        struct agent *a = &b->agents[i];
        snprintf(a->id, sizeof(a->id), "agent-%05u", i + 1);
        a->kind = kind_of(i);
        b->n_kind[a->kind]++;
    }
    return 0;
}

static void fleet_free(struct bench *b)
{
    for (unsigned t = 0; b->w && t < b->o.threads; t++) {
        struct worker *w = &b->w[t];
        if (w->h2)
            h2c_free(w->h2);
        rdb_dueq_free(&w->due);
    }
    curl_slist_free_all(b->hdrs);
    rdt_httpd_stop(b->httpd);
    free(b->w);
    free(b->agents);
}

static struct agent *agent_by_id(struct bench *b, const char *id)
{
    unsigned i;
    if (id == NULL || sscanf(id, "agent-%u", &i) != 1 || i == 0 || i > b->o.agents)
        return NULL;
    struct agent *a = &b->agents[i - 1];
    return strcmp(a->id, id) == 0 ? a : NULL;
}

/* ---- a worker's connection ---------------------------------------------------- */

/* The CPU time of the calling thread, in seconds. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Submits a POST of `body` on `path` for agent `a`; true when it is in
 * flight (the connection took it). */
static bool start_request(struct worker *w, struct agent *a, const char *path, const char *body)
{
    a->in_flight = h2c_submit(w->h2, "POST", path, body, strlen(body), REQ_MS, a) == 0;
    return a->in_flight;
}

/* ---- registration ------------------------------------------------------- */

/* A registration answered: the agent heartbeats from now on, starting at a
 * random point of its first interval (as agents starting one by one would). */
static void on_registered(struct worker *w, struct agent *a, const struct h2c_resp *r)
{
    struct bench *b = w->b;
    w->reg_in_flight--;
    a->epoch = r->err == H2C_OK ? rdb_epoch_of(r->status, r->body) : 0;
    if (a->epoch <= 0) {
        if (atomic_fetch_add(&b->reg_failed, 1) < 5)
            fprintf(stderr, "loadgen: registering %s: %s, HTTP %d: %.200s\n", a->id,
                    h2c_strerror(r->err), r->status, r->body ? r->body : "");
        atomic_fetch_add(&b->reg_done, 1);
        return;
    }
    a->registered = true;
    snprintf(a->path, sizeof(a->path), "/api/v1/nodes/%s/heartbeat", a->id);
    a->due_ms = rdt_now_ms() + (int64_t)rdb_uniform(&w->rng, 0, b->o.interval_ms);
    rdb_dueq_push(&w->due, a->due_ms, (unsigned)(a - b->agents));
    atomic_fetch_add(&b->reg_done, 1);
}

/* Submits agent i's registration; false when the connection took none. */
static bool start_registration(struct worker *w, unsigned i)
{
    struct bench *b = w->b;
    struct agent *a = &b->agents[i];
    char body[256];
    snprintf(body, sizeof(body),
             "{\"node_id\":\"%s\",\"capacity\":{\"slots\":4},"
             "\"health_url\":\"http://127.0.0.1:%u/health\"}",
             a->id, rdt_httpd_port(b->httpd, i));
    if (!start_request(w, a, "/api/v1/nodes", body))
        return false;
    w->reg_in_flight++;
    return true;
}

/* Starts registrations, at most REG_IN_FLIGHT at a time, leaving
 * HB_RESERVE streams to the heartbeats of the agents already registered. */
static void register_more(struct worker *w)
{
    while (w->reg_next < w->first + w->n && w->reg_in_flight < REG_IN_FLIGHT &&
           h2c_room(w->h2) > HB_RESERVE && start_registration(w, w->reg_next))
        w->reg_next++;
}

/* ---- heartbeats -------------------------------------------------------------- */

static void heartbeat_body(struct worker *w, struct agent *a, bool injected, char *body, size_t len)
{
    double err = 0.01 + rdb_uniform(&w->rng, -0.002, 0.002);
    double lat = 20 + rdb_uniform(&w->rng, -3, 3);
    double cpu = 0.30 + rdb_uniform(&w->rng, -0.03, 0.03);
    double mem = 0.40 + rdb_uniform(&w->rng, -0.01, 0.01);
    if (injected && a->kind == DEGRADE)
        lat += 40.0 * ++a->ramp; /* 20 ms -> 5000 ms in about 62 s at 2 per second */
    snprintf(body, len,
             "{\"epoch\":%lld,\"load\":{\"slots_used\":1},\"metrics\":{\"error_rate\":%.4f,"
             "\"latency_ms\":%.1f,\"cpu\":%.3f,\"mem\":%.3f}}",
             a->epoch, err, lat, cpu, mem);
}

/* Sends a's heartbeat (or stops a crashed agent); false when the
 * connection took none. */
static bool send_heartbeat(struct worker *w, struct agent *a, int64_t now)
{
    struct bench *b = w->b;
    bool injected = atomic_load(&b->inject_wall_ms) != 0;
    if (injected && a->kind == CRASH) {
        a->stopped = true; /* the process is gone */
        w->c.crash_stopped++;
        return true;
    }
    char body[256];
    heartbeat_body(w, a, injected, body, sizeof(body));
    if (!start_request(w, a, a->path, body))
        return false;
    rdb_hist_add(&w->lag, (now - a->due_ms) * 1000);
    tl_note(b, w->tl_lag_ms, rdb_wall_ms(), now - a->due_ms);
    w->c.sent++;
    a->due_ms += rdb_jittered_ms(&w->rng, b->o.interval_ms, b->o.jitter_ms);
    if (a->due_ms < now - (int64_t)b->o.interval_ms)
        a->due_ms = now; /* fell far behind: no catching up in a burst */
    return true;
}

static void on_heartbeat_done(struct worker *w, struct agent *a, const struct h2c_resp *r)
{
    if (r->err != H2C_OK) {
        if (w->c.errors++ < 5)
            fprintf(stderr, "loadgen: heartbeat of %s: %s\n", a->id, h2c_strerror(r->err));
        return;
    }
    int64_t now = rdb_wall_ms(), us = r->us;
    int status = r->status;
    if (us > w->rtt.max_us)
        w->rtt_max_at = now;
    tl_note(w->b, w->tl_rtt_ms, now, us / 1000);
    rdb_hist_add(&w->rtt, us);
    if (status == 200) {
        w->c.ok++;
    } else if (status == 409) {
        w->c.fenced++;
        a->stopped = true; /* fenced: it would have to register again */
        mark_min(&a->refused, now, 0);
    } else if (w->c.other++ < 5) {
        fprintf(stderr, "loadgen: heartbeat of %s: HTTP %d %.200s\n", a->id, status, r->body);
    }
}

/* Sends what is due; returns the monotonic time of the next heartbeat. An
 * agent whose previous heartbeat is still in flight (or that the connection
 * did not take) sends as soon as it can (looked at again every 5 ms); a
 * stopped one leaves the queue. */
static int64_t send_due(struct worker *w)
{
    int64_t now = rdt_now_ms();
    struct rdb_due d = {0};
    while (h2c_room(w->h2) > 0 && rdb_dueq_pop_due(&w->due, now, &d)) {
        struct agent *a = &w->b->agents[d.idx];
        if (a->stopped)
            continue;
        if (a->in_flight || !send_heartbeat(w, a, now)) {
            rdb_dueq_push(&w->due, now + 5, d.idx);
            continue;
        }
        if (!a->stopped)
            rdb_dueq_push(&w->due, a->due_ms, d.idx);
    }
    if (h2c_room(w->h2) == 0)
        return now + 1; /* full (or down): look again soon */
    return w->due.n > 0 ? w->due.v[0].due : now + 100;
}

/* The tag of a connection's first request, GET /health (open_worker). */
static char open_tag;

/* A request of the worker's connection ended (h2c's callback, within
 * h2c_step): the opening's, a registration's or a heartbeat's. */
static void on_done(void *ctx, const struct h2c_resp *r)
{
    struct worker *w = ctx;
    if (r->user == &open_tag) {
        w->opened = r->err == H2C_OK && r->status == 200;
        return;
    }
    struct agent *a = r->user;
    a->in_flight = false;
    if (atomic_load_explicit(&w->b->measuring, memory_order_relaxed))
        w->answered++;
    if (a->registered)
        on_heartbeat_done(w, a, r);
    else
        on_registered(w, a, r);
}

/* Opens the worker's connection again when it broke (what was in flight on
 * it ended as transport errors), at most every RECONNECT_MS. */
static void reconnect(struct worker *w, int64_t now)
{
    if (h2c_state(w->h2) != H2C_DOWN || now < w->reconnect_at)
        return;
    w->reconnect_at = now + RECONNECT_MS;
    if (h2c_connect(w->h2, w->b->o.url, RDB_H2_CONNECT_MS) == 0)
        w->c.connects++;
}

/*
 * A worker: registers its agents (each heartbeats as soon as it is
 * registered), then heartbeats until the poller says stop, or until the main
 * thread gives up on the registrations. What a loop turn submits goes out
 * in one send (h2c_step).
 */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    int64_t last = rdt_now_ms();
    while (!atomic_load(&b->stop) && !(rdb_interrupted && !atomic_load(&b->threads_started))) {
        int64_t now = rdt_now_ms();
        if (now - last > w->loop_gap_ms) {
            w->loop_gap_ms = now - last; /* this thread itself did not run */
            w->loop_gap_at = rdb_wall_ms();
        }
        last = now;
        if (w->cpu_from_s < 0 && atomic_load(&b->measuring))
            w->cpu_from_s = thread_cpu_s();
        reconnect(w, now);
        register_more(w);
        int64_t wait = send_due(w) - rdt_now_ms();
        h2c_step(w->h2, wait > 0 ? (int)(wait > 100 ? 100 : wait) : 0);
    }
    if (w->cpu_from_s >= 0)
        w->cpu_s = thread_cpu_s() - w->cpu_from_s;
    return NULL;
}

/* ---- fault injection ------------------------------------------------------ */

static void *injector_main(void *arg)
{
    struct bench *b = arg;
    while (rdt_now_ms() < b->inject_mono_ms && !atomic_load(&b->stop))
        rdb_sleep_ms(b->inject_mono_ms - rdt_now_ms() < 50 ? b->inject_mono_ms - rdt_now_ms() : 50);
    if (atomic_load(&b->stop))
        return NULL;
    unsigned *crash = calloc(b->o.agents, sizeof(*crash)),
             *hang = calloc(b->o.agents, sizeof(*hang));
    unsigned n_crash = 0, n_hang = 0;
    for (unsigned i = 0; crash && hang && i < b->o.agents; i++) {
        if (b->agents[i].kind == CRASH)
            crash[n_crash++] = i;
        else if (b->agents[i].kind == HANG)
            hang[n_hang++] = i;
    }
    int64_t t0 = rdb_wall_ms();
    atomic_store(&b->inject_wall_ms, t0);
    /* Crashes first (their deadline is the tightest), then hangs; each kind
     * at once (one endpoint at a time took seconds at 10,000 agents). */
    rdt_httpd_set_many(b->httpd, crash, n_crash, RDT_EP_DOWN, 0);
    rdt_httpd_set_many(b->httpd, hang, n_hang, RDT_EP_HANG, 0);
    b->inject_apply_ms = rdb_wall_ms() - t0;
    free(crash);
    free(hang);
    return NULL;
}

/* ---- the poller: what the engine says ---------------------------------------- */

/* One request on the poller's connection; the body is in b->poll. */
static long poll_request(struct bench *b, const char *path, const char *post)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", b->o.url, path);
    rdb_buf_clear(&b->poll);
    curl_easy_setopt(b->poll_easy, CURLOPT_URL, url);
    if (post != NULL)
        curl_easy_setopt(b->poll_easy, CURLOPT_POSTFIELDS, post);
    else
        curl_easy_setopt(b->poll_easy, CURLOPT_HTTPGET, 1L);
    long status = 0;
    b->poll_requests++;
    if (curl_easy_perform(b->poll_easy) == CURLE_OK)
        curl_easy_getinfo(b->poll_easy, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static json_t *poll_json(struct bench *b, const char *path)
{
    json_t *j = poll_request(b, path, NULL) == 200 ? json_loads(b->poll.p, 0, NULL) : NULL;
    if (j == NULL)
        b->poll_errors++;
    return j;
}

static int64_t injected_at(struct bench *b)
{
    return atomic_load(&b->inject_wall_ms);
}

static void node_seen(struct bench *b, json_t *item, int64_t now)
{
    struct agent *a = agent_by_id(b, json_string_value(json_object_get(item, "node_id")));
    const char *state = json_string_value(json_object_get(item, "state"));
    if (a == NULL || state == NULL)
        return;
    bool failed = strcmp(state, "failed") == 0, suspect = strcmp(state, "suspect") == 0;
    if (!failed && !suspect)
        return;
    int64_t t;
    if (rdb_parse_time(json_string_value(json_object_get(item, "updated_at")), &t) != 0)
        t = now; /* the poll's own time when the stamp is missing */
    if (suspect && t != a->last_suspect_stamp) {
        a->last_suspect_stamp = t;
        a->suspect_episodes++;
    }
    int64_t inj = injected_at(b);
    if (inj == 0 || t < inj) {
        a->pre_suspect = true;
        a->pre_failed |= failed;
        return;
    }
    if (suspect && !a->suspect.seen)
        a->suspect_direct = true;
    mark_min(&a->suspect, t, 0);
    if (failed)
        mark_min(&a->failed, t, 0);
}

/* The nodes in `state` (NULL: all), page by page. */
static void poll_nodes(struct bench *b, int64_t now, const char *state)
{
    char cursor[300] = "";
    do {
        char path[400];
        snprintf(path, sizeof(path), "/api/v1/nodes?limit=1000%s%s%s%s", state ? "&state=" : "",
                 state ? state : "", cursor[0] ? "&cursor=" : "", cursor);
        json_t *j = poll_json(b, path);
        if (j == NULL)
            return;
        json_t *items = json_object_get(j, "items"), *item;
        size_t i;
        json_array_foreach(items, i, item) node_seen(b, item, now);
        const char *next = json_string_value(json_object_get(j, "next_cursor"));
        snprintf(cursor, sizeof(cursor), "%s", next ? next : "");
        json_decref(j);
    } while (cursor[0]);
}

static void tally(struct bench *b, enum kind k, const char *type, const char *sev, bool predicted)
{
    char key[64];
    snprintf(key, sizeof(key), "%s/%s%s", type, sev, predicted ? " (predicted)" : "");
    struct tally *t = b->tallies[k];
    for (int i = 0; i < MAX_TALLY; i++) {
        if (t[i].n == 0)
            snprintf(t[i].key, sizeof(t[i].key), "%s", key);
        if (strcmp(t[i].key, key) == 0) {
            t[i].n++;
            return;
        }
    }
}

static void record_seen(struct bench *b, json_t *r)
{
    const char *node = json_string_value(json_object_get(r, "node_id"));
    const char *type = json_string_value(json_object_get(r, "fault_type"));
    const char *sev = json_string_value(json_object_get(r, "severity_level"));
    json_t *meta = json_object_get(r, "metadata");
    bool predicted = json_is_true(json_object_get(meta, "predicted"));
    const char *action =
        json_string_value(json_object_get(json_object_get(r, "recovery_action"), "action"));
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(r, "seq"));
    int64_t t;
    if (node == NULL && type != NULL && strcmp(type, "partition") == 0)
        b->partition_records++;
    struct agent *a = agent_by_id(b, node);
    if (a == NULL || type == NULL || sev == NULL ||
        rdb_parse_time(json_string_value(json_object_get(r, "detected_at")), &t) != 0)
        return;
    bool warning = strcmp(sev, "warning") == 0;
    int64_t inj = injected_at(b);
    if (inj == 0 || t < inj) {
        b->pre_records++;
        a->pre_bad_records += !warning;
        return;
    }
    tally(b, a->kind, type, sev, predicted);
    a->bad_records += !warning;
    a->warn_records += warning;
    if (!a->record.seen || t < a->record.ms || (t == a->record.ms && seq < a->record.seq))
        snprintf(a->first_type, sizeof(a->first_type), "%s/%s", type, sev);
    mark_min(&a->record, t, seq);
    if (action != NULL && strcmp(action, "isolate") == 0)
        mark_min(&a->fail_record, t, seq);
    if (predicted)
        mark_min(&a->predicted, t, seq);
}

/* True the first time a record's seq is met (a poll cut short by an error
 * meets some again). */
static bool seq_new(struct bench *b, uint64_t seq)
{
    if (seq >= b->seq_cap) {
        size_t cap = b->seq_cap ? b->seq_cap : 4096;
        while (cap <= seq)
            cap *= 2;
        uint8_t *n = realloc(b->seq_seen, cap);
        if (n == NULL)
            return false;
        memset(n + b->seq_cap, 0, cap - b->seq_cap);
        b->seq_seen = n;
        b->seq_cap = cap;
    }
    if (b->seq_seen[seq])
        return false;
    b->seq_seen[seq] = 1;
    return true;
}

/* New records only: newest first, since the newest stamp seen, down to the
 * highest seq already seen. */
static void poll_faults(struct bench *b)
{
    char since[40], cursor[32] = "";
    rdb_format_time(b->fault_since_ms, since, sizeof(since));
    uint64_t max_seq = b->fault_max_seq;
    int64_t max_t = b->fault_since_ms;
    bool done = false;
    while (!done) {
        char path[200];
        snprintf(path, sizeof(path), "/api/v1/faults/records?limit=1000&since=%s%s%s", since,
                 cursor[0] ? "&cursor=" : "", cursor);
        json_t *j = poll_json(b, path);
        if (j == NULL)
            return; /* nothing advanced: the next poll asks again */
        json_t *items = json_object_get(j, "items"), *r;
        size_t i;
        json_array_foreach(items, i, r)
        {
            uint64_t seq = (uint64_t)json_integer_value(json_object_get(r, "seq"));
            int64_t t;
            if (seq <= b->fault_max_seq) {
                done = true;
                break;
            }
            if (seq_new(b, seq))
                record_seen(b, r);
            max_seq = seq > max_seq ? seq : max_seq;
            if (rdb_parse_time(json_string_value(json_object_get(r, "detected_at")), &t) == 0 &&
                t > max_t)
                max_t = t;
        }
        const char *next = json_string_value(json_object_get(j, "next_cursor"));
        snprintf(cursor, sizeof(cursor), "%s", next ? next : "");
        done |= cursor[0] == '\0';
        json_decref(j);
    }
    b->fault_max_seq = max_seq;
    b->fault_since_ms = max_t;
}

/* A crashed agent that comes back as a zombie with its old epoch is refused.
 * At most ZOMBIES_PER_POLL per poll: each is a request of its own, and the
 * 1,000 crashed agents of a 10,000-agent fleet, failed within a second,
 * would hold the poller that long while the others' suspect states go
 * unseen. */
static void zombie_checks(struct bench *b)
{
    unsigned sent = 0;
    for (unsigned i = 0; i < b->o.agents && sent < ZOMBIES_PER_POLL; i++) {
        struct agent *a = &b->agents[i];
        if (a->kind != CRASH || !a->failed.seen || a->zombie_sent)
            continue;
        sent++;
        char path[128], body[64];
        snprintf(path, sizeof(path), "/api/v1/nodes/%s/heartbeat", a->id);
        snprintf(body, sizeof(body), "{\"epoch\":%lld}", a->epoch);
        a->zombie_sent = true;
        a->zombie_fenced = poll_request(b, path, body) == 409;
    }
}

/*
 * A hung agent, once isolated, is killed at last: its port closes. rdt_httpd
 * keeps the connection of every request a hung endpoint sits on until the
 * endpoint goes down (h2o does not notice that an HTTP/1.1 client gave up),
 * so each probe of a hung agent would hold a descriptor of this process for
 * good: 50 agents probed every 1.5 s exhaust 20,000 descriptors in ten
 * minutes, and then the healthy agents' probes fail too.
 */
static void kill_isolated_hung(struct bench *b)
{
    unsigned *kill = calloc(b->o.agents, sizeof(*kill)), n = 0;
    for (unsigned i = 0; kill && i < b->o.agents; i++) {
        struct agent *a = &b->agents[i];
        if (a->kind == HANG && a->failed.seen && !a->killed) {
            kill[n++] = i;
            a->killed = true;
        }
    }
    if (n > 0)
        rdt_httpd_set_many(b->httpd, kill, n, RDT_EP_DOWN, 0);
    free(kill);
}

/* One poll: what the engine says (timed: how responsive it is), then the
 * zombie checks and the kills it calls for. */
static void poll_once(struct bench *b)
{
    int64_t t0 = rdt_now_ms(), start = rdb_wall_ms();
    if (b->o.poll_all) {
        poll_nodes(b, start, NULL);
    } else {
        poll_nodes(b, start, "suspect");
        poll_nodes(b, start, "failed");
    }
    poll_faults(b);
    int64_t took = rdt_now_ms() - t0;
    tl_note(b, b->tl_poll_ms, start, took);
    if (took > b->poll_max_ms) {
        b->poll_max_ms = took;
        b->poll_max_at = start;
    }
    b->polls++;
    zombie_checks(b);
    kill_isolated_hung(b);
}

static void poll_engine_status(struct bench *b)
{
    json_t *j = poll_json(b, "/api/v1/faults/status");
    json_t *lat = json_object_get(j, "detection_latency_ms");
    b->engine_p50 = json_is_integer(json_object_get(lat, "p50"))
                        ? json_integer_value(json_object_get(lat, "p50"))
                        : -1;
    b->engine_p99 = json_is_integer(json_object_get(lat, "p99"))
                        ? json_integer_value(json_object_get(lat, "p99"))
                        : -1;
    json_decref(j);
}

static void *poller_main(void *arg)
{
    struct bench *b = arg;
    int64_t next = rdt_now_ms();
    while (rdt_now_ms() < b->end_mono_ms && !rdb_interrupted) {
        poll_once(b);
        next += b->o.poll_ms;
        int64_t now = rdt_now_ms();
        if (next < now)
            next = now;
        rdb_sleep_ms(next - now);
    }
    poll_once(b); /* the last word, before the heartbeats stop */
    poll_engine_status(b);
    atomic_store(&b->stop, true);
    return NULL;
}

static int poller_init(struct bench *b)
{
    /* HTTP/1.1 keep-alive without prior knowledge: on an upgraded h2c
     * connection, libcurl 7.88's easy interface sits a full second on
     * answers over 16 KiB. */
    long version = rdb_h2_prior_knowledge() ? rdb_h2_version() : (long)CURL_HTTP_VERSION_1_1;
    b->poll_easy = rdb_easy_new(version, b->hdrs, 5000L, NULL, &b->poll);
    if (b->poll_easy == NULL)
        return -1;
    b->fault_since_ms = b->start_wall_ms - 1000;
    return 0;
}

/* ---- the report ------------------------------------------------------------ */

enum field { F_SUSPECT, F_RECORD, F_FAILED, F_REFUSED };

static const struct mark *field_of(const struct agent *a, enum field f)
{
    switch (f) {
    case F_SUSPECT:
        return &a->suspect;
    case F_RECORD:
        return &a->record;
    case F_FAILED:
        return &a->failed;
    default:
        return &a->refused;
    }
}

/* Milliseconds from the injection to field f, over the agents of kind k. */
static struct rdb_lat stat_of(struct bench *b, enum kind k, enum field f)
{
    struct rdb_lat s = {0};
    int64_t *v = calloc(b->o.agents, sizeof(*v));
    int64_t inj = injected_at(b);
    for (unsigned i = 0; v && i < b->o.agents; i++) {
        const struct agent *a = &b->agents[i];
        if (a->kind != k)
            continue;
        s.of++;
        const struct mark *m = field_of(a, f);
        if (m->seen)
            v[s.n++] = m->ms - inj;
    }
    s = rdb_lat_of(v, s.n, s.of);
    free(v);
    return s;
}

static const char *fmt_stat(struct rdb_lat s, char *buf, size_t len)
{
    if (s.n == 0)
        snprintf(buf, len, "- (0/%zu)", s.of);
    else
        snprintf(buf, len, "%lld / %lld ms (%zu/%zu)", (long long)s.p50, (long long)s.p99, s.n,
                 s.of);
    return buf;
}

static unsigned open_descriptors(void)
{
    unsigned n = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* The 10-second windows in which a heartbeat or a poll of the engine took
 * longer than STALL_MS: when the engine (or this process) fell behind. */
static void report_stalls(struct bench *b)
{
    unsigned total = 0;
    int64_t inj = injected_at(b);
    printf("stalls (10-s windows with a heartbeat round trip or a poll over %d ms):", STALL_MS);
    for (unsigned i = 0; i < TL_SLOTS; i++) {
        if (b->all.tl_rtt_ms[i] <= STALL_MS && b->tl_poll_ms[i] <= STALL_MS)
            continue;
        if (total++ < 30)
            printf("%s %+.0f s (%u/%u ms)", total > 1 ? "," : "",
                   (double)(b->start_wall_ms + (int64_t)i * TL_SLOT_MS - inj) / 1000,
                   b->all.tl_rtt_ms[i], b->tl_poll_ms[i]);
    }
    printf("%s\n", total == 0 ? " none" : total > 30 ? ", ..." : "");
    if (total > 0)
        printf("(window start from the injection: worst heartbeat round trip / worst poll)\n");
    total = 0;
    printf("heartbeats sent over %d ms late (10-s windows, worst lateness):", LATE_MS);
    for (unsigned i = 0; i < TL_SLOTS; i++) {
        if (b->all.tl_lag_ms[i] <= LATE_MS)
            continue;
        if (total++ < 30)
            printf("%s %+.0f s (%u ms)", total > 1 ? "," : "",
                   (double)(b->start_wall_ms + (int64_t)i * TL_SLOT_MS - inj) / 1000,
                   b->all.tl_lag_ms[i]);
    }
    printf("%s\n", total == 0 ? " none" : total > 30 ? ", ..." : "");
    printf("descriptors open in the load generator at the end: %u\n", open_descriptors());
}

/* The workers' figures, merged into b->all (after they ended). */
static void merge_workers(struct bench *b)
{
    struct worker *m = &b->all;
    rdb_hist_init(&m->rtt, 50);
    rdb_hist_init(&m->lag, 1000);
    for (unsigned t = 0; t < b->o.threads; t++) {
        const struct worker *w = &b->w[t];
        m->c.sent += w->c.sent;
        m->c.ok += w->c.ok;
        m->c.fenced += w->c.fenced;
        m->c.other += w->c.other;
        m->c.errors += w->c.errors;
        m->c.crash_stopped += w->c.crash_stopped;
        m->c.connects += w->c.connects;
        if (w->rtt.max_us > m->rtt.max_us)
            m->rtt_max_at = w->rtt_max_at;
        rdb_hist_merge(&m->rtt, &w->rtt);
        rdb_hist_merge(&m->lag, &w->lag);
        if (w->loop_gap_ms > m->loop_gap_ms) {
            m->loop_gap_ms = w->loop_gap_ms;
            m->loop_gap_at = w->loop_gap_at;
        }
        for (unsigned i = 0; i < TL_SLOTS; i++)
            if (w->tl_rtt_ms[i] > m->tl_rtt_ms[i])
                m->tl_rtt_ms[i] = w->tl_rtt_ms[i];
        for (unsigned i = 0; i < TL_SLOTS; i++)
            if (w->tl_lag_ms[i] > m->tl_lag_ms[i])
                m->tl_lag_ms[i] = w->tl_lag_ms[i];
    }
}

static void report_heartbeats(struct bench *b)
{
    const struct worker *m = &b->all;
    const struct counters *c = &m->c;
    printf("heartbeats: %llu sent, %llu answered 200, %llu answered 409, %llu other, %llu "
           "transport errors\n",
           (unsigned long long)c->sent, (unsigned long long)c->ok, (unsigned long long)c->fenced,
           (unsigned long long)c->other, (unsigned long long)c->errors);
    printf("connections the agents opened to the engine: %llu (one per worker at the start; one "
           "more for the poller)\n",
           (unsigned long long)c->connects);
    int64_t inj = injected_at(b);
    printf("heartbeat round trip: p50 %.2f ms, p99 %.2f ms, max %.2f ms (at %+.1f s); send "
           "lateness (behind schedule, waits included): p99 %lld ms, max %lld ms\n",
           rdb_hist_quantile(&m->rtt, 0.5) / 1000.0, rdb_hist_quantile(&m->rtt, 0.99) / 1000.0,
           m->rtt.max_us / 1000.0, (double)(m->rtt_max_at - inj) / 1000,
           (long long)(rdb_hist_quantile(&m->lag, 0.99) / 1000), (long long)(m->lag.max_us / 1000));
    printf("longest pause of a worker's loop in the load generator: %lld ms (at %+.1f s)\n",
           (long long)m->loop_gap_ms, (double)(m->loop_gap_at - inj) / 1000);
    printf("engine polled %u times (every %u ms: %s nodes and the new fault records; slowest poll "
           "%lld ms at %+.1f s, %u failed requests)\n",
           b->polls, b->o.poll_ms, b->o.poll_all ? "all" : "suspect and failed",
           (long long)b->poll_max_ms, (double)(b->poll_max_at - inj) / 1000, b->poll_errors);
    printf("(times are seconds from the injection)\n");
    report_stalls(b);
}

static void report_table(struct bench *b)
{
    printf("\n%-10s %5s  %-26s %-26s %-26s %s\n", "kind", "n", "suspect p50/p99",
           "fault record p50/p99", "failed (isolated) p50/p99", "heartbeat refused p50/p99");
    for (int k = CRASH; k < N_KINDS; k++) {
        char s1[64], s2[64], s3[64], s4[64];
        printf("%-10s %5u  %-26s %-26s %-26s %s\n", kind_names[k], b->n_kind[k],
               fmt_stat(stat_of(b, k, F_SUSPECT), s1, sizeof(s1)),
               fmt_stat(stat_of(b, k, F_RECORD), s2, sizeof(s2)),
               fmt_stat(stat_of(b, k, F_FAILED), s3, sizeof(s3)),
               k == CRASH ? "n/a (no heartbeats)"
                          : fmt_stat(stat_of(b, k, F_REFUSED), s4, sizeof(s4)));
    }
    printf("(milliseconds from the injection; suspect = first seen suspect or failed, stamped by "
           "the leader; fault record = the agent's first record after the injection)\n");
}

static void report_types(struct bench *b)
{
    printf("\nfault records after the injection, by kind:\n");
    for (int k = 0; k < N_KINDS; k++) {
        printf("  %-10s", kind_names[k]);
        bool any = false;
        for (int i = 0; i < MAX_TALLY && b->tallies[k][i].n; i++, any = true)
            printf("%s %u x %s", any ? "," : "", b->tallies[k][i].n, b->tallies[k][i].key);
        printf("%s\n", any ? "" : " none");
    }
    unsigned direct = 0, zombies = 0, fenced = 0;
    for (unsigned i = 0; i < b->o.agents; i++) {
        const struct agent *a = &b->agents[i];
        if (a->kind != CRASH)
            continue;
        direct += a->suspect_direct;
        zombies += a->zombie_sent;
        fenced += a->zombie_fenced;
    }
    printf("crash: %u of %u seen in state suspect before failed (the others were already failed "
           "when polled; their suspect time is the failed stamp)\n",
           direct, b->n_kind[CRASH]);
    printf("crash: a zombie heartbeat with the old epoch after failed: %u of %u refused with "
           "409\n",
           fenced, zombies);
    if (b->partition_records)
        printf("partition records (mass-failure guard): %u\n", b->partition_records);
    if (b->engine_p50 >= 0)
        printf("engine's own detection latency (stage failed, trouble to commit): p50 %lld ms, "
               "p99 %lld ms\n",
               b->engine_p50, b->engine_p99);
}

struct prediction {
    unsigned predicted, failed, before, failed_unpredicted;
    bool group_ok;
    int64_t first_pred, first_fail;
};

static struct prediction prediction_of(struct bench *b)
{
    struct prediction p = {0};
    uint64_t first_pred_seq = 0, first_fail_seq = 0;
    for (unsigned i = 0; i < b->o.agents; i++) {
        const struct agent *a = &b->agents[i];
        if (a->kind != DEGRADE)
            continue;
        p.predicted += a->predicted.seen;
        p.failed += a->fail_record.seen;
        bool before =
            a->predicted.seen && (!a->fail_record.seen || a->predicted.seq < a->fail_record.seq);
        p.before += before;
        p.failed_unpredicted += (a->fail_record.seen && !before) || a->pre_failed;
        if (a->predicted.seen && (first_pred_seq == 0 || a->predicted.seq < first_pred_seq))
            first_pred_seq = a->predicted.seq, p.first_pred = a->predicted.ms;
        if (a->fail_record.seen && (first_fail_seq == 0 || a->fail_record.seq < first_fail_seq))
            first_fail_seq = a->fail_record.seq, p.first_fail = a->fail_record.ms;
    }
    p.group_ok = first_pred_seq != 0 && (first_fail_seq == 0 || first_pred_seq < first_fail_seq);
    return p;
}

struct falses {
    unsigned failed, bad_records, refused, pre_failed, pre_bad, suspect_agents, episodes;
    unsigned warn_records, pre_suspect;
};

static struct falses falses_of(struct bench *b)
{
    struct falses f = {0};
    for (unsigned i = 0; i < b->o.agents; i++) {
        const struct agent *a = &b->agents[i];
        f.pre_failed += a->pre_failed;
        f.pre_bad += a->pre_bad_records;
        f.pre_suspect += a->pre_suspect;
        if (a->kind != HEALTHY)
            continue;
        f.failed += a->failed.seen;
        f.bad_records += a->bad_records > 0;
        f.refused += a->refused.seen;
        f.suspect_agents += a->suspect.seen || a->pre_suspect;
        f.episodes += a->suspect_episodes;
        f.warn_records += a->warn_records;
    }
    return f;
}

static void list_late(struct bench *b, enum field fld, int64_t limit_ms, const char *what)
{
    int64_t inj = injected_at(b);
    unsigned shown = 0;
    for (unsigned i = 0; i < b->o.agents && shown < 10; i++) {
        const struct agent *a = &b->agents[i];
        const struct mark *m = field_of(a, fld);
        if (a->kind != CRASH || (m->seen && m->ms - inj <= limit_ms))
            continue;
        if (m->seen)
            printf("    late %s: %s at +%lld ms (first record %s)\n", what, a->id,
                   (long long)(m->ms - inj), a->first_type[0] ? a->first_type : "none");
        else
            printf("    never %s: %s\n", what, a->id);
        shown++;
    }
}

static void report_targets(struct bench *b)
{
    int64_t fail_limit = 3 * (int64_t)b->o.interval_ms + 100;
    int64_t suspect_limit = 2 * (int64_t)b->o.interval_ms;
    struct rdb_lat failed = stat_of(b, CRASH, F_FAILED), suspect = stat_of(b, CRASH, F_SUSPECT);
    struct falses f = falses_of(b);
    struct prediction p = prediction_of(b);
    printf("\nhealthy (%u): failed %u, with a non-warning record %u, heartbeats refused %u; "
           "warning records %u; agents ever suspect %u (%u episodes seen)\n",
           b->n_kind[HEALTHY], f.failed, f.bad_records, f.refused, f.warn_records, f.suspect_agents,
           f.episodes);
    printf("before the injection (all %u agents): failed %u, non-warning records %u, suspect "
           "%u, records %u\n",
           b->o.agents, f.pre_failed, f.pre_bad, f.pre_suspect, b->pre_records);
    printf("degrading (%u): predicted %u, failed %u, predicted before its own failure %u, failed "
           "without a prediction first %u; first prediction +%.1f s, first failure %s%.1f s\n",
           b->n_kind[DEGRADE], p.predicted, p.failed, p.before, p.failed_unpredicted,
           p.predicted ? (double)(p.first_pred - injected_at(b)) / 1000 : 0.0,
           p.failed ? "+" : "none ",
           p.failed ? (double)(p.first_fail - injected_at(b)) / 1000 : 0.0);

    printf("\n");
    bool ok = failed.n == failed.of && failed.p99 <= fail_limit;
    printf("%s crash failed within 3 intervals + 100 ms (%lld ms) p99: %lld ms, %zu/%zu failed\n",
           ok ? "PASS" : "FAIL", (long long)fail_limit, (long long)failed.p99, failed.n, failed.of);
    if (!ok)
        list_late(b, F_FAILED, fail_limit, "failed");
    ok = suspect.n == suspect.of && suspect.p99 <= suspect_limit;
    printf("%s crash suspect within 2 intervals (%lld ms) p99: %lld ms, %zu/%zu suspected\n",
           ok ? "PASS" : "FAIL", (long long)suspect_limit, (long long)suspect.p99, suspect.n,
           suspect.of);
    if (!ok)
        list_late(b, F_SUSPECT, suspect_limit, "suspect");
    unsigned falses = f.failed + f.bad_records + f.refused + f.pre_failed + f.pre_bad;
    bool full = b->o.duration_s >= 600;
    printf("%s 0 false failures among the healthy over %u s after a %u s warm-up%s: %u\n",
           falses == 0 ? "PASS" : "FAIL", b->o.duration_s, b->o.warmup_s,
           full ? "" : " (shorter than the 10 minutes of the target)", falses);
    ok = p.group_ok && p.failed_unpredicted == 0;
    printf("%s degrading: a predicted fault before any of them fails (and for each agent before "
           "its own failure): %u/%u predicted first%s\n",
           ok ? "PASS" : "FAIL", p.before, b->n_kind[DEGRADE],
           p.failed ? "" : " (none failed within the run)");
}

/* The load generator's CPU from the warm-up on: the whole process's per
 * request (heartbeats and polls; its threads answering the engine's health
 * probes included), then the workers' alone per heartbeat. */
static void report_cpu(const struct bench *b)
{
    uint64_t hb = 0;
    double workers = 0;
    for (unsigned t = 0; t < b->o.threads; t++) {
        hb += b->w[t].answered;
        workers += b->w[t].cpu_s;
    }
    printf("\n");
    rdb_print_cpu_since(&b->cpu_from, hb + b->poll_requests);
    printf("(%llu heartbeats and %llu polling requests; the agents' health endpoints answering "
           "the probes are in this process too)\n",
           (unsigned long long)hb, (unsigned long long)b->poll_requests);
    printf("the workers' CPU (heartbeats on h2c) while measuring: %.1f s, %.1f us per heartbeat\n",
           workers, hb ? 1e6 * workers / (double)hb : 0);
}

static void report(struct bench *b)
{
    char when[40];
    rdb_format_time(injected_at(b), when, sizeof(when));
    merge_workers(b);
    printf("\n== fault detection benchmark ==\n");
    printf("%u agents: %u crash, %u hang, %u degrading, %u healthy; heartbeats every %u +/- %u "
           "ms over HTTP/2 (prior knowledge on nghttp2, %u worker%s with a connection each, %s)\n",
           b->o.agents, b->n_kind[CRASH], b->n_kind[HANG], b->n_kind[DEGRADE], b->n_kind[HEALTHY],
           b->o.interval_ms, b->o.jitter_ms, b->o.threads, b->o.threads > 1 ? "s" : "", b->o.url);
    printf("registered in %.1f s; warm-up %u s; faults injected at %s (endpoints changed within "
           "%lld ms); measured %u s after%s\n",
           (double)b->reg_ms / 1000, b->o.warmup_s, when, (long long)b->inject_apply_ms,
           b->o.duration_s, rdb_interrupted ? " (interrupted early)" : "");
    report_heartbeats(b);
    report_table(b);
    report_types(b);
    report_targets(b);
    report_cpu(b);
    rdb_print_self_cpu();
}

static void dump(struct bench *b)
{
    FILE *f = fopen(b->o.dump, "w");
    if (f == NULL) {
        fprintf(stderr, "loadgen: %s: %s\n", b->o.dump, strerror(errno));
        return;
    }
    int64_t inj = injected_at(b);
    fprintf(f, "agent\tkind\tsuspect_ms\tfailed_ms\trecord_ms\tfirst_record\tpredicted_ms\t"
               "fail_record_ms\trefused_ms\tsuspect_episodes\n");
    for (unsigned i = 0; i < b->o.agents; i++) {
        const struct agent *a = &b->agents[i];
        const struct mark *m[] = {&a->suspect, &a->failed, &a->record};
        fprintf(f, "%s\t%s", a->id, kind_names[a->kind]);
        for (int k = 0; k < 3; k++)
            fprintf(f, m[k]->seen ? "\t%lld" : "\t-", (long long)(m[k]->ms - inj));
        fprintf(f, "\t%s", a->first_type[0] ? a->first_type : "-");
        const struct mark *n[] = {&a->predicted, &a->fail_record, &a->refused};
        for (int k = 0; k < 3; k++)
            fprintf(f, n[k]->seen ? "\t%lld" : "\t-", (long long)(n[k]->ms - inj));
        fprintf(f, "\t%u\n", a->suspect_episodes);
    }
    fclose(f);
}

/* ---- main ------------------------------------------------------------------ */

static int start_threads(struct bench *b)
{
    if (poller_init(b) != 0)
        return -1;
    rdb_cpu_mark(&b->cpu_from);
    atomic_store(&b->measuring, true);
    b->inject_mono_ms = rdt_now_ms() + (int64_t)b->o.warmup_s * 1000;
    b->end_mono_ms = b->inject_mono_ms + (int64_t)b->o.duration_s * 1000;
    fprintf(stderr,
            "loadgen: %u agents registered in %.1f s; faults in %u s, then %u s of measurement\n",
            b->o.agents, (double)b->reg_ms / 1000, b->o.warmup_s, b->o.duration_s);
    if (pthread_create(&b->injector, NULL, injector_main, b) != 0)
        return -1;
    if (pthread_create(&b->poller, NULL, poller_main, b) != 0) {
        atomic_store(&b->stop, true);
        pthread_join(b->injector, NULL);
        return -1;
    }
    atomic_store(&b->threads_started, true);
    return 0;
}

/* Waits until the workers have registered the fleet, then starts the warm-up
 * (the injector and the poller). 0, or -1 when the run cannot take place. */
static int await_fleet(struct bench *b)
{
    int64_t t0 = rdt_now_ms();
    unsigned done;
    while ((done = atomic_load(&b->reg_done)) < b->o.agents) {
        if (rdb_interrupted)
            return -1;
        if (rdt_now_ms() - t0 > REG_MS) {
            fprintf(stderr, "loadgen: %u of %u registrations had not finished after %d s\n",
                    b->o.agents - done, b->o.agents, REG_MS / 1000);
            return -1;
        }
        rdb_sleep_ms(5);
    }
    b->reg_ms = rdt_now_ms() - t0;
    unsigned failed = atomic_load(&b->reg_failed);
    if (failed > 0) {
        fprintf(stderr, "loadgen: %u of %u agents could not register\n", failed, b->o.agents);
        return -1;
    }
    return start_threads(b);
}

/* Opens worker w's connection (from the main thread, before the worker
 * runs): a GET /health on it, answered 200 within 5 s, tells that the
 * engine takes HTTP/2 with prior knowledge. 0, or -1. */
static int open_worker(struct worker *w)
{
    if (h2c_connect(w->h2, w->b->o.url, RDB_H2_CONNECT_MS) != 0 ||
        h2c_submit(w->h2, "GET", "/health", NULL, 0, 5000, &open_tag) != 0)
        return -1;
    w->c.connects++;
    while (h2c_in_flight(w->h2) > 0 && !rdb_interrupted)
        h2c_step(w->h2, 100);
    return w->opened ? 0 : -1;
}

static int run(struct bench *b)
{
    if (fleet_init(b) != 0) {
        fprintf(stderr, "loadgen: cannot start %u health endpoints and %u workers\n", b->o.agents,
                b->o.threads);
        return 1;
    }
    b->start_wall_ms = rdb_wall_ms();
    /* Each worker's connection, before any POST on it (see rdb_h2_prior_knowledge). */
    for (unsigned t = 0; t < b->o.threads; t++) {
        struct worker *w = &b->w[t];
        if (open_worker(w) != 0) {
            fprintf(stderr, "loadgen: worker %u: no HTTP/2 connection to %s/health\n", t, b->o.url);
            return 1;
        }
    }
    int rc = 0;
    for (unsigned t = 0; t < b->o.threads && rc == 0; t++) {
        struct worker *w = &b->w[t];
        w->started = pthread_create(&w->thread, NULL, worker_main, w) == 0;
        rc = w->started ? 0 : -1;
    }
    if (rc == 0)
        rc = await_fleet(b);
    if (rc != 0)
        atomic_store(&b->stop, true); /* ends the workers */
    else
        pthread_join(b->poller, NULL); /* it says stop at the end */
    for (unsigned t = 0; t < b->o.threads; t++)
        if (b->w[t].started)
            pthread_join(b->w[t].thread, NULL);
    if (rc != 0)
        return 1;
    pthread_join(b->injector, NULL);
    if (injected_at(b) == 0) {
        fprintf(stderr, "loadgen: stopped before the faults were injected\n");
        return 1;
    }
    report(b);
    if (b->o.dump)
        dump(b);
    return 0;
}

int main(int argc, char **argv)
{
    static struct bench b; /* not on the stack */
    if (parse_opts(argc, argv, &b.o) != 0)
        return 2;
    if (rdb_init() != 0)
        return 1;
    int rc = run(&b);
    fleet_free(&b);
    if (b.poll_easy)
        curl_easy_cleanup(b.poll_easy);
    rdb_buf_free(&b.poll);
    free(b.seq_seen);
    rdb_end();
    return rc;
}
