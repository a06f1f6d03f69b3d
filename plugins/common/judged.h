/*
 * The moment up to which a detector judges an agent's silence: when the
 * engine last had read all its input (the host's input_drained_ns,
 * plugin.h, ABI minor 5), never more than `lag_max_ns` before `now`.
 * Heartbeats are stamped when the engine's loop reads them, so up to now a
 * loop behind on its input would blame the agents for its own lateness.
 * `now` with an older host, or with `lag_max_ns` 0. Header-only.
 */
#ifndef RD_PLUGINS_JUDGED_H
#define RD_PLUGINS_JUDGED_H

#include <stdint.h>

#include "recoveryd/plugin.h"

static inline uint64_t judged_at(const struct rd_host_api *host, rd_plugin_instance_t *inst,
                                 uint64_t now, uint64_t lag_max_ns)
{
    if (lag_max_ns == 0 || !RD_HOST_HAS(host, input_drained_ns))
        return now;
    uint64_t drained = host->input_drained_ns(inst);
    uint64_t floor = now > lag_max_ns ? now - lag_max_ns : 0;
    return drained < floor ? floor : drained > now ? now : drained;
}

#endif
