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
 *
 * Both again on three replicas, the agents talking to whichever answers
 * (following redirects to the leader), with the leader killed while the
 * work moves: the new leader finishes the rebalancing with still no task
 * interrupted twice and no checkpoint lost, and the rebalancing rate limit
 * holds across the change (the audited moves of both leaders fit one token
 * bucket); a second prediction right after the first drain is held by the
 * new leader (drains_per_minute 1 holds across the change: one drain in
 * all), and that agent's tasks recover when it fails, none lost.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"

#define AGENTS 6
#define SLOTS  10
#define TASKS  30

/* A format: the rebalancing rate, its checkpoint wait, the drain rate. */
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
                              "    skew_threshold: 20%%\n"
                              "    moves_per_minute: %d\n"
                              "    cooldown: 1m\n"
                              "    checkpoint_wait: %dms\n"
                              "  prediction:\n"
                              "    drains_per_minute: %d\n"
                              "plugins:\n"
                              "  instances:\n"
                              "    - {name: heartbeat, required: true}\n"
                              "    - {name: metrics, config: {predict_window: 10}}\n";

/* On three replicas the rate limits are low enough that a leader change in
 * the middle of the moves shows whether they hold across it. */
#define CLUSTER_MOVES_PER_MINUTE 30
#define CLUSTER_CHECKPOINT_WAIT  3000

static char yaml[2048];
static struct rdt_proc proc;       /* one engine, */
static struct rdt_cluster cluster; /* or three replicas (cluster.n == 3) */
static int first_replica;          /* the replica that answered last */

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
    unsigned interruptions;   /* attempts taken away: revoked, or died with their agent */
    int64_t revoked_at;       /* the last revocation's time */
    int64_t first_revoked_at; /* the first one's */
    bool lost_checkpoint;     /* a new attempt resumed from an older version */
};

static struct agent agents[AGENTS];
static struct task tasks[TASKS];
static int hb_ms;

static int setup(void **state)
{
    (void)state;
    memset(agents, 0, sizeof(agents));
    memset(tasks, 0, sizeof(tasks));
    char text[2048];
    snprintf(text, sizeof(text), yaml_1x, 600, 5000, 10);
    rdt_scale_durations(text, yaml, sizeof(yaml));
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

/* Three replicas, with the cluster's rate limits. */
static int setup_cluster(void **state)
{
    (void)state;
    memset(agents, 0, sizeof(agents));
    memset(tasks, 0, sizeof(tasks));
    char text[2048];
    snprintf(text, sizeof(text), yaml_1x, CLUSTER_MOVES_PER_MINUTE, CLUSTER_CHECKPOINT_WAIT, 1);
    rdt_scale_durations(text, yaml, sizeof(yaml));
    hb_ms = rdt_ms(100);
    first_replica = 0;
    return rdt_cluster_start(&cluster, 3, yaml, NULL);
}

static int teardown_cluster(void **state)
{
    (void)state;
    rdt_cluster_cleanup(&cluster);
    memset(&cluster, 0, sizeof(cluster));
    return 0;
}

/* A request as an agent makes it: to the engine, or to the replicas
 * (redirected to the leader, another tried while there is none). */
static void call(const char *method, const char *path, const char *body, struct rdt_resp *r)
{
    if (cluster.n > 0) {
        assert_int_equal(
            rdt_cluster_request(&cluster, &first_replica, method, path, body, rdt_ms(20000), r), 0);
        return;
    }
    char url[256];
    snprintf(url, sizeof(url), "%s%s", proc.base_url, path);
    assert_int_equal(rdt_http(RDT_H2, method, url, body, body ? strlen(body) : 0, r), 0);
}

/* The leader's /metrics (its own counters). */
static void leader_metrics(struct rdt_resp *r)
{
    struct rdt_proc *p = &proc;
    if (cluster.n > 0) {
        int i = rdt_cluster_leader(&cluster, rdt_ms(20000));
        assert_true(i >= 0);
        p = &cluster.procs[i];
    }
    assert_int_equal(rdt_get(p, RDT_H1, "/metrics", r), 0);
    assert_int_equal(r->status, 200);
}

static void register_agent(struct agent *a)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":%d}}", a->id, SLOTS);
    struct rdt_resp r = {0};
    call("POST", "/api/v1/nodes", body, &r);
    assert_int_equal(r.status, 201);
    a->epoch = json_integer_value(json_object_get(r.json, "epoch"));
    a->up = true;
    rdt_resp_free(&r);
}

