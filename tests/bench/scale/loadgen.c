/*
 * bench_scale_loadgen: the scale benchmark's load generator
 * (tests/bench/scale/run.sh starts the engine and runs this).
 *
 * One process simulates a large fleet against a running recoveryd: the
 * agents are split among --threads workers, each with its own libcurl multi
 * handle and HTTP/2 connection (see rdb_h2_prior_knowledge in
 * tests/bench/lib/bench.h for libcurl 7.88). A worker registers its agents
 * (16 at a time), then heartbeats each every interval +/- uniform jitter.
 * Due heartbeats are kept in a binary heap per worker, so the cost per
 * heartbeat does not grow with the fleet. An agent whose previous heartbeat
 * is still in flight when the next is due skips it (counted).
 *
 * Once every agent is registered and the warm-up is over, it measures for
 * the duration: heartbeat round trips (p50, p99, max), how late the sends
 * were, and, once a second, the engine's resident memory (VmRSS of
 * --engine-pid). It prints a line per 10-second window, the totals and
 * PASS/FAIL against the targets of issue 16 (engine RSS under 512 MiB,
 * heartbeat p99 under 50 ms). It exits 0 when the run took place, whatever
 * the figures; 1 on a setup error, 2 on bad usage.
 *
 * What it does not do yet (issue 16): tasks and checkpoints, the failure
 * storm, three replicas, health endpoints for the agents (the probes' cost
 * at this size).
 */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "harness.h"

#define REG_IN_FLIGHT 16 /* per worker */
#define MAX_THREADS   32
#define RESP_MAX      256
#define HIST_SLOTS    40000 /* of 50 us: 2 s; beyond counts as over */
#define WIN_S         10
#define MAX_WINDOWS   1024
#define RSS_LIMIT_KIB (512 * 1024)
#define P99_LIMIT_US  50000

struct opts {
    const char *url;
    unsigned agents, interval_ms, jitter_ms, warmup_s, duration_s, engine_pid, threads;
    uint64_t seed;
};

struct agent {
    char id[24];
    long long epoch;
    CURL *easy;
    char url[192];
    char body[224];
    struct rdb_buf resp;
    char resp_mem[RESP_MAX];
    bool registered, in_flight, stopped;
    int64_t due_ms; /* monotonic */
};

struct hist {
    uint64_t n, over;
    int64_t max_us;
    uint32_t slot[HIST_SLOTS];
};

struct window {
    uint64_t sent, ok, errors;
    int64_t max_us;
    struct hist *h; /* this window's round trips */
};

struct bench;

/* One worker: its agents (every threads-th), its connection, its figures. */
struct worker {
    struct bench *b;
    pthread_t thread;
    struct agent *agents;
    unsigned n;
    unsigned *heap; /* agent indices by due_ms */
    unsigned heap_n;
    CURLM *multi;
    uint64_t rng;
    unsigned reg_next, reg_done, reg_failed;
    uint64_t sent, ok, fenced, other, errors, skipped;
    unsigned errors_printed;
    struct hist rtt, lag;
    struct window win[MAX_WINDOWS];
    int rc;
};

struct bench {
    struct opts o;
    struct worker *w;
    struct curl_slist *hdrs;
    atomic_uint registered, failed_reg, workers_done;
    _Atomic int64_t measure_from; /* monotonic ms; 0 until all registered */
    int64_t measure_to;
    long rss_first, rss_max, rss_last; /* KiB, while measuring (worker 0) */
    long rss_win[MAX_WINDOWS];
    int64_t next_rss_ms, reg_start;
};

/* ---- histograms (50 us slots) -------------------------------------------- */

static void hist_add(struct hist *h, int64_t us)
{
    if (us < 0)
        us = 0;
    uint64_t i = (uint64_t)us / 50;
    if (i < HIST_SLOTS)
        h->slot[i]++;
    else
        h->over++;
    h->n++;
    if (us > h->max_us)
        h->max_us = us;
}

/* Upper edge of the slot holding quantile q, in microseconds (the max when
 * it lies beyond the last slot). */
static int64_t hist_q(const struct hist *h, double q)
{
    uint64_t want = (uint64_t)ceil(q * (double)h->n), seen = 0;
    if (want == 0)
        return 0;
    for (unsigned i = 0; i < HIST_SLOTS; i++) {
        seen += h->slot[i];
        if (seen >= want)
            return (int64_t)(i + 1) * 50;
    }
    return h->max_us;
}

/* ---- the heap of due heartbeats (per worker) -------------------------------- */

static bool heap_less(const struct worker *w, unsigned x, unsigned y)
{
    return w->agents[w->heap[x]].due_ms < w->agents[w->heap[y]].due_ms;
}

