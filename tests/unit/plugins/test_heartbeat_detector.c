/*
 * The heartbeat detector plugin (build/plugins/heartbeat.so, phi accrual)
 * against the fake host, with a simulated monotonic clock: the test moves
 * g_fh.now_ns, delivers heartbeats with their arrival times and fires the
 * check timer every check interval, exactly as the engine's loop would.
 *
 * detection: heartbeat_interval 500 ms, failure_threshold 3; the plugin's
 * defaults otherwise (window 100, min_std_dev 50 ms, suspect_phi 5,
 * failure_phi 8, check every 100 ms).
 *
 * The fake host records neither when an observation arrived nor the metrics
 * fields, so the test wraps observe() in the host table the plugin holds
 * (g_fh.api, after fh_init) to note the simulated time of each observation.
 */
#include "fake_host.h"

#include <math.h>

#include "analysis_world.h"

#define MS          1000000ull
#define INTERVAL_MS 500
#define CHECK_MS    100
#define WINDOW      100
#define MIN_STD_MS  50.0
#define SUSPECT_PHI 5.0
#define FAILURE_PHI 8.0
#define NEVER       UINT64_MAX

static const struct rd_detection_params g_dp = {
    .heartbeat_interval_ms = INTERVAL_MS,
    .health_check_timeout_ms = 1000,
    .failure_threshold = 3,
    .recovery_threshold = 2,
};

static const char *cfg_default[][2] = {{NULL, NULL}};

/* cmocka's assert_float_equal works in float: this one in double. */
#define assert_near(a, b, tol) assert_near_((a), (b), (tol), #a, __FILE__, __LINE__)
static void assert_near_(double a, double b, double tol, const char *what, const char *file,
                         int line)
{
    if (!(fabs(a - b) <= tol))
        fail_msg("%s:%d: %s = %.12g, expected %.12g (+-%.3g)", file, line, what, a, b, tol);
}

/* ---- observations, with the simulated time they arrived ------------------- */

static uint64_t *g_obs_at; /* g_fh.now_ns when obs[i] was made */
static size_t g_obs_cap;

static void wrap_observe(rd_plugin_instance_t *inst, const struct rd_observation *o)
{
    fh_observe(inst, o);
    if (g_fh.n_obs > g_obs_cap) {
        g_obs_cap = g_fh.cap_obs;
        g_obs_at = realloc(g_obs_at, g_obs_cap * sizeof *g_obs_at);
        assert_non_null(g_obs_at);
    }
    g_obs_at[g_fh.n_obs - 1] = g_fh.now_ns;
    /* Every observation of this detector is about heartbeats. */
    assert_int_equal(o->signal, RD_SIG_HEARTBEAT);
    assert_false(o->predicted);
    assert_null(o->metric);
}

/* Indices of the observations about `id`, in order; returns how many. */
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

/* Uniform in [-100 ms, +100 ms], microsecond steps, in ns. */
static int64_t jitter_ns(void)
{
    return ((int64_t)(rng_next() % 200001) - 100000) * 1000;
}

/* ---- simulated agents ------------------------------------------------------- */

enum sched {
    S_NOMINAL, /* sent at base + k * interval, each +-100 ms (gaps 300-700 ms) */
    S_GAP,     /* each gap interval +-100 ms (400-600 ms) */
    S_FIXED,   /* each gap exactly `gap_ms` */
    S_ALT,     /* gaps alternate 200 ms and 800 ms */
};

struct sim_node {
    char id[32];
    uint32_t slot;
    uint64_t epoch;
    int sched;
    uint64_t gap_ms; /* S_FIXED */
    uint64_t base_ns, k;
    uint64_t next_ns; /* next arrival, NEVER while silent */
    uint64_t last_ns; /* last heartbeat delivered in this epoch, 0 = none */
    uint64_t sent;
    uint64_t stop_after;  /* silent once `sent` reaches it (0: never) */
    uint64_t late_after;  /* the heartbeat after number late_after ... */
    uint64_t late_gap_ns; /* ... comes this long after the previous one */
    /* The intervals the detector should hold (ms), and their statistics. */
    double iv[WINDOW];
    unsigned niv, head;
    double mean, sd;
    /* The highest reference phi and silence any check saw (with track). */
    double max_phi, max_el;
};

static struct {
    struct sim_node *nodes;
    size_t n;
    size_t timer;
    uint64_t tick_ns; /* when the check timer fires next */
    unsigned ticks;
    bool track; /* note what each check should see, by the reference model */
    /* The loop reads every heartbeat this long after it was sent (its
     * checks still on time), and has read all it was sent until this long
     * ago (the host's input_drained_ns): a loop behind on its input. */
    uint64_t lag_ns;
    uint64_t stuck_ns; /* nonzero: input_drained_ns stays there (a loop never idle) */
} g_sim;

static const struct rd_detector_ops *ops(void)
{
    return g_fh.desc->ops;
}

/* mean and sd as the detector computes them (before its floors/defaults). */
static void sim_stats(struct sim_node *s)
{
    if (s->niv < 2) {
        s->mean = INTERVAL_MS;
        s->sd = INTERVAL_MS / 4.0;
    } else {
        double m = 0, v = 0;
        for (unsigned i = 0; i < s->niv; i++)
            m += s->iv[i];
        m /= s->niv;
        for (unsigned i = 0; i < s->niv; i++)
            v += (s->iv[i] - m) * (s->iv[i] - m);
        s->mean = m;
        s->sd = sqrt(v / s->niv);
    }
    if (s->sd < MIN_STD_MS)
        s->sd = MIN_STD_MS;
}

