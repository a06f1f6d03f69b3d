/* The log-derived events (engine/events/sources.c): a real state machine
 * applying commands with the observers wired as the engine wires them, and
 * two machines applying the same log giving the same events. */
#include "fsm_test.h"

#include <stdlib.h>
#include <string.h>

#include "events/events.h"

#define T1   "11111111-1111-4111-8111-111111111111"
#define F1   "f1f1f1f1-0000-4000-8000-000000000001"
#define RUN  "a0a0a0a0-0000-4000-8000-00000000000a"
#define ITEM "b0b0b0b0-0000-4000-8000-00000000000b"

struct world {
    struct rd_fsm fsm;
    struct rd_events ev;
};

static void on_node(void *data, const struct rd_node *n, int old_state)
{
    struct world *w = data;
    rd_events_node(&w->ev, w->fsm.applying_index, n, old_state);
}

static void on_fault(void *data, const struct rd_fault *x)
{
    struct world *w = data;
    rd_events_fault(&w->ev, w->fsm.applying_index, x);
}

static void on_task(void *data, const struct rd_task *t, int old_state, const char *old_node)
{
    struct world *w = data;
    rd_events_task(&w->ev, w->fsm.applying_index, t, old_state, old_node);
}

static void on_entry(void *data, uint64_t index, int64_t time_ms, const void *buf, size_t len)
{
    struct world *w = data;
    (void)buf;
    (void)len;
    rd_events_entry(&w->ev, &w->fsm, index, time_ms);
}

static void on_command(void *data, uint64_t index, const struct rd_cmd *cmd)
{
    struct world *w = data;
    rd_events_command(&w->ev, &w->fsm, index, cmd);
}

static struct world *world_new(void)
{
    struct world *w = calloc(1, sizeof(*w));
    assert_int_equal(rd_fsm_init(&w->fsm), 0);
    assert_int_equal(rd_events_init(&w->ev, 64), 0);
    w->fsm.on_node = on_node;
    w->fsm.on_fault = on_fault;
    w->fsm.on_task = on_task;
    w->fsm.on_entry = on_entry;
    w->fsm.on_command = on_command;
    w->fsm.on_node_data = w->fsm.on_fault_data = w->fsm.on_task_data = w->fsm.on_entry_data =
        w->fsm.on_command_data = w;
    return w;
}

static void world_free(struct world *w)
{
    rd_fsm_close(&w->fsm);
    rd_events_close(&w->ev);
    free(w);
}

/* The incident's log: two agents, a task on agent-1, agent-1 fails, a run
 * moves the task to agent-2 and closes, a checkpoint (no event), a backup,
 * a check's verdict, agent-1's fault resolves. */
static void play(struct world *w)
{
    apply(&w->fsm, cmd_register("agent-1", 2, 1000));
    apply(&w->fsm, cmd_register("agent-2", 2, 1001));
    apply(&w->fsm, cmd_task_submit(T1, 5, 0, 1, 3, 1002));
    apply(&w->fsm, cmd_task_assign(T1, 0, "agent-1", 1, 1003));
    apply(&w->fsm,
          cmd_fault_open(F1, "agent-1", RD_FAULT_CRASH, RD_SEV_CRITICAL, RD_NODE_FAILED, 1, 1004));
    apply(&w->fsm, cmd_recovery_open(RUN, "agent-1", "", "node_failed", 1005));
    apply(&w->fsm, cmd_recovery_move(T1, 1, "agent-2", 1, RUN, ITEM, "fast_recovery", "", 1006));
    apply(&w->fsm, cmd_recovery_close(RUN, RD_REC_SUCCEEDED, "fast_recovery", 1007));
    apply(&w->fsm, cmd_task_ckpt(T1, 2, 1, "{\"step\":1}", 3, 1008));
    apply(&w->fsm, cmd_backup_begin("bk-1", "files", 1009));
    apply(&w->fsm, cmd_check("ck-1", 1010));
    apply(&w->fsm, cmd_check_result("ck-1", RD_CHECK_CONSISTENT, "{\"1\":\"00000000000000aa\"}",
                                    "[]", 1011));
    apply(&w->fsm, cmd_fault_resolve(F1, "", 1012));
}