static void heap_swap(struct worker *w, unsigned x, unsigned y)
{
    unsigned t = w->heap[x];
    w->heap[x] = w->heap[y];
    w->heap[y] = t;
}

static void heap_push(struct worker *w, unsigned agent)
{
    unsigned i = w->heap_n++;
    w->heap[i] = agent;
    while (i > 0 && heap_less(w, i, (i - 1) / 2)) {
        heap_swap(w, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static unsigned heap_pop(struct worker *w)
{
    unsigned top = w->heap[0];
    w->heap[0] = w->heap[--w->heap_n];
    for (unsigned i = 0;;) {
        unsigned l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->heap_n && heap_less(w, l, m))
            m = l;
        if (r < w->heap_n && heap_less(w, r, m))
            m = r;
        if (m == i)
            break;
        heap_swap(w, i, m);
        i = m;
    }
    return top;
}

/* ---- windows and the engine's memory ---------------------------------------- */

/* The window `now` falls in, or -1 outside the measurement. */
static int window_index(const struct bench *b, int64_t now)
{
    int64_t from = atomic_load(&b->measure_from);
    if (from == 0 || now < from || now >= b->measure_to)
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
    if (win->h == NULL)
        win->h = calloc(1, sizeof(*win->h));
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

/* Worker 0 only: the engine's RSS once a second while measuring. */
static void sample_rss(struct bench *b, int64_t now)
{
    if (b->o.engine_pid == 0 || now < b->next_rss_ms)
        return;
    b->next_rss_ms = now + 1000;
    int i = window_index(b, now);
    long kib = i < 0 ? -1 : rss_kib(b->o.engine_pid);
    if (kib < 0)
        return;
    if (b->rss_first == 0)
        b->rss_first = kib;
    b->rss_last = kib;
    if (kib > b->rss_max)
        b->rss_max = kib;
    if (kib > b->rss_win[i])
        b->rss_win[i] = kib;
}

/* ---- transfers ------------------------------------------------------------- */

static void start_transfer(struct worker *w, struct agent *a, const char *body)
{
    rdb_buf_clear(&a->resp);
    curl_easy_setopt(a->easy, CURLOPT_URL, a->url);
    curl_easy_setopt(a->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(a->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    a->in_flight = curl_multi_add_handle(w->multi, a->easy) == CURLM_OK;
}

static void on_registered(struct worker *w, struct agent *a, CURLcode rc, long status)
{
    struct bench *b = w->b;
    json_t *j = status == 201 ? json_loads(a->resp.p, 0, NULL) : NULL;
    w->reg_done++;
    a->epoch = json_integer_value(json_object_get(j, "epoch"));
    json_decref(j);
    if (a->epoch <= 0) {
        if (w->reg_failed++ < 3)
            fprintf(stderr, "loadgen: registering %s: %s, HTTP %ld: %.200s\n", a->id,
                    curl_easy_strerror(rc), status, a->resp.p);
        atomic_fetch_add(&b->failed_reg, 1);
        return;
    }
    atomic_fetch_add(&b->registered, 1);
    a->registered = true;
    snprintf(a->url, sizeof(a->url), "%s/api/v1/nodes/%s/heartbeat", b->o.url, a->id);
    /* The first heartbeat at a random point of its first interval. */
    a->due_ms = rdt_now_ms() + (int64_t)rdb_uniform(&w->rng, 0, b->o.interval_ms);
    heap_push(w, (unsigned)(a - w->agents));
}

static void on_heartbeat_done(struct worker *w, struct agent *a, CURLcode rc, long status,
                              int64_t us)
{
    struct window *win = window_at(w, rdt_now_ms());
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
        a->stopped = true; /* failed by the engine: it stops (it would register again) */
        if (win)
            w->fenced++;
        return;
    }
    if (win == NULL)
        return;
    hist_add(&w->rtt, us);
    hist_add(win->h, us);
    if (us > win->max_us)
        win->max_us = us;
    if (status == 200) {
        w->ok++;
        win->ok++;
    } else if (w->other++ < 3) {
        fprintf(stderr, "loadgen: heartbeat of %s: HTTP %ld %.200s\n", a->id, status, a->resp.p);
    }
}

static void drain(struct worker *w)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        long status = 0;
        curl_off_t us = 0;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &us);
        curl_multi_remove_handle(w->multi, e);
        struct agent *a = (struct agent *)priv;
        a->in_flight = false;
        if (a->registered)
            on_heartbeat_done(w, a, rc, rc == CURLE_OK ? status : 0, (int64_t)us);
        else
            on_registered(w, a, rc, rc == CURLE_OK ? status : 0);
    }
}

static void register_more(struct worker *w)
{
    while (w->reg_next < w->n && w->reg_next - w->reg_done < REG_IN_FLIGHT) {
        struct agent *a = &w->agents[w->reg_next++];
        snprintf(a->url, sizeof(a->url), "%s/api/v1/nodes", w->b->o.url);
        snprintf(a->body, sizeof(a->body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":4}}",
                 a->id);
        start_transfer(w, a, a->body);
    }
}

/* Sends every heartbeat that is due; returns ms until the next one. */
static int64_t send_due(struct worker *w)
{
    const struct opts *o = &w->b->o;
    int64_t now = rdt_now_ms();
    while (w->heap_n > 0) {
        struct agent *a = &w->agents[w->heap[0]];
        if (a->due_ms > now)
            return a->due_ms - now;
        unsigned idx = heap_pop(w);
        if (a->stopped)
            continue; /* out of the heap for good */
        struct window *win = window_at(w, now);
        if (a->in_flight) {
            if (win)
                w->skipped++;
        } else {
            if (win) {
                hist_add(&w->lag, (now - a->due_ms) * 1000);
                w->sent++;
                win->sent++;
            }
            double cpu = 0.30 + rdb_uniform(&w->rng, -0.03, 0.03);
            snprintf(a->body, sizeof(a->body),
                     "{\"epoch\":%lld,\"load\":{\"slots_used\":0},\"metrics\":{\"error_rate\":"
                     "0.01,\"latency_ms\":20,\"cpu\":%.3f,\"mem\":0.4}}",
                     a->epoch, cpu);
            start_transfer(w, a, a->body);
        }
        a->due_ms += rdb_jittered_ms(&w->rng, o->interval_ms, o->jitter_ms);
        if (a->due_ms < now - (int64_t)o->interval_ms)
            a->due_ms = now; /* fell far behind: no catching up in a burst */
        heap_push(w, idx);
    }
    return 100;
}

/* ---- the workers ---------------------------------------------------------------- */

static int worker_init(struct bench *b, struct worker *w, unsigned first, unsigned n, unsigned t)
{
    w->b = b;
    w->n = n;
    w->rng = rdb_seed(b->o.seed + t);
    w->agents = calloc(n, sizeof(*w->agents));
    w->heap = calloc(n ? n : 1, sizeof(*w->heap));
    w->multi = rdb_h2_multi(1);
    if (!w->agents || !w->heap || !w->multi)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        struct agent *a = &w->agents[i];
        snprintf(a->id, sizeof(a->id), "scale-%05u", first + i + 1);
        a->easy = curl_easy_init();
        if (a->easy == NULL)
            return -1;
        curl_easy_setopt(a->easy, CURLOPT_HTTP_VERSION, rdb_h2_version());
        curl_easy_setopt(a->easy, CURLOPT_HTTPHEADER, b->hdrs);
        curl_easy_setopt(a->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(a->easy, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(a->easy, CURLOPT_PIPEWAIT, 1L);
        curl_easy_setopt(a->easy, CURLOPT_PRIVATE, a);
        curl_easy_setopt(a->easy, CURLOPT_WRITEFUNCTION, rdb_buf_write);
        curl_easy_setopt(a->easy, CURLOPT_WRITEDATA, &a->resp);
        rdb_buf_fixed(&a->resp, a->resp_mem, sizeof(a->resp_mem));
    }
    return 0;
}

static void worker_free(struct worker *w)
{
    for (unsigned i = 0; w->agents && i < w->n; i++) {
        struct agent *a = &w->agents[i];
        if (a->easy && a->in_flight)
            curl_multi_remove_handle(w->multi, a->easy);
        if (a->easy)
            curl_easy_cleanup(a->easy);
    }
    if (w->multi)
        curl_multi_cleanup(w->multi);
    for (unsigned i = 0; i < MAX_WINDOWS; i++)
        free(w->win[i].h);
    free(w->heap);
    free(w->agents);
}

/* Registers this worker's agents and heartbeats until the measurement ends.
 * Worker 0 also starts the measurement once every agent is registered and
 * samples the engine's RSS. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    bool first = w == &b->w[0];
    w->rc = -1;
    if (rdb_h2_open(w->multi, b->o.url, 1) != 1)
        return NULL;
    int64_t reg_deadline = rdt_now_ms() + 120000;
    for (;;) {
        int running;
        curl_multi_perform(w->multi, &running);
        drain(w);
        register_more(w);
        int64_t now = rdt_now_ms();
        int64_t from = atomic_load(&b->measure_from);
        unsigned done = atomic_load(&b->registered) + atomic_load(&b->failed_reg);
        if (from == 0 && first && done == b->o.agents) {
            if (atomic_load(&b->failed_reg) > 0) {
                fprintf(stderr, "loadgen: %u of %u agents could not register\n",
                        atomic_load(&b->failed_reg), b->o.agents);
                b->measure_to = now; /* ends the run */
            } else {
                b->measure_to = now + ((int64_t)b->o.warmup_s + b->o.duration_s) * 1000;
                fprintf(stderr,
                        "loadgen: %u agents registered in %.1f s; warm-up %u s, then %u s of "
                        "measurement\n",
                        b->o.agents, (double)(now - b->reg_start) / 1000, b->o.warmup_s,
                        b->o.duration_s);
            }
            atomic_store(&b->measure_from, now + (int64_t)b->o.warmup_s * 1000);
        } else if (from == 0 && now > reg_deadline) {
            fprintf(stderr, "loadgen: registrations did not finish within 120 s\n");
            return NULL;
        }
        if ((from != 0 && now >= b->measure_to) || rdb_interrupted)
            break;
        if (first)
            sample_rss(b, now);
        int64_t wait = send_due(w);
        curl_multi_poll(w->multi, NULL, 0, (int)(wait > 100 ? 100 : wait), NULL);
    }
    w->rc = atomic_load(&b->failed_reg) == 0 ? 0 : -1;
    return NULL;
}

