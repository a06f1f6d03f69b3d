/*
 * The CAP setting on real engines (issue 17; docs/operations.md,
 * "Partitions: consistency or availability"). Agents are plain HTTP
 * clients; a task moves from agent a to agent b by an operator's drain
 * while a is "cut off", then a replays the writes of its old attempt:
 *
 * - availability mode: each replayed write is a conflict record, resolved
 *   by the shipped select.lua's on_conflict (keep_progress): a newer
 *   checkpoint is adopted and the task re-placed (a new attempt resuming
 *   from it), an older one adopts nothing, a completion completes the task;
 *   the same write again answers its record; records, metric, audit;
 * - consistency mode: the same write is 409 fenced, nothing recorded;
 * - a hook that fails: a policy_error fault, the config's on_conflict;
 * - three replicas in availability mode agree on the records after the
 *   leader is killed and the write replayed to the new leader.
 *
 * Agents heartbeat every 30 s, so nothing is detected behind the test's
 * back.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "rdt_ctest.h"

#define CONFIG_AVAILABILITY                                                                        \
    "fault_tolerance:\n"                                                                           \
    "  detection:\n"                                                                               \
    "    heartbeat_interval: 30s\n"                                                                \
    "  partition:\n"                                                                               \
    "    mode: availability\n"

static struct rdt_proc avail, consist, fallback;

/* `name` of policies/ into `dir`, with `from` replaced by `to` (NULL: as it
 * is). 0 or -1. */
static int copy_policy(const char *dir, const char *name, const char *from, const char *to)
{
    char src[600], dst[600], buf[65536];
    snprintf(src, sizeof(src), "%s/policies/%s", RD_SOURCE_DIR, name);
    snprintf(dst, sizeof(dst), "%s/%s", dir, name);
    FILE *in = fopen(src, "rb");
    if (in == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, in);
    fclose(in);
    buf[n] = '\0';
    char *at = from ? strstr(buf, from) : NULL;
    if (from != NULL && at == NULL)
        return -1;
    FILE *out = fopen(dst, "wb");
    if (out == NULL)
        return -1;
    if (at != NULL) {
        fwrite(buf, 1, (size_t)(at - buf), out);
        fputs(to, out);
        fputs(at + strlen(from), out);
    } else {
        fputs(buf, out);
    }
    return fclose(out);
}

/* An engine whose select.lua's on_conflict answers nonsense for real tasks
 * (its self_test's task still gets keep_progress): the config's
 * on_conflict (fail_task) decides. */
static int start_fallback(void)
{
    if (rdt_proc_prepare(&fallback) != 0)
        return -1;
    fallback.errors_expected = true; /* the hook's failure is logged as an error */
    snprintf(fallback.policies_dir, sizeof(fallback.policies_dir), "%s/policies", fallback.dir);
    if (mkdir(fallback.policies_dir, 0755) != 0)
        return -1;
    static const char *const files[] = {"fast_recovery.lua", "safe_recovery.lua",
                                        "degraded_service.lua"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (copy_policy(fallback.policies_dir, files[i], NULL, NULL) != 0)
            return -1;
    if (copy_policy(fallback.policies_dir, "select.lua", "function M.on_conflict(event, view)\n",
                    "function M.on_conflict(event, view)\n"
                    "  if event.task_id ~= \"t\" then return \"keep_older\" end\n") != 0)
        return -1;
    return rdt_proc_start(&fallback, CONFIG_AVAILABILITY "    on_conflict: fail_task\n");
}

static int setup(void **state)
{
    (void)state;
    if (start_fallback() != 0 || rdt_wait_ready(&fallback, rdt_ms(15000)) != 0 ||
        rdt_proc_start(&avail, CONFIG_AVAILABILITY) != 0 ||
        rdt_proc_start(&consist, "fault_tolerance:\n  detection:\n    heartbeat_interval: 30s\n") !=
            0 ||
        rdt_wait_ready(&avail, rdt_ms(15000)) != 0 || rdt_wait_ready(&consist, rdt_ms(15000)) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (getenv("RDT_VERBOSE"))
        rdt_proc_print_log_tail(&avail, 60);
    rdt_proc_cleanup(&avail);
    rdt_proc_cleanup(&consist);
    rdt_proc_cleanup(&fallback);
    return 0;
}

/* Any request to one engine: `p`, or through the cluster (`cl`). */
static long request(struct rdt_target *t, const char *method, const char *path, const char *body,
                    struct rdt_resp *r)
{
    if (rdt_target_request(t, method, path, body, rdt_ms(10000), r) != 0) {
        if (t->p != NULL)
            rdt_proc_print_log_tail(t->p, 30);
        fail_msg("%s %s: %s", method, path, r->curl_error);
    }
    return r->status;
}

static json_t *get_json(struct rdt_target *t, const char *path)
{
    struct rdt_resp r = {0};
    if (request(t, "GET", path, NULL, &r) != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body ? r.body : "");
    json_t *j = json_incref(r.json);
    rdt_resp_free(&r);
    return j;
}

/* Registers agent `id` in pool `pool`; its epoch. `mode`: the
 * partition_mode the answer must carry. */
static long long agent(struct rdt_target *t, const char *id, const char *pool, const char *mode)
{
    char body[160];
    snprintf(body, sizeof(body),
             "{\"node_id\":\"%s\",\"capacity\":{\"slots\":4},\"labels\":{\"pool\":\"%s\"}}", id,
             pool);
    struct rdt_resp r = {0};
    assert_int_equal(request(t, "POST", "/api/v1/nodes", body, &r), 201);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "partition_mode")), mode);
    long long epoch = json_integer_value(rdt_json_path(r.json, "epoch"));
    rdt_resp_free(&r);
    return epoch;
}

