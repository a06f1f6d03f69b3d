/*
 * Structured logging: one line per event on stderr,
 *   ts=2026-11-24T03:04:05.123Z level=info comp=http event=listening addr=127.0.0.1:8080
 * Callers pass the key=value pairs after `event` as a printf format; values
 * that may contain spaces go through rd_log_quote(). Loop-thread only.
 */
#ifndef RD_LOG_H
#define RD_LOG_H

#include <stddef.h>

enum rd_log_level { RD_LOG_DEBUG = 0, RD_LOG_INFO, RD_LOG_WARN, RD_LOG_ERROR };

/* Sets the lowest level that is written (default info). */
void rd_log_set_level(enum rd_log_level level);
enum rd_log_level rd_log_get_level(void);

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
