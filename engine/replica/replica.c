#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sysexits.h>
#include <unistd.h>

#include "common/busy.h"
#include "common/log.h"
#include "common/util.h"
#include "recoveryd/error.h"
#include "replica.h"
#include "tls.h"

/* A command waiting in the group for the next entry (replica.h, group):
 * its bytes are in the group's batch buffer. */
struct rd_group_cmd {
    int64_t time_ms;
    uint64_t t0; /* rd_mono_ns() at the proposal */
    rd_submit_cb cb;
    void *data;
};

/* One write of an entry proposed: who hears its outcome, and (batches) its
 * result once the machine applied it (on_item). */
struct rd_submit_item {
    rd_submit_cb cb;
    void *data;
    uint64_t t0; /* rd_mono_ns() at the proposal (commit latency) */
    int status;
    uint64_t value;
    bool applied;
};

/* An entry proposed: one command, or a batch of `n`. */
struct rd_submit {
    struct raft_apply req;
    struct rd_replica *r;
    struct rd_submit *next; /* r->group.batches (batches only) */
    bool batch;
    unsigned n;
    struct rd_submit_item items[];
};

/* Above this many bytes waiting, the group goes to raft before more join. */
#define RD_GROUP_MAX_BYTES (1024 * 1024)
/* Entries of commands this leader keeps in flight (proposed, not yet
 * answered) before the writes of later turns wait for one of them: while
 * raft is busy with those, what arrives meanwhile grows the next entry
 * instead of becoming entries of its own. A write arriving with nothing in
 * flight goes at once. */
#define RD_GROUP_PIPELINE 2
/* After RD_GROUP_FUTILE_MAX waits in a row for the group commit's delay
 * that no write joined, the writes go at once for RD_GROUP_FUTILE_NS
 * (group_delays). */
#define RD_GROUP_FUTILE_MAX 3
#define RD_GROUP_FUTILE_NS  (1000 * 1000000ULL)

static void watch_closed(uv_handle_t *h);
static int group_init(struct rd_replica *r);
static void group_idle_cb(uv_idle_t *h);
static void group_delay_cb(uv_timer_t *t);

static int map_raft_error(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOMEM:
        return RD_ENOMEM;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
        return RD_ENOTLEADER;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED:
        return RD_ESHUTDOWN;
    case RAFT_NOSPACE:
        return RD_ENOSPACE;
    case RAFT_TOOBIG:
        return RD_ETOOLARGE;
    case RAFT_CORRUPT:
        return RD_ECORRUPT;
    default:
        return RD_EIO;
    }
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static const char *state_name(int state)
{
    switch (state) {
    case RAFT_LEADER:
        return "leader";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_FOLLOWER:
        return "follower";
    default:
        return "unavailable";
    }
}

static void storage_hand_over(struct rd_replica *r);
static void storage_ok(struct rd_replica *r);
static void append_stall_check(struct rd_replica *r);
static void gate_done(void *data, int status);
static void gate_kick(struct rd_replica *r);

/* ---- operators' metrics: the log's size, appends and snapshots timed ------- */

/* Watch ticks (10 ms) between measures of the raft directory's size. */
#define LOG_SIZE_TICKS 500

struct log_size_work {
    uv_work_t work;
    struct rd_replica *r;
    char dir[512];
    uint64_t bytes;
    bool ok;
};

/* Thread pool: the size of every regular file in the raft directory
 * (segments at their preallocated size, snapshots, metadata). */
static void log_size_measure(uv_work_t *w)
{
    struct log_size_work *lw = w->data;
    DIR *d = opendir(lw->dir);
    if (d == NULL)
        return;
    int dfd = dirfd(d);
    struct dirent *e;
    uint64_t sum = 0;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISREG(st.st_mode))
            sum += (uint64_t)st.st_size;
    }
    closedir(d);
    lw->bytes = sum;
    lw->ok = true;
}

static void log_size_done(uv_work_t *w, int status)
{
    struct log_size_work *lw = w->data;
    struct rd_replica *r = lw->r;
    if (status == 0 && lw->ok) {
        r->ops.log_size_bytes = lw->bytes;
        r->ops.log_size_known = true;
    }
    r->ops.log_size_busy = false;
    free(lw);
}

/* Every LOG_SIZE_TICKS watch ticks (and at the first), one measure in the
 * thread pool, never two at once: no scan of the directory on the loop. */
static void log_size_tick(struct rd_replica *r)
{
    if (r->ops.log_size_busy || r->closing || (r->ops.log_size_ticks++ % LOG_SIZE_TICKS) != 0)
        return;
    struct log_size_work *lw = calloc(1, sizeof(*lw));
    if (lw == NULL)
        return;
    lw->r = r;
    lw->work.data = lw;
    snprintf(lw->dir, sizeof(lw->dir), "%s", r->raft_dir);
    if (uv_queue_work(r->loop, &lw->work, log_size_measure, log_size_done) != 0) {
        free(lw);
        return;
    }
    r->ops.log_size_busy = true;
}

#define DISK_RETRY_MS 250

static struct rd_replica *of_io(struct raft_io *io)
{
    return (struct rd_replica *)(void *)((char *)io - offsetof(struct rd_replica, io));
}

/*
 * A request of ours in front of raft's, timing it. When the backend refuses
 * an append or a snapshot_put, raft frees its own request at once, yet the
 * backend may have queued ours already (a failed segment setup) and call it
 * back later, or never: ours becomes an orphan, kept on r->io_orphans until
 * its callback comes (which then tells raft nothing) or raft closed (every
 * request of the backend ended by then), and freed then.
 */
struct rd_timed_io {
    struct rd_timed_io *prev, *next; /* on r->io_orphans while orphaned */
    bool orphan;
    struct rd_replica *r;
    uint64_t start_ns;
    raft_index last_index; /* an append's: raft's last index when it was issued */
};

static void orphan_add(struct rd_timed_io *t)
{
    struct rd_replica *r = t->r;
    t->orphan = true;
    t->prev = NULL;
    t->next = r->io_orphans;
    if (r->io_orphans != NULL)
        r->io_orphans->prev = t;
    r->io_orphans = t;
}

static void orphan_remove(struct rd_timed_io *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        t->r->io_orphans = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
}

/* The appends in flight, on r->appends, newest first, the oldest at
 * r->appends_oldest (the same links: an append is either in flight or an
 * orphan). */
static void inflight_add(struct rd_timed_io *t)
{
    struct rd_replica *r = t->r;
    t->prev = NULL;
    t->next = r->appends;
    if (r->appends != NULL)
        r->appends->prev = t;
    else
        r->appends_oldest = t;
    r->appends = t;
    r->n_appends++;
}

static void inflight_remove(struct rd_timed_io *t)
{
    struct rd_replica *r = t->r;
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        r->appends = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    else
        r->appends_oldest = t->prev;
    r->n_appends--;
}

unsigned rd_replica_appends_waiting(const struct rd_replica *r, uint64_t *oldest_ms)
{
    if (oldest_ms != NULL)
        *oldest_ms =
            r->appends_oldest != NULL ? (rd_mono_ns() - r->appends_oldest->start_ns) / 1000000 : 0;
    return r->n_appends;
}

/* Once raft closed: nothing calls the orphans back any more. */
static void orphans_free(struct rd_replica *r)
{
    while (r->io_orphans != NULL) {
        struct rd_timed_io *t = r->io_orphans;
        r->io_orphans = t->next;
        free(t); /* first member of its request */
    }
}

struct timed_append {
    struct rd_timed_io io; /* first: freed through it */
    struct raft_io_append inner;
    struct raft_io_append *outer;
};

/*
 * An append the backend had queued failed (EIO from the disk, ENOSPC past
 * libraft's own capacity check): libraft 0.22 cannot go on from there (its
 * core counts the entries as in its log while the backend rolled its next
 * index back: docs/libraft.md, "appends that fail after they were queued";
 * with assertions on it aborts). The replica stops at once, before libraft
 * sees the failure, with a line naming it and exit status EX_IOERR: every
 * acknowledged write is on disk already (acknowledged means committed, and
 * committed means persisted on a majority), and a restart replays the log
 * and catches up from the others. systemd restarts it (Restart=always).
 */
static void io_failed_stop(struct rd_replica *r, const char *event, const char *what,
                           const char *failed, int status)
{
    RD_ERROR("replica", event,
             "status=%d error=\"%s\" what=%s raft_dir=%s detail=\"%s failed; the replica stops "
             "so that its log stays sound (acknowledged writes are on disk); check the disk and "
             "restart it: it replays its log and catches up\"",
             status, raft_strerror(status), what, r->raft_dir, failed);
    _exit(EX_IOERR);
}

static void append_failed_stop(struct rd_replica *r, int status)
{
    io_failed_stop(r, "append_failed_stop", "append", "a log append the disk had accepted", status);
}

static void timed_append_cb(struct raft_io_append *inner, int status)
{
    struct timed_append *t = inner->data;
    struct rd_replica *r = t->io.r;
    if (t->io.orphan) {
        orphan_remove(&t->io);
        free(t);
        return;
    }
    inflight_remove(&t->io);
    if (status != 0 && status != RAFT_CANCELED && !r->closing)
        append_failed_stop(r, status);
    if (status == 0) {
        r->appends_done_ns = rd_mono_ns();
        rd_hist_observe(&r->ops.append_latency,
                        (double)(r->appends_done_ns - t->io.start_ns) / 1e9);
        if (r->storage.stalled) {
            r->storage.stalled = false;
            storage_ok(r);
        }
    } else {
        r->ops.append_errors_total++;
    }
    struct raft_io_append *outer = t->outer;
    free(t);
    outer->cb(outer, status);
}

/* raft_io's append, timed: the uv backend's own, with a request of ours
 * whose callback observes the time (fsync included) and calls raft's. */
static int timed_append(struct raft_io *io, struct raft_io_append *req,
                        const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
    struct rd_replica *r = of_io(io);
    struct timed_append *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return RAFT_NOMEM;
    t->outer = req;
    t->io.r = r;
    t->io.start_ns = rd_mono_ns();
    t->io.last_index = raft_last_index(&r->raft); /* the entries are in raft's log by now */
    t->inner.data = t;
    req->cb = cb;
    int rv = r->io_append(io, &t->inner, entries, n, timed_append_cb);
    if (rv != 0) {
        r->ops.append_errors_total++;
        orphan_add(&t->io);
    } else {
        inflight_add(&t->io);
    }
    return rv;
}

/*
 * The term and the vote, which the backend writes at once (uvMetadataStore:
 * write and fdatasync of metadata1 or metadata2). When that fails, libraft
 * 0.22's core has already taken the new term or vote in memory, and the
 * legacy layer returns before the step's entries, snapshot and messages
 * (legacyHandleEvent): a follower that met a new leader's AppendEntries
 * keeps the entries in its core but not in its log, and its next append
 * lands at another index (the debug build asserts in
 * legacyHandleUpdateEntries; docs/libraft.md). And the new term reaches
 * the disk only with the next term or vote write: until then the replica
 * answers in a term its disk does not hold, and a restart would take it
 * back to the older one, whose deposed leader it could then follow.
 * The replica stops at once, as on a failed append: nothing of the new term
 * or vote has been sent (a step's messages go out after both are written),
 * and the restart reads the term and vote the disk holds.
 */
static void metadata_failed_stop(struct rd_replica *r, const char *what, int status)
{
    io_failed_stop(r, "metadata_failed_stop", what,
                   strcmp(what, "term") == 0 ? "writing raft's term" : "writing raft's vote",
                   status);
}

static int guarded_set_term(struct raft_io *io, raft_term term)
{
    struct rd_replica *r = of_io(io);
    int rv = r->io_set_term(io, term);
    if (rv != 0 && !r->closing)
        metadata_failed_stop(r, "term", rv);
    return rv;
}

