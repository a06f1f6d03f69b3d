/* The export position in the state machine (engine/fsm/export.c): records
 * carry the raft index of their last change; while export is on a record
 * waits for export before the usual bounds prune it, up to the hard bound
 * (then the oldest go, counted as lost); every replica prunes alike, a
 * restored one included. */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

static void fault_id(char out[40], unsigned i)
{
    snprintf(out, 40, "f%07u-0000-4000-8000-000000000000", i);
}

/* Opens and resolves fault `i` (a cluster-wide one): two commands. */
static void fault_cycle(struct rd_fsm *f, unsigned i)
{
    char id[40];
    fault_id(id, i);
    assert_int_equal(
        apply(f, cmd_fault_open(id, "", RD_FAULT_CRASH, RD_SEV_MINOR, RD_STATE_ANY, 0, i))->status,
        0);
    assert_int_equal(apply(f, cmd_fault_resolve(id, "", i))->status, 0);
}

/* Unbound to raft the index of an apply is the applied count + 1. */
static void test_changed_follows_every_change(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n1", 1, 1)); /* index 1 */
    apply(&f, cmd_fault_open("x1", "n1", RD_FAULT_CRASH, RD_SEV_MAJOR, RD_NODE_FAILED, 1,
                             2)); /* index 2 */
    assert_int_equal(rd_fsm_fault(&f, "x1")->changed, 2);
    apply(&f, cmd_register("n1", 1, 3)); /* index 3: re-registers, faults stay open */
    /* Index 4: the node recovers and its faults resolve in the same step
     * (a change made by another kind's command still counts). */
    struct rd_cmd t = {.type = RD_CMD_NODE_TRANSITION, .time_ms = 4};
    t.u.trans.node_id = RD_STR("n1");
    t.u.trans.epoch = 2;
    t.u.trans.state = RD_NODE_ALIVE;
    t.u.trans.reason = RD_STR("back");
    t.u.trans.from_state = RD_STATE_ANY;
    t.u.trans.resolve_faults = 1;
    assert_int_equal(apply(&f, fsm_encode(&t))->status, 0);
    assert_int_equal(rd_fsm_fault(&f, "x1")->status, RD_FAULT_RESOLVED);
    assert_int_equal(rd_fsm_fault(&f, "x1")->changed, 4);
    /* A recovery run changes with each of its steps. */
    apply(&f, cmd_recovery_open("r1", "n1", "", "test", 5)); /* index 5 */
    assert_int_equal(rd_fsm_recovery(&f, "r1")->changed, 5);
    apply(&f, cmd_recovery_close("r1", RD_REC_SUCCEEDED, "", 6));
    assert_int_equal(rd_fsm_recovery(&f, "r1")->changed, 6);
    /* Applying the export position changes no record. */
    assert_int_equal(apply(&f, cmd_records_export(1, 6, 0, 7))->status, 0);
    assert_int_equal(rd_fsm_recovery(&f, "r1")->changed, 6);
    rd_fsm_close(&f);
}

static void test_position_moves_only_forward(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    const struct rd_export_pos *e = rd_fsm_export(&f);
    assert_int_equal(e->enabled, 0);
    assert_int_equal(apply(&f, cmd_records_export(1, 100, 0, 1))->value, 100);
    assert_int_equal(e->enabled, 1);
    assert_int_equal(e->max_retained, RD_FSM_EXPORT_RETAIN_DEFAULT);
    /* A late proposal of an older position: the position stays. */
    assert_int_equal(apply(&f, cmd_records_export(1, 90, 70000, 2))->value, 100);
    assert_int_equal(e->index, 100);
    assert_int_equal(e->max_retained, 70000);
    /* Off: the position is kept for the day it is on again. */
    apply(&f, cmd_records_export(0, 0, 0, 3));
    assert_int_equal(e->enabled, 0);
    assert_int_equal(e->index, 100);
    /* A malformed command (enabled 2) is refused by the decoder. */
    struct rd_wbuf w = cmd_records_export(1, 5, 0, 4);
    w.p[RD_CMD_HEADER_SIZE] = 2;
    const struct rd_fsm_result *res = NULL;
    assert_int_equal(rd_fsm_apply(&f, w.p, w.len, &res), RD_EPARSE);
    rd_w_free(&w);
    rd_fsm_close(&f);
}

