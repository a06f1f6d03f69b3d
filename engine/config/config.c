/*
 * recoveryd configuration loader.
 *
 * The file is read with libyaml's document API so every node keeps its
 * start mark, and is then walked against one schema table (`cfg_root`): each
 * entry names a key, its type, where it lands in `struct rd_config`, and for
 * sections the entries below it. Adding a key is one line in a table; the
 * unknown-key message, the expected-value text and the store all come from
 * the entry. Nothing here keeps state between calls.
 */
#include "config.h"
#include "../common/util.h"
#include "recoveryd/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <yaml.h>

/* A config file beyond this is a mistake (a log or a binary), not a config. */
#define CFG_MAX_FILE (1024 * 1024)
/* Most keys one section of the schema may have (see cfg_load_mapping). */
#define CFG_MAX_KEYS 16
/* Bytes of an offending value quoted back in a message. */
#define CFG_SHOW_MAX   64
#define CFG_SHOW_LEN   (CFG_SHOW_MAX * 4 + 16)
#define CFG_KEYS_LEN   256
#define CFG_EXPECT_LEN 320

enum cfg_type {
    CFG_SECTION,   /* mapping: `children` apply to the same base */
    CFG_LIST,      /* sequence of mappings: `children` describe one element of `elem_size`
                      bytes, at most size / elem_size of them; the count goes to `offset2`
                      (unsigned); `finish` (if set) checks each element once it is read */
    CFG_KV,        /* mapping of free-form keys to scalars into struct rd_cfg_kv[]; the
                      count goes to `offset2` (unsigned) */
    CFG_DURATION,  /* "250ms" etc. into an unsigned integer of `size` bytes, ms */
    CFG_PERCENT,   /* "80%" into an unsigned integer of `size` bytes; min..max when max > 0 */
    CFG_SIZE,      /* "8MiB" into an unsigned integer of `size` bytes */
    CFG_UINT,      /* plain integer min..max into an unsigned integer of `size` bytes */
    CFG_BOOL,      /* true/false/yes/no/on/off into a bool */
    CFG_STRING,    /* text into char[size] */
    CFG_PATH,      /* a file or directory into char[size]: text, resolved against the
                      config file's directory when relative (rd_config_load_file) */
    CFG_NAME,      /* [a-z0-9_-], 1 to size-1 bytes, into char[size] ("" too with empty_ok) */
    CFG_NAMES,     /* sequence of CFG_NAMEs into char[size / elem_size][elem_size]; the
                      count goes to `offset2` (unsigned) */
    CFG_ADDR,      /* HOST:PORT, checked, kept as text in char[size] */
    CFG_URL,       /* "" or http(s)://... into char[size] */
    CFG_LISTEN,    /* HOST:PORT split: host into char[size], port into uint16_t at offset2 */
    CFG_LOGLEVEL,  /* debug|info|warn|error into enum rd_log_level */
    CFG_LOGFORMAT, /* logfmt|json into enum rd_log_format */
    CFG_CHOICE,    /* one of `choices` (n_choices of them) into an unsigned: its index */
};

struct cfg_loader;

struct cfg_field {
    const char *key;
    enum cfg_type type;
    size_t offset;  /* from the base the section is read into */
    size_t size;    /* of the member at `offset` */
    size_t offset2; /* CFG_LISTEN: the port; CFG_LIST, CFG_KV: the count */
    const struct cfg_field *children;
    size_t n_children;
    uint64_t min, max; /* CFG_UINT; CFG_PERCENT when max > 0 */
    bool required;     /* a mapping without this key is an error (peers) */
    bool empty_ok;     /* CFG_NAME: "" is a value too (it turns something off) */
    int setting;       /* enum rd_cfg_setting + 1 whose origin the line goes to; 0 = none */
    /* CFG_LIST: bytes of one element, the plural for messages, and a check
     * run on element `i` (item `i` of `seq`) after its mapping is read. */
    size_t elem_size;
    const char *noun;
    int (*finish)(struct cfg_loader *ld, char *elems, size_t i, const yaml_node_t *seq);
    const char *const *choices; /* CFG_CHOICE */
    size_t n_choices;
};

#define CFG_OFF(m) offsetof(struct rd_config, m)
#define CFG_SZ(m)  sizeof(((struct rd_config *)0)->m)
#define CFG_F(k, t, m)                                                                             \
    {                                                                                              \
        .key = (k), .type = (t), .offset = CFG_OFF(m), .size = CFG_SZ(m)                           \
    }
#define CFG_U(k, m, lo, hi)                                                                        \
    {                                                                                              \
        .key = (k), .type = CFG_UINT, .offset = CFG_OFF(m), .size = CFG_SZ(m), .min = (lo),        \
        .max = (hi)                                                                                \
    }
/* A top-level setting whose line is kept in cfg->origin[] (enum rd_cfg_setting). */
#define CFG_T(k, t, m, s)                                                                          \
    {                                                                                              \
        .key = (k), .type = (t), .offset = CFG_OFF(m), .size = CFG_SZ(m), .setting = (s) + 1       \
    }
#define CFG_SECT(k, kids)                                                                          \
    {                                                                                              \
        .key = (k), .type = CFG_SECTION, .children = (kids), .n_children = RD_ARRAY_SIZE(kids)     \
    }

/* cfg_load_list and cfg_load_kv store their counts as unsigned. */
_Static_assert(sizeof(((struct rd_config *)0)->security.n_client_certs) == sizeof(unsigned),
               "security.n_client_certs is read as unsigned");
_Static_assert(sizeof(((struct rd_config *)0)->cluster.n_peers) == sizeof(unsigned),
               "cluster.n_peers is read as unsigned");
_Static_assert(sizeof(((struct rd_config *)0)->plugins.n_instances) == sizeof(unsigned),
               "plugins.n_instances is read as unsigned");
_Static_assert(sizeof(((struct rd_cfg_plugin *)0)->n_config) == sizeof(unsigned),
               "rd_cfg_plugin.n_config is read as unsigned");
_Static_assert(RD_CFG_MAX_PLUGINS * sizeof(struct rd_cfg_plugin) ==
                   sizeof(((struct rd_config *)0)->plugins.instances),
               "plugins.instances holds RD_CFG_MAX_PLUGINS entries");
_Static_assert(RD_CFG_MAX_PLUGIN_KEYS * sizeof(struct rd_cfg_kv) ==
                   sizeof(((struct rd_cfg_plugin *)0)->config),
               "rd_cfg_plugin.config holds RD_CFG_MAX_PLUGIN_KEYS entries");
_Static_assert(sizeof(((struct rd_config *)0)->fault_tolerance.backup.n_targets) ==
                   sizeof(unsigned),
               "fault_tolerance.backup.n_targets is read as unsigned");
_Static_assert(sizeof(((struct rd_config *)0)->server.listen_port) == sizeof(uint16_t),
               "server.listen_port is a uint16_t");
_Static_assert(RD_CFG_MAX_PEERS * sizeof(struct rd_cfg_peer) ==
                   sizeof(((struct rd_config *)0)->cluster.peers),
               "cluster.peers holds RD_CFG_MAX_PEERS entries");

static const struct cfg_field cfg_tls[] = {
    CFG_T("cert", CFG_PATH, server.tls_cert, RD_CFG_TLS_CERT),
    CFG_T("key", CFG_PATH, server.tls_key, RD_CFG_TLS_KEY),
};

static const struct cfg_field cfg_edge[] = {
    CFG_U("max_connections", server.edge.max_connections, 1, 1000000),
    CFG_U("max_connections_per_address", server.edge.max_per_address, 1, 1000000),
    CFG_U("reserved_fds", server.edge.reserved_fds, 0, 1000000),
    CFG_F("idle_timeout", CFG_DURATION, server.edge.idle_timeout_ms),
    CFG_F("request_timeout", CFG_DURATION, server.edge.request_timeout_ms),
    CFG_F("max_header_list", CFG_SIZE, server.edge.max_header_list),
    CFG_F("max_body_buffered", CFG_SIZE, server.edge.max_body_buffered),
    CFG_U("stream_reset_budget", server.edge.reset_budget, 1, 1000000),
    CFG_U("empty_frame_budget", server.edge.frame_budget, 1, 1000000),
    CFG_F("abuse_block", CFG_DURATION, server.edge.abuse_block_ms),
};

static const struct cfg_field cfg_events[] = {
    CFG_U("ring_size", server.events.ring_size, 16, 1000000),
    CFG_U("max_streams", server.events.max_streams, 1, 100000),
    CFG_U("max_streams_per_principal", server.events.max_per_principal, 1, 100000),
    CFG_F("keepalive", CFG_DURATION, server.events.keepalive_ms),
    CFG_F("stall_timeout", CFG_DURATION, server.events.stall_timeout_ms),
};

static const struct cfg_field cfg_server[] = {
    {.key = "listen",
     .type = CFG_LISTEN,
     .offset = CFG_OFF(server.listen_host),
     .size = CFG_SZ(server.listen_host),
     .offset2 = CFG_OFF(server.listen_port),
     .setting = RD_CFG_SERVER_LISTEN + 1},
    CFG_F("max_body", CFG_SIZE, server.max_body_bytes),
    CFG_F("shutdown_timeout", CFG_DURATION, server.shutdown_timeout_ms),
    CFG_SECT("tls", cfg_tls),
    CFG_SECT("edge", cfg_edge),
    CFG_SECT("events", cfg_events),
    CFG_T("ui_dir", CFG_PATH, server.ui_dir, RD_CFG_UI_DIR),
};

static const struct cfg_field cfg_cert_map[] = {
    {.key = "subject",
     .type = CFG_STRING,
     .offset = offsetof(struct rd_cfg_cert_map, subject),
     .size = sizeof(((struct rd_cfg_cert_map *)0)->subject),
     .required = true},
    {.key = "principal",
     .type = CFG_STRING,
     .offset = offsetof(struct rd_cfg_cert_map, principal),
     .size = sizeof(((struct rd_cfg_cert_map *)0)->principal)},
    {.key = "role",
     .type = CFG_STRING,
     .offset = offsetof(struct rd_cfg_cert_map, role),
     .size = sizeof(((struct rd_cfg_cert_map *)0)->role),
     .required = true},
    {.key = "nodes",
     .type = CFG_STRING,
     .offset = offsetof(struct rd_cfg_cert_map, nodes),
     .size = sizeof(((struct rd_cfg_cert_map *)0)->nodes)},
};

static const struct cfg_field cfg_audit[] = {
    CFG_U("max_records", security.audit.max_records, 1, 10000000),
    CFG_F("max_age", CFG_DURATION, security.audit.max_age_ms),
};

static const struct cfg_field cfg_security[] = {
    CFG_SECT("audit", cfg_audit),
    CFG_F("tokens_file", CFG_PATH, security.tokens_file),
    CFG_F("peer_token_file", CFG_PATH, security.peer_token_file),
    CFG_F("client_ca", CFG_PATH, security.client_ca),
    CFG_F("allow_unauthenticated", CFG_BOOL, security.allow_unauthenticated),
    CFG_F("metrics_open", CFG_BOOL, security.metrics_open),
    {.key = "client_certs",
     .type = CFG_LIST,
     .offset = CFG_OFF(security.client_certs),
     .size = CFG_SZ(security.client_certs),
     .offset2 = CFG_OFF(security.n_client_certs),
     .children = cfg_cert_map,
     .n_children = RD_ARRAY_SIZE(cfg_cert_map),
     .elem_size = sizeof(struct rd_cfg_cert_map),
     .noun = "client_certs"},
};

static const struct cfg_field cfg_storage[] = {
    CFG_T("data_dir", CFG_PATH, storage.data_dir, RD_CFG_DATA_DIR),
    CFG_U("snapshot_threshold", storage.snapshot_threshold, 1, 100000000),
    CFG_U("snapshot_trailing", storage.snapshot_trailing, 0, 100000000),
    CFG_F("snapshot_threshold_bytes", CFG_SIZE, storage.snapshot_threshold_bytes),
    CFG_F("snapshot_trailing_bytes", CFG_SIZE, storage.snapshot_trailing_bytes),
    CFG_F("segment_size", CFG_SIZE, storage.segment_size),
};

static const struct cfg_field cfg_peer[] = {
    {.key = "id",
     .type = CFG_UINT,
     .offset = offsetof(struct rd_cfg_peer, id),
     .size = sizeof(((struct rd_cfg_peer *)0)->id),
     .min = 1,
     .max = UINT64_MAX,
     .required = true},
    {.key = "address",
     .type = CFG_ADDR,
     .offset = offsetof(struct rd_cfg_peer, address),
     .size = sizeof(((struct rd_cfg_peer *)0)->address),
     .required = true},
    {.key = "api_url",
     .type = CFG_URL,
     .offset = offsetof(struct rd_cfg_peer, api_url),
     .size = sizeof(((struct rd_cfg_peer *)0)->api_url)},
};

