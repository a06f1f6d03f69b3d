/*
 * bench_backup_digest: the cost of the state digest (tests/bench/backup/run.sh).
 * Builds an rd_fsm of N records through rd_fsm_apply (N/10 agents, the rest
 * tasks each with a 256-byte checkpoint) and times rd_fsm_digest (O(1), kept on
 * every apply) against rd_fsm_digest_full (recomputed from every record).
 *
 *   bench_backup_digest [N...]        (default 1000 100000 1000000)
 *
 * Also times what a backup does with that state: rd_fsm_snapshot_raw (on the
 * engine's loop: the serialisation, raw_ms) and rd_fsm_snapshot_pack (zstd, on
 * the thread pool: pack_ms).
 *
 * One line per size: "DIGEST records=N apply_s=.. digest_ns=.. full_ms=.. equal=1
 * raw_ms=.. raw_mb=.. pack_ms=.. image_mb=..".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsm/fsm.h"
#include "fsm/snapshot.h"
#include "fsm_cmds.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int apply(struct rd_fsm *f, struct rd_wbuf w)
{
    int rc = rd_fsm_apply(f, w.p, w.len, NULL);
    rd_w_free(&w);
    return rc;
}

static int run(unsigned long n)
{
    static char data[300];
    memset(data, 0, sizeof(data));
    memcpy(data, "{\"blob\":\"", 9);
    memset(data + 9, 'a', 245);
    strcpy(data + 254, "\"}");
    struct rd_fsm *f = calloc(1, sizeof(*f));
    if (f == NULL || rd_fsm_init(f) != 0)
        return -1;
    unsigned long nodes = n / 10 ? n / 10 : 1, tasks = n - nodes;
    int64_t t = 1796000000000;
    char id[64];
    double t0 = now_s();
    for (unsigned long i = 0; i < nodes; i++) {
        snprintf(id, sizeof(id), "node-%lu", i);
        if (apply(f, cmd_register(id, 64, t)) != 0)
            return -1;
    }
    for (unsigned long i = 0; i < tasks; i++) {
        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012lu", i);
        snprintf(data + 9, 13, "%012lu", i);
        data[21] = 'a';
        if (apply(f, cmd_task_submit(id, 5, 0, 1, 5, t)) != 0 ||
            apply(f, cmd_task_assign(id, 1, "node-0", 1, t)) != 0 ||
            apply(f, cmd_task_ckpt(id, 1, 1, data, 3, t)) != 0)
            return -1;
    }
    double t1 = now_s();
    /* The O(1) digest: many calls, averaged. */
    volatile uint64_t sink = 0;
    int reps = 1000000;
    double d0 = now_s();
    for (int i = 0; i < reps; i++)
        sink ^= rd_fsm_digest(f);
    double d1 = now_s();
    uint64_t inc = rd_fsm_digest(f), full = 0;
    int freps = n >= 1000000 ? 3 : n >= 100000 ? 10 : 1000;
    double f0 = now_s();
    for (int i = 0; i < freps; i++)
        full = rd_fsm_digest_full(f);
    double f1 = now_s();
    struct rd_wbuf raw, img;
    rd_w_init(&raw);
    rd_w_init(&img);
    double r0 = now_s();
    int rrc = rd_fsm_snapshot_raw(f, &raw);
    double r1 = now_s();
    int prc = rrc == 0 ? rd_fsm_snapshot_pack(raw.p, raw.len, &img) : rrc;
    double r2 = now_s();
    if (prc != 0)
        return -1;
    printf("DIGEST records=%lu nodes=%lu tasks=%lu apply_s=%.2f digest_ns=%.1f full_ms=%.3f "
           "equal=%d raw_ms=%.1f raw_mb=%.2f pack_ms=%.1f image_mb=%.2f\n",
           nodes + tasks, nodes, tasks, t1 - t0, (d1 - d0) * 1e9 / reps, (f1 - f0) * 1e3 / freps,
           inc == full, (r1 - r0) * 1e3, raw.len / 1e6, (r2 - r1) * 1e3, img.len / 1e6);
    rd_w_free(&raw);
    rd_w_free(&img);
    (void)sink;
    rd_fsm_close(f);
    free(f);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long def[] = {1000, 100000, 1000000};
    int n = argc > 1 ? argc - 1 : 3;
    for (int i = 0; i < n; i++) {
        unsigned long k = argc > 1 ? strtoul(argv[i + 1], NULL, 10) : def[i];
        if (run(k) != 0) {
            fprintf(stderr, "bench_backup_digest: building %lu records failed\n", k);
            return 1;
        }
    }
    return 0;
}
