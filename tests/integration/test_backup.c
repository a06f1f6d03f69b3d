/*
 * Backups on real processes with the file target (docs/backup.md):
 * triggered and scheduled backups and their objects, verify (and a damaged
 * image it catches), retention by count and by age, no target configured,
 * the records on every replica of a cluster, a leader killed in the middle
 * of a backup (its record ends completed or failed, never running, and the
 * next backup succeeds), and `recoveryd restore`: one replica, three
 * replicas into a new cluster with one state, and the inputs it refuses;
 * the archive replayed to a point, a damaged archive segment refused.
 */
#include "cmocka_all.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"

#define READY_MS 20000

/* Slow heartbeats: no agent the tests register turns suspect meanwhile. */
static const char *const base_yaml = "fault_tolerance:\n"
                                     "  detection:\n"
                                     "    heartbeat_interval: 30s\n";

/* Plugins with one file target in `dir`, and fault_tolerance.backup's
 * `backup` lines; continuous archiving off unless they say otherwise (its
 * first backup would race the tests' own). */
static void config(char *out, size_t len, const char *dir, const char *backup)
{
    snprintf(out, len,
             "%s"
             "  backup:\n"
             "%s%s"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - {name: local, plugin: file, config: {dir: \"%s\"}}\n",
             base_yaml, backup, strstr(backup, "archive:") ? "" : "    archive: {target: \"\"}\n",
             dir);
}

/* ---- helpers ------------------------------------------------------------------ */

/* POST /api/v1/backup/trigger on `p` (or the leader `c` sends it to):
 * the backup id of the 202. */
static void trigger(struct rdt_proc *p, char id[64])
{
    struct rdt_resp r = {0};
    int rc = rdt_post(p, RDT_H1, "/api/v1/backup/trigger", NULL, &r);
    if (rc != 0 || r.status != 202)
        fail_msg("trigger: rc=%d status=%ld body=%s", rc, r.status, r.body ? r.body : "");
    snprintf(id, 64, "%s", json_string_value(json_object_get(r.json, "backup_id")));
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "initiated");
    assert_true(json_is_number(json_object_get(r.json, "estimated_time")));
    rdt_resp_free(&r);
}

/* The record of backup `id` on `p` (?stale=true: its own view), or NULL
 * while it has none. The caller frees it. */
static json_t *record(struct rdt_proc *p, const char *id, bool stale)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/backups/%s%s", id, stale ? "?stale=true" : "");
    struct rdt_resp r = {0};
    json_t *rec = NULL;
    if (rdt_get(p, RDT_H1, path, &r) == 0 && r.status == 200)
        rec = json_incref(r.json);
    rdt_resp_free(&r);
    return rec;
}

static const char *status_of(json_t *rec)
{
    return json_string_value(json_object_get(rec, "status"));
}

/* Waits until backup `id` is no longer running on `p`: its record. */
static json_t *wait_done(struct rdt_proc *p, const char *id, bool stale, int timeout_ms)
{
    for (int64_t until = rdt_now_ms() + timeout_ms * rdt_time_factor();;) {
        json_t *rec = record(p, id, stale);
        if (rec != NULL && strcmp(status_of(rec), "running") != 0)
            return rec;
        json_decref(rec);
        if (rdt_now_ms() >= until)
            fail_msg("backup %s did not end within %d ms on %s", id, timeout_ms, p->base_url);
        rdt_sleep_ms(10);
    }
}

static json_t *wait_completed(struct rdt_proc *p, const char *id)
{
    json_t *rec = wait_done(p, id, false, 15000);
    if (strcmp(status_of(rec), "completed") != 0) {
        char *s = json_dumps(rec, JSON_COMPACT);
        fail_msg("backup %s: %s", id, s);
    }
    return rec;
}

/* GET /api/v1/backups on `p` (every page): the records, newest first. */
static json_t *list_all(struct rdt_proc *p, const char *query)
{
    json_t *all = json_array();
    char cursor[64] = "";
    for (int page = 0; page < 100; page++) {
        char path[256];
        snprintf(path, sizeof(path), "/api/v1/backups?limit=2&stale=true%s%s%s", query,
                 cursor[0] ? "&cursor=" : "", cursor);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
        assert_int_equal(r.status, 200);
        json_array_extend(all, json_object_get(r.json, "items"));
        json_t *next = json_object_get(r.json, "next_cursor");
        bool more = json_is_string(next);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        rdt_resp_free(&r);
        if (!more)
            return all;
    }
    fail_msg("more than 100 pages of backups");
    return all;
}

static bool file_exists(const char *dir, const char *id, const char *ext)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/backups/%s.%s", dir, id, ext);
    return stat(path, &st) == 0;
}

/* Files directly in DIR/backups (temporaries of a write in flight aside). */
static int count_objects(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/backups", dir);
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void flip_byte(const char *dir, const char *id, long at)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/backups/%s.img", dir, id);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long off = at >= 0 ? at : size / 2;
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

/* A few agents and tasks, so an image holds something. */
static void populate(struct rdt_proc *p, const char *prefix, int nodes, int tasks, int payload)
{
    uint64_t seed = 42;
    for (int i = 0; i < nodes; i++) {
        char id[64];
        snprintf(id, sizeof(id), "%s-n%d", prefix, i);
        assert_int_equal(rdt_register(p, id, 4, NULL), 0);
    }
    char *body = malloc((size_t)payload + 256);
    assert_non_null(body);
    for (int i = 0; i < tasks; i++) {
        /* Labels no agent has: the tasks stay pending, so the state holds
         * still while a test compares it. */
        int o = snprintf(body, 256,
                         "{\"priority\":%d,\"requirements\":{\"labels\":{\"pool\":"
                         "\"nowhere\"}},\"payload\":{\"blob\":\"",
                         i % 10);
        for (int k = 0; k < payload; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            body[o++] = (char)('a' + (seed >> 33) % 26);
        }
        snprintf(body + o, 256, "\"}}");
        struct rdt_resp r = {0};
        assert_int_equal(rdt_post(p, RDT_H1, "/api/v1/tasks", body, &r), 0);
        assert_int_equal(r.status, 201);
        rdt_resp_free(&r);
    }
    free(body);
}

/* The replicated part of the state, as a client sees it: nodes (epoch,
 * state, capacity, labels) and tasks (state, attempt, priority, payload
 * checksum-free fields), keyed by id. */
static json_t *durable_view(struct rdt_proc *p)
{
    json_t *view = json_object();
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/api/v1/nodes?limit=1000&stale=true", &r), 0);
    assert_int_equal(r.status, 200);
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(r.json, "items"), i, it)
    {
        json_object_set_new(view, json_string_value(json_object_get(it, "node_id")),
                            json_pack("{s:O,s:O,s:O,s:O}", "epoch", json_object_get(it, "epoch"),
                                      "state", json_object_get(it, "state"), "capacity",
                                      json_object_get(it, "capacity"), "labels",
                                      json_object_get(it, "labels")));
    }
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(p, RDT_H1, "/api/v1/tasks?limit=1000&stale=true", &r), 0);
    assert_int_equal(r.status, 200);
    json_array_foreach(json_object_get(r.json, "items"), i, it)
    {
        json_object_set_new(view, json_string_value(json_object_get(it, "task_id")),
                            json_pack("{s:O,s:O,s:O,s:O}", "state", json_object_get(it, "state"),
                                      "attempt", json_object_get(it, "attempt"), "priority",
                                      json_object_get(it, "priority"), "created_at",
                                      json_object_get(it, "created_at")));
    }
    rdt_resp_free(&r);
    return view;
}

