/*
 * Three replicas of the engine's state machine on libraft's in-memory
 * cluster (raft/fixture.h): no sockets, no clocks, every step deterministic.
 * Shared by the state machine's fixture tests and the tests of the patches
 * the project carries to libraft. Include once, in a test's main file.
 */
#ifndef RD_TEST_FSM_CLUSTER_H
#define RD_TEST_FSM_CLUSTER_H

#include <raft/fixture.h>
#include <stdlib.h>

#include "cmocka_all.h"
#include "fsm/fsm.h"

#define N 3

struct cluster {
    struct raft_fixture f;
    struct rd_fsm fsms[N];
    int acked;   /* apply callbacks with status 0 and a command applied */
    int refused; /* apply callbacks whose command the machine refused */
    int failed;  /* apply callbacks with a raft error */
    uint64_t last_value;
};

static struct cluster *C;

static int setup(void **state)
{
    struct cluster *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    assert_int_equal(raft_fixture_initialize(&c->f), 0);
    for (unsigned i = 0; i < N; i++) {
        rd_fsm_init(&c->fsms[i]);
        assert_int_equal(raft_fixture_grow(&c->f, &c->fsms[i].raft), 0);
        /* As the replica does (engine/replica/replica.c): apply knows the
         * raft index it applies. */
        rd_fsm_bind_raft(&c->fsms[i], raft_fixture_get(&c->f, i));
        /* The fixture traces every step to stdout; keep the output readable. */
        raft_fixture_get(&c->f, i)->tracer = NULL;
    }
    struct raft_configuration conf;
    assert_int_equal(raft_fixture_configuration(&c->f, N, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&c->f, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&c->f), 0);
    C = c;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct cluster *c = *state;
    raft_fixture_close(&c->f);
    for (unsigned i = 0; i < N; i++)
        rd_fsm_close(&c->fsms[i]);
    free(c);
    return 0;
}

static void apply_cb(struct raft_apply *a, int status, void *result)
{
    if (status != 0) {
        C->failed++;
    } else {
        int st;
        uint64_t v;
        rd_fsm_unpack(result, &st, &v);
        if (st == 0)
            C->acked++;
        else
            C->refused++;
        C->last_value = v;
    }
    free(a);
}

static inline struct raft *server(struct cluster *c, unsigned i)
{
    return raft_fixture_get(&c->f, i);
}

/* raft_apply of `w` on server `i`: its return code. On an error the bytes
 * are still ours (raft.h) and are freed here: under the sanitizers a library
 * that had consumed them is a double free, one that kept them a leak. */
static inline int apply_on(struct cluster *c, unsigned i, struct rd_wbuf w)
{
    while (w.len % 8)
        rd_w_u8(&w, 0);
    struct raft_buffer buf = {.base = w.p, .len = w.len};
    struct raft_apply *a = malloc(sizeof(*a));
    assert_non_null(a);
    int rv = raft_apply(server(c, i), a, &buf, 1, apply_cb);
    if (rv != 0) {
        free(a);
        rd_w_free(&w);
    }
    return rv;
}

/* Proposes `w` on the current leader, which must take it. */
static inline void propose(struct cluster *c, struct rd_wbuf w)
{
    unsigned li = raft_fixture_leader_index(&c->f);
    assert_true(li < N);
    assert_int_equal(apply_on(c, li, w), 0);
}

static inline void assert_converged(struct cluster *c)
{
    uint64_t d0 = rd_fsm_digest(&c->fsms[0]);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(c->fsms[i].n_nodes, c->fsms[0].n_nodes);
        assert_true(rd_fsm_digest(&c->fsms[i]) == d0);
        assert_true(rd_fsm_digest_full(&c->fsms[i]) == d0);
    }
}

#endif
