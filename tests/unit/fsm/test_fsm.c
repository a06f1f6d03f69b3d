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
    assert_int_equal(n->state, RD_NODE_ALIVE);
    assert_int_equal(n->slots, 8);
    assert_int_equal(n->registered_at, 1000);
    assert_int_equal(n->updated_at, 2000);
    assert_int_equal(f.count_by_state[RD_NODE_ALIVE], 1);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
