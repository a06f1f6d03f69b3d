/*
 * Tasks over the API on the real binary: idempotent submit, placement on a
 * working agent, assignment in the heartbeat answer, fenced and versioned
 * checkpoints, completion and retryable failure, and bad input.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define TASK "5e0a1c2b-7d4f-4a8e-9b1c-2d3e4f5a6b7c"

static struct rdt_proc proc;
static long long epoch_a;

static int setup(void **state)
{
    if (rdt_proc_start(&proc, "fault_tolerance:\n  detection:\n    heartbeat_interval: 30s\n") !=
            0 ||
        rdt_wait_ready(&proc, 15000) != 0)
        return -1;
    return rdt_register(&proc, "worker-a", 2, &epoch_a) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    rdt_proc_cleanup(&proc);
    return 0;
}

static json_t *get_task(const char *id)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s", id);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H2, path, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *t = json_incref(r.json);
    rdt_resp_free(&r);
    return t;
}

static void await_task_state(const char *id, const char *state)
{
    int64_t deadline = rdt_now_ms() + 5000;
    for (;;) {
        json_t *t = get_task(id);
        bool ok = strcmp(json_string_value(json_object_get(t, "state")), state) == 0;
        json_decref(t);
        if (ok)
            return;
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(10);
    }
}

static long put_checkpoint(long long attempt, long long version, const char *data,
                           struct rdt_resp *r)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":%lld,\"data\":%s}", attempt,
             version, data);
    char url[160];
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", proc.base_url, TASK);
    assert_int_equal(rdt_http(RDT_H2, "PUT", url, body, strlen(body), r), 0);
    return r->status;
}

/* `n` identical checkpoint writes in flight at once (the retries of a
 * client that timed out twice): every one is answered 200 with the version. */
