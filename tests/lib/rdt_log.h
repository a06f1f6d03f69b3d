/*
 * Times the engine stamped on its own log lines ("ts=... level=... comp=...
 * event=..."), for tests that time what the engine did (became leader,
 * stepped down) by the engine's clock rather than by when this thread,
 * polling, happened to notice.
 */
#ifndef RDT_LOG_H
#define RDT_LOG_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

/*
 * The time (wall-clock ms, as rd_now_ms() gives it) of the first line of
 * `log` that contains `needle` and is stamped at or after `since_ms`; -1 when
 * there is none.
 */
static inline int64_t rdt_log_time(const char *log, const char *needle, int64_t since_ms)
{
    for (const char *line = log; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *hit = strstr(line, needle);
        char ts[64];
        int64_t t;
        if (hit != NULL && (size_t)(hit - line) < len && sscanf(line, "ts=%63s", ts) == 1 &&
            rd_time_parse(ts, &t) == 0 && t >= since_ms)
            return t;
        line = end ? end + 1 : NULL;
    }
    return -1;
}

#endif
