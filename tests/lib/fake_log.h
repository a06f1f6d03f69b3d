/*
 * A fake way into the log for module unit tests (struct rd_proposer): what
 * a module proposes is queued, and fake_log_step() commits it in order to a
 * real state machine and answers each proposer, the way raft commits later.
 */
#ifndef RD_TEST_FAKE_LOG_H
#define RD_TEST_FAKE_LOG_H

#include "cmocka_all.h"

#include <string.h>

#include "fsm/fsm.h"
#include "replica/replica.h"

struct fake_queued {
    struct rd_wbuf w;
    rd_submit_cb cb;
    void *data;
};

struct fake_log {
    struct rd_fsm *fsm;
    bool follower; /* true: not the leader, proposals refused */
    /* true: proposals are taken, then refused (RD_ENOTLEADER) by the next
     * step, nothing applied: a leader whose raft refuses the group's entry
     * during a leadership transfer. */
    bool refusing;
    /* true: proposals are refused at once (RD_EIO), nothing queued: a
     * leader whose disk hangs (the replica's storage gate refuses every
     * write while a log write has not completed for 3 s). */
    bool stalled;
    unsigned stalled_refusals; /* proposals refused so */
    struct fake_queued q[512];
    size_t n;
    unsigned proposals;
    uint8_t types[4096]; /* the command type of each proposal, in order */
};

static inline bool fake_log_is_leader(void *data)
{
    return !((struct fake_log *)data)->follower;
}

static inline int fake_log_propose(void *data, const struct rd_cmd *cmd, rd_submit_cb cb,
                                   void *cb_data)
{
    struct fake_log *l = data;
    if (l->follower)
        return RD_ENOTLEADER;
    if (l->stalled) {
        l->stalled_refusals++;
        return RD_EIO;
    }
    assert_true(l->n < sizeof(l->q) / sizeof(l->q[0]));
    struct rd_cmd c = *cmd;
    if (c.time_ms == 0)
        c.time_ms = rd_fsm_stamp(l->fsm);
    struct fake_queued *x = &l->q[l->n++];
    rd_w_init(&x->w);
    assert_int_equal(rd_cmd_encode(&c, &x->w), 0);
    x->cb = cb;
    x->data = cb_data;
    if (l->proposals < sizeof(l->types))
        l->types[l->proposals] = (uint8_t)c.type;
    l->proposals++;
    return 0;
}

static inline struct rd_proposer fake_log_proposer(struct fake_log *l)
{
    return (struct rd_proposer){
        .data = l, .is_leader = fake_log_is_leader, .propose = fake_log_propose};
}

/* Commits what was proposed, in order (and what that proposes in turn),
 * answering each proposer with the machine's verdict. While `refusing`, one
 * turn of the loop instead: what was proposed before the step is answered
 * RD_ENOTLEADER; what those answers propose waits for the next step. */
static inline void fake_log_step(struct fake_log *l)
{
    if (l->refusing) {
        for (size_t turn = l->n; turn > 0 && l->n > 0; turn--) {
            struct fake_queued x = l->q[0];
            memmove(l->q, l->q + 1, (l->n - 1) * sizeof(l->q[0]));
            l->n--;
            rd_w_free(&x.w);
            x.cb(x.data, RD_ENOTLEADER, 0);
        }
        return;
    }
    while (l->n > 0) {
        struct fake_queued x = l->q[0];
        memmove(l->q, l->q + 1, (l->n - 1) * sizeof(l->q[0]));
        l->n--;
        const struct rd_fsm_result *res = NULL;
        assert_int_equal(rd_fsm_apply(l->fsm, x.w.p, x.w.len, &res), 0);
        rd_w_free(&x.w);
        x.cb(x.data, res->status, res->value);
    }
}

/* Applies `c` to the machine directly (what no module under test proposes:
 * registrations, submissions). */
static inline const struct rd_fsm_result *fake_log_apply(struct fake_log *l, struct rd_cmd c)
{
    if (c.time_ms == 0)
        c.time_ms = rd_fsm_stamp(l->fsm);
    struct rd_wbuf b;
    rd_w_init(&b);
    assert_int_equal(rd_cmd_encode(&c, &b), 0);
    const struct rd_fsm_result *res = NULL;
    assert_int_equal(rd_fsm_apply(l->fsm, b.p, b.len, &res), 0);
    rd_w_free(&b);
    return res;
}

#endif
