/* Soft state: heartbeats, epochs resetting state, grace, forgetting. */
#include "cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "registry/registry.h"

static void test_touch_creates_and_keeps(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    assert_null(rd_registry_get(&r, "a", 1));
    struct rd_soft *s = rd_registry_touch(&r, "a", 1, 1, 1000, 500);
    assert_non_null(s);
    assert_int_equal(s->epoch, 1);
    assert_int_equal(s->grace_until_ns, 1500);
    assert_int_equal(s->heartbeats, 0);
    assert_ptr_equal(rd_registry_touch(&r, "a", 1, 1, 9999, 500), s);
    assert_int_equal(s->grace_until_ns, 1500); /* same epoch: no new grace */
    assert_ptr_equal(rd_registry_get(&r, "a", 1), s);
    rd_registry_close(&r);
}

static void test_heartbeat_records_load_and_metrics(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    struct rd_soft *s = rd_registry_touch(&r, "a", 1, 3, 0, 0);
    struct rd_node_metrics m = {.present = true, .error_rate = 0.5, .latency_ms = 12};
    rd_registry_heartbeat(&r, s, 100, 1700000000000, 4, &m);
    assert_int_equal(s->heartbeats, 1);
    assert_int_equal(s->last_mono_ns, 100);
    assert_int_equal(s->last_wall_ms, 1700000000000);
    assert_int_equal(s->slots_used, 4);
    assert_true(s->metrics.present);
    assert_true(s->metrics.error_rate == 0.5);
    /* A heartbeat without metrics keeps the last ones reported. */
    struct rd_node_metrics none = {0};
    rd_registry_heartbeat(&r, s, 200, 1700000000500, 1, &none);
    assert_true(s->metrics.latency_ms == 12);
    assert_int_equal(s->slots_used, 1);
    assert_int_equal(r.heartbeats_total, 2);
    rd_registry_close(&r);
}

static void test_new_epoch_resets_soft_state(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    struct rd_soft *s = rd_registry_touch(&r, "agent", 5, 1, 0, 10);
    rd_registry_heartbeat(&r, s, 5, 5, 7, NULL);
    s = rd_registry_touch(&r, "agent", 5, 2, 1000, 10);
    assert_int_equal(s->epoch, 2);
    assert_int_equal(s->heartbeats, 0);
    assert_int_equal(s->slots_used, 0);
    assert_int_equal(s->last_mono_ns, 0);
    assert_int_equal(s->grace_until_ns, 1010);
    assert_string_equal(s->node_id, "agent");
    rd_registry_close(&r);
}

static void test_forget_and_many_nodes(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "n%d", i);
        assert_non_null(rd_registry_touch(&r, id, strlen(id), 1, 0, 0));
    }
    for (int i = 0; i < 5000; i += 2) {
        snprintf(id, sizeof(id), "n%d", i);
        rd_registry_forget(&r, id, strlen(id));
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "n%d", i);
        struct rd_soft *s = rd_registry_get(&r, id, strlen(id));
        if (i % 2)
            assert_non_null(s);
        else
            assert_null(s);
    }
    rd_registry_forget(&r, "nope", 4); /* forgetting the unknown is harmless */
    rd_registry_close(&r);
}

/* Revocations name the attempt taken away; the same one twice (a pause,
 * then the resume back to pending) is told once, another attempt apart. */
