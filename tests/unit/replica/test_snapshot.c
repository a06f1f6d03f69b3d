/*
 * Where each replica snapshots (replica/snapshot.c, rd_snapshot_next_at):
 * alone, every `threshold` entries after its last snapshot, as libraft
 * does; staggered, the replica at place k of n snapshots at the indexes
 * k * threshold / n past a multiple of the threshold, never sooner than
 * half a threshold after its last, so that the replicas of one cluster
 * (which apply the same entries) fork a third of a cycle apart and not at
 * once; a snapshot taken late (libraft checks after a batch of applies) or
 * off the cycle (the byte bound) does not move the next one off it.
 */
#include "cmocka_all.h"

#include <stdint.h>

#include "replica/snapshot.h"

#define T 65536u

static void test_alone_every_threshold(void **state)
{
    (void)state;
    assert_int_equal(rd_snapshot_next_at(0, T, 0, 1), T);
    assert_int_equal(rd_snapshot_next_at(70001, T, 0, 1), 70001 + T);
    /* A threshold too small to split is not staggered. */
    assert_int_equal(rd_snapshot_next_at(10, 2, 1, 3), 12);
}

static void test_three_replicas_a_third_apart(void **state)
{
    (void)state;
    /* From the start: place 1's phase (21845) is under half a threshold
     * from 0, so it waits a cycle; place 2 goes first. */
    assert_int_equal(rd_snapshot_next_at(0, T, 0, 3), T);
    assert_int_equal(rd_snapshot_next_at(0, T, 1, 3), T + T / 3);
    assert_int_equal(rd_snapshot_next_at(0, T, 2, 3), 2 * T / 3);
    /* Then every threshold, each at its own phase. */
    for (unsigned k = 0; k < 3; k++) {
        uint64_t at = rd_snapshot_next_at(0, T, k, 3);
        for (int i = 0; i < 5; i++) {
            uint64_t next = rd_snapshot_next_at(at, T, k, 3);
            assert_int_equal(next - at, T);
            assert_int_equal(next % T, (uint64_t)T * k / 3);
            at = next;
        }
    }
}

static void test_late_or_off_cycle_snapshot_comes_back(void **state)
{
    (void)state;
    /* Taken 40 entries late (a batch of applies): the next is on the
     * cycle, not 40 later. */
    uint64_t at = 5 * (uint64_t)T + T / 3;
    assert_int_equal(rd_snapshot_next_at(at + 40, T, 1, 3), at + T);
    /* Anywhere (the byte bound, a snapshot installed from the leader):
     * the next is on this replica's phase, half a threshold to one and a
     * half after it. */
    for (uint64_t last = 1; last < 4 * (uint64_t)T; last += 997) {
        for (unsigned k = 0; k < 5; k++) {
            uint64_t next = rd_snapshot_next_at(last, T, k, 5);
            assert_int_equal(next % T, (uint64_t)T * k / 5);
            assert_true(next >= last + T / 2);
            assert_true(next < last + T / 2 + T);
        }
    }
}

static void test_replicas_never_share_an_index(void **state)
{
    (void)state;
    /* Whatever each replica's last snapshot, no two places of a cluster
     * of 3 or 5 pick indexes closer than threshold / n on the cycle. */
    for (unsigned n = 3; n <= 5; n += 2) {
        for (uint64_t last = 0; last < 3 * (uint64_t)T; last += 4099) {
            for (unsigned a = 0; a < n; a++) {
                for (unsigned b = a + 1; b < n; b++) {
                    uint64_t x = rd_snapshot_next_at(last, T, a, n) % T;
                    uint64_t y = rd_snapshot_next_at(last, T, b, n) % T;
                    uint64_t d = x > y ? x - y : y - x;
                    if (d > T / 2)
                        d = T - d;
                    assert_true(d >= T / n - 1);
                }
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alone_every_threshold),
        cmocka_unit_test(test_three_replicas_a_third_apart),
        cmocka_unit_test(test_late_or_off_cycle_snapshot_comes_back),
        cmocka_unit_test(test_replicas_never_share_an_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
