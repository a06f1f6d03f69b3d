/*
 * Dynamic rebalancing (leader only): work moves toward spare capacity.
 *
 * When the spread of load over the working agents (alive or probation, not
 * draining) passes rebalance.skew_threshold (slots used, max - min), or
 * rebalance.cpu_threshold (reported cpu, when set), or an agent joins or
 * returns (the working agents' slots grow), the scheduler balances: each
 * pass the planner (rd_sched__rb_plan, pure) proposes moves from the most
 * loaded agents to the least loaded ones, each one that leaves the target
 * no more loaded than the source, within fast_recovery's resource_limit on
 * the target and the task's labels; it balances until no such move is
 * left. Moves are rate-limited (rebalance.moves_per_minute, a token bucket
 * of ten seconds' worth) and a task moved (by rebalancing or by recovery)
 * is not moved again within rebalance.cooldown. Both hold across leader
 * changes: the cooldown counts from the task's moved_at (the leader time
 * its last move applied, in the state machine) and a new leader's bucket
 * starts from the moves the audit records show (rd_sched__bucket_seed).
 * What only this leader decided (a running task held for its checkpoint, a
 * move the hook refused) it alone remembers (`moved`).
 *
 * What may move is select.lua's rebalance hook's call: it gets the proposed
 * moves and returns the task ids it allows. Without a hook only queued
 * tasks move (assigned: no checkpoint of their attempt yet). A hook that
 * fails allows nothing: logged, counted
 * (recoveryd_rebalance_policy_errors_total), and no rebalancing for
 * REBALANCE_ERROR_BACKOFF_MS.
 *
 * A queued task moves at once (task_assign, attempt + 1: its agent is told
 * in its next heartbeat answer). A running task moves at its next
 * checkpoint: the target's slots are held for it, and once a checkpoint
 * newer than the one the decision saw commits, task_assign moves it and the
 * new agent resumes from that checkpoint while the old attempt is revoked.
 * With no checkpoint within rebalance.checkpoint_wait it stays. Every move
 * goes through the log, fenced by the attempt it was decided on.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "policy/policy.h"
#include "recoveryd/error.h"
#include "sched_int.h"

#define REBALANCE_ERROR_BACKOFF_MS 10000
#define REBALANCE_BURST_S          10.0
#define REBALANCE_AUDIT_ACTION     "task_rebalance"

/* ---- the planner ----------------------------------------------------------- */

/* The load of node `n` with `used` slots in use. */
static double load_of(const struct rd_rb_node *n, uint32_t used)
{
    double l = (double)used / (double)n->slots;
    if (n->cpu >= 0) {
        /* Reported cpu, scaled by the slots in use since the report. */
        double c = n->used0 > 0 ? n->cpu * used / n->used0 : n->cpu;
        if (c > l)
            l = c;
    }
    return l;
}

double rd_sched__rb_skew(const struct rd_rb_node *nodes, size_t n, double *cpu_skew)
{
    double lo = INFINITY, hi = -INFINITY, clo = INFINITY, chi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (nodes[i].slots == 0)
            continue;
        double l = (double)nodes[i].used / nodes[i].slots;
        lo = l < lo ? l : lo;
        hi = l > hi ? l : hi;
        if (nodes[i].cpu >= 0) {
            clo = nodes[i].cpu < clo ? nodes[i].cpu : clo;
            chi = nodes[i].cpu > chi ? nodes[i].cpu : chi;
        }
    }
    if (cpu_skew != NULL)
        *cpu_skew = chi > clo ? chi - clo : 0;
    return hi > lo ? hi - lo : 0;
}

/* Tasks in the order they are offered: queued first, then by priority
 * (lowest first), then larger first. */
