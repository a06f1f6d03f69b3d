/*
 * A fake plugin host for unit tests of plugins, without the engine: loads the
 * built plugin (.so next to the built daemon, by dlopen, as the real host
 * does) and hands it a struct rd_host_api of test functions:
 *   - config values come from a table (defaults from the plugin's keys);
 *   - timers are recorded and fired by the test (fh_fire_*); a fired one-shot
 *     timer and every timer of a stopping instance are freed, as plugin.h
 *     says; stopping a freed timer fails the test;
 *   - http_request is recorded; the test answers it (fh_answer);
 *   - observe() and log() are recorded; counters are test-owned uint64_t;
 *   - queue_work is recorded and returns; the test runs the queued work with
 *     fh_run_work(): each work function on a thread of its own (as the
 *     host's pool does, several at once), then every `done` on the test's
 *     thread (the loop). A host function called from a work thread is
 *     counted in g_fh.off_loop_calls, which fh_destroy() requires to be 0.
 * One instance at a time (the global g_fh). Include from one test file only.
 */
#ifndef RD_TEST_FAKE_HOST_H
#define RD_TEST_FAKE_HOST_H

#include "cmocka_all.h"

#include <dlfcn.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "recoveryd/plugin.h"

#ifndef RD_BINARY
#error "RD_BINARY (path of the built recoveryd) must be defined"
#endif

#define FH_FN static __attribute__((unused))

#define FH_MAX_TIMERS   4096
#define FH_MAX_LOGS     512
#define FH_MAX_COUNTERS 16
#define FH_MAX_WORK     256 /* queued and not yet run */
#define FH_POOL         4   /* work functions run at once (libuv's default pool) */

struct fh_timer {
    bool live;  /* started and not yet freed */
    bool freed; /* stopped by the plugin, fired (one-shot) or freed at stop */
    uint64_t first_ms, repeat_ms;
    rd_timer_cb cb;
    void *data;
    unsigned fired;
};

struct fh_http {
    bool open; /* not answered yet */
    char method[16];
    char url[512];
    char *body;
    size_t body_len;
    char content_type[128];
    uint64_t timeout_ms;
    rd_http_cb cb;
    void *data;
};

struct fh_obs {
    char node_id[256];
    uint64_t epoch;
    int signal, verdict, probe_cause;
    double value;
    uint64_t since_ns;
    char detail[256];
};

struct fh_log {
    int level;
    char event[64];
    char msg[1024];
};

struct fh_work {
    rd_work_cb work;
    rd_after_work_cb done;
    void *data;
};

struct fake_host {
    struct rd_host_api api;
    const char *(*cfg)[2]; /* {key, value} rows, ended by {NULL, NULL} */
    const struct rd_plugin_descriptor *desc;
    void *state;
    struct rd_detection_params dp;
    uint64_t now_ns;
    uint64_t drained_ns; /* input_drained_ns: 0 is now (the loop keeps up) */
    int64_t now_ms;
    struct fh_timer timers[FH_MAX_TIMERS];
    size_t n_timers;
    struct fh_http *http;
    size_t n_http, cap_http;
    struct fh_obs *obs;
    size_t n_obs, cap_obs;
    struct fh_log logs[FH_MAX_LOGS];
    size_t n_logs;
    struct {
        char name[64];
        uint64_t value;
    } counters[FH_MAX_COUNTERS];
    size_t n_counters;
    bool stopping;
    int done_calls;
    int http_reject; /* when not 0, http_request returns it */
    struct fh_work work[FH_MAX_WORK];
    size_t n_work;         /* queued, not yet run */
    size_t work_run;       /* work items run so far */
    pthread_t loop_thread; /* the thread that called fh_init: "the loop" */
    int off_loop_calls;    /* host functions called from elsewhere (atomic) */
    char error[512];
    char name[64];
};

static struct fake_host g_fh;
#define FH_INST ((rd_plugin_instance_t *)&g_fh)

