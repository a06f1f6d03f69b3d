/*
 * Plan execution (recover/plan.c) on a fake log: what a policy's typed plan
 * asks for is what the log gets. Side actions first (pause, isolate,
 * degrade), then the moves in the plan's order; a target the engine cannot
 * use (unknown, not working, no room) is replaced by placement's choice;
 * safe_recovery moves nothing while the lost agent's lease may still run;
 * check_consistency repairs a checkpoint that fails its checksum before its
 * task moves.
 */
#include "cmocka_all.h"

#include "policy/policy.h"
#include "sched_world.h"

#define SHIPPED  RD_SOURCE_DIR "/policies"
#define FIXTURES RD_SOURCE_DIR "/tests/unit/policy/fixtures"

/* Agent "lost" holds tasks 1..n (placed while it worked), then fails. */
static void lost_agent_with_tasks(struct sched_world *w, int n)
{
    sched_world_agent(w, "lost", (uint32_t)n, "{}");
    for (int i = 1; i <= n; i++)
        sched_world_task(w, i, 5, false, 1, "{}");
    rd_sched_pass(&w->s);
    fake_log_step(&w->log);
    for (int i = 1; i <= n; i++) {
        char id[40];
        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i);
        assert_string_equal(sched_world_get(w, id)->node_id, "lost");
    }
    sched_world_move(w, "lost", RD_NODE_FAILED);
}

static size_t todo_of(struct sched_world *w, struct rd_task **todo, size_t max)
{
    const struct rd_node *n = rd_fsm_node(&w->fsm, "lost", 4);
    size_t k = 0;
    for (struct rd_task *t = n->tasks; t != NULL && k < max; t = t->next_on_node)
        todo[k++] = t;
    return k;
}

static struct rd_action act(enum rd_action_kind kind, const char *task, const char *node)
{
    return (struct rd_action){
        .kind = kind, .task_id = (char *)task, .node_id = (char *)node, .order = 0};
}

static void test_plan_is_carried_out(void **state)
{
    struct sched_world *w = *state;
    lost_agent_with_tasks(w, 4);
    sched_world_agent(w, "b", 1, "{}");
    sched_world_agent(w, "c", 4, "{}");
    sched_world_agent(w, "draining", 8, "{}");
    sched_world_move(w, "draining", RD_NODE_DRAINING);
    const char *t1 = "00000000-0000-4000-8000-000000000001";
    const char *t2 = "00000000-0000-4000-8000-000000000002";
    const char *t3 = "00000000-0000-4000-8000-000000000003";
    const char *t4 = "00000000-0000-4000-8000-000000000004";
    struct rd_action actions[] = {
        act(RD_ACT_REASSIGN, t2, "b"),        /* a usable target */
        act(RD_ACT_REASSIGN, t3, "draining"), /* not working: placement chooses */
        act(RD_ACT_REASSIGN, t4, "b"),        /* b is full by now: placement chooses */
        act(RD_ACT_PAUSE, t1, NULL),          /* a side action: runs first */
        {.kind = RD_ACT_DEGRADE, .percent = 30},
    };
    struct rd_plan plan = {
        .strategy = "fast_recovery", .actions = actions, .n = RD_ARRAY_SIZE(actions)};
    struct rd_task *todo[8];
    size_t k = todo_of(w, todo, 8);
    uint32_t extra[8] = {0};
    const struct rd_node *lost = rd_fsm_node(&w->fsm, "lost", 4);
    assert_int_equal(rd_sched__execute(&w->s, lost, todo, k, &plan, extra), 4);
    fake_log_step(&w->log);
    assert_int_equal(sched_world_get(w, t1)->state, RD_TASK_PAUSED);
    assert_string_equal(sched_world_get(w, t2)->node_id, "b");
    assert_string_equal(sched_world_get(w, t3)->node_id, "c");
    assert_string_equal(sched_world_get(w, t4)->node_id, "c");
    for (const char *const *t = (const char *const[]){t2, t3, t4, NULL}; *t; t++) {
        assert_int_equal(sched_world_get(w, *t)->state, RD_TASK_RECOVERING);
        assert_int_equal(sched_world_get(w, *t)->attempt, 2);
    }
    assert_int_equal(w->s.performance_limit, 30);
}

