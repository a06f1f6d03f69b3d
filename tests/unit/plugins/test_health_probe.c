/*
 * The health_probe detector plugin (build/plugins/health_probe.so) against a
 * fake host: its timers are fired and its probes answered by the test, and
 * what it observes is checked verdict by verdict.
 */
#include "fake_host.h"

/* Every agent probed every interval (adaptive probing off): the verdict
 * logic on its own. */
static const char *cfg_basic[][2] = {
    {"interval", "1s"},
    {"idle_interval", "0ms"},
    {"failures_to_fail", "3"},
    {NULL, NULL},
};

/* Adaptive: idle agents every 10 s, watched ones every second; with the
 * fake host's heartbeat_interval of 1 s, late_after is 1.25 s. */
static const char *cfg_adaptive[][2] = {
    {"interval", "1s"},
    {"idle_interval", "10s"},
    {"failures_to_fail", "3"},
    {NULL, NULL},
};

#define SEC 1000000000ull

static struct rd_node_view node(const char *id, uint64_t epoch, const char *url)
{
    return (struct rd_node_view){
        .node_id = id,
        .epoch = epoch,
        .state = "alive",
        .health_url = url,
        .labels_json = "{}",
        .slots = 1,
    };
}

static void node_event(int event, const char *id, uint64_t epoch, const char *url)
{
    const struct rd_detector_ops *ops = g_fh.desc->ops;
    struct rd_node_view v = node(id, epoch, url);
    ops->on_node(g_fh.state, event, &v);
}

/* Fires the probe timer and returns the index of the request it sent. */
static size_t probe(void)
{
    size_t before = g_fh.n_http;
    fh_fire_all();
    assert_int_equal(g_fh.n_http, before + 1);
    return g_fh.n_http - 1;
}

static void check_obs(size_t i, int verdict, int cause, const char *detail)
{
    assert_true(i < g_fh.n_obs);
    const struct fh_obs *o = &g_fh.obs[i];
    assert_int_equal(o->signal, RD_SIG_PROBE);
    assert_int_equal(o->verdict, verdict);
    assert_int_equal(o->probe_cause, cause);
    if (detail)
        assert_string_equal(o->detail, detail);
}

static void state_event(const char *id, uint64_t epoch, const char *url, const char *st)
{
    const struct rd_detector_ops *ops = g_fh.desc->ops;
    struct rd_node_view v = node(id, epoch, url);
    v.state = st;
    ops->on_node(g_fh.state, RD_NODE_EV_STATE, &v);
}

/* A heartbeat of `id` arriving now, with metrics (cpu, error rate) and a
 * progress counter (-1: none) with one slot busy. */
static void heartbeat(const char *id, uint64_t epoch, double cpu, double err, double progress)
{
    const struct rd_detector_ops *ops = g_fh.desc->ops;
    struct rd_heartbeat_view hb = {
        .node_id = id,
        .epoch = epoch,
        .arrival_ns = g_fh.now_ns,
        .slots_used = 1,
        .has_metrics = true,
        .error_rate = err,
        .latency_ms = 10,
        .cpu = cpu,
        .mem = 0.2,
        .progress = progress,
    };
    ops->on_heartbeat(g_fh.state, &hb);
}

/* Fires the (one) timer at time `t` seconds (x 10: tenths) and says whether
 * that tick sent a probe. */
static bool tick_at(uint64_t tenths)
{
    g_fh.now_ns = tenths * (SEC / 10);
    size_t before = g_fh.n_http;
    fh_fire_all();
    return g_fh.n_http > before;
}

/* One agent "a" probed OK at 1 s: what the adaptive tests start from. */
static void start_one_ok(void)
{
    assert_int_equal(fh_init("health_probe", "probe", cfg_adaptive), 0);
    fh_start();
    node_event(RD_NODE_EV_ADDED, "a", 1, "http://a/health");
    /* The agent's tick, every interval, and the lateness check, every
     * fifth of the heartbeat interval. */
    assert_int_equal(fh_live_timers(), 2);
    assert_int_equal(g_fh.timers[0].repeat_ms, 200);
    assert_int_equal(g_fh.timers[1].repeat_ms, 1000);
    /* Nothing known of this epoch yet: the first tick probes. */
    assert_true(tick_at(10));
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    check_obs(0, RD_VERDICT_OK, RD_PROBE_NONE, NULL);
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_int_equal(fh_init("health_probe", "probe", cfg_basic), 0);
    assert_int_equal(g_fh.desc->kind, RD_PLUGIN_DETECTOR);
    const struct rd_detector_ops *ops = g_fh.desc->ops;
    assert_int_equal(ops->version, RD_DETECTOR_OPS_VERSION);
    assert_true(ops->size >= sizeof(struct rd_detector_ops));
    assert_non_null(ops->on_node);
    fh_destroy();
}

