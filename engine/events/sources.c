/*
 * The log-derived events (events.h): what the state machine's observers and
 * its applied entries say, as each event's fields. Every replica runs this
 * on the entries it applies, so the same entry gives the same events.
 */
#include <string.h>

#include "events.h"
#include "fsm/fsm.h"

static json_t *json_doc(const char *text)
{
    json_t *v = text != NULL && text[0] != '\0' ? json_loads(text, 0, NULL) : NULL;
    return v != NULL ? v : json_null();
}

void rd_events_node(struct rd_events *ev, uint64_t index, const struct rd_node *n, int old_state)
{
    json_t *o = json_pack("{s:s%,s:s,s:s?,s:I,s:s}", "node_id", n->node_id, n->id_len, "state",
                          rd_node_state_name(n->state), "old_state",
                          old_state >= 0 ? rd_node_state_name(old_state) : NULL, "epoch",
                          (json_int_t)n->epoch, "reason", n->reason ? n->reason : "");
    rd_events_log(ev, index, RD_EV_NODE, n->node_id, o);
}

void rd_events_fault(struct rd_events *ev, uint64_t index, const struct rd_fault *x)
{
    bool open = x->status == RD_FAULT_OPEN_ST;
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o}", "fault_id", x->id, "node_id", x->node_id,
                          "fault_type", rd_fault_type_name(x->type), "severity",
                          rd_severity_name(x->severity), "status", rd_fault_status_name(x->status),
                          "metadata", json_doc(x->metadata_json), "recovery_action",
                          json_doc(x->recovery_action_json));
    if (!open)
        json_object_set_new(o, "resolution", json_string(x->resolution ? x->resolution : ""));
    rd_events_log(ev, index, open ? RD_EV_FAULT_OPENED : RD_EV_FAULT_RESOLVED, x->node_id, o);
}

void rd_events_task(struct rd_events *ev, uint64_t index, const struct rd_task *t, int old_state,
                    const char *old_node)
{
    const char *from = old_node != NULL ? old_node : "";
    if (old_state == (int)t->state && strcmp(from, t->node_id) == 0)
        return; /* a checkpoint, or nothing an observer of the stream needs */
    json_t *o = json_pack(
        "{s:s,s:s,s:s?,s:s,s:s,s:I,s:i}", "task_id", t->id, "state", rd_task_state_name(t->state),
        "old_state", old_state >= 0 ? rd_task_state_name(old_state) : NULL, "node_id", t->node_id,
        "old_node_id", from, "attempt", (json_int_t)t->attempt, "priority", (int)t->priority);
    /* The task's agent, or the one it left. */
    rd_events_log(ev, index, RD_EV_TASK, t->node_id[0] ? t->node_id : from, o);
}

static void recovery_event(struct rd_events *ev, uint64_t index, const struct rd_recovery *r,
                           bool opened)
{
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "recovery_id", r->id, "node_id", r->node_id,
                  "strategy", r->strategy ? r->strategy : "", "reason", r->reason ? r->reason : "",
                  "status", rd_recovery_status_name(r->status), "total", (json_int_t)r->total,
                  "recovered", (json_int_t)r->recovered, "failed", (json_int_t)r->failed);
    rd_events_log(ev, index, opened ? RD_EV_RECOVERY_OPENED : RD_EV_RECOVERY_CLOSED, r->node_id, o);
}

static const char *const backup_ops[RD_BACKUP_OP_COUNT] = {"begin", "complete", "fail", "verify",
                                                           "remove"};

static void backup_event(struct rd_events *ev, uint64_t index, const struct rd_fsm *f,
                         const struct rd_cmd_backup *c)
{
    char id[sizeof(((struct rd_backup *)0)->id)];
    size_t n = c->id.len < sizeof(id) - 1 ? c->id.len : sizeof(id) - 1;
    memcpy(id, c->id.p, n);
    id[n] = '\0';
    const struct rd_backup *b = rd_fsm_backup_find(f, id);
    json_t *o = json_pack("{s:s,s:s}", "backup_id", id, "op",
                          c->op < RD_BACKUP_OP_COUNT ? backup_ops[c->op] : "unknown");
    if (b != NULL) {
        json_object_set_new(o, "target", json_string(b->target));
        json_object_set_new(o, "status", json_string(rd_backup_status_name(b->status)));
        json_object_set_new(o, "backup_index", json_integer((json_int_t)b->index));
        json_object_set_new(o, "size", json_integer((json_int_t)b->size));
        if (b->verify_ok >= 0)
            json_object_set_new(o, "verified", json_boolean(b->verify_ok == 1));
        if (b->error != NULL)
            json_object_set_new(o, "error", json_string(b->error));
    } else {
        json_object_set_new(o, "status", json_string("removed"));
    }
    rd_events_log(ev, index, RD_EV_BACKUP, NULL, o);
}