/* Reference phi (the logistic approximation of the normal tail Akka and
 * Cassandra use; heartbeat.c documents the same model). */
static double ref_phi(const struct sim_node *s, double elapsed_ms)
{
    double y = (elapsed_ms - s->mean) / s->sd;
    double e = exp(-y * (1.5976 + 0.070566 * y * y));
    double p = elapsed_ms > s->mean ? e / (1.0 + e) : 1.0 - 1.0 / (1.0 + e);
    return p < 1e-300 ? 300 : -log10(p);
}

static void sim_history_reset(struct sim_node *s)
{
    s->niv = s->head = 0;
    s->last_ns = 0;
    sim_stats(s);
}

static void plan_next(struct sim_node *s)
{
    if (s->stop_after && s->sent >= s->stop_after) {
        s->next_ns = NEVER;
        return;
    }
    if (s->late_gap_ns && s->sent == s->late_after) {
        s->next_ns = s->last_ns + s->late_gap_ns;
        s->base_ns = s->next_ns; /* the schedule goes on from there */
        s->k = 0;
        return;
    }
    switch (s->sched) {
    case S_NOMINAL:
        s->k++;
        s->next_ns = (uint64_t)((int64_t)(s->base_ns + s->k * INTERVAL_MS * MS) + jitter_ns());
        break;
    case S_GAP:
        s->next_ns = (uint64_t)((int64_t)(s->last_ns + INTERVAL_MS * MS) + jitter_ns());
        break;
    case S_FIXED:
        s->next_ns = s->last_ns + s->gap_ms * MS;
        break;
    case S_ALT:
        s->next_ns = s->last_ns + (s->sent % 2 ? 200 : 800) * MS;
        break;
    }
    assert_true(s->next_ns > s->last_ns);
}

static void node_event(int event, const struct sim_node *s, const char *state)
{
    struct rd_node_view v = {
        .node_id = s->id,
        .epoch = s->epoch,
        .state = state,
        .health_url = "",
        .labels_json = "{}",
        .slots = 1,
        .slot = s->slot,
    };
    ops()->on_node(g_fh.state, event, &v);
}

/* Registers agent `s` now; its first heartbeat comes at `first_ns`. */
static void sim_add(struct sim_node *s, const char *id, uint32_t slot, int sched, uint64_t first_ns)
{
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    s->slot = slot;
    s->epoch = 1;
    s->sched = sched;
    s->gap_ms = INTERVAL_MS;
    s->base_ns = first_ns;
    s->next_ns = first_ns;
    if (sched == S_NOMINAL)
        s->next_ns = (uint64_t)((int64_t)first_ns + jitter_ns());
    assert_true(s->next_ns > g_fh.now_ns);
    sim_history_reset(s);
    node_event(RD_NODE_EV_ADDED, s, "alive");
}

/* Registers `n` agents "PREFIX-00".. with gaps of 400-600 ms, the first
 * heartbeats 100 ms from now, each `stagger_ms` after the one before. */
static void sim_fleet(size_t n, const char *prefix, uint64_t stagger_ms)
{
    char id[32];
    for (uint32_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%s-%02u", prefix, i);
        sim_add(&g_sim.nodes[i], id, i, S_GAP, g_fh.now_ns + (100 + stagger_ms * i) * MS);
    }
}

/* Resumes a silent agent: next heartbeat at `at_ns`, then on schedule. */
static void sim_resume(struct sim_node *s, uint64_t at_ns)
{
    s->stop_after = 0;
    s->late_gap_ns = 0;
    s->base_ns = s->next_ns = at_ns;
    s->k = 0;
}

static void deliver(struct sim_node *s)
{
    uint64_t t = s->next_ns; /* sent; read g_sim.lag_ns later */
    g_fh.now_ns = t + g_sim.lag_ns;
    if (s->last_ns) {
        double ms = (double)(t - s->last_ns) / 1e6;
        if (s->niv < WINDOW)
            s->niv++;
        s->iv[s->head] = ms;
        s->head = (s->head + 1) % WINDOW;
    }
    struct rd_heartbeat_view hb = {
        .node_id = s->id,
        .epoch = s->epoch,
        .arrival_ns = t + g_sim.lag_ns,
        .slots_used = 0,
        .has_metrics = false,
        .progress = -1,
        .slot = s->slot,
    };
    ops()->on_heartbeat(g_fh.state, &hb);
    s->last_ns = t;
    s->sent++;
    sim_stats(s);
    plan_next(s);
}

/* Delivers every heartbeat read by `t`, in each agent's order. */
static void deliver_until(uint64_t t)
{
    for (size_t i = 0; i < g_sim.n; i++)
        while (g_sim.nodes[i].next_ns != NEVER && g_sim.nodes[i].next_ns + g_sim.lag_ns <= t)
            deliver(&g_sim.nodes[i]);
}