static void test_verdict_sequence(void **state)
{
    (void)state;
    assert_int_equal(fh_init("health_probe", "probe", cfg_basic), 0);
    fh_start();
    node_event(RD_NODE_EV_ADDED, "a-1", 1, "http://10.0.0.1:9000/health");
    node_event(RD_NODE_EV_ADDED, "no-url", 1, ""); /* never probed */
    assert_int_equal(fh_live_timers(), 1);
    const struct fh_timer *t = &g_fh.timers[0];
    assert_int_equal(t->repeat_ms, 1000);
    assert_true(t->first_ms < 1000);

    /* First success: OK, once. */
    size_t r = probe();
    assert_string_equal(g_fh.http[r].method, "GET");
    assert_string_equal(g_fh.http[r].url, "http://10.0.0.1:9000/health");
    assert_int_equal(g_fh.http[r].timeout_ms, 1000); /* detection.health_check_timeout */
    g_fh.now_ns = 5000000000ull;
    fh_answer(r, 200, RD_PROBE_NONE, NULL, 3);
    assert_int_equal(g_fh.n_obs, 1);
    check_obs(0, RD_VERDICT_OK, RD_PROBE_NONE, NULL);
    assert_string_equal(g_fh.obs[0].node_id, "a-1");
    assert_int_equal(g_fh.obs[0].epoch, 1);
    assert_true(g_fh.obs[0].value > 2.9 && g_fh.obs[0].value < 3.1);
    assert_int_equal(g_fh.obs[0].since_ns, 5000000000ull);

    /* Still fine: nothing new to say. */
    g_fh.now_ns = 6000000000ull;
    fh_answer(probe(), 200, RD_PROBE_NONE, NULL, 2);
    assert_int_equal(g_fh.n_obs, 1);

    /* The process is gone: SUSPECT, then FAILED after 3, both REFUSED; the
     * time of the last success travels along. */
    g_fh.now_ns = 7000000000ull;
    fh_answer(probe(), 0, RD_PROBE_REFUSED, "connection refused", 0);
    assert_int_equal(g_fh.n_obs, 2);
    check_obs(1, RD_VERDICT_SUSPECT, RD_PROBE_REFUSED, "connection refused");
    assert_int_equal(g_fh.obs[1].since_ns, 6000000000ull);
    fh_answer(probe(), 0, RD_PROBE_REFUSED, "connection refused", 0);
    assert_int_equal(g_fh.n_obs, 2);
    fh_answer(probe(), 0, RD_PROBE_REFUSED, "connection refused", 0);
    assert_int_equal(g_fh.n_obs, 3);
    check_obs(2, RD_VERDICT_FAILED, RD_PROBE_REFUSED, "connection refused");
    assert_int_equal(g_fh.obs[2].since_ns, 6000000000ull);
    fh_answer(probe(), 0, RD_PROBE_REFUSED, "connection refused", 0);
    assert_int_equal(g_fh.n_obs, 3);

    /* Back: OK again. */
    g_fh.now_ns = 9000000000ull;
    fh_answer(probe(), 200, RD_PROBE_NONE, NULL, 4);
    assert_int_equal(g_fh.n_obs, 4);
    check_obs(3, RD_VERDICT_OK, RD_PROBE_NONE, NULL);
    assert_int_equal(g_fh.obs[3].since_ns, 9000000000ull);

    /* Hung (alive but not answering), then answering 503: the cause change
     * is reported, then FAILED with the latest cause. */
    fh_answer(probe(), 0, RD_PROBE_TIMEOUT, "no answer within 1000 ms", 1000);
    assert_int_equal(g_fh.n_obs, 5);
    check_obs(4, RD_VERDICT_SUSPECT, RD_PROBE_TIMEOUT, "no answer within 1000 ms");
    assert_true(g_fh.obs[4].value > 999 && g_fh.obs[4].value < 1001);
    fh_answer(probe(), 503, RD_PROBE_STATUS, "status 503", 1);
    assert_int_equal(g_fh.n_obs, 6);
    check_obs(5, RD_VERDICT_SUSPECT, RD_PROBE_STATUS, "status 503");
    fh_answer(probe(), 503, RD_PROBE_STATUS, "status 503", 1);
    assert_int_equal(g_fh.n_obs, 7);
    check_obs(6, RD_VERDICT_FAILED, RD_PROBE_STATUS, "status 503");
    fh_answer(probe(), 0, RD_PROBE_NETWORK, "Could not resolve host", 1);
    assert_int_equal(g_fh.n_obs, 8);
    check_obs(7, RD_VERDICT_FAILED, RD_PROBE_NETWORK, NULL);
    assert_non_null(strstr(g_fh.obs[7].detail, "Could not resolve host"));
    assert_int_equal(fh_counter("probes"), 11);
    assert_int_equal(fh_counter("probe_failures"), 8);

    fh_stop(true);
    assert_int_equal(g_fh.done_calls, 1);
    fh_destroy();
}

