/*
 * The metrics as Prometheus reads them, from a real three-replica cluster
 * that has been through what the alert rules watch: an agent failed and its
 * task moved (a recovery run that succeeded), an agent drained with nowhere
 * for its task to go (a run that failed), a backup with its archive, a
 * consistency check, an alert channel (the webhook plugin, to a receiver on
 * loopback).
 *
 * - recoveryd_recovery_runs_total{outcome} and
 *   recoveryd_recovery_duration_seconds move when a run succeeds and when
 *   one fails, on the leader that closed it, and the sums over the replicas
 *   count each run once (what the rules add up);
 * - each replica's GET /metrics passes `promtool check metrics` (the
 *   exposition format and Prometheus's naming lint), with no complaint;
 * - every metric deploy/prometheus-rules.yaml names (in its expressions and
 *   its annotations) is exposed by some replica, with the labels and
 *   buckets the rules use; the only names allowed to be missing are listed
 *   below, each with the part of issue 13 that adds it;
 * - recoveryd_quorum is 1 on every replica of the healthy cluster, and 0 on
 *   the one left when the two others stop.
 *
 * promtool comes from Debian's prometheus package (scripts/bootstrap);
 * without it the test exits 77 (skipped). Intervals and waits scale with
 * rdt_time_factor().
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "httpd.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"
#include "rdt_server.h"

#define TASK "3e7a1c00-0000-4000-8000-00000000f001"

/*
 * Metrics the rules name that a part not merged yet adds: allowed to be
 * absent from the scrape, and only those. Issue 13's parts are all in: none.
 */
static const char *const in_flight[] = {NULL};

static char promtool[512];
static struct rdt_cluster cl;
static struct rdt_httpd *receiver;
static char backup_dir[256];
static int hb_ms;

static int setup(void **state)
{
    (void)state;
    receiver = rdt_httpd_start(1);
    if (receiver == NULL)
        return -1;
    snprintf(backup_dir, sizeof(backup_dir), "%s/rdt-metrics-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(backup_dir) == NULL)
        return -1;
    hb_ms = rdt_ms(100);
    static char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "fault_tolerance:\n"
             "  detection:\n"
             "    heartbeat_interval: %dms\n"
             "    failure_threshold: 3\n"
             "  partition:\n"
             "    min_nodes: 100\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - {name: local, plugin: file, config: {dir: \"%s\"}}\n"
             "    - name: ops-webhook\n"
             "      plugin: webhook\n"
             "      config:\n"
             "        url: http://127.0.0.1:%u/alerts\n",
             hb_ms, backup_dir, rdt_httpd_port(receiver, 0));
    return rdt_cluster_start(&cl, 3, yaml, NULL);
}

static int teardown(void **state)
{
    (void)state;
    if (getenv("RDT_VERBOSE"))
        for (int i = 0; i < cl.n; i++)
            rdt_proc_print_log_tail(&cl.procs[i], 60);
    rdt_cluster_cleanup(&cl);
    rdt_httpd_stop(receiver);
    if (backup_dir[0] != '\0')
        rdt_rmtree(backup_dir);
    return 0;
}

/* The leader, found once: the agents' heartbeats must not wait for a
 * search on every beat (a leader change would show as a failed request). */
static struct rdt_proc *leader(void)
{
    static int L = -1;
    if (L < 0)
        L = rdt_cluster_leader(&cl, rdt_ms(10000));
    assert_true(L >= 0);
    return &cl.procs[L];
}

/* GET /metrics of replica `i`: the body (the caller frees it). */
static char *scrape(int i)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&cl.procs[i], RDT_H1, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    char *body = strdup(r.body);
    assert_non_null(body);
    rdt_resp_free(&r);
    return body;
}

/* The sample `series` summed over the replicas (absent counts as 0), and in
 * `*on` how many replicas have it above 0. */
static double sum_over_replicas(const char *series, int *on)
{
    double sum = 0;
    *on = 0;
    for (int i = 0; i < cl.n; i++) {
        char *body = scrape(i);
        double v = rdt_metric_in_f(body, series);
        free(body);
        if (v > 0) {
            sum += v;
            (*on)++;
        }
    }
    return sum;
}

