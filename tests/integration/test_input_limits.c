/*
 * The API's input limits (engine/http/input_limits.h, docs/api-limits.md) on
 * the real binary: an oversized body or field, too-deep JSON, a too-long
 * list, numbers out of range, bad ids and an over-long query each answer
 * the documented 400 bad_request or 413 too_large naming the limit, and
 * change nothing. And the cluster API's three findings of issue 12: an
 * over-long or malformed replica address, a voter that cannot be reached
 * (504 replica_unreachable, no member left behind), replica ids that are not
 * positive integers in range.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define TASK  "6f1b2c3d-8e9f-4a0b-9c1d-2e3f4a5b6c7d"
#define NODE  "limits-a"
#define LIMIT (64 * 1024)

static struct rdt_proc proc;
static long long epoch_a;

static int setup(void **state)
{
    (void)state;
    struct rdt_resp r = {0};
    /* A label no agent has: the task stays pending, so nothing moves between snapshots. */
    const char *submit = "{\"task_id\":\"" TASK "\",\"payload\":{\"n\":1},"
                         "\"requirements\":{\"labels\":{\"never\":\"x\"}}}";
    if (rdt_proc_start(&proc, "fault_tolerance:\n  detection:\n    heartbeat_interval: 30s\n") !=
            0 ||
        rdt_wait_ready(&proc, 15000) != 0 || rdt_register(&proc, NODE, 2, &epoch_a) != 0 ||
        rdt_post(&proc, RDT_H1, "/api/v1/tasks", submit, &r) != 0 || r.status != 201) {
        rdt_resp_free(&r);
        rdt_proc_cleanup(&proc);
        return -1;
    }
    rdt_resp_free(&r);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rdt_proc_cleanup(&proc);
    return 0;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* What a refused request must not change: the nodes, the tasks, the replicas. */
static char *snapshot(void)
{
    static const char *const paths[] = {"/api/v1/nodes", "/api/v1/tasks",
                                        "/api/v1/cluster/replicas"};
    json_t *all = json_object();
    for (size_t i = 0; i < 3; i++) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&proc, RDT_H1, paths[i], &r), 0);
        assert_int_equal(r.status, 200);
        json_t *v = json_deep_copy(r.json);
        /* Fields that move on their own (heartbeat bookkeeping) are left out. */
        json_t *items = json_object_get(v, i == 2 ? "replicas" : "items");
        size_t k;
        json_t *it;
        json_array_foreach(items, k, it)
        {
            json_object_del(it, "phi");
            json_object_del(it, "last_heartbeat_at");
            json_object_del(it, "load");
            json_object_del(it, "applied_index");
        }
        json_object_set_new(all, paths[i], v);
        rdt_resp_free(&r);
    }
    char *s = json_dumps(all, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(all);
    return s;
}

/*
 * Sends the request and checks the answer: `status`, `code`, and when given
 * details.field and details.limit; then that nothing changed.
 */
static void refused(const char *method, const char *path, const char *body, size_t len, long status,
                    const char *code, const char *field, long long limit)
{
    char *before = snapshot();
    size_t ulen = strlen(proc.base_url) + strlen(path) + 1;
    char *url = malloc(ulen);
    snprintf(url, ulen, "%s%s", proc.base_url, path);
    for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_http((enum rdt_proto)proto, method, url, body, len, &r), 0);
        if (r.status != status || rdt_err_code(&r) == NULL || strcmp(rdt_err_code(&r), code) != 0)
            fail_msg("%s %.80s: %ld %.300s, expected %ld %s", method, path, r.status,
                     r.body ? r.body : "", status, code);
        if (field != NULL) {
            const char *f = json_string_value(rdt_json_path(r.json, "error.details.field"));
            if (f == NULL || strcmp(f, field) != 0)
                fail_msg("%s %.80s: details.field %s, expected %s (%.300s)", method, path,
                         f ? f : "(none)", field, r.body);
        }
        if (limit != 0)
            assert_int_equal(json_integer_value(rdt_json_path(r.json, "error.details.limit")),
                             limit);
        rdt_resp_free(&r);
    }
    free(url);
    char *after = snapshot();
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void refused_s(const char *method, const char *path, const char *body, long status,
                      const char *code, const char *field, long long limit)
{
    refused(method, path, body, body ? strlen(body) : 0, status, code, field, limit);
}

