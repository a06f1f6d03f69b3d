/*
 * The group commit's delay (cluster.group_commit_delay, replica.c): while
 * the leader's loop is saturated, writes wait up to the delay after the
 * last entry for others to share their raft entry; while it idles, a write
 * goes to raft at once. The loop is saturated here by a detector plugin
 * that spins 3 ms on every heartbeat (tests/plugins/bad_plugin.c, BUSY) and
 * two threads that heartbeat back to back; the writes are agent
 * registrations (one command each) from threads of their own. After three
 * waits in a row that no write joined (a lone client writing one at a
 * time), none is tried for a second.
 */
#include "cmocka_all.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"

#define WRITERS 8

struct run {
    struct rdt_proc p;
    long long epoch;
    _Atomic bool stop;
    _Atomic unsigned heartbeats, writes, refused;
    unsigned writer_base;
};

static void start(struct run *r, const char *delay)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->p.plugins_dir, sizeof(r->p.plugins_dir), "%s", RD_TEST_PLUGINS_DIR);
    snprintf(r->p.cluster_yaml, sizeof(r->p.cluster_yaml), "  group_commit_delay: %s\n", delay);
    assert_int_equal(rdt_proc_start(&r->p, "plugins:\n"
                                           "  instances:\n"
                                           "    - name: spinner\n"
                                           "      plugin: busy\n"
                                           "fault_tolerance:\n"
                                           "  detection:\n"
                                           "    heartbeat_interval: 30s\n"),
                     0);
    assert_int_equal(rdt_wait_ready(&r->p, rdt_ms(15000)), 0);
    assert_int_equal(rdt_register(&r->p, "spun", 1, &r->epoch), 0);
}

static void stop(struct run *r)
{
    int code = -1;
    assert_int_equal(rdt_proc_stop(&r->p, &code), 0);
    assert_int_equal(code, 0);
    rdt_proc_cleanup(&r->p);
}

static void *heartbeats(void *arg)
{
    struct run *r = arg;
    while (!atomic_load(&r->stop)) {
        struct rdt_resp resp = {0};
        if (rdt_heartbeat(&r->p, RDT_H1, "spun", r->epoch, 0, &resp) == 0 && resp.status == 200)
            atomic_fetch_add(&r->heartbeats, 1);
        rdt_resp_free(&resp);
    }
    return NULL;
}

struct writer {
    struct run *r;
    unsigned id, max; /* max: writes to make (0: until stopped) */
    int pause_ms;     /* between two writes */
};

static size_t discard(char *p, size_t size, size_t n, void *data)
{
    (void)p, (void)data;
    return size * n;
}

/* A writer keeps its connection, as an agent does (a write read by the
 * loop as it arrives, not after a connection's accept). */
static void *writes(void *arg)
{
    struct writer *w = arg;
    char url[128];
    snprintf(url, sizeof(url), "%s/api/v1/nodes", w->r->p.base_url);
    CURL *e = curl_easy_init();
    assert_non_null(e);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)rdt_ms(15000));
    for (unsigned i = 0; (w->max == 0 || i < w->max) && !atomic_load(&w->r->stop); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"node_id\":\"w%u-%u-%u\",\"capacity\":{\"slots\":1}}",
                 w->r->writer_base, w->id, i);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
        long status = 0;
        if (curl_easy_perform(e) == CURLE_OK &&
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 201)
            atomic_fetch_add(&w->r->writes, 1);
        else
            atomic_fetch_add(&w->r->refused, 1);
        if (w->pause_ms > 0)
            rdt_sleep_ms(w->pause_ms); /* the client's pace, not a wait for a condition */
    }
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    return NULL;
}

struct counts {
    long long entries, commands, delayed;
};

static struct counts counts(struct run *r)
{
    return (struct counts){
        rdt_metric(&r->p, "recoveryd_raft_proposed_entries_total"),
        rdt_metric(&r->p, "recoveryd_raft_proposed_commands_total"),
        rdt_metric(&r->p, "recoveryd_raft_group_delayed_entries_total"),
    };
}

/* Two threads keep the loop spinning while `writers` threads write for
 * `ms`, each pausing `pause_ms` after each write; returns what the
 * counters moved by. */
