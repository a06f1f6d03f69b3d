/* Damage on disk: the acknowledged mark, the scan of the raft directory, the verdict (damage.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "damage.h"
#include "fsm/cmd.h"
#include "fsm/snapshot.h"
#include "recoveryd/error.h"

/* libraft's on-disk format (src/uv.h, uv_segment.c, uv_metadata.c, uv_snapshot.c, 0.22.1). */
#define DISK_FORMAT   1
#define META_SIZE     32
#define MAX_SEGMENT   (8u * 1024 * 1024) /* UV__MAX_SEGMENT_SIZE: bounds a batch's count */
#define MAX_CONF      (1024u * 1024)
#define ENTRY_COMMAND 1 /* RAFT_COMMAND, RAFT_BARRIER, RAFT_CHANGE */
#define ENTRY_CHANGE  3

static void say(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t n, const char *fmt, ...)
{
    if (why == NULL || n == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
}

/* Appends to a NUL-terminated buffer, cutting at its size. */
static void append(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* libraft's CRC-32 (libiberty's: polynomial 0x04c11db7, MSB first, no reflection, init 0). */
static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i << 24;
        for (int k = 0; k < 8; k++)
            c = c & 0x80000000u ? (c << 1) ^ 0x04c11db7u : c << 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_raft(const uint8_t *p, size_t n, uint32_t crc)
{
    while (n--)
        crc = (crc << 8) ^ crc_table[((crc >> 24) ^ *p++) & 255];
    return crc;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rv = fsync(fd);
    close(fd);
    return rv;
}

static void parent_of(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == NULL)
        snprintf(out, cap, ".");
    else if (slash == out)
        out[1] = '\0';
    else
        *slash = '\0';
}

/* Whole file into memory (malloc'd, NUL-terminated). 0 or -errno. */
static int read_file(const char *path, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size + 1);
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return -e;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- the acknowledged mark --------------------------------------------------- */

int rd_mark_encode(const struct rd_mark *m, char *buf, size_t cap)
{
    char when[RD_TIME_STRLEN];
    rd_time_format(m->written_ms, when);
    int n = snprintf(buf, cap,
                     "recoveryd acknowledged mark 1\n"
                     "seq %" PRIu64 "\napplied %" PRIu64 "\nstored %" PRIu64 "\nterm %" PRIu64
                     "\nvote %" PRIu64 "\nclean %d\nwritten %s\n",
                     m->seq, m->applied, m->stored, m->term, m->vote, m->clean ? 1 : 0, when);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    for (unsigned i = 0; i < m->n_members && i < RD_MARK_MEMBERS; i++) {
        int k = snprintf(buf + n, cap - (size_t)n, "member %" PRIu64 " %s\n", m->members[i].id,
                         m->members[i].api_url[0] ? m->members[i].api_url : "-");
        if (k < 0 || (size_t)k >= cap - (size_t)n)
            return -1;
        n += k;
    }
    uint64_t sum = rd_fnv1a(RD_FNV_INIT, buf, (size_t)n);
    int k = snprintf(buf + n, cap - (size_t)n, "checksum %016" PRIx64 "\n", sum);
    if (k < 0 || (size_t)k >= cap - (size_t)n)
        return -1;
    return n + k;
}

int rd_mark_decode(const char *buf, size_t len, struct rd_mark *m, char *why, size_t n)
{
    memset(m, 0, sizeof(*m));
    const char *sumline = NULL;
    for (const char *p = buf; p < buf + len;) {
        const char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (nl == NULL)
            break;
        if (strncmp(p, "checksum ", 9) == 0) {
            sumline = p; /* the first: what follows may be left from a longer write */
            break;
        }
        p = nl + 1;
    }
    if (len < 30 || strncmp(buf, "recoveryd acknowledged mark 1\n", 30) != 0 || sumline == NULL) {
        say(why, n, "not a recoveryd acknowledged mark (format 1)");
        return RD_ECORRUPT;
    }
    char hex[17] = {0};
    memcpy(hex, sumline + 9, buf + len - (sumline + 9) >= 16 ? 16 : 0);
    char *end = NULL;
    uint64_t want = strtoull(hex, &end, 16);
    if (end != hex + 16 || want != rd_fnv1a(RD_FNV_INIT, buf, (size_t)(sumline - buf))) {
        say(why, n, "its checksum does not match its content");
        return RD_ECORRUPT;
    }
    bool seen[5] = {0};
    for (const char *p = buf + 30; p < sumline;) {
        const char *nl = memchr(p, '\n', (size_t)(sumline - p));
        size_t l = (size_t)(nl - p);
        char line[RD_CFG_STR + 64];
        if (l >= sizeof(line)) {
            say(why, n, "a line is too long");
            return RD_ECORRUPT;
        }
        memcpy(line, p, l);
        line[l] = '\0';
        p = nl + 1;
        unsigned long long v = 0;
        int clean = 0;
        char url[RD_CFG_STR] = "";
        if (sscanf(line, "seq %llu", &v) == 1) {
            m->seq = v;
        } else if (sscanf(line, "applied %llu", &v) == 1) {
            m->applied = v;
            seen[0] = true;
        } else if (sscanf(line, "stored %llu", &v) == 1) {
            m->stored = v;
            seen[1] = true;
        } else if (sscanf(line, "term %llu", &v) == 1) {
            m->term = v;
            seen[2] = true;
        } else if (sscanf(line, "vote %llu", &v) == 1) {
            m->vote = v;
            seen[3] = true;
        } else if (sscanf(line, "clean %d", &clean) == 1) {
            m->clean = clean != 0;
            seen[4] = true;
        } else if (strncmp(line, "written ", 8) == 0) {
            int64_t ms = 0;
            if (rd_time_parse(line + 8, &ms) == 0)
                m->written_ms = ms;
        } else if (sscanf(line, "member %llu %255s", &v, url) == 2) {
            if (m->n_members < RD_MARK_MEMBERS) {
                m->members[m->n_members].id = v;
                snprintf(m->members[m->n_members].api_url, RD_CFG_STR, "%s",
                         strcmp(url, "-") == 0 ? "" : url);
                m->n_members++;
            }
        }
    }
    for (int i = 0; i < 5; i++) {
        if (!seen[i]) {
            say(why, n, "a field is missing");
            return RD_ECORRUPT;
        }
    }
    return 0;
}

int rd_mark_load(const char *data_dir, struct rd_mark *m, char *why, size_t n)
{
    memset(m, 0, sizeof(*m));
    bool found = false, valid = false;
    char detail[2][192] = {"", ""};
    for (int i = 0; i < 2; i++) {
        char path[RD_CFG_STR + 16];
        snprintf(path, sizeof(path), "%s/" RD_MARK_FILE "%d", data_dir, i + 1);
        uint8_t *buf;
        size_t len;
        int rv = read_file(path, &buf, &len);
        if (rv == -ENOENT)
            continue;
        found = true;
        if (rv != 0) {
            snprintf(detail[i], sizeof(detail[i]), "cannot read %s: %s", path, strerror(-rv));
            continue;
        }
        struct rd_mark one;
        char d[128];
        rv = rd_mark_decode((const char *)buf, len, &one, d, sizeof(d));
        free(buf);
        if (rv != 0) {
            snprintf(detail[i], sizeof(detail[i]), "%s: %s", path, d);
            continue;
        }
        if (!valid || one.seq > m->seq)
            *m = one;
        valid = true;
    }
    if (!found)
        return RD_ENOTFOUND;
    if (!valid) {
        say(why, n, "%s%s%s", detail[0], detail[0][0] && detail[1][0] ? "; " : "", detail[1]);
        return RD_ECORRUPT;
    }
    return 0;
}

void rd_mark_close(struct rd_mark_files *f)
{
    for (int i = 0; i < 2; i++) {
        if (f->fd[i] >= 0)
            close(f->fd[i]);
        f->fd[i] = -1;
    }
}

