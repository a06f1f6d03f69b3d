/* Shared helpers: the hash map, times, ids, error names. */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/map.h"
#include "common/util.h"
#include "recoveryd/error.h"

static void test_map_put_get_del_grow(void **state)
{
    struct rd_map m;
    rd_map_init(&m);
    enum { N = 10000 };
    static char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        assert_int_equal(rd_map_put(&m, keys[i], strlen(keys[i]), &keys[i]), 0);
    }
    assert_int_equal(m.len, N);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(rd_map_get(&m, keys[i], strlen(keys[i])), &keys[i]);
    /* Replace keeps the count. */
    static int other;
    assert_int_equal(rd_map_put(&m, "k7", 2, &other), 0);
    assert_int_equal(m.len, N);
    assert_ptr_equal(rd_map_get(&m, "k7", 2), &other);
    /* Delete and re-insert through tombstones, many times over. */
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < N; i += 3)
            assert_non_null(rd_map_del(&m, keys[i], strlen(keys[i])));
        for (int i = 0; i < N; i += 3)
            assert_null(rd_map_get(&m, keys[i], strlen(keys[i])));
        for (int i = 0; i < N; i += 3)
            assert_int_equal(rd_map_put(&m, keys[i], strlen(keys[i]), &keys[i]), 0);
    }
    assert_int_equal(m.len, N);
    assert_null(rd_map_get(&m, "k", 1));
    assert_null(rd_map_get(&m, "k1x", 3));
    assert_null(rd_map_del(&m, "absent", 6));
    rd_map_free(&m);
}

static void test_time_format_and_parse(void **state)
{
    char buf[RD_TIME_STRLEN];
    rd_time_format(1764000000123LL, buf);
    assert_string_equal(buf, "2025-11-24T16:00:00.123Z");
    int64_t ms;
    assert_int_equal(rd_time_parse(buf, &ms), 0);
    assert_int_equal(ms, 1764000000123LL);
    assert_int_equal(rd_time_parse("2025-11-24T17:00:00+01:00", &ms), 0);
    assert_int_equal(ms, 1764000000000LL);
    assert_int_equal(rd_time_parse("2025-11-24T16:00:00.5Z", &ms), 0);
    assert_int_equal(ms, 1764000000500LL);
    assert_int_equal(rd_time_parse("2025-11-24 16:00:00Z", &ms), RD_EPARSE);
    assert_int_equal(rd_time_parse("2025-11-24T16:00:00", &ms), RD_EPARSE);
    assert_int_equal(rd_time_parse("2025-11-24T16:00:00.Z", &ms), RD_EPARSE);
    assert_int_equal(rd_time_parse("2025-11-24T16:00:00Zjunk", &ms), RD_EPARSE);
}

static void test_node_ids_and_uuids(void **state)
{
    assert_true(rd_node_id_valid("agent-1.eu:9_x", 14));
    assert_false(rd_node_id_valid("", 0));
    assert_false(rd_node_id_valid("a/b", 3));
    assert_false(rd_node_id_valid("a b", 3));
    assert_false(rd_node_id_valid("\xc3\xa9", 2));
    char longid[300];
    memset(longid, 'a', sizeof(longid));
    assert_true(rd_node_id_valid(longid, 255));
    assert_false(rd_node_id_valid(longid, 256));

    char u1[RD_UUID_STRLEN], u2[RD_UUID_STRLEN];
    assert_int_equal(rd_uuid_v4(u1), 0);
    assert_int_equal(rd_uuid_v4(u2), 0);
    assert_true(rd_uuid_valid(u1));
    assert_string_not_equal(u1, u2);
    assert_int_equal(u1[14], '4');
    assert_false(rd_uuid_valid("not-a-uuid"));
    assert_false(rd_uuid_valid("123e4567-e89b-12d3-a456-42661417400g"));
    assert_true(rd_uuid_valid("123e4567-e89b-12d3-a456-426614174000"));
}

static void test_error_table(void **state)
{
    assert_string_equal(rd_err_name(RD_EFENCED), "RD_EFENCED");
    assert_string_equal(rd_strerror(RD_EFENCED), "stale fencing token");
    assert_string_equal(rd_err_name(0), "RD_OK");
    assert_string_equal(rd_err_name(-999), "RD_UNKNOWN");
    assert_string_equal(rd_strerror(-999), "unknown error");
}

static void test_log_levels_and_quoting(void **state)
{
    enum rd_log_level l;
    assert_int_equal(rd_log_level_parse("warn", &l), 0);
    assert_int_equal(l, RD_LOG_WARN);
    assert_int_equal(rd_log_level_parse("loud", &l), RD_EINVAL);
    char buf[64];
    assert_string_equal(rd_log_quote(buf, sizeof(buf), "plain"), "plain");
    assert_string_equal(rd_log_quote(buf, sizeof(buf), "two words"), "\"two words\"");
    assert_string_equal(rd_log_quote(buf, sizeof(buf), "a\"b\nc"), "\"a\\\"b\\nc\"");
    assert_string_equal(rd_log_quote(buf, sizeof(buf), ""), "\"\"");
}