static void concurrent_identical_checkpoints(int n, const char *body, long long version)
{
    char url[160];
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", proc.base_url, TASK);
    CURLM *multi = curl_multi_init();
    assert_non_null(multi);
    CURL *easy[8];
    struct rdt_resp resp[8];
    memset(resp, 0, sizeof(resp));
    assert_true(n <= 8);
    for (int i = 0; i < n; i++) {
        easy[i] =
            rdt_easy_new(i % 2 ? RDT_H2 : RDT_H1, "PUT", url, body, strlen(body), 10000, &resp[i]);
        assert_non_null(easy[i]);
        assert_int_equal(curl_multi_add_handle(multi, easy[i]), CURLM_OK);
    }
    int running = n;
    int64_t deadline = rdt_now_ms() + 10000;
    while (running > 0) {
        assert_int_equal(curl_multi_perform(multi, &running), CURLM_OK);
        if (running > 0)
            assert_int_equal(curl_multi_poll(multi, NULL, 0, 10, NULL), CURLM_OK);
        assert_true(rdt_now_ms() < deadline);
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        for (int i = 0; i < n; i++)
            if (easy[i] == msg->easy_handle)
                assert_int_equal(rdt_easy_finish(easy[i], msg->data.result, &resp[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        if (resp[i].status != 200)
            fail_msg("identical write %d of %d: %ld %s", i + 1, n, resp[i].status, resp[i].body);
        assert_int_equal(json_integer_value(rdt_json_path(resp[i].json, "version")), version);
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
        rdt_resp_free(&resp[i]);
    }
    curl_multi_cleanup(multi);
}

static void test_task_lifecycle(void **state)
{
    struct rdt_resp r = {0};
    const char *submit = "{\"task_id\":\"" TASK "\",\"priority\":9,\"critical\":true,"
                         "\"payload\":{\"prompt\":\"summarise the incident\"},"
                         "\"requirements\":{\"slots\":1}}";
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", submit, &r), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "task_id")), TASK);
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "priority")), 9);
    assert_true(json_is_true(rdt_json_path(r.json, "critical")));
    rdt_resp_free(&r);
    /* Idempotent: the same id answers 200 with the existing task. */
    assert_int_equal(rdt_post(&proc, RDT_H2, "/api/v1/tasks", submit, &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);

    /* Placed on the only agent, handed over in its heartbeat answer. */
    await_task_state(TASK, "assigned");
    json_t *t = get_task(TASK);
    assert_string_equal(json_string_value(json_object_get(t, "node_id")), "worker-a");
    assert_int_equal(json_integer_value(json_object_get(t, "attempt")), 1);
    json_decref(t);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/nodes/worker-a", &r), 0);
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "tasks")), 1);
    rdt_resp_free(&r);
    assert_int_equal(rdt_heartbeat(&proc, RDT_H2, "worker-a", epoch_a, 1, &r), 0);
    json_t *as = rdt_json_path(r.json, "assignments");
    assert_int_equal(json_array_size(as), 1);
    assert_string_equal(json_string_value(rdt_json_path(json_array_get(as, 0), "task_id")), TASK);
    assert_string_equal(json_string_value(rdt_json_path(json_array_get(as, 0), "payload.prompt")),
                        "summarise the incident");
    rdt_resp_free(&r);

    /* Checkpoints: versioned and fenced by attempt. */
    assert_int_equal(put_checkpoint(1, 1, "{\"step\":1}", &r), 200);
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "version")), 1);
    rdt_resp_free(&r);
    await_task_state(TASK, "running");
    /* The same write again (a retry after a timeout): answered as the first. */
    assert_int_equal(put_checkpoint(1, 1, "{\"step\":1}", &r), 200);
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "version")), 1);
    rdt_resp_free(&r);
    assert_int_equal(put_checkpoint(1, 1, "{\"step\":99}", &r), 409);
    assert_string_equal(rdt_err_code(&r), "stale_version");
    rdt_resp_free(&r);
    assert_int_equal(put_checkpoint(2, 5, "{\"step\":99}", &r), 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);
    assert_int_equal(put_checkpoint(1, 2, "{\"step\":2,\"notes\":[\"a\",\"b\"]}", &r), 200);
    rdt_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", TASK);
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "version")), 2);
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "data.step")), 2);
    assert_non_null(strstr(json_string_value(rdt_json_path(r.json, "checksum")), "fnv1a64:"));
    rdt_resp_free(&r);
    t = get_task(TASK);
    assert_int_equal(json_integer_value(rdt_json_path(t, "checkpoint.version")), 2);
    json_decref(t);
    /* Identical writes of a new version in flight together: the first
     * applied stores it, the others are the same write again. */
    concurrent_identical_checkpoints(4, "{\"attempt\":1,\"version\":3,\"data\":{\"step\":3}}", 3);
    t = get_task(TASK);
    assert_int_equal(json_integer_value(rdt_json_path(t, "checkpoint.version")), 3);
    json_decref(t);

    /* Completion: a stale attempt is fenced, the current one completes, twice is fine. */
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/complete", TASK);
    assert_int_equal(rdt_post(&proc, RDT_H1, path, "{\"attempt\":3,\"result\":{}}", &r), 0);
    assert_int_equal(r.status, 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(
            rdt_post(&proc, RDT_H2, path, "{\"attempt\":1,\"result\":{\"summary\":\"done\"}}", &r),
            0);
        assert_int_equal(r.status, 200);
        assert_string_equal(json_string_value(rdt_json_path(r.json, "state")), "completed");
        assert_string_equal(json_string_value(rdt_json_path(r.json, "result.summary")), "done");
        rdt_resp_free(&r);
    }
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/nodes/worker-a", &r), 0);
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "tasks")), 0);
    rdt_resp_free(&r);
    /* Listed by state. */
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/tasks?state=completed", &r), 0);
    assert_int_equal(json_array_size(rdt_json_path(r.json, "items")), 1);
    rdt_resp_free(&r);
}