int rd_mark_open(const char *data_dir, struct rd_mark_files *f, char *why, size_t n)
{
    f->fd[0] = f->fd[1] = -1;
    for (int i = 0; i < 2; i++) {
        char path[RD_CFG_STR + 16];
        snprintf(path, sizeof(path), "%s/" RD_MARK_FILE "%d", data_dir, i + 1);
        f->fd[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (f->fd[i] < 0) {
            say(why, n, "cannot open %s: %s", path, strerror(errno));
            rd_mark_close(f);
            return RD_EIO;
        }
    }
    /* The files' names must survive a crash as well as their content. */
    if (fsync_dir(data_dir) != 0) {
        say(why, n, "cannot sync %s: %s", data_dir, strerror(errno));
        rd_mark_close(f);
        return RD_EIO;
    }
    return 0;
}

int rd_mark_write(struct rd_mark_files *f, const struct rd_mark *m, char *why, size_t n)
{
    char text[4096];
    int len = rd_mark_encode(m, text, sizeof(text));
    int fd = f->fd[m->seq % 2];
    if (len < 0) {
        say(why, n, "the mark does not fit in %zu bytes", sizeof(text));
        return RD_EIO;
    }
    if (fd < 0) {
        say(why, n, "the mark's files are not open");
        return RD_EIO;
    }
    ssize_t w = pwrite(fd, text, (size_t)len, 0);
    if (w != len || ftruncate(fd, len) != 0 || fdatasync(fd) != 0) {
        say(why, n, "cannot write %s%llu: %s", RD_MARK_FILE, (unsigned long long)(m->seq % 2 + 1),
            w < 0 ? strerror(errno) : "short write");
        return RD_EIO;
    }
    return 0;
}

int rd_mark_store(const char *data_dir, const struct rd_mark *m, char *why, size_t n)
{
    struct rd_mark_files f;
    int rv = rd_mark_open(data_dir, &f, why, n);
    if (rv == 0)
        rv = rd_mark_write(&f, m, why, n);
    rd_mark_close(&f);
    return rv;
}

int rd_mark_move(const char *data_dir, const char *to_dir, char *why, size_t n)
{
    for (int i = 1; i <= 2; i++) {
        char from[RD_CFG_STR + 16], to[600];
        struct stat st;
        snprintf(from, sizeof(from), "%s/" RD_MARK_FILE "%d", data_dir, i);
        snprintf(to, sizeof(to), "%s/" RD_MARK_FILE "%d", to_dir, i);
        if (stat(from, &st) == 0 && rd_move_aside(from, to, why, n) != 0)
            return RD_EIO;
    }
    return 0;
}

/* ---- the scan ---------------------------------------------------------------- */

/* One batch at `off`: its end, its entries' count and terms, or why not. */
struct batch {
    size_t end;
    uint64_t n;
    uint64_t max_term, last_term;
    bool header_ok;  /* the header's checksum held (entries' sizes are known) */
    const char *bad; /* NULL when the whole batch is good */
};

static void batch_parse(const uint8_t *b, size_t len, size_t off, struct batch *out)
{
    memset(out, 0, sizeof(*out));
    if (off + 16 > len) {
        out->bad = "the file ends inside a batch preamble";
        return;
    }
    uint32_t crc_header = le32(b + off), crc_data = le32(b + off + 4);
    uint64_t n = le64(b + off + 8);
    if (n == 0) {
        out->bad = "the entry count is zero";
        return;
    }
    if (n > MAX_SEGMENT / 32 || off + 16 + 16 * n > len) {
        out->bad = "the entry count is impossible";
        return;
    }
    const uint8_t *hdr = b + off + 8;
    size_t hdr_len = 8 + 16 * (size_t)n;
    if (crc32_raft(hdr, hdr_len, 0) != crc_header) {
        out->bad = "header checksum mismatch";
        return;
    }
    out->header_ok = true;
    out->n = n;
    size_t data_len = 0;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = hdr + 8 + 16 * i;
        uint64_t term = le64(e);
        if (term > out->max_term)
            out->max_term = term;
        out->last_term = term;
        if (e[8] < ENTRY_COMMAND || e[8] > ENTRY_CHANGE) {
            out->bad = "an entry of unknown type";
            return;
        }
        data_len += le32(e + 12);
    }
    size_t data = off + 8 + hdr_len;
    if (data_len > len || data + data_len > len) {
        out->bad = "the file ends inside the batch's data";
        return;
    }
    if (crc32_raft(b + data, data_len, 0) != crc_data) {
        out->bad = "data checksum mismatch";
        out->end = data + data_len;
        return;
    }
    out->end = data + data_len;
}

/* Counts the commands of a batch whose header held (its data may not have). */
static void batch_count(const uint8_t *b, size_t off, const struct batch *bt,
                        struct rd_cmd_count *c)
{
    const uint8_t *hdr = b + off + 8;
    size_t data = off + 16 + 16 * (size_t)bt->n;
    for (uint64_t i = 0; i < bt->n; i++) {
        const uint8_t *e = hdr + 8 + 16 * i;
        uint32_t size = le32(e + 12);
        const uint8_t *d = b + data;
        data += size;
        c->entries++;
        if (e[8] != ENTRY_COMMAND || size < RD_CMD_HEADER_SIZE || d[0] != RD_CMD_FORMAT) {
            c->other++;
            continue;
        }
        switch (d[1]) {
        case RD_CMD_NODE_REGISTER:
            c->nodes++;
            break;
        case RD_CMD_TASK_SUBMIT:
            c->tasks++;
            break;
        case RD_CMD_TASK_CHECKPOINT:
            c->checkpoints++;
            break;
        default:
            c->other++;
            break;
        }
        int64_t ms = (int64_t)le64(d + 4);
        if (ms > 0 && (c->first_ms == 0 || ms < c->first_ms))
            c->first_ms = ms;
        if (ms > c->last_ms)
            c->last_ms = ms;
    }
}

struct seg {
    char name[RD_SCAN_NAME];
    bool open;
    uint64_t first, end; /* closed: from the name */
    uint64_t counter;    /* open: open-N */
};

struct seg_scan {
    bool empty;         /* open: nothing written yet (or an empty file) */
    uint64_t n;         /* entries of the good batches before the first bad one */
    size_t good_end;    /* end of the last of them */
    uint64_t last_term; /* of the last good entry */
    uint64_t max_term;
    const char *bad; /* the first bad batch (NULL: none) */
    char badbuf[96];
    size_t bad_offset;
    uint64_t n_bad;           /* entries of the bad batch (when its header held) */
    bool valid_after;         /* a good batch after the bad one */
    uint64_t n_after;         /* entries in batches after the bad one (readable headers) */
    struct rd_cmd_count rest; /* commands of the bad batch (header good) and after it */
    struct rd_cmd_count all;  /* commands of the good batches before it */
};

static bool all_zero(const uint8_t *b, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++)
        if (b[i] != 0)
            return false;
    return true;
}

/*
 * After a bad batch: the next good batch, if any. Batches start at
 * multiples of 8; a candidate's count, entry types and both checksums must
 * hold. Returns its offset or 0.
 */
static size_t resync(const uint8_t *b, size_t len, size_t from)
{
    for (size_t off = (from + 8) & ~(size_t)7; off + 16 + 16 <= len; off += 8) {
        uint64_t n = le64(b + off + 8);
        if (n == 0 || n > (len - off) / 16)
            continue;
        const uint8_t *e = b + off + 16;
        if (e[8] < ENTRY_COMMAND || e[8] > ENTRY_CHANGE || e[9] || e[10] || e[11])
            continue;
        struct batch bt;
        batch_parse(b, len, off, &bt);
        if (bt.bad == NULL)
            return off;
    }
    return 0;
}