/* Counts a host function called off the loop (from a work thread). */
#define FH_ON_LOOP()                                                                               \
    do {                                                                                           \
        if (!pthread_equal(pthread_self(), g_fh.loop_thread))                                      \
            __atomic_add_fetch(&g_fh.off_loop_calls, 1, __ATOMIC_RELAXED);                         \
    } while (0)

/* When set, the next fh_init() uses these detection params (then clears it). */
static const struct rd_detection_params *g_fh_next_dp;

/* ---- the host API ----------------------------------------------------------- */

static void fh_log(rd_plugin_instance_t *inst, int level, const char *event, const char *fmt, ...)
{
    FH_ON_LOOP();
    assert_ptr_equal(inst, FH_INST);
    if (g_fh.n_logs == FH_MAX_LOGS)
        return;
    struct fh_log *l = &g_fh.logs[g_fh.n_logs++];
    l->level = level;
    snprintf(l->event, sizeof l->event, "%s", event);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->msg, sizeof l->msg, fmt, ap);
    va_end(ap);
}

static const char *fh_instance_name(rd_plugin_instance_t *inst)
{
    FH_ON_LOOP();
    assert_ptr_equal(inst, FH_INST);
    return g_fh.name;
}

static void fh_set_error(rd_plugin_instance_t *inst, const char *fmt, ...)
{
    FH_ON_LOOP();
    assert_ptr_equal(inst, FH_INST);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_fh.error, sizeof g_fh.error, fmt, ap);
    va_end(ap);
}

/* The configured text of `key`, else the plugin's default (NULL: none). */
static const char *fh_text(const char *key)
{
    for (size_t i = 0; g_fh.cfg && g_fh.cfg[i][0]; i++)
        if (strcmp(g_fh.cfg[i][0], key) == 0)
            return g_fh.cfg[i][1];
    for (const struct rd_plugin_key *k = g_fh.desc->keys; k && k->name; k++)
        if (strcmp(k->name, key) == 0)
            return k->default_value;
    fail_msg("the plugin asked for undeclared key '%s'", key);
    return NULL;
}

static const char *fh_config_string(rd_plugin_instance_t *inst, const char *key)
{
    FH_ON_LOOP();
    (void)inst;
    return fh_text(key);
}

static int64_t fh_config_int(rd_plugin_instance_t *inst, const char *key)
{
    FH_ON_LOOP();
    (void)inst;
    const char *t = fh_text(key);
    return t ? strtoll(t, NULL, 10) : 0;
}

static double fh_config_double(rd_plugin_instance_t *inst, const char *key)
{
    FH_ON_LOOP();
    (void)inst;
    const char *t = fh_text(key);
    return t ? strtod(t, NULL) : 0;
}

static bool fh_config_bool(rd_plugin_instance_t *inst, const char *key)
{
    FH_ON_LOOP();
    (void)inst;
    const char *t = fh_text(key);
    return t && strcmp(t, "true") == 0;
}

/* Durations ("250ms", "2s", "1m", "1h", "1d") in ms; plain numbers as they are. */
static uint64_t fh_config_uint(rd_plugin_instance_t *inst, const char *key)
{
    FH_ON_LOOP();
    (void)inst;
    const char *t = fh_text(key);
    if (!t)
        return 0;
    char *end;
    unsigned long long n = strtoull(t, &end, 10);
    if (strcmp(end, "ms") == 0 || *end == '\0')
        return n;
    if (strcmp(end, "s") == 0)
        return n * 1000;
    if (strcmp(end, "m") == 0)
        return n * 60000;
    if (strcmp(end, "h") == 0)
        return n * 3600000;
    if (strcmp(end, "d") == 0)
        return n * 86400000;
    fail_msg("bad duration '%s' for %s", t, key);
    return 0;
}

static void fh_detection_params(rd_plugin_instance_t *inst, struct rd_detection_params *out)
{
    (void)inst;
    *out = g_fh.dp;
}

