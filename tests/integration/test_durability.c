/*
 * What an acknowledged write promises: it survives kill -9 and a graceful
 * restart exactly, and a graceful shutdown under load neither loses an
 * acknowledged registration nor sends a broken response. Each test runs its
 * own daemon.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rdt_ctest.h"

#define SHUTDOWN_TIMEOUT_MS 10000
#define READY_TIMEOUT_MS    15000

/*
 * Slow heartbeats, so that no node turns suspect (a committed transition)
 * while a test compares states before and after a restart.
 */
/*
 * A low snapshot threshold, so a restart restores a snapshot and replays
 * the log after it, not only the log.
 */
static const char g_yaml[] = "server:\n"
                             "  shutdown_timeout: 10s\n"
                             "storage:\n"
                             "  snapshot_threshold: 16\n"
                             "  snapshot_trailing: 4\n"
                             "fault_tolerance:\n"
                             "  detection:\n"
                             "    heartbeat_interval: 30s\n";

/* cmocka runs no teardown after a failed setup: rdt_setup_ready cleans up. */
static int setup(void **state)
{
    return rdt_setup_ready(state, g_yaml, READY_TIMEOUT_MS);
}

static int teardown(void **state)
{
    struct rdt_proc *p = *state;
    if (p) {
        rdt_proc_cleanup(p);
        free(p);
    }
    return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static void expect_clean_log(const struct rdt_proc *p)
{
    char *log = rdt_proc_log(p);
    assert_non_null(log);
    char *line = rdt_log_error_line(log);
    bool clean = line == NULL;
    if (!clean) {
        print_message("the daemon logged an error: %s\n", line);
    }
    free(line);
    free(log);
    assert_true(clean);
}

/*
 * The replicated part of every node whose id starts with `prefix`, keyed by
 * node_id: {epoch, state, capacity, labels}. Load, last heartbeat and phi are
 * soft state and may differ after a restart. The caller owns the result.
 */
static json_t *durable_view(struct rdt_proc *p, const char *prefix)
{
    struct rdt_resp r = {0};
    int rc = rdt_get(p, RDT_H1, "/api/v1/nodes?limit=1000", &r);
    if (rc != 0 || r.status != 200) {
        print_message("list: rc=%d status=%ld body=%.400s\n", rc, r.status, r.body ? r.body : "");
    }
    assert_int_equal(rc, 0);
    assert_int_equal(r.status, 200);
    assert_true(json_is_null(rdt_json_path(r.json, "next_cursor")));
    json_t *items = rdt_json_path(r.json, "items");
    assert_true(json_is_array(items));
    json_t *view = json_object();
    size_t i;
    json_t *node;
    json_array_foreach(items, i, node)
    {
        const char *id = json_string_value(json_object_get(node, "node_id"));
        assert_non_null(id);
        if (strncmp(id, prefix, strlen(prefix)) != 0) {
            continue;
        }
        json_t *kept =
            json_pack("{s:O, s:O, s:O, s:O}", "epoch", json_object_get(node, "epoch"), "state",
                      json_object_get(node, "state"), "capacity", json_object_get(node, "capacity"),
                      "labels", json_object_get(node, "labels"));
        assert_non_null(kept);
        json_object_set_new(view, id, kept);
    }
    rdt_resp_free(&r);
    return view;
}

/* Prints every node that differs between two views, then asserts they are equal. */
static void expect_same_view(json_t *before, json_t *after, const char *when)
{
    const char *id;
    json_t *b;
    json_object_foreach(before, id, b)
    {
        json_t *a = json_object_get(after, id);
        if (!json_equal(a, b)) {
            char *bt = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
            char *at = a ? json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            print_message("%s %s: was %s, now %s\n", id, when, bt, at ? at : "missing");
            free(bt);
            free(at);
        }
    }
    json_t *a;
    json_object_foreach(after, id, a)
    {
        if (!json_object_get(before, id)) {
            print_message("%s %s: appeared\n", id, when);
        }
    }
    assert_true(json_equal(before, after));
}

static void expect_heartbeat(struct rdt_proc *p, const char *id, long long epoch, long status,
                             const char *code)
{
    struct rdt_resp r = {0};
    int rc = rdt_heartbeat(p, RDT_H1, id, epoch, 1, &r);
    if (rc != 0 || r.status != status) {
        print_message("heartbeat %s epoch %lld: rc=%d status=%ld body=%.400s\n", id, epoch, rc,
                      r.status, r.body ? r.body : "");
    }
    assert_int_equal(rc, 0);
    assert_int_equal(r.status, status);
    if (code) {
        assert_non_null(rdt_err_code(&r));
        assert_string_equal(rdt_err_code(&r), code);
    }
    rdt_resp_free(&r);
}

/* ---- restart keeps every acknowledged write -------------------------------------- */

enum { N_NODES = 50, N_EPOCH2 = 10, N_EPOCH3 = 5, FIRST_LEFT = 40, N_LEFT = 5 };

struct expected {
    char id[16];
    long long epoch;
    bool left;
};

static void populate(struct rdt_proc *p, struct expected *ex)
{
    for (int i = 0; i < N_NODES; i++) {
        snprintf(ex[i].id, sizeof ex[i].id, "dur-%02d", i);
        assert_int_equal(rdt_register(p, ex[i].id, i % 8 + 1, &ex[i].epoch), 0);
        assert_int_equal(ex[i].epoch, 1);
    }
    for (int round = 2; round <= 3; round++) {
        for (int i = 0; i < (round == 2 ? N_EPOCH2 : N_EPOCH3); i++) {
            long long epoch = 0;
            assert_int_equal(rdt_register(p, ex[i].id, i % 8 + 1, &epoch), 0);
            assert_int_equal(epoch, round);
            ex[i].epoch = epoch;
        }
    }
    for (int i = FIRST_LEFT; i < FIRST_LEFT + N_LEFT; i++) {
        char path[64];
        snprintf(path, sizeof path, "/api/v1/nodes/%s", ex[i].id);
        struct rdt_resp r = {0};
        int rc = rdt_delete(p, RDT_H1, path, &r);
        assert_int_equal(rc, 0);
        assert_int_equal(r.status, 200);
        rdt_resp_free(&r);
        ex[i].left = true;
    }
}

/* The view holds exactly the acknowledged nodes, epochs and leaves. */
static void expect_acknowledged(json_t *view, const struct expected *ex)
{
    assert_int_equal(json_object_size(view), N_NODES);
    for (int i = 0; i < N_NODES; i++) {
        json_t *node = json_object_get(view, ex[i].id);
        if (!node) {
            print_message("%s is missing\n", ex[i].id);
        }
        assert_non_null(node);
        assert_int_equal(json_integer_value(json_object_get(node, "epoch")), ex[i].epoch);
        const char *st = json_string_value(json_object_get(node, "state"));
        assert_non_null(st);
        assert_int_equal(strcmp(st, "left") == 0, ex[i].left);
        assert_int_equal(json_integer_value(rdt_json_path(node, "capacity.slots")), i % 8 + 1);
    }
}

/* Fencing survives a restart: current epochs work, old ones and leavers do not. */
static void expect_fencing(struct rdt_proc *p, const struct expected *ex)
{
    expect_heartbeat(p, ex[0].id, ex[0].epoch, 200, NULL);                       /* epoch 3 */
    expect_heartbeat(p, ex[N_EPOCH3].id, ex[N_EPOCH3].epoch, 200, NULL);         /* epoch 2 */
    expect_heartbeat(p, ex[N_EPOCH2].id, ex[N_EPOCH2].epoch, 200, NULL);         /* epoch 1 */
    expect_heartbeat(p, ex[0].id, ex[0].epoch - 1, 409, "fenced");               /* stale */
    expect_heartbeat(p, ex[FIRST_LEFT].id, ex[FIRST_LEFT].epoch, 409, "fenced"); /* left */
}

/* Polls the raft directory until libraft has written a snapshot (5 s at most). */
static bool await_snapshot_file(struct rdt_proc *p)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/raft", p->data_dir);
    int64_t deadline = rdt_now_ms() + 5000;
    while (rdt_now_ms() < deadline) {
        DIR *d = opendir(dir);
        struct dirent *e;
        bool found = false;
        while (d && (e = readdir(d)) != NULL)
            found |= strncmp(e->d_name, "snapshot-", 9) == 0;
        if (d)
            closedir(d);
        if (found)
            return true;
        rdt_sleep_ms(20);
    }
    return false;
}

