#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "recoveryd/error.h"

const double rd_hist_bounds[RD_HIST_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   10.0,
};

const double rd_hist_bounds_long[RD_HIST_BUCKETS] = {
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 45, 60, 120, 300, 600, 1800,
};

const double *rd_hist_bounds_of(const struct rd_hist *h)
{
    return h->bounds ? h->bounds : rd_hist_bounds;
}

void rd_hist_observe(struct rd_hist *h, double seconds)
{
    const double *bounds = rd_hist_bounds_of(h);
    h->count++;
    h->sum += seconds;
    for (int i = 0; i < RD_HIST_BUCKETS; i++) {
        if (seconds <= bounds[i]) {
            h->counts[i]++;
            return;
        }
    }
    h->inf++;
}

/* The rank of quantile q among h's observations, q clamped to 0-1. */
static double rank_of(const struct rd_hist *h, double q)
{
    if (!(q > 0)) /* NaN too */
        q = 0;
    if (q > 1)
        q = 1;
    return q * (double)h->count;
}

bool rd_hist_quantile_capped(const struct rd_hist *h, double q)
{
    uint64_t finite = h->count - h->inf;
    return h->count > 0 && (finite == 0 || rank_of(h, q) > (double)finite);
}

double rd_hist_quantile(const struct rd_hist *h, double q)
{
    const double *bounds = rd_hist_bounds_of(h);
    if (h->count == 0)
        return 0;
    if (rd_hist_quantile_capped(h, q))
        return bounds[RD_HIST_BUCKETS - 1];
    double rank = rank_of(h, q);
    uint64_t seen = 0;
    for (int i = 0; i < RD_HIST_BUCKETS; i++) {
        if (h->counts[i] == 0)
            continue;
        double lo = i ? bounds[i - 1] : 0;
        if ((double)(seen + h->counts[i]) >= rank) {
            double frac = (rank - (double)seen) / (double)h->counts[i];
            return lo + (bounds[i] - lo) * frac;
        }
        seen += h->counts[i];
    }
    /* Not reached: not capped means the finite buckets hold the rank. */
    return bounds[RD_HIST_BUCKETS - 1];
}

void rd_mbuf_init(struct rd_mbuf *b)
{
    memset(b, 0, sizeof(*b));
}

void rd_mbuf_free(struct rd_mbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void rd_mbuf_printf(struct rd_mbuf *b, const char *fmt, ...)
{
    if (b->err)
        return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = RD_EINVAL;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap ? b->cap * 2 : 4096;
        while (ncap - b->len <= (size_t)n)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (np == NULL) {
            b->err = RD_ENOMEM;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

void rd_metric_header(struct rd_mbuf *b, const char *name, const char *type, const char *help)
{
    rd_mbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void rd_metric_u64(struct rd_mbuf *b, const char *name, const char *type, const char *help,
                   uint64_t value)
{
    rd_metric_header(b, name, type, help);
    rd_mbuf_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

void rd_metric_hist(struct rd_mbuf *b, const char *name, const char *labels,
                    const struct rd_hist *h)
{
    const double *bounds = rd_hist_bounds_of(h);
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    for (int i = 0; i < RD_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        rd_mbuf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
                       (unsigned long long)cum);
    }
    rd_mbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                   (unsigned long long)h->count);
    if (labels[0]) {
        rd_mbuf_printf(b, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels, h->sum, name,
                       labels, (unsigned long long)h->count);
    } else {
        rd_mbuf_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name,
                       (unsigned long long)h->count);
    }
}
