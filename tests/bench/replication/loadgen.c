/*
 * bench_replication_loadgen: the replication benchmark's load generator
 * (tests/bench/replication/run.sh starts the clusters and runs this).
 *
 * Keeps exactly N writes in flight against one server for a fixed time, at
 * each level of --levels, and measures every write from send to answer:
 *
 *   --target recoveryd: checkpoints, PUT /api/v1/tasks/{id}/checkpoint
 *     {"attempt", "version", "data": {"blob": "..."}}, to the leader of the
 *     replicas given with --url (found by GET /health). Setup: one agent is
 *     registered and heartbeats every 500 ms all along (a thread of its own,
 *     own connection), as many tasks as the deepest level are submitted and
 *     placed on it; each in-flight slot owns one task and writes it with
 *     strictly increasing versions (one write of a task in flight at a time).
 *     At the end every task is read back: no acknowledged version may be
 *     missing.
 *   --target etcd: POST /v3/kv/put {"key", "value"} (base64) through etcd's
 *     JSON gateway, one key per slot, to the --url given (the leader).
 *
 * --size is the stored value's size in bytes: the checkpoint's data as
 * canonical JSON, or etcd's value before base64. HTTP/2 (--proto h2, the
 * default) multiplexes at most --streams slots per connection, one thread per
 * connection, on h2c (tests/bench/lib/h2c.h: nghttp2 directly, each loop
 * turn's frames in one send(2), so the load generator takes less of the CPU
 * the replicas share with it); HTTP/1.1 (--proto h1) uses libcurl, one
 * connection per slot, in threads of --streams slots. Only 200 answers count; the other statuses
 * and the transport errors are counted and printed. A write counts (throughput and latency) when
 * its answer arrived within the measured window, which starts after the level's warm-up.
 *
 * With --pid (repeatable) it adds the user + system CPU those processes used
 * during the measured window, per acknowledged write. Each level ends with a
 * machine-readable line:
 *   RESULT target=T inflight=N ok=.. secs=.. rate=.. p50_us=.. p99_us=.. ...
 * Exit: 0 when the run took place, 3 when an acknowledged checkpoint version
 * is missing at the end, 1 on a setup error, 2 on bad usage.
 */
#include <curl/curl.h>
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
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "h2c.h"

#define MAX_URLS     8
#define MAX_LEVELS   8
#define MAX_PIDS     16
#define MAX_SLOTS    4096
#define MAX_SIZE     (512 * 1024) /* the API's checkpoint limit (docs/api-limits.md) */
#define MAX_STATUS   600
#define RESP_MAX     1024
#define AGENT_ID     "bench-replication-agent"
#define HB_EVERY_MS  500
#define DRAIN_MS     5000 /* for the writes in flight at a level's end */
#define SETUP_MS     30000
#define REQ_TIMEOUT  10000L /* ms, one write */
#define H2_DEFAULT_N 64     /* slots per HTTP/2 connection (h2o allows 100 streams) */
#define BUCKET_MS    100    /* the stall timeline's resolution */
#define RECONNECT_MS 100    /* h2: between attempts to reopen a lost connection */
#define N_ERRORS     (CURL_LAST + H2C_ETIMEOUT + 1) /* CURLcodes, then h2c's errors */

enum target { T_RECOVERYD, T_ETCD };

struct opts {
    enum target target;
    bool have_target;
    const char *urls[MAX_URLS];
    unsigned n_urls;
    unsigned levels[MAX_LEVELS];
    unsigned n_levels;
    unsigned duration_s, warmup_s, size, streams;
    bool h1;
    pid_t pids[MAX_PIDS];
    unsigned n_pids;
};

/* One task (recoveryd) or key (etcd), across the levels. */
struct key {
    uint32_t attempt;
    uint64_t sent;  /* the last version sent */
    uint64_t acked; /* the highest version answered 200 */
};

struct slot {
    CURL *easy; /* h1 */
    struct worker *w;
    unsigned key;
    uint64_t version; /* the version in flight */
    int64_t sent_ns;
    char url[320];
    const char *path; /* in url, for h2 */
    char *body;
    struct rdb_buf resp; /* in resp_mem */
    char resp_mem[RESP_MAX];
};

struct tally {
    uint64_t ok;                  /* counted 200s */
    uint64_t status[MAX_STATUS];  /* counted non-200 answers by status */
    uint64_t errors[N_ERRORS];    /* counted transport errors: CURLcode, CURL_LAST + h2c's */
    uint64_t late, fenced, stale; /* answered after the end; 409 kinds (all, counted or not) */
};

struct worker {
    struct bench *b;
    pthread_t th;
    unsigned first, n;   /* slots [first, first + n) of the level */
    CURLM *multi;        /* h1 */
    struct h2c *h2;      /* h2 */
    bool opened;         /* h2: the opening GET ended */
    int open_err;        /* its enum h2c_err */
    struct slot **queue; /* h2: writes waiting for room on the connection (a ring) */
    unsigned q_head, q_len;
    unsigned active; /* h2: writes in flight or queued */
    struct slot *slots;
    int64_t *lat; /* microseconds of the counted 200s */
    size_t n_lat, cap_lat;
    struct tally t;
    int rc;
};

