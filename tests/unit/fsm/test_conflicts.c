/*
 * Conflict records (issue 17, availability mode): RD_CMD_CONFLICT records a
 * write of a superseded attempt and carries out the leader's resolution in
 * the same step. Each resolution, what is not a conflict, the same write
 * replayed, a finished task, the bound, the prune with the task, snapshots
 * and the digest.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

#define T1 "11111111-1111-4111-8111-111111111111"
#define T2 "22222222-2222-4222-8222-222222222222"
#define C1 "c0000000-0000-4000-8000-000000000001"
#define C2 "c0000000-0000-4000-8000-000000000002"
#define C3 "c0000000-0000-4000-8000-000000000003"

/* Two agents; T1 ran on agent-a (attempt 1, checkpoint 3), then moved to
 * agent-b (attempt 2) while agent-a was cut off; agent-b wrote version 4. */
static void moved_task(struct rd_fsm *f)
{
    rd_fsm_init(f);
    apply(f, cmd_register("agent-a", 4, 10));
    apply(f, cmd_register("agent-b", 4, 11));
    apply(f, cmd_task_submit(T1, 5, 0, 1, 5, 20));
    assert_int_equal(apply(f, cmd_task_assign(T1, 0, "agent-a", 1, 21))->status, 0);
    assert_int_equal(apply(f, cmd_task_ckpt(T1, 1, 3, "{\"n\":3}", 3, 22))->status, 0);
    assert_int_equal(apply(f, cmd_task_assign(T1, 1, "agent-b", 1, 23))->status, 0);
    assert_int_equal(apply(f, cmd_task_ckpt(T1, 2, 4, "{\"n\":4}", 3, 24))->status, 0);
}

static const struct rd_conflict *only_record(const struct rd_fsm *f)
{
    size_t n;
    const struct rd_conflict *const *cs = rd_fsm_conflicts(f, &n);
    assert_int_equal(n, 1);
    return cs[0];
}

/* Records the task observer's calls (the engine revokes attempts there). */
struct seen {
    int calls;
    int old_state;
    char old_node[64];
};

static void on_task(void *data, const struct rd_task *t, int old_state, const char *old_node)
{
    struct seen *s = data;
    (void)t;
    s->calls++;
    s->old_state = old_state;
    snprintf(s->old_node, sizeof(s->old_node), "%s", old_node);
}

static void test_keep_newer_records_only(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    int64_t updated = t->updated_at;
    uint64_t before = rd_fsm_digest(&f);
    const struct rd_fsm_result *r =
        apply(&f, cmd_conflict(C1, T1, 1, RD_CONFLICT_CHECKPOINT, 9, "{\"n\":9}", "agent-a",
                               RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "hook", 30));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, 1); /* the record's seq */
    assert_null(r->task);          /* the task did not change */
    const struct rd_conflict *c = only_record(&f);
    assert_string_equal(c->id, C1);
    assert_int_equal(c->attempt, 1);
    assert_int_equal(c->task_attempt, 2);
    assert_int_equal(c->version, 9);
    assert_int_equal(c->stored_version, 4);
    assert_int_equal(c->adopted, 0);
    assert_string_equal(c->node_id, "agent-a");
    assert_string_equal(c->task_node_id, "agent-b");
    assert_string_equal(c->data, "{\"n\":9}"); /* kept: nothing is lost */
    assert_int_equal(c->resolved_by, RD_CONFLICT_BY_POLICY);
    assert_int_equal(t->state, RD_TASK_RUNNING);
    assert_string_equal(t->node_id, "agent-b");
    assert_int_equal(rd_task_checkpoint(t)->version, 4);
    assert_int_equal(t->updated_at, updated);
    assert_int_equal(f.conflicts_written[RD_CONFLICT_CHECKPOINT][RD_CONFLICT_KEEP_NEWER], 1);
    assert_true(rd_fsm_digest(&f) != before);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

