/* The API's input limits (input_limits.h): body sizes per route, JSON depth, labels, ids. */
#include <stdio.h>
#include <string.h>

#include "common/jarena.h"
#include "http.h"
#include "input_limits.h"

size_t rd_limits_body_max(int route, size_t max_body)
{
    switch (route) {
    case RD_ROUTE_TASKS_SUBMIT:
    case RD_ROUTE_TASK_CHECKPOINT_PUT:
    case RD_ROUTE_TASK_COMPLETE:
        return max_body;
    default:
        return max_body < RD_LIMIT_BODY_SMALL ? max_body : RD_LIMIT_BODY_SMALL;
    }
}

unsigned rd_limits_json_depth(const char *buf, size_t len, unsigned max)
{
    unsigned depth = 0, deepest = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_string) {
            if (c == '\\')
                i++; /* the escaped character, whatever it is */
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest && (deepest = depth) > max)
                return max + 1;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return deepest;
}

json_t *rd_limits_decode_object(const char *buf, size_t len, enum rd_decode_err *err, char *why,
                                size_t whylen)
{
    if (buf == NULL || len == 0) {
        *err = RD_DECODE_EMPTY;
        snprintf(why, whylen, "request body is empty: a JSON object is required");
        return NULL;
    }
    if (rd_limits_json_depth(buf, len, RD_LIMIT_JSON_DEPTH) > RD_LIMIT_JSON_DEPTH) {
        *err = RD_DECODE_TOO_DEEP;
        snprintf(why, whylen, "request body nests arrays and objects more than %d deep",
                 RD_LIMIT_JSON_DEPTH);
        return NULL;
    }
    json_error_t jerr;
    json_t *obj = rd_jarena_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        *err = RD_DECODE_MALFORMED;
        snprintf(why, whylen, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        *err = RD_DECODE_NOT_OBJECT;
        snprintf(why, whylen, "request body must be a JSON object");
        return NULL;
    }
    *err = RD_DECODE_OK;
    return obj;
}

bool rd_limits_labels_ok(const json_t *labels, char *why, size_t whylen)
{
    if (!json_is_object(labels)) {
        snprintf(why, whylen, "labels must be an object of strings");
        return false;
    }
    if (json_object_size(labels) > RD_LIMIT_LABELS) {
        snprintf(why, whylen, "labels has %zu entries: at most %d are allowed",
                 json_object_size(labels), RD_LIMIT_LABELS);
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)labels, k, v)
    {
        size_t klen = strlen(k);
        if (!json_is_string(v) || klen == 0 || klen > RD_LIMIT_LABEL_LEN ||
            json_string_length(v) > RD_LIMIT_LABEL_LEN) {
            snprintf(why, whylen,
                     "label '%.64s' must map a 1-%d character key to a string of at most %d "
                     "characters",
                     k, RD_LIMIT_LABEL_LEN, RD_LIMIT_LABEL_LEN);
            return false;
        }
    }
    return true;
}

bool rd_limits_int_in(const json_t *v, long long min, long long max)
{
    return json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max;
}

uint64_t rd_limits_parse_id(const char *s, size_t len, uint64_t max)
{
    if (s == NULL || len == 0 || len > 20)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (d > max || v > (max - d) / 10)
            return 0; /* over max (and never wraps) */
        v = v * 10 + d;
    }
    return v;
}