struct bench {
    struct opts o;
    const char *base; /* the URL written to: the leader */
    struct key *keys;
    unsigned n_keys;
    char *value; /* the payload as it goes in the body */
    struct curl_slist *hdrs;
    pthread_barrier_t ready, go;
    int64_t t_start, t_end; /* monotonic ns of the measured window */
    atomic_uint *buckets;   /* 200 answers per BUCKET_MS of the window */
    unsigned n_buckets;
    atomic_bool abort;
    /* the agent's heartbeats (recoveryd) */
    long long epoch;
    pthread_t hb_thread;
    bool hb_started;
    atomic_bool hb_stop;
    atomic_uint_fast64_t hb_sent, hb_ok, hb_fenced, hb_failed, hb_max_us;
    bool lost;
};

/* ---- small helpers --------------------------------------------------------- */

/* User + system CPU of a process, in clock ticks; -1 when it is gone. */
static long long proc_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    /* After "pid (comm) ": state, then fields 4-13; utime and stime are 14 and 15. */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* Busy and total jiffies of the whole machine. */
static void machine_jiffies(unsigned long long *busy, unsigned long long *total)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    *busy = *total = 0;
    if (f == NULL)
        return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) == 8) {
        *busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        *total = *busy + v[3] + v[4];
    }
    fclose(f);
}

