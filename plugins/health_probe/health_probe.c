/*
 * health_probe: an active health-check detector.
 *
 * Every agent registered with a health_url is probed with host->http_request
 * (GET for http:// and https://, a bare connect for tcp://), at most one
 * probe in flight per agent. What a probe says goes to
 * host->observe() as RD_SIG_PROBE, with the probe's cause, so the engine can
 * tell an agent whose process is alive while its heartbeats do not arrive
 * (probe OK) from one whose process is gone (RD_PROBE_REFUSED: nothing
 * listens) or hung (RD_PROBE_TIMEOUT).
 *
 * Observations are sent on changes only, to keep their rate low:
 *   OK       after a success when the previous verdict was not OK (so also
 *            once after the first success of an epoch);
 *   SUSPECT  on the first failure (when failures_to_fail > 1);
 *   FAILED   once failures_to_fail consecutive probes failed;
 * and again when the cause of an ongoing failure changes (a hung process
 * that then dies: TIMEOUT, then REFUSED).
 *
 * Adaptive probing. A probe mostly repeats what the agent's heartbeats
 * already say, and at 1,000 agents probing each every 500 ms was most of
 * the engine's CPU. Each agent's timer ticks every `interval`, but a tick
 * sends a probe only when the agent is under watch:
 *   - its heartbeat is overdue by `late_after` (the heartbeat detector's
 *     phi is climbing: a crash or a network fault is starting), judged, as
 *     the heartbeat detector judges, up to when the engine had read all
 *     its input and at most `input_lag_max` before now (judged.h): an
 *     engine behind on its input would otherwise probe agents whose
 *     heartbeats wait in its own sockets;
 *   - its state is suspect or probation (another detector is in doubt);
 *   - its last heartbeat's metrics look wrong (cpu, mem or error rate at
 *     the watch_* shares, or tasks in hand and no progress for
 *     `watch_stall` heartbeats: the mark of a hang whose heartbeat thread
 *     lives on);
 *   - its last probe failed, or it has not been probed in this epoch;
 * and otherwise only every `idle_interval`, which is what finds a hang that
 * heartbeats and metrics hide. An agent entering one of the first three
 * conditions is probed at once, not at its next tick. A fenced agent
 * (failed, isolated, left: the engine ignores its probes until it registers
 * again) is probed every `idle_interval` whatever its probes say.
 * `idle_interval: 0ms` probes every agent every interval (the behaviour
 * before).
 *
 * At most `max_in_flight` probes are in flight at once; a probe that would
 * pass it is not sent (counted as deferred): the agent's next tick, or the
 * next lateness check, tries again. An engine that falls behind answers its
 * probes late, and every late heartbeat puts another agent under watch: at
 * 10,000 agents the probes in flight grew to thousands and libcurl 7.88,
 * whose cost per transfer grows with the connections open, took the whole
 * loop (docs/benchmarks.md, "Crash detection latency against the fleet
 * size"). The bound makes the probes give way when their answers come late.
 *
 * Written only against recoveryd/plugin.h. Everything runs on the loop.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* strdup, also when built outside this tree */
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recoveryd/plugin.h"

#include "../common/judged.h"

#define PLUGIN_NAME    "health_probe"
#define PLUGIN_VERSION "1.0.0"

