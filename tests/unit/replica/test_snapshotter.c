/*
 * engine/replica/snapshot.c: raft's snapshots imaged by a forked child. The
 * state machine's callback returns a placeholder at once; the snapshot_put
 * that follows is held until the child's image is in, and libraft's own put
 * then receives the state as it was at the snapshot, whatever was applied
 * since. A child that dies holds the put (libraft takes no failed snapshot
 * outside a close) and says so; a close answers a held put RAFT_CANCELED
 * before libraft's own close runs.
 *
 * The log bounded by bytes: the machine's apply counts the bytes since the
 * last snapshot; past the byte threshold libraft's entry threshold drops to
 * 1 (libraft snapshots after that apply), the snapshot puts it back and
 * keeps as trailing entries only the newest that fit in the trailing bytes.
 *
 * Staggered: a replica at place k of n lowers the threshold to 1 at its own
 * index of the cycle (rd_snapshot_next_at), libraft's own threshold a
 * backstop.
 *
 * libraft itself is not here: a raft_io whose snapshot_put and close record
 * what reaches them, and the raft struct only as the replica's pointer
 * (raft->data), as libraft sets it.
 */
#include "cmocka_all.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/snapshot.h"
#include "fsm_test.h"
#include "recoveryd/error.h"
#include "replica/replica.h"

struct world {
    uv_loop_t loop;
    struct rd_replica r;
    struct rd_fsm f;
    /* what reached libraft's (fake) put and close */
    int puts, closes;
    struct rd_wbuf put_bytes;
    /* what libraft's callbacks were told */
    int put_cbs, put_status;
    int failures;
    char why[256];
    struct raft_io_snapshot_put req;
    struct raft_snapshot snapshot;
};

static struct world *W;

static int fake_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                    const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    (void)io, (void)trailing;
    W->puts++;
    rd_w_bytes(&W->put_bytes, snapshot->bufs[0].base, snapshot->bufs[0].len);
    cb(req, 0);
    return 0;
}

static void fake_close(struct raft_io *io, raft_io_close_cb cb)
{
    (void)io, (void)cb;
    W->closes++;
}

static void put_cb(struct raft_io_snapshot_put *req, int status)
{
    (void)req;
    W->put_cbs++;
    W->put_status = status;
}

static void failed(void *data, const char *why)
{
    struct world *w = data;
    w->failures++;
    snprintf(w->why, sizeof(w->why), "%s", why);
}

static struct world *world_new(int nodes)
{
    struct world *w = calloc(1, sizeof(*w));
    W = w;
    uv_loop_init(&w->loop);
    rd_fsm_init(&w->f);
    fill(&w->f, nodes);
    w->r.loop = &w->loop;
    w->r.raft.data = &w->r;
    w->r.raft.io = &w->r.io;
    w->r.io.data = &w->r.raft;
    w->r.io.snapshot_put = fake_put;
    w->r.io.close = fake_close;
    rd_fsm_bind_raft(&w->f, &w->r.raft);
    w->r.snap.on_failed = failed;
    w->r.snap.on_failed_data = w;
    rd_snapshotter_attach(&w->r.snap, &w->loop, &w->f, &w->r.io);
    rd_w_init(&w->put_bytes);
    return w;
}

static void world_free(struct world *w)
{
    for (unsigned i = 0; i < w->snapshot.n_bufs; i++)
        raft_free(w->snapshot.bufs[i].base);
    raft_free(w->snapshot.bufs);
    rd_w_free(&w->put_bytes);
    rd_fsm_close(&w->f);
    while (uv_run(&w->loop, UV_RUN_NOWAIT) != 0)
        ;
    assert_int_equal(uv_loop_close(&w->loop), 0);
    free(w);
}

/* What libraft does: the state machine's snapshot, then the put at once. */
static void take(struct world *w)
{
    w->snapshot.index = 1234;
    assert_int_equal(w->f.raft.snapshot(&w->f.raft, &w->snapshot.bufs, &w->snapshot.n_bufs), 0);
    assert_int_equal(w->snapshot.n_bufs, 1);
    assert_true(w->snapshot.bufs[0].len < 64); /* a placeholder: nothing serialised on the loop */
    assert_int_equal(w->r.io.snapshot_put(&w->r.io, 16, &w->req, &w->snapshot, put_cb), 0);
    assert_true(rd_snapshotter_child(&w->r.snap) > 0);
}