/* One heartbeat of `id` to the leader; its answer's first assignment's
 * task id and attempt when it has one. */
static bool beat(const char *id, long long epoch, long long *attempt)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_heartbeat(leader(), RDT_H2, id, epoch, 0, &r), 0);
    if (r.status != 200)
        fail_msg("heartbeat of %s: %ld %s", id, r.status, r.body ? r.body : "");
    json_t *a = json_array_get(json_object_get(r.json, "assignments"), 0);
    bool got = a != NULL && strcmp(json_string_value(json_object_get(a, "task_id")), TASK) == 0;
    if (got && attempt != NULL)
        *attempt = json_integer_value(json_object_get(a, "attempt"));
    rdt_resp_free(&r);
    return got;
}

/* Heartbeats of `id` (so it stays alive) until the sum over the replicas of
 * `series` reaches `want`, within `ms` (scaled). */
static void beat_until_sum(const char *id, long long epoch, const char *series, double want, int ms)
{
    int on = 0;
    for (int64_t until = rdt_now_ms() + rdt_ms(ms);;) {
        beat(id, epoch, NULL);
        double v = sum_over_replicas(series, &on);
        if (v >= want) {
            assert_true(v == want);
            assert_int_equal(on, 1); /* one replica counted it: the leader */
            return;
        }
        if (rdt_now_ms() > until)
            fail_msg("%s summed over the replicas is %g, not %g", series, v, want);
        rdt_sleep_ms(hb_ms);
    }
}

#define RUNS_OK     "recoveryd_recovery_runs_total{outcome=\"succeeded\"}"
#define RUNS_FAILED "recoveryd_recovery_runs_total{outcome=\"failed\"}"
#define RUNS_PART   "recoveryd_recovery_runs_total{outcome=\"partial\"}"
#define RUN_COUNT   "recoveryd_recovery_duration_seconds_count"
#define DETECTED    "recoveryd_detection_latency_seconds_count{stage=\"failed\"}"

static void test_recovery_runs_are_counted_once(void **state)
{
    (void)state;
    int on;
    /* Nothing yet, and every outcome's series is there at 0. */
    for (int i = 0; i < cl.n; i++) {
        char *body = scrape(i);
        assert_true(rdt_metric_in_f(body, RUNS_OK) == 0);
        assert_true(rdt_metric_in_f(body, RUNS_FAILED) == 0);
        assert_true(rdt_metric_in_f(body, RUNS_PART) == 0);
        assert_true(rdt_metric_in_f(body, RUN_COUNT) == 0);
        free(body);
    }

    /* agent-a works on the task. */
    long long ea, eb, attempt = 0;
    assert_int_equal(rdt_register(leader(), "agent-a", 1, &ea), 0);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(leader(), RDT_H1, "/api/v1/tasks", "{\"task_id\":\"" TASK "\"}", &r),
                     0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    for (int64_t until = rdt_now_ms() + rdt_ms(5000); !beat("agent-a", ea, &attempt);) {
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(hb_ms / 2);
    }
    assert_int_equal(attempt, 1);

    /* agent-a stops; agent-b, alive, gets the task: a run that succeeds. */
    assert_int_equal(rdt_register(leader(), "agent-b", 1, &eb), 0);
    for (int64_t until = rdt_now_ms() + rdt_ms(10000); !beat("agent-b", eb, &attempt);) {
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(hb_ms);
    }
    assert_int_equal(attempt, 2);
    beat_until_sum("agent-b", eb, RUNS_OK, 1, 10000);
    assert_true(sum_over_replicas(RUNS_FAILED, &on) == 0);
    assert_true(sum_over_replicas(RUNS_PART, &on) == 0);
    assert_true(sum_over_replicas(RUN_COUNT, &on) == 1);
    /* agent-a's failure was detected, on the duration scale. */
    assert_true(sum_over_replicas(DETECTED, &on) >= 1);
    char *body = scrape((int)(leader() - cl.procs));
    assert_true(
        rdt_metric_in_f(
            body, "recoveryd_detection_latency_seconds_bucket{stage=\"failed\",le=\"60\"}") >= 1);
    free(body);

    /* agent-b is drained by an operator with nowhere for its task to go
     * (agent-a failed, no other agent): the run fails. */
    assert_int_equal(
        rdt_post(leader(), RDT_H1, "/api/v1/recovery/trigger", "{\"node_id\":\"agent-b\"}", &r), 0);
    assert_int_equal(r.status, 202);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/recovery/tasks/%s",
             json_string_value(json_object_get(r.json, "recovery_id")));
    rdt_resp_free(&r);
    beat_until_sum("agent-b", eb, RUNS_FAILED, 1, 10000);
    assert_int_equal(rdt_get(leader(), RDT_H1, path, &r), 0);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "failed");
    rdt_resp_free(&r);
    assert_true(sum_over_replicas(RUNS_OK, &on) == 1);
    assert_true(sum_over_replicas(RUN_COUNT, &on) == 2);

    /* A backup (and the archive behind it), a consistency check. */
    assert_int_equal(rdt_post(leader(), RDT_H1, "/api/v1/backup/trigger", NULL, &r), 0);
    assert_int_equal(r.status, 202);
    rdt_resp_free(&r);
    for (int64_t until = rdt_now_ms() + rdt_ms(20000);;) {
        assert_int_equal(rdt_get(leader(), RDT_H1, "/api/v1/backups?status=completed", &r), 0);
        size_t n = json_array_size(json_object_get(r.json, "items"));
        rdt_resp_free(&r);
        if (n >= 1)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(50);
    }
    assert_int_equal(rdt_post(leader(), RDT_H1, "/api/v1/consistency/check", NULL, &r), 0);
    assert_int_equal(r.status, 202);
    rdt_resp_free(&r);
}

