/* Tasks in the state machine: idempotent submit, placement fenced by
 * attempt, fenced and versioned checkpoints, their repair, completion,
 * retries, load. */
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

static void setup_cluster(struct rd_fsm *f)
{
    rd_fsm_init(f);
    apply(f, cmd_register("a", 4, 1));
    apply(f, cmd_register("b", 4, 1));
}

static void test_submit_is_idempotent(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    const struct rd_fsm_result *r = apply(&f, cmd_task_submit(T1, 7, 1, 2, 5, 10));
    assert_int_equal(r->status, 0);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_non_null(t);
    assert_int_equal(t->state, RD_TASK_PENDING);
    assert_int_equal(t->priority, 7);
    assert_int_equal(t->critical, 1);
    assert_int_equal(t->attempt, 0);
    assert_string_equal(t->payload_json, "{\"prompt\":\"summarise\"}");
    r = apply(&f, cmd_task_submit(T1, 1, 0, 1, 1, 20));
    assert_int_equal(r->status, RD_EEXISTS);
    assert_int_equal(t->priority, 7); /* unchanged */
    assert_int_equal(f.n_tasks, 1);
    rd_fsm_close(&f);
}

static void test_placement_is_fenced_by_attempt_and_epoch(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_task_submit(T1, 5, 0, 3, 5, 10));
    const struct rd_fsm_result *r = apply(&f, cmd_task_assign(T1, 0, "a", 1, 20));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, 1);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_int_equal(t->attempt, 1);
    assert_int_equal(t->state, RD_TASK_ASSIGNED);
    assert_string_equal(t->node_id, "a");
    assert_int_equal(rd_fsm_node(&f, "a", 1)->slots_in_use, 3);
    assert_int_equal(rd_fsm_node(&f, "a", 1)->n_tasks, 1);
    /* A second decision made on attempt 0 is refused: no double placement. */
    assert_int_equal(apply(&f, cmd_task_assign(T1, 0, "b", 1, 30))->status, RD_EFENCED);
    assert_string_equal(t->node_id, "a");
    /* Moving it: attempt 2 on b; a's load is released. */
    assert_int_equal(apply(&f, cmd_task_assign(T1, 1, "b", 1, 40))->status, 0);
    assert_int_equal(t->attempt, 2);
    assert_int_equal(rd_fsm_node(&f, "a", 1)->slots_in_use, 0);
    assert_int_equal(rd_fsm_node(&f, "b", 1)->slots_in_use, 3);
    /* Never to a failed agent, nor under a stale epoch. */
    apply(&f, cmd_transition("a", 0, RD_NODE_FAILED, 50));
    assert_int_equal(apply(&f, cmd_task_assign(T1, 2, "a", 1, 60))->status, RD_ECONFLICT);
    assert_int_equal(apply(&f, cmd_task_assign(T1, 2, "b", 7, 60))->status, RD_ECONFLICT);
    assert_int_equal(t->attempt, 2);
    rd_fsm_close(&f);
}

static void test_checkpoints_are_fenced_and_versioned(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_task_submit(T1, 5, 0, 1, 5, 10));
    apply(&f, cmd_task_assign(T1, 0, "a", 1, 20)); /* attempt 1 */
    const struct rd_fsm_result *r = apply(&f, cmd_task_ckpt(T1, 1, 1, "{\"step\":1}", 3, 30));
    assert_int_equal(r->status, 0);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_int_equal(t->state, RD_TASK_RUNNING);
    assert_int_equal(rd_task_checkpoint(t)->version, 1);
    /* Not above the stored version: stale_version. */
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 1, 1, "{\"step\":9}", 3, 31))->status,
                     RD_ESTALE_VERSION);
    assert_string_equal(rd_task_checkpoint(t)->data, "{\"step\":1}");
    for (int v = 2; v <= 5; v++) {
        char data[32];
        snprintf(data, sizeof(data), "{\"step\":%d}", v);
        assert_int_equal(apply(&f, cmd_task_ckpt(T1, 1, (uint64_t)v, data, 3, 40 + v))->status, 0);
    }
    /* The last 3 versions are kept. */
    assert_int_equal(t->n_ckpts, 3);
    assert_int_equal(t->ckpts[0].version, 3);
    assert_int_equal(t->ckpts[2].version, 5);
    assert_true(t->ckpts[2].checksum == rd_fnv1a(RD_FNV_INIT, "{\"step\":5}", 10));
    /* The task moves: the old attempt (a zombie) can no longer write. */
    apply(&f, cmd_task_assign(T1, 1, "b", 1, 60));
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 1, 6, "{\"zombie\":1}", 3, 61))->status,
                     RD_EFENCED);
    assert_int_equal(rd_task_checkpoint(t)->version, 5);
    /* The new attempt resumes from version 5 and goes on. */
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 2, 6, "{\"step\":6}", 3, 62))->status, 0);
    rd_fsm_close(&f);
}

static void test_completion_and_retries(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_task_submit(T1, 5, 0, 1, 5, 10));
    apply(&f, cmd_task_assign(T1, 0, "a", 1, 20));
    apply(&f, cmd_task_assign(T1, 1, "b", 1, 21)); /* attempt 2 */
    /* The zombie attempt 1 cannot complete it. */
    assert_int_equal(apply(&f, cmd_task_finish(T1, 1, RD_TASK_COMPLETED, "{}", 30))->status,
                     RD_EFENCED);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_int_equal(t->state, RD_TASK_ASSIGNED);
    assert_int_equal(apply(&f, cmd_task_finish(T1, 2, RD_TASK_COMPLETED, "{\"ok\":1}", 31))->status,
                     0);
    assert_int_equal(t->state, RD_TASK_COMPLETED);
    assert_string_equal(t->result_json, "{\"ok\":1}");
    assert_int_equal(rd_fsm_node(&f, "b", 1)->slots_in_use, 0);
    /* Completing twice with the same attempt is idempotent; failing it now conflicts. */
    assert_int_equal(apply(&f, cmd_task_finish(T1, 2, RD_TASK_COMPLETED, "{\"ok\":1}", 32))->status,
                     0);
    assert_int_equal(apply(&f, cmd_task_finish(T1, 2, RD_TASK_FAILED, "boom", 33))->status,
                     RD_ECONFLICT);

    /* Retryable failures go back to pending until max_attempts. */
    apply(&f, cmd_task_submit(T2, 5, 0, 1, 2, 40));
    apply(&f, cmd_task_assign(T2, 0, "a", 1, 41));
    assert_int_equal(apply(&f, cmd_task_finish(T2, 1, RD_TASK_PENDING, "oom", 42))->status, 0);
    const struct rd_task *t2 = rd_fsm_task(&f, T2);
    assert_int_equal(t2->state, RD_TASK_PENDING);
    assert_string_equal(t2->node_id, "");
    apply(&f, cmd_task_assign(T2, 1, "a", 1, 43));
    assert_int_equal(apply(&f, cmd_task_finish(T2, 2, RD_TASK_PENDING, "oom", 44))->status, 0);
    assert_int_equal(t2->state, RD_TASK_FAILED);
    assert_int_equal(t2->failures, 2);
    assert_int_equal(f.tasks_by_state[RD_TASK_FAILED], 1);
    assert_int_equal(f.tasks_by_state[RD_TASK_COMPLETED], 1);
    rd_fsm_close(&f);
}

