/*
 * Alerts in a real Prometheus Alertmanager (Debian's prometheus-alertmanager,
 * started here on a free loopback port with its own storage and no gossip),
 * configured with deploy/alertmanager.yml (its receivers pointed at a local
 * HTTP server, its group_wait shortened), fed by a real recoveryd whose
 * webhook plugin speaks Alertmanager's intake API (the default format):
 *   - a failed agent's alert appears in /api/v2/alerts with its labels,
 *     and its endsAt moves forward as recoveryd re-sends it;
 *   - a second webhook instance whose receiver answers 400 gets one attempt
 *     per alert, never retried nor re-sent, and shows them as dead letters
 *     in /api/v1/plugins;
 *   - the alert resolves (leaves /api/v2/alerts, long before the end time
 *     it was last sent with) when the agent returns;
 *   - while a partition is suspected (a mass failure), the per-agent alerts
 *     of the cluster are inhibited by PartitionSuspected, and the alerts are
 *     grouped by cluster and alertname;
 *   - in a 3-replica cluster whose leader stops, the new leader raises the
 *     open faults again (the same alerts, not second ones), and the old
 *     one, woken, stops re-sending them: a fault resolved meanwhile stays
 *     resolved.
 * Without Alertmanager installed the test exits 77 (skipped).
 * Intervals and time limits scale with rdt_time_factor().
 */
#include "cmocka_all.h"

#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#include "common/util.h"
#include "harness.h"
#include "httpd.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"
#include "rdt_server.h"

#define AM_BIN  "/usr/bin/prometheus-alertmanager"
#define CLUSTER "test-cluster-1"

static struct rdt_proc proc;
static struct rdt_server am;
static char am_dir[512];
static char am_url[64];
static struct rdt_httpd *hooks; /* ep 0: Alertmanager's receivers; ep 1: answers 400 */
static int hb_ms;
static int resend_ms;
static long long lone_epoch;

/* ---- Alertmanager ------------------------------------------------------------ */

/* deploy/alertmanager.yml with its receivers sent to `port` and a short group_wait. */
static int write_am_config(const char *path, unsigned port)
{
    FILE *in = fopen(RD_SOURCE_DIR "/deploy/alertmanager.yml", "r");
    FILE *out = fopen(path, "w");
    if (!in || !out) {
        if (in)
            fclose(in);
        if (out)
            fclose(out);
        return -1;
    }
    char line[1024];
    while (fgets(line, sizeof line, in)) {
        char *u = strstr(line, "http://127.0.0.1:5001/");
        if (u)
            fprintf(out, "%.*shttp://127.0.0.1:%u/%s", (int)(u - line), line, port,
                    u + strlen("http://127.0.0.1:5001/"));
        else if (strstr(line, "group_wait:"))
            fprintf(out, "  group_wait: 1s\n");
        else
            fputs(line, out);
    }
    fclose(in);
    return fclose(out) == 0 ? 0 : -1;
}

static int start_alertmanager(void)
{
    if (rdt_tmpdir(am_dir, sizeof am_dir) != 0)
        return -1;
    char cfg[600], storage[600], log[600], listen[64], conf_arg[700], storage_arg[700];
    snprintf(cfg, sizeof cfg, "%s/alertmanager.yml", am_dir);
    snprintf(storage, sizeof storage, "%s/data", am_dir);
    snprintf(log, sizeof log, "%s/alertmanager.log", am_dir);
    if (write_am_config(cfg, rdt_httpd_port(hooks, 0)) != 0)
        return -1;
    uint16_t port, unused;
    if (rdt_free_ports(&port, &unused) != 0)
        return -1;
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%u", port);
    snprintf(am_url, sizeof am_url, "http://127.0.0.1:%u", port);
    snprintf(conf_arg, sizeof conf_arg, "--config.file=%s", cfg);
    snprintf(storage_arg, sizeof storage_arg, "--storage.path=%s", storage);
    char *const argv[] = {
        AM_BIN, conf_arg, storage_arg, listen, "--cluster.listen-address=", "--log.level=info",
        NULL};
    if (rdt_server_start(&am, argv, NULL, NULL, log, RDT_SAME_USER, 0) != 0)
        return -1;
    char ready[128];
    snprintf(ready, sizeof ready, "%s/-/ready", am_url);
    int64_t deadline = rdt_now_ms() + rdt_ms(20000);
    while (rdt_now_ms() < deadline && rdt_server_alive(&am)) {
        struct rdt_resp r = {0};
        int rv = rdt_http(RDT_H1, "GET", ready, NULL, 0, &r);
        int status = r.status;
        rdt_resp_free(&r);
        if (rv == 0 && status == 200)
            return 0;
        rdt_sleep_ms(50);
    }
    fprintf(stderr, "alertmanager did not become ready\n");
    rdt_server_print_log(log, 30);
    return -1;
}