/* One agent being probed. */
struct pnode {
    struct hp *hp;
    struct pnode *next; /* hash chain, or the orphan list once removed */
    char *id;
    char *url;
    uint64_t epoch;
    uint64_t gen;      /* bumped when the epoch or the URL changes */
    rd_timer_t *timer; /* NULL until started (and once the instance stops) */
    bool in_flight;
    uint64_t probe_gen; /* gen when the probe in flight was sent */
    bool removed;       /* left while a probe was in flight: freed by its callback */
    unsigned failures;  /* consecutive */
    int last_verdict;   /* -1: nothing observed yet in this epoch */
    int last_cause;
    uint64_t last_ok_ns; /* monotonic time of the last success, 0 = none */
    /* What decides whether a tick probes (see due()). */
    uint32_t slot;         /* the host's dense number, for on_heartbeat */
    uint64_t last_hb_ns;   /* last heartbeat of this epoch, or when it began */
    uint64_t last_sent_ns; /* last probe sent, 0 = none in this epoch */
    bool not_alive;        /* suspect, probation: another detector is in doubt */
    bool fenced;           /* failed, isolated, left: the engine ignores probes */
    bool bad_metrics;      /* its last heartbeat's metrics look wrong */
    double progress;       /* last reported progress counter, -1 = none */
    unsigned stalled;      /* heartbeats with slots busy and no progress */
    /* The lateness list: agents by last heartbeat, oldest first (see
     * on_late_check). Out of it once found late, until the next heartbeat. */
    struct pnode *lprev, *lnext;
    bool listed;
};

struct hp {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    uint64_t interval_ms;
    uint64_t idle_ms; /* 0: every interval */
    uint64_t late_ms;
    uint64_t lag_max_ns; /* lateness judged at most this far before now (judged.h) */
    uint64_t timeout_ms;
    unsigned failures_to_fail;
    unsigned max_in_flight;
    double watch_cpu, watch_mem, watch_error_rate;
    unsigned watch_stall;
    struct pnode **by_slot; /* on_heartbeat's index; the hash is the truth */
    uint32_t slot_cap;
    struct pnode *lhead, *ltail; /* the lateness list */
    uint64_t late_check_ms;
    rd_timer_t *late_timer;
    struct pnode **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    struct pnode *orphans; /* removed, waiting for their probe's callback */
    unsigned in_flight;
    bool started, stopping;
    void (*done)(rd_plugin_instance_t *inst);
    uint64_t *probes, *probe_failures, *idle_skips, *deferred;
    uint64_t dummy_counter;
};

