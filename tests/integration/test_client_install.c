/*
 * librecoveryd-client as its users get it: `cmake --install` of the client
 * and recoveryctl components into a temporary prefix, the example agent
 * (api/c/examples/agent_example.c) built with nothing but
 * `pkg-config --cflags --libs recoveryd-client` pointed into that prefix, and
 * run against a real engine; the installed recoveryctl then sees its task
 * completed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_server.h"

#if !defined(RD_CMAKE_COMMAND) || !defined(RD_BUILD_DIR) || !defined(RD_INSTALL_LIBDIR) ||         \
    !defined(RD_CC) || !defined(RD_SANITIZE_FLAGS)
#error "RD_CMAKE_COMMAND, RD_BUILD_DIR, RD_INSTALL_LIBDIR, RD_CC, RD_SANITIZE_FLAGS are needed"
#endif

#define RUN_MS 120000

static void run_ok(char *const argv[], char **out)
{
    char *o = NULL, *e = NULL;
    int code = rdt_run(argv, RUN_MS, &o, &e);
    if (code != 0)
        fail_msg("%s %s: exit %d\nstdout: %.3000s\nstderr: %.3000s", argv[0], argv[1], code,
                 o ? o : "", e ? e : "");
    free(e);
    if (out != NULL)
        *out = o;
    else
        free(o);
}

static void expect_file(const char *prefix, const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", prefix, rel);
    if (access(path, F_OK) != 0)
        fail_msg("not installed: %s", path);
}

static void test_install_build_example_run(void **state)
{
    char prefix[256];
    assert_int_equal(rdt_tmpdir(prefix, sizeof prefix), 0);
    const char *comps[] = {"client", "recoveryctl"};
    for (int i = 0; i < 2; i++) {
        char *const argv[] = {(char *)RD_CMAKE_COMMAND,
                              (char *)"--install",
                              (char *)RD_BUILD_DIR,
                              (char *)"--prefix",
                              prefix,
                              (char *)"--component",
                              (char *)comps[i],
                              NULL};
        run_ok(argv, NULL);
    }
    expect_file(prefix, "include/recoveryd/client.h");
    expect_file(prefix, RD_INSTALL_LIBDIR "/librecoveryd-client.so");
    expect_file(prefix, RD_INSTALL_LIBDIR "/pkgconfig/recoveryd-client.pc");
    expect_file(prefix, "bin/recoveryctl");
    expect_file(prefix, "share/man/man1/recoveryctl.1");
    expect_file(prefix, "share/bash-completion/completions/recoveryctl");

    /* The example, built against the installed copy by pkg-config alone. */
    char pcpath[512], libdir[512], exe[512], cmd[2048];
    snprintf(pcpath, sizeof pcpath, "%s/%s/pkgconfig", prefix, RD_INSTALL_LIBDIR);
    snprintf(libdir, sizeof libdir, "%s/%s", prefix, RD_INSTALL_LIBDIR);
    snprintf(exe, sizeof exe, "%s/agent_example", prefix);
    setenv("PKG_CONFIG_PATH", pcpath, 1);
    snprintf(cmd, sizeof cmd,
             "set -e; test \"$(pkg-config --variable=libdir recoveryd-client)\" -ef '%s'; "
             "%s %s -o '%s' '%s/api/c/examples/agent_example.c' "
             "$(pkg-config --cflags --libs recoveryd-client)",
             libdir, RD_CC, RD_SANITIZE_FLAGS, exe, RD_SOURCE_DIR);
    char *const sh[] = {(char *)"/bin/sh", (char *)"-c", cmd, NULL};
    run_ok(sh, NULL);

    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, "fault_tolerance:\n"
                                        "  detection:\n"
                                        "    heartbeat_interval: 30s\n"),
                     0);
    assert_int_equal(rdt_wait_ready(&p, rdt_ms(20000)), 0);
    setenv("RECOVERYD_ENDPOINTS", p.base_url, 1);
    setenv("LD_LIBRARY_PATH", libdir, 1);
    char *out = NULL;
    char *const ex[] = {exe, (char *)"installed-agent", NULL};
    run_ok(ex, &out);
    if (strstr(out, "completed") == NULL || strstr(out, "checkpoint version 2") == NULL)
        fail_msg("the example did not complete its task:\n%s", out);
    char task_id[64] = "";
    const char *t = strstr(out, "submitted task ");
    assert_non_null(t);
    sscanf(t, "submitted task %63s", task_id);
    free(out);

    /* The installed recoveryctl finds its library by itself (RPATH). */
    unsetenv("LD_LIBRARY_PATH");
    char ctl[512];
    snprintf(ctl, sizeof ctl, "%s/bin/recoveryctl", prefix);
    char *const get[] = {ctl, (char *)"tasks", (char *)"get", task_id, (char *)"--json", NULL};
    run_ok(get, &out);
    json_t *task = json_loads(out, 0, NULL);
    assert_non_null(task);
    assert_string_equal(json_string_value(json_object_get(task, "state")), "completed");
    assert_int_equal(json_integer_value(json_object_get(task, "attempt")), 1);
    json_decref(task);
    free(out);
    unsetenv("RECOVERYD_ENDPOINTS");
    rdt_proc_cleanup(&p);
    rdt_rmtree(prefix);
}

int main(void)
{
    char path[64];
    if (rdt_which("pkg-config", path, sizeof path) != 0) {
        fprintf(stderr, "pkg-config is not installed: skipped\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_build_example_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
