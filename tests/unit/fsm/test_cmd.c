/* Log command encoding: round trips, truncation, unknown formats and types. */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "fsm/cmd.h"
#include "recoveryd/error.h"

static void encode(const struct rd_cmd *c, struct rd_wbuf *w)
{
    rd_w_init(w);
    assert_int_equal(rd_cmd_encode(c, w), 0);
}

static void assert_str(struct rd_str s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.p, want, s.len);
}

static void test_register_round_trip(void **state)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_REGISTER, .time_ms = 1764000000123LL};
    c.u.reg.node_id = RD_STR("agent-7");
    c.u.reg.slots = 12;
    c.u.reg.labels_json = RD_STR("{\"zone\":\"eu\"}");
    c.u.reg.health_url = RD_STR("http://127.0.0.1:9/health");
    c.u.reg.address = RD_STR("");
    struct rd_wbuf w;
    encode(&c, &w);
    assert_int_equal(w.p[0], RD_CMD_FORMAT);
    assert_int_equal(w.p[1], RD_CMD_NODE_REGISTER);

    struct rd_cmd d;
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), 0);
    assert_int_equal(d.type, RD_CMD_NODE_REGISTER);
    assert_int_equal(d.time_ms, 1764000000123LL);
    assert_str(d.u.reg.node_id, "agent-7");
    assert_int_equal(d.u.reg.slots, 12);
    assert_str(d.u.reg.labels_json, "{\"zone\":\"eu\"}");
    assert_str(d.u.reg.health_url, "http://127.0.0.1:9/health");
    assert_int_equal(d.u.reg.address.len, 0);
    rd_w_free(&w);
}

static void test_transition_round_trip(void **state)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_TRANSITION, .time_ms = -5};
    c.u.trans.node_id = RD_STR("n");
    c.u.trans.epoch = 0xfedcba9876543210ULL;
    c.u.trans.state = RD_NODE_ISOLATED;
    c.u.trans.reason = RD_STR("operator");
    struct rd_wbuf w;
    encode(&c, &w);
    struct rd_cmd d;
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), 0);
    assert_int_equal(d.time_ms, -5);
    assert_true(d.u.trans.epoch == 0xfedcba9876543210ULL);
    assert_int_equal(d.u.trans.state, RD_NODE_ISOLATED);
    assert_str(d.u.trans.reason, "operator");
    rd_w_free(&w);
}

/* Every proper prefix of a valid command is refused, never read past. */
static void test_every_truncation_is_refused(void **state)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_REGISTER, .time_ms = 42};
    c.u.reg.node_id = RD_STR("abc");
    c.u.reg.slots = 1;
    c.u.reg.labels_json = RD_STR("{}");
    c.u.reg.health_url = RD_STR("");
    c.u.reg.address = RD_STR("10.0.0.1:9");
    struct rd_wbuf w;
    encode(&c, &w);
    for (size_t n = 0; n < w.len; n++) {
        /* A fresh heap copy of exactly n bytes lets ASan catch any over-read. */
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, w.p, n);
        struct rd_cmd d;
        assert_int_equal(rd_cmd_decode(copy, n, &d), RD_EPARSE);
        free(copy);
    }
    rd_w_free(&w);
}

/* Trailing bytes (padding, fields added by newer versions) are ignored. */
static void test_trailing_bytes_ignored(void **state)
{
    struct rd_cmd c = {.type = RD_CMD_NOOP, .time_ms = 7};
    struct rd_wbuf w;
    encode(&c, &w);
    assert_int_equal(w.len, RD_CMD_HEADER_SIZE);
    rd_w_u64(&w, 0);
    struct rd_cmd d;
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), 0);
    assert_int_equal(d.type, RD_CMD_NOOP);
    assert_int_equal(d.time_ms, 7);
    rd_w_free(&w);
}

/* Fields appended to a body (fault_open's quarantine, task_assign's note)
 * round-trip; entries written before them, with or without the log's zero
 * padding (up to 7 bytes), read as "none". */
