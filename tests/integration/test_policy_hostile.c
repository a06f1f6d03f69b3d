/*
 * Issue 12, "a hardened edge": policy code may not hold the engine's loop
 * past its budget through C library calls the budget hook cannot interrupt.
 * On the real binary:
 * - a reload whose self_test runs the exponential pattern
 *   (string.rep("a",400):find(string.rep("a-",4).."b"), which held the loop
 *   for 471 s and was then accepted) is refused quickly, naming the file and
 *   the overrun, and the policies in force stay;
 * - the same call in plan during a triggered recovery returns within the
 *   budget: heartbeats keep being answered, a policy_error fault is
 *   recorded, and the built-in default moves the task.
 * Waits scale with rdt_time_factor() (tests/lib/rdt_ctest.h).
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "rdt_ctest.h"

#define TASK   "9a9a9a9a-0000-4000-8000-00000000000c"
#define ATTACK "string.rep('a', 400):find(string.rep('a-', 4) .. 'b')"

static const char yaml_1x[] = "fault_tolerance:\n"
                              "  detection:\n"
                              "    heartbeat_interval: 100ms\n"
                              "    failure_threshold: 3\n"
                              "  partition:\n"
                              "    min_nodes: 100\n"
                              "plugins:\n"
                              "  instances:\n"
                              "    - {name: heartbeat, required: true}\n";

static struct rdt_proc proc;
static char yaml[512];
static int hb_ms;

/* fast_recovery.lua: plan runs the attack for the node "victim" only;
 * `self_test` is the self_test's body. */
static void write_fast_recovery(const char *self_test)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/fast_recovery.lua", proc.policies_dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f,
            "local M = { name = 'fast_recovery' }\n"
            "function M.plan(event, view)\n"
            "  if event.node and event.node.node_id == 'victim' then\n"
            "    " ATTACK "\n"
            "  end\n"
            "  local actions = {}\n"
            "  for i, t in ipairs(event.tasks or {}) do\n"
            "    actions[i] = { action = 'reassign', task_id = t.task_id }\n"
            "  end\n"
            "  return { actions = actions }\n"
            "end\n"
            "function M.self_test()\n"
            "  %s\n"
            "end\n"
            "return M\n",
            self_test);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    rdt_scale_durations(yaml_1x, yaml, sizeof(yaml));
    hb_ms = rdt_ms(100);
    if (rdt_proc_prepare(&proc) != 0)
        return -1;
    proc.errors_expected = true; /* the refused reload and the policy error are error lines */
    snprintf(proc.policies_dir, sizeof(proc.policies_dir), "%s/policies", proc.dir);
    if (mkdir(proc.policies_dir, 0755) != 0)
        return -1;
    const char *names[] = {"select.lua", "safe_recovery.lua", "degraded_service.lua"};
    for (int i = 0; i < 3; i++) {
        char src[600], dst[700], buf[8192];
        snprintf(src, sizeof(src), "%s/policies/%s", RD_SOURCE_DIR, names[i]);
        snprintf(dst, sizeof(dst), "%s/%s", proc.policies_dir, names[i]);
        FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
        if (in == NULL || out == NULL)
            return -1;
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            fwrite(buf, 1, n, out);
        fclose(in);
        fclose(out);
    }
    write_fast_recovery("");
    if (rdt_proc_start(&proc, yaml) != 0)
        return -1;
    return rdt_wait_ready(&proc, 15000);
}

static int teardown(void **state)
{
    (void)state;
    rdt_proc_cleanup(&proc);
    return 0;
}

static char *policy_version(void)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/faults/status", &r), 0);
    char *v = strdup(json_string_value(rdt_json_path(r.json, "policy_version")));
    rdt_resp_free(&r);
    return v;
}

