/*
 * Predicted faults act (recover/predict.c) on a fake log with the shipped
 * policies: a predicted fault of a working agent drains it (audited, the
 * fault its cause) and its tasks move with their checkpoints while it is
 * still alive; drains are rate-limited and never leave less than the
 * minimum of healthy capacity (held, tried again while the prediction
 * stands), the rate limit across a leader change too, a refused drain
 * giving its token back; a fault that is not a prediction, or a
 * select.lua without the hook, drains nothing; an agent drained on a prediction that was withdrawn
 * goes back through probation.
 */
#include "cmocka_all.h"

#include "common/util.h"
#include "policy/policy.h"
#include "sched_world.h"

#define SHIPPED  RD_SOURCE_DIR "/policies"
#define FIXTURES RD_SOURCE_DIR "/tests/unit/policy/fixtures"

#define PREDICTED_META                                                                             \
    "{\"predicted\":true,\"metric\":\"latency_ms\",\"eta_ms\":20000,\"trend\":80.0,"               \
    "\"detail\":\"metrics: latency_ms heads for its limit 5000 in about 20 s\"}"

static int setup(void **state)
{
    sched_world_setup(state);
    struct sched_world *w = *state;
    char err[RD_POLICY_ERRLEN];
    if (rd_policy_load(SHIPPED, 50, 16u << 20, &w->policy, err, sizeof(err)) != 0)
        fail_msg("loading the shipped policies: %s", err);
    w->cfg.fault_tolerance.prediction.drains_per_minute = 10;
    w->cfg.fault_tolerance.prediction.min_healthy_capacity = 50;
    return 0;
}

static int teardown(void **state)
{
    struct sched_world *w = *state;
    rd_policy_free(w->policy);
    return sched_world_teardown(state);
}

static const struct rd_node *node(struct sched_world *w, const char *id)
{
    return rd_fsm_node(&w->fsm, id, strlen(id));
}

/* Opens fault `fid` on `node_id` (the agent keeps its state, as the
 * analysis records warnings and predictions). */
static void open_fault(struct sched_world *w, const char *fid, const char *node_id,
                       const char *meta)
{
    struct rd_cmd c = rd_cmd_cluster_fault(0, fid, RD_FAULT_DEGRADED, RD_SEV_WARNING, meta,
                                           "{\"action\":\"watch\"}");
    c.u.fopen.node_id = RD_STR(node_id);
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
}

static void resolve_faults_of(struct sched_world *w, const char *node_id)
{
    struct rd_cmd c = {.type = RD_CMD_FAULT_RESOLVE};
    c.u.fresolve.id = RD_STR("");
    c.u.fresolve.node_id = RD_STR(node_id);
    c.u.fresolve.note = RD_STR("signals back to normal");
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
}

#define F1 "11111111-1111-4111-8111-111111111111"
#define F2 "22222222-2222-4222-8222-222222222222"

/* Agent "sick" runs two tasks with checkpoints; a prediction drains it and
 * both tasks move, their checkpoints with them, while it is alive. */
static void test_prediction_drains_and_tasks_move(void **state)
{
    struct sched_world *w = *state;
    w->cfg.fault_tolerance.rebalance.enabled = false; /* placement alone */
    sched_world_agent(w, "sick", 2, "{}");
    const char *t1 = sched_world_task(w, 1, 5, false, 1, "{}");
    const char *t2 = sched_world_task(w, 2, 5, false, 1, "{}");
    sched_world_settle(w);
    sched_world_agent(w, "ok1", 4, "{}");
    sched_world_agent(w, "ok2", 4, "{}");
    sched_world_checkpoint(w, t1, 3);
    sched_world_checkpoint(w, t2, 5);
    open_fault(w, F1, "sick", PREDICTED_META);
    sched_world_settle(w);
    assert_int_equal(node(w, "sick")->state, RD_NODE_DRAINING);
    assert_non_null(strstr(node(w, "sick")->reason, "draining: failure predicted (latency_ms"));
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_DRAINED], 1);
    const char *ids[] = {t1, t2};
    const uint64_t versions[] = {3, 5};
    for (int i = 0; i < 2; i++) {
        const struct rd_task *t = sched_world_get(w, ids[i]);
        assert_true(strcmp(t->node_id, "ok1") == 0 || strcmp(t->node_id, "ok2") == 0);
        assert_int_equal(t->attempt, 2);
        assert_int_equal(rd_task_checkpoint(t)->version, versions[i]);
    }
    assert_null(node(w, "sick")->tasks);
    /* The drain is audited, the prediction its cause. */
    bool audited = false;
    for (size_t i = 0; i < w->fsm.n_audits; i++) {
        const struct rd_audit *a = w->fsm.audits[w->fsm.audit_head + i];
        audited |= strcmp(a->action, "drain_by_prediction") == 0 && strcmp(a->cause, F1) == 0;
    }
    assert_true(audited);
}

