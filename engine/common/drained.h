/*
 * When the loop last had read all its input.
 *
 * Arrival times are stamped when the loop reads a request, so while the
 * loop is behind (a snapshot's fork makes every page it writes a fault for
 * half a second, another process takes the CPU) what the peers sent waits
 * in socket buffers, and silence measured up to "now" is partly the
 * engine's own. Silence measured up to the last moment the loop is known
 * to have read everything is the peers' alone.
 *
 * Each turn of the loop polls, and the callbacks of that poll read what
 * their sockets hold (h2o reads a readable socket in its callback; libuv
 * takes up to 32 buffers per socket and call, and what is left is ready
 * again at the next poll). So at the end of a turn's poll phase everything
 * that arrived before the poll returned has been read: before the poll
 * began, or, when the poll found nothing and waited (libuv, with
 * UV_METRICS_IDLE_TIME, polls once without waiting and counts as idle only
 * a poll that then waited), before the wait ended. A turn that runs long
 * (a fork's page faults, a burst of work, no CPU) leaves that moment where
 * the turn began, and what came meanwhile is read by the next turn.
 *
 * A reader that leaves data in its socket on purpose (a paused h2o
 * connection) is not seen: its bytes wait while the moment moves on, as
 * before this existed.
 */
#ifndef RD_DRAINED_H
#define RD_DRAINED_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct rd_drained {
    uv_prepare_t prepare;
    uv_check_t check;
    uint64_t (*clock)(void); /* monotonic ns, rd_mono_ns or a test's */
    uint64_t poll_ns;        /* when this turn's poll began (prepare) */
    uint64_t idle_ns;        /* the loop's idle time then */
    uint64_t at_ns;          /* the answer: 0 before the first turn */
    uint64_t turns;          /* turns seen */
    uint64_t waits;          /* ... whose poll waited */
    bool on;
};

/* Starts watching `loop` (enables its idle-time metric). 0 or a libuv error. */
int rd_drained_start(struct rd_drained *d, uv_loop_t *loop, uint64_t (*clock)(void));
/* Closes the handles (the loop frees nothing of `d`). */
void rd_drained_stop(struct rd_drained *d);

/* The last moment (on d->clock) the loop had read all its input, at most
 * `now`; `now` itself when not watching or before the first turn (nothing
 * better is known). */
uint64_t rd_drained_at(const struct rd_drained *d, uint64_t now);

#endif
