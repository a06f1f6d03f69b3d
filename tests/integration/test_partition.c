/*
 * Network partitions between three real recoveryd processes, each in its
 * own network namespace (tests/lib/harness.h, rdt_net_*): the replicas talk
 * over a veth pair per two of them, which the test cuts; the test reaches
 * every replica's API over an access link of its own that is never cut.
 *
 * - The leader isolated (every packet to and from the others dropped): the
 *   other two elect a leader and acknowledge writes; the old leader steps
 *   down within about an election timeout, never acknowledges a write (not
 *   even those it appended while it still believed it led), answers
 *   503 no_quorum, serves ?stale=true reads and reports the split in
 *   /api/v1/health/cluster. Healed, it catches up by itself and its
 *   uncommitted entries are gone.
 * - A follower alone (its links down): the same from the follower's side.
 * - Three partitions in a row (the leader with its links down, the next
 *   leader with every packet dropped, a follower) while an agent keeps
 *   registering through the cluster.
 *
 * On healing, the replica that was cut off must answer /ready 503 until it
 * applied up to the leader's commit index, then 200, with no manual step.
 * Every test ends by checking the data on every replica, read locally
 * (?stale=true): the set of registered agents is exactly the set of
 * acknowledged registrations (so nothing the minority was asked to write is
 * anywhere; a registration whose answer was lost in a cut may be there or
 * not, the same on every replica), and the task's checkpoint version is the
 * last acknowledged one (never one sent to the minority).
 * Without network namespaces (not root, no iproute2) the tests say
 * "SKIPPED: ..." and the file exits 77, which ctest reports as skipped;
 * but never when a test failed (a failure is never hidden by a skip).
 */
#include "cmocka_all.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_log.h"

#define ET_MS 300 /* cluster.election_timeout below */
/* Step-down of an isolated leader: libraft checks for a majority once per
 * election timeout, so between one and two of them; the rest is slack for a
 * loaded machine. Timed by the replica's own log (step_down_ms()), and
 * scaled by rdt_time_factor() (sanitizers). */
#define STEPDOWN_MAX_MS (2 * ET_MS + 900)
#define TASK            "5f0c1a52-7e1b-4c8e-9d3a-2b6f4e8a1c01"
#define MINORITY_VER    1000000 /* checkpoint versions sent to the minority side */

static struct rdt_cluster cl;
static struct rdt_net net;
static bool skipped; /* a test found no network namespaces */

static const char extra[] = "fault_tolerance:\n"
                            "  detection:\n"
                            "    heartbeat_interval: 1s\n"
                            "  partition:\n"
                            "    min_nodes: 100000\n"
                            "    alert_after: 1s\n"
                            "plugins:\n"
                            "  instances:\n"
                            "    - {name: heartbeat, required: true}\n"
                            "    - {name: log}\n";
static const char cluster_extra[] = "  election_timeout: 300ms\n"
                                    "  heartbeat_timeout: 50ms\n";

/* ---- what was written ------------------------------------------------------- */

#define MAX_IDS 2048
struct ids {
    char v[MAX_IDS][48];
    int n;
};
static struct ids acked;   /* registrations acknowledged (201) */
static struct ids refused; /* registrations sent to the minority during the partition */
static struct ids unsure;  /* registrations whose answer was lost: either way is right */
static long long ck_acked; /* last acknowledged checkpoint version */
static long long ck_asked; /* highest version sent to the majority side */
static long long attempt;  /* the task's attempt (its fencing token) */
static long long worker_epoch;
/* Failures found on the way that do not stop the test, so that everything
 * else (the data above all) is still checked; the test fails on them at its
 * end ("" when none). */
static char deferred[4096];

/* The replica cut off (-1 before the cut and after healing), and the agent's
 * favourite replica (rdt_cluster_request's `first`). */
static atomic_int minority = -1;
static int agent_at;

static void ids_add(struct ids *s, const char *id)
{
    assert_true(s->n < MAX_IDS);
    snprintf(s->v[s->n++], sizeof(s->v[0]), "%s", id);
}

static bool ids_has(const struct ids *s, const char *id)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], id) == 0)
            return true;
    return false;
}

/* Records a failure for the end of the test (and says so at once). */
static void defer_failure(const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "FAILURE (the test goes on to check the data, then fails): %s\n", msg);
    size_t len = strlen(deferred);
    snprintf(deferred + len, sizeof(deferred) - len, "%s%s", len ? "\n  AND " : "", msg);
}

/* Fails the test on what defer_failure() recorded. */
static void expect_no_deferred_failure(void)
{
    if (deferred[0])
        fail_msg("%s", deferred);
}

/* ---- the worker's heartbeats, in the background -------------------------------- */

static pthread_t hb_thread;
static bool hb_running;
static atomic_bool hb_stop;
static atomic_int hb_ok, hb_fenced;

static void *heartbeater(void *arg)
{
    (void)arg;
    int at = 0;
    char body[96], path[96];
    snprintf(body, sizeof(body), "{\"epoch\":%lld,\"load\":{\"slots_used\":1}}", worker_epoch);
    snprintf(path, sizeof(path), "/api/v1/nodes/wk-1/heartbeat");
    while (!atomic_load(&hb_stop)) {
        struct rdt_resp r = {0};
        if (rdt_cluster_request(&cl, &at, "POST", path, body, 2000, &r) == 0) {
            if (r.status == 200)
                atomic_fetch_add(&hb_ok, 1);
            else if (r.status == 409)
                atomic_fetch_add(&hb_fenced, 1);
        }
        rdt_resp_free(&r);
        rdt_sleep_ms(200);
    }
    return NULL;
}

static void heartbeater_stop(void)
{
    if (hb_running) {
        atomic_store(&hb_stop, true);
        pthread_join(hb_thread, NULL);
        hb_running = false;
    }
}

/* ---- setup and teardown --------------------------------------------------------- */

