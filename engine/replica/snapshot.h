/*
 * raft's own snapshots taken off the loop.
 *
 * libraft 0.22.1 asks the state machine for a snapshot on the loop
 * (fsm->snapshot; it calls even snapshot_async there) every
 * storage.snapshot_threshold entries: at 42 MB of state that was 0.5-0.7 s of
 * serialising and compressing during which no heartbeat was answered. Here
 * the state machine's snapshot callback forks (image.c, as a backup does) and
 * hands raft a placeholder buffer; the io's snapshot_put, wrapped, holds the
 * request until the child's image is in, puts the image in the placeholder's
 * place and only then passes the request to libraft's disk I/O. libraft sees
 * a slower write and nothing else: the image is the state at the index raft
 * snapshotted, frozen by the fork.
 *
 * When the fork fails, the loop serialises as before (counted on_loop). When
 * the child dies, the snapshot raft asked for (the state at its index) cannot
 * be made any more, and libraft 0.22.1 cannot take a failed snapshot write
 * outside a close (it asserts): the request is held, `on_failed` is told, and
 * the engine stops after a clean close with exit code 1. The raft log still
 * holds every entry since the previous snapshot: nothing committed is lost,
 * and the next start snapshots again. Loop-thread only.
 */
#ifndef RD_REPLICA_SNAPSHOT_H
#define RD_REPLICA_SNAPSHOT_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct rd_fsm;
struct rd_snap_job;

struct rd_snapshotter {
    uv_loop_t *loop;
    struct rd_fsm *fsm;
    struct raft_io *io;
    bool attached;
    unsigned cpu_share; /* the imaging child's share of a CPU (rd_image_fork) */
    /* What was wrapped: the state machine's snapshot (on the loop) and
     * libraft's snapshot_put and close. */
    int (*fsm_snapshot)(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs);
    int (*io_put)(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                  const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb);
    void (*io_close)(struct raft_io *io, raft_io_close_cb cb);
    struct rd_snap_job *job;   /* the snapshot in flight, if any */
    bool closing;              /* libraft's close was asked for */
    raft_io_close_cb close_cb; /* its callback, passed on once the job is done */
    /* Told once when a child died and its snapshot cannot be made. */
    void (*on_failed)(void *data, const char *why);
    void *on_failed_data;
    uint64_t forked;       /* snapshots imaged by a child */
    uint64_t on_loop;      /* snapshots serialised on the loop (the fork failed) */
    uint64_t failed;       /* children that died */
    uint64_t last_fork_us; /* how long the newest fork held the loop */
    uint64_t last_image_ms;
    uint64_t last_bytes;
};

/*
 * Wraps `fsm`'s raft snapshot callback and `io`'s snapshot_put and close
 * (after raft_init; `fsm` and `io` stay put while attached).
 */
void rd_snapshotter_attach(struct rd_snapshotter *s, uv_loop_t *loop, struct rd_fsm *fsm,
                           struct raft_io *io);

/* The child imaging the snapshot in flight, or 0 (its logs, tests). */
pid_t rd_snapshotter_child(const struct rd_snapshotter *s);

#endif
