/*
 * Dynamic rebalancing (recover/rebalance.c). The planner on its own: it
 * evens the load, moves nothing on an even fleet, keeps targets within their
 * limit and the tasks' labels, offers queued tasks before running ones and
 * low priorities first, follows reported cpu, and stops at its budget.
 * Then the scheduler on a fake log: a fleet whose agents come back after a
 * storm is evened out with queued tasks, no task moved twice (the ones
 * recovery moved stay); a running task moves only at its next checkpoint and
 * only when the hook allows; a failing hook moves nothing and is counted;
 * the rate limit holds; the cooldown and the rate limit hold across a
 * leader change (the state machine's moved_at, the audited moves); an agent
 * the detectors hold in trouble (alive by the machine) gets no move.
 */
#include "cmocka_all.h"

#include <math.h>

#include "common/util.h"
#include "policy/policy.h"
#include "sched_world.h"

#define SHIPPED  RD_SOURCE_DIR "/policies"
#define FIXTURES RD_SOURCE_DIR "/tests/unit/policy/fixtures"

/* ---- the planner ------------------------------------------------------------ */

static void nodes_init(struct rd_rb_node *nodes, size_t n, uint32_t slots, const uint32_t *used)
{
    for (size_t i = 0; i < n; i++)
        nodes[i] = (struct rd_rb_node){
            .slots = slots, .used = used[i], .used0 = used[i], .limit = slots, .cpu = -1};
}

/* One 1-slot queued task per used slot, node by node. */
static size_t tasks_init(struct rd_rb_task *tasks, const struct rd_rb_node *nodes, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (uint32_t u = 0; u < nodes[i].used; u++, k++)
            tasks[k] = (struct rd_rb_task){
                .index = k, .node = i, .slots = 1, .priority = 5, .movable = true};
    return k;
}

static void test_plan_evens_the_load(void **state)
{
    (void)state;
    struct rd_rb_node nodes[3];
    struct rd_rb_task tasks[20];
    struct rd_rb_move out[64];
    nodes_init(nodes, 3, 10, (const uint32_t[]){10, 10, 0});
    size_t n = tasks_init(tasks, nodes, 3);
    size_t made = rd_sched__rb_plan(nodes, 3, tasks, n, 64, out);
    /* 20 over 3: 7, 7, 6 is even; it takes 6 moves, all to the empty node. */
    assert_int_equal(made, 6);
    bool moved[20] = {false};
    for (size_t i = 0; i < made; i++) {
        assert_int_equal(out[i].to, 2);
        assert_false(moved[out[i].task]); /* never twice */
        moved[out[i].task] = true;
    }
    assert_true(rd_sched__rb_skew(nodes, 3, NULL) <= 0.1 + 1e-9);
    /* Even already: nothing more to do. */
    assert_int_equal(rd_sched__rb_plan(nodes, 3, tasks, n, 64, out), 0);
}

static void test_plan_leaves_even_fleets_alone(void **state)
{
    (void)state;
    struct rd_rb_node nodes[3];
    struct rd_rb_task tasks[16];
    struct rd_rb_move out[8];
    nodes_init(nodes, 3, 4, (const uint32_t[]){3, 2, 3}); /* a slot apart: as even as it gets */
    size_t n = tasks_init(tasks, nodes, 3);
    assert_int_equal(rd_sched__rb_plan(nodes, 3, tasks, n, 8, out), 0);
}

static bool not_node_1(void *data, size_t task, size_t node)
{
    (void)data;
    (void)task;
    return node != 1;
}

static void test_plan_respects_limits_and_labels(void **state)
{
    (void)state;
    struct rd_rb_node nodes[3];
    struct rd_rb_task tasks[16];
    struct rd_rb_move out[16];
    nodes_init(nodes, 3, 8, (const uint32_t[]){8, 0, 0});
    nodes[2].limit = 2; /* resource_limit: at most 2 of its 8 slots */
    size_t n = tasks_init(tasks, nodes, 3);
    tasks[0].fits = not_node_1; /* its labels do not fit node 1 */
    size_t made = rd_sched__rb_plan(nodes, 3, tasks, n, 16, out);
    unsigned to[3] = {0};
    for (size_t i = 0; i < made; i++) {
        to[out[i].to]++;
        if (out[i].task == 0)
            assert_int_not_equal(out[i].to, 1);
    }
    assert_int_equal(to[2], 2);
    assert_int_equal(nodes[2].used, 2);
    assert_int_equal(nodes[0].used, 3); /* 8 - 2 - 3: node 1 ends at 3, the source at 3 */
    assert_int_equal(nodes[1].used, 3);
}

