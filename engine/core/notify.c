/* systemd's service notifications: see notify.h. */
#include "notify.h"
#include "common/log.h"

#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

/* A socket that went away is logged once, not at every watchdog tick. */
static bool warned;

static void send_state(const char *state)
{
    int rv = sd_notify(0, state);
    if (rv < 0 && !warned) {
        warned = true;
        RD_WARN("notify", "failed", "error=%d state=\"%s\"", rv, state);
    }
}

static void watchdog_tick(uv_timer_t *t)
{
    (void)t;
    send_state("WATCHDOG=1");
}

void rd_notify_ready(struct rd_notify *n, uv_loop_t *loop, const char *status)
{
    char state[160];
    if (n->ready) {
        rd_notify_status(n, status);
        return;
    }
    n->ready = true;
    snprintf(state, sizeof(state), "READY=1\nSTATUS=%s", status);
    send_state(state);
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return;
    /* Twice per period, as sd_watchdog_enabled(3) advises. */
    uint64_t every_ms = usec / 2000 > 0 ? usec / 2000 : 1;
    uv_timer_init(loop, &n->watchdog);
    uv_unref((uv_handle_t *)&n->watchdog);
    uv_timer_start(&n->watchdog, watchdog_tick, 0, every_ms);
    n->watchdog_on = true;
    RD_INFO("notify", "watchdog", "period_ms=%llu", (unsigned long long)(usec / 1000));
}

void rd_notify_status(struct rd_notify *n, const char *status)
{
    char state[160];
    if (!n->ready || n->closed)
        return;
    snprintf(state, sizeof(state), "STATUS=%s", status);
    send_state(state);
}

void rd_notify_stopping(struct rd_notify *n)
{
    (void)n;
    send_state("STOPPING=1\nSTATUS=stopping");
}

void rd_notify_close(struct rd_notify *n)
{
    if (n->closed)
        return;
    n->closed = true;
    if (n->watchdog_on)
        uv_close((uv_handle_t *)&n->watchdog, NULL);
}
