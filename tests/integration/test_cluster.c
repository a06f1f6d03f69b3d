/*
 * Three real recoveryd processes on loopback as one raft cluster:
 * - followers send writes and consistent reads to the leader (307) and
 *   answer ?stale=true reads themselves, with their applied index;
 * - kill -9 of the leader: a new leader commits within 3 s (by the engine's
 *   own stamps, scaled by rdt_time_factor()), the old one restarts (as its
 *   supervisor would) and rejoins;
 * - SIGSTOP of the leader past an election timeout, then SIGCONT: the old
 *   leader acknowledges nothing it did not commit and steps down;
 * - a follower whose data directory was wiped rejoins through a snapshot;
 * - the replicas snapshot at indexes a third of a cycle apart, not at once;
 * - a fourth replica joins (--join) and is promoted to voter, and a
 *   replica is removed, while writes go on.
 * Every test ends by checking that every acknowledged write is on every
 * replica that is still a member.
 */
#include "cmocka_all.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_log.h"

static struct rdt_cluster cl;

static const char extra[] = "storage:\n"
                            "  snapshot_threshold: 64\n"
                            "  snapshot_trailing: 16\n"
                            "fault_tolerance:\n"
                            "  partition:\n"
                            "    min_nodes: 100\n"
                            "    alert_after: 1s\n"
                            "plugins:\n"
                            "  instances:\n"
                            "    - {name: heartbeat, required: true}\n"
                            "    - {name: log}\n";

static int setup(void **state)
{
    (void)state;
    return rdt_cluster_start(&cl, 3, extra, NULL);
}

static int teardown(void **state)
{
    (void)state;
    if (getenv("RDT_VERBOSE"))
        for (int i = 0; i < cl.n; i++)
            rdt_proc_print_log_tail(&cl.procs[i], 40);
    rdt_cluster_cleanup(&cl);
    return 0;
}

/* Acknowledged writes: agents registered through the cluster. */
static char acked[2600][32];
static int n_acked;
static int first = 0;

/* Registers `id` through whichever replica answers; true when acknowledged. */
static bool register_agent(const char *id, int timeout_ms)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":1}}", id);
    struct rdt_resp r = {0};
    int rc = rdt_cluster_request(&cl, &first, "POST", "/api/v1/nodes", body, timeout_ms, &r);
    bool ok = rc == 0 && r.status == 201;
    rdt_resp_free(&r);
    if (ok && n_acked < 2600)
        snprintf(acked[n_acked++], sizeof(acked[0]), "%s", id);
    return ok;
}

/* Every acknowledged agent is on replica `i` (stale read: its own state),
 * within `timeout_ms` for it to catch up. */
static void expect_all_on(int i, int timeout_ms)
{
    struct rdt_proc *p = &cl.procs[i];
    int64_t deadline = rdt_now_ms() + timeout_ms;
    for (int k = 0; k < n_acked; k++) {
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/nodes/%s?stale=true", acked[k]);
        for (;;) {
            struct rdt_resp r = {0};
            assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
            long st = r.status;
            rdt_resp_free(&r);
            if (st == 200)
                break;
            if (rdt_now_ms() > deadline)
                fail_msg("replica %d lacks acknowledged agent %s (status %ld)", i + 1, acked[k],
                         st);
            rdt_sleep_ms(20);
        }
    }
}

