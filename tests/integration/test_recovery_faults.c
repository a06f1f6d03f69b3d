/*
 * Recovery when things keep going wrong, end to end on the real binary:
 * - a poison task (its agents keep dying under it, or it keeps failing) is
 *   failed with a poison_task fault and an alert instead of being moved again;
 * - a run that passes its strategy's max_time ends `partial`, alerts, and
 *   its tasks go back to ordinary placement;
 * - degraded_service under a real suspected partition: the critical task
 *   moves, the others are paused (not lost) and resume with their
 *   checkpoints when the partition ends;
 * - a recovery run interrupted by kill -9 of the engine resumes from its
 *   committed records after the restart and moves every task exactly once.
 * Agents are heartbeat loops in a thread of this process. Every duration in
 * the engine's configuration, the agents' cadence and every wait scale with
 * rdt_time_factor() (tests/lib/rdt_ctest.h).
 */
#include "cmocka_all.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"

static struct rdt_proc proc;

/* ---- agents: one thread heartbeats every live agent ---------------------- */

#define MAX_AGENTS 8

static struct agent {
    char id[32];
    long long epoch;
    atomic_bool beating;
    atomic_int beats; /* heartbeats answered 200 */
} agents[MAX_AGENTS];
static atomic_int n_agents;
static int beat_ms;
static atomic_bool stop_beats;
static pthread_t beater;

static void *beat_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_beats)) {
        for (int i = 0; i < atomic_load(&n_agents); i++) {
            if (!atomic_load(&agents[i].beating))
                continue;
            struct rdt_resp r = {0};
            rdt_heartbeat(&proc, RDT_H1, agents[i].id, agents[i].epoch, 0, &r);
            if (r.status == 200)
                atomic_fetch_add(&agents[i].beats, 1);
            rdt_resp_free(&r); /* errors (an engine restarting) are retried next round */
        }
        rdt_sleep_ms(beat_ms);
    }
    return NULL;
}

static struct agent *agent_add(const char *id, int slots)
{
    int n = atomic_load(&n_agents);
    assert_true(n < MAX_AGENTS);
    struct agent *a = &agents[n];
    snprintf(a->id, sizeof(a->id), "%s", id);
    assert_int_equal(rdt_register(&proc, id, slots, &a->epoch), 0);
    atomic_store(&a->beating, true);
    atomic_store(&n_agents, n + 1); /* published after the fields */
    return a;
}

/* Waits until agent `a` has been told of what was placed on it so far: two
 * heartbeats answered from now (one may have been answered before the
 * placement committed). An agent that dies before it heard of a task is no
 * evidence against the task (poison). */
static void told(struct agent *a)
{
    int want = atomic_load(&a->beats) + 2;
    for (int64_t until = rdt_now_ms() + rdt_ms(5000); atomic_load(&a->beats) < want;) {
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(5);
    }
}

/* `yaml` with its durations scaled (rdt_scale_durations()). */
static const char *scaled(const char *yaml)
{
    static char buf[4096];
    return rdt_scale_durations(yaml, buf, sizeof(buf));
}

static int start(const char *yaml, int heartbeat_ms)
{
    memset(agents, 0, sizeof(agents));
    atomic_store(&n_agents, 0);
    beat_ms = rdt_ms(heartbeat_ms);
    atomic_store(&stop_beats, false);
    if (rdt_proc_start(&proc, scaled(yaml)) != 0 || rdt_wait_ready(&proc, 15000) != 0)
        return -1;
    return pthread_create(&beater, NULL, beat_loop, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&stop_beats, true);
    pthread_join(beater, NULL);
    if (rdt_proc_alive(&proc) && getenv("RDT_VERBOSE"))
        rdt_proc_print_log_tail(&proc, 80);
    rdt_proc_cleanup(&proc);
    memset(&proc, 0, sizeof(proc));
    return 0;
}

/* ---- API helpers ------------------------------------------------------------ */

static json_t *get_json(const char *path)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body ? r.body : "");
    json_t *j = json_incref(r.json);
    rdt_resp_free(&r);
    return j;
}

static json_t *task_get(const char *id)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s", id);
    return get_json(path);
}

static const char *sfield(json_t *j, const char *path)
{
    const char *s = json_string_value(rdt_json_path(j, path));
    return s ? s : "";
}

static void submit(const char *id, bool critical, int priority)
{
    char body[160];
    snprintf(body, sizeof(body), "{\"task_id\":\"%s\",\"critical\":%s,\"priority\":%d}", id,
             critical ? "true" : "false", priority);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", body, &r), 0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
}

