/*
 * recoveryctl (api/c/recoveryctl) through real processes: the built CLI run
 * against real daemons on loopback. Every command family once with --json
 * parsed and checked, tables, colour, --watch, exit codes, bad input,
 * unreachable endpoints, the config file, bearer tokens, a CA file, and failover between replicas
 * (a dead first endpoint, a follower's 307, a killed leader).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"

#ifndef RD_RECOVERYCTL
#error "RD_RECOVERYCTL (path of the built recoveryctl) must be defined"
#endif

#define RUN_MS 30000

/* Slow heartbeats: the agents registered here stay alive for the whole test. */
static const char *const base_yaml = "fault_tolerance:\n"
                                     "  detection:\n"
                                     "    heartbeat_interval: 30s\n";

struct run {
    int code;
    char *out, *err;
    json_t *json; /* stdout parsed, when it is JSON */
};

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* Runs recoveryctl with the arguments (NULL-terminated); stdout parsed as JSON when it is. */
static struct run ctl(const char *first, ...)
{
    char *argv[64] = {(char *)RD_RECOVERYCTL};
    int n = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 63; a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    struct run r = {0};
    r.code = rdt_run(argv, RUN_MS, &r.out, &r.err);
    if (r.out != NULL)
        r.json = json_loads(r.out, JSON_DECODE_ANY, NULL);
    return r;
}

/* Fails with what the run printed unless it exited `want`. */
static void expect_code(const struct run *r, int want, const char *what)
{
    if (r->code != want)
        fail_msg("recoveryctl %s: exit %d, want %d\nstdout: %.3000s\nstderr: %.3000s", what,
                 r->code, want, r->out ? r->out : "", r->err ? r->err : "");
}

static void expect_in(const char *hay, const char *needle, const char *what)
{
    if (hay == NULL || strstr(hay, needle) == NULL)
        fail_msg("%s: '%s' not in:\n%.3000s", what, needle, hay ? hay : "(nothing)");
}

/* The first item of doc.items whose `key` is `value`, or NULL. */
static json_t *find_item(json_t *doc, const char *key, const char *value)
{
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(doc, "items"), i, it)
    {
        const char *v = json_string_value(json_object_get(it, key));
        if (v != NULL && strcmp(v, value) == 0)
            return it;
    }
    return NULL;
}

static const char *jstr(json_t *o, const char *dotted)
{
    return json_string_value(rdt_json_path(o, dotted));
}

/* The line of `text` that starts with `prefix` (a table row), copied into `buf`. */
static const char *line_starting(const char *text, const char *prefix, char *buf, size_t len)
{
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, prefix, strlen(prefix)) == 0) {
            size_t l = strcspn(p, "\n");
            snprintf(buf, len, "%.*s", (int)l, p);
            return buf;
        }
    }
    return NULL;
}

/* ---- without an engine ------------------------------------------------------------ */

static void test_usage_and_bad_input(void **state)
{
    struct run r = ctl("frobnicate", NULL);
    expect_code(&r, 2, "frobnicate");
    expect_in(r.err, "unknown command 'frobnicate'", "unknown command");
    run_free(&r);

    r = ctl("nodes", "list", "--bogus", NULL);
    expect_code(&r, 2, "--bogus");
    expect_in(r.err, "unknown option --bogus", "bad flag");
    run_free(&r);

    r = ctl("nodes", "explode", NULL);
    expect_code(&r, 2, "nodes explode");
    expect_in(r.err, "unknown subcommand 'explode'", "bad subcommand");
    run_free(&r);

    r = ctl("tasks", "get", NULL);
    expect_code(&r, 2, "tasks get");
    expect_in(r.err, "tasks get TASK", "missing argument");
    run_free(&r);

    r = ctl("nodes", "list", "--limit", "0", NULL);
    expect_code(&r, 2, "--limit 0");
    expect_in(r.err, "--limit: expected a whole number from 1 to 1000, got '0'", "bad value");
    run_free(&r);

    r = ctl("nodes", "list", "--payload", "{}", NULL);
    expect_code(&r, 2, "an option of another command");
    expect_in(r.err, "nodes list: --payload does not apply", "option of another command");
    run_free(&r);

    r = ctl("conflicts", "list", "--resolution", "keep_both", NULL);
    expect_code(&r, 2, "--resolution keep_both");
    expect_in(r.err,
              "--resolution: expected keep_newer, keep_progress or fail_task, got 'keep_both'",
              "bad resolution");
    run_free(&r);

    r = ctl("nodes", "get", "x", "--watch", NULL);
    expect_code(&r, 2, "get --watch");
    expect_in(r.err, "--watch is for status and lists", "watch on a get");
    run_free(&r);

    r = ctl("--endpoints", "ftp://x", "status", NULL);
    expect_code(&r, 2, "bad endpoint");
    expect_in(r.err, "'ftp://x' is not a base URL", "bad endpoint");
    run_free(&r);

    r = ctl("--help", NULL);
    expect_code(&r, 0, "--help");
    expect_in(r.out, "exit codes: 0 ok, 1 error, 2 usage, 3 not found", "help");
    run_free(&r);

    r = ctl(NULL, NULL);
    expect_code(&r, 2, "no command");
    run_free(&r);
}