/* Namespaces and a 3-replica cluster in them, or skips the test saying why. */
static void start_or_skip(void)
{
    char why[512];
    int rc = rdt_net_setup(&net, 3, why, sizeof(why));
    if (rc == 1) {
        fprintf(stderr, "SKIPPED: network partition tests need network namespaces: %s\n", why);
        skipped = true;
        skip();
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rdt_cluster_start_net(&cl, &net, extra, cluster_extra), 0);
    memset(&acked, 0, sizeof(acked));
    memset(&refused, 0, sizeof(refused));
    memset(&unsure, 0, sizeof(unsure));
    deferred[0] = '\0';
    ck_acked = ck_asked = attempt = worker_epoch = 0;
    atomic_store(&minority, -1);
    agent_at = 0;
    atomic_store(&hb_stop, false);
    atomic_store(&hb_ok, 0);
    atomic_store(&hb_fenced, 0);
}

static void bg_stop_and_merge(void);

static int teardown(void **state)
{
    (void)state;
    bg_stop_and_merge();
    heartbeater_stop();
    if (getenv("RDT_VERBOSE"))
        for (int i = 0; i < cl.n; i++)
            rdt_proc_print_log_tail(&cl.procs[i], 60);
    /* Daemons first: a namespace lasts as long as a process in it. */
    rdt_cluster_cleanup(&cl);
    rdt_net_teardown(&net);
    return 0;
}

/* ---- requests --------------------------------------------------------------------- */

/* An integer field of replica i's GET /health; -1 when it does not answer. */
static long long health_int(int i, const char *key)
{
    struct rdt_resp r = {0};
    long long v = -1;
    if (rdt_get(&cl.procs[i], RDT_H1, "/health", &r) == 0 && r.status == 200 &&
        json_is_integer(json_object_get(r.json, key)))
        v = (long long)json_integer_value(json_object_get(r.json, key));
    rdt_resp_free(&r);
    return v;
}

/* Replica i's role (GET /health) into `role`; "" when it does not answer. */
static void health_role(int i, char *role, size_t len)
{
    struct rdt_resp r = {0};
    role[0] = '\0';
    if (rdt_get(&cl.procs[i], RDT_H1, "/health", &r) == 0 && r.status == 200)
        snprintf(role, len, "%s", json_string_value(json_object_get(r.json, "role")) ?: "");
    rdt_resp_free(&r);
}

/*
 * A write as an agent sends it: to its favourite replica, following 307 to
 * the leader, trying the next replica on 503 or silence. An acknowledgment
 * from the replica that is cut off fails the test at once.
 */
static long agent_write(const char *method, const char *path, const char *body, int timeout_ms,
                        struct rdt_resp *r)
{
    int rc = rdt_cluster_request(&cl, &agent_at, method, path, body, timeout_ms, r);
    if (rc == 0 && r->status / 100 == 2 && agent_at == minority)
        fail_msg("replica %d, cut off from the others, acknowledged %s %s: %ld %s", minority + 1,
                 method, path, r->status, r->body ? r->body : "");
    return rc == 0 ? r->status : 0;
}

/* Registers `id` through the cluster; it must be acknowledged. */
static void register_agent(const char *id)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":1}}", id);
    struct rdt_resp r = {0};
    long st = agent_write("POST", "/api/v1/nodes", body, 10000, &r);
    if (st != 201)
        fail_msg("registration of %s was not acknowledged: status %ld %s (%s)", id, st,
                 r.body ? r.body : "", r.curl_error);
    ids_add(&acked, id);
    rdt_resp_free(&r);
}

/* The checkpoint version a consistent read through the cluster sees. */
static long long checkpoint_version_consistent(void)
{
    struct rdt_resp r = {0};
    long st = agent_write("GET", "/api/v1/tasks/" TASK "/checkpoint", NULL, 5000, &r);
    long long v =
        st == 200 ? (long long)json_integer_value(json_object_get(r.json, "version")) : -1;
    rdt_resp_free(&r);
    return v;
}

/* Checkpoint `version` through the cluster; it must be acknowledged. */
static void checkpoint(long long version)
{
    char body[160];
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":%lld,\"data\":{\"step\":%lld}}",
             attempt, version, version);
    if (version > ck_asked)
        ck_asked = version;
    for (int64_t until = rdt_now_ms() + 10000;;) {
        struct rdt_resp r = {0};
        long st = agent_write("PUT", "/api/v1/tasks/" TASK "/checkpoint", body, 5000, &r);
        const char *code = rdt_err_code(&r);
        bool stale = st == 409 && code && strcmp(code, "stale_version") == 0;
        if (st != 200 && !stale)
            fprintf(stderr, "checkpoint %lld: status %ld %s\n", version, st, r.body ? r.body : "");
        rdt_resp_free(&r);
        if (st == 200) {
            ck_acked = version;
            return;
        }
        /* An earlier try whose answer was lost (a leader change) committed it. */
        if (stale && checkpoint_version_consistent() >= version) {
            ck_acked = version;
            return;
        }
        if (st == 409 && !stale)
            fail_msg("checkpoint %lld of attempt %lld refused: the worker was fenced", version,
                     attempt);
        if (rdt_now_ms() > until)
            fail_msg("checkpoint %lld was not acknowledged within 10 s", version);
        rdt_sleep_ms(50);
    }
}

/*
 * A write sent straight to the replica that is cut off, no redirect
 * followed. It must be refused (307 or 503), within 5 s, and never
 * acknowledged. Returns the status; the answer is left in `r`.
 */
static long minority_write(const char *method, const char *path, const char *body,
                           struct rdt_resp *r)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", cl.procs[minority].base_url, path);
    int rc = rdt_http(RDT_H1, method, url, body, body ? strlen(body) : 0, r);
    if (rc != 0)
        fail_msg("replica %d (no quorum) did not answer %s %s: %s", minority + 1, method, path,
                 r->curl_error);
    if (r->status / 100 == 2)
        fail_msg("replica %d has no quorum and acknowledged %s %s: %ld %s", minority + 1, method,
                 path, r->status, r->body ? r->body : "");
    if (r->status != 307 && r->status != 503)
        fail_msg("replica %d (no quorum) answered %s %s with %ld %s", minority + 1, method, path,
                 r->status, r->body ? r->body : "");
    return r->status;
}

static void minority_register(const char *id, struct rdt_resp *r)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":1}}", id);
    ids_add(&refused, id);
    minority_write("POST", "/api/v1/nodes", body, r);
}

