/* The state machine: apply semantics, fencing, snapshots, determinism. */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "recoveryd/error.h"

/* Applies `w` (then frees it) and returns the machine's verdict. */
static const struct rd_fsm_result *apply(struct rd_fsm *f, struct rd_wbuf w)
{
    const struct rd_fsm_result *res = NULL;
    assert_int_equal(rd_fsm_apply(f, w.p, w.len, &res), 0);
    rd_w_free(&w);
    return res;
}

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

static void fill(struct rd_fsm *f, int n)
{
    char id[32];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "node-%04d", (i * 7919) % n);
        apply(f, cmd_register(id, (uint32_t)(i % 16 + 1), 1000 + i));
        if (i % 3 == 0)
            apply(f, cmd_transition(id, 0, i % 2 ? RD_NODE_SUSPECT : RD_NODE_LEFT, 2000 + i));
    }
}

static void test_snapshot_restore_round_trip(void **state)
{
    struct rd_fsm a, b;
    rd_fsm_init(&a);
    rd_fsm_init(&b);
    fill(&a, 500);
    apply(&b, cmd_register("will-be-replaced", 1, 1));

    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&a, &snap), 0);
    assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len), 0);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    assert_null(rd_fsm_node(&b, "will-be-replaced", 16));
    assert_int_equal(b.n_nodes, a.n_nodes);
    assert_int_equal(b.n_applied, a.n_applied);
    assert_int_equal(b.last_time_ms, a.last_time_ms);
    assert_memory_equal(a.count_by_state, b.count_by_state, sizeof(a.count_by_state));

    /* Byte-identical: the restored machine snapshots to the same bytes. */
    struct rd_wbuf snap2;
    rd_w_init(&snap2);
    assert_int_equal(rd_fsm_snapshot(&b, &snap2), 0);
    assert_int_equal(snap.len, snap2.len);
    assert_memory_equal(snap.p, snap2.p, snap.len);

    /* And it keeps applying like the original. */
    const struct rd_fsm_result *ra = apply(&a, cmd_register("node-0001", 2, 9999));
    uint64_t epoch_a = ra->value;
    const struct rd_fsm_result *rb = apply(&b, cmd_register("node-0001", 2, 9999));
    assert_int_equal(rb->value, epoch_a);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    rd_w_free(&snap);
    rd_w_free(&snap2);
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

static void test_corrupt_snapshot_changes_nothing(void **state)
{
    struct rd_fsm a, b;
    rd_fsm_init(&a);
    rd_fsm_init(&b);
    fill(&a, 50);
    apply(&b, cmd_register("keep-me", 3, 5));
    uint64_t digest_b = rd_fsm_digest(&b);
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&a, &snap), 0);

    /* Flip one byte anywhere: header, frame or payload. */
    for (size_t i = 0; i < snap.len; i += (snap.len / 37) + 1) {
        snap.p[i] ^= 0x5a;
        int rv = rd_fsm_restore(&b, snap.p, snap.len);
        assert_true(rv == RD_ECORRUPT || rv == RD_EUNSUPPORTED);
        assert_true(rd_fsm_digest(&b) == digest_b);
        assert_non_null(rd_fsm_node(&b, "keep-me", 7));
        snap.p[i] ^= 0x5a;
    }
    /* Truncated. */
    assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len / 2), RD_ECORRUPT);
    assert_int_equal(rd_fsm_restore(&b, snap.p, 3), RD_ECORRUPT);
    assert_true(rd_fsm_digest(&b) == digest_b);
    /* Intact, it restores. */
    assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len), 0);
    assert_true(rd_fsm_digest(&b) == rd_fsm_digest(&a));
    rd_w_free(&snap);
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

static void test_same_log_same_bytes(void **state)
{
    struct rd_fsm a, b;
    rd_fsm_init(&a);
    rd_fsm_init(&b);
    fill(&a, 200);
    fill(&b, 200);
    struct rd_wbuf sa, sb;
    rd_w_init(&sa);
    rd_w_init(&sb);
    rd_fsm_snapshot(&a, &sa);
    rd_fsm_snapshot(&b, &sb);
    assert_int_equal(sa.len, sb.len);
    assert_memory_equal(sa.p, sb.p, sa.len);
    /* One different command makes a different digest. */
    apply(&b, cmd_register("node-0000", 1, 1));
    assert_true(rd_fsm_digest(&a) != rd_fsm_digest(&b));
    rd_w_free(&sa);
    rd_w_free(&sb);
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

static void test_unreadable_command_is_refused(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n1", 1, 10));
    uint64_t d = rd_fsm_digest(&f);
    struct rd_wbuf w = cmd_register("n2", 1, 20);
    w.p[0] = 99; /* a format from the future */
    const struct rd_fsm_result *res;
    assert_int_equal(rd_fsm_apply(&f, w.p, w.len, &res), RD_EUNSUPPORTED);
    assert_int_equal(res->status, RD_EUNSUPPORTED);
    assert_non_null(strstr(f.errmsg, "format 99"));
    assert_true(rd_fsm_digest(&f) == d);
    assert_null(rd_fsm_node(&f, "n2", 2));
    rd_w_free(&w);
    rd_fsm_close(&f);
}

static int observed;
static void observer(void *data, const struct rd_node *n, int old_state)
{
    observed++;
    *(int *)data = old_state;
}

static void test_observer_sees_changes_not_refusals(void **state)
{
    struct rd_fsm f;
    int last_old = 123;
    rd_fsm_init(&f);
    f.on_node = observer;
    f.on_node_data = &last_old;
    observed = 0;
    apply(&f, cmd_register("n1", 1, 10));
    assert_int_equal(observed, 1);
    assert_int_equal(last_old, -1);
    apply(&f, cmd_transition("n1", 7, RD_NODE_FAILED, 20)); /* fenced */
    assert_int_equal(observed, 1);
    apply(&f, cmd_transition("n1", 1, RD_NODE_FAILED, 20));
    assert_int_equal(observed, 2);
    assert_int_equal(last_old, RD_NODE_ALIVE);
    rd_fsm_close(&f);
}

static void test_result_packing(void **state)
{
    int st;
    uint64_t v;
    rd_fsm_unpack(rd_fsm_pack(0, 12345), &st, &v);
    assert_int_equal(st, 0);
    assert_int_equal(v, 12345);
    rd_fsm_unpack(rd_fsm_pack(RD_EFENCED, 7), &st, &v);
    assert_int_equal(st, RD_EFENCED);
    assert_int_equal(v, 7);
    rd_fsm_unpack(rd_fsm_pack(RD_EINTERNAL, (1ULL << 56) - 1), &st, &v);
    assert_int_equal(st, RD_EINTERNAL);
    assert_true(v == (1ULL << 56) - 1);
}

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_reregister),
        cmocka_unit_test(test_transition_fencing),
        cmocka_unit_test(test_left_node_returns_only_by_registering),
        cmocka_unit_test(test_nodes_stay_sorted_for_paging),
        cmocka_unit_test(test_snapshot_restore_round_trip),
        cmocka_unit_test(test_corrupt_snapshot_changes_nothing),
        cmocka_unit_test(test_same_log_same_bytes),
        cmocka_unit_test(test_unreadable_command_is_refused),
        cmocka_unit_test(test_observer_sees_changes_not_refusals),
        cmocka_unit_test(test_result_packing),
        cmocka_unit_test(test_fault_open_moves_node_atomically),
        cmocka_unit_test(test_faults_resolve_by_id_and_by_node),
        cmocka_unit_test(test_register_rules),
        cmocka_unit_test(test_snapshot_keeps_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
