/*
 * A slow DNS server for tests, preloaded into the daemon (LD_PRELOAD): a
 * name ending in ".slow.test" takes RDT_SLOW_DNS_MS (default 2000) to
 * resolve, then resolves to 127.0.0.1; every other name goes to the C
 * library as usual. What it shows is who waits: the thread that called
 * getaddrinfo, which must never be the daemon's loop.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    getaddrinfo_fn real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    static const char suffix[] = ".slow.test";
    size_t n = node != NULL ? strlen(node) : 0;
    if (n > sizeof(suffix) - 1 && strcmp(node + n - (sizeof(suffix) - 1), suffix) == 0) {
        const char *ms = getenv("RDT_SLOW_DNS_MS");
        long d = ms != NULL ? atol(ms) : 2000;
        struct timespec ts = {d / 1000, (d % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0)
            ;
        return real("127.0.0.1", service, hints, res);
    }
    return real(node, service, hints, res);
}