static void test_defaults_from_detection_params(void **state)
{
    (void)state;
    static const char *cfg[][2] = {{NULL, NULL}};
    static const struct rd_detection_params dp = {
        .heartbeat_interval_ms = 1000,
        .health_check_timeout_ms = 250,
        .failure_threshold = 2,
        .recovery_threshold = 2,
    };
    g_fh_next_dp = &dp;
    assert_int_equal(fh_init("health_probe", "probe", cfg), 0);
    fh_start();
    node_event(RD_NODE_EV_ADDED, "b", 1, "tcp://10.0.0.2:7000");
    size_t r = probe();
    assert_string_equal(g_fh.http[r].url, "tcp://10.0.0.2:7000");
    assert_int_equal(g_fh.http[r].timeout_ms, 250);
    fh_answer(r, 0, RD_PROBE_TIMEOUT, "x", 250);
    check_obs(0, RD_VERDICT_SUSPECT, RD_PROBE_TIMEOUT, "no answer within 250 ms");
    assert_int_equal(g_fh.obs[0].since_ns, 0); /* never succeeded */
    fh_answer(probe(), 0, RD_PROBE_TIMEOUT, "x", 250);
    check_obs(1, RD_VERDICT_FAILED, RD_PROBE_TIMEOUT, NULL);
    /* The default interval is 1s (timer 0 is the lateness check). */
    assert_int_equal(g_fh.timers[1].repeat_ms, 1000);
    fh_stop(true);
    fh_destroy();
}

static void test_one_probe_in_flight(void **state)
{
    (void)state;
    assert_int_equal(fh_init("health_probe", "probe", cfg_basic), 0);
    fh_start();
    node_event(RD_NODE_EV_ADDED, "a", 1, "http://a/health");
    node_event(RD_NODE_EV_ADDED, "b", 1, "http://b/health");
    assert_int_equal(fh_live_timers(), 2);
    fh_fire_all();
    assert_int_equal(g_fh.n_http, 2);
    /* Neither answered: more ticks send nothing. */
    fh_fire_all();
    fh_fire_all();
    assert_int_equal(g_fh.n_http, 2);
    fh_answer(0, 200, RD_PROBE_NONE, NULL, 1);
    fh_fire_all();
    assert_int_equal(g_fh.n_http, 3);
    assert_string_equal(g_fh.http[2].url, g_fh.http[0].url);
    fh_stop(true);
    fh_destroy();
}

