/*
 * Consistency checks on three real replicas (DESIGN.md decision 9): the
 * leader runs them on its schedule and on POST /api/v1/consistency/check;
 * every replica digests its state when it applies the check's log entry, so
 * all three report the same digest at the same index while writes go on;
 * the verdict is a record every replica serves. The replicas run the
 * fault-injection build (recoveryd-fi), whose /debug/ routes corrupt one
 * replica's state on purpose: the next check names it, and a critical
 * data_corruption fault records it.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rdt_ctest.h"

static struct rdt_cluster cl;
static int first = 0;

static const char extra[] = "fault_tolerance:\n"
                            "  backup:\n"
                            "    consistency_check_interval: 1s\n"
                            "plugins:\n"
                            "  instances:\n"
                            "    - {name: heartbeat, required: true}\n";

static int setup(void **state)
{
    (void)state;
    cl.binary = RD_BINARY_FI;
    return rdt_cluster_start(&cl, 3, extra, NULL);
}

static int teardown(void **state)
{
    (void)state;
    if (getenv("RDT_VERBOSE"))
        for (int i = 0; i < cl.n; i++)
            rdt_proc_print_log_tail(&cl.procs[i], 40);
    rdt_cluster_cleanup(&cl);
    return 0;
}

static void write_agents(int from, int n)
{
    for (int i = from; i < from + n; i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"node_id\":\"cons-%d\",\"capacity\":{\"slots\":2}}", i);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_cluster_request(&cl, &first, "POST", "/api/v1/nodes", body, 10000, &r),
                         0);
        assert_int_equal(r.status, 201);
        rdt_resp_free(&r);
    }
}

/* GET `path` on the leader until the check's status is not pending; its
 * JSON, or NULL after `timeout_ms`. */
static json_t *verdict(const char *check_id, int timeout_ms)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/consistency/checks/%s", check_id);
    int64_t until = rdt_now_ms() + timeout_ms;
    while (rdt_now_ms() < until) {
        struct rdt_resp r = {0};
        if (rdt_cluster_request(&cl, &first, "GET", path, NULL, 5000, &r) == 0 && r.status == 200) {
            const char *st = json_string_value(json_object_get(r.json, "status"));
            if (st != NULL && strcmp(st, "pending") != 0) {
                json_t *j = json_incref(r.json);
                rdt_resp_free(&r);
                return j;
            }
        }
        rdt_resp_free(&r);
        rdt_sleep_ms(50);
    }
    return NULL;
}

/* Every replica's digest in the verdict, and each replica's own /local
 * answer, are one and the same value. */
static void assert_all_agree(json_t *check)
{
    assert_string_equal(json_string_value(json_object_get(check, "status")), "consistent");
    json_t *digests = json_object_get(check, "digests");
    assert_int_equal(json_object_size(digests), 3);
    const char *want = json_string_value(json_object_get(digests, "1"));
    assert_non_null(want);
    assert_int_equal(strlen(want), 16);
    for (int i = 1; i <= 3; i++) {
        char key[4];
        snprintf(key, sizeof(key), "%d", i);
        assert_string_equal(json_string_value(json_object_get(digests, key)), want);
    }
    assert_int_equal(json_array_size(json_object_get(check, "diverged")), 0);
    const char *id = json_string_value(json_object_get(check, "check_id"));
    json_int_t index = json_integer_value(json_object_get(check, "index"));
    for (int i = 0; i < cl.n; i++) {
        char path[160];
        snprintf(path, sizeof(path), "/api/v1/consistency/checks/%s/local", id);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&cl.procs[i], RDT_H1, path, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(json_string_value(json_object_get(r.json, "digest")), want);
        assert_int_equal(json_integer_value(json_object_get(r.json, "index")), index);
        assert_int_equal(json_integer_value(json_object_get(r.json, "replica_id")), i + 1);
        rdt_resp_free(&r);
    }
}

static void test_triggered_check_agrees_at_one_index(void **state)
{
    write_agents(0, 20);
    struct rdt_resp r = {0};
    assert_int_equal(
        rdt_cluster_request(&cl, &first, "POST", "/api/v1/consistency/check", NULL, 10000, &r), 0);
    /* A scheduled check may be being gathered right now: then 409, retry. */
    int64_t until = rdt_now_ms() + 15000 * rdt_time_factor();
    while (r.status == 409 && rdt_now_ms() < until) {
        rdt_resp_free(&r);
        rdt_sleep_ms(100);
        assert_int_equal(
            rdt_cluster_request(&cl, &first, "POST", "/api/v1/consistency/check", NULL, 10000, &r),
            0);
    }
    assert_int_equal(r.status, 202);
    const char *id = json_string_value(json_object_get(r.json, "check_id"));
    assert_non_null(id);
    char check_id[64];
    snprintf(check_id, sizeof(check_id), "%s", id);
    assert_true(json_integer_value(json_object_get(r.json, "index")) > 0);
    rdt_resp_free(&r);
    /* Writes go on while the replicas report. */
    write_agents(20, 10);
    json_t *check = verdict(check_id, 15000 * rdt_time_factor());
    assert_non_null(check);
    assert_all_agree(check);
    json_decref(check);
}

