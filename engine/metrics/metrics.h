/*
 * Prometheus metrics: counters and fixed-bucket histograms kept in plain
 * structs by the modules that own them, and a writer for the text
 * exposition format (version 0.0.4). Loop-thread only, no locks.
 */
#ifndef RD_METRICS_H
#define RD_METRICS_H

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
/* Approximate quantile q (0-1) from the buckets, in seconds. */
double rd_hist_quantile(const struct rd_hist *h, double q);

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