static void base64(const unsigned char *in, size_t len, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < len ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

/* ---- options ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_replication_loadgen --target recoveryd|etcd --url URL [--url URL...]\n"
               "         [--levels 1,16,256] [--duration S] [--warmup S] [--size BYTES]\n"
               "         [--proto h2|h1] [--streams N] [--pid PID...]\n"
               "  --target    recoveryd (checkpoints) or etcd (puts through the JSON gateway)\n"
               "  --url       recoveryd: every replica's API (the leader is found); etcd: the\n"
               "              member to write to\n"
               "  --levels    writes kept in flight, one level after the other (default 1,16,256)\n"
               "  --duration  measured seconds per level (default 10)\n"
               "  --warmup    seconds per level before the measurement (default 1)\n"
               "  --size      bytes of the stored value, 16-524288 (default 256)\n"
               "  --proto     h2: HTTP/2 (default); h1: HTTP/1.1, one connection per slot\n"
               "  --streams   slots per connection (h2) or per thread (h1) (default 64)\n"
               "  --pid       a server process whose CPU time is reported (repeatable)\n");
}

static bool parse_levels(const char *arg, void *ctx)
{
    struct opts *o = ctx;
    char s[128];
    if (snprintf(s, sizeof(s), "%s", arg) >= (int)sizeof(s))
        return false;
    o->n_levels = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (o->n_levels == MAX_LEVELS ||
            !rdb_parse_uint(tok, 1, MAX_SLOTS, &o->levels[o->n_levels]))
            return false;
        o->n_levels++;
    }
    return o->n_levels > 0;
}

static bool parse_target(const char *arg, void *ctx)
{
    struct opts *o = ctx;
    o->have_target = true;
    o->target = strcmp(arg, "etcd") == 0 ? T_ETCD : T_RECOVERYD;
    return strcmp(arg, "recoveryd") == 0 || strcmp(arg, "etcd") == 0;
}

static bool parse_url(const char *arg, void *ctx)
{
    struct opts *o = ctx;
    if (o->n_urls == MAX_URLS || strlen(arg) >= 200)
        return false;
    o->urls[o->n_urls++] = arg;
    return true;
}

static bool parse_proto(const char *arg, void *ctx)
{
    struct opts *o = ctx;
    o->h1 = strcmp(arg, "h1") == 0;
    return strcmp(arg, "h2") == 0 || strcmp(arg, "h1") == 0;
}

static bool parse_pid(const char *arg, void *ctx)
{
    struct opts *o = ctx;
    unsigned pid;
    if (o->n_pids == MAX_PIDS || !rdb_parse_uint(arg, 1, 1u << 30, &pid))
        return false;
    o->pids[o->n_pids++] = (pid_t)pid;
    return true;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.duration_s = 10, .warmup_s = 1, .size = 256, .streams = H2_DEFAULT_N};
    parse_levels("1,16,256", o);
    const struct rdb_opt opts[] = {
        {"target", .fn = parse_target},
        {"url", .fn = parse_url},
        {"levels", .fn = parse_levels},
        {"duration", .num = &o->duration_s, .min = 1, .max = 86400},
        {"warmup", .num = &o->warmup_s, .min = 0, .max = 3600},
        {"size", .num = &o->size, .min = 16, .max = MAX_SIZE},
        {"proto", .fn = parse_proto},
        {"streams", .num = &o->streams, .min = 1, .max = 256},
        {"pid", .fn = parse_pid},
        {NULL},
    };
    if (rdb_parse_opts(argc, argv, opts, o, usage) != 0 || !o->have_target || o->n_urls == 0 ||
        (o->target == T_ETCD && o->n_urls != 1)) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* ---- HTTP ------------------------------------------------------------------ */

/*
 * The writes: over HTTP/2, one h2c connection (prior knowledge) and one
 * thread per --streams slots, each connection opened by a GET before the
 * writes start (h2_open); over HTTP/1.1, libcurl, one multi handle per thread
 * and one connection per slot. Setup, heartbeats and the read-back use
 * libcurl over HTTP/1.1.
 */

/* One blocking request over HTTP/1.1 (setup and checks): the status, or -1;
 * the answer's JSON in `*out` when not NULL (NULL when it had none). */
static long http_do(struct bench *b, CURL *e, const char *method, const char *url, const char *body,
                    json_t **out, long timeout_ms)
{
    struct rdb_buf bf = {0};
    long status = rdb_request(e, method, url, body, b->hdrs, timeout_ms, &bf);
    if (out != NULL)
        *out = bf.p ? json_loads(bf.p, 0, NULL) : NULL;
    rdb_buf_free(&bf);
    return status;
}

/* ---- recoveryd setup: the leader, the agent, the tasks ------------------------ */

static int find_leader(struct bench *b, CURL *e)
{
    struct rdb_health h;
    int i = rdb_find_leader(e, b->o.urls, b->o.n_urls, 1000, SETUP_MS, &h);
    if (i < 0) {
        fprintf(stderr, "loadgen: no replica says it leads\n");
        return -1;
    }
    fprintf(stderr, "loadgen: the leader is replica %lld at %s (term %lld)\n", h.replica_id,
            b->o.urls[i], h.term);
    b->base = b->o.urls[i];
    return 0;
}

static void *hb_main(void *arg)
{
    struct bench *b = arg;
    CURL *e = curl_easy_init();
    char url[256], body[128];
    snprintf(url, sizeof(url), "%s/api/v1/nodes/%s/heartbeat", b->base, AGENT_ID);
    snprintf(body, sizeof(body), "{\"epoch\":%lld,\"load\":{\"slots_used\":%u}}", b->epoch,
             b->n_keys);
    for (int64_t due = rdb_now_ns(); e != NULL && !atomic_load(&b->hb_stop);) {
        rdb_sleep_until_ns(due);
        if (atomic_load(&b->hb_stop))
            break;
        int64_t t0 = rdb_now_ns();
        long st = http_do(b, e, "POST", url, body, NULL, 2000);
        uint64_t us = (uint64_t)(rdb_now_ns() - t0) / 1000;
        atomic_fetch_add(&b->hb_sent, 1);
        if (st == 200)
            atomic_fetch_add(&b->hb_ok, 1);
        else if (st == 409)
            atomic_fetch_add(&b->hb_fenced, 1);
        else
            atomic_fetch_add(&b->hb_failed, 1);
        if (us > atomic_load(&b->hb_max_us))
            atomic_store(&b->hb_max_us, us);
        due += (int64_t)HB_EVERY_MS * 1000000;
        if (due < rdb_now_ns())
            due = rdb_now_ns();
    }
    if (e)
        curl_easy_cleanup(e);
    return NULL;
}

static int setup_recoveryd(struct bench *b)
{
    CURL *e = curl_easy_init();
    if (e == NULL || find_leader(b, e) != 0)
        goto fail;
    char url[320], body[512];
    json_t *j = NULL;
    snprintf(url, sizeof(url), "%s/api/v1/nodes", b->base);
    snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":%u}}", AGENT_ID,
             b->n_keys);
    long st = http_do(b, e, "POST", url, body, &j, 5000);
    b->epoch = json_integer_value(json_object_get(j, "epoch"));
    json_decref(j);
    if (st != 201 || b->epoch < 1) {
        fprintf(stderr, "loadgen: registering the agent answered %ld\n", st);
        goto fail;
    }
    if (pthread_create(&b->hb_thread, NULL, hb_main, b) != 0)
        goto fail;
    b->hb_started = true;
    snprintf(url, sizeof(url), "%s/api/v1/tasks", b->base);
    for (unsigned i = 0; i < b->n_keys; i++) {
        char id[40];
        rdb_task_id(i, id, sizeof(id));
        snprintf(body, sizeof(body),
                 "{\"task_id\":\"%s\",\"priority\":5,\"payload\":{\"bench\":\"replication\"},"
                 "\"requirements\":{\"slots\":1}}",
                 id);
        st = http_do(b, e, "POST", url, body, NULL, 5000);
        if (st != 201 && st != 200) {
            fprintf(stderr, "loadgen: submitting task %u answered %ld\n", i, st);
            goto fail;
        }
    }
    /* Every task placed on the agent: its attempt is the fencing token. */
    unsigned placed = 0;
    for (int64_t end = rdb_now_ns() + (int64_t)SETUP_MS * 1000000; placed < b->n_keys;) {
        char id[40];
        rdb_task_id(placed, id, sizeof(id));
        snprintf(url, sizeof(url), "%s/api/v1/tasks/%s", b->base, id);
        st = http_do(b, e, "GET", url, NULL, &j, 5000);
        const char *state = json_string_value(json_object_get(j, "state"));
        const char *node = json_string_value(json_object_get(j, "node_id"));
        bool ok = st == 200 && state && node && strcmp(node, AGENT_ID) == 0 &&
                  (strcmp(state, "assigned") == 0 || strcmp(state, "running") == 0 ||
                   strcmp(state, "recovering") == 0);
        if (ok) {
            struct key *k = &b->keys[placed];
            k->attempt = (uint32_t)json_integer_value(json_object_get(j, "attempt"));
            json_t *ck = json_object_get(j, "checkpoint");
            k->sent = k->acked = (uint64_t)json_integer_value(json_object_get(ck, "version"));
            placed++;
        }
        json_decref(j);
        if (!ok) {
            if (rdb_now_ns() > end || rdb_interrupted) {
                fprintf(stderr, "loadgen: only %u of %u tasks were placed on the agent\n", placed,
                        b->n_keys);
                goto fail;
            }
            rdb_sleep_ms(50);
        }
    }
    curl_easy_cleanup(e);
    fprintf(stderr, "loadgen: agent %s (epoch %lld) runs %u tasks\n", AGENT_ID, b->epoch,
            b->n_keys);
    return 0;
fail:
    if (e)
        curl_easy_cleanup(e);
    return -1;
}

