/*
 * What operators of etcd, Consul and Kubernetes expect on every /metrics
 * (docs/operations.md, "Metrics"): the process_* families as Prometheus's
 * client libraries define them, read from /proc/self at each scrape (a few
 * small reads, no scan of anything that grows but the descriptor table),
 * and histograms with bounds of their own for times longer than rd_hist's
 * 10 s (a partition's merge time). Loop-thread only.
 */
#ifndef RD_METRICS_OPS_H
#define RD_METRICS_OPS_H

#include <stdint.h>

#include "metrics.h"

/*
 * process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds (Unix time). A family whose source cannot be
 * read is left out rather than shown as 0.
 */
void rd_process_metrics(struct rd_mbuf *b);

/* The values rd_process_metrics() writes; -1 for what could not be read. */
struct rd_process_stats {
    double cpu_seconds;
    double resident_bytes;
    double virtual_bytes;
    double open_fds;
    double max_fds;
    double start_time_seconds;
};
void rd_process_stats_read(struct rd_process_stats *s);

#endif