static const struct rd_plugin_key keys[] = {
    {"interval", RD_KEY_DURATION, "1s", 10, 86400000,
     "time between two probes of an agent under watch (late heartbeats, not alive, bad metrics, "
     "a failed probe)"},
    {"idle_interval", RD_KEY_DURATION, "10s", 0, 86400000,
     "time between two probes of an agent whose heartbeats and metrics are fine; at least "
     "interval; 0ms: every interval"},
    {"late_after", RD_KEY_DURATION, "0ms", 0, 3600000,
     "a heartbeat this overdue puts the agent under watch and probes it at once; 0ms: 1.25 x "
     "detection.heartbeat_interval"},
    {"input_lag_max", RD_KEY_DURATION, "1s", 0, 3600000,
     "lateness is judged up to when the engine had read all its input, at most this long ago "
     "(0ms: up to now)"},
    {"watch_cpu", RD_KEY_DOUBLE, "0.9", 0, 1, "reported cpu share that puts an agent under watch"},
    {"watch_mem", RD_KEY_DOUBLE, "0.95", 0, 1, "reported mem share that puts an agent under watch"},
    {"watch_error_rate", RD_KEY_DOUBLE, "0.5", 0, 1,
     "reported error rate that puts an agent under watch"},
    {"watch_stall", RD_KEY_INT, "3", 0, 1000,
     "heartbeats with tasks in hand and no progress that put an agent under watch; 0: off"},
    {"timeout", RD_KEY_DURATION, "0ms", 0, 3600000,
     "how long one probe may take; 0ms: detection.health_check_timeout"},
    {"failures_to_fail", RD_KEY_INT, "0", 0, 1000,
     "consecutive failed probes that make a FAILED verdict; 0: detection.failure_threshold"},
    {"max_in_flight", RD_KEY_INT, "256", 1, 1000000,
     "probes in flight at once, at most; beyond, an agent is probed at its next tick"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* ---- the table of agents ---------------------------------------------------- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static struct pnode **slot_of(struct hp *hp, const char *id)
{
    struct pnode **pp = &hp->buckets[fnv1a(id) & (hp->nbuckets - 1)];
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

static int grow(struct hp *hp)
{
    size_t n = hp->nbuckets ? hp->nbuckets * 2 : 64;
    struct pnode **b = calloc(n, sizeof *b);
    if (!b)
        return RD_ENOMEM;
    for (size_t i = 0; i < hp->nbuckets; i++) {
        for (struct pnode *p = hp->buckets[i], *next; p; p = next) {
            next = p->next;
            size_t j = fnv1a(p->id) & (n - 1);
            p->next = b[j];
            b[j] = p;
        }
    }
    free(hp->buckets);
    hp->buckets = b;
    hp->nbuckets = n;
    return 0;
}

static void node_free(struct pnode *n)
{
    free(n->id);
    free(n->url);
    free(n);
}

/* The lateness list. Heartbeats arrive in time order, so appending on each
 * keeps it sorted by last heartbeat. */
static void late_unlink(struct hp *hp, struct pnode *n)
{
    if (!n->listed)
        return;
    if (n->lprev)
        n->lprev->lnext = n->lnext;
    else
        hp->lhead = n->lnext;
    if (n->lnext)
        n->lnext->lprev = n->lprev;
    else
        hp->ltail = n->lprev;
    n->lprev = n->lnext = NULL;
    n->listed = false;
}

static void late_append(struct hp *hp, struct pnode *n)
{
    late_unlink(hp, n);
    n->lprev = hp->ltail;
    n->lnext = NULL;
    if (hp->ltail)
        hp->ltail->lnext = n;
    else
        hp->lhead = n;
    hp->ltail = n;
    n->listed = true;
}

/* ---- probing ---------------------------------------------------------------- */

static void maybe_done(struct hp *hp)
{
    if (hp->stopping && hp->in_flight == 0 && hp->done) {
        void (*done)(rd_plugin_instance_t *) = hp->done;
        hp->done = NULL;
        done(hp->inst);
    }
}

static void observe(struct hp *hp, struct pnode *n, int verdict, int cause, double ms,
                    const char *detail)
{
    /* When the trouble began: after the last good probe, which may be an
     * idle_interval old; a refused connection (the process is gone) also
     * after its last heartbeat. */
    uint64_t since = n->last_ok_ns;
    if (cause == RD_PROBE_REFUSED && n->last_hb_ns > since)
        since = n->last_hb_ns;
    struct rd_observation o = {
        .node_id = n->id,
        .epoch = n->epoch,
        .signal = RD_SIG_PROBE,
        .verdict = verdict,
        .value = ms,
        .probe_cause = cause,
        .since_ns = since,
        .detail = detail,
    };
    hp->host->observe(hp->inst, &o);
    n->last_verdict = verdict;
    n->last_cause = cause;
}

/* The verdict of one finished probe. */
static void judge(struct hp *hp, struct pnode *n, const struct rd_http_response *resp)
{
    double ms = (double)resp->elapsed_ns / 1e6;
    char detail[256];
    if (resp->status >= 200 && resp->status < 300) {
        n->failures = 0;
        n->last_ok_ns = hp->host->now_ns();
        if (n->last_verdict != RD_VERDICT_OK) {
            snprintf(detail, sizeof detail, "answered %d in %.0f ms", resp->status, ms);
            observe(hp, n, RD_VERDICT_OK, RD_PROBE_NONE, ms, detail);
        }
        return;
    }
    (*hp->probe_failures)++;
    int cause;
    if (resp->status != 0) {
        cause = RD_PROBE_STATUS;
        snprintf(detail, sizeof detail, "status %d", resp->status);
    } else if (resp->cause == RD_PROBE_REFUSED) {
        cause = RD_PROBE_REFUSED;
        snprintf(detail, sizeof detail, "connection refused");
    } else if (resp->cause == RD_PROBE_TIMEOUT) {
        cause = RD_PROBE_TIMEOUT;
        snprintf(detail, sizeof detail, "no answer within %llu ms",
                 (unsigned long long)hp->timeout_ms);
    } else {
        cause = RD_PROBE_NETWORK;
        snprintf(detail, sizeof detail, "network error: %.200s",
                 resp->error && resp->error[0] ? resp->error : "unknown");
    }
    if (n->failures < UINT32_MAX)
        n->failures++;
    int verdict = n->failures >= hp->failures_to_fail ? RD_VERDICT_FAILED : RD_VERDICT_SUSPECT;
    if (verdict != n->last_verdict || cause != n->last_cause)
        observe(hp, n, verdict, cause, ms, detail);
}

/* The host ends the requests of a stopping instance with this answer: it
 * says nothing about the agent. */
static bool cancelled(const struct rd_http_response *resp)
{
    return resp->status == 0 && resp->cause == RD_PROBE_CANCELLED;
}

static void on_probe(void *data, const struct rd_http_response *resp)
{
    struct pnode *n = data;
    struct hp *hp = n->hp;
    n->in_flight = false;
    hp->in_flight--;
    if (n->removed) {
        for (struct pnode **pp = &hp->orphans; *pp; pp = &(*pp)->next) {
            if (*pp == n) {
                *pp = n->next;
                break;
            }
        }
        node_free(n);
    } else if (!hp->stopping && n->probe_gen == n->gen && !cancelled(resp)) {
        judge(hp, n, resp);
    }
    maybe_done(hp);
}

static uint64_t ms_ns(uint64_t ms)
{
    return ms * 1000000ull;
}

/* Whether `n` was probed less than 3/4 of an interval ago: consecutive
 * failures then stay about an interval apart whatever sent them (ticks,
 * lateness, a state change), as failures_to_fail assumes; three refusals
 * within 100 ms would fail a crashed agent as "degraded" before its
 * heartbeats say anything. */
static bool too_soon(const struct hp *hp, const struct pnode *n, uint64_t now)
{
    return n->last_sent_ns != 0 && now > n->last_sent_ns &&
           now - n->last_sent_ns < ms_ns(hp->interval_ms) * 3 / 4;
}

/* Sends one probe of `n` now (none when one is in flight or too soon). */
static void send_probe(struct hp *hp, struct pnode *n)
{
    if (hp->stopping || n->removed || n->in_flight)
        return; /* at most one probe in flight per agent */
    if (hp->idle_ms != 0 && too_soon(hp, n, hp->host->now_ns()))
        return;
    if (hp->in_flight >= hp->max_in_flight) {
        (*hp->deferred)++;
        return;
    }
    bool tcp = strncmp(n->url, "tcp://", 6) == 0;
    struct rd_http_request req = {
        .method = tcp ? NULL : "GET",
        .url = n->url,
        .timeout_ms = hp->timeout_ms,
    };
    n->in_flight = true;
    n->probe_gen = n->gen;
    uint64_t now = hp->host->now_ns();
    if (n->last_sent_ns == 0 && hp->idle_ms > hp->interval_ms) {
        /* The first probe of an epoch. Agents registered together would
         * keep probing together every idle_interval (a burst the size of the
         * fleet): the next idle probe comes between interval and
         * idle_interval from now, by the agent's slot. */
        uint64_t back = ms_ns(((uint64_t)n->slot * 2654435761u) % (hp->idle_ms - hp->interval_ms));
        n->last_sent_ns = now > back + 1 ? now - back : 1;
    } else {
        n->last_sent_ns = now;
    }
    hp->in_flight++;
    (*hp->probes)++;
    int rv = hp->host->http_request(hp->inst, &req, on_probe, n);
    if (rv == 0)
        return;
    n->in_flight = false;
    hp->in_flight--;
    if (rv == RD_ESHUTDOWN)
        return; /* the instance is being stopped */
    /* The host would not even send it (a URL it cannot use): a failure of
     * this agent's health check all the same. */
    struct rd_http_response r = {.status = 0, .cause = RD_PROBE_NETWORK, .error = "probe not sent"};
    judge(hp, n, &r);
}

/* Its heartbeat overdue by late_after at `judged` (judged.h: not now, so
 * that heartbeats the loop has not read yet do not make agents late). */
static bool late(const struct hp *hp, const struct pnode *n, uint64_t judged)
{
    return judged > n->last_hb_ns && judged - n->last_hb_ns > ms_ns(hp->late_ms);
}

/* Under watch: probed every interval (the header comment says why). */
static bool watched(const struct hp *hp, const struct pnode *n, uint64_t now)
{
    return n->not_alive || n->bad_metrics || n->last_verdict != RD_VERDICT_OK || n->failures > 0 ||
           late(hp, n, judged_at(hp->host, hp->inst, now, hp->lag_max_ns));
}

/* Whether a tick at `now` probes `n`. An idle agent is probed once its last
 * probe is idle_interval old, give or take half a tick (timers drift). A
 * fenced agent (failed, isolated, left) must register again, and until it
 * does the engine ignores what its probes say: the idle cycle is enough. */
static bool due(const struct hp *hp, const struct pnode *n, uint64_t now)
{
    if (hp->idle_ms == 0 || n->last_sent_ns == 0 || (!n->fenced && watched(hp, n, now)))
        return true;
    return now - n->last_sent_ns + ms_ns(hp->interval_ms) / 2 >= ms_ns(hp->idle_ms);
}

static void on_tick(void *data)
{
    struct pnode *n = data;
    struct hp *hp = n->hp;
    if (hp->stopping || n->removed || n->in_flight)
        return;
    if (!due(hp, n, hp->host->now_ns())) {
        (*hp->idle_skips)++;
        return;
    }
    send_probe(hp, n);
}

static void node_start_timer(struct hp *hp, struct pnode *n)
{
    if (!hp->started || hp->stopping || n->timer)
        return;
    /* Spread the agents over the interval rather than probing all at once. */
    uint64_t first = fnv1a(n->id) % hp->interval_ms;
    n->timer = hp->host->timer_start(hp->inst, first, hp->interval_ms, on_tick, n);
    if (!n->timer)
        hp->host->log(hp->inst, RD_PLOG_ERROR, "timer_failed", "node=%s", n->id);
}

/* Forgets an agent; one with a probe in flight waits for its callback. */
static void node_remove(struct hp *hp, struct pnode **pp)
{
    struct pnode *n = *pp;
    *pp = n->next;
    hp->count--;
    late_unlink(hp, n);
    if (n->slot < hp->slot_cap && hp->by_slot[n->slot] == n)
        hp->by_slot[n->slot] = NULL;
    if (n->timer)
        hp->host->timer_stop(n->timer);
    n->timer = NULL;
    if (n->in_flight) {
        n->removed = true;
        n->next = hp->orphans;
        hp->orphans = n;
    } else {
        node_free(n);
    }
}

/* Starts a new epoch (or URL) for `n`: what was seen before is forgotten. */
static void node_reset(struct pnode *n)
{
    n->gen++;
    n->failures = 0;
    n->last_verdict = -1;
    n->last_cause = RD_PROBE_NONE;
    n->last_ok_ns = 0;
    /* A new epoch gets a full heartbeat lateness allowance, as it gets a
     * lease from the engine, and a probe at its next tick. */
    n->last_hb_ns = n->hp->host->now_ns();
    late_append(n->hp, n);
    n->last_sent_ns = 0;
    n->bad_metrics = false;
    n->progress = -1;
    n->stalled = 0;
}

/* Indexes `n` by the host's slot (best effort: without room, on_heartbeat
 * falls back to the hash). */
static void index_slot(struct hp *hp, struct pnode *n, uint32_t slot)
{
    if (n->slot < hp->slot_cap && hp->by_slot[n->slot] == n)
        hp->by_slot[n->slot] = NULL;
    n->slot = slot;
    if (slot >= hp->slot_cap) {
        uint32_t cap = hp->slot_cap ? hp->slot_cap : 64;
        while (cap <= slot && cap < UINT32_MAX / 2)
            cap *= 2;
        if (cap <= slot)
            return;
        struct pnode **b = realloc(hp->by_slot, cap * sizeof *b);
        if (!b)
            return;
        memset(b + hp->slot_cap, 0, (cap - hp->slot_cap) * sizeof *b);
        hp->by_slot = b;
        hp->slot_cap = cap;
    }
    hp->by_slot[slot] = n;
}

/* The node's state. Suspect or probation puts it under watch, and entering
 * such a state probes at once (the heartbeat detector or the metrics one
 * made it suspect: the probe tells a crash from a hang from the network).
 * Alive and draining are judged by heartbeats and metrics; failed, isolated
 * and left are fenced. */
static void set_state(struct hp *hp, struct pnode *n, const char *state)
{
    n->fenced = state && (strcmp(state, "failed") == 0 || strcmp(state, "isolated") == 0 ||
                          strcmp(state, "left") == 0);
    bool not_alive =
        state && !n->fenced && strcmp(state, "alive") != 0 && strcmp(state, "draining") != 0;
    bool entered = not_alive && !n->not_alive;
    n->not_alive = not_alive;
    if (entered && n->timer)
        send_probe(hp, n);
}

static void on_node(void *state, int event, const struct rd_node_view *v)
{
    struct hp *hp = state;
    if (!v || !v->node_id)
        return;
    struct pnode **pp = slot_of(hp, v->node_id);
    struct pnode *n = *pp;
    bool wanted = event != RD_NODE_EV_REMOVED && v->health_url && v->health_url[0];
    if (!wanted) {
        if (n)
            node_remove(hp, pp);
        return;
    }
    if (n) {
        if (event == RD_NODE_EV_EPOCH || v->epoch != n->epoch) {
            n->epoch = v->epoch;
            node_reset(n);
        }
        if (strcmp(n->url, v->health_url) != 0) {
            char *url = strdup(v->health_url);
            if (!url)
                return;
            free(n->url);
            n->url = url;
            node_reset(n);
        }
        index_slot(hp, n, v->slot);
        set_state(hp, n, v->state);
        return;
    }
    if (hp->count + 1 > hp->nbuckets && grow(hp) != 0)
        return;
    n = calloc(1, sizeof *n);
    if (!n || !(n->id = strdup(v->node_id)) || !(n->url = strdup(v->health_url))) {
        if (n)
            node_free(n);
        hp->host->log(hp->inst, RD_PLOG_ERROR, "out_of_memory", "node=%s", v->node_id);
        return;
    }
    n->hp = hp;
    n->epoch = v->epoch;
    node_reset(n);
    pp = slot_of(hp, v->node_id);
    n->next = *pp;
    *pp = n;
    hp->count++;
    index_slot(hp, n, v->slot);
    set_state(hp, n, v->state); /* no timer yet: no probe from here */
    node_start_timer(hp, n);
}

/* Whether a heartbeat's metrics look wrong (and the stall count it leaves). */
static bool metrics_wrong(const struct hp *hp, struct pnode *n, const struct rd_heartbeat_view *hb)
{
    if (hb->progress >= 0) {
        if (n->progress >= 0 && hb->progress <= n->progress && hb->slots_used > 0)
            n->stalled++;
        else
            n->stalled = 0;
        n->progress = hb->progress;
    }
    if (hp->watch_stall > 0 && n->stalled >= hp->watch_stall)
        return true;
    return hb->has_metrics && (hb->cpu >= hp->watch_cpu || hb->mem >= hp->watch_mem ||
                               hb->error_rate >= hp->watch_error_rate);
}

static void on_heartbeat(void *state, const struct rd_heartbeat_view *hb)
{
    struct hp *hp = state;
    if (!hb || !hb->node_id)
        return;
    struct pnode *n = hb->slot < hp->slot_cap ? hp->by_slot[hb->slot] : NULL;
    if (!n || strcmp(n->id, hb->node_id) != 0)
        n = *slot_of(hp, hb->node_id);
    if (!n || n->epoch != hb->epoch)
        return;
    n->last_hb_ns = hb->arrival_ns ? hb->arrival_ns : hp->host->now_ns();
    late_append(hp, n);
    bool bad = metrics_wrong(hp, n, hb);
    bool entered = bad && !n->bad_metrics;
    n->bad_metrics = bad;
    if (entered && n->timer)
        send_probe(hp, n);
}

/*
 * Every late_check_ms: the agents whose last heartbeat is more than
 * late_after old are probed now rather than at their next tick (a crashed
 * agent is then suspected by its refused probe before phi says so, and the
 * scheduler stops placing tasks on it). Only the head of the list is looked
 * at: the cost is the late agents, not the fleet. A late agent leaves the
 * list until its next heartbeat; its ticks keep probing it meanwhile.
 */
static void on_late_check(void *data)
{
    struct hp *hp = data;
    if (hp->stopping)
        return;
    uint64_t judged = judged_at(hp->host, hp->inst, hp->host->now_ns(), hp->lag_max_ns);
    /* At max_in_flight the rest stay listed for the next check. */
    while (hp->lhead && hp->in_flight < hp->max_in_flight && late(hp, hp->lhead, judged)) {
        struct pnode *n = hp->lhead;
        late_unlink(hp, n);
        if (!n->fenced && n->timer)
            send_probe(hp, n);
    }
}

/* ---- lifecycle ---------------------------------------------------------------- */

static int hp_init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    struct hp *hp = state;
    hp->inst = inst;
    hp->host = host;
    struct rd_detection_params dp = {0};
    host->detection_params(inst, &dp);
    hp->interval_ms = host->config_uint(inst, "interval");
    hp->idle_ms = host->config_uint(inst, "idle_interval");
    hp->lag_max_ns = host->config_uint(inst, "input_lag_max") * 1000000ULL;
    hp->late_ms = host->config_uint(inst, "late_after");
    if (hp->late_ms == 0)
        hp->late_ms = dp.heartbeat_interval_ms + dp.heartbeat_interval_ms / 4;
    if (hp->late_ms == 0)
        hp->late_ms = 1250;
    hp->late_check_ms = dp.heartbeat_interval_ms / 5;
    if (hp->late_check_ms < 10)
        hp->late_check_ms = 10;
    hp->watch_cpu = host->config_double(inst, "watch_cpu");
    hp->watch_mem = host->config_double(inst, "watch_mem");
    hp->watch_error_rate = host->config_double(inst, "watch_error_rate");
    hp->watch_stall = (unsigned)host->config_int(inst, "watch_stall");
    hp->timeout_ms = host->config_uint(inst, "timeout");
    if (hp->timeout_ms == 0)
        hp->timeout_ms = dp.health_check_timeout_ms;
    if (hp->timeout_ms == 0)
        hp->timeout_ms = 1000;
    int64_t f = host->config_int(inst, "failures_to_fail");
    hp->failures_to_fail = f > 0 ? (unsigned)f : dp.failure_threshold;
    if (hp->failures_to_fail == 0)
        hp->failures_to_fail = 1;
    hp->max_in_flight = (unsigned)host->config_int(inst, "max_in_flight");
    if (hp->interval_ms == 0) {
        host->set_error(inst, "interval must be at least 1ms");
        return RD_ECONFIG;
    }
    if (hp->idle_ms != 0 && hp->idle_ms < hp->interval_ms) {
        host->set_error(inst,
                        "idle_interval (%llums) must be 0ms (probe every agent every interval) or "
                        "at least interval (%llums)",
                        (unsigned long long)hp->idle_ms, (unsigned long long)hp->interval_ms);
        return RD_ECONFIG;
    }
    hp->probes = host->counter(inst, "probes", "Health probes sent.");
    hp->probe_failures = host->counter(inst, "probe_failures", "Health probes that failed.");
    hp->idle_skips = host->counter(inst, "idle_skips",
                                   "Probe ticks that sent nothing: the agent's heartbeats and "
                                   "metrics were fine and its last probe recent.");
    hp->deferred = host->counter(inst, "probes_deferred",
                                 "Probes not sent because max_in_flight were in flight.");
    if (!hp->deferred)
        hp->deferred = &hp->dummy_counter;
    if (!hp->probes)
        hp->probes = &hp->dummy_counter;
    if (!hp->probe_failures)
        hp->probe_failures = &hp->dummy_counter;
    if (!hp->idle_skips)
        hp->idle_skips = &hp->dummy_counter;
    if (grow(hp) != 0) {
        host->set_error(inst, "out of memory");
        return RD_ENOMEM;
    }
    return 0;
}

static int hp_start(void *state)
{
    struct hp *hp = state;
    hp->started = true;
    if (hp->idle_ms != 0) {
        hp->late_timer = hp->host->timer_start(hp->inst, hp->late_check_ms, hp->late_check_ms,
                                               on_late_check, hp);
        if (!hp->late_timer)
            hp->host->log(hp->inst, RD_PLOG_ERROR, "timer_failed", "late_check");
    }
    for (size_t i = 0; i < hp->nbuckets; i++)
        for (struct pnode *n = hp->buckets[i]; n; n = n->next)
            node_start_timer(hp, n);
    hp->host->log(hp->inst, RD_PLOG_INFO, "started",
                  "interval_ms=%llu idle_interval_ms=%llu late_after_ms=%llu timeout_ms=%llu "
                  "failures_to_fail=%u max_in_flight=%u",
                  (unsigned long long)hp->interval_ms, (unsigned long long)hp->idle_ms,
                  (unsigned long long)hp->late_ms, (unsigned long long)hp->timeout_ms,
                  hp->failures_to_fail, hp->max_in_flight);
    return 0;
}

/*
 * The host frees an instance's timers when it stops (plugin.h), so they are
 * forgotten here, not stopped. Probes still in flight call back (the host
 * ends them); their answers are ignored, and done() waits for the last one
 * so no callback can reach this state after it.
 */
static void hp_stop(void *state, void (*done)(rd_plugin_instance_t *inst))
{
    struct hp *hp = state;
    hp->stopping = true;
    hp->done = done;
    hp->late_timer = NULL;
    for (size_t i = 0; i < hp->nbuckets; i++)
        for (struct pnode *n = hp->buckets[i]; n; n = n->next)
            n->timer = NULL;
    maybe_done(hp);
}

static void hp_destroy(void *state)
{
    struct hp *hp = state;
    for (size_t i = 0; i < hp->nbuckets; i++) {
        for (struct pnode *n = hp->buckets[i], *next; n; n = next) {
            next = n->next;
            node_free(n);
        }
    }
    for (struct pnode *n = hp->orphans, *next; n; n = next) {
        next = n->next;
        node_free(n);
    }
    free(hp->buckets);
    free(hp->by_slot);
    hp->buckets = NULL;
    hp->by_slot = NULL;
    hp->slot_cap = 0;
    hp->orphans = NULL;
}

static const struct rd_detector_ops ops = {
    .version = RD_DETECTOR_OPS_VERSION,
    .size = sizeof(struct rd_detector_ops),
    .on_node = on_node,
    .on_heartbeat = on_heartbeat,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = PLUGIN_NAME,
    .version = PLUGIN_VERSION,
    .kind = RD_PLUGIN_DETECTOR,
    .description = "Probes each agent's health_url (http, https or tcp) and reports why a probe "
                   "fails: refused (process gone), timeout (hung), status, network",
    .keys = keys,
    .state_size = sizeof(struct hp),
    .init = hp_init,
    .start = hp_start,
    .stop = hp_stop,
    .destroy = hp_destroy,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}