/* Waits until task `id` has `state` (and, when `node` is set, is on it or,
 * with node "*", on any agent). Returns the task. */
static json_t *await_task(const char *id, const char *state, const char *node, int timeout_ms)
{
    timeout_ms = rdt_ms(timeout_ms);
    for (int64_t until = rdt_now_ms() + timeout_ms;;) {
        json_t *t = task_get(id);
        const char *on = sfield(t, "node_id");
        if (strcmp(sfield(t, "state"), state) == 0 &&
            (node == NULL || (strcmp(node, "*") == 0 ? on[0] != '\0' : strcmp(on, node) == 0)))
            return t;
        if (rdt_now_ms() > until)
            fail_msg("task %s: state %s on '%s', waited for %s on %s", id, sfield(t, "state"), on,
                     state, node ? node : "-");
        json_decref(t);
        rdt_sleep_ms(20);
    }
}

static long task_post(const char *id, const char *what, const char *body)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/%s", id, what);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, path, body, &r), 0);
    long s = r.status;
    rdt_resp_free(&r);
    return s;
}

static long checkpoint(const char *id, long long attempt, long long version)
{
    char url[200], body[128];
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", proc.base_url, id);
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":%lld,\"data\":{\"v\":%lld}}",
             attempt, version, version);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_http(RDT_H1, "PUT", url, body, strlen(body), &r), 0);
    long s = r.status;
    rdt_resp_free(&r);
    return s;
}

static long long attempt_of(json_t *t)
{
    return json_integer_value(json_object_get(t, "attempt"));
}

/* Waits until the scheduler has run `n` more passes than now: what it would
 * do on its own (resume, place), it has had every chance to do. A fixed
 * sleep would pass as well when no pass ran at all. */
static void await_sched_passes(int n)
{
    long long want = rdt_metric(&proc, "recoveryd_scheduler_passes_total") + n;
    for (int64_t until = rdt_now_ms() + rdt_ms(10000);;) {
        long long now = rdt_metric(&proc, "recoveryd_scheduler_passes_total");
        if (now >= want)
            return;
        if (rdt_now_ms() > until)
            fail_msg("the scheduler ran %lld passes in %d ms, waited for %d", now - (want - n),
                     rdt_ms(10000), n);
        rdt_sleep_ms(20);
    }
}

/* The recovery runs of `node`, newest first. */
static json_t *runs_of(const char *node)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/recovery/tasks?node_id=%s", node);
    json_t *j = get_json(path);
    json_t *items = json_incref(json_object_get(j, "items"));
    json_decref(j);
    return items;
}

static json_t *await_fault(const char *type, const char *task_id, int timeout_ms)
{
    timeout_ms = rdt_ms(timeout_ms);
    for (int64_t until = rdt_now_ms() + timeout_ms;;) {
        json_t *recs = get_json("/api/v1/faults/records");
        json_t *items = json_object_get(recs, "items"), *x;
        size_t i;
        json_array_foreach(items, i, x)
        {
            if (strcmp(sfield(x, "fault_type"), type) == 0 &&
                (task_id == NULL || strcmp(sfield(x, "metadata.task_id"), task_id) == 0)) {
                json_incref(x);
                json_decref(recs);
                return x;
            }
        }
        json_decref(recs);
        if (rdt_now_ms() > until)
            fail_msg("no %s fault for %s", type, task_id ? task_id : "-");
        rdt_sleep_ms(20);
    }
}

/* ---- poison tasks ----------------------------------------------------------- */

#define POISON_CRASH "a1a1a1a1-0000-4000-8000-000000000001"
#define POISON_FAIL  "a1a1a1a1-0000-4000-8000-000000000002"

static const char poison_yaml[] = "fault_tolerance:\n"
                                  "  detection:\n"
                                  "    heartbeat_interval: 100ms\n"
                                  "    failure_threshold: 3\n"
                                  "  partition:\n"
                                  "    min_nodes: 100\n"
                                  "  poison:\n"
                                  "    max_failures: 2\n"
                                  "    window: 1m\n"
                                  "plugins:\n"
                                  "  instances:\n"
                                  "    - {name: heartbeat, required: true}\n"
                                  "    - {name: log}\n";

