/*
 * Records in PostgreSQL (docs/records.md) against a real PostgreSQL server
 * this test starts (tests/lib/rdt_pg.h: Debian's postgresql, initdb and
 * postgres on a private socket directory) and real recoveryd processes:
 *
 * - the rows, in the requirement's exact shape, hold what the API shows
 *   (fault_records, task_recovery, audit_log), and a record's later change
 *   (a fault resolved) updates its row;
 * - PostgreSQL stopped while records keep coming, then started again: the
 *   engine kept answering, and every record is in PostgreSQL once, none
 *   missing (the ids compared with the API's);
 * - PostgreSQL hung (SIGSTOP): the loop keeps answering heartbeats quickly,
 *   the stuck statement times out, and everything is exported after
 *   SIGCONT;
 * - migrations on an empty schema and on one holding only 001 (its rows
 *   kept); a schema newer than the engine knows is refused;
 * - a 3-replica cluster whose leader is killed mid-export: the new leader
 *   resumes from PostgreSQL's position, no gap, no duplicate;
 * - bad config values are errors naming the key.
 *
 * Without the package (no initdb) the test says so and exits 77 (skipped).
 */
#include "cmocka_all.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"
#include "rdt_pg.h"
#include "rdt_server.h"

static long long count(PGconn *c, const char *sql)
{
    return atoll(rdt_pg_query(c, sql));
}

/* ---- the daemon ------------------------------------------------------------------------ */

static const char *yaml_conninfo(const char *schema, unsigned batch, const char *ci);

static const char *yaml_for(const char *schema, unsigned batch)
{
    return yaml_conninfo(schema, batch, conninfo);
}

static const char *yaml_conninfo(const char *schema, unsigned batch, const char *ci)
{
    static char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "fault_tolerance:\n"
             "  detection:\n"
             "    heartbeat_interval: 30s\n" /* nobody turns suspect meanwhile */
             "  partition:\n"
             "    min_nodes: 100000\n"
             "  records:\n"
             "    export: true\n"
             "    conninfo: \"%s\"\n"
             "    schema: %s\n"
             "    batch_size: %u\n"
             "    interval: 20ms\n"
             "    timeout: 2s\n",
             ci, schema, batch);
    return yaml;
}

static bool metrics_say(struct rdt_proc *p, bool want_up, long long *lag)
{
    struct rdt_resp r = {0};
    bool ok = false;
    if (rdt_get(p, RDT_H1, "/metrics", &r) == 0 && r.status == 200) {
        long long up = rdt_metric_in(r.body, "recoveryd_records_export_up");
        *lag = rdt_metric_in(r.body, "recoveryd_records_export_lag_records");
        ok = (up == 1) == want_up && (!want_up || *lag == 0);
    }
    rdt_resp_free(&r);
    return ok;
}

/* Until `p` is connected with nothing waiting for export. */
static void wait_exported(struct rdt_proc *p, int timeout_ms)
{
    long long lag = -1;
    int64_t deadline = rdt_now_ms() + rdt_ms(timeout_ms);
    while (!metrics_say(p, true, &lag)) {
        if (rdt_now_ms() > deadline) {
            rdt_proc_print_log_tail(p, 40);
            fail_msg("export not caught up within %d ms (lag %lld)", rdt_ms(timeout_ms), lag);
        }
        rdt_sleep_ms(20); /* between scrapes */
    }
}

static void post_ok(struct rdt_proc *p, const char *path, const char *body, long want)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(p, RDT_H1, path, body, &r), 0);
    if (r.status != want)
        fail_msg("POST %s: %ld %s", path, r.status, r.body ? r.body : "");
    rdt_resp_free(&r);
}

/* One manual fault on `node`, opened and resolved: isolate, readmit. */
static void fault_cycle(struct rdt_proc *p, const char *node)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/nodes/%s/isolate", node);
    post_ok(p, path, "{\"reason\":\"test\"}", 200);
    snprintf(path, sizeof path, "/api/v1/nodes/%s/readmit", node);
    post_ok(p, path, NULL, 200);
}

