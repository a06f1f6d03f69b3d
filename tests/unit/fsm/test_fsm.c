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

/* ---- batches (group commit: cmd.h format 3) ------------------------------ */

#define BATCH_MAX_SEEN 16

struct item_log {
    unsigned n;
    uint64_t index[BATCH_MAX_SEEN];
    uint32_t pos[BATCH_MAX_SEEN];
    int status[BATCH_MAX_SEEN];
    uint64_t value[BATCH_MAX_SEEN];
};

static void on_item(void *data, uint64_t index, uint32_t pos, int status, uint64_t value)
{
    struct item_log *l = data;
    assert_true(l->n < BATCH_MAX_SEEN);
    l->index[l->n] = index;
    l->pos[l->n] = pos;
    l->status[l->n] = status;
    l->value[l->n] = value;
    l->n++;
}

/* A task placed on agent "a" (attempt 1), ready for checkpoints. */
static void placed_task(struct rd_fsm *f, const char *task)
{
    apply(f, cmd_register("a", 4, 1));
    apply(f, cmd_task_submit(task, 5, 0, 1, 5, 2));
    assert_int_equal(apply(f, cmd_task_assign(task, 0, "a", 1, 3))->status, 0);
}

/* The codec: what goes in comes out, in order, byte for byte; padding after
 * the last command is ignored; a batch of more than RD_CMD_BATCH_MAX and a
 * plain command are not batches. */
static void test_batch_codec_round_trip(void **state)
{
    struct rd_wbuf cmds[3] = {cmd_register("n1", 1, 10), cmd_task_ckpt("t", 1, 1, "{}", 3, 30),
                              cmd_transition("n1", 1, RD_NODE_SUSPECT, 20)};
    struct rd_wbuf copy[3];
    for (int i = 0; i < 3; i++) {
        rd_w_init(&copy[i]);
        rd_w_bytes(&copy[i], cmds[i].p, cmds[i].len);
    }
    struct rd_wbuf w = fsm_batch_of(cmds, 3);
    static const uint8_t zeros[8];
    rd_w_bytes(&w, zeros, 8 - w.len % 8); /* replica.c pads every entry */
    assert_true(rd_cmd_is_batch(w.p, w.len));
    assert_false(rd_cmd_is_batch(copy[0].p, copy[0].len));
    struct rd_cmd_batch b;
    assert_int_equal(rd_cmd_batch_open(&b, w.p, w.len), 0);
    assert_int_equal(b.count, 3);
    assert_int_equal(b.time_ms, 30);
    const uint8_t *p;
    size_t n;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rd_cmd_batch_next(&b, &p, &n), 1);
        assert_int_equal(n, copy[i].len);
        assert_memory_equal(p, copy[i].p, n);
        rd_w_free(&copy[i]);
    }
    assert_int_equal(rd_cmd_batch_next(&b, &p, &n), 0);
    /* A count beyond the limit is refused whole. */
    w.p[13] = 0x01; /* count 259 */
    assert_int_equal(rd_cmd_batch_open(&b, w.p, w.len), RD_EUNSUPPORTED);
    assert_int_equal(rd_cmd_batch_open(&b, w.p, 10), RD_EPARSE);
    rd_w_free(&w);
    /* What may share an entry: writes, placements and recovery runs yes;
     * what images the state at its index (checks, backups) or marks a
     * position (archive, export) no. */
    assert_true(rd_cmd_batchable(RD_CMD_TASK_CHECKPOINT));
    assert_true(rd_cmd_batchable(RD_CMD_NODE_TRANSITION));
    assert_true(rd_cmd_batchable(RD_CMD_TASK_ASSIGN));
    assert_true(rd_cmd_batchable(RD_CMD_RECOVERY_OPEN));
    assert_false(rd_cmd_batchable(RD_CMD_ARCHIVE));
    assert_false(rd_cmd_batchable(RD_CMD_CHECK));
    assert_false(rd_cmd_batchable(RD_CMD_BACKUP));
}

/* A batch mixing writes that succeed and fail: applied in order, each with
 * its own result (a retry of the same checkpoint answered as the first, a
 * stale version and a fenced attempt refused, the writes around them
 * stored), at one index, the entry seen once by the entry observer; the state
 * is the one the same commands give as entries of their own. */