static long call(const char *method, const char *path, const char *body, struct rdt_resp *r)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", proc.base_url, path);
    assert_int_equal(rdt_http(RDT_H1, method, url, body, body ? strlen(body) : 0, r), 0);
    return r->status;
}

/* ---- bodies --------------------------------------------------------------- */

/* A heartbeat (a small-body route) over 64 KiB is 413 naming 64 KiB; a task
 * submission (a document route) of the same size is taken. */
static void test_body_limit_per_route(void **state)
{
    (void)state;
    char hb[128];
    snprintf(hb, sizeof hb, "/api/v1/nodes/%s/heartbeat", NODE);
    size_t n = LIMIT + 1;
    char *body = malloc(n + 1);
    int h = snprintf(body, 64, "{\"epoch\":%lld,\"pad\":\"", epoch_a);
    memset(body + h, 'x', n - (size_t)h - 2);
    memcpy(body + n - 2, "\"}", 3);
    refused("POST", hb, body, n, 413, "too_large", NULL, LIMIT);
    refused("POST", "/api/v1/nodes/" NODE "/isolate", body, n, 413, "too_large", NULL, LIMIT);
    free(body);

    /* 100 KB of payload: over the small limit, within the task routes' own. */
    n = 100 * 1000;
    body = malloc(n + 128);
    h = snprintf(body, 128,
                 "{\"requirements\":{\"labels\":{\"never\":\"x\"}},"
                 "\"payload\":{\"blob\":\"");
    memset(body + h, 'y', n);
    strcpy(body + h + n, "\"}}");
    struct rdt_resp r = {0};
    assert_int_equal(call("POST", "/api/v1/tasks", body, &r), 201);
    rdt_resp_free(&r);
    free(body);
}

/* JSON nested deeper than 64 is refused before it is parsed, whatever the route. */
static void test_too_deep(void **state)
{
    (void)state;
    for (int depth = 65; depth <= 100000; depth *= 40) {
        size_t n = (size_t)depth * 2 + 64;
        char *body = malloc(n);
        int o = snprintf(body, n, "{\"node_id\":\"deep\",\"labels\":");
        for (int i = 1; i < depth; i++)
            body[o++] = '[';
        for (int i = 1; i < depth; i++)
            body[o++] = ']';
        body[o++] = '}';
        body[o] = '\0';
        if ((size_t)o <= LIMIT)
            refused_s("POST", "/api/v1/nodes", body, 400, "bad_request", NULL, 64);
        char path[128];
        snprintf(path, sizeof path, "/api/v1/tasks/%s/checkpoint", TASK);
        o = snprintf(body, n, "{\"attempt\":1,\"version\":1,\"data\":");
        for (int i = 0; i < depth; i++)
            body[o++] = '[';
        for (int i = 0; i < depth; i++)
            body[o++] = ']';
        body[o++] = '}';
        body[o] = '\0';
        refused_s("PUT", path, body, 400, "bad_request", NULL, 64);
        free(body);
    }
    /* Brackets inside strings are text, not nesting. */
    char *s = repeat('[', 200);
    char body[400];
    snprintf(body, sizeof body, "{\"node_id\":\"deep-ok\",\"labels\":{\"k\":\"%.200s\"}}", s);
    free(s);
    struct rdt_resp r = {0};
    assert_int_equal(call("POST", "/api/v1/nodes", body, &r), 201);
    rdt_resp_free(&r);
}

/* ---- strings and lists ------------------------------------------------------ */

