/*
 * api/openapi.yaml describes exactly what is served: every route of the
 * server's table is in the file and every path and method of the file is
 * served by the running binary, answering one of the status codes the file
 * documents for it; and every answer, good requests and bad, on HTTP/1.1 and
 * HTTP/2, from a leader, a follower and a replica that is not ready yet,
 * matches the file: tests/lib/openapi_check.py validates each recorded body
 * against the schema of its operation and status (jsonschema), its
 * Content-Type and its required headers. Without that tool (Debian's
 * python3-jsonschema and python3-yaml) the test exits 77, which ctest
 * reports as skipped, after the status checks ran.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "harness.h"
#include "http/http.h"

#define MAX_OPS 64

struct op {
    char method[8]; /* upper case */
    char path[128];
    int codes[16];
    int n_codes;
};

static struct op ops[MAX_OPS];
static int n_ops;
static struct rdt_proc proc;
/* An engine in partition.mode availability: the conflict records' routes
 * are read there (the main one fences instead). */
static struct rdt_proc avail;

/* Small limits the error cases reach cheaply; a heartbeat interval long
 * enough that no task moves while the test holds its attempt. */
#define MAX_BODY 4096
static const char *const config_yaml = "server:\n"
                                       "  max_body: 4KiB\n"
                                       "fault_tolerance:\n"
                                       "  detection:\n"
                                       "    heartbeat_interval: 5s\n";

/* Every answer, one JSON object a line, for tests/lib/openapi_check.py. */
static FILE *exchanges;
static char exchanges_path[400];
static int n_exchanges;
/* 0 when the validator can run; 77 when a tool is missing (why in tools_why). */
static int tools_rc;
static char tools_why[512];

static const char *proto_name(enum rdt_proto proto)
{
    return proto == RDT_H2 ? "h2" : "http/1.1";
}

/* Appends one answer to the exchanges file. */
static void record(const char *method, const char *path, enum rdt_proto proto,
                   const struct rdt_resp *r)
{
    json_t *body = json_stringn(r->body ? r->body : "", r->body_len);
    if (body == NULL)
        fail_msg("%s %s answered a body that is not UTF-8", method, path);
    json_t *line =
        json_pack("{s:s,s:s,s:s,s:i,s:{s:s,s:s,s:s,s:s,s:s},s:o}", "method", method, "path", path,
                  "proto", proto_name(proto), "status", (int)r->status, "headers", "content-type",
                  r->content_type, "retry-after", r->retry_after, "location", r->location, "allow",
                  r->allow, "x-recoveryd-applied-index", r->applied_index, "body", body);
    assert_non_null(line);
    assert_int_equal(json_dumpf(line, exchanges, JSON_COMPACT), 0);
    fputc('\n', exchanges);
    json_decref(line);
    n_exchanges++;
}

/* One request to `p` (its base URL + `path`), recorded. Fails the test when no
 * complete answer arrives. */
static void exchange(struct rdt_proc *p, enum rdt_proto proto, const char *method, const char *path,
                     const char *body, struct rdt_resp *r)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", p->base_url, path);
    if (rdt_http(proto, method, url, body, body ? strlen(body) : 0, r) != 0)
        fail_msg("%s %s (%s): no answer: %s", method, path, proto_name(proto), r->curl_error);
    record(method, path, proto, r);
}

/* exchange() that expects `status` and, for an error, the error code `code`. */
static void expect(struct rdt_proc *p, enum rdt_proto proto, const char *method, const char *path,
                   const char *body, long status, const char *code)
{
    struct rdt_resp r = {0};
    exchange(p, proto, method, path, body, &r);
    if (r.status != status)
        fail_msg("%s %s (%s) answered %ld, expected %ld: %s", method, path, proto_name(proto),
                 r.status, status, r.body ? r.body : "");
    const char *got = rdt_err_code(&r);
    if (code != NULL && (got == NULL || strcmp(got, code) != 0))
        fail_msg("%s %s (%s) answered error code %s, expected %s: %s", method, path,
                 proto_name(proto), got ? got : "(none)", code, r.body ? r.body : "");
    rdt_resp_free(&r);
}

/* The interpreter CMake chose (Debian's, where scripts/bootstrap installs the
 * validator's modules) and the validator, with `args` after them. */
