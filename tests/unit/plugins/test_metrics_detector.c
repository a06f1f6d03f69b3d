/*
 * The metrics detector plugin (build/plugins/metrics.so) against the fake
 * host: a simulated fleet sends heartbeats with business metrics every
 * 500 ms and the test checks what the plugin observes, verdict by verdict,
 * with the metric named, the prediction and its time to failure.
 *
 * The fake host records neither `predicted`, `eta_ms` nor `metric`, so the
 * test wraps observe() in the host table the plugin holds (g_fh.api, after
 * fh_init) and records them beside the fake host's own record.
 */
#include "fake_host.h"

#include <math.h>

#define MS      1000000ull
#define BEAT_MS 500
#define FLEET   50
#define WINDOW  20     /* predict_window (default) */
#define HORIZON 60.0   /* predict_horizon, s (default) */
#define LAT_MAX 5000.0 /* latency_limit_ms (default) */
#define LIMIT_N 3      /* limit_samples (default) */

static const char *cfg_default[][2] = {{NULL, NULL}};

#define assert_near(a, b, tol) assert_near_((a), (b), (tol), #a, __FILE__, __LINE__)
static void assert_near_(double a, double b, double tol, const char *what, const char *file,
                         int line)
{
    if (!(fabs(a - b) <= tol))
        fail_msg("%s:%d: %s = %.12g, expected %.12g (+-%.3g)", file, line, what, a, b, tol);
}

/* ---- observations, with what the fake host leaves out ---------------------- */

struct obs_ext {
    uint64_t at_ns; /* g_fh.now_ns when it was made */
    bool predicted;
    double eta_ms;
    char metric[32]; /* "" for none */
    unsigned round;  /* the fleet round it came in */
};

static struct obs_ext *g_ext;
static size_t g_ext_cap;
static unsigned g_round;

static void wrap_observe(rd_plugin_instance_t *inst, const struct rd_observation *o)
{
    fh_observe(inst, o);
    if (g_fh.n_obs > g_ext_cap) {
        g_ext_cap = g_fh.cap_obs;
        g_ext = realloc(g_ext, g_ext_cap * sizeof *g_ext);
        assert_non_null(g_ext);
    }
    struct obs_ext *e = &g_ext[g_fh.n_obs - 1];
    memset(e, 0, sizeof *e);
    e->at_ns = g_fh.now_ns;
    e->predicted = o->predicted;
    e->eta_ms = o->eta_ms;
    snprintf(e->metric, sizeof e->metric, "%s", o->metric ? o->metric : "");
    e->round = g_round;
    assert_int_equal(o->signal, RD_SIG_METRICS);
    assert_int_equal(o->epoch, 1);
    /* A metric is named whenever there is something to say. */
    if (o->verdict != RD_VERDICT_OK || o->predicted)
        assert_non_null(o->metric);
    if (!o->predicted)
        assert_true(o->eta_ms == 0);
}

static size_t obs_of(const char *id, size_t *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < g_fh.n_obs; i++) {
        if (strcmp(g_fh.obs[i].node_id, id) == 0) {
            if (n < max)
                out[n] = i;
            n++;
        }
    }
    return n;
}

/* ---- a deterministic PRNG (splitmix64) ----------------------------------------- */

static uint64_t g_rng;

