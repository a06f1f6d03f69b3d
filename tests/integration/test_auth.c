/*
 * Authentication and roles on the real binary (docs/security.md): every
 * route of RD_ROUTE_LIST called by every kind of caller (none, an unknown
 * token, an expired one, agent, reader, operator, admin) answers as the
 * role table says, and a refused call changes nothing; an agent cannot act
 * for another node; the token file reloads on SIGHUP and on POST
 * /api/v1/policies/reload, and a broken one keeps the tokens in force with
 * file:line; client certificates map to roles; an open API on a
 * non-loopback address does not start.
 */
#include "cmocka_all.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "common/util.h"
#include "http/http.h"

#define TASK  "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
#define TASK2 "7a2b3c4d-5e6f-4b7c-9d8e-0f1a2b3c4d5e"
#define NOID  "00000000-0000-4000-8000-000000000000"

enum who { W_NONE, W_UNKNOWN, W_EXPIRED, W_AGENT, W_READER, W_OPERATOR, W_ADMIN, W_COUNT };
static const char *const who_names[W_COUNT] = {"none",   "unknown",  "expired", "agent",
                                               "reader", "operator", "admin"};

static struct rdt_proc proc;
static char secret[W_COUNT][80];
static char agent2_secret[80];
static char tokens_path[400];
static long long epoch1, epoch2;

/* `recoveryd token new ...`: the secret into `sec`, the file line appended to `file`. */
static int make_token(const char *id, const char *role, const char *extra_flag,
                      const char *extra_value, char *sec, size_t seclen, FILE *file)
{
    char *argv[] = {RD_BINARY,           "token",  "new",        "--id",
                    (char *)id,          "--role", (char *)role, (char *)extra_flag,
                    (char *)extra_value, NULL};
    char *out = NULL, *err = NULL;
    int rc = rdt_run(argv, 10000, &out, &err);
    int ok = -1;
    const char *s = out ? strstr(out, "secret: ") : NULL;
    const char *l = out ? strstr(out, "line:   ") : NULL;
    if (rc == 0 && s != NULL && l != NULL) {
        snprintf(sec, seclen, "%.*s", (int)strcspn(s + 8, "\n"), s + 8);
        fprintf(file, "%.*s\n", (int)strcspn(l + 8, "\n"), l + 8);
        ok = 0;
    } else {
        fprintf(stderr, "token new failed (%d): %s %s\n", rc, out ? out : "", err ? err : "");
    }
    free(out);
    free(err);
    return ok;
}

static void as(enum who w)
{
    rdt_bearer = w == W_NONE ? NULL : secret[w];
}

static int setup(void **state)
{
    (void)state;
    if (rdt_proc_prepare(&proc) != 0)
        return -1;
    snprintf(tokens_path, sizeof(tokens_path), "%s/tokens", proc.dir);
    FILE *f = fopen(tokens_path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "# test tokens\n\n");
    int rc =
        make_token("t-agent", "agent", "--nodes", "agent-1,agent-1x*", secret[W_AGENT],
                   sizeof(secret[0]), f) |
        make_token("t-agent2", "agent", "--nodes", "agent-2", agent2_secret, sizeof(agent2_secret),
                   f) |
        make_token("t-reader", "reader", NULL, NULL, secret[W_READER], sizeof(secret[0]), f) |
        make_token("t-operator", "operator", NULL, NULL, secret[W_OPERATOR], sizeof(secret[0]), f) |
        make_token("t-admin", "admin", NULL, NULL, secret[W_ADMIN], sizeof(secret[0]), f) |
        make_token("t-expired", "admin", "--expires", "2020-01-01T00:00:00Z", secret[W_EXPIRED],
                   sizeof(secret[0]), f);
    fclose(f);
    snprintf(secret[W_UNKNOWN], sizeof(secret[0]), "rdt_%064d", 7);
    if (rc != 0)
        return -1;
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "security:\n  tokens_file: %s\n  metrics_open: false\n"
             "fault_tolerance:\n  detection:\n    heartbeat_interval: 1m\n"
             "  backup:\n    interval: 1h\n",
             tokens_path);
    as(W_ADMIN);
    /* The fault-injection build: its /debug/ routes are admin's only. */
    snprintf(proc.binary, sizeof(proc.binary), "%s", RD_BINARY_FI);
    if (rdt_proc_start(&proc, yaml) != 0 || rdt_wait_ready(&proc, 15000) != 0)
        return -1;
    /* agent-1 (the agent token's node) runs TASK; agent-2 runs TASK2. */
    struct rdt_resp r = {0};
    rc = rdt_register(&proc, "agent-1", 1, &epoch1);
    rc |= rdt_post(&proc, RDT_H1, "/api/v1/tasks", "{\"task_id\":\"" TASK "\"}", &r);
    rdt_resp_free(&r);
    rc |= rdt_register(&proc, "agent-2", 1, &epoch2);
    rc |= rdt_post(&proc, RDT_H1, "/api/v1/tasks", "{\"task_id\":\"" TASK2 "\"}", &r);
    rdt_resp_free(&r);
    return rc == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rdt_bearer = NULL;
    rdt_proc_cleanup(&proc);
    return 0;
}

/* The task's assigned node (as admin), or "" while unassigned. */
static void task_node(const char *id, char *out, size_t len)
{
    const char *saved = rdt_bearer;
    as(W_ADMIN);
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s", id);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    assert_int_equal(r.status, 200);
    const char *n = json_string_value(rdt_json_path(r.json, "node_id"));
    snprintf(out, len, "%s", n ? n : "");
    rdt_resp_free(&r);
    rdt_bearer = saved;
}

static void await_assigned(const char *id, const char *node)
{
    int64_t deadline = rdt_now_ms() + 10000;
    char got[64];
    for (task_node(id, got, sizeof(got)); strcmp(got, node) != 0; task_node(id, got, sizeof(got))) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(10);
    }
}

