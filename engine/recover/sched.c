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
/* A proposal guarded in the in-flight map by `key` until its commit (or
 * refusal): the op owns the key string, which is also the map's key. */
struct keyed_op {
    struct rd_sched *s;
    char *key;
    rd_sched_keyed_cb done; /* or NULL */
};

/* A task's placement on its way through the log: the slots it takes on
 * `node_id` count against the node until the commit shows them (each pass
 * adds them to its tentative load: rd_sched__inflight_load). */
struct assigning {
    char task_id[40];
    char node_id[RD_NODE_ID_MAX + 1];
    uint32_t slots;
};

static void keyed_done(void *data, int status, uint64_t value)
{
    struct keyed_op *op = data;
    struct rd_sched *s = op->s;
    (void)value;
    rd_map_del(&s->inflight, op->key, strlen(op->key));
    free(rd_map_del(&s->assigning, op->key, strlen(op->key)));
    if (status != 0) {
        s->refused_total++; /* a fenced or stale decision: the next pass decides again */
        RD_DEBUG("sched", "proposal_refused", "key=%s error=%s", op->key, rd_err_name(status));
    }
    if (op->done != NULL)
        op->done(s, op->key, status);
    free(op->key);
    free(op);
    rd_sched_kick(s);
}

/* Proposes `cmd` unless `key` is in flight already. False when it could
 * not be proposed (the pass should stop). */
bool rd_sched__propose_keyed(struct rd_sched *s, const struct rd_cmd *cmd, const char *key)
{
    return rd_sched__propose_keyed_then(s, cmd, key, NULL) >= 0;
}

int rd_sched__propose_keyed_then(struct rd_sched *s, const struct rd_cmd *cmd, const char *key,
                                 rd_sched_keyed_cb done)
{
    if (rd_map_get(&s->inflight, key, strlen(key)))
        return 0;
    struct keyed_op *op = calloc(1, sizeof(*op));
    bool ok = false;
    if (op != NULL && (op->key = strdup(key)) != NULL) {
        op->s = s;
        op->done = done;
        if (s->env.log.propose(s->env.log.data, cmd, keyed_done, op) == 0) {
            rd_map_put(&s->inflight, op->key, strlen(op->key), op->key);
            ok = true;
        }
    }
    if (!ok) {
        if (op != NULL)
            free(op->key);
        free(op);
    }
    return ok ? 1 : -1;
}

bool rd_sched__propose_assign_cmd(struct rd_sched *s, const struct rd_cmd *cmd,
                                  const struct rd_task *t, const struct rd_node *nd)
{
    if (!rd_sched__propose_keyed(s, cmd, t->id))
        return false;
    struct assigning *a = nd != NULL ? calloc(1, sizeof(*a)) : NULL;
    if (a == NULL)
        return true;
    snprintf(a->task_id, sizeof(a->task_id), "%s", t->id);
    snprintf(a->node_id, sizeof(a->node_id), "%s", nd->node_id);
    a->slots = t->slots;
    free(rd_map_del(&s->assigning, a->task_id, strlen(a->task_id)));
    if (rd_map_put(&s->assigning, a->task_id, strlen(a->task_id), a) != 0)
        free(a);
    return true;
}

void rd_sched__inflight_load(struct rd_sched *s, uint32_t *extra)
{
    const struct rd_fsm *f = s->env.fsm;
    for (size_t i = 0; i < s->assigning.cap && s->assigning.len > 0; i++) {
        const struct assigning *a = s->assigning.slots[i].value;
        if (a == NULL)
            continue;
        size_t len = strlen(a->node_id);
        size_t k = rd_fsm_node_after(f, a->node_id, len);
        if (k > 0 && strcmp(f->nodes[k - 1]->node_id, a->node_id) == 0)
            extra[k - 1] += a->slots;
    }
}

size_t rd_sched__node_index(const struct rd_fsm *f, const char *id)
{
    size_t k = rd_fsm_node_after(f, id, strlen(id));
    return k > 0 && strcmp(f->nodes[k - 1]->node_id, id) == 0 ? k - 1 : SIZE_MAX;
}