/* A retried checkpoint write (same attempt, version and bytes) answers what
 * the first did: at apply, so two identical retries in flight, or one
 * arriving at another leader, both succeed. Anything else stays refused. */
static void test_checkpoint_retry_is_idempotent(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_task_submit(T1, 5, 0, 1, 5, 10));
    apply(&f, cmd_task_assign(T1, 0, "a", 1, 20)); /* attempt 1 */
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 1, 1, "{\"step\":1}", 3, 30))->status, 0);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    for (int i = 0; i < 2; i++) { /* the retry, and a second one in flight with it */
        const struct rd_fsm_result *r = apply(&f, cmd_task_ckpt(T1, 1, 1, "{\"step\":1}", 3, 40));
        assert_int_equal(r->status, 0);
        assert_int_equal(r->value, 1);
    }
    assert_int_equal(t->n_ckpts, 1);
    assert_int_equal(rd_task_checkpoint(t)->at, 30); /* the first write's, untouched */
    assert_int_equal(t->updated_at, 30);
    /* The same version with other data is a real conflict. */
    const struct rd_fsm_result *r = apply(&f, cmd_task_ckpt(T1, 1, 1, "{\"step\":2}", 3, 41));
    assert_int_equal(r->status, RD_ESTALE_VERSION);
    assert_int_equal(r->value, 1);
    /* A forged checksum that matches does not make other bytes the same write. */
    struct rd_cmd c = {.type = RD_CMD_TASK_CHECKPOINT, .time_ms = 42};
    c.u.tckpt.task_id = RD_STR(T1);
    c.u.tckpt.attempt = 1;
    c.u.tckpt.version = 1;
    c.u.tckpt.data_json = RD_STR("{\"step\":7}");
    c.u.tckpt.checksum = rd_task_checkpoint(t)->checksum;
    c.u.tckpt.keep = 3;
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    assert_int_equal(apply(&f, w)->status, RD_ESTALE_VERSION);
    /* Only the newest counts: version 1 again after version 2 is stale. */
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 1, 2, "{\"step\":2}", 3, 43))->status, 0);
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 1, 1, "{\"step\":1}", 3, 44))->status,
                     RD_ESTALE_VERSION);
    /* Once the task moved, the old attempt's retry is fenced. */
    apply(&f, cmd_task_assign(T1, 1, "b", 1, 50));
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 1, 2, "{\"step\":2}", 3, 51))->status, RD_EFENCED);
    rd_fsm_close(&f);
}

/* A completion or failure repeated by the same attempt answers as the first
 * did, and a retryable failure is not counted twice. */
static void test_finish_retry_is_idempotent(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_task_submit(T1, 5, 0, 1, 5, 10));
    apply(&f, cmd_task_assign(T1, 0, "a", 1, 20));
    assert_int_equal(apply(&f, cmd_task_finish(T1, 1, RD_TASK_PENDING, "oom", 30))->status, 0);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_int_equal(t->failures, 1);
    const struct rd_fsm_result *r = apply(&f, cmd_task_finish(T1, 1, RD_TASK_PENDING, "oom", 31));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, 1);
    assert_int_equal(t->failures, 1); /* counted once */
    assert_int_equal(t->n_fail_at, 1);
    assert_int_equal(t->updated_at, 30);
    /* Placed again (attempt 2), the last attempt's failure is final
     * (max_attempts 2 below); its retry answers the same. */
    apply(&f, cmd_task_submit(T2, 5, 0, 1, 2, 40));
    apply(&f, cmd_task_assign(T2, 0, "a", 1, 41));
    apply(&f, cmd_task_finish(T2, 1, RD_TASK_PENDING, "oom", 42));
    apply(&f, cmd_task_assign(T2, 1, "b", 1, 43));
    assert_int_equal(apply(&f, cmd_task_finish(T2, 2, RD_TASK_PENDING, "oom", 44))->status, 0);
    const struct rd_task *t2 = rd_fsm_task(&f, T2);
    assert_int_equal(t2->state, RD_TASK_FAILED);
    assert_int_equal(apply(&f, cmd_task_finish(T2, 2, RD_TASK_PENDING, "oom", 45))->status, 0);
    assert_int_equal(t2->failures, 2);
    /* Another text is not the same failure: it conflicts with the final one. */
    assert_int_equal(apply(&f, cmd_task_finish(T2, 2, RD_TASK_PENDING, "disk", 46))->status,
                     RD_ECONFLICT);
    rd_fsm_close(&f);
}

static void test_snapshot_keeps_tasks_and_checkpoints(void **state)
{
    struct rd_fsm a, b;
    setup_cluster(&a);
    rd_fsm_init(&b);
    apply(&a, cmd_task_submit(T1, 9, 1, 2, 5, 10));
    apply(&a, cmd_task_submit(T2, 1, 0, 1, 5, 11));
    apply(&a, cmd_task_assign(T1, 0, "a", 1, 12));
    apply(&a, cmd_task_ckpt(T1, 1, 1, "{\"x\":[1,2,3]}", 4, 13));
    apply(&a, cmd_task_ckpt(T1, 1, 2, "{\"x\":[1,2,3,4]}", 4, 14));
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&a, &snap), 0);
    assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len), 0);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    const struct rd_task *t = rd_fsm_task(&b, T1);
    assert_non_null(t);
    assert_int_equal(t->n_ckpts, 2);
    assert_string_equal(rd_task_checkpoint(t)->data, "{\"x\":[1,2,3,4]}");
    assert_int_equal(t->attempt, 1);
    assert_int_equal(rd_fsm_node(&b, "a", 1)->slots_in_use, 2); /* derived again */
    assert_int_equal(b.tasks_by_state[RD_TASK_PENDING], 1);
    assert_int_equal(b.tasks_by_state[RD_TASK_RUNNING], 1);
    assert_int_equal(rd_fsm_task_after(&b, T1), 1);
    rd_w_free(&snap);
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

static struct rd_wbuf cmd_quarantine(const char *fault, const char *task, uint32_t attempt,
                                     int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_FAULT_OPEN, .time_ms = t};
    c.u.fopen.id = RD_STR(fault);
    c.u.fopen.node_id = RD_STR("");
    c.u.fopen.fault_type = RD_FAULT_POISON_TASK;
    c.u.fopen.severity = RD_SEV_MAJOR;
    c.u.fopen.metadata_json = RD_STR("{}");
    c.u.fopen.recovery_action_json = RD_STR("null");
    c.u.fopen.set_state = RD_STATE_ANY;
    c.u.fopen.from_state = RD_STATE_ANY;
    c.u.fopen.task_id = RD_STR(task);
    c.u.fopen.task_attempt = attempt;
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    return w;
}

/* A move off a failed agent that never heard of the attempt (the leader
 * says so: `undelivered`) is no failure of the task; the same move without
 * it is one. */
