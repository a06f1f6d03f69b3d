/*
 * recoveryctl on a terminal, driven through tmux: `status --watch` redraws
 * in place (in colour) and follows the cluster, Ctrl-C ends it with 0;
 * NO_COLOR is honoured on a terminal; `nodes drain --wait` draws its
 * progress bar in place on one line until the agent holds no task. Skipped
 * (77) without tmux.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_server.h"

#ifndef RD_RECOVERYCTL
#error "RD_RECOVERYCTL (path of the built recoveryctl) must be defined"
#endif

static char g_tmux[256];
static char g_sock[400];
static struct rdt_proc g_p;

/* tmux -S SOCK ARGS...; its stdout in *out when not NULL. */
static int tmux(char **out, const char *first, ...)
{
    char *argv[32] = {g_tmux, (char *)"-S", g_sock};
    int n = 3;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 31; a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char *o = NULL, *e = NULL;
    int rc = rdt_run(argv, 10000, &o, &e);
    if (rc != 0)
        print_message("tmux %s: exit %d: %s\n", first, rc, e ? e : "");
    free(e);
    if (out != NULL)
        *out = o;
    else
        free(o);
    return rc;
}

/* Runs `cmd` in a new 120x40 window named `name` (the window stays after the exit). */
static void window(const char *name, const char *cmd)
{
    char full[2048];
    snprintf(full, sizeof full, "RECOVERYD_ENDPOINTS=%s TERM=xterm %s; echo EXIT=$?; sleep 60",
             g_p.base_url, cmd);
    assert_int_equal(tmux(NULL, "new-window", "-d", "-n", name, full, NULL), 0);
}

/* The pane of window `name` (with escape sequences when `escapes`), until it
 * holds `needle` or `ms` passed. Returns the last capture (the caller's). */
static char *wait_pane(const char *name, const char *needle, bool escapes, int ms)
{
    char target[64];
    snprintf(target, sizeof target, "rctl:%s", name);
    int64_t end = rdt_now_ms() + rdt_ms(ms);
    char *out = NULL;
    for (;;) {
        free(out);
        out = NULL;
        tmux(&out, "capture-pane", "-p", escapes ? "-e" : "-J", "-t", target, NULL);
        if (out != NULL && strstr(out, needle) != NULL)
            return out;
        if (rdt_now_ms() > end)
            fail_msg("'%s' never appeared in window %s:\n%s", needle, name, out ? out : "");
        rdt_sleep_ms(100);
    }
}

static int setup(void **state)
{
    memset(&g_p, 0, sizeof g_p);
    if (rdt_proc_start(&g_p, "fault_tolerance:\n"
                             "  detection:\n"
                             "    heartbeat_interval: 30s\n") != 0 ||
        rdt_wait_ready(&g_p, rdt_ms(20000)) != 0)
        return -1;
    snprintf(g_sock, sizeof g_sock, "%s/tmux.sock", g_p.dir);
    /* A server of our own (its socket in the daemon's directory), never the user's. */
    char *const argv[] = {g_tmux,
                          (char *)"-S",
                          g_sock,
                          (char *)"-f",
                          (char *)"/dev/null",
                          (char *)"new-session",
                          (char *)"-d",
                          (char *)"-s",
                          (char *)"rctl",
                          (char *)"-x",
                          (char *)"120",
                          (char *)"-y",
                          (char *)"40",
                          NULL};
    return rdt_run(argv, 10000, NULL, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    tmux(NULL, "kill-server", NULL);
    rdt_proc_cleanup(&g_p);
    return 0;
}

static void test_watch_redraws_and_stops_on_ctrl_c(void **state)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s status --watch --interval 0.3", RD_RECOVERYCTL);
    window("watch", cmd);
    char *pane = wait_pane("watch", "Every 0.3s: recoveryctl status", false, 10000);
    free(pane);
    /* In colour on a terminal: the bold labels. */
    pane = wait_pane("watch", "\033[32mhealthy", true, 5000);
    free(pane);
    /* It follows the cluster: a new agent shows up without a key pressed. */
    assert_int_equal(rdt_register(&g_p, "tty-a", 1, NULL), 0);
    pane = wait_pane("watch", "Agents       1: 1 alive", false, 5000);
    /* Redrawn in place: the header once on the screen, not scrolled copies. */
    const char *first = strstr(pane, "Every 0.3s");
    assert_null(strstr(first + 1, "Every 0.3s"));
    free(pane);
    assert_int_equal(tmux(NULL, "send-keys", "-t", "rctl:watch", "C-c", NULL), 0);
    pane = wait_pane("watch", "EXIT=0", false, 5000);
    free(pane);
}

