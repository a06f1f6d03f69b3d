/*
 * A backup's image from a forked child (image.h). The child touches
 * nothing of the loop, logs nothing and leaves with _exit: it only reads the
 * state, allocates (glibc's fork leaves malloc usable in the child), writes
 * the pipe and ends. It dies with the engine (PR_SET_PDEATHSIG).
 *
 * What travels on the pipe: a 32-byte head (magic "RDIM", the child's
 * status, the image length, its FNV-1a checksum, the raw length), then the
 * image. A child that dies before the end, or says a status other than 0,
 * fails the job; the parent reaps it either way.
 */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "fsm/snapshot.h"
#include "recoveryd/error.h"

#define HEAD_LEN 32
#define REAP_MS  2

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The pause after each slice of the child's CPU time (pace_child). */
static struct timespec pace_rest;

static void pace_tick(int sig)
{
    (void)sig;
    int saved = errno;
    struct timespec left = pace_rest;
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
    errno = saved;
}

/*
 * Paces the child to `cpu_share` percent of a CPU: every RD_IMAGE_SLICE_US of
 * CPU time it spends (ITIMER_PROF), it sleeps as long as keeps it within
 * the share. SCHED_IDLE already gives the loop the CPU whenever it wants it;
 * what it cannot stop is the child, running beside the loop on the other
 * core, taking the shared cache and memory bandwidth the whole time it runs.
 * Paced, the loop shares them only a fraction of the time (at the price of
 * a longer image: 100 / cpu_share times the unpaced one at most).
 */
static void pace_child(unsigned cpu_share)
{
    if (cpu_share == 0 || cpu_share >= 100)
        return;
    uint64_t rest_us = (uint64_t)RD_IMAGE_SLICE_US * (100 - cpu_share) / cpu_share;
    pace_rest.tv_sec = (time_t)(rest_us / 1000000);
    pace_rest.tv_nsec = (long)(rest_us % 1000000) * 1000;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pace_tick;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigset_t prof;
    sigemptyset(&prof);
    sigaddset(&prof, SIGPROF);
    struct itimerval slice = {{0, RD_IMAGE_SLICE_US}, {0, RD_IMAGE_SLICE_US}};
    if (sigaction(SIGPROF, &sa, NULL) == 0 && sigprocmask(SIG_UNBLOCK, &prof, NULL) == 0)
        (void)setitimer(ITIMER_PROF, &slice, NULL);
}

/*
 * The child keeps nothing of the engine's but `keep` (its pipe) and the
 * standard streams. Above all not the data directory's lock: a flock belongs
 * to the open file the child shares with the parent, so a child still alive
 * when the engine is killed would hold it, and the engine started again at
 * once would find its data directory "in use" (seen in CI: a paced child
 * outlives its parent by the time SIGKILL takes).
 */
static void close_inherited(int keep)
{
    bool ok = (keep <= 3 || close_range(3, (unsigned)keep - 1, 0) == 0) &&
              close_range((unsigned)keep + 1, ~0U, 0) == 0;
    if (ok)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long i = 3; i < (max > 0 ? max : 1024); i++)
        if (i != keep)
            (void)close((int)i);
}

/* The child: the image of the state it was born with, onto `fd`. */
static void child_main(const struct rd_fsm *f, int fd, unsigned cpu_share, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(3); /* the engine died before the line above: nobody wants the image */
    close_inherited(fd);
    /* Background work: the child runs only on CPU the engine leaves idle
     * (SCHED_IDLE, else the lowest nice), so a backup slows down under load
     * instead of the heartbeats. */
    struct sched_param idle = {0};
    if (sched_setscheduler(0, SCHED_IDLE, &idle) != 0)
        (void)setpriority(PRIO_PROCESS, 0, 19);
    pace_child(cpu_share);
    struct rd_wbuf image;
    rd_w_init(&image);
    uint64_t raw_len = 0;
    int rv = rd_fsm_snapshot_stream(f, &image, &raw_len);
    uint8_t head[HEAD_LEN] = {'R', 'D', 'I', 'M'};
    put_u32(head + 4, (uint32_t)(rv == 0 ? 0 : -rv));
    put_u64(head + 8, rv == 0 ? image.len : 0);
    put_u64(head + 16, rv == 0 ? rd_fnv1a(RD_FNV_INIT, image.p, image.len) : 0);
    put_u64(head + 24, raw_len);
    if (write_all(fd, head, sizeof(head)) != 0 || (rv == 0 && write_all(fd, image.p, image.len)))
        _exit(2);
    _exit(rv == 0 ? 0 : 1);
}

static void handle_closed(uv_handle_t *h)
{
    struct rd_image_job *job = h->data;
    if (--job->open_handles == 0)
        job->cb(job, job->status);
}

static void finish(struct rd_image_job *job)
{
    uv_close((uv_handle_t *)&job->reap, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&job->pipe))
        uv_close((uv_handle_t *)&job->pipe, handle_closed);
}

static void fail(struct rd_image_job *job, int status, const char *why)
{
    if (job->status == 0) {
        job->status = status;
        snprintf(job->errmsg, sizeof(job->errmsg), "%s", why);
    }
}

