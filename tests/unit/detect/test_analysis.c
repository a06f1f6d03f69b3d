/*
 * The fault analysis on its own: a real state machine and registry, a fake
 * log (its proposals are applied to the machine when the test steps it, the
 * way raft commits them later) and a fake clock. What is checked is what
 * the log ends up holding: the fault type and severity the signals describe,
 * the mass-failure guard holding agents as suspect instead of failing half
 * the fleet, and flap damping sending a flapping agent to probation.
 */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <uv.h>

#include "analysis_world.h"
#include "common/log.h"
#include "fsm_cmds.h"
#include "replica/replica.h"

#define MS 1000000ULL

/* ---- the fake clock -------------------------------------------------------------- */

static uint64_t fake_now = 1000 * MS;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static void step(struct fake_log *l)
{
    fake_log_step(l);
}

/* ---- the fixture ----------------------------------------------------------------- */

static int setup(void **state)
{
    struct analysis_world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    analysis_world_init(w, fake_clock);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct analysis_world *w = *state;
    analysis_world_close(w);
    free(w);
    return 0;
}

/* Registers `id` (with a health URL when `probe`) and its soft state. */
static void agent(struct analysis_world *w, const char *id, bool probe)
{
    analysis_world_agent(w, id, probe, fake_now);
}

/* One observation, in a batch of its own (judged at once). */
static void observe(struct analysis_world *w, const char *id, int signal, int verdict, int cause)
{
    struct rd_observation o = {
        .node_id = id, .epoch = 1, .signal = signal, .verdict = verdict, .probe_cause = cause};
    assert_true(rd_analysis_observe(&w->a, "test", &o));
    rd_analysis_flush(&w->a);
}

static int state_of(struct analysis_world *w, const char *id)
{
    const struct rd_node *n = rd_fsm_node(&w->fsm, id, strlen(id));
    assert_non_null(n);
    return n->state;
}

/* The newest fault record of `id`, or NULL. */
static const struct rd_fault *fault_of(struct analysis_world *w, const char *id)
{
    for (size_t i = w->fsm.n_faults; i-- > 0;)
        if (strcmp(w->fsm.faults[i]->node_id, id) == 0)
            return w->fsm.faults[i];
    return NULL;
}

/* ---- classification ---------------------------------------------------------------- */

/* Suspect on late heartbeats, then failed once the signals say so: the
 * record's type and severity are what the signals describe. */
static void fail_with(struct analysis_world *w, const char *id, bool probe, int probe_verdict,
                      int cause, double cpu)
{
    agent(w, id, probe);
    observe(w, id, RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    step(&w->log);
    assert_int_equal(state_of(w, id), RD_NODE_SUSPECT);
    if (cpu > 0) {
        struct rd_soft *s = rd_registry_get(&w->registry, id, strlen(id));
        struct rd_node_metrics m = {.present = true, .cpu = cpu, .mem = 0.1};
        rd_registry_heartbeat(&w->registry, s, fake_now, 0, 0, &m);
    }
    if (probe_verdict != RD_VERDICT_OK)
        observe(w, id, RD_SIG_PROBE, probe_verdict, cause);
    observe(w, id, RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    step(&w->log);
}

static void test_signals_name_the_fault(void **state)
{
    struct analysis_world *w = *state;
    static const struct {
        const char *id;
        bool probe;
        int probe_verdict, cause;
        double cpu;
        int type, sev;
    } cases[] = {
        /* Nothing answers the probe: the process is gone. */
        {"crash", true, RD_VERDICT_FAILED, RD_PROBE_REFUSED, 0, RD_FAULT_CRASH, RD_SEV_CRITICAL},
        /* No probe to ask: silence is a crash too. */
        {"silent", false, RD_VERDICT_OK, 0, 0, RD_FAULT_CRASH, RD_SEV_CRITICAL},
        /* The probe times out: hung, or overloaded by its own report. */
        {"hung", true, RD_VERDICT_FAILED, RD_PROBE_TIMEOUT, 0, RD_FAULT_HANG, RD_SEV_MAJOR},
        {"busy", true, RD_VERDICT_FAILED, RD_PROBE_TIMEOUT, 0.97, RD_FAULT_OVERLOAD, RD_SEV_MAJOR},
        /* It answers, with an error status: degraded. */
        {"sick", true, RD_VERDICT_FAILED, RD_PROBE_STATUS, 0, RD_FAULT_DEGRADED, RD_SEV_MAJOR},
        /* Unreachable host: the network. */
        {"cut", true, RD_VERDICT_FAILED, RD_PROBE_NETWORK, 0, RD_FAULT_NETWORK, RD_SEV_MAJOR},
    };
    /* Enough agents that a handful failing stays below the guard's share. */
    char id[16];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "fine-%02d", i);
        agent(w, id, true);
    }
    for (size_t i = 0; i < RD_ARRAY_SIZE(cases); i++) {
        fail_with(w, cases[i].id, cases[i].probe, cases[i].probe_verdict, cases[i].cause,
                  cases[i].cpu);
        assert_int_equal(state_of(w, cases[i].id), RD_NODE_FAILED);
        const struct rd_fault *f = fault_of(w, cases[i].id);
        assert_non_null(f);
        if (f->type != cases[i].type || f->severity != cases[i].sev)
            fail_msg("%s: %s/%s, expected %s/%s", cases[i].id, rd_fault_type_name(f->type),
                     rd_severity_name(f->severity), rd_fault_type_name(cases[i].type),
                     rd_severity_name(cases[i].sev));
    }
    assert_false(w->a.partition_suspected);
}