/* safe_recovery never lets a task run twice: while the lost agent's lease
 * may still run, neither a reassign nor a wait moves anything; once it has
 * surely expired, both do. */
static void test_safe_recovery_waits_out_the_lease(void **state)
{
    struct sched_world *w = *state;
    lost_agent_with_tasks(w, 2);
    sched_world_agent(w, "b", 4, "{}");
    const char *t1 = "00000000-0000-4000-8000-000000000001";
    const char *t2 = "00000000-0000-4000-8000-000000000002";
    struct rd_action actions[] = {act(RD_ACT_REASSIGN, t1, NULL), act(RD_ACT_WAIT, t2, NULL)};
    struct rd_plan plan = {.strategy = "safe_recovery", .actions = actions, .n = 2};
    struct rd_task *todo[4];
    size_t k = todo_of(w, todo, 4);
    uint32_t extra[4] = {0};
    const struct rd_node *lost = rd_fsm_node(&w->fsm, "lost", 4);
    /* Leader just now, nothing heard from the agent since: the lease may run. */
    w->leader_since_ns = rd_mono_ns();
    assert_int_equal(rd_sched__execute(&w->s, lost, todo, k, &plan, extra), 0);
    assert_int_equal(w->log.n, 0);
    assert_string_equal(sched_world_get(w, t1)->node_id, "lost");
    /* Long ago: the lease has surely run out. */
    w->leader_since_ns = 1;
    assert_int_equal(rd_sched__execute(&w->s, lost, todo, k, &plan, extra), 2);
    fake_log_step(&w->log);
    assert_string_equal(sched_world_get(w, t1)->node_id, "b");
    assert_string_equal(sched_world_get(w, t2)->node_id, "b");
}

/* check_consistency: a task whose newest checkpoint fails its checksum is
 * repaired (here from its older version) and moves only after the repair
 * committed; a task whose checkpoint verifies moves at once. */
static void test_check_consistency_repairs_before_the_move(void **state)
{
    struct sched_world *w = *state;
    lost_agent_with_tasks(w, 2);
    sched_world_agent(w, "b", 4, "{}");
    const char *t1 = "00000000-0000-4000-8000-000000000001";
    const char *t2 = "00000000-0000-4000-8000-000000000002";
    for (int v = 1; v <= 2; v++) {
        for (const char *const *t = (const char *const[]){t1, t2, NULL}; *t; t++) {
            char data[32];
            snprintf(data, sizeof(data), "{\"v\":%d}", v);
            struct rd_cmd c = {.type = RD_CMD_TASK_CHECKPOINT};
            c.u.tckpt.task_id = RD_STR(*t);
            c.u.tckpt.attempt = 1;
            c.u.tckpt.version = (uint64_t)v;
            c.u.tckpt.data_json = RD_STR(data);
            c.u.tckpt.checksum = rd_checkpoint_checksum(data, strlen(data));
            c.u.tckpt.keep = 3;
            assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
        }
    }
    struct rd_checkpoint *bad = (struct rd_checkpoint *)rd_task_checkpoint(sched_world_get(w, t1));
    bad->data[2] ^= 0x01;
    struct rd_action actions[] = {act(RD_ACT_CHECK_CONSISTENCY, t1, NULL),
                                  act(RD_ACT_CHECK_CONSISTENCY, t2, NULL),
                                  act(RD_ACT_REASSIGN, t1, "b"), act(RD_ACT_REASSIGN, t2, "b")};
    struct rd_plan plan = {.strategy = "fast_recovery", .actions = actions, .n = 4};
    struct rd_task *todo[4];
    size_t k = todo_of(w, todo, 4);
    uint32_t extra[4] = {0};
    const struct rd_node *lost = rd_fsm_node(&w->fsm, "lost", 4);
    /* The repair of t1 and the move of t2. */
    assert_int_equal(rd_sched__execute(&w->s, lost, todo, k, &plan, extra), 2);
    fake_log_step(&w->log);
    assert_string_equal(sched_world_get(w, t1)->node_id, "lost");
    assert_string_equal(sched_world_get(w, t2)->node_id, "b");
    assert_int_equal(rd_task_checkpoint(sched_world_get(w, t1))->version, 1);
    /* Repaired: the next plan moves t1, with nothing more to repair. */
    k = todo_of(w, todo, 4);
    assert_int_equal(k, 1);
    assert_int_equal(rd_sched__execute(&w->s, lost, todo, k, &plan, extra), 1);
    fake_log_step(&w->log);
    assert_string_equal(sched_world_get(w, t1)->node_id, "b");
    assert_int_equal(w->fsm.n_faults, 1);
    assert_int_equal(w->fsm.faults[0]->status, RD_FAULT_RESOLVED);
}