/* Heartbeats `node` until it is handed task `id`; that assignment. The
 * answer must carry `mode` as its partition_mode. */
static json_t *await_assignment(struct rdt_target *t, const char *node, long long epoch,
                                const char *id, const char *mode)
{
    json_t *answer = NULL;
    char why[320];
    json_t *a = rdt_await_assignment(t, node, epoch, id, rdt_ms(10000), &answer, why, sizeof why);
    if (a == NULL)
        fail_msg("agent %s was never handed task %s: %s", node, id, why);
    assert_string_equal(json_string_value(json_object_get(answer, "partition_mode")), mode);
    json_decref(answer);
    return a;
}

/* PUT a checkpoint {"step": version} of `attempt` from `node`; the status. */
static long checkpoint(struct rdt_target *t, const char *id, long long attempt, int version,
                       const char *node, struct rdt_resp *r)
{
    char path[128], body[160];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", id);
    snprintf(body, sizeof(body),
             "{\"attempt\":%lld,\"version\":%d,\"data\":{\"step\":%d},\"node_id\":\"%s\"}", attempt,
             version, version, node);
    return request(t, "PUT", path, body, r);
}

static void checkpoint_ok(struct rdt_target *t, const char *id, long long attempt, int version,
                          const char *node)
{
    struct rdt_resp r = {0};
    if (checkpoint(t, id, attempt, version, node, &r) != 200)
        fail_msg("checkpoint %d of attempt %lld: %ld %s", version, attempt, r.status, r.body);
    rdt_resp_free(&r);
}

/* A task in `pool` placed on agent `a` (its only agent so far), with
 * checkpoints 1 and 2 of attempt 1; then agent `b` joins the pool and `a`
 * is drained: the task moves to `b` (attempt 2), which writes version 3.
 * The task id in `id`; `b`'s epoch. */
static long long moved_task(struct rdt_target *t, const char *pool, const char *a, const char *b,
                            const char *mode, char id[64])
{
    long long ea = agent(t, a, pool, mode);
    char body[160];
    snprintf(body, sizeof(body), "{\"requirements\":{\"labels\":{\"pool\":\"%s\"}}}", pool);
    struct rdt_resp r = {0};
    assert_int_equal(request(t, "POST", "/api/v1/tasks", body, &r), 201);
    snprintf(id, 64, "%s", json_string_value(rdt_json_path(r.json, "task_id")));
    rdt_resp_free(&r);
    json_t *x = await_assignment(t, a, ea, id, mode);
    assert_int_equal(json_integer_value(json_object_get(x, "attempt")), 1);
    json_decref(x);
    checkpoint_ok(t, id, 1, 1, a);
    checkpoint_ok(t, id, 1, 2, a);
    long long eb = agent(t, b, pool, mode);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/nodes/%s/drain", a);
    assert_int_equal(request(t, "POST", path, NULL, &r), 200);
    rdt_resp_free(&r);
    x = await_assignment(t, b, eb, id, mode);
    assert_int_equal(json_integer_value(json_object_get(x, "attempt")), 2);
    assert_int_equal(json_integer_value(rdt_json_path(x, "checkpoint.version")), 2);
    json_decref(x);
    checkpoint_ok(t, id, 2, 3, b);
    return eb;
}