/* Every fault id the API holds, sorted, comma-separated (malloc'd). */
static char *api_fault_ids(struct rdt_proc *p, size_t *n)
{
    json_t *all = json_array();
    char cursor[32] = "";
    for (;;) {
        char path[128];
        snprintf(path, sizeof path, "/api/v1/faults/records?limit=1000%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
        assert_int_equal(r.status, 200);
        json_t *items = json_object_get(r.json, "items");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) json_array_append(all, json_object_get(it, "id"));
        json_t *next = json_object_get(r.json, "next_cursor");
        bool more = json_is_string(next);
        if (more)
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        rdt_resp_free(&r);
        if (!more)
            break;
    }
    *n = json_array_size(all);
    const char **ids = calloc(*n ? *n : 1, sizeof(*ids));
    for (size_t i = 0; i < *n; i++)
        ids[i] = json_string_value(json_array_get(all, i));
    int (*cmp)(const void *, const void *) = NULL;
    (void)cmp;
    /* insertion sort: a few hundred ids */
    for (size_t i = 1; i < *n; i++)
        for (size_t j = i; j > 0 && strcmp(ids[j - 1], ids[j]) > 0; j--) {
            const char *t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    size_t len = 1;
    for (size_t i = 0; i < *n; i++)
        len += strlen(ids[i]) + 1;
    char *out = calloc(1, len);
    for (size_t i = 0; i < *n; i++) {
        if (i)
            strcat(out, ",");
        strcat(out, ids[i]);
    }
    free(ids);
    json_decref(all);
    return out;
}

/* The same from PostgreSQL (ids sorted bytewise). */
static char *pg_fault_ids(PGconn *c, const char *schema)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(string_agg(id::text, ',' ORDER BY id::text COLLATE \"C\"), '') "
             "FROM %s.fault_records",
             schema);
    return strdup(rdt_pg_query(c, sql));
}

/* Every fault the API holds is in PostgreSQL once, and nothing else. */
static void assert_same_faults(struct rdt_proc *p, PGconn *c, const char *schema, size_t at_least)
{
    size_t n;
    char *api = api_fault_ids(p, &n);
    char *pg = pg_fault_ids(c, schema);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) - count(DISTINCT id) FROM %s.fault_records", schema);
    assert_int_equal(count(c, sql), 0);
    if (n < at_least)
        fail_msg("the API lists %zu faults, expected at least %zu", n, at_least);
    assert_string_equal(api, pg);
    free(api);
    free(pg);
}

static long long api_audit_count(struct rdt_proc *p)
{
    long long total = 0;
    char cursor[32] = "";
    for (;;) {
        char path[128];
        snprintf(path, sizeof path, "/api/v1/audit?limit=1000%s%s", cursor[0] ? "&cursor=" : "",
                 cursor);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
        assert_int_equal(r.status, 200);
        total += (long long)json_array_size(json_object_get(r.json, "items"));
        json_t *next = json_object_get(r.json, "next_cursor");
        bool more = json_is_string(next);
        if (more)
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        rdt_resp_free(&r);
        if (!more)
            return total;
    }
}

static void start_daemon(struct rdt_proc *p, const char *schema, unsigned batch)
{
    if (rdt_proc_start(p, yaml_for(schema, batch)) != 0)
        fail_msg("recoveryd did not start");
    assert_int_equal(rdt_wait_ready(p, 15000), 0);
}

/* ---- the rows ---------------------------------------------------------------------------- */