static const struct cfg_field cfg_cluster_tls[] = {
    CFG_T("ca", CFG_PATH, cluster.tls.ca, RD_CFG_CLUSTER_TLS_CA),
    CFG_T("cert", CFG_PATH, cluster.tls.cert, RD_CFG_CLUSTER_TLS_CERT),
    CFG_T("key", CFG_PATH, cluster.tls.key, RD_CFG_CLUSTER_TLS_KEY),
    CFG_F("insecure_plaintext", CFG_BOOL, cluster.tls.insecure_plaintext),
    CFG_F("check_replica_id", CFG_BOOL, cluster.tls.check_replica_id),
};

static const struct cfg_field cfg_cluster[] = {
    CFG_F("name", CFG_STRING, cluster.name),
    CFG_F("node_id", CFG_STRING, cluster.node_id),
    CFG_U("replica_id", cluster.replica_id, 1, UINT64_MAX),
    CFG_T("raft_address", CFG_ADDR, cluster.raft_address, RD_CFG_RAFT_ADDRESS),
    CFG_F("raft_bind", CFG_ADDR, cluster.raft_bind),
    CFG_F("election_timeout", CFG_DURATION, cluster.election_timeout_ms),
    CFG_F("heartbeat_timeout", CFG_DURATION, cluster.heartbeat_timeout_ms),
    CFG_F("pre_vote", CFG_BOOL, cluster.pre_vote),
    CFG_F("group_commit", CFG_BOOL, cluster.group_commit),
    CFG_F("group_commit_delay", CFG_DURATION, cluster.group_commit_delay_ms),
    CFG_U("max_inflight", cluster.max_inflight, 1, 65536),
    CFG_F("join", CFG_BOOL, cluster.join),
    {.key = "peers",
     .type = CFG_LIST,
     .offset = CFG_OFF(cluster.peers),
     .size = CFG_SZ(cluster.peers),
     .offset2 = CFG_OFF(cluster.n_peers),
     .children = cfg_peer,
     .n_children = RD_ARRAY_SIZE(cfg_peer),
     .elem_size = sizeof(struct rd_cfg_peer),
     .noun = "peers"},
    CFG_SECT("tls", cfg_cluster_tls),
};

static int cfg_finish_instance(struct cfg_loader *ld, char *elems, size_t i,
                               const yaml_node_t *seq);

static const struct cfg_field cfg_instance[] = {
    {.key = "name",
     .type = CFG_NAME,
     .offset = offsetof(struct rd_cfg_plugin, name),
     .size = sizeof(((struct rd_cfg_plugin *)0)->name),
     .required = true},
    {.key = "plugin",
     .type = CFG_NAME,
     .offset = offsetof(struct rd_cfg_plugin, plugin),
     .size = sizeof(((struct rd_cfg_plugin *)0)->plugin)},
    {.key = "required",
     .type = CFG_BOOL,
     .offset = offsetof(struct rd_cfg_plugin, required),
     .size = sizeof(((struct rd_cfg_plugin *)0)->required)},
    {.key = "config",
     .type = CFG_KV,
     .offset = offsetof(struct rd_cfg_plugin, config),
     .size = sizeof(((struct rd_cfg_plugin *)0)->config),
     .offset2 = offsetof(struct rd_cfg_plugin, n_config)},
};

static const struct cfg_field cfg_plugins[] = {
    CFG_T("dir", CFG_PATH, plugins.dir, RD_CFG_PLUGINS_DIR),
    {.key = "instances",
     .type = CFG_LIST,
     .offset = CFG_OFF(plugins.instances),
     .size = CFG_SZ(plugins.instances),
     .offset2 = CFG_OFF(plugins.n_instances),
     .children = cfg_instance,
     .n_children = RD_ARRAY_SIZE(cfg_instance),
     .elem_size = sizeof(struct rd_cfg_plugin),
     .noun = "instances",
     .finish = cfg_finish_instance},
};

static const struct cfg_field cfg_policies[] = {
    CFG_T("dir", CFG_PATH, policies.dir, RD_CFG_POLICIES_DIR),
    CFG_F("budget", CFG_DURATION, policies.budget_ms),
    CFG_F("memory_limit", CFG_SIZE, policies.memory_limit),
};

static const struct cfg_field cfg_logging[] = {
    CFG_F("level", CFG_LOGLEVEL, logging.level),
    CFG_F("format", CFG_LOGFORMAT, logging.format),
};

static const struct cfg_field cfg_detection[] = {
    CFG_F("heartbeat_interval", CFG_DURATION, fault_tolerance.detection.heartbeat_interval_ms),
    CFG_F("health_check_timeout", CFG_DURATION, fault_tolerance.detection.health_check_timeout_ms),
    CFG_U("failure_threshold", fault_tolerance.detection.failure_threshold, 1, 1000),
    CFG_U("recovery_threshold", fault_tolerance.detection.recovery_threshold, 1, 1000),
    CFG_F("flap_window", CFG_DURATION, fault_tolerance.detection.flap_window_ms),
    CFG_U("flap_threshold", fault_tolerance.detection.flap_threshold, 1, 16),
    CFG_U("flap_penalty", fault_tolerance.detection.flap_penalty, 1, 100),
};

static const struct cfg_field cfg_fast_recovery[] = {
    CFG_F("max_time", CFG_DURATION, fault_tolerance.recovery_strategies.fast_recovery.max_time_ms),
    CFG_F("resource_limit", CFG_PERCENT,
          fault_tolerance.recovery_strategies.fast_recovery.resource_limit),
};

static const struct cfg_field cfg_safe_recovery[] = {
    CFG_F("max_time", CFG_DURATION, fault_tolerance.recovery_strategies.safe_recovery.max_time_ms),
    CFG_F("consistency_check", CFG_BOOL,
          fault_tolerance.recovery_strategies.safe_recovery.consistency_check),
};

static const struct cfg_field cfg_degraded_service[] = {
    CFG_F("essential_services_only", CFG_BOOL,
          fault_tolerance.recovery_strategies.degraded_service.essential_services_only),
    CFG_F("performance_limit", CFG_PERCENT,
          fault_tolerance.recovery_strategies.degraded_service.performance_limit),
};

static const struct cfg_field cfg_strategies[] = {
    CFG_SECT("fast_recovery", cfg_fast_recovery),
    CFG_SECT("safe_recovery", cfg_safe_recovery),
    CFG_SECT("degraded_service", cfg_degraded_service),
};

static const struct cfg_field cfg_archive[] = {
    {.key = "target",
     .type = CFG_NAME,
     .offset = CFG_OFF(fault_tolerance.backup.archive.target),
     .size = CFG_SZ(fault_tolerance.backup.archive.target),
     .empty_ok = true,
     .setting = RD_CFG_ARCHIVE_TARGET + 1},
    CFG_F("max_delay", CFG_DURATION, fault_tolerance.backup.archive.max_delay_ms),
};

static const struct cfg_field cfg_backup[] = {
    CFG_F("interval", CFG_DURATION, fault_tolerance.backup.interval_ms),
    CFG_F("retention_period", CFG_DURATION, fault_tolerance.backup.retention_period_ms),
    CFG_F("consistency_check_interval", CFG_DURATION,
          fault_tolerance.backup.consistency_check_interval_ms),
    /* Our additions (docs/backup.md). */
    {.key = "targets",
     .type = CFG_NAMES,
     .offset = CFG_OFF(fault_tolerance.backup.targets),
     .size = CFG_SZ(fault_tolerance.backup.targets),
     .offset2 = CFG_OFF(fault_tolerance.backup.n_targets),
     .elem_size = sizeof(((struct rd_config *)0)->fault_tolerance.backup.targets[0]),
     .noun = "targets",
     .setting = RD_CFG_BACKUP_TARGETS + 1},
    CFG_U("keep_min", fault_tolerance.backup.keep_min, 0, 1000),
    {.key = "cpu_share",
     .type = CFG_PERCENT,
     .offset = CFG_OFF(fault_tolerance.backup.cpu_share),
     .size = CFG_SZ(fault_tolerance.backup.cpu_share),
     .min = 1,
     .max = 100},
    CFG_SECT("archive", cfg_archive),
};

static const char *const partition_modes[] = {"consistency", "availability"};
/* In the order of enum rd_cfg_conflict. */
static const char *const conflict_choices[] = {"keep_newer", "keep_progress", "fail_task"};

const char *rd_partition_mode_name(unsigned mode)
{
    return mode < RD_ARRAY_SIZE(partition_modes) ? partition_modes[mode] : "unknown";
}

#define CFG_C(k, m, names)                                                                         \
    {                                                                                              \
        .key = (k), .type = CFG_CHOICE, .offset = CFG_OFF(m), .size = CFG_SZ(m),                   \
        .choices = (names), .n_choices = RD_ARRAY_SIZE(names)                                      \
    }

static const struct cfg_field cfg_partition[] = {
    {.key = "mass_failure_share",
     .type = CFG_PERCENT,
     .offset = CFG_OFF(fault_tolerance.partition.mass_failure_share),
     .size = CFG_SZ(fault_tolerance.partition.mass_failure_share),
     .min = 1,
     .max = 100},
    CFG_F("mass_failure_window", CFG_DURATION, fault_tolerance.partition.mass_failure_window_ms),
    CFG_U("min_nodes", fault_tolerance.partition.min_nodes, 1, 1000000),
    CFG_F("alert_after", CFG_DURATION, fault_tolerance.partition.alert_after_ms),
    CFG_C("mode", fault_tolerance.partition.mode, partition_modes),
    CFG_C("on_conflict", fault_tolerance.partition.on_conflict, conflict_choices),
};

static const struct cfg_field cfg_poison[] = {
    CFG_U("max_failures", fault_tolerance.poison.max_failures, 1, 16),
    CFG_F("window", CFG_DURATION, fault_tolerance.poison.window_ms),
};

static const struct cfg_field cfg_records[] = {
    CFG_F("export", CFG_BOOL, fault_tolerance.records.enabled),
    CFG_F("conninfo", CFG_STRING, fault_tolerance.records.conninfo),
    CFG_F("schema", CFG_STRING, fault_tolerance.records.schema),
    CFG_U("batch_size", fault_tolerance.records.batch_size, 1, 10000),
    CFG_U("max_retained", fault_tolerance.records.max_retained, 10000, 10000000),
    CFG_F("timeout", CFG_DURATION, fault_tolerance.records.timeout_ms),
    CFG_F("interval", CFG_DURATION, fault_tolerance.records.interval_ms),
};

static const struct cfg_field cfg_tasks[] = {
    CFG_F("retention", CFG_DURATION, fault_tolerance.tasks.retention_ms),
};

static const struct cfg_field cfg_prediction[] = {
    CFG_U("drains_per_minute", fault_tolerance.prediction.drains_per_minute, 0, 1000),
    {.key = "min_healthy_capacity",
     .type = CFG_PERCENT,
     .offset = CFG_OFF(fault_tolerance.prediction.min_healthy_capacity),
     .size = CFG_SZ(fault_tolerance.prediction.min_healthy_capacity),
     .min = 0,
     .max = 100},
};

static const struct cfg_field cfg_rebalance[] = {
    CFG_F("enabled", CFG_BOOL, fault_tolerance.rebalance.enabled),
    {.key = "skew_threshold",
     .type = CFG_PERCENT,
     .offset = CFG_OFF(fault_tolerance.rebalance.skew_threshold),
     .size = CFG_SZ(fault_tolerance.rebalance.skew_threshold),
     .min = 1,
     .max = 100},
    {.key = "cpu_threshold",
     .type = CFG_PERCENT,
     .offset = CFG_OFF(fault_tolerance.rebalance.cpu_threshold),
     .size = CFG_SZ(fault_tolerance.rebalance.cpu_threshold),
     .min = 0,
     .max = 100},
    CFG_U("moves_per_minute", fault_tolerance.rebalance.moves_per_minute, 1, 100000),
    CFG_F("cooldown", CFG_DURATION, fault_tolerance.rebalance.cooldown_ms),
    CFG_F("checkpoint_wait", CFG_DURATION, fault_tolerance.rebalance.checkpoint_wait_ms),
    CFG_F("settle", CFG_DURATION, fault_tolerance.rebalance.settle_ms),
};

/* New sections go last so the key lists in existing messages keep their order. */
static const struct cfg_field cfg_fault_tolerance[] = {
    CFG_SECT("detection", cfg_detection), CFG_SECT("recovery_strategies", cfg_strategies),
    CFG_SECT("backup", cfg_backup),       CFG_SECT("partition", cfg_partition),
    CFG_SECT("poison", cfg_poison),       CFG_SECT("records", cfg_records),
    CFG_SECT("tasks", cfg_tasks),         CFG_SECT("prediction", cfg_prediction),
    CFG_SECT("rebalance", cfg_rebalance),
};

static const struct cfg_field cfg_top[] = {
    CFG_SECT("server", cfg_server),
    CFG_SECT("storage", cfg_storage),
    CFG_SECT("cluster", cfg_cluster),
    CFG_SECT("plugins", cfg_plugins),
    CFG_SECT("policies", cfg_policies),
    CFG_SECT("logging", cfg_logging),
    CFG_SECT("fault_tolerance", cfg_fault_tolerance),
    CFG_SECT("security", cfg_security),
};