static void test_plan_offers_queued_then_low_priority(void **state)
{
    (void)state;
    struct rd_rb_node nodes[2];
    struct rd_rb_task tasks[4];
    struct rd_rb_move out[4];
    nodes_init(nodes, 2, 4, (const uint32_t[]){4, 0});
    tasks_init(tasks, nodes, 2);
    tasks[0].running = true, tasks[0].priority = 1;
    tasks[1].running = true, tasks[1].priority = 7;
    tasks[2].running = false, tasks[2].priority = 9;
    tasks[3].running = true, tasks[3].priority = 3;
    assert_int_equal(rd_sched__rb_plan(nodes, 2, tasks, 4, 4, out), 2);
    assert_int_equal(out[0].task, 2); /* queued first, whatever its priority */
    assert_int_equal(out[1].task, 0); /* then the lowest priority */
}

static void test_plan_follows_cpu(void **state)
{
    (void)state;
    struct rd_rb_node nodes[2];
    struct rd_rb_task tasks[10];
    struct rd_rb_move out[10];
    nodes_init(nodes, 2, 10, (const uint32_t[]){5, 5}); /* even by slots */
    nodes[0].cpu = 0.9, nodes[1].cpu = 0.1;
    size_t n = tasks_init(tasks, nodes, 2);
    double cpu_skew;
    assert_true(rd_sched__rb_skew(nodes, 2, &cpu_skew) < 1e-9);
    assert_true(cpu_skew > 0.79);
    size_t made = rd_sched__rb_plan(nodes, 2, tasks, n, 10, out);
    assert_true(made >= 1);
    for (size_t i = 0; i < made; i++)
        assert_int_equal(out[i].from, 0); /* off the hot one only */
}

static void test_plan_stops_at_its_budget(void **state)
{
    (void)state;
    struct rd_rb_node nodes[2];
    struct rd_rb_task tasks[10];
    struct rd_rb_move out[10];
    nodes_init(nodes, 2, 10, (const uint32_t[]){10, 0});
    size_t n = tasks_init(tasks, nodes, 2);
    assert_int_equal(rd_sched__rb_plan(nodes, 2, tasks, n, 3, out), 3);
    assert_int_equal(rd_sched__rb_plan(nodes, 2, tasks, n, 10, out), 2); /* 5 and 5 */
}

/* ---- the planner against the one it replaced -------------------------------- */

/* The planner as it was before it asked for tasks node by node (it sorted
 * every task and scanned every task for each source tried, and every node
 * for each source): the reference the new one must agree with, move for
 * move. */
static double ref_load_of(const struct rd_rb_node *n, uint32_t used)
{
    double l = (double)used / (double)n->slots;
    if (n->cpu >= 0) {
        double c = n->used0 > 0 ? n->cpu * used / n->used0 : n->cpu;
        if (c > l)
            l = c;
    }
    return l;
}

