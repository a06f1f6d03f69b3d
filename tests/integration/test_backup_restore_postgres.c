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
#include "rdt_server.h"

#define PG_PORT  "5432" /* on a socket in the test's own directory: no collision */
#define READY_MS 20000

static char bindir[256];
static char root[512];
static char sockdir[600];
static char conninfo[700];
static struct rdt_server server;
static uid_t pg_uid = RDT_SAME_USER;
static gid_t pg_gid;

/* ---- the server (as tests/integration/test_backup_postgres.c starts it) ---------------- */

/* The newest installed PostgreSQL's bin directory (15 on Debian 12). */
static bool find_bindir(void)
{
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0)
        return false;
    int best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        int v = atoi(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"));
        if (v > best) {
            best = v;
            snprintf(bindir, sizeof bindir, "%.*s", (int)(strlen(g.gl_pathv[i]) - 7),
                     g.gl_pathv[i]); /* without "/initdb" */
        }
    }
    globfree(&g);
    return best >= 0;
}

/* A path the server's user owns (as root: chown to postgres). */
static int own(const char *path)
{
    if (pg_uid != RDT_SAME_USER && chown(path, pg_uid, pg_gid) != 0) {
        fprintf(stderr, "test_backup_restore_postgres: chown %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int start_server(void)
{
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw) {
            fprintf(stderr, "test_backup_restore_postgres: FAILED: running as root, PostgreSQL "
                            "installed, but no postgres user to run it as\n");
            return -1;
        }
        pg_uid = pw->pw_uid;
        pg_gid = pw->pw_gid;
    }
    char data[700], log[700], initdb[300], postgres[300];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(sockdir, sizeof sockdir, "%s/sock", root);
    snprintf(log, sizeof log, "%s/postgres.log", root);
    snprintf(initdb, sizeof initdb, "%s/initdb", bindir);
    snprintf(postgres, sizeof postgres, "%s/postgres", bindir);
    if (own(root) != 0 || mkdir(sockdir, 0700) != 0 || own(sockdir) != 0)
        return -1;

    char *init_argv[] = {initdb,
                         "-D",
                         data,
                         "-U",
                         "recoveryd",
                         "-A",
                         "trust",
                         "-E",
                         "UTF8",
                         "--locale=C.UTF-8",
                         "--locale-provider=icu",
                         "--icu-locale=en",
                         "--no-sync",
                         "--no-instructions",
                         NULL};
    int rc = rdt_server_run(init_argv, NULL, log, pg_uid, pg_gid, rdt_ms(120000));
    if (rc != 0) {
        fprintf(stderr, "test_backup_restore_postgres: FAILED: initdb exited %d\n", rc);
        rdt_server_print_log(log, 30);
        return -1;
    }
    char *argv[] = {
        postgres, "-D",        data, "-k", sockdir, "-p", PG_PORT, "-c", "listen_addresses=",
        "-c",     "fsync=off", NULL};
    if (rdt_server_start(&server, argv, NULL, root, log, pg_uid, pg_gid) != 0)
        return -1;
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s dbname=postgres user=recoveryd", sockdir,
             PG_PORT);
    int64_t deadline = rdt_now_ms() + rdt_ms(60000);
    for (int delay = 5;; delay = delay < 100 ? delay * 2 : 100) {
        if (PQping(conninfo) == PQPING_OK)
            return 0;
        if (!rdt_server_alive(&server)) {
            fprintf(stderr,
                    "test_backup_restore_postgres: FAILED: postgres exited (%d) before it "
                    "accepted connections\n",
                    server.exit_code);
            rdt_server_print_log(log, 30);
            return -1;
        }
        if (rdt_now_ms() > deadline) {
            fprintf(stderr,
                    "test_backup_restore_postgres: FAILED: postgres did not accept connections "
                    "within %d ms\n",
                    rdt_ms(60000));
            rdt_server_print_log(log, 30);
            return -1;
        }
        rdt_sleep_ms(delay); /* between pings */
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
    rdt_server_stop(&server, SIGINT, 30000); /* fast shutdown */
    return rdt_rmtree(root);
}

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
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
