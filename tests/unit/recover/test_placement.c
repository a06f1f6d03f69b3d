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

/* Moves task `id` to `node` (or back to pending with ""), as a commit would. */
static void assign(struct sched_world *w, const char *id, const char *node)
{
    const struct rd_task *t = sched_world_get(w, id);
    const struct rd_node *n = node[0] ? rd_fsm_node(&w->fsm, node, strlen(node)) : NULL;
    struct rd_cmd c = {.type = RD_CMD_TASK_ASSIGN};
    c.u.tassign.task_id = RD_STR(id);
    c.u.tassign.attempt = t->attempt;
    c.u.tassign.node_id = RD_STR(node);
    c.u.tassign.node_epoch = n ? n->epoch : 0;
    c.u.tassign.state = RD_TASK_ASSIGNED;
    fake_log_apply(&w->log, c); /* refused when the node does not work: fine */
}

static uint64_t next(uint64_t *rng)
{
    *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return *rng >> 33;
}

/* The placement index (rd_sched__choose) against scoring every node
 * (rd_sched__choose_scan): a fleet of mixed sizes (some of 0 slots), states
 * and labels, tasks of mixed sizes and labels (some that match no agent),
 * limits from 1 % to 100 %; between choices the pass's load grows (through
 * the index, and behind its back), the machine changes (placements, agents
 * failing and coming back, a new agent) and passes begin afresh. Every
 * choice is the scan's. */
static void test_index_chooses_as_the_scan(void **state)
{
    struct sched_world *w = *state;
    enum { NODES = 150, TASKS = 64 };
    static const char *labels[] = {"{}", "{\"zone\":\"a\"}", "{\"zone\":\"b\"}",
                                   "{\"zone\":\"c\"}"};
    static const int states[] = {RD_NODE_ALIVE,    RD_NODE_ALIVE,  RD_NODE_PROBATION,
                                 RD_NODE_DRAINING, RD_NODE_FAILED, RD_NODE_SUSPECT};
    static const unsigned limits[] = {100, 100, 80, 50, 10, 1};
    uint64_t rng = 42;
    char node[16];
    for (int i = 0; i < NODES; i++) {
        snprintf(node, sizeof(node), "n%03d", i);
        sched_world_agent(w, node, (uint32_t)(next(&rng) % 41), labels[next(&rng) % 3]);
    }
    const char *ids[TASKS];
    static char idbuf[TASKS][40];
    for (int i = 0; i < TASKS; i++) {
        ids[i] = strcpy(idbuf[i],
                        sched_world_task(w, i, (int)(next(&rng) % 10), false,
                                         1 + (uint32_t)(next(&rng) % 8), labels[next(&rng) % 4]));
    }
    /* Some load on the agents before the states are mixed. */
    for (int i = 0; i < 400; i++) {
        snprintf(node, sizeof(node), "n%03d", (int)(next(&rng) % NODES));
        assign(w, ids[next(&rng) % TASKS], node);
    }
    for (int i = 0; i < NODES; i++)
        if (next(&rng) % 3 == 0) {
            snprintf(node, sizeof(node), "n%03d", i);
            sched_world_move(w, node, states[next(&rng) % RD_ARRAY_SIZE(states)]);
        }
    uint32_t *extra = calloc(NODES + 1, sizeof(*extra));
    assert_non_null(extra);
    unsigned chosen = 0, none = 0;
    for (int step = 0; step < 4000; step++) {
        const struct rd_task *t = sched_world_get(w, ids[next(&rng) % TASKS]);
        unsigned limit = limits[next(&rng) % RD_ARRAY_SIZE(limits)];
        size_t want = rd_sched__choose_scan(&w->s, t, extra, limit);
        size_t got = rd_sched__choose(&w->s, t, extra, limit);
        if (got != want)
            fail_msg("step %d: task %s (%u slots, %s) at %u %%: index chose %zu, scan %zu", step,
                     t->id, t->slots, t->labels_json, limit, got, want);
        if (got == SIZE_MAX) {
            none++;
            continue;
        }
        chosen++;
        switch (next(&rng) % 8) {
        case 0: /* load added behind the index's back: looser, never wrong */
            extra[got] += t->slots;
            break;
        case 1: /* the machine changed: a placement, an agent's state */
            snprintf(node, sizeof(node), "n%03d", (int)(next(&rng) % NODES));
            if (next(&rng) % 2)
                assign(w, t->id, node);
            else
                sched_world_move(w, node, states[next(&rng) % RD_ARRAY_SIZE(states)]);
            break;
        case 2: /* a new pass */
            rd_sched__labels_reset(&w->s);
            memset(extra, 0, (NODES + 1) * sizeof(*extra));
            break;
        default:
            rd_sched__add_load(&w->s, extra, got, t->slots);
        }
        if (step == 2000) { /* a new agent (the table grows and shifts) */
            sched_world_agent(w, "m-new", 16, "{}");
            rd_sched__labels_reset(&w->s);
            memset(extra, 0, (NODES + 1) * sizeof(*extra));
        }
    }
    /* Both outcomes were compared many times. */
    assert_true(chosen > 1000);
    assert_true(none > 300);
    free(extra);
}

/* When every agent is full the pass stops looking (it used to score every
 * node for every pending task), but a poison task deep in the queue is
 * still quarantined rather than left pending. */
static void test_full_agents_end_the_pass_poison_still_quarantined(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 1, "{}");
    sched_world_agent(w, "b", 1, "{}");
    /* A task that failed max_failures times within the window. */
    const char *poison = sched_world_task(w, 1, 0, false, 1, "{}");
    for (unsigned k = 0; k < w->cfg.fault_tolerance.poison.max_failures; k++) {
        assign(w, poison, "a");
        struct rd_cmd c = {.type = RD_CMD_TASK_FINISH};
        c.u.tfinish.task_id = RD_STR(poison);
        c.u.tfinish.attempt = sched_world_get(w, poison)->attempt;
        c.u.tfinish.state = RD_TASK_PENDING;
        c.u.tfinish.result_json = RD_STR("boom");
        assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
    }
    assert_int_equal(sched_world_get(w, poison)->state, RD_TASK_PENDING);
    for (int i = 2; i < 40; i++)
        sched_world_task(w, i, 5, false, 1, "{}");
    unsigned before = w->log.proposals;
    rd_sched_pass(&w->s);
    /* Two placements (priority 5 first) and the quarantine: nothing else. */
    assert_int_equal(w->log.proposals - before, 3);
    fake_log_step(&w->log);
    assert_int_equal(w->s.placements_total, 2);
    assert_int_equal(sched_world_get(w, poison)->state, RD_TASK_FAILED);
    assert_int_equal(rd_fsm_node(&w->fsm, "a", 1)->slots_in_use, 1);
    assert_int_equal(rd_fsm_node(&w->fsm, "b", 1)->slots_in_use, 1);
    assert_int_equal(rd_fsm_pending_count(&w->fsm), 36);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_most_urgent_first_where_it_fits, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_follower_places_nothing, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_index_chooses_as_the_scan, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_full_agents_end_the_pass_poison_still_quarantined,
                                        sched_world_setup, sched_world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