/* The drain's transition is refused once (a leadership transfer): the
 * prediction is asked about again and drains the agent, and the drain is
 * counted once, when the log took it. */
static void test_refused_drain_counts_once(void **state)
{
    struct sched_world *w = *state;
    const char *agents[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        sched_world_agent(w, agents[i], 4, "{}");
    open_fault(w, F1, "a", PREDICTED_META);
    w->log.refusing = true;
    unsigned before = w->log.proposals;
    rd_sched_pass(&w->s);
    assert_true(w->log.proposals > before);
    fake_log_step(&w->log);
    assert_int_equal(node(w, "a")->state, RD_NODE_ALIVE);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_DRAINED], 0);
    w->log.refusing = false;
    sched_world_settle(w);
    assert_int_equal(node(w, "a")->state, RD_NODE_DRAINING);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_DRAINED], 1);
}

/* drains_per_minute 1, agents "a" to "d" of 4 slots, a prediction for "a". */
static void one_drain_a_minute(struct sched_world *w)
{
    w->cfg.fault_tolerance.prediction.drains_per_minute = 1;
    const char *agents[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        sched_world_agent(w, agents[i], 4, "{}");
    open_fault(w, F1, "a", PREDICTED_META);
}

/* drains_per_minute 1: of two predictions, one drains, the other is held
 * and counted once. */
static void test_drains_are_rate_limited(void **state)
{
    struct sched_world *w = *state;
    one_drain_a_minute(w);
    open_fault(w, F2, "b", PREDICTED_META);
    sched_world_settle(w);
    sched_world_settle(w);
    unsigned draining =
        (node(w, "a")->state == RD_NODE_DRAINING) + (node(w, "b")->state == RD_NODE_DRAINING);
    assert_int_equal(draining, 1);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_DRAINED], 1);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_RATE_LIMITED], 1);
}

/* drains_per_minute 1 holds across a leader change: the new leader's
 * bucket starts from the drain the audit records show, so a second
 * prediction right after it is held, not drained. */
static void test_drain_rate_limit_holds_across_a_leader_change(void **state)
{
    struct sched_world *w = *state;
    one_drain_a_minute(w);
    sched_world_settle(w);
    assert_int_equal(node(w, "a")->state, RD_NODE_DRAINING);
    sched_world_new_leader(w);
    open_fault(w, F2, "b", PREDICTED_META);
    sched_world_settle(w);
    assert_int_equal(node(w, "b")->state, RD_NODE_ALIVE);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_DRAINED], 0);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_RATE_LIMITED], 1);
}

/* The prediction for "a", asked about again, drains it at once: not held
 * by the rate limit, counted once. */
static void drains_at_once(struct sched_world *w)
{
    sched_world_settle(w);
    assert_int_equal(node(w, "a")->state, RD_NODE_DRAINING);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_RATE_LIMITED], 0);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_DRAINED], 1);
}

/* drains_per_minute 1: a drain the log refused (a leadership transfer)
 * drained nothing and gives its token back, so the prediction, asked about
 * again, drains the agent at once instead of being held for a minute. */
static void test_drain_refused_by_the_log_gives_its_token_back(void **state)
{
    struct sched_world *w = *state;
    one_drain_a_minute(w);
    w->log.refusing = true;
    rd_sched_pass(&w->s);
    fake_log_step(&w->log);
    assert_int_equal(node(w, "a")->state, RD_NODE_ALIVE);
    w->log.refusing = false;
    drains_at_once(w);
}

/* drains_per_minute 1: the state machine refuses the drain (the agent went
 * to probation on the way): its token comes back, and the prediction, which
 * still stands, drains the agent on the next pass. */
