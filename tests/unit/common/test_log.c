/*
 * Logging: logfmt (the default) and JSON lines (logging.format: json), every
 * JSON line parsed back with jansson; the level filter and its change at run
 * time (rd_log_change_level, what the API and SIGUSR2 call).
 */
#include "cmocka_all.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "recoveryd/error.h"

static int reset(void **state)
{
    (void)state;
    rd_log_set_format(RD_LOG_LOGFMT);
    rd_log_set_level(RD_LOG_INFO);
    rd_log_set_fd(-1);
    return 0;
}

/* One line as JSON: it must end with exactly one newline and parse whole. */
static json_t *json_line(const char *pairs, char *line, size_t cap)
{
    rd_log_set_format(RD_LOG_JSON);
    size_t n = rd_log_format_line(line, cap, RD_LOG_WARN, "test", "ev", pairs);
    assert_true(n > 2 && n < cap);
    assert_int_equal(strlen(line), n);
    assert_int_equal(line[n - 1], '\n');
    assert_null(memchr(line, '\n', n - 1));
    json_error_t err;
    json_t *j = json_loadb(line, n, 0, &err);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", err.text, line);
    assert_true(json_is_object(j));
    return j;
}

static const char *str(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_string(v))
        fail_msg("no string %s", key);
    return json_string_value(v);
}

static void test_parse_names(void **state)
{
    (void)state;
    enum rd_log_format f;
    assert_int_equal(rd_log_format_parse("logfmt", &f), 0);
    assert_int_equal(f, RD_LOG_LOGFMT);
    assert_int_equal(rd_log_format_parse("json", &f), 0);
    assert_int_equal(f, RD_LOG_JSON);
    assert_int_equal(rd_log_format_parse("xml", &f), RD_EINVAL);
    assert_int_equal(rd_log_format_parse("", &f), RD_EINVAL);
    assert_string_equal(rd_log_format_name(RD_LOG_JSON), "json");
    enum rd_log_level l;
    assert_int_equal(rd_log_level_parse("debug", &l), 0);
    assert_int_equal(l, RD_LOG_DEBUG);
    assert_int_equal(rd_log_level_parse("verbose", &l), RD_EINVAL);
}

static void test_logfmt_line(void **state)
{
    (void)state;
    char line[2048];
    size_t n = rd_log_format_line(line, sizeof(line), RD_LOG_INFO, "http", "listening",
                                  "addr=127.0.0.1:8080 note=\"a b\"");
    assert_int_equal(strncmp(line, "ts=", 3), 0);
    assert_non_null(strstr(line, " level=info comp=http event=listening addr=127.0.0.1:8080 "
                                 "note=\"a b\"\n"));
    assert_int_equal(line[n - 1], '\n');
}

/* Quotes, backslashes, newlines, tabs, control bytes, non-ASCII (2, 3 and
 * 4 bytes) survive; an invalid UTF-8 byte becomes U+FFFD. */
