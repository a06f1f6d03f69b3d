/*
 * Starting the real binary where a start must not depend on where it is
 * started from (issue 10, defect 3): relative paths in a config file resolve
 * against the file's directory, whatever the working directory; relative
 * paths given by flags against the working directory; a missing one names
 * the setting and the flag.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define RUN_TIMEOUT_MS   15000
#define START_TIMEOUT_MS 15000

/* ---- helpers ---------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void expect_in(const char *what, const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("%s should contain \"%s\"; it was:\n%s", what, needle, text);
}

/*
 * The daemon's reason for giving up: the one stderr line of its own (not a
 * structured log line), which starts with "recoveryd: ". Fails unless there
 * is exactly one. Returns a malloc'd copy.
 */
static char *the_reason(const char *err)
{
    char *found = NULL;
    int n = 0;
    for (const char *l = err; l != NULL && *l != '\0';) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        if (strncmp(l, "recoveryd: ", 11) == 0) {
            n++;
            free(found);
            found = strndup(l, len);
        }
        l = end ? end + 1 : NULL;
    }
    if (n != 1)
        fail_msg("expected one \"recoveryd: ...\" line on stderr, got %d:\n%s", n, err);
    return found;
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

/* ---- defect 3: relative paths ------------------------------------------------- */

/*
 * DIR/conf/recoveryd.yaml with relative paths (plugins.dir on line 8,
 * policies.dir on line 10; DIR/conf/plugins and DIR/conf/policies link to the
 * build's plugins and the repository's policies), and DIR/elsewhere to start
 * from. Writes the config's path relative to DIR/elsewhere into `rel`.
 */
static void make_conf(const char *dir, const char *policies, const char *plugins, uint16_t api,
                      uint16_t raft, char *rel, size_t rel_len)
{
    char path[400], target[400], yaml[1024];
    snprintf(path, sizeof path, "%s/conf", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/elsewhere", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/conf/policies", dir);
    if (symlink(RD_SOURCE_DIR "/policies", path) != 0 && errno != EEXIST)
        fail_msg("symlink %s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/conf/plugins", dir);
    snprintf(target, sizeof target, "%s", rdt_plugins_dir());
    if (symlink(target, path) != 0 && errno != EEXIST)
        fail_msg("symlink %s: %s", path, strerror(errno));
    snprintf(yaml, sizeof yaml,
             "server:\n"                      /* 1 */
             "  listen: 127.0.0.1:%u\n"       /* 2 */
             "storage:\n"                     /* 3 */
             "  data_dir: data\n"             /* 4 */
             "cluster:\n"                     /* 5 */
             "  raft_address: 127.0.0.1:%u\n" /* 6 */
             "plugins:\n"                     /* 7 */
             "  dir: %s\n"                    /* 8 */
             "policies:\n"                    /* 9 */
             "  dir: %s\n",                   /* 10 */
             (unsigned)api, (unsigned)raft, plugins, policies);
    snprintf(path, sizeof path, "%s/conf/recoveryd.yaml", dir);
    write_file(path, yaml);
    snprintf(rel, rel_len, "../conf/recoveryd.yaml");
}

