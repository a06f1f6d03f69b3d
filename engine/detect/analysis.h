/*
 * Fault analysis: turns detector observations (soft state) into committed
 * decisions. Per agent it correlates the heartbeat, probe and metrics
 * signals into a state (alive -> suspect -> failed; probation back to
 * alive), a fault_type and a severity_level, with flap damping, and guards
 * against mass failure: when a large share of agents goes bad at once it
 * assumes a partition and stops failing more of them. Observations are
 * judged in batches (all those of one loop turn), so that the guard has
 * counted every agent a detector reported before it judges any. Leader only;
 * loop-thread only. Every decision is a log command, fenced by the epoch and
 * the state it was decided on.
 */
#ifndef RD_ANALYSIS_H
#define RD_ANALYSIS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "fsm/cmd.h"
#include "metrics/metrics.h"
#include "recoveryd/plugin.h"
#include "registry/registry.h"
#include "replica/replica.h"

struct rd_config;
struct rd_fsm;
struct rd_plugin_host;
struct rd_node;
struct rd_registry;
struct rd_soft;
struct rd_mbuf;

#define RD_GUARD_EVENTS 4096
/* Every this many ticks the tick walks every agent (a backstop behind the
 * watch list: 10 s at the 100-ms tick). */
#define RD_ANALYSIS_WALK_TICKS 100

/*
 * The analysis's own soft state of a node: the latest verdict of each
 * signal and what it decided, in its table by registry slot (reset when the
 * registry's generation of the node changes).
 */
struct rd_detect {
    uint64_t generation;   /* rd_soft.generation this belongs to */
    struct rd_soft *soft;  /* the registry's part of the node (set on each use) */
    int8_t hb;             /* enum rd_verdict of each signal */
    uint64_t hb_failed_ns; /* when the heartbeat verdict became failed, 0 while it is not */
    int8_t probe;
    int8_t metrics_verdict;
    uint8_t probe_cause; /* enum rd_probe_cause of the last failed probe */
    bool predicted;      /* the metrics detector predicts a failure */
    double predicted_eta_ms;
    double predicted_trend; /* the predicting metric's rise per second */
    double phi;             /* last value the heartbeat detector reported */
    uint64_t bad_since_ns;  /* start of the current episode of trouble, 0 = none */
    bool proposing;         /* a proposal for this node is being committed */
    bool proposing_down;    /* ... and it takes the node out of service (suspect, failed) */
    bool held;              /* counted in rd_analysis.held (rd_analysis_troubled) */
    bool warn_open;         /* a fault that leaves the node's state alone is open */
    bool warn_predicted;    /* ... and one of them records a prediction */
    uint8_t n_flaps;        /* entries into suspect/failed in flap_times */
    uint64_t flap_times[16];
    char detail[160]; /* the last detector's human line */
    char metric[32];  /* the metric behind a metrics verdict */
    /* Counted in rd_analysis.troubled: working (alive, on probation or
     * draining) by the state machine, but a verdict says it is in trouble
     * (its failure not applied yet, if one was decided). */
    bool troubled;
    /* When its failure went to the log (0: none in it): a guard event,
     * from that time, once it applies. */
    uint64_t failure_proposed_ns;
    bool queued;  /* observed in this batch, not judged yet (rd_analysis_flush) */
    bool watched; /* its slot is in rd_analysis.watch: the tick looks at it */
};

struct rd_analysis {
    uv_loop_t *loop;
    const struct rd_config *cfg;
    const struct rd_fsm *fsm;         /* read: nodes, counts, open faults */
    struct rd_registry *registry;     /* the nodes' soft state */
    struct rd_proposer log;           /* leadership, and the way into the log */
    uint64_t (*clock)(void);          /* monotonic ns: rd_mono_ns, or a test's fake clock */
    struct rd_plugin_host *detectors; /* heartbeats fan out to the detector plugins */
    uv_timer_t tick;
    bool started;
    bool partition_suspected;
    bool partition_proposing;
    char partition_fault_id[40];
    uint64_t partition_since_ns;
    /* The log refused the partition's record (a leadership transfer
     * refuses every entry for a while): its open, or the resolve of the
     * record named here (""). The next tick proposes it again. */
    bool partition_unfiled;
    char partition_unresolved[40];
    /* When the failures this leader decided and the log applied were
     * decided, newest last, for the guard (until it applies, a failing
     * agent counts as suspect, or troubled). */
    uint64_t events[RD_GUARD_EVENTS];
    unsigned n_events;
    /* Working agents the detectors see in trouble (rd_detect.troubled):
     * suspects whose transition is not proposed or not committed yet, and
     * failing agents whose failure has not applied (refused, or waiting
     * for the log: counted all along, never twice). The
     * guard counts them, so it trips on what the detectors see, before the
     * log has caught up (a mass event is one commit per agent). */
    size_t troubled;
    /* Agents placement keeps off (rd_detect.held: a verdict not ok, or a
     * suspect/failed proposal in flight): at 0, as it is most of the time,
     * rd_analysis_troubled answers without looking the agent up. */
    size_t held;
    size_t guard_bad;          /* agents in trouble at the guard's last count */
    struct rd_detect *by_slot; /* its soft state of each node, by registry slot */
    size_t n_by_slot;
    /* The slots the tick looks at (rd_detect.watched, each once): every
     * agent whose soft state was touched since it was last seen clean (a
     * verdict, a proposal, a state change, a heartbeat on probation); it
     * leaves the list at the tick that finds it clean. The tick walks
     * every agent only when this leadership starts, when the list could
     * not grow (ENOMEM), and every RD_ANALYSIS_WALK_TICKS ticks. */
    uint32_t *watch;
    size_t n_watch, cap_watch;
    bool walk_all;
    unsigned ticks_since_walk;
    uint64_t walks_total; /* ticks that walked every agent */
    /* On the duration scale (rd_hist_bounds_long, 100 ms to 30 min). */
    struct rd_hist latency_suspect; /* trouble began -> suspect committed */
    struct rd_hist latency_failed;  /* trouble began -> fault record committed */
    struct rd_hist partition_merge; /* partition suspected -> over (this leader) */
    uint64_t faults_opened[RD_FAULT_TYPE_COUNT][RD_SEV_COUNT];
    uint64_t proposals_total;
    uint64_t proposals_refused;
    uint64_t guard_blocked_total; /* failures held back by the mass-failure guard */
    uint64_t passes_total;        /* periodic passes over the agents (ticks as leader) */
    /* The batch: agents observed since the last flush, not judged yet (their
     * verdicts are recorded, and counted by the guard, at once). Their ids,
     * each ending in '\0', in observation order; an agent is in it once
     * (rd_detect.queued). */
    char *batch;
    size_t batch_len, batch_cap;
    uv_check_t flush_check; /* flushes the batch after the loop turn's callbacks */
    uv_idle_t flush_idle;   /* while a batch waits: the loop's poll does not block */
    bool flush_armed;       /* both are active */
};