/* Nothing listens: a clear error and exit 4, at once (connection refused). */
static void test_unreachable(void **state)
{
    uint16_t a, b;
    assert_int_equal(rdt_free_ports(&a, &b), 0);
    char eps[128];
    snprintf(eps, sizeof eps, "http://127.0.0.1:%u,http://127.0.0.1:%u", a, b);
    int64_t t0 = rdt_now_ms();
    struct run r = ctl("--endpoints", eps, "nodes", "list", NULL);
    expect_code(&r, 4, "unreachable");
    expect_in(r.err, "no endpoint answered (2 tried", "unreachable");
    expect_in(r.err, "check --endpoints", "unreachable hint");
    assert_true(rdt_now_ms() - t0 < rdt_ms(5000));
    run_free(&r);
}

/* ---- one engine: every command family ------------------------------------------------ */

static struct rdt_proc g_p;
static char g_backup_dir[300];

static int engine_setup(void **state)
{
    memset(&g_p, 0, sizeof g_p);
    if (rdt_proc_prepare(&g_p) != 0)
        return -1;
    snprintf(g_backup_dir, sizeof g_backup_dir, "%s/backups", g_p.dir);
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "%s"
             "  backup:\n"
             "    archive: {target: \"\"}\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - {name: local, plugin: file, config: {dir: \"%s\"}}\n",
             base_yaml, g_backup_dir);
    if (rdt_proc_start(&g_p, yaml) != 0 || rdt_wait_ready(&g_p, rdt_ms(20000)) != 0)
        return -1;
    setenv("RECOVERYD_ENDPOINTS", g_p.base_url, 1);
    unsetenv("RECOVERYD_TOKEN");
    setenv("XDG_CONFIG_HOME", g_p.dir, 1); /* no client.yaml of the machine's */
    return 0;
}

static int engine_teardown(void **state)
{
    rdt_proc_cleanup(&g_p);
    unsetenv("RECOVERYD_ENDPOINTS");
    return 0;
}