/* Alertmanager's GET `path` (its JSON; the caller frees it). */
static json_t *am_get(const char *path)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", am_url, path);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_http(RDT_H1, "GET", url, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_incref(r.json);
    rdt_resp_free(&r);
    assert_non_null(j);
    return j;
}

static const char *label(json_t *alert, const char *name)
{
    return json_string_value(json_object_get(json_object_get(alert, "labels"), name));
}

/* The alert Alertmanager holds with these alertname and node_id (node NULL:
 * without a node_id), or NULL; from `all`, which the caller keeps. */
static json_t *find_alert(json_t *all, const char *alertname, const char *node)
{
    size_t i;
    json_t *a;
    json_array_foreach(all, i, a)
    {
        const char *n = label(a, "node_id");
        if (strcmp(label(a, "alertname"), alertname) == 0 &&
            (node ? n && strcmp(n, node) == 0 : n == NULL))
            return a;
    }
    return NULL;
}

/* Waits (deadline 15 s, scaled) until Alertmanager holds that alert in
 * `state` ("active", "suppressed"); returns a copy (the caller frees it). */
static json_t *await_alert(const char *alertname, const char *node, const char *state)
{
    int64_t deadline = rdt_now_ms() + rdt_ms(15000);
    for (;;) {
        json_t *all = am_get("/api/v2/alerts");
        json_t *a = find_alert(all, alertname, node);
        const char *st = a ? json_string_value(rdt_json_path(a, "status.state")) : NULL;
        if (st && strcmp(st, state) == 0) {
            json_t *copy = json_deep_copy(a);
            json_decref(all);
            return copy;
        }
        if (rdt_now_ms() > deadline) {
            char *text = json_dumps(all, JSON_INDENT(1));
            fail_msg("no %s alert for %s in state %s in Alertmanager within 15 s: %s", alertname,
                     node ? node : "the cluster", state, text);
        }
        json_decref(all);
        rdt_sleep_ms(50);
    }
}

static int64_t time_of(json_t *alert, const char *field)
{
    int64_t ms = 0;
    const char *s = json_string_value(json_object_get(alert, field));
    assert_non_null(s);
    assert_int_equal(rd_time_parse(s, &ms), 0);
    return ms;
}

/* ---- recoveryd and its agents ------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    if (access(AM_BIN, X_OK) != 0) {
        fprintf(stderr,
                "%s not found (Debian's prometheus-alertmanager, scripts/bootstrap): "
                "skipped\n",
                AM_BIN);
        exit(77);
    }
    hooks = rdt_httpd_start(2);
    if (hooks == NULL)
        return -1;
    rdt_httpd_set(hooks, 1, RDT_EP_STATUS, 400);
    if (start_alertmanager() != 0)
        return -1;
    hb_ms = rdt_ms(100);
    resend_ms = rdt_ms(1000);
    int f = rdt_time_factor();
    snprintf(proc.cluster_yaml, sizeof proc.cluster_yaml, "  name: " CLUSTER "\n");
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "fault_tolerance:\n"
             "  detection:\n"
             "    heartbeat_interval: %dms\n"
             "    failure_threshold: 3\n"
             "    recovery_threshold: 2\n"
             "  partition:\n"
             "    mass_failure_share: 50%%\n"
             "    mass_failure_window: %ds\n"
             "    min_nodes: 4\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - name: alertmanager\n"
             "      plugin: webhook\n"
             "      required: true\n"
             "      config:\n"
             "        url: %s\n"
             "        resend_interval: %dms\n"
             "        external_url: http://127.0.0.1:%u\n"
             "    - name: refuser\n"
             "      plugin: webhook\n"
             "      required: true\n"
             "      config:\n"
             "        url: http://127.0.0.1:%u/api/v2/alerts\n"
             "        resend_interval: %dms\n"
             "        batch: 1\n",
             hb_ms, 5 * f, am_url, resend_ms, 8080u, rdt_httpd_port(hooks, 1), resend_ms);
    /* the refuser's 400s are logged as errors, on purpose */
    proc.errors_expected = true;
    if (rdt_proc_start(&proc, yaml) != 0)
        return -1;
    return rdt_wait_ready(&proc, 15000);
}