/*
 * Right after the cut, while the replica cut off may still believe it
 * leads: a registration and a checkpoint sent to it at the same time (so
 * both may land in its log), and its role polled meanwhile. Returns the
 * milliseconds from `t0` until its /health no longer says leader (0 when it
 * did not lead).
 */
static int64_t write_to_minority_at_once(int64_t t0)
{
    char body0[128], body1[160];
    snprintf(body0, sizeof(body0), "{\"node_id\":\"min-0\",\"capacity\":{\"slots\":1}}");
    snprintf(body1, sizeof(body1), "{\"attempt\":%lld,\"version\":%d,\"data\":{\"minority\":1}}",
             attempt, MINORITY_VER + 1);
    ids_add(&refused, "min-0");
    char url0[256], url1[256];
    snprintf(url0, sizeof(url0), "%s/api/v1/nodes", cl.procs[minority].base_url);
    snprintf(url1, sizeof(url1), "%s/api/v1/tasks/" TASK "/checkpoint",
             cl.procs[minority].base_url);
    struct rdt_resp r[2];
    CURL *e[2] = {
        rdt_easy_new(RDT_H1, "POST", url0, body0, strlen(body0), 5000, &r[0]),
        rdt_easy_new(RDT_H1, "PUT", url1, body1, strlen(body1), 5000, &r[1]),
    };
    CURLM *m = curl_multi_init();
    assert_non_null(m);
    assert_non_null(e[0]);
    assert_non_null(e[1]);
    curl_multi_add_handle(m, e[0]);
    curl_multi_add_handle(m, e[1]);
    int64_t stepped = -1;
    int running = 2;
    while (running > 0 || stepped < 0) {
        if (running > 0) {
            curl_multi_perform(m, &running);
            CURLMsg *msg;
            int left;
            while ((msg = curl_multi_info_read(m, &left)) != NULL) {
                if (msg->msg != CURLMSG_DONE)
                    continue;
                int k = msg->easy_handle == e[0] ? 0 : 1;
                rdt_easy_finish(e[k], msg->data.result, &r[k]);
            }
        }
        if (stepped < 0) {
            char role[32];
            health_role(minority, role, sizeof(role));
            if (role[0] != '\0' && strcmp(role, "leader") != 0)
                stepped = rdt_now_ms() - t0;
        }
        if (rdt_now_ms() - t0 > rdt_ms(8000))
            fail_msg("replica %d still says leader %lld ms after it was cut off", minority + 1,
                     (long long)(rdt_now_ms() - t0));
        curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    for (int k = 0; k < 2; k++) {
        curl_multi_remove_handle(m, e[k]);
        curl_easy_cleanup(e[k]);
    }
    curl_multi_cleanup(m);
    for (int k = 0; k < 2; k++) {
        const char *what = k ? "checkpoint" : "registration";
        fprintf(stderr, "%s sent to replica %d right after the cut: %ld %s (%s)\n", what,
                minority + 1, r[k].status, rdt_err_code(&r[k]) ?: "-", r[k].curl_error);
        if (r[k].curl_code != 0)
            fail_msg("replica %d did not answer the %s sent right after the cut: %s", minority + 1,
                     what, r[k].curl_error);
        if (r[k].status / 100 == 2)
            fail_msg("replica %d, cut off, acknowledged the %s: %ld %s", minority + 1, what,
                     r[k].status, r[k].body ? r[k].body : "");
        if (r[k].status != 307 && r[k].status != 503)
            fail_msg("replica %d, cut off, answered the %s with %ld %s", minority + 1, what,
                     r[k].status, r[k].body ? r[k].body : "");
        rdt_resp_free(&r[k]);
    }
    return stepped;
}

/* ---- checks ------------------------------------------------------------------------- */

/*
 * How long after the cut (at `t_cut`, wall clock) replica M stopped leading,
 * by its own clock: raft's role_changed line in its log, written within its
 * 10 ms role watch (awaited: /health may say so a little earlier). Fails when
 * it is later than STEPDOWN_MAX_MS (scaled).
 */
static int64_t step_down_ms(int M, int64_t t_cut)
{
    int64_t t = -1;
    for (int64_t until = rdt_now_ms() + rdt_ms(8000); t < 0;) {
        char *log = rdt_proc_log(&cl.procs[M]);
        assert_non_null(log);
        t = rdt_log_time(log, " event=role_changed from=leader ", t_cut);
        free(log);
        if (t < 0 && rdt_now_ms() > until)
            fail_msg("replica %d's log has no role_changed line from leader after the cut", M + 1);
        if (t < 0)
            rdt_sleep_ms(10);
    }
    if (t - t_cut > rdt_ms(STEPDOWN_MAX_MS))
        fail_msg("replica %d, the leader cut off from the others, stepped down only %lld ms after "
                 "the cut (election timeout %d ms)",
                 M + 1, (long long)(t - t_cut), ET_MS);
    return t - t_cut;
}

/* Replica M, cut off while it led at `t_cut` (wall clock; `t0` the same on
 * this thread's clock), must step down within STEPDOWN_MAX_MS (scaled, by its
 * own log); returns how long it took. */
static int64_t await_step_down(int M, int64_t t0, int64_t t_cut)
{
    for (;;) {
        char role[32];
        health_role(M, role, sizeof(role));
        int64_t seen = rdt_now_ms() - t0;
        if (role[0] != '\0' && strcmp(role, "leader") != 0) {
            int64_t took = step_down_ms(M, t_cut);
            fprintf(stderr,
                    "the isolated leader stepped down %lld ms after the cut (by its log; this "
                    "thread saw it after %lld ms)\n",
                    (long long)took, (long long)seen);
            return took;
        }
        if (seen > rdt_ms(8000))
            fail_msg("replica %d, the leader cut off from the others, still says leader %lld ms "
                     "after the cut (election timeout %d ms)",
                     M + 1, (long long)seen, ET_MS);
        rdt_sleep_ms(10);
    }
}

/* The leader among replicas other than `except`, or fails after `timeout_ms`. */
static int leader_other_than(int except, int timeout_ms)
{
    for (int64_t until = rdt_now_ms() + timeout_ms;;) {
        for (int i = 0; i < cl.n; i++) {
            char role[32];
            if (i == except)
                continue;
            health_role(i, role, sizeof(role));
            if (strcmp(role, "leader") == 0)
                return i;
        }
        if (rdt_now_ms() > until)
            fail_msg("no leader among the replicas other than %d within %d ms", except + 1,
                     timeout_ms);
        rdt_sleep_ms(20);
    }
}

/* Replica i's view of replica `id` in /api/v1/health/cluster (a new reference). */
static json_t *cluster_entry(json_t *health, int id)
{
    size_t k;
    json_t *x;
    json_array_foreach(rdt_json_path(health, "quorum.replicas"), k, x)
    {
        if (json_integer_value(json_object_get(x, "id")) == id)
            return x;
    }
    return NULL;
}

/*
 * Polls replica i's /api/v1/health/cluster until it says has_quorum
 * `quorum` and sees every replica in `reachable_mask` (bit k: replica k)
 * reachable and the others not. Returns the body (the caller decrefs).
 */
static json_t *await_cluster_view(int i, bool quorum, unsigned reachable_mask, int timeout_ms)
{
    for (int64_t until = rdt_now_ms() + timeout_ms;;) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&cl.procs[i], RDT_H1, "/api/v1/health/cluster", &r), 0);
        assert_int_equal(r.status, 200);
        bool ok = json_is_boolean(rdt_json_path(r.json, "quorum.has_quorum")) &&
                  json_is_true(rdt_json_path(r.json, "quorum.has_quorum")) == quorum &&
                  json_array_size(rdt_json_path(r.json, "quorum.replicas")) == (size_t)cl.n;
        for (int k = 0; ok && k < cl.n; k++) {
            json_t *x = cluster_entry(r.json, k + 1);
            ok = x && json_is_true(json_object_get(x, "reachable")) == ((reachable_mask >> k) & 1u);
        }
        if (ok) {
            json_t *j = json_incref(r.json);
            rdt_resp_free(&r);
            return j;
        }
        if (rdt_now_ms() > until)
            fail_msg("replica %d's /api/v1/health/cluster never said has_quorum %s with "
                     "reachable mask %x: %s",
                     i + 1, quorum ? "true" : "false", reachable_mask, r.body ? r.body : "");
        rdt_resp_free(&r);
        rdt_sleep_ms(100);
    }
}

