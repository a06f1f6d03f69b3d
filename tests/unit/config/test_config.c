/*
 * Unit tests for engine/config: defaults, the shipped deploy/recoveryd.yaml,
 * the requirement's own `fault_tolerance:` block, every error path of the
 * loader (file, line, key and value in the message), rd_config_validate's
 * rules and the value parsers. No I/O beyond small temporary files.
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

    assert_string_equal(c.storage.data_dir, "./var");
    assert_int_equal(c.storage.snapshot_threshold, 1024);
    assert_int_equal(c.storage.snapshot_trailing, 128);
    assert_int_equal(c.storage.segment_size, 8 * 1024 * 1024);

    assert_string_equal(c.cluster.node_id, "rd1");
    assert_int_equal(c.cluster.replica_id, 1);
    assert_string_equal(c.cluster.raft_address, "127.0.0.1:7080");
    assert_int_equal(c.cluster.election_timeout_ms, 300);
    assert_int_equal(c.cluster.heartbeat_timeout_ms, 50);
    assert_true(c.cluster.pre_vote);
    assert_int_equal(c.cluster.max_inflight, 256);
    assert_int_equal(c.cluster.n_peers, 0);

    assert_string_equal(c.plugins.dir, "build/plugins");
    assert_string_equal(c.policies.dir, "policies");
    assert_int_equal(c.policies.budget_ms, 50);
    assert_int_equal(c.policies.memory_limit, 64 * 1024 * 1024);
    assert_int_equal(c.logging.level, RD_LOG_INFO);

    assert_int_equal(c.fault_tolerance.detection.heartbeat_interval_ms, 500);
    assert_int_equal(c.fault_tolerance.detection.health_check_timeout_ms, 1000);
    assert_int_equal(c.fault_tolerance.detection.failure_threshold, 3);
    assert_int_equal(c.fault_tolerance.detection.recovery_threshold, 2);
    assert_int_equal(c.fault_tolerance.recovery_strategies.fast_recovery.max_time_ms, 120000);
    assert_int_equal(c.fault_tolerance.recovery_strategies.fast_recovery.resource_limit, 80);
    assert_int_equal(c.fault_tolerance.recovery_strategies.safe_recovery.max_time_ms, 600000);
    assert_true(c.fault_tolerance.recovery_strategies.safe_recovery.consistency_check);
    assert_true(c.fault_tolerance.recovery_strategies.degraded_service.essential_services_only);
    assert_int_equal(c.fault_tolerance.recovery_strategies.degraded_service.performance_limit, 50);
    assert_int_equal(c.fault_tolerance.backup.interval_ms, 300000);
    assert_int_equal(c.fault_tolerance.backup.retention_period_ms, 7ULL * 24 * 3600 * 1000);
    assert_int_equal(c.fault_tolerance.backup.consistency_check_interval_ms, 3600000);

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
    assert_string_equal(c.storage.data_dir, "./var");
    assert_int_equal(c.storage.segment_size, 8 << 20);
    assert_int_equal(c.cluster.election_timeout_ms, 300);
    assert_true(c.cluster.pre_vote);
    assert_int_equal(c.policies.memory_limit, 64 << 20);
    assert_int_equal(c.fault_tolerance.detection.heartbeat_interval_ms, 500);
    assert_int_equal(c.fault_tolerance.detection.health_check_timeout_ms, 1000);
    assert_int_equal(c.fault_tolerance.recovery_strategies.fast_recovery.resource_limit, 80);
    assert_int_equal(c.fault_tolerance.backup.retention_period_ms, 604800000);

    rd_config_defaults(&d);
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
                       "  segment_size: 16M\n"
                       "cluster:\n"
                       "  node_id: node-2.eu\n"
                       "  replica_id: 2\n"
                       "  raft_address: \"[::1]:7081\"\n"
                       "  election_timeout: 1s\n"
                       "  heartbeat_timeout: 100ms\n"
                       "  pre_vote: off\n"
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
    assert_int_equal(c.storage.segment_size, 16 << 20);
    assert_string_equal(c.cluster.node_id, "node-2.eu");
    assert_int_equal(c.cluster.replica_id, 2);
    assert_string_equal(c.cluster.raft_address, "[::1]:7081");
    assert_int_equal(c.cluster.election_timeout_ms, 1000);
    assert_int_equal(c.cluster.heartbeat_timeout_ms, 100);
    assert_false(c.cluster.pre_vote);
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

static void test_error_unknown_key(void **state)
{
    (void)state;
    expect_exact_error("server:\n  listen: 127.0.0.1:8080\n  lisen: 127.0.0.1:8081\n",
                       NAME ":3: server.lisen: unknown key (expected one of: listen, max_body, "
                            "shutdown_timeout, tls)");
    expect_exact_error("logging:\n  level: info\ncolour: red\n",
                       NAME ":3: colour: unknown key (expected one of: server, storage, cluster, "
                            "plugins, policies, logging, fault_tolerance)");
    expect_error("fault_tolerance:\n  recovery_strategies:\n    fast_recovery:\n"
                 "      max_tme: 2m\n",
                 4, "fault_tolerance.recovery_strategies.fast_recovery.max_tme", NULL);
    struct rd_config c;
    char err[RD_CFG_ERRLEN];
    assert_int_equal(load(&c, "fault_tolerance:\n  detection:\n    heartbeat: 1s\n", err),
                     RD_ECONFIG);
    assert_string_equal(err, NAME ":3: fault_tolerance.detection.heartbeat: unknown key (expected "
                                  "one of: heartbeat_interval, health_check_timeout, "
                                  "failure_threshold, recovery_threshold)");
    expect_error("server:\n  tls:\n    certificate: x\n", 3, "server.tls.certificate", NULL);
    expect_error("cluster:\n  peers:\n    - id: 1\n      address: a:1\n    - id: 2\n"
                 "      port: 7081\n",
                 6, "cluster.peers[1].port", NULL);
    /* Key names are case-sensitive. */
    expect_error("Server:\n  listen: a:1\n", 1, "Server", NULL);
}

static void test_error_node_kind(void **state)
{
    (void)state;
    expect_exact_error("server: 8080\n",
                       NAME ":1: server: expected a mapping with keys listen, max_body, "
                            "shutdown_timeout, tls, got '8080'");
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
    assert_string_equal(err, NAME ":1: expected a mapping with keys server, storage, cluster, "
                                  "plugins, policies, logging, fault_tolerance, got 'hello'");
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
    c.storage.snapshot_threshold = 0;
    expect_valid_error(&c, "storage.snapshot_threshold: expected at least 1 entry, got '0'");

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
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_error_node_kind),
        cmocka_unit_test(test_error_peers),
        cmocka_unit_test(test_error_duplicate_and_documents),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_files),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_validate_peers),
        cmocka_unit_test(test_lease),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_percent),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