static void test_undelivered_attempt_is_no_failure(void **state)
{
    (void)state;
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_register("c", 4, 1));
    apply(&f, cmd_task_submit(T1, 5, 0, 1, 9, 10));
    apply(&f, cmd_task_assign(T1, 0, "a", 1, 20));
    const struct rd_task *t = rd_fsm_task(&f, T1);
    apply(&f, cmd_transition("a", 1, RD_NODE_FAILED, 25));
    assert_int_equal(apply(&f, cmd_task_assign_u(T1, 1, "b", 1, 30, true))->status, 0);
    assert_string_equal(t->node_id, "b");
    assert_int_equal(t->attempt, 2);
    assert_int_equal(t->failures, 0);
    assert_int_equal(rd_task_failures_since(t, 0), 0);
    apply(&f, cmd_transition("b", 1, RD_NODE_FAILED, 35));
    apply(&f, cmd_task_assign_u(T1, 2, "c", 1, 40, false));
    assert_int_equal(t->failures, 1);
    assert_int_equal(t->fail_at[0], 40);
    rd_fsm_close(&f);
}

/* Failures are counted with their time: retryable failures and moves off an
 * agent that failed under the task (not off one that was drained). A
 * quarantine fails the task and opens its fault in one command, fenced by
 * the attempt it was decided on. */
static void test_failures_and_quarantine(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_register("c", 4, 1));
    apply(&f, cmd_task_submit(T1, 5, 0, 1, 9, 10));
    apply(&f, cmd_task_assign(T1, 0, "a", 1, 20));
    const struct rd_task *t = rd_fsm_task(&f, T1);
    /* Off a draining agent: not a failure. */
    apply(&f, cmd_transition("a", 1, RD_NODE_DRAINING, 25));
    apply(&f, cmd_task_assign(T1, 1, "b", 1, 30));
    assert_int_equal(t->failures, 0);
    /* Off an agent that failed under it: a failure at the move's time. */
    apply(&f, cmd_transition("b", 1, RD_NODE_FAILED, 35));
    apply(&f, cmd_task_assign(T1, 2, "c", 1, 40));
    assert_int_equal(t->failures, 1);
    assert_int_equal(t->n_fail_at, 1);
    assert_int_equal(t->fail_at[0], 40);
    /* A retryable failure. */
    apply(&f, cmd_task_finish(T1, 3, RD_TASK_PENDING, "segfault", 50));
    assert_int_equal(t->failures, 2);
    assert_int_equal(rd_task_failures_since(t, 0), 2);
    assert_int_equal(rd_task_failures_since(t, 41), 1);
    assert_int_equal(rd_task_failures_since(t, 51), 0);
    apply(&f, cmd_task_assign(T1, 3, "c", 1, 60));
    assert_int_equal(rd_fsm_node(&f, "c", 1)->slots_in_use, 1);

    /* A quarantine decided on a stale attempt changes nothing. */
    const struct rd_fsm_result *r = apply(&f, cmd_quarantine("f-1", T1, 3, 70));
    assert_int_equal(r->status, RD_EFENCED);
    assert_null(rd_fsm_fault(&f, "f-1"));
    assert_int_equal(t->state, RD_TASK_ASSIGNED);
    /* On the current one: the task fails, its slot frees, the fault opens. */
    r = apply(&f, cmd_quarantine("f-2", T1, 4, 71));
    assert_int_equal(r->status, 0);
    assert_int_equal(t->state, RD_TASK_FAILED);
    assert_string_equal(t->node_id, "");
    assert_non_null(strstr(t->result_json, "poison"));
    assert_int_equal(rd_fsm_node(&f, "c", 1)->slots_in_use, 0);
    const struct rd_fault *x = rd_fsm_fault(&f, "f-2");
    assert_non_null(x);
    assert_int_equal(x->type, RD_FAULT_POISON_TASK);
    assert_int_equal(x->status, RD_FAULT_OPEN_ST);
    /* Once is enough: a finished task cannot be quarantined again. */
    assert_int_equal(apply(&f, cmd_quarantine("f-3", T1, 4, 72))->status, RD_ECONFLICT);
    assert_int_equal(apply(&f, cmd_quarantine("f-4", T2, 0, 73))->status, RD_ENOTFOUND);
    assert_null(rd_fsm_fault(&f, "f-4"));

    /* Failure times survive a snapshot. */
    struct rd_fsm b;
    rd_fsm_init(&b);
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&f, &snap), 0);
    assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len), 0);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest(&b));
    const struct rd_task *tb = rd_fsm_task(&b, T1);
    assert_int_equal(tb->n_fail_at, 2);
    assert_int_equal(tb->fail_at[1], 50);
    rd_w_free(&snap);
    rd_fsm_close(&b);
    rd_fsm_close(&f);
}

/* Only the newest RD_TASK_FAIL_KEEP failure times are kept. */
static void test_failure_times_are_bounded(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_task_submit(T1, 5, 0, 1, 0, 10));
    const struct rd_task *t = rd_fsm_task(&f, T1);
    for (uint32_t i = 0; i < RD_TASK_FAIL_KEEP + 5; i++) {
        apply(&f, cmd_task_assign(T1, i, "a", 1, 100 + i));
        apply(&f, cmd_task_finish(T1, i + 1, RD_TASK_PENDING, "x", 200 + i));
    }
    assert_int_equal(t->state, RD_TASK_PENDING); /* max_attempts 0: no limit */
    assert_int_equal(t->failures, RD_TASK_FAIL_KEEP + 5);
    assert_int_equal(t->n_fail_at, RD_TASK_FAIL_KEEP);
    assert_int_equal(t->fail_at[0], 205);
    assert_int_equal(t->fail_at[RD_TASK_FAIL_KEEP - 1], 200 + RD_TASK_FAIL_KEEP + 4);
    rd_fsm_close(&f);
}

#define FC "fc000001-0000-4000-8000-000000000001"

/* Task T1 running on "a" (attempt 1) with versions 3, 4 and 5 kept, and an
 * open data_corruption fault FC about it. */
static const struct rd_task *task_with_versions(struct rd_fsm *f)
{
    setup_cluster(f);
    apply(f, cmd_task_submit(T1, 5, 0, 1, 5, 10));
    apply(f, cmd_task_assign(T1, 0, "a", 1, 20));
    for (int v = 1; v <= 5; v++) {
        char data[32];
        snprintf(data, sizeof(data), "{\"step\":%d}", v);
        assert_int_equal(apply(f, cmd_task_ckpt(T1, 1, (uint64_t)v, data, 3, 30 + v))->status, 0);
    }
    assert_int_equal(apply(f, cmd_fault_open(FC, "a", RD_FAULT_DATA_CORRUPTION, RD_SEV_MAJOR,
                                             RD_STATE_ANY, 0, 50))
                         ->status,
                     0);
    const struct rd_task *t = rd_fsm_task(f, T1);
    assert_int_equal(t->n_ckpts, 3);
    return t;
}

/* What a damaged copy looks like: a byte of version 5's data flipped
 * behind the machine's back (its checksum then fails). */
static void damage_newest(const struct rd_task *t)
{
    struct rd_checkpoint *c = (struct rd_checkpoint *)rd_task_checkpoint(t);
    c->data[1] ^= 0x01;
    assert_false(rd_checkpoint_verifies(c));
}