static void expect_same(json_t *a, json_t *b, const char *what)
{
    if (!json_equal(a, b)) {
        char *x = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS),
             *y = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("%s differ:\n%.2000s\n%.2000s", what, x, y);
    }
}

/* `recoveryd restore ARGS...` (NULL-terminated): exit code, output in *out
 * and *err (the caller frees them). */
static int restore(char **out, char **err, ...)
{
    char *argv[32] = {RD_BINARY, "restore", "--plugins-dir", (char *)rdt_plugins_dir()};
    int n = 4;
    va_list ap;
    va_start(ap, err);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && n < 31)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return rdt_run(argv, 60000 * rdt_time_factor(), out, err);
}

/* ---- a single daemon ------------------------------------------------------------- */

/* Triggered: the record, the objects, the manifest; verify passes, then
 * catches a flipped byte; the metrics. */
static void test_trigger_verify_and_damage(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    char dir[300], yaml[2048];
    assert_int_equal(rdt_proc_prepare(&p), 0);
    snprintf(dir, sizeof(dir), "%s/target", p.dir);
    config(yaml, sizeof(yaml), dir, "    interval: 1h\n");
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, READY_MS), 0);
    populate(&p, "tv", 5, 20, 64);

    char id[64];
    trigger(&p, id);
    json_t *rec = wait_completed(&p, id);
    assert_string_equal(json_string_value(json_object_get(rec, "target")), "local");
    assert_true(json_integer_value(json_object_get(rec, "index")) > 20);
    assert_true(json_integer_value(json_object_get(rec, "term")) >= 1);
    assert_true(json_integer_value(json_object_get(rec, "size")) > 0);
    assert_int_equal(strlen(json_string_value(json_object_get(rec, "checksum"))), 16);
    assert_int_equal(strlen(json_string_value(json_object_get(rec, "digest"))), 16);
    assert_true(rdt_is_rfc3339_utc(json_string_value(json_object_get(rec, "completed_at"))));
    assert_true(json_is_null(json_object_get(rec, "verified")));
    assert_true(file_exists(dir, id, "img"));
    assert_true(file_exists(dir, id, "json"));
    /* The manifest says what the record says. */
    char path[512];
    snprintf(path, sizeof(path), "%s/backups/%s.json", dir, id);
    json_error_t jerr;
    json_t *m = json_load_file(path, 0, &jerr);
    assert_non_null(m);
    assert_int_equal(json_integer_value(json_object_get(m, "manifest_version")), 1);
    assert_string_equal(json_string_value(json_object_get(m, "backup_id")), id);
    assert_int_equal(json_integer_value(json_object_get(m, "index")),
                     json_integer_value(json_object_get(rec, "index")));
    assert_string_equal(json_string_value(json_object_get(m, "checksum")),
                        json_string_value(json_object_get(rec, "checksum")));
    assert_string_equal(json_string_value(json_object_get(m, "digest")),
                        json_string_value(json_object_get(rec, "digest")));
    assert_int_equal(json_string_length(json_object_get(m, "cluster_id")), 36);
    json_decref(m);
    json_decref(rec);

    /* Verify reads it back: good. */
    char vpath[128];
    snprintf(vpath, sizeof(vpath), "/api/v1/backups/%s/verify", id);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&p, RDT_H2, vpath, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "verified")));
    assert_true(rdt_is_rfc3339_utc(json_string_value(json_object_get(r.json, "verified_at"))));
    rdt_resp_free(&r);
    /* A byte flipped in the image: caught, and recorded. */
    flip_byte(dir, id, -1);
    assert_int_equal(rdt_post(&p, RDT_H1, vpath, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_is_false(json_object_get(r.json, "verified")));
    const char *why = json_string_value(json_object_get(r.json, "error"));
    assert_non_null(why);
    assert_non_null(strstr(why, "checksum mismatch"));
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "completed");
    rdt_resp_free(&r);
    rec = record(&p, id, false);
    assert_true(json_is_false(json_object_get(rec, "verified")));
    json_decref(rec);

    /* The metrics say when the last backup succeeded. */
    assert_true(rdt_metric(&p, "recoveryd_backup_last_success_timestamp_seconds") > 1700000000);
    assert_int_equal(rdt_metric(&p, "recoveryd_backup_targets"), 1);
    assert_int_equal(rdt_metric(&p, "recoveryd_backups_total{status=\"completed\"}"), 1);
    assert_int_equal(rdt_metric(&p, "recoveryd_backup_verifications_total{result=\"mismatch\"}"),
                     1);
    assert_int_equal(rdt_metric(&p, "recoveryd_backup_records{status=\"running\"}"), 0);
    /* The image came from a forked child: the loop paid its fork, under a
     * second even on a loaded machine (the serialising fallback would leave
     * it at 0). */
    double fork_s = rdt_metric_f(&p, "recoveryd_backup_fork_seconds");
    assert_true(fork_s > 0 && fork_s < 1.0);

    /* Bad input. */
    struct rdt_resp e = {0};
    assert_int_equal(rdt_post(&p, RDT_H1, "/api/v1/backup/trigger", "{\"target\":\"offsite\"}", &e),
                     0);
    assert_int_equal(e.status, 400);
    assert_non_null(strstr(e.body, "no backup target named offsite (targets: local)"));
    rdt_resp_free(&e);
    rdt_proc_cleanup(&p);
}

