/*
 * Reading one sample out of a Prometheus text exposition (GET /metrics), for
 * tests that wait on a counter: "until the scheduler ran three more passes"
 * instead of a fixed sleep that passes whether or not anything ran.
 */
#ifndef RDT_METRICS_H
#define RDT_METRICS_H

#include <stdlib.h>
#include <string.h>

#include "cmocka_all.h"
#include "harness.h"
#include "rdt_ctest.h"

/*
 * The value of the sample `series` (a metric name with its labels exactly as
 * exposed, e.g. `recoveryd_nodes{state="alive"}`) in `body`, or -1 when there
 * is no such line. Only sample lines count, never # HELP or # TYPE.
 */
static inline double rdt_metric_in_f(const char *body, const char *series)
{
    size_t len = strlen(series);
    for (const char *line = body; line != NULL && *line != '\0';) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ')
            return strtod(line + len + 1, NULL);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return -1;
}

/* The same, of a sample whose value is a whole number. */
static inline long long rdt_metric_in(const char *body, const char *series)
{
    return (long long)rdt_metric_in_f(body, series);
}

/* The sample `series` from `p`'s GET /metrics; fails the test when absent. */
static inline double rdt_metric_f(struct rdt_proc *p, const char *series)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    double v = rdt_metric_in_f(r.body, series);
    rdt_resp_free(&r);
    if (v < 0)
        fail_msg("no %s in /metrics", series);
    return v;
}

static inline long long rdt_metric(struct rdt_proc *p, const char *series)
{
    return (long long)rdt_metric_f(p, series);
}

/* Waits up to `ms` (scaled by the time factor) until `series` from `p`'s
 * GET /metrics is at least `at_least`; its value then, or the test fails. */
static inline long long rdt_wait_metric(struct rdt_proc *p, const char *series, long long at_least,
                                        int ms)
{
    for (int64_t until = rdt_now_ms() + rdt_ms(ms);;) {
        long long v = rdt_metric(p, series);
        if (v >= at_least)
            return v;
        if (rdt_now_ms() >= until)
            fail_msg("%s stayed below %lld (%lld)", series, at_least, v);
        rdt_sleep_ms(20);
    }
}

#endif