static void test_restore_keeps_an_older_version(void **state)
{
    struct rd_fsm f;
    const struct rd_task *t = task_with_versions(&f);
    damage_newest(t);
    assert_int_equal(rd_task_resume_checkpoint(t)->version, 4);
    const struct rd_fsm_result *r = apply(&f, cmd_ckpt_keep(T1, 5, 4, FC, 60));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, 4);
    /* Version 5 went; 3 and 4 stay; the task is otherwise untouched. */
    assert_int_equal(t->n_ckpts, 2);
    assert_int_equal(t->ckpts[0].version, 3);
    assert_int_equal(rd_task_checkpoint(t)->version, 4);
    assert_string_equal(rd_task_checkpoint(t)->data, "{\"step\":4}");
    assert_true(rd_checkpoint_verifies(rd_task_checkpoint(t)));
    assert_int_equal(t->state, RD_TASK_RUNNING);
    assert_int_equal(t->attempt, 1);
    assert_string_equal(t->node_id, "a");
    assert_int_equal(t->updated_at, 60);
    /* Its fault is settled in the same step, naming the source. */
    const struct rd_fault *x = rd_fsm_fault(&f, FC);
    assert_int_equal(x->status, RD_FAULT_RESOLVED);
    assert_int_equal(x->resolved_at, 60);
    assert_string_equal(x->resolution, "checkpoint restored from version 4");
    assert_int_equal(f.open_faults, 0);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    /* The agent goes on from version 4: version 5 may be written again. */
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 1, 5, "{\"step\":55}", 3, 70))->status, 0);
    assert_string_equal(rd_task_checkpoint(t)->data, "{\"step\":55}");
    rd_fsm_close(&f);
}

static void test_restore_from_a_backup(void **state)
{
    struct rd_fsm f;
    const struct rd_task *t = task_with_versions(&f);
    damage_newest(t);
    const struct rd_fsm_result *r =
        apply(&f, cmd_ckpt_from_backup(T1, 5, 5, 35, "{\"step\":5}", "bk-1", FC, 60));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, 5);
    /* Every held version went; the backup's copy of version 5 is the one. */
    assert_int_equal(t->n_ckpts, 1);
    const struct rd_checkpoint *c = rd_task_checkpoint(t);
    assert_int_equal(c->version, 5);
    assert_int_equal(c->at, 35);
    assert_int_equal(c->size, 10);
    assert_string_equal(c->data, "{\"step\":5}");
    assert_true(rd_checkpoint_verifies(c));
    assert_string_equal(rd_fsm_fault(&f, FC)->resolution, "checkpoint restored from backup bk-1");
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    /* An older version from a backup is fine too (after a new bad one). */
    apply(&f, cmd_task_ckpt(T1, 1, 6, "{\"step\":6}", 3, 70));
    damage_newest(t);
    assert_int_equal(
        apply(&f, cmd_ckpt_from_backup(T1, 6, 2, 32, "{\"step\":2}", "bk-0", "", 80))->status, 0);
    assert_int_equal(t->n_ckpts, 1);
    assert_int_equal(rd_task_checkpoint(t)->version, 2);
    rd_fsm_close(&f);
}

/* A repair decided on what is no longer so changes nothing. */
static void test_restore_refusals(void **state)
{
    struct rd_fsm f;
    const struct rd_task *t = task_with_versions(&f);
    damage_newest(t);
    rd_fsm_digest_audit(&f); /* the damage is part of the state from here */
    uint64_t before = rd_fsm_digest(&f);
    /* Not the newest version (a newer checkpoint was written since). */
    const struct rd_fsm_result *r = apply(&f, cmd_ckpt_keep(T1, 4, 3, FC, 60));
    assert_int_equal(r->status, RD_ECONFLICT);
    assert_int_equal(r->value, 5);
    /* An older version retention dropped already. */
    assert_int_equal(apply(&f, cmd_ckpt_keep(T1, 5, 2, FC, 61))->status, RD_ENOTFOUND);
    /* No such task. */
    assert_int_equal(apply(&f, cmd_ckpt_keep(T2, 5, 4, FC, 62))->status, RD_ENOTFOUND);
    assert_int_equal(t->n_ckpts, 3);
    assert_int_equal(rd_fsm_fault(&f, FC)->status, RD_FAULT_OPEN_ST);
    /* Refusals count as applied commands; nothing else moved. */
    assert_int_equal(rd_task_checkpoint(t)->version, 5);
    assert_true(rd_fsm_digest(&f) != before); /* n_applied moved */
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    /* Once made, the same repair again is refused: it moved on. */
    assert_int_equal(apply(&f, cmd_ckpt_keep(T1, 5, 4, FC, 63))->status, 0);
    assert_int_equal(apply(&f, cmd_ckpt_keep(T1, 5, 4, FC, 64))->status, RD_ECONFLICT);
    assert_int_equal(rd_fsm_fault(&f, FC)->resolved_at, 63);
    /* A task without checkpoints has nothing to repair. */
    apply(&f, cmd_task_submit(T2, 5, 0, 1, 5, 70));
    assert_int_equal(apply(&f, cmd_ckpt_keep(T2, 2, 1, "", 71))->status, RD_ECONFLICT);
    rd_fsm_close(&f);
}

/* The fault is optional, and one already resolved (or unknown) stays as it
 * is: the repair itself still applies. */
static void test_restore_without_an_open_fault(void **state)
{
    struct rd_fsm f;
    const struct rd_task *t = task_with_versions(&f);
    apply(&f, cmd_fault_resolve(FC, "", 55));
    assert_int_equal(apply(&f, cmd_ckpt_keep(T1, 5, 4, FC, 60))->status, 0);
    assert_int_equal(rd_fsm_fault(&f, FC)->resolved_at, 55);
    assert_string_equal(rd_fsm_fault(&f, FC)->resolution, "recovered");
    assert_int_equal(apply(&f, cmd_ckpt_keep(T1, 4, 3, "", 61))->status, 0);
    assert_int_equal(
        apply(&f, cmd_ckpt_from_backup(T1, 3, 3, 33, "{}", "b", "f-unknown", 62))->status, 0);
    assert_int_equal(rd_task_checkpoint(t)->version, 3);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

/* Two replicas, one whose copy of version 5 is damaged: the same repair,
 * decided by versions alone, leaves both with the same state. */
static void test_restore_is_the_same_on_every_replica(void **state)
{
    struct rd_fsm a, b;
    const struct rd_task *ta = task_with_versions(&a);
    task_with_versions(&b);
    damage_newest(ta);
    rd_fsm_digest_audit(&a);
    assert_true(rd_fsm_digest(&a) != rd_fsm_digest(&b));
    assert_int_equal(apply(&a, cmd_ckpt_keep(T1, 5, 4, FC, 60))->status, 0);
    assert_int_equal(apply(&b, cmd_ckpt_keep(T1, 5, 4, FC, 60))->status, 0);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    assert_true(rd_fsm_digest_full(&a) == rd_fsm_digest_full(&b));
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

/* ---- cancel, retry, prune, deadline (issue 17) ----------------------------- */

static struct rd_wbuf cmd_life(int op, const char *id, const char *reason, int64_t retention,
                               uint32_t max, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_TASK_LIFECYCLE, .time_ms = t};
    c.u.tlife.op = (uint8_t)op;
    c.u.tlife.task_id = RD_STR(id);
    c.u.tlife.reason = RD_STR(reason);
    c.u.tlife.retention_ms = retention;
    c.u.tlife.max = max;
    return fsm_encode(&c);
}

static struct rd_wbuf cmd_submit_deadline(const char *id, int64_t deadline, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_TASK_SUBMIT, .time_ms = t};
    c.u.tsubmit.task_id = RD_STR(id);
    c.u.tsubmit.priority = 5;
    c.u.tsubmit.slots = 1;
    c.u.tsubmit.labels_json = RD_STR("{}");
    c.u.tsubmit.payload_json = RD_STR("{}");
    c.u.tsubmit.max_attempts = 5;
    c.u.tsubmit.deadline_ms = deadline;
    return fsm_encode(&c);
}

