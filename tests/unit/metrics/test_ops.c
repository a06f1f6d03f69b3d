/*
 * The process_* families read from /proc/self, checked against what this
 * test process knows of itself, and histograms with their own bounds.
 */
#include "cmocka_all.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "metrics/ops.h"

static void test_process_stats_are_this_process(void **state)
{
    (void)state;
    struct rd_process_stats s;
    rd_process_stats_read(&s);
    time_t now = time(NULL);
    /* This process started moments ago (ctest's timeout bounds it). */
    assert_true(s.start_time_seconds > (double)now - 700);
    assert_true(s.start_time_seconds <= (double)now + 1);
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_true(s.max_fds == (double)rl.rlim_cur);
    assert_true(s.resident_bytes > 1024 * 1024 / 4);
    assert_true(s.virtual_bytes >= s.resident_bytes);
    assert_true(s.cpu_seconds >= 0);

    /* Opening descriptors is seen: exactly as many more. */
    double before = s.open_fds;
    assert_true(before >= 3); /* stdin, stdout, stderr */
    int fds[5];
    for (int i = 0; i < 5; i++)
        assert_true((fds[i] = open("/dev/null", O_RDONLY)) >= 0);
    rd_process_stats_read(&s);
    assert_true(s.open_fds == before + 5);
    for (int i = 0; i < 5; i++)
        close(fds[i]);

    /* CPU time grows with work done. */
    double cpu0 = s.cpu_seconds;
    volatile double x = 0;
    for (;;) {
        for (int i = 0; i < 1000000; i++)
            x += i * 0.5;
        rd_process_stats_read(&s);
        if (s.cpu_seconds > cpu0)
            break;
    }
}

static void test_process_metrics_exposed(void **state)
{
    (void)state;
    struct rd_mbuf b;
    rd_mbuf_init(&b);
    rd_process_metrics(&b);
    assert_int_equal(b.err, 0);
    rd_mbuf_printf(&b, "%c", '\0');
    const char *names[] = {"process_cpu_seconds_total",
                           "process_resident_memory_bytes",
                           "process_virtual_memory_bytes",
                           "process_open_fds",
                           "process_max_fds",
                           "process_start_time_seconds"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "\n%s ", names[i]);
        if (strstr(b.p, want) == NULL)
            fail_msg("no %s in:\n%s", names[i], b.p);
    }
    assert_non_null(strstr(b.p, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(b.p, "# TYPE process_open_fds gauge\n"));
    rd_mbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_process_stats_are_this_process),
        cmocka_unit_test(test_process_metrics_exposed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