static void test_drain_refused_by_the_state_machine_gives_its_token_back(void **state)
{
    struct sched_world *w = *state;
    one_drain_a_minute(w);
    unsigned before = w->log.proposals;
    rd_sched_pass(&w->s);
    assert_int_equal(w->log.proposals, before + 1);
    sched_world_move(w, "a", RD_NODE_PROBATION);
    unsigned refused = (unsigned)w->s.refused_total;
    fake_log_step(&w->log);
    assert_int_equal(w->s.refused_total, refused + 1);
    assert_int_equal(node(w, "a")->state, RD_NODE_PROBATION);
    drains_at_once(w);
}

/* Two agents, min_healthy_capacity 60%: draining either would leave 50%. */
static void test_minimum_healthy_capacity_holds(void **state)
{
    struct sched_world *w = *state;
    w->cfg.fault_tolerance.prediction.min_healthy_capacity = 60;
    sched_world_agent(w, "a", 4, "{}");
    sched_world_agent(w, "b", 4, "{}");
    open_fault(w, F1, "a", PREDICTED_META);
    sched_world_settle(w);
    assert_int_equal(node(w, "a")->state, RD_NODE_ALIVE);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_NO_CAPACITY], 1);
    /* A third agent makes room: the held drain goes ahead. */
    sched_world_agent(w, "c", 4, "{}");
    sched_world_settle(w);
    assert_int_equal(node(w, "a")->state, RD_NODE_DRAINING);
}

#define MS 1000000ULL
static uint64_t fake_clock(void)
{
    return 1000 * MS;
}

/* Two agents, min_healthy_capacity 60%, and a third the detectors hold in
 * trouble (its failure proposed, not committed): it is no capacity to drain
 * onto, so draining "a" would leave 33%. Counted as healthy before, it
 * drained "a" onto the only agent left. */
static void test_agent_in_trouble_is_no_healthy_capacity(void **state)
{
    struct sched_world *w = *state;
    sched_world_analysis(w, fake_clock);
    w->cfg.fault_tolerance.prediction.min_healthy_capacity = 60;
    sched_world_agent(w, "a", 4, "{}");
    sched_world_agent(w, "b", 4, "{}");
    sched_world_agent(w, "c", 4, "{}");
    sched_world_touch(w, "c", fake_clock(), 0);
    sched_world_observe(w, "c", RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    assert_int_equal(node(w, "c")->state, RD_NODE_ALIVE);
    open_fault(w, F1, "a", PREDICTED_META);
    rd_sched_pass(&w->s);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_NO_CAPACITY], 1);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_DRAINED], 0);
    sched_world_settle(w);
    assert_int_equal(node(w, "c")->state, RD_NODE_FAILED);
    assert_int_equal(node(w, "a")->state, RD_NODE_ALIVE);
}

/* A warning that is not a prediction drains nothing; nor does a
 * select.lua without the predicted hook. */
static void test_no_prediction_or_no_hook_watches(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 4, "{}");
    sched_world_agent(w, "b", 4, "{}");
    sched_world_agent(w, "c", 4, "{}");
    open_fault(w, F1, "a", "{\"predicted\":false,\"metric\":\"cpu\"}");
    sched_world_settle(w);
    assert_int_equal(node(w, "a")->state, RD_NODE_ALIVE);

    char dir[] = "/tmp/rd_predict_policy_XXXXXX", cmd[512], err[RD_POLICY_ERRLEN];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "cp %s/*.lua %s/ && cp %s/select_no_hooks.lua %s/select.lua",
             SHIPPED, dir, FIXTURES, dir);
    assert_int_equal(system(cmd), 0);
    rd_policy_free(w->policy);
    w->policy = NULL;
    assert_int_equal(rd_policy_load(dir, 50, 16u << 20, &w->policy, err, sizeof(err)), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    open_fault(w, F2, "b", PREDICTED_META);
    sched_world_settle(w);
    assert_int_equal(node(w, "b")->state, RD_NODE_ALIVE);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_WATCHED], 1);
}

/* The prediction was withdrawn (its fault resolved) while the agent
 * drains: it goes back through probation. An operator's drain stays. */