static int offer_cmp(const void *a, const void *b)
{
    const struct rd_rb_task *x = *(const struct rd_rb_task *const *)a;
    const struct rd_rb_task *y = *(const struct rd_rb_task *const *)b;
    if (x->running != y->running)
        return x->running ? 1 : -1;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    if (x->slots != y->slots)
        return x->slots > y->slots ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The best move off `from` (the offered tasks on it, in offer order), to
 * the receiver that ends least loaded, no more loaded than the source:
 * true with `*task` (index into `order`) and `*to`. */
static bool best_move_off(struct rd_rb_node *nodes, size_t from, struct rd_rb_task **order,
                          size_t n_order, const size_t *recv, size_t n_recv, size_t *task,
                          size_t *to)
{
    double best_after = INFINITY;
    for (size_t k = 0; k < n_order; k++) {
        struct rd_rb_task *t = order[k];
        if (!t->movable || t->node != from)
            continue;
        double after_from = load_of(&nodes[from], nodes[from].used - t->slots);
        for (size_t j = 0; j < n_recv; j++) {
            size_t r = recv[j];
            struct rd_rb_node *x = &nodes[r];
            if (r == from || x->used + t->slots > x->limit ||
                (t->fits != NULL && !t->fits(t->fits_data, t->index, r)))
                continue;
            double after_to = load_of(x, x->used + t->slots);
            if (after_to <= after_from + 1e-9 && after_to < best_after - 1e-9) {
                best_after = after_to;
                *task = k;
                *to = r;
            }
        }
    }
    return best_after < INFINITY;
}

size_t rd_sched__rb_plan(struct rd_rb_node *nodes, size_t n_nodes, struct rd_rb_task *tasks,
                         size_t n_tasks, size_t max_moves, struct rd_rb_move *out)
{
    size_t made = 0;
    struct rd_rb_task **order = malloc((n_tasks ? n_tasks : 1) * sizeof(*order));
    size_t *recv = malloc((n_nodes ? n_nodes : 1) * sizeof(*recv));
    bool *tried = malloc(n_nodes ? n_nodes : 1);
    if (order == NULL || recv == NULL || tried == NULL) {
        free(order), free(recv), free(tried);
        return 0;
    }
    size_t n_order = 0;
    for (size_t j = 0; j < n_tasks; j++)
        if (tasks[j].movable && tasks[j].node < n_nodes)
            order[n_order++] = &tasks[j];
    qsort(order, n_order, sizeof(*order), offer_cmp);
    /* The fleet's mean share of slots used (moves do not change it): a
     * target above it takes nothing, so no agent is filled past the mean
     * (one that would be emptied again when the next agent joins). */
    uint64_t sum_used = 0, sum_slots = 0;
    for (size_t i = 0; i < n_nodes; i++)
        if (nodes[i].slots > 0)
            sum_used += nodes[i].used, sum_slots += nodes[i].slots;
    double mean = sum_slots ? (double)sum_used / (double)sum_slots : 0;
    while (made < max_moves) {
        /* Receivers: at or below the mean. Sources: the most loaded first;
         * the first with a move gives it (per move: nodes + tasks + that
         * source's tasks x receivers, not every task x every node). */
        size_t n_recv = 0;
        for (size_t i = 0; i < n_nodes; i++) {
            tried[i] = nodes[i].slots == 0;
            if (nodes[i].slots > 0 && (double)nodes[i].used / nodes[i].slots <= mean + 1e-9)
                recv[n_recv++] = i;
        }
        size_t task = SIZE_MAX, to = SIZE_MAX, from = SIZE_MAX;
        for (;;) {
            from = SIZE_MAX;
            double top = -1;
            for (size_t i = 0; i < n_nodes; i++) {
                double l = tried[i] ? -1 : load_of(&nodes[i], nodes[i].used);
                if (!tried[i] && l > top)
                    top = l, from = i;
            }
            if (from == SIZE_MAX)
                break;
            tried[from] = true;
            if (best_move_off(nodes, from, order, n_order, recv, n_recv, &task, &to))
                break;
        }
        if (from == SIZE_MAX)
            break;
        struct rd_rb_task *t = order[task];
        out[made].task = t->index;
        out[made].from = t->node;
        out[made].to = to;
        made++;
        nodes[t->node].used -= t->slots;
        nodes[to].used += t->slots;
        t->node = to;
        t->movable = false; /* once per plan */
    }
    free(order);
    free(recv);
    free(tried);
    return made;
}

/* ---- the scheduler's side ------------------------------------------------ */

/* A running task waiting for its next checkpoint to move (by task id). */
struct pending {
    char task_id[40];
    uint32_t attempt;
    uint64_t version; /* its newest checkpoint when decided */
    char to[RD_NODE_ID_MAX + 1];
    uint64_t to_epoch;
    uint64_t decided_ns;
};

/* When this leader last decided about a task (by task id): held for its
 * checkpoint, moved, or refused by the hook. */
struct moved {
    char task_id[40];
    uint64_t at_ns;
};

static bool working(const struct rd_node *n)
{
    return n->state == RD_NODE_ALIVE || n->state == RD_NODE_PROBATION;
}

void rd_sched__note_moved(struct rd_sched *s, const char *task_id)
{
    struct moved *m = rd_map_get(&s->moved, task_id, strlen(task_id));
    if (m == NULL) {
        m = calloc(1, sizeof(*m));
        if (m == NULL)
            return;
        snprintf(m->task_id, sizeof(m->task_id), "%s", task_id);
        if (rd_map_put(&s->moved, m->task_id, strlen(m->task_id), m) != 0) {
            free(m);
            return;
        }
    }
    m->at_ns = rd_mono_ns();
}

static bool decided_lately(struct rd_sched *s, const char *task_id, uint64_t now)
{
    const struct moved *m = rd_map_get(&s->moved, task_id, strlen(task_id));
    return m != NULL &&
           now - m->at_ns < s->env.cfg->fault_tolerance.rebalance.cooldown_ms * 1000000;
}

/* Moved within the cooldown (by any leader: moved_at is replicated, leader
 * time `now_ms`), or decided about lately by this one (`now`). */
static bool cooling(struct rd_sched *s, const struct rd_task *t, uint64_t now, int64_t now_ms)
{
    int64_t cooldown = (int64_t)s->env.cfg->fault_tolerance.rebalance.cooldown_ms;
    return (t->moved_at != 0 && now_ms - t->moved_at < cooldown) || decided_lately(s, t->id, now);
}

/* Forgets moves older than the cooldown (now and then). */
static void prune_moved(struct rd_sched *s, uint64_t now)
{
    if (now < s->rb_prune_ns)
        return;
    s->rb_prune_ns = now + 10 * 1000000000ULL;
    for (size_t i = 0; i < s->moved.cap; i++) {
        struct moved *m = s->moved.slots[i].value;
        if (m != NULL && !decided_lately(s, m->task_id, now)) {
            rd_map_del(&s->moved, m->task_id, strlen(m->task_id));
            free(m);
        }
    }
}

/* One move from the bucket, if any (a new leadership's bucket starts from
 * the moves of the last ones). */
static bool take_token(struct rd_sched *s, uint64_t now)
{
    double rate = s->env.cfg->fault_tolerance.rebalance.moves_per_minute / 60.0;
    double burst = rate * REBALANCE_BURST_S < 1 ? 1 : rate * REBALANCE_BURST_S;
    if (s->rb_tokens_ns == 0)
        s->rb_tokens =
            rd_sched__bucket_seed(s->env.fsm, REBALANCE_AUDIT_ACTION, rate, burst, rd_now_ms());
    else
        s->rb_tokens += (double)(now - s->rb_tokens_ns) / 1e9 * rate;
    if (s->rb_tokens > burst)
        s->rb_tokens = burst;
    s->rb_tokens_ns = now;
    if (s->rb_tokens < 1)
        return false;
    s->rb_tokens -= 1;
    return true;
}

static void tokens_refill(struct rd_sched *s, uint64_t now)
{
    if (take_token(s, now))
        s->rb_tokens += 1; /* only refilled: nothing taken */
}

static size_t node_index(const struct rd_fsm *f, const char *id)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        if (strcmp(f->nodes[i]->node_id, id) == 0)
            return i;
    return SIZE_MAX;
}