#define OVER 10 /* records past the usual bound */

/* Export on, nothing exported: the usual bound prunes nothing; once the
 * position covers the oldest records they go; with export off again the
 * bound holds as before. */
static void test_faults_wait_for_export(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_records_export(1, 0, RD_FSM_MAX_FAULTS + 1000, 0)); /* index 1 */
    for (unsigned i = 1; i <= RD_FSM_MAX_FAULTS + OVER; i++)
        fault_cycle(&f, i); /* fault i resolved at index 1 + 2i */
    assert_int_equal(f.n_faults, RD_FSM_MAX_FAULTS + OVER);
    assert_int_equal(rd_fsm_export(&f)->lost[RD_EXPORT_FAULTS], 0);
    char id[40];
    fault_id(id, 1);
    assert_int_equal(rd_fsm_fault(&f, id)->changed, 3);

    /* PostgreSQL holds faults 1 to 4: exactly those go at the next open. */
    apply(&f, cmd_records_export(1, 1 + 2 * 4, 0, 0));
    fault_cycle(&f, RD_FSM_MAX_FAULTS + OVER + 1);
    assert_int_equal(f.n_faults, RD_FSM_MAX_FAULTS + OVER + 1 - 4);
    fault_id(id, 4);
    assert_null(rd_fsm_fault(&f, id));
    fault_id(id, 5);
    assert_non_null(rd_fsm_fault(&f, id));
    assert_int_equal(rd_fsm_export(&f)->lost[RD_EXPORT_FAULTS], 0);

    /* Export off: the usual bound, oldest first. */
    apply(&f, cmd_records_export(0, 0, 0, 0));
    fault_cycle(&f, RD_FSM_MAX_FAULTS + OVER + 2);
    assert_int_equal(f.n_faults, RD_FSM_MAX_FAULTS);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

/* PostgreSQL away for good: past the hard bound the oldest go all the
 * same, each counted as lost; open faults are never pruned. */
static void test_faults_hard_bound_counts_the_lost(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_records_export(1, 0, RD_FSM_MAX_FAULTS + 5, 0));
    char id[40];
    fault_id(id, 0);
    apply(&f, cmd_fault_open(id, "", RD_FAULT_CRASH, RD_SEV_MINOR, RD_STATE_ANY, 0, 0));
    for (unsigned i = 1; i <= RD_FSM_MAX_FAULTS + OVER; i++)
        fault_cycle(&f, i);
    assert_int_equal(f.n_faults, RD_FSM_MAX_FAULTS + 5);
    assert_int_equal(rd_fsm_export(&f)->lost[RD_EXPORT_FAULTS], OVER + 1 - 5);
    assert_non_null(rd_fsm_fault(&f, id)); /* open: stays */
    fault_id(id, OVER + 1 - 5);
    assert_null(rd_fsm_fault(&f, id)); /* the oldest resolved went */
    fault_id(id, OVER + 1 - 5 + 1);
    assert_non_null(rd_fsm_fault(&f, id));
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

static void run_cycle(struct rd_fsm *f, unsigned i)
{
    char id[40];
    snprintf(id, sizeof(id), "r%07u-0000-4000-8000-000000000000", i);
    assert_int_equal(apply(f, cmd_recovery_open(id, "n1", "", "test", i))->status, 0);
    assert_int_equal(apply(f, cmd_recovery_close(id, RD_REC_SUCCEEDED, "", i))->status, 0);
}

static void test_runs_wait_for_export(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n1", 1, 0));
    apply(&f, cmd_records_export(1, 0, RD_FSM_MAX_RECOVERIES + 3, 0));
    for (unsigned i = 1; i <= RD_FSM_MAX_RECOVERIES + OVER; i++)
        run_cycle(&f, i);
    assert_int_equal(f.n_recoveries, RD_FSM_MAX_RECOVERIES + 3);
    assert_int_equal(rd_fsm_export(&f)->lost[RD_EXPORT_RECOVERIES], OVER - 3);
    /* Everything exported: the usual bound again at the next close. */
    apply(&f, cmd_records_export(1, f.n_applied, RD_FSM_MAX_RECOVERIES + 3, 0));
    run_cycle(&f, RD_FSM_MAX_RECOVERIES + OVER + 1);
    assert_int_equal(f.n_recoveries, RD_FSM_MAX_RECOVERIES);
    assert_int_equal(rd_fsm_export(&f)->lost[RD_EXPORT_RECOVERIES], OVER - 3);
    rd_fsm_close(&f);
}