static void check_event(struct rd_events *ev, uint64_t index, const struct rd_fsm *f,
                        const struct rd_cmd_check_result *c)
{
    char id[sizeof(((struct rd_check *)0)->id)];
    size_t n = c->id.len < sizeof(id) - 1 ? c->id.len : sizeof(id) - 1;
    memcpy(id, c->id.p, n);
    id[n] = '\0';
    const struct rd_check *k = rd_fsm_check_find(f, id);
    if (k == NULL)
        return;
    json_t *o =
        json_pack("{s:s,s:s,s:I,s:o,s:o}", "check_id", id, "status",
                  rd_check_status_name(k->status), "check_index", (json_int_t)k->index, "digests",
                  json_doc(k->digests_json), "diverged", json_doc(k->diverged_json));
    rd_events_log(ev, index, RD_EV_CONSISTENCY, NULL, o);
}

/* A conflict recorded by this entry (not the same write again, which
 * finds the record of an earlier one): the record without its data. */
static void conflict_event(struct rd_events *ev, uint64_t index, const struct rd_fsm *f,
                           const struct rd_cmd_conflict *c)
{
    char id[40];
    size_t n = c->id.len < sizeof(id) - 1 ? c->id.len : sizeof(id) - 1;
    memcpy(id, c->id.p, n);
    id[n] = '\0';
    const struct rd_conflict *x = rd_fsm_conflict_by_seq(f, f->result.value);
    if (x == NULL || strcmp(x->id, id) != 0)
        return;
    json_t *o = json_pack(
        "{s:s,s:s,s:I,s:I,s:s,s:I,s:I,s:s,s:s,s:s,s:b,s:s,s:s}", "conflict_id", x->id, "task_id",
        x->task_id, "attempt", (json_int_t)x->attempt, "task_attempt", (json_int_t)x->task_attempt,
        "write_kind", rd_conflict_kind_name(x->kind), "version", (json_int_t)x->version,
        "stored_version", (json_int_t)x->stored_version, "node_id", x->node_id, "task_node_id",
        x->task_node_id, "resolution", rd_conflict_res_name(x->resolution), "adopted", x->adopted,
        "resolved_by", rd_conflict_by_name(x->resolved_by), "reason", x->reason);
    rd_events_log(ev, index, RD_EV_CONFLICT, x->node_id[0] ? x->node_id : NULL, o);
}

/* A task moved by a recovery run: its event (this command's) names the run
 * and strategy. */
static void note_recovery_move(struct rd_events *ev, uint64_t index,
                               const struct rd_cmd_task_assign *c)
{
    if (c->recovery_id.len == 0 || ev->pend_index != index)
        return;
    for (size_t i = ev->cmd_from; i < ev->n_pend; i++) {
        if (ev->pend[i].kind != RD_EV_TASK || ev->pend[i].local)
            continue;
        json_object_set_new(ev->pend[i].fields, "recovery_id",
                            json_stringn(c->recovery_id.p, c->recovery_id.len));
        json_object_set_new(ev->pend[i].fields, "strategy",
                            json_stringn(c->strategy.p, c->strategy.len));
    }
}

void rd_events_command(struct rd_events *ev, const struct rd_fsm *f, uint64_t index,
                       const struct rd_cmd *cmd)
{
    switch (cmd->type) {
    case RD_CMD_RECOVERY_OPEN:
    case RD_CMD_RECOVERY_CLOSE: {
        char id[40];
        const struct rd_str *s =
            cmd->type == RD_CMD_RECOVERY_OPEN ? &cmd->u.ropen.id : &cmd->u.rclose.id;
        size_t n = s->len < sizeof(id) - 1 ? s->len : sizeof(id) - 1;
        memcpy(id, s->p, n);
        id[n] = '\0';
        const struct rd_recovery *r = rd_fsm_recovery(f, id);
        if (r != NULL)
            recovery_event(ev, index, r, cmd->type == RD_CMD_RECOVERY_OPEN);
        break;
    }
    case RD_CMD_TASK_ASSIGN:
        note_recovery_move(ev, index, &cmd->u.tassign);
        break;
    case RD_CMD_BACKUP:
        backup_event(ev, index, f, &cmd->u.backup);
        break;
    case RD_CMD_CHECK_RESULT:
        check_event(ev, index, f, &cmd->u.cresult);
        break;
    case RD_CMD_CONFLICT:
        conflict_event(ev, index, f, &cmd->u.conflict);
        break;
    default:
        break;
    }
    /* What the next command of the entry adds is its own. */
    if (ev->pend_index == index)
        ev->cmd_from = ev->n_pend;
}

void rd_events_entry(struct rd_events *ev, const struct rd_fsm *f, uint64_t index, int64_t time_ms)
{
    /* A snapshot restored since the last entry: what it covered was never
     * seen here as events. */
    rd_events_note_restores(ev, f->restores, index > 0 ? index - 1 : 0);
    rd_events_commit(ev, index, time_ms);
}
