/*
 * The Lua policy host benchmark (tests/bench/policy/run.sh): on a real policy
 * directory, with the engine's default budget and memory limit,
 *   1. rd_policy_plan (select + the strategy's plan) per strategy and size:
 *      calls per second and per-call latency (p50, p99, max);
 *   2. reloads: rd_policy_load of the whole directory into a new host, then
 *      the swap (pointer exchange + rd_policy_free of the old host), and a
 *      plan call right after each swap.
 * Exits 1 when any plan call or reload fails, or a plan is not the one the
 * shipped select.lua and strategies give for the case.
 *
 *   bench_policy --dir POLICIES [--duration S] [--warmup S] [--reloads N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "common/util.h"
#include "policy/policy.h"
#include "recoveryd/error.h"

/* The engine's defaults (engine/config/config.c: policies.budget, .memory_limit). */
#define BUDGET_MS 50
#define MEMORY    ((size_t)64 << 20)

enum strategy { FAST, SAFE, DEGRADED };
static const char *const strategy_names[] = {"fast_recovery", "safe_recovery", "degraded_service"};

struct size {
    int tasks, nodes;
};
static const struct size sizes[] = {{1, 10}, {10, 200}, {100, 1000}};

static int failures;

/* ---- samples ------------------------------------------------------------ */

struct samples {
    uint64_t *ns;
    size_t n, cap;
};

static void add(struct samples *s, uint64_t ns)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->ns = realloc(s->ns, s->cap * sizeof(*s->ns));
        if (s->ns == NULL) {
            fprintf(stderr, "bench: out of memory\n");
            exit(2);
        }
    }
    s->ns[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* "p50 X us  p99 Y us  max Z us" (sorts the samples). */
static const char *summary(struct samples *s, char *buf, size_t len)
{
    if (s->n == 0)
        return "no samples";
    qsort(s->ns, s->n, sizeof(*s->ns), cmp_u64);
    double p50 = (double)s->ns[(s->n - 1) / 2] / 1e3,
           p99 = (double)s->ns[(s->n - 1) * 99 / 100] / 1e3, max = (double)s->ns[s->n - 1] / 1e3;
    snprintf(buf, len, "p50 %8.1f us  p99 %8.1f us  max %8.1f us", p50, p99, max);
    return buf;
}

/* ---- events and views (policies/README.md) ------------------------------ */

static void set(json_t *obj, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0) {
        fprintf(stderr, "bench: cannot build JSON (%s)\n", key);
        exit(2);
    }
}

/*
 * A node_failed event with `n` tasks: priorities 0-9 mixed, every 4th task
 * critical (none for fast_recovery: select.lua's rule 4 sends a crash with a
 * critical task to safe_recovery), 4 tasks in 5 with a checkpoint. For
 * safe_recovery the last task's checkpoint fails its checksum (rule 2).
 */
static json_t *make_event(enum strategy st, int n)
{
    json_t *tasks = json_array();
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "job-%04d", i);
        bool bad = st == SAFE && i == n - 1;
        json_t *t =
            json_pack("{s:s, s:i, s:b, s:i, s:{s:i, s:{s:s}}}", "task_id", id, "priority",
                      (i * 7) % 10, "critical", st != FAST && i % 4 == 0, "attempt", 1 + i % 3,
                      "requirements", "slots", 1 + i % 2, "labels", "zone", i % 2 ? "a" : "b");
        if (i % 5 != 4 || bad)
            set(t, "checkpoint",
                json_pack("{s:i, s:i, s:b}", "version", 10 + i, "age_ms", 1000 + 37 * i,
                          "checksum_ok", !bad));
        json_array_append_new(tasks, t);
    }
    json_t *e = json_pack("{s:s, s:{s:s, s:s, s:s, s:b, s:{s:s}}, s:{s:s, s:i, s:s, s:{s:s}, "
                          "s:{s:i}}, s:o}",
                          "kind", "node_failed", "fault", "id", "f-0001", "fault_type", "crash",
                          "severity_level", "critical", "predicted", 0, "metadata", "detector",
                          "heartbeat", "node", "node_id", "node-0000", "epoch", 7, "state",
                          "failed", "labels", "zone", "a", "capacity", "slots", 16, "tasks", tasks);
    if (e == NULL) {
        fprintf(stderr, "bench: cannot build the event\n");
        exit(2);
    }
    return e;
}

