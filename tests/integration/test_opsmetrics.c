/*
 * What operators expect of a real recoveryd (docs/operations.md, "Metrics"
 * and "Logs"), on real processes on loopback:
 * - one replica, JSON lines at level info: the process_* families with sane
 *   values, recoveryd_build_info with this build's version and revision, a
 *   leader known, the append histogram growing with each write (fsync and
 *   all), a snapshot timed and sized, the raft directory's size; the log
 *   level changed at run time by PUT /api/v1/system/log-level (audited,
 *   admin's) and by SIGUSR2: a debug line appears after the change and not
 *   before; every line of the log is one JSON object;
 * - three replicas: every replica sees the other two up with a round-trip
 *   time; kill -9 of the leader: the others count a leader change and see
 *   the killed one down, then up again once it restarted.
 */
#include "cmocka_all.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"
#include "recoveryd/revision.h"
#include "recoveryd/version.h"

/* ---- helpers ------------------------------------------------------------------ */

/* The GET /metrics body of `p` (the caller frees it). */
static char *scrape(struct rdt_proc *p)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    char *body = strdup(r.body);
    rdt_resp_free(&r);
    assert_non_null(body);
    return body;
}

static double metric_in(const char *body, const char *series)
{
    double v = rdt_metric_in_f(body, series);
    if (v < 0)
        fail_msg("no %s in /metrics", series);
    return v;
}

/* Waits up to `ms` (scaled) until `series` on `p` compares to `want` as
 * `op` says (">=", "<=", "=="); fails with the last value seen. */
static double wait_metric(struct rdt_proc *p, const char *series, const char *op, double want,
                          int ms)
{
    int64_t until = rdt_now_ms() + rdt_ms(ms);
    for (;;) {
        struct rdt_resp r = {0};
        double v = -1;
        if (rdt_get(p, RDT_H1, "/metrics", &r) == 0 && r.status == 200)
            v = rdt_metric_in_f(r.body, series);
        rdt_resp_free(&r);
        bool ok = v >= 0 && (strcmp(op, ">=") == 0   ? v >= want
                             : strcmp(op, "<=") == 0 ? v <= want
                                                     : v == want);
        if (ok)
            return v;
        if (rdt_now_ms() > until)
            fail_msg("%s: %g after %d ms, expected %s %g", series, v, rdt_ms(ms), op, want);
        rdt_sleep_ms(50);
    }
}

static long put_level(struct rdt_proc *p, const char *body, struct rdt_resp *r)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/api/v1/system/log-level", p->base_url);
    assert_int_equal(rdt_http(RDT_H1, "PUT", url, body, strlen(body), r), 0);
    return r->status;
}

static const char *get_level(struct rdt_proc *p, char *out, size_t len)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/api/v1/system/log-level", &r), 0);
    assert_int_equal(r.status, 200);
    snprintf(out, len, "%s", json_string_value(rdt_json_path(r.json, "level")));
    assert_string_equal(json_string_value(rdt_json_path(r.json, "format")), "json");
    rdt_resp_free(&r);
    return out;
}

/* The log's lines, each parsed: fails on a line that is not one JSON
 * object (but the harness's own "rdt: " lines). Counts the lines whose comp and event are given
 * (and level, when not NULL), from line `from` on; *n_lines gets the number of lines. */
static int count_json_events(const char *log, int from, const char *level, const char *comp,
                             const char *event, int *n_lines)
{
    int n = 0, found = 0;
    for (const char *line = log; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);                  /* every line is complete: one write each */
        if (strncmp(line, "rdt: ", 5) == 0) { /* the harness's own (starting ...) */
            line = nl + 1;
            continue;
        }
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, &err);
        if (!json_is_object(j))
            fail_msg("log line %d is not a JSON object (%s): %.*s", n + 1, err.text,
                     (int)(nl - line), line);
        const char *lv = json_string_value(json_object_get(j, "level"));
        const char *c = json_string_value(json_object_get(j, "comp"));
        const char *e = json_string_value(json_object_get(j, "event"));
        assert_non_null(json_string_value(json_object_get(j, "ts")));
        assert_true(lv && c && e);
        if (n >= from && strcmp(c, comp) == 0 && strcmp(e, event) == 0 &&
            (level == NULL || strcmp(lv, level) == 0))
            found++;
        json_decref(j);
        n++;
        line = nl + 1;
    }
    *n_lines = n;
    return found;
}

static int log_lines(struct rdt_proc *p)
{
    char *log = rdt_proc_log(p);
    assert_non_null(log);
    int n;
    count_json_events(log, 0, NULL, "-", "-", &n);
    free(log);
    return n;
}