/* The applied index and the state of both nodes, as admin: what a refused
 * call must leave as it was. */
struct snap {
    long long applied;
    char nodes[4096];
    /* From one answer of GET /api/v1/audit?limit=1, so at one instant: the
     * applied index and the newest audit record's seq. */
    long long audit_applied, seq;
};

static void snapshot(struct snap *s)
{
    const char *saved = rdt_bearer;
    as(W_ADMIN);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/nodes?stale=true", &r), 0);
    assert_int_equal(r.status, 200);
    s->applied = atoll(r.applied_index);
    /* What the log decides about each node (phi moves with the clock). */
    size_t off = 0;
    json_t *items = rdt_json_path(r.json, "items"), *n;
    size_t i;
    json_array_foreach(items, i, n)
    {
        json_t *kept = json_pack(
            "{s:O,s:O,s:O,s:O,s:O,s:O}", "node_id", json_object_get(n, "node_id"), "state",
            json_object_get(n, "state"), "epoch", json_object_get(n, "epoch"), "updated_at",
            json_object_get(n, "updated_at"), "last_heartbeat_at",
            json_object_get(n, "last_heartbeat_at"), "tasks", json_object_get(n, "tasks"));
        char *one = json_dumps(kept, JSON_SORT_KEYS | JSON_COMPACT);
        json_decref(kept);
        off += (size_t)snprintf(s->nodes + off, sizeof(s->nodes) - off, "%s;", one ? one : "");
        free(one);
        assert_true(off < sizeof(s->nodes));
    }
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/audit?limit=1&stale=true", &r), 0);
    assert_int_equal(r.status, 200);
    s->audit_applied = atoll(r.applied_index);
    json_t *newest = json_array_get(rdt_json_path(r.json, "items"), 0);
    s->seq = newest ? json_integer_value(json_object_get(newest, "seq")) : 0;
    rdt_resp_free(&r);
    rdt_bearer = saved;
}

/*
 * Refusals changed nothing: the nodes are as they were, and the log entries
 * between the two snapshots hold audit records (the log moved no more than
 * the trail: group commit may batch records), each of a refusal (401 or 403). A refusal's record is
 * proposed without waiting, so it may land in the next window: the check
 * is on what the entries are, not on which request wrote them.
 */
static bool only_refusal_records(const struct snap *before, const struct snap *after)
{
    if (strcmp(before->nodes, after->nodes) != 0)
        return false;
    long long entries = after->audit_applied - before->audit_applied;
    long long records = after->seq - before->seq;
    /* Group commit may put several records in one entry: the log moved by
     * no more entries than there are records, and every record is a
     * refusal's (below). */
    if (entries > records || records < 0)
        return false;
    if (records == 0)
        return true;
    const char *saved = rdt_bearer;
    as(W_ADMIN);
    /* The records up to after->seq (the cursor is exclusive): a later
     * refusal's record may have landed since. */
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/audit?limit=%lld&cursor=%lld&stale=true", records,
             after->seq + 1);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    rdt_bearer = saved;
    json_t *items = rdt_json_path(r.json, "items"), *rec;
    bool ok = json_array_size(items) == (size_t)records;
    size_t i;
    json_array_foreach(items, i, rec)
    {
        json_int_t st =
            json_integer_value(json_object_get(json_object_get(rec, "outcome"), "status"));
        json_int_t seq = json_integer_value(json_object_get(rec, "seq"));
        ok = ok && (st == 401 || st == 403) && seq > before->seq && seq <= after->seq;
    }
    if (!ok)
        fprintf(stderr, "audit records of the window: %s\n", r.body);
    rdt_resp_free(&r);
    return ok;
}

/* ---- the table ------------------------------------------------------------ */

/* Who may call each route: '*' anyone, g agent (own node), r reader,
 * o operator, a admin. Written here independently of the engine's table. */
struct row {
    int route;
    const char *method, *path, *body;
    const char *allowed;
};

static char hb_body[128];