static void test_retryable_failure_goes_back_to_pending(void **state)
{
    struct rdt_resp r = {0};
    assert_int_equal(
        rdt_post(&proc, RDT_H1, "/api/v1/tasks", "{\"payload\":{\"n\":1},\"max_attempts\":2}", &r),
        0);
    assert_int_equal(r.status, 201);
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(rdt_json_path(r.json, "task_id")));
    rdt_resp_free(&r);
    await_task_state(id, "assigned");
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/fail", id);
    assert_int_equal(rdt_post(&proc, RDT_H1, path,
                              "{\"attempt\":1,\"error\":\"model timeout\",\"retryable\":true}", &r),
                     0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    /* Placed again as attempt 2, then its failure is final (max_attempts 2). */
    int64_t deadline = rdt_now_ms() + 5000;
    for (;;) {
        json_t *t = get_task(id);
        long long attempt = json_integer_value(json_object_get(t, "attempt"));
        json_decref(t);
        if (attempt == 2)
            break;
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(10);
    }
    assert_int_equal(rdt_post(&proc, RDT_H1, path,
                              "{\"attempt\":2,\"error\":\"model timeout\",\"retryable\":true}", &r),
                     0);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "state")), "failed");
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error")), "model timeout");
    rdt_resp_free(&r);
}

/* A checkpoint from the attempt whose node left: the task went back to
 * pending, and the refusal says so (it said "attempt is not the current
 * attempt 1" although 1 was the attempt sent). */
