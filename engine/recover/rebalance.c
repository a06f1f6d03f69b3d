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
 *
 * A pass costs the working agents, not the placed tasks (100,000 at the
 * storm's scale, walked at every pass before): the agents' load comes from
 * the state machine's per-node counts, less the tasks leaving them (found
 * from the pending moves and placements in flight), and the planner asks
 * for a node's offered tasks (`offered`) only when it tries the node as a
 * source, which it skips when even its smallest move could not leave it
 * no less loaded than the least loaded receiver.
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

/* The best move off `from` (its offered tasks `seg`, in offer order), to
 * the receiver that ends least loaded, no more loaded than the source:
 * true with `*task` and `*to`. */
static bool best_move_off(struct rd_rb_node *nodes, size_t from, struct rd_rb_task **seg,
                          size_t n_seg, const size_t *recv, size_t n_recv, struct rd_rb_task **task,
                          size_t *to)
{
    double best_after = INFINITY;
    for (size_t k = 0; k < n_seg; k++) {
        struct rd_rb_task *t = seg[k];
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
                *task = t;
                *to = r;
            }
        }
    }
    return best_after < INFINITY;
}

/* A source to try: its load, the most loaded first, then by index (the
 * order of a scan for the most loaded untried node). */
struct source {
    double load;
    size_t node;
};

static bool source_before(const struct source *a, const struct source *b)
{
    return a->load > b->load || (a->load == b->load && a->node < b->node);
}

static void source_down(struct source *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < n && source_before(&h[l], &h[top]))
            top = l;
        if (r < n && source_before(&h[r], &h[top]))
            top = r;
        if (top == i)
            return;
        struct source x = h[i];
        h[i] = h[top];
        h[top] = x;
        i = top;
    }
}

/* The planner's working memory: each source's offered tasks, asked of the
 * caller the first time the source is tried and kept for the plan. */
struct plan {
    struct rd_rb_node *nodes;
    size_t n_nodes;
    const struct rd_rb_offer *offer;
    size_t *first; /* by node: its tasks' start in `pool`, SIZE_MAX: not asked yet */
    size_t *count;
    struct rd_rb_task **pool;
    size_t n_pool, cap_pool;
};

/* Node `i`'s offered tasks in offer order: true with `*seg` and `*n`. */
static bool plan_tasks_of(struct plan *p, size_t i, struct rd_rb_task ***seg, size_t *n)
{
    if (p->first[i] == SIZE_MAX) {
        size_t k = 0;
        struct rd_rb_task *const *got = p->offer->tasks_of(p->offer->data, i, &k);
        if (p->pool == NULL || p->n_pool + k > p->cap_pool) {
            size_t cap = p->cap_pool ? p->cap_pool : 256;
            while (cap < p->n_pool + k)
                cap *= 2;
            struct rd_rb_task **pool = realloc(p->pool, cap * sizeof(*pool));
            if (pool == NULL)
                return false;
            p->pool = pool;
            p->cap_pool = cap;
        }
        size_t m = 0;
        for (size_t j = 0; j < k; j++)
            if (got[j]->movable && got[j]->node == i)
                p->pool[p->n_pool + m++] = got[j];
        if (m > 1)
            qsort(p->pool + p->n_pool, m, sizeof(*p->pool), offer_cmp);
        p->first[i] = p->n_pool;
        p->count[i] = m;
        p->n_pool += m;
    }
    *seg = p->pool + p->first[i];
    *n = p->count[i];
    return true;
}

