/*
 * The REST contract (API.md) against the real daemon over real sockets. One
 * daemon serves the whole file; every test runs twice, over HTTP/1.1 and over
 * HTTP/2 with prior knowledge, and uses node ids suffixed with the protocol
 * so the two runs never see each other's nodes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MiB (1024 * 1024)

static struct rdt_proc g_proc;
static enum rdt_proto g_h1 = RDT_H1;
static enum rdt_proto g_h2 = RDT_H2;

/*
 * Slow heartbeats: a node registered here and never heard from again stays
 * alive for the whole file, so "nothing changed" checks compare like with like.
 */
static const char g_yaml[] = "fault_tolerance:\n"
                             "  detection:\n"
                             "    heartbeat_interval: 30s\n";

/* ---- helpers ---------------------------------------------------------------- */

static enum rdt_proto proto_of(void **state)
{
    return *(enum rdt_proto *)*state;
}

static const char *sfx(enum rdt_proto proto)
{
    return proto == RDT_H2 ? "h2" : "h1";
}

/* rdt_http() on the file's daemon; `body` is a NUL-terminated string or NULL. */
static int req(enum rdt_proto proto, const char *method, const char *path, const char *body,
               struct rdt_resp *r)
{
    char url[2048];
    int n = snprintf(url, sizeof url, "%s%s", g_proc.base_url, path);
    assert_true(n > 0 && (size_t)n < sizeof url);
    return rdt_http(proto, method, url, body, body ? strlen(body) : 0, r);
}

/* A response arrived, with `status`, over the protocol that was asked for. */
static void expect_status(int rc, const struct rdt_resp *r, enum rdt_proto proto, long status)
{
    if (rc != 0 || r->status != status) {
        print_message("expected status %ld, got rc=%d status=%ld curl=\"%s\" body=%.600s\n", status,
                      rc, r->status, r->curl_error, r->body ? r->body : "(none)");
    }
    assert_int_equal(rc, 0);
    assert_int_equal(r->status, status);
    assert_int_equal(r->http_version,
                     proto == RDT_H2 ? CURL_HTTP_VERSION_2_0 : CURL_HTTP_VERSION_1_1);
}

static void expect_json(const struct rdt_resp *r)
{
    if (strncmp(r->content_type, "application/json", 16) != 0) {
        print_message("Content-Type is \"%s\"\n", r->content_type);
    }
    assert_int_equal(strncmp(r->content_type, "application/json", 16), 0);
    assert_non_null(r->json);
}

