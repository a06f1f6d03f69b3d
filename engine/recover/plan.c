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
                      const struct rd_plan *plan, uint32_t *extra)
{
    const char *strategy = plan->strategy;
    unsigned limit = s->env.cfg->fault_tolerance.recovery_strategies.fast_recovery.resource_limit;
    int proposed = 0;
    /* Side actions first, then reassignments in the policy's order. */
    for (int stage = 0; stage < 2; stage++) {
        for (size_t i = 0; i < plan->n; i++) {
            const struct rd_action *a = &plan->actions[i];
            struct rd_task *t = task_in(todo, k, a->task_id);
            if (stage == 0) {
                switch (a->kind) {
                case RD_ACT_ALERT: {
                    char fp[64];
                    snprintf(fp, sizeof(fp), "policy-%s", n->node_id);
                    struct rd_alert al = {.fingerprint = fp,
                                          .alertname = "RecoveryPolicy",
                                          .node_id = n->node_id,
                                          .fault_type = "policy",
                                          .severity = a->severity,
                                          .summary = a->text,
                                          .description = strategy,
                                          .starts_at_ms = rd_now_ms(),
                                          .scope = RD_ALERT_EVENT};
                    rd_plugin_host_alert(s->env.alerts, &al);
                    break;
                }
                case RD_ACT_PAUSE:
                    if (t != NULL && !rd_map_get(&s->inflight, t->id, strlen(t->id))) {
                        rd_sched__pause_task(s, t);
                        proposed++;
                    }
                    break;
                case RD_ACT_ISOLATE:
                    rd_sched__isolate_node(s, a->node_id, strategy);
                    proposed++;
                    break;
                case RD_ACT_DEGRADE:
                    s->performance_limit = a->percent < 1 ? 1 : a->percent > 100 ? 100 : a->percent;
                    break;
                case RD_ACT_CHECK_CONSISTENCY:
                    /* Its newest checkpoint must verify before the task
                     * moves: a repair holds it in flight, so its reassign
                     * below waits for the repair's commit. */
                    if (t != NULL && rd_sched_repair_checkpoint(s, t->id, NULL, NULL) == 1)
                        proposed++;
                    break;
                default:
                    break;
                }
                continue;
            }
            if (t == NULL || rd_map_get(&s->inflight, t->id, strlen(t->id)))
                continue;
            int rv = 0;
            if (a->kind == RD_ACT_REASSIGN) {
                /* safe_recovery never lets a task run twice at once: it moves
                 * only once the lost agent's lease has surely expired. */
                if (rd_strategy_parse(strategy) == RD_STRATEGY_SAFE &&
                    !rd_sched__lease_expired(s, n))
                    continue;
                rv = rd_sched__move_task(s, t, n, a->node_id, extra, limit, strategy);
            } else if (a->kind == RD_ACT_WAIT && rd_sched__lease_expired(s, n)) {
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
