/*
 * Little-endian binary writer and bounds-checked reader shared by log
 * commands and snapshots. A reader never reads past its end: the first short
 * read sets `err` to RD_EPARSE and every later read returns zero values, so
 * decoders check `err` once at the end.
 */
#ifndef RD_CODEC_H
#define RD_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h> /* RD_STR */

struct rd_str {
    const char *p; /* not NUL-terminated; points into the decoded buffer */
    uint32_t len;
};

/* True when `s` holds a NUL byte: an id kept as a C string would be cut
 * there, and a snapshot of it would not read back (tests/fuzz found it). */
static inline bool rd_str_has_nul(struct rd_str s)
{
    return s.len > 0 && memchr(s.p, '\0', s.len) != NULL;
}

#define RD_STR(s) ((struct rd_str){(s), (uint32_t)strlen(s)})

struct rd_wbuf {
    uint8_t *p; /* malloc'd; the owner frees it or hands it on */
    size_t len;
    size_t cap;
    int err; /* RD_ENOMEM after a failed growth, or the sink's error */
    /* With a sink (rd_w_init_sink), a full buffer is handed to it and
     * emptied instead of grown: a stream of any length in `cap` bytes. */
    void (*sink)(struct rd_wbuf *w, void *data);
    void *sink_data;
    bool count_only; /* rd_w_init_count: len counts the bytes, none are kept */
};

struct rd_rbuf {
    const uint8_t *p;
    size_t len;
    size_t off;
    int err;
};

void rd_w_init(struct rd_wbuf *w);
void rd_w_free(struct rd_wbuf *w);
/* A buffer of `chunk` bytes whose contents go to `sink` (which consumes
 * w->p[0..w->len) and may set w->err) each time it is full; a write larger
 * than `chunk` grows it. rd_w_flush hands on what is left. */
int rd_w_init_sink(struct rd_wbuf *w, size_t chunk, void (*sink)(struct rd_wbuf *w, void *data),
                   void *data);
void rd_w_flush(struct rd_wbuf *w);
/* A buffer that keeps nothing and only counts, in len, what is written. */
void rd_w_init_count(struct rd_wbuf *w);
void rd_w_u8(struct rd_wbuf *w, uint8_t v);
void rd_w_u16(struct rd_wbuf *w, uint16_t v);
void rd_w_u32(struct rd_wbuf *w, uint32_t v);
void rd_w_u64(struct rd_wbuf *w, uint64_t v);
void rd_w_i64(struct rd_wbuf *w, int64_t v);
void rd_w_bytes(struct rd_wbuf *w, const void *p, size_t n);
/* A u32 length then the bytes; a NULL `p` writes an empty string. */
void rd_w_str(struct rd_wbuf *w, const char *p, size_t n);

void rd_r_init(struct rd_rbuf *r, const void *p, size_t len);
uint8_t rd_r_u8(struct rd_rbuf *r);
uint16_t rd_r_u16(struct rd_rbuf *r);
uint32_t rd_r_u32(struct rd_rbuf *r);
uint64_t rd_r_u64(struct rd_rbuf *r);
int64_t rd_r_i64(struct rd_rbuf *r);
const uint8_t *rd_r_bytes(struct rd_rbuf *r, size_t n);
struct rd_str rd_r_str(struct rd_rbuf *r);
/* A string the writer wrote from a C string (strlen): one holding a NUL byte
 * cannot be one, so it is an error (r->err), as a short read is. The
 * snapshot readers take every such field with it. */
struct rd_str rd_r_text(struct rd_rbuf *r);

/* NUL-terminated malloc'd copy of `s`, or NULL on ENOMEM. */
char *rd_str_dup(struct rd_str s);

#endif
