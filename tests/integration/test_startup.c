/*
 * Starting the real binary where a start must fail, or must not depend on
 * where it is started from (issue 10, defects 2 and 3):
 *
 *   - a second daemon on the data directory of a running one (two `make run`
 *     on one machine) stops with one line naming the directory and the pid
 *     that holds it, and writes nothing into the raft log;
 *   - a raft or API address already in use stops the start before raft
 *     starts (no election, no `commit_failed`), with a line naming the
 *     address, saying it is in use and naming the setting and its flag;
 *   - relative paths in a config file resolve against the file's directory,
 *     whatever the working directory; relative paths given by flags against
 *     the working directory; a missing one names the setting and the flag.
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

static void expect_not_in(const char *what, const char *text, const char *needle)
{
    if (strstr(text, needle) != NULL)
        fail_msg("%s should not contain \"%s\"; it was:\n%s", what, needle, text);
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

/* What a start that failed before raft must not have logged. */
static void expect_raft_never_ran(const char *err)
{
    static const char *const never[] = {"event=role_changed", "event=leader", "event=commit_failed",
                                        "event=replica_info_refused", "comp=raft event=started"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        expect_not_in("stderr of a start that failed before raft", err, never[i]);
}

/* Number of entries in `dir` (0 when it does not exist). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        assert_int_equal(errno, ENOENT);
        return 0;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* "name size mtime_ns\n" for every file of `dir`, sorted: what a write changes. */
static char *dir_state(const char *dir)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        fail_msg("scandir %s: %s", dir, strerror(errno));
        return NULL;
    }
    size_t cap = 64 + (size_t)n * 320, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        char path[600];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && stat(path, &st) == 0)
            len += (size_t)snprintf(out + len, cap - len, "%s %lld %lld.%09ld\n", names[i]->d_name,
                                    (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                                    st.st_mtim.tv_nsec);
        free(names[i]);
    }
    free(names);
    return out;
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

/* ---- defect 2: a second instance, addresses in use --------------------------- */

/*
 * Two `make run` on one machine: the second has the first one's config, data
 * directory and addresses. It must stop at once with one line naming the
 * directory, that it is in use and the pid holding it, leave the raft log
 * as it was, and the first must go on serving and writing.
 */
static void test_second_instance_same_data_dir(void **state)
{
    struct rdt_proc *p = *state;
    assert_int_equal(rdt_wait_ready(p, START_TIMEOUT_MS), 0);
    /*
     * The first one's last write of its start is the entry with its API URL
     * (announce_replicas): once it is applied the log stays as it is while
     * nothing asks for a write, and any change below is the second one's.
     */
    bool announced = false;
    int64_t deadline = rdt_now_ms() + START_TIMEOUT_MS;
    while (!announced && rdt_now_ms() < deadline) {
        struct rdt_resp r = {0};
        if (rdt_get(p, RDT_H1, "/api/v1/cluster/replicas", &r) == 0 && r.status == 200) {
            json_t *url =
                json_object_get(json_array_get(json_object_get(r.json, "replicas"), 0), "api_url");
            announced = json_is_string(url) && json_string_length(url) > 0;
        }
        rdt_resp_free(&r);
        if (!announced)
            rdt_sleep_ms(10);
    }
    if (!announced)
        fail_msg("the first instance never recorded its API URL (GET /api/v1/cluster/replicas)");
    char raft_dir[400];
    snprintf(raft_dir, sizeof raft_dir, "%s/raft", p->data_dir);
    /* The first instance writes what a new leader writes (its API URL, the
     * cluster id): wait until its log is quiet before the second one runs. */
    char *before = dir_state(raft_dir);
    for (int64_t until = rdt_now_ms() + 5000;;) {
        rdt_sleep_ms(300);
        char *again = dir_state(raft_dir);
        bool quiet = strcmp(before, again) == 0;
        free(before);
        before = again;
        if (quiet)
            break;
        if (rdt_now_ms() > until)
            fail_msg("the first instance kept writing %s for 5 s", raft_dir);
    }

    char *out = NULL, *err = NULL;
    int code = rdt_proc_run_once(p, NULL, RUN_TIMEOUT_MS, &out, &err);
    if (code != 1)
        print_message("second instance: exit %d, want 1\nstderr:\n%s\n", code, err ? err : "");
    assert_int_equal(code, 1);

    char *reason = the_reason(err);
    char want[600];
    snprintf(want, sizeof want, "data directory %s is in use by another recoveryd (pid %d",
             p->data_dir, (int)p->pid);
    expect_in("the reason", reason, want);
    snprintf(want, sizeof want, "%s/recoveryd.lock", p->data_dir);
    expect_in("the reason", reason, want);
    expect_in("the reason", reason, "--data-dir");
    expect_in("the reason", reason, "storage.data_dir");
    expect_raft_never_ran(err);
    free(reason);
    free(out);
    free(err);

    /* Nothing of the first one's raft log changed... */
    char *after = dir_state(raft_dir);
    if (strcmp(before, after) != 0)
        fail_msg("the second instance changed %s:\nbefore:\n%safter:\n%s", raft_dir, before, after);
    free(before);
    free(after);

    /* ... and it still serves and commits. */
    assert_true(rdt_proc_alive(p));
    assert_int_equal(rdt_register(p, "after-second", 2, NULL), 0);
    int exit_code = -1;
    assert_int_equal(rdt_proc_stop(p, &exit_code), 0);
    assert_int_equal(exit_code, 0);
    char *log = rdt_proc_log(p);
    assert_non_null(log);
    char *bad = rdt_log_error_line(log);
    if (bad != NULL)
        fail_msg("the first instance logged an error: %s", bad);
    free(log);
}

