/*
 * Work that moves while its agents live, end to end: one real engine
 * (shipped policies) and six agents simulated here over HTTP, each
 * heartbeating (with metrics), taking its assignments, writing a checkpoint
 * of every task it runs every few heartbeats, and dropping what the engine
 * revokes; an agent the engine fences (409) is dead.
 *
 * Predicted faults: one agent's latency_ms ramps toward the metrics
 * plugin's limit; the trend predicts it, select.lua's predicted hook drains
 * the agent, and every task it held moves, with the last checkpoint it
 * wrote, before the engine fails it.
 *
 * Rebalancing: 30 low-priority tasks spread over 6 agents of 10 slots; a storm takes 3
 * agents down (their heartbeats stop) and their tasks recover onto the other
 * three, which end full; the three register again, empty. Rebalancing
 * (running tasks move at their next checkpoint, as the shipped rebalance
 * hook allows for priorities up to 4) must bring every agent to within 10%
 * of even load (4-6 of 10 slots) in bounded time; no task may be
 * interrupted more than once in all (the storm's move or the rebalance's),
 * and each moved task resumes from the last checkpoint its previous attempt
 * wrote (none lost). Times scale with rdt_time_factor().
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rdt_ctest.h"

#define AGENTS 6
#define SLOTS  10
#define TASKS  30

static const char yaml_1x[] = "fault_tolerance:\n"
                              "  detection:\n"
                              "    heartbeat_interval: 200ms\n"
                              /* 3 s of silence: one thread drives six agents,
                               * and a round can take a second on a loaded
                               * CI machine (a healthy agent was failed at 5). */
                              "    failure_threshold: 15\n"
                              "  partition:\n"
                              "    min_nodes: 100\n"
                              "  rebalance:\n"
                              "    skew_threshold: 20%\n"
                              "    moves_per_minute: 600\n"
                              "    cooldown: 1m\n"
                              "    checkpoint_wait: 5s\n"
                              "  prediction:\n"
                              "    drains_per_minute: 10\n"
                              "plugins:\n"
                              "  instances:\n"
                              "    - {name: heartbeat, required: true}\n"
                              "    - {name: metrics, config: {predict_window: 10}}\n";

static char yaml[1024];
static struct rdt_proc proc;

struct held {
    char id[40];
    long long attempt;
    long long version;
};

struct agent {
    char id[16];
    long long epoch;
    bool up;
    double latency_ms; /* reported in its heartbeats' metrics */
    double ramp;       /* added to latency_ms at each heartbeat */
    int64_t fenced_at; /* when the engine fenced it, 0 before */
    struct held tasks[SLOTS * 2];
    unsigned n;
};

struct task {
    char id[40];
    long long last_version; /* the last checkpoint the engine accepted */
    long long last_attempt;
    unsigned interruptions; /* attempts taken away: revoked, or died with their agent */
    int64_t revoked_at;     /* the last revocation's time */
    bool lost_checkpoint;   /* a new attempt resumed from an older version */
};

static struct agent agents[AGENTS];
static struct task tasks[TASKS];
static int hb_ms;

static int setup(void **state)
{
    (void)state;
    memset(agents, 0, sizeof(agents));
    memset(tasks, 0, sizeof(tasks));
    rdt_scale_durations(yaml_1x, yaml, sizeof(yaml));
    hb_ms = rdt_ms(100); /* a round: every agent's heartbeat and checkpoints, then this */
    if (rdt_proc_start(&proc, yaml) != 0)
        return -1;
    return rdt_wait_ready(&proc, 15000);
}

static int teardown(void **state)
{
    (void)state;
    rdt_proc_cleanup(&proc);
    return 0;
}

static struct task *task_of(const char *id)
{
    for (int i = 0; i < TASKS; i++)
        if (strcmp(tasks[i].id, id) == 0)
            return &tasks[i];
    fail_msg("unknown task %s", id);
    return NULL;
}

static void drop(struct agent *a, unsigned k)
{
    a->tasks[k] = a->tasks[--a->n];
}

static void checkpoint(struct held *h)
{
    char url[160], body[160];
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", proc.base_url, h->id);
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":%lld,\"data\":{\"v\":%lld}}",
             h->attempt, h->version + 1, h->version + 1);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_http(RDT_H2, "PUT", url, body, strlen(body), &r), 0);
    if (r.status == 200) {
        h->version++;
        struct task *t = task_of(h->id);
        t->last_version = h->version;
        t->last_attempt = h->attempt;
    } else {
        assert_int_equal(r.status, 409); /* fenced: moved meanwhile; the answer says */
    }
    rdt_resp_free(&r);
}

/* One heartbeat of agent `a`: new assignments start (from the checkpoint
 * handed over), revoked attempts stop. */