static void test_appended_fields(void **state)
{
    struct rd_cmd c = {.type = RD_CMD_FAULT_OPEN, .time_ms = 3};
    c.u.fopen.id = RD_STR("f1");
    c.u.fopen.node_id = RD_STR("");
    c.u.fopen.metadata_json = RD_STR("{}");
    c.u.fopen.recovery_action_json = RD_STR("null");
    c.u.fopen.set_state = RD_STATE_ANY;
    c.u.fopen.from_state = RD_STATE_ANY;
    struct rd_wbuf old;
    encode(&c, &old); /* no task: the body ends where it always did */
    c.u.fopen.task_id = RD_STR("t-1");
    c.u.fopen.task_attempt = 4;
    struct rd_wbuf w;
    encode(&c, &w);
    assert_int_equal(w.len, old.len + 4 + 3 + 4);
    struct rd_cmd d;
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), 0);
    assert_str(d.u.fopen.task_id, "t-1");
    assert_int_equal(d.u.fopen.task_attempt, 4);
    for (int pad = 0; pad < 8; pad++) {
        struct rd_wbuf p;
        rd_w_init(&p);
        rd_w_bytes(&p, old.p, old.len);
        for (int i = 0; i < pad; i++)
            rd_w_u8(&p, 0);
        assert_int_equal(rd_cmd_decode(p.p, p.len, &d), 0);
        assert_int_equal(d.u.fopen.task_id.len, 0);
        assert_int_equal(d.u.fopen.task_attempt, 0);
        rd_w_free(&p);
    }
    rd_w_free(&w);
    rd_w_free(&old);

    struct rd_cmd a = {.type = RD_CMD_TASK_ASSIGN, .time_ms = 4};
    a.u.tassign.task_id = RD_STR("t-1");
    a.u.tassign.node_id = RD_STR("");
    a.u.tassign.recovery_id = RD_STR("r");
    a.u.tassign.item_id = RD_STR("i");
    a.u.tassign.strategy = RD_STR("fast_recovery");
    encode(&a, &old);
    a.u.tassign.note = RD_STR("max_time passed");
    encode(&a, &w);
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), 0);
    assert_str(d.u.tassign.note, "max_time passed");
    for (int pad = 0; pad < 8; pad++) {
        struct rd_wbuf p;
        rd_w_init(&p);
        rd_w_bytes(&p, old.p, old.len);
        for (int i = 0; i < pad; i++)
            rd_w_u8(&p, 0);
        assert_int_equal(rd_cmd_decode(p.p, p.len, &d), 0);
        assert_int_equal(d.u.tassign.note.len, 0);
        assert_str(d.u.tassign.strategy, "fast_recovery");
        assert_int_equal(d.u.tassign.undelivered, 0);
        rd_w_free(&p);
    }
    rd_w_free(&w);
    /* `undelivered`, after the note, with or without one; anything but 0
     * or 1 is damage. */
    for (int with_note = 0; with_note < 2; with_note++) {
        a.u.tassign.note = with_note ? RD_STR("max_time passed") : RD_STR("");
        a.u.tassign.undelivered = 1;
        encode(&a, &w);
        assert_int_equal(rd_cmd_decode(w.p, w.len, &d), 0);
        assert_int_equal(d.u.tassign.undelivered, 1);
        assert_int_equal(d.u.tassign.note.len, with_note ? 15 : 0);
        w.p[w.len - 1] = 2;
        assert_int_equal(rd_cmd_decode(w.p, w.len, &d), RD_EPARSE);
        rd_w_free(&w);
    }
    rd_w_free(&old);
}

static void test_unknown_format_and_type(void **state)
{
    struct rd_cmd c = {.type = RD_CMD_NOOP, .time_ms = 1};
    struct rd_wbuf w;
    encode(&c, &w);
    struct rd_cmd d;
    w.p[0] = RD_CMD_FORMAT_AUDIT + 1;
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), RD_EUNSUPPORTED);
    w.p[0] = RD_CMD_FORMAT;
    w.p[1] = RD_CMD_TYPE_MAX;
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), RD_EUNSUPPORTED);
    rd_w_free(&w);

    struct rd_cmd bad = {.type = 200};
    rd_w_init(&w);
    assert_int_equal(rd_cmd_encode(&bad, &w), RD_EINVAL);
    rd_w_free(&w);
}

static void test_bad_state_is_refused(void **state)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_TRANSITION, .time_ms = 1};
    c.u.trans.node_id = RD_STR("n");
    c.u.trans.state = RD_NODE_LEFT;
    c.u.trans.reason = RD_STR("");
    struct rd_wbuf w;
    encode(&c, &w);
    /* state byte sits after header(12) + id(4+1) + epoch(8) */
    w.p[12 + 5 + 8] = RD_NODE_STATE_COUNT;
    struct rd_cmd d;
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), RD_EPARSE);
    rd_w_free(&w);
}