static void test_poison_task_is_quarantined(void **state)
{
    (void)state;
    assert_int_equal(start(poison_yaml, 50), 0);
    /* A task that takes its agents down: a1 dies under it, it moves to a2
     * (first failure), a2 dies under it too: the second failure in the
     * window quarantines it instead of moving it to a3. */
    struct agent *a1 = agent_add("p-a1", 1);
    submit(POISON_CRASH, false, 5);
    json_decref(await_task(POISON_CRASH, "assigned", "p-a1", 5000));
    struct agent *a2 = agent_add("p-a2", 1);
    told(a1);
    atomic_store(&a1->beating, false);
    json_t *t = await_task(POISON_CRASH, "recovering", "p-a2", 10000);
    assert_int_equal(attempt_of(t), 2);
    assert_int_equal(json_integer_value(json_object_get(t, "failures")), 1);
    json_decref(t);
    agent_add("p-a3", 1);
    told(a2);
    atomic_store(&a2->beating, false);
    t = await_task(POISON_CRASH, "failed", NULL, 10000);
    assert_int_equal(attempt_of(t), 2); /* never handed to a third agent */
    assert_true(json_is_null(json_object_get(t, "node_id")) ||
                json_object_get(t, "node_id") == NULL);
    assert_non_null(strstr(sfield(t, "error"), "poison"));
    json_decref(t);
    json_t *f = await_fault("poison_task", POISON_CRASH, 5000);
    assert_string_equal(sfield(f, "status"), "open");
    assert_string_equal(sfield(f, "severity_level"), "major");
    assert_int_equal(json_integer_value(rdt_json_path(f, "metadata.failures")), 2);
    assert_string_equal(sfield(f, "metadata.last_node_id"), "p-a2");
    assert_string_equal(sfield(f, "recovery_action.action"), "quarantine");
    json_decref(f);
    assert_int_equal(rdt_await_log(&proc, "alert=PoisonTask", rdt_ms(5000)), 0);

    /* A task that keeps failing: two retryable failures in the window and
     * it is not placed a third time. */
    submit(POISON_FAIL, false, 5);
    t = await_task(POISON_FAIL, "assigned", "p-a3", 5000);
    assert_int_equal(attempt_of(t), 1);
    json_decref(t);
    assert_int_equal(
        task_post(POISON_FAIL, "fail", "{\"attempt\":1,\"error\":\"segfault\",\"retryable\":true}"),
        200);
    t = await_task(POISON_FAIL, "assigned", "p-a3", 5000);
    assert_int_equal(attempt_of(t), 2);
    json_decref(t);
    assert_int_equal(
        task_post(POISON_FAIL, "fail", "{\"attempt\":2,\"error\":\"segfault\",\"retryable\":true}"),
        200);
    t = await_task(POISON_FAIL, "failed", NULL, 5000);
    assert_int_equal(attempt_of(t), 2);
    assert_non_null(strstr(sfield(t, "error"), "poison"));
    json_decref(t);
    f = await_fault("poison_task", POISON_FAIL, 5000);
    assert_int_equal(json_integer_value(rdt_json_path(f, "metadata.failures")), 2);
    assert_string_equal(sfield(f, "metadata.last_error"), "segfault");
    json_decref(f);
    /* The quarantine is final: a stale completion is refused. */
    assert_int_equal(task_post(POISON_FAIL, "complete", "{\"attempt\":2,\"result\":{}}"), 409);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "recoveryd_poison_tasks_total 2"));
    rdt_resp_free(&r);
}

/* ---- max_time ---------------------------------------------------------------- */

#define SLOW_TASK "b2b2b2b2-0000-4000-8000-000000000001"

static const char max_time_yaml[] = "fault_tolerance:\n"
                                    "  detection:\n"
                                    "    heartbeat_interval: 100ms\n"
                                    "  recovery_strategies:\n"
                                    "    safe_recovery:\n"
                                    "      max_time: 700ms\n"
                                    "  partition:\n"
                                    "    min_nodes: 100\n"
                                    "plugins:\n"
                                    "  instances:\n"
                                    "    - {name: heartbeat, required: true}\n"
                                    "    - {name: log}\n";