static void test_removed_and_changed_nodes(void **state)
{
    (void)state;
    assert_int_equal(fh_init("health_probe", "probe", cfg_basic), 0);
    /* Known before start: probed once started. */
    node_event(RD_NODE_EV_ADDED, "a", 1, "http://a/health");
    assert_int_equal(fh_live_timers(), 0);
    fh_start();
    assert_int_equal(fh_live_timers(), 1);
    size_t r = probe();

    /* Removed with a probe in flight: no more probes, the late answer is
     * ignored (and frees what it must: ASan would tell). */
    node_event(RD_NODE_EV_REMOVED, "a", 1, "http://a/health");
    assert_int_equal(fh_live_timers(), 0);
    fh_answer(r, 0, RD_PROBE_REFUSED, "connection refused", 0);
    assert_int_equal(g_fh.n_obs, 0);
    assert_int_equal(fh_fire_all(), 0);
    node_event(RD_NODE_EV_REMOVED, "nobody", 1, ""); /* unknown: nothing */

    /* Back with a new epoch: a fresh start. */
    node_event(RD_NODE_EV_ADDED, "a", 2, "http://a/health");
    assert_int_equal(fh_live_timers(), 1);
    fh_answer(probe(), 0, RD_PROBE_REFUSED, "connection refused", 0);
    check_obs(0, RD_VERDICT_SUSPECT, RD_PROBE_REFUSED, NULL);
    assert_int_equal(g_fh.obs[0].epoch, 2);

    /* A new epoch while a probe is in flight: that answer is stale. */
    r = probe();
    node_event(RD_NODE_EV_EPOCH, "a", 3, "http://a/health");
    fh_answer(r, 0, RD_PROBE_REFUSED, "connection refused", 0);
    assert_int_equal(g_fh.n_obs, 1);
    fh_answer(probe(), 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(g_fh.n_obs, 2);
    check_obs(1, RD_VERDICT_OK, RD_PROBE_NONE, NULL);
    assert_int_equal(g_fh.obs[1].epoch, 3);

    /* A state change is no new epoch: nothing is re-announced. */
    node_event(RD_NODE_EV_STATE, "a", 3, "http://a/health");
    fh_answer(probe(), 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(g_fh.n_obs, 2);

    /* The URL changes: the next probe goes there. */
    node_event(RD_NODE_EV_STATE, "a", 3, "tcp://a:81");
    assert_string_equal(g_fh.http[probe()].url, "tcp://a:81");

    /* The URL goes away: probing stops. */
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    node_event(RD_NODE_EV_STATE, "a", 3, "");
    assert_int_equal(fh_live_timers(), 0);
    fh_stop(true);
    fh_destroy();
}

static void test_stop_with_probe_in_flight(void **state)
{
    (void)state;
    /* A host that lets the probe call back after stop(): done waits for it,
     * and the answer is not reported. */
    assert_int_equal(fh_init("health_probe", "probe", cfg_basic), 0);
    fh_start();
    node_event(RD_NODE_EV_ADDED, "a", 1, "http://a/health");
    node_event(RD_NODE_EV_ADDED, "b", 1, "http://b/health");
    size_t n = g_fh.n_http;
    fh_fire_all();
    assert_int_equal(g_fh.n_http, n + 2);
    node_event(RD_NODE_EV_REMOVED, "b", 1, ""); /* an orphan in flight too */
    fh_stop(false);
    assert_int_equal(g_fh.done_calls, 0);
    fh_answer(0, 0, RD_PROBE_REFUSED, "connection refused", 0);
    assert_int_equal(g_fh.done_calls, 0);
    fh_answer(1, 200, RD_PROBE_NONE, NULL, 0);
    assert_int_equal(g_fh.done_calls, 1);
    assert_int_equal(g_fh.n_obs, 0);
    fh_destroy();

    /* The engine's order: timers freed and probes cancelled, then stop():
     * no verdict from a cancelled probe, done at once, no timer touched. */
    assert_int_equal(fh_init("health_probe", "probe", cfg_basic), 0);
    fh_start();
    node_event(RD_NODE_EV_ADDED, "a", 1, "http://a/health");
    probe();
    fh_stop(true);
    assert_int_equal(g_fh.done_calls, 1);
    assert_int_equal(g_fh.n_obs, 0);
    fh_destroy();

    /* Destroyed without ever starting. */
    assert_int_equal(fh_init("health_probe", "probe", cfg_basic), 0);
    node_event(RD_NODE_EV_ADDED, "a", 1, "http://a/health");
    fh_destroy();
}

static void test_many_nodes(void **state)
{
    (void)state;
    enum { N = 1000 };
    static const char *cfg[][2] = {
        {"interval", "1s"},
        {"idle_interval", "0ms"},
        {"failures_to_fail", "3"},
        {"max_in_flight", "1000"}, /* all at once (the default is 256) */
        {NULL, NULL},
    };
    assert_int_equal(fh_init("health_probe", "probe", cfg), 0);
    fh_start();
    char id[32], url[64];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "n-%d", i);
        snprintf(url, sizeof url, "http://10.1.%d.%d/health", i / 256, i % 256);
        node_event(RD_NODE_EV_ADDED, id, 1, url);
        node_event(RD_NODE_EV_ADDED, id, 1, url); /* repeated: no second timer */
    }
    assert_int_equal(fh_live_timers(), N);
    /* Spread over the interval, not all at once. */
    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t i = 0; i < g_fh.n_timers; i++) {
        lo = g_fh.timers[i].first_ms < lo ? g_fh.timers[i].first_ms : lo;
        hi = g_fh.timers[i].first_ms > hi ? g_fh.timers[i].first_ms : hi;
    }
    assert_true(hi - lo > 500);
    fh_fire_all();
    assert_int_equal(g_fh.n_http, N);
    for (size_t i = 0; i < N; i++)
        fh_answer(i, i % 2 ? 200 : 503, i % 2 ? RD_PROBE_NONE : RD_PROBE_STATUS, NULL, 1);
    assert_int_equal(g_fh.n_obs, N);
    for (int i = 0; i < N; i += 2) {
        snprintf(id, sizeof id, "n-%d", i);
        node_event(RD_NODE_EV_REMOVED, id, 1, "");
    }
    assert_int_equal(fh_live_timers(), N / 2);
    fh_stop(true);
    fh_destroy();
}

