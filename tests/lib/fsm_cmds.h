/* Builders for encoded log commands, shared by the state machine tests. */
#ifndef RD_TEST_FSM_CMDS_H
#define RD_TEST_FSM_CMDS_H

#include <string.h>

#include "common/util.h"
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

static inline struct rd_wbuf cmd_task_submit(const char *id, int prio, int critical, uint32_t slots,
                                             uint32_t max_attempts, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_TASK_SUBMIT, .time_ms = t};
    c.u.tsubmit.task_id = RD_STR(id);
    c.u.tsubmit.priority = (uint8_t)prio;
    c.u.tsubmit.critical = (uint8_t)critical;
    c.u.tsubmit.slots = slots;
    c.u.tsubmit.labels_json = RD_STR("{}");
    c.u.tsubmit.payload_json = RD_STR("{\"prompt\":\"summarise\"}");
    c.u.tsubmit.max_attempts = max_attempts;
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    return w;
}

/* A move off an agent that never heard of the attempt when `undelivered`. */
static inline struct rd_wbuf cmd_task_assign_u(const char *id, uint32_t attempt, const char *node,
                                               uint64_t epoch, int64_t t, bool undelivered)
{
    struct rd_cmd c = {.type = RD_CMD_TASK_ASSIGN, .time_ms = t};
    c.u.tassign.task_id = RD_STR(id);
    c.u.tassign.attempt = attempt;
    c.u.tassign.node_id = RD_STR(node);
    c.u.tassign.node_epoch = epoch;
    c.u.tassign.state = RD_TASK_ASSIGNED;
    c.u.tassign.undelivered = undelivered;
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    return w;
}

static inline struct rd_wbuf cmd_task_assign(const char *id, uint32_t attempt, const char *node,
                                             uint64_t epoch, int64_t t)
{
    return cmd_task_assign_u(id, attempt, node, epoch, t, false);
}

static inline struct rd_wbuf cmd_task_ckpt(const char *id, uint32_t attempt, uint64_t version,
                                           const char *data, uint8_t keep, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_TASK_CHECKPOINT, .time_ms = t};
    c.u.tckpt.task_id = RD_STR(id);
    c.u.tckpt.attempt = attempt;
    c.u.tckpt.version = version;
    c.u.tckpt.data_json = RD_STR(data);
    c.u.tckpt.checksum = rd_fnv1a(RD_FNV_INIT, data, strlen(data));
    c.u.tckpt.keep = keep;
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    return w;
}

static inline struct rd_wbuf cmd_task_finish(const char *id, uint32_t attempt, int state,
                                             const char *result, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_TASK_FINISH, .time_ms = t};
    c.u.tfinish.task_id = RD_STR(id);
    c.u.tfinish.attempt = attempt;
    c.u.tfinish.state = (uint8_t)state;
    c.u.tfinish.result_json = RD_STR(result);
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    return w;
}

/* A conflict (availability mode) of `kind` from `attempt`, resolved as `res`
 * by `by`: `data` is the checkpoint data (version > 0), result or error. */
static inline struct rd_wbuf cmd_conflict(const char *cid, const char *task, uint32_t attempt,
                                          int kind, uint64_t version, const char *data,
                                          const char *node, int res, int by, const char *reason,
                                          int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_CONFLICT, .time_ms = t};
    c.u.conflict.id = RD_STR(cid);
    c.u.conflict.task_id = RD_STR(task);
    c.u.conflict.attempt = attempt;
    c.u.conflict.kind = (uint8_t)kind;
    c.u.conflict.version = version;
    c.u.conflict.checksum = rd_fnv1a(RD_FNV_INIT, data, strlen(data));
    c.u.conflict.data_json = RD_STR(data);
    c.u.conflict.node_id = RD_STR(node);
    c.u.conflict.resolution = (uint8_t)res;
    c.u.conflict.resolved_by = (uint8_t)by;
    c.u.conflict.reason = RD_STR(reason);
    c.u.conflict.keep = 3;
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_encode(&c, &w);
    return w;
}

#endif