/* A policy's isolate holds whatever the node's state is when it applies:
 * the detector moving the node (alive -> suspect -> failed) between the
 * plan and the commit does not drop the isolation (CI 2026-12-03: a
 * registered agent that never beat went suspect in between and stayed
 * un-isolated). */
static void test_isolate_survives_a_state_change_before_commit(void **state)
{
    struct sched_world *w = *state;
    lost_agent_with_tasks(w, 1);
    sched_world_agent(w, "accomplice", 2, "{}");
    struct rd_action actions[] = {act(RD_ACT_ISOLATE, NULL, "accomplice")};
    struct rd_plan plan = {.strategy = "isolator", .actions = actions, .n = 1};
    struct rd_task *todo[2];
    size_t k = todo_of(w, todo, 2);
    uint32_t extra[2] = {0};
    const struct rd_node *lost = rd_fsm_node(&w->fsm, "lost", 4);
    assert_true(rd_sched__execute(&w->s, lost, todo, k, &plan, extra) >= 1);
    /* The detector's transition commits first. */
    sched_world_move(w, "accomplice", RD_NODE_SUSPECT);
    fake_log_step(&w->log);
    assert_int_equal(rd_fsm_node(&w->fsm, "accomplice", 10)->state, RD_NODE_ISOLATED);
}

/* The shipped policies with fixtures/<fixture> as fast_recovery.lua. */
static void load_strategy(struct sched_world *w, const char *fixture)
{
    char dir[] = "/tmp/rd_plan_policy_XXXXXX", cmd[512], err[RD_POLICY_ERRLEN];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "cp %s/*.lua %s/ && cp %s/%s %s/fast_recovery.lua", SHIPPED, dir,
             FIXTURES, fixture, dir);
    assert_int_equal(system(cmd), 0);
    if (rd_policy_load(dir, 50, 16u << 20, &w->policy, err, sizeof(err)) != 0)
        fail_msg("loading %s: %s", dir, err);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* The recovery pass gives the strategy view.nodes when it reads them (built
 * then, once for the pass's two calls): every task of the two lost agents
 * goes where the policy chose from them, the agent labelled pick=yes, not
 * where placement would (the larger, emptier "x"). */
static void test_recovery_pass_reads_the_view_nodes(void **state)
{
    struct sched_world *w = *state;
    load_strategy(w, "pick_from_nodes.lua");
    sched_world_agent(w, "lost1", 2, "{}");
    sched_world_agent(w, "lost2", 2, "{}");
    for (int i = 1; i <= 4; i++)
        sched_world_task(w, i, 5, false, 1, "{}");
    sched_world_settle(w);
    sched_world_move(w, "lost1", RD_NODE_FAILED);
    sched_world_move(w, "lost2", RD_NODE_FAILED);
    sched_world_agent(w, "x", 16, "{}");
    sched_world_agent(w, "pick", 4, "{\"pick\":\"yes\"}");
    sched_world_settle(w);
    for (int i = 1; i <= 4; i++) {
        char id[40];
        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i);
        assert_string_equal(sched_world_get(w, id)->node_id, "pick");
    }
    assert_int_equal(w->policy_errors, 0);
    rd_policy_free(w->policy);
    w->policy = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plan_is_carried_out, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_safe_recovery_waits_out_the_lease, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_check_consistency_repairs_before_the_move,
                                        sched_world_setup, sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_isolate_survives_a_state_change_before_commit,
                                        sched_world_setup, sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_pass_reads_the_view_nodes, sched_world_setup,
                                        sched_world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