static void test_followers_redirect_and_serve_stale_reads(void **state)
{
    (void)state;
    n_acked = 0;
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    int F = (L + 1) % cl.n;
    struct rdt_resp r = {0};
    /* A write sent to a follower: 307 to the same path on the leader. */
    assert_int_equal(rdt_post(&cl.procs[F], RDT_H1, "/api/v1/nodes",
                              "{\"node_id\":\"red-1\",\"capacity\":{\"slots\":1}}", &r),
                     0);
    assert_int_equal(r.status, 307);
    assert_string_equal(rdt_err_code(&r), "not_leader");
    char want[128];
    snprintf(want, sizeof(want), "%s/api/v1/nodes", cl.procs[L].base_url);
    assert_string_equal(r.location, want);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.leader")),
                        cl.procs[L].base_url);
    rdt_resp_free(&r);
    /* Following it (same method, same body) registers the agent once. */
    first = F;
    assert_true(register_agent("red-1", 5000));
    assert_int_equal(first, L);
    /* A consistent read on a follower is redirected too... */
    assert_int_equal(rdt_get(&cl.procs[F], RDT_H1, "/api/v1/nodes/red-1", &r), 0);
    assert_int_equal(r.status, 307);
    rdt_resp_free(&r);
    /* ...and answered by the leader, with its applied index. */
    assert_int_equal(rdt_get(&cl.procs[L], RDT_H1, "/api/v1/nodes/red-1", &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(strtoull(r.applied_index, NULL, 10) > 0);
    rdt_resp_free(&r);
    /* A stale read is the follower's own, once it applied the write. */
    expect_all_on(F, 5000);
    assert_int_equal(rdt_get(&cl.procs[F], RDT_H2, "/api/v1/nodes/red-1?stale=true", &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(strtoull(r.applied_index, NULL, 10) > 0);
    rdt_resp_free(&r);
    /* Local routes are answered by the replica asked. */
    assert_int_equal(rdt_get(&cl.procs[F], RDT_H1, "/api/v1/health/cluster", &r), 0);
    assert_int_equal(r.status, 200);
    if (!json_is_true(rdt_json_path(r.json, "quorum.has_quorum")))
        fail_msg("no quorum in %s", r.body);
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "quorum.leader")), L + 1);
    json_t *reps = rdt_json_path(r.json, "quorum.replicas");
    assert_int_equal(json_array_size(reps), 3);
    rdt_resp_free(&r);
    /* Every replica's view: all three reachable (the polls run every 500 ms). */
    for (int64_t until = rdt_now_ms() + 5000;;) {
        assert_int_equal(rdt_get(&cl.procs[F], RDT_H1, "/api/v1/cluster/replicas", &r), 0);
        assert_int_equal(r.status, 200);
        size_t i, up = 0;
        json_t *x;
        json_array_foreach(rdt_json_path(r.json, "replicas"), i, x)
        {
            up += json_is_true(json_object_get(x, "reachable"));
            assert_string_equal(json_string_value(json_object_get(x, "voter_role")), "voter");
        }
        rdt_resp_free(&r);
        if (up == 3)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(50);
    }
}