/* With no backup target the trigger says so, and how to add one. */
static void test_no_target(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, base_yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, READY_MS), 0);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&p, RDT_H1, "/api/v1/backup/trigger", NULL, &r), 0);
    assert_int_equal(r.status, 409);
    assert_string_equal(rdt_err_code(&r), "conflict");
    assert_non_null(strstr(r.body, "no backup target is configured"));
    assert_non_null(strstr(r.body, "plugins.instances"));
    rdt_resp_free(&r);
    assert_int_equal(rdt_metric(&p, "recoveryd_backup_targets"), 0);
    assert_int_equal(rdt_get(&p, RDT_H1, "/api/v1/backups", &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    rdt_resp_free(&r);
    rdt_proc_cleanup(&p);
}

/* A target listed that is not a backup plugin: refused at start, named. */
static void test_target_not_a_backup_plugin(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "%s  backup:\n    targets: [log]\n"
             "plugins:\n  instances:\n    - {name: heartbeat, required: true}\n"
             "    - {name: log}\n",
             base_yaml);
    p.errors_expected = true;
    assert_int_equal(rdt_proc_prepare(&p), 0);
    assert_int_not_equal(rdt_proc_start(&p, yaml), 0);
    char *log = rdt_proc_log(&p);
    assert_non_null(log);
    if (strstr(log, "fault_tolerance.backup.targets[0]: instance 'log' is a plugin of kind alert, "
                    "not a backup target") == NULL)
        fail_msg("no clear refusal in the log:\n%s", log);
    free(log);
    rdt_proc_cleanup(&p);
}

/* Scheduled every second; retention by count (keep_min, everything past a
 * zero retention) removes objects and records. */
static void test_schedule_and_retention_by_count(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    char dir[300], yaml[2048];
    assert_int_equal(rdt_proc_prepare(&p), 0);
    snprintf(dir, sizeof(dir), "%s/target", p.dir);
    config(yaml, sizeof(yaml), dir,
           "    interval: 1s\n    retention_period: 0ms\n    keep_min: 2\n");
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, READY_MS), 0);
    /* Five scheduled backups completed (this leader's count) ... */
    for (int64_t until = rdt_now_ms() + 20000 * rdt_time_factor();;) {
        if (rdt_metric(&p, "recoveryd_backups_total{status=\"completed\"}") >= 5 &&
            rdt_metric(&p, "recoveryd_backup_removed_total") >= 3)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(50);
    }
    /* ... and at most keep_min completed ones left (plus one in flight),
     * their objects and no others. */
    json_t *all = list_all(&p, "&status=completed");
    assert_true(json_array_size(all) <= 3);
    assert_true(json_array_size(all) >= 2);
    size_t i;
    json_t *it;
    json_array_foreach(all, i, it)
    {
        const char *id = json_string_value(json_object_get(it, "backup_id"));
        assert_true(file_exists(dir, id, "img"));
    }
    assert_true(count_objects(dir) <= 2 * 4);
    json_decref(all);
    rdt_proc_cleanup(&p);
}

/* Retention by age: with keep_min 0, nothing that began more than the
 * retention period ago stays. */
static void test_retention_by_age(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    char dir[300], yaml[2048];
    assert_int_equal(rdt_proc_prepare(&p), 0);
    snprintf(dir, sizeof(dir), "%s/target", p.dir);
    config(yaml, sizeof(yaml), dir,
           "    interval: 500ms\n    retention_period: 2s\n    keep_min: 0\n");
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, READY_MS), 0);
    for (int64_t until = rdt_now_ms() + 20000 * rdt_time_factor();;) {
        if (rdt_metric(&p, "recoveryd_backup_removed_total") >= 3)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(50);
    }
    /* Every record left began within the period (plus a tick of slack). */
    json_t *all = list_all(&p, "");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    struct tm tm = {0};
    int ms = 0;
    size_t i;
    json_t *it;
    json_array_foreach(all, i, it)
    {
        const char *st = json_string_value(json_object_get(it, "started_at"));
        assert_int_equal(sscanf(st, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                                &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms),
                         7);
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        int64_t started = (int64_t)timegm(&tm) * 1000 + ms;
        if (now_ms - started > 2000 + 1500 * rdt_time_factor())
            fail_msg("backup %s began %lld ms ago, past the 2 s retention",
                     json_string_value(json_object_get(it, "backup_id")),
                     (long long)(now_ms - started));
    }
    json_decref(all);
    rdt_proc_cleanup(&p);
}

/* ---- restore ------------------------------------------------------------------------- */

/* One replica: back up, stop, restore into a new data directory, start:
 * the same agents and tasks. */
static void test_restore_single_replica(void **state)
{
    (void)state;
    struct rdt_proc p = {0}, q = {0};
    char dir[300], yaml[2048], url[400];
    assert_int_equal(rdt_proc_prepare(&p), 0);
    snprintf(dir, sizeof(dir), "%s/target", p.dir);
    snprintf(url, sizeof(url), "file://%s", dir);
    config(yaml, sizeof(yaml), dir, "    interval: 1h\n");
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, READY_MS), 0);
    char id0[64], id[64];
    trigger(&p, id0);
    json_decref(wait_completed(&p, id0));
    populate(&p, "rs", 8, 30, 200);
    trigger(&p, id);
    json_decref(wait_completed(&p, id));
    json_t *before = durable_view(&p);
    assert_int_equal(rdt_proc_stop(&p, NULL), 0);

    assert_int_equal(rdt_proc_prepare(&q), 0);
    char raft[64], *out = NULL, *err = NULL;
    snprintf(raft, sizeof(raft), "127.0.0.1:%u", (unsigned)q.raft_port);
    int rc =
        restore(&out, &err, "--from", url, "--data-dir", q.data_dir, "--raft-address", raft, NULL);
    if (rc != 0)
        fail_msg("restore exited %d: %s%s", rc, out ? out : "", err ? err : "");
    assert_non_null(strstr(out, id));
    assert_non_null(strstr(out, "checksum and digest"));
    free(out);
    free(err);
    /* The restored replica backs up elsewhere: its own target. */
    char dir2[300];
    snprintf(dir2, sizeof(dir2), "%s/target", q.dir);
    config(yaml, sizeof(yaml), dir2, "    interval: 1h\n");
    assert_int_equal(rdt_proc_start(&q, yaml), 0);
    assert_int_equal(rdt_wait_ready(&q, READY_MS), 0);
    json_t *after = durable_view(&q);
    expect_same(before, after, "the restored replica's agents and tasks");
    /* The records of the backups before came along (an image is taken
     * before its own record begins: it holds no record of itself), and it
     * writes its own. */
    json_t *rec = record(&q, id0, false);
    assert_non_null(rec);
    assert_string_equal(status_of(rec), "completed");
    json_decref(rec);
    assert_null(record(&q, id, false));
    char id2[64];
    trigger(&q, id2);
    json_decref(wait_completed(&q, id2));
    json_decref(before);
    json_decref(after);
    rdt_proc_cleanup(&q);
    rdt_proc_cleanup(&p);
}