/* Everything it reads or proposes through, explicitly; all outlive it. */
void rd_analysis_init(struct rd_analysis *a, uv_loop_t *loop, const struct rd_config *cfg,
                      const struct rd_fsm *fsm, struct rd_registry *registry,
                      struct rd_proposer log, struct rd_plugin_host *detectors);

/* One periodic evaluation (what the leader's timer runs every TICK_MS; a
 * test on a fake clock calls it itself). */
void rd_analysis_tick(struct rd_analysis *a);

/* One agent's heartbeat, as the API parsed it. */
struct rd_heartbeat_in {
    const char *node_id;
    size_t id_len;
    uint64_t epoch;
    uint32_t slots_used;
    struct rd_node_metrics metrics;
    double progress; /* -1 when not sent */
};

/*
 * Takes a heartbeat (leader only): fencing first (a stale epoch, or a node
 * that left, is isolated or failed: RD_EFENCED, `*node` says which), then
 * the node's soft state (lease, load, metrics), the detector plugins and the
 * analysis of the node. 0 with `*node` and `*soft` set; RD_ENOTFOUND (not
 * registered); RD_EFENCED; RD_ENOMEM.
 */
int rd_analysis_take_heartbeat(struct rd_analysis *a, const struct rd_heartbeat_in *hb,
                               const struct rd_node **node, struct rd_soft **soft);
/* Node `n` changed state from `old_state` (apply time, any cause; `s` its
 * soft state, may be NULL): a failure the analysis decided becomes a guard
 * event, and the node counts as a troubled working agent or not. */
struct rd_soft;
void rd_analysis_node_changed(struct rd_analysis *a, struct rd_soft *s, const struct rd_node *n,
                              int old_state);

/* The heartbeat detector's last phi for the node while its heartbeats are
 * not on time: true and *phi, else false (on time, or nothing known). */
bool rd_analysis_phi(struct rd_analysis *a, struct rd_soft *s, double *phi);

/*
 * Whether placement must keep off working node `n` (alive or probation;
 * leader, loop thread): the detectors hold it in trouble under its current
 * epoch (heartbeats late or missing, its probe failing, or a failed metrics
 * verdict: what makes the analysis suspect or fail it), or a proposal to
 * make it suspect or failed is on its way through the log. Its committed
 * state says it works until that commit; a task placed on it meanwhile goes
 * to an agent that is most likely silent. False when nothing is known (not
 * the leader, never observed, a new registration) and for a node that does
 * not work (no target anyway). O(1) while no agent is held (rd_analysis.held),
 * else one registry look-up. Reads only: the scheduler holds the analysis
 * const.
 */
bool rd_analysis_troubled(const struct rd_analysis *a, const struct rd_node *n);

/* Releases the analysis's tables (after rd_analysis_stop). */
void rd_analysis_close(struct rd_analysis *a);
/* Starts the periodic evaluation (leader only). */
void rd_analysis_start(struct rd_analysis *a);
void rd_analysis_stop(struct rd_analysis *a);
/* Forgets the guard's state and every node's verdicts (a new leader starts
 * afresh, as its detectors do). */
void rd_analysis_reset(struct rd_analysis *a);

/*
 * One detector observation. Returns false when it was ignored: unknown
 * node, stale epoch, node fenced or left, or not the leader. The verdict is
 * recorded, and counted by the mass-failure guard, at once; the agent is
 * judged at the end of the batch (rd_analysis_flush), so that when one
 * detector check reports many agents at once every one of them is counted
 * before any is failed.
 */
bool rd_analysis_observe(struct rd_analysis *a, const char *detector,
                         const struct rd_observation *obs);

/*
 * Judges the agents observed since the last flush (the batch). The loop
 * flushes by itself, in the same turn as the observations (a uv_check
 * handle, with a uv_idle handle so the poll does not wait meanwhile), and
 * rd_analysis_tick flushes first; a driver that does not run the loop (a
 * unit test, the deterministic simulation) calls it after each batch.
 */
void rd_analysis_flush(struct rd_analysis *a);

/* An accepted heartbeat: probation and suspect nodes may move on. */
void rd_analysis_heartbeat(struct rd_analysis *a, const struct rd_node *n, struct rd_soft *s);

/* Counted when a fault record is committed (every replica). */
void rd_analysis_fault_applied(struct rd_analysis *a, int type, int severity);

void rd_analysis_metrics(struct rd_analysis *a, struct rd_mbuf *b);

#endif
