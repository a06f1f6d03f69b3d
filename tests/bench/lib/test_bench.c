/* The benchmarks' shared helpers (tests/bench/lib/bench.h). */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
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

static bool take_even(const char *arg, void *ctx)
{
    unsigned v;
    if (!rdb_parse_uint(arg, 0, 100, &v) || v % 2 != 0)
        return false;
    *(unsigned *)ctx = v;
    return true;
}

static void no_usage(FILE *f)
{
    (void)f;
}

static int parse(int argc, const char **argv, const struct rdb_opt *opts, void *ctx)
{
    return rdb_parse_opts(argc, (char **)argv, opts, ctx, no_usage);
}

/* Numbers in their range, strings, flags and options of the caller's own;
 * anything else is refused, and parsing again starts afresh. */
static void test_options(void **state)
{
    unsigned n = 7, even = 0;
    const char *s = "default";
    bool f = false;
    const struct rdb_opt opts[] = {
        {"n", .num = &n, .min = 1, .max = 10},
        {"s", .str = &s},
        {"f", .flag = &f},
        {"even", .fn = take_even},
        {NULL},
    };
    const char *ok[] = {"prog", "--n", "10", "--s=x", "--f", "--even", "4"};
    assert_int_equal(parse(7, ok, opts, &even), 0);
    assert_int_equal(n, 10);
    assert_string_equal(s, "x");
    assert_true(f);
    assert_int_equal(even, 4);
    const char *none[] = {"prog"};
    assert_int_equal(parse(1, none, opts, &even), 0);
    const char *range[] = {"prog", "--n", "11"};
    assert_int_equal(parse(3, range, opts, &even), -1);
    const char *odd[] = {"prog", "--even", "3"};
    assert_int_equal(parse(3, odd, opts, &even), -1);
    const char *unknown[] = {"prog", "--m", "1"};
    assert_int_equal(parse(3, unknown, opts, &even), -1);
    const char *missing[] = {"prog", "--n"};
    assert_int_equal(parse(2, missing, opts, &even), -1);
    const char *stray[] = {"prog", "--n", "2", "extra"};
    assert_int_equal(parse(4, stray, opts, &even), -1);
    assert_int_equal(n, 2); /* what came before it was taken */
}

static void test_histogram(void **state)
{
    static struct rdb_hist h, g;
    rdb_hist_init(&h, 50);
    assert_int_equal(rdb_hist_quantile(&h, 0.99), 0);
    for (int i = 1; i <= 100; i++)
        rdb_hist_add(&h, i * 100); /* 100 us .. 10 ms */
    rdb_hist_add(&h, -5);          /* as 0 */
    assert_int_equal(h.n, 101);
    assert_int_equal(h.max_us, 10000);
    assert_int_equal(rdb_hist_quantile(&h, 0), 0);
    assert_int_equal(rdb_hist_quantile(&h, 0.005), 50); /* the first, 0: slot 0's upper edge */
    assert_int_equal(rdb_hist_quantile(&h, 0.5), 5050); /* the 51st, 5000 us: slot 100 */
    assert_int_equal(rdb_hist_quantile(&h, 1), 10050);  /* the upper edge of 10000's slot */
    rdb_hist_init(&g, 50);
    rdb_hist_add(&g, (int64_t)50 * RDB_HIST_SLOTS * 3); /* beyond the last slot */
    rdb_hist_merge(&h, &g);
    assert_int_equal(h.n, 102);
    assert_int_equal(h.over, 1);
    assert_int_equal(rdb_hist_quantile(&h, 1), (int64_t)50 * RDB_HIST_SLOTS * 3); /* the max */
}

static size_t n_taken, n_dropped;

static void take(void *ctx, const struct rdb_assignment *a)
{
    assert_ptr_equal(ctx, &n_taken);
    assert_int_equal(rdb_task_index(a->task_id), 12 + n_taken);
    assert_int_equal(a->attempt, 2);
    assert_int_equal(a->version, n_taken == 0 ? 7 : 0); /* the second has no checkpoint */
    n_taken++;
}

static void drop(void *ctx, const char *task_id)
{
    assert_ptr_equal(ctx, &n_taken);
    assert_string_equal(task_id, "t-9");
    n_dropped++;
}

