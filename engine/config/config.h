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

struct rd_cfg_peer {
    uint64_t id;              /* raft server id, > 0 */
    char address[RD_CFG_STR]; /* raft HOST:PORT */
    char api_url[RD_CFG_STR]; /* http://HOST:PORT of its API ("" when unknown) */
};

struct rd_config {
    char path[RD_CFG_STR]; /* file it was read from ("" for built-in defaults) */

    struct {
        char listen_host[RD_CFG_STR]; /* server.listen "HOST:PORT" split */
        uint16_t listen_port;
        size_t max_body_bytes;        /* server.max_body, default 1MiB */
        uint64_t shutdown_timeout_ms; /* server.shutdown_timeout, default 10s */
        char tls_cert[RD_CFG_STR];    /* server.tls.cert ("" = cleartext only) */
        char tls_key[RD_CFG_STR];     /* server.tls.key */
    } server;

    struct {
        char data_dir[RD_CFG_STR];   /* storage.data_dir, default ./var */
        unsigned snapshot_threshold; /* storage.snapshot_threshold, default 1024 entries */
        unsigned snapshot_trailing;  /* storage.snapshot_trailing, default 128 entries */
        size_t segment_size;         /* storage.segment_size, default 8MiB */
    } storage;

    struct {
        char node_id[RD_CFG_STR];      /* cluster.node_id: this replica's name, default "rd1" */
        uint64_t replica_id;           /* cluster.replica_id, default 1 */
        char raft_address[RD_CFG_STR]; /* cluster.raft_address, default 127.0.0.1:7080 */
        uint64_t election_timeout_ms;  /* cluster.election_timeout, default 300ms */
        uint64_t heartbeat_timeout_ms; /* cluster.heartbeat_timeout, default 50ms */
        bool pre_vote;                 /* cluster.pre_vote, default true */
        unsigned max_inflight;         /* cluster.max_inflight, default 256 */
        unsigned n_peers;              /* cluster.peers: initial voters (empty = just this one) */
        struct rd_cfg_peer peers[RD_CFG_MAX_PEERS];
    } cluster;

    struct {
        char dir[RD_CFG_STR]; /* plugins.dir, default build/plugins */
    } plugins;

    struct {
        char dir[RD_CFG_STR]; /* policies.dir, default policies */
        uint64_t budget_ms;   /* policies.budget, default 50ms per call */
        size_t memory_limit;  /* policies.memory_limit, default 64MiB */
    } policies;

    struct {
        enum rd_log_level level; /* logging.level: debug|info|warn|error, default info */
    } logging;

    /* The requirement's block, same names and shape. */
    struct {
        struct {
            uint64_t heartbeat_interval_ms;   /* default 500ms */
            uint64_t health_check_timeout_ms; /* default 1s */
            unsigned failure_threshold;       /* missed intervals before failed, default 3 */
            unsigned recovery_threshold;      /* good heartbeats to leave probation, default 2 */
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
        } backup;
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
 */
int rd_config_load_file(struct rd_config *cfg, const char *path, char err[RD_CFG_ERRLEN]);

/* Same, from a buffer; `name` stands for the file name in messages. */
int rd_config_load_string(struct rd_config *cfg, const char *name, const char *yaml, size_t len,
                          char err[RD_CFG_ERRLEN]);

/*
 * Checks cross-field rules after the file and flags are applied (peers
 * contain this replica, thresholds > 0, timeouts ordered). Returns 0 or
 * RD_ECONFIG with a message naming the key.
 */
int rd_config_validate(const struct rd_config *cfg, char err[RD_CFG_ERRLEN]);

/* Parses "HOST:PORT" ("[::1]:8080" too) for --listen. 0 or RD_EINVAL. */
int rd_config_parse_hostport(const char *s, char host[RD_CFG_STR], uint16_t *port);

/* Parses "250ms", "10s", "2m", "1h", "7d" into ms. 0 or RD_EINVAL. */
int rd_config_parse_duration(const char *s, uint64_t *ms);

/* Parses "80%" into 80 (0-100). 0 or RD_EINVAL. */
int rd_config_parse_percent(const char *s, unsigned *pct);

/* Parses "1MiB", "512KiB", "1GiB", "4096" into bytes. 0 or RD_EINVAL. */
int rd_config_parse_size(const char *s, size_t *bytes);

/* Lease given to agents: heartbeat_interval x failure_threshold. */
uint64_t rd_config_lease_ms(const struct rd_config *cfg);

#endif