static void test_long_strings(void **state)
{
    (void)state;
    char *s = repeat('r', 513);
    char body[5000];
    snprintf(body, sizeof body, "{\"reason\":\"%s\"}", s);
    refused_s("POST", "/api/v1/nodes/" NODE "/drain", body, 400, "bad_request", "reason", 512);
    refused_s("POST", "/api/v1/nodes/" NODE "/isolate", body, 400, "bad_request", "reason", 512);
    free(s);

    s = repeat('h', 1100);
    snprintf(body, sizeof body, "{\"node_id\":\"long-url\",\"health_url\":\"http://%s\"}", s);
    refused_s("POST", "/api/v1/nodes", body, 400, "bad_request", "health_url", 1024);
    free(s);

    s = repeat('k', 256);
    snprintf(body, sizeof body, "{\"node_id\":\"long-label\",\"labels\":{\"%s\":\"v\"}}", s);
    refused_s("POST", "/api/v1/nodes", body, 400, "bad_request", "labels", 64);
    snprintf(body, sizeof body, "{\"node_id\":\"long-label\",\"labels\":{\"k\":\"%s\"}}", s);
    refused_s("POST", "/api/v1/nodes", body, 400, "bad_request", "labels", 64);
    free(s);

    s = repeat('e', 4097);
    snprintf(body, sizeof body, "{\"attempt\":1,\"error\":\"%s\"}", s);
    refused_s("POST", "/api/v1/tasks/" TASK "/fail", body, 400, "bad_request", "error", 4096);
    free(s);

    s = repeat('t', 129);
    snprintf(body, sizeof body, "{\"target\":\"%s\"}", s);
    refused_s("POST", "/api/v1/backup/trigger", body, 400, "bad_request", "target", 128);
    free(s);

    /* The query string as a whole. */
    s = repeat('q', 5000);
    char *path = malloc(5100);
    snprintf(path, 5100, "/api/v1/nodes?state=alive&x=%s", s);
    refused_s("GET", path, NULL, 400, "bad_request", "query", 4096);
    free(path);
    free(s);
}

static char *labels_body(const char *prefix, int n, const char *suffix)
{
    size_t cap = (size_t)n * 24 + 256;
    char *b = malloc(cap);
    int o = snprintf(b, cap, "%s{", prefix);
    for (int i = 0; i < n; i++)
        o += snprintf(b + o, cap - (size_t)o, "%s\"k%d\":\"v\"", i ? "," : "", i);
    snprintf(b + o, cap - (size_t)o, "}%s", suffix);
    return b;
}

static void test_long_lists(void **state)
{
    (void)state;
    char *b = labels_body("{\"node_id\":\"many-labels\",\"labels\":", 65, "}");
    refused_s("POST", "/api/v1/nodes", b, 400, "bad_request", "labels", 64);
    free(b);
    b = labels_body("{\"payload\":{},\"requirements\":{\"labels\":", 65, "}}");
    refused_s("POST", "/api/v1/tasks", b, 400, "bad_request", "requirements.labels", 64);
    free(b);
    /* A task's label values are strings, as an agent's are. */
    refused_s("POST", "/api/v1/tasks", "{\"requirements\":{\"labels\":{\"gpu\":{\"a\":1}}}}", 400,
              "bad_request", "requirements.labels", 64);
    /* 64 is within the limit. */
    b = labels_body("{\"node_id\":\"64-labels\",\"labels\":", 64, "}");
    struct rdt_resp r = {0};
    assert_int_equal(call("POST", "/api/v1/nodes", b, &r), 201);
    rdt_resp_free(&r);
    free(b);
}

/* ---- numbers ---------------------------------------------------------------- */