static int ref_offer_cmp(const void *a, const void *b)
{
    const struct rd_rb_task *x = *(const struct rd_rb_task *const *)a;
    const struct rd_rb_task *y = *(const struct rd_rb_task *const *)b;
    if (x->running != y->running)
        return x->running ? 1 : -1;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    if (x->slots != y->slots)
        return x->slots > y->slots ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static bool ref_best_move_off(struct rd_rb_node *nodes, size_t from, struct rd_rb_task **order,
                              size_t n_order, const size_t *recv, size_t n_recv, size_t *task,
                              size_t *to)
{
    double best_after = INFINITY;
    for (size_t k = 0; k < n_order; k++) {
        struct rd_rb_task *t = order[k];
        if (!t->movable || t->node != from)
            continue;
        double after_from = ref_load_of(&nodes[from], nodes[from].used - t->slots);
        for (size_t j = 0; j < n_recv; j++) {
            size_t r = recv[j];
            struct rd_rb_node *x = &nodes[r];
            if (r == from || x->used + t->slots > x->limit ||
                (t->fits != NULL && !t->fits(t->fits_data, t->index, r)))
                continue;
            double after_to = ref_load_of(x, x->used + t->slots);
            if (after_to <= after_from + 1e-9 && after_to < best_after - 1e-9) {
                best_after = after_to;
                *task = k;
                *to = r;
            }
        }
    }
    return best_after < INFINITY;
}

static size_t ref_plan(struct rd_rb_node *nodes, size_t n_nodes, struct rd_rb_task *tasks,
                       size_t n_tasks, size_t max_moves, struct rd_rb_move *out)
{
    size_t made = 0;
    struct rd_rb_task **order = malloc((n_tasks ? n_tasks : 1) * sizeof(*order));
    size_t *recv = malloc((n_nodes ? n_nodes : 1) * sizeof(*recv));
    bool *tried = malloc(n_nodes ? n_nodes : 1);
    assert_non_null(order);
    assert_non_null(recv);
    assert_non_null(tried);
    size_t n_order = 0;
    for (size_t j = 0; j < n_tasks; j++)
        if (tasks[j].movable && tasks[j].node < n_nodes)
            order[n_order++] = &tasks[j];
    qsort(order, n_order, sizeof(*order), ref_offer_cmp);
    uint64_t sum_used = 0, sum_slots = 0;
    for (size_t i = 0; i < n_nodes; i++)
        if (nodes[i].slots > 0)
            sum_used += nodes[i].used, sum_slots += nodes[i].slots;
    double mean = sum_slots ? (double)sum_used / (double)sum_slots : 0;
    while (made < max_moves) {
        size_t n_recv = 0;
        for (size_t i = 0; i < n_nodes; i++) {
            tried[i] = nodes[i].slots == 0;
            if (nodes[i].slots > 0 && (double)nodes[i].used / nodes[i].slots <= mean + 1e-9)
                recv[n_recv++] = i;
        }
        size_t task = SIZE_MAX, to = SIZE_MAX, from = SIZE_MAX;
        for (;;) {
            from = SIZE_MAX;
            double top = -1;
            for (size_t i = 0; i < n_nodes; i++) {
                double l = tried[i] ? -1 : ref_load_of(&nodes[i], nodes[i].used);
                if (!tried[i] && l > top)
                    top = l, from = i;
            }
            if (from == SIZE_MAX)
                break;
            tried[from] = true;
            if (ref_best_move_off(nodes, from, order, n_order, recv, n_recv, &task, &to))
                break;
        }
        if (from == SIZE_MAX)
            break;
        struct rd_rb_task *t = order[task];
        out[made].task = t->index;
        out[made].from = t->node;
        out[made].to = to;
        made++;
        nodes[t->node].used -= t->slots;
        nodes[to].used += t->slots;
        t->node = to;
        t->movable = false;
    }
    free(order);
    free(recv);
    free(tried);
    return made;
}

static uint64_t rnd_state;

static uint32_t rnd(uint32_t n)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (uint32_t)(rnd_state % n);
}

/* Labels that fit some nodes only, the same in both plans. */
static bool fits_some(void *data, size_t task, size_t node)
{
    return (task * 31 + node * 17 + (uintptr_t)data) % 5 != 0;
}

#define RND_NODES 40
#define RND_TASKS 400

/* A random fleet: agents of 0 (not working) to 12 slots, some with a
 * lower limit or a reported cpu, their tasks of 1 to 3 slots (now and
 * then 0) in random order, queued or running, of any priority, some with
 * labels; each agent's used slots count its tasks (and at times more: the
 * pass's placements, tasks not offered). */
static void random_fleet(struct rd_rb_node *nodes, size_t *n_nodes, struct rd_rb_task *tasks,
                         size_t *n_tasks)
{
    *n_nodes = 1 + rnd(RND_NODES);
    *n_tasks = 0;
    for (size_t i = 0; i < *n_nodes; i++) {
        uint32_t slots = rnd(10) == 0 ? 0 : 1 + rnd(12);
        nodes[i] = (struct rd_rb_node){.slots = slots, .limit = slots, .cpu = -1};
        if (slots > 0 && rnd(4) == 0)
            nodes[i].limit = 1 + rnd(slots);
        uint32_t k = rnd(3) == 0 ? 0 : rnd(slots + 4);
        for (uint32_t j = 0; j < k && *n_tasks < RND_TASKS; j++) {
            uint32_t size = rnd(20) == 0 ? 0 : 1 + rnd(rnd(3) == 0 ? 3 : 1);
            tasks[(*n_tasks)++] = (struct rd_rb_task){.node = i,
                                                      .slots = size,
                                                      .priority = (uint8_t)rnd(10),
                                                      .running = rnd(2) == 0,
                                                      .movable = rnd(8) != 0,
                                                      .fits = rnd(3) == 0 ? fits_some : NULL,
                                                      .fits_data = (void *)(uintptr_t)rnd(5)};
            nodes[i].used += size;
        }
        if (rnd(4) == 0)
            nodes[i].used += rnd(4);
        nodes[i].used0 = nodes[i].used;
        if (rnd(4) == 0) {
            nodes[i].cpu = rnd(101) / 100.0;
            nodes[i].used0 = rnd(3) == 0 ? 0 : nodes[i].used;
        }
    }
    /* Shuffled: the planner groups them by node itself. */
    for (size_t j = *n_tasks; j > 1; j--) {
        size_t r = rnd((uint32_t)j);
        struct rd_rb_task x = tasks[j - 1];
        tasks[j - 1] = tasks[r];
        tasks[r] = x;
    }
    for (size_t j = 0; j < *n_tasks; j++)
        tasks[j].index = j;
}

