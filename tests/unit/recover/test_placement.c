/*
 * Placement (recover/placement.c) on a fake log: pending tasks go to working
 * agents most urgent first (critical, priority, age), only where the task's
 * labels match and its slots fit, least loaded first; a draining agent gets
 * nothing; a task that fits nowhere waits. An agent the detectors hold in
 * trouble gets nothing either, though the state machine still says it works
 * (its suspect or failed transition not committed yet, or not proposed: a
 * new leader's grace), neither new work nor a recovery's moves, until its
 * verdicts are ok again.
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

/* A heartbeat of agent `id` that reached the leader at its time `wall_ms`. */
static void heartbeat(struct sched_world *w, const char *id, int64_t wall_ms)
{
    sched_world_touch(w, id, rd_mono_ns(), 0);
    struct rd_soft *soft = rd_registry_get(&w->registry, id, strlen(id));
    assert_non_null(soft);
    rd_registry_heartbeat(&w->registry, soft, rd_mono_ns(), wall_ms, 0, NULL);
}

/* poison.max_failures 1: an agent's death is the task's first failure, and
 * it is quarantined at once; unless the agent never heard of the attempt
 * (its last heartbeat came before the task was given to it: it died before
 * it could be told), then the task just moves, with no failure counted. A
 * mass crash moved tasks onto agents dead but not yet detected, three in a
 * row for about 1% of them, and failed those as poison tasks. */
static void test_agent_that_never_heard_of_the_task_does_not_poison_it(void **state)
{
    struct sched_world *w = *state;
    w->cfg.fault_tolerance.poison.max_failures = 1;
    sched_world_agent(w, "a", 1, "{}");
    sched_world_agent(w, "b", 1, "{}");
    sched_world_agent(w, "c", 4, "{}");
    const char *never_told = sched_world_task(w, 1, 5, false, 1, "{}");
    const char *told = sched_world_task(w, 2, 5, false, 1, "{}");
    /* a's last heartbeat came 5 s before its task was given to it... */
    heartbeat(w, "a", rd_now_ms() - 5000);
    assign(w, never_told, "a");
    assign(w, told, "b");
    /* ...b's after it. */
    heartbeat(w, "b", sched_world_get(w, told)->updated_at);
    assert_on(w, never_told, "a");
    assert_on(w, told, "b");
    sched_world_move(w, "a", RD_NODE_FAILED);
    sched_world_move(w, "b", RD_NODE_FAILED);
    sched_world_settle(w);
    const struct rd_task *t = sched_world_get(w, never_told);
    assert_on(w, never_told, "c");
    assert_int_equal(t->failures, 0);
    t = sched_world_get(w, told);
    assert_int_equal(t->state, RD_TASK_FAILED);
    assert_non_null(strstr(t->result_json, "poison"));
    assert_int_equal(w->s.poison_total, 1);
}

/* An agent registers again (its lease ran out behind a slow link) and its
 * task is reclaimed onto its new epoch; no heartbeat of that epoch ever
 * reaches the leader (the agent never saw the registration's answer, it
 * registers again), and it fails: it never heard of the reclaimed attempt,
 * which heartbeat answers of the new epoch alone could have handed it, so
 * that death is no failure of the task (chaos seed 1: every such round
 * counted, and a task nobody ran was failed as poison). A death after a
 * heartbeat of the new epoch still counts. */
static void test_agent_silent_since_it_registered_again_does_not_poison(void **state)
{
    struct sched_world *w = *state;
    w->cfg.fault_tolerance.poison.max_failures = 1;
    sched_world_agent(w, "a", 1, "{}");
    sched_world_agent(w, "b", 1, "{}");
    sched_world_agent(w, "c", 4, "{}");
    const char *silent = sched_world_task(w, 1, 5, false, 1, "{}");
    const char *heard = sched_world_task(w, 2, 5, false, 1, "{}");
    assign(w, silent, "a");
    assign(w, heard, "b");
    heartbeat(w, "a", sched_world_get(w, silent)->updated_at);
    heartbeat(w, "b", sched_world_get(w, heard)->updated_at);
    /* Both register again: new epochs, soft state afresh (as the leader's
     * observer of the registration makes it), the tasks reclaimed onto the
     * new epochs as new attempts. */
    sched_world_agent(w, "a", 1, "{}");
    sched_world_agent(w, "b", 1, "{}");
    sched_world_touch(w, "a", rd_mono_ns(), 0);
    sched_world_touch(w, "b", rd_mono_ns(), 0);
    sched_world_settle(w);
    assert_on(w, silent, "a");
    assert_on(w, heard, "b");
    assert_int_equal(sched_world_get(w, silent)->attempt, 2);
    assert_int_equal(sched_world_get(w, silent)->failures, 0);
    /* b's heartbeat of its new epoch comes after the reclaim; a's never. */
    heartbeat(w, "b", sched_world_get(w, heard)->updated_at);
    sched_world_move(w, "a", RD_NODE_FAILED);
    sched_world_move(w, "b", RD_NODE_FAILED);
    sched_world_settle(w);
    const struct rd_task *t = sched_world_get(w, silent);
    assert_on(w, silent, "c");
    assert_int_equal(t->failures, 0);
    t = sched_world_get(w, heard);
    assert_int_equal(t->state, RD_TASK_FAILED);
    assert_non_null(strstr(t->result_json, "poison"));
    assert_int_equal(w->s.poison_total, 1);
}

