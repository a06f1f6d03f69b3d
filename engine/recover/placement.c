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
/* True when every key of `want` has an equal value in `have`. */
static bool labels_subset(json_t *want, json_t *have)
{
    const char *k;
    json_t *v;
    if (want == NULL || have == NULL)
        return false;
    json_object_foreach(want, k, v)
    {
        json_t *h = json_object_get(have, k);
        if (h == NULL || !json_equal(h, v))
            return false;
    }
    return true;
}

bool rd_sched_labels_match(const char *task_labels, const char *node_labels)
{
    if (task_labels == NULL || strcmp(task_labels, "{}") == 0)
        return true;
    json_t *want = json_loads(task_labels, 0, NULL), *have = json_loads(node_labels, 0, NULL);
    bool ok = labels_subset(want, have);
    json_decref(want);
    json_decref(have);
    return ok;
}

/* The labels of node `i`, parsed once per pass (NULL when unparsable). */
static json_t *node_labels(struct rd_sched *s, size_t i)
{
    const struct rd_fsm *f = s->env.fsm;
    if (s->labels == NULL || s->n_labels != f->n_nodes) {
        for (size_t k = 0; k < s->n_labels; k++)
            json_decref(s->labels[k]);
        free(s->labels);
        s->labels = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*s->labels));
        s->n_labels = s->labels ? f->n_nodes : 0;
        if (s->labels == NULL)
            return NULL;
    }
    if (s->labels[i] == NULL)
        s->labels[i] = json_loads(f->nodes[i]->labels_json, 0, NULL);
    return s->labels[i];
}

bool rd_sched__node_fits(struct rd_sched *s, json_t *want, size_t i)
{
    return labels_subset(want, node_labels(s, i));
}

/* ---- the placement index: a tournament tree over the node indices ----
 * Leaf `width + i` is node i: its free slots at 100 % of capacity and its
 * share of slots used with the pass's load (those of a node that does not
 * work: -1 and 2.0); an inner entry holds the most room and the least share
 * below it. Both are bounds: the choice itself is made on the node, exactly
 * as the scan makes it, so load added to `extra` behind the index's back
 * (it only grows within a pass) makes the bounds looser, never wrong. */

static void failed_free(struct rd_sched *s)
{
    for (size_t i = 0; i < s->place_fail.cap; i++)
        if (s->place_fail.slots && s->place_fail.slots[i].value)
            free(s->place_fail.slots[i].value);
    rd_map_free(&s->place_fail);
    rd_map_init(&s->place_fail);
}

static void ix_free(struct rd_sched *s)
{
    free(s->ix.room);
    free(s->ix.load);
    memset(&s->ix, 0, sizeof(s->ix));
}

/* Forgets the parsed labels, the index and the failed placements (the node
 * table may change between passes). */
void rd_sched__labels_reset(struct rd_sched *s)
{
    for (size_t k = 0; k < s->n_labels; k++)
        json_decref(s->labels[k]);
    free(s->labels);
    s->labels = NULL;
    s->n_labels = 0;
    ix_free(s);
    failed_free(s);
}

static bool working(const struct rd_node *nd)
{
    return nd->state == RD_NODE_ALIVE || nd->state == RD_NODE_PROBATION;
}

/* A working agent the detectors do not hold in trouble (nor is it on its
 * way to suspect or failed through the log): one that can take a task.
 * Skipped, not ranked last: the trouble ends within a commit (suspect) or
 * with the verdict, and a task that waits a pass for it is placed then,
 * where one placed on a silent agent loses its attempt and waits for the
 * agent's failure (and, under safe_recovery, its lease) to move again. */
bool rd_sched__placeable(const struct rd_sched *s, const struct rd_node *nd)
{
    return working(nd) && !rd_analysis_troubled(s->env.analysis, nd);
}