/* Reads every task back: each acknowledged version must be there. */
static int verify_recoveryd(struct bench *b)
{
    CURL *e = curl_easy_init();
    unsigned ok = 0, lost = 0, moved = 0, unread = 0;
    for (unsigned i = 0; e != NULL && i < b->n_keys; i++) {
        char id[40], url[320];
        json_t *j = NULL;
        rdb_task_id(i, id, sizeof(id));
        snprintf(url, sizeof(url), "%s/api/v1/tasks/%s", b->base, id);
        long st = http_do(b, e, "GET", url, NULL, &j, 5000);
        const struct key *k = &b->keys[i];
        json_t *ck = json_object_get(j, "checkpoint");
        uint64_t v = (uint64_t)json_integer_value(json_object_get(ck, "version"));
        uint32_t attempt = (uint32_t)json_integer_value(json_object_get(j, "attempt"));
        if (st != 200)
            unread++;
        else if (v < k->acked || v > k->sent)
            lost++;
        else
            ok++;
        if (st == 200 && attempt != k->attempt)
            moved++;
        json_decref(j);
    }
    if (e)
        curl_easy_cleanup(e);
    printf("read back: %u of %u tasks hold their last acknowledged checkpoint version, %u lost "
           "one, %u unreadable; %u moved to another attempt during the run\n",
           ok, b->n_keys, lost, unread, moved);
    b->lost = lost > 0 || unread > 0;
    return 0;
}

/* ---- the writes ------------------------------------------------------------------ */

/* The payload: recoveryd's checkpoint data {"blob":"..."} is exactly --size
 * bytes of canonical JSON; etcd's value is --size bytes (base64 in the body). */
static int make_value(struct bench *b)
{
    size_t cap = (size_t)b->o.size / 3 * 4 + 64; /* base64's, or the JSON's */
    unsigned char *raw = malloc(b->o.size);
    b->value = malloc(cap);
    if (raw == NULL || b->value == NULL) {
        free(raw);
        return -1;
    }
    for (unsigned i = 0; i < b->o.size; i++)
        raw[i] = (unsigned char)('a' + (i * 7 + 3) % 26);
    if (b->o.target == T_RECOVERYD) {
        unsigned pad = b->o.size - 11; /* {"blob":""} */
        snprintf(b->value, cap, "{\"blob\":\"%.*s\"}", (int)pad, (const char *)raw);
    } else {
        base64(raw, b->o.size, b->value);
    }
    free(raw);
    return 0;
}

static int slot_init(struct worker *w, struct slot *s, unsigned key)
{
    struct bench *b = w->b;
    s->w = w;
    s->key = key;
    rdb_buf_fixed(&s->resp, s->resp_mem, sizeof(s->resp_mem));
    if (b->o.h1 && (s->easy = rdb_easy_new((long)CURL_HTTP_VERSION_1_1, b->hdrs, REQ_TIMEOUT, s,
                                           &s->resp)) == NULL)
        return -1;
    s->body = malloc(strlen(b->value) + 256);
    if (s->body == NULL)
        return -1;
    if (b->o.target == T_RECOVERYD) {
        char id[40];
        rdb_task_id(key, id, sizeof(id));
        snprintf(s->url, sizeof(s->url), "%s/api/v1/tasks/%s/checkpoint", b->base, id);
    } else {
        snprintf(s->url, sizeof(s->url), "%s/v3/kv/put", b->base);
    }
    s->path = s->url + strlen(b->base);
    if (!b->o.h1)
        return 0;
    curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
    if (b->o.target == T_RECOVERYD)
        curl_easy_setopt(s->easy, CURLOPT_CUSTOMREQUEST, "PUT");
    return 0;
}

/* The body of one write: a checkpoint of task `key`, or a put of key `key`. */
static void format_body(const struct bench *b, unsigned key, uint32_t attempt, uint64_t version,
                        char *out, size_t len)
{
    if (b->o.target == T_RECOVERYD) {
        snprintf(out, len, "{\"attempt\":%u,\"version\":%llu,\"data\":%s}", attempt,
                 (unsigned long long)version, b->value);
    } else {
        char name[32], key64[64];
        int n = snprintf(name, sizeof(name), "bench/k%05u", key);
        base64((const unsigned char *)name, (size_t)n, key64);
        snprintf(out, len, "{\"key\":\"%s\",\"value\":\"%s\"}", key64, b->value);
    }
}

