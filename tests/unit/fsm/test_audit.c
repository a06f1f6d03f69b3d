/* Audit records (engine/fsm/audit.c, issue 12): a command's audit part
 * becomes a record in the same apply as its change (refused or not), a
 * record alone, retention by count and by age, the cursor's index, the
 * command's format 2 and its bounds, snapshots and the digest. */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

/* An operator's audit part on `c`. */
static void part(struct rd_cmd *c, const char *action, const char *target, uint32_t keep,
                 uint32_t max_age_s)
{
    c->audit = (struct rd_cmd_audit){.present = 1,
                                     .principal = RD_STR("tok-ops"),
                                     .role = 3,
                                     .source = RD_STR("10.0.0.9:51000"),
                                     .method = RD_STR("POST"),
                                     .action = RD_STR(action),
                                     .target = RD_STR(target),
                                     .status = 200,
                                     .error = RD_STR(""),
                                     .request_id = RD_STR("req-42"),
                                     .cause = RD_STR(""),
                                     .keep = keep,
                                     .max_age_s = max_age_s};
}

static struct rd_wbuf isolate(const char *node, int64_t t, uint8_t from_state)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_TRANSITION, .time_ms = t};
    c.u.trans.node_id = RD_STR(node);
    c.u.trans.state = RD_NODE_ISOLATED;
    c.u.trans.reason = RD_STR("operator");
    c.u.trans.from_state = from_state;
    part(&c, "node_isolate", node, 0, 0);
    return fsm_encode(&c);
}

static struct rd_wbuf alone(const char *action, int64_t t, uint32_t keep, uint32_t max_age_s)
{
    struct rd_cmd c = {.type = RD_CMD_AUDIT, .time_ms = t};
    part(&c, action, "", keep, max_age_s);
    c.audit.status = 403;
    c.audit.error = RD_STR("forbidden");
    return fsm_encode(&c);
}

static const struct rd_audit *last(const struct rd_fsm *f)
{
    size_t n;
    const struct rd_audit *const *as = rd_fsm_audits(f, &n);
    assert_true(n > 0);
    return as[n - 1];
}

static void test_change_and_record_in_one_apply(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("agent-17", 2, 100));
    assert_int_equal(apply(&f, isolate("agent-17", 200, RD_STATE_ANY))->status, 0);
    assert_int_equal(rd_fsm_node(&f, "agent-17", 8)->state, RD_NODE_ISOLATED);
    size_t n;
    rd_fsm_audits(&f, &n);
    assert_int_equal(n, 1);
    const struct rd_audit *a = last(&f);
    assert_int_equal(a->seq, 1);
    assert_int_equal(a->at_ms, 200);
    assert_int_equal(a->status, 200);
    assert_int_equal(a->role, 3);
    assert_string_equal(a->principal, "tok-ops");
    assert_string_equal(a->source, "10.0.0.9:51000");
    assert_string_equal(a->method, "POST");
    assert_string_equal(a->action, "node_isolate");
    assert_string_equal(a->target, "agent-17");
    assert_string_equal(a->error, "");
    assert_string_equal(a->request_id, "req-42");
    assert_int_equal(f.audits_written, 1);

    /* Refused (not in the state it requires): nothing changes but the
     * record, which shows the refusal. */
    assert_int_equal(apply(&f, isolate("agent-17", 300, RD_NODE_ALIVE))->status, RD_ECONFLICT);
    a = last(&f);
    assert_int_equal(a->seq, 2);
    assert_int_equal(a->status, 409);
    assert_string_equal(a->error, "conflict");
    /* A record alone keeps the outcome it was given. */
    assert_int_equal(apply(&f, alone("node_drain", 400, 0, 0))->status, 0);
    a = last(&f);
    assert_int_equal(a->status, 403);
    assert_string_equal(a->error, "forbidden");
    assert_string_equal(a->target, "");
    /* A command without a part records nothing. */
    apply(&f, cmd_register("agent-18", 1, 500));
    rd_fsm_audits(&f, &n);
    assert_int_equal(n, 3);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