/* One check tick: heartbeats due first, then the timer at its time. */
static void tick(void)
{
    deliver_until(g_sim.tick_ns);
    for (size_t i = 0; g_sim.track && i < g_sim.n; i++) {
        struct sim_node *s = &g_sim.nodes[i];
        if (s->last_ns == 0)
            continue;
        double el = (double)(g_sim.tick_ns - s->last_ns) / 1e6;
        double ph = ref_phi(s, el);
        s->max_phi = ph > s->max_phi ? ph : s->max_phi;
        s->max_el = el > s->max_el ? el : s->max_el;
    }
    g_fh.now_ns = g_sim.tick_ns;
    g_fh.drained_ns = g_sim.stuck_ns ? g_sim.stuck_ns
                      : g_sim.lag_ns ? g_sim.tick_ns - g_sim.lag_ns
                                     : 0;
    fh_fire(g_sim.timer);
    g_sim.ticks++;
    g_sim.tick_ns += CHECK_MS * MS;
}

/* Runs the loop until simulated time `t` (ticks and heartbeats up to it). */
static void run_until(uint64_t t)
{
    while (g_sim.tick_ns <= t)
        tick();
    deliver_until(t);
    g_fh.now_ns = t;
}

/* Starts a heartbeat instance with `n` simulated agents (not yet added). */
static void setup(size_t n, const char *(*cfg)[2], uint64_t seed)
{
    g_fh_next_dp = &g_dp;
    assert_int_equal(fh_init("heartbeat", "hb", cfg), 0);
    g_fh.api.observe = wrap_observe; /* the plugin keeps &g_fh.api */
    fh_start();
    assert_int_equal(fh_live_timers(), 1);
    memset(&g_sim, 0, sizeof g_sim);
    g_sim.timer = fh_last_live_timer();
    /* The check timer: a fifth of the heartbeat interval, repeating. */
    assert_int_equal(g_fh.timers[g_sim.timer].first_ms, CHECK_MS);
    assert_int_equal(g_fh.timers[g_sim.timer].repeat_ms, CHECK_MS);
    g_sim.tick_ns = g_fh.now_ns + CHECK_MS * MS;
    g_sim.nodes = calloc(n, sizeof *g_sim.nodes);
    assert_non_null(g_sim.nodes);
    g_sim.n = n;
    g_rng = seed;
}

static void teardown(void)
{
    fh_stop(true);
    assert_int_equal(g_fh.done_calls, 1);
    fh_destroy();
    free(g_sim.nodes);
    memset(&g_sim, 0, sizeof g_sim);
    free(g_obs_at);
    g_obs_at = NULL;
    g_obs_cap = 0;
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
    free(g_sim.nodes);
    memset(&g_sim, 0, sizeof g_sim);
    free(g_obs_at);
    g_obs_at = NULL;
    g_obs_cap = 0;
    return 0;
}

static void check_counter(void)
{
    assert_int_equal(fh_counter("heartbeat_observations"), g_fh.n_obs);
}

/* ---- (a) no false positives under jitter ----------------------------------------- */

static void test_no_false_positive_under_jitter(void **state)
{
    (void)state;
    enum { NODES = 100, BEATS = 10000 };
    setup(NODES, cfg_default, 0x5eed0001);
    uint64_t t0 = g_fh.now_ns;
    char id[32];
    for (uint32_t i = 0; i < NODES; i++) {
        snprintf(id, sizeof id, "agent-%03u", i);
        /* Half send on a nominal schedule (jitter per send time: gaps 300 to
         * 700 ms), half with jittered gaps (400 to 600 ms); phases spread. */
        sim_add(&g_sim.nodes[i], id, i, i % 2 ? S_GAP : S_NOMINAL, t0 + (150 + 3 * i) * MS);
    }
    g_sim.track = true;
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < NODES; i++)
            all = all && g_sim.nodes[i].sent >= BEATS;
        if (all)
            break;
        tick();
        assert_int_equal(g_fh.n_obs, 0); /* fail at the first false verdict */
    }
    double max_phi = 0, max_elapsed = 0, min_gap = 1e9, max_gap = 0;
    for (size_t i = 0; i < NODES; i++) {
        const struct sim_node *s = &g_sim.nodes[i];
        assert_true(s->sent >= BEATS);
        assert_int_equal(s->niv, WINDOW);
        max_phi = s->max_phi > max_phi ? s->max_phi : max_phi;
        max_elapsed = s->max_el > max_elapsed ? s->max_el : max_elapsed;
        for (unsigned j = 0; j < WINDOW; j++) {
            min_gap = s->iv[j] < min_gap ? s->iv[j] : min_gap;
            max_gap = s->iv[j] > max_gap ? s->iv[j] : max_gap;
        }
    }
    /* The jitter was real: gaps well spread around 500 ms. */
    assert_true(min_gap < 330 && max_gap > 670);
    assert_true(max_elapsed > 650 && max_elapsed < 700);
    /* 10,000 heartbeats every ~500 ms checked every 100 ms: ~50,000 ticks. */
    /* (the gap-jittered agents drift: a random walk of +-6 s or so) */
    assert_true(g_sim.ticks >= BEATS * 5 - 500 && g_sim.ticks <= BEATS * 5 + 500);
    /* No suspect and no failed verdict at all (nor anything else). */
    assert_int_equal(g_fh.n_obs, 0);
    check_counter();
    print_message("      100 agents x %u heartbeats, %u checks: max phi %.2f, longest silence "
                  "%.0f ms at a check (suspect at phi %.0f)\n",
                  (unsigned)BEATS, g_sim.ticks, max_phi, max_elapsed, SUSPECT_PHI);
    /* With margin: the highest phi any check saw (by the reference model)
     * stays a full phi unit (10x in probability) below suspect_phi. */
    assert_true(max_phi < SUSPECT_PHI - 1);
    teardown();
}