/* Task ids by index, a registration's epoch, a heartbeat's assignments. */
static void test_agent_answers(void **state)
{
    char id[40];
    rdb_task_id(12, id, sizeof(id));
    assert_string_equal(id, "00000000-0000-4000-8000-000000000012");
    assert_int_equal(rdb_task_index(id), 12);
    assert_int_equal(rdb_task_index("00000000-0000-4000-8000-00000000012"), UINT32_MAX);
    assert_int_equal(rdb_task_index("00000000-0000-4000-8000-00000000001x"), UINT32_MAX);
    assert_int_equal(rdb_task_index("10000000-0000-4000-8000-000000000012"), UINT32_MAX);
    assert_int_equal(rdb_task_index(NULL), UINT32_MAX);

    assert_int_equal(rdb_epoch_of(201, "{\"node_id\":\"a\",\"epoch\":3}"), 3);
    assert_int_equal(rdb_epoch_of(200, "{\"epoch\":3}"), 0);
    assert_int_equal(rdb_epoch_of(201, "not json"), 0);
    assert_int_equal(rdb_epoch_of(0, NULL), 0);

    rdb_heartbeat_answer("{\"assignments\":[],\"revoked\":[]}", take, drop, &n_taken);
    rdb_heartbeat_answer(NULL, take, drop, &n_taken);
    assert_int_equal(n_taken + n_dropped, 0);
    rdb_heartbeat_answer("{\"assignments\":[{\"task_id\":\"00000000-0000-4000-8000-000000000012\","
                         "\"attempt\":2,\"checkpoint\":{\"version\":7}},{\"task_id\":"
                         "\"00000000-0000-4000-8000-000000000013\",\"attempt\":2}],"
                         "\"revoked\":[\"t-9\"]}",
                         take, drop, &n_taken);
    assert_int_equal(n_taken, 2);
    assert_int_equal(n_dropped, 1);
}

/* A handed task takes its older attempt's slot, else a free one, else a
 * new one; the attempt held (or an older one) again changes nothing. */