/* Heartbeats stop while the probe still answers: the probe gets one round
 * (heartbeat interval + health check timeout) before anything is decided,
 * then it is the network, not a crash. */
static void test_probe_gets_a_round_before_a_network_fault(void **state)
{
    struct analysis_world *w = *state;
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "fine-%02d", i);
        agent(w, id, true);
    }
    agent(w, "island", true);
    observe(w, "island", RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    step(&w->log);
    observe(w, "island", RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    step(&w->log);
    assert_int_equal(state_of(w, "island"), RD_NODE_SUSPECT); /* held: the probe's round */
    const struct rd_config *c = &w->cfg;
    fake_now += (c->fault_tolerance.detection.heartbeat_interval_ms +
                 c->fault_tolerance.detection.health_check_timeout_ms) *
                    MS +
                MS;
    rd_analysis_tick(&w->a);
    step(&w->log);
    assert_int_equal(state_of(w, "island"), RD_NODE_FAILED);
    const struct rd_fault *f = fault_of(w, "island");
    assert_int_equal(f->type, RD_FAULT_NETWORK);
    assert_int_equal(f->severity, RD_SEV_MAJOR);
}

/* ---- the mass-failure guard ------------------------------------------------------------ */

/* Six agents (min_nodes 4, share 50 %): two fail; the third in trouble
 * makes it half the fleet, so a partition is suspected, it is held as
 * suspect, and nothing more is failed until the agents come back. */
static void test_guard_holds_half_the_fleet(void **state)
{
    struct analysis_world *w = *state;
    assert_int_equal(w->cfg.fault_tolerance.partition.min_nodes, 4);
    assert_int_equal(w->cfg.fault_tolerance.partition.mass_failure_share, 50);
    const char *ids[] = {"g0", "g1", "g2", "g3", "g4", "g5"};
    for (int i = 0; i < 6; i++)
        agent(w, ids[i], false);
    for (int i = 0; i < 4; i++) {
        observe(w, ids[i], RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
        step(&w->log);
    }
    assert_int_equal(state_of(w, "g0"), RD_NODE_FAILED);
    assert_int_equal(state_of(w, "g1"), RD_NODE_FAILED);
    assert_int_equal(state_of(w, "g2"), RD_NODE_SUSPECT);
    assert_int_equal(state_of(w, "g3"), RD_NODE_SUSPECT);
    assert_true(w->a.partition_suspected);
    assert_true(w->a.guard_blocked_total >= 2);
    uint64_t suspected_at = w->a.partition_since_ns;
    assert_int_equal(w->a.partition_merge.count, 0);
    /* The partition is on record, naming the agents that tripped it. */
    const struct rd_fault *p = fault_of(w, "");
    assert_non_null(p);
    assert_int_equal(p->type, RD_FAULT_PARTITION);
    assert_non_null(strstr(p->metadata_json, "\"affected_nodes\":3"));
    /* Still failing, ticks go by: held, not failed. */
    fake_now += 5000 * MS;
    rd_analysis_tick(&w->a);
    step(&w->log);
    assert_int_equal(state_of(w, "g2"), RD_NODE_SUSPECT);
    /* They come back: the guard's window passes and the partition closes. */
    observe(w, "g2", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    observe(w, "g3", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    step(&w->log);
    fake_now += w->cfg.fault_tolerance.partition.mass_failure_window_ms * MS + MS;
    rd_analysis_tick(&w->a);
    step(&w->log);
    assert_false(w->a.partition_suspected);
    assert_int_not_equal(state_of(w, "g2"), RD_NODE_FAILED);
    /* Its merge time, from suspected to over, by the analysis's clock. */
    assert_int_equal(w->a.partition_merge.count, 1);
    double took = (double)(fake_now - suspected_at) / 1e9;
    assert_true(took > 5.0);
    assert_true(w->a.partition_merge.sum > took - 1e-6 && w->a.partition_merge.sum < took + 1e-6);
}

/* A partition as the storm saw it (issue 16): eight agents go silent at
 * once; the log commits slowly, so none of their `suspect` transitions has
 * committed when the heartbeat detector already says failed. The guard
 * counts what the detectors see: it trips on the fourth agent in trouble
 * (50 %) with no transition committed, and none of them is failed. It used
 * to count committed suspects only: agents went from alive to failed, one
 * guard event each, and half the fleet was failed before it tripped. */
static void test_guard_trips_before_suspects_commit(void **state)
{
    struct analysis_world *w = *state;
    const char *ids[] = {"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"};
    for (int i = 0; i < 8; i++)
        agent(w, ids[i], false);
    for (int i = 0; i < 3; i++)
        observe(w, ids[i], RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    assert_false(w->a.partition_suspected); /* 3 of 8: below the share */
    assert_int_equal(w->a.troubled, 3);
    /* The line that says it tripped names what the agents are troubled by. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    rd_log_set_fd(fds[1]);
    observe(w, ids[3], RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    rd_log_set_fd(-1);
    char line[2048];
    ssize_t got = read(fds[0], line, sizeof(line) - 1);
    close(fds[0]);
    close(fds[1]);
    assert_true(got > 0);
    line[got] = '\0';
    assert_non_null(strstr(line, "event=partition_suspected affected=4 suspect=0 total=8 "
                                 "troubled=4 hb_late=4 hb_silent=0 probe_bad=0 metrics_bad=0"));
    assert_int_equal(w->fsm.count_by_state[RD_NODE_SUSPECT], 0); /* nothing committed */
    assert_true(w->a.partition_suspected);
    /* An agent the detector fails outright, before any suspect committed. */
    observe(w, ids[4], RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    step(&w->log);
    for (int i = 0; i < 4; i++)
        observe(w, ids[i], RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    step(&w->log);
    for (int i = 0; i < 5; i++)
        assert_int_equal(state_of(w, ids[i]), RD_NODE_SUSPECT);
    const struct rd_fault *p = fault_of(w, "");
    assert_non_null(p);
    assert_int_equal(p->type, RD_FAULT_PARTITION);
    assert_non_null(strstr(p->metadata_json, "\"affected_nodes\":4"));
    /* Committed suspects are the state machine's count, not also troubled. */
    assert_int_equal(w->a.troubled, 0);
    assert_int_equal(w->fsm.count_by_state[RD_NODE_SUSPECT], 5);
}

/* A detector check that finds many agents failed at once (issue 16: a
 * partition cuts off more than the guard's share of the fleet, and one
 * heartbeat check reports them all failed, none suspect first). The guard
 * counts the whole batch before any of it is judged: it trips on the first
 * agent judged, and none is failed. Judged as each report came, the guard
 * counted one more agent per report and the first 9 were failed (73 of 647
 * in a 2,000-agent storm). */
enum { FLEET = 20, CUT = 12 }; /* 60 %: above the 50 % share */

static void cut_off_report(struct analysis_world *w)
{
    char id[16];
    for (int i = 0; i < CUT; i++) {
        snprintf(id, sizeof(id), "cut-%02d", i);
        struct rd_observation o = {
            .node_id = id, .epoch = 1, .signal = RD_SIG_HEARTBEAT, .verdict = RD_VERDICT_FAILED};
        assert_true(rd_analysis_observe(&w->a, "test", &o));
    }
}

static void cut_off_fleet(struct analysis_world *w)
{
    char id[16];
    for (int i = 0; i < FLEET; i++) {
        snprintf(id, sizeof(id), "cut-%02d", i);
        agent(w, id, false);
    }
}

/* No agent failed, each held as suspect, the partition on record. */
static void assert_cut_off_held(struct analysis_world *w)
{
    char id[16];
    step(&w->log);
    for (int i = 0; i < CUT; i++) {
        snprintf(id, sizeof(id), "cut-%02d", i);
        assert_int_equal(state_of(w, id), RD_NODE_SUSPECT);
    }
    assert_int_equal(w->fsm.count_by_state[RD_NODE_FAILED], 0);
    assert_true(w->a.partition_suspected);
    assert_true(w->a.guard_blocked_total >= CUT);
    const struct rd_fault *p = fault_of(w, "");
    assert_non_null(p);
    assert_int_equal(p->type, RD_FAULT_PARTITION);
    assert_non_null(strstr(p->metadata_json, "\"affected_nodes\":12"));
}

static void test_guard_counts_a_batch_before_judging_it(void **state)
{
    struct analysis_world *w = *state;
    cut_off_fleet(w);
    cut_off_report(w);
    /* Counted, not judged yet. */
    assert_int_equal(w->a.troubled, CUT);
    assert_int_equal(w->log.proposals, 0);
    rd_analysis_flush(&w->a);
    assert_cut_off_held(w);
}

/* The same batch reported by a detector's check on the loop (a timer's
 * callback): the loop flushes it in the same turn, after the callback, with
 * no wait for the analysis's tick or any I/O. */
struct check {
    struct analysis_world *w;
    bool fired;
    uint64_t proposals_in_cb;
};

static void check_cb(uv_timer_t *t)
{
    struct check *c = t->data;
    cut_off_report(c->w);
    c->proposals_in_cb = c->w->log.proposals;
    c->fired = true;
}

static void test_loop_flushes_a_batch_in_its_turn(void **state)
{
    struct analysis_world *w = *state;
    cut_off_fleet(w);
    uv_update_time(&w->loop);
    uv_timer_again(&w->a.tick); /* its tick is 100 ms from now */
    static struct check c;
    static uv_timer_t t; /* outlives a failed assertion: teardown closes the loop */
    c = (struct check){.w = w};
    uv_timer_init(&w->loop, &t);
    t.data = &c;
    uv_timer_start(&t, check_cb, 0, 0);
    /* One turn, which must not wait (the tick would judge them 100 ms on). */
    uv_run(&w->loop, UV_RUN_ONCE);
    assert_true(c.fired);
    assert_true(w->log.proposals > 0);
    assert_cut_off_held(w);
    assert_int_equal(c.proposals_in_cb, 0); /* judged after the callback, not in it */
    assert_int_equal(w->a.passes_total, 0); /* in that turn, not by the tick */
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&w->loop, UV_RUN_NOWAIT);
}

/* A partition heals one agent at a time: once enough are back the share
 * drops below the threshold and the guard lets go while the last held
 * agents are still silent. They get one lease of grace (they used to be
 * failed in the closing tick: 71 of 143 in the storm); one that stays
 * silent past it is failed. */
static void test_partition_heal_gives_held_agents_a_lease(void **state)
{
    struct analysis_world *w = *state;
    const char *ids[] = {"h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7"};
    for (int i = 0; i < 8; i++)
        agent(w, ids[i], false);
    for (int i = 0; i < 4; i++)
        observe(w, ids[i], RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    step(&w->log);
    for (int i = 0; i < 4; i++)
        observe(w, ids[i], RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    step(&w->log);
    assert_true(w->a.partition_suspected);
    for (int i = 0; i < 4; i++)
        assert_int_equal(state_of(w, ids[i]), RD_NODE_SUSPECT);
    /* The heal: h0 heartbeats first; 3 of 8 is below the share. */
    fake_now += 8000 * MS;
    observe(w, "h0", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    step(&w->log);
    fake_now += w->cfg.fault_tolerance.partition.mass_failure_window_ms * MS;
    rd_analysis_tick(&w->a);
    step(&w->log);
    assert_false(w->a.partition_suspected);
    for (int i = 1; i < 4; i++) /* still silent, not failed */
        assert_int_equal(state_of(w, ids[i]), RD_NODE_SUSPECT);
    observe(w, "h1", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    observe(w, "h2", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    step(&w->log);
    fake_now += rd_config_lease_ms(&w->cfg) * MS / 2;
    rd_analysis_tick(&w->a);
    step(&w->log);
    assert_int_equal(state_of(w, "h1"), RD_NODE_ALIVE);
    assert_int_equal(state_of(w, "h2"), RD_NODE_ALIVE);
    assert_int_equal(state_of(w, "h3"), RD_NODE_SUSPECT);
    /* h3 stays silent past its lease: judged as usual. */
    fake_now += rd_config_lease_ms(&w->cfg) * MS;
    rd_analysis_tick(&w->a);
    step(&w->log);
    assert_int_equal(state_of(w, "h3"), RD_NODE_FAILED);
}

/* The count of troubled working agents follows the verdicts and the
 * state: an agent that heartbeats again, or that failed, is not counted
 * (else the guard would never lift); an agent whose failure is decided is,
 * until the failure applies and becomes a guard event (never both). */
static void test_guard_troubled_count_follows_the_agents(void **state)
{
    struct analysis_world *w = *state;
    w->cfg.fault_tolerance.partition.min_nodes = 100; /* the guard stays out of it */
    const char *ids[] = {"t0", "t1", "t2"};
    for (int i = 0; i < 3; i++)
        agent(w, ids[i], false);
    observe(w, "t0", RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    observe(w, "t1", RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    assert_int_equal(w->a.troubled, 2);
    observe(w, "t0", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0); /* before its suspect commits */
    step(&w->log);
    assert_int_equal(w->a.troubled, 0);
    assert_int_equal(w->fsm.count_by_state[RD_NODE_SUSPECT], 1); /* t1 */
    /* Failed outright from alive: troubled until its failure applies,
     * then one guard event. */
    observe(w, "t2", RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    assert_int_equal(w->a.troubled, 1);
    assert_int_equal(w->a.n_events, 0);
    step(&w->log);
    assert_int_equal(state_of(w, "t2"), RD_NODE_FAILED);
    assert_int_equal(w->a.troubled, 0);
    assert_int_equal(w->a.n_events, 1);
    /* A new leadership starts afresh. */
    observe(w, "t0", RD_SIG_PROBE, RD_VERDICT_SUSPECT, RD_PROBE_TIMEOUT);
    assert_int_equal(w->a.troubled, 1);
    rd_analysis_reset(&w->a);
    assert_int_equal(w->a.troubled, 0);
    step(&w->log); /* its suspect commits, then (verdicts forgotten) it is ok again */
    assert_int_equal(w->a.troubled, 0);
}

/* The guard through a hung disk (the failure storm with STALL_ALL=1): the
 * leader's log refuses every proposal at once (RD_EIO, its storage gate)
 * for seconds while agents fail. `ticks` ticks of 100 ms go by; each
 * opening of the partition (a new partition_since_ns) is counted in
 * `opens`, each end in the merge histogram. */
static void ticks_while_stalled(struct analysis_world *w, int ticks, unsigned *opens)
{
    uint64_t since = w->a.partition_suspected ? w->a.partition_since_ns : 0;
    for (int i = 0; i < ticks; i++) {
        fake_now += 100 * MS;
        rd_analysis_tick(&w->a);
        step(&w->log);
        if (w->a.partition_suspected && w->a.partition_since_ns != since) {
            since = w->a.partition_since_ns;
            (*opens)++;
        }
    }
}

static void fleet(struct analysis_world *w, int n)
{
    char id[16];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "a-%02d", i);
        agent(w, id, false);
    }
}

static const char *fleet_id(int i)
{
    static char id[16];
    snprintf(id, sizeof(id), "a-%02d", i);
    return id;
}

/* Nine agents of twenty in trouble (45 %, the share 50 %): eight held as
 * suspect, and one that fails while the disk hangs, its failure refused
 * tick after tick. No partition. The agent was counted twice when judged
 * (as its failure's guard event and as the agent judged) and once at the
 * tick: the judging opened the partition and the next tick closed it, a
 * partition_suspected / partition_over pair every 100 ms (6 s of them in
 * the storm). */
static void test_guard_steady_at_its_boundary_while_the_disk_hangs(void **state)
{
    struct analysis_world *w = *state;
    fleet(w, 20);
    for (int i = 0; i < 8; i++)
        observe(w, fleet_id(i), RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    step(&w->log);
    assert_int_equal(w->fsm.count_by_state[RD_NODE_SUSPECT], 8);
    w->log.stalled = true;
    observe(w, fleet_id(8), RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    unsigned opens = 0;
    ticks_while_stalled(w, 60, &opens);
    assert_true(w->log.stalled_refusals >= 60); /* judged again each tick */
    assert_int_equal(opens, 0);
    assert_int_equal(w->a.partition_merge.count, 0);
    assert_false(w->a.partition_suspected);
    assert_int_equal(w->a.guard_bad, 9);
    /* The disk is back: the failure is proposed, and applies. */
    w->log.stalled = false;
    ticks_while_stalled(w, 1, &opens);
    assert_int_equal(state_of(w, fleet_id(8)), RD_NODE_FAILED);
    assert_int_equal(opens, 0);
    assert_int_equal(w->a.guard_bad, 9); /* a failure within the window now */
}

/* Three agents of twenty fail while the disk hangs for 15 s (past the
 * guard's 10-s window). No partition: each judging of an agent whose
 * failure was refused recorded it as a guard event once more, three more
 * events a tick, and the guard tripped on three agents; once the first
 * events aged out it closed and opened again every tick. */
static void test_refused_failures_count_once(void **state)
{
    struct analysis_world *w = *state;
    fleet(w, 20);
    w->log.stalled = true;
    for (int i = 0; i < 3; i++)
        observe(w, fleet_id(i), RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    unsigned opens = 0;
    ticks_while_stalled(w, 150, &opens);
    assert_int_equal(opens, 0);
    assert_int_equal(w->a.partition_merge.count, 0);
    assert_false(w->a.partition_suspected);
    assert_int_equal(w->a.guard_bad, 3);
    w->log.stalled = false;
    ticks_while_stalled(w, 1, &opens);
    for (int i = 0; i < 3; i++)
        assert_int_equal(state_of(w, fleet_id(i)), RD_NODE_FAILED);
    assert_int_equal(opens, 0);
}

/* Half the fleet fails while the disk hangs: the guard trips once and
 * holds through the stall (no end, no new opening), its record filed when
 * the disk is back; it ends once, when the agents come back. */
static void test_guard_holds_once_through_a_hung_disk(void **state)
{
    struct analysis_world *w = *state;
    fleet(w, 20);
    w->log.stalled = true;
    for (int i = 0; i < 10; i++)
        observe(w, fleet_id(i), RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    assert_true(w->a.partition_suspected);
    unsigned opens = 1;
    ticks_while_stalled(w, 150, &opens);
    assert_int_equal(opens, 1);
    assert_int_equal(w->a.partition_merge.count, 0);
    w->log.stalled = false;
    ticks_while_stalled(w, 1, &opens);
    const struct rd_fault *p = fault_of(w, "");
    assert_non_null(p);
    assert_int_equal(p->status, RD_FAULT_OPEN_ST);
    for (int i = 0; i < 10; i++)
        assert_int_equal(state_of(w, fleet_id(i)), RD_NODE_SUSPECT);
    /* The heal: the first agent back ends it at the next tick. */
    observe(w, fleet_id(0), RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    step(&w->log);
    ticks_while_stalled(w, 1, &opens);
    assert_false(w->a.partition_suspected);
    assert_int_equal(w->a.partition_merge.count, 1);
    assert_int_equal(opens, 1);
}

/* A failure proposed while the disk hangs (taken by the log, not
 * committed) still counts once the guard's window has passed: the agent is
 * in trouble until its failure applies. It counted nowhere once its event
 * aged out, and nine more agents in trouble (ten of twenty with it) were
 * failed one after the other instead of tripping the guard. */
static void test_failure_in_flight_counts_past_the_window(void **state)
{
    struct analysis_world *w = *state;
    fleet(w, 20);
    observe(w, fleet_id(0), RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    assert_int_equal(w->log.n, 1); /* its failure, never committed (no step) */
    fake_now += w->cfg.fault_tolerance.partition.mass_failure_window_ms * MS + MS;
    rd_analysis_tick(&w->a);
    assert_false(w->a.partition_suspected);
    for (int i = 1; i < 10; i++) {
        struct rd_observation o = {.node_id = fleet_id(i),
                                   .epoch = 1,
                                   .signal = RD_SIG_HEARTBEAT,
                                   .verdict = RD_VERDICT_FAILED};
        assert_true(rd_analysis_observe(&w->a, "test", &o));
    }
    rd_analysis_flush(&w->a);
    assert_true(w->a.partition_suspected);
    step(&w->log);
    assert_int_equal(state_of(w, fleet_id(0)), RD_NODE_FAILED);
    for (int i = 1; i < 10; i++)
        assert_int_equal(state_of(w, fleet_id(i)), RD_NODE_SUSPECT);
    /* Applied now, its failure is dated from its decision: older than the
     * window, it is not a recent one (the nine held agents are). */
    rd_analysis_tick(&w->a);
    assert_int_equal(w->a.n_events, 0);
    assert_int_equal(w->a.guard_bad, 9);
    step(&w->log); /* the partition's resolve (9 of 20: below the share) */
    assert_false(w->a.partition_suspected);
}

/* ---- flap damping ---------------------------------------------------------------------- */

/* An agent that goes suspect and back flap_threshold times within the
 * window is flapping: back to probation, not alive, and it needs
 * recovery_threshold x flap_penalty good heartbeats. Once the window has
 * passed, a recovery is plain again. */
static void test_flapping_agent_goes_to_probation(void **state)
{
    struct analysis_world *w = *state;
    const struct rd_config *c = &w->cfg;
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "fine-%02d", i);
        agent(w, id, false);
    }
    agent(w, "flappy", false);
    unsigned n = c->fault_tolerance.detection.flap_threshold;
    for (unsigned i = 0; i < n; i++) {
        observe(w, "flappy", RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
        step(&w->log);
        assert_int_equal(state_of(w, "flappy"), RD_NODE_SUSPECT);
        fake_now += 1000 * MS;
        observe(w, "flappy", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
        step(&w->log);
        int want = i + 1 < n ? RD_NODE_ALIVE : RD_NODE_PROBATION;
        assert_int_equal(state_of(w, "flappy"), want);
    }
    /* Probation: heartbeats count from entering it, recovery_threshold x
     * flap_penalty of them. */
    unsigned need =
        c->fault_tolerance.detection.recovery_threshold * c->fault_tolerance.detection.flap_penalty;
    struct rd_soft *s = rd_registry_get(&w->registry, "flappy", 6);
    const struct rd_node *nd = rd_fsm_node(&w->fsm, "flappy", 6);
    rd_registry_state_entered(&w->registry, s);
    for (unsigned i = 0; i < need; i++) {
        assert_int_equal(state_of(w, "flappy"), RD_NODE_PROBATION);
        rd_registry_heartbeat(&w->registry, s, fake_now, 0, 0, NULL);
        rd_analysis_heartbeat(&w->a, nd, s);
        step(&w->log);
    }
    assert_int_equal(state_of(w, "flappy"), RD_NODE_ALIVE);
    /* The window passes: one more trouble and recovery is plain. */
    fake_now += c->fault_tolerance.detection.flap_window_ms * MS + MS;
    observe(w, "flappy", RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    step(&w->log);
    observe(w, "flappy", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    step(&w->log);
    assert_int_equal(state_of(w, "flappy"), RD_NODE_ALIVE);
}

/* A replica that leads again forgets the verdicts of its previous
 * leadership, as its detectors do (they start afresh and report only
 * changes): a node it left suspect comes back with its heartbeats instead
 * of staying suspect, counted by the guard, for good. Found by the
 * deterministic simulation (tests/sim, seed 92 before the fix). */
static void test_new_leadership_forgets_old_verdicts(void **state)
{
    struct analysis_world *w = *state;
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "fine-%02d", i);
        agent(w, id, false);
    }
    agent(w, "late", false);
    observe(w, "late", RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    step(&w->log);
    assert_int_equal(state_of(w, "late"), RD_NODE_SUSPECT);
    /* Leadership lost, then won again: engine/core's on_role resets and
     * starts the analysis. */
    rd_analysis_reset(&w->a);
    rd_analysis_start(&w->a);
    /* Its heartbeats arrive; the new detectors see nothing to report. */
    fake_now += 100 * MS;
    struct rd_heartbeat_in hb = {.node_id = "late", .id_len = 4, .epoch = 1, .progress = -1};
    const struct rd_node *n;
    struct rd_soft *s;
    assert_int_equal(rd_analysis_take_heartbeat(&w->a, &hb, &n, &s), 0);
    step(&w->log);
    assert_int_equal(state_of(w, "late"), RD_NODE_ALIVE);
}

/* The tick looks only at the agents that may need it (issue 16: a walk
 * over all 10,000 agents ten times a second, a table lookup each, was 4%
 * of the storm's leader), and still judges the agent no observation
 * wakes: one whose grace ran out while its heartbeats were already late.
 * Every RD_ANALYSIS_WALK_TICKS ticks it walks them all, a backstop that
 * finds an agent the list lost. */
static void test_tick_looks_at_the_watched_only(void **state)
{
    struct analysis_world *w = *state;
    enum { N = 500 };
    w->cfg.fault_tolerance.partition.min_nodes = 1000; /* the guard stays out of it */
    char id[16];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "w-%03d", i);
        agent(w, id, false);
    }
    rd_analysis_tick(&w->a); /* a new leadership's first tick walks them all */
    assert_int_equal(w->a.walks_total, 1);
    assert_int_equal(w->a.n_watch, 0); /* all clean */
    /* Late heartbeats within the agent's grace: not judged yet. */
    struct rd_soft *soft = rd_registry_get(&w->registry, "w-007", 5);
    soft->grace_until_ns = fake_now + 2000 * MS;
    observe(w, "w-007", RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    step(&w->log);
    assert_int_equal(state_of(w, "w-007"), RD_NODE_ALIVE);
    assert_int_equal(w->a.n_watch, 1);
    for (int t = 1; t <= 20; t++) {
        fake_now += 100 * MS;
        rd_analysis_tick(&w->a);
        step(&w->log);
        /* Its grace ends at the 20th tick, which judges it. */
        assert_int_equal(state_of(w, "w-007"), t < 20 ? RD_NODE_ALIVE : RD_NODE_SUSPECT);
    }
    assert_int_equal(w->a.walks_total, 1);
    assert_int_equal(w->a.n_watch, 1); /* suspect: looked at until it is not */
    /* Its heartbeats come back: alive again, and out of the list. */
    observe(w, "w-007", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    step(&w->log);
    assert_int_equal(state_of(w, "w-007"), RD_NODE_ALIVE);
    rd_analysis_tick(&w->a);
    assert_int_equal(w->a.n_watch, 0);
    /* Another agent late within its grace, and the list loses it (as if
     * it could not grow): its grace runs out unseen until the backstop's
     * walk, whose tick judges it. */
    soft = rd_registry_get(&w->registry, "w-008", 5);
    soft->grace_until_ns = fake_now + 500 * MS;
    observe(w, "w-008", RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    struct rd_detect *d = &w->a.by_slot[soft->slot];
    assert_true(d->watched);
    w->a.n_watch = 0;
    d->watched = false;
    while (w->a.walks_total == 1) {
        assert_int_equal(state_of(w, "w-008"), RD_NODE_ALIVE);
        fake_now += 100 * MS;
        rd_analysis_tick(&w->a);
        step(&w->log);
    }
    assert_int_equal(state_of(w, "w-008"), RD_NODE_SUSPECT);
    assert_true(d->watched);
}

/* A leadership transfer (issue 16's storm): raft refuses every entry for up
 * to an election timeout while the leader still leads, so a turn of the
 * loop answers each waiting proposal "not the leader". A refused transition
 * is judged again by the next tick, not proposed again from its refusal:
 * the refused group of 256 used to refill itself in the same turn, every
 * turn of the transfer (and once overran the group: 14c1099). */
static void test_refused_transitions_wait_for_the_next_tick(void **state)
{
    struct analysis_world *w = *state;
    enum { N = 300 };
    w->cfg.fault_tolerance.partition.min_nodes = 1000; /* the guard stays out of the count */
    char id[16];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "t-%03d", i);
        agent(w, id, false);
    }
    w->log.refusing = true;
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "t-%03d", i);
        observe(w, id, RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    }
    assert_int_equal(w->log.proposals, N);
    /* Turns of the loop go by: each proposal is refused once, none again. */
    for (int turn = 0; turn < 3; turn++)
        step(&w->log);
    assert_int_equal(w->a.proposals_refused, N);
    assert_int_equal(w->log.proposals, N);
    assert_int_equal(w->log.n, 0);
    /* Each tick of the transfer judges each agent once. */
    fake_now += 100 * MS;
    rd_analysis_tick(&w->a);
    assert_int_equal(w->log.proposals, 2 * N);
    step(&w->log);
    assert_int_equal(w->log.proposals, 2 * N);
    /* The transfer ends (given up: this replica still leads): the next
     * tick's transitions commit, every agent's once. */
    w->log.refusing = false;
    fake_now += 100 * MS;
    rd_analysis_tick(&w->a);
    step(&w->log);
    assert_int_equal(w->log.proposals, 3 * N);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "t-%03d", i);
        assert_int_equal(state_of(w, id), RD_NODE_SUSPECT);
    }
}

/* The partition's record during a leadership transfer: its open and its
 * resolve are refused like every entry, and proposed again by the ticks
 * after the transfer (the guard held the agents all along). The refused
 * open was lost: the guard held them, with no record on file. */
static void test_partition_record_outlasts_a_transfer(void **state)
{
    struct analysis_world *w = *state;
    const char *ids[] = {"p0", "p1", "p2", "p3", "p4", "p5"};
    for (int i = 0; i < 6; i++)
        agent(w, ids[i], false);
    w->log.refusing = true;
    for (int i = 0; i < 4; i++)
        observe(w, ids[i], RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    assert_true(w->a.partition_suspected);
    step(&w->log);
    fake_now += 100 * MS;
    rd_analysis_tick(&w->a);
    step(&w->log);
    assert_null(fault_of(w, ""));
    /* The transfer is over: the next tick files the partition (its
     * transitions too, held as suspect). */
    w->log.refusing = false;
    fake_now += 100 * MS;
    rd_analysis_tick(&w->a);
    step(&w->log);
    const struct rd_fault *p = fault_of(w, "");
    assert_non_null(p);
    assert_int_equal(p->type, RD_FAULT_PARTITION);
    assert_int_equal(p->status, RD_FAULT_OPEN_ST);
    for (int i = 0; i < 4; i++)
        assert_int_equal(state_of(w, ids[i]), RD_NODE_SUSPECT);
    /* They come back during another transfer: the record's resolve is
     * refused, then proposed again. */
    for (int i = 0; i < 4; i++)
        observe(w, ids[i], RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    step(&w->log);
    w->log.refusing = true;
    fake_now += w->cfg.fault_tolerance.partition.mass_failure_window_ms * MS + MS;
    rd_analysis_tick(&w->a);
    assert_false(w->a.partition_suspected);
    step(&w->log);
    w->log.refusing = false;
    fake_now += 100 * MS;
    rd_analysis_tick(&w->a);
    step(&w->log);
    p = fault_of(w, "");
    assert_non_null(p);
    assert_int_not_equal(p->status, RD_FAULT_OPEN_ST);
    assert_int_equal(w->a.partition_merge.count, 1);
}

/* ---- what placement keeps off ------------------------------------------------------ */

static bool troubled(struct analysis_world *w, const char *id)
{
    const struct rd_node *n = rd_fsm_node(&w->fsm, id, strlen(id));
    assert_non_null(n);
    return rd_analysis_troubled(&w->a, n);
}

/* rd_analysis_troubled (placement keeps off such agents, recover/placement.c):
 * from a detector's verdict on, while it is not ok, and while a transition
 * to suspect or failed is on its way through the log even when the verdict
 * has cleared meanwhile; not for a transition back to alive, a refused
 * proposal whose verdict cleared, a new epoch, or a replica that does not
 * lead. */
static void test_troubled_covers_verdicts_and_failures_in_flight(void **state)
{
    struct analysis_world *w = *state;
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "fine-%02d", i);
        agent(w, id, false);
    }
    agent(w, "x", true);
    assert_false(troubled(w, "x")); /* nothing observed */
    observe(w, "x", RD_SIG_HEARTBEAT, RD_VERDICT_SUSPECT, 0);
    assert_int_equal(state_of(w, "x"), RD_NODE_ALIVE); /* not committed yet */
    assert_true(troubled(w, "x"));
    step(&w->log);
    assert_int_equal(state_of(w, "x"), RD_NODE_SUSPECT);
    observe(w, "x", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    assert_false(troubled(w, "x")); /* back to alive on its way: placeable */
    step(&w->log);
    assert_int_equal(state_of(w, "x"), RD_NODE_ALIVE);

    /* Failed, then a late heartbeat before the failure commits. */
    observe(w, "x", RD_SIG_HEARTBEAT, RD_VERDICT_FAILED, 0);
    observe(w, "x", RD_SIG_HEARTBEAT, RD_VERDICT_OK, 0);
    assert_true(troubled(w, "x"));
    step(&w->log);
    assert_int_equal(state_of(w, "x"), RD_NODE_FAILED);
    assert_false(troubled(w, "x")); /* the machine says it now: nothing in flight */

    /* Registered again (a new epoch): the old verdicts are not about it. */
    struct rd_cmd c = {.type = RD_CMD_NODE_REGISTER, .time_ms = 1};
    c.u.reg.node_id = RD_STR("x");
    c.u.reg.slots = 1;
    c.u.reg.labels_json = RD_STR("{}");
    c.u.reg.health_url = RD_STR("http://127.0.0.1:9/health");
    c.u.reg.address = RD_STR("");
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
    const struct rd_node *n = rd_fsm_node(&w->fsm, "x", 1);
    assert_non_null(rd_registry_touch(&w->registry, "x", 1, n->epoch, fake_now, 0));
    assert_false(troubled(w, "x"));

    /* The probe refused; the log refuses the failure (a transfer): the
     * verdict still holds it, until it clears. */
    struct rd_observation o = {.node_id = "x",
                               .epoch = n->epoch,
                               .signal = RD_SIG_PROBE,
                               .verdict = RD_VERDICT_FAILED,
                               .probe_cause = RD_PROBE_REFUSED};
    assert_true(rd_analysis_observe(&w->a, "test", &o));
    rd_analysis_flush(&w->a);
    w->log.refusing = true;
    step(&w->log);
    w->log.refusing = false;
    assert_int_equal(w->log.n, 0);
    assert_true(troubled(w, "x"));
    o.verdict = RD_VERDICT_OK;
    assert_true(rd_analysis_observe(&w->a, "test", &o));
    rd_analysis_flush(&w->a);
    assert_false(troubled(w, "x"));

    /* Not the leader any more: it knows nothing. */
    o.verdict = RD_VERDICT_FAILED;
    assert_true(rd_analysis_observe(&w->a, "test", &o));
    rd_analysis_flush(&w->a);
    assert_true(troubled(w, "x"));
    rd_analysis_stop(&w->a);
    assert_false(troubled(w, "x"));
    step(&w->log); /* its failure, proposed before: answered */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signals_name_the_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_gets_a_round_before_a_network_fault, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_guard_holds_half_the_fleet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_trips_before_suspects_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_counts_a_batch_before_judging_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_loop_flushes_a_batch_in_its_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_troubled_count_follows_the_agents, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_partition_heal_gives_held_agents_a_lease, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_flapping_agent_goes_to_probation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_leadership_forgets_old_verdicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_transitions_wait_for_the_next_tick, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_partition_record_outlasts_a_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_steady_at_its_boundary_while_the_disk_hangs,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_failures_count_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tick_looks_at_the_watched_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_holds_once_through_a_hung_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_in_flight_counts_past_the_window, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_troubled_covers_verdicts_and_failures_in_flight, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
