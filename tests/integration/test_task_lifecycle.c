/*
 * The task life cycle on real engines (issue 17): an operator cancels a
 * running task (revoked from its agent, whose later writes are fenced, and
 * audited), retries a quarantined poison task (it resumes from its
 * checkpoint and completes), a deadline fails a task with a fault and
 * revokes it, the list filters by state, priority, node and label, and on a
 * three-replica cluster finished tasks are pruned after their retention
 * alike on every replica (a consistency check agrees).
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "rdt_ctest.h"

static struct rdt_proc proc;
static long long epoch_a;

static int setup(void **state)
{
    (void)state;
    /* A long lease (the test's agent heartbeats when it wants), and poison
     * after two failures. */
    if (rdt_proc_start(&proc, "fault_tolerance:\n"
                              "  detection:\n"
                              "    heartbeat_interval: 30s\n"
                              "  poison:\n"
                              "    max_failures: 2\n") != 0 ||
        rdt_wait_ready(&proc, 15000) != 0)
        return -1;
    return rdt_register(&proc, "worker-a", 4, &epoch_a) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
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

/* Waits until task `id` is in `state` at `attempt` (0: any); its JSON. */
static json_t *await_task(const char *id, const char *state, long long attempt)
{
    int64_t deadline = rdt_now_ms() + 10000 * rdt_time_factor();
    for (;;) {
        json_t *t = get_task(id);
        if (strcmp(json_string_value(json_object_get(t, "state")), state) == 0 &&
            (attempt == 0 || json_integer_value(json_object_get(t, "attempt")) == attempt))
            return t;
        if (rdt_now_ms() > deadline)
            fail_msg("task %s never became %s (attempt %lld): %s", id, state, attempt,
                     json_dumps(t, JSON_COMPACT));
        json_decref(t);
        rdt_sleep_ms(10);
    }
}

/* POSTs `body` to /api/v1/tasks/{id}/{verb}; the status (the answer in `r`). */
static long task_post(const char *id, const char *verb, const char *body, struct rdt_resp *r)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/%s", id, verb);
    assert_int_equal(rdt_post(&proc, RDT_H1, path, body, r), 0);
    return r->status;
}

static long put_checkpoint(const char *id, long long attempt, long long version, struct rdt_resp *r)
{
    char body[160], url[200];
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":%lld,\"data\":{\"step\":%lld}}",
             attempt, version, version);
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", proc.base_url, id);
    assert_int_equal(rdt_http(RDT_H2, "PUT", url, body, strlen(body), r), 0);
    return r->status;
}

/* Submits `body`; the new task's id into `id`. */
static void submit(const char *body, char id[64])
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", body, &r), 0);
    if (r.status != 201)
        fail_msg("submit %s: %ld %s", body, r.status, r.body);
    snprintf(id, 64, "%s", json_string_value(rdt_json_path(r.json, "task_id")));
    rdt_resp_free(&r);
}

/* The next heartbeat answer's revocation of `id`: its attempt, or 0. */
static long long revoked_attempt(const char *id)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_heartbeat(&proc, RDT_H1, "worker-a", epoch_a, 0, &r), 0);
    assert_int_equal(r.status, 200);
    long long got = 0;
    json_t *rvs = rdt_json_path(r.json, "revocations");
    for (size_t i = 0; i < json_array_size(rvs); i++)
        if (strcmp(json_string_value(rdt_json_path(json_array_get(rvs, i), "task_id")), id) == 0)
            got = json_integer_value(rdt_json_path(json_array_get(rvs, i), "attempt"));
    rdt_resp_free(&r);
    return got;
}