/* The planner makes the moves the one it replaced made, in the same order,
 * on 3,000 random fleets (and again on each fleet it left). */
static void test_plan_agrees_with_the_old_planner(void **state)
{
    (void)state;
    static struct rd_rb_node nodes[RND_NODES], ref_nodes[RND_NODES];
    static struct rd_rb_task tasks[RND_TASKS], ref_tasks[RND_TASKS];
    static struct rd_rb_move out[64], ref_out[64];
    size_t moves = 0;
    for (uint64_t seed = 1; seed <= 3000; seed++) {
        rnd_state = seed * 0x9E3779B97F4A7C15ULL;
        size_t n_nodes, n_tasks;
        random_fleet(nodes, &n_nodes, tasks, &n_tasks);
        memcpy(ref_nodes, nodes, sizeof(nodes));
        memcpy(ref_tasks, tasks, sizeof(tasks));
        for (int round = 0; round < 2; round++) {
            size_t max = 1 + rnd(40);
            size_t made = rd_sched__rb_plan(nodes, n_nodes, tasks, n_tasks, max, out);
            size_t ref = ref_plan(ref_nodes, n_nodes, ref_tasks, n_tasks, max, ref_out);
            if (made != ref)
                fail_msg("seed %llu round %d: %zu moves, the old planner %zu",
                         (unsigned long long)seed, round, made, ref);
            for (size_t i = 0; i < made; i++)
                if (out[i].task != ref_out[i].task || out[i].from != ref_out[i].from ||
                    out[i].to != ref_out[i].to)
                    fail_msg("seed %llu round %d move %zu: task %zu %zu->%zu, the old planner "
                             "task %zu %zu->%zu",
                             (unsigned long long)seed, round, i, out[i].task, out[i].from,
                             out[i].to, ref_out[i].task, ref_out[i].from, ref_out[i].to);
            for (size_t i = 0; i < n_nodes; i++)
                assert_int_equal(nodes[i].used, ref_nodes[i].used);
            for (size_t j = 0; j < n_tasks; j++) {
                assert_int_equal(tasks[j].node, ref_tasks[j].node);
                assert_int_equal(tasks[j].movable, ref_tasks[j].movable);
            }
            moves += made;
        }
    }
    assert_true(moves > 3000); /* the fleets gave it something to decide */
}

/* ---- the scheduler ------------------------------------------------------ */

static int setup(void **state)
{
    sched_world_setup(state);
    struct sched_world *w = *state;
    w->cfg.fault_tolerance.rebalance.moves_per_minute = 6000; /* no rate limit unless set */
    w->cfg.fault_tolerance.rebalance.settle_ms = 0;
    return 0;
}

static int teardown(void **state)
{
    struct sched_world *w = *state;
    rd_policy_free(w->policy);
    return sched_world_teardown(state);
}

static void load_policy(struct sched_world *w, const char *dir)
{
    char err[RD_POLICY_ERRLEN];
    rd_policy_free(w->policy);
    w->policy = NULL;
    if (rd_policy_load(dir, 50, 16u << 20, &w->policy, err, sizeof(err)) != 0)
        fail_msg("loading %s: %s", dir, err);
}

/* The shipped policies with fixtures/<fixture> as select.lua. */
static void load_select(struct sched_world *w, const char *fixture)
{
    char dir[] = "/tmp/rd_rb_policy_XXXXXX", cmd[512];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "cp %s/*.lua %s/ && cp %s/%s %s/select.lua", SHIPPED, dir, FIXTURES,
             fixture, dir);
    assert_int_equal(system(cmd), 0);
    load_policy(w, dir);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Agent "a" of 4 slots runs tasks 1 to 4; then "b" of 4 slots joins. */
static void four_on_a_then_b_joins(struct sched_world *w)
{
    sched_world_agent(w, "a", 4, "{}");
    for (int n = 1; n <= 4; n++)
        sched_world_task(w, n, 5, false, 1, "{}");
    sched_world_settle(w);
    sched_world_agent(w, "b", 4, "{}");
    sched_world_settle(w);
}

static uint32_t used_on(struct sched_world *w, const char *node)
{
    return rd_fsm_node(&w->fsm, node, strlen(node))->slots_in_use;
}

static uint32_t attempt_of(struct sched_world *w, int n)
{
    char id[40];
    snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", n);
    return sched_world_get(w, id)->attempt;
}

/* Four agents of 4 slots, 8 tasks: two agents fail, their tasks recover to
 * the other two (full), the two register again: rebalancing moves queued
 * tasks back until every agent runs 2, and moves none of the recovered ones. */