static void test_run_past_max_time_ends_partial(void **state)
{
    (void)state;
    assert_int_equal(start(max_time_yaml, 50), 0);
    agent_add("m-b1", 2);
    submit(SLOW_TASK, false, 5);
    json_decref(await_task(SLOW_TASK, "assigned", "m-b1", 5000));
    agent_add("m-b2", 2);
    /* safe_recovery of an agent that keeps heartbeating: its lease never
     * runs out, so the strategy never moves the task; max_time ends it. */
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/recovery/trigger",
                              "{\"node_id\":\"m-b1\",\"strategy\":\"safe_recovery\"}", &r),
                     0);
    assert_int_equal(r.status, 202);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/recovery/tasks/%s",
             json_string_value(rdt_json_path(r.json, "recovery_id")));
    rdt_resp_free(&r);
    int64_t t0 = rdt_now_ms();
    json_t *run = NULL;
    for (int64_t until = t0 + rdt_ms(10000);;) {
        run = get_json(path);
        if (strcmp(sfield(run, "status"), "partial") == 0)
            break;
        assert_true(strcmp(sfield(run, "status"), "succeeded") != 0);
        assert_true(rdt_now_ms() < until);
        json_decref(run);
        rdt_sleep_ms(20);
    }
    assert_true(rdt_now_ms() - t0 >= rdt_ms(600)); /* not before max_time (700 ms, scaled) */
    json_t *item = json_array_get(json_object_get(run, "items"), 0);
    assert_non_null(item);
    assert_string_equal(sfield(item, "original_task_id"), SLOW_TASK);
    assert_false(json_is_true(json_object_get(item, "success")));
    assert_non_null(strstr(sfield(item, "error_message"), "max_time"));
    json_decref(run);
    assert_int_equal(rdt_await_log(&proc, "alert=RecoveryMaxTime", rdt_ms(5000)), 0);
    /* Back to ordinary placement: the draining agent gets nothing, m-b2 does. */
    json_t *t = await_task(SLOW_TASK, "assigned", "m-b2", 5000);
    assert_int_equal(attempt_of(t), 2);
    json_decref(t);
    /* No new run was opened for m-b1: it holds nothing any more. */
    json_t *runs = runs_of("m-b1");
    assert_int_equal(json_array_size(runs), 1);
    json_decref(runs);
}

/* ---- degraded_service under a partition ------------------------------------- */

#define CRIT  "c3c3c3c3-0000-4000-8000-000000000001"
#define BATCH "c3c3c3c3-0000-4000-8000-000000000002"
#define IDLE  "c3c3c3c3-0000-4000-8000-000000000003"

static const char partition_yaml[] = "fault_tolerance:\n"
                                     "  detection:\n"
                                     "    heartbeat_interval: 100ms\n"
                                     "    failure_threshold: 3\n"
                                     "  partition:\n"
                                     "    min_nodes: 4\n"
                                     "    mass_failure_share: 50%\n"
                                     "    mass_failure_window: 10s\n"
                                     "plugins:\n"
                                     "  instances:\n"
                                     "    - {name: heartbeat, required: true}\n"
                                     "    - {name: log}\n";

static bool status_flag(const char *field)
{
    json_t *st = get_json("/api/v1/faults/status");
    bool v = json_is_true(json_object_get(st, field));
    json_decref(st);
    return v;
}

static const char *mode_now(char buf[16])
{
    json_t *st = get_json("/api/v1/faults/status");
    snprintf(buf, 16, "%s", sfield(st, "mode"));
    json_decref(st);
    return buf;
}

static void await_flag(const char *field, bool want, int timeout_ms)
{
    timeout_ms = rdt_ms(timeout_ms);
    for (int64_t until = rdt_now_ms() + timeout_ms; status_flag(field) != want;) {
        if (rdt_now_ms() > until)
            fail_msg("%s never became %s", field, want ? "true" : "false");
        rdt_sleep_ms(20);
    }
}

static void await_node_state(const char *id, const char *want, int timeout_ms)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", id);
    for (int64_t until = rdt_now_ms() + rdt_ms(timeout_ms);;) {
        json_t *nj = get_json(path);
        char now[32];
        snprintf(now, sizeof(now), "%s", sfield(nj, "state"));
        json_decref(nj);
        if (strcmp(now, want) == 0)
            return;
        if (rdt_now_ms() > until)
            fail_msg("agent %s is %s, never %s", id, now, want);
        rdt_sleep_ms(20);
    }
}