static uint64_t fh_now_ns(void)
{
    FH_ON_LOOP();
    return g_fh.now_ns;
}

static uint64_t fh_input_drained_ns(rd_plugin_instance_t *inst)
{
    (void)inst;
    FH_ON_LOOP();
    return g_fh.drained_ns != 0 && g_fh.drained_ns < g_fh.now_ns ? g_fh.drained_ns : g_fh.now_ns;
}

static int64_t fh_now_ms(void)
{
    FH_ON_LOOP();
    return g_fh.now_ms;
}

static rd_timer_t *fh_timer_start(rd_plugin_instance_t *inst, uint64_t first_ms, uint64_t repeat_ms,
                                  rd_timer_cb cb, void *data)
{
    FH_ON_LOOP();
    assert_ptr_equal(inst, FH_INST);
    assert_non_null(cb);
    if (g_fh.stopping)
        return NULL;
    assert_true(g_fh.n_timers < FH_MAX_TIMERS);
    struct fh_timer *t = &g_fh.timers[g_fh.n_timers++];
    memset(t, 0, sizeof *t);
    t->live = true;
    t->first_ms = first_ms;
    t->repeat_ms = repeat_ms;
    t->cb = cb;
    t->data = data;
    return (rd_timer_t *)t;
}

static void fh_timer_stop(rd_timer_t *timer)
{
    FH_ON_LOOP();
    struct fh_timer *t = (struct fh_timer *)timer;
    if (!t)
        return;
    if (t->freed)
        fail_msg("timer_stop on a timer the host already freed (#%zu)", (size_t)(t - g_fh.timers));
    t->live = false;
    t->freed = true;
}

static int fh_queue_work(rd_plugin_instance_t *inst, rd_work_cb work, rd_after_work_cb done,
                         void *data)
{
    FH_ON_LOOP();
    assert_ptr_equal(inst, FH_INST);
    assert_non_null(work);
    if (g_fh.stopping)
        return RD_ESHUTDOWN;
    assert_true(g_fh.n_work < FH_MAX_WORK);
    g_fh.work[g_fh.n_work++] = (struct fh_work){work, done, data};
    return 0;
}

static int fh_http_request(rd_plugin_instance_t *inst, const struct rd_http_request *req,
                           rd_http_cb cb, void *data)
{
    FH_ON_LOOP();
    assert_ptr_equal(inst, FH_INST);
    assert_non_null(req);
    assert_non_null(req->url);
    assert_non_null(cb);
    if (g_fh.stopping)
        return RD_ESHUTDOWN;
    if (g_fh.http_reject)
        return g_fh.http_reject;
    if (g_fh.n_http == g_fh.cap_http) {
        g_fh.cap_http = g_fh.cap_http ? g_fh.cap_http * 2 : 64;
        g_fh.http = realloc(g_fh.http, g_fh.cap_http * sizeof *g_fh.http);
        assert_non_null(g_fh.http);
    }
    struct fh_http *h = &g_fh.http[g_fh.n_http++];
    memset(h, 0, sizeof *h);
    h->open = true;
    snprintf(h->method, sizeof h->method, "%s", req->method ? req->method : "");
    snprintf(h->url, sizeof h->url, "%s", req->url);
    if (req->body) {
        h->body = malloc(req->body_len + 1);
        assert_non_null(h->body);
        memcpy(h->body, req->body, req->body_len);
        h->body[req->body_len] = '\0';
        h->body_len = req->body_len;
    }
    snprintf(h->content_type, sizeof h->content_type, "%s",
             req->content_type ? req->content_type : "");
    h->timeout_ms = req->timeout_ms;
    h->cb = cb;
    h->data = data;
    return 0;
}