/* A task's fault (fault_open with the task, fenced by its attempt). */
static struct rd_wbuf cmd_task_fault(const char *fid, const char *task, uint32_t attempt, int type,
                                     int64_t t)
{
    static char meta[128];
    snprintf(meta, sizeof(meta), "{\"reason\":\"test\",\"task_id\":\"%s\"}", task);
    struct rd_cmd c = rd_cmd_cluster_fault(t, fid, type, RD_SEV_MINOR, meta, "null");
    c.u.fopen.task_id = RD_STR(task);
    c.u.fopen.task_attempt = attempt;
    return fsm_encode(&c);
}

static void test_cancel_fences_the_attempt_and_frees_the_agent(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_task_submit(T1, 5, 0, 2, 5, 10));
    apply(&f, cmd_task_assign(T1, 0, "a", 1, 20));
    apply(&f, cmd_task_ckpt(T1, 1, 1, "{\"step\":1}", 3, 30));
    const struct rd_fsm_result *r =
        apply(&f, cmd_life(RD_TASK_OP_CANCEL, T1, "cancelled by ops: wrong input", 0, 0, 40));
    assert_int_equal(r->status, 0);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_int_equal(t->state, RD_TASK_CANCELLED);
    assert_string_equal(t->node_id, "");
    assert_string_equal(t->result_json, "cancelled by ops: wrong input");
    assert_int_equal(t->updated_at, 40);
    assert_int_equal(t->finished, f.n_applied); /* unbound: the applied count */
    assert_int_equal(rd_fsm_node(&f, "a", 1)->slots_in_use, 0);
    assert_int_equal(rd_fsm_node(&f, "a", 1)->n_tasks, 0);
    assert_int_equal(f.tasks_by_state[RD_TASK_CANCELLED], 1);
    /* The agent's later writes of that attempt are fenced, not conflicts. */
    assert_int_equal(apply(&f, cmd_task_ckpt(T1, 1, 2, "{\"step\":2}", 3, 50))->status, RD_EFENCED);
    assert_int_equal(apply(&f, cmd_task_finish(T1, 1, RD_TASK_COMPLETED, "{}", 50))->status,
                     RD_EFENCED);
    assert_int_equal(apply(&f, cmd_task_finish(T1, 1, RD_TASK_FAILED, "x", 50))->status,
                     RD_EFENCED);
    assert_int_equal(t->state, RD_TASK_CANCELLED);
    /* Cancelling a finished task is a conflict; an unknown one is not found. */
    assert_int_equal(apply(&f, cmd_life(RD_TASK_OP_CANCEL, T1, "", 0, 0, 60))->status,
                     RD_ECONFLICT);
    apply(&f, cmd_task_submit(T2, 5, 0, 1, 5, 70));
    apply(&f, cmd_task_assign(T2, 0, "b", 1, 71));
    apply(&f, cmd_task_finish(T2, 1, RD_TASK_COMPLETED, "{}", 72));
    assert_int_equal(apply(&f, cmd_life(RD_TASK_OP_CANCEL, T2, "", 0, 0, 73))->status,
                     RD_ECONFLICT);
    assert_int_equal(rd_fsm_task(&f, T2)->state, RD_TASK_COMPLETED);
    assert_int_equal(
        apply(&f, cmd_life(RD_TASK_OP_CANCEL, "99999999-9999-4999-8999-999999999999", "", 0, 0, 74))
            ->status,
        RD_ENOTFOUND);
    /* A pending task cancels too (nothing to revoke); the default reason. */
    apply(&f, cmd_task_submit("33333333-3333-4333-8333-333333333333", 5, 0, 1, 5, 80));
    assert_int_equal(
        apply(&f, cmd_life(RD_TASK_OP_CANCEL, "33333333-3333-4333-8333-333333333333", "", 0, 0, 81))
            ->status,
        0);
    assert_string_equal(rd_fsm_task(&f, "33333333-3333-4333-8333-333333333333")->result_json,
                        "cancelled");
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

static void test_retry_requeues_a_poison_task_with_a_new_budget(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_task_submit(T1, 5, 0, 1, 2, 10)); /* max_attempts 2 */
    apply(&f, cmd_task_assign(T1, 0, "a", 1, 20));
    apply(&f, cmd_task_ckpt(T1, 1, 4, "{\"step\":4}", 3, 21));
    apply(&f, cmd_task_finish(T1, 1, RD_TASK_PENDING, "oom", 22));
    apply(&f, cmd_task_assign(T1, 1, "b", 1, 23));
    /* Quarantined as poison: failed, with its failure times. */
    assert_int_equal(apply(&f, cmd_task_fault("f0000001-0000-4000-8000-000000000001", T1, 2,
                                              RD_FAULT_POISON_TASK, 24))
                         ->status,
                     0);
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_int_equal(t->state, RD_TASK_FAILED);
    assert_int_equal(t->n_fail_at, 1);
    /* Retry is refused for anything but a failed task. */
    apply(&f, cmd_task_submit(T2, 5, 0, 1, 5, 25));
    assert_int_equal(apply(&f, cmd_life(RD_TASK_OP_RETRY, T2, "", 0, 0, 26))->status, RD_ECONFLICT);
    const struct rd_fsm_result *r = apply(&f, cmd_life(RD_TASK_OP_RETRY, T1, "", 0, 0, 30));
    assert_int_equal(r->status, 0);
    assert_int_equal(t->state, RD_TASK_PENDING);
    assert_int_equal(t->attempt, 3); /* attempt 2 (and every earlier one) is fenced */
    assert_int_equal(t->attempt_base, 3);
    assert_int_equal(t->n_fail_at, 0); /* the poison window starts afresh */
    assert_int_equal(t->finished, 0);
    assert_string_equal(t->result_json, "");
    assert_int_equal(t->n_ckpts, 1); /* it resumes from its checkpoint */
    assert_int_equal(rd_task_checkpoint(t)->version, 4);
    /* Its quarantine fault (metadata names the task) is resolved with it. */
    const struct rd_fault *q = rd_fsm_fault(&f, "f0000001-0000-4000-8000-000000000001");
    assert_int_equal(q->status, RD_FAULT_RESOLVED);
    assert_string_equal(q->resolution, "task retried by an operator");
    assert_int_equal(q->resolved_at, 30);
    assert_int_equal(apply(&f, cmd_task_finish(T1, 2, RD_TASK_COMPLETED, "{}", 31))->status,
                     RD_EFENCED);
    /* A new budget of max_attempts: a retryable failure of the next attempt
     * requeues it instead of failing it for good. */
    assert_int_equal(apply(&f, cmd_task_assign(T1, 3, "a", 1, 40))->status, 0);
    assert_int_equal(apply(&f, cmd_task_finish(T1, 4, RD_TASK_PENDING, "flaky", 41))->status, 0);
    assert_int_equal(t->state, RD_TASK_PENDING);
    assert_int_equal(apply(&f, cmd_task_assign(T1, 4, "b", 1, 42))->status, 0);
    assert_int_equal(apply(&f, cmd_task_finish(T1, 5, RD_TASK_PENDING, "flaky", 43))->status, 0);
    assert_int_equal(t->state, RD_TASK_FAILED); /* the second attempt since the retry */
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