static void heartbeat(struct agent *a)
{
    a->latency_ms += a->ramp;
    char path[64], body[256];
    snprintf(path, sizeof(path), "/api/v1/nodes/%s/heartbeat", a->id);
    snprintf(body, sizeof(body),
             "{\"epoch\":%lld,\"load\":{\"slots_used\":%u},\"metrics\":{\"error_rate\":0.01,"
             "\"latency_ms\":%.1f,\"cpu\":0.3,\"mem\":0.4}}",
             a->epoch, a->n, a->latency_ms > 0 ? a->latency_ms : 20.0);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H2, path, body, &r), 0);
    if (r.status == 409 && a->ramp > 0) { /* the degrading agent is failed: it dies */
        a->up = false;
        a->fenced_at = rdt_now_ms();
        for (unsigned k = 0; k < a->n; k++)
            task_of(a->tasks[k].id)->interruptions++;
        a->n = 0;
        rdt_resp_free(&r);
        return;
    }
    if (r.status != 200) {
        rdt_proc_print_log_tail(&proc, 40);
        fail_msg("heartbeat of %s: %ld %s", a->id, r.status, r.body ? r.body : "");
    }
    json_t *rev;
    size_t i;
    json_array_foreach(json_object_get(r.json, "revocations"), i, rev)
    {
        const char *id = json_string_value(json_object_get(rev, "task_id"));
        long long attempt = json_integer_value(json_object_get(rev, "attempt"));
        for (unsigned k = 0; k < a->n; k++)
            if (strcmp(a->tasks[k].id, id) == 0 && a->tasks[k].attempt == attempt) {
                task_of(id)->interruptions++;
                task_of(id)->revoked_at = rdt_now_ms();
                drop(a, k);
                break;
            }
    }
    json_t *as;
    json_array_foreach(json_object_get(r.json, "assignments"), i, as)
    {
        const char *id = json_string_value(json_object_get(as, "task_id"));
        long long attempt = json_integer_value(json_object_get(as, "attempt"));
        bool have = false;
        for (unsigned k = 0; k < a->n; k++)
            have |= strcmp(a->tasks[k].id, id) == 0 && a->tasks[k].attempt == attempt;
        if (have)
            continue;
        assert_true(a->n < SLOTS * 2);
        struct held *h = &a->tasks[a->n++];
        snprintf(h->id, sizeof(h->id), "%s", id);
        h->attempt = attempt;
        h->version = json_integer_value(rdt_json_path(as, "checkpoint.version"));
        struct task *t = task_of(id);
        if (attempt > 1 && h->version < t->last_version)
            t->lost_checkpoint = true;
    }
    rdt_resp_free(&r);
}

/* One round: every agent that is up heartbeats, and every third round
 * checkpoints each task it runs. */
static void round_of(unsigned n)
{
    for (int i = 0; i < AGENTS; i++) {
        if (!agents[i].up)
            continue;
        heartbeat(&agents[i]);
        for (unsigned k = 0; n % 3 == 0 && k < agents[i].n; k++)
            checkpoint(&agents[i].tasks[k]);
    }
}

/* Slots used per agent, as the engine sees them (its tasks: one slot each). */
static void used_by_agent(int used[AGENTS])
{
    for (int i = 0; i < AGENTS; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/nodes/%s", agents[i].id);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
        assert_int_equal(r.status, 200);
        used[i] = (int)json_integer_value(json_object_get(r.json, "tasks")); /* 1 slot each */
        rdt_resp_free(&r);
    }
}

static bool even(const int used[AGENTS], int lo, int hi)
{
    for (int i = 0; i < AGENTS; i++)
        if (used[i] < lo || used[i] > hi)
            return false;
    return true;
}

/* Rounds until `done` (checked every fifth round) or the deadline. */
static bool rounds_until(unsigned *n, int timeout_ms, bool (*done)(void))
{
    for (int64_t until = rdt_now_ms() + rdt_ms(timeout_ms); rdt_now_ms() < until;) {
        round_of((*n)++);
        if (done != NULL && *n % 5 == 0 && done())
            return true;
        rdt_sleep_ms(hb_ms);
    }
    return done == NULL;
}

static bool all_placed(void)
{
    unsigned held = 0;
    for (int i = 0; i < AGENTS; i++)
        held += agents[i].up ? agents[i].n : 0;
    return held == TASKS;
}

static bool survivors_full(void)
{
    int used[AGENTS];
    used_by_agent(used);
    return all_placed() && used[0] + used[1] + used[2] == TASKS;
}

static bool balanced(void)
{
    int used[AGENTS];
    used_by_agent(used);
    /* Even is 5 of 10 slots: within 10% is 4 to 6. */
    return all_placed() && even(used, 4, 6);
}

static void report_failure(void)
{
    int used[AGENTS];
    used_by_agent(used);
    char *log = rdt_proc_log(&proc);
    for (char *line = log ? strtok(log, "\n") : NULL; line != NULL; line = strtok(NULL, "\n"))
        if (strstr(line, "comp=rebalance") != NULL || strstr(line, "comp=recovery") != NULL ||
            strstr(line, "level=warn") != NULL)
            fprintf(stderr, "%s\n", line);
    free(log);
    fail_msg("not balanced: slots used %d %d %d %d %d %d", used[0], used[1], used[2], used[3],
             used[4], used[5]);
}