/* ---- (b, c, d) a stopped agent: suspect, failed, then back ------------------------ */

static void test_stopped_agent(void **state)
{
    (void)state;
    enum { STOPPED = 20, HEALTHY = 10, N = STOPPED + HEALTHY };
    setup(N, cfg_default, 0x5eed0002);
    uint64_t t0 = g_fh.now_ns;
    char id[32];
    for (uint32_t i = 0; i < N; i++) {
        snprintf(id, sizeof id, "%s-%02u", i < STOPPED ? "stops" : "healthy", i);
        sim_add(&g_sim.nodes[i], id, i, S_NOMINAL, t0 + (200 + 7 * i) * MS);
        if (i < STOPPED) /* last heartbeats at different phases of the check */
            g_sim.nodes[i].stop_after = 150 + 3 * i;
    }
    uint64_t last_stop = 0;
    while (g_sim.nodes[STOPPED - 1].next_ns != NEVER)
        tick();
    for (size_t i = 0; i < STOPPED; i++)
        last_stop = g_sim.nodes[i].last_ns > last_stop ? g_sim.nodes[i].last_ns : last_stop;
    /* Silent for 5 s more: long past FAILED, checks go on. */
    run_until(last_stop + 5000 * MS);

    size_t idx[8];
    for (size_t i = 0; i < STOPPED; i++) {
        const struct sim_node *s = &g_sim.nodes[i];
        uint64_t L = s->last_ns;
        /* (d) Exactly two verdict changes, however many checks followed. */
        assert_int_equal(obs_of(s->id, idx, 8), 2);
        const struct fh_obs *sus = &g_fh.obs[idx[0]], *fail = &g_fh.obs[idx[1]];
        assert_int_equal(sus->verdict, RD_VERDICT_SUSPECT);
        assert_int_equal(fail->verdict, RD_VERDICT_FAILED);
        assert_int_equal(sus->epoch, 1);
        assert_int_equal(fail->epoch, 1);
        /* The trouble began at the last heartbeat. */
        assert_int_equal(sus->since_ns, L);
        assert_int_equal(fail->since_ns, L);
        double t_sus = (double)(g_obs_at[idx[0]] - L) / 1e6;
        double t_fail = (double)(g_obs_at[idx[1]] - L) / 1e6;
        /* (b) SUSPECT within 1 s of the last heartbeat (by phi, before the
         * two-interval rule), FAILED at 3 intervals, within a check. */
        assert_true(t_sus > INTERVAL_MS && t_sus <= 1000);
        assert_true(sus->value >= SUSPECT_PHI);
        assert_true(t_fail >= 3 * INTERVAL_MS);
        assert_true(t_fail < 3 * INTERVAL_MS + CHECK_MS);
        assert_true(fail->value >= FAILURE_PHI);
        /* Phi grows with the silence. */
        assert_true(fail->value > sus->value);
        /* The values are phi of the agent's own interval history. */
        assert_near(sus->value, ref_phi(s, t_sus), 1e-6 * sus->value);
        assert_near(fail->value, ref_phi(s, t_fail), 1e-6 * fail->value);
        /* The check before each verdict change did not see it yet. */
        assert_true(ref_phi(s, t_sus - CHECK_MS) < SUSPECT_PHI);
        char want[160];
        snprintf(want, sizeof want, "no heartbeat for %.0f ms (phi %.1f)", t_fail, fail->value);
        assert_string_equal(fail->detail, want);
    }
    for (size_t i = STOPPED; i < N; i++)
        assert_int_equal(obs_of(g_sim.nodes[i].id, idx, 8), 0);
    check_counter();

    /* (c) Heartbeats again: OK, once, at the first heartbeat. */
    uint64_t now = g_fh.now_ns;
    for (size_t i = 0; i < STOPPED; i++)
        sim_resume(&g_sim.nodes[i], now + (20 + 13 * i) * MS);
    run_until(now + 10000 * MS);
    for (size_t i = 0; i < STOPPED; i++) {
        const struct sim_node *s = &g_sim.nodes[i];
        assert_int_equal(obs_of(s->id, idx, 8), 3);
        const struct fh_obs *ok = &g_fh.obs[idx[2]];
        assert_int_equal(ok->verdict, RD_VERDICT_OK);
        assert_int_equal(ok->since_ns, 0);
        assert_near(ok->value, 0, 0);
        assert_string_equal(ok->detail, "heartbeats arrive again");
        assert_int_equal(g_obs_at[idx[2]], now + (20 + 13 * i) * MS);
    }
    check_counter();
    teardown();
}

/* ---- (b) one late heartbeat may suspect, never fails ------------------------------- */

