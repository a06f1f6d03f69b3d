/*
 * health_probe: an active health-check detector.
 *
 * Every agent registered with a health_url is probed every `interval` with
 * host->http_request (GET for http:// and https://, a bare connect for
 * tcp://), at most one probe in flight per agent. What a probe says goes to
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
};

struct hp {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    uint64_t interval_ms;
    uint64_t timeout_ms;
    unsigned failures_to_fail;
    struct pnode **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    struct pnode *orphans; /* removed, waiting for their probe's callback */
    unsigned in_flight;
    bool started, stopping;
    void (*done)(rd_plugin_instance_t *inst);
    uint64_t *probes, *probe_failures;
    uint64_t dummy_counter;
};

static const struct rd_plugin_key keys[] = {
    {"interval", RD_KEY_DURATION, "1s", 10, 86400000, "time between two probes of one agent"},
    {"timeout", RD_KEY_DURATION, "0ms", 0, 3600000,
     "how long one probe may take; 0ms: detection.health_check_timeout"},
    {"failures_to_fail", RD_KEY_INT, "0", 0, 1000,
     "consecutive failed probes that make a FAILED verdict; 0: detection.failure_threshold"},
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
    struct rd_observation o = {
        .node_id = n->id,
        .epoch = n->epoch,
        .signal = RD_SIG_PROBE,
        .verdict = verdict,
        .value = ms,
        .probe_cause = cause,
        .since_ns = n->last_ok_ns,
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

static void on_tick(void *data)
{
    struct pnode *n = data;
    struct hp *hp = n->hp;
    if (hp->stopping || n->removed || n->in_flight)
        return; /* at most one probe in flight per agent */
    bool tcp = strncmp(n->url, "tcp://", 6) == 0;
    struct rd_http_request req = {
        .method = tcp ? NULL : "GET",
        .url = n->url,
        .timeout_ms = hp->timeout_ms,
    };
    n->in_flight = true;
    n->probe_gen = n->gen;
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
    node_start_timer(hp, n);
}

static void on_heartbeat(void *state, const struct rd_heartbeat_view *hb)
{
    (void)state;
    (void)hb;
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
    hp->timeout_ms = host->config_uint(inst, "timeout");
    if (hp->timeout_ms == 0)
        hp->timeout_ms = dp.health_check_timeout_ms;
    if (hp->timeout_ms == 0)
        hp->timeout_ms = 1000;
    int64_t f = host->config_int(inst, "failures_to_fail");
    hp->failures_to_fail = f > 0 ? (unsigned)f : dp.failure_threshold;
    if (hp->failures_to_fail == 0)
        hp->failures_to_fail = 1;
    if (hp->interval_ms == 0) {
        host->set_error(inst, "interval must be at least 1ms");
        return RD_ECONFIG;
    }
    hp->probes = host->counter(inst, "probes", "Health probes sent.");
    hp->probe_failures = host->counter(inst, "probe_failures", "Health probes that failed.");
    if (!hp->probes)
        hp->probes = &hp->dummy_counter;
    if (!hp->probe_failures)
        hp->probe_failures = &hp->dummy_counter;
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
    for (size_t i = 0; i < hp->nbuckets; i++)
        for (struct pnode *n = hp->buckets[i]; n; n = n->next)
            node_start_timer(hp, n);
    hp->host->log(hp->inst, RD_PLOG_INFO, "started",
                  "interval_ms=%llu timeout_ms=%llu failures_to_fail=%u",
                  (unsigned long long)hp->interval_ms, (unsigned long long)hp->timeout_ms,
                  hp->failures_to_fail);
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
    hp->buckets = NULL;
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
