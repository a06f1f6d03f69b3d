#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"
#include "sched.h"

#define PASS_MS 100 /* at most this long between passes while work waits */

bool rd_sched_labels_match(const char *task_labels, const char *node_labels)
{
    if (task_labels == NULL || strcmp(task_labels, "{}") == 0)
        return true;
    json_t *want = json_loads(task_labels, 0, NULL), *have = json_loads(node_labels, 0, NULL);
    bool ok = want != NULL && have != NULL;
    const char *k;
    json_t *v;
    if (ok) {
        json_object_foreach(want, k, v)
        {
            json_t *h = json_object_get(have, k);
            if (h == NULL || !json_equal(h, v)) {
                ok = false;
                break;
            }
        }
    }
    json_decref(want);
    json_decref(have);
    return ok;
}

struct placement {
    struct rd_sched *s;
    char task_id[40];
};

static void placed_cb(void *data, int status, uint64_t value)
{
    struct placement *p = data;
    struct rd_sched *s = p->s;
    char *key = rd_map_del(&s->inflight, p->task_id, strlen(p->task_id));
    free(key);
    if (status != 0) {
        s->placements_refused++;
        RD_DEBUG("sched", "placement_refused", "task=%s error=%s", p->task_id, rd_err_name(status));
    }
    (void)value;
    free(p);
    rd_sched_kick(s);
}

static int by_urgency(const void *a, const void *b)
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

/* The working agent with the most room for `t`, or SIZE_MAX. `limit_pct`
 * caps how full a node may get (100: its whole capacity; at least one slot). */
static size_t choose(struct rd_fsm *f, const struct rd_task *t, const uint32_t *extra,
                     unsigned limit_pct)
{
    size_t best = SIZE_MAX;
    double best_load = 2.0;
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *nd = f->nodes[i];
        if (nd->state != RD_NODE_ALIVE && nd->state != RD_NODE_PROBATION)
            continue;
        uint32_t cap = (uint32_t)((uint64_t)nd->slots * limit_pct / 100);
        if (cap < 1)
            cap = 1;
        uint32_t used = nd->slots_in_use + extra[i];
        if (used + t->slots > cap)
            continue;
        double load = (double)used / (double)nd->slots;
        if (load < best_load && rd_sched_labels_match(t->labels_json, nd->labels_json)) {
            best_load = load;
            best = i;
        }
    }
    return best;
}

static bool propose_assign(struct rd_sched *s, const struct rd_task *t, const struct rd_node *nd,
                           int state)
{
    struct rd_engine *eng = s->eng;
    struct rd_cmd cmd = {.type = RD_CMD_TASK_ASSIGN, .time_ms = rd_engine_stamp(eng)};
    cmd.u.tassign.task_id = RD_STR(t->id);
    cmd.u.tassign.attempt = t->attempt;
    cmd.u.tassign.node_id = nd ? (struct rd_str){nd->node_id, (uint32_t)nd->id_len} : RD_STR("");
    cmd.u.tassign.node_epoch = nd ? nd->epoch : 0;
    cmd.u.tassign.state = (uint8_t)state;
    struct rd_wbuf w;
    rd_w_init(&w);
    struct placement *p = calloc(1, sizeof(*p));
    char *key = strdup(t->id);
    if (p == NULL || key == NULL || rd_cmd_encode(&cmd, &w) != 0) {
        free(p);
        free(key);
        rd_w_free(&w);
        return false;
    }
    p->s = s;
    memcpy(p->task_id, t->id, strlen(t->id) + 1);
    if (rd_replica_submit(&eng->replica, &w, placed_cb, p) != 0) {
        free(p);
        free(key);
        rd_w_free(&w);
        return false;
    }
    rd_w_free(&w);
    rd_map_put(&s->inflight, key, strlen(key), key);
    return true;
}

static bool node_gone(const struct rd_node *n)
{
    return n->state == RD_NODE_FAILED || n->state == RD_NODE_LEFT || n->state == RD_NODE_ISOLATED ||
           n->state == RD_NODE_DRAINING;
}

/* Moves the tasks of failed, isolated, departed and draining agents, most
 * urgent first (the built-in fast_recovery: at once, relying on the attempt
 * fencing). While a partition is suspected only critical tasks move; the
 * others wait for their agents to come back. */
