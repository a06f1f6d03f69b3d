/*
 * The plugin loader on the real binary with real broken shared objects
 * (tests/plugins/bad_plugin.c): each ABI mismatch is refused before anything
 * in the library runs, with a message naming the file and both versions; a
 * failing init is contained unless the instance is required; bad instance
 * config gets file:line errors against the keys the plugin declares. And the
 * example every plugin author starts from, plugins/examples/minimal_detector,
 * loads and does what it says.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "recoveryd/plugin.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"

/* Starts a daemon whose only plugin instance is `plugin`; returns its log
 * (caller frees) and whether it came up. */
static char *start_with(const char *plugin, bool required, const char *config, bool *up,
                        int *exit_code)
{
    struct rdt_proc p;
    memset(&p, 0, sizeof(p));
    p.errors_expected = true; /* broken plugins, logged as errors */
    snprintf(p.plugins_dir, sizeof(p.plugins_dir), "%s", RD_TEST_PLUGINS_DIR);
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "plugins:\n"
             "  instances:\n"
             "    - name: under_test\n"
             "      plugin: %s\n"
             "      required: %s\n"
             "%s",
             plugin, required ? "true" : "false", config ? config : "");
    *up = rdt_proc_start(&p, yaml) == 0;
    if (*up) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&p, RDT_H1, "/api/v1/plugins", &r), 0);
        fprintf(stderr, "plugins: %s\n", r.body);
        rdt_resp_free(&r);
    }
    char *log = rdt_proc_log(&p);
    if (*up) {
        int code = -1;
        rdt_proc_stop(&p, &code);
    }
    *exit_code = p.exit_code;
    rdt_proc_cleanup(&p);
    return log;
}

static void expect_refused(const char *plugin, const char *needle)
{
    bool up;
    int code;
    char *log = start_with(plugin, false, NULL, &up, &code);
    if (up || strstr(log, needle) == NULL || strstr(log, plugin) == NULL)
        fail_msg("plugin %s: expected a refusal naming the file and containing '%s'; up=%d, "
                 "log:\n%s",
                 plugin, needle, up, log);
    assert_int_equal(code, 1);
    free(log);
}

static void test_abi_mismatches_are_refused(void **state)
{
    /* The messages name this recoveryd's ABI (tests/plugins/bad_plugin.c:
     * major + 1, minor 99). */
    char want[160];
    snprintf(want, sizeof(want), "plugin ABI %d.%d, but this recoveryd speaks ABI %d.%d",
             RD_PLUGIN_ABI_MAJOR + 1, RD_PLUGIN_ABI_MINOR, RD_PLUGIN_ABI_MAJOR,
             RD_PLUGIN_ABI_MINOR);
    expect_refused("bad_major", want);
    snprintf(want, sizeof(want), "plugin ABI %d.99 is newer than this recoveryd's ABI %d.%d",
             RD_PLUGIN_ABI_MAJOR, RD_PLUGIN_ABI_MAJOR, RD_PLUGIN_ABI_MINOR);
    expect_refused("bad_minor", want);
    expect_refused("bad_size", "needs at least");
    expect_refused("bad_sig", "build signature 'recoveryd-abi-1/sparc/ptr4/long4' does not match");
    expect_refused("bad_ops", "detector ops version 0");
    expect_refused("no_entry", "not a recoveryd plugin (no rd_plugin_entry symbol)");
    expect_refused("not_there", "cannot load plugin");
}

static void test_failing_init_is_contained_unless_required(void **state)
{
    bool up;
    int code;
    char *log = start_with("fail_init", false, NULL, &up, &code);
    assert_true(up); /* the engine runs on without it */
    assert_non_null(strstr(log, "event=init_failed instance=under_test"));
    assert_non_null(strstr(log, "cannot reach the license server"));
    assert_int_equal(code, 0);
    free(log);

    log = start_with("fail_init", true, NULL, &up, &code);
    assert_false(up);
    assert_int_equal(code, 1);
    assert_non_null(strstr(log, "plugin instance under_test"));
    assert_non_null(
        strstr(log, "is required and its init failed: cannot reach the license server"));
    free(log);
}