static void test_degraded_service_under_partition(void **state)
{
    (void)state;
    char mode[16];
    assert_int_equal(start(partition_yaml, 50), 0);
    agent_add("d-a", 4);
    const char *ids[] = {CRIT, BATCH, IDLE};
    submit(CRIT, true, 2);
    submit(BATCH, false, 9);
    submit(IDLE, false, 0);
    for (int i = 0; i < 3; i++) {
        json_decref(await_task(ids[i], "assigned", "d-a", 5000));
        assert_int_equal(checkpoint(ids[i], 1, 1), 200);
        assert_int_equal(checkpoint(ids[i], 1, 2), 200);
    }
    struct agent *quiet[3] = {agent_add("d-b", 1), agent_add("d-c", 1), agent_add("d-d", 1)};
    agent_add("d-e", 4);
    agent_add("d-f", 4);
    /* Half the fleet goes silent at once: a partition, not three crashes. */
    for (int i = 0; i < 3; i++)
        atomic_store(&quiet[i]->beating, false);
    await_flag("partition_suspected", true, 10000);
    /* The log names how many agents tripped the guard (it said suspect=0). */
    assert_int_equal(rdt_await_log(&proc, "event=partition_suspected affected=", rdt_ms(5000)), 0);
    assert_false(rdt_proc_log_has(&proc, "event=partition_suspected affected=0 "));
    assert_false(rdt_proc_log_has(&proc, "event=partition_suspected affected=1 "));
    assert_string_equal(mode_now(mode), "degraded");
    /* The guard trips on the silent agents' lateness, which can come before
     * their suspect verdicts. Under the sanitizers the critical task once
     * went to an agent other than d-e and d-f (CI, 2026-12-04; which one
     * was not printed then): most likely a silent agent still `alive` in
     * between, since placement took alive agents and a late one still is.
     * Placement now keeps off agents the detectors hold in trouble before
     * their transitions commit (rd_analysis_troubled; unit/recover/placement
     * tests that deterministically). The scenario here is the drain once
     * the engine holds them suspect. */
    for (int i = 0; i < 3; i++)
        await_node_state(quiet[i]->id, "suspect", 10000);
    /* The operator drains d-a during the partition: select picks
     * degraded_service; only the critical task moves, the others pause. */
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes/d-a/drain", "{}", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    json_t *t = await_task(CRIT, "recovering", "*", 5000);
    assert_int_equal(attempt_of(t), 2);
    const char *on = sfield(t, "node_id");
    if (strcmp(on, "d-e") != 0 && strcmp(on, "d-f") != 0) {
        rdt_proc_print_log_tail(&proc, 60);
        fail_msg("the critical task moved to '%s', not to d-e or d-f (the agents still beating)",
                 on);
    }
    json_decref(t);
    for (int i = 1; i < 3; i++) {
        t = await_task(ids[i], "paused", "d-a", 5000);
        assert_int_equal(attempt_of(t), 1);
        assert_int_equal(json_integer_value(rdt_json_path(t, "checkpoint.version")), 2);
        json_decref(t);
    }
    json_t *runs = runs_of("d-a");
    assert_int_equal(json_array_size(runs), 1);
    json_t *run = json_array_get(runs, 0);
    json_t *item = json_array_get(json_object_get(run, "items"), 0);
    assert_int_equal(json_array_size(json_object_get(run, "items")), 1);
    assert_string_equal(sfield(item, "original_task_id"), CRIT);
    assert_string_equal(sfield(item, "recovery_strategy"), "degraded_service");
    json_decref(runs);
    assert_int_equal(rdt_await_log(&proc, "alert=RecoveryPolicy", rdt_ms(5000)), 0);
    /* Still partitioned: the paused tasks stay paused. */
    await_sched_passes(5); /* several recovery passes: nothing may resume them */
    for (int i = 1; i < 3; i++)
        json_decref(await_task(ids[i], "paused", "d-a", 0));
    assert_string_equal(mode_now(mode), "degraded");

    /* The partition heals: the silent agents are back. */
    for (int i = 0; i < 3; i++)
        atomic_store(&quiet[i]->beating, true);
    await_flag("partition_suspected", false, 10000);
    for (int i = 1; i < 3; i++) {
        t = await_task(ids[i], "assigned", "*", 5000);
        assert_int_equal(attempt_of(t), 2);
        on = sfield(t, "node_id");
        assert_true(strcmp(on, "d-a") != 0); /* d-a is draining */
        /* Nothing lost: the new attempt resumes from version 2. */
        assert_int_equal(json_integer_value(rdt_json_path(t, "checkpoint.version")), 2);
        json_decref(t);
        assert_int_equal(checkpoint(ids[i], 2, 3), 200);
        assert_int_equal(checkpoint(ids[i], 1, 4), 409); /* the old attempt is fenced */
    }
    assert_string_equal(mode_now(mode), "normal");
}

/* ---- a run interrupted by an engine restart ---------------------------------- */

static const char restart_yaml[] = "fault_tolerance:\n"
                                   "  detection:\n"
                                   "    heartbeat_interval: 1s\n"
                                   "    failure_threshold: 3\n"
                                   "  partition:\n"
                                   "    min_nodes: 100\n"
                                   "plugins:\n"
                                   "  instances:\n"
                                   "    - {name: heartbeat, required: true}\n";