static void test_hold_slots(void **state)
{
    struct rdb_hold h[3] = {{0}};
    unsigned n = 0;
    assert_int_equal(rdb_hold_slot(h, &n, 3, 7, 1), 0);
    h[0] = (struct rdb_hold){.task = 7, .attempt = 1, .active = true};
    assert_int_equal(n, 1);
    assert_int_equal(rdb_hold_slot(h, &n, 3, 7, 1), -1);
    assert_int_equal(rdb_hold_slot(h, &n, 3, 7, 2), 0); /* a newer attempt of it */
    assert_int_equal(rdb_hold_slot(h, &n, 3, 8, 1), 1);
    h[1] = (struct rdb_hold){.task = 8, .attempt = 1, .active = true};
    assert_int_equal(rdb_hold_slot(h, &n, 3, 9, 1), 2);
    h[2] = (struct rdb_hold){.task = 9, .attempt = 1, .in_flight = true}; /* dropped, busy */
    assert_int_equal(n, 3);
    assert_int_equal(rdb_hold_slot(h, &n, 3, 10, 1), -2); /* full */
    h[1].active = false;
    assert_int_equal(rdb_hold_slot(h, &n, 3, 10, 1), 1); /* a free slot again */
    assert_int_equal(n, 3);
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

/* Drives `multi` until opening `o` finishes (5 s at most): its rdb_done,
 * the loop's turns meanwhile and how long it took. */
static bool drive_opening(CURLM *multi, struct rdb_h2_opening *o, struct rdb_done *out, int *turns,
                          int64_t *ms)
{
    int64_t t0 = rdt_now_ms();
    *turns = 0;
    for (int running = 1; rdt_now_ms() < t0 + 5000; (*turns)++) {
        curl_multi_perform(multi, &running);
        struct rdb_done d;
        while (rdb_next_done(multi, &d)) {
            assert_ptr_equal(d.easy, o->easy);
            *out = d;
            *ms = rdt_now_ms() - t0;
            return true;
        }
        curl_multi_poll(multi, NULL, 0, 20, NULL);
    }
    return false;
}

/* Opening a connection without waiting (the scale load generator's
 * reconnection): an answering server opens one HTTP/2 connection; one that
 * accepts and never answers gives the caller's loop its turns and fails
 * after the timeout (not the 5 s of rdb_h2_open); a refused port fails at
 * once; an opening under way can be cancelled, and the multi handle opens
 * again afterwards. */
static void test_h2_opening(void **state)
{
    (void)state;
    assert_int_equal(rdb_init(), 0);
    struct rdt_httpd *s = rdt_httpd_start(3);
    assert_non_null(s);
    assert_int_equal(rdt_httpd_set(s, 1, RDT_EP_HANG, 0), 0);
    assert_int_equal(rdt_httpd_set(s, 2, RDT_EP_DOWN, 0), 0);
    char ok[64], hang[64], down[64];
    snprintf(ok, sizeof(ok), "http://127.0.0.1:%u", rdt_httpd_port(s, 0));
    snprintf(hang, sizeof(hang), "http://127.0.0.1:%u", rdt_httpd_port(s, 1));
    snprintf(down, sizeof(down), "http://127.0.0.1:%u", rdt_httpd_port(s, 2));
    CURLM *multi = rdb_h2_multi(1);
    assert_non_null(multi);
    struct rdb_h2_opening o = {0};
    struct rdb_done d;
    int turns;
    int64_t ms;

    assert_int_equal(rdb_h2_opening_start(&o, multi, ok, 2000), 0);
    assert_true(drive_opening(multi, &o, &d, &turns, &ms));
    assert_true(rdb_h2_opening_done(&o, &d));
    assert_null(o.easy);
    assert_int_equal(rdt_httpd_hits(s, 0), 1);

    assert_int_equal(rdb_h2_opening_start(&o, multi, hang, 300), 0);
    assert_true(drive_opening(multi, &o, &d, &turns, &ms));
    assert_false(rdb_h2_opening_done(&o, &d));
    assert_null(o.easy);
    assert_int_equal(d.rc, CURLE_OPERATION_TIMEDOUT);
    assert_true(ms >= 290 && ms < 2000);
    assert_true(turns >= 5); /* the loop kept running while it waited */

    assert_int_equal(rdb_h2_opening_start(&o, multi, down, 2000), 0);
    assert_true(drive_opening(multi, &o, &d, &turns, &ms));
    assert_false(rdb_h2_opening_done(&o, &d));
    assert_int_equal(d.rc, CURLE_COULDNT_CONNECT);
    assert_true(ms < 1000);

    assert_int_equal(rdb_h2_opening_start(&o, multi, hang, 2000), 0);
    int running = 0;
    curl_multi_perform(multi, &running);
    assert_int_equal(running, 1);
    rdb_h2_opening_cancel(&o, multi);
    assert_null(o.easy);
    curl_multi_perform(multi, &running);
    assert_int_equal(running, 0);
    rdb_h2_opening_cancel(&o, multi); /* none under way: nothing */

    unsigned hits = rdt_httpd_hits(s, 0);
    assert_int_equal(rdb_h2_opening_start(&o, multi, ok, 2000), 0);
    assert_true(drive_opening(multi, &o, &d, &turns, &ms));
    assert_true(rdb_h2_opening_done(&o, &d));
    assert_int_equal(rdt_httpd_hits(s, 0), hits + 1);
    curl_multi_cleanup(multi);
    rdt_httpd_stop(s);
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

    /* A blocking POST carries its body; a refused port is no answer. */
    struct rdb_buf bf = {0};
    char path[96];
    snprintf(path, sizeof(path), "%s/api/v1/x", up);
    assert_int_equal(rdb_request(e, "POST", path, "{\"a\":1}", NULL, 1000, &bf), 200);
    assert_true(rdt_httpd_bodies(s, 0) >= 1);
    char *last = rdt_httpd_body(s, 0, rdt_httpd_bodies(s, 0) - 1);
    assert_string_equal(last, "{\"a\":1}");
    free(last);
    assert_int_equal(rdb_request(e, "GET", url, NULL, NULL, 1000, &bf), -1);
    rdb_buf_free(&bf);
    curl_easy_cleanup(e);

    /* Transfers of a multi handle come back finished, each once, with
     * their handle's private pointer; a refused one with status 0. */
    multi = rdb_h2_multi(1);
    struct rdb_buf r1 = {0}, r2 = {0};
    CURL *ok = rdb_easy_new(rdb_h2_version(), NULL, 2000, &r1, &r1);
    CURL *refused = rdb_easy_new((long)CURL_HTTP_VERSION_1_1, NULL, 2000, &r2, &r2);
    curl_easy_setopt(ok, CURLOPT_URL, path);
    curl_easy_setopt(refused, CURLOPT_URL, url);
    curl_multi_add_handle(multi, ok);
    curl_multi_add_handle(multi, refused);
    struct rdb_done d;
    int done = 0, running = 1;
    for (int64_t end = rdt_now_ms() + 5000; done < 2 && rdt_now_ms() < end;) {
        curl_multi_perform(multi, &running);
        while (rdb_next_done(multi, &d)) {
            done++;
            if (d.priv == &r1) {
                assert_ptr_equal(d.easy, ok);
                assert_int_equal(d.rc, CURLE_OK);
                assert_int_equal(d.status, 200);
                assert_true(d.us > 0);
            } else {
                assert_ptr_equal(d.priv, &r2);
                assert_int_not_equal(d.rc, CURLE_OK);
                assert_int_equal(d.status, 0);
            }
        }
        curl_multi_poll(multi, NULL, 0, 50, NULL);
    }
    assert_int_equal(done, 2);
    assert_false(rdb_next_done(multi, &d));
    curl_easy_cleanup(ok);
    curl_easy_cleanup(refused);
    curl_multi_cleanup(multi);
    rdb_buf_free(&r1);
    rdb_buf_free(&r2);
    rdt_httpd_stop(s);
    rdb_end();
}

/* rdb_not_leader reads a follower's refusals (cut short too); rdb_leader
 * moves to the leader named, else to the next replica at most once per
 * RDB_LEADER_RETRY_MS, ignores refusals of a generation left already, and
 * counts the time without a leader; rdb_rebase_url moves a request. */
static void test_leader(void **state)
{
    (void)state;
    char name[RDB_URL_MAX];
    const char *redirect =
        "{\"error\":{\"code\":\"not_leader\",\"message\":\"this replica is a follower: the "
        "leader is replica 2 at http://127.0.0.1:8082\",\"details\":{\"leader\":"
        "\"http://127.0.0.1:8082/\",\"leader_id\":2}}}";
    assert_true(rdb_not_leader(307, redirect, name, sizeof(name)));
    assert_string_equal(name, "http://127.0.0.1:8082");
    assert_true(rdb_not_leader(307, NULL, name, sizeof(name)));
    assert_string_equal(name, "");
    assert_true(rdb_not_leader(503, "{\"error\":{\"code\":\"not_leader\",\"details\":{}}}", name,
                               sizeof(name)));
    assert_string_equal(name, "");
    assert_true(rdb_not_leader(503, "{\"error\":{\"code\":\"no_quorum\"}}", name, sizeof(name)));
    /* cut short in the middle of the leader's URL: none named */
    assert_true(rdb_not_leader(503,
                               "{\"error\":{\"code\":\"not_leader\",\"details\":{\"leader\": "
                               "\"http://127.0",
                               name, sizeof(name)));
    assert_string_equal(name, "");
    assert_false(rdb_not_leader(503, "{\"error\":{\"code\":\"not_ready\"}}", name, sizeof(name)));
    assert_false(rdb_not_leader(200, redirect, name, sizeof(name)));
    assert_false(rdb_not_leader(409, "{\"error\":{\"code\":\"fenced\"}}", name, sizeof(name)));
    assert_true(rdb_not_leader(307, redirect, name, 8)); /* no room: none named */
    assert_string_equal(name, "");

    struct rdb_leader l;
    assert_int_equal(rdb_leader_init(&l, "", 0), -1);
    rdb_leader_free(&l);
    assert_int_equal(rdb_leader_init(&l, "http://a:1,,http://b:2", 0), -1);
    rdb_leader_free(&l);
    assert_int_equal(rdb_leader_init(&l, "http://a:1/,http://b:2,http://c:3", 1000), 0);
    char url[RDB_URL_MAX];
    assert_int_equal(rdb_leader_get(&l, url, sizeof(url)), 1);
    assert_string_equal(url, "http://a:1");
    rdb_leader_ok(&l, 1100);
    /* a follower names the leader: there at once */
    assert_true(rdb_leader_refused(&l, 1, "http://c:3", 1200));
    assert_int_equal(rdb_leader_get(&l, url, sizeof(url)), 2);
    assert_string_equal(url, "http://c:3");
    /* the other refusals of generation 1 change nothing */
    assert_false(rdb_leader_refused(&l, 1, "http://b:2", 1201));
    assert_false(rdb_leader_refused(&l, 1, NULL, 1500));
    assert_true(rdb_leader_failed(&l, 1, CURLE_COULDNT_CONNECT, 1500)); /* send it again */
    assert_int_equal(rdb_leader_gen(&l), 2);
    /* one timeout on a leader that answered lately changes nothing */
    rdb_leader_ok(&l, 1300);
    assert_false(rdb_leader_failed(&l, 2, CURLE_OPERATION_TIMEDOUT, 1400));
    assert_int_equal(rdb_leader_gen(&l), 2);
    /* nobody named during an election: the next replica, not more than
     * once per RDB_LEADER_RETRY_MS */
    assert_true(rdb_leader_refused(&l, 2, "", 2000));
    assert_int_equal(rdb_leader_get(&l, url, sizeof(url)), 3);
    assert_string_equal(url, "http://a:1");
    assert_false(rdb_leader_refused(&l, 3, NULL, 2000 + RDB_LEADER_RETRY_MS - 1));
    assert_true(rdb_leader_failed(&l, 3, CURLE_COULDNT_CONNECT, 2000 + RDB_LEADER_RETRY_MS));
    assert_int_equal(rdb_leader_get(&l, url, sizeof(url)), 4);
    assert_string_equal(url, "http://b:2");
    /* a follower naming the replica just found unreachable (its old
     * leader): not taken back for RDB_LEADER_DEAD_MS */
    assert_false(rdb_leader_refused(&l, 4, "http://a:1", 2000 + RDB_LEADER_RETRY_MS + 10));
    assert_int_equal(rdb_leader_gen(&l), 4);
    /* a replica naming itself while it refuses: stays (sent again later) */
    assert_false(rdb_leader_refused(&l, 4, "http://b:2", 3000));
    /* no answer for RDB_LEADER_STALL_MS: a timeout moves on */
    assert_true(rdb_leader_failed(&l, 4, CURLE_OPERATION_TIMEDOUT, 1300 + RDB_LEADER_STALL_MS));
    assert_int_equal(rdb_leader_get(&l, url, sizeof(url)), 5);
    assert_string_equal(url, "http://c:3");
    rdb_leader_ok(&l, 4000);
    assert_int_equal(l.switches, 4);
    assert_int_equal(l.named, 1);
    assert_int_equal(l.tried, 3);
    /* outages: 1200-1300 and 2000-4000 */
    assert_int_equal(l.outages, 2);
    assert_int_equal(l.leaderless_ms, 2100);
    assert_int_equal(l.longest_ms, 2000);
    /* a leader outside the list, then the next of the list is its first */
    assert_true(rdb_leader_refused(&l, 5, "http://d:4", 5000));
    assert_int_equal(l.idx, -1);
    assert_true(rdb_leader_refused(&l, 6, NULL, 6000));
    assert_int_equal(rdb_leader_get(&l, url, sizeof(url)), 7);
    assert_string_equal(url, "http://a:1");
    rdb_leader_free(&l);

    char u[64] = "http://a:1/api/v1/nodes/x/heartbeat";
    assert_int_equal(rdb_rebase_url(u, sizeof(u), "http://127.0.0.1:8082"), 0);
    assert_string_equal(u, "http://127.0.0.1:8082/api/v1/nodes/x/heartbeat");
    char h[32] = "http://a:1/health";
    assert_int_equal(rdb_rebase_url(h, sizeof(h), "http://b:22"), 0);
    assert_string_equal(h, "http://b:22/health");
    assert_int_equal(rdb_rebase_url(h, sizeof(h), "http://a-very-long-host-name:2"), -1);
    assert_string_equal(h, "http://b:22/health");
}

/* Burns this thread's CPU until the process used `s` seconds more than at `from`. */
static void burn_cpu(double from, double s)
{
    volatile uint64_t x = 0;
    double user, sys;
    do {
        for (int i = 0; i < 1000000; i++)
            x += (uint64_t)i;
        rdb_self_cpu(&user, &sys);
    } while (user + sys - from < s);
}

/* The CPU from a mark on: what the process used since, not before. */
static void test_cpu_since(void **state)
{
    (void)state;
    double user, sys;
    rdb_self_cpu(&user, &sys);
    burn_cpu(user + sys, 0.05); /* before the mark */
    struct rdb_cpu_mark m = {0};
    rdb_cpu_mark(&m);
    assert_true(m.at_ms > 0);
    burn_cpu(m.user_s + m.system_s, 0.05);
    struct rdb_cpu_used u = rdb_cpu_since(&m);
    rdb_self_cpu(&user, &sys);
    assert_true(u.user_s + u.system_s >= 0.05);
    assert_true(u.user_s + u.system_s <= user + sys - 0.05); /* not what came before */
    assert_true(u.secs >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_uint),   cmocka_unit_test(test_times),
        cmocka_unit_test(test_statistics),   cmocka_unit_test(test_random_is_reproducible),
        cmocka_unit_test(test_buffers),      cmocka_unit_test(test_sleep_ends_on_interrupt),
        cmocka_unit_test(test_http_helpers), cmocka_unit_test(test_h2_opening),
        cmocka_unit_test(test_due_queue),    cmocka_unit_test(test_options),
        cmocka_unit_test(test_histogram),    cmocka_unit_test(test_agent_answers),
        cmocka_unit_test(test_hold_slots),   cmocka_unit_test(test_leader),
        cmocka_unit_test(test_cpu_since),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
