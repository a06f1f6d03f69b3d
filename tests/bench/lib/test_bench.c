/* The benchmarks' shared helpers (tests/bench/lib/bench.h). */
#include "cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "harness.h"
#include "httpd.h"

static void test_parse_uint(void **state)
{
    unsigned v = 7;
    assert_true(rdb_parse_uint("42", 1, 100, &v));
    assert_int_equal(v, 42);
    assert_true(rdb_parse_uint("1", 1, 100, &v));
    assert_true(rdb_parse_uint("100", 1, 100, &v));
    assert_int_equal(v, 100);
    v = 7;
    assert_false(rdb_parse_uint("0", 1, 100, &v));
    assert_false(rdb_parse_uint("101", 1, 100, &v));
    assert_false(rdb_parse_uint("", 0, 100, &v));
    assert_false(rdb_parse_uint("12x", 0, 100, &v));
    assert_false(rdb_parse_uint("-1", 0, 100, &v));
    assert_false(rdb_parse_uint("99999999999999999999999", 0, 4294967295u, &v));
    assert_int_equal(v, 7); /* untouched on failure */
    assert_true(rdb_parse_uint("4294967295", 1, 4294967295u, &v));
    assert_int_equal(v, 4294967295u);
}

static void test_due_queue(void **state)
{
    struct rdb_dueq q;
    struct rdb_due d = {0};
    assert_int_equal(rdb_dueq_init(&q, 64), 0);
    assert_false(rdb_dueq_pop_due(&q, 1000, &d)); /* empty */
    uint64_t rng = rdb_seed(7);
    for (unsigned i = 0; i < 64; i++)
        assert_true(rdb_dueq_push(&q, (int64_t)rdb_uniform(&rng, 0, 500), i));
    assert_false(rdb_dueq_push(&q, 1, 64)); /* full */
    /* Nothing is taken before it is due; then in due order, each once. */
    assert_false(rdb_dueq_pop_due(&q, -1, &d));
    assert_int_equal(q.n, 64);
    int64_t last = -1, first = d.due;
    bool seen[64] = {false};
    for (unsigned k = 0; k < 64; k++) {
        assert_true(rdb_dueq_pop_due(&q, 500, &d));
        assert_true(d.due >= last);
        assert_false(seen[d.idx]);
        seen[d.idx] = true;
        last = d.due;
    }
    assert_true(first <= last);
    assert_false(rdb_dueq_pop_due(&q, 500, &d));
    assert_true(rdb_dueq_push(&q, 300, 9));
    assert_false(rdb_dueq_pop_due(&q, 299, &d));
    assert_int_equal(d.idx, 9); /* the earliest, left in place */
    assert_true(rdb_dueq_pop_due(&q, 300, &d));
    rdb_dueq_free(&q);
}

static void test_times(void **state)
{
    int64_t ms = 0;
    /* 2026-11-24T03:04:05Z is 1795489445 s after the epoch. */
    assert_int_equal(rdb_parse_time("2026-11-24T03:04:05.123Z", &ms), 0);
    assert_int_equal(ms, 1795489445123LL);
    assert_int_equal(rdb_parse_time("2026-11-24T03:04:05Z", &ms), 0);
    assert_int_equal(ms, 1795489445000LL);
    assert_int_equal(rdb_parse_time("2026-11-24T03:04:05.1Z", &ms), 0);
    assert_int_equal(ms, 1795489445100LL);
    assert_int_equal(rdb_parse_time("2026-11-24T03:04:05.987654Z", &ms), 0);
    assert_int_equal(ms, 1795489445987LL); /* cut, not rounded */
    ms = 1;
    assert_int_equal(rdb_parse_time("2026-11-24T03:04:05.123", &ms), -1);
    assert_int_equal(rdb_parse_time("2026-11-24 03:04:05Z", &ms), -1);
    assert_int_equal(rdb_parse_time(NULL, &ms), -1);
    assert_int_equal(ms, 1);

    char buf[32];
    rdb_format_time(1795489445007LL, buf, sizeof(buf));
    assert_string_equal(buf, "2026-11-24T03:04:05.007Z");
    assert_true(rdt_is_rfc3339_utc(buf));
    assert_int_equal(rdb_parse_time(buf, &ms), 0);
    assert_int_equal(ms, 1795489445007LL);
}

static void test_statistics(void **state)
{
    int64_t v[100];
    for (int i = 0; i < 100; i++)
        v[i] = 100 - i; /* 100 .. 1, unsorted */
    struct rdb_lat s = rdb_lat_of(v, 100, 120);
    assert_int_equal(s.n, 100);
    assert_int_equal(s.of, 120);
    assert_int_equal(s.p50, 50); /* nearest rank: the 50th of 100 */
    assert_int_equal(s.p99, 99);
    assert_int_equal(s.max, 100);
    assert_int_equal(v[0], 1); /* sorted in place */
    assert_int_equal(rdb_quantile(v, 100, 0), 1);
    assert_int_equal(rdb_quantile(v, 100, 1), 100);
    assert_int_equal(rdb_quantile(v, 100, 0.991), 100);

    int64_t one = 42;
    s = rdb_lat_of(&one, 1, 1);
    assert_int_equal(s.p50, 42);
    assert_int_equal(s.p99, 42);
    s = rdb_lat_of(NULL, 0, 5);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.of, 5);
    assert_int_equal(s.p99, 0);
    assert_int_equal(rdb_quantile(NULL, 0, 0.5), 0);
}

