/*
 * Unit tests for engine/config: defaults, the shipped deploy/recoveryd.yaml,
 * the requirement's own `fault_tolerance:` block, every error path of the
 * loader (file, line, key and value in the message), rd_config_validate's
 * rules and the value parsers, plugins.instances (default instances, config
 * values kept as text with their lines, every error path) and the flapping
 * and partition keys. No I/O beyond small temporary files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "recoveryd/error.h"

#define NAME "t.yaml"

/* The requirement's block exactly as REQUIREMENT.md writes it (blank lines hold two spaces). */
static const char requirement_block[] = "fault_tolerance:\n"
                                        "  detection:\n"
                                        "    heartbeat_interval: 10s\n"
                                        "    health_check_timeout: 5s\n"
                                        "    failure_threshold: 3\n"
                                        "    recovery_threshold: 2\n"
                                        "  \n"
                                        "  recovery_strategies:\n"
                                        "    fast_recovery:\n"
                                        "      max_time: 2m\n"
                                        "      resource_limit: 80%\n"
                                        "    safe_recovery:\n"
                                        "      max_time: 10m\n"
                                        "      consistency_check: true\n"
                                        "    degraded_service:\n"
                                        "      essential_services_only: true\n"
                                        "      performance_limit: 50%\n"
                                        "  \n"
                                        "  backup:\n"
                                        "    interval: 5m\n"
                                        "    retention_period: 7d\n"
                                        "    consistency_check_interval: 1h\n";

/* ---- helpers ---------------------------------------------------------- */

static int load(struct rd_config *cfg, const char *yaml, char err[RD_CFG_ERRLEN])
{
    rd_config_defaults(cfg);
    return rd_config_load_string(cfg, NAME, yaml, strlen(yaml), err);
}

static void check_contains(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("expected \"%s\" in message \"%s\"", needle, text);
}

static void check_prefix(const char *text, const char *prefix)
{
    if (strncmp(text, prefix, strlen(prefix)) != 0)
        fail_msg("expected message starting \"%s\", got \"%s\"", prefix, text);
}

/*
 * Loads `yaml` and checks it fails with RD_ECONFIG and a message
 * "t.yaml:LINE: KEY: ..." that quotes `value` as "got 'VALUE'" (or, when
 * `value` does not start with a quote-free word, contains `value` as is).
 */
static void expect_error(const char *yaml, unsigned line, const char *key, const char *got)
{
    struct rd_config cfg;
    char err[RD_CFG_ERRLEN];
    char prefix[RD_CFG_ERRLEN];
    int rc = load(&cfg, yaml, err);
    if (rc != RD_ECONFIG)
        fail_msg("expected RD_ECONFIG for:\n%s\ngot %d (%s)", yaml, rc, err);
    if (key != NULL)
        snprintf(prefix, sizeof(prefix), NAME ":%u: %s: ", line, key);
    else
        snprintf(prefix, sizeof(prefix), NAME ":%u: ", line);
    check_prefix(err, prefix);
    if (got != NULL) {
        char want[RD_CFG_ERRLEN];
        snprintf(want, sizeof(want), "got %s", got);
        check_contains(err, want);
    }
}

static void expect_exact_error(const char *yaml, const char *message)
{
    struct rd_config cfg;
    char err[RD_CFG_ERRLEN];
    assert_int_equal(load(&cfg, yaml, err), RD_ECONFIG);
    assert_string_equal(err, message);
}

static void expect_valid_error(const struct rd_config *cfg, const char *message)
{
    char err[RD_CFG_ERRLEN];
    assert_int_equal(rd_config_validate(cfg, err), RD_ECONFIG);
    assert_string_equal(err, message);
}

/* Writes `text` to a fresh temporary file; the caller unlinks `path`. */
static void write_temp(char path[64], const char *text)
{
    snprintf(path, 64, "/tmp/rd_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* The four built-in instances, in order, with no config. */
static void check_default_instances(const struct rd_config *c)
{
    static const char *const names[] = {"heartbeat", "health_probe", "metrics", "log"};
    assert_int_equal(c->plugins.n_instances, 4);
    for (unsigned i = 0; i < 4; i++) {
        const struct rd_cfg_plugin *p = &c->plugins.instances[i];
        assert_string_equal(p->name, names[i]);
        assert_string_equal(p->plugin, names[i]);
        /* Only the heartbeat detector is one the engine cannot run without. */
        assert_int_equal(p->required, i == 0);
        assert_int_equal(p->n_config, 0);
        assert_null(rd_config_plugin_value(p, "url"));
    }
}

/*
 * 1-based line of the first place `needle` occurs in `text` followed by a
 * space or the end of the line, or 0.
 */
static int line_of(const char *text, const char *needle)
{
    const char *hit = text;
    size_t n = strlen(needle);
    while ((hit = strstr(hit, needle)) != NULL && hit[n] != ' ' && hit[n] != '\n')
        hit += n;
    if (hit == NULL)
        return 0;
    int line = 1;
    for (const char *p = text; p < hit; p++)
        line += *p == '\n';
    return line;
}

/* ---- defaults and good files ------------------------------------------ */

static void test_defaults(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    memset(&c, 0x5A, sizeof(c));
    rd_config_defaults(&c);

    assert_string_equal(c.path, "");
    assert_string_equal(c.server.listen_host, "127.0.0.1");
    assert_int_equal(c.server.listen_port, 8080);
    assert_int_equal(c.server.max_body_bytes, 1024 * 1024);
    assert_int_equal(c.server.shutdown_timeout_ms, 10000);
    assert_string_equal(c.server.tls_cert, "");
    assert_string_equal(c.server.tls_key, "");
    assert_int_equal(c.server.edge.max_connections, 1024);
    assert_int_equal(c.server.edge.max_per_address, 128);
    assert_int_equal(c.server.edge.reserved_fds, 128);
    assert_int_equal(c.server.edge.idle_timeout_ms, 30000);
    assert_int_equal(c.server.edge.request_timeout_ms, 10000);
    assert_int_equal(c.server.edge.max_header_list, 64 * 1024);
    assert_int_equal(c.server.edge.max_body_buffered, 4 * 1024 * 1024);
    assert_int_equal(c.server.edge.reset_budget, 20);
    assert_int_equal(c.server.edge.frame_budget, 1000);
    assert_int_equal(c.server.edge.abuse_block_ms, 10000);

    assert_string_equal(c.storage.data_dir, "./var");
    assert_int_equal(c.storage.snapshot_threshold, 65536);
    assert_int_equal(c.storage.snapshot_trailing, 1024);
    assert_int_equal(c.storage.snapshot_threshold_bytes, 64 * 1024 * 1024);
    assert_int_equal(c.storage.snapshot_trailing_bytes, 16 * 1024 * 1024);
    assert_int_equal(c.storage.segment_size, 8 * 1024 * 1024);

    assert_string_equal(c.cluster.name, "recoveryd");
    assert_string_equal(c.cluster.node_id, "rd1");
    assert_int_equal(c.cluster.replica_id, 1);
    assert_string_equal(c.cluster.raft_address, "127.0.0.1:7080");
    assert_int_equal(c.cluster.election_timeout_ms, 300);
    assert_int_equal(c.cluster.heartbeat_timeout_ms, 50);
    assert_true(c.cluster.pre_vote);
    assert_true(c.cluster.group_commit);
    assert_int_equal(c.cluster.group_commit_delay_ms, 5);
    assert_int_equal(c.cluster.max_inflight, 256);
    assert_int_equal(c.cluster.n_peers, 0);

    assert_string_equal(c.plugins.dir, "build/plugins");
    check_default_instances(&c);
    assert_string_equal(c.policies.dir, "policies");
    assert_string_equal(c.server.ui_dir, "ui");
    assert_int_equal(c.policies.budget_ms, 50);
    assert_int_equal(c.policies.memory_limit, 64 * 1024 * 1024);
    assert_int_equal(c.logging.level, RD_LOG_INFO);
    assert_int_equal(c.logging.format, RD_LOG_LOGFMT);

    assert_int_equal(c.fault_tolerance.detection.heartbeat_interval_ms, 500);
    assert_int_equal(c.fault_tolerance.detection.health_check_timeout_ms, 1000);
    assert_int_equal(c.fault_tolerance.detection.failure_threshold, 3);
    assert_int_equal(c.fault_tolerance.detection.recovery_threshold, 2);
    assert_int_equal(c.fault_tolerance.detection.flap_window_ms, 60000);
    assert_int_equal(c.fault_tolerance.detection.flap_threshold, 3);
    assert_int_equal(c.fault_tolerance.detection.flap_penalty, 3);
    assert_int_equal(c.fault_tolerance.recovery_strategies.fast_recovery.max_time_ms, 120000);
    assert_int_equal(c.fault_tolerance.recovery_strategies.fast_recovery.resource_limit, 80);
    assert_int_equal(c.fault_tolerance.recovery_strategies.safe_recovery.max_time_ms, 600000);
    assert_true(c.fault_tolerance.recovery_strategies.safe_recovery.consistency_check);
    assert_true(c.fault_tolerance.recovery_strategies.degraded_service.essential_services_only);
    assert_int_equal(c.fault_tolerance.recovery_strategies.degraded_service.performance_limit, 50);
    assert_int_equal(c.fault_tolerance.backup.interval_ms, 300000);
    assert_int_equal(c.fault_tolerance.backup.retention_period_ms, 7ULL * 24 * 3600 * 1000);
    assert_int_equal(c.fault_tolerance.backup.consistency_check_interval_ms, 3600000);
    assert_int_equal(c.fault_tolerance.backup.cpu_share, 10);
    assert_int_equal(c.fault_tolerance.partition.mass_failure_share, 50);
    assert_int_equal(c.fault_tolerance.partition.mass_failure_window_ms, 10000);
    assert_int_equal(c.fault_tolerance.partition.min_nodes, 4);
    assert_int_equal(c.fault_tolerance.partition.alert_after_ms, 300000);
    assert_int_equal(c.fault_tolerance.poison.max_failures, 3);
    assert_int_equal(c.fault_tolerance.poison.window_ms, 600000);

    /* 500ms x 3: a failed agent is declared failed 1.5 s after its last heartbeat. */
    assert_int_equal(rd_config_lease_ms(&c), 1500);
    strcpy(err, "junk");
    assert_int_equal(rd_config_validate(&c, err), 0);
    assert_string_equal(err, "");
}

static void test_deploy_file(void **state)
{
    (void)state;
    const char *path = RD_SOURCE_DIR "/deploy/recoveryd.yaml";
    struct rd_config c, d;
    char err[RD_CFG_ERRLEN];
    /*
     * Start from zero, not the defaults: the shipped file writes every key out,
     * so what it loads must be the defaults byte for byte.
     */
    memset(&c, 0, sizeof(c));
    int rc = rd_config_load_file(&c, path, err);
    if (rc != 0)
        fail_msg("%s: %d %s", path, rc, err);
    assert_string_equal(err, "");
    assert_string_equal(c.path, path);

    assert_string_equal(c.server.listen_host, "127.0.0.1");
    assert_int_equal(c.server.listen_port, 8080);
    /*
     * Its paths are relative to deploy/, where the file is: they name the
     * built-in defaults' directories as seen from the repository root
     * (./var, build/plugins, policies), which is where `make run` starts.
     */
    assert_string_equal(c.storage.data_dir, RD_SOURCE_DIR "/deploy/../var");
    assert_string_equal(c.plugins.dir, RD_SOURCE_DIR "/deploy/../build/plugins");
    assert_string_equal(c.policies.dir, RD_SOURCE_DIR "/deploy/../policies");
    assert_string_equal(c.server.tls_cert, "");
    assert_string_equal(c.server.tls_key, "");
    assert_int_equal(c.storage.segment_size, 8 << 20);
    assert_int_equal(c.cluster.election_timeout_ms, 300);
    assert_true(c.cluster.pre_vote);
    assert_int_equal(c.policies.memory_limit, 64 << 20);
    assert_int_equal(c.fault_tolerance.detection.heartbeat_interval_ms, 500);
    assert_int_equal(c.fault_tolerance.detection.health_check_timeout_ms, 1000);
    assert_int_equal(c.fault_tolerance.recovery_strategies.fast_recovery.resource_limit, 80);
    assert_int_equal(c.fault_tolerance.backup.retention_period_ms, 604800000);
    check_default_instances(&c);

    /*
     * The instances carry the lines they were written on, which built-in
     * defaults cannot have: check them against the file, then clear them so
     * the rest can be compared byte for byte.
     */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char text[64 * 1024];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    for (unsigned i = 0; i < c.plugins.n_instances; i++) {
        char needle[96];
        snprintf(needle, sizeof(needle), "- name: %s", c.plugins.instances[i].name);
        int line = line_of(text, needle);
        assert_true(line > 0);
        assert_int_equal(c.plugins.instances[i].line, line);
        c.plugins.instances[i].line = 0;
    }
    /* So do the settings whose origin messages name; all are written out. */
    static const struct {
        enum rd_cfg_setting s;
        const char *needle;
    } origins[] = {
        {RD_CFG_SERVER_LISTEN, "  listen:"},
        {RD_CFG_TLS_CERT, "    cert:"},
        {RD_CFG_TLS_KEY, "    key:"},
        {RD_CFG_DATA_DIR, "  data_dir:"},
        {RD_CFG_RAFT_ADDRESS, "  raft_address:"},
        {RD_CFG_PLUGINS_DIR, "  dir: ../build"},
        {RD_CFG_POLICIES_DIR, "  dir: ../policies"},
        {RD_CFG_CLUSTER_TLS_CA, "    ca: \"\"  "},
        {RD_CFG_CLUSTER_TLS_CERT, "    cert: \"\"                  # this replica's"},
        {RD_CFG_CLUSTER_TLS_KEY, "    key: \"\"                   # its PEM"},
        {RD_CFG_UI_DIR, "  ui_dir:"},
    };
    for (size_t i = 0; i < sizeof(origins) / sizeof(origins[0]); i++) {
        const char *hit = strstr(text, origins[i].needle);
        assert_non_null(hit);
        int line = 1;
        for (const char *q = text; q < hit; q++)
            line += *q == '\n';
        assert_int_equal(c.origin[origins[i].s], line);
        c.origin[origins[i].s] = 0;
    }

    /* The rest is the defaults byte for byte, the paths as seen from the root. */
    rd_config_defaults(&d);
    assert_string_equal(d.storage.data_dir, "./var");
    assert_string_equal(d.plugins.dir, "build/plugins");
    assert_string_equal(d.policies.dir, "policies");
    assert_string_equal(d.server.ui_dir, "ui");
    assert_string_equal(c.server.ui_dir, RD_SOURCE_DIR "/deploy/../ui");
    memcpy(c.server.ui_dir, d.server.ui_dir, sizeof(c.server.ui_dir));
    memcpy(c.storage.data_dir, d.storage.data_dir, sizeof(c.storage.data_dir));
    memcpy(c.plugins.dir, d.plugins.dir, sizeof(c.plugins.dir));
    memcpy(c.policies.dir, d.policies.dir, sizeof(c.policies.dir));
    strcpy(d.path, path);
    assert_memory_equal(&c, &d, sizeof(c));
    assert_int_equal(rd_config_validate(&c, err), 0);
    assert_int_equal(rd_config_lease_ms(&c), 1500);
}

static void test_requirement_block(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    int rc = load(&c, requirement_block, err);
    if (rc != 0)
        fail_msg("%d %s", rc, err);
    assert_string_equal(c.path, NAME);
    assert_int_equal(c.fault_tolerance.detection.heartbeat_interval_ms, 10000);
    assert_int_equal(c.fault_tolerance.detection.health_check_timeout_ms, 5000);
    assert_int_equal(c.fault_tolerance.detection.failure_threshold, 3);
    assert_int_equal(c.fault_tolerance.detection.recovery_threshold, 2);
    assert_int_equal(c.fault_tolerance.recovery_strategies.fast_recovery.max_time_ms, 120000);
    assert_int_equal(c.fault_tolerance.recovery_strategies.fast_recovery.resource_limit, 80);
    assert_int_equal(c.fault_tolerance.recovery_strategies.safe_recovery.max_time_ms, 600000);
    assert_true(c.fault_tolerance.recovery_strategies.safe_recovery.consistency_check);
    assert_true(c.fault_tolerance.recovery_strategies.degraded_service.essential_services_only);
    assert_int_equal(c.fault_tolerance.recovery_strategies.degraded_service.performance_limit, 50);
    assert_int_equal(c.fault_tolerance.backup.interval_ms, 300000);
    assert_int_equal(c.fault_tolerance.backup.retention_period_ms, 604800000);
    assert_int_equal(c.fault_tolerance.backup.consistency_check_interval_ms, 3600000);
    /* Sections the block does not name keep their defaults. */
    assert_int_equal(c.server.listen_port, 8080);
    assert_string_equal(c.cluster.node_id, "rd1");
    assert_int_equal(rd_config_validate(&c, err), 0);
    /* The requirement's numbers: 10s x 3 = 30 s, its own detection ceiling. */
    assert_int_equal(rd_config_lease_ms(&c), 30000);
}

static void test_empty_and_partial(void **state)
{
    (void)state;
    static const char *const empties[] = {"", "\n\n", "# only a comment\n", "---\n", "~\n"};
    struct rd_config c, d;
    char err[RD_CFG_ERRLEN];
    rd_config_defaults(&d);
    strcpy(d.path, NAME);
    for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
        int rc = load(&c, empties[i], err);
        if (rc != 0)
            fail_msg("'%s': %d %s", empties[i], rc, err);
        assert_memory_equal(&c, &d, sizeof(c));
    }
    /* NULL buffer of length 0 is an empty file too. */
    rd_config_defaults(&c);
    assert_int_equal(rd_config_load_string(&c, NAME, NULL, 0, err), 0);
    assert_memory_equal(&c, &d, sizeof(c));

    /* An empty file on disk. */
    char path[64];
    write_temp(path, "");
    rd_config_defaults(&c);
    assert_int_equal(rd_config_load_file(&c, path, err), 0);
    assert_string_equal(c.path, path);
    unlink(path);

    /* Empty sections keep their defaults. */
    assert_int_equal(load(&c, "server:\nstorage: ~\ncluster:\n  peers:\n", err), 0);
    assert_memory_equal(&c, &d, sizeof(c));

    /* One key changes one value, the rest stays. */
    assert_int_equal(load(&c, "server:\n  listen: \"[::1]:9090\"\n", err), 0);
    assert_string_equal(c.server.listen_host, "::1");
    assert_int_equal(c.server.listen_port, 9090);
    assert_int_equal(c.server.max_body_bytes, 1 << 20);
    assert_int_equal(c.fault_tolerance.detection.heartbeat_interval_ms, 500);

    /* Loading over an earlier file keeps what the second one does not set. */
    assert_int_equal(rd_config_load_string(&c, "second.yaml", "logging: {level: debug}\n", 24, err),
                     0);
    assert_int_equal(c.logging.level, RD_LOG_DEBUG);
    assert_int_equal(c.server.listen_port, 9090);
    assert_string_equal(c.path, "second.yaml");
}

static void test_all_types_good(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    const char *yaml = "server:\n"
                       "  listen: localhost:1\n"
                       "  max_body: 4096\n"
                       "  shutdown_timeout: 1h\n"
                       "  tls: {cert: /etc/rd/cert.pem, key: '/etc/rd/key.pem'}\n"
                       "storage:\n"
                       "  data_dir: /srv/recoveryd\n"
                       "  snapshot_threshold: 1\n"
                       "  snapshot_trailing: 0\n"
                       "  snapshot_threshold_bytes: 1GiB\n"
                       "  snapshot_trailing_bytes: 0\n"
                       "  segment_size: 16M\n"
                       "cluster:\n"
                       "  name: prod-eu_1\n"
                       "  node_id: node-2.eu\n"
                       "  replica_id: 2\n"
                       "  raft_address: \"[::1]:7081\"\n"
                       "  election_timeout: 1s\n"
                       "  heartbeat_timeout: 100ms\n"
                       "  pre_vote: off\n"
                       "  group_commit_delay: 2ms\n"
                       "  max_inflight: 65536\n"
                       "  peers:\n"
                       "    - id: 1\n"
                       "      address: 10.0.0.1:7080\n"
                       "      api_url: http://10.0.0.1:8080\n"
                       "    - {id: 2, address: \"[::1]:7081\"}\n"
                       "    - id: 18446744073709551615\n"
                       "      address: db3:7080\n"
                       "      api_url: https://db3\n"
                       "plugins:\n"
                       "  dir: /usr/lib/recoveryd/plugins\n"
                       "policies:\n"
                       "  dir: /etc/recoveryd/policies\n"
                       "  budget: 250ms\n"
                       "  memory_limit: 1G\n"
                       "logging:\n"
                       "  level: warn\n"
                       "  format: json\n"
                       "fault_tolerance:\n"
                       "  detection:\n"
                       "    heartbeat_interval: \"250ms\"\n"
                       "    health_check_timeout: 2s\n"
                       "    failure_threshold: 1000\n"
                       "    recovery_threshold: 1\n"
                       "  recovery_strategies:\n"
                       "    fast_recovery: {max_time: 30s, resource_limit: 0%}\n"
                       "    safe_recovery: {max_time: 1d, consistency_check: no}\n"
                       "    degraded_service:\n"
                       "      essential_services_only: False\n"
                       "      performance_limit: 100%\n"
                       "  backup:\n"
                       "    interval: &every 90s\n"
                       "    retention_period: 0ms\n"
                       "    consistency_check_interval: *every\n";
    int rc = load(&c, yaml, err);
    if (rc != 0)
        fail_msg("%d %s", rc, err);
    assert_string_equal(c.server.listen_host, "localhost");
    assert_int_equal(c.server.listen_port, 1);
    assert_int_equal(c.server.max_body_bytes, 4096);
    assert_int_equal(c.server.shutdown_timeout_ms, 3600000);
    assert_string_equal(c.server.tls_cert, "/etc/rd/cert.pem");
    assert_string_equal(c.server.tls_key, "/etc/rd/key.pem");
    assert_string_equal(c.storage.data_dir, "/srv/recoveryd");
    assert_int_equal(c.storage.snapshot_threshold, 1);
    assert_int_equal(c.storage.snapshot_trailing, 0);
    assert_int_equal(c.storage.snapshot_threshold_bytes, 1ULL << 30);
    assert_int_equal(c.storage.snapshot_trailing_bytes, 0);
    assert_int_equal(c.storage.segment_size, 16 << 20);
    assert_string_equal(c.cluster.name, "prod-eu_1");
    assert_string_equal(c.cluster.node_id, "node-2.eu");
    assert_int_equal(c.cluster.replica_id, 2);
    assert_string_equal(c.cluster.raft_address, "[::1]:7081");
    assert_int_equal(c.cluster.election_timeout_ms, 1000);
    assert_int_equal(c.cluster.heartbeat_timeout_ms, 100);
    assert_false(c.cluster.pre_vote);
    assert_int_equal(c.cluster.group_commit_delay_ms, 2);
    assert_int_equal(c.cluster.max_inflight, 65536);
    assert_int_equal(c.cluster.n_peers, 3);
    assert_int_equal(c.cluster.peers[0].id, 1);
    assert_string_equal(c.cluster.peers[0].address, "10.0.0.1:7080");
    assert_string_equal(c.cluster.peers[0].api_url, "http://10.0.0.1:8080");
    assert_int_equal(c.cluster.peers[1].id, 2);
    assert_string_equal(c.cluster.peers[1].address, "[::1]:7081");
    assert_string_equal(c.cluster.peers[1].api_url, "");
    assert_true(c.cluster.peers[2].id == UINT64_MAX);
    assert_string_equal(c.cluster.peers[2].address, "db3:7080");
    assert_string_equal(c.cluster.peers[2].api_url, "https://db3");
    assert_string_equal(c.plugins.dir, "/usr/lib/recoveryd/plugins");
    assert_string_equal(c.policies.dir, "/etc/recoveryd/policies");
    assert_int_equal(c.policies.budget_ms, 250);
    assert_int_equal(c.policies.memory_limit, 1 << 30);
    assert_int_equal(c.logging.level, RD_LOG_WARN);
    assert_int_equal(c.logging.format, RD_LOG_JSON);
    assert_int_equal(c.fault_tolerance.detection.heartbeat_interval_ms, 250);
    assert_int_equal(c.fault_tolerance.detection.health_check_timeout_ms, 2000);
    assert_int_equal(c.fault_tolerance.detection.failure_threshold, 1000);
    assert_int_equal(c.fault_tolerance.detection.recovery_threshold, 1);
    assert_int_equal(c.fault_tolerance.recovery_strategies.fast_recovery.max_time_ms, 30000);
    assert_int_equal(c.fault_tolerance.recovery_strategies.fast_recovery.resource_limit, 0);
    assert_int_equal(c.fault_tolerance.recovery_strategies.safe_recovery.max_time_ms, 86400000);
    assert_false(c.fault_tolerance.recovery_strategies.safe_recovery.consistency_check);
    assert_false(c.fault_tolerance.recovery_strategies.degraded_service.essential_services_only);
    assert_int_equal(c.fault_tolerance.recovery_strategies.degraded_service.performance_limit, 100);
    assert_int_equal(c.fault_tolerance.backup.interval_ms, 90000);
    assert_int_equal(c.fault_tolerance.backup.retention_period_ms, 0);
    assert_int_equal(c.fault_tolerance.backup.consistency_check_interval_ms, 90000);
    assert_int_equal(rd_config_validate(&c, err), 0);
    assert_int_equal(rd_config_lease_ms(&c), 250000);

    /* A later file's peer list replaces the earlier one. */
    assert_int_equal(rd_config_load_string(&c, NAME, "cluster: {peers: []}", 20, err), 0);
    assert_int_equal(c.cluster.n_peers, 0);
    assert_int_equal(c.cluster.peers[0].id, 0);
    assert_string_equal(c.cluster.peers[0].address, "");
}

static void test_bool_spellings(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool value;
    } cases[] = {{"true", true},   {"yes", true}, {"on", true},     {"True", true}, {"TRUE", true},
                 {"Yes", true},    {"ON", true},  {"false", false}, {"no", false},  {"off", false},
                 {"False", false}, {"NO", false}, {"'off'", false}};
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    char yaml[128];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(yaml, sizeof(yaml), "cluster:\n  pre_vote: %s\n", cases[i].text);
        int rc = load(&c, yaml, err);
        if (rc != 0)
            fail_msg("%s: %d %s", cases[i].text, rc, err);
        assert_int_equal(c.cluster.pre_vote, cases[i].value);
    }
}

