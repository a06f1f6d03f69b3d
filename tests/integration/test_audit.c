/*
 * The audit trail (issue 12) on three real replicas: a scripted incident
 * read back from GET /api/v1/audit, in order and complete, then again from
 * a new leader after kill -9 of the old one.
 *
 * The incident: agents register and a task is placed; an operator isolates
 * agent-17 through the API with an X-Request-Id; the engine opens a
 * recovery run and moves the task (principal recoveryd, the run its cause);
 * an operator triggers a backup, which the engine takes. Around it: a
 * failed request (404) is a record too, heartbeats are not (they are
 * counted), the answer echoes X-Request-Id, and the filters and the cursor
 * select and page what they say. And the retention the config sets is
 * what a replica keeps.
 */
#include "cmocka_all.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "harness.h"
#include "rdt_ctest.h"

#define TASK "a0d17000-0000-4000-8000-000000000017"

static struct rdt_cluster cl;
static char backup_dir[256];
static int first = 0;

static int setup(void **state)
{
    (void)state;
    snprintf(backup_dir, sizeof(backup_dir), "%s/rdt-audit-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(backup_dir) == NULL)
        return -1;
    static char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "fault_tolerance:\n"
             "  detection:\n"
             "    heartbeat_interval: 30s\n" /* nobody turns suspect meanwhile */
             "  partition:\n"
             "    min_nodes: 100\n"
             "  backup:\n"
             "    archive: {target: \"\"}\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - {name: local, plugin: file, config: {dir: \"%s\"}}\n",
             backup_dir);
    return rdt_cluster_start(&cl, 3, yaml, NULL);
}

static int teardown(void **state)
{
    (void)state;
    if (getenv("RDT_VERBOSE"))
        for (int i = 0; i < cl.n; i++)
            rdt_proc_print_log_tail(&cl.procs[i], 60);
    rdt_cluster_cleanup(&cl);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", backup_dir);
    if (backup_dir[0] != '\0' && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", backup_dir);
    return 0;
}

/* A request to the leader (following redirects) with an X-Request-Id. */
static void request(const char *method, const char *path, const char *body, const char *rid,
                    struct rdt_resp *out)
{
    int L = rdt_cluster_leader(&cl, 10000);
    assert_true(L >= 0);
    first = L;
    char url[512];
    snprintf(url, sizeof(url), "%s%s", cl.procs[L].base_url, path);
    CURL *e = rdt_easy_new(RDT_H1, method, url, body, body ? strlen(body) : 0, 10000, out);
    assert_non_null(e);
    if (rid != NULL) {
        char h[128];
        snprintf(h, sizeof(h), "X-Request-Id: %s", rid);
        struct curl_slist *l = curl_slist_append(out->req_headers_, h);
        assert_non_null(l);
        out->req_headers_ = l;
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, l);
    }
    int rc = rdt_easy_finish(e, curl_easy_perform(e), out);
    curl_easy_cleanup(e);
    if (rc != 0)
        fail_msg("%s %s: %s", method, path, out->curl_error);
}

/* GET `path` from whichever replica leads (307s followed). */
static void get(const char *path, struct rdt_resp *out)
{
    assert_int_equal(rdt_cluster_request(&cl, &first, "GET", path, NULL, 10000, out), 0);
    if (out->status != 200)
        fail_msg("GET %s: %ld %s", path, out->status, out->body ? out->body : "");
}

/* Polls GET `path` until `key` (a dotted path) is the string `want`. */
static void await_string(const char *path, const char *key, const char *want, int timeout_ms)
{
    int64_t until = rdt_now_ms() + rdt_ms(timeout_ms);
    for (;;) {
        struct rdt_resp r = {0};
        get(path, &r);
        const char *v = json_string_value(rdt_json_path(r.json, key));
        bool ok = v != NULL && strcmp(v, want) == 0;
        if (!ok && rdt_now_ms() > until)
            fail_msg("%s: %s is %s, not %s", path, key, v ? v : "(none)", want);
        rdt_resp_free(&r);
        if (ok)
            return;
        rdt_sleep_ms(20);
    }
}

static const char *str(json_t *rec, const char *key)
{
    return json_string_value(rdt_json_path(rec, key));
}

/* The first record at or after position *at whose action is `action` and
 * target `target`; *at moves past it. Fails when there is none. */