static struct counts saturated(struct run *r, unsigned writers, int pause_ms, int ms)
{
    pthread_t hb[2], wr[WRITERS];
    assert_true(writers <= WRITERS);
    struct writer w[WRITERS];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&hb[i], NULL, heartbeats, r), 0);
    /* The loop is saturated once heartbeats keep coming (the spinner's
     * 3 ms each, back to back). */
    for (int64_t end = rdt_now_ms() + rdt_ms(10000);
         atomic_load(&r->heartbeats) < 50 && rdt_now_ms() < end;)
        rdt_sleep_ms(10);
    assert_true(atomic_load(&r->heartbeats) >= 50);
    struct counts before = counts(r);
    for (unsigned i = 0; i < writers; i++) {
        w[i] = (struct writer){.r = r, .id = i, .pause_ms = pause_ms + (int)i};
        assert_int_equal(pthread_create(&wr[i], NULL, writes, &w[i]), 0);
    }
    rdt_sleep_ms(ms); /* the length of the load, not a wait for a condition */
    atomic_store(&r->stop, true);
    for (unsigned i = 0; i < writers; i++)
        pthread_join(wr[i], NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(hb[i], NULL);
    struct counts after = counts(r);
    fprintf(stderr,
            "saturated: %u heartbeats, %u writes (%u refused); %lld entries of %lld commands, %lld "
            "delayed\n",
            atomic_load(&r->heartbeats), atomic_load(&r->writes), atomic_load(&r->refused),
            after.entries - before.entries, after.commands - before.commands,
            after.delayed - before.delayed);
    assert_int_equal(atomic_load(&r->refused), 0);
    assert_true(atomic_load(&r->writes) > 0);
    return (struct counts){after.entries - before.entries, after.commands - before.commands,
                           after.delayed - before.delayed};
}

/* An idle loop (a client writing every 20 ms): each write its own entry,
 * at once (nothing waited for the delay). */
static void test_idle_loop_writes_go_at_once(void **state)
{
    (void)state;
    static struct run r;
    start(&r, "5ms");
    struct counts before = counts(&r);
    struct writer w = {.r = &r, .id = 0, .max = 100, .pause_ms = 20};
    writes(&w);
    struct counts after = counts(&r);
    assert_int_equal(atomic_load(&r.writes), 100);
    assert_int_equal(after.delayed - before.delayed, 0);
    /* Each write alone in its entry (the engine's own commands, a few,
     * may share one: they are proposed within a turn). */
    assert_true(after.entries - before.entries >= 95);
    stop(&r);
}

/* A saturated loop and writers on their own paces (each pausing 5-12 ms
 * after a write, so that writes arrive while others wait): writes wait for
 * company, and entries carry more than one. */
static void test_saturated_loop_writes_wait(void **state)
{
    (void)state;
    static struct run r;
    start(&r, "5ms");
    struct counts c = saturated(&r, WRITERS, 5, rdt_ms(2000));
    assert_true(c.delayed > 0);
    assert_true(c.commands > c.entries);
    stop(&r);
}

/* A lone client writing one at a time on a saturated loop: its next write
 * comes only with the answer, so a wait gains nothing; after three that no
 * write joined, the writes go at once for a second. Without that, nearly
 * every write would wait. */
static void test_lone_writer_waits_at_most_once_a_second(void **state)
{
    (void)state;
    static struct run r;
    start(&r, "5ms");
    int64_t t0 = rdt_now_ms();
    struct counts c = saturated(&r, 1, 0, rdt_ms(2000));
    int64_t secs = (rdt_now_ms() - t0) / 1000 + 1;
    assert_true(atomic_load(&r.writes) >= 20);
    if (c.delayed > 3 * (secs + 1))
        fail_msg("%lld of %u writes waited in %lld s", c.delayed, atomic_load(&r.writes),
                 (long long)secs);
    stop(&r);
}

/* The same load with the delay off: nothing waits for it. */
static void test_no_delay_when_off(void **state)
{
    (void)state;
    static struct run r;
    start(&r, "0ms");
    struct counts c = saturated(&r, WRITERS, 5, rdt_ms(2000));
    assert_int_equal(c.delayed, 0);
    stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_loop_writes_go_at_once),
        cmocka_unit_test(test_saturated_loop_writes_wait),
        cmocka_unit_test(test_lone_writer_waits_at_most_once_a_second),
        cmocka_unit_test(test_no_delay_when_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
