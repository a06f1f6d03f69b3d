#include "log.h"
#include "util.h"
#include "recoveryd/error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum rd_log_level min_level = RD_LOG_INFO;
static enum rd_log_format log_format = RD_LOG_LOGFMT;
static int log_fd = -1;
static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"logfmt", "json"};

void rd_log_set_level(enum rd_log_level level)
{
    min_level = level;
}

enum rd_log_level rd_log_get_level(void)
{
    return min_level;
}

void rd_log_set_format(enum rd_log_format format)
{
    log_format = format;
}

enum rd_log_format rd_log_get_format(void)
{
    return log_format;
}

void rd_log_set_fd(int fd)
{
    log_fd = fd;
}

int rd_log_level_parse(const char *name, enum rd_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum rd_log_level)i;
            return 0;
        }
    }
    return RD_EINVAL;
}

const char *rd_log_level_name(enum rd_log_level level)
{
    return level <= RD_LOG_ERROR ? level_names[level] : "unknown";
}

int rd_log_format_parse(const char *name, enum rd_log_format *out)
{
    for (int i = 0; i < 2; i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (enum rd_log_format)i;
            return 0;
        }
    }
    return RD_EINVAL;
}

const char *rd_log_format_name(enum rd_log_format format)
{
    return format <= RD_LOG_JSON ? format_names[format] : "unknown";
}

/* ---- JSON lines ------------------------------------------------------------- */

/* Room kept at the end of a JSON line for ,"truncated":"true"}\n and NUL. */
#define JSON_RESERVE 24
#define MAX_PAIRS    64

struct jw {
    char *p;
    size_t cap; /* usable: the buffer's size minus JSON_RESERVE */
    size_t len;
    bool full;
};

static void jw_put(struct jw *w, const char *s, size_t n)
{
    if (w->full || w->len + n > w->cap) {
        w->full = true;
        return;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* A JSON string: quotes, backslashes and control bytes escaped, valid
 * UTF-8 kept, each invalid byte replaced by U+FFFD. */
static void jw_str(struct jw *w, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    jw_put(w, "\"", 1);
    for (size_t i = 0; i < n && !w->full;) {
        unsigned char c = u[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            jw_put(w, esc, 2);
        } else if (c == '\n') {
            jw_put(w, "\\n", 2);
        } else if (c == '\r') {
            jw_put(w, "\\r", 2);
        } else if (c == '\t') {
            jw_put(w, "\\t", 2);
        } else if (c < 0x20 || c == 0x7F) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            jw_put(w, esc, 6);
        } else if (c < 0x80) {
            jw_put(w, (const char *)&u[i], 1);
        } else {
            size_t l = utf8_len(u + i, n - i);
            if (l == 0) {
                jw_put(w, "\\ufffd", 6);
                i++;
                continue;
            }
            jw_put(w, (const char *)&u[i], l);
            i += l;
            continue;
        }
        i++;
    }
    jw_put(w, "\"", 1);
}

struct pair {
    const char *key;
    size_t key_len;
    size_t val_off, val_len; /* in the scratch buffer */
};

/*
 * Splits logfmt pairs: key=value, key="quoted \"value\"" (unescaped), and
 * words without `=` joined (after a space) to the value before them, or to
 * a "msg" pair when they come first. Values go to `scratch`.
 */
static size_t split_pairs(const char *s, struct pair *pairs, size_t max, char *scratch, size_t scap,
                          size_t *used)
{
    size_t np = 0, o = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        bool bare = (*p != '=' || p == k);
        if (bare) {
            /* a word without a key: it belongs to the value before it */
            while (*p && *p != ' ')
                p++;
            if (np == 0) {
                if (np == max)
                    break;
                pairs[np++] = (struct pair){"msg", 3, o, 0};
            } else if (o < scap) {
                scratch[o++] = ' ';
                pairs[np - 1].val_len++;
            }
            size_t n = (size_t)(p - k);
            if (n > scap - o)
                n = scap - o;
            memcpy(scratch + o, k, n);
            o += n;
            pairs[np - 1].val_len += n;
            continue;
        }
        size_t klen = (size_t)(p - k);
        p++; /* '=' */
        size_t start = o;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                char c = *p++;
                if (c == '\\' && *p) {
                    c = *p++;
                    if (c == 'n')
                        c = '\n';
                    else if (c == 't')
                        c = '\t';
                    else if (c == 'r')
                        c = '\r';
                }
                if (o < scap)
                    scratch[o++] = c;
            }
            if (*p == '"')
                p++;
        } else {
            while (*p && *p != ' ') {
                if (o < scap)
                    scratch[o++] = *p;
                p++;
            }
        }
        if (np == max)
            break;
        pairs[np++] = (struct pair){k, klen, start, o - start};
    }
    *used = o;
    return np;
}

