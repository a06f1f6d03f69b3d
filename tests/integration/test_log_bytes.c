/*
 * The raft log kept in memory, bounded by bytes (storage.snapshot_threshold_bytes
 * and snapshot_trailing_bytes, engine/replica/snapshot.c): a daemon taking
 * checkpoints of the API's maximum size (512 KiB) snapshots whenever the log
 * since the last snapshot holds the byte threshold, long before the entry
 * threshold, its resident memory stays bounded, and a restart finds every
 * acknowledged checkpoint. With the byte threshold off (0) the entry count
 * alone decides, as before: no snapshot at all in the same writes.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"

#define TASKS       4
#define CKPT_DATA   (512 * 1024 - 16) /* {"blob":"..."}: just under the 512-KiB limit */
#define WRITES      240               /* 120 MiB of checkpoints in all */
#define THRESHOLD_B (8 << 20)
#define TRAILING_B  (2 << 20)
/* Resident memory allowed: the log (threshold + trailing + the writes made
 * while a snapshot is imaged), the state (TASKS checkpoints) and the
 * engine's own ~20 MiB, with room; without the byte bound the same writes
 * hold 120 MiB of log alone. */
#define RSS_LIMIT_KIB (80 * 1024)

static const char *base_yaml = "fault_tolerance:\n"
                               "  detection:\n"
                               "    heartbeat_interval: 30s\n";

struct world {
    struct rdt_proc p;
    char ids[TASKS][64];
    long long attempts[TASKS];
    int versions[TASKS];
    char *body;
};

/* VmRSS of the daemon in KiB, 0 when it cannot be read. */
static long rss_kib(const struct rdt_proc *p)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    FILE *f = fopen(path, "r");
    long kib = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* An agent with TASKS slots and TASKS tasks placed and running on it. */
static void start(struct world *w, const char *storage_yaml)
{
    char yaml[512];
    snprintf(yaml, sizeof(yaml), "%s%s", base_yaml, storage_yaml);
    assert_int_equal(rdt_proc_start(&w->p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&w->p, rdt_ms(15000)), 0);
    long long epoch = 0;
    assert_int_equal(rdt_register(&w->p, "big-1", TASKS, &epoch), 0);
    struct rdt_resp r = {0};
    for (int i = 0; i < TASKS; i++) {
        assert_int_equal(rdt_post(&w->p, RDT_H1, "/api/v1/tasks", "{\"payload\":{\"n\":1}}", &r),
                         0);
        assert_int_equal(r.status, 201);
        snprintf(w->ids[i], sizeof(w->ids[i]), "%s",
                 json_string_value(rdt_json_path(r.json, "task_id")));
        rdt_resp_free(&r);
    }
    /* Heartbeat answers hand out the attempts as the tasks are placed, each
     * once (told again only a lease later). */
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    int found = 0;
    while (found < TASKS) {
        assert_true(rdt_now_ms() < deadline);
        assert_int_equal(rdt_heartbeat(&w->p, RDT_H1, "big-1", epoch, 0, &r), 0);
        assert_int_equal(r.status, 200);
        json_t *as = json_object_get(r.json, "assignments");
        for (int i = 0; i < TASKS; i++) {
            size_t k;
            json_t *a;
            json_array_foreach(as, k, a)
            {
                if (w->attempts[i] == 0 &&
                    strcmp(json_string_value(json_object_get(a, "task_id")), w->ids[i]) == 0) {
                    w->attempts[i] = json_integer_value(json_object_get(a, "attempt"));
                    found++;
                }
            }
        }
        rdt_resp_free(&r);
        if (found < TASKS)
            rdt_sleep_ms(20);
    }
    w->body = malloc(CKPT_DATA + 128);
    assert_non_null(w->body);
}

/* One max-size checkpoint of task i, the next version: 200. */
static void write_one(struct world *w, int i)
{
    int v = ++w->versions[i];
    int n = snprintf(w->body, 128, "{\"attempt\":%lld,\"version\":%d,\"data\":{\"blob\":\"",
                     w->attempts[i], v);
    memset(w->body + n, 'a' + (char)(v % 26), CKPT_DATA - 11);
    memcpy(w->body + n + CKPT_DATA - 11, "\"}}", 4);
    char url[256];
    snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", w->p.base_url, w->ids[i]);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_http(RDT_H1, "PUT", url, w->body, strlen(w->body), &r), 0);
    if (r.status != 200)
        fail_msg("checkpoint %d of task %d: %ld %.300s", v, i, r.status, r.body ? r.body : "");
    rdt_resp_free(&r);
}