static void test_keep_progress_adopts_a_newer_checkpoint_and_takes_the_task_back(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    struct seen seen = {0};
    f.on_task = on_task;
    f.on_task_data = &seen;
    const struct rd_node *b = rd_fsm_node(&f, "agent-b", 7);
    assert_int_equal(b->n_tasks, 1);
    const struct rd_fsm_result *r =
        apply(&f, cmd_conflict(C1, T1, 1, RD_CONFLICT_CHECKPOINT, 9, "{\"n\":9}", "agent-a",
                               RD_CONFLICT_KEEP_PROGRESS, RD_CONFLICT_BY_POLICY, "", 30));
    assert_int_equal(r->status, 0);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_ptr_equal(r->task, t);
    const struct rd_conflict *c = only_record(&f);
    assert_int_equal(c->adopted, 1);
    assert_int_equal(c->stored_version, 4);
    /* The further progress is the task's checkpoint; the task waits to be
     * placed again (a new attempt resumes from it); agent-b's attempt 2 is
     * fenced (pending: it may no longer write) and revoked by the observer. */
    assert_int_equal(rd_task_checkpoint(t)->version, 9);
    assert_string_equal(rd_task_checkpoint(t)->data, "{\"n\":9}");
    assert_true(rd_checkpoint_verifies(rd_task_checkpoint(t)));
    assert_int_equal(t->state, RD_TASK_PENDING);
    assert_string_equal(t->node_id, "");
    assert_int_equal(t->attempt, 2);
    assert_int_equal(b->n_tasks, 0);
    assert_int_equal(b->slots_in_use, 0);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.old_state, RD_TASK_RUNNING);
    assert_string_equal(seen.old_node, "agent-b");
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 2, 10, "{}", 3, 31))->status, RD_EFENCED);
    /* Placed again: attempt 3. */
    assert_int_equal(apply(&f, cmd_task_assign(T1, 2, "agent-a", 1, 32))->status, 0);
    assert_int_equal(t->attempt, 3);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

static void test_keep_progress_adopts_nothing_older(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    const struct rd_fsm_result *r =
        apply(&f, cmd_conflict(C1, T1, 1, RD_CONFLICT_CHECKPOINT, 4, "{\"n\":\"a4\"}", "agent-a",
                               RD_CONFLICT_KEEP_PROGRESS, RD_CONFLICT_BY_CONFIG, "", 30));
    assert_int_equal(r->status, 0);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_int_equal(only_record(&f)->adopted, 0);
    assert_int_equal(only_record(&f)->resolution, RD_CONFLICT_KEEP_PROGRESS);
    assert_int_equal(t->state, RD_TASK_RUNNING);
    assert_string_equal(t->node_id, "agent-b");
    assert_string_equal(rd_task_checkpoint(t)->data, "{\"n\":4}");
    /* A failure report adopts nothing either. */
    r = apply(&f, cmd_conflict(C2, T1, 1, RD_CONFLICT_FAIL, 0, "disk full", "agent-a",
                               RD_CONFLICT_KEEP_PROGRESS, RD_CONFLICT_BY_POLICY, "", 31));
    assert_int_equal(r->status, 0);
    assert_int_equal(t->state, RD_TASK_RUNNING);
    assert_string_equal(rd_fsm_conflict_find(&f, C2)->data, "disk full");
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

static void test_keep_progress_completes_with_the_stale_result(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    const struct rd_fsm_result *r =
        apply(&f, cmd_conflict(C1, T1, 1, RD_CONFLICT_COMPLETE, 0, "{\"answer\":42}", "agent-a",
                               RD_CONFLICT_KEEP_PROGRESS, RD_CONFLICT_BY_POLICY, "", 30));
    assert_int_equal(r->status, 0);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_int_equal(t->state, RD_TASK_COMPLETED);
    assert_string_equal(t->result_json, "{\"answer\":42}");
    assert_string_equal(t->node_id, "");
    assert_int_equal(rd_fsm_node(&f, "agent-b", 7)->n_tasks, 0);
    assert_int_equal(only_record(&f)->adopted, 1);
    /* agent-b's attempt may no longer checkpoint; its completion answers
     * as a repeated one does (the task is completed) and changes nothing. */
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 2, 5, "{}", 3, 31))->status, RD_EFENCED);
    assert_int_equal(apply(&f, cmd_task_finish(T1, 2, RD_TASK_FAILED, "x", 32))->status,
                     RD_ECONFLICT);
    assert_string_equal(t->result_json, "{\"answer\":42}");
    rd_fsm_close(&f);
}

