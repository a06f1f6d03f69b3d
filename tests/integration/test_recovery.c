/*
 * Recovery end to end (the built-in fast_recovery): an agent crashes in the
 * middle of a task; the task moves to a healthy agent as attempt 2 and is
 * handed over with its last checkpoint; the zombie's writes (checkpoint,
 * completion) are fenced, so only one attempt can complete the task.
 * The engine's intervals, the agents' cadence and every wait scale with
 * rdt_time_factor() (tests/lib/rdt_ctest.h).
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "rdt_ctest.h"

#define TASK "6f1e2d3c-4b5a-4987-8c6d-5e4f3a2b1c0d"

static const char yaml_1x[] = "fault_tolerance:\n"
                              "  detection:\n"
                              "    heartbeat_interval: 100ms\n"
                              "    failure_threshold: 3\n"
                              "  partition:\n"
                              "    min_nodes: 100\n"
                              "plugins:\n"
                              "  instances:\n"
                              "    - {name: heartbeat, required: true}\n";

static char yaml[512]; /* yaml_1x, its durations scaled */
static int hb_ms;      /* the agents' cadence: the heartbeat interval, 100 ms scaled */
static struct rdt_proc proc;

static int setup(void **state)
{
    rdt_scale_durations(yaml_1x, yaml, sizeof(yaml));
    hb_ms = rdt_ms(100);
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

/* A heartbeat of a live agent while the test waits on something else: the
 * detector must not fail it for the test's own pauses (3 missed intervals
 * of 100 ms are a few slow requests on a loaded machine). */
static void keep_alive(const char *id, long long epoch)
{
    long st;
    json_decref(heartbeat(id, epoch, &st));
    assert_int_equal(st, 200);
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
    for (int64_t until = rdt_now_ms() + rdt_ms(5000);;) {
        json_decref(hb);
        hb = heartbeat("agent-a", ea, &st);
        if (json_array_size(json_object_get(hb, "assignments")) == 1)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(hb_ms / 2);
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
    for (int64_t until = crash + rdt_ms(10000);;) {
        json_t *b = heartbeat("agent-b", eb, &st);
        assert_int_equal(st, 200);
        as = json_incref(json_array_get(json_object_get(b, "assignments"), 0));
        json_decref(b);
        if (as != NULL)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(hb_ms);
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
    keep_alive("agent-b", eb);
    assert_int_equal(checkpoint(2, 3, 30), 200);
    assert_int_equal(task_post("complete", "{\"attempt\":2,\"result\":{\"by\":\"agent-b\"}}", &r),
                     200);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "result.by")), "agent-b");
    assert_string_equal(json_string_value(rdt_json_path(r.json, "state")), "completed");
    rdt_resp_free(&r);
    assert_int_equal(task_post("complete", "{\"attempt\":1,\"result\":{}}", &r), 409);
    rdt_resp_free(&r);

    /* An operator triggers recovery of a working agent: it is drained, its
     * task moves, and the run records it in the task_recovery shape. */
    const char *t2 = "7a7a7a7a-1b1b-4c2c-8d3d-4e4e4e4e4e4e";
    char body[160];
    snprintf(body, sizeof(body), "{\"task_id\":\"%s\",\"priority\":3}", t2);
    keep_alive("agent-b", eb);
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", body, &r), 0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s", t2);
    for (int64_t until = rdt_now_ms() + rdt_ms(5000);;) {
        assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
        bool placed = json_integer_value(rdt_json_path(r.json, "attempt")) == 1;
        rdt_resp_free(&r);
        if (placed)
            break;
        assert_true(rdt_now_ms() < until);
        keep_alive("agent-b", eb);
        rdt_sleep_ms(20);
    }
    long long ec;
    assert_int_equal(rdt_register(&proc, "agent-c", 2, &ec), 0);
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/recovery/trigger",
                              "{\"node_id\":\"agent-b\",\"strategy\":\"fast_recovery\"}", &r),
                     0);
    assert_int_equal(r.status, 202);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "status")), "initiated");
    assert_true(json_number_value(rdt_json_path(r.json, "estimated_time")) > 0);
    char rid[64];
    snprintf(rid, sizeof(rid), "%s", json_string_value(rdt_json_path(r.json, "recovery_id")));
    rdt_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/recovery/tasks/%s", rid);
    json_t *run = NULL;
    for (int64_t until = rdt_now_ms() + rdt_ms(5000);;) {
        assert_int_equal(rdt_get(&proc, RDT_H2, path, &r), 0);
        assert_int_equal(r.status, 200);
        bool done = strcmp(json_string_value(rdt_json_path(r.json, "status")), "succeeded") == 0;
        if (done)
            run = json_incref(r.json);
        rdt_resp_free(&r);
        if (done)
            break;
        assert_true(rdt_now_ms() < until);
        keep_alive("agent-c", ec);
        rdt_sleep_ms(20);
    }
    assert_string_equal(json_string_value(json_object_get(run, "node_id")), "agent-b");
    assert_int_equal(json_integer_value(json_object_get(run, "tasks_recovered")), 1);
    assert_int_equal(json_integer_value(json_object_get(run, "tasks_failed")), 0);
    json_t *item = json_array_get(json_object_get(run, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "original_task_id")), t2);
    assert_string_equal(json_string_value(json_object_get(item, "failed_node_id")), "agent-b");
    assert_string_equal(json_string_value(json_object_get(item, "recovery_node_id")), "agent-c");
    assert_string_equal(json_string_value(json_object_get(item, "recovery_strategy")),
                        "fast_recovery");
    assert_true(json_is_true(json_object_get(item, "success")));
    assert_true(rdt_is_rfc3339_utc(json_string_value(json_object_get(item, "completed_at"))));
    json_decref(run);
    /* Bad triggers. */
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/recovery/trigger",
                              "{\"node_id\":\"agent-c\",\"strategy\":\"yolo\"}", &r),
                     0);
    assert_int_equal(r.status, 400);
    /* The message names the strategies from the one table of them. */
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(r.json, "error"), "message")),
               "(fast_recovery, safe_recovery, degraded_service)"));
    rdt_resp_free(&r);
    assert_int_equal(
        rdt_post(&proc, RDT_H1, "/api/v1/recovery/trigger", "{\"node_id\":\"nobody\"}", &r), 0);
    assert_int_equal(r.status, 404);
    rdt_resp_free(&r);

    /* The automatic run for agent-a names the strategy its items used (it
     * said null), and the list pages with next_cursor like every list. */
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/recovery/tasks", &r), 0);
    json_t *all = json_incref(json_object_get(r.json, "items"));
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    rdt_resp_free(&r);
    assert_true(json_array_size(all) >= 2);
    size_t i;
    json_t *x;
    bool auto_seen = false;
    json_array_foreach(all, i, x)
    {
        if (strcmp(json_string_value(json_object_get(x, "node_id")), "agent-a") != 0)
            continue;
        auto_seen = true;
        json_t *first = json_array_get(json_object_get(x, "items"), 0);
        assert_non_null(json_string_value(json_object_get(x, "strategy")));
        assert_string_equal(json_string_value(json_object_get(x, "strategy")),
                            json_string_value(json_object_get(first, "recovery_strategy")));
    }
    assert_true(auto_seen);
    char cursor[64] = "";
    size_t seen = 0;
    for (;;) {
        snprintf(path, sizeof(path), "/api/v1/recovery/tasks?limit=1%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
        assert_int_equal(r.status, 200);
        json_t *page = json_object_get(r.json, "items");
        if (seen < json_array_size(all)) {
            assert_int_equal(json_array_size(page), 1);
            assert_string_equal(
                json_string_value(json_object_get(json_array_get(page, 0), "recovery_id")),
                json_string_value(json_object_get(json_array_get(all, seen), "recovery_id")));
            seen++;
        }
        json_t *next = json_object_get(r.json, "next_cursor");
        bool last = json_is_null(next);
        if (!last)
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        rdt_resp_free(&r);
        if (last)
            break;
        assert_true(seen < json_array_size(all));
    }
    assert_int_equal(seen, json_array_size(all));
    json_decref(all);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/recovery/tasks?cursor=nonsense", &r), 0);
    assert_int_equal(r.status, 400);
    rdt_resp_free(&r);
}

