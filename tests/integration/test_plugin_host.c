/*
 * The plugin loader on the real binary with real broken shared objects
 * (tests/plugins/bad_plugin.c): each ABI mismatch is refused before anything
 * in the library runs, with a message naming the file and both versions; a
 * failing init is contained unless the instance is required; bad instance
 * config gets file:line errors against the keys the plugin declares.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

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
    expect_refused("bad_major", "plugin ABI 2.0, but this recoveryd speaks ABI 1.0");
    expect_refused("bad_minor", "plugin ABI 1.99 is newer than this recoveryd's ABI 1.0");
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
    assert_non_null(strstr(
        r.body,
        "recoveryd_plugin_up{instance=\"broken\",plugin=\"bad_plugin\",kind=\"detector\"} 0"));
    assert_non_null(strstr(
        r.body, "recoveryd_plugin_up{instance=\"ok\",plugin=\"bad_plugin\",kind=\"detector\"} 1"));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abi_mismatches_are_refused),
        cmocka_unit_test(test_failing_init_is_contained_unless_required),
        cmocka_unit_test(test_instance_config_is_validated_against_declared_keys),
        cmocka_unit_test(test_failed_instance_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