/* A checkpoint repair round-trips; one whose versions or data cannot be
 * right (nothing the leader writes) is refused as malformed, and every
 * truncation of it too. */
static void test_checkpoint_restore(void **state)
{
    const char *data = "{\"step\":5}";
    struct rd_cmd c = {.type = RD_CMD_CHECKPOINT_RESTORE, .time_ms = 9};
    c.u.crestore.task_id = RD_STR("11111111-1111-4111-8111-111111111111");
    c.u.crestore.bad_version = 5;
    c.u.crestore.version = 5;
    c.u.crestore.from_backup = 1;
    c.u.crestore.at = 1764000000000LL;
    c.u.crestore.checksum = rd_fnv1a(RD_FNV_INIT, data, strlen(data));
    c.u.crestore.data_json = RD_STR(data);
    c.u.crestore.source = RD_STR("backup b-1");
    c.u.crestore.fault_id = RD_STR("f-1");
    struct rd_wbuf w;
    encode(&c, &w);
    struct rd_cmd d;
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), 0);
    assert_int_equal(d.type, RD_CMD_CHECKPOINT_RESTORE);
    assert_string_equal(rd_cmd_type_name(d.type), "checkpoint_restore");
    assert_str(d.u.crestore.task_id, "11111111-1111-4111-8111-111111111111");
    assert_int_equal(d.u.crestore.bad_version, 5);
    assert_int_equal(d.u.crestore.version, 5);
    assert_int_equal(d.u.crestore.from_backup, 1);
    assert_int_equal(d.u.crestore.at, 1764000000000LL);
    assert_true(d.u.crestore.checksum == c.u.crestore.checksum);
    assert_str(d.u.crestore.data_json, data);
    assert_str(d.u.crestore.source, "backup b-1");
    assert_str(d.u.crestore.fault_id, "f-1");
    for (size_t n = 0; n < w.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, w.p, n);
        assert_int_equal(rd_cmd_decode(copy, n, &d), RD_EPARSE);
        free(copy);
    }
    rd_w_free(&w);

    struct rd_cmd bad[6];
    for (int i = 0; i < 6; i++)
        bad[i] = c;
    bad[0].u.crestore.version = 6;          /* newer than the bad version */
    bad[1].u.crestore.checksum ^= 1;        /* data that is not what was checked */
    bad[2].u.crestore.from_backup = 0;      /* a held version that is the bad one */
    bad[3].u.crestore.version = 0;          /* versions start at 1 */
    bad[4].u.crestore.task_id = RD_STR(""); /* no task */
    bad[5].u.crestore.from_backup = 2;      /* neither */
    for (int i = 0; i < 6; i++) {
        encode(&bad[i], &w);
        assert_int_equal(rd_cmd_decode(w.p, w.len, &d), RD_EPARSE);
        rd_w_free(&w);
    }
    /* A held older version: no data, no checksum to check. */
    c.u.crestore.from_backup = 0;
    c.u.crestore.version = 4;
    c.u.crestore.checksum = 0;
    c.u.crestore.data_json = RD_STR("");
    encode(&c, &w);
    assert_int_equal(rd_cmd_decode(w.p, w.len, &d), 0);
    assert_int_equal(d.u.crestore.version, 4);
    assert_int_equal(d.u.crestore.from_backup, 0);
    rd_w_free(&w);
}

/* A checkpoint command of task `i`, as group commit encodes them. */
static struct rd_cmd ckpt_cmd(int i, char *id, size_t idlen)
{
    snprintf(id, idlen, "task-%04d", i);
    struct rd_cmd c = {.type = RD_CMD_TASK_CHECKPOINT, .time_ms = 1000 + (i * 37) % 11};
    c.u.tckpt.task_id = RD_STR(id);
    c.u.tckpt.attempt = 1;
    c.u.tckpt.version = (uint64_t)i + 1;
    c.u.tckpt.data_json = RD_STR("{\"blob\":\"0123456789abcdef\"}");
    c.u.tckpt.checksum = 7;
    c.u.tckpt.keep = 3;
    if (i % 5 == 4) { /* now and then one with an audit part (format 2) */
        c.audit.present = 1;
        c.audit.principal = RD_STR("tok-1");
        c.audit.action = RD_STR("task_checkpoint");
    }
    return c;
}

