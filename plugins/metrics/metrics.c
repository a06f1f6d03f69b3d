/*
 * metrics: business metrics the agents report in their heartbeats
 * (error_rate, latency_ms, cpu, mem), judged three ways.
 *
 *  - Limits: a metric above its limit for `limit_samples` heartbeats in a
 *    row fails the agent (verdict failed).
 *  - Anomaly: a value far (z_threshold standard deviations) above both the
 *    agent's own baseline and the fleet's baseline (both exponentially
 *    weighted) makes it suspect.
 *  - Trend: a least-squares line over the last `predict_window` samples that
 *    reaches the limit within `predict_horizon` is a prediction (predicted,
 *    with the estimated time to failure), so a policy can drain the agent
 *    before it fails.
 *
 * Higher is worse for every metric. Observations are sent only on change.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recoveryd/plugin.h"

#include "../common/table.h"

enum { M_ERROR = 0, M_LATENCY, M_CPU, M_MEM, M_COUNT };
static const char *const metric_names[M_COUNT] = {"error_rate", "latency_ms", "cpu", "mem"};
/* Smallest spread assumed, so a flat baseline does not make noise an anomaly. */
static const double min_sd[M_COUNT] = {0.01, 5.0, 0.02, 0.02};

#define MAX_WINDOW 64

/* A sample of a ring: its time and value side by side, so that a
 * heartbeat's write touches one cache line of the ring, not two (16-byte
 * aligned, a sample never straddles two lines). */
struct sample {
    _Alignas(16) double t;
    double v;
};

/* A metric's baseline and the sums over its ring (80 bytes). A node keeps
 * its series together and their rings after them (struct node): at 10,000
 * agents every heartbeat finds them cold in the cache, and with each ring
 * inside its series the fields one heartbeat needs were spread over 16
 * cache lines; now 5 or 6 lines side by side and one line of each ring. */
struct series {
    double ewma, ewvar;
    double st, sv, stt, svv, stv; /* running sums over the window: O(1) fits */
    unsigned n;
    unsigned over; /* consecutive samples above the limit */
    unsigned head, count;
    unsigned since_exact; /* samples since the sums were recomputed exactly */
};

struct node {
    bool used;
    char *id;
    uint64_t epoch;
    struct series m[M_COUNT];
    int verdict;
    bool predicted;
    int why;          /* metric behind the verdict */
    double progress;  /* last reported task progress counter, -1 = none */
    unsigned stalled; /* heartbeats in a row with work in hand and no progress */
    uint64_t base_ns; /* sample times are seconds since this (kept small for the sums) */
    struct sample ring[M_COUNT][MAX_WINDOW]; /* each series' last samples */
};

struct state {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    double alpha, z, limits[M_COUNT];
    unsigned min_samples, limit_samples, window, stall_samples;
    double horizon_s;
    struct series fleet[M_COUNT];
    struct node *nodes;
    uint32_t cap;
    uint64_t *anomalies, *predictions;
};