static void test_reload_with_an_exponential_self_test_is_refused(void **state)
{
    (void)state;
    char *v1 = policy_version();
    write_fast_recovery(ATTACK);
    struct rdt_resp r = {0};
    int64_t t0 = rdt_now_ms();
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/policies/reload", NULL, &r), 0);
    int64_t took = rdt_now_ms() - t0;
    const char *msg = json_string_value(rdt_json_path(r.json, "error.message"));
    printf("    reload answered %ld after %lld ms: %s\n", r.status, (long long)took,
           msg ? msg : "(no message)");
    assert_int_equal(r.status, 400);
    assert_true(took < rdt_ms(2000)); /* it held the loop for 471 s before */
    assert_non_null(msg);
    assert_non_null(strstr(msg, "policies/fast_recovery.lua:13: string.find: pattern too complex"));
    assert_non_null(strstr(msg, "ms budget"));
    rdt_resp_free(&r);
    char *v2 = policy_version();
    assert_string_equal(v2, v1); /* the policies in force stay */
    write_fast_recovery("");     /* what is in force again */
    free(v1);
    free(v2);
}

static void test_exponential_plan_is_a_policy_error(void **state)
{
    (void)state;
    long long ev, eh;
    assert_int_equal(rdt_register(&proc, "victim", 2, &ev), 0);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", "{\"task_id\":\"" TASK "\"}", &r), 0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    for (int64_t until = rdt_now_ms() + rdt_ms(5000);;) {
        assert_int_equal(rdt_heartbeat(&proc, RDT_H2, "victim", ev, 0, &r), 0);
        bool placed = json_array_size(rdt_json_path(r.json, "assignments")) > 0;
        rdt_resp_free(&r);
        if (placed)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(hb_ms);
    }
    assert_int_equal(rdt_register(&proc, "healthy", 2, &eh), 0);

    /* The operator moves the victim's work: the policy's plan runs the
     * pattern, and the loop must keep answering meanwhile. */
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/recovery/trigger",
                              "{\"node_id\":\"victim\",\"strategy\":\"fast_recovery\"}", &r),
                     0);
    assert_int_equal(r.status, 202);
    rdt_resp_free(&r);
    int64_t worst = 0;
    json_t *as = NULL;
    for (int64_t until = rdt_now_ms() + rdt_ms(10000); as == NULL;) {
        int64_t t0 = rdt_now_ms();
        assert_int_equal(rdt_heartbeat(&proc, RDT_H2, "victim", ev, 0, &r), 0);
        rdt_resp_free(&r);
        assert_int_equal(rdt_heartbeat(&proc, RDT_H2, "healthy", eh, 0, &r), 0);
        int64_t took = rdt_now_ms() - t0;
        worst = took > worst ? took : worst;
        as = json_incref(json_array_get(rdt_json_path(r.json, "assignments"), 0));
        rdt_resp_free(&r);
        assert_true(as != NULL || rdt_now_ms() < until);
        if (as == NULL)
            rdt_sleep_ms(hb_ms);
    }
    printf("    the task moved to the healthy agent; slowest pair of heartbeats: %lld ms\n",
           (long long)worst);
    assert_int_equal(json_integer_value(json_object_get(as, "attempt")), 2);
    json_decref(as);
    /* Budget 50 ms: the loop was never held for long (it froze 129 s before). */
    assert_true(worst < rdt_ms(1000));

    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/faults/records?fault_type=policy_error", &r),
                     0);
    json_t *rec = json_array_get(rdt_json_path(r.json, "items"), 0);
    assert_non_null(rec);
    const char *err = json_string_value(rdt_json_path(rec, "metadata.error"));
    printf("    policy_error: %s\n", err);
    assert_non_null(strstr(err, "policies/fast_recovery.lua:4: string.find: pattern too complex"));
    rdt_resp_free(&r);
    char *log = rdt_proc_log(&proc);
    assert_non_null(strstr(log, "strategy=builtin_fast_recovery"));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_with_an_exponential_self_test_is_refused),
        cmocka_unit_test(test_exponential_plan_is_a_policy_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