static void test_late_heartbeat_never_fails(void **state)
{
    (void)state;
    static const uint64_t late_ms[] = {900, 1000, 1200, 1400, 1499};
    enum { N = sizeof late_ms / sizeof late_ms[0] };
    setup(N, cfg_default, 0x5eed0003);
    uint64_t t0 = g_fh.now_ns;
    char id[32];
    for (uint32_t i = 0; i < N; i++) {
        snprintf(id, sizeof id, "late-%u", (unsigned)late_ms[i]);
        sim_add(&g_sim.nodes[i], id, i, S_NOMINAL, t0 + (300 + 17 * i) * MS);
        g_sim.nodes[i].late_after = 120;
        g_sim.nodes[i].late_gap_ns = late_ms[i] * MS;
    }
    run_until(t0 + 120 * 500 * MS);
    for (size_t i = 0; i < N; i++) {
        assert_true(g_sim.nodes[i].sent >= 120);
        assert_int_equal(obs_of(g_sim.nodes[i].id, NULL, 0), 0);
        g_sim.nodes[i].max_phi = g_sim.nodes[i].max_el = 0;
    }
    g_sim.track = true; /* what the checks around the late heartbeat see */
    run_until(t0 + 200 * 500 * MS);
    size_t idx[8];
    for (size_t i = 0; i < N; i++) {
        const struct sim_node *s = &g_sim.nodes[i];
        size_t n = obs_of(s->id, idx, 8);
        /* Suspected exactly when a check saw phi >= suspect_phi or two
         * intervals of silence; never FAILED; OK with the late heartbeat. */
        bool expect = s->max_phi >= SUSPECT_PHI || s->max_el >= 2 * INTERVAL_MS;
        if (late_ms[i] >= 2 * INTERVAL_MS + CHECK_MS)
            assert_true(expect); /* some check fell in the two-interval silence */
        assert_int_equal(n, expect ? 2 : 0);
        assert_true(s->max_el < late_ms[i]);
        if (n == 2) {
            const struct fh_obs *sus = &g_fh.obs[idx[0]], *ok = &g_fh.obs[idx[1]];
            assert_int_equal(sus->verdict, RD_VERDICT_SUSPECT);
            assert_int_equal(ok->verdict, RD_VERDICT_OK);
            assert_true(g_obs_at[idx[0]] - sus->since_ns < late_ms[i] * MS);
            /* The OK came with the late heartbeat itself. */
            assert_int_equal(g_obs_at[idx[1]] - sus->since_ns, late_ms[i] * MS);
        }
        print_message("      %u ms gap: max phi %.2f at the checks, %s\n", (unsigned)late_ms[i],
                      s->max_phi, n ? "suspect, then ok" : "nothing reported");
    }
    check_counter();
    teardown();
}

/* ---- (e) epochs and removal ------------------------------------------------------ */

static void test_epoch_resets_history_and_removed_stops(void **state)
{
    (void)state;
    setup(3, cfg_default, 0x5eed0004);
    struct sim_node *a = &g_sim.nodes[0], *b = &g_sim.nodes[1], *c = &g_sim.nodes[2];
    uint64_t t0 = g_fh.now_ns;
    /* a: a wide history under epoch 1 (gaps 200/800 ms: sd 300 ms). */
    sim_add(a, "a", 7, S_ALT, t0 + 100 * MS);
    a->stop_after = 60;
    sim_add(b, "b", 8, S_FIXED, t0 + 130 * MS);
    sim_add(c, "c", 9, S_FIXED, t0 + 160 * MS);
    while (a->next_ns != NEVER)
        tick();
    uint64_t La = a->last_ns;
    assert_true(a->sd > 250);
    /* With that spread phi stays low: suspect by the two-interval rule. */
    run_until(La + 1250 * MS);
    size_t idx[8];
    assert_int_equal(obs_of("a", idx, 8), 1);
    assert_int_equal(g_fh.obs[idx[0]].verdict, RD_VERDICT_SUSPECT);
    assert_int_equal(g_fh.obs[idx[0]].epoch, 1);
    assert_true(g_obs_at[idx[0]] - La >= 1000 * MS);
    assert_true(g_fh.obs[idx[0]].value < SUSPECT_PHI);

    /* Registered again: epoch 2. Nothing is said for the reset itself; the
     * history starts over (no interval against the registration time). */
    uint64_t te = g_fh.now_ns;
    a->epoch = 2;
    sim_history_reset(a);
    node_event(RD_NODE_EV_EPOCH, a, "alive");
    a->sched = S_FIXED;
    a->gap_ms = INTERVAL_MS;
    sim_resume(a, te + 300 * MS);
    a->stop_after = a->sent + 12;
    while (a->next_ns != NEVER)
        tick();
    uint64_t La2 = a->last_ns;
    assert_int_equal(obs_of("a", idx, 8), 1);
    assert_int_equal(a->niv, 11);
    assert_near(a->mean, 500, 1e-9);
    assert_near(a->sd, MIN_STD_MS, 0); /* the floor */
    run_until(La2 + 1250 * MS);
    assert_int_equal(obs_of("a", idx, 8), 2);
    const struct fh_obs *o = &g_fh.obs[idx[1]];
    assert_int_equal(o->verdict, RD_VERDICT_SUSPECT);
    assert_int_equal(o->epoch, 2);
    assert_int_equal(o->since_ns, La2);
    /* Regular 500 ms gaps only (sd at its 50 ms floor): phi 5 a good way
     * before the 1000 ms rule; with the old 300 ms spread kept, phi would
     * still be about 1 at 900 ms. */
    double el = (double)(g_obs_at[idx[1]] - La2) / 1e6;
    assert_true(el < 2 * INTERVAL_MS - CHECK_MS);
    assert_true(o->value >= SUSPECT_PHI);
    assert_true(ref_phi(a, el - CHECK_MS) < SUSPECT_PHI);
    assert_near(o->value, ref_phi(a, el), 1e-6 * o->value);

    /* Back (OK), then removed: nothing more about it, however long. */
    sim_resume(a, g_fh.now_ns + 10 * MS);
    a->stop_after = a->sent + 1;
    run_until(g_fh.now_ns + 20 * MS);
    assert_int_equal(obs_of("a", idx, 8), 3);
    assert_int_equal(g_fh.obs[idx[2]].verdict, RD_VERDICT_OK);
    assert_int_equal(g_fh.obs[idx[2]].epoch, 2);
    node_event(RD_NODE_EV_REMOVED, a, "left");
    /* c is fenced (state failed): it sends no more under this epoch. */
    node_event(RD_NODE_EV_STATE, c, "failed");
    c->stop_after = c->sent;
    c->next_ns = NEVER;
    /* b stops too: it is still watched. */
    b->stop_after = b->sent;
    b->next_ns = NEVER;
    uint64_t Lb = b->last_ns;
    run_until(g_fh.now_ns + 10000 * MS);
    assert_int_equal(obs_of("a", idx, 8), 3);
    assert_int_equal(obs_of("c", idx, 8), 0);
    assert_int_equal(obs_of("b", idx, 8), 2);
    assert_int_equal(g_fh.obs[idx[0]].verdict, RD_VERDICT_SUSPECT);
    assert_int_equal(g_fh.obs[idx[1]].verdict, RD_VERDICT_FAILED);
    assert_int_equal(g_fh.obs[idx[1]].since_ns, Lb);

    /* The slot a left is reused by another agent: a fresh start. */
    struct sim_node d;
    uint64_t nb = g_sim.n;
    g_sim.n = 0; /* drive d by hand */
    sim_add(&d, "d", 7, S_FIXED, g_sim.tick_ns + 50 * MS);
    /* Two heartbeats, the check timer running on time in between (a late
     * check would be an engine stall, which judges nobody). */
    while (d.sent < 2) {
        if (d.next_ns <= g_sim.tick_ns)
            deliver(&d);
        else
            tick();
    }
    while (g_sim.tick_ns <= d.last_ns + 1200 * MS)
        tick();
    assert_int_equal(obs_of("d", idx, 8), 1);
    assert_int_equal(g_fh.obs[idx[0]].verdict, RD_VERDICT_SUSPECT);
    assert_int_equal(g_fh.obs[idx[0]].since_ns, d.last_ns);
    g_sim.n = nb;
    check_counter();
    teardown();
}

