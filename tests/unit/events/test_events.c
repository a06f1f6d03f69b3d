/* The event ring: ids, eviction, the floor, resuming, pending events of an
 * entry (engine/events/events.c). */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events/events.h"

static json_t *fields(int n)
{
    return json_pack("{s:i}", "n", n);
}

static const char *frame_id(const struct rd_event *e, char *buf, size_t len)
{
    snprintf(buf, len, "%llu.%u", (unsigned long long)e->id.index, e->id.ord);
    return buf;
}

static void test_id_parse(void **state)
{
    (void)state;
    struct rd_event_id id;
    assert_true(rd_event_id_parse("4711.2", 6, &id));
    assert_int_equal(id.index, 4711);
    assert_int_equal(id.ord, 2);
    /* An index alone means after all of that index's events. */
    assert_true(rd_event_id_parse("12", 2, &id));
    assert_int_equal(id.index, 12);
    assert_int_equal(id.ord, UINT32_MAX);
    assert_false(rd_event_id_parse("", 0, &id));
    assert_false(rd_event_id_parse("1.", 2, &id));
    assert_false(rd_event_id_parse(".1", 2, &id));
    assert_false(rd_event_id_parse("1.2.3", 5, &id));
    assert_false(rd_event_id_parse("-1", 2, &id));
    assert_false(rd_event_id_parse("1.4294967296", 12, &id)); /* ord over 32 bits */
    assert_false(rd_event_id_parse("99999999999999999999", 20, &id));
    assert_false(rd_event_id_parse("1 ", 2, &id));
}

static void test_kinds(void **state)
{
    (void)state;
    for (int k = 0; k < RD_EV_KIND_COUNT; k++) {
        const char *n = rd_event_kind_name(k);
        assert_non_null(n);
        assert_int_equal(rd_event_kind_parse(n, strlen(n)), k);
    }
    assert_int_equal(rd_event_kind_parse("nodes", 5), -1);
    assert_int_equal(rd_event_kind_parse("nod", 3), -1);
    assert_null(rd_event_kind_name(RD_EV_KIND_COUNT));
}

/* An entry's events get ordinals in the order given; the frame is one SSE
 * event whose data is one line of JSON with the id, index and node. */
static void test_entry_ids_and_frame(void **state)
{
    (void)state;
    struct rd_events ev;
    assert_int_equal(rd_events_init(&ev, 8), 0);
    rd_events_log(&ev, 7, RD_EV_FAULT_OPENED, "a1", fields(1));
    rd_events_log(&ev, 7, RD_EV_NODE, "a1", fields(2));
    assert_int_equal(ev.next, 0); /* nothing before the entry is done */
    rd_events_commit(&ev, 7, 1700000000000);
    assert_int_equal(ev.next, 2);
    char b[32];
    assert_string_equal(frame_id(rd_events_at(&ev, 0), b, sizeof(b)), "7.0");
    assert_string_equal(frame_id(rd_events_at(&ev, 1), b, sizeof(b)), "7.1");
    const struct rd_event *e = rd_events_at(&ev, 1);
    assert_string_equal(e->node, "a1");
    assert_int_equal(e->kind, RD_EV_NODE);
    static const char head[] = "id: 7.1\nevent: node\ndata: {";
    assert_memory_equal(e->frame, head, sizeof(head) - 1);
    assert_int_equal(e->len, strlen(e->frame));
    assert_true(e->len > 2 && strcmp(e->frame + e->len - 2, "\n\n") == 0);
    /* One data line: no newline inside the JSON. */
    const char *data = strstr(e->frame, "data: ") + 6;
    assert_ptr_equal(strchr(data, '\n'), e->frame + e->len - 2);
    json_t *j = json_loadb(data, e->len - (size_t)(data - e->frame) - 2, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "7.1");
    assert_int_equal(json_integer_value(json_object_get(j, "index")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 2);
    assert_string_equal(json_string_value(json_object_get(j, "node")), "a1");
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "node");
    assert_string_equal(json_string_value(json_object_get(j, "time")), "2023-11-14T22:13:20.000Z");
    json_decref(j);
    assert_null(rd_events_at(&ev, 2));
    rd_events_close(&ev);
}

