/* Fault injection into the state machine (engine/fsm/inject.c, built only
 * into rdinject with RD_FAULT_INJECTION): a corrupted record shows in the
 * digest as a bug in apply would; a skewed incremental digest shows only
 * against a full recomputation. */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

#ifndef RD_FAULT_INJECTION
#error "test_inject.c is built with RD_FAULT_INJECTION (it links rdinject)"
#endif

#define T1 "11111111-1111-4111-8111-111111111111"

static void build(struct rd_fsm *f)
{
    rd_fsm_init(f);
    apply(f, cmd_register("a", 2, 10));
    apply(f, cmd_register("b", 2, 11));
    apply(f, cmd_task_submit(T1, 5, 0, 1, 3, 12));
    apply(f, cmd_task_assign(T1, 0, "a", 1, 13));
    apply(f, cmd_task_ckpt(T1, 1, 1, "{\"step\":1}", 3, 14));
    apply(f, cmd_task_ckpt(T1, 1, 2, "{\"step\":2}", 3, 15));
}

static void test_corrupt_node_shows_in_digest(void **state)
{
    struct rd_fsm a, b;
    build(&a);
    build(&b);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    char before[64];
    snprintf(before, sizeof(before), "%s", rd_fsm_node(&b, "b", 1)->labels_json);
    assert_int_equal(rd_fsm_inject_corrupt(&b, "node", "b"), 0);
    const char *after = rd_fsm_node(&b, "b", 1)->labels_json;
    assert_int_equal(strlen(after), strlen(before));
    assert_string_not_equal(after, before);
    /* The replica diverged: its digest differs, and it is consistent with
     * its own (corrupted) records, as after a bug in apply. */
    assert_true(rd_fsm_digest(&b) != rd_fsm_digest(&a));
    assert_true(rd_fsm_digest(&b) == rd_fsm_digest_full(&b));
    /* A check applied on both tells them apart. */
    apply(&a, cmd_check("k", 20));
    apply(&b, cmd_check("k", 20));
    assert_true(rd_fsm_check_local(&a, "k")->digest != rd_fsm_check_local(&b, "k")->digest);
    /* Repair is a restore from a good replica: equal again. */
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&a, &snap), 0);
    assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len), 0);
    rd_w_free(&snap);
    assert_true(rd_fsm_digest(&b) == rd_fsm_digest(&a));
    assert_string_equal(rd_fsm_node(&b, "b", 1)->labels_json, before);
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

static void test_corrupt_checkpoint_fails_its_checksum(void **state)
{
    struct rd_fsm a, b;
    build(&a);
    build(&b);
    const struct rd_task *t = rd_fsm_task(&b, T1);
    assert_true(rd_checkpoint_verifies(rd_task_checkpoint(t)));
    assert_int_equal(rd_fsm_inject_corrupt(&b, "checkpoint", T1), 0);
    assert_false(rd_checkpoint_verifies(rd_task_checkpoint(t)));
    /* The resume point falls back to the previous version, which verifies. */
    assert_int_equal(rd_task_resume_checkpoint(t)->version, 1);
    assert_true(rd_fsm_digest(&b) != rd_fsm_digest(&a));
    assert_true(rd_fsm_digest(&b) == rd_fsm_digest_full(&b));
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

static void test_digest_skew_only_full_recomputation_sees(void **state)
{
    struct rd_fsm f;
    build(&f);
    uint64_t good = rd_fsm_digest(&f);
    assert_true(good == rd_fsm_digest_full(&f));
    assert_int_equal(rd_fsm_inject_digest_skew(&f), 0);
    assert_true(rd_fsm_digest(&f) != rd_fsm_digest_full(&f));
    assert_true(rd_fsm_digest_full(&f) == good); /* the state itself is intact */
    /* The audit (every snapshot) puts the sums right again. */
    assert_int_equal(rd_fsm_digest_audit(&f), 1);
    assert_true(rd_fsm_digest(&f) == good);
    assert_int_equal(rd_fsm_inject_digest_skew(&f), 0);
    /* A restore (the repair) rebuilds the sums from the records. */
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&f, &snap), 0);
    assert_int_equal(rd_fsm_restore(&f, snap.p, snap.len), 0);
    rd_w_free(&snap);
    assert_true(rd_fsm_digest(&f) == good);
    rd_fsm_close(&f);
}

static void test_bad_arguments(void **state)
{
    struct rd_fsm f;
    build(&f);
    uint64_t d = rd_fsm_digest(&f);
    assert_int_equal(rd_fsm_inject_corrupt(&f, "node", "nope"), RD_ENOTFOUND);
    assert_int_equal(rd_fsm_inject_corrupt(&f, "checkpoint", "nope"), RD_ENOTFOUND);
    assert_int_equal(rd_fsm_inject_corrupt(&f, "weather", "a"), RD_EINVAL);
    assert_int_equal(rd_fsm_inject_corrupt(&f, NULL, "a"), RD_EINVAL);
    apply(&f, cmd_task_submit("no-checkpoints", 1, 0, 1, 3, 30));
    d = rd_fsm_digest(&f);
    assert_int_equal(rd_fsm_inject_corrupt(&f, "checkpoint", "no-checkpoints"), RD_ENOTFOUND);
    assert_true(rd_fsm_digest(&f) == d);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corrupt_node_shows_in_digest),
        cmocka_unit_test(test_corrupt_checkpoint_fails_its_checksum),
        cmocka_unit_test(test_digest_skew_only_full_recomputation_sees),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
