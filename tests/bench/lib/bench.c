/* The benchmarks' shared helpers (bench.h). */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

volatile sig_atomic_t rdb_interrupted;

/* ---- the process ----------------------------------------------------------- */

static void on_signal(int sig)
{
    (void)sig;
    rdb_interrupted = 1;
}

int rdb_init(void)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void rdb_end(void)
{
    curl_global_cleanup();
}

void rdb_self_cpu(double *user_s, double *system_s)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *system_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

void rdb_print_self_cpu(void)
{
    double user, sys;
    rdb_self_cpu(&user, &sys);
    printf("\nload generator CPU: %.1f s user + %.1f s system\n", user, sys);
}

void rdb_cpu_mark(struct rdb_cpu_mark *m)
{
    rdb_self_cpu(&m->user_s, &m->system_s);
    m->at_ms = rdb_now_ns() / 1000000;
}

struct rdb_cpu_used rdb_cpu_since(const struct rdb_cpu_mark *m)
{
    struct rdb_cpu_used u;
    rdb_self_cpu(&u.user_s, &u.system_s);
    u.user_s -= m->user_s;
    u.system_s -= m->system_s;
    u.secs = (double)(rdb_now_ns() / 1000000 - m->at_ms) / 1000;
    return u;
}

void rdb_print_cpu_since(const struct rdb_cpu_mark *m, uint64_t requests)
{
    if (m->at_ms == 0)
        return;
    struct rdb_cpu_used u = rdb_cpu_since(m);
    double cpu = u.user_s + u.system_s, user, sys;
    rdb_self_cpu(&user, &sys);
    printf("load generator CPU while measuring: %.1f s (user %.1f + system %.1f) over %.0f s: "
           "%.0f%% of one core; %llu requests ended, %.1f us of CPU per request; %.1f s in all\n",
           cpu, u.user_s, u.system_s, u.secs, u.secs > 0 ? 100 * cpu / u.secs : 0,
           (unsigned long long)requests, requests ? 1e6 * cpu / (double)requests : 0, user + sys);
}

/* ---- clocks ---------------------------------------------------------------- */

int64_t rdb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t rdb_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rdb_sleep_until_ns(int64_t deadline_ns)
{
    for (int64_t now = rdb_now_ns(); now < deadline_ns && !rdb_interrupted; now = rdb_now_ns()) {
        int64_t left = deadline_ns - now;
        struct timespec ts = {.tv_sec = left / 1000000000, .tv_nsec = left % 1000000000};
        nanosleep(&ts, NULL); /* a signal wakes it: the loop checks the flag */
    }
}

void rdb_sleep_ms(int64_t ms)
{
    if (ms > 0)
        rdb_sleep_until_ns(rdb_now_ns() + ms * 1000000);
}

/* ---- options, randomness, times ---------------------------------------------- */

bool rdb_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || v < min || v > max)
        return false;
    *out = (unsigned)v;
    return true;
}

int rdb_parse_opts(int argc, char **argv, const struct rdb_opt *opts, void *ctx,
                   void (*usage)(FILE *f))
{
    enum { MAX_OPTS = 32, HELP = 1000 };
    struct option longs[MAX_OPTS + 2] = {{0}};
    size_t n = 0;
    for (; opts[n].name != NULL; n++) {
        if (n == MAX_OPTS)
            return -1;
        longs[n] = (struct option){opts[n].name, opts[n].flag ? no_argument : required_argument,
                                   NULL, (int)n};
    }
    longs[n] = (struct option){"help", no_argument, NULL, HELP};
    int c;
    optind = 0; /* glibc: starts afresh, also after an earlier parse stopped half-way */
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (c == HELP) {
            usage(stdout);
            exit(0);
        }
        if (c < 0 || (size_t)c >= n)
            return -1; /* getopt_long said what was wrong */
        const struct rdb_opt *o = &opts[c];
        bool ok = true;
        if (o->num)
            ok = rdb_parse_uint(optarg, o->min, o->max, o->num);
        else if (o->str)
            *o->str = optarg;
        else if (o->flag)
            *o->flag = true;
        else
            ok = o->fn(optarg, ctx);
        if (!ok)
            return -1;
    }
    return optind == argc ? 0 : -1;
}

uint64_t rdb_seed(uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL;
    return s ? s : 0x9E3779B97F4A7C15ULL; /* xorshift stays at 0 forever */
}