/* A view of `n` nodes (the failed one among them), the default strategies. */
static json_t *make_view(enum strategy st, int n)
{
    json_t *nodes = json_array();
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "node-%04d", i);
        int used = (i * 5) % 17;
        json_array_append_new(
            nodes, json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:i}, s:i, s:{s:i}}", "node_id", id,
                             "state", i == 0 ? "failed" : "alive", "labels", "zone",
                             i % 2 ? "a" : "b", "gpu", i % 3 ? "none" : "a100", "capacity", "slots",
                             16, "free_slots", 16 - used % 16, "load", "slots_used", used % 16));
    }
    json_t *v =
        json_pack("{s:o, s:s, s:b, s:{s:{s:i, s:i}, s:{s:i, s:b}, s:{s:b, s:i}}, s:I}", "nodes",
                  nodes, "mode", st == DEGRADED ? "degraded" : "normal", "partition_suspected",
                  st == DEGRADED, "strategies", "fast_recovery", "max_time_ms", 120000,
                  "resource_limit", 80, "safe_recovery", "max_time_ms", 600000, "consistency_check",
                  1, "degraded_service", "essential_services_only", 1, "performance_limit", 50,
                  "now_ms", (json_int_t)1764000000000LL);
    if (v == NULL) {
        fprintf(stderr, "bench: cannot build the view\n");
        exit(2);
    }
    return v;
}

/* The number of actions the shipped strategy gives for make_event(st, n). */
static size_t want_actions(enum strategy st, int n)
{
    size_t checkpoints = 0;
    for (int i = 0; i < n; i++)
        checkpoints += i % 5 != 4 || i == n - 1;
    switch (st) {
    case FAST:
        return (size_t)n;
    case SAFE:
        return checkpoints + (size_t)n;
    case DEGRADED:
        return (size_t)n + 2; /* reassign or pause each, degrade, alert */
    }
    return 0;
}

/* ---- calls ---------------------------------------------------------------- */

struct one_case {
    enum strategy st;
    struct size size;
    json_t *event, *view;
};

/* One rd_policy_plan; returns its latency, or 0 (counted) when it failed or was wrong. */
static uint64_t plan_once(struct rd_policy_host *h, const struct one_case *c)
{
    struct rd_plan plan = {0};
    char err[RD_POLICY_ERRLEN];
    uint64_t t0 = rd_mono_ns();
    int rc = rd_policy_plan(h, c->event, c->view, NULL, &plan, err, sizeof(err));
    uint64_t ns = rd_mono_ns() - t0;
    if (rc != 0) {
        if (failures++ < 10)
            fprintf(stderr, "bench: %s, %d tasks: %s: %s (after %.1f us)\n", strategy_names[c->st],
                    c->size.tasks, rd_err_name(rc), err, (double)ns / 1e3);
        return 0;
    }
    const char *got = plan.strategy;
    size_t n = plan.n;
    size_t want = want_actions(c->st, c->size.tasks);
    if (strcmp(got, strategy_names[c->st]) != 0 || n != want) {
        if (failures++ < 10)
            fprintf(stderr, "bench: expected %s with %zu actions, got %s with %zu\n",
                    strategy_names[c->st], want, got, n);
        ns = 0;
    }
    rd_plan_free(&plan);
    return ns;
}

static void bench_case(struct rd_policy_host *h, const struct one_case *c, double warmup_s,
                       double duration_s)
{
    uint64_t end = rd_mono_ns() + (uint64_t)(warmup_s * 1e9);
    while (rd_mono_ns() < end)
        plan_once(h, c);
    struct samples s = {0};
    int failed = failures;
    uint64_t t0 = rd_mono_ns();
    end = t0 + (uint64_t)(duration_s * 1e9);
    uint64_t now = t0;
    while (now < end) {
        uint64_t ns = plan_once(h, c);
        if (ns > 0)
            add(&s, ns);
        now = rd_mono_ns();
    }
    char buf[128];
    printf("%-16s %4d tasks %5d nodes  %8.0f calls/s  %s", strategy_names[c->st], c->size.tasks,
           c->size.nodes, (double)s.n / ((double)(now - t0) / 1e9), summary(&s, buf, sizeof(buf)));
    if (failures > failed)
        printf("  %d FAILED", failures - failed);
    printf("\n");
    free(s.ns);
}

/* ---- reloads -------------------------------------------------------------- */

static struct rd_policy_host *load(const char *dir)
{
    struct rd_policy_host *h = NULL;
    char err[RD_POLICY_ERRLEN];
    int rc = rd_policy_load(dir, BUDGET_MS, MEMORY, &h, err, sizeof(err));
    if (rc != 0) {
        failures++;
        fprintf(stderr, "bench: loading %s: %s: %s\n", dir, rd_err_name(rc), err);
        return NULL;
    }
    return h;
}

static long rss_kib(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * 4;
}

/*
 * `reloads` x (load a new host, swap, free the old one); with `cases`, a plan
 * call right after each swap (cycling through the cases).
 */