static struct rdt_cluster cl;

static int teardown(void **state)
{
    (void)state;
    rdt_cluster_cleanup(&cl);
    rdt_proc_cleanup(&proc);
    if (am.pid > 0)
        rdt_server_stop(&am, SIGTERM, 5000);
    if (am_dir[0])
        rdt_rmtree(am_dir);
    rdt_httpd_stop(hooks);
    return 0;
}

static long long register_node(const char *id)
{
    long long epoch = 0;
    assert_int_equal(rdt_register(&proc, id, 1, &epoch), 0);
    return epoch;
}

struct agent {
    const char *id;
    long long epoch;
};

/* One heartbeat round for `n` agents, then a heartbeat interval's pause. */
static void beat(const struct agent *a, int n)
{
    for (int i = 0; i < n; i++) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_heartbeat(&proc, RDT_H2, a[i].id, a[i].epoch, 0, &r), 0);
        rdt_resp_free(&r);
    }
    rdt_sleep_ms(hb_ms);
}

static const char *node_state(const char *id, char *buf, size_t len)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", id);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    snprintf(buf, len, "%s", json_string_value(rdt_json_path(r.json, "state")) ?: "");
    rdt_resp_free(&r);
    return buf;
}

/* Beats `a` (n agents, may be 0) until agent `id` is in `state` (10 s, scaled). */
static void await_state(const struct agent *a, int n, const char *id, const char *state)
{
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    char buf[32];
    while (strcmp(node_state(id, buf, sizeof buf), state) != 0) {
        if (rdt_now_ms() > deadline)
            fail_msg("%s is %s, not %s, after 10 s", id, buf, state);
        if (n > 0)
            beat(a, n);
        else
            rdt_sleep_ms(20);
    }
}

static long long plugin_counter(const char *name, const char *instance)
{
    char metric[160];
    snprintf(metric, sizeof metric, "recoveryd_plugin_%s_total{plugin_instance=\"%s\"}", name,
             instance);
    return rdt_metric(&proc, metric);
}

static char lone_fault[64];

/* ---- the tests ------------------------------------------------------------------- */