size_t rd_sched__rb_plan_offered(struct rd_rb_node *nodes, size_t n_nodes,
                                 const struct rd_rb_offer *offer, size_t max_moves,
                                 struct rd_rb_move *out)
{
    size_t made = 0;
    size_t n1 = n_nodes ? n_nodes : 1;
    struct plan p = {.nodes = nodes, .n_nodes = n_nodes, .offer = offer};
    p.first = malloc(n1 * sizeof(*p.first));
    p.count = malloc(n1 * sizeof(*p.count));
    size_t *recv = malloc(n1 * sizeof(*recv));
    struct source *heap = malloc(n1 * sizeof(*heap));
    if (p.first == NULL || p.count == NULL || recv == NULL || heap == NULL)
        goto out;
    for (size_t i = 0; i < n_nodes; i++)
        p.first[i] = SIZE_MAX;
    /* The fleet's mean share of slots used (moves do not change it): a
     * target above it takes nothing, so no agent is filled past the mean
     * (one that would be emptied again when the next agent joins). */
    uint64_t sum_used = 0, sum_slots = 0;
    for (size_t i = 0; i < n_nodes; i++)
        if (nodes[i].slots > 0)
            sum_used += nodes[i].used, sum_slots += nodes[i].slots;
    double mean = sum_slots ? (double)sum_used / (double)sum_slots : 0;
    uint32_t s = offer->min_slots;
    while (made < max_moves) {
        /* Receivers: at or below the mean. `least`: no receiver ends below
         * it with a task of `s` slots or more (where it fits). */
        size_t n_recv = 0;
        double least = INFINITY;
        for (size_t i = 0; i < n_nodes; i++) {
            struct rd_rb_node *x = &nodes[i];
            if (x->slots == 0 || (double)x->used / x->slots > mean + 1e-9)
                continue;
            recv[n_recv++] = i;
            if (x->used + s <= x->limit) {
                double l = load_of(x, x->used + s);
                least = l < least ? l : least;
            }
        }
        /* Sources: the most loaded first; the first with a move gives it.
         * A node that ends above every receiver's `least` even after
         * giving up `s` slots has no move (a load only grows with the
         * slots used), so neither it nor its tasks are looked at. */
        size_t n_heap = 0;
        for (size_t i = 0; i < n_nodes; i++) {
            struct rd_rb_node *x = &nodes[i];
            if (x->slots == 0 || (x->used >= s && least > load_of(x, x->used - s) + 1e-9))
                continue;
            heap[n_heap++] = (struct source){load_of(x, x->used), i};
        }
        for (size_t i = n_heap / 2; i-- > 0;)
            source_down(heap, n_heap, i);
        struct rd_rb_task *t = NULL;
        size_t to = SIZE_MAX;
        bool found = false;
        while (n_heap > 0 && !found) {
            size_t from = heap[0].node;
            heap[0] = heap[--n_heap];
            source_down(heap, n_heap, 0);
            struct rd_rb_task **seg;
            size_t n_seg;
            if (!plan_tasks_of(&p, from, &seg, &n_seg))
                goto out;
            found = best_move_off(nodes, from, seg, n_seg, recv, n_recv, &t, &to);
        }
        if (!found)
            break;
        out[made].task = t->index;
        out[made].from = t->node;
        out[made].to = to;
        made++;
        nodes[t->node].used -= t->slots;
        nodes[to].used += t->slots;
        t->node = to;
        t->movable = false; /* once per plan */
    }
out:
    free(p.first);
    free(p.count);
    free(p.pool);
    free(recv);
    free(heap);
    return made;
}

/* rd_sched__rb_plan's offer: the given tasks by node. */
struct by_node {
    struct rd_rb_task **sorted; /* grouped by node */
    size_t *first;              /* by node, n_nodes + 1 */
};

static struct rd_rb_task *const *by_node_tasks(void *data, size_t node, size_t *n)
{
    struct by_node *b = data;
    *n = b->first[node + 1] - b->first[node];
    return b->sorted + b->first[node];
}