static void test_run_interrupted_by_restart_moves_once(void **state)
{
    (void)state;
    assert_int_equal(start(restart_yaml, 250), 0);
    struct agent *a = agent_add("r-a", 4);
    const char *ids[] = {"d4d4d4d4-0000-4000-8000-000000000001",
                         "d4d4d4d4-0000-4000-8000-000000000002",
                         "d4d4d4d4-0000-4000-8000-000000000003"};
    for (int i = 0; i < 3; i++) {
        submit(ids[i], true, 5);
        json_decref(await_task(ids[i], "assigned", "r-a", 5000));
        assert_int_equal(checkpoint(ids[i], 1, 7), 200);
    }
    agent_add("r-b", 4);
    /* r-a crashes. Its tasks are critical, so select picks safe_recovery,
     * which waits out r-a's lease (3 s) + 1 s after the failure is seen. */
    atomic_store(&a->beating, false);
    json_t *runs = NULL;
    for (int64_t until = rdt_now_ms() + rdt_ms(15000);;) {
        runs = runs_of("r-a");
        if (json_array_size(runs) > 0)
            break;
        assert_true(rdt_now_ms() < until);
        json_decref(runs);
        rdt_sleep_ms(10);
    }
    /* The run is committed and has moved nothing yet: kill the engine. */
    json_t *run = json_array_get(runs, 0);
    char rid[64];
    snprintf(rid, sizeof(rid), "%s", sfield(run, "recovery_id"));
    assert_int_equal(json_array_size(json_object_get(run, "items")), 0);
    json_decref(runs);
    for (int i = 0; i < 3; i++) {
        json_t *t = task_get(ids[i]);
        assert_int_equal(attempt_of(t), 1);
        json_decref(t);
    }
    assert_int_equal(rdt_proc_kill9(&proc), 0);
    assert_int_equal(rdt_proc_restart(&proc), 0);
    assert_int_equal(rdt_wait_ready(&proc, 15000), 0);

    /* The same run finishes after the restart: every task moved once. */
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/recovery/tasks/%s", rid);
    for (int64_t until = rdt_now_ms() + rdt_ms(20000);;) {
        run = get_json(path);
        if (strcmp(sfield(run, "status"), "succeeded") == 0)
            break;
        assert_true(rdt_now_ms() < until);
        json_decref(run);
        rdt_sleep_ms(50);
    }
    json_t *items = json_object_get(run, "items");
    assert_int_equal(json_array_size(items), 3);
    for (int i = 0; i < 3; i++) {
        int seen = 0;
        size_t k;
        json_t *it;
        json_array_foreach(items, k, it)
        {
            seen += strcmp(sfield(it, "original_task_id"), ids[i]) == 0;
            assert_string_equal(sfield(it, "recovery_strategy"), "safe_recovery");
            assert_string_equal(sfield(it, "recovery_node_id"), "r-b");
        }
        assert_int_equal(seen, 1);
        json_t *t = task_get(ids[i]);
        assert_int_equal(attempt_of(t), 2);
        assert_string_equal(sfield(t, "node_id"), "r-b");
        assert_int_equal(json_integer_value(rdt_json_path(t, "checkpoint.version")), 7);
        json_decref(t);
    }
    json_decref(run);
    runs = runs_of("r-a");
    assert_int_equal(json_array_size(runs), 1);
    json_decref(runs);
}

/* ---- a policy's isolate action ----------------------------------------------- */

static const char isolator_select[] = "local M = { name = 'select' }\n"
                                      "function M.select(event, view) return 'isolator' end\n"
                                      "function M.self_test() end\n"
                                      "return M\n";
/* Moves the lost agent's tasks and isolates every agent labelled
 * role=accomplice that is not isolated yet. */
static const char isolator_plan[] =
    "local M = { name = 'isolator' }\n"
    "function M.plan(event, view)\n"
    "  local actions = {}\n"
    "  for _, t in ipairs(event.tasks) do\n"
    "    actions[#actions + 1] = { action = 'reassign', task_id = t.task_id }\n"
    "  end\n"
    "  for _, n in ipairs(view.nodes) do\n"
    "    if n.labels.role == 'accomplice' and n.state ~= 'isolated' then\n"
    "      actions[#actions + 1] = { action = 'isolate', node_id = n.node_id }\n"
    "    end\n"
    "  end\n"
    "  return { actions = actions }\n"
    "end\n"
    "function M.self_test() end\n"
    "return M\n";

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