static void scan_segment(const char *dir, const struct seg *sg, struct seg_scan *out)
{
    memset(out, 0, sizeof(*out));
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, sg->name);
    uint8_t *b = NULL;
    size_t len = 0;
    int rv = read_file(path, &b, &len);
    if (rv != 0) {
        snprintf(out->badbuf, sizeof(out->badbuf), "cannot be read: %s", strerror(-rv));
        out->bad = out->badbuf;
        return;
    }
    if (len == 0 || (sg->open && len >= 8 && le64(b) == 0 && all_zero(b, 0, len))) {
        if (!sg->open)
            out->bad = "the file is empty";
        out->empty = true;
        free(b);
        return;
    }
    if (len < 8 || le64(b) != DISK_FORMAT) {
        snprintf(out->badbuf, sizeof(out->badbuf), "unexpected format version %llu",
                 len < 8 ? 0ULL : (unsigned long long)le64(b));
        out->bad = out->badbuf;
        free(b);
        return;
    }
    size_t off = 8;
    struct batch bt;
    while (off < len) {
        batch_parse(b, len, off, &bt);
        if (bt.bad != NULL)
            break;
        batch_count(b, off, &bt, &out->all);
        out->n += bt.n;
        out->last_term = bt.last_term;
        if (bt.max_term > out->max_term)
            out->max_term = bt.max_term;
        off = bt.end;
    }
    out->good_end = off;
    if (off >= len || (sg->open && all_zero(b, off, len))) {
        free(b); /* a closed segment ends exactly at its last batch, an open one in zeros */
        return;
    }
    snprintf(out->badbuf, sizeof(out->badbuf), "%s", bt.bad);
    out->bad = out->badbuf;
    out->bad_offset = off;
    size_t next = 0;
    if (bt.header_ok) {
        batch_count(b, off, &bt, &out->rest);
        out->n_bad = bt.n;
        if (bt.max_term > out->max_term)
            out->max_term = bt.max_term;
        next = bt.end > off ? bt.end : 0;
    }
    size_t at = next ? next : off;
    if (!bt.header_ok) {
        /* Its checksum failed, but its count and sizes may be intact: they
         * are believed when they end exactly where the next good batch starts. */
        size_t good = resync(b, len, off);
        uint64_t n = le64(b + off + 8);
        if (good > 0 && n > 0 && n <= (good - off) / 16) {
            size_t end = off + 16 + 16 * (size_t)n;
            for (uint64_t i = 0; i < n && end <= good; i++)
                end += le32(b + off + 16 + 16 * i + 12);
            if (end == good) {
                struct batch guess = {.n = n};
                batch_count(b, off, &guess, &out->rest);
                out->n_bad = n;
            }
        }
    }
    for (;;) {
        size_t good = 0;
        if (at < len) {
            struct batch nb;
            batch_parse(b, len, at, &nb);
            good = nb.bad == NULL ? at : resync(b, len, at);
        }
        if (good == 0)
            break;
        batch_parse(b, len, good, &bt);
        out->valid_after = true;
        batch_count(b, good, &bt, &out->rest);
        out->n_after += bt.n;
        if (bt.max_term > out->max_term)
            out->max_term = bt.max_term;
        at = bt.end;
    }
    free(b);
}

static void count_add(struct rd_cmd_count *to, const struct rd_cmd_count *c)
{
    to->entries += c->entries;
    to->nodes += c->nodes;
    to->tasks += c->tasks;
    to->checkpoints += c->checkpoints;
    to->other += c->other;
    if (c->first_ms && (to->first_ms == 0 || c->first_ms < to->first_ms))
        to->first_ms = c->first_ms;
    if (c->last_ms > to->last_ms)
        to->last_ms = c->last_ms;
}

static void scan_meta(const char *dir, int i, struct rd_scan *s)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/metadata%d", dir, i + 1);
    struct stat st;
    if (stat(path, &st) != 0) {
        s->meta[i].state = errno == ENOENT ? RD_META_ABSENT : RD_META_UNREADABLE;
        return;
    }
    s->meta[i].size = (long long)st.st_size;
    if (st.st_size < META_SIZE) {
        s->meta[i].state = RD_META_SHORT;
        return;
    }
    if (st.st_size > META_SIZE) {
        s->meta[i].state = RD_META_LONG;
        return;
    }
    uint8_t *b;
    size_t len;
    if (read_file(path, &b, &len) != 0 || len != META_SIZE) {
        if (len != META_SIZE)
            free(b);
        s->meta[i].state = RD_META_UNREADABLE;
        return;
    }
    s->meta[i].version = le64(b + 8);
    s->meta[i].term = le64(b + 16);
    s->meta[i].vote = le64(b + 24);
    s->meta[i].state = le64(b) != DISK_FORMAT    ? RD_META_BAD
                       : s->meta[i].version == 0 ? RD_META_ZERO
                                                 : RD_META_OK;
    free(b);
}

/* A snapshot's .meta: format, checksum of the configuration (uvSnapshotLoadMeta). */
static bool snapshot_meta_ok(const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    uint8_t *b;
    size_t len;
    if (read_file(path, &b, &len) != 0)
        return false;
    bool ok = false;
    if (len >= 32 && le64(b) == DISK_FORMAT) {
        uint64_t conf_len = le64(b + 24);
        if (conf_len > 0 && conf_len <= MAX_CONF && 32 + conf_len <= len) {
            uint32_t crc = crc32_raft(b + 16, 16, 0);
            crc = crc32_raft(b + 32, (size_t)conf_len, crc);
            ok = crc == (uint32_t)le64(b + 8);
        }
    }
    free(b);
    /* The data file must exist and hold something (libraft skips it otherwise). */
    if (ok) {
        size_t l = strlen(path);
        path[l - 5] = '\0'; /* strip ".meta" */
        struct stat st;
        ok = stat(path, &st) == 0 && st.st_size > 0;
    }
    return ok;
}

/* A snapshot's data (`meta_name` without ".meta"): the image our state
 * machine wrote, whole (rd_fsm_snapshot_check). */
static bool snapshot_data_ok(const char *dir, const char *meta_name, char *why, size_t n)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, meta_name);
    path[strlen(path) - 5] = '\0';
    uint8_t *b;
    size_t len;
    if (read_file(path, &b, &len) != 0) {
        say(why, n, "unreadable: %s", strerror(errno));
        return false;
    }
    int rv = rd_fsm_snapshot_check(b, len, why, n);
    free(b);
    return rv == 0;
}

struct snap {
    char name[RD_SCAN_NAME];
    uint64_t term, index, ts;
};

static int snap_cmp(const void *a, const void *b)
{
    const struct snap *x = a, *y = b;
    if (x->term != y->term)
        return x->term < y->term ? -1 : 1;
    if (x->index != y->index)
        return x->index < y->index ? -1 : 1;
    return x->ts < y->ts ? -1 : x->ts > y->ts;
}

static int seg_cmp(const void *a, const void *b)
{
    const struct seg *x = a, *y = b;
    if (x->open != y->open)
        return x->open ? 1 : -1;
    if (x->open)
        return x->counter < y->counter ? -1 : x->counter > y->counter;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* The first damage above the snapshot: the loadable log ends before it. */
static void first_damage(struct rd_scan *s, const char *file, long long offset, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));
static void first_damage(struct rd_scan *s, const char *file, long long offset, const char *fmt,
                         ...)
{
    s->damaged = true;
    snprintf(s->file, sizeof(s->file), "%s", file);
    s->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->what, sizeof(s->what), fmt, ap);
    va_end(ap);
}

