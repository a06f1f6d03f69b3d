/*
 * Backups, archiving and restore end to end on the s3 target, against a real
 * S3 server this test starts (@20minutes/s3rver, which checks SigV4
 * signatures; tests/integration/s3rver.js, installed by scripts/bootstrap):
 * a daemon backs up and archives to a bucket, a backup verifies, the daemon
 * is killed (-9), and `recoveryd restore --from s3://...` gives a new
 * replica every registration. Without the server's package or node the
 * test says so and exits 77 (skipped).
 */
#include "cmocka_all.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"
#include "rdt_server.h"

#define BUCKET     "rd-restore"
#define S3RVER_PKG RD_SOURCE_DIR "/.deps/npm/node_modules/@20minutes/s3rver"
#define NPM_NODE   RD_SOURCE_DIR "/.deps/npm/node_modules/.bin/node"
#define LAUNCHER   RD_SOURCE_DIR "/tests/integration/s3rver.js"
#define READY_MS   20000

static char root[512];
static char endpoint[64];
static struct rdt_server server;

static int start_server(void)
{
    char node[512], data[700], port_file[700], log[700];
    if (access(NPM_NODE, X_OK) == 0)
        snprintf(node, sizeof node, "%s", NPM_NODE);
    else if (rdt_which("node", node, sizeof node) != 0)
        node[0] = '\0';
    snprintf(data, sizeof data, "%s/s3", root);
    snprintf(port_file, sizeof port_file, "%s/s3.port", root);
    snprintf(log, sizeof log, "%s/s3rver.log", root);
    char *argv[] = {
        node, "--openssl-legacy-provider", LAUNCHER, S3RVER_PKG, data, BUCKET, port_file, NULL};
    if (rdt_server_start(&server, argv, NULL, root, log, RDT_SAME_USER, 0) != 0)
        return -1;
    for (int64_t deadline = rdt_now_ms() + rdt_ms(60000);;) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            unsigned port = 0;
            int ok = fscanf(f, "%u", &port);
            fclose(f);
            if (ok == 1 && port > 0 && port < 65536) {
                snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u", port);
                return 0;
            }
        }
        if (!rdt_server_alive(&server) || rdt_now_ms() > deadline) {
            fprintf(stderr, "test_backup_restore_s3: the S3 server did not start\n");
            rdt_server_print_log(log, 30);
            return -1;
        }
        rdt_sleep_ms(20); /* between looks for the port file */
    }
}

static int group_setup(void **state)
{
    (void)state;
    if (rdt_tmpdir(root, sizeof root) != 0)
        return -1;
    return start_server();
}

static int group_teardown(void **state)
{
    (void)state;
    rdt_server_stop(&server, SIGTERM, 10000);
    return rdt_rmtree(root);
}

static long long wait_metric(struct rdt_proc *p, const char *series, long long at_least)
{
    for (int64_t until = rdt_now_ms() + rdt_ms(20000);;) {
        long long v = rdt_metric(p, series);
        if (v >= at_least)
            return v;
        if (rdt_now_ms() >= until)
            fail_msg("%s stayed below %lld", series, at_least);
        rdt_sleep_ms(20);
    }
}

