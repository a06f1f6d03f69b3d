/*
 * Alerts end to end: a fault opens an alert and its resolution resolves it,
 * delivered by the webhook plugin to a real HTTP receiver in the format of
 * Alertmanager's webhook. While the receiver is down (answering 503, then
 * accepting a delivery and never answering it, then refusing connections)
 * alerts wait and are retried; when it comes back every one arrives, in
 * order. Nothing blocks the engine meanwhile: while a delivery hangs (the
 * plugin's timeout is far longer than any wait here) the API answers and an
 * agent is detected coming back, and the hung delivery is still in flight.
 * Intervals and time limits scale with rdt_time_factor().
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "httpd.h"
#include "rdt_ctest.h"

/* The webhook's timeout: a hung delivery outlasts everything the test does
 * meanwhile, so an engine that waited for it could not pass. */
#define HANG_TIMEOUT "60s"

static struct rdt_proc proc;
static struct rdt_httpd *receiver;
static int hb_ms; /* the heartbeat interval: 100 ms, scaled */

static int setup(void **state)
{
    receiver = rdt_httpd_start(1);
    if (receiver == NULL)
        return -1;
    rdt_httpd_set(receiver, 0, RDT_EP_STATUS, 503); /* down from the start */
    hb_ms = rdt_ms(100);
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "fault_tolerance:\n"
             "  detection:\n"
             "    heartbeat_interval: %dms\n"
             "    failure_threshold: 3\n"
             "    recovery_threshold: 2\n"
             "  partition:\n"
             "    min_nodes: 100\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - name: ops-webhook\n"
             "      plugin: webhook\n"
             "      required: true\n"
             "      config:\n"
             "        url: http://127.0.0.1:%u/alerts\n"
             "        format: webhook\n"
             "        timeout: " HANG_TIMEOUT "\n"
             "        max_backoff: %dms\n",
             hb_ms, rdt_httpd_port(receiver, 0), rdt_ms(200));
    if (rdt_proc_start(&proc, yaml) != 0)
        return -1;
    return rdt_wait_ready(&proc, 15000);
}

static int teardown(void **state)
{
    rdt_proc_cleanup(&proc);
    rdt_httpd_stop(receiver);
    return 0;
}

#define FAILED  "recoveryd_plugin_alerts_failed_total{plugin_instance=\"ops-webhook\"} "
#define SENT    "recoveryd_plugin_alerts_sent_total{plugin_instance=\"ops-webhook\"} "
#define DROPPED "recoveryd_plugin_alerts_dropped_total{plugin_instance=\"ops-webhook\"} "

static long long metric(const char *name)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &r), 0);
    const char *p = strstr(r.body, name);
    long long v = p ? atoll(p + strlen(name)) : -1;
    rdt_resp_free(&r);
    return v;
}

static long long register_node(const char *id)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"node_id\":\"%s\"}", id);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes", body, &r), 0);
    assert_int_equal(r.status, 201);
    long long epoch = json_integer_value(rdt_json_path(r.json, "epoch"));
    rdt_resp_free(&r);
    return epoch;
}

static void beat(const char *id, long long epoch, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_heartbeat(&proc, RDT_H2, id, epoch, 0, &r), 0);
        rdt_resp_free(&r);
        rdt_sleep_ms(hb_ms);
    }
}

/* Polls until the receiver holds `n` accepted bodies (deadline 10 s, scaled). */
static void await_bodies(unsigned n)
{
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    while (rdt_httpd_bodies(receiver, 0) < n && rdt_now_ms() < deadline)
        rdt_sleep_ms(20);
    assert_true(rdt_httpd_bodies(receiver, 0) >= n);
}

static const char *fault_id_of(const char *node, char *buf, size_t len)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/faults/records?node_id=%s&limit=1", node);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    json_t *f = json_array_get(rdt_json_path(r.json, "items"), 0);
    assert_non_null(f);
    snprintf(buf, len, "%s", json_string_value(json_object_get(f, "id")));
    rdt_resp_free(&r);
    return buf;
}

static void await_state(const char *id, const char *state, long long epoch, bool beating)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", id);
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    for (;;) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
        bool done = strcmp(json_string_value(rdt_json_path(r.json, "state")), state) == 0;
        rdt_resp_free(&r);
        if (done)
            return;
        assert_true(rdt_now_ms() < deadline);
        if (beating)
            beat(id, epoch, 1);
        else
            rdt_sleep_ms(20);
    }
}