static bool slot_send(struct slot *s)
{
    struct bench *b = s->w->b;
    struct key *k = &b->keys[s->key];
    s->version = ++k->sent;
    format_body(b, s->key, k->attempt, s->version, s->body, strlen(b->value) + 256);
    if (!b->o.h1) {
        s->sent_ns = rdb_now_ns();
        s->w->queue[(s->w->q_head + s->w->q_len++) % s->w->n] = s; /* h2_submit sends it */
        s->w->active++;
        return true;
    }
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body));
    rdb_buf_clear(&s->resp);
    s->sent_ns = rdb_now_ns();
    return curl_multi_add_handle(s->w->multi, s->easy) == CURLM_OK;
}

static void note_latency(struct worker *w, int64_t ns)
{
    if (w->n_lat == w->cap_lat) {
        size_t cap = w->cap_lat ? 2 * w->cap_lat : 65536;
        int64_t *n = realloc(w->lat, cap * sizeof(*n));
        if (n == NULL)
            return;
        w->lat = n;
        w->cap_lat = cap;
    }
    w->lat[w->n_lat++] = ns / 1000;
}

/* A 409 fenced answer carries the task's current attempt: take it. */
static void on_conflict(struct worker *w, struct slot *s, const char *resp)
{
    struct key *k = &w->b->keys[s->key];
    if (strstr(resp, "\"stale_version\"")) {
        w->t.stale++;
        return;
    }
    if (!strstr(resp, "\"fenced\""))
        return;
    w->t.fenced++;
    json_t *j = json_loads(resp, 0, NULL);
    json_t *d = json_object_get(json_object_get(j, "error"), "details");
    json_int_t a = json_integer_value(json_object_get(d, "attempt"));
    if (a > 0)
        k->attempt = (uint32_t)a;
    json_decref(j);
}

/* A write ended: `err` is 0, or its index in tally.errors; `resp` its answer. */
static void on_done(struct worker *w, struct slot *s, int err, long status, const char *resp,
                    int64_t now)
{
    struct bench *b = w->b;
    bool counted = now >= b->t_start && now <= b->t_end;
    if (status == 200 && s->version > b->keys[s->key].acked)
        b->keys[s->key].acked = s->version;
    if (status == 409)
        on_conflict(w, s, resp ? resp : "");
    if (!counted) {
        w->t.late += now > b->t_end;
        return;
    }
    if (err != 0)
        w->t.errors[err > 0 && err < N_ERRORS ? err : 0]++;
    else if (status == 200) {
        w->t.ok++;
        note_latency(w, now - s->sent_ns);
        uint64_t i = (uint64_t)(now - b->t_start) / (BUCKET_MS * 1000000ULL);
        if (i < b->n_buckets)
            atomic_fetch_add(&b->buckets[i], 1);
    } else
        w->t.status[status > 0 && status < MAX_STATUS ? status : 0]++;
}

/* h2: a request ended (within h2c_step): the opening GET or a write. */
static void on_h2_done(void *ctx, const struct h2c_resp *r)
{
    struct worker *w = ctx;
    struct bench *b = w->b;
    if (r->user == w) {
        w->opened = true;
        w->open_err = r->err;
        return;
    }
    int64_t now = rdb_now_ns();
    struct slot *s = r->user;
    w->active--;
    on_done(w, s, r->err == H2C_OK ? 0 : CURL_LAST + r->err, r->status, r->body, now);
    if (now < b->t_end && !rdb_interrupted && !atomic_load(&b->abort))
        slot_send(s);
}

/* h2: submits the queued writes the connection has room for. */
static void h2_submit(struct worker *w)
{
    const char *method = w->b->o.target == T_RECOVERYD ? "PUT" : "POST";
    while (w->q_len > 0 && h2c_room(w->h2) > 0) {
        struct slot *s = w->queue[w->q_head];
        if (h2c_submit(w->h2, method, s->path, s->body, strlen(s->body), REQ_TIMEOUT, s) != 0)
            break;
        w->q_head = (w->q_head + 1) % w->n;
        w->q_len--;
    }
}

/* h2: opens the worker's one connection by a GET without a body, so that the
 * writes start on an open connection. */
static int h2_open(struct worker *w)
{
    w->h2 = h2c_new(w->n, on_h2_done, w);
    w->queue = calloc(w->n, sizeof(*w->queue));
    if (w->h2 == NULL || w->queue == NULL ||
        h2c_connect(w->h2, w->b->base, RDB_H2_CONNECT_MS) != 0 ||
        h2c_submit(w->h2, "GET", "/health", NULL, 0, SETUP_MS, w) != 0)
        return -1;
    while (!w->opened && !rdb_interrupted)
        h2c_step(w->h2, 100);
    if (w->open_err != H2C_OK)
        fprintf(stderr, "loadgen: opening a connection to %s: %s\n", w->b->base,
                h2c_strerror(w->open_err));
    return w->opened && w->open_err == H2C_OK ? 0 : -1;
}