static const struct row rows[] = {
    {RD_ROUTE_HEALTH, "GET", "/health", NULL, "*"},
    {RD_ROUTE_READY, "GET", "/ready", NULL, "*"},
    {RD_ROUTE_METRICS, "GET", "/metrics", NULL, "roa"},
    {RD_ROUTE_NODES_LIST, "GET", "/api/v1/nodes", NULL, "roa"},
    {RD_ROUTE_NODES_REGISTER, "POST", "/api/v1/nodes",
     "{\"node_id\":\"agent-1x7\",\"capacity\":{\"slots\":1}}", "ga"},
    {RD_ROUTE_NODE_GET, "GET", "/api/v1/nodes/agent-1", NULL, "roa"},
    {RD_ROUTE_NODE_DELETE, "DELETE", "/api/v1/nodes/no-such-node", NULL, "a"},
    {RD_ROUTE_NODE_HEARTBEAT, "POST", "/api/v1/nodes/agent-1/heartbeat", hb_body, "ga"},
    {RD_ROUTE_NODE_DRAIN, "POST", "/api/v1/nodes/no-such-node/drain", "{}", "oa"},
    {RD_ROUTE_NODE_ISOLATE, "POST", "/api/v1/nodes/no-such-node/isolate", "{}", "oa"},
    {RD_ROUTE_NODE_READMIT, "POST", "/api/v1/nodes/no-such-node/readmit", "{}", "oa"},
    {RD_ROUTE_CLUSTER_HEALTH, "GET", "/api/v1/health/cluster", NULL, "roa"},
    {RD_ROUTE_FAULTS_STATUS, "GET", "/api/v1/faults/status", NULL, "roa"},
    {RD_ROUTE_FAULTS_RECORDS, "GET", "/api/v1/faults/records", NULL, "roa"},
    {RD_ROUTE_FAULT_GET, "GET", "/api/v1/faults/records/" NOID, NULL, "roa"},
    {RD_ROUTE_PLUGINS_LIST, "GET", "/api/v1/plugins", NULL, "roa"},
    {RD_ROUTE_TASKS_SUBMIT, "POST", "/api/v1/tasks", "{\"priority\":10}", "oa"},
    {RD_ROUTE_TASKS_LIST, "GET", "/api/v1/tasks", NULL, "roa"},
    {RD_ROUTE_TASK_GET, "GET", "/api/v1/tasks/" TASK, NULL, "groa"},
    {RD_ROUTE_TASK_CHECKPOINT_PUT, "PUT", "/api/v1/tasks/" TASK "/checkpoint",
     "{\"attempt\":99,\"version\":1,\"data\":{}}", "ga"},
    {RD_ROUTE_TASK_CHECKPOINT_GET, "GET", "/api/v1/tasks/" TASK "/checkpoint", NULL, "groa"},
    {RD_ROUTE_TASK_COMPLETE, "POST", "/api/v1/tasks/" TASK "/complete",
     "{\"attempt\":99,\"result\":{}}", "ga"},
    {RD_ROUTE_TASK_FAIL, "POST", "/api/v1/tasks/" TASK "/fail", "{\"attempt\":99,\"error\":\"x\"}",
     "ga"},
    {RD_ROUTE_TASK_CANCEL, "POST", "/api/v1/tasks/" NOID "/cancel", "{}", "oa"},
    {RD_ROUTE_TASK_RETRY, "POST", "/api/v1/tasks/" NOID "/retry", NULL, "oa"},
    {RD_ROUTE_POLICIES_RELOAD, "POST", "/api/v1/policies/reload", NULL, "oa"},
    {RD_ROUTE_LOG_LEVEL_GET, "GET", "/api/v1/system/log-level", NULL, "roa"},
    /* the harness's level: allowed, it changes nothing */
    {RD_ROUTE_LOG_LEVEL_SET, "PUT", "/api/v1/system/log-level", "{\"level\":\"debug\"}", "a"},
    {RD_ROUTE_RECOVERY_TRIGGER, "POST", "/api/v1/recovery/trigger", "{}", "oa"},
    {RD_ROUTE_RECOVERY_LIST, "GET", "/api/v1/recovery/tasks", NULL, "roa"},
    {RD_ROUTE_RECOVERY_GET, "GET", "/api/v1/recovery/tasks/" NOID, NULL, "roa"},
    {RD_ROUTE_REPLICAS_LIST, "GET", "/api/v1/cluster/replicas", NULL, "roa"},
    {RD_ROUTE_REPLICAS_CHANGE, "POST", "/api/v1/cluster/replicas", "{}", "a"},
    {RD_ROUTE_REPLICA_DELETE, "DELETE", "/api/v1/cluster/replicas/99", NULL, "a"},
    {RD_ROUTE_REPLICA_REJOIN, "POST", "/api/v1/cluster/replicas/99/rejoin", "{\"phase\":\"leave\"}",
     "a"},
    {RD_ROUTE_CONSISTENCY_CHECK, "POST", "/api/v1/consistency/check", NULL, "oa"},
    {RD_ROUTE_CONSISTENCY_CHECKS, "GET", "/api/v1/consistency/checks", NULL, "roa"},
    {RD_ROUTE_CONSISTENCY_CHECK_GET, "GET", "/api/v1/consistency/checks/" NOID, NULL, "roa"},
    {RD_ROUTE_CONSISTENCY_LOCAL, "GET", "/api/v1/consistency/checks/" NOID "/local", NULL, "roa"},
    {RD_ROUTE_BACKUP_TRIGGER, "POST", "/api/v1/backup/trigger", "{}", "oa"},
    {RD_ROUTE_BACKUPS_LIST, "GET", "/api/v1/backups", NULL, "roa"},
    {RD_ROUTE_BACKUP_GET, "GET", "/api/v1/backups/" NOID, NULL, "roa"},
    {RD_ROUTE_BACKUP_VERIFY, "POST", "/api/v1/backups/" NOID "/verify", NULL, "oa"},
    {RD_ROUTE_AUDIT_LIST, "GET", "/api/v1/audit", NULL, "roa"},
    /* a bad filter: the check passed, the stream is refused at once (400) */
    {RD_ROUTE_EVENTS, "GET", "/api/v1/events?kind=bogus", NULL, "roa"},
    {RD_ROUTE_CONFLICTS_LIST, "GET", "/api/v1/conflicts", NULL, "roa"},
    {RD_ROUTE_CONFLICT_GET, "GET", "/api/v1/conflicts/" NOID, NULL, "roa"},
    {RD_ROUTE_WHOAMI, "GET", "/api/v1/auth/whoami", NULL, "groa"},
};

static const char role_letter[W_COUNT] = {0, 0, 0, 'g', 'r', 'o', 'a'};

/* 0: allowed, 401, 403. */
static int expected(const struct row *row, enum who w)
{
    if (strcmp(row->allowed, "*") == 0)
        return 0;
    if (role_letter[w] == 0)
        return 401;
    return strchr(row->allowed, role_letter[w]) ? 0 : 403;
}

static void call(const struct row *row, enum who w, struct rdt_resp *r)
{
    as(w);
    char url[512];
    snprintf(url, sizeof(url), "%s%s", proc.base_url, row->path);
    assert_int_equal(
        rdt_http(RDT_H1, row->method, url, row->body, row->body ? strlen(row->body) : 0, r), 0);
}

