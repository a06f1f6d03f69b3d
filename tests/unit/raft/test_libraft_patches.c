/*
 * Regression tests for the fixes the project carries to libraft 0.22.1
 * (deps/libraft/patches), on libraft's own in-memory cluster (raft/fixture.h)
 * driving the engine's state machine: every step is deterministic, so each
 * test reaches the faulty path every time. Each fails on the stock library
 * (a crash, or an assertion in its debug build: docs/libraft.md shows how to
 * run them against it) and passes with the patches.
 */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cluster.h"
#include "fsm_cmds.h"
#include "recoveryd/error.h"

static void register_n(struct cluster *c, unsigned leader, int from, int n)
{
    char id[32];
    for (int i = from; i < from + n; i++) {
        snprintf(id, sizeof(id), "agent-%03d", i);
        assert_int_equal(apply_on(c, leader, cmd_register(id, 1, 1000 + i)), 0);
    }
}

static bool is_taking_snapshot(struct raft_fixture *f, void *arg)
{
    return raft_fixture_get(f, (unsigned)(uintptr_t)arg)->legacy.snapshot_taking;
}

static bool has_install_on_hold(struct raft_fixture *f, void *arg)
{
    return raft_fixture_get(f, (unsigned)(uintptr_t)arg)->legacy.snapshot_pending != NULL;
}

/*
 * Patch 0001: a follower still writing its own snapshot receives a snapshot
 * install from the leader. libraft holds the install until its own write
 * finishes; stock 0.22.1 then starts a NULL request (SIGSEGV in
 * legacyPersistSnapshotStart, from takeSnapshotCb).
 */
static void test_install_held_during_own_snapshot_is_applied(void **state)
{
    struct cluster *c = *state;
    for (unsigned i = 0; i < N; i++) {
        raft_set_snapshot_threshold(server(c, i), 8);
        raft_set_snapshot_trailing(server(c, i), 2);
    }
    raft_fixture_elect(&c->f, 0);
    assert_int_equal(raft_fixture_leader_index(&c->f), 0);

    /* Follower 2's disk is slow: its snapshot write takes 3 s. */
    raft_fixture_set_disk_latency(&c->f, 2, 3000);
    register_n(c, 0, 0, 12);
    assert_true(raft_fixture_step_until(&c->f, is_taking_snapshot, (void *)(uintptr_t)2, 20000));
    raft_index f_last = raft_last_applied(server(c, 2));

    /* Cut it off while it writes; the leader moves on past two snapshots of
     * its own, so follower 2's next entry is no longer in its log. */
    raft_fixture_disconnect(&c->f, 0, 2);
    raft_fixture_disconnect(&c->f, 2, 0);
    raft_fixture_disconnect(&c->f, 1, 2);
    raft_fixture_disconnect(&c->f, 2, 1);
    register_n(c, 0, 12, 30);
    assert_true(raft_fixture_step_until_applied(&c->f, 1, 43, 2000));
    raft_fixture_step_until_elapsed(&c->f, 100); /* the leader's snapshot is written */
    assert_true(raft_last_applied(server(c, 0)) >= f_last + 8 + 2);
    assert_int_equal(raft_last_applied(server(c, 2)), f_last);
    assert_true(server(c, 2)->legacy.snapshot_taking); /* still writing */

    /* Heal: the leader sends its snapshot, which is held... */
    raft_fixture_reconnect(&c->f, 0, 2);
    raft_fixture_reconnect(&c->f, 2, 0);
    raft_fixture_reconnect(&c->f, 1, 2);
    raft_fixture_reconnect(&c->f, 2, 1);
    assert_true(raft_fixture_step_until(&c->f, has_install_on_hold, (void *)(uintptr_t)2, 2000));
    assert_true(server(c, 2)->legacy.snapshot_taking);

    /* ...and started once the follower's own write is done. */
    raft_index last = raft_last_applied(server(c, 0));
    assert_true(raft_fixture_step_until_applied(&c->f, N, last, 30000));
    assert_null(server(c, 2)->legacy.snapshot_pending);
    assert_true(c->fsms[2].restores >= 1);
    assert_int_equal(c->fsms[2].n_nodes, 42);
    assert_int_equal(c->acked, 42);
    assert_converged(c);
}

/*
 * Patch 0002, leader side: an append that fails (here the fixture's I/O
 * fault; in production "eventfd: too many open files" while opening a
 * segment) must leave the instance usable. Stock 0.22.1 kept the entry in
 * the core's trail but not in its log, so the next raft_apply reached the
 * backend's append with entries == NULL (SIGSEGV; an assertion failure in
 * its debug build).
 */