/* The whole file is one section whose children are the top-level keys. */
static const struct cfg_field cfg_root = CFG_SECT("", cfg_top);

/* ---- value parsers ---------------------------------------------------- */

static bool cfg_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Reads the run of decimal digits at `s` into `out`; `*end` is the first
 * byte after it. RD_EINVAL when there is no digit or the value overflows.
 */
static int cfg_parse_digits(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    const char *p = s;
    if (s == NULL || !cfg_is_digit(*p))
        return RD_EINVAL;
    for (; cfg_is_digit(*p); p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return RD_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    *end = p;
    return 0;
}

int rd_config_parse_duration(const char *s, uint64_t *ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    uint64_t n;
    const char *p;
    if (cfg_parse_digits(s, &n, &p) != 0)
        return RD_EINVAL;
    for (size_t i = 0; i < RD_ARRAY_SIZE(units); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            if (n > UINT64_MAX / units[i].ms)
                return RD_EINVAL;
            *ms = n * units[i].ms;
            return 0;
        }
    }
    return RD_EINVAL;
}

int rd_config_parse_percent(const char *s, unsigned *pct)
{
    uint64_t n;
    const char *p;
    if (cfg_parse_digits(s, &n, &p) != 0 || n > 100 || strcmp(p, "%") != 0)
        return RD_EINVAL;
    *pct = (unsigned)n;
    return 0;
}

int rd_config_parse_size(const char *s, size_t *bytes)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"K", UINT64_C(1) << 10},
        {"KiB", UINT64_C(1) << 10},
        {"M", UINT64_C(1) << 20},
        {"MiB", UINT64_C(1) << 20},
        {"G", UINT64_C(1) << 30},
        {"GiB", UINT64_C(1) << 30},
    };
    uint64_t n;
    const char *p;
    if (cfg_parse_digits(s, &n, &p) != 0)
        return RD_EINVAL;
    for (size_t i = 0; i < RD_ARRAY_SIZE(units); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            if (n > UINT64_MAX / units[i].mult || n * units[i].mult > SIZE_MAX)
                return RD_EINVAL;
            *bytes = (size_t)(n * units[i].mult);
            return 0;
        }
    }
    return RD_EINVAL;
}

static bool cfg_hostname_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || cfg_is_digit(c) || c == '.' ||
           c == '-' || c == '_';
}

bool rd_config_host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (host == NULL)
        return false;
    if (strcmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

bool rd_config_cluster_tls(const struct rd_config *cfg)
{
    return cfg->cluster.tls.ca[0] != '\0' && cfg->cluster.tls.cert[0] != '\0' &&
           cfg->cluster.tls.key[0] != '\0';
}

const char *rd_config_raft_bind(const struct rd_config *cfg)
{
    return cfg->cluster.raft_bind[0] != '\0' ? cfg->cluster.raft_bind : cfg->cluster.raft_address;
}

int rd_config_parse_hostport(const char *s, char host[RD_CFG_STR], uint16_t *port)
{
    char h[RD_CFG_STR];
    const char *colon;
    size_t hlen;
    if (s == NULL)
        return RD_EINVAL;
    if (s[0] == '[') {
        /* "[v6]:port": the brackets are what make the last colon the port's. */
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return RD_EINVAL;
        hlen = (size_t)(close - (s + 1));
        if (hlen == 0 || hlen >= sizeof(h))
            return RD_EINVAL;
        memcpy(h, s + 1, hlen);
        h[hlen] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, h, &a6) != 1)
            return RD_EINVAL;
        colon = close + 1;
    } else {
        /* One colon only: a bare IPv6 address would be ambiguous. */
        colon = strchr(s, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return RD_EINVAL;
        hlen = (size_t)(colon - s);
        if (hlen == 0 || hlen >= sizeof(h))
            return RD_EINVAL;
        bool numeric = true;
        for (size_t i = 0; i < hlen; i++) {
            if (!cfg_hostname_char(s[i]))
                return RD_EINVAL;
            if (!cfg_is_digit(s[i]) && s[i] != '.')
                numeric = false;
        }
        memcpy(h, s, hlen);
        h[hlen] = '\0';
        /* Digits and dots must be a real IPv4 address (no "256.1.1.1"). */
        struct in_addr a4;
        if (numeric && inet_pton(AF_INET, h, &a4) != 1)
            return RD_EINVAL;
    }
    uint64_t p;
    const char *end;
    if (cfg_parse_digits(colon + 1, &p, &end) != 0 || *end != '\0' || p == 0 || p > 65535)
        return RD_EINVAL;
    memcpy(host, h, hlen + 1);
    *port = (uint16_t)p;
    return 0;
}

static bool cfg_ascii_ieq(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++) {
        char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a - 'A' + 'a') : *a;
        if (x != *b)
            return false;
    }
    return *a == *b;
}

static int cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < RD_ARRAY_SIZE(yes); i++) {
        if (cfg_ascii_ieq(s, yes[i])) {
            *out = true;
            return 0;
        }
        if (cfg_ascii_ieq(s, no[i])) {
            *out = false;
            return 0;
        }
    }
    return RD_EINVAL;
}

/* Writes `v` into an unsigned integer member of `width` bytes. */
static void cfg_store_uint(void *dst, size_t width, uint64_t v)
{
    switch (width) {
    case 1: {
        uint8_t x = (uint8_t)v;
        memcpy(dst, &x, sizeof(x));
        break;
    }
    case 2: {
        uint16_t x = (uint16_t)v;
        memcpy(dst, &x, sizeof(x));
        break;
    }
    case 4: {
        uint32_t x = (uint32_t)v;
        memcpy(dst, &x, sizeof(x));
        break;
    }
    default: {
        uint64_t x = v;
        memcpy(dst, &x, sizeof(x));
        break;
    }
    }
}

static uint64_t cfg_width_max(size_t width)
{
    return width >= sizeof(uint64_t) ? UINT64_MAX : (UINT64_C(1) << (width * 8)) - 1;
}

/* "90000" -> "90s": the largest unit that divides `ms` exactly. */
static void cfg_format_duration(uint64_t ms, char *buf, size_t len)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < RD_ARRAY_SIZE(units); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%" PRIu64 "%s", ms / units[i].ms, units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%" PRIu64 "ms", ms);
}

