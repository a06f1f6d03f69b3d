#include "log.h"
#include "util.h"
#include "recoveryd/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum rd_log_level min_level = RD_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void rd_log_set_level(enum rd_log_level level)
{
    min_level = level;
}

enum rd_log_level rd_log_get_level(void)
{
    return min_level;
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

void rd_log(enum rd_log_level level, const char *comp, const char *event, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char line[2048];
    char ts[RD_TIME_STRLEN];
    rd_time_format(rd_now_ms(), ts);
    int n = snprintf(line, sizeof(line), "ts=%s level=%s comp=%s event=%s", ts,
                     rd_log_level_name(level), comp, event);
    if (n < 0)
        return;
    if (fmt != NULL && fmt[0] != '\0' && (size_t)n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line so concurrent processes do not interleave lines. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
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
