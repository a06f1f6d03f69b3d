#include <string.h>

#include "cmd.h"
#include "recoveryd/error.h"

static const char *const state_names[RD_NODE_STATE_COUNT] = {
    "alive", "suspect", "failed", "isolated", "probation", "draining", "left",
};

const char *rd_node_state_name(int state)
{
    return state >= 0 && state < RD_NODE_STATE_COUNT ? state_names[state] : "unknown";
}

int rd_node_state_parse(const char *name, size_t len)
{
    for (int i = 0; i < RD_NODE_STATE_COUNT; i++) {
        if (strlen(state_names[i]) == len && memcmp(state_names[i], name, len) == 0)
            return i;
    }
    return -1;
}

const char *rd_cmd_type_name(int type)
{
    switch (type) {
    case RD_CMD_NOOP:
        return "noop";
    case RD_CMD_NODE_REGISTER:
        return "node_register";
    case RD_CMD_NODE_TRANSITION:
        return "node_transition";
    }
    return "unknown";
}

int rd_cmd_encode(const struct rd_cmd *cmd, struct rd_wbuf *w)
{
    rd_w_u8(w, RD_CMD_FORMAT);
    rd_w_u8(w, cmd->type);
    rd_w_u16(w, 0);
    rd_w_i64(w, cmd->time_ms);
    switch (cmd->type) {
    case RD_CMD_NOOP:
        break;
    case RD_CMD_NODE_REGISTER: {
        const struct rd_cmd_register *c = &cmd->u.reg;
        rd_w_str(w, c->node_id.p, c->node_id.len);
        rd_w_u32(w, c->slots);
        rd_w_str(w, c->labels_json.p, c->labels_json.len);
        rd_w_str(w, c->health_url.p, c->health_url.len);
        rd_w_str(w, c->address.p, c->address.len);
        break;
    }
    case RD_CMD_NODE_TRANSITION: {
        const struct rd_cmd_transition *c = &cmd->u.trans;
        rd_w_str(w, c->node_id.p, c->node_id.len);
        rd_w_u64(w, c->epoch);
        rd_w_u8(w, c->state);
        rd_w_str(w, c->reason.p, c->reason.len);
        break;
    }
    default:
        return RD_EINVAL;
    }
    return w->err;
}

int rd_cmd_decode(const void *p, size_t len, struct rd_cmd *cmd)
{
    struct rd_rbuf r;
    rd_r_init(&r, p, len);
    memset(cmd, 0, sizeof(*cmd));
    uint8_t format = rd_r_u8(&r);
    cmd->type = rd_r_u8(&r);
    (void)rd_r_u16(&r);
    cmd->time_ms = rd_r_i64(&r);
    if (r.err)
        return RD_EPARSE;
    if (format != RD_CMD_FORMAT)
        return RD_EUNSUPPORTED;
    switch (cmd->type) {
    case RD_CMD_NOOP:
        break;
    case RD_CMD_NODE_REGISTER: {
        struct rd_cmd_register *c = &cmd->u.reg;
        c->node_id = rd_r_str(&r);
        c->slots = rd_r_u32(&r);
        c->labels_json = rd_r_str(&r);
        c->health_url = rd_r_str(&r);
        c->address = rd_r_str(&r);
        break;
    }
    case RD_CMD_NODE_TRANSITION: {
        struct rd_cmd_transition *c = &cmd->u.trans;
        c->node_id = rd_r_str(&r);
        c->epoch = rd_r_u64(&r);
        c->state = rd_r_u8(&r);
        c->reason = rd_r_str(&r);
        if (!r.err && c->state >= RD_NODE_STATE_COUNT)
            return RD_EPARSE;
        break;
    }
    default:
        return RD_EUNSUPPORTED;
    }
    return r.err ? RD_EPARSE : 0;
}