/* ---- loader errors ----------------------------------------------------- */

static void test_error_duration(void **state)
{
    (void)state;
    /* The exact form promised in config.h. */
    expect_exact_error("fault_tolerance:\n  detection:\n    heartbeat_interval: fast\n",
                       NAME ":3: fault_tolerance.detection.heartbeat_interval: expected a "
                            "duration like 250ms, 10s, 2m, got 'fast'");
    static const char *const bad[] = {
        "10",
        "10 s",
        "10sec",
        "-5s",
        "1.5s",
        "10S",
        "s",
        "ms",
        "10ms5",
        "+10s",
        "0x10s",
        "'10m '",
        "'10 s'",
        "\"\"",
        "",
        "5 ms",
        "1e3ms",
        "99999999999999999999ms", /* more digits than uint64 holds */
        "213503982335d",          /* fits uint64 as a number, not as milliseconds */
    };
    char yaml[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml), "server:\n  max_body: 1MiB\n  shutdown_timeout: %s\n", bad[i]);
        expect_error(yaml, 3, "server.shutdown_timeout", NULL);
    }
    expect_error("cluster:\n  election_timeout: 10sec\n", 2, "cluster.election_timeout", "'10sec'");
    expect_error("logging:\n  format: xml\n", 2, "logging.format", "'xml'");
    expect_error("logging:\n  format: JSON\n", 2, "logging.format", "'JSON'");
    expect_error("policies:\n\n\n  budget: -5ms\n", 4, "policies.budget", "'-5ms'");
    expect_error("fault_tolerance:\n  backup:\n    interval: 5m\n    retention_period: 7 d\n", 4,
                 "fault_tolerance.backup.retention_period", "'7 d'");
    expect_error("fault_tolerance:\n  recovery_strategies:\n    safe_recovery:\n"
                 "      max_time: 10\n",
                 4, "fault_tolerance.recovery_strategies.safe_recovery.max_time", "'10'");
    expect_error("fault_tolerance:\n  detection:\n    health_check_timeout:\n", 3,
                 "fault_tolerance.detection.health_check_timeout", "''");
}

static void test_error_percent(void **state)
{
    (void)state;
    expect_exact_error("fault_tolerance:\n"
                       "  recovery_strategies:\n"
                       "    fast_recovery:\n"
                       "      max_time: 2m\n"
                       "      resource_limit: 120%\n",
                       NAME ":5: fault_tolerance.recovery_strategies.fast_recovery.resource_limit: "
                            "expected a percentage from 0% to 100% like 80%, got '120%'");
    /* A bare "%" cannot start a YAML plain scalar; the parser tests cover it. */
    static const char *const bad[] = {
        "101%", "80", "-1%", "80 %", "8.5%", "1%0", "99999999999999999999%", "80%%", "0.5", "half"};
    char yaml[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml),
                 "fault_tolerance:\n  recovery_strategies:\n    degraded_service:\n"
                 "      performance_limit: %s\n",
                 bad[i]);
        char got[64];
        snprintf(got, sizeof(got), "'%s'", bad[i]);
        expect_error(yaml, 4,
                     "fault_tolerance.recovery_strategies.degraded_service.performance_limit", got);
    }
}

static void test_error_size(void **state)
{
    (void)state;
    expect_exact_error("server:\n  max_body: 1MB\n",
                       NAME ":2: server.max_body: expected a size like 4096, 512KiB, 8MiB, 1GiB, "
                            "got '1MB'");
    static const char *const bad[] = {"1KB",
                                      "1 MiB",
                                      "-1",
                                      "1.5MiB",
                                      "MiB",
                                      "1mib",
                                      "1k",
                                      "18446744073709551616",
                                      "17179869184GiB",
                                      "1TiB"};
    char yaml[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml), "storage:\n  data_dir: x\n  segment_size: %s\n", bad[i]);
        char got[64];
        snprintf(got, sizeof(got), "'%s'", bad[i]);
        expect_error(yaml, 3, "storage.segment_size", got);
    }
    expect_error("policies:\n  memory_limit: lots\n", 2, "policies.memory_limit", "'lots'");
}

static void test_error_uint(void **state)
{
    (void)state;
    expect_exact_error("fault_tolerance:\n  detection:\n    failure_threshold: three\n",
                       NAME ":3: fault_tolerance.detection.failure_threshold: expected an "
                            "integer from 1 to 1000, got 'three'");
    expect_error("fault_tolerance:\n  detection:\n    failure_threshold: 0\n", 3,
                 "fault_tolerance.detection.failure_threshold", "'0'");
    expect_error("fault_tolerance:\n  detection:\n    recovery_threshold: 1001\n", 3,
                 "fault_tolerance.detection.recovery_threshold", "'1001'");
    expect_error("fault_tolerance:\n  detection:\n    recovery_threshold: -1\n", 3,
                 "fault_tolerance.detection.recovery_threshold", "'-1'");
    expect_error("fault_tolerance:\n  detection:\n    recovery_threshold: 2.0\n", 3,
                 "fault_tolerance.detection.recovery_threshold", "'2.0'");
    expect_error("cluster:\n  max_inflight: 65537\n", 2, "cluster.max_inflight", "'65537'");
    expect_error("storage:\n  snapshot_threshold: 0\n", 2, "storage.snapshot_threshold", "'0'");
    expect_error("storage:\n  snapshot_trailing: 0x10\n", 2, "storage.snapshot_trailing", "'0x10'");
    expect_error("storage:\n  snapshot_threshold_bytes: lots\n", 2,
                 "storage.snapshot_threshold_bytes", "'lots'");
    expect_error("storage:\n  snapshot_trailing_bytes: -1MiB\n", 2,
                 "storage.snapshot_trailing_bytes", "'-1MiB'");
    expect_error("cluster:\n  replica_id: 18446744073709551616\n", 2, "cluster.replica_id",
                 "'18446744073709551616'");
    expect_error("cluster:\n  replica_id: 0\n", 2, "cluster.replica_id", "'0'");
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    assert_int_equal(load(&c, "cluster:\n  replica_id: 0\n", err), RD_ECONFIG);
    check_contains(err, "expected an integer from 1 to 18446744073709551615");
    /* The limits themselves are accepted. */
    assert_int_equal(load(&c, "cluster:\n  replica_id: 18446744073709551615\n", err), 0);
    assert_true(c.cluster.replica_id == UINT64_MAX);
    assert_int_equal(load(&c, "cluster:\n  max_inflight: 1\n", err), 0);
    assert_int_equal(c.cluster.max_inflight, 1);
}