/* A local event raised during an apply goes after the entry's own events:
 * the log-derived ids are what a replica without it gives them. */
static void test_local_during_apply(void **state)
{
    (void)state;
    struct rd_events ev;
    assert_int_equal(rd_events_init(&ev, 8), 0);
    rd_events_log(&ev, 5, RD_EV_FAULT_OPENED, "a1", fields(1));
    rd_events_local(&ev, 4, 5, 0, RD_EV_ALERT, "a1", fields(2)); /* raised mid-apply */
    rd_events_log(&ev, 5, RD_EV_NODE, "a1", fields(3));
    rd_events_commit(&ev, 5, 1);
    char b[32];
    assert_int_equal(rd_events_at(&ev, 0)->kind, RD_EV_FAULT_OPENED);
    assert_int_equal(rd_events_at(&ev, 1)->kind, RD_EV_NODE);
    assert_string_equal(frame_id(rd_events_at(&ev, 1), b, sizeof(b)), "5.1");
    assert_int_equal(rd_events_at(&ev, 2)->kind, RD_EV_ALERT);
    assert_string_equal(frame_id(rd_events_at(&ev, 2), b, sizeof(b)), "5.2");
    /* Outside an apply: at the applied index, next ordinal; a later entry
     * starts again at 0. */
    rd_events_local(&ev, 5, 0, 0, RD_EV_LEADER, NULL, fields(4));
    assert_string_equal(frame_id(rd_events_at(&ev, 3), b, sizeof(b)), "5.3");
    rd_events_local(&ev, 9, 0, 0, RD_EV_POLICY_RELOAD, NULL, fields(5));
    assert_string_equal(frame_id(rd_events_at(&ev, 4), b, sizeof(b)), "9.0");
    rd_events_log(&ev, 10, RD_EV_TASK, "a2", fields(6));
    rd_events_commit(&ev, 10, 1);
    assert_string_equal(frame_id(rd_events_at(&ev, 5), b, sizeof(b)), "10.0");
    /* Ids never go back (a replica whose log started over after a rejoin). */
    rd_events_local(&ev, 3, 0, 0, RD_EV_LEADER, NULL, fields(7));
    assert_string_equal(frame_id(rd_events_at(&ev, 6), b, sizeof(b)), "10.1");
    rd_events_close(&ev);
}

/* An entry whose apply failed (no commit) has its events pushed when the
 * next entry's come. */
static void test_uncommitted_entry_flushed(void **state)
{
    (void)state;
    struct rd_events ev;
    assert_int_equal(rd_events_init(&ev, 8), 0);
    rd_events_log(&ev, 3, RD_EV_TASK, "a", fields(1));
    rd_events_log(&ev, 4, RD_EV_TASK, "b", fields(2));
    assert_int_equal(ev.next, 1);
    rd_events_commit(&ev, 4, 1);
    assert_int_equal(ev.next, 2);
    assert_int_equal(rd_events_at(&ev, 0)->id.index, 3);
    assert_int_equal(rd_events_at(&ev, 1)->id.index, 4);
    rd_events_close(&ev);
}

/* The ring holds `cap` events: the oldest go, the floor rises with them, and
 * a resume from before the floor is refused (resync). */