/* Debug lines of a policy reload (policy event=loaded at debug) from line `from` on. */
static int reload_and_count_debug(struct rdt_proc *p, int from)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(p, RDT_H1, "/api/v1/policies/reload", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    char *log = rdt_proc_log(p);
    assert_non_null(log);
    int n;
    int found = count_json_events(log, from, "debug", "policy", "loaded", &n);
    free(log);
    return found;
}

/* ---- one replica ------------------------------------------------------------ */

static struct rdt_proc single;

static int setup_single(void **state)
{
    (void)state;
    memset(&single, 0, sizeof(single));
    snprintf(single.logging_yaml, sizeof(single.logging_yaml), "  level: info\n  format: json\n");
    if (rdt_proc_start(&single, "storage:\n  snapshot_threshold: 32\n  snapshot_trailing: 8\n") !=
        0)
        return -1;
    return rdt_wait_ready(&single, rdt_ms(10000));
}

static int teardown_single(void **state)
{
    (void)state;
    rdt_proc_cleanup(&single);
    return 0;
}

static void test_single_metrics(void **state)
{
    (void)state;
    char *m = scrape(&single);
    double now = (double)time(NULL);
    /* process_* */
    double start = metric_in(m, "process_start_time_seconds");
    if (start < now - 120 || start > now + 1)
        fail_msg("process_start_time_seconds %f, now %f", start, now);
    assert_true(metric_in(m, "process_open_fds") > 3);
    assert_true(metric_in(m, "process_max_fds") >= metric_in(m, "process_open_fds"));
    assert_true(metric_in(m, "process_resident_memory_bytes") > 1 << 20);
    assert_true(metric_in(m, "process_virtual_memory_bytes") >=
                metric_in(m, "process_resident_memory_bytes"));
    assert_true(metric_in(m, "process_cpu_seconds_total") >= 0);
    assert_non_null(strstr(m, "# TYPE process_cpu_seconds_total counter\n"));
    /* This build's version and revision. */
    char series[160];
    snprintf(series, sizeof(series), "recoveryd_build_info{version=\"%s\",revision=\"%s\"}",
             RD_VERSION_STRING, RD_GIT_REVISION);
    assert_true(metric_in(m, series) == 1);
    /* raft */
    assert_true(metric_in(m, "recoveryd_raft_has_leader") == 1);
    assert_true(metric_in(m, "recoveryd_raft_leader_changes_total") == 1);
    assert_non_null(strstr(m, "# TYPE recoveryd_raft_append_duration_seconds histogram\n"));
    assert_non_null(strstr(m, "# TYPE recoveryd_raft_snapshot_duration_seconds histogram\n"));
    assert_non_null(strstr(m, "# TYPE recoveryd_partition_merge_duration_seconds histogram\n"));
    assert_non_null(strstr(m, "recoveryd_partition_merge_duration_seconds_bucket{le=\"300\"} 0\n"));
    /* No other replica: no peer series, but the families are there. */
    assert_non_null(strstr(m, "# TYPE recoveryd_peer_up gauge\n"));
    assert_null(strstr(m, "recoveryd_peer_up{"));
    double appends = metric_in(m, "recoveryd_raft_append_duration_seconds_count");
    double snaps = metric_in(m, "recoveryd_raft_snapshot_duration_seconds_count");
    free(m);
    /* Each acknowledged write was appended (and fsynced) first: 40 writes
     * one after the other are at least 40 appends. */
    for (int i = 0; i < 40; i++) {
        char id[32];
        snprintf(id, sizeof(id), "ops-%d", i);
        assert_int_equal(rdt_register(&single, id, 1, NULL), 0);
    }
    m = scrape(&single);
    double appends2 = metric_in(m, "recoveryd_raft_append_duration_seconds_count");
    if (appends2 < appends + 40)
        fail_msg("append count %g -> %g after 40 writes", appends, appends2);
    double sum = metric_in(m, "recoveryd_raft_append_duration_seconds_sum");
    assert_true(sum > 0 && sum < appends2 * 10);
    /* every append took less than 10 s: all in the finite buckets */
    snprintf(series, sizeof(series), "recoveryd_raft_append_duration_seconds_bucket{le=\"10\"}");
    assert_true(metric_in(m, series) == appends2);
    free(m);
    /* 40 entries past a threshold of 32: a snapshot, timed and sized. */
    wait_metric(&single, "recoveryd_raft_snapshot_duration_seconds_count", ">=", snaps + 1, 10000);
    m = scrape(&single);
    assert_true(metric_in(m, "recoveryd_raft_snapshot_size_bytes") > 100);
    free(m);
    /* Segments (preallocated) and snapshots on disk: measured every 5 s. */
    wait_metric(&single, "recoveryd_raft_log_size_bytes", ">=", 4096, 10000);
}

