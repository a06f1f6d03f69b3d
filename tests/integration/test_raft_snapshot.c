/*
 * raft's own snapshots imaged by a forked child (engine/replica/snapshot.c),
 * in a real daemon: snapshots are taken every few entries without the loop
 * serialising them, the files they leave restore the state at the next
 * start (the log before them is gone), and a snapshot child that is killed
 * stops the engine cleanly with exit code 1 and a line naming why, after
 * which a restart has every acknowledged write.
 */
#include "cmocka_all.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"

static const char *yaml = "storage:\n"
                          "  snapshot_threshold: 64\n"
                          "  snapshot_trailing: 16\n";

/* Registers agent `i` with labels of `pad` bytes in all (values of up to
 * 250 bytes: the API's limit is 255): 201, or the status. */
static long reg(struct rdt_proc *p, int i, size_t pad)
{
    char *body = malloc(2 * pad + 256);
    assert_non_null(body);
    size_t n = (size_t)sprintf(body, "{\"node_id\":\"agent-%05d\",\"labels\":{", i);
    for (int k = 0; pad > 0; k++) {
        size_t v = pad < 250 ? pad : 250;
        n += (size_t)sprintf(body + n, "%s\"l%d\":\"", k ? "," : "", k);
        memset(body + n, 'x', v);
        n += v;
        body[n++] = '"';
        pad -= v;
    }
    sprintf(body + n, "}}");
    struct rdt_resp r = {0};
    long status = rdt_post(p, RDT_H1, "/api/v1/nodes", body, &r) == 0 ? r.status : 0;
    if (status != 201)
        printf("registration of agent-%05d: %ld %s\n", i, status, r.body ? r.body : "");
    rdt_resp_free(&r);
    free(body);
    return status;
}

/* Registered agents in any state: these never heartbeat, so the detector
 * judges them failed one after the other from a second or so after they
 * registered (or after a restart): counting only the alive ones failed
 * whenever the restart took longer (2 runs of 4 on main under load). */
static long long nodes(struct rdt_proc *p)
{
    static const char *const states[] = {"alive",     "suspect",  "failed", "isolated",
                                         "probation", "draining", "left"};
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    long long n = 0;
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "recoveryd_nodes{state=\"%s\"}", states[i]);
        double v = rdt_metric_in_f(r.body, name);
        if (v < 0)
            fail_msg("no %s in /metrics", name);
        n += (long long)v;
    }
    rdt_resp_free(&r);
    return n;
}

static int snapshot_files(const struct rdt_proc *p)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/raft", p->data_dir);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strncmp(e->d_name, "snapshot-", 9) == 0 && strstr(e->d_name, ".meta") == NULL;
    closedir(d);
    return n;
}

static void test_snapshots_forked_and_restored(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    for (int i = 0; i < 400; i++)
        assert_int_equal(reg(&p, i, 200), 201);
    /* 400 entries at a threshold of 64: several snapshots, all by a child. */
    long long forked = rdt_metric(&p, "recoveryd_raft_snapshots_total{how=\"forked\"}");
    printf("snapshots forked: %lld, fork held the loop %.3f ms\n", forked,
           rdt_metric_f(&p, "recoveryd_raft_snapshot_fork_seconds") * 1e3);
    assert_true(forked >= 4);
    assert_int_equal(rdt_metric(&p, "recoveryd_raft_snapshots_total{how=\"on_loop\"}"), 0);
    assert_int_equal(rdt_metric(&p, "recoveryd_raft_snapshot_failures_total"), 0);
    int code = -1;
    assert_int_equal(rdt_proc_stop(&p, &code), 0);
    assert_int_equal(code, 0);
    assert_true(snapshot_files(&p) >= 1);

    /* The next start loads the newest snapshot (the log before it is gone)
     * and the entries after it. */
    assert_int_equal(rdt_proc_restart(&p), 0);
    assert_int_equal(nodes(&p), 400);
    char *log = rdt_proc_log(&p);
    assert_non_null(log);
    assert_non_null(strstr(log, "event=snapshot_restored"));
    free(log);
    rdt_proc_cleanup(&p);
}

/* Kills the first child of `pid` it sees (a snapshot child: nothing else
 * forks here), then stops. */
struct reaper {
    pid_t pid;
    volatile bool stop;
    int killed;
    pthread_t thread;
};

static void *reap_children(void *arg)
{
    struct reaper *r = arg;
    char path[96], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)r->pid, (int)r->pid);
    while (!r->stop) {
        FILE *f = fopen(path, "r");
        if (f == NULL)
            break; /* the engine is gone */
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* One kill: after it the engine stops, and a sanitizer's leak check
         * at its exit runs in a child of its own (killing that one too kept
         * an ASan build from ever exiting). */
        char *tok = strtok(buf, " \n");
        if (tok != NULL && kill((pid_t)atoi(tok), SIGKILL) == 0) {
            r->killed++;
            break;
        }
        rdt_sleep_ms(1);
    }
    return NULL;
}

static void test_killed_child_stops_the_engine_and_loses_nothing(void **state)
{
    (void)state;
    char probe[96];
    snprintf(probe, sizeof(probe), "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
    FILE *f = fopen(probe, "r");
    if (f == NULL) {
        printf("no /proc/PID/task/TID/children on this kernel: skipped\n");
        skip();
    }
    fclose(f);
    struct rdt_proc p = {0};
    p.errors_expected = true; /* the engine logs the failure at level=error */
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    struct reaper r = {.pid = p.pid};
    assert_int_equal(pthread_create(&r.thread, NULL, reap_children, &r), 0);
    /* Agents with 4 KiB labels (a child takes some ms to image them) until
     * a child dies and the engine stops. */
    int acked = 0;
    int64_t until = rdt_now_ms() + rdt_ms(60000);
    while (rdt_proc_alive(&p) && rdt_now_ms() < until) {
        if (reg(&p, acked, 4096) != 201)
            break;
        acked++;
    }
    if (rdt_proc_alive(&p))
        rdt_proc_wait(&p, rdt_ms(20000), NULL);
    r.stop = true;
    pthread_join(r.thread, NULL);
    printf("children killed: %d; agents acknowledged before the stop: %d; exit code %d\n", r.killed,
           acked, p.exit_code);
    assert_false(rdt_proc_alive(&p));
    assert_int_equal(p.exit_code, 1);
    char *log = rdt_proc_log(&p);
    assert_non_null(log);
    assert_non_null(strstr(log, "event=snapshot_failed"));
    assert_non_null(strstr(log, "killed by signal 9"));
    free(log);

    /* Every acknowledged registration is there after a restart. */
    assert_int_equal(rdt_proc_restart(&p), 0);
    for (int i = 0; i < acked; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/nodes/agent-%05d", i);
        struct rdt_resp g = {0};
        assert_int_equal(rdt_get(&p, RDT_H1, path, &g), 0);
        if (g.status != 200)
            fail_msg("%s acknowledged before the stop, %ld after the restart", path, g.status);
        rdt_resp_free(&g);
    }
    assert_int_equal(reg(&p, 999999, 10), 201); /* and it takes writes */
    rdt_proc_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshots_forked_and_restored),
        cmocka_unit_test(test_killed_child_stops_the_engine_and_loses_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
