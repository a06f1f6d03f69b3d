/* The state machine's glue (engine/fsm/fsm.c): unreadable commands, the
 * node observer, results packed for raft. Records and snapshots have their
 * own test files (test_nodes.c, test_faults.c, test_tasks.c,
 * test_recovery.c, test_replicas.c, test_snapshot.c). */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

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

struct entry_log {
    unsigned n;
    uint64_t index[8];
    int64_t time[8];
    uint8_t type[8];
    uint64_t applying_seen; /* applying_index of the machine inside the call */
    const struct rd_fsm *f;
};

static void on_entry(void *data, uint64_t index, int64_t time_ms, const void *buf, size_t len)
{
    struct entry_log *e = data;
    assert_true(e->n < 8);
    assert_true(len >= RD_CMD_HEADER_SIZE);
    e->index[e->n] = index;
    e->time[e->n] = time_ms;
    e->type[e->n] = ((const uint8_t *)buf)[1];
    e->applying_seen = e->f->applying_index;
    e->n++;
}

/* The entry observer sees every command that decoded, refused ones too
 * (replaying them gives the same state), with its index and time; not the
 * ones no replica can read. Unbound to raft the index is n_applied + 1. */
static void test_entry_observer_and_applying_index(void **state)
{
    struct rd_fsm f;
    struct entry_log log = {.f = &f};
    rd_fsm_init(&f);
    f.on_entry = on_entry;
    f.on_entry_data = &log;
    apply(&f, cmd_register("n1", 1, 10));
    apply(&f, cmd_transition("n1", 9, RD_NODE_FAILED, 20)); /* fenced: refused */
    struct rd_wbuf w = cmd_register("n2", 1, 30);
    w.p[0] = 99;
    assert_int_equal(rd_fsm_apply(&f, w.p, w.len, NULL), RD_EUNSUPPORTED);
    rd_w_free(&w);
    apply(&f, cmd_register("n2", 1, 40));
    assert_int_equal(log.n, 3);
    assert_int_equal(log.index[0], 1);
    assert_int_equal(log.index[1], 2);
    assert_int_equal(log.index[2], 3);
    assert_int_equal(log.time[1], 20);
    assert_int_equal(log.type[1], RD_CMD_NODE_TRANSITION);
    assert_int_equal(log.applying_seen, 3);
    assert_int_equal(f.applying_index, 0); /* only while applying */
    assert_int_equal(f.n_applied, 3);
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
        cmocka_unit_test(test_unreadable_command_is_refused),
        cmocka_unit_test(test_observer_sees_changes_not_refusals),
        cmocka_unit_test(test_entry_observer_and_applying_index),
        cmocka_unit_test(test_result_packing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
