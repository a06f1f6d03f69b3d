/*
 * systemd's Type=notify protocol (engine/core/notify.h), seen from the
 * manager's side: the test binds the datagram socket systemd would, names it
 * in $NOTIFY_SOCKET (with $WATCHDOG_USEC, as WatchdogSec= sets it) and starts
 * the real daemon. It must send READY=1 once its API answers, WATCHDOG=1
 * twice per watchdog period while it runs, and STOPPING=1 on SIGTERM before
 * it exits 0; STATUS= names its role. (Every other test runs it without $NOTIFY_SOCKET.)
 */
#include "cmocka_all.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"

/* One datagram into `buf` within `timeout_ms`: its length, or -1. */
static int recv_state(int fd, char *buf, size_t len, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) != 1)
        return -1;
    ssize_t n = recv(fd, buf, len - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return (int)n;
}

/* What the datagrams said so far. */
struct seen {
    int watchdogs; /* WATCHDOG=1 lines */
    bool leader;   /* a STATUS=leader line */
};

/* Waits up to `timeout_ms` for a datagram holding the line `want`, noting
 * every line of every datagram on the way in *seen. */
static bool wait_state(int fd, const char *want, int timeout_ms, struct seen *seen)
{
    int64_t deadline = rdt_now_ms() + timeout_ms;
    char buf[512];
    for (;;) {
        int64_t left = deadline - rdt_now_ms();
        if (left <= 0 || recv_state(fd, buf, sizeof(buf), (int)left) < 0)
            return false;
        bool found = false;
        for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n")) {
            seen->watchdogs += strcmp(line, "WATCHDOG=1") == 0;
            seen->leader |= strcmp(line, "STATUS=leader") == 0;
            found |= strcmp(line, want) == 0;
        }
        if (found)
            return true;
    }
}

static void test_ready_watchdog_and_stopping(void **state)
{
    struct rdt_proc p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(rdt_proc_prepare(&p), 0);

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify.sock", p.dir);
    assert_true(n > 0 && (size_t)n < sizeof(sa.sun_path));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    int period_ms = rdt_ms(400);
    char usec[32];
    snprintf(usec, sizeof(usec), "%d", period_ms * 1000);
    setenv("NOTIFY_SOCKET", sa.sun_path, 1);
    setenv("WATCHDOG_USEC", usec, 1);

    assert_int_equal(rdt_proc_start(&p, NULL), 0);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");

    /* READY=1 comes once the API listens and raft runs: GET /health
     * answered already (rdt_proc_start), and READY=1 follows within the
     * start's time. */
    struct seen seen = {0};
    assert_true(wait_state(fd, "READY=1", rdt_ms(15000), &seen));
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&p, RDT_H1, "/health", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    /* A replica alone leads: STATUS=leader, with READY=1 or after it. */
    if (!seen.leader)
        assert_true(wait_state(fd, "STATUS=leader", rdt_ms(15000), &seen));

    /* Two periods: at least three WATCHDOG=1 at one every half period
     * (a loose bound: a loaded machine delays timers, never adds them). */
    seen.watchdogs = 0;
    int64_t t1 = rdt_now_ms();
    wait_state(fd, "never sent", 2 * period_ms, &seen);
    assert_true(seen.watchdogs >= 3);
    assert_true(seen.watchdogs <= 2 * (rdt_now_ms() - t1) / period_ms + 2);

    assert_int_equal(rdt_proc_signal(&p, SIGTERM), 0);
    assert_true(wait_state(fd, "STOPPING=1", rdt_ms(5000), &seen));
    int status = -1;
    assert_int_equal(rdt_proc_wait(&p, rdt_ms(20000), &status), 0);
    assert_int_equal(status, 0);
    close(fd);
    rdt_proc_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_watchdog_and_stopping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