static void test_fleet_evens_out_after_a_storm(void **state)
{
    struct sched_world *w = *state;
    const char *agents[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        sched_world_agent(w, agents[i], 4, "{}");
    for (int n = 1; n <= 8; n++)
        sched_world_task(w, n, 5, false, 1, "{}");
    sched_world_settle(w);
    for (int i = 0; i < 4; i++)
        assert_int_equal(used_on(w, agents[i]), 2);
    sched_world_move(w, "c", RD_NODE_FAILED);
    sched_world_move(w, "d", RD_NODE_FAILED);
    sched_world_settle(w);
    assert_int_equal(used_on(w, "a"), 4);
    assert_int_equal(used_on(w, "b"), 4);
    uint32_t after_storm[9];
    for (int n = 1; n <= 8; n++)
        after_storm[n] = attempt_of(w, n);
    sched_world_agent(w, "c", 4, "{}"); /* registered again: probation, working */
    sched_world_agent(w, "d", 4, "{}");
    sched_world_settle(w);
    for (int i = 0; i < 4; i++)
        assert_int_equal(used_on(w, agents[i]), 2);
    /* Each task moved at most once in all: by recovery or by rebalancing. */
    for (int n = 1; n <= 8; n++)
        assert_true(attempt_of(w, n) - 1 <= 1);
    unsigned moved = 0;
    for (int n = 1; n <= 8; n++)
        moved += attempt_of(w, n) != after_storm[n];
    assert_int_equal(moved, 4);
    assert_int_equal(w->s.rb_moves[RD_RB_QUEUED], 4);
    assert_false(w->s.rb_balancing);
}

/* A fleet with nothing to even out is read once, not at every pass (a
 * walk over 10,000 agents ten times a second was 3% of a storm's leader):
 * read again when something in it changes, and then evened as before. */
static void test_idle_fleet_is_read_once(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 4, "{}");
    sched_world_agent(w, "b", 4, "{}");
    for (int n = 1; n <= 4; n++)
        sched_world_task(w, n, 5, false, 1, "{}");
    sched_world_settle(w);
    assert_int_equal(used_on(w, "a"), 2);
    assert_int_equal(used_on(w, "b"), 2);
    rd_sched_pass(&w->s);
    uint64_t scans = w->s.rb_scans;
    assert_true(scans > 0);
    for (int i = 0; i < 20; i++) {
        rd_sched_pass(&w->s);
        fake_log_step(&w->log);
    }
    assert_int_equal(w->s.rb_scans, scans);
    sched_world_agent(w, "c", 4, "{}"); /* joins */
    sched_world_settle(w);
    assert_true(w->s.rb_scans > scans);
    assert_true(used_on(w, "c") > 0);
    assert_int_equal(used_on(w, "a") + used_on(w, "b") + used_on(w, "c"), 4);
}

/* Writes checkpoint `version` of task number `n`. */
static void checkpoint(struct sched_world *w, int n, uint64_t version)
{
    char id[40];
    snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", n);
    sched_world_checkpoint(w, id, version);
}

/* A running task moves at its next checkpoint, and only where the hook
 * allows it: without a hook it stays; with the shipped one (priority 2,
 * a checkpoint to resume from) it is held until a newer checkpoint commits,
 * then moved with it. */
static void test_running_task_moves_at_its_next_checkpoint(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 2, "{}");
    sched_world_task(w, 1, 2, false, 1, "{}");
    sched_world_task(w, 2, 2, false, 1, "{}");
    sched_world_settle(w);
    checkpoint(w, 1, 1);
    checkpoint(w, 2, 1);
    sched_world_agent(w, "b", 2, "{}");
    sched_world_settle(w);
    assert_int_equal(used_on(w, "a"), 2); /* no hook: running tasks stay */
    assert_int_equal(w->s.rb_moves[RD_RB_RUNNING], 0);

    load_policy(w, SHIPPED);
    w->s.rb_balancing = true; /* as a skew would (0 vs 100%) */
    w->s.rb_quiet_until_ns = 0;
    rd_sched_pass(&w->s);
    fake_log_step(&w->log);
    assert_int_equal(w->s.rb_pending.len, 1); /* held for its next checkpoint */
    assert_int_equal(used_on(w, "a"), 2);
    sched_world_settle(w);
    assert_int_equal(used_on(w, "a"), 2); /* still waiting */
    int which = rd_map_get(&w->s.rb_pending, "00000000-0000-4000-8000-000000000001", 36) ? 1 : 2;
    checkpoint(w, which, 2);
    sched_world_settle(w);
    assert_int_equal(used_on(w, "a"), 1);
    assert_int_equal(used_on(w, "b"), 1);
    assert_int_equal(w->s.rb_moves[RD_RB_RUNNING], 1);
    assert_int_equal(w->s.rb_pending.len, 0);
    char id[40];
    snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", which);
    const struct rd_task *t = sched_world_get(w, id);
    assert_string_equal(t->node_id, "b");
    assert_int_equal(rd_task_checkpoint(t)->version, 2); /* carried over */
}