static void test_status_and_nodes(void **state)
{
    assert_int_equal(rdt_register(&g_p, "ctl-a", 2, NULL), 0);
    assert_int_equal(rdt_register(&g_p, "ctl-b", 1, NULL), 0);

    struct run r = ctl("status", "--json", NULL);
    expect_code(&r, 0, "status --json");
    assert_non_null(r.json);
    assert_true(json_is_true(rdt_json_path(r.json, "quorum.has_quorum")));
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "agents.alive")), 2);
    assert_true(json_is_object(rdt_json_path(r.json, "faults")));
    run_free(&r);

    r = ctl("status", NULL);
    expect_code(&r, 0, "status");
    expect_in(r.out, "Agents       2: 2 alive", "status agents");
    expect_in(r.out, "leader 1", "status leader");
    assert_null(strchr(r.out, '\033')); /* not a terminal: no colour */
    run_free(&r);

    r = ctl("nodes", "list", "--json", NULL);
    expect_code(&r, 0, "nodes list --json");
    json_t *a = find_item(r.json, "node_id", "ctl-a");
    assert_non_null(a);
    assert_string_equal(jstr(a, "state"), "alive");
    assert_int_equal(json_integer_value(rdt_json_path(a, "capacity.slots")), 2);
    run_free(&r);

    /* The table: a header, one row per agent, columns aligned. */
    r = ctl("nodes", "list", NULL);
    expect_code(&r, 0, "nodes list");
    char head[512], row[512];
    assert_non_null(line_starting(r.out, "NODE", head, sizeof head));
    assert_non_null(line_starting(r.out, "ctl-a", row, sizeof row));
    const char *cols[] = {"STATE", "EPOCH", "SLOTS", "TASKS"};
    const char *vals[] = {"alive", "1", "0/2", "0"};
    for (int i = 0; i < 4; i++) {
        size_t at = (size_t)(strstr(head, cols[i]) - head);
        if (strncmp(row + at, vals[i], strlen(vals[i])) != 0)
            fail_msg("column %s not aligned:\n%s\n%s", cols[i], head, row);
    }
    run_free(&r);

    r = ctl("nodes", "get", "ctl-a", "--json", NULL);
    expect_code(&r, 0, "nodes get");
    assert_string_equal(jstr(r.json, "node_id"), "ctl-a");
    run_free(&r);

    r = ctl("nodes", "get", "ctl-a", NULL);
    expect_code(&r, 0, "nodes get (fields)");
    expect_in(r.out, "registered_at", "fields");
    expect_in(r.out, "s ago)", "relative time");
    run_free(&r);

    r = ctl("nodes", "get", "no-such-node", NULL);
    expect_code(&r, 3, "nodes get missing");
    expect_in(r.err, "node no-such-node is not registered (not_found)", "not found");
    run_free(&r);

    /* drain, readmit, isolate (a manual fault), readmit, remove. */
    r = ctl("nodes", "drain", "ctl-b", "--reason", "test", "--json", NULL);
    expect_code(&r, 0, "drain");
    assert_string_equal(jstr(r.json, "state"), "draining");
    run_free(&r);
    r = ctl("nodes", "readmit", "ctl-b", "--json", NULL);
    expect_code(&r, 0, "readmit");
    assert_string_equal(jstr(r.json, "state"), "probation");
    run_free(&r);
    r = ctl("nodes", "isolate", "ctl-b", "--reason", "bad disk", NULL);
    expect_code(&r, 0, "isolate");
    expect_in(r.out, "ctl-b: isolated", "isolate output");
    run_free(&r);
    r = ctl("nodes", "drain", "ctl-b", NULL);
    expect_code(&r, 6, "drain an isolated node");
    expect_in(r.err, "(conflict)", "conflict");
    run_free(&r);

    r = ctl("faults", "list", "--node", "ctl-b", "--json", NULL);
    expect_code(&r, 0, "faults list");
    json_t *f = find_item(r.json, "fault_type", "manual");
    assert_non_null(f);
    char fid[64];
    snprintf(fid, sizeof fid, "%s", jstr(f, "id"));
    run_free(&r);
    r = ctl("faults", "get", fid, "--json", NULL);
    expect_code(&r, 0, "faults get");
    assert_string_equal(jstr(r.json, "node_id"), "ctl-b");
    run_free(&r);
    r = ctl("faults", "list", NULL);
    expect_code(&r, 0, "faults list table");
    assert_non_null(line_starting(r.out, fid, row, sizeof row));
    expect_in(row, "manual", "fault row");
    run_free(&r);

    r = ctl("nodes", "readmit", "ctl-b", NULL);
    expect_code(&r, 0, "readmit isolated");
    run_free(&r);
    r = ctl("nodes", "remove", "ctl-b", "--json", NULL);
    expect_code(&r, 0, "remove");
    assert_string_equal(jstr(r.json, "state"), "left");
    run_free(&r);
}

