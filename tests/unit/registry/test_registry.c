/* Soft state: heartbeats, epochs resetting state, grace, forgetting. */
#include "cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "registry/registry.h"

static void test_touch_creates_and_keeps(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    assert_null(rd_registry_get(&r, "a", 1));
    struct rd_soft *s = rd_registry_touch(&r, "a", 1, 1, 1000, 500);
    assert_non_null(s);
    assert_int_equal(s->epoch, 1);
    assert_int_equal(s->grace_until_ns, 1500);
    assert_int_equal(s->heartbeats, 0);
    assert_ptr_equal(rd_registry_touch(&r, "a", 1, 1, 9999, 500), s);
    assert_int_equal(s->grace_until_ns, 1500); /* same epoch: no new grace */
    assert_ptr_equal(rd_registry_get(&r, "a", 1), s);
    rd_registry_close(&r);
}

static void test_heartbeat_records_load_and_metrics(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    struct rd_soft *s = rd_registry_touch(&r, "a", 1, 3, 0, 0);
    struct rd_node_metrics m = {.present = true, .error_rate = 0.5, .latency_ms = 12};
    rd_registry_heartbeat(&r, s, 100, 1700000000000, 4, &m);
    assert_int_equal(s->heartbeats, 1);
    assert_int_equal(s->last_mono_ns, 100);
    assert_int_equal(s->last_wall_ms, 1700000000000);
    assert_int_equal(s->slots_used, 4);
    assert_true(s->metrics.present);
    assert_true(s->metrics.error_rate == 0.5);
    /* A heartbeat without metrics keeps the last ones reported. */
    struct rd_node_metrics none = {0};
    rd_registry_heartbeat(&r, s, 200, 1700000000500, 1, &none);
    assert_true(s->metrics.latency_ms == 12);
    assert_int_equal(s->slots_used, 1);
    assert_int_equal(r.heartbeats_total, 2);
    rd_registry_close(&r);
}

static void test_new_epoch_resets_soft_state(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    struct rd_soft *s = rd_registry_touch(&r, "agent", 5, 1, 0, 10);
    rd_registry_heartbeat(&r, s, 5, 5, 7, NULL);
    s = rd_registry_touch(&r, "agent", 5, 2, 1000, 10);
    assert_int_equal(s->epoch, 2);
    assert_int_equal(s->heartbeats, 0);
    assert_int_equal(s->slots_used, 0);
    assert_int_equal(s->last_mono_ns, 0);
    assert_int_equal(s->grace_until_ns, 1010);
    assert_string_equal(s->node_id, "agent");
    rd_registry_close(&r);
}

static void test_forget_and_many_nodes(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "n%d", i);
        assert_non_null(rd_registry_touch(&r, id, strlen(id), 1, 0, 0));
    }
    for (int i = 0; i < 5000; i += 2) {
        snprintf(id, sizeof(id), "n%d", i);
        rd_registry_forget(&r, id, strlen(id));
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "n%d", i);
        struct rd_soft *s = rd_registry_get(&r, id, strlen(id));
        if (i % 2)
            assert_non_null(s);
        else
            assert_null(s);
    }
    rd_registry_forget(&r, "nope", 4); /* forgetting the unknown is harmless */
    rd_registry_close(&r);
}

/* Revocations name the attempt taken away; the same one twice (a pause,
 * then the resume back to pending) is told once, another attempt apart. */
static void test_revocations_name_the_attempt(void **state)
{
    struct rd_registry r;
    rd_registry_init(&r);
    struct rd_soft *s = rd_registry_touch(&r, "a", 1, 1, 0, 0);
    rd_registry_revoke(&r, s, "t-1", 3);
    rd_registry_revoke(&r, s, "t-1", 3);
    rd_registry_revoke(&r, s, "t-1", 4);
    rd_registry_revoke(&r, s, "t-2", 1);
    struct rd_revocation out[RD_REVOKED_MAX];
    assert_int_equal(rd_registry_take_revoked(&r, s, out), 3);
    assert_string_equal(out[0].task_id, "t-1");
    assert_int_equal(out[0].attempt, 3);
    assert_string_equal(out[1].task_id, "t-1");
    assert_int_equal(out[1].attempt, 4);
    assert_string_equal(out[2].task_id, "t-2");
    assert_int_equal(out[2].attempt, 1);
    assert_int_equal(rd_registry_take_revoked(&r, s, out), 0); /* told once */
    for (unsigned i = 0; i < RD_REVOKED_MAX + 4; i++) {
        char id[16];
        snprintf(id, sizeof(id), "t-%u", i);
        rd_registry_revoke(&r, s, id, 1);
    }
    assert_int_equal(rd_registry_take_revoked(&r, s, out), RD_REVOKED_MAX);
    assert_string_equal(out[0].task_id, "t-0"); /* the oldest are kept */
    rd_registry_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_touch_creates_and_keeps),
        cmocka_unit_test(test_heartbeat_records_load_and_metrics),
        cmocka_unit_test(test_new_epoch_resets_soft_state),
        cmocka_unit_test(test_forget_and_many_nodes),
        cmocka_unit_test(test_revocations_name_the_attempt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