double rdb_uniform(uint64_t *s, double lo, double hi)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    uint64_t r = *s * 2685821657736338717ULL;
    return lo + (hi - lo) * ((double)(r >> 11) / 9007199254740992.0);
}

int64_t rdb_jittered_ms(uint64_t *state, unsigned interval_ms, unsigned jitter_ms)
{
    double j = (double)jitter_ms;
    return (int64_t)llround((double)interval_ms + rdb_uniform(state, -j, j));
}

int rdb_parse_time(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (p == NULL)
        return -1;
    int64_t frac = 0, scale = 1000;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (scale > 1) {
                frac = frac * 10 + (*p - '0');
                scale /= 10;
            }
        }
    }
    if (*p != 'Z')
        return -1;
    *ms = (int64_t)timegm(&tm) * 1000 + frac * scale;
    return 0;
}

void rdb_format_time(int64_t ms, char *out, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03dZ", base, (int)(ms % 1000));
}

/* ---- statistics -------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void rdb_sort_i64(int64_t *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_i64);
}

int64_t rdb_quantile(const int64_t *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t k = (size_t)ceil(q * (double)n);
    k = k > 0 ? k - 1 : 0;
    return sorted[k < n ? k : n - 1];
}

struct rdb_lat rdb_lat_of(int64_t *v, size_t n, size_t of)
{
    struct rdb_lat s = {.n = n, .of = of};
    if (n == 0)
        return s;
    rdb_sort_i64(v, n);
    s.p50 = rdb_quantile(v, n, 0.5);
    s.p99 = rdb_quantile(v, n, 0.99);
    s.max = v[n - 1];
    return s;
}

void rdb_hist_init(struct rdb_hist *h, unsigned width_us)
{
    memset(h, 0, sizeof(*h));
    h->width_us = width_us;
}

void rdb_hist_add(struct rdb_hist *h, int64_t us)
{
    if (us < 0)
        us = 0;
    uint64_t i = (uint64_t)us / h->width_us;
    if (i < RDB_HIST_SLOTS)
        h->slot[i]++;
    else
        h->over++;
    h->n++;
    if (us > h->max_us)
        h->max_us = us;
}

int64_t rdb_hist_quantile(const struct rdb_hist *h, double q)
{
    uint64_t want = (uint64_t)ceil(q * (double)h->n), seen = 0;
    if (want == 0)
        return 0;
    for (unsigned i = 0; i < RDB_HIST_SLOTS; i++) {
        seen += h->slot[i];
        if (seen >= want)
            return (int64_t)(i + 1) * h->width_us;
    }
    return h->max_us;
}

void rdb_hist_merge(struct rdb_hist *to, const struct rdb_hist *from)
{
    to->n += from->n;
    to->over += from->over;
    if (from->max_us > to->max_us)
        to->max_us = from->max_us;
    for (unsigned i = 0; i < RDB_HIST_SLOTS; i++)
        to->slot[i] += from->slot[i];
}

/* ---- response buffers ---------------------------------------------------------- */

void rdb_buf_fixed(struct rdb_buf *b, char *storage, size_t size)
{
    *b = (struct rdb_buf){.p = storage, .cap = size, .fixed = true};
    storage[0] = '\0';
}

size_t rdb_buf_write(char *data, size_t size, size_t n, void *buf)
{
    struct rdb_buf *b = buf;
    size_t len = size * n;
    if (b->fixed) {
        size_t room = b->cap - 1 - b->len, take = len < room ? len : room;
        memcpy(b->p + b->len, data, take);
        b->len += take;
        b->p[b->len] = '\0';
        return len; /* the rest is dropped, not an error */
    }
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0; /* libcurl fails the transfer */
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return len;
}

void rdb_buf_clear(struct rdb_buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

void rdb_buf_free(struct rdb_buf *b)
{
    if (b->fixed) {
        rdb_buf_clear(b);
        return;
    }
    free(b->p);
    *b = (struct rdb_buf){0};
}

/* ---- HTTP handles ------------------------------------------------------------- */

CURL *rdb_easy_new(long version, struct curl_slist *hdrs, long timeout_ms, void *priv,
                   struct rdb_buf *resp)
{
    CURL *e = curl_easy_init();
    if (e == NULL)
        return NULL;
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, version);
    if (hdrs)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (version != (long)CURL_HTTP_VERSION_1_1)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, priv);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, rdb_buf_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
    return e;
}

