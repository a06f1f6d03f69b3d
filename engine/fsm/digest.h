/*
 * The state digest (digest.c): one 64-bit value that replicas holding the
 * same state agree on, maintained on every apply so that reading it costs
 * the same at 1k and at 1M records (issue 11; DESIGN.md decision 9). Part of
 * the state machine's API: include fsm.h.
 *
 * Every record (node, fault, task, recovery run, backup, check) carries the
 * hash of its own serialised bytes (the bytes its snapshot section holds for
 * it); the machine keeps, per kind, the sum of those hashes (mod 2^64). The
 * digest mixes the sums and counts with the scalar state (applied count,
 * newest time, fault sequence, replica URLs, cluster id, archive position).
 * A command that changes a record takes the record's hash out of the sum
 * before it changes it; its new hash goes in later, once for all the
 * changes made meanwhile (rd_fsm__dg_touch, rd_fsm__dg_commit in
 * fsm_int.h: when more than RD_DG_PENDING_MAX records wait), so a digest
 * never walks the state. rd_fsm_digest_full() computes the same value from
 * scratch: it catches a record changed without its hash following (a bug
 * in apply, memory corruption) that the incremental digest cannot see.
 *
 * The sum does not see the order of records kept in insertion order (faults,
 * recovery runs, backups, checks); their order follows from fields inside
 * each record (sequence numbers, times) that it does see.
 */
#ifndef RD_FSM_DIGEST_H
#define RD_FSM_DIGEST_H

#include <stddef.h>
#include <stdint.h>

struct rd_fsm;

/* The record kinds that carry their own hash. */
enum rd_dg_kind {
    RD_DG_NODE = 0,
    RD_DG_FAULT,
    RD_DG_TASK,
    RD_DG_RECOVERY,
    RD_DG_BACKUP,
    RD_DG_CHECK,
    RD_DG_AUDIT,
    RD_DG_CONFLICT,
    RD_DG_KINDS
};

/* Changed records whose new hashes may wait before they are taken (the
 * bound on what a digest hashes on the spot: about a millisecond of work). */
#define RD_DG_PENDING_MAX 1024

/* In every record: its term of the digest (local bookkeeping, not state;
 * never serialised). */
struct rd_dg {
    uint64_t hash;    /* the record's hash as the sums hold it */
    uint32_t touched; /* its place on the pending list + 1; 0 when not on it */
};

/* The digest of the state: maintained on every apply and restore; costs
 * the hashes of the records changed since the last flush (at most
 * RD_DG_PENDING_MAX, plus what the current command touched), never a walk
 * of the state. */
uint64_t rd_fsm_digest(const struct rd_fsm *f);

/* The same digest recomputed from every record's bytes: O(state). Equal to
 * rd_fsm_digest() unless a record changed without its hash following. */
uint64_t rd_fsm_digest_full(const struct rd_fsm *f);

/*
 * Recomputes every record's hash and the sums from the state as it is (the
 * occasional full recomputation: the state machine runs it at every
 * snapshot). Where a kept hash or a sum was wrong (a record changed without
 * its hash following, a corrupted sum) the digest is corrected to what the
 * state holds, so the next consistency check compares the real state with
 * the other replicas'. Returns how many records (or 1 for sums alone) were
 * wrong; 0 when all was right. Never inside an apply.
 */
size_t rd_fsm_digest_audit(struct rd_fsm *f);

#endif