/* A rebalance hook that fails moves nothing; it is logged and counted. */
static void test_broken_hook_moves_nothing(void **state)
{
    struct sched_world *w = *state;
    load_select(w, "hooks_broken.lua");
    four_on_a_then_b_joins(w);
    assert_int_equal(used_on(w, "a"), 4);
    assert_int_equal(w->s.rb_policy_errors, 1); /* then paused: not once a pass */
    struct rd_mbuf b;
    rd_mbuf_init(&b);
    rd_sched_rebalance_metrics(&w->s, &b);
    assert_non_null(strstr(b.p, "recoveryd_rebalance_policy_errors_total 1\n"));
    assert_non_null(strstr(b.p, "recoveryd_rebalance_moves_total{kind=\"queued\"} 0\n"));
    rd_mbuf_free(&b);
}

/* moves_per_minute 6: a burst of one, then nothing for ten seconds. */
static void test_moves_are_rate_limited(void **state)
{
    struct sched_world *w = *state;
    w->cfg.fault_tolerance.rebalance.moves_per_minute = 6;
    four_on_a_then_b_joins(w);
    assert_int_equal(w->s.rb_moves[RD_RB_QUEUED], 1);
    assert_int_equal(used_on(w, "b"), 1);
    assert_true(w->s.rb_balancing); /* still to do, when the bucket refills */
}

/* Four agents' worth of tasks on "a"; "b" joins and takes two. After a
 * leader change "c" and "d" join: the new leader moves one of a's, none of
 * the two that moved to "b" (their cooldown is in the state machine, not in
 * the old leader's memory). */
static void test_cooldown_holds_across_a_leader_change(void **state)
{
    struct sched_world *w = *state;
    four_on_a_then_b_joins(w);
    assert_int_equal(used_on(w, "b"), 2);
    sched_world_new_leader(w);
    sched_world_settle(w);
    sched_world_agent(w, "c", 4, "{}");
    sched_world_agent(w, "d", 4, "{}");
    sched_world_settle(w);
    assert_int_equal(w->s.rb_moves[RD_RB_QUEUED], 1);
    assert_int_equal(used_on(w, "a"), 1);
    assert_int_equal(used_on(w, "b"), 2);
    for (int n = 1; n <= 4; n++)
        assert_true(attempt_of(w, n) <= 2); /* none moved twice */
}

/* moves_per_minute 6 (a burst of one) holds across a leader change: the
 * new leader's bucket starts from the move the audit records show. */
static void test_rate_limit_holds_across_a_leader_change(void **state)
{
    struct sched_world *w = *state;
    w->cfg.fault_tolerance.rebalance.moves_per_minute = 6;
    four_on_a_then_b_joins(w);
    assert_int_equal(used_on(w, "b"), 1);
    sched_world_new_leader(w);
    sched_world_settle(w);
    sched_world_agent(w, "c", 4, "{}");
    sched_world_settle(w);
    assert_int_equal(w->s.rb_moves[RD_RB_QUEUED], 0);
    assert_int_equal(used_on(w, "b") + used_on(w, "c"), 1);
}

/* Audits an engine action `action` (status `status`) at leader time `at`. */
static void audit_at(struct sched_world *w, const char *action, int status, int64_t at)
{
    struct rd_cmd c = {.type = RD_CMD_AUDIT, .time_ms = at};
    rd_cmd_audit_engine(&c, action, "x", "");
    c.audit.status = (uint16_t)status;
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
}

/* The seed of a new leader's bucket (1 a second, burst 3): full without
 * moves; each move of the last three seconds counts, from an empty bucket
 * refilled since; other actions and refused moves do not count. */
static void test_bucket_seed_replays_the_audited_moves(void **state)
{
    struct sched_world *w = *state;
    int64_t t0 = 1000000;
    assert_true(rd_sched__bucket_seed(&w->fsm, "task_rebalance", 1, 3, t0) == 3);
    audit_at(w, "task_rebalance", 200, t0 - 5000); /* older than burst / rate */
    audit_at(w, "task_rebalance", 200, t0 - 2000);
    audit_at(w, "task_rebalance", 200, t0 - 2000);
    audit_at(w, "task_recover", 200, t0 - 1500);
    audit_at(w, "task_rebalance", 409, t0 - 1500);
    audit_at(w, "task_rebalance", 200, t0 - 1000);
    /* Empty at t0 - 3 s; 1 at t0 - 2 s, spent twice (0); 1 at t0 - 1 s,
     * spent (0); 1 at t0. */
    double level = rd_sched__bucket_seed(&w->fsm, "task_rebalance", 1, 3, t0);
    assert_true(level > 0.999 && level < 1.001);
    assert_true(rd_sched__bucket_seed(&w->fsm, "task_rebalance", 1, 3, t0 + 10000) == 3);
}