static void recover(struct rd_sched *s, uint32_t *extra)
{
    struct rd_engine *eng = s->eng;
    struct rd_fsm *f = &eng->fsm;
    unsigned limit = eng->cfg.fault_tolerance.recovery_strategies.fast_recovery.resource_limit;
    bool partition = eng->analysis.partition_suspected;
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *n = f->nodes[i];
        if (n->tasks == NULL || !node_gone(n))
            continue;
        struct rd_task *todo[256];
        size_t k = 0;
        for (struct rd_task *t = n->tasks; t != NULL && k < RD_ARRAY_SIZE(todo);
             t = t->next_on_node)
            if (!rd_map_get(&s->inflight, t->id, strlen(t->id)) && (!partition || t->critical))
                todo[k++] = t;
        qsort(todo, k, sizeof(*todo), by_urgency);
        for (size_t j = 0; j < k; j++) {
            struct rd_task *t = todo[j];
            size_t best = choose(f, t, extra, limit ? limit : 100);
            const struct rd_node *to = best == SIZE_MAX ? NULL : f->nodes[best];
            /* No room anywhere: back to pending, placed when capacity returns. */
            if (!propose_assign(s, t, to, to ? RD_TASK_RECOVERING : RD_TASK_PENDING))
                return;
            if (to != NULL)
                extra[best] += t->slots;
            s->recoveries_total++;
            RD_INFO("recovery", "task_moved",
                    "task=%s from=%s to=%s attempt=%u critical=%d priority=%u", t->id, n->node_id,
                    to ? to->node_id : "(pending)", t->attempt + (to ? 1 : 0), t->critical,
                    t->priority);
        }
    }
}

static void pass(struct rd_sched *s)
{
    struct rd_engine *eng = s->eng;
    struct rd_fsm *f = &eng->fsm;
    s->kicked = false;
    if (!rd_replica_is_leader(&eng->replica) || eng->shutting_down)
        return;
    /* Tentative load of this pass, so one pass does not overfill an agent. */
    uint32_t *extra = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*extra));
    if (extra == NULL)
        return;
    recover(s, extra);
    if (f->tasks_by_state[RD_TASK_PENDING] == 0) {
        free(extra);
        return;
    }
    size_t n = 0;
    struct rd_task **todo = malloc(f->tasks_by_state[RD_TASK_PENDING] * sizeof(*todo));
    if (todo == NULL) {
        free(extra);
        return;
    }
    for (size_t i = 0; i < f->n_tasks && n < f->tasks_by_state[RD_TASK_PENDING]; i++) {
        struct rd_task *t = f->tasks[i];
        if (t->state == RD_TASK_PENDING && !rd_map_get(&s->inflight, t->id, strlen(t->id)))
            todo[n++] = t;
    }
    qsort(todo, n, sizeof(*todo), by_urgency);
    for (size_t k = 0; k < n; k++) {
        struct rd_task *t = todo[k];
        size_t best = choose(f, t, extra, 100);
        if (best == SIZE_MAX)
            continue; /* waits for capacity */
        if (!propose_assign(s, t, f->nodes[best], RD_TASK_ASSIGNED))
            break;
        extra[best] += t->slots;
        s->placements_total++;
    }
    free(extra);
    free(todo);
}

static void on_timer(uv_timer_t *t)
{
    pass(t->data);
}

void rd_sched_init(struct rd_sched *s, struct rd_engine *eng)
{
    memset(s, 0, sizeof(*s));
    s->eng = eng;
    rd_map_init(&s->inflight);
}

void rd_sched_start(struct rd_sched *s)
{
    if (s->started)
        return;
    uv_timer_init(s->eng->loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_timer, PASS_MS, PASS_MS);
    s->started = true;
    rd_sched_kick(s);
}

void rd_sched_kick(struct rd_sched *s)
{
    if (!s->started || s->kicked)
        return;
    s->kicked = true;
    uv_timer_start(&s->timer, on_timer, 0, PASS_MS);
}

void rd_sched_stop(struct rd_sched *s)
{
    if (!s->started)
        return;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, NULL);
    s->started = false;
}

void rd_sched_close(struct rd_sched *s)
{
    for (size_t i = 0; i < s->inflight.cap; i++)
        if (s->inflight.slots && s->inflight.slots[i].value)
            free(s->inflight.slots[i].value);
    rd_map_free(&s->inflight);
}