/* The pid the lock file of `p`'s data directory names (0 when none). */
static long lock_file_pid(const struct rdt_proc *p)
{
    char path[400], buf[32] = {0};
    snprintf(path, sizeof path, "%s/recoveryd.lock", p->data_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

/*
 * The lock goes with the process however it ends: a daemon killed with
 * SIGKILL leaves its lock file behind, and the restart takes it over (and
 * writes its own pid in it) instead of being kept out.
 */
static void test_killed_instance_leaves_no_stale_lock(void **state)
{
    struct rdt_proc *p = *state;
    assert_int_equal(lock_file_pid(p), (long)p->pid);
    assert_int_equal(rdt_proc_kill9(p), 0);
    assert_int_equal(rdt_proc_restart(p), 0);
    assert_int_equal(lock_file_pid(p), (long)p->pid);
    assert_int_equal(rdt_wait_ready(p, START_TIMEOUT_MS), 0);
    int exit_code = -1;
    assert_int_equal(rdt_proc_stop(p, &exit_code), 0);
    assert_int_equal(exit_code, 0);
}

/*
 * The raft address is taken (set in the file): the start stops before raft
 * runs, names the address, says it is in use, and names the setting (with
 * the file and line) and the flag. The raft log stays empty.
 */
static void test_raft_address_in_use(void **state)
{
    const char *dir = *state;
    uint16_t held = 0, api, unused;
    int fd = rdt_hold_port(&held);
    assert_int_equal(rdt_free_ports(&api, &unused), 0);
    char cfg[300], data[300], raft_dir[320], yaml[256], listen_arg[32];
    snprintf(cfg, sizeof cfg, "%s/recoveryd.yaml", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(raft_dir, sizeof raft_dir, "%s/raft", data);
    snprintf(yaml, sizeof yaml, "cluster:\n  raft_address: 127.0.0.1:%u\n", (unsigned)held);
    write_file(cfg, yaml);
    snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%u", (unsigned)api);
    char *const argv[] = {(char *)RD_BINARY,
                          (char *)"--config",
                          cfg,
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
    int code = rdt_run(argv, RUN_TIMEOUT_MS, &out, &err);
    close(fd);
    if (code != 1)
        print_message("exit %d, want 1\nstderr:\n%s\n", code, err ? err : "");
    assert_int_equal(code, 1);
    char *reason = the_reason(err);
    char want[400];
    snprintf(want, sizeof want, "raft address 127.0.0.1:%u is already in use", (unsigned)held);
    expect_in("the reason", reason, want);
    snprintf(want, sizeof want, "cluster.raft_address at %s:2", cfg);
    expect_in("the reason", reason, want);
    expect_in("the reason", reason, "--raft-address");
    expect_raft_never_ran(err);
    if (count_entries(raft_dir) != 0)
        fail_msg("%s should be empty: nothing may be written before the addresses are bound",
                 raft_dir);
    free(reason);
    free(out);
    free(err);
}

/* The API address is taken (set by --listen): the same, before raft starts. */
static void test_api_address_in_use(void **state)
{
    const char *dir = *state;
    uint16_t held = 0, raft, unused;
    int fd = rdt_hold_port(&held);
    assert_int_equal(rdt_free_ports(&raft, &unused), 0);
    char data[300], raft_dir[320], listen_arg[32], raft_arg[32];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(raft_dir, sizeof raft_dir, "%s/raft", data);
    snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%u", (unsigned)held);
    snprintf(raft_arg, sizeof raft_arg, "127.0.0.1:%u", (unsigned)raft);
    char *const argv[] = {(char *)RD_BINARY,
                          (char *)"--listen",
                          listen_arg,
                          (char *)"--raft-address",
                          raft_arg,
                          (char *)"--data-dir",
                          data,
                          (char *)"--plugins-dir",
                          (char *)rdt_plugins_dir(),
                          (char *)"--policies-dir",
                          (char *)RD_SOURCE_DIR "/policies",
                          NULL};
    char *out = NULL, *err = NULL;
    int code = rdt_run(argv, RUN_TIMEOUT_MS, &out, &err);
    close(fd);
    if (code != 1)
        print_message("exit %d, want 1\nstderr:\n%s\n", code, err ? err : "");
    assert_int_equal(code, 1);
    char *reason = the_reason(err);
    char want[400];
    snprintf(want, sizeof want, "API address 127.0.0.1:%u is already in use", (unsigned)held);
    expect_in("the reason", reason, want);
    expect_in("the reason", reason, "set by --listen");
    expect_in("the reason", reason, "server.listen");
    expect_raft_never_ran(err);
    if (count_entries(raft_dir) != 0)
        fail_msg("%s should be empty: nothing may be written before the addresses are bound",
                 raft_dir);
    free(reason);
    free(out);
    free(err);
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

/*
 * server.ui_dir: a directory the config names must hold the dashboard
 * (index.html), resolved like the other paths against the config's
 * directory; the error names the key, the directory and the line. The
 * tree's ui/ passes, and so does "" (no dashboard).
 */
static void test_ui_dir(void **state)
{
    const char *dir = *state;
    char rel[64], cwd[300], path[400], yaml[1024];
    uint16_t api, raft;
    assert_int_equal(rdt_free_ports(&api, &raft), 0);
    make_conf(dir, "policies", "plugins", api, raft, rel, sizeof rel);
    snprintf(cwd, sizeof cwd, "%s/elsewhere", dir);
    snprintf(path, sizeof path, "%s/conf/recoveryd.yaml", dir);
    char *const args[] = {(char *)"--check-config", (char *)"--config", rel, NULL};
    const char *const dirs[] = {"no-ui", "\"\"", RD_SOURCE_DIR "/ui"};
    for (int i = 0; i < 3; i++) {
        snprintf(yaml, sizeof yaml,
                 "server:\n"                      /* 1 */
                 "  listen: 127.0.0.1:%u\n"       /* 2 */
                 "  ui_dir: %s\n"                 /* 3 */
                 "storage:\n"                     /* 4 */
                 "  data_dir: data\n"             /* 5 */
                 "cluster:\n"                     /* 6 */
                 "  raft_address: 127.0.0.1:%u\n" /* 7 */
                 "plugins:\n"                     /* 8 */
                 "  dir: plugins\n"               /* 9 */
                 "policies:\n"                    /* 10 */
                 "  dir: policies\n",             /* 11 */
                 (unsigned)api, dirs[i], (unsigned)raft);
        write_file(path, yaml);
        char *out = NULL, *err = NULL;
        int code = run_in(cwd, args, &out, &err);
        if (i == 0) {
            assert_int_equal(code, 1);
            char *reason = the_reason(err);
            expect_in("the reason", reason, "server.ui_dir");
            expect_in("the reason", reason, "../conf/no-ui has no readable index.html");
            expect_in("the reason", reason, "recoveryd.yaml:3");
            free(reason);
        } else {
            if (code != 0)
                print_message("ui_dir %s: exit %d\nstderr:\n%s\n", dirs[i], code, err);
            assert_int_equal(code, 0);
        }
        free(out);
        free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_second_instance_same_data_dir, proc_setup,
                                        proc_teardown),
        cmocka_unit_test_setup_teardown(test_killed_instance_leaves_no_stale_lock, proc_setup,
                                        proc_teardown),
        cmocka_unit_test_setup_teardown(test_raft_address_in_use, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_api_address_in_use, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_relative_paths_check_config, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_relative_paths_start, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_relative_paths_errors, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_ui_dir, dir_setup, dir_teardown),
    };
    return cmocka_run_group_tests_name("startup", tests, NULL, NULL);
}