/* ---- (g) the engine's own stall is not the agents' fault ------------------------ */

/* The engine stalls for `stall_ms`: no check, no heartbeat read. When it
 * runs again its late check fires first (libuv runs timers before I/O), then
 * it reads what queued meanwhile: one heartbeat per agent, stamped now. */
static void engine_stall(uint64_t stall_ms)
{
    uint64_t end = g_sim.tick_ns - CHECK_MS * MS + stall_ms * MS;
    g_fh.now_ns = end;
    fh_fire(g_sim.timer);
    g_sim.ticks++;
    for (size_t i = 0; i < g_sim.n; i++) {
        struct sim_node *s = &g_sim.nodes[i];
        if (s->next_ns == NEVER || s->next_ns > end)
            continue;
        s->next_ns = end;
        deliver(s);
    }
    g_sim.tick_ns = end + CHECK_MS * MS;
}

static void test_engine_stall_is_forgiven(void **state)
{
    (void)state;
    enum { N = 10 };
    setup(N, cfg_default, 0x5eed0005);
    sim_fleet(N, "steady", 37);
    run_until(g_fh.now_ns + 30000 * MS);
    size_t idx[8];
    assert_int_equal(g_fh.n_obs, 0);
    /* A 2.5 s stall: longer than the 1.5 s it takes to fail an agent. */
    engine_stall(2500);
    run_until(g_fh.now_ns + 10000 * MS);
    assert_int_equal(g_fh.n_obs, 0); /* nobody suspected, nobody failed */
    assert_int_equal(fh_counter("heartbeat_engine_stalls"), 1);
    /* Checks a little late (under stall_threshold) are ordinary checks:
     * an agent that really stops is still failed within 3 intervals. */
    struct sim_node *s = &g_sim.nodes[3];
    s->stop_after = s->sent;
    s->next_ns = NEVER;
    uint64_t L = s->last_ns;
    run_until(g_fh.now_ns + 5000 * MS);
    assert_int_equal(obs_of(s->id, idx, 8), 2);
    assert_int_equal(g_fh.obs[idx[1]].verdict, RD_VERDICT_FAILED);
    double t_fail = (double)(g_obs_at[idx[1]] - L) / 1e6;
    assert_true(t_fail >= 3 * INTERVAL_MS && t_fail < 3 * INTERVAL_MS + CHECK_MS);
    /* An agent that dies during a stall is failed the stall's length later. */
    struct sim_node *t = &g_sim.nodes[5];
    t->stop_after = t->sent;
    t->next_ns = NEVER;
    L = t->last_ns;
    engine_stall(1000);
    run_until(g_fh.now_ns + 5000 * MS);
    assert_int_equal(obs_of(t->id, idx, 8), 2);
    assert_int_equal(g_fh.obs[idx[1]].verdict, RD_VERDICT_FAILED);
    t_fail = (double)(g_obs_at[idx[1]] - L) / 1e6;
    assert_true(t_fail >= 3 * INTERVAL_MS + 800 && t_fail < 3 * INTERVAL_MS + 1000 + 2 * CHECK_MS);
    assert_int_equal(fh_counter("heartbeat_engine_stalls"), 2);
    teardown();
}