int rd_scan(const char *raft_dir, struct rd_scan *s, char *why, size_t n)
{
    memset(s, 0, sizeof(*s));
    crc_init();
    for (int i = 0; i < 2; i++)
        scan_meta(raft_dir, i, s);
    if (s->meta[0].state == RD_META_OK && s->meta[1].state == RD_META_OK &&
        s->meta[0].version == s->meta[1].version)
        s->meta_tie = true;
    for (int i = 0; i < 2; i++) {
        if (s->meta[i].state == RD_META_OK && s->meta[i].version > s->meta_version) {
            s->meta_version = s->meta[i].version;
            s->term = s->meta[i].term;
            s->vote = s->meta[i].vote;
        }
    }

    DIR *d = opendir(raft_dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        say(why, n, "cannot read %s: %s", raft_dir, strerror(errno));
        return RD_EIO;
    }
    size_t cap_seg = 16, cap_snap = 4, n_seg = 0, n_snap = 0;
    struct seg *segs = malloc(cap_seg * sizeof(*segs));
    struct snap *snaps = malloc(cap_snap * sizeof(*snaps));
    if (segs == NULL || snaps == NULL) {
        free(segs);
        free(snaps);
        closedir(d);
        say(why, n, "out of memory");
        return RD_ENOMEM;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        size_t l = strlen(nm);
        if (l >= RD_SCAN_NAME)
            continue;
        unsigned long long a, b, c;
        int used = 0;
        if (strncmp(nm, "corrupt-", 8) == 0) {
            s->n_corrupt++;
            if (strcmp(nm, s->corrupt) > 0)
                snprintf(s->corrupt, sizeof(s->corrupt), "%s", nm);
            continue;
        }
        struct seg sg = {0};
        bool is_seg = false;
        if (sscanf(nm, "%16llu-%16llu%n", &a, &b, &used) == 2 && (size_t)used == l && l == 33) {
            sg.first = a;
            sg.end = b;
            is_seg = a >= 1 && a <= b;
        } else if (sscanf(nm, "open-%llu%n", &a, &used) == 1 && (size_t)used == l) {
            sg.open = true;
            sg.counter = a;
            is_seg = true;
        } else if (sscanf(nm, "snapshot-%llu-%llu-%llu.meta%n", &a, &b, &c, &used) == 3 &&
                   (size_t)used == l) {
            if (n_snap == cap_snap) {
                struct snap *m = realloc(snaps, 2 * cap_snap * sizeof(*snaps));
                if (m == NULL)
                    continue;
                snaps = m;
                cap_snap *= 2;
            }
            snprintf(snaps[n_snap].name, RD_SCAN_NAME, "%s", nm);
            snaps[n_snap].term = a;
            snaps[n_snap].index = b;
            snaps[n_snap].ts = c;
            n_snap++;
            continue;
        }
        if (!is_seg)
            continue;
        if (n_seg == cap_seg) {
            struct seg *m = realloc(segs, 2 * cap_seg * sizeof(*segs));
            if (m == NULL)
                continue;
            segs = m;
            cap_seg *= 2;
        }
        snprintf(sg.name, sizeof(sg.name), "%s", nm);
        segs[n_seg++] = sg;
    }
    closedir(d);
    if (n_seg > 1)
        qsort(segs, n_seg, sizeof(*segs), seg_cmp);
    if (n_snap > 1)
        qsort(snaps, n_snap, sizeof(*snaps), snap_cmp);

    /* The newest snapshot whose .meta holds (libraft skips the others). */
    for (size_t i = n_snap; i-- > 0;) {
        if (snaps[i].term > s->max_term)
            s->max_term = snaps[i].term;
        if (s->snap_index != 0)
            continue;
        if (snapshot_meta_ok(raft_dir, snaps[i].name)) {
            char what[160];
            if (!snapshot_data_ok(raft_dir, snaps[i].name, what, sizeof(what))) {
                if (s->n_snap_damaged == 0) {
                    s->snap_damaged_index = snaps[i].index;
                    snprintf(s->snap_damaged_what, sizeof(s->snap_damaged_what), "%s", what);
                }
                if (s->n_snap_damaged < 4) {
                    char *bad = s->snap_damaged[s->n_snap_damaged++];
                    snprintf(bad, RD_SCAN_NAME, "%s", snaps[i].name);
                    bad[strlen(bad) - 5] = '\0';
                }
                continue;
            }
            s->n_snapshots++;
            s->snap_index = snaps[i].index;
            s->snap_term = snaps[i].term;
        } else if (s->snap_bad[0] == '\0') {
            snprintf(s->snap_bad, sizeof(s->snap_bad), "%s", snaps[i].name);
        }
    }
    s->any_data = n_snap > 0 || n_seg > 0;
    s->last_index = s->snap_index;
    s->last_term = s->snap_term;
    s->disk_last = s->snap_index;
    if (s->snap_damaged_index > s->disk_last)
        s->disk_last = s->snap_damaged_index;

    /* The chain of entries from the snapshot on, as libraft loads it. */
    /* disk_next numbers what the files hold, whether it chains or not. */
    uint64_t next = s->snap_index + 1, disk_next = next, closed_end = 0;
    bool broken = false, opened = false;
    for (size_t i = 0; i < n_seg; i++) {
        struct seg *sg = &segs[i];
        struct seg_scan sc;
        sg->open ? s->n_open++ : s->n_closed++;
        scan_segment(raft_dir, sg, &sc);
        if (sc.max_term > s->max_term)
            s->max_term = sc.max_term;
        if (!sg->open) {
            if (sg->end > s->disk_last)
                s->disk_last = sg->end;
            if (sg->end + 1 > disk_next)
                disk_next = sg->end + 1;
            if (sg->end > closed_end)
                closed_end = sg->end;
            if (sg->end <= s->snap_index) {
                /* Covered by the snapshot: libraft still reads it (the trailing log). */
                if (sc.bad != NULL) {
                    s->n_stale_bad++;
                    if (sg->end >= s->stale_end) {
                        s->stale_end = sg->end;
                        snprintf(s->stale_bad, sizeof(s->stale_bad), "%s", sg->name);
                    }
                }
                continue;
            }
            if (broken) {
                count_add(&s->lost, &sc.all);
                count_add(&s->lost, &sc.rest);
                continue;
            }
            if (sg->first > next && s->unfinalized[0] == '\0') {
                /* The missing entries may sit in an open segment libraft
                 * failed to close: one whose good entries are exactly them. */
                for (size_t k = i + 1; k < n_seg; k++) {
                    struct seg_scan oc;
                    if (!segs[k].open)
                        continue;
                    scan_segment(raft_dir, &segs[k], &oc);
                    if (oc.empty || oc.n == 0)
                        continue; /* prepared, never written */
                    if (oc.bad == NULL && oc.n == sg->first - next) {
                        snprintf(s->unfinalized, sizeof(s->unfinalized), "%s", segs[k].name);
                        s->unfinalized_first = next;
                        s->unfinalized_last = sg->first - 1;
                        s->unfinalized_end = (long long)oc.good_end;
                        segs[k].counter = 0; /* consumed: skipped below */
                        next = sg->first;
                        break;
                    }
                    break; /* only the oldest written open segment can be it */
                }
            }
            if (sg->first > next) {
                first_damage(s, "", 0, "no segment holds entries %llu-%llu",
                             (unsigned long long)next, (unsigned long long)sg->first - 1);
                s->gap = true;
                snprintf(s->cut_file, sizeof(s->cut_file), "%s", sg->name);
                s->cut_offset = 0;
                s->cut_first = sg->first;
                count_add(&s->lost, &sc.all);
                count_add(&s->lost, &sc.rest);
                broken = true;
                continue;
            }
            if (sc.bad == NULL && sc.n != sg->end - sg->first + 1)
                snprintf(sc.badbuf, sizeof(sc.badbuf), "it holds %llu entries, its name says %llu",
                         (unsigned long long)sc.n, (unsigned long long)(sg->end - sg->first + 1)),
                    sc.bad = sc.badbuf, sc.bad_offset = sc.good_end;
            if (sc.bad != NULL) {
                uint64_t good_last = sg->first + sc.n - 1; /* sc.n may be 0 */
                first_damage(s, sg->name, (long long)sc.bad_offset, "%s", sc.bad);
                if (sc.n > 0 && good_last > s->last_index) {
                    s->last_index = good_last;
                    s->last_term = sc.last_term;
                }
                snprintf(s->cut_file, sizeof(s->cut_file), "%s", sg->name);
                s->cut_offset = (long long)sc.good_end;
                s->cut_first = sg->first;
                count_add(&s->lost, &sc.rest);
                broken = true;
                continue;
            }
            s->last_index = sg->end;
            s->last_term = sc.last_term;
            next = sg->end + 1;
            continue;
        }
        if (sg->counter == 0 && s->unfinalized[0] && strcmp(sg->name, s->unfinalized) == 0)
            continue; /* its entries filled a gap between closed segments */
        /*
         * Open segments: their entries follow in order, numbered on from the
         * last closed segment (libraft keeps the closed ones when open ones
         * exist, even behind the snapshot), else from the snapshot.
         */
        if (!opened) {
            opened = true;
            if (closed_end > 0 && !broken)
                next = closed_end + 1;
            if (closed_end > 0)
                disk_next = closed_end + 1;
        }
        uint64_t held = sc.n + sc.n_bad + sc.n_after;
        disk_next += held;
        if (disk_next - 1 > s->disk_last)
            s->disk_last = disk_next - 1;
        if (sc.empty)
            continue;
        if (broken || s->torn) {
            if (s->torn && (sc.n > 0 || sc.valid_after) && !s->damaged) {
                /* Data after a torn write: it was not the last write. */
                first_damage(s, s->torn_file, s->torn_offset,
                             "a batch fails its checksum and later segments hold entries");
                s->torn = false;
            }
            count_add(&s->lost, &sc.all);
            count_add(&s->lost, &sc.rest);
            broken = true;
            continue;
        }
        if (sc.n > 0 && next + sc.n - 1 > s->last_index) {
            s->last_index = next + sc.n - 1;
            s->last_term = sc.last_term;
        }
        if (sc.bad == NULL) {
            next += sc.n;
            continue;
        }
        snprintf(s->cut_file, sizeof(s->cut_file), "%s", sg->name);
        s->cut_offset = (long long)sc.good_end;
        s->cut_first = next;
        count_add(&s->lost, &sc.rest);
        if (sc.valid_after) {
            first_damage(s, sg->name, (long long)sc.bad_offset,
                         "%s, with %llu good entries after it", sc.bad,
                         (unsigned long long)sc.n_after);
            broken = true;
        } else {
            s->torn = true;
            snprintf(s->torn_file, sizeof(s->torn_file), "%s", sg->name);
            s->torn_offset = (long long)sc.bad_offset;
        }
        next += sc.n;
    }
    free(segs);
    free(snaps);
    return 0;
}

