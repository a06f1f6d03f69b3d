/*
 * Recovery runs' metrics (recover/runs.c) on a fake log: when the leader's
 * close of a run commits, recoveryd_recovery_runs_total{outcome} counts it
 * and recoveryd_recovery_duration_seconds observes how long it took (from
 * the times the log stamped), for a run that succeeded and for one that
 * failed; a run still open counts nothing; a follower counts nothing.
 */
#include "cmocka_all.h"

#include "common/util.h"
#include "sched_world.h"

/* Agent "lost" (`slots` slots) holds task 1, then fails. */
static const char *lost_agent_with_a_task(struct sched_world *w, uint32_t slots)
{
    sched_world_agent(w, "lost", slots, "{}");
    const char *t = sched_world_task(w, 1, 5, false, 1, "{}");
    rd_sched_pass(&w->s);
    fake_log_step(&w->log);
    assert_string_equal(sched_world_get(w, t)->node_id, "lost");
    sched_world_move(w, "lost", RD_NODE_FAILED);
    return t;
}

/* Passes until no run is open (at most 20). */
static void until_runs_closed(struct sched_world *w)
{
    for (int i = 0; i < 20; i++) {
        rd_sched_pass(&w->s);
        fake_log_step(&w->log);
        if (w->fsm.n_recoveries > 0 && rd_fsm_open_recovery(&w->fsm, "lost") == NULL)
            return;
    }
    fail_msg("the recovery run of 'lost' did not close");
}

/* The scrape's text of the two metrics. */
static char *render(struct sched_world *w)
{
    struct rd_mbuf b;
    rd_mbuf_init(&b);
    rd_sched_run_metrics(&w->s, &b);
    assert_int_equal(b.err, 0);
    return b.p;
}

static void assert_line(const char *text, const char *line)
{
    if (strstr(text, line) == NULL)
        fail_msg("no line '%s' in:\n%s", line, text);
}

/* Before any run: every outcome is there at 0, so a rule's rate has a
 * series from the start; the histogram is on the duration scale. */
static void test_series_exist_before_any_run(void **state)
{
    struct sched_world *w = *state;
    char *text = render(w);
    assert_line(text, "# TYPE recoveryd_recovery_runs_total counter\n");
    assert_line(text, "recoveryd_recovery_runs_total{outcome=\"succeeded\"} 0\n");
    assert_line(text, "recoveryd_recovery_runs_total{outcome=\"partial\"} 0\n");
    assert_line(text, "recoveryd_recovery_runs_total{outcome=\"failed\"} 0\n");
    assert_null(strstr(text, "outcome=\"running\""));
    assert_null(strstr(text, "outcome=\"initiated\""));
    assert_line(text, "# TYPE recoveryd_recovery_duration_seconds histogram\n");
    assert_line(text, "recoveryd_recovery_duration_seconds_bucket{le=\"300\"} 0\n");
    assert_line(text, "recoveryd_recovery_duration_seconds_bucket{le=\"1800\"} 0\n");
    assert_line(text, "recoveryd_recovery_duration_seconds_count 0\n");
    free(text);
}

/* A run opened 90 s ago (by the log's clock) moves its task to a healthy
 * agent and ends succeeded: counted once, its 90 s in the (60, 120] bucket. */