static void test_unsendable_probe(void **state)
{
    (void)state;
    static const char *cfg[][2] = {{"failures_to_fail", "1"}, {NULL, NULL}};
    assert_int_equal(fh_init("health_probe", "probe", cfg), 0);
    fh_start();
    node_event(RD_NODE_EV_ADDED, "a", 1, "http://bad url/");
    g_fh.http_reject = RD_EINVAL;
    fh_fire_all();
    assert_int_equal(g_fh.n_http, 0);
    check_obs(0, RD_VERDICT_FAILED, RD_PROBE_NETWORK, NULL);
    fh_fire_all(); /* the same again: no new observation */
    assert_int_equal(g_fh.n_obs, 1);
    fh_stop(true);
    fh_destroy();
}

static void test_idle_agent_probed_every_idle_interval(void **state)
{
    (void)state;
    start_one_ok();
    /* Heartbeats on time, metrics fine: the ticks of the next 9.4 s send
     * nothing; the one at 11 s (idle_interval after 1 s) probes. */
    for (uint64_t t = 15; t <= 105; t += 5) {
        g_fh.now_ns = t * (SEC / 10);
        heartbeat("a", 1, 0.3, 0.01, -1);
        if (t % 10 == 0)
            assert_false(tick_at(t));
    }
    assert_int_equal(fh_counter("idle_skips"), 9);
    assert_int_equal(fh_counter("probes"), 1);
    heartbeat("a", 1, 0.3, 0.01, -1);
    assert_true(tick_at(110));
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    g_fh.now_ns = 115 * (SEC / 10);
    heartbeat("a", 1, 0.3, 0.01, -1);
    assert_false(tick_at(120));
    assert_int_equal(g_fh.n_obs, 1); /* still OK: nothing new said */

    /* Off: every tick probes, heartbeats or not. */
    fh_stop(true);
    fh_destroy();
    assert_int_equal(fh_init("health_probe", "probe", cfg_basic), 0);
    fh_start();
    node_event(RD_NODE_EV_ADDED, "a", 1, "http://a/health");
    for (uint64_t t = 10; t < 20; t++) {
        g_fh.now_ns = t * (SEC / 10);
        heartbeat("a", 1, 0.3, 0.01, -1);
        assert_true(tick_at(t));
        fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    }
    fh_stop(true);
    fh_destroy();
}

static void test_late_heartbeat_probes_every_interval(void **state)
{
    (void)state;
    start_one_ok();
    g_fh.now_ns = 3 * SEC;
    heartbeat("a", 1, 0.3, 0.01, -1); /* the last one for a while */
    assert_false(tick_at(42));        /* 1.2 s late: within late_after (1.25 s) */
    /* 1.3 s late: the lateness check (timer 0) probes it at once, without
     * waiting for the agent's own tick; once, not at every check. */
    g_fh.now_ns = 43 * (SEC / 10);
    size_t before = g_fh.n_http;
    fh_fire(0);
    assert_int_equal(g_fh.n_http, before + 1);
    fh_fire(0);
    assert_int_equal(g_fh.n_http, before + 1);
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    g_fh.now_ns = 44 * (SEC / 10);
    fh_fire(0); /* answered, still late, out of the list: the ticks probe it */
    assert_int_equal(g_fh.n_http, before + 1);
    assert_true(tick_at(53)); /* still late: every tick */
    fh_answer(fh_last(), 0, RD_PROBE_REFUSED, "connection refused", 0);
    check_obs(1, RD_VERDICT_SUSPECT, RD_PROBE_REFUSED, NULL);
    /* Heartbeats of another epoch or another agent change nothing; probes
     * stay 3/4 of an interval apart at least. */
    g_fh.now_ns = 58 * (SEC / 10);
    heartbeat("a", 0, 0.3, 0.01, -1);
    heartbeat("zz", 1, 0.3, 0.01, -1);
    assert_false(tick_at(59)); /* 0.6 s after the last probe */
    assert_true(tick_at(63));
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    check_obs(2, RD_VERDICT_OK, RD_PROBE_NONE, NULL);
    /* Its heartbeats are back and the probe is fine: idle again. */
    g_fh.now_ns = 65 * (SEC / 10);
    heartbeat("a", 1, 0.3, 0.01, -1);
    assert_false(tick_at(74));
    fh_stop(true);
    fh_destroy();
}

