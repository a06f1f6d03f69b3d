/*
 * Consistency checks, the leader's side (DESIGN.md decision 9). A check is
 * a log command (RD_CMD_CHECK): every replica computes its state digest when
 * it applies that entry, so the digests compare the replicas at exactly the
 * same index. The leader proposes one every
 * fault_tolerance.backup.consistency_check_interval and on request, then
 * gathers the digests (its own from the state machine's local ring, the
 * others' from GET /api/v1/consistency/checks/{id}/local on each voter),
 * decides, and commits the verdict (RD_CMD_CHECK_RESULT):
 *
 * - the digest more than half of the voters report is the majority's; a
 *   replica that answered another digest has diverged. With no majority
 *   digest (too few answers, or a split) nothing is judged: "incomplete".
 *   A majority never repairs itself from a minority.
 * - a diverged replica gets a critical `data_corruption` fault
 *   (metadata.replica_id; alert DataInconsistent) and is repaired: applying
 *   that fault, the replica it names moves its state aside and rejoins from the
 *   leader's snapshot. A diverged leader hands its leadership to a replica
 *   of the majority first; the next leader repairs it.
 * - the fault is resolved by the next check in which the replica reports
 *   the majority digest. Once it is back (a voter, caught up) the leader
 *   checks again.
 *
 * Loop-thread only.
 */
#ifndef RD_CONSISTENCY_H
#define RD_CONSISTENCY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "fsm/fsm.h"
#include "metrics/metrics.h"
#include "replica/replica.h"

struct rd_cluster;
struct rd_config;
struct rd_httpc;

/* How long the leader waits for the replicas' digests. */
#define RD_CONSISTENCY_WAIT_MS 10000
/* A replica back from its repair is checked again at most this often. */
#define RD_CONSISTENCY_RECHECK_MS 3000
/* How often it asks the ones that have not answered yet. */
#define RD_CONSISTENCY_POLL_MS 200

/* What the module reads and acts through, given at init; all outlive it. */
struct rd_consistency_env {
    uv_loop_t *loop;
    const struct rd_config *cfg;
    const struct rd_fsm *fsm;
    struct rd_proposer log;
    struct rd_replica *replica; /* voters, this replica's id, leadership handover */
    struct rd_cluster *cluster; /* the other replicas' API URLs */
};

/* One replica's answer for the check being gathered. */
struct rd_digest_answer {
    uint64_t id;
    bool answered;
    bool in_flight;
    uint64_t digest;
};

struct rd_consistency {
    struct rd_consistency_env env;
    struct rd_httpc *httpc; /* NULL while stopped */
    uv_timer_t timer;       /* the schedule and the gathering */
    bool started;
    bool proposing;            /* a check (or its verdict) is being committed */
    uint64_t next_check_ns;    /* monotonic; 0 = not scheduled (not leader) */
    uint64_t recheck_after_ns; /* no re-check of a repaired replica before (monotonic) */
    struct {
        bool active;
        char id[65];
        uint64_t index;
        uint64_t deadline_ns;
        struct rd_digest_answer r[RD_FSM_MAX_REPLICAS];
        unsigned n;
    } g;                                          /* the check whose digests are being gathered */
    uint64_t checks_total[RD_CHECK_STATUS_COUNT]; /* verdicts committed by this leader */
    uint64_t repairs_total; /* diverged replicas named (each then repairs itself) */
    uint64_t last_check_ms; /* wall clock of the last verdict committed here */
};

void rd_consistency_init(struct rd_consistency *c, const struct rd_consistency_env *env);
/* Starts the schedule (checks run while this replica leads). */
int rd_consistency_start(struct rd_consistency *c, struct rd_httpc *httpc);
/* Stops it and cancels requests in flight (before `httpc` closes). */
void rd_consistency_stop(struct rd_consistency *c);
void rd_consistency_close(struct rd_consistency *c);

/*
 * Proposes a check now (leader only). `cb` fires once it committed, with
 * its id and raft index, or with the error (RD_ENOTLEADER, ...). While a
 * check is being gathered, that one answers (`cb` fires before this
 * returns). 0, or RD_E* (`cb` not called): RD_ECONFLICT while a check is
 * being proposed and not yet committed.
 */
typedef void (*rd_consistency_cb)(void *data, int status, const char *id, uint64_t index);
int rd_consistency_trigger(struct rd_consistency *c, rd_consistency_cb cb, void *data);

/*
 * The verdict over `n` answers from a configuration of `voters` voters:
 * RD_CHECK_CONSISTENT, RD_CHECK_MISMATCH (the ids that differ from the
 * majority digest in `diverged`, their count in `*n_diverged`) or
 * RD_CHECK_INCOMPLETE (no digest reported by more than half of the voters).
 * `*majority` is the majority digest when there is one.
 */
int rd_consistency_decide(const struct rd_digest_answer *a, unsigned n, unsigned voters,
                          uint64_t *majority, uint64_t *diverged, unsigned *n_diverged);

/*
 * The replica an open data_corruption fault of a consistency check names
 * (metadata.replica_id), or 0 for any other fault; with it the check's
 * index and id (`check`, n bytes) when asked for (NULL: not wanted).
 */
struct rd_fault;
uint64_t rd_consistency_fault_replica(const struct rd_fault *x, uint64_t *index, char *check,
                                      size_t n);

/* Prometheus lines. */
void rd_consistency_metrics(const struct rd_consistency *c, struct rd_mbuf *b);

#endif
