/*
 * Checkpoint repair on the real daemon (DESIGN.md decision 9), a single
 * replica of the fault-injection build (recoveryd-fi): POST /debug/corrupt
 * flips a byte of a task's newest checkpoint in the only copy there is, and
 * the engine must notice and repair it wherever it meets it:
 *
 *   - GET /api/v1/tasks/{id}/checkpoint answers the previous good version,
 *     and a major data_corruption fault records the repair, resolved;
 *   - the heartbeat that hands a moved task over to its new agent carries the
 *     good version (the task waits for the repair, never the bad data);
 *   - a policy's check_consistency (safe_recovery, chosen because a
 *     checkpoint is bad) repairs it before the task moves (and once it
 *     verifies again the next plan moves the task);
 *   - with no good copy left, GET says so (404) and the fault stays open
 *     with the reason;
 *   - with a completed backup (file target) holding a good copy of the
 *     only version, that version comes back from the backup.
 *
 * Agents heartbeat every 30 s, so nothing is detected behind the test's
 * back; tasks move by drain (an operator's action).
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "harness.h"
#include "rdt_ctest.h"

static struct rdt_proc proc;

static int setup(void **state)
{
    (void)state;
    snprintf(proc.binary, sizeof(proc.binary), "%s", RD_BINARY_FI);
    if (rdt_proc_prepare(&proc) != 0)
        return -1;
    /* A file backup target; backups only when a test triggers one (the
     * schedule waits a day), no continuous archiving. */
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "fault_tolerance:\n"
             "  detection:\n"
             "    heartbeat_interval: 30s\n"
             "  backup:\n"
             "    interval: 24h\n"
             "    archive: {target: \"\"}\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - {name: local, plugin: file, config: {dir: \"%s/backups\"}}\n",
             proc.dir);
    if (rdt_proc_start(&proc, yaml) != 0)
        return -1;
    return rdt_wait_ready(&proc, rdt_ms(15000));
}

static int teardown(void **state)
{
    (void)state;
    if (getenv("RDT_VERBOSE"))
        rdt_proc_print_log_tail(&proc, 60);
    rdt_proc_cleanup(&proc);
    return 0;
}

/* An agent with `slots` in pool `pool`; its epoch. */
static long long agent(const char *id, const char *pool)
{
    char body[160];
    snprintf(body, sizeof(body),
             "{\"node_id\":\"%s\",\"capacity\":{\"slots\":4},\"labels\":{\"pool\":\"%s\"}}", id,
             pool);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes", body, &r), 0);
    assert_int_equal(r.status, 201);
    long long epoch = json_integer_value(rdt_json_path(r.json, "epoch"));
    rdt_resp_free(&r);
    return epoch;
}

static json_t *get_json(const char *path, long want_status)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    if (r.status != want_status)
        fail_msg("GET %s: %ld, expected %ld: %s", path, r.status, want_status,
                 r.body ? r.body : "");
    json_t *j = json_incref(r.json);
    rdt_resp_free(&r);
    return j;
}

static json_t *get_task(const char *id)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s", id);
    return get_json(path, 200);
}

/* Waits until `field` of task `id` is the string `want`. */
static void await_task(const char *id, const char *field, const char *want)
{
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    for (;;) {
        json_t *t = get_task(id);
        const char *v = json_string_value(rdt_json_path(t, field));
        bool ok = v != NULL && strcmp(v, want) == 0;
        json_decref(t);
        if (ok)
            return;
        if (rdt_now_ms() > deadline)
            fail_msg("task %s: %s never became %s", id, field, want);
        rdt_sleep_ms(20);
    }
}

/* A task in `pool`, placed and running on agent `node` (epoch), with
 * checkpoint versions 1..n ({"step": v}); its id in `id`. */
static void running_task(const char *pool, const char *node, long long epoch, int n, char id[64])
{
    char body[160];
    snprintf(body, sizeof(body),
             "{\"payload\":{\"job\":\"%s\"},\"requirements\":{\"labels\":{\"pool\":\"%s\"}}}", pool,
             pool);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", body, &r), 0);
    assert_int_equal(r.status, 201);
    snprintf(id, 64, "%s", json_string_value(rdt_json_path(r.json, "task_id")));
    rdt_resp_free(&r);
    await_task(id, "node_id", node);
    assert_int_equal(rdt_heartbeat(&proc, RDT_H1, node, epoch, 1, &r), 0);
    assert_int_equal(r.status, 200);
    long long attempt = json_integer_value(rdt_json_path(r.json, "assignments.0.attempt"));
    assert_true(attempt > 0);
    rdt_resp_free(&r);
    char url[160];
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", proc.base_url, id);
    for (int v = 1; v <= n; v++) {
        snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":%d,\"data\":{\"step\":%d}}",
                 attempt, v, v);
        assert_int_equal(rdt_http(RDT_H1, "PUT", url, body, strlen(body), &r), 0);
        assert_int_equal(r.status, 200);
        rdt_resp_free(&r);
    }
}

static void corrupt(const char *task)
{
    char path[128];
    snprintf(path, sizeof(path), "/debug/corrupt?what=checkpoint&id=%s", task);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, path, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
}