/* Refused, each with a line that says what is wrong. */
static void test_restore_bad_input(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    char dir[300], yaml[2048], url[400], path[512];
    assert_int_equal(rdt_proc_prepare(&p), 0);
    snprintf(dir, sizeof(dir), "%s/target", p.dir);
    snprintf(url, sizeof(url), "file://%s", dir);
    config(yaml, sizeof(yaml), dir, "    interval: 1h\n");
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, READY_MS), 0);
    populate(&p, "bad", 3, 3, 16);
    char id[64], id2[64];
    trigger(&p, id);
    json_decref(wait_completed(&p, id));
    trigger(&p, id2);
    json_decref(wait_completed(&p, id2));
    assert_int_equal(rdt_proc_stop(&p, NULL), 0);

    struct {
        const char *args[10];
        int code;
        const char *needle;
    } cases[] = {
        {{"--from", "ftp://host/x", "--data-dir", "@new", NULL}, 1, "unknown kind of target"},
        {{"--from", "file://relative", "--data-dir", "@new", NULL}, 1, "file:///ABSOLUTE/PATH"},
        {{"--from", "@empty", "--data-dir", "@new", NULL}, 1, "holds no complete backup"},
        {{"--from", "@url", "--data-dir", "@full", NULL}, 1, "is not empty"},
        {{"--from", "@url", "--data-dir", "@new", "--backup",
          "7f0c5c2e-0000-4000-8000-0000000000ff", NULL},
         1,
         "has no manifest"},
        {{"--from", "@url", "--data-dir", "@new", "--backup", "nope", NULL}, 2, "a UUID"},
        {{"--from", "@url", "--data-dir", "@new", "--peer", "2=127.0.0.1:1", NULL},
         2,
         "no peer has this replica's id 1"},
        {{"--from", "@url", NULL}, 2, "--data-dir DIR is required"},
        {{"--from", "@url", "--data-dir", "@new", "--to-index", "5", "--to-time",
          "2026-01-01T00:00:00Z", NULL},
         2,
         "not both"},
    };
    char empty[320], full[320], fresh[320];
    snprintf(empty, sizeof(empty), "%s/empty-target", p.dir);
    snprintf(full, sizeof(full), "%s/data", p.dir); /* the daemon's own */
    snprintf(fresh, sizeof(fresh), "%s/new-data", p.dir);
    assert_int_equal(mkdir(empty, 0700), 0);
    char empty_url[400];
    snprintf(empty_url, sizeof(empty_url), "file://%s", empty);
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char *argv[16] = {RD_BINARY, "restore", "--plugins-dir", (char *)rdt_plugins_dir()};
        int n = 4;
        for (int a = 0; cases[k].args[a] != NULL; a++) {
            const char *v = cases[k].args[a];
            argv[n++] = strcmp(v, "@new") == 0     ? fresh
                        : strcmp(v, "@full") == 0  ? full
                        : strcmp(v, "@url") == 0   ? url
                        : strcmp(v, "@empty") == 0 ? empty_url
                                                   : (char *)v;
        }
        argv[n] = NULL;
        char *out = NULL, *err = NULL;
        int rc = rdt_run(argv, 60000, &out, &err);
        if (rc != cases[k].code || err == NULL || strstr(err, cases[k].needle) == NULL)
            fail_msg("case %zu: exit %d (expected %d), stderr: %s (expected \"%s\")", k, rc,
                     cases[k].code, err ? err : "", cases[k].needle);
        free(out);
        free(err);
    }
    /* The data directory of a refused restore holds nothing. */
    struct stat st;
    assert_true(stat(fresh, &st) != 0 || count_objects(fresh) == 0);

    /* A damaged newest backup: refused, and the message says which. */
    flip_byte(dir, id2, -1);
    char *out = NULL, *err = NULL;
    int rc = restore(&out, &err, "--from", url, "--data-dir", fresh, NULL);
    if (rc != 1 || strstr(err, "is damaged") == NULL || strstr(err, id2) == NULL)
        fail_msg("damaged backup: exit %d, stderr %s", rc, err ? err : "");
    free(out);
    free(err);
    /* A manifest whose state digest is not the image's (the image's bytes
     * intact): the state it decodes to is refused. */
    snprintf(path, sizeof(path), "%s/backups/%s.json", dir, id);
    json_error_t jerr;
    json_t *man = json_load_file(path, 0, &jerr);
    assert_non_null(man);
    char real[17];
    snprintf(real, sizeof(real), "%s", json_string_value(json_object_get(man, "digest")));
    json_object_set_new(man, "digest",
                        json_string(real[0] == '0' ? "1111111111111111" : "0000000000000000"));
    assert_int_equal(json_dump_file(man, path, 0), 0);
    rc = restore(&out, &err, "--from", url, "--data-dir", fresh, "--backup", id, NULL);
    if (rc != 1 || strstr(err, "its state digests to") == NULL || strstr(err, real) == NULL)
        fail_msg("wrong digest in the manifest: exit %d, stderr %s", rc, err ? err : "");
    free(out);
    free(err);
    json_object_set_new(man, "digest", json_string(real));
    assert_int_equal(json_dump_file(man, path, 0), 0);
    json_decref(man);
    /* The older one still restores. */
    rc = restore(&out, &err, "--from", url, "--data-dir", fresh, "--backup", id, NULL);
    if (rc != 0)
        fail_msg("older backup: exit %d, stderr %s", rc, err ? err : "");
    free(out);
    free(err);
    /* A manifest whose image is gone. */
    snprintf(path, sizeof(path), "%s/backups/%s.img", dir, id);
    assert_int_equal(unlink(path), 0);
    snprintf(fresh, sizeof(fresh), "%s/new-data-2", p.dir);
    rc = restore(&out, &err, "--from", url, "--data-dir", fresh, "--backup", id, NULL);
    if (rc != 1 || strstr(err, "is missing") == NULL)
        fail_msg("missing image: exit %d, stderr %s", rc, err ? err : "");
    free(out);
    free(err);
    rdt_proc_cleanup(&p);
}

