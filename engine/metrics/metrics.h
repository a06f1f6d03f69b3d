/*
 * Prometheus metrics: counters and fixed-bucket histograms kept in plain
 * structs by the modules that own them, and a writer for the text
 * exposition format (version 0.0.4). Loop-thread only, no locks.
 */
#ifndef RD_METRICS_H
#define RD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RD_HIST_BUCKETS 16

/*
 * Histogram in seconds with RD_HIST_BUCKETS fixed buckets, on one of two
 * scales: latencies (rd_hist_bounds, 50 us to 10 s; the default, what a
 * zeroed struct uses) or durations (rd_hist_bounds_long, 100 ms to 30 min)
 * for times an alert rule compares with thresholds of seconds to minutes
 * (detection within 30 s, recovery within 5 minutes, partition merge within
 * 10 minutes): a bucket must reach past every such threshold, or
 * histogram_quantile() can never exceed it.
 */
struct rd_hist {
    const double *bounds;             /* NULL: rd_hist_bounds; else rd_hist_bounds_long */
    uint64_t counts[RD_HIST_BUCKETS]; /* non-cumulative per bucket */
    uint64_t inf;                     /* above the last bound */
    uint64_t count;
    double sum;
};

extern const double rd_hist_bounds[RD_HIST_BUCKETS];
extern const double rd_hist_bounds_long[RD_HIST_BUCKETS];

/* The bounds `h` uses. */
const double *rd_hist_bounds_of(const struct rd_hist *h);

void rd_hist_observe(struct rd_hist *h, double seconds);

/*
 * Quantile q (0 to 1; outside, clamped) of the observations, in seconds,
 * estimated from the buckets as Prometheus's histogram_quantile() does: the
 * rank q * count is found in the cumulative counts and interpolated linearly
 * inside its bucket (the first bucket starts at 0). The result is an
 * estimate, anywhere inside that bucket, not an observed value.
 *
 * When the rank falls in the +Inf bucket (above the last bound: 10 s, or
 * 30 min on the duration scale) there is nothing to interpolate: like
 * Prometheus, it returns the last bound. That is a floor, not an estimate:
 * the quantile is only known to be larger. rd_hist_quantile_capped() tells
 * the two apart; whoever shows the figure must say "above" then.
 * Returns 0 for an empty histogram.
 */
double rd_hist_quantile(const struct rd_hist *h, double q);

/*
 * True when quantile q of `h` lies above the last bound (in the +Inf
 * bucket), i.e. rd_hist_quantile() returned that bound as a floor. False for
 * an empty histogram.
 */
bool rd_hist_quantile_capped(const struct rd_hist *h, double q);

/* A growing text buffer for one scrape. */
struct rd_mbuf {
    char *p;
    size_t len;
    size_t cap;
    int err;
};

void rd_mbuf_init(struct rd_mbuf *b);
void rd_mbuf_free(struct rd_mbuf *b);
void rd_mbuf_printf(struct rd_mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "# HELP name help\n# TYPE name type\n" */
void rd_metric_header(struct rd_mbuf *b, const char *name, const char *type, const char *help);

/* The header and one unlabelled series of `value`. */
void rd_metric_u64(struct rd_mbuf *b, const char *name, const char *type, const char *help,
                   uint64_t value);

/* One histogram series; `labels` is "" or `key="v",key2="w"`. */
void rd_metric_hist(struct rd_mbuf *b, const char *name, const char *labels,
                    const struct rd_hist *h);

#endif