void rd_sched__assigning_mark(struct rd_sched *s, bool *mark)
{
    const struct rd_fsm *f = s->env.fsm;
    for (size_t i = 0; i < s->assigning.cap && s->assigning.len > 0; i++) {
        const struct assigning *a = s->assigning.slots[i].value;
        const struct rd_task *t = a != NULL ? rd_fsm_task(f, a->task_id) : NULL;
        if (t == NULL || t->node_id[0] == '\0' || strcmp(a->node_id, t->node_id) == 0)
            continue;
        size_t k = rd_sched__node_index(f, t->node_id);
        if (k != SIZE_MAX)
            mark[k] = true;
    }
}

bool rd_sched__assigning_elsewhere(struct rd_sched *s, const struct rd_task *t)
{
    const struct assigning *a = rd_map_get(&s->assigning, t->id, strlen(t->id));
    return a != NULL && strcmp(a->node_id, t->node_id) != 0;
}

void rd_sched__assigning_free(struct rd_sched *s)
{
    for (size_t i = 0; i < s->assigning.cap; i++)
        free(s->assigning.slots[i].value); /* NULL in empty and deleted slots */
    rd_map_free(&s->assigning);
}

bool rd_sched__propose_assign(struct rd_sched *s, const struct rd_task *t, const struct rd_node *nd,
                              int state)
{
    return rd_sched__propose_assign_in(s, t, nd, state, NULL, NULL, NULL);
}

/* True when `t`'s attempt sits, not started, on a failed or isolated agent
 * that sent no heartbeat (that this leader heard, under the epoch the task
 * was given to) since the attempt was given to it: no heartbeat answer ever
 * carried it, so the agent cannot have run it, and its death says nothing
 * about the task. Also when no heartbeat of that epoch came at all: an
 * agent that registered again and never heard the answer (chaos seed 1, a
 * slow link) has its task reclaimed onto an epoch it never heartbeats
 * under. Unknown (given before this leader heard the epoch from its start:
 * an earlier leader's answers may have told it; or the task started or
 * moved on) is false: counted, as before. */
bool rd_sched__undelivered(struct rd_sched *s, const struct rd_task *t)
{
    if ((t->state != RD_TASK_ASSIGNED && t->state != RD_TASK_RECOVERING) || t->node_id[0] == '\0')
        return false;
    const struct rd_node *n = rd_fsm_node(s->env.fsm, t->node_id, strlen(t->node_id));
    if (n == NULL || n->epoch != t->node_epoch ||
        (n->state != RD_NODE_FAILED && n->state != RD_NODE_ISOLATED))
        return false;
    const struct rd_soft *soft = rd_registry_get(s->env.registry, n->node_id, n->id_len);
    /* last_wall_ms: this leader's clock when the heartbeat came, and its
     * answer was built then, from what had committed; updated_at: the
     * leader time the assignment was proposed at (an unstarted task changes
     * only by being placed), so it committed later still. */
    return soft != NULL && soft->epoch == n->epoch && soft->watch_wall_ms <= t->updated_at &&
           (soft->last_mono_ns == 0 || soft->last_wall_ms < t->updated_at);
}

bool rd_sched__propose_assign_in(struct rd_sched *s, const struct rd_task *t,
                                 const struct rd_node *nd, int state, const char *run,
                                 const char *strategy, const char *note)
{
    char item[RD_UUID_STRLEN] = "";
    if (run != NULL && rd_uuid_v4(item) != 0)
        return false;
    struct rd_cmd cmd = {.type = RD_CMD_TASK_ASSIGN};
    cmd.u.tassign.task_id = RD_STR(t->id);
    cmd.u.tassign.attempt = t->attempt;
    cmd.u.tassign.node_id = nd ? (struct rd_str){nd->node_id, (uint32_t)nd->id_len} : RD_STR("");
    cmd.u.tassign.node_epoch = nd ? nd->epoch : 0;
    cmd.u.tassign.state = (uint8_t)state;
    cmd.u.tassign.recovery_id = RD_STR(run ? run : "");
    cmd.u.tassign.item_id = RD_STR(item);
    cmd.u.tassign.strategy = RD_STR(strategy ? strategy : "");
    cmd.u.tassign.note = RD_STR(note ? note : "");
    cmd.u.tassign.undelivered = rd_sched__undelivered(s, t);
    /* A task moved by a recovery run: an audited engine action, the run its
     * cause (first placements are not audited one by one). */
    if (run != NULL)
        rd_cmd_audit_engine(&cmd, "task_move", t->id, run);
    return rd_sched__propose_assign_cmd(s, &cmd, t, nd);
}