static void test_random_is_reproducible(void **state)
{
    uint64_t a = rdb_seed(42), b = rdb_seed(42), c = rdb_seed(43);
    bool differs = false;
    for (int i = 0; i < 1000; i++) {
        double x = rdb_uniform(&a, -100, 100);
        assert_true(x >= -100 && x < 100);
        assert_true(x == rdb_uniform(&b, -100, 100));
        differs |= x != rdb_uniform(&c, -100, 100);
        int64_t gap = rdb_jittered_ms(&a, 500, 100);
        assert_true(gap >= 400 && gap <= 600);
        rdb_jittered_ms(&b, 500, 100);
    }
    assert_true(differs);
    assert_int_not_equal(rdb_seed(0), 0);
}

static void test_buffers(void **state)
{
    char small[8];
    struct rdb_buf f;
    rdb_buf_fixed(&f, small, sizeof(small));
    assert_int_equal(rdb_buf_write("abcd", 1, 4, &f), 4);
    assert_int_equal(rdb_buf_write("efghij", 2, 3, &f), 6); /* all taken, the rest dropped */
    assert_string_equal(f.p, "abcdefg");
    rdb_buf_clear(&f);
    assert_string_equal(small, "");
    rdb_buf_free(&f);
    assert_true(f.p == small);

    struct rdb_buf g = {0};
    char chunk[700];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 10; i++)
        assert_int_equal(rdb_buf_write(chunk, 1, sizeof(chunk), &g), sizeof(chunk));
    assert_int_equal(g.len, 7000);
    assert_int_equal(strlen(g.p), 7000);
    rdb_buf_clear(&g);
    assert_int_equal(g.len, 0);
    assert_string_equal(g.p, "");
    rdb_buf_free(&g);
    assert_null(g.p);
}

/* Once interrupted, sleeping returns at once instead of after 60 s. */
static void test_sleep_ends_on_interrupt(void **state)
{
    int64_t t0 = rdt_now_ms();
    rdb_sleep_ms(20);
    assert_true(rdt_now_ms() - t0 >= 20);
    rdb_interrupted = 1;
    t0 = rdt_now_ms();
    rdb_sleep_ms(60000);
    rdb_sleep_until_ns(rdb_now_ns() + 60000000000LL);
    assert_true(rdt_now_ms() - t0 < 5000);
    rdb_interrupted = 0;
}

/* Against a real h2o server (rdt_httpd): rdb_h2_open's connections all speak
 * HTTP/2 and a refused port opens none; rdb_health reads a 200 JSON answer
 * (no role in it: "?") and fails on a refused port; rdb_find_leader finds
 * no leader among them and gives up after one round with no time left. */
static void test_http_helpers(void **state)
{
    assert_int_equal(rdb_init(), 0);
    struct rdt_httpd *s = rdt_httpd_start(2);
    assert_non_null(s);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", rdt_httpd_port(s, 0));
    CURLM *multi = rdb_h2_multi(3);
    assert_non_null(multi);
    assert_int_equal(rdb_h2_open(multi, url, rdb_h2_conns(3)), rdb_h2_conns(3));
    assert_int_equal(rdt_httpd_hits(s, 0), rdb_h2_conns(3));

    assert_int_equal(rdt_httpd_set(s, 1, RDT_EP_DOWN, 0), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", rdt_httpd_port(s, 1));
    assert_int_equal(rdb_h2_open(multi, url, 1), 0);
    curl_multi_cleanup(multi);

    char up[64];
    snprintf(up, sizeof(up), "http://127.0.0.1:%u", rdt_httpd_port(s, 0));
    CURL *e = curl_easy_init();
    struct rdb_health h;
    assert_int_equal(rdb_health(e, up, 1000, &h), 0);
    assert_string_equal(h.role, "?");
    assert_int_equal(rdb_health(e, url, 1000, &h), -1);
    const char *urls[] = {up, url};
    assert_int_equal(rdb_find_leader(e, urls, 2, 1000, 0, &h), -1);
    curl_easy_cleanup(e);
    rdt_httpd_stop(s);
    rdb_end();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_uint),   cmocka_unit_test(test_times),
        cmocka_unit_test(test_statistics),   cmocka_unit_test(test_random_is_reproducible),
        cmocka_unit_test(test_buffers),      cmocka_unit_test(test_sleep_ends_on_interrupt),
        cmocka_unit_test(test_http_helpers), cmocka_unit_test(test_due_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