static void test_every_route_every_role(void **state)
{
    (void)state;
    /* The table covers every route. */
    assert_int_equal(RD_ARRAY_SIZE(rows), RD_ROUTE_NONE);
    for (size_t i = 0; i < RD_ARRAY_SIZE(rows); i++)
        assert_int_equal(rows[i].route, (int)i);
    await_assigned(TASK, "agent-1");
    await_assigned(TASK2, "agent-2");
    snprintf(hb_body, sizeof(hb_body), "{\"epoch\":%lld,\"load\":{\"slots_used\":1}}", epoch1);

    /* The refusals first, each checked to change nothing. */
    int refused = 0, refused_401 = 0;
    for (size_t i = 0; i < RD_ARRAY_SIZE(rows); i++) {
        for (int w = 0; w < W_COUNT; w++) {
            int want = expected(&rows[i], (enum who)w);
            if (want == 0)
                continue;
            struct snap before, after;
            snapshot(&before);
            struct rdt_resp r = {0};
            call(&rows[i], (enum who)w, &r);
            if (r.status != want)
                fail_msg("%s %s as %s: status %ld, expected %d (%s)", rows[i].method, rows[i].path,
                         who_names[w], r.status, want, r.body ? r.body : "");
            if (want == 401) {
                assert_string_equal(rdt_err_code(&r), "unauthorized");
                assert_non_null(strstr(r.www_authenticate, "Bearer realm=\"recoveryd\""));
            } else {
                assert_string_equal(rdt_err_code(&r), "forbidden");
                assert_non_null(
                    json_string_value(rdt_json_path(r.json, "error.details.required_role")));
                assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.role")),
                                    who_names[w]);
            }
            assert_true(r.request_id[0] != '\0');
            snapshot(&after);
            if (!only_refusal_records(&before, &after))
                fail_msg("%s %s as %s was refused but changed the state (applied %lld -> %lld; "
                         "entries %lld -> %lld, audit records %lld -> %lld; nodes %s)",
                         rows[i].method, rows[i].path, who_names[w], before.applied, after.applied,
                         before.audit_applied, after.audit_applied, before.seq, after.seq,
                         strcmp(before.nodes, after.nodes) == 0 ? "equal" : "differ");
            rdt_resp_free(&r);
            refused++;
            refused_401 += want == 401;
        }
    }
    assert_true(refused > 150);
    /* Each refusal was counted, by kind. */
    as(W_READER);
    struct rdt_resp m = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &m), 0);
    char want_line[128];
    snprintf(want_line, sizeof(want_line),
             "recoveryd_http_auth_denied_total{reason=\"unauthenticated\"} %d\n", refused_401);
    assert_non_null(strstr(m.body, want_line));
    snprintf(want_line, sizeof(want_line),
             "recoveryd_http_auth_denied_total{reason=\"forbidden\"} %d\n", refused - refused_401);
    assert_non_null(strstr(m.body, want_line));
    assert_non_null(strstr(m.body, "recoveryd_http_tokens 6\n"));
    rdt_resp_free(&m);

    /* Then everything allowed gets past the check (its own answer may be
     * 404, 400 or 409: the targets mostly do not exist). */
    for (size_t i = 0; i < RD_ARRAY_SIZE(rows); i++) {
        for (int w = 0; w < W_COUNT; w++) {
            if (expected(&rows[i], (enum who)w) != 0)
                continue;
            struct rdt_resp r = {0};
            call(&rows[i], (enum who)w, &r);
            if (r.status == 401 || r.status == 403 || r.status == 0 || r.status >= 500)
                fail_msg("%s %s as %s: status %ld (%s)", rows[i].method, rows[i].path, who_names[w],
                         r.status, r.body ? r.body : "");
            rdt_resp_free(&r);
        }
    }
    rdt_bearer = NULL;
}