static void test_backup_archive_restore_on_s3(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "fault_tolerance:\n"
             "  detection:\n"
             "    heartbeat_interval: 30s\n"
             "  backup:\n"
             "    interval: 1h\n"
             "    archive:\n"
             "      max_delay: 200ms\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - name: offsite\n"
             "      plugin: s3\n"
             "      config: {endpoint: \"%s\", bucket: %s, prefix: prod/, access_key: S3RVER, "
             "secret_key: S3RVER}\n",
             endpoint, BUCKET);
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, READY_MS), 0);
    /* The archive starts with a backup; then ten registrations archived. */
    wait_metric(&p, "recoveryd_backups_total{status=\"completed\"}", 1);
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "s3-%02d", i);
        assert_int_equal(rdt_register(&p, id, 1, NULL), 0);
    }
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&p, RDT_H1, "/health", &r), 0);
    long long applied = json_integer_value(json_object_get(r.json, "applied_index"));
    rdt_resp_free(&r);
    wait_metric(&p, "recoveryd_archive_index", applied);
    /* A triggered backup verifies. */
    assert_int_equal(rdt_post(&p, RDT_H1, "/api/v1/backup/trigger", NULL, &r), 0);
    assert_int_equal(r.status, 202);
    char id[64], path[128];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "backup_id")));
    rdt_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/backups/%s", id);
    for (int64_t until = rdt_now_ms() + rdt_ms(20000);;) {
        assert_int_equal(rdt_get(&p, RDT_H1, path, &r), 0);
        const char *st = json_string_value(json_object_get(r.json, "status"));
        bool done = r.status == 200 && strcmp(st, "running") != 0;
        if (done)
            assert_string_equal(st, "completed");
        rdt_resp_free(&r);
        if (done)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(20);
    }
    snprintf(path, sizeof path, "/api/v1/backups/%s/verify", id);
    assert_int_equal(rdt_post(&p, RDT_H1, path, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "verified")));
    rdt_resp_free(&r);
    /* Two more after the backup, archived; then the disaster. */
    assert_int_equal(rdt_register(&p, "s3-late-1", 1, NULL), 0);
    assert_int_equal(rdt_register(&p, "s3-late-2", 1, NULL), 0);
    assert_int_equal(rdt_get(&p, RDT_H1, "/health", &r), 0);
    applied = json_integer_value(json_object_get(r.json, "applied_index"));
    rdt_resp_free(&r);
    wait_metric(&p, "recoveryd_archive_index", applied);
    assert_int_equal(rdt_proc_kill9(&p), 0);

    struct rdt_proc q = {0};
    assert_int_equal(rdt_proc_prepare(&q), 0);
    char url[512], raft[64];
    snprintf(url, sizeof url, "s3://%s/prod?endpoint=%s&access_key=S3RVER&secret_key=S3RVER",
             BUCKET, endpoint);
    snprintf(raft, sizeof raft, "127.0.0.1:%u", (unsigned)q.raft_port);
    char *argv[] = {RD_BINARY, "restore",    "--plugins-dir", (char *)rdt_plugins_dir(), "--from",
                    url,       "--data-dir", q.data_dir,      "--raft-address",          raft,
                    NULL};
    char *out = NULL, *err = NULL;
    int rc = rdt_run(argv, rdt_ms(60000), &out, &err);
    if (rc != 0 || strstr(out, id) == NULL || strstr(out, "replayed") == NULL)
        fail_msg("restore exited %d: %s%s", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
    assert_int_equal(
        rdt_proc_start(&q, "fault_tolerance:\n  detection:\n    heartbeat_interval: 30s\n"), 0);
    assert_int_equal(rdt_wait_ready(&q, READY_MS), 0);
    assert_int_equal(rdt_get(&q, RDT_H1, "/api/v1/nodes?limit=100", &r), 0);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 12);
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&q, RDT_H1, "/api/v1/nodes/s3-late-2", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    rdt_proc_cleanup(&q);
    rdt_proc_cleanup(&p);
}

int main(void)
{
    if (access(S3RVER_PKG "/package.json", R_OK) != 0) {
        fprintf(stderr,
                "SKIPPED test_backup_restore_s3: the S3 server is not installed (%s): run "
                "scripts/bootstrap\n",
                S3RVER_PKG);
        return RDT_EXIT_SKIP;
    }
    char node[512];
    if (access(NPM_NODE, X_OK) != 0 && rdt_which("node", node, sizeof node) != 0) {
        fprintf(stderr, "SKIPPED test_backup_restore_s3: no node to run the S3 server: run "
                        "scripts/bootstrap\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_archive_restore_on_s3),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