static void fh_observe(rd_plugin_instance_t *inst, const struct rd_observation *o)
{
    FH_ON_LOOP();
    assert_ptr_equal(inst, FH_INST);
    if (g_fh.n_obs == g_fh.cap_obs) {
        g_fh.cap_obs = g_fh.cap_obs ? g_fh.cap_obs * 2 : 64;
        g_fh.obs = realloc(g_fh.obs, g_fh.cap_obs * sizeof *g_fh.obs);
        assert_non_null(g_fh.obs);
    }
    struct fh_obs *r = &g_fh.obs[g_fh.n_obs++];
    memset(r, 0, sizeof *r);
    snprintf(r->node_id, sizeof r->node_id, "%s", o->node_id);
    r->epoch = o->epoch;
    r->signal = o->signal;
    r->verdict = o->verdict;
    r->probe_cause = o->probe_cause;
    r->value = o->value;
    r->since_ns = o->since_ns;
    snprintf(r->detail, sizeof r->detail, "%s", o->detail ? o->detail : "");
}

static size_t fh_node_count(rd_plugin_instance_t *inst)
{
    (void)inst;
    return 0;
}

static int fh_node_at(rd_plugin_instance_t *inst, size_t i, struct rd_node_view *out)
{
    (void)inst;
    (void)i;
    (void)out;
    return RD_ENOTFOUND;
}

static uint64_t *fh_counter_api(rd_plugin_instance_t *inst, const char *name, const char *help)
{
    FH_ON_LOOP();
    (void)inst;
    (void)help;
    for (size_t i = 0; i < g_fh.n_counters; i++)
        if (strcmp(g_fh.counters[i].name, name) == 0)
            return &g_fh.counters[i].value;
    assert_true(g_fh.n_counters < FH_MAX_COUNTERS);
    snprintf(g_fh.counters[g_fh.n_counters].name, sizeof g_fh.counters[0].name, "%s", name);
    return &g_fh.counters[g_fh.n_counters++].value;
}

/* ---- what tests call ----------------------------------------------------------- */

/* Loads build/plugins/NAME.so, as found from the built daemon's path. */
FH_FN const struct rd_plugin_descriptor *fh_load(const char *name)
{
    char bin[1024], dir[1024], path[1200];
    snprintf(bin, sizeof bin, "%s", RD_BINARY);
    snprintf(dir, sizeof dir, "%s", dirname(bin)); /* build/bin */
    snprintf(path, sizeof path, "%s/plugins/%s.so", dirname(dir), name);
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl)
        fail_msg("dlopen %s: %s", path, dlerror());
    rd_plugin_entry_fn entry;
    *(void **)&entry = dlsym(dl, RD_PLUGIN_ENTRY);
    assert_non_null(entry);
    const struct rd_plugin_descriptor *d = entry();
    assert_non_null(d);
    assert_int_equal(d->abi_major, RD_PLUGIN_ABI_MAJOR);
    assert_true(d->abi_minor <= RD_PLUGIN_ABI_MINOR);
    assert_true(d->size >= sizeof(struct rd_plugin_descriptor));
    assert_string_equal(d->build_sig, RD_PLUGIN_BUILD_SIG);
    assert_string_equal(d->name, name);
    return d;
}

/* Releases what the previous instance left in g_fh and zeroes it. */
FH_FN void fh_reset(void)
{
    for (size_t i = 0; i < g_fh.n_http; i++)
        free(g_fh.http[i].body);
    free(g_fh.http);
    free(g_fh.obs);
    free(g_fh.state);
    memset(&g_fh, 0, sizeof g_fh);
}

/* Loads plugin `name` and runs init() for an instance named `inst_name` with
 * config rows `cfg`. Returns init()'s result. */