/* ---- the verdict ------------------------------------------------------------- */

static const char *meta_state_text(enum rd_meta_state st)
{
    switch (st) {
    case RD_META_SHORT:
        return "shorter than 32 bytes (libraft would delete it and forget the term and vote it "
               "holds)";
    case RD_META_BAD:
        return "not in libraft's format (zeroed or overwritten)";
    case RD_META_ZERO:
        return "at version 0 (zeroed)";
    case RD_META_LONG:
        return "longer than 32 bytes";
    case RD_META_UNREADABLE:
        return "unreadable";
    default:
        return "fine";
    }
}

static void summarize_lost(const struct rd_scan *s, struct rd_damage_verdict *v)
{
    const struct rd_cmd_count *c = &s->lost;
    uint64_t n = v->lost_last >= v->lost_first ? v->lost_last - v->lost_first + 1 : 0;
    if (n == 0) {
        snprintf(v->lost_summary, sizeof(v->lost_summary), "no entry");
        return;
    }
    snprintf(v->lost_summary, sizeof(v->lost_summary), "entries %llu-%llu (%llu entr%s",
             (unsigned long long)v->lost_first, (unsigned long long)v->lost_last,
             (unsigned long long)n, n == 1 ? "y" : "ies");
    if (c->entries > 0) {
        append(v->lost_summary, sizeof(v->lost_summary),
               "; still readable on disk: %llu agent registrations, %llu task submissions, %llu "
               "checkpoint writes, %llu other commands",
               (unsigned long long)c->nodes, (unsigned long long)c->tasks,
               (unsigned long long)c->checkpoints, (unsigned long long)c->other);
        if (c->first_ms > 0) {
            char a[RD_TIME_STRLEN], b[RD_TIME_STRLEN];
            rd_time_format(c->first_ms, a);
            rd_time_format(c->last_ms, b);
            append(v->lost_summary, sizeof(v->lost_summary), ", written %s to %s", a, b);
        }
    }
    append(v->lost_summary, sizeof(v->lost_summary), ")");
}

void rd_judge(const struct rd_scan *s, const struct rd_mark *mark, struct rd_damage_verdict *v)
{
    memset(v, 0, sizeof(*v));
    char *rep = v->report;
    size_t cap = sizeof(v->report);
    char when[RD_TIME_STRLEN] = "";
    if (mark != NULL)
        rd_time_format(mark->written_ms, when);

    /* The term and the vote. */
    for (int i = 0; i < 2; i++) {
        if (s->meta[i].state == RD_META_ABSENT || s->meta[i].state == RD_META_OK)
            continue;
        v->meta_lost = true;
        if (v->file[0] == '\0')
            snprintf(v->file, sizeof(v->file), "raft/metadata%d", i + 1);
        append(rep, cap, "raft/metadata%d is %s. ", i + 1, meta_state_text(s->meta[i].state));
    }
    if (s->meta_tie) {
        v->meta_lost = true;
        snprintf(v->file, sizeof(v->file), "raft/metadata1");
        append(rep, cap, "raft/metadata1 and raft/metadata2 are both at version %llu. ",
               (unsigned long long)s->meta[0].version);
    }
    uint64_t known_term = s->max_term;
    if (mark != NULL && mark->term > known_term)
        known_term = mark->term;
    if (s->meta_version == 0 && (s->any_data || (mark != NULL && mark->term > 0)) &&
        !v->meta_lost) {
        v->meta_lost = true;
        snprintf(v->file, sizeof(v->file), "raft/metadata1");
        append(rep, cap,
               "raft/metadata1 and raft/metadata2 are missing while the log holds entries up to "
               "term %llu: the term and the vote this replica cast are lost. ",
               (unsigned long long)known_term);
    } else if (s->meta_version > 0 && !v->meta_lost) {
        /* The newer file is the other parity: version+1 goes to metadata1 when odd. */
        int lost_file = (s->meta_version + 1) % 2 == 1 ? 1 : 2;
        if (s->term < s->max_term) {
            v->meta_lost = true;
            snprintf(v->file, sizeof(v->file), "raft/metadata%d", lost_file);
            append(rep, cap,
                   "the newest metadata (version %llu) holds term %llu, but the log holds "
                   "entries of term %llu: a newer raft/metadata%d with the term and vote is "
                   "lost. ",
                   (unsigned long long)s->meta_version, (unsigned long long)s->term,
                   (unsigned long long)s->max_term, lost_file);
        } else if (mark != NULL &&
                   (s->term < mark->term ||
                    (s->term == mark->term && mark->vote != 0 && s->vote != mark->vote))) {
            v->meta_lost = true;
            snprintf(v->file, sizeof(v->file), "raft/metadata%d", lost_file);
            append(rep, cap,
                   "the newest metadata (version %llu) holds term %llu and vote %llu, but this "
                   "replica was at term %llu with vote %llu (acknowledged mark of %s): a newer "
                   "raft/metadata%d is lost. ",
                   (unsigned long long)s->meta_version, (unsigned long long)s->term,
                   (unsigned long long)s->vote, (unsigned long long)mark->term,
                   (unsigned long long)mark->vote, when, lost_file);
        }
    }

    /* The log. */
    uint64_t acked = mark != NULL ? mark->applied : 0;
    uint64_t torn_index = s->torn ? s->last_index + 1 : 0;
    if (s->n_snap_damaged > 0) {
        v->log_lost = true;
        snprintf(v->file, sizeof(v->file), "raft/%s", s->snap_damaged[0]);
        append(rep, cap,
               "raft/%s: the snapshot is damaged (%s); it holds the state up to entry %llu. ",
               s->snap_damaged[0], s->snap_damaged_what, (unsigned long long)s->snap_damaged_index);
    }
    if (s->damaged) {
        v->log_lost = true;
        if (s->file[0] && s->n_snap_damaged == 0)
            snprintf(v->file, sizeof(v->file), "raft/%s", s->file);
        else if (v->file[0] == '\0')
            snprintf(v->file, sizeof(v->file), "raft");
        if (s->file[0])
            append(rep, cap, "raft/%s: the batch at byte %lld is damaged (%s). ", s->file,
                   s->offset, s->what);
        else
            append(rep, cap, "%s. ", s->what);
    } else if (s->torn && mark != NULL && (mark->clean || acked >= torn_index)) {
        v->log_lost = true;
        snprintf(v->file, sizeof(v->file), "raft/%s", s->torn_file);
        append(rep, cap,
               "raft/%s: the batch at byte %lld (from entry %llu) fails its checksum; it is "
               "not a torn write: %s. ",
               s->torn_file, s->torn_offset, (unsigned long long)torn_index,
               mark->clean ? "the last stop was clean"
                           : "this replica acknowledged entries up to it");
    } else if (s->torn) {
        v->torn = true;
    }
    if (!v->log_lost && mark != NULL && s->last_index < acked) {
        v->log_lost = true;
        if (v->file[0] == '\0')
            snprintf(v->file, sizeof(v->file), "raft");
        append(rep, cap,
               "the log ends at entry %llu, but this replica acknowledged entries up to %llu "
               "(acknowledged mark of %s): no file holds entries %llu-%llu. ",
               (unsigned long long)s->last_index, (unsigned long long)acked, when,
               (unsigned long long)s->last_index + 1, (unsigned long long)acked);
    }
    if (!v->log_lost && mark != NULL && mark->clean && s->last_index < mark->stored) {
        v->log_lost = true;
        if (v->file[0] == '\0')
            snprintf(v->file, sizeof(v->file), "raft");
        append(rep, cap,
               "the log ends at entry %llu, but it reached %llu when this replica last stopped "
               "cleanly (%s). ",
               (unsigned long long)s->last_index, (unsigned long long)mark->stored, when);
    }
    if (v->log_lost) {
        v->lost_first = s->last_index + 1;
        v->lost_last = s->disk_last;
        if (acked > v->lost_last)
            v->lost_last = acked;
        if (mark != NULL && mark->clean && mark->stored > v->lost_last)
            v->lost_last = mark->stored;
        summarize_lost(s, v);
        if (v->lost_last < v->lost_first)
            append(rep, cap,
                   "libraft would refuse to load it; every entry up to %llu is still readable, "
                   "no entry would be lost",
                   (unsigned long long)s->last_index);
        else
            append(rep, cap, "libraft would load entries up to %llu only: %s would be lost",
                   (unsigned long long)s->last_index, v->lost_summary);
        if (mark != NULL && acked >= v->lost_first)
            append(rep, cap, ", of which %llu-%llu were acknowledged to clients",
                   (unsigned long long)v->lost_first, (unsigned long long)acked);
        append(rep, cap, ". ");
    }
    if (v->meta_lost && !v->log_lost && s->last_index > 0)
        append(rep, cap, "No entry is lost (the log holds entries up to %llu). ",
               (unsigned long long)s->last_index);
    v->stale = s->n_stale_bad > 0;
    v->unfinalized = s->unfinalized[0] != '\0';
    v->damaged = v->log_lost || v->meta_lost;
    /* One line: no trailing blank. */
    size_t l = strlen(rep);
    while (l > 0 && rep[l - 1] == ' ')
        rep[--l] = '\0';
}