void rdb_easy_blocking(CURL *e, long timeout_ms, struct curl_slist *hdrs, struct rdb_buf *resp)
{
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, rdb_buf_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
    if (hdrs)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
}

long rdb_request(CURL *e, const char *method, const char *url, const char *body,
                 struct curl_slist *hdrs, long timeout_ms, struct rdb_buf *resp)
{
    curl_easy_reset(e);
    rdb_easy_blocking(e, timeout_ms, hdrs, resp);
    rdb_buf_clear(resp);
    curl_easy_setopt(e, CURLOPT_URL, url);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, body ? (long)strlen(body) : 0L);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    long status = -1;
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

bool rdb_next_done(CURLM *multi, struct rdb_done *d)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_off_t us = 0;
        *d = (struct rdb_done){.easy = m->easy_handle, .rc = m->data.result};
        curl_easy_getinfo(d->easy, CURLINFO_PRIVATE, &priv);
        curl_easy_getinfo(d->easy, CURLINFO_TOTAL_TIME_T, &us);
        if (d->rc == CURLE_OK)
            curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &d->status);
        d->priv = priv;
        d->us = d->rx_us = (int64_t)us;
        curl_multi_remove_handle(multi, d->easy); /* m is gone from here on */
        return true;
    }
    return false;
}

/* ---- HTTP/2 -------------------------------------------------------------------- */

bool rdb_h2_prior_knowledge(void)
{
    return curl_version_info(CURLVERSION_NOW)->version_num >= 0x080000;
}

long rdb_h2_version(void)
{
    return rdb_h2_prior_knowledge() ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                                    : (long)CURL_HTTP_VERSION_2_0;
}

int rdb_h2_conns(int want)
{
    return rdb_h2_prior_knowledge() ? want : 1;
}

CURLM *rdb_h2_multi(int want)
{
    CURLM *multi = curl_multi_init();
    if (multi != NULL) {
        curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
        curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)rdb_h2_conns(want));
    }
    return multi;
}

static size_t discard(char *p, size_t size, size_t n, void *data)
{
    (void)p;
    (void)data;
    return size * n;
}

/* A GET of base_url/health that opens an HTTP/2 connection (without
 * PIPEWAIT: a connection of its own); NULL on failure. */
static CURL *h2_health(const char *base_url, long timeout_ms)
{
    char url[512];
    CURL *e = curl_easy_init();
    if (e == NULL)
        return NULL;
    snprintf(url, sizeof(url), "%s/health", base_url);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, rdb_h2_version());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    return e;
}

int rdb_h2_opening_start(struct rdb_h2_opening *o, CURLM *multi, const char *base_url,
                         long timeout_ms)
{
    o->easy = h2_health(base_url, timeout_ms);
    if (o->easy == NULL)
        return -1;
    curl_easy_setopt(o->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms < RDB_H2_CONNECT_MS ? timeout_ms : (long)RDB_H2_CONNECT_MS);
    if (curl_multi_add_handle(multi, o->easy) != CURLM_OK) {
        curl_easy_cleanup(o->easy);
        o->easy = NULL;
        return -1;
    }
    return 0;
}

bool rdb_h2_opening_done(struct rdb_h2_opening *o, const struct rdb_done *d)
{
    long version = 0;
    curl_easy_getinfo(d->easy, CURLINFO_HTTP_VERSION, &version);
    bool ok = d->rc == CURLE_OK && version == CURL_HTTP_VERSION_2_0;
    if (d->easy == o->easy) {
        curl_easy_cleanup(o->easy);
        o->easy = NULL;
    }
    return ok;
}

void rdb_h2_opening_cancel(struct rdb_h2_opening *o, CURLM *multi)
{
    if (o->easy == NULL)
        return;
    curl_multi_remove_handle(multi, o->easy);
    curl_easy_cleanup(o->easy);
    o->easy = NULL;
}