/* The 409 conflict answer's details; checks the common shape. */
static void expect_conflict(const struct rdt_resp *r, const char *resolution, bool adopted)
{
    if (r->status != 409 || strcmp(rdt_err_code(r), "conflict") != 0)
        fail_msg("expected 409 conflict: %ld %s", r->status, r->body ? r->body : "");
    json_t *d = rdt_json_path(r->json, "error.details");
    if (d == NULL)
        d = rdt_json_path(r->json, "details");
    assert_non_null(d);
    assert_non_null(json_string_value(json_object_get(d, "conflict_id")));
    assert_string_equal(json_string_value(json_object_get(d, "resolution")), resolution);
    assert_true(json_is_true(json_object_get(d, "adopted")) == adopted);
}

static json_t *details_of(const struct rdt_resp *r)
{
    json_t *d = rdt_json_path(r->json, "error.details");
    return d != NULL ? d : rdt_json_path(r->json, "details");
}

static const char *conflict_id(const struct rdt_resp *r)
{
    return json_string_value(json_object_get(details_of(r), "conflict_id"));
}

/* Waits until task `id`'s `field` (an integer) is `want`; the task. */
static json_t *await_task_int(struct rdt_target *t, const char *id, const char *field,
                              long long want)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s", id);
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    for (;;) {
        json_t *task = get_json(t, path);
        if (json_integer_value(rdt_json_path(task, field)) == want)
            return task;
        if (rdt_now_ms() > deadline)
            fail_msg("task %s: %s never became %lld: %s", id, field, want,
                     json_dumps(task, JSON_COMPACT));
        json_decref(task);
        rdt_sleep_ms(20);
    }
}