static void test_cancel_revokes_and_fences_a_running_task(void **state)
{
    (void)state;
    char id[64];
    submit("{\"payload\":{\"job\":\"cancel-me\"}}", id);
    json_decref(await_task(id, "assigned", 1));
    struct rdt_resp r = {0};
    assert_int_equal(put_checkpoint(id, 1, 1, &r), 200);
    rdt_resp_free(&r);

    assert_int_equal(task_post(id, "cancel", "{\"reason\":\"wrong input\"}", &r), 200);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "state")), "cancelled");
    assert_non_null(strstr(json_string_value(rdt_json_path(r.json, "error")), "wrong input"));
    assert_true(json_is_null(rdt_json_path(r.json, "node_id"))); /* no longer on an agent */
    rdt_resp_free(&r);
    /* The agent's writes of that attempt are fenced from here on. */
    assert_int_equal(put_checkpoint(id, 1, 2, &r), 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);
    assert_int_equal(task_post(id, "complete", "{\"attempt\":1,\"result\":{}}", &r), 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);
    assert_int_equal(task_post(id, "fail", "{\"attempt\":1,\"error\":\"late\"}", &r), 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);
    /* Its agent is told in its next heartbeat, once. */
    assert_int_equal(revoked_attempt(id), 1);
    assert_int_equal(revoked_attempt(id), 0);
    /* A finished task cannot be cancelled; the answer says why. */
    assert_int_equal(task_post(id, "cancel", "", &r), 409);
    assert_string_equal(rdt_err_code(&r), "conflict");
    const char *msg = json_string_value(rdt_json_path(r.json, "error.message"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "already cancelled"));
    rdt_resp_free(&r);
    assert_int_equal(task_post(id, "cancel", "{\"reason\":7}", &r), 400);
    rdt_resp_free(&r);
    assert_int_equal(task_post("8d7c5b8e-0000-4000-8000-000000000000", "cancel", "", &r), 404);
    rdt_resp_free(&r);
    /* The audit trail holds the cancel with its target. */
    char path[200];
    snprintf(path, sizeof(path), "/api/v1/audit?action=task_cancel&target=%s", id);
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *items = rdt_json_path(r.json, "items");
    assert_true(json_array_size(items) >= 1);
    bool ok = false;
    for (size_t i = 0; i < json_array_size(items); i++)
        ok = ok ||
             json_integer_value(rdt_json_path(json_array_get(items, i), "outcome.status")) == 200;
    if (!ok)
        fail_msg("no successful task_cancel of %s in the audit trail: %s", id, r.body);
    rdt_resp_free(&r);
}

static void test_retry_of_a_poison_task_resumes_and_completes(void **state)
{
    (void)state;
    char id[64];
    submit("{\"payload\":{\"job\":\"flaky\"},\"max_attempts\":5}", id);
    json_decref(await_task(id, "assigned", 1));
    struct rdt_resp r = {0};
    assert_int_equal(put_checkpoint(id, 1, 3, &r), 200);
    rdt_resp_free(&r);
    /* Retry refused while it is not failed. */
    assert_int_equal(task_post(id, "retry", "", &r), 409);
    assert_string_equal(rdt_err_code(&r), "conflict");
    rdt_resp_free(&r);
    /* Two failures within the window: quarantined as poison. */
    assert_int_equal(
        task_post(id, "fail", "{\"attempt\":1,\"error\":\"segfault\",\"retryable\":true}", &r),
        200);
    rdt_resp_free(&r);
    json_decref(await_task(id, "assigned", 2));
    assert_int_equal(
        task_post(id, "fail", "{\"attempt\":2,\"error\":\"segfault\",\"retryable\":true}", &r),
        200);
    rdt_resp_free(&r);
    json_t *t = await_task(id, "failed", 0);
    assert_non_null(strstr(json_string_value(json_object_get(t, "error")), "poison"));
    json_decref(t);

    assert_int_equal(task_post(id, "retry", "", &r), 200);
    rdt_resp_free(&r);
    /* Its poison_task fault is resolved by the retry. */
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/faults/records?fault_type=poison_task", &r),
                     0);
    json_t *items = rdt_json_path(r.json, "items");
    bool resolved = false;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *x = json_array_get(items, i);
        const char *tid = json_string_value(rdt_json_path(x, "metadata.task_id"));
        if (tid != NULL && strcmp(tid, id) == 0)
            resolved = strcmp(json_string_value(rdt_json_path(x, "status")), "resolved") == 0;
    }
    if (!resolved)
        fail_msg("the poison_task fault of %s is not resolved: %s", id, r.body);
    rdt_resp_free(&r);
    /* Placed again on a fresh attempt (3 fenced the old ones, 4 is its
     * placement), with its checkpoint, and not quarantined again. */
    json_decref(await_task(id, "assigned", 4));
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", id);
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "version")), 3);
    rdt_resp_free(&r);
    assert_int_equal(task_post(id, "complete", "{\"attempt\":2,\"result\":{}}", &r), 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);
    assert_int_equal(put_checkpoint(id, 4, 4, &r), 200);
    rdt_resp_free(&r);
    assert_int_equal(task_post(id, "complete", "{\"attempt\":4,\"result\":{\"ok\":true}}", &r),
                     200);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "state")), "completed");
    rdt_resp_free(&r);
    assert_int_equal(task_post(id, "retry", "", &r), 409);
    rdt_resp_free(&r);
}