static void cfg_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"GiB", UINT64_C(1) << 30}, {"MiB", UINT64_C(1) << 20}, {"KiB", UINT64_C(1) << 10}};
    for (size_t i = 0; i < RD_ARRAY_SIZE(units); i++) {
        if (bytes != 0 && bytes % units[i].mult == 0) {
            snprintf(buf, len, "%" PRIu64 "%s", bytes / units[i].mult, units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%" PRIu64, bytes);
}

/* ---- the loader ------------------------------------------------------- */

struct cfg_loader {
    const char *name;      /* file name for messages */
    const char *base_dir;  /* relative CFG_PATH values resolve against it; NULL: kept as is */
    struct rd_config *cfg; /* being loaded: origins go to cfg->origin[] */
    yaml_document_t *doc;  /* the document being walked */
    char *err;             /* RD_CFG_ERRLEN bytes, or NULL */
    char path[RD_CFG_STR]; /* dotted key of the node being read */
};

/*
 * Writes "NAME:LINE: PATH: <fmt>" for `node` and returns RD_ECONFIG. The
 * message is cut at RD_CFG_ERRLEN; the prefix always fits in practice.
 */
static int cfg_fail(const struct cfg_loader *ld, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_fail(const struct cfg_loader *ld, const yaml_node_t *node, const char *fmt, ...)
{
    if (ld->err == NULL)
        return RD_ECONFIG;
    size_t line = node->start_mark.line + 1;
    int n;
    if (ld->path[0] != '\0')
        n = snprintf(ld->err, RD_CFG_ERRLEN, "%s:%zu: %s: ", ld->name, line, ld->path);
    else
        n = snprintf(ld->err, RD_CFG_ERRLEN, "%s:%zu: ", ld->name, line);
    if (n >= 0 && n < RD_CFG_ERRLEN) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->err + n, RD_CFG_ERRLEN - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return RD_ECONFIG;
}

/* Message without a node (validation, file errors): "<fmt>" into `err`. */
static int cfg_errf(char *err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int cfg_errf(char *err, int rc, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, RD_CFG_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Appends ".key" (or "key" at the top) to the path; returns the length to restore. */
static size_t cfg_path_push_key(struct cfg_loader *ld, const char *key, size_t keylen)
{
    size_t mark = strlen(ld->path);
    size_t room = sizeof(ld->path) - mark;
    snprintf(ld->path + mark, room, "%s%.*s", mark > 0 ? "." : "",
             (int)(keylen > RD_CFG_STR ? RD_CFG_STR : keylen), key);
    return mark;
}

static size_t cfg_path_push_index(struct cfg_loader *ld, size_t i)
{
    size_t mark = strlen(ld->path);
    snprintf(ld->path + mark, sizeof(ld->path) - mark, "[%zu]", i);
    return mark;
}

static void cfg_path_pop(struct cfg_loader *ld, size_t mark)
{
    ld->path[mark] = '\0';
}

/*
 * Renders a node for "got ...": a scalar as 'text' with control bytes
 * escaped and long values cut (at a UTF-8 boundary) with "...", other kinds
 * by name. Returns buf (CFG_SHOW_LEN bytes).
 */
static const char *cfg_show(const yaml_node_t *node, char *buf)
{
    if (node->type == YAML_MAPPING_NODE)
        return strcpy(buf, "a mapping");
    if (node->type == YAML_SEQUENCE_NODE)
        return strcpy(buf, "a sequence");
    if (node->type != YAML_SCALAR_NODE)
        return strcpy(buf, "nothing");
    const unsigned char *v = node->data.scalar.value;
    size_t len = node->data.scalar.length;
    size_t cut = len > CFG_SHOW_MAX ? CFG_SHOW_MAX : len;
    while (cut < len && cut > 0 && (v[cut] & 0xC0) == 0x80)
        cut--;
    size_t o = 0;
    buf[o++] = '\'';
    for (size_t i = 0; i < cut; i++) {
        unsigned char c = v[i];
        if (c < 0x20 || c == 0x7F)
            o += (size_t)snprintf(buf + o, CFG_SHOW_LEN - o, "\\x%02X", c);
        else
            buf[o++] = (char)c;
    }
    if (cut < len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
    return buf;
}

/* "a, b, c" from a section's children. */
static const char *cfg_key_list(const struct cfg_field *f, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < f->n_children && o < len; i++) {
        int n = snprintf(buf + o, len - o, "%s%s", i > 0 ? ", " : "", f->children[i].key);
        if (n < 0)
            break;
        o += (size_t)n;
    }
    return buf;
}

/* What a key of `f`'s type looks like, for "expected ..., got ...". */
static const char *cfg_expected(const struct cfg_field *f, char *buf, size_t len)
{
    char keys[CFG_KEYS_LEN];
    switch (f->type) {
    case CFG_SECTION:
        snprintf(buf, len, "expected a mapping with keys %s", cfg_key_list(f, keys, sizeof(keys)));
        break;
    case CFG_LIST:
        snprintf(buf, len, "expected a sequence of up to %zu mappings with keys %s",
                 f->size / f->elem_size, cfg_key_list(f, keys, sizeof(keys)));
        break;
    case CFG_KV:
        snprintf(buf, len,
                 "expected a mapping of up to %zu keys (1-%zu characters of a-z 0-9 _) to "
                 "scalar values",
                 f->size / sizeof(struct rd_cfg_kv), sizeof(((struct rd_cfg_kv *)0)->key) - 1);
        break;
    case CFG_DURATION:
        snprintf(buf, len, "expected a duration like 250ms, 10s, 2m");
        break;
    case CFG_PERCENT:
        if (f->max > 0)
            snprintf(buf, len, "expected a percentage from %" PRIu64 "%% to %" PRIu64 "%%", f->min,
                     f->max);
        else
            snprintf(buf, len, "expected a percentage from 0%% to 100%% like 80%%");
        break;
    case CFG_SIZE:
        snprintf(buf, len, "expected a size like 4096, 512KiB, 8MiB, 1GiB");
        break;
    case CFG_UINT:
        snprintf(buf, len, "expected an integer from %" PRIu64 " to %" PRIu64, f->min,
                 f->max < cfg_width_max(f->size) ? f->max : cfg_width_max(f->size));
        break;
    case CFG_BOOL:
        snprintf(buf, len, "expected true or false (or yes/no, on/off)");
        break;
    case CFG_STRING:
    case CFG_PATH:
        snprintf(buf, len, "expected a string of at most %zu bytes", f->size - 1);
        break;
    case CFG_NAME:
        snprintf(buf, len, "expected %s1-%zu characters of a-z 0-9 _ -",
                 f->empty_ok ? "\"\" or " : "", f->size - 1);
        break;
    case CFG_NAMES:
        snprintf(buf, len,
                 "expected a sequence of up to %zu names of 1-%zu characters of a-z 0-9 _ -",
                 f->size / f->elem_size, f->elem_size - 1);
        break;
    case CFG_ADDR:
    case CFG_LISTEN:
        snprintf(buf, len,
                 "expected HOST:PORT like 127.0.0.1:8080, [::1]:8080 or localhost:8080 "
                 "(port 1-65535)");
        break;
    case CFG_URL:
        snprintf(buf, len, "expected \"\" or an http:// or https:// URL of at most %zu bytes",
                 f->size - 1);
        break;
    case CFG_LOGLEVEL:
        snprintf(buf, len, "expected a log level (debug, info, warn, error)");
        break;
    case CFG_LOGFORMAT:
        snprintf(buf, len, "expected a log format (logfmt, json)");
        break;
    case CFG_CHOICE: {
        size_t off = (size_t)snprintf(buf, len, "expected ");
        for (size_t i = 0; i < f->n_choices && off < len; i++)
            off += (size_t)snprintf(buf + off, len - off, "%s%s",
                                    i == 0                  ? ""
                                    : i + 1 == f->n_choices ? " or "
                                                            : ", ",
                                    f->choices[i]);
        break;
    }
    }
    return buf;
}

static int cfg_bad_value(const struct cfg_loader *ld, const struct cfg_field *f,
                         const yaml_node_t *v)
{
    char expect[CFG_EXPECT_LEN];
    char shown[CFG_SHOW_LEN];
    return cfg_fail(ld, v, "%s, got %s", cfg_expected(f, expect, sizeof(expect)),
                    cfg_show(v, shown));
}

/* A plain `key:` with nothing after it (or ~ / null): an empty section or list. */
static bool cfg_is_null(const yaml_node_t *v)
{
    if (v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)v->data.scalar.value;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int cfg_load_mapping(struct cfg_loader *ld, const struct cfg_field *sect, char *base,
                            const yaml_node_t *map);

/* Item `i` of the sequence `seq` (NULL only if libyaml's document is broken). */
static yaml_node_t *cfg_seq_item(const struct cfg_loader *ld, const yaml_node_t *seq, size_t i)
{
    return yaml_document_get_node(ld->doc, seq->data.sequence.items.start[i]);
}

/* The value of `key` in the mapping `map`, or NULL. */
static yaml_node_t *cfg_map_value(const struct cfg_loader *ld, const yaml_node_t *map,
                                  const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    size_t keylen = strlen(key);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE && k->data.scalar.length == keylen &&
            memcmp(k->data.scalar.value, key, keylen) == 0)
            return yaml_document_get_node(ld->doc, p->value);
    }
    return NULL;
}

static int cfg_load_list(struct cfg_loader *ld, const struct cfg_field *f, char *base,
                         const yaml_node_t *v)
{
    char *elems = base + f->offset;
    size_t cap = f->size / f->elem_size;
    unsigned count = 0;
    /* The file's list replaces the one already there, it is not merged. */
    memset(elems, 0, f->size);
    memcpy(base + f->offset2, &count, sizeof(count));
    if (cfg_is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return cfg_bad_value(ld, f, v);
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = cfg_seq_item(ld, v, i);
        if (item == NULL)
            return cfg_fail(ld, v, "internal error: dangling YAML node");
        if (i >= cap)
            return cfg_fail(ld, item, "expected at most %zu %s, got %zu", cap, f->noun, n);
        size_t mark = cfg_path_push_index(ld, i);
        int rc;
        if (item->type != YAML_MAPPING_NODE) {
            char keys[CFG_KEYS_LEN];
            char shown[CFG_SHOW_LEN];
            rc = cfg_fail(ld, item, "expected a mapping with keys %s, got %s",
                          cfg_key_list(f, keys, sizeof(keys)), cfg_show(item, shown));
        } else {
            rc = cfg_load_mapping(ld, f, elems + i * f->elem_size, item);
        }
        cfg_path_pop(ld, mark);
        if (rc == 0 && f->finish != NULL)
            rc = f->finish(ld, elems, i, v);
        if (rc != 0)
            return rc;
        count++;
        memcpy(base + f->offset2, &count, sizeof(count));
    }
    return 0;
}

static bool cfg_name_ok(const char *s, size_t len, size_t max);

/* A sequence of names (fault_tolerance.backup.targets): each one valid,
 * none twice. The file's list replaces the one already there. */
static int cfg_load_names(struct cfg_loader *ld, const struct cfg_field *f, char *base,
                          const yaml_node_t *v)
{
    char *elems = base + f->offset;
    size_t cap = f->size / f->elem_size;
    unsigned count = 0;
    memset(elems, 0, f->size);
    memcpy(base + f->offset2, &count, sizeof(count));
    if (cfg_is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return cfg_bad_value(ld, f, v);
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = cfg_seq_item(ld, v, i);
        if (item == NULL)
            return cfg_fail(ld, v, "internal error: dangling YAML node");
        if (i >= cap)
            return cfg_fail(ld, item, "expected at most %zu %s, got %zu", cap, f->noun, n);
        size_t mark = cfg_path_push_index(ld, i);
        char shown[CFG_SHOW_LEN];
        int rc = 0;
        const char *s = item->type == YAML_SCALAR_NODE ? (const char *)item->data.scalar.value : "";
        size_t len = item->type == YAML_SCALAR_NODE ? item->data.scalar.length : 0;
        if (item->type != YAML_SCALAR_NODE || strlen(s) != len ||
            !cfg_name_ok(s, len, f->elem_size - 1)) {
            rc = cfg_fail(ld, item, "expected 1-%zu characters of a-z 0-9 _ -, got %s",
                          f->elem_size - 1, cfg_show(item, shown));
        } else {
            for (size_t j = 0; j < i && rc == 0; j++)
                if (strcmp(elems + j * f->elem_size, s) == 0)
                    rc = cfg_fail(ld, item,
                                  "expected a name not listed before, got %s (also item %zu)",
                                  cfg_show(item, shown), j);
        }
        cfg_path_pop(ld, mark);
        if (rc != 0)
            return rc;
        memcpy(elems + i * f->elem_size, s, len + 1);
        count++;
        memcpy(base + f->offset2, &count, sizeof(count));
    }
    return 0;
}

/* Plugin config keys: [a-z0-9_], 1 to max bytes, as plugins declare them (plugin.h). */
static bool cfg_kv_key_ok(const char *key, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || cfg_is_digit(c) || c == '_'))
            return false;
    }
    return true;
}

#define CFG_KV_VALUE_EXPECT "expected a scalar value (quote \"\" for an empty string)"

/*
 * Reads a mapping of free-form keys to scalars (a plugin instance's config)
 * into struct rd_cfg_kv[]. Values stay text: the plugin host checks them
 * against the plugin's declared keys later, quoting the line kept here.
 */
static int cfg_load_kv(struct cfg_loader *ld, const struct cfg_field *f, char *base,
                       const yaml_node_t *v)
{
    struct rd_cfg_kv *kv = (struct rd_cfg_kv *)(void *)(base + f->offset);
    const size_t cap = f->size / sizeof(*kv);
    const size_t keymax = sizeof(kv->key) - 1;
    size_t key_line[RD_CFG_MAX_PLUGIN_KEYS]; /* 1-based line of each stored key */
    unsigned count = 0;
    _Static_assert(sizeof(((struct rd_cfg_plugin *)0)->config) / sizeof(struct rd_cfg_kv) <=
                       RD_CFG_MAX_PLUGIN_KEYS,
                   "key_line covers every entry");
    memset(kv, 0, f->size);
    memcpy(base + f->offset2, &count, sizeof(count));
    if (cfg_is_null(v))
        return 0;
    if (v->type != YAML_MAPPING_NODE)
        return cfg_bad_value(ld, f, v);
    size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    for (size_t i = 0; i < n; i++) {
        const yaml_node_pair_t *p = &v->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *val = yaml_document_get_node(ld->doc, p->value);
        char shown[CFG_SHOW_LEN];
        if (k == NULL || val == NULL)
            return cfg_fail(ld, v, "internal error: dangling YAML node");
        if (k->type != YAML_SCALAR_NODE)
            return cfg_fail(ld, k, "expected a key name, got %s", cfg_show(k, shown));
        const char *key = (const char *)k->data.scalar.value;
        size_t keylen = k->data.scalar.length;
        size_t mark = cfg_path_push_key(ld, key, keylen);
        int rc = 0;
        size_t dup = 0;
        for (unsigned j = 0; j < count && dup == 0; j++) {
            if (strlen(kv[j].key) == keylen && memcmp(kv[j].key, key, keylen) == 0)
                dup = key_line[j];
        }
        if (!cfg_kv_key_ok(key, keylen, keymax)) {
            rc = cfg_fail(ld, k, "expected a key of 1-%zu characters of a-z 0-9 _, got %s", keymax,
                          cfg_show(k, shown));
        } else if (dup != 0) {
            rc = cfg_fail(ld, k, "duplicate key (first given at line %zu)", dup);
        } else if (count >= cap) {
            /* Name the mapping, not the key that did not fit. */
            cfg_path_pop(ld, mark);
            return cfg_fail(ld, k, "expected at most %zu keys, got %zu", cap, n);
        } else if (val->type != YAML_SCALAR_NODE || cfg_is_null(val)) {
            rc = cfg_fail(ld, val, CFG_KV_VALUE_EXPECT ", got %s%s", cfg_show(val, shown),
                          val->type == YAML_SCALAR_NODE ? " (null)" : "");
        } else {
            const char *s = (const char *)val->data.scalar.value;
            size_t len = val->data.scalar.length;
            if (strlen(s) != len) {
                rc = cfg_fail(ld, val, CFG_KV_VALUE_EXPECT ", got %s (it contains a NUL byte)",
                              cfg_show(val, shown));
            } else if (len >= sizeof(kv->value)) {
                rc = cfg_fail(ld, val, "expected a value of at most %zu bytes, got %s (%zu bytes)",
                              sizeof(kv->value) - 1, cfg_show(val, shown), len);
            } else {
                struct rd_cfg_kv *e = &kv[count];
                memcpy(e->key, key, keylen);
                e->key[keylen] = '\0';
                memcpy(e->value, s, len + 1);
                e->line = (int)val->start_mark.line + 1;
                key_line[count] = k->start_mark.line + 1;
                count++;
                memcpy(base + f->offset2, &count, sizeof(count));
            }
        }
        cfg_path_pop(ld, mark);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/*
 * After instance `i` of plugins.instances is read: records its line, lets
 * `plugin` default to the name, and refuses a name an earlier instance has
 * (both lines in the message, so either can be fixed).
 */
static int cfg_finish_instance(struct cfg_loader *ld, char *elems, size_t i, const yaml_node_t *seq)
{
    struct rd_cfg_plugin *all = (struct rd_cfg_plugin *)(void *)elems;
    struct rd_cfg_plugin *p = &all[i];
    const yaml_node_t *item = cfg_seq_item(ld, seq, i);
    p->line = (int)item->start_mark.line + 1;
    if (p->plugin[0] == '\0')
        memcpy(p->plugin, p->name, sizeof(p->plugin));
    for (size_t j = 0; j < i; j++) {
        if (strcmp(all[j].name, p->name) != 0)
            continue;
        const yaml_node_t *mine = cfg_map_value(ld, item, "name");
        const yaml_node_t *theirs = cfg_map_value(ld, cfg_seq_item(ld, seq, j), "name");
        char list[RD_CFG_STR];
        char shown[CFG_SHOW_LEN];
        memcpy(list, ld->path, sizeof(list));
        size_t mark = cfg_path_push_index(ld, i);
        cfg_path_push_key(ld, "name", 4);
        int rc = cfg_fail(ld, mine != NULL ? mine : item,
                          "expected a name no other instance has, got %s (also %s[%zu].name at "
                          "line %zu)",
                          cfg_show(mine != NULL ? mine : item, shown), list, j,
                          (theirs != NULL ? theirs->start_mark.line : 0) + 1);
        cfg_path_pop(ld, mark);
        return rc;
    }
    return 0;
}

static bool cfg_name_ok(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || cfg_is_digit(c) || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/*
 * A relative path `s` (`len` bytes) of field `f`, joined to the config
 * file's directory into `dst`. Absolute paths, empty values and a file in
 * the working directory (base "") stay as written.
 */
static int cfg_set_path(struct cfg_loader *ld, const struct cfg_field *f, const yaml_node_t *v,
                        const char *s, size_t len, char *dst)
{
    const char *base = ld->base_dir;
    if (len == 0 || s[0] == '/' || base == NULL || base[0] == '\0') {
        memcpy(dst, s, len + 1);
        return 0;
    }
    size_t blen = strlen(base);
    bool slash = base[blen - 1] == '/';
    size_t total = blen + (slash ? 0 : 1) + len;
    if (total >= f->size) {
        char shown[CFG_SHOW_LEN];
        return cfg_fail(ld, v,
                        "expected a path of at most %zu bytes once resolved against the config "
                        "file's directory %s, got %s (%zu bytes resolved)",
                        f->size - 1, base, cfg_show(v, shown), total);
    }
    snprintf(dst, f->size, "%s%s%s", base, slash ? "" : "/", s);
    return 0;
}

static int cfg_set_value(struct cfg_loader *ld, const struct cfg_field *f, char *base,
                         const yaml_node_t *v);

/* Reads one value `v` into field `f` of `base`. The path already names it. */
static int cfg_set(struct cfg_loader *ld, const struct cfg_field *f, char *base,
                   const yaml_node_t *v)
{
    int rc = cfg_set_value(ld, f, base, v);
    if (rc == 0 && f->setting > 0 && ld->cfg != NULL)
        ld->cfg->origin[f->setting - 1] = (int)v->start_mark.line + 1;
    return rc;
}

static int cfg_set_value(struct cfg_loader *ld, const struct cfg_field *f, char *base,
                         const yaml_node_t *v)
{
    void *dst = base + f->offset;
    if (f->type == CFG_SECTION) {
        if (cfg_is_null(v))
            return 0;
        if (v->type != YAML_MAPPING_NODE)
            return cfg_bad_value(ld, f, v);
        return cfg_load_mapping(ld, f, base, v);
    }
    if (f->type == CFG_LIST)
        return cfg_load_list(ld, f, base, v);
    if (f->type == CFG_KV)
        return cfg_load_kv(ld, f, base, v);
    if (f->type == CFG_NAMES)
        return cfg_load_names(ld, f, base, v);
    if (v->type != YAML_SCALAR_NODE)
        return cfg_bad_value(ld, f, v);

    const char *s = (const char *)v->data.scalar.value;
    size_t len = v->data.scalar.length;
    if (strlen(s) != len) {
        char expect[CFG_EXPECT_LEN];
        char shown[CFG_SHOW_LEN];
        return cfg_fail(ld, v, "%s, got %s (it contains a NUL byte)",
                        cfg_expected(f, expect, sizeof(expect)), cfg_show(v, shown));
    }

    switch (f->type) {
    case CFG_DURATION: {
        uint64_t ms;
        if (rd_config_parse_duration(s, &ms) != 0 || ms > cfg_width_max(f->size))
            return cfg_bad_value(ld, f, v);
        cfg_store_uint(dst, f->size, ms);
        return 0;
    }
    case CFG_PERCENT: {
        unsigned pct;
        if (rd_config_parse_percent(s, &pct) != 0 || (f->max > 0 && (pct < f->min || pct > f->max)))
            return cfg_bad_value(ld, f, v);
        cfg_store_uint(dst, f->size, pct);
        return 0;
    }
    case CFG_SIZE: {
        size_t bytes;
        if (rd_config_parse_size(s, &bytes) != 0 || bytes > cfg_width_max(f->size))
            return cfg_bad_value(ld, f, v);
        cfg_store_uint(dst, f->size, bytes);
        return 0;
    }
    case CFG_UINT: {
        uint64_t n;
        const char *end;
        if (cfg_parse_digits(s, &n, &end) != 0 || *end != '\0' || n < f->min || n > f->max ||
            n > cfg_width_max(f->size))
            return cfg_bad_value(ld, f, v);
        cfg_store_uint(dst, f->size, n);
        return 0;
    }
    case CFG_BOOL: {
        bool b;
        if (cfg_parse_bool(s, &b) != 0)
            return cfg_bad_value(ld, f, v);
        memcpy(dst, &b, sizeof(b));
        return 0;
    }
    case CFG_STRING:
    case CFG_PATH:
        if (cfg_is_null(v)) {
            memset(dst, 0, 1);
            return 0;
        }
        if (len >= f->size) {
            char expect[CFG_EXPECT_LEN];
            char shown[CFG_SHOW_LEN];
            return cfg_fail(ld, v, "%s, got %s (%zu bytes)",
                            cfg_expected(f, expect, sizeof(expect)), cfg_show(v, shown), len);
        }
        if (f->type == CFG_PATH) /* relative to the config file's directory */
            return cfg_set_path(ld, f, v, s, len, dst);
        memcpy(dst, s, len + 1);
        return 0;
    case CFG_NAME:
        if (f->empty_ok && (len == 0 || cfg_is_null(v))) {
            memset(dst, 0, 1);
            return 0;
        }
        if (!cfg_name_ok(s, len, f->size - 1))
            return cfg_bad_value(ld, f, v);
        memcpy(dst, s, len + 1);
        return 0;
    case CFG_URL:
        if (cfg_is_null(v) || len == 0) {
            memset(dst, 0, 1);
            return 0;
        }
        if (len >= f->size || (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0))
            return cfg_bad_value(ld, f, v);
        memcpy(dst, s, len + 1);
        return 0;
    case CFG_ADDR: {
        char host[RD_CFG_STR];
        uint16_t port;
        if (len >= f->size || rd_config_parse_hostport(s, host, &port) != 0)
            return cfg_bad_value(ld, f, v);
        memcpy(dst, s, len + 1);
        return 0;
    }
    case CFG_LISTEN: {
        char host[RD_CFG_STR];
        uint16_t port;
        if (rd_config_parse_hostport(s, host, &port) != 0 || strlen(host) >= f->size)
            return cfg_bad_value(ld, f, v);
        memcpy(dst, host, strlen(host) + 1);
        memcpy(base + f->offset2, &port, sizeof(port));
        return 0;
    }
    case CFG_LOGLEVEL: {
        enum rd_log_level level;
        if (rd_log_level_parse(s, &level) != 0)
            return cfg_bad_value(ld, f, v);
        memcpy(dst, &level, sizeof(level));
        return 0;
    }
    case CFG_LOGFORMAT: {
        enum rd_log_format format;
        if (rd_log_format_parse(s, &format) != 0)
            return cfg_bad_value(ld, f, v);
        memcpy(dst, &format, sizeof(format));
        return 0;
    }
    case CFG_CHOICE:
        for (unsigned i = 0; i < f->n_choices; i++) {
            if (strcmp(s, f->choices[i]) == 0) {
                memcpy(dst, &i, sizeof(i));
                return 0;
            }
        }
        return cfg_bad_value(ld, f, v);
    case CFG_SECTION:
    case CFG_LIST:
    case CFG_KV:
    case CFG_NAMES:
        break;
    }
    return cfg_fail(ld, v, "internal error: unhandled field type");
}

/*
 * Reads the mapping `map` against the children of `sect` into `base`:
 * unknown, duplicate and (for required keys) missing keys are errors.
 */
static int cfg_load_mapping(struct cfg_loader *ld, const struct cfg_field *sect, char *base,
                            const yaml_node_t *map)
{
    size_t seen[CFG_MAX_KEYS] = {0}; /* 1-based line of each key's first use */
    if (sect->n_children > CFG_MAX_KEYS)
        return cfg_fail(ld, map, "internal error: section has more than %d keys", CFG_MAX_KEYS);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
        if (k == NULL || v == NULL)
            return cfg_fail(ld, map, "internal error: dangling YAML node");
        if (k->type != YAML_SCALAR_NODE) {
            char shown[CFG_SHOW_LEN];
            return cfg_fail(ld, k, "expected a key name, got %s", cfg_show(k, shown));
        }
        const char *key = (const char *)k->data.scalar.value;
        size_t keylen = k->data.scalar.length;
        size_t i = 0;
        while (i < sect->n_children && !(strlen(sect->children[i].key) == keylen &&
                                         memcmp(sect->children[i].key, key, keylen) == 0))
            i++;
        size_t mark = cfg_path_push_key(ld, key, keylen);
        int rc;
        if (i == sect->n_children) {
            char keys[CFG_KEYS_LEN];
            rc = cfg_fail(ld, k, "unknown key (expected one of: %s)",
                          cfg_key_list(sect, keys, sizeof(keys)));
        } else if (seen[i] != 0) {
            rc = cfg_fail(ld, k, "duplicate key (first given at line %zu)", seen[i]);
        } else {
            seen[i] = k->start_mark.line + 1;
            rc = cfg_set(ld, &sect->children[i], base, v);
        }
        cfg_path_pop(ld, mark);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < sect->n_children; i++) {
        if (sect->children[i].required && seen[i] == 0) {
            char keys[CFG_KEYS_LEN];
            return cfg_fail(ld, map, "missing key '%s' (expected keys: %s)", sect->children[i].key,
                            cfg_key_list(sect, keys, sizeof(keys)));
        }
    }
    return 0;
}

/* libyaml's own message for a document it could not parse. */
static int cfg_syntax_error(const char *name, const yaml_parser_t *parser, const char *yaml,
                            size_t len, char *err)
{
    if (parser->error == YAML_MEMORY_ERROR)
        return cfg_errf(err, RD_ENOMEM, "%s: out of memory while reading YAML", name);
    size_t line;
    if (parser->error == YAML_READER_ERROR) {
        /* Reader errors (bad UTF-8, control bytes) carry an offset, not a mark. */
        size_t end = parser->problem_offset < len ? parser->problem_offset : len;
        line = 1;
        for (size_t i = 0; i < end; i++)
            line += yaml[i] == '\n';
    } else {
        line = parser->problem_mark.line + 1;
    }
    const char *problem = parser->problem != NULL ? parser->problem : "unknown error";
    if (parser->context != NULL)
        return cfg_errf(err, RD_ECONFIG, "%s:%zu: YAML syntax error: %s (%s at line %zu)", name,
                        line, problem, parser->context, parser->context_mark.line + 1);
    return cfg_errf(err, RD_ECONFIG, "%s:%zu: YAML syntax error: %s", name, line, problem);
}

/* rd_config_load_string() with relative paths resolved against `base_dir` (NULL: none). */
static int cfg_load(struct rd_config *cfg, const char *name, const char *base_dir, const char *yaml,
                    size_t len, char err[RD_CFG_ERRLEN])
{
    if (name == NULL)
        name = "<string>";
    if (err != NULL)
        err[0] = '\0';
    if (cfg == NULL || (yaml == NULL && len > 0))
        return cfg_errf(err, RD_EINVAL, "%s: no configuration to read", name);
    if (strlen(name) >= sizeof(cfg->path))
        return cfg_errf(err, RD_ECONFIG, "%s: file name longer than %zu bytes", name,
                        sizeof(cfg->path) - 1);
    if (yaml == NULL)
        yaml = ""; /* libyaml insists on a buffer even when it is empty */

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return cfg_errf(err, RD_ENOMEM, "%s: out of memory while reading YAML", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);

    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = cfg_syntax_error(name, &parser, yaml, len, err);
        yaml_parser_delete(&parser);
        return rc;
    }

    struct cfg_loader ld = {
        .name = name, .base_dir = base_dir, .cfg = cfg, .doc = &doc, .err = err};
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    /* No root: the file is empty or only comments, and the defaults stand. */
    if (root != NULL) {
        if (root->type == YAML_MAPPING_NODE)
            rc = cfg_load_mapping(&ld, &cfg_root, (char *)cfg, root);
        else if (!cfg_is_null(root))
            rc = cfg_bad_value(&ld, &cfg_root, root);
        if (rc == 0) {
            /* A second document would be silently ignored otherwise. */
            yaml_document_t extra;
            if (!yaml_parser_load(&parser, &extra)) {
                rc = cfg_syntax_error(name, &parser, yaml, len, err);
            } else {
                yaml_node_t *more = yaml_document_get_root_node(&extra);
                if (more != NULL) {
                    ld.doc = &extra;
                    rc = cfg_fail(&ld, more,
                                  "expected one YAML document, got a second one (after ---)");
                }
                yaml_document_delete(&extra);
            }
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc == 0)
        memcpy(cfg->path, name, strlen(name) + 1);
    return rc;
}

int rd_config_load_string(struct rd_config *cfg, const char *name, const char *yaml, size_t len,
                          char err[RD_CFG_ERRLEN])
{
    return cfg_load(cfg, name, NULL, yaml, len, err);
}

int rd_config_load_file(struct rd_config *cfg, const char *path, char err[RD_CFG_ERRLEN])
{
    if (err != NULL)
        err[0] = '\0';
    if (cfg == NULL || path == NULL)
        return cfg_errf(err, RD_EINVAL, "no configuration file given");
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        return cfg_errf(err, RD_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= CFG_MAX_FILE) {
                rc = cfg_errf(err, RD_ECONFIG, "%s: too large for a config file (over %d bytes)",
                              path, CFG_MAX_FILE);
                break;
            }
            size_t ncap = cap == 0 ? 4096 : cap * 2;
            /* One byte beyond the limit tells "exactly the limit" from "over it". */
            if (ncap > CFG_MAX_FILE)
                ncap = CFG_MAX_FILE + 1;
            char *nbuf = realloc(buf, ncap);
            if (nbuf == NULL) {
                rc = cfg_errf(err, RD_ENOMEM, "%s: out of memory reading the file", path);
                break;
            }
            buf = nbuf;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                rc = cfg_errf(err, RD_EIO, "%s: cannot read: %s", path, strerror(e));
            }
            break;
        }
    }
    if (rc == 0 && len > CFG_MAX_FILE)
        rc = cfg_errf(err, RD_ECONFIG, "%s: too large for a config file (over %d bytes)", path,
                      CFG_MAX_FILE);
    fclose(f);
    if (rc == 0) {
        /* The file's directory: "" for a file named without one (the
         * working directory, where relative paths already point). */
        char base[RD_CFG_STR];
        const char *slash = strrchr(path, '/');
        size_t blen = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
        if (blen >= sizeof(base))
            blen = sizeof(base) - 1; /* load_string refuses such a name anyway */
        memcpy(base, path, blen);
        base[blen] = '\0';
        rc = cfg_load(cfg, path, base, buf, len, err);
    }
    free(buf);
    return rc;
}

