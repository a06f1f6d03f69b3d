/*
 * Broken plugins for the loader's tests, one source built several times
 * (tests/CMakeLists.txt) with one defect each:
 *   BAD_MAJOR  ABI major 2          BAD_MINOR  ABI minor 99
 *   BAD_SIZE   a descriptor smaller than ABI 1.0's
 *   BAD_SIG    another build signature
 *   BAD_OPS    detector ops of version 0
 *   FAIL_INIT  init() fails with a message
 *   NO_ENTRY   no rd_plugin_entry symbol at all
 * A well-formed build (no define) is the control; ALERT_V1 is a well-formed
 * alert plugin built against ABI 1.1 (alert ops version 1, send only), which
 * a newer host must still load; BUSY is a well-formed detector that keeps
 * the loop busy for 3 ms on every heartbeat (a saturated leader, for the
 * group commit's delay: integration/test_group_delay).
 */
#include <stddef.h>

#include "recoveryd/plugin.h"

#ifndef NO_ENTRY

#include <unistd.h>

struct state {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    int worked; /* written on the thread pool, read on the loop after done */
};

/* Blocking work goes to the thread pool; done comes back on the loop. */
static void work(void *data)
{
    struct state *st = data;
    usleep(20000);
    st->worked = 1;
}

static void work_done(void *data, int status)
{
    struct state *st = data;
    st->host->log(st->inst, RD_PLOG_INFO, "work_done", "status=%d worked=%d", status, st->worked);
}

static int start(void *state)
{
    struct state *st = state;
    return st->host->queue_work(st->inst, work, work_done, st);
}

static int init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    ((struct state *)state)->inst = inst;
    ((struct state *)state)->host = host;
#ifdef FAIL_INIT
    host->set_error(inst, "cannot reach the license server at 192.0.2.1");
    return RD_EIO;
#else
    return 0;
#endif
}

static void stop(void *state, void (*done)(rd_plugin_instance_t *))
{
    done(((struct state *)state)->inst);
}

#ifdef ALERT_V1
static void send(void *state, const struct rd_alert *a)
{
    struct state *st = state;
    st->host->log(st->inst, RD_PLOG_INFO, "v1_alert", "alertname=%s", a->alertname);
}

/* Version 1 of the alert ops: what a plugin built against ABI 1.1 had. */
static const struct {
    uint32_t version;
    uint32_t size;
    void (*send)(void *state, const struct rd_alert *alert);
} ops = {.version = 1, .size = offsetof(struct rd_alert_ops, leadership), .send = send};
#else
#ifdef BUSY
#include <time.h>
static void spin(void *state, const struct rd_heartbeat_view *hb)
{
    (void)state, (void)hb;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 3000000L);
}
#endif
static const struct rd_detector_ops ops = {
#ifdef BAD_OPS
    .version = 0,
#else
    .version = RD_DETECTOR_OPS_VERSION,
#endif
    .size = sizeof(struct rd_detector_ops),
#ifdef BUSY
    .on_heartbeat = spin,
#endif
};
#endif

static const struct rd_plugin_key keys[] = {
    {"level", RD_KEY_INT, "1", 1, 10, "a knob"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static const struct rd_plugin_descriptor descriptor = {
#ifdef BAD_MAJOR
    .abi_major = RD_PLUGIN_ABI_MAJOR + 1,
#else
    .abi_major = RD_PLUGIN_ABI_MAJOR,
#endif
#ifdef BAD_MINOR
    .abi_minor = 99,
#elif defined(ALERT_V1)
    .abi_minor = 1,
#else
    .abi_minor = RD_PLUGIN_ABI_MINOR,
#endif
#ifdef BAD_SIZE
    .size = offsetof(struct rd_plugin_descriptor, ops),
#else
    .size = sizeof(struct rd_plugin_descriptor),
#endif
#ifdef BAD_SIG
    .build_sig = "recoveryd-abi-1/sparc/ptr4/long4",
#else
    .build_sig = RD_PLUGIN_BUILD_SIG,
#endif
    .name = "bad_plugin",
    .version = "0.0.1",
#ifdef ALERT_V1
    .kind = RD_PLUGIN_ALERT,
#else
    .kind = RD_PLUGIN_DETECTOR,
#endif
    .keys = keys,
    .state_size = sizeof(struct state),
    .init = init,
    .start = start,
    .stop = stop,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}

#else
RD_PLUGIN_EXPORT int not_a_recoveryd_plugin(void)
{
    return 42;
}
#endif