static json_t *next_record(json_t *items, size_t *at, const char *action, const char *target)
{
    for (size_t i = *at; i < json_array_size(items); i++) {
        json_t *rec = json_array_get(items, i);
        const char *a = str(rec, "action"), *t = str(rec, "target");
        if (strcmp(a, action) == 0 && strcmp(t ? t : "", target) == 0) { /* null: "" */
            *at = i + 1;
            return rec;
        }
    }
    fail_msg("no %s record for %s after position %zu", action, target, *at);
    return NULL;
}

/* The whole trail, oldest first, through pages of `limit`. */
static json_t *trail(const char *filters, int limit, bool asc)
{
    json_t *all = json_array();
    char cursor[32] = "";
    for (int pages = 0; pages < 1000; pages++) {
        char path[512];
        snprintf(path, sizeof(path), "/api/v1/audit?limit=%d&order=%s%s%s%s%s", limit,
                 asc ? "asc" : "desc", cursor[0] ? "&cursor=" : "", cursor, filters ? "&" : "",
                 filters ? filters : "");
        struct rdt_resp r = {0};
        get(path, &r);
        json_t *items = json_object_get(r.json, "items");
        assert_true(json_array_size(items) <= (size_t)limit);
        json_array_extend(all, items);
        json_t *next = json_object_get(r.json, "next_cursor");
        bool more = json_is_string(next);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        rdt_resp_free(&r);
        if (!more)
            return all;
    }
    fail_msg("the cursor never ended");
    return NULL;
}

