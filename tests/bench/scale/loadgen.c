/*
 * bench_scale_loadgen: the scale benchmark's load generator
 * (tests/bench/scale/run.sh starts the engine and runs this).
 *
 * One process simulates a large fleet against a running recoveryd: agents
 * register (64 at a time), then heartbeat every interval +/- uniform jitter
 * each, through libcurl's multi interface over HTTP/2 (see
 * rdb_h2_prior_knowledge in tests/bench/lib/bench.h for libcurl 7.88). Due
 * heartbeats are kept in a binary heap, so the cost per heartbeat does not
 * grow with the fleet. An agent whose previous heartbeat is still in flight
 * when the next is due skips it (counted).
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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "harness.h"

#define N_CONNS       4 /* connections to the engine with prior knowledge (bench.h) */
#define REG_IN_FLIGHT 64
#define RESP_MAX      256
#define HIST_SLOTS    40000 /* of 50 us: 2 s; beyond counts as over */
#define WIN_S         10
#define MAX_WINDOWS   1024
#define RSS_LIMIT_KIB (512 * 1024)
#define P99_LIMIT_US  50000

struct opts {
    const char *url;
    unsigned agents, interval_ms, jitter_ms, warmup_s, duration_s, engine_pid;
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
    long rss_kib;
    struct hist *h; /* this window's round trips */
};