static const char *jstr(json_t *root, const char *path)
{
    json_t *v = rdt_json_path(root, path);
    if (!json_is_string(v)) {
        print_message("%s is not a string\n", path);
    }
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static long long jint(json_t *root, const char *path)
{
    json_t *v = rdt_json_path(root, path);
    if (!json_is_integer(v)) {
        print_message("%s is not an integer\n", path);
    }
    assert_true(json_is_integer(v));
    return (long long)json_integer_value(v);
}

/*
 * The one error shape: {"error": {"code", "message", "details": {}}} as JSON.
 * When `field` is not NULL, details.field must name it.
 */
static void expect_error(int rc, const struct rdt_resp *r, enum rdt_proto proto, long status,
                         const char *code, const char *field)
{
    expect_status(rc, r, proto, status);
    expect_json(r);
    assert_true(json_is_object(rdt_json_path(r->json, "error")));
    assert_string_equal(jstr(r->json, "error.code"), code);
    assert_true(strlen(jstr(r->json, "error.message")) > 0);
    assert_true(json_is_object(rdt_json_path(r->json, "error.details")));
    if (field) {
        assert_string_equal(jstr(r->json, "error.details.field"), field);
    }
}

/* Every node as listed, without `phi`, which is computed at read time. */
static json_t *nodes_snapshot(enum rdt_proto proto)
{
    struct rdt_resp r = {0};
    int rc = req(proto, "GET", "/api/v1/nodes?limit=1000", NULL, &r);
    expect_status(rc, &r, proto, 200);
    json_t *items = rdt_json_path(r.json, "items");
    assert_true(json_is_array(items));
    json_t *copy = json_deep_copy(items);
    rdt_resp_free(&r);
    size_t i;
    json_t *node;
    json_array_foreach(copy, i, node)
    {
        json_object_del(node, "phi");
    }
    return copy;
}

static void expect_unchanged(json_t *before, enum rdt_proto proto)
{
    json_t *after = nodes_snapshot(proto);
    int same = json_equal(before, after);
    if (!same) {
        char *a = json_dumps(before, JSON_COMPACT);
        char *b = json_dumps(after, JSON_COMPACT);
        print_message("the node list changed:\nbefore %.2000s\nafter  %.2000s\n", a, b);
        free(a);
        free(b);
    }
    json_decref(after);
    assert_true(same);
}

/*
 * Sends a request that must be refused with `status`/`code` (and details.field
 * `field` when not NULL) and must change no node.
 */
static void bad_request_len(enum rdt_proto proto, const char *method, const char *path,
                            const char *body, size_t body_len, long status, const char *code,
                            const char *field)
{
    json_t *before = nodes_snapshot(proto);
    char url[2048];
    snprintf(url, sizeof url, "%s%s", g_proc.base_url, path);
    struct rdt_resp r = {0};
    int rc = rdt_http(proto, method, url, body, body_len, &r);
    if (rc != 0 || r.status != status) {
        print_message("%s %.200s (%zu byte body)\n", method, path, body_len);
    }
    expect_error(rc, &r, proto, status, code, field);
    rdt_resp_free(&r);
    expect_unchanged(before, proto);
    json_decref(before);
}

static void bad_request(enum rdt_proto proto, const char *method, const char *path,
                        const char *body, long status, const char *code, const char *field)
{
    bad_request_len(proto, method, path, body, body ? strlen(body) : 0, status, code, field);
}

/* GET /api/v1/nodes/{id} must answer 404 not_found. */
static void expect_no_node(enum rdt_proto proto, const char *id)
{
    char path[512];
    snprintf(path, sizeof path, "/api/v1/nodes/%s", id);
    struct rdt_resp r = {0};
    int rc = req(proto, "GET", path, NULL, &r);
    expect_error(rc, &r, proto, 404, "not_found", NULL);
    rdt_resp_free(&r);
}

struct reg {
    long long epoch;
    long long interval_ms;
    long long lease_ms;
};

/* Registers `id` over `proto` with 8 slots and zone z1; checks the 201 body. */
static struct reg register_node(enum rdt_proto proto, const char *id)
{
    json_t *body = json_pack("{s:s, s:{s:i}, s:{s:s}}", "node_id", id, "capacity", "slots", 8,
                             "labels", "zone", "z1");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct rdt_resp r = {0};
    int rc = req(proto, "POST", "/api/v1/nodes", text, &r);
    free(text);
    expect_status(rc, &r, proto, 201);
    expect_json(&r);
    assert_string_equal(jstr(r.json, "node_id"), id);
    struct reg g = {
        .epoch = jint(r.json, "epoch"),
        .interval_ms = jint(r.json, "heartbeat_interval_ms"),
        .lease_ms = jint(r.json, "lease_ms"),
    };
    rdt_resp_free(&r);
    assert_true(g.epoch >= 1);
    assert_true(g.interval_ms > 0);
    assert_true(g.lease_ms >= g.interval_ms);
    return g;
}

/* POST heartbeat with `epoch`, slots_used `used` and a metrics block. */
static int heartbeat(enum rdt_proto proto, const char *id, long long epoch, int used,
                     struct rdt_resp *r)
{
    json_t *body = json_pack("{s:I, s:{s:i}, s:{s:f, s:i}}", "epoch", (json_int_t)epoch, "load",
                             "slots_used", used, "metrics", "error_rate", 0.01, "latency_ms", 20);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char path[512];
    snprintf(path, sizeof path, "/api/v1/nodes/%s/heartbeat", id);
    int rc = req(proto, "POST", path, text, r);
    free(text);
    return rc;
}

static void expect_heartbeat_ok(enum rdt_proto proto, const char *id, long long epoch, int used)
{
    struct rdt_resp r = {0};
    int rc = heartbeat(proto, id, epoch, used, &r);
    expect_status(rc, &r, proto, 200);
    expect_json(&r);
    rdt_resp_free(&r);
}

static void expect_heartbeat_fenced(enum rdt_proto proto, const char *id, long long epoch)
{
    struct rdt_resp r = {0};
    int rc = heartbeat(proto, id, epoch, 1, &r);
    expect_error(rc, &r, proto, 409, "fenced", NULL);
    rdt_resp_free(&r);
}

/* GET /api/v1/nodes/{id}, 200; the caller owns the returned object. */
static json_t *get_node(enum rdt_proto proto, const char *id)
{
    char path[512];
    snprintf(path, sizeof path, "/api/v1/nodes/%s", id);
    struct rdt_resp r = {0};
    int rc = req(proto, "GET", path, NULL, &r);
    expect_status(rc, &r, proto, 200);
    expect_json(&r);
    json_t *node = json_incref(r.json);
    rdt_resp_free(&r);
    assert_string_equal(jstr(node, "node_id"), id);
    return node;
}

/* GET `path` (a list), 200 with {"items": [...], "next_cursor"}; caller owns it. */
static json_t *get_list(enum rdt_proto proto, const char *path)
{
    struct rdt_resp r = {0};
    int rc = req(proto, "GET", path, NULL, &r);
    expect_status(rc, &r, proto, 200);
    expect_json(&r);
    json_t *list = json_incref(r.json);
    rdt_resp_free(&r);
    assert_true(json_is_array(json_object_get(list, "items")));
    json_t *cursor = json_object_get(list, "next_cursor");
    assert_true(json_is_null(cursor) || json_is_string(cursor));
    return list;
}

/* Index of the item whose node_id is `id` in `items`, or -1. */
static long find_node(json_t *items, const char *id)
{
    size_t i;
    json_t *node;
    json_array_foreach(items, i, node)
    {
        const char *nid = json_string_value(json_object_get(node, "node_id"));
        if (nid && strcmp(nid, id) == 0) {
            return (long)i;
        }
    }
    return -1;
}

/* Sum of every sample of metric `name` in a Prometheus text exposition. */
static double metric_sum(const char *text, const char *name, int *samples)
{
    size_t nlen = strlen(name);
    double sum = 0;
    *samples = 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, name, nlen) == 0 && (line[nlen] == ' ' || line[nlen] == '{')) {
            const char *v = line + nlen;
            if (*v == '{') {
                const char *close = strstr(v, "} ");
                v = close && (!nl || close < nl) ? close + 1 : NULL;
            }
            if (v) {
                sum += strtod(v, NULL);
                (*samples)++;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    return sum;
}

static char *scrape(enum rdt_proto proto)
{
    struct rdt_resp r = {0};
    int rc = req(proto, "GET", "/metrics", NULL, &r);
    expect_status(rc, &r, proto, 200);
    assert_int_equal(strncmp(r.content_type, "text/plain", 10), 0);
    assert_non_null(r.body);
    char *text = r.body;
    r.body = NULL;
    rdt_resp_free(&r);
    return text;
}

/* A string of `n` copies of `c` followed by `tail`; the caller frees it. */
static char *repeat(char c, size_t n, const char *tail)
{
    size_t tl = strlen(tail);
    char *s = malloc(n + tl + 1);
    assert_non_null(s);
    memset(s, c, n);
    memcpy(s + n, tail, tl + 1);
    return s;
}

/* A registration body of exactly `size` bytes, padded in an extra field. */
static char *sized_body(const char *id, size_t size)
{
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "{\"node_id\":\"%s\",\"capacity\":{\"slots\":1},\"pad\":\"", id);
    size_t tail = 2; /* "} */
    assert_true(size > (size_t)hl + tail);
    char *s = malloc(size + 1);
    assert_non_null(s);
    memcpy(s, head, (size_t)hl);
    memset(s + hl, 'x', size - (size_t)hl - tail);
    memcpy(s + size - tail, "\"}", tail + 1);
    return s;
}

