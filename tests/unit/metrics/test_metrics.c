/* Histograms and the Prometheus text format. */
#include "cmocka_all.h"

#include <string.h>

#include "metrics/metrics.h"

static void test_histogram_buckets_and_quantiles(void **state)
{
    struct rd_hist h = {0};
    for (int i = 0; i < 90; i++)
        rd_hist_observe(&h, 0.0007); /* bucket le=0.001 */
    for (int i = 0; i < 10; i++)
        rd_hist_observe(&h, 0.2); /* bucket le=0.25 */
    rd_hist_observe(&h, 99);      /* +Inf */
    assert_int_equal(h.count, 101);
    assert_int_equal(h.inf, 1);
    double p50 = rd_hist_quantile(&h, 0.5);
    assert_true(p50 > 0.0005 && p50 <= 0.001);
    double p95 = rd_hist_quantile(&h, 0.95);
    assert_true(p95 > 0.1 && p95 <= 0.25);
    struct rd_hist empty = {0};
    assert_true(rd_hist_quantile(&empty, 0.99) == 0);
}

/* The last finite bound: what a quantile in +Inf is floored to. */
#define TOP 10.0

static void test_quantile_empty(void **state)
{
    struct rd_hist h = {0};
    const double qs[] = {0, 0.5, 0.99, 1};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        assert_true(rd_hist_quantile(&h, qs[i]) == 0);
        assert_false(rd_hist_quantile_capped(&h, qs[i]));
    }
}

static void test_quantile_interpolates_inside_a_bucket(void **state)
{
    struct rd_hist h = {0};
    for (int i = 0; i < 10; i++)
        rd_hist_observe(&h, 0.002); /* bucket (0.001, 0.0025] */
    /* Rank 5 of 10: half way through the bucket, whatever the values were. */
    assert_float_equal(rd_hist_quantile(&h, 0.5), 0.00175, 1e-12);
    /* Rank 10: the bucket's upper bound. */
    assert_float_equal(rd_hist_quantile(&h, 1), 0.0025, 1e-12);
    /* Rank 0: the bucket's lower bound (the first one that holds anything). */
    assert_float_equal(rd_hist_quantile(&h, 0), 0.001, 1e-12);
    assert_false(rd_hist_quantile_capped(&h, 1));

    /* The first bucket starts at 0. */
    struct rd_hist low = {0};
    for (int i = 0; i < 4; i++)
        rd_hist_observe(&low, 0.00001);
    assert_float_equal(rd_hist_quantile(&low, 0.5), 0.000025, 1e-12);
}

static void test_quantile_across_buckets(void **state)
{
    struct rd_hist h = {0};
    for (int i = 0; i < 90; i++)
        rd_hist_observe(&h, 0.0007); /* (0.0005, 0.001] */
    for (int i = 0; i < 10; i++)
        rd_hist_observe(&h, 0.2); /* (0.1, 0.25], with empty buckets between */
    assert_float_equal(rd_hist_quantile(&h, 0.5), 0.0005 + 0.0005 * 50 / 90, 1e-12);
    /* Rank 90 is the last observation of the first bucket: its upper bound,
     * not the lower bound of the next non-empty one. */
    assert_float_equal(rd_hist_quantile(&h, 0.9), 0.001, 1e-12);
    assert_float_equal(rd_hist_quantile(&h, 0.95), 0.1 + 0.15 * 5 / 10, 1e-12);
    assert_float_equal(rd_hist_quantile(&h, 1), 0.25, 1e-12);
    /* q outside 0-1 is clamped. */
    assert_float_equal(rd_hist_quantile(&h, 7), 0.25, 1e-12);
    assert_float_equal(rd_hist_quantile(&h, -1), 0.0005, 1e-12);
    assert_false(rd_hist_quantile_capped(&h, 7));
}