static int run_check(char *const *args, int n_args, char **out, char **err)
{
    char script[512];
    snprintf(script, sizeof(script), "%s/tests/lib/openapi_check.py", RD_SOURCE_DIR);
    char *argv[8] = {RD_PYTHON3, script};
    for (int i = 0; i < n_args && i < 5; i++)
        argv[2 + i] = args[i];
    if (RD_PYTHON3[0] != '/') {
        if (err != NULL)
            *err = strdup("no python3 was found when the build was configured");
        if (out != NULL)
            *out = NULL;
        return 77;
    }
    return rdt_run(argv, 120000, out, err);
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

static void load_spec(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/api/openapi.yaml", RD_SOURCE_DIR);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    assert_int_equal(yaml_parser_load(&parser, &doc), 1);
    yaml_node_t *paths = map_get(&doc, yaml_document_get_root_node(&doc), "paths");
    assert_non_null(paths);
    for (yaml_node_pair_t *p = paths->data.mapping.pairs.start; p < paths->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key);
        yaml_node_t *item = yaml_document_get_node(&doc, p->value);
        for (yaml_node_pair_t *m = item->data.mapping.pairs.start; m < item->data.mapping.pairs.top;
             m++) {
            const char *method = (char *)yaml_document_get_node(&doc, m->key)->data.scalar.value;
            if (strcmp(method, "parameters") == 0)
                continue;
            assert_true(n_ops < MAX_OPS);
            struct op *o = &ops[n_ops++];
            for (size_t i = 0; i < sizeof(o->method) - 1 && method[i]; i++)
                o->method[i] = (char)(method[i] - 32);
            snprintf(o->path, sizeof(o->path), "%s", (char *)k->data.scalar.value);
            yaml_node_t *responses =
                map_get(&doc, yaml_document_get_node(&doc, m->value), "responses");
            assert_non_null(responses);
            for (yaml_node_pair_t *r = responses->data.mapping.pairs.start;
                 r < responses->data.mapping.pairs.top && o->n_codes < 16; r++)
                o->codes[o->n_codes++] =
                    atoi((char *)yaml_document_get_node(&doc, r->key)->data.scalar.value);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
}

/* "/api/v1/nodes/{node_id}/heartbeat" -> "/api/v1/nodes/x/heartbeat": the server's form. */
static void spec_to_pattern(const char *spec, char *out, size_t len)
{
    size_t o = 0;
    for (const char *s = spec; *s && o + 2 < len; s++) {
        if (*s == '{') {
            out[o++] = '*';
            while (*s && *s != '}')
                s++;
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

/* config_yaml plus the default plugins and a file backup target under the
 * daemon's directory, so the backup routes have something to answer. */
static char backup_yaml[2048];

static int setup(void **state)
{
    load_spec();
    if (rdt_proc_prepare(&proc) != 0)
        return -1;
    snprintf(backup_yaml, sizeof(backup_yaml),
             "%splugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - {name: health_probe}\n"
             "    - {name: metrics}\n"
             "    - {name: log}\n"
             "    - {name: spec-backups, plugin: file, config: {dir: \"%s/backups\"}}\n",
             config_yaml, proc.dir);
    if (rdt_proc_start(&proc, backup_yaml) != 0)
        return -1;
    char avail_yaml[512];
    snprintf(avail_yaml, sizeof(avail_yaml), "%s  partition:\n    mode: availability\n",
             config_yaml);
    if (rdt_proc_start(&avail, avail_yaml) != 0 || rdt_wait_ready(&avail, 10000) != 0)
        return -1;
    snprintf(exchanges_path, sizeof(exchanges_path), "%s/exchanges.jsonl", proc.dir);
    exchanges = fopen(exchanges_path, "w");
    if (exchanges == NULL) {
        perror(exchanges_path);
        return -1;
    }
    return rdt_wait_ready(&proc, 10000);
}

static int teardown(void **state)
{
    if (exchanges != NULL)
        fclose(exchanges);
    exchanges = NULL;
    rdt_proc_cleanup(&proc);
    rdt_proc_cleanup(&avail);
    return 0;
}

static void test_every_served_route_is_documented(void **state)
{
    struct {
        const char *method, *pattern;
    } served[] = {
#define RD__ROUTE_ROW(id, method, pattern, name, access) {method, pattern},
        RD_ROUTE_LIST(RD__ROUTE_ROW)
#undef RD__ROUTE_ROW
    };
    size_t n_served = sizeof(served) / sizeof(served[0]);
    assert_int_equal((size_t)n_ops, n_served);
    for (size_t i = 0; i < n_served; i++) {
        bool found = false;
        for (int j = 0; j < n_ops && !found; j++) {
            char pat[128];
            spec_to_pattern(ops[j].path, pat, sizeof(pat));
            found =
                strcmp(pat, served[i].pattern) == 0 && strcmp(ops[j].method, served[i].method) == 0;
        }
        if (!found)
            fail_msg("%s %s is served but not in api/openapi.yaml", served[i].method,
                     served[i].pattern);
    }
}

struct head {
    char *buf;
    size_t len;
};

static size_t head_write(char *p, size_t size, size_t n, void *data)
{
    struct head *h = data;
    size_t len = size * n;
    h->buf = realloc(h->buf, h->len + len + 1);
    memcpy(h->buf + h->len, p, len);
    h->len += len;
    h->buf[h->len] = '\0';
    return strstr(h->buf, "\n\n") != NULL ? 0 : len; /* its first block is enough */
}

/* GET /api/v1/events never ends by itself: the answer up to the stream's
 * first block (the opening comment), as a response to record. */
static void stream_head(enum rdt_proto proto, const char *url, struct rdt_resp *r)
{
    CURL *e = curl_easy_init();
    struct head h = {0};
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     proto == RDT_H2 ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                                     : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, head_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &h);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    CURLcode rc = curl_easy_perform(e);
    memset(r, 0, sizeof(*r));
    char *ct = NULL;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->content_type, sizeof(r->content_type), "%s", ct ? ct : "");
    r->body = h.buf;
    r->body_len = h.len;
    curl_easy_cleanup(e);
    if (rc != CURLE_WRITE_ERROR)
        fail_msg("GET %s: the stream did not open: %s", url, curl_easy_strerror(rc));
}

/* The task's current attempt (operators' actions earlier may have moved it). */
static long long current_attempt(const char *path_with_task)
{
    char tp[128];
    const char *start = strstr(path_with_task, "/api/v1/tasks/");
    snprintf(tp, sizeof(tp), "%.*s", 50, start);
    struct rdt_resp r = {0};
    exchange(&proc, RDT_H1, "GET", tp, NULL, &r);
    assert_int_equal(r.status, 200);
    long long a = json_integer_value(rdt_json_path(r.json, "attempt"));
    rdt_resp_free(&r);
    return a;
}

static void test_every_documented_operation_answers_as_documented(void **state)
{
    long long epoch;
    assert_int_equal(rdt_register(&proc, "spec-node", 2, &epoch), 0);
    /* A fault record to read back: isolating a node records one. */
    assert_int_equal(rdt_register(&proc, "spec-fault", 1, &epoch), 0);
    struct rdt_resp fr = {0};
    exchange(&proc, RDT_H1, "POST", "/api/v1/nodes/spec-fault/isolate", NULL, &fr);
    assert_int_equal(fr.status, 200);
    rdt_resp_free(&fr);
    exchange(&proc, RDT_H1, "GET", "/api/v1/faults/records?limit=1", NULL, &fr);
    char fault_id[64];
    snprintf(
        fault_id, sizeof(fault_id), "%s",
        json_string_value(rdt_json_path(json_array_get(rdt_json_path(fr.json, "items"), 0), "id")));
    rdt_resp_free(&fr);
    /* Two tasks, placed on spec-node (attempt 1): one to checkpoint and
     * complete, one to fail. */
    const char *task = "0d5e5a4f-3c1b-4d2e-8f70-1a2b3c4d5e6f",
               *task2 = "0d5e5a4f-3c1b-4d2e-8f70-1a2b3c4d5e70";
    char tb[160];
    for (int k = 0; k < 2; k++) {
        snprintf(tb, sizeof(tb), "{\"task_id\":\"%s\"}", k ? task2 : task);
        exchange(&proc, RDT_H1, "POST", "/api/v1/tasks", tb, &fr);
        assert_int_equal(fr.status, 201);
        rdt_resp_free(&fr);
    }
    for (int64_t until = rdt_now_ms() + 5000;;) {
        char tp[96];
        snprintf(tp, sizeof(tp), "/api/v1/tasks/%s", task2);
        exchange(&proc, RDT_H1, "GET", tp, NULL, &fr);
        long long at = json_integer_value(rdt_json_path(fr.json, "attempt"));
        rdt_resp_free(&fr);
        snprintf(tp, sizeof(tp), "/api/v1/tasks/%s", task);
        exchange(&proc, RDT_H1, "GET", tp, NULL, &fr);
        at *= json_integer_value(rdt_json_path(fr.json, "attempt"));
        rdt_resp_free(&fr);
        if (at == 1)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(10);
    }
    int ckpt_version = 0;
    /* A recovery run to read back: spec-fault is isolated already. */
    char recovery_id[64];
    exchange(&proc, RDT_H1, "POST", "/api/v1/recovery/trigger", "{\"node_id\":\"spec-fault\"}",
             &fr);
    assert_int_equal(fr.status, 202);
    snprintf(recovery_id, sizeof(recovery_id), "%s",
             json_string_value(rdt_json_path(fr.json, "recovery_id")));
    rdt_resp_free(&fr);
    /* A completed backup to read back and verify. */
    char backup_id[64];
    exchange(&proc, RDT_H1, "POST", "/api/v1/backup/trigger", "{}", &fr);
    assert_int_equal(fr.status, 202);
    snprintf(backup_id, sizeof(backup_id), "%s",
             json_string_value(rdt_json_path(fr.json, "backup_id")));
    rdt_resp_free(&fr);
    for (int64_t until = rdt_now_ms() + 10000;;) {
        char bp[96];
        snprintf(bp, sizeof(bp), "/api/v1/backups/%s", backup_id);
        exchange(&proc, RDT_H1, "GET", bp, NULL, &fr);
        const char *st = json_string_value(rdt_json_path(fr.json, "status"));
        bool done = fr.status == 200 && st != NULL && strcmp(st, "completed") == 0;
        rdt_resp_free(&fr);
        if (done)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(10);
    }
    /* A consistency check to read back (and this replica's digest at it). */
    char check_id[64];
    exchange(&proc, RDT_H1, "POST", "/api/v1/consistency/check", NULL, &fr);
    assert_int_equal(fr.status, 202);
    snprintf(check_id, sizeof(check_id), "%s",
             json_string_value(rdt_json_path(fr.json, "check_id")));
    rdt_resp_free(&fr);
    /* A conflict record to read back (on the availability engine): a
     * checkpoint of a task's attempt after the task was cancelled. */
    char conflict_id[64];
    const char *ctask = "0d5e5a4f-3c1b-4d2e-8f70-1a2b3c4d5e71";
    assert_int_equal(rdt_register(&avail, "spec-cap", 2, &epoch), 0);
    snprintf(tb, sizeof(tb), "{\"task_id\":\"%s\"}", ctask);
    exchange(&avail, RDT_H1, "POST", "/api/v1/tasks", tb, &fr);
    assert_int_equal(fr.status, 201);
    rdt_resp_free(&fr);
    snprintf(tb, sizeof(tb), "/api/v1/tasks/%s", ctask);
    for (int64_t until = rdt_now_ms() + 5000;; rdt_sleep_ms(10)) {
        exchange(&avail, RDT_H1, "GET", tb, NULL, &fr);
        long long at = json_integer_value(rdt_json_path(fr.json, "attempt"));
        rdt_resp_free(&fr);
        if (at == 1)
            break;
        assert_true(rdt_now_ms() < until);
    }
    snprintf(tb, sizeof(tb), "/api/v1/tasks/%s/cancel", ctask);
    exchange(&avail, RDT_H1, "POST", tb, NULL, &fr);
    assert_int_equal(fr.status, 200);
    rdt_resp_free(&fr);
    snprintf(tb, sizeof(tb), "/api/v1/tasks/%s/checkpoint", ctask);
    exchange(&avail, RDT_H1, "PUT", tb,
             "{\"attempt\":1,\"version\":1,\"data\":{},\"node_id\":\"spec-cap\"}", &fr);
    assert_int_equal(fr.status, 409);
    assert_string_equal(rdt_err_code(&fr), "conflict");
    snprintf(conflict_id, sizeof(conflict_id), "%s",
             json_string_value(rdt_json_path(fr.json, "error.details.conflict_id")));
    rdt_resp_free(&fr);
    /* Two passes: DELETE last, so the node is still there for the others. */
    for (int k = 0; k < 2 * n_ops; k++) {
        struct op *o = &ops[k % n_ops];
        if ((strcmp(o->method, "DELETE") == 0) != (k >= n_ops))
            continue;
        char path[256];
        /* Fill path parameters with the node registered above. */
        const char *brace = strchr(o->path, '{');
        if (brace) {
            const char *close = strchr(brace, '}');
            const char *value = strncmp(brace, "{fault_id}", 10) == 0      ? fault_id
                                : strncmp(brace, "{backup_id}", 11) == 0   ? backup_id
                                : strncmp(brace, "{recovery_id}", 13) == 0 ? recovery_id
                                : strncmp(brace, "{check_id}", 10) == 0    ? check_id
                                : strncmp(brace, "{conflict_id}", 13) == 0 ? conflict_id
                                : strncmp(brace, "{task_id}", 9) != 0      ? "spec-node"
                                : strstr(o->path, "/fail") || strstr(o->path, "/retry") ? task2
                                                                                        : task;
            snprintf(path, sizeof(path), "%.*s%s%s", (int)(brace - o->path), o->path, value,
                     close + 1);
        } else {
            snprintf(path, sizeof(path), "%s", o->path);
        }
        const char *body = NULL;
        if (strcmp(o->method, "POST") == 0)
            body = strstr(path, "heartbeat")         ? "{\"epoch\":1,\"load\":{\"slots_used\":0}}"
                   : strstr(path, "/complete")       ? "{\"attempt\":1,\"result\":{\"ok\":true}}"
                   : strstr(path, "/fail")           ? "{\"attempt\":1,\"error\":\"spec\"}"
                   : strstr(path, "/backup/trigger") ? "{\"target\":\"spec-backups\"}"
                   : strstr(path, "/verify")         ? NULL
                   : strstr(path, "/trigger")        ? "{\"node_id\":\"spec-fault\"}"
                                                     : "{\"node_id\":\"spec-node-2\"}";
        char url[512];
        const char *base =
            strncmp(path, "/api/v1/conflicts", 17) == 0 ? avail.base_url : proc.base_url;
        snprintf(url, sizeof(url), "%s%s", base, path);
        for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
            char put_body[160];
            /* Membership: each protocol adds (POST) and later removes
             * (DELETE) its own spare replica, 7 or 8, at a dead address. */
            const char *rid = proto == RDT_H1 ? "7" : "8";
            if (strstr(o->path, "{replica_id}"))
                snprintf(url, sizeof(url), "%s/api/v1/cluster/replicas/%s%s", proc.base_url, rid,
                         strchr(strstr(o->path, "{replica_id}"), '}') + 1);
            /* It is a spare: leaving makes it a standby (answered 200). */
            if (strstr(o->path, "/rejoin"))
                body = "{\"phase\":\"leave\"}";
            if (strcmp(path, "/api/v1/cluster/replicas") == 0 && body != NULL) {
                snprintf(put_body, sizeof(put_body),
                         "{\"id\":%s,\"role\":\"spare\",\"address\":\"127.0.0.1:%s\","
                         "\"api_url\":\"http://127.0.0.1:%s\"}",
                         rid, rid, rid);
                body = put_body;
            }
            if (strcmp(o->method, "PUT") == 0 && strstr(path, "/log-level")) {
                body = "{\"level\":\"debug\"}"; /* the harness's level: no change */
            } else if (strcmp(o->method, "PUT") == 0) {
                snprintf(put_body, sizeof(put_body),
                         "{\"attempt\":%lld,\"version\":%d,\"data\":{\"step\":1}}",
                         current_attempt(path), ++ckpt_version);
                body = put_body;
            } else if (strstr(path, "/complete") || strstr(path, "/fail")) {
                snprintf(put_body, sizeof(put_body),
                         strstr(path, "/fail") ? "{\"attempt\":%lld,\"error\":\"spec\"}"
                                               : "{\"attempt\":%lld,\"result\":{\"ok\":true}}",
                         current_attempt(path));
                body = put_body;
            }
            if (strstr(path, "/cancel")) { /* each protocol cancels a task of its own */
                exchange(&proc, RDT_H1, "POST", "/api/v1/tasks", "{\"payload\":{}}", &fr);
                assert_int_equal(fr.status, 201);
                snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/cancel", proc.base_url,
                         json_string_value(rdt_json_path(fr.json, "task_id")));
                rdt_resp_free(&fr);
            } else if (strstr(path, "/retry")) { /* failed (again) first: only that retries */
                char fp[160];
                snprintf(fp, sizeof(fp), "/api/v1/tasks/%s/fail", task2);
                /* The retried task may be placed again between the read of
                 * its attempt and the fail (409 fenced): read it again. */
                for (int64_t until = rdt_now_ms() + 10000;;) {
                    snprintf(put_body, sizeof(put_body), "{\"attempt\":%lld,\"error\":\"spec\"}",
                             current_attempt(path));
                    exchange(&proc, RDT_H1, "POST", fp, put_body, &fr);
                    long st = fr.status;
                    rdt_resp_free(&fr);
                    if (st == 200)
                        break;
                    assert_int_equal(st, 409);
                    assert_true(rdt_now_ms() < until);
                }
                body = NULL;
            }
            struct rdt_resp r = {0};
            if (strcmp(path, "/api/v1/events") == 0)
                stream_head((enum rdt_proto)proto, url, &r);
            else
                assert_int_equal(rdt_http((enum rdt_proto)proto, o->method, url, body,
                                          body ? strlen(body) : 0, &r),
                                 0);
            record(o->method, url + strlen(base), (enum rdt_proto)proto, &r);
            bool documented = false;
            for (int c = 0; c < o->n_codes; c++)
                documented |= o->codes[c] == r.status;
            if (!documented)
                fail_msg("%s %s answered %ld, not documented in api/openapi.yaml", o->method,
                         o->path, r.status);
            /* A 2xx answer proves the route is really served, not merely tolerated
             * (DELETE answers 200 again for a node that left already). */
            if (r.status < 200 || r.status >= 300)
                fail_msg("%s %s answered %ld: %s", o->method, path, r.status, r.body);
            rdt_resp_free(&r);
        }
    }
}

/* Waits until the task is placed and returns its attempt (> 0). */
static long long placed_attempt(const char *task)
{
    char tp[96];
    snprintf(tp, sizeof(tp), "/api/v1/tasks/%s", task);
    for (int64_t until = rdt_now_ms() + 10000;;) {
        long long a = current_attempt(tp);
        if (a > 0)
            return a;
        if (rdt_now_ms() >= until)
            fail_msg("task %s was not placed within 10 s", task);
        rdt_sleep_ms(10);
    }
}

/* Registers `node` (4 slots: a task left pending earlier may take one) with
 * the label pool=spec-err; returns its epoch. */
static long long register_labelled(const char *node, enum rdt_proto proto)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"node_id\":\"%s\",\"capacity\":{\"slots\":4},\"labels\":{\"pool\":\"spec-err\"},"
             "\"health_url\":null,\"address\":\"10.0.0.1\"}",
             node);
    struct rdt_resp r = {0};
    exchange(&proc, proto, "POST", "/api/v1/nodes", body, &r);
    if (r.status != 201)
        fail_msg("registering %s answered %ld: %s", node, r.status, r.body ? r.body : "");
    long long epoch = json_integer_value(json_object_get(r.json, "epoch"));
    rdt_resp_free(&r);
    return epoch;
}

