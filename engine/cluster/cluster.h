/*
 * The engine replicas as this replica sees them (soft state, every replica):
 * each other member of raft's configuration is asked for GET /health every
 * RD_CLUSTER_POLL_MS over HTTP, which says whether it is reachable from here,
 * its role, term and applied index. That view answers `quorum.replicas` in
 * GET /api/v1/health/cluster and decides what a partition of the engine
 * itself looks like:
 *
 * - on the leader, a voter unreachable for longer than
 *   fault_tolerance.partition.alert_after is recorded as a `partition` fault
 *   (metadata.replica_id), resolved when it answers again;
 * - on a replica without quorum (no leader known, a majority of voters
 *   unreachable) for that long, nothing can be committed: it alerts through
 *   the alert plugins (NoQuorum), resolved when quorum is back.
 *
 * Loop-thread only.
 */
#ifndef RD_CLUSTER_H
#define RD_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "fsm/fsm.h"

#define RD_CLUSTER_POLL_MS 500

struct rd_config;
struct rd_httpc;
struct rd_plugin_host;
struct rd_replica;

struct rd_peer {
    uint64_t id;
    bool polled;    /* asked at least once */
    bool answered;  /* answered at least once (its indexes are real) */
    bool in_flight; /* a /health request is out */
    bool reachable; /* the last answer came, and recently */
    uint64_t last_ok_ns;
    uint64_t rtt_ns;               /* of the last answered poll */
    uint64_t unreachable_since_ns; /* 0 while reachable */
    char role[16];                 /* leader, follower, candidate (its own word) */
    uint64_t term;
    uint64_t applied_index;
    uint64_t commit_index;
    char fault_id[40]; /* the partition fault opened for it, "" when none */
    bool fault_proposing;
};

/* Where a rejoin stands (rd_cluster_rejoin). */
enum rd_rejoin_phase {
    RD_REJOIN_NONE = 0,
    RD_REJOIN_LEAVING,     /* asking the leader to demote this replica (raft not running here) */
    RD_REJOIN_CATCHING_UP, /* raft runs empty, as a standby: the leader sends the log */
    RD_REJOIN_RETURNING,   /* caught up: asking the leader to make it a voter again */
    RD_REJOIN_DONE,
};

#define RD_REJOIN_MAX_URLS (2 * RD_CFG_MAX_PEERS + 2)

struct rd_rejoin {
    enum rd_rejoin_phase phase;
    int previous_role; /* the role before (RAFT_VOTER, ...); -1 until the leader said */
    bool member;       /* the leader knows this replica (false: it waits to be added) */
    char urls[RD_REJOIN_MAX_URLS][RD_CFG_STR]; /* the other members' API URLs */
    unsigned n_urls, next_url;
    char redirect[RD_CFG_STR + 96]; /* a 307's target, asked next */
    bool in_flight;
    bool timer_on;
    uv_timer_t timer;
    uint64_t since_ns, last_warn_ns, tries;
    char last_error[256];
    /* Told once the leader demoted this replica: starts raft empty (0), or
     * fails (an RD_E* code: the rejoin stops). */
    int (*left)(void *data);
    void *left_data;
};

struct rd_cluster {
    uv_loop_t *loop;
    const struct rd_config *cfg;
    const struct rd_fsm *fsm;      /* replica URLs and open faults in the log */
    struct rd_replica *replica;    /* membership, leadership, the way into the log */
    struct rd_plugin_host *alerts; /* NoQuorum goes out through the alert plugins */
    struct rd_httpc *httpc;        /* polls of the other replicas; NULL while stopped */
    uv_timer_t timer;
    bool started;
    struct rd_peer peers[RD_FSM_MAX_REPLICAS];
    unsigned n_peers;
    uint64_t no_quorum_since_ns; /* 0 while this replica has quorum */
    bool no_quorum_alerted;
    bool resolving_stale; /* a stale replica partition fault's resolve is in flight */
    uint64_t polls_total;
    uint64_t polls_failed;
    struct rd_rejoin rejoin;
};

