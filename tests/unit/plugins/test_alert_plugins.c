/*
 * The alert plugins (build/plugins/log.so and webhook.so) against a fake
 * host: log lines, the webhook's Alertmanager body, its queue, retries with
 * backoff, overflow and stop.
 */
#include "fake_host.h"

#include <jansson.h>

#define T_2026_01_02_030405_678 1767323045678LL /* 2026-01-02T03:04:05.678Z */

static struct rd_alert alert(const char *fp, bool resolved)
{
    return (struct rd_alert){
        .fingerprint = fp,
        .resolved = resolved,
        .alertname = "AgentFault",
        .node_id = "a-1",
        .fault_type = "crash",
        .severity = "critical",
        .summary = "agent a-1 stopped answering",
        .description = "no heartbeat for 5s; probe refused",
        .starts_at_ms = T_2026_01_02_030405_678,
        .ends_at_ms = resolved ? T_2026_01_02_030405_678 + 61000 : 0,
        .labels_json = NULL,
    };
}

static void deliver(const struct rd_alert *a)
{
    const struct rd_alert_ops *ops = g_fh.desc->ops;
    ops->send(g_fh.state, a);
}

static void send_fp(const char *fp)
{
    struct rd_alert a = alert(fp, false);
    deliver(&a);
}

/* ---- log ------------------------------------------------------------------------ */

