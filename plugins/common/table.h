/*
 * The detector plugins' per-agent tables (heartbeat, metrics): indexed by
 * the agent's slot, written by every heartbeat, kept out of the engine's
 * forked children through the host's table_realloc (plugin.h, ABI minor 4;
 * plain realloc with a host that lacks it). Header-only: a plugin depends on
 * nothing but recoveryd/plugin.h at run time.
 */
#ifndef RD_PLUGINS_TABLE_H
#define RD_PLUGINS_TABLE_H

#include <stdlib.h>
#include <string.h>

#include "recoveryd/plugin.h"

/* `p` of `old` bytes resized to `size` (bytes beyond `old` zero); NULL on
 * ENOMEM, when `p` is unchanged. */
static inline void *tbl_resize(const struct rd_host_api *host, void *p, size_t old, size_t size)
{
    if (RD_HOST_HAS(host, table_realloc))
        return host->table_realloc(p, old, size);
    unsigned char *q = realloc(p, size);
    if (q != NULL && size > old)
        memset(q + old, 0, size - old);
    return q;
}

static inline void tbl_free(const struct rd_host_api *host, void *p, size_t size)
{
    if (RD_HOST_HAS(host, table_realloc))
        (void)host->table_realloc(p, size, 0);
    else
        free(p);
}

#endif
