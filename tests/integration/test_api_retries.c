/*
 * What a client needs to retry safely (issue 14), on three real replicas:
 * - a write proposed by a leader that then loses leadership (both
 *   followers stopped) is answered 503 outcome_unknown, not not_leader
 *   (which means nothing was proposed); so is every write of a batch
 *   (group commit: writes that reach the leader in one turn of its loop
 *   share a raft entry) when leadership is lost with it;
 * - a checkpoint retried at the next leader after kill -9 of the one that
 *   acknowledged it answers 200 with its version, as the first did, and a
 *   complete repeated there answers as the first; other data under the
 *   same version is still 409 stale_version;
 * - through the failover, a new leader never answers a write from state
 *   older than what was acknowledged (no 404 for a task that exists;
 *   engine/replica/gate.c, tests/unit/replica/test_gate.c for the window
 *   made deterministic).
 */
#include "cmocka_all.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"

static struct rdt_cluster cl;
static int first;

static int setup(void **state)
{
    (void)state;
    /* Elections of 600 ms (scaled): the write below reaches the leader well
     * before it can step down, even on a loaded machine. */
    char cluster_extra[64];
    snprintf(cluster_extra, sizeof(cluster_extra), "  election_timeout: %dms\n", rdt_ms(600));
    return rdt_cluster_start(
        &cl, 3, "fault_tolerance:\n  detection:\n    heartbeat_interval: 30s\n", cluster_extra);
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

static void test_lost_leadership_is_outcome_unknown(void **state)
{
    (void)state;
    int L = rdt_cluster_leader(&cl, rdt_ms(5000));
    assert_true(L >= 0);
    int F1 = (L + 1) % cl.n, F2 = (L + 2) % cl.n;
    assert_int_equal(rdt_proc_signal(&cl.procs[F1], SIGSTOP), 0);
    assert_int_equal(rdt_proc_signal(&cl.procs[F2], SIGSTOP), 0);
    /* Proposed, never committed: the leader steps down once it has heard
     * from no majority for an election timeout, with the entry in its log. */
    struct rdt_resp r = {0};
    int rc = rdt_post(&cl.procs[L], RDT_H1, "/api/v1/nodes",
                      "{\"node_id\":\"lost-1\",\"capacity\":{\"slots\":1}}", &r);
    assert_int_equal(rdt_proc_signal(&cl.procs[F1], SIGCONT), 0);
    assert_int_equal(rdt_proc_signal(&cl.procs[F2], SIGCONT), 0);
    assert_int_equal(rc, 0);
    if (r.status != 503 || rdt_err_code(&r) == NULL ||
        strcmp(rdt_err_code(&r), "outcome_unknown") != 0)
        fail_msg("expected 503 outcome_unknown, got %ld: %s", r.status, r.body);
    assert_true(r.retry_after[0] != '\0');
    rdt_resp_free(&r);
    /* The cluster elects a leader again (the entry commits or is dropped). */
    assert_true(rdt_cluster_leader(&cl, rdt_ms(10000)) >= 0);
}

#define BATCH_WRITES 8

/* A connection to replica `p`'s API, past a first request answered (h2o
 * accepted it and waits for the next one). */
static int api_conn(struct rdt_proc *p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    const char *get = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(write(fd, get, strlen(get)), (ssize_t)strlen(get));
    char buf[4096];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, (int)rdt_ms(5000)), 1);
    assert_true(read(fd, buf, sizeof(buf)) > 0);
    return fd;
}

/*
 * Writes that reach the leader in one turn of its loop share one raft entry
 * (group commit); when leadership is lost with that entry in the log, each of
 * them is answered 503 outcome_unknown. The leader is held (SIGSTOP) while
 * the requests are written on connections it already serves, so it reads
 * them together; its counters show that they shared an entry.
 */