static void test_availability_records_and_resolves_conflicts(void **state)
{
    (void)state;
    struct rdt_target t = {.p = &avail};
    char id[64], path[256];
    long long eb = moved_task(&t, "pa", "a1", "b1", "availability", id);

    /* a1, cut off, replays version 5 of its attempt 1: further progress
     * than b1's 3, so it is adopted and the task placed again. */
    struct rdt_resp r = {0};
    checkpoint(&t, id, 1, 5, "a1", &r);
    expect_conflict(&r, "keep_progress", true);
    char first[64];
    snprintf(first, sizeof(first), "%s", conflict_id(&r));
    assert_int_equal(json_integer_value(json_object_get(details_of(&r), "attempt")), 2);
    rdt_resp_free(&r);
    /* b1 (the only working agent) is handed attempt 3, resuming from it;
     * its attempt 2 is revoked. */
    json_t *x = await_assignment(&t, "b1", eb, id, "availability");
    assert_int_equal(json_integer_value(json_object_get(x, "attempt")), 3);
    assert_int_equal(json_integer_value(rdt_json_path(x, "checkpoint.version")), 5);
    assert_int_equal(json_integer_value(rdt_json_path(x, "checkpoint.data.step")), 5);
    json_decref(x);
    json_decref(await_task_int(&t, id, "checkpoint.version", 5));
    /* b1's attempt 2 writes no more: a conflict too (keep_progress; version
     * 4 is not above 5: nothing adopted). */
    checkpoint(&t, id, 2, 4, "b1", &r);
    expect_conflict(&r, "keep_progress", false);
    rdt_resp_free(&r);

    /* The same write again: its record answers, no second record. */
    checkpoint(&t, id, 1, 5, "a1", &r);
    expect_conflict(&r, "keep_progress", true);
    assert_string_equal(conflict_id(&r), first);
    rdt_resp_free(&r);

    snprintf(path, sizeof(path), "/api/v1/conflicts?task_id=%s", id);
    json_t *page = get_json(&t, path);
    json_t *items = json_object_get(page, "items");
    assert_int_equal(json_array_size(items), 2);
    json_t *c = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(c, "conflict_id")), first);
    assert_string_equal(json_string_value(json_object_get(c, "kind")), "checkpoint");
    assert_int_equal(json_integer_value(json_object_get(c, "attempt")), 1);
    assert_int_equal(json_integer_value(json_object_get(c, "task_attempt")), 2);
    assert_int_equal(json_integer_value(json_object_get(c, "version")), 5);
    assert_int_equal(json_integer_value(json_object_get(c, "stored_version")), 3);
    assert_string_equal(json_string_value(json_object_get(c, "node_id")), "a1");
    assert_string_equal(json_string_value(json_object_get(c, "task_node_id")), "b1");
    assert_string_equal(json_string_value(json_object_get(c, "resolved_by")), "policy");
    assert_true(json_is_true(json_object_get(c, "adopted")));
    assert_int_equal(json_integer_value(rdt_json_path(c, "data.step")), 5);
    c = json_array_get(items, 1);
    assert_int_equal(json_integer_value(json_object_get(c, "attempt")), 2);
    assert_int_equal(json_integer_value(json_object_get(c, "task_attempt")), 3);
    assert_int_equal(json_integer_value(json_object_get(c, "stored_version")), 5);
    assert_int_equal(json_integer_value(rdt_json_path(c, "data.step")), 4); /* kept */
    json_decref(page);
    snprintf(path, sizeof(path), "/api/v1/conflicts/%s", first);
    json_decref(get_json(&t, path));
    assert_int_equal(
        request(&t, "GET", "/api/v1/conflicts/00000000-0000-4000-8000-000000000000", NULL, &r),
        404);
    rdt_resp_free(&r);
    assert_int_equal(request(&t, "GET", "/api/v1/conflicts?resolution=keep_older", NULL, &r), 400);
    rdt_resp_free(&r);
    page = get_json(&t, "/api/v1/conflicts?resolution=fail_task");
    assert_int_equal(json_array_size(json_object_get(page, "items")), 0);
    json_decref(page);
    page = get_json(&t, "/api/v1/conflicts?limit=1");
    assert_int_equal(json_array_size(json_object_get(page, "items")), 1);
    snprintf(path, sizeof(path), "/api/v1/conflicts?limit=1&cursor=%s",
             json_string_value(json_object_get(page, "next_cursor")));
    json_decref(page);
    page = get_json(&t, path);
    assert_int_equal(json_integer_value(rdt_json_path(page, "items.0.attempt")), 2);
    json_decref(page);

    /* a1 replays its completion: the task completes with a1's result; b1's
     * later checkpoint then meets a finished task (recorded, engine). */
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/complete", id);
    assert_int_equal(request(&t, "POST", path,
                             "{\"attempt\":1,\"result\":{\"by\":\"a1\"},\"node_id\":\"a1\"}", &r),
                     409);
    expect_conflict(&r, "keep_progress", true);
    assert_string_equal(json_string_value(json_object_get(details_of(&r), "state")), "completed");
    rdt_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/tasks/%s", id);
    json_t *task = get_json(&t, path);
    assert_string_equal(json_string_value(json_object_get(task, "state")), "completed");
    assert_string_equal(json_string_value(rdt_json_path(task, "result.by")), "a1");
    json_decref(task);
    checkpoint(&t, id, 3, 6, "b1", &r);
    expect_conflict(&r, "keep_newer", false);
    rdt_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/conflicts?task_id=%s", id);
    page = get_json(&t, path);
    assert_int_equal(json_array_size(json_object_get(page, "items")), 4);
    assert_string_equal(json_string_value(rdt_json_path(page, "items.3.resolved_by")), "engine");
    assert_string_equal(json_string_value(rdt_json_path(page, "items.3.reason")), "task finished");
    json_decref(page);

    /* An attempt the task never had is no conflict: fenced. */
    checkpoint(&t, id, 9, 7, "b1", &r);
    assert_int_equal(r.status, 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);

    assert_int_equal(request(&t, "GET", "/metrics", NULL, &r), 200);
    assert_non_null(strstr(
        r.body, "recoveryd_conflicts_total{kind=\"checkpoint\",resolution=\"keep_progress\"} 2\n"));
    assert_non_null(strstr(
        r.body, "recoveryd_conflicts_total{kind=\"complete\",resolution=\"keep_progress\"} 1\n"));
    assert_non_null(strstr(
        r.body, "recoveryd_conflicts_total{kind=\"checkpoint\",resolution=\"keep_newer\"} 1\n"));
    assert_non_null(strstr(r.body, "recoveryd_conflicts 4\n"));
    rdt_resp_free(&r);
    /* The audit trail names each (the replayed one too). */
    page = get_json(&t, "/api/v1/audit?action=task_conflict");
    assert_int_equal(json_array_size(json_object_get(page, "items")), 5);
    assert_string_equal(json_string_value(rdt_json_path(page, "items.0.target")), id);
    assert_int_equal(json_integer_value(rdt_json_path(page, "items.0.outcome.status")), 409);
    json_decref(page);
}

