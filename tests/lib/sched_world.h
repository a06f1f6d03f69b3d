/*
 * The scheduler on its own, for its unit tests: a real state machine and
 * registry, the fake log (tests/lib/fake_log.h), no policies (the built-in
 * default) unless a test sets some, no analysis (no partition, no verdicts)
 * unless a test starts one (sched_world_analysis), an alert host with no
 * instances. Agents and tasks are put in the machine directly.
 */
#ifndef RD_TEST_SCHED_WORLD_H
#define RD_TEST_SCHED_WORLD_H

#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/util.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "fake_log.h"
#include "fsm/fsm.h"
#include "plugin/host.h"
#include "recover/sched.h"
#include "recover/sched_int.h"
#include "registry/registry.h"

struct sched_world {
    uv_loop_t loop;
    struct rd_config cfg;
    struct rd_fsm fsm;
    struct rd_registry registry;
    struct fake_log log;
    struct rd_analysis analysis;  /* zeroed (not started): no partition, no verdicts */
    struct rd_plugin_host alerts; /* zeroed: no instance */
    struct rd_policy_host *policy;
    bool shutting_down;
    uint64_t leader_since_ns;
    unsigned policy_errors;
    struct rd_sched s;
};

static inline void sched_world_policy_error(void *data, const char *msg)
{
    (void)msg;
    ((struct sched_world *)data)->policy_errors++;
}

static inline int sched_world_setup(void **state)
{
    struct sched_world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    assert_int_equal(uv_loop_init(&w->loop), 0);
    rd_config_defaults(&w->cfg);
    rd_fsm_init(&w->fsm);
    rd_registry_init(&w->registry);
    w->log.fsm = &w->fsm;
    w->leader_since_ns = rd_mono_ns();
    struct rd_sched_env env = {
        .loop = &w->loop,
        .cfg = &w->cfg,
        .fsm = &w->fsm,
        .registry = &w->registry,
        .log = fake_log_proposer(&w->log),
        .analysis = &w->analysis,
        .alerts = &w->alerts,
        .policy = &w->policy,
        .policy_error = sched_world_policy_error,
        .policy_error_data = w,
        .shutting_down = &w->shutting_down,
        .leader_since_ns = &w->leader_since_ns,
    };
    rd_sched_init(&w->s, &env);
    *state = w;
    return 0;
}

static inline int sched_world_teardown(void **state)
{
    struct sched_world *w = *state;
    rd_sched_close(&w->s);
    rd_analysis_stop(&w->analysis); /* nothing when it was not started */
    rd_analysis_close(&w->analysis);
    uv_run(&w->loop, UV_RUN_NOWAIT); /* closes its handles */
    assert_int_equal(uv_loop_close(&w->loop), 0);
    rd_registry_close(&w->registry);
    rd_fsm_close(&w->fsm);
    free(w);
    return 0;
}

static inline void sched_world_agent(struct sched_world *w, const char *id, uint32_t slots,
                                     const char *labels)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_REGISTER};
    c.u.reg.node_id = RD_STR(id);
    c.u.reg.slots = slots;
    c.u.reg.labels_json = RD_STR(labels);
    c.u.reg.health_url = RD_STR("");
    c.u.reg.address = RD_STR("");
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
}

static inline void sched_world_move(struct sched_world *w, const char *id, int state)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_TRANSITION};
    c.u.trans.node_id = RD_STR(id);
    c.u.trans.epoch = 0; /* an operator's action: whatever epoch is current */
    c.u.trans.state = (uint8_t)state;
    c.u.trans.reason = RD_STR("test");
    c.u.trans.from_state = RD_STATE_ANY;
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
}

/* Starts a real analysis on the world's machine, registry and log (its
 * proposals queue with the scheduler's until the test steps the log),
 * reading `clock`, as leader; its timer never fires (the loop is not run). */
