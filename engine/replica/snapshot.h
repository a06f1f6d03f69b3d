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
 *
 * The log bounded by bytes (rd_snapshotter_bound): libraft keeps every entry
 * since its last snapshot, and `trailing` entries before it, in memory, and
 * counts both in entries only: at 512-KiB checkpoints its defaults held
 * gigabytes. The snapshotter also wraps the machine's apply and counts the
 * bytes applied since the last snapshot; past `threshold_bytes` it lowers
 * libraft's entry threshold to 1, so libraft snapshots right after that
 * apply (it reads the threshold after every step), and puts the threshold
 * back when the snapshot starts. When a snapshot starts it also lowers the
 * trailing entries to those of the newest entries that fit in
 * `trailing_bytes` (never more than the configured count). Every replica
 * does this alike: followers hold the same log.
 *
 * Staggered (rd_snapshotter_stagger): every replica applies the same
 * entries, so with one threshold they all snapshot at the same index, and
 * all fork at once: each loop then takes the copy-on-write faults of its
 * fork for as long as its child images (seconds at a large state), and a
 * commit needs the leader and a follower, both slowed. Staggered, the
 * replica at place k of n snapshots at the indexes k * threshold / n past a
 * multiple of the threshold (never sooner than half a threshold after its
 * last snapshot), so that at most one of three is imaging at a time when
 * the images take less than a third of the entries' time, and a follower
 * that is not imaging is there for the leader's commits. The byte
 * threshold starts k / n of the way into its count for the same reason.
 * libraft's own threshold is then only a backstop (twice the threshold);
 * the snapshotter lowers it to 1 at the index it picked, as the byte bound
 * does.
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

/* The newest entries whose sizes are kept to bound the trailing ones. */
#define RD_SNAP_SIZES_MAX 65536u

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
    int (*fsm_apply)(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result);
    int (*fsm_restore)(struct raft_fsm *fsm, struct raft_buffer *buf);
    /* The log bounded by bytes (above; 0: by entries only). */
    struct raft *raft;
    uint64_t threshold_bytes; /* storage.snapshot_threshold_bytes */
    uint64_t trailing_bytes;  /* storage.snapshot_trailing_bytes */
    unsigned threshold;       /* storage.snapshot_threshold: libraft's own, in entries */
    unsigned trailing;        /* storage.snapshot_trailing: at most this many entries */
    uint64_t since_bytes;     /* applied since the newest snapshot started */
    bool armed;               /* libraft's threshold is lowered: it snapshots next */
    uint32_t *sizes;          /* the newest applied entries' sizes, a ring */
    unsigned sizes_cap, sizes_head, sizes_n;
    uint64_t on_bytes;      /* snapshots the byte threshold asked for */
    unsigned last_trailing; /* the trailing entries the newest snapshot kept */
    /* Staggered (above; n 1: not). */
    unsigned place, of; /* this replica's place k in 0..n-1, and n */
    uint64_t next_at;   /* the index it snapshots at next (0: from the next apply) */
    bool phase_armed;   /* libraft's threshold is lowered for next_at */
};

/*
 * Wraps `fsm`'s raft snapshot callback and `io`'s snapshot_put and close
 * (after raft_init; `fsm` and `io` stay put while attached).
 */
void rd_snapshotter_attach(struct rd_snapshotter *s, uv_loop_t *loop, struct rd_fsm *fsm,
                           struct raft_io *io);

/*
 * Bounds the log kept in memory by bytes as well as entries (above): sets
 * libraft's threshold and trailing entries and arms the byte threshold.
 * After rd_snapshotter_attach. threshold_bytes 0: the entry threshold alone;
 * trailing_bytes 0: the trailing count alone. Bytes are counted over the
 * newest RD_SNAP_SIZES_MAX entries at most: with more trailing entries than
 * that, no more are kept. RD_ENOMEM when the ring of entry sizes cannot be
 * allocated.
 */
int rd_snapshotter_bound(struct rd_snapshotter *s, struct raft *raft, unsigned threshold,
                         unsigned trailing, uint64_t threshold_bytes, uint64_t trailing_bytes);

/*
 * Staggers this replica's snapshots (above): it is at place `place` of
 * `of` replicas (0 <= place < of). After rd_snapshotter_bound; `of` 1 (or
 * an entry threshold under `of`) leaves libraft's threshold alone.
 */
void rd_snapshotter_stagger(struct rd_snapshotter *s, unsigned place, unsigned of);
/* The index at which a replica at place `place` of `of` snapshots next,
 * its last snapshot at `last` (0: none), every `threshold` entries. */
uint64_t rd_snapshot_next_at(uint64_t last, unsigned threshold, unsigned place, unsigned of);
/* Frees the ring of entry sizes (the replica's close). */
void rd_snapshotter_free(struct rd_snapshotter *s);

/* The child imaging the snapshot in flight, or 0 (its logs, tests). */
pid_t rd_snapshotter_child(const struct rd_snapshotter *s);

#endif
