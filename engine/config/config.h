/*
 * recoveryd configuration: the YAML file (libyaml) plus command-line
 * overrides. The file carries the requirement's `fault_tolerance:` block as
 * written there, plus the engine's own sections. Every error names the file,
 * the line, the key and what was expected; unknown keys are errors.
 *
 * Durations are written `250ms`, `10s`, `2m`, `1h`, `7d` and stored in
 * milliseconds; percentages `80%` are stored as 0-100 integers; sizes `1MiB`,
 * `512KiB`, `8MiB`, `1GiB` or a plain byte count are stored in bytes.
 */
#ifndef RD_CONFIG_H
#define RD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/log.h"

#define RD_CFG_STR         256
#define RD_CFG_ERRLEN      512
#define RD_CFG_MAX_PEERS   7
#define RD_CFG_MIN_SEGMENT ((size_t)4 << 20)
/* storage.snapshot_threshold_bytes (when not 0) and snapshot_trailing_bytes */
#define RD_CFG_MIN_SNAPSHOT_BYTES ((uint64_t)1 << 20)
#define RD_CFG_MAX_SNAPSHOT_BYTES ((uint64_t)64 << 30)
#define RD_CFG_MAX_PLUGINS        16  /* plugins.instances entries */
#define RD_CFG_MAX_PLUGIN_KEYS    32  /* keys under one instance's config */
#define RD_CFG_MAX_CERT_MAPS      32  /* security.client_certs entries */
#define RD_GROUP_DELAY_MAX_MS     100 /* cluster.group_commit_delay */

/* fault_tolerance.partition.mode */
enum rd_partition_mode { RD_PARTITION_CONSISTENCY = 0, RD_PARTITION_AVAILABILITY };
/* fault_tolerance.partition.on_conflict: the same values, in the same order,
 * as the state machine's enum rd_conflict_res (fsm/cmd.h). */
enum rd_cfg_conflict { RD_CFG_KEEP_NEWER = 0, RD_CFG_KEEP_PROGRESS, RD_CFG_FAIL_TASK };
/* "consistency" / "availability" */
const char *rd_partition_mode_name(unsigned mode);

struct rd_cfg_peer {
    uint64_t id;              /* raft server id, > 0 */
    char address[RD_CFG_STR]; /* raft HOST:PORT */
    char api_url[RD_CFG_STR]; /* http://HOST:PORT of its API ("" when unknown) */
};

/*
 * One `key: value` of a plugin instance's config. The value is the scalar's
 * text as written: the plugin host checks it against the keys the plugin
 * declares (struct rd_plugin_key) and quotes `line` in its errors.
 */
struct rd_cfg_kv {
    char key[64];           /* [a-z0-9_]{1,63} */
    char value[RD_CFG_STR]; /* scalar text, at most 255 bytes; may be "" if quoted */
    int line;               /* 1-based line of the value (0 = built in) */
};

/* One entry of plugins.instances: a configured use of a plugin .so. */
struct rd_cfg_plugin {
    char name[64];   /* instance name, unique, [a-z0-9_-]{1,63} */
    char plugin[64]; /* file stem: <plugins.dir>/<plugin>.so; defaults to name */
    bool required;   /* init failure stops the engine instead of running on; default false */
    int line;        /* 1-based line of the entry in the file (0 = built-in default) */
    unsigned n_config;
    struct rd_cfg_kv config[RD_CFG_MAX_PLUGIN_KEYS];
};

/* One entry of security.client_certs: a client certificate's subject CN
 * (from security.client_ca) and who it is to the API. */
struct rd_cfg_cert_map {
    char subject[RD_CFG_STR]; /* the certificate's subject common name, exactly */
    char principal[96];       /* principal id; defaults to "cn:" + subject */
    char role[16];            /* agent, reader, operator or admin */
    char nodes[RD_CFG_STR];   /* agents: the node ids it may act as, as in the token file */
};