/* ---- acting on it ------------------------------------------------------------ */

int rd_damage_dir(const char *data_dir, char *out, size_t cap, char *why, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    for (int k = 1; k < 100; k++) {
        if (k == 1)
            snprintf(out, cap, "%s/damaged-%s", data_dir, stamp);
        else
            snprintf(out, cap, "%s/damaged-%s-%d", data_dir, stamp, k);
        if (mkdir(out, 0755) == 0)
            return 0;
        if (errno != EEXIST) {
            say(why, n, "cannot create %s: %s", out, strerror(errno));
            return RD_EIO;
        }
    }
    say(why, n, "cannot create a damaged-%s directory in %s", stamp, data_dir);
    return RD_EIO;
}

int rd_move_aside(const char *from, const char *to, char *why, size_t n)
{
    if (rename(from, to) != 0) {
        say(why, n, "cannot move %s to %s: %s", from, to, strerror(errno));
        return RD_EIO;
    }
    char a[600], b[600];
    parent_of(from, a, sizeof(a));
    parent_of(to, b, sizeof(b));
    if (fsync_dir(a) != 0 || (strcmp(a, b) != 0 && fsync_dir(b) != 0)) {
        say(why, n, "cannot sync %s: %s", a, strerror(errno));
        return RD_EIO;
    }
    return 0;
}

static int copy_file(const char *from, const char *to, char *why, size_t n)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        say(why, n, "cannot open %s: %s", from, strerror(errno));
        return RD_EIO;
    }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        say(why, n, "cannot create %s: %s", to, strerror(errno));
        close(in);
        return RD_EIO;
    }
    char buf[65536];
    int rv = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || (r > 0 && write_all(out, buf, (size_t)r) != 0)) {
            say(why, n, "cannot copy %s to %s: %s", from, to, strerror(errno));
            rv = RD_EIO;
            break;
        }
        if (r == 0)
            break;
    }
    if (rv == 0 && fsync(out) != 0) {
        say(why, n, "cannot sync %s: %s", to, strerror(errno));
        rv = RD_EIO;
    }
    close(in);
    close(out);
    return rv;
}

/* Copies every regular file of `dir` into `aside` (created). */
static int copy_dir(const char *dir, const char *aside, char *why, size_t n)
{
    if (mkdir(aside, 0755) != 0 && errno != EEXIST) {
        say(why, n, "cannot create %s: %s", aside, strerror(errno));
        return RD_EIO;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        say(why, n, "cannot read %s: %s", dir, strerror(errno));
        return RD_EIO;
    }
    int rv = 0;
    struct dirent *e;
    while (rv == 0 && (e = readdir(d)) != NULL) {
        char from[600], to[600];
        snprintf(from, sizeof(from), "%s/%s", dir, e->d_name);
        snprintf(to, sizeof(to), "%s/%s", aside, e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || lstat(from, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        rv = copy_file(from, to, why, n);
    }
    closedir(d);
    if (rv == 0 && fsync_dir(aside) != 0) {
        say(why, n, "cannot sync %s: %s", aside, strerror(errno));
        rv = RD_EIO;
    }
    return rv;
}

static int remove_in(const char *dir, const char *name, char *why, size_t n)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (unlink(path) != 0 && errno != ENOENT) {
        say(why, n, "cannot remove %s: %s", path, strerror(errno));
        return RD_EIO;
    }
    return 0;
}

/* Segments of `dir`: closed ones with their range, open ones. */
static int list_segments(const char *dir, struct seg **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        size_t l = strlen(nm);
        unsigned long long a, b;
        int used = 0;
        struct seg sg = {0};
        if (l >= RD_SCAN_NAME)
            continue;
        if (sscanf(nm, "%16llu-%16llu%n", &a, &b, &used) == 2 && (size_t)used == l && l == 33) {
            sg.first = a;
            sg.end = b;
        } else if (sscanf(nm, "open-%llu%n", &a, &used) == 1 && (size_t)used == l) {
            sg.open = true;
            sg.counter = a;
        } else {
            continue;
        }
        if (*count == cap) {
            cap = cap ? 2 * cap : 16;
            struct seg *m = realloc(*out, cap * sizeof(**out));
            if (m == NULL) {
                closedir(d);
                return -1;
            }
            *out = m;
        }
        snprintf(sg.name, sizeof(sg.name), "%s", nm);
        (*out)[(*count)++] = sg;
    }
    closedir(d);
    if (*count > 1) /* qsort's array must not be NULL, even for 0 */
        qsort(*out, *count, sizeof(**out), seg_cmp);
    return 0;
}