static void test_deadline_fault_fails_and_unplaces_the_task(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    apply(&f, cmd_submit_deadline(T1, 500, 10));
    const struct rd_task *t = rd_fsm_task(&f, T1);
    assert_int_equal(t->deadline_ms, 500);
    apply(&f, cmd_task_assign(T1, 0, "a", 1, 20));
    /* Decided on attempt 0 but the task moved on: fenced, nothing changes. */
    assert_int_equal(
        apply(&f, cmd_task_fault("f0000002-0000-4000-8000-000000000002", T1, 0, RD_FAULT_HANG, 600))
            ->status,
        RD_EFENCED);
    assert_int_equal(t->state, RD_TASK_ASSIGNED);
    assert_int_equal(
        apply(&f, cmd_task_fault("f0000003-0000-4000-8000-000000000003", T1, 1, RD_FAULT_HANG, 601))
            ->status,
        0);
    assert_int_equal(t->state, RD_TASK_FAILED);
    assert_string_equal(t->node_id, "");
    assert_non_null(strstr(t->result_json, "deadline passed"));
    assert_non_null(strstr(t->result_json, "f0000003-0000-4000-8000-000000000003"));
    assert_int_equal(rd_fsm_node(&f, "a", 1)->slots_in_use, 0);
    const struct rd_fault *x = rd_fsm_fault(&f, "f0000003-0000-4000-8000-000000000003");
    assert_non_null(x);
    assert_int_equal(x->type, RD_FAULT_HANG);
    /* A retry drops the deadline that passed (it would fail again at once). */
    assert_int_equal(apply(&f, cmd_life(RD_TASK_OP_RETRY, T1, "", 0, 0, 700))->status, 0);
    assert_int_equal(t->deadline_ms, 0);
    assert_int_equal(t->state, RD_TASK_PENDING);
    apply(&f, cmd_submit_deadline(T2, 5000, 710));
    apply(&f, cmd_task_finish(T2, 0, RD_TASK_FAILED, "operator", 720));
    assert_int_equal(apply(&f, cmd_life(RD_TASK_OP_RETRY, T2, "", 0, 0, 730))->status, 0);
    assert_int_equal(rd_fsm_task(&f, T2)->deadline_ms, 5000); /* still ahead: kept */
    /* The deadline survives a snapshot. */
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&f, &snap), 0);
    struct rd_fsm g;
    rd_fsm_init(&g);
    assert_int_equal(rd_fsm_restore(&g, snap.p, snap.len), 0);
    assert_int_equal(rd_fsm_task(&g, T2)->deadline_ms, 5000);
    assert_int_equal(rd_fsm_task(&g, T1)->finished, t->finished);
    assert_true(rd_fsm_digest(&g) == rd_fsm_digest(&f));
    rd_w_free(&snap);
    rd_fsm_close(&g);
    rd_fsm_close(&f);
}

/* One random operation on a random task of `f`, as the heap tests drive
 * them: a placement, a move back to pending (no room), a retryable failure
 * (pending again until max_attempts), a completion, a failure, a cancel, a
 * retry (some after their deadline passed: it is dropped). */
static void random_task_op(struct rd_fsm *f, uint64_t *rng, int64_t *now)
{
    *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
    const struct rd_task *t = f->tasks[(*rng >> 33) % f->n_tasks];
    uint32_t attempt = t->attempt;
    char id[40];
    snprintf(id, sizeof(id), "%s", t->id);
    switch ((*rng >> 20) % 10) {
    case 8: /* the first checkpoint of an attempt: assigned or recovering to running */
        apply(f, cmd_task_ckpt(id, attempt, 1 + (*rng >> 50) % 4, "{}", 0, (*now)++));
        break;
    case 9:
        apply(f, cmd_recovery_move(id, attempt, (*rng >> 40) % 2 ? "a" : "b", 1, "", "", "", "",
                                   (*now)++));
        break;
    case 0:
    case 1:
        apply(f, cmd_task_assign(id, attempt, (*rng >> 40) % 2 ? "a" : "b", 1, (*now)++));
        break;
    case 2:
        apply(f, cmd_task_assign(id, attempt, "", 0, (*now)++));
        break;
    case 3:
        apply(f, cmd_task_finish(id, attempt, RD_TASK_PENDING, "x", (*now)++));
        break;
    case 4:
        apply(f, cmd_task_finish(id, attempt, RD_TASK_COMPLETED, "{}", (*now)++));
        break;
    case 5:
        apply(f, cmd_task_finish(id, attempt, RD_TASK_FAILED, "x", (*now)++));
        break;
    case 6:
        apply(f, cmd_life(RD_TASK_OP_CANCEL, id, "", 0, 0, (*now)++));
        break;
    default:
        *now += (int64_t)((*rng >> 44) % 50);
        apply(f, cmd_life(RD_TASK_OP_RETRY, id, "", 0, 0, (*now)++));
    }
}

/* `g` restored from a snapshot of `f` (`snap` holds it; the caller frees). */
static void restore_copy(const struct rd_fsm *f, struct rd_fsm *g, struct rd_wbuf *snap)
{
    rd_w_init(snap);
    assert_int_equal(rd_fsm_snapshot(f, snap), 0);
    rd_fsm_init(g);
    assert_int_equal(rd_fsm_restore(g, snap->p, snap->len), 0);
}

/* The deadline heap (rd_fsm_deadlines_passed) against a walk over every
 * task: after each submit, placement, completion, failure, cancel, retry
 * and a snapshot's restore it names exactly the unfinished tasks whose
 * deadline passed, and counts exactly those with one. */
static size_t walk_passed(const struct rd_fsm *f, int64_t now, char *seen)
{
    size_t n = 0;
    memset(seen, 0, f->n_tasks);
    for (size_t i = 0; i < f->n_tasks; i++) {
        const struct rd_task *t = f->tasks[i];
        if (t->deadline_ms != 0 && t->deadline_ms <= now && !rd_task_finished(t)) {
            seen[i] = 1;
            n++;
        }
    }
    return n;
}

/* Each node's count of unstarted tasks (rd_node.n_unstarted) against its
 * list, and the list's order: a heartbeat's handover walks only the first
 * n_unstarted tasks, so every unstarted task must come before every
 * started one; the links both ways and the tail agree. */
static void assert_unstarted_matches_walk(const struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *n = f->nodes[i];
        uint32_t want = 0, len = 0;
        bool started_seen = false;
        const struct rd_task *prev = NULL;
        for (const struct rd_task *t = n->tasks; t != NULL; prev = t, t = t->next_on_node) {
            bool unstarted = t->state == RD_TASK_ASSIGNED || t->state == RD_TASK_RECOVERING;
            assert_false(unstarted && started_seen); /* an unstarted task after a started one */
            started_seen |= !unstarted;
            want += unstarted;
            assert_ptr_equal(t->prev_on_node, prev);
            assert_true(++len <= f->n_tasks);
        }
        assert_ptr_equal(n->tasks_tail, prev);
        assert_int_equal(n->n_unstarted, want);
    }
}

