/*
 * webhook: delivers alerts as HTTP POSTs in the format of Prometheus
 * Alertmanager's webhook receiver (version "4"), so anything that accepts
 * Alertmanager webhooks accepts recoveryd's alerts:
 *
 *   {"version":"4","groupKey":"recoveryd","truncatedAlerts":0,
 *    "status":"firing"|"resolved","receiver":"<instance name>",
 *    "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"",
 *    "alerts":[{"status","labels":{"alertname","node_id","fault_type","severity",...},
 *               "annotations":{"summary","description"},"startsAt","endsAt",
 *               "generatorURL":"","fingerprint"}]}
 *
 * Delivery: a bounded FIFO queue (queue_size alerts), one request in flight
 * carrying up to `batch` alerts from its head. A failed attempt (no answer or
 * a non-2xx status) is retried with the very same batch after a backoff that
 * starts at 100 ms and doubles up to max_backoff; alerts are never dropped
 * while the queue has room. When an alert arrives at a full queue the oldest
 * one is dropped (counted in alerts_dropped; if it belongs to the batch in
 * flight it counts as dropped only should that attempt fail). Counters:
 * alerts_sent, alerts_failed (failed attempts), alerts_dropped.
 *
 * Written only against recoveryd/plugin.h (and jansson). Never blocks.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* strdup, gmtime_r, also when built outside this tree */
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "recoveryd/plugin.h"

#define BACKOFF_START_MS 100
#define ZERO_TIME        "0001-01-01T00:00:00Z" /* Alertmanager's "not ended" */

struct entry {
    json_t *alert; /* one element of "alerts" */
    bool firing;
};

struct wh {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    char *url;
    uint64_t timeout_ms;
    uint64_t max_backoff_ms;
    size_t cap;   /* queue_size */
    size_t batch; /* alerts per request at most */

    struct entry *ring;
    size_t head, count;

    size_t head_n;       /* the current batch: the first head_n queued alerts (0: none) */
    size_t head_dropped; /* of the batch in flight, dropped from the queue meanwhile */
    bool in_flight;
    rd_timer_t *retry; /* a pending retry (one-shot: the host frees it once fired) */
    uint64_t backoff_ms;

    bool started, stopping;
    void (*done)(rd_plugin_instance_t *inst);

    uint64_t *sent, *failed, *dropped;
    uint64_t dummy[3];
};

