#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "recoveryd/error.h"

void rd_w_init(struct rd_wbuf *w)
{
    memset(w, 0, sizeof(*w));
}

void rd_w_free(struct rd_wbuf *w)
{
    free(w->p);
    memset(w, 0, sizeof(*w));
}

int rd_w_init_sink(struct rd_wbuf *w, size_t chunk, void (*sink)(struct rd_wbuf *w, void *data),
                   void *data)
{
    rd_w_init(w);
    w->p = malloc(chunk);
    if (w->p == NULL)
        return w->err = RD_ENOMEM;
    w->cap = chunk;
    w->sink = sink;
    w->sink_data = data;
    return 0;
}

void rd_w_flush(struct rd_wbuf *w)
{
    if (w->sink != NULL && w->err == 0 && w->len > 0)
        w->sink(w, w->sink_data);
    w->len = 0;
}

static int reserve(struct rd_wbuf *w, size_t n)
{
    if (w->err)
        return w->err;
    if (w->len + n <= w->cap)
        return 0;
    if (w->sink != NULL && w->len > 0) {
        rd_w_flush(w);
        if (w->err)
            return w->err;
        if (n <= w->cap)
            return 0;
    }
    size_t ncap = w->cap ? w->cap : 128;
    while (ncap < w->len + n)
        ncap *= 2;
    uint8_t *np = realloc(w->p, ncap);
    if (np == NULL)
        return w->err = RD_ENOMEM;
    w->p = np;
    w->cap = ncap;
    return 0;
}

void rd_w_init_count(struct rd_wbuf *w)
{
    rd_w_init(w);
    w->count_only = true;
}

void rd_w_bytes(struct rd_wbuf *w, const void *p, size_t n)
{
    if (w->count_only) {
        w->len += n;
        return;
    }
    if (n == 0 || reserve(w, n) != 0)
        return;
    memcpy(w->p + w->len, p, n);
    w->len += n;
}

static void put_le(struct rd_wbuf *w, uint64_t v, int n)
{
    uint8_t b[8];
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    rd_w_bytes(w, b, (size_t)n);
}

void rd_w_u8(struct rd_wbuf *w, uint8_t v)
{
    put_le(w, v, 1);
}
void rd_w_u16(struct rd_wbuf *w, uint16_t v)
{
    put_le(w, v, 2);
}
void rd_w_u32(struct rd_wbuf *w, uint32_t v)
{
    put_le(w, v, 4);
}
void rd_w_u64(struct rd_wbuf *w, uint64_t v)
{
    put_le(w, v, 8);
}
void rd_w_i64(struct rd_wbuf *w, int64_t v)
{
    put_le(w, (uint64_t)v, 8);
}

void rd_w_str(struct rd_wbuf *w, const char *p, size_t n)
{
    if (p == NULL)
        n = 0;
    if (n > UINT32_MAX) {
        w->err = RD_ETOOLARGE;
        return;
    }
    rd_w_u32(w, (uint32_t)n);
    rd_w_bytes(w, p, n);
}

void rd_r_init(struct rd_rbuf *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->off = 0;
    r->err = 0;
}

const uint8_t *rd_r_bytes(struct rd_rbuf *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = RD_EPARSE;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static uint64_t get_le(struct rd_rbuf *r, int n)
{
    const uint8_t *b = rd_r_bytes(r, (size_t)n);
    uint64_t v = 0;
    if (b == NULL)
        return 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

uint8_t rd_r_u8(struct rd_rbuf *r)
{
    return (uint8_t)get_le(r, 1);
}
uint16_t rd_r_u16(struct rd_rbuf *r)
{
    return (uint16_t)get_le(r, 2);
}
uint32_t rd_r_u32(struct rd_rbuf *r)
{
    return (uint32_t)get_le(r, 4);
}
uint64_t rd_r_u64(struct rd_rbuf *r)
{
    return get_le(r, 8);
}
int64_t rd_r_i64(struct rd_rbuf *r)
{
    return (int64_t)get_le(r, 8);
}

struct rd_str rd_r_str(struct rd_rbuf *r)
{
    struct rd_str s = {"", 0};
    uint32_t n = rd_r_u32(r);
    const uint8_t *p = rd_r_bytes(r, n);
    if (p != NULL) {
        s.p = (const char *)p;
        s.len = n;
    }
    return s;
}

struct rd_str rd_r_text(struct rd_rbuf *r)
{
    struct rd_str s = rd_r_str(r);
    if (rd_str_has_nul(s)) {
        r->err = RD_EPARSE;
        s = (struct rd_str){"", 0};
    }
    return s;
}

char *rd_str_dup(struct rd_str s)
{
    char *d = malloc((size_t)s.len + 1);
    if (d == NULL)
        return NULL;
    if (s.len)
        memcpy(d, s.p, s.len);
    d[s.len] = '\0';
    return d;
}
