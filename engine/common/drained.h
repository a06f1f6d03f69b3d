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
 * That moment is when a poll of the loop found nothing ready and had to
 * wait: libuv, with UV_METRICS_IDLE_TIME, polls once without waiting and
 * counts as idle only a poll that then waited, so idle time that grew
 * during a turn's poll means every socket was empty when it began, and
 * everything that arrived before the wait ended was read in that turn.
 * A loop that never waits (saturated) is never known drained: the caller
 * bounds how far back it is willing to judge.
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
    uint64_t at_ns;          /* the answer: 0 before the first wait */
    uint64_t waits;          /* turns whose poll waited */
    bool on;
};

/* Starts watching `loop` (enables its idle-time metric). 0 or a libuv error. */
int rd_drained_start(struct rd_drained *d, uv_loop_t *loop, uint64_t (*clock)(void));
/* Closes the handles (the loop frees nothing of `d`). */
void rd_drained_stop(struct rd_drained *d);

/* The last moment (on d->clock) the loop had read all its input, at most
 * `now`; `now` itself when not watching (nothing better is known). */
uint64_t rd_drained_at(const struct rd_drained *d, uint64_t now);

#endif