static inline void sched_world_analysis(struct sched_world *w, uint64_t (*clock)(void))
{
    rd_analysis_init(&w->analysis, &w->loop, &w->cfg, &w->fsm, &w->registry,
                     fake_log_proposer(&w->log), NULL);
    w->analysis.clock = clock;
    rd_analysis_start(&w->analysis);
}

/* Agent `id`'s soft state under its current epoch, as its first heartbeat
 * makes it at `now_ns`, judged by the analysis only after `grace_ns` (a
 * new leader gives every agent a lease). */
static inline void sched_world_touch(struct sched_world *w, const char *id, uint64_t now_ns,
                                     uint64_t grace_ns)
{
    const struct rd_node *n = rd_fsm_node(&w->fsm, id, strlen(id));
    assert_non_null(n);
    assert_non_null(rd_registry_touch(&w->registry, id, strlen(id), n->epoch, now_ns, grace_ns));
}

/* A detector's verdict on agent `id` (its current epoch), in a batch of
 * its own: judged at once. */
static inline void sched_world_observe(struct sched_world *w, const char *id, int signal,
                                       int verdict, int cause)
{
    const struct rd_node *n = rd_fsm_node(&w->fsm, id, strlen(id));
    assert_non_null(n);
    struct rd_observation o = {.node_id = id,
                               .epoch = n->epoch,
                               .signal = signal,
                               .verdict = verdict,
                               .probe_cause = cause,
                               .metric = "error_rate"};
    assert_true(rd_analysis_observe(&w->analysis, "test", &o));
    rd_analysis_flush(&w->analysis);
}

/* Submits task number `n` (id 00000000-0000-4000-8000-<n>) and returns its id. */
static inline const char *sched_world_task(struct sched_world *w, int n, int priority,
                                           bool critical, uint32_t slots, const char *labels)
{
    static char ids[64][40];
    char *id = ids[n % 64];
    snprintf(id, 40, "00000000-0000-4000-8000-%012d", n);
    struct rd_cmd c = {.type = RD_CMD_TASK_SUBMIT};
    c.u.tsubmit.task_id = RD_STR(id);
    c.u.tsubmit.priority = (uint8_t)priority;
    c.u.tsubmit.critical = critical;
    c.u.tsubmit.slots = slots;
    c.u.tsubmit.labels_json = RD_STR(labels);
    c.u.tsubmit.payload_json = RD_STR("{}");
    c.u.tsubmit.max_attempts = 5;
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
    return id;
}

static inline const struct rd_task *sched_world_get(struct sched_world *w, const char *id)
{
    const struct rd_task *t = rd_fsm_task(&w->fsm, id);
    assert_non_null(t);
    return t;
}

/* Another replica takes over: a scheduler of its own (nothing of the old
 * one's memory), the same replicated state. */
static inline void sched_world_new_leader(struct sched_world *w)
{
    struct rd_sched_env env = w->s.env;
    rd_sched_close(&w->s);
    rd_sched_init(&w->s, &env);
}

/* Passes, each committing what it proposed, until one proposes nothing. */
static inline void sched_world_settle(struct sched_world *w)
{
    for (int i = 0; i < 50; i++) {
        unsigned before = w->log.proposals;
        rd_sched_pass(&w->s);
        fake_log_step(&w->log);
        if (w->log.proposals == before)
            return;
    }
    fail_msg("the scheduler did not settle");
}

/* Writes checkpoint `version` of task `id` from its current attempt. */
static inline void sched_world_checkpoint(struct sched_world *w, const char *id, uint64_t version)
{
    const struct rd_task *t = sched_world_get(w, id);
    static const char data[] = "{\"step\":7}";
    struct rd_cmd c = {.type = RD_CMD_TASK_CHECKPOINT};
    c.u.tckpt.task_id = RD_STR(id);
    c.u.tckpt.attempt = t->attempt;
    c.u.tckpt.version = version;
    c.u.tckpt.data_json = RD_STR(data);
    c.u.tckpt.checksum = rd_checkpoint_checksum(data, sizeof(data) - 1);
    c.u.tckpt.keep = 3;
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
}

#endif