static void test_quantile_in_inf_is_floored_and_says_so(void **state)
{
    struct rd_hist h = {0};
    for (int i = 0; i < 99; i++)
        rd_hist_observe(&h, 0.2);
    rd_hist_observe(&h, 99); /* above every bound */
    assert_int_equal(h.inf, 1);
    /* Rank 99 is still in (0.1, 0.25]. */
    assert_float_equal(rd_hist_quantile(&h, 0.99), 0.25, 1e-12);
    assert_false(rd_hist_quantile_capped(&h, 0.99));
    /* Rank 99.5 and 100 are in +Inf: the last bound, flagged as a floor
     * (the observation was 99 s). */
    assert_true(rd_hist_quantile(&h, 0.995) == TOP);
    assert_true(rd_hist_quantile_capped(&h, 0.995));
    assert_true(rd_hist_quantile(&h, 1) == TOP);
    assert_true(rd_hist_quantile_capped(&h, 1));

    /* Everything above the last bound: every quantile is the floor. */
    struct rd_hist all = {0};
    for (int i = 0; i < 5; i++)
        rd_hist_observe(&all, 60);
    assert_true(rd_hist_quantile(&all, 0) == TOP);
    assert_true(rd_hist_quantile_capped(&all, 0));
    assert_true(rd_hist_quantile(&all, 0.5) == TOP);
    assert_true(rd_hist_quantile_capped(&all, 0.5));
}

/* An observation equal to the last bound is in its bucket (le is
 * inclusive), so a quantile there is interpolated, never capped. */
static void test_quantile_at_the_last_bound(void **state)
{
    struct rd_hist h = {0};
    for (int i = 0; i < 100; i++)
        rd_hist_observe(&h, TOP);
    assert_int_equal(h.inf, 0);
    assert_float_equal(rd_hist_quantile(&h, 0.99), 2.5 + 7.5 * 0.99, 1e-12);
    assert_false(rd_hist_quantile_capped(&h, 0.99));
    assert_true(rd_hist_quantile(&h, 1) == TOP);
    assert_false(rd_hist_quantile_capped(&h, 1));
}

/*
 * docs/benchmarks.md's detection run: /api/v1/faults/status said p99 9,700
 * ms over 200 failures. 9.7 s is 2.5 s + 96% of the (2.5 s, 10 s] bucket:
 * rank 198 of 200 falls there when 150 failures took at most 2.5 s and 50
 * between 2.5 and 10 s (the hang agents, about 4 s) -- an interpolation,
 * whatever those 50 took. Had the 50 taken a minute, the rank would have
 * been in +Inf and the answer exactly 10,000 ms, flagged as a floor.
 */
static void test_quantile_of_the_detection_benchmark(void **state)
{
    struct rd_hist h = {0};
    for (int i = 0; i < 150; i++)
        rd_hist_observe(&h, 0.8);
    for (int i = 0; i < 50; i++)
        rd_hist_observe(&h, 4.0);
    assert_int_equal((long long)(rd_hist_quantile(&h, 0.99) * 1000), 9700);
    assert_false(rd_hist_quantile_capped(&h, 0.99));

    struct rd_hist slow = {0};
    for (int i = 0; i < 150; i++)
        rd_hist_observe(&slow, 0.8);
    for (int i = 0; i < 50; i++)
        rd_hist_observe(&slow, 60.0);
    assert_int_equal((long long)(rd_hist_quantile(&slow, 0.99) * 1000), 10000);
    assert_true(rd_hist_quantile_capped(&slow, 0.99));
}

/*
 * The duration scale reaches past the thresholds the alert rules compare
 * with (deploy/prometheus-rules.yaml): a detection p99 of 40 s reads above
 * 30 s, where the latency scale could only say 10 s; a 6-minute recovery
 * reads above 5 minutes. Rendered, its buckets are the long bounds.
 */