/* ---- a cluster --------------------------------------------------------------------------- */

/* The backup target is shared (one directory, as a bucket would be). */
static struct rdt_cluster g_cluster;

static void cluster_config(char *yaml, size_t len, const char *dir)
{
    config(yaml, len, dir, "    interval: 1h\n");
}

/* Records on every replica; the leader killed mid-backup: its record ends
 * completed or failed, never stuck running; the next backup succeeds; then
 * three replicas restored from one backup start as one new cluster. */
static void test_cluster_leader_killed_and_restore_three(void **state)
{
    (void)state;
    char dir[300], yaml[2048], url[400];
    char tmp[256];
    assert_int_equal(rdt_tmpdir(tmp, sizeof(tmp)), 0);
    snprintf(dir, sizeof(dir), "%s/shared-target", tmp);
    snprintf(url, sizeof(url), "file://%s", dir);
    cluster_config(yaml, sizeof(yaml), dir);
    struct rdt_cluster *c = &g_cluster;
    assert_int_equal(rdt_cluster_start(c, 3, yaml, NULL), 0);
    int leader = rdt_cluster_leader(c, 10000);
    assert_true(leader >= 0);
    struct rdt_proc *lp = &c->procs[leader];
    /* A state big enough that a backup takes a moment. */
    populate(lp, "cl", 10, 400, 4000);

    /* Triggered: the record on every replica. */
    char id[64];
    trigger(lp, id);
    json_t *rec = wait_completed(lp, id);
    for (int i = 0; i < 3; i++) {
        json_t *mine = wait_done(&c->procs[i], id, true, 10000);
        expect_same(rec, mine, "the backup record on every replica");
        json_decref(mine);
        /* Metrics come from the records: every replica knows. */
        assert_true(rdt_metric(&c->procs[i], "recoveryd_backup_last_success_timestamp_seconds") >
                    1700000000);
    }
    json_decref(rec);

    /* Kill the leader while a backup is running. */
    char id2[64];
    trigger(lp, id2);
    bool caught_running = false;
    for (int64_t until = rdt_now_ms() + 5000;;) {
        json_t *r2 = record(lp, id2, true);
        if (r2 != NULL) {
            caught_running = strcmp(status_of(r2), "running") == 0;
            json_decref(r2);
            break;
        }
        assert_true(rdt_now_ms() < until);
    }
    assert_int_equal(rdt_proc_kill9(lp), 0);
    if (!caught_running)
        print_message("note: the backup completed before the leader could be killed\n");
    int next = rdt_cluster_leader(c, 10000 * rdt_time_factor());
    assert_true(next >= 0 && next != leader);
    struct rdt_proc *np = &c->procs[next];
    /* Never stuck: completed (its manifest made it) or failed (it did not). */
    json_t *r2 = NULL;
    for (int64_t until = rdt_now_ms() + 15000 * rdt_time_factor();;) {
        r2 = record(np, id2, false);
        if (r2 == NULL && !caught_running)
            break; /* its BEGIN never committed: nothing to settle */
        if (r2 != NULL && strcmp(status_of(r2), "running") != 0)
            break;
        json_decref(r2);
        r2 = NULL;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(20);
    }
    if (r2 != NULL) {
        const char *st = status_of(r2);
        assert_true(strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0);
        if (strcmp(st, "failed") == 0)
            assert_non_null(strstr(json_string_value(json_object_get(r2, "error")),
                                   "leader changed before it completed"));
        json_decref(r2);
    }
    /* The next backup succeeds, on the new leader. */
    char id3[64];
    trigger(np, id3);
    json_t *r3 = wait_completed(np, id3);
    json_decref(r3);
    assert_int_equal(rdt_metric(np, "recoveryd_backup_records{status=\"running\"}"), 0);

    /* Restore the three from that backup into a new cluster: new ports, the
     * same peers for all. */
    json_t *before = durable_view(np);
    for (int i = 0; i < 3; i++)
        if (c->procs[i].pid > 0)
            assert_int_equal(rdt_proc_stop(&c->procs[i], NULL), 0);
    struct rdt_cluster fresh = {.n = 3};
    char peers[3][128];
    for (int i = 0; i < 3; i++)
        assert_int_equal(rdt_proc_prepare(&fresh.procs[i]), 0);
    for (int i = 0; i < 3; i++)
        snprintf(peers[i], sizeof(peers[i]), "%d=127.0.0.1:%u=%s", i + 1,
                 (unsigned)fresh.procs[i].raft_port, fresh.procs[i].base_url);
    char digests[3][32];
    for (int i = 0; i < 3; i++) {
        struct rdt_proc *p = &fresh.procs[i];
        char rid[8], *out = NULL, *err = NULL;
        snprintf(rid, sizeof(rid), "%d", i + 1);
        int rc = restore(&out, &err, "--from", url, "--backup", id3, "--data-dir", p->data_dir,
                         "--replica-id", rid, "--peer", peers[0], "--peer", peers[1], "--peer",
                         peers[2], NULL);
        if (rc != 0)
            fail_msg("restore %d exited %d: %s%s", i + 1, rc, out ? out : "", err ? err : "");
        const char *d = strstr(out, "state digest ");
        assert_non_null(d);
        snprintf(digests[i], sizeof(digests[i]), "%.16s", d + strlen("state digest "));
        free(out);
        free(err);
        size_t off = (size_t)snprintf(p->cluster_yaml, sizeof(p->cluster_yaml),
                                      "  replica_id: %d\n  peers:\n", i + 1);
        for (int k = 0; k < 3; k++) {
            char api[sizeof(fresh.procs[k].base_url)]; /* a copy: not inside the destination */
            memcpy(api, fresh.procs[k].base_url, sizeof(api));
            off += (size_t)snprintf(p->cluster_yaml + off, sizeof(p->cluster_yaml) - off,
                                    "    - {id: %d, address: 127.0.0.1:%u, api_url: %s}\n", k + 1,
                                    (unsigned)fresh.procs[k].raft_port, api);
        }
    }
    /* One state, byte for byte. */
    assert_string_equal(digests[0], digests[1]);
    assert_string_equal(digests[0], digests[2]);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rdt_proc_start(&fresh.procs[i], yaml), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rdt_wait_ready(&fresh.procs[i], READY_MS), 0);
    int nl = rdt_cluster_leader(&fresh, 10000);
    assert_true(nl >= 0);
    /* A write after the restore reaches all three: one cluster. */
    assert_int_equal(rdt_register(&fresh.procs[nl], "after-restore", 1, NULL), 0);
    for (int i = 0; i < 3; i++) {
        json_t *view = NULL;
        for (int64_t until = rdt_now_ms() + 10000;;) {
            view = durable_view(&fresh.procs[i]);
            if (json_object_get(view, "after-restore") != NULL)
                break;
            json_decref(view);
            assert_true(rdt_now_ms() < until);
            rdt_sleep_ms(20);
        }
        json_object_del(view, "after-restore");
        expect_same(before, view, "a restored replica's agents and tasks");
        json_decref(view);
    }
    json_decref(before);
    rdt_cluster_cleanup(&fresh);
    rdt_cluster_cleanup(c);
    rdt_rmtree(tmp);
}

