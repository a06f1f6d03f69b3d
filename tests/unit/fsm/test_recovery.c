/* Recovery runs in the state machine (engine/fsm/recovery.c): opening a run,
 * the task_recovery record of each move, closing (idempotent), the run-level
 * strategy, pruning of finished runs, and runs through a snapshot. */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

#define T1 "11111111-1111-4111-8111-111111111111"
#define T2 "22222222-2222-4222-8222-222222222222"
#define T3 "33333333-3333-4333-8333-333333333333"
#define T4 "44444444-4444-4444-8444-444444444444"
#define R1 "aaaaaaaa-0000-4000-8000-000000000001"
#define R2 "aaaaaaaa-0000-4000-8000-000000000002"
#define I1 "bbbbbbbb-0000-4000-8000-000000000001"
#define I2 "bbbbbbbb-0000-4000-8000-000000000002"
#define I3 "bbbbbbbb-0000-4000-8000-000000000003"
#define I4 "bbbbbbbb-0000-4000-8000-000000000004"

#define NO_ROOM "no agent had room: back to pending"

/* Agents "lost" and "spare" (epoch 1, 8 slots each); `n_tasks` tasks of one
 * slot placed on "lost" (attempt 1), which then fails at t=50. */
static void setup_lost_agent(struct rd_fsm *f, int n_tasks)
{
    static const char *ids[] = {T1, T2, T3, T4};
    rd_fsm_init(f);
    apply(f, cmd_register("lost", 8, 1));
    apply(f, cmd_register("spare", 8, 2));
    for (int i = 0; i < n_tasks; i++) {
        apply(f, cmd_task_submit(ids[i], 5, 0, 1, 5, 10 + i));
        assert_int_equal(apply(f, cmd_task_assign(ids[i], 0, "lost", 1, 20 + i))->status, 0);
    }
    assert_int_equal(apply(f, cmd_transition("lost", 1, RD_NODE_FAILED, 50))->status, 0);
}

static void test_open_records_the_run(void **state)
{
    struct rd_fsm f;
    setup_lost_agent(&f, 2);
    const struct rd_fsm_result *res =
        apply(&f, cmd_recovery_open(R1, "lost", "safe_recovery", "agent failed", 100));
    assert_int_equal(res->status, 0);
    assert_int_equal(res->type, RD_CMD_RECOVERY_OPEN);
    const struct rd_recovery *r = rd_fsm_recovery(&f, R1);
    assert_non_null(r);
    assert_string_equal(r->id, R1);
    assert_string_equal(r->node_id, "lost");
    assert_string_equal(r->strategy, "safe_recovery");
    assert_string_equal(r->reason, "agent failed");
    assert_int_equal(r->status, RD_REC_INITIATED);
    assert_int_equal(r->started_at, 100);
    assert_int_equal(r->completed_at, 0);
    assert_int_equal(r->total, 2); /* the tasks the agent held when the run opened */
    assert_int_equal(r->recovered, 0);
    assert_int_equal(r->failed, 0);
    assert_int_equal(r->n_items, 0);
    assert_int_equal(f.n_recoveries, 1);
    assert_ptr_equal(rd_fsm_open_recovery(&f, "lost"), r);
    assert_null(rd_fsm_open_recovery(&f, "spare"));

    /* The same id again (a retried proposal) changes nothing. */
    res = apply(&f, cmd_recovery_open(R1, "spare", "fast_recovery", "again", 110));
    assert_int_equal(res->status, RD_EEXISTS);
    assert_string_equal(r->node_id, "lost");
    assert_string_equal(r->strategy, "safe_recovery");
    assert_int_equal(r->started_at, 100);
    assert_int_equal(f.n_recoveries, 1);
    /* No run for an agent the machine does not know, nor without a usable id. */
    res = apply(&f, cmd_recovery_open(R2, "ghost", "", "", 120));
    assert_int_equal(res->status, RD_ENOTFOUND);
    assert_null(rd_fsm_recovery(&f, R2));
    /* An id that is empty or does not fit is refused as unreadable. */
    char long_id[41];
    memset(long_id, 'x', 40);
    long_id[40] = '\0';
    const char *bad_ids[] = {"", long_id};
    for (int i = 0; i < 2; i++) {
        struct rd_wbuf w = cmd_recovery_open(bad_ids[i], "lost", "", "", 130);
        assert_int_equal(rd_fsm_apply(&f, w.p, w.len, &res), RD_EPARSE);
        assert_int_equal(res->status, RD_EPARSE);
        rd_w_free(&w);
    }
    assert_int_equal(f.n_recoveries, 1);
    rd_fsm_close(&f);
}

