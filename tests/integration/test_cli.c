/*
 * The command line and signals of the real binary: --version, --check-config,
 * usage errors, and SIGHUP on a running daemon.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "recoveryd/revision.h"
#include "recoveryd/version.h"

#define RUN_TIMEOUT_MS 15000

/* Runs the binary; prints what it said when the exit code is not `want`. */
static void run_expect(char *const argv[], int want, char **out, char **err)
{
    int code = rdt_run(argv, RUN_TIMEOUT_MS, out, err);
    if (code != want) {
        print_message("%s %s: exit %d, want %d\nstdout: %.2000s\nstderr: %.2000s\n", argv[0],
                      argv[1] ? argv[1] : "", code, want, *out ? *out : "", *err ? *err : "");
    }
    assert_int_equal(code, want);
}

/* A temporary directory per test, removed even when the test fails. */
static int dir_setup(void **state)
{
    char *dir = malloc(256);
    *state = dir;
    if (dir && rdt_tmpdir(dir, 256) != 0) {
        free(dir);
        *state = NULL;
    }
    return *state ? 0 : -1;
}

static int dir_teardown(void **state)
{
    char *dir = *state;
    if (dir) {
        rdt_rmtree(dir);
        free(dir);
    }
    return 0;
}

/* --check-config loads every configured plugin: a missing one is an error
 * naming the file, line and the plugin's path. */