/* ---- probes and metrics ---------------------------------------------------------- */

static void test_probes(void **state)
{
    enum rdt_proto proto = proto_of(state);
    struct rdt_resp r = {0};
    int rc = req(proto, "GET", "/health", NULL, &r);
    expect_status(rc, &r, proto, 200);
    expect_json(&r);
    assert_string_equal(jstr(r.json, "status"), "ok");
    rdt_resp_free(&r);

    rc = req(proto, "GET", "/ready", NULL, &r);
    expect_status(rc, &r, proto, 200);
    expect_json(&r);
    assert_string_equal(jstr(r.json, "status"), "ready");
    rdt_resp_free(&r);
}

static void test_metrics(void **state)
{
    enum rdt_proto proto = proto_of(state);
    char id[64];
    snprintf(id, sizeof id, "metrics-%s", sfx(proto));
    struct reg g = register_node(proto, id);
    expect_heartbeat_ok(proto, id, g.epoch, 1);

    char *before = scrape(proto);
    static const char *const names[] = {
        "recoveryd_http_requests_total",    "recoveryd_heartbeats_total",
        "recoveryd_nodes{state=\"alive\"}", "recoveryd_raft_commit_duration_seconds_bucket",
        "recoveryd_raft_applied_index",     "recoveryd_http_request_duration_seconds_bucket",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strstr(before, names[i])) {
            print_message("/metrics lacks %s\n", names[i]);
        }
        assert_non_null(strstr(before, names[i]));
    }
    int n1, n2;
    double v1 = metric_sum(before, "recoveryd_heartbeats_total", &n1);
    free(before);

    enum { SENT = 3 };
    for (int i = 0; i < SENT; i++) {
        expect_heartbeat_ok(proto, id, g.epoch, i);
    }
    char *after = scrape(proto);
    double v2 = metric_sum(after, "recoveryd_heartbeats_total", &n2);
    free(after);
    assert_true(n1 > 0 && n2 > 0);
    if (v2 - v1 != SENT) {
        print_message("recoveryd_heartbeats_total went from %g to %g after %d heartbeats\n", v1, v2,
                      SENT);
    }
    assert_true(v2 - v1 == SENT);
}