/* ---- continuous archiving --------------------------------------------------------- */

/* The agents' ids a daemon knows (sorted by the API). */
static json_t *node_ids(struct rdt_proc *p)
{
    json_t *ids = json_array();
    char cursor[300] = "";
    for (;;) {
        char path[400];
        snprintf(path, sizeof(path), "/api/v1/nodes?limit=1000&stale=true%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
        assert_int_equal(r.status, 200);
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(r.json, "items"), i, it)
            json_array_append(ids, json_object_get(it, "node_id"));
        json_t *next = json_object_get(r.json, "next_cursor");
        bool more = json_is_string(next);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        rdt_resp_free(&r);
        if (!more)
            return ids;
    }
}

/* Restores `url` (with `extra` arguments, NULL-terminated) into a fresh
 * single-replica daemon *q and starts it. */
static void restore_and_start(struct rdt_proc *q, const char *url, const char *a1, const char *a2)
{
    memset(q, 0, sizeof(*q));
    assert_int_equal(rdt_proc_prepare(q), 0);
    char raft[64], *out = NULL, *err = NULL;
    snprintf(raft, sizeof(raft), "127.0.0.1:%u", (unsigned)q->raft_port);
    int rc = restore(&out, &err, "--from", url, "--data-dir", q->data_dir, "--raft-address", raft,
                     a1, a2, NULL);
    if (rc != 0)
        fail_msg("restore %s %s exited %d: %s%s", a1 ? a1 : "", a2 ? a2 : "", rc, out ? out : "",
                 err ? err : "");
    free(out);
    free(err);
    assert_int_equal(rdt_proc_start(q, base_yaml), 0);
    assert_int_equal(rdt_wait_ready(q, READY_MS), 0);
}

static void wait_archived(struct rdt_proc *p, long long index)
{
    for (int64_t until = rdt_now_ms() + 10000 * rdt_time_factor();;) {
        if (rdt_metric(p, "recoveryd_archive_lag_entries") == 0 &&
            rdt_metric(p, "recoveryd_archive_index") >= index)
            return;
        if (rdt_now_ms() >= until)
            fail_msg("the archive did not reach index %lld", index);
        rdt_sleep_ms(20);
    }
}

/* One daemon archiving every 200 ms to a file target in its directory
 * (`dir`, as `url`), once its first backup, which archiving starts from, is
 * complete. */
static void start_archiving(struct rdt_proc *p, char dir[300], char url[400])
{
    char yaml[2048];
    assert_int_equal(rdt_proc_prepare(p), 0);
    snprintf(dir, 300, "%s/target", p->dir);
    snprintf(url, 400, "file://%s", dir);
    config(yaml, sizeof(yaml), dir, "    interval: 1h\n    archive:\n      max_delay: 200ms\n");
    assert_int_equal(rdt_proc_start(p, yaml), 0);
    assert_int_equal(rdt_wait_ready(p, READY_MS), 0);
    for (int64_t until = rdt_now_ms() + 10000 * rdt_time_factor();;) {
        if (rdt_metric(p, "recoveryd_backups_total{status=\"completed\"}") >= 1)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(20);
    }
}

/* A daemon killed with -9: restored to the end of the archive (every
 * registration), to an index and to a time (exactly those before). */
static void test_archive_point_in_time(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    char dir[300], url[400];
    start_archiving(&p, dir, url);
    enum { N = 12 };
    long long index[N];
    char at[N][40];
    for (int i = 0; i < N; i++) {
        char id[32], path[64];
        snprintf(id, sizeof(id), "pitr-%02d", i);
        assert_int_equal(rdt_register(&p, id, 1, NULL), 0);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&p, RDT_H1, "/health", &r), 0);
        index[i] = json_integer_value(json_object_get(r.json, "applied_index"));
        rdt_resp_free(&r);
        snprintf(path, sizeof(path), "/api/v1/nodes/%s", id);
        assert_int_equal(rdt_get(&p, RDT_H1, path, &r), 0);
        snprintf(at[i], sizeof(at[i]), "%s",
                 json_string_value(json_object_get(r.json, "registered_at")));
        rdt_resp_free(&r);
    }
    wait_archived(&p, index[N - 1]);
    assert_int_equal(rdt_proc_kill9(&p), 0);

    /* To the end: every registration. */
    struct rdt_proc q = {0};
    restore_and_start(&q, url, NULL, NULL);
    json_t *ids = node_ids(&q);
    assert_int_equal(json_array_size(ids), N);
    json_decref(ids);
    rdt_proc_cleanup(&q);
    /* To an index: those registered at or before it. */
    char arg[64];
    snprintf(arg, sizeof(arg), "%lld", index[4]);
    restore_and_start(&q, url, "--to-index", arg);
    ids = node_ids(&q);
    assert_int_equal(json_array_size(ids), 5);
    assert_string_equal(json_string_value(json_array_get(ids, 4)), "pitr-04");
    json_decref(ids);
    rdt_proc_cleanup(&q);
    /* To a time: those registered at or before it. */
    int before = 0;
    for (int i = 0; i < N; i++)
        before += strcmp(at[i], at[7]) <= 0;
    restore_and_start(&q, url, "--to-time", at[7]);
    ids = node_ids(&q);
    assert_int_equal(json_array_size(ids), before);
    json_decref(ids);
    rdt_proc_cleanup(&q);
    /* The backup alone. */
    restore_and_start(&q, url, "--no-archive", NULL);
    ids = node_ids(&q);
    assert_int_equal(json_array_size(ids), 0);
    json_decref(ids);
    rdt_proc_cleanup(&q);
    /* Past the end of the archive: refused, saying where it ends. */
    char *out = NULL, *err = NULL, fresh[320];
    snprintf(fresh, sizeof(fresh), "%s/never", p.dir);
    snprintf(arg, sizeof(arg), "%lld", index[N - 1] + 1000);
    int rc = restore(&out, &err, "--from", url, "--data-dir", fresh, "--to-index", arg, NULL);
    if (rc != 1 || strstr(err, "past the end of the archive") == NULL)
        fail_msg("--to-index past the end: exit %d, stderr %s", rc, err ? err : "");
    free(out);
    free(err);
    rdt_proc_cleanup(&p);
}