static void test_restart_keeps_acknowledged_state(void **state)
{
    struct rdt_proc *p = *state;
    struct expected ex[N_NODES];
    memset(ex, 0, sizeof ex);
    populate(p, ex);
    json_t *before = durable_view(p, "dur-");
    expect_acknowledged(before, ex);
    assert_true(await_snapshot_file(p));

    assert_int_equal(rdt_proc_kill9(p), 0);
    assert_int_equal(rdt_proc_restart(p), 0);
    assert_int_equal(rdt_wait_ready(p, READY_TIMEOUT_MS), 0);
    json_t *after = durable_view(p, "dur-");
    expect_same_view(before, after, "after kill -9");
    json_decref(after);
    expect_fencing(p, ex);

    int code = -1;
    assert_int_equal(rdt_proc_stop(p, &code), 0);
    assert_int_equal(code, 0);
    assert_int_equal(rdt_proc_restart(p), 0);
    assert_int_equal(rdt_wait_ready(p, READY_TIMEOUT_MS), 0);
    after = durable_view(p, "dur-");
    expect_same_view(before, after, "after SIGTERM");
    json_decref(after);
    expect_fencing(p, ex);

    json_decref(before);
    expect_clean_log(p);
}

/* ---- graceful shutdown under load --------------------------------------------------- */