static void test_fail_task_fails_it(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    const struct rd_fsm_result *r =
        apply(&f, cmd_conflict(C1, T1, 1, RD_CONFLICT_CHECKPOINT, 9, "{}", "agent-a",
                               RD_CONFLICT_FAIL_TASK, RD_CONFLICT_BY_POLICY, "", 30));
    assert_int_equal(r->status, 0);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_int_equal(t->state, RD_TASK_FAILED);
    assert_non_null(strstr(t->result_json, "conflict " C1));
    assert_non_null(strstr(t->result_json, "superseded attempt 1"));
    assert_int_equal(rd_task_checkpoint(t)->version, 4); /* nothing adopted */
    assert_int_equal(only_record(&f)->adopted, 0);
    assert_int_equal(only_record(&f)->resolution, RD_CONFLICT_FAIL_TASK);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

static void test_a_finished_task_is_recorded_by_the_engine(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    assert_int_equal(
        apply(&f, cmd_task_finish(T1, 2, RD_TASK_COMPLETED, "{\"by\":\"b\"}", 30))->status, 0);
    const struct rd_fsm_result *r =
        apply(&f, cmd_conflict(C1, T1, 1, RD_CONFLICT_COMPLETE, 0, "{\"by\":\"a\"}", "agent-a",
                               RD_CONFLICT_FAIL_TASK, RD_CONFLICT_BY_POLICY, "hook", 31));
    assert_int_equal(r->status, 0);
    const struct rd_conflict *c = only_record(&f);
    assert_int_equal(c->resolution, RD_CONFLICT_KEEP_NEWER);
    assert_int_equal(c->resolved_by, RD_CONFLICT_BY_ENGINE);
    assert_string_equal(c->reason, "task finished");
    assert_int_equal(rd_fsm_task(&f, T1)->state, RD_TASK_COMPLETED);
    assert_string_equal(rd_fsm_task(&f, T1)->result_json, "{\"by\":\"b\"}");
    rd_fsm_close(&f);
}

static void test_what_is_not_a_conflict_is_refused(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    /* The live attempt may write: not a conflict. */
    assert_int_equal(apply(&f, cmd_conflict(C1, T1, 2, RD_CONFLICT_CHECKPOINT, 9, "{}", "",
                                            RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 30))
                         ->status,
                     RD_ECONFLICT);
    /* An attempt the task never had, or attempt 0. */
    assert_int_equal(apply(&f, cmd_conflict(C1, T1, 3, RD_CONFLICT_CHECKPOINT, 9, "{}", "",
                                            RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 31))
                         ->status,
                     RD_EFENCED);
    assert_int_equal(apply(&f, cmd_conflict(C1, T1, 0, RD_CONFLICT_COMPLETE, 0, "{}", "",
                                            RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 32))
                         ->status,
                     RD_EFENCED);
    assert_int_equal(apply(&f, cmd_conflict(C1, T2, 1, RD_CONFLICT_COMPLETE, 0, "{}", "",
                                            RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 33))
                         ->status,
                     RD_ENOTFOUND);
    size_t n;
    rd_fsm_conflicts(&f, &n);
    assert_int_equal(n, 0);
    /* The same attempt taken back (pending) is one. */
    assert_int_equal(apply(&f, cmd_task_assign(T1, 2, "", 0, 34))->status, 0);
    assert_int_equal(apply(&f, cmd_conflict(C1, T1, 2, RD_CONFLICT_CHECKPOINT, 5, "{}", "",
                                            RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 35))
                         ->status,
                     0);
    rd_fsm_close(&f);
}

static void test_the_same_write_again_finds_its_record(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    struct seen seen = {0};
    f.on_task = on_task;
    f.on_task_data = &seen;
    apply(&f, cmd_conflict(C1, T1, 1, RD_CONFLICT_CHECKPOINT, 9, "{\"n\":9}", "agent-a",
                           RD_CONFLICT_KEEP_PROGRESS, RD_CONFLICT_BY_POLICY, "", 30));
    uint64_t digest = rd_fsm_digest(&f);
    /* Replayed (a new id from the leader, another resolution even): the
     * first record answers, nothing changes. */
    const struct rd_fsm_result *r =
        apply(&f, cmd_conflict(C2, T1, 1, RD_CONFLICT_CHECKPOINT, 9, "{\"n\":9}", "agent-a",
                               RD_CONFLICT_FAIL_TASK, RD_CONFLICT_BY_POLICY, "", 31));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, 1);
    assert_null(r->task);
    assert_int_equal(seen.calls, 1);
    assert_ptr_equal(only_record(&f), rd_fsm_conflict_by_seq(&f, 1));
    assert_null(rd_fsm_conflict_find(&f, C2));
    assert_int_equal(rd_fsm_task(&f, T1)->state, RD_TASK_PENDING);
    /* Only the applied count and time moved. */
    assert_true(rd_fsm_digest(&f) != digest);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    /* Another version of the same attempt is another record; an id used
     * before for another write is refused. */
    assert_int_equal(apply(&f, cmd_conflict(C2, T1, 1, RD_CONFLICT_CHECKPOINT, 8, "{}", "",
                                            RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 32))
                         ->value,
                     2);
    assert_int_equal(apply(&f, cmd_conflict(C2, T1, 1, RD_CONFLICT_CHECKPOINT, 7, "{}", "",
                                            RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 33))
                         ->status,
                     RD_EEXISTS);
    rd_fsm_close(&f);
}