static void test_deadline_fails_the_task_with_a_fault(void **state)
{
    (void)state;
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", "{\"deadline\":\"soon\"}", &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.field")),
                        "deadline");
    rdt_resp_free(&r);
    /* Due in 1.5-2.5 s: placed, running, then failed with a fault and revoked. */
    time_t due = (time_t)((rdt_now_ms() + 2500) / 1000);
    struct tm tm;
    gmtime_r(&due, &tm);
    char when[40], body[128], id[64];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof(body), "{\"payload\":{},\"deadline\":\"%s\"}", when);
    submit(body, id);
    json_t *t = await_task(id, "assigned", 1);
    const char *dl = json_string_value(json_object_get(t, "deadline"));
    assert_non_null(dl);
    assert_memory_equal(dl, when, 19); /* the same second (the API writes milliseconds) */
    json_decref(t);
    assert_int_equal(put_checkpoint(id, 1, 1, &r), 200);
    rdt_resp_free(&r);
    t = await_task(id, "failed", 1);
    assert_non_null(strstr(json_string_value(json_object_get(t, "error")), "deadline passed"));
    json_decref(t);
    assert_int_equal(revoked_attempt(id), 1);
    assert_int_equal(put_checkpoint(id, 1, 2, &r), 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);
    /* The fault record names the task and its deadline. */
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/faults/records?limit=1000", &r), 0);
    json_t *items = rdt_json_path(r.json, "items");
    const json_t *fault = NULL;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *x = json_array_get(items, i);
        const char *tid = json_string_value(rdt_json_path(x, "metadata.task_id"));
        if (tid != NULL && strcmp(tid, id) == 0)
            fault = x;
    }
    assert_non_null(fault);
    assert_string_equal(json_string_value(rdt_json_path((json_t *)fault, "fault_type")), "hang");
    assert_string_equal(json_string_value(rdt_json_path((json_t *)fault, "metadata.reason")),
                        "deadline_exceeded");
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "\nrecoveryd_task_deadlines_total 1\n"));
    rdt_resp_free(&r);
}

/* The ids of the listed tasks at `query`, through every page of 2. */
static size_t list_count(const char *query)
{
    size_t n = 0;
    char cursor[64] = "";
    for (int pages = 0; pages < 100; pages++) {
        char path[400];
        snprintf(path, sizeof(path), "/api/v1/tasks?limit=2&%s%s%s", query,
                 cursor[0] ? "&cursor=" : "", cursor);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
        if (r.status != 200)
            fail_msg("%s: %ld %s", path, r.status, r.body);
        n += json_array_size(rdt_json_path(r.json, "items"));
        json_t *next = rdt_json_path(r.json, "next_cursor");
        bool more = json_is_string(next);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        rdt_resp_free(&r);
        if (!more)
            return n;
    }
    fail_msg("too many pages");
    return 0;
}

static void test_list_filters(void **state)
{
    (void)state;
    char id[64];
    /* Labels no agent has: they stay pending. */
    submit("{\"priority\":7,\"requirements\":{\"labels\":{\"zone\":\"mars\",\"tier\":\"gold\"}}}",
           id);
    submit("{\"priority\":7,\"requirements\":{\"labels\":{\"zone\":\"mars\"}}}", id);
    submit("{\"priority\":2,\"requirements\":{\"labels\":{\"zone\":\"mars\",\"tier\":\"iron\"}}}",
           id);
    submit("{\"priority\":2,\"requirements\":{\"labels\":{\"zone\":\"marsh\"}}}", id);
    assert_int_equal(list_count("label=zone%3Dmars"), 3);
    assert_int_equal(list_count("label=zone=mars&priority=7"), 2);
    assert_int_equal(list_count("label=zone=mars&priority=7&state=pending"), 2);
    assert_int_equal(list_count("label=tier=gold&state=pending"), 1);
    assert_int_equal(list_count("label=zone=mar"), 0); /* whole values only */
    assert_int_equal(list_count("label=zone=marsh&priority=2"), 1);
    assert_int_equal(list_count("label=zone=mars&state=running"), 0);
    assert_int_equal(list_count("node_id=worker-a&label=zone=mars"), 0);
    assert_int_equal(list_count("state=completed&node_id=worker-a"), 0); /* finished: no node */
    const char *bad[] = {"priority=10", "priority=x", "label=novalue", "label==x", "state=done"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/tasks?%s", bad[i]);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
        if (r.status != 400)
            fail_msg("%s: %ld, expected 400", path, r.status);
        assert_string_equal(rdt_err_code(&r), "bad_request");
        rdt_resp_free(&r);
    }
}