static bool move(struct rd_sched *s, const struct rd_task *t, const struct rd_node *to,
                 const char *why)
{
    char note[96];
    snprintf(note, sizeof(note), "rebalanced: %s", why);
    struct rd_cmd cmd = {.type = RD_CMD_TASK_ASSIGN};
    cmd.u.tassign.task_id = RD_STR(t->id);
    cmd.u.tassign.attempt = t->attempt;
    cmd.u.tassign.node_id = (struct rd_str){to->node_id, (uint32_t)to->id_len};
    cmd.u.tassign.node_epoch = to->epoch;
    cmd.u.tassign.state = RD_TASK_RECOVERING;
    cmd.u.tassign.recovery_id = RD_STR("");
    cmd.u.tassign.item_id = RD_STR("");
    cmd.u.tassign.strategy = RD_STR("rebalance");
    cmd.u.tassign.note = RD_STR(note);
    rd_cmd_audit_engine(&cmd, REBALANCE_AUDIT_ACTION, t->id, why);
    if (!rd_sched__propose_assign_cmd(s, &cmd, t, to))
        return false;
    RD_INFO("rebalance", "task_moved", "task=%s from=%s to=%s attempt=%u state=%s priority=%u",
            t->id, t->node_id, to->node_id, t->attempt + 1, rd_task_state_name(t->state),
            t->priority);
    rd_sched__note_moved(s, t->id);
    return true;
}