static void test_incident_trail_survives_failover(void **state)
{
    (void)state;
    struct rdt_resp r = {0};
    /* Agents and a task; the task lands on agent-17, the only agent. */
    request("POST", "/api/v1/nodes", "{\"node_id\":\"agent-17\",\"capacity\":{\"slots\":2}}",
            "reg-17", &r);
    assert_int_equal(r.status, 201);
    long long epoch17 = json_integer_value(json_object_get(r.json, "epoch"));
    rdt_resp_free(&r);
    request("POST", "/api/v1/tasks", "{\"task_id\":\"" TASK "\",\"critical\":true}", NULL, &r);
    assert_int_equal(r.status, 201);
    assert_int_equal(strlen(r.request_id), 36); /* none given: one generated, echoed */
    rdt_resp_free(&r);
    await_string("/api/v1/tasks/" TASK, "node_id", "agent-17", 10000);
    /* A heartbeat: counted, not audited. */
    char hb[128];
    snprintf(hb, sizeof(hb), "{\"epoch\":%lld,\"slots_used\":1}", epoch17);
    request("POST", "/api/v1/nodes/agent-17/heartbeat", hb, "hb-1", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.request_id, "hb-1");
    rdt_resp_free(&r);
    /* An X-Request-Id that is too long (or not printable) is replaced. */
    request("POST", "/api/v1/nodes/agent-17/heartbeat", hb,
            "0123456789012345678901234567890123456789-too-long", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(strlen(r.request_id), 36);
    rdt_resp_free(&r);
    request("POST", "/api/v1/nodes", "{\"node_id\":\"agent-18\",\"capacity\":{\"slots\":2}}", NULL,
            &r);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);

    /* 03:12: the operator isolates agent-17. */
    request("POST", "/api/v1/nodes/agent-17/isolate", "{\"reason\":\"bad GPU\"}", "incident-0312",
            &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.request_id, "incident-0312");
    rdt_resp_free(&r);
    /* The engine moves the task to agent-18. */
    await_string("/api/v1/tasks/" TASK, "node_id", "agent-18", 10000);
    /* A request that fails is a record too. */
    request("POST", "/api/v1/nodes/agent-99/isolate", NULL, "typo-1", &r);
    assert_int_equal(r.status, 404);
    rdt_resp_free(&r);
    /* An operator triggers a backup; the engine takes it. */
    request("POST", "/api/v1/backup/trigger", NULL, "backup-after-incident", &r);
    assert_int_equal(r.status, 202);
    char backup_id[64];
    snprintf(backup_id, sizeof(backup_id), "%s", str(r.json, "backup_id"));
    rdt_resp_free(&r);
    char bpath[128];
    snprintf(bpath, sizeof(bpath), "/api/v1/backups/%s", backup_id);
    await_string(bpath, "status", "completed", 20000);
    /* Actions through the engine's modules and outside the log. */
    request("POST", "/api/v1/nodes", "{\"node_id\":\"agent-19\",\"capacity\":{\"slots\":1}}", NULL,
            &r);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    request("POST", "/api/v1/recovery/trigger", "{\"node_id\":\"agent-19\"}", "trigger-19", &r);
    assert_int_equal(r.status, 202);
    rdt_resp_free(&r);
    request("POST", "/api/v1/policies/reload", NULL, "reload-1", &r);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);

    /* ---- read back, oldest first, in one page ---- */
    json_t *items = trail(NULL, 1000, true);
    if (getenv("RDT_VERBOSE")) {
        char *text = json_dumps(items, JSON_INDENT(1));
        fprintf(stderr, "%s\n", text ? text : "");
        free(text);
    }
    size_t at = 0;
    json_t *reg = next_record(items, &at, "nodes_register", "agent-17");
    assert_string_equal(str(reg, "principal"), "anonymous");
    assert_string_equal(str(reg, "request_id"), "reg-17");
    assert_int_equal(json_integer_value(rdt_json_path(reg, "outcome.status")), 201);
    json_t *sub = next_record(items, &at, "tasks_submit", TASK);
    assert_int_equal(strlen(str(sub, "request_id")), 36);
    json_t *iso = next_record(items, &at, "node_isolate", "agent-17");
    assert_string_equal(str(iso, "principal"), "anonymous");
    assert_string_equal(str(iso, "role"), "none");
    assert_string_equal(str(iso, "method"), "POST");
    assert_string_equal(str(iso, "request_id"), "incident-0312");
    assert_int_equal(json_integer_value(rdt_json_path(iso, "outcome.status")), 200);
    assert_true(json_is_null(rdt_json_path(iso, "outcome.error")));
    assert_non_null(str(iso, "source"));
    assert_int_equal(strncmp(str(iso, "source"), "127.0.0.1:", 10), 0);
    json_t *open = next_record(items, &at, "recovery_open", "agent-17");
    assert_string_equal(str(open, "principal"), "recoveryd");
    assert_true(json_is_null(json_object_get(open, "source")));
    const char *run = str(open, "cause");
    assert_non_null(run);
    assert_int_equal(strlen(run), 36);
    json_t *move = next_record(items, &at, "task_move", TASK);
    assert_string_equal(str(move, "principal"), "recoveryd");
    assert_string_equal(str(move, "cause"), run);
    json_t *typo = next_record(items, &at, "node_isolate", "agent-99");
    assert_int_equal(json_integer_value(rdt_json_path(typo, "outcome.status")), 404);
    assert_string_equal(str(typo, "outcome.error"), "not_found");
    json_t *trig = next_record(items, &at, "backup_trigger", backup_id);
    assert_string_equal(str(trig, "request_id"), "backup-after-incident");
    assert_int_equal(json_integer_value(rdt_json_path(trig, "outcome.status")), 202);
    json_t *done = next_record(items, &at, "backup_complete", backup_id);
    assert_string_equal(str(done, "principal"), "recoveryd");
    json_t *rt = next_record(items, &at, "recovery_trigger", "agent-19");
    assert_string_equal(str(rt, "request_id"), "trigger-19");
    assert_int_equal(json_integer_value(rdt_json_path(rt, "outcome.status")), 202);
    json_t *reload = next_record(items, &at, "policies_reload", "");
    assert_string_equal(str(reload, "request_id"), "reload-1");
    /* In order: seq up by one, time never back; no heartbeat anywhere. */
    size_t i;
    json_t *rec;
    json_int_t prev_seq = 0;
    int64_t prev_t = 0;
    json_array_foreach(items, i, rec)
    {
        json_int_t seq = json_integer_value(json_object_get(rec, "seq"));
        int64_t t;
        assert_int_equal(rd_time_parse(str(rec, "time"), &t), 0);
        assert_true(prev_seq == 0 || seq == prev_seq + 1);
        assert_true(t >= prev_t);
        prev_seq = seq;
        prev_t = t;
        assert_string_not_equal(str(rec, "action"), "node_heartbeat");
    }

    /* ---- filters and the cursor ---- */
    json_t *mine = trail("principal=recoveryd", 1000, true);
    json_array_foreach(mine, i, rec) assert_string_equal(str(rec, "principal"), "recoveryd");
    assert_true(json_array_size(mine) >= 3); /* recovery_open, task_move, backup_begin... */
    json_decref(mine);
    json_t *isos = trail("action=node_isolate&target=agent-17", 1000, false);
    assert_int_equal(json_array_size(isos), 1);
    assert_string_equal(str(json_array_get(isos, 0), "request_id"), "incident-0312");
    json_decref(isos);
    /* "Who isolated agent-17 between these times?": since/until bound it. */
    char q[256];
    snprintf(q, sizeof(q), "action=node_isolate&since=%s&until=%s", str(iso, "time"),
             str(iso, "time"));
    json_t *window = trail(q, 1000, false);
    assert_int_equal(json_array_size(window), 1);
    json_decref(window);
    snprintf(q, sizeof(q), "action=node_isolate&until=%s", str(reg, "time"));
    window = trail(q, 1000, false);
    assert_int_equal(json_array_size(window), 0);
    json_decref(window);
    /* Pages of 2, newest first, are the whole trail reversed. */
    json_t *paged = trail(NULL, 2, false);
    assert_true(json_array_size(paged) >= json_array_size(items));
    size_t n = json_array_size(items), extra = json_array_size(paged) - n;
    for (size_t k = 0; k < n; k++)
        assert_true(json_equal(json_array_get(paged, extra + n - 1 - k), json_array_get(items, k)));
    json_decref(paged);
    /* Bad filters name themselves. */
    const char *bad[] = {"cursor=abc", "since=yesterday", "order=sideways", "limit=0",
                         "principal="};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/audit?%s", bad[k]);
        assert_int_equal(rdt_cluster_request(&cl, &first, "GET", path, NULL, 10000, &r), 0);
        assert_int_equal(r.status, 400);
        assert_string_equal(rdt_err_code(&r), "bad_request");
        rdt_resp_free(&r);
    }

    /* ---- the leader dies: the new one serves the same trail ---- */
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    assert_int_equal(rdt_proc_kill9(&cl.procs[L]), 0);
    first = (L + 1) % cl.n;
    int L2 = -1;
    for (int64_t until = rdt_now_ms() + rdt_ms(15000); L2 < 0 || L2 == L;) {
        L2 = rdt_cluster_leader(&cl, 1000);
        assert_true(rdt_now_ms() < until);
    }
    first = L2;
    json_t *after = trail(NULL, 1000, true);
    assert_true(json_array_size(after) >= json_array_size(items));
    for (size_t k = 0; k < json_array_size(items); k++)
        if (!json_equal(json_array_get(after, k), json_array_get(items, k)))
            fail_msg("record %zu differs on the new leader (replica %d)", k, L2 + 1);
    fprintf(stderr, "the trail of %zu records read back from the new leader, replica %d\n",
            json_array_size(items), L2 + 1);
    json_decref(after);
    json_decref(items);
    /* The old leader comes back for the cleanup's checks. */
    assert_int_equal(rdt_proc_restart(&cl.procs[L]), 0);
    assert_int_equal(rdt_wait_ready(&cl.procs[L], 15000), 0);
}