static void run_until(struct world *w, const int *counter)
{
    while (*counter == 0)
        assert_true(uv_run(&w->loop, UV_RUN_ONCE) != 0 || *counter > 0);
}

static void test_put_gets_the_state_at_the_snapshot(void **state)
{
    (void)state;
    struct world *w = world_new(3000);
    uint64_t digest = rd_fsm_digest(&w->f);
    size_t nodes = w->f.n_nodes;
    take(w);
    assert_int_equal(w->puts, 0); /* held until the image is in */
    apply(&w->f, cmd_register("after-the-snapshot", 2, 999999));
    run_until(w, &w->put_cbs);
    assert_int_equal(w->puts, 1);
    assert_int_equal(w->put_status, 0);
    assert_int_equal(w->r.snap.forked, 1);
    assert_int_equal(w->r.snap.on_loop, 0);
    assert_int_equal(rd_snapshotter_child(&w->r.snap), 0);

    /* The bytes libraft writes are a whole snapshot of the state as it was. */
    struct rd_fsm back;
    rd_fsm_init(&back);
    assert_int_equal(rd_fsm_restore(&back, w->put_bytes.p, w->put_bytes.len), 0);
    assert_int_equal(back.n_nodes, nodes);
    assert_null(rd_fsm_node(&back, "after-the-snapshot", strlen("after-the-snapshot")));
    assert_int_equal(rd_fsm_digest(&back), digest);
    rd_fsm_close(&back);

    /* A second one works the same (the job was released). */
    rd_w_free(&w->put_bytes);
    rd_w_init(&w->put_bytes);
    for (unsigned i = 0; i < w->snapshot.n_bufs; i++)
        raft_free(w->snapshot.bufs[i].base);
    raft_free(w->snapshot.bufs);
    w->snapshot.bufs = NULL;
    w->snapshot.n_bufs = 0;
    w->put_cbs = 0;
    take(w);
    run_until(w, &w->put_cbs);
    assert_int_equal(w->puts, 2);
    assert_int_equal(w->r.snap.forked, 2);

    w->r.io.close(&w->r.io, NULL);
    assert_int_equal(w->closes, 1);
    world_free(w);
}

/* A child killed (the OOM killer, an operator): no put, no answer, the
 * failure told; the close then answers RAFT_CANCELED before libraft's close. */
static void test_dead_child_holds_the_put_until_the_close(void **state)
{
    (void)state;
    struct world *w = world_new(20000);
    take(w);
    assert_int_equal(kill(rd_snapshotter_child(&w->r.snap), SIGKILL), 0);
    run_until(w, &w->failures);
    assert_int_equal(w->failures, 1);
    assert_non_null(strstr(w->why, "index 1234"));
    assert_non_null(strstr(w->why, "signal 9"));
    assert_int_equal(w->r.snap.failed, 1);
    assert_int_equal(w->puts, 0);
    assert_int_equal(w->put_cbs, 0);
    /* Another snapshot meanwhile is refused (libraft skips it), not forked. */
    struct raft_buffer *bufs = NULL;
    unsigned n = 0;
    assert_int_equal(w->f.raft.snapshot(&w->f.raft, &bufs, &n), RAFT_BUSY);
    assert_int_equal(w->r.snap.forked, 1);

    w->r.io.close(&w->r.io, NULL);
    assert_int_equal(w->put_cbs, 1);
    assert_int_equal(w->put_status, RAFT_CANCELED);
    assert_int_equal(w->closes, 1);
    assert_int_equal(w->puts, 0);
    world_free(w);
}

/* A close while the child works: the child is killed, the put answered
 * RAFT_CANCELED, then libraft's close runs. */