/* ---- nodes ---------------------------------------------------------------------------- */

static void test_register(void **state)
{
    enum rdt_proto proto = proto_of(state);
    char id[64];
    snprintf(id, sizeof id, "a-1-%s", sfx(proto));
    struct reg first = register_node(proto, id);
    assert_int_equal(first.epoch, 1);

    struct reg again = register_node(proto, id);
    assert_int_equal(again.epoch, 2);
    assert_int_equal(again.interval_ms, first.interval_ms);
    assert_int_equal(again.lease_ms, first.lease_ms);

    json_t *node = get_node(proto, id);
    assert_int_equal(jint(node, "epoch"), 2);
    json_decref(node);
}

static void test_heartbeat(void **state)
{
    enum rdt_proto proto = proto_of(state);
    char id[64];
    snprintf(id, sizeof id, "hb-%s", sfx(proto));
    struct reg g = register_node(proto, id);

    struct rdt_resp r = {0};
    int rc = heartbeat(proto, id, g.epoch, 1, &r);
    expect_status(rc, &r, proto, 200);
    expect_json(&r);
    assert_string_equal(jstr(r.json, "state"), "alive");
    assert_int_equal(jint(r.json, "lease_ms"), g.lease_ms);
    json_t *assignments = rdt_json_path(r.json, "assignments");
    json_t *revoked = rdt_json_path(r.json, "revoked");
    assert_true(json_is_array(assignments) && json_array_size(assignments) == 0);
    assert_true(json_is_array(revoked) && json_array_size(revoked) == 0);
    rdt_resp_free(&r);

    /* A re-registration fences the old epoch, and only the current one is valid. */
    struct reg g2 = register_node(proto, id);
    assert_int_equal(g2.epoch, g.epoch + 1);
    expect_heartbeat_fenced(proto, id, g.epoch);
    expect_heartbeat_fenced(proto, id, g2.epoch + 1);
    expect_heartbeat_ok(proto, id, g2.epoch, 2);

    char unknown[64];
    snprintf(unknown, sizeof unknown, "never-registered-%s", sfx(proto));
    rc = heartbeat(proto, unknown, 1, 1, &r);
    expect_error(rc, &r, proto, 404, "not_found", NULL);
    rdt_resp_free(&r);
    expect_no_node(proto, unknown);
}

static void test_get_node(void **state)
{
    enum rdt_proto proto = proto_of(state);
    char id[64];
    snprintf(id, sizeof id, "get-%s", sfx(proto));
    struct reg g = register_node(proto, id);

    json_t *node = get_node(proto, id);
    json_t *last = json_object_get(node, "last_heartbeat_at");
    assert_true(json_is_null(last) || rdt_is_rfc3339_utc(json_string_value(last)));
    json_decref(node);

    expect_heartbeat_ok(proto, id, g.epoch, 3);
    node = get_node(proto, id);
    assert_int_equal(jint(node, "epoch"), g.epoch);
    assert_string_equal(jstr(node, "state"), "alive");
    assert_int_equal(jint(node, "capacity.slots"), 8);
    assert_string_equal(jstr(node, "labels.zone"), "z1");
    assert_int_equal(jint(node, "load.slots_used"), 3);
    const char *at = jstr(node, "last_heartbeat_at");
    if (!rdt_is_rfc3339_utc(at)) {
        print_message("last_heartbeat_at \"%s\" is not RFC 3339 UTC\n", at);
    }
    assert_true(rdt_is_rfc3339_utc(at));
    /* phi needs a few intervals of samples; until then it may be null. */
    json_t *phi = json_object_get(node, "phi");
    assert_non_null(phi);
    assert_true(json_is_null(phi) || (json_is_number(phi) && json_number_value(phi) >= 0));
    assert_int_equal(jint(node, "tasks"), 0);
    json_decref(node);

    char unknown[64];
    snprintf(unknown, sizeof unknown, "no-such-node-%s", sfx(proto));
    expect_no_node(proto, unknown);
}

