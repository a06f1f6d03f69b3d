/*
 * engine/backup/retention.c: which backups retention deletes. Per target,
 * the keep_min newest completed ones stay whatever their age; older
 * completed ones go once they began more than retention_period ago; failed
 * ones lose their objects at once and their record after the period;
 * running ones are never touched.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "backup/backup.h"

#define DAY (24LL * 3600 * 1000)
#define NOW (100 * DAY)

static struct rd_backup recs[32];
static const struct rd_backup *ptrs[32];
static size_t n;

static void add(const char *target, int status, int64_t started_days_ago)
{
    struct rd_backup *r = &recs[n];
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "b%zu", n);
    snprintf(r->target, sizeof(r->target), "%s", target);
    r->status = (uint8_t)status;
    r->started_at_ms = NOW - started_days_ago * DAY;
    ptrs[n] = r;
    n++;
}

static void run(uint64_t retention_days, unsigned keep_min, const char *want)
{
    uint8_t out[32];
    char got[33];
    rd_backup_retention(ptrs, n, NOW, (uint64_t)retention_days * DAY, keep_min, out);
    for (size_t i = 0; i < n; i++)
        got[i] = out[i] == RD_BACKUP_KEEP ? 'k' : out[i] == RD_BACKUP_DROP ? 'D' : 'c';
    got[n] = '\0';
    assert_string_equal(got, want);
}

static int reset(void **state)
{
    (void)state;
    n = 0;
    return 0;
}

/* Oldest first, as the machine keeps them. */
static void test_by_age(void **state)
{
    (void)state;
    for (int d = 10; d >= 1; d--)
        add("local", RD_BACKUP_COMPLETED, d);
    /* 7 days: those that began 10, 9, 8 and 7 days ago go (exactly at the
     * horizon counts as past it); the 3 newest would stay anyway. */
    run(7, 3, "DDDDkkkkkk");
    run(30, 3, "kkkkkkkkkk");
}

static void test_by_count(void **state)
{
    (void)state;
    for (int d = 10; d >= 1; d--)
        add("local", RD_BACKUP_COMPLETED, d);
    /* Everything is past a zero retention: the 3 newest stay. */
    run(0, 3, "DDDDDDDkkk");
    run(0, 0, "DDDDDDDDDD");
    run(0, 10, "kkkkkkkkkk");
    run(0, 11, "kkkkkkkkkk");
}

static void test_per_target(void **state)
{
    (void)state;
    add("a", RD_BACKUP_COMPLETED, 9);
    add("b", RD_BACKUP_COMPLETED, 9);
    add("a", RD_BACKUP_COMPLETED, 8);
    add("b", RD_BACKUP_COMPLETED, 8);
    add("a", RD_BACKUP_COMPLETED, 1);
    /* keep_min 1 per target: a's newest (1 day) and b's newest (8 days). */
    run(7, 1, "DDDkk");
    run(7, 2, "Dkkkk");
}

static void test_failed_and_running(void **state)
{
    (void)state;
    add("a", RD_BACKUP_FAILED, 9);
    add("a", RD_BACKUP_RUNNING, 9);
    add("a", RD_BACKUP_COMPLETED, 9);
    add("a", RD_BACKUP_FAILED, 1);
    add("a", RD_BACKUP_COMPLETED, 1);
    add("a", RD_BACKUP_RUNNING, 0);
    /* Failed: objects now (c), record after the period (D); running: never;
     * failed ones do not count towards keep_min. */
    run(7, 1, "DkDckk");
    run(7, 2, "Dkkckk");
    run(0, 0, "DkDDDk");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_by_age, reset),
        cmocka_unit_test_setup(test_by_count, reset),
        cmocka_unit_test_setup(test_per_target, reset),
        cmocka_unit_test_setup(test_failed_and_running, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