static void test_revocations_name_the_attempt(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    struct rd_soft *s = rd_registry_touch(&r, "a", 1, 1, 0, 0);
    rd_registry_revoke(&r, s, "t-1", 3);
    rd_registry_revoke(&r, s, "t-1", 3);
    rd_registry_revoke(&r, s, "t-1", 4);
    rd_registry_revoke(&r, s, "t-2", 1);
    struct rd_revocation out[RD_REVOKED_MAX];
    assert_int_equal(rd_registry_take_revoked(&r, s, out), 3);
    assert_string_equal(out[0].task_id, "t-1");
    assert_int_equal(out[0].attempt, 3);
    assert_string_equal(out[1].task_id, "t-1");
    assert_int_equal(out[1].attempt, 4);
    assert_string_equal(out[2].task_id, "t-2");
    assert_int_equal(out[2].attempt, 1);
    assert_int_equal(rd_registry_take_revoked(&r, s, out), 0); /* told once */
    for (unsigned i = 0; i < RD_REVOKED_MAX + 4; i++) {
        char id[16];
        snprintf(id, sizeof(id), "t-%u", i);
        rd_registry_revoke(&r, s, id, 1);
    }
    assert_int_equal(rd_registry_take_revoked(&r, s, out), RD_REVOKED_MAX);
    assert_string_equal(out[0].task_id, "t-0"); /* the oldest are kept */
    rd_registry_close(&r);
}

#define MS 1000000ULL

/* One heartbeat answer at `now` over the tasks `ids` (attempt `att` each)
 * that the node holds unstarted: tells the due ones, unless `hold` (a
 * checkpoint under repair: due, but left out). Their number. */
static unsigned answer(struct rd_soft *s, const char *const *ids, const uint32_t *att, unsigned n,
                       uint64_t now, bool hold)
{
    unsigned told = 0;
    rd_registry_tell_begin(s);
    for (unsigned i = 0; i < n; i++)
        if (rd_registry_tell_due(s, ids[i], att[i], now) && !hold) {
            rd_registry_told(s, ids[i], att[i], now, 100 * MS);
            told++;
        }
    rd_registry_tell_end(s);
    return told;
}

/* An assignment is told once, then again after 1, 2, 4, 8, 8 ... resend
 * intervals while it does not start (an answer may have been lost). */
static void test_told_again_after_backoff(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    struct rd_soft *s = rd_registry_touch(&r, "a", 1, 1, 0, 0);
    const char *ids[] = {"t-1"};
    uint32_t att[] = {1};
    uint64_t t = 1000 * MS;
    assert_int_equal(answer(s, ids, att, 1, t, false), 1);
    static const uint64_t gaps[] = {100, 200, 400, 800, 800, 800};
    for (size_t g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++) {
        /* Heartbeats every 50 ms meanwhile carry nothing. */
        for (uint64_t d = 50; d < gaps[g]; d += 50)
            assert_int_equal(answer(s, ids, att, 1, t + d * MS, false), 0);
        t += gaps[g] * MS;
        assert_int_equal(answer(s, ids, att, 1, t, false), 1);
    }
    /* Due but held back (its checkpoint is being repaired): not recorded,
     * so the next answer tells it. */
    t += 800 * MS;
    assert_int_equal(answer(s, ids, att, 1, t, true), 0);
    assert_int_equal(answer(s, ids, att, 1, t + MS, false), 1);
    rd_registry_close(&r);
}

/* A new attempt of a task told before (placed here again) is told at once;
 * a task the node no longer holds unstarted (it started, moved, finished)
 * is forgotten; a new epoch and a new leadership forget everything. */
static void test_told_new_attempt_and_forgetting(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    struct rd_soft *s = rd_registry_touch(&r, "a", 1, 1, 0, 0);
    const char *ids[] = {"t-1", "t-2"};
    uint32_t att[] = {1, 1};
    assert_int_equal(answer(s, ids, att, 2, 10 * MS, false), 2);
    assert_int_equal(answer(s, ids, att, 2, 20 * MS, false), 0);
    att[0] = 2;
    assert_int_equal(answer(s, ids, att, 2, 30 * MS, false), 1);
    assert_int_equal(s->n_told, 2);
    /* t-2 started: gone from the next answer's round, and from the table. */
    assert_int_equal(answer(s, ids, att, 1, 40 * MS, false), 0);
    assert_int_equal(s->n_told, 1);
    assert_int_equal(answer(s, ids, att, 2, 50 * MS, false), 1); /* unknown again: told */
    rd_registry_untell_all(&r);
    assert_int_equal(s->n_told, 0);
    assert_int_equal(answer(s, ids, att, 2, 60 * MS, false), 2);
    s = rd_registry_touch(&r, "a", 1, 2, 70 * MS, 0); /* a new epoch */
    assert_int_equal(s->n_told, 0);
    assert_int_equal(answer(s, ids, att, 2, 80 * MS, false), 2);
    rd_registry_forget(&r, "a", 1); /* frees its table (ASan) */
    rd_registry_close(&r);
}

