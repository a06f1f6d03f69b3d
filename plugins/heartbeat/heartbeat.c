/*
 * heartbeat: a phi-accrual failure detector (Hayashibara et al., as in
 * Cassandra and Akka) over each agent's heartbeat inter-arrival times.
 *
 * phi = -log10(P(a heartbeat arrives later than now)), with the arrival
 * time modelled as a normal distribution whose mean and standard deviation
 * come from the last `window_size` intervals (never below `min_std_dev`,
 * mean stretched by `acceptable_pause`). The verdict is bounded by the
 * requirement's thresholds:
 *
 *   suspect: phi >= suspect_phi, or two intervals without a heartbeat;
 *   failed:  failure_threshold intervals without a heartbeat, and
 *            phi >= failure_phi (or twice that long, whatever phi says).
 *
 * One late heartbeat therefore never fails an agent. Observations are sent
 * only when an agent's verdict changes.
 *
 * The engine's own stalls are not the agents' fault. Arrival times are
 * stamped when the engine reads a heartbeat, so while its loop is stalled
 * (CPU starvation, a long fsync, a debugger) heartbeats wait in socket
 * buffers and every agent looks silent. The check timer sees the stall as
 * its own lateness: a check that runs more than `stall_threshold` late
 * judges nobody, moves every agent's last arrival forward by the stall and
 * lets the queued heartbeats in first (Cassandra does the same with its
 * local pause detection). A crash during a stall is therefore detected the
 * stall's length later.
 *
 * A loop that is slow but not stopped (a snapshot's fork makes each page
 * it writes a fault; other processes take the CPU) does not make the check
 * late, but heartbeats queue in socket buffers all the same, and in a
 * 10,000-agent storm 40% of the fleet looked late at once and tripped the
 * mass-failure guard. So silence is measured up to the last moment the
 * engine had read all its input (the host's input_drained_ns: when the
 * poll of the loop's last turn returned, about one turn ago), never more
 * than `input_lag_max` before now: a crash is detected the loop's lag
 * later, and at most that much.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recoveryd/plugin.h"

#include "../common/judged.h"
#include "../common/table.h"

#define MAX_WINDOW 1000

struct node {
    bool used;
    char *id;
    uint64_t epoch;
    uint64_t last_ns;  /* last heartbeat (or when the agent was added) */
    bool have_arrival; /* last_ns is a real heartbeat */
    unsigned n, head;
    double sum, sumsq;
    int verdict;
};

struct state {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    struct rd_detection_params p;
    unsigned window;
    double min_std_ms, pause_ms, suspect_phi, failure_phi;
    uint64_t check_ms;
    uint64_t stall_ns;      /* a check this late is a stall of the engine (0: off) */
    uint64_t lag_max_ns;    /* how far before now silence may be judged (0: at now) */
    uint64_t last_check_ns; /* when the previous check ran, 0 before the first */
    rd_timer_t *timer;
    struct node *nodes;     /* indexed by slot */
    double *wins;           /* each slot's `window` intervals (a ring), one table (tbl_resize) */
    uint32_t cap, wins_cap; /* slots in nodes, in wins */
    uint64_t *observations;
    uint64_t *stalls;
    uint64_t *behind; /* checks that judged a check interval or more before now */
};