FH_FN int fh_init(const char *name, const char *inst_name, const char *(*cfg)[2])
{
    fh_reset();
    g_fh.loop_thread = pthread_self();
    struct rd_host_api *a = &g_fh.api;
    a->abi_major = RD_PLUGIN_ABI_MAJOR;
    a->abi_minor = RD_PLUGIN_ABI_MINOR;
    a->size = sizeof *a;
    a->log = fh_log;
    a->instance_name = fh_instance_name;
    a->set_error = fh_set_error;
    a->config_string = fh_config_string;
    a->config_int = fh_config_int;
    a->config_double = fh_config_double;
    a->config_bool = fh_config_bool;
    a->config_uint = fh_config_uint;
    a->detection_params = fh_detection_params;
    a->now_ns = fh_now_ns;
    a->now_ms = fh_now_ms;
    a->timer_start = fh_timer_start;
    a->timer_stop = fh_timer_stop;
    a->queue_work = fh_queue_work;
    a->http_request = fh_http_request;
    a->observe = fh_observe;
    a->node_count = fh_node_count;
    a->node_at = fh_node_at;
    a->counter = fh_counter_api;
    a->table_realloc = rd_nofork_realloc; /* the engine's own (common/util.c) */
    a->input_drained_ns = fh_input_drained_ns;
    g_fh.cfg = cfg;
    g_fh.now_ns = 1000000000ull;
    g_fh.now_ms = 1767225600000LL; /* 2026-01-01T00:00:00Z */
    g_fh.dp = (struct rd_detection_params){
        .heartbeat_interval_ms = 1000,
        .health_check_timeout_ms = 1000,
        .failure_threshold = 3,
        .recovery_threshold = 2,
    };
    if (g_fh_next_dp)
        g_fh.dp = *g_fh_next_dp;
    g_fh_next_dp = NULL;
    snprintf(g_fh.name, sizeof g_fh.name, "%s", inst_name);
    g_fh.desc = fh_load(name);
    g_fh.state = calloc(1, g_fh.desc->state_size ? g_fh.desc->state_size : 1);
    assert_non_null(g_fh.state);
    return g_fh.desc->init(FH_INST, &g_fh.api, g_fh.state);
}

FH_FN void fh_start(void)
{
    assert_int_equal(g_fh.desc->start(g_fh.state), 0);
}

static void fh_done(rd_plugin_instance_t *inst)
{
    assert_ptr_equal(inst, FH_INST);
    g_fh.done_calls++;
}

/* Open requests. */
FH_FN size_t fh_open(void)
{
    size_t n = 0;
    for (size_t i = 0; i < g_fh.n_http; i++)
        n += g_fh.http[i].open;
    return n;
}

/* Answers request `i` (once) with a status and a body. */
FH_FN void fh_answer_body(size_t i, int status, const char *body)
{
    assert_true(i < g_fh.n_http);
    struct fh_http *h = &g_fh.http[i];
    assert_true(h->open);
    h->open = false;
    struct rd_http_response r = {
        .status = status,
        .cause = RD_PROBE_STATUS,
        .error = "",
        .body = body,
        .body_len = strlen(body),
        .elapsed_ns = 1000000ull,
    };
    h->cb(h->data, &r);
}

/* Answers request `i` (once). `error` may be NULL for a status answer. */
FH_FN void fh_answer(size_t i, int status, int cause, const char *error, uint64_t elapsed_ms)
{
    assert_true(i < g_fh.n_http);
    struct fh_http *h = &g_fh.http[i];
    assert_true(h->open);
    h->open = false;
    struct rd_http_response r = {
        .status = status,
        .cause = cause,
        .error = error ? error : "",
        .body = "",
        .body_len = 0,
        .elapsed_ns = elapsed_ms * 1000000ull,
    };
    h->cb(h->data, &r);
}

/* The last request sent (fails when there is none). */
FH_FN size_t fh_last(void)
{
    assert_true(g_fh.n_http > 0);
    return g_fh.n_http - 1;
}

/* Stops the instance the way the engine's host does: its timers are freed
 * and its open requests end with "cancelled" first, then stop() runs. With
 * `host_order` false, stop() runs with everything still open (a host that
 * lets late callbacks come after stop()). */
