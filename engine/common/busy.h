/*
 * Whether an event loop is saturated, from the time it spent idle (libuv's
 * uv_metrics_idle_time: the time blocked in its poll, with
 * UV_METRICS_IDLE_TIME on).
 *
 * Measured over stretches of at least RD_BUSY_SPAN_NS, whenever the caller
 * asks (a stretch is from the previous measure to now, however long). A
 * loop becomes saturated when it idled less than a quarter of a stretch,
 * and stays so until it idles half of one: what a caller does while the
 * loop is saturated (the group commit's delay, replica.c) gives the loop
 * some idle time back, and without the gap between the two thresholds that
 * would turn off what brought it. A loop whose idle time is not measured
 * (always 0) is never saturated; neither is one before its first stretch.
 */
#ifndef RD_BUSY_H
#define RD_BUSY_H

#include <stdbool.h>
#include <stdint.h>

#define RD_BUSY_SPAN_NS (50 * 1000000ULL)

struct rd_busy {
    uint64_t at_ns;   /* the last measure (0: none yet) */
    uint64_t idle_ns; /* the loop's idle time then */
    bool busy;        /* what it found */
};

/* Whether the loop is saturated at `now_ns`, its idle time being `idle_ns`
 * (both monotonic, ns). */
bool rd_busy_update(struct rd_busy *b, uint64_t now_ns, uint64_t idle_ns);

#endif
