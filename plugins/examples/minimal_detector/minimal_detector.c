/*
 * The smallest complete detector: it suspects an agent whose heartbeat
 * reports more slots in use than the agent registered, and clears it when
 * the load is back within capacity. Copy this file to start a plugin.
 *
 *   cc -shared -fPIC -fvisibility=hidden -I<recoveryd>/engine/include \
 *      -o minimal_detector.so minimal_detector.c
 *
 * and configure an instance:
 *
 *   plugins:
 *     instances:
 *       - name: overbooked
 *         plugin: minimal_detector
 *         config:
 *           tolerance: 0
 */
#include <stdlib.h>

#include "recoveryd/plugin.h"

struct state {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    int64_t tolerance;
    uint32_t *capacity; /* registered slots, by the host's dense slot number */
    bool *flagged;
    uint32_t cap;
};

/* The keys an instance may set; the host validates them before init(). */
static const struct rd_plugin_key keys[] = {
    {"tolerance", RD_KEY_INT, "0", 0, 1000, "slots over capacity before suspecting"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static bool ensure(struct state *st, uint32_t slot)
{
    if (slot == UINT32_MAX)
        return false;
    if (slot < st->cap)
        return true;
    uint32_t ncap = st->cap ? st->cap * 2 : 64;
    while (ncap <= slot)
        ncap *= 2;
    uint32_t *c = realloc(st->capacity, ncap * sizeof(*c));
    if (c == NULL)
        return false;
    st->capacity = c;
    bool *f = realloc(st->flagged, ncap * sizeof(*f));
    if (f == NULL)
        return false;
    st->flagged = f;
    for (uint32_t i = st->cap; i < ncap; i++) {
        st->capacity[i] = 0;
        st->flagged[i] = false;
    }
    st->cap = ncap;
    return true;
}

static void on_node(void *state, int event, const struct rd_node_view *node)
{
    struct state *st = state;
    if (!ensure(st, node->slot))
        return;
    st->capacity[node->slot] = event == RD_NODE_EV_REMOVED ? 0 : node->slots;
    if (event != RD_NODE_EV_STATE)
        st->flagged[node->slot] = false;
}

static void on_heartbeat(void *state, const struct rd_heartbeat_view *hb)
{
    struct state *st = state;
    if (!ensure(st, hb->slot))
        return;
    bool over = hb->slots_used > st->capacity[hb->slot] + (uint64_t)st->tolerance;
    if (over == st->flagged[hb->slot])
        return; /* report changes only */
    st->flagged[hb->slot] = over;
    struct rd_observation o = {
        .node_id = hb->node_id,
        .epoch = hb->epoch,
        .signal = RD_SIG_METRICS,
        .verdict = over ? RD_VERDICT_SUSPECT : RD_VERDICT_OK,
        .value = hb->slots_used,
        .metric = "slots_used",
        .detail = over ? "more slots in use than registered" : "load within capacity",
    };
    st->host->observe(st->inst, &o);
}

static int init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    struct state *st = state; /* zeroed by the host, state_size bytes */
    st->inst = inst;
    st->host = host;
    st->tolerance = host->config_int(inst, "tolerance");
    return 0;
}

static void stop(void *state, void (*done)(rd_plugin_instance_t *))
{
    struct state *st = state;
    done(st->inst);
}

static void destroy(void *state)
{
    struct state *st = state;
    free(st->capacity);
    free(st->flagged);
}

static const struct rd_detector_ops ops = {
    .version = RD_DETECTOR_OPS_VERSION,
    .size = sizeof(struct rd_detector_ops),
    .on_node = on_node,
    .on_heartbeat = on_heartbeat,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = "minimal_detector",
    .version = "1.0.0",
    .kind = RD_PLUGIN_DETECTOR,
    .description = "suspects agents that report more slots in use than they have",
    .keys = keys,
    .state_size = sizeof(struct state),
    .init = init,
    .stop = stop,
    .destroy = destroy,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}