static void print_logs(void)
{
    if (cluster.n == 0)
        rdt_proc_print_log_tail(&proc, 40);
    for (int i = 0; i < cluster.n; i++)
        rdt_proc_print_log_tail(&cluster.procs[i], 40);
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

/* Attempt `k` of agent `a` was taken away: it stops. */
static void interrupted(struct agent *a, unsigned k)
{
    struct task *t = task_of(a->tasks[k].id);
    t->interruptions++;
    t->revoked_at = rdt_now_ms();
    if (t->first_revoked_at == 0)
        t->first_revoked_at = t->revoked_at;
    drop(a, k);
}

/* A checkpoint of the task agent `a` holds at `k`. A fenced answer (409)
 * means the task moved: an agent learns it from its heartbeat answer's
 * revocations, or, when that answer was lost (a leader killed after it
 * committed the move and before it told the agent), from here; it stops the
 * attempt, as the SDK does. */
static bool checkpoint(struct agent *a, unsigned k)
{
    struct held *h = &a->tasks[k];
    char url[160], body[160];
    snprintf(url, sizeof(url), "/api/v1/tasks/%s/checkpoint", h->id);
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":%lld,\"data\":{\"v\":%lld}}",
             h->attempt, h->version + 1, h->version + 1);
    struct rdt_resp r = {0};
    call("PUT", url, body, &r);
    if (r.status == 200) {
        h->version++;
        struct task *t = task_of(h->id);
        t->last_version = h->version;
        t->last_attempt = h->attempt;
        rdt_resp_free(&r);
        return true;
    }
    assert_int_equal(r.status, 409);
    bool fenced = strcmp(json_string_value(rdt_json_path(r.json, "error.code")), "fenced") == 0;
    if (fenced)
        interrupted(a, k);
    rdt_resp_free(&r);
    return !fenced;
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
    call("POST", path, body, &r);
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
        print_logs();
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
                interrupted(a, k);
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
        for (unsigned k = 0; n % 3 == 0 && k < agents[i].n;)
            k += checkpoint(&agents[i], k); /* a fenced one is dropped: k is the next */
    }
}