static void test_tasks_and_recoveries(void **state)
{
    assert_int_equal(rdt_register(&g_p, "ctl-t", 4, NULL), 0);
    struct run r = ctl("tasks", "submit", "--payload", "{\"job\":\"x\"}", "--priority", "8",
                       "--critical", "--label", "zone=a", "--json", NULL);
    expect_code(&r, 0, "tasks submit");
    char tid[64];
    snprintf(tid, sizeof tid, "%s", jstr(r.json, "task_id"));
    assert_int_equal(strlen(tid), 36);
    assert_int_equal(json_integer_value(json_object_get(r.json, "priority")), 8);
    assert_true(json_is_true(json_object_get(r.json, "critical")));
    assert_string_equal(jstr(r.json, "payload.job"), "x");
    assert_string_equal(jstr(r.json, "requirements.labels.zone"), "a");
    run_free(&r);

    /* The same task id again: the engine answers the task, unchanged. */
    r = ctl("tasks", "submit", "--task-id", tid, NULL);
    expect_code(&r, 0, "submit again");
    expect_in(r.out, "exists already", "idempotent submit");
    run_free(&r);

    r = ctl("tasks", "submit", "--payload", "{nope", NULL);
    expect_code(&r, 2, "bad payload");
    expect_in(r.err, "--payload: not JSON", "bad payload");
    run_free(&r);

    r = ctl("tasks", "get", tid, "--json", NULL);
    expect_code(&r, 0, "tasks get");
    assert_string_equal(jstr(r.json, "task_id"), tid);
    run_free(&r);

    r = ctl("tasks", "list", "--json", NULL);
    expect_code(&r, 0, "tasks list");
    assert_non_null(find_item(r.json, "task_id", tid));
    run_free(&r);

    r = ctl("tasks", "list", NULL);
    expect_code(&r, 0, "tasks list table");
    char row[512];
    assert_non_null(line_starting(r.out, tid, row, sizeof row));
    expect_in(row, "8!", "priority and critical");
    run_free(&r);

    /* Paging: one page of one, the cursor of the next said; --all has them all. */
    r = ctl("tasks", "submit", NULL);
    expect_code(&r, 0, "a second task");
    run_free(&r);
    r = ctl("tasks", "list", "--limit", "1", "--json", NULL);
    expect_code(&r, 0, "a page of one");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_non_null(jstr(r.json, "next_cursor"));
    run_free(&r);
    r = ctl("tasks", "list", "--limit", "1", NULL);
    expect_code(&r, 0, "a page of one, as a table");
    expect_in(r.err, "(more: --cursor ", "next page hint");
    run_free(&r);
    r = ctl("tasks", "list", "--limit", "1", "--all", "--json", NULL);
    expect_code(&r, 0, "--all");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 2);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    run_free(&r);
    r = ctl("tasks", "list", "--all", "--cursor", "x", NULL);
    expect_code(&r, 2, "--all with --cursor");
    run_free(&r);

    r = ctl("tasks", "get", "00000000-0000-4000-8000-000000000000", NULL);
    expect_code(&r, 3, "tasks get missing");
    run_free(&r);

    /* List filters: priority and one label, combined with the state. */
    r = ctl("tasks", "list", "--priority", "8", "--label", "zone=a", "--json", NULL);
    expect_code(&r, 0, "tasks list --priority --label");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_non_null(find_item(r.json, "task_id", tid));
    run_free(&r);
    r = ctl("tasks", "list", "--label", "zone=b", "--json", NULL);
    expect_code(&r, 0, "tasks list --label none");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    run_free(&r);
    r = ctl("tasks", "list", "--label", "zone=a", "--label", "x=y", NULL);
    expect_code(&r, 2, "two labels");
    expect_in(r.err, "one --label at a time", "two labels");
    run_free(&r);
    r = ctl("tasks", "list", "--priority", "11", NULL);
    expect_code(&r, 2, "a bad priority");
    run_free(&r);

    /* Retry: only a failed task; cancel: a finished one is a conflict. */
    r = ctl("tasks", "retry", tid, NULL);
    expect_code(&r, 6, "retry a task that did not fail");
    expect_in(r.err, "only a failed task", "retry refused");
    run_free(&r);
    r = ctl("tasks", "cancel", tid, "--reason", "no longer needed", "--json", NULL);
    expect_code(&r, 0, "tasks cancel");
    assert_string_equal(jstr(r.json, "state"), "cancelled");
    expect_in(jstr(r.json, "error"), "no longer needed", "the reason kept");
    run_free(&r);
    r = ctl("tasks", "cancel", tid, NULL);
    expect_code(&r, 6, "cancel twice");
    expect_in(r.err, "already cancelled", "cancel twice");
    run_free(&r);
    r = ctl("tasks", "cancel", "00000000-0000-4000-8000-000000000000", NULL);
    expect_code(&r, 3, "cancel a missing task");
    run_free(&r);
    r = ctl("tasks", "retry", "00000000-0000-4000-8000-000000000000", NULL);
    expect_code(&r, 3, "retry a missing task");
    run_free(&r);
    /* A task that failed for good is retried: pending again on a new attempt. */
    r = ctl("tasks", "submit", "--label", "zone=nowhere", "--deadline", "2000-01-01T00:00:00Z",
            "--json", NULL);
    expect_code(&r, 0, "a task due long ago");
    char late[64];
    snprintf(late, sizeof late, "%s", jstr(r.json, "task_id"));
    run_free(&r);
    int64_t until = rdt_now_ms() + 10000;
    for (;;) {
        r = ctl("tasks", "get", late, "--json", NULL);
        bool failed = r.json && strcmp(jstr(r.json, "state"), "failed") == 0;
        run_free(&r);
        if (failed)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(20);
    }
    r = ctl("tasks", "retry", late, NULL);
    expect_code(&r, 0, "tasks retry");
    expect_in(r.out, "pending", "retried");
    run_free(&r);
    r = ctl("tasks", "submit", "--deadline", "tomorrow", NULL);
    expect_code(&r, 1, "a bad deadline");
    expect_in(r.err, "deadline", "a bad deadline");
    run_free(&r);

    /* A recovery run of the agent holding the task. */
    r = ctl("recoveries", "trigger", "ctl-t", "--json", NULL);
    expect_code(&r, 0, "recoveries trigger");
    char rid[64];
    snprintf(rid, sizeof rid, "%s", jstr(r.json, "recovery_id"));
    assert_int_equal(strlen(rid), 36);
    run_free(&r);
    r = ctl("recoveries", "get", rid, "--json", NULL);
    expect_code(&r, 0, "recoveries get");
    assert_string_equal(jstr(r.json, "node_id"), "ctl-t");
    run_free(&r);
    r = ctl("recoveries", "list", "--json", NULL);
    expect_code(&r, 0, "recoveries list");
    assert_non_null(find_item(r.json, "recovery_id", rid));
    run_free(&r);
    r = ctl("recoveries", "list", NULL);
    expect_code(&r, 0, "recoveries list table");
    assert_non_null(line_starting(r.out, rid, row, sizeof row));
    expect_in(row, "ctl-t", "recovery row");
    run_free(&r);
    r = ctl("recoveries", "trigger", "nobody", NULL);
    expect_code(&r, 3, "trigger on a missing node");
    run_free(&r);
}

