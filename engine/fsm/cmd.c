#include <stdbool.h>
#include <string.h>

#include "cmd.h"
#include "common/util.h"
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

static const char *const fault_type_names[RD_FAULT_TYPE_COUNT] = {
    "crash",           "hang",         "network", "overload",    "degraded", "partition",
    "data_corruption", "policy_error", "manual",  "poison_task",
};
static const char *const severity_names[RD_SEV_COUNT] = {"critical", "major", "minor", "warning"};
static const char *const fault_status_names[RD_FAULT_STATUS_COUNT] = {"open", "resolved"};

static int lookup(const char *const *names, int n, const char *name)
{
    for (int i = 0; name != NULL && i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

const char *rd_fault_type_name(int t)
{
    return t >= 0 && t < RD_FAULT_TYPE_COUNT ? fault_type_names[t] : "unknown";
}
const char *rd_severity_name(int s)
{
    return s >= 0 && s < RD_SEV_COUNT ? severity_names[s] : "unknown";
}
const char *rd_fault_status_name(int s)
{
    return s >= 0 && s < RD_FAULT_STATUS_COUNT ? fault_status_names[s] : "unknown";
}
int rd_fault_type_parse(const char *name)
{
    return lookup(fault_type_names, RD_FAULT_TYPE_COUNT, name);
}
int rd_severity_parse(const char *name)
{
    return lookup(severity_names, RD_SEV_COUNT, name);
}
int rd_fault_status_parse(const char *name)
{
    return lookup(fault_status_names, RD_FAULT_STATUS_COUNT, name);
}

static const char *const task_state_names[RD_TASK_STATE_COUNT] = {
    "pending", "assigned", "running", "recovering", "completed", "failed", "cancelled", "paused",
};

const char *rd_task_state_name(int s)
{
    return s >= 0 && s < RD_TASK_STATE_COUNT ? task_state_names[s] : "unknown";
}

int rd_task_state_parse(const char *name)
{
    return lookup(task_state_names, RD_TASK_STATE_COUNT, name);
}

static const char *const recovery_status_names[RD_REC_STATUS_COUNT] = {
    "initiated", "running", "succeeded", "partial", "failed",
};

const char *rd_recovery_status_name(int s)
{
    return s >= 0 && s < RD_REC_STATUS_COUNT ? recovery_status_names[s] : "unknown";
}

static const char *const backup_status_names[RD_BACKUP_STATUS_COUNT] = {
    "running",
    "completed",
    "failed",
};

const char *rd_backup_status_name(int s)
{
    return s >= 0 && s < RD_BACKUP_STATUS_COUNT ? backup_status_names[s] : "unknown";
}

static const char *const check_status_names[RD_CHECK_STATUS_COUNT] = {
    "pending",
    "consistent",
    "mismatch",
    "incomplete",
};

const char *rd_check_status_name(int s)
{
    return s >= 0 && s < RD_CHECK_STATUS_COUNT ? check_status_names[s] : "unknown";
}

static const char *const conflict_kind_names[RD_CONFLICT_KIND_COUNT] = {"checkpoint", "complete",
                                                                        "fail"};
static const char *const conflict_res_names[RD_CONFLICT_RES_COUNT] = {"keep_newer", "keep_progress",
                                                                      "fail_task"};
static const char *const conflict_by_names[RD_CONFLICT_BY_COUNT] = {"policy", "config", "engine"};

const char *rd_conflict_kind_name(int k)
{
    return k >= 0 && k < RD_CONFLICT_KIND_COUNT ? conflict_kind_names[k] : "unknown";
}
const char *rd_conflict_res_name(int r)
{
    return r >= 0 && r < RD_CONFLICT_RES_COUNT ? conflict_res_names[r] : "unknown";
}
const char *rd_conflict_by_name(int b)
{
    return b >= 0 && b < RD_CONFLICT_BY_COUNT ? conflict_by_names[b] : "unknown";
}
int rd_conflict_kind_parse(const char *name)
{
    return lookup(conflict_kind_names, RD_CONFLICT_KIND_COUNT, name);
}
int rd_conflict_res_parse(const char *name)
{
    return lookup(conflict_res_names, RD_CONFLICT_RES_COUNT, name);
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
    case RD_CMD_FAULT_OPEN:
        return "fault_open";
    case RD_CMD_FAULT_RESOLVE:
        return "fault_resolve";
    case RD_CMD_TASK_SUBMIT:
        return "task_submit";
    case RD_CMD_TASK_ASSIGN:
        return "task_assign";
    case RD_CMD_TASK_CHECKPOINT:
        return "task_checkpoint";
    case RD_CMD_TASK_FINISH:
        return "task_finish";
    case RD_CMD_RECOVERY_OPEN:
        return "recovery_open";
    case RD_CMD_RECOVERY_CLOSE:
        return "recovery_close";
    case RD_CMD_REPLICA_INFO:
        return "replica_info";
    case RD_CMD_BACKUP:
        return "backup";
    case RD_CMD_ARCHIVE:
        return "archive";
    case RD_CMD_CHECK:
        return "check";
    case RD_CMD_CHECK_RESULT:
        return "check_result";
    case RD_CMD_CLUSTER_ID:
        return "cluster_id";
    case RD_CMD_CHECKPOINT_RESTORE:
        return "checkpoint_restore";
    case RD_CMD_AUDIT:
        return "audit";
    case RD_CMD_RECORDS_EXPORT:
        return "records_export";
    case RD_CMD_TASK_LIFECYCLE:
        return "task_lifecycle";
    case RD_CMD_CONFLICT:
        return "conflict";
    }
    return "unknown";
}

static void encode_audit(const struct rd_cmd_audit *a, struct rd_wbuf *w)
{
    rd_w_str(w, a->principal.p, a->principal.len);
    rd_w_u8(w, a->role);
    rd_w_str(w, a->source.p, a->source.len);
    rd_w_str(w, a->method.p, a->method.len);
    rd_w_str(w, a->action.p, a->action.len);
    rd_w_str(w, a->target.p, a->target.len);
    rd_w_u16(w, a->status);
    rd_w_str(w, a->error.p, a->error.len);
    rd_w_str(w, a->request_id.p, a->request_id.len);
    rd_w_str(w, a->cause.p, a->cause.len);
    rd_w_u32(w, a->keep);
    rd_w_u32(w, a->max_age_s);
}

static int decode_audit(struct rd_rbuf *r, struct rd_cmd_audit *a)
{
    a->present = 1;
    a->principal = rd_r_str(r);
    a->role = rd_r_u8(r);
    a->source = rd_r_str(r);
    a->method = rd_r_str(r);
    a->action = rd_r_str(r);
    a->target = rd_r_str(r);
    a->status = rd_r_u16(r);
    a->error = rd_r_str(r);
    a->request_id = rd_r_str(r);
    a->cause = rd_r_str(r);
    a->keep = rd_r_u32(r);
    a->max_age_s = rd_r_u32(r);
    if (r->err)
        return RD_EPARSE;
    if (a->principal.len == 0 || a->principal.len > RD_AUDIT_PRINCIPAL_MAX ||
        a->role > 4 /* RD_ROLE_ADMIN */ || a->source.len > RD_AUDIT_SOURCE_MAX ||
        a->method.len > RD_AUDIT_METHOD_MAX || a->action.len == 0 ||
        a->action.len > RD_AUDIT_ACTION_MAX || a->target.len > RD_AUDIT_TARGET_MAX ||
        a->error.len > RD_AUDIT_ERROR_MAX || a->request_id.len > RD_AUDIT_REQID_MAX ||
        a->cause.len > RD_AUDIT_CAUSE_MAX)
        return RD_EPARSE;
    return 0;
}

int rd_cmd_encode(const struct rd_cmd *cmd, struct rd_wbuf *w)
{
    bool audit = cmd->audit.present || cmd->type == RD_CMD_AUDIT;
    rd_w_u8(w, audit ? RD_CMD_FORMAT_AUDIT : RD_CMD_FORMAT);
    rd_w_u8(w, cmd->type);
    rd_w_u16(w, 0);
    rd_w_i64(w, cmd->time_ms);
    if (audit)
        encode_audit(&cmd->audit, w);
    switch (cmd->type) {
    case RD_CMD_NOOP:
    case RD_CMD_AUDIT:
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
        rd_w_u8(w, c->from_state);
        rd_w_u8(w, c->resolve_faults);
        break;
    }
    case RD_CMD_FAULT_OPEN: {
        const struct rd_cmd_fault_open *c = &cmd->u.fopen;
        rd_w_str(w, c->id.p, c->id.len);
        rd_w_str(w, c->node_id.p, c->node_id.len);
        rd_w_u8(w, c->fault_type);
        rd_w_u8(w, c->severity);
        rd_w_str(w, c->metadata_json.p, c->metadata_json.len);
        rd_w_str(w, c->recovery_action_json.p, c->recovery_action_json.len);
        rd_w_u8(w, c->set_state);
        rd_w_u64(w, c->epoch);
        rd_w_u8(w, c->from_state);
        if (c->task_id.len > 0) {
            rd_w_str(w, c->task_id.p, c->task_id.len);
            rd_w_u32(w, c->task_attempt);
        }
        break;
    }
    case RD_CMD_FAULT_RESOLVE: {
        const struct rd_cmd_fault_resolve *c = &cmd->u.fresolve;
        rd_w_str(w, c->id.p, c->id.len);
        rd_w_str(w, c->node_id.p, c->node_id.len);
        rd_w_str(w, c->note.p, c->note.len);
        break;
    }
    case RD_CMD_TASK_SUBMIT: {
        const struct rd_cmd_task_submit *c = &cmd->u.tsubmit;
        rd_w_str(w, c->task_id.p, c->task_id.len);
        rd_w_u8(w, c->priority);
        rd_w_u8(w, c->critical);
        rd_w_u32(w, c->slots);
        rd_w_str(w, c->labels_json.p, c->labels_json.len);
        rd_w_str(w, c->payload_json.p, c->payload_json.len);
        rd_w_u32(w, c->max_attempts);
        if (c->deadline_ms != 0)
            rd_w_i64(w, c->deadline_ms);
        break;
    }
    case RD_CMD_TASK_LIFECYCLE: {
        const struct rd_cmd_task_lifecycle *c = &cmd->u.tlife;
        rd_w_u8(w, c->op);
        rd_w_str(w, c->task_id.p, c->task_id.len);
        rd_w_str(w, c->reason.p, c->reason.len);
        rd_w_i64(w, c->retention_ms);
        rd_w_u32(w, c->max);
        break;
    }
    case RD_CMD_CONFLICT: {
        const struct rd_cmd_conflict *c = &cmd->u.conflict;
        rd_w_str(w, c->id.p, c->id.len);
        rd_w_str(w, c->task_id.p, c->task_id.len);
        rd_w_u32(w, c->attempt);
        rd_w_u8(w, c->kind);
        rd_w_u64(w, c->version);
        rd_w_u64(w, c->checksum);
        rd_w_str(w, c->data_json.p, c->data_json.len);
        rd_w_str(w, c->node_id.p, c->node_id.len);
        rd_w_u8(w, c->resolution);
        rd_w_u8(w, c->resolved_by);
        rd_w_str(w, c->reason.p, c->reason.len);
        rd_w_u8(w, c->keep);
        break;
    }
    case RD_CMD_TASK_ASSIGN: {
        const struct rd_cmd_task_assign *c = &cmd->u.tassign;
        rd_w_str(w, c->task_id.p, c->task_id.len);
        rd_w_u32(w, c->attempt);
        rd_w_str(w, c->node_id.p, c->node_id.len);
        rd_w_u64(w, c->node_epoch);
        rd_w_u8(w, c->state);
        rd_w_str(w, c->recovery_id.p, c->recovery_id.len);
        rd_w_str(w, c->item_id.p, c->item_id.len);
        rd_w_str(w, c->strategy.p, c->strategy.len);
        if (c->note.len > 0 || c->undelivered)
            rd_w_str(w, c->note.p, c->note.len);
        if (c->undelivered)
            rd_w_u8(w, c->undelivered);
        break;
    }
    case RD_CMD_RECOVERY_OPEN: {
        const struct rd_cmd_recovery_open *c = &cmd->u.ropen;
        rd_w_str(w, c->id.p, c->id.len);
        rd_w_str(w, c->node_id.p, c->node_id.len);
        rd_w_str(w, c->strategy.p, c->strategy.len);
        rd_w_str(w, c->reason.p, c->reason.len);
        break;
    }
    case RD_CMD_RECOVERY_CLOSE: {
        const struct rd_cmd_recovery_close *c = &cmd->u.rclose;
        rd_w_str(w, c->id.p, c->id.len);
        rd_w_u8(w, c->status);
        rd_w_str(w, c->strategy.p, c->strategy.len);
        break;
    }
    case RD_CMD_REPLICA_INFO:
        rd_w_u64(w, cmd->u.rinfo.id);
        rd_w_str(w, cmd->u.rinfo.api_url.p, cmd->u.rinfo.api_url.len);
        break;
    case RD_CMD_TASK_CHECKPOINT: {
        const struct rd_cmd_task_checkpoint *c = &cmd->u.tckpt;
        rd_w_str(w, c->task_id.p, c->task_id.len);
        rd_w_u32(w, c->attempt);
        rd_w_u64(w, c->version);
        rd_w_u64(w, c->checksum);
        rd_w_str(w, c->data_json.p, c->data_json.len);
        rd_w_u8(w, c->keep);
        break;
    }
    case RD_CMD_TASK_FINISH: {
        const struct rd_cmd_task_finish *c = &cmd->u.tfinish;
        rd_w_str(w, c->task_id.p, c->task_id.len);
        rd_w_u32(w, c->attempt);
        rd_w_u8(w, c->state);
        rd_w_str(w, c->result_json.p, c->result_json.len);
        break;
    }
    case RD_CMD_BACKUP: {
        const struct rd_cmd_backup *c = &cmd->u.backup;
        rd_w_u8(w, c->op);
        rd_w_str(w, c->id.p, c->id.len);
        rd_w_str(w, c->target.p, c->target.len);
        rd_w_u64(w, c->index);
        rd_w_u64(w, c->term);
        rd_w_u64(w, c->size);
        rd_w_u64(w, c->checksum);
        rd_w_u64(w, c->digest);
        rd_w_u8(w, c->ok);
        rd_w_str(w, c->error.p, c->error.len);
        break;
    }
    case RD_CMD_RECORDS_EXPORT:
        rd_w_u8(w, cmd->u.rexport.enabled);
        rd_w_u64(w, cmd->u.rexport.index);
        rd_w_u64(w, cmd->u.rexport.max_retained);
        break;
    case RD_CMD_ARCHIVE: {
        const struct rd_cmd_archive *c = &cmd->u.archive;
        rd_w_str(w, c->target.p, c->target.len);
        rd_w_u64(w, c->index);
        rd_w_str(w, c->object.p, c->object.len);
        break;
    }
    case RD_CMD_CHECK:
        rd_w_str(w, cmd->u.check.id.p, cmd->u.check.id.len);
        break;
    case RD_CMD_CHECK_RESULT: {
        const struct rd_cmd_check_result *c = &cmd->u.cresult;
        rd_w_str(w, c->id.p, c->id.len);
        rd_w_u8(w, c->status);
        rd_w_str(w, c->digests_json.p, c->digests_json.len);
        rd_w_str(w, c->diverged_json.p, c->diverged_json.len);
        break;
    }
    case RD_CMD_CLUSTER_ID:
        rd_w_str(w, cmd->u.cid.id.p, cmd->u.cid.id.len);
        break;
    case RD_CMD_CHECKPOINT_RESTORE: {
        const struct rd_cmd_checkpoint_restore *c = &cmd->u.crestore;
        rd_w_str(w, c->task_id.p, c->task_id.len);
        rd_w_u64(w, c->bad_version);
        rd_w_u64(w, c->version);
        rd_w_u8(w, c->from_backup);
        rd_w_i64(w, c->at);
        rd_w_u64(w, c->checksum);
        rd_w_str(w, c->data_json.p, c->data_json.len);
        rd_w_str(w, c->source.p, c->source.len);
        rd_w_str(w, c->fault_id.p, c->fault_id.len);
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
    if (format != RD_CMD_FORMAT && format != RD_CMD_FORMAT_AUDIT)
        return RD_EUNSUPPORTED;
    if (format == RD_CMD_FORMAT_AUDIT && decode_audit(&r, &cmd->audit) != 0)
        return RD_EPARSE;
    switch (cmd->type) {
    case RD_CMD_NOOP:
        break;
    case RD_CMD_AUDIT:
        if (!cmd->audit.present) /* a record alone needs its record */
            return RD_EPARSE;
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
        c->from_state = rd_r_u8(&r);
        c->resolve_faults = rd_r_u8(&r);
        if (!r.err && (c->state >= RD_NODE_STATE_COUNT ||
                       (c->from_state >= RD_NODE_STATE_COUNT && c->from_state != RD_STATE_ANY)))
            return RD_EPARSE;
        break;
    }
    case RD_CMD_FAULT_OPEN: {
        struct rd_cmd_fault_open *c = &cmd->u.fopen;
        c->id = rd_r_str(&r);
        c->node_id = rd_r_str(&r);
        c->fault_type = rd_r_u8(&r);
        c->severity = rd_r_u8(&r);
        c->metadata_json = rd_r_str(&r);
        c->recovery_action_json = rd_r_str(&r);
        c->set_state = rd_r_u8(&r);
        c->epoch = rd_r_u64(&r);
        c->from_state = rd_r_u8(&r);
        /* The appended quarantine fields; an older entry ends here (or in
         * the zero padding the log adds, which reads as none). */
        c->task_id = (struct rd_str){NULL, 0};
        c->task_attempt = 0;
        if (!r.err && r.len - r.off >= 8) {
            c->task_id = rd_r_str(&r);
            c->task_attempt = rd_r_u32(&r);
        }
        if (!r.err && (c->fault_type >= RD_FAULT_TYPE_COUNT || c->severity >= RD_SEV_COUNT ||
                       c->id.len == 0 || c->id.len > 64 ||
                       (c->set_state >= RD_NODE_STATE_COUNT && c->set_state != RD_STATE_ANY) ||
                       (c->from_state >= RD_NODE_STATE_COUNT && c->from_state != RD_STATE_ANY)))
            return RD_EPARSE;
        break;
    }
    case RD_CMD_FAULT_RESOLVE: {
        struct rd_cmd_fault_resolve *c = &cmd->u.fresolve;
        c->id = rd_r_str(&r);
        c->node_id = rd_r_str(&r);
        c->note = rd_r_str(&r);
        break;
    }
    case RD_CMD_TASK_SUBMIT: {
        struct rd_cmd_task_submit *c = &cmd->u.tsubmit;
        c->task_id = rd_r_str(&r);
        c->priority = rd_r_u8(&r);
        c->critical = rd_r_u8(&r);
        c->slots = rd_r_u32(&r);
        c->labels_json = rd_r_str(&r);
        c->payload_json = rd_r_str(&r);
        c->max_attempts = rd_r_u32(&r);
        c->deadline_ms = 0;
        if (!r.err && r.len - r.off >= 8) /* appended; zero padding reads as none */
            c->deadline_ms = rd_r_i64(&r);
        if (!r.err &&
            (c->task_id.len == 0 || c->task_id.len > 64 || c->priority > 9 || c->deadline_ms < 0))
            return RD_EPARSE;
        break;
    }
    case RD_CMD_TASK_LIFECYCLE: {
        struct rd_cmd_task_lifecycle *c = &cmd->u.tlife;
        c->op = rd_r_u8(&r);
        c->task_id = rd_r_str(&r);
        c->reason = rd_r_str(&r);
        c->retention_ms = rd_r_i64(&r);
        c->max = rd_r_u32(&r);
        if (!r.err && (c->op >= RD_TASK_OP_COUNT || c->task_id.len > 64 || c->reason.len > 1024 ||
                       c->retention_ms < 0 || (c->op != RD_TASK_OP_PRUNE && c->task_id.len == 0)))
            return RD_EPARSE;
        break;
    }
    case RD_CMD_CONFLICT: {
        struct rd_cmd_conflict *c = &cmd->u.conflict;
        c->id = rd_r_str(&r);
        c->task_id = rd_r_str(&r);
        c->attempt = rd_r_u32(&r);
        c->kind = rd_r_u8(&r);
        c->version = rd_r_u64(&r);
        c->checksum = rd_r_u64(&r);
        c->data_json = rd_r_str(&r);
        c->node_id = rd_r_str(&r);
        c->resolution = rd_r_u8(&r);
        c->resolved_by = rd_r_u8(&r);
        c->reason = rd_r_str(&r);
        c->keep = rd_r_u8(&r);
        if (!r.err &&
            (c->id.len == 0 || c->id.len > 39 || c->task_id.len == 0 || c->task_id.len > 39 ||
             c->kind >= RD_CONFLICT_KIND_COUNT || c->resolution >= RD_CONFLICT_RES_COUNT ||
             c->resolved_by >= RD_CONFLICT_BY_COUNT || c->node_id.len > 255 ||
             c->reason.len > 1024 || (c->kind == RD_CONFLICT_CHECKPOINT) != (c->version != 0)))
            return RD_EPARSE;
        break;
    }
    case RD_CMD_TASK_ASSIGN: {
        struct rd_cmd_task_assign *c = &cmd->u.tassign;
        c->task_id = rd_r_str(&r);
        c->attempt = rd_r_u32(&r);
        c->node_id = rd_r_str(&r);
        c->node_epoch = rd_r_u64(&r);
        c->state = rd_r_u8(&r);
        c->recovery_id = rd_r_str(&r);
        c->item_id = rd_r_str(&r);
        c->strategy = rd_r_str(&r);
        c->note = (struct rd_str){NULL, 0};
        if (!r.err && r.len - r.off >= 4) /* appended; zero padding reads as "" */
            c->note = rd_r_str(&r);
        if (!r.err && r.len - r.off >= 1) /* appended; zero padding reads as 0 */
            c->undelivered = rd_r_u8(&r);
        if (!r.err && (c->state >= RD_TASK_STATE_COUNT || c->undelivered > 1))
            return RD_EPARSE;
        break;
    }
    case RD_CMD_RECOVERY_OPEN: {
        struct rd_cmd_recovery_open *c = &cmd->u.ropen;
        c->id = rd_r_str(&r);
        c->node_id = rd_r_str(&r);
        c->strategy = rd_r_str(&r);
        c->reason = rd_r_str(&r);
        if (!r.err && (c->id.len == 0 || c->id.len >= 40))
            return RD_EPARSE;
        break;
    }
    case RD_CMD_RECOVERY_CLOSE: {
        struct rd_cmd_recovery_close *c = &cmd->u.rclose;
        c->id = rd_r_str(&r);
        c->status = rd_r_u8(&r);
        c->strategy = rd_r_str(&r);
        if (!r.err && c->status >= RD_REC_STATUS_COUNT)
            return RD_EPARSE;
        break;
    }
    case RD_CMD_REPLICA_INFO:
        cmd->u.rinfo.id = rd_r_u64(&r);
        cmd->u.rinfo.api_url = rd_r_str(&r);
        if (!r.err && (cmd->u.rinfo.id == 0 || cmd->u.rinfo.api_url.len > 255))
            return RD_EPARSE;
        break;
    case RD_CMD_TASK_CHECKPOINT: {
        struct rd_cmd_task_checkpoint *c = &cmd->u.tckpt;
        c->task_id = rd_r_str(&r);
        c->attempt = rd_r_u32(&r);
        c->version = rd_r_u64(&r);
        c->checksum = rd_r_u64(&r);
        c->data_json = rd_r_str(&r);
        c->keep = rd_r_u8(&r);
        break;
    }
    case RD_CMD_TASK_FINISH: {
        struct rd_cmd_task_finish *c = &cmd->u.tfinish;
        c->task_id = rd_r_str(&r);
        c->attempt = rd_r_u32(&r);
        c->state = rd_r_u8(&r);
        c->result_json = rd_r_str(&r);
        if (!r.err && c->state >= RD_TASK_STATE_COUNT)
            return RD_EPARSE;
        break;
    }
    case RD_CMD_BACKUP: {
        struct rd_cmd_backup *c = &cmd->u.backup;
        c->op = rd_r_u8(&r);
        c->id = rd_r_str(&r);
        c->target = rd_r_str(&r);
        c->index = rd_r_u64(&r);
        c->term = rd_r_u64(&r);
        c->size = rd_r_u64(&r);
        c->checksum = rd_r_u64(&r);
        c->digest = rd_r_u64(&r);
        c->ok = rd_r_u8(&r);
        c->error = rd_r_str(&r);
        if (!r.err && (c->op >= RD_BACKUP_OP_COUNT || c->id.len == 0 || c->id.len > 64 ||
                       c->target.len > 63 || c->error.len > 1024))
            return RD_EPARSE;
        break;
    }
    case RD_CMD_ARCHIVE: {
        struct rd_cmd_archive *c = &cmd->u.archive;
        c->target = rd_r_str(&r);
        c->index = rd_r_u64(&r);
        c->object = rd_r_str(&r);
        if (!r.err && (c->target.len > 63 || c->object.len > 255))
            return RD_EPARSE;
        break;
    }
    case RD_CMD_RECORDS_EXPORT:
        cmd->u.rexport.enabled = rd_r_u8(&r);
        cmd->u.rexport.index = rd_r_u64(&r);
        cmd->u.rexport.max_retained = rd_r_u64(&r);
        if (!r.err && cmd->u.rexport.enabled > 1)
            return RD_EPARSE;
        break;
    case RD_CMD_CHECK:
        cmd->u.check.id = rd_r_str(&r);
        if (!r.err && (cmd->u.check.id.len == 0 || cmd->u.check.id.len > 64))
            return RD_EPARSE;
        break;
    case RD_CMD_CHECK_RESULT: {
        struct rd_cmd_check_result *c = &cmd->u.cresult;
        c->id = rd_r_str(&r);
        c->status = rd_r_u8(&r);
        c->digests_json = rd_r_str(&r);
        c->diverged_json = rd_r_str(&r);
        if (!r.err && (c->id.len == 0 || c->id.len > 64 || c->status >= RD_CHECK_STATUS_COUNT))
            return RD_EPARSE;
        break;
    }
    case RD_CMD_CLUSTER_ID:
        cmd->u.cid.id = rd_r_str(&r);
        if (!r.err && (cmd->u.cid.id.len == 0 || cmd->u.cid.id.len > 64))
            return RD_EPARSE;
        break;
    case RD_CMD_CHECKPOINT_RESTORE: {
        struct rd_cmd_checkpoint_restore *c = &cmd->u.crestore;
        c->task_id = rd_r_str(&r);
        c->bad_version = rd_r_u64(&r);
        c->version = rd_r_u64(&r);
        c->from_backup = rd_r_u8(&r);
        c->at = rd_r_i64(&r);
        c->checksum = rd_r_u64(&r);
        c->data_json = rd_r_str(&r);
        c->source = rd_r_str(&r);
        c->fault_id = rd_r_str(&r);
        if (r.err)
            break;
        /* A held version must be older than the bad one; a backup's may be
         * the same version (a good copy of it); its data must match its
         * checksum: the leader checked it, so anything else is damage. */
        if (c->task_id.len == 0 || c->task_id.len > 64 || c->from_backup > 1 || c->version == 0 ||
            c->version > c->bad_version || (!c->from_backup && c->version == c->bad_version) ||
            c->source.len > 255 || c->fault_id.len > 64 ||
            (c->from_backup &&
             rd_fnv1a(RD_FNV_INIT, c->data_json.p, c->data_json.len) != c->checksum))
            return RD_EPARSE;
        break;
    }
    default:
        return RD_EUNSUPPORTED;
    }
    return r.err ? RD_EPARSE : 0;
}

/* ---- batches (format 3) -------------------------------------------------- */

bool rd_cmd_batchable(uint8_t type)
{
    switch (type) {
    case RD_CMD_NOOP:
    case RD_CMD_NODE_REGISTER:
    case RD_CMD_NODE_TRANSITION:
    case RD_CMD_FAULT_OPEN:
    case RD_CMD_FAULT_RESOLVE:
    case RD_CMD_TASK_SUBMIT:
    case RD_CMD_TASK_ASSIGN:
    case RD_CMD_TASK_CHECKPOINT:
    case RD_CMD_TASK_FINISH:
    case RD_CMD_RECOVERY_OPEN:
    case RD_CMD_RECOVERY_CLOSE:
    case RD_CMD_REPLICA_INFO:
    case RD_CMD_AUDIT:
        return true;
    default:
        return false;
    }
}

bool rd_cmd_is_batch(const void *p, size_t len)
{
    return len > 0 && ((const uint8_t *)p)[0] == RD_CMD_FORMAT_BATCH;
}

void rd_cmd_batch_begin(struct rd_wbuf *w, uint32_t count, int64_t time_ms)
{
    rd_w_u8(w, RD_CMD_FORMAT_BATCH);
    rd_w_u8(w, 0);
    rd_w_u16(w, 0);
    rd_w_i64(w, time_ms);
    rd_w_u32(w, count);
}

void rd_cmd_batch_add(struct rd_wbuf *w, const void *cmd, size_t len)
{
    if (len > UINT32_MAX) {
        w->err = RD_ETOOLARGE;
        return;
    }
    rd_w_u32(w, (uint32_t)len);
    rd_w_bytes(w, cmd, len);
}

int rd_cmd_batch_append(struct rd_wbuf *w, const struct rd_cmd *cmd)
{
    if (w->err)
        return w->err;
    size_t was = w->len;
    if (was == 0) {
        static const uint8_t head[RD_CMD_BATCH_HEADER_SIZE];
        rd_w_bytes(w, head, sizeof(head));
    }
    size_t at = w->len;
    rd_w_u32(w, 0);
    int rv = w->err ? w->err : rd_cmd_encode(cmd, w);
    if (rv == 0 && w->len - at - 4 > UINT32_MAX)
        rv = RD_ETOOLARGE;
    if (rv != 0) {
        /* A failed growth leaves the bytes before it as they were. */
        w->len = was;
        w->err = 0;
        return rv;
    }
    uint32_t len = (uint32_t)(w->len - at - 4);
    for (int i = 0; i < 4; i++)
        w->p[at + (size_t)i] = (uint8_t)(len >> (8 * i));
    return 0;
}

void rd_cmd_batch_seal(struct rd_wbuf *w, uint32_t count, int64_t time_ms)
{
    if (w->err)
        return;
    if (count == 0 || w->len < RD_CMD_BATCH_HEADER_SIZE + 4) {
        w->err = RD_EINVAL;
        return;
    }
    if (count == 1) {
        size_t at = RD_CMD_BATCH_HEADER_SIZE + 4;
        memmove(w->p, w->p + at, w->len - at);
        w->len -= at;
        return;
    }
    size_t len = w->len;
    w->len = 0;
    rd_cmd_batch_begin(w, count, time_ms); /* over the room left for it */
    w->len = len;
}

int rd_cmd_batch_open(struct rd_cmd_batch *b, const void *p, size_t len)
{
    memset(b, 0, sizeof(*b));
    rd_r_init(&b->r, p, len);
    uint8_t format = rd_r_u8(&b->r);
    (void)rd_r_u8(&b->r);
    (void)rd_r_u16(&b->r);
    b->time_ms = rd_r_i64(&b->r);
    b->count = rd_r_u32(&b->r);
    if (b->r.err)
        return RD_EPARSE;
    if (format != RD_CMD_FORMAT_BATCH || b->count > RD_CMD_BATCH_MAX)
        return RD_EUNSUPPORTED;
    return 0;
}

int rd_cmd_batch_next(struct rd_cmd_batch *b, const uint8_t **cmd, size_t *len)
{
    if (b->next >= b->count)
        return 0;
    uint32_t n = rd_r_u32(&b->r);
    const uint8_t *p = rd_r_bytes(&b->r, n);
    if (b->r.err)
        return RD_EPARSE;
    b->next++;
    *cmd = p;
    *len = n;
    return 1;
}