/* The partition fault about replica `id` on replica `at` (a new reference), or NULL. */
static json_t *partition_fault(int at, int id)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&cl.procs[at], RDT_H1,
                             "/api/v1/faults/records?fault_type=partition&stale=true", &r),
                     0);
    assert_int_equal(r.status, 200);
    json_t *found = NULL, *x;
    size_t i;
    json_array_foreach(rdt_json_path(r.json, "items"), i, x)
    {
        if (json_integer_value(rdt_json_path(x, "metadata.replica_id")) == id)
            found = x; /* the newest one wins */
    }
    found = json_incref(found);
    rdt_resp_free(&r);
    return found;
}

/*
 * Every partition fault about an engine replica that replica `at` has is
 * resolved within `timeout_ms` (every replica is reachable again), whichever
 * leader opened it.
 */
static void await_no_open_replica_fault(int at, int timeout_ms)
{
    for (int64_t until = rdt_now_ms() + timeout_ms;;) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&cl.procs[at], RDT_H1,
                                 "/api/v1/faults/records?fault_type=partition&stale=true", &r),
                         0);
        assert_int_equal(r.status, 200);
        json_t *open = NULL, *x;
        size_t i;
        int n = 0;
        json_array_foreach(rdt_json_path(r.json, "items"), i, x)
        {
            if (!json_is_integer(rdt_json_path(x, "metadata.replica_id")))
                continue;
            n++;
            if (strcmp(json_string_value(json_object_get(x, "status")) ?: "", "resolved") != 0)
                open = x;
        }
        if (open == NULL) {
            fprintf(stderr, "%d partition faults about replicas, all resolved\n", n);
            rdt_resp_free(&r);
            return;
        }
        if (rdt_now_ms() > until) {
            char *f = json_dumps(open, JSON_COMPACT);
            defer_failure("a partition fault about replica %lld is still open %d ms after every "
                          "replica is reachable again (leader: replica %d): %s",
                          (long long)json_integer_value(rdt_json_path(open, "metadata.replica_id")),
                          timeout_ms, at + 1, f ? f : "");
            free(f);
            rdt_resp_free(&r);
            return;
        }
        rdt_resp_free(&r);
        rdt_sleep_ms(100);
    }
}

static void await_partition_fault(int at, int id, const char *status, int timeout_ms)
{
    for (int64_t until = rdt_now_ms() + timeout_ms;;) {
        json_t *f = partition_fault(at, id);
        bool ok = f && strcmp(json_string_value(json_object_get(f, "status")) ?: "", status) == 0;
        json_decref(f);
        if (ok)
            return;
        if (rdt_now_ms() > until)
            fail_msg("replica %d recorded no %s partition fault about replica %d within %d ms",
                     at + 1, status, id, timeout_ms);
        rdt_sleep_ms(100);
    }
}

/* GET `path` on replica i with ?stale=true appended; the status. */
static long stale_get(int i, const char *path, struct rdt_resp *r)
{
    char p[256];
    snprintf(p, sizeof(p), "%s%sstale=true", path, strchr(path, '?') ? "&" : "?");
    assert_int_equal(rdt_get(&cl.procs[i], RDT_H1, p, r), 0);
    return r->status;
}

/* The node ids replica i has applied (a stale read: its own state), in its order. */
static void local_nodes(int i, struct ids *out)
{
    memset(out, 0, sizeof(*out));
    char cursor[64] = "";
    do {
        char path[160];
        snprintf(path, sizeof(path), "/api/v1/nodes?limit=1000%s%s", cursor[0] ? "&cursor=" : "",
                 cursor);
        struct rdt_resp r = {0};
        assert_int_equal(stale_get(i, path, &r), 200);
        size_t k;
        json_t *x;
        json_array_foreach(json_object_get(r.json, "items"), k, x)
            ids_add(out, json_string_value(json_object_get(x, "node_id")) ?: "?");
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        snprintf(cursor, sizeof(cursor), "%s", next ? next : "");
        rdt_resp_free(&r);
    } while (cursor[0]);
}