static void test_kill9_leader_new_leader_commits(void **state)
{
    (void)state;
    n_acked = 0;
    char id[32];
    for (int k = 0; k < 20; k++) {
        snprintf(id, sizeof(id), "k-%d", k);
        assert_true(register_agent(id, 5000));
    }
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    assert_int_equal(rdt_proc_kill9(&cl.procs[L]), 0);
    int64_t t_kill = rd_now_ms(); /* wall clock, like the engine's stamps */
    int64_t t0 = rdt_now_ms();
    first = (L + 1) % cl.n;
    assert_true(register_agent("k-after", 10000));
    int64_t took = rdt_now_ms() - t0;
    int L2 = rdt_cluster_leader(&cl, 5000);
    assert_true(L2 >= 0 && L2 != L);
    /* By the engine's clock, not this thread's: when the new leader took
     * over (its event=leader line) and when it stamped the first write. */
    /* /health can say "leader" before the role watch (every 10 ms) logs
     * event=leader: wait for the line (seen missing in fresh-clone CI). */
    int64_t t_leader = -1;
    bool led_before = false;
    for (int64_t until = rdt_now_ms() + rdt_ms(5000);;) {
        char *log = rdt_proc_log(&cl.procs[L2]);
        assert_non_null(log);
        t_leader = rdt_log_time(log, " event=leader ", t_kill);
        led_before = t_leader < 0 && strstr(log, " event=leader ") != NULL;
        free(log);
        if (t_leader >= 0 || led_before || rdt_now_ms() >= until)
            break;
        rdt_sleep_ms(20);
    }
    if (led_before) {
        /* Leadership had moved to L2 before the kill (an election under a
         * loaded sanitizer build; the leader we asked was behind): there
         * is no failover to time, the writes below still must hold. */
        fprintf(stderr, "replica %d led before the kill: no failover time\n", L2 + 1);
        t_leader = t_kill;
    }
    assert_true(t_leader >= t_kill);
    struct rdt_resp r = {0};
    assert_int_equal(
        rdt_cluster_request(&cl, &first, "GET", "/api/v1/nodes/k-after", NULL, 5000, &r), 0);
    assert_int_equal(r.status, 200);
    int64_t t_write;
    assert_int_equal(
        rd_time_parse(json_string_value(json_object_get(r.json, "registered_at")), &t_write), 0);
    rdt_resp_free(&r);
    fprintf(stderr,
            "after kill -9 of the leader: replica %d led %lld ms later and stamped the first write "
            "at %lld ms (acknowledged to this thread after %lld ms)\n",
            L2 + 1, (long long)(t_leader - t_kill), (long long)(t_write - t_kill), (long long)took);
    assert_true(t_write - t_kill <= rdt_ms(3000));
    /* The old leader comes back (its supervisor restarts it) and catches up. */
    assert_int_equal(rdt_proc_restart(&cl.procs[L]), 0);
    assert_int_equal(rdt_wait_ready(&cl.procs[L], 15000), 0);
    for (int i = 0; i < cl.n; i++)
        expect_all_on(i, 10000);
}

static void test_sigstop_leader_commits_nothing_in_its_old_term(void **state)
{
    (void)state;
    n_acked = 0;
    assert_true(register_agent("s-0", 5000));
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    assert_int_equal(rdt_proc_signal(&cl.procs[L], SIGSTOP), 0);
    /* The others elect a new leader and go on. */
    first = (L + 1) % cl.n;
    for (int k = 1; k <= 10; k++) {
        char id[32];
        snprintf(id, sizeof(id), "s-%d", k);
        assert_true(register_agent(id, 10000));
    }
    /* Wake the old leader and at once ask it to write. It must not
     * acknowledge what it cannot commit: either it redirects/refuses, or
     * (if it acknowledges) the write is committed everywhere. */
    assert_int_equal(rdt_proc_signal(&cl.procs[L], SIGCONT), 0);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&cl.procs[L], RDT_H1, "/api/v1/nodes",
                              "{\"node_id\":\"s-old\",\"capacity\":{\"slots\":1}}", &r),
                     0);
    fprintf(stderr, "old leader answered a write %ld (%s) after SIGCONT\n", r.status,
            rdt_err_code(&r) ? rdt_err_code(&r) : "ok");
    if (r.status == 201)
        snprintf(acked[n_acked++], sizeof(acked[0]), "%s", "s-old");
    else
        assert_true(r.status == 307 || r.status == 503);
    rdt_resp_free(&r);
    /* It steps down: one leader, not it. */
    int64_t until = rdt_now_ms() + 5000;
    for (;;) {
        assert_int_equal(rdt_get(&cl.procs[L], RDT_H1, "/health", &r), 0);
        bool leads = strcmp(json_string_value(rdt_json_path(r.json, "role")), "leader") == 0;
        rdt_resp_free(&r);
        if (!leads)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(20);
    }
    for (int i = 0; i < cl.n; i++)
        expect_all_on(i, 10000);
}

