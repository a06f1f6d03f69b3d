/*
 * The leader's wall clock stepped back (an NTP step after it ran an hour
 * fast; found by the chaos suite's replica_clock fault, seed 124): the
 * backups and consistency checks scheduled from the newest record's start,
 * which that clock stamped an hour ahead, go on at their interval. Before,
 * the next of each waited for the wall clock to pass the stamp plus an
 * interval: an hour without backups.
 *
 * The daemon runs under Debian's libfaketime (the faketime package), its
 * offset read from a file every second and its monotonic clock left real,
 * as the chaos suite runs it; skipped without it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cmocka_all.h"
#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"
#include "rdt_preload.h"

static bool skipped; /* no libfaketime here */

static const char *const faketime_libs[] = {
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
};

static const char *faketime_lib(void)
{
    for (size_t i = 0; i < sizeof(faketime_libs) / sizeof(faketime_libs[0]); i++)
        if (access(faketime_libs[i], R_OK) == 0)
            return faketime_libs[i];
    return NULL;
}

/* The daemon's clock: `offset` seconds from the real one. */
static void set_offset(const struct rdt_proc *p, long offset)
{
    char path[320], tmp[330];
    snprintf(path, sizeof(path), "%s/faketime.rc", p->dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fprintf(f, "%+ld\n", offset);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static double completed(struct rdt_proc *p)
{
    return rdt_metric(p, "recoveryd_backups_total{status=\"completed\"}");
}

static double checks(struct rdt_proc *p)
{
    return rdt_metric(p, "recoveryd_consistency_checks_total{status=\"consistent\"}");
}

/* Waits until `what` of `p` reaches `want`; false after `ms`. */
static bool reaches(struct rdt_proc *p, double (*what)(struct rdt_proc *), double want, int ms)
{
    for (int64_t until = rdt_now_ms() + ms * rdt_time_factor(); rdt_now_ms() < until;) {
        if (what(p) >= want)
            return true;
        rdt_sleep_ms(50);
    }
    return what(p) >= want;
}

static void test_backups_and_checks_go_on_after_the_clock_steps_back(void **state)
{
    (void)state;
    const char *lib = faketime_lib();
    if (lib == NULL) {
        print_message("no libfaketime (Debian's faketime): skipped\n");
        skipped = true;
        return;
    }
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_prepare(&p), 0);
    char rc[320], yaml[1024];
    snprintf(rc, sizeof(rc), "%s/faketime.rc", p.dir);
    set_offset(&p, 3600);
    rdt_preload(lib);
    setenv("FAKETIME_TIMESTAMP_FILE", rc, 1);
    setenv("FAKETIME_CACHE_DURATION", "1", 1);
    setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1", 1);
    snprintf(yaml, sizeof(yaml),
             "fault_tolerance:\n"
             "  backup:\n"
             "    interval: 1s\n"
             "    consistency_check_interval: 1s\n"
             "    archive: {target: \"\"}\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - {name: local, plugin: file, config: {dir: \"%s/target\"}}\n",
             p.dir);
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    unsetenv("LD_PRELOAD");
    unsetenv("FAKETIME_TIMESTAMP_FILE");
    assert_int_equal(rdt_wait_ready(&p, 20000), 0);

    /* An hour ahead: backups and checks at their interval, stamped so. */
    assert_true(reaches(&p, completed, 2, 15000));
    assert_true(reaches(&p, checks, 2, 15000));
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&p, RDT_H1, "/api/v1/backups?limit=1", &r), 0);
    const char *at = json_string_value(
        json_object_get(json_array_get(json_object_get(r.json, "items"), 0), "started_at"));
    assert_non_null(at);
    print_message("newest backup started at %s (an hour ahead)\n", at);
    rdt_resp_free(&r);

    /* The clock steps back an hour: the next ones within a few intervals. */
    set_offset(&p, 0);
    rdt_sleep_ms(1500); /* libfaketime rereads the file every second */
    double b0 = completed(&p), c0 = checks(&p);
    int64_t t0 = rdt_now_ms();
    if (!reaches(&p, completed, b0 + 2, 10000))
        fail_msg("%.0f backups in 10 s after the clock stepped back an hour (before: %.0f)",
                 completed(&p) - b0, b0);
    if (!reaches(&p, checks, c0 + 2, 10000))
        fail_msg("%.0f consistency checks in 10 s after the clock stepped back an hour",
                 checks(&p) - c0);
    /* ... and no faster than their interval: the newest stamp is still an
     * hour ahead of the ones taken since, and must not make every tick due. */
    rdt_sleep_ms(3000 * rdt_time_factor()); /* a window to count in */
    double secs = (double)(rdt_now_ms() - t0) / 1000.0;
    double nb = completed(&p) - b0, nc = checks(&p) - c0;
    print_message("%.0f backups and %.0f checks in %.1f s at an interval of 1 s\n", nb, nc, secs);
    if (nb > secs + 3 || nc > secs + 3)
        fail_msg("%.0f backups and %.0f checks in %.1f s: faster than every second", nb, nc, secs);
    rdt_proc_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backups_and_checks_go_on_after_the_clock_steps_back),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return rdt_exit_code(failed, skipped);
}