/*
 * Replica i holds exactly the acknowledged registrations (every one of
 * them, nothing sent to the minority; those whose answer was lost may or may
 * not be there) and the last acknowledged checkpoint
 * version (or a later one sent to the majority side whose answer was lost,
 * never one sent to the minority), within `timeout_ms` to catch up.
 */
static void expect_converged(int i, int timeout_ms)
{
    int64_t until = rdt_now_ms() + timeout_ms;
    for (;;) {
        static struct ids have;
        local_nodes(i, &have);
        const char *missing = NULL, *extra_id = NULL;
        for (int k = 0; k < acked.n && !missing; k++)
            if (!ids_has(&have, acked.v[k]))
                missing = acked.v[k];
        for (int k = 0; k < have.n && !extra_id; k++)
            if (!ids_has(&acked, have.v[k]) && !ids_has(&unsure, have.v[k]))
                extra_id = have.v[k];
        if (extra_id)
            fail_msg("replica %d has agent %s, which was never acknowledged%s", i + 1, extra_id,
                     ids_has(&refused, extra_id) ? " (it was sent to the side without quorum)"
                                                 : "");
        struct rdt_resp r = {0};
        long st = stale_get(i, "/api/v1/tasks/" TASK "/checkpoint", &r);
        long long v =
            st == 200 ? (long long)json_integer_value(json_object_get(r.json, "version")) : -1;
        rdt_resp_free(&r);
        if (v >= MINORITY_VER)
            fail_msg("replica %d has checkpoint version %lld, which was sent to the side without "
                     "quorum and never acknowledged",
                     i + 1, v);
        if (v > ck_asked)
            fail_msg("replica %d has checkpoint version %lld, never sent", i + 1, v);
        if (!missing && v >= ck_acked)
            return;
        if (rdt_now_ms() > until) {
            if (missing)
                fail_msg("replica %d lacks acknowledged agent %s after healing (%d of %d there)",
                         i + 1, missing, have.n, acked.n);
            fail_msg("replica %d has checkpoint version %lld after healing, acknowledged %lld",
                     i + 1, v, ck_acked);
        }
        rdt_sleep_ms(50);
    }
}

/*
 * Registrations `prefix`-1, -2, ... sent to the replica cut off until it
 * answers 503 no_quorum (leaderless for two election timeouts); never a 2xx.
 */
static void await_no_quorum(const char *prefix, int64_t t0)
{
    int M = minority;
    for (int k = 1;; k++) {
        char id[48];
        snprintf(id, sizeof(id), "%s-%d", prefix, k);
        struct rdt_resp r = {0};
        minority_register(id, &r);
        const char *code = rdt_err_code(&r);
        bool nq = r.status == 503 && code && strcmp(code, "no_quorum") == 0;
        rdt_resp_free(&r);
        if (nq) {
            fprintf(stderr, "replica %d answers writes 503 no_quorum from %lld ms after the cut\n",
                    M + 1, (long long)(rdt_now_ms() - t0));
            return;
        }
        if (rdt_now_ms() - t0 > 5000)
            fail_msg("replica %d never answered no_quorum within 5 s of the cut", M + 1);
        rdt_sleep_ms(50);
    }
}

/* ---- healing ------------------------------------------------------------------------- */

static atomic_bool heal_done;
static int heal_rc;

static void *healer(void *arg)
{
    (void)arg;
    heal_rc = rdt_net_heal_all(&net);
    atomic_store(&heal_done, true);
    return NULL;
}

/*
 * Heals every link (in a thread) while polling replica M's /ready, which
 * must answer 503 until M applied at least `commit` (the leader's commit
 * index before healing), and 200 from then on, without a manual step. A 200
 * that comes too early is recorded with defer_failure() (the test fails on
 * it at its end, after checking the data); polling goes on until M has
 * really caught up.
 */
static void heal_and_await_ready(int M, long long commit)
{
    minority = -1;
    atomic_store(&heal_done, false);
    pthread_t t;
    int64_t t1 = rdt_now_ms(), t_healed = -1, t_early = -1;
    assert_int_equal(pthread_create(&t, NULL, healer, NULL), 0);
    int not_ready = 0, early = 0;
    long long applied = -1;
    char bad[1024] = "";
    for (;;) {
        struct rdt_resp r = {0};
        int rc = rdt_get(&cl.procs[M], RDT_H1, "/ready", &r);
        long st = rc == 0 ? r.status : 0;
        if (t_healed < 0 && atomic_load(&heal_done))
            t_healed = rdt_now_ms() - t1;
        if (st == 200) {
            struct rdt_resp h = {0};
            rdt_get(&cl.procs[M], RDT_H1, "/health", &h);
            applied = (long long)json_integer_value(json_object_get(h.json, "applied_index"));
            if (applied < commit && early++ == 0) {
                t_early = rdt_now_ms() - t1;
                defer_failure("replica %d answered /ready 200 at applied index %lld, below the "
                              "leader's commit index %lld (taken before healing): /ready %s, "
                              "then /health %s",
                              M + 1, applied, commit, r.body ? r.body : "", h.body ? h.body : "");
            }
            rdt_resp_free(&h);
        }
        rdt_resp_free(&r);
        if (st == 200 && applied >= commit)
            break;
        if (st != 200 && st != 503) {
            snprintf(bad, sizeof(bad), "replica %d answered /ready with %ld while healing", M + 1,
                     st);
            break;
        }
        not_ready += st == 503;
        if (rdt_now_ms() - t1 > 10000) {
            snprintf(bad, sizeof(bad),
                     "replica %d has not caught up 10 s after healing began (applied %lld, "
                     "leader's commit before healing %lld)",
                     M + 1, applied, commit);
            break;
        }
        rdt_sleep_ms(5);
    }
    int64_t t_ready = rdt_now_ms() - t1;
    pthread_join(t, NULL); /* before any failure: teardown must not race the healer */
    if (t_healed < 0)
        t_healed = rdt_now_ms() - t1;
    assert_int_equal(heal_rc, 0);
    if (bad[0])
        fail_msg("%s", bad);
    fprintf(stderr,
            "replica %d caught up and ready %lld ms after healing began (links healed in %lld "
            "ms; %d answers 503 before; applied %lld, leader's commit before healing %lld)\n",
            M + 1, (long long)t_ready, (long long)t_healed, not_ready, applied, commit);
    if (early > 0)
        fprintf(stderr,
                "ENGINE BUG: replica %d answered /ready 200 %d times while behind the leader's "
                "commit index, from %lld ms after healing began\n",
                M + 1, early, (long long)t_early);
}