static void test_delete(void **state)
{
    enum rdt_proto proto = proto_of(state);
    char id[64], path[128];
    snprintf(id, sizeof id, "del-%s", sfx(proto));
    snprintf(path, sizeof path, "/api/v1/nodes/%s", id);
    struct reg g = register_node(proto, id);

    struct rdt_resp r = {0};
    int rc = req(proto, "DELETE", path, NULL, &r);
    expect_status(rc, &r, proto, 200);
    expect_json(&r);
    assert_string_equal(jstr(r.json, "node_id"), id);
    assert_string_equal(jstr(r.json, "state"), "left");
    rdt_resp_free(&r);

    json_t *node = get_node(proto, id);
    assert_string_equal(jstr(node, "state"), "left");
    assert_int_equal(jint(node, "epoch"), g.epoch);
    json_decref(node);

    expect_heartbeat_fenced(proto, id, g.epoch);

    snprintf(path, sizeof path, "/api/v1/nodes/never-there-%s", sfx(proto));
    rc = req(proto, "DELETE", path, NULL, &r);
    expect_error(rc, &r, proto, 404, "not_found", NULL);
    rdt_resp_free(&r);
}

/* ---- lists ------------------------------------------------------------------------------ */

static void test_list_paging(void **state)
{
    enum rdt_proto proto = proto_of(state);
    enum { OURS = 5 };
    char ids[OURS][64];
    for (int i = 0; i < OURS; i++) {
        snprintf(ids[i], sizeof ids[i], "pg-%s-%d", sfx(proto), i);
        register_node(proto, ids[i]);
    }
    json_t *full = get_list(proto, "/api/v1/nodes?limit=1000");
    json_t *all = json_object_get(full, "items");
    assert_true(json_is_null(json_object_get(full, "next_cursor")));
    size_t total = json_array_size(all);
    assert_true(total >= OURS);

    char path[1024] = "/api/v1/nodes?limit=2";
    size_t seen = 0;
    char prev[300] = "";
    for (size_t pages = 0;; pages++) {
        assert_true(pages <= total + 1);
        json_t *page = get_list(proto, path);
        json_t *items = json_object_get(page, "items");
        json_t *cursor = json_object_get(page, "next_cursor");
        assert_true(json_array_size(items) <= 2);
        assert_true(json_array_size(items) > 0 || json_is_null(cursor));
        size_t i;
        json_t *node;
        json_array_foreach(items, i, node)
        {
            const char *nid = jstr(node, "node_id");
            assert_true(seen < total);
            /* Every node exactly once, in node_id order, same as the full list. */
            assert_true(strcmp(prev, nid) < 0);
            assert_string_equal(nid, jstr(json_array_get(all, seen), "node_id"));
            snprintf(prev, sizeof prev, "%s", nid);
            seen++;
        }
        if (json_is_null(cursor)) {
            json_decref(page);
            break;
        }
        char *esc = curl_easy_escape(NULL, json_string_value(cursor), 0);
        assert_non_null(esc);
        snprintf(path, sizeof path, "/api/v1/nodes?limit=2&cursor=%s", esc);
        curl_free(esc);
        json_decref(page);
    }
    assert_int_equal(seen, total);
    for (int i = 0; i < OURS; i++) {
        assert_true(find_node(all, ids[i]) >= 0);
    }
    json_decref(full);
}

static void test_list_filter_state(void **state)
{
    enum rdt_proto proto = proto_of(state);
    char gone[64], stays[64], path[128];
    snprintf(gone, sizeof gone, "fl-%s-gone", sfx(proto));
    snprintf(stays, sizeof stays, "fl-%s-stays", sfx(proto));
    register_node(proto, gone);
    register_node(proto, stays);
    snprintf(path, sizeof path, "/api/v1/nodes/%s", gone);
    struct rdt_resp r = {0};
    int rc = req(proto, "DELETE", path, NULL, &r);
    expect_status(rc, &r, proto, 200);
    rdt_resp_free(&r);

    json_t *list = get_list(proto, "/api/v1/nodes?state=left&limit=1000");
    json_t *items = json_object_get(list, "items");
    size_t i;
    json_t *node;
    json_array_foreach(items, i, node)
    {
        assert_string_equal(jstr(node, "state"), "left");
    }
    assert_true(find_node(items, gone) >= 0);
    assert_true(find_node(items, stays) < 0);
    json_decref(list);

    json_t *n = get_node(proto, stays);
    snprintf(path, sizeof path, "/api/v1/nodes?state=%s&limit=1000", jstr(n, "state"));
    json_decref(n);
    list = get_list(proto, path);
    items = json_object_get(list, "items");
    assert_true(find_node(items, stays) >= 0);
    assert_true(find_node(items, gone) < 0);
    json_decref(list);
}