/* Every task's newest checkpoint is the last version written. */
static void check_versions(struct world *w)
{
    for (int i = 0; i < TASKS; i++) {
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/tasks/%s", w->ids[i]);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&w->p, RDT_H1, path, &r), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(json_integer_value(rdt_json_path(r.json, "checkpoint.version")),
                         w->versions[i]);
        rdt_resp_free(&r);
    }
}

static void finish(struct world *w)
{
    free(w->body);
    rdt_proc_cleanup(&w->p);
}

static void test_snapshots_on_bytes_and_memory_bounded(void **state)
{
    (void)state;
    struct world w = {0};
    char storage[256];
    snprintf(storage, sizeof(storage),
             "storage:\n  snapshot_threshold_bytes: %d\n  snapshot_trailing_bytes: %d\n",
             THRESHOLD_B, TRAILING_B);
    start(&w, storage);
    long start_kib = rss_kib(&w.p), peak_kib = start_kib;
    long long since_max = 0;
    for (int k = 0; k < WRITES; k++) {
        write_one(&w, k % TASKS);
        long kib = rss_kib(&w.p);
        peak_kib = kib > peak_kib ? kib : peak_kib;
        if (k % 16 == 15) {
            long long since = rdt_metric(&w.p, "recoveryd_raft_log_bytes_since_snapshot");
            since_max = since > since_max ? since : since_max;
        }
    }
    long long on_bytes = rdt_metric(&w.p, "recoveryd_raft_snapshots_on_bytes_total");
    long long forked = rdt_metric(&w.p, "recoveryd_raft_snapshots_total{how=\"forked\"}");
    long long trailing = rdt_metric(&w.p, "recoveryd_raft_snapshot_trailing_entries");
    printf("%d checkpoints of %d KiB: %lld snapshots on bytes (%lld forked), trailing entries "
           "%lld; log bytes since a snapshot at most %lld; VmRSS %ld KiB at the start, peak %ld "
           "KiB\n",
           WRITES, CKPT_DATA / 1024, on_bytes, forked, trailing, since_max, start_kib, peak_kib);
    /* 120 MiB over an 8-MiB threshold: a snapshot every 16 writes or so;
     * the entry threshold (8192) was never near. */
    assert_true(on_bytes >= (long long)WRITES * CKPT_DATA / THRESHOLD_B - 2);
    assert_true(forked >= on_bytes);
    /* Trailing: what fits in 2 MiB, 3 entries of 512 KiB, not the 1024 configured. */
    assert_true(trailing <= TRAILING_B / CKPT_DATA);
    /* Sampled between writes: the threshold plus the writes made while the
     * snapshot is imaged and written. */
    assert_true(since_max < THRESHOLD_B + 8 * (CKPT_DATA + 64));
#ifdef __SANITIZE_ADDRESS__
    printf("AddressSanitizer build: its quarantine and shadow memory inflate RSS; the RSS bound "
           "(%d KiB) is not asserted here\n",
           RSS_LIMIT_KIB);
#else
    assert_true(peak_kib > 0);
    if (peak_kib > RSS_LIMIT_KIB)
        fail_msg("peak VmRSS %ld KiB, expected under %d KiB", peak_kib, RSS_LIMIT_KIB);
#endif
    check_versions(&w);

    /* The snapshot and the log after it give back every checkpoint. */
    int code = -1;
    assert_int_equal(rdt_proc_stop(&w.p, &code), 0);
    assert_int_equal(code, 0);
    assert_int_equal(rdt_proc_restart(&w.p), 0);
    assert_int_equal(rdt_wait_ready(&w.p, rdt_ms(15000)), 0);
    check_versions(&w);
    finish(&w);
}

/* Threshold bytes 0: the entry count alone, so these writes take none. */
static void test_bytes_off_counts_entries(void **state)
{
    (void)state;
    struct world w = {0};
    start(&w, "storage:\n  snapshot_threshold_bytes: 0\n");
    long start_kib = rss_kib(&w.p);
    for (int k = 0; k < 40; k++)
        write_one(&w, k % TASKS);
    printf("40 checkpoints of %d KiB with the byte threshold off: VmRSS %ld KiB at the start, "
           "%ld KiB after\n",
           CKPT_DATA / 1024, start_kib, rss_kib(&w.p));
    assert_int_equal(rdt_metric(&w.p, "recoveryd_raft_snapshots_on_bytes_total"), 0);
    assert_int_equal(rdt_metric(&w.p, "recoveryd_raft_snapshots_total{how=\"forked\"}"), 0);
    assert_true(rdt_metric(&w.p, "recoveryd_raft_log_bytes_since_snapshot") >= 40LL * CKPT_DATA);
    check_versions(&w);
    finish(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshots_on_bytes_and_memory_bounded),
        cmocka_unit_test(test_bytes_off_counts_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
