/* Consistency checks (engine/fsm/checks.c): the digest taken before the
 * check's own record, the local ring and its observer, verdicts, the cap,
 * snapshots. */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

#define C1 "c1000000-0000-4000-8000-000000000001"
#define C2 "c2000000-0000-4000-8000-000000000002"

static int status_of(struct rd_fsm *f, struct rd_wbuf w)
{
    return apply(f, w)->status;
}

struct seen {
    int calls;
    struct rd_check_local last;
};

static void on_check(void *data, const struct rd_check_local *l)
{
    struct seen *s = data;
    s->calls++;
    s->last = *l;
}

static void test_check_digests_state_before_it(void **state)
{
    struct rd_fsm f, g;
    rd_fsm_init(&f);
    struct seen seen = {0};
    f.on_check = on_check;
    f.on_check_data = &seen;
    apply(&f, cmd_register("a", 2, 10));
    apply(&f, cmd_register("b", 2, 11));
    uint64_t before = rd_fsm_digest(&f);
    /* Unbound to raft: the index is the applied count + 1 (fsm.h). */
    const struct rd_fsm_result *r = apply(&f, cmd_check(C1, 20));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, 3);
    const struct rd_check *c = rd_fsm_check_find(&f, C1);
    assert_non_null(c);
    assert_int_equal(c->index, 3);
    assert_int_equal(c->started_at_ms, 20);
    assert_int_equal(c->completed_at_ms, 0);
    assert_int_equal(c->status, RD_CHECK_PENDING);
    assert_null(c->digests_json);
    assert_null(c->diverged_json);
    const struct rd_check_local *l = rd_fsm_check_local(&f, C1);
    assert_non_null(l);
    assert_string_equal(l->id, C1);
    assert_int_equal(l->index, 3);
    assert_true(l->digest == before);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.last.id, C1);
    assert_true(seen.last.digest == before);
    assert_true(rd_fsm_digest(&f) != before); /* the record is state */
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));

    /* The same id again: refused, not digested again. */
    assert_int_equal(status_of(&f, cmd_check(C1, 21)), RD_EEXISTS);
    assert_int_equal(seen.calls, 1);

    /* The verdict, once, and never "pending". */
    assert_int_equal(status_of(&f, cmd_check_result(C2, RD_CHECK_CONSISTENT, "{}", "[]", 30)),
                     RD_ENOTFOUND);
    assert_int_equal(status_of(&f, cmd_check_result(C1, RD_CHECK_PENDING, "{}", "[]", 30)),
                     RD_ECONFLICT);
    const char *digests = "{\"1\":\"00000000000000aa\",\"2\":\"00000000000000bb\",\"3\":null}";
    assert_int_equal(status_of(&f, cmd_check_result(C1, RD_CHECK_MISMATCH, digests, "[2]", 31)), 0);
    c = rd_fsm_check_find(&f, C1);
    assert_int_equal(c->status, RD_CHECK_MISMATCH);
    assert_int_equal(c->completed_at_ms, 31);
    assert_string_equal(c->digests_json, digests);
    assert_string_equal(c->diverged_json, "[2]");
    assert_int_equal(status_of(&f, cmd_check_result(C1, RD_CHECK_CONSISTENT, "{}", "[]", 32)),
                     RD_ECONFLICT);
    assert_int_equal(status_of(&f, cmd_check(C2, 40)), 0);

    /* Records through a snapshot; the local ring is not state. */
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&f, &snap), 0);
    rd_fsm_init(&g);
    assert_int_equal(rd_fsm_restore(&g, snap.p, snap.len), 0);
    rd_w_free(&snap);
    size_t n;
    const struct rd_check *const *all = rd_fsm_checks(&g, &n);
    assert_int_equal(n, 2);
    assert_string_equal(all[0]->id, C1);
    assert_int_equal(all[0]->index, 3);
    assert_int_equal(all[0]->started_at_ms, 20);
    assert_int_equal(all[0]->status, RD_CHECK_MISMATCH);
    assert_string_equal(all[0]->digests_json, digests);
    assert_string_equal(all[0]->diverged_json, "[2]");
    assert_string_equal(all[1]->id, C2);
    assert_int_equal(all[1]->status, RD_CHECK_PENDING);
    assert_null(all[1]->digests_json);
    assert_null(rd_fsm_check_local(&g, C1));
    assert_true(rd_fsm_digest(&g) == rd_fsm_digest(&f));
    rd_fsm_close(&g);

    /* A restore keeps this replica's own ring. */
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&f, &snap), 0);
    assert_int_equal(rd_fsm_restore(&f, snap.p, snap.len), 0);
    rd_w_free(&snap);
    assert_non_null(rd_fsm_check_local(&f, C1));
    rd_fsm_close(&f);
}

