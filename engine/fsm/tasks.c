/*
 * Tasks and their checkpoints in the state machine. The task's `attempt` is
 * its fencing token (DESIGN.md decision 3): a placement is decided on the
 * attempt it saw and bumps it; a checkpoint, a completion or a failure from
 * any other attempt is refused with RD_EFENCED, so a zombie agent can never
 * overwrite a checkpoint or complete a task that was moved.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "fsm_int.h"
#include "recoveryd/error.h"

static bool terminal(uint8_t state)
{
    return state == RD_TASK_COMPLETED || state == RD_TASK_FAILED || state == RD_TASK_CANCELLED;
}

bool rd_task_finished(const struct rd_task *t)
{
    return terminal(t->state);
}

static bool placed(uint8_t state)
{
    return state == RD_TASK_ASSIGNED || state == RD_TASK_RUNNING || state == RD_TASK_RECOVERING;
}

static bool unstarted(uint8_t state)
{
    return state == RD_TASK_ASSIGNED || state == RD_TASK_RECOVERING;
}

static void ckpt_free(struct rd_checkpoint *c)
{
    free(c->data);
    memset(c, 0, sizeof(*c));
}

static void task_free(struct rd_task *t)
{
    if (t == NULL)
        return;
    free(t->labels_json);
    free(t->payload_json);
    free(t->node_id);
    free(t->result_json);
    for (unsigned i = 0; i < t->n_ckpts; i++)
        ckpt_free(&t->ckpts[i]);
    free(t);
}

/* ---- the task heaps: unfinished tasks with a deadline, earliest on top,
 * and pending tasks, most urgent on top ----
 * Their room is the task table's (task_insert grows all three), so keeping
 * them never allocates: set_task_state, submit, retry, prune and snapshot
 * reads keep them in step through heaps_sync. */

enum heap_kind { HEAP_DEADLINE, HEAP_PENDING };

static struct rd_task_heap *heap_of(struct rd_fsm *f, enum heap_kind k)
{
    return k == HEAP_DEADLINE ? &f->deadlines : &f->pending;
}

static size_t *pos_of(struct rd_task *t, enum heap_kind k)
{
    return k == HEAP_DEADLINE ? &t->deadline_pos : &t->pending_pos;
}

/* Whether `x` goes above `y` in heap `k`: a strict order for the pending
 * heap (urgency ends on the id), so its order is the same on every replica. */
static bool task_above(enum heap_kind k, const struct rd_task *x, const struct rd_task *y)
{
    if (k == HEAP_DEADLINE)
        return x->deadline_ms < y->deadline_ms;
    return rd_task_cmp_urgency(&x, &y) < 0;
}

static bool h_less(const struct rd_task_heap *h, enum heap_kind k, size_t a, size_t b)
{
    return task_above(k, h->at[a], h->at[b]);
}

static void h_swap(struct rd_task_heap *h, enum heap_kind k, size_t a, size_t b)
{
    struct rd_task *t = h->at[a];
    h->at[a] = h->at[b];
    h->at[b] = t;
    *pos_of(h->at[a], k) = a + 1;
    *pos_of(h->at[b], k) = b + 1;
}

static void h_up(struct rd_task_heap *h, enum heap_kind k, size_t i)
{
    while (i > 0 && h_less(h, k, i, (i - 1) / 2)) {
        h_swap(h, k, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void h_down(struct rd_task_heap *h, enum heap_kind k, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && h_less(h, k, l, m))
            m = l;
        if (r < h->n && h_less(h, k, r, m))
            m = r;
        if (m == i)
            return;
        h_swap(h, k, i, m);
        i = m;
    }
}

static void h_remove(struct rd_fsm *f, enum heap_kind k, struct rd_task *t)
{
    struct rd_task_heap *h = heap_of(f, k);
    size_t i = *pos_of(t, k) - 1, last = --h->n;
    *pos_of(t, k) = 0;
    if (i == last)
        return;
    h->at[i] = h->at[last];
    *pos_of(h->at[i], k) = i + 1;
    h_up(h, k, i);
    h_down(h, k, *pos_of(h->at[i], k) - 1);
}

/* `t` in heap `k` exactly when `want`. */
static void h_sync(struct rd_fsm *f, enum heap_kind k, struct rd_task *t, bool want)
{
    struct rd_task_heap *h = heap_of(f, k);
    if (want && *pos_of(t, k) == 0) {
        h->at[h->n] = t;
        *pos_of(t, k) = ++h->n;
        h_up(h, k, h->n - 1);
    } else if (!want && *pos_of(t, k) != 0) {
        h_remove(f, k, t);
    }
}

/* In the deadline heap exactly when it has a deadline and is not finished;
 * in the pending heap exactly when pending. */
static void heaps_sync(struct rd_fsm *f, struct rd_task *t)
{
    h_sync(f, HEAP_DEADLINE, t, t->deadline_ms != 0 && !terminal(t->state));
    h_sync(f, HEAP_PENDING, t, t->state == RD_TASK_PENDING);
}

/* The heap's entries at or below `now_ms` from position `i` down: a child
 * is never earlier than its parent, so a later entry ends its subtree. */
static size_t dl_collect(const struct rd_fsm *f, size_t i, int64_t now_ms,
                         const struct rd_task **out, size_t n, size_t max)
{
    if (i >= f->deadlines.n || n >= max || f->deadlines.at[i]->deadline_ms > now_ms)
        return n;
    out[n++] = f->deadlines.at[i];
    n = dl_collect(f, 2 * i + 1, now_ms, out, n, max);
    return dl_collect(f, 2 * i + 2, now_ms, out, n, max);
}

size_t rd_fsm_deadlines_passed(const struct rd_fsm *f, int64_t now_ms, const struct rd_task **out,
                               size_t max)
{
    return dl_collect(f, 0, now_ms, out, 0, max);
}

size_t rd_fsm_deadlines_pending(const struct rd_fsm *f)
{
    return f->deadlines.n;
}

size_t rd_fsm_pending_count(const struct rd_fsm *f)
{
    return f->pending.n;
}

struct rd_task *rd_fsm_pending_at(const struct rd_fsm *f, size_t i)
{
    return i < f->pending.n ? f->pending.at[i] : NULL;
}

/* The frontier holds positions of the pending heap whose parents were
 * taken; its top is the most urgent task not taken yet. */
static bool it_less(const struct rd_pending_iter *it, size_t a, size_t b)
{
    return task_above(HEAP_PENDING, it->f->pending.at[it->q[a]], it->f->pending.at[it->q[b]]);
}

static bool it_push(struct rd_pending_iter *it, size_t pos)
{
    if (pos >= it->f->pending.n)
        return true;
    if (it->n == it->cap) {
        size_t ncap = it->cap ? it->cap * 2 : 64;
        size_t *nq = realloc(it->q, ncap * sizeof(*nq));
        if (nq == NULL)
            return false;
        it->q = nq;
        it->cap = ncap;
    }
    size_t i = it->n++;
    it->q[i] = pos;
    while (i > 0 && it_less(it, i, (i - 1) / 2)) {
        size_t p = (i - 1) / 2, x = it->q[i];
        it->q[i] = it->q[p];
        it->q[p] = x;
        i = p;
    }
    return true;
}

void rd_fsm_pending_begin(const struct rd_fsm *f, struct rd_pending_iter *it)
{
    memset(it, 0, sizeof(*it));
    it->f = f;
    it_push(it, 0);
}

struct rd_task *rd_fsm_pending_next(struct rd_pending_iter *it)
{
    if (it->n == 0)
        return NULL;
    size_t top = it->q[0];
    it->q[0] = it->q[--it->n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < it->n && it_less(it, l, m))
            m = l;
        if (r < it->n && it_less(it, r, m))
            m = r;
        if (m == i)
            break;
        size_t x = it->q[i];
        it->q[i] = it->q[m];
        it->q[m] = x;
        i = m;
    }
    if (!it_push(it, 2 * top + 1) || !it_push(it, 2 * top + 2))
        it->n = 0; /* out of memory: this one is the last (a later pass goes on) */
    return it->f->pending.at[top];
}