static void test_numbers_out_of_range(void **state)
{
    (void)state;
    char hb[128], body[256];
    snprintf(hb, sizeof hb, "/api/v1/nodes/%s/heartbeat", NODE);
    const long long max_int = 9007199254740991LL;
    static const char *const bad_epochs[] = {
        "-1", "0", "9007199254740992", "9223372036854775807", "1.5", "1e400", "\"1\""};
    for (size_t i = 0; i < sizeof bad_epochs / sizeof bad_epochs[0]; i++) {
        snprintf(body, sizeof body, "{\"epoch\":%s}", bad_epochs[i]);
        /* 1e400 is not a number jansson can hold: malformed, no field named. */
        bool malformed = strcmp(bad_epochs[i], "1e400") == 0;
        refused_s("POST", hb, body, 400, "bad_request", malformed ? NULL : "epoch",
                  malformed ? 0 : max_int);
    }
    refused_s("POST", hb, "{\"epoch\":1,\"metrics\":{\"cpu\":1e7}}", 400, "bad_request",
              "metrics.cpu", 1000000);
    refused_s("POST", hb, "{\"epoch\":1,\"metrics\":{\"error_rate\":-0.5}}", 400, "bad_request",
              "metrics.error_rate", 1);
    refused_s("POST", "/api/v1/tasks", "{\"priority\":10}", 400, "bad_request", "priority", 9);
    /* Past int64: malformed JSON for jansson, still a 400. */
    refused_s("POST", hb, "{\"epoch\":99999999999999999999999}", 400, "bad_request", NULL, 0);

    char ck[128];
    snprintf(ck, sizeof ck, "/api/v1/tasks/%s/checkpoint", TASK);
    refused_s("PUT", ck, "{\"attempt\":4294967296,\"version\":1,\"data\":{}}", 400, "bad_request",
              "attempt", 4294967295LL);
    refused_s("PUT", ck, "{\"attempt\":-1,\"version\":1,\"data\":{}}", 400, "bad_request",
              "attempt", 4294967295LL);
    refused_s("PUT", ck, "{\"attempt\":1,\"version\":9007199254740992,\"data\":{}}", 400,
              "bad_request", "version", max_int);
    refused_s("POST", "/api/v1/tasks/" TASK "/complete", "{\"attempt\":4294967297}", 400,
              "bad_request", "attempt", 4294967295LL);
    refused_s("POST", "/api/v1/tasks", "{\"max_attempts\":1001}", 400, "bad_request",
              "max_attempts", 1000);
    refused_s("POST", "/api/v1/tasks", "{\"max_attempts\":0}", 400, "bad_request", "max_attempts",
              1000);
    refused_s("POST", "/api/v1/nodes", "{\"node_id\":\"n\",\"capacity\":{\"slots\":65537}}", 400,
              "bad_request", "capacity.slots", 65536);
    refused_s("GET", "/api/v1/tasks?limit=1001", NULL, 400, "bad_request", "limit", 1000);
    refused_s("GET", "/api/v1/tasks?limit=-5", NULL, 400, "bad_request", "limit", 1000);
    refused_s("POST", "/api/v1/cluster/replicas",
              "{\"id\":9007199254740992,\"role\":\"voter\",\"address\":\"127.0.0.1:1\","
              "\"api_url\":\"http://127.0.0.1:1\"}",
              400, "bad_request", "id", max_int);
}

/* ---- ids -------------------------------------------------------------------- */

static void test_bad_replica_ids(void **state)
{
    (void)state;
    static const char *const bad[] = {"-1",
                                      "0",
                                      "18446744073709551615",
                                      "18446744073709551616",
                                      "9007199254740992",
                                      "1x",
                                      "+1",
                                      "%201",
                                      "1.0",
                                      "0x1",
                                      "99999999999999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[160];
        snprintf(path, sizeof path, "/api/v1/cluster/replicas/%s", bad[i]);
        refused_s("DELETE", path, NULL, 400, "bad_request", "id", 9007199254740991LL);
        snprintf(path, sizeof path, "/api/v1/cluster/replicas/%s/rejoin", bad[i]);
        refused_s("POST", path, "{\"phase\":\"leave\"}", 400, "bad_request", "id",
                  9007199254740991LL);
    }
    /* In range but not a member: 404, as before. */
    refused_s("DELETE", "/api/v1/cluster/replicas/99", NULL, 404, "not_found", NULL, 0);
    refused_s("GET", "/api/v1/tasks/not-a-uuid", NULL, 400, "bad_request", "task_id", 0);
    refused_s("GET", "/api/v1/tasks?cursor=x", NULL, 400, "bad_request", "cursor", 0);
}