static const struct rd_plugin_key keys[] = {
    {"window_size", RD_KEY_INT, "100", 2, MAX_WINDOW, "intervals kept per agent"},
    {"min_std_dev", RD_KEY_DURATION, "50ms", 1, 60000, "lower bound of the interval spread"},
    {"acceptable_pause", RD_KEY_DURATION, "0ms", 0, 3600000, "added to the expected interval"},
    {"suspect_phi", RD_KEY_DOUBLE, "5", 0.5, 100, "phi at which an agent is suspected"},
    {"failure_phi", RD_KEY_DOUBLE, "8", 0.5, 100, "phi needed (with the missed intervals) to fail"},
    {"check_interval", RD_KEY_DURATION, "0ms", 0, 60000,
     "how often phi is evaluated (0: a fifth of heartbeat_interval)"},
    {"stall_threshold", RD_KEY_DURATION, "250ms", 0, 3600000,
     "a check this late means the engine stalled: nobody is judged for it (0: off)"},
    {"input_lag_max", RD_KEY_DURATION, "1s", 0, 3600000,
     "silence is judged up to when the engine had read all its input, at most this long ago "
     "(0: up to now)"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static struct node *slot_node(struct state *st, uint32_t slot, bool grow)
{
    if (slot == UINT32_MAX)
        return NULL;
    if (slot >= st->cap) {
        if (!grow)
            return NULL;
        uint32_t ncap = st->cap ? st->cap : 256;
        while (ncap <= slot)
            ncap *= 2;
        /* Both tables out of the forked children's sight (table.h). */
        size_t row = st->window * sizeof(double);
        if (st->wins_cap < ncap) {
            double *nw = tbl_resize(st->host, st->wins, st->wins_cap * row, ncap * row);
            if (nw == NULL)
                return NULL;
            st->wins = nw;
            st->wins_cap = ncap;
        }
        struct node *nn =
            tbl_resize(st->host, st->nodes, st->cap * sizeof(*nn), ncap * sizeof(*nn));
        if (nn == NULL)
            return NULL;
        st->nodes = nn;
        st->cap = ncap;
    }
    return &st->nodes[slot];
}

/* Node `n`'s ring of intervals. */
static double *win_of(const struct state *st, const struct node *n)
{
    return st->wins + (size_t)(n - st->nodes) * st->window;
}

static void node_clear(struct node *n)
{
    free(n->id);
    memset(n, 0, sizeof(*n));
}

static void node_reset(struct state *st, struct node *n, const char *id, uint64_t epoch,
                       uint64_t now)
{
    if (!n->used || n->id == NULL || strcmp(n->id, id) != 0) {
        node_clear(n);
        n->id = strdup(id);
        if (n->id == NULL) {
            node_clear(n);
            return;
        }
        n->used = true;
    }
    n->epoch = epoch;
    n->last_ns = now;
    n->have_arrival = false;
    n->n = n->head = 0;
    n->sum = n->sumsq = 0;
    n->verdict = RD_VERDICT_OK;
}

static void add_interval(struct state *st, struct node *n, double ms)
{
    double *win = win_of(st, n);
    if (n->n == st->window) {
        double old = win[n->head];
        n->sum -= old;
        n->sumsq -= old * old;
    } else {
        n->n++;
    }
    win[n->head] = ms;
    n->head = (n->head + 1) % st->window;
    n->sum += ms;
    n->sumsq += ms * ms;
}

/* phi for `elapsed_ms` since the last heartbeat. */
static double phi(const struct state *st, const struct node *n, double elapsed_ms)
{
    double interval = (double)st->p.heartbeat_interval_ms;
    double mean = interval, sd = interval / 4;
    if (n->n >= 2) { /* until then, assume the configured interval */
        mean = n->sum / n->n;
        double var = n->sumsq / n->n - mean * mean;
        sd = var > 0 ? sqrt(var) : 0;
    }
    if (sd < st->min_std_ms)
        sd = st->min_std_ms;
    mean += st->pause_ms;
    /* Logistic approximation of the normal CDF (Akka's). */
    double y = (elapsed_ms - mean) / sd;
    double e = exp(-y * (1.5976 + 0.070566 * y * y));
    double p_later = elapsed_ms > mean ? e / (1.0 + e) : 1.0 - 1.0 / (1.0 + e);
    if (p_later < 1e-300)
        return 300;
    return -log10(p_later);
}

static void report(struct state *st, struct node *n, int verdict, double ph, double elapsed_ms)
{
    n->verdict = verdict;
    char detail[160];
    if (verdict == RD_VERDICT_OK)
        snprintf(detail, sizeof(detail), "heartbeats arrive again");
    else
        snprintf(detail, sizeof(detail), "no heartbeat for %.0f ms (phi %.1f)", elapsed_ms, ph);
    struct rd_observation o = {
        .node_id = n->id,
        .epoch = n->epoch,
        .signal = RD_SIG_HEARTBEAT,
        .verdict = verdict,
        .value = ph,
        .since_ns = verdict == RD_VERDICT_OK ? 0 : n->last_ns,
        .detail = detail,
    };
    if (st->observations)
        (*st->observations)++;
    st->host->observe(st->inst, &o);
}

/* Silence is judged up to this moment (judged.h), counted when it is a
 * check interval or more before now. */
static uint64_t judged_now(struct state *st, uint64_t now)
{
    uint64_t at = judged_at(st->host, st->inst, now, st->lag_max_ns);
    if (now - at >= st->check_ms * 1000000ULL && st->behind)
        (*st->behind)++;
    return at;
}

static void check(void *data)
{
    struct state *st = data;
    uint64_t now = st->host->now_ns();
    uint64_t due = st->last_check_ns + st->check_ms * 1000000ULL;
    bool stalled = st->stall_ns && st->last_check_ns && now > due + st->stall_ns;
    st->last_check_ns = now;
    if (stalled) {
        uint64_t lag = now - due;
        for (uint32_t i = 0; i < st->cap; i++) {
            struct node *n = &st->nodes[i];
            if (n->used)
                n->last_ns = n->last_ns + lag < now ? n->last_ns + lag : now;
        }
        if (st->stalls)
            (*st->stalls)++;
        return; /* the heartbeats queued meanwhile are read before the next check */
    }
    /*
     * Worse verdicts are reported (better ones only come with a heartbeat),
     * one report per agent: an agent that went from ok straight to failed
     * (a check that came late, under stall_threshold) is reported failed.
     * A check that finds many agents failed at once reports them in one
     * loop turn, which the engine counts toward its mass-failure guard as a
     * whole before it judges any of them (rd_analysis_flush).
     */
    uint64_t judged = judged_now(st, now);
    double interval = (double)st->p.heartbeat_interval_ms;
    double fail_after = interval * st->p.failure_threshold;
    for (uint32_t i = 0; i < st->cap; i++) {
        struct node *n = &st->nodes[i];
        if (!n->used)
            continue;
        double elapsed = judged > n->last_ns ? (double)(judged - n->last_ns) / 1e6 : 0;
        double ph = phi(st, n, elapsed);
        int v = RD_VERDICT_OK;
        if (elapsed >= fail_after && (ph >= st->failure_phi || elapsed >= 2 * fail_after))
            v = RD_VERDICT_FAILED;
        else if (ph >= st->suspect_phi || elapsed >= 2 * interval)
            v = RD_VERDICT_SUSPECT;
        if (v > n->verdict)
            report(st, n, v, ph, elapsed);
    }
}

static void on_node(void *state, int event, const struct rd_node_view *v)
{
    struct state *st = state;
    struct node *n = slot_node(st, v->slot, event != RD_NODE_EV_REMOVED);
    if (n == NULL)
        return;
    switch (event) {
    case RD_NODE_EV_ADDED:
    case RD_NODE_EV_EPOCH:
        node_reset(st, n, v->node_id, v->epoch, st->host->now_ns());
        break;
    case RD_NODE_EV_STATE:
        /* A fenced agent sends no more heartbeats under this epoch. */
        if (strcmp(v->state, "failed") == 0 || strcmp(v->state, "isolated") == 0)
            node_clear(n);
        else if (!n->used || n->epoch != v->epoch)
            node_reset(st, n, v->node_id, v->epoch, st->host->now_ns());
        break;
    case RD_NODE_EV_REMOVED:
        node_clear(n);
        break;
    }
}

static void on_heartbeat(void *state, const struct rd_heartbeat_view *hb)
{
    struct state *st = state;
    struct node *n = slot_node(st, hb->slot, true);
    if (n == NULL)
        return;
    if (!n->used || n->epoch != hb->epoch || strcmp(n->id, hb->node_id) != 0)
        node_reset(st, n, hb->node_id, hb->epoch, hb->arrival_ns);
    if (n->have_arrival && hb->arrival_ns > n->last_ns)
        add_interval(st, n, (double)(hb->arrival_ns - n->last_ns) / 1e6);
    n->last_ns = hb->arrival_ns;
    n->have_arrival = true;
    if (n->verdict != RD_VERDICT_OK)
        report(st, n, RD_VERDICT_OK, 0, 0);
}

static int init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    struct state *st = state;
    st->inst = inst;
    st->host = host;
    host->detection_params(inst, &st->p);
    st->window = (unsigned)host->config_int(inst, "window_size");
    st->min_std_ms = (double)host->config_uint(inst, "min_std_dev");
    st->pause_ms = (double)host->config_uint(inst, "acceptable_pause");
    st->suspect_phi = host->config_double(inst, "suspect_phi");
    st->failure_phi = host->config_double(inst, "failure_phi");
    st->check_ms = host->config_uint(inst, "check_interval");
    if (st->check_ms == 0)
        st->check_ms = st->p.heartbeat_interval_ms / 5 ? st->p.heartbeat_interval_ms / 5 : 1;
    if (st->suspect_phi > st->failure_phi) {
        host->set_error(inst, "suspect_phi (%g) must not be above failure_phi (%g)",
                        st->suspect_phi, st->failure_phi);
        return RD_EINVAL;
    }
    st->stall_ns = host->config_uint(inst, "stall_threshold") * 1000000ULL;
    st->lag_max_ns = host->config_uint(inst, "input_lag_max") * 1000000ULL;
    st->observations = host->counter(inst, "heartbeat_observations",
                                     "Verdict changes reported by the heartbeat detector.");
    st->stalls = host->counter(inst, "heartbeat_engine_stalls",
                               "Checks skipped because the engine itself stalled.");
    st->behind = host->counter(inst, "heartbeat_checks_behind",
                               "Checks that judged silence a check interval or more before now: "
                               "the engine had not read all its input since.");
    return 0;
}

static int start(void *state)
{
    struct state *st = state;
    st->timer = st->host->timer_start(st->inst, st->check_ms, st->check_ms, check, st);
    return st->timer ? 0 : RD_ENOMEM;
}

static void stop(void *state, void (*done)(rd_plugin_instance_t *))
{
    struct state *st = state;
    st->timer = NULL; /* the host stops an instance's timers itself */
    done(st->inst);
}

static void destroy(void *state)
{
    struct state *st = state;
    for (uint32_t i = 0; i < st->cap; i++)
        node_clear(&st->nodes[i]);
    tbl_free(st->host, st->nodes, st->cap * sizeof(*st->nodes));
    tbl_free(st->host, st->wins, st->wins_cap * st->window * sizeof(double));
}

static const struct rd_detector_ops ops = {
    .version = RD_DETECTOR_OPS_VERSION,
    .size = sizeof(struct rd_detector_ops),
    .on_node = on_node,
    .on_heartbeat = on_heartbeat,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = "heartbeat",
    .version = "1.0.0",
    .kind = RD_PLUGIN_DETECTOR,
    .description = "phi-accrual failure detector over heartbeat arrivals",
    .keys = keys,
    .state_size = sizeof(struct state),
    .init = init,
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}