/* The checksum the API shows for a checkpoint holding `data` (compact JSON). */
static void checksum_of(const char *data, char out[32])
{
    snprintf(out, 32, "fnv1a64:%016llx",
             (unsigned long long)rd_fnv1a(RD_FNV_INIT, data, strlen(data)));
}

/* The data_corruption fault about `task`: exactly one. */
static json_t *fault_of(const char *task)
{
    json_t *page = get_json("/api/v1/faults/records?limit=1000", 200);
    json_t *found = NULL, *x;
    size_t i;
    json_array_foreach(json_object_get(page, "items"), i, x)
    {
        const char *type = json_string_value(json_object_get(x, "fault_type"));
        const char *tid = json_string_value(rdt_json_path(x, "metadata.task_id"));
        if (type && strcmp(type, "data_corruption") == 0 && tid && strcmp(tid, task) == 0) {
            assert_null(found);
            found = json_incref(x);
        }
    }
    json_decref(page);
    if (found == NULL)
        fail_msg("no data_corruption fault about task %s", task);
    return found;
}

static void assert_fault_resolved(const char *task, const char *node, int version,
                                  const char *restored_from)
{
    json_t *x = fault_of(task);
    assert_string_equal(json_string_value(json_object_get(x, "severity_level")), "major");
    assert_string_equal(json_string_value(json_object_get(x, "status")), "resolved");
    assert_string_equal(json_string_value(json_object_get(x, "node_id")), node);
    assert_int_equal(json_integer_value(rdt_json_path(x, "metadata.version")), version);
    assert_string_equal(json_string_value(rdt_json_path(x, "metadata.restored_from")),
                        restored_from);
    assert_false(json_is_null(json_object_get(x, "resolved_at")));
    json_decref(x);
}

/* (a) GET meets the damaged version 3: it answers version 2, repaired. */
static void test_get_answers_the_previous_good_version(void **state)
{
    (void)state;
    long long epoch = agent("get-a", "get");
    char id[64], path[128], sum[32];
    running_task("get", "get-a", epoch, 3, id);
    corrupt(id);
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", id);
    json_t *c = get_json(path, 200);
    assert_int_equal(json_integer_value(json_object_get(c, "version")), 2);
    assert_int_equal(json_integer_value(rdt_json_path(c, "data.step")), 2);
    checksum_of("{\"step\":2}", sum);
    assert_string_equal(json_string_value(json_object_get(c, "checksum")), sum);
    json_decref(c);
    /* Repaired in the log, not only in the answer: the task says so too. */
    json_t *t = get_task(id);
    assert_int_equal(json_integer_value(rdt_json_path(t, "checkpoint.version")), 2);
    assert_string_equal(json_string_value(rdt_json_path(t, "checkpoint.checksum")), sum);
    json_decref(t);
    assert_fault_resolved(id, "get-a", 3, "version 2");
    /* Read again: nothing more to repair, the same answer. */
    c = get_json(path, 200);
    assert_int_equal(json_integer_value(json_object_get(c, "version")), 2);
    json_decref(c);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "recoveryd_checkpoint_repairs_total{source=\"version\"} 1\n"));
    rdt_resp_free(&r);
}

/* Heartbeats `node` until it is handed task `id`; that assignment. */
static json_t *await_assignment(const char *node, long long epoch, const char *id)
{
    struct rdt_target t = {.p = &proc};
    char why[320];
    json_t *a = rdt_await_assignment(&t, node, epoch, id, rdt_ms(10000), NULL, why, sizeof why);
    if (a == NULL)
        fail_msg("agent %s was never handed task %s: %s", node, id, why);
    return a;
}

static void drain(const char *node)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/nodes/%s/drain", node);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, path, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
}

/* (b) The task moves to another agent; its checkpoint is damaged before
 * that agent's heartbeat: the hand-over carries the good version 2. */
static void test_hand_over_resumes_from_the_good_version(void **state)
{
    (void)state;
    long long ea = agent("move-a", "move");
    char id[64], sum[32];
    running_task("move", "move-a", ea, 3, id);
    long long eb = agent("move-b", "move");
    drain("move-a"); /* fast_recovery: the task moves at once */
    await_task(id, "node_id", "move-b");
    corrupt(id);
    json_t *a = await_assignment("move-b", eb, id);
    assert_string_equal(json_string_value(json_object_get(a, "state")), "recovering");
    assert_int_equal(json_integer_value(rdt_json_path(a, "checkpoint.version")), 2);
    assert_int_equal(json_integer_value(rdt_json_path(a, "checkpoint.data.step")), 2);
    checksum_of("{\"step\":2}", sum);
    assert_string_equal(json_string_value(rdt_json_path(a, "checkpoint.checksum")), sum);
    json_decref(a);
    assert_fault_resolved(id, "move-b", 3, "version 2");
}

/* A checkpoint already bad when its agent is drained: select.lua picks
 * safe_recovery, whose check_consistency repairs it before the task moves
 * (the fault names the drained agent: the repair came before the move);
 * the new agent is handed version 2. */