/* h2: keeps the slots writing until the window ends, then drains. */
static void h2_run(struct worker *w)
{
    struct bench *b = w->b;
    for (unsigned i = 0; i < w->n; i++)
        slot_send(&w->slots[i]);
    int64_t drain_end = b->t_end + (int64_t)DRAIN_MS * 1000000, next_connect = 0;
    while (w->active > 0) {
        int64_t now = rdb_now_ns();
        if (now > drain_end)
            break;
        if (h2c_state(w->h2) == H2C_DOWN && w->q_len > 0) {
            /* Lost: reopen it while the window lasts, else give up the queued writes. */
            if (now >= b->t_end || rdb_interrupted || atomic_load(&b->abort)) {
                w->active -= w->q_len;
                w->q_len = 0;
                continue;
            }
            if (now >= next_connect) {
                h2c_connect(w->h2, b->base, RDB_H2_CONNECT_MS);
                next_connect = now + (int64_t)RECONNECT_MS * 1000000;
            }
        }
        h2_submit(w);
        h2c_step(w->h2, 100);
    }
    w->rc = w->active == 0 ? 0 : 1;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    w->rc = -1;
    w->slots = calloc(w->n, sizeof(*w->slots));
    bool ok = w->slots != NULL;
    if (ok && b->o.h1) {
        w->multi = curl_multi_init();
        ok = w->multi != NULL;
    }
    if (ok && b->o.h1) {
        curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
        curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)w->n);
        curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)w->n + 4);
    }
    for (unsigned i = 0; ok && i < w->n; i++)
        ok = slot_init(w, &w->slots[i], w->first + i) == 0;
    ok = ok && (b->o.h1 || h2_open(w) == 0);
    if (!ok)
        atomic_store(&b->abort, true);
    pthread_barrier_wait(&b->ready);
    pthread_barrier_wait(&b->go); /* main has set the window */
    if (atomic_load(&b->abort))
        return NULL;
    if (!b->o.h1) {
        h2_run(w);
        return NULL;
    }
    unsigned in_flight = 0;
    for (unsigned i = 0; i < w->n; i++)
        in_flight += slot_send(&w->slots[i]);
    int64_t drain_end = b->t_end + (int64_t)DRAIN_MS * 1000000;
    while (in_flight > 0) {
        int running;
        curl_multi_perform(w->multi, &running);
        struct rdb_done d;
        while (rdb_next_done(w->multi, &d)) {
            int64_t now = rdb_now_ns();
            struct slot *s = d.priv;
            in_flight--;
            on_done(w, s, d.rc < CURL_LAST ? (int)d.rc : 0, d.status, s->resp.p, now);
            if (now < b->t_end && !rdb_interrupted && !atomic_load(&b->abort))
                in_flight += slot_send(s);
        }
        if (in_flight == 0 || rdb_now_ns() > drain_end)
            break;
        curl_multi_poll(w->multi, NULL, 0, 100, NULL);
    }
    w->rc = in_flight == 0 ? 0 : 1;
    return NULL;
}

static void worker_free(struct worker *w)
{
    for (unsigned i = 0; w->slots && i < w->n; i++) {
        struct slot *s = &w->slots[i];
        if (s->easy) {
            if (w->multi)
                curl_multi_remove_handle(w->multi, s->easy);
            curl_easy_cleanup(s->easy);
        }
        free(s->body);
    }
    free(w->slots);
    if (w->multi)
        curl_multi_cleanup(w->multi);
    h2c_free(w->h2);
    free(w->queue);
    free(w->lat);
}

static const char *target_name(const struct bench *b)
{
    return b->o.target == T_RECOVERYD ? "recoveryd" : "etcd";
}

