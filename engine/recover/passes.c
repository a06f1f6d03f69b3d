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
void rd_sched_pass(struct rd_sched *s)
{
    const struct rd_fsm *f = s->env.fsm;
    s->kicked = false;
    if (!s->env.log.is_leader(s->env.log.data) || *s->env.shutting_down)
        return;
    /* Tentative load of this pass, so one pass does not overfill an agent. */
    uint32_t *extra = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*extra));
    if (extra == NULL)
        return;
    rd_sched__inflight_load(s, extra);
    rd_sched__labels_reset(s); /* labels are parsed at most once per node per pass */
    /* Counted first: /metrics, on this thread, sees it after the whole pass. */
    s->passes_total++;
    rd_sched__repair_sweep(s);
    rd_sched__recover(s, extra);
    rd_sched__predicted(s);
    rd_sched__reclaim_stranded(s);
    rd_sched__resume_paused(s);
    rd_sched__place_pending(s, extra);
    rd_sched__rebalance(s, extra);
    free(extra);
}

void rd_sched_init(struct rd_sched *s, const struct rd_sched_env *env)
{
    memset(s, 0, sizeof(*s));
    s->env = *env;
    s->run_duration.bounds = rd_hist_bounds_long;
    rd_map_init(&s->inflight);
    rd_map_init(&s->assigning);
    rd_map_init(&s->repairs);
    rd_map_init(&s->unrepairable);
    rd_map_init(&s->predicted);
    rd_map_init(&s->moved);
    rd_map_init(&s->rb_pending);
    s->reclaim_all = true;
}

void rd_sched_start(struct rd_sched *s)
{
    if (s->started)
        return;
    uv_timer_init(s->env.loop, &s->timer);
    s->timer.data = s;
    s->run_pass = rd_sched_pass;
    s->reclaim_all = true; /* a new leadership looks at every node once */
    rd_sched__arm(s, RD_SCHED_PASS_MS);
    s->started = true;
    rd_sched_kick(s);
}

void rd_sched_stop(struct rd_sched *s)
{
    if (!s->started)
        return;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, NULL);
    s->started = false;
    rd_sched__repair_stop(s);
    rd_sched__predicted_stop(s);
    rd_sched__rebalance_stop(s);
    /* The next leadership's rate limits start from the audit records (the
     * drains and moves of the leaders in between are there). */
    s->drain_tokens_ns = 0;
    s->rb_tokens_ns = 0;
}

void rd_sched_close(struct rd_sched *s)
{
    rd_sched__repair_close(s);
    rd_sched__predicted_stop(s);
    rd_map_free(&s->predicted);
    rd_sched__rebalance_stop(s);
    rd_map_free(&s->moved);
    rd_map_free(&s->rb_pending);
    rd_sched__labels_reset(s);
    rd_nofork_free(s->by_slot, s->n_by_slot * sizeof(*s->by_slot));
    s->by_slot = NULL;
    s->n_by_slot = 0;
    for (size_t i = 0; i < s->n_reclaim; i++)
        free(s->reclaim[i]);
    free(s->reclaim);
    s->reclaim = NULL;
    s->n_reclaim = s->cap_reclaim = 0;
    for (size_t i = 0; i < s->inflight.cap; i++)
        if (s->inflight.slots && s->inflight.slots[i].value)
            free(s->inflight.slots[i].value);
    rd_map_free(&s->inflight);
    rd_sched__assigning_free(s);
}

/* Places the pending tasks, most urgent first, on the working agents with
 * room (`extra`: load this pass already added per node index). They come
 * from the state machine's pending heap in urgency order, so a pass costs
 * the tasks it looks at: it ends when no agent has a free slot left. */
void rd_sched__place_pending(struct rd_sched *s, uint32_t *extra)
{
    const struct rd_fsm *f = s->env.fsm;
    size_t n = rd_fsm_pending_count(f);
    if (n == 0)
        return;
    /* Poison tasks are quarantined wherever they are in the queue. */
    unsigned max_failures = s->env.cfg->fault_tolerance.poison.max_failures;
    for (size_t i = 0; i < n; i++) {
        struct rd_task *t = rd_fsm_pending_at(f, i);
        if (t->n_fail_at >= max_failures && rd_sched__poisoned(s, t, 0))
            rd_sched__quarantine(s, t, 0);
    }
    unsigned degraded_limit = 100;
    bool degraded = rd_sched_degraded(s, &degraded_limit);
    struct rd_pending_iter it;
    rd_fsm_pending_begin(f, &it);
    for (struct rd_task *t; (t = rd_fsm_pending_next(&it)) != NULL;) {
        int64_t room = rd_sched__most_room(s, extra);
        if (room < 1)
            break; /* every agent is full (a task asks for a slot at least) */
        if ((int64_t)t->slots > room || rd_map_get(&s->inflight, t->id, strlen(t->id)) ||
            rd_sched__poisoned(s, t, 0))
            continue;
        /* Degraded: non-critical work only up to performance_limit. */
        size_t best =
            rd_sched__choose(s, t, extra, degraded && !t->critical ? degraded_limit : 100);
        if (best == SIZE_MAX)
            continue; /* waits for capacity */
        if (!rd_sched__propose_assign(s, t, f->nodes[best], RD_TASK_ASSIGNED))
            break;
        rd_sched__add_load(s, extra, best, t->slots);
        s->placements_total++;
    }
    rd_fsm_pending_end(&it);
}
