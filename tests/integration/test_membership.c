/*
 * Membership changes that would leave the engine without a working quorum
 * are refused (etcd's strict reconfiguration check), and a data directory
 * already left without voters is recovered with --force-new-cluster, with
 * its data. The three-replica cases (a healthy voter removed while another
 * is down) are in test_cluster.c.
 */
#include "cmocka_all.h"

#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "fsm/fsm.h"
#include "harness.h"

#define READY_MS 15000

static const char g_yaml[] = "fault_tolerance:\n"
                             "  detection:\n"
                             "    heartbeat_interval: 30s\n";

static int setup(void **state)
{
    return rdt_setup_ready(state, g_yaml, READY_MS);
}

static int teardown(void **state)
{
    struct rdt_proc *p = *state;
    if (p != NULL) {
        int code = -1;
        if (p->pid > 0)
            assert_int_equal(rdt_proc_stop(p, &code), 0);
        rdt_proc_cleanup(p);
        free(p);
    }
    return 0;
}

static int post_status(struct rdt_proc *p, const char *path, const char *body)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(p, RDT_H1, path, body, &r), 0);
    int st = (int)r.status;
    rdt_resp_free(&r);
    return st;
}

static void assert_one_voter(struct rdt_proc *p)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/api/v1/cluster/replicas", &r), 0);
    assert_int_equal(r.status, 200);
    json_t *list = json_object_get(r.json, "replicas");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "voter_role")),
                        "voter");
    assert_int_equal(json_integer_value(json_object_get(r.json, "leader")), 1);
    rdt_resp_free(&r);
}

/* A single replica cannot remove or demote itself: 409 saying why, and it
 * goes on taking writes. Before the fix the DELETE answered 200 and every
 * write after it 503 no_quorum, for good. */
static void test_last_voter_is_kept(void **state)
{
    struct rdt_proc *p = *state;
    struct rdt_resp r = {0};
    assert_int_equal(rdt_delete(p, RDT_H1, "/api/v1/cluster/replicas/1", &r), 0);
    assert_int_equal(r.status, 409);
    assert_string_equal(rdt_err_code(&r), "conflict");
    assert_non_null(strstr(r.body, "last voter"));
    rdt_resp_free(&r);
    for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
        const char *roles[] = {"{\"id\":1,\"role\":\"spare\"}", "{\"id\":1,\"role\":\"standby\"}"};
        for (int i = 0; i < 2; i++) {
            assert_int_equal(
                rdt_post(p, (enum rdt_proto)proto, "/api/v1/cluster/replicas", roles[i], &r), 0);
            assert_int_equal(r.status, 409);
            assert_non_null(strstr(r.body, "last voter"));
            rdt_resp_free(&r);
        }
    }
    assert_one_voter(p);
    assert_int_equal(post_status(p, "/api/v1/nodes", "{\"node_id\":\"after\"}"), 201);
}

static void closed_cb(struct raft *raft)
{
    (void)raft;
}

/*
 * What the bug left behind: a log whose last configuration has no voter
 * (replica 1 demoted to spare). Written with libraft itself, the way the
 * engine would have, while the daemon is stopped.
 */
static void write_voterless_configuration(struct rdt_proc *p)
{
    char dir[400], addr[64];
    snprintf(dir, sizeof dir, "%s/raft", p->data_dir);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)p->raft_port);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct raft_uv_transport transport = {.version = 1};
    struct raft_io io;
    struct raft raft;
    struct rd_fsm fsm;
    rd_fsm_init(&fsm);
    assert_int_equal(raft_uv_tcp_init(&transport, &loop), 0);
    assert_int_equal(raft_uv_init(&io, &loop, dir, &transport), 0);
    assert_int_equal(raft_init(&raft, &io, &fsm.raft, 1, addr), 0);
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    assert_int_equal(raft_configuration_add(&conf, 1, addr, RAFT_SPARE), 0);
    assert_int_equal(raft_recover(&raft, &conf), 0);
    raft_configuration_close(&conf);
    raft_close(&raft, closed_cb);
    uv_run(&loop, UV_RUN_DEFAULT);
    raft_uv_close(&io);
    raft_uv_tcp_close(&transport);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    rd_fsm_close(&fsm);
}

/* The operator's way back (docs/operations.md): --force-new-cluster once. */
static void test_force_new_cluster_recovers_voterless_data(void **state)
{
    struct rdt_proc *p = *state;
    assert_int_equal(post_status(p, "/api/v1/nodes", "{\"node_id\":\"kept\"}"), 201);
    int code = -1;
    assert_int_equal(rdt_proc_stop(p, &code), 0);
    write_voterless_configuration(p);

    /* As left: no voter, so no leader and no write, ever. */
    char *before = rdt_proc_log(p);
    size_t off = before ? strlen(before) : 0;
    free(before);
    assert_int_equal(rdt_proc_restart(p), 0);
    struct rdt_resp r = {0};
    int64_t deadline = rdt_now_ms() + READY_MS;
    bool started = false;
    while (!started && rdt_now_ms() < deadline) {
        char *log = rdt_proc_log(p);
        started =
            log != NULL && strlen(log) > off && strstr(log + off, "comp=http event=listening");
        free(log);
        if (!started)
            rdt_sleep_ms(20);
    }
    assert_true(started);
    assert_int_equal(rdt_get(p, RDT_H1, "/api/v1/cluster/replicas", &r), 0);
    json_t *me = json_array_get(json_object_get(r.json, "replicas"), 0);
    assert_string_equal(json_string_value(json_object_get(me, "voter_role")), "spare");
    rdt_resp_free(&r);
    assert_int_equal(post_status(p, "/api/v1/nodes", "{\"node_id\":\"refused\"}"), 503);
    assert_int_equal(rdt_proc_stop(p, &code), 0);

    /* Forced: this replica is the one voter again, with its data. */
    snprintf(p->extra_arg, sizeof p->extra_arg, "--force-new-cluster");
    assert_int_equal(rdt_proc_restart(p), 0);
    assert_int_equal(rdt_wait_ready(p, READY_MS), 0);
    char *log = rdt_proc_log(p);
    assert_non_null(strstr(log, "event=forced_new_cluster voters=1"));
    free(log);
    assert_one_voter(p);
    assert_int_equal(rdt_get(p, RDT_H1, "/api/v1/nodes/kept", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    assert_int_equal(post_status(p, "/api/v1/nodes", "{\"node_id\":\"after\"}"), 201);
    assert_int_equal(rdt_proc_stop(p, &code), 0);

    /* And it stays so without the flag. */
    p->extra_arg[0] = '\0';
    assert_int_equal(rdt_proc_restart(p), 0);
    assert_int_equal(rdt_wait_ready(p, READY_MS), 0);
    assert_one_voter(p);
    assert_int_equal(rdt_get(p, RDT_H1, "/api/v1/nodes/after", &r), 0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_last_voter_is_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_force_new_cluster_recovers_voterless_data, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