/*
 * A check that finds many agents failed at once (a loop that fell behind,
 * not a stall: stall_threshold off) reports each of them once, failed, in
 * that one check. Handed to the engine's analysis as what its loop turn
 * observed (one batch), the reports trip the mass-failure guard and no
 * agent is failed: the guard counts a whole batch before it judges any of
 * it, so no order of reports is needed (judged one by one as they came, 73
 * of 647 cut-off agents were failed in a 2,000-agent storm).
 */
static const char *cfg_no_stall[][2] = {{"stall_threshold", "0ms"}, {NULL, NULL}};

static uint64_t sim_clock(void)
{
    return g_fh.now_ns;
}

static void test_mass_failure_in_one_check_trips_the_guard(void **state)
{
    (void)state;
    enum { N = 40 };
    setup(N, cfg_no_stall, 0x5eed0007);
    struct analysis_world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    analysis_world_init(w, sim_clock);
    char id[32];
    for (uint32_t i = 0; i < N; i++) {
        snprintf(id, sizeof id, "cut-%02u", i);
        sim_add(&g_sim.nodes[i], id, i, S_GAP, g_fh.now_ns + (100 + 11 * i) * MS);
        analysis_world_agent(w, id, false, g_fh.now_ns);
    }
    run_until(g_fh.now_ns + 20000 * MS);
    assert_int_equal(g_fh.n_obs, 0);
    for (uint32_t i = 0; i < N; i++) {
        g_sim.nodes[i].stop_after = g_sim.nodes[i].sent;
        g_sim.nodes[i].next_ns = NEVER;
    }
    engine_stall(4000); /* one check, 4 s on: every agent past failure */
    assert_int_equal(g_fh.n_obs, N);
    size_t idx[8];
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(obs_of(g_sim.nodes[i].id, idx, 8), 1);
        assert_int_equal(g_fh.obs[idx[0]].verdict, RD_VERDICT_FAILED);
        assert_true(g_fh.obs[idx[0]].value >= FAILURE_PHI);
    }
    check_counter();
    for (size_t i = 0; i < g_fh.n_obs; i++) {
        const struct fh_obs *x = &g_fh.obs[i];
        struct rd_observation o = {.node_id = x->node_id,
                                   .epoch = x->epoch,
                                   .signal = x->signal,
                                   .verdict = x->verdict,
                                   .value = x->value,
                                   .since_ns = x->since_ns,
                                   .detail = x->detail};
        assert_true(rd_analysis_observe(&w->a, "heartbeat", &o));
    }
    rd_analysis_flush(&w->a);
    fake_log_step(&w->log);
    assert_true(w->a.partition_suspected);
    assert_true(w->a.guard_blocked_total >= N);
    assert_int_equal(w->fsm.count_by_state[RD_NODE_FAILED], 0);
    assert_int_equal(w->fsm.count_by_state[RD_NODE_SUSPECT], N);
    analysis_world_close(w);
    free(w);
    teardown();
}

/* ---- (h) a loop behind on its input is not the agents' fault --------------------- */

/*
 * 40 agents heartbeat steadily (gaps 400-600 ms); then for 3 s the loop
 * reads each heartbeat LAG_MS after it was sent (a snapshot's fork makes
 * each page it writes a fault, other processes take the CPU), its checks on
 * time, and catches up. One agent dies as the loop falls behind. Returns how
 * many of the others were reported (any verdict); `dead` is the one that
 * died, `t_fail` the ms from its last heartbeat to its failure (0: never).
 */
#define LAG_MS 350
static size_t slow_loop_run(const char *(*cfg)[2], bool old_host, double *t_fail)
{
    enum { N = 40 };
    setup(N, cfg, 0x5eed0008);
    if (old_host) /* built before ABI 1.5: the table ends before input_drained_ns */
        g_fh.api.size = offsetof(struct rd_host_api, input_drained_ns);
    sim_fleet(N, "busy", 11);
    run_until(g_fh.now_ns + 20000 * MS);
    assert_int_equal(g_fh.n_obs, 0);
    struct sim_node *dead = &g_sim.nodes[7];
    dead->stop_after = dead->sent;
    dead->next_ns = NEVER;
    uint64_t last = dead->last_ns;
    g_sim.lag_ns = LAG_MS * MS;
    run_until(g_fh.now_ns + 3000 * MS);
    g_sim.lag_ns = 0;
    run_until(g_fh.now_ns + 5000 * MS);
    size_t idx[8], others = 0;
    *t_fail = 0;
    size_t n = obs_of(dead->id, idx, 8);
    if (n > 0 && g_fh.obs[idx[n - 1]].verdict == RD_VERDICT_FAILED)
        *t_fail = (double)(g_obs_at[idx[n - 1]] - last) / 1e6;
    for (uint32_t i = 0; i < N; i++)
        if (&g_sim.nodes[i] != dead && obs_of(g_sim.nodes[i].id, idx, 8) > 0)
            others++;
    return others;
}