static void assert_heap_matches_walk(const struct rd_fsm *f, int64_t now)
{
    assert_unstarted_matches_walk(f);
    enum { N = 400 };
    const struct rd_task *got[N];
    char seen[N];
    size_t want = walk_passed(f, now, seen), pending = 0;
    size_t n = rd_fsm_deadlines_passed(f, now, got, N);
    assert_int_equal(n, want);
    for (size_t i = 0; i < n; i++) {
        size_t at = rd_fsm_task_after(f, got[i]->id) - 1;
        assert_ptr_equal(f->tasks[at], got[i]);
        assert_int_equal(seen[at], 1); /* passed, unfinished, and named once */
        seen[at] = 2;
    }
    for (size_t i = 0; i < f->n_tasks; i++)
        pending += f->tasks[i]->deadline_ms != 0 && !rd_task_finished(f->tasks[i]);
    assert_int_equal(rd_fsm_deadlines_pending(f), pending);
    /* A bound is kept: at most `max`, all of them passed. */
    if (want > 3) {
        assert_int_equal(rd_fsm_deadlines_passed(f, now, got, 3), 3);
        for (size_t i = 0; i < 3; i++)
            assert_true(got[i]->deadline_ms <= now && !rd_task_finished(got[i]));
    }
}

static void test_deadline_heap_names_the_passed_deadlines(void **state)
{
    enum { TASKS = 300 };
    struct rd_fsm f;
    setup_cluster(&f);
    uint64_t rng = 12345;
    char id[40];
    int64_t now = 10;
    for (unsigned i = 0; i < TASKS; i++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        int64_t deadline = (rng >> 33) % 4 == 0 ? 0 : 1000 + (int64_t)((rng >> 20) % 9000);
        snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000", i);
        apply(&f, cmd_submit_deadline(id, deadline, now++));
    }
    assert_heap_matches_walk(&f, 0);
    assert_heap_matches_walk(&f, 5000);
    for (unsigned step = 0; step < 600; step++) {
        random_task_op(&f, &rng, &now);
        assert_heap_matches_walk(&f, now);
        assert_heap_matches_walk(&f, now + 3000);
    }
    assert_true(rd_fsm_deadlines_pending(&f) > 0); /* the run left some to compare */
    /* Rebuilt alike from a snapshot. */
    struct rd_wbuf snap;
    struct rd_fsm g;
    restore_copy(&f, &g, &snap);
    assert_int_equal(rd_fsm_deadlines_pending(&g), rd_fsm_deadlines_pending(&f));
    assert_heap_matches_walk(&g, now);
    assert_heap_matches_walk(&g, 20000);
    /* Pruning the finished tasks leaves the heap whole. */
    apply(&g, cmd_life(RD_TASK_OP_PRUNE, "", "", 0, 1000, now + 100000));
    assert_true(g.n_tasks < TASKS);
    assert_heap_matches_walk(&g, 20000);
    rd_w_free(&snap);
    rd_fsm_close(&g);
    rd_fsm_close(&f);
}

/* The pending heap (rd_fsm_pending_next) against a walk over every task
 * sorted by urgency: after each submit, placement, move back to pending,
 * retryable failure, completion, cancel, retry, a snapshot's restore and a
 * prune it hands out exactly the pending tasks, most urgent first. */
static void assert_pending_matches_walk(const struct rd_fsm *f)
{
    enum { N = 400 };
    const struct rd_task *want[N];
    size_t n = 0;
    for (size_t i = 0; i < f->n_tasks; i++)
        if (f->tasks[i]->state == RD_TASK_PENDING)
            want[n++] = f->tasks[i];
    qsort(want, n, sizeof(*want), rd_task_cmp_urgency);
    assert_int_equal(rd_fsm_pending_count(f), n);
    assert_int_equal(f->tasks_by_state[RD_TASK_PENDING], n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rd_fsm_pending_at(f, i)->state, RD_TASK_PENDING);
    assert_null(rd_fsm_pending_at(f, n));
    struct rd_pending_iter it;
    rd_fsm_pending_begin(f, &it);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(rd_fsm_pending_next(&it), want[i]);
    assert_null(rd_fsm_pending_next(&it));
    rd_fsm_pending_end(&it);
    /* Stopped early: the most urgent ones, nothing leaks. */
    rd_fsm_pending_begin(f, &it);
    for (size_t i = 0; i < n && i < 3; i++)
        assert_ptr_equal(rd_fsm_pending_next(&it), want[i]);
    rd_fsm_pending_end(&it);
}

static void test_pending_heap_hands_out_the_most_urgent_first(void **state)
{
    enum { TASKS = 300 };
    struct rd_fsm f;
    setup_cluster(&f);
    uint64_t rng = 777;
    char id[40];
    int64_t now = 10;
    assert_pending_matches_walk(&f); /* empty */
    for (unsigned i = 0; i < TASKS; i++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        /* Few priorities and shared submit times: the tie-breaks decide. */
        snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000", (unsigned)(rng >> 32));
        apply(&f, cmd_task_submit(id, (int)((rng >> 20) % 3) * 4, (rng >> 30) % 7 == 0, 1, 3,
                                  now + (int64_t)((rng >> 40) % 5)));
        now += (rng >> 50) % 2;
    }
    assert_pending_matches_walk(&f);
    for (unsigned step = 0; step < 600; step++) {
        random_task_op(&f, &rng, &now);
        assert_pending_matches_walk(&f);
    }
    assert_true(rd_fsm_pending_count(&f) > 10); /* the run left some to compare */
    assert_true(f.tasks_by_state[RD_TASK_COMPLETED] > 0);
    struct rd_wbuf snap;
    struct rd_fsm g;
    restore_copy(&f, &g, &snap);
    assert_pending_matches_walk(&g);
    apply(&g, cmd_life(RD_TASK_OP_PRUNE, "", "", 0, 1000, now + 100000));
    assert_true(g.n_tasks < f.n_tasks);
    assert_pending_matches_walk(&g);
    rd_w_free(&snap);
    rd_fsm_close(&g);
    rd_fsm_close(&f);
}

/* An entry written before deadlines existed (no appended field) reads as
 * none; so do the log's zero padding bytes after it. */
static void test_submit_without_deadline_replays(void **state)
{
    struct rd_wbuf w = cmd_task_submit(T1, 5, 0, 1, 5, 10); /* no deadline: not written */
    struct rd_cmd c;
    assert_int_equal(rd_cmd_decode(w.p, w.len, &c), 0);
    assert_int_equal(c.u.tsubmit.deadline_ms, 0);
    uint8_t padded[512];
    assert_true(w.len + 7 <= sizeof(padded));
    memcpy(padded, w.p, w.len);
    memset(padded + w.len, 0, 7);
    assert_int_equal(rd_cmd_decode(padded, w.len + 7, &c), 0);
    assert_int_equal(c.u.tsubmit.deadline_ms, 0);
    rd_w_free(&w);
    w = cmd_submit_deadline(T1, 12345, 10);
    assert_int_equal(rd_cmd_decode(w.p, w.len, &c), 0);
    assert_int_equal(c.u.tsubmit.deadline_ms, 12345);
    rd_w_free(&w);
    /* A lifecycle command this version does not know the op of is refused. */
    w = cmd_life(RD_TASK_OP_COUNT, T1, "", 0, 0, 10);
    assert_int_equal(rd_cmd_decode(w.p, w.len, &c), RD_EPARSE);
    rd_w_free(&w);
}