/* rdt_run() of `args` in the working directory `cwd` (through sh). */
static int run_in(const char *cwd, char *const args[], char **out, char **err)
{
    char *argv[32] = {(char *)"/bin/sh", (char *)"-c", (char *)"cd \"$0\" && exec \"$@\"",
                      (char *)cwd, (char *)RD_BINARY};
    size_t n = 5;
    for (size_t i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return rdt_run(argv, RUN_TIMEOUT_MS, out, err);
}

/* --check-config from elsewhere: the file's relative plugins and policies load. */
static void test_relative_paths_check_config(void **state)
{
    const char *dir = *state;
    char rel[64], cwd[300];
    uint16_t api, raft;
    assert_int_equal(rdt_free_ports(&api, &raft), 0);
    make_conf(dir, "policies", "plugins", api, raft, rel, sizeof rel);
    snprintf(cwd, sizeof cwd, "%s/elsewhere", dir);
    char *const args[] = {(char *)"--check-config", (char *)"--config", rel, NULL};
    char *out = NULL, *err = NULL;
    int code = run_in(cwd, args, &out, &err);
    if (code != 0)
        print_message("--check-config from %s: exit %d\nstderr:\n%s\n", cwd, code, err);
    assert_int_equal(code, 0);
    free(out);
    free(err);
}

/*
 * A real start from elsewhere: it serves, and its data lands next to the
 * config file (conf/data), not in the working directory.
 */
static void test_relative_paths_start(void **state)
{
    const char *dir = *state;
    char rel[64], cwd[300], log_path[300], url[64], path[400];
    uint16_t api, raft;
    assert_int_equal(rdt_free_ports(&api, &raft), 0);
    make_conf(dir, "policies", "plugins", api, raft, rel, sizeof rel);
    snprintf(cwd, sizeof cwd, "%s/elsewhere", dir);
    snprintf(log_path, sizeof log_path, "%s/recoveryd.log", dir);

    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(log_fd >= 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || chdir(cwd) != 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
            _exit(127);
        execl(RD_BINARY, RD_BINARY, "--config", rel, (char *)NULL);
        _exit(127);
    }
    close(log_fd);
    struct rdt_proc child = {.pid = pid, .exit_code = -1};
    snprintf(child.log_path, sizeof child.log_path, "%s", log_path);

    snprintf(url, sizeof url, "http://127.0.0.1:%u/health", (unsigned)api);
    int64_t deadline = rdt_now_ms() + START_TIMEOUT_MS;
    long status = 0;
    while (status != 200 && rdt_proc_alive(&child) && rdt_now_ms() < deadline) {
        struct rdt_resp r = {0};
        rdt_http(RDT_H1, "GET", url, NULL, 0, &r);
        status = r.status;
        rdt_resp_free(&r);
        if (status != 200)
            rdt_sleep_ms(20);
    }
    if (status != 200) {
        rdt_proc_print_log_tail(&child, 30);
        if (rdt_proc_alive(&child))
            rdt_proc_kill9(&child);
        fail_msg("recoveryd --config %s started in %s did not serve /health (exit %d)", rel, cwd,
                 child.exit_code);
    }
    snprintf(path, sizeof path, "%s/conf/data/raft", dir);
    struct stat st;
    bool next_to_config = stat(path, &st) == 0;
    snprintf(path, sizeof path, "%s/elsewhere/data", dir);
    bool in_cwd = stat(path, &st) == 0;
    int code = -1;
    assert_int_equal(rdt_proc_stop(&child, &code), 0);
    assert_int_equal(code, 0);
    if (!next_to_config || in_cwd)
        fail_msg("storage.data_dir 'data' should be %s/conf/data (next to the config), "
                 "not in the working directory %s",
                 dir, cwd);
}

/* A missing directory in the file names the setting, its file and line, and the flag. */
static void test_relative_paths_errors(void **state)
{
    const char *dir = *state;
    char rel[64], cwd[300], want[400];
    uint16_t api, raft;
    assert_int_equal(rdt_free_ports(&api, &raft), 0);
    snprintf(cwd, sizeof cwd, "%s/elsewhere", dir);
    char *const args[] = {(char *)"--check-config", (char *)"--config", rel, NULL};
    char *out = NULL, *err = NULL;

    make_conf(dir, "no-policies", "plugins", api, raft, rel, sizeof rel);
    assert_int_equal(run_in(cwd, args, &out, &err), 1);
    char *reason = the_reason(err);
    expect_in("the reason", reason, "policies.dir");
    expect_in("the reason", reason, "../conf/no-policies");
    expect_in("the reason", reason, "recoveryd.yaml:10");
    expect_in("the reason", reason, "--policies-dir");
    free(reason);
    free(out);
    free(err);

    make_conf(dir, "policies", "no-plugins", api, raft, rel, sizeof rel);
    assert_int_equal(run_in(cwd, args, &out, &err), 1);
    reason = the_reason(err);
    expect_in("the reason", reason, "../conf/no-plugins/heartbeat.so");
    expect_in("the reason", reason, "plugins.dir");
    expect_in("the reason", reason, "recoveryd.yaml:8");
    expect_in("the reason", reason, "--plugins-dir");
    free(reason);
    free(out);
    free(err);

    /* Flags resolve against the working directory: elsewhere/pol is found,
     * and a missing one names the flag. */
    make_conf(dir, "policies", "plugins", api, raft, rel, sizeof rel);
    char pol[400];
    snprintf(pol, sizeof pol, "%s/elsewhere/pol", dir);
    assert_int_equal(symlink(RD_SOURCE_DIR "/policies", pol), 0);
    char *const flag_ok[] = {(char *)"--check-config", (char *)"--config", rel,
                             (char *)"--policies-dir", (char *)"pol",      NULL};
    int code = run_in(cwd, flag_ok, &out, &err);
    if (code != 0)
        print_message("--policies-dir pol from %s: exit %d\nstderr:\n%s\n", cwd, code, err);
    assert_int_equal(code, 0);
    free(out);
    free(err);
    char *const flag_bad[] = {(char *)"--check-config", (char *)"--config", rel,
                              (char *)"--policies-dir", (char *)"nope",     NULL};
    assert_int_equal(run_in(cwd, flag_bad, &out, &err), 1);
    reason = the_reason(err);
    snprintf(want, sizeof want, "set by --policies-dir");
    expect_in("the reason", reason, want);
    expect_in("the reason", reason, "nope");
    free(reason);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_relative_paths_check_config, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_relative_paths_start, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_relative_paths_errors, dir_setup, dir_teardown),
    };
    return cmocka_run_group_tests_name("startup", tests, NULL, NULL);
}