/* Each move that carries the run's id is one task_recovery record. */
static void test_items_record_each_move(void **state)
{
    struct rd_fsm f;
    setup_lost_agent(&f, 4);
    apply(&f, cmd_recovery_open(R1, "lost", "safe_recovery", "agent failed", 100));
    const struct rd_recovery *r = rd_fsm_recovery(&f, R1);
    assert_int_equal(r->total, 4);

    /* Placed on a working agent: a success. */
    const struct rd_fsm_result *res =
        apply(&f, cmd_recovery_move(T1, 1, "spare", 1, R1, I1, "safe_recovery", "", 110));
    assert_int_equal(res->status, 0);
    const struct rd_task *t1 = rd_fsm_task(&f, T1);
    assert_int_equal(t1->state, RD_TASK_RECOVERING);
    assert_string_equal(t1->node_id, "spare");
    assert_int_equal(t1->attempt, 2);
    assert_int_equal(r->n_items, 1);
    const struct rd_recovery_item *it = &r->items[0];
    assert_string_equal(it->id, I1);
    assert_string_equal(it->task_id, T1);
    assert_string_equal(it->failed_node_id, "lost");
    assert_string_equal(it->recovery_node_id, "spare");
    assert_string_equal(it->strategy, "safe_recovery");
    assert_int_equal(it->started_at, 100); /* the run's start */
    assert_int_equal(it->completed_at, 110);
    assert_int_equal(it->success, 1);
    assert_string_equal(it->error, "");
    assert_int_equal(r->status, RD_REC_RUNNING);
    assert_int_equal(r->recovered, 1);
    assert_int_equal(r->failed, 0);

    /* Back to pending without a note: a failure with the machine's text. */
    apply(&f, cmd_recovery_move(T2, 1, "", 0, R1, I2, "safe_recovery", "", 120));
    assert_int_equal(rd_fsm_task(&f, T2)->state, RD_TASK_PENDING);
    it = &r->items[1];
    assert_string_equal(it->id, I2);
    assert_string_equal(it->task_id, T2);
    assert_string_equal(it->failed_node_id, "lost");
    assert_string_equal(it->recovery_node_id, "");
    assert_int_equal(it->success, 0);
    assert_string_equal(it->error, NO_ROOM);
    assert_int_equal(it->completed_at, 120);
    /* With a note: the note is the record's error. */
    apply(&f, cmd_recovery_move(T3, 1, "", 0, R1, I3, "safe_recovery", "lease not out", 130));
    assert_string_equal(r->items[2].error, "lease not out");
    assert_int_equal(r->n_items, 3);
    assert_int_equal(r->recovered, 1);
    assert_int_equal(r->failed, 2);
    assert_int_equal(r->status, RD_REC_RUNNING);

    /* A move naming no known run, or no usable record id, still moves the
     * task but records nothing. */
    res = apply(&f, cmd_recovery_move(T4, 1, "spare", 1, R2, I4, "fast_recovery", "", 140));
    assert_int_equal(res->status, 0);
    assert_string_equal(rd_fsm_task(&f, T4)->node_id, "spare");
    res = apply(&f, cmd_recovery_move(T4, 2, "", 0, R1, "", "fast_recovery", "", 150));
    assert_int_equal(res->status, 0);
    assert_int_equal(rd_fsm_task(&f, T4)->state, RD_TASK_PENDING);
    assert_int_equal(r->n_items, 3);
    assert_int_equal(r->recovered, 1);
    assert_int_equal(r->failed, 2);
    /* A refused move (fenced) records nothing either. */
    res = apply(&f, cmd_recovery_move(T1, 1, "spare", 1, R1, I4, "safe_recovery", "", 160));
    assert_int_equal(res->status, RD_EFENCED);
    assert_int_equal(r->n_items, 3);
    rd_fsm_close(&f);
}