/* The answers per BUCKET_MS over the window: empty windows are stalls. */
static void stall_report(struct bench *b)
{
    unsigned empty = 0, run = 0, longest = 0, lo = UINT32_MAX, hi = 0, per_s = 1000 / BUCKET_MS;
    for (unsigned i = 0; b->buckets && i < b->n_buckets; i++) {
        unsigned v = atomic_load(&b->buckets[i]);
        empty += v == 0;
        run = v == 0 ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    for (unsigned sec = 0; b->buckets && sec < b->n_buckets / per_s; sec++) {
        unsigned v = 0;
        for (unsigned i = 0; i < per_s; i++)
            v += atomic_load(&b->buckets[sec * per_s + i]);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    printf("  per second: %u to %u writes; %u of %u %d-ms windows without an answer (longest run "
           "%u ms)\n",
           lo == UINT32_MAX ? 0 : lo, hi, empty, b->n_buckets, BUCKET_MS, longest * BUCKET_MS);
    free(b->buckets);
    b->buckets = NULL;
}

static int run_level(struct bench *b, unsigned depth)
{
    unsigned per = b->o.streams;
    unsigned n_workers = (depth + per - 1) / per;
    struct worker *ws = calloc(n_workers, sizeof(*ws));
    if (ws == NULL)
        return -1;
    atomic_store(&b->abort, false);
    pthread_barrier_init(&b->ready, NULL, n_workers + 1);
    pthread_barrier_init(&b->go, NULL, n_workers + 1);
    unsigned started = 0;
    for (unsigned i = 0, first = 0; i < n_workers; i++) {
        /* Spread evenly: 256 over 4 connections is 64 each. */
        unsigned n = depth / n_workers + (i < depth % n_workers ? 1 : 0);
        ws[i] = (struct worker){.b = b, .first = first, .n = n};
        first += n;
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "loadgen: cannot start a thread\n");
            exit(1); /* the barriers would wait forever */
        }
        started++;
    }
    pthread_barrier_wait(&b->ready);
    b->n_buckets = b->o.duration_s * (1000 / BUCKET_MS);
    b->buckets = calloc(b->n_buckets, sizeof(*b->buckets));
    int64_t t0 = rdb_now_ns();
    b->t_start = t0 + (int64_t)b->o.warmup_s * 1000000000;
    b->t_end = b->t_start + (int64_t)b->o.duration_s * 1000000000;
    pthread_barrier_wait(&b->go);

    /* The servers' CPU, the machine's and our own over the measured window. */
    long long cpu0[MAX_PIDS], cpu1[MAX_PIDS];
    unsigned long long busy0, total0, busy1, total1;
    rdb_sleep_until_ns(b->t_start);
    for (unsigned i = 0; i < b->o.n_pids; i++)
        cpu0[i] = proc_ticks(b->o.pids[i]);
    machine_jiffies(&busy0, &total0);
    double user0, sys0, user1, sys1;
    rdb_self_cpu(&user0, &sys0);
    rdb_sleep_until_ns(b->t_end);
    for (unsigned i = 0; i < b->o.n_pids; i++)
        cpu1[i] = proc_ticks(b->o.pids[i]);
    machine_jiffies(&busy1, &total1);
    rdb_self_cpu(&user1, &sys1);
    int64_t t_end_real = rdb_now_ns();

    struct tally all = {0};
    size_t n_lat = 0;
    int unfinished = 0;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(ws[i].th, NULL);
        n_lat += ws[i].n_lat;
        unfinished |= ws[i].rc != 0;
    }
    int64_t *lat = malloc((n_lat ? n_lat : 1) * sizeof(*lat));
    size_t off = 0;
    for (unsigned i = 0; i < started; i++) {
        struct worker *w = &ws[i];
        if (lat && w->n_lat)
            memcpy(lat + off, w->lat, w->n_lat * sizeof(*lat));
        off += w->n_lat;
        all.ok += w->t.ok;
        all.late += w->t.late;
        all.fenced += w->t.fenced;
        all.stale += w->t.stale;
        for (int k = 0; k < MAX_STATUS; k++)
            all.status[k] += w->t.status[k];
        for (int k = 0; k < N_ERRORS; k++)
            all.errors[k] += w->t.errors[k];
        worker_free(w);
    }
    free(ws);
    pthread_barrier_destroy(&b->ready);
    pthread_barrier_destroy(&b->go);
    if (atomic_load(&b->abort) || lat == NULL) {
        free(lat);
        return -1;
    }
    rdb_sort_i64(lat, n_lat);
    double secs = (double)b->o.duration_s;
    double rate = (double)all.ok / secs;
    int64_t p50 = rdb_quantile(lat, n_lat, 0.5), p99 = rdb_quantile(lat, n_lat, 0.99);
    int64_t max = n_lat ? lat[n_lat - 1] : 0;
    double mean = 0;
    for (size_t i = 0; i < n_lat; i++)
        mean += lat[i];
    mean = n_lat ? mean / (double)n_lat : 0;
    free(lat);

    char other[512] = "", errs[512] = "";
    size_t o1 = 0, o2 = 0;
    uint64_t n_other = 0, n_err = 0;
    for (int k = 0; k < MAX_STATUS; k++) {
        if (all.status[k] == 0)
            continue;
        n_other += all.status[k];
        if (o1 < sizeof(other))
            o1 += (size_t)snprintf(other + o1, sizeof(other) - o1, "%s%llu x %d", o1 ? ", " : "",
                                   (unsigned long long)all.status[k], k);
    }
    for (int k = 0; k < N_ERRORS; k++) {
        if (all.errors[k] == 0)
            continue;
        n_err += all.errors[k];
        if (o2 < sizeof(errs))
            o2 += (size_t)snprintf(errs + o2, sizeof(errs) - o2, "%s%llu x %s", o2 ? ", " : "",
                                   (unsigned long long)all.errors[k],
                                   k < CURL_LAST ? curl_easy_strerror((CURLcode)k)
                                                 : h2c_strerror(k - CURL_LAST));
    }
    long hz = sysconf(_SC_CLK_TCK);
    double server_s = 0;
    bool cpu_ok = b->o.n_pids > 0;
    for (unsigned i = 0; i < b->o.n_pids; i++) {
        if (cpu0[i] < 0 || cpu1[i] < 0)
            cpu_ok = false;
        else
            server_s += (double)(cpu1[i] - cpu0[i]) / (double)hz;
    }
    double busy = total1 > total0 ? (double)(busy1 - busy0) / (double)(total1 - total0) : 0;
    double cpu_us = cpu_ok && all.ok ? server_s * 1e6 / (double)all.ok : 0;
    double window = (double)(t_end_real - b->t_start) / 1e9;

    unsigned conns = b->o.h1 ? depth : n_workers;
    printf("%s, %u in flight (%u %s connection%s): %llu writes answered 200 in %.1f s: %.1f/s; "
           "latency p50 %.2f ms, p99 %.2f ms, mean %.2f ms, max %.2f ms\n",
           target_name(b), depth, conns, b->o.h1 ? "HTTP/1.1" : "HTTP/2", conns > 1 ? "s" : "",
           (unsigned long long)all.ok, secs, rate, p50 / 1000.0, p99 / 1000.0, mean / 1000.0,
           max / 1000.0);
    printf("  other answers: %s; transport errors: %s; answered after the window: %llu%s%s\n",
           n_other ? other : "none", n_err ? errs : "none", (unsigned long long)all.late,
           all.fenced ? " (409 fenced seen)" : "", all.stale ? " (409 stale_version seen)" : "");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("  CPU over the window: servers %.2f s (%u processes%s), load generator %.2f s; machine "
           "%.2f of %ld cores busy%s\n",
           server_s, b->o.n_pids, cpu_ok || b->o.n_pids == 0 ? "" : ", some gone",
           (user1 + sys1) - (user0 + sys0), busy * (double)ncpu, ncpu,
           unfinished ? "; some writes never finished" : "");
    double lg_s = (user1 + sys1) - (user0 + sys0);
    double lg_us = all.ok ? lg_s * 1e6 / (double)all.ok : 0;
    if (cpu_ok)
        printf("  server CPU per acknowledged write: %.1f us\n", cpu_us);
    printf("  load generator CPU while measuring: %.2f s (user %.2f + system %.2f), %.0f%% of one "
           "core; %.1f us per acknowledged write\n",
           lg_s, user1 - user0, sys1 - sys0, 100 * lg_s / secs, lg_us);
    stall_report(b);
    printf("RESULT target=%s inflight=%u ok=%llu secs=%.3f rate=%.1f p50_us=%lld p99_us=%lld "
           "mean_us=%.0f max_us=%lld other=%llu errors=%llu cpu_us=%.1f busy_cores=%.2f "
           "window_s=%.3f lg_cpu_us=%.1f\n",
           target_name(b), depth, (unsigned long long)all.ok, secs, rate, (long long)p50,
           (long long)p99, mean, (long long)max, (unsigned long long)n_other,
           (unsigned long long)n_err, cpu_us, busy * (double)ncpu, window, lg_us);
    return 0;
}

