/*
 * One disaster on one backup target, the same scenario for every target a
 * test has a real server for (tests/integration/test_backup_restore_*.c):
 * a daemon backs up and archives to the target, ten agents register, a
 * triggered backup completes and verifies, two more agents register after
 * it (archived only), the daemon is killed (-9), and `recoveryd restore
 * --from URL` gives a new replica all twelve, the last two from the
 * archive.
 */
#ifndef RDT_DISASTER_H
#define RDT_DISASTER_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmocka_all.h"
#include "harness.h"
#include "rdt_metrics.h"

/* `p`'s applied index (GET /health). */
static inline long long rdt_applied_index(struct rdt_proc *p)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/health", &r), 0);
    long long v = json_integer_value(json_object_get(r.json, "applied_index"));
    rdt_resp_free(&r);
    return v;
}

/* Registers agent `prefix`-`name` and waits until the archive holds it. */
static inline void rdt_register_archived(struct rdt_proc *p, const char *prefix, const char *name)
{
    char id[64];
    snprintf(id, sizeof id, "%s-%s", prefix, name);
    assert_int_equal(rdt_register(p, id, 1, NULL), 0);
    rdt_wait_metric(p, "recoveryd_archive_index", rdt_applied_index(p), 20000);
}

/* Triggers a backup, waits until it completed and verifies it; its id into
 * `id` (64 bytes). */
static inline void rdt_backup_verified(struct rdt_proc *p, char *id)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(p, RDT_H1, "/api/v1/backup/trigger", NULL, &r), 0);
    assert_int_equal(r.status, 202);
    snprintf(id, 64, "%s", json_string_value(json_object_get(r.json, "backup_id")));
    rdt_resp_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/backups/%s", id);
    for (int64_t until = rdt_now_ms() + rdt_ms(20000);;) {
        assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
        const char *st = json_string_value(json_object_get(r.json, "status"));
        bool done = r.status == 200 && strcmp(st, "running") != 0;
        if (done)
            assert_string_equal(st, "completed");
        rdt_resp_free(&r);
        if (done)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(20);
    }
    snprintf(path, sizeof path, "/api/v1/backups/%s/verify", id);
    assert_int_equal(rdt_post(p, RDT_H1, path, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "verified")));
    rdt_resp_free(&r);
}

/*
 * The scenario: `instance` is the backup plugin's entry under
 * plugins.instances (YAML, indented for the list), `prefix` names the
 * agents, `url` is what `recoveryd restore --from` reads.
 */
static inline void rdt_disaster_on(const char *instance, const char *prefix, const char *url)
{
    struct rdt_proc p = {0};
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "fault_tolerance:\n"
             "  detection:\n"
             "    heartbeat_interval: 30s\n"
             "  backup:\n"
             "    interval: 1h\n"
             "    archive:\n"
             "      max_delay: 200ms\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "%s",
             instance);
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, 20000), 0);
    /* The archive starts with a backup; then ten registrations. */
    rdt_wait_metric(&p, "recoveryd_backups_total{status=\"completed\"}", 1, 20000);
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "%02d", i);
        rdt_register_archived(&p, prefix, name);
    }
    char id[64];
    rdt_backup_verified(&p, id);
    /* Two more after the backup, in the archive only; then the disaster. */
    rdt_register_archived(&p, prefix, "late-1");
    rdt_register_archived(&p, prefix, "late-2");
    assert_int_equal(rdt_proc_kill9(&p), 0);

    struct rdt_proc q = {0};
    assert_int_equal(rdt_proc_prepare(&q), 0);
    char raft[64];
    snprintf(raft, sizeof raft, "127.0.0.1:%u", (unsigned)q.raft_port);
    char *argv[] = {RD_BINARY,   "restore",    "--plugins-dir", (char *)rdt_plugins_dir(), "--from",
                    (char *)url, "--data-dir", q.data_dir,      "--raft-address",          raft,
                    NULL};
    char *out = NULL, *err = NULL;
    int rc = rdt_run(argv, rdt_ms(60000), &out, &err);
    if (rc != 0 || strstr(out, id) == NULL || strstr(out, "replayed") == NULL)
        fail_msg("restore exited %d: %s%s", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
    assert_int_equal(
        rdt_proc_start(&q, "fault_tolerance:\n  detection:\n    heartbeat_interval: 30s\n"), 0);
    assert_int_equal(rdt_wait_ready(&q, 20000), 0);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&q, RDT_H1, "/api/v1/nodes?limit=100", &r), 0);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 12);
    rdt_resp_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/nodes/%s-late-2", prefix);
    assert_int_equal(rdt_get(&q, RDT_H1, path, &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    rdt_proc_cleanup(&q);
    rdt_proc_cleanup(&p);
}

#endif
