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

/* Forgets the parsed labels (the node table may change between passes). */
void rd_sched__labels_reset(struct rd_sched *s)
{
    for (size_t k = 0; k < s->n_labels; k++)
        json_decref(s->labels[k]);
    free(s->labels);
    s->labels = NULL;
    s->n_labels = 0;
}

/* The working agent with the most room for `t`, or SIZE_MAX. `limit_pct`
 * caps how full a node may get (100: its whole capacity; at least one slot). */
size_t rd_sched__choose(struct rd_sched *s, const struct rd_task *t, const uint32_t *extra,
                        unsigned limit_pct)
{
    const struct rd_fsm *f = s->env.fsm;
    bool any_label = t->labels_json != NULL && strcmp(t->labels_json, "{}") != 0;
    json_t *want = any_label ? json_loads(t->labels_json, 0, NULL) : NULL;
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
        if (load < best_load && (!any_label || labels_subset(want, node_labels(s, i)))) {
            best_load = load;
            best = i;
        }
    }
    json_decref(want);
    return best;
}