/* ---- retention on three replicas ---------------------------------------- */

static void test_retention_prunes_alike_on_every_replica(void **state)
{
    (void)state;
    struct rdt_cluster cl = {0};
    int first = 0;
    assert_int_equal(
        rdt_cluster_start(&cl, 3, "fault_tolerance:\n  tasks:\n    retention: 1s\n", NULL), 0);
    char ids[4][64];
    for (int i = 0; i < 4; i++) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_cluster_request(&cl, &first, "POST", "/api/v1/tasks",
                                             "{\"requirements\":{\"labels\":{\"zone\":\"x\"}}}",
                                             10000, &r),
                         0);
        assert_int_equal(r.status, 201);
        snprintf(ids[i], 64, "%s", json_string_value(rdt_json_path(r.json, "task_id")));
        rdt_resp_free(&r);
    }
    /* Three finish (cancelled); the fourth stays pending and stays. */
    for (int i = 0; i < 3; i++) {
        char path[160];
        snprintf(path, sizeof(path), "/api/v1/tasks/%s/cancel", ids[i]);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_cluster_request(&cl, &first, "POST", path, NULL, 10000, &r), 0);
        assert_int_equal(r.status, 200);
        rdt_resp_free(&r);
    }
    int64_t until = rdt_now_ms() + 15000 * rdt_time_factor();
    for (int i = 0; i < 3; i++) {
        char path[160];
        snprintf(path, sizeof(path), "/api/v1/tasks/%s", ids[i]);
        for (;;) {
            struct rdt_resp r = {0};
            assert_int_equal(rdt_cluster_request(&cl, &first, "GET", path, NULL, 10000, &r), 0);
            long st = r.status;
            rdt_resp_free(&r);
            if (st == 404)
                break;
            assert_int_equal(st, 200);
            assert_true(rdt_now_ms() < until);
            rdt_sleep_ms(100);
        }
    }
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s", ids[3]);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_cluster_request(&cl, &first, "GET", path, NULL, 10000, &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    /* Every replica pruned the same tasks: a check agrees on one digest. */
    char check_id[64] = "";
    while (check_id[0] == '\0') {
        assert_int_equal(
            rdt_cluster_request(&cl, &first, "POST", "/api/v1/consistency/check", NULL, 10000, &r),
            0);
        if (r.status == 202)
            snprintf(check_id, sizeof(check_id), "%s",
                     json_string_value(rdt_json_path(r.json, "check_id")));
        else
            assert_int_equal(r.status, 409); /* a scheduled one is being gathered */
        rdt_resp_free(&r);
        assert_true(rdt_now_ms() < until);
        if (check_id[0] == '\0')
            rdt_sleep_ms(100);
    }
    snprintf(path, sizeof(path), "/api/v1/consistency/checks/%s", check_id);
    for (;;) {
        assert_int_equal(rdt_cluster_request(&cl, &first, "GET", path, NULL, 10000, &r), 0);
        const char *st = json_string_value(rdt_json_path(r.json, "status"));
        if (st != NULL && strcmp(st, "pending") != 0) {
            assert_string_equal(st, "consistent");
            assert_int_equal(json_object_size(rdt_json_path(r.json, "digests")), 3);
            rdt_resp_free(&r);
            break;
        }
        rdt_resp_free(&r);
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(100);
    }
    /* The leader counted what its prunes dropped: the three tasks, once. */
    long long pruned = 0;
    for (int k = 0; k < cl.n; k++) {
        assert_int_equal(rdt_get(&cl.procs[k], RDT_H1, "/metrics", &r), 0);
        const char *m = strstr(r.body, "\nrecoveryd_tasks_pruned_total ");
        assert_non_null(m);
        pruned += atoll(m + strlen("\nrecoveryd_tasks_pruned_total "));
        rdt_resp_free(&r);
    }
    assert_int_equal(pruned, 3);
    rdt_cluster_cleanup(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_revokes_and_fences_a_running_task),
        cmocka_unit_test(test_retry_of_a_poison_task_resumes_and_completes),
        cmocka_unit_test(test_deadline_fails_the_task_with_a_fault),
        cmocka_unit_test(test_list_filters),
    };
    const struct CMUnitTest cluster_tests[] = {
        cmocka_unit_test(test_retention_prunes_alike_on_every_replica),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return rc != 0 ? rc : cmocka_run_group_tests(cluster_tests, NULL, NULL);
}