static void test_rows_hold_what_the_api_shows(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    start_daemon(&p, "rows", 500);
    assert_int_equal(rdt_register(&p, "agent-1", 2, NULL), 0);
    /* A task placed on agent-1 (the only agent); isolating agent-1 moves it
     * to agent-2 (a task_recovery record). */
    const char *task = "7d0c1a52-6f3b-4c1e-9a55-0b6f8d2e4c11";
    char body[256], path[128];
    snprintf(body, sizeof body, "{\"task_id\":\"%s\"}", task);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&p, RDT_H1, "/api/v1/tasks", body, &r), 0);
    assert_true(r.status == 201 || r.status == 200 || r.status == 202);
    rdt_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/tasks/%s", task);
    int64_t placed_by = rdt_now_ms() + rdt_ms(10000);
    for (;;) {
        assert_int_equal(rdt_get(&p, RDT_H1, path, &r), 0);
        json_t *node = json_object_get(r.json, "node_id");
        bool placed = json_is_string(node) && strcmp(json_string_value(node), "agent-1") == 0;
        rdt_resp_free(&r);
        if (placed)
            break;
        assert_true(rdt_now_ms() < placed_by);
        rdt_sleep_ms(20); /* until the scheduler placed it */
    }
    assert_int_equal(rdt_register(&p, "agent-2", 2, NULL), 0);
    post_ok(&p, "/api/v1/nodes/agent-1/isolate", "{\"reason\":\"bad GPU\"}", 200);
    wait_exported(&p, 20000);

    PGconn *c = rdt_pg_db();
    /* The requirement's shape, exactly. */
    assert_string_equal(
        rdt_pg_query(
            c, "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY "
               "ordinal_position) FROM information_schema.columns WHERE table_schema = 'rows' "
               "AND table_name = 'fault_records'"),
        "id uuid, node_id character varying, fault_type character varying, severity_level "
        "character varying, detected_at timestamp with time zone, resolved_at timestamp with "
        "time zone, recovery_action jsonb, status character varying, metadata jsonb");
    assert_string_equal(
        rdt_pg_query(
            c, "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY "
               "ordinal_position) FROM information_schema.columns WHERE table_schema = 'rows' "
               "AND table_name = 'task_recovery'"),
        "id uuid, original_task_id uuid, failed_node_id character varying, recovery_node_id "
        "character varying, recovery_strategy character varying, started_at timestamp with "
        "time zone, completed_at timestamp with time zone, success boolean, error_message text");
    assert_string_equal(rdt_pg_query(c,
                                     "SELECT string_agg(version::text || ' ' || name, ',' ORDER BY "
                                     "version) FROM rows.schema_migrations"),
                        "1 001_init,2 002_export_position,3 003_audit_log,4 004_backup_records");

    /* The fault as the API shows it. */
    assert_int_equal(rdt_get(&p, RDT_H1, "/api/v1/faults/records?node_id=agent-1", &r), 0);
    json_t *x = json_array_get(json_object_get(r.json, "items"), 0);
    assert_non_null(x);
    char id[64], detected[64], reason[128];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(x, "id")));
    snprintf(reason, sizeof reason, "%s",
             json_string_value(json_object_get(json_object_get(x, "metadata"), "reason")));
    assert_non_null(strstr(reason, "bad GPU"));
    assert_string_equal(json_string_value(json_object_get(x, "severity_level")), "major");
    snprintf(detected, sizeof detected, "%s", json_string_value(json_object_get(x, "detected_at")));
    rdt_resp_free(&r);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT node_id || ' ' || fault_type || ' ' || severity_level || ' ' || status || "
             "' ' || (resolved_at IS NULL) || ' ' || to_char(detected_at AT TIME ZONE 'UTC', "
             "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') || ' ' || (metadata->>'reason') FROM "
             "rows.fault_records WHERE id = '%s'",
             id);
    char want[512];
    snprintf(want, sizeof want, "agent-1 manual major open true %s %s", detected, reason);
    assert_string_equal(rdt_pg_query(c, sql), want);

    /* The move: a task_recovery row. */
    snprintf(sql, sizeof sql,
             "SELECT failed_node_id || ' ' || recovery_node_id || ' ' || success || ' ' || "
             "(started_at IS NOT NULL) || ' ' || (completed_at IS NOT NULL) FROM "
             "rows.task_recovery WHERE original_task_id = '%s'",
             task);
    assert_string_equal(rdt_pg_query(c, sql), "agent-1 agent-2 true true true");

    /* A later change updates the row: readmit resolves the fault. */
    post_ok(&p, "/api/v1/nodes/agent-1/readmit", NULL, 200);
    wait_exported(&p, 20000);
    snprintf(sql, sizeof sql,
             "SELECT status || ' ' || (resolved_at >= detected_at) || ' ' || "
             "(metadata ? 'resolution') FROM rows.fault_records WHERE id = '%s'",
             id);
    assert_string_equal(rdt_pg_query(c, sql), "resolved true true");
    assert_int_equal(count(c, "SELECT count(*) FROM rows.fault_records"), 1);

    /* Audit records: as many rows as the API lists, with their fields. */
    assert_int_equal(count(c, "SELECT count(*) FROM rows.audit_log"), api_audit_count(&p));
    assert_string_equal(rdt_pg_query(c,
                                     "SELECT principal || ' ' || action || ' ' || target || ' ' || "
                                     "status FROM rows.audit_log WHERE action = 'node_isolate'"),
                        "anonymous node_isolate agent-1 200");
    /* The position is the newest exported change, and the state knows it. */
    long long pos = count(c, "SELECT raft_index FROM rows.export_position");
    assert_true(pos > 0);
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    while (rdt_metric(&p, "recoveryd_records_export_position") < pos) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(20); /* until the proposal applied */
    }
    assert_int_equal(rdt_metric(&p, "recoveryd_records_export_enabled"), 1);
    assert_true(rdt_metric(&p, "recoveryd_records_exported_total{table=\"fault_records\"}") >= 2);
    PQfinish(c);
    rdt_proc_cleanup(&p);
}