static void test_no_color_on_a_terminal(void **state)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "NO_COLOR=1 %s nodes list", RD_RECOVERYCTL);
    window("nocolor", cmd);
    char *pane = wait_pane("nocolor", "EXIT=0", true, 10000);
    assert_non_null(strstr(pane, "NODE"));
    assert_null(strstr(pane, "\033[1m"));
    assert_null(strstr(pane, "\033[32m"));
    free(pane);
}

static void test_drain_progress_bar(void **state)
{
    /* No other agent to move the tasks to: they leave tty-d only as they finish. */
    struct rdt_resp gone = {0};
    assert_int_equal(rdt_delete(&g_p, RDT_H1, "/api/v1/nodes/tty-a", &gone), 0);
    assert_int_equal(gone.status, 200);
    rdt_resp_free(&gone);
    long long epoch = 0;
    assert_int_equal(rdt_register(&g_p, "tty-d", 4, &epoch), 0);
    for (int i = 0; i < 4; i++) {
        struct rdt_resp r = {0};
        assert_int_equal(
            rdt_post(&g_p, RDT_H1, "/api/v1/tasks", "{\"requirements\":{\"slots\":1}}", &r), 0);
        assert_int_equal(r.status, 201);
        rdt_resp_free(&r);
    }
    /* Heartbeats until the four are placed on tty-d. */
    char ids[4][40];
    long long attempts[4];
    int n = 0;
    int64_t end = rdt_now_ms() + rdt_ms(10000);
    while (n < 4 && rdt_now_ms() < end) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_heartbeat(&g_p, RDT_H1, "tty-d", epoch, 0, &r), 0);
        size_t i;
        json_t *a;
        /* Each assignment is told once: collected across the answers. */
        json_array_foreach(json_object_get(r.json, "assignments"), i, a)
        {
            const char *id = json_string_value(json_object_get(a, "task_id"));
            bool seen = false;
            for (int k = 0; k < n; k++)
                seen |= strcmp(ids[k], id) == 0;
            if (!seen && n < 4) {
                snprintf(ids[n], sizeof ids[n], "%s", id);
                attempts[n++] = json_integer_value(json_object_get(a, "attempt"));
            }
        }
        rdt_resp_free(&r);
        if (n < 4)
            rdt_sleep_ms(100);
    }
    assert_int_equal(n, 4);

    /* The engine moves a draining agent's tasks off it (back to pending
     * here, no other agent being there): the bar follows them to the end,
     * redrawn in place on one line. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s nodes drain tty-d --wait", RD_RECOVERYCTL);
    window("drain", cmd);
    char *pane = wait_pane("drain", "EXIT=0", false, 15000);
    assert_non_null(strstr(pane, "tty-d: draining (4 tasks)"));
    const char *bar = strstr(pane, "draining [##############################] 100%");
    if (bar == NULL || strstr(pane, "done: no task left") == NULL)
        fail_msg("no finished progress bar:\n%s", pane);
    assert_null(strstr(bar + 1, "draining ["));
    free(pane);
    (void)attempts;
    (void)ids;
}

int main(void)
{
    if (rdt_which("tmux", g_tmux, sizeof g_tmux) != 0) {
        fprintf(stderr, "tmux is not installed (scripts/bootstrap installs it): skipped\n");
        return RDT_EXIT_SKIP;
    }
    unsetenv("TMUX");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch_redraws_and_stops_on_ctrl_c),
        cmocka_unit_test(test_no_color_on_a_terminal),
        cmocka_unit_test(test_drain_progress_bar),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