/* The schedule (1 s here) runs checks by itself; the list shows them newest
 * first, each consistent, and pages with next_cursor. */
static void test_scheduled_checks_are_listed(void **state)
{
    int64_t until = rdt_now_ms() + 20000 * rdt_time_factor();
    size_t done = 0;
    json_t *items = NULL;
    while (rdt_now_ms() < until) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_cluster_request(&cl, &first, "GET",
                                             "/api/v1/consistency/checks?status=consistent", NULL,
                                             5000, &r),
                         0);
        assert_int_equal(r.status, 200);
        done = json_array_size(json_object_get(r.json, "items"));
        if (done >= 3) {
            items = json_incref(json_object_get(r.json, "items"));
            rdt_resp_free(&r);
            break;
        }
        rdt_resp_free(&r);
        rdt_sleep_ms(200);
    }
    assert_non_null(items);
    json_int_t prev = INT64_MAX;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *c = json_array_get(items, i);
        json_int_t index = json_integer_value(json_object_get(c, "index"));
        assert_true(index < prev); /* newest first */
        prev = index;
        assert_all_agree(c);
    }
    json_decref(items);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_cluster_request(&cl, &first, "GET", "/api/v1/consistency/checks?limit=1",
                                         NULL, 5000, &r),
                     0);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_true(json_is_string(json_object_get(r.json, "next_cursor")));
    rdt_resp_free(&r);
    /* And the metric counts them on the leader. */
    int leader = rdt_cluster_leader(&cl, 5000);
    assert_true(leader >= 0);
    assert_int_equal(rdt_get(&cl.procs[leader], RDT_H1, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "recoveryd_consistency_diverged_replicas 0\n"));
    assert_non_null(strstr(r.body, "recoveryd_consistency_checks_total{status=\"consistent\"}"));
    rdt_resp_free(&r);
}

static void test_unknown_check_is_404(void **state)
{
    struct rdt_resp r = {0};
    assert_int_equal(
        rdt_get(&cl.procs[0], RDT_H1,
                "/api/v1/consistency/checks/00000000-0000-4000-8000-000000000000/local", &r),
        0);
    assert_int_equal(r.status, 404);
    rdt_resp_free(&r);
    assert_int_equal(rdt_cluster_request(&cl, &first, "GET",
                                         "/api/v1/consistency/checks/not-a-check", NULL, 5000, &r),
                     0);
    assert_int_equal(r.status, 404);
    rdt_resp_free(&r);
}

/* Starts a check through the cluster (retrying while one is being
 * committed) and returns its verdict. */
static json_t *check_now(void)
{
    struct rdt_resp r = {0};
    int64_t until = rdt_now_ms() + 15000 * rdt_time_factor();
    do {
        rdt_resp_free(&r);
        assert_int_equal(
            rdt_cluster_request(&cl, &first, "POST", "/api/v1/consistency/check", NULL, 10000, &r),
            0);
    } while (r.status == 409 && rdt_now_ms() < until && (rdt_sleep_ms(50), 1));
    assert_int_equal(r.status, 202);
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(r.json, "check_id")));
    rdt_resp_free(&r);
    json_t *v = verdict(id, 15000 * rdt_time_factor());
    assert_non_null(v);
    return v;
}

/* The open data_corruption fault of replica `id`, or NULL. */
static json_t *corruption_fault(int id)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_cluster_request(&cl, &first, "GET", "/api/v1/faults/records?status=open",
                                         NULL, 5000, &r),
                     0);
    json_t *found = NULL, *items = json_object_get(r.json, "items");
    for (size_t i = 0; i < json_array_size(items) && found == NULL; i++) {
        json_t *x = json_array_get(items, i);
        if (strcmp(json_string_value(json_object_get(x, "fault_type")), "data_corruption") == 0 &&
            json_integer_value(rdt_json_path(x, "metadata.replica_id")) == id)
            found = json_incref(x);
    }
    rdt_resp_free(&r);
    return found;
}

/* One follower's copy of an agent record is flipped (what a bug in apply or
 * a bad bit would do): the next check names that follower alone, its
 * digest differs from the two that agree, and a critical data_corruption
 * fault says which replica, at which check and index. */
