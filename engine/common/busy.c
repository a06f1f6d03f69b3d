#include "common/busy.h"

bool rd_busy_update(struct rd_busy *b, uint64_t now_ns, uint64_t idle_ns)
{
    if (b->at_ns != 0 && now_ns - b->at_ns < RD_BUSY_SPAN_NS)
        return b->busy;
    uint64_t span = now_ns - b->at_ns, idled = idle_ns - b->idle_ns;
    bool first = b->at_ns == 0;
    b->at_ns = now_ns;
    b->idle_ns = idle_ns;
    if (first || idle_ns == 0 || idled > span)
        b->busy = false;
    else
        b->busy = b->busy ? idled * 4 < span * 3 : idled * 2 < span;
    return b->busy;
}