static void test_error_bool_level_url(void **state)
{
    (void)state;
    expect_exact_error("cluster:\n  group_commit: 2\n",
                       NAME ":2: cluster.group_commit: expected true or false (or yes/no, on/off), "
                            "got '2'");
    expect_exact_error("cluster:\n  pre_vote: maybe\n",
                       NAME ":2: cluster.pre_vote: expected true or false (or yes/no, on/off), "
                            "got 'maybe'");
    expect_error("fault_tolerance:\n  recovery_strategies:\n    safe_recovery:\n"
                 "      consistency_check: 1\n",
                 4, "fault_tolerance.recovery_strategies.safe_recovery.consistency_check", "'1'");
    expect_error("fault_tolerance:\n  recovery_strategies:\n    degraded_service:\n"
                 "      essential_services_only: y\n",
                 4, "fault_tolerance.recovery_strategies.degraded_service.essential_services_only",
                 "'y'");
    expect_exact_error("logging:\n  level: verbose\n",
                       NAME ":2: logging.level: expected a log level (debug, info, warn, error), "
                            "got 'verbose'");
    expect_error("logging:\n  level: INFO\n", 2, "logging.level", "'INFO'");
    expect_exact_error("logging:\n  level: info\n  format: yaml\n",
                       NAME ":3: logging.format: expected a log format (logfmt, json), got 'yaml'");
    expect_error("logging:\n  format: 1\n", 2, "logging.format", "'1'");
    expect_error("cluster:\n  peers:\n    - id: 1\n      address: a:1\n      api_url: ftp://x\n", 5,
                 "cluster.peers[0].api_url", "'ftp://x'");
}

static void test_error_hostport(void **state)
{
    (void)state;
    expect_exact_error("server:\n  listen: 127.0.0.1\n",
                       NAME ":2: server.listen: expected HOST:PORT like 127.0.0.1:8080, "
                            "[::1]:8080 or localhost:8080 (port 1-65535), got '127.0.0.1'");
    expect_error("server:\n  listen: 127.0.0.1:0\n", 2, "server.listen", "'127.0.0.1:0'");
    expect_error("server:\n  listen: \"::1:8080\"\n", 2, "server.listen", "'::1:8080'");
    expect_error("server:\n  listen: localhost:65536\n", 2, "server.listen", "'localhost:65536'");
    expect_error("cluster:\n  raft_address: host:http\n", 2, "cluster.raft_address", "'host:http'");
    expect_error("cluster:\n  raft_bind: 127.0.0.1\n", 2, "cluster.raft_bind", "'127.0.0.1'");
    expect_error("cluster:\n  peers:\n    - id: 1\n      address: 300.0.0.1:7080\n", 4,
                 "cluster.peers[0].address", "'300.0.0.1:7080'");
    /* A failed value leaves the old one in place. */
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    assert_int_equal(load(&c, "server:\n  listen: bad\n", err), RD_ECONFIG);
    assert_string_equal(c.server.listen_host, "127.0.0.1");
    assert_int_equal(c.server.listen_port, 8080);
}

static void test_error_string_too_long(void **state)
{
    (void)state;
    char yaml[1024];
    char value[400];
    struct rd_config c;
    char err[RD_CFG_ERRLEN];

    /* 255 bytes fit (RD_CFG_STR with its NUL). */
    memset(value, 'a', 255);
    value[255] = '\0';
    snprintf(yaml, sizeof(yaml), "storage:\n  data_dir: %s\n", value);
    assert_int_equal(load(&c, yaml, err), 0);
    assert_int_equal(strlen(c.storage.data_dir), 255);
    assert_string_equal(c.storage.data_dir, value);

    /* 256 do not; the message quotes the start of the value and its length. */
    memset(value, 'b', 300);
    value[300] = '\0';
    snprintf(yaml, sizeof(yaml), "plugins:\n  dir: %s\n", value);
    expect_error(yaml, 2, "plugins.dir", NULL);
    assert_int_equal(load(&c, yaml, err), RD_ECONFIG);
    check_contains(err,
                   "expected a string of at most 255 bytes, got 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
                   "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb...' (300 bytes)");
    assert_true(strlen(err) < 200);

    memset(value, 'c', 256);
    value[256] = '\0';
    snprintf(yaml, sizeof(yaml), "cluster:\n  node_id: %s\n", value);
    expect_error(yaml, 2, "cluster.node_id", NULL);
    assert_int_equal(load(&c, yaml, err), RD_ECONFIG);
    check_contains(err, "(256 bytes)");

    /* Long host in HOST:PORT. */
    memset(value, 'h', 300);
    strcpy(value + 300, ":80");
    snprintf(yaml, sizeof(yaml), "server:\n  listen: %s\n", value);
    expect_error(yaml, 2, "server.listen", NULL);

    /* Control bytes and NUL are escaped in the message, not printed raw. */
    expect_error("logging:\n  level: \"in\\tfo\"\n", 2, "logging.level", "'in\\x09fo'");
    expect_error("storage:\n  data_dir: \"a\\0b\"\n", 2, "storage.data_dir", "'a\\x00b'");
}

/* security.audit: the audit trail's retention, defaults and bounds. */
static void test_security_audit(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    rd_config_defaults(&c);
    assert_int_equal(c.security.audit.max_records, 100000);
    assert_int_equal(c.security.audit.max_age_ms, UINT64_C(30) * 24 * 3600 * 1000);
    assert_int_equal(load(&c, "security:\n  audit:\n    max_records: 500\n    max_age: 2h\n", err),
                     0);
    assert_int_equal(c.security.audit.max_records, 500);
    assert_int_equal(c.security.audit.max_age_ms, 2 * 3600 * 1000);
    assert_int_equal(rd_config_validate(&c, err), 0);
    expect_error("security:\n  audit:\n    max_records: 0\n", 3, "security.audit.max_records",
                 NULL);
    assert_int_equal(load(&c, "security:\n  audit:\n    max_age: 10s\n", err), 0);
    assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
    check_contains(err, "security.audit.max_age: expected a duration from 1m to 3650d, got '10s'");
}

/* fault_tolerance.records (docs/records.md). */
static void test_records(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    rd_config_defaults(&c);
    assert_false(c.fault_tolerance.records.enabled);
    assert_string_equal(c.fault_tolerance.records.conninfo, "");
    assert_string_equal(c.fault_tolerance.records.schema, "public");
    assert_int_equal(c.fault_tolerance.records.batch_size, 500);
    assert_int_equal(c.fault_tolerance.records.max_retained, 200000);
    assert_int_equal(c.fault_tolerance.records.timeout_ms, 10000);
    assert_int_equal(c.fault_tolerance.records.interval_ms, 100);
    assert_int_equal(load(&c,
                          "fault_tolerance:\n  records:\n    export: true\n"
                          "    conninfo: \"host=/run/pg dbname=ops\"\n    schema: rd_prod\n"
                          "    batch_size: 1000\n    max_retained: 50000\n    timeout: 3s\n",
                          err),
                     0);
    assert_true(c.fault_tolerance.records.enabled);
    assert_string_equal(c.fault_tolerance.records.conninfo, "host=/run/pg dbname=ops");
    assert_string_equal(c.fault_tolerance.records.schema, "rd_prod");
    assert_int_equal(c.fault_tolerance.records.batch_size, 1000);
    assert_int_equal(c.fault_tolerance.records.max_retained, 50000);
    assert_int_equal(rd_config_validate(&c, err), 0);
    expect_error("fault_tolerance:\n  records:\n    batch_size: 0\n", 3,
                 "fault_tolerance.records.batch_size", NULL);
    expect_error("fault_tolerance:\n  records:\n    max_retained: 999\n", 3,
                 "fault_tolerance.records.max_retained", NULL);
    expect_error("fault_tolerance:\n  records:\n    export: sometimes\n", 3,
                 "fault_tolerance.records.export", NULL);
    static const char *const bad_schemas[] = {"Prod", "1st", "a-b", "\"\"", "x;drop"};
    for (size_t i = 0; i < sizeof(bad_schemas) / sizeof(bad_schemas[0]); i++) {
        char yaml[128];
        snprintf(yaml, sizeof(yaml), "fault_tolerance:\n  records:\n    schema: %s\n",
                 bad_schemas[i]);
        rd_config_defaults(&c);
        assert_int_equal(load(&c, yaml, err), 0);
        assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
        check_contains(err, "fault_tolerance.records.schema: expected a PostgreSQL schema name");
    }
    rd_config_defaults(&c);
    assert_int_equal(load(&c, "fault_tolerance:\n  records:\n    conninfo: \"host\"\n", err), 0);
    assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
    check_contains(err, "fault_tolerance.records.conninfo: not a libpq connection string or URI: "
                        "missing \"=\" after \"host\"");
    assert_int_equal(
        load(&c, "fault_tolerance:\n  records:\n    conninfo: \"postgresql://u@h/db\"\n", err), 0);
    assert_int_equal(rd_config_validate(&c, err), 0);
    rd_config_defaults(&c);
    assert_int_equal(load(&c, "fault_tolerance:\n  records:\n    timeout: 500ms\n", err), 0);
    assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
    check_contains(err, "fault_tolerance.records.timeout: expected a duration from 1s to 10m");
}

static void test_error_unknown_key(void **state)
{
    (void)state;
    expect_exact_error("server:\n  listen: 127.0.0.1:8080\n  lisen: 127.0.0.1:8081\n",
                       NAME ":3: server.lisen: unknown key (expected one of: listen, max_body, "
                            "shutdown_timeout, tls, edge, events, ui_dir)");
    expect_exact_error("logging:\n  level: info\ncolour: red\n",
                       NAME ":3: colour: unknown key (expected one of: server, storage, cluster, "
                            "plugins, policies, logging, fault_tolerance, security)");
    expect_error("fault_tolerance:\n  recovery_strategies:\n    fast_recovery:\n"
                 "      max_tme: 2m\n",
                 4, "fault_tolerance.recovery_strategies.fast_recovery.max_tme", NULL);
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    assert_int_equal(load(&c, "fault_tolerance:\n  detection:\n    heartbeat: 1s\n", err),
                     RD_ECONFIG);
    /* The requirement's four keys first, then ours. */
    assert_string_equal(err, NAME ":3: fault_tolerance.detection.heartbeat: unknown key (expected "
                                  "one of: heartbeat_interval, health_check_timeout, "
                                  "failure_threshold, recovery_threshold, flap_window, "
                                  "flap_threshold, flap_penalty)");
    expect_exact_error("fault_tolerance:\n  partitions: {}\n",
                       NAME ":2: fault_tolerance.partitions: unknown key (expected one of: "
                            "detection, recovery_strategies, backup, partition, poison, records, "
                            "tasks, prediction, rebalance)");
    expect_exact_error("fault_tolerance:\n  partition:\n    share: 50%\n",
                       NAME ":3: fault_tolerance.partition.share: unknown key (expected one of: "
                            "mass_failure_share, mass_failure_window, min_nodes, alert_after, "
                            "mode, on_conflict)");
    expect_exact_error("plugins:\n  instance: []\n",
                       NAME ":2: plugins.instance: unknown key (expected one of: dir, instances)");
    expect_error("server:\n  tls:\n    certificate: x\n", 3, "server.tls.certificate", NULL);
    expect_error("cluster:\n  peers:\n    - id: 1\n      address: a:1\n    - id: 2\n"
                 "      port: 7081\n",
                 6, "cluster.peers[1].port", NULL);
    /* Key names are case-sensitive. */
    expect_error("Server:\n  listen: a:1\n", 1, "Server", NULL);
}