/* ---- cluster.tls ------------------------------------------------------------ */

/*
 * All of ca, cert and key, or none. None on a raft address other than
 * loopback: refused unless insecure_plaintext says so (docs/security.md).
 */
static int cfg_check_cluster_tls(const struct rd_config *cfg, const char *raft_host,
                                 char err[RD_CFG_ERRLEN])
{
    const struct {
        const char *key;
        const char *value;
    } paths[] = {{"cluster.tls.ca", cfg->cluster.tls.ca},
                 {"cluster.tls.cert", cfg->cluster.tls.cert},
                 {"cluster.tls.key", cfg->cluster.tls.key}};
    unsigned set = 0;
    for (size_t i = 0; i < RD_ARRAY_SIZE(paths); i++)
        set += paths[i].value[0] != '\0';
    if (set > 0 && set < RD_ARRAY_SIZE(paths))
        for (size_t i = 0; i < RD_ARRAY_SIZE(paths); i++)
            if (paths[i].value[0] == '\0')
                return cfg_errf(err, RD_ECONFIG,
                                "%s: expected a PEM file (mutual TLS between replicas needs "
                                "cluster.tls.ca, cluster.tls.cert and cluster.tls.key), got ''",
                                paths[i].key);
    if (set == 0 && !cfg->cluster.tls.insecure_plaintext && !rd_config_host_is_loopback(raft_host))
        return cfg_errf(err, RD_ECONFIG,
                        "cluster.raft_address: '%s' is not a loopback address and cluster.tls is "
                        "not set: any host that reaches this port could join, vote and read the "
                        "log. Set cluster.tls.ca, cluster.tls.cert and cluster.tls.key "
                        "(deploy/make-certs.sh makes them; docs/security.md), or "
                        "cluster.tls.insecure_plaintext: true on a network you trust",
                        cfg->cluster.raft_address);
    return 0;
}

