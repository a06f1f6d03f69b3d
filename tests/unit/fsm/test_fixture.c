/*
 * The state machine under libraft's in-memory cluster (raft/fixture.h):
 * three replicas, no sockets, no clocks. Every replica that applies the same
 * log must hold byte-identical state, through leader loss, a disconnected
 * replica catching up by log and by snapshot, and a replica that restarts.
 */
#include "cmocka_all.h"

#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cluster.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

static bool all_have_a3_epoch2(struct raft_fixture *f, void *arg)
{
    struct cluster *c = arg;
    for (unsigned i = 0; i < N; i++) {
        const struct rd_node *n = rd_fsm_node(&c->fsms[i], "a3", 2);
        if (n == NULL || n->epoch != 2)
            return false;
    }
    return c->acked == 11;
}

static void wait_applied_everywhere(struct cluster *c, raft_index idx)
{
    assert_true(raft_fixture_step_until_applied(&c->f, N, idx, 10000));
}

static void elect(struct cluster *c, unsigned i)
{
    raft_fixture_elect(&c->f, i);
    assert_int_equal(raft_fixture_leader_index(&c->f), i);
}

static void test_replicas_hold_identical_state(void **state)
{
    struct cluster *c = *state;
    elect(c, 0);
    char id[32];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "agent-%d", i % 13);
        propose(c, cmd_register(id, 2, 100 + i));
    }
    propose(c, cmd_transition("agent-3", 99, RD_NODE_FAILED, 200)); /* fenced */
    /* Bootstrap configuration is entry 1; the 41 commands are 2..42. */
    wait_applied_everywhere(c, 42);
    assert_int_equal(c->acked, 40);
    assert_int_equal(c->refused, 1);
    assert_int_equal(c->fsms[2].n_nodes, 13);
    /* agent-0 registered at i = 0, 13, 26, 39: epoch 4 everywhere */
    for (unsigned s = 0; s < N; s++)
        assert_int_equal(rd_fsm_node(&c->fsms[s], "agent-0", 7)->epoch, 4);
    assert_converged(c);
}

static void test_leader_loss_keeps_committed_state(void **state)
{
    struct cluster *c = *state;
    elect(c, 0);
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof(id), "a%d", i);
        propose(c, cmd_register(id, 1, i));
    }
    assert_true(raft_fixture_step_until_applied(&c->f, N, 11, 10000));
    /* Depose the leader; another one takes over and keeps every entry. */
    raft_fixture_depose(&c->f);
    assert_true(raft_fixture_step_until_has_leader(&c->f, 10000));
    unsigned li = raft_fixture_leader_index(&c->f);
    assert_true(li < N);
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof(id), "a%d", i);
        assert_non_null(rd_fsm_node(&c->fsms[li], id, strlen(id)));
    }
    propose(c, cmd_register("a3", 1, 50));
    assert_true(raft_fixture_step_until(&c->f, all_have_a3_epoch2, c, 10000));
    assert_int_equal(c->last_value, 2);
    assert_converged(c);
}

static void test_lagging_replica_catches_up_by_log_and_snapshot(void **state)
{
    struct cluster *c = *state;
    for (unsigned i = 0; i < N; i++) {
        raft_set_snapshot_threshold(raft_fixture_get(&c->f, i), 16);
        raft_set_snapshot_trailing(raft_fixture_get(&c->f, i), 4);
    }
    elect(c, 0);
    /* Cut replica 2 off; the majority keeps committing far past a snapshot. */
    raft_fixture_disconnect(&c->f, 0, 2);
    raft_fixture_disconnect(&c->f, 1, 2);
    for (int i = 0; i < 100; i++) {
        char id[32];
        snprintf(id, sizeof(id), "n%03d", i % 37);
        propose(c, cmd_register(id, 1, 1000 + i));
    }
    assert_true(raft_fixture_step_until_applied(&c->f, 1, 101, 20000));
    assert_int_equal(c->fsms[2].n_nodes, 0);
    assert_true(rd_fsm_digest(&c->fsms[0]) != rd_fsm_digest(&c->fsms[2]));
    /* Heal: replica 2 must be sent a snapshot (its entries were compacted). */
    raft_fixture_reconnect(&c->f, 0, 2);
    raft_fixture_reconnect(&c->f, 1, 2);
    wait_applied_everywhere(c, 101);
    assert_true(c->fsms[2].restores >= 1); /* it did take the snapshot path */
    assert_int_equal(c->fsms[2].n_nodes, 37);
    assert_converged(c);
    /* Restored from a snapshot, it still knows the index it applies. */
    propose(c, cmd_check("after-snapshot", 3000));
    raft_index at = raft_last_index(server(c, raft_fixture_leader_index(&c->f)));
    wait_applied_everywhere(c, at);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(rd_fsm_check_find(&c->fsms[i], "after-snapshot")->index, at);
        assert_int_equal(rd_fsm_check_local(&c->fsms[i], "after-snapshot")->index, at);
    }
}