static void test_policy_isolates_a_node(void **state)
{
    (void)state;
    memset(agents, 0, sizeof(agents));
    atomic_store(&n_agents, 0);
    beat_ms = rdt_ms(50);
    atomic_store(&stop_beats, false);
    assert_int_equal(rdt_proc_prepare(&proc), 0);
    snprintf(proc.policies_dir, sizeof(proc.policies_dir), "%s/policies", proc.dir);
    assert_int_equal(mkdir(proc.policies_dir, 0755), 0);
    write_file(proc.policies_dir, "select.lua", isolator_select);
    write_file(proc.policies_dir, "isolator.lua", isolator_plan);
    assert_int_equal(rdt_proc_start(&proc, scaled(max_time_yaml)), 0);
    assert_int_equal(rdt_wait_ready(&proc, 15000), 0);
    assert_int_equal(pthread_create(&beater, NULL, beat_loop, NULL), 0);

    struct agent *x = agent_add("i-x", 2);
    const char *task = "e5e5e5e5-0000-4000-8000-000000000001";
    submit(task, false, 5);
    json_decref(await_task(task, "assigned", "i-x", 5000));
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes",
                              "{\"node_id\":\"i-y\",\"capacity\":{\"slots\":2},"
                              "\"labels\":{\"role\":\"accomplice\"}}",
                              &r),
                     0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    agent_add("i-z", 2);
    atomic_store(&x->beating, false);
    json_t *y = NULL;
    for (int64_t until = rdt_now_ms() + rdt_ms(10000);;) {
        y = get_json("/api/v1/nodes/i-y");
        if (strcmp(sfield(y, "state"), "isolated") == 0)
            break;
        assert_true(rdt_now_ms() < until);
        json_decref(y);
        rdt_sleep_ms(20);
    }
    json_decref(y);
    assert_int_equal(rdt_await_log(&proc, "event=isolate node=i-y strategy=isolator", rdt_ms(5000)),
                     0);
    /* The task ends on the one agent left working. */
    json_t *t = await_task(task, "recovering", "i-z", 10000);
    json_decref(t);
}

/* ---- placement by labels ------------------------------------------------------------ */

static struct agent *agent_add_labelled(const char *id, int slots, const char *labels)
{
    int n = atomic_load(&n_agents);
    assert_true(n < MAX_AGENTS);
    struct agent *a = &agents[n];
    snprintf(a->id, sizeof(a->id), "%s", id);
    char body[256];
    snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":%d},\"labels\":%s}",
             id, slots, labels);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes", body, &r), 0);
    assert_int_equal(r.status, 201);
    a->epoch = json_integer_value(json_object_get(r.json, "epoch"));
    rdt_resp_free(&r);
    atomic_store(&a->beating, true);
    atomic_store(&n_agents, n + 1);
    return a;
}

static void submit_labelled(const char *id, const char *labels)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"task_id\":\"%s\",\"requirements\":{\"slots\":1,\"labels\":%s}}", id, labels);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", body, &r), 0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
}

/* A task goes only to an agent whose labels include all of its own, and
 * waits (pending) until one exists; also when it has to move. */
static void test_placement_follows_labels(void **state)
{
    (void)state;
    assert_int_equal(start(max_time_yaml, 50), 0);
    agent_add_labelled("lab-cpu", 4, "{\"zone\":\"a\",\"accel\":\"none\"}");
    struct agent *g1 = agent_add_labelled("lab-gpu1", 4, "{\"zone\":\"a\",\"accel\":\"gpu\"}");
    const char *gpu = "f6f6f6f6-0000-4000-8000-000000000001",
               *tpu = "f6f6f6f6-0000-4000-8000-000000000002",
               *any = "f6f6f6f6-0000-4000-8000-000000000003";
    submit_labelled(gpu, "{\"accel\":\"gpu\"}");
    submit_labelled(tpu, "{\"accel\":\"tpu\",\"zone\":\"a\"}");
    submit_labelled(any, "{\"zone\":\"a\"}");
    json_decref(await_task(gpu, "assigned", "lab-gpu1", 5000));
    json_decref(await_task(any, "assigned", "*", 5000));
    /* No agent has accel=tpu: the task waits, several passes later too. */
    await_sched_passes(5);
    json_decref(await_task(tpu, "pending", NULL, 0));
    agent_add_labelled("lab-tpu", 1, "{\"zone\":\"a\",\"accel\":\"tpu\",\"extra\":\"yes\"}");
    json_decref(await_task(tpu, "assigned", "lab-tpu", 5000));
    /* The GPU agent dies: its task moves only to another GPU agent. */
    agent_add_labelled("lab-gpu2", 4, "{\"accel\":\"gpu\"}");
    atomic_store(&g1->beating, false);
    json_t *t = await_task(gpu, "recovering", "lab-gpu2", 10000);
    assert_int_equal(attempt_of(t), 2);
    json_decref(t);
}

/* ---- policy reloads under load -------------------------------------------------- */

static atomic_long load_ok, load_bad;