/* Slots used per agent, as the engine sees them (its tasks: one slot each). */
static void used_by_agent(int used[AGENTS])
{
    for (int i = 0; i < AGENTS; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/nodes/%s", agents[i].id);
        struct rdt_resp r = {0};
        call("GET", path, NULL, &r);
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

/* What the engines logged about moves, recoveries and warnings. */
static void print_engine_events(void)
{
    int n = cluster.n > 0 ? cluster.n : 1;
    for (int i = 0; i < n; i++) {
        char *log = rdt_proc_log(cluster.n > 0 ? &cluster.procs[i] : &proc);
        for (char *line = log ? strtok(log, "\n") : NULL; line != NULL; line = strtok(NULL, "\n"))
            if (strstr(line, "comp=rebalance") != NULL || strstr(line, "comp=recovery") != NULL ||
                strstr(line, "level=warn") != NULL)
                fprintf(stderr, "[%d] %s\n", i + 1, line);
        free(log);
    }
}

static void report_failure(void)
{
    int used[AGENTS];
    used_by_agent(used);
    print_engine_events();
    fail_msg("not balanced: slots used %d %d %d %d %d %d, tasks held by the agents %u %u %u %u "
             "%u %u",
             used[0], used[1], used[2], used[3], used[4], used[5], agents[0].n, agents[1].n,
             agents[2].n, agents[3].n, agents[4].n, agents[5].n);
}

/* Six agents registered and heartbeating, 30 tasks spread 5 per agent. */
static void start_fleet(unsigned *n)
{
    for (int i = 0; i < AGENTS; i++) {
        snprintf(agents[i].id, sizeof(agents[i].id), "agent-%d", i);
        register_agent(&agents[i]);
    }
    round_of(1);
    for (int i = 0; i < TASKS; i++) {
        snprintf(tasks[i].id, sizeof(tasks[i].id), "0000aaaa-0000-4000-8000-%012d", i);
        char body[128];
        snprintf(body, sizeof(body), "{\"task_id\":\"%s\",\"priority\":3}", tasks[i].id);
        struct rdt_resp r = {0};
        call("POST", "/api/v1/tasks", body, &r);
        assert_int_equal(r.status, 201);
        rdt_resp_free(&r);
    }
    if (!rounds_until(n, 10000, balanced))
        report_failure();
}

static struct agent *sick;

/* Agent `a`'s latency starts to ramp, by 100 ms a heartbeat from 20 ms, past
 * the metrics plugin's 5000 ms limit; the tasks it holds now go to `held`:
 * their count. */
static unsigned start_degrading(struct agent *a, char held[SLOTS][40])
{
    assert_true(a->n <= SLOTS);
    for (unsigned k = 0; k < a->n; k++)
        snprintf(held[k], sizeof(held[k]), "%s", a->tasks[k].id);
    a->latency_ms = 20;
    a->ramp = 100;
    return a->n;
}

/* The storm: agents 3-5 stop, their tasks recover onto 0-2 (which end
 * full); then the three register again, empty. When they came back. */
static int64_t storm_and_return(unsigned *n)
{
    for (int i = 3; i < AGENTS; i++) {
        for (unsigned k = 0; k < agents[i].n; k++)
            task_of(agents[i].tasks[k].id)->interruptions++; /* died with its agent */
        agents[i].up = false;
        agents[i].n = 0;
    }
    assert_true(rounds_until(n, 30000, survivors_full));
    int64_t back = rdt_now_ms();
    for (int i = 3; i < AGENTS; i++)
        register_agent(&agents[i]);
    return back;
}

/* Ten more rounds. */
static void some_more_rounds(unsigned *n)
{
    for (int i = 0; i < 10; i++, (*n)++) {
        round_of(*n);
        rdt_sleep_ms(hb_ms);
    }
}

static void no_task_interrupted_twice(void)
{
    for (int i = 0; i < TASKS; i++)
        if (tasks[i].interruptions > 1 || tasks[i].lost_checkpoint)
            fail_msg("task %s: interrupted %u times, checkpoint lost: %d", tasks[i].id,
                     tasks[i].interruptions, tasks[i].lost_checkpoint);
}

static bool sick_gone(void)
{
    return !sick->up;
}

/* The degrading agent's tasks are being taken away (it is drained). */
static bool sick_revoked(void)
{
    return sick->n < TASKS / AGENTS;
}

/* Both degrading agents (2 and 4) were failed. */
static bool both_gone(void)
{
    return !agents[2].up && !agents[4].up;
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
    unsigned n_held = start_degrading(sick, held);
    if (!rounds_until(&n, 30000, sick_gone))
        fail_msg("the degrading agent was not failed (latency %.0f ms)", sick->latency_ms);
    some_more_rounds(&n);
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
    leader_metrics(&r);
    if (strstr(r.body, "recoveryd_predicted_faults_total{outcome=\"drained\"} 1\n") == NULL) {
        for (char *l = strtok(r.body, "\n"); l != NULL; l = strtok(NULL, "\n"))
            if (strncmp(l, "recoveryd_predicted_faults_total{", 33) == 0)
                fprintf(stderr, "%s\n", l);
        print_engine_events();
        fail_msg("not one drain on a prediction (the counters above)");
    }
    rdt_resp_free(&r);
}

static void test_fleet_converges_after_a_storm(void **state)
{
    (void)state;
    unsigned n = 0;
    start_fleet(&n);

    int64_t back = storm_and_return(&n);
    if (!rounds_until(&n, 30000, balanced))
        report_failure();
    fprintf(stderr, "balanced %lld ms after the agents came back\n",
            (long long)(rdt_now_ms() - back));
    some_more_rounds(&n); /* any late move would show in the counts below */
    no_task_interrupted_twice();
    struct rdt_resp r = {0};
    leader_metrics(&r);
    const char *m = r.body;
    assert_non_null(strstr(m, "recoveryd_rebalance_moves_total{kind=\"running\"}"));
    assert_null(strstr(m, "recoveryd_rebalance_moves_total{kind=\"running\"} 0\n"));
    assert_non_null(strstr(m, "recoveryd_rebalance_policy_errors_total 0\n"));
    rdt_resp_free(&r);
}

/* ---- on three replicas, the leader killed in the middle ------------------ */

/* Kills the leader (SIGKILL); the agents go on with the other two. */
static void kill_leader(void)
{
    int i = rdt_cluster_leader(&cluster, rdt_ms(20000));
    assert_true(i >= 0);
    assert_int_equal(rdt_proc_kill9(&cluster.procs[i]), 0);
    fprintf(stderr, "killed the leader, replica %d\n", i + 1);
}

/* "2026-12-03T13:40:01.123Z" in ms since the epoch. */
static int64_t time_ms(const char *rfc3339)
{
    struct tm tm = {0};
    const char *rest = strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_non_null(rest);
    int64_t ms = (int64_t)timegm(&tm) * 1000;
    if (*rest == '.')
        ms += (int64_t)(strtod(rest, NULL) * 1000 + 0.5);
    return ms;
}

/* The leader times of the engine's `action` records that applied, oldest
 * first (at most 1000); their count. */
static size_t audited(const char *action, int64_t *at, size_t max)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/audit?action=%s&principal=recoveryd&order=asc&limit=1000",
             action);
    struct rdt_resp r = {0};
    call("GET", path, NULL, &r);
    assert_int_equal(r.status, 200);
    size_t n = 0, i;
    json_t *rec;
    json_array_foreach(json_object_get(r.json, "items"), i, rec)
    {
        if (json_integer_value(rdt_json_path(rec, "outcome.status")) == 200 && n < max)
            at[n++] = time_ms(json_string_value(json_object_get(rec, "time")));
    }
    rdt_resp_free(&r);
    return n;
}