/* The assignment of `task` in a heartbeat answer, or NULL. */
static json_t *assignment(const struct rdt_resp *r, const char *task)
{
    json_t *list = rdt_json_path(r->json, "assignments"), *a;
    size_t i;
    json_array_foreach(list, i, a)
    {
        const char *id = json_string_value(json_object_get(a, "task_id"));
        if (id != NULL && strcmp(id, task) == 0)
            return a;
    }
    return NULL;
}

/* Requests the engine must refuse, each answered with the documented error. */
static void test_error_answers_are_documented(void **state)
{
    char path[256], body[MAX_BODY + 64];
    for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
        expect(&proc, proto, "GET", "/api/v1/nodes?limit=0", NULL, 400, "bad_request");
        expect(&proc, proto, "GET", "/api/v1/nodes?state=sleepy", NULL, 400, "bad_request");
        expect(&proc, proto, "GET", "/api/v1/nodes/no-such-node", NULL, 404, "not_found");
        expect(&proc, proto, "GET", "/api/v1/nodes/bad%20id", NULL, 400, "bad_request");
        expect(&proc, proto, "POST", "/api/v1/nodes", "{\"node_id\":", 400, "bad_request");
        expect(&proc, proto, "POST", "/api/v1/nodes", "{\"capacity\":{\"slots\":1}}", 400,
               "bad_request");
        expect(&proc, proto, "GET", "/api/v1/tasks/not-a-uuid", NULL, 400, "bad_request");
        expect(&proc, proto, "GET", "/api/v1/tasks/7f0c5c2e-0000-4000-8000-000000000001", NULL, 404,
               "not_found");
        expect(&proc, proto, "GET", "/api/v1/tasks?state=bogus", NULL, 400, "bad_request");
        expect(&proc, proto, "POST", "/api/v1/tasks", "{\"priority\":12}", 400, "bad_request");
        expect(&proc, proto, "GET", "/api/v1/faults/records?severity_level=dire", NULL, 400,
               "bad_request");
        expect(&proc, proto, "GET", "/api/v1/faults/records/7f0c5c2e-0000-4000-8000-000000000002",
               NULL, 404, "not_found");
        expect(&proc, proto, "GET", "/api/v1/recovery/tasks?limit=5000", NULL, 400, "bad_request");
        expect(&proc, proto, "GET", "/api/v1/recovery/tasks/7f0c5c2e-0000-4000-8000-000000000003",
               NULL, 404, "not_found");
        expect(&proc, proto, "POST", "/api/v1/recovery/trigger", "{\"node_id\":\"no-such-node\"}",
               404, "not_found");
        expect(&proc, proto, "POST", "/api/v1/recovery/trigger",
               "{\"node_id\":\"spec-node\",\"strategy\":\"bogus\"}", 400, "bad_request");
        expect(&proc, proto, "GET", "/api/v1/consistency/checks?limit=5000", NULL, 400,
               "bad_request");
        expect(&proc, proto, "GET",
               "/api/v1/consistency/checks/7f0c5c2e-0000-4000-8000-000000000004", NULL, 404,
               "not_found");
        expect(&proc, proto, "GET",
               "/api/v1/consistency/checks/7f0c5c2e-0000-4000-8000-000000000004/local", NULL, 404,
               "not_found");
        /* The fault-injection routes exist only in recoveryd-fi (not
         * recorded: no such operation is documented, rightly). */
        struct rdt_resp dbg = {0};
        assert_int_equal(
            rdt_post(&proc, proto, "/debug/corrupt?what=node&id=spec-node", NULL, &dbg), 0);
        assert_int_equal(dbg.status, 404);
        rdt_resp_free(&dbg);
        /* spec-node left in the operations test. */
        expect(&proc, proto, "POST", "/api/v1/nodes/spec-node/drain", NULL, 409, "conflict");
        expect(&proc, proto, "POST", "/api/v1/cluster/replicas", "{\"id\":1,\"role\":\"voter\"}",
               409, "conflict");
        expect(&proc, proto, "POST", "/api/v1/cluster/replicas", "{\"id\":0}", 400, "bad_request");
        expect(&proc, proto, "DELETE", "/api/v1/cluster/replicas/99", NULL, 404, "not_found");
        expect(&proc, proto, "DELETE", "/api/v1/cluster/replicas/abc", NULL, 400, "bad_request");
        expect(&proc, proto, "POST", "/api/v1/backup/trigger", "{\"target\":\"nowhere\"}", 400,
               "bad_request");
        expect(&proc, proto, "POST", "/api/v1/backup/trigger", "{\"target\":7}", 400,
               "bad_request");
        expect(&proc, proto, "GET", "/api/v1/backups?status=lost", NULL, 400, "bad_request");
        expect(&proc, proto, "GET", "/api/v1/backups?limit=0", NULL, 400, "bad_request");
        expect(&proc, proto, "GET", "/api/v1/backups/not-a-uuid", NULL, 400, "bad_request");
        expect(&proc, proto, "GET", "/api/v1/backups/7f0c5c2e-0000-4000-8000-000000000004", NULL,
               404, "not_found");
        expect(&proc, proto, "POST", "/api/v1/backups/7f0c5c2e-0000-4000-8000-000000000004/verify",
               NULL, 404, "not_found");
        expect(&proc, proto, "POST", "/api/v1/cluster/replicas/99/rejoin", "{\"phase\":\"leave\"}",
               404, "not_found");
        expect(&proc, proto, "POST", "/api/v1/cluster/replicas/1/rejoin", "{\"phase\":\"leave\"}",
               409, "conflict");
        expect(&proc, proto, "POST", "/api/v1/cluster/replicas/1/rejoin", "{\"phase\":\"stay\"}",
               400, "bad_request");
        /* Over server.max_body: refused before any handler, whatever the route. */
        memset(body, ' ', MAX_BODY + 1);
        body[0] = '{';
        body[MAX_BODY] = '}';
        body[MAX_BODY + 1] = '\0';
        expect(&proc, proto, "POST", "/api/v1/nodes", body, 413, "too_large");
        expect(&proc, proto, "GET", "/health", body, 413, "too_large");
    }

    /* Fencing: a second registration fences the first epoch. The label
     * keeps the task below off the agents of the other tests. */
    long long epoch1 = register_labelled("spec-err", RDT_H1);
    long long epoch2 = register_labelled("spec-err", RDT_H2);
    assert_true(epoch2 > epoch1);
    snprintf(body, sizeof(body), "{\"epoch\":%lld}", epoch1);
    expect(&proc, RDT_H2, "POST", "/api/v1/nodes/spec-err/heartbeat", body, 409, "fenced");
    snprintf(body, sizeof(body), "{\"epoch\":%lld,\"load\":{\"slots_used\":-1}}", epoch2);
    expect(&proc, RDT_H1, "POST", "/api/v1/nodes/spec-err/heartbeat", body, 400, "bad_request");
    expect(&proc, RDT_H1, "POST", "/api/v1/nodes/no-such-node/heartbeat", "{\"epoch\":1}", 404,
           "not_found");

    /* A task for spec-err: handed over by a heartbeat, then checkpoints
     * refused for a stale version, a stale attempt, a missing field. */
    const char *task = "7f0c5c2e-0000-4000-8000-0000000000aa";
    snprintf(body, sizeof(body),
             "{\"task_id\":\"%s\",\"priority\":7,\"critical\":true,\"payload\":[1],"
             "\"requirements\":{\"slots\":1,\"labels\":{\"pool\":\"spec-err\"}}}",
             task);
    expect(&proc, RDT_H1, "POST", "/api/v1/tasks", body, 201, NULL);
    expect(&proc, RDT_H2, "POST", "/api/v1/tasks", body, 200, NULL); /* idempotent */
    long long attempt = placed_attempt(task);
    snprintf(body, sizeof(body),
             "{\"epoch\":%lld,\"load\":{\"slots_used\":1},\"metrics\":{\"error_rate\":0,"
             "\"latency_ms\":12.5,\"cpu\":0.5,\"mem\":1024,\"progress\":1}}",
             epoch2);
    struct rdt_resp r = {0};
    exchange(&proc, RDT_H2, "POST", "/api/v1/nodes/spec-err/heartbeat", body, &r);
    assert_int_equal(r.status, 200);
    if (assignment(&r, task) == NULL)
        fail_msg("spec-err's heartbeat did not hand %s over: %s", task, r.body);
    rdt_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", task);
    expect(&proc, RDT_H1, "GET", path, NULL, 404, "not_found");
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":3,\"data\":{\"step\":3}}", attempt);
    expect(&proc, RDT_H1, "PUT", path, body, 200, NULL);
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":2,\"data\":{\"step\":2}}", attempt);
    expect(&proc, RDT_H2, "PUT", path, body, 409, "stale_version");
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":4,\"data\":{}}", attempt + 1);
    expect(&proc, RDT_H1, "PUT", path, body, 409, "fenced");
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":4}", attempt);
    expect(&proc, RDT_H1, "PUT", path, body, 400, "bad_request");

    /* Recovery moves it to the other agent of its pool, whose heartbeat
     * hands it over with the checkpoint to resume from. */
    long long epoch_b = register_labelled("spec-err-b", RDT_H1);
    r = (struct rdt_resp){0};
    exchange(&proc, RDT_H1, "POST", "/api/v1/recovery/trigger",
             "{\"node_id\":\"spec-err\",\"strategy\":\"fast_recovery\"}", &r);
    assert_int_equal(r.status, 202);
    snprintf(path, sizeof(path), "/api/v1/recovery/tasks/%s",
             json_string_value(json_object_get(r.json, "recovery_id")));
    rdt_resp_free(&r);
    long long moved = attempt;
    for (int64_t until = rdt_now_ms() + 10000; moved == attempt; rdt_sleep_ms(10)) {
        if (rdt_now_ms() >= until)
            fail_msg("task %s did not move off spec-err within 10 s", task);
        snprintf(body, sizeof(body), "/api/v1/tasks/%s", task);
        moved = current_attempt(body);
    }
    snprintf(body, sizeof(body), "{\"epoch\":%lld}", epoch_b);
    exchange(&proc, RDT_H1, "POST", "/api/v1/nodes/spec-err-b/heartbeat", body, &r);
    assert_int_equal(r.status, 200);
    json_t *a = assignment(&r, task);
    if (a == NULL)
        fail_msg("spec-err-b's heartbeat did not hand %s over: %s", task, r.body);
    assert_int_equal(json_integer_value(rdt_json_path(a, "checkpoint.data.step")), 3);
    rdt_resp_free(&r);
    expect(&proc, RDT_H2, "GET", path, NULL, 200, NULL); /* the run */
    expect(&proc, RDT_H2, "GET", "/api/v1/recovery/tasks?node_id=spec-err", NULL, 200, NULL);

    /* The old attempt is fenced; the new one fails the task; it is over. */
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/complete", task);
    snprintf(body, sizeof(body), "{\"attempt\":%lld}", attempt);
    expect(&proc, RDT_H2, "POST", path, body, 409, "fenced");
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/fail", task);
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"error\":42}", moved);
    expect(&proc, RDT_H1, "POST", path, body, 400, "bad_request");
    /* An error text that parses as JSON is still answered as the string it is. */
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"error\":\"404\"}", moved);
    r = (struct rdt_resp){0};
    exchange(&proc, RDT_H1, "POST", path, body, &r);
    assert_int_equal(r.status, 200);
    if (!json_is_string(json_object_get(r.json, "error")))
        fail_msg("the task's error is not the string \"404\": %s", r.body);
    assert_string_equal(json_string_value(json_object_get(r.json, "error")), "404");
    rdt_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/complete", task);
    snprintf(body, sizeof(body), "{\"attempt\":%lld}", moved);
    expect(&proc, RDT_H1, "POST", path, body, 409, "conflict");
    /* spec-err is draining now: isolated, it cannot be drained. */
    expect(&proc, RDT_H1, "POST", "/api/v1/nodes/spec-err/isolate", "{\"reason\":\"spec\"}", 200,
           NULL);
    expect(&proc, RDT_H1, "POST", "/api/v1/nodes/spec-err/drain", NULL, 409, "conflict");
    expect(&proc, RDT_H1, "POST", "/api/v1/nodes/spec-err/isolate", "{\"reason\":7}", 400,
           "bad_request");
}