/*
 * The settings an error message may have to trace back to where they were
 * set (the paths and the listen addresses): cfg->origin[] holds, for each,
 * the line of `path` that set it (> 0), 0 for the built-in default, or
 * RD_CFG_FROM_FLAG when a command-line flag did (main.c sets that).
 */
enum rd_cfg_setting {
    RD_CFG_SERVER_LISTEN,    /* server.listen, --listen */
    RD_CFG_TLS_CERT,         /* server.tls.cert */
    RD_CFG_TLS_KEY,          /* server.tls.key */
    RD_CFG_DATA_DIR,         /* storage.data_dir, --data-dir */
    RD_CFG_RAFT_ADDRESS,     /* cluster.raft_address, --raft-address */
    RD_CFG_PLUGINS_DIR,      /* plugins.dir, --plugins-dir */
    RD_CFG_POLICIES_DIR,     /* policies.dir, --policies-dir */
    RD_CFG_BACKUP_TARGETS,   /* fault_tolerance.backup.targets (0: not given, every backup
                                instance is a target) */
    RD_CFG_ARCHIVE_TARGET,   /* fault_tolerance.backup.archive.target (0: not given, the
                                first target) */
    RD_CFG_CLUSTER_TLS_CA,   /* cluster.tls.ca */
    RD_CFG_CLUSTER_TLS_CERT, /* cluster.tls.cert */
    RD_CFG_CLUSTER_TLS_KEY,  /* cluster.tls.key */
    RD_CFG_UI_DIR,           /* server.ui_dir (0: the built-in default, served only if there) */
    RD_CFG_N_SETTINGS
};
#define RD_CFG_FROM_FLAG (-1)

struct rd_config {
    char path[RD_CFG_STR];         /* file it was read from ("" for built-in defaults) */
    int origin[RD_CFG_N_SETTINGS]; /* where each enum rd_cfg_setting came from (above) */

    struct {
        char listen_host[RD_CFG_STR]; /* server.listen "HOST:PORT" split */
        uint16_t listen_port;
        size_t max_body_bytes;        /* server.max_body, default 1MiB */
        uint64_t shutdown_timeout_ms; /* server.shutdown_timeout, default 10s */
        char tls_cert[RD_CFG_STR];    /* server.tls.cert ("" = cleartext only) */
        char tls_key[RD_CFG_STR];     /* server.tls.key */
        char ui_dir[RD_CFG_STR];      /* server.ui_dir: the dashboard's files at /ui/ ("" = off) */
        struct rd_cfg_edge {          /* server.edge: what one client may hold (docs/security.md) */
            unsigned max_connections; /* max_connections, default 1024 (fewer when
                                         RLIMIT_NOFILE - reserved_fds is lower) */
            unsigned max_per_address; /* max_connections_per_address, default 128 */
            unsigned reserved_fds;    /* reserved_fds, default 128: never used by clients */
            uint64_t idle_timeout_ms; /* idle_timeout, default 30s */
            uint64_t request_timeout_ms; /* request_timeout, default 10s: headers and body */
            size_t max_header_list;      /* max_header_list, default 64KiB (decoded) */
            size_t max_body_buffered;    /* max_body_buffered, default 4MiB per connection
                                            (never less than max_body) */
            unsigned reset_budget;       /* stream_reset_budget, default 20 per connection */
            unsigned frame_budget;       /* empty_frame_budget, default 1000 per connection */
            uint64_t abuse_block_ms;     /* abuse_block, default 10s (0: off) */
        } edge;
        struct rd_cfg_events {          /* server.events: the event stream (docs/events.md) */
            unsigned ring_size;         /* ring_size, default 4096 events held per replica */
            unsigned max_streams;       /* max_streams, default 256 open streams in all */
            unsigned max_per_principal; /* max_streams_per_principal, default 16 */
            uint64_t keepalive_ms;      /* keepalive, default 15s: a comment on an idle stream */
            uint64_t stall_timeout_ms;  /* stall_timeout, default 10s: a stream behind the ring
                                           whose client reads nothing this long is closed */
        } events;
    } server;