static void *load_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_beats)) {
        struct rdt_resp r = {0};
        int rc = rdt_get(&proc, RDT_H2, "/api/v1/nodes", &r);
        if (rc == 0 && r.status == 200)
            atomic_fetch_add(&load_ok, 1);
        else
            atomic_fetch_add(&load_bad, 1);
        rdt_resp_free(&r);
    }
    return NULL;
}

static void copy_policy(const char *dir, const char *name, const char *extra)
{
    char src[600], buf[65536];
    snprintf(src, sizeof(src), "%s/policies/%s", RD_SOURCE_DIR, name);
    FILE *in = fopen(src, "rb");
    assert_non_null(in);
    size_t n = fread(buf, 1, sizeof(buf) - 1, in);
    fclose(in);
    buf[n] = '\0';
    char text[70000];
    snprintf(text, sizeof(text), "%s%s", buf, extra);
    write_file(dir, name, text);
}

static void test_reloads_under_load_drop_nothing(void **state)
{
    (void)state;
    memset(agents, 0, sizeof(agents));
    atomic_store(&n_agents, 0);
    beat_ms = rdt_ms(20);
    atomic_store(&stop_beats, false);
    assert_int_equal(rdt_proc_prepare(&proc), 0);
    snprintf(proc.policies_dir, sizeof(proc.policies_dir), "%s/policies", proc.dir);
    assert_int_equal(mkdir(proc.policies_dir, 0755), 0);
    const char *names[] = {"select.lua", "fast_recovery.lua", "safe_recovery.lua",
                           "degraded_service.lua"};
    for (int i = 0; i < 4; i++)
        copy_policy(proc.policies_dir, names[i], "");
    assert_int_equal(rdt_proc_start(&proc, scaled(max_time_yaml)), 0);
    assert_int_equal(rdt_wait_ready(&proc, 15000), 0);
    assert_int_equal(pthread_create(&beater, NULL, beat_loop, NULL), 0);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof(id), "l-%d", i);
        agent_add(id, 2);
    }
    atomic_store(&load_ok, 0);
    atomic_store(&load_bad, 0);
    pthread_t loader;
    assert_int_equal(pthread_create(&loader, NULL, load_loop, NULL), 0);
    /* 20 reloads that each change the version, half by SIGHUP, half by
     * the API, while heartbeats and reads keep coming. */
    for (int k = 1; k <= 20; k++) {
        /* Some reads between two reloads, so they overlap the swaps. */
        for (long seen = atomic_load(&load_ok); atomic_load(&load_ok) < seen + 3;)
            rdt_sleep_ms(1);
        char extra[64];
        snprintf(extra, sizeof(extra), "\n-- edit %d\n", k);
        copy_policy(proc.policies_dir, "fast_recovery.lua", extra);
        if (k % 2) {
            assert_int_equal(rdt_proc_signal(&proc, SIGHUP), 0);
        } else {
            struct rdt_resp r = {0};
            assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/policies/reload", NULL, &r), 0);
            assert_int_equal(r.status, 200);
            rdt_resp_free(&r);
        }
        char want[64];
        snprintf(want, sizeof(want), "recoveryd_policy_reloads_total{result=\"ok\"} %d", k);
        for (int64_t until = rdt_now_ms() + rdt_ms(5000);;) {
            struct rdt_resp r = {0};
            assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &r), 0);
            bool done = r.body != NULL && strstr(r.body, want) != NULL;
            rdt_resp_free(&r);
            if (done)
                break;
            assert_true(rdt_now_ms() < until);
            rdt_sleep_ms(5);
        }
    }
    atomic_store(&stop_beats, true);
    pthread_join(loader, NULL);
    fprintf(stderr, "reads during 20 reloads: %ld ok, %ld not\n", atomic_load(&load_ok),
            atomic_load(&load_bad));
    assert_true(atomic_load(&load_ok) >= 60);
    assert_int_equal(atomic_load(&load_bad), 0);
    /* Every agent stayed alive: no heartbeat was lost to a reload. */
    json_t *nodes = get_json("/api/v1/nodes");
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(nodes, "items"), i, n)
        assert_string_equal(sfield(n, "state"), "alive");
    json_decref(nodes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_poison_task_is_quarantined, teardown),
        cmocka_unit_test_teardown(test_run_past_max_time_ends_partial, teardown),
        cmocka_unit_test_teardown(test_degraded_service_under_partition, teardown),
        cmocka_unit_test_teardown(test_run_interrupted_by_restart_moves_once, teardown),
        cmocka_unit_test_teardown(test_policy_isolates_a_node, teardown),
        cmocka_unit_test_teardown(test_reloads_under_load_drop_nothing, teardown),
        cmocka_unit_test_teardown(test_placement_follows_labels, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