/* Sets the settings the view shows beside the strategies. */
static void configure(struct sched_world *w)
{
    w->cfg.fault_tolerance.prediction.drains_per_minute = 7;
    w->cfg.fault_tolerance.prediction.min_healthy_capacity = 40;
    w->cfg.fault_tolerance.rebalance.skew_threshold = 15;
    w->cfg.fault_tolerance.rebalance.cooldown_ms = 90000;
    w->cfg.fault_tolerance.rebalance.checkpoint_wait_ms = 12000;
    w->cfg.fault_tolerance.tasks.retention_ms = 3600000;
    w->cfg.fault_tolerance.poison.max_failures = 5;
    w->cfg.fault_tolerance.poison.window_ms = 120000;
}

/* The policies' view carries fault_tolerance's prediction, rebalance,
 * tasks and poison settings (policies/README.md, "The view"): as JSON, and
 * as a hook sees them (it allows the moves only when they are all there). */
static void test_view_carries_the_settings(void **state)
{
    struct sched_world *w = *state;
    configure(w);
    json_t *view = rd_sched__view_settings(&w->s);
    assert_non_null(view);
    char *text = json_dumps(view, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(view);
    assert_non_null(strstr(text, "\"prediction\":{\"drains_per_minute\":7,"
                                 "\"min_healthy_capacity\":40}"));
    assert_non_null(strstr(text, "\"rebalance\":{\"checkpoint_wait_ms\":12000,"
                                 "\"cooldown_ms\":90000,\"cpu_threshold\":0,"
                                 "\"enabled\":true,\"moves_per_minute\":6000,"
                                 "\"settle_ms\":0,\"skew_threshold\":15}"));
    assert_non_null(strstr(text, "\"tasks\":{\"retention_ms\":3600000}"));
    assert_non_null(strstr(text, "\"poison\":{\"max_failures\":5,\"window_ms\":120000}"));
    free(text);

    load_select(w, "hooks_settings.lua");
    four_on_a_then_b_joins(w);
    assert_int_equal(w->s.rb_moves[RD_RB_QUEUED], 2); /* the hook saw them all */
    assert_int_equal(w->s.rb_refused, 0);
}

/* The fleet of the view.nodes tests: "gone" left, "down" failed (2 slots,
 * zone z), "a" (4 slots, zone x) runs tasks 1 to 4. */
static void fleet_for_the_view(struct sched_world *w)
{
    sched_world_agent(w, "gone", 4, "{}");
    sched_world_move(w, "gone", RD_NODE_LEFT);
    sched_world_agent(w, "down", 2, "{\"zone\":\"z\"}");
    sched_world_move(w, "down", RD_NODE_FAILED);
    sched_world_agent(w, "a", 4, "{\"zone\":\"x\"}");
    for (int n = 1; n <= 4; n++)
        sched_world_task(w, n, 5, false, 1, "{}");
    sched_world_settle(w);
}

/* The view's nodes (built only when a policy reads them): every agent but
 * those that left, with the fields of policies/README.md ("The view"). */
static void test_view_nodes_are_the_fleet(void **state)
{
    struct sched_world *w = *state;
    fleet_for_the_view(w);
    json_t *nodes = rd_sched__view_nodes(&w->s);
    assert_non_null(nodes);
    char *text = json_dumps(nodes, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(nodes);
    assert_string_equal(text, "[{\"capacity\":{\"slots\":4},\"free_slots\":0,\"in_trouble\":false,"
                              "\"labels\":{\"zone\":\"x\"},\"load\":{\"slots_used\":4},"
                              "\"node_id\":\"a\",\"state\":\"alive\"},"
                              "{\"capacity\":{\"slots\":2},\"free_slots\":2,\"in_trouble\":false,"
                              "\"labels\":{\"zone\":\"z\"},\"load\":{\"slots_used\":0},"
                              "\"node_id\":\"down\",\"state\":\"failed\"}]");
    free(text);
}

/* A hook that reads view.nodes gets them, built from the fleet when read:
 * it allows the moves only when it sees every agent but the one that left,
 * each with its fields (fixtures/hooks_view_nodes.lua). */
static void test_hook_reads_the_view_nodes(void **state)
{
    struct sched_world *w = *state;
    load_select(w, "hooks_view_nodes.lua");
    fleet_for_the_view(w);
    sched_world_agent(w, "b", 4, "{\"zone\":\"y\"}");
    sched_world_settle(w);
    assert_int_equal(w->s.rb_moves[RD_RB_QUEUED], 2); /* the hook saw them as they are */
    assert_int_equal(w->s.rb_policy_errors, 0);
    assert_int_equal(used_on(w, "a"), 2);
    assert_int_equal(used_on(w, "b"), 2);
}

/* on_conflict's view is the view's settings without the nodes (building
 * and converting the fleet for every conflict costs in proportion to it):
 * the hook answers keep_newer only when it sees just that. */
static void test_on_conflict_view_is_the_settings_without_nodes(void **state)
{
    struct sched_world *w = *state;
    configure(w);
    load_select(w, "hooks_conflict_view.lua");
    sched_world_agent(w, "a", 4, "{}");
    const char *id = sched_world_task(w, 1, 5, false, 1, "{}");
    sched_world_settle(w);
    struct rd_conflict_write cw = {.conflict_id = "c0000000-0000-4000-8000-000000000001",
                                   .kind = RD_CONFLICT_CHECKPOINT,
                                   .attempt = 1,
                                   .version = 3,
                                   .node_id = "a"};
    struct rd_conflict_decision d;
    rd_sched_conflict_decide(&w->s, sched_world_get(w, id), &cw, &d);
    assert_int_equal(d.resolved_by, RD_CONFLICT_BY_POLICY);
    assert_int_equal(d.resolution, RD_CONFLICT_KEEP_NEWER);
    assert_int_equal(w->policy_errors, 0);
}

#define MS 1000000ULL
static uint64_t fake_now = 1000 * MS;
static uint64_t fake_clock(void)
{
    return fake_now;
}

/* "a" runs four queued tasks; "b" and "c" join, and a detector holds "b"
 * in trouble (silent since it registered; in its grace, so not suspect
 * yet): the load evens out onto "c" alone; once "b" beats again, the skew
 * left moves a task to it. */
static void test_agent_in_trouble_is_no_target(void **state)
{
    struct sched_world *w = *state;
    sched_world_analysis(w, fake_clock);
    sched_world_agent(w, "a", 4, "{}");
    for (int n = 1; n <= 4; n++)
        sched_world_task(w, n, 5, false, 1, "{}");
    sched_world_settle(w);
    sched_world_agent(w, "b", 4, "{}");
    sched_world_agent(w, "c", 4, "{}");
    sched_world_touch(w, "b", fake_now, rd_config_lease_ms(&w->cfg) * MS);
    sched_world_observe(w, "b", RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    assert_int_equal(w->log.n, 0); /* in grace: nothing proposed */
    sched_world_settle(w);
    assert_int_equal(rd_fsm_node(&w->fsm, "b", 1)->state, RD_NODE_ALIVE);
    assert_int_equal(used_on(w, "b"), 0);
    assert_int_equal(used_on(w, "c"), 2);
    assert_int_equal(used_on(w, "a"), 2);

    /* Its trouble over, it is a receiver again: the skew (50 %) moves a
     * task to it once the plan that found nothing to move has waited its
     * backoff (a second, by the real clock: passed here). */
    sched_world_observe(w, "b", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    w->s.rb_quiet_until_ns = w->s.rb_rescan_ns = 0;
    sched_world_settle(w);
    assert_true(used_on(w, "b") >= 1);
}

/* Disabled, or while degraded: nothing moves. */
static void test_disabled_moves_nothing(void **state)
{
    struct sched_world *w = *state;
    w->cfg.fault_tolerance.rebalance.enabled = false;
    four_on_a_then_b_joins(w);
    assert_int_equal(used_on(w, "a"), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_evens_the_load),
        cmocka_unit_test(test_plan_leaves_even_fleets_alone),
        cmocka_unit_test(test_plan_respects_limits_and_labels),
        cmocka_unit_test(test_plan_offers_queued_then_low_priority),
        cmocka_unit_test(test_plan_follows_cpu),
        cmocka_unit_test(test_plan_stops_at_its_budget),
        cmocka_unit_test(test_plan_agrees_with_the_old_planner),
        cmocka_unit_test_setup_teardown(test_fleet_evens_out_after_a_storm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_fleet_is_read_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_running_task_moves_at_its_next_checkpoint, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_broken_hook_moves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moves_are_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cooldown_holds_across_a_leader_change, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_holds_across_a_leader_change, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bucket_seed_replays_the_audited_moves, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_view_carries_the_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_nodes_are_the_fleet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_reads_the_view_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_conflict_view_is_the_settings_without_nodes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_disabled_moves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_in_trouble_is_no_target, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