/*
 * A heartbeat answer that hands a task over is lost (the agent's request
 * timed out, its connection was cut): the assignment must still reach the
 * agent. The engine tells an assignment in one answer and again only when
 * it has not started (no first checkpoint) a lease later, then after 2, 4
 * and 8 leases (engine/registry: rd_told): the answers in between carry
 * nothing, so a slow commit does not make every heartbeat encode the same
 * tasks again. The test plays an agent whose answers are lost until the
 * third one that carries the assignment.
 */
static void test_lost_assignment_is_told_again(void **state)
{
    const char *tid = "7a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d";
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes",
                              "{\"node_id\":\"agent-deaf\",\"capacity\":{\"slots\":1},"
                              "\"labels\":{\"pool\":\"deaf\"}}",
                              &r),
                     0);
    assert_int_equal(r.status, 201);
    long long ep = json_integer_value(rdt_json_path(r.json, "epoch"));
    long long lease = json_integer_value(rdt_json_path(r.json, "lease_ms"));
    rdt_resp_free(&r);
    assert_true(lease > 0);
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks",
                              "{\"task_id\":\"7a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d\","
                              "\"requirements\":{\"labels\":{\"pool\":\"deaf\"}}}",
                              &r),
                     0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    /* Heartbeats every half interval, noting when an answer carries it. */
    int64_t told[3];
    int n_told = 0, between = 0;
    for (int64_t until = rdt_now_ms() + rdt_ms(5000) + 8 * lease; n_told < 3;) {
        long st;
        int64_t sent = rdt_now_ms();
        json_t *hb = heartbeat("agent-deaf", ep, &st);
        assert_int_equal(st, 200);
        json_t *as = json_object_get(hb, "assignments");
        if (json_array_size(as) > 0) {
            assert_int_equal(json_array_size(as), 1);
            assert_string_equal(json_string_value(rdt_json_path(as, "0.task_id")), tid);
            assert_int_equal(json_integer_value(rdt_json_path(as, "0.attempt")), 1);
            told[n_told++] = sent;
        } else if (n_told > 0) {
            between++;
        }
        json_decref(hb);
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(hb_ms / 2);
    }
    fprintf(stderr,
            "assignment told again %lld ms and %lld ms later (lease %lld ms), %d answers "
            "without it between\n",
            (long long)(told[1] - told[0]), (long long)(told[2] - told[1]), lease, between);
    assert_true(told[1] - told[0] >= lease / 2);     /* not in the answers right after */
    assert_true(told[2] - told[1] >= lease * 3 / 2); /* then twice as long */
    assert_true(between >= 2);
    /* The agent runs it at last. */
    char url[160];
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/complete", proc.base_url, tid);
    const char *done = "{\"attempt\":1,\"result\":{}}";
    assert_int_equal(rdt_http(RDT_H1, "POST", url, done, strlen(done), &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
}

/*
 * A policy that runs away on a real event is stopped within its budget,
 * recorded as a policy_error fault, and the built-in default moves the task.
 */
static void test_runaway_policy_falls_back_to_the_default(void **state)
{
    struct rdt_proc p;
    memset(&p, 0, sizeof(p));
    p.errors_expected = true; /* the runaway policy is logged as an error */
    assert_int_equal(rdt_proc_prepare(&p), 0);
    snprintf(p.policies_dir, sizeof(p.policies_dir), "%s/policies", p.dir);
    assert_int_equal(mkdir(p.policies_dir, 0755), 0);
    const char *names[] = {"select.lua", "fast_recovery.lua", "safe_recovery.lua",
                           "degraded_service.lua"};
    for (int i = 0; i < 4; i++) {
        char src[600], dst[700], buf[8192];
        snprintf(src, sizeof(src), "%s/policies/%s", RD_SOURCE_DIR, names[i]);
        snprintf(dst, sizeof(dst), "%s/%s", p.policies_dir, names[i]);
        FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
        assert_non_null(in);
        assert_non_null(out);
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
            fwrite(buf, 1, n, out);
        fclose(in);
        /* fast_recovery loops forever for the agent called "victim" only,
         * so its own self_test still passes. */
        if (strcmp(names[i], "fast_recovery.lua") == 0)
            fputs("\nlocal real = M.plan\n"
                  "M.plan = function(event, view)\n"
                  "  if event.node and event.node.node_id == 'victim' then while true do end end\n"
                  "  return real(event, view)\n"
                  "end\n"
                  "return M\n",
                  out);
        fclose(out);
    }
    /* The shipped file ends with `return M`: ours returns the patched table
     * after it; make the first return unreachable. */
    char fr[700];
    snprintf(fr, sizeof(fr), "%s/fast_recovery.lua", p.policies_dir);
    FILE *f = fopen(fr, "rb");
    static char text[65536];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    char *first = strstr(text, "\nreturn M\n");
    assert_non_null(first);
    memcpy(first + 1, "--turn M", 8); /* comment the first return out */
    f = fopen(fr, "wb");
    fwrite(text, 1, len, f);
    fclose(f);

    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    long long ev, eh;
    assert_int_equal(rdt_register(&p, "victim", 2, &ev), 0);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&p, RDT_H1, "/api/v1/tasks", "{\"task_id\":\"" TASK "\"}", &r), 0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    /* Placed on the victim; then a healthy agent joins and the victim dies. */
    for (int64_t until = rdt_now_ms() + rdt_ms(5000);;) {
        char path[96];
        snprintf(path, sizeof(path), "/api/v1/tasks/%s", TASK);
        assert_int_equal(rdt_get(&p, RDT_H1, path, &r), 0);
        bool placed = json_integer_value(rdt_json_path(r.json, "attempt")) == 1;
        rdt_resp_free(&r);
        if (placed)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(20);
    }
    assert_int_equal(rdt_register(&p, "healthy", 2, &eh), 0);
    json_t *as = NULL;
    for (int64_t until = rdt_now_ms() + rdt_ms(10000); as == NULL;) {
        assert_int_equal(rdt_heartbeat(&p, RDT_H2, "healthy", eh, 0, &r), 0);
        as = json_incref(json_array_get(rdt_json_path(r.json, "assignments"), 0));
        rdt_resp_free(&r);
        assert_true(as != NULL || rdt_now_ms() < until);
        if (as == NULL)
            rdt_sleep_ms(hb_ms);
    }
    assert_int_equal(json_integer_value(json_object_get(as, "attempt")), 2);
    json_decref(as);
    assert_int_equal(rdt_get(&p, RDT_H1, "/api/v1/faults/records?fault_type=policy_error", &r), 0);
    json_t *rec = json_array_get(rdt_json_path(r.json, "items"), 0);
    assert_non_null(rec);
    assert_non_null(
        strstr(json_string_value(rdt_json_path(rec, "metadata.error")), "fast_recovery.lua"));
    rdt_resp_free(&r);
    char *log = rdt_proc_log(&p);
    assert_non_null(strstr(log, "strategy=builtin_fast_recovery"));
    free(log);
    rdt_proc_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_survives_its_agent),
        cmocka_unit_test(test_lost_assignment_is_told_again),
        cmocka_unit_test(test_runaway_policy_falls_back_to_the_default),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
