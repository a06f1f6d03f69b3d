/*
 * Placement (recover/placement.c) on a fake log: pending tasks go to working
 * agents most urgent first (critical, priority, age), only where the task's
 * labels match and its slots fit, least loaded first; a draining agent gets
 * nothing; a task that fits nowhere waits.
 */
#include "cmocka_all.h"

#include "sched_world.h"

static void assert_on(struct sched_world *w, const char *task, const char *node)
{
    const struct rd_task *t = sched_world_get(w, task);
    if (strcmp(t->node_id, node) != 0)
        fail_msg("task %s is on '%s', expected '%s'", task, t->node_id, node);
}

static void test_most_urgent_first_where_it_fits(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 2, "{\"zone\":\"a\"}");
    sched_world_agent(w, "b", 4, "{\"zone\":\"b\"}");
    sched_world_agent(w, "d", 8, "{\"zone\":\"b\"}");
    sched_world_move(w, "d", RD_NODE_DRAINING);
    const char *low = sched_world_task(w, 1, 1, false, 1, "{}");
    const char *crit = sched_world_task(w, 2, 0, true, 1, "{}");
    const char *high = sched_world_task(w, 3, 9, false, 1, "{}");
    const char *zone_a = sched_world_task(w, 4, 5, false, 1, "{\"zone\":\"a\"}");
    const char *big = sched_world_task(w, 5, 5, false, 3, "{}");

    rd_sched_pass(&w->s);
    fake_log_step(&w->log);

    /* The critical task first, on the least loaded (a tie: the first). */
    assert_on(w, crit, "a");
    /* Priority 9 next: b is now less loaded than a. */
    assert_on(w, high, "b");
    /* Labels: only a has zone a. */
    assert_on(w, zone_a, "a");
    /* Three slots: only b has them left. */
    assert_on(w, big, "b");
    /* Priority 1 comes last and finds a and b full: it waits. */
    assert_on(w, low, "");
    assert_int_equal(sched_world_get(w, low)->state, RD_TASK_PENDING);
    /* The draining agent got nothing. */
    const struct rd_node *d = rd_fsm_node(&w->fsm, "d", 1);
    assert_int_equal(d->slots_in_use, 0);
    assert_int_equal(w->s.placements_total, 4);

    /* Room appears: the next pass places it. */
    sched_world_agent(w, "c", 1, "{}");
    rd_sched_pass(&w->s);
    fake_log_step(&w->log);
    assert_on(w, low, "c");
}

/* Only the leader places; a follower's pass proposes nothing. */
static void test_follower_places_nothing(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 2, "{}");
    const char *t = sched_world_task(w, 1, 5, false, 1, "{}");
    w->log.follower = true;
    rd_sched_pass(&w->s);
    assert_int_equal(w->log.proposals, 0);
    w->log.follower = false;
    rd_sched_pass(&w->s);
    fake_log_step(&w->log);
    assert_on(w, t, "a");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_most_urgent_first_where_it_fits, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_follower_places_nothing, sched_world_setup,
                                        sched_world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