struct bench {
    struct opts o;
    struct agent *agents;
    unsigned *heap; /* agent indices by due_ms */
    unsigned heap_n;
    CURLM *multi;
    struct curl_slist *hdrs;
    uint64_t rng;
    unsigned reg_next, reg_done, reg_failed;
    int64_t measure_from, measure_to; /* monotonic ms; 0 until registered */
    uint64_t sent, ok, fenced, other, errors, skipped;
    unsigned errors_printed;
    struct hist rtt, lag;
    struct window win[MAX_WINDOWS];
    long rss_first, rss_max, rss_last; /* KiB, while measuring */
    int64_t next_rss_ms;
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

/* ---- the heap of due heartbeats ---------------------------------------- */

static bool heap_less(const struct bench *b, unsigned x, unsigned y)
{
    return b->agents[b->heap[x]].due_ms < b->agents[b->heap[y]].due_ms;
}

static void heap_swap(struct bench *b, unsigned x, unsigned y)
{
    unsigned t = b->heap[x];
    b->heap[x] = b->heap[y];
    b->heap[y] = t;
}

static void heap_push(struct bench *b, unsigned agent)
{
    unsigned i = b->heap_n++;
    b->heap[i] = agent;
    while (i > 0 && heap_less(b, i, (i - 1) / 2)) {
        heap_swap(b, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static unsigned heap_pop(struct bench *b)
{
    unsigned top = b->heap[0];
    b->heap[0] = b->heap[--b->heap_n];
    for (unsigned i = 0;;) {
        unsigned l = 2 * i + 1, r = l + 1, m = i;
        if (l < b->heap_n && heap_less(b, l, m))
            m = l;
        if (r < b->heap_n && heap_less(b, r, m))
            m = r;
        if (m == i)
            break;
        heap_swap(b, i, m);
        i = m;
    }
    return top;
}

/* ---- the engine's memory ------------------------------------------------- */

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

static struct window *window_at(struct bench *b, int64_t now)
{
    if (b->measure_from == 0 || now < b->measure_from || now >= b->measure_to)
        return NULL;
    int64_t i = (now - b->measure_from) / (WIN_S * 1000);
    if (i >= MAX_WINDOWS)
        return NULL;
    struct window *w = &b->win[i];
    if (w->h == NULL)
        w->h = calloc(1, sizeof(*w->h));
    return w->h ? w : NULL;
}

static void sample_rss(struct bench *b, int64_t now)
{
    if (b->o.engine_pid == 0 || now < b->next_rss_ms)
        return;
    b->next_rss_ms = now + 1000;
    struct window *w = window_at(b, now);
    if (w == NULL)
        return;
    long kib = rss_kib(b->o.engine_pid);
    if (kib < 0)
        return;
    if (b->rss_first == 0)
        b->rss_first = kib;
    b->rss_last = kib;
    if (kib > b->rss_max)
        b->rss_max = kib;
    if (kib > w->rss_kib)
        w->rss_kib = kib;
}

/* ---- transfers ------------------------------------------------------------- */

static void start_transfer(struct bench *b, struct agent *a, const char *body)
{
    rdb_buf_clear(&a->resp);
    curl_easy_setopt(a->easy, CURLOPT_URL, a->url);
    curl_easy_setopt(a->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(a->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    a->in_flight = curl_multi_add_handle(b->multi, a->easy) == CURLM_OK;
}

static void on_registered(struct bench *b, struct agent *a, unsigned idx, CURLcode rc, long status)
{
    json_t *j = status == 201 ? json_loads(a->resp.p, 0, NULL) : NULL;
    b->reg_done++;
    a->epoch = json_integer_value(json_object_get(j, "epoch"));
    json_decref(j);
    if (a->epoch <= 0) {
        if (b->reg_failed++ < 5)
            fprintf(stderr, "loadgen: registering %s: %s, HTTP %ld: %.200s\n", a->id,
                    curl_easy_strerror(rc), status, a->resp.p);
        return;
    }
    a->registered = true;
    snprintf(a->url, sizeof(a->url), "%s/api/v1/nodes/%s/heartbeat", b->o.url, a->id);
    /* The first heartbeat at a random point of its first interval. */
    a->due_ms = rdt_now_ms() + (int64_t)rdb_uniform(&b->rng, 0, b->o.interval_ms);
    heap_push(b, idx);
}

static void on_heartbeat_done(struct bench *b, struct agent *a, CURLcode rc, long status,
                              int64_t us)
{
    int64_t now = rdt_now_ms();
    struct window *w = window_at(b, now);
    if (rc != CURLE_OK) {
        if (w) {
            b->errors++;
            w->errors++;
        }
        if (b->errors_printed++ < 5)
            fprintf(stderr, "loadgen: heartbeat of %s: %s\n", a->id, curl_easy_strerror(rc));
        return;
    }
    if (w == NULL)
        return;
    hist_add(&b->rtt, us);
    hist_add(w->h, us);
    if (us > w->max_us)
        w->max_us = us;
    if (status == 200) {
        b->ok++;
        w->ok++;
    } else if (status == 409) {
        b->fenced++; /* failed by the engine: it stops (it would register again) */
        a->stopped = true;
    } else if (b->other++ < 5) {
        fprintf(stderr, "loadgen: heartbeat of %s: HTTP %ld %.200s\n", a->id, status, a->resp.p);
    }
}

static void drain(struct bench *b)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(b->multi, &left)) != NULL) {
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
        curl_multi_remove_handle(b->multi, e);
        struct agent *a = (struct agent *)priv;
        a->in_flight = false;
        if (a->registered)
            on_heartbeat_done(b, a, rc, rc == CURLE_OK ? status : 0, (int64_t)us);
        else
            on_registered(b, a, (unsigned)(a - b->agents), rc, rc == CURLE_OK ? status : 0);
    }
}

static void register_more(struct bench *b)
{
    while (b->reg_next < b->o.agents && b->reg_next - b->reg_done < REG_IN_FLIGHT) {
        struct agent *a = &b->agents[b->reg_next++];
        snprintf(a->url, sizeof(a->url), "%s/api/v1/nodes", b->o.url);
        snprintf(a->body, sizeof(a->body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":4}}",
                 a->id);
        start_transfer(b, a, a->body);
    }
}

/* Sends every heartbeat that is due; returns ms until the next one. */
static int64_t send_due(struct bench *b)
{
    int64_t now = rdt_now_ms();
    while (b->heap_n > 0) {
        struct agent *a = &b->agents[b->heap[0]];
        if (a->due_ms > now)
            return a->due_ms - now;
        unsigned idx = heap_pop(b);
        if (a->stopped)
            continue; /* out of the heap for good */
        struct window *w = window_at(b, now);
        if (a->in_flight) {
            if (w)
                b->skipped++;
        } else {
            if (w) {
                hist_add(&b->lag, (now - a->due_ms) * 1000);
                b->sent++;
                w->sent++;
            }
            double cpu = 0.30 + rdb_uniform(&b->rng, -0.03, 0.03);
            snprintf(a->body, sizeof(a->body),
                     "{\"epoch\":%lld,\"load\":{\"slots_used\":0},\"metrics\":{\"error_rate\":"
                     "0.01,\"latency_ms\":20,\"cpu\":%.3f,\"mem\":0.4}}",
                     a->epoch, cpu);
            start_transfer(b, a, a->body);
        }
        a->due_ms += rdb_jittered_ms(&b->rng, b->o.interval_ms, b->o.jitter_ms);
        if (a->due_ms < now - (int64_t)b->o.interval_ms)
            a->due_ms = now; /* fell far behind: no catching up in a burst */
        heap_push(b, idx);
    }
    return 100;
}

/* ---- the run ------------------------------------------------------------------ */

static int fleet_init(struct bench *b)
{
    unsigned n = b->o.agents;
    b->agents = calloc(n, sizeof(*b->agents));
    b->heap = calloc(n, sizeof(*b->heap));
    b->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    b->multi = rdb_h2_multi(N_CONNS);
    if (!b->agents || !b->heap || !b->hdrs || !b->multi)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        struct agent *a = &b->agents[i];
        snprintf(a->id, sizeof(a->id), "scale-%05u", i + 1);
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

static void fleet_free(struct bench *b)
{
    for (unsigned i = 0; b->agents && i < b->o.agents; i++) {
        struct agent *a = &b->agents[i];
        if (a->easy && a->in_flight)
            curl_multi_remove_handle(b->multi, a->easy);
        if (a->easy)
            curl_easy_cleanup(a->easy);
    }
    if (b->multi)
        curl_multi_cleanup(b->multi);
    curl_slist_free_all(b->hdrs);
    for (unsigned i = 0; i < MAX_WINDOWS; i++)
        free(b->win[i].h);
    free(b->heap);
    free(b->agents);
}

static int loop(struct bench *b)
{
    int64_t reg_deadline = rdt_now_ms() + 120000, reg_start = rdt_now_ms();
    for (;;) {
        int running;
        curl_multi_perform(b->multi, &running);
        drain(b);
        int64_t now = rdt_now_ms();
        if (b->measure_from == 0) {
            register_more(b);
            if (b->reg_done == b->o.agents) {
                if (b->reg_failed > 0) {
                    fprintf(stderr, "loadgen: %u of %u agents could not register\n", b->reg_failed,
                            b->o.agents);
                    return -1;
                }
                b->measure_from = now + (int64_t)b->o.warmup_s * 1000;
                b->measure_to = b->measure_from + (int64_t)b->o.duration_s * 1000;
                fprintf(stderr,
                        "loadgen: %u agents registered in %.1f s; warm-up %u s, then %u s of "
                        "measurement\n",
                        b->o.agents, (double)(now - reg_start) / 1000, b->o.warmup_s,
                        b->o.duration_s);
            } else if (now > reg_deadline) {
                fprintf(stderr, "loadgen: registrations did not finish within 120 s\n");
                return -1;
            }
        } else if (now >= b->measure_to || rdb_interrupted) {
            return 0;
        }
        sample_rss(b, now);
        int64_t wait = send_due(b);
        if (wait > 100)
            wait = 100;
        curl_multi_poll(b->multi, NULL, 0, (int)wait, NULL);
    }
}

static void report(struct bench *b)
{
    double secs = (double)b->o.duration_s;
    printf("\n== scale benchmark ==\n");
    printf("%u agents heartbeating every %u +/- %u ms over HTTP/2 (%s, at most %d connection%s, "
           "%s); warm-up %u s, measured %u s%s\n",
           b->o.agents, b->o.interval_ms, b->o.jitter_ms,
           rdb_h2_prior_knowledge() ? "prior knowledge" : "h2c upgrade", rdb_h2_conns(N_CONNS),
           rdb_h2_conns(N_CONNS) > 1 ? "s" : "", b->o.url, b->o.warmup_s, b->o.duration_s,
           rdb_interrupted ? " (interrupted early)" : "");
    double want = (double)b->o.agents * 1000.0 / b->o.interval_ms;
    printf("heartbeats: %llu sent (%.0f/s of %.0f/s scheduled), %llu answered 200, %llu answered "
           "409 (the agent was failed: it stops), %llu other, %llu transport errors, %llu skipped "
           "(previous one still in flight)\n",
           (unsigned long long)b->sent, (double)b->sent / secs, want, (unsigned long long)b->ok,
           (unsigned long long)b->fenced, (unsigned long long)b->other,
           (unsigned long long)b->errors, (unsigned long long)b->skipped);
    printf("heartbeat round trip: p50 %.2f ms, p99 %.2f ms, max %.2f ms; send lateness p99 %lld "
           "ms, max %lld ms\n",
           (double)hist_q(&b->rtt, 0.50) / 1000, (double)hist_q(&b->rtt, 0.99) / 1000,
           (double)b->rtt.max_us / 1000, (long long)(hist_q(&b->lag, 0.99) / 1000),
           (long long)(b->lag.max_us / 1000));
    if (b->o.engine_pid)
        printf("engine RSS: %.1f MiB at the start of the measurement, %.1f MiB at the end, %.1f "
               "MiB max\n",
               (double)b->rss_first / 1024, (double)b->rss_last / 1024, (double)b->rss_max / 1024);
    printf("\nwindow (s)  sent/s   ok/s    p99 ms   max ms   RSS MiB\n");
    for (unsigned i = 0; i < MAX_WINDOWS && b->win[i].h; i++) {
        const struct window *w = &b->win[i];
        printf("%4u-%-4u  %7.0f  %7.0f  %7.2f  %7.2f  %8.1f\n", i * WIN_S, (i + 1) * WIN_S,
               (double)w->sent / WIN_S, (double)w->ok / WIN_S, (double)hist_q(w->h, 0.99) / 1000,
               (double)w->max_us / 1000, (double)w->rss_kib / 1024);
    }
    printf("\n");
    if (b->o.engine_pid)
        printf("%s engine RSS under 512 MiB: max %.1f MiB\n",
               b->rss_max > 0 && b->rss_max < RSS_LIMIT_KIB ? "PASS" : "FAIL",
               (double)b->rss_max / 1024);
    int64_t p99 = hist_q(&b->rtt, 0.99);
    bool all = b->sent > 0 && b->ok + b->fenced + b->other + b->errors >= b->sent * 99 / 100;
    printf("%s heartbeat p99 under 50 ms: %.2f ms (%llu answered of %llu sent)\n",
           all && p99 < P99_LIMIT_US ? "PASS" : "FAIL", (double)p99 / 1000,
           (unsigned long long)b->ok, (unsigned long long)b->sent);
    printf("%s no healthy agent failed: %llu heartbeats answered 409\n",
           b->fenced == 0 ? "PASS" : "FAIL", (unsigned long long)b->fenced);
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
        case 's':
            ok = rdb_parse_uint(optarg, 1, UINT32_MAX, &seed);
            break;
        default:
            ok = false;
        }
    }
    if (ok && o->jitter_ms >= o->interval_ms)
        ok = false;
    if (!ok || optind != argc) {
        fprintf(stderr,
                "usage: bench_scale_loadgen [--url URL] [--agents N (10000)] [--interval-ms MS "
                "(500)] [--jitter-ms MS (100, less than the interval)] [--warmup S (20)] "
                "[--duration S (60)] [--engine-pid PID (its RSS)] [--seed N (42)]\n");
        return -1;
    }
    o->seed = seed;
    return 0;
}

int main(int argc, char **argv)
{
    static struct bench b; /* large (histograms): not on the stack */
    if (parse_opts(argc, argv, &b.o) != 0)
        return 2;
    b.rng = rdb_seed(b.o.seed);
    if (rdb_init() != 0)
        return 1;
    int rc = 1;
    if (fleet_init(&b) != 0) {
        fprintf(stderr, "loadgen: cannot set up %u agents\n", b.o.agents);
    } else {
        /* Before any POST (see rdb_h2_prior_knowledge). */
        int conns = rdb_h2_conns(N_CONNS), opened = rdb_h2_open(b.multi, b.o.url, conns);
        if (opened != conns)
            fprintf(stderr, "loadgen: %d of %d connections to %s/health opened\n", opened, conns,
                    b.o.url);
        if (opened > 0 && loop(&b) == 0) {
            report(&b);
            rc = 0;
        }
    }
    fleet_free(&b);
    rdb_end();
    return rc;
}