/*
 * Closes the open segment `name` as libraft would have: truncated after its
 * last good batch (`good_end`), fsynced, renamed first-last. The caller
 * fsyncs the directory. 0 or RD_EIO with `why`.
 */
static int close_segment(const char *raft_dir, const char *name, uint64_t first, uint64_t last,
                         uint64_t good_end, char *why, size_t n)
{
    char path[600], closed[600];
    snprintf(path, sizeof(path), "%s/%s", raft_dir, name);
    snprintf(closed, sizeof(closed), "%s/%016llu-%016llu", raft_dir, (unsigned long long)first,
             (unsigned long long)last);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)good_end) != 0 || fsync(fd) != 0 ||
        rename(path, closed) != 0) {
        say(why, n, "cannot close %s as %s: %s", path, closed, strerror(errno));
        if (fd >= 0)
            close(fd);
        return RD_EIO;
    }
    close(fd);
    return 0;
}

/*
 * libraft numbers the entries of open segments on from the last closed
 * segment: before that one goes, each open segment with entries becomes the
 * closed segment it would have become at load (truncated after its last
 * good batch, renamed first-last), so nothing is renumbered.
 */
static int finalize_open(const char *raft_dir, const struct seg *segs, size_t count, uint64_t first,
                         char *why, size_t n)
{
    for (size_t i = 0; i < count; i++) {
        if (!segs[i].open)
            continue;
        struct seg_scan sc;
        scan_segment(raft_dir, &segs[i], &sc);
        if (sc.empty || sc.n == 0)
            continue;
        if (close_segment(raft_dir, segs[i].name, first, first + sc.n - 1, sc.good_end, why, n) !=
            0)
            return RD_EIO;
        first += sc.n;
        if (sc.bad != NULL)
            break; /* a torn final write: what follows it is not loaded either */
    }
    return fsync_dir(raft_dir) == 0 ? 0 : RD_EIO;
}

int rd_repair_torn_header(const char *raft_dir, const char *aside, const struct rd_scan *s,
                          char *why, size_t n)
{
    if (!s->torn || s->torn_offset != 0)
        return 0;
    if (mkdir(aside, 0755) != 0 && errno != EEXIST) {
        say(why, n, "cannot create %s: %s", aside, strerror(errno));
        return RD_EIO;
    }
    char from[600], to[600];
    snprintf(from, sizeof(from), "%s/%s", raft_dir, s->torn_file);
    snprintf(to, sizeof(to), "%s/%s", aside, s->torn_file);
    return rd_move_aside(from, to, why, n);
}

int rd_repair_unfinalized(const char *raft_dir, const struct rd_scan *s, char *why, size_t n)
{
    if (s->unfinalized[0] == '\0')
        return 0;
    if (close_segment(raft_dir, s->unfinalized, s->unfinalized_first, s->unfinalized_last,
                      s->unfinalized_end, why, n) != 0)
        return RD_EIO;
    return fsync_dir(raft_dir) == 0 ? 0 : RD_EIO;
}

/*
 * libraft closes a full open segment in its thread pool (truncate, rename);
 * when that fails (open(2) with no descriptor left: EMFILE) it only sets an
 * internal flag, keeps the entries in memory and writes the next ones to
 * the next open segment, which is later closed under their real numbers.
 * The directory then holds closed segments with a gap and, in open-N, the
 * entries of that gap; libraft refuses it at the next start ("unexpected
 * closed segment ...: first index should have been ..."). Closing those
 * open segments the way libraft would have is exactly what was missed.
 */
int rd_close_stranded(const char *raft_dir, int *n_closed_out, char *done, size_t cap, char *why,
                      size_t n)
{
    *n_closed_out = 0;
    crc_init();
    struct seg *segs;
    size_t count;
    if (done != NULL && cap > 0)
        done[0] = '\0';
    if (list_segments(raft_dir, &segs, &count) != 0) {
        if (errno == ENOENT)
            return 0;
        say(why, n, "cannot read %s: %s", raft_dir, strerror(errno));
        return RD_EIO;
    }
    size_t n_closed = 0;
    while (n_closed < count && !segs[n_closed].open)
        n_closed++;
    size_t next_open = n_closed; /* the oldest open segment not used yet */
    int closed = 0, rv = 0;
    for (size_t i = 1; i < n_closed && next_open < count && rv == 0; i++) {
        const struct seg *prev = &segs[i - 1], *cur = &segs[i];
        if (cur->first <= prev->end + 1)
            continue;
        uint64_t want = cur->first - prev->end - 1;
        struct seg_scan before, after, sc;
        scan_segment(raft_dir, prev, &before);
        scan_segment(raft_dir, cur, &after);
        if (before.bad != NULL || after.bad != NULL)
            break;
        /* The oldest open segments, all of them intact, must hold exactly
         * the missing entries, in term and time between their neighbours. */
        uint64_t got = 0, last_term = before.last_term;
        int64_t last_ms = before.all.last_ms;
        size_t j = next_open;
        bool fits = true;
        for (; j < count && got < want; j++) {
            scan_segment(raft_dir, &segs[j], &sc);
            if (sc.empty || sc.n == 0 || sc.bad != NULL || sc.max_term < last_term ||
                (last_ms && sc.all.first_ms && sc.all.first_ms < last_ms)) {
                fits = false;
                break;
            }
            got += sc.n;
            last_term = sc.last_term;
            if (sc.all.last_ms)
                last_ms = sc.all.last_ms;
        }
        if (!fits || got != want || last_term > after.max_term ||
            (last_ms && after.all.first_ms && after.all.first_ms < last_ms))
            break;
        rv = finalize_open(raft_dir, segs + next_open, j - next_open, prev->end + 1, why, n);
        if (rv == 0 && done != NULL) {
            for (size_t k = next_open; k < j; k++)
                append(done, cap, "%s%s", done[0] ? " " : "", segs[k].name);
            append(done, cap, " as entries %llu-%llu", (unsigned long long)prev->end + 1,
                   (unsigned long long)cur->first - 1);
        }
        closed += (int)(j - next_open);
        next_open = j;
    }
    free(segs);
    *n_closed_out = closed;
    return rv;
}

int rd_repair_stale(const char *raft_dir, const char *aside, const struct rd_scan *s, char *why,
                    size_t n)
{
    if (s->n_stale_bad == 0)
        return 0;
    if (mkdir(aside, 0755) != 0 && errno != EEXIST) {
        say(why, n, "cannot create %s: %s", aside, strerror(errno));
        return RD_EIO;
    }
    struct seg *segs;
    size_t count;
    if (list_segments(raft_dir, &segs, &count) != 0) {
        say(why, n, "cannot read %s: %s", raft_dir, strerror(errno));
        return RD_EIO;
    }
    int rv = 0;
    uint64_t closed_end = 0;
    for (size_t i = 0; i < count; i++)
        if (!segs[i].open && segs[i].end > closed_end)
            closed_end = segs[i].end;
    if (closed_end <= s->stale_end)
        rv = finalize_open(raft_dir, segs, count, closed_end + 1, why, n);
    for (size_t i = 0; i < count && rv == 0; i++) {
        if (segs[i].open || segs[i].end > s->stale_end)
            continue;
        char from[600], to[600];
        snprintf(from, sizeof(from), "%s/%s", raft_dir, segs[i].name);
        snprintf(to, sizeof(to), "%s/%s", aside, segs[i].name);
        rv = rd_move_aside(from, to, why, n);
    }
    free(segs);
    return rv;
}

/* A metadata file as libraft writes it. */
static int write_meta(const char *dir, int file, uint64_t version, uint64_t term, uint64_t vote,
                      char *why, size_t n)
{
    uint8_t b[META_SIZE];
    uint64_t f[4] = {DISK_FORMAT, version, term, vote};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++)
            b[8 * i + k] = (uint8_t)(f[i] >> (8 * k));
    char path[600];
    snprintf(path, sizeof(path), "%s/metadata%d", dir, file);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, b, sizeof(b)) != 0 || fsync(fd) != 0) {
        say(why, n, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return RD_EIO;
    }
    close(fd);
    return 0;
}