/* Running tasks waiting for their next checkpoint: moved once it came,
 * dropped when they moved on, or waited past checkpoint_wait. Their targets'
 * slots are held (`extra`). */
static void pending_pass(struct rd_sched *s, uint32_t *extra, uint64_t now)
{
    const struct rd_fsm *f = s->env.fsm;
    uint64_t wait = s->env.cfg->fault_tolerance.rebalance.checkpoint_wait_ms * 1000000;
    for (size_t i = 0; i < s->rb_pending.cap; i++) {
        struct pending *p = s->rb_pending.slots[i].value;
        if (p == NULL)
            continue;
        const struct rd_task *t = rd_fsm_task(f, p->task_id);
        size_t to = node_index(f, p->to);
        const struct rd_node *nd = to != SIZE_MAX ? f->nodes[to] : NULL;
        const struct rd_checkpoint *c = t ? rd_task_checkpoint(t) : NULL;
        const char *drop = NULL;
        if (t == NULL || t->attempt != p->attempt || t->state != RD_TASK_RUNNING)
            drop = "the task moved on";
        else if (nd == NULL || !working(nd) || nd->epoch != p->to_epoch)
            drop = "the target stopped working";
        else if (nd->slots_in_use + extra[to] + t->slots > nd->slots)
            drop = "the target has no room any more";
        else if (c != NULL && c->version > p->version && rd_checkpoint_verifies(c) &&
                 !rd_map_get(&s->inflight, t->id, strlen(t->id))) {
            if (move(s, t, nd, "at its next checkpoint")) {
                s->rb_moves[RD_RB_RUNNING]++;
                extra[to] += t->slots;
            }
            drop = "";
        } else if (now - p->decided_ns > wait) {
            drop = "no checkpoint within rebalance.checkpoint_wait";
            s->rb_expired++;
        }
        if (drop == NULL) {
            extra[to] += t->slots;
            continue;
        }
        if (drop[0] != '\0')
            RD_INFO("rebalance", "move_dropped", "task=%s to=%s why=\"%s\"", p->task_id, p->to,
                    drop);
        rd_map_del(&s->rb_pending, p->task_id, strlen(p->task_id));
        free(p);
    }
}

/* A task's labels fit node `i` (the planner's callback): each task's
 * labels parsed once, each node's once per pass. */
struct fit_ctx {
    struct rd_sched *s;
    json_t **want; /* by task index; NULL: no labels */
};

static bool fits(void *data, size_t task, size_t node)
{
    struct fit_ctx *c = data;
    return c->want[task] == NULL || rd_sched__node_fits(c->s, c->want[task], node);
}

static void wants_free(struct fit_ctx *c, size_t n)
{
    for (size_t j = 0; j < n; j++)
        json_decref(c->want[j]);
    free(c->want);
}