/* ---- the scenario ---------------------------------------------------------------------- */

/* A worker with the task (attempt 1) and its first checkpoint; heartbeats from now on. */
static void start_worker_with_task(void)
{
    struct rdt_resp r = {0};
    long st = agent_write("POST", "/api/v1/nodes",
                          "{\"node_id\":\"wk-1\",\"capacity\":{\"slots\":1}}", 5000, &r);
    assert_int_equal(st, 201);
    worker_epoch = (long long)json_integer_value(json_object_get(r.json, "epoch"));
    ids_add(&acked, "wk-1");
    rdt_resp_free(&r);
    st = agent_write("POST", "/api/v1/tasks",
                     "{\"task_id\":\"" TASK "\",\"payload\":{\"doc\":1},\"critical\":true}", 5000,
                     &r);
    assert_int_equal(st, 201);
    rdt_resp_free(&r);
    char body[96];
    snprintf(body, sizeof(body), "{\"epoch\":%lld,\"load\":{\"slots_used\":1}}", worker_epoch);
    for (int64_t until = rdt_now_ms() + 5000;;) {
        st = agent_write("POST", "/api/v1/nodes/wk-1/heartbeat", body, 5000, &r);
        assert_int_equal(st, 200);
        json_t *a = json_array_get(json_object_get(r.json, "assignments"), 0);
        if (a && strcmp(json_string_value(json_object_get(a, "task_id")) ?: "", TASK) == 0) {
            attempt = (long long)json_integer_value(json_object_get(a, "attempt"));
            rdt_resp_free(&r);
            break;
        }
        rdt_resp_free(&r);
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(50);
    }
    assert_true(attempt >= 1);
    checkpoint(1);
    assert_int_equal(pthread_create(&hb_thread, NULL, heartbeater, NULL), 0);
    hb_running = true;
}

/*
 * Cuts replica M (the leader when `isolate_leader`, else a follower) from
 * both others with `how`, checks both sides, heals, checks convergence.
 */