/* The scheduler's soft state of a node (its registry slot, this generation):
 * NULL when it cannot be kept (ENOMEM). */
static struct rd_sched_soft *soft_of(struct rd_sched *s, const struct rd_soft *soft)
{
    if (soft->slot >= s->n_by_slot) {
        /* Out of the forked children's sight (every heartbeat reads and
         * may write here: rd_nofork_realloc). */
        struct rd_sched_soft *b =
            rd_nofork_slots(s->by_slot, &s->n_by_slot, sizeof(*b), soft->slot);
        if (b == NULL)
            return NULL;
        s->by_slot = b;
    }
    struct rd_sched_soft *x = &s->by_slot[soft->slot];
    if (x->generation != soft->generation) {
        x->generation = soft->generation;
        x->replan_at_ns = 0;
        x->epoch_clean = 0;
    }
    return x;
}

/* When the node is next replanned: NULL when it cannot be kept (the node is
 * then replanned each pass). */
uint64_t *rd_sched__replan_at_of(struct rd_sched *s, const struct rd_soft *soft)
{
    struct rd_sched_soft *x = soft_of(s, soft);
    return x != NULL ? &x->replan_at_ns : NULL;
}

/*
 * Tasks stranded by a registration: an agent that registers again while it
 * still holds tasks (a process restarted at once, before its lease ran out,
 * or an SDK that fenced itself while the engine saw nothing wrong) gets a
 * new epoch, and heartbeat answers only hand over tasks placed under the
 * current one. Its old attempts died with the old process: each such task
 * is assigned again, as a new attempt (which fences the old one) with its
 * newest checkpoint, to the same agent when it works (its slot was held for
 * it), else back to pending. Tasks are only ever placed under a node's
 * current epoch, so once a node's list holds none of an older epoch it stays
 * clean until the next registration: the nodes to look at are those that
 * registered again since (rd_sched_node_registered), not the whole fleet
 * every pass (10,000 agents holding tasks: 10,000 registry look-ups a pass).
 */
enum reclaim_result { RECLAIM_CLEAN, RECLAIM_KEEP, RECLAIM_STOP };

static enum reclaim_result reclaim_node(struct rd_sched *s, const struct rd_node *n)
{
    if (n->tasks == NULL)
        return RECLAIM_CLEAN;
    if (n->state == RD_NODE_FAILED || n->state == RD_NODE_LEFT || n->state == RD_NODE_ISOLATED ||
        n->state == RD_NODE_DRAINING)
        return RECLAIM_KEEP; /* recovery moves a gone node's tasks (runs.c); looked at again */
    struct rd_soft *soft = rd_registry_get(s->env.registry, n->node_id, n->id_len);
    struct rd_sched_soft *x = soft != NULL ? soft_of(s, soft) : NULL;
    if (x != NULL && x->epoch_clean == n->epoch)
        return RECLAIM_CLEAN;
    bool works = n->state == RD_NODE_ALIVE || n->state == RD_NODE_PROBATION;
    bool clean = true;
    for (struct rd_task *t = n->tasks; t != NULL; t = t->next_on_node) {
        if (t->node_epoch == n->epoch)
            continue;
        clean = false;
        if (rd_map_get(&s->inflight, t->id, strlen(t->id)))
            continue;
        RD_INFO("sched", "task_reclaimed",
                "task=%s node=%s attempt=%u epoch=%llu node_epoch=%llu to=%s", t->id, n->node_id,
                t->attempt + 1, (unsigned long long)t->node_epoch, (unsigned long long)n->epoch,
                works ? n->node_id : "(pending)");
        if (!rd_sched__propose_assign(s, t, works ? n : NULL,
                                      works ? RD_TASK_ASSIGNED : RD_TASK_PENDING))
            return RECLAIM_STOP;
        s->reclaimed_total++;
    }
    if (!clean)
        return RECLAIM_KEEP; /* its proposals commit, then it is clean */
    if (x != NULL)
        x->epoch_clean = n->epoch;
    return RECLAIM_CLEAN;
}

