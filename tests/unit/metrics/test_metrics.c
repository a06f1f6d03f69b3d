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
        cmocka_unit_test(test_text_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