/* The engine's loop behind on its input (the host's input_drained_ns stays
 * at 3.1 s): the agent's heartbeat may wait in its socket, so lateness is
 * judged up to what the loop had read, and no further back than
 * input_lag_max (1 s): the agent is probed 1 s later than up to now. */
static void test_loop_behind_is_not_lateness(void **state)
{
    (void)state;
    start_one_ok();
    g_fh.now_ns = 3 * SEC;
    heartbeat("a", 1, 0.3, 0.01, -1);
    g_fh.drained_ns = 31 * (SEC / 10);
    assert_false(tick_at(43)); /* 1.3 s late by now, 0.3 s by what was read */
    assert_false(tick_at(50)); /* judged at 4.0 s (now - input_lag_max): 1.0 s */
    assert_true(tick_at(53));  /* judged at 4.3 s: 1.3 s late */
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    /* Caught up, with the agent's heartbeat that was waiting: idle again. */
    g_fh.drained_ns = 0;
    g_fh.now_ns = 54 * (SEC / 10);
    heartbeat("a", 1, 0.3, 0.01, -1);
    assert_false(tick_at(63));
    fh_stop(true);
    fh_destroy();
}

/* A counter of the instance, by name. */
static uint64_t counter(const char *name)
{
    for (size_t i = 0; i < g_fh.n_counters; i++)
        if (strcmp(g_fh.counters[i].name, name) == 0)
            return g_fh.counters[i].value;
    fail_msg("no counter %s", name);
    return 0;
}

/* At most max_in_flight probes at once (2 here): a tick beyond it sends
 * nothing (counted) and the agent goes at a later tick; the lateness check
 * stops there and keeps the other late agents for its next round. */
static void test_max_in_flight(void **state)
{
    (void)state;
    static const char *cfg[][2] = {
        {"interval", "1s"},
        {"idle_interval", "10s"},
        {"failures_to_fail", "3"},
        {"max_in_flight", "2"},
        {NULL, NULL},
    };
    assert_int_equal(fh_init("health_probe", "probe", cfg), 0);
    fh_start();
    node_event(RD_NODE_EV_ADDED, "a", 1, "http://a/health");
    node_event(RD_NODE_EV_ADDED, "b", 1, "http://b/health");
    node_event(RD_NODE_EV_ADDED, "c", 1, "http://c/health");
    /* None probed in this epoch yet (they registered at 1 s): each tick
     * would probe; two go out. */
    assert_true(tick_at(15));
    assert_int_equal(g_fh.n_http, 2);
    assert_int_equal(counter("probes_deferred"), 1);
    fh_answer(0, 200, RD_PROBE_NONE, NULL, 1);
    assert_true(tick_at(19)); /* one answered: the third goes */
    assert_int_equal(g_fh.n_http, 3);
    assert_string_equal(g_fh.http[2].url, "http://c/health");
    /* All three late (no heartbeat since they registered), two probes in
     * flight: the lateness check (timer 0) sends nothing... */
    g_fh.now_ns = 30 * (SEC / 10);
    fh_fire(0);
    assert_int_equal(g_fh.n_http, 3);
    /* ...and once they are answered, two more, the third at the next check. */
    fh_answer(1, 200, RD_PROBE_NONE, NULL, 1);
    fh_answer(2, 200, RD_PROBE_NONE, NULL, 1);
    g_fh.now_ns = 31 * (SEC / 10);
    fh_fire(0);
    assert_int_equal(g_fh.n_http, 5);
    fh_answer(3, 200, RD_PROBE_NONE, NULL, 1);
    g_fh.now_ns = 32 * (SEC / 10);
    fh_fire(0);
    assert_int_equal(g_fh.n_http, 6);
    fh_answer(4, 200, RD_PROBE_NONE, NULL, 1);
    fh_answer(5, 200, RD_PROBE_NONE, NULL, 1);
    fh_stop(true);
    fh_destroy();
}