static void test_denied_isolate_changes_nothing(void **state)
{
    (void)state;
    struct snap before, after;
    snapshot(&before);
    struct rdt_resp r = {0};
    as(W_READER);
    assert_int_equal(rdt_post(&proc, RDT_H2, "/api/v1/nodes/agent-2/isolate", "{}", &r), 0);
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(json_string_value(rdt_json_path(r.json, "error.message")), "operator"));
    rdt_resp_free(&r);
    as(W_AGENT);
    assert_int_equal(rdt_post(&proc, RDT_H2, "/api/v1/nodes/agent-2/isolate", "{}", &r), 0);
    assert_int_equal(r.status, 403);
    rdt_resp_free(&r);
    snapshot(&after);
    assert_true(only_refusal_records(&before, &after));
    as(W_ADMIN);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/nodes/agent-2", &r), 0);
    assert_string_not_equal(json_string_value(rdt_json_path(r.json, "state")), "isolated");
    rdt_resp_free(&r);
    /* The operator may (a node without tasks, so agent-2 keeps TASK2). */
    as(W_OPERATOR);
    assert_int_equal(rdt_post(&proc, RDT_H2, "/api/v1/nodes/agent-1x7/isolate", "{}", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "state")), "isolated");
    rdt_resp_free(&r);
    assert_int_equal(rdt_post(&proc, RDT_H2, "/api/v1/nodes/agent-1x7/readmit", "{}", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    rdt_bearer = NULL;
}

/* whoami names each token's principal and role; no token is 401. */
static void test_whoami(void **state)
{
    (void)state;
    static const struct {
        enum who w;
        const char *principal, *role;
    } cases[] = {{W_AGENT, "t-agent", "agent"},
                 {W_READER, "t-reader", "reader"},
                 {W_OPERATOR, "t-operator", "operator"},
                 {W_ADMIN, "t-admin", "admin"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rdt_resp r = {0};
        as(cases[i].w);
        assert_int_equal(rdt_get(&proc, RDT_H2, "/api/v1/auth/whoami", &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(json_string_value(rdt_json_path(r.json, "principal")),
                            cases[i].principal);
        assert_string_equal(json_string_value(rdt_json_path(r.json, "role")), cases[i].role);
        rdt_resp_free(&r);
    }
    struct rdt_resp r = {0};
    as(W_NONE);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/auth/whoami", &r), 0);
    assert_int_equal(r.status, 401);
    rdt_resp_free(&r);
    rdt_bearer = NULL;
}

static void test_agent_cannot_act_for_another_node(void **state)
{
    (void)state;
    await_assigned(TASK2, "agent-2");
    struct snap before, after;
    snapshot(&before);
    /* agent-1's token, agent-2's right epoch. */
    as(W_AGENT);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_heartbeat(&proc, RDT_H1, "agent-2", epoch2, 0, &r), 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(rdt_err_code(&r), "forbidden");
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.node")), "agent-2");
    rdt_resp_free(&r);
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes",
                              "{\"node_id\":\"agent-2\",\"capacity\":{\"slots\":4}}", &r),
                     0);
    assert_int_equal(r.status, 403);
    rdt_resp_free(&r);
    /* agent-2's task: neither written nor completed nor read. */
    char url[256];
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", proc.base_url, TASK2);
    const char *ck = "{\"attempt\":1,\"version\":1,\"data\":{\"x\":1}}";
    assert_int_equal(rdt_http(RDT_H1, "PUT", url, ck, strlen(ck), &r), 0);
    assert_int_equal(r.status, 403);
    rdt_resp_free(&r);
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/tasks/" TASK2 "/complete",
                              "{\"attempt\":1,\"result\":{}}", &r),
                     0);
    assert_int_equal(r.status, 403);
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/tasks/" TASK2, &r), 0);
    assert_int_equal(r.status, 403);
    rdt_resp_free(&r);
    /* Nor anything else. */
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/nodes", &r), 0);
    assert_int_equal(r.status, 403);
    rdt_resp_free(&r);
    snapshot(&after);
    assert_true(only_refusal_records(&before, &after));
    /* agent-2's own token may. */
    rdt_bearer = agent2_secret;
    assert_int_equal(rdt_heartbeat(&proc, RDT_H1, "agent-2", epoch2, 0, &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    assert_int_equal(rdt_http(RDT_H1, "PUT", url, ck, strlen(ck), &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    rdt_bearer = NULL;
}

static void test_401_kinds_and_request_id(void **state)
{
    (void)state;
    struct rdt_resp r = {0};
    as(W_EXPIRED);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/nodes", &r), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(json_string_value(rdt_json_path(r.json, "error.message")),
                           "t-expired expired at 2020-01-01T00:00:00"));
    assert_non_null(strstr(r.www_authenticate, "invalid_token"));
    rdt_resp_free(&r);
    as(W_UNKNOWN);
    assert_int_equal(rdt_get(&proc, RDT_H2, "/api/v1/nodes", &r), 0);
    assert_int_equal(r.status, 401);
    rdt_resp_free(&r);
    /* Open routes stay open whatever is sent. */
    assert_int_equal(rdt_get(&proc, RDT_H2, "/health", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);

    /* X-Request-Id: the client's is echoed; a bad one is replaced. */
    as(W_READER);
    char last_id[64] = "";
    const char *ids[] = {"req-42", "bad id with spaces",
                         "0123456789012345678901234567890123456789012345678"};
    for (size_t i = 0; i < 3; i++) {
        char url[256];
        snprintf(url, sizeof(url), "%s/api/v1/nodes", proc.base_url);
        CURL *e = rdt_easy_new(RDT_H1, "GET", url, NULL, 0, 5000, &r);
        assert_non_null(e);
        char h[128];
        snprintf(h, sizeof(h), "X-Request-Id: %s", ids[i]);
        assert_non_null(curl_slist_append(r.req_headers_, h));
        assert_int_equal(rdt_easy_finish(e, curl_easy_perform(e), &r), 0);
        curl_easy_cleanup(e);
        assert_int_equal(r.status, 200);
        if (i == 0) {
            assert_string_equal(r.request_id, "req-42");
        } else {
            assert_int_equal(strlen(r.request_id), 36); /* a UUID, a new one each time */
            assert_string_not_equal(r.request_id, last_id);
        }
        snprintf(last_id, sizeof(last_id), "%s", r.request_id);
        rdt_resp_free(&r);
    }
    rdt_bearer = NULL;
}

/* Paths that match no route: 404 and 405 only to a known caller; the test
 * build's /debug/ routes only to admin. */
static void test_unmatched_and_debug_paths(void **state)
{
    (void)state;
    static const struct {
        enum who w;
        const char *method, *path;
        long status;
    } cases[] = {
        {W_NONE, "GET", "/api/v1/nope", 401},
        {W_UNKNOWN, "GET", "/api/v1/nope", 401},
        {W_AGENT, "GET", "/api/v1/nope", 404},
        {W_READER, "GET", "/api/v1/nope", 404},
        {W_READER, "PATCH", "/api/v1/nodes", 405},
        {W_NONE, "POST", "/debug/digest_skew", 401},
        {W_READER, "POST", "/debug/digest_skew", 403},
        {W_OPERATOR, "POST", "/debug/nothing-here", 403},
        {W_ADMIN, "POST", "/debug/nothing-here", 404},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        as(cases[i].w);
        char url[256];
        snprintf(url, sizeof(url), "%s%s", proc.base_url, cases[i].path);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_http(RDT_H1, cases[i].method, url, NULL, 0, &r), 0);
        if (r.status != cases[i].status)
            fail_msg("%s %s as %s: %ld, expected %ld (%s)", cases[i].method, cases[i].path,
                     who_names[cases[i].w], r.status, cases[i].status, r.body ? r.body : "");
        if (r.status == 403)
            assert_string_equal(
                json_string_value(rdt_json_path(r.json, "error.details.required_role")), "admin");
        rdt_resp_free(&r);
    }
    rdt_bearer = NULL;
}

static void test_json_required_on_bodies(void **state)
{
    (void)state;
    as(W_OPERATOR);
    char url[256];
    snprintf(url, sizeof(url), "%s/api/v1/nodes/agent-1/isolate", proc.base_url);
    const char *types[] = {"text/plain", "application/x-www-form-urlencoded", NULL};
    for (size_t i = 0; i < 3; i++) {
        struct rdt_resp r = {0};
        CURL *e = rdt_easy_new(RDT_H1, "POST", url, NULL, 0, 5000, &r);
        assert_non_null(e);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 2L);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, "{}");
        char h[128];
        /* "Content-Type:" with nothing after it sends none. */
        snprintf(h, sizeof(h), "Content-Type:%s%s", types[i] ? " " : "", types[i] ? types[i] : "");
        assert_non_null(curl_slist_append(r.req_headers_, h));
        assert_int_equal(rdt_easy_finish(e, curl_easy_perform(e), &r), 0);
        curl_easy_cleanup(e);
        assert_int_equal(r.status, 415);
        assert_string_equal(rdt_err_code(&r), "unsupported_media_type");
        assert_non_null(
            strstr(json_string_value(rdt_json_path(r.json, "error.message")), "application/json"));
        rdt_resp_free(&r);
    }
    struct rdt_resp r = {0};
    as(W_ADMIN);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/nodes/agent-1", &r), 0);
    assert_string_not_equal(json_string_value(rdt_json_path(r.json, "state")), "isolated");
    rdt_resp_free(&r);
    rdt_bearer = NULL;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Lines of the engine's log that name `event`. */
static unsigned log_count(const char *event)
{
    char *log = rdt_proc_log(&proc);
    unsigned n = 0;
    for (const char *p = log; p && (p = strstr(p, event)) != NULL; p += strlen(event))
        n++;
    free(log);
    return n;
}

static long status_as(const char *sec, const char *path)
{
    rdt_bearer = sec;
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
    long s = r.status;
    rdt_resp_free(&r);
    return s;
}

static void test_token_reload(void **state)
{
    (void)state;
    char *orig = read_file(tokens_path);
    assert_non_null(orig);
    /* Good: a new reader token appears on SIGHUP. */
    char late[80], path2[420];
    snprintf(path2, sizeof(path2), "%s.new", tokens_path);
    FILE *f = fopen(path2, "w");
    assert_non_null(f);
    fputs(orig, f);
    assert_int_equal(make_token("t-late", "reader", NULL, NULL, late, sizeof(late), f), 0);
    fclose(f);
    assert_int_equal(rename(path2, tokens_path), 0);
    assert_int_equal(status_as(late, "/api/v1/nodes"), 401);
    assert_int_equal(rdt_proc_signal(&proc, SIGHUP), 0);
    int64_t deadline = rdt_now_ms() + 10000;
    while (status_as(late, "/api/v1/nodes") != 200) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(20);
    }

    /* Bad: line 4 is broken; the reload says where and the set in force
     * (with t-late) stays, on the API and on SIGHUP. */
    char *bad = malloc(strlen(orig) + 200);
    const char *l3 = strchr(strchr(orig, '\n') + 1, '\n') + 1; /* after the two header lines */
    sprintf(bad, "%.*sbroken-line reader sha256:xyz\n%s", (int)(l3 - orig), orig, l3);
    assert_int_equal(write_file(tokens_path, bad), 0);
    free(bad);
    rdt_bearer = secret[W_OPERATOR];
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/policies/reload", NULL, &r), 0);
    assert_int_equal(r.status, 400);
    char where[480];
    snprintf(where, sizeof(where), "%s:3:", tokens_path);
    const char *msg = json_string_value(rdt_json_path(r.json, "error.message"));
    if (msg == NULL || strstr(msg, where) == NULL)
        fail_msg("reload error '%s' does not name %s", msg ? msg : "", where);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.field")),
                        "security.tokens_file");
    rdt_resp_free(&r);
    assert_int_equal(status_as(late, "/api/v1/nodes"), 200);
    assert_int_equal(status_as(secret[W_READER], "/api/v1/nodes"), 200);
    /* The SIGHUP's own failure: one more tokens_reload_failed line than the
     * POST's (waiting for any such line let the test write the file back
     * while the SIGHUP's reload read it half written: a set without the
     * admin's token, and a 401 below under CI load). */
    unsigned failed_before = log_count("tokens_reload_failed");
    assert_int_equal(rdt_proc_signal(&proc, SIGHUP), 0);
    deadline = rdt_now_ms() + 10000;
    while (log_count("tokens_reload_failed") <= failed_before) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(20);
    }
    assert_int_equal(status_as(late, "/api/v1/nodes"), 200);
    proc.errors_expected = true;

    /* The original file back: t-late is gone. */
    assert_int_equal(write_file(tokens_path, orig), 0);
    rdt_bearer = secret[W_ADMIN];
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/policies/reload", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    assert_int_equal(status_as(late, "/api/v1/nodes"), 401);
    free(orig);
    rdt_bearer = NULL;
}