static size_t format_json(char *out, size_t cap, const char *ts, enum rd_log_level level,
                          const char *comp, const char *event, const char *pairs_text)
{
    struct jw w = {out, cap - JSON_RESERVE, 0, false};
    jw_put(&w, "{\"ts\":", 6);
    jw_str(&w, ts, strlen(ts));
    jw_put(&w, ",\"level\":", 9);
    const char *ln = rd_log_level_name(level);
    jw_str(&w, ln, strlen(ln));
    jw_put(&w, ",\"comp\":", 8);
    jw_str(&w, comp, strlen(comp));
    jw_put(&w, ",\"event\":", 9);
    jw_str(&w, event, strlen(event));
    bool truncated = w.full;
    if (truncated) { /* absurdly long names: keep only the timestamp */
        w.len = 0;
        w.full = false;
        jw_put(&w, "{\"ts\":", 6);
        jw_str(&w, ts, strlen(ts));
    }
    if (pairs_text != NULL && !truncated) {
        struct pair pairs[MAX_PAIRS];
        char scratch[4096];
        size_t used;
        size_t np = split_pairs(pairs_text, pairs, MAX_PAIRS, scratch, sizeof(scratch), &used);
        for (size_t i = 0; i < np; i++) {
            size_t mark = w.len;
            jw_put(&w, ",", 1);
            jw_str(&w, pairs[i].key, pairs[i].key_len);
            jw_put(&w, ":", 1);
            jw_str(&w, scratch + pairs[i].val_off, pairs[i].val_len);
            if (w.full) {
                w.len = mark; /* drop the pair that did not fit whole */
                truncated = true;
                break;
            }
        }
    }
    /* The reserve holds the end, whatever happened above. */
    if (truncated) {
        memcpy(out + w.len, ",\"truncated\":\"true\"", 19);
        w.len += 19;
    }
    out[w.len++] = '}';
    out[w.len++] = '\n';
    out[w.len] = '\0';
    return w.len;
}

/* ---- lines ------------------------------------------------------------------ */

static size_t format_logfmt(char *line, size_t cap, const char *ts, enum rd_log_level level,
                            const char *comp, const char *event, const char *pairs)
{
    int n = snprintf(line, cap, "ts=%s level=%s comp=%s event=%s", ts, rd_log_level_name(level),
                     comp, event);
    if (n < 0)
        n = 0;
    if ((size_t)n > cap - 2)
        n = (int)cap - 2;
    if (pairs != NULL && pairs[0] != '\0' && (size_t)n < cap - 2) {
        line[n++] = ' ';
        int m = snprintf(line + n, cap - (size_t)n, "%s", pairs);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= cap - 1)
        n = (int)cap - 2;
    line[n++] = '\n';
    line[n] = '\0';
    return (size_t)n;
}

size_t rd_log_format_line(char *out, size_t cap, enum rd_log_level level, const char *comp,
                          const char *event, const char *pairs)
{
    char ts[RD_TIME_STRLEN];
    rd_time_format(rd_now_ms(), ts);
    if (log_format == RD_LOG_JSON)
        return format_json(out, cap, ts, level, comp, event, pairs);
    return format_logfmt(out, cap, ts, level, comp, event, pairs);
}

static void write_line(enum rd_log_level level, const char *comp, const char *event,
                       const char *pairs)
{
    char line[8192];
    size_t n = rd_log_format_line(line, log_format == RD_LOG_JSON ? sizeof(line) : 2048, level,
                                  comp, event, pairs);
    /* One write per line so concurrent processes do not interleave lines. */
    ssize_t w = write(log_fd >= 0 ? log_fd : STDERR_FILENO, line, n);
    (void)w;
}

void rd_log(enum rd_log_level level, const char *comp, const char *event, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char pairs[2048];
    pairs[0] = '\0';
    if (fmt != NULL && fmt[0] != '\0') {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(pairs, sizeof(pairs), fmt, ap);
        va_end(ap);
        if (m < 0)
            pairs[0] = '\0';
    }
    write_line(level, comp, event, pairs);
}

void rd_log_change_level(enum rd_log_level level, const char *by)
{
    enum rd_log_level from = min_level;
    min_level = level;
    char pairs[160];
    char q[96];
    snprintf(pairs, sizeof(pairs), "from=%s to=%s by=%s", rd_log_level_name(from),
             rd_log_level_name(level), rd_log_quote(q, sizeof(q), by));
    write_line(RD_LOG_INFO, "log", "log_level_changed", pairs);
}

const char *rd_log_quote(char *buf, size_t len, const char *s)
{
    if (len == 0)
        return "";
    if (s == NULL)
        s = "";
    int needs = (*s == '\0');
    for (const char *p = s; *p && !needs; p++)
        needs = (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p < 0x20);
    if (!needs) {
        snprintf(buf, len, "%s", s);
        return buf;
    }
    size_t o = 0;
    buf[o++] = '"';
    for (const char *p = s; *p && o + 4 < len; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (c < 0x20) {
            buf[o++] = '?';
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