/* The loop's lag: a stopped daemon (SIGSTOP for 600 ms) ran its 10-ms
 * timer over half a second late, and the histogram has that observation
 * above its 0.5 s bound. */
static void test_single_loop_lag(void **state)
{
    (void)state;
    wait_metric(&single, "recoveryd_loop_lag_seconds_count", ">=", 10, 10000);
    char *m = scrape(&single);
    assert_non_null(strstr(m, "# TYPE recoveryd_loop_lag_seconds histogram\n"));
    double count = metric_in(m, "recoveryd_loop_lag_seconds_count");
    double late = count - metric_in(m, "recoveryd_loop_lag_seconds_bucket{le=\"0.5\"}");
    free(m);
    assert_int_equal(rdt_proc_signal(&single, SIGSTOP), 0);
    rdt_sleep_ms(600); /* the stall itself */
    assert_int_equal(rdt_proc_signal(&single, SIGCONT), 0);
    wait_metric(&single, "recoveryd_loop_lag_seconds_count", ">=", count + 1, 10000);
    m = scrape(&single);
    double late2 = metric_in(m, "recoveryd_loop_lag_seconds_count") -
                   metric_in(m, "recoveryd_loop_lag_seconds_bucket{le=\"0.5\"}");
    free(m);
    assert_true(late2 >= late + 1);
}

static void test_single_log_level_at_run_time(void **state)
{
    (void)state;
    char lv[16];
    assert_string_equal(get_level(&single, lv, sizeof(lv)), "info");
    /* At info, a policy reload's debug line is not written. */
    int mark = log_lines(&single);
    assert_int_equal(reload_and_count_debug(&single, 0), 0);
    /* Bad bodies change nothing. */
    struct rdt_resp r = {0};
    assert_int_equal(put_level(&single, "{\"level\":\"verbose\"}", &r), 400);
    assert_string_equal(rdt_err_code(&r), "bad_request");
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.field")), "level");
    rdt_resp_free(&r);
    assert_int_equal(put_level(&single, "{\"level\":3}", &r), 400);
    rdt_resp_free(&r);
    assert_int_equal(put_level(&single, "[]", &r), 400);
    rdt_resp_free(&r);
    assert_string_equal(get_level(&single, lv, sizeof(lv)), "info");
    /* To debug: the answer says so, and the next reload's debug line is there. */
    assert_int_equal(put_level(&single, "{\"level\":\"debug\"}", &r), 200);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "level")), "debug");
    rdt_resp_free(&r);
    assert_int_equal(reload_and_count_debug(&single, mark), 1);
    char *log = rdt_proc_log(&single);
    int n;
    assert_int_equal(count_json_events(log, mark, "info", "log", "log_level_changed", &n), 1);
    assert_non_null(strstr(log, "\"from\":\"info\",\"to\":\"debug\",\"by\":\"api:anonymous\""));
    free(log);
    /* Audited, as every admin action. */
    for (int64_t until = rdt_now_ms() + rdt_ms(5000);;) {
        assert_int_equal(rdt_get(&single, RDT_H1, "/api/v1/audit?action=log_level_set", &r), 0);
        assert_int_equal(r.status, 200);
        /* The refused bodies above are audited too (400, no target); the
         * change's record may land after them: look for it among all. */
        json_t *items = rdt_json_path(r.json, "items"), *rec;
        size_t i;
        bool found = false;
        json_array_foreach(items, i, rec)
        {
            const char *target = json_string_value(json_object_get(rec, "target"));
            found |= json_integer_value(rdt_json_path(rec, "outcome.status")) == 200 &&
                     target != NULL && strcmp(target, "debug") == 0;
        }
        rdt_resp_free(&r);
        if (found)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(50);
    }
    /* SIGUSR2 at debug: back to logging.level (info); a reload writes no
     * debug line. Again: debug. */
    assert_int_equal(rdt_proc_signal(&single, SIGUSR2), 0);
    for (int64_t until = rdt_now_ms() + rdt_ms(5000);
         strcmp(get_level(&single, lv, sizeof(lv)), "info") != 0;) {
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(20);
    }
    mark = log_lines(&single);
    assert_int_equal(reload_and_count_debug(&single, mark), 0);
    assert_int_equal(rdt_proc_signal(&single, SIGUSR2), 0);
    for (int64_t until = rdt_now_ms() + rdt_ms(5000);
         strcmp(get_level(&single, lv, sizeof(lv)), "debug") != 0;) {
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(20);
    }
    assert_int_equal(reload_and_count_debug(&single, mark), 1);
    log = rdt_proc_log(&single);
    assert_int_equal(count_json_events(log, 0, "info", "log", "log_level_changed", &n), 3);
    assert_non_null(strstr(log, "\"from\":\"debug\",\"to\":\"info\",\"by\":\"SIGUSR2\""));
    free(log);
}

