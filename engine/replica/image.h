/*
 * A backup's image taken off the loop: the process forks (as Redis's BGSAVE
 * does), and the child, which sees the state frozen at the fork by the
 * kernel's copy-on-write, serialises, compresses and checksums it, then
 * streams the image back over a pipe and exits. The loop pays the fork
 * (page tables: a few ms at hundreds of MB) instead of the serialisation
 * (~0.6 s at 42 MB of state). Loop-thread only.
 */
#ifndef RD_BACKUP_IMAGE_H
#define RD_BACKUP_IMAGE_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "fsm/codec.h"

struct rd_fsm;
struct rd_image_job;

/* status 0 with job->image and job->checksum filled, or RD_E* with
 * job->errmsg. The job's handles are closed when it runs. */
typedef void (*rd_image_cb)(struct rd_image_job *job, int status);

struct rd_image_job {
    uv_pipe_t pipe;  /* the child's output */
    uv_timer_t reap; /* waits for the child to be gone after its output ended */
    pid_t pid;
    uint8_t head[32]; /* what the child says first: magic, status, image length, checksum */
    size_t head_len;
    uint64_t want; /* image bytes announced */
    int status;
    unsigned open_handles;
    struct rd_wbuf *image; /* the caller's, filled */
    uint64_t checksum;     /* FNV-1a of the image bytes, as the child says */
    uint64_t running;      /* FNV-1a of the bytes received so far */
    uint64_t raw_len;      /* the serialised state's length */
    uint64_t fork_us;      /* how long the fork held the loop */
    rd_image_cb cb;
    void *data;
    char errmsg[160];
};

/* The child's slice of CPU time between pauses when it is paced. */
#define RD_IMAGE_SLICE_US 2000

/*
 * Forks a child that writes the image of `f` as it is now into `image`
 * (rd_fsm_snapshot's bytes); `cb` runs on the loop when it is in (or the
 * child failed). The child uses at most `cpu_share` percent of a CPU
 * (1-99; 0 or 100: as much as the scheduler gives it). 0, or RD_E* when the
 * fork or the pipe could not be made (nothing started: the caller
 * serialises on the loop instead).
 */
int rd_image_fork(uv_loop_t *loop, const struct rd_fsm *f, unsigned cpu_share,
                  struct rd_wbuf *image, struct rd_image_job *job, rd_image_cb cb, void *data);

/* Kills the child of a job still running (the engine stops); its callback
 * still runs, with RD_ESHUTDOWN. */
void rd_image_cancel(struct rd_image_job *job);

#endif
