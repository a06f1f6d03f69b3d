/*
 * The plugin host: loads detector, backup and alert plugins (shared objects
 * against recoveryd/plugin.h) from plugins.dir, checks their ABI before
 * calling anything in them, validates each configured instance's keys
 * against what the plugin declares (file:line errors), and hands them the
 * host API. Loop-thread only. Loaded libraries are never unloaded.
 */
#ifndef RD_PLUGIN_HOST_H
#define RD_PLUGIN_HOST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config/config.h"
#include "metrics/metrics.h"
#include "recoveryd/plugin.h"

struct rd_drained;
struct rd_fsm;
struct rd_httpc;
struct rd_node;
struct rd_registry;

/*
 * What the host works with, given at load: everything it reads or calls,
 * explicitly (the way raft_init takes its io and fsm). All must outlive it.
 */
struct rd_plugin_env {
    uv_loop_t *loop;
    const struct rd_config *cfg;
    const struct rd_fsm *fsm;     /* the nodes detectors may look at */
    struct rd_registry *registry; /* the nodes' soft state (their slot) */
    struct rd_httpc *httpc;       /* outgoing HTTP for probes and webhooks */
    /* A detector's observation; false when it was ignored (not the leader,
     * unknown node, stale epoch). */
    bool (*observe)(void *data, const char *detector, const struct rd_observation *obs);
    void *observe_data;
    /* When the loop last had read all its input (NULL: now, always). */
    const struct rd_drained *drained;
};

#define RD_PLUGIN_MAX_COUNTERS 16

enum rd_inst_state {
    RD_INST_LOADED = 0, /* checked and configured, init not run */
    RD_INST_RUNNING,
    RD_INST_FAILED, /* init or start failed: errmsg says why */
    RD_INST_STOPPED,
};

struct rd_plugin_value {
    const struct rd_plugin_key *key;
    char text[RD_CFG_STR]; /* as written (or the default) */
    int64_t i;
    double d;
    uint64_t u;
    bool b;
};

struct rd_plugin_counter {
    char name[64];
    char help[128];
    uint64_t value;
};

struct rd_plugin_instance {
    struct rd_plugin_host *host;
    const struct rd_cfg_plugin *cfg;
    unsigned index; /* in plugins.instances, for messages */
    char path[512];
    const struct rd_plugin_descriptor *desc;
    void *state;
    enum rd_inst_state st;
    struct rd_plugin_value values[RD_CFG_MAX_PLUGIN_KEYS];
    unsigned n_values;
    struct rd_plugin_counter counters[RD_PLUGIN_MAX_COUNTERS];
    unsigned n_counters;
    struct rd_timer *timers; /* live timers of this instance */
    unsigned pending_work;
    bool stopping;
    char errmsg[512];
};

struct rd_plugin_host {
    struct rd_plugin_env env;
    struct rd_httpc *httpc;
    struct rd_host_api api;
    struct rd_plugin_instance insts[RD_CFG_MAX_PLUGINS];
    unsigned n;
    unsigned stopping; /* instances whose stop has not called done yet */
    void (*stopped_cb)(void *data);
    void *stopped_data;
    uint64_t observations_total;
    uint64_t observations_ignored;
};

/*
 * Checks a descriptor the way the loader does, before anything else in the
 * library is touched: ABI major, minor, size, build signature, then kind,
 * name and ops. 0, or RD_EUNSUPPORTED / RD_EINVAL with a message naming
 * `file` and both versions in `err`.
 */
int rd_plugin_check(const struct rd_plugin_descriptor *d, const char *file, char *err,
                    size_t errlen);

/*
 * Loads every configured instance: dlopen, check, bind its config, init.
 * A plugin that cannot be loaded or configured is always an error (bad
 * configuration); one whose init fails is an error only when `required`,
 * otherwise it is reported (log, metrics, /api/v1/plugins) and left out.
 * Returns 0 or RD_E* with `err` set.
 */
int rd_plugin_host_load(struct rd_plugin_host *h, const struct rd_plugin_env *env, char *err,
                        size_t errlen);

/*
 * For --check-config: loads and checks every configured plugin and binds
 * its instance config, without running anything of the plugin but
 * rd_plugin_entry(). 0 or RD_E* with `err` set.
 */
int rd_plugin_check_config(const struct rd_config *cfg, char *err, size_t errlen);

/* Starts every instance that initialised. 0 or RD_E* for a required one. */
int rd_plugin_host_start(struct rd_plugin_host *h, char *err, size_t errlen);

/* Stops every running instance; `cb` fires once all called done. */
void rd_plugin_host_stop(struct rd_plugin_host *h, void (*cb)(void *data), void *data);

/* True while thread-pool work queued by a plugin has not come back: the
 * engine waits for it before destroying the instances. */
bool rd_plugin_host_busy(const struct rd_plugin_host *h);

/* Destroys the instances (after stop). */
void rd_plugin_host_close(struct rd_plugin_host *h);

/* ---- backup targets ---- */

/* The name of the i-th configured instance of a backup plugin (in the order
 * of plugins.instances), or NULL past the last. */
const char *rd_plugin_host_backup_at(const struct rd_plugin_host *h, unsigned i);

/*
 * Instance `name` as a backup target: 0 with its ops and state when it runs;
 * RD_ENOTFOUND when no instance has that name, RD_EINVAL when it is not a
 * backup plugin, RD_EIO when it is not running (init or start failed, or it
 * stops); `*why` (static or the instance's error buffer) says which.
 */
int rd_plugin_host_backup(struct rd_plugin_host *h, const char *name,
                          const struct rd_backup_ops **ops, void **state, const char **why);

/* ---- events from the engine (leader only) ---- */
void rd_plugin_host_node(struct rd_plugin_host *h, int event, const struct rd_node *n);
void rd_plugin_host_heartbeat(struct rd_plugin_host *h, const struct rd_heartbeat_view *hb);
/* An alert for every alert instance; the host names the cluster and this
 * replica in it (cluster.name, cluster.node_id) unless the caller did. */
void rd_plugin_host_alert(struct rd_plugin_host *h, const struct rd_alert *a);
/* This replica became the leader or stopped leading (alert ops version 2). */
void rd_plugin_host_leadership(struct rd_plugin_host *h, bool leader);

/* Prometheus lines for instances and their counters. */
void rd_plugin_host_metrics(struct rd_plugin_host *h, struct rd_mbuf *b);
/* [{"name","plugin","kind","version","state","required","error"}], alert
 * instances that keep dead letters with "dead_letters":[{"at","status",
 * "answer","alert"}] */
json_t *rd_plugin_host_json(struct rd_plugin_host *h);

#endif
