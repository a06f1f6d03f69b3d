/*
 * An out-of-tree detector plugin, built against the installed header only
 * (see Makefile: `pkg-config --cflags recoveryd-plugin`): it suspects an
 * agent whose heartbeats report an error rate above `max_error_rate`, and
 * clears it when the rate is back under. Configure an instance:
 *
 *   plugins:
 *     instances:
 *       - name: errors
 *         plugin: error_rate
 *         config:
 *           max_error_rate: 50%
 */
#include <recoveryd/plugin.h>

struct state {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    double max_rate; /* 0-1 */
};

static const struct rd_plugin_key keys[] = {
    {"max_error_rate", RD_KEY_PERCENT, "50%", 1, 100, "error rate above which an agent is suspect"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static void on_heartbeat(void *state, const struct rd_heartbeat_view *hb)
{
    struct state *st = state;
    if (!hb->has_metrics)
        return;
    bool over = hb->error_rate > st->max_rate;
    struct rd_observation o = {
        .node_id = hb->node_id,
        .epoch = hb->epoch,
        .signal = RD_SIG_METRICS,
        .verdict = over ? RD_VERDICT_SUSPECT : RD_VERDICT_OK,
        .value = hb->error_rate,
        .metric = "error_rate",
        .detail = over ? "error rate above max_error_rate" : "error rate within bounds",
    };
    st->host->observe(st->inst, &o);
}

static int init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    struct state *st = state; /* zeroed by the host, state_size bytes */
    st->inst = inst;
    st->host = host;
    st->max_rate = (double)host->config_int(inst, "max_error_rate") / 100.0;
    return 0;
}

static void stop(void *state, void (*done)(rd_plugin_instance_t *))
{
    struct state *st = state;
    done(st->inst);
}

static const struct rd_detector_ops ops = {
    .version = RD_DETECTOR_OPS_VERSION,
    .size = sizeof(struct rd_detector_ops),
    .on_heartbeat = on_heartbeat,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = "error_rate",
    .version = "0.1.0",
    .kind = RD_PLUGIN_DETECTOR,
    .description = "suspects agents whose heartbeats report too many errors",
    .keys = keys,
    .state_size = sizeof(struct state),
    .init = init,
    .stop = stop,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}