/* An empty conninfo: libpq takes everything from PG* variables, as for any
 * libpq client; and a list of hosts, the first of which is not there. */
static void test_pg_environment_and_hosts(void **state)
{
    (void)state;
    setenv("PGHOST", sockdir, 1);
    setenv("PGPORT", PG_PORT, 1);
    setenv("PGUSER", "recoveryd", 1);
    setenv("PGDATABASE", "postgres", 1);
    struct rdt_proc p = {0};
    if (rdt_proc_start(&p, yaml_conninfo("envs", 500, "")) != 0)
        fail_msg("recoveryd did not start");
    unsetenv("PGHOST");
    unsetenv("PGPORT");
    unsetenv("PGUSER");
    unsetenv("PGDATABASE");
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    assert_int_equal(rdt_register(&p, "agent-1", 1, NULL), 0);
    wait_exported(&p, 20000);
    PGconn *c = rdt_pg_db();
    assert_int_equal(count(c, "SELECT count(*) FROM envs.audit_log"), api_audit_count(&p));
    rdt_proc_cleanup(&p);

    char hosts[1024];
    snprintf(hosts, sizeof hosts, "host=%s/none,%s port=%s dbname=postgres user=recoveryd", root,
             sockdir, PG_PORT);
    struct rdt_proc q = {0};
    if (rdt_proc_start(&q, yaml_conninfo("hosts", 500, hosts)) != 0)
        fail_msg("recoveryd did not start");
    assert_int_equal(rdt_wait_ready(&q, 15000), 0);
    assert_int_equal(rdt_register(&q, "agent-1", 1, NULL), 0);
    wait_exported(&q, 20000);
    assert_int_equal(count(c, "SELECT count(*) FROM hosts.audit_log"), api_audit_count(&q));
    PQfinish(c);
    rdt_proc_cleanup(&q);
}