static json_t *move_json(const struct rd_task *t, const struct rd_node *from,
                         const struct rd_node *to)
{
    const struct rd_checkpoint *c = rd_task_checkpoint(t);
    int64_t now = rd_now_ms();
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:b,s:I,s:o}", "task_id", t->id, "from", from->node_id,
                     "to", to->node_id, "state",
                     t->state == RD_TASK_RUNNING ? "running" : "assigned", "priority", t->priority,
                     "critical", t->critical, "slots", (json_int_t)t->slots, "checkpoint",
                     c ? json_pack("{s:I,s:I}", "version", (json_int_t)c->version, "age_ms",
                                   (json_int_t)(now - c->at))
                       : json_null());
}

/* The hook's allowance: a JSON array of task ids (new reference), or NULL
 * when nothing may move (the hook failed). Without a hook: the queued ones. */
static json_t *allowed(struct rd_sched *s, struct rd_task **tasks, const struct rd_rb_move *mv,
                       size_t n, const char *why, uint64_t now)
{
    const struct rd_fsm *f = s->env.fsm;
    struct rd_policy_host *h = *s->env.policy;
    if (!rd_policy_has_hook(h, RD_HOOK_REBALANCE)) {
        json_t *ids = json_array();
        for (size_t i = 0; i < n; i++)
            if (tasks[mv[i].task]->state != RD_TASK_RUNNING)
                json_array_append_new(ids, json_string(tasks[mv[i].task]->id));
        return ids;
    }
    json_t *moves = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            moves, move_json(tasks[mv[i].task], f->nodes[mv[i].from], f->nodes[mv[i].to]));
    json_t *event = json_pack("{s:s,s:s,s:o}", "kind", "rebalance", "reason", why, "moves", moves);
    json_t *view = rd_sched__view(s), *ids = NULL;
    char err[RD_POLICY_ERRLEN] = "";
    int rv = event && view
                 ? rd_policy_hook(h, RD_HOOK_REBALANCE, event, view, &ids, err, sizeof(err))
                 : RD_ENOMEM;
    json_decref(event);
    json_decref(view);
    if (rv == 0)
        return ids;
    s->rb_policy_errors++;
    s->rb_backoff_until_ns = now + REBALANCE_ERROR_BACKOFF_MS * 1000000ULL;
    RD_ERROR("rebalance", "policy_error",
             "hook=rebalance error=%s detail=\"%s\" fallback=\"no moves for %d ms\"",
             rd_err_name(rv), err, REBALANCE_ERROR_BACKOFF_MS);
    return NULL;
}

static bool id_in(json_t *ids, const char *id)
{
    for (size_t i = 0; i < json_array_size(ids); i++)
        if (strcmp(json_string_value(json_array_get(ids, i)), id) == 0)
            return true;
    return false;
}

/* The planner's view of the working agents and of the tasks it may offer. */
struct fleet {
    struct rd_rb_node *nodes; /* by node index; slots 0: not working */
    struct rd_rb_task *tasks;
    struct rd_task **task_of;
    size_t n_tasks;
    uint64_t working_slots;
};

static void fleet_free(struct fleet *fl)
{
    free(fl->nodes);
    free(fl->tasks);
    free(fl->task_of);
}