int rdb_h2_open(CURLM *multi, const char *base_url, int n)
{
    enum { MAX_OPEN = 64 };
    CURL *e[MAX_OPEN] = {0};
    n = n < MAX_OPEN ? n : MAX_OPEN;
    int added = 0, opened = 0, running = 1;
    for (; added < n; added++) {
        if ((e[added] = h2_health(base_url, 5000L)) == NULL)
            break;
        curl_multi_add_handle(multi, e[added]);
    }
    for (int64_t end = rdb_now_ns() + 10000000000LL; running > 0 && rdb_now_ns() < end;) {
        curl_multi_perform(multi, &running);
        curl_multi_poll(multi, NULL, 0, 50, NULL);
    }
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        long version = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_HTTP_VERSION, &version);
        if (m->data.result == CURLE_OK && version == CURL_HTTP_VERSION_2_0)
            opened++;
        else
            fprintf(stderr,
                    "loadgen: opening an HTTP/2 connection to %s failed (%s, HTTP version "
                    "code %ld)\n",
                    base_url, curl_easy_strerror(m->data.result), version);
    }
    if (running > 0)
        fprintf(stderr, "loadgen: %d connections to %s not open after 10 s\n", running, base_url);
    for (int i = 0; i < added; i++) {
        curl_multi_remove_handle(multi, e[i]);
        curl_easy_cleanup(e[i]);
    }
    return opened;
}

/* ---- what an agent reads ----------------------------------------------------- */

void rdb_task_id(unsigned i, char *out, size_t len)
{
    snprintf(out, len, RDB_TASK_PREFIX "%012u", i);
}

unsigned rdb_task_index(const char *id)
{
    size_t pl = strlen(RDB_TASK_PREFIX);
    if (id == NULL || strlen(id) != pl + 12 || strncmp(id, RDB_TASK_PREFIX, pl) != 0)
        return UINT32_MAX;
    unsigned i;
    return rdb_parse_uint(id + pl, 0, UINT32_MAX - 1, &i) ? i : UINT32_MAX;
}

int rdb_hold_slot(struct rdb_hold *holds, unsigned *n, unsigned cap, unsigned task,
                  uint32_t attempt)
{
    for (unsigned i = 0; i < *n; i++) {
        if (holds[i].active && holds[i].task == task)
            return holds[i].attempt >= attempt ? -1
                                               : (int)i; /* a newer attempt of a task it held */
    }
    for (unsigned i = 0; i < *n; i++)
        if (!holds[i].active && !holds[i].in_flight)
            return (int)i;
    return *n < cap ? (int)(*n)++ : -2;
}

long long rdb_epoch_of(long status, const char *body)
{
    json_t *j = status == 201 && body ? json_loads(body, 0, NULL) : NULL;
    long long epoch = json_integer_value(json_object_get(j, "epoch"));
    json_decref(j);
    return epoch;
}

void rdb_heartbeat_answer(const char *body, void (*take)(void *ctx, const struct rdb_assignment *a),
                          void (*drop)(void *ctx, const char *task_id), void *ctx)
{
    if (body == NULL || (strstr(body, "\"assignments\":[]") && strstr(body, "\"revoked\":[]")))
        return;
    json_t *j = json_loads(body, 0, NULL), *item;
    size_t i;
    json_array_foreach(json_object_get(j, "assignments"), i, item)
    {
        json_t *ck = json_object_get(item, "checkpoint");
        struct rdb_assignment a = {
            .task_id = json_string_value(json_object_get(item, "task_id")),
            .attempt = json_integer_value(json_object_get(item, "attempt")),
            .version = (uint64_t)json_integer_value(json_object_get(ck, "version")),
        };
        take(ctx, &a);
    }
    json_array_foreach(json_object_get(j, "revoked"), i, item) drop(ctx, json_string_value(item));
    json_decref(j);
}

/* ---- replicas --------------------------------------------------------------- */

int rdb_health(CURL *e, const char *base_url, long timeout_ms, struct rdb_health *out)
{
    char url[512];
    struct rdb_buf bf = {0};
    snprintf(url, sizeof(url), "%s/health", base_url);
    *out = (struct rdb_health){.role = "?"};
    long status = rdb_request(e, "GET", url, NULL, NULL, timeout_ms, &bf);
    json_t *j = status == 200 && bf.p ? json_loads(bf.p, 0, NULL) : NULL;
    rdb_buf_free(&bf);
    if (j == NULL)
        return -1;
    const char *role = json_string_value(json_object_get(j, "role"));
    snprintf(out->role, sizeof(out->role), "%s", role ? role : "?");
    out->term = json_integer_value(json_object_get(j, "term"));
    out->replica_id = json_integer_value(json_object_get(j, "replica_id"));
    json_decref(j);
    return 0;
}