/* ---- agents the detectors hold in trouble ---------------------------------- */

#define MS 1000000ULL
static uint64_t fake_now = 1000 * MS;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static int trouble_setup(void **state)
{
    sched_world_setup(state);
    sched_world_analysis(*state, fake_clock);
    return 0;
}

/* The slots that placements in flight (proposed, not committed) hold on
 * `node`, as the next pass counts them. */
static uint32_t in_flight_on(struct sched_world *w, const char *node)
{
    uint32_t extra[8] = {0};
    assert_true(w->fsm.n_nodes <= 8);
    rd_sched__inflight_load(&w->s, extra);
    size_t i = rd_sched__node_index(&w->fsm, node);
    assert_true(i != SIZE_MAX);
    return extra[i];
}

static int state_of(struct sched_world *w, const char *node)
{
    return rd_fsm_node(&w->fsm, node, strlen(node))->state;
}

/* Agents "a" and "b" (a first: it wins a tie); a detector holds "a" in
 * trouble, and the analysis's proposal to make it suspect or failed is on
 * its way through the log (not committed). A critical task placed now goes
 * to "b", for every signal that leads there: heartbeats missing or late,
 * the probe refused, the metrics failed. Before the fix it went to "a"
 * (alive by the machine, least loaded, first): a silent agent (the
 * sanitizer run of test_degraded_service_under_partition). */
static void test_agent_in_trouble_gets_no_task(void **state)
{
    (void)state;
    static const struct {
        int signal, verdict, cause, state;
    } cases[] = {
        {RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0, RD_NODE_FAILED},
        {RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0, RD_NODE_SUSPECT},
        {RD_SIG_PROBE, RD_VERDICT_FAILED, RD_PROBE_REFUSED, RD_NODE_FAILED},
        {RD_SIG_PROBE, RD_VERDICT_SUSPECT, RD_PROBE_TIMEOUT, RD_NODE_SUSPECT},
        {RD_SIG_METRICS, RD_VERDICT_FAILED, 0, RD_NODE_FAILED},
    };
    for (size_t k = 0; k < RD_ARRAY_SIZE(cases); k++) {
        void *st;
        trouble_setup(&st);
        struct sched_world *w = st;
        sched_world_agent(w, "a", 4, "{}");
        sched_world_agent(w, "b", 4, "{}");
        sched_world_touch(w, "a", fake_now, 0);
        sched_world_touch(w, "b", fake_now, 0);
        sched_world_observe(w, "a", cases[k].signal, cases[k].verdict, cases[k].cause);
        assert_int_equal(w->log.n, 1); /* its transition, proposed */
        assert_int_equal(state_of(w, "a"), RD_NODE_ALIVE);
        const char *t = sched_world_task(w, 1, 5, true, 1, "{}");
        rd_sched_pass(&w->s);
        if (in_flight_on(w, "a") != 0)
            fail_msg("case %zu: the task is placed on 'a', which a detector holds in trouble", k);
        assert_int_equal(in_flight_on(w, "b"), 1);
        fake_log_step(&w->log);
        assert_int_equal(state_of(w, "a"), cases[k].state);
        assert_on(w, t, "b");
        sched_world_teardown(&st);
    }
}

/* The verdict clears (a late heartbeat came after all) while the failure
 * it caused is still on its way through the log: the agent fails all the
 * same when it commits, so it gets nothing meanwhile. */