static void test_records_are_bounded_and_go_with_their_task(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    char id[40];
    for (unsigned i = 0; i < RD_FSM_MAX_CONFLICTS + 5; i++) {
        snprintf(id, sizeof(id), "d0000000-0000-4000-8000-%012u", i);
        assert_int_equal(
            apply(&f, cmd_conflict(id, T1, 1, RD_CONFLICT_CHECKPOINT, i + 1, "{}", "",
                                   RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 100 + i))
                ->status,
            0);
    }
    size_t n;
    const struct rd_conflict *const *cs = rd_fsm_conflicts(&f, &n);
    assert_int_equal(n, RD_FSM_MAX_CONFLICTS);
    assert_int_equal(cs[0]->seq, 6); /* the oldest five went */
    assert_null(rd_fsm_conflict_by_seq(&f, 5));
    assert_non_null(rd_fsm_conflict_by_seq(&f, RD_FSM_MAX_CONFLICTS + 5));
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    /* The task finishes and is pruned: its records go with it; T2's stay. */
    apply(&f, cmd_task_submit(T2, 5, 0, 1, 5, 20000));
    apply(&f, cmd_task_assign(T2, 0, "agent-a", 1, 20001));
    apply(&f, cmd_task_assign(T2, 1, "agent-b", 1, 20002));
    apply(&f, cmd_conflict(C3, T2, 1, RD_CONFLICT_FAIL, 0, "x", "", RD_CONFLICT_KEEP_NEWER,
                           RD_CONFLICT_BY_POLICY, "", 20003));
    apply(&f, cmd_task_finish(T1, 2, RD_TASK_COMPLETED, "{}", 20004));
    struct rd_cmd c = {.type = RD_CMD_TASK_LIFECYCLE, .time_ms = 30000};
    c.u.tlife.op = RD_TASK_OP_PRUNE;
    c.u.tlife.task_id = RD_STR("");
    c.u.tlife.reason = RD_STR("");
    c.u.tlife.retention_ms = 100;
    c.u.tlife.max = 10;
    assert_int_equal(apply(&f, fsm_encode(&c))->value, 1);
    assert_null(rd_fsm_task(&f, T1));
    cs = rd_fsm_conflicts(&f, &n);
    assert_int_equal(n, 1);
    assert_string_equal(cs[0]->id, C3);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

/* Record `i` of the bound test: a checkpoint write of T1's attempt 1 at
 * version i + 1, its id from i. */
static const struct rd_fsm_result *write_at(struct rd_fsm *f, unsigned i)
{
    char id[40];
    snprintf(id, sizeof(id), "d0000000-0000-4000-8000-%012u", i);
    return apply(f, cmd_conflict(id, T1, 1, RD_CONFLICT_CHECKPOINT, i + 1, "{}", "",
                                 RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 100 + i));
}

/* At the bound, through two and a half times the bound (the array's live
 * part slides down along the way): the oldest go first, in order; a write
 * whose record went is neither found by id nor as the same write, and
 * written again is a new record; one whose record stays answers with it; a
 * snapshot holds the same records and finds the same writes. */
static void test_bound_evicts_oldest_first_and_lookups_follow(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    const unsigned total = RD_FSM_MAX_CONFLICTS * 5 / 2;
    for (unsigned i = 0; i < total; i++) {
        assert_int_equal(write_at(&f, i)->value, i + 1);
        if (i % 997 != 0) /* the checks below, now and then along the way */
            continue;
        size_t n;
        const struct rd_conflict *const *cs = rd_fsm_conflicts(&f, &n);
        unsigned first = i + 1 > RD_FSM_MAX_CONFLICTS ? i + 1 - RD_FSM_MAX_CONFLICTS : 0;
        assert_int_equal(n, i + 1 - first);
        assert_int_equal(cs[0]->seq, first + 1);
        assert_int_equal(cs[n - 1]->seq, i + 1);
        assert_ptr_equal(rd_fsm_conflict_by_seq(&f, first + 1), cs[0]);
        if (first > 0) {
            assert_null(rd_fsm_conflict_by_seq(&f, first));
            assert_null(rd_fsm_conflict_same(&f, T1, 1, RD_CONFLICT_CHECKPOINT, first));
        }
        assert_ptr_equal(rd_fsm_conflict_same(&f, T1, 1, RD_CONFLICT_CHECKPOINT, first + 1), cs[0]);
    }
    size_t n;
    const struct rd_conflict *const *cs = rd_fsm_conflicts(&f, &n);
    assert_int_equal(n, RD_FSM_MAX_CONFLICTS);
    uint64_t first = total - RD_FSM_MAX_CONFLICTS + 1; /* the oldest seq kept */
    for (size_t i = 0; i < n; i++) {                   /* in order, none missing */
        assert_int_equal(cs[i]->seq, first + i);
        assert_int_equal(cs[i]->version, first + i);
        assert_ptr_equal(rd_fsm_conflict_find(&f, cs[i]->id), cs[i]);
        assert_ptr_equal(rd_fsm_conflict_same(&f, T1, 1, RD_CONFLICT_CHECKPOINT, cs[i]->version),
                         cs[i]);
    }
    /* Gone: not by id, not as the same write, not by seq. */
    char id[40];
    snprintf(id, sizeof(id), "d0000000-0000-4000-8000-%012u", 0u);
    assert_null(rd_fsm_conflict_find(&f, id));
    assert_null(rd_fsm_conflict_same(&f, T1, 1, RD_CONFLICT_CHECKPOINT, 1));
    assert_null(rd_fsm_conflict_same(&f, T1, 1, RD_CONFLICT_CHECKPOINT, first - 1));
    /* Another attempt, kind or task is another write. */
    assert_null(rd_fsm_conflict_same(&f, T1, 2, RD_CONFLICT_CHECKPOINT, first));
    assert_null(rd_fsm_conflict_same(&f, T1, 1, RD_CONFLICT_COMPLETE, first));
    assert_null(rd_fsm_conflict_same(&f, T2, 1, RD_CONFLICT_CHECKPOINT, first));
    /* A kept write again answers with its record; nothing is added. */
    const struct rd_fsm_result *r =
        apply(&f, cmd_conflict("e0000000-0000-4000-8000-000000000001", T1, 1,
                               RD_CONFLICT_CHECKPOINT, first, "{}", "", RD_CONFLICT_KEEP_NEWER,
                               RD_CONFLICT_BY_POLICY, "", 900000));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, first);
    assert_int_equal(f.conflict_seq, total);
    /* The oldest write's record went: written again, it is a new record,
     * which pushes the oldest kept one out. */
    r = apply(&f,
              cmd_conflict("e0000000-0000-4000-8000-000000000002", T1, 1, RD_CONFLICT_CHECKPOINT, 1,
                           "{}", "", RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 900001));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, total + 1);
    assert_null(rd_fsm_conflict_same(&f, T1, 1, RD_CONFLICT_CHECKPOINT, first));
    assert_int_equal(rd_fsm_conflict_same(&f, T1, 1, RD_CONFLICT_CHECKPOINT, 1)->seq, total + 1);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    /* A snapshot holds the same and finds the same. */
    struct rd_fsm c;
    round_trip(&f, &c);
    cs = rd_fsm_conflicts(&c, &n);
    assert_int_equal(n, RD_FSM_MAX_CONFLICTS);
    assert_int_equal(cs[0]->seq, first + 1);
    assert_int_equal(rd_fsm_conflict_same(&c, T1, 1, RD_CONFLICT_CHECKPOINT, 1)->seq, total + 1);
    assert_ptr_equal(rd_fsm_conflict_same(&c, T1, 1, RD_CONFLICT_CHECKPOINT, first + 1), cs[0]);
    assert_null(rd_fsm_conflict_same(&c, T1, 1, RD_CONFLICT_CHECKPOINT, first));
    rd_fsm_close(&c);
    rd_fsm_close(&f);
}

