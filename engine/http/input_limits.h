/*
 * Every limit the API puts on what a client sends, in one place (issue 12,
 * "a hardened edge"). api/openapi.yaml states the same numbers (maxLength,
 * maximum, maxItems) and docs/api-limits.md lists them; a request over one
 * is answered 400 bad_request or 413 too_large with details.limit (and
 * details.field when a field is at fault), and changes nothing.
 *
 * The decoding helpers below are pure (no h2o, no engine state), so the
 * fuzz targets in tests/fuzz/ drive exactly the code the handlers use.
 */
#ifndef RD_HTTP_LIMITS_H
#define RD_HTTP_LIMITS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- bodies ------------------------------------------------------------- */

/* Bodies of the routes that carry small documents (heartbeats, registration,
 * operator actions, membership, triggers): 64 KiB. Task submission, checkpoint
 * writes and completion take up to server.max_body (default 1 MiB). */
#define RD_LIMIT_BODY_SMALL (64 * 1024)
/* Nesting of arrays and objects in any request body. */
#define RD_LIMIT_JSON_DEPTH 64
/* Bytes of one stored JSON document (checkpoint data, task payload, result),
 * as canonical compact JSON. */
#define RD_LIMIT_DOC_BYTES (512 * 1024)
/* Bytes of the query string (everything after '?'). */
#define RD_LIMIT_QUERY_LEN 4096

/* ---- strings ------------------------------------------------------------ */

#define RD_LIMIT_LABELS      64   /* entries of a labels object */
#define RD_LIMIT_LABEL_LEN   255  /* a label's key and its value */
#define RD_LIMIT_URL_LEN     1024 /* an agent's health_url */
#define RD_LIMIT_ADDRESS_LEN 255  /* an agent's address */
#define RD_LIMIT_REASON_LEN  512  /* an operator's reason */
#define RD_LIMIT_ERROR_LEN   4096 /* a task failure's error text */
#define RD_LIMIT_NAME_LEN    128  /* a backup target, a strategy */
#define RD_LIMIT_API_URL_LEN 255  /* a replica's api_url */
/* A replica's raft HOST:PORT: its pending record carries it with the id and
 * role in a 256-byte key (api_cluster.c checks that it fits). */
#define RD_LIMIT_REPLICA_ADDR 200

/* ---- numbers ------------------------------------------------------------ */

#define RD_LIMIT_SLOTS    65536
#define RD_LIMIT_PRIORITY 9 /* priorities are 0 (lowest) to 9 */
/* A heartbeat's metrics: finite numbers from 0 to these. */
#define RD_LIMIT_METRIC_ERROR_RATE 1.0
#define RD_LIMIT_METRIC_LATENCY_MS 1e9
#define RD_LIMIT_METRIC_CPU        1e6
#define RD_LIMIT_METRIC_MEM        1e18
#define RD_LIMIT_METRIC_PROGRESS   1e18
#define RD_LIMIT_MAX_ATTEMPTS      1000
#define RD_LIMIT_ATTEMPT           UINT32_MAX /* a task's attempt (fencing token) */
/* Epochs, versions and replica ids: integers a JSON client (a double) can
 * hold exactly, 2^53 - 1. */
#define RD_LIMIT_INT 9007199254740991LL

/*
 * Body limit of a route (enum rd_route), given server.max_body: the small
 * limit for every route but the ones carrying task documents.
 */
size_t rd_limits_body_max(int route, size_t max_body);

/*
 * How deep arrays and objects nest in the JSON text [buf, buf+len): a scan
 * that stops as soon as `max` is passed (and then returns max + 1). Strings
 * are skipped, escapes included; malformed text is jansson's to judge.
 */
unsigned rd_limits_json_depth(const char *buf, size_t len, unsigned max);

/* What rd_limits_decode_object found wrong: nothing, the body, or a limit. */
enum rd_decode_err {
    RD_DECODE_OK = 0,
    RD_DECODE_EMPTY,     /* no body */
    RD_DECODE_TOO_DEEP,  /* nesting over RD_LIMIT_JSON_DEPTH */
    RD_DECODE_MALFORMED, /* not JSON (why says where) */
    RD_DECODE_NOT_OBJECT /* JSON, but not an object */
};

/*
 * A request body as a JSON object: the depth check, then jansson (duplicate
 * keys refused, NUL in strings refused). The object, or NULL with the
 * reason and a sentence in `why`.
 */
json_t *rd_limits_decode_object(const char *buf, size_t len, enum rd_decode_err *err, char *why,
                                size_t whylen);

/*
 * A labels object (an agent's, a task's requirements): at most
 * RD_LIMIT_LABELS entries mapping 1-RD_LIMIT_LABEL_LEN byte keys to string
 * values of at most RD_LIMIT_LABEL_LEN bytes. True, or false with a sentence
 * in `why`.
 */
bool rd_limits_labels_ok(const json_t *labels, char *why, size_t whylen);

/* An integer field within [min, max]: false when absent, not an integer, or out of range. */
bool rd_limits_int_in(const json_t *v, long long min, long long max);

/* A path segment or query value that is a decimal integer within [1, max]
 * (digits only: no sign, no spaces); 0 otherwise. */
uint64_t rd_limits_parse_id(const char *s, size_t len, uint64_t max);

#endif
