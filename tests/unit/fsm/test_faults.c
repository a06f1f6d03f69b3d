/* Fault records (engine/fsm/faults.c): opened with the node's transition
 * in one step, resolved by id or by node, counted per node, kept in
 * snapshots. */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

static void test_fault_open_moves_node_atomically(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n1", 1, 10));
    apply(&f, cmd_register("n1", 1, 20)); /* epoch 2 */
    uint64_t before = rd_fsm_digest(&f);
    /* Decided on a stale epoch: neither the record nor the transition lands. */
    const struct rd_fsm_result *r = apply(
        &f, cmd_fault_open("f-1", "n1", RD_FAULT_CRASH, RD_SEV_CRITICAL, RD_NODE_FAILED, 1, 30));
    assert_int_equal(r->status, RD_EFENCED);
    assert_int_equal(f.n_faults, 0);
    /* (Refusals only count as applied.) */
    assert_int_equal(f.fault_seq, 0);
    (void)before;

    r = apply(&f,
              cmd_fault_open("f-1", "n1", RD_FAULT_CRASH, RD_SEV_CRITICAL, RD_NODE_FAILED, 2, 40));
    assert_int_equal(r->status, 0);
    const struct rd_node *n = rd_fsm_node(&f, "n1", 2);
    assert_int_equal(n->state, RD_NODE_FAILED);
    assert_int_equal(n->open_faults, 1);
    const struct rd_fault *x = rd_fsm_fault(&f, "f-1");
    assert_non_null(x);
    assert_int_equal(x->seq, 1);
    assert_int_equal(x->status, RD_FAULT_OPEN_ST);
    assert_int_equal(x->detected_at, 40);
    assert_int_equal(x->resolved_at, 0);
    assert_string_equal(x->node_id, "n1");
    assert_int_equal(f.open_faults, 1);

    /* The same id again (a retried proposal) changes nothing. */
    r = apply(&f, cmd_fault_open("f-1", "n1", RD_FAULT_HANG, RD_SEV_MAJOR, RD_STATE_ANY, 0, 50));
    assert_int_equal(r->status, RD_EEXISTS);
    assert_int_equal(f.n_faults, 1);
    assert_int_equal(x->type, RD_FAULT_CRASH);

    /* A cluster-wide fault has no node. */
    r = apply(&f,
              cmd_fault_open("p-1", "", RD_FAULT_PARTITION, RD_SEV_CRITICAL, RD_STATE_ANY, 0, 60));
    assert_int_equal(r->status, 0);
    assert_int_equal(f.open_faults, 2);
    assert_int_equal(n->open_faults, 1);
    r = apply(&f,
              cmd_fault_open("g-1", "ghost", RD_FAULT_CRASH, RD_SEV_CRITICAL, RD_STATE_ANY, 0, 60));
    assert_int_equal(r->status, RD_ENOTFOUND);
    rd_fsm_close(&f);
}

static void test_faults_resolve_by_id_and_by_node(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n1", 1, 10));
    apply(&f, cmd_register("n2", 1, 10));
    apply(&f, cmd_fault_open("a", "n1", RD_FAULT_DEGRADED, RD_SEV_MINOR, RD_STATE_ANY, 0, 20));
    apply(&f, cmd_fault_open("b", "n1", RD_FAULT_HANG, RD_SEV_MAJOR, RD_NODE_FAILED, 0, 30));
    apply(&f, cmd_fault_open("c", "n2", RD_FAULT_CRASH, RD_SEV_CRITICAL, RD_NODE_FAILED, 0, 30));
    assert_int_equal(f.open_faults, 3);

    const struct rd_fsm_result *r = apply(&f, cmd_fault_resolve("c", "", 40));
    assert_int_equal(r->status, 0);
    assert_int_equal(rd_fsm_fault(&f, "c")->status, RD_FAULT_RESOLVED);
    assert_int_equal(rd_fsm_fault(&f, "c")->resolved_at, 40);
    assert_string_equal(rd_fsm_fault(&f, "c")->resolution, "recovered");
    assert_int_equal(rd_fsm_node(&f, "n2", 2)->open_faults, 0);
    assert_int_equal(apply(&f, cmd_fault_resolve("c", "", 41))->status, 0); /* idempotent */
    assert_int_equal(rd_fsm_fault(&f, "c")->resolved_at, 40);
    assert_int_equal(apply(&f, cmd_fault_resolve("zz", "", 41))->status, RD_ENOTFOUND);

    /* A node that comes back resolves its faults in the same step. */
    apply(&f, cmd_register("n1", 1, 50)); /* failed -> probation */
    assert_int_equal(rd_fsm_node(&f, "n1", 2)->state, RD_NODE_PROBATION);
    struct rd_cmd c = {.type = RD_CMD_NODE_TRANSITION, .time_ms = 60};
    c.u.trans.node_id = RD_STR("n1");
    c.u.trans.epoch = 2;
    c.u.trans.state = RD_NODE_ALIVE;
    c.u.trans.reason = RD_STR("probation passed");
    c.u.trans.from_state = RD_NODE_SUSPECT; /* wrong: refused */
    c.u.trans.resolve_faults = 1;
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    assert_int_equal(apply(&f, w)->status, RD_ECONFLICT);
    c.u.trans.from_state = RD_NODE_PROBATION;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    assert_int_equal(apply(&f, w)->status, 0);
    assert_int_equal(rd_fsm_fault(&f, "a")->status, RD_FAULT_RESOLVED);
    assert_int_equal(rd_fsm_fault(&f, "b")->status, RD_FAULT_RESOLVED);
    assert_string_equal(rd_fsm_fault(&f, "b")->resolution, "probation passed");
    assert_int_equal(f.open_faults, 0);
    assert_int_equal(rd_fsm_node(&f, "n1", 2)->open_faults, 0);
    rd_fsm_close(&f);
}