/* The archive's segments under dir/archive/<cluster id>/, sorted (names
 * sort by index), as paths; the caller frees them. */
static size_t segments(const char *dir, char ***out)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/archive", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    char cid[256] = "";
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            snprintf(cid, sizeof(cid), "%s", e->d_name);
    closedir(d);
    snprintf(path, sizeof(path), "%s/archive/%s", dir, cid);
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    assert_true(n >= 0);
    char **paths = calloc((size_t)n + 1, sizeof(*paths));
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (strstr(names[i]->d_name, ".zst") != NULL) {
            char full[800];
            snprintf(full, sizeof(full), "%s/%s", path, names[i]->d_name);
            paths[k++] = strdup(full);
        }
        free(names[i]);
    }
    free(names);
    *out = paths;
    return k;
}

static void free_segments(char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

/*
 * A byte of the zstd frame `z` whose flip decompresses cleanly to other
 * bytes when the frame's content checksum is not looked at (the frame
 * copied without it): a damage only that checksum can catch. -1 if none.
 */
static long silent_damage(const uint8_t *z, size_t n)
{
    uint8_t *c = malloc(n);
    assert_non_null(c);
    memcpy(c, z, n);
    size_t m = n;
    if (c[4] & 0x04) { /* Content_Checksum_flag (RFC 8878): drop the checksum */
        c[4] &= (uint8_t)~0x04;
        m -= 4;
    }
    unsigned long long raw = ZSTD_getFrameContentSize(c, m);
    assert_true(raw != ZSTD_CONTENTSIZE_ERROR && raw != ZSTD_CONTENTSIZE_UNKNOWN);
    uint8_t *want = malloc(raw + 1), *got = malloc(raw + 1);
    assert_non_null(want);
    assert_non_null(got);
    assert_int_equal(ZSTD_decompress(want, raw, c, m), raw);
    long found = -1;
    /* Outwards from the middle (the frame's header and its last block's
     * end are left alone). */
    for (long k = 0; k < (long)m && found < 0; k++) {
        long off = (long)m / 2 + (k % 2 ? -(k / 2 + 1) : k / 2);
        if (off < 24 || off >= (long)m - 8)
            continue;
        c[off] ^= 0xff;
        size_t r = ZSTD_decompress(got, raw + 1, c, m);
        if (!ZSTD_isError(r) && (r != raw || memcmp(got, want, raw) != 0))
            found = off;
        c[off] ^= 0xff;
    }
    free(want);
    free(got);
    free(c);
    return found;
}

/* `n` registrations with labels that do not compress to nothing; the index
 * of the last. */
static long long register_labelled(struct rdt_proc *p, const char *prefix, int n)
{
    long long index = 0;
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < n; i++) {
        char hex[65], body[400];
        for (int k = 0; k < 64; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            hex[k] = "0123456789abcdef"[x & 15];
        }
        hex[64] = '\0';
        snprintf(
            body, sizeof(body),
            "{\"node_id\":\"%s-%02d\",\"capacity\":{\"slots\":1},\"labels\":{\"model\":\"%s\"}}",
            prefix, i, hex);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_post(p, RDT_H1, "/api/v1/nodes", body, &r), 0);
        assert_int_equal(r.status, 201);
        rdt_resp_free(&r);
        assert_int_equal(rdt_get(p, RDT_H1, "/health", &r), 0);
        index = json_integer_value(json_object_get(r.json, "applied_index"));
        rdt_resp_free(&r);
    }
    return index;
}

/* A segment of the archive damaged where it is stored, in a way that
 * decompresses cleanly (only the frame's checksum shows it): the restore
 * to the end is refused, naming the segment and what can still be
 * restored; the restore up to before it holds exactly the writes before it. */
static void test_archive_damaged_segment(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    char dir[300], url[400];
    start_archiving(&p, dir, url);
    enum { N1 = 6, N2 = 40 };
    long long first = register_labelled(&p, "before", N1);
    wait_archived(&p, first);
    char **segs;
    size_t n_before = segments(dir, &segs);
    assert_true(n_before >= 1);
    free_segments(segs, n_before);
    long long second = register_labelled(&p, "after", N2);
    wait_archived(&p, second);
    assert_int_equal(rdt_proc_kill9(&p), 0);

    /* The first segment written after the first round. */
    size_t n_all = segments(dir, &segs);
    assert_true(n_all > n_before);
    const char *victim = segs[n_before];
    FILE *f = fopen(victim, "r+b");
    assert_non_null(f);
    uint8_t z[1 << 16];
    size_t zn = fread(z, 1, sizeof(z), f);
    assert_true(zn > 64 && zn < sizeof(z));
    long off = silent_damage(z, zn);
    if (off < 0)
        fail_msg("no byte of %s (%zu bytes) decompresses cleanly when flipped", victim, zn);
    fseek(f, off, SEEK_SET);
    fputc(z[off] ^ 0xff, f);
    fclose(f);

    char fresh[320], *out = NULL, *err = NULL;
    snprintf(fresh, sizeof(fresh), "%s/never", p.dir);
    int rc = restore(&out, &err, "--from", url, "--data-dir", fresh, NULL);
    const char *base = strrchr(victim, '/') + 1;
    if (rc != 1 || err == NULL || strstr(err, base) == NULL || strstr(err, "is damaged") == NULL ||
        strstr(err, "checksum") == NULL || strstr(err, "--to-index") == NULL)
        fail_msg("a segment damaged at byte %ld: exit %d, stdout %s, stderr %s", off, rc,
                 out ? out : "", err ? err : "");
    /* The index it names: the archive up to there is whole. */
    const char *at = strstr(err, "(--to-index ");
    assert_non_null(at);
    char arg[32];
    snprintf(arg, sizeof(arg), "%lld", strtoll(at + strlen("(--to-index "), NULL, 10));
    assert_true(strtoll(arg, NULL, 10) >= first && strtoll(arg, NULL, 10) < second);
    free(out);
    free(err);
    struct stat st;
    assert_true(stat(fresh, &st) != 0 || count_objects(fresh) == 0);

    struct rdt_proc q = {0};
    restore_and_start(&q, url, "--to-index", arg);
    json_t *ids = node_ids(&q);
    assert_int_equal(json_array_size(ids), N1);
    for (size_t i = 0; i < json_array_size(ids); i++)
        assert_non_null(strstr(json_string_value(json_array_get(ids, i)), "before-"));
    json_decref(ids);
    rdt_proc_cleanup(&q);
    free_segments(segs, n_all);
    rdt_proc_cleanup(&p);
}