/* security.audit.max_records, stamped by the leader into each record's
 * entry, bounds what is kept: with 3, five records leave the newest three,
 * and the metrics count what was written. */
static void test_retention_from_the_config(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, "fault_tolerance:\n"
                                        "  detection:\n"
                                        "    heartbeat_interval: 30s\n"
                                        "security:\n"
                                        "  audit:\n"
                                        "    max_records: 3\n"),
                     0);
    struct rdt_resp r = {0};
    for (int i = 1; i <= 5; i++) {
        char body[96];
        snprintf(body, sizeof(body), "{\"node_id\":\"keep-%d\",\"capacity\":{\"slots\":1}}", i);
        assert_int_equal(rdt_post(&p, RDT_H1, "/api/v1/nodes", body, &r), 0);
        assert_int_equal(r.status, 201);
        rdt_resp_free(&r);
    }
    assert_int_equal(rdt_get(&p, RDT_H2, "/api/v1/audit", &r), 0);
    assert_int_equal(r.status, 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 3);
    for (int k = 0; k < 3; k++) { /* newest first */
        json_t *rec = json_array_get(items, (size_t)k);
        assert_int_equal(json_integer_value(json_object_get(rec, "seq")), 5 - k);
        char want[16];
        snprintf(want, sizeof(want), "keep-%d", 5 - k);
        assert_string_equal(str(rec, "target"), want);
    }
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&p, RDT_H1, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "recoveryd_audit_records_written_total 5\n"));
    assert_non_null(strstr(r.body, "recoveryd_audit_records 3\n"));
    rdt_resp_free(&r);
    rdt_proc_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_incident_trail_survives_failover, setup, teardown),
        cmocka_unit_test(test_retention_from_the_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