static void test_alerts_survive_a_receiver_outage(void **state)
{
    long long epoch = register_node("agent-a");
    beat("agent-a", epoch, 8);
    /* The agent dies: a fault, an alert, and a receiver that says 503. */
    await_state("agent-a", "failed", epoch, false);
    char fid[64];
    fault_id_of("agent-a", fid, sizeof(fid));
    int64_t deadline = rdt_now_ms() + rdt_ms(5000);
    while (metric(FAILED) < 2 && rdt_now_ms() < deadline)
        rdt_sleep_ms(20);
    assert_true(metric(FAILED) >= 2);
    assert_int_equal(rdt_httpd_bodies(receiver, 0), 0);

    /* Now it accepts a delivery and never answers it: the engine is not held
     * up. Once a retry sits at the receiver (accepted, unanswered)... */
    assert_int_equal(rdt_httpd_set(receiver, 0, RDT_EP_HANG, 0), 0);
    unsigned hits = rdt_httpd_hits(receiver, 0); /* from here on, every request hangs */
    deadline = rdt_now_ms() + rdt_ms(5000);
    while (rdt_httpd_hits(receiver, 0) == hits && rdt_now_ms() < deadline)
        rdt_sleep_ms(10);
    assert_true(rdt_httpd_hits(receiver, 0) > hits);
    long long failed = metric(FAILED);
    /* ...the API answers at once... */
    struct rdt_resp r = {0};
    int64_t t0 = rdt_now_ms();
    assert_int_equal(rdt_get(&proc, RDT_H2, "/api/v1/faults/status", &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(rdt_now_ms() - t0 < rdt_ms(1000));
    rdt_resp_free(&r);
    /* ...and the agent comes back meanwhile: registered, heartbeats taken,
     * judged alive, its fault resolved (a second alert, queued). */
    epoch = register_node("agent-a");
    await_state("agent-a", "alive", epoch, true);
    /* All of that while the delivery still hangs: no attempt ended since. */
    assert_int_equal(metric(FAILED), failed);
    assert_int_equal(metric(SENT), 0);

    /* Then it refuses connections altogether (the hung one is torn down: a
     * failed attempt, retried); the engine is not held up either. */
    assert_int_equal(rdt_httpd_set(receiver, 0, RDT_EP_DOWN, 0), 0);
    deadline = rdt_now_ms() + rdt_ms(5000);
    while (metric(FAILED) < failed + 2 && rdt_now_ms() < deadline)
        rdt_sleep_ms(20);
    assert_true(metric(FAILED) >= failed + 2);
    t0 = rdt_now_ms();
    assert_int_equal(rdt_get(&proc, RDT_H2, "/api/v1/faults/status", &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(rdt_now_ms() - t0 < rdt_ms(1000));
    rdt_resp_free(&r);

    /* The receiver is back: both alerts arrive, firing then resolved. */
    rdt_httpd_set(receiver, 0, RDT_EP_OK, 0);
    await_bodies(1);
    unsigned n = rdt_httpd_bodies(receiver, 0);
    int firing = -1, resolved = -1, idx = 0;
    for (unsigned b = 0; b < n; b++) {
        char *body = rdt_httpd_body(receiver, 0, b);
        json_t *doc = json_loads(body, 0, NULL);
        assert_non_null(doc);
        assert_string_equal(json_string_value(json_object_get(doc, "version")), "4");
        assert_string_equal(json_string_value(json_object_get(doc, "receiver")), "ops-webhook");
        json_t *alerts = json_object_get(doc, "alerts");
        for (size_t i = 0; i < json_array_size(alerts); i++, idx++) {
            json_t *a = json_array_get(alerts, i);
            if (strcmp(json_string_value(json_object_get(a, "fingerprint")), fid) != 0)
                continue;
            assert_string_equal(json_string_value(rdt_json_path(a, "labels.alertname")),
                                "AgentFault");
            assert_string_equal(json_string_value(rdt_json_path(a, "labels.node_id")), "agent-a");
            assert_string_equal(json_string_value(rdt_json_path(a, "labels.fault_type")), "crash");
            assert_string_equal(json_string_value(rdt_json_path(a, "labels.severity")), "critical");
            assert_true(rdt_is_rfc3339_utc(json_string_value(json_object_get(a, "startsAt"))));
            const char *st = json_string_value(json_object_get(a, "status"));
            if (strcmp(st, "firing") == 0) {
                firing = idx;
                assert_string_equal(json_string_value(json_object_get(a, "endsAt")),
                                    "0001-01-01T00:00:00Z");
            } else {
                resolved = idx;
                assert_string_equal(st, "resolved");
                assert_true(rdt_is_rfc3339_utc(json_string_value(json_object_get(a, "endsAt"))));
            }
        }
        json_decref(doc);
        free(body);
        if (b + 1 == n && resolved < 0) {
            await_bodies(n + 1);
            n = rdt_httpd_bodies(receiver, 0);
        }
    }
    assert_true(firing >= 0);
    assert_true(resolved > firing); /* in order */
    assert_true(metric(SENT) >= 2);
    assert_int_equal(metric(DROPPED), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alerts_survive_a_receiver_outage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
