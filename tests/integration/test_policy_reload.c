/*
 * Policy hot reload on the real binary: SIGHUP and POST
 * /api/v1/policies/reload load every file into a fresh state, run the
 * self-tests and swap only on success; a broken policy keeps the old
 * version in force, is logged with file:line, and becomes a policy_error
 * fault. Requests keep being answered throughout.
 */
#include "cmocka_all.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

static struct rdt_proc proc;
static char dir[400];

static void copy_file(const char *name)
{
    char src[600], dst[600];
    snprintf(src, sizeof(src), "%s/policies/%s", RD_SOURCE_DIR, name);
    snprintf(dst, sizeof(dst), "%s/%s", dir, name);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static void append(const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    if (rdt_proc_prepare(&proc) != 0)
        return -1;
    proc.errors_expected = true; /* broken reloads are logged as errors */
    snprintf(dir, sizeof(dir), "%s/policies", proc.dir);
    snprintf(proc.policies_dir, sizeof(proc.policies_dir), "%s", dir);
    if (mkdir(dir, 0755) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    rdt_proc_cleanup(&proc);
    return 0;
}

static char *version(void)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/faults/status", &r), 0);
    char *v = strdup(json_string_value(rdt_json_path(r.json, "policy_version")));
    rdt_resp_free(&r);
    return v;
}

static void test_reload_swaps_only_good_policies(void **state)
{
    const char *files[] = {"select.lua", "fast_recovery.lua", "safe_recovery.lua",
                           "degraded_service.lua"};
    for (size_t i = 0; i < 4; i++)
        copy_file(files[i]);
    assert_int_equal(rdt_proc_start(&proc, NULL), 0);
    assert_int_equal(rdt_wait_ready(&proc, 15000), 0);
    char *v1 = version();
    assert_true(strlen(v1) > 0);

    /* A harmless edit and SIGHUP: a new version, without dropping requests. */
    append("fast_recovery.lua", "\n-- tuned\n");
    assert_int_equal(rdt_proc_signal(&proc, SIGHUP), 0);
    char *v2 = NULL;
    int64_t deadline = rdt_now_ms() + 5000;
    for (;;) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&proc, RDT_H2, "/health", &r), 0);
        assert_int_equal(r.status, 200);
        rdt_resp_free(&r);
        free(v2);
        v2 = version();
        if (strcmp(v1, v2) != 0)
            break;
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(10);
    }

    /* A broken file: refused, the old version stays, the error names file:line. */
    append("select.lua", "\nthis is not lua\n");
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/policies/reload", NULL, &r), 0);
    assert_int_equal(r.status, 400);
    const char *msg = json_string_value(rdt_json_path(r.json, "error.message"));
    assert_non_null(strstr(msg, "select.lua:"));
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.policy_version")),
                        v2);
    rdt_resp_free(&r);
    char *v3 = version();
    assert_string_equal(v3, v2);
    /* SIGHUP with the same broken file: logged, and recorded as a fault. */
    assert_int_equal(rdt_proc_signal(&proc, SIGHUP), 0);
    deadline = rdt_now_ms() + 5000;
    bool recorded = false;
    while (!recorded && rdt_now_ms() < deadline) {
        assert_int_equal(
            rdt_get(&proc, RDT_H1, "/api/v1/faults/records?fault_type=policy_error", &r), 0);
        recorded = json_array_size(rdt_json_path(r.json, "items")) >= 2; /* reload + SIGHUP */
        if (recorded) {
            json_t *f = json_array_get(rdt_json_path(r.json, "items"), 0);
            assert_non_null(
                strstr(json_string_value(rdt_json_path(f, "metadata.error")), "select.lua:"));
            assert_string_equal(json_string_value(json_object_get(f, "severity_level")), "major");
        }
        rdt_resp_free(&r);
        rdt_sleep_ms(20);
    }
    assert_true(recorded);
    char *log = rdt_proc_log(&proc);
    assert_non_null(strstr(log, "event=reload_failed"));
    free(log);

    /* Fixed: the reload goes through. */
    copy_file("select.lua");
    assert_int_equal(rdt_post(&proc, RDT_H2, "/api/v1/policies/reload", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "previous_version")), v2);
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "recoveryd_policy_reloads_total{result=\"failed\"} 2"));
    rdt_resp_free(&r);
    free(v1);
    free(v2);
    free(v3);
}

static void test_broken_policies_stop_the_start(void **state)
{
    struct rdt_proc p;
    memset(&p, 0, sizeof(p));
    p.errors_expected = true; /* the refusal is an error line */
    snprintf(p.policies_dir, sizeof(p.policies_dir), "%s", "/nonexistent-policies");
    assert_int_not_equal(rdt_proc_start(&p, NULL), 0);
    assert_int_equal(p.exit_code, 1);
    char *log = rdt_proc_log(&p);
    /* The setting, the directory and the flag that set it (issue 10, defect 3). */
    assert_non_null(strstr(log, "policies.dir: /nonexistent-policies: cannot open"));
    assert_non_null(strstr(log, "set by --policies-dir"));
    free(log);
    rdt_proc_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_swaps_only_good_policies),
        cmocka_unit_test(test_broken_policies_stop_the_start),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