static void test_batch_cut_by_lost_leadership(void **state)
{
    (void)state;
    int L = rdt_cluster_leader(&cl, rdt_ms(5000));
    assert_true(L >= 0);
    int F1 = (L + 1) % cl.n, F2 = (L + 2) % cl.n;
    /* A write acknowledged first: this leader's state is current (a new
     * leader holds requests until then, and would answer them 503 not_leader
     * when it stepped down first). */
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(&cl.procs[L], RDT_H1, "/api/v1/nodes",
                              "{\"node_id\":\"batch-first\",\"capacity\":{\"slots\":1}}", &r),
                     0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    int fds[BATCH_WRITES];
    for (int i = 0; i < BATCH_WRITES; i++)
        fds[i] = api_conn(&cl.procs[L]);
    long long entries = rdt_metric(&cl.procs[L], "recoveryd_raft_proposed_entries_total");
    long long commands = rdt_metric(&cl.procs[L], "recoveryd_raft_proposed_commands_total");
    assert_int_equal(rdt_proc_signal(&cl.procs[L], SIGSTOP), 0);
    assert_int_equal(rdt_proc_signal(&cl.procs[F1], SIGSTOP), 0);
    assert_int_equal(rdt_proc_signal(&cl.procs[F2], SIGSTOP), 0);
    for (int i = 0; i < BATCH_WRITES; i++) {
        char body[128], req[512];
        int n = snprintf(body, sizeof(body),
                         "{\"node_id\":\"batch-%d\",\"capacity\":{\"slots\":1}}", i);
        int m = snprintf(req, sizeof(req),
                         "POST /api/v1/nodes HTTP/1.1\r\nHost: t\r\nContent-Type: "
                         "application/json\r\nContent-Length: %d\r\n\r\n%s",
                         n, body);
        assert_int_equal(write(fds[i], req, (size_t)m), m);
    }
    assert_int_equal(rdt_proc_signal(&cl.procs[L], SIGCONT), 0);
    /* Proposed in one entry, never committed: the leader steps down. */
    char answers[BATCH_WRITES][4096];
    for (int i = 0; i < BATCH_WRITES; i++) {
        size_t got = 0;
        answers[i][0] = '\0';
        int64_t until = rdt_now_ms() + rdt_ms(15000);
        while (strstr(answers[i], "\r\n\r\n") == NULL || strstr(answers[i], "}") == NULL) {
            struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
            int64_t left = until - rdt_now_ms();
            if (left <= 0 || poll(&pfd, 1, (int)left) != 1)
                fail_msg("write %d: no answer within 15 s (so far: %s)", i, answers[i]);
            ssize_t k = read(fds[i], answers[i] + got, sizeof(answers[i]) - 1 - got);
            assert_true(k > 0);
            got += (size_t)k;
            answers[i][got] = '\0';
        }
        close(fds[i]);
    }
    assert_int_equal(rdt_proc_signal(&cl.procs[F1], SIGCONT), 0);
    assert_int_equal(rdt_proc_signal(&cl.procs[F2], SIGCONT), 0);
    for (int i = 0; i < BATCH_WRITES; i++)
        if (strncmp(answers[i], "HTTP/1.1 503", 12) != 0 ||
            strstr(answers[i], "\"outcome_unknown\"") == NULL)
            fail_msg("write %d: expected 503 outcome_unknown, got: %s", i, answers[i]);
    /* Writes shared an entry (counted when proposed): the commands grew by
     * more than the entries (h2o may hand the requests over in two turns of
     * the loop: then two entries; another command the leader proposed
     * meanwhile adds as much to both). */
    long long grouped = rdt_metric(&cl.procs[L], "recoveryd_raft_proposed_commands_total") -
                        rdt_metric(&cl.procs[L], "recoveryd_raft_proposed_entries_total");
    if (grouped - (commands - entries) < 1)
        fail_msg("none of the %d writes shared an entry", BATCH_WRITES);
    assert_true(rdt_cluster_leader(&cl, rdt_ms(10000)) >= 0);
}

static long put_ckpt(const char *task, long long attempt, long long version, const char *data,
                     struct rdt_resp *r)
{
    char body[256], path[128];
    snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":%lld,\"data\":%s}", attempt,
             version, data);
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", task);
    assert_int_equal(rdt_cluster_request(&cl, &first, "PUT", path, body, rdt_ms(15000), r), 0);
    return r->status;
}