static void test_state_change_probes_at_once(void **state)
{
    (void)state;
    start_one_ok();
    g_fh.now_ns = 20 * (SEC / 10);
    heartbeat("a", 1, 0.3, 0.01, -1);
    /* Made suspect by another detector: probed now, not at the next tick. */
    size_t before = g_fh.n_http;
    state_event("a", 1, "http://a/health", "suspect");
    assert_int_equal(g_fh.n_http, before + 1);
    state_event("a", 1, "http://a/health", "suspect"); /* in flight: nothing more */
    assert_int_equal(g_fh.n_http, before + 1);
    fh_answer(fh_last(), 0, RD_PROBE_REFUSED, "connection refused", 0);
    check_obs(1, RD_VERDICT_SUSPECT, RD_PROBE_REFUSED, NULL);
    /* Refused: the process went away after its last heartbeat (2 s), later
     * than the last good probe (1 s). */
    assert_int_equal(g_fh.obs[1].since_ns, 2 * SEC);
    /* Not alive: every tick, even with heartbeats on time; never sooner
     * than 3/4 of an interval after the last probe. */
    g_fh.now_ns = 25 * (SEC / 10);
    heartbeat("a", 1, 0.3, 0.01, -1);
    assert_false(tick_at(25));
    for (uint64_t t = 30; t <= 40; t += 10) {
        g_fh.now_ns = t * (SEC / 10);
        heartbeat("a", 1, 0.3, 0.01, -1);
        assert_true(tick_at(t));
        fh_answer(fh_last(), 0, RD_PROBE_REFUSED, "connection refused", 0);
    }
    check_obs(2, RD_VERDICT_FAILED, RD_PROBE_REFUSED, NULL);
    /* Failed (fenced): the engine ignores its probes until it registers
     * again, so only the idle cycle probes it, failing or not. */
    before = g_fh.n_http;
    state_event("a", 1, "http://a/health", "failed");
    assert_int_equal(g_fh.n_http, before);
    for (uint64_t t = 5; t <= 13; t++)
        assert_false(tick_at(t * 10));
    assert_true(tick_at(140)); /* 10 s after the last probe (4 s): due */
    fh_answer(fh_last(), 0, RD_PROBE_REFUSED, "connection refused", 0);
    assert_false(tick_at(150));
    assert_false(tick_at(160));
    /* A new epoch: alive again, probed at its first tick, then idle. */
    g_fh.now_ns = 165 * (SEC / 10);
    node_event(RD_NODE_EV_EPOCH, "a", 2, "http://a/health");
    state_event("a", 2, "http://a/health", "alive");
    heartbeat("a", 2, 0.3, 0.01, -1);
    assert_true(tick_at(170));
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    heartbeat("a", 2, 0.3, 0.01, -1);
    assert_false(tick_at(180));
    /* Draining is judged by heartbeats and metrics: no probe at once. */
    before = g_fh.n_http;
    state_event("a", 2, "http://a/health", "draining");
    assert_int_equal(g_fh.n_http, before);
    heartbeat("a", 2, 0.3, 0.01, -1);
    assert_false(tick_at(185));
    fh_stop(true);
    fh_destroy();
}

static void test_bad_metrics_probe_at_once(void **state)
{
    (void)state;
    start_one_ok();
    g_fh.now_ns = 20 * (SEC / 10);
    size_t before = g_fh.n_http;
    heartbeat("a", 1, 0.95, 0.01, -1); /* cpu at the watch share */
    assert_int_equal(g_fh.n_http, before + 1);
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    heartbeat("a", 1, 0.95, 0.01, -1); /* still busy: no second probe at once */
    assert_int_equal(g_fh.n_http, before + 1);
    assert_true(tick_at(30)); /* but every tick */
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    heartbeat("a", 1, 0.3, 0.6, -1); /* error rate over 0.5 */
    assert_true(tick_at(40));
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    heartbeat("a", 1, 0.3, 0.01, -1); /* fine again */
    assert_false(tick_at(50));

    /* Tasks in hand and no progress for watch_stall (3) heartbeats: the
     * hang whose heartbeat thread lives on is probed at once. */
    before = g_fh.n_http;
    heartbeat("a", 1, 0.3, 0.01, 7);
    heartbeat("a", 1, 0.3, 0.01, 8);
    heartbeat("a", 1, 0.3, 0.01, 8);
    heartbeat("a", 1, 0.3, 0.01, 8);
    assert_int_equal(g_fh.n_http, before);
    heartbeat("a", 1, 0.3, 0.01, 8);
    assert_int_equal(g_fh.n_http, before + 1);
    fh_answer(fh_last(), 0, RD_PROBE_TIMEOUT, "x", 1000);
    check_obs(1, RD_VERDICT_SUSPECT, RD_PROBE_TIMEOUT, NULL);
    fh_stop(true);
    fh_destroy();
}

/* A hung agent whose heartbeats and metrics stay fine is found by the idle
 * cycle, then watched until it fails. */