static void test_json_escaping(void **state)
{
    (void)state;
    const char *msg = "say \"hi\"\\ now\nline2\tend\x01 caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac "
                      "\xf0\x9f\x94\xa5";
    char q[512];
    char pairs[1024];
    snprintf(pairs, sizeof(pairs), "msg=%s bad=\"x\xff\xc3y\" n=42",
             rd_log_quote(q, sizeof(q), msg));
    char line[8192];
    json_t *j = json_line(pairs, line, sizeof(line));
    assert_string_equal(str(j, "level"), "warn");
    assert_string_equal(str(j, "comp"), "test");
    assert_string_equal(str(j, "event"), "ev");
    assert_non_null(strstr(str(j, "ts"), "T"));
    /* rd_log_quote turns control bytes but \n into '?': the rest is exact */
    assert_string_equal(str(j, "msg"), "say \"hi\"\\ now\nline2?end? caf\xc3\xa9 "
                                       "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x94\xa5");
    assert_string_equal(str(j, "bad"), "x\xef\xbf\xbd\xef\xbf\xbdy");
    assert_string_equal(str(j, "n"), "42");
    json_decref(j);
    /* Raw control bytes and DEL in an unquoted value are escaped, not written. */
    j = json_line("raw=a\x02\x7f", line, sizeof(line));
    assert_non_null(strstr(line, "\\u0002\\u007f"));
    assert_string_equal(str(j, "raw"), "a\x02\x7f");
    json_decref(j);
    /* Overlong forms and surrogates are not valid UTF-8. */
    j = json_line("v=\xc0\xaf\xed\xa0\x80", line, sizeof(line));
    assert_string_equal(str(j, "v"),
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(j);
}

/* Words without a key join the value before them (an unquoted %s with
 * spaces); words before any pair are a "msg". */
static void test_json_loose_pairs(void **state)
{
    (void)state;
    char line[8192];
    json_t *j = json_line("lead words error=No such file or directory id=7", line, sizeof(line));
    assert_string_equal(str(j, "msg"), "lead words");
    assert_string_equal(str(j, "error"), "No such file or directory");
    assert_string_equal(str(j, "id"), "7");
    json_decref(j);
    j = json_line("", line, sizeof(line));
    assert_int_equal(json_object_size(j), 4);
    json_decref(j);
    j = json_line("empty= after=\"\"", line, sizeof(line));
    assert_string_equal(str(j, "empty"), "");
    assert_string_equal(str(j, "after"), "");
    json_decref(j);
}

/* A line too long for its buffer stays one valid JSON object, marked. */
static void test_json_truncated_stays_valid(void **state)
{
    (void)state;
    static char pairs[2048];
    memset(pairs, 0, sizeof(pairs));
    strcpy(pairs, "a=1 big=");
    size_t o = strlen(pairs);
    while (o < sizeof(pairs) - 2)
        pairs[o++] = '\x01'; /* 6 bytes each in JSON */
    char line[1024];
    json_t *j = json_line(pairs, line, sizeof(line));
    assert_string_equal(str(j, "a"), "1");
    assert_null(json_object_get(j, "big"));
    assert_string_equal(str(j, "truncated"), "true");
    json_decref(j);
    /* Very small buffers too. */
    for (size_t cap = 64; cap < 200; cap += 7) {
        j = json_line("k=v", line, cap);
        json_decref(j);
    }
}

/* Reads what was written to the pipe so far. */
static size_t drain(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

static void test_level_changes_at_run_time(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    rd_log_set_fd(fds[1]);
    rd_log_set_level(RD_LOG_INFO);
    char buf[8192];
    RD_DEBUG("test", "before", "k=%d", 1);
    RD_INFO("test", "shown", "k=%d", 2);
    drain(fds[0], buf, sizeof(buf));
    assert_null(strstr(buf, "event=before"));
    assert_non_null(strstr(buf, "event=shown k=2"));

    /* The change is said whatever the level, even to warn. */
    rd_log_change_level(RD_LOG_DEBUG, "api:admin one");
    assert_int_equal(rd_log_get_level(), RD_LOG_DEBUG);
    RD_DEBUG("test", "after", "k=%d", 3);
    drain(fds[0], buf, sizeof(buf));
    assert_non_null(strstr(buf, "level=info comp=log event=log_level_changed from=info to=debug "
                                "by=\"api:admin one\""));
    assert_non_null(strstr(buf, "level=debug comp=test event=after k=3"));

    rd_log_change_level(RD_LOG_ERROR, "SIGUSR2");
    RD_WARN("test", "hidden", "%s", "");
    RD_ERROR("test", "err", "%s", "");
    drain(fds[0], buf, sizeof(buf));
    assert_non_null(strstr(buf, "event=log_level_changed from=debug to=error by=SIGUSR2"));
    assert_null(strstr(buf, "event=hidden"));
    assert_non_null(strstr(buf, "event=err"));

    /* JSON lines through the same path, one object per line. */
    rd_log_set_format(RD_LOG_JSON);
    rd_log_change_level(RD_LOG_DEBUG, "test");
    RD_DEBUG("test", "j", "q=%s", "\"quoted\"");
    size_t n = drain(fds[0], buf, sizeof(buf));
    int lines = 0;
    for (char *p = buf; p < buf + n;) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        json_t *j = json_loadb(p, (size_t)(nl - p), 0, NULL);
        if (j == NULL)
            fail_msg("not JSON: %.*s", (int)(nl - p), p);
        json_decref(j);
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, 2);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_names, reset, reset),
        cmocka_unit_test_setup_teardown(test_logfmt_line, reset, reset),
        cmocka_unit_test_setup_teardown(test_json_escaping, reset, reset),
        cmocka_unit_test_setup_teardown(test_json_loose_pairs, reset, reset),
        cmocka_unit_test_setup_teardown(test_json_truncated_stays_valid, reset, reset),
        cmocka_unit_test_setup_teardown(test_level_changes_at_run_time, reset, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