/* Backup records: a completed backup's row holds what the API shows. */
static void test_backup_records(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(rdt_tmpdir(dir, sizeof dir), 0);
    char yaml[3072];
    snprintf(yaml, sizeof yaml,
             "%s"
             "  backup:\n"
             "    archive: {target: \"\"}\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - {name: local, plugin: file, config: {dir: \"%s\"}}\n",
             yaml_for("bk", 500), dir);
    struct rdt_proc p = {0};
    if (rdt_proc_start(&p, yaml) != 0)
        fail_msg("recoveryd did not start");
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&p, RDT_H1, "/api/v1/backup/trigger", NULL, &r), 0);
    assert_int_equal(r.status, 202);
    char id[80], path[160];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.json, "backup_id")));
    rdt_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/backups/%s", id);
    json_t *rec = NULL;
    int64_t deadline = rdt_now_ms() + rdt_ms(15000);
    for (;;) {
        assert_int_equal(rdt_get(&p, RDT_H1, path, &r), 0);
        const char *st = json_string_value(json_object_get(r.json, "status"));
        if (r.status == 200 && st != NULL && strcmp(st, "running") != 0) {
            rec = json_incref(r.json);
            rdt_resp_free(&r);
            break;
        }
        rdt_resp_free(&r);
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(20); /* until the backup ended */
    }
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "completed");
    wait_exported(&p, 20000);
    PGconn *c = rdt_pg_db();
    char sql[512], want[512];
    snprintf(sql, sizeof sql,
             "SELECT target || ' ' || status || ' ' || raft_index || ' ' || size_bytes || ' ' || "
             "checksum || ' ' || digest || ' ' || (completed_at >= started_at) || ' ' || "
             "(verify_ok IS NULL) FROM bk.backup_records WHERE id = '%s'",
             id);
    snprintf(want, sizeof want, "local completed %lld %lld %s %s true true",
             (long long)json_integer_value(json_object_get(rec, "index")),
             (long long)json_integer_value(json_object_get(rec, "size")),
             json_string_value(json_object_get(rec, "checksum")),
             json_string_value(json_object_get(rec, "digest")));
    assert_string_equal(rdt_pg_query(c, sql), want);
    PQfinish(c);
    json_decref(rec);
    rdt_proc_cleanup(&p);
    rdt_rmtree(dir);
}

/* ---- PostgreSQL away -------------------------------------------------------------------- */

static void test_postgres_stopped_and_started_again(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    start_daemon(&p, "outage", 7);
    assert_int_equal(rdt_register(&p, "agent-1", 1, NULL), 0);
    for (int i = 0; i < 10; i++)
        fault_cycle(&p, "agent-1");
    wait_exported(&p, 20000);

    assert_int_equal(rdt_server_stop(&server, SIGINT, 30000), 0);
    /* The engine works on: every request answers. */
    for (int i = 0; i < 40; i++)
        fault_cycle(&p, "agent-1");
    long long lag = 0;
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    while (!metrics_say(&p, false, &lag) || lag < 80) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(20);
    }
    assert_true(rdt_metric(&p, "recoveryd_records_export_errors_total") >= 1);
    assert_true(rdt_metric_f(&p, "recoveryd_records_export_lag_seconds") > 0);

    assert_int_equal(launch_server(), 0);
    wait_exported(&p, 30000);
    PGconn *c = rdt_pg_db();
    assert_same_faults(&p, c, "outage", 50);
    assert_int_equal(count(c, "SELECT count(*) FROM outage.audit_log"), api_audit_count(&p));
    assert_int_equal(count(c, "SELECT count(*) - count(DISTINCT id) FROM outage.audit_log"), 0);
    PQfinish(c);

    /* A restart of the engine: it resumes from PostgreSQL's position. */
    assert_int_equal(rdt_proc_stop(&p, NULL), 0);
    assert_int_equal(rdt_proc_restart(&p), 0);
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    for (int i = 0; i < 5; i++)
        fault_cycle(&p, "agent-1");
    wait_exported(&p, 20000);
    c = rdt_pg_db();
    assert_same_faults(&p, c, "outage", 55);
    assert_int_equal(count(c, "SELECT count(*) FROM outage.audit_log"), api_audit_count(&p));
    PQfinish(c);
    rdt_proc_cleanup(&p);
}