static struct rd_wbuf audit_alone(uint32_t keep, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_AUDIT, .time_ms = t};
    c.audit = (struct rd_cmd_audit){.present = 1,
                                    .principal = RD_STR("tok"),
                                    .action = RD_STR("x"),
                                    .status = 200,
                                    .keep = keep};
    return fsm_encode(&c);
}

/* Audit records: the retention (keep 3 here) waits for export, up to the
 * hard bound; the oldest go first. */
static void test_audits_wait_for_export(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_records_export(1, 0, 10, 0)); /* index 1 */
    for (int i = 0; i < 8; i++)
        apply(&f, audit_alone(3, 1000 + i)); /* seq 1..8 at index 2..9 */
    size_t n;
    const struct rd_audit *const *as = rd_fsm_audits(&f, &n);
    assert_int_equal(n, 8);
    apply(&f, cmd_records_export(1, 4, 10, 0)); /* seq 1..3 exported */
    apply(&f, audit_alone(3, 2000));            /* seq 9: 1..3 go, 4.. wait */
    as = rd_fsm_audits(&f, &n);
    assert_int_equal(n, 6);
    assert_int_equal(as[0]->seq, 4);
    for (int i = 0; i < 10; i++)
        apply(&f, audit_alone(3, 3000 + i)); /* past the bound of 10 */
    as = rd_fsm_audits(&f, &n);
    assert_int_equal(n, 10);
    assert_int_equal(as[n - 1]->seq, 19);
    assert_int_equal(rd_fsm_export(&f)->lost[RD_EXPORT_AUDITS], 6);
    rd_fsm_close(&f);
}

/* Two replicas, one of which restarts from a snapshot half-way, prune
 * alike and hold the same changed indexes. */
static void test_replicas_prune_alike_across_a_restore(void **state)
{
    struct rd_fsm a, b;
    rd_fsm_init(&a);
    rd_fsm_init(&b);
    unsigned total = RD_FSM_MAX_FAULTS + 3 * OVER, half = total / 2;
    apply(&a, cmd_records_export(1, 0, RD_FSM_MAX_FAULTS + OVER, 0));
    apply(&b, cmd_records_export(1, 0, RD_FSM_MAX_FAULTS + OVER, 0));
    for (unsigned i = 1; i <= total; i++) {
        fault_cycle(&a, i);
        if (i < half) {
            fault_cycle(&b, i);
        } else if (i == half) {
            fault_cycle(&b, i);
            struct rd_wbuf snap;
            rd_w_init(&snap);
            assert_int_equal(rd_fsm_snapshot(&b, &snap), 0);
            rd_fsm_close(&b);
            rd_fsm_init(&b);
            assert_int_equal(rd_fsm_restore(&b, snap.p, snap.len), 0);
            rd_w_free(&snap);
        } else {
            fault_cycle(&b, i);
        }
        if (i == total - 2 * OVER) { /* PostgreSQL caught up to here */
            apply(&a, cmd_records_export(1, a.n_applied - 7, RD_FSM_MAX_FAULTS + OVER, 0));
            apply(&b, cmd_records_export(1, b.n_applied - 7, RD_FSM_MAX_FAULTS + OVER, 0));
        }
    }
    assert_int_equal(a.n_faults, b.n_faults);
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    for (size_t i = 0; i < a.n_faults; i++) {
        assert_string_equal(a.faults[i]->id, b.faults[i]->id);
        assert_int_equal(a.faults[i]->changed, b.faults[i]->changed);
    }
    assert_memory_equal(rd_fsm_export(&a), rd_fsm_export(&b), sizeof(struct rd_export_pos));
    rd_fsm_close(&a);
    rd_fsm_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_changed_follows_every_change),
        cmocka_unit_test(test_position_moves_only_forward),
        cmocka_unit_test(test_faults_wait_for_export),
        cmocka_unit_test(test_faults_hard_bound_counts_the_lost),
        cmocka_unit_test(test_runs_wait_for_export),
        cmocka_unit_test(test_audits_wait_for_export),
        cmocka_unit_test(test_replicas_prune_alike_across_a_restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
