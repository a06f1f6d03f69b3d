/*
 * engine/replica/image.c: a backup's image from a forked child. The image is
 * the state at the fork (whatever the parent applies afterwards), it
 * decodes to the same state, and a child that dies or is cancelled fails
 * the job with a reason instead of hanging it.
 */
#include "cmocka_all.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>
#include <string.h>

#include "replica/image.h"
#include "fsm_test.h"
#include "fsm/snapshot.h"
#include "recoveryd/error.h"

struct done {
    int calls;
    int status;
};

static void on_done(struct rd_image_job *job, int status)
{
    struct done *d = job->data;
    d->calls++;
    d->status = status;
}

/* Runs the loop until the job's callback ran. */
static void await(uv_loop_t *loop, struct done *d)
{
    while (d->calls == 0)
        assert_true(uv_run(loop, UV_RUN_ONCE) != 0 || d->calls > 0);
}

static void test_image_is_the_state_at_the_fork(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rd_fsm f;
    rd_fsm_init(&f);
    fill(&f, 2000);
    uint64_t digest_at_fork = rd_fsm_digest(&f);
    size_t nodes_at_fork = f.n_nodes;

    struct rd_wbuf image;
    rd_w_init(&image);
    struct rd_image_job job;
    struct done d = {0};
    assert_int_equal(rd_image_fork(&loop, &f, 100, &image, &job, on_done, &d), 0);
    assert_true(job.pid > 0);
    /* The parent goes on changing the state while the child works. */
    apply(&f, cmd_register("after-the-fork", 4, 999999));
    assert_int_not_equal(rd_fsm_digest(&f), digest_at_fork);
    await(&loop, &d);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.status, 0);
    assert_true(image.len > 0);
    assert_true(job.raw_len > image.len / 2);
    assert_int_equal(job.checksum, rd_fnv1a(RD_FNV_INIT, image.p, image.len));

    struct rd_fsm back;
    rd_fsm_init(&back);
    assert_int_equal(rd_fsm_restore(&back, image.p, image.len), 0);
    assert_int_equal(back.n_nodes, nodes_at_fork);
    assert_null(rd_fsm_node(&back, "after-the-fork", strlen("after-the-fork")));
    assert_int_equal(rd_fsm_digest(&back), digest_at_fork);

    rd_fsm_close(&back);
    rd_fsm_close(&f);
    rd_w_free(&image);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/*
 * A paced child (a few percent of a CPU: SIGPROF every slice of its CPU
 * time, a sleep in the handler) writes the very bytes an unpaced one does:
 * the signals that interrupt its walk, its allocations and its writes to
 * the pipe change nothing in the image.
 */
static void test_paced_child_writes_the_same_image(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rd_fsm f;
    rd_fsm_init(&f);
    fill(&f, 20000);
    struct rd_wbuf fast, paced;
    rd_w_init(&fast);
    rd_w_init(&paced);
    struct rd_image_job job;
    struct done d = {0};
    assert_int_equal(rd_image_fork(&loop, &f, 100, &fast, &job, on_done, &d), 0);
    await(&loop, &d);
    assert_int_equal(d.status, 0);
    memset(&d, 0, sizeof(d));
    assert_int_equal(rd_image_fork(&loop, &f, 5, &paced, &job, on_done, &d), 0);
    await(&loop, &d);
    assert_int_equal(d.status, 0);
    assert_int_equal(paced.len, fast.len);
    assert_memory_equal(paced.p, fast.p, fast.len);
    rd_fsm_close(&f);
    rd_w_free(&fast);
    rd_w_free(&paced);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/*
 * The child holds none of the parent's descriptors but its pipe. The one
 * that matters: the data directory's lock, a flock on an open file the
 * child would share. Here the parent locks a file, forks a slow (paced)
 * child, and lets go of its own descriptor, as a killed engine does: the
 * lock must be free at once, while the child still runs.
 */
static void test_child_keeps_no_lock(void **state)
{
    (void)state;
    char path[] = "/tmp/rd-image-lock-XXXXXX";
    int lock = mkstemp(path);
    assert_true(lock >= 0);
    assert_int_equal(flock(lock, LOCK_EX | LOCK_NB), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rd_fsm f;
    rd_fsm_init(&f);
    fill(&f, 20000);
    struct rd_wbuf image;
    rd_w_init(&image);
    struct rd_image_job job;
    struct done d = {0};
    assert_int_equal(rd_image_fork(&loop, &f, 1, &image, &job, on_done, &d), 0);
    close(lock);
    int again = open(path, O_RDWR | O_CLOEXEC);
    assert_true(again >= 0);
    bool free_now = false;
    /* The child may need a moment to close what it inherited, never more
     * than its first steps (it is paced to 1%, far from done). */
    for (int i = 0; i < 200 && !free_now; i++) {
        free_now = flock(again, LOCK_EX | LOCK_NB) == 0;
        if (!free_now)
            usleep(5000);
    }
    assert_int_equal(kill(job.pid, 0), 0); /* still imaging */
    assert_true(free_now);
    close(again);
    unlink(path);
    rd_image_cancel(&job);
    await(&loop, &d);
    rd_fsm_close(&f);
    rd_w_free(&image);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A job under way on a state large enough that its child takes a while. */
struct big {
    uv_loop_t loop;
    struct rd_fsm f;
    struct rd_wbuf image;
    struct rd_image_job job;
    struct done d;
};

static void big_start(struct big *b)
{
    memset(b, 0, sizeof(*b));
    uv_loop_init(&b->loop);
    rd_fsm_init(&b->f);
    fill(&b->f, 20000);
    rd_w_init(&b->image);
    assert_int_equal(rd_image_fork(&b->loop, &b->f, 100, &b->image, &b->job, on_done, &b->d), 0);
}

static void big_end(struct big *b)
{
    rd_fsm_close(&b->f);
    rd_w_free(&b->image);
    assert_int_equal(uv_loop_close(&b->loop), 0);
}

static void test_killed_child_fails_the_job(void **state)
{
    (void)state;
    static struct big b;
    big_start(&b);
    /* Killed before it wrote its image (or while writing it): the job
     * fails, it never passes for a complete image. */
    assert_int_equal(kill(b.job.pid, SIGKILL), 0);
    await(&b.loop, &b.d);
    assert_int_equal(b.d.calls, 1);
    if (b.d.status == 0) {
        /* The child had already written everything and exited: then the
         * image must be whole. */
        struct rd_fsm back;
        rd_fsm_init(&back);
        assert_int_equal(rd_fsm_restore(&back, b.image.p, b.image.len), 0);
        assert_int_equal(rd_fsm_digest(&back), rd_fsm_digest(&b.f));
        rd_fsm_close(&back);
    } else {
        assert_int_equal(b.d.status, RD_EIO);
        assert_non_null(strstr(b.job.errmsg, "child"));
    }
    big_end(&b);
}

static void test_cancel(void **state)
{
    (void)state;
    static struct big b;
    big_start(&b);
    rd_image_cancel(&b.job);
    await(&b.loop, &b.d);
    assert_int_equal(b.d.calls, 1);
    assert_int_equal(b.d.status, RD_ESHUTDOWN);
    assert_non_null(strstr(b.job.errmsg, "stops"));
    big_end(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_is_the_state_at_the_fork),
        cmocka_unit_test(test_paced_child_writes_the_same_image),
        cmocka_unit_test(test_child_keeps_no_lock),
        cmocka_unit_test(test_killed_child_fails_the_job),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