/* Some task was revoked (moved by rebalancing) after `since`. */
static bool moving_since(int64_t since)
{
    for (int i = 0; i < TASKS; i++)
        if (tasks[i].revoked_at > since)
            return true;
    return false;
}

/* The storm and the return on three replicas; once the first task moves,
 * the leader is killed. The new leader finishes: balanced, no task
 * interrupted twice, no checkpoint lost, and the moves of both leaders fit
 * one token bucket (moves_per_minute, ten seconds' burst): in any stretch
 * of time at most burst + rate x (its length + checkpoint_wait + 1 s) moves
 * (a move's record is stamped when it commits, at most checkpoint_wait
 * after its token was taken). */
static void test_rebalancing_survives_a_leader_change(void **state)
{
    (void)state;
    unsigned n = 0;
    start_fleet(&n);
    int64_t back = storm_and_return(&n);
    for (int64_t until = rdt_now_ms() + rdt_ms(30000); !moving_since(back); n++) {
        if (rdt_now_ms() > until)
            report_failure();
        round_of(n);
        rdt_sleep_ms(hb_ms);
    }
    kill_leader();
    if (!rounds_until(&n, 90000, balanced))
        report_failure();
    fprintf(stderr, "balanced %lld ms after the agents came back\n",
            (long long)(rdt_now_ms() - back));
    some_more_rounds(&n);
    no_task_interrupted_twice();
    int64_t at[1000];
    size_t moves = audited("task_rebalance", at, 1000);
    if (moves < 12) /* 10, 10, 10, 0, 0, 0 to at least 4 each */
        fail_msg("%zu rebalancing moves audited", moves);
    double rate = CLUSTER_MOVES_PER_MINUTE / 60.0, burst = rate * 10;
    double slack_s = rdt_ms(CLUSTER_CHECKPOINT_WAIT) / 1000.0 + rdt_ms(1000) / 1000.0;
    for (size_t i = 0; i < moves; i++)
        for (size_t j = i; j < moves; j++)
            if ((double)(j - i + 1) > burst + rate * ((at[j] - at[i]) / 1000.0 + slack_s))
                fail_msg("%zu moves in %lld ms: more than moves_per_minute %d allows", j - i + 1,
                         (long long)(at[j] - at[i]), CLUSTER_MOVES_PER_MINUTE);
}

