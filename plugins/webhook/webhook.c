/*
 * webhook: delivers alerts as HTTP POSTs, in one of two formats (`format`):
 *
 * alertmanager (the default): Prometheus Alertmanager's intake API, POST
 *   <url> (http://am:9093/api/v2/alerts; a URL without a path gets
 *   /api/v2/alerts) with a JSON array of alerts:
 *     [{"labels":{"alertname","severity","cluster","node_id","fault_type",...},
 *       "annotations":{"summary","description","alert_id","replica"},
 *       "startsAt","endsAt","generatorURL"}]
 *   A firing alert is held and sent again every resend_interval, as
 *   Prometheus does (Alertmanager ends an alert nobody re-sends), with
 *   endsAt = now + 4 resend intervals; a resolved one is sent with its end
 *   time and no longer held. Labels with an empty value are left out (they
 *   mean "absent" to Alertmanager), and so are extra labels whose names are
 *   not Prometheus label names. `replica` (the replica that raised it) is a
 *   label only of alerts about that replica (NoQuorum); on the others
 *   (faults, raised by whichever replica leads) it is an annotation, so a
 *   new leader re-raising an open fault updates the same alert instead of
 *   opening a second one (what Prometheus HA pairs do by dropping their
 *   replica label before Alertmanager).
 *
 * webhook: the body of Alertmanager's own webhook receiver (version "4"), so
 *   anything that accepts Alertmanager webhooks accepts recoveryd's alerts;
 *   sent once, not re-sent:
 *     {"version":"4","groupKey":"recoveryd","truncatedAlerts":0,
 *      "status":"firing"|"resolved","receiver":"<instance name>",
 *      "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"",
 *      "alerts":[{"status","labels":{...},"annotations":{"summary","description"},
 *                 "startsAt","endsAt","generatorURL","fingerprint"}]}
 *
 * Delivery: a bounded FIFO queue (queue_size alerts), one request in flight
 * carrying up to `batch` alerts from its head. A failed attempt (no answer,
 * 5xx, 408 or 429) is retried with the very same batch after a backoff that
 * starts at 100 ms and doubles up to max_backoff; alerts are never dropped
 * while the queue has room. When an alert arrives at a full queue the oldest
 * one is dropped (counted in alerts_dropped; if it belongs to the batch in
 * flight it counts as dropped only should that attempt fail). Any other 4xx
 * is the receiver refusing those alerts for good: not retried, logged once
 * with the start of its answer, counted in alerts_rejected, kept in a
 * bounded list of dead letters (GET /api/v1/plugins) and no longer held.
 * Counters: alerts_sent (re-sends included), alerts_failed (failed
 * attempts), alerts_dropped, alerts_rejected.
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
#define ANSWER_MAX       256                    /* bytes of a refusal kept and logged */
#define AM_PATH          "/api/v2/alerts"

enum format { FMT_ALERTMANAGER = 0, FMT_WEBHOOK };

struct entry {
    json_t *alert; /* one element of "alerts" */
    bool firing;
    bool leader; /* a fault's alert (RD_ALERT_LEADER): only the leader sends it */
};

struct dead {
    int64_t at_ms;
    int status;
    char *answer;
    char *alert; /* JSON text */
};

struct wh {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    char *url;
    uint64_t timeout_ms;
    uint64_t max_backoff_ms;
    size_t cap;   /* queue_size */
    size_t batch; /* alerts per request at most */
    enum format format;
    uint64_t resend_ms;
    char *external_url; /* "" when none */

    struct entry *ring;
    size_t head, count;

    size_t head_n;       /* the current batch: the first head_n queued alerts (0: none) */
    size_t head_dropped; /* of the batch in flight, dropped from the queue meanwhile */
    bool in_flight;
    rd_timer_t *retry; /* a pending retry (one-shot: the host frees it once fired) */
    uint64_t backoff_ms;

    bool started, stopping;
    void (*done)(rd_plugin_instance_t *inst);

    /* Firing alerts held for re-sending (alertmanager format), at most `cap`:
     * fingerprint -> [alert, leader] (leader: RD_ALERT_LEADER, forgotten
     * when this replica stops leading). */
    json_t *held;
    bool held_full_logged;
    bool follower; /* told this replica stopped leading (and not told since that it leads) */
    rd_timer_t *resend;