/* CPU time of this thread in ns (what other processes do does not count). */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of writes `from` .. `from + n` (new records) and as many
 * lookups of a write never recorded, the least of three tries. */
static uint64_t cost_of(struct rd_fsm *f, unsigned from, unsigned n)
{
    uint64_t best = UINT64_MAX;
    for (int round = 0; round < 3; round++, from += n) {
        uint64_t t0 = cpu_ns();
        for (unsigned i = from; i < from + n; i++) {
            assert_int_equal(write_at(f, i)->status, 0);
            assert_null(rd_fsm_conflict_same(f, T1, 1, RD_CONFLICT_CHECKPOINT, 0));
        }
        uint64_t t = cpu_ns() - t0;
        best = t < best ? t : best;
    }
    return best;
}

/* A write and a lookup cost the same with 10,000 records (each write then
 * also drops the oldest) as with a few hundred: no walk over the records.
 * A walk over them made it 30 to 45 times the cost at the bound. */
static void test_costs_do_not_grow_with_the_records(void **state)
{
    struct rd_fsm f;
    moved_task(&f);
    enum { N = 300 };
    uint64_t few = cost_of(&f, 0, N); /* 0 to 900 records */
    for (unsigned i = 3 * N; i < RD_FSM_MAX_CONFLICTS; i++)
        write_at(&f, i);
    uint64_t full = cost_of(&f, RD_FSM_MAX_CONFLICTS, N); /* at the bound */
    print_message("conflicts: %u writes and lookups: %.2f ms with up to %u records, %.2f ms at "
                  "%u\n",
                  N, few / 1e6, 3 * N, full / 1e6, RD_FSM_MAX_CONFLICTS);
    assert_true(full < 8 * few);
    rd_fsm_close(&f);
}