    /* Who may call the API (docs/security.md). Authentication is on when
     * tokens_file or client_ca is set. */
    struct rd_cfg_security {
        char tokens_file[RD_CFG_STR];        /* security.tokens_file ("" = no bearer tokens) */
        char peer_token_file[RD_CFG_STR];    /* security.peer_token_file: the secret this
                                                replica presents to the others ("" = none) */
        char client_ca[RD_CFG_STR];          /* security.client_ca: PEM CA of client
                                                certificates (needs server.tls) */
        bool allow_unauthenticated;          /* security.allow_unauthenticated, default false:
                                                serve a non-loopback address without auth */
        bool metrics_open;                   /* security.metrics_open, default true: /metrics
                                                needs no token (false: reader) */
        char peer_authorization[RD_CFG_STR]; /* "Bearer <secret>" read from peer_token_file
                                                at start (never from the YAML) */
        unsigned n_client_certs;             /* security.client_certs */
        struct rd_cfg_cert_map client_certs[RD_CFG_MAX_CERT_MAPS];
        /* The audit trail's retention (docs/operations.md): the leader stamps
         * it into each record's command, every replica prunes alike. */
        struct {
            unsigned max_records; /* security.audit.max_records, 1-10000000, default 100000 */
            uint64_t max_age_ms;  /* security.audit.max_age, 1m to 10 years, default 30d */
        } audit;
    } security;

    struct {
        char data_dir[RD_CFG_STR];         /* storage.data_dir, default ./var */
        unsigned snapshot_threshold;       /* storage.snapshot_threshold, default 8192 entries */
        unsigned snapshot_trailing;        /* storage.snapshot_trailing, default 4096 entries */
        uint64_t snapshot_threshold_bytes; /* storage.snapshot_threshold_bytes: a snapshot once
                                              the log since the last one holds this much as
                                              well, 0 or 1MiB-64GiB, default 64MiB */
        uint64_t snapshot_trailing_bytes;  /* storage.snapshot_trailing_bytes: the trailing
                                              entries' bytes at most, 0 or up to 64GiB,
                                              default 16MiB */
        size_t segment_size;               /* storage.segment_size, default 8MiB */
        bool accept_data_loss; /* --accept-data-loss only (never from a file): start on a
                                  damaged data directory with what is left of it */
    } storage;

    struct {
        char name[RD_CFG_STR];          /* cluster.name: the cluster's name in alerts' `cluster`
                                           label, default "recoveryd" */
        char node_id[RD_CFG_STR];       /* cluster.node_id: this replica's name, default "rd1" */
        uint64_t replica_id;            /* cluster.replica_id, default 1 */
        char raft_address[RD_CFG_STR];  /* cluster.raft_address, default 127.0.0.1:7080 */
        char raft_bind[RD_CFG_STR];     /* cluster.raft_bind: where the transport listens when
                                           peers reach raft_address through a proxy or NAT;
                                           empty (default) = raft_address */
        uint64_t election_timeout_ms;   /* cluster.election_timeout, default 300ms */
        uint64_t heartbeat_timeout_ms;  /* cluster.heartbeat_timeout, default 50ms */
        bool pre_vote;                  /* cluster.pre_vote, default true */
        bool group_commit;              /* cluster.group_commit, default true */
        uint64_t group_commit_delay_ms; /* cluster.group_commit_delay, default 5ms; 0: none */
        unsigned max_inflight;          /* cluster.max_inflight, default 256 */
        bool join;                      /* cluster.join: start empty and wait to be added (POST
                                           /api/v1/cluster/replicas on the leader); no bootstrap */
        bool force_new_cluster;         /* --force-new-cluster only (never from a file): make
                                           the configuration this replica and cluster.peers as
                                           voters, over whatever the log says (raft_recover) */
        unsigned n_peers;               /* cluster.peers: initial voters (empty = just this one) */
        struct rd_cfg_peer peers[RD_CFG_MAX_PEERS];
        /*
         * cluster.tls: mutual TLS between replicas (docs/security.md). All
         * three paths set = on; none = plain TCP, allowed only when
         * raft_address is a loopback address or insecure_plaintext is set.
         */
        struct {
            char ca[RD_CFG_STR];     /* cluster.tls.ca: PEM CA certificate(s) peers must chain to */
            char cert[RD_CFG_STR];   /* cluster.tls.cert: this replica's PEM certificate chain */
            char key[RD_CFG_STR];    /* cluster.tls.key: its PEM private key */
            bool insecure_plaintext; /* cluster.tls.insecure_plaintext: allow plain TCP on a
                                        non-loopback raft_address, default false */
            bool check_replica_id;   /* cluster.tls.check_replica_id: a peer's certificate must
                                        name `replica-<id>` (CN or DNS SAN) for the raft id it
                                        claims or is dialled as, default true */
        } tls;
    } cluster;