static void test_close_while_imaging(void **state)
{
    (void)state;
    struct world *w = world_new(20000);
    take(w);
    w->r.io.close(&w->r.io, NULL);
    assert_int_equal(w->closes, 0); /* waits for the child */
    run_until(w, &w->closes);
    assert_int_equal(w->put_cbs, 1);
    assert_int_equal(w->put_status, RAFT_CANCELED);
    assert_int_equal(w->puts, 0);
    assert_int_equal(w->failures, 0); /* a close is not a failure */
    world_free(w);
}

/* A snapshot that is not a placeholder (one installed from the leader) goes
 * straight through. */
static void test_other_snapshots_pass_through(void **state)
{
    (void)state;
    struct world *w = world_new(10);
    struct raft_buffer buf = {.base = "not a placeholder", .len = 17};
    struct raft_snapshot other = {.index = 7, .bufs = &buf, .n_bufs = 1};
    assert_int_equal(w->r.io.snapshot_put(&w->r.io, 0, &w->req, &other, put_cb), 0);
    assert_int_equal(w->puts, 1);
    assert_int_equal(w->put_cbs, 1);
    assert_int_equal(w->put_bytes.len, 17);
    w->r.io.close(&w->r.io, NULL);
    assert_int_equal(w->closes, 1);
    world_free(w);
}

/* One entry of `n` bytes through the (wrapped) apply, as libraft applies it:
 * not a command the machine reads, which it refuses for that entry only. */
static void apply_bytes(struct world *w, size_t n)
{
    struct raft_buffer b = {calloc(1, n), n};
    void *result = NULL;
    assert_non_null(b.base);
    assert_int_equal(w->f.raft.apply(&w->f.raft, &b, &result), 0);
    free(b.base);
}

static void test_bytes_bound(void **state)
{
    (void)state;
    struct world *w = world_new(10);
    struct raft *raft = &w->r.raft;
    assert_int_equal(rd_snapshotter_bound(&w->r.snap, raft, 8192, 1024, 1000, 300), 0);
    assert_int_equal(raft->legacy.snapshot_threshold, 8192);
    assert_int_equal(raft->legacy.snapshot_trailing, 1024);
    for (int i = 0; i < 9; i++)
        apply_bytes(w, 100);
    assert_int_equal(raft->legacy.snapshot_threshold, 8192); /* 900 bytes: not yet */
    apply_bytes(w, 100);
    assert_int_equal(raft->legacy.snapshot_threshold, 1); /* 1000: the next check takes one */
    apply_bytes(w, 50);
    assert_int_equal(raft->legacy.snapshot_threshold, 1);
    assert_int_equal(w->r.snap.since_bytes, 1050);

    take(w);
    assert_int_equal(w->r.snap.on_bytes, 1);
    assert_int_equal(raft->legacy.snapshot_threshold, 8192);
    assert_int_equal(w->r.snap.since_bytes, 0);
    /* 50 + 100 + 100 fit in 300 bytes, one more 100 would not. */
    assert_int_equal(raft->legacy.snapshot_trailing, 3);
    run_until(w, &w->put_cbs);
    assert_int_equal(w->put_status, 0);

    /* Entries smaller than the trailing bytes allow: the count decides. */
    assert_int_equal(rd_snapshotter_bound(&w->r.snap, raft, 8192, 2, 1000, 300), 0);
    for (int i = 0; i < 5; i++)
        apply_bytes(w, 10);
    assert_int_equal(raft->legacy.snapshot_threshold, 8192);
    for (unsigned i = 0; i < w->snapshot.n_bufs; i++)
        raft_free(w->snapshot.bufs[i].base);
    raft_free(w->snapshot.bufs);
    w->put_cbs = 0;
    take(w);
    assert_int_equal(w->r.snap.on_bytes, 1); /* the entry count's snapshot, not the bytes' */
    assert_int_equal(raft->legacy.snapshot_trailing, 2);
    run_until(w, &w->put_cbs);

    /* Both byte bounds off: libraft's counts alone, and no ring kept. */
    assert_int_equal(rd_snapshotter_bound(&w->r.snap, raft, 64, 16, 0, 0), 0);
    assert_null(w->r.snap.sizes);
    apply_bytes(w, 100000);
    assert_int_equal(raft->legacy.snapshot_threshold, 64);
    rd_snapshotter_free(&w->r.snap);
    world_free(w);
}