void rd_sched_node_registered(struct rd_sched *s, const char *id, size_t len)
{
    if (s->n_reclaim == s->cap_reclaim) {
        size_t cap = s->cap_reclaim ? 2 * s->cap_reclaim : 16;
        char **r = realloc(s->reclaim, cap * sizeof(*r));
        if (r == NULL) {
            s->reclaim_all = true; /* no room to remember it: look at them all */
            return;
        }
        s->reclaim = r;
        s->cap_reclaim = cap;
    }
    char *copy = strndup(id, len);
    if (copy == NULL) {
        s->reclaim_all = true;
        return;
    }
    s->reclaim[s->n_reclaim++] = copy;
}

void rd_sched__reclaim_stranded(struct rd_sched *s)
{
    const struct rd_fsm *f = s->env.fsm;
    if (s->reclaim_all) {
        /* Every node once; those not clean yet are remembered. */
        for (size_t i = 0; i < s->n_reclaim; i++)
            free(s->reclaim[i]);
        s->n_reclaim = 0;
        bool complete = true;
        for (size_t i = 0; i < f->n_nodes && complete; i++) {
            const struct rd_node *n = f->nodes[i];
            enum reclaim_result r = reclaim_node(s, n);
            if (r == RECLAIM_STOP)
                complete = false;
            else if (r == RECLAIM_KEEP)
                rd_sched_node_registered(s, n->node_id, n->id_len);
        }
        if (complete)
            s->reclaim_all = false;
        return;
    }
    size_t kept = 0, i = 0;
    for (; i < s->n_reclaim; i++) {
        char *id = s->reclaim[i];
        const struct rd_node *n = rd_fsm_node(f, id, strlen(id));
        enum reclaim_result r = n != NULL ? reclaim_node(s, n) : RECLAIM_CLEAN;
        if (r == RECLAIM_CLEAN) {
            free(id);
            continue;
        }
        s->reclaim[kept++] = id;
        if (r == RECLAIM_STOP) {
            i++;
            break;
        }
    }
    while (i < s->n_reclaim)
        s->reclaim[kept++] = s->reclaim[i++];
    s->n_reclaim = kept;
}

/* The pass timer fires: the pass itself lives above (passes.c). */
static void timer_fired(uv_timer_t *t)
{
    struct rd_sched *s = t->data;
    s->run_pass(s);
}

void rd_sched__arm(struct rd_sched *s, uint64_t first_ms)
{
    uv_timer_start(&s->timer, timer_fired, first_ms, RD_SCHED_PASS_MS);
}

void rd_sched_kick(struct rd_sched *s)
{
    if (!s->started || s->kicked)
        return;
    s->kicked = true;
    rd_sched__arm(s, 0);
}

double rd_sched__bucket_seed(const struct rd_fsm *f, const char *action, double rate, double burst,
                             int64_t now_ms)
{
    if (rate <= 0)
        return 0;
    int64_t since = now_ms - (int64_t)(burst / rate * 1000);
    size_t n = 0;
    const struct rd_audit *const *a = rd_fsm_audits(f, &n);
    size_t first = n;
    while (first > 0 && a[first - 1]->at_ms >= since)
        first--;
    double level = 0;
    int64_t at = since;
    for (size_t i = first; i < n; i++) {
        if (a[i]->status != 200 || strcmp(a[i]->action, action) != 0 ||
            strcmp(a[i]->principal, "recoveryd") != 0)
            continue;
        level += (double)(a[i]->at_ms - at) / 1000 * rate;
        level = level > burst ? burst : level;
        level = level > 1 ? level - 1 : 0;
        at = a[i]->at_ms;
    }
    level += (double)(now_ms - at) / 1000 * rate;
    return level > burst ? burst : level;
}