enum { N_LOAD = 200, LOAD_TIMEOUT_MS = 20000 };

struct load_req {
    char id[24];
    struct rdt_resp resp;
    CURL *easy;
    bool done;
};

struct load_tally {
    int created, shutting_down, no_response;
};

static void add_requests(struct rdt_proc *p, CURLM *multi, struct load_req *reqs, int from, int to)
{
    char url[128];
    snprintf(url, sizeof url, "%s/api/v1/nodes", p->base_url);
    for (int i = from; i < to; i++) {
        char body[128];
        snprintf(reqs[i].id, sizeof reqs[i].id, "load-%03d", i);
        snprintf(body, sizeof body, "{\"node_id\":\"%s\",\"capacity\":{\"slots\":1}}", reqs[i].id);
        enum rdt_proto proto = i % 2 ? RDT_H2 : RDT_H1;
        reqs[i].easy =
            rdt_easy_new(proto, "POST", url, body, strlen(body), LOAD_TIMEOUT_MS, &reqs[i].resp);
        assert_non_null(reqs[i].easy);
        curl_easy_setopt(reqs[i].easy, CURLOPT_PRIVATE, &reqs[i]);
        assert_int_equal(curl_multi_add_handle(multi, reqs[i].easy), CURLM_OK);
    }
}

/* Records finished transfers; returns how many finished in this call. */
static int collect(CURLM *multi)
{
    int n = 0, left;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(multi, &left))) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        struct load_req *lr = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&lr);
        assert_non_null(lr);
        rdt_easy_finish(msg->easy_handle, msg->data.result, &lr->resp);
        lr->done = true;
        n++;
    }
    return n;
}

/* How many of reqs[0..n) have sent their request and have no answer yet. */
static int count_in_flight(struct load_req *reqs, int n)
{
    int in_flight = 0;
    for (int i = 0; i < n; i++) {
        long sent = 0;
        curl_easy_getinfo(reqs[i].easy, CURLINFO_REQUEST_SIZE, &sent);
        in_flight += !reqs[i].done && sent > 0;
    }
    return in_flight;
}

/*
 * Starts the first half of the requests and sends SIGTERM once a quarter of
 * them are sent and unanswered (or the first answer is in), then starts the
 * second half at once (they meet a daemon that is draining) and drives every
 * transfer to its end. Returns the time of the SIGTERM (rdt_now_ms) and the
 * number of first-half requests in flight then.
 */
static int64_t run_load_and_terminate(struct rdt_proc *p, CURLM *multi, struct load_req *reqs,
                                      int *in_flight)
{
    enum { HALF = N_LOAD / 2 };
    int running = 1, finished = 0;
    int64_t sigterm_at = 0;
    int64_t deadline = rdt_now_ms() + 3 * LOAD_TIMEOUT_MS;
    add_requests(p, multi, reqs, 0, HALF);
    while (running > 0 || !sigterm_at) {
        assert_int_equal(curl_multi_perform(multi, &running), CURLM_OK);
        finished += collect(multi);
        int flying = sigterm_at ? 0 : count_in_flight(reqs, HALF);
        if (!sigterm_at && (flying >= HALF / 4 || finished > 0 || running == 0)) {
            assert_int_equal(rdt_proc_signal(p, SIGTERM), 0);
            sigterm_at = rdt_now_ms();
            *in_flight = flying;
            add_requests(p, multi, reqs, HALF, N_LOAD);
            running = 1;
            continue;
        }
        assert_true(rdt_now_ms() < deadline);
        if (running > 0) {
            assert_int_equal(curl_multi_poll(multi, NULL, 0, 10, NULL), CURLM_OK);
        }
    }
    collect(multi);
    return sigterm_at;
}