static void test_instance_config_is_validated_against_declared_keys(void **state)
{
    bool up;
    int code;
    char *log = start_with("good", true, "      config:\n        nope: 1\n", &up, &code);
    assert_false(up);
    assert_non_null(strstr(log, "config.yaml:"));
    assert_non_null(strstr(log, "plugins.instances[0].config.nope: unknown key for plugin "
                                "bad_plugin (expected one of: level)"));
    free(log);
    log = start_with("good", true, "      config:\n        level: 99\n", &up, &code);
    assert_false(up);
    assert_non_null(strstr(log, "plugins.instances[0].config.level: expected an integer from 1 "
                                "to 10, got '99'"));
    free(log);
    log = start_with("good", true, "      config:\n        level: 7\n", &up, &code);
    assert_true(up);
    assert_int_equal(code, 0);
    free(log);
    /* An alert plugin built against ABI 1.1 (alert ops version 1) loads. */
    log = start_with("alert_v1", true, NULL, &up, &code);
    assert_true(up);
    assert_int_equal(code, 0);
    assert_null(strstr(log, "level=error"));
    free(log);
    /* Only the configured directory: no path in a plugin name. */
    log = start_with("../plugins/heartbeat", true, NULL, &up, &code);
    assert_false(up);
    assert_non_null(strstr(log, "plugins.instances[0].plugin"));
    free(log);
}

static void test_failed_instance_is_reported(void **state)
{
    struct rdt_proc p;
    memset(&p, 0, sizeof(p));
    p.errors_expected = true; /* broken plugins, logged as errors */
    snprintf(p.plugins_dir, sizeof(p.plugins_dir), "%s", RD_TEST_PLUGINS_DIR);
    assert_int_equal(rdt_proc_start(&p, "plugins:\n  instances:\n"
                                        "    - {name: ok, plugin: good}\n"
                                        "    - {name: broken, plugin: fail_init}\n"),
                     0);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&p, RDT_H2, "/api/v1/plugins", &r), 0);
    assert_int_equal(r.status, 200);
    json_t *items = rdt_json_path(r.json, "items");
    assert_int_equal(json_array_size(items), 2);
    json_t *ok = json_array_get(items, 0), *broken = json_array_get(items, 1);
    assert_string_equal(json_string_value(json_object_get(ok, "state")), "running");
    assert_string_equal(json_string_value(json_object_get(broken, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(broken, "kind")), "detector");
    assert_non_null(strstr(json_string_value(json_object_get(broken, "error")), "license server"));
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&p, RDT_H1, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "recoveryd_plugin_up{plugin_instance=\"broken\",plugin=\"bad_"
                                   "plugin\",kind=\"detector\"} 0"));
    assert_non_null(strstr(
        r.body,
        "recoveryd_plugin_up{plugin_instance=\"ok\",plugin=\"bad_plugin\",kind=\"detector\"} 1"));
    rdt_resp_free(&r);
    /* Its start() queued blocking work: it ran off the loop, done came back on it. */
    int64_t deadline = rdt_now_ms() + 5000;
    char *log = NULL;
    for (;;) {
        free(log);
        log = rdt_proc_log(&p);
        if (strstr(log, "comp=plugin.ok event=work_done status=0 worked=1") ||
            rdt_now_ms() > deadline)
            break;
        rdt_sleep_ms(20);
    }
    assert_non_null(strstr(log, "comp=plugin.ok event=work_done status=0 worked=1"));
    free(log);
    rdt_proc_cleanup(&p);
}

/* ---- plugins/examples/minimal_detector ------------------------------------ */

static json_t *faults_of(struct rdt_proc *p, const char *node)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/faults/records?node_id=%s", node);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *items = json_incref(rdt_json_path(r.json, "items"));
    rdt_resp_free(&r);
    return items;
}

static long long analysis_passes(struct rdt_proc *p)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/metrics", &r), 0);
    long long v = rdt_metric_in(r.body, "recoveryd_analysis_passes_total");
    rdt_resp_free(&r);
    assert_true(v >= 0);
    return v;
}

/* Heartbeats of `node` reporting `used` slots, every `hb_ms`, until its
 * newest fault record has `status` (NULL: until `passes` analysis passes
 * went by); returns that record (a new reference) or NULL. */