static void test_close_is_idempotent(void **state)
{
    struct rd_fsm f;
    setup_lost_agent(&f, 2);
    apply(&f, cmd_recovery_open(R1, "lost", "safe_recovery", "agent failed", 100));
    apply(&f, cmd_recovery_move(T1, 1, "spare", 1, R1, I1, "safe_recovery", "", 110));
    const struct rd_recovery *r = rd_fsm_recovery(&f, R1);

    /* Closed without a strategy: the run keeps the one that acted. */
    const struct rd_fsm_result *res = apply(&f, cmd_recovery_close(R1, RD_REC_PARTIAL, "", 200));
    assert_int_equal(res->status, 0);
    assert_int_equal(r->status, RD_REC_PARTIAL);
    assert_int_equal(r->completed_at, 200);
    assert_string_equal(r->strategy, "safe_recovery");
    assert_null(rd_fsm_open_recovery(&f, "lost"));
    /* Closing again (a retried proposal, or a second decision) changes
     * nothing and is not an error. */
    res = apply(&f, cmd_recovery_close(R1, RD_REC_SUCCEEDED, "fast_recovery", 300));
    assert_int_equal(res->status, 0);
    assert_int_equal(r->status, RD_REC_PARTIAL);
    assert_int_equal(r->completed_at, 200);
    assert_string_equal(r->strategy, "safe_recovery");
    assert_int_equal(r->n_items, 1);

    /* Closed with a strategy: that is what acted. */
    apply(&f, cmd_recovery_open(R2, "lost", "", "operator", 400));
    apply(&f, cmd_recovery_close(R2, RD_REC_SUCCEEDED, "fast_recovery", 410));
    const struct rd_recovery *r2 = rd_fsm_recovery(&f, R2);
    assert_int_equal(r2->status, RD_REC_SUCCEEDED);
    assert_string_equal(r2->strategy, "fast_recovery");
    assert_int_equal(r2->completed_at, 410);

    assert_int_equal(apply(&f, cmd_recovery_close(I1, RD_REC_FAILED, "", 500))->status,
                     RD_ENOTFOUND);
    assert_int_equal(apply(&f, cmd_recovery_close("", RD_REC_FAILED, "", 500))->status,
                     RD_ENOTFOUND);
    rd_fsm_close(&f);
}

/* A move that still names a closed run stands, but the run's record is
 * final: no item, no count, and it does not become running again. */
static void test_moves_after_close_add_no_items(void **state)
{
    struct rd_fsm f;
    setup_lost_agent(&f, 2);
    apply(&f, cmd_recovery_open(R1, "lost", "safe_recovery", "agent failed", 100));
    apply(&f, cmd_recovery_move(T1, 1, "spare", 1, R1, I1, "safe_recovery", "", 110));
    apply(&f, cmd_recovery_close(R1, RD_REC_SUCCEEDED, "", 120));
    const struct rd_fsm_result *res =
        apply(&f, cmd_recovery_move(T2, 1, "spare", 1, R1, I2, "safe_recovery", "", 130));
    assert_int_equal(res->status, 0);
    const struct rd_task *t2 = rd_fsm_task(&f, T2);
    assert_int_equal(t2->state, RD_TASK_RECOVERING);
    assert_string_equal(t2->node_id, "spare");
    const struct rd_recovery *r = rd_fsm_recovery(&f, R1);
    assert_int_equal(r->n_items, 1);
    assert_string_equal(r->items[0].id, I1);
    assert_int_equal(r->recovered, 1);
    assert_int_equal(r->failed, 0);
    assert_int_equal(r->status, RD_REC_SUCCEEDED);
    assert_int_equal(r->completed_at, 120);
    rd_fsm_close(&f);
}

/* An automatic run opens before its policy chose a strategy: the first
 * move that names one gives the run its strategy, and later moves do not
 * change it. A run opened with a strategy keeps it. Items without a
 * strategy of their own take the run's. */
static void test_run_strategy_comes_from_its_first_item(void **state)
{
    struct rd_fsm f;
    setup_lost_agent(&f, 4);
    apply(&f, cmd_recovery_open(R1, "lost", "", "agent failed", 100));
    const struct rd_recovery *r = rd_fsm_recovery(&f, R1);
    assert_string_equal(r->strategy, "");
    apply(&f, cmd_recovery_move(T1, 1, "spare", 1, R1, I1, "", "", 110));
    assert_string_equal(r->items[0].strategy, "");
    assert_string_equal(r->strategy, "");
    apply(&f, cmd_recovery_move(T2, 1, "spare", 1, R1, I2, "safe_recovery", "", 120));
    assert_string_equal(r->items[1].strategy, "safe_recovery");
    assert_string_equal(r->strategy, "safe_recovery");
    apply(&f, cmd_recovery_move(T3, 1, "", 0, R1, I3, "fast_recovery", "", 130));
    assert_string_equal(r->items[2].strategy, "fast_recovery");
    assert_string_equal(r->strategy, "safe_recovery");
    apply(&f, cmd_recovery_move(T4, 1, "spare", 1, R1, I4, "", "", 140));
    assert_string_equal(r->items[3].strategy, "safe_recovery");
    assert_string_equal(r->strategy, "safe_recovery");
    rd_fsm_close(&f);

    setup_lost_agent(&f, 1);
    apply(&f, cmd_recovery_open(R2, "lost", "degraded_service", "operator", 100));
    apply(&f, cmd_recovery_move(T1, 1, "spare", 1, R2, I1, "fast_recovery", "", 110));
    r = rd_fsm_recovery(&f, R2);
    assert_string_equal(r->items[0].strategy, "fast_recovery");
    assert_string_equal(r->strategy, "degraded_service");
    rd_fsm_close(&f);
}