/* ---- where a setting came from ------------------------------------------ */

static const struct {
    const char *key;
    const char *flag; /* NULL: no flag sets it */
} cfg_settings[RD_CFG_N_SETTINGS] = {
    [RD_CFG_SERVER_LISTEN] = {"server.listen", "--listen"},
    [RD_CFG_TLS_CERT] = {"server.tls.cert", NULL},
    [RD_CFG_TLS_KEY] = {"server.tls.key", NULL},
    [RD_CFG_DATA_DIR] = {"storage.data_dir", "--data-dir"},
    [RD_CFG_RAFT_ADDRESS] = {"cluster.raft_address", "--raft-address"},
    [RD_CFG_PLUGINS_DIR] = {"plugins.dir", "--plugins-dir"},
    [RD_CFG_POLICIES_DIR] = {"policies.dir", "--policies-dir"},
    [RD_CFG_BACKUP_TARGETS] = {"fault_tolerance.backup.targets", NULL},
    [RD_CFG_ARCHIVE_TARGET] = {"fault_tolerance.backup.archive.target", NULL},
    [RD_CFG_CLUSTER_TLS_CA] = {"cluster.tls.ca", NULL},
    [RD_CFG_CLUSTER_TLS_CERT] = {"cluster.tls.cert", NULL},
    [RD_CFG_CLUSTER_TLS_KEY] = {"cluster.tls.key", NULL},
    [RD_CFG_UI_DIR] = {"server.ui_dir", NULL},
};

const char *rd_config_origin(const struct rd_config *cfg, enum rd_cfg_setting s, char *buf,
                             size_t len)
{
    if (buf == NULL || len == 0)
        return buf;
    if (cfg == NULL || (unsigned)s >= RD_CFG_N_SETTINGS) {
        snprintf(buf, len, "(unknown setting)");
        return buf;
    }
    const char *key = cfg_settings[s].key, *flag = cfg_settings[s].flag;
    int line = cfg->origin[s];
    if (line == RD_CFG_FROM_FLAG && flag != NULL)
        snprintf(buf, len, "set by %s, which overrides %s", flag, key);
    else if (line > 0 && flag != NULL)
        snprintf(buf, len, "set by %s at %s:%d; %s overrides it", key, cfg->path, line, flag);
    else if (line > 0)
        snprintf(buf, len, "set by %s at %s:%d", key, cfg->path, line);
    else if (flag != NULL)
        snprintf(buf, len, "the built-in default of %s; set it in the config file or with %s", key,
                 flag);
    else
        snprintf(buf, len, "the built-in default of %s", key);
    return buf;
}

/* ---- defaults, validation --------------------------------------------- */

static void cfg_copy(char *dst, const char *src)
{
    snprintf(dst, RD_CFG_STR, "%s", src);
}

void rd_config_defaults(struct rd_config *cfg)
{
    /* Zero first so padding is defined and every list starts empty. */
    memset(cfg, 0, sizeof(*cfg));

    cfg_copy(cfg->server.listen_host, "127.0.0.1");
    cfg->server.listen_port = 8080;
    cfg->server.max_body_bytes = (size_t)1 << 20;
    cfg->server.shutdown_timeout_ms = 10 * 1000;
    cfg_copy(cfg->server.ui_dir, "ui");
    cfg->server.edge.max_connections = 1024;
    cfg->server.edge.max_per_address = 128;
    cfg->server.edge.reserved_fds = 128;
    cfg->server.edge.idle_timeout_ms = 30 * 1000;
    cfg->server.edge.request_timeout_ms = 10 * 1000;
    cfg->server.edge.max_header_list = (size_t)64 << 10;
    cfg->server.edge.max_body_buffered = (size_t)4 << 20;
    cfg->server.edge.reset_budget = 20;
    cfg->server.edge.frame_budget = 1000;
    cfg->server.edge.abuse_block_ms = 10 * 1000;
    cfg->server.events.ring_size = 4096;
    cfg->server.events.max_streams = 256;
    cfg->server.events.max_per_principal = 16;
    cfg->server.events.keepalive_ms = 15 * 1000;
    cfg->server.events.stall_timeout_ms = 10 * 1000;

    cfg->security.metrics_open = true;

    cfg_copy(cfg->storage.data_dir, "./var");
    cfg->storage.snapshot_threshold = 65536;
    cfg->storage.snapshot_trailing = 1024;
    cfg->storage.snapshot_threshold_bytes = (uint64_t)64 << 20;
    cfg->storage.snapshot_trailing_bytes = (uint64_t)16 << 20;
    cfg->storage.segment_size = (size_t)8 << 20;

    cfg_copy(cfg->cluster.name, "recoveryd");
    cfg_copy(cfg->cluster.node_id, "rd1");
    cfg->cluster.replica_id = 1;
    cfg_copy(cfg->cluster.raft_address, "127.0.0.1:7080");
    cfg->cluster.election_timeout_ms = 300;
    cfg->cluster.heartbeat_timeout_ms = 50;
    cfg->cluster.pre_vote = true;
    cfg->cluster.group_commit = true;
    cfg->cluster.group_commit_delay_ms = 5;
    cfg->cluster.tls.check_replica_id = true;
    cfg->cluster.max_inflight = 256;
    cfg->cluster.n_peers = 0;

    cfg_copy(cfg->plugins.dir, "build/plugins");
    /* The detector the engine cannot work without is required; the rest may
     * fail to start and the engine runs on without them. */
    static const struct {
        const char *name;
        bool required;
    } plugins[] = {
        {"heartbeat", true}, {"health_probe", false}, {"metrics", false}, {"log", false}};
    _Static_assert(RD_ARRAY_SIZE(plugins) <= RD_CFG_MAX_PLUGINS, "default plugins fit");
    for (size_t i = 0; i < RD_ARRAY_SIZE(plugins); i++) {
        struct rd_cfg_plugin *p = &cfg->plugins.instances[i];
        snprintf(p->name, sizeof(p->name), "%s", plugins[i].name);
        snprintf(p->plugin, sizeof(p->plugin), "%s", plugins[i].name);
        p->required = plugins[i].required;
    }
    cfg->plugins.n_instances = (unsigned)RD_ARRAY_SIZE(plugins);

    cfg_copy(cfg->policies.dir, "policies");
    cfg->policies.budget_ms = 50;
    cfg->policies.memory_limit = (size_t)64 << 20;

    cfg->logging.level = RD_LOG_INFO;
    cfg->logging.format = RD_LOG_LOGFMT;

    /* Far below the requirement's 10s x 3: failures are seen in 1.5 s. */
    cfg->fault_tolerance.detection.heartbeat_interval_ms = 500;
    cfg->fault_tolerance.detection.health_check_timeout_ms = 1000;
    cfg->fault_tolerance.detection.failure_threshold = 3;
    cfg->fault_tolerance.detection.recovery_threshold = 2;
    cfg->fault_tolerance.detection.flap_window_ms = 60 * 1000;
    cfg->fault_tolerance.detection.flap_threshold = 3;
    cfg->fault_tolerance.detection.flap_penalty = 3;
    cfg->fault_tolerance.recovery_strategies.fast_recovery.max_time_ms = 2 * 60 * 1000;
    cfg->fault_tolerance.recovery_strategies.fast_recovery.resource_limit = 80;
    cfg->fault_tolerance.recovery_strategies.safe_recovery.max_time_ms = 10 * 60 * 1000;
    cfg->fault_tolerance.recovery_strategies.safe_recovery.consistency_check = true;
    cfg->fault_tolerance.recovery_strategies.degraded_service.essential_services_only = true;
    cfg->fault_tolerance.recovery_strategies.degraded_service.performance_limit = 50;
    cfg->fault_tolerance.backup.interval_ms = 5 * 60 * 1000;
    cfg->fault_tolerance.backup.retention_period_ms = UINT64_C(7) * 24 * 3600 * 1000;
    cfg->fault_tolerance.backup.consistency_check_interval_ms = 3600 * 1000;
    cfg->fault_tolerance.backup.keep_min = 3;
    cfg->fault_tolerance.backup.cpu_share = 10;
    cfg->fault_tolerance.backup.archive.max_delay_ms = 1000;
    cfg->fault_tolerance.partition.mass_failure_share = 50;
    cfg->fault_tolerance.partition.mass_failure_window_ms = 10 * 1000;
    cfg->fault_tolerance.partition.min_nodes = 4;
    cfg->fault_tolerance.partition.alert_after_ms = 5 * 60 * 1000;
    cfg->fault_tolerance.partition.mode = RD_PARTITION_CONSISTENCY;
    cfg->fault_tolerance.partition.on_conflict = RD_CFG_KEEP_PROGRESS;
    cfg->fault_tolerance.poison.max_failures = 3;
    cfg->fault_tolerance.poison.window_ms = 10 * 60 * 1000;
    cfg->fault_tolerance.tasks.retention_ms = UINT64_C(7) * 24 * 3600 * 1000;
    snprintf(cfg->fault_tolerance.records.schema, sizeof(cfg->fault_tolerance.records.schema),
             "public");
    cfg->fault_tolerance.records.batch_size = 500;
    cfg->fault_tolerance.records.max_retained = 200000;
    cfg->fault_tolerance.records.timeout_ms = 10 * 1000;
    cfg->fault_tolerance.records.interval_ms = 100;
    cfg->fault_tolerance.prediction.drains_per_minute = 2;
    cfg->fault_tolerance.prediction.min_healthy_capacity = 50;
    cfg->fault_tolerance.rebalance.enabled = true;
    cfg->fault_tolerance.rebalance.skew_threshold = 20;
    cfg->fault_tolerance.rebalance.moves_per_minute = 60;
    cfg->fault_tolerance.rebalance.cooldown_ms = 5 * 60 * 1000;
    cfg->fault_tolerance.rebalance.checkpoint_wait_ms = 30 * 1000;
    cfg->fault_tolerance.rebalance.settle_ms = 2000;
    cfg->security.audit.max_records = 100000;
    cfg->security.audit.max_age_ms = UINT64_C(30) * 24 * 3600 * 1000;
}

#define CFG_MIN_HEARTBEAT_MS 10
#define CFG_MIN_MAX_BODY     ((uint64_t)1 << 10)
#define CFG_MAX_MAX_BODY     ((uint64_t)1 << 30)