static void test_backups_and_restore(void **state)
{
    struct run r = ctl("backups", "create", "--wait", "--json", NULL);
    expect_code(&r, 0, "backups create --wait");
    assert_true(json_is_array(r.json));
    json_t *b = json_array_get(r.json, 0);
    assert_string_equal(jstr(b, "status"), "completed");
    char bid[64];
    snprintf(bid, sizeof bid, "%s", jstr(b, "backup_id"));
    expect_in(r.err, "100%", "progress bar");
    expect_in(r.err, "/s", "progress rate");
    run_free(&r);

    r = ctl("backups", "list", "--json", NULL);
    expect_code(&r, 0, "backups list");
    assert_non_null(find_item(r.json, "backup_id", bid));
    run_free(&r);
    r = ctl("backups", "get", bid, "--json", NULL);
    expect_code(&r, 0, "backups get");
    assert_string_equal(jstr(r.json, "target"), "local");
    run_free(&r);

    r = ctl("backups", "verify", bid, "--json", NULL);
    expect_code(&r, 0, "backups verify");
    assert_true(json_is_true(json_object_get(r.json, "verified")));
    expect_in(r.err, "verified", "verify progress");
    run_free(&r);

    r = ctl("backups", "list", NULL);
    expect_code(&r, 0, "backups list table");
    char row[512];
    assert_non_null(line_starting(r.out, bid, row, sizeof row));
    expect_in(row, "completed", "backup row");
    expect_in(row, "ok", "verified column");
    run_free(&r);

    r = ctl("status", "--json", NULL);
    expect_code(&r, 0, "status after a backup");
    assert_string_equal(jstr(r.json, "last_backup.backup_id"), bid);
    run_free(&r);

    /* restore wraps `recoveryd restore`. */
    char url[400], fresh[400];
    snprintf(url, sizeof url, "file://%s", g_backup_dir);
    snprintf(fresh, sizeof fresh, "%s/restored", g_p.dir);
    setenv("RECOVERYD_BIN", RD_BINARY, 1);
    r = ctl("restore", "--from", url, "--data-dir", fresh, "--backup", bid, "--plugins-dir",
            rdt_plugins_dir(), NULL);
    expect_code(&r, 0, "restore");
    struct stat st;
    assert_int_equal(stat(fresh, &st), 0);
    run_free(&r);
    r = ctl("restore", "--from", url, NULL);
    expect_code(&r, 2, "restore without --data-dir");
    expect_in(r.err, "--data-dir", "restore usage passed through");
    run_free(&r);
    unsetenv("RECOVERYD_BIN");
}

static void test_cluster_policies_audit_consistency(void **state)
{
    struct run r = ctl("cluster", "replicas", "list", "--json", NULL);
    expect_code(&r, 0, "replicas list");
    json_t *self = json_array_get(json_object_get(r.json, "replicas"), 0);
    assert_true(json_is_true(json_object_get(self, "self")));
    assert_string_equal(jstr(self, "api_url"), g_p.base_url);
    run_free(&r);
    r = ctl("cluster", "replicas", "list", NULL);
    expect_code(&r, 0, "replicas table");
    expect_in(r.out, "1*", "self marked");
    run_free(&r);
    r = ctl("cluster", "replicas", "promote", "abc", NULL);
    expect_code(&r, 2, "promote a bad id");
    run_free(&r);
    r = ctl("cluster", "replicas", "remove", "9", NULL);
    expect_code(&r, 3, "remove a replica that is not a member");
    run_free(&r);

    r = ctl("policies", "reload", "--json", NULL);
    expect_code(&r, 0, "policies reload");
    assert_non_null(jstr(r.json, "policy_version"));
    run_free(&r);

    r = ctl("consistency", "check", "--json", NULL);
    expect_code(&r, 0, "consistency check");
    assert_string_equal(jstr(r.json, "status"), "consistent");
    char cid[64];
    snprintf(cid, sizeof cid, "%s", jstr(r.json, "check_id"));
    run_free(&r);
    r = ctl("consistency", "get", cid, NULL);
    expect_code(&r, 0, "consistency get");
    expect_in(r.out, "agrees", "verdict table");
    run_free(&r);

    /* Conflict records come from availability mode only (tests/integration/
     * test_conflicts.c, api/python/tests/test_partition.py): none here. */
    r = ctl("conflicts", "list", "--json", NULL);
    expect_code(&r, 0, "conflicts list");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    run_free(&r);
    r = ctl("conflicts", "list", "--resolution", "keep_progress", NULL);
    expect_code(&r, 0, "conflicts table");
    expect_in(r.out, "CONFLICT", "conflicts table header");
    run_free(&r);
    r = ctl("conflicts", "get", "0b7f3b9e-58a5-4a51-9d1c-3c1f1a6b2a10", NULL);
    expect_code(&r, 3, "conflicts get an unknown id");
    run_free(&r);

    r = ctl("audit", "--json", "--limit", "200", NULL);
    expect_code(&r, 0, "audit");
    json_t *rec = find_item(r.json, "action", "consistency_check");
    assert_non_null(rec);
    assert_int_equal(json_integer_value(rdt_json_path(rec, "outcome.status")), 202);
    assert_non_null(find_item(r.json, "action", "backup_trigger"));
    run_free(&r);
    r = ctl("audit", "--action", "consistency_check", NULL);
    expect_code(&r, 0, "audit table");
    expect_in(r.out, "consistency_check", "audit row");
    expect_in(r.out, "SEQ", "audit header");
    run_free(&r);
}