static void test_failed_agent_alert_reaches_alertmanager(void **state)
{
    (void)state;
    struct agent lone = {"lone-1", register_node("lone-1")};
    for (int i = 0; i < 8; i++)
        beat(&lone, 1);
    lone_epoch = lone.epoch;
    await_state(NULL, 0, "lone-1", "failed");
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/faults/records?node_id=lone-1&limit=1", &r),
                     0);
    snprintf(lone_fault, sizeof lone_fault, "%s",
             json_string_value(
                 json_object_get(json_array_get(rdt_json_path(r.json, "items"), 0), "id")));
    rdt_resp_free(&r);
    assert_true(lone_fault[0] != '\0');

    json_t *a = await_alert("AgentFault", "lone-1", "active");
    assert_string_equal(label(a, "severity"), "critical");
    assert_string_equal(label(a, "cluster"), CLUSTER);
    assert_string_equal(label(a, "fault_type"), "crash");
    /* The replica that raised a fault is an annotation: a new leader
     * re-raising the fault updates this very alert. */
    assert_null(label(a, "replica"));
    assert_int_equal(json_object_size(json_object_get(a, "labels")), 5);
    assert_string_equal(json_string_value(rdt_json_path(a, "annotations.replica")), "rd1");
    assert_string_equal(json_string_value(rdt_json_path(a, "annotations.alert_id")), lone_fault);
    assert_non_null(strstr(json_string_value(rdt_json_path(a, "annotations.summary")), "lone-1"));
    char gen[128];
    snprintf(gen, sizeof gen, "http://127.0.0.1:8080/api/v1/faults/records/%s", lone_fault);
    assert_string_equal(json_string_value(json_object_get(a, "generatorURL")), gen);
    /* Firing until 4 re-sends from the last one; each re-send moves it on. */
    int64_t ends = time_of(a, "endsAt");
    assert_true(ends > rd_now_ms() + resend_ms);
    if (ends > rd_now_ms() + 4 * resend_ms + 1000)
        fail_msg("endsAt %s is more than 4 re-sends (%d ms) ahead",
                 json_string_value(json_object_get(a, "endsAt")), 4 * resend_ms);
    json_decref(a);
    int64_t deadline = rdt_now_ms() + 4 * resend_ms + rdt_ms(5000);
    for (;;) {
        a = await_alert("AgentFault", "lone-1", "active");
        int64_t e = time_of(a, "endsAt");
        json_decref(a);
        if (e > ends)
            break;
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(100);
    }
}

static void test_refused_alerts_are_not_retried(void **state)
{
    (void)state;
    /* The refuser got the alert once and said 400: one attempt, dead-lettered. */
    int64_t deadline = rdt_now_ms() + rdt_ms(5000);
    while (plugin_counter("alerts_rejected", "refuser") < 1 && rdt_now_ms() < deadline)
        rdt_sleep_ms(20);
    long long rejected = plugin_counter("alerts_rejected", "refuser");
    assert_true(rejected >= 1);
    unsigned hits = rdt_httpd_hits(hooks, 1);
    assert_int_equal(hits, (unsigned)rejected); /* batch 1: one request per alert */
    /* Two more re-sends of the accepted alert (its endsAt moved twice): the
     * refused one was neither retried nor re-sent meanwhile. */
    json_t *a = await_alert("AgentFault", "lone-1", "active");
    int64_t ends = time_of(a, "endsAt");
    json_decref(a);
    for (int moved = 0; moved < 2;) {
        assert_true(rdt_now_ms() < deadline + 4 * resend_ms + rdt_ms(5000));
        a = await_alert("AgentFault", "lone-1", "active");
        int64_t e = time_of(a, "endsAt");
        json_decref(a);
        if (e > ends) {
            moved++;
            ends = e;
        }
        rdt_sleep_ms(50);
    }
    assert_int_equal(rdt_httpd_hits(hooks, 1), hits);
    assert_int_equal(plugin_counter("alerts_rejected", "refuser"), rejected);
    assert_int_equal(plugin_counter("alerts_failed", "refuser"), 0);
    assert_int_equal(plugin_counter("alerts_rejected", "alertmanager"), 0);
    assert_true(plugin_counter("alerts_sent", "alertmanager") >= 3);

    /* The dead letters, in the API. */
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/plugins", &r), 0);
    assert_int_equal(r.status, 200);
    json_t *refuser = NULL, *accepted = NULL, *it;
    size_t i;
    json_array_foreach(rdt_json_path(r.json, "items"), i, it)
    {
        const char *name = json_string_value(json_object_get(it, "name"));
        if (strcmp(name, "refuser") == 0)
            refuser = it;
        else if (strcmp(name, "alertmanager") == 0)
            accepted = it;
    }
    assert_non_null(refuser);
    assert_non_null(accepted);
    assert_int_equal(json_array_size(json_object_get(accepted, "dead_letters")), 0);
    json_t *dead = json_object_get(refuser, "dead_letters");
    assert_int_equal(json_array_size(dead), (size_t)rejected);
    json_t *d = json_array_get(dead, 0);
    assert_int_equal(json_integer_value(json_object_get(d, "status")), 400);
    assert_string_equal(json_string_value(json_object_get(d, "answer")),
                        "{ status : unavailable }");
    assert_true(rdt_is_rfc3339_utc(json_string_value(json_object_get(d, "at"))));
    assert_string_equal(json_string_value(rdt_json_path(d, "alert.labels.node_id")), "lone-1");
    assert_string_equal(json_string_value(rdt_json_path(d, "alert.annotations.alert_id")),
                        lone_fault);
    rdt_resp_free(&r);
    char *log = rdt_proc_log(&proc);
    assert_non_null(strstr(log, "event=delivery_rejected"));
    free(log);
}

