/*
 * Log commands: the only way state changes. Every command is
 *
 *   u8 format (RD_CMD_FORMAT) | u8 type | u16 flags (0) | i64 time_ms | body
 *
 * little-endian, strings as u32 length + bytes. The leader stamps `time_ms`
 * (and any id) into the command, so applying it reads no clock and no random
 * source. New command types append to the enum; a body only grows by
 * appending fields that old decoders ignore (they stop at their last field),
 * and a changed meaning takes a new type. A replica that meets a format or
 * type it does not know refuses to apply it (RD_EUNSUPPORTED) rather than
 * diverge.
 */
#ifndef RD_CMD_H
#define RD_CMD_H

#include <stdint.h>

#include "codec.h"

#define RD_CMD_FORMAT      1
#define RD_CMD_HEADER_SIZE 12

enum rd_cmd_type {
    RD_CMD_NOOP = 1,            /* barrier; changes nothing but the applied count */
    RD_CMD_NODE_REGISTER = 2,   /* register or re-register an agent: new epoch */
    RD_CMD_NODE_TRANSITION = 3, /* move an agent to another state, fenced by epoch */
    RD_CMD_TYPE_MAX
};

/* Node states, shared by the state machine, the API and metrics. */
enum rd_node_state {
    RD_NODE_ALIVE = 0,
    RD_NODE_SUSPECT,
    RD_NODE_FAILED,
    RD_NODE_ISOLATED,
    RD_NODE_PROBATION,
    RD_NODE_DRAINING,
    RD_NODE_LEFT,
    RD_NODE_STATE_COUNT
};

const char *rd_node_state_name(int state);
/* "alive" -> RD_NODE_ALIVE; -1 when unknown. */
int rd_node_state_parse(const char *name, size_t len);

struct rd_cmd_register {
    struct rd_str node_id;
    uint32_t slots;
    struct rd_str labels_json; /* canonical compact JSON object, sorted keys */
    struct rd_str health_url;  /* "" when none */
    struct rd_str address;     /* "" when none */
};

struct rd_cmd_transition {
    struct rd_str node_id;
    uint64_t epoch; /* fencing token: 0 = operator action on any epoch */
    uint8_t state;  /* enum rd_node_state */
    struct rd_str reason;
};

struct rd_cmd {
    uint8_t type;
    int64_t time_ms;
    union {
        struct rd_cmd_register reg;
        struct rd_cmd_transition trans;
    } u;
};

/*
 * Encodes `cmd` into `w` (initialised by the caller). Returns 0 or the
 * writer's error; on error the caller frees `w`.
 */
int rd_cmd_encode(const struct rd_cmd *cmd, struct rd_wbuf *w);

/*
 * Decodes `len` bytes at `p` into `cmd`; its strings point into `p`, which
 * must outlive `cmd`. Returns 0, RD_EPARSE (truncated or bad field) or
 * RD_EUNSUPPORTED (unknown format or type).
 */
int rd_cmd_decode(const void *p, size_t len, struct rd_cmd *cmd);

const char *rd_cmd_type_name(int type);

#endif