struct entries {
    uint64_t last_index;
    unsigned n;
    bool in_order;
};

static void on_entry(void *data, uint64_t index, int64_t time_ms, const void *buf, size_t len)
{
    struct entries *e = data;
    struct rd_cmd cmd;
    e->in_order = e->in_order && index > e->last_index && rd_cmd_decode(buf, len, &cmd) == 0 &&
                  cmd.time_ms == time_ms;
    e->last_index = index;
    e->n++;
}

/* A consistency check lands at one raft index, the same on every replica,
 * and every replica digests the same state there; the entry observer sees
 * each command with its index. */
static void test_check_at_the_same_index_everywhere(void **state)
{
    struct cluster *c = *state;
    struct entries seen[N];
    for (unsigned i = 0; i < N; i++) {
        seen[i] = (struct entries){.in_order = true};
        c->fsms[i].on_entry = on_entry;
        c->fsms[i].on_entry_data = &seen[i];
    }
    elect(c, 1);
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof(id), "a%d", i);
        propose(c, cmd_register(id, 1, 100 + i));
    }
    propose(c, cmd_check("k1", 200));
    raft_index at = raft_last_index(server(c, 1));
    propose(c, cmd_register("after", 1, 300));
    wait_applied_everywhere(c, at + 1);
    uint64_t d = rd_fsm_check_local(&c->fsms[0], "k1")->digest;
    for (unsigned i = 0; i < N; i++) {
        const struct rd_check *k = rd_fsm_check_find(&c->fsms[i], "k1");
        assert_non_null(k);
        assert_int_equal(k->index, at);
        const struct rd_check_local *l = rd_fsm_check_local(&c->fsms[i], "k1");
        assert_int_equal(l->index, at);
        assert_true(l->digest == d);
        assert_int_equal(seen[i].n, 7);
        assert_true(seen[i].in_order);
        assert_int_equal(seen[i].last_index, at + 1);
        assert_int_equal(c->fsms[i].applying_index, 0); /* only during apply */
    }
    assert_converged(c);
}

static void test_killed_replica_revives_and_converges(void **state)
{
    struct cluster *c = *state;
    elect(c, 0);
    propose(c, cmd_register("x", 1, 1));
    wait_applied_everywhere(c, 2);
    raft_fixture_kill(&c->f, 1);
    for (int i = 0; i < 20; i++)
        propose(c, cmd_transition("x", 0, i % 2 ? RD_NODE_SUSPECT : RD_NODE_ALIVE, 10 + i));
    assert_true(raft_fixture_step_until_applied(&c->f, 0, 22, 10000));
    raft_fixture_revive(&c->f, 1);
    wait_applied_everywhere(c, 22);
    assert_int_equal(rd_fsm_node(&c->fsms[1], "x", 1)->state, RD_NODE_SUSPECT);
    assert_converged(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replicas_hold_identical_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_loss_keeps_committed_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lagging_replica_catches_up_by_log_and_snapshot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_killed_replica_revives_and_converges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_at_the_same_index_everywhere, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