static void test_snapshot_keeps_faults(void **state)
{
    struct rd_fsm a, b;
    rd_fsm_init(&a);
    rd_fsm_init(&b);
    fill(&a, 40);
    char id[16];
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof(id), "f%02d", i);
        apply(&a, cmd_fault_open(id, i % 2 ? "node-0001" : "", i % RD_FAULT_TYPE_COUNT,
                                 i % RD_SEV_COUNT, RD_STATE_ANY, 0, 100 + i));
        if (i % 3 == 0)
            apply(&a, cmd_fault_resolve(id, "", 200 + i));
    }
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&a, &snap), 0);
    assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len), 0);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    assert_int_equal(b.n_faults, 30);
    assert_int_equal(b.open_faults, a.open_faults);
    assert_int_equal(b.fault_seq, 30);
    assert_int_equal(rd_fsm_node(&b, "node-0001", 9)->open_faults,
                     rd_fsm_node(&a, "node-0001", 9)->open_faults);
    assert_int_equal(rd_fsm_fault_index(&b, 7), 6);
    assert_int_equal(rd_fsm_fault_index(&b, 31), 30);
    assert_int_equal(rd_fsm_fault(&b, "f03")->resolved_at, 203);
    rd_w_free(&snap);
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

/*
 * Fault ids the decoder takes (1 to 64 bytes) but a fault record cannot
 * hold (39), or with a NUL byte inside (a C string cut there, a snapshot that
 * does not read back): refused, nothing recorded. A 64-byte id overflowed the
 * record (found by tests/fuzz/fuzz_cmd; corpus seed cmd/regress-fault-id-64).
 */
static void test_fault_open_refuses_ids_it_cannot_hold(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n1", 1, 10));
    char longest[65];
    memset(longest, 'a', 64);
    longest[64] = '\0';
    const struct rd_fsm_result *r = apply(
        &f, cmd_fault_open(longest, "n1", RD_FAULT_CRASH, RD_SEV_CRITICAL, RD_NODE_FAILED, 0, 20));
    assert_int_equal(r->status, RD_EINVAL);
    longest[39] = '\0'; /* 39 bytes: still fits */
    struct rd_cmd c = {.type = RD_CMD_FAULT_OPEN, .time_ms = 30};
    c.u.fopen.id = (struct rd_str){"ab\0cd", 5};
    c.u.fopen.node_id = RD_STR("n1");
    c.u.fopen.metadata_json = RD_STR("{}");
    c.u.fopen.recovery_action_json = RD_STR("{}");
    c.u.fopen.set_state = RD_STATE_ANY;
    c.u.fopen.from_state = RD_STATE_ANY;
    r = apply(&f, fsm_encode(&c));
    assert_int_equal(r->status, RD_EINVAL);
    assert_int_equal(f.n_faults, 0);
    assert_int_equal(f.fault_seq, 0);
    assert_int_equal(rd_fsm_node(&f, "n1", 2)->state, RD_NODE_ALIVE);
    r = apply(&f,
              cmd_fault_open(longest, "n1", RD_FAULT_CRASH, RD_SEV_CRITICAL, RD_STATE_ANY, 0, 40));
    assert_int_equal(r->status, 0);
    assert_non_null(rd_fsm_fault(&f, longest));
    rd_fsm_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_open_moves_node_atomically),
        cmocka_unit_test(test_faults_resolve_by_id_and_by_node),
        cmocka_unit_test(test_snapshot_keeps_faults),
        cmocka_unit_test(test_fault_open_refuses_ids_it_cannot_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