static json_t *beat_until(struct rdt_proc *p, const char *node, long long epoch, int used,
                          int hb_ms, const char *status, long long passes)
{
    long long until_pass = analysis_passes(p) + passes;
    for (int64_t until = rdt_now_ms() + rdt_ms(10000);;) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_heartbeat(p, RDT_H2, node, epoch, used, &r), 0);
        assert_int_equal(r.status, 200);
        rdt_resp_free(&r);
        json_t *items = faults_of(p, node);
        json_t *f = json_incref(json_array_get(items, 0));
        json_decref(items);
        if (status != NULL && f != NULL &&
            strcmp(json_string_value(json_object_get(f, "status")), status) == 0)
            return f;
        if (status == NULL && analysis_passes(p) >= until_pass) {
            json_decref(f);
            return NULL;
        }
        json_decref(f);
        if (rdt_now_ms() > until)
            fail_msg("%s reporting %d slots in use: no %s fault within 10 s", node, used,
                     status ? status : "(waited for passes)");
        rdt_sleep_ms(hb_ms);
    }
}

/*
 * The example detector (an instance "overbooked", tolerance 1) on the real
 * engine: an agent registered with 2 slots that reports 3 in use is within
 * the tolerance, nothing happens; at 4 the detector suspects it and the
 * engine records a warning-level fault naming the instance and its metric,
 * the agent still working; back at 2, the fault is resolved.
 */
static void test_minimal_detector_example_works(void **state)
{
    int hb_ms = rdt_ms(100);
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "fault_tolerance:\n"
             "  detection:\n"
             "    heartbeat_interval: %dms\n"
             "    failure_threshold: 3\n"
             "  partition:\n"
             "    min_nodes: 100\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - name: overbooked\n"
             "      plugin: minimal_detector\n"
             "      required: true\n"
             "      config:\n"
             "        tolerance: 1\n",
             hb_ms);
    struct rdt_proc p;
    memset(&p, 0, sizeof(p)); /* the build's plugins, examples among them */
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&p, RDT_H1, "/api/v1/plugins", &r), 0);
    json_t *x, *found = NULL;
    size_t i;
    json_array_foreach(rdt_json_path(r.json, "items"), i, x)
    {
        if (strcmp(json_string_value(json_object_get(x, "name")), "overbooked") == 0)
            found = x;
    }
    assert_non_null(found);
    assert_string_equal(json_string_value(json_object_get(found, "plugin")), "minimal_detector");
    assert_string_equal(json_string_value(json_object_get(found, "kind")), "detector");
    assert_string_equal(json_string_value(json_object_get(found, "state")), "running");
    rdt_resp_free(&r);

    long long epoch = 0;
    assert_int_equal(rdt_register(&p, "busy-1", 2, &epoch), 0);
    /* Within the tolerance, past the agent's grace (a lease: 3 intervals)
     * and then some: judged all along, no fault. */
    assert_null(beat_until(&p, "busy-1", epoch, 3, hb_ms, NULL, 2 + 6 * hb_ms / 100));
    json_t *none = faults_of(&p, "busy-1");
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    /* Over it: suspected by the example, a record, and it keeps working. */
    json_t *f = beat_until(&p, "busy-1", epoch, 4, hb_ms, "open", 0);
    assert_string_equal(json_string_value(json_object_get(f, "fault_type")), "degraded");
    assert_string_equal(json_string_value(json_object_get(f, "severity_level")), "minor");
    assert_string_equal(json_string_value(rdt_json_path(f, "metadata.metric")), "slots_used");
    assert_string_equal(json_string_value(rdt_json_path(f, "metadata.signals.metrics")), "suspect");
    const char *detail = json_string_value(rdt_json_path(f, "metadata.detail"));
    assert_non_null(detail);
    assert_non_null(strstr(detail, "overbooked: more slots in use than registered"));
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(f, "id")));
    json_decref(f);
    assert_int_equal(rdt_get(&p, RDT_H1, "/api/v1/nodes/busy-1", &r), 0);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "alive");
    rdt_resp_free(&r);
    /* Back within capacity: the same record is resolved. */
    f = beat_until(&p, "busy-1", epoch, 2, hb_ms, "resolved", 0);
    assert_string_equal(json_string_value(json_object_get(f, "id")), id);
    json_decref(f);
    rdt_proc_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abi_mismatches_are_refused),
        cmocka_unit_test(test_failing_init_is_contained_unless_required),
        cmocka_unit_test(test_instance_config_is_validated_against_declared_keys),
        cmocka_unit_test(test_failed_instance_is_reported),
        cmocka_unit_test(test_minimal_detector_example_works),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
