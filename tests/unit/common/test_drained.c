/*
 * When the loop last had read all its input (common/drained.c), on a real
 * libuv loop: an idle loop is drained when its wait ends; a turn that runs
 * long, in a timer or in an I/O callback, leaves the answer where its poll
 * returned, so a callback of the next turn sees the whole turn as unread
 * time; libuv counts as idle only a poll that found nothing (the wait
 * added to the poll's start), not one that returned with input ready.
 */
#include "cmocka_all.h"

#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "common/drained.h"
#include "common/util.h"

#define MS 1000000ull

struct world {
    uv_loop_t loop;
    struct rd_drained d;
    uv_timer_t t1, t2;
    uint64_t burn_from, seen_now, seen_at;
    unsigned fired;
};

static void burn_cb(uv_timer_t *t)
{
    struct world *w = t->data;
    w->burn_from = rd_mono_ns();
    while (rd_mono_ns() - w->burn_from < 60 * MS)
        ;
}

/* Runs right after burn_cb in the same turn (same due time, started after). */
static void look_cb(uv_timer_t *t)
{
    struct world *w = t->data;
    w->seen_now = rd_mono_ns();
    w->seen_at = rd_drained_at(&w->d, w->seen_now);
}

static void world_init(struct world *w)
{
    memset(w, 0, sizeof(*w));
    assert_int_equal(uv_loop_init(&w->loop), 0);
    assert_int_equal(rd_drained_start(&w->d, &w->loop, rd_mono_ns), 0);
    uv_timer_init(&w->loop, &w->t1);
    uv_timer_init(&w->loop, &w->t2);
    w->t1.data = w->t2.data = w;
}

static void world_close(struct world *w)
{
    rd_drained_stop(&w->d);
    uv_close((uv_handle_t *)&w->t1, NULL);
    uv_close((uv_handle_t *)&w->t2, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&w->loop), 0);
}

/* An idle loop waits for its timer: drained when the wait ended, so a
 * callback right after sees (almost) now; a turn that burns 60 ms leaves
 * the answer before the burn: what came meanwhile is unread. */
static void test_idle_then_busy_turn(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    uint64_t t0 = rd_mono_ns();
    /* Not drained before the loop ever waited: `now` (nothing better). */
    assert_int_equal(rd_drained_at(&w.d, t0), t0);
    uv_timer_start(&w.t2, look_cb, 30, 0);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    assert_true(w.d.waits >= 1);
    assert_true(w.seen_at >= t0 + 25 * MS); /* the wait for the timer */
    assert_true(w.seen_at <= w.seen_now);
    assert_true(w.seen_now - w.seen_at < 40 * MS);

    /* The busy turn: burn_cb, then look_cb, at the same due time. */
    uv_timer_start(&w.t1, burn_cb, 20, 0);
    uv_timer_start(&w.t2, look_cb, 20, 0);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    assert_true(w.burn_from > 0);
    assert_true(w.seen_at <= w.burn_from);
    assert_true(w.seen_now - w.seen_at >= 60 * MS);
    /* After the turn, the loop waits again: drained anew. */
    uint64_t waits = w.d.waits;
    uv_timer_start(&w.t2, look_cb, 10, 0);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    assert_true(w.d.waits > waits);
    assert_true(w.seen_now - w.seen_at < 40 * MS);
    world_close(&w);
}

/* A reader whose callback takes 60 ms (a fork's page faults): the next
 * turn sees at least those 60 ms as unread time. */
struct reader {
    struct world *w;
    int fd;
};

static void on_readable_burn(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    struct reader *r = p->data;
    char c;
    if (read(r->fd, &c, 1) == 1)
        burn_cb(&r->w->t1);                   /* t1.data is the world */
    uv_timer_start(&r->w->t2, look_cb, 0, 0); /* the next turn's timers */
}

/* A pipe watched by `poll` on the world's loop: fds[0] read, fds[1] written. */
static void pipe_watch(struct world *w, int fds[2], uv_poll_t *poll, uv_poll_cb cb, void *data)
{
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(uv_poll_init(&w->loop, poll, fds[0]), 0);
    poll->data = data;
    assert_int_equal(uv_poll_start(poll, UV_READABLE, cb), 0);
}

static void pipe_unwatch(struct world *w, int fds[2], uv_poll_t *poll)
{
    uv_poll_stop(poll);
    uv_close((uv_handle_t *)poll, NULL);
    world_close(w);
    close(fds[0]);
    close(fds[1]);
}

static void test_long_io_turn(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    int fds[2];
    uv_poll_t poll;
    struct reader r = {.w = &w};
    pipe_watch(&w, fds, &poll, on_readable_burn, &r);
    r.fd = fds[0];
    assert_int_equal(write(fds[1], "x", 1), 1);
    while (w.seen_now == 0)
        uv_run(&w.loop, UV_RUN_ONCE);
    assert_true(w.burn_from > 0);
    assert_true(w.seen_at <= w.burn_from);
    assert_true(w.seen_now - w.seen_at >= 60 * MS);
    pipe_unwatch(&w, fds, &poll);
}

/* Input always ready (a pipe's byte nobody reads): libuv polls once without
 * waiting and finds it, every turn, so no turn counts a wait, however often
 * the timer lets the loop poll; the answer is each poll's start. */
static void on_readable(uv_poll_t *p, int status, int events)
{
    (void)p;
    (void)status;
    (void)events;
}

static void count_cb(uv_timer_t *t)
{
    struct world *w = t->data;
    if (++w->fired == 50)
        uv_timer_stop(t);
}

static void test_ready_input_is_no_wait(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    int fds[2];
    uv_poll_t poll;
    pipe_watch(&w, fds, &poll, on_readable, NULL);
    assert_int_equal(write(fds[1], "x", 1), 1);
    uv_timer_start(&w.t1, count_cb, 2, 2);
    while (w.fired < 50)
        uv_run(&w.loop, UV_RUN_ONCE);
    assert_true(w.d.turns >= 50);
    assert_int_equal(w.d.waits, 0);
    assert_int_equal(w.d.at_ns, w.d.poll_ns); /* this turn's poll, no wait */
    /* Read empty again, the loop waits for its timer and counts it. */
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    uv_timer_start(&w.t2, look_cb, 10, 0);
    uv_run(&w.loop, UV_RUN_ONCE); /* waits for t2, then runs it */
    assert_true(w.d.waits >= 1);
    assert_true(w.seen_now - w.seen_at < 40 * MS);
    pipe_unwatch(&w, fds, &poll);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_then_busy_turn),
        cmocka_unit_test(test_long_io_turn),
        cmocka_unit_test(test_ready_input_is_no_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
