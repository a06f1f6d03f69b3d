/*
 * Conflicts in availability mode (leader only; docs/operations.md,
 * "Partitions: consistency or availability"): a write of a superseded
 * attempt is resolved here, before anything is proposed, so the log
 * command carries the decision and every replica carries out the same one
 * (the state machine decides nothing it could decide differently). The
 * decision is select.lua's on_conflict hook's; without the hook, or when it
 * fails (a policy_error fault, as for the other hooks), the config's
 * fault_tolerance.partition.on_conflict.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "config/config.h"
#include "policy/policy.h"
#include "recoveryd/error.h"
#include "sched_int.h"

_Static_assert((int)RD_CFG_KEEP_NEWER == (int)RD_CONFLICT_KEEP_NEWER &&
                   (int)RD_CFG_KEEP_PROGRESS == (int)RD_CONFLICT_KEEP_PROGRESS &&
                   (int)RD_CFG_FAIL_TASK == (int)RD_CONFLICT_FAIL_TASK,
               "partition.on_conflict and the state machine's resolutions share their values");

/* The hook's event: the record to be, without the data, and the task. */
static json_t *conflict_event(const struct rd_task *t, const struct rd_conflict_write *w)
{
    const struct rd_checkpoint *c = rd_task_checkpoint(t);
    json_t *labels = json_loads(t->labels_json, 0, NULL);
    json_t *e = json_pack(
        "{s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:i,s:b,s:o}", "kind", rd_conflict_kind_name(w->kind),
        "conflict_id", w->conflict_id, "task_id", t->id, "attempt", (json_int_t)w->attempt,
        "task_attempt", (json_int_t)t->attempt, "stored_version", (json_int_t)(c ? c->version : 0),
        "task_state", rd_task_state_name(t->state), "priority", (int)t->priority, "critical",
        t->critical, "labels", labels ? labels : json_object());
    if (e == NULL)
        return NULL;
    if (w->kind == RD_CONFLICT_CHECKPOINT)
        json_object_set_new(e, "version", json_integer((json_int_t)w->version));
    if (w->node_id[0])
        json_object_set_new(e, "node_id", json_string(w->node_id));
    if (t->node_id[0])
        json_object_set_new(e, "task_node_id", json_string(t->node_id));
    return e;
}

void rd_sched_conflict_decide(struct rd_sched *s, const struct rd_task *t,
                              const struct rd_conflict_write *w, struct rd_conflict_decision *out)
{
    struct rd_policy_host *h = *s->env.policy;
    unsigned fallback = s->env.cfg->fault_tolerance.partition.on_conflict;
    out->resolution = (uint8_t)fallback;
    out->resolved_by = RD_CONFLICT_BY_CONFIG;
    if (rd_task_finished(t)) { /* recorded as it is: the state machine says so too */
        out->resolution = RD_CONFLICT_KEEP_NEWER;
        out->resolved_by = RD_CONFLICT_BY_ENGINE;
        snprintf(out->reason, sizeof(out->reason), "task finished");
        return;
    }
    if (!rd_policy_has_hook(h, RD_HOOK_ON_CONFLICT)) {
        snprintf(out->reason, sizeof(out->reason),
                 "select.lua has no on_conflict hook: fault_tolerance.partition.on_conflict");
        return;
    }
    /* The view without the nodes: building and converting those for
     * every conflict would cost in proportion to the fleet. */
    json_t *event = conflict_event(t, w), *view = rd_sched__view_settings(s), *answer = NULL;
    char err[RD_POLICY_ERRLEN] = "";
    int rv = event && view ? rd_policy_hook(h, RD_HOOK_ON_CONFLICT, event, view, NULL, &answer, err,
                                            sizeof(err))
                           : RD_ENOMEM;
    json_decref(event);
    json_decref(view);
    int res = rv == 0 ? rd_conflict_res_parse(json_string_value(answer)) : -1;
    json_decref(answer);
    if (res >= 0) {
        out->resolution = (uint8_t)res;
        out->resolved_by = RD_CONFLICT_BY_POLICY;
        snprintf(out->reason, sizeof(out->reason), "select.lua on_conflict");
        return;
    }
    s->policy_errors_total++;
    RD_ERROR("recovery", "policy_error",
             "hook=on_conflict task=%s attempt=%u error=%s detail=\"%s\" fallback=%s", t->id,
             w->attempt, rd_err_name(rv), err, rd_conflict_res_name(out->resolution));
    s->env.policy_error(s->env.policy_error_data, err);
    snprintf(out->reason, sizeof(out->reason),
             "on_conflict failed (%s): fault_tolerance.partition.on_conflict", rd_err_name(rv));
}
