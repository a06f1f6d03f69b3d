/*
 * After a restart of the engine (here: kill -9) detector state is gone;
 * every agent gets one full lease of grace before it is judged, so live
 * agents see no false failure and a dead one is failed only after the lease.
 * The lease is measured from the restarted engine's leadership (its
 * `event=leader` log line, logged just before the grace starts), not from
 * before the restart, so a slow start cannot stand in for the grace.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_log.h"

/* The heartbeat interval (200 ms, scaled by rdt_time_factor()) and the lease. */
static int hb_ms, lease_ms;
static char yaml[512];

static void make_config(void)
{
    hb_ms = rdt_ms(200);
    lease_ms = hb_ms * 3;
    snprintf(yaml, sizeof(yaml),
             "fault_tolerance:\n"
             "  detection:\n"
             "    heartbeat_interval: %dms\n"
             "    failure_threshold: 3\n"
             "  partition:\n"
             "    min_nodes: 100\n"
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - {name: health_probe, config: {interval: %dms}}\n",
             hb_ms, rdt_ms(50));
}

static long long reg(struct rdt_proc *p, const char *id)
{
    long long epoch = 0;
    assert_int_equal(rdt_register(p, id, 1, &epoch), 0);
    return epoch;
}

static long beat(struct rdt_proc *p, const char *id, long long epoch)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_heartbeat(p, RDT_H2, id, epoch, 0, &r), 0);
    long s = r.status;
    rdt_resp_free(&r);
    return s;
}

static const char *state_of(struct rdt_proc *p, const char *id, char *buf, size_t len)
{
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", id);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
    snprintf(buf, len, "%s", json_string_value(rdt_json_path(r.json, "state")));
    rdt_resp_free(&r);
    return buf;
}

static void test_restart_gives_every_agent_a_lease_of_grace(void **state)
{
    struct rdt_proc p;
    memset(&p, 0, sizeof(p));
    make_config();
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    long long live = reg(&p, "live");
    /* The dead agent's health endpoint refuses: two signals (late
     * heartbeats and a refused probe) would fail it within two intervals,
     * were it not for the grace. */
    uint16_t closed, unused;
    assert_int_equal(rdt_free_ports(&closed, &unused), 0);
    char body[160];
    snprintf(body, sizeof(body), "{\"node_id\":\"dead\",\"health_url\":\"tcp://127.0.0.1:%u\"}",
             closed);
    struct rdt_resp rr = {0};
    assert_int_equal(rdt_post(&p, RDT_H1, "/api/v1/nodes", body, &rr), 0);
    long long dead = json_integer_value(rdt_json_path(rr.json, "epoch"));
    rdt_resp_free(&rr);
    /* One round: well inside the grace a registration gets. */
    assert_int_equal(beat(&p, "live", live), 200);
    assert_int_equal(beat(&p, "dead", dead), 200);
    assert_int_equal(rdt_proc_kill9(&p), 0);
    int64_t t_restart = rd_now_ms(); /* wall clock, like detected_at */
    assert_int_equal(rdt_proc_restart(&p), 0);
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    /* When it led again: its event=leader line, logged just before the grace. */
    char *log = rdt_proc_log(&p);
    assert_non_null(log);
    int64_t t_leader = rdt_log_time(log, " event=leader ", t_restart);
    free(log);
    assert_true(t_leader >= t_restart);
    /* "live" beats on; "dead" never again. */
    char buf[32];
    int64_t until = rdt_now_ms() + 8 * lease_ms;
    bool dead_failed = false;
    while (rdt_now_ms() < until) {
        assert_int_equal(beat(&p, "live", live), 200);
        assert_string_equal(state_of(&p, "live", buf, sizeof(buf)), "alive");
        dead_failed |= strcmp(state_of(&p, "dead", buf, sizeof(buf)), "failed") == 0;
        rdt_sleep_ms(hb_ms);
    }
    assert_true(dead_failed);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&p, RDT_H1, "/api/v1/faults/records?node_id=dead", &r), 0);
    json_t *f = json_array_get(rdt_json_path(r.json, "items"), 0);
    int64_t detected;
    assert_int_equal(rd_time_parse(json_string_value(json_object_get(f, "detected_at")), &detected),
                     0);
    fprintf(stderr,
            "dead agent failed %lld ms after the engine led again (%lld ms after the restart "
            "began; lease %d ms)\n",
            (long long)(detected - t_leader), (long long)(detected - t_restart), lease_ms);
    assert_true(detected - t_leader >= lease_ms);
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&p, RDT_H1, "/api/v1/faults/records?node_id=live", &r), 0);
    assert_int_equal(json_array_size(rdt_json_path(r.json, "items")), 0);
    rdt_resp_free(&r);
    rdt_proc_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_gives_every_agent_a_lease_of_grace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