void rd_fsm_pending_end(struct rd_pending_iter *it)
{
    free(it->q);
    memset(it, 0, sizeof(*it));
}

void rd_fsm__tasks_clear(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_tasks; i++)
        task_free(f->tasks[i]);
    free(f->tasks);
    free(f->deadlines.at);
    free(f->pending.at);
    memset(&f->deadlines, 0, sizeof(f->deadlines));
    memset(&f->pending, 0, sizeof(f->pending));
    rd_map_free(&f->tasks_by_id);
    rd_map_init(&f->tasks_by_id);
    f->tasks = NULL;
    f->n_tasks = f->cap_tasks = 0;
    memset(f->tasks_by_state, 0, sizeof(f->tasks_by_state));
}

void rd_fsm__tasks_move(struct rd_fsm *to, struct rd_fsm *from)
{
    to->tasks = from->tasks;
    to->n_tasks = from->n_tasks;
    to->cap_tasks = from->cap_tasks;
    to->tasks_by_id = from->tasks_by_id;
    memcpy(to->tasks_by_state, from->tasks_by_state, sizeof(to->tasks_by_state));
    to->deadlines = from->deadlines;
    to->pending = from->pending;
    from->tasks = NULL;
    memset(&from->deadlines, 0, sizeof(from->deadlines));
    memset(&from->pending, 0, sizeof(from->pending));
    from->n_tasks = from->cap_tasks = 0;
    rd_map_init(&from->tasks_by_id);
}

const struct rd_task *rd_fsm_task(const struct rd_fsm *f, const char *id)
{
    return rd_map_get(&f->tasks_by_id, id, strlen(id));
}

int rd_task_ran_on(const struct rd_task *t, uint32_t attempt, const char *node)
{
    for (unsigned i = 0; i < RD_TASK_RAN_KEEP && t->ran_attempt[i] != 0; i++)
        if (t->ran_attempt[i] == attempt)
            return t->ran_node[i] == rd_fnv1a(RD_FNV_INIT, node, strlen(node));
    return -1;
}

const struct rd_checkpoint *rd_task_checkpoint(const struct rd_task *t)
{
    return t->n_ckpts ? &t->ckpts[t->n_ckpts - 1] : NULL;
}

uint64_t rd_checkpoint_checksum(const char *data, size_t len)
{
    return rd_fnv1a(RD_FNV_INIT, data, len);
}

bool rd_checkpoint_verifies(const struct rd_checkpoint *c)
{
    return rd_checkpoint_checksum(c->data, c->size) == c->checksum;
}

const struct rd_checkpoint *rd_task_resume_checkpoint(const struct rd_task *t)
{
    for (unsigned k = t->n_ckpts; k-- > 0;)
        if (rd_checkpoint_verifies(&t->ckpts[k]))
            return &t->ckpts[k];
    return NULL;
}

int rd_task_cmp_urgency(const void *a, const void *b)
{
    const struct rd_task *x = *(const struct rd_task *const *)a;
    const struct rd_task *y = *(const struct rd_task *const *)b;
    if (x->critical != y->critical)
        return y->critical - x->critical;
    if (x->priority != y->priority)
        return y->priority - x->priority;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return strcmp(x->id, y->id);
}

unsigned rd_task_failures_since(const struct rd_task *t, int64_t since_ms)
{
    unsigned n = 0;
    for (unsigned i = 0; i < t->n_fail_at; i++)
        n += t->fail_at[i] >= since_ms;
    return n;
}