static void test_corrupted_follower_is_named(void **state)
{
    int leader = rdt_cluster_leader(&cl, 10000);
    assert_true(leader >= 0);
    int victim = (leader + 1) % cl.n;
    struct rdt_resp r = {0};
    assert_int_equal(
        rdt_post(&cl.procs[victim], RDT_H1, "/debug/corrupt?what=node&id=cons-3", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    json_t *v = check_now();
    assert_string_equal(json_string_value(json_object_get(v, "status")), "mismatch");
    json_t *div = json_object_get(v, "diverged");
    assert_int_equal(json_array_size(div), 1);
    assert_int_equal(json_integer_value(json_array_get(div, 0)), victim + 1);
    json_t *digests = json_object_get(v, "digests");
    char key[4];
    snprintf(key, sizeof(key), "%d", leader + 1);
    const char *good = json_string_value(json_object_get(digests, key));
    snprintf(key, sizeof(key), "%d", victim + 1);
    const char *bad = json_string_value(json_object_get(digests, key));
    assert_non_null(good);
    assert_non_null(bad);
    assert_string_not_equal(good, bad);
    const char *check_id = json_string_value(json_object_get(v, "check_id"));
    char check_id_copy[64];
    snprintf(check_id_copy, sizeof(check_id_copy), "%s", check_id);
    json_t *fault = NULL;
    for (int64_t until = rdt_now_ms() + 10000 * rdt_time_factor();
         fault == NULL && rdt_now_ms() < until;) {
        fault = corruption_fault(victim + 1);
        if (fault == NULL)
            rdt_sleep_ms(50);
    }
    assert_non_null(fault);
    assert_string_equal(json_string_value(json_object_get(fault, "severity_level")), "critical");
    assert_string_equal(json_string_value(rdt_json_path(fault, "metadata.check_id")), check_id);
    assert_string_equal(json_string_value(rdt_json_path(fault, "metadata.digest")), bad);
    assert_string_equal(json_string_value(rdt_json_path(fault, "metadata.expected")), good);
    json_decref(fault);
    json_decref(v);
    /* The gauge behind the DataInconsistent rule says one replica. */
    leader = rdt_cluster_leader(&cl, 5000);
    assert_int_equal(rdt_get(&cl.procs[leader], RDT_H1, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "recoveryd_consistency_diverged_replicas 1\n"));
    rdt_resp_free(&r);
    for (int i = 0; i < cl.n; i++)
        cl.procs[i].errors_expected = true; /* replica_diverged is an error line */

    /* No operator step: the follower moves its state aside, rejoins from
     * the leader's snapshot, is a voter again, the leader checks again and
     * the fault resolves; the earlier check lists it as repaired. */
    json_t *fixed = NULL;
    int written = 40;
    for (int64_t until = rdt_now_ms() + 60000 * rdt_time_factor(); rdt_now_ms() < until;) {
        write_agents(written, 2); /* writes go on while it repairs */
        written += 2;
        json_t *still = corruption_fault(victim + 1);
        if (still == NULL) {
            struct rdt_resp g = {0};
            char path[160];
            snprintf(path, sizeof(path), "/api/v1/consistency/checks/%s", check_id_copy);
            if (rdt_cluster_request(&cl, &first, "GET", path, NULL, 5000, &g) == 0 &&
                g.status == 200 && json_array_size(json_object_get(g.json, "repaired")) == 1)
                fixed = json_incref(g.json);
            rdt_resp_free(&g);
            if (fixed != NULL)
                break;
        }
        json_decref(still);
        rdt_sleep_ms(200);
    }
    if (fixed == NULL)
        for (int i = 0; i < cl.n; i++)
            rdt_proc_print_log_tail(&cl.procs[i], 30);
    assert_non_null(fixed);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(fixed, "repaired"), 0)),
                     victim + 1);
    json_decref(fixed);
    /* Its old state is kept for inspection, and a new check agrees. */
    char aside[400];
    snprintf(aside, sizeof(aside), "ls -d %s/damaged-* >/dev/null 2>&1", cl.procs[victim].data_dir);
    assert_int_equal(system(aside), 0);
    /* The repaired replica may still be catching up (the leader's snapshot,
     * then the entries after it): a check decided by the other two before
     * it answered lists two digests (seen once in a fresh-clone CI run).
     * Checks again until all three answer one. */
    json_t *again = check_now();
    for (int64_t until = rdt_now_ms() + rdt_ms(15000);
         json_object_size(json_object_get(again, "digests")) < 3 && rdt_now_ms() < until;) {
        json_decref(again);
        rdt_sleep_ms(200);
        again = check_now();
    }
    assert_all_agree(again);
    json_decref(again);
    /* The audit trail tells it: the engine named the replica (the check its
     * cause), then saw it repaired (its fault the cause). */
    char target[64], path[200];
    snprintf(target, sizeof(target), "replica%%20%d", victim + 1);
    const char *actions[] = {"replica_diverged", "replica_repaired"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof(path), "/api/v1/audit?action=%s&target=%s", actions[k], target);
        assert_int_equal(rdt_cluster_request(&cl, &first, "GET", path, NULL, 5000, &r), 0);
        assert_int_equal(r.status, 200);
        json_t *items = json_object_get(r.json, "items");
        assert_int_equal(json_array_size(items), 1);
        assert_string_equal(json_string_value(rdt_json_path(json_array_get(items, 0), "principal")),
                            "recoveryd");
        if (k == 0)
            assert_string_equal(json_string_value(rdt_json_path(json_array_get(items, 0), "cause")),
                                check_id_copy);
        rdt_resp_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_triggered_check_agrees_at_one_index),
        cmocka_unit_test(test_scheduled_checks_are_listed),
        cmocka_unit_test(test_unknown_check_is_404),
        cmocka_unit_test(test_corrupted_follower_is_named),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
