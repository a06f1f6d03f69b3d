/*
 * A failing disk for tests, preloaded into the daemon (LD_PRELOAD): while a
 * file named `fail-io` exists in the daemon's working directory, every
 * io_submit(2) fails with EIO. libraft's libuv backend writes its log
 * segments with io_submit (through syscall(3), in the loop or in a
 * threadpool worker) and nothing else of the daemon does, so what fails is
 * exactly the appends libraft has already queued: the path docs/libraft.md
 * calls "appends that fail after they were queued". Snapshots, metadata and
 * segment preparation (write, fallocate) go on working. Each failure adds
 * a byte to `fail-io`, so a test can await that the disk was hit.
 *
 * A hung disk: while a file named `hang-io` exists, a log write does not
 * finish. As the kernel does for a disk that stops answering, a write asked
 * not to wait (RWF_NOWAIT: libraft's first try, in the loop) is refused
 * with EAGAIN, and one that may wait (libraft's second try, in a threadpool
 * worker) waits, here until `hang-io` is gone, then is written. Each write
 * that starts waiting adds a byte to `hang-io`.
 *
 * A slow disk: while a file named `slow-io` exists, a log write takes
 * 100 ms longer (as for a hung disk, one asked not to wait is refused with
 * EAGAIN, and the second try, in a worker, waits).
 *
 * A disk that fails raft's term and vote writes: while a file named
 * `fail-meta` exists, fsync(2) and fdatasync(2) of a file whose name begins
 * with `metadata` (libraft's metadata1 and metadata2, written and synced at
 * each new term or vote) fail with EIO, as a disk's write error surfaces.
 * Each failure adds a byte to `fail-meta`.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef long (*syscall_fn)(long, ...);
typedef int (*sync_fn)(int);

/* Adds a byte to `path`; false when it does not exist. */
static bool mark(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t w = write(fd, "x", 1);
    (void)w;
    close(fd);
    return true;
}

/* True when any of the `n` writes was asked not to wait. */
static bool nowait(long n, struct iocb **iocbs)
{
    for (long i = 0; i < n; i++)
        if (iocbs[i]->aio_rw_flags & RWF_NOWAIT)
            return true;
    return false;
}

long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_io_submit) {
        if (mark("fail-io")) {
            errno = EIO;
            return -1;
        }
        struct stat st;
        if (stat("hang-io", &st) == 0) {
            if (nowait(a[1], (struct iocb **)a[2])) {
                errno = EAGAIN;
                return -1;
            }
            mark("hang-io");
            struct timespec ms10 = {0, 10 * 1000 * 1000};
            while (stat("hang-io", &st) == 0)
                nanosleep(&ms10, NULL);
        }
        if (stat("slow-io", &st) == 0) {
            if (nowait(a[1], (struct iocb **)a[2])) {
                errno = EAGAIN;
                return -1;
            }
            struct timespec ms100 = {0, 100 * 1000 * 1000};
            nanosleep(&ms100, NULL);
        }
    }
    syscall_fn real = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
    return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* True when `fd` is one of libraft's metadata files and `fail-meta` exists
 * (then counted). */
static bool meta_fails(int fd)
{
    struct stat st;
    if (stat("fail-meta", &st) != 0)
        return false;
    char link[64], path[512];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0)
        return false;
    path[n] = '\0';
    const char *base = strrchr(path, '/');
    if (base == NULL || strncmp(base + 1, "metadata", 8) != 0)
        return false;
    return mark("fail-meta");
}

/* The libc sync `name` of `fd`, or EIO for a metadata file under fail-meta. */
static int sync_or_fail(int fd, const char *name)
{
    if (meta_fails(fd)) {
        errno = EIO;
        return -1;
    }
    sync_fn real = (sync_fn)dlsym(RTLD_NEXT, name);
    return real(fd);
}

int fdatasync(int fd)
{
    return sync_or_fail(fd, "fdatasync");
}

int fsync(int fd)
{
    return sync_or_fail(fd, "fsync");
}