static json_t *data_of(const struct rd_event *e)
{
    const char *d = strstr(e->frame, "data: ") + 6;
    json_t *j = json_loadb(d, e->len - (size_t)(d - e->frame) - 2, 0, NULL);
    assert_non_null(j);
    return j;
}

static const char *str(json_t *j, const char *k)
{
    return json_string_value(json_object_get(j, k));
}

static void test_incident_events(void **state)
{
    (void)state;
    struct world *w = world_new();
    play(w);
    static const char *const kinds[] = {
        "node",
        "node",
        "task",
        "task",
        "fault_opened",
        "node",
        "recovery_opened",
        "task",
        "recovery_closed",
        "task", /* the first checkpoint: recovering -> running */
        "backup",
        "consistency",
        "fault_resolved",
    };
    size_t n = sizeof(kinds) / sizeof(kinds[0]);
    assert_int_equal(w->ev.next, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(rd_event_kind_name(rd_events_at(&w->ev, i)->kind), kinds[i]);
    /* The fault and the node it failed: one entry, fault first. */
    const struct rd_event *f = rd_events_at(&w->ev, 4), *nf = rd_events_at(&w->ev, 5);
    assert_int_equal(f->id.index, nf->id.index);
    assert_int_equal(f->id.ord, 0);
    assert_int_equal(nf->id.ord, 1);
    json_t *j = data_of(nf);
    assert_string_equal(str(j, "state"), "failed");
    assert_string_equal(str(j, "old_state"), "alive");
    assert_string_equal(str(j, "node"), "agent-1");
    json_decref(j);
    j = data_of(f);
    assert_string_equal(str(j, "fault_id"), F1);
    assert_string_equal(str(j, "fault_type"), "crash");
    assert_string_equal(str(j, "severity"), "critical");
    assert_true(json_is_object(json_object_get(j, "metadata")));
    assert_string_equal(str(j, "time"), "1970-01-01T00:00:01.004Z"); /* the entry's stamp */
    json_decref(j);
    /* The move names its run and strategy. */
    j = data_of(rd_events_at(&w->ev, 7));
    assert_string_equal(str(j, "state"), "recovering");
    assert_string_equal(str(j, "old_node_id"), "agent-1");
    assert_string_equal(str(j, "node_id"), "agent-2");
    assert_string_equal(str(j, "recovery_id"), RUN);
    assert_string_equal(str(j, "strategy"), "fast_recovery");
    assert_int_equal(json_integer_value(json_object_get(j, "attempt")), 2);
    json_decref(j);
    j = data_of(rd_events_at(&w->ev, 8));
    assert_string_equal(str(j, "status"), "succeeded");
    assert_int_equal(json_integer_value(json_object_get(j, "recovered")), 1);
    json_decref(j);
    j = data_of(rd_events_at(&w->ev, 9));
    assert_string_equal(str(j, "state"), "running");
    json_decref(j);
    j = data_of(rd_events_at(&w->ev, 10));
    assert_string_equal(str(j, "backup_id"), "bk-1");
    assert_string_equal(str(j, "op"), "begin");
    assert_string_equal(str(j, "status"), "running");
    json_decref(j);
    j = data_of(rd_events_at(&w->ev, 11));
    assert_string_equal(str(j, "check_id"), "ck-1");
    assert_string_equal(str(j, "status"), "consistent");
    json_decref(j);
    j = data_of(rd_events_at(&w->ev, 12));
    assert_string_equal(str(j, "status"), "resolved");
    assert_true(json_is_string(json_object_get(j, "resolution")));
    json_decref(j);
    world_free(w);
}

/* Refused commands and checkpoint writes are no events (but the first
 * checkpoint's move from assigned to running is). */
static void test_refusals_and_checkpoints_are_silent(void **state)
{
    (void)state;
    struct world *w = world_new();
    apply(&w->fsm, cmd_register("agent-1", 2, 1000));
    apply(&w->fsm, cmd_task_submit(T1, 5, 0, 1, 3, 1001));
    apply(&w->fsm, cmd_task_assign(T1, 0, "agent-1", 1, 1002));
    uint64_t before = w->ev.next;
    const struct rd_fsm_result *r = apply(&w->fsm, cmd_task_assign(T1, 0, "agent-1", 1, 1003));
    assert_int_not_equal(r->status, 0); /* stale attempt: refused */
    r = apply(&w->fsm, cmd_transition("no-such-node", 0, RD_NODE_FAILED, 1004));
    assert_int_not_equal(r->status, 0);
    assert_int_equal(w->ev.next, before);
    apply(&w->fsm, cmd_task_ckpt(T1, 1, 1, "{}", 3, 1005));
    assert_int_equal(w->ev.next, before + 1);
    apply(&w->fsm, cmd_task_ckpt(T1, 1, 2, "{}", 3, 1006));
    apply(&w->fsm, cmd_task_ckpt(T1, 1, 3, "{}", 3, 1007));
    assert_int_equal(w->ev.next, before + 1);
    world_free(w);
}

/* A conflict (availability mode): one event with the record's fields, the
 * task's event when the resolution moved it; the same write again: none. */
static void test_conflict_events(void **state)
{
    (void)state;
    struct world *w = world_new();
    apply(&w->fsm, cmd_register("agent-1", 2, 1000));
    apply(&w->fsm, cmd_register("agent-2", 2, 1001));
    apply(&w->fsm, cmd_task_submit(T1, 5, 0, 1, 3, 1002));
    apply(&w->fsm, cmd_task_assign(T1, 0, "agent-1", 1, 1003));
    apply(&w->fsm, cmd_task_assign(T1, 1, "agent-2", 1, 1004));
    uint64_t before = w->ev.next;
    const char *cid = "c0c0c0c0-0000-4000-8000-00000000000c";
    apply(&w->fsm, cmd_conflict(cid, T1, 1, RD_CONFLICT_CHECKPOINT, 4, "{\"step\":4}", "agent-1",
                                RD_CONFLICT_KEEP_PROGRESS, RD_CONFLICT_BY_POLICY, "hook", 1005));
    assert_int_equal(w->ev.next, before + 2);
    assert_string_equal(rd_event_kind_name(rd_events_at(&w->ev, before)->kind), "task");
    const struct rd_event *e = rd_events_at(&w->ev, before + 1);
    assert_string_equal(rd_event_kind_name(e->kind), "conflict");
    assert_string_equal(e->node, "agent-1");
    json_t *j = data_of(e);
    assert_string_equal(str(j, "conflict_id"), cid);
    assert_string_equal(str(j, "task_id"), T1);
    assert_string_equal(str(j, "kind"), "conflict");
    assert_string_equal(str(j, "write_kind"), "checkpoint");
    assert_string_equal(str(j, "resolution"), "keep_progress");
    assert_string_equal(str(j, "task_node_id"), "agent-2");
    assert_true(json_is_true(json_object_get(j, "adopted")));
    assert_null(json_object_get(j, "data"));
    json_decref(j);
    apply(&w->fsm, cmd_conflict("c0c0c0c0-0000-4000-8000-00000000000d", T1, 1,
                                RD_CONFLICT_CHECKPOINT, 4, "{\"step\":4}", "agent-1",
                                RD_CONFLICT_KEEP_PROGRESS, RD_CONFLICT_BY_POLICY, "hook", 1006));
    assert_int_equal(w->ev.next, before + 2);
    world_free(w);
}

/* The crash's recovery as the group commit writes it: the run's opening,
 * a first placement of T2 (no run), the run's move of T1, the run's close
 * and a checkpoint, all in one batch entry. The events are those of the same
 * commands as entries of their own, in the same order (at one index, by
 * ordinal): each run's event once, and only the run's move names it. */
#define T2 "22222222-2222-4222-8222-222222222222"
static void crash_setup(struct world *w)
{
    apply(&w->fsm, cmd_register("agent-1", 2, 1000));
    apply(&w->fsm, cmd_register("agent-2", 2, 1001));
    apply(&w->fsm, cmd_task_submit(T1, 5, 0, 1, 3, 1002));
    apply(&w->fsm, cmd_task_submit(T2, 5, 0, 1, 3, 1003));
    apply(&w->fsm, cmd_task_assign(T1, 0, "agent-1", 1, 1004));
    apply(&w->fsm,
          cmd_fault_open(F1, "agent-1", RD_FAULT_CRASH, RD_SEV_CRITICAL, RD_NODE_FAILED, 1, 1005));
}

static void crash_recovery(struct rd_wbuf cmds[5])
{
    cmds[0] = cmd_recovery_open(RUN, "agent-1", "", "node_failed", 1006);
    cmds[1] = cmd_task_assign(T2, 0, "agent-2", 1, 1007);
    cmds[2] = cmd_recovery_move(T1, 1, "agent-2", 1, RUN, ITEM, "fast_recovery", "", 1008);
    cmds[3] = cmd_recovery_close(RUN, RD_REC_SUCCEEDED, "fast_recovery", 1009);
    cmds[4] = cmd_task_ckpt(T1, 2, 1, "{\"step\":1}", 3, 1010);
}

/* An event's data without what tells where and when it was (id, index,
 * time): the part that must not depend on how the commands were packed. */
static char *what_of(const struct rd_event *e)
{
    json_t *j = data_of(e);
    json_object_del(j, "id");
    json_object_del(j, "index");
    json_object_del(j, "time");
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

static void test_batched_recovery_events(void **state)
{
    (void)state;
    struct world *alone = world_new(), *batched = world_new();
    crash_setup(alone);
    crash_setup(batched);
    uint64_t from = alone->ev.next;
    assert_int_equal(batched->ev.next, from);
    struct rd_wbuf cmds[5];
    crash_recovery(cmds);
    for (unsigned i = 0; i < 5; i++)
        apply(&alone->fsm, cmds[i]);
    crash_recovery(cmds);
    struct rd_wbuf entry = fsm_batch_of(cmds, 5);
    uint64_t index = batched->fsm.n_applied + 1;
    apply(&batched->fsm, entry);
    static const char *const kinds[] = {"recovery_opened", "task", "task", "recovery_closed",
                                        "task"};
    assert_int_equal(alone->ev.next, from + 5);
    assert_int_equal(batched->ev.next, from + 5);
    for (unsigned i = 0; i < 5; i++) {
        const struct rd_event *a = rd_events_at(&alone->ev, from + i);
        const struct rd_event *b = rd_events_at(&batched->ev, from + i);
        assert_string_equal(rd_event_kind_name(a->kind), kinds[i]);
        assert_string_equal(rd_event_kind_name(b->kind), kinds[i]);
        assert_int_equal(b->id.index, index);
        assert_int_equal(b->id.ord, i);
        char *wa = what_of(a), *wb = what_of(b);
        assert_string_equal(wa, wb);
        free(wa);
        free(wb);
    }
    json_t *move = data_of(rd_events_at(&batched->ev, from + 2));
    assert_string_equal(str(move, "task_id"), T1);
    assert_string_equal(str(move, "recovery_id"), RUN);
    assert_string_equal(str(move, "strategy"), "fast_recovery");
    json_decref(move);
    json_t *placed = data_of(rd_events_at(&batched->ev, from + 1));
    assert_string_equal(str(placed, "task_id"), T2);
    assert_null(json_object_get(placed, "recovery_id"));
    json_decref(placed);
    world_free(alone);
    world_free(batched);
}

/* Two replicas applying the same log: the same events, byte for byte. */
static void test_replicas_agree(void **state)
{
    (void)state;
    struct world *a = world_new(), *b = world_new();
    play(a);
    play(b);
    assert_int_equal(a->ev.next, b->ev.next);
    for (uint64_t s = 0; s < a->ev.next; s++) {
        const struct rd_event *x = rd_events_at(&a->ev, s), *y = rd_events_at(&b->ev, s);
        assert_int_equal(x->len, y->len);
        assert_memory_equal(x->frame, y->frame, x->len);
    }
    /* A local event on one of them (its alert) changes none of the log's
     * ids that follow. */
    rd_events_local(&a->ev, a->fsm.n_applied, 0, 5, RD_EV_ALERT, "agent-1", NULL);
    apply(&a->fsm, cmd_register("agent-3", 1, 2000));
    apply(&b->fsm, cmd_register("agent-3", 1, 2000));
    const struct rd_event *x = rd_events_at(&a->ev, a->ev.next - 1);
    const struct rd_event *y = rd_events_at(&b->ev, b->ev.next - 1);
    assert_int_equal(x->len, y->len);
    assert_memory_equal(x->frame, y->frame, x->len);
    world_free(a);
    world_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_incident_events),
        cmocka_unit_test(test_refusals_and_checkpoints_are_silent),
        cmocka_unit_test(test_conflict_events),
        cmocka_unit_test(test_batched_recovery_events),
        cmocka_unit_test(test_replicas_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