static void test_duration_scale_reaches_past_the_rules(void **state)
{
    struct rd_hist h = {.bounds = rd_hist_bounds_long};
    for (int i = 0; i < 100; i++)
        rd_hist_observe(&h, 40);
    assert_int_equal(h.inf, 0);
    assert_float_equal(rd_hist_quantile(&h, 0.99), 30 + 15 * 0.99, 1e-9);
    assert_true(rd_hist_quantile(&h, 0.99) > 30);
    assert_false(rd_hist_quantile_capped(&h, 0.99));

    struct rd_hist latency = {0};
    for (int i = 0; i < 100; i++)
        rd_hist_observe(&latency, 40);
    assert_true(rd_hist_quantile(&latency, 0.99) == TOP); /* 10 s: never above 30 */

    struct rd_hist runs = {.bounds = rd_hist_bounds_long};
    for (int i = 0; i < 10; i++)
        rd_hist_observe(&runs, 360);
    assert_true(rd_hist_quantile(&runs, 0.5) > 300);
    rd_hist_observe(&runs, 7200);
    assert_true(rd_hist_quantile(&runs, 1) == 1800);
    assert_true(rd_hist_quantile_capped(&runs, 1));

    struct rd_mbuf b;
    rd_mbuf_init(&b);
    rd_metric_hist(&b, "r_seconds", "", &h);
    assert_int_equal(b.err, 0);
    assert_non_null(strstr(b.p, "r_seconds_bucket{le=\"0.1\"} 0\n"));
    assert_non_null(strstr(b.p, "r_seconds_bucket{le=\"30\"} 0\n"));
    assert_non_null(strstr(b.p, "r_seconds_bucket{le=\"45\"} 100\n"));
    assert_non_null(strstr(b.p, "r_seconds_bucket{le=\"1800\"} 100\n"));
    assert_null(strstr(b.p, "le=\"5e-05\""));
    rd_mbuf_free(&b);
}

static void test_text_format(void **state)
{
    struct rd_hist h = {0};
    rd_hist_observe(&h, 0.0007);
    rd_hist_observe(&h, 0.2);
    struct rd_mbuf b;
    rd_mbuf_init(&b);
    rd_metric_header(&b, "x_seconds", "histogram", "Help text.");
    rd_metric_hist(&b, "x_seconds", "route=\"r\"", &h);
    assert_int_equal(b.err, 0);
    assert_non_null(strstr(b.p, "# HELP x_seconds Help text.\n# TYPE x_seconds histogram\n"));
    assert_non_null(strstr(b.p, "x_seconds_bucket{route=\"r\",le=\"0.0005\"} 0\n"));
    assert_non_null(strstr(b.p, "x_seconds_bucket{route=\"r\",le=\"0.001\"} 1\n"));
    assert_non_null(strstr(b.p, "x_seconds_bucket{route=\"r\",le=\"0.25\"} 2\n"));
    assert_non_null(strstr(b.p, "x_seconds_bucket{route=\"r\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(b.p, "x_seconds_count{route=\"r\"} 2\n"));
    rd_mbuf_free(&b);

    /* Growth past the first chunk keeps every byte. */
    rd_mbuf_init(&b);
    for (int i = 0; i < 2000; i++)
        rd_mbuf_printf(&b, "line_%04d 1\n", i);
    assert_int_equal(b.len, 2000 * 12);
    assert_memory_equal(b.p + 1999 * 12, "line_1999 1\n", 12);
    rd_mbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram_buckets_and_quantiles),
        cmocka_unit_test(test_quantile_empty),
        cmocka_unit_test(test_quantile_interpolates_inside_a_bucket),
        cmocka_unit_test(test_quantile_across_buckets),
        cmocka_unit_test(test_quantile_in_inf_is_floored_and_says_so),
        cmocka_unit_test(test_quantile_at_the_last_bound),
        cmocka_unit_test(test_quantile_of_the_detection_benchmark),
        cmocka_unit_test(test_duration_scale_reaches_past_the_rules),
        cmocka_unit_test(test_text_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