static void test_alert_resolves_when_agent_returns(void **state)
{
    (void)state;
    json_t *a = await_alert("AgentFault", "lone-1", "active");
    int64_t ends = time_of(a, "endsAt");
    json_decref(a);
    struct agent lone = {"lone-1", register_node("lone-1")};
    await_state(&lone, 1, "lone-1", "alive");
    /* Resolved: gone from Alertmanager's active alerts, well before the end
     * time of the last re-send (so not merely expired). */
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    for (;;) {
        json_t *all = am_get("/api/v2/alerts");
        bool present = find_alert(all, "AgentFault", "lone-1") != NULL;
        json_decref(all);
        if (!present)
            break;
        assert_true(rdt_now_ms() < deadline);
        json_t *cur = await_alert("AgentFault", "lone-1", "active");
        ends = time_of(cur, "endsAt");
        json_decref(cur);
        beat(&lone, 1);
    }
    assert_true(rd_now_ms() < ends); /* wall clock, as endsAt */
    /* Kept alive meanwhile, then left for the next test. */
    lone_epoch = lone.epoch;
}

static void test_partition_inhibits_per_agent_alerts(void **state)
{
    (void)state;
    enum { N = 6 };
    struct agent a[N + 1];
    static char ids[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "mass-%d", i);
        a[i] = (struct agent){ids[i], register_node(ids[i])};
    }
    a[N] = (struct agent){"lone-1", lone_epoch};
    for (int i = 0; i < 10; i++)
        beat(a, N + 1);
    /* lone-1 fails alone first: an active per-agent alert. */
    await_state(a, N, "lone-1", "failed");
    json_t *x = await_alert("AgentFault", "lone-1", "active");
    json_decref(x);
    /* Then most of the fleet goes silent at once (nobody beats from here on):
     * a suspected partition. */
    json_t *p = await_alert("PartitionSuspected", NULL, "active");
    assert_string_equal(label(p, "cluster"), CLUSTER);
    assert_null(label(p, "node_id"));
    const char *pfp = json_string_value(json_object_get(p, "fingerprint"));
    assert_non_null(pfp);
    /* While it fires, lone-1's alert is inhibited by it (a mass failure pages once). */
    x = await_alert("AgentFault", "lone-1", "suppressed");
    json_t *by = rdt_json_path(x, "status.inhibitedBy");
    assert_int_equal(json_array_size(by), 1);
    assert_string_equal(json_string_value(json_array_get(by, 0)), pfp);
    json_decref(x);
    /* So is every other per-agent alert; none of them is active. */
    json_t *all = am_get("/api/v2/alerts");
    size_t i;
    json_t *al;
    json_array_foreach(all, i, al)
    {
        if (label(al, "node_id"))
            assert_string_not_equal(json_string_value(rdt_json_path(al, "status.state")), "active");
    }
    json_decref(all);
    /* Grouped by cluster and alertname. */
    json_t *groups = am_get("/api/v2/alerts/groups");
    bool seen = false;
    json_t *g;
    json_array_foreach(groups, i, g)
    {
        json_t *gl = json_object_get(g, "labels");
        assert_int_equal(json_object_size(gl), 2);
        assert_string_equal(json_string_value(json_object_get(gl, "cluster")), CLUSTER);
        seen = seen || strcmp(json_string_value(json_object_get(gl, "alertname")),
                              "PartitionSuspected") == 0;
    }
    assert_true(seen);
    json_decref(groups);
    json_decref(p);
}

/* ---- leadership moves ------------------------------------------------------------- */