/* ---- the cluster API's findings --------------------------------------------- */

/* A 244-character address was stored cut to 231 with its port lost. */
static void test_replica_address(void **state)
{
    (void)state;
    char *host = repeat('h', 238);
    char body[600];
    snprintf(body, sizeof body,
             "{\"id\":7,\"role\":\"voter\",\"address\":\"%s:12345\","
             "\"api_url\":\"http://127.0.0.1:1\"}",
             host); /* 244 characters */
    refused_s("POST", "/api/v1/cluster/replicas", body, 400, "bad_request", "address", 200);
    free(host);
    static const char *const malformed[] = {"\"127.0.0.1\"",
                                            "\"127.0.0.1:0\"",
                                            "\"127.0.0.1:70000\"",
                                            "\"::1:5\"",
                                            "\"host name:5\"",
                                            "\"256.1.1.1:5\"",
                                            "5",
                                            "\"\""};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        snprintf(body, sizeof body,
                 "{\"id\":7,\"role\":\"voter\",\"address\":%s,\"api_url\":\"http://127.0.0.1:1\"}",
                 malformed[i]);
        refused_s("POST", "/api/v1/cluster/replicas", body, 400, "bad_request", "address", 0);
    }
    snprintf(body, sizeof body,
             "{\"id\":7,\"role\":\"voter\",\"address\":\"127.0.0.1:9\",\"api_url\":5}");
    refused_s("POST", "/api/v1/cluster/replicas", body, 400, "bad_request", "api_url", 255);
}

/*
 * A voter at an address where nothing listens: 504 replica_unreachable
 * naming it, and the membership is as it was (no spare left behind), so
 * the same id can be added later.
 */
static void test_unreachable_voter(void **state)
{
    (void)state;
    uint16_t port, unused;
    assert_int_equal(rdt_free_ports(&port, &unused), 0);
    char body[256];
    snprintf(body, sizeof body,
             "{\"id\":5,\"role\":\"voter\",\"address\":\"127.0.0.1:%u\","
             "\"api_url\":\"http://127.0.0.1:%u\"}",
             (unsigned)port, (unsigned)unused);
    char *before = snapshot();
    struct rdt_resp r = {0};
    assert_int_equal(call("POST", "/api/v1/cluster/replicas", body, &r), 504);
    assert_string_equal(rdt_err_code(&r), "replica_unreachable");
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "error.details.id")), 5);
    rdt_resp_free(&r);
    char *after = snapshot();
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* One voter still, and it takes writes. */
    assert_int_equal(call("GET", "/api/v1/cluster/replicas", NULL, &r), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "replicas")), 1);
    rdt_resp_free(&r);
    assert_int_equal(call("POST", "/api/v1/nodes", "{\"node_id\":\"after-unreachable\"}", &r), 201);
    rdt_resp_free(&r);
}

/* Nothing above made the engine log an error or crash. */
static void test_still_serving(void **state)
{
    (void)state;
    assert_true(rdt_proc_alive(&proc));
    struct rdt_resp r = {0};
    assert_int_equal(call("GET", "/health", NULL, &r), 200);
    rdt_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_limit_per_route), cmocka_unit_test(test_too_deep),
        cmocka_unit_test(test_long_strings),         cmocka_unit_test(test_long_lists),
        cmocka_unit_test(test_numbers_out_of_range), cmocka_unit_test(test_bad_replica_ids),
        cmocka_unit_test(test_replica_address),      cmocka_unit_test(test_unreachable_voter),
        cmocka_unit_test(test_still_serving),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