/* A node with many tasks: each is told once whatever order the node's
 * list gives them in, tasks come and go between answers, and the resend
 * time is kept per task. */
static void test_told_many_tasks(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    struct rd_soft *s = rd_registry_touch(&r, "big", 3, 1, 0, 0);
    enum { N = 600 };
    static char names[N][40];
    const char *ids[N];
    uint32_t att[N];
    for (unsigned i = 0; i < N; i++) {
        /* Ids that do not sort in list order (the list is newest first). */
        snprintf(names[i], sizeof(names[i]), "%08x-task", (i * 2654435761u) ^ 0x5bd1e995u);
        ids[i] = names[i];
        att[i] = 1;
    }
    assert_int_equal(answer(s, ids, att, N / 2, 0, false), N / 2);
    /* Half again plus the other half new, in reverse order. */
    const char *rev[N];
    for (unsigned i = 0; i < N; i++)
        rev[i] = ids[N - 1 - i];
    assert_int_equal(answer(s, rev, att, N, 10 * MS, false), N / 2);
    assert_int_equal(s->n_told, N);
    for (unsigned i = 1; i < s->n_told; i++)
        assert_true(strcmp(s->told[i - 1].task_id, s->told[i].task_id) < 0);
    /* The first half's resend came (told at 0), the second's not (at 10 ms). */
    assert_int_equal(answer(s, ids, att, N, 100 * MS, false), N / 2);
    assert_int_equal(answer(s, ids, att, N, 110 * MS, false), N / 2);
    assert_int_equal(answer(s, ids, att, N, 120 * MS, false), 0);
    /* All started: the table empties and gives its memory back. */
    assert_int_equal(answer(s, ids, att, 0, 130 * MS, false), 0);
    assert_int_equal(s->n_told, 0);
    assert_null(s->told);
    rd_registry_close(&r);
}

/* An absurd resend interval saturates instead of wrapping into "due". */
static void test_told_resend_saturates(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    struct rd_soft *s = rd_registry_touch(&r, "a", 1, 1, 0, 0);
    rd_registry_tell_begin(s);
    assert_true(rd_registry_tell_due(s, "t", 1, 5));
    rd_registry_told(s, "t", 1, 5, UINT64_MAX);
    assert_int_equal(s->told[0].due_ns, UINT64_MAX);
    rd_registry_tell_end(s);
    rd_registry_tell_begin(s);
    assert_false(rd_registry_tell_due(s, "t", 1, UINT64_MAX - 1));
    rd_registry_told(s, "t", 1, UINT64_MAX / 2, UINT64_MAX / 3); /* twice that: saturates */
    assert_int_equal(s->told[0].due_ns, UINT64_MAX);
    rd_registry_tell_end(s);
    rd_registry_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_touch_creates_and_keeps),
        cmocka_unit_test(test_heartbeat_records_load_and_metrics),
        cmocka_unit_test(test_new_epoch_resets_soft_state),
        cmocka_unit_test(test_forget_and_many_nodes),
        cmocka_unit_test(test_revocations_name_the_attempt),
        cmocka_unit_test(test_told_again_after_backoff),
        cmocka_unit_test(test_told_new_attempt_and_forgetting),
        cmocka_unit_test(test_told_many_tasks),
        cmocka_unit_test(test_told_resend_saturates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
