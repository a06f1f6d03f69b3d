#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ops.h"

/* ---- process_* (from /proc/self, as client_golang's process collector) ---- */

/* Reads a small /proc file into buf; its length, or -1. */
static long read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (long)n;
}

/* The boot time (btime in /proc/stat), read once: it does not change. */
static double boot_time(void)
{
    static double btime = -1;
    if (btime >= 0)
        return btime;
    char buf[8192];
    if (read_small("/proc/stat", buf, sizeof(buf)) < 0)
        return -1;
    const char *p = strstr(buf, "\nbtime ");
    if (p != NULL)
        btime = strtod(p + 7, NULL);
    return btime;
}

static double count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void rd_process_stats_read(struct rd_process_stats *s)
{
    *s = (struct rd_process_stats){-1, -1, -1, -1, -1, -1};
    char buf[1024];
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (read_small("/proc/self/stat", buf, sizeof(buf)) > 0 && ticks > 0) {
        /* pid (comm) state ...: the fields after the last ')' from field 3 on
         * (comm may hold spaces and parentheses). */
        const char *p = strrchr(buf, ')');
        unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
        long long rss = 0;
        if (p != NULL &&
            sscanf(p + 1,
                   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                   "%*d %llu %llu %lld",
                   &utime, &stime, &start, &vsize, &rss) == 5) {
            s->cpu_seconds = (double)(utime + stime) / (double)ticks;
            s->virtual_bytes = (double)vsize;
            s->resident_bytes = (double)rss * (double)page;
            double bt = boot_time();
            if (bt >= 0)
                s->start_time_seconds = bt + (double)start / (double)ticks;
        }
    }
    s->open_fds = count_fds();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        s->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur;
}

static void gauge(struct rd_mbuf *b, const char *name, const char *type, const char *help, double v)
{
    if (v < 0)
        return;
    rd_metric_header(b, name, type, help);
    if (v == (double)(uint64_t)v)
        rd_mbuf_printf(b, "%s %llu\n", name, (unsigned long long)v);
    else
        rd_mbuf_printf(b, "%s %.3f\n", name, v);
}

void rd_process_metrics(struct rd_mbuf *b)
{
    struct rd_process_stats s;
    rd_process_stats_read(&s);
    gauge(b, "process_cpu_seconds_total", "counter",
          "Total user and system CPU time spent in seconds.", s.cpu_seconds);
    gauge(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
          s.resident_bytes);
    gauge(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
          s.virtual_bytes);
    gauge(b, "process_open_fds", "gauge", "Number of open file descriptors.", s.open_fds);
    gauge(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.", s.max_fds);
    gauge(b, "process_start_time_seconds", "gauge",
          "Start time of the process since unix epoch in seconds.", s.start_time_seconds);
}