/* server.edge: every key read, and the limits that contradict each other refused. */
static void test_edge(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    assert_int_equal(load(&c,
                          "server:\n  edge:\n    max_connections: 50\n"
                          "    max_connections_per_address: 5\n    reserved_fds: 10\n"
                          "    idle_timeout: 2s\n    request_timeout: 500ms\n"
                          "    max_header_list: 8KiB\n    max_body_buffered: 2MiB\n"
                          "    stream_reset_budget: 7\n    empty_frame_budget: 9\n"
                          "    abuse_block: 0s\n",
                          err),
                     0);
    assert_int_equal(c.server.edge.max_connections, 50);
    assert_int_equal(c.server.edge.max_per_address, 5);
    assert_int_equal(c.server.edge.reserved_fds, 10);
    assert_int_equal(c.server.edge.idle_timeout_ms, 2000);
    assert_int_equal(c.server.edge.request_timeout_ms, 500);
    assert_int_equal(c.server.edge.max_header_list, 8192);
    assert_int_equal(c.server.edge.max_body_buffered, 2 * 1024 * 1024);
    assert_int_equal(c.server.edge.reset_budget, 7);
    assert_int_equal(c.server.edge.frame_budget, 9);
    assert_int_equal(c.server.edge.abuse_block_ms, 0);

    /* Validation (rd_config_validate) refuses the contradictions. */
    static const struct {
        const char *yaml, *message;
    } bad[] = {
        {"server:\n  edge:\n    max_connections: 10\n    max_connections_per_address: 11\n",
         "server.edge.max_connections_per_address: expected at most"},
        {"server:\n  edge:\n    max_header_list: 512\n",
         "server.edge.max_header_list: expected a size from 1KiB to 1MiB"},
        {"server:\n  edge:\n    request_timeout: 10ms\n",
         "server.edge.request_timeout: expected at least 100ms"},
        {"server:\n  edge:\n    idle_timeout: 10ms\n",
         "server.edge.idle_timeout: expected at least 100ms"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(load(&c, bad[i].yaml, err), 0);
        assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
        check_contains(err, bad[i].message);
    }
    expect_error("server:\n  edge:\n    stream_reset_budget: 0\n", 3,
                 "server.edge.stream_reset_budget", NULL);
}

/* server.events: the event stream's ring, caps and timers. */
static void test_events(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    rd_config_defaults(&c);
    assert_int_equal(c.server.events.ring_size, 4096);
    assert_int_equal(c.server.events.max_streams, 256);
    assert_int_equal(c.server.events.max_per_principal, 16);
    assert_int_equal(c.server.events.keepalive_ms, 15000);
    assert_int_equal(c.server.events.stall_timeout_ms, 10000);
    assert_int_equal(load(&c,
                          "server:\n  events:\n    ring_size: 100\n    max_streams: 9\n"
                          "    max_streams_per_principal: 3\n    keepalive: 2s\n"
                          "    stall_timeout: 250ms\n",
                          err),
                     0);
    assert_int_equal(rd_config_validate(&c, err), 0);
    assert_int_equal(c.server.events.ring_size, 100);
    assert_int_equal(c.server.events.max_streams, 9);
    assert_int_equal(c.server.events.max_per_principal, 3);
    assert_int_equal(c.server.events.keepalive_ms, 2000);
    assert_int_equal(c.server.events.stall_timeout_ms, 250);
    static const struct {
        const char *yaml, *message;
    } bad[] = {
        {"server:\n  events:\n    max_streams: 4\n    max_streams_per_principal: 5\n",
         "server.events.max_streams_per_principal: expected at most server.events.max_streams "
         "(4), got 5"},
        {"server:\n  events:\n    keepalive: 10ms\n",
         "server.events.keepalive: expected a duration from 100ms to 1h"},
        {"server:\n  events:\n    stall_timeout: 2h\n",
         "server.events.stall_timeout: expected a duration from 100ms to 1h"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(load(&c, bad[i].yaml, err), 0);
        assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
        check_contains(err, bad[i].message);
    }
    expect_error("server:\n  events:\n    ring_size: 8\n", 3, "server.events.ring_size", NULL);
    expect_error("server:\n  events:\n    max_streams: 0\n", 3, "server.events.max_streams", NULL);
    expect_error("server:\n  events:\n    rings: 5\n", 3, "server.events.rings", NULL);
}

static void test_error_node_kind(void **state)
{
    (void)state;
    expect_exact_error("server: 8080\n",
                       NAME ":1: server: expected a mapping with keys listen, max_body, "
                            "shutdown_timeout, tls, edge, events, ui_dir, got '8080'");
    expect_error("fault_tolerance:\n  detection: [1, 2]\n", 2, "fault_tolerance.detection",
                 "a sequence");
    expect_error("server:\n  listen:\n    host: 127.0.0.1\n    port: 8080\n", 3, "server.listen",
                 "a mapping");
    expect_error("server:\n  shutdown_timeout: [10s]\n", 2, "server.shutdown_timeout",
                 "a sequence");
    expect_error("server:\n  tls: \"\"\n", 2, "server.tls", "''");
    expect_error("cluster:\n  peers: 3\n", 2, "cluster.peers", "'3'");
    expect_error("cluster:\n  peers: {id: 1}\n", 2, "cluster.peers", "a mapping");
    expect_error("cluster:\n  peers:\n    - 127.0.0.1:7080\n", 3, "cluster.peers[0]",
                 "'127.0.0.1:7080'");
    expect_error("hello\n", 1, NULL, "'hello'");
    expect_error("- server\n- storage\n", 1, NULL, "a sequence");
    expect_error("? [a, b]\n: c\n", 1, NULL, "a sequence");
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    assert_int_equal(load(&c, "hello\n", err), RD_ECONFIG);
    assert_string_equal(err,
                        NAME ":1: expected a mapping with keys server, storage, cluster, "
                             "plugins, policies, logging, fault_tolerance, security, got 'hello'");
}

static void test_error_peers(void **state)
{
    (void)state;
    expect_exact_error("cluster:\n  peers:\n    - address: 127.0.0.1:7080\n",
                       NAME ":3: cluster.peers[0]: missing key 'id' (expected keys: id, address, "
                            "api_url)");
    expect_error("cluster:\n  peers:\n    - id: 1\n      address: a:1\n    - id: 2\n", 5,
                 "cluster.peers[1]", NULL);
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    assert_int_equal(
        load(&c, "cluster:\n  peers:\n    - id: 1\n      address: a:1\n    - id: 2\n", err),
        RD_ECONFIG);
    check_contains(err, "missing key 'address'");

    /* Eight peers: the eighth is named, on its line. */
    char yaml[1024] = "cluster:\n  peers:\n";
    for (int i = 1; i <= 8; i++) {
        char item[64];
        snprintf(item, sizeof(item), "    - {id: %d, address: 10.0.0.%d:7080}\n", i, i);
        strcat(yaml, item);
    }
    expect_exact_error(yaml, NAME ":10: cluster.peers: expected at most 7 peers, got 8");
    /* Seven are fine. */
    yaml[strlen(yaml) - strlen("    - {id: 8, address: 10.0.0.8:7080}\n")] = '\0';
    assert_int_equal(load(&c, yaml, err), 0);
    assert_int_equal(c.cluster.n_peers, 7);
    assert_int_equal(c.cluster.peers[6].id, 7);
    assert_string_equal(c.cluster.peers[6].address, "10.0.0.7:7080");
}

static void test_error_duplicate_and_documents(void **state)
{
    (void)state;
    expect_exact_error("server:\n  listen: 127.0.0.1:8080\n  listen: 1.2.3.4:9\n",
                       NAME ":3: server.listen: duplicate key (first given at line 2)");
    expect_exact_error("server:\n  listen: 127.0.0.1:8080\nlogging: {}\nserver: {}\n",
                       NAME ":4: server: duplicate key (first given at line 1)");
    expect_exact_error("logging:\n  level: info\n---\nlogging:\n  level: debug\n",
                       NAME ":4: expected one YAML document, got a second one (after ---)");
}

static void test_error_syntax(void **state)
{
    (void)state;
    expect_exact_error("server:\n  listen: 127.0.0.1:8080\n max_body: 1MiB\n",
                       NAME ":3: YAML syntax error: did not find expected key (while parsing a "
                            "block mapping at line 1)");
    expect_exact_error("server:\n\tlisten: 127.0.0.1:8080\n",
                       NAME ":2: YAML syntax error: found character that cannot start any token "
                            "(while scanning for the next token at line 2)");
    expect_error("logging:\n  level: \"info\nserver: {}\n", 4, NULL,
                 NULL); /* unterminated quote: reported where the stream ends */
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    assert_int_equal(load(&c, "logging:\n  level: \"info\nserver: {}\n", err), RD_ECONFIG);
    check_contains(err, "YAML syntax error: found unexpected end of stream");
    check_contains(err, "quoted scalar at line 2");
    expect_error("a: [1, 2\nb: 3\n", 2, NULL, NULL);
    assert_int_equal(load(&c, "a: [1, 2\nb: 3\n", err), RD_ECONFIG);
    check_contains(err, "did not find expected ',' or ']'");
    /* Invalid UTF-8: libyaml gives an offset; the line is counted from it. */
    expect_exact_error("logging:\n  level: info\nserver:\n  listen: \xff\xfe\n",
                       NAME ":4: YAML syntax error: invalid leading UTF-8 octet");
    /* A syntax error in a second document is still reported. */
    expect_error("logging: {}\n---\n  a: [\n", 4, NULL, NULL);
    /* A name stands in for the file; NULL becomes <string>. */
    rd_config_defaults(&c);
    assert_int_equal(rd_config_load_string(&c, NULL, "colour: red\n", 12, err), RD_ECONFIG);
    check_prefix(err, "<string>:1: colour: unknown key");
}

static void test_error_files(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    char want[RD_CFG_ERRLEN];

    rd_config_defaults(&c);
    assert_int_equal(rd_config_load_file(&c, "/nonexistent/recoveryd.yaml", err), RD_EIO);
    snprintf(want, sizeof(want), "/nonexistent/recoveryd.yaml: cannot open: %s", strerror(ENOENT));
    assert_string_equal(err, want);
    assert_string_equal(c.path, "");

    /* A directory opens but does not read. */
    assert_int_equal(rd_config_load_file(&c, RD_SOURCE_DIR "/deploy", err), RD_EIO);
    snprintf(want, sizeof(want), RD_SOURCE_DIR "/deploy: cannot read: %s", strerror(EISDIR));
    assert_string_equal(err, want);

    /* Errors in a file carry its path and the line. */
    char path[64];
    write_temp(path, "# recoveryd\n\nfault_tolerance:\n  detection:\n"
                     "    heartbeat_interval: fast\n");
    rd_config_defaults(&c);
    assert_int_equal(rd_config_load_file(&c, path, err), RD_ECONFIG);
    snprintf(want, sizeof(want),
             "%s:5: fault_tolerance.detection.heartbeat_interval: expected a duration like "
             "250ms, 10s, 2m, got 'fast'",
             path);
    assert_string_equal(err, want);
    unlink(path);

    /* A good file on disk. */
    write_temp(path, requirement_block);
    rd_config_defaults(&c);
    assert_int_equal(rd_config_load_file(&c, path, err), 0);
    assert_int_equal(c.fault_tolerance.detection.heartbeat_interval_ms, 10000);
    assert_string_equal(c.path, path);
    unlink(path);

    /* Over 1 MiB is not a config file. */
    size_t big = 1024 * 1024 + 10;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, '#', big);
    text[big] = '\0';
    write_temp(path, text);
    free(text);
    rd_config_defaults(&c);
    assert_int_equal(rd_config_load_file(&c, path, err), RD_ECONFIG);
    check_contains(err, "too large");
    check_prefix(err, path);
    unlink(path);

    /* A name too long for cfg->path. */
    char name[300];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(rd_config_load_string(&c, name, "", 0, err), RD_ECONFIG);
    check_contains(err, "file name longer than 255 bytes");

    /* err may be NULL. */
    assert_int_equal(rd_config_load_string(&c, NAME, "x: 1", 4, NULL), RD_ECONFIG);
    assert_int_equal(rd_config_load_file(&c, "/nonexistent/x.yaml", NULL), RD_EIO);
}

/* ---- relative paths and where settings came from --------------------------- */

/* Writes `text` to DIR/NAME; returns the path in `path`. */
static void write_in(const char *dir, const char *name, const char *text, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static const char relative_paths[] = "server:\n"
                                     "  tls:\n"
                                     "    cert: certs/server.pem\n"
                                     "    key: /etc/keys/server.key\n"
                                     "storage:\n"
                                     "  data_dir: data\n"
                                     "plugins:\n"
                                     "  dir: ../plugins\n"
                                     "policies:\n"
                                     "  dir: ./policies\n";

/*
 * Relative paths in a file resolve against the file's directory, so the file
 * means the same wherever the daemon starts (issue 10, defect 3). Absolute
 * and empty ones stay; a file named without a directory is in the working
 * directory, where its relative paths already point.
 */
static void test_relative_paths(void **state)
{
    (void)state;
    char dir[] = "/tmp/rd_test_config_dir_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    write_in(dir, "r.yaml", relative_paths, path, sizeof(path));
    struct rd_config c;
    char err[RD_CFG_ERRLEN], want[256];
    rd_config_defaults(&c);
    if (rd_config_load_file(&c, path, err) != 0)
        fail_msg("%s: %s", path, err);
    snprintf(want, sizeof(want), "%s/certs/server.pem", dir);
    assert_string_equal(c.server.tls_cert, want);
    assert_string_equal(c.server.tls_key, "/etc/keys/server.key");
    snprintf(want, sizeof(want), "%s/data", dir);
    assert_string_equal(c.storage.data_dir, want);
    snprintf(want, sizeof(want), "%s/../plugins", dir);
    assert_string_equal(c.plugins.dir, want);
    snprintf(want, sizeof(want), "%s/./policies", dir);
    assert_string_equal(c.policies.dir, want);

    /* Empty stays empty (no TLS), whatever the directory. */
    write_in(dir, "e.yaml", "server:\n  tls:\n    cert: \"\"\n    key:\n", path, sizeof(path));
    rd_config_defaults(&c);
    assert_int_equal(rd_config_load_file(&c, path, err), 0);
    assert_string_equal(c.server.tls_cert, "");
    assert_string_equal(c.server.tls_key, "");

    /* A file in the working directory: the paths are left as written. */
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    rd_config_defaults(&c);
    int rc = rd_config_load_file(&c, "r.yaml", err);
    assert_int_equal(chdir(cwd), 0);
    if (rc != 0)
        fail_msg("r.yaml: %s", err);
    assert_string_equal(c.storage.data_dir, "data");
    assert_string_equal(c.plugins.dir, "../plugins");
    assert_string_equal(c.server.tls_cert, "certs/server.pem");

    /* A directory that ends in '/' is joined without doubling it. */
    snprintf(path, sizeof(path), "%s//r.yaml", dir);
    rd_config_defaults(&c);
    assert_int_equal(rd_config_load_file(&c, path, err), 0);
    snprintf(want, sizeof(want), "%s/data", dir);
    assert_string_equal(c.storage.data_dir, want);

    /* Too long once resolved: an error naming the key, the directory and the length. */
    char yaml[400], value[240];
    memset(value, 'p', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    snprintf(yaml, sizeof(yaml), "# a long relative path\npolicies:\n  dir: %s\n", value);
    write_in(dir, "long.yaml", yaml, path, sizeof(path));
    rd_config_defaults(&c);
    assert_int_equal(rd_config_load_file(&c, path, err), RD_ECONFIG);
    snprintf(want, sizeof(want),
             "%s:3: policies.dir: expected a path of at most 255 bytes once "
             "resolved against the config file's directory %s, got 'pppp",
             path, dir);
    check_prefix(err, want);
    snprintf(want, sizeof(want), "(%zu bytes resolved)", strlen(dir) + 1 + strlen(value));
    check_contains(err, want);

    /* From a buffer there is no file directory: kept as written. */
    assert_int_equal(load(&c, relative_paths, err), 0);
    assert_string_equal(c.storage.data_dir, "data");
    assert_string_equal(c.policies.dir, "./policies");
    assert_string_equal(c.server.tls_cert, "certs/server.pem");

    static const char *const names[] = {"r.yaml", "e.yaml", "long.yaml"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    assert_int_equal(rmdir(dir), 0);
}

/* The line that set each path and address, and the text errors quote. */
static void test_origins(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN], buf[RD_CFG_ERRLEN];
    rd_config_defaults(&c);
    for (int i = 0; i < RD_CFG_N_SETTINGS; i++)
        assert_int_equal(c.origin[i], 0);
    assert_string_equal(
        rd_config_origin(&c, RD_CFG_POLICIES_DIR, buf, sizeof(buf)),
        "the built-in default of policies.dir; set it in the config file or with --policies-dir");
    assert_string_equal(rd_config_origin(&c, RD_CFG_TLS_CERT, buf, sizeof(buf)),
                        "the built-in default of server.tls.cert");

    assert_int_equal(load(&c,
                          "server:\n"                        /* 1 */
                          "  listen: 127.0.0.1:9000\n"       /* 2 */
                          "  tls:\n"                         /* 3 */
                          "    cert: c.pem\n"                /* 4 */
                          "    key: k.pem\n"                 /* 5 */
                          "cluster:\n"                       /* 6 */
                          "  raft_address: 127.0.0.1:9001\n" /* 7 */
                          "  peers:\n"                       /* 8 */
                          "    - {id: 1, address: 127.0.0.1:9001}\n"
                          "storage:\n"      /* 10 */
                          "  data_dir: d\n" /* 11 */
                          "plugins:\n"      /* 12 */
                          "  dir: p\n"      /* 13 */
                          "policies:\n"     /* 14 */
                          "  dir: q\n",     /* 15 */
                          err),
                     0);
    static const int lines[RD_CFG_N_SETTINGS] = {
        [RD_CFG_SERVER_LISTEN] = 2, [RD_CFG_TLS_CERT] = 4,     [RD_CFG_TLS_KEY] = 5,
        [RD_CFG_DATA_DIR] = 11,     [RD_CFG_RAFT_ADDRESS] = 7, [RD_CFG_PLUGINS_DIR] = 13,
        [RD_CFG_POLICIES_DIR] = 15,
    };
    for (int i = 0; i < RD_CFG_N_SETTINGS; i++)
        assert_int_equal(c.origin[i], lines[i]);
    assert_string_equal(rd_config_origin(&c, RD_CFG_RAFT_ADDRESS, buf, sizeof(buf)),
                        "set by cluster.raft_address at " NAME ":7; --raft-address overrides it");
    assert_string_equal(rd_config_origin(&c, RD_CFG_TLS_KEY, buf, sizeof(buf)),
                        "set by server.tls.key at " NAME ":5");
    c.origin[RD_CFG_SERVER_LISTEN] = RD_CFG_FROM_FLAG;
    assert_string_equal(rd_config_origin(&c, RD_CFG_SERVER_LISTEN, buf, sizeof(buf)),
                        "set by --listen, which overrides server.listen");
    c.origin[RD_CFG_DATA_DIR] = RD_CFG_FROM_FLAG;
    assert_string_equal(rd_config_origin(&c, RD_CFG_DATA_DIR, buf, sizeof(buf)),
                        "set by --data-dir, which overrides storage.data_dir");
    /* Cut at the buffer's size, never past it. */
    char small[12];
    memset(small, 'x', sizeof(small));
    rd_config_origin(&c, RD_CFG_DATA_DIR, small, 8);
    assert_string_equal(small, "set by ");
    assert_int_equal(small[8], 'x');
}

/* ---- plugins.instances -------------------------------------------------- */

static void test_plugins_good(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    const char *yaml = "plugins:\n"                                                /* 1 */
                       "  dir: /usr/lib/recoveryd\n"                               /* 2 */
                       "  instances:\n"                                            /* 3 */
                       "    - name: heartbeat\n"                                   /* 4 */
                       "      required: true\n"                                    /* 5 */
                       "      config:\n"                                           /* 6 */
                       "        suspect_phi: 5\n"                                  /* 7 */
                       "        failure_phi: 12.5\n"                               /* 8 */
                       "        window: 30s\n"                                     /* 9 */
                       "        strict: yes\n"                                     /* 10 */
                       "    - name: ops-webhook\n"                                 /* 11 */
                       "      plugin: webhook\n"                                   /* 12 */
                       "      required: no\n"                                      /* 13 */
                       "      config:\n"                                           /* 14 */
                       "        url: http://127.0.0.1:9093/api/v1/alerts\n"        /* 15 */
                       "        token: \"\"\n"                                     /* 16 */
                       "        header_x: 'a: b # not a comment'\n"                /* 17 */
                       "        long_text:\n"                                      /* 18 */
                       "          on the next line\n"                              /* 19 */
                       "    - {name: log_2, plugin: log, config: {level: warn}}\n" /* 20 */
                       "    - name: bare\n"                                        /* 21 */
                       "      config:\n";                                          /* 22 */
    int rc = load(&c, yaml, err);
    if (rc != 0)
        fail_msg("%d %s", rc, err);
    assert_string_equal(c.plugins.dir, "/usr/lib/recoveryd");
    assert_int_equal(c.plugins.n_instances, 4);

    const struct rd_cfg_plugin *p = &c.plugins.instances[0];
    assert_string_equal(p->name, "heartbeat");
    assert_string_equal(p->plugin, "heartbeat"); /* defaults to the name */
    assert_true(p->required);
    assert_int_equal(p->line, 4);
    assert_int_equal(p->n_config, 4);
    /* Values stay text, in file order, each with its line. */
    static const struct {
        const char *key, *value;
        int line;
    } hb[] = {{"suspect_phi", "5", 7},
              {"failure_phi", "12.5", 8},
              {"window", "30s", 9},
              {"strict", "yes", 10}};
    for (unsigned i = 0; i < 4; i++) {
        assert_string_equal(p->config[i].key, hb[i].key);
        assert_string_equal(p->config[i].value, hb[i].value);
        assert_int_equal(p->config[i].line, hb[i].line);
        assert_ptr_equal(rd_config_plugin_value(p, hb[i].key), &p->config[i]);
    }
    assert_null(rd_config_plugin_value(p, "url"));
    assert_null(rd_config_plugin_value(p, "suspect"));
    assert_null(rd_config_plugin_value(p, ""));
    assert_null(rd_config_plugin_value(p, NULL));
    assert_null(rd_config_plugin_value(NULL, "suspect_phi"));

    p = &c.plugins.instances[1];
    assert_string_equal(p->name, "ops-webhook");
    assert_string_equal(p->plugin, "webhook");
    assert_false(p->required);
    assert_int_equal(p->line, 11);
    assert_int_equal(p->n_config, 4);
    const struct rd_cfg_kv *kv = rd_config_plugin_value(p, "url");
    assert_non_null(kv);
    assert_string_equal(kv->value, "http://127.0.0.1:9093/api/v1/alerts");
    assert_int_equal(kv->line, 15);
    kv = rd_config_plugin_value(p, "token");
    assert_non_null(kv); /* a quoted empty string is a value, not null */
    assert_string_equal(kv->value, "");
    assert_int_equal(kv->line, 16);
    kv = rd_config_plugin_value(p, "header_x");
    assert_non_null(kv);
    assert_string_equal(kv->value, "a: b # not a comment");
    kv = rd_config_plugin_value(p, "long_text");
    assert_non_null(kv);
    assert_string_equal(kv->value, "on the next line");
    assert_int_equal(kv->line, 19); /* the value's line, not the key's */

    p = &c.plugins.instances[2];
    assert_string_equal(p->name, "log_2");
    assert_string_equal(p->plugin, "log");
    assert_false(p->required);
    assert_int_equal(p->line, 20);
    assert_int_equal(p->n_config, 1);
    assert_string_equal(rd_config_plugin_value(p, "level")->value, "warn");
    assert_int_equal(rd_config_plugin_value(p, "level")->line, 20);

    p = &c.plugins.instances[3];
    assert_string_equal(p->name, "bare");
    assert_string_equal(p->plugin, "bare");
    assert_false(p->required);
    assert_int_equal(p->line, 21);
    assert_int_equal(p->n_config, 0);
    /* Entries past the list are empty. */
    assert_string_equal(c.plugins.instances[4].name, "");
    assert_int_equal(rd_config_validate(&c, err), 0);

    /* A later file's list replaces the earlier one, it is not merged. */
    const char *second = "plugins:\n  instances:\n    - name: metrics\n";
    assert_int_equal(rd_config_load_string(&c, "second.yaml", second, strlen(second), err), 0);
    assert_int_equal(c.plugins.n_instances, 1);
    assert_string_equal(c.plugins.instances[0].name, "metrics");
    assert_int_equal(c.plugins.instances[0].n_config, 0);
    assert_false(c.plugins.instances[0].required);
    assert_int_equal(c.plugins.instances[0].line, 3);
    assert_string_equal(c.plugins.instances[1].name, "");
    assert_string_equal(c.plugins.dir, "/usr/lib/recoveryd"); /* the rest stays */
    /* A file without `instances` keeps the list it had. */
    assert_int_equal(rd_config_load_string(&c, "third.yaml", "plugins: {dir: x}", 17, err), 0);
    assert_int_equal(c.plugins.n_instances, 1);
    assert_string_equal(c.plugins.instances[0].name, "metrics");

    /* Defaults stand when the file has no instances. */
    assert_int_equal(load(&c, "plugins:\n  dir: elsewhere\n", err), 0);
    check_default_instances(&c);
    assert_int_equal(load(&c, "plugins:\n", err), 0);
    check_default_instances(&c);
    /* `instances: []` (or nothing after `instances:`) means no plugins at all. */
    assert_int_equal(load(&c, "plugins:\n  instances: []\n", err), 0);
    assert_int_equal(c.plugins.n_instances, 0);
    assert_string_equal(c.plugins.instances[0].name, "");
    assert_int_equal(rd_config_validate(&c, err), 0);
    assert_int_equal(load(&c, "plugins:\n  instances:\n", err), 0);
    assert_int_equal(c.plugins.n_instances, 0);
    /* `config: {}` and `config: ~` are no config. */
    assert_int_equal(load(&c,
                          "plugins:\n  instances:\n    - {name: a, config: {}}\n"
                          "    - {name: b, config: ~}\n",
                          err),
                     0);
    assert_int_equal(c.plugins.n_instances, 2);
    assert_int_equal(c.plugins.instances[0].n_config, 0);
    assert_int_equal(c.plugins.instances[1].n_config, 0);
}

static void test_plugins_limits(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    static char yaml[16384];
    char item[512];

    /* 16 instances fit; the 17th is named on its own line. */
    strcpy(yaml, "plugins:\n  instances:\n");
    for (int i = 0; i < RD_CFG_MAX_PLUGINS + 1; i++) {
        snprintf(item, sizeof(item), "    - name: p%d\n", i);
        strcat(yaml, item);
    }
    expect_exact_error(yaml, NAME ":19: plugins.instances: expected at most 16 instances, got 17");
    yaml[strlen(yaml) - strlen("    - name: p16\n")] = '\0';
    assert_int_equal(load(&c, yaml, err), 0);
    assert_int_equal(c.plugins.n_instances, 16);
    assert_string_equal(c.plugins.instances[15].name, "p15");
    assert_int_equal(c.plugins.instances[15].line, 18);
    assert_int_equal(rd_config_validate(&c, err), 0);

    /* 32 config keys fit; the 33rd is named by the mapping, on its line. */
    strcpy(yaml, "plugins:\n  instances:\n    - name: many\n      config:\n");
    for (int i = 0; i < RD_CFG_MAX_PLUGIN_KEYS + 1; i++) {
        snprintf(item, sizeof(item), "        k%d: v%d\n", i, i);
        strcat(yaml, item);
    }
    expect_exact_error(yaml, NAME ":37: plugins.instances[0].config: expected at most 32 keys, "
                                  "got 33");
    yaml[strlen(yaml) - strlen("        k32: v32\n")] = '\0';
    assert_int_equal(load(&c, yaml, err), 0);
    assert_int_equal(c.plugins.instances[0].n_config, 32);
    assert_string_equal(rd_config_plugin_value(&c.plugins.instances[0], "k31")->value, "v31");
    assert_int_equal(rd_config_plugin_value(&c.plugins.instances[0], "k31")->line, 36);

    /* Longest name, plugin, key (63) and value (255) fit. */
    char name63[64], key63[64], value255[256];
    memset(name63, 'n', 63);
    name63[63] = '\0';
    memset(key63, 'k', 63);
    key63[63] = '\0';
    memset(value255, 'v', 255);
    value255[255] = '\0';
    snprintf(yaml, sizeof(yaml),
             "plugins:\n  instances:\n    - name: %s\n      plugin: %s\n      config:\n"
             "        %s: %s\n",
             name63, name63, key63, value255);
    assert_int_equal(load(&c, yaml, err), 0);
    assert_string_equal(c.plugins.instances[0].name, name63);
    assert_string_equal(c.plugins.instances[0].plugin, name63);
    assert_string_equal(c.plugins.instances[0].config[0].key, key63);
    assert_string_equal(c.plugins.instances[0].config[0].value, value255);
    assert_int_equal(rd_config_validate(&c, err), 0);
    /* Every character of the two charsets. */
    assert_int_equal(load(&c,
                          "plugins:\n  instances:\n"
                          "    - name: abcdefghijklmnopqrstuvwxyz0123456789_-\n"
                          "      config: {abcdefghijklmnopqrstuvwxyz_0123456789: 1}\n",
                          err),
                     0);
}

static void test_error_plugins(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    char yaml[2048];
    char long_text[300];

    /* The list itself. */
    expect_exact_error("plugins:\n  instances: heartbeat\n",
                       NAME ":2: plugins.instances: expected a sequence of up to 16 mappings with "
                            "keys name, plugin, required, config, got 'heartbeat'");
    expect_error("plugins:\n  instances: {name: heartbeat}\n", 2, "plugins.instances", "a mapping");
    expect_exact_error("plugins:\n  instances:\n    - heartbeat\n",
                       NAME ":3: plugins.instances[0]: expected a mapping with keys name, plugin, "
                            "required, config, got 'heartbeat'");
    expect_error("plugins:\n  instances:\n    - name: a\n    - [b]\n", 4, "plugins.instances[1]",
                 "a sequence");

    /* Keys of an instance. */
    expect_exact_error("plugins:\n  instances:\n    - name: a\n    - plugin: webhook\n"
                       "      required: true\n",
                       NAME ":4: plugins.instances[1]: missing key 'name' (expected keys: name, "
                            "plugin, required, config)");
    expect_exact_error("plugins:\n  instances:\n    - name: a\n      nmae: b\n",
                       NAME ":4: plugins.instances[0].nmae: unknown key (expected one of: name, "
                            "plugin, required, config)");
    expect_exact_error("plugins:\n  instances:\n    - name: a\n      name: b\n",
                       NAME ":4: plugins.instances[0].name: duplicate key (first given at line 3)");
    expect_error("plugins:\n  instances:\n    - name: a\n      Config: {}\n", 4,
                 "plugins.instances[0].Config", NULL);

    /* name and plugin: [a-z0-9_-]{1,63}. */
    expect_exact_error("plugins:\n  instances:\n    - name: Heart Beat\n",
                       NAME ":3: plugins.instances[0].name: expected 1-63 characters of a-z 0-9 _ "
                            "-, got 'Heart Beat'");
    static const char *const bad_names[] = {"Heartbeat", "heart.beat", "a/b", "../x",  "\"\"",
                                            "''",        "\"a b\"",    "é",   "x\\ty", "\"a\\0b\""};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        snprintf(yaml, sizeof(yaml), "plugins:\n  instances:\n    - name: ok\n    - name: %s\n",
                 bad_names[i]);
        expect_error(yaml, 4, "plugins.instances[1].name", NULL);
        snprintf(yaml, sizeof(yaml), "plugins:\n  instances:\n    - name: ok\n      plugin: %s\n",
                 bad_names[i]);
        expect_error(yaml, 4, "plugins.instances[0].plugin", NULL);
    }
    expect_error("plugins:\n  instances:\n    - name:\n", 3, "plugins.instances[0].name", "''");
    expect_error("plugins:\n  instances:\n    - name: ~\n", 3, "plugins.instances[0].name", "'~'");
    expect_error("plugins:\n  instances:\n    - name: [a]\n", 3, "plugins.instances[0].name",
                 "a sequence");
    expect_error("plugins:\n  instances:\n    - name: a\n      plugin: ../../tmp/evil\n", 4,
                 "plugins.instances[0].plugin", "'../../tmp/evil'");
    expect_error("plugins:\n  instances:\n    - name: a\n      plugin:\n", 4,
                 "plugins.instances[0].plugin", "''");
    memset(long_text, 'n', 64);
    long_text[64] = '\0';
    snprintf(yaml, sizeof(yaml), "plugins:\n  instances:\n    - name: %s\n", long_text);
    expect_error(yaml, 3, "plugins.instances[0].name", NULL);
    assert_int_equal(load(&c, yaml, err), RD_ECONFIG);
    check_contains(err, "expected 1-63 characters");
    check_contains(err, long_text);
    snprintf(yaml, sizeof(yaml), "plugins:\n  instances:\n    - name: a\n      plugin: %s\n",
             long_text);
    expect_error(yaml, 4, "plugins.instances[0].plugin", NULL);

    /* required is a bool. */
    expect_exact_error("plugins:\n  instances:\n    - name: a\n      required: maybe\n",
                       NAME ":4: plugins.instances[0].required: expected true or false (or "
                            "yes/no, on/off), got 'maybe'");

    /* Duplicate instance names: both lines are named. */
    expect_exact_error("plugins:\n"
                       "  instances:\n"
                       "    - name: heartbeat\n"
                       "    - name: log\n"
                       "    - plugin: heartbeat\n"
                       "      name: heartbeat\n",
                       NAME ":6: plugins.instances[2].name: expected a name no other instance "
                            "has, got 'heartbeat' (also plugins.instances[0].name at line 3)");
    expect_exact_error("plugins:\n  instances:\n    - {name: a, plugin: x}\n"
                       "    - {name: b, plugin: x}\n    - {name: b, plugin: y}\n",
                       NAME ":5: plugins.instances[2].name: expected a name no other instance "
                            "has, got 'b' (also plugins.instances[1].name at line 4)");

    /* config: a mapping. */
    expect_exact_error("plugins:\n  instances:\n    - name: a\n      config: url\n",
                       NAME ":4: plugins.instances[0].config: expected a mapping of up to 32 keys "
                            "(1-63 characters of a-z 0-9 _) to scalar values, got 'url'");
    expect_error("plugins:\n  instances:\n    - name: a\n      config: [url, x]\n", 4,
                 "plugins.instances[0].config", "a sequence");

    /* config values: scalars, not null. */
    expect_exact_error("plugins:\n"
                       "  instances:\n"
                       "    - name: a\n"
                       "    - name: ops-webhook\n"
                       "      config:\n"
                       "        url:\n"
                       "          host: 127.0.0.1\n",
                       NAME ":7: plugins.instances[1].config.url: expected a scalar value (quote "
                            "\"\" for an empty string), got a mapping");
    expect_error("plugins:\n  instances:\n    - name: a\n      config:\n        urls: [a, b]\n", 5,
                 "plugins.instances[0].config.urls", "a sequence");
    expect_exact_error("plugins:\n  instances:\n    - name: a\n      config:\n        url:\n"
                       "        x: 1\n",
                       NAME ":5: plugins.instances[0].config.url: expected a scalar value (quote "
                            "\"\" for an empty string), got '' (null)");
    expect_error("plugins:\n  instances:\n    - name: a\n      config:\n        url: ~\n", 5,
                 "plugins.instances[0].config.url", "'~' (null)");
    expect_error("plugins:\n  instances:\n    - name: a\n      config: {x: 1, url: null}\n", 4,
                 "plugins.instances[0].config.url", "'null' (null)");
    expect_error("plugins:\n  instances:\n    - name: a\n      config:\n        url: \"a\\0b\"\n",
                 5, "plugins.instances[0].config.url", "'a\\x00b' (it contains a NUL byte)");
    memset(long_text, 'v', 256);
    long_text[256] = '\0';
    snprintf(yaml, sizeof(yaml),
             "plugins:\n  instances:\n    - name: a\n      config:\n"
             "        url: %s\n",
             long_text);
    expect_error(yaml, 5, "plugins.instances[0].config.url", NULL);
    assert_int_equal(load(&c, yaml, err), RD_ECONFIG);
    check_contains(err, "expected a value of at most 255 bytes, got 'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
                        "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv...' (256 bytes)");

    /* config keys: [a-z0-9_]{1,63}, unique. */
    expect_exact_error("plugins:\n  instances:\n    - name: a\n      config:\n        URL: x\n",
                       NAME ":5: plugins.instances[0].config.URL: expected a key of 1-63 "
                            "characters of a-z 0-9 _, got 'URL'");
    static const char *const bad_keys[] = {"bad-key", "a.b", "\"\"", "\"a b\"", "\"a\\0b\""};
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        snprintf(yaml, sizeof(yaml),
                 "plugins:\n  instances:\n    - name: a\n      config:\n        ok: 1\n"
                 "        %s: x\n",
                 bad_keys[i]);
        expect_error(yaml, 6, NULL, NULL);
        assert_int_equal(load(&c, yaml, err), RD_ECONFIG);
        check_contains(err, "plugins.instances[0].config.");
        check_contains(err, "expected a key of 1-63 characters of a-z 0-9 _, got '");
    }
    memset(long_text, 'k', 64);
    long_text[64] = '\0';
    snprintf(yaml, sizeof(yaml),
             "plugins:\n  instances:\n    - name: a\n      config:\n"
             "        %s: x\n",
             long_text);
    expect_error(yaml, 5, NULL, NULL);
    assert_int_equal(load(&c, yaml, err), RD_ECONFIG);
    check_contains(err, "plugins.instances[0].config.kkkk");
    check_contains(err, "expected a key of 1-63 characters of a-z 0-9 _");
    expect_exact_error("plugins:\n  instances:\n    - name: a\n      config:\n        ? [a]\n"
                       "        : x\n",
                       NAME ":5: plugins.instances[0].config: expected a key name, got a sequence");
    expect_exact_error("plugins:\n  instances:\n    - name: a\n      config:\n        url: x\n"
                       "        port: 1\n        url: y\n",
                       NAME ":7: plugins.instances[0].config.url: duplicate key (first given at "
                            "line 5)");

    /* A failed load does not leave a half-read list that validates. */
    assert_int_equal(load(&c, "plugins:\n  instances:\n    - name: a\n    - name: B\n", err),
                     RD_ECONFIG);
    assert_int_equal(c.plugins.n_instances, 1);
}

/* ---- flapping and partition keys ---------------------------------------- */

static void test_flap_and_partition(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    const char *yaml = "fault_tolerance:\n"
                       "  detection:\n"
                       "    flap_window: 5m\n"
                       "    flap_threshold: 16\n"
                       "    flap_penalty: 100\n"
                       "  partition:\n"
                       "    mass_failure_share: 100%\n"
                       "    mass_failure_window: 250ms\n"
                       "    min_nodes: 1000000\n"
                       "    alert_after: 0ms\n";
    int rc = load(&c, yaml, err);
    if (rc != 0)
        fail_msg("%d %s", rc, err);
    assert_int_equal(c.fault_tolerance.detection.flap_window_ms, 300000);
    assert_int_equal(c.fault_tolerance.detection.flap_threshold, 16);
    assert_int_equal(c.fault_tolerance.detection.flap_penalty, 100);
    assert_int_equal(c.fault_tolerance.partition.mass_failure_share, 100);
    assert_int_equal(c.fault_tolerance.partition.mass_failure_window_ms, 250);
    assert_int_equal(c.fault_tolerance.partition.min_nodes, 1000000);
    /* 0ms: alert as soon as a partition is seen. */
    assert_int_equal(c.fault_tolerance.partition.alert_after_ms, 0);
    /* The rest of the block keeps its defaults. */
    assert_int_equal(c.fault_tolerance.detection.heartbeat_interval_ms, 500);
    assert_int_equal(c.fault_tolerance.detection.recovery_threshold, 2);
    assert_int_equal(rd_config_validate(&c, err), 0);

    assert_int_equal(load(&c,
                          "fault_tolerance:\n  detection: {flap_threshold: 1, flap_penalty: 1}\n"
                          "  partition: {mass_failure_share: 1%, min_nodes: 1}\n",
                          err),
                     0);
    assert_int_equal(c.fault_tolerance.detection.flap_threshold, 1);
    assert_int_equal(c.fault_tolerance.detection.flap_penalty, 1);
    assert_int_equal(c.fault_tolerance.partition.mass_failure_share, 1);
    assert_int_equal(c.fault_tolerance.partition.min_nodes, 1);
    /* An empty partition section keeps the defaults. */
    assert_int_equal(load(&c, "fault_tolerance:\n  partition:\n", err), 0);
    assert_int_equal(c.fault_tolerance.partition.min_nodes, 4);
    /* The CAP setting: consistency and keep_progress unless told. */
    assert_int_equal(c.fault_tolerance.partition.mode, RD_PARTITION_CONSISTENCY);
    assert_int_equal(c.fault_tolerance.partition.on_conflict, RD_CFG_KEEP_PROGRESS);
    assert_int_equal(
        load(&c, "fault_tolerance:\n  partition: {mode: availability, on_conflict: fail_task}\n",
             err),
        0);
    assert_int_equal(c.fault_tolerance.partition.mode, RD_PARTITION_AVAILABILITY);
    assert_int_equal(c.fault_tolerance.partition.on_conflict, RD_CFG_FAIL_TASK);
    assert_string_equal(rd_partition_mode_name(c.fault_tolerance.partition.mode), "availability");
    assert_int_equal(
        load(&c, "fault_tolerance:\n  partition: {mode: consistency, on_conflict: keep_newer}\n",
             err),
        0);
    assert_int_equal(c.fault_tolerance.partition.mode, RD_PARTITION_CONSISTENCY);
    assert_int_equal(c.fault_tolerance.partition.on_conflict, RD_CFG_KEEP_NEWER);

    /* Poison tasks. */
    assert_int_equal(load(&c, "fault_tolerance:\n  poison: {max_failures: 16, window: 30s}\n", err),
                     0);
    assert_int_equal(c.fault_tolerance.poison.max_failures, 16);
    assert_int_equal(c.fault_tolerance.poison.window_ms, 30000);
    assert_int_equal(rd_config_validate(&c, err), 0);
    expect_error("fault_tolerance:\n  poison:\n    max_failures: 17\n", 3,
                 "fault_tolerance.poison.max_failures", "'17'");
    expect_error("fault_tolerance:\n  poison:\n    max_failures: 0\n", 3,
                 "fault_tolerance.poison.max_failures", "'0'");
    assert_int_equal(load(&c, "fault_tolerance:\n  poison: {window: 0ms}\n", err), 0);
    assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
    assert_string_equal(err,
                        "fault_tolerance.poison.window: expected a duration above 0, got '0ms'");

    /* Finished tasks' retention (issue 17). */
    assert_int_equal(load(&c, "fault_tolerance:\n  tasks: {retention: 90s}\n", err), 0);
    assert_int_equal(c.fault_tolerance.tasks.retention_ms, 90000);
    assert_int_equal(rd_config_validate(&c, err), 0);
    assert_int_equal(load(&c, "fault_tolerance:\n  tasks: {retention: 500ms}\n", err), 0);
    assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
    assert_string_equal(err, "fault_tolerance.tasks.retention: expected a duration from 1s to "
                             "3650d, got '500ms'");
    expect_error("fault_tolerance:\n  tasks:\n    retention: forever\n", 3,
                 "fault_tolerance.tasks.retention", "'forever'");

    /* Predicted faults and rebalancing: defaults, values, refusals. */
    assert_int_equal(load(&c, "", err), 0);
    assert_int_equal(c.fault_tolerance.prediction.drains_per_minute, 2);
    assert_int_equal(c.fault_tolerance.prediction.min_healthy_capacity, 50);
    assert_true(c.fault_tolerance.rebalance.enabled);
    assert_int_equal(c.fault_tolerance.rebalance.skew_threshold, 20);
    assert_int_equal(c.fault_tolerance.rebalance.cpu_threshold, 0);
    assert_int_equal(c.fault_tolerance.rebalance.moves_per_minute, 60);
    assert_int_equal(c.fault_tolerance.rebalance.cooldown_ms, 300000);
    assert_int_equal(c.fault_tolerance.rebalance.checkpoint_wait_ms, 30000);
    assert_int_equal(c.fault_tolerance.rebalance.settle_ms, 2000);
    assert_int_equal(load(&c,
                          "fault_tolerance:\n  prediction: {drains_per_minute: 0, "
                          "min_healthy_capacity: 75%}\n  rebalance: {enabled: false, "
                          "skew_threshold: 10%, cpu_threshold: 30%, moves_per_minute: 600, "
                          "cooldown: 1m, checkpoint_wait: 5s, settle: 0s}\n",
                          err),
                     0);
    assert_int_equal(rd_config_validate(&c, err), 0);
    assert_int_equal(c.fault_tolerance.prediction.drains_per_minute, 0);
    assert_int_equal(c.fault_tolerance.prediction.min_healthy_capacity, 75);
    assert_false(c.fault_tolerance.rebalance.enabled);
    assert_int_equal(c.fault_tolerance.rebalance.skew_threshold, 10);
    assert_int_equal(c.fault_tolerance.rebalance.cpu_threshold, 30);
    assert_int_equal(c.fault_tolerance.rebalance.moves_per_minute, 600);
    assert_int_equal(c.fault_tolerance.rebalance.cooldown_ms, 60000);
    assert_int_equal(c.fault_tolerance.rebalance.checkpoint_wait_ms, 5000);
    assert_int_equal(c.fault_tolerance.rebalance.settle_ms, 0);
    assert_int_equal(load(&c, "fault_tolerance:\n  rebalance: {settle: 11m}\n", err), 0);
    assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
    assert_string_equal(err, "fault_tolerance.rebalance.settle: expected a duration from 0s to "
                             "10m, got '11m'");
    expect_error("fault_tolerance:\n  prediction:\n    drains_per_minute: 1001\n", 3,
                 "fault_tolerance.prediction.drains_per_minute", "'1001'");
    expect_error("fault_tolerance:\n  prediction:\n    min_healthy_capacity: 101%\n", 3,
                 "fault_tolerance.prediction.min_healthy_capacity", "'101%'");
    expect_error("fault_tolerance:\n  rebalance:\n    skew_threshold: 0%\n", 3,
                 "fault_tolerance.rebalance.skew_threshold", "'0%'");
    expect_error("fault_tolerance:\n  rebalance:\n    cpu_threshold: 20\n", 3,
                 "fault_tolerance.rebalance.cpu_threshold", "'20'");
    expect_error("fault_tolerance:\n  rebalance:\n    moves_per_minute: 0\n", 3,
                 "fault_tolerance.rebalance.moves_per_minute", "'0'");
    expect_error("fault_tolerance:\n  rebalance:\n    enabled: maybe\n", 3,
                 "fault_tolerance.rebalance.enabled", "'maybe'");
    assert_int_equal(load(&c, "fault_tolerance:\n  rebalance: {cooldown: 500ms}\n", err), 0);
    assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
    assert_string_equal(err, "fault_tolerance.rebalance.cooldown: expected a duration from 1s to "
                             "1d (a task moved is not moved again within it), got '500ms'");
    assert_int_equal(load(&c, "fault_tolerance:\n  rebalance: {checkpoint_wait: 0ms}\n", err), 0);
    assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
    assert_string_equal(err, "fault_tolerance.rebalance.checkpoint_wait: expected a duration from "
                             "100ms to 1h, got '0ms'");

    /* Errors: file, line, key, value. */
    expect_exact_error("fault_tolerance:\n  detection:\n    flap_window: often\n",
                       NAME ":3: fault_tolerance.detection.flap_window: expected a duration like "
                            "250ms, 10s, 2m, got 'often'");
    expect_exact_error("fault_tolerance:\n  detection:\n    flap_threshold: 0\n",
                       NAME ":3: fault_tolerance.detection.flap_threshold: expected an integer "
                            "from 1 to 16, got '0'");
    expect_error("fault_tolerance:\n  detection:\n    flap_threshold: 17\n", 3,
                 "fault_tolerance.detection.flap_threshold", "'17'");
    expect_exact_error("fault_tolerance:\n  detection:\n    flap_penalty: 101\n",
                       NAME ":3: fault_tolerance.detection.flap_penalty: expected an integer from "
                            "1 to 100, got '101'");
    expect_error("fault_tolerance:\n  detection:\n    flap_penalty: 0\n", 3,
                 "fault_tolerance.detection.flap_penalty", "'0'");
    expect_exact_error("fault_tolerance:\n  partition:\n    mass_failure_share: 0%\n",
                       NAME ":3: fault_tolerance.partition.mass_failure_share: expected a "
                            "percentage from 1% to 100%, got '0%'");
    expect_exact_error("fault_tolerance:\n  partition:\n    mode: available\n",
                       NAME ":3: fault_tolerance.partition.mode: expected consistency or "
                            "availability, got 'available'");
    expect_exact_error("fault_tolerance:\n  partition:\n    on_conflict: newest\n",
                       NAME ":3: fault_tolerance.partition.on_conflict: expected keep_newer, "
                            "keep_progress or fail_task, got 'newest'");
    expect_error("fault_tolerance:\n  partition:\n    mode: [consistency]\n", 3,
                 "fault_tolerance.partition.mode", "a sequence");
    static const char *const bad_share[] = {"101%", "50", "half", "-1%", "5.5%"};
    for (size_t i = 0; i < sizeof(bad_share) / sizeof(bad_share[0]); i++) {
        char text[128], got[32];
        snprintf(text, sizeof(text),
                 "fault_tolerance:\n  partition:\n\n    mass_failure_share: %s\n", bad_share[i]);
        snprintf(got, sizeof(got), "'%s'", bad_share[i]);
        expect_error(text, 4, "fault_tolerance.partition.mass_failure_share", got);
    }
    expect_exact_error("fault_tolerance:\n  backup:\n    cpu_share: 0%\n",
                       NAME ":3: fault_tolerance.backup.cpu_share: expected a percentage from 1% "
                            "to 100%, got '0%'");
    expect_error("fault_tolerance:\n  backup:\n    cpu_share: 10\n", 3,
                 "fault_tolerance.backup.cpu_share", "'10'");
    expect_exact_error("fault_tolerance:\n  partition:\n    mass_failure_window: 10\n",
                       NAME ":3: fault_tolerance.partition.mass_failure_window: expected a "
                            "duration like 250ms, 10s, 2m, got '10'");
    expect_exact_error("fault_tolerance:\n  partition:\n    min_nodes: 0\n",
                       NAME ":3: fault_tolerance.partition.min_nodes: expected an integer from 1 "
                            "to 1000000, got '0'");
    expect_error("fault_tolerance:\n  partition:\n    min_nodes: 1000001\n", 3,
                 "fault_tolerance.partition.min_nodes", "'1000001'");
    expect_exact_error("fault_tolerance:\n  partition:\n    alert_after: 5 m\n",
                       NAME ":3: fault_tolerance.partition.alert_after: expected a duration like "
                            "250ms, 10s, 2m, got '5 m'");
    expect_exact_error("fault_tolerance:\n  partition: 50%\n",
                       NAME ":2: fault_tolerance.partition: expected a mapping with keys "
                            "mass_failure_share, mass_failure_window, min_nodes, alert_after, "
                            "mode, on_conflict, got '50%'");

    /* Zero windows load (valid durations) but do not validate. */
    assert_int_equal(load(&c, "fault_tolerance:\n  detection:\n    flap_window: 0ms\n", err), 0);
    expect_valid_error(&c, "fault_tolerance.detection.flap_window: expected a duration above 0, "
                           "got '0ms'");
    assert_int_equal(load(&c, "fault_tolerance:\n  partition:\n    mass_failure_window: 0s\n", err),
                     0);
    expect_valid_error(&c, "fault_tolerance.partition.mass_failure_window: expected a duration "
                           "above 0, got '0ms'");
}

static void test_validate_new_keys(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];

    rd_config_defaults(&c);
    c.fault_tolerance.detection.flap_window_ms = 0;
    expect_valid_error(&c, "fault_tolerance.detection.flap_window: expected a duration above 0, "
                           "got '0ms'");
    rd_config_defaults(&c);
    c.fault_tolerance.detection.flap_threshold = 0;
    expect_valid_error(&c, "fault_tolerance.detection.flap_threshold: expected 1 to 16, got '0'");
    c.fault_tolerance.detection.flap_threshold = 17;
    expect_valid_error(&c, "fault_tolerance.detection.flap_threshold: expected 1 to 16, got "
                           "'17'");
    rd_config_defaults(&c);
    c.fault_tolerance.detection.flap_penalty = 0;
    expect_valid_error(&c, "fault_tolerance.detection.flap_penalty: expected 1 to 100, got '0'");
    c.fault_tolerance.detection.flap_penalty = 101;
    expect_valid_error(&c, "fault_tolerance.detection.flap_penalty: expected 1 to 100, got '101'");
    rd_config_defaults(&c);
    c.fault_tolerance.partition.mass_failure_share = 0;
    expect_valid_error(&c, "fault_tolerance.partition.mass_failure_share: expected 1% to 100%, "
                           "got '0%'");
    c.fault_tolerance.partition.mass_failure_share = 101;
    expect_valid_error(&c, "fault_tolerance.partition.mass_failure_share: expected 1% to 100%, "
                           "got '101%'");
    rd_config_defaults(&c);
    c.fault_tolerance.partition.mass_failure_window_ms = 0;
    expect_valid_error(&c, "fault_tolerance.partition.mass_failure_window: expected a duration "
                           "above 0, got '0ms'");
    rd_config_defaults(&c);
    c.fault_tolerance.partition.min_nodes = 0;
    expect_valid_error(&c, "fault_tolerance.partition.min_nodes: expected 1 to 1000000, got '0'");
    c.fault_tolerance.partition.min_nodes = 1000001;
    expect_valid_error(&c, "fault_tolerance.partition.min_nodes: expected 1 to 1000000, got "
                           "'1000001'");
    rd_config_defaults(&c);
    c.fault_tolerance.partition.alert_after_ms = 0;
    assert_int_equal(rd_config_validate(&c, err), 0);

    /* Instance lists built in code get the loader's rules. */
    rd_config_defaults(&c);
    c.plugins.n_instances = RD_CFG_MAX_PLUGINS + 1;
    expect_valid_error(&c, "plugins.instances: expected at most 16 instances, got 17");
    rd_config_defaults(&c);
    strcpy(c.plugins.instances[2].name, "Metrics");
    expect_valid_error(&c, "plugins.instances[2].name: expected 1-63 characters of a-z 0-9 _ -, "
                           "got 'Metrics'");
    c.plugins.instances[2].name[0] = '\0';
    expect_valid_error(&c, "plugins.instances[2].name: expected 1-63 characters of a-z 0-9 _ -, "
                           "got ''");
    memset(c.plugins.instances[2].name, 'n', sizeof(c.plugins.instances[2].name));
    assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG); /* no NUL: still reported */
    check_prefix(err, "plugins.instances[2].name: expected 1-63 characters");
    rd_config_defaults(&c);
    strcpy(c.plugins.instances[1].plugin, "../x");
    expect_valid_error(&c, "plugins.instances[1].plugin: expected 1-63 characters of a-z 0-9 _ -, "
                           "got '../x'");
    rd_config_defaults(&c);
    strcpy(c.plugins.instances[3].name, "heartbeat");
    expect_valid_error(&c, "plugins.instances[3].name: expected a name no other instance has, got "
                           "'heartbeat' (also plugins.instances[0].name)");
    rd_config_defaults(&c);
    c.plugins.instances[0].n_config = RD_CFG_MAX_PLUGIN_KEYS + 1;
    expect_valid_error(&c, "plugins.instances[0].config: expected at most 32 keys, got 33");
    /* rd_config_plugin_value never reads past the array, whatever the count says. */
    assert_null(rd_config_plugin_value(&c.plugins.instances[0], "x"));
}