/* Batches built in place (rd_cmd_batch_append, rd_cmd_batch_seal: group
 * commit) are byte for byte the ones built from separately encoded commands
 * (rd_cmd_batch_begin, rd_cmd_batch_add), read back command by command; one
 * command alone is that command as if never batched; a command that cannot
 * be encoded leaves the batch as it was. */
static void test_batch_in_place_round_trip(void **state)
{
    const uint32_t counts[] = {1, 2, 3, 17, RD_CMD_BATCH_MAX};
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
        uint32_t n = counts[k];
        struct rd_wbuf in_place, old, one[RD_CMD_BATCH_MAX];
        rd_w_init(&in_place);
        int64_t newest = 0;
        char id[32];
        for (uint32_t i = 0; i < n; i++) {
            struct rd_cmd c = ckpt_cmd((int)i, id, sizeof(id));
            newest = c.time_ms > newest ? c.time_ms : newest;
            rd_w_init(&one[i]);
            assert_int_equal(rd_cmd_encode(&c, &one[i]), 0);
            assert_int_equal(rd_cmd_batch_append(&in_place, &c), 0);
            /* An unknown type between two: refused, nothing written. */
            size_t len = in_place.len;
            struct rd_cmd bad = {.type = 250, .time_ms = 1};
            assert_int_equal(rd_cmd_batch_append(&in_place, &bad), RD_EINVAL);
            assert_int_equal(in_place.len, len);
            assert_int_equal(in_place.err, 0);
        }
        rd_cmd_batch_seal(&in_place, n, newest);
        assert_int_equal(in_place.err, 0);
        if (n == 1) {
            assert_int_equal(in_place.len, one[0].len);
            assert_memory_equal(in_place.p, one[0].p, one[0].len);
            assert_false(rd_cmd_is_batch(in_place.p, in_place.len));
        } else {
            rd_w_init(&old);
            rd_cmd_batch_begin(&old, n, newest);
            for (uint32_t i = 0; i < n; i++)
                rd_cmd_batch_add(&old, one[i].p, one[i].len);
            assert_int_equal(in_place.len, old.len);
            assert_memory_equal(in_place.p, old.p, old.len);
            rd_w_free(&old);
            assert_true(rd_cmd_is_batch(in_place.p, in_place.len));
            struct rd_cmd_batch b;
            assert_int_equal(rd_cmd_batch_open(&b, in_place.p, in_place.len), 0);
            assert_int_equal(b.count, n);
            assert_int_equal(b.time_ms, newest);
            const uint8_t *p;
            size_t len;
            for (uint32_t i = 0; i < n; i++) {
                assert_int_equal(rd_cmd_batch_next(&b, &p, &len), 1);
                assert_int_equal(len, one[i].len);
                assert_memory_equal(p, one[i].p, len);
                struct rd_cmd got;
                assert_int_equal(rd_cmd_decode(p, len, &got), 0);
                assert_int_equal(got.u.tckpt.version, i + 1);
            }
            assert_int_equal(rd_cmd_batch_next(&b, &p, &len), 0);
        }
        for (uint32_t i = 0; i < n; i++)
            rd_w_free(&one[i]);
        rd_w_free(&in_place);
    }
    /* Sealing nothing is an error, not a batch of none. */
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_batch_seal(&w, 0, 0);
    assert_int_equal(w.err, RD_EINVAL);
    rd_w_free(&w);
}

static void test_state_names(void **state)
{
    for (int s = 0; s < RD_NODE_STATE_COUNT; s++) {
        const char *name = rd_node_state_name(s);
        assert_int_equal(rd_node_state_parse(name, strlen(name)), s);
    }
    assert_int_equal(rd_node_state_parse("alive2", 6), -1);
    assert_int_equal(rd_node_state_parse("aliv", 4), -1);
    assert_string_equal(rd_node_state_name(99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_round_trip),
        cmocka_unit_test(test_transition_round_trip),
        cmocka_unit_test(test_every_truncation_is_refused),
        cmocka_unit_test(test_trailing_bytes_ignored),
        cmocka_unit_test(test_appended_fields),
        cmocka_unit_test(test_unknown_format_and_type),
        cmocka_unit_test(test_bad_state_is_refused),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_checkpoint_restore),
        cmocka_unit_test(test_batch_in_place_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