/*
 * Every transfer ended in one of the allowed ways: 201 with the node, 503
 * shutting_down, or no response at all (refused, or closed before a status
 * line). A status line followed by a broken transfer, or any other answer,
 * fails the test.
 */
static void classify(struct load_req *lr, struct load_tally *t)
{
    struct rdt_resp *r = &lr->resp;
    assert_true(lr->done);
    if (r->curl_code != CURLE_OK) {
        if (r->status != 0 || r->body_len != 0) {
            print_message("%s: broken response after status %ld: %s\n", lr->id, r->status,
                          r->curl_error);
        }
        assert_int_equal(r->status, 0);
        assert_int_equal(r->body_len, 0);
        t->no_response++;
        return;
    }
    if (r->status == 201) {
        assert_non_null(r->json);
        assert_string_equal(json_string_value(json_object_get(r->json, "node_id")), lr->id);
        assert_int_equal(json_integer_value(json_object_get(r->json, "epoch")), 1);
        t->created++;
        return;
    }
    if (r->status != 503 || !rdt_err_code(r) || strcmp(rdt_err_code(r), "shutting_down") != 0) {
        print_message("%s: unexpected answer %ld: %.400s\n", lr->id, r->status,
                      r->body ? r->body : "(no body)");
    }
    assert_int_equal(r->status, 503);
    assert_non_null(rdt_err_code(r));
    assert_string_equal(rdt_err_code(r), "shutting_down");
    t->shutting_down++;
}

static void expect_created_present(struct rdt_proc *p, struct load_req *reqs)
{
    json_t *view = durable_view(p, "load-");
    assert_true(json_object_size(view) <= N_LOAD);
    for (int i = 0; i < N_LOAD; i++) {
        if (reqs[i].resp.status != 201 || reqs[i].resp.curl_code != CURLE_OK) {
            continue;
        }
        json_t *node = json_object_get(view, reqs[i].id);
        if (!node) {
            print_message("acknowledged %s is missing after restart\n", reqs[i].id);
        }
        assert_non_null(node);
        assert_int_equal(json_integer_value(json_object_get(node, "epoch")), 1);
    }
    json_decref(view);
}

static void test_graceful_shutdown_under_load(void **state)
{
    struct rdt_proc *p = *state;
    CURLM *multi = curl_multi_init();
    assert_non_null(multi);
    struct load_req *reqs = calloc(N_LOAD, sizeof *reqs);
    assert_non_null(reqs);
    int in_flight = 0;
    int64_t sigterm_at = run_load_and_terminate(p, multi, reqs, &in_flight);
    int code = -1;
    int rc = rdt_proc_wait(p, SHUTDOWN_TIMEOUT_MS + 10000, &code);
    int64_t took = rdt_now_ms() - sigterm_at;

    struct load_tally t = {0};
    for (int i = 0; i < N_LOAD; i++) {
        classify(&reqs[i], &t);
    }
    print_message("SIGTERM with %d of the first %d in flight, %d sent after it: %d created,"
                  " %d shutting_down, %d no response; exit %d after %lld ms\n",
                  in_flight, N_LOAD / 2, N_LOAD / 2, t.created, t.shutting_down, t.no_response,
                  code, (long long)took);
    assert_true(rc >= 0); /* it exited (rdt_proc_wait gives the exit code) */
    assert_int_equal(code, 0);
    /* A little slack over the configured timeout for process teardown
     * (scaled: sanitizers make the teardown slower). */
    assert_true(took <= SHUTDOWN_TIMEOUT_MS + rdt_ms(1000));
    assert_true(t.created > 0);

    assert_int_equal(rdt_proc_restart(p), 0);
    assert_int_equal(rdt_wait_ready(p, READY_TIMEOUT_MS), 0);
    expect_created_present(p, reqs);
    expect_clean_log(p);

    for (int i = 0; i < N_LOAD; i++) {
        if (!reqs[i].easy) {
            continue;
        }
        curl_multi_remove_handle(multi, reqs[i].easy);
        curl_easy_cleanup(reqs[i].easy);
        rdt_resp_free(&reqs[i].resp);
    }
    free(reqs);
    curl_multi_cleanup(multi);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restart_keeps_acknowledged_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_shutdown_under_load, setup, teardown),
    };
    return cmocka_run_group_tests_name("durability", tests, NULL, NULL);
}