/* ---- rd_config_validate ------------------------------------------------ */

static void test_validate(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];

    rd_config_defaults(&c);
    c.fault_tolerance.detection.failure_threshold = 0;
    expect_valid_error(&c, "fault_tolerance.detection.failure_threshold: expected at least 1, "
                           "got '0'");
    rd_config_defaults(&c);
    c.fault_tolerance.detection.recovery_threshold = 0;
    expect_valid_error(&c, "fault_tolerance.detection.recovery_threshold: expected at least 1, "
                           "got '0'");

    rd_config_defaults(&c);
    c.fault_tolerance.detection.heartbeat_interval_ms = 9;
    expect_valid_error(&c, "fault_tolerance.detection.heartbeat_interval: expected at least 10ms, "
                           "got '9ms'");
    c.fault_tolerance.detection.heartbeat_interval_ms = 10;
    assert_int_equal(rd_config_validate(&c, err), 0);

    rd_config_defaults(&c);
    c.storage.segment_size = (4 << 20) - 1;
    expect_valid_error(&c, "storage.segment_size: expected at least 4MiB (libraft refuses writes "
                           "with smaller segments), got '4194303'");
    c.storage.segment_size = 4 << 20;
    assert_int_equal(rd_config_validate(&c, err), 0);

    rd_config_defaults(&c);
    c.fault_tolerance.detection.health_check_timeout_ms = 0;
    expect_valid_error(&c, "fault_tolerance.detection.health_check_timeout: expected a duration "
                           "above 0, got '0ms'");

    rd_config_defaults(&c);
    c.cluster.heartbeat_timeout_ms = 300;
    expect_valid_error(&c, "cluster.heartbeat_timeout: expected less than "
                           "cluster.election_timeout (300ms), got '300ms'");
    c.cluster.heartbeat_timeout_ms = 2000;
    expect_valid_error(&c, "cluster.heartbeat_timeout: expected less than "
                           "cluster.election_timeout (300ms), got '2s'");
    c.cluster.heartbeat_timeout_ms = 299;
    assert_int_equal(rd_config_validate(&c, err), 0);
    c.cluster.heartbeat_timeout_ms = 0;
    expect_valid_error(&c, "cluster.heartbeat_timeout: expected a duration above 0, got '0ms'");

    rd_config_defaults(&c);
    c.cluster.group_commit_delay_ms = 101;
    expect_valid_error(&c, "cluster.group_commit_delay: expected 0ms to 100ms (a write waits at "
                           "most that long for others to share its raft entry), got '101ms'");
    c.cluster.group_commit_delay_ms = 100;
    assert_int_equal(rd_config_validate(&c, err), 0);
    c.cluster.group_commit_delay_ms = 0;
    assert_int_equal(rd_config_validate(&c, err), 0);

    rd_config_defaults(&c);
    c.storage.snapshot_threshold = 0;
    expect_valid_error(&c, "storage.snapshot_threshold: expected at least 1 entry, got '0'");

    rd_config_defaults(&c);
    c.storage.snapshot_threshold_bytes = 512 * 1024;
    expect_valid_error(&c, "storage.snapshot_threshold_bytes: expected 0 (entries only) or a size "
                           "from 1MiB to 64GiB, got '512KiB'");
    c.storage.snapshot_threshold_bytes = (64ULL << 30) + 1;
    expect_valid_error(&c, "storage.snapshot_threshold_bytes: expected 0 (entries only) or a size "
                           "from 1MiB to 64GiB, got '68719476737'");
    c.storage.snapshot_threshold_bytes = 0;
    assert_int_equal(rd_config_validate(&c, err), 0);
    c.storage.snapshot_threshold_bytes = 1 << 20;
    assert_int_equal(rd_config_validate(&c, err), 0);
    c.storage.snapshot_trailing_bytes = 65ULL << 30;
    expect_valid_error(&c, "storage.snapshot_trailing_bytes: expected a size up to 64GiB (0: the "
                           "entry count alone), got '65GiB'");
    c.storage.snapshot_trailing_bytes = 0;
    assert_int_equal(rd_config_validate(&c, err), 0);

    rd_config_defaults(&c);
    c.server.max_body_bytes = 1023;
    expect_valid_error(&c, "server.max_body: expected a size from 1KiB to 1GiB, got '1023'");
    c.server.max_body_bytes = 1024;
    assert_int_equal(rd_config_validate(&c, err), 0);
    c.server.max_body_bytes = (size_t)1 << 30;
    assert_int_equal(rd_config_validate(&c, err), 0);
    c.server.max_body_bytes = ((size_t)1 << 30) + 1;
    expect_valid_error(&c, "server.max_body: expected a size from 1KiB to 1GiB, got '1073741825'");
    c.server.max_body_bytes = (size_t)2 << 30;
    expect_valid_error(&c, "server.max_body: expected a size from 1KiB to 1GiB, got '2GiB'");

    rd_config_defaults(&c);
    c.server.listen_port = 0;
    expect_valid_error(&c, "server.listen: expected HOST:PORT with a port from 1 to 65535, got "
                           "'127.0.0.1:0'");
    rd_config_defaults(&c);
    strcpy(c.server.tls_cert, "cert.pem");
    expect_valid_error(&c, "server.tls.key: expected the key file for server.tls.cert "
                           "'cert.pem', got ''");
    strcpy(c.server.tls_key, "key.pem");
    assert_int_equal(rd_config_validate(&c, err), 0);
    c.server.tls_cert[0] = '\0';
    expect_valid_error(&c, "server.tls.cert: expected the certificate for server.tls.key "
                           "'key.pem', got ''");

    rd_config_defaults(&c);
    c.storage.data_dir[0] = '\0';
    expect_valid_error(&c, "storage.data_dir: expected a directory, got ''");
    rd_config_defaults(&c);
    c.storage.segment_size = 0;
    expect_valid_error(&c, "storage.segment_size: expected at least 4MiB (libraft refuses writes "
                           "with smaller segments), got '0'");

    rd_config_defaults(&c);
    strcpy(c.cluster.name, "prod eu");
    expect_valid_error(&c, "cluster.name: expected 1-255 characters of A-Z a-z 0-9 . _ : -, "
                           "got 'prod eu'");
    rd_config_defaults(&c);
    strcpy(c.cluster.node_id, "rd 1");
    expect_valid_error(&c, "cluster.node_id: expected 1-255 characters of A-Z a-z 0-9 . _ : -, "
                           "got 'rd 1'");
    c.cluster.node_id[0] = '\0';
    expect_valid_error(&c, "cluster.node_id: expected 1-255 characters of A-Z a-z 0-9 . _ : -, "
                           "got ''");
    rd_config_defaults(&c);
    c.cluster.replica_id = 0;
    expect_valid_error(&c, "cluster.replica_id: expected a raft server id above 0, got '0'");
    rd_config_defaults(&c);
    strcpy(c.cluster.raft_address, "127.0.0.1");
    expect_valid_error(&c, "cluster.raft_address: expected HOST:PORT like 127.0.0.1:7080, got "
                           "'127.0.0.1'");
    /* cluster.raft_bind: where the transport listens, else raft_address. */
    rd_config_defaults(&c);
    assert_string_equal(rd_config_raft_bind(&c), "127.0.0.1:7080");
    strcpy(c.cluster.raft_bind, "127.0.0.1:7090");
    assert_int_equal(rd_config_validate(&c, err), 0);
    assert_string_equal(rd_config_raft_bind(&c), "127.0.0.1:7090");
    strcpy(c.cluster.raft_bind, "10.0.0.1:7080");
    expect_valid_error(&c, "cluster.raft_bind: '10.0.0.1:7080' is not a loopback address and "
                           "cluster.tls is not set (as for cluster.raft_address: "
                           "docs/security.md)");
    c.cluster.tls.insecure_plaintext = true;
    assert_int_equal(rd_config_validate(&c, err), 0);
    rd_config_defaults(&c);
    c.cluster.max_inflight = 0;
    expect_valid_error(&c, "cluster.max_inflight: expected at least 1, got '0'");

    rd_config_defaults(&c);
    c.logging.level = (enum rd_log_level)7;
    expect_valid_error(&c, "logging.level: expected debug, info, warn or error, got '7'");

    rd_config_defaults(&c);
    c.fault_tolerance.recovery_strategies.fast_recovery.resource_limit = 101;
    expect_valid_error(&c, "fault_tolerance.recovery_strategies.fast_recovery.resource_limit: "
                           "expected 0% to 100%, got '101%'");
    rd_config_defaults(&c);
    c.fault_tolerance.recovery_strategies.degraded_service.performance_limit = 200;
    expect_valid_error(&c, "fault_tolerance.recovery_strategies.degraded_service."
                           "performance_limit: expected 0% to 100%, got '200%'");

    /* err may be NULL. */
    assert_int_equal(rd_config_validate(&c, NULL), RD_ECONFIG);
}