static void test_check_config_checks_plugins(void **state)
{
    char *const argv[] = {(char *)RD_BINARY,
                          (char *)"--check-config",
                          (char *)"--config",
                          (char *)RD_SOURCE_DIR "/deploy/recoveryd.yaml",
                          (char *)"--plugins-dir",
                          (char *)"/nonexistent",
                          NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(rdt_run(argv, 10000, &out, &err), 1);
    assert_non_null(strstr(err, "recoveryd.yaml:"));
    assert_non_null(
        strstr(err, "plugins.instances[0]: cannot load plugin /nonexistent/heartbeat.so"));
    free(out);
    free(err);
}

static void test_version(void **state)
{
    (void)state;
    char *const argv[] = {(char *)RD_BINARY, (char *)"--version", NULL};
    char *out = NULL, *err = NULL;
    run_expect(argv, 0, &out, &err);
    if (!strstr(out, RD_VERSION_STRING)) {
        print_message("--version printed \"%s\", want %s in it\n", out, RD_VERSION_STRING);
    }
    assert_non_null(strstr(out, RD_VERSION_STRING));
    /* and the git revision, as recoveryd_build_info says it */
    assert_non_null(strstr(out, "(revision " RD_GIT_REVISION ","));
    free(out);
    free(err);
}

/*
 * The shipped config validates. The API port given is held by this test, so
 * a binary that tried to serve could not bind it: exit 0 means it never did.
 */
static void test_check_config_deploy(void **state)
{
    const char *dir = *state;
    char data[300], listen_arg[32];
    snprintf(data, sizeof data, "%s/data", dir);
    uint16_t port = 0;
    int fd = rdt_hold_port(&port);
    snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%u", (unsigned)port);
    char *const argv[] = {(char *)RD_BINARY,
                          (char *)"--check-config",
                          (char *)"--config",
                          (char *)RD_SOURCE_DIR "/deploy/recoveryd.yaml",
                          (char *)"--listen",
                          listen_arg,
                          (char *)"--data-dir",
                          data,
                          (char *)"--plugins-dir",
                          (char *)rdt_plugins_dir(),
                          (char *)"--policies-dir",
                          (char *)RD_SOURCE_DIR "/policies",
                          NULL};
    char *out = NULL, *err = NULL;
    run_expect(argv, 0, &out, &err);
    close(fd);
    free(out);
    free(err);
}

/* Writes a config whose line 6 holds a bad duration; returns its path in `path`. */
static void write_bad_config(const char *dir, char *path, size_t len)
{
    snprintf(path, len, "%s/bad.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# a config with a bad duration on line 6\n"
          "logging:\n"
          "  level: info\n"
          "fault_tolerance:\n"
          "  detection:\n"
          "    heartbeat_interval: fast\n",
          f);
    assert_int_equal(fclose(f), 0);
}

static void expect_names_bad_key(const char *err, const char *path)
{
    char where[400];
    snprintf(where, sizeof where, "%s:6", path);
    if (!strstr(err, where) || !strstr(err, "heartbeat_interval")) {
        print_message("stderr should name %s and heartbeat_interval:\n%s\n", where, err);
    }
    assert_non_null(strstr(err, where));
    assert_non_null(strstr(err, "heartbeat_interval"));
}

static void test_bad_duration(void **state)
{
    const char *dir = *state;
    char path[300], data[300], listen_arg[32];
    write_bad_config(dir, path, sizeof path);
    snprintf(data, sizeof data, "%s/data", dir);

    char *const check[] = {(char *)RD_BINARY, (char *)"--check-config", (char *)"--config", path,
                           NULL};
    char *out = NULL, *err = NULL;
    run_expect(check, 1, &out, &err);
    expect_names_bad_key(err, path);
    free(out);
    free(err);

    /* Starting for real with it fails the same way instead of serving. */
    uint16_t port, raft_port;
    assert_int_equal(rdt_free_ports(&port, &raft_port), 0);
    snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%u", (unsigned)port);
    char *const start[] = {(char *)RD_BINARY, (char *)"--config",   path, (char *)"--listen",
                           listen_arg,        (char *)"--data-dir", data, NULL};
    run_expect(start, 1, &out, &err);
    expect_names_bad_key(err, path);
    free(out);
    free(err);
}

static void test_unknown_flag(void **state)
{
    (void)state;
    char *const argv[] = {(char *)RD_BINARY, (char *)"--no-such-flag", NULL};
    char *out = NULL, *err = NULL;
    run_expect(argv, 2, &out, &err);
    if (!strcasestr(err, "usage")) {
        print_message("stderr has no usage:\n%s\n", err);
    }
    assert_non_null(strcasestr(err, "usage"));
    free(out);
    free(err);
}

/* The replica flags: --replica-id, --raft-address, --peer (repeated), --join. */
static void test_cluster_flags(void **state)
{
    (void)state;
    char *out = NULL, *err = NULL;
    char *const ok[] = {(char *)RD_BINARY,
                        (char *)"--check-config",
                        (char *)"--plugins-dir",
                        (char *)rdt_plugins_dir(),
                        (char *)"--policies-dir",
                        (char *)RD_SOURCE_DIR "/policies",
                        (char *)"--replica-id",
                        (char *)"2",
                        (char *)"--raft-address",
                        (char *)"127.0.0.1:7081",
                        (char *)"--peer",
                        (char *)"1=127.0.0.1:7080=http://127.0.0.1:8080",
                        (char *)"--peer",
                        (char *)"2=127.0.0.1:7081=http://127.0.0.1:8081",
                        (char *)"--peer",
                        (char *)"3=127.0.0.1:7082",
                        NULL};
    run_expect(ok, 0, &out, &err);
    free(out);
    free(err);
    /* A replica id no peer has: refused, unless it joins. */
    char *const alone[] = {
        (char *)RD_BINARY,         (char *)"--check-config",   (char *)"--plugins-dir",
        (char *)rdt_plugins_dir(), (char *)"--replica-id",     (char *)"5",
        (char *)"--peer",          (char *)"1=127.0.0.1:7080", NULL};
    run_expect(alone, 1, &out, &err);
    assert_non_null(strstr(err, "cluster.peers: no entry has this replica's id 5"));
    free(out);
    free(err);
    char *const joins[] = {(char *)RD_BINARY,          (char *)"--check-config",
                           (char *)"--plugins-dir",    (char *)rdt_plugins_dir(),
                           (char *)"--policies-dir",   (char *)RD_SOURCE_DIR "/policies",
                           (char *)"--replica-id",     (char *)"5",
                           (char *)"--join",           (char *)"--peer",
                           (char *)"1=127.0.0.1:7080", NULL};
    run_expect(joins, 0, &out, &err);
    free(out);
    free(err);
    const char *bad[][2] = {{"--peer", "1=nohost"},
                            {"--peer", "0=127.0.0.1:7080"},
                            {"--peer", "1=127.0.0.1:7080=ftp://x"},
                            {"--replica-id", "zero"},
                            {"--raft-address", "localhost"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *const argv[] = {(char *)RD_BINARY, (char *)"--check-config", (char *)bad[i][0],
                              (char *)bad[i][1], NULL};
        run_expect(argv, 1, &out, &err);
        assert_non_null(strstr(err, bad[i][0]));
        free(out);
        free(err);
    }
}

/* The daemon keeps serving for `ms` milliseconds: alive, /health 200. */
static void expect_serving_for(struct rdt_proc *p, int ms)
{
    int64_t until = rdt_now_ms() + ms;
    do {
        assert_true(rdt_proc_alive(p));
        struct rdt_resp r = {0};
        int rc = rdt_get(p, RDT_H1, "/health", &r);
        long status = r.status;
        rdt_resp_free(&r);
        assert_int_equal(rc, 0);
        assert_int_equal(status, 200);
        rdt_sleep_ms(20);
    } while (rdt_now_ms() < until);
}

/* cmocka runs no teardown after a failed setup: clean up here then. */
static int proc_setup(void **state)
{
    struct rdt_proc *p = calloc(1, sizeof *p);
    *state = p;
    if (p && rdt_proc_start(p, NULL) != 0) {
        rdt_proc_cleanup(p);
        free(p);
        *state = NULL;
    }
    return *state ? 0 : -1;
}

static int proc_teardown(void **state)
{
    struct rdt_proc *p = *state;
    if (p) {
        rdt_proc_cleanup(p);
        free(p);
    }
    return 0;
}

/* SIGHUP reloads (policies); it must never end the daemon. */
static void test_sighup_keeps_serving(void **state)
{
    struct rdt_proc *p = *state;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rdt_proc_signal(p, SIGHUP), 0);
        expect_serving_for(p, 300);
    }
    int code = -1;
    assert_int_equal(rdt_proc_stop(p, &code), 0);
    assert_int_equal(code, 0);
    char *log = rdt_proc_log(p);
    assert_non_null(log);
    char *bad = rdt_log_error_line(log);
    bool clean = bad == NULL;
    if (!clean) {
        print_message("the daemon logged an error: %s\n", bad);
    }
    free(bad);
    free(log);
    assert_true(clean);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_config_checks_plugins),
        cmocka_unit_test(test_version),
        cmocka_unit_test_setup_teardown(test_check_config_deploy, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_bad_duration, dir_setup, dir_teardown),
        cmocka_unit_test(test_unknown_flag),
        cmocka_unit_test(test_cluster_flags),
        cmocka_unit_test_setup_teardown(test_sighup_keeps_serving, proc_setup, proc_teardown),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
