#include <string.h>

#include "gate.h"

void rd_leader_gate_init(struct rd_leader_gate *g, struct raft *raft,
                         void (*done)(void *data, int status), void *data)
{
    memset(g, 0, sizeof(*g));
    g->raft = raft;
    g->done = done;
    g->data = data;
}

/* The only voter: libraft counts everything it stored committed when it
 * takes over and applies it in the same step; nothing can be committed
 * that it does not hold. */
static bool sole_voter(struct raft *r)
{
    unsigned voters = 0;
    for (unsigned i = 0; i < r->configuration.n; i++)
        voters += r->configuration.servers[i].role == RAFT_VOTER;
    return voters == 1 && raft_last_applied(r) >= r->commit_index;
}

bool rd_leader_gate_open(const struct rd_leader_gate *g)
{
    if (raft_state(g->raft) != RAFT_LEADER)
        return false;
    return (g->open_term != 0 && g->open_term == raft_current_term(g->raft)) || sole_voter(g->raft);
}

bool rd_leader_gate_busy(const struct rd_leader_gate *g)
{
    return g->barrier_term != 0;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct rd_leader_gate *g = req->data;
    uint64_t term = g->barrier_term;
    g->barrier_term = 0;
    /* Applied: every entry before it is applied, those the leaders of
     * earlier terms committed included. Only for the term it was made in. */
    if (status == 0 && raft_state(g->raft) == RAFT_LEADER && raft_current_term(g->raft) == term)
        g->open_term = term;
    if (g->done != NULL)
        g->done(g->data, status);
}

int rd_leader_gate_kick(struct rd_leader_gate *g)
{
    if (rd_leader_gate_open(g) || rd_leader_gate_busy(g))
        return 0;
    if (raft_state(g->raft) != RAFT_LEADER)
        return RAFT_NOTLEADER;
    memset(&g->req, 0, sizeof(g->req));
    g->req.data = g;
    uint64_t term = raft_current_term(g->raft);
    int rv = raft_barrier(g->raft, &g->req, barrier_cb);
    if (rv == 0)
        g->barrier_term = term;
    return rv;
}