static int cfg_check_peers(const struct rd_config *cfg, char *err)
{
    const unsigned n = cfg->cluster.n_peers;
    if (n == 0)
        return 0;
    if (n > RD_CFG_MAX_PEERS)
        return cfg_errf(err, RD_ECONFIG, "cluster.peers: expected at most %d peers, got %u",
                        RD_CFG_MAX_PEERS, n);
    bool self = false;
    for (unsigned i = 0; i < n; i++) {
        const struct rd_cfg_peer *p = &cfg->cluster.peers[i];
        if (p->id == 0)
            return cfg_errf(err, RD_ECONFIG,
                            "cluster.peers[%u].id: expected a raft server id above 0, got '0'", i);
        for (unsigned j = 0; j < i; j++) {
            if (cfg->cluster.peers[j].id == p->id)
                return cfg_errf(err, RD_ECONFIG,
                                "cluster.peers[%u].id: expected an id no other peer has, got "
                                "'%" PRIu64 "' (also cluster.peers[%u].id)",
                                i, p->id, j);
        }
        if (p->address[0] == '\0')
            return cfg_errf(err, RD_ECONFIG,
                            "cluster.peers[%u].address: expected HOST:PORT of peer %" PRIu64
                            "'s raft endpoint, got ''",
                            i, p->id);
        if (p->id == cfg->cluster.replica_id)
            self = true;
    }
    if (cfg->cluster.force_new_cluster && cfg->cluster.join)
        return cfg_errf(err, RD_ECONFIG,
                        "--force-new-cluster: makes this replica a voter, which cluster.join "
                        "(--join) says it is not yet; use one or the other");
    if (!self && !cfg->cluster.join)
        return cfg_errf(err, RD_ECONFIG,
                        "cluster.peers: no entry has this replica's id %" PRIu64
                        " (cluster.replica_id)",
                        cfg->cluster.replica_id);
    return 0;
}

/* Same rules as the loader, for lists built or changed in code. */
static int cfg_check_plugins(const struct rd_config *cfg, char *err)
{
    const unsigned n = cfg->plugins.n_instances;
    if (n > RD_CFG_MAX_PLUGINS)
        return cfg_errf(err, RD_ECONFIG, "plugins.instances: expected at most %d instances, got %u",
                        RD_CFG_MAX_PLUGINS, n);
    for (unsigned i = 0; i < n; i++) {
        const struct rd_cfg_plugin *p = &cfg->plugins.instances[i];
        size_t len = strnlen(p->name, sizeof(p->name));
        if (len == sizeof(p->name) || !cfg_name_ok(p->name, len, sizeof(p->name) - 1))
            return cfg_errf(err, RD_ECONFIG,
                            "plugins.instances[%u].name: expected 1-%zu characters of a-z 0-9 _ "
                            "-, got '%.*s'",
                            i, sizeof(p->name) - 1, (int)len, p->name);
        len = strnlen(p->plugin, sizeof(p->plugin));
        if (len == sizeof(p->plugin) || !cfg_name_ok(p->plugin, len, sizeof(p->plugin) - 1))
            return cfg_errf(err, RD_ECONFIG,
                            "plugins.instances[%u].plugin: expected 1-%zu characters of a-z 0-9 "
                            "_ -, got '%.*s'",
                            i, sizeof(p->plugin) - 1, (int)len, p->plugin);
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(cfg->plugins.instances[j].name, p->name) == 0)
                return cfg_errf(err, RD_ECONFIG,
                                "plugins.instances[%u].name: expected a name no other instance "
                                "has, got '%s' (also plugins.instances[%u].name)",
                                i, p->name, j);
        }
        if (p->n_config > RD_CFG_MAX_PLUGIN_KEYS)
            return cfg_errf(err, RD_ECONFIG,
                            "plugins.instances[%u].config: expected at most %d keys, got %u", i,
                            RD_CFG_MAX_PLUGIN_KEYS, p->n_config);
    }
    return 0;
}

/* The plugin instance named `name`, or NULL. */
static const struct rd_cfg_plugin *cfg_find_instance(const struct rd_config *cfg, const char *name)
{
    for (unsigned i = 0; i < cfg->plugins.n_instances && i < RD_CFG_MAX_PLUGINS; i++)
        if (strcmp(cfg->plugins.instances[i].name, name) == 0)
            return &cfg->plugins.instances[i];
    return NULL;
}

/*
 * fault_tolerance.backup: the targets name configured instances (whether
 * each is a backup plugin is known once the .so is loaded: the backup
 * module checks it at start), and the archive target is one of them.
 */
static int cfg_check_backup(const struct rd_config *cfg, char *err)
{
    char a[32], where[RD_CFG_STR + 64];
    const unsigned n = cfg->fault_tolerance.backup.n_targets;
    const int line = cfg->origin[RD_CFG_BACKUP_TARGETS];
    if (line > 0)
        snprintf(where, sizeof(where), " (set at %s:%d)", cfg->path, line);
    else
        where[0] = '\0';
    if (cfg->fault_tolerance.backup.interval_ms < 100) {
        cfg_format_duration(cfg->fault_tolerance.backup.interval_ms, a, sizeof(a));
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.backup.interval: expected at least 100ms, got '%s'", a);
    }
    if (cfg->fault_tolerance.backup.archive.max_delay_ms == 0)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.backup.archive.max_delay: expected a duration above 0, "
                        "got '0ms'");
    if (n > RD_CFG_MAX_PLUGINS)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.backup.targets: expected at most %d targets, got %u",
                        RD_CFG_MAX_PLUGINS, n);
    for (unsigned i = 0; i < n; i++) {
        const char *t = cfg->fault_tolerance.backup.targets[i];
        if (cfg_find_instance(cfg, t) == NULL)
            return cfg_errf(err, RD_ECONFIG,
                            "fault_tolerance.backup.targets[%u]: '%s' is not a configured plugin "
                            "instance%s: add it to plugins.instances (plugin: file, s3 or "
                            "postgres) or remove it from the list",
                            i, t, where);
    }
    const char *arch = cfg->fault_tolerance.backup.archive.target;
    if (cfg->origin[RD_CFG_ARCHIVE_TARGET] != 0 && arch[0] != '\0') {
        bool listed = line == 0; /* every backup instance is a target: checked at start */
        for (unsigned i = 0; i < n && !listed; i++)
            listed = strcmp(cfg->fault_tolerance.backup.targets[i], arch) == 0;
        if (!listed || cfg_find_instance(cfg, arch) == NULL)
            return cfg_errf(err, RD_ECONFIG,
                            "fault_tolerance.backup.archive.target: '%s' is not one of the backup "
                            "targets (set at %s:%d): name one of fault_tolerance.backup.targets, "
                            "or \"\" for no archiving",
                            arch, cfg->path, cfg->origin[RD_CFG_ARCHIVE_TARGET]);
    }
    return 0;
}

/* server.edge: limits that keep one client from starving the others. */
static int cfg_validate_edge(const struct rd_config *cfg, char err[RD_CFG_ERRLEN])
{
    const struct rd_cfg_edge *e = &cfg->server.edge;
    char a[32];
    if (e->max_per_address > e->max_connections)
        return cfg_errf(err, RD_ECONFIG,
                        "server.edge.max_connections_per_address: expected at most "
                        "server.edge.max_connections (%u), got '%u'",
                        e->max_connections, e->max_per_address);
    if (e->idle_timeout_ms < 100 || e->request_timeout_ms < 100)
        return cfg_errf(err, RD_ECONFIG, "server.edge.%s: expected at least 100ms, got '%llums'",
                        e->idle_timeout_ms < 100 ? "idle_timeout" : "request_timeout",
                        (unsigned long long)(e->idle_timeout_ms < 100 ? e->idle_timeout_ms
                                                                      : e->request_timeout_ms));
    if (e->max_header_list < 1024 || e->max_header_list > ((size_t)1 << 20)) {
        cfg_format_size(e->max_header_list, a, sizeof(a));
        return cfg_errf(err, RD_ECONFIG,
                        "server.edge.max_header_list: expected a size from 1KiB to 1MiB, got '%s'",
                        a);
    }
    return 0;
}

/* fault_tolerance.rebalance's durations (docs/configuration.md). */
static int cfg_check_rebalance(const struct rd_config *cfg, char *err)
{
    const uint64_t cooldown = cfg->fault_tolerance.rebalance.cooldown_ms;
    const uint64_t wait = cfg->fault_tolerance.rebalance.checkpoint_wait_ms;
    char t[32];
    if (cooldown < 1000 || cooldown > UINT64_C(24) * 3600 * 1000) {
        cfg_format_duration(cooldown, t, sizeof(t));
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.rebalance.cooldown: expected a duration from 1s to 1d "
                        "(a task moved is not moved again within it), got '%s'",
                        t);
    }
    if (wait < 100 || wait > 60 * 60 * 1000) {
        cfg_format_duration(wait, t, sizeof(t));
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.rebalance.checkpoint_wait: expected a duration from "
                        "100ms to 1h, got '%s'",
                        t);
    }
    const uint64_t settle = cfg->fault_tolerance.rebalance.settle_ms;
    if (settle > 10 * 60 * 1000) {
        cfg_format_duration(settle, t, sizeof(t));
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.rebalance.settle: expected a duration from 0s to 10m, "
                        "got '%s'",
                        t);
    }
    return 0;
}

/* fault_tolerance.records (docs/records.md): what the range checks of the
 * keys themselves do not say. */
static int cfg_check_records(const struct rd_config *cfg, char *err)
{
    const char *schema = cfg->fault_tolerance.records.schema;
    bool ok = schema[0] != '\0' && !(schema[0] >= '0' && schema[0] <= '9');
    for (const char *p = schema; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
    if (!ok)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.records.schema: expected a PostgreSQL schema name of "
                        "1-63 characters a-z 0-9 _ not starting with a digit, got '%s'",
                        schema);
    const char *conninfo = cfg->fault_tolerance.records.conninfo;
    if (conninfo[0] != '\0') {
        char *why = NULL;
        PQconninfoOption *opts = PQconninfoParse(conninfo, &why);
        if (opts == NULL) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s", why ? why : "out of memory");
            PQfreemem(why);
            size_t n = strlen(msg);
            while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                msg[--n] = '\0';
            return cfg_errf(err, RD_ECONFIG,
                            "fault_tolerance.records.conninfo: not a libpq connection string or "
                            "URI: %s",
                            msg);
        }
        PQconninfoFree(opts);
    }
    const uint64_t timeout = cfg->fault_tolerance.records.timeout_ms;
    if (timeout < 1000 || timeout > 10 * 60 * 1000) {
        char t[32];
        cfg_format_duration(timeout, t, sizeof(t));
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.records.timeout: expected a duration from 1s to 10m, got "
                        "'%s'",
                        t);
    }
    const uint64_t interval = cfg->fault_tolerance.records.interval_ms;
    if (interval < 10 || interval > 60 * 1000) {
        char t[32];
        cfg_format_duration(interval, t, sizeof(t));
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.records.interval: expected a duration from 10ms to 1m, "
                        "got '%s'",
                        t);
    }
    return 0;
}