static void test_consistency_still_fences(void **state)
{
    (void)state;
    struct rdt_target t = {.p = &consist};
    char id[64];
    moved_task(&t, "pc", "a2", "b2", "consistency", id);
    struct rdt_resp r = {0};
    checkpoint(&t, id, 1, 5, "a2", &r);
    assert_int_equal(r.status, 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/complete", id);
    assert_int_equal(request(&t, "POST", path, "{\"attempt\":1,\"result\":{}}", &r), 409);
    assert_string_equal(rdt_err_code(&r), "fenced");
    rdt_resp_free(&r);
    json_t *page = get_json(&t, "/api/v1/conflicts");
    assert_int_equal(json_array_size(json_object_get(page, "items")), 0);
    json_decref(page);
    json_t *task = await_task_int(&t, id, "checkpoint.version", 3);
    assert_string_equal(json_string_value(json_object_get(task, "node_id")), "b2");
    json_decref(task);
}

/* The hook fails: a policy_error fault, and the config's on_conflict
 * (fail_task) resolves it. */
static void test_a_failing_hook_falls_back_to_the_config(void **state)
{
    (void)state;
    struct rdt_target t = {.p = &fallback};
    char id[64], path[128];
    moved_task(&t, "pf", "a4", "b4", "availability", id);
    struct rdt_resp r = {0};
    checkpoint(&t, id, 1, 5, "a4", &r);
    expect_conflict(&r, "fail_task", false);
    assert_string_equal(json_string_value(json_object_get(details_of(&r), "state")), "failed");
    rdt_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/conflicts?task_id=%s", id);
    json_t *page = get_json(&t, path);
    assert_string_equal(json_string_value(rdt_json_path(page, "items.0.resolved_by")), "config");
    assert_non_null(
        strstr(json_string_value(rdt_json_path(page, "items.0.reason")), "on_conflict failed"));
    json_decref(page);
    snprintf(path, sizeof(path), "/api/v1/tasks/%s", id);
    json_t *task = get_json(&t, path);
    assert_string_equal(json_string_value(json_object_get(task, "state")), "failed");
    assert_non_null(strstr(json_string_value(json_object_get(task, "error")), "conflict "));
    json_decref(task);
    page = get_json(&t, "/api/v1/faults/records?limit=1000");
    bool found = false;
    json_t *x;
    size_t i;
    json_array_foreach(json_object_get(page, "items"), i, x)
    {
        const char *type = json_string_value(json_object_get(x, "fault_type"));
        found = found || (type != NULL && strcmp(type, "policy_error") == 0);
    }
    json_decref(page);
    assert_true(found);
}

/* ---- authentication ---------------------------------------------------------- */

/* A token of `role` (for `nodes`, or NULL) into the tokens file; its
 * secret in `sec`. 0 or -1. */
static int make_token(const char *id, const char *role, const char *nodes, char sec[160],
                      FILE *file)
{
    char *argv[] = {RD_BINARY,     "token",  "new",        "--id",
                    (char *)id,    "--role", (char *)role, nodes ? "--nodes" : NULL,
                    (char *)nodes, NULL};
    char *out = NULL, *err = NULL;
    int rc = rdt_run(argv, 10000, &out, &err);
    const char *sp = out ? strstr(out, "secret: ") : NULL;
    const char *lp = out ? strstr(out, "line:   ") : NULL;
    int ok = -1;
    if (rc == 0 && sp != NULL && lp != NULL) {
        snprintf(sec, 160, "%.*s", (int)strcspn(sp + 8, "\n"), sp + 8);
        fprintf(file, "%.*s\n", (int)strcspn(lp + 8, "\n"), lp + 8);
        ok = 0;
    }
    free(out);
    free(err);
    return ok;
}

/* With authentication on, agent a5's token may send its old attempt's
 * writes to the task that moved to b5 when it names itself (only a
 * conflict comes of it), never a write to the live attempt. */
static void test_an_agent_token_may_send_only_conflicts_for_other_nodes(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    char admin[160], ta[160], tb[160], tc[160], tokens[400], yaml[800];
    assert_int_equal(rdt_proc_prepare(&p), 0);
    snprintf(tokens, sizeof(tokens), "%s/tokens", p.dir);
    FILE *f = fopen(tokens, "w");
    assert_non_null(f);
    assert_int_equal(
        make_token("t-admin", "admin", NULL, admin, f) | make_token("t-a5", "agent", "a5", ta, f) |
            make_token("t-b5", "agent", "b5", tb, f) | make_token("t-c5", "agent", "c5", tc, f),
        0);
    fclose(f);
    snprintf(yaml, sizeof(yaml), "security:\n  tokens_file: %s\n" CONFIG_AVAILABILITY, tokens);
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    rdt_bearer = admin;
    assert_int_equal(rdt_wait_ready(&p, rdt_ms(15000)), 0);
    struct rdt_target t = {.p = &p};
    rdt_bearer = ta;
    long long ea = agent(&t, "a5", "p5", "availability");
    rdt_bearer = admin;
    struct rdt_resp r = {0};
    assert_int_equal(request(&t, "POST", "/api/v1/tasks",
                             "{\"requirements\":{\"labels\":{\"pool\":\"p5\"}}}", &r),
                     201);
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(rdt_json_path(r.json, "task_id")));
    rdt_resp_free(&r);
    rdt_bearer = ta;
    json_decref(await_assignment(&t, "a5", ea, id, "availability"));
    checkpoint_ok(&t, id, 1, 1, "a5");
    rdt_bearer = tb;
    long long eb = agent(&t, "b5", "p5", "availability");
    rdt_bearer = admin;
    assert_int_equal(request(&t, "POST", "/api/v1/nodes/a5/drain", NULL, &r), 200);
    rdt_resp_free(&r);
    rdt_bearer = tb;
    json_decref(await_assignment(&t, "b5", eb, id, "availability"));
    checkpoint_ok(&t, id, 2, 2, "b5");

    rdt_bearer = ta;
    checkpoint(&t, id, 1, 5, "a5", &r); /* its old attempt, naming itself: a conflict */
    expect_conflict(&r, "keep_progress", true);
    rdt_resp_free(&r);
    /* The live attempt (now 2, taken back: placed again as 3) is not a5's to
     * write, named or not; nor may it claim to be b5. */
    rdt_bearer = admin;
    json_decref(await_task_int(&t, id, "attempt", 3));
    rdt_bearer = ta;
    assert_int_equal(checkpoint(&t, id, 3, 9, "a5", &r), 403);
    rdt_resp_free(&r);
    assert_int_equal(checkpoint(&t, id, 1, 9, "b5", &r), 403);
    rdt_resp_free(&r);
    /* Nor may it send writes of b5's superseded attempt 2 as itself (the
     * engine knows attempt 2 ran on b5), nor may c5, which ran none. */
    assert_int_equal(checkpoint(&t, id, 2, 9, "a5", &r), 403);
    assert_non_null(strstr(r.body, "did not run on node a5"));
    rdt_resp_free(&r);
    rdt_bearer = tc;
    assert_int_equal(checkpoint(&t, id, 1, 9, "c5", &r), 403);
    rdt_resp_free(&r);
    rdt_bearer = ta;
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", id);
    assert_int_equal(request(&t, "PUT", path, "{\"attempt\":1,\"version\":9,\"data\":{}}", &r),
                     403);
    rdt_resp_free(&r);
    rdt_bearer = NULL;
    rdt_proc_cleanup(&p);
}