/* ---- the report ------------------------------------------------------------------ */

static void hist_merge(struct hist *to, const struct hist *from)
{
    to->n += from->n;
    to->over += from->over;
    if (from->max_us > to->max_us)
        to->max_us = from->max_us;
    for (unsigned i = 0; i < HIST_SLOTS; i++)
        to->slot[i] += from->slot[i];
}

static void report(struct bench *b)
{
    static struct hist rtt, lag, wh;
    uint64_t sent = 0, ok = 0, fenced = 0, other = 0, errors = 0, skipped = 0;
    for (unsigned t = 0; t < b->o.threads; t++) {
        const struct worker *w = &b->w[t];
        sent += w->sent, ok += w->ok, fenced += w->fenced, other += w->other;
        errors += w->errors, skipped += w->skipped;
        hist_merge(&rtt, &w->rtt);
        hist_merge(&lag, &w->lag);
    }
    double secs = (double)b->o.duration_s;
    printf("\n== scale benchmark ==\n");
    printf("%u agents heartbeating every %u +/- %u ms over HTTP/2 (%s, %u workers with one "
           "connection each, %s); warm-up %u s, measured %u s%s\n",
           b->o.agents, b->o.interval_ms, b->o.jitter_ms,
           rdb_h2_prior_knowledge() ? "prior knowledge" : "h2c upgrade", b->o.threads, b->o.url,
           b->o.warmup_s, b->o.duration_s, rdb_interrupted ? " (interrupted early)" : "");
    double want = (double)b->o.agents * 1000.0 / b->o.interval_ms;
    printf("heartbeats: %llu sent (%.0f/s of %.0f/s scheduled), %llu answered 200, %llu answered "
           "409 (the agent was failed: it stops), %llu other, %llu transport errors, %llu skipped "
           "(previous one still in flight)\n",
           (unsigned long long)sent, (double)sent / secs, want, (unsigned long long)ok,
           (unsigned long long)fenced, (unsigned long long)other, (unsigned long long)errors,
           (unsigned long long)skipped);
    printf("heartbeat round trip: p50 %.2f ms, p99 %.2f ms, max %.2f ms; send lateness p99 %lld "
           "ms, max %lld ms\n",
           (double)hist_q(&rtt, 0.50) / 1000, (double)hist_q(&rtt, 0.99) / 1000,
           (double)rtt.max_us / 1000, (long long)(hist_q(&lag, 0.99) / 1000),
           (long long)(lag.max_us / 1000));
    if (b->o.engine_pid)
        printf("engine RSS: %.1f MiB at the start of the measurement, %.1f MiB at the end, %.1f "
               "MiB max\n",
               (double)b->rss_first / 1024, (double)b->rss_last / 1024, (double)b->rss_max / 1024);
    printf("\nwindow (s)  sent/s   ok/s    p99 ms   max ms   RSS MiB\n");
    for (unsigned i = 0; i < MAX_WINDOWS; i++) {
        uint64_t ws = 0, wo = 0;
        int64_t wmax = 0;
        bool any = false;
        memset(&wh, 0, sizeof(wh));
        for (unsigned t = 0; t < b->o.threads; t++) {
            const struct window *w = &b->w[t].win[i];
            if (w->h == NULL)
                continue;
            any = true;
            ws += w->sent, wo += w->ok;
            wmax = w->max_us > wmax ? w->max_us : wmax;
            hist_merge(&wh, w->h);
        }
        if (!any)
            break;
        printf("%4u-%-4u  %7.0f  %7.0f  %7.2f  %7.2f  %8.1f\n", i * WIN_S, (i + 1) * WIN_S,
               (double)ws / WIN_S, (double)wo / WIN_S, (double)hist_q(&wh, 0.99) / 1000,
               (double)wmax / 1000, (double)b->rss_win[i] / 1024);
    }
    printf("\n");
    if (b->o.engine_pid)
        printf("%s engine RSS under 512 MiB: max %.1f MiB\n",
               b->rss_max > 0 && b->rss_max < RSS_LIMIT_KIB ? "PASS" : "FAIL",
               (double)b->rss_max / 1024);
    int64_t p99 = hist_q(&rtt, 0.99);
    bool all = sent > 0 && ok + fenced + other + errors >= sent * 99 / 100;
    printf("%s heartbeat p99 under 50 ms: %.2f ms (%llu answered of %llu sent)\n",
           all && p99 < P99_LIMIT_US ? "PASS" : "FAIL", (double)p99 / 1000, (unsigned long long)ok,
           (unsigned long long)sent);
    printf("%s no healthy agent failed: %llu heartbeats answered 409\n",
           fenced == 0 ? "PASS" : "FAIL", (unsigned long long)fenced);
    rdb_print_self_cpu();
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longs[] = {
        {"url", required_argument, NULL, 'u'},
        {"agents", required_argument, NULL, 'a'},
        {"interval-ms", required_argument, NULL, 'i'},
        {"jitter-ms", required_argument, NULL, 'j'},
        {"warmup", required_argument, NULL, 'w'},
        {"duration", required_argument, NULL, 'd'},
        {"engine-pid", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, 't'},
        {"seed", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.url = "http://127.0.0.1:8080",
                       .agents = 10000,
                       .interval_ms = 500,
                       .jitter_ms = 100,
                       .warmup_s = 20,
                       .duration_s = 60,
                       .threads = 4,
                       .seed = 42};
    unsigned seed = 42;
    bool ok = true;
    int c;
    while (ok && (c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'u':
            o->url = optarg;
            break;
        case 'a':
            ok = rdb_parse_uint(optarg, 1, 200000, &o->agents);
            break;
        case 'i':
            ok = rdb_parse_uint(optarg, 10, 600000, &o->interval_ms);
            break;
        case 'j':
            ok = rdb_parse_uint(optarg, 0, 600000, &o->jitter_ms);
            break;
        case 'w':
            ok = rdb_parse_uint(optarg, 0, 86400, &o->warmup_s);
            break;
        case 'd':
            ok = rdb_parse_uint(optarg, 1, (MAX_WINDOWS - 1) * WIN_S, &o->duration_s);
            break;
        case 'p':
            ok = rdb_parse_uint(optarg, 1, 4194304, &o->engine_pid);
            break;
        case 't':
            ok = rdb_parse_uint(optarg, 1, MAX_THREADS, &o->threads);
            break;
        case 's':
            ok = rdb_parse_uint(optarg, 1, UINT32_MAX, &seed);
            break;
        default:
            ok = false;
        }
    }
    if (ok && (o->jitter_ms >= o->interval_ms || o->threads > o->agents))
        ok = false;
    if (!ok || optind != argc) {
        fprintf(stderr,
                "usage: bench_scale_loadgen [--url URL] [--agents N (10000)] [--interval-ms MS "
                "(500)] [--jitter-ms MS (100, less than the interval)] [--warmup S (20)] "
                "[--duration S (60)] [--engine-pid PID (its RSS)] [--threads N (4, at most the "
                "agents)] [--seed N (42)]\n");
        return -1;
    }
    o->seed = seed;
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
    b.hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    bool ok = b.w != NULL && b.hdrs != NULL;
    for (unsigned t = 0, first = 0; ok && t < nt; t++) {
        unsigned n = b.o.agents / nt + (t < b.o.agents % nt);
        ok = worker_init(&b, &b.w[t], first, n, t) == 0;
        first += n;
    }
    if (!ok)
        fprintf(stderr, "loadgen: cannot set up %u agents\n", b.o.agents);
    b.reg_start = rdt_now_ms();
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
    curl_slist_free_all(b.hdrs);
    rdb_end();
    return rc;
}