static void test_watch_color_config(void **state)
{
    /* --watch: refreshed --count times; with --json one compact document each. */
    struct run r = ctl("nodes", "list", "--watch", "--interval", "0.2", "--count", "3", NULL);
    expect_code(&r, 0, "watch");
    int n = 0;
    for (const char *p = r.out; (p = strstr(p, "Every 0.2s: recoveryctl nodes list")); p++)
        n++;
    assert_int_equal(n, 3);
    run_free(&r);
    r = ctl("status", "--watch", "--json", "--interval", "0.2", "--count", "2", NULL);
    expect_code(&r, 0, "watch json");
    char *nl = strchr(r.out, '\n');
    assert_non_null(nl);
    json_t *first = json_loadb(r.out, (size_t)(nl - r.out), 0, NULL);
    json_t *second = json_loads(nl + 1, 0, NULL);
    assert_non_null(first);
    assert_non_null(second);
    assert_non_null(json_object_get(second, "quorum"));
    json_decref(first);
    json_decref(second);
    run_free(&r);

    /* Colour: asked for, it is there; NO_COLOR does not stop --color always. */
    r = ctl("nodes", "list", "--color", "always", NULL);
    expect_code(&r, 0, "color always");
    expect_in(r.out, "\033[1mNODE", "bold header");
    run_free(&r);
    setenv("NO_COLOR", "1", 1);
    r = ctl("status", NULL);
    assert_null(strchr(r.out, '\033'));
    run_free(&r);
    unsetenv("NO_COLOR");

    /* The config file: endpoints from it when neither flag nor environment says. */
    char dir[400], path[450];
    snprintf(dir, sizeof dir, "%s/recoveryd", g_p.dir);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/client.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# recoveryctl's\nendpoints:\n  - %s\ntimeout: 3000\n", g_p.base_url);
    fclose(f);
    unsetenv("RECOVERYD_ENDPOINTS");
    r = ctl("nodes", "list", "--json", NULL);
    expect_code(&r, 0, "endpoints from the config file");
    assert_non_null(find_item(r.json, "node_id", "ctl-a"));
    run_free(&r);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "endpoints: %s\nendpiont: x\n", g_p.base_url);
    fclose(f);
    r = ctl("status", NULL);
    expect_code(&r, 2, "bad config key");
    expect_in(r.err, "client.yaml:2: unknown key 'endpiont'", "config error");
    run_free(&r);
    unlink(path);
    setenv("RECOVERYD_ENDPOINTS", g_p.base_url, 1);

    /* A dead first endpoint: the second answers. */
    uint16_t a, b;
    assert_int_equal(rdt_free_ports(&a, &b), 0);
    char eps[200];
    snprintf(eps, sizeof eps, "http://127.0.0.1:%u,%s", a, g_p.base_url);
    r = ctl("--endpoints", eps, "status", "--json", NULL);
    expect_code(&r, 0, "failover to the second endpoint");
    assert_true(json_is_true(rdt_json_path(r.json, "quorum.has_quorum")));
    run_free(&r);
}

/* ---- tokens ------------------------------------------------------------------------ */

/* `recoveryd token new --id ID --role ROLE`: the secret into `sec`, the line into `f`. */
static void make_token(const char *id, const char *role, char *sec, size_t len, FILE *f)
{
    char *const argv[] = {(char *)RD_BINARY, (char *)"token",  (char *)"new", (char *)"--id",
                          (char *)id,        (char *)"--role", (char *)role,  NULL};
    char *out = NULL;
    assert_int_equal(rdt_run(argv, 10000, &out, NULL), 0);
    const char *s = strstr(out, "secret: "), *l = strstr(out, "line:   ");
    assert_non_null(s);
    assert_non_null(l);
    snprintf(sec, len, "%.*s", (int)strcspn(s + 8, "\n"), s + 8);
    fprintf(f, "%.*s\n", (int)strcspn(l + 8, "\n"), l + 8);
    free(out);
}