/* The newest open run of an agent is the one its moves join. */
static void test_open_recovery_is_the_newest_open_run(void **state)
{
    struct rd_fsm f;
    setup_lost_agent(&f, 1);
    apply(&f, cmd_recovery_open(R1, "lost", "", "first", 100));
    apply(&f, cmd_recovery_open(R2, "lost", "", "second", 110));
    apply(&f, cmd_recovery_open(I1, "spare", "", "other agent", 120));
    assert_ptr_equal(rd_fsm_open_recovery(&f, "lost"), rd_fsm_recovery(&f, R2));
    apply(&f, cmd_recovery_close(R2, RD_REC_FAILED, "", 130));
    assert_ptr_equal(rd_fsm_open_recovery(&f, "lost"), rd_fsm_recovery(&f, R1));
    apply(&f, cmd_recovery_close(R1, RD_REC_FAILED, "", 140));
    assert_null(rd_fsm_open_recovery(&f, "lost"));
    assert_ptr_equal(rd_fsm_open_recovery(&f, "spare"), rd_fsm_recovery(&f, I1));
    rd_fsm_close(&f);
}

static void run_id(char *out, size_t size, int i)
{
    snprintf(out, size, "run-%05d", i);
}

/* Finished runs beyond RD_FSM_MAX_RECOVERIES are dropped oldest first when a
 * run opens; open runs are never dropped, whatever their age. */
static void test_prune_drops_oldest_finished_runs(void **state)
{
    struct rd_fsm f;
    char id[32];
    rd_fsm_init(&f);
    apply(&f, cmd_register("n", 1, 1));
    apply(&f, cmd_recovery_open("keep-open", "n", "", "oldest, still open", 2));
    for (int i = 0; i < RD_FSM_MAX_RECOVERIES; i++) {
        run_id(id, sizeof(id), i);
        apply(&f, cmd_recovery_open(id, "n", "", "", 10 + i));
        assert_int_equal(f.n_recoveries,
                         i + 2 > RD_FSM_MAX_RECOVERIES ? RD_FSM_MAX_RECOVERIES : (size_t)i + 2);
        apply(&f, cmd_recovery_close(id, RD_REC_SUCCEEDED, "", 10 + i));
    }
    /* The run opened last made one too many: the oldest finished one went. */
    assert_int_equal(f.n_recoveries, RD_FSM_MAX_RECOVERIES);
    assert_null(rd_fsm_recovery(&f, "run-00000"));
    assert_non_null(rd_fsm_recovery(&f, "keep-open"));
    assert_string_equal(f.recoveries[0]->id, "keep-open");
    assert_string_equal(f.recoveries[1]->id, "run-00001"); /* order of opening kept */
    run_id(id, sizeof(id), RD_FSM_MAX_RECOVERIES - 1);
    assert_string_equal(f.recoveries[RD_FSM_MAX_RECOVERIES - 1]->id, id);
    /* Every run left is still found by its id. */
    for (size_t i = 0; i < f.n_recoveries; i++)
        assert_ptr_equal(rd_fsm_recovery(&f, f.recoveries[i]->id), f.recoveries[i]);
    /* And the next one pushes out the next oldest finished run. */
    apply(&f, cmd_recovery_open("newest", "n", "", "", 5000));
    assert_int_equal(f.n_recoveries, RD_FSM_MAX_RECOVERIES);
    assert_null(rd_fsm_recovery(&f, "run-00001"));
    assert_non_null(rd_fsm_recovery(&f, "run-00002"));
    assert_non_null(rd_fsm_recovery(&f, "keep-open"));
    rd_fsm_close(&f);

    /* Open runs are kept past the bound: nothing finished to drop. */
    rd_fsm_init(&f);
    apply(&f, cmd_register("n", 1, 1));
    for (int i = 0; i <= RD_FSM_MAX_RECOVERIES; i++) {
        run_id(id, sizeof(id), i);
        apply(&f, cmd_recovery_open(id, "n", "", "", 10 + i));
    }
    assert_int_equal(f.n_recoveries, RD_FSM_MAX_RECOVERIES + 1);
    assert_non_null(rd_fsm_recovery(&f, "run-00000"));
    rd_fsm_close(&f);
}