static void test_a_run_that_succeeds_is_counted(void **state)
{
    struct sched_world *w = *state;
    const char *t = lost_agent_with_a_task(w, 1);
    sched_world_agent(w, "ok", 4, "{}");
    struct rd_cmd open = {.type = RD_CMD_RECOVERY_OPEN};
    open.u.ropen.id = RD_STR("11111111-2222-4333-8444-555555555555");
    open.u.ropen.node_id = RD_STR("lost");
    open.u.ropen.strategy = RD_STR("");
    open.u.ropen.reason = RD_STR("test");
    open.time_ms = rd_now_ms() - 90000;
    assert_int_equal(fake_log_apply(&w->log, open)->status, 0);
    /* Open, nothing counted yet. */
    char *text = render(w);
    assert_line(text, "recoveryd_recovery_runs_total{outcome=\"succeeded\"} 0\n");
    free(text);

    until_runs_closed(w);
    const struct rd_recovery *run =
        rd_fsm_recovery(&w->fsm, "11111111-2222-4333-8444-555555555555");
    assert_non_null(run);
    assert_int_equal(run->status, RD_REC_SUCCEEDED);
    assert_string_equal(sched_world_get(w, t)->node_id, "ok");
    assert_int_equal(w->s.runs_closed[RD_REC_SUCCEEDED], 1);
    assert_int_equal(w->s.runs_closed[RD_REC_FAILED], 0);
    assert_int_equal(w->s.runs_closed[RD_REC_PARTIAL], 0);
    assert_int_equal(w->s.run_duration.count, 1);
    assert_true(w->s.run_duration.sum >= 90 && w->s.run_duration.sum < 120);
    text = render(w);
    assert_line(text, "recoveryd_recovery_runs_total{outcome=\"succeeded\"} 1\n");
    assert_line(text, "recoveryd_recovery_runs_total{outcome=\"failed\"} 0\n");
    assert_line(text, "recoveryd_recovery_duration_seconds_bucket{le=\"60\"} 0\n");
    assert_line(text, "recoveryd_recovery_duration_seconds_bucket{le=\"120\"} 1\n");
    assert_line(text, "recoveryd_recovery_duration_seconds_count 1\n");
    free(text);

    /* More passes count nothing more: the run is closed. */
    for (int i = 0; i < 3; i++) {
        rd_sched_pass(&w->s);
        fake_log_step(&w->log);
    }
    assert_int_equal(w->s.runs_closed[RD_REC_SUCCEEDED], 1);
    assert_int_equal(w->s.run_duration.count, 1);
}

/* No agent has room: the task goes back to pending, the run the scheduler
 * opened itself ends failed, and that is what is counted. */
static void test_a_run_that_fails_is_counted(void **state)
{
    struct sched_world *w = *state;
    const char *t = lost_agent_with_a_task(w, 1);
    until_runs_closed(w);
    const struct rd_recovery *run = w->fsm.recoveries[0];
    assert_int_equal(run->status, RD_REC_FAILED);
    assert_int_equal(run->failed, 1);
    assert_int_equal(sched_world_get(w, t)->state, RD_TASK_PENDING);
    assert_int_equal(w->s.runs_closed[RD_REC_FAILED], 1);
    assert_int_equal(w->s.runs_closed[RD_REC_SUCCEEDED], 0);
    assert_int_equal(w->s.run_duration.count, 1);
    assert_true(w->s.run_duration.sum < 10);
    char *text = render(w);
    assert_line(text, "recoveryd_recovery_runs_total{outcome=\"failed\"} 1\n");
    assert_line(text, "recoveryd_recovery_runs_total{outcome=\"succeeded\"} 0\n");
    assert_line(text, "recoveryd_recovery_duration_seconds_count 1\n");
    free(text);
}

/* A follower proposes no close and counts nothing, even as the leader's
 * close of the same run is applied to its state machine. */
static void test_a_follower_counts_nothing(void **state)
{
    struct sched_world *w = *state;
    lost_agent_with_a_task(w, 1);
    w->log.follower = true;
    for (int i = 0; i < 3; i++) {
        rd_sched_pass(&w->s);
        fake_log_step(&w->log);
    }
    assert_int_equal(w->fsm.n_recoveries, 0);
    /* What a leader elsewhere committed: the run, its move, its close. */
    struct rd_cmd open = {.type = RD_CMD_RECOVERY_OPEN};
    open.u.ropen.id = RD_STR("11111111-2222-4333-8444-666666666666");
    open.u.ropen.node_id = RD_STR("lost");
    open.u.ropen.strategy = RD_STR("");
    open.u.ropen.reason = RD_STR("test");
    assert_int_equal(fake_log_apply(&w->log, open)->status, 0);
    struct rd_cmd close = {.type = RD_CMD_RECOVERY_CLOSE};
    close.u.rclose.id = open.u.ropen.id;
    close.u.rclose.status = RD_REC_FAILED;
    close.u.rclose.strategy = RD_STR("");
    assert_int_equal(fake_log_apply(&w->log, close)->status, 0);
    for (int st = 0; st < RD_REC_STATUS_COUNT; st++)
        assert_int_equal(w->s.runs_closed[st], 0);
    assert_int_equal(w->s.run_duration.count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_series_exist_before_any_run, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_a_run_that_succeeds_is_counted, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_a_run_that_fails_is_counted, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_a_follower_counts_nothing, sched_world_setup,
                                        sched_world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