/* ---- client certificates ------------------------------------------------------ */

static int openssl(char **argv)
{
    char *err = NULL;
    int rc = rdt_run(argv, 30000, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "openssl %s failed: %s\n", argv[1], err ? err : "");
    free(err);
    return rc;
}

/* A key and a certificate for CN=`cn` signed by ca.pem/ca.key in `dir`
 * (self-signed when `ca` is NULL). */
static int make_cert(const char *dir, const char *name, const char *cn, const char *ca_name,
                     const char *san)
{
    char key[400], csr[400], crt[400], subj[200], cacrt[400], cakey[400], ext[400];
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    snprintf(csr, sizeof(csr), "%s/%s.csr", dir, name);
    snprintf(crt, sizeof(crt), "%s/%s.pem", dir, name);
    snprintf(subj, sizeof(subj), "/CN=%s", cn);
    if (ca_name == NULL) {
        char *argv[] = {"/usr/bin/openssl",
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-nodes",
                        "-keyout",
                        key,
                        "-out",
                        crt,
                        "-days",
                        "2",
                        "-subj",
                        subj,
                        NULL};
        return openssl(argv);
    }
    snprintf(cacrt, sizeof(cacrt), "%s/%s.pem", dir, ca_name);
    snprintf(cakey, sizeof(cakey), "%s/%s.key", dir, ca_name);
    char *req[] = {"/usr/bin/openssl",
                   "req",
                   "-new",
                   "-newkey",
                   "ec",
                   "-pkeyopt",
                   "ec_paramgen_curve:P-256",
                   "-nodes",
                   "-keyout",
                   key,
                   "-out",
                   csr,
                   "-subj",
                   subj,
                   NULL};
    if (openssl(req) != 0)
        return -1;
    snprintf(ext, sizeof(ext), "%s/%s.ext", dir, name);
    char extline[128];
    snprintf(extline, sizeof(extline), "%s\n", san ? san : "basicConstraints=CA:FALSE");
    if (write_file(ext, extline) != 0)
        return -1;
    char *sign[] = {
        "/usr/bin/openssl", "x509", "-req", "-in",   csr, "-CA",      cacrt, "-CAkey", cakey,
        "-CAcreateserial",  "-out", crt,    "-days", "2", "-extfile", ext,   NULL};
    return openssl(sign);
}