/* Sends `sig` to the server and to every process it started (its backends). */
static void signal_postgres(int sig)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *close = strrchr(buf, ')');
        int ppid = 0;
        if (close == NULL || sscanf(close + 2, "%*c %d", &ppid) != 1)
            continue;
        if (ppid == server.pid)
            kill(pid, sig);
    }
    closedir(d);
    kill(server.pid, sig);
}

static void test_hung_postgres_never_holds_the_loop(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    start_daemon(&p, "hung", 500);
    long long epoch;
    assert_int_equal(rdt_register(&p, "agent-1", 1, NULL), 0);
    assert_int_equal(rdt_register(&p, "agent-hb", 1, &epoch), 0);
    fault_cycle(&p, "agent-1");
    wait_exported(&p, 20000);
    long long errors = rdt_metric(&p, "recoveryd_records_export_errors_total");

    signal_postgres(SIGSTOP); /* hung: connections open, nothing answers */
    /* Records keep coming while the export's statement waits for an answer
     * that never comes; heartbeats are answered quickly all along. */
    int64_t worst = 0;
    int64_t until = rdt_now_ms() + 3000; /* past the 2 s statement timeout */
    int cycles = 0;
    while (rdt_now_ms() < until) {
        if (cycles < 20) {
            fault_cycle(&p, "agent-1");
            cycles++;
        }
        struct rdt_resp r = {0};
        int64_t t0 = rdt_now_ms();
        assert_int_equal(rdt_heartbeat(&p, RDT_H1, "agent-hb", epoch, 0, &r), 0);
        int64_t took = rdt_now_ms() - t0;
        assert_int_equal(r.status, 200);
        rdt_resp_free(&r);
        if (took > worst)
            worst = took;
        rdt_sleep_ms(10); /* a heartbeat every 10 ms */
    }
    /* The stuck statement (or connection) timed out: a counted failure. */
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    while (rdt_metric(&p, "recoveryd_records_export_errors_total") <= errors) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(20);
    }
    signal_postgres(SIGCONT);
    print_message("heartbeat worst %lld ms while PostgreSQL was hung\n", (long long)worst);
    assert_true(worst < rdt_ms(250));
    wait_exported(&p, 30000);
    PGconn *c = rdt_pg_db();
    assert_same_faults(&p, c, "hung", 21);
    PQfinish(c);
    assert_true(rdt_proc_log_has(&p, "no answer within 2000 ms"));
    rdt_proc_cleanup(&p);
}

/* ---- migrations ------------------------------------------------------------------------- */