static void ix_leaf(struct rd_sched *s, size_t i, const uint32_t *extra)
{
    const struct rd_node *nd = s->env.fsm->nodes[i];
    size_t k = s->ix.width + i;
    s->ix.room[k] = -1;
    s->ix.load[k] = 2.0;
    if (!rd_sched__placeable(s, nd) || nd->slots == 0) /* no slots: never chosen (NaN load) */
        return;
    uint32_t used = nd->slots_in_use + extra[i];
    s->ix.room[k] = (int64_t)nd->slots - (int64_t)used;
    s->ix.load[k] = (double)used / (double)nd->slots;
}

static void ix_pull(struct rd_sched *s, size_t k)
{
    size_t l = 2 * k, r = l + 1;
    s->ix.room[k] = s->ix.room[l] > s->ix.room[r] ? s->ix.room[l] : s->ix.room[r];
    s->ix.load[k] = s->ix.load[l] < s->ix.load[r] ? s->ix.load[l] : s->ix.load[r];
}

/* The index for this pass's `extra`, built when missing or stale (the
 * machine applied something since); false when out of memory. */
static bool ix_ready(struct rd_sched *s, const uint32_t *extra)
{
    const struct rd_fsm *f = s->env.fsm;
    if (s->ix.width != 0 && s->ix.n_nodes == f->n_nodes && s->ix.applied == f->n_applied &&
        s->ix.extra == extra)
        return true;
    ix_free(s);
    failed_free(s); /* learnt under other load */
    size_t width = 1;
    while (width < f->n_nodes)
        width *= 2;
    s->ix.room = malloc(2 * width * sizeof(*s->ix.room));
    s->ix.load = malloc(2 * width * sizeof(*s->ix.load));
    if (s->ix.room == NULL || s->ix.load == NULL) {
        ix_free(s);
        return false;
    }
    s->ix.width = width;
    s->ix.n_nodes = f->n_nodes;
    s->ix.applied = f->n_applied;
    s->ix.extra = extra;
    for (size_t i = 0; i < width; i++) {
        if (i < f->n_nodes) {
            ix_leaf(s, i, extra);
        } else {
            s->ix.room[width + i] = -1;
            s->ix.load[width + i] = 2.0;
        }
    }
    for (size_t k = width; k-- > 1;)
        ix_pull(s, k);
    return true;
}

void rd_sched__add_load(struct rd_sched *s, uint32_t *extra, size_t i, uint32_t slots)
{
    extra[i] += slots;
    if (s->ix.width == 0 || s->ix.extra != extra || i >= s->ix.n_nodes)
        return;
    ix_leaf(s, i, extra);
    for (size_t k = (s->ix.width + i) / 2; k >= 1; k /= 2)
        ix_pull(s, k);
}

int64_t rd_sched__most_room(struct rd_sched *s, const uint32_t *extra)
{
    if (!ix_ready(s, extra)) {
        const struct rd_fsm *f = s->env.fsm;
        int64_t most = -1;
        for (size_t i = 0; i < f->n_nodes; i++) {
            const struct rd_node *nd = f->nodes[i];
            int64_t room = (int64_t)nd->slots - (int64_t)nd->slots_in_use - (int64_t)extra[i];
            if (rd_sched__placeable(s, nd) && nd->slots > 0 && room > most)
                most = room;
        }
        return most;
    }
    return s->ix.room[1];
}

/* Whether node `i` takes `t` under `limit_pct` with the pass's load, and its
 * share of slots used then (the scan's test, in one place). */
static bool node_takes(const struct rd_sched *s, const struct rd_node *nd, const struct rd_task *t,
                       uint32_t extra, unsigned limit_pct, double *load)
{
    if (!rd_sched__placeable(s, nd))
        return false;
    uint32_t cap = (uint32_t)((uint64_t)nd->slots * limit_pct / 100);
    if (cap < 1)
        cap = 1;
    uint32_t used = nd->slots_in_use + extra;
    if (used + t->slots > cap)
        return false;
    *load = (double)used / (double)nd->slots;
    return true;
}