static void test_log_lines(void **state)
{
    (void)state;
    static const char *cfg[][2] = {{NULL, NULL}};
    assert_int_equal(fh_init("log", "logger", cfg), 0);
    assert_int_equal(g_fh.desc->kind, RD_PLUGIN_ALERT);
    fh_start();

    struct rd_alert a = alert("f1", false);
    a.summary = "agent \"a-1\" down\nnow";
    deliver(&a);
    assert_int_equal(g_fh.n_logs, 1);
    assert_int_equal(g_fh.logs[0].level, RD_PLOG_WARN);
    assert_string_equal(g_fh.logs[0].event, "alert_firing");
    assert_string_equal(g_fh.logs[0].msg,
                        "alert=AgentFault node=a-1 type=crash severity=critical fingerprint=f1 "
                        "summary=\"agent \\\"a-1\\\" down\\nnow\"");

    struct rd_alert b = alert("f2", true);
    b.node_id = "";
    b.alertname = "PartitionSuspected";
    b.fault_type = "net split";
    deliver(&b);
    assert_int_equal(g_fh.n_logs, 2);
    assert_int_equal(g_fh.logs[1].level, RD_PLOG_INFO);
    assert_string_equal(g_fh.logs[1].event, "alert_resolved");
    assert_string_equal(g_fh.logs[1].msg,
                        "alert=PartitionSuspected node=\"\" type=\"net split\" severity=critical "
                        "fingerprint=f2 summary=\"agent a-1 stopped answering\"");

    /* NULL fields and a very long summary do not break the line. */
    char longs[3000];
    memset(longs, 's', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    struct rd_alert c = {.fingerprint = "f3", .summary = longs};
    deliver(&c);
    assert_int_equal(g_fh.n_logs, 3);
    assert_non_null(strstr(g_fh.logs[2].msg, "alert=\"\" node=\"\""));
    assert_non_null(strstr(g_fh.logs[2].msg, "...\""));

    assert_int_equal(fh_counter("alerts_sent"), 3);
    fh_stop(true);
    assert_int_equal(g_fh.done_calls, 1);
    fh_destroy();
}

/* ---- webhook --------------------------------------------------------------------- */

/* The generic webhook format (Alertmanager's webhook receiver body). */
static const char *cfg_wh[][2] = {
    {"url", "http://127.0.0.1:9093/hook"},
    {"format", "webhook"},
    {NULL, NULL},
};

/* Parses request `i`'s body; the caller json_decref()s it. */
static json_t *body_of(size_t i)
{
    assert_true(i < g_fh.n_http);
    json_error_t je;
    json_t *j = json_loads(g_fh.http[i].body, 0, &je);
    if (!j)
        fail_msg("request %zu: not JSON (%s): %s", i, je.text, g_fh.http[i].body);
    return j;
}

static const char *sget(json_t *o, const char *path)
{
    json_t *v = o;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    if (!json_is_string(v))
        fail_msg("%s is not a string", path);
    return json_string_value(v);
}

/* The fingerprints of request `i`'s alerts, comma-separated. */
static void fps_of(size_t i, char *out, size_t len)
{
    json_t *j = body_of(i);
    size_t o = 0, k;
    json_t *a;
    out[0] = '\0';
    json_array_foreach(json_object_get(j, "alerts"), k, a)
    {
        o += (size_t)snprintf(out + o, len - o, "%s%s", k ? "," : "", sget(a, "fingerprint"));
    }
    json_decref(j);
}

static void test_webhook_body_format(void **state)
{
    (void)state;
    assert_int_equal(fh_init("webhook", "oncall", cfg_wh), 0);
    fh_start();
    assert_int_equal(g_fh.n_http, 0); /* nothing to send yet */

    struct rd_alert a = alert("fp-1", false);
    a.labels_json = "{\"team\":\"ml\",\"zone\":3,\"canary\":true,\"alertname\":\"no\","
                    "\"nested\":{\"x\":1}}";
    a.cluster = "prod-eu";
    a.replica = "rd2";
    deliver(&a);
    assert_int_equal(g_fh.n_http, 1);
    const struct fh_http *h = &g_fh.http[0];
    assert_string_equal(h->method, "POST");
    assert_string_equal(h->url, "http://127.0.0.1:9093/hook");
    assert_string_equal(h->content_type, "application/json");
    assert_int_equal(h->timeout_ms, 2000);

    json_t *j = body_of(0);
    assert_string_equal(sget(j, "version"), "4");
    assert_string_equal(sget(j, "groupKey"), "recoveryd");
    assert_true(json_is_integer(json_object_get(j, "truncatedAlerts")));
    assert_int_equal(json_integer_value(json_object_get(j, "truncatedAlerts")), 0);
    assert_string_equal(sget(j, "status"), "firing");
    assert_string_equal(sget(j, "receiver"), "oncall");
    const char *empty_objects[] = {"groupLabels", "commonLabels", "commonAnnotations"};
    for (int i = 0; i < 3; i++) {
        json_t *o = json_object_get(j, empty_objects[i]);
        assert_true(json_is_object(o));
        assert_int_equal(json_object_size(o), 0);
    }
    assert_string_equal(sget(j, "externalURL"), "");
    json_t *alerts = json_object_get(j, "alerts");
    assert_true(json_is_array(alerts));
    assert_int_equal(json_array_size(alerts), 1);
    json_t *x = json_array_get(alerts, 0);
    assert_string_equal(sget(x, "status"), "firing");
    assert_string_equal(sget(x, "labels.alertname"), "AgentFault");
    assert_string_equal(sget(x, "labels.node_id"), "a-1");
    assert_string_equal(sget(x, "labels.fault_type"), "crash");
    assert_string_equal(sget(x, "labels.severity"), "critical");
    assert_string_equal(sget(x, "labels.team"), "ml");
    assert_string_equal(sget(x, "labels.zone"), "3");
    assert_string_equal(sget(x, "labels.canary"), "true");
    assert_string_equal(sget(x, "labels.cluster"), "prod-eu");
    assert_string_equal(sget(x, "labels.replica"), "rd2");
    assert_null(json_object_get(json_object_get(x, "labels"), "nested"));
    assert_int_equal(json_object_size(json_object_get(x, "labels")), 9);
    assert_string_equal(sget(x, "annotations.summary"), "agent a-1 stopped answering");
    assert_string_equal(sget(x, "annotations.description"), "no heartbeat for 5s; probe refused");
    assert_int_equal(json_object_size(json_object_get(x, "annotations")), 2);
    assert_string_equal(sget(x, "startsAt"), "2026-01-02T03:04:05.678Z");
    assert_string_equal(sget(x, "endsAt"), "0001-01-01T00:00:00Z");
    assert_string_equal(sget(x, "generatorURL"), "");
    assert_string_equal(sget(x, "fingerprint"), "fp-1");
    assert_int_equal(json_object_size(x), 7);
    assert_int_equal(json_object_size(j), 10);
    json_decref(j);

    fh_answer(0, 200, RD_PROBE_NONE, NULL, 5);
    assert_int_equal(fh_counter("alerts_sent"), 1);
    assert_int_equal(fh_counter("alerts_failed"), 0);
    assert_int_equal(g_fh.n_http, 1);
    fh_stop(true);
    assert_int_equal(g_fh.done_calls, 1);
    fh_destroy();
}

static void test_webhook_resolved(void **state)
{
    (void)state;
    assert_int_equal(fh_init("webhook", "oncall", cfg_wh), 0);
    fh_start();
    struct rd_alert r = alert("fp-r", true);
    deliver(&r); /* sent alone at once */
    json_t *j = body_of(0);
    assert_string_equal(sget(j, "status"), "resolved");
    json_t *x = json_array_get(json_object_get(j, "alerts"), 0);
    assert_string_equal(sget(x, "status"), "resolved");
    assert_string_equal(sget(x, "startsAt"), "2026-01-02T03:04:05.678Z");
    assert_string_equal(sget(x, "endsAt"), "2026-01-02T03:05:06.678Z");
    json_decref(j);

    /* Queued behind it: one resolved (without an end time: now), one firing. */
    struct rd_alert r2 = alert("fp-r2", true);
    r2.ends_at_ms = 0;
    deliver(&r2);
    send_fp("fp-f");
    assert_int_equal(g_fh.n_http, 1);
    fh_answer(0, 204, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(g_fh.n_http, 2);
    j = body_of(1);
    assert_string_equal(sget(j, "status"), "firing"); /* one of them fires */
    json_t *alerts = json_object_get(j, "alerts");
    assert_int_equal(json_array_size(alerts), 2);
    assert_string_equal(sget(json_array_get(alerts, 0), "endsAt"), "2026-01-01T00:00:00.000Z");
    assert_string_equal(sget(json_array_get(alerts, 1), "status"), "firing");
    json_decref(j);
    fh_answer(1, 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(fh_counter("alerts_sent"), 3);
    fh_stop(true);
    fh_destroy();
}

static void test_webhook_retry_backoff(void **state)
{
    (void)state;
    static const char *cfg[][2] = {
        {"url", "https://hooks.example/alert"},
        {"format", "webhook"},
        {"max_backoff", "1s"},
        {"timeout", "500ms"},
        {NULL, NULL},
    };
    assert_int_equal(fh_init("webhook", "oncall", cfg), 0);
    fh_start();
    send_fp("a1");
    assert_int_equal(g_fh.n_http, 1);
    assert_int_equal(g_fh.http[0].timeout_ms, 500);

    /* Failures of every kind: the same batch again after 100, 200, 400,
     * 800, 1000, 1000 ms; alerts arriving meanwhile wait in the queue. */
    const uint64_t waits[] = {100, 200, 400, 800, 1000, 1000};
    const int statuses[] = {503, 0, 0, 500, 0, 429};
    const int causes[] = {RD_PROBE_STATUS, RD_PROBE_REFUSED, RD_PROBE_TIMEOUT,
                          RD_PROBE_STATUS, RD_PROBE_NETWORK, RD_PROBE_STATUS};
    for (size_t i = 0; i < 6; i++) {
        fh_answer(fh_last(), statuses[i], causes[i], statuses[i] ? NULL : "boom", 1);
        assert_int_equal(fh_counter("alerts_failed"), i + 1);
        assert_int_equal(fh_open(), 0);
        size_t t = fh_last_live_timer();
        assert_int_equal(g_fh.timers[t].first_ms, waits[i]);
        assert_int_equal(g_fh.timers[t].repeat_ms, 0);
        if (i == 0) {
            send_fp("a2");
            send_fp("a3");
        }
        assert_int_equal(g_fh.n_http, i + 1); /* nothing before the timer */
        fh_fire(t);
        assert_int_equal(g_fh.n_http, i + 2);
        char fps[256];
        fps_of(fh_last(), fps, sizeof fps);
        assert_string_equal(fps, "a1");
    }
    /* A request the host will not even take counts as a failed attempt. */
    fh_answer(fh_last(), 502, RD_PROBE_STATUS, NULL, 1);
    g_fh.http_reject = RD_EINVAL;
    fh_fire(fh_last_live_timer());
    assert_int_equal(fh_counter("alerts_failed"), 8);
    assert_int_equal(g_fh.timers[fh_last_live_timer()].first_ms, 1000);
    g_fh.http_reject = 0;
    fh_fire(fh_last_live_timer());

    /* Success: then everything queued, in order. */
    size_t n = g_fh.n_http;
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(fh_counter("alerts_sent"), 1);
    assert_int_equal(g_fh.n_http, n + 1);
    char fps[256];
    fps_of(fh_last(), fps, sizeof fps);
    assert_string_equal(fps, "a2,a3");
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(fh_counter("alerts_sent"), 3);
    assert_int_equal(fh_counter("alerts_dropped"), 0);

    /* The backoff starts over after a success. */
    send_fp("a4");
    fh_answer(fh_last(), 0, RD_PROBE_TIMEOUT, "no answer", 500);
    assert_int_equal(g_fh.timers[fh_last_live_timer()].first_ms, 100);
    fh_fire(fh_last_live_timer());
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(fh_counter("alerts_sent"), 4);
    fh_stop(true);
    fh_destroy();
}

static void test_webhook_batches(void **state)
{
    (void)state;
    static const char *cfg[][2] = {
        {"url", "http://127.0.0.1:9/x"},
        {"format", "webhook"},
        {"batch", "3"},
        {NULL, NULL},
    };
    assert_int_equal(fh_init("webhook", "oncall", cfg), 0);
    /* Alerts before start are kept, and sent once started. */
    for (int i = 0; i < 7; i++) {
        char fp[8];
        snprintf(fp, sizeof fp, "b%d", i);
        send_fp(fp);
    }
    assert_int_equal(g_fh.n_http, 0);
    fh_start();
    const char *want[] = {"b0,b1,b2", "b3,b4,b5", "b6"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g_fh.n_http, i + 1);
        char fps[256];
        fps_of(fh_last(), fps, sizeof fps);
        assert_string_equal(fps, want[i]);
        fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    }
    assert_int_equal(g_fh.n_http, 3);
    assert_int_equal(fh_counter("alerts_sent"), 7);
    fh_stop(true);
    fh_destroy();
}

static void test_webhook_overflow(void **state)
{
    (void)state;
    static const char *cfg[][2] = {
        {"url", "http://127.0.0.1:9/x"},
        {"format", "webhook"},
        {"queue_size", "3"},
        {"batch", "2"},
        {NULL, NULL},
    };
    assert_int_equal(fh_init("webhook", "oncall", cfg), 0);
    fh_start();
    char fps[256];

    /* Waiting for a retry (nothing in flight): the oldest goes at once. */
    send_fp("x1");
    fh_answer(fh_last(), 503, RD_PROBE_STATUS, NULL, 1);
    send_fp("x2");
    send_fp("x3"); /* full: x1 x2 x3 */
    send_fp("x4"); /* x1 dropped */
    assert_int_equal(fh_counter("alerts_dropped"), 1);
    send_fp("x5"); /* x2 dropped */
    assert_int_equal(fh_counter("alerts_dropped"), 2);
    fh_fire(fh_last_live_timer());
    fps_of(fh_last(), fps, sizeof fps);
    assert_string_equal(fps, "x3,x4");

    /* In flight: the oldest still makes room, but counts as dropped only if
     * that attempt fails (x3 here: it fails). */
    send_fp("x6"); /* x3 x4 x5 full + x6: x3 out */
    assert_int_equal(fh_counter("alerts_dropped"), 2);
    fh_answer(fh_last(), 0, RD_PROBE_REFUSED, "connection refused", 1);
    assert_int_equal(fh_counter("alerts_dropped"), 3);
    fh_fire(fh_last_live_timer());
    fps_of(fh_last(), fps, sizeof fps);
    assert_string_equal(fps, "x4"); /* what is left of the same batch */

    /* ... and x4, dropped while in flight, was delivered after all. */
    send_fp("x7"); /* x4 x5 x6 full + x7: x4 out */
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(fh_counter("alerts_dropped"), 3);
    assert_int_equal(fh_counter("alerts_sent"), 1);
    fps_of(fh_last(), fps, sizeof fps);
    assert_string_equal(fps, "x5,x6");
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    fps_of(fh_last(), fps, sizeof fps);
    assert_string_equal(fps, "x7");
    fh_answer(fh_last(), 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(fh_counter("alerts_sent"), 4);
    assert_int_equal(fh_counter("alerts_dropped"), 3);
    assert_int_equal(fh_counter("alerts_failed"), 2);
    assert_int_equal(fh_open(), 0);
    fh_stop(true);
    fh_destroy();
}

static void test_webhook_stop(void **state)
{
    (void)state;
    /* In flight at stop: done once it calls back. */
    assert_int_equal(fh_init("webhook", "oncall", cfg_wh), 0);
    fh_start();
    send_fp("s1");
    send_fp("s2");
    fh_stop(false);
    assert_int_equal(g_fh.done_calls, 0);
    fh_answer(0, 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(g_fh.done_calls, 1);
    assert_int_equal(fh_counter("alerts_sent"), 1);
    assert_int_equal(g_fh.n_http, 1); /* nothing more after stop */
    fh_destroy();

    /* A retry pending at stop, the engine's order (timers freed, requests
     * cancelled, then stop): done at once, the freed timer left alone. */
    assert_int_equal(fh_init("webhook", "oncall", cfg_wh), 0);
    fh_start();
    send_fp("s1");
    fh_answer(0, 500, RD_PROBE_STATUS, NULL, 1);
    assert_int_equal(fh_live_timers(), 1);
    send_fp("s2");
    fh_stop(true);
    assert_int_equal(g_fh.done_calls, 1);
    fh_destroy(); /* frees the queued alerts (LeakSanitizer checks) */

    /* In flight, cancelled by the host: no failed attempt, done at once. */
    assert_int_equal(fh_init("webhook", "oncall", cfg_wh), 0);
    fh_start();
    send_fp("s1");
    fh_stop(true);
    assert_int_equal(g_fh.done_calls, 1);
    assert_int_equal(fh_counter("alerts_failed"), 0);
    assert_int_equal(fh_live_timers(), 0);
    fh_destroy();
}

static void test_webhook_config(void **state)
{
    (void)state;
    static const char *no_url[][2] = {{NULL, NULL}};
    assert_int_equal(fh_init("webhook", "oncall", no_url), RD_ECONFIG);
    assert_non_null(strstr(g_fh.error, "url"));
    static const char *bad_url[][2] = {{"url", "ftp://x/y"}, {NULL, NULL}};
    assert_int_equal(fh_init("webhook", "oncall", bad_url), RD_ECONFIG);
    assert_non_null(strstr(g_fh.error, "ftp://x/y"));
    fh_reset();
    /* Declared keys, required url. */
    const struct rd_plugin_descriptor *d = fh_load("webhook");
    const char *names[] = {"url",    "timeout",         "queue_size",   "max_backoff", "batch",
                           "format", "resend_interval", "dead_letters", "external_url"};
    for (int i = 0; i < 9; i++)
        assert_string_equal(d->keys[i].name, names[i]);
    assert_null(d->keys[0].default_value);
    assert_string_equal(d->keys[5].default_value, "alertmanager");
    assert_string_equal(d->keys[6].default_value, "1m");
    assert_null(d->keys[9].name);
}

/* ---- webhook, alertmanager format (the default) ----------------------------------- */

static const struct rd_alert_ops *aops(void)
{
    return g_fh.desc->ops;
}

/* The request `i`'s body as a JSON array (Alertmanager's POST /api/v2/alerts). */
static json_t *am_body(size_t i)
{
    json_t *j = body_of(i);
    if (!json_is_array(j))
        fail_msg("request %zu: not a JSON array: %s", i, g_fh.http[i].body);
    return j;
}

/* The alert_id annotations of request `i`'s alerts, comma-separated. */
static void am_ids(size_t i, char *out, size_t len)
{
    json_t *j = am_body(i);
    size_t o = 0, k;
    json_t *a;
    out[0] = '\0';
    json_array_foreach(j, k, a)
    {
        o += (size_t)snprintf(out + o, len - o, "%s%s", k ? "," : "",
                              sget(a, "annotations.alert_id"));
    }
    json_decref(j);
}

static struct rd_alert am_alert(const char *fp, bool resolved, int scope)
{
    struct rd_alert a = alert(fp, resolved);
    a.cluster = "prod";
    a.replica = "rd1";
    a.scope = scope;
    return a;
}

static void am_send(const char *fp, bool resolved, int scope)
{
    struct rd_alert a = am_alert(fp, resolved, scope);
    deliver(&a);
}

static void test_am_body(void **state)
{
    (void)state;
    static const char *cfg[][2] = {
        {"url", "http://127.0.0.1:9093/"},
        {"external_url", "https://rd.example:8080/"},
        {"resend_interval", "30s"},
        {NULL, NULL},
    };
    assert_int_equal(fh_init("webhook", "am", cfg), 0);
    fh_start();
    struct rd_alert a = am_alert("fp-1", false, RD_ALERT_LEADER);
    a.labels_json = "{\"team\":\"ml\",\"bad-name\":\"x\",\"0x\":\"y\",\"empty\":\"\"}";
    deliver(&a);
    assert_int_equal(g_fh.n_http, 1);
    /* Alertmanager's URL alone: its intake path is added. */
    assert_string_equal(g_fh.http[0].url, "http://127.0.0.1:9093/api/v2/alerts");
    assert_string_equal(g_fh.http[0].content_type, "application/json");
    json_t *j = am_body(0);
    assert_int_equal(json_array_size(j), 1);
    json_t *x = json_array_get(j, 0);
    assert_string_equal(sget(x, "labels.alertname"), "AgentFault");
    assert_string_equal(sget(x, "labels.severity"), "critical");
    assert_string_equal(sget(x, "labels.cluster"), "prod");
    assert_string_equal(sget(x, "labels.node_id"), "a-1");
    assert_string_equal(sget(x, "labels.fault_type"), "crash");
    assert_string_equal(sget(x, "labels.team"), "ml");
    /* A fault's replica (whoever leads) is an annotation, not a label;
     * names Alertmanager refuses and empty values are left out. */
    assert_int_equal(json_object_size(json_object_get(x, "labels")), 6);
    assert_string_equal(sget(x, "annotations.summary"), "agent a-1 stopped answering");
    assert_string_equal(sget(x, "annotations.description"), "no heartbeat for 5s; probe refused");
    assert_string_equal(sget(x, "annotations.alert_id"), "fp-1");
    assert_string_equal(sget(x, "annotations.replica"), "rd1");
    assert_int_equal(json_object_size(json_object_get(x, "annotations")), 4);
    assert_string_equal(sget(x, "startsAt"), "2026-01-02T03:04:05.678Z");
    /* Firing: ends 4 re-sends from now unless sent again (now = 2026-01-01). */
    assert_string_equal(sget(x, "endsAt"), "2026-01-01T00:02:00.000Z");
    assert_string_equal(sget(x, "generatorURL"),
                        "https://rd.example:8080/api/v1/faults/records/fp-1");
    assert_int_equal(json_object_size(x), 5);
    json_decref(j);
    fh_answer(0, 200, RD_PROBE_NONE, NULL, 1);

    /* A cluster-wide alert about this replica: no node_id, replica a label. */
    struct rd_alert q = am_alert("nq-1", false, RD_ALERT_REPLICA);
    q.alertname = "NoQuorum";
    q.node_id = "";
    deliver(&q);
    j = am_body(1);
    x = json_array_get(j, 0);
    assert_null(json_object_get(json_object_get(x, "labels"), "node_id"));
    assert_string_equal(sget(x, "labels.replica"), "rd1");
    assert_null(json_object_get(json_object_get(x, "annotations"), "replica"));
    assert_string_equal(sget(x, "generatorURL"), "https://rd.example:8080");
    json_decref(j);
    fh_answer(1, 200, RD_PROBE_NONE, NULL, 1);

    /* Resolved: its end time. */
    am_send("fp-1", true, RD_ALERT_LEADER);
    j = am_body(2);
    assert_string_equal(sget(json_array_get(j, 0), "endsAt"), "2026-01-02T03:05:06.678Z");
    json_decref(j);
    fh_answer(2, 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(fh_counter("alerts_sent"), 3);
    fh_stop(true);
    fh_destroy();

    /* A URL with a path is used as it is. */
    static const char *cfg2[][2] = {{"url", "http://am:9093/custom/path"}, {NULL, NULL}};
    assert_int_equal(fh_init("webhook", "am", cfg2), 0);
    fh_start();
    send_fp("z");
    assert_string_equal(g_fh.http[0].url, "http://am:9093/custom/path");
    fh_answer(0, 200, RD_PROBE_NONE, NULL, 1);
    fh_stop(true);
    fh_destroy();
}

static void test_am_resend(void **state)
{
    (void)state;
    static const char *cfg[][2] = {
        {"url", "http://127.0.0.1:9093/api/v2/alerts"},
        {"resend_interval", "1s"},
        {NULL, NULL},
    };
    assert_int_equal(fh_init("webhook", "am", cfg), 0);
    fh_start();
    /* A repeating timer of resend_interval. */
    assert_int_equal(fh_live_timers(), 1);
    size_t rt = fh_last_live_timer();
    assert_int_equal(g_fh.timers[rt].first_ms, 1000);
    assert_int_equal(g_fh.timers[rt].repeat_ms, 1000);
    fh_fire(rt); /* nothing held: nothing sent */
    assert_int_equal(g_fh.n_http, 0);

    am_send("f1", false, RD_ALERT_LEADER);
    am_send("f2", false, RD_ALERT_REPLICA);
    am_send("e1", false, RD_ALERT_EVENT); /* a notice: not held */
    am_send("f3", false, RD_ALERT_LEADER);
    char ids[256];
    am_ids(0, ids, sizeof ids);
    assert_string_equal(ids, "f1");
    /* While alerts wait in the queue, no re-send is added behind them. */
    fh_fire(rt);
    fh_answer(0, 200, RD_PROBE_NONE, NULL, 1);
    am_ids(1, ids, sizeof ids);
    assert_string_equal(ids, "f2,e1,f3");
    fh_answer(1, 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(g_fh.n_http, 2);

    /* The receiver is idle: every held alert again, with a fresh endsAt. */
    g_fh.now_ms += 5000;
    fh_fire(rt);
    assert_int_equal(g_fh.n_http, 3);
    json_t *j = am_body(2);
    assert_int_equal(json_array_size(j), 3);
    size_t k;
    json_t *a;
    json_array_foreach(j, k, a)
    {
        assert_string_equal(sget(a, "endsAt"), "2026-01-01T00:00:09.000Z");
        assert_string_equal(sget(a, "startsAt"), "2026-01-02T03:04:05.678Z");
        assert_string_not_equal(sget(a, "annotations.alert_id"), "e1");
    }
    json_decref(j);
    fh_answer(2, 200, RD_PROBE_NONE, NULL, 1);
    assert_int_equal(fh_counter("alerts_sent"), 7);

    /* Resolved: sent once, no longer held. */
    am_send("f1", true, RD_ALERT_LEADER);
    fh_answer(3, 200, RD_PROBE_NONE, NULL, 1);
    fh_fire(rt);
    am_ids(4, ids, sizeof ids);
    assert_true(strcmp(ids, "f2,f3") == 0 || strcmp(ids, "f3,f2") == 0);
    fh_answer(4, 200, RD_PROBE_NONE, NULL, 1);

    /* No longer the leader: the faults' alerts are the new leader's to send;
     * this replica's own alert stays held. */
    aops()->leadership(g_fh.state, false);
    fh_fire(rt);
    am_ids(5, ids, sizeof ids);
    assert_string_equal(ids, "f2");
    fh_answer(5, 200, RD_PROBE_NONE, NULL, 1);
    aops()->leadership(g_fh.state, true);
    fh_fire(rt);
    am_ids(6, ids, sizeof ids);
    assert_string_equal(ids, "f2");
    fh_answer(6, 200, RD_PROBE_NONE, NULL, 1);

    /* While a re-send fails, the retry carries it; the timer adds nothing. */
    fh_fire(rt);
    fh_answer(7, 503, RD_PROBE_STATUS, NULL, 1);
    fh_fire(rt);
    assert_int_equal(g_fh.n_http, 8);
    fh_fire(fh_last_live_timer()); /* the retry */
    assert_int_equal(g_fh.n_http, 9);
    am_ids(8, ids, sizeof ids);
    assert_string_equal(ids, "f2");
    fh_answer(8, 200, RD_PROBE_NONE, NULL, 1);
    fh_stop(true);
    fh_destroy();
}

static void test_am_rejected(void **state)
{
    (void)state;
    static const char *cfg[][2] = {
        {"url", "http://127.0.0.1:9093/api/v2/alerts"},
        {"batch", "2"},
        {"dead_letters", "3"},
        {NULL, NULL},
    };
    assert_int_equal(fh_init("webhook", "am", cfg), 0);
    fh_start();
    size_t rt = fh_last_live_timer();
    am_send("r1", false, RD_ALERT_LEADER);
    am_send("r2", false, RD_ALERT_LEADER);
    am_send("r3", false, RD_ALERT_LEADER);
    /* 400 with a long answer: not retried, logged once, dead letters. */
    char answer[1024];
    memset(answer, 'x', sizeof answer - 1);
    answer[sizeof answer - 1] = '\0';
    const char *head = "{\"code\":400,\"message\":\"bad \\\"alert\\\"\n";
    memcpy(answer, head, strlen(head));
    size_t logs = g_fh.n_logs;
    fh_answer_body(0, 400, answer);
    assert_int_equal(fh_counter("alerts_rejected"), 1);
    assert_int_equal(fh_counter("alerts_failed"), 0);
    assert_int_equal(g_fh.n_logs, logs + 1);
    assert_int_equal(g_fh.logs[logs].level, RD_PLOG_ERROR);
    assert_string_equal(g_fh.logs[logs].event, "delivery_rejected");
    assert_non_null(strstr(g_fh.logs[logs].msg, "status=400 alerts=1 answer=\"{ code :400"));
    assert_true(strlen(g_fh.logs[logs].msg) < 512); /* the answer is bounded */
    /* The next batch goes at once; no retry timer. */
    assert_int_equal(g_fh.n_http, 2);
    assert_int_equal(fh_live_timers(), 1);
    char ids[256];
    am_ids(1, ids, sizeof ids);
    assert_string_equal(ids, "r2,r3");
    /* 408 and 429 are retried; then 422 refuses the whole batch. */
    fh_answer(1, 429, RD_PROBE_STATUS, NULL, 1);
    fh_fire(fh_last_live_timer());
    fh_answer(2, 408, RD_PROBE_STATUS, NULL, 1);
    fh_fire(fh_last_live_timer());
    assert_int_equal(fh_counter("alerts_failed"), 2);
    fh_answer_body(3, 422, "nope");
    assert_int_equal(fh_counter("alerts_rejected"), 3);

    struct rd_dead_letter dl;
    assert_int_equal(aops()->dead_letter_at(g_fh.state, 0, &dl), 0);
    assert_int_equal(dl.status, 400);
    assert_int_equal(strlen(dl.answer), 256);
    assert_int_equal(dl.at_ms, g_fh.now_ms);
    json_t *a = json_loads(dl.alert_json, 0, NULL);
    assert_non_null(a);
    assert_string_equal(sget(a, "annotations.alert_id"), "r1");
    json_decref(a);
    assert_int_equal(aops()->dead_letter_at(g_fh.state, 2, &dl), 0);
    assert_int_equal(dl.status, 422);
    assert_string_equal(dl.answer, "nope");
    assert_int_equal(aops()->dead_letter_at(g_fh.state, 3, &dl), RD_ENOTFOUND);

    /* Refused alerts are no longer held: a re-send carries none of them. */
    size_t n = g_fh.n_http;
    fh_fire(rt);
    assert_int_equal(g_fh.n_http, n);

    /* The list is bounded: the oldest goes. */
    am_send("r4", false, RD_ALERT_LEADER);
    fh_answer_body(fh_last(), 400, "");
    assert_int_equal(aops()->dead_letter_at(g_fh.state, 0, &dl), 0);
    a = json_loads(dl.alert_json, 0, NULL);
    assert_string_equal(sget(a, "annotations.alert_id"), "r2");
    json_decref(a);
    assert_int_equal(aops()->dead_letter_at(g_fh.state, 2, &dl), 0);
    assert_string_equal(dl.answer, "");
    assert_int_equal(fh_counter("alerts_rejected"), 4);
    assert_int_equal(fh_counter("alerts_sent"), 0);
    fh_stop(true);
    fh_destroy(); /* frees the dead letters (LeakSanitizer checks) */
}

static void test_am_config(void **state)
{
    (void)state;
    static const char *bad_fmt[][2] = {{"url", "http://x:1"}, {"format", "slack"}, {NULL, NULL}};
    assert_int_equal(fh_init("webhook", "am", bad_fmt), RD_ECONFIG);
    assert_non_null(strstr(g_fh.error, "format must be alertmanager or webhook, got 'slack'"));
    static const char *bad_ext[][2] = {
        {"url", "http://x:1"}, {"external_url", "rd.example"}, {NULL, NULL}};
    assert_int_equal(fh_init("webhook", "am", bad_ext), RD_ECONFIG);
    assert_non_null(strstr(g_fh.error, "external_url"));
    fh_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_lines),        cmocka_unit_test(test_webhook_body_format),
        cmocka_unit_test(test_webhook_resolved), cmocka_unit_test(test_webhook_retry_backoff),
        cmocka_unit_test(test_webhook_batches),  cmocka_unit_test(test_webhook_overflow),
        cmocka_unit_test(test_webhook_stop),     cmocka_unit_test(test_webhook_config),
        cmocka_unit_test(test_am_body),          cmocka_unit_test(test_am_resend),
        cmocka_unit_test(test_am_rejected),      cmocka_unit_test(test_am_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