static int guarded_set_vote(struct raft_io *io, raft_id server_id)
{
    struct rd_replica *r = of_io(io);
    int rv = r->io_set_vote(io, server_id);
    if (rv != 0 && !r->closing)
        metadata_failed_stop(r, "vote", rv);
    return rv;
}

struct timed_put {
    struct rd_timed_io io; /* first: freed through it */
    struct raft_io_snapshot_put inner;
    struct raft_io_snapshot_put *outer;
    const struct raft_snapshot *snapshot; /* raft's: alive until raft's callback */
};

static void timed_put_cb(struct raft_io_snapshot_put *inner, int status)
{
    struct timed_put *t = inner->data;
    struct rd_replica *r = t->io.r;
    if (t->io.orphan) {
        orphan_remove(&t->io);
        free(t);
        return;
    }
    if (status == 0) {
        rd_hist_observe(&r->ops.snapshot_latency, (double)(rd_mono_ns() - t->io.start_ns) / 1e9);
        /* Counted now: the snapshotter puts the image in the placeholder's
         * place on the way down. */
        uint64_t bytes = 0;
        for (unsigned i = 0; i < t->snapshot->n_bufs; i++)
            bytes += t->snapshot->bufs[i].len;
        r->ops.snapshot_size_bytes = bytes;
        r->ops.snapshots_total++;
    }
    struct raft_io_snapshot_put *outer = t->outer;
    free(t);
    outer->cb(outer, status);
}

/* raft_io's snapshot_put, timed as timed_append: a snapshot this replica
 * took (imaged by the snapshotter's child, then written), or one the leader
 * sent it (trailing 0). */
static int timed_snapshot_put(struct raft_io *io, unsigned trailing,
                              struct raft_io_snapshot_put *req,
                              const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct rd_replica *r = of_io(io);
    struct timed_put *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return RAFT_NOMEM;
    t->outer = req;
    t->snapshot = snapshot;
    t->io.r = r;
    t->io.start_ns = rd_mono_ns();
    t->inner.data = t;
    req->cb = cb;
    int rv = r->io_snapshot_put(io, trailing, &t->inner, snapshot, timed_put_cb);
    if (rv != 0)
        orphan_add(&t->io);
    return rv;
}

static void watch_cb(uv_timer_t *t)
{
    struct rd_replica *r = t->data;
    /* The loop's own lag: how late this 10-ms timer ran, the time the loop
     * spent on other work or waiting for a CPU (a stall shows here before
     * it shows as agents' late heartbeats). */
    uint64_t now_ns = rd_mono_ns();
    if (r->ops.watch_due_ns != 0)
        rd_hist_observe(&r->ops.loop_lag, now_ns > r->ops.watch_due_ns
                                              ? (double)(now_ns - r->ops.watch_due_ns) / 1e9
                                              : 0.0);
    r->ops.watch_due_ns = now_ns + 10 * 1000000ull;
    append_stall_check(r);
    storage_hand_over(r);
    int state = raft_state(&r->raft);
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&r->raft, &lid, &laddr);
    if (lid != 0)
        r->leader_seen_ns = rd_mono_ns();
    if (lid != 0 && lid != r->ops.leader_last) {
        /* etcd's leader_changes_seen: a leader after none, or another */
        r->ops.leader_changes_total++;
        RD_DEBUG("raft", "leader_seen", "leader=%llu term=%llu", (unsigned long long)lid,
                 (unsigned long long)raft_current_term(&r->raft));
        if (r->on_leader != NULL)
            r->on_leader(r->on_role_data, lid, raft_current_term(&r->raft));
    }
    r->ops.leader_last = lid;
    log_size_tick(r);
    /* A new leader commits a barrier of its term at once: the first
     * requests then find its state current. */
    if (state == RAFT_LEADER && !r->closing)
        gate_kick(r);
    if (state == r->last_state)
        return;
    bool was = r->last_state == RAFT_LEADER, is = state == RAFT_LEADER;
    RD_INFO("raft", "role_changed", "from=%s to=%s term=%llu", state_name(r->last_state),
            state_name(state), (unsigned long long)raft_current_term(&r->raft));
    r->last_state = state;
    if (was != is && r->on_role != NULL)
        r->on_role(r->on_role_data, is);
}

/* ---- starting: the data directory, the raft address, raft ------------------ */

#define LOCK_FILE "recoveryd.lock"

/* The pid written in the lock file `fd` (0 when there is none yet). */
static long lock_holder(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end = NULL;
    long pid = strtol(buf, &end, 10);
    return end != buf && pid > 0 ? pid : 0;
}

int rd_replica_lock(struct rd_replica *r, const struct rd_config *cfg)
{
    const char *dir = cfg->storage.data_dir;
    int rv = make_dirs(dir);
    if (rv != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "cannot create the data directory %s: %s", dir,
                 strerror(-rv));
        return RD_EIO;
    }
    snprintf(r->lock_path, sizeof(r->lock_path), "%s/" LOCK_FILE, dir);
    /* Close-on-exec: a child process must not keep the directory locked. */
    int fd = open(r->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "cannot open %s: %s", r->lock_path, strerror(errno));
        return RD_EIO;
    }
    /*
     * flock, not a pid file alone: the kernel drops it when the process
     * ends however it ends (kill -9 included), so a stale file never keeps
     * a restart out, and two starts cannot both win.
     */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            long pid = lock_holder(fd);
            char who[48] = "it"; /* the holder has not written its pid yet */
            if (pid > 0)
                snprintf(who, sizeof(who), "pid %ld", pid);
            snprintf(r->errmsg, sizeof(r->errmsg),
                     "data directory %s is in use by another recoveryd (%s holds a lock on %s): "
                     "stop it, or give this one its own data directory",
                     dir, who, r->lock_path);
            close(fd);
            return RD_EBUSY;
        }
        snprintf(r->errmsg, sizeof(r->errmsg), "cannot lock %s: %s", r->lock_path, strerror(e));
        close(fd);
        return RD_EIO;
    }
    /* Ours: say who holds it, for the next one that tries. */
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        RD_WARN("raft", "lock_file_unwritten", "path=%s error=\"%s\"", r->lock_path,
                strerror(errno));
    r->lock_fd = fd; /* held until the process exits */
    r->locked = true;
    return 0;
}

/*
 * Why `address` cannot be listened on, found before libraft tries: its
 * transport reports any failure as a bare "I/O error" (and, on that path,
 * frees listener handles that are still closing). Binds and listens the way
 * it will (IPv4, SO_REUSEADDR as libuv sets it), then lets go. Only the
 * message depends on this probe: the address is really taken by libraft's
 * own listen in rd_replica_listen(), still before raft starts.
 */
static int probe_address(struct rd_replica *r, const char *address)
{
    char host[RD_CFG_STR], service[8];
    uint16_t port;
    if (rd_config_parse_hostport(address, host, &port) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft address %s: expected HOST:PORT", address);
        return RD_EINVAL;
    }
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints = {
        .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rv = getaddrinfo(host[0] ? host : NULL, service, &hints, &res);
    if (rv != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg),
                 "raft address %s: %s has no IPv4 address (libraft's transport listens on IPv4 "
                 "only): %s",
                 address, host, gai_strerror(rv));
        return RD_EINVAL;
    }
    int err = 0;
    for (struct addrinfo *ai = res; ai != NULL && err == 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        int one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1) != 0)
            err = errno;
        if (fd >= 0)
            close(fd);
    }
    freeaddrinfo(res);
    if (err == EADDRINUSE) {
        snprintf(r->errmsg, sizeof(r->errmsg),
                 "raft address %s is already in use by another process", address);
        return RD_EIO;
    }
    if (err != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "cannot listen on raft address %s: %s", address,
                 strerror(err));
        return RD_EIO;
    }
    return 0;
}

static struct rd_replica *of_transport(struct raft_uv_transport *t)
{
    return (struct rd_replica *)(void *)((char *)t - offsetof(struct rd_replica, transport));
}

static void free_stream(uv_handle_t *h)
{
    raft_free(h);
}

/* A peer connected (handshake done): raft's, once raft started. */
static void accept_forward(struct raft_uv_transport *t, raft_id id, const char *address,
                           struct uv_stream_s *stream)
{
    struct rd_replica *r = of_transport(t);
    if (r->raft_accept == NULL) { /* raft never started: a start that failed */
        uv_close((uv_handle_t *)stream, free_stream);
        return;
    }
    r->raft_accept(t, id, address, stream);
}

/* raft_start() asks the transport to listen: it already does; note raft's callback. */
static int listen_started(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    of_transport(t)->raft_accept = cb;
    return 0;
}

/*
 * libraft's TCP transport leaves Nagle's algorithm on: an AppendEntries
 * written while the previous one is unacknowledged waits for that ACK (the
 * follower's answer after its fsync, or its delayed ACK: up to 40 ms), which
 * serialised the pipeline at 16 writes in flight (p99 47 ms;
 * docs/benchmarks.md). A server sends its messages on the connections it
 * opened (what it accepts it only reads), so those get TCP_NODELAY, as the
 * TLS transport's do (tls.c). raft's connect callback is one function of
 * libraft's for every request and replica, kept here to be called on.
 */
static raft_uv_connect_cb raft_connect_cb;
static int (*tcp_connect)(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                          const char *address, raft_uv_connect_cb cb);

static void connected_nodelay(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    if (status == 0 && stream != NULL && stream->type == UV_TCP)
        uv_tcp_nodelay((uv_tcp_t *)stream, 1);
    raft_connect_cb(req, stream, status);
}

static int connect_nodelay(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                           const char *address, raft_uv_connect_cb cb)
{
    raft_connect_cb = cb;
    return tcp_connect(t, req, id, address, connected_nodelay);
}

/* The raft transport in mutual TLS (tls.h), listening at once as below. */
static int listen_tls(struct rd_replica *r, const char *address)
{
    int rv = rd_raft_tls_init(&r->transport, r->loop, r->cfg, r->errmsg, sizeof(r->errmsg));
    if (rv != 0)
        return rv;
    r->tls = true;
    r->transport_inited = true;
    rv = r->transport.listen(&r->transport, accept_forward);
    /* Its listener handle is closed by the transport's close either way. */
    r->listening = true;
    if (rv != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "cannot listen on raft address %s: %s", address,
                 r->transport.errmsg);
        return RD_EIO;
    }
    r->transport.listen = listen_started;
    RD_INFO("raft", "listening_tls", "address=%s ca=%s cert=%s check_replica_id=%s", address,
            r->cfg->cluster.tls.ca, r->cfg->cluster.tls.cert,
            r->cfg->cluster.tls.check_replica_id ? "true" : "false");
    return 0;
}

/* Releases the transport's memory once it is closed (or never listened). */
static void transport_free(struct rd_replica *r)
{
    if (r->tls)
        rd_raft_tls_free(&r->transport);
    else
        raft_uv_tcp_close(&r->transport);
}

