/*
 * How a test talks to ctest about what it could not do, and how long it may
 * wait for something.
 *
 * Skips: a test that cannot run here (it needs root, say) exits with
 * RDT_EXIT_SKIP, which tests/CMakeLists.txt registers as every test's
 * SKIP_RETURN_CODE, so ctest reports it as skipped, never as passed. A
 * failure is never a skip: rdt_exit_code() gives the skip code only when
 * nothing failed.
 *
 * Time limits: a limit on how long something takes (a failover, a
 * detection, a request) and the cadence a test thread must keep (heartbeats)
 * are multiplied by rdt_time_factor(): RD_TEST_TIME_FACTOR from the
 * environment when set (a whole number from 1 to 100), else the build's default
 * RDT_DEFAULT_TIME_FACTOR (higher in sanitizer builds, where everything runs
 * slower on the same cores; see tests/CMakeLists.txt). A test scales the
 * engine's intervals and its own limits together, so the scenario is the
 * same, only slower.
 */
#ifndef RDT_CTEST_H
#define RDT_CTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef RDT_DEFAULT_TIME_FACTOR
#define RDT_DEFAULT_TIME_FACTOR 1
#endif

#define RDT_EXIT_SKIP 77

/* What main() returns after cmocka_run_group_tests() (`failed`): the
 * failures, else RDT_EXIT_SKIP when a test was skipped, else 0. */
static inline int rdt_exit_code(int failed, bool skipped)
{
    if (failed != 0)
        return failed == RDT_EXIT_SKIP ? 1 : failed;
    return skipped ? RDT_EXIT_SKIP : 0;
}

static inline int rdt_time_factor(void)
{
    const char *env = getenv("RD_TEST_TIME_FACTOR");
    if (env != NULL && env[0] != '\0') {
        char *end = NULL;
        long f = strtol(env, &end, 10);
        if (end != NULL && *end == '\0' && f >= 1 && f <= 100)
            return (int)f;
        fprintf(stderr, "RD_TEST_TIME_FACTOR=%s is not a whole number from 1 to 100; using %d\n",
                env, RDT_DEFAULT_TIME_FACTOR);
    }
    return RDT_DEFAULT_TIME_FACTOR;
}

/* `ms` scaled by rdt_time_factor(). */
static inline int rdt_ms(int ms)
{
    return ms * rdt_time_factor();
}

/*
 * The YAML text `in` with every duration value (": " then a whole number
 * with ms, s, m or h, then the end of the value) multiplied by
 * rdt_time_factor(), in `out` (`len` bytes): the engine runs the test's
 * scenario at the same pace as the test, however slow. Counts, shares and
 * sizes (`3`, `50%`, `4MiB`) are left alone. Returns `out`; aborts when it
 * does not fit.
 */
static inline const char *rdt_scale_durations(const char *in, char *out, size_t len)
{
    int f = rdt_time_factor();
    size_t o = 0;
    for (const char *p = in; *p != '\0';) {
        if (p[0] == ':' && p[1] == ' ' && p[2] >= '0' && p[2] <= '9') {
            const char *q = p + 2;
            long long v = 0;
            while (*q >= '0' && *q <= '9')
                v = v * 10 + (*q++ - '0');
            size_t unit = q[0] == 'm' && q[1] == 's' ? 2 : (*q == 's' || *q == 'm' || *q == 'h');
            char end = q[unit];
            if (unit > 0 &&
                (end == '\0' || end == '\n' || end == ' ' || end == ',' || end == '}')) {
                int n = snprintf(out + o, len - o, ": %lld%.*s", v * f, (int)unit, q);
                if (n < 0 || (size_t)n >= len - o)
                    abort();
                o += (size_t)n;
                p = q + unit;
                continue;
            }
        }
        if (o + 1 >= len)
            abort();
        out[o++] = *p++;
    }
    out[o] = '\0';
    return out;
}

#endif