static uint64_t rng_next(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [c - w, c + w]. */
static double noisy(double c, double w)
{
    return c + w * (2.0 * (double)(rng_next() >> 11) / 9007199254740992.0 - 1.0);
}

/* ---- the fleet ------------------------------------------------------------------ */

struct sample {
    double error_rate, latency_ms, cpu, mem;
};

/* Normal, noisy metrics: error_rate 0.01 +-0.005, latency 20 +-5 ms, cpu
 * 0.4 and mem 0.5 +-g_load_noise (uniform). cpu and mem sit closest to their
 * limits, so their noise is what a trend fit can mistake for a trend. */
#define LOW_NOISE      0.01
#define MODERATE_NOISE 0.05
static double g_load_noise = LOW_NOISE;

static struct sample normal_sample(void)
{
    return (struct sample){
        .error_rate = noisy(0.01, 0.005),
        .latency_ms = noisy(20, 5),
        .cpu = noisy(0.4, g_load_noise),
        .mem = noisy(0.5, g_load_noise),
    };
}

/* Per agent: what it sends in round `r` (NULL: normal). */
typedef void (*shape_fn)(unsigned agent, unsigned r, struct sample *s);

static char g_ids[FLEET][16];
static uint64_t g_t0;

static const struct rd_detector_ops *ops(void)
{
    return g_fh.desc->ops;
}

/* When agent `a` reports in round `r`: rounds every 500 ms, agents spread
 * over the first 250 ms of it in order. */
static uint64_t when(unsigned a, unsigned r)
{
    return g_t0 + (uint64_t)r * BEAT_MS * MS + (uint64_t)a * 5 * MS;
}

static void send(unsigned a, unsigned r, const struct sample *s)
{
    g_fh.now_ns = when(a, r);
    struct rd_heartbeat_view hb = {
        .node_id = g_ids[a],
        .epoch = 1,
        .arrival_ns = g_fh.now_ns,
        .slots_used = 1,
        .has_metrics = true,
        .error_rate = s->error_rate,
        .latency_ms = s->latency_ms,
        .cpu = s->cpu,
        .mem = s->mem,
        .progress = r,
        .slot = a,
    };
    ops()->on_heartbeat(g_fh.state, &hb);
}

/* Rounds [from, to): every agent reports once, in agent order. */
static void rounds(unsigned from, unsigned to, shape_fn shape)
{
    for (unsigned r = from; r < to; r++) {
        g_round = r;
        for (unsigned a = 0; a < FLEET; a++) {
            struct sample s = normal_sample();
            if (shape)
                shape(a, r, &s);
            send(a, r, &s);
        }
    }
}

static void setup(const char *(*cfg)[2], uint64_t seed, double load_noise)
{
    g_load_noise = load_noise;
    assert_int_equal(fh_init("metrics", "metrics", cfg), 0);
    g_fh.api.observe = wrap_observe; /* the plugin keeps &g_fh.api */
    assert_int_equal(g_fh.desc->kind, RD_PLUGIN_DETECTOR);
    g_t0 = g_fh.now_ns + 100 * MS;
    g_rng = seed;
    g_round = 0;
    for (unsigned a = 0; a < FLEET; a++) {
        snprintf(g_ids[a], sizeof g_ids[a], "agent-%02u", a);
        struct rd_node_view v = {
            .node_id = g_ids[a],
            .epoch = 1,
            .state = "alive",
            .health_url = "",
            .labels_json = "{}",
            .slots = 1,
            .slot = a,
        };
        ops()->on_node(g_fh.state, RD_NODE_EV_ADDED, &v);
    }
}

static void teardown(void)
{
    fh_stop(true);
    assert_int_equal(g_fh.done_calls, 1);
    fh_destroy();
    free(g_ext);
    g_ext = NULL;
    g_ext_cap = 0;
}

/* cmocka's teardown: also after a failed assertion left an instance. */
static int cleanup(void **state)
{
    (void)state;
    if (g_fh.desc != NULL) {
        if (!g_fh.stopping)
            fh_stop(true);
        fh_destroy();
    }
    free(g_ext);
    g_ext = NULL;
    g_ext_cap = 0;
    return 0;
}

static void dump(void)
{
    for (size_t i = 0; i < g_fh.n_obs; i++)
        print_message("      obs %zu round %u %s verdict %d value %g predicted %d eta %.0f "
                      "metric '%s': %s\n",
                      i, g_ext[i].round, g_fh.obs[i].node_id, g_fh.obs[i].verdict,
                      g_fh.obs[i].value, g_ext[i].predicted, g_ext[i].eta_ms, g_ext[i].metric,
                      g_fh.obs[i].detail);
}

static void check_obs(size_t i, const char *id, unsigned round, int verdict, const char *metric,
                      bool predicted)
{
    assert_true(i < g_fh.n_obs);
    assert_string_equal(g_fh.obs[i].node_id, id);
    assert_int_equal(g_ext[i].round, round);
    assert_int_equal(g_fh.obs[i].verdict, verdict);
    assert_string_equal(g_ext[i].metric, metric);
    assert_int_equal(g_ext[i].predicted, predicted);
}

/* ---- (a) a normal fleet ------------------------------------------------------ */

static void test_normal_fleet_quiet(void **state)
{
    (void)state;
    setup(cfg_default, 0x5eed0a, LOW_NOISE);
    rounds(0, 200, NULL);
    /* 50 agents x 200 heartbeats: not one observation (no anomaly, no limit,
     * no prediction). */
    assert_int_equal(g_fh.n_obs, 0);
    assert_int_equal(fh_counter("metrics_anomalies"), 0);
    assert_int_equal(fh_counter("metrics_predictions"), 0);
    teardown();
}

/* The same with cpu and mem at 0.4 / 0.5 +-0.05 (uniform; sd 0.029): still
 * nothing anomalous and nothing over a limit, and no trend that could reach
 * a limit within the horizon. FAILS against metrics.c 1.0.0: slope() fits
 * as soon as half the window is there (10 samples, 4.5 s) and a prediction
 * needs nothing but a positive slope that reaches the limit within 60 s, so
 * the noise of a fresh agent's first samples is extrapolated 13 times its
 * span into "heads for its limit" predictions. */
static void test_normal_fleet_no_false_prediction(void **state)
{
    (void)state;
    setup(cfg_default, 0x5eed0a, MODERATE_NOISE);
    rounds(0, 200, NULL);
    size_t predicted = 0;
    for (size_t i = 0; i < g_fh.n_obs; i++) {
        assert_int_equal(g_fh.obs[i].verdict, RD_VERDICT_OK); /* holds */
        predicted += g_ext[i].predicted;
    }
    assert_int_equal(fh_counter("metrics_anomalies"), 0);
    for (size_t i = 0; i < g_fh.n_obs; i++)
        if (g_ext[i].predicted)
            print_message("      false prediction: %s round %u (%u samples) %s = %g, eta %.0f ms\n",
                          g_fh.obs[i].node_id, g_ext[i].round, g_ext[i].round + 1, g_ext[i].metric,
                          g_fh.obs[i].value, g_ext[i].eta_ms);
    assert_int_equal(predicted, 0); /* fails: see above */
    teardown();
}

/* ---- (b) a latency ramp: predicted before the limit, failed after 3 ---------- */

#define ROUNDS 200
static const unsigned g_ramp_agent = 7, g_ramp_from = 40;
static double g_lat[ROUNDS];
static uint64_t g_lat_t[ROUNDS];

static void ramp(unsigned a, unsigned r, struct sample *s)
{
    if (a != g_ramp_agent)
        return;
    if (r >= g_ramp_from)
        s->latency_ms = 20 + 40.0 * (r - g_ramp_from); /* +40 ms a heartbeat */
    g_lat[r] = s->latency_ms;
    g_lat_t[r] = when(a, r);
}

/* Reference: time (s) until a least-squares line over the last WINDOW
 * latencies up to round r reaches the limit; false when it does not rise. */
static bool ref_eta(unsigned r, double *eta_s)
{
    double mt = 0, mv = 0, num = 0, den = 0;
    for (unsigned i = r + 1 - WINDOW; i <= r; i++) {
        mt += (double)g_lat_t[i] / 1e9;
        mv += g_lat[i];
    }
    mt /= WINDOW;
    mv /= WINDOW;
    for (unsigned i = r + 1 - WINDOW; i <= r; i++) {
        double dt = (double)g_lat_t[i] / 1e9 - mt;
        num += dt * (g_lat[i] - mv);
        den += dt * dt;
    }
    double k = num / den;
    if (k <= 0)
        return false;
    *eta_s = (LAT_MAX - g_lat[r]) / k;
    return true;
}

static void test_latency_ramp(void **state)
{
    (void)state;
    setup(cfg_default, 0x5eed0b, LOW_NOISE);
    rounds(0, ROUNDS, ramp);
    dump();
    const char *id = g_ids[g_ramp_agent];
    /* Only the ramping agent is observed, and only once it ramps. */
    for (size_t i = 0; i < g_fh.n_obs; i++) {
        assert_string_equal(g_fh.obs[i].node_id, id);
        assert_true(g_ext[i].round > g_ramp_from);
    }
    /* When the reference says the trend first reaches the limit within the
     * horizon, and when the value first is at the limit. */
    unsigned r_pred = 0, r_cross = 0;
    double eta_s = 0;
    for (unsigned r = g_ramp_from; r < ROUNDS && !r_cross; r++) {
        if (g_lat[r] >= LAT_MAX)
            r_cross = r;
        else if (!r_pred && ref_eta(r, &eta_s) && eta_s <= HORIZON)
            r_pred = r;
    }
    assert_true(r_pred > g_ramp_from && r_cross > r_pred && r_cross + LIMIT_N <= ROUNDS);
    assert_near(g_lat[r_cross], 5020, 1e-9);

    size_t idx[64], n = obs_of(id, idx, 64);
    assert_true(n <= 64);
    size_t p = n, f = n;
    for (size_t i = 0; i < n; i++) {
        if (p == n && g_ext[idx[i]].predicted)
            p = i;
        if (f == n && g_fh.obs[idx[i]].verdict == RD_VERDICT_FAILED)
            f = i;
    }
    /* Before the prediction at most the anomaly of the ramp's first steps
     * (+40 ms against a 20 +-5 ms baseline) and its end. */
    assert_true(p < n);
    for (size_t i = 0; i < p; i++) {
        const struct fh_obs *o = &g_fh.obs[idx[i]];
        assert_int_not_equal(o->verdict, RD_VERDICT_FAILED);
        if (o->verdict == RD_VERDICT_SUSPECT)
            assert_string_equal(g_ext[idx[i]].metric, "latency_ms");
        assert_true(g_ext[idx[i]].round < r_pred);
    }

    /* The prediction: at the first heartbeat whose trend reaches 5000 ms
     * within 60 s, well before the value does, with the time to failure. */
    const struct fh_obs *po = &g_fh.obs[idx[p]];
    const struct obs_ext *pe = &g_ext[idx[p]];
    check_obs(idx[p], id, r_pred, RD_VERDICT_OK, "latency_ms", true);
    assert_near(po->value, g_lat[r_pred], 1e-9);
    assert_true(po->value < LAT_MAX);
    assert_true(pe->eta_ms > 0 && pe->eta_ms <= HORIZON * 1000);
    assert_near(pe->eta_ms, eta_s * 1000, 1e-6 * pe->eta_ms);
    char want[160];
    snprintf(want, sizeof want, "latency_ms heads for its limit 5000 in about %.0f s",
             pe->eta_ms / 1000);
    assert_string_equal(po->detail, want);
    double actual_ms = (double)(g_lat_t[r_cross] - g_lat_t[r_pred]) / 1e6;
    assert_true(pe->at_ns < g_lat_t[r_cross]);
    assert_true(actual_ms > 30000); /* a useful warning: half a minute ahead */
    /* The fit over a window still partly flat is late rather than early. */
    assert_true(pe->eta_ms >= actual_ms && pe->eta_ms <= 1.25 * actual_ms);
    print_message("      predicted at %.0f ms latency, eta %.1f s; the limit came %.1f s later\n",
                  po->value, pe->eta_ms / 1000, actual_ms / 1000);

    /* FAILED at the third sample in a row above the limit, not before. */
    assert_true(f < n && f > p);
    const struct fh_obs *fo = &g_fh.obs[idx[f]];
    check_obs(idx[f], id, r_cross + LIMIT_N - 1, RD_VERDICT_FAILED, "latency_ms", false);
    assert_near(fo->value, g_lat[r_cross + LIMIT_N - 1], 1e-9);
    assert_near(fo->value, 5100, 1e-9);
    assert_string_equal(fo->detail, "latency_ms 5100 above its limit 5000");
    assert_int_equal(g_ext[idx[f]].at_ns, g_lat_t[r_cross + LIMIT_N - 1]);
    /* Still above the limit afterwards: nothing new to say. */
    assert_int_equal(f, n - 1);

    /* Between the prediction and FAILED the agent only gets worse: nothing
     * may withdraw the prediction or call its metrics normal. FAILS against
     * metrics.c 1.0.0: the trend is only fitted while the value is below its
     * limit (x < limit), so at the first sample above it (5020 ms) predicted
     * drops to false while the verdict is still OK (1 of 3 samples), and the
     * plugin reports verdict OK, predicted false, "metrics back to normal";
     * the engine then resolves the prediction's warning fault (analysis.c:
     * !warn && warn_open) two heartbeats before the agent fails. */
    for (size_t i = p + 1; i < f; i++) {
        const struct fh_obs *o = &g_fh.obs[idx[i]];
        if (o->verdict == RD_VERDICT_OK && !g_ext[idx[i]].predicted)
            fail_msg("round %u (latency %.0f ms, %u above the limit): verdict OK, predicted "
                     "false, \"%s\" between the prediction (round %u) and FAILED (round %u)",
                     g_ext[idx[i]].round, g_lat[g_ext[idx[i]].round],
                     g_ext[idx[i]].round + 1 - r_cross, o->detail, r_pred, r_cross + 2);
    }
    teardown();
}

/* ---- (c, d) an error_rate anomaly ------------------------------------------ */

static void spike(unsigned a, unsigned r, struct sample *s)
{
    if (a == 3 && r == 40)
        s->error_rate = 0.15; /* once */
    if (a == 9)
        s->error_rate = noisy(0.2, 0.005); /* always high: its own normal */
}

static void test_error_rate_spike(void **state)
{
    (void)state;
    setup(cfg_default, 0x5eed0c, LOW_NOISE);
    rounds(0, 120, spike);
    /* (c) 0.15 against an own and a fleet baseline of ~0.01 (sd floor 0.01):
     * SUSPECT, naming error_rate, with the value. */
    assert_int_equal(g_fh.n_obs, 2);
    check_obs(0, "agent-03", 40, RD_VERDICT_SUSPECT, "error_rate", false);
    assert_near(g_fh.obs[0].value, 0.15, 1e-12);
    assert_string_equal(g_fh.obs[0].detail,
                        "error_rate 0.15 far above its own and the fleet's baseline");
    assert_int_equal(g_ext[0].at_ns, when(3, 40));
    /* (d) Normal again at the next heartbeat: OK, once, then nothing for 79
     * more heartbeats. */
    check_obs(1, "agent-03", 41, RD_VERDICT_OK, "", false);
    assert_near(g_fh.obs[1].value, 0, 0);
    assert_true(g_ext[1].eta_ms == 0);
    assert_string_equal(g_fh.obs[1].detail, "metrics back to normal");
    assert_int_equal(g_ext[1].at_ns, when(3, 41));
    /* agent-09 runs at 0.2 all along: far above the fleet, not above its
     * own baseline, so never an anomaly. */
    assert_int_equal(obs_of("agent-09", NULL, 0), 0);
    assert_int_equal(fh_counter("metrics_anomalies"), 1);
    assert_int_equal(fh_counter("metrics_predictions"), 0);
    teardown();
}

static void sustained(unsigned a, unsigned r, struct sample *s)
{
    if (a == 3 && r >= 40)
        s->error_rate = 0.15;
}

static void test_error_rate_jump_sustained(void **state)
{
    (void)state;
    setup(cfg_default, 0x5eed0d, LOW_NOISE);
    rounds(0, 120, sustained);
    dump();
    /* SUSPECT once at the jump; the agent's own baseline then takes the new
     * level in (alpha 0.2), so no further anomaly while it stays there.
     * (metrics.c 1.0.0 also fits the step as a trend, "heads for its limit
     * in about 47 s", and once the step leaves the fit window reports
     * "metrics back to normal" with error_rate still 15 times the fleet's:
     * not asserted here, see the report.) */
    size_t idx[16] = {0}, n = obs_of("agent-03", idx, 16);
    assert_int_equal(g_fh.n_obs, n);
    assert_true(n >= 1 && n <= 16);
    check_obs(idx[0], "agent-03", 40, RD_VERDICT_SUSPECT, "error_rate", false);
    for (size_t i = 1; i < n; i++) {
        assert_int_equal(g_fh.obs[idx[i]].verdict, RD_VERDICT_OK);
        if (g_ext[idx[i]].predicted) /* the step, fitted as a trend */
            assert_string_equal(g_ext[idx[i]].metric, "error_rate");
    }
    assert_int_equal(fh_counter("metrics_anomalies"), 1);
    teardown();
}

/* The whole fleet jumps to the same error_rate in the same round. */
static void fleet_jump(unsigned a, unsigned r, struct sample *s)
{
    (void)a;
    if (r >= 40)
        s->error_rate = 0.15;
}

static void test_error_rate_jump_fleet_wide(void **state)
{
    (void)state;
    setup(cfg_default, 0x5eed0e, LOW_NOISE);
    rounds(0, 120, fleet_jump);
    /* What metrics.c does: the fleet baseline is one EWMA fed by every
     * heartbeat with alpha/10 (0.02), so it moves one report at a time. The
     * first reporters of round 40 still find it at ~0.01 and are SUSPECT;
     * after a few reports its spread has grown enough (z < 4) and the rest of
     * the fleet is not. So a fleet-wide jump is mostly, not wholly, spared. */
    unsigned k = 0;
    for (size_t i = 0; i < g_fh.n_obs; i++) {
        assert_int_not_equal(g_fh.obs[i].verdict, RD_VERDICT_FAILED);
        if (g_fh.obs[i].verdict != RD_VERDICT_SUSPECT)
            continue;
        /* The suspects are the first k reporters of round 40, in order. */
        assert_string_equal(g_fh.obs[i].node_id, g_ids[k]);
        check_obs(i, g_ids[k], 40, RD_VERDICT_SUSPECT, "error_rate", false);
        assert_near(g_fh.obs[i].value, 0.15, 1e-12);
        k++;
    }
    print_message("      fleet-wide jump: %u of %u agents suspected (the first reporters)\n", k,
                  FLEET);
    assert_true(k >= 1 && k <= 5);
    assert_int_equal(fh_counter("metrics_anomalies"), k);
    teardown();
}

/* Task progress: an agent with work in hand whose progress counter stops
 * moving is suspected after stall_samples (10) heartbeats, with metric
 * "progress"; once it moves again it is OK. */
static void test_progress_stall(void **state)
{
    (void)state;
    setup(cfg_default, 77, LOW_NOISE);
    rounds(0, 20, NULL);
    assert_int_equal(g_fh.n_obs, 0);
    for (unsigned r = 20; r < 40; r++) {
        g_round = r;
        for (unsigned a = 0; a < FLEET; a++) {
            struct sample smp = normal_sample();
            g_fh.now_ns = when(a, r);
            struct rd_heartbeat_view hb = {
                .node_id = g_ids[a],
                .epoch = 1,
                .arrival_ns = g_fh.now_ns,
                .slots_used = 1,
                .has_metrics = true,
                .error_rate = smp.error_rate,
                .latency_ms = smp.latency_ms,
                .cpu = smp.cpu,
                .mem = smp.mem,
                .progress = a == 7 && r < 35 ? 19 : r, /* agent 7 stalls at 19 */
                .slot = a,
            };
            ops()->on_heartbeat(g_fh.state, &hb);
        }
    }
    size_t idx[8];
    size_t n = obs_of(g_ids[7], idx, 8);
    assert_int_equal(n, 2);
    assert_int_equal(g_fh.obs[idx[0]].verdict, RD_VERDICT_SUSPECT);
    assert_string_equal(g_ext[idx[0]].metric, "progress");
    assert_int_equal(g_ext[idx[0]].round, 29); /* the 10th heartbeat without progress (20..29) */
    assert_int_equal(g_fh.obs[idx[1]].verdict, RD_VERDICT_OK);
    assert_int_equal(g_ext[idx[1]].round, 35);
    /* Nobody else said anything. */
    assert_int_equal(g_fh.n_obs, 2);
    teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_normal_fleet_quiet, cleanup),
        cmocka_unit_test_teardown(test_normal_fleet_no_false_prediction, cleanup),
        cmocka_unit_test_teardown(test_latency_ramp, cleanup),
        cmocka_unit_test_teardown(test_error_rate_spike, cleanup),
        cmocka_unit_test_teardown(test_error_rate_jump_sustained, cleanup),
        cmocka_unit_test_teardown(test_error_rate_jump_fleet_wide, cleanup),
        cmocka_unit_test_teardown(test_progress_stall, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