/* ---- main ------------------------------------------------------------------------ */

static int run(struct bench *b)
{
    for (unsigned i = 0; i < b->o.n_levels; i++)
        if (b->o.levels[i] > b->n_keys)
            b->n_keys = b->o.levels[i];
    b->keys = calloc(b->n_keys, sizeof(*b->keys));
    b->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (b->keys == NULL || b->hdrs == NULL)
        return 1;
    if (make_value(b) != 0)
        return 1;
    if (b->o.target == T_RECOVERYD) {
        if (setup_recoveryd(b) != 0)
            return 1;
    } else {
        b->base = b->o.urls[0];
    }
    size_t sample_len = strlen(b->value) + 256;
    char *sample = malloc(sample_len);
    if (sample == NULL)
        return 1;
    format_body(b, 0, 1, 1, sample, sample_len);
    printf("%s: %u-byte values (request bodies of %zu bytes), %s, %u s per level after %u s of "
           "warm-up, at most %u %s\n",
           target_name(b), b->o.size, strlen(sample),
           b->o.h1 ? "HTTP/1.1 (libcurl)" : "HTTP/2 (prior knowledge, nghttp2 through h2c)",
           b->o.duration_s, b->o.warmup_s, b->o.streams,
           b->o.h1 ? "connections per thread" : "streams per connection");
    free(sample);
    int rc = 0;
    for (unsigned i = 0; i < b->o.n_levels && !rdb_interrupted; i++) {
        if (run_level(b, b->o.levels[i]) != 0) {
            fprintf(stderr, "loadgen: level %u failed\n", b->o.levels[i]);
            rc = 1;
            break;
        }
    }
    if (b->o.target == T_RECOVERYD && rc == 0) {
        verify_recoveryd(b);
        printf("agent heartbeats: %llu sent, %llu answered 200, %llu fenced (409), %llu other or "
               "failed; slowest %.1f ms\n",
               (unsigned long long)atomic_load(&b->hb_sent),
               (unsigned long long)atomic_load(&b->hb_ok),
               (unsigned long long)atomic_load(&b->hb_fenced),
               (unsigned long long)atomic_load(&b->hb_failed), atomic_load(&b->hb_max_us) / 1000.0);
        if (b->lost)
            rc = 3;
    }
    return rc;
}

int main(int argc, char **argv)
{
    static struct bench b;
    if (parse_opts(argc, argv, &b.o) != 0)
        return 2;
    if (rdb_init() != 0)
        return 1;
    int rc = run(&b);
    if (b.hb_started) {
        atomic_store(&b.hb_stop, true);
        pthread_join(b.hb_thread, NULL);
    }
    curl_slist_free_all(b.hdrs);
    free(b.keys);
    rdb_end();
    return rc;
}