static void test_withdrawn_prediction_readmits(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 4, "{}");
    sched_world_agent(w, "b", 4, "{}");
    sched_world_agent(w, "c", 4, "{}");
    sched_world_move(w, "c", RD_NODE_DRAINING); /* an operator's */
    sched_world_agent(w, "d", 4, "{}");
    open_fault(w, F1, "a", PREDICTED_META);
    sched_world_settle(w);
    assert_int_equal(node(w, "a")->state, RD_NODE_DRAINING);
    resolve_faults_of(w, "a");
    sched_world_settle(w);
    assert_int_equal(node(w, "a")->state, RD_NODE_PROBATION);
    assert_int_equal(node(w, "c")->state, RD_NODE_DRAINING);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_READMITTED], 1);
}

/* After a mass failure thousands of open faults are not predictions:
 * each fault's metadata is read once, and a pass follows only the open
 * predictions (it used to look every open fault up, every 100 ms). A
 * prediction opened after them still drains its agent, and once its
 * record is resolved it is followed no more and its answer forgotten. */
static void test_only_predictions_are_followed(void **state)
{
    struct sched_world *w = *state;
    sched_world_agent(w, "a", 4, "{}");
    sched_world_agent(w, "b", 4, "{}");
    sched_world_agent(w, "c", 4, "{}");
    sched_world_agent(w, "d", 4, "{}");
    char fid[40];
    for (int i = 0; i < 300; i++) {
        snprintf(fid, sizeof(fid), "%08d-3333-4333-8333-333333333333", i);
        open_fault(w, fid, "b", "{\"predicted\":false,\"metric\":\"cpu\"}");
    }
    sched_world_settle(w);
    assert_int_equal(w->fsm.open_faults, 300);
    assert_int_equal(w->s.n_pred_open, 0);
    assert_int_equal(w->s.predicted.len, 0);
    open_fault(w, F1, "a", PREDICTED_META);
    sched_world_settle(w);
    assert_int_equal(node(w, "a")->state, RD_NODE_DRAINING);
    assert_int_equal(node(w, "b")->state, RD_NODE_ALIVE);
    assert_int_equal(w->s.n_pred_open, 1);
    resolve_faults_of(w, "a");
    sched_world_settle(w);
    assert_int_equal(node(w, "a")->state, RD_NODE_PROBATION);
    assert_int_equal(w->s.n_pred_open, 0);
    assert_int_equal(w->s.predicted.len, 0);
}

/* A held prediction resolved and pruned before the next pass (the state
 * machine keeps RD_FSM_MAX_FAULTS records and drops the oldest resolved
 * ones): no pass finds its record again, and its answer is forgotten all
 * the same, not kept until the next leadership. */
static void test_answer_of_a_pruned_prediction_is_forgotten(void **state)
{
    struct sched_world *w = *state;
    one_drain_a_minute(w);
    open_fault(w, F2, "b", PREDICTED_META);
    sched_world_settle(w);
    assert_int_equal(w->s.predicted_total[RD_PREDICTED_RATE_LIMITED], 1);
    assert_int_equal(w->s.predicted.len, 1); /* F2 held: its answer kept */
    resolve_faults_of(w, "b");
    /* Enough later records that F2, the oldest resolved one, is pruned. */
    char fid[40];
    for (int i = 0; i < RD_FSM_MAX_FAULTS; i++) {
        snprintf(fid, sizeof(fid), "%08d-4444-4444-8444-444444444444", i);
        open_fault(w, fid, "d", "{\"predicted\":false,\"metric\":\"cpu\"}");
    }
    resolve_faults_of(w, "d");
    open_fault(w, "ffffffff-4444-4444-8444-444444444444", "d",
               "{\"predicted\":false,\"metric\":\"cpu\"}");
    assert_null(rd_fsm_fault(&w->fsm, F2));
    sched_world_settle(w);
    assert_int_equal(w->s.predicted.len, 0);
    assert_int_equal(w->s.n_pred_open, 1); /* F1 (drained) still followed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prediction_drains_and_tasks_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_drain_counts_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drains_are_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_of_a_pruned_prediction_is_forgotten, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_drain_rate_limit_holds_across_a_leader_change, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_drain_refused_by_the_log_gives_its_token_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_drain_refused_by_the_state_machine_gives_its_token_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_minimum_healthy_capacity_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_in_trouble_is_no_healthy_capacity, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_prediction_or_no_hook_watches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_withdrawn_prediction_readmits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_predictions_are_followed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