    struct dead *dead; /* ring of dead_cap dead letters */
    size_t dead_cap, dead_head, n_dead;

    uint64_t *sent, *failed, *dropped, *rejected;
    uint64_t dummy[4];
};

static const struct rd_plugin_key keys[] = {
    {"url", RD_KEY_STRING, NULL, 0, 0,
     "http:// or https:// URL the alerts are POSTed to (alertmanager format: Alertmanager's "
     "URL; /api/v2/alerts is added when it has no path)"},
    {"timeout", RD_KEY_DURATION, "2s", 1, 600000, "how long one delivery attempt may take"},
    {"queue_size", RD_KEY_INT, "1000", 1, 100000,
     "alerts kept while the receiver is unreachable; beyond it the oldest is dropped"},
    {"max_backoff", RD_KEY_DURATION, "30s", 100, 86400000, "longest wait between two attempts"},
    {"batch", RD_KEY_INT, "50", 1, 1000, "alerts per request at most"},
    {"format", RD_KEY_STRING, "alertmanager", 0, 0,
     "alertmanager (POST /api/v2/alerts, firing alerts re-sent) or webhook (Alertmanager's "
     "webhook receiver body, sent once)"},
    {"resend_interval", RD_KEY_DURATION, "1m", 100, 3600000,
     "alertmanager format: how often firing alerts are sent again (well under Alertmanager's "
     "resolve_timeout)"},
    {"dead_letters", RD_KEY_INT, "100", 0, 10000,
     "alerts the receiver refused for good (4xx) kept for GET /api/v1/plugins"},
    {"external_url", RD_KEY_STRING, "", 0, 0,
     "this cluster's API URL: alerts' generatorURL links to their fault record there"},
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

/* The alert's scope (fields of ABI minor 2: the host always passes them). */
static int scope_of(const struct rd_alert *a)
{
    return a->scope == RD_ALERT_REPLICA || a->scope == RD_ALERT_EVENT ? a->scope : RD_ALERT_LEADER;
}

/* A Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*. */
static bool label_name_ok(const char *k)
{
    if (!k[0] || (k[0] >= '0' && k[0] <= '9'))
        return false;
    for (const char *p = k; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

/* Sets label k unless the format leaves it out (alertmanager: empty values). */
static void set_label(struct wh *w, json_t *labels, const char *k, const char *v)
{
    if (w->format == FMT_ALERTMANAGER && (!v || !v[0]))
        return;
    json_object_set_new(labels, k, json_string(str(v)));
}

/* Adds labels_json's members as string labels (numbers and booleans as their
 * JSON text; other kinds, the fixed labels and, for Alertmanager, names that
 * are not label names are left alone). */
static void add_extra_labels(struct wh *w, json_t *labels, const char *labels_json)
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
        if (json_object_get(labels, k) || !strcmp(k, "alertname") || !strcmp(k, "node_id") ||
            !strcmp(k, "fault_type") || !strcmp(k, "severity") || !strcmp(k, "cluster") ||
            !strcmp(k, "replica"))
            continue;
        if (w->format == FMT_ALERTMANAGER && !label_name_ok(k))
            continue;
        if (json_is_string(v)) {
            set_label(w, labels, k, json_string_value(v));
        } else if (json_is_number(v) || json_is_boolean(v)) {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            if (text)
                json_object_set_new(labels, k, json_string(text));
            free(text);
        }
    }
    json_decref(extra);
}

/* generatorURL: the fault record on this cluster's API, when it is known. */
static json_t *generator_url(struct wh *w, const struct rd_alert *a)
{
    if (!w->external_url[0])
        return json_string("");
    if (scope_of(a) != RD_ALERT_LEADER || !a->fingerprint || !a->fingerprint[0])
        return json_string(w->external_url);
    size_t n = strlen(w->external_url) + strlen(a->fingerprint) + 32;
    char *u = malloc(n);
    if (!u)
        return NULL;
    snprintf(u, n, "%s/api/v1/faults/records/%s", w->external_url, a->fingerprint);
    json_t *j = json_string(u);
    free(u);
    return j;
}

static json_t *alert_json(struct wh *w, const struct rd_alert *a)
{
    char starts[80], ends[80];
    rfc3339(a->starts_at_ms, starts);
    if (a->resolved)
        rfc3339(a->ends_at_ms > 0 ? a->ends_at_ms : w->host->now_ms(), ends);
    else
        snprintf(ends, sizeof ends, "%s", ZERO_TIME); /* alertmanager: set when sent */
    bool am = w->format == FMT_ALERTMANAGER;
    /* replica names what the alert is about only for alerts about a replica. */
    bool replica_label = !am || scope_of(a) == RD_ALERT_REPLICA;
    json_t *labels = json_object();
    json_t *ann = json_object();
    if (!labels || !ann) {
        json_decref(labels);
        json_decref(ann);
        return NULL;
    }
    set_label(w, labels, "alertname", a->alertname);
    set_label(w, labels, "severity", a->severity);
    set_label(w, labels, "cluster", a->cluster);
    if (replica_label)
        set_label(w, labels, "replica", a->replica);
    set_label(w, labels, "node_id", a->node_id);
    set_label(w, labels, "fault_type", a->fault_type);
    add_extra_labels(w, labels, a->labels_json);
    json_object_set_new(ann, "summary", json_string(str(a->summary)));
    json_object_set_new(ann, "description", json_string(str(a->description)));
    if (am) {
        json_object_set_new(ann, "alert_id", json_string(str(a->fingerprint)));
        if (!replica_label && a->replica && a->replica[0])
            json_object_set_new(ann, "replica", json_string(a->replica));
        return json_pack("{s:o, s:o, s:s, s:s, s:o*}", "labels", labels, "annotations", ann,
                         "startsAt", starts, "endsAt", ends, "generatorURL", generator_url(w, a));
    }
    return json_pack("{s:s, s:o, s:o, s:s, s:s, s:s, s:s}", "status",
                     a->resolved ? "resolved" : "firing", "labels", labels, "annotations", ann,
                     "startsAt", starts, "endsAt", ends, "generatorURL", "", "fingerprint",
                     str(a->fingerprint));
}

/* The request body for the first `n` queued alerts; malloc'd, or NULL. */
static char *batch_body(struct wh *w, size_t n)
{
    json_t *alerts = json_array();
    bool firing = false;
    char until[80] = "";
    if (w->format == FMT_ALERTMANAGER) /* as Prometheus: 4 re-sends from now */
        rfc3339(w->host->now_ms() + 4 * (int64_t)w->resend_ms, until);
    for (size_t i = 0; alerts && i < n; i++) {
        struct entry *e = &w->ring[(w->head + i) % w->cap];
        firing = firing || e->firing;
        if (w->format == FMT_ALERTMANAGER && e->firing) {
            json_t *c = json_copy(e->alert); /* shallow: endsAt of this send only */
            if (c)
                json_object_set_new(c, "endsAt", json_string(until));
            json_array_append_new(alerts, c);
        } else {
            json_array_append(alerts, e->alert);
        }
    }
    json_t *doc = alerts;
    if (w->format == FMT_WEBHOOK)
        doc = json_pack("{s:s, s:s, s:i, s:s, s:s, s:{}, s:{}, s:{}, s:s, s:o}", "version", "4",
                        "groupKey", "recoveryd", "truncatedAlerts", 0, "status",
                        firing ? "firing" : "resolved", "receiver", w->host->instance_name(w->inst),
                        "groupLabels", "commonLabels", "commonAnnotations", "externalURL", "",
                        "alerts", alerts);
    if (!doc)
        return NULL;
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return body;
}

/* ---- the queue, held alerts and dead letters ----------------------------------- */

static void pop_front(struct wh *w)
{
    struct entry *e = &w->ring[w->head];
    json_decref(e->alert);
    e->alert = NULL;
    w->head = (w->head + 1) % w->cap;
    w->count--;
}

/* Appends an alert to the queue (the oldest makes room when it is full). */
static void push(struct wh *w, json_t *alert, bool firing, bool leader)
{
    if (w->count == w->cap) {
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
    e->alert = alert;
    e->firing = firing;
    e->leader = leader;
    w->count++;
}

/*
 * After this replica stopped leading: its queued firing fault alerts go (the
 * new leader raises them again). Sent later, a retried one could fire again
 * an alert the new leader has resolved meanwhile. Never the batch in flight.
 */
static void drop_stale(struct wh *w)
{
    if (!w->follower || w->in_flight)
        return;
    size_t kept = 0, kept_in_batch = 0;
    for (size_t i = 0; i < w->count; i++) {
        struct entry e = w->ring[(w->head + i) % w->cap];
        if (e.leader && e.firing) {
            json_decref(e.alert);
            continue;
        }
        w->ring[(w->head + kept) % w->cap] = e;
        kept_in_batch += i < w->head_n;
        kept++;
    }
    for (size_t i = kept; i < w->count; i++)
        w->ring[(w->head + i) % w->cap].alert = NULL;
    w->count = kept;
    w->head_n = kept_in_batch;
}

/* Holds a firing alert for re-sending, or lets go of a resolved one. */
static void hold(struct wh *w, const struct rd_alert *a, json_t *j)
{
    if (w->format != FMT_ALERTMANAGER || !a->fingerprint || !a->fingerprint[0] ||
        scope_of(a) == RD_ALERT_EVENT)
        return;
    if (a->resolved) {
        json_object_del(w->held, a->fingerprint);
        if (json_object_size(w->held) < w->cap)
            w->held_full_logged = false;
        return;
    }
    if (!json_object_get(w->held, a->fingerprint) && json_object_size(w->held) >= w->cap) {
        if (!w->held_full_logged)
            w->host->log(w->inst, RD_PLOG_WARN, "too_many_firing",
                         "held=%zu fingerprint=%s detail=\"sent once, not re-sent: raise "
                         "queue_size\"",
                         json_object_size(w->held), a->fingerprint);
        w->held_full_logged = true;
        return;
    }
    json_object_set_new(w->held, a->fingerprint,
                        json_pack("[O,b]", j, scope_of(a) == RD_ALERT_LEADER));
}

/* Lets go of a held alert whose very document the receiver refused. */
static void unhold_refused(struct wh *w, json_t *alert)
{
    const char *fp =
        json_string_value(json_object_get(json_object_get(alert, "annotations"), "alert_id"));
    json_t *h = fp ? json_object_get(w->held, fp) : NULL;
    if (h && json_array_get(h, 0) == alert)
        json_object_del(w->held, fp);
}

/* The start of a receiver's answer, printable and quote-free (for a log line). */
static void excerpt(const char *body, size_t len, char out[ANSWER_MAX + 1])
{
    size_t n = 0;
    for (size_t i = 0; body && i < len && n < ANSWER_MAX; i++) {
        unsigned char c = (unsigned char)body[i];
        out[n++] = (c < 0x20 || c == 0x7f || c == '"' || c == '\\') ? ' ' : (char)c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static void dead_free(struct dead *d)
{
    free(d->answer);
    free(d->alert);
    memset(d, 0, sizeof *d);
}

static void add_dead(struct wh *w, int status, const char *answer, json_t *alert)
{
    if (w->dead_cap == 0)
        return;
    struct dead *d;
    if (w->n_dead == w->dead_cap) { /* full: the oldest goes */
        d = &w->dead[w->dead_head];
        dead_free(d);
        w->dead_head = (w->dead_head + 1) % w->dead_cap;
        w->n_dead--;
    }
    d = &w->dead[(w->dead_head + w->n_dead) % w->dead_cap];
    d->at_ms = w->host->now_ms();
    d->status = status;
    d->answer = strdup(answer);
    d->alert = json_dumps(alert, JSON_COMPACT);
    w->n_dead++;
}

static int dead_letter_at(void *state, size_t i, struct rd_dead_letter *out)
{
    struct wh *w = state;
    if (i >= w->n_dead)
        return RD_ENOTFOUND;
    const struct dead *d = &w->dead[(w->dead_head + i) % w->dead_cap];
    out->at_ms = d->at_ms;
    out->status = d->status;
    out->answer = str(d->answer);
    out->alert_json = d->alert ? d->alert : "null";
    return 0;
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

/* A 4xx other than 408 (timeout) and 429 (slow down): the same request will
 * be refused again, so it is not retried. */
static bool refused_for_good(int status)
{
    return status >= 400 && status < 500 && status != 408 && status != 429;
}

/* The batch in flight is done with: it leaves the queue. */
static void batch_over(struct wh *w)
{
    for (size_t i = 0; i < w->head_n; i++)
        pop_front(w);
    w->head_n = 0;
    w->backoff_ms = BACKOFF_START_MS;
}

static void on_response(void *data, const struct rd_http_response *resp)
{
    struct wh *w = data;
    w->in_flight = false;
    if (resp->status >= 200 && resp->status < 300) {
        *w->sent += w->head_n + w->head_dropped;
        w->head_dropped = 0;
        batch_over(w);
        if (!w->stopping && w->count > 0)
            dispatch(w);
    } else if (cancelled(resp)) {
        /* The host ends an instance's requests only when it stops it: no
         * failed attempt and no retry; the alerts stay queued. */
        *w->dropped += w->head_dropped;
        w->head_dropped = 0;
    } else if (refused_for_good(resp->status)) {
        char answer[ANSWER_MAX + 1];
        excerpt(resp->body, resp->body_len, answer);
        w->host->log(w->inst, RD_PLOG_ERROR, "delivery_rejected",
                     "status=%d alerts=%zu answer=\"%s\" detail=\"not retried: kept as dead "
                     "letters\"",
                     resp->status, w->head_n, answer);
        for (size_t i = 0; i < w->head_n; i++) {
            json_t *a = w->ring[(w->head + i) % w->cap].alert;
            add_dead(w, resp->status, answer, a);
            unhold_refused(w, a);
        }
        *w->rejected += w->head_n;
        *w->dropped += w->head_dropped;
        w->head_dropped = 0;
        batch_over(w);
        if (!w->stopping && w->count > 0)
            dispatch(w);
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
    drop_stale(w);
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
    hold(w, a, j);
    push(w, j, !a->resolved, scope_of(a) == RD_ALERT_LEADER);
    dispatch(w);
}

/* Every resend_interval: the held alerts again, unless the receiver is
 * behind (alerts still queued go first; they are as good a sign of life). */
static void on_resend(void *data)
{
    struct wh *w = data;
    if (w->stopping || w->count > 0 || w->in_flight || w->retry)
        return;
    const char *fp;
    json_t *h;
    json_object_foreach(w->held, fp, h)
    {
        if (w->count == w->cap)
            break;
        push(w, json_incref(json_array_get(h, 0)), true, json_is_true(json_array_get(h, 1)));
    }
    dispatch(w);
}

static void leadership(void *state, bool leader)
{
    struct wh *w = state;
    w->follower = !leader;
    if (leader)
        return; /* the engine raises every open fault's alert again */
    const char *fp;
    json_t *h, *tmp;
    size_t before = json_object_size(w->held);
    json_object_foreach_safe(w->held, tmp, fp, h)
    {
        if (json_is_true(json_array_get(h, 1)))
            json_object_del(w->held, fp);
    }
    if (before != json_object_size(w->held))
        w->host->log(w->inst, RD_PLOG_INFO, "not_leader",
                     "released=%zu detail=\"the new leader re-sends the open faults' alerts\"",
                     before - json_object_size(w->held));
}

/* ---- lifecycle ---------------------------------------------------------------- */

static bool has_path(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    return p && p[1] != '\0';
}

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
    const char *fmt = host->config_string(inst, "format");
    if (fmt && strcmp(fmt, "alertmanager") == 0) {
        w->format = FMT_ALERTMANAGER;
    } else if (fmt && strcmp(fmt, "webhook") == 0) {
        w->format = FMT_WEBHOOK;
    } else {
        host->set_error(inst, "format must be alertmanager or webhook, got '%s'", str(fmt));
        return RD_ECONFIG;
    }
    const char *ext = host->config_string(inst, "external_url");
    if (ext && ext[0] && strncmp(ext, "http://", 7) != 0 && strncmp(ext, "https://", 8) != 0) {
        host->set_error(inst, "external_url must be an http:// or https:// URL, got '%s'", ext);
        return RD_ECONFIG;
    }
    w->timeout_ms = host->config_uint(inst, "timeout");
    w->max_backoff_ms = host->config_uint(inst, "max_backoff");
    w->resend_ms = host->config_uint(inst, "resend_interval");
    int64_t q = host->config_int(inst, "queue_size");
    int64_t b = host->config_int(inst, "batch");
    int64_t d = host->config_int(inst, "dead_letters");
    if (q < 1 || q > 100000 || b < 1 || b > 1000 || d < 0 || d > 10000) {
        host->set_error(inst, "queue_size must be 1-100000, batch 1-1000 and dead_letters 0-10000");
        return RD_ECONFIG;
    }
    if (w->resend_ms < 100) {
        host->set_error(inst, "resend_interval must be at least 100ms");
        return RD_ECONFIG;
    }
    if (w->max_backoff_ms < BACKOFF_START_MS)
        w->max_backoff_ms = BACKOFF_START_MS;
    w->cap = (size_t)q;
    w->batch = (size_t)b;
    w->dead_cap = (size_t)d;
    w->backoff_ms = BACKOFF_START_MS;
    /* Alertmanager's URL alone: its intake path. */
    size_t ulen = strlen(url);
    bool add_path = w->format == FMT_ALERTMANAGER && !has_path(url);
    w->url = malloc(ulen + sizeof AM_PATH);
    if (w->url)
        snprintf(w->url, ulen + sizeof AM_PATH, "%.*s%s",
                 (int)(ulen - (add_path && url[ulen - 1] == '/')), url, add_path ? AM_PATH : "");
    size_t elen = ext ? strlen(ext) : 0;
    while (elen > 0 && ext[elen - 1] == '/')
        elen--;
    w->external_url = strndup(ext ? ext : "", elen);
    w->ring = calloc(w->cap, sizeof *w->ring);
    w->dead = w->dead_cap ? calloc(w->dead_cap, sizeof *w->dead) : NULL;
    w->held = json_object();
    if (!w->url || !w->external_url || !w->ring || (w->dead_cap && !w->dead) || !w->held) {
        free(w->url);
        free(w->external_url);
        free(w->ring);
        free(w->dead);
        json_decref(w->held);
        w->url = w->external_url = NULL;
        w->ring = NULL;
        w->dead = NULL;
        w->held = NULL;
        host->set_error(inst, "out of memory");
        return RD_ENOMEM;
    }
    static const char *const names[4] = {"alerts_sent", "alerts_failed", "alerts_dropped",
                                         "alerts_rejected"};
    static const char *const help[4] = {
        "Alerts delivered to the webhook (re-sends included).",
        "Delivery attempts that failed (each is retried).",
        "Alerts dropped because the queue was full.",
        "Alerts the receiver refused for good (a 4xx answer): not retried, kept as dead letters.",
    };
    uint64_t **slots[4] = {&w->sent, &w->failed, &w->dropped, &w->rejected};
    for (int i = 0; i < 4; i++) {
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
    if (w->format == FMT_ALERTMANAGER) {
        w->resend = w->host->timer_start(w->inst, w->resend_ms, w->resend_ms, on_resend, w);
        if (!w->resend) {
            w->host->log(w->inst, RD_PLOG_ERROR, "resend_timer_failed", "%s", "");
            return RD_ENOMEM;
        }
    }
    dispatch(w);
    return 0;
}

/*
 * Pending timers belong to the host once the instance stops (plugin.h: the
 * host frees an instance's timers then), so they are only forgotten here.
 * done() waits for the request in flight, if any, to call back.
 */
static void wh_stop(void *state, void (*done)(rd_plugin_instance_t *inst))
{
    struct wh *w = state;
    w->stopping = true;
    w->retry = NULL;
    w->resend = NULL;
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
    for (size_t i = 0; w->dead && i < w->dead_cap; i++)
        dead_free(&w->dead[i]);
    free(w->ring);
    free(w->url);
    free(w->external_url);
    free(w->dead);
    json_decref(w->held);
    w->ring = NULL;
    w->url = NULL;
    w->external_url = NULL;
    w->dead = NULL;
    w->held = NULL;
}

static const struct rd_alert_ops ops = {
    .version = RD_ALERT_OPS_VERSION,
    .size = sizeof(struct rd_alert_ops),
    .send = send_alert,
    .leadership = leadership,
    .dead_letter_at = dead_letter_at,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = "webhook",
    .version = "2.0.0",
    .kind = RD_PLUGIN_ALERT,
    .description = "POSTs alerts to Prometheus Alertmanager's API (re-sending firing ones) or in "
                   "its webhook format; queued, batched, retried with exponential backoff, "
                   "refused ones kept as dead letters",
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
