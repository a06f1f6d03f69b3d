/*
 * What a heartbeat answer hands over (recover/handover.c) on a fake log:
 * the node's tasks not started yet, most urgent first, each told once and
 * again only after one lease without a start, then after 2, 4 and 8 leases;
 * a started task is not told again; a new attempt (the agent registered
 * again) is told at once, with the checkpoint to resume from.
 */
#include "cmocka_all.h"

#include "sched_world.h"

#define MS 1000000ULL

/* The answer to a heartbeat of agent "a" arriving at `now`. */
static size_t handover(struct sched_world *w, uint64_t now, struct rd_handover out[8])
{
    const struct rd_node *n = rd_fsm_node(&w->fsm, "a", 1);
    assert_non_null(n);
    assert_true(n->n_tasks <= 8);
    struct rd_soft *soft = rd_registry_touch(&w->registry, "a", 1, n->epoch, 0, 0);
    assert_non_null(soft);
    return rd_sched_handover(&w->s, n, soft, now, out);
}

static void test_told_once_most_urgent_first(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 4, "{}");
    const char *low = sched_world_task(w, 1, 1, false, 1, "{}");
    const char *high = sched_world_task(w, 2, 9, false, 1, "{}");
    const char *crit = sched_world_task(w, 3, 5, true, 1, "{}");
    sched_world_settle(w);
    const uint64_t lease = rd_config_lease_ms(&w->cfg) * MS, t0 = 1000 * MS;
    struct rd_handover out[8];
    assert_int_equal(handover(w, t0, out), 3);
    assert_string_equal(out[0].task->id, crit);
    assert_string_equal(out[1].task->id, high);
    assert_string_equal(out[2].task->id, low);
    assert_null(out[0].ckpt);
    /* Not again in the answers that follow within a lease. */
    assert_int_equal(handover(w, t0 + 1, out), 0);
    assert_int_equal(handover(w, t0 + lease - 1, out), 0);
    /* `high` starts (its first checkpoint commits): not told again. */
    sched_world_checkpoint(w, high, 1);
    assert_int_equal(handover(w, t0 + lease, out), 2);
    assert_string_equal(out[0].task->id, crit);
    assert_string_equal(out[1].task->id, low);
    /* Then after 2, 4, 8, 8 leases. */
    uint64_t at = t0 + lease;
    static const uint64_t gaps[] = {2, 4, 8, 8};
    for (size_t i = 0; i < sizeof(gaps) / sizeof(gaps[0]); i++) {
        assert_int_equal(handover(w, at + gaps[i] * lease - 1, out), 0);
        at += gaps[i] * lease;
        assert_int_equal(handover(w, at, out), 2);
    }
}

static void test_new_attempt_told_at_once_with_its_checkpoint(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 2, "{}");
    const char *t = sched_world_task(w, 1, 5, false, 1, "{}");
    sched_world_settle(w);
    struct rd_handover out[8];
    assert_int_equal(handover(w, 10 * MS, out), 1);
    assert_int_equal(out[0].task->attempt, 1);
    sched_world_checkpoint(w, t, 1);
    assert_int_equal(handover(w, 11 * MS, out), 0);
    /* The agent registers again: its task comes back as attempt 2 under
     * the new epoch, told in the first answer, resuming from version 1. */
    sched_world_agent(w, "a", 2, "{}");
    rd_sched_node_registered(&w->s, "a", 1);
    sched_world_settle(w);
    assert_int_equal(sched_world_get(w, t)->attempt, 2);
    assert_int_equal(handover(w, 12 * MS, out), 1);
    assert_string_equal(out[0].task->id, t);
    assert_int_equal(out[0].task->attempt, 2);
    assert_non_null(out[0].ckpt);
    assert_int_equal(out[0].ckpt->version, 1);
    assert_int_equal(handover(w, 13 * MS, out), 0);
    /* A new leadership forgets what was told: told at once. */
    rd_registry_untell_all(&w->registry);
    assert_int_equal(handover(w, 14 * MS, out), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_told_once_most_urgent_first, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_new_attempt_told_at_once_with_its_checkpoint,
                                        sched_world_setup, sched_world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