/* ---- three replicas --------------------------------------------------------- */

/* Replica `i`'s records (its own state: a stale read), once it holds `n`. */
static json_t *records_on(struct rdt_cluster *cl, int i, size_t n)
{
    struct rdt_target t = {.p = &cl->procs[i]};
    int64_t deadline = rdt_now_ms() + rdt_ms(15000);
    for (;;) {
        struct rdt_resp r = {0};
        /* A replica starting again answers 503 until it knows the leader. */
        json_t *items = request(&t, "GET", "/api/v1/conflicts?stale=true", NULL, &r) == 200
                            ? json_incref(json_object_get(r.json, "items"))
                            : NULL;
        if (json_array_size(items) == n) {
            rdt_resp_free(&r);
            return items;
        }
        json_decref(items);
        if (rdt_now_ms() > deadline)
            fail_msg("replica %d never held %zu conflict records: %ld %s", i + 1, n, r.status,
                     r.body ? r.body : "");
        rdt_resp_free(&r);
        rdt_sleep_ms(50);
    }
}

static void test_three_replicas_agree_after_a_leader_change(void **state)
{
    (void)state;
    struct rdt_cluster cl = {0};
    assert_int_equal(rdt_cluster_start(&cl, 3, CONFIG_AVAILABILITY, NULL), 0);
    struct rdt_target t = {.c = &cl};
    char id[64];
    moved_task(&t, "p3", "a3", "b3", "availability", id);
    struct rdt_resp r = {0};
    checkpoint(&t, id, 1, 9, "a3", &r);
    expect_conflict(&r, "keep_progress", true);
    char first[64];
    snprintf(first, sizeof(first), "%s", conflict_id(&r));
    rdt_resp_free(&r);

    /* The leader goes; the new one answers the replayed write from the
     * record (same id), and records a new one alike. */
    int leader = rdt_cluster_leader(&cl, rdt_ms(10000));
    assert_true(leader >= 0);
    assert_int_equal(rdt_proc_kill9(&cl.procs[leader]), 0);
    int next = -1;
    for (int64_t until = rdt_now_ms() + rdt_ms(15000); next < 0 || next == leader;) {
        next = rdt_cluster_leader(&cl, rdt_ms(1000));
        assert_true(rdt_now_ms() < until);
    }
    t.first = next;
    checkpoint(&t, id, 1, 9, "a3", &r);
    expect_conflict(&r, "keep_progress", true);
    assert_string_equal(conflict_id(&r), first);
    rdt_resp_free(&r);
    checkpoint(&t, id, 1, 7, "a3", &r);
    expect_conflict(&r, "keep_progress", false);
    rdt_resp_free(&r);

    /* The killed replica comes back and catches up: all three hold the
     * same two records, field by field. */
    assert_int_equal(rdt_proc_restart(&cl.procs[leader]), 0);
    json_t *want = records_on(&cl, next, 2);
    for (int i = 0; i < 3; i++) {
        json_t *got = records_on(&cl, i, 2);
        if (!json_equal(got, want))
            fail_msg("replica %d holds %s, the leader %s", i + 1, json_dumps(got, JSON_COMPACT),
                     json_dumps(want, JSON_COMPACT));
        json_decref(got);
    }
    assert_string_equal(json_string_value(rdt_json_path(want, "0.conflict_id")), first);
    json_decref(want);
    rdt_cluster_cleanup(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_availability_records_and_resolves_conflicts),
        cmocka_unit_test(test_consistency_still_fences),
        cmocka_unit_test(test_a_failing_hook_falls_back_to_the_config),
    };
    const struct CMUnitTest cluster_tests[] = {
        cmocka_unit_test(test_an_agent_token_may_send_only_conflicts_for_other_nodes),
        cmocka_unit_test(test_three_replicas_agree_after_a_leader_change),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return rc != 0 ? rc : cmocka_run_group_tests(cluster_tests, NULL, NULL);
}