static void test_fenced_answer_says_where_the_task_is(void **state)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes",
                              "{\"node_id\":\"worker-b\",\"capacity\":{\"slots\":1},"
                              "\"labels\":{\"pool\":\"b\"}}",
                              &r),
                     0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks",
                              "{\"payload\":{},\"requirements\":{\"labels\":{\"pool\":\"b\"}}}",
                              &r),
                     0);
    assert_int_equal(r.status, 201);
    char id[64], path[160];
    snprintf(id, sizeof(id), "%s", json_string_value(rdt_json_path(r.json, "task_id")));
    rdt_resp_free(&r);
    await_task_state(id, "assigned");
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", id);
    const char *ck = "{\"attempt\":2,\"version\":1,\"data\":{}}";
    char url[256];
    snprintf(url, sizeof(url), "%s%s", proc.base_url, path);
    assert_int_equal(rdt_http(RDT_H1, "PUT", url, ck, strlen(ck), &r), 0);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(r.body, "attempt 2 may not write to task"));
    assert_non_null(strstr(r.body, "is attempt 1, assigned on node worker-b"));
    rdt_resp_free(&r);

    /* Its node leaves: nothing else has pool b, so the task waits. */
    assert_int_equal(rdt_delete(&proc, RDT_H1, "/api/v1/nodes/worker-b", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    await_task_state(id, "pending");
    ck = "{\"attempt\":1,\"version\":1,\"data\":{}}";
    assert_int_equal(rdt_http(RDT_H1, "PUT", url, ck, strlen(ck), &r), 0);
    assert_int_equal(r.status, 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    assert_non_null(strstr(r.body, "is pending (attempt 1 was taken back from its node"));
    assert_non_null(strstr(r.body, "attempt 1 may no longer write to it"));
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.state")), "pending");
    rdt_resp_free(&r);
}

/* The heartbeat answer hands a node's tasks over most urgent first
 * (critical, priority, age), whatever the order they were placed in (it
 * was the reverse of placement). */
static void test_assignments_most_urgent_first(void **state)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes",
                              "{\"node_id\":\"worker-c\",\"capacity\":{\"slots\":4},"
                              "\"labels\":{\"pool\":\"c\"}}",
                              &r),
                     0);
    assert_int_equal(r.status, 201);
    long long epoch = json_integer_value(rdt_json_path(r.json, "epoch"));
    rdt_resp_free(&r);
    static const char *const bodies[] = {
        "{\"priority\":1,\"payload\":{\"n\":\"low\"},\"requirements\":{\"labels\":{\"pool\":\"c\"}}"
        "}",
        "{\"priority\":9,\"payload\":{\"n\":\"high\"},\"requirements\":{\"labels\":{\"pool\":\"c\"}"
        "}}",
        "{\"priority\":5,\"critical\":true,\"payload\":{\"n\":\"critical\"},"
        "\"requirements\":{\"labels\":{\"pool\":\"c\"}}}",
        "{\"priority\":9,\"payload\":{\"n\":\"high-later\"},"
        "\"requirements\":{\"labels\":{\"pool\":\"c\"}}}",
    };
    char ids[4][64];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", bodies[i], &r), 0);
        assert_int_equal(r.status, 201);
        snprintf(ids[i], sizeof(ids[i]), "%s", json_string_value(rdt_json_path(r.json, "task_id")));
        rdt_resp_free(&r);
        await_task_state(ids[i], "assigned");
    }
    assert_int_equal(rdt_heartbeat(&proc, RDT_H1, "worker-c", epoch, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *as = rdt_json_path(r.json, "assignments");
    assert_int_equal(json_array_size(as), 4);
    static const char *const want[] = {"critical", "high", "high-later", "low"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(json_string_value(rdt_json_path(json_array_get(as, i), "payload.n")),
                            want[i]);
    rdt_resp_free(&r);
}

/* Issue 14: a task taken from an agent and placed back on it (here its
 * retryable failure; a pause and resume takes the same path) was listed in
 * one heartbeat answer both as assigned and as revoked; an agent applying
 * the revocation last dropped the live attempt. The answer names the
 * attempt revoked and never lists the task in both. */
static void test_task_placed_back_is_not_revoked(void **state)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes",
                              "{\"node_id\":\"worker-d\",\"capacity\":{\"slots\":1},"
                              "\"labels\":{\"pool\":\"d\"}}",
                              &r),
                     0);
    assert_int_equal(r.status, 201);
    long long epoch = json_integer_value(rdt_json_path(r.json, "epoch"));
    rdt_resp_free(&r);
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks",
                              "{\"payload\":{},\"requirements\":{\"labels\":{\"pool\":\"d\"}}}",
                              &r),
                     0);
    assert_int_equal(r.status, 201);
    char id[64], path[160];
    snprintf(id, sizeof(id), "%s", json_string_value(rdt_json_path(r.json, "task_id")));
    rdt_resp_free(&r);
    await_task_state(id, "assigned");
    assert_int_equal(rdt_heartbeat(&proc, RDT_H1, "worker-d", epoch, 1, &r), 0);
    assert_int_equal(json_array_size(rdt_json_path(r.json, "assignments")), 1);
    assert_int_equal(json_array_size(rdt_json_path(r.json, "revoked")), 0);
    assert_int_equal(json_array_size(rdt_json_path(r.json, "revocations")), 0);
    rdt_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/fail", id);
    assert_int_equal(rdt_post(&proc, RDT_H1, path,
                              "{\"attempt\":1,\"error\":\"gpu lost\",\"retryable\":true}", &r),
                     0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    /* Placed back on worker-d (the only agent of pool d) as attempt 2. */
    int64_t deadline = rdt_now_ms() + 5000;
    for (;;) {
        json_t *t = get_task(id);
        bool back = json_integer_value(json_object_get(t, "attempt")) == 2 &&
                    strcmp(json_string_value(json_object_get(t, "state")), "assigned") == 0;
        json_decref(t);
        if (back)
            break;
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(10);
    }
    assert_int_equal(rdt_heartbeat(&proc, RDT_H1, "worker-d", epoch, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *as = rdt_json_path(r.json, "assignments");
    assert_int_equal(json_array_size(as), 1);
    assert_string_equal(json_string_value(rdt_json_path(json_array_get(as, 0), "task_id")), id);
    assert_int_equal(json_integer_value(rdt_json_path(json_array_get(as, 0), "attempt")), 2);
    json_t *rv = rdt_json_path(r.json, "revoked");
    for (size_t i = 0; i < json_array_size(rv); i++)
        if (strcmp(json_string_value(json_array_get(rv, i)), id) == 0)
            fail_msg("task %s is both assigned and revoked: %s", id, r.body);
    json_t *rvs = rdt_json_path(r.json, "revocations");
    assert_int_equal(json_array_size(rvs), 1);
    assert_string_equal(json_string_value(rdt_json_path(json_array_get(rvs, 0), "task_id")), id);
    assert_int_equal(json_integer_value(rdt_json_path(json_array_get(rvs, 0), "attempt")), 1);
    rdt_resp_free(&r);
    /* Told once. */
    assert_int_equal(rdt_heartbeat(&proc, RDT_H1, "worker-d", epoch, 1, &r), 0);
    assert_int_equal(json_array_size(rdt_json_path(r.json, "revocations")), 0);
    rdt_resp_free(&r);
}

static void test_bad_task_input(void **state)
{
    struct rdt_resp r = {0};
    const struct {
        const char *method, *path, *body;
        long status;
        const char *field;
    } cases[] = {
        {"POST", "/api/v1/tasks", "{\"priority\":10}", 400, "priority"},
        {"POST", "/api/v1/tasks", "{\"task_id\":\"not-a-uuid\"}", 400, "task_id"},
        {"POST", "/api/v1/tasks", "{\"requirements\":{\"slots\":0}}", 400, "requirements.slots"},
        {"POST", "/api/v1/tasks", "{\"critical\":\"yes\"}", 400, "critical"},
        {"POST", "/api/v1/tasks", "[1,2]", 400, NULL},
        {"GET", "/api/v1/tasks/123", NULL, 400, "task_id"},
        {"GET", "/api/v1/tasks/00000000-0000-4000-8000-000000000000", NULL, 404, NULL},
        {"GET", "/api/v1/tasks?state=sleeping", NULL, 400, "state"},
        {"PUT", "/api/v1/tasks/" TASK "/checkpoint", "{\"attempt\":1}", 400, "version"},
        {"POST", "/api/v1/tasks/" TASK "/fail", "{\"attempt\":1}", 400, "error"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char url[256];
        snprintf(url, sizeof(url), "%s%s", proc.base_url, cases[i].path);
        assert_int_equal(rdt_http(RDT_H1, cases[i].method, url, cases[i].body,
                                  cases[i].body ? strlen(cases[i].body) : 0, &r),
                         0);
        if (r.status != cases[i].status)
            fail_msg("%s %s: %ld, expected %ld (%s)", cases[i].method, cases[i].path, r.status,
                     cases[i].status, r.body);
        if (cases[i].field)
            assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.field")),
                                cases[i].field);
        rdt_resp_free(&r);
    }
    /* A checkpoint over the size limit: 413 as JSON. */
    size_t big = 600 * 1024;
    char *body = malloc(big + 64);
    int n = snprintf(body, 64, "{\"attempt\":1,\"version\":9,\"data\":\"");
    memset(body + n, 'x', big);
    strcpy(body + n + big, "\"}");
    char url[256];
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", proc.base_url, TASK);
    assert_int_equal(rdt_http(RDT_H2, "PUT", url, body, strlen(body), &r), 0);
    assert_int_equal(r.status, 413);
    assert_string_equal(rdt_err_code(&r), "too_large");
    rdt_resp_free(&r);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_lifecycle),
        cmocka_unit_test(test_retryable_failure_goes_back_to_pending),
        cmocka_unit_test(test_fenced_answer_says_where_the_task_is),
        cmocka_unit_test(test_assignments_most_urgent_first),
        cmocka_unit_test(test_task_placed_back_is_not_revoked),
        cmocka_unit_test(test_bad_task_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