/* `promtool check metrics` on `body`: its exit code, its output in `*out`. */
static int check_metrics(const char *body, char **out)
{
    char file[300];
    snprintf(file, sizeof(file), "%s/scrape.txt", backup_dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(body, 1, strlen(body), f), strlen(body));
    assert_int_equal(fclose(f), 0);
    char *const argv[] = {"/bin/sh", "-c", "exec \"$0\" check metrics < \"$1\" 2>&1",
                          promtool,  file, NULL};
    return rdt_run(argv, 30000, out, NULL);
}

static void test_promtool_check_metrics(void **state)
{
    (void)state;
    for (int i = 0; i < cl.n; i++) {
        char *body = scrape(i);
        /* A full scrape (promtool passes an empty one). */
        assert_non_null(strstr(body, "# TYPE recoveryd_recovery_runs_total counter\n"));
        assert_non_null(strstr(body, "# TYPE recoveryd_quorum gauge\n"));
        assert_true(rdt_metric_in_f(body, "recoveryd_quorum") == 1);
        unsigned families = 0;
        for (const char *t = body; (t = strstr(t, "# TYPE ")) != NULL; t++)
            families++;
        fprintf(stderr, "replica %d: %u metric families, %zu bytes\n", i + 1, families,
                strlen(body));
        /* Most of the engine's families, as the scenario gave them data
         * (78 when this was written). */
        assert_true(families >= 70);
        char *out = NULL;
        int rc = check_metrics(body, &out);
        if (rc != 0 || (out != NULL && out[0] != '\0'))
            fail_msg("promtool check metrics on replica %d: exit %d\n%s", i + 1, rc,
                     out ? out : "");
        free(out);
        free(body);
    }
    /* And promtool does complain about what it should (the check is live). */
    char *out = NULL;
    int rc = check_metrics("# HELP bad_seconds_total x\n# TYPE bad_seconds_total gauge\n"
                           "bad_seconds_total 1\n",
                           &out);
    assert_int_not_equal(rc, 0);
    assert_non_null(out);
    assert_non_null(strstr(out, "bad_seconds_total"));
    free(out);
}

static bool is_in_flight(const char *name)
{
    for (size_t i = 0; in_flight[i] != NULL; i++)
        if (strcmp(in_flight[i], name) == 0)
            return true;
    return false;
}

