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

/* Latency histogram in seconds, buckets from 50 us to 10 s. */
struct rd_hist {
    uint64_t counts[RD_HIST_BUCKETS]; /* non-cumulative per bucket */
    uint64_t inf;                     /* above the last bound */
    uint64_t count;
    double sum;
};

extern const double rd_hist_bounds[RD_HIST_BUCKETS];

void rd_hist_observe(struct rd_hist *h, double seconds);

/*
 * Quantile q (0 to 1; outside, clamped) of the observations, in seconds,
 * estimated from the buckets as Prometheus's histogram_quantile() does: the
 * rank q * count is found in the cumulative counts and interpolated linearly
 * inside its bucket (the first bucket starts at 0). The result is an
 * estimate, anywhere inside that bucket, not an observed value.
 *
 * When the rank falls in the +Inf bucket (above the last bound, 10 s) there
 * is nothing to interpolate: like Prometheus, it returns the last bound,
 * rd_hist_bounds[RD_HIST_BUCKETS - 1]. That is a floor, not an estimate:
 * the quantile is only known to be larger. rd_hist_quantile_capped() tells
 * the two apart; whoever shows the figure must say "above 10 s" then.
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

/* One histogram series; `labels` is "" or `key="v",key2="w"`. */
void rd_metric_hist(struct rd_mbuf *b, const char *name, const char *labels,
                    const struct rd_hist *h);

#endif