static struct rd_policy_host *bench_reloads(const char *dir, struct rd_policy_host *cur,
                                            int reloads, const struct one_case *cases, int ncases)
{
    struct samples total = {0}, loads = {0}, frees = {0}, plans = {0};
    const char *version = rd_policy_version(cur);
    int changed = 0;
    for (int i = 0; i < reloads; i++) {
        uint64_t t0 = rd_mono_ns();
        struct rd_policy_host *next = load(dir);
        if (next == NULL)
            continue;
        uint64_t t1 = rd_mono_ns();
        struct rd_policy_host *old = cur;
        cur = next;
        rd_policy_free(old);
        uint64_t t2 = rd_mono_ns();
        add(&loads, t1 - t0);
        add(&frees, t2 - t1);
        add(&total, t2 - t0);
        changed += strcmp(rd_policy_version(cur), version) != 0;
        version = rd_policy_version(cur);
        if (cases != NULL) {
            uint64_t ns = plan_once(cur, &cases[i % ncases]);
            if (ns > 0)
                add(&plans, ns);
        }
    }
    char buf[128];
    const char *what = cases ? "interleaved" : "reloads";
    printf("%-12s load+swap  %s  (%zu reloads)\n", what, summary(&total, buf, sizeof(buf)),
           total.n);
    printf("%-12s load       %s\n", "", summary(&loads, buf, sizeof(buf)));
    printf("%-12s free old   %s\n", "", summary(&frees, buf, sizeof(buf)));
    if (cases != NULL)
        printf("%-12s 1st plan   %s  (%zu of %d calls ok, 10 tasks / 200 nodes, each strategy)\n",
               "", summary(&plans, buf, sizeof(buf)), plans.n, reloads);
    if (changed > 0)
        printf("%-12s note: the version changed %d times (the directory was edited)\n", "",
               changed);
    free(total.ns);
    free(loads.ns);
    free(frees.ns);
    free(plans.ns);
    return cur;
}

/* ---- main ----------------------------------------------------------------- */

/* The LuaJIT the engine is linked with, as the library reports it. */
static void print_luajit(void)
{
    const char *runtime = "?";
    lua_State *L = luaL_newstate();
    if (L != NULL) {
        luaL_openlibs(L);
        lua_getglobal(L, "jit");
        lua_getfield(L, -1, "version");
        if (lua_isstring(L, -1))
            runtime = lua_tostring(L, -1);
    }
    printf("LuaJIT: %s (headers %s); the policy host runs it with the JIT off\n", runtime,
           LUAJIT_VERSION);
    if (L != NULL)
        lua_close(L);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_policy --dir POLICIES [--duration S] [--warmup S] "
                    "[--reloads N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    double duration = 3, warmup = 0.5;
    int reloads = 200;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--dir") == 0)
            dir = argv[++i];
        else if (strcmp(argv[i], "--duration") == 0)
            duration = atof(argv[++i]);
        else if (strcmp(argv[i], "--warmup") == 0)
            warmup = atof(argv[++i]);
        else if (strcmp(argv[i], "--reloads") == 0)
            reloads = atoi(argv[++i]);
        else
            usage();
    }
    if (dir == NULL || duration <= 0 || warmup < 0 || reloads < 1)
        usage();

    print_luajit();
    uint64_t t0 = rd_mono_ns();
    struct rd_policy_host *h = load(dir);
    if (h == NULL)
        return 1;
    printf("policies: %s, version %s, first load %.2f ms\n", dir, rd_policy_version(h),
           (double)(rd_mono_ns() - t0) / 1e6);
    printf("budget %d ms per call, memory limit %zu MiB (engine defaults); %.1f s per case "
           "after %.1f s of warm-up\n\n",
           BUDGET_MS, MEMORY >> 20, duration, warmup);

    struct one_case cases[RD_ARRAY_SIZE(sizes) * 3];
    int n = 0;
    for (size_t i = 0; i < RD_ARRAY_SIZE(sizes); i++)
        for (int st = FAST; st <= DEGRADED; st++, n++) {
            cases[n] = (struct one_case){st, sizes[i], make_event(st, sizes[i].tasks),
                                         make_view(st, sizes[i].nodes)};
            bench_case(h, &cases[n], warmup, duration);
        }

    long rss0 = rss_kib();
    printf("\n%d reloads of the whole directory (rd_policy_load + swap + rd_policy_free):\n",
           reloads);
    h = bench_reloads(dir, h, reloads, NULL, 0);
    /* The 10 tasks / 200 nodes cases: the three strategies. */
    h = bench_reloads(dir, h, reloads, &cases[3], 3);
    printf("RSS %ld KiB before the reloads, %ld KiB after\n", rss0, rss_kib());

    rd_policy_free(h);
    for (int i = 0; i < n; i++) {
        json_decref(cases[i].event);
        json_decref(cases[i].view);
    }
    if (failures > 0) {
        printf("FAIL: %d failed or wrong plan calls or reloads\n", failures);
        return 1;
    }
    printf("OK: no plan call or reload failed\n");
    return 0;
}