/* Counts a failure of the current attempt at leader time `at`. */
static void note_failure(struct rd_task *t, int64_t at)
{
    t->failures++;
    if (t->n_fail_at == RD_TASK_FAIL_KEEP) {
        memmove(&t->fail_at[0], &t->fail_at[1], (RD_TASK_FAIL_KEEP - 1) * sizeof(t->fail_at[0]));
        t->n_fail_at--;
    }
    t->fail_at[t->n_fail_at++] = at;
}

static size_t lower_bound(const struct rd_fsm *f, const char *id)
{
    size_t lo = 0, hi = f->n_tasks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(f->tasks[mid]->id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t rd_fsm_task_after(const struct rd_fsm *f, const char *id)
{
    size_t i = lower_bound(f, id);
    if (i < f->n_tasks && strcmp(f->tasks[i]->id, id) == 0)
        i++;
    return i;
}

static int task_insert(struct rd_fsm *f, struct rd_task *t)
{
    if (f->n_tasks == f->cap_tasks) {
        size_t ncap = f->cap_tasks ? f->cap_tasks * 2 : 64;
        struct rd_task **nt = realloc(f->tasks, ncap * sizeof(*nt));
        if (nt == NULL)
            return RD_ENOMEM;
        f->tasks = nt;
        struct rd_task **nd = realloc(f->deadlines.at, ncap * sizeof(*nd));
        if (nd == NULL)
            return RD_ENOMEM; /* the table grew, its count did not: consistent */
        f->deadlines.at = nd;
        struct rd_task **np = realloc(f->pending.at, ncap * sizeof(*np));
        if (np == NULL)
            return RD_ENOMEM;
        f->pending.at = np;
        f->cap_tasks = ncap;
    }
    if (rd_map_put(&f->tasks_by_id, t->id, strlen(t->id), t) != 0)
        return RD_ENOMEM;
    size_t i = lower_bound(f, t->id);
    memmove(&f->tasks[i + 1], &f->tasks[i], (f->n_tasks - i) * sizeof(*f->tasks));
    f->tasks[i] = t;
    f->n_tasks++;
    f->tasks_by_state[t->state]++;
    heaps_sync(f, t);
    return 0;
}

static struct rd_node *node_of(struct rd_fsm *f, const char *id)
{
    return id[0] ? (struct rd_node *)rd_fsm_node(f, id, strlen(id)) : NULL;
}

/* A node's task list keeps its unstarted tasks first: a heartbeat's
 * handover (rd_sched_handover) walks only the first n_unstarted. */
static void list_unlink(struct rd_node *n, struct rd_task *t)
{
    if (t->prev_on_node)
        t->prev_on_node->next_on_node = t->next_on_node;
    else if (n->tasks == t)
        n->tasks = t->next_on_node;
    if (t->next_on_node)
        t->next_on_node->prev_on_node = t->prev_on_node;
    else if (n->tasks_tail == t)
        n->tasks_tail = t->prev_on_node;
    t->next_on_node = t->prev_on_node = NULL;
}

static void list_insert(struct rd_node *n, struct rd_task *t)
{
    if (unstarted(t->state) || n->tasks == NULL) { /* at the head */
        t->prev_on_node = NULL;
        t->next_on_node = n->tasks;
        if (n->tasks)
            n->tasks->prev_on_node = t;
        else
            n->tasks_tail = t;
        n->tasks = t;
    } else { /* at the tail, behind every unstarted one */
        t->next_on_node = NULL;
        t->prev_on_node = n->tasks_tail;
        n->tasks_tail->next_on_node = t;
        n->tasks_tail = t;
    }
}

static bool on_list(const struct rd_node *n, const struct rd_task *t)
{
    return n->tasks == t || t->prev_on_node != NULL;
}

/* Keeps the derived per-node load in step with a task's placement. */
static void unplace(struct rd_fsm *f, struct rd_task *t)
{
    struct rd_node *n = node_of(f, t->node_id);
    if (n != NULL && placed(t->state)) {
        n->slots_in_use -= n->slots_in_use >= t->slots ? t->slots : n->slots_in_use;
        f->fleet_changes++;
        if (n->n_tasks > 0)
            n->n_tasks--;
        if (unstarted(t->state) && n->n_unstarted > 0)
            n->n_unstarted--;
        list_unlink(n, t);
    }
}

static void place(struct rd_fsm *f, struct rd_task *t)
{
    struct rd_node *n = node_of(f, t->node_id);
    if (n != NULL && placed(t->state)) {
        n->slots_in_use += t->slots;
        f->fleet_changes++;
        n->n_tasks++;
        n->n_unstarted += unstarted(t->state);
        list_insert(n, t);
    }
}

static void set_task_state(struct rd_fsm *f, struct rd_task *t, uint8_t state)
{
    /* A task that changes state on its node's list (its first checkpoint:
     * assigned to running) keeps the node's count of unstarted tasks and
     * moves to its part of the list. */
    struct rd_node *n = unstarted(state) != unstarted(t->state) ? node_of(f, t->node_id) : NULL;
    if (n != NULL && on_list(n, t)) {
        if (unstarted(state))
            n->n_unstarted++;
        else if (n->n_unstarted > 0)
            n->n_unstarted--;
        list_unlink(n, t);
    } else {
        n = NULL;
    }
    if (terminal(state) && !terminal(t->state))
        t->finished = f->applying_index; /* when its records must be exported by (prune) */
    f->tasks_by_state[t->state]--;
    t->state = state;
    f->tasks_by_state[state]++;
    if (n != NULL)
        list_insert(n, t);
    heaps_sync(f, t);
}

static int id_of(struct rd_str s, char out[40])
{
    if (s.len == 0 || s.len >= 40 || rd_str_has_nul(s))
        return RD_ENOTFOUND;
    memcpy(out, s.p, s.len);
    out[s.len] = '\0';
    return 0;
}

static int apply_submit(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_task_submit *c = &cmd->u.tsubmit;
    char id[40];
    if (id_of(c->task_id, id) != 0) {
        f->result.status = RD_EINVAL;
        return 0;
    }
    const struct rd_task *old = rd_fsm_task(f, id);
    if (old != NULL) { /* idempotent submit: the existing task answers */
        f->result.status = RD_EEXISTS;
        f->result.task = old;
        return 0;
    }
    struct rd_task *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return RD_ENOMEM;
    memcpy(t->id, id, strlen(id) + 1);
    t->labels_json = rd_str_dup(c->labels_json);
    t->payload_json = rd_str_dup(c->payload_json);
    t->node_id = rd_str_dup(RD_STR(""));
    t->result_json = rd_str_dup(RD_STR(""));
    if (!t->labels_json || !t->payload_json || !t->node_id || !t->result_json) {
        task_free(t);
        return RD_ENOMEM;
    }
    t->state = RD_TASK_PENDING;
    t->priority = c->priority;
    t->critical = c->critical ? 1 : 0;
    t->slots = c->slots;
    t->max_attempts = c->max_attempts;
    t->deadline_ms = c->deadline_ms;
    t->created_at = t->updated_at = cmd->time_ms;
    if (task_insert(f, t) != 0) {
        rd_map_del(&f->tasks_by_id, t->id, strlen(t->id));
        task_free(t);
        return RD_ENOMEM;
    }
    rd_fsm__dg_add(f, RD_DG_TASK, t);
    f->result.task = t;
    f->result.value = 0;
    return 0;
}

static int apply_assign(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_task_assign *c = &cmd->u.tassign;
    char id[40];
    struct rd_task *t = id_of(c->task_id, id) == 0 ? (struct rd_task *)rd_fsm_task(f, id) : NULL;
    if (t == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    f->result.task = t;
    if (c->attempt != t->attempt) {
        f->result.status = RD_EFENCED;
        return 0;
    }
    if (terminal(t->state)) {
        f->result.status = RD_ECONFLICT;
        return 0;
    }
    struct rd_node *n = NULL;
    if (c->node_id.len > 0) {
        n = (struct rd_node *)rd_fsm_node(f, c->node_id.p, c->node_id.len);
        /* Only to a working agent, under the epoch the decision saw. */
        if (n == NULL || n->epoch != c->node_epoch ||
            !(n->state == RD_NODE_ALIVE || n->state == RD_NODE_PROBATION)) {
            f->result.status = RD_ECONFLICT;
            return 0;
        }
    }
    char *node = rd_str_dup(c->node_id);
    if (node == NULL)
        return RD_ENOMEM;
    rd_fsm__dg_touch(f, RD_DG_TASK, t);
    /* Moved off an agent that failed or was isolated while running it: the
     * attempt failed with its agent (poison tasks take agents down). Not
     * when the agent never heard of the attempt (`undelivered`: it died
     * before it was given the task), which a mass crash does to a task
     * moved onto agents that crashed too but were not detected yet. */
    const struct rd_node *lost = node_of(f, t->node_id);
    if (lost != NULL && placed(t->state) && !c->undelivered &&
        (lost->state == RD_NODE_FAILED || lost->state == RD_NODE_ISOLATED))
        note_failure(t, cmd->time_ms);
    snprintf(f->result.old_node, sizeof(f->result.old_node), "%s", t->node_id);
    /* Taken off an agent (a move, a revocation): rebalancing's cooldown
     * counts from here, on any leader (rebalance.c). */
    if (t->node_id[0] != '\0')
        t->moved_at = cmd->time_ms;
    unplace(f, t);
    free(t->node_id);
    t->node_id = node;
    t->node_epoch = n ? c->node_epoch : 0;
    if (n != NULL) {
        t->attempt++;
        memmove(t->ran_attempt + 1, t->ran_attempt,
                (RD_TASK_RAN_KEEP - 1) * sizeof(t->ran_attempt[0]));
        memmove(t->ran_node + 1, t->ran_node, (RD_TASK_RAN_KEEP - 1) * sizeof(t->ran_node[0]));
        t->ran_attempt[0] = t->attempt;
        t->ran_node[0] = rd_fnv1a(RD_FNV_INIT, node, strlen(node));
        set_task_state(f, t,
                       c->state == RD_TASK_RECOVERING ? RD_TASK_RECOVERING : RD_TASK_ASSIGNED);
    } else {
        set_task_state(f, t, c->state == RD_TASK_PAUSED ? RD_TASK_PAUSED : RD_TASK_PENDING);
    }
    place(f, t);
    t->updated_at = cmd->time_ms;
    f->result.value = t->attempt;
    if (c->recovery_id.len > 0) {
        char from[RD_NODE_ID_MAX + 1];
        snprintf(from, sizeof(from), "%s", f->result.old_node);
        return rd_fsm__recovery_item(f, c, t, from, cmd->time_ms);
    }
    return 0;
}

/* Stores version `version` of `t`'s checkpoint (newer than any it holds),
 * keeping `keep` versions. On RD_ENOMEM nothing changed. */
static int add_checkpoint(struct rd_fsm *f, struct rd_task *t, uint64_t version, uint64_t checksum,
                          struct rd_str data_json, uint8_t keep_n, int64_t at)
{
    char *data = rd_str_dup(data_json);
    if (data == NULL)
        return RD_ENOMEM;
    rd_fsm__dg_touch(f, RD_DG_TASK, t);
    unsigned keep = keep_n < 1 ? 1 : keep_n > RD_TASK_MAX_KEEP ? RD_TASK_MAX_KEEP : keep_n;
    while (t->n_ckpts >= keep) {
        ckpt_free(&t->ckpts[0]);
        memmove(&t->ckpts[0], &t->ckpts[1], (t->n_ckpts - 1) * sizeof(t->ckpts[0]));
        t->n_ckpts--;
        memset(&t->ckpts[t->n_ckpts], 0, sizeof(t->ckpts[0]));
    }
    struct rd_checkpoint *k = &t->ckpts[t->n_ckpts++];
    k->version = version;
    k->at = at;
    k->checksum = checksum;
    k->size = data_json.len;
    k->data = data;
    return 0;
}

static int apply_checkpoint(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_task_checkpoint *c = &cmd->u.tckpt;
    char id[40];
    struct rd_task *t = id_of(c->task_id, id) == 0 ? (struct rd_task *)rd_fsm_task(f, id) : NULL;
    if (t == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    f->result.task = t;
    if (c->attempt != t->attempt || !placed(t->state)) {
        f->result.status = RD_EFENCED;
        return 0;
    }
    const struct rd_checkpoint *last = rd_task_checkpoint(t);
    /* The same write again from the current attempt (a retry after a
     * timeout, or an answer lost with a leader): answered as the first was.
     * The stored bytes decide, never the checksum alone. */
    if (last != NULL && c->version == last->version && c->checksum == last->checksum &&
        c->data_json.len == last->size &&
        (last->size == 0 || memcmp(c->data_json.p, last->data, last->size) == 0)) {
        f->result.value = last->version;
        f->result.task = NULL; /* nothing changed: no observer call */
        return 0;
    }
    if (last != NULL && c->version <= last->version) {
        f->result.status = RD_ESTALE_VERSION;
        f->result.value = last->version;
        return 0;
    }
    if (add_checkpoint(f, t, c->version, c->checksum, c->data_json, c->keep, cmd->time_ms) != 0)
        return RD_ENOMEM;
    /* The first checkpoint of an attempt says the agent works on it. */
    if (t->state != RD_TASK_RUNNING)
        set_task_state(f, t, RD_TASK_RUNNING);
    t->updated_at = cmd->time_ms;
    f->result.value = c->version;
    return 0;
}

/* The repair of checkpoints that failed their checksum (cmd.h,
 * rd_cmd_checkpoint_restore): versions only, never checksums, decide. */
static int apply_ckpt_restore(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_checkpoint_restore *c = &cmd->u.crestore;
    char id[40];
    struct rd_task *t = id_of(c->task_id, id) == 0 ? (struct rd_task *)rd_fsm_task(f, id) : NULL;
    if (t == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    f->result.task = t;
    const struct rd_checkpoint *last = rd_task_checkpoint(t);
    if (last == NULL || last->version != c->bad_version) {
        /* Moved on: a newer checkpoint, or the repair was made already. */
        f->result.status = RD_ECONFLICT;
        f->result.value = last ? last->version : 0;
        return 0;
    }
    if (!c->from_backup) {
        unsigned keep = 0;
        while (keep < t->n_ckpts && t->ckpts[keep].version != c->version)
            keep++;
        if (keep == t->n_ckpts) {
            f->result.status = RD_ENOTFOUND; /* that version is no longer held */
            return 0;
        }
        rd_fsm__dg_touch(f, RD_DG_TASK, t);
        while (t->n_ckpts > keep + 1)
            ckpt_free(&t->ckpts[--t->n_ckpts]);
    } else {
        char *data = rd_str_dup(c->data_json);
        if (data == NULL)
            return RD_ENOMEM;
        rd_fsm__dg_touch(f, RD_DG_TASK, t);
        while (t->n_ckpts > 0)
            ckpt_free(&t->ckpts[--t->n_ckpts]);
        struct rd_checkpoint *k = &t->ckpts[t->n_ckpts++];
        k->version = c->version;
        k->at = c->at;
        k->checksum = c->checksum;
        k->size = c->data_json.len;
        k->data = data;
    }
    t->updated_at = cmd->time_ms;
    f->result.value = c->version;
    return 0;
}

static bool same_text(const char *stored, struct rd_str s)
{
    return strlen(stored) == s.len && (s.len == 0 || memcmp(stored, s.p, s.len) == 0);
}

static int apply_finish(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_task_finish *c = &cmd->u.tfinish;
    char id[40];
    struct rd_task *t = id_of(c->task_id, id) == 0 ? (struct rd_task *)rd_fsm_task(f, id) : NULL;
    if (t == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    f->result.task = t;
    /* A cancelled task fences every attempt: its agent must drop it. */
    if (c->attempt != 0 && (c->attempt != t->attempt || t->state == RD_TASK_CANCELLED)) {
        f->result.status = RD_EFENCED;
        return 0;
    }
    /* The same outcome again from the same attempt: idempotent. A retryable
     * failure is the same one while the task still waits under that attempt
     * with the same words (it must not count twice). */
    bool again = t->state == RD_TASK_PENDING && c->state == RD_TASK_PENDING && c->attempt != 0 &&
                 t->attempt != 0 && same_text(t->result_json, c->result_json);
    /* A retryable failure past max_attempts failed the task for good. */
    bool same =
        t->state == c->state || (t->state == RD_TASK_FAILED && c->state == RD_TASK_PENDING &&
                                 c->attempt != 0 && same_text(t->result_json, c->result_json));
    if (terminal(t->state) || again) {
        f->result.status = same ? 0 : RD_ECONFLICT;
        f->result.value = t->attempt;
        if (f->result.status == 0)
            f->result.task = NULL; /* nothing changed: no observer call */
        return 0;
    }
    char *res = rd_str_dup(c->result_json);
    if (res == NULL)
        return RD_ENOMEM;
    rd_fsm__dg_touch(f, RD_DG_TASK, t);
    free(t->result_json);
    t->result_json = res;
    unplace(f, t);
    if (c->state == RD_TASK_FAILED || c->state == RD_TASK_PENDING)
        note_failure(t, cmd->time_ms);
    uint8_t to = c->state;
    /* A retry past max_attempts fails the task for good. */
    if (to == RD_TASK_PENDING && t->max_attempts && t->attempt - t->attempt_base >= t->max_attempts)
        to = RD_TASK_FAILED;
    /* A paused task keeps the agent it was paused on (not placed there: it
     * holds no slots) so the engine knows when its fault is over. */
    if (to == RD_TASK_PENDING || terminal(to)) {
        char *none = rd_str_dup(RD_STR(""));
        if (none == NULL)
            return RD_ENOMEM;
        free(t->node_id);
        t->node_id = none;
        t->node_epoch = 0;
    }
    set_task_state(f, t, to);
    place(f, t);
    t->updated_at = cmd->time_ms;
    f->result.value = t->attempt;
    return 0;
}

/* Ends `t` in the finished `state` with `why` as its error, off its agent
 * (the task observer revokes the attempt there). On RD_ENOMEM nothing changed. */
static int end_task(struct rd_fsm *f, struct rd_task *t, uint8_t state, struct rd_str why,
                    int64_t time_ms)
{
    char *res = rd_str_dup(why), *none = rd_str_dup(RD_STR(""));
    if (res == NULL || none == NULL) {
        free(res);
        free(none);
        return RD_ENOMEM;
    }
    rd_fsm__dg_touch(f, RD_DG_TASK, t);
    unplace(f, t);
    free(t->result_json);
    t->result_json = res;
    free(t->node_id);
    t->node_id = none;
    t->node_epoch = 0;
    set_task_state(f, t, state);
    t->updated_at = time_ms;
    return 0;
}

int rd_fsm__task_quarantine_check(const struct rd_fsm *f, struct rd_str task_id, uint32_t attempt)
{
    char id[40];
    const struct rd_task *t = id_of(task_id, id) == 0 ? rd_fsm_task(f, id) : NULL;
    if (t == NULL)
        return RD_ENOTFOUND;
    if (t->attempt != attempt)
        return RD_EFENCED;
    return terminal(t->state) ? RD_ECONFLICT : 0;
}

int rd_fsm__task_quarantine(struct rd_fsm *f, struct rd_str task_id, const char *why,
                            int64_t time_ms)
{
    char id[40], old_node[RD_NODE_ID_MAX + 1];
    struct rd_task *t = id_of(task_id, id) == 0 ? (struct rd_task *)rd_fsm_task(f, id) : NULL;
    if (t == NULL)
        return 0;
    int old_state = t->state;
    snprintf(old_node, sizeof(old_node), "%s", t->node_id);
    if (end_task(f, t, RD_TASK_FAILED, RD_STR(why), time_ms) != 0)
        return RD_ENOMEM;
    f->result.task = t;
    if (f->on_task != NULL)
        f->on_task(f->on_task_data, t, old_state, old_node);
    return 0;
}

/* ---- conflicts (RD_CMD_CONFLICT, conflicts.c) ----------------------------- */

bool rd_fsm__task_superseded(const struct rd_task *t, uint32_t attempt)
{
    return attempt < t->attempt || !placed(t->state);
}

/* A placed task off its agent and back to pending under the same attempt
 * (which may then no longer write): the scheduler places it again, a new
 * attempt resuming from the newest checkpoint. `none`: "" to own. */
static void take_back(struct rd_fsm *f, struct rd_task *t, char *none)
{
    rd_fsm__dg_touch(f, RD_DG_TASK, t);
    unplace(f, t);
    free(t->node_id);
    t->node_id = none;
    t->node_epoch = 0;
    set_task_state(f, t, RD_TASK_PENDING);
}

int rd_fsm__task_conflict(struct rd_fsm *f, struct rd_task *t, const struct rd_cmd *cmd,
                          uint8_t res, bool *adopted, bool *changed)
{
    const struct rd_cmd_conflict *c = &cmd->u.conflict;
    *adopted = *changed = false;
    if (res == RD_CONFLICT_KEEP_NEWER || terminal(t->state))
        return 0;
    if (res == RD_CONFLICT_FAIL_TASK) {
        char why[200];
        snprintf(why, sizeof(why),
                 "conflict %.*s: a %s of superseded attempt %u (the task was at attempt %u)",
                 (int)c->id.len, c->id.p, rd_conflict_kind_name(c->kind), c->attempt, t->attempt);
        if (end_task(f, t, RD_TASK_FAILED, RD_STR(why), cmd->time_ms) != 0)
            return RD_ENOMEM;
        *changed = true;
        return 0;
    }
    /* keep_progress */
    if (c->kind == RD_CONFLICT_COMPLETE) {
        if (end_task(f, t, RD_TASK_COMPLETED, c->data_json, cmd->time_ms) != 0)
            return RD_ENOMEM;
        *adopted = *changed = true;
        return 0;
    }
    const struct rd_checkpoint *last = rd_task_checkpoint(t);
    if (c->kind != RD_CONFLICT_CHECKPOINT || (last != NULL && c->version <= last->version))
        return 0;
    /* Room first, so that an ENOMEM leaves the task as it was. */
    char *none = rd_str_dup(RD_STR(""));
    if (none == NULL ||
        add_checkpoint(f, t, c->version, c->checksum, c->data_json, c->keep, cmd->time_ms) != 0) {
        free(none);
        return RD_ENOMEM;
    }
    if (placed(t->state))
        take_back(f, t, none);
    else
        free(none);
    t->updated_at = cmd->time_ms;
    *adopted = *changed = true;
    return 0;
}

/* ---- cancel, retry, prune (RD_CMD_TASK_LIFECYCLE) ------------------------ */

/* Ends `t` as cancelled: off its agent (the observer revokes it there), its
 * reason as its error. */
static int cancel(struct rd_fsm *f, struct rd_task *t, const struct rd_cmd *cmd)
{
    const struct rd_cmd_task_lifecycle *c = &cmd->u.tlife;
    return end_task(f, t, RD_TASK_CANCELLED, c->reason.len ? c->reason : RD_STR("cancelled"),
                    cmd->time_ms);
}

/* A failed task (a quarantined poison task too) waits to be placed again:
 * a new attempt fences every earlier one, max_attempts counts afresh, the
 * poison window forgets its failures, its checkpoints stay (it resumes), a
 * deadline that passed is dropped. */
static int retry(struct rd_fsm *f, struct rd_task *t, const struct rd_cmd *cmd)
{
    char *none = rd_str_dup(RD_STR(""));
    if (none == NULL)
        return RD_ENOMEM;
    rd_fsm__dg_touch(f, RD_DG_TASK, t);
    free(t->result_json);
    t->result_json = none;
    t->attempt++;
    t->attempt_base = t->attempt;
    t->n_fail_at = 0;
    memset(t->fail_at, 0, sizeof(t->fail_at));
    t->finished = 0;
    if (t->deadline_ms != 0 && t->deadline_ms <= cmd->time_ms)
        t->deadline_ms = 0; /* a deadline that passed would fail it again at once */
    set_task_state(f, t, RD_TASK_PENDING);
    t->updated_at = cmd->time_ms;
    return 0;
}

/* True when the records of a task that finished at raft index `finished`
 * are in PostgreSQL (or export is off): every record changed up to that
 * index is exported. `pending_from`: rd_fsm__export_pending_from(). */
static bool exported(const struct rd_fsm *f, uint64_t finished, uint64_t pending_from)
{
    return !f->exp.enabled || finished < pending_from;
}

static bool prunable(const struct rd_fsm *f, const struct rd_task *t, int64_t now_ms,
                     int64_t retention_ms, uint64_t pending_from)
{
    return terminal(t->state) && now_ms - t->updated_at >= retention_ms &&
           exported(f, t->finished, pending_from);
}

size_t rd_fsm_tasks_prunable(const struct rd_fsm *f, int64_t now_ms, int64_t retention_ms,
                             size_t max)
{
    size_t n = 0;
    uint64_t from = rd_fsm__export_pending_from(f);
    if (f->tasks_by_state[RD_TASK_COMPLETED] + f->tasks_by_state[RD_TASK_FAILED] +
            f->tasks_by_state[RD_TASK_CANCELLED] ==
        0)
        return 0; /* nothing finished: no walk */
    for (size_t i = 0; i < f->n_tasks && n < max; i++)
        n += prunable(f, f->tasks[i], now_ms, retention_ms, from);
    return n;
}

/* Drops up to c->max finished tasks past their retention, in id order: the
 * same ones on every replica (only the state and the command decide). */
static void prune(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_task_lifecycle *c = &cmd->u.tlife;
    uint64_t from = rd_fsm__export_pending_from(f);
    size_t kept = 0, gone = 0;
    for (size_t i = 0; i < f->n_tasks; i++) {
        struct rd_task *t = f->tasks[i];
        if (gone < c->max && prunable(f, t, cmd->time_ms, c->retention_ms, from)) {
            rd_fsm__dg_remove(f, RD_DG_TASK, t);
            rd_map_del(&f->tasks_by_id, t->id, strlen(t->id));
            f->tasks_by_state[t->state]--;
            if (t->deadline_pos != 0) /* finished: in neither; kept safe all the same */
                h_remove(f, HEAP_DEADLINE, t);
            if (t->pending_pos != 0)
                h_remove(f, HEAP_PENDING, t);
            task_free(t);
            gone++;
            continue;
        }
        f->tasks[kept++] = t;
    }
    f->n_tasks = kept;
    f->result.value = gone;
    if (gone > 0) /* a task's conflict records go with it */
        rd_fsm__conflicts_drop_pruned(f);
}

static int apply_lifecycle(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_task_lifecycle *c = &cmd->u.tlife;
    if (c->op == RD_TASK_OP_PRUNE) {
        prune(f, cmd);
        return 0;
    }
    char id[40];
    struct rd_task *t = id_of(c->task_id, id) == 0 ? (struct rd_task *)rd_fsm_task(f, id) : NULL;
    if (t == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    f->result.task = t;
    /* Cancel: anything not finished. Retry: failed tasks only. */
    if (c->op == RD_TASK_OP_CANCEL ? terminal(t->state) : t->state != RD_TASK_FAILED) {
        f->result.status = RD_ECONFLICT;
        f->result.value = t->attempt;
        return 0;
    }
    int rv = c->op == RD_TASK_OP_CANCEL ? cancel(f, t, cmd) : retry(f, t, cmd);
    f->result.value = t->attempt;
    return rv;
}

int rd_fsm__task_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_task *before = NULL;
    int old_state = -1;
    char old_node[RD_NODE_ID_MAX + 1] = "";
    const char *tid = NULL;
    struct rd_str sid = cmd->type == RD_CMD_TASK_SUBMIT          ? cmd->u.tsubmit.task_id
                        : cmd->type == RD_CMD_TASK_ASSIGN        ? cmd->u.tassign.task_id
                        : cmd->type == RD_CMD_TASK_CHECKPOINT    ? cmd->u.tckpt.task_id
                        : cmd->type == RD_CMD_CHECKPOINT_RESTORE ? cmd->u.crestore.task_id
                        : cmd->type == RD_CMD_TASK_LIFECYCLE     ? cmd->u.tlife.task_id
                                                                 : cmd->u.tfinish.task_id;
    char id[40];
    if (id_of(sid, id) == 0 && (before = rd_fsm_task(f, id)) != NULL) {
        old_state = before->state;
        snprintf(old_node, sizeof(old_node), "%s", before->node_id);
        tid = id;
    }
    (void)tid;
    int rv;
    switch (cmd->type) {
    case RD_CMD_TASK_SUBMIT:
        rv = apply_submit(f, cmd);
        break;
    case RD_CMD_TASK_ASSIGN:
        rv = apply_assign(f, cmd);
        break;
    case RD_CMD_TASK_CHECKPOINT:
        rv = apply_checkpoint(f, cmd);
        break;
    case RD_CMD_CHECKPOINT_RESTORE:
        rv = apply_ckpt_restore(f, cmd);
        break;
    case RD_CMD_TASK_LIFECYCLE:
        rv = apply_lifecycle(f, cmd);
        break;
    default:
        rv = apply_finish(f, cmd);
        break;
    }
    if (rv == 0 && f->result.status == 0 && f->result.task != NULL && f->on_task != NULL)
        f->on_task(f->on_task_data, f->result.task, old_state, old_node);
    return rv;
}

/* ---- snapshot section --------------------------------------------------- */

void rd_fsm__task_write_one(struct rd_wbuf *w, const struct rd_task *t)
{
    rd_w_str(w, t->id, strlen(t->id));
    rd_w_u8(w, t->state);
    rd_w_u8(w, t->priority);
    rd_w_u8(w, t->critical);
    rd_w_u32(w, t->slots);
    rd_w_str(w, t->labels_json, strlen(t->labels_json));
    rd_w_str(w, t->payload_json, strlen(t->payload_json));
    rd_w_u32(w, t->max_attempts);
    rd_w_u32(w, t->attempt);
    rd_w_u32(w, t->failures);
    rd_w_str(w, t->node_id, strlen(t->node_id));
    rd_w_u64(w, t->node_epoch);
    rd_w_i64(w, t->created_at);
    rd_w_i64(w, t->updated_at);
    rd_w_str(w, t->result_json, strlen(t->result_json));
    rd_w_u8(w, t->n_ckpts);
    for (unsigned k = 0; k < t->n_ckpts; k++) {
        const struct rd_checkpoint *c = &t->ckpts[k];
        rd_w_u64(w, c->version);
        rd_w_i64(w, c->at);
        rd_w_u64(w, c->checksum);
        rd_w_str(w, c->data, c->size);
    }
    rd_w_u8(w, t->n_fail_at);
    for (unsigned k = 0; k < t->n_fail_at; k++)
        rd_w_i64(w, t->fail_at[k]);
    rd_w_u32(w, t->attempt_base); /* format 7 on */
    rd_w_i64(w, t->deadline_ms);
    rd_w_u64(w, t->finished);
    rd_w_i64(w, t->moved_at);                         /* format 9 on */
    for (unsigned i = 0; i < RD_TASK_RAN_KEEP; i++) { /* format 10 on */
        rd_w_u32(w, t->ran_attempt[i]);
        rd_w_u64(w, t->ran_node[i]);
    }
}

void rd_fsm__tasks_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u64(w, f->n_tasks);
    for (size_t i = 0; i < f->n_tasks; i++)
        rd_fsm__task_write_one(w, f->tasks[i]);
}

int rd_fsm__tasks_read(struct rd_fsm *f, struct rd_rbuf *r, unsigned format)
{
    uint64_t count = rd_r_u64(r);
    if (r->err || count > r->len)
        return RD_ECORRUPT;
    for (uint64_t i = 0; i < count; i++) {
        struct rd_task *t = calloc(1, sizeof(*t));
        if (t == NULL)
            return RD_ENOMEM;
        struct rd_str id = rd_r_text(r);
        t->state = rd_r_u8(r);
        t->priority = rd_r_u8(r);
        t->critical = rd_r_u8(r);
        t->slots = rd_r_u32(r);
        struct rd_str labels = rd_r_text(r), payload = rd_r_text(r);
        t->max_attempts = rd_r_u32(r);
        t->attempt = rd_r_u32(r);
        t->failures = rd_r_u32(r);
        struct rd_str node = rd_r_text(r);
        t->node_epoch = rd_r_u64(r);
        t->created_at = rd_r_i64(r);
        t->updated_at = rd_r_i64(r);
        struct rd_str result = rd_r_text(r);
        uint8_t n_ckpts = rd_r_u8(r);
        bool bad = r->err || id_of(id, t->id) != 0 || t->state >= RD_TASK_STATE_COUNT ||
                   n_ckpts > RD_TASK_MAX_KEEP || rd_fsm_task(f, t->id) != NULL;
        for (unsigned k = 0; !bad && k < n_ckpts; k++) {
            struct rd_checkpoint *c = &t->ckpts[k];
            c->version = rd_r_u64(r);
            c->at = rd_r_i64(r);
            c->checksum = rd_r_u64(r);
            struct rd_str data = rd_r_str(r); /* written with its size */
            if (r->err) {
                bad = true;
                break;
            }
            c->size = data.len;
            c->data = rd_str_dup(data);
            t->n_ckpts++;
            bad = c->data == NULL;
        }
        if (!bad && format >= 2) {
            uint8_t n_fail = rd_r_u8(r);
            bad = r->err || n_fail > RD_TASK_FAIL_KEEP;
            for (unsigned k = 0; !bad && k < n_fail; k++)
                t->fail_at[t->n_fail_at++] = rd_r_i64(r);
            bad = bad || r->err;
        }
        if (!bad && format >= 7) {
            t->attempt_base = rd_r_u32(r);
            t->deadline_ms = rd_r_i64(r);
            t->finished = rd_r_u64(r);
            bad = r->err || t->attempt_base > t->attempt;
        } else if (!bad && terminal(t->state)) {
            t->finished = 1; /* an older snapshot: before anything was exported */
        }
        if (!bad && format >= 9) {
            t->moved_at = rd_r_i64(r);
            bad = r->err;
        }
        for (unsigned k = 0; !bad && format >= 10 && k < RD_TASK_RAN_KEEP; k++) {
            t->ran_attempt[k] = rd_r_u32(r);
            t->ran_node[k] = rd_r_u64(r);
            bad = r->err || t->ran_attempt[k] > t->attempt;
        }
        if (!bad) {
            t->labels_json = rd_str_dup(labels);
            t->payload_json = rd_str_dup(payload);
            t->node_id = rd_str_dup(node);
            t->result_json = rd_str_dup(result);
            bad = !t->labels_json || !t->payload_json || !t->node_id || !t->result_json;
        }
        if (bad || task_insert(f, t) != 0) {
            task_free(t);
            return RD_ECORRUPT;
        }
        place(f, t);
    }
    return 0;
}