static void add_peer(struct rd_config *c, uint64_t id, const char *address)
{
    struct rd_cfg_peer *p = &c->cluster.peers[c->cluster.n_peers++];
    p->id = id;
    snprintf(p->address, sizeof(p->address), "%s", address);
}

static void test_validate_peers(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];

    rd_config_defaults(&c);
    c.cluster.replica_id = 4;
    add_peer(&c, 1, "10.0.0.1:7080");
    add_peer(&c, 2, "10.0.0.2:7080");
    add_peer(&c, 3, "10.0.0.3:7080");
    expect_valid_error(&c, "cluster.peers: no entry has this replica's id 4 (cluster.replica_id)");
    c.cluster.replica_id = 3;
    assert_int_equal(rd_config_validate(&c, err), 0);

    add_peer(&c, 2, "10.0.0.4:7080");
    expect_valid_error(&c, "cluster.peers[3].id: expected an id no other peer has, got '2' "
                           "(also cluster.peers[1].id)");
    c.cluster.peers[3].id = 0;
    expect_valid_error(&c, "cluster.peers[3].id: expected a raft server id above 0, got '0'");
    c.cluster.peers[3].id = 5;
    assert_int_equal(rd_config_validate(&c, err), 0);
    c.cluster.peers[1].address[0] = '\0';
    expect_valid_error(&c, "cluster.peers[1].address: expected HOST:PORT of peer 2's raft "
                           "endpoint, got ''");

    rd_config_defaults(&c);
    c.cluster.n_peers = RD_CFG_MAX_PEERS + 1;
    expect_valid_error(&c, "cluster.peers: expected at most 7 peers, got 8");

    /* The same rule from a file: loading succeeds, validation names the key. */
    assert_int_equal(load(&c,
                          "cluster:\n  replica_id: 4\n  peers:\n"
                          "    - {id: 1, address: 10.0.0.1:7080}\n"
                          "    - {id: 2, address: 10.0.0.2:7080}\n",
                          err),
                     0);
    expect_valid_error(&c, "cluster.peers: no entry has this replica's id 4 (cluster.replica_id)");
    assert_int_equal(load(&c,
                          "cluster:\n  peers:\n"
                          "    - {id: 1, address: 10.0.0.1:7080}\n"
                          "    - {id: 1, address: 10.0.0.2:7080}\n",
                          err),
                     0);
    expect_valid_error(&c, "cluster.peers[1].id: expected an id no other peer has, got '1' "
                           "(also cluster.peers[0].id)");
    assert_int_equal(load(&c, "cluster:\n  heartbeat_timeout: 300ms\n", err), 0);
    expect_valid_error(&c, "cluster.heartbeat_timeout: expected less than "
                           "cluster.election_timeout (300ms), got '300ms'");
    assert_int_equal(load(&c, "fault_tolerance:\n  detection:\n    heartbeat_interval: 5ms\n", err),
                     0);
    expect_valid_error(&c, "fault_tolerance.detection.heartbeat_interval: expected at least 10ms, "
                           "got '5ms'");
    assert_int_equal(load(&c, "server:\n  max_body: 2GiB\n", err), 0);
    expect_valid_error(&c, "server.max_body: expected a size from 1KiB to 1GiB, got '2GiB'");
}