static char *read_source(const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", RD_SOURCE_DIR, rel);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_migrations_on_an_older_schema(void **state)
{
    (void)state;
    /* A database set up by hand with 001 alone (as sql/README.md once
     * said), holding a row. */
    PGconn *c = rdt_pg_db();
    rdt_pg_query(c, "CREATE SCHEMA old");
    rdt_pg_query(c, "SET search_path TO old");
    char *init = read_source("sql/migrations/001_init.sql");
    rdt_pg_query(c, init);
    free(init);
    rdt_pg_query(
        c, "INSERT INTO fault_records (id, node_id, fault_type, severity_level, status) VALUES "
           "('00000000-0000-4000-8000-000000000001', 'legacy', 'crash', 'major', 'resolved')");

    struct rdt_proc p = {0};
    start_daemon(&p, "old", 500);
    assert_int_equal(rdt_register(&p, "agent-1", 1, NULL), 0);
    fault_cycle(&p, "agent-1");
    wait_exported(&p, 20000);
    assert_string_equal(
        rdt_pg_query(
            c, "SELECT string_agg(version::text, ',' ORDER BY version) FROM old.schema_migrations"),
        "1,2,3,4");
    assert_int_equal(count(c, "SELECT count(*) FROM old.fault_records"), 2); /* the old row kept */
    assert_int_equal(count(c, "SELECT count(*) FROM old.audit_log"), api_audit_count(&p));
    assert_string_equal(rdt_pg_query(c, "SELECT to_regclass('old.backup_records') IS NOT NULL"),
                        "t");
    rdt_proc_cleanup(&p);

    /* Started again: nothing is applied twice. */
    struct rdt_proc q = {0};
    start_daemon(&q, "old", 500);
    wait_exported(&q, 20000);
    assert_int_equal(count(c, "SELECT count(*) FROM old.schema_migrations"), 4);
    rdt_proc_cleanup(&q);

    /* A schema from a newer recoveryd: refused, the engine runs on. */
    rdt_pg_query(c, "INSERT INTO old.schema_migrations (version, name) VALUES (99, '099_future')");
    struct rdt_proc f = {0};
    start_daemon(&f, "old", 500);
    assert_int_equal(rdt_await_log(&f, "newer than this recoveryd knows", rdt_ms(10000)), 0);
    assert_int_equal(rdt_metric(&f, "recoveryd_records_export_up"), 0);
    assert_int_equal(count(c, "SELECT count(*) FROM old.schema_migrations"), 5);
    rdt_proc_cleanup(&f);
    PQfinish(c);
}

/* A migration that fails rolls back every one of that start: nothing is
 * half-applied; once the cause is gone the next try applies them all. */
static void test_failed_migration_changes_nothing(void **state)
{
    (void)state;
    PGconn *c = rdt_pg_db();
    rdt_pg_query(c, "CREATE SCHEMA broken");
    /* 003 cannot apply here: audit_log is a view (CREATE TABLE IF NOT
     * EXISTS leaves it; the index on it fails). */
    rdt_pg_query(c, "CREATE VIEW broken.audit_log AS SELECT 1 AS x");
    struct rdt_proc p = {0};
    start_daemon(&p, "broken", 500);
    /* Until the first try failed. */
    assert_int_equal(rdt_await_log(&p, "error=\"migrating: ERROR", rdt_ms(10000)), 0);
    assert_string_equal(
        rdt_pg_query(c, "SELECT coalesce(to_regclass('broken.schema_migrations')::text, "
                        "'') || coalesce(to_regclass('broken.fault_records')::text, '') "
                        "|| coalesce(to_regclass('broken.export_position')::text, '')"),
        "");
    assert_int_equal(rdt_metric(&p, "recoveryd_records_export_up"), 0);
    assert_int_equal(rdt_register(&p, "agent-1", 1, NULL), 0); /* the engine works on */
    rdt_pg_query(c, "DROP VIEW broken.audit_log");
    wait_exported(&p, 20000);
    assert_string_equal(rdt_pg_query(c,
                                     "SELECT string_agg(version::text, ',' ORDER BY version) FROM "
                                     "broken.schema_migrations"),
                        "1,2,3,4");
    assert_int_equal(count(c, "SELECT count(*) FROM broken.audit_log"), api_audit_count(&p));
    PQfinish(c);
    rdt_proc_cleanup(&p);
}

/* ---- a leader killed mid-export --------------------------------------------------------- */

static void test_new_leader_resumes(void **state)
{
    (void)state;
    struct rdt_cluster cl = {0};
    assert_int_equal(rdt_cluster_start(&cl, 3, yaml_for("cluster", 5), NULL), 0);
    int L = rdt_cluster_leader(&cl, 15000);
    assert_true(L >= 0);
    assert_int_equal(rdt_register(&cl.procs[L], "agent-1", 1, NULL), 0);
    /* Each fault row takes PostgreSQL 30 ms to write (a trigger), so the
     * export of the burst below takes seconds: the leader dies in the
     * middle of it. */
    PGconn *c = rdt_pg_db();
    int64_t ready = rdt_now_ms() + rdt_ms(20000);
    while (strcmp(rdt_pg_query(c, "SELECT to_regclass('cluster.fault_records') IS NOT NULL"),
                  "t") != 0) {
        assert_true(rdt_now_ms() < ready);
        rdt_sleep_ms(20); /* until the leader migrated the schema */
    }
    rdt_pg_query(c, "CREATE FUNCTION cluster.slow() RETURNS trigger AS $$ BEGIN PERFORM "
                    "pg_sleep(0.03); RETURN NEW; END $$ LANGUAGE plpgsql");
    rdt_pg_query(c,
                 "CREATE TRIGGER slow BEFORE INSERT ON cluster.fault_records FOR EACH ROW EXECUTE "
                 "FUNCTION cluster.slow()");
    for (int i = 0; i < 60; i++)
        fault_cycle(&cl.procs[L], "agent-1");
    int64_t deadline = rdt_now_ms() + rdt_ms(20000);
    while (count(c, "SELECT count(*) FROM cluster.fault_records") == 0) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(5);
    }
    assert_int_equal(rdt_proc_kill9(&cl.procs[L]), 0);
    long long before = count(c, "SELECT raft_index FROM cluster.export_position");
    long long had = count(c, "SELECT count(*) FROM cluster.fault_records");
    print_message("killed the leader with %lld of 60 faults in PostgreSQL\n", had);
    assert_true(had < 60); /* mid-export */

    int N = rdt_cluster_leader(&cl, 20000);
    assert_true(N >= 0 && N != L);
    for (int i = 0; i < 10; i++)
        fault_cycle(&cl.procs[N], "agent-1");
    wait_exported(&cl.procs[N], 30000);
    assert_same_faults(&cl.procs[N], c, "cluster", 70);
    assert_int_equal(count(c, "SELECT count(*) FROM cluster.audit_log"),
                     api_audit_count(&cl.procs[N]));
    assert_true(count(c, "SELECT raft_index FROM cluster.export_position") > before);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT replica_id = %d FROM cluster.export_position", N + 1);
    assert_string_equal(rdt_pg_query(c, sql), "t");
    PQfinish(c);
    rdt_cluster_cleanup(&cl);
}

