#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "fsm/fsm.h"
#include "plugin/host.h"
#include "policy/policy.h"
#include "registry/registry.h"
#include "replica/replica.h"
#include "sched_int.h"
static struct rd_task *task_in(struct rd_task **todo, size_t k, const char *id)
{
    for (size_t j = 0; id != NULL && j < k; j++)
        if (strcmp(todo[j]->id, id) == 0)
            return todo[j];
    return NULL;
}

/* ---- executing a plan ------------------------------------------------------ */

/* Executes a validated plan; anything the plan leaves out of this node's
 * tasks waits for the next pass. Returns the number of changes proposed,
 * -1 when proposing failed. */
int rd_sched__execute(struct rd_sched *s, const struct rd_node *n, struct rd_task **todo, size_t k,
                      json_t *plan, uint32_t *extra)
{
    const char *strategy = json_string_value(json_object_get(plan, "strategy"));
    unsigned limit = s->env.cfg->fault_tolerance.recovery_strategies.fast_recovery.resource_limit;
    json_t *actions = json_object_get(plan, "actions");
    int proposed = 0;
    /* Side actions first, then reassignments in the policy's order. */
    size_t na = json_array_size(actions);
    for (int stage = 0; stage < 2; stage++) {
        for (size_t i = 0; i < na; i++) {
            json_t *a = json_array_get(actions, i);
            const char *what = json_string_value(json_object_get(a, "action"));
            struct rd_task *t = task_in(todo, k, json_string_value(json_object_get(a, "task_id")));
            if (stage == 0) {
                if (strcmp(what, "alert") == 0) {
                    char fp[64];
                    snprintf(fp, sizeof(fp), "policy-%s", n->node_id);
                    struct rd_alert al = {
                        .fingerprint = fp,
                        .alertname = "RecoveryPolicy",
                        .node_id = n->node_id,
                        .fault_type = "policy",
                        .severity = json_string_value(json_object_get(a, "severity")),
                        .summary = json_string_value(json_object_get(a, "summary")),
                        .description = strategy,
                        .starts_at_ms = rd_now_ms()};
                    rd_plugin_host_alert(s->env.alerts, &al);
                } else if (strcmp(what, "pause") == 0 && t != NULL &&
                           !rd_map_get(&s->inflight, t->id, strlen(t->id))) {
                    rd_sched__pause_task(s, t);
                    proposed++;
                } else if (strcmp(what, "isolate") == 0) {
                    rd_sched__isolate_node(s, json_string_value(json_object_get(a, "node_id")),
                                           strategy);
                    proposed++;
                } else if (strcmp(what, "degrade") == 0) {
                    json_int_t pct = json_integer_value(json_object_get(a, "performance_limit"));
                    s->performance_limit = pct < 1 ? 1 : pct > 100 ? 100 : (unsigned)pct;
                } else if (strcmp(what, "check_consistency") == 0 && t != NULL) {
                    const struct rd_checkpoint *c = rd_task_checkpoint(t);
                    if (c != NULL && !rd_checkpoint_verifies(c))
                        RD_ERROR("recovery", "checkpoint_corrupt", "task=%s version=%llu", t->id,
                                 (unsigned long long)c->version);
                }
                continue;
            }
            if (t == NULL || rd_map_get(&s->inflight, t->id, strlen(t->id)))
                continue;
            int rv = 0;
            if (strcmp(what, "reassign") == 0) {
                /* safe_recovery never lets a task run twice at once: it moves
                 * only once the lost agent's lease has surely expired. */
                if (rd_strategy_parse(strategy) == RD_STRATEGY_SAFE &&
                    !rd_sched__lease_expired(s, n))
                    continue;
                rv = rd_sched__move_task(s, t, n, json_string_value(json_object_get(a, "target")),
                                         extra, limit, strategy);
            } else if (strcmp(what, "wait") == 0 && rd_sched__lease_expired(s, n)) {
                /* The lease has run out: it is safe to move now. */
                rv = rd_sched__move_task(s, t, n, NULL, extra, limit, strategy);
            }
            if (rv < 0)
                return -1;
            proposed += rv;
        }
    }
    return proposed;
}
