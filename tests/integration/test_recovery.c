/*
 * Recovery end to end (the built-in fast_recovery): an agent crashes in the
 * middle of a task; the task moves to a healthy agent as attempt 2 and is
 * handed over with its last checkpoint; the zombie's writes (checkpoint,
 * completion) are fenced, so only one attempt can complete the task.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define TASK "6f1e2d3c-4b5a-4987-8c6d-5e4f3a2b1c0d"

static const char yaml[] = "fault_tolerance:\n"
                           "  detection:\n"
                           "    heartbeat_interval: 100ms\n"
                           "    failure_threshold: 3\n"
                           "  partition:\n"
                           "    min_nodes: 100\n"
                           "plugins:\n"
                           "  instances:\n"
                           "    - {name: heartbeat, required: true}\n";

static struct rdt_proc proc;

static int setup(void **state)
{
    if (rdt_proc_start(&proc, yaml) != 0)
        return -1;
    return rdt_wait_ready(&proc, 15000);
}

static int teardown(void **state)
{
    rdt_proc_cleanup(&proc);
    return 0;
}

static json_t *heartbeat(const char *id, long long epoch, long *status)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_heartbeat(&proc, RDT_H2, id, epoch, 1, &r), 0);
    *status = r.status;
    json_t *j = json_incref(r.json);
    rdt_resp_free(&r);
    return j;
}

static long task_post(const char *suffix, const char *body, struct rdt_resp *r)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/%s", TASK, suffix);
    assert_int_equal(rdt_post(&proc, RDT_H1, path, body, r), 0);
    return r->status;
}

static long checkpoint(long long attempt, long long version, int step)
{
    char url[160], body[128];
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", proc.base_url, TASK);
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":%lld,\"data\":{\"step\":%d}}",
             attempt, version, step);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_http(RDT_H1, "PUT", url, body, strlen(body), &r), 0);
    long s = r.status;
    rdt_resp_free(&r);
    return s;
}

static void test_task_survives_its_agent(void **state)
{
    long long ea, eb;
    assert_int_equal(rdt_register(&proc, "agent-a", 2, &ea), 0);
    struct rdt_resp r = {0};
    assert_int_equal(
        rdt_post(&proc, RDT_H1, "/api/v1/tasks",
                 "{\"task_id\":\"" TASK "\",\"critical\":true,\"payload\":{\"doc\":7}}", &r),
        0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    /* agent-a gets it in a heartbeat answer and works: two checkpoints. */
    long st;
    json_t *hb = NULL;
    for (int64_t until = rdt_now_ms() + 5000;;) {
        json_decref(hb);
        hb = heartbeat("agent-a", ea, &st);
        if (json_array_size(json_object_get(hb, "assignments")) == 1)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(50);
    }
    assert_int_equal(json_integer_value(rdt_json_path(
                         json_array_get(json_object_get(hb, "assignments"), 0), "attempt")),
                     1);
    json_decref(hb);
    assert_int_equal(checkpoint(1, 1, 10), 200);
    assert_int_equal(checkpoint(1, 2, 20), 200);
    /* A second agent joins; agent-a crashes (no more heartbeats). */
    assert_int_equal(rdt_register(&proc, "agent-b", 2, &eb), 0);
    json_t *as = NULL;
    int64_t crash = rdt_now_ms();
    for (int64_t until = crash + 10000;;) {
        json_t *b = heartbeat("agent-b", eb, &st);
        assert_int_equal(st, 200);
        as = json_incref(json_array_get(json_object_get(b, "assignments"), 0));
        json_decref(b);
        if (as != NULL)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(100);
    }
    fprintf(stderr, "task handed to agent-b %lld ms after agent-a's last heartbeat\n",
            (long long)(rdt_now_ms() - crash));
    /* Attempt 2, resuming from version 2. */
    assert_string_equal(json_string_value(json_object_get(as, "task_id")), TASK);
    assert_int_equal(json_integer_value(json_object_get(as, "attempt")), 2);
    assert_string_equal(json_string_value(json_object_get(as, "state")), "recovering");
    assert_int_equal(json_integer_value(rdt_json_path(as, "checkpoint.version")), 2);
    assert_int_equal(json_integer_value(rdt_json_path(as, "checkpoint.data.step")), 20);
    json_decref(as);

    /* The zombie is fenced everywhere. */
    json_decref(heartbeat("agent-a", ea, &st));
    assert_int_equal(st, 409);
    assert_int_equal(checkpoint(1, 3, 30), 409);
    assert_int_equal(task_post("complete", "{\"attempt\":1,\"result\":{\"by\":\"zombie\"}}", &r),
                     409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);
    /* The new attempt goes on and completes; the result is the new attempt's. */
    assert_int_equal(checkpoint(2, 3, 30), 200);
    assert_int_equal(task_post("complete", "{\"attempt\":2,\"result\":{\"by\":\"agent-b\"}}", &r),
                     200);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "result.by")), "agent-b");
    assert_string_equal(json_string_value(rdt_json_path(r.json, "state")), "completed");
    rdt_resp_free(&r);
    assert_int_equal(task_post("complete", "{\"attempt\":1,\"result\":{}}", &r), 409);
    rdt_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_survives_its_agent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