/* True when some sample line of `body` is named `name` exactly. */
static bool has_sample(const char *body, const char *name)
{
    size_t len = strlen(name);
    for (const char *line = body; line != NULL && *line != '\0';) {
        if (strncmp(line, name, len) == 0 && (line[len] == '{' || line[len] == ' '))
            return true;
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return false;
}

static void test_rules_name_real_metrics(void **state)
{
    (void)state;
    char *bodies[RDT_MAX_REPLICAS] = {0};
    for (int i = 0; i < cl.n; i++)
        bodies[i] = scrape(i);
    FILE *f = fopen(RD_SOURCE_DIR "/deploy/prometheus-rules.yaml", "r");
    assert_non_null(f);
    static char rules[65536];
    size_t n = fread(rules, 1, sizeof(rules) - 1, f);
    fclose(f);
    rules[n] = '\0';
    unsigned names = 0, missing = 0;
    char seen[4096] = " ";
    for (const char *p = rules; (p = strstr(p, "recoveryd_")) != NULL;) {
        if (p > rules && (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z'))) {
            p++;
            continue;
        }
        size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)len, p);
        p += len;
        char key[132];
        snprintf(key, sizeof(key), " %s ", name);
        if (strstr(seen, key) != NULL)
            continue;
        strncat(seen, name, sizeof(seen) - strlen(seen) - 2);
        strcat(seen, " ");
        names++;
        bool found = false;
        for (int i = 0; i < cl.n && !found; i++)
            found = has_sample(bodies[i], name);
        if (found)
            continue;
        if (is_in_flight(name)) {
            fprintf(stderr, "not exposed yet (another part of issue 13 adds it): %s\n", name);
            continue;
        }
        fprintf(stderr, "deploy/prometheus-rules.yaml names %s: no replica exposes it\n", name);
        missing++;
    }
    assert_true(names >= 15);
    assert_int_equal(missing, 0);

    /* The labels and buckets the rules select on. */
    static const char *const series[] = {
        "recoveryd_detection_latency_seconds_bucket{stage=\"failed\",le=\"30\"}",
        "recoveryd_detection_latency_seconds_bucket{stage=\"failed\",le=\"45\"}",
        RUNS_OK,
        RUNS_FAILED,
        RUNS_PART,
        "recoveryd_plugin_up{plugin_instance=\"ops-webhook\",plugin=\"webhook\",kind=\"alert\"}",
        "recoveryd_plugin_alerts_dropped_total{plugin_instance=\"ops-webhook\"}",
        "recoveryd_http_requests_total{route=\"tasks_submit\",status=\"201\"}",
    };
    for (size_t s = 0; s < sizeof(series) / sizeof(series[0]); s++) {
        bool found = false;
        for (int i = 0; i < cl.n && !found; i++)
            found = rdt_metric_in_f(bodies[i], series[s]) >= 0;
        if (!found)
            fail_msg("no replica exposes %s", series[s]);
    }
    for (int i = 0; i < cl.n; i++)
        free(bodies[i]);
}

/* The last: two replicas stop; the one left reports no quorum (what
 * RecoverydNoQuorum reads), and still serves its metrics. */
static void test_quorum_gauge_drops_without_a_majority(void **state)
{
    (void)state;
    for (int i = 1; i < cl.n; i++) {
        int status = 0;
        assert_int_equal(rdt_proc_stop(&cl.procs[i], &status), 0);
    }
    for (int64_t until = rdt_now_ms() + rdt_ms(15000);;) {
        char *body = scrape(0);
        double q = rdt_metric_in_f(body, "recoveryd_quorum");
        free(body);
        if (q == 0)
            break;
        if (rdt_now_ms() > until)
            fail_msg("recoveryd_quorum is %g on the replica left alone", q);
        rdt_sleep_ms(100);
    }
}

int main(void)
{
    if (rdt_which("promtool", promtool, sizeof(promtool)) != 0) {
        fprintf(stderr, "promtool not found (Debian's prometheus package, scripts/bootstrap): "
                        "skipped\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recovery_runs_are_counted_once),
        cmocka_unit_test(test_promtool_check_metrics),
        cmocka_unit_test(test_rules_name_real_metrics),
        cmocka_unit_test(test_quorum_gauge_drops_without_a_majority),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