static void test_leader_append_failure_then_more_writes(void **state)
{
    struct cluster *c = *state;
    raft_fixture_elect(&c->f, 0);
    register_n(c, 0, 0, 3);
    assert_true(raft_fixture_step_until_applied(&c->f, N, 4, 10000));

    /* The leader's next I/O request, the append, fails: raft took the
     * entry (and its buffer), so raft_apply succeeds and the callback
     * reports the loss. */
    raft_fixture_io_fault(&c->f, 0, 0, 1);
    assert_int_equal(apply_on(c, 0, cmd_register("lost", 1, 50)), 0);
    raft_fixture_step(&c->f);
    assert_int_equal(c->failed, 1);
    assert_int_equal(raft_state(server(c, 0)), RAFT_LEADER);

    /* A refused submission (not the leader) leaves the buffer to us. */
    assert_int_equal(apply_on(c, 1, cmd_register("refused", 1, 51)), RAFT_NOTLEADER);

    /* The next writes take the failed one's index and commit everywhere. */
    register_n(c, 0, 3, 5);
    assert_true(raft_fixture_step_until_applied(&c->f, N, 9, 10000));
    assert_int_equal(c->acked, 8);
    assert_int_equal(c->failed, 1);
    assert_int_equal(c->fsms[0].n_nodes, 8);
    assert_null(rd_fsm_node(&c->fsms[1], "lost", 4));
    assert_converged(c);
}

/*
 * Patch 0011: the same failure on a leader that streams to its followers
 * (pipeline mode, once they matched its log), then only heartbeats. The
 * leader had moved the followers' next index past the dropped entry when it
 * prepared its AppendEntries (never sent): 0.22.1 with 0002 asserted
 * `p->next_index <= last_index + 1` in progressShouldReplicate (debug);
 * without assertions it found no previous entry and went to send a
 * snapshot it did not have (the fixture dereferences NULL). Found by the
 * simulation with failing disks (tests/sim, DSIM_IO_FAULTS=1, seed 4).
 */
static void test_leader_append_failure_then_heartbeats(void **state)
{
    struct cluster *c = *state;
    raft_fixture_elect(&c->f, 0);
    register_n(c, 0, 0, 3);
    assert_true(raft_fixture_step_until_applied(&c->f, N, 4, 10000));
    raft_fixture_step_until_elapsed(&c->f, 500); /* the followers matched: pipeline */

    raft_fixture_io_fault(&c->f, 0, 0, 1);
    assert_int_equal(apply_on(c, 0, cmd_register("lost", 1, 50)), 0);
    raft_fixture_step_until_elapsed(&c->f, 1000); /* heartbeats, nothing new */
    assert_int_equal(c->failed, 1);
    assert_int_equal(raft_state(server(c, 0)), RAFT_LEADER);

    register_n(c, 0, 3, 3);
    assert_true(raft_fixture_step_until_applied(&c->f, N, 7, 10000));
    assert_int_equal(c->acked, 6);
    assert_null(rd_fsm_node(&c->fsms[2], "lost", 4));
    assert_converged(c);
}

/*
 * Patch 0011, configuration side: a leader's removal of a server, whose
 * append is refused. The core had built its progress array for the new
 * configuration (two servers); 0002 rolled the configuration back to the
 * committed one (three) and kept the array of two, which the leader then
 * read past for the third server.
 */
static void test_leader_removal_append_failure(void **state)
{
    struct cluster *c = *state;
    raft_fixture_elect(&c->f, 0);
    register_n(c, 0, 0, 3);
    assert_true(raft_fixture_step_until_applied(&c->f, N, 4, 10000));
    raft_fixture_step_until_elapsed(&c->f, 500);

    struct raft_change change;
    raft_fixture_io_fault(&c->f, 0, 0, 1);
    assert_int_equal(raft_remove(server(c, 0), &change, 2, NULL), RAFT_IOERR);
    assert_int_equal(server(c, 0)->configuration.n, N);
    raft_fixture_step_until_elapsed(&c->f, 1000);
    assert_int_equal(raft_state(server(c, 0)), RAFT_LEADER);

    register_n(c, 0, 3, 3);
    assert_true(raft_fixture_step_until_applied(&c->f, N, 7, 10000));
    assert_int_equal(c->acked, 6);
    assert_converged(c);
}

/*
 * Patch 0002, follower side: a follower whose append fails while it handles
 * AppendEntries. Stock 0.22.1 freed the received batch twice (glibc aborts:
 * "double free detected") and kept its core and log out of step.
 */
static void test_follower_append_failure_recovers(void **state)
{
    struct cluster *c = *state;
    raft_fixture_elect(&c->f, 0);
    register_n(c, 0, 0, 3);
    assert_true(raft_fixture_step_until_applied(&c->f, N, 4, 10000));

    /* Follower 1's next I/O requests (appends of the next entries) fail,
     * twice in a row: the leader must send them again. */
    raft_fixture_io_fault(&c->f, 1, 0, 2);
    register_n(c, 0, 3, 6);
    assert_true(raft_fixture_step_until_applied(&c->f, N, 10, 20000));
    assert_int_equal(c->acked, 9);
    assert_int_equal(c->fsms[1].n_nodes, 9);
    assert_converged(c);

    /* And it keeps replicating. */
    register_n(c, 0, 9, 4);
    assert_true(raft_fixture_step_until_applied(&c->f, N, 14, 10000));
    assert_converged(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_install_held_during_own_snapshot_is_applied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_leader_append_failure_then_more_writes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_leader_append_failure_then_heartbeats, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_leader_removal_append_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follower_append_failure_recovers, setup, teardown),
    };
    /* One test at a time (against the stock library each one crashes). */
    if (getenv("RD_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("RD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
