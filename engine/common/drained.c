#include "common/drained.h"

/* Right before the poll: where the turn's idle time starts. */
static void prepare_cb(uv_prepare_t *h)
{
    struct rd_drained *d = h->data;
    d->poll_ns = d->clock();
    d->idle_ns = uv_metrics_idle_time(h->loop);
}

/* Right after the poll's callbacks: what came before the poll returned was
 * read in this turn. It returned at once, or after waiting as long as the
 * idle time grew (from about its start: earlier if the thread was not
 * running in between, which only makes the answer older). No clock read
 * here, on every turn: rd_drained_at bounds the answer by its caller's now. */
static void check_cb(uv_check_t *h)
{
    struct rd_drained *d = h->data;
    if (d->poll_ns == 0)
        return;
    uint64_t idle = uv_metrics_idle_time(h->loop);
    uint64_t waited = idle > d->idle_ns ? idle - d->idle_ns : 0;
    d->at_ns = d->poll_ns + waited;
    d->turns++;
    d->waits += waited > 0;
}

int rd_drained_start(struct rd_drained *d, uv_loop_t *loop, uint64_t (*clock)(void))
{
    *d = (struct rd_drained){.clock = clock};
    int rv = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
    if (rv != 0)
        return rv;
    uv_prepare_init(loop, &d->prepare);
    uv_check_init(loop, &d->check);
    d->prepare.data = d->check.data = d;
    uv_prepare_start(&d->prepare, prepare_cb);
    uv_check_start(&d->check, check_cb);
    uv_unref((uv_handle_t *)&d->prepare); /* they alone keep no loop running */
    uv_unref((uv_handle_t *)&d->check);
    d->on = true;
    return 0;
}

void rd_drained_stop(struct rd_drained *d)
{
    if (!d->on)
        return;
    uv_close((uv_handle_t *)&d->prepare, NULL);
    uv_close((uv_handle_t *)&d->check, NULL);
    d->on = false;
}

uint64_t rd_drained_at(const struct rd_drained *d, uint64_t now)
{
    if (!d->on || d->at_ns == 0 || d->at_ns > now)
        return now;
    return d->at_ns;
}