/* Fills `p->cluster_yaml` for replica `id` of the two in `c`. */
static void two_replicas_yaml(struct rdt_proc *c, int id)
{
    struct rdt_proc *p = &c[id - 1];
    size_t off = (size_t)snprintf(p->cluster_yaml, sizeof(p->cluster_yaml),
                                  "  replica_id: %d\n  peers:\n", id);
    for (int k = 0; k < 2; k++)
        off += (size_t)snprintf(p->cluster_yaml + off, sizeof(p->cluster_yaml) - off,
                                "    - {id: %d, address: 127.0.0.1:%u, api_url: %s}\n", k + 1,
                                (unsigned)c[k].raft_port, c[k].base_url);
    assert_true(off < sizeof(p->cluster_yaml));
}

/*
 * Two replicas. The first alone cannot elect a leader: /ready answers 503
 * not_ready, and a leader's route 503 with Retry-After. Once the second
 * runs, the follower sends writes and consistent reads to the leader (307)
 * and serves ?stale=true reads and its own view itself.
 */
static void test_not_ready_and_follower_answers_are_documented(void **state)
{
    struct rdt_proc two[2];
    memset(two, 0, sizeof(two));
    assert_int_equal(rdt_proc_prepare(&two[0]), 0);
    assert_int_equal(rdt_proc_prepare(&two[1]), 0);
    two_replicas_yaml(two, 1);
    two_replicas_yaml(two, 2);
    assert_int_equal(rdt_proc_start(&two[0], config_yaml), 0);

    for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
        struct rdt_resp r = {0};
        exchange(&two[0], proto, "GET", "/ready", NULL, &r);
        assert_int_equal(r.status, 503);
        assert_string_equal(rdt_err_code(&r), "not_ready");
        assert_string_not_equal(r.retry_after, "");
        rdt_resp_free(&r);
        exchange(&two[0], proto, "GET", "/api/v1/nodes", NULL, &r);
        assert_int_equal(r.status, 503);
        const char *code = rdt_err_code(&r);
        assert_true(code != NULL &&
                    (strcmp(code, "not_leader") == 0 || strcmp(code, "no_quorum") == 0));
        rdt_resp_free(&r);
        exchange(&two[0], proto, "POST", "/api/v1/tasks", "{}", &r);
        assert_int_equal(r.status, 503);
        rdt_resp_free(&r);
        expect(&two[0], proto, "GET", "/health", NULL, 200, NULL);
        expect(&two[0], proto, "GET", "/api/v1/health/cluster", NULL, 200, NULL);
        expect(&two[0], proto, "GET", "/api/v1/cluster/replicas", NULL, 200, NULL);
    }

    assert_int_equal(rdt_proc_start(&two[1], config_yaml), 0);
    assert_int_equal(rdt_wait_ready(&two[0], 20000), 0);
    assert_int_equal(rdt_wait_ready(&two[1], 20000), 0);
    struct rdt_cluster view = {.n = 2};
    view.procs[0] = two[0];
    view.procs[1] = two[1];
    int leader = rdt_cluster_leader(&view, 10000);
    assert_true(leader >= 0);
    struct rdt_proc *follower = &two[1 - leader];
    for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
        struct rdt_resp r = {0};
        exchange(follower, proto, "GET", "/api/v1/nodes", NULL, &r);
        assert_int_equal(r.status, 307);
        assert_true(strncmp(r.location, two[leader].base_url, strlen(two[leader].base_url)) == 0);
        rdt_resp_free(&r);
        exchange(follower, proto, "POST", "/api/v1/nodes", "{\"node_id\":\"spec-follower\"}", &r);
        assert_int_equal(r.status, 307);
        rdt_resp_free(&r);
        exchange(follower, proto, "GET", "/api/v1/nodes?stale=true", NULL, &r);
        assert_int_equal(r.status, 200);
        assert_string_not_equal(r.applied_index, "");
        rdt_resp_free(&r);
        expect(follower, proto, "GET", "/ready", NULL, 200, NULL);
        expect(follower, proto, "GET", "/health", NULL, 200, NULL);
        expect(follower, proto, "GET", "/api/v1/cluster/replicas", NULL, 200, NULL);
        expect(follower, proto, "GET", "/api/v1/health/cluster", NULL, 200, NULL);
        expect(follower, proto, "GET", "/api/v1/faults/status?stale=true", NULL, 200, NULL);
        expect(&two[leader], proto, "GET", "/api/v1/cluster/replicas", NULL, 200, NULL);
    }
    rdt_proc_cleanup(&two[0]);
    rdt_proc_cleanup(&two[1]);
}