static void partition_and_heal(bool isolate_leader, enum rdt_cut how)
{
    start_or_skip();
    int64_t t_start = rdt_now_ms();
    start_worker_with_task();
    char id[32];
    for (int k = 0; k < 10; k++) {
        snprintf(id, sizeof(id), "pre-%d", k);
        register_agent(id);
    }
    checkpoint(2);
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    int M = isolate_leader ? L : (L + 1) % cl.n;
    for (int i = 0; i < cl.n; i++)
        expect_converged(i, 5000); /* so M's stale reads below have the writes so far */
    long long term0 = health_int(L, "term");

    /* ---- the cut ---- */
    fprintf(stderr, "cutting replica %d (%s) from the others: %s\n", M + 1,
            isolate_leader ? "the leader" : "a follower",
            how == RDT_CUT_DROP ? "every packet dropped" : "links down");
    assert_int_equal(rdt_net_isolate(&net, M, how), 0);
    int64_t t0 = rdt_now_ms(), t_cut = rd_now_ms();
    minority = M;
    int64_t stepped = write_to_minority_at_once(t0);
    if (isolate_leader)
        fprintf(stderr,
                "the isolated leader stepped down %lld ms after the cut (by its log; this thread "
                "saw it after %lld ms)\n",
                (long long)step_down_ms(M, t_cut), (long long)stepped);

    /* The majority side has (or elects) a leader and acknowledges writes. */
    int N = leader_other_than(M, 5000);
    fprintf(stderr, "leader of the majority side: replica %d, %lld ms after the cut\n", N + 1,
            (long long)(rdt_now_ms() - t0));
    if (isolate_leader)
        assert_true(health_int(N, "term") > term0);
    else if (N != L)
        fprintf(stderr, "note: leadership moved from replica %d to %d in the partition\n", L + 1,
                N + 1);
    agent_at = N;
    for (int k = 0; k < 10; k++) {
        snprintf(id, sizeof(id), "maj-%d", k);
        register_agent(id);
    }
    checkpoint(3);

    await_no_quorum("min", t0);
    struct rdt_resp r = {0};
    char ck[160];
    snprintf(ck, sizeof(ck), "{\"attempt\":%lld,\"version\":%d,\"data\":{\"minority\":2}}", attempt,
             MINORITY_VER + 2);
    minority_write("PUT", "/api/v1/tasks/" TASK "/checkpoint", ck, &r);
    assert_string_equal(rdt_err_code(&r), "no_quorum");
    rdt_resp_free(&r);
    /* Nothing commits on its side: what it applied stays as it is. */
    long long m_applied = health_int(M, "applied_index");
    assert_true(m_applied > 0);
    char role[32];
    health_role(M, role, sizeof(role));
    assert_true(role[0] != '\0' && strcmp(role, "leader") != 0);
    assert_int_equal(rdt_get(&cl.procs[M], RDT_H1, "/ready", &r), 0);
    assert_int_equal(r.status, 503);
    rdt_resp_free(&r);
    /* A consistent read needs the leader: refused too. */
    assert_int_equal(rdt_get(&cl.procs[M], RDT_H1, "/api/v1/nodes/pre-0", &r), 0);
    assert_int_equal(r.status, 503);
    assert_string_equal(rdt_err_code(&r), "no_quorum");
    rdt_resp_free(&r);

    /* Stale reads: what it had applied, nothing of either side's later writes. */
    assert_int_equal(health_int(M, "applied_index"), m_applied);
    assert_int_equal(stale_get(M, "/api/v1/nodes/pre-9", &r), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "node_id")), "pre-9");
    if (r.applied_index[0] == '\0')
        fail_msg("no X-Recoveryd-Applied-Index on a stale read");
    assert_int_equal(strtoll(r.applied_index, NULL, 10), m_applied);
    rdt_resp_free(&r);
    assert_int_equal(stale_get(M, "/api/v1/nodes/maj-0", &r), 404);
    rdt_resp_free(&r);
    assert_int_equal(stale_get(M, "/api/v1/nodes/min-0", &r), 404);
    rdt_resp_free(&r);
    assert_int_equal(stale_get(M, "/api/v1/tasks/" TASK "/checkpoint", &r), 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 2);
    rdt_resp_free(&r);

    /* The split as each side reports it. */
    unsigned all = (1u << cl.n) - 1, only_m = 1u << M;
    json_t *h = await_cluster_view(M, false, only_m, 5000);
    char *view = json_dumps(rdt_json_path(h, "quorum"), JSON_COMPACT);
    fprintf(stderr, "replica %d's view of the cluster %lld ms after the cut: %s\n", M + 1,
            (long long)(rdt_now_ms() - t0), view ? view : "");
    free(view);
    assert_true(json_is_null(rdt_json_path(h, "quorum.leader")));
    for (int k = 0; k < cl.n; k++) {
        json_t *x = cluster_entry(h, k + 1);
        assert_non_null(json_object_get(x, "role"));
        assert_non_null(json_object_get(x, "applied_index"));
        if (k == M) {
            assert_true(json_is_true(json_object_get(x, "self")));
            assert_int_equal(json_integer_value(json_object_get(x, "applied_index")), m_applied);
            assert_string_not_equal(json_string_value(json_object_get(x, "role")), "leader");
        }
    }
    json_decref(h);
    h = await_cluster_view(N, true, all & ~only_m, 5000);
    assert_int_equal(json_integer_value(rdt_json_path(h, "quorum.leader")), N + 1);
    json_decref(h);
    await_partition_fault(N, M + 1, "open", 8000);

    /* More on the majority side, so that M has to catch up. */
    for (int k = 10; k < 40; k++) {
        snprintf(id, sizeof(id), "maj-%d", k);
        register_agent(id);
    }
    checkpoint(4);
    checkpoint(5);
    for (int k = 0; k < cl.n; k++)
        if (k != M)
            expect_converged(k, 5000);
    assert_int_equal(health_int(M, "applied_index"), m_applied);
    /* Still nothing acknowledged on the minority side, still no_quorum. */
    minority_register("min-last", &r);
    assert_string_equal(rdt_err_code(&r), "no_quorum");
    rdt_resp_free(&r);
    int64_t t_part = rdt_now_ms() - t0;

    /* ---- heal ---- */
    long long commit = health_int(N, "commit_index");
    assert_true(commit > m_applied);
    heal_and_await_ready(M, commit);

    /* Converged: every replica holds exactly what was acknowledged. */
    for (int i = 0; i < cl.n; i++)
        expect_converged(i, 10000);
    /* The writes the cut-off replica may have appended are gone: it took the
     * majority's log. */
    assert_int_equal(stale_get(M, "/api/v1/nodes/min-0", &r), 404);
    rdt_resp_free(&r);
    /* One leader, which everybody follows, in one term. */
    int L2 = rdt_cluster_leader(&cl, 5000);
    assert_true(L2 >= 0);
    for (int64_t until = rdt_now_ms() + 5000;;) {
        long long term = health_int(L2, "term");
        bool same = true;
        for (int i = 0; i < cl.n; i++)
            same = same && health_int(i, "leader") == L2 + 1 && health_int(i, "term") == term;
        if (same)
            break;
        if (rdt_now_ms() > until)
            fail_msg("the replicas do not agree on leader %d after healing", L2 + 1);
        rdt_sleep_ms(20);
    }
    /* Writes go on, through any replica, and reach every one. */
    agent_at = M;
    for (int k = 0; k < 5; k++) {
        snprintf(id, sizeof(id), "post-%d", k);
        register_agent(id);
    }
    checkpoint(6);
    for (int i = 0; i < cl.n; i++)
        expect_converged(i, 5000);
    /* And everybody reports a whole cluster again; the fault is resolved. */
    for (int i = 0; i < cl.n; i++)
        json_decref(await_cluster_view(i, true, all, 5000));
    await_no_open_replica_fault(L2, 8000);
    heartbeater_stop();
    if (atomic_load(&hb_fenced) > 0)
        fail_msg("the worker's heartbeats were fenced %d times", atomic_load(&hb_fenced));
    fprintf(stderr,
            "partition held %lld ms; %d agents and checkpoint %lld acknowledged and on every "
            "replica; %d registrations and 2 checkpoints refused by the minority, none "
            "anywhere; worker heartbeats: %d ok; test took %lld ms\n",
            (long long)t_part, acked.n, ck_acked, refused.n, atomic_load(&hb_ok),
            (long long)(rdt_now_ms() - t_start));
    expect_no_deferred_failure();
}

static void test_isolated_leader_steps_down_and_catches_up(void **state)
{
    (void)state;
    partition_and_heal(true, RDT_CUT_DROP);
}

static void test_lone_follower_refuses_writes_and_catches_up(void **state)
{
    (void)state;
    partition_and_heal(false, RDT_CUT_DOWN);
}

/* ---- writes in the background ---------------------------------------------------------- */

static pthread_t bg_thread;
static bool bg_running;
static atomic_bool bg_stop, bg_violated;
static atomic_int bg_acks;
static struct ids bg_acked, bg_unsure; /* the writer's own until it is joined */
static char bg_violation[512];

/* An agent registering bg-0, bg-1, ... through the cluster, ~50 a second. */
static void *bg_writer(void *arg)
{
    (void)arg;
    int at = 0;
    for (int k = 0; !atomic_load(&bg_stop) && bg_acked.n < MAX_IDS && bg_unsure.n < MAX_IDS; k++) {
        char id[32], body[128];
        snprintf(id, sizeof(id), "bg-%d", k);
        snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":1}}", id);
        int m = minority;
        struct rdt_resp r = {0};
        int rc = rdt_cluster_request(&cl, &at, "POST", "/api/v1/nodes", body, 3000, &r);
        if (rc == 0 && r.status == 201) {
            if (m >= 0 && at == m && minority == m && !atomic_load(&bg_violated)) {
                snprintf(bg_violation, sizeof(bg_violation),
                         "replica %d, cut off from the others, acknowledged the registration of "
                         "%s",
                         m + 1, id);
                atomic_store(&bg_violated, true);
            }
            snprintf(bg_acked.v[bg_acked.n++], sizeof(bg_acked.v[0]), "%s", id);
            atomic_fetch_add(&bg_acks, 1);
        } else {
            snprintf(bg_unsure.v[bg_unsure.n++], sizeof(bg_unsure.v[0]), "%s", id);
        }
        rdt_resp_free(&r);
        rdt_sleep_ms(20);
    }
    return NULL;
}