    struct {
        char dir[RD_CFG_STR]; /* plugins.dir, default build/plugins */
        /* plugins.instances; default heartbeat (required), health_probe,
         * metrics, log. A file's list replaces the earlier one. */
        unsigned n_instances;
        struct rd_cfg_plugin instances[RD_CFG_MAX_PLUGINS];
    } plugins;

    struct {
        char dir[RD_CFG_STR]; /* policies.dir, default policies */
        uint64_t budget_ms;   /* policies.budget, default 50ms per call */
        size_t memory_limit;  /* policies.memory_limit, default 64MiB */
    } policies;

    struct {
        enum rd_log_level level;   /* logging.level: debug|info|warn|error, default info */
        enum rd_log_format format; /* logging.format: logfmt|json, default logfmt */
    } logging;

    /* The requirement's block, same names and shape. */
    struct {
        struct {
            uint64_t heartbeat_interval_ms;   /* default 500ms */
            uint64_t health_check_timeout_ms; /* default 1s */
            unsigned failure_threshold;       /* missed intervals before failed, default 3 */
            unsigned recovery_threshold;      /* good heartbeats to leave probation, default 2 */
            /* Our additions to the requirement's block: */
            uint64_t flap_window_ms; /* window flapping is counted in, default 1m */
            unsigned flap_threshold; /* transitions into suspect/failed within the window
                                        that mark a node as flapping, 1-1000, default 3 */
            unsigned flap_penalty;   /* a flapping node needs recovery_threshold x this good
                                        heartbeats to leave probation, 1-100, default 3 */
        } detection;
        struct {
            struct {
                uint64_t max_time_ms;    /* default 2m */
                unsigned resource_limit; /* percent, default 80 */
            } fast_recovery;
            struct {
                uint64_t max_time_ms;   /* default 10m */
                bool consistency_check; /* default true */
            } safe_recovery;
            struct {
                bool essential_services_only; /* default true */
                unsigned performance_limit;   /* percent, default 50 */
            } degraded_service;
        } recovery_strategies;
        struct {
            uint64_t interval_ms;                   /* default 5m */
            uint64_t retention_period_ms;           /* default 7d */
            uint64_t consistency_check_interval_ms; /* default 1h */
            /* Our additions (docs/backup.md). The backup plugin instances
             * backups go to; when not given (origin[RD_CFG_BACKUP_TARGETS]
             * == 0) every instance of a backup plugin is one. */
            unsigned n_targets;
            char targets[RD_CFG_MAX_PLUGINS][64];
            unsigned keep_min;  /* completed backups kept per target whatever their age,
                                   0-1000, default 3 */
            unsigned cpu_share; /* percent of a CPU the child imaging the state (backups,
                                   raft snapshots) may use, 1-100, default 10 */
            struct {
                /* The instance committed log entries are archived to; not
                 * given: the first target; "": no archiving. */
                char target[64];
                uint64_t max_delay_ms; /* an applied entry is archived within this, default 1s */
            } archive;
        } backup;
        /* Our addition: the mass-failure (partition) guard. */
        struct {
            unsigned mass_failure_share;     /* percent of non-left nodes, 1-100, default 50 */
            uint64_t mass_failure_window_ms; /* ... failing within this long, default 10s */
            unsigned min_nodes;              /* guard applies from this many non-left nodes,
                                                1-1000000, default 4 */
            uint64_t alert_after_ms;         /* a partition lasting longer alerts, default 5m */
            /* The CAP setting (docs/operations.md, "Partitions: consistency or
             * availability"): enum rd_partition_mode, default consistency. */
            unsigned mode;
            /* The resolution of a conflict when select.lua's on_conflict hook
             * is missing or fails: enum rd_cfg_conflict, default keep_progress. */
            unsigned on_conflict;
        } partition;
        /* Our addition: poison tasks. A task whose attempts fail (fail API)
         * or die with their agent (moved off a failed or isolated agent)
         * max_failures times within window is failed with a poison_task
         * fault and an alert instead of being placed again. */
        struct {
            unsigned max_failures; /* 1-16, default 3 */
            uint64_t window_ms;    /* default 10m */
        } poison;
        /* Our addition: fault, task_recovery, audit and backup records
         * exported to PostgreSQL by the leader (docs/records.md). */
        struct {
            bool enabled;          /* records.export, default false */
            char conninfo[1024];   /* libpq connection string; "" or missing fields: PG* env */
            char schema[64];       /* the tables' schema, [a-z_][a-z0-9_]*, default "public" */
            unsigned batch_size;   /* rows per transaction, 1-10000, default 500 */
            uint64_t max_retained; /* records of one kind kept while not exported,
                                      10000-10000000, default 200000 */
            uint64_t timeout_ms;   /* connecting or one statement, 1s-10m, default 10s */
            uint64_t interval_ms;  /* between two exports when idle, 10ms-1m, default 100ms */
        } records;
        /* Our addition: finished tasks (completed, failed, cancelled) are
         * pruned from the state this long after they finished (once their
         * records are exported, where export is on). */
        struct {
            uint64_t retention_ms; /* 1s-3650d, default 7d */
        } tasks;
        /* Our addition: predicted faults. select.lua's predicted hook may
         * drain an agent a trend says will fail; the engine allows at most
         * drains_per_minute such drains (0: none) and none that would leave
         * less than min_healthy_capacity percent of the fleet's slots on
         * working agents (alive or probation, not draining). */
        struct {
            unsigned drains_per_minute;    /* 0-1000, default 2 */
            unsigned min_healthy_capacity; /* percent 0-100, default 50 */
        } prediction;
        /* Our addition: dynamic rebalancing (engine/recover/rebalance.c). */
        struct {
            bool enabled;                /* default true */
            unsigned skew_threshold;     /* percent 1-100 of slots used, max - min, default 20 */
            unsigned cpu_threshold;      /* percent 0-100 of reported cpu, max - min; 0 off */
            unsigned moves_per_minute;   /* 1-100000, default 60 */
            uint64_t cooldown_ms;        /* a task moved is not moved again within this, 5m */
            uint64_t checkpoint_wait_ms; /* a running task waits this for its next checkpoint */
            uint64_t settle_ms; /* agents joined: wait until the fleet is unchanged this long */
        } rebalance;
    } fault_tolerance;
};