static void test_eviction_floor_resume(void **state)
{
    (void)state;
    struct rd_events ev;
    assert_int_equal(rd_events_init(&ev, 4), 0);
    uint64_t seq;
    /* Empty: any id resumes at the end. */
    assert_true(rd_events_resume(&ev, (struct rd_event_id){0, UINT32_MAX}, &seq));
    assert_int_equal(seq, 0);
    for (int i = 1; i <= 6; i++) { /* indexes 1..6, one event each */
        rd_events_log(&ev, (uint64_t)i, RD_EV_NODE, "n", fields(i));
        rd_events_commit(&ev, (uint64_t)i, 1);
    }
    assert_int_equal(ev.head, 2);
    assert_int_equal(ev.next, 6);
    assert_int_equal(ev.evicted, 2);
    assert_null(rd_events_at(&ev, 1));
    assert_int_equal(rd_events_at(&ev, 2)->id.index, 3);
    assert_int_equal(ev.floor.index, 2);
    size_t bytes = 0;
    for (uint64_t s = ev.head; s < ev.next; s++)
        bytes += rd_events_at(&ev, s)->len;
    assert_int_equal(ev.bytes, bytes);
    /* After 2.0 (the last evicted): everything after it is held. */
    assert_true(rd_events_resume(&ev, (struct rd_event_id){2, 0}, &seq));
    assert_int_equal(seq, 2);
    assert_true(rd_events_resume(&ev, (struct rd_event_id){4, 0}, &seq));
    assert_int_equal(seq, 4);
    assert_int_equal(rd_events_at(&ev, seq)->id.index, 5);
    /* "4" alone: after every event of index 4. */
    assert_true(rd_events_resume(&ev, (struct rd_event_id){4, UINT32_MAX}, &seq));
    assert_int_equal(seq, 4);
    /* The newest, and an id from the future: live from the end. */
    assert_true(rd_events_resume(&ev, (struct rd_event_id){6, 0}, &seq));
    assert_int_equal(seq, 6);
    assert_true(rd_events_resume(&ev, (struct rd_event_id){99, 0}, &seq));
    assert_int_equal(seq, 6);
    /* Before the floor: 1.0 was evicted, so was 2.0 after it. */
    assert_false(rd_events_resume(&ev, (struct rd_event_id){1, 0}, &seq));
    assert_false(rd_events_resume(&ev, (struct rd_event_id){0, UINT32_MAX}, &seq));
    rd_events_close(&ev);
}

/* A snapshot restored: what it covered never came as events here. */
static void test_restore_raises_floor(void **state)
{
    (void)state;
    struct rd_events ev;
    assert_int_equal(rd_events_init(&ev, 16), 0);
    uint64_t seq;
    rd_events_note_restores(&ev, 0, 5); /* no restore: nothing changes */
    assert_true(rd_events_resume(&ev, (struct rd_event_id){0, UINT32_MAX}, &seq));
    rd_events_note_restores(&ev, 1, 100);
    assert_false(rd_events_resume(&ev, (struct rd_event_id){50, 0}, &seq));
    assert_true(rd_events_resume(&ev, (struct rd_event_id){100, UINT32_MAX}, &seq));
    rd_events_note_restores(&ev, 1, 200); /* the same restore, seen again */
    assert_true(rd_events_resume(&ev, (struct rd_event_id){150, 0}, &seq));
    rd_events_close(&ev);
}

static int notified;
static void on_notify(void *data)
{
    (void)data;
    notified++;
}

/* Streams hear of new events once per entry, and the ring's memory stays
 * bounded however many events pass. */
static void test_notify_and_bounded(void **state)
{
    (void)state;
    struct rd_events ev;
    assert_int_equal(rd_events_init(&ev, 32), 0);
    ev.notify = on_notify;
    notified = 0;
    size_t max_bytes = 0;
    for (uint64_t i = 1; i <= 10000; i++) {
        rd_events_log(&ev, i, RD_EV_TASK, "agent-1", fields((int)i));
        rd_events_log(&ev, i, RD_EV_NODE, "agent-1", fields((int)i));
        rd_events_commit(&ev, i, 1);
        if (ev.bytes > max_bytes)
            max_bytes = ev.bytes;
        assert_true(ev.next - ev.head <= 32);
    }
    assert_int_equal(notified, 10000);
    assert_int_equal(ev.pushed, 20000);
    assert_int_equal(ev.next - ev.head, 32);
    assert_true(max_bytes < 32 * 512);
    assert_int_equal(ev.floor.index, 9984);
    rd_events_close(&ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_parse),
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_entry_ids_and_frame),
        cmocka_unit_test(test_local_during_apply),
        cmocka_unit_test(test_uncommitted_entry_flushed),
        cmocka_unit_test(test_eviction_floor_resume),
        cmocka_unit_test(test_restore_raises_floor),
        cmocka_unit_test(test_notify_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
