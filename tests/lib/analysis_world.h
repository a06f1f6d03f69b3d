/*
 * The fault analysis (engine/detect/analysis.c) on a real state machine and
 * registry, its proposals through a fake log (fake_log.h: applied when the
 * test steps it, the way raft commits later) and its clock the test's. Its
 * loop is never run: the test flushes batches itself (rd_analysis_flush).
 * For the analysis's unit tests, and for detector tests that hand it what
 * a detector reported.
 */
#ifndef RD_TEST_ANALYSIS_WORLD_H
#define RD_TEST_ANALYSIS_WORLD_H

#include "cmocka_all.h"

#include <stdbool.h>
#include <string.h>
#include <uv.h>

#include "config/config.h"
#include "detect/analysis.h"
#include "fake_log.h"
#include "fsm/fsm.h"
#include "registry/registry.h"

struct analysis_world {
    uv_loop_t loop;
    struct rd_config cfg;
    struct rd_fsm fsm;
    struct rd_registry registry;
    struct fake_log log;
    struct rd_analysis a;
};

/* A node's state applied: the analysis hears of it, as engine/core wires it. */
static inline void analysis_world_on_node(void *data, const struct rd_node *n, int old_state)
{
    struct analysis_world *w = data;
    rd_analysis_node_changed(&w->a, rd_registry_get(&w->registry, n->node_id, n->id_len), n,
                             old_state);
}

/* The default config, the analysis started as leader, reading `clock`. */
static inline void analysis_world_init(struct analysis_world *w, uint64_t (*clock)(void))
{
    assert_int_equal(uv_loop_init(&w->loop), 0);
    rd_config_defaults(&w->cfg);
    rd_fsm_init(&w->fsm);
    rd_registry_init(&w->registry);
    w->log.fsm = &w->fsm;
    w->fsm.on_node = analysis_world_on_node;
    w->fsm.on_node_data = w;
    rd_analysis_init(&w->a, &w->loop, &w->cfg, &w->fsm, &w->registry, fake_log_proposer(&w->log),
                     NULL);
    w->a.clock = clock;
    rd_analysis_start(&w->a); /* its timer never fires: the loop is not run */
}

static inline void analysis_world_close(struct analysis_world *w)
{
    rd_analysis_stop(&w->a);
    rd_analysis_close(&w->a);
    uv_run(&w->loop, UV_RUN_NOWAIT); /* closes the timer */
    assert_int_equal(uv_loop_close(&w->loop), 0);
    rd_registry_close(&w->registry);
    rd_fsm_close(&w->fsm);
}

/* Registers `id` (epoch 1; with a health URL when `probe`) and its soft
 * state, as touched at `now_ns`. */
static inline void analysis_world_agent(struct analysis_world *w, const char *id, bool probe,
                                        uint64_t now_ns)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_REGISTER, .time_ms = 1};
    c.u.reg.node_id = RD_STR(id);
    c.u.reg.slots = 1;
    c.u.reg.labels_json = RD_STR("{}");
    c.u.reg.health_url = RD_STR(probe ? "http://127.0.0.1:9/health" : "");
    c.u.reg.address = RD_STR("");
    /* Registration does not go through the analysis: applied directly. */
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
    assert_non_null(rd_registry_touch(&w->registry, id, strlen(id), 1, now_ns, 0));
}

#endif