/* Waits until the background writer got `more` further acknowledgments. */
static void bg_progress(int more)
{
    int want = atomic_load(&bg_acks) + more;
    for (int64_t until = rdt_now_ms() + 10000; atomic_load(&bg_acks) < want;) {
        if (rdt_now_ms() > until)
            fail_msg("background writes stalled at %d acknowledged (wanted %d)",
                     atomic_load(&bg_acks), want);
        rdt_sleep_ms(10);
    }
}

static void bg_stop_and_merge(void)
{
    if (!bg_running)
        return;
    atomic_store(&bg_stop, true);
    pthread_join(bg_thread, NULL);
    bg_running = false;
    for (int k = 0; k < bg_acked.n; k++)
        ids_add(&acked, bg_acked.v[k]);
    for (int k = 0; k < bg_unsure.n; k++)
        ids_add(&unsure, bg_unsure.v[k]);
}

/* Every replica lists the same agents (once they applied the same log). */
static void expect_same_everywhere(int timeout_ms)
{
    static struct ids a, b;
    for (int64_t until = rdt_now_ms() + timeout_ms;;) {
        local_nodes(0, &a);
        int differs = -1;
        for (int i = 1; i < cl.n && differs < 0; i++) {
            local_nodes(i, &b);
            bool same = a.n == b.n;
            for (int k = 0; same && k < a.n; k++)
                same = strcmp(a.v[k], b.v[k]) == 0;
            if (!same)
                differs = i;
        }
        if (differs < 0)
            return;
        if (rdt_now_ms() > until)
            fail_msg("replicas 1 and %d list different agents (%d and %d)", differs + 1, a.n, b.n);
        rdt_sleep_ms(50);
    }
}

/*
 * Partitions one after another while an agent keeps writing through the
 * cluster: the leader with its links down, the next leader with every
 * packet dropped, then a follower with every packet dropped. Writes in
 * flight at a cut may be lost (their answer never came), never invented;
 * acknowledged ones survive everything.
 */
static void test_rolling_partitions_under_load(void **state)
{
    (void)state;
    start_or_skip();
    int64_t t_start = rdt_now_ms();
    start_worker_with_task();
    memset(&bg_acked, 0, sizeof(bg_acked));
    memset(&bg_unsure, 0, sizeof(bg_unsure));
    atomic_store(&bg_stop, false);
    atomic_store(&bg_violated, false);
    atomic_store(&bg_acks, 0);
    assert_int_equal(pthread_create(&bg_thread, NULL, bg_writer, NULL), 0);
    bg_running = true;
    bg_progress(20);
    const struct {
        bool leader;
        enum rdt_cut how;
    } rounds[] = {{true, RDT_CUT_DOWN}, {true, RDT_CUT_DROP}, {false, RDT_CUT_DROP}};
    long long version = 2;
    for (size_t k = 0; k < sizeof(rounds) / sizeof(rounds[0]); k++) {
        int L = rdt_cluster_leader(&cl, 5000);
        assert_true(L >= 0);
        int M = rounds[k].leader ? L : (L + 1) % cl.n;
        fprintf(stderr, "round %zu: cutting replica %d (%s): %s\n", k + 1, M + 1,
                rounds[k].leader ? "the leader" : "a follower",
                rounds[k].how == RDT_CUT_DROP ? "every packet dropped" : "links down");
        assert_int_equal(rdt_net_isolate(&net, M, rounds[k].how), 0);
        int64_t t0 = rdt_now_ms(), t_cut = rd_now_ms();
        /* From now on (not while the links were being cut: until both were,
         * M still had a majority) M must acknowledge nothing. */
        minority = M;
        if (rounds[k].leader)
            await_step_down(M, t0, t_cut);
        int N = leader_other_than(M, 5000);
        fprintf(stderr, "round %zu: replica %d leads the majority side %lld ms after the cut\n",
                k + 1, N + 1, (long long)(rdt_now_ms() - t0));
        agent_at = N;
        bg_progress(20);
        checkpoint(version++);
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "roll%zu-min", k + 1);
        await_no_quorum(prefix, t0);
        bg_progress(10);
        long long commit = health_int(N, "commit_index");
        heal_and_await_ready(M, commit);
        bg_progress(10);
        if (atomic_load(&bg_violated))
            fail_msg("%s", bg_violation);
    }
    checkpoint(version++);
    bg_stop_and_merge();
    if (atomic_load(&bg_violated))
        fail_msg("%s", bg_violation);
    for (int i = 0; i < cl.n; i++)
        expect_converged(i, 10000);
    expect_same_everywhere(10000);
    for (int i = 0; i < cl.n; i++)
        json_decref(await_cluster_view(i, true, (1u << cl.n) - 1, 5000));
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    await_no_open_replica_fault(L, 8000);
    heartbeater_stop();
    if (atomic_load(&hb_fenced) > 0)
        fail_msg("the worker's heartbeats were fenced %d times", atomic_load(&hb_fenced));
    static struct ids have;
    local_nodes(0, &have);
    int committed = 0;
    for (int k = 0; k < unsure.n; k++)
        committed += ids_has(&have, unsure.v[k]);
    fprintf(stderr,
            "rolling partitions: %d registrations acknowledged (all on every replica), %d "
            "unanswered (%d of them committed), %d refused by the minority, checkpoint %lld; "
            "test took %lld ms\n",
            acked.n, unsure.n, committed, refused.n, ck_acked, (long long)(rdt_now_ms() - t_start));
    expect_no_deferred_failure();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_isolated_leader_steps_down_and_catches_up, teardown),
        cmocka_unit_test_teardown(test_lone_follower_refuses_writes_and_catches_up, teardown),
        cmocka_unit_test_teardown(test_rolling_partitions_under_load, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return rdt_exit_code(failed, skipped);
}