static void test_list_limits(void **state)
{
    enum rdt_proto proto = proto_of(state);
    static const char *const bad[] = {"0", "1001", "abc", "-1", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/api/v1/nodes?limit=%s", bad[i]);
        struct rdt_resp r = {0};
        int rc = req(proto, "GET", path, NULL, &r);
        if (rc != 0 || r.status != 400) {
            print_message("limit=%s\n", bad[i]);
        }
        expect_error(rc, &r, proto, 400, "bad_request", NULL);
        /* API.md: a 400 names the offending field; tolerate its absence. */
        json_t *field = rdt_json_path(r.json, "error.details.field");
        if (field) {
            assert_string_equal(json_string_value(field) ? json_string_value(field) : "", "limit");
        }
        rdt_resp_free(&r);
    }
    json_t *list = get_list(proto, "/api/v1/nodes?limit=1");
    assert_true(json_array_size(json_object_get(list, "items")) <= 1);
    json_decref(list);
    list = get_list(proto, "/api/v1/nodes?limit=1000");
    json_decref(list);
}

/* ---- cluster health ---------------------------------------------------------------------- */

static void test_cluster_health(void **state)
{
    enum rdt_proto proto = proto_of(state);
    char id[64];
    snprintf(id, sizeof id, "ch-%s", sfx(proto));
    struct reg g = register_node(proto, id);
    expect_heartbeat_ok(proto, id, g.epoch, 0);

    struct rdt_resp r = {0};
    int rc = req(proto, "GET", "/api/v1/health/cluster", NULL, &r);
    expect_status(rc, &r, proto, 200);
    expect_json(&r);
    json_t *h = r.json;
    const char *overall = jstr(h, "overall_health");
    assert_true(strcmp(overall, "healthy") == 0 || strcmp(overall, "degraded") == 0 ||
                strcmp(overall, "critical") == 0);
    long long healthy = jint(h, "healthy_nodes"), failed = jint(h, "failed_nodes");
    long long suspect = jint(h, "suspect_nodes"), isolated = jint(h, "isolated_nodes");
    long long total = jint(h, "total_nodes");
    assert_true(healthy >= 1 && failed >= 0 && suspect >= 0 && isolated >= 0);
    assert_true(healthy + failed + suspect + isolated <= total);

    assert_true(json_is_true(rdt_json_path(h, "quorum.has_quorum")));
    json_t *leader = rdt_json_path(h, "quorum.leader");
    assert_true(leader && !json_is_null(leader));
    json_t *replicas = rdt_json_path(h, "quorum.replicas");
    assert_true(json_is_array(replicas));
    assert_int_equal(json_array_size(replicas), 1);
    json_t *id0 = rdt_json_path(h, "quorum.replicas.0.id");
    assert_true(id0 && !json_is_null(id0));
    assert_true(strlen(jstr(h, "quorum.replicas.0.address")) > 0);
    assert_string_equal(jstr(h, "quorum.replicas.0.role"), "leader");
    assert_true(json_is_true(rdt_json_path(h, "quorum.replicas.0.reachable")));
    assert_true(jint(h, "quorum.replicas.0.applied_index") >= 1);
    assert_true(rdt_is_rfc3339_utc(jstr(h, "last_updated")));
    rdt_resp_free(&r);
}

/* ---- bad input ------------------------------------------------------------------------------ */

static void test_bad_bodies(void **state)
{
    enum rdt_proto proto = proto_of(state);
    char id[64], hb[128], body[256];
    snprintf(id, sizeof id, "bb-%s", sfx(proto));
    snprintf(hb, sizeof hb, "/api/v1/nodes/%s/heartbeat", id);
    struct reg g = register_node(proto, id);

    const char *nodes = "/api/v1/nodes";
    snprintf(body, sizeof body, "{\"node_id\": \"x-%s\", \"capacity\": {\"slots\": 1", sfx(proto));
    bad_request(proto, "POST", nodes, body, 400, "bad_request", NULL);
    snprintf(body, sizeof body, "[{\"node_id\": \"x-%s\", \"capacity\": {\"slots\": 1}}]",
             sfx(proto));
    bad_request(proto, "POST", nodes, body, 400, "bad_request", NULL);
    bad_request(proto, "POST", nodes, "", 400, "bad_request", NULL);
    bad_request(proto, "POST", nodes, NULL, 400, "bad_request", NULL);
    bad_request(proto, "POST", nodes, "null", 400, "bad_request", NULL);
    snprintf(id, sizeof id, "x-%s", sfx(proto));
    expect_no_node(proto, id);

    snprintf(body, sizeof body, "{\"epoch\": %lld, \"load\": {", g.epoch);
    bad_request(proto, "POST", hb, body, 400, "bad_request", NULL);
    snprintf(body, sizeof body, "[%lld]", g.epoch);
    bad_request(proto, "POST", hb, body, 400, "bad_request", NULL);
    bad_request(proto, "POST", hb, "{\"load\": {\"slots_used\": 1}}", 400, "bad_request", "epoch");
}

