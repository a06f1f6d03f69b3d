/* Builders for encoded log commands, shared by the state machine tests. */
#ifndef RD_TEST_FSM_CMDS_H
#define RD_TEST_FSM_CMDS_H

#include <string.h>

#include "fsm/cmd.h"

static inline struct rd_wbuf cmd_register(const char *id, uint32_t slots, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_REGISTER, .time_ms = t};
    c.u.reg.node_id = RD_STR(id);
    c.u.reg.slots = slots;
    c.u.reg.labels_json = RD_STR("{\"zone\":\"a\"}");
    c.u.reg.health_url = RD_STR("");
    c.u.reg.address = RD_STR("");
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    return w;
}

static inline struct rd_wbuf cmd_transition(const char *id, uint64_t epoch, int state, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_TRANSITION, .time_ms = t};
    c.u.trans.node_id = RD_STR(id);
    c.u.trans.epoch = epoch;
    c.u.trans.state = (uint8_t)state;
    c.u.trans.reason = RD_STR("test");
    c.u.trans.from_state = RD_STATE_ANY;
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    return w;
}

static inline struct rd_wbuf cmd_fault_open(const char *id, const char *node, int type, int sev,
                                            int set_state, uint64_t epoch, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_FAULT_OPEN, .time_ms = t};
    c.u.fopen.id = RD_STR(id);
    c.u.fopen.node_id = RD_STR(node);
    c.u.fopen.fault_type = (uint8_t)type;
    c.u.fopen.severity = (uint8_t)sev;
    c.u.fopen.metadata_json = RD_STR("{\"signals\":[\"heartbeat\"]}");
    c.u.fopen.recovery_action_json = RD_STR("null");
    c.u.fopen.set_state = (uint8_t)set_state;
    c.u.fopen.epoch = epoch;
    c.u.fopen.from_state = RD_STATE_ANY;
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    return w;
}

static inline struct rd_wbuf cmd_fault_resolve(const char *id, const char *node, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_FAULT_RESOLVE, .time_ms = t};
    c.u.fresolve.id = RD_STR(id);
    c.u.fresolve.node_id = RD_STR(node);
    c.u.fresolve.note = RD_STR("recovered");
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    return w;
}

#endif