/* Snapshots carry the records; a replica fed the same log (or a snapshot
 * of it) holds the same state. */
static void test_snapshot_round_trip_and_same_log_same_state(void **state)
{
    struct rd_fsm a, b, c;
    moved_task(&a);
    moved_task(&b);
    struct rd_wbuf log[3] = {
        cmd_conflict(C1, T1, 1, RD_CONFLICT_CHECKPOINT, 9, "{\"n\":9}", "agent-a",
                     RD_CONFLICT_KEEP_PROGRESS, RD_CONFLICT_BY_POLICY, "hook", 30),
        cmd_conflict(C2, T1, 1, RD_CONFLICT_COMPLETE, 0, "{\"r\":1}", "agent-a",
                     RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_CONFIG, "no hook", 31),
        cmd_conflict(C3, T1, 2, RD_CONFLICT_FAIL, 0, "late", "agent-b", RD_CONFLICT_FAIL_TASK,
                     RD_CONFLICT_BY_POLICY, "", 32),
    };
    for (int i = 0; i < 3; i++) {
        const struct rd_fsm_result *ra, *rb;
        assert_int_equal(rd_fsm_apply(&a, log[i].p, log[i].len, &ra), 0);
        int sa = ra->status;
        assert_int_equal(rd_fsm_apply(&b, log[i].p, log[i].len, &rb), 0);
        assert_int_equal(sa, rb->status);
        rd_w_free(&log[i]);
    }
    assert_int_equal(rd_fsm_task(&a, T1)->state, RD_TASK_FAILED);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&a, &snap), 0);
    rd_fsm_init(&c);
    assert_int_equal(rd_fsm_restore(&c, snap.p, snap.len), 0);
    assert_true(rd_fsm_digest(&c) == rd_fsm_digest(&a));
    assert_true(rd_fsm_digest(&c) == rd_fsm_digest_full(&c));
    size_t n;
    const struct rd_conflict *const *cs = rd_fsm_conflicts(&c, &n);
    assert_int_equal(n, 3);
    assert_int_equal(c.conflict_seq, 3);
    assert_string_equal(cs[1]->data, "{\"r\":1}");
    assert_string_equal(cs[1]->reason, "no hook");
    assert_int_equal(cs[2]->attempt, 2);
    /* The restored machine goes on numbering after the restored ones. */
    apply(&c, cmd_conflict("c0000000-0000-4000-8000-000000000004", T1, 2, RD_CONFLICT_CHECKPOINT,
                           99, "{}", "", RD_CONFLICT_KEEP_NEWER, RD_CONFLICT_BY_POLICY, "", 40));
    assert_int_equal(c.conflict_seq, 4);
    rd_w_free(&snap);
    rd_fsm_close(&a);
    rd_fsm_close(&b);
    rd_fsm_close(&c);
}

