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

static void pass(struct rd_sched *s)
{
    struct rd_engine *eng = s->eng;
    struct rd_fsm *f = &eng->fsm;
    s->kicked = false;
    if (!rd_replica_is_leader(&eng->replica) || eng->shutting_down ||
        f->tasks_by_state[RD_TASK_PENDING] == 0)
        return;
    size_t n = 0;
    struct rd_task **todo = malloc(f->tasks_by_state[RD_TASK_PENDING] * sizeof(*todo));
    if (todo == NULL)
        return;
    for (size_t i = 0; i < f->n_tasks && n < f->tasks_by_state[RD_TASK_PENDING]; i++) {
        struct rd_task *t = f->tasks[i];
        if (t->state == RD_TASK_PENDING && !rd_map_get(&s->inflight, t->id, strlen(t->id)))
            todo[n++] = t;
    }
    qsort(todo, n, sizeof(*todo), by_urgency);
    /* Tentative load of this pass, so one pass does not overfill an agent. */
    uint32_t *extra = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*extra));
    for (size_t k = 0; extra != NULL && k < n; k++) {
        struct rd_task *t = todo[k];
        size_t best = SIZE_MAX;
        double best_load = 2.0;
        for (size_t i = 0; i < f->n_nodes; i++) {
            const struct rd_node *nd = f->nodes[i];
            if (nd->state != RD_NODE_ALIVE && nd->state != RD_NODE_PROBATION)
                continue;
            uint32_t used = nd->slots_in_use + extra[i];
            if (used + t->slots > nd->slots)
                continue;
            double load = (double)used / (double)nd->slots;
            if (load < best_load && rd_sched_labels_match(t->labels_json, nd->labels_json)) {
                best_load = load;
                best = i;
            }
        }
        if (best == SIZE_MAX)
            continue; /* waits for capacity */
        const struct rd_node *nd = f->nodes[best];
        struct rd_cmd cmd = {.type = RD_CMD_TASK_ASSIGN, .time_ms = rd_engine_stamp(eng)};
        cmd.u.tassign.task_id = RD_STR(t->id);
        cmd.u.tassign.attempt = t->attempt;
        cmd.u.tassign.node_id = (struct rd_str){nd->node_id, (uint32_t)nd->id_len};
        cmd.u.tassign.node_epoch = nd->epoch;
        cmd.u.tassign.state = RD_TASK_ASSIGNED;
        struct rd_wbuf w;
        rd_w_init(&w);
        struct placement *p = calloc(1, sizeof(*p));
        char *key = strdup(t->id);
        if (p == NULL || key == NULL || rd_cmd_encode(&cmd, &w) != 0) {
            free(p);
            free(key);
            rd_w_free(&w);
            break;
        }
        p->s = s;
        memcpy(p->task_id, t->id, strlen(t->id) + 1);
        if (rd_replica_submit(&eng->replica, &w, placed_cb, p) != 0) {
            free(p);
            free(key);
            rd_w_free(&w);
            break;
        }
        rd_w_free(&w);
        rd_map_put(&s->inflight, key, strlen(key), key);
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