int rd_replica_listen(struct rd_replica *r, uv_loop_t *loop, const struct rd_config *cfg)
{
    int rv;
    r->loop = loop;
    r->cfg = cfg;
    const char *address = rd_config_raft_bind(cfg);
    if ((rv = probe_address(r, address)) != 0)
        return rv;
    /* libraft's TCP transport needs version 1 set before init (else RAFT_INVALID). */
    r->transport.version = 1;
    r->transport.data = NULL;
    if (rd_config_cluster_tls(cfg))
        return listen_tls(r, address);
    char host[RD_CFG_STR];
    uint16_t port;
    if (rd_config_parse_hostport(address, host, &port) == 0 && !rd_config_host_is_loopback(host))
        RD_WARN("raft", "plaintext_transport",
                "address=%s detail=\"cluster.tls.insecure_plaintext is set: this replica accepts "
                "any peer that reaches its raft port (docs/security.md)\"",
                address);
    if ((rv = raft_uv_tcp_init(&r->transport, loop)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft transport: %s", raft_strerror(rv));
        return RD_EIO;
    }
    r->transport_inited = true;
    tcp_connect = r->transport.connect;
    r->transport.connect = connect_nodelay;
    /*
     * Listen now, not in raft_start(): there a failed listen comes after
     * the start event, when a single voter has already elected itself and
     * written its term. The transport's vtable is public (raft/uv.h): call
     * its listen here, and answer raft's call later with the socket bound.
     */
    if ((rv = raft_uv_tcp_set_bind_address(&r->transport, address)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft address %s: %s", address, raft_strerror(rv));
        return RD_EIO;
    }
    if ((rv = r->transport.listen(&r->transport, accept_forward)) != 0) {
        /* The probe found it free: taken since, by another process. */
        snprintf(r->errmsg, sizeof(r->errmsg), "cannot listen on raft address %s: %s", address,
                 raft_strerror(rv));
        return RD_EIO;
    }
    r->transport.listen = listen_started;
    r->listening = true;
    RD_DEBUG("raft", "listening", "address=%s", address);
    return 0;
}

/* ---- damage on disk (damage.h) --------------------------------------------- */

/* Other members this replica could rejoin through: configured peers, or the
 * members the mark lists. */
static bool has_peers(const struct rd_replica *r, const struct rd_config *cfg)
{
    for (unsigned i = 0; i < cfg->cluster.n_peers; i++)
        if (cfg->cluster.peers[i].id != cfg->cluster.replica_id)
            return true;
    for (unsigned i = 0; r->has_mark_start && i < r->mark_start.n_members; i++)
        if (r->mark_start.members[i].id != cfg->cluster.replica_id)
            return true;
    return false;
}

/* The single-line advice of a refused start: restore, or accept the loss. */
/* The URL of a configured backup target restore can read (a `file`
 * instance's directory), or a placeholder. */
static void restore_from(const struct rd_config *cfg, char *out, size_t cap)
{
    snprintf(out, cap, "<backup target URL>");
    for (unsigned i = 0; i < cfg->plugins.n_instances; i++) {
        const struct rd_cfg_plugin *p = &cfg->plugins.instances[i];
        const struct rd_cfg_kv *dir = rd_config_plugin_value(p, "dir");
        if (strcmp(p->plugin, "file") == 0 && dir != NULL && dir->value[0] == '/') {
            snprintf(out, cap, "file://%s", dir->value);
            return;
        }
    }
}

static void refuse_message(struct rd_replica *r, const char *dir, const struct rd_damage_verdict *v)
{
    char from[RD_CFG_STR + 16];
    restore_from(r->cfg, from, sizeof(from));
    snprintf(r->errmsg, sizeof(r->errmsg),
             "data directory %s is damaged, nothing was changed: %s Restore it from a backup: "
             "move it aside (mv %s %s.damaged), then recoveryd restore --from %s --data-dir %s "
             "--raft-address %s (docs/backup.md, \"Restore\"); or start on what is left with "
             "--accept-data-loss (the damaged files are then kept in %s/damaged-<UTC time>/)",
             dir, v->report, dir, dir, from, dir, r->cfg->cluster.raft_address, dir);
}

/* Moves <data_dir>/raft and the mark into a fresh damaged-<time>/. */
/* A new damaged-<time> directory for this start; `aside` its raft/. */
static int damaged_raft_dir(struct rd_replica *r, const char *dir, char *aside, size_t cap)
{
    char why[512];
    if (rd_damage_dir(dir, r->damaged_dir, sizeof(r->damaged_dir), why, sizeof(why)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
        return RD_EIO;
    }
    snprintf(aside, cap, "%s/raft", r->damaged_dir);
    return 0;
}

static int move_state_aside(struct rd_replica *r, const char *dir)
{
    char why[512], to[600];
    if (rd_damage_dir(dir, r->damaged_dir, sizeof(r->damaged_dir), why, sizeof(why)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
        return RD_EIO;
    }
    struct stat st;
    snprintf(to, sizeof(to), "%s/raft", r->damaged_dir);
    if (stat(r->raft_dir, &st) == 0 && rd_move_aside(r->raft_dir, to, why, sizeof(why)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
        return RD_EIO;
    }
    if (rd_mark_move(dir, r->damaged_dir, why, sizeof(why)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
        return RD_EIO;
    }
    return 0;
}

/* True when raft/ holds anything. */
static bool dir_has_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    bool any = false;
    struct dirent *e;
    while (!any && (e = readdir(d)) != NULL)
        any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return any;
}

/*
 * Accepting the loss may leave nothing: no snapshot and no entry, so no
 * configuration either. libraft would keep the term and vote of its
 * metadata, refuse to bootstrap over them and start as a follower of
 * nobody. A replica that makes its cluster itself (no peers, or
 * --force-new-cluster) starts over: the metadata goes (its copy is in the
 * damaged directory) and the configured cluster is bootstrapped. A member
 * of a cluster keeps its term and vote and catches up from the leader.
 */
static int start_over_if_empty(struct rd_replica *r, const struct rd_config *cfg, bool peers)
{
    if (cfg->cluster.join || (peers && !cfg->cluster.force_new_cluster))
        return 0;
    struct rd_scan s;
    char why[512];
    if (rd_scan(r->raft_dir, &s, why, sizeof(why)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
        return RD_EIO;
    }
    if (s.any_data)
        return 0;
    static const char *const meta[] = {"metadata1", "metadata2"};
    for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", r->raft_dir, meta[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(r->errmsg, sizeof(r->errmsg), "cannot remove %s: %s", path, strerror(errno));
            return RD_EIO;
        }
    }
    RD_WARN("raft", "started_over",
            "dir=%s term_was=%llu kept=%s/raft detail=\"nothing of the log is left, its "
            "configuration neither: the configured cluster is bootstrapped again, empty\"",
            r->raft_dir, (unsigned long long)s.term, r->damaged_dir);
    return 0;
}

/* No segment and no snapshot in the raft directory (metadata only, or nothing). */
static bool log_empty(struct rd_replica *r)
{
    struct rd_scan s;
    char why[512];
    return rd_scan(r->raft_dir, &s, why, sizeof(why)) == 0 && !s.any_data;
}

int rd_replica_check_disk(struct rd_replica *r, const struct rd_config *cfg)
{
    const char *dir = cfg->storage.data_dir;
    char why[512];
    r->cfg = cfg;
    snprintf(r->raft_dir, sizeof(r->raft_dir), "%s/raft", dir);
    int rv = rd_mark_load(dir, &r->mark_start, why, sizeof(why));
    r->has_mark_start = rv == 0;
    if (rv != 0 && rv != RD_ENOTFOUND)
        RD_WARN("raft", "mark_unreadable",
                "error=\"%s\" detail=\"the acknowledged mark is lost: damage is judged from the "
                "files alone at this start\"",
                why);

    /* An interrupted rejoin resumes: the old state (if still here) goes aside. */
    struct rd_rejoin_note note;
    rv = rd_rejoin_load(dir, &note);
    if (rv == 0 || rv == RD_ECORRUPT) {
        if (!note.moved && dir_has_files(r->raft_dir)) {
            if ((rv = move_state_aside(r, dir)) != 0)
                return rv;
            note.moved = true;
            if (note.since_ms == 0)
                note.since_ms = rd_now_ms();
            if (rd_rejoin_store(dir, &note, why, sizeof(why)) != 0) {
                snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
                return RD_EIO;
            }
            RD_WARN("raft", "state_moved_aside", "to=%s reason=\"%s\"", r->damaged_dir,
                    note.reason);
        }
        RD_WARN("raft", "rejoin_resumed", "since=%lld reason=\"%s\"", (long long)note.since_ms,
                note.reason);
        r->rejoin = true;
    }

    int n_stranded = 0;
    char stranded[512];
    if ((rv = rd_close_stranded(r->raft_dir, &n_stranded, stranded, sizeof(stranded), why,
                                sizeof(why))) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
        return rv;
    }
    if (n_stranded > 0)
        RD_WARN("raft", "open_segments_closed",
                "dir=%s count=%d closed=\"%s\" detail=\"libraft could not close them while "
                "running (no descriptor left?) and wrote on in later segments\"",
                r->raft_dir, n_stranded, stranded);
    struct rd_scan scan;
    if ((rv = rd_scan(r->raft_dir, &scan, why, sizeof(why))) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
        return rv;
    }
    r->corrupt_before = scan.n_corrupt;
    if (scan.n_corrupt > 0)
        RD_WARN("raft", "corrupt_files_present",
                "dir=%s count=%u newest=%s detail=\"libraft set damaged segments aside at an "
                "earlier start: the entries they held were dropped then\"",
                r->raft_dir, scan.n_corrupt, scan.corrupt);
    struct rd_damage_verdict v;
    rd_judge(&scan, r->has_mark_start && !r->rejoin ? &r->mark_start : NULL, &v);
    r->expect_last = scan.last_index;
    if (!v.damaged) {
        if (v.unfinalized) {
            if (rd_repair_unfinalized(r->raft_dir, &scan, why, sizeof(why)) != 0) {
                snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
                return RD_EIO;
            }
            RD_WARN("raft", "unfinalized_segment_closed",
                    "file=raft/%s first_index=%llu last_index=%llu detail=\"libraft failed to "
                    "close this segment (descriptors or space exhausted) and could not load the "
                    "log without it: closed under its name, nothing is lost\"",
                    scan.unfinalized, (unsigned long long)scan.unfinalized_first,
                    (unsigned long long)scan.unfinalized_last);
        }
        if (v.torn && scan.torn_offset == 0) {
            /* Its header tore: libraft would refuse the file, not cut it off. */
            char aside[600];
            if (damaged_raft_dir(r, dir, aside, sizeof(aside)) != 0)
                return RD_EIO;
            if (rd_repair_torn_header(r->raft_dir, aside, &scan, why, sizeof(why)) != 0) {
                snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
                return RD_EIO;
            }
        }
        if (v.torn)
            RD_WARN("raft", "torn_write_dropped",
                    "file=raft/%s offset=%lld from_index=%llu acknowledged=%llu%s%s "
                    "detail=\"the last write before an unclean stop is incomplete and is cut "
                    "off; it holds no entry this replica acknowledged\"",
                    scan.torn_file, scan.torn_offset, (unsigned long long)scan.last_index + 1,
                    (unsigned long long)(r->has_mark_start ? r->mark_start.applied : 0),
                    scan.torn_offset == 0 ? " moved_to=" : "",
                    scan.torn_offset == 0 ? r->damaged_dir : "");
        if (v.stale) {
            char aside[600];
            if (damaged_raft_dir(r, dir, aside, sizeof(aside)) != 0)
                return RD_EIO;
            if (rd_repair_stale(r->raft_dir, aside, &scan, why, sizeof(why)) != 0) {
                snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
                return RD_EIO;
            }
            RD_WARN("raft", "damaged_segments_moved",
                    "file=raft/%s count=%u up_to_index=%llu snapshot_index=%llu moved_to=%s "
                    "detail=\"damaged log segments the snapshot covers: nothing is lost\"",
                    scan.stale_bad, scan.n_stale_bad, (unsigned long long)scan.stale_end,
                    (unsigned long long)scan.snap_index, aside);
        }
        return 0;
    }
    snprintf(r->damage_report, sizeof(r->damage_report), "%s", v.report);
    if (cfg->storage.accept_data_loss) {
        char aside[600];
        bool peers = has_peers(r, cfg); /* before the mark goes */
        if (damaged_raft_dir(r, dir, aside, sizeof(aside)) != 0)
            return RD_EIO;
        if (rd_repair(r->raft_dir, aside, &scan, r->has_mark_start ? &r->mark_start : NULL, why,
                      sizeof(why)) != 0) {
            snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
            return RD_EIO;
        }
        /* The mark describes the log as it was: it goes with the copy. */
        if (rd_mark_move(dir, r->damaged_dir, why, sizeof(why)) != 0) {
            snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
            return RD_EIO;
        }
        r->has_mark_start = false;
        RD_ERROR("raft", "data_loss_accepted",
                 "file=%s lost_first=%llu lost_last=%llu lost=\"%s\" kept=%s report=\"%s\"", v.file,
                 (unsigned long long)(v.log_lost ? v.lost_first : 0),
                 (unsigned long long)(v.log_lost ? v.lost_last : 0),
                 v.log_lost ? v.lost_summary : "the term and vote", aside, v.report);
        return start_over_if_empty(r, cfg, peers);
    }
    if (has_peers(r, cfg)) {
        note =
            (struct rd_rejoin_note){.moved = false, .previous_role = -1, .since_ms = rd_now_ms()};
        snprintf(note.reason, sizeof(note.reason), "damaged %s", v.file);
        if (rd_rejoin_store(dir, &note, why, sizeof(why)) != 0) {
            snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
            return RD_EIO;
        }
        if ((rv = move_state_aside(r, dir)) != 0)
            return rv;
        note.moved = true;
        if (rd_rejoin_store(dir, &note, why, sizeof(why)) != 0) {
            snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
            return RD_EIO;
        }
        RD_ERROR("raft", "data_damaged",
                 "file=%s action=rejoin moved_to=%s lost_first=%llu lost_last=%llu report=\"%s\" "
                 "detail=\"the damaged state is kept there; this replica asks the leader to "
                 "demote it, starts empty, catches up from its peers and becomes a voter again\"",
                 v.file, r->damaged_dir, (unsigned long long)(v.log_lost ? v.lost_first : 0),
                 (unsigned long long)(v.log_lost ? v.lost_last : 0), v.report);
        r->rejoin = true;
        r->expect_last = 0;
        return 0;
    }
    refuse_message(r, dir, &v);
    RD_ERROR("raft", "data_damaged",
             "file=%s action=refused lost_first=%llu lost_last=%llu report=\"%s\"", v.file,
             (unsigned long long)(v.log_lost ? v.lost_first : 0),
             (unsigned long long)(v.log_lost ? v.lost_last : 0), v.report);
    return RD_ECORRUPT;
}

int rd_replica_set_aside(struct rd_replica *r)
{
    if (r->started && !r->closing)
        return RD_EBUSY;
    int rv = move_state_aside(r, r->cfg->storage.data_dir);
    if (rv != 0)
        return rv;
    char why[512];
    struct rd_rejoin_note note;
    if (rd_rejoin_load(r->cfg->storage.data_dir, &note) != 0)
        note = (struct rd_rejoin_note){.previous_role = -1, .since_ms = rd_now_ms()};
    note.moved = true;
    if (rd_rejoin_store(r->cfg->storage.data_dir, &note, why, sizeof(why)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", why);
        return RD_EIO;
    }
    RD_WARN("raft", "state_moved_aside", "to=%s reason=\"%s\"", r->damaged_dir, note.reason);
    return 0;
}

void rd_replica_reset(struct rd_replica *r)
{
    struct rd_replica keep = *r;
    memset(r, 0, sizeof(*r));
    r->loop = keep.loop;
    r->cfg = keep.cfg;
    snprintf(r->lock_path, sizeof(r->lock_path), "%s", keep.lock_path);
    r->lock_fd = keep.lock_fd;
    r->locked = keep.locked;
    r->on_role = keep.on_role;
    r->on_role_data = keep.on_role_data;
    r->on_leader = keep.on_leader;
    r->ops = keep.ops;
    r->snap.on_failed = keep.snap.on_failed;
    r->snap.on_failed_data = keep.snap.on_failed_data;
    /* The machine's own callbacks, if it stays attached. */
    r->snap.fsm_snapshot = keep.snap.fsm_snapshot;
    r->snap.fsm_apply = keep.snap.fsm_apply;
    r->snap.fsm_restore = keep.snap.fsm_restore;
    r->mark_start = keep.mark_start;
    r->has_mark_start = keep.has_mark_start;
    snprintf(r->damaged_dir, sizeof(r->damaged_dir), "%s", keep.damaged_dir);
}

/*
 * Right after raft_start: libraft must have loaded at least what the scan
 * found, and set no segment aside (auto recovery is off; this is the net
 * under both).
 */
static int check_loaded(struct rd_replica *r)
{
    char newest[RD_SCAN_NAME];
    unsigned corrupt = rd_corrupt_files(r->raft_dir, newest);
    uint64_t last = raft_last_index(&r->raft);
    if (last >= r->expect_last && corrupt <= r->corrupt_before)
        return 0;
    snprintf(r->errmsg, sizeof(r->errmsg),
             "libraft loaded the log of %s up to entry %llu, but %llu entries were found there%s%s",
             r->raft_dir, (unsigned long long)last, (unsigned long long)r->expect_last,
             corrupt > r->corrupt_before ? "; it set this segment aside: " : "",
             corrupt > r->corrupt_before ? newest : "");
    RD_ERROR("raft", "log_not_loaded", "detail=\"%s\"", r->errmsg);
    return r->cfg->storage.accept_data_loss ? 0 : RD_ECORRUPT;
}

/* ---- the acknowledged mark ------------------------------------------------------ */

static const char *member_url(struct rd_replica *r, uint64_t id)
{
    const char *url = rd_fsm_replica_url(r->fsm, id);
    for (unsigned i = 0; url == NULL && i < r->cfg->cluster.n_peers; i++)
        if (r->cfg->cluster.peers[i].id == id && r->cfg->cluster.peers[i].api_url[0])
            url = r->cfg->cluster.peers[i].api_url;
    return url ? url : "";
}

/* What the mark says now (raft's scalars stay readable after it closed). */
static void mark_fill(struct rd_replica *r, struct rd_mark *m, bool members)
{
    uint64_t applied = raft_last_applied(&r->raft), stored = r->raft.last_stored;
    m->applied = applied < stored ? applied : stored;
    m->stored = stored;
    m->term = raft_current_term(&r->raft);
    m->vote = raft_voted_for(&r->raft);
    m->clean = false;
    if (!members)
        return;
    const struct raft_configuration *conf = &r->raft.configuration;
    m->n_members = 0;
    for (unsigned i = 0; i < conf->n && m->n_members < RD_MARK_MEMBERS; i++) {
        m->members[m->n_members].id = conf->servers[i].id;
        snprintf(m->members[m->n_members].api_url, RD_CFG_STR, "%s",
                 member_url(r, conf->servers[i].id));
        m->n_members++;
    }
}

static bool mark_same(const struct rd_mark *a, const struct rd_mark *b)
{
    if (a->applied != b->applied || a->stored != b->stored || a->term != b->term ||
        a->vote != b->vote || a->clean != b->clean || a->n_members != b->n_members)
        return false;
    for (unsigned i = 0; i < a->n_members; i++)
        if (a->members[i].id != b->members[i].id ||
            strcmp(a->members[i].api_url, b->members[i].api_url) != 0)
            return false;
    return true;
}

static void mark_work(uv_work_t *w)
{
    struct rd_replica *r = w->data;
    struct rd_mark_files *f = &r->mark.files;
    r->mark.rv = 0;
    if (f->fd[0] < 0)
        r->mark.rv = rd_mark_open(r->cfg->storage.data_dir, f, r->mark.why, sizeof(r->mark.why));
    if (r->mark.rv == 0)
        r->mark.rv = rd_mark_write(f, &r->mark.pending, r->mark.why, sizeof(r->mark.why));
}

static void mark_start_final(struct rd_replica *r);
static void mark_after(uv_work_t *w, int status);

static void mark_write(struct rd_replica *r)
{
    r->mark.pending.written_ms = rd_now_ms();
    r->mark.pending.seq = ++r->mark.seq;
    r->mark.work.data = r;
    r->mark.busy = true;
    if (uv_queue_work(r->loop, &r->mark.work, mark_work, mark_after) != 0) {
        r->mark.busy = false;
        r->mark.rv = RD_EIO;
        snprintf(r->mark.why, sizeof(r->mark.why), "cannot queue the write");
        mark_after(&r->mark.work, 0);
    }
}

static void mark_after(uv_work_t *w, int status)
{
    struct rd_replica *r = w->data;
    bool final = r->mark.final;
    r->mark.busy = false;
    if (status == 0 && r->mark.rv == 0) {
        r->mark.written = r->mark.pending;
        r->mark.writes_total++;
    } else {
        if (r->mark.failures_total++ == 0 || final)
            RD_WARN("raft", "mark_unwritten", "error=\"%s\"",
                    status ? uv_strerror(status) : r->mark.why);
    }
    if (final) {
        r->mark.final = false;
        rd_mark_close(&r->mark.files);
        if (r->close_cb)
            r->close_cb(r->close_data);
        return;
    }
    if (r->mark.final_wanted)
        mark_start_final(r);
}

static void mark_tick(uv_timer_t *t)
{
    struct rd_replica *r = t->data;
    if (r->mark.busy || r->closing)
        return;
    struct rd_mark m = r->mark.written;
    mark_fill(r, &m, true);
    if (r->mark.writes_total > 0 && mark_same(&m, &r->mark.written))
        return;
    r->mark.pending = m;
    mark_write(r);
}

/* After raft closed at a clean shutdown: the last mark, then close_cb. */
static void mark_start_final(struct rd_replica *r)
{
    r->mark.final_wanted = false;
    struct rd_mark m = r->mark.written; /* members as last seen: raft's configuration is gone */
    mark_fill(r, &m, false);
    m.clean = true;
    r->mark.pending = m;
    r->mark.final = true;
    mark_write(r);
}

int rd_replica_start(struct rd_replica *r, struct rd_fsm *fsm)
{
    int rv;
    const struct rd_config *cfg = r->cfg;
    r->fsm = fsm;
    r->last_state = RAFT_UNAVAILABLE;
    snprintf(r->raft_dir, sizeof(r->raft_dir), "%s/raft", cfg->storage.data_dir);
    if ((rv = make_dirs(r->raft_dir)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "cannot create data directory %s: %s", r->raft_dir,
                 strerror(-rv));
        return RD_EIO;
    }
    /* The transport (listening) is closed by rd_replica_close() on failure. */
    if ((rv = raft_uv_init(&r->io, r->loop, r->raft_dir, &r->transport)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft storage in %s: %s", r->raft_dir,
                 raft_strerror(rv));
        return RD_EIO;
    }
    raft_uv_set_segment_size(&r->io, cfg->storage.segment_size);
    r->io_append = r->io.append;
    r->io.append = timed_append;
    r->io_set_term = r->io.set_term;
    r->io.set_term = guarded_set_term;
    r->io_set_vote = r->io.set_vote;
    r->io.set_vote = guarded_set_vote;
    /* Damage is judged before raft reads (rd_replica_check_disk), never
     * "recovered" by renaming segments corrupt-* and dropping them. */
    raft_uv_set_auto_recovery(&r->io, false);
    /* A log write that fails (EIO) is written again after this delay until
     * it succeeds (patch 0010): the default 5 s is five times the longest
     * pause our writers otherwise see. */
    raft_uv_set_disk_retry(&r->io, DISK_RETRY_MS);
    if ((rv = raft_init(&r->raft, &r->io, &fsm->raft, cfg->cluster.replica_id,
                        cfg->cluster.raft_address)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft init: %s", raft_errmsg(&r->raft));
        raft_uv_close(&r->io);
        return RD_EIO;
    }
    r->inited = true;
    r->raft.data = r;
    rd_leader_gate_init(&r->gate, &r->raft, gate_done, r);
    rd_snapshotter_attach(&r->snap, r->loop, fsm, &r->io);
    r->snap.cpu_share = cfg->fault_tolerance.backup.cpu_share;
    /* Timed outside the snapshotter: a snapshot's time is its image's
     * (a forked child) and its write. */
    r->io_snapshot_put = r->io.snapshot_put;
    r->io.snapshot_put = timed_snapshot_put;
    /* Apply learns the index of each entry it applies (checks record it,
     * archiving ships it): fsm.h, applying_index. */
    rd_fsm_bind_raft(fsm, &r->raft);
    raft_set_election_timeout(&r->raft, (unsigned)cfg->cluster.election_timeout_ms);
    raft_set_heartbeat_timeout(&r->raft, (unsigned)cfg->cluster.heartbeat_timeout_ms);
    raft_set_pre_vote(&r->raft, cfg->cluster.pre_vote);
    raft_set_max_inflight_entries(&r->raft, cfg->cluster.max_inflight);
    if (rd_snapshotter_bound(&r->snap, &r->raft, cfg->storage.snapshot_threshold,
                             cfg->storage.snapshot_trailing, cfg->storage.snapshot_threshold_bytes,
                             cfg->storage.snapshot_trailing_bytes) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "no memory for the snapshot's byte bound");
        return RD_ENOMEM;
    }
    /* Each replica snapshots at its own point of the cycle (snapshot.h): its
     * place among cluster.peers, or its id's when it is not one of them. */
    unsigned of = cfg->cluster.n_peers > 0 ? cfg->cluster.n_peers : 1, place = 0;
    while (place < cfg->cluster.n_peers && cfg->cluster.peers[place].id != cfg->cluster.replica_id)
        place++;
    if (place >= of)
        place = (unsigned)(cfg->cluster.replica_id % of);
    rd_snapshotter_stagger(&r->snap, place, of);

    struct raft_configuration conf;
    raft_configuration_init(&conf);
    if (cfg->cluster.join || r->rejoin) {
        rv = 0; /* nothing to bootstrap: the leader adds (or returns) this replica */
    } else if (cfg->cluster.n_peers == 0) {
        rv = raft_configuration_add(&conf, cfg->cluster.replica_id, cfg->cluster.raft_address,
                                    RAFT_VOTER);
    } else {
        rv = 0;
        for (unsigned i = 0; i < cfg->cluster.n_peers && rv == 0; i++)
            rv = raft_configuration_add(&conf, cfg->cluster.peers[i].id,
                                        cfg->cluster.peers[i].address, RAFT_VOTER);
    }
    bool bootstrapped = false;
    if (rv == 0 && !cfg->cluster.join && !r->rejoin) {
        rv = raft_bootstrap(&r->raft, &conf);
        bootstrapped = rv == 0;
        if (rv == RAFT_CANTBOOTSTRAP) /* existing data: a restart, fine */
            rv = 0;
    }
    if (rv == 0 && cfg->cluster.force_new_cluster && !bootstrapped && log_empty(r)) {
        /* libraft's recover needs an entry to append after (it would abort). */
        snprintf(r->errmsg, sizeof(r->errmsg),
                 "--force-new-cluster: %s holds a term and vote but no log entry or snapshot: "
                 "nothing to recover; move that directory aside to start this replica empty",
                 r->raft_dir);
        raft_configuration_close(&conf);
        return RD_EINVAL;
    }
    if (rv == 0 && cfg->cluster.force_new_cluster) {
        /* The operator's last resort (docs/operations.md): a configuration
         * entry appended to the log, which wins over any before it. */
        rv = raft_recover(&r->raft, &conf);
        if (rv == 0)
            RD_WARN("raft", "forced_new_cluster", "voters=%u dir=%s", conf.n, r->raft_dir);
    }
    raft_configuration_close(&conf);
    if (rv == 0)
        rv = raft_start(&r->raft);
    if (rv != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft start in %s: %s (%s)", r->raft_dir,
                 raft_strerror(rv), raft_errmsg(&r->raft));
        /* raft_close releases io and transport through its callback chain;
         * the caller runs the loop to finish it. */
        return rv == RAFT_NOSPACE ? RD_ENOSPACE : RD_EIO;
    }
    if ((rv = check_loaded(r)) != 0)
        return rv;
    r->started = true;
    r->leader_seen_ns = rd_mono_ns();
    if (cfg->cluster.group_commit && group_init(r) != 0)
        RD_WARN("raft", "group_commit_off", "error=out_of_memory");
    uv_timer_init(r->loop, &r->watch);
    r->watch.data = r;
    uv_timer_start(&r->watch, watch_cb, 0, 10);
    uv_timer_init(r->loop, &r->mark.timer);
    r->mark.timer.data = r;
    r->mark.files.fd[0] = r->mark.files.fd[1] = -1;
    /* Numbered on from the mark found (gone with the state when it moved aside). */
    r->mark.seq = r->has_mark_start ? r->mark_start.seq : 0;
    r->mark.on = true;
    uv_timer_start(&r->mark.timer, mark_tick, 0, RD_MARK_PERIOD_MS);
    RD_INFO("raft", "started", "id=%llu address=%s dir=%s applied=%llu",
            (unsigned long long)cfg->cluster.replica_id, cfg->cluster.raft_address, r->raft_dir,
            (unsigned long long)raft_last_applied(&r->raft));
    return 0;
}

/* ---- storage faults ------------------------------------------------------------ */

static bool is_storage_error(int rv)
{
    return rv == RAFT_IOERR || rv == RAFT_NOSPACE || rv == RAFT_NOMEM || rv == RAFT_CORRUPT;
}

/*
 * A transfer ended. One that failed while a storage fault lasts is tried
 * again at the next watch tick: libraft sends its TimeoutNow once, as soon
 * as the follower answers an append, and a follower still writing entries
 * when it arrives ignores it (src/recv_timeout_now.c); the transfer then
 * gives up an election timeout later. Under load the follower is always
 * writing something: in the storm of 2026-12-04 a leader whose disk hung
 * during the crashes stayed leader, refusing every write, until its disk
 * came back (docs/benchmarks.md). Its own refusals leave the followers idle
 * by the next try.
 */
static void transfer_cb(struct raft_transfer *req)
{
    struct rd_replica *r = req->data;
    r->storage.transferring = false;
    bool leads = raft_state(&r->raft) == RAFT_LEADER;
    RD_INFO("raft", "leadership_handed_over", "role=%s", state_name(raft_state(&r->raft)));
    if (leads && r->storage.code != 0)
        r->storage.handed_over = false;
}

/*
 * libraft says "not enough disk space" when it has no log segment prepared,
 * which a full disk causes, but so do exhausted descriptors (it cannot open
 * the next segment file). Tell them apart so the operator fixes the right
 * thing: a full disk stays RD_ENOSPACE, anything else is RD_EIO.
 */
static void explain_no_space(struct rd_replica *r)
{
    int fd = dup(2);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
        struct rlimit lim = {0};
        getrlimit(RLIMIT_NOFILE, &lim);
        r->storage.code = RD_EIO;
        snprintf(r->storage.cause, sizeof(r->storage.cause),
                 "no log segment ready: too many open files (the limit is %llu: raise it, "
                 "e.g. LimitNOFILE in the systemd unit, or close idle clients)",
                 (unsigned long long)lim.rlim_cur);
        return;
    }
    if (fd >= 0)
        close(fd);
    struct statvfs vfs;
    if (statvfs(r->raft_dir, &vfs) != 0)
        return;
    unsigned long long avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
    if (avail >= 2 * (unsigned long long)r->cfg->storage.segment_size) {
        r->storage.code = RD_EIO;
        snprintf(r->storage.cause, sizeof(r->storage.cause),
                 "no log segment ready although %llu MiB are free (libraft could not prepare "
                 "one: see the log)",
                 avail >> 20);
    }
}

/*
 * libraft could not persist: refuse submissions for a while (the instance
 * stays consistent, patches 0002 of deps/libraft), and let another voter
 * lead meanwhile.
 */
static void storage_failed(struct rd_replica *r, int rv)
{
    uint64_t now = rd_mono_ns();
    int prev = r->storage.code;
    bool fresh = prev == 0;
    if (fresh) {
        r->storage.handed_over = false;
        r->storage.since_ns = now;
        r->storage.backoff_ms = 100;
        r->storage.faults_total++;
    } else if (r->storage.backoff_ms < 1000) {
        r->storage.backoff_ms = r->storage.backoff_ms * 2 > 1000 ? 1000 : r->storage.backoff_ms * 2;
    }
    r->storage.code = map_raft_error(rv);
    snprintf(r->storage.cause, sizeof(r->storage.cause), "%s", raft_errmsg(&r->raft));
    if (r->storage.cause[0] == '\0')
        snprintf(r->storage.cause, sizeof(r->storage.cause), "%s", raft_strerror(rv));
    /* A full disk stays reported as such until a write goes through again,
     * even once space is free and libraft is still preparing a segment. */
    if (rv == RAFT_NOSPACE && (fresh || prev != RD_ENOSPACE))
        explain_no_space(r);
    r->storage.retry_at_ns = now + (uint64_t)r->storage.backoff_ms * 1000000ull;
    if (fresh)
        RD_WARN("raft", "storage_failed",
                "error=\"%s\" cause=\"%s\" action=\"writes refused, retried in %u ms\"",
                raft_strerror(rv), r->storage.cause, r->storage.backoff_ms);
}

/* How long the followers are given to store the entries of a stalled
 * append before their disks are judged by it (a working disk takes
 * milliseconds). */
#define HANDOVER_EVIDENCE_MS 1000

/*
 * The stalled append whose entries tell whether the other voters' disks
 * work: the newest one that waited HANDOVER_EVIDENCE_MS or more (the oldest
 * when none did). Not the oldest one as such: under load it was often
 * issued before the disks stalled, queued behind this replica's previous
 * write, while the followers, with none queued, stored it at once; its
 * entries committed then, the followers' disks stalled next, and a handover
 * went to a follower that could not catch up (the storm of 2026-12-04 with
 * every disk hung: docs/benchmarks.md). An append issued a second or more
 * after the oldest went out while the disks were already held.
 */
static const struct rd_timed_io *settled_append(const struct rd_replica *r)
{
    uint64_t now = rd_mono_ns(), margin = HANDOVER_EVIDENCE_MS * 1000000ull;
    const struct rd_timed_io *t = r->appends_oldest;
    while (t->prev != NULL && now - t->prev->start_ns >= margin)
        t = t->prev;
    return t;
}

/*
 * A stalled disk is worth a handover only if the other voters' disks work:
 * then they commit, without this replica's disk, the entries it cannot
 * write. When the commit index has not reached the settled stalled
 * append's entries (above), a majority has not stored them either (the disk
 * under every replica is held: a shared disk, a stalled journal) and a new
 * leader's writes would stall just the same, after an election and its
 * grace: the leader stays, and asks again at the next watch tick.
 */
static bool others_store(struct rd_replica *r)
{
    if (!r->storage.stalled || r->appends_oldest == NULL)
        return true;
    raft_index stalled = settled_append(r)->last_index;
    if (raft_commit_index(&r->raft) >= stalled)
        return true;
    if (!r->storage.withheld) {
        r->storage.withheld = true;
        r->storage.withheld_total++;
        RD_WARN("raft", "handover_withheld",
                "commit_index=%llu stalled_index=%llu reason=\"the other voters have not stored "
                "the stalled entries either: a new leader's disk would stall the same\"",
                (unsigned long long)raft_commit_index(&r->raft), (unsigned long long)stalled);
    }
    return false;
}

/* From the watch timer, never inside a libraft call or callback. */
static void storage_hand_over(struct rd_replica *r)
{
    /* Never while a transfer is on its way (a digest divergence's, or an
     * earlier fault's whose callback has not come): libraft holds
     * r->storage.transfer until it calls back, and the memset below would
     * clear its queue links. */
    if (r->storage.code == 0 || r->storage.handed_over || r->storage.transferring ||
        rd_replica_voters(r) <= 1 || raft_state(&r->raft) != RAFT_LEADER || !others_store(r))
        return;
    r->storage.handed_over = true;
    memset(&r->storage.transfer, 0, sizeof(r->storage.transfer));
    r->storage.transfer.data = r;
    if (raft_transfer(&r->raft, &r->storage.transfer, 0, transfer_cb) == 0) {
        r->storage.transferring = true;
        RD_WARN("raft", "leadership_handover", "reason=\"storage: %s\"", r->storage.cause);
    }
}

int rd_replica_hand_over(struct rd_replica *r, uint64_t to, const char *why)
{
    if (!r->started || raft_state(&r->raft) != RAFT_LEADER)
        return RD_ENOTLEADER;
    if (rd_replica_voters(r) <= 1 || r->storage.transferring)
        return RD_ECONFLICT;
    memset(&r->storage.transfer, 0, sizeof(r->storage.transfer));
    r->storage.transfer.data = r;
    int rv = raft_transfer(&r->raft, &r->storage.transfer, to, transfer_cb);
    if (rv != 0)
        return rv == RAFT_BADID ? RD_EINVAL : RD_ECONFLICT;
    r->storage.transferring = true;
    RD_WARN("raft", "leadership_handover", "reason=\"%s\" to=%llu", why, (unsigned long long)to);
    return 0;
}

/*
 * An append the backend took long ago and has not answered, while no other
 * completed meanwhile: the disk fails its writes (libraft writes them again
 * every DISK_RETRY_MS, patch 0010) or hangs. A storage fault like the
 * others: new submissions are refused with 503 storage_unavailable (those
 * in flight wait for the disk), a leader with other voters hands over,
 * /health and the metrics say so; the append's completion clears it.
 *
 * The time runs from the append's start or from the last completion,
 * whichever is later: the backend writes one batch at a time, so once a
 * stalled write completes, the appends queued behind it are old and still
 * wait for their own write of a few milliseconds. By their age alone, the
 * disk that had just come back was declared stalled again
 * (`storage_stalled after_ms=10436`, then `storage_recovered after_ms=3`,
 * in the storm of 2026-12-04), and a leader could have handed over for it.
 */
#define APPEND_STALL_MS 3000

static void append_stall_check(struct rd_replica *r)
{
    if (r->appends_oldest == NULL || r->closing)
        return;
    uint64_t now = rd_mono_ns(), since = r->appends_oldest->start_ns;
    if (r->appends_done_ns > since)
        since = r->appends_done_ns;
    uint64_t age_ms = (now - since) / 1000000;
    if (age_ms < APPEND_STALL_MS)
        return;
    if (!r->storage.stalled) {
        if (r->storage.code == 0) {
            r->storage.handed_over = false;
            r->storage.withheld = false;
            r->storage.since_ns = now;
            r->storage.faults_total++;
        }
        r->storage.stalled = true;
        r->storage.code = RD_EIO;
        snprintf(r->storage.cause, sizeof(r->storage.cause),
                 "a log write in %s has not completed for %llu ms: the disk fails it (it is "
                 "written again every %d ms) or hangs",
                 r->raft_dir, (unsigned long long)age_ms, DISK_RETRY_MS);
        RD_WARN("raft", "storage_stalled", "after_ms=%llu raft_dir=%s action=\"writes refused\"",
                (unsigned long long)age_ms, r->raft_dir);
    }
    r->storage.retry_at_ns = now + 500 * 1000000ull;
}

static void storage_ok(struct rd_replica *r)
{
    if (r->storage.code == 0 || r->storage.stalled)
        return;
    RD_INFO("raft", "storage_recovered", "after_ms=%llu cause=\"%s\"",
            (unsigned long long)((rd_mono_ns() - r->storage.since_ns) / 1000000), r->storage.cause);
    r->storage.code = 0;
    r->storage.cause[0] = '\0';
}

int rd_replica_storage_fault(struct rd_replica *r, const char **cause, uint64_t *retry_ms)
{
    uint64_t now = rd_mono_ns();
    if (cause)
        *cause = r->storage.cause;
    if (retry_ms)
        *retry_ms = r->storage.retry_at_ns > now ? (r->storage.retry_at_ns - now) / 1000000 : 0;
    return r->storage.code;
}

/* A storage fault refuses submissions until its next try. */
static int storage_gate(struct rd_replica *r)
{
    return r->storage.code != 0 && rd_mono_ns() < r->storage.retry_at_ns ? r->storage.code : 0;
}

/* A batch leaves the list of those in flight (its callback fired). */
static void batch_unlink(struct rd_replica *r, struct rd_submit *s)
{
    struct rd_submit **pp = &r->group.batches, *prev = NULL;
    while (*pp != NULL && *pp != s) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = s->next;
    if (r->group.batches_tail == s)
        r->group.batches_tail = prev;
    if (r->group.hit == s)
        r->group.hit = NULL;
}

/* fsm.h on_item: the result of one command of the batch entry at `index`.
 * Only the leader that proposed it has the batch; followers and replays
 * find none. */
static void on_item(void *data, uint64_t index, uint32_t pos, int status, uint64_t value)
{
    struct rd_replica *r = data;
    struct rd_submit *s = r->group.hit;
    if (s == NULL || s->req.index != index) {
        for (s = r->group.batches; s != NULL && s->req.index != index; s = s->next)
            ;
        r->group.hit = s;
    }
    if (s == NULL || pos >= s->n)
        return;
    s->items[pos].status = status;
    s->items[pos].value = value;
    s->items[pos].applied = true;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct rd_submit *s = req->data;
    struct rd_replica *r = s->r;
    int st = 0;
    uint64_t value = 0;
    r->inflight -= s->n;
    r->group.entries_inflight--;
    /* Writes held for the pipeline go at this turn's check phase. */
    if (r->group.n > 0 && r->group.on)
        uv_idle_start(&r->group.idle, group_idle_cb);
    if (s->batch)
        batch_unlink(r, s);
    if (status != 0) {
        st = map_raft_error(status);
        /* The entry was in the log and maybe sent when leadership was lost
         * (or raft stopped): another leader may still commit it. A failed
         * append is different: those entries were never sent (patch 0002).
         * A batch's writes all share their entry's fate. */
        if (st == RD_ENOTLEADER || st == RD_ESHUTDOWN)
            st = RD_EOUTCOME_UNKNOWN;
        r->commit_errors_total += s->n;
        RD_WARN("raft", "commit_failed", "error=%s commands=%u", raft_strerror(status), s->n);
        if (is_storage_error(status))
            storage_failed(r, status);
    } else {
        storage_ok(r);
        /* The entry's own result: a single command's answer; for a batch,
         * the answer of the commands apply never reached (cut short). */
        rd_fsm_unpack(result, &st, &value);
        r->commits_total += s->n;
        uint64_t now = rd_mono_ns();
        for (unsigned i = 0; i < s->n; i++)
            rd_hist_observe(&r->commit_latency, (double)(now - s->items[i].t0) / 1e9);
    }
    for (unsigned i = 0; i < s->n; i++) {
        struct rd_submit_item *it = &s->items[i];
        bool own = status == 0 && s->batch && it->applied;
        it->cb(it->data, own ? it->status : st, own ? it->value : value);
    }
    free(s);
}

/* Whether a command may be proposed now: 0 or the refusal. */
static int propose_gate(struct rd_replica *r)
{
    if (r->closing || !r->started)
        return RD_ESHUTDOWN;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return RD_ENOTLEADER;
    return storage_gate(r);
}

/* Proposes the entry in `w` (padded here to libraft's 8-byte multiple) for
 * the writes in `s`. On 0 raft owns the bytes (w is reset) and `s`; on an
 * error both are still the caller's. */
static int submit(struct rd_replica *r, struct rd_wbuf *w, struct rd_submit *s)
{
    int rv = propose_gate(r);
    if (rv != 0)
        return rv;
    if (w->err)
        return w->err;
    s->r = r;
    s->next = NULL;
    s->req.data = s;
    /* libraft wants entry lengths in multiples of 8; decoders ignore the
     * zero padding (a body only grows by appending fields; a batch ends
     * at its count). */
    static const uint8_t zeros[8];
    if (w->len % 8 != 0)
        rd_w_bytes(w, zeros, 8 - w->len % 8);
    if (w->err)
        return w->err;
    /* raft's default heap is malloc: the writer's buffer passes over as is. */
    struct raft_buffer buf = {.base = w->p, .len = w->len};
    rv = raft_apply(&r->raft, &s->req, &buf, 1, apply_cb);
    if (rv != 0) {
        if (is_storage_error(rv))
            storage_failed(r, rv); /* logs once per fault */
        else
            RD_WARN("raft", "propose_failed", "error=\"%s\" detail=\"%s\" commands=%u",
                    raft_strerror(rv), raft_errmsg(&r->raft), s->n);
        /* Refused: the buffer is still ours (raft.h's promise, which
         * deps/libraft/patches/0002 restores); the caller frees it. */
        return map_raft_error(rv);
    }
    r->inflight += s->n;
    r->group.entries_inflight++;
    r->group.entries_total++;
    r->group.commands_total += s->n;
    if (s->batch) {
        if (r->group.batches_tail != NULL)
            r->group.batches_tail->next = s;
        else
            r->group.batches = s;
        r->group.batches_tail = s;
    }
    w->p = NULL;
    w->len = w->cap = 0;
    return 0;
}

static struct rd_submit *submit_new(unsigned n)
{
    struct rd_submit *s = calloc(1, sizeof(*s) + n * sizeof(s->items[0]));
    if (s != NULL)
        s->n = n;
    return s;
}

/* The commands waiting go to raft: one entry, a batch when more than one
 * waits. When raft refuses it, each hears the refusal (nothing was
 * proposed), here: at the check phase, or within a later proposal that
 * found the group full or must follow it. */
static int group_flush(struct rd_replica *r)
{
    unsigned n = r->group.n;
    if (n == 0)
        return 0;
    r->group.n = 0;
    uv_idle_stop(&r->group.idle);
    uv_check_stop(&r->group.check);
    struct rd_group_cmd *q = r->group.q;
    r->group.last_flush_ns = rd_mono_ns();
    uv_timer_stop(&r->group.delay_timer);
    if (r->group.waited) {
        /* Waits that no write joined (a lone client writing one at a
         * time, whose next write comes only with this one's answer), a
         * few in a row, are not tried again for a while. */
        r->group.waited = false;
        r->group.delayed_total++;
        r->group.futile = n <= r->group.waited_n ? r->group.futile + 1 : 0;
        if (r->group.futile >= RD_GROUP_FUTILE_MAX) {
            r->group.futile = 0;
            r->group.no_wait_until_ns = r->group.last_flush_ns + RD_GROUP_FUTILE_NS;
        }
    }
    /* The entry is the batch buffer the commands were encoded into. */
    struct rd_wbuf w = r->group.buf;
    rd_w_init(&r->group.buf);
    /* Alone, the entry is the command itself, as without grouping. */
    int64_t newest = 0;
    for (unsigned i = 0; i < n; i++)
        newest = q[i].time_ms > newest ? q[i].time_ms : newest;
    rd_cmd_batch_seal(&w, n, newest);
    struct rd_submit *s = submit_new(n);
    int rv = s != NULL ? 0 : RD_ENOMEM;
    if (s != NULL) {
        s->batch = n > 1;
        for (unsigned i = 0; i < n; i++) {
            s->items[i].cb = q[i].cb;
            s->items[i].data = q[i].data;
            s->items[i].t0 = q[i].t0;
        }
        rv = submit(r, &w, s);
    }
    rd_w_free(&w);
    if (rv == 0)
        return 0;
    free(s);
    /* Copied first: a callback may propose again (into the emptied q). */
    struct rd_group_cmd copy[RD_CMD_BATCH_MAX];
    memcpy(copy, q, n * sizeof(*q));
    for (unsigned i = 0; i < n; i++)
        copy[i].cb(copy[i].data, rv, 0);
    return rv;
}

static bool group_full(const struct rd_replica *r)
{
    return r->group.n >= RD_CMD_BATCH_MAX || r->group.buf.len >= RD_GROUP_MAX_BYTES;
}

/* Whether the writes waiting wait on for more to join them: only while the
 * loop is saturated (then an entry's fixed cost, its write and fsync on
 * every replica and its messages, is what a smaller count of entries gives
 * back, and nobody waits for an idle loop), at most
 * cluster.group_commit_delay after the last entry went, never past a full
 * batch, and not within RD_GROUP_FUTILE_NS of the last of
 * RD_GROUP_FUTILE_MAX waits in a row that no write joined.
 * A timer ends the wait. */
static bool group_delays(struct rd_replica *r)
{
    if (r->group.delay_ns == 0 || group_full(r))
        return false;
    uint64_t now = rd_mono_ns(), until = r->group.last_flush_ns + r->group.delay_ns;
    if (now >= until || now < r->group.no_wait_until_ns ||
        !rd_busy_update(&r->group.busy, now, uv_metrics_idle_time(r->loop)))
        return false;
    if (!r->group.waited) {
        r->group.waited = true;
        r->group.waited_n = r->group.n;
    }
    if (!uv_is_active((uv_handle_t *)&r->group.delay_timer)) {
        /* The loop's time is where this turn began, a saturated turn's
         * milliseconds ago: the timer counts from now. */
        uv_update_time(r->loop);
        uv_timer_start(&r->group.delay_timer, group_delay_cb, (until - now + 999999) / 1000000, 0);
    }
    return true;
}

/* The loop's check phase, right after it handled the I/O of its turn: what
 * waits goes to raft, unless raft already has RD_GROUP_PIPELINE entries of
 * ours in flight; then the loop may block (no idle) until one is answered
 * (apply_cb), and this runs again after it. */
static void group_check_cb(uv_check_t *h)
{
    struct rd_replica *r = h->data;
    if (r->group.entries_inflight >= RD_GROUP_PIPELINE && r->group.n < RD_CMD_BATCH_MAX) {
        uv_idle_stop(&r->group.idle);
        return;
    }
    if (group_delays(r)) {
        uv_idle_stop(&r->group.idle);
        return;
    }
    group_flush(r);
}

/* The delay ended: what waits goes, unless raft still has its pipeline
 * full (then apply_cb's turn does it). */
static void group_delay_cb(uv_timer_t *t)
{
    struct rd_replica *r = t->data;
    if (r->group.n > 0 && r->group.entries_inflight < RD_GROUP_PIPELINE)
        group_flush(r);
}

/* Only there so that the loop polls without blocking while commands wait. */
static void group_idle_cb(uv_idle_t *h)
{
    (void)h;
}

/* `c` joins the group, encoded straight into its batch buffer
 * (rd_cmd_batch_append), or goes to raft with it when the group is full. On
 * an error the group is as it was. */
static int group_add(struct rd_replica *r, const struct rd_cmd *c, rd_submit_cb cb, void *data)
{
    /* Full: what waits goes first (this one opens the next entry). When
     * raft refuses it, the refused commands' callbacks may propose again
     * and fill the group anew (the analysis re-evaluates an agent whose
     * transition was refused, during a leadership transfer): this one is
     * refused with them, never written past the group's end (it was, by
     * an equality test, in a 10,000-agent storm: a heap overrun). */
    if (group_full(r)) {
        int refused = group_flush(r);
        if (group_full(r))
            return refused != 0 ? refused : RD_EBUSY;
    }
    int rv = rd_cmd_batch_append(&r->group.buf, c);
    if (rv != 0)
        return rv;
    r->group.q[r->group.n++] =
        (struct rd_group_cmd){.time_ms = c->time_ms, .t0 = rd_mono_ns(), .cb = cb, .data = data};
    if (r->group.n == 1) {
        uv_check_start(&r->group.check, group_check_cb);
        uv_idle_start(&r->group.idle, group_idle_cb);
    }
    return 0;
}

/* At raft's start: the group's slots and handles. */
static int group_init(struct rd_replica *r)
{
    r->group.q = calloc(RD_CMD_BATCH_MAX, sizeof(*r->group.q));
    if (r->group.q == NULL)
        return RD_ENOMEM;
    rd_w_init(&r->group.buf);
    uv_check_init(r->loop, &r->group.check);
    uv_idle_init(r->loop, &r->group.idle);
    uv_timer_init(r->loop, &r->group.delay_timer);
    r->group.delay_ns = r->cfg->cluster.group_commit_delay_ms * 1000000ULL;
    r->group.check.data = r->group.idle.data = r->group.delay_timer.data = r;
    r->group.on = true;
    r->fsm->on_item = on_item;
    r->fsm->on_item_data = r;
    return 0;
}

/* At close: what waits goes to raft first (raft's close then answers it
 * like every entry in flight), then the handles close. */
static void group_close(struct rd_replica *r)
{
    if (!r->group.on)
        return;
    group_flush(r);
    r->group.on = false;
    uv_close((uv_handle_t *)&r->group.check, watch_closed);
    uv_close((uv_handle_t *)&r->group.idle, watch_closed);
    uv_close((uv_handle_t *)&r->group.delay_timer, watch_closed);
    free(r->group.q);
    r->group.q = NULL;
    rd_w_free(&r->group.buf);
    if (r->fsm->on_item_data == r)
        r->fsm->on_item = NULL;
}

int rd_replica_propose(struct rd_replica *r, const struct rd_cmd *cmd, rd_submit_cb cb, void *data)
{
    struct rd_cmd c = *cmd;
    if (c.time_ms == 0)
        c.time_ms = rd_fsm_stamp(r->fsm);
    int rv = propose_gate(r);
    if (rv != 0)
        return rv;
    bool ambient = false;
    if (c.type != RD_CMD_AUDIT && r->audit_ambient != NULL && r->audit_ambient_used != NULL &&
        !*r->audit_ambient_used) {
        /* The request's record goes with the first change it causes, in
         * place of the engine's own part (whose target fills a gap). */
        struct rd_str target = r->audit_ambient->target;
        if (target.len == 0 && r->audit_ambient_target != NULL && r->audit_ambient_target[0])
            target = RD_STR(r->audit_ambient_target);
        if (target.len == 0 && c.audit.present)
            target = c.audit.target;
        c.audit = *r->audit_ambient;
        c.audit.target = target;
        ambient = true;
    }
    if (c.audit.present || c.type == RD_CMD_AUDIT) {
        /* The retention every replica prunes by: this leader's config. */
        c.audit.keep = r->cfg->security.audit.max_records;
        uint64_t age_s = r->cfg->security.audit.max_age_ms / 1000;
        c.audit.max_age_s = age_s > UINT32_MAX ? UINT32_MAX : (uint32_t)age_s;
    }
    if (r->group.on && rd_cmd_batchable(c.type)) {
        rv = group_add(r, &c, cb, data);
    } else {
        /* An entry of its own, after what waits (the order is kept). */
        group_flush(r);
        struct rd_wbuf w;
        rd_w_init(&w);
        rv = rd_cmd_encode(&c, &w);
        struct rd_submit *s = rv == 0 ? submit_new(1) : NULL;
        if (rv == 0 && s == NULL)
            rv = RD_ENOMEM;
        if (s != NULL) {
            s->items[0].cb = cb;
            s->items[0].data = data;
            s->items[0].t0 = rd_mono_ns();
            rv = submit(r, &w, s);
            if (rv != 0)
                free(s);
        }
        rd_w_free(&w);
    }
    if (rv == 0 && ambient)
        *r->audit_ambient_used = true;
    return rv;
}

static bool proposer_is_leader(void *data)
{
    return rd_replica_is_leader(data);
}

static int proposer_propose(void *data, const struct rd_cmd *cmd, rd_submit_cb cb, void *cb_data)
{
    return rd_replica_propose(data, cmd, cb, cb_data);
}

struct rd_proposer rd_replica_proposer(struct rd_replica *r)
{
    return (struct rd_proposer){
        .data = r, .is_leader = proposer_is_leader, .propose = proposer_propose};
}

/* ---- membership ------------------------------------------------------------ */

struct change {
    struct raft_change req;
    struct rd_replica *r;
    uint64_t id;
    int role;      /* after an add: the role to assign, or -1 */
    bool added;    /* this add committed the server (as a spare) */
    bool removing; /* taking that server out again: the assign failed */
    int failure;   /* what to report once it is out */
    rd_submit_cb cb;
    void *data;
};

static int change_rv(int rv);

static void change_cb(struct raft_change *req, int status)
{
    struct change *c = req->data;
    struct rd_replica *r = c->r;
    if (c->removing) {
        /* The spare an add left behind is out again (or could not be taken out). */
        if (status != 0)
            RD_WARN("raft", "membership_cleanup_failed",
                    "id=%llu error=\"%s\" action=\"remove it with DELETE "
                    "/api/v1/cluster/replicas/%llu\"",
                    (unsigned long long)c->id, raft_strerror(status), (unsigned long long)c->id);
        else
            RD_INFO("raft", "membership_change_undone", "id=%llu", (unsigned long long)c->id);
        rd_submit_cb cb = c->cb;
        void *data = c->data;
        int failure = c->failure;
        free(c);
        cb(data, failure, 0);
        return;
    }
    if (status == 0 && c->role >= 0 && c->role != RAFT_SPARE && !r->closing) {
        /* An add commits the server as a spare: now its role. */
        int role = c->role;
        c->role = -1;
        c->added = true;
        memset(&c->req, 0, sizeof(c->req));
        c->req.data = c;
        int rv = raft_assign(&r->raft, &c->req, c->id, role, change_cb);
        if (rv == 0)
            return;
        status = rv;
    }
    int st = status == RAFT_NOCONNECTION ? RD_ETIMEOUT : change_rv(status);
    /* Lost leadership with the change (or the add before its role) in the
     * log: it may still commit. */
    if (st == RD_ENOTLEADER && (status == RAFT_LEADERSHIPLOST || c->added))
        st = RD_EOUTCOME_UNKNOWN;
    if (status != 0 && c->added && !r->closing && raft_state(&r->raft) == RAFT_LEADER) {
        /* The server was added but cannot take its role (it never answered
         * the catch-up): take it out again rather than leave a spare
         * nobody asked for, and report the failure once it is out. */
        RD_WARN("raft", "membership_change_failed",
                "id=%llu error=\"%s\" action=\"removing the member just added\"",
                (unsigned long long)c->id, raft_strerror(status));
        c->removing = true;
        c->failure = st;
        memset(&c->req, 0, sizeof(c->req));
        c->req.data = c;
        int rv = raft_remove(&r->raft, &c->req, c->id, change_cb);
        if (rv == 0)
            return;
        c->removing = false;
        RD_WARN("raft", "membership_cleanup_failed", "id=%llu error=\"%s\"",
                (unsigned long long)c->id, raft_strerror(rv));
    }
    if (status != 0)
        RD_WARN("raft", "membership_change_failed", "id=%llu error=\"%s\"",
                (unsigned long long)c->id, raft_strerror(status));
    else
        RD_INFO("raft", "membership_changed", "id=%llu", (unsigned long long)c->id);
    rd_submit_cb cb = c->cb;
    void *data = c->data;
    free(c);
    cb(data, st, 0);
}

static int change_rv(int rv)
{
    switch (rv) {
    case RAFT_BADID:
    case RAFT_NOTFOUND:
        return RD_ENOTFOUND;
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
    case RAFT_BADROLE:
    case RAFT_CANTCHANGE:
        return RD_ECONFLICT;
    default:
        return map_raft_error(rv);
    }
}

static struct change *change_new(struct rd_replica *r, uint64_t id, int role, rd_submit_cb cb,
                                 void *data)
{
    struct change *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->r = r;
    c->id = id;
    c->role = role;
    c->cb = cb;
    c->data = data;
    c->req.data = c;
    return c;
}

static int change_start(struct rd_replica *r)
{
    if (r->closing || !r->started)
        return RD_ESHUTDOWN;
    return raft_state(&r->raft) == RAFT_LEADER ? 0 : RD_ENOTLEADER;
}

int rd_replica_add(struct rd_replica *r, uint64_t id, const char *address, int role,
                   rd_submit_cb cb, void *data)
{
    int rv = change_start(r);
    struct change *c = rv == 0 ? change_new(r, id, role, cb, data) : NULL;
    if (rv != 0 || c == NULL)
        return rv ? rv : RD_ENOMEM;
    rv = raft_add(&r->raft, &c->req, id, address, change_cb);
    if (rv != 0) {
        free(c);
        return change_rv(rv);
    }
    return 0;
}

int rd_replica_assign(struct rd_replica *r, uint64_t id, int role, rd_submit_cb cb, void *data)
{
    int rv = change_start(r);
    struct change *c = rv == 0 ? change_new(r, id, -1, cb, data) : NULL;
    if (rv != 0 || c == NULL)
        return rv ? rv : RD_ENOMEM;
    rv = raft_assign(&r->raft, &c->req, id, role, change_cb);
    if (rv != 0) {
        free(c);
        return change_rv(rv);
    }
    return 0;
}

int rd_replica_remove(struct rd_replica *r, uint64_t id, rd_submit_cb cb, void *data)
{
    int rv = change_start(r);
    struct change *c = rv == 0 ? change_new(r, id, -1, cb, data) : NULL;
    if (rv != 0 || c == NULL)
        return rv ? rv : RD_ENOMEM;
    rv = raft_remove(&r->raft, &c->req, id, change_cb);
    if (rv != 0) {
        free(c);
        return change_rv(rv);
    }
    return 0;
}

const struct raft_configuration *rd_replica_configuration(struct rd_replica *r)
{
    return &r->raft.configuration;
}

unsigned rd_replica_voters(struct rd_replica *r)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->raft.configuration.n; i++)
        n += r->raft.configuration.servers[i].role == RAFT_VOTER;
    return n;
}

uint64_t rd_replica_leaderless_ns(struct rd_replica *r)
{
    raft_id lid = 0;
    const char *addr = NULL;
    if (r->started)
        raft_leader(&r->raft, &lid, &addr);
    if (lid != 0)
        return 0;
    uint64_t now = rd_mono_ns();
    return now > r->leader_seen_ns ? now - r->leader_seen_ns : 0;
}

/* ---- linearizable reads ------------------------------------------------------ */

struct rd_read_wait {
    struct rd_read_wait *next;
    rd_submit_cb cb;
    void *data;
};

static void barrier_start(struct rd_replica *r);

static void answer_reads(struct rd_read_wait *w, int status)
{
    while (w != NULL) {
        struct rd_read_wait *next = w->next;
        w->cb(w->data, status, 0);
        free(w);
        w = next;
    }
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct rd_replica *r = req->data;
    if (is_storage_error(status))
        storage_failed(r, status);
    else if (status == 0)
        storage_ok(r);
    struct rd_read_wait *done = r->reads_inflight;
    r->reads_inflight = NULL;
    r->barrier_busy = false;
    answer_reads(done, status ? map_raft_error(status) : 0);
    if (r->reads_next != NULL && !r->closing)
        barrier_start(r);
}

static void barrier_start(struct rd_replica *r)
{
    memset(&r->barrier, 0, sizeof(r->barrier));
    r->barrier.data = r;
    r->reads_inflight = r->reads_next;
    r->reads_next = NULL;
    int rv = raft_state(&r->raft) == RAFT_LEADER ? raft_barrier(&r->raft, &r->barrier, barrier_cb)
                                                 : RAFT_NOTLEADER;
    if (is_storage_error(rv))
        storage_failed(r, rv);
    if (rv != 0) {
        struct rd_read_wait *w = r->reads_inflight;
        r->reads_inflight = NULL;
        answer_reads(w, map_raft_error(rv));
        return;
    }
    r->barrier_busy = true;
}

int rd_replica_read_barrier(struct rd_replica *r, rd_submit_cb cb, void *data)
{
    if (r->closing || !r->started)
        return RD_ESHUTDOWN;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return RD_ENOTLEADER;
    int gate = storage_gate(r);
    if (gate != 0)
        return gate;
    struct rd_read_wait *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return RD_ENOMEM;
    w->cb = cb;
    w->data = data;
    w->next = r->reads_next;
    r->reads_next = w;
    /* A barrier already in flight may have been appended before this call:
     * this read waits for the next one. */
    if (!r->barrier_busy)
        barrier_start(r);
    return 0;
}

bool rd_replica_is_leader(struct rd_replica *r)
{
    return r->started && !r->closing && raft_state(&r->raft) == RAFT_LEADER;
}

/* ---- a new leader's state: current once a barrier of its term applied -------- */

bool rd_replica_current(struct rd_replica *r)
{
    return rd_replica_is_leader(r) && rd_leader_gate_open(&r->gate);
}

/* Starts the gate's barrier unless it is open or one runs; a storage fault
 * waits for its next try (the watch tick kicks again). */
static void gate_kick(struct rd_replica *r)
{
    if (!rd_replica_is_leader(r) || rd_leader_gate_open(&r->gate) ||
        rd_leader_gate_busy(&r->gate) || storage_gate(r) != 0)
        return;
    int rv = rd_leader_gate_kick(&r->gate);
    if (is_storage_error(rv))
        storage_failed(r, rv);
    if (rv != 0 && r->gate_waiting != NULL && !is_storage_error(rv)) {
        struct rd_read_wait *w = r->gate_waiting;
        r->gate_waiting = NULL;
        answer_reads(w, RD_ENOTLEADER);
    }
}

static void gate_done(void *data, int status)
{
    struct rd_replica *r = data;
    if (is_storage_error(status))
        storage_failed(r, status);
    else if (status == 0)
        storage_ok(r);
    if (rd_replica_current(r)) {
        struct rd_read_wait *w = r->gate_waiting;
        r->gate_waiting = NULL;
        answer_reads(w, 0);
        return;
    }
    if (r->closing || !rd_replica_is_leader(r) || is_storage_error(status)) {
        /* Lost leadership (or stopping, or the log cannot be written)
         * before the state was current: the waiting requests proposed
         * nothing. */
        struct rd_read_wait *w = r->gate_waiting;
        r->gate_waiting = NULL;
        answer_reads(w, r->closing                 ? RD_ESHUTDOWN
                        : is_storage_error(status) ? map_raft_error(status)
                                                   : RD_ENOTLEADER);
        return;
    }
    /* Still leading but not current: a barrier of an earlier term, or one
     * that failed on storage. The next one (now, or from the watch tick
     * once a storage fault's retry time came) opens it. */
    gate_kick(r);
}

int rd_replica_await_current(struct rd_replica *r, rd_submit_cb cb, void *data)
{
    if (r->closing || !r->started)
        return RD_ESHUTDOWN;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return RD_ENOTLEADER;
    if (rd_leader_gate_open(&r->gate)) /* current already: after a barrier all the same */
        return rd_replica_read_barrier(r, cb, data);
    if (!rd_leader_gate_busy(&r->gate)) {
        int gate = storage_gate(r);
        if (gate != 0)
            return gate;
        int rv = rd_leader_gate_kick(&r->gate);
        if (is_storage_error(rv))
            storage_failed(r, rv);
        if (rv != 0)
            return map_raft_error(rv);
    }
    struct rd_read_wait *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return RD_ENOMEM;
    w->cb = cb;
    w->data = data;
    w->next = r->gate_waiting;
    r->gate_waiting = w;
    return 0;
}

void rd_replica_leader(struct rd_replica *r, uint64_t *id, const char **address)
{
    raft_id lid = 0;
    const char *addr = NULL;
    if (r->started)
        raft_leader(&r->raft, &lid, &addr);
    *id = lid;
    *address = addr;
}

bool rd_replica_has_leader(struct rd_replica *r)
{
    uint64_t id;
    const char *addr;
    rd_replica_leader(r, &id, &addr);
    return id != 0;
}

uint64_t rd_replica_applied_index(struct rd_replica *r)
{
    return r->started ? raft_last_applied(&r->raft) : 0;
}

uint64_t rd_replica_commit_index(struct rd_replica *r)
{
    return r->started ? raft_commit_index(&r->raft) : 0;
}

uint64_t rd_replica_term(struct rd_replica *r)
{
    return r->started ? raft_current_term(&r->raft) : 0;
}

const char *rd_replica_role_name(struct rd_replica *r)
{
    return r->started ? state_name(raft_state(&r->raft)) : "unavailable";
}

static void watch_closed(uv_handle_t *h)
{
    (void)h;
}

static void raft_closed(struct raft *raft)
{
    struct rd_replica *r = raft->data;
    raft_uv_close(&r->io);
    orphans_free(r);
    transport_free(r);
    rd_snapshotter_free(&r->snap);
    RD_INFO("raft", "closed", "applied=%llu", (unsigned long long)raft_last_applied(raft));
    rd_fsm_bind_raft(r->fsm, NULL);
    /* libraft freed its configurations without emptying them: readers
     * (the cluster's polls, the API) see none from now on. */
    memset(&r->raft.configuration, 0, sizeof(r->raft.configuration));
    memset(&r->raft.configuration_committed, 0, sizeof(r->raft.configuration_committed));
    if (r->mark.on) {
        /* A clean stop: the mark says so (close_cb once it is written). */
        r->mark.on = false;
        if (r->mark.busy)
            r->mark.final_wanted = true;
        else
            mark_start_final(r);
        return;
    }
    if (r->close_cb)
        r->close_cb(r->close_data);
}

static void transport_closed(struct raft_uv_transport *t)
{
    struct rd_replica *r = of_transport(t);
    transport_free(r);
    if (r->close_cb)
        r->close_cb(r->close_data);
}

void rd_replica_close(struct rd_replica *r, void (*cb)(void *data), void *data)
{
    r->close_cb = cb;
    r->close_data = data;
    if (r->closing)
        return;
    group_close(r);
    r->closing = true;
    struct rd_read_wait *waiting = r->reads_next;
    r->reads_next = NULL;
    answer_reads(waiting, RD_ESHUTDOWN); /* the one in flight ends with raft */
    waiting = r->gate_waiting;
    r->gate_waiting = NULL;
    answer_reads(waiting, RD_ESHUTDOWN);
    if (r->started)
        uv_close((uv_handle_t *)&r->watch, watch_closed);
    if (r->mark.on) {
        uv_timer_stop(&r->mark.timer);
        uv_close((uv_handle_t *)&r->mark.timer, watch_closed);
    }
    if (r->inited) {
        raft_close(&r->raft, raft_closed); /* closes the transport too */
        return;
    }
    if (r->listening) {
        /* Raft never took the transport over: close its listener here. */
        r->transport.close(&r->transport, transport_closed);
        return;
    }
    if (r->transport_inited)
        transport_free(r);
    if (cb)
        cb(data);
}