/* ---- config ------------------------------------------------------------------------------ */

static void check_config_fails(const char *records_yaml, const char *want)
{
    char dir[256], path[300];
    assert_int_equal(rdt_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "fault_tolerance:\n  records:\n%s", records_yaml);
    fclose(f);
    char *argv[] = {RD_BINARY, "--check-config", "--config", path, NULL};
    char *out = NULL, *err = NULL;
    int rc = rdt_run(argv, 10000, &out, &err);
    assert_true(rc != 0);
    if (err == NULL || strstr(err, want) == NULL)
        fail_msg("want '%s' in: %s", want, err ? err : "(nothing)");
    free(out);
    free(err);
    rdt_rmtree(dir);
}

static void test_bad_config_values(void **state)
{
    (void)state;
    check_config_fails("    schema: \"Bad-Name\"\n", "fault_tolerance.records.schema");
    check_config_fails("    batch_size: 0\n", "fault_tolerance.records.batch_size");
    check_config_fails("    max_retained: 5\n", "fault_tolerance.records.max_retained");
    check_config_fails("    timeout: 0s\n", "fault_tolerance.records.timeout");
    check_config_fails("    export: maybe\n", "fault_tolerance.records.export");
    check_config_fails("    table: x\n", "table");
    check_config_fails("    conninfo: \"dbname\"\n", "fault_tolerance.records.conninfo");
}

int main(void)
{
    if (!find_bindir()) {
        fprintf(stderr, "SKIP: no PostgreSQL (initdb) installed: scripts/bootstrap installs "
                        "Debian's postgresql\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config_values),
        cmocka_unit_test(test_rows_hold_what_the_api_shows),
        cmocka_unit_test(test_backup_records),
        cmocka_unit_test(test_pg_environment_and_hosts),
        cmocka_unit_test(test_postgres_stopped_and_started_again),
        cmocka_unit_test(test_hung_postgres_never_holds_the_loop),
        cmocka_unit_test(test_migrations_on_an_older_schema),
        cmocka_unit_test(test_failed_migration_changes_nothing),
        cmocka_unit_test(test_new_leader_resumes),
    };
    return cmocka_run_group_tests(tests, rdt_pg_group_setup, rdt_pg_group_teardown);
}
