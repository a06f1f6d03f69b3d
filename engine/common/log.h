/*
 * Structured logging: one line per event on stderr, logfmt by default,
 *   ts=2026-11-24T03:04:05.123Z level=info comp=http event=listening addr=127.0.0.1:8080
 * or JSON lines (logging.format: json), one object per line,
 *   {"ts":"2026-11-24T03:04:05.123Z","level":"info","comp":"http","event":"listening",
 *    "addr":"127.0.0.1:8080"}
 * Callers pass the key=value pairs after `event` as a printf format; values
 * that may contain spaces go through rd_log_quote(). In JSON every pair's
 * value is a string (quoted values unescaped first; a word without `=`
 * joins the value before it). Loop-thread only.
 */
#ifndef RD_LOG_H
#define RD_LOG_H

#include <stddef.h>

enum rd_log_level { RD_LOG_DEBUG = 0, RD_LOG_INFO, RD_LOG_WARN, RD_LOG_ERROR };

/* Sets the lowest level that is written (default info). */
void rd_log_set_level(enum rd_log_level level);
enum rd_log_level rd_log_get_level(void);

enum rd_log_format { RD_LOG_LOGFMT = 0, RD_LOG_JSON };

void rd_log_set_format(enum rd_log_format format);
enum rd_log_format rd_log_get_format(void);
/* "logfmt", "json" -> format; returns 0 or RD_EINVAL. */
int rd_log_format_parse(const char *name, enum rd_log_format *out);
const char *rd_log_format_name(enum rd_log_format format);

/*
 * Sets the level at run time and writes one line saying so whatever the
 * level (level=info event=log_level_changed from=.. to=.. by=`by`).
 */
void rd_log_change_level(enum rd_log_level level, const char *by);

/*
 * Where lines go: stderr (fd -1, the default) or `fd` (tests). Lines are
 * formatted into a buffer and written with one write(2).
 */
void rd_log_set_fd(int fd);

/*
 * Formats one line (with its newline) into `out` (size `cap`, at least 64)
 * as rd_log() would write it; returns its length. For tests.
 */
size_t rd_log_format_line(char *out, size_t cap, enum rd_log_level level, const char *comp,
                          const char *event, const char *pairs);

/* "debug", "info", "warn", "error" -> level; returns 0 or RD_EINVAL. */
int rd_log_level_parse(const char *name, enum rd_log_level *out);
const char *rd_log_level_name(enum rd_log_level level);

/* Writes one line: ts, level, comp, event, then the formatted pairs. */
void rd_log(enum rd_log_level level, const char *comp, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Quotes `s` for a log value into `buf` (size `len`): wraps in double quotes
 * and escapes quotes, backslashes and control bytes when needed. Returns buf.
 */
const char *rd_log_quote(char *buf, size_t len, const char *s);

#define RD_DEBUG(comp, event, ...) rd_log(RD_LOG_DEBUG, comp, event, __VA_ARGS__)
#define RD_INFO(comp, event, ...)  rd_log(RD_LOG_INFO, comp, event, __VA_ARGS__)
#define RD_WARN(comp, event, ...)  rd_log(RD_LOG_WARN, comp, event, __VA_ARGS__)
#define RD_ERROR(comp, event, ...) rd_log(RD_LOG_ERROR, comp, event, __VA_ARGS__)

#endif