int rd_config_validate(const struct rd_config *cfg, char err[RD_CFG_ERRLEN])
{
    char a[32], b[32];
    char host[RD_CFG_STR];
    uint16_t port;
    if (err != NULL)
        err[0] = '\0';
    if (cfg == NULL)
        return cfg_errf(err, RD_EINVAL, "no configuration to validate");

    if (cfg->server.listen_host[0] == '\0' || cfg->server.listen_port == 0)
        return cfg_errf(err, RD_ECONFIG,
                        "server.listen: expected HOST:PORT with a port from 1 to 65535, got "
                        "'%s:%u'",
                        cfg->server.listen_host, (unsigned)cfg->server.listen_port);
    if (cfg->server.max_body_bytes < CFG_MIN_MAX_BODY ||
        cfg->server.max_body_bytes > CFG_MAX_MAX_BODY) {
        cfg_format_size(cfg->server.max_body_bytes, a, sizeof(a));
        return cfg_errf(err, RD_ECONFIG,
                        "server.max_body: expected a size from 1KiB to 1GiB, got '%s'", a);
    }
    int erv = cfg_validate_edge(cfg, err);
    if (erv != 0)
        return erv;
    const struct rd_cfg_events *evc = &cfg->server.events;
    if (evc->keepalive_ms < 100 || evc->keepalive_ms > 3600 * 1000)
        return cfg_errf(err, RD_ECONFIG,
                        "server.events.keepalive: expected a duration from 100ms to 1h, got "
                        "'%llums'",
                        (unsigned long long)evc->keepalive_ms);
    if (evc->stall_timeout_ms < 100 || evc->stall_timeout_ms > 3600 * 1000)
        return cfg_errf(err, RD_ECONFIG,
                        "server.events.stall_timeout: expected a duration from 100ms to 1h, got "
                        "'%llums'",
                        (unsigned long long)evc->stall_timeout_ms);
    if (evc->max_per_principal > evc->max_streams)
        return cfg_errf(err, RD_ECONFIG,
                        "server.events.max_streams_per_principal: expected at most "
                        "server.events.max_streams (%u), got %u",
                        evc->max_streams, evc->max_per_principal);
    if (cfg->server.tls_cert[0] != '\0' && cfg->server.tls_key[0] == '\0')
        return cfg_errf(err, RD_ECONFIG,
                        "server.tls.key: expected the key file for server.tls.cert '%s', got ''",
                        cfg->server.tls_cert);
    if (cfg->server.tls_key[0] != '\0' && cfg->server.tls_cert[0] == '\0')
        return cfg_errf(err, RD_ECONFIG,
                        "server.tls.cert: expected the certificate for server.tls.key '%s', "
                        "got ''",
                        cfg->server.tls_key);

    if (cfg->security.client_ca[0] != '\0' && cfg->server.tls_cert[0] == '\0')
        return cfg_errf(err, RD_ECONFIG,
                        "security.client_ca: client certificates need TLS on the API: set "
                        "server.tls.cert and server.tls.key");
    if (cfg->security.n_client_certs > 0 && cfg->security.client_ca[0] == '\0')
        return cfg_errf(err, RD_ECONFIG,
                        "security.client_certs: needs security.client_ca, the CA the "
                        "certificates are checked against");
    for (unsigned i = 0; i < cfg->security.n_client_certs; i++) {
        const struct rd_cfg_cert_map *m = &cfg->security.client_certs[i];
        static const char *const roles[] = {"agent", "reader", "operator", "admin"};
        bool known = false;
        for (size_t r = 0; r < RD_ARRAY_SIZE(roles); r++)
            known |= strcmp(m->role, roles[r]) == 0;
        if (!known)
            return cfg_errf(err, RD_ECONFIG,
                            "security.client_certs[%u].role: expected agent, reader, operator "
                            "or admin, got '%s'",
                            i, m->role);
        bool agent = strcmp(m->role, "agent") == 0;
        if (agent != (m->nodes[0] != '\0'))
            return cfg_errf(err, RD_ECONFIG, "security.client_certs[%u].nodes: %s", i,
                            agent ? "an agent needs the node ids it may act as"
                                  : "only agents have nodes");
    }

    if (cfg->storage.data_dir[0] == '\0')
        return cfg_errf(err, RD_ECONFIG, "storage.data_dir: expected a directory, got ''");
    if (cfg->storage.snapshot_threshold < 1)
        return cfg_errf(err, RD_ECONFIG,
                        "storage.snapshot_threshold: expected at least 1 entry, got '%u'",
                        cfg->storage.snapshot_threshold);
    if (cfg->storage.snapshot_threshold_bytes != 0 &&
        (cfg->storage.snapshot_threshold_bytes < RD_CFG_MIN_SNAPSHOT_BYTES ||
         cfg->storage.snapshot_threshold_bytes > RD_CFG_MAX_SNAPSHOT_BYTES)) {
        cfg_format_size(cfg->storage.snapshot_threshold_bytes, a, sizeof(a));
        return cfg_errf(err, RD_ECONFIG,
                        "storage.snapshot_threshold_bytes: expected 0 (entries only) or a size "
                        "from 1MiB to 64GiB, got '%s'",
                        a);
    }
    if (cfg->storage.snapshot_trailing_bytes > RD_CFG_MAX_SNAPSHOT_BYTES) {
        cfg_format_size(cfg->storage.snapshot_trailing_bytes, a, sizeof(a));
        return cfg_errf(err, RD_ECONFIG,
                        "storage.snapshot_trailing_bytes: expected a size up to 64GiB (0: the "
                        "entry count alone), got '%s'",
                        a);
    }
    /* libraft 0.22 refuses every entry (RAFT_NOSPACE) with segments of 1MiB
     * or less, however much disk is free: measured, see docs/configuration.md. */
    if (cfg->storage.segment_size < RD_CFG_MIN_SEGMENT)
        return cfg_errf(err, RD_ECONFIG,
                        "storage.segment_size: expected at least 4MiB (libraft refuses "
                        "writes with smaller segments), got '%zu'",
                        cfg->storage.segment_size);

    if (!rd_node_id_valid(cfg->cluster.name, strlen(cfg->cluster.name)))
        return cfg_errf(err, RD_ECONFIG,
                        "cluster.name: expected 1-%d characters of A-Z a-z 0-9 . _ : -, got '%s'",
                        RD_NODE_ID_MAX, cfg->cluster.name);
    if (!rd_node_id_valid(cfg->cluster.node_id, strlen(cfg->cluster.node_id)))
        return cfg_errf(err, RD_ECONFIG,
                        "cluster.node_id: expected 1-%d characters of A-Z a-z 0-9 . _ : -, got "
                        "'%s'",
                        RD_NODE_ID_MAX, cfg->cluster.node_id);
    if (cfg->cluster.replica_id == 0)
        return cfg_errf(err, RD_ECONFIG,
                        "cluster.replica_id: expected a raft server id above 0, got '0'");
    if (rd_config_parse_hostport(cfg->cluster.raft_address, host, &port) != 0)
        return cfg_errf(err, RD_ECONFIG,
                        "cluster.raft_address: expected HOST:PORT like 127.0.0.1:7080, got '%s'",
                        cfg->cluster.raft_address);
    if (cfg->cluster.heartbeat_timeout_ms == 0)
        return cfg_errf(err, RD_ECONFIG,
                        "cluster.heartbeat_timeout: expected a duration above 0, got '0ms'");
    if (cfg->cluster.heartbeat_timeout_ms >= cfg->cluster.election_timeout_ms) {
        cfg_format_duration(cfg->cluster.heartbeat_timeout_ms, a, sizeof(a));
        cfg_format_duration(cfg->cluster.election_timeout_ms, b, sizeof(b));
        return cfg_errf(err, RD_ECONFIG,
                        "cluster.heartbeat_timeout: expected less than cluster.election_timeout "
                        "(%s), got '%s'",
                        b, a);
    }
    if (cfg->cluster.group_commit_delay_ms > RD_GROUP_DELAY_MAX_MS) {
        cfg_format_duration(cfg->cluster.group_commit_delay_ms, a, sizeof(a));
        return cfg_errf(err, RD_ECONFIG,
                        "cluster.group_commit_delay: expected 0ms to %dms (a write waits at most "
                        "that long for others to share its raft entry), got '%s'",
                        RD_GROUP_DELAY_MAX_MS, a);
    }
    if (cfg->cluster.max_inflight < 1)
        return cfg_errf(err, RD_ECONFIG, "cluster.max_inflight: expected at least 1, got '%u'",
                        cfg->cluster.max_inflight);
    int rc = cfg_check_peers(cfg, err);
    if (rc != 0)
        return rc;
    rc = cfg_check_cluster_tls(cfg, host, err);
    if (rc != 0)
        return rc;
    if (cfg->cluster.raft_bind[0] != '\0') {
        if (rd_config_parse_hostport(cfg->cluster.raft_bind, host, &port) != 0)
            return cfg_errf(err, RD_ECONFIG,
                            "cluster.raft_bind: expected \"\" or HOST:PORT like 127.0.0.1:7080, "
                            "got '%s'",
                            cfg->cluster.raft_bind);
        if (!rd_config_cluster_tls(cfg) && !cfg->cluster.tls.insecure_plaintext &&
            !rd_config_host_is_loopback(host))
            return cfg_errf(err, RD_ECONFIG,
                            "cluster.raft_bind: '%s' is not a loopback address and cluster.tls "
                            "is not set (as for cluster.raft_address: docs/security.md)",
                            cfg->cluster.raft_bind);
    }
    rc = cfg_check_plugins(cfg, err);
    if (rc != 0)
        return rc;

    if (cfg->logging.level > RD_LOG_ERROR)
        return cfg_errf(err, RD_ECONFIG,
                        "logging.level: expected debug, info, warn or error, got '%d'",
                        (int)cfg->logging.level);

    /* The requirement's block: its shape is fixed, so spell out the paths. */
    uint64_t hb_ms = cfg->fault_tolerance.detection.heartbeat_interval_ms;
    uint64_t hc_ms = cfg->fault_tolerance.detection.health_check_timeout_ms;
    unsigned fail_n = cfg->fault_tolerance.detection.failure_threshold;
    unsigned recover_n = cfg->fault_tolerance.detection.recovery_threshold;
    unsigned resource = cfg->fault_tolerance.recovery_strategies.fast_recovery.resource_limit;
    unsigned perf = cfg->fault_tolerance.recovery_strategies.degraded_service.performance_limit;
    if (hb_ms < CFG_MIN_HEARTBEAT_MS) {
        cfg_format_duration(hb_ms, a, sizeof(a));
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.detection.heartbeat_interval: expected at least %dms, "
                        "got '%s'",
                        CFG_MIN_HEARTBEAT_MS, a);
    }
    if (hc_ms == 0)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.detection.health_check_timeout: expected a duration "
                        "above 0, got '0ms'");
    if (fail_n < 1)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.detection.failure_threshold: expected at least 1, got "
                        "'%u'",
                        fail_n);
    if (recover_n < 1)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.detection.recovery_threshold: expected at least 1, got "
                        "'%u'",
                        recover_n);
    if (resource > 100)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.recovery_strategies.fast_recovery.resource_limit: "
                        "expected 0%% to 100%%, got '%u%%'",
                        resource);
    if (perf > 100)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.recovery_strategies.degraded_service.performance_limit: "
                        "expected 0%% to 100%%, got '%u%%'",
                        perf);

    /* Our additions to the block. */
    const unsigned flap_n = cfg->fault_tolerance.detection.flap_threshold;
    const unsigned penalty = cfg->fault_tolerance.detection.flap_penalty;
    const unsigned share = cfg->fault_tolerance.partition.mass_failure_share;
    const unsigned min_nodes = cfg->fault_tolerance.partition.min_nodes;
    /* Zero windows would make "within the window" never true: the guard and
     * the flap detector would be silently off. */
    if (cfg->fault_tolerance.detection.flap_window_ms == 0)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.detection.flap_window: expected a duration above 0, got "
                        "'0ms'");
    if (flap_n < 1 || flap_n > 16)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.detection.flap_threshold: expected 1 to 16, got '%u'",
                        flap_n);
    if (penalty < 1 || penalty > 100)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.detection.flap_penalty: expected 1 to 100, got '%u'",
                        penalty);
    if (share < 1 || share > 100)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.partition.mass_failure_share: expected 1%% to 100%%, got "
                        "'%u%%'",
                        share);
    if (cfg->fault_tolerance.partition.mass_failure_window_ms == 0)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.partition.mass_failure_window: expected a duration above "
                        "0, got '0ms'");
    if (min_nodes < 1 || min_nodes > 1000000)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.partition.min_nodes: expected 1 to 1000000, got '%u'",
                        min_nodes);
    if (cfg->fault_tolerance.poison.window_ms == 0)
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.poison.window: expected a duration above 0, got '0ms'");
    int rv = cfg_check_records(cfg, err);
    if (rv != 0)
        return rv;
    rv = cfg_check_rebalance(cfg, err);
    if (rv != 0)
        return rv;
    const uint64_t audit_age = cfg->security.audit.max_age_ms;
    if (audit_age < 60 * 1000 || audit_age > UINT64_C(3650) * 24 * 3600 * 1000) {
        char age[32];
        cfg_format_duration(audit_age, age, sizeof(age));
        return cfg_errf(err, RD_ECONFIG,
                        "security.audit.max_age: expected a duration from 1m to 3650d, got '%s'",
                        age);
    }
    const uint64_t task_age = cfg->fault_tolerance.tasks.retention_ms;
    if (task_age < 1000 || task_age > UINT64_C(3650) * 24 * 3600 * 1000) {
        char age[32];
        cfg_format_duration(task_age, age, sizeof(age));
        return cfg_errf(err, RD_ECONFIG,
                        "fault_tolerance.tasks.retention: expected a duration from 1s to 3650d, "
                        "got '%s'",
                        age);
    }
    return cfg_check_backup(cfg, err);
}

const struct rd_cfg_kv *rd_config_plugin_value(const struct rd_cfg_plugin *p, const char *key)
{
    if (p == NULL || key == NULL)
        return NULL;
    unsigned n = p->n_config < RD_CFG_MAX_PLUGIN_KEYS ? p->n_config : RD_CFG_MAX_PLUGIN_KEYS;
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(p->config[i].key, key) == 0)
            return &p->config[i];
    }
    return NULL;
}

const char *const rd_strategy_names[RD_STRATEGY_COUNT] = {
    [RD_STRATEGY_FAST] = "fast_recovery",
    [RD_STRATEGY_SAFE] = "safe_recovery",
    [RD_STRATEGY_DEGRADED] = "degraded_service",
};

int rd_strategy_parse(const char *name)
{
    for (int i = 0; name != NULL && i < RD_STRATEGY_COUNT; i++)
        if (strcmp(name, rd_strategy_names[i]) == 0)
            return i;
    return -1;
}

uint64_t rd_config_strategy_max_time_ms(const struct rd_config *cfg, const char *name)
{
    switch (rd_strategy_parse(name)) {
    case RD_STRATEGY_SAFE:
        return cfg->fault_tolerance.recovery_strategies.safe_recovery.max_time_ms;
    case RD_STRATEGY_DEGRADED:
        return 0;
    default:
        return cfg->fault_tolerance.recovery_strategies.fast_recovery.max_time_ms;
    }
}

uint64_t rd_config_lease_ms(const struct rd_config *cfg)
{
    uint64_t hb = cfg->fault_tolerance.detection.heartbeat_interval_ms;
    uint64_t n = cfg->fault_tolerance.detection.failure_threshold;
    /* Saturate: an absurd interval must not wrap into a short lease. */
    if (n != 0 && hb > UINT64_MAX / n)
        return UINT64_MAX;
    return hb * n;
}