/* Agent 2's latency ramps: the leader drains it on the prediction and is
 * killed as its tasks start to move; they all move, with their checkpoints,
 * before the agent fails (some may land on agent 4 and move again when it
 * fails). Agent 4's latency then ramps too: within the minute of
 * drains_per_minute 1 the new leader holds that drain back (one drain
 * audited in all), and agent 4's tasks move when it fails, none lost. */
static void test_predicted_drain_survives_a_leader_change(void **state)
{
    (void)state;
    unsigned n = 0;
    start_fleet(&n);
    rounds_until(&n, 1000, NULL); /* baselines */
    sick = &agents[2];
    char held[SLOTS][40];
    unsigned n_held = start_degrading(sick, held);
    if (!rounds_until(&n, 30000, sick_revoked))
        fail_msg("the degrading agent was not drained (latency %.0f ms)", sick->latency_ms);
    kill_leader();
    struct agent *first = sick;
    char held2[SLOTS][40];
    unsigned n_held2 = start_degrading(&agents[4], held2);
    int64_t ramp2_at = rdt_now_ms();
    if (!rounds_until(&n, 60000, both_gone))
        fail_msg("the degrading agents were not failed");
    some_more_rounds(&n);
    assert_int_equal(n_held, 5);
    for (unsigned k = 0; k < n_held; k++) {
        const struct task *t = task_of(held[k]);
        if (t->first_revoked_at == 0 || t->first_revoked_at >= first->fenced_at ||
            t->lost_checkpoint)
            fail_msg("task %s: revoked at %lld, agent failed at %lld, checkpoint lost %d", t->id,
                     (long long)t->first_revoked_at, (long long)first->fenced_at,
                     t->lost_checkpoint);
    }
    /* One drain in all: the new leader held the second back. */
    int64_t at[16];
    size_t drains = audited("drain_by_prediction", at, 16);
    if (drains != 1) {
        print_engine_events();
        fail_msg("%zu drains on predictions audited (drains_per_minute 1)", drains);
    }
    for (unsigned k = 0; k < n_held2; k++) {
        const struct task *t = task_of(held2[k]);
        if (t->lost_checkpoint)
            fail_msg("task %s of the second agent lost its checkpoint", t->id);
        if (t->revoked_at >= ramp2_at) /* not drained: moved by rebalancing */
            fprintf(stderr, "task %s of the second agent moved %lld ms after its ramp began\n",
                    t->id, (long long)(t->revoked_at - ramp2_at));
    }
    assert_true(all_placed());
    /* The new leader held the second agent's prediction: counted once per
     * predicted record, and an agent whose latency was an anomaly before
     * the trend window filled has two (docs/architecture.md, "Predicted
     * faults"). */
    struct rdt_resp r = {0};
    leader_metrics(&r);
    long long held_back =
        rdt_metric_in(r.body, "recoveryd_predicted_faults_total{outcome=\"rate_limited\"}");
    if (held_back < 1 || held_back > 2) {
        for (char *l = strtok(r.body, "\n"); l != NULL; l = strtok(NULL, "\n"))
            if (strncmp(l, "recoveryd_predicted_faults_total{", 33) == 0)
                fprintf(stderr, "%s\n", l);
        print_engine_events();
        fail_msg("the new leader held %lld predictions back (1 or 2 expected)", held_back);
    }
    rdt_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_predicted_fault_moves_tasks_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_converges_after_a_storm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebalancing_survives_a_leader_change, setup_cluster,
                                        teardown_cluster),
        cmocka_unit_test_setup_teardown(test_predicted_drain_survives_a_leader_change,
                                        setup_cluster, teardown_cluster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