int rdb_find_leader(CURL *e, const char *const *urls, unsigned n, long request_ms,
                    int64_t timeout_ms, struct rdb_health *out)
{
    int64_t end = rdb_now_ns() + timeout_ms * 1000000;
    while (!rdb_interrupted) {
        for (unsigned i = 0; i < n; i++)
            if (rdb_health(e, urls[i], request_ms, out) == 0 && strcmp(out->role, "leader") == 0)
                return (int)i;
        if (rdb_now_ns() >= end)
            break;
        rdb_sleep_ms(50);
    }
    return -1;
}

/* ---- a queue of due times ------------------------------------------------------- */

int rdb_dueq_init(struct rdb_dueq *q, size_t cap)
{
    q->v = calloc(cap ? cap : 1, sizeof(*q->v));
    q->n = 0;
    q->cap = cap;
    return q->v ? 0 : -1;
}

void rdb_dueq_free(struct rdb_dueq *q)
{
    free(q->v);
    memset(q, 0, sizeof(*q));
}

static void dueq_swap(struct rdb_dueq *q, size_t a, size_t b)
{
    struct rdb_due t = q->v[a];
    q->v[a] = q->v[b];
    q->v[b] = t;
}

bool rdb_dueq_push(struct rdb_dueq *q, int64_t due, unsigned idx)
{
    if (q->n == q->cap)
        return false;
    size_t i = q->n++;
    q->v[i] = (struct rdb_due){due, idx};
    while (i > 0 && q->v[i].due < q->v[(i - 1) / 2].due) {
        dueq_swap(q, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    return true;
}

bool rdb_dueq_pop_due(struct rdb_dueq *q, int64_t now, struct rdb_due *out)
{
    if (q->n == 0)
        return false;
    *out = q->v[0];
    if (out->due > now)
        return false;
    q->v[0] = q->v[--q->n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->n && q->v[l].due < q->v[m].due)
            m = l;
        if (r < q->n && q->v[r].due < q->v[m].due)
            m = r;
        if (m == i)
            break;
        dueq_swap(q, i, m);
        i = m;
    }
    return true;
}

/* ---- following the leader ------------------------------------------------------ */

int rdb_leader_init(struct rdb_leader *l, const char *list, int64_t now_ms)
{
    *l = (struct rdb_leader){.idx = 0, .gen = 1, .last_ok = now_ms};
    pthread_mutex_init(&l->mu, NULL);
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n > 0 && p[n - 1] == '/')
            n--;
        if (n == 0 || n >= RDB_URL_MAX || l->n == RDB_MAX_REPLICAS)
            return -1;
        memcpy(l->urls[l->n], p, n);
        l->urls[l->n++][n] = '\0';
        p = comma ? comma + 1 : NULL;
    }
    if (l->n == 0)
        return -1;
    snprintf(l->url, sizeof(l->url), "%s", l->urls[0]);
    return 0;
}

void rdb_leader_free(struct rdb_leader *l)
{
    pthread_mutex_destroy(&l->mu);
}

unsigned rdb_leader_get(struct rdb_leader *l, char *url, size_t len)
{
    pthread_mutex_lock(&l->mu);
    unsigned gen = atomic_load(&l->gen);
    snprintf(url, len, "%s", l->url);
    pthread_mutex_unlock(&l->mu);
    return gen;
}

unsigned rdb_leader_gen(struct rdb_leader *l)
{
    return atomic_load(&l->gen);
}

bool rdb_not_leader(long status, const char *body, char *leader, size_t len)
{
    if (len > 0)
        leader[0] = '\0';
    body = body ? body : "";
    if (status != 307 && !(status == 503 && (strstr(body, "\"not_leader\"") != NULL ||
                                             strstr(body, "\"no_quorum\"") != NULL)))
        return false;
    /* Read by hand: a body kept in a fixed buffer may be cut short. */
    const char *p = strstr(body, "\"leader\":");
    if (p == NULL)
        return true;
    p += strlen("\"leader\":");
    while (*p == ' ')
        p++;
    const char *end = *p == '"' ? strchr(p + 1, '"') : NULL;
    size_t n = end ? (size_t)(end - p - 1) : 0;
    while (n > 0 && p[n] == '/')
        n--;
    if (end != NULL && n > 0 && n < len && memchr(p + 1, '\\', n) == NULL) {
        memcpy(leader, p + 1, n);
        leader[n] = '\0';
    }
    return true;
}

/* Under l->mu: the switch to `url` (index `idx` in the list, or -1). */
static void leader_switch(struct rdb_leader *l, const char *url, int idx, int64_t now_ms)
{
    snprintf(l->url, sizeof(l->url), "%s", url);
    l->idx = idx;
    l->last_switch = now_ms;
    l->switches++;
    atomic_fetch_add(&l->gen, 1);
}