/* libraft's apply of the entry after the last applied: the machine's
 * apply, then last_applied (libraft sets it once apply returned). */
static void apply_next(struct world *w, size_t n)
{
    apply_bytes(w, n);
    w->r.raft.last_applied++;
}

/* Staggered (place 1 of 3, 64 entries): libraft's own threshold is a
 * backstop; the snapshotter lowers it to 1 at index 85 (64 + 64 / 3: its
 * phase is under half a cycle from the start), and after the snapshot
 * there at 149, one cycle on. The byte count starts a third of the way
 * in. A snapshot installed from the leader starts the cycle from its
 * index. Place 0 of 1 is libraft's count, as without staggering. */
static void test_staggered(void **state)
{
    (void)state;
    struct world *w = world_new(10);
    struct raft *raft = &w->r.raft;
    assert_int_equal(rd_snapshotter_bound(&w->r.snap, raft, 64, 16, 900, 0), 0);
    rd_snapshotter_stagger(&w->r.snap, 1, 3);
    assert_int_equal(raft->legacy.snapshot_threshold, 128);
    assert_int_equal(w->r.snap.since_bytes, 300);
    while (raft->last_applied < 84) {
        apply_next(w, 1);
        assert_int_equal(raft->legacy.snapshot_threshold, 128);
    }
    apply_next(w, 1); /* index 85 */
    assert_int_equal(raft->legacy.snapshot_threshold, 1);
    apply_next(w, 1); /* libraft checks after a batch: one more applied first */
    take(w);
    assert_int_equal(raft->legacy.snapshot_threshold, 128);
    assert_int_equal(w->r.snap.on_bytes, 0);
    assert_int_equal(w->r.snap.next_at, 149); /* not 86 + 64: on the cycle */
    run_until(w, &w->put_cbs);
    while (raft->last_applied < 148)
        apply_next(w, 1);
    assert_int_equal(raft->legacy.snapshot_threshold, 128);
    apply_next(w, 1);
    assert_int_equal(raft->legacy.snapshot_threshold, 1);

    /* A snapshot installed at 1000: the next at 1000 + 32 or later, on
     * the phase: 1045 (16 * 64 + 21). */
    w->r.snap.phase_armed = false;
    raft_set_snapshot_threshold(raft, 128);
    struct rd_wbuf img;
    rd_w_init(&img);
    assert_int_equal(rd_fsm_snapshot(&w->f, &img), 0);
    struct raft_buffer buf = {raft_malloc(img.len), img.len};
    memcpy(buf.base, img.p, img.len);
    rd_w_free(&img);
    assert_int_equal(w->f.raft.restore(&w->f.raft, &buf), 0);
    assert_int_equal(w->r.snap.since_bytes, 300);
    raft->last_applied = 1000;
    while (raft->last_applied < 1044) {
        apply_next(w, 1);
        assert_int_equal(raft->legacy.snapshot_threshold, 128);
    }
    apply_next(w, 1);
    assert_int_equal(raft->legacy.snapshot_threshold, 1);

    /* One replica: libraft's own count. */
    assert_int_equal(rd_snapshotter_bound(&w->r.snap, raft, 64, 16, 0, 0), 0);
    rd_snapshotter_stagger(&w->r.snap, 0, 1);
    assert_int_equal(raft->legacy.snapshot_threshold, 64);
    for (int i = 0; i < 200; i++)
        apply_next(w, 1);
    assert_int_equal(raft->legacy.snapshot_threshold, 64);
    rd_snapshotter_free(&w->r.snap);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_gets_the_state_at_the_snapshot),
        cmocka_unit_test(test_dead_child_holds_the_put_until_the_close),
        cmocka_unit_test(test_close_while_imaging),
        cmocka_unit_test(test_other_snapshots_pass_through),
        cmocka_unit_test(test_bytes_bound),
        cmocka_unit_test(test_staggered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