static int fleet_of(struct rd_sched *s, const uint32_t *extra, uint64_t now, int64_t now_ms,
                    struct fleet *fl)
{
    const struct rd_fsm *f = s->env.fsm;
    const struct rd_config *c = s->env.cfg;
    unsigned limit = c->fault_tolerance.recovery_strategies.fast_recovery.resource_limit;
    bool cpu = c->fault_tolerance.rebalance.cpu_threshold > 0;
    memset(fl, 0, sizeof(*fl));
    size_t cap = 0;
    for (size_t i = 0; i < f->n_nodes; i++)
        if (working(f->nodes[i]))
            cap += f->nodes[i]->n_tasks;
    fl->nodes = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*fl->nodes));
    fl->tasks = calloc(cap ? cap : 1, sizeof(*fl->tasks));
    fl->task_of = calloc(cap ? cap : 1, sizeof(*fl->task_of));
    if (fl->nodes == NULL || fl->tasks == NULL || fl->task_of == NULL) {
        fleet_free(fl);
        return RD_ENOMEM;
    }
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *n = f->nodes[i];
        struct rd_rb_node *x = &fl->nodes[i];
        x->cpu = -1;
        if (!working(n) || n->slots == 0)
            continue;
        fl->working_slots += n->slots;
        x->slots = n->slots;
        x->used = n->slots_in_use + extra[i];
        x->used0 = n->slots_in_use;
        uint64_t lim = (uint64_t)n->slots * (limit ? limit : 100) / 100;
        x->limit = (uint32_t)(lim < 1 ? 1 : lim);
        struct rd_soft *soft = rd_registry_get(s->env.registry, n->node_id, n->id_len);
        if (cpu && soft != NULL && soft->epoch == n->epoch && soft->metrics.present)
            x->cpu = soft->metrics.cpu;
        for (struct rd_task *t = n->tasks; t != NULL; t = t->next_on_node) {
            /* Leaving (at its next checkpoint, or its move is on its way
             * through the log): counted where it goes. */
            if ((rd_map_get(&s->rb_pending, t->id, strlen(t->id)) ||
                 rd_sched__assigning_elsewhere(s, t)) &&
                x->used >= t->slots)
                x->used -= t->slots;
            bool queued = t->state == RD_TASK_ASSIGNED || t->state == RD_TASK_RECOVERING;
            if (t->node_epoch != n->epoch || (!queued && t->state != RD_TASK_RUNNING) ||
                t->critical || rd_map_get(&s->inflight, t->id, strlen(t->id)) ||
                rd_map_get(&s->rb_pending, t->id, strlen(t->id)) || cooling(s, t, now, now_ms))
                continue;
            struct rd_rb_task *y = &fl->tasks[fl->n_tasks];
            y->index = fl->n_tasks;
            y->node = i;
            y->slots = t->slots;
            y->priority = t->priority;
            y->running = !queued;
            y->movable = true;
            fl->task_of[fl->n_tasks++] = t;
        }
    }
    return 0;
}

/* Running tasks picked to move wait for their next checkpoint. */
static void hold_for_checkpoint(struct rd_sched *s, const struct rd_task *t,
                                const struct rd_node *to, uint64_t now)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return;
    const struct rd_checkpoint *c = rd_task_checkpoint(t);
    snprintf(p->task_id, sizeof(p->task_id), "%s", t->id);
    snprintf(p->to, sizeof(p->to), "%s", to->node_id);
    p->attempt = t->attempt;
    p->version = c ? c->version : 0;
    p->to_epoch = to->epoch;
    p->decided_ns = now;
    if (rd_map_put(&s->rb_pending, p->task_id, strlen(p->task_id), p) != 0) {
        free(p);
        return;
    }
    rd_sched__note_moved(s, t->id); /* not picked again meanwhile */
    RD_INFO("rebalance", "move_at_checkpoint", "task=%s from=%s to=%s version=%llu", t->id,
            t->node_id, to->node_id, (unsigned long long)p->version);
}