int rd_repair(const char *raft_dir, const char *aside, const struct rd_scan *s,
              const struct rd_mark *mark, char *why, size_t n)
{
    int rv = copy_dir(raft_dir, aside, why, n);
    /* Damaged snapshots go: libraft then loads the older one (or none). */
    for (unsigned i = 0; i < s->n_snap_damaged && rv == 0; i++) {
        char meta[RD_SCAN_NAME + 8];
        snprintf(meta, sizeof(meta), "%s.meta", s->snap_damaged[i]);
        rv = remove_in(raft_dir, meta, why, n);
        if (rv == 0)
            rv = remove_in(raft_dir, s->snap_damaged[i], why, n);
    }
    if (rv == 0)
        rv = rd_repair_unfinalized(raft_dir, s, why, n);
    if (rv != 0)
        return rv;
    struct seg *segs;
    size_t count;
    if (list_segments(raft_dir, &segs, &count) != 0) {
        say(why, n, "cannot read %s: %s", raft_dir, strerror(errno));
        return RD_EIO;
    }
    /* Damage the snapshot covers: the segment and every older closed one go
     * (open segments closed first when the last closed one goes with them). */
    uint64_t closed_end = 0;
    for (size_t i = 0; i < count; i++)
        if (!segs[i].open && segs[i].end > closed_end)
            closed_end = segs[i].end;
    if (s->n_stale_bad > 0 && closed_end <= s->stale_end && !s->cut_file[0])
        rv = finalize_open(raft_dir, segs, count, closed_end + 1, why, n);
    for (size_t i = 0; i < count && rv == 0 && s->n_stale_bad > 0; i++)
        if (!segs[i].open && segs[i].end <= s->stale_end)
            rv = remove_in(raft_dir, segs[i].name, why, n);
    /* The cut: keep what is good of the segment holding it, drop what follows. */
    if (rv == 0 && s->cut_file[0]) {
        bool after = false;
        for (size_t i = 0; i < count && rv == 0; i++) {
            struct seg *sg = &segs[i];
            if (!after && strcmp(sg->name, s->cut_file) != 0)
                continue;
            if (after) {
                rv = remove_in(raft_dir, sg->name, why, n);
                continue;
            }
            after = true;
            char path[600], closed[600];
            snprintf(path, sizeof(path), "%s/%s", raft_dir, sg->name);
            if (s->cut_offset <= 8 || s->last_index < s->cut_first) {
                rv = remove_in(raft_dir, sg->name, why, n);
                continue;
            }
            snprintf(closed, sizeof(closed), "%s/%016llu-%016llu", raft_dir,
                     (unsigned long long)s->cut_first, (unsigned long long)s->last_index);
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || ftruncate(fd, (off_t)s->cut_offset) != 0 || fsync(fd) != 0 ||
                (strcmp(path, closed) != 0 && rename(path, closed) != 0)) {
                say(why, n, "cannot cut %s at byte %lld: %s", path, s->cut_offset, strerror(errno));
                rv = RD_EIO;
            }
            if (fd >= 0)
                close(fd);
        }
    }
    free(segs);
    if (rv != 0)
        return rv;
    /* Damaged metadata: a new one, one term past anything known, with no vote
     * (a vote of the lost term can never be cast twice). */
    bool meta_bad = s->meta_tie || (s->meta_version == 0 && s->any_data) || s->term < s->max_term ||
                    (mark != NULL && s->term < mark->term);
    for (int i = 0; i < 2; i++)
        meta_bad |= s->meta[i].state != RD_META_ABSENT && s->meta[i].state != RD_META_OK;
    if (meta_bad) {
        uint64_t term = s->term > s->max_term ? s->term : s->max_term;
        if (mark != NULL && mark->term > term)
            term = mark->term;
        uint64_t version =
            s->meta[0].version > s->meta[1].version ? s->meta[0].version : s->meta[1].version;
        version++;
        int file = version % 2 == 1 ? 1 : 2;
        rv = write_meta(raft_dir, file, version, term + 1, 0, why, n);
        if (rv == 0)
            rv = remove_in(raft_dir, file == 1 ? "metadata2" : "metadata1", why, n);
    }
    if (rv == 0 && fsync_dir(raft_dir) != 0) {
        say(why, n, "cannot sync %s: %s", raft_dir, strerror(errno));
        rv = RD_EIO;
    }
    return rv;
}

unsigned rd_corrupt_files(const char *raft_dir, char name[RD_SCAN_NAME])
{
    name[0] = '\0';
    DIR *d = opendir(raft_dir);
    if (d == NULL)
        return 0;
    unsigned k = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "corrupt-", 8) != 0)
            continue;
        k++;
        if (strlen(e->d_name) < RD_SCAN_NAME && strcmp(e->d_name, name) > 0)
            snprintf(name, RD_SCAN_NAME, "%s", e->d_name);
    }
    closedir(d);
    return k;
}

/* ---- the rejoin note ------------------------------------------------------------ */

/* Writes `text` to <dir>/<name> atomically and durably. */
static int store_text(const char *dir, const char *name, const char *text, size_t len, char *why,
                      size_t n)
{
    char tmp[RD_CFG_STR + 32], path[RD_CFG_STR + 32];
    snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, name);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        say(why, n, "cannot create %s: %s", tmp, strerror(errno));
        return RD_EIO;
    }
    if (write_all(fd, text, len) != 0 || fsync(fd) != 0) {
        say(why, n, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return RD_EIO;
    }
    close(fd);
    if (rename(tmp, path) != 0 || fsync_dir(dir) != 0) {
        say(why, n, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return RD_EIO;
    }
    return 0;
}

int rd_rejoin_store(const char *data_dir, const struct rd_rejoin_note *note, char *why, size_t n)
{
    char text[1024], when[RD_TIME_STRLEN];
    rd_time_format(note->since_ms, when);
    int len = snprintf(text, sizeof(text),
                       "recoveryd rejoin 1\nmoved %d\nprevious_role %d\nsince %s\nreason %s\n",
                       note->moved ? 1 : 0, note->previous_role, when, note->reason);
    if (len < 0 || (size_t)len >= sizeof(text))
        len = (int)sizeof(text) - 1;
    return store_text(data_dir, RD_REJOIN_FILE, text, (size_t)len, why, n);
}

int rd_rejoin_load(const char *data_dir, struct rd_rejoin_note *note)
{
    memset(note, 0, sizeof(*note));
    note->previous_role = -1;
    char path[RD_CFG_STR + 16];
    snprintf(path, sizeof(path), "%s/" RD_REJOIN_FILE, data_dir);
    uint8_t *buf;
    size_t len;
    int rv = read_file(path, &buf, &len);
    if (rv == -ENOENT)
        return RD_ENOTFOUND;
    if (rv != 0)
        return RD_ECORRUPT;
    int moved = 0, role = -1;
    char when[64] = "";
    const char *text = (const char *)buf;
    int ok =
        strncmp(text, "recoveryd rejoin 1\n", 19) == 0 &&
        sscanf(text + 19, "moved %d\nprevious_role %d\nsince %63s\n", &moved, &role, when) == 3;
    if (ok) {
        note->moved = moved != 0;
        note->previous_role = role;
        rd_time_parse(when, &note->since_ms);
        const char *r = strstr(text, "\nreason ");
        if (r != NULL) {
            snprintf(note->reason, sizeof(note->reason), "%s", r + 8);
            note->reason[strcspn(note->reason, "\n")] = '\0';
        }
    }
    free(buf);
    return ok ? 0 : RD_ECORRUPT;
}

int rd_rejoin_clear(const char *data_dir)
{
    char path[RD_CFG_STR + 16];
    snprintf(path, sizeof(path), "%s/" RD_REJOIN_FILE, data_dir);
    if (unlink(path) != 0 && errno != ENOENT)
        return RD_EIO;
    return fsync_dir(data_dir) == 0 ? 0 : RD_EIO;
}