/* Every recorded answer against the file: openapi_check.py. */
static void test_answers_match_the_schemas(void **state)
{
    if (tools_rc == 77)
        skip();
    assert_int_equal(fflush(exchanges), 0);
    assert_true(n_exchanges > 100);
    char *out = NULL, *err = NULL;
    char spec[512];
    snprintf(spec, sizeof(spec), "%s/api/openapi.yaml", RD_SOURCE_DIR);
    char *args[] = {spec, exchanges_path, "--closed", "--require-all"};
    int rc = run_check(args, 4, &out, &err);
    if (rc != 0) {
        /* All of it: cmocka cuts long failure messages. */
        fprintf(stderr, "%s%s", out ? out : "", err ? err : "");
        fail_msg("openapi_check.py exited %d: the answers above do not match api/openapi.yaml", rc);
    }
    printf("%s", out ? out : "");
    free(out);
    free(err);
}

int main(void)
{
    /* Can the validator run here? Known before anything starts, said at once. */
    char *args[] = {"--tools"};
    char *err = NULL;
    tools_rc = run_check(args, 1, NULL, &err);
    snprintf(tools_why, sizeof(tools_why), "%s", err ? err : "");
    free(err);
    if (tools_rc != 0 && tools_rc != 77) {
        fprintf(stderr, "openapi_check.py --tools exited %d: %s\n", tools_rc, tools_why);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_served_route_is_documented),
        cmocka_unit_test(test_every_documented_operation_answers_as_documented),
        cmocka_unit_test(test_error_answers_are_documented),
        cmocka_unit_test(test_not_ready_and_follower_answers_are_documented),
        cmocka_unit_test(test_answers_match_the_schemas),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    if (failed == 0 && tools_rc == 77) {
        /* The status checks passed, the schemas were not checked: not a pass. */
        printf("SKIPPED: the answers were not validated against api/openapi.yaml: %s", tools_why);
        return 77;
    }
    return failed;
}