/* Fills `cfg` with the built-in defaults (fast detection; see docs/configuration.md). */
void rd_config_defaults(struct rd_config *cfg);

/*
 * Reads `path` over the values already in `cfg` (call rd_config_defaults
 * first). Returns 0, or RD_ECONFIG / RD_EIO with a message in `err` of the
 * form "deploy/recoveryd.yaml:12: fault_tolerance.detection.heartbeat_interval:
 * expected a duration like 250ms, 10s, 2m, got 'fast'". On error `cfg` may be
 * partly updated: callers discard it.
 *
 * A relative path in the file (storage.data_dir, server.tls.cert and key,
 * plugins.dir, policies.dir) is resolved against the directory of `path`, so
 * the file means the same wherever the daemon starts: `../var` in
 * deploy/recoveryd.yaml becomes `deploy/../var`. Paths from flags and the
 * built-in defaults stay relative to the working directory.
 */
int rd_config_load_file(struct rd_config *cfg, const char *path, char err[RD_CFG_ERRLEN]);

/*
 * Same, from a buffer; `name` stands for the file name in messages. There is
 * no file directory here: relative paths are kept as written.
 */
int rd_config_load_string(struct rd_config *cfg, const char *name, const char *yaml, size_t len,
                          char err[RD_CFG_ERRLEN]);

