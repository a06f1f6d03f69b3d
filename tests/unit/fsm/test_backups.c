/* Backup records, the archive position and the cluster id
 * (engine/fsm/backups.c): their life cycle, refusals, the cap, snapshots. */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

#define B1 "b1000000-0000-4000-8000-000000000001"
#define B2 "b2000000-0000-4000-8000-000000000002"
#define B3 "b3000000-0000-4000-8000-000000000003"

static int status_of(struct rd_fsm *f, struct rd_wbuf w)
{
    return apply(f, w)->status;
}

static void test_backup_life_cycle(void **state)
{
    struct rd_fsm f, g;
    rd_fsm_init(&f);
    assert_int_equal(status_of(&f, cmd_backup_begin(B1, "file-main", 100)), 0);
    const struct rd_backup *b = rd_fsm_backup_find(&f, B1);
    assert_non_null(b);
    assert_string_equal(b->id, B1);
    assert_string_equal(b->target, "file-main");
    assert_int_equal(b->status, RD_BACKUP_RUNNING);
    assert_int_equal(b->started_at_ms, 100);
    assert_int_equal(b->completed_at_ms, 0);
    assert_int_equal(b->verify_ok, -1);
    assert_null(b->error);
    /* The same id again: refused, the record unchanged. */
    assert_int_equal(status_of(&f, cmd_backup_begin(B1, "s3", 101)), RD_ECONFLICT);
    assert_string_equal(rd_fsm_backup_find(&f, B1)->target, "file-main");
    /* Verify before it completed: refused. */
    assert_int_equal(status_of(&f, cmd_backup_op(RD_BACKUP_OP_VERIFY, B1, 1, "", 102)),
                     RD_ECONFLICT);
    /* Unknown ids. */
    assert_int_equal(status_of(&f, cmd_backup_complete(B2, 1, 1, 1, 1, 1, 103)), RD_ENOTFOUND);
    assert_int_equal(status_of(&f, cmd_backup_op(RD_BACKUP_OP_REMOVE, B2, 0, "", 103)),
                     RD_ENOTFOUND);
    /* A running backup is not removed. */
    assert_int_equal(status_of(&f, cmd_backup_op(RD_BACKUP_OP_REMOVE, B1, 0, "", 103)),
                     RD_ECONFLICT);

    assert_int_equal(status_of(&f, cmd_backup_complete(B1, 4242, 7, 9000, 0xabcdef, 0x1234, 110)),
                     0);
    b = rd_fsm_backup_find(&f, B1);
    assert_int_equal(b->status, RD_BACKUP_COMPLETED);
    assert_int_equal(b->index, 4242);
    assert_int_equal(b->term, 7);
    assert_int_equal(b->size, 9000);
    assert_int_equal(b->checksum, 0xabcdef);
    assert_int_equal(b->digest, 0x1234);
    assert_int_equal(b->completed_at_ms, 110);
    /* Only from running: a second completion or a failure now is refused. */
    assert_int_equal(status_of(&f, cmd_backup_complete(B1, 1, 1, 1, 1, 1, 111)), RD_ECONFLICT);
    assert_int_equal(status_of(&f, cmd_backup_op(RD_BACKUP_OP_FAIL, B1, 0, "late", 111)),
                     RD_ECONFLICT);
    assert_int_equal(rd_fsm_backup_find(&f, B1)->index, 4242);

    /* Verified: failed once, then matched (the error goes). */
    assert_int_equal(
        status_of(&f, cmd_backup_op(RD_BACKUP_OP_VERIFY, B1, 0, "checksum mismatch", 120)), 0);
    b = rd_fsm_backup_find(&f, B1);
    assert_int_equal(b->verified_at_ms, 120);
    assert_int_equal(b->verify_ok, 0);
    assert_string_equal(b->error, "checksum mismatch");
    assert_int_equal(status_of(&f, cmd_backup_op(RD_BACKUP_OP_VERIFY, B1, 1, "", 130)), 0);
    assert_int_equal(b->verified_at_ms, 130);
    assert_int_equal(b->verify_ok, 1);
    assert_null(b->error);

    /* A second one fails. */
    assert_int_equal(status_of(&f, cmd_backup_begin(B2, "s3", 140)), 0);
    assert_int_equal(
        status_of(&f, cmd_backup_op(RD_BACKUP_OP_FAIL, B2, 0, "bucket unreachable", 150)), 0);
    b = rd_fsm_backup_find(&f, B2);
    assert_int_equal(b->status, RD_BACKUP_FAILED);
    assert_int_equal(b->completed_at_ms, 150);
    assert_string_equal(b->error, "bucket unreachable");
    assert_int_equal(status_of(&f, cmd_backup_op(RD_BACKUP_OP_VERIFY, B2, 1, "", 151)),
                     RD_ECONFLICT);
    assert_int_equal(status_of(&f, cmd_backup_begin(B3, "file-main", 160)), 0);

    /* In order of BEGIN. */
    size_t n;
    const struct rd_backup *const *all = rd_fsm_backups(&f, &n);
    assert_int_equal(n, 3);
    assert_string_equal(all[0]->id, B1);
    assert_string_equal(all[1]->id, B2);
    assert_string_equal(all[2]->id, B3);

    /* Through a snapshot, every field. */
    round_trip(&f, &g);
    all = rd_fsm_backups(&g, &n);
    assert_int_equal(n, 3);
    b = rd_fsm_backup_find(&g, B1);
    assert_ptr_equal(all[0], b);
    assert_int_equal(b->status, RD_BACKUP_COMPLETED);
    assert_int_equal(b->index, 4242);
    assert_int_equal(b->checksum, 0xabcdef);
    assert_int_equal(b->verify_ok, 1);
    assert_null(b->error);
    assert_string_equal(rd_fsm_backup_find(&g, B2)->error, "bucket unreachable");
    assert_int_equal(rd_fsm_backup_find(&g, B3)->status, RD_BACKUP_RUNNING);
    rd_fsm_close(&g);

    /* Retention removes the record; the order of the others stays. */
    assert_int_equal(status_of(&f, cmd_backup_op(RD_BACKUP_OP_REMOVE, B1, 0, "", 170)), 0);
    assert_null(rd_fsm_backup_find(&f, B1));
    all = rd_fsm_backups(&f, &n);
    assert_int_equal(n, 2);
    assert_string_equal(all[0]->id, B2);
    assert_string_equal(all[1]->id, B3);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

/* At the cap the oldest finished record goes; a running one never does. */
static void test_backups_capped_oldest_finished_first(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    char id[40];
    /* The first is left running; the rest complete. */
    assert_int_equal(status_of(&f, cmd_backup_begin("keep-running", "t", 1)), 0);
    for (int i = 1; i < RD_FSM_MAX_BACKUPS; i++) {
        snprintf(id, sizeof(id), "b-%05d", i);
        assert_int_equal(status_of(&f, cmd_backup_begin(id, "t", 10 + i)), 0);
        assert_int_equal(status_of(&f, cmd_backup_complete(id, (uint64_t)i, 1, 1, 1, 1, 10 + i)),
                         0);
    }
    assert_int_equal(f.n_backups, RD_FSM_MAX_BACKUPS);
    uint64_t before = rd_fsm_digest(&f);
    assert_true(before == rd_fsm_digest_full(&f));
    assert_int_equal(status_of(&f, cmd_backup_begin("one-more", "t", 99999)), 0);
    assert_int_equal(f.n_backups, RD_FSM_MAX_BACKUPS);
    assert_non_null(rd_fsm_backup_find(&f, "keep-running"));
    assert_null(rd_fsm_backup_find(&f, "b-00001"));
    assert_non_null(rd_fsm_backup_find(&f, "b-00002"));
    assert_string_equal(f.backups[0]->id, "keep-running");
    assert_string_equal(f.backups[1]->id, "b-00002");
    assert_string_equal(f.backups[RD_FSM_MAX_BACKUPS - 1]->id, "one-more");
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

static void test_archive_position_only_moves_forward(void **state)
{
    struct rd_fsm f, g;
    rd_fsm_init(&f);
    const struct rd_archive_pos *a = rd_fsm_archive(&f);
    assert_int_equal(a->index, 0);
    assert_string_equal(a->target, "");
    const struct rd_fsm_result *r = apply(
        &f, cmd_archive("s3-dr", 500, "archive/00000000000000000001-00000000000000000500.zst", 10));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->value, 500);
    assert_string_equal(a->target, "s3-dr");
    assert_int_equal(a->index, 500);
    assert_string_equal(a->object, "archive/00000000000000000001-00000000000000000500.zst");
    assert_int_equal(a->at_ms, 10);
    /* Older: refused, the position stays (the result names it). */
    r = apply(&f, cmd_archive("s3-dr", 499, "older", 11));
    assert_int_equal(r->status, RD_ECONFLICT);
    assert_int_equal(r->value, 500);
    assert_int_equal(a->index, 500);
    assert_int_equal(a->at_ms, 10);
    /* The same index again is no step back. */
    assert_int_equal(status_of(&f, cmd_archive("s3-dr", 500, "again", 12)), 0);
    assert_string_equal(a->object, "again");
    assert_int_equal(status_of(&f, cmd_archive("s3-dr", 900, "newer", 13)), 0);
    assert_int_equal(a->index, 900);
    round_trip(&f, &g);
    const struct rd_archive_pos *b = rd_fsm_archive(&g);
    assert_string_equal(b->target, "s3-dr");
    assert_int_equal(b->index, 900);
    assert_string_equal(b->object, "newer");
    assert_int_equal(b->at_ms, 13);
    rd_fsm_close(&g);
    rd_fsm_close(&f);
}

static void test_cluster_id_set_once(void **state)
{
    struct rd_fsm f, g;
    rd_fsm_init(&f);
    assert_string_equal(rd_fsm_cluster_id(&f), "");
    /* An id with a NUL inside would be stored cut short: refused. */
    struct rd_cmd bad = {.type = RD_CMD_CLUSTER_ID, .time_ms = 4};
    bad.u.cid.id = (struct rd_str){"\0bc", 3};
    assert_int_equal(status_of(&f, fsm_encode(&bad)), RD_EINVAL);
    assert_string_equal(rd_fsm_cluster_id(&f), "");
    uint64_t d0 = rd_fsm_digest(&f);
    assert_int_equal(status_of(&f, cmd_cluster_id("c0ffee00-0000-4000-8000-000000000001", 5)), 0);
    assert_string_equal(rd_fsm_cluster_id(&f), "c0ffee00-0000-4000-8000-000000000001");
    assert_true(rd_fsm_digest(&f) != d0);
    /* The same id again: fine (two leaders that both found none). */
    assert_int_equal(status_of(&f, cmd_cluster_id("c0ffee00-0000-4000-8000-000000000001", 6)), 0);
    /* Another: refused, the first stays. */
    assert_int_equal(status_of(&f, cmd_cluster_id("deadbeef-0000-4000-8000-000000000002", 7)),
                     RD_ECONFLICT);
    assert_string_equal(rd_fsm_cluster_id(&f), "c0ffee00-0000-4000-8000-000000000001");
    round_trip(&f, &g);
    assert_string_equal(rd_fsm_cluster_id(&g), "c0ffee00-0000-4000-8000-000000000001");
    /* A restore replaces it (the snapshot's cluster is the cluster). */
    struct rd_fsm h;
    rd_fsm_init(&h);
    apply(&h, cmd_cluster_id("other", 1));
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(&f, &snap), 0);
    assert_int_equal(rd_fsm_restore(&h, snap.p, snap.len), 0);
    assert_string_equal(rd_fsm_cluster_id(&h), "c0ffee00-0000-4000-8000-000000000001");
    rd_w_free(&snap);
    rd_fsm_close(&h);
    rd_fsm_close(&g);
    rd_fsm_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_life_cycle),
        cmocka_unit_test(test_backups_capped_oldest_finished_first),
        cmocka_unit_test(test_archive_position_only_moves_forward),
        cmocka_unit_test(test_cluster_id_set_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