/* Bearer tokens from --token, RECOVERYD_TOKEN and the config file's token_file;
 * 401 and 403 exit 5 and say which. */
static void test_tokens(void **state)
{
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_prepare(&p), 0);
    char tokens[400], reader[128], operator[128], yaml[1024];
    snprintf(tokens, sizeof tokens, "%s/tokens", p.dir);
    FILE *f = fopen(tokens, "w");
    assert_non_null(f);
    make_token("ctl-reader", "reader", reader, sizeof reader, f);
    make_token("ctl-operator", "operator", operator, sizeof operator, f);
    fclose(f);
    snprintf(yaml, sizeof yaml, "security:\n  tokens_file: %s\n%s", tokens, base_yaml);
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, rdt_ms(20000)), 0);
    setenv("RECOVERYD_ENDPOINTS", p.base_url, 1);

    struct run r = ctl("nodes", "list", NULL);
    expect_code(&r, 5, "no token");
    expect_in(r.err, "(unauthorized)", "401");
    run_free(&r);

    setenv("RECOVERYD_TOKEN", reader, 1);
    r = ctl("nodes", "list", "--json", NULL);
    expect_code(&r, 0, "reader token from the environment");
    run_free(&r);
    r = ctl("tasks", "submit", NULL);
    expect_code(&r, 5, "reader submits");
    expect_in(r.err, "(forbidden)", "403");
    run_free(&r);
    r = ctl("--token", operator, "tasks", "submit", "--json", NULL);
    expect_code(&r, 0, "--token wins over RECOVERYD_TOKEN");
    run_free(&r);
    unsetenv("RECOVERYD_TOKEN");

    /* token_file in the config file. */
    char cfg[450], secret_file[450];
    snprintf(secret_file, sizeof secret_file, "%s/operator.secret", p.dir);
    f = fopen(secret_file, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", operator);
    fclose(f);
    snprintf(cfg, sizeof cfg, "%s/client.yaml", p.dir);
    f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f, "endpoints: %s\ntoken_file: %s\n", p.base_url, secret_file);
    fclose(f);
    unsetenv("RECOVERYD_ENDPOINTS");
    r = ctl("--config", cfg, "tasks", "list", "--json", NULL);
    expect_code(&r, 0, "token_file of the config file");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    run_free(&r);
    rdt_proc_cleanup(&p);
}

/* ---- TLS ---------------------------------------------------------------------------- */

/* https:// with the engine's self-signed certificate: refused without the CA
 * (a clear error, exit 4), served with --cacert or RECOVERYD_CACERT. */
static void test_tls_cacert(void **state)
{
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_prepare(&p), 0);
    char cert[400], key[400];
    snprintf(cert, sizeof cert, "%s/cert.pem", p.dir);
    snprintf(key, sizeof key, "%s/key.pem", p.dir);
    char *const argv[] = {(char *)"/usr/bin/openssl",
                          (char *)"req",
                          (char *)"-x509",
                          (char *)"-newkey",
                          (char *)"ec",
                          (char *)"-pkeyopt",
                          (char *)"ec_paramgen_curve:P-256",
                          (char *)"-nodes",
                          (char *)"-keyout",
                          key,
                          (char *)"-out",
                          cert,
                          (char *)"-days",
                          (char *)"2",
                          (char *)"-subj",
                          (char *)"/CN=127.0.0.1",
                          (char *)"-addext",
                          (char *)"subjectAltName=IP:127.0.0.1",
                          NULL};
    assert_int_equal(rdt_run(argv, 30000, NULL, NULL), 0);
    rdt_tls_ca = cert;
    snprintf(p.base_url, sizeof p.base_url, "https://127.0.0.1:%u", (unsigned)p.port);
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "server:\n  tls:\n    cert: %s\n    key: %s\n", cert, key);
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, rdt_ms(20000)), 0);
    setenv("RECOVERYD_ENDPOINTS", p.base_url, 1);

    struct run r = ctl("nodes", "list", NULL);
    expect_code(&r, 4, "https without the CA");
    expect_in(r.err, "certificate", "TLS error named");
    run_free(&r);
    r = ctl("--cacert", cert, "status", "--json", NULL);
    expect_code(&r, 0, "--cacert");
    assert_true(json_is_true(rdt_json_path(r.json, "quorum.has_quorum")));
    run_free(&r);
    setenv("RECOVERYD_CACERT", cert, 1);
    r = ctl("tasks", "submit", "--json", NULL);
    expect_code(&r, 0, "RECOVERYD_CACERT");
    run_free(&r);
    unsetenv("RECOVERYD_CACERT");
    unsetenv("RECOVERYD_ENDPOINTS");
    rdt_tls_ca = NULL;
    rdt_proc_cleanup(&p);
}