/* After the output ended: waits (a few ms at most) for the child to be gone. */
static void reap_tick(uv_timer_t *t)
{
    struct rd_image_job *job = t->data;
    int ws = 0;
    pid_t got = waitpid(job->pid, &ws, WNOHANG);
    if (got == 0)
        return; /* still exiting: the timer repeats */
    uv_timer_stop(t);
    if (got < 0) {
        fail(job, RD_EINTERNAL, "the image's child could not be reaped");
    } else if (WIFSIGNALED(ws)) {
        /* Said over the output's end it cut short: the cause, not the effect. */
        if (job->status == 0 || job->status == RD_EIO) {
            job->status = RD_EIO;
            snprintf(job->errmsg, sizeof(job->errmsg), "the image's child was killed by signal %d",
                     WTERMSIG(ws));
        }
    } else if (WEXITSTATUS(ws) != 0 && job->status == 0) {
        fail(job, RD_EIO, "the image's child failed");
    }
    job->pid = 0;
    finish(job);
}

static void output_ended(struct rd_image_job *job)
{
    uv_read_stop((uv_stream_t *)&job->pipe);
    uv_close((uv_handle_t *)&job->pipe, handle_closed);
    if (job->status == 0 && (job->head_len < HEAD_LEN || job->image->len != job->want))
        fail(job, RD_EIO, "the image's child ended before its image was complete");
    if (job->status == 0 && job->running != job->checksum)
        fail(job, RD_ECORRUPT, "the image's checksum does not match what its child computed");
    uv_timer_start(&job->reap, reap_tick, 0, REAP_MS);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rd_image_job *job = h->data;
    (void)suggested;
    if (job->head_len < HEAD_LEN) {
        *buf = uv_buf_init((char *)job->head + job->head_len, (unsigned)(HEAD_LEN - job->head_len));
        return;
    }
    struct rd_wbuf *w = job->image;
    size_t room = w->cap - w->len;
    if (room == 0) {
        /* More than announced: read into the head (ignored) so the error shows. */
        *buf = uv_buf_init((char *)job->head, HEAD_LEN);
        return;
    }
    *buf = uv_buf_init((char *)w->p + w->len, (unsigned)(room < (1u << 20) ? room : (1u << 20)));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct rd_image_job *job = s->data;
    if (n < 0) {
        if (n != UV_EOF)
            fail(job, RD_EIO, "reading the image from its child failed");
        output_ended(job);
        return;
    }
    if (n == 0)
        return;
    if (job->head_len < HEAD_LEN) {
        job->head_len += (size_t)n;
        if (job->head_len < HEAD_LEN)
            return;
        uint32_t st = get_u32(job->head + 4);
        job->want = get_u64(job->head + 8);
        job->checksum = get_u64(job->head + 16);
        job->raw_len = get_u64(job->head + 24);
        if (memcmp(job->head, "RDIM", 4) != 0 || job->want > (1ULL << 36)) {
            fail(job, RD_EIO, "the image's child sent a malformed head");
            output_ended(job);
            return;
        }
        if (st != 0) {
            fail(job, -(int)st, "the image's child could not serialise the state");
            return; /* EOF follows */
        }
        struct rd_wbuf *w = job->image;
        uint8_t *p = job->want > w->cap ? realloc(w->p, job->want ? job->want : 1) : w->p;
        if (p == NULL) {
            fail(job, RD_ENOMEM, "no memory for the image");
            output_ended(job);
            return;
        }
        w->p = p;
        w->cap = job->want > w->cap ? job->want : w->cap;
        w->len = 0;
        job->running = RD_FNV_INIT;
        return;
    }
    if ((char *)buf->base == (char *)job->head) {
        fail(job, RD_EIO, "the image's child sent more than it announced");
        output_ended(job);
        return;
    }
    /* Checksummed as it arrives, a read (at most 1 MiB) at a time: the
     * loop never pays one pass over the whole image. */
    job->running = rd_fnv1a(job->running, buf->base, (size_t)n);
    job->image->len += (size_t)n;
}

int rd_image_fork(uv_loop_t *loop, const struct rd_fsm *f, unsigned cpu_share,
                  struct rd_wbuf *image, struct rd_image_job *job, rd_image_cb cb, void *data)
{
    memset(job, 0, sizeof(*job));
    job->image = image;
    job->cb = cb;
    job->data = data;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return RD_EIO;
    uint64_t t0 = rd_mono_ns();
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return errno == ENOMEM ? RD_ENOMEM : RD_EIO;
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(f, fds[1], cpu_share, parent);
    }
    job->fork_us = (rd_mono_ns() - t0) / 1000;
    close(fds[1]);
    job->pid = pid;
    uv_pipe_init(loop, &job->pipe, 0);
    uv_timer_init(loop, &job->reap);
    job->pipe.data = job;
    job->reap.data = job;
    job->open_handles = 2;
    int opened = uv_pipe_open(&job->pipe, fds[0]);
    if (opened != 0 || uv_read_start((uv_stream_t *)&job->pipe, on_alloc, on_read) != 0) {
        if (opened != 0)
            close(fds[0]);
        fail(job, RD_EIO, "cannot read the image's child");
        kill(pid, SIGKILL);
        uv_timer_start(&job->reap, reap_tick, 0, REAP_MS);
        uv_close((uv_handle_t *)&job->pipe, handle_closed);
    }
    return 0;
}

void rd_image_cancel(struct rd_image_job *job)
{
    if (job->pid > 0)
        kill(job->pid, SIGKILL);
    fail(job, RD_ESHUTDOWN, "the engine stops");
}
