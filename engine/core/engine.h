/*
 * The engine: one libuv loop that owns the configuration, the state machine,
 * the replica (raft), the registry's soft state and the HTTP API. Later
 * modules (detectors, plugins, policies) attach here.
 */
#ifndef RD_ENGINE_H
#define RD_ENGINE_H

#include <stdbool.h>
#include <uv.h>

#include "backup/backup.h"
#include "config/config.h"
#include "consistency/consistency.h"
#include "events/events.h"
#include "detect/analysis.h"
#include "fsm/fsm.h"
#include "http/http.h"
#include "plugin/host.h"
#include "policy/policy.h"
#include "records/records.h"
#include "cluster/cluster.h"
#include "core/lifecycle.h"
#include "core/notify.h"
#include "common/drained.h"
#include "recover/sched.h"
#include "registry/registry.h"
#include "replica/replica.h"

struct rd_engine {
    uv_loop_t *loop;
    struct rd_config cfg;
    struct rd_fsm fsm;
    struct rd_replica replica;
    struct rd_registry registry;
    struct rd_http http;
    struct rd_events events; /* the event stream's ring (events.h) */
    struct rd_httpc *httpc;  /* outgoing HTTP for plugins (probes, webhooks) */
    struct rd_plugin_host plugins;
    struct rd_analysis analysis;
    struct rd_sched sched;
    struct rd_cluster cluster;         /* the other engine replicas, as seen from here */
    struct rd_backups backups;         /* backups, continuous archiving (leader) */
    struct rd_consistency consistency; /* consistency checks and repairs (leader) */
    struct rd_records records;         /* records exported to PostgreSQL (leader) */
    struct rd_lifecycle lifecycle;     /* task deadlines and pruning (leader) */
    struct rd_policy_host *policy;     /* the policies in force (never NULL once started) */
    struct rd_notify notify;           /* systemd's READY=1, STOPPING=1, watchdog (notify.h) */
    struct rd_drained drained;         /* when the loop last had read all its input */
    uint64_t policy_reloads_ok;
    uint64_t policy_reloads_failed;
    bool plugins_stopped;
    bool httpc_closing;
    uv_signal_t sig_int;
    uv_signal_t sig_term;
    uv_signal_t sig_hup;
    uv_signal_t sig_usr2; /* toggles debug logging */
    uv_timer_t shutdown_timer;
    bool shutting_down;
    bool raft_closed;
    bool rejoin_restarting; /* raft closes for a rejoin (rd_engine_rejoin) */
    /* A consistency check found this replica diverged (a data_corruption
     * fault naming it): it rejoins from its peers, retried by this timer
     * while it still leads (the leadership is being handed over). */
    uv_timer_t repair_timer;
    bool repair_timer_inited;
    bool repair_wanted;
    char repair_reason[160];
    uint64_t shutdown_started_ns;
    uint64_t drained_ns;      /* when the last pending answer went out */
    uint64_t raft_closing_ns; /* when the shutdown began to close raft */
    uint64_t started_ns;
    uint64_t leader_since_ns; /* 0 while not leader */
    size_t nodes_by_state[RD_NODE_STATE_COUNT];
    int exit_code;
    /* Set by the caller before rd_engine_run() in test builds only
     * (recoveryd-fi): the /debug/ routes (rd_http_env.debug). */
    void (*debug)(struct rd_http_req *hr, void *data);
};

/*
 * Runs the engine with `cfg` on `loop` until SIGINT/SIGTERM. Returns the
 * process exit code (0 after a clean shutdown). `eng` is zeroed by the
 * caller and must stay put while it runs.
 */
int rd_engine_run(struct rd_engine *eng, uv_loop_t *loop, const struct rd_config *cfg);

/* Starts the graceful shutdown (what SIGTERM does). */
void rd_engine_shutdown(struct rd_engine *eng);

/*
 * This replica's state is not to be trusted (a consistency check found it
 * diverged): it rejoins from its peers while running (rd_cluster_rejoin):
 * the leader demotes it, raft closes, the raft directory and the mark move
 * to <data_dir>/damaged-<UTC time>/, the state machine starts over empty,
 * raft starts again without bootstrap, catches up, and the leader makes it
 * a voter again. 0, or RD_ECONFLICT (it leads: transfer the leadership
 * first), RD_EBUSY (a rejoin runs), RD_EINVAL (no peer URL), RD_ESHUTDOWN.
 */
int rd_engine_rejoin(struct rd_engine *eng, const char *reason);

/* Lease handed to agents, in ms. */
uint64_t rd_engine_lease_ms(const struct rd_engine *eng);

#endif
