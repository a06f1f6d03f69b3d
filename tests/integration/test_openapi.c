/*
 * api/openapi.yaml describes exactly what is served: every route of the
 * server's table is in the file and every path and method of the file is
 * served by the running binary, answering one of the status codes the file
 * documents for it.
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

static int setup(void **state)
{
    load_spec();
    if (rdt_proc_start(&proc, NULL) != 0)
        return -1;
    return rdt_wait_ready(&proc, 10000);
}

static int teardown(void **state)
{
    rdt_proc_cleanup(&proc);
    return 0;
}

static void test_every_served_route_is_documented(void **state)
{
    struct {
        const char *method, *pattern;
    } served[] = {
#define RD__ROUTE_ROW(id, method, pattern, name) {method, pattern},
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

/* The task's current attempt (operators' actions earlier may have moved it). */
static long long current_attempt(const char *path_with_task)
{
    char tp[128];
    const char *start = strstr(path_with_task, "/api/v1/tasks/");
    snprintf(tp, sizeof(tp), "%.*s", 50, start);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, tp, &r), 0);
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
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes/spec-fault/isolate", NULL, &fr), 0);
    assert_int_equal(fr.status, 200);
    rdt_resp_free(&fr);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/faults/records?limit=1", &fr), 0);
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
        assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks", tb, &fr), 0);
        assert_int_equal(fr.status, 201);
        rdt_resp_free(&fr);
    }
    for (int64_t until = rdt_now_ms() + 5000;;) {
        char tp[96];
        snprintf(tp, sizeof(tp), "/api/v1/tasks/%s", task2);
        assert_int_equal(rdt_get(&proc, RDT_H1, tp, &fr), 0);
        long long at = json_integer_value(rdt_json_path(fr.json, "attempt"));
        rdt_resp_free(&fr);
        snprintf(tp, sizeof(tp), "/api/v1/tasks/%s", task);
        assert_int_equal(rdt_get(&proc, RDT_H1, tp, &fr), 0);
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
    assert_int_equal(
        rdt_post(&proc, RDT_H1, "/api/v1/recovery/trigger", "{\"node_id\":\"spec-fault\"}", &fr),
        0);
    assert_int_equal(fr.status, 202);
    snprintf(recovery_id, sizeof(recovery_id), "%s",
             json_string_value(rdt_json_path(fr.json, "recovery_id")));
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
                                : strncmp(brace, "{recovery_id}", 13) == 0 ? recovery_id
                                : strncmp(brace, "{task_id}", 9) != 0      ? "spec-node"
                                : strstr(o->path, "/fail")                 ? task2
                                                                           : task;
            snprintf(path, sizeof(path), "%.*s%s%s", (int)(brace - o->path), o->path, value,
                     close + 1);
        } else {
            snprintf(path, sizeof(path), "%s", o->path);
        }
        const char *body = NULL;
        if (strcmp(o->method, "POST") == 0)
            body = strstr(path, "heartbeat")   ? "{\"epoch\":1,\"load\":{\"slots_used\":0}}"
                   : strstr(path, "/complete") ? "{\"attempt\":1,\"result\":{\"ok\":true}}"
                   : strstr(path, "/fail")     ? "{\"attempt\":1,\"error\":\"spec\"}"
                   : strstr(path, "/trigger")  ? "{\"node_id\":\"spec-fault\"}"
                                               : "{\"node_id\":\"spec-node-2\"}";
        char url[512];
        snprintf(url, sizeof(url), "%s%s", proc.base_url, path);
        for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
            char put_body[160];
            /* Membership: each protocol adds (POST) and later removes
             * (DELETE) its own spare replica, 7 or 8, at a dead address. */
            const char *rid = proto == RDT_H1 ? "7" : "8";
            if (strstr(o->path, "{replica_id}"))
                snprintf(url, sizeof(url), "%s/api/v1/cluster/replicas/%s", proc.base_url, rid);
            if (strcmp(path, "/api/v1/cluster/replicas") == 0 && body != NULL) {
                snprintf(put_body, sizeof(put_body),
                         "{\"id\":%s,\"role\":\"spare\",\"address\":\"127.0.0.1:%s\","
                         "\"api_url\":\"http://127.0.0.1:%s\"}",
                         rid, rid, rid);
                body = put_body;
            }
            if (strcmp(o->method, "PUT") == 0) {
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
            struct rdt_resp r = {0};
            assert_int_equal(
                rdt_http((enum rdt_proto)proto, o->method, url, body, body ? strlen(body) : 0, &r),
                0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_served_route_is_documented),
        cmocka_unit_test(test_every_documented_operation_answers_as_documented),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