/* Everything it reads or acts through, explicitly; all outlive it. */
void rd_cluster_init(struct rd_cluster *c, uv_loop_t *loop, const struct rd_config *cfg,
                     const struct rd_fsm *fsm, struct rd_replica *replica,
                     struct rd_plugin_host *alerts);
/* Starts polling the other replicas through `httpc`. */
void rd_cluster_start(struct rd_cluster *c, struct rd_httpc *httpc);
/* Stops polling and cancels the polls in flight (before `httpc` closes). */
void rd_cluster_stop(struct rd_cluster *c);

/* API URL of replica `id` when known: from the log (replica_info), from
 * cluster.peers, or this replica's own listen address; else NULL. The
 * string is valid until the next call or the next applied command. */
const char *rd_cluster_api_url(struct rd_cluster *c, uint64_t id);

/* What this replica last learnt of replica `id` (not itself), or NULL. */
const struct rd_peer *rd_cluster_peer(struct rd_cluster *c, uint64_t id);

/* True when a leader is known and a majority of the voters are reachable
 * from here (this replica counts itself). */
bool rd_cluster_has_quorum(struct rd_cluster *c);

/*
 * True when this replica has applied everything the leader had committed
 * when it last answered (the leader itself: its own commit index). A
 * follower's own commit index only covers the entries it already has, so
 * after a partition it would look caught up while it is not.
 */
bool rd_cluster_caught_up(struct rd_cluster *c, uint64_t *leader_commit);

/*
 * The strict reconfiguration check (etcd's): may member `id` become `role`
 * (RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE), or be removed (role -1)? A change
 * that takes a voter away is refused with RD_ECONFLICT when it would leave no
 * voter (nothing could ever be elected or committed again), or fewer voters
 * reachable from here than a quorum of the new configuration (this replica
 * counts itself; another counts once it has answered and while it answers).
 * `why` (n bytes) then says which, in the operator's words. Changes that add
 * voters are not checked here: libraft catches a new voter up before it
 * counts.
 */
int rd_cluster_check_change(struct rd_cluster *c, uint64_t id, int role, char *why, size_t n);

/*
 * Rejoins the cluster from the other replicas, safely (issue 11): this
 * replica's state is (or is about to be) gone, and a voter with an empty
 * log could elect a leader that lacks committed entries. So:
 *
 * 1. leave: POST /api/v1/cluster/replicas/{self}/rejoin {"phase":"leave"}
 *    to the peers (cluster.peers, the members in the acknowledged mark, the
 *    URLs in the log), following 307 to the leader, retrying every 300 ms
 *    until one answers as leader: it demotes this replica to standby (the
 *    strict reconfiguration check applies) and answers once that committed;
 * 2. `left(data)` starts raft here, empty and without bootstrap (the caller
 *    moved the old state aside before, or does it now); a standby never
 *    votes, and libraft grants no vote from a server that is not a voter;
 * 3. once applied up to the leader's commit index (rd_cluster_caught_up),
 *    {"phase":"return","role":"voter"}: the leader catches it up and makes
 *    it a voter again (only when it was one);
 * 4. the rejoin note (<data_dir>/rejoin) is removed: done.
 *
 * Each step is logged; a rejoin interrupted by a crash resumes at the next
 * start (the note says so; `reason` goes into a note written here when
 * there is none yet, before anything moves). `httpc` must outlive it (rd_cluster_stop ends it).
 * 0, or RD_EBUSY (one is running) / RD_EINVAL (no peer URL known).
 */
int rd_cluster_rejoin(struct rd_cluster *c, struct rd_httpc *httpc, const char *reason,
                      int (*left)(void *data), void *data);

/* The rejoin's phase (RD_REJOIN_NONE when none ran). */
enum rd_rejoin_phase rd_cluster_rejoin_phase(const struct rd_cluster *c);

/* [{"id","address","role","voter_role","reachable","applied_index","term","api_url"}]. */
json_t *rd_cluster_replicas_json(struct rd_cluster *c);

struct rd_mbuf;
/* recoveryd_peer_up{peer} and recoveryd_peer_rtt_seconds{peer}: each other
 * member as the polls see it (docs/operations.md, "Metrics"). */
void rd_cluster_metrics(struct rd_cluster *c, struct rd_mbuf *b);

#endif