static void test_prune_drops_old_finished_tasks_once_exported(void **state)
{
    struct rd_fsm f;
    setup_cluster(&f);
    const char *ids[] = {T1, T2, "33333333-3333-4333-8333-333333333333",
                         "44444444-4444-4444-8444-444444444444"};
    for (int i = 0; i < 4; i++)
        apply(&f, cmd_task_submit(ids[i], 5, 0, 1, 5, 10));
    apply(&f, cmd_task_assign(T1, 0, "a", 1, 20));
    apply(&f, cmd_task_finish(T1, 1, RD_TASK_COMPLETED, "{}", 100)); /* finished at 100 */
    apply(&f, cmd_life(RD_TASK_OP_CANCEL, T2, "", 0, 0, 200));       /* at 200 */
    apply(&f, cmd_life(RD_TASK_OP_CANCEL, ids[2], "", 0, 0, 300));   /* at 300 */
    /* ids[3] stays pending: never pruned. */
    assert_int_equal(rd_fsm_tasks_prunable(&f, 350, 100, 10), 2);
    assert_int_equal(rd_fsm_tasks_prunable(&f, 350, 100, 1), 1);
    /* Retention 100 at 250: only T1 (finished 150 ago). */
    const struct rd_fsm_result *r = apply(&f, cmd_life(RD_TASK_OP_PRUNE, "", "", 100, 10, 250));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, 1);
    assert_null(rd_fsm_task(&f, T1));
    assert_int_equal(f.n_tasks, 3);
    assert_int_equal(f.tasks_by_state[RD_TASK_COMPLETED], 0);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    /* With export on, a task waits until every record changed up to its
     * finishing is exported: the audit record of a later cancel is not. */
    apply(&f, cmd_records_export(1, 0, 0, 260));
    struct rd_cmd c = {.type = RD_CMD_AUDIT, .time_ms = 270};
    rd_cmd_audit_engine(&c, "task_cancel", T2, "");
    apply(&f, fsm_encode(&c)); /* an audit record changed at this index */
    uint64_t audit_at = f.n_applied;
    /* T2 and ids[2] finished before it: their records are exported. */
    assert_int_equal(rd_fsm_tasks_prunable(&f, 1000, 100, 10), 2);
    apply(&f, cmd_life(RD_TASK_OP_CANCEL, ids[3], "", 0, 0, 280)); /* after it: waits */
    assert_int_equal(rd_fsm_tasks_prunable(&f, 1000, 100, 10), 2);
    apply(&f, cmd_records_export(1, audit_at, 0, 290));
    assert_int_equal(rd_fsm_tasks_prunable(&f, 1000, 100, 10), 3);
    r = apply(&f, cmd_life(RD_TASK_OP_PRUNE, "", "", 100, 2, 1000)); /* at most 2 */
    assert_int_equal(r->value, 2);
    assert_int_equal(f.n_tasks, 1);
    r = apply(&f, cmd_life(RD_TASK_OP_PRUNE, "", "", 100, 2, 1000));
    assert_int_equal(r->value, 1);
    assert_int_equal(f.n_tasks, 0);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

/* The same log on two machines, one restored from a snapshot half way:
 * cancel, retry, deadline faults and prunes leave byte-identical states. */
static void test_lifecycle_replays_identically(void **state)
{
    struct rd_fsm a, b;
    setup_cluster(&a);
    rd_fsm_init(&b);
    struct rd_wbuf log[64];
    int n = 0;
    log[n++] = cmd_submit_deadline(T1, 300, 10);
    log[n++] = cmd_task_submit(T2, 5, 0, 1, 1, 11);
    log[n++] = cmd_task_assign(T1, 0, "a", 1, 20);
    log[n++] = cmd_task_assign(T2, 0, "b", 1, 21);
    log[n++] = cmd_task_finish(T2, 1, RD_TASK_FAILED, "boom", 22);
    log[n++] = cmd_life(RD_TASK_OP_RETRY, T2, "", 0, 0, 30);
    log[n++] = cmd_task_assign(T2, 2, "a", 1, 31);
    log[n++] = cmd_life(RD_TASK_OP_CANCEL, T2, "by test", 0, 0, 40);
    log[n++] = cmd_task_fault("f0000004-0000-4000-8000-000000000004", T1, 1, RD_FAULT_HANG, 301);
    log[n++] = cmd_life(RD_TASK_OP_PRUNE, "", "", 50, 10, 400);
    /* setup_cluster applied two registrations on a: replay them on b. */
    apply(&b, cmd_register("a", 4, 1));
    apply(&b, cmd_register("b", 4, 1));
    for (int i = 0; i < n; i++) {
        assert_int_equal(rd_fsm_apply(&a, log[i].p, log[i].len, NULL), 0);
        if (i == 5) { /* b: from a snapshot of a, then the rest */
            struct rd_wbuf snap;
            rd_w_init(&snap);
            assert_int_equal(rd_fsm_snapshot(&a, &snap), 0);
            assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len), 0);
            rd_w_free(&snap);
        } else if (i > 5) {
            assert_int_equal(rd_fsm_apply(&b, log[i].p, log[i].len, NULL), 0);
        }
        rd_w_free(&log[i]);
    }
    assert_int_equal(a.n_tasks, 0); /* both finished, both pruned */
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest_full(&a));
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failures_and_quarantine),
        cmocka_unit_test(test_undelivered_attempt_is_no_failure),
        cmocka_unit_test(test_failure_times_are_bounded),
        cmocka_unit_test(test_submit_is_idempotent),
        cmocka_unit_test(test_checkpoint_retry_is_idempotent),
        cmocka_unit_test(test_finish_retry_is_idempotent),
        cmocka_unit_test(test_placement_is_fenced_by_attempt_and_epoch),
        cmocka_unit_test(test_checkpoints_are_fenced_and_versioned),
        cmocka_unit_test(test_completion_and_retries),
        cmocka_unit_test(test_snapshot_keeps_tasks_and_checkpoints),
        cmocka_unit_test(test_restore_keeps_an_older_version),
        cmocka_unit_test(test_restore_from_a_backup),
        cmocka_unit_test(test_restore_refusals),
        cmocka_unit_test(test_restore_without_an_open_fault),
        cmocka_unit_test(test_restore_is_the_same_on_every_replica),
        cmocka_unit_test(test_cancel_fences_the_attempt_and_frees_the_agent),
        cmocka_unit_test(test_retry_requeues_a_poison_task_with_a_new_budget),
        cmocka_unit_test(test_deadline_fault_fails_and_unplaces_the_task),
        cmocka_unit_test(test_deadline_heap_names_the_passed_deadlines),
        cmocka_unit_test(test_pending_heap_hands_out_the_most_urgent_first),
        cmocka_unit_test(test_submit_without_deadline_replays),
        cmocka_unit_test(test_prune_drops_old_finished_tasks_once_exported),
        cmocka_unit_test(test_lifecycle_replays_identically),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