static const struct rd_plugin_key keys[] = {
    {"alpha", RD_KEY_DOUBLE, "0.2", 0.01, 1, "weight of a new sample in the baselines"},
    {"z_threshold", RD_KEY_DOUBLE, "4", 1, 100,
     "standard deviations above both baselines that make an anomaly"},
    {"min_samples", RD_KEY_INT, "5", 1, 10000, "samples before an agent is judged"},
    {"error_rate_limit", RD_KEY_DOUBLE, "0.5", 0, 1, "error_rate at which an agent fails"},
    {"latency_limit_ms", RD_KEY_DOUBLE, "5000", 1, 1e9, "latency_ms at which an agent fails"},
    {"cpu_limit", RD_KEY_DOUBLE, "0.98", 0, 1e6, "cpu share at which an agent fails"},
    {"mem_limit", RD_KEY_DOUBLE, "0.95", 0, 1e18, "mem share at which an agent fails"},
    {"limit_samples", RD_KEY_INT, "3", 1, 1000, "samples in a row above a limit to fail"},
    {"predict_window", RD_KEY_INT, "20", 3, MAX_WINDOW, "samples the trend is fitted over"},
    {"predict_horizon", RD_KEY_DURATION, "60s", 1000, 86400000,
     "how far ahead a trend reaching a limit is a prediction"},
    {"stall_samples", RD_KEY_INT, "10", 2, 100000,
     "heartbeats with tasks in hand and no task progress that make a stall"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static struct node *slot_node(struct state *st, uint32_t slot)
{
    if (slot == UINT32_MAX)
        return NULL;
    if (slot >= st->cap) {
        uint32_t ncap = st->cap ? st->cap : 256;
        while (ncap <= slot)
            ncap *= 2;
        /* Out of the forked children's sight (table.h): every heartbeat
         * writes its agent's windows. */
        struct node *nn =
            tbl_resize(st->host, st->nodes, st->cap * sizeof(*nn), ncap * sizeof(*nn));
        if (nn == NULL)
            return NULL;
        st->nodes = nn;
        st->cap = ncap;
    }
    return &st->nodes[slot];
}

static void node_clear(struct node *n)
{
    free(n->id);
    memset(n, 0, sizeof(*n));
}

static bool node_bind(struct node *n, const char *id, uint64_t epoch)
{
    if (n->used && n->epoch == epoch && strcmp(n->id, id) == 0)
        return true;
    node_clear(n);
    n->id = strdup(id);
    if (n->id == NULL)
        return false;
    n->used = true;
    n->epoch = epoch;
    n->progress = -1;
    return true;
}

/* Updates an EWMA baseline with x; returns how many standard deviations x
 * was above the baseline before the update. */
static double ewma_push(struct series *s, double x, double alpha, double floor_sd)
{
    double z = 0;
    if (s->n == 0) {
        s->ewma = x;
        s->ewvar = 0;
    } else {
        double sd = sqrt(s->ewvar);
        if (sd < floor_sd)
            sd = floor_sd;
        z = (x - s->ewma) / sd;
        double d = x - s->ewma;
        s->ewma += alpha * d;
        s->ewvar = (1 - alpha) * (s->ewvar + alpha * d * d);
    }
    s->n++;
    return z;
}

/* Least-squares fit of the last `n` samples of the ring (oldest to newest):
 * slope per second and R^2. False when the points say nothing (flat time). */
static bool fit(const struct series *s, const struct sample *ring, unsigned window, unsigned n,
                double *slope, double *r2)
{
    double st = 0, sv = 0, stt = 0, svv = 0, stv = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned k = (s->head + window - n + i) % window;
        double t = ring[k].t, v = ring[k].v;
        st += t, sv += v, stt += t * t, svv += v * v, stv += t * v;
    }
    double ct = stt - st * st / n, cv = svv - sv * sv / n, ctv = stv - st * sv / n;
    if (ct <= 0)
        return false;
    *slope = ctv / ct;
    *r2 = cv > 0 ? (ctv * ctv) / (ct * cv) : 0;
    return true;
}

/* The whole-window fit from the running sums (the hot path: every sample). */
static bool fit_window(const struct series *s, double *slope, double *r2)
{
    double n = s->count;
    double ct = s->stt - s->st * s->st / n, cv = s->svv - s->sv * s->sv / n,
           ctv = s->stv - s->st * s->sv / n;
    if (ct <= 1e-12)
        return false;
    *slope = ctv / ct;
    *r2 = cv > 1e-18 ? (ctv * ctv) / (ct * cv) : 0;
    return true;
}

/*
 * A trend worth predicting from: the whole window is filled, the line
 * explains most of it (R^2), and the newest half still rises (a step that
 * already levelled off is not a trend). Returns the slope per second or 0.
 */
static double trend(const struct series *s, const struct sample *ring, unsigned window)
{
    double k, r2, k_half, r2_half;
    if (s->count < window || !fit_window(s, &k, &r2) || k <= 0 || r2 < 0.8)
        return 0;
    if (!fit(s, ring, window, window / 2, &k_half, &r2_half) || k_half < 0.5 * k)
        return 0;
    return k;
}

/* The ring of the last `window` samples and its sums: O(1) per sample. */
static void push_window(struct series *s, struct sample *ring, unsigned window, double t, double v)
{
    if (s->count == window) { /* the oldest sample leaves */
        double ot = ring[s->head].t, ov = ring[s->head].v;
        s->st -= ot, s->sv -= ov, s->stt -= ot * ot, s->svv -= ov * ov, s->stv -= ot * ov;
    }
    s->st += t, s->sv += v, s->stt += t * t, s->svv += v * v, s->stv += t * v;
    ring[s->head] = (struct sample){t, v};
    s->head = (s->head + 1) % window;
    if (s->count < window)
        s->count++;
    /* Adding and removing accumulates rounding: start over now and then. */
    if (++s->since_exact >= 1024) {
        s->since_exact = 0;
        s->st = s->sv = s->stt = s->svv = s->stv = 0;
        for (unsigned i = 0; i < s->count; i++) {
            unsigned k = (s->head + window - s->count + i) % window;
            double ti = ring[k].t, vi = ring[k].v;
            s->st += ti, s->sv += vi, s->stt += ti * ti, s->svv += vi * vi, s->stv += ti * vi;
        }
    }
}

static void on_heartbeat(void *state, const struct rd_heartbeat_view *hb)
{
    struct state *st = state;
    if (!hb->has_metrics && hb->progress < 0)
        return;
    struct node *n = slot_node(st, hb->slot);
    if (n == NULL || !node_bind(n, hb->node_id, hb->epoch))
        return;
    double x[M_COUNT] = {hb->error_rate, hb->latency_ms, hb->cpu, hb->mem};
    if (n->base_ns == 0 || hb->arrival_ns < n->base_ns)
        n->base_ns = hb->arrival_ns;
    double t = (double)(hb->arrival_ns - n->base_ns) / 1e9;
    if (t > 86400) { /* a day on: start the windows afresh rather than lose precision */
        for (int m = 0; m < M_COUNT; m++) {
            n->m[m].count = n->m[m].head = 0;
            n->m[m].st = n->m[m].sv = n->m[m].stt = n->m[m].svv = n->m[m].stv = 0;
        }
        n->base_ns = hb->arrival_ns;
        t = 0;
    }
    int verdict = 0, why = -1;
    bool predicted = false;
    double eta_ms = 0, slope = 0;
    for (int m = 0; hb->has_metrics && m < M_COUNT; m++) {
        struct series *s = &n->m[m];
        double z_own = ewma_push(s, x[m], st->alpha, min_sd[m]);
        double z_fleet = ewma_push(&st->fleet[m], x[m], st->alpha / 10, min_sd[m]);
        push_window(s, n->ring[m], st->window, t, x[m]);
        s->over = x[m] >= st->limits[m] ? s->over + 1 : 0;
        if (s->n < st->min_samples)
            continue;
        if (s->over >= st->limit_samples) {
            if (verdict < RD_VERDICT_FAILED)
                why = m;
            verdict = RD_VERDICT_FAILED;
        } else if (s->over > 0 && verdict < RD_VERDICT_SUSPECT) {
            /* Over the limit, not yet for long enough to fail: still trouble,
             * and what was predicted has arrived (never "back to normal"). */
            verdict = RD_VERDICT_SUSPECT;
            why = m;
            if (n->predicted) {
                predicted = true;
                eta_ms = 0;
            }
        } else if (z_own >= st->z && z_fleet >= st->z && verdict < RD_VERDICT_SUSPECT) {
            verdict = RD_VERDICT_SUSPECT;
            why = m;
        }
        double k = x[m] < st->limits[m] ? trend(s, n->ring[m], st->window) : 0;
        if (k > 0) {
            double eta = (st->limits[m] - x[m]) / k;
            if (eta <= st->horizon_s && (!predicted || eta * 1000 < eta_ms)) {
                predicted = true;
                eta_ms = eta * 1000;
                slope = k;
                if (why < 0)
                    why = m;
            }
        }
    }
    /* Task progress (a counter the agent reports): work in hand and no
     * progress for stall_samples heartbeats is a stall, the mark of a hang. */
    bool stall = false;
    if (hb->progress >= 0) {
        if (n->progress >= 0 && hb->progress <= n->progress && hb->slots_used > 0)
            n->stalled++;
        else
            n->stalled = 0;
        n->progress = hb->progress;
        stall = n->stalled >= st->stall_samples;
        if (stall && verdict < RD_VERDICT_SUSPECT) {
            verdict = RD_VERDICT_SUSPECT;
            why = M_COUNT; /* "progress" */
        }
    }
    if (verdict == n->verdict && predicted == n->predicted)
        return;
    n->verdict = verdict;
    n->predicted = predicted;
    n->why = why;
    char detail[160];
    const char *mn = why == M_COUNT ? "progress" : why >= 0 ? metric_names[why] : NULL;
    if (why == M_COUNT)
        snprintf(detail, sizeof(detail),
                 "task progress stalled for %u heartbeats with %u slots busy", n->stalled,
                 hb->slots_used);
    else if (verdict == RD_VERDICT_FAILED || (why >= 0 && n->m[why].over > 0))
        snprintf(detail, sizeof(detail), "%s %g above its limit %g", mn, x[why], st->limits[why]);
    else if (verdict == RD_VERDICT_SUSPECT)
        snprintf(detail, sizeof(detail), "%s %g far above its own and the fleet's baseline", mn,
                 x[why]);
    else if (predicted)
        snprintf(detail, sizeof(detail), "%s heads for its limit %g in about %.0f s", mn,
                 st->limits[why], eta_ms / 1000);
    else
        snprintf(detail, sizeof(detail), "metrics back to normal");
    if (verdict == RD_VERDICT_SUSPECT && st->anomalies)
        (*st->anomalies)++;
    if (predicted && st->predictions)
        (*st->predictions)++;
    struct rd_observation o = {
        .node_id = n->id,
        .epoch = n->epoch,
        .signal = RD_SIG_METRICS,
        .verdict = verdict,
        .value = why == M_COUNT ? (double)n->stalled
                 : why >= 0     ? x[why]
                                : 0,
        .predicted = predicted,
        .eta_ms = eta_ms,
        .trend = slope,
        .metric = mn,
        .detail = detail,
    };
    st->host->observe(st->inst, &o);
}

static void on_node(void *state, int event, const struct rd_node_view *v)
{
    struct state *st = state;
    if (v->slot >= st->cap)
        return;
    struct node *n = &st->nodes[v->slot];
    if (event == RD_NODE_EV_REMOVED || event == RD_NODE_EV_EPOCH ||
        (n->used && n->epoch != v->epoch))
        node_clear(n);
}

static int init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    struct state *st = state;
    st->inst = inst;
    st->host = host;
    st->alpha = host->config_double(inst, "alpha");
    st->z = host->config_double(inst, "z_threshold");
    st->min_samples = (unsigned)host->config_int(inst, "min_samples");
    st->limits[M_ERROR] = host->config_double(inst, "error_rate_limit");
    st->limits[M_LATENCY] = host->config_double(inst, "latency_limit_ms");
    st->limits[M_CPU] = host->config_double(inst, "cpu_limit");
    st->limits[M_MEM] = host->config_double(inst, "mem_limit");
    st->limit_samples = (unsigned)host->config_int(inst, "limit_samples");
    st->window = (unsigned)host->config_int(inst, "predict_window");
    st->horizon_s = (double)host->config_uint(inst, "predict_horizon") / 1000.0;
    st->anomalies = host->counter(inst, "metrics_anomalies", "Metric anomalies reported.");
    st->predictions = host->counter(inst, "metrics_predictions", "Failure predictions reported.");
    st->stall_samples = (unsigned)host->config_int(inst, "stall_samples");
    return 0;
}

static void stop(void *state, void (*done)(rd_plugin_instance_t *))
{
    struct state *st = state;
    done(st->inst);
}

static void destroy(void *state)
{
    struct state *st = state;
    for (uint32_t i = 0; i < st->cap; i++)
        node_clear(&st->nodes[i]);
    tbl_free(st->host, st->nodes, st->cap * sizeof(*st->nodes));
}

static const struct rd_detector_ops ops = {
    .version = RD_DETECTOR_OPS_VERSION,
    .size = sizeof(struct rd_detector_ops),
    .on_node = on_node,
    .on_heartbeat = on_heartbeat,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = "metrics",
    .version = "1.0.0",
    .kind = RD_PLUGIN_DETECTOR,
    .description = "business metrics: limits, anomalies against own and fleet baselines, trends",
    .keys = keys,
    .state_size = sizeof(struct state),
    .init = init,
    .stop = stop,
    .destroy = destroy,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}
