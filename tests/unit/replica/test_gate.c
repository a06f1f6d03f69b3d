/*
 * A new leader's state is current only once it applied an entry of its own
 * term (engine/replica/gate.c), on libraft's in-memory cluster: every step
 * deterministic. The window is real: a follower that holds an entry the
 * leader committed and acknowledged, but was not yet told it is committed,
 * wins the next election and leads without that entry in its state
 * machine. Handlers that answered 404 or 409 fenced from there answered
 * wrong (issue 14); they wait for the gate.
 */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cluster.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "replica/gate.h"

static int gate_calls;
static int gate_status;

static void gate_done(void *data, int status)
{
    (void)data;
    gate_calls++;
    gate_status = status;
}

static bool has_node(struct cluster *c, unsigned i, const char *id)
{
    return rd_fsm_node(&c->fsms[i], id, strlen(id)) != NULL;
}

static bool gate_answered(struct raft_fixture *f, void *arg)
{
    (void)f;
    (void)arg;
    return gate_calls > 0;
}

static void test_fresh_leader_waits_for_its_barrier(void **state)
{
    struct cluster *c = *state;
    raft_fixture_elect(&c->f, 0);
    propose(c, cmd_register("before", 1, 10));
    assert_true(raft_fixture_step_until_applied(&c->f, N, 2, 10000));
    /* Server 2 hears nothing from the leader: "late" commits with 0 and 1. */
    raft_fixture_saturate(&c->f, 0, 2);
    raft_fixture_saturate(&c->f, 2, 0);
    propose(c, cmd_register("late", 1, 20));
    assert_true(raft_fixture_step_until_applied(&c->f, 0, 3, 10000));
    assert_int_equal(c->acked, 2); /* acknowledged to its client */
    assert_true(has_node(c, 0, "late"));
    /* The leader dies before its next message tells server 1 the commit. */
    raft_fixture_kill(&c->f, 0);
    assert_false(has_node(c, 1, "late"));
    assert_true(raft_fixture_step_until_has_no_leader(&c->f, 10000));
    assert_true(raft_fixture_step_until_has_leader(&c->f, 10000));
    assert_int_equal(raft_fixture_leader_index(&c->f), 1); /* 2's log is behind */
    struct raft *leader = server(c, 1);
    struct rd_leader_gate g;
    gate_calls = 0;
    rd_leader_gate_init(&g, leader, gate_done, NULL);
    /* Leading, yet its state lacks a write that was acknowledged: a
     * checkpoint for that task would be answered 404 from here. */
    assert_int_equal(raft_state(leader), RAFT_LEADER);
    assert_false(has_node(c, 1, "late"));
    assert_false(rd_leader_gate_open(&g));
    assert_int_equal(rd_leader_gate_kick(&g), 0);
    assert_true(rd_leader_gate_busy(&g));
    assert_int_equal(rd_leader_gate_kick(&g), 0); /* one barrier at a time */
    assert_true(raft_fixture_step_until(&c->f, gate_answered, NULL, 10000));
    assert_int_equal(gate_calls, 1);
    assert_int_equal(gate_status, 0);
    /* Open: everything acknowledged before is applied. */
    assert_true(rd_leader_gate_open(&g));
    assert_true(has_node(c, 1, "late"));
    assert_false(rd_leader_gate_busy(&g));
}

static void test_gate_is_for_one_term(void **state)
{
    struct cluster *c = *state;
    raft_fixture_elect(&c->f, 0);
    struct rd_leader_gate g;
    gate_calls = 0;
    rd_leader_gate_init(&g, server(c, 0), gate_done, NULL);
    assert_int_equal(rd_leader_gate_kick(&g), 0);
    assert_true(raft_fixture_step_until(&c->f, gate_answered, NULL, 10000));
    assert_true(rd_leader_gate_open(&g));
    /* Deposed and elected again: a new term, closed until its own barrier. */
    raft_fixture_depose(&c->f);
    assert_false(rd_leader_gate_open(&g));
    assert_int_equal(rd_leader_gate_kick(&g), RAFT_NOTLEADER);
    raft_fixture_elect(&c->f, 0);
    assert_false(rd_leader_gate_open(&g));
    gate_calls = 0;
    assert_int_equal(rd_leader_gate_kick(&g), 0);
    assert_true(raft_fixture_step_until(&c->f, gate_answered, NULL, 10000));
    assert_true(rd_leader_gate_open(&g));
}

/* The barrier of a leader that loses leadership before it is applied fails
 * and leaves the gate closed. */
static void test_gate_stays_closed_when_leadership_is_lost(void **state)
{
    struct cluster *c = *state;
    raft_fixture_elect(&c->f, 0);
    struct rd_leader_gate g;
    gate_calls = 0;
    rd_leader_gate_init(&g, server(c, 0), gate_done, NULL);
    raft_fixture_saturate(&c->f, 0, 1);
    raft_fixture_saturate(&c->f, 0, 2);
    assert_int_equal(rd_leader_gate_kick(&g), 0);
    assert_true(raft_fixture_step_until(&c->f, gate_answered, NULL, 20000));
    assert_int_not_equal(gate_status, 0);
    assert_false(rd_leader_gate_open(&g));
}

/* The sole voter holds everything committed once it leads: open at once,
 * no barrier (its reads go on with a full disk). */
static void test_sole_voter_is_current_at_once(void **state)
{
    (void)state;
    struct raft_fixture f;
    struct rd_fsm fsm;
    assert_int_equal(raft_fixture_initialize(&f), 0);
    rd_fsm_init(&fsm);
    assert_int_equal(raft_fixture_grow(&f, &fsm.raft), 0);
    rd_fsm_bind_raft(&fsm, raft_fixture_get(&f, 0));
    raft_fixture_get(&f, 0)->tracer = NULL;
    struct raft_configuration conf;
    assert_int_equal(raft_fixture_configuration(&f, 1, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&f, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&f), 0);
    assert_true(raft_fixture_step_until_has_leader(&f, 10000));
    struct rd_leader_gate g;
    rd_leader_gate_init(&g, raft_fixture_get(&f, 0), gate_done, NULL);
    assert_true(rd_leader_gate_open(&g));
    assert_int_equal(rd_leader_gate_kick(&g), 0);
    assert_false(rd_leader_gate_busy(&g)); /* nothing to wait for */
    raft_fixture_close(&f);
    rd_fsm_close(&fsm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_leader_waits_for_its_barrier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_is_for_one_term, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_stays_closed_when_leadership_is_lost, setup,
                                        teardown),
        cmocka_unit_test(test_sole_voter_is_current_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