static void test_batch_applies_in_order_with_own_results(void **state)
{
    struct rd_fsm f, g;
    struct item_log items = {0};
    struct entry_log entries = {.f = &f};
    rd_fsm_init(&f);
    rd_fsm_init(&g);
    placed_task(&f, "t");
    placed_task(&g, "t");
    f.on_item = on_item;
    f.on_item_data = &items;
    f.on_entry = on_entry;
    f.on_entry_data = &entries;
#define CKPTS(T0)                                                                                  \
    {                                                                                              \
        cmd_task_ckpt("t", 1, 1, "{\"s\":1}", 3, T0),                                              \
            cmd_task_ckpt("t", 1, 1, "{\"s\":1}", 3, T0 + 1),                                      \
            cmd_task_ckpt("t", 1, 1, "{\"s\":9}", 3, T0 + 2),                                      \
            cmd_task_ckpt("t", 7, 2, "{\"z\":1}", 3, T0 + 3),                                      \
            cmd_task_ckpt("t", 1, 2, "{\"s\":2}", 3, T0 + 4),                                      \
            cmd_transition("a", 1, RD_NODE_SUSPECT, T0 + 5)                                        \
    }
    struct rd_wbuf cmds[6] = CKPTS(100);
    struct rd_wbuf w = fsm_batch_of(cmds, 6);
    uint64_t applied_before = f.n_applied;
    const struct rd_fsm_result *res;
    assert_int_equal(rd_fsm_apply(&f, w.p, w.len, &res), 0);
    rd_w_free(&w);
    assert_int_equal(items.n, 6);
    static const int want[6] = {0, 0, RD_ESTALE_VERSION, RD_EFENCED, 0, 0};
    for (unsigned i = 0; i < 6; i++) {
        assert_int_equal(items.pos[i], i);
        assert_int_equal(items.index[i], applied_before + 1); /* one entry, one index */
        assert_int_equal(items.status[i], want[i]);
    }
    assert_int_equal(items.value[0], 1);
    assert_int_equal(items.value[1], 1); /* the retry answers as the first */
    assert_int_equal(items.value[2], 1); /* the version held */
    assert_int_equal(items.value[5], rd_fsm_node(&f, "a", 1)->epoch);
    assert_int_equal(res->status, 0); /* the last command's */
    assert_int_equal(entries.n, 1);
    assert_int_equal(entries.index[0], applied_before + 1);
    assert_int_equal(entries.time[0], 105);
    assert_int_equal(f.n_applied, applied_before + 6);
    assert_int_equal(rd_task_checkpoint(rd_fsm_task(&f, "t"))->version, 2);
    assert_int_equal(rd_fsm_node(&f, "a", 1)->state, RD_NODE_SUSPECT);
    /* The same commands one entry each: the same state. */
    struct rd_wbuf one[6] = CKPTS(100);
#undef CKPTS
    for (int i = 0; i < 6; i++) {
        assert_int_equal(rd_fsm_apply(&g, one[i].p, one[i].len, &res), 0);
        assert_int_equal(res->status, want[i]);
        rd_w_free(&one[i]);
    }
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest(&g));
    rd_fsm_close(&f);
    rd_fsm_close(&g);
}

/* A batch whose bytes stop inside its third command: the two before the cut
 * stand (and are told), the rest is refused with RD_EPARSE in the entry's
 * result, which is what their writers hear; a command of an unknown format
 * inside a batch is refused alone. */
static void test_batch_cut_short_and_unreadable_command(void **state)
{
    struct rd_fsm f;
    struct item_log items = {0};
    rd_fsm_init(&f);
    f.on_item = on_item;
    f.on_item_data = &items;
    struct rd_wbuf cmds[3] = {cmd_register("n1", 1, 10), cmd_register("n2", 1, 11),
                              cmd_register("n3", 1, 12)};
    struct rd_wbuf w = fsm_batch_of(cmds, 3);
    const struct rd_fsm_result *res;
    assert_int_equal(rd_fsm_apply(&f, w.p, w.len - 5, &res), RD_EPARSE);
    assert_int_equal(res->status, RD_EPARSE);
    assert_non_null(strstr(f.errmsg, "after 2 of 3"));
    assert_int_equal(items.n, 2);
    assert_non_null(rd_fsm_node(&f, "n1", 2));
    assert_non_null(rd_fsm_node(&f, "n2", 2));
    assert_null(rd_fsm_node(&f, "n3", 2));
    rd_w_free(&w);

    items.n = 0;
    struct rd_wbuf more[3] = {cmd_register("n4", 1, 20), cmd_register("n5", 1, 21),
                              cmd_register("n6", 1, 22)};
    more[1].p[0] = 99; /* a format from the future */
    w = fsm_batch_of(more, 3);
    assert_int_equal(rd_fsm_apply(&f, w.p, w.len, &res), RD_EUNSUPPORTED);
    assert_int_equal(items.n, 3);
    assert_int_equal(items.status[0], 0);
    assert_int_equal(items.status[1], RD_EUNSUPPORTED);
    assert_int_equal(items.status[2], 0);
    assert_non_null(rd_fsm_node(&f, "n4", 2));
    assert_null(rd_fsm_node(&f, "n5", 2));
    assert_non_null(rd_fsm_node(&f, "n6", 2));
    rd_w_free(&w);
    rd_fsm_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unreadable_command_is_refused),
        cmocka_unit_test(test_observer_sees_changes_not_refusals),
        cmocka_unit_test(test_entry_observer_and_applying_index),
        cmocka_unit_test(test_result_packing),
        cmocka_unit_test(test_batch_codec_round_trip),
        cmocka_unit_test(test_batch_applies_in_order_with_own_results),
        cmocka_unit_test(test_batch_cut_short_and_unreadable_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