/* Six agents registered and heartbeating, 30 tasks spread 5 per agent. */
static void start_fleet(unsigned *n)
{
    for (int i = 0; i < AGENTS; i++) {
        snprintf(agents[i].id, sizeof(agents[i].id), "agent-%d", i);
        assert_int_equal(rdt_register(&proc, agents[i].id, SLOTS, &agents[i].epoch), 0);
        agents[i].up = true;
    }
    round_of(1);
    for (int i = 0; i < TASKS; i++) {
        snprintf(tasks[i].id, sizeof(tasks[i].id), "0000aaaa-0000-4000-8000-%012d", i);
        char body[128];
        snprintf(body, sizeof(body), "{\"task_id\":\"%s\",\"priority\":3}", tasks[i].id);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", body, &r), 0);
        assert_int_equal(r.status, 201);
        rdt_resp_free(&r);
    }
    if (!rounds_until(n, 10000, balanced))
        report_failure();
}

static struct agent *sick;

static bool sick_gone(void)
{
    return !sick->up;
}

/* Agent 2's latency ramps by 100 ms a heartbeat past the 5000 ms limit: its
 * five tasks move with their checkpoints before the engine fails it. */
static void test_predicted_fault_moves_tasks_first(void **state)
{
    (void)state;
    unsigned n = 0;
    start_fleet(&n);
    rounds_until(&n, 1000, NULL); /* baselines: at least min_samples each */
    sick = &agents[2];
    char held[SLOTS][40];
    unsigned n_held = sick->n;
    for (unsigned k = 0; k < n_held; k++)
        snprintf(held[k], sizeof(held[k]), "%s", sick->tasks[k].id);
    sick->latency_ms = 20;
    sick->ramp = 100;
    if (!rounds_until(&n, 30000, sick_gone))
        fail_msg("the degrading agent was not failed (latency %.0f ms)", sick->latency_ms);
    for (int i = 0; i < 10; i++, n++) {
        round_of(n);
        rdt_sleep_ms(hb_ms);
    }
    assert_int_equal(n_held, 5);
    for (unsigned k = 0; k < n_held; k++) {
        const struct task *t = task_of(held[k]);
        if (t->revoked_at == 0 || t->revoked_at >= sick->fenced_at || t->lost_checkpoint ||
            t->interruptions != 1)
            fail_msg("task %s: revoked at %lld, agent failed at %lld, interruptions %u, "
                     "checkpoint lost %d",
                     t->id, (long long)t->revoked_at, (long long)sick->fenced_at, t->interruptions,
                     t->lost_checkpoint);
    }
    fprintf(stderr, "the degrading agent's tasks moved %lld ms before it failed\n",
            (long long)(sick->fenced_at - task_of(held[0])->revoked_at));
    assert_true(all_placed());
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "recoveryd_predicted_faults_total{outcome=\"drained\"} 1\n"));
    rdt_resp_free(&r);
}

static void test_fleet_converges_after_a_storm(void **state)
{
    (void)state;
    unsigned n = 0;
    start_fleet(&n);

    /* The storm: agents 3-5 stop; their tasks recover onto 0-2. */
    for (int i = 3; i < AGENTS; i++) {
        for (unsigned k = 0; k < agents[i].n; k++)
            task_of(agents[i].tasks[k].id)->interruptions++; /* died with its agent */
        agents[i].up = false;
        agents[i].n = 0;
    }
    assert_true(rounds_until(&n, 20000, survivors_full));

    /* They come back, empty: rebalancing evens the fleet out. */
    int64_t back = rdt_now_ms();
    for (int i = 3; i < AGENTS; i++) {
        assert_int_equal(rdt_register(&proc, agents[i].id, SLOTS, &agents[i].epoch), 0);
        agents[i].up = true;
    }
    if (!rounds_until(&n, 30000, balanced))
        report_failure();
    fprintf(stderr, "balanced %lld ms after the agents came back\n",
            (long long)(rdt_now_ms() - back));
    /* A few more rounds: any late move would show in the counts below. */
    for (int i = 0; i < 10; i++, n++) {
        round_of(n);
        rdt_sleep_ms(hb_ms);
    }
    for (int i = 0; i < TASKS; i++) {
        if (tasks[i].interruptions > 1 || tasks[i].lost_checkpoint)
            fail_msg("task %s: interrupted %u times, checkpoint lost: %d", tasks[i].id,
                     tasks[i].interruptions, tasks[i].lost_checkpoint);
    }
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &r), 0);
    const char *m = r.body;
    assert_non_null(strstr(m, "recoveryd_rebalance_moves_total{kind=\"running\"}"));
    assert_null(strstr(m, "recoveryd_rebalance_moves_total{kind=\"running\"} 0\n"));
    assert_non_null(strstr(m, "recoveryd_rebalance_policy_errors_total 0\n"));
    rdt_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_predicted_fault_moves_tasks_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_converges_after_a_storm, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
