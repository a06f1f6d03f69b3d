/*
 * libFuzzer target: a request body as the API handlers decode it
 * (engine/http/input_limits.c): the depth check, jansson, then the checks
 * the handlers run on the fields (labels, integers in range, a replica's
 * HOST:PORT, ids), and the canonical re-encoding a task document gets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "common/util.h"
#include "http/input_limits.h"

static void check_fields(json_t *body)
{
    char why[256];
    json_t *labels = json_object_get(body, "labels");
    if (labels != NULL)
        (void)rd_limits_labels_ok(labels, why, sizeof(why));
    json_t *req = json_object_get(body, "requirements");
    if (json_is_object(req) && json_object_get(req, "labels") != NULL)
        (void)rd_limits_labels_ok(json_object_get(req, "labels"), why, sizeof(why));
    static const char *const ints[] = {"epoch", "attempt", "version", "id", "max_attempts"};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        (void)rd_limits_int_in(json_object_get(body, ints[i]), 1, RD_LIMIT_INT);
    const char *addr = json_string_value(json_object_get(body, "address"));
    if (addr != NULL && strlen(addr) <= RD_LIMIT_REPLICA_ADDR) {
        char host[RD_CFG_STR];
        uint16_t port;
        (void)rd_config_parse_hostport(addr, host, &port);
    }
    json_t *id = json_object_get(body, "node_id");
    if (json_is_string(id))
        (void)rd_node_id_valid(json_string_value(id), json_string_length(id));
    const char *tid = json_string_value(json_object_get(body, "task_id"));
    if (tid != NULL)
        (void)rd_uuid_valid(tid);
    /* A task's payload and a checkpoint's data are stored re-encoded. */
    static const char *const docs[] = {"payload", "data", "result"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_t *d = json_object_get(body, docs[i]);
        if (d == NULL)
            continue;
        char *s = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (s != NULL) {
            json_t *back = json_loads(s, JSON_DECODE_ANY, NULL);
            if (back == NULL || !json_equal(back, d))
                abort(); /* what is stored must read back as what was sent */
            json_decref(back);
        }
        free(s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum rd_decode_err err;
    char why[320];
    json_t *body = rd_limits_decode_object((const char *)data, size, &err, why, sizeof(why));
    if (body != NULL) {
        check_fields(body);
        json_decref(body);
    } else if (err == RD_DECODE_OK) {
        abort();
    }
    /* The same bytes as a path segment (a replica id). */
    (void)rd_limits_parse_id((const char *)data, size, (uint64_t)RD_LIMIT_INT);
    return 0;
}