/* cluster.tls: all three paths or none; plain TCP only on loopback unless
 * insecure_plaintext says so. */
static void test_validate_cluster_tls(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];

    rd_config_defaults(&c);
    assert_false(rd_config_cluster_tls(&c));
    assert_true(c.cluster.tls.check_replica_id);
    assert_false(c.cluster.tls.insecure_plaintext);
    const char *loopback[] = {"127.0.0.1:7080", "127.9.8.7:7080", "localhost:7080", "[::1]:7080"};
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        snprintf(c.cluster.raft_address, sizeof(c.cluster.raft_address), "%s", loopback[i]);
        assert_int_equal(rd_config_validate(&c, err), 0);
    }
    const char *other[] = {"0.0.0.0:7080", "10.0.0.2:7080", "128.0.0.1:7080",
                           "rd-0.recoveryd-raft:7080", "[::]:7080"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        snprintf(c.cluster.raft_address, sizeof(c.cluster.raft_address), "%s", other[i]);
        assert_int_equal(rd_config_validate(&c, err), RD_ECONFIG);
        char want[128];
        snprintf(want, sizeof(want), "cluster.raft_address: '%s' is not a loopback address",
                 other[i]);
        if (strstr(err, want) == NULL || strstr(err, "cluster.tls.insecure_plaintext") == NULL)
            fail_msg("%s: %s", other[i], err);
    }
    c.cluster.tls.insecure_plaintext = true;
    assert_int_equal(rd_config_validate(&c, err), 0);
    c.cluster.tls.insecure_plaintext = false;
    snprintf(c.cluster.tls.ca, sizeof(c.cluster.tls.ca), "ca.crt");
    expect_valid_error(&c, "cluster.tls.cert: expected a PEM file (mutual TLS between replicas "
                           "needs cluster.tls.ca, cluster.tls.cert and cluster.tls.key), got ''");
    snprintf(c.cluster.tls.cert, sizeof(c.cluster.tls.cert), "r.crt");
    expect_valid_error(&c, "cluster.tls.key: expected a PEM file (mutual TLS between replicas "
                           "needs cluster.tls.ca, cluster.tls.cert and cluster.tls.key), got ''");
    snprintf(c.cluster.tls.key, sizeof(c.cluster.tls.key), "r.key");
    assert_true(rd_config_cluster_tls(&c));
    assert_int_equal(rd_config_validate(&c, err), 0); /* TLS on a public address: fine */

    /* From a file: the paths resolve against its directory, like every path. */
    assert_int_equal(load(&c,
                          "cluster:\n  raft_address: 10.0.0.2:7080\n"
                          "  tls: {ca: ca.crt, cert: /abs/r.crt, key: r.key, "
                          "check_replica_id: false}\n",
                          err),
                     0);
    assert_string_equal(c.cluster.tls.cert, "/abs/r.crt");
    assert_false(c.cluster.tls.check_replica_id);
    assert_int_equal(rd_config_validate(&c, err), 0);
    assert_int_equal(load(&c, "cluster:\n  tls: {insecure_plaintext: maybe}\n", err), RD_ECONFIG);
    assert_non_null(strstr(err, "cluster.tls.insecure_plaintext"));
}