/* rdb_leader_refused; `unreachable` when the one in use could not be reached. */
static bool leader_refused(struct rdb_leader *l, unsigned gen, const char *leader, int64_t now_ms,
                           bool unreachable)
{
    bool switched = false;
    pthread_mutex_lock(&l->mu);
    if (gen != atomic_load(&l->gen))
        goto out; /* refused by one left already */
    int64_t zero = 0;
    if (atomic_compare_exchange_strong(&l->down_since, &zero, now_ms))
        l->outages++;
    if (unreachable) {
        snprintf(l->dead, sizeof(l->dead), "%s", l->url);
        l->dead_at = now_ms;
    }
    /* Followers name the old leader until they elect another: not the one
     * just found unreachable. */
    if (leader != NULL && strcmp(leader, l->dead) == 0 && now_ms - l->dead_at < RDB_LEADER_DEAD_MS)
        leader = NULL;
    if (leader != NULL && leader[0] != '\0') {
        if (strcmp(leader, l->url) == 0)
            goto out; /* it names the one refusing: sent again later */
        int idx = -1;
        for (unsigned i = 0; i < l->n; i++)
            if (strcmp(l->urls[i], leader) == 0)
                idx = (int)i;
        leader_switch(l, leader, idx, now_ms);
        l->named++;
        switched = true;
    } else if (l->switches == 0 || now_ms - l->last_switch >= RDB_LEADER_RETRY_MS) {
        if (l->n < 2 && l->idx == 0)
            goto out; /* nowhere else to go */
        unsigned next = l->idx < 0 ? 0 : ((unsigned)l->idx + 1) % l->n;
        leader_switch(l, l->urls[next], (int)next, now_ms);
        l->tried++;
        switched = true;
    }
out:
    pthread_mutex_unlock(&l->mu);
    return switched;
}

bool rdb_leader_refused(struct rdb_leader *l, unsigned gen, const char *leader, int64_t now_ms)
{
    return leader_refused(l, gen, leader, now_ms, false);
}

bool rdb_leader_failed(struct rdb_leader *l, unsigned gen, CURLcode rc, int64_t now_ms)
{
    if (rc == CURLE_COULDNT_CONNECT || now_ms - atomic_load(&l->last_ok) >= RDB_LEADER_STALL_MS)
        leader_refused(l, gen, NULL, now_ms, true);
    return gen != rdb_leader_gen(l);
}

void rdb_leader_ok(struct rdb_leader *l, int64_t now_ms)
{
    if (atomic_load(&l->last_ok) < now_ms)
        atomic_store(&l->last_ok, now_ms);
    if (atomic_load(&l->down_since) == 0)
        return;
    pthread_mutex_lock(&l->mu);
    int64_t since = atomic_load(&l->down_since);
    if (since != 0) {
        int64_t d = now_ms > since ? now_ms - since : 0;
        l->leaderless_ms += d;
        l->longest_ms = d > l->longest_ms ? d : l->longest_ms;
        atomic_store(&l->down_since, 0);
    }
    pthread_mutex_unlock(&l->mu);
}

void rdb_leader_print(struct rdb_leader *l, int64_t now_ms)
{
    pthread_mutex_lock(&l->mu);
    int64_t since = atomic_load(&l->down_since), open = since ? now_ms - since : 0;
    printf("leader: %u switches (%u to the leader a replica named, %u tries of the next "
           "replica), now %s; time without a leader: %lld ms in %u outages (longest %lld "
           "ms)%s\n",
           l->switches, l->named, l->tried, l->url, (long long)(l->leaderless_ms + open),
           l->outages, (long long)(open > l->longest_ms ? open : l->longest_ms),
           since ? ", one still open at the end" : "");
    pthread_mutex_unlock(&l->mu);
}

int rdb_rebase_url(char *url, size_t len, const char *base)
{
    char tmp[1024];
    const char *path = strstr(url, "/api/");
    if (path == NULL) {
        const char *host = strstr(url, "://");
        path = host ? strchr(host + 3, '/') : NULL;
        path = path ? path : "";
    }
    int n = snprintf(tmp, sizeof(tmp), "%s%s", base, path);
    if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(tmp))
        return -1;
    memcpy(url, tmp, (size_t)n + 1);
    return 0;
}