/* Each replica its own name (cluster.node_id rd1, rd2, rd3). */
static int name_replica(struct rdt_proc *p, int i)
{
    size_t off = strlen(p->cluster_yaml);
    int n =
        snprintf(p->cluster_yaml + off, sizeof p->cluster_yaml - off, "  node_id: rd%d\n", i + 1);
    return n > 0 && (size_t)n < sizeof p->cluster_yaml - off ? 0 : -1;
}

static long long cl_register(int L, const char *id)
{
    long long epoch = 0;
    assert_int_equal(rdt_register(&cl.procs[L], id, 1, &epoch), 0);
    return epoch;
}

static void cl_beat(int L, const struct agent *a, int n)
{
    for (int i = 0; i < n; i++) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_heartbeat(&cl.procs[L], RDT_H1, a[i].id, a[i].epoch, 0, &r), 0);
        rdt_resp_free(&r);
    }
    rdt_sleep_ms(hb_ms);
}

/* An agent that heartbeats on its own schedule (every hb_ms) while the test
 * waits on Alertmanager: the test's own requests must not starve it (under
 * load a round of them took longer than the lease, and the agent failed
 * again). */
struct beater {
    struct rdt_proc *proc;
    struct agent a;
    volatile bool stop;
    int failures;
    pthread_t thread;
};

static void *beater_main(void *arg)
{
    struct beater *b = arg;
    while (!b->stop) {
        struct rdt_resp r = {0};
        if (rdt_heartbeat(b->proc, RDT_H1, b->a.id, b->a.epoch, 0, &r) != 0 || r.status != 200)
            b->failures++;
        rdt_resp_free(&r);
        rdt_sleep_ms(hb_ms);
    }
    return NULL;
}

static const char *cl_state(int L, const char *id, char *buf, size_t len)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", id);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&cl.procs[L], RDT_H1, path, &r), 0);
    snprintf(buf, len, "%s", json_string_value(rdt_json_path(r.json, "state")) ?: "");
    rdt_resp_free(&r);
    return buf;
}

/* The alerts of cluster `name` for agent `node` in Alertmanager (a count). */
static int count_alerts(const char *name, const char *node)
{
    json_t *all = am_get("/api/v2/alerts");
    int n = 0;
    size_t i;
    json_t *a;
    json_array_foreach(all, i, a)
    {
        const char *c = label(a, "cluster"), *nd = label(a, "node_id");
        n += c && nd && strcmp(c, name) == 0 && strcmp(nd, node) == 0;
    }
    json_decref(all);
    return n;
}

/* The active AgentFault alert of failover-c for `node`, raised by `replica`. */
static json_t *await_raised_by(const char *node, const char *replica)
{
    int64_t deadline = rdt_now_ms() + rdt_ms(20000);
    for (;;) {
        json_t *all = am_get("/api/v2/alerts");
        size_t i;
        json_t *a;
        json_array_foreach(all, i, a)
        {
            const char *c = label(a, "cluster"), *nd = label(a, "node_id");
            const char *by = json_string_value(rdt_json_path(a, "annotations.replica"));
            if (c && nd && by && strcmp(c, "failover-c") == 0 && strcmp(nd, node) == 0 &&
                strcmp(by, replica) == 0) {
                json_t *copy = json_deep_copy(a);
                json_decref(all);
                return copy;
            }
        }
        json_decref(all);
        if (rdt_now_ms() > deadline)
            fail_msg("no alert for %s raised by %s within 20 s", node, replica);
        rdt_sleep_ms(50);
    }
}

/* The replica other than `L` (stopped: it would hold every request up) that
 * says it leads, within 15 s (scaled). */
static int other_leader(int L)
{
    int64_t deadline = rdt_now_ms() + rdt_ms(15000);
    for (;;) {
        for (int i = 0; i < cl.n; i++) {
            if (i == L)
                continue;
            struct rdt_resp r = {0};
            bool leads =
                rdt_get(&cl.procs[i], RDT_H1, "/health", &r) == 0 && r.status == 200 &&
                strcmp(json_string_value(rdt_json_path(r.json, "role")) ?: "", "leader") == 0;
            rdt_resp_free(&r);
            if (leads)
                return i;
        }
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(50);
    }
}