static void assert_runs_equal(const struct rd_recovery *a, const struct rd_recovery *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->node_id, b->node_id);
    assert_string_equal(a->strategy, b->strategy);
    assert_string_equal(a->reason, b->reason);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->started_at, b->started_at);
    assert_int_equal(a->completed_at, b->completed_at);
    assert_int_equal(a->total, b->total);
    assert_int_equal(a->recovered, b->recovered);
    assert_int_equal(a->failed, b->failed);
    assert_int_equal(a->n_items, b->n_items);
    for (uint32_t k = 0; k < a->n_items; k++) {
        const struct rd_recovery_item *x = &a->items[k], *y = &b->items[k];
        assert_string_equal(x->id, y->id);
        assert_string_equal(x->task_id, y->task_id);
        assert_string_equal(x->failed_node_id, y->failed_node_id);
        assert_string_equal(x->recovery_node_id, y->recovery_node_id);
        assert_string_equal(x->strategy, y->strategy);
        assert_int_equal(x->started_at, y->started_at);
        assert_int_equal(x->completed_at, y->completed_at);
        assert_int_equal(x->success, y->success);
        assert_string_equal(x->error, y->error);
    }
}

/* Runs, open and closed, with their items, come back from a snapshot in
 * their order, findable by id, and keep working (items join, close). */
static void test_runs_survive_a_snapshot(void **state)
{
    struct rd_fsm a, b;
    setup_lost_agent(&a, 4);
    apply(&a, cmd_recovery_open(R1, "lost", "", "agent failed", 100));
    apply(&a, cmd_recovery_move(T1, 1, "spare", 1, R1, I1, "safe_recovery", "", 110));
    apply(&a, cmd_recovery_move(T2, 1, "", 0, R1, I2, "safe_recovery", "", 120));
    apply(&a, cmd_recovery_close(R1, RD_REC_PARTIAL, "", 130));
    apply(&a, cmd_recovery_open(R2, "lost", "fast_recovery", "operator", 140));
    apply(&a, cmd_recovery_move(T3, 1, "spare", 1, R2, I3, "", "", 150));

    rd_fsm_init(&b);
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&a, &snap), 0);
    assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len), 0);
    rd_w_free(&snap);
    assert_int_equal(b.n_recoveries, 2);
    for (size_t i = 0; i < a.n_recoveries; i++)
        assert_runs_equal(a.recoveries[i], b.recoveries[i]);
    assert_ptr_equal(rd_fsm_recovery(&b, R1), b.recoveries[0]);
    assert_ptr_equal(rd_fsm_open_recovery(&b, "lost"), rd_fsm_recovery(&b, R2));
    /* The restored open run goes on like the original. */
    apply(&a, cmd_recovery_move(T4, 1, "spare", 1, R2, I4, "", "", 160));
    apply(&b, cmd_recovery_move(T4, 1, "spare", 1, R2, I4, "", "", 160));
    apply(&a, cmd_recovery_close(R2, RD_REC_SUCCEEDED, "", 170));
    apply(&b, cmd_recovery_close(R2, RD_REC_SUCCEEDED, "", 170));
    assert_runs_equal(rd_fsm_recovery(&a, R2), rd_fsm_recovery(&b, R2));
    assert_int_equal(rd_fsm_recovery(&b, R2)->n_items, 2);
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_records_the_run),
        cmocka_unit_test(test_items_record_each_move),
        cmocka_unit_test(test_close_is_idempotent),
        cmocka_unit_test(test_moves_after_close_add_no_items),
        cmocka_unit_test(test_run_strategy_comes_from_its_first_item),
        cmocka_unit_test(test_open_recovery_is_the_newest_open_run),
        cmocka_unit_test(test_prune_drops_oldest_finished_runs),
        cmocka_unit_test(test_runs_survive_a_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