void rd_sched__rebalance(struct rd_sched *s, uint32_t *extra)
{
    const struct rd_fsm *f = s->env.fsm;
    const struct rd_config *c = s->env.cfg;
    uint64_t now = rd_mono_ns();
    s->rb_skew_pct = 0;
    if (!c->fault_tolerance.rebalance.enabled || s->env.analysis->partition_suspected ||
        rd_sched_degraded(s, NULL))
        return;
    prune_moved(s, now);
    pending_pass(s, extra, now);
    tokens_refill(s, now);
    struct fleet fl;
    if (fleet_of(s, extra, now, rd_now_ms(), &fl) != 0)
        return;
    double cpu_skew = 0, skew = rd_sched__rb_skew(fl.nodes, f->n_nodes, &cpu_skew);
    s->rb_skew_pct = skew * 100;
    if (fl.working_slots > s->rb_working_slots && s->rb_working_slots != 0)
        s->rb_joined = true;
    if (fl.working_slots != s->rb_working_slots)
        s->rb_changed_ns = now;
    s->rb_working_slots = fl.working_slots;
    /* Agents come back in bursts after a storm: wait until the fleet stops
     * changing, or the first to return would be filled alone. A plan that
     * found nothing to move is not made again before the backoff (unless
     * agents joined since). */
    if (now - s->rb_changed_ns < c->fault_tolerance.rebalance.settle_ms * 1000000ULL ||
        (now < s->rb_quiet_until_ns && !s->rb_joined)) {
        fleet_free(&fl);
        return;
    }
    const char *why = NULL;
    if (s->rb_joined)
        why = "agents joined or returned";
    else if (skew * 100 > c->fault_tolerance.rebalance.skew_threshold)
        why = "slots used skewed";
    else if (c->fault_tolerance.rebalance.cpu_threshold > 0 &&
             cpu_skew * 100 > c->fault_tolerance.rebalance.cpu_threshold)
        why = "cpu skewed";
    s->rb_joined = false;
    if (why != NULL && !s->rb_balancing) {
        s->rb_balancing = true;
        s->rb_episodes++;
        s->rb_episode_moves = 0;
        snprintf(s->rb_why, sizeof(s->rb_why), "%s", why);
        RD_DEBUG("rebalance", "start", "why=\"%s\" skew_pct=%.1f cpu_skew_pct=%.1f", why,
                 skew * 100, cpu_skew * 100);
    }
    size_t budget = (size_t)s->rb_tokens;
    if (!s->rb_balancing || now < s->rb_backoff_until_ns || budget == 0 || fl.n_tasks == 0) {
        if (s->rb_balancing && fl.n_tasks == 0 && s->rb_pending.len == 0) {
            s->rb_balancing = false;
            s->rb_quiet_until_ns = now + RD_SCHED_REPLAN_BACKOFF_MS * 1000000ULL;
        }
        fleet_free(&fl);
        return;
    }
    struct fit_ctx fc = {s, calloc(fl.n_tasks, sizeof(json_t *))};
    for (size_t j = 0; fc.want != NULL && j < fl.n_tasks; j++) {
        const char *labels = fl.task_of[j]->labels_json;
        if (labels != NULL && strcmp(labels, "{}") != 0) {
            /* Unparsable labels fit nowhere (as placement has it). */
            fc.want[j] = json_loads(labels, 0, NULL);
            if (fc.want[j] == NULL)
                fl.tasks[j].movable = false;
            fl.tasks[j].fits = fits;
            fl.tasks[j].fits_data = &fc;
        }
    }
    if (fc.want == NULL) {
        fleet_free(&fl);
        return;
    }
    struct rd_rb_move *mv = calloc(budget, sizeof(*mv));
    size_t n = mv ? rd_sched__rb_plan(fl.nodes, f->n_nodes, fl.tasks, fl.n_tasks, budget, mv) : 0;
    if (n == 0) {
        if (s->rb_pending.len == 0) {
            s->rb_balancing = false;
            s->rb_quiet_until_ns = now + RD_SCHED_REPLAN_BACKOFF_MS * 1000000ULL;
            /* Said once per episode that moved something; a skew nothing
             * can even (tasks cooling down, labels) is not news each second. */
            if (s->rb_episode_moves > 0)
                RD_INFO("rebalance", "done",
                        "skew_pct=%.1f moves=%llu: no move left that evens "
                        "the load",
                        skew * 100, (unsigned long long)s->rb_episode_moves);
            s->rb_episode_moves = 0;
        }
        free(mv);
        wants_free(&fc, fl.n_tasks);
        fleet_free(&fl);
        return;
    }
    json_t *ids = allowed(s, fl.task_of, mv, n, s->rb_why, now);
    size_t done = 0;
    for (size_t i = 0; ids != NULL && i < n; i++) {
        const struct rd_task *t = fl.task_of[mv[i].task];
        const struct rd_node *to = f->nodes[mv[i].to];
        if (!id_in(ids, t->id)) {
            s->rb_refused++;
            rd_sched__note_moved(s, t->id); /* not offered again within the cooldown */
            continue;
        }
        if (!take_token(s, now))
            break;
        if (t->state == RD_TASK_RUNNING) {
            hold_for_checkpoint(s, t, to, now);
            extra[mv[i].to] += t->slots;
        } else if (move(s, t, to, s->rb_why)) {
            s->rb_moves[RD_RB_QUEUED]++;
            extra[mv[i].to] += t->slots;
        } else {
            break;
        }
        done++;
        s->rb_episode_moves++;
    }
    /* Nothing allowed of what was planned: done until the load changes. */
    if (ids != NULL && done == 0 && s->rb_pending.len == 0) {
        s->rb_balancing = false;
        s->rb_quiet_until_ns = now + RD_SCHED_REPLAN_BACKOFF_MS * 1000000ULL;
    }
    json_decref(ids);
    free(mv);
    wants_free(&fc, fl.n_tasks);
    fleet_free(&fl);
}