/* ---- three replicas ----------------------------------------------------------- */

static struct rdt_cluster cl;

static int setup_cluster(void **state)
{
    (void)state;
    memset(&cl, 0, sizeof(cl));
    return rdt_cluster_start(&cl, 3, NULL, NULL);
}

static int teardown_cluster(void **state)
{
    (void)state;
    rdt_cluster_cleanup(&cl);
    return 0;
}

static void peer_series(char *out, size_t len, const char *name, int i)
{
    snprintf(out, len, "%s{peer=\"%d\"}", name, i + 1);
}

static void test_cluster_peers_and_leader_changes(void **state)
{
    (void)state;
    int L = rdt_cluster_leader(&cl, rdt_ms(5000));
    assert_true(L >= 0);
    char s[96];
    /* Every replica sees the other two up (polls every 500 ms), with an RTT. */
    for (int i = 0; i < 3; i++) {
        wait_metric(&cl.procs[i], "recoveryd_raft_has_leader", "==", 1, 5000);
        for (int j = 0; j < 3; j++) {
            if (j == i)
                continue;
            peer_series(s, sizeof(s), "recoveryd_peer_up", j);
            wait_metric(&cl.procs[i], s, "==", 1, 5000);
            peer_series(s, sizeof(s), "recoveryd_peer_rtt_seconds", j);
            double rtt = wait_metric(&cl.procs[i], s, ">=", 0, 5000);
            assert_true(rtt > 0 && rtt < 1.0 * rdt_time_factor());
        }
        char *m = scrape(&cl.procs[i]);
        peer_series(s, sizeof(s), "recoveryd_peer_up", i);
        assert_true(rdt_metric_in_f(m, s) < 0); /* not itself */
        assert_true(metric_in(m, "recoveryd_raft_leader_changes_total") >= 1);
        free(m);
    }
    /* kill -9 of the leader: a follower counts the change and sees it down. */
    int F = (L + 1) % 3;
    char *m = scrape(&cl.procs[F]);
    double changes = metric_in(m, "recoveryd_raft_leader_changes_total");
    free(m);
    assert_int_equal(rdt_proc_kill9(&cl.procs[L]), 0);
    wait_metric(&cl.procs[F], "recoveryd_raft_leader_changes_total", ">=", changes + 1, 10000);
    wait_metric(&cl.procs[F], "recoveryd_raft_has_leader", "==", 1, 10000);
    int L2 = rdt_cluster_leader(&cl, rdt_ms(10000));
    assert_true(L2 >= 0 && L2 != L);
    for (int i = 0; i < 3; i++) {
        if (i == L)
            continue;
        peer_series(s, sizeof(s), "recoveryd_peer_up", L);
        wait_metric(&cl.procs[i], s, "==", 0, 5000);
        int other = 3 - L - i; /* the third replica, alive */
        peer_series(s, sizeof(s), "recoveryd_peer_up", other);
        assert_true(rdt_metric_f(&cl.procs[i], s) == 1);
    }
    /* Restarted (as its supervisor would): up again for both. */
    assert_int_equal(rdt_proc_restart(&cl.procs[L]), 0);
    for (int i = 0; i < 3; i++) {
        if (i == L)
            continue;
        peer_series(s, sizeof(s), "recoveryd_peer_up", L);
        wait_metric(&cl.procs[i], s, "==", 1, 10000);
    }
    wait_metric(&cl.procs[L], "recoveryd_raft_has_leader", "==", 1, 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_single_metrics, setup_single, teardown_single),
        cmocka_unit_test_setup_teardown(test_single_loop_lag, setup_single, teardown_single),
        cmocka_unit_test_setup_teardown(test_single_log_level_at_run_time, setup_single,
                                        teardown_single),
        cmocka_unit_test_setup_teardown(test_cluster_peers_and_leader_changes, setup_cluster,
                                        teardown_cluster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