static void test_wiped_replica_rejoins_by_snapshot(void **state)
{
    (void)state;
    n_acked = 0;
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    int F = (L + 1) % cl.n;
    struct rdt_proc *p = &cl.procs[F];
    assert_int_equal(rdt_proc_kill9(p), 0);
    /* Enough writes for several snapshots (threshold 64 entries). */
    first = L;
    for (int k = 0; k < 200; k++) {
        char id[32];
        snprintf(id, sizeof(id), "w-%d", k);
        assert_true(register_agent(id, 5000));
    }
    /* Its disk is lost: an empty data directory, same identity. */
    assert_int_equal(rdt_rmtree(p->data_dir), 0);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "%s", p->data_dir);
    assert_int_equal(mkdir(cmd, 0700), 0);
    assert_int_equal(rdt_proc_restart(p), 0);
    assert_int_equal(rdt_wait_ready(p, 20000), 0);
    expect_all_on(F, 20000);
    char *log = rdt_proc_log(p);
    assert_non_null(log);
    /* It was brought up to date by a snapshot, not by replaying everything. */
    bool snap = strstr(log, "event=snapshot_restored") != NULL;
    free(log);
    assert_true(snap);
}

/* The indexes of replica `i`'s snapshots (its log's snapshot_imaged
 * lines), at most `max`: how many. */
static int snapshot_indexes(int i, unsigned long long *out, int max)
{
    char *log = rdt_proc_log(&cl.procs[i]);
    assert_non_null(log);
    int n = 0;
    for (const char *at = log; n < max && (at = strstr(at, "event=snapshot_imaged index=")) != NULL;
         at++)
        out[n++] = strtoull(at + strlen("event=snapshot_imaged index="), NULL, 10);
    free(log);
    return n;
}

/* The three replicas apply the same entries but do not snapshot at the
 * same index: replica k (its place in cluster.peers) snapshots k * 64 / 3
 * entries past each multiple of the threshold (64), so that their forks
 * and the copy-on-write faults after them do not come all at once. Each
 * replica's first snapshot is at its phase (libraft may apply a few more
 * entries of one commit first); a later one can come late when the one
 * before is still imaging (the child runs at the lowest priority: on a
 * busy machine it waits), never sooner than half a cycle after it. */
static void test_replicas_snapshot_apart(void **state)
{
    (void)state;
    n_acked = 0;
    first = 0;
    for (int k = 0; k < 300; k++) {
        char id[32];
        snprintf(id, sizeof(id), "s-%d", k);
        assert_true(register_agent(id, 5000));
    }
    unsigned long long idx[3][16];
    int n[3];
    for (int i = 0; i < 3; i++) {
        /* 300 writes are more than 4 cycles; two snapshots imaged. */
        int64_t deadline = rdt_now_ms() + rdt_ms(60000);
        while ((n[i] = snapshot_indexes(i, idx[i], 16)) < 2 && rdt_now_ms() < deadline)
            rdt_sleep_ms(50); /* the children image in the background */
        printf("replica %d snapshotted at", i + 1);
        for (int k = 0; k < n[i]; k++)
            printf(" %llu", idx[i][k]);
        printf("\n");
        if (n[i] < 2)
            fail_msg("replica %d logged %d snapshots after 300 writes", i + 1, n[i]);
        unsigned long long phase = 64 * (unsigned long long)i / 3;
        unsigned long long want = phase >= 32 ? phase : phase + 64;
        if (idx[i][0] < want || idx[i][0] > want + 8)
            fail_msg("replica %d snapshotted first at index %llu, not at its phase (%llu)", i + 1,
                     idx[i][0], want);
        for (int k = 1; k < n[i]; k++)
            if (idx[i][k] < idx[i][k - 1] + 32)
                fail_msg("replica %d snapshotted at %llu, %llu entries after the last", i + 1,
                         idx[i][k], idx[i][k] - idx[i][k - 1]);
    }
}

/* A writer that keeps registering agents while the membership changes. */
static atomic_bool bg_stop;
static char bg_acked[2000][32];
static int bg_n, bg_failed;