void rd_sched__rebalance_stop(struct rd_sched *s)
{
    for (size_t i = 0; i < s->moved.cap; i++)
        free(s->moved.slots[i].value); /* NULL in empty and deleted slots */
    rd_map_free(&s->moved);
    rd_map_init(&s->moved);
    for (size_t i = 0; i < s->rb_pending.cap; i++)
        free(s->rb_pending.slots[i].value);
    rd_map_free(&s->rb_pending);
    rd_map_init(&s->rb_pending);
    s->rb_balancing = false;
    s->rb_joined = false;
    s->rb_working_slots = 0;
}

void rd_sched_rebalance_metrics(const struct rd_sched *s, struct rd_mbuf *b)
{
    rd_metric_header(b, "recoveryd_rebalance_moves_total", "counter",
                     "Tasks moved toward spare capacity by this leader: queued (assigned, "
                     "moved at once) or running (moved at their next checkpoint).");
    rd_mbuf_printf(b, "recoveryd_rebalance_moves_total{kind=\"queued\"} %llu\n",
                   (unsigned long long)s->rb_moves[RD_RB_QUEUED]);
    rd_mbuf_printf(b, "recoveryd_rebalance_moves_total{kind=\"running\"} %llu\n",
                   (unsigned long long)s->rb_moves[RD_RB_RUNNING]);
    const struct {
        const char *name, *help;
        uint64_t value;
    } counters[] = {
        {"recoveryd_rebalance_refused_total",
         "Moves the planner proposed that the rebalance hook did not allow.", s->rb_refused},
        {"recoveryd_rebalance_expired_total",
         "Running tasks picked to move that wrote no checkpoint within "
         "rebalance.checkpoint_wait (they stayed).",
         s->rb_expired},
        {"recoveryd_rebalance_policy_errors_total",
         "Rebalance hook calls that failed (nothing moved, rebalancing paused 10 s).",
         s->rb_policy_errors},
        {"recoveryd_rebalance_episodes_total",
         "Times rebalancing started (a skew past the threshold, or agents joined).",
         s->rb_episodes},
    };
    for (size_t i = 0; i < RD_ARRAY_SIZE(counters); i++) {
        rd_metric_header(b, counters[i].name, "counter", counters[i].help);
        rd_mbuf_printf(b, "%s %llu\n", counters[i].name, (unsigned long long)counters[i].value);
    }
    rd_metric_header(b, "recoveryd_rebalance_skew_percent", "gauge",
                     "Spread of slots used over the working agents at the last pass, max - min, "
                     "in percent.");
    rd_mbuf_printf(b, "recoveryd_rebalance_skew_percent %.1f\n", s->rb_skew_pct);
    rd_metric_header(b, "recoveryd_rebalance_active", "gauge", "1 while rebalancing.");
    rd_mbuf_printf(b, "recoveryd_rebalance_active %d\n", s->rb_balancing ? 1 : 0);
}