static void test_lease(void **state)
{
    (void)state;
    struct rd_config c;
    rd_config_defaults(&c);
    assert_int_equal(rd_config_lease_ms(&c), 1500);
    c.fault_tolerance.detection.heartbeat_interval_ms = 250;
    c.fault_tolerance.detection.failure_threshold = 4;
    assert_int_equal(rd_config_lease_ms(&c), 1000);
    /* Saturates instead of wrapping into a short lease. */
    c.fault_tolerance.detection.heartbeat_interval_ms = UINT64_MAX / 2;
    c.fault_tolerance.detection.failure_threshold = 3;
    assert_true(rd_config_lease_ms(&c) == UINT64_MAX);
    c.fault_tolerance.detection.failure_threshold = 0;
    assert_int_equal(rd_config_lease_ms(&c), 0);
}

/* ---- value parsers ----------------------------------------------------- */

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t ms;
    } good[] = {
        {"0ms", 0},
        {"250ms", 250},
        {"10s", 10000},
        {"2m", 120000},
        {"1h", 3600000},
        {"7d", 604800000},
        {"007s", 7000},
        {"18446744073709551615ms", UINT64_MAX},
        {"213503982334d", UINT64_C(213503982334) * 86400000},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t ms = 42;
        if (rd_config_parse_duration(good[i].text, &ms) != 0)
            fail_msg("'%s' rejected", good[i].text);
        assert_true(ms == good[i].ms);
    }
    static const char *const bad[] = {
        "",
        "10",
        "10 s",
        "10sec",
        "-5s",
        "+5s",
        " 5s",
        "5s ",
        "1.5s",
        "10S",
        "10M",
        "s",
        "ms",
        "10us",
        "1w",
        "0x10s",
        "18446744073709551616ms", /* digits overflow */
        "18446744073709551615s",  /* multiply overflow */
        "213503982335d",          /* just over */
        "99999999999999999999999999d",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 42;
        if (rd_config_parse_duration(bad[i], &ms) != RD_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(ms, 42); /* untouched on error */
    }
    uint64_t ms = 42;
    assert_int_equal(rd_config_parse_duration(NULL, &ms), RD_EINVAL);
}

static void test_parse_percent(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned pct;
    } good[] = {{"0%", 0}, {"1%", 1}, {"50%", 50}, {"80%", 80}, {"100%", 100}, {"080%", 80}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        unsigned pct = 999;
        assert_int_equal(rd_config_parse_percent(good[i].text, &pct), 0);
        assert_int_equal(pct, good[i].pct);
    }
    static const char *const bad[] = {"",
                                      "%",
                                      "80",
                                      "101%",
                                      "-1%",
                                      "80 %",
                                      " 80%",
                                      "80%%",
                                      "8.5%",
                                      "1000%",
                                      "80%x",
                                      "0x50%",
                                      "18446744073709551617%",
                                      "99999999999999999999999%"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned pct = 999;
        if (rd_config_parse_percent(bad[i], &pct) != RD_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(pct, 999);
    }
    unsigned pct = 999;
    assert_int_equal(rd_config_parse_percent(NULL, &pct), RD_EINVAL);
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t bytes;
    } good[] = {
        {"0", 0},
        {"4096", 4096},
        {"1B", 1},
        {"512KiB", 512 * 1024},
        {"1K", 1024},
        {"8MiB", 8 * 1024 * 1024},
        {"1M", 1024 * 1024},
        {"1GiB", UINT64_C(1) << 30},
        {"3G", UINT64_C(3) << 30},
        {"17179869183GiB", UINT64_C(17179869183) << 30},
        {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        size_t bytes = 42;
        if (rd_config_parse_size(good[i].text, &bytes) != 0)
            fail_msg("'%s' rejected", good[i].text);
        assert_true((uint64_t)bytes == good[i].bytes);
    }
    static const char *const bad[] = {
        "",
        "B",
        "KiB",
        "1KB",
        "1kib",
        "1k",
        "1 KiB",
        " 1",
        "1 ",
        "-1",
        "1.5M",
        "1TiB",
        "1KiBB",
        "0x100",
        "+1",
        "1Ki",
        "18446744073709551616", /* digits overflow */
        "17179869184GiB",       /* 2^34 GiB = 2^64 */
        "18014398509481984KiB", /* 2^54 KiB = 2^64 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t bytes = 42;
        if (rd_config_parse_size(bad[i], &bytes) != RD_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(bytes, 42);
    }
}

static void test_parse_hostport(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *host;
        uint16_t port;
    } good[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},
        {"[::1]:8080", "::1", 8080},
        {"localhost:8080", "localhost", 8080},
        {"0.0.0.0:1", "0.0.0.0", 1},
        {"db-3.example.com:65535", "db-3.example.com", 65535},
        {"[2001:db8::7]:443", "2001:db8::7", 443},
        {"[::ffff:10.0.0.1]:80", "::ffff:10.0.0.1", 80},
        {"node_1:07080", "node_1", 7080},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char host[RD_CFG_STR] = "unset";
        uint16_t port = 0;
        if (rd_config_parse_hostport(good[i].text, host, &port) != 0)
            fail_msg("'%s' rejected", good[i].text);
        assert_string_equal(host, good[i].host);
        assert_int_equal(port, good[i].port);
    }
    static const char *const bad[] = {
        "",
        "localhost",
        ":8080",
        "host:",
        "host:0",
        "host:65536",
        "host:99999999999999999999",
        "host:80x",
        "host:-1",
        "host:+80",
        "host: 80",
        "::1:8080",
        "::1",
        "[::1]",
        "[::1]8080",
        "[::1]:",
        "[]:80",
        "[zz::1]:80",
        "[127.0.0.1]:80",
        "256.1.1.1:80",
        "1.2.3:80",
        "host name:80",
        "host/x:80",
        "a:b:c",
        "[::1:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char host[RD_CFG_STR] = "unset";
        uint16_t port = 7;
        if (rd_config_parse_hostport(bad[i], host, &port) != RD_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_string_equal(host, "unset");
        assert_int_equal(port, 7);
    }
    /* Host length: 255 bytes fit RD_CFG_STR, 256 do not. */
    char text[300];
    char host[RD_CFG_STR];
    uint16_t port;
    memset(text, 'h', 255);
    strcpy(text + 255, ":80");
    assert_int_equal(rd_config_parse_hostport(text, host, &port), 0);
    assert_int_equal(strlen(host), 255);
    assert_int_equal(port, 80);
    memset(text, 'h', 256);
    strcpy(text + 256, ":80");
    assert_int_equal(rd_config_parse_hostport(text, host, &port), RD_EINVAL);
    assert_int_equal(rd_config_parse_hostport(NULL, host, &port), RD_EINVAL);
}

/* fault_tolerance.backup's additions: targets, keep_min, archive. */
static void test_backup_targets(void **state)
{
    (void)state;
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    /* Defaults: targets not given (every backup instance), keep 3, archive
     * to the first target within 1 s. */
    rd_config_defaults(&c);
    assert_int_equal(c.fault_tolerance.backup.n_targets, 0);
    assert_int_equal(c.origin[RD_CFG_BACKUP_TARGETS], 0);
    assert_int_equal(c.fault_tolerance.backup.keep_min, 3);
    assert_int_equal(c.origin[RD_CFG_ARCHIVE_TARGET], 0);
    assert_int_equal(c.fault_tolerance.backup.archive.max_delay_ms, 1000);

    static const char yaml[] = "plugins:\n"
                               "  instances:\n"
                               "    - name: heartbeat\n"
                               "    - name: local\n"
                               "      plugin: file\n"
                               "      config: {dir: /tmp/x}\n"
                               "    - name: offsite\n"
                               "      plugin: s3\n"
                               "fault_tolerance:\n"
                               "  backup:\n"
                               "    interval: 1s\n"
                               "    targets: [offsite, local]\n"
                               "    keep_min: 0\n"
                               "    archive:\n"
                               "      target: local\n"
                               "      max_delay: 250ms\n";
    assert_int_equal(load(&c, yaml, err), 0);
    assert_int_equal(c.fault_tolerance.backup.n_targets, 2);
    assert_string_equal(c.fault_tolerance.backup.targets[0], "offsite");
    assert_string_equal(c.fault_tolerance.backup.targets[1], "local");
    assert_int_equal(c.origin[RD_CFG_BACKUP_TARGETS], 12);
    assert_int_equal(c.fault_tolerance.backup.keep_min, 0);
    assert_string_equal(c.fault_tolerance.backup.archive.target, "local");
    assert_int_equal(c.origin[RD_CFG_ARCHIVE_TARGET], 15);
    assert_int_equal(c.fault_tolerance.backup.archive.max_delay_ms, 250);
    assert_int_equal(c.fault_tolerance.backup.interval_ms, 1000);
    assert_int_equal(rd_config_validate(&c, err), 0);

    /* An empty list turns backups off; "" turns archiving off. */
    assert_int_equal(load(&c,
                          "fault_tolerance:\n  backup:\n    targets: []\n    archive:\n"
                          "      target: \"\"\n",
                          err),
                     0);
    assert_int_equal(c.fault_tolerance.backup.n_targets, 0);
    assert_int_equal(c.origin[RD_CFG_BACKUP_TARGETS], 3);
    assert_string_equal(c.fault_tolerance.backup.archive.target, "");
    assert_int_equal(c.origin[RD_CFG_ARCHIVE_TARGET], 5);
    assert_int_equal(rd_config_validate(&c, err), 0);

    /* Loader errors: file, line, key, value. */
    expect_error("fault_tolerance:\n  backup:\n    targets: local\n", 3,
                 "fault_tolerance.backup.targets", "'local'");
    expect_error("fault_tolerance:\n  backup:\n    targets: [local, Bad]\n", 3,
                 "fault_tolerance.backup.targets[1]", "'Bad'");
    expect_error("fault_tolerance:\n  backup:\n    targets:\n      - a\n      - a\n", 5,
                 "fault_tolerance.backup.targets[1]", "'a' (also item 0)");
    expect_error("fault_tolerance:\n  backup:\n    keep_min: 1001\n", 3,
                 "fault_tolerance.backup.keep_min", "'1001'");
    expect_error("fault_tolerance:\n  backup:\n    archive:\n      max_delay: soon\n", 4,
                 "fault_tolerance.backup.archive.max_delay", "'soon'");
    expect_error("fault_tolerance:\n  backup:\n    archive:\n      target: A\n", 4,
                 "fault_tolerance.backup.archive.target", "'A'");
    expect_error("fault_tolerance:\n  backup:\n    archive:\n      bucket: x\n", 4,
                 "fault_tolerance.backup.archive.bucket", NULL);

    /* Validation: targets are configured instances, the archive target one of them. */
    assert_int_equal(load(&c, "fault_tolerance:\n  backup:\n    targets: [nowhere]\n", err), 0);
    expect_valid_error(&c, "fault_tolerance.backup.targets[0]: 'nowhere' is not a configured "
                           "plugin instance (set at t.yaml:3): add it to plugins.instances "
                           "(plugin: file, s3 or postgres) or remove it from the list");
    assert_int_equal(load(&c,
                          "fault_tolerance:\n  backup:\n    targets: [heartbeat]\n"
                          "    archive:\n      target: log\n",
                          err),
                     0);
    expect_valid_error(&c, "fault_tolerance.backup.archive.target: 'log' is not one of the backup "
                           "targets (set at t.yaml:5): name one of "
                           "fault_tolerance.backup.targets, or \"\" for no archiving");
    assert_int_equal(load(&c, "fault_tolerance:\n  backup:\n    interval: 50ms\n", err), 0);
    expect_valid_error(&c, "fault_tolerance.backup.interval: expected at least 100ms, got '50ms'");
    assert_int_equal(
        load(&c, "fault_tolerance:\n  backup:\n    archive:\n      max_delay: 0ms\n", err), 0);
    expect_valid_error(&c, "fault_tolerance.backup.archive.max_delay: expected a duration above 0, "
                           "got '0ms'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_deploy_file),
        cmocka_unit_test(test_requirement_block),
        cmocka_unit_test(test_empty_and_partial),
        cmocka_unit_test(test_all_types_good),
        cmocka_unit_test(test_bool_spellings),
        cmocka_unit_test(test_error_duration),
        cmocka_unit_test(test_error_percent),
        cmocka_unit_test(test_error_size),
        cmocka_unit_test(test_error_uint),
        cmocka_unit_test(test_error_bool_level_url),
        cmocka_unit_test(test_error_hostport),
        cmocka_unit_test(test_error_string_too_long),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_security_audit),
        cmocka_unit_test(test_error_node_kind),
        cmocka_unit_test(test_edge),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_error_peers),
        cmocka_unit_test(test_error_duplicate_and_documents),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_files),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_plugins_good),
        cmocka_unit_test(test_plugins_limits),
        cmocka_unit_test(test_error_plugins),
        cmocka_unit_test(test_flap_and_partition),
        cmocka_unit_test(test_validate_new_keys),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_validate_peers),
        cmocka_unit_test(test_validate_cluster_tls),
        cmocka_unit_test(test_lease),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_percent),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_backup_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