FH_FN void fh_stop(bool host_order)
{
    g_fh.stopping = true;
    if (host_order) {
        for (size_t i = 0; i < g_fh.n_timers; i++) {
            if (g_fh.timers[i].live) {
                g_fh.timers[i].live = false;
                g_fh.timers[i].freed = true;
            }
        }
        for (size_t i = 0; i < g_fh.n_http; i++)
            if (g_fh.http[i].open)
                fh_answer(i, 0, RD_PROBE_CANCELLED, "cancelled", 0);
    }
    g_fh.desc->stop(g_fh.state, fh_done);
}

/* Frees the instance's timers (the host does once stopped), runs destroy().
 * Work still queued is a failure: the engine waits for it before destroy. */
FH_FN void fh_destroy(void)
{
    assert_int_equal(g_fh.n_work, 0);
    assert_int_equal(g_fh.off_loop_calls, 0);
    for (size_t i = 0; i < g_fh.n_timers; i++)
        g_fh.timers[i].live = false;
    g_fh.desc->destroy(g_fh.state);
    fh_reset();
}

/* Fires timer `i` once (a one-shot timer is freed first, as the host does). */
FH_FN void fh_fire(size_t i)
{
    assert_true(i < g_fh.n_timers);
    struct fh_timer *t = &g_fh.timers[i];
    assert_true(t->live);
    if (t->repeat_ms == 0) {
        t->live = false;
        t->freed = true;
    }
    t->fired++;
    t->cb(t->data);
}

/* Fires every live timer once; returns how many fired. */
FH_FN size_t fh_fire_all(void)
{
    size_t n = g_fh.n_timers, fired = 0;
    for (size_t i = 0; i < n; i++) {
        if (g_fh.timers[i].live) {
            fh_fire(i);
            fired++;
        }
    }
    return fired;
}

FH_FN size_t fh_live_timers(void)
{
    size_t n = 0;
    for (size_t i = 0; i < g_fh.n_timers; i++)
        n += g_fh.timers[i].live;
    return n;
}

/* The live timer started last (fails when there is none). */
FH_FN size_t fh_last_live_timer(void)
{
    for (size_t i = g_fh.n_timers; i-- > 0;)
        if (g_fh.timers[i].live)
            return i;
    fail_msg("no live timer");
    return 0;
}

static void *fh_work_thread(void *arg)
{
    struct fh_work *w = arg;
    w->work(w->data);
    return NULL;
}

/*
 * Runs the queued work as the host's pool would: up to FH_POOL work
 * functions at once, each on a thread of its own, then their `done`s on
 * this thread in the order they were queued; again for work queued by those
 * `done`s, until none is left. Returns how many work items ran.
 */
FH_FN size_t fh_run_work(void)
{
    size_t ran = 0;
    while (g_fh.n_work > 0) {
        size_t n = g_fh.n_work < FH_POOL ? g_fh.n_work : FH_POOL;
        struct fh_work batch[FH_POOL];
        memcpy(batch, g_fh.work, n * sizeof *batch);
        memmove(g_fh.work, g_fh.work + n, (g_fh.n_work - n) * sizeof *g_fh.work);
        g_fh.n_work -= n;
        pthread_t th[FH_POOL];
        for (size_t i = 0; i < n; i++)
            assert_int_equal(pthread_create(&th[i], NULL, fh_work_thread, &batch[i]), 0);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(pthread_join(th[i], NULL), 0);
        for (size_t i = 0; i < n; i++)
            if (batch[i].done)
                batch[i].done(batch[i].data, 0);
        ran += n;
        g_fh.work_run += n;
    }
    return ran;
}

FH_FN uint64_t fh_counter(const char *name)
{
    for (size_t i = 0; i < g_fh.n_counters; i++)
        if (strcmp(g_fh.counters[i].name, name) == 0)
            return g_fh.counters[i].value;
    return 0;
}

#endif