static void test_client_certificates(void **state)
{
    (void)state;
    struct rdt_proc tp = {0};
    assert_int_equal(rdt_proc_prepare(&tp), 0);
    const char *d = tp.dir;
    assert_int_equal(make_cert(d, "ca", "test CA", NULL, NULL), 0);
    assert_int_equal(make_cert(d, "other-ca", "other CA", NULL, NULL), 0);
    assert_int_equal(make_cert(d, "server", "127.0.0.1", "ca", "subjectAltName=IP:127.0.0.1"), 0);
    assert_int_equal(make_cert(d, "ops", "ops.example", "ca", NULL), 0);
    assert_int_equal(make_cert(d, "viewer", "viewer.example", "ca", NULL), 0);
    assert_int_equal(make_cert(d, "stranger", "stranger.example", "ca", NULL), 0);
    assert_int_equal(make_cert(d, "forged", "ops.example", "other-ca", NULL), 0);
    char yaml[2048], ca[400], cert[400], key[400];
    snprintf(ca, sizeof(ca), "%s/ca.pem", d);
    snprintf(yaml, sizeof(yaml),
             "server:\n  tls:\n    cert: %s/server.pem\n    key: %s/server.key\n"
             "security:\n  client_ca: %s\n  client_certs:\n"
             "    - subject: ops.example\n      principal: ops-team\n      role: operator\n"
             "    - subject: viewer.example\n      role: reader\n",
             d, d, ca);
    rdt_tls_ca = ca;
    snprintf(tp.base_url, sizeof(tp.base_url), "https://127.0.0.1:%u", (unsigned)tp.port);
    assert_int_equal(rdt_proc_start(&tp, yaml), 0);
    assert_int_equal(rdt_wait_ready(&tp, 15000), 0);

    struct rdt_resp r = {0};
    /* No certificate, no token: 401. */
    assert_int_equal(rdt_get(&tp, RDT_H2, "/api/v1/nodes", &r), 0);
    assert_int_equal(r.status, 401);
    rdt_resp_free(&r);

    /* The operator's certificate. */
    snprintf(cert, sizeof(cert), "%s/ops.pem", d);
    snprintf(key, sizeof(key), "%s/ops.key", d);
    rdt_client_cert = cert;
    rdt_client_key = key;
    for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
        assert_int_equal(rdt_get(&tp, (enum rdt_proto)proto, "/api/v1/nodes", &r), 0);
        assert_int_equal(r.status, 200);
        rdt_resp_free(&r);
    }
    assert_int_equal(rdt_post(&tp, RDT_H2, "/api/v1/nodes/nobody/isolate", "{}", &r), 0);
    assert_int_equal(r.status, 404); /* past the access check */
    rdt_resp_free(&r);
    assert_int_equal(rdt_delete(&tp, RDT_H2, "/api/v1/nodes/nobody", &r), 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.principal")),
                        "ops-team");
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.required_role")),
                        "admin");
    rdt_resp_free(&r);

    /* A reader's certificate (principal "cn:viewer.example"). */
    snprintf(cert, sizeof(cert), "%s/viewer.pem", d);
    snprintf(key, sizeof(key), "%s/viewer.key", d);
    assert_int_equal(rdt_post(&tp, RDT_H1, "/api/v1/nodes/nobody/isolate", "{}", &r), 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.principal")),
                        "cn:viewer.example");
    rdt_resp_free(&r);

    /* Signed by the CA but not mapped: 401. */
    snprintf(cert, sizeof(cert), "%s/stranger.pem", d);
    snprintf(key, sizeof(key), "%s/stranger.key", d);
    assert_int_equal(rdt_get(&tp, RDT_H1, "/api/v1/nodes", &r), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(
        strstr(json_string_value(rdt_json_path(r.json, "error.message")), "stranger.example"));
    rdt_resp_free(&r);

    /* The right name from another CA: no TLS session at all. */
    snprintf(cert, sizeof(cert), "%s/forged.pem", d);
    snprintf(key, sizeof(key), "%s/forged.key", d);
    rdt_get(&tp, RDT_H1, "/api/v1/nodes", &r);
    assert_int_equal(r.status, 0);
    rdt_resp_free(&r);

    rdt_client_cert = rdt_client_key = NULL;
    rdt_tls_ca = NULL;
    int code = -1;
    assert_int_equal(rdt_proc_stop(&tp, &code), 0);
    assert_int_equal(code, 0);
    rdt_proc_cleanup(&tp);
}

/* A broken token file is caught by --check-config and stops a start, both
 * naming its line. */
