/*
 * The reclaim of stranded tasks (recover/sched.c) on a fake log: an agent
 * that registers again while it holds a task gets it back as a new attempt
 * under its new epoch; a pass looks only at the nodes that registered again
 * since (rd_sched_node_registered), and at every node once per leadership,
 * so its cost does not grow with the fleet.
 */
#include "cmocka_all.h"

#include "sched_world.h"

/* Agent "a" holds task 1 under epoch 1, then registers again (epoch 2)
 * without the scheduler being told yet. */
static const char *stranded_task(struct sched_world *w)
{
    sched_world_agent(w, "a", 2, "{}");
    const char *t = sched_world_task(w, 1, 5, false, 1, "{}");
    rd_sched_pass(&w->s);
    fake_log_step(&w->log);
    const struct rd_task *task = sched_world_get(w, t);
    assert_string_equal(task->node_id, "a");
    assert_int_equal(task->node_epoch, 1);
    assert_int_equal(task->attempt, 1);
    sched_world_agent(w, "a", 2, "{}"); /* epoch 2 */
    assert_int_equal(rd_fsm_node(&w->fsm, "a", 1)->epoch, 2);
    return t;
}

static void pass_and_commit(struct sched_world *w)
{
    rd_sched_pass(&w->s);
    fake_log_step(&w->log);
}

static void test_registered_again_gets_its_task_back(void **state)
{
    struct sched_world *w = *state;
    const char *t = stranded_task(w);
    rd_sched_node_registered(&w->s, "a", 1);
    pass_and_commit(w);
    const struct rd_task *task = sched_world_get(w, t);
    assert_string_equal(task->node_id, "a"); /* its slot was held for it */
    assert_int_equal(task->node_epoch, 2);
    assert_int_equal(task->attempt, 2);
    assert_int_equal(w->s.reclaimed_total, 1);
    /* Clean now: the node is no longer looked at. */
    pass_and_commit(w);
    assert_int_equal(w->s.n_reclaim, 0);
    assert_int_equal(w->s.reclaimed_total, 1);
}

static void test_a_pass_looks_only_at_nodes_registered_again(void **state)
{
    struct sched_world *w = *state;
    const char *t = stranded_task(w);
    /* Not told: the pass does not walk the fleet to find it. */
    pass_and_commit(w);
    assert_int_equal(sched_world_get(w, t)->node_epoch, 1);
    assert_int_equal(w->s.reclaimed_total, 0);
    rd_sched_node_registered(&w->s, "a", 1);
    pass_and_commit(w);
    assert_int_equal(sched_world_get(w, t)->node_epoch, 2);
    assert_int_equal(w->s.reclaimed_total, 1);
}

static void test_a_new_leadership_looks_at_every_node(void **state)
{
    struct sched_world *w = *state;
    const char *t = stranded_task(w);
    pass_and_commit(w);
    assert_int_equal(w->s.reclaimed_total, 0);
    /* Leadership starts again (what a replica that wins an election does). */
    rd_sched_start(&w->s);
    rd_sched_stop(&w->s);
    uv_run(&w->loop, UV_RUN_NOWAIT); /* closes the pass timer */
    pass_and_commit(w);
    assert_int_equal(sched_world_get(w, t)->node_epoch, 2);
    assert_int_equal(w->s.reclaimed_total, 1);
}

/* A node that left is forgotten by the walk. */
static void test_a_departed_node_is_dropped(void **state)
{
    struct sched_world *w = *state;
    pass_and_commit(w); /* the first pass looks at every node: none yet */
    rd_sched_node_registered(&w->s, "gone", 4);
    assert_int_equal(w->s.n_reclaim, 1);
    pass_and_commit(w);
    assert_int_equal(w->s.n_reclaim, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registered_again_gets_its_task_back, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_a_pass_looks_only_at_nodes_registered_again,
                                        sched_world_setup, sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_a_new_leadership_looks_at_every_node,
                                        sched_world_setup, sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_a_departed_node_is_dropped, sched_world_setup,
                                        sched_world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