static void test_retries_reach_the_next_leader(void **state)
{
    (void)state;
    struct rdt_resp r = {0};
    assert_int_equal(rdt_cluster_request(&cl, &first, "POST", "/api/v1/nodes",
                                         "{\"node_id\":\"agent-r\",\"capacity\":{\"slots\":4}}",
                                         rdt_ms(10000), &r),
                     0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    const char *task = "0b0b0b0b-1111-4222-8333-444455556666";
    assert_int_equal(rdt_cluster_request(&cl, &first, "POST", "/api/v1/tasks",
                                         "{\"task_id\":\"0b0b0b0b-1111-4222-8333-444455556666\"}",
                                         rdt_ms(10000), &r),
                     0);
    assert_int_equal(r.status, 201);
    rdt_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/tasks/%s", task);
    for (int64_t until = rdt_now_ms() + rdt_ms(5000);;) {
        assert_int_equal(rdt_cluster_request(&cl, &first, "GET", path, NULL, rdt_ms(5000), &r), 0);
        bool placed = strcmp(json_string_value(rdt_json_path(r.json, "state")), "assigned") == 0;
        rdt_resp_free(&r);
        if (placed)
            break;
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(10);
    }
    assert_int_equal(put_ckpt(task, 1, 1, "{\"step\":1}", &r), 200);
    rdt_resp_free(&r);
    /* The leader that acknowledged it dies; the client, not knowing
     * whether its write landed (a timeout), sends it again. */
    int L = rdt_cluster_leader(&cl, rdt_ms(5000));
    assert_true(L >= 0);
    assert_int_equal(rdt_proc_kill9(&cl.procs[L]), 0);
    first = (L + 1) % cl.n;
    /* Every write through the failover is answered from current state:
     * the task exists and attempt 1 may write (never 404, never fenced). */
    assert_int_equal(put_ckpt(task, 1, 1, "{\"step\":1}", &r), 200);
    assert_int_equal(json_integer_value(rdt_json_path(r.json, "version")), 1);
    rdt_resp_free(&r);
    int L2 = rdt_cluster_leader(&cl, rdt_ms(5000));
    assert_true(L2 >= 0 && L2 != L);
    assert_int_equal(put_ckpt(task, 1, 1, "{\"step\":2}", &r), 409);
    assert_string_equal(rdt_err_code(&r), "stale_version");
    rdt_resp_free(&r);
    assert_int_equal(put_ckpt(task, 1, 2, "{\"step\":2}", &r), 200);
    rdt_resp_free(&r);
    /* A completion repeated answers as the first. */
    snprintf(path, sizeof(path), "/api/v1/tasks/%s/complete", task);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rdt_cluster_request(&cl, &first, "POST", path,
                                             "{\"attempt\":1,\"result\":{\"ok\":true}}",
                                             rdt_ms(10000), &r),
                         0);
        assert_int_equal(r.status, 200);
        assert_string_equal(json_string_value(rdt_json_path(r.json, "state")), "completed");
        rdt_resp_free(&r);
    }
    assert_int_equal(rdt_proc_restart(&cl.procs[L]), 0);
    assert_int_equal(rdt_wait_ready(&cl.procs[L], 15000), 0);
}

/*
 * kill -9 of the leader right after it acknowledged a task's submission:
 * the next leader most likely holds the entry without knowing it is
 * committed (the old leader's next heartbeat would have said so), and
 * applies it only with the first entry of its own term. Every replica is
 * asked for a checkpoint of that task, as fast as the loop goes, until a
 * leader answers: 409 fenced (the task is pending, never placed) is the
 * answer from current state; 404 would be an answer from state older than
 * what was acknowledged.
 */
static void test_new_leader_never_answers_from_older_state(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        int L = rdt_cluster_leader(&cl, rdt_ms(10000));
        assert_true(L >= 0);
        char task[40], body[160], path[128];
        snprintf(task, sizeof(task), "0c0c0c0c-1111-4222-8333-00000000000%d", round);
        snprintf(body, sizeof(body),
                 "{\"task_id\":\"%s\",\"requirements\":{\"labels\":{\"pool\":\"none\"}}}", task);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_post(&cl.procs[L], RDT_H1, "/api/v1/tasks", body, &r), 0);
        assert_int_equal(r.status, 201);
        rdt_resp_free(&r);
        assert_int_equal(rdt_proc_kill9(&cl.procs[L]), 0);
        snprintf(path, sizeof(path), "/api/v1/tasks/%s/checkpoint", task);
        const char *ck = "{\"attempt\":1,\"version\":1,\"data\":{}}";
        bool answered = false;
        for (int64_t until = rdt_now_ms() + rdt_ms(15000); !answered;) {
            assert_true(rdt_now_ms() < until);
            for (int i = 0; i < cl.n && !answered; i++) {
                if (i == L)
                    continue;
                char url[256];
                snprintf(url, sizeof(url), "%s%s", cl.procs[i].base_url, path);
                if (rdt_http(RDT_H1, "PUT", url, ck, strlen(ck), &r) == 0) {
                    if (r.status == 404)
                        fail_msg("replica %d answered 404 for task %s, acknowledged before the "
                                 "failover: %s",
                                 i + 1, task, r.body);
                    if (r.status != 307 && r.status != 503) {
                        assert_int_equal(r.status, 409);
                        assert_string_equal(rdt_err_code(&r), "fenced");
                        answered = true;
                    }
                }
                rdt_resp_free(&r);
            }
        }
        assert_int_equal(rdt_proc_restart(&cl.procs[L]), 0);
        assert_int_equal(rdt_wait_ready(&cl.procs[L], 15000), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lost_leadership_is_outcome_unknown),
        cmocka_unit_test(test_batch_cut_by_lost_leadership),
        cmocka_unit_test(test_retries_reach_the_next_leader),
        cmocka_unit_test(test_new_leader_never_answers_from_older_state),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