static void test_broken_token_file_at_start(void **state)
{
    (void)state;
    struct rdt_proc bp = {0};
    assert_int_equal(rdt_proc_prepare(&bp), 0);
    char tok[400], yaml[600], policies[400];
    snprintf(tok, sizeof(tok), "%s/tokens", bp.dir);
    assert_int_equal(write_file(tok, "# ok so far\nops operator sha256:1234\n"), 0);
    snprintf(yaml, sizeof(yaml), "security:\n  tokens_file: %s\n", tok);
    snprintf(policies, sizeof(policies), "%s/policies", RD_SOURCE_DIR);
    char where[420];
    snprintf(where, sizeof(where), "%s:2: hash of token ops", tok);

    assert_int_not_equal(rdt_proc_start(&bp, yaml), 0);
    assert_int_equal(bp.exit_code, 1);
    char *log = rdt_proc_log(&bp);
    if (strstr(log, where) == NULL)
        fail_msg("the start did not name %s:\n%s", where, log);
    free(log);

    char *argv[] = {RD_BINARY,        "--check-config", "--config",
                    bp.config_path,   "--plugins-dir",  (char *)rdt_plugins_dir(),
                    "--policies-dir", policies,         NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(rdt_run(argv, 20000, &out, &err), 1);
    if (err == NULL || strstr(err, where) == NULL)
        fail_msg("--check-config did not name %s: %s", where, err ? err : "");
    free(out);
    free(err);
    bp.errors_expected = true;
    rdt_proc_cleanup(&bp);
}

/* ---- replicas ---------------------------------------------------------------------- */

/* The leader asks every replica for its digest with the peer token: a
 * consistency check on three authenticated replicas hears all three. */
static void test_replicas_use_the_peer_token(void **state)
{
    (void)state;
    char dir[256], tok[300], peer[300], peer_secret[80], ops[80];
    assert_int_equal(rdt_tmpdir(dir, sizeof(dir)), 0);
    snprintf(tok, sizeof(tok), "%s/tokens", dir);
    snprintf(peer, sizeof(peer), "%s/peer", dir);
    FILE *f = fopen(tok, "w");
    assert_non_null(f);
    assert_int_equal(
        make_token("replicas", "admin", NULL, NULL, peer_secret, sizeof(peer_secret), f), 0);
    assert_int_equal(make_token("ops", "operator", NULL, NULL, ops, sizeof(ops), f), 0);
    fclose(f);
    char line[100];
    snprintf(line, sizeof(line), "%s\n", peer_secret);
    assert_int_equal(write_file(peer, line), 0);
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "security:\n  tokens_file: %s\n  peer_token_file: %s\n"
             "fault_tolerance:\n  backup:\n    consistency_check_interval: 1h\n",
             tok, peer);
    static struct rdt_cluster cl;
    memset(&cl, 0, sizeof(cl));
    rdt_bearer = ops;
    assert_int_equal(rdt_cluster_start(&cl, 3, yaml, NULL), 0);
    int first = 0;
    struct rdt_resp r = {0};
    assert_int_equal(
        rdt_cluster_request(&cl, &first, "POST", "/api/v1/consistency/check", NULL, 10000, &r), 0);
    assert_int_equal(r.status, 202);
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/consistency/checks/%s",
             json_string_value(json_object_get(r.json, "check_id")));
    rdt_resp_free(&r);
    int64_t until = rdt_now_ms() + 20000;
    const char *st = "pending";
    for (;;) {
        assert_int_equal(rdt_cluster_request(&cl, &first, "GET", path, NULL, 5000, &r), 0);
        st = json_string_value(json_object_get(r.json, "status"));
        if (st != NULL && strcmp(st, "pending") != 0)
            break;
        rdt_resp_free(&r);
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(50);
    }
    if (strcmp(st, "consistent") != 0 || json_object_size(json_object_get(r.json, "digests")) != 3)
        fail_msg("check answered %s", r.body);
    rdt_resp_free(&r);
    rdt_bearer = NULL;
    rdt_cluster_cleanup(&cl);
    rdt_rmtree(dir);
}

/* ---- safe by default ------------------------------------------------------------ */

static void test_open_non_loopback_refused(void **state)
{
    (void)state;
    struct rdt_proc op = {0};
    /* The daemon checks before it binds: nothing listens on 0.0.0.0. */
    snprintf(op.host, sizeof(op.host), "0.0.0.0");
    assert_int_equal(rdt_proc_prepare(&op), 0);
    assert_int_not_equal(rdt_proc_start(&op, "security:\n  metrics_open: true\n"), 0);
    assert_int_equal(op.exit_code, 1);
    char *log = rdt_proc_log(&op);
    assert_non_null(strstr(log, "not a loopback address and the API has no authentication"));
    assert_non_null(strstr(log, "security.allow_unauthenticated"));
    free(log);
    op.errors_expected = true;
    rdt_proc_cleanup(&op);

    /* On loopback it starts, with one warning. */
    struct rdt_proc lo = {0};
    assert_int_equal(rdt_proc_start(&lo, NULL), 0);
    log = rdt_proc_log(&lo);
    const char *w = strstr(log, "event=unauthenticated");
    assert_non_null(w);
    assert_null(strstr(w + 1, "event=unauthenticated"));
    assert_non_null(strstr(log, "level=warn"));
    free(log);
    rdt_proc_cleanup(&lo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_every_role),
        cmocka_unit_test(test_denied_isolate_changes_nothing),
        cmocka_unit_test(test_whoami),
        cmocka_unit_test(test_agent_cannot_act_for_another_node),
        cmocka_unit_test(test_401_kinds_and_request_id),
        cmocka_unit_test(test_unmatched_and_debug_paths),
        cmocka_unit_test(test_json_required_on_bodies),
        cmocka_unit_test(test_token_reload),
        cmocka_unit_test(test_client_certificates),
        cmocka_unit_test(test_broken_token_file_at_start),
        cmocka_unit_test(test_open_non_loopback_refused),
        cmocka_unit_test(test_replicas_use_the_peer_token),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