static void test_bad_types(void **state)
{
    enum rdt_proto proto = proto_of(state);
    const char *s = sfx(proto);
    const char *nodes = "/api/v1/nodes";
    char body[256], id[64], hb[128];
    snprintf(id, sizeof id, "bt-%s", s);

    static const char *const bad_slots[] = {"\"8\"", "0", "-1", "1.5", "{}"};
    for (size_t i = 0; i < sizeof bad_slots / sizeof bad_slots[0]; i++) {
        snprintf(body, sizeof body, "{\"node_id\": \"%s\", \"capacity\": {\"slots\": %s}}", id,
                 bad_slots[i]);
        bad_request(proto, "POST", nodes, body, 400, "bad_request", "capacity.slots");
    }
    bad_request(proto, "POST", nodes, "{\"capacity\": {\"slots\": 1}}", 400, "bad_request",
                "node_id");
    bad_request(proto, "POST", nodes, "{\"node_id\": 5, \"capacity\": {\"slots\": 1}}", 400,
                "bad_request", "node_id");
    expect_no_node(proto, id);

    char ok[64];
    snprintf(ok, sizeof ok, "bt-ok-%s", s);
    struct reg g = register_node(proto, ok);
    snprintf(hb, sizeof hb, "/api/v1/nodes/%s/heartbeat", ok);
    snprintf(body, sizeof body, "{\"epoch\": \"%lld\", \"load\": {\"slots_used\": 1}}", g.epoch);
    bad_request(proto, "POST", hb, body, 400, "bad_request", "epoch");
    snprintf(body, sizeof body, "{\"epoch\": %lld.5, \"load\": {\"slots_used\": 1}}", g.epoch);
    bad_request(proto, "POST", hb, body, 400, "bad_request", "epoch");
}

static void test_bad_ids(void **state)
{
    enum rdt_proto proto = proto_of(state);
    const char *nodes = "/api/v1/nodes";
    char *too_long = repeat('a', 254, sfx(proto)); /* 256 chars */
    char *longest = repeat('a', 253, sfx(proto));  /* 255 chars */
    const char *const bad[] = {"", too_long, "a/b", "a b", "\xc3\xa9", "a\"b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *b = json_pack("{s:s, s:{s:i}}", "node_id", bad[i], "capacity", "slots", 1);
        char *text = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        bad_request(proto, "POST", nodes, text, 400, "bad_request", "node_id");
        free(text);
    }
    expect_no_node(proto, longest);
    register_node(proto, longest);
    json_t *node = get_node(proto, longest);
    json_decref(node);

    /* The same ids percent-encoded in the path. */
    const char *const enc[] = {"a%2Fb", "a%20b", "%C3%A9", too_long};
    for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "/api/v1/nodes/%s", enc[i]);
        bad_request(proto, "GET", path, NULL, 400, "bad_request", NULL);
        bad_request(proto, "DELETE", path, NULL, 400, "bad_request", NULL);
        snprintf(path, sizeof path, "/api/v1/nodes/%s/heartbeat", enc[i]);
        bad_request(proto, "POST", path, "{\"epoch\": 1, \"load\": {\"slots_used\": 1}}", 400,
                    "bad_request", NULL);
    }
    free(longest);
    free(too_long);
}

static bool allow_has(const char *allow, const char *method)
{
    char copy[128];
    snprintf(copy, sizeof copy, "%s", allow);
    char *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (strcmp(t, method) == 0) {
            return true;
        }
    }
    return false;
}

static void expect_405(enum rdt_proto proto, const char *method, const char *path, const char *body,
                       const char *const *allowed)
{
    json_t *before = nodes_snapshot(proto);
    struct rdt_resp r = {0};
    int rc = req(proto, method, path, body, &r);
    expect_error(rc, &r, proto, 405, "method_not_allowed", NULL);
    for (; *allowed; allowed++) {
        if (!allow_has(r.allow, *allowed)) {
            print_message("Allow: \"%s\" lacks %s\n", r.allow, *allowed);
        }
        assert_true(allow_has(r.allow, *allowed));
    }
    rdt_resp_free(&r);
    expect_unchanged(before, proto);
    json_decref(before);
}

