/*
 * Whether a leader's state is current. libraft makes a replica leader as
 * soon as it wins its election, before it knows which entries of its log
 * are committed: it appends a no-op only when its log holds entries past its
 * commit index, and reports nothing when that no-op is applied. Until the
 * leader has applied an entry of its own term, its state machine may lack
 * writes the previous leader acknowledged (Raft dissertation, 6.4), and a
 * handler that answers 404 or 409 fenced from it would answer wrong.
 *
 * The gate appends a barrier of the leader's term and opens once libraft
 * applied it (everything before it is then applied too). It stays open for
 * that term only. The sole voter of a cluster of one needs no barrier: it
 * counts everything it stored committed when it takes over, and has
 * applied it (a full disk must not stop its reads). Loop-thread only.
 */
#ifndef RD_GATE_H
#define RD_GATE_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

struct rd_leader_gate {
    struct raft *raft;
    uint64_t open_term;    /* the term whose barrier was applied while leading; 0 none */
    uint64_t barrier_term; /* the term of the barrier in flight; 0 none */
    struct raft_barrier req;
    /* After each barrier ends: 0 (applied) or libraft's error. */
    void (*done)(void *data, int status);
    void *data;
};

void rd_leader_gate_init(struct rd_leader_gate *g, struct raft *raft,
                         void (*done)(void *data, int status), void *data);
/* True while `raft` leads and has applied a barrier of its current term. */
bool rd_leader_gate_open(const struct rd_leader_gate *g);
/* A barrier is in flight. */
bool rd_leader_gate_busy(const struct rd_leader_gate *g);
/*
 * Starts a barrier of the current term unless the gate is open or one is in
 * flight: 0, or libraft's error (RAFT_NOTLEADER, a storage error) with
 * nothing started and `done` not called.
 */
int rd_leader_gate_kick(struct rd_leader_gate *g);

#endif