/*
 * Says where setting `s` came from, for an error message, into `buf` (cut at
 * `len`), and returns `buf`: "set by policies.dir at deploy/recoveryd.yaml:70;
 * --policies-dir overrides it", "set by --policies-dir, which overrides
 * policies.dir", or "the built-in default of policies.dir; set it in the
 * config file or with --policies-dir".
 */
const char *rd_config_origin(const struct rd_config *cfg, enum rd_cfg_setting s, char *buf,
                             size_t len);

/*
 * Checks cross-field rules after the file and flags are applied (peers
 * contain this replica, thresholds > 0, timeouts ordered, plugin instance
 * names valid and unique). Returns 0 or
 * RD_ECONFIG with a message naming the key.
 */
int rd_config_validate(const struct rd_config *cfg, char err[RD_CFG_ERRLEN]);

/* True when `host` (as split by rd_config_parse_hostport) is a loopback
 * address: 127.0.0.0/8, ::1 or "localhost". No name is resolved. */
bool rd_config_host_is_loopback(const char *host);

/* True when cluster.tls.ca, cert and key are set (mutual TLS between replicas). */
bool rd_config_cluster_tls(const struct rd_config *cfg);

/* Where the raft transport listens: cluster.raft_bind, else cluster.raft_address. */
const char *rd_config_raft_bind(const struct rd_config *cfg);

/* Parses "HOST:PORT" ("[::1]:8080" too) for --listen. 0 or RD_EINVAL. */
int rd_config_parse_hostport(const char *s, char host[RD_CFG_STR], uint16_t *port);

/* Parses "250ms", "10s", "2m", "1h", "7d" into ms. 0 or RD_EINVAL. */
int rd_config_parse_duration(const char *s, uint64_t *ms);

/* Parses "80%" into 80 (0-100). 0 or RD_EINVAL. */
int rd_config_parse_percent(const char *s, unsigned *pct);

/* Parses "1MiB", "512KiB", "1GiB", "4096" into bytes. 0 or RD_EINVAL. */
int rd_config_parse_size(const char *s, size_t *bytes);

/*
 * The config entry `key` of instance `p`, or NULL when the instance does not
 * set it (or either argument is NULL). The result points into `p`.
 */
const struct rd_cfg_kv *rd_config_plugin_value(const struct rd_cfg_plugin *p, const char *key);

/* Lease given to agents: heartbeat_interval x failure_threshold. */
uint64_t rd_config_lease_ms(const struct rd_config *cfg);

/*
 * The recovery strategies the requirement names (fault_tolerance.
 * recovery_strategies): the one table of their names. Policies may add
 * strategies of their own; those have no section of settings here.
 */
enum rd_strategy {
    RD_STRATEGY_FAST = 0, /* fast_recovery */
    RD_STRATEGY_SAFE,     /* safe_recovery */
    RD_STRATEGY_DEGRADED, /* degraded_service */
    RD_STRATEGY_COUNT
};
extern const char *const rd_strategy_names[RD_STRATEGY_COUNT];
/* The strategy named `name`, or -1 (not one of the three, or NULL). */
int rd_strategy_parse(const char *name);
/* Its max_time in ms: how long a run may take before it ends partial; 0
 * for none (degraded_service waits for the fault to end, by design). A
 * strategy that is not one of the three counts as fast_recovery. */
uint64_t rd_config_strategy_max_time_ms(const struct rd_config *cfg, const char *name);

#endif