static const struct rd_plugin_key keys[] = {
    {"url", RD_KEY_STRING, NULL, 0, 0, "http:// or https:// URL the alerts are POSTed to"},
    {"timeout", RD_KEY_DURATION, "2s", 1, 600000, "how long one delivery attempt may take"},
    {"queue_size", RD_KEY_INT, "1000", 1, 100000,
     "alerts kept while the receiver is unreachable; beyond it the oldest is dropped"},
    {"max_backoff", RD_KEY_DURATION, "30s", 100, 86400000, "longest wait between two attempts"},
    {"batch", RD_KEY_INT, "50", 1, 1000, "alerts per request at most"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* ---- the alert document ------------------------------------------------------- */

static void rfc3339(int64_t ms, char out[80])
{
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&secs, &tm)) {
        snprintf(out, 80, "%s", ZERO_TIME);
        return;
    }
    snprintf(out, 80, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static const char *str(const char *s)
{
    return s ? s : "";
}

/* Adds labels_json's members as string labels (numbers and booleans as their
 * JSON text; other kinds and the four fixed labels are left alone). */
static void add_extra_labels(json_t *labels, const char *labels_json)
{
    if (!labels_json || !labels_json[0])
        return;
    json_t *extra = json_loads(labels_json, JSON_DECODE_ANY, NULL);
    if (!json_is_object(extra)) {
        json_decref(extra);
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(extra, k, v)
    {
        if (json_object_get(labels, k))
            continue;
        if (json_is_string(v)) {
            json_object_set(labels, k, v);
        } else if (json_is_number(v) || json_is_boolean(v)) {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            if (text)
                json_object_set_new(labels, k, json_string(text));
            free(text);
        }
    }
    json_decref(extra);
}

static json_t *alert_json(struct wh *w, const struct rd_alert *a)
{
    char starts[80], ends[80];
    rfc3339(a->starts_at_ms, starts);
    if (a->resolved)
        rfc3339(a->ends_at_ms > 0 ? a->ends_at_ms : w->host->now_ms(), ends);
    else
        snprintf(ends, sizeof ends, "%s", ZERO_TIME);
    json_t *labels =
        json_pack("{s:s, s:s, s:s, s:s}", "alertname", str(a->alertname), "node_id",
                  str(a->node_id), "fault_type", str(a->fault_type), "severity", str(a->severity));
    if (!labels)
        return NULL;
    add_extra_labels(labels, a->labels_json);
    return json_pack("{s:s, s:o, s:{s:s, s:s}, s:s, s:s, s:s, s:s}", "status",
                     a->resolved ? "resolved" : "firing", "labels", labels, "annotations",
                     "summary", str(a->summary), "description", str(a->description), "startsAt",
                     starts, "endsAt", ends, "generatorURL", "", "fingerprint",
                     str(a->fingerprint));
}

/* The request body for the first `n` queued alerts; malloc'd, or NULL. */
static char *batch_body(struct wh *w, size_t n)
{
    json_t *alerts = json_array();
    bool firing = false;
    for (size_t i = 0; alerts && i < n; i++) {
        struct entry *e = &w->ring[(w->head + i) % w->cap];
        firing = firing || e->firing;
        json_array_append(alerts, e->alert);
    }
    json_t *doc = json_pack("{s:s, s:s, s:i, s:s, s:s, s:{}, s:{}, s:{}, s:s, s:o}", "version", "4",
                            "groupKey", "recoveryd", "truncatedAlerts", 0, "status",
                            firing ? "firing" : "resolved", "receiver",
                            w->host->instance_name(w->inst), "groupLabels", "commonLabels",
                            "commonAnnotations", "externalURL", "", "alerts", alerts);
    if (!doc)
        return NULL;
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return body;
}

/* ---- the queue -------------------------------------------------------------- */

static void pop_front(struct wh *w)
{
    struct entry *e = &w->ring[w->head];
    json_decref(e->alert);
    e->alert = NULL;
    w->head = (w->head + 1) % w->cap;
    w->count--;
}

/* ---- delivery ----------------------------------------------------------------- */

static void dispatch(struct wh *w);

static void maybe_done(struct wh *w)
{
    if (w->stopping && !w->in_flight && w->done) {
        void (*done)(rd_plugin_instance_t *) = w->done;
        w->done = NULL;
        done(w->inst);
    }
}

static void on_retry(void *data)
{
    struct wh *w = data;
    w->retry = NULL; /* a fired one-shot timer is the host's to free */
    if (!w->stopping)
        dispatch(w);
}

/* One attempt failed: wait, then try the same batch again. */
static void schedule_retry(struct wh *w)
{
    if (w->stopping || w->retry)
        return;
    uint64_t wait = w->backoff_ms;
    w->backoff_ms = w->backoff_ms * 2 > w->max_backoff_ms ? w->max_backoff_ms : w->backoff_ms * 2;
    w->retry = w->host->timer_start(w->inst, wait, 0, on_retry, w);
    if (!w->retry) /* the next alert sent will try again */
        w->host->log(w->inst, RD_PLOG_WARN, "retry_timer_failed", "queued=%zu", w->count);
}

static bool cancelled(const struct rd_http_response *resp)
{
    return resp->status == 0 && resp->cause == RD_PROBE_CANCELLED;
}

static void on_response(void *data, const struct rd_http_response *resp)
{
    struct wh *w = data;
    w->in_flight = false;
    if (resp->status >= 200 && resp->status < 300) {
        for (size_t i = 0; i < w->head_n; i++)
            pop_front(w);
        *w->sent += w->head_n + w->head_dropped;
        w->head_n = 0;
        w->head_dropped = 0;
        w->backoff_ms = BACKOFF_START_MS;
        if (!w->stopping && w->count > 0)
            dispatch(w);
    } else if (cancelled(resp)) {
        /* The host ends an instance's requests only when it stops it: no
         * failed attempt and no retry; the alerts stay queued. */
        *w->dropped += w->head_dropped;
        w->head_dropped = 0;
    } else {
        (*w->failed)++;
        if (resp->status != 0)
            w->host->log(w->inst, RD_PLOG_WARN, "delivery_failed",
                         "status=%d alerts=%zu retry_ms=%llu", resp->status, w->head_n,
                         (unsigned long long)w->backoff_ms);
        else
            w->host->log(w->inst, RD_PLOG_WARN, "delivery_failed",
                         "error=\"%.200s\" alerts=%zu retry_ms=%llu", str(resp->error), w->head_n,
                         (unsigned long long)w->backoff_ms);
        *w->dropped += w->head_dropped;
        w->head_dropped = 0;
        schedule_retry(w);
    }
    maybe_done(w);
}

/* Sends the current batch (forming it from the queue's head if need be). */
static void dispatch(struct wh *w)
{
    if (!w->started || w->stopping || w->in_flight || w->retry)
        return;
    if (w->head_n == 0)
        w->head_n = w->count < w->batch ? w->count : w->batch;
    if (w->head_n == 0)
        return;
    char *body = batch_body(w, w->head_n);
    if (!body) {
        w->host->log(w->inst, RD_PLOG_ERROR, "out_of_memory", "alerts=%zu", w->head_n);
        (*w->failed)++;
        schedule_retry(w);
        return;
    }
    struct rd_http_request req = {
        .method = "POST",
        .url = w->url,
        .body = body,
        .body_len = strlen(body),
        .content_type = "application/json",
        .timeout_ms = w->timeout_ms,
    };
    w->in_flight = true;
    int rv = w->host->http_request(w->inst, &req, on_response, w);
    free(body); /* the host copied it */
    if (rv != 0) {
        w->in_flight = false;
        if (rv == RD_ESHUTDOWN)
            return;
        (*w->failed)++;
        w->host->log(w->inst, RD_PLOG_WARN, "delivery_failed", "error=%d alerts=%zu", rv,
                     w->head_n);
        schedule_retry(w);
    }
}

static void send_alert(void *state, const struct rd_alert *a)
{
    struct wh *w = state;
    if (!a)
        return;
    json_t *j = alert_json(w, a);
    if (!j) {
        (*w->dropped)++;
        w->host->log(w->inst, RD_PLOG_ERROR, "out_of_memory", "fingerprint=%s",
                     str(a->fingerprint));
        return;
    }
    if (w->count == w->cap) {
        /* Full: the oldest alert makes room. */
        if (w->head_n > 0) {
            w->head_n--;
            if (w->in_flight)
                w->head_dropped++; /* counted once that attempt's fate is known */
            else
                (*w->dropped)++;
        } else {
            (*w->dropped)++;
        }
        pop_front(w);
    }
    struct entry *e = &w->ring[(w->head + w->count) % w->cap];
    e->alert = j;
    e->firing = !a->resolved;
    w->count++;
    dispatch(w);
}

/* ---- lifecycle ---------------------------------------------------------------- */

static int wh_init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    struct wh *w = state;
    w->inst = inst;
    w->host = host;
    const char *url = host->config_string(inst, "url");
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        strlen(url) < 9) {
        host->set_error(inst, "url must be an http:// or https:// URL, got '%s'", url ? url : "");
        return RD_ECONFIG;
    }
    w->timeout_ms = host->config_uint(inst, "timeout");
    w->max_backoff_ms = host->config_uint(inst, "max_backoff");
    int64_t q = host->config_int(inst, "queue_size");
    int64_t b = host->config_int(inst, "batch");
    if (q < 1 || q > 100000 || b < 1 || b > 1000) {
        host->set_error(inst, "queue_size must be 1-100000 and batch 1-1000");
        return RD_ECONFIG;
    }
    if (w->max_backoff_ms < BACKOFF_START_MS)
        w->max_backoff_ms = BACKOFF_START_MS;
    w->cap = (size_t)q;
    w->batch = (size_t)b;
    w->backoff_ms = BACKOFF_START_MS;
    w->url = strdup(url);
    w->ring = calloc(w->cap, sizeof *w->ring);
    if (!w->url || !w->ring) {
        free(w->url);
        free(w->ring);
        w->url = NULL;
        w->ring = NULL;
        host->set_error(inst, "out of memory");
        return RD_ENOMEM;
    }
    static const char *const names[3] = {"alerts_sent", "alerts_failed", "alerts_dropped"};
    static const char *const help[3] = {
        "Alerts delivered to the webhook.",
        "Delivery attempts that failed (each is retried).",
        "Alerts dropped because the queue was full.",
    };
    uint64_t **slots[3] = {&w->sent, &w->failed, &w->dropped};
    for (int i = 0; i < 3; i++) {
        *slots[i] = host->counter(inst, names[i], help[i]);
        if (!*slots[i])
            *slots[i] = &w->dummy[i];
    }
    return 0;
}

static int wh_start(void *state)
{
    struct wh *w = state;
    w->started = true;
    dispatch(w);
    return 0;
}

/*
 * A pending retry timer belongs to the host once the instance stops (plugin.h:
 * the host frees an instance's timers then), so it is only forgotten here.
 * done() waits for the request in flight, if any, to call back.
 */
static void wh_stop(void *state, void (*done)(rd_plugin_instance_t *inst))
{
    struct wh *w = state;
    w->stopping = true;
    w->retry = NULL;
    w->done = done;
    if (w->count > 0)
        w->host->log(w->inst, RD_PLOG_WARN, "stopped_with_queue", "undelivered=%zu", w->count);
    maybe_done(w);
}

static void wh_destroy(void *state)
{
    struct wh *w = state;
    while (w->ring && w->count > 0)
        pop_front(w);
    free(w->ring);
    free(w->url);
    w->ring = NULL;
    w->url = NULL;
}

static const struct rd_alert_ops ops = {
    .version = RD_ALERT_OPS_VERSION,
    .size = sizeof(struct rd_alert_ops),
    .send = send_alert,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = "webhook",
    .version = "1.0.0",
    .kind = RD_PLUGIN_ALERT,
    .description = "POSTs alerts in Prometheus Alertmanager's webhook format, queued, batched "
                   "and retried with exponential backoff",
    .keys = keys,
    .state_size = sizeof(struct wh),
    .init = wh_init,
    .start = wh_start,
    .stop = wh_stop,
    .destroy = wh_destroy,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}
