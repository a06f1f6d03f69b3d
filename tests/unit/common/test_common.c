/* Shared helpers: the hash map, times, ids, error names. */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_put_get_del_grow),
        cmocka_unit_test(test_time_format_and_parse),
        cmocka_unit_test(test_node_ids_and_uuids),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_log_levels_and_quoting),
        cmocka_unit_test(test_array_room_slides_or_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