/* An array dropped from the front: it grows while full of live elements,
 * and slides its live part down (keeping it in order, never growing) once
 * half of it is space left at the front. */
static void test_array_room_slides_or_grows(void **state)
{
    (void)state;
    int *a = NULL;
    size_t head = 0, n = 0, cap = 0;
    for (int i = 0; i < 4; i++) {
        a = rd_array_room(a, sizeof(*a), &head, n, &cap, 4);
        assert_non_null(a);
        a[head + n++] = i;
    }
    assert_int_equal(cap, 4);
    a = rd_array_room(a, sizeof(*a), &head, n, &cap, 4); /* full, nothing dropped: grows */
    assert_int_equal(cap, 8);
    for (int i = 4; i < 8; i++)
        a[head + n++] = i;
    head += 5, n -= 5; /* 0..4 dropped: 5, 6, 7 left at the end */
    a = rd_array_room(a, sizeof(*a), &head, n, &cap, 4);
    assert_int_equal(cap, 8);
    assert_int_equal(head, 0);
    assert_int_equal(a[0], 5);
    assert_int_equal(a[2], 7);
    a[head + n++] = 8;
    assert_ptr_equal(rd_array_room(a, sizeof(*a), &head, n, &cap, 4), a); /* room left */
    assert_int_equal(head, 0);
    free(a);
}

/* What a forked child finds at `p`: 0 when it reads `want` there, 1 when
 * it reads something else, the signal that killed it + 100 otherwise. */
static int child_reads(const unsigned char *p, unsigned char want)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* not cmocka's handler: the fault is the answer */
        _exit(*(volatile const unsigned char *)p == want ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) ? 100 + WTERMSIG(st) : WEXITSTATUS(st);
}

/* rd_nofork_realloc: zeroed growth that keeps the bytes, and pages a forked
 * child does not have (it faults on them), before and after a move; the
 * loop's per-agent tables rely on both (the snapshot child's copy-on-write
 * cost, docs/benchmarks.md). */
/* A due time from a wall-clock stamp: an interval after it, but never in
 * the past and never more than an interval away, whatever the stamp says. */
static void test_due_from_a_stamp_is_clamped(void **state)
{
    (void)state;
    const uint64_t iv = 60000, ms = 1000000, slack = 5000 * ms;
    uint64_t before = rd_mono_ns();
    uint64_t now_due = rd_due_mono_ns(rd_now_ms(), iv);
    uint64_t half = rd_due_mono_ns(rd_now_ms() - 30000, iv);
    uint64_t ahead = rd_due_mono_ns(rd_now_ms() + 3600 * 1000, iv);
    uint64_t old = rd_due_mono_ns(rd_now_ms() - 3600 * 1000, iv);
    uint64_t after = rd_mono_ns();
    assert_true(now_due >= before + iv * ms - slack && now_due <= after + iv * ms);
    assert_true(half >= before + 30000 * ms - slack && half <= after + 30000 * ms);
    assert_true(ahead >= before + iv * ms - slack && ahead <= after + iv * ms);
    assert_true(old >= before && old <= after);
}

static void test_nofork_tables(void **state)
{
    (void)state;
    unsigned char *p = rd_nofork_realloc(NULL, 0, 100);
    assert_non_null(p);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(p[i], 0);
    memset(p, 0xab, 100);
    assert_int_equal(child_reads(p, 0xab), 100 + SIGSEGV);

    /* Grown far past its first page (mremap may move it): the bytes stay,
     * the new ones are zero, the child still does not see any of it. */
    size_t big = (size_t)4 << 20;
    p = rd_nofork_realloc(p, 100, big);
    assert_non_null(p);
    assert_int_equal(p[0], 0xab);
    assert_int_equal(p[99], 0xab);
    assert_int_equal(p[100], 0);
    assert_int_equal(p[big - 1], 0);
    p[big - 1] = 7;
    assert_int_equal(child_reads(p + big - 1, 7), 100 + SIGSEGV);
    assert_int_equal(child_reads(p, 0xab), 100 + SIGSEGV);

    /* Memory from malloc, for contrast: the child has it. */
    unsigned char *m = malloc(64);
    assert_non_null(m);
    m[0] = 9;
    assert_int_equal(child_reads(m, 9), 0);
    free(m);

    /* Size 0 frees (and NULL stays a no-op). */
    assert_null(rd_nofork_realloc(p, big, 0));
    rd_nofork_free(NULL, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_put_get_del_grow),
        cmocka_unit_test(test_time_format_and_parse),
        cmocka_unit_test(test_node_ids_and_uuids),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_log_levels_and_quoting),
        cmocka_unit_test(test_array_room_slides_or_grows),
        cmocka_unit_test(test_nofork_tables),
        cmocka_unit_test(test_due_from_a_stamp_is_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
