/* The node registry (engine/fsm/nodes.c): registration and epochs, fenced
 * transitions, the rules of a node that left or was isolated, order. */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

static void test_register_and_reregister(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    const struct rd_fsm_result *r = apply(&f, cmd_register("n1", 4, 1000));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, 1);
    assert_int_equal(r->old_state, -1);
    const struct rd_node *n = rd_fsm_node(&f, "n1", 2);
    assert_non_null(n);
    assert_int_equal(n->epoch, 1);
    assert_int_equal(n->state, RD_NODE_ALIVE);
    assert_int_equal(n->slots, 4);
    assert_string_equal(n->labels_json, "{\"zone\":\"a\"}");
    assert_int_equal(n->registered_at, 1000);

    r = apply(&f, cmd_transition("n1", 1, RD_NODE_SUSPECT, 1500));
    assert_int_equal(r->status, 0);
    r = apply(&f, cmd_register("n1", 8, 2000));
    assert_int_equal(r->value, 2);
    assert_int_equal(r->old_state, RD_NODE_SUSPECT);
    assert_int_equal(n->epoch, 2);
    /* A suspected node that registers again proves itself in probation. */
    assert_int_equal(n->state, RD_NODE_PROBATION);
    assert_int_equal(n->slots, 8);
    assert_int_equal(n->registered_at, 1000);
    assert_int_equal(n->updated_at, 2000);
    assert_int_equal(f.count_by_state[RD_NODE_PROBATION], 1);
    assert_int_equal(f.count_by_state[RD_NODE_SUSPECT], 0);
    assert_int_equal(f.n_applied, 3);
    assert_int_equal(f.last_time_ms, 2000);
    rd_fsm_close(&f);
}

static void test_transition_fencing(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n1", 1, 10));
    apply(&f, cmd_register("n1", 1, 20)); /* epoch 2 */
    uint64_t before = rd_fsm_digest(&f);

    const struct rd_fsm_result *r = apply(&f, cmd_transition("n1", 1, RD_NODE_FAILED, 30));
    assert_int_equal(r->status, RD_EFENCED);
    assert_int_equal(rd_fsm_node(&f, "n1", 2)->state, RD_NODE_ALIVE);

    r = apply(&f, cmd_transition("ghost", 0, RD_NODE_FAILED, 30));
    assert_int_equal(r->status, RD_ENOTFOUND);
    assert_null(r->node);

    /* Refusals change nothing but the applied count. */
    struct rd_fsm g;
    rd_fsm_init(&g);
    apply(&g, cmd_register("n1", 1, 10));
    apply(&g, cmd_register("n1", 1, 20));
    assert_true(rd_fsm_digest(&g) == before);
    assert_int_equal(f.count_by_state[RD_NODE_ALIVE], 1);

    r = apply(&f, cmd_transition("n1", 2, RD_NODE_FAILED, 40));
    assert_int_equal(r->status, 0);
    assert_int_equal(rd_fsm_node(&f, "n1", 2)->state, RD_NODE_FAILED);
    /* epoch 0 is an operator action on whatever epoch is current */
    r = apply(&f, cmd_transition("n1", 0, RD_NODE_ISOLATED, 50));
    assert_int_equal(r->status, 0);
    assert_int_equal(f.count_by_state[RD_NODE_ISOLATED], 1);
    assert_int_equal(f.count_by_state[RD_NODE_FAILED], 0);
    rd_fsm_close(&f);
    rd_fsm_close(&g);
}

static void test_left_node_returns_only_by_registering(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n1", 1, 10));
    assert_int_equal(apply(&f, cmd_transition("n1", 0, RD_NODE_LEFT, 20))->status, 0);
    assert_int_equal(apply(&f, cmd_transition("n1", 0, RD_NODE_ALIVE, 30))->status, RD_ECONFLICT);
    assert_int_equal(rd_fsm_node(&f, "n1", 2)->state, RD_NODE_LEFT);
    const struct rd_fsm_result *r = apply(&f, cmd_register("n1", 1, 40));
    assert_int_equal(r->value, 2);
    assert_int_equal(rd_fsm_node(&f, "n1", 2)->state, RD_NODE_ALIVE);
    rd_fsm_close(&f);
}

static void test_nodes_stay_sorted_for_paging(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    const char *ids[] = {"m", "b", "z", "a", "mm", "c"};
    for (size_t i = 0; i < 6; i++)
        apply(&f, cmd_register(ids[i], 1, (int64_t)i));
    const char *sorted[] = {"a", "b", "c", "m", "mm", "z"};
    assert_int_equal(f.n_nodes, 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(f.nodes[i]->node_id, sorted[i]);
    assert_int_equal(rd_fsm_node_after(&f, "", 0), 0);
    assert_int_equal(rd_fsm_node_after(&f, "b", 1), 2);
    assert_int_equal(rd_fsm_node_after(&f, "bb", 2), 2);
    assert_int_equal(rd_fsm_node_after(&f, "m", 1), 4);
    assert_int_equal(rd_fsm_node_after(&f, "z", 1), 6);
    rd_fsm_close(&f);
}

static void test_register_rules(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n", 1, 1));
    apply(&f, cmd_transition("n", 0, RD_NODE_DRAINING, 2));
    apply(&f, cmd_register("n", 1, 3));
    assert_int_equal(rd_fsm_node(&f, "n", 1)->state, RD_NODE_DRAINING);
    apply(&f, cmd_transition("n", 0, RD_NODE_ISOLATED, 4));
    const struct rd_fsm_result *r = apply(&f, cmd_register("n", 1, 5));
    assert_int_equal(r->status, RD_ECONFLICT);
    assert_int_equal(rd_fsm_node(&f, "n", 1)->epoch, 2);     /* unchanged */
    apply(&f, cmd_transition("n", 0, RD_NODE_PROBATION, 6)); /* readmit */
    r = apply(&f, cmd_register("n", 1, 7));
    assert_int_equal(r->status, 0);
    assert_int_equal(rd_fsm_node(&f, "n", 1)->state, RD_NODE_PROBATION);
    assert_int_equal(rd_fsm_node(&f, "n", 1)->epoch, 3);
    rd_fsm_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_reregister),
        cmocka_unit_test(test_transition_fencing),
        cmocka_unit_test(test_left_node_returns_only_by_registering),
        cmocka_unit_test(test_nodes_stay_sorted_for_paging),
        cmocka_unit_test(test_register_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