static void test_new_leader_takes_the_alerts_over(void **state)
{
    (void)state;
    char yaml[1024], extra[64];
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
             "    - name: alertmanager\n"
             "      plugin: webhook\n"
             "      required: true\n"
             "      config:\n"
             "        url: %s\n"
             "        resend_interval: %dms\n",
             hb_ms, am_url, resend_ms);
    snprintf(extra, sizeof extra, "  name: failover-c\n");
    cl.prepare = name_replica;
    assert_int_equal(rdt_cluster_start(&cl, 3, yaml, extra), 0);
    int L = rdt_cluster_leader(&cl, 10000);
    assert_true(L >= 0);
    struct agent a[2] = {{"fo-1", cl_register(L, "fo-1")}, {"fo-2", cl_register(L, "fo-2")}};
    for (int i = 0; i < 8; i++)
        cl_beat(L, a, 2);
    char buf[32], by[8];
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    while (strcmp(cl_state(L, "fo-1", buf, sizeof buf), "failed") != 0 ||
           strcmp(cl_state(L, "fo-2", buf, sizeof buf), "failed") != 0) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(20);
    }
    snprintf(by, sizeof by, "rd%d", L + 1);
    json_decref(await_raised_by("fo-1", by));
    json_decref(await_raised_by("fo-2", by));

    /* The leader stops; another takes over and raises the open faults
     * again: the same alerts (one each), now raised by it. */
    assert_int_equal(rdt_proc_signal(&cl.procs[L], SIGSTOP), 0);
    int M = other_leader(L);
    snprintf(by, sizeof by, "rd%d", M + 1);
    json_decref(await_raised_by("fo-1", by));
    json_decref(await_raised_by("fo-2", by));
    assert_int_equal(count_alerts("failover-c", "fo-1"), 1);
    assert_int_equal(count_alerts("failover-c", "fo-2"), 1);

    /* The old leader wakes, steps down and lets go of the faults' alerts. */
    assert_int_equal(rdt_proc_signal(&cl.procs[L], SIGCONT), 0);
    deadline = rdt_now_ms() + rdt_ms(10000);
    for (;;) {
        char *log = rdt_proc_log(&cl.procs[L]);
        bool released = strstr(log, "event=not_leader") != NULL;
        free(log);
        if (released)
            break;
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(50);
    }
    /* fo-1 comes back through the new leader: its alert resolves, and stays
     * resolved while fo-2's is re-sent twice more (nobody re-fires it). */
    a[0].epoch = cl_register(M, "fo-1");
    struct beater b = {.proc = &cl.procs[M], .a = a[0]};
    assert_int_equal(pthread_create(&b.thread, NULL, beater_main, &b), 0);
    deadline = rdt_now_ms() + rdt_ms(10000);
    while (count_alerts("failover-c", "fo-1") != 0) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(hb_ms);
    }
    json_t *x = await_raised_by("fo-2", by);
    int64_t ends = time_of(x, "endsAt");
    json_decref(x);
    for (int moved = 0; moved < 2;) {
        rdt_sleep_ms(hb_ms);
        assert_int_equal(count_alerts("failover-c", "fo-1"), 0);
        assert_true(rdt_now_ms() < deadline + 4 * resend_ms + rdt_ms(10000));
        x = await_raised_by("fo-2", by);
        int64_t e = time_of(x, "endsAt");
        json_decref(x);
        if (e > ends) {
            moved++;
            ends = e;
        }
    }
    b.stop = true;
    pthread_join(b.thread, NULL);
    assert_int_equal(b.failures, 0);
    rdt_cluster_cleanup(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_agent_alert_reaches_alertmanager),
        cmocka_unit_test(test_refused_alerts_are_not_retried),
        cmocka_unit_test(test_alert_resolves_when_agent_returns),
        cmocka_unit_test(test_partition_inhibits_per_agent_alerts),
        cmocka_unit_test(test_new_leader_takes_the_alerts_over),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
