/*
 * Whether a loop is saturated (common/busy.c): from its idle time over
 * stretches of at least 50 ms, on at less than half idle, off at three
 * quarters idle or more, never without an idle time measured.
 */
#include "cmocka_all.h"

#include "common/busy.h"

#define MS 1000000ull

/* A stretch of `ms` milliseconds in which the loop idled `idle_ms`. */
struct clock {
    uint64_t now, idle;
};

static bool stretch(struct rd_busy *b, struct clock *c, uint64_t ms, uint64_t idle_ms)
{
    c->now += ms * MS;
    c->idle += idle_ms * MS;
    return rd_busy_update(b, c->now, c->idle);
}

static void test_thresholds_and_hysteresis(void **state)
{
    (void)state;
    struct rd_busy b = {0};
    struct clock c = {.now = 1000 * MS, .idle = 1};
    assert_false(rd_busy_update(&b, c.now, c.idle)); /* the first measure: no stretch yet */
    assert_false(stretch(&b, &c, 100, 50));          /* half the time idle: not yet */
    assert_true(stretch(&b, &c, 100, 45));           /* 45%: saturated */
    assert_true(stretch(&b, &c, 100, 60));           /* 60%: still (hysteresis) */
    assert_true(stretch(&b, &c, 100, 74));
    assert_false(stretch(&b, &c, 100, 75)); /* three quarters idle: no more */
    assert_false(stretch(&b, &c, 100, 60)); /* and 60% does not bring it back */
    assert_true(stretch(&b, &c, 100, 0));
}

/* Within a stretch shorter than 50 ms the last answer stands; the stretch
 * then runs from the last measure, however long. */
static void test_short_stretches_keep_the_answer(void **state)
{
    (void)state;
    struct rd_busy b = {0};
    struct clock c = {.now = 1000 * MS, .idle = 1};
    rd_busy_update(&b, c.now, c.idle);
    assert_true(stretch(&b, &c, 60, 0));
    assert_true(stretch(&b, &c, 20, 20)); /* all idle, but only 20 ms: kept */
    assert_true(stretch(&b, &c, 20, 20)); /* 40 ms */
    /* 70 ms since the last measure, 60 of them idle: no more. */
    assert_false(stretch(&b, &c, 30, 20));
    /* A quiet second, then a busy 50 ms: the quiet second counts. */
    assert_false(stretch(&b, &c, 1000, 1000));
    assert_true(stretch(&b, &c, 50, 20));
}

/* A loop whose idle time is not measured (uv_metrics_idle_time gives 0) is
 * never saturated, nor is a clock that went wrong (more idle than time). */
static void test_no_idle_time_measured(void **state)
{
    (void)state;
    struct rd_busy b = {0};
    for (uint64_t t = 1; t < 20; t++)
        assert_false(rd_busy_update(&b, t * 100 * MS, 0));
    struct clock c = {.now = 5000 * MS, .idle = 1};
    rd_busy_update(&b, c.now, c.idle);
    assert_true(stretch(&b, &c, 100, 0));
    assert_false(stretch(&b, &c, 100, 200));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thresholds_and_hysteresis),
        cmocka_unit_test(test_short_stretches_keep_the_answer),
        cmocka_unit_test(test_no_idle_time_measured),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
