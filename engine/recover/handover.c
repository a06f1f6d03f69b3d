/*
 * What a heartbeat answer hands over (rd_sched_handover): shared by the
 * answer (http/api_nodes.c) and the simulation's agents (tests/sim/dsim.c).
 */
#include <stdlib.h>

#include "config/config.h"
#include "recoveryd/error.h"
#include "registry/registry.h"
#include "sched_int.h"

static int handover_cmp_urgency(const void *a, const void *b)
{
    const struct rd_task *x = ((const struct rd_handover *)a)->task;
    const struct rd_task *y = ((const struct rd_handover *)b)->task;
    return rd_task_cmp_urgency(&x, &y);
}

size_t rd_sched_handover(struct rd_sched *s, const struct rd_node *n, struct rd_soft *soft,
                         uint64_t now_ns, struct rd_handover *out)
{
    size_t k = 0;
    rd_registry_tell_begin(soft);
    /* Only the agent's unstarted tasks are handed over, and they come
     * first on its list (engine/fsm/tasks.c): the walk stops after them,
     * and most heartbeats, from agents whose tasks all run, walk nothing
     * (two cache misses a task). What was told is forgotten at tell_end,
     * as after a walk that found nothing. */
    uint32_t left = n->n_unstarted;
    for (const struct rd_task *t = n->tasks; t != NULL && left > 0 && k < n->n_tasks;
         t = t->next_on_node, left--)
        if (t->node_epoch == n->epoch &&
            (t->state == RD_TASK_ASSIGNED || t->state == RD_TASK_RECOVERING) &&
            rd_registry_tell_due(soft, t->id, t->attempt, now_ns))
            out[k++] = (struct rd_handover){.task = t};
    qsort(out, k, sizeof(*out), handover_cmp_urgency);
    uint64_t resend_ns = rd_config_lease_ms(s->env.cfg) * 1000000ULL;
    size_t told = 0;
    for (size_t i = 0; i < k; i++) {
        /* A checkpoint that fails its checksum is repaired first: the task
         * waits for a later answer, which carries the repaired one. */
        if (rd_sched_resume_checkpoint(s, out[i].task, &out[i].ckpt) == RD_EBUSY)
            continue;
        rd_registry_told(soft, out[i].task->id, out[i].task->attempt, now_ns, resend_ns);
        out[told++] = out[i];
    }
    rd_registry_tell_end(soft);
    return told;
}