size_t rd_sched__choose_scan(struct rd_sched *s, const struct rd_task *t, const uint32_t *extra,
                             unsigned limit_pct)
{
    const struct rd_fsm *f = s->env.fsm;
    bool any_label = t->labels_json != NULL && strcmp(t->labels_json, "{}") != 0;
    json_t *want = any_label ? json_loads(t->labels_json, 0, NULL) : NULL;
    size_t best = SIZE_MAX;
    double best_load = 2.0, load;
    for (size_t i = 0; i < f->n_nodes; i++) {
        if (node_takes(s, f->nodes[i], t, extra[i], limit_pct, &load) && load < best_load &&
            (!any_label || labels_subset(want, node_labels(s, i)))) {
            best_load = load;
            best = i;
        }
    }
    json_decref(want);
    return best;
}

struct search {
    struct rd_sched *s;
    const struct rd_task *t;
    const uint32_t *extra;
    unsigned limit_pct;
    json_t *want; /* the task's labels, NULL: any node */
    size_t best;
    double best_load;
};

/* Left to right, so leaves come in node order: a subtree whose least share
 * is not below the best found so far holds no better node (on a tie the
 * first node wins, as in the scan); one without room for the task at 100 %
 * holds none that fits at any limit up to 100 %. */
static void search(struct search *q, size_t k)
{
    struct rd_sched *s = q->s;
    if (s->ix.room[k] < (int64_t)q->t->slots || s->ix.load[k] >= q->best_load)
        return;
    if (k < s->ix.width) {
        search(q, 2 * k);
        search(q, 2 * k + 1);
        return;
    }
    size_t i = k - s->ix.width;
    double load;
    if (node_takes(s, s->env.fsm->nodes[i], q->t, q->extra[i], q->limit_pct, &load) &&
        load < q->best_load && (q->want == NULL || labels_subset(q->want, node_labels(s, i)))) {
        q->best_load = load;
        q->best = i;
    }
}

/* The key of what found no room: "limit:labels". */
static int failed_key(const struct rd_task *t, unsigned limit_pct, char *out, size_t len)
{
    return snprintf(out, len, "%u:%s", limit_pct, t->labels_json ? t->labels_json : "");
}

struct failed {
    uint32_t slots;
    char key[];
};

size_t rd_sched__choose(struct rd_sched *s, const struct rd_task *t, const uint32_t *extra,
                        unsigned limit_pct)
{
    if (limit_pct > 100 || !ix_ready(s, extra))
        return rd_sched__choose_scan(s, t, extra, limit_pct);
    char key[512];
    int klen = failed_key(t, limit_pct, key, sizeof(key));
    bool keyed = klen > 0 && (size_t)klen < sizeof(key);
    struct failed *known = keyed ? rd_map_get(&s->place_fail, key, (size_t)klen) : NULL;
    if (known != NULL && t->slots >= known->slots)
        return SIZE_MAX;
    bool any_label = t->labels_json != NULL && strcmp(t->labels_json, "{}") != 0;
    struct search q = {.s = s,
                       .t = t,
                       .extra = extra,
                       .limit_pct = limit_pct,
                       .want = any_label ? json_loads(t->labels_json, 0, NULL) : NULL,
                       .best = SIZE_MAX,
                       .best_load = 2.0};
    if (s->ix.width > 0 && (!any_label || q.want != NULL))
        search(&q, 1);
    json_decref(q.want);
    if (q.best == SIZE_MAX && keyed) {
        if (known != NULL) {
            known->slots = t->slots;
        } else if ((known = malloc(sizeof(*known) + (size_t)klen + 1)) != NULL) {
            known->slots = t->slots;
            memcpy(known->key, key, (size_t)klen + 1);
            if (rd_map_put(&s->place_fail, known->key, (size_t)klen, known) != 0)
                free(known);
        }
    }
    return q.best;
}