static void *bg_writer(void *arg)
{
    (void)arg;
    int at = 0;
    for (int k = 0; !atomic_load(&bg_stop) && bg_n < 2000; k++) {
        char body[128], id[32];
        snprintf(id, sizeof(id), "bg-%d", k);
        snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":1}}", id);
        struct rdt_resp r = {0};
        int rc = rdt_cluster_request(&cl, &at, "POST", "/api/v1/nodes", body, 5000, &r);
        if (rc == 0 && r.status == 201)
            snprintf(bg_acked[bg_n++], sizeof(bg_acked[0]), "%s", id);
        else
            bg_failed++;
        rdt_resp_free(&r);
        rdt_sleep_ms(5); /* steady, not flooding: ~100 writes/s */
    }
    return NULL;
}

/* Waits until the background writer got `more` further acknowledgments. */
static void bg_progress(int more)
{
    int want = bg_n + more;
    for (int64_t until = rdt_now_ms() + 10000; bg_n < want;) {
        if (rdt_now_ms() > until)
            fail_msg("background writes stalled at %d (wanted %d)", bg_n, want);
        rdt_sleep_ms(5);
    }
}

static void test_add_and_remove_replicas_under_load(void **state)
{
    (void)state;
    n_acked = 0;
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    /* A fourth replica starts empty and waits to be added. */
    struct rdt_proc *p4 = &cl.procs[3];
    memset(p4, 0, sizeof(*p4));
    assert_int_equal(rdt_proc_prepare(p4), 0);
    snprintf(p4->cluster_yaml, sizeof(p4->cluster_yaml), "  replica_id: 4\n  join: true\n");
    assert_int_equal(rdt_proc_start(p4, extra), 0);
    cl.n = 4;
    atomic_store(&bg_stop, false);
    bg_n = bg_failed = 0;
    pthread_t writer;
    assert_int_equal(pthread_create(&writer, NULL, bg_writer, NULL), 0);
    char body[256];
    snprintf(body, sizeof(body),
             "{\"id\":4,\"role\":\"standby\",\"address\":\"127.0.0.1:%u\",\"api_url\":\"%s\"}",
             (unsigned)p4->raft_port, p4->base_url);
    first = L;
    int w = 0;
    char id[32];
    for (int k = 0; k < 10; k++, w++) {
        snprintf(id, sizeof(id), "a-%d", w);
        assert_true(register_agent(id, 5000));
    }
    struct rdt_resp r = {0};
    bg_progress(10);
    assert_int_equal(
        rdt_cluster_request(&cl, &first, "POST", "/api/v1/cluster/replicas", body, 10000, &r), 0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    bg_progress(10);
    for (int k = 0; k < 10; k++, w++) {
        snprintf(id, sizeof(id), "a-%d", w);
        assert_true(register_agent(id, 5000));
    }
    /* Promote it to voter: four voters now. */
    assert_int_equal(rdt_cluster_request(&cl, &first, "POST", "/api/v1/cluster/replicas",
                                         "{\"id\":4,\"role\":\"voter\"}", 10000, &r),
                     0);
    assert_int_equal(r.status, 200);
    size_t i, voters = 0;
    json_t *x;
    json_array_foreach(rdt_json_path(r.json, "replicas"), i, x) voters +=
        strcmp(json_string_value(json_object_get(x, "voter_role")), "voter") == 0;
    assert_int_equal(voters, 4);
    rdt_resp_free(&r);
    bg_progress(10);
    /* Promoting it again is a conflict, not a silent success. */
    assert_int_equal(rdt_cluster_request(&cl, &first, "POST", "/api/v1/cluster/replicas",
                                         "{\"id\":4,\"role\":\"voter\"}", 10000, &r),
                     0);
    assert_int_equal(r.status, 409);
    rdt_resp_free(&r);
    expect_all_on(3, 15000);
    /* Remove a follower (not the leader, not the new one). */
    L = rdt_cluster_leader(&cl, 5000);
    int victim = 0;
    while (victim == L || victim == 3)
        victim++;
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/cluster/replicas/%d", victim + 1);
    assert_int_equal(rdt_cluster_request(&cl, &first, "DELETE", path, NULL, 10000, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(rdt_json_path(r.json, "replicas")), 3);
    rdt_resp_free(&r);
    assert_int_equal(rdt_cluster_request(&cl, &first, "DELETE", path, NULL, 10000, &r), 0);
    assert_int_equal(r.status, 404);
    rdt_resp_free(&r);
    bg_progress(10);
    rdt_proc_kill9(&cl.procs[victim]);
    bg_progress(10);
    /* Writes go on with three voters. */
    for (int k = 0; k < 10; k++, w++) {
        snprintf(id, sizeof(id), "a-%d", w);
        assert_true(register_agent(id, 5000));
    }
    atomic_store(&bg_stop, true);
    pthread_join(writer, NULL);
    fprintf(stderr, "background writes during the membership changes: %d acknowledged, %d not\n",
            bg_n, bg_failed);
    assert_true(bg_n >= 50);
    for (int k = 0; k < bg_n && n_acked < 2600; k++)
        snprintf(acked[n_acked++], sizeof(acked[0]), "%s", bg_acked[k]);
    for (int k = 0; k < cl.n; k++)
        if (k != victim)
            expect_all_on(k, 10000);

    /* Strict reconfiguration: three voters, one of them down. Removing a
     * healthy one would leave two voters of which one answers: refused with
     * 409 saying why. Removing the dead one leaves a working pair. */
    L = rdt_cluster_leader(&cl, 5000);
    int down = -1, healthy = -1;
    for (int k = 0; k < cl.n; k++) {
        if (k == victim || k == L)
            continue;
        if (down < 0)
            down = k;
        else
            healthy = k;
    }
    assert_true(down >= 0 && healthy >= 0);
    rdt_proc_kill9(&cl.procs[down]);
    /* Wait until the leader sees it unreachable. */
    int64_t deadline = rdt_now_ms() + 10000;
    bool seen = false;
    while (!seen && rdt_now_ms() < deadline) {
        assert_int_equal(rdt_get(&cl.procs[L], RDT_H1, "/api/v1/cluster/replicas", &r), 0);
        json_array_foreach(rdt_json_path(r.json, "replicas"), i, x)
        {
            if (json_integer_value(json_object_get(x, "id")) == down + 1)
                seen = json_is_false(json_object_get(x, "reachable"));
        }
        rdt_resp_free(&r);
        if (!seen)
            rdt_sleep_ms(50);
    }
    assert_true(seen);
    snprintf(path, sizeof(path), "/api/v1/cluster/replicas/%d", healthy + 1);
    assert_int_equal(rdt_delete(&cl.procs[L], RDT_H1, path, &r), 0);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(r.body, "a quorum needs 2"));
    rdt_resp_free(&r);
    snprintf(path, sizeof(path), "/api/v1/cluster/replicas/%d", down + 1);
    assert_int_equal(rdt_delete(&cl.procs[L], RDT_H1, path, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(rdt_json_path(r.json, "replicas")), 2);
    rdt_resp_free(&r);
    /* The audit trail: the refused removal (409) and the removal, recorded
     * before the change it describes (202: the change follows). */
    const int targets[2] = {healthy + 1, down + 1}, statuses[2] = {409, 202};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof(path), "/api/v1/audit?action=replica_delete&target=%d", targets[k]);
        assert_int_equal(rdt_get(&cl.procs[L], RDT_H1, path, &r), 0);
        assert_int_equal(r.status, 200);
        json_t *recs = json_object_get(r.json, "items");
        assert_int_equal(json_array_size(recs), 1);
        assert_int_equal(
            json_integer_value(rdt_json_path(json_array_get(recs, 0), "outcome.status")),
            statuses[k]);
        rdt_resp_free(&r);
    }
    first = L;
    for (int k = 0; k < 5; k++, w++) {
        snprintf(id, sizeof(id), "a-%d", w);
        assert_true(register_agent(id, 5000));
    }
}

