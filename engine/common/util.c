#include "util.h"
#include "recoveryd/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

int64_t rd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t rd_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t rd_due_mono_ns(int64_t since_ms, uint64_t interval_ms)
{
    int64_t in = since_ms + (int64_t)interval_ms - rd_now_ms();
    in = in < 0 ? 0 : in > (int64_t)interval_ms ? (int64_t)interval_ms : in;
    return rd_mono_ns() + (uint64_t)in * 1000000;
}

void rd_time_format(int64_t ms, char out[RD_TIME_STRLEN])
{
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    /* Years past 9999 do not fit RFC 3339: clamp rather than truncate. */
    unsigned year = (unsigned)(tm.tm_year + 1900) % 10000u;
    snprintf(out, RD_TIME_STRLEN, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", year,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
             (unsigned)frac % 1000u);
}

int rd_time_parse(const char *s, int64_t *ms)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return RD_EPARSE;
    int64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3) {
                frac = frac * 10 + (*p - '0');
                digits++;
            }
            p++;
        }
        if (digits == 0)
            return RD_EPARSE;
        while (digits++ < 3)
            frac *= 10;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || hh > 23 || mm > 59)
            return RD_EPARSE;
        offset = (hh * 60 + mm) * 60 * 1000LL * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return RD_EPARSE;
    }
    if (*p != '\0')
        return RD_EPARSE;
    *ms = (int64_t)timegm(&tm) * 1000 + frac - offset;
    return 0;
}

bool rd_node_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > RD_NODE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

int rd_uuid_v4(char out[RD_UUID_STRLEN])
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return RD_EIO;
        }
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, RD_UUID_STRLEN,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

bool rd_uuid_valid(const char *s)
{
    if (s == NULL || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

uint64_t rd_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

char *rd_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void *rd_array_room(void *arr, size_t size, size_t *head, size_t n, size_t *cap, size_t first_cap)
{
    if (*head + n < *cap)
        return arr;
    if (*head > 0 && *head >= n) {
        memmove(arr, (char *)arr + *head * size, n * size);
        *head = 0;
        return arr;
    }
    size_t ncap = *cap ? *cap * 2 : first_cap;
    void *na = realloc(arr, ncap * size);
    if (na != NULL)
        *cap = ncap;
    return na;
}

int rd_zstd_inflate(const void *p, size_t n, size_t want, uint8_t **out, size_t *got)
{
    size_t cap = want < (1u << 20) ? want : (1u << 20);
    uint8_t *buf = malloc(cap ? cap : 1);
    ZSTD_DCtx *z = ZSTD_createDCtx();
    int rv = buf && z ? RD_ECORRUPT : RD_ENOMEM;
    ZSTD_inBuffer in = {p, n, 0};
    size_t pos = 0;
    while (rv == RD_ECORRUPT) {
        if (pos == cap && cap < want) {
            size_t grown = cap > want / 2 ? want : cap * 2;
            uint8_t *b = realloc(buf, grown);
            if (b == NULL) {
                rv = RD_ENOMEM;
                break;
            }
            buf = b;
            cap = grown;
        }
        ZSTD_outBuffer o = {buf, cap, pos};
        size_t in_before = in.pos;
        size_t left = ZSTD_decompressStream(z, &o, &in);
        if (ZSTD_isError(left))
            break;
        bool progress = in.pos != in_before || o.pos != pos;
        pos = o.pos;
        if (left == 0 && in.pos == in.size)
            rv = 0; /* the whole frame, and nothing after it */
        else if (left == 0)
            break;
        else if (!progress)
            break; /* truncated, or more than it said */
    }
    ZSTD_freeDCtx(z);
    if (rv != 0) {
        free(buf);
        buf = NULL;
        pos = 0;
    }
    *out = buf;
    *got = pos;
    return rv;
}

/* ---- memory the children never see ---------------------------------------- */

static size_t pages_of(size_t n)
{
    static size_t page;
    if (page == 0) {
        long p = sysconf(_SC_PAGESIZE);
        page = p > 0 ? (size_t)p : 4096;
    }
    return n == 0 ? 0 : (n + page - 1) / page * page;
}

void *rd_nofork_realloc(void *p, size_t old, size_t size)
{
    size_t o = pages_of(old), n = pages_of(size);
    if (n == 0) {
        rd_nofork_free(p, old);
        return NULL;
    }
    if (p != NULL && n == o)
        return p;
    void *q = p == NULL ? mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                        : mremap(p, o, n, MREMAP_MAYMOVE);
    if (q == MAP_FAILED)
        return NULL;
    /* The flag moves with the mapping; set again for the pages it grew by.
     * Refused (it never is on Linux): the pages are copied on write, as
     * malloc's are. */
    (void)madvise(q, n, MADV_DONTFORK);
    return q;
}

void rd_nofork_free(void *p, size_t size)
{
    if (p != NULL)
        (void)munmap(p, pages_of(size));
}

void *rd_nofork_slots(void *p, size_t *n, size_t elem, size_t slot)
{
    if (slot < *n)
        return p;
    size_t want = *n ? *n : 256;
    while (want <= slot)
        want *= 2;
    void *q = rd_nofork_realloc(p, *n * elem, want * elem);
    if (q != NULL)
        *n = want;
    return q;
}