/* A state without conflicts digests as before they existed: a conflict
 * command refused changes the count of applied commands only. */
static void test_digest_without_records_is_unchanged(void **state)
{
    struct rd_fsm a, b;
    moved_task(&a);
    moved_task(&b);
    apply(&a, cmd_conflict(C1, T1, 2, RD_CONFLICT_CHECKPOINT, 9, "{}", "", RD_CONFLICT_KEEP_NEWER,
                           RD_CONFLICT_BY_POLICY, "", 30)); /* refused: not a conflict */
    apply(&b, cmd_task_ckpt(T1, 1, 9, "{}", 3, 30));        /* refused: fenced */
    assert_int_equal(a.conflict_seq, 0);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

static void test_codec_refuses_bad_commands(void **state)
{
    struct rd_cmd c = {.type = RD_CMD_CONFLICT, .time_ms = 1};
    c.u.conflict.id = RD_STR(C1);
    c.u.conflict.task_id = RD_STR(T1);
    c.u.conflict.attempt = 1;
    c.u.conflict.kind = RD_CONFLICT_CHECKPOINT;
    c.u.conflict.version = 3;
    c.u.conflict.data_json = RD_STR("{}");
    c.u.conflict.node_id = RD_STR("");
    c.u.conflict.reason = RD_STR("");
    struct rd_cmd out;
    struct rd_wbuf w = fsm_encode(&c);
    assert_int_equal(rd_cmd_decode(w.p, w.len, &out), 0);
    assert_int_equal(out.u.conflict.version, 3);
    assert_int_equal(out.u.conflict.kind, RD_CONFLICT_CHECKPOINT);
    assert_string_equal(rd_cmd_type_name(RD_CMD_CONFLICT), "conflict");
    assert_false(rd_cmd_batchable(RD_CMD_CONFLICT));
    rd_w_free(&w);
    c.u.conflict.version = 0; /* a checkpoint has a version */
    w = fsm_encode(&c);
    assert_int_equal(rd_cmd_decode(w.p, w.len, &out), RD_EPARSE);
    rd_w_free(&w);
    c.u.conflict.version = 3;
    c.u.conflict.resolution = RD_CONFLICT_RES_COUNT;
    w = fsm_encode(&c);
    assert_int_equal(rd_cmd_decode(w.p, w.len, &out), RD_EPARSE);
    rd_w_free(&w);
    assert_int_equal(rd_conflict_res_parse("keep_progress"), RD_CONFLICT_KEEP_PROGRESS);
    assert_int_equal(rd_conflict_res_parse("keep"), -1);
    assert_string_equal(rd_conflict_kind_name(RD_CONFLICT_FAIL), "fail");
    assert_string_equal(rd_conflict_by_name(RD_CONFLICT_BY_ENGINE), "engine");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_newer_records_only),
        cmocka_unit_test(test_keep_progress_adopts_a_newer_checkpoint_and_takes_the_task_back),
        cmocka_unit_test(test_keep_progress_adopts_nothing_older),
        cmocka_unit_test(test_keep_progress_completes_with_the_stale_result),
        cmocka_unit_test(test_fail_task_fails_it),
        cmocka_unit_test(test_a_finished_task_is_recorded_by_the_engine),
        cmocka_unit_test(test_what_is_not_a_conflict_is_refused),
        cmocka_unit_test(test_the_same_write_again_finds_its_record),
        cmocka_unit_test(test_records_are_bounded_and_go_with_their_task),
        cmocka_unit_test(test_bound_evicts_oldest_first_and_lookups_follow),
        cmocka_unit_test(test_costs_do_not_grow_with_the_records),
        cmocka_unit_test(test_snapshot_round_trip_and_same_log_same_state),
        cmocka_unit_test(test_digest_without_records_is_unchanged),
        cmocka_unit_test(test_codec_refuses_bad_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