static void test_retention_by_count_and_age(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    /* By count: 500 records with keep 100 (the slide-down of the array is
     * crossed several times). */
    for (int i = 0; i < 500; i++)
        apply(&f, alone("node_drain", 1000 + i, 100, 0));
    size_t n;
    const struct rd_audit *const *as = rd_fsm_audits(&f, &n);
    assert_int_equal(n, 100);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(as[i]->seq, 401 + i);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    /* By age: 60 s; a record 61 s later leaves only the ones within it. */
    apply(&f, alone("node_drain", 1000 + 499 + 61000, 100, 60));
    as = rd_fsm_audits(&f, &n);
    assert_int_equal(n, 1);
    assert_int_equal(as[0]->seq, 501);
    /* The newest record always stays, even older than the bound. */
    apply(&f, alone("node_drain", 10, 1, 1));
    as = rd_fsm_audits(&f, &n);
    assert_int_equal(n, 1);
    assert_int_equal(as[0]->seq, 502);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

static void test_index_for_cursors(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    assert_int_equal(rd_fsm_audit_index(&f, 5), 0);
    for (int i = 0; i < 30; i++)
        apply(&f, alone("node_drain", 1000 + i, 20, 0));
    /* Records 11..30 are held. */
    assert_int_equal(rd_fsm_audit_index(&f, 1), 0); /* pruned: the oldest held */
    assert_int_equal(rd_fsm_audit_index(&f, 11), 0);
    assert_int_equal(rd_fsm_audit_index(&f, 15), 4);
    assert_int_equal(rd_fsm_audit_index(&f, 30), 19);
    assert_int_equal(rd_fsm_audit_index(&f, 31), 20);
    assert_int_equal(rd_fsm_audit_index(&f, 1000), 20);
    rd_fsm_close(&f);
}

static void test_format_and_bounds(void **state)
{
    /* Without a part a command stays format 1, byte for byte as before. */
    struct rd_cmd c = {.type = RD_CMD_NOOP, .time_ms = 7};
    struct rd_wbuf w = fsm_encode(&c);
    assert_int_equal(w.p[0], RD_CMD_FORMAT);
    struct rd_cmd d;
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), 0);
    assert_false(d.audit.present);
    rd_w_free(&w);
    /* With one: format 2, and the part comes back. */
    part(&c, "recovery_open", "agent-1", 10, 20);
    w = fsm_encode(&c);
    assert_int_equal(w.p[0], RD_CMD_FORMAT_AUDIT);
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), 0);
    assert_true(d.audit.present);
    assert_int_equal(d.audit.keep, 10);
    assert_int_equal(d.audit.max_age_s, 20);
    assert_int_equal(d.audit.target.len, 7);
    /* Truncated inside the part. */
    assert_int_equal(rd_cmd_decode(w.p, RD_CMD_HEADER_SIZE + 6, &d), RD_EPARSE);
    rd_w_free(&w);
    /* A record alone needs its part; bounds are enforced. */
    struct rd_cmd bare = {.type = RD_CMD_AUDIT, .time_ms = 1};
    w = fsm_encode(&bare); /* encodes an empty part: no principal, no action */
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), RD_EPARSE);
    rd_w_free(&w);
    char longer[128];
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    part(&c, "node_drain", "", 0, 0);
    c.audit.principal = RD_STR(longer); /* 127 > 95 */
    w = fsm_encode(&c);
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), RD_EPARSE);
    rd_w_free(&w);
    part(&c, "node_drain", "", 0, 0);
    c.audit.role = 9;
    w = fsm_encode(&c);
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), RD_EPARSE);
    rd_w_free(&w);
}

static void test_snapshot_round_trip(void **state)
{
    struct rd_fsm a, b;
    rd_fsm_init(&a);
    rd_fsm_init(&b);
    apply(&a, cmd_register("agent-17", 2, 100));
    for (int i = 0; i < 150; i++) /* pruned from the front: the head moved */
        apply(&a, alone(i % 2 ? "node_drain" : "node_isolate", 1000 + i, 64, 0));
    apply(&a, isolate("agent-17", 5000, RD_STATE_ANY));
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&a, &snap), 0);
    assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len), 0);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    assert_true(rd_fsm_digest(&b) == rd_fsm_digest_full(&b));
    size_t na, nb;
    const struct rd_audit *const *xa = rd_fsm_audits(&a, &na);
    const struct rd_audit *const *xb = rd_fsm_audits(&b, &nb);
    assert_int_equal(na, 65); /* 64 kept, then the isolation's (default retention) */
    assert_int_equal(nb, na);
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(xa[i]->seq, xb[i]->seq);
        assert_int_equal(xa[i]->at_ms, xb[i]->at_ms);
        assert_int_equal(xa[i]->status, xb[i]->status);
        assert_string_equal(xa[i]->action, xb[i]->action);
        assert_string_equal(xa[i]->request_id, xb[i]->request_id);
    }
    /* Both go on alike: the next record is seq 152 on each. */
    apply(&a, alone("node_drain", 6000, 64, 0));
    apply(&b, alone("node_drain", 6000, 64, 0));
    assert_int_equal(last(&b)->seq, 152);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    rd_w_free(&snap);
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

/* A machine that never saw an audit record digests as it did before they
 * existed (replicas of the previous version compare equal). */
static void test_digest_unchanged_without_records(void **state)
{
    struct rd_fsm a, b;
    rd_fsm_init(&a);
    rd_fsm_init(&b);
    apply(&a, cmd_register("agent-1", 2, 100));
    apply(&b, cmd_register("agent-1", 2, 100));
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    apply(&b, alone("node_drain", 200, 0, 0));
    apply(&a, cmd_register("agent-2", 2, 200)); /* same applied count */
    apply(&b, cmd_register("agent-2", 2, 200));
    assert_true(rd_fsm_digest(&a) != rd_fsm_digest(&b));
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_change_and_record_in_one_apply),
        cmocka_unit_test(test_retention_by_count_and_age),
        cmocka_unit_test(test_index_for_cursors),
        cmocka_unit_test(test_format_and_bounds),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_digest_unchanged_without_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