/* The open partition fault about replica `id`, as seen on the leader. */
static json_t *replica_fault(int leader, int id)
{
    struct rdt_resp r = {0};
    assert_int_equal(
        rdt_get(&cl.procs[leader], RDT_H1, "/api/v1/faults/records?fault_type=partition", &r), 0);
    assert_int_equal(r.status, 200);
    json_t *found = NULL, *x;
    size_t i;
    json_array_foreach(rdt_json_path(r.json, "items"), i, x)
    {
        if (json_integer_value(rdt_json_path(x, "metadata.replica_id")) == id) {
            found = json_incref(x);
            break;
        }
    }
    rdt_resp_free(&r);
    return found;
}

/*
 * A follower down longer than partition.alert_after (1 s here) is a
 * partition fault on the leader, resolved when it is back; a replica left
 * without quorum that long alerts NoQuorum itself (it can record nothing),
 * refuses writes with no_quorum and still serves stale reads.
 */
static void test_lost_replicas_are_reported(void **state)
{
    (void)state;
    n_acked = 0;
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    int F = (L + 1) % cl.n, G = (L + 2) % cl.n;
    assert_true(register_agent("p-0", 5000));
    assert_int_equal(rdt_proc_kill9(&cl.procs[F]), 0);
    json_t *f = NULL;
    for (int64_t until = rdt_now_ms() + 10000; (f = replica_fault(L, F + 1)) == NULL;) {
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(100);
    }
    assert_string_equal(json_string_value(json_object_get(f, "status")), "open");
    assert_string_equal(json_string_value(json_object_get(f, "severity_level")), "major");
    json_decref(f);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&cl.procs[L], RDT_H1, "/api/v1/health/cluster", &r), 0);
    assert_true(json_is_true(rdt_json_path(r.json, "quorum.has_quorum"))); /* 2 of 3 */
    rdt_resp_free(&r);
    /* Back: resolved. */
    assert_int_equal(rdt_proc_restart(&cl.procs[F]), 0);
    assert_int_equal(rdt_wait_ready(&cl.procs[F], 15000), 0);
    for (int64_t until = rdt_now_ms() + 10000;;) {
        f = replica_fault(L, F + 1);
        bool resolved =
            f && strcmp(json_string_value(json_object_get(f, "status")), "resolved") == 0;
        json_decref(f);
        if (resolved)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(100);
    }
    /* Now two of three die: the survivor has no quorum. */
    assert_int_equal(rdt_proc_kill9(&cl.procs[F]), 0);
    assert_int_equal(rdt_proc_kill9(&cl.procs[G]), 0);
    assert_int_equal(rdt_await_log(&cl.procs[L], "alert=NoQuorum", rdt_ms(10000)), 0);
    assert_int_equal(rdt_post(&cl.procs[L], RDT_H1, "/api/v1/nodes",
                              "{\"node_id\":\"p-lost\",\"capacity\":{\"slots\":1}}", &r),
                     0);
    assert_int_equal(r.status, 503);
    assert_string_equal(rdt_err_code(&r), "no_quorum");
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&cl.procs[L], RDT_H1, "/api/v1/nodes/p-0?stale=true", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&cl.procs[L], RDT_H1, "/api/v1/health/cluster", &r), 0);
    assert_false(json_is_true(rdt_json_path(r.json, "quorum.has_quorum")));
    assert_string_equal(json_string_value(rdt_json_path(r.json, "overall_health")), "critical");
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&cl.procs[L], RDT_H1, "/ready", &r), 0);
    assert_int_equal(r.status, 503);
    rdt_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_followers_redirect_and_serve_stale_reads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kill9_leader_new_leader_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigstop_leader_commits_nothing_in_its_old_term, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wiped_replica_rejoins_by_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replicas_snapshot_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_and_remove_replicas_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_replicas_are_reported, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