/* ---- three replicas: 307 and a killed leader --------------------------------------- */

static void test_three_replicas_failover(void **state)
{
    struct rdt_cluster c = {0};
    char yaml[256];
    assert_int_equal(
        rdt_cluster_start(&c, 3, rdt_scale_durations(base_yaml, yaml, sizeof yaml), NULL), 0);
    int leader = rdt_cluster_leader(&c, rdt_ms(10000));
    assert_true(leader >= 0);
    int follower = (leader + 1) % 3;

    /* Only a follower listed: the write is redirected to the leader (307). */
    struct run r =
        ctl("--endpoints", c.procs[follower].base_url, "tasks", "submit", "--json", NULL);
    expect_code(&r, 0, "submit through a follower");
    assert_string_equal(jstr(r.json, "state"), "pending");
    run_free(&r);

    /* Roles: a follower demoted to standby and promoted back to voter. */
    char fid[16];
    snprintf(fid, sizeof fid, "%d", follower + 1);
    r = ctl("--endpoints", c.procs[follower].base_url, "cluster", "replicas", "promote", fid,
            "--role", "standby", "--json", NULL);
    expect_code(&r, 0, "demote to standby");
    json_t *rep;
    size_t i;
    bool seen = false;
    json_array_foreach(json_object_get(r.json, "replicas"), i, rep)
    {
        if (json_integer_value(json_object_get(rep, "id")) == follower + 1) {
            assert_string_equal(jstr(rep, "voter_role"), "standby");
            seen = true;
        }
    }
    assert_true(seen);
    run_free(&r);
    r = ctl("--endpoints", c.procs[leader].base_url, "cluster", "replicas", "promote", fid, NULL);
    expect_code(&r, 0, "promote back to voter");
    expect_in(r.out, "voter", "replicas table");
    run_free(&r);
    r = ctl("--endpoints", c.procs[leader].base_url, "cluster", "replicas", "promote", fid, NULL);
    expect_code(&r, 6, "promote a voter");
    run_free(&r);

    /* The leader killed: the other replicas elect another and answer. */
    char eps[512];
    snprintf(eps, sizeof eps, "%s,%s,%s", c.procs[leader].base_url,
             c.procs[(leader + 1) % 3].base_url, c.procs[(leader + 2) % 3].base_url);
    assert_int_equal(rdt_proc_kill9(&c.procs[leader]), 0);
    r = ctl("--endpoints", eps, "--timeout", "2000", "tasks", "list", "--json", NULL);
    expect_code(&r, 0, "list after the leader died");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    run_free(&r);
    r = ctl("--endpoints", eps, "cluster", "replicas", "list", "--json", NULL);
    expect_code(&r, 0, "replicas after the leader died");
    assert_true(json_integer_value(json_object_get(r.json, "leader")) != leader + 1);
    run_free(&r);

    /* One replica left: no quorum, and status still says what it knows. */
    int last = (leader + 2) % 3;
    assert_int_equal(rdt_proc_kill9(&c.procs[(leader + 1) % 3]), 0);
    int64_t end = rdt_now_ms() + rdt_ms(15000);
    for (;;) {
        r = ctl("--endpoints", c.procs[last].base_url, "status", "--json", NULL);
        expect_code(&r, 0, "status without a quorum");
        if (!json_is_true(rdt_json_path(r.json, "quorum.has_quorum")))
            break;
        if (rdt_now_ms() > end)
            fail_msg("the last replica still reports a quorum:\n%s", r.out);
        run_free(&r);
        rdt_sleep_ms(200);
    }
    assert_string_equal(jstr(r.json, "overall_health"), "critical");
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "agents.alive")), 0);
    run_free(&r);
    rdt_cluster_cleanup(&c);
}

int main(void)
{
    const struct CMUnitTest alone[] = {
        cmocka_unit_test(test_usage_and_bad_input),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_tls_cacert),
        cmocka_unit_test(test_three_replicas_failover),
    };
    const struct CMUnitTest engine[] = {
        cmocka_unit_test(test_status_and_nodes),
        cmocka_unit_test(test_tasks_and_recoveries),
        cmocka_unit_test(test_backups_and_restore),
        cmocka_unit_test(test_cluster_policies_audit_consistency),
        cmocka_unit_test(test_watch_color_config),
    };
    setenv("XDG_CONFIG_HOME", "/nonexistent", 1);
    unsetenv("RECOVERYD_ENDPOINTS");
    unsetenv("NO_COLOR");
    int failed = cmocka_run_group_tests_name("recoveryctl", alone, NULL, NULL);
    failed +=
        cmocka_run_group_tests_name("recoveryctl_engine", engine, engine_setup, engine_teardown);
    return failed;
}