size_t rd_sched__rb_plan(struct rd_rb_node *nodes, size_t n_nodes, struct rd_rb_task *tasks,
                         size_t n_tasks, size_t max_moves, struct rd_rb_move *out)
{
    struct by_node b = {malloc((n_tasks ? n_tasks : 1) * sizeof(*b.sorted)),
                        calloc(n_nodes + 2, sizeof(*b.first))};
    size_t made = 0;
    if (b.sorted == NULL || b.first == NULL)
        goto out;
    /* Counting sort by node; the least slots of a movable task bound the
     * planner's look at the sources. */
    uint32_t min_slots = UINT32_MAX;
    for (size_t j = 0; j < n_tasks; j++)
        if (tasks[j].movable && tasks[j].node < n_nodes) {
            b.first[tasks[j].node + 2]++;
            min_slots = tasks[j].slots < min_slots ? tasks[j].slots : min_slots;
        }
    if (min_slots == UINT32_MAX)
        goto out; /* nothing to move */
    for (size_t i = 0; i < n_nodes; i++)
        b.first[i + 2] += b.first[i + 1];
    for (size_t j = 0; j < n_tasks; j++)
        if (tasks[j].movable && tasks[j].node < n_nodes)
            b.sorted[b.first[tasks[j].node + 1]++] = &tasks[j];
    struct rd_rb_offer offer = {.tasks_of = by_node_tasks, .data = &b, .min_slots = min_slots};
    made = rd_sched__rb_plan_offered(nodes, n_nodes, &offer, max_moves, out);
out:
    free(b.sorted);
    free(b.first);
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
        size_t to = rd_sched__node_index(f, p->to);
        const struct rd_node *nd = to != SIZE_MAX ? f->nodes[to] : NULL;
        const struct rd_checkpoint *c = t ? rd_task_checkpoint(t) : NULL;
        const char *drop = NULL;
        if (t == NULL || t->attempt != p->attempt || t->state != RD_TASK_RUNNING)
            drop = "the task moved on";
        else if (nd == NULL || !working(nd) || nd->epoch != p->to_epoch)
            drop = "the target stopped working";
        else if (!rd_sched__placeable(s, nd))
            drop = "the detectors hold the target in trouble";
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
    json_t *view = rd_sched__view_settings(s), *ids = NULL;
    struct rd_policy_nodes nodes = {.build = rd_sched__view_nodes, .data = s};
    char err[RD_POLICY_ERRLEN] = "";
    int rv = event && view
                 ? rd_policy_hook(h, RD_HOOK_REBALANCE, event, view, &nodes, &ids, err, sizeof(err))
                 : RD_ENOMEM;
    json_decref(event);
    json_decref(view);
    rd_policy_nodes_release(&nodes);
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

/* The planner's view of the working agents, and of the tasks it may offer
 * from the nodes it tries as sources (asked node by node: a pass that does
 * not plan, or plans a few moves, never walks every placed task). */
struct fleet {
    struct rd_sched *s;
    uint64_t now;
    int64_t now_ms;
    struct rd_rb_node *nodes; /* by node index; slots 0: not working */
    uint64_t working_slots;
    size_t cap_tasks; /* tasks placed on working agents: the most offered */
    /* What was offered (stable until the fleet is freed), by task index. */
    struct rd_rb_task *tasks;
    struct rd_task **task_of;
    json_t **want; /* parsed labels; NULL: none */
    size_t n_tasks;
    struct rd_rb_task **last; /* the last node's offer (rd_rb_offer's array) */
};

static void fleet_free(struct fleet *fl)
{
    for (size_t j = 0; fl->want != NULL && j < fl->n_tasks; j++)
        json_decref(fl->want[j]);
    free(fl->want);
    free(fl->nodes);
    free(fl->tasks);
    free(fl->task_of);
    free(fl->last);
}

/* True when `t` is leaving its node `n` (at its next checkpoint, or its
 * move is on its way through the log): counted where it goes. */
static bool leaving(struct rd_sched *s, const struct rd_task *t)
{
    return rd_map_get(&s->rb_pending, t->id, strlen(t->id)) || rd_sched__assigning_elsewhere(s, t);
}

/* The working agents' load (nodes only, and the tasks of the few holding
 * a task that is leaving). */
static int fleet_of(struct rd_sched *s, const uint32_t *extra, uint64_t now, int64_t now_ms,
                    struct fleet *fl)
{
    const struct rd_fsm *f = s->env.fsm;
    const struct rd_config *c = s->env.cfg;
    unsigned limit = c->fault_tolerance.recovery_strategies.fast_recovery.resource_limit;
    bool cpu = c->fault_tolerance.rebalance.cpu_threshold > 0;
    memset(fl, 0, sizeof(*fl));
    fl->s = s;
    fl->now = now;
    fl->now_ms = now_ms;
    fl->nodes = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*fl->nodes));
    bool *mark = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*mark));
    if (fl->nodes == NULL || mark == NULL) {
        free(mark);
        fleet_free(fl);
        return RD_ENOMEM;
    }
    /* The nodes that may hold a leaving task: from the few pending moves
     * and placements in flight, not from a walk over every task. */
    rd_sched__assigning_mark(s, mark);
    for (size_t i = 0; i < s->rb_pending.cap && s->rb_pending.len > 0; i++) {
        const struct pending *p = s->rb_pending.slots[i].value;
        const struct rd_task *t = p != NULL ? rd_fsm_task(f, p->task_id) : NULL;
        size_t k = t != NULL && t->node_id[0] ? rd_sched__node_index(f, t->node_id) : SIZE_MAX;
        if (k != SIZE_MAX)
            mark[k] = true;
    }
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *n = f->nodes[i];
        struct rd_rb_node *x = &fl->nodes[i];
        x->cpu = -1;
        if (!working(n) || n->slots == 0)
            continue;
        fl->working_slots += n->slots;
        fl->cap_tasks += n->n_tasks;
        x->slots = n->slots;
        x->used = n->slots_in_use + extra[i];
        x->used0 = n->slots_in_use;
        uint64_t lim = (uint64_t)n->slots * (limit ? limit : 100) / 100;
        x->limit = (uint32_t)(lim < 1 ? 1 : lim);
        /* In trouble by the detectors (its suspect or failed transition
         * may not have committed yet): no target (and no source, `offered`),
         * but still counted in the fleet's load, so that a verdict alone
         * neither starts nor settles an episode. */
        if (!rd_sched__placeable(s, n))
            x->limit = 0;
        if (cpu) {
            struct rd_soft *soft = rd_registry_get(s->env.registry, n->node_id, n->id_len);
            if (soft != NULL && soft->epoch == n->epoch && soft->metrics.present)
                x->cpu = soft->metrics.cpu;
        }
        for (struct rd_task *t = mark[i] ? n->tasks : NULL; t != NULL; t = t->next_on_node)
            if (leaving(s, t) && x->used >= t->slots)
                x->used -= t->slots;
    }
    free(mark);
    return 0;
}

