/*
 * The verdict of a consistency check (consistency/consistency.c,
 * rd_consistency_decide): the digest more than half of the voters report is
 * the majority's; replicas that answered another one diverged; with no such
 * digest nothing is judged, so a majority is never repaired from a
 * minority.
 */
#include "cmocka_all.h"

#include "consistency/consistency.h"

#define A(id_, d)                                                                                  \
    {                                                                                              \
        .id = (id_), .answered = true, .digest = (d)                                               \
    }
#define SILENT(id_)                                                                                \
    {                                                                                              \
        .id = (id_), .answered = false                                                             \
    }

static int decide(const struct rd_digest_answer *a, unsigned n, unsigned voters, uint64_t *maj,
                  uint64_t *div, unsigned *nd)
{
    return rd_consistency_decide(a, n, voters, maj, div, nd);
}

static void test_all_agree(void **state)
{
    struct rd_digest_answer a[] = {A(1, 0xaa), A(2, 0xaa), A(3, 0xaa)};
    uint64_t maj, div[3];
    unsigned nd = 99;
    assert_int_equal(decide(a, 3, 3, &maj, div, &nd), RD_CHECK_CONSISTENT);
    assert_true(maj == 0xaa);
    assert_int_equal(nd, 0);
}

static void test_one_of_three_diverged(void **state)
{
    struct rd_digest_answer a[] = {A(1, 0xaa), A(2, 0xbb), A(3, 0xaa)};
    uint64_t maj, div[3];
    unsigned nd;
    assert_int_equal(decide(a, 3, 3, &maj, div, &nd), RD_CHECK_MISMATCH);
    assert_true(maj == 0xaa);
    assert_int_equal(nd, 1);
    assert_true(div[0] == 2);
}

/* The leader itself can be the odd one out: it is judged like any other. */
static void test_leader_in_the_minority(void **state)
{
    struct rd_digest_answer a[] = {A(1, 0x01), A(2, 0x02), A(3, 0x02), A(4, 0x02), A(5, 0x02)};
    uint64_t maj, div[5];
    unsigned nd;
    assert_int_equal(decide(a, 5, 5, &maj, div, &nd), RD_CHECK_MISMATCH);
    assert_true(maj == 0x02);
    assert_int_equal(nd, 1);
    assert_true(div[0] == 1);
}

/* Two of five agreeing is not a majority of the voters, whatever the
 * others did: nothing is judged, nobody is repaired. */
static void test_no_majority_of_voters_judges_nothing(void **state)
{
    struct rd_digest_answer a[] = {A(1, 0xaa), A(2, 0xaa), A(3, 0xbb), SILENT(4), SILENT(5)};
    uint64_t maj, div[5];
    unsigned nd;
    assert_int_equal(decide(a, 5, 5, &maj, div, &nd), RD_CHECK_INCOMPLETE);
    assert_int_equal(nd, 0);
}

/* A three-way split of three: incomplete, not three repairs. */
static void test_split_is_incomplete(void **state)
{
    struct rd_digest_answer a[] = {A(1, 0x1), A(2, 0x2), A(3, 0x3)};
    uint64_t maj, div[3];
    unsigned nd;
    assert_int_equal(decide(a, 3, 3, &maj, div, &nd), RD_CHECK_INCOMPLETE);
    assert_int_equal(nd, 0);
}

/* A replica that did not answer in time is not judged; the others are. */
static void test_silent_replica_is_not_diverged(void **state)
{
    struct rd_digest_answer a[] = {A(1, 0xaa), SILENT(2), A(3, 0xaa)};
    uint64_t maj, div[3];
    unsigned nd;
    assert_int_equal(decide(a, 3, 3, &maj, div, &nd), RD_CHECK_CONSISTENT);
    assert_int_equal(nd, 0);
    /* Two answers against four voters: no majority. */
    assert_int_equal(decide(a, 3, 4, &maj, div, &nd), RD_CHECK_INCOMPLETE);
}

/* A single replica is its own majority. */
static void test_single_replica(void **state)
{
    struct rd_digest_answer a[] = {A(1, 0x5)};
    uint64_t maj, div[1];
    unsigned nd;
    assert_int_equal(decide(a, 1, 1, &maj, div, &nd), RD_CHECK_CONSISTENT);
    assert_true(maj == 0x5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_agree),
        cmocka_unit_test(test_one_of_three_diverged),
        cmocka_unit_test(test_leader_in_the_minority),
        cmocka_unit_test(test_no_majority_of_voters_judges_nothing),
        cmocka_unit_test(test_split_is_incomplete),
        cmocka_unit_test(test_silent_replica_is_not_diverged),
        cmocka_unit_test(test_single_replica),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