static void test_hang_found_by_idle_cycle(void **state)
{
    (void)state;
    start_one_ok();
    size_t probes = 1;
    int obs_failed = -1;
    for (uint64_t sec = 2; sec <= 20 && obs_failed < 0; sec++) {
        g_fh.now_ns = sec * SEC;
        heartbeat("a", 1, 0.3, 0.01, -1);
        if (!tick_at(sec * 10))
            continue;
        probes++;
        fh_answer(fh_last(), 0, RD_PROBE_TIMEOUT, "x", 1000);
        for (size_t i = 0; i < g_fh.n_obs; i++)
            if (g_fh.obs[i].verdict == RD_VERDICT_FAILED)
                obs_failed = (int)sec;
    }
    /* The idle probe at 11 s times out (suspect), then one a tick: failed
     * at the third, 13 s. */
    assert_int_equal(obs_failed, 13);
    assert_int_equal(probes, 4);
    check_obs(1, RD_VERDICT_SUSPECT, RD_PROBE_TIMEOUT, NULL);
    check_obs(2, RD_VERDICT_FAILED, RD_PROBE_TIMEOUT, NULL);
    fh_stop(true);
    fh_destroy();
}

/* Agents registered together do not probe together every idle_interval:
 * after its first probe, each agent's next idle probe comes between
 * interval and idle_interval later, by its slot. */
static void test_idle_probes_spread(void **state)
{
    (void)state;
    enum { N = 100 };
    assert_int_equal(fh_init("health_probe", "probe", cfg_adaptive), 0);
    fh_start();
    const struct rd_detector_ops *ops = g_fh.desc->ops;
    char id[N][16];
    for (unsigned i = 0; i < N; i++) {
        snprintf(id[i], sizeof id[i], "s-%u", i);
        struct rd_node_view v = node(id[i], 1, "http://s/health");
        v.slot = i;
        ops->on_node(g_fh.state, RD_NODE_EV_ADDED, &v);
    }
    g_fh.now_ns = 100 * SEC;
    fh_fire_all();
    assert_int_equal(g_fh.n_http, N);
    for (size_t r = 0; r < N; r++)
        fh_answer(r, 200, RD_PROBE_NONE, NULL, 1);
    unsigned per_tick[10] = {0}, busiest = 0;
    for (unsigned t = 1; t <= 10; t++) {
        g_fh.now_ns = (100 + t) * SEC;
        for (unsigned i = 0; i < N; i++) {
            struct rd_heartbeat_view hb = {
                .node_id = id[i], .epoch = 1, .slot = i, .arrival_ns = g_fh.now_ns, .progress = -1};
            ops->on_heartbeat(g_fh.state, &hb);
        }
        size_t before = g_fh.n_http;
        fh_fire_all();
        per_tick[t - 1] = (unsigned)(g_fh.n_http - before);
        for (size_t r = before; r < g_fh.n_http; r++)
            fh_answer(r, 200, RD_PROBE_NONE, NULL, 1);
        busiest = per_tick[t - 1] > busiest ? per_tick[t - 1] : busiest;
    }
    /* Each probed once more within the idle interval, none in a burst. */
    assert_int_equal(g_fh.n_http, 2 * N);
    assert_true(busiest <= N / 4);
    fh_stop(true);
    fh_destroy();
}

static void test_bad_idle_interval(void **state)
{
    (void)state;
    static const char *cfg[][2] = {{"interval", "1s"}, {"idle_interval", "500ms"}, {NULL, NULL}};
    assert_int_equal(fh_init("health_probe", "probe", cfg), RD_ECONFIG);
    assert_non_null(strstr(g_fh.error, "idle_interval (500ms) must be 0ms"));
    assert_non_null(strstr(g_fh.error, "at least interval (1000ms)"));
    fh_destroy();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_verdict_sequence),
        cmocka_unit_test(test_defaults_from_detection_params),
        cmocka_unit_test(test_one_probe_in_flight),
        cmocka_unit_test(test_removed_and_changed_nodes),
        cmocka_unit_test(test_stop_with_probe_in_flight),
        cmocka_unit_test(test_many_nodes),
        cmocka_unit_test(test_unsendable_probe),
        cmocka_unit_test(test_idle_agent_probed_every_idle_interval),
        cmocka_unit_test(test_late_heartbeat_probes_every_interval),
        cmocka_unit_test(test_loop_behind_is_not_lateness),
        cmocka_unit_test(test_max_in_flight),
        cmocka_unit_test(test_state_change_probes_at_once),
        cmocka_unit_test(test_bad_metrics_probe_at_once),
        cmocka_unit_test(test_hang_found_by_idle_cycle),
        cmocka_unit_test(test_idle_probes_spread),
        cmocka_unit_test(test_bad_idle_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