/* Two machines that applied the same log report the same digest at a
 * check; one that diverged reports another. */
static void test_diverged_replica_digests_differently(void **state)
{
    struct rd_fsm a, b;
    rd_fsm_init(&a);
    rd_fsm_init(&b);
    apply(&a, cmd_register("n1", 1, 10));
    apply(&b, cmd_register("n1", 1, 10));
    apply(&a, cmd_check("x", 20));
    apply(&b, cmd_check("x", 20));
    assert_true(rd_fsm_check_local(&a, "x")->digest == rd_fsm_check_local(&b, "x")->digest);
    apply(&a, cmd_register("n2", 1, 30));
    apply(&b, cmd_register("n2", 2, 30)); /* a diverging apply */
    apply(&a, cmd_check("y", 40));
    apply(&b, cmd_check("y", 40));
    assert_true(rd_fsm_check_local(&a, "y")->digest != rd_fsm_check_local(&b, "y")->digest);
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

/* The ring keeps the last RD_FSM_CHECK_LOCAL_KEEP; records are capped at
 * RD_FSM_MAX_CHECKS, the oldest finished first. */
static void test_ring_and_cap(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    char id[40];
    apply(&f, cmd_check("pending-forever", 1));
    for (int i = 1; i <= RD_FSM_MAX_CHECKS + 5; i++) {
        snprintf(id, sizeof(id), "k-%05d", i);
        assert_int_equal(status_of(&f, cmd_check(id, 10 + i)), 0);
        if (i <= RD_FSM_MAX_CHECKS)
            assert_int_equal(
                status_of(&f, cmd_check_result(id, RD_CHECK_CONSISTENT, "{}", "[]", 10 + i)), 0);
        if (i % 97 == 0)
            assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    }
    assert_int_equal(f.n_checks, RD_FSM_MAX_CHECKS);
    assert_non_null(rd_fsm_check_find(&f, "pending-forever"));
    assert_null(rd_fsm_check_find(&f, "k-00006"));
    assert_non_null(rd_fsm_check_find(&f, "k-00007"));
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    /* The ring: the newest 64 ids, the older ones gone. */
    assert_int_equal(f.n_check_local, RD_FSM_CHECK_LOCAL_KEEP);
    snprintf(id, sizeof(id), "k-%05d", RD_FSM_MAX_CHECKS + 5);
    assert_non_null(rd_fsm_check_local(&f, id));
    snprintf(id, sizeof(id), "k-%05d", RD_FSM_MAX_CHECKS + 5 - RD_FSM_CHECK_LOCAL_KEEP + 1);
    assert_non_null(rd_fsm_check_local(&f, id));
    snprintf(id, sizeof(id), "k-%05d", RD_FSM_MAX_CHECKS + 5 - RD_FSM_CHECK_LOCAL_KEEP);
    assert_null(rd_fsm_check_local(&f, id));
    assert_null(rd_fsm_check_local(&f, "pending-forever"));
    rd_fsm_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_digests_state_before_it),
        cmocka_unit_test(test_diverged_replica_digests_differently),
        cmocka_unit_test(test_ring_and_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