/* The disaster: three replicas under a steady writer, all killed at once;
 * three new replicas restored from the target hold every write that was
 * acknowledged more than max_delay (1 s) before. */
static void test_archive_disaster_three(void **state)
{
    (void)state;
    char dir[300], yaml[2048], url[400], tmp[256];
    assert_int_equal(rdt_tmpdir(tmp, sizeof(tmp)), 0);
    snprintf(dir, sizeof(dir), "%s/shared-target", tmp);
    snprintf(url, sizeof(url), "file://%s", dir);
    config(yaml, sizeof(yaml), dir, "    interval: 1h\n    archive:\n      max_delay: 1s\n");
    struct rdt_cluster c;
    assert_int_equal(rdt_cluster_start(&c, 3, yaml, NULL), 0);
    int leader = rdt_cluster_leader(&c, 10000);
    assert_true(leader >= 0);
    for (int64_t until = rdt_now_ms() + 10000 * rdt_time_factor();;) {
        if (rdt_metric(&c.procs[leader], "recoveryd_archive_index") > 0)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(20);
    }
    /* A steady writer; then every replica dies at once. */
    enum { MAX = 4000 };
    static int64_t acked[MAX];
    int n = 0, first = leader;
    /* Longer than the window allowed to be lost (1 s, scaled in slow builds). */
    int64_t start = rdt_now_ms(), end = start + 2000 + 1000 * rdt_time_factor();
    while (rdt_now_ms() < end && n < MAX) {
        /* Paced to span the whole window (at most MAX writes in it): a fast
         * build that ran out of MAX early would kill right after, leaving
         * no write older than the window. */
        while ((int64_t)n * (end - start) > (rdt_now_ms() - start) * (MAX - 1))
            rdt_sleep_ms(1);
        char body[96];
        snprintf(body, sizeof(body), "{\"node_id\":\"dis-%04d\",\"capacity\":{\"slots\":1}}", n);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_cluster_request(&c, &first, "POST", "/api/v1/nodes", body, 5000, &r),
                         0);
        assert_int_equal(r.status, 201);
        rdt_resp_free(&r);
        acked[n++] = rdt_now_ms();
    }
    int64_t killed = rdt_now_ms();
    for (int i = 0; i < 3; i++)
        assert_int_equal(rdt_proc_kill9(&c.procs[i]), 0);

    struct rdt_cluster fresh = {.n = 3};
    char peers[3][128];
    for (int i = 0; i < 3; i++)
        assert_int_equal(rdt_proc_prepare(&fresh.procs[i]), 0);
    for (int i = 0; i < 3; i++)
        snprintf(peers[i], sizeof(peers[i]), "%d=127.0.0.1:%u=%s", i + 1,
                 (unsigned)fresh.procs[i].raft_port, fresh.procs[i].base_url);
    for (int i = 0; i < 3; i++) {
        struct rdt_proc *p = &fresh.procs[i];
        char rid[8], *out = NULL, *err = NULL;
        snprintf(rid, sizeof(rid), "%d", i + 1);
        int rc = restore(&out, &err, "--from", url, "--data-dir", p->data_dir, "--replica-id", rid,
                         "--peer", peers[0], "--peer", peers[1], "--peer", peers[2], NULL);
        if (rc != 0)
            fail_msg("restore %d exited %d: %s%s", i + 1, rc, out ? out : "", err ? err : "");
        free(out);
        free(err);
        size_t off = (size_t)snprintf(p->cluster_yaml, sizeof(p->cluster_yaml),
                                      "  replica_id: %d\n  peers:\n", i + 1);
        for (int k = 0; k < 3; k++) {
            char api[sizeof(fresh.procs[k].base_url)]; /* a copy: not inside the destination */
            memcpy(api, fresh.procs[k].base_url, sizeof(api));
            off += (size_t)snprintf(p->cluster_yaml + off, sizeof(p->cluster_yaml) - off,
                                    "    - {id: %d, address: 127.0.0.1:%u, api_url: %s}\n", k + 1,
                                    (unsigned)fresh.procs[k].raft_port, api);
        }
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(rdt_proc_start(&fresh.procs[i], yaml), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rdt_wait_ready(&fresh.procs[i], READY_MS), 0);
    /* Every write acknowledged more than 1 s before the kill, one by one. */
    int64_t horizon = killed - 1000 * rdt_time_factor();
    int lost_recent = 0, must = 0;
    for (int r = 0; r < 3; r++) {
        json_t *ids = node_ids(&fresh.procs[r]);
        for (int i = 0; i < n; i++) {
            char id[32];
            snprintf(id, sizeof(id), "dis-%04d", i);
            bool found = false;
            size_t k;
            json_t *v;
            json_array_foreach(ids, k, v) found |= strcmp(json_string_value(v), id) == 0;
            if (acked[i] <= horizon) {
                must += r == 0;
                if (!found)
                    fail_msg("replica %d lost %s, acknowledged %lld ms before the kill", r + 1, id,
                             (long long)(killed - acked[i]));
            } else if (!found && r == 0) {
                lost_recent++;
            }
        }
        json_decref(ids);
    }
    print_message("%d writes, %d acknowledged more than 1 s before the kill, all restored; %d "
                  "of the last second lost\n",
                  n, must, lost_recent);
    assert_true(must > 0);
    rdt_cluster_cleanup(&fresh);
    rdt_cluster_cleanup(&c);
    rdt_rmtree(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trigger_verify_and_damage),
        cmocka_unit_test(test_no_target),
        cmocka_unit_test(test_target_not_a_backup_plugin),
        cmocka_unit_test(test_schedule_and_retention_by_count),
        cmocka_unit_test(test_retention_by_age),
        cmocka_unit_test(test_restore_single_replica),
        cmocka_unit_test(test_restore_bad_input),
        cmocka_unit_test(test_cluster_leader_killed_and_restore_three),
        cmocka_unit_test(test_archive_point_in_time),
        cmocka_unit_test(test_archive_damaged_segment),
        cmocka_unit_test(test_archive_disaster_three),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