static void test_slow_loop_is_not_the_agents_fault(void **state)
{
    (void)state;
    double t_fail;
    /* Silence judged up to when the loop had read everything: nobody else
     * is reported, and the dead agent is failed at most the lag later. */
    assert_int_equal(slow_loop_run(cfg_default, false, &t_fail), 0);
    assert_true(t_fail >= 3 * INTERVAL_MS + LAG_MS);
    assert_true(t_fail < 3 * INTERVAL_MS + LAG_MS + 2 * CHECK_MS);
    assert_true(fh_counter("heartbeat_checks_behind") >= 25); /* the 3 s behind */
    teardown();
    /* Judged up to now (input_lag_max 0, as before): most of the fleet
     * looks late at once as the loop falls behind (40% of 10,000 agents
     * did in a storm, and tripped the mass-failure guard). */
    static const char *judged_now[][2] = {{"input_lag_max", "0ms"}, {NULL, NULL}};
    assert_true(slow_loop_run(judged_now, false, &t_fail) >= 20);
    assert_true(t_fail >= 3 * INTERVAL_MS && t_fail < 3 * INTERVAL_MS + CHECK_MS);
    assert_int_equal(fh_counter("heartbeat_checks_behind"), 0);
    teardown();
    /* A host older than ABI 1.5 (no input_drained_ns): the plugin loads and
     * judges up to now, as before. */
    assert_true(slow_loop_run(cfg_default, true, &t_fail) >= 20);
    assert_true(t_fail >= 3 * INTERVAL_MS && t_fail < 3 * INTERVAL_MS + CHECK_MS);
    teardown();
}

/* The host's moment stays behind (a reader that leaves input in its
 * socket, a turn that does not end): silence is judged no more than
 * input_lag_max (1 s) back, so a crash is still failed, that much later,
 * and agents that heartbeat are not reported. */
static void test_loop_never_idle_judges_lag_max_back(void **state)
{
    (void)state;
    enum { N = 10 };
    setup(N, cfg_default, 0x5eed0009);
    sim_fleet(N, "sat", 37);
    run_until(g_fh.now_ns + 10000 * MS);
    g_sim.stuck_ns = g_fh.now_ns;
    struct sim_node *dead = &g_sim.nodes[2];
    dead->stop_after = dead->sent;
    dead->next_ns = NEVER;
    uint64_t last = dead->last_ns;
    run_until(g_fh.now_ns + 10000 * MS);
    size_t idx[8];
    assert_int_equal(obs_of(dead->id, idx, 8), 2);
    assert_int_equal(g_fh.obs[idx[1]].verdict, RD_VERDICT_FAILED);
    double t_fail = (double)(g_obs_at[idx[1]] - last) / 1e6;
    assert_true(t_fail >= 3 * INTERVAL_MS + 1000 && t_fail < 3 * INTERVAL_MS + 1000 + CHECK_MS);
    assert_int_equal(g_fh.n_obs, 2); /* nobody else */
    g_sim.stuck_ns = 0;
    teardown();
}

/* ---- (f) config validation ----------------------------------------------------- */

static void test_config_validation(void **state)
{
    (void)state;
    static const char *bad[][2] = {{"suspect_phi", "9"}, {"failure_phi", "8"}, {NULL, NULL}};
    g_fh_next_dp = &g_dp;
    assert_int_equal(fh_init("heartbeat", "hb", bad), RD_EINVAL);
    assert_non_null(strstr(g_fh.error, "suspect_phi (9)"));
    assert_non_null(strstr(g_fh.error, "failure_phi (8)"));
    assert_non_null(strstr(g_fh.error, "must not be above"));
    fh_reset(); /* a failed init is not destroyed */

    /* Equal thresholds are allowed. */
    static const char *equal[][2] = {{"suspect_phi", "8"}, {"failure_phi", "8"}, {NULL, NULL}};
    g_fh_next_dp = &g_dp;
    assert_int_equal(fh_init("heartbeat", "hb", equal), 0);
    assert_string_equal(g_fh.error, "");
    fh_destroy();

    /* The keys and their documented defaults. */
    g_fh_next_dp = &g_dp;
    assert_int_equal(fh_init("heartbeat", "hb", cfg_default), 0);
    assert_int_equal(g_fh.desc->kind, RD_PLUGIN_DETECTOR);
    int seen = 0;
    for (const struct rd_plugin_key *k = g_fh.desc->keys; k->name; k++) {
        if (strcmp(k->name, "suspect_phi") == 0 || strcmp(k->name, "failure_phi") == 0) {
            assert_int_equal(k->type, RD_KEY_DOUBLE);
            assert_string_equal(k->default_value, k->name[0] == 's' ? "5" : "8");
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    fh_destroy();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_no_false_positive_under_jitter, cleanup),
        cmocka_unit_test_teardown(test_stopped_agent, cleanup),
        cmocka_unit_test_teardown(test_late_heartbeat_never_fails, cleanup),
        cmocka_unit_test_teardown(test_epoch_resets_history_and_removed_stops, cleanup),
        cmocka_unit_test_teardown(test_engine_stall_is_forgiven, cleanup),
        cmocka_unit_test_teardown(test_slow_loop_is_not_the_agents_fault, cleanup),
        cmocka_unit_test_teardown(test_loop_never_idle_judges_lag_max_back, cleanup),
        cmocka_unit_test_teardown(test_mass_failure_in_one_check_trips_the_guard, cleanup),
        cmocka_unit_test_teardown(test_config_validation, cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