static void test_routes_and_methods(void **state)
{
    enum rdt_proto proto = proto_of(state);
    bad_request(proto, "GET", "/api/v1/nope", NULL, 404, "not_found", NULL);
    bad_request(proto, "GET", "/nope", NULL, 404, "not_found", NULL);
    bad_request(proto, "POST", "/api/v1/nodes/x/nope", "{}", 404, "not_found", NULL);

    static const char *const list_methods[] = {"GET", "POST", NULL};
    static const char *const hb_methods[] = {"POST", NULL};
    char body[128];
    snprintf(body, sizeof body, "{\"node_id\": \"put-%s\", \"capacity\": {\"slots\": 1}}",
             sfx(proto));
    expect_405(proto, "PUT", "/api/v1/nodes", body, list_methods);
    expect_405(proto, "GET", "/api/v1/nodes/x/heartbeat", NULL, hb_methods);
}

static void test_oversized(void **state)
{
    enum rdt_proto proto = proto_of(state);
    char id[64];
    snprintf(id, sizeof id, "big-%s", sfx(proto));
    /* Registration is a small-body route (64 KiB, engine/http/input_limits.h). */
    const size_t sizes[] = {64 * 1024 + 1, MiB + 1, 4 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *body = sized_body(id, sizes[i]);
        bad_request_len(proto, "POST", "/api/v1/nodes", body, sizes[i], 413, "too_large", NULL);
        free(body);
    }
    expect_no_node(proto, id);

    /* Exactly the limit is not over it (the unknown field may still be refused). */
    snprintf(id, sizeof id, "limit-%s", sfx(proto));
    char *body = sized_body(id, 64 * 1024);
    char url[128];
    snprintf(url, sizeof url, "%s/api/v1/nodes", g_proc.base_url);
    struct rdt_resp r = {0};
    int rc = rdt_http(proto, "POST", url, body, 64 * 1024, &r);
    free(body);
    assert_int_equal(rc, 0);
    assert_int_not_equal(r.status, 413);
    rdt_resp_free(&r);
}

/* ---- runner ---------------------------------------------------------------------------------- */

/* cmocka runs no teardown after a failed setup: clean up here then. */
static int group_setup(void **state)
{
    (void)state;
    if (rdt_proc_start(&g_proc, g_yaml) != 0 || rdt_wait_ready(&g_proc, 15000) != 0) {
        rdt_proc_cleanup(&g_proc);
        return -1;
    }
    return 0;
}

/*
 * Last test: SIGTERM ends the daemon with 0, and nothing this file sent (bad
 * input included) made it log an error. (A failing group teardown would not
 * fail the run, so this is a test.)
 */
static void test_stop_is_clean(void **state)
{
    (void)state;
    int code = -1;
    assert_int_equal(rdt_proc_stop(&g_proc, &code), 0);
    assert_int_equal(code, 0);
    char *log = rdt_proc_log(&g_proc);
    assert_non_null(log);
    char *err = rdt_log_error_line(log);
    bool clean = err == NULL;
    if (!clean) {
        print_message("the daemon logged an error: %s\n", err);
    }
    free(err);
    free(log);
    assert_true(clean);
}

static int group_teardown(void **state)
{
    (void)state;
    rdt_proc_cleanup(&g_proc);
    return 0;
}

/* Each test once over HTTP/1.1 and once over HTTP/2, under distinct names. */
/* clang-format off */
#define BOTH(f) \
    {#f " [http/1.1]", f, NULL, NULL, &g_h1}, \
    {#f " [h2]", f, NULL, NULL, &g_h2}
/* clang-format on */

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_probes),
        BOTH(test_register),
        BOTH(test_heartbeat),
        BOTH(test_get_node),
        BOTH(test_delete),
        BOTH(test_list_paging),
        BOTH(test_list_filter_state),
        BOTH(test_list_limits),
        BOTH(test_cluster_health),
        BOTH(test_metrics),
        BOTH(test_bad_bodies),
        BOTH(test_bad_types),
        BOTH(test_bad_ids),
        BOTH(test_routes_and_methods),
        BOTH(test_oversized),
        cmocka_unit_test(test_stop_is_clean),
    };
    return cmocka_run_group_tests_name("api", tests, group_setup, group_teardown);
}