/* A task's labels fit node `i` (the planner's callback): each task's
 * labels parsed once, each node's once per pass. */
static bool fits(void *data, size_t task, size_t node)
{
    struct fleet *fl = data;
    return fl->want[task] == NULL || rd_sched__node_fits(fl->s, fl->want[task], node);
}

/* The tasks node `i` offers (rd_rb_offer): placed under its epoch, queued
 * or running, not critical, not on their way anywhere, not cooling down;
 * none of 0 slots (the API refuses them; moving one evens nothing). */
static struct rd_rb_task *const *offered(void *data, size_t i, size_t *n_out)
{
    struct fleet *fl = data;
    struct rd_sched *s = fl->s;
    const struct rd_node *n = s->env.fsm->nodes[i];
    *n_out = 0;
    /* An agent in trouble keeps its tasks for the recovery, whose
     * strategies know when a move is safe (safe_recovery waits for the
     * lease): a rebalancing move off it would not. */
    if (fl->nodes[i].limit == 0)
        return NULL;
    if (fl->tasks == NULL) {
        size_t cap = fl->cap_tasks ? fl->cap_tasks : 1;
        fl->tasks = malloc(cap * sizeof(*fl->tasks));
        fl->task_of = malloc(cap * sizeof(*fl->task_of));
        fl->want = malloc(cap * sizeof(*fl->want));
        fl->last = malloc(cap * sizeof(*fl->last));
        if (fl->tasks == NULL || fl->task_of == NULL || fl->want == NULL || fl->last == NULL) {
            free(fl->tasks), free(fl->task_of), free(fl->want), free(fl->last);
            fl->tasks = NULL, fl->task_of = NULL, fl->want = NULL, fl->last = NULL;
            return NULL; /* nothing offered */
        }
    }
    size_t k = 0;
    for (struct rd_task *t = n->tasks; t != NULL && fl->n_tasks < fl->cap_tasks;
         t = t->next_on_node) {
        bool queued = t->state == RD_TASK_ASSIGNED || t->state == RD_TASK_RECOVERING;
        if (t->node_epoch != n->epoch || (!queued && t->state != RD_TASK_RUNNING) || t->critical ||
            t->slots == 0 || rd_map_get(&s->inflight, t->id, strlen(t->id)) ||
            rd_map_get(&s->rb_pending, t->id, strlen(t->id)) || cooling(s, t, fl->now, fl->now_ms))
            continue;
        size_t j = fl->n_tasks++;
        struct rd_rb_task *y = &fl->tasks[j];
        *y = (struct rd_rb_task){.index = j,
                                 .node = i,
                                 .slots = t->slots,
                                 .priority = t->priority,
                                 .running = !queued,
                                 .movable = true};
        fl->task_of[j] = t;
        fl->want[j] = NULL;
        const char *labels = t->labels_json;
        if (labels != NULL && strcmp(labels, "{}") != 0) {
            /* Unparsable labels fit nowhere (as placement has it). */
            fl->want[j] = json_loads(labels, 0, NULL);
            if (fl->want[j] == NULL)
                y->movable = false;
            y->fits = fits;
            y->fits_data = fl;
        }
        fl->last[k++] = y;
    }
    *n_out = k;
    return fl->last;
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
    if (!c->fault_tolerance.rebalance.enabled || s->env.analysis->partition_suspected ||
        rd_sched_degraded(s, NULL)) {
        s->rb_skew_pct = 0;
        s->rb_rescan_ns = 0; /* scanned afresh when it may act again */
        return;
    }
    prune_moved(s, now);
    pending_pass(s, extra, now);
    tokens_refill(s, now);
    /* Every working agent is read (a walk over 10,000 agents ten times a
     * second was 3% of a storm's leader): not again while the last scan
     * found nothing to do and nothing has changed. Reported cpu changes
     * with every heartbeat: with cpu_threshold, every pass scans. */
    if (!s->rb_balancing && s->rb_pending.len == 0 && s->inflight.len == 0 &&
        c->fault_tolerance.rebalance.cpu_threshold == 0 &&
        f->fleet_changes == s->rb_scanned_changes && now < s->rb_rescan_ns)
        return;
    s->rb_scanned_changes = f->fleet_changes;
    s->rb_rescan_ns = UINT64_MAX;
    s->rb_scans++;
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
    uint64_t settled_ns = s->rb_changed_ns + c->fault_tolerance.rebalance.settle_ms * 1000000ULL;
    uint64_t quiet_ns = s->rb_joined ? 0 : s->rb_quiet_until_ns;
    if (now < settled_ns || now < quiet_ns) {
        s->rb_rescan_ns = settled_ns > quiet_ns ? settled_ns : quiet_ns;
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
    if (!s->rb_balancing || now < s->rb_backoff_until_ns || budget == 0) {
        fleet_free(&fl);
        return;
    }
    /* Nothing to offer ends the episode as a plan without a move does. */
    struct rd_rb_move *mv = calloc(budget, sizeof(*mv));
    struct rd_rb_offer offer = {.tasks_of = offered, .data = &fl, .min_slots = 1};
    size_t n = mv ? rd_sched__rb_plan_offered(fl.nodes, f->n_nodes, &offer, budget, mv) : 0;
    if (n == 0) {
        if (s->rb_pending.len == 0) {
            s->rb_balancing = false;
            s->rb_quiet_until_ns = now + RD_SCHED_REPLAN_BACKOFF_MS * 1000000ULL;
            s->rb_rescan_ns = s->rb_quiet_until_ns;
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
        s->rb_rescan_ns = s->rb_quiet_until_ns;
    }
    json_decref(ids);
    free(mv);
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
    s->rb_rescan_ns = 0;
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