static void test_agent_whose_failure_is_in_flight_gets_no_task(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 4, "{}");
    sched_world_agent(w, "b", 4, "{}");
    sched_world_touch(w, "a", fake_now, 0);
    sched_world_touch(w, "b", fake_now, 0);
    sched_world_observe(w, "a", RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    sched_world_observe(w, "a", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    assert_int_equal(state_of(w, "a"), RD_NODE_ALIVE);
    const char *t = sched_world_task(w, 1, 5, false, 1, "{}");
    rd_sched_pass(&w->s);
    assert_int_equal(in_flight_on(w, "a"), 0);
    fake_log_step(&w->log);
    assert_int_equal(state_of(w, "a"), RD_NODE_FAILED);
    assert_on(w, t, "b");
}

/* A new leader gives every agent a lease before judging it: a silent agent
 * stays alive by the machine, nothing proposed, for that long. Neither new
 * work nor a lost agent's tasks (recovery's choice, or a policy's target)
 * go to it; once its heartbeats are on time again it takes work as before
 * (the least loaded: it is first again). */
static void test_silent_agent_in_grace_gets_nothing_until_it_beats(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 4, "{}");
    sched_world_agent(w, "b", 4, "{}");
    sched_world_agent(w, "lost", 4, "{}");
    const char *held = sched_world_task(w, 1, 5, false, 1, "{}");
    const char *held2 = sched_world_task(w, 2, 5, false, 1, "{}");
    assign(w, held, "lost");
    assign(w, held2, "lost");
    assert_on(w, held, "lost");
    assert_on(w, held2, "lost");
    uint64_t lease = rd_config_lease_ms(&w->cfg) * MS;
    sched_world_touch(w, "a", fake_now, lease);
    sched_world_touch(w, "b", fake_now, lease);
    sched_world_observe(w, "a", RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    assert_int_equal(w->log.n, 0); /* in grace: nothing proposed */

    /* A policy's target is refused the same way: the placement's choice. */
    uint32_t extra[3] = {0};
    struct rd_task *t2 = (struct rd_task *)sched_world_get(w, held2);
    sched_world_move(w, "lost", RD_NODE_FAILED);
    assert_int_equal(
        rd_sched__move_task(&w->s, t2, rd_fsm_node(&w->fsm, "lost", 4), "a", extra, 0, "test"), 1);
    fake_log_step(&w->log);
    assert_on(w, held2, "b");

    /* New work, and the rest of the lost agent's tasks (its recovery run). */
    const char *fresh = sched_world_task(w, 3, 5, true, 1, "{}");
    sched_world_settle(w);
    assert_on(w, fresh, "b");
    assert_on(w, held, "b");
    assert_int_equal(rd_fsm_node(&w->fsm, "a", 1)->slots_in_use, 0);
    assert_int_equal(state_of(w, "a"), RD_NODE_ALIVE);

    /* Beating again: it takes work. */
    sched_world_observe(w, "a", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    const char *later = sched_world_task(w, 4, 5, false, 1, "{}");
    sched_world_settle(w);
    assert_on(w, later, "a");
}

/* A policy sees what placement keeps off: the view's in_trouble is true
 * for an agent the detectors hold (its failure on its way through the
 * log), false for the others, and false again once it beats on time. */
static void test_view_says_which_agents_are_in_trouble(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 4, "{}");
    sched_world_agent(w, "b", 4, "{}");
    sched_world_touch(w, "a", fake_now, 0);
    sched_world_touch(w, "b", fake_now, 0);
    sched_world_observe(w, "a", RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    json_t *nodes = rd_sched__view_nodes(&w->s);
    assert_non_null(nodes);
    assert_int_equal(json_array_size(nodes), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *n = json_array_get(nodes, i);
        bool is_a = strcmp(json_string_value(json_object_get(n, "node_id")), "a") == 0;
        assert_true(json_is_boolean(json_object_get(n, "in_trouble")));
        assert_int_equal(json_is_true(json_object_get(n, "in_trouble")), is_a);
        assert_string_equal(json_string_value(json_object_get(n, "state")), "alive");
    }
    json_decref(nodes);
    sched_world_observe(w, "a", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    fake_log_step(&w->log);
    nodes = rd_sched__view_nodes(&w->s);
    assert_non_null(nodes);
    for (size_t i = 0; i < json_array_size(nodes); i++)
        assert_true(json_is_false(json_object_get(json_array_get(nodes, i), "in_trouble")));
    json_decref(nodes);
}

/* poison.max_failures 2. Task "t" dies with agent a, then with b: its
 * second death quarantines it, unless four other agents failed within the
 * mass-failure window meanwhile (the detectors' verdicts, committed: a
 * mass crash), when it takes four; its own deaths are not counted as the
 * crowd's. */
static void tell_the_analysis(void *data, const struct rd_node *n, int old_state)
{
    struct sched_world *w = data;
    rd_analysis_node_changed(&w->analysis, rd_registry_get(&w->registry, n->node_id, n->id_len), n,
                             old_state);
}

/* Agent `id` heard of `task`: a heartbeat of its epoch after the task was
 * given to it (its death is then one of the task's). */
static void hears(struct sched_world *w, const char *id, const char *task)
{
    struct rd_soft *soft = rd_registry_get(&w->registry, id, strlen(id));
    assert_non_null(soft);
    rd_registry_heartbeat(&w->registry, soft, fake_now, sched_world_get(w, task)->updated_at, 0,
                          NULL);
}

/* How the crowd of four failed, if it did: not at all, by this leader's
 * detectors, or before this leader took over (transitions already in the
 * log, which this scheduler and analysis never decided). */
enum crowd { NO_CROWD, CROWD_DETECTED, CROWD_INHERITED };

static void dies_twice(struct sched_world *w, enum crowd crowd)
{
    w->cfg.fault_tolerance.poison.max_failures = 2;
    w->cfg.fault_tolerance.partition.mass_failure_share = 100; /* the guard stays out */
    /* The analysis hears of every change as it applies, as the engine's
     * observer tells it. */
    w->fsm.on_node = tell_the_analysis;
    w->fsm.on_node_data = w;
    const char *v[] = {"v1", "v2", "v3", "v4", "a", "b"};
    for (int i = 0; i < 6; i++) {
        sched_world_agent(w, v[i], 1, "{}");
        sched_world_touch(w, v[i], fake_now, 0);
    }
    sched_world_agent(w, "c", 4, "{}");
    const char *t = sched_world_task(w, 1, 5, false, 1, "{}");
    assign(w, t, "a");
    hears(w, "a", t);
    for (int i = 0; crowd == CROWD_DETECTED && i < 4; i++)
        sched_world_observe(w, v[i], RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    for (int i = 0; crowd == CROWD_INHERITED && i < 4; i++)
        sched_world_move(w, v[i], RD_NODE_FAILED);
    if (crowd == CROWD_INHERITED)
        sched_world_new_leader(w);
    fake_log_step(&w->log);
    int64_t since = rd_now_ms() - (int64_t)w->cfg.fault_tolerance.partition.mass_failure_window_ms;
    assert_int_equal(rd_fsm_nodes_failed_since(&w->fsm, since), crowd ? 4 : 0);
    sched_world_observe(w, "a", RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    fake_log_step(&w->log); /* the failure applies; the passes move its task */
    sched_world_settle(w);
    assert_int_equal(state_of(w, "a"), RD_NODE_FAILED);
    assert_on(w, t, "b");
    assert_int_equal(sched_world_get(w, t)->failures, 1);
    hears(w, "b", t);
    sched_world_observe(w, "b", RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    fake_log_step(&w->log);
    sched_world_settle(w);
    assert_int_equal(state_of(w, "b"), RD_NODE_FAILED);
    assert_int_equal(rd_fsm_nodes_failed_since(&w->fsm, since), crowd ? 6 : 2);
}

static void test_second_death_is_poison(void **state)
{
    struct sched_world *w = *state;
    dies_twice(w, NO_CROWD);
    assert_int_equal(sched_world_get(w, "00000000-0000-4000-8000-000000000001")->state,
                     RD_TASK_FAILED);
    assert_int_equal(w->s.poison_total, 1);
}

static void test_in_a_mass_failure_a_task_takes_twice_the_deaths(void **state)
{
    struct sched_world *w = *state;
    dies_twice(w, CROWD_DETECTED);
    const char *t = "00000000-0000-4000-8000-000000000001";
    assert_on(w, t, "c");
    assert_int_equal(sched_world_get(w, t)->failures, 2);
    assert_int_equal(w->s.poison_total, 0);
}

/* A leader that took over in the middle of a mass crash (the 10,000-agent
 * storm with a hung disk: three tasks quarantined by the new leader) counts
 * the crowd the log says failed before it led. */
static void test_a_new_leader_knows_the_crowd_it_inherits(void **state)
{
    struct sched_world *w = *state;
    dies_twice(w, CROWD_INHERITED);
    const char *t = "00000000-0000-4000-8000-000000000001";
    assert_on(w, t, "c");
    assert_int_equal(sched_world_get(w, t)->failures, 2);
    assert_int_equal(w->s.poison_total, 0);
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
        cmocka_unit_test_setup_teardown(test_agent_that_never_heard_of_the_task_does_not_poison_it,
                                        sched_world_setup, sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_agent_silent_since_it_registered_again_does_not_poison,
                                        sched_world_setup, sched_world_teardown),
        cmocka_unit_test(test_agent_in_trouble_gets_no_task),
        cmocka_unit_test_setup_teardown(test_agent_whose_failure_is_in_flight_gets_no_task,
                                        trouble_setup, sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_silent_agent_in_grace_gets_nothing_until_it_beats,
                                        trouble_setup, sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_view_says_which_agents_are_in_trouble, trouble_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_second_death_is_poison, trouble_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_in_a_mass_failure_a_task_takes_twice_the_deaths,
                                        trouble_setup, sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_a_new_leader_knows_the_crowd_it_inherits,
                                        trouble_setup, sched_world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
