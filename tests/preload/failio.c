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
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef long (*syscall_fn)(long, ...);

long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_io_submit) {
        int fd = open("fail-io", O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t w = write(fd, "x", 1);
            (void)w;
            close(fd);
            errno = EIO;
            return -1;
        }
    }
    syscall_fn real = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
    return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
