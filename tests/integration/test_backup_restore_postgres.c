/*
 * Backups, archiving and restore end to end on the postgres target, against
 * a real PostgreSQL this test starts (Debian's postgresql: initdb and
 * postgres on a socket in the test's own directory, as the postgres user
 * when the test runs as root): a daemon backs up and archives into a table,
 * a backup verifies, the daemon is killed (-9), and `recoveryd restore
 * --from postgresql:///...` gives a new replica every registration. Without
 * PostgreSQL the test says so and exits 77 (skipped).
 */
#include "cmocka_all.h"

#include <errno.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"
#include "rdt_pg.h"
#include "rdt_server.h"

#define READY_MS 20000

static void wait_metric(struct rdt_proc *p, const char *series, long long at_least)
{
    for (int64_t until = rdt_now_ms() + rdt_ms(20000);;) {
        if (rdt_metric(p, series) >= at_least)
            return;
        if (rdt_now_ms() >= until)
            fail_msg("%s stayed below %lld", series, at_least);
        rdt_sleep_ms(20);
    }
}

static long long applied_index(struct rdt_proc *p)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/health", &r), 0);
    long long v = json_integer_value(json_object_get(r.json, "applied_index"));
    rdt_resp_free(&r);
    return v;
}

static void test_backup_archive_restore_on_postgres(void **state)
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
             "    - name: db\n"
             "      plugin: postgres\n"
             "      config: {conninfo: \"%s\", table: rd_objects}\n",
             conninfo);
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, READY_MS), 0);
    wait_metric(&p, "recoveryd_backups_total{status=\"completed\"}", 1);
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "pg-%02d", i);
        assert_int_equal(rdt_register(&p, id, 1, NULL), 0);
    }
    struct rdt_resp r = {0};
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
    assert_int_equal(rdt_register(&p, "pg-late-1", 1, NULL), 0);
    assert_int_equal(rdt_register(&p, "pg-late-2", 1, NULL), 0);
    wait_metric(&p, "recoveryd_archive_index", applied_index(&p));
    assert_int_equal(rdt_proc_kill9(&p), 0);

    /* libpq's URI form, with the table as our own parameter. */
    struct rdt_proc q = {0};
    assert_int_equal(rdt_proc_prepare(&q), 0);
    char url[1024], raft[64];
    snprintf(url, sizeof url,
             "postgresql:///postgres?host=%s&port=%s&user=recoveryd&table=rd_objects", sockdir,
             PG_PORT);
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
    rdt_proc_cleanup(&q);
    rdt_proc_cleanup(&p);
}

int main(void)
{
    if (!find_bindir()) {
        fprintf(stderr, "SKIPPED test_backup_restore_postgres: PostgreSQL is not installed (no "
                        "/usr/lib/postgresql/*/bin/initdb): run scripts/bootstrap\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_archive_restore_on_postgres),
    };
    return cmocka_run_group_tests(tests, rdt_pg_group_setup, rdt_pg_group_teardown);
}