static void test_check_consistency_repairs_before_the_move(void **state)
{
    (void)state;
    long long ea = agent("safe-a", "safe");
    char id[64];
    running_task("safe", "safe-a", ea, 3, id);
    long long eb = agent("safe-b", "safe");
    corrupt(id);
    drain("safe-a");
    await_task(id, "node_id", "safe-b");
    assert_fault_resolved(id, "safe-a", 3, "version 2");
    json_t *a = await_assignment("safe-b", eb, id);
    assert_int_equal(json_integer_value(rdt_json_path(a, "checkpoint.version")), 2);
    assert_int_equal(json_integer_value(rdt_json_path(a, "checkpoint.data.step")), 2);
    json_decref(a);
}

/* Only one version, damaged, and no backup: nothing good exists. GET says
 * so, the next hand-over starts the task over, the fault stays open and
 * says why. */
static void test_nothing_good_left(void **state)
{
    (void)state;
    proc.errors_expected = true; /* checkpoint_unrepairable is an error line */
    long long ea = agent("none-a", "none");
    char id[64], path[128];
    running_task("none", "none-a", ea, 1, id);
    corrupt(id);
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", id);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "has no checkpoint that verifies"));
    rdt_resp_free(&r);
    json_t *x = fault_of(id);
    assert_string_equal(json_string_value(json_object_get(x, "status")), "open");
    assert_true(json_is_null(rdt_json_path(x, "metadata.restored_from")));
    assert_non_null(strstr(json_string_value(rdt_json_path(x, "metadata.reason")),
                           "no completed backup to read"));
    json_decref(x);
    /* Its attempt fails, retryable: handed over again without a checkpoint. */
    json_t *t = get_task(id);
    char body[96];
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"error\":\"oom\",\"retryable\":true}",
             (long long)json_integer_value(json_object_get(t, "attempt")));
    json_decref(t);
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/fail", id);
    assert_int_equal(rdt_post(&proc, RDT_H1, path, body, &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    json_t *a = await_assignment("none-a", ea, id);
    assert_true(json_is_null(json_object_get(a, "checkpoint")));
    json_decref(a);
}

/* A completed backup, triggered now: its id. */
static void backup(char id[64])
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/backup/trigger", NULL, &r), 0);
    assert_int_equal(r.status, 202);
    snprintf(id, 64, "%s", json_string_value(json_object_get(r.json, "backup_id")));
    rdt_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/backups/%s", id);
    /* Its record appears once its BEGIN committed; then it completes. */
    int64_t deadline = rdt_now_ms() + rdt_ms(15000);
    for (;;) {
        assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
        const char *st = json_string_value(json_object_get(r.json, "status"));
        bool done = r.status == 200 && st != NULL && strcmp(st, "running") != 0;
        if (done && strcmp(st, "completed") != 0)
            fail_msg("backup %s: %s", id, r.body);
        rdt_resp_free(&r);
        if (done)
            return;
        if (rdt_now_ms() > deadline)
            fail_msg("backup %s never completed", id);
        rdt_sleep_ms(20);
    }
}

/* (c) The only version is damaged; a completed backup holds a good copy:
 * it comes back from there, and its agent's next hand-over carries it. */
static void test_the_only_version_comes_back_from_a_backup(void **state)
{
    (void)state;
    long long ea = agent("bk-a", "bk");
    char id[64], bid[64], path[128], sum[32], from[96];
    running_task("bk", "bk-a", ea, 1, id);
    backup(bid);
    corrupt(id);
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", id);
    json_t *c = get_json(path, 200);
    assert_int_equal(json_integer_value(json_object_get(c, "version")), 1);
    assert_int_equal(json_integer_value(rdt_json_path(c, "data.step")), 1);
    checksum_of("{\"step\":1}", sum);
    assert_string_equal(json_string_value(json_object_get(c, "checksum")), sum);
    json_decref(c);
    snprintf(from, sizeof(from), "backup %s", bid);
    assert_fault_resolved(id, "bk-a", 1, from);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "recoveryd_checkpoint_repairs_total{source=\"backup\"} 1\n"));
    rdt_resp_free(&r);
    /* The same again, met at hand-over: the task moves to a new agent. */
    char id2[64];
    running_task("bk", "bk-a", ea, 1, id2);
    backup(bid);
    long long eb = agent("bk-b", "bk");
    drain("bk-a");
    await_task(id2, "node_id", "bk-b");
    corrupt(id2);
    json_t *a = await_assignment("bk-b", eb, id2);
    assert_int_equal(json_integer_value(rdt_json_path(a, "checkpoint.version")), 1);
    assert_int_equal(json_integer_value(rdt_json_path(a, "checkpoint.data.step")), 1);
    json_decref(a);
    snprintf(from, sizeof(from), "backup %s", bid);
    assert_fault_resolved(id2, "bk-b", 1, from);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_answers_the_previous_good_version),
        cmocka_unit_test(test_hand_over_resumes_from_the_good_version),
        cmocka_unit_test(test_check_consistency_repairs_before_the_move),
        cmocka_unit_test(test_nothing_good_left),
        cmocka_unit_test(test_the_only_version_comes_back_from_a_backup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
