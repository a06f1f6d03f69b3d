#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "fsm/fsm.h"
#include "plugin/host.h"
#include "policy/policy.h"
#include "registry/registry.h"
#include "replica/replica.h"
#include "sched_int.h"
/* While a partition is suspected, critical tasks move at most this many per
 * second (burst as many): a vanished half of the fleet must not turn into a
 * stampede onto the other half (DESIGN.md decision 6). */
#define PARTITION_MOVES_PER_S 10.0

/* safe_recovery's wait: until the lost agent's lease has surely expired
 * (its last heartbeat + lease + one interval for clock drift), so the task
 * never runs twice at once. 0 when it has (or nothing is known). */
uint64_t rd_sched__lease_left_ns(struct rd_sched *s, const struct rd_node *n)
{
    struct rd_soft *soft = rd_registry_get(s->env.registry, n->node_id, n->id_len);
    /* Nothing heard from it since this replica became leader (a restart, a
     * new leader): its lease may have been renewed just before, so it
     * counts from then. */
    uint64_t last = soft != NULL && soft->epoch == n->epoch && soft->last_mono_ns != 0
                        ? soft->last_mono_ns
                        : *s->env.leader_since_ns;
    uint64_t margin = (rd_config_lease_ms(s->env.cfg) +
                       s->env.cfg->fault_tolerance.detection.heartbeat_interval_ms) *
                      1000000ULL;
    uint64_t now = rd_mono_ns(), end = last + margin;
    return now >= end ? 0 : end - now;
}

bool rd_sched__lease_expired(struct rd_sched *s, const struct rd_node *n)
{
    return rd_sched__lease_left_ns(s, n) == 0;
}

/* While a partition is suspected: one move from the token bucket, if any. */
static bool partition_allows(struct rd_sched *s)
{
    uint64_t now = rd_mono_ns();
    if (s->partition_tokens_ns == 0)
        s->partition_tokens = PARTITION_MOVES_PER_S;
    else
        s->partition_tokens += (double)(now - s->partition_tokens_ns) / 1e9 * PARTITION_MOVES_PER_S;
    if (s->partition_tokens > PARTITION_MOVES_PER_S)
        s->partition_tokens = PARTITION_MOVES_PER_S;
    s->partition_tokens_ns = now;
    if (s->partition_tokens < 1.0)
        return false;
    s->partition_tokens -= 1.0;
    return true;
}

/* Moves `t` off `from` (to `target` when the policy chose one). Returns 1
 * when a move was proposed, 0 when the task must wait (a suspected
 * partition: non-critical tasks wait for their agents, critical ones for
 * the rate limit), -1 when proposing failed (stop this pass). */
int rd_sched__move_task(struct rd_sched *s, struct rd_task *t, const struct rd_node *from,
                        const char *target, uint32_t *extra, unsigned limit, const char *why)
{
    if (s->env.analysis->partition_suspected && (!t->critical || !partition_allows(s)))
        return 0;
    const struct rd_recovery *run = rd_fsm_open_recovery(s->env.fsm, from->node_id);
    const struct rd_fsm *f = s->env.fsm;
    size_t best = SIZE_MAX;
    if (target != NULL) {
        for (size_t i = 0; i < f->n_nodes; i++)
            if (strcmp(f->nodes[i]->node_id, target) == 0)
                best = i;
        const struct rd_node *to = best != SIZE_MAX ? f->nodes[best] : NULL;
        /* The engine validates what the policy chose: a working agent with
         * room that the detectors do not hold in trouble. */
        if (to == NULL || !rd_sched__placeable(s, to) ||
            to->slots_in_use + extra[best] + t->slots > to->slots) {
            RD_WARN("recovery", "target_refused",
                    "task=%s target=%s: not a working agent with room, or in trouble", t->id,
                    target);
            best = SIZE_MAX;
        }
    }
    if (best == SIZE_MAX)
        best = rd_sched__choose(s, t, extra, limit ? limit : 100);
    const struct rd_node *to = best == SIZE_MAX ? NULL : f->nodes[best];
    if (!rd_sched__propose_assign_in(s, t, to, to ? RD_TASK_RECOVERING : RD_TASK_PENDING,
                                     run ? run->id : NULL, why, NULL))
        return -1;
    if (to != NULL)
        rd_sched__add_load(s, extra, best, t->slots);
    s->recoveries_total++;
    rd_sched__note_moved(s, t->id); /* rebalancing leaves it alone for a while */
    RD_INFO("recovery", "task_moved",
            "task=%s from=%s to=%s attempt=%u critical=%d priority=%u strategy=%s", t->id,
            from->node_id, to ? to->node_id : "(pending)", t->attempt + (to ? 1 : 0), t->critical,
            t->priority, why);
    return 1;
}

void rd_sched__pause_task(struct rd_sched *s, struct rd_task *t)
{
    struct rd_cmd cmd = {.type = RD_CMD_TASK_FINISH};
    cmd.u.tfinish.task_id = RD_STR(t->id);
    cmd.u.tfinish.attempt = 0;
    cmd.u.tfinish.state = RD_TASK_PAUSED;
    cmd.u.tfinish.result_json = RD_STR("paused by degraded_service");
    rd_sched__propose_keyed(s, &cmd, t->id);
}

/* A policy's isolate action: the node is fenced off like an operator's
 * isolate (any epoch, any state: the detector may move it between this
 * plan and the commit, and the isolation must not be dropped for that);
 * unknown or departed nodes are refused in apply. */
void rd_sched__isolate_node(struct rd_sched *s, const char *node, const char *strategy)
{
    char key[RD_NODE_ID_MAX + 16], reason[96];
    snprintf(key, sizeof(key), "isolate:%s", node);
    snprintf(reason, sizeof(reason), "isolated by the %s policy", strategy ? strategy : "recovery");
    const struct rd_node *n = rd_fsm_node(s->env.fsm, node, strlen(node));
    if (n == NULL || n->state == RD_NODE_ISOLATED || n->state == RD_NODE_LEFT) {
        RD_WARN("recovery", "isolate_refused", "node=%s: %s", node,
                n == NULL ? "not registered" : "isolated or left already");
        return;
    }
    struct rd_cmd cmd = {.type = RD_CMD_NODE_TRANSITION};
    cmd.u.trans.node_id = RD_STR(node);
    cmd.u.trans.epoch = 0;
    cmd.u.trans.state = RD_NODE_ISOLATED;
    cmd.u.trans.reason = RD_STR(reason);
    cmd.u.trans.from_state = RD_STATE_ANY;
    /* An isolation the policies decided: audited, the policy's strategy its
     * cause. */
    char cause[64];
    snprintf(cause, sizeof(cause), "policy %s", strategy ? strategy : "recovery");
    rd_cmd_audit_engine(&cmd, "isolate_by_policy", node, cause);
    RD_WARN("recovery", "isolate", "node=%s strategy=%s", node, strategy ? strategy : "-");
    rd_sched__propose_keyed(s, &cmd, key);
}

/* ---- poison tasks ---------------------------------------------------------- */

/* Agents failed within the mass-failure window, as the log says (a
 * leader that took over in the middle of a mass crash knows the crowd it
 * inherits): counted again when a quarter second passed or an agent
 * failed or came back since. */
static size_t failed_recently(struct rd_sched *s, int64_t now_ms, int64_t window_ms)
{
    const struct rd_fsm *f = s->env.fsm;
    int64_t quarter = now_ms / 250 + 1;
    uint32_t failed = (uint32_t)f->count_by_state[RD_NODE_FAILED];
    if (s->failed_recent.quarter != quarter || s->failed_recent.failed != failed) {
        s->failed_recent.n = rd_fsm_nodes_failed_since(f, now_ms - window_ms);
        s->failed_recent.quarter = quarter;
        s->failed_recent.failed = failed;
    }
    return s->failed_recent.n;
}

/* True while agents other than `t`'s own victims fail together: at least
 * 3, and 1% of the fleet, within partition.mass_failure_window. */
static bool mass_failure(struct rd_sched *s, const struct rd_task *t, unsigned now_failing)
{
    const struct rd_config *c = s->env.cfg;
    const struct rd_fsm *f = s->env.fsm;
    int64_t now = rd_now_ms(),
            window = (int64_t)c->fault_tolerance.partition.mass_failure_window_ms;
    size_t recent = failed_recently(s, now, window);
    size_t own = rd_task_failures_since(t, now - window) + now_failing;
    size_t others = recent > own ? recent - own : 0;
    size_t live = f->n_nodes - f->count_by_state[RD_NODE_LEFT];
    return others >= 3 && others * 100 >= live;
}

/* True when `t` has failed max_failures times within the window, counting
 * `now_failing` more (1: its agent just failed under it). Twice as many
 * while a mass failure goes on: a task moved off a crashed agent onto
 * others that crash too dies with each of them whatever it is (in the
 * 10,000-agent storm, 20% of the agents crashing within a minute, about 1%
 * of their tasks died three times in a row and were quarantined); a task
 * that takes its agents down is still caught, at its sixth. */
bool rd_sched__poisoned(struct rd_sched *s, const struct rd_task *t, unsigned now_failing)
{
    const struct rd_config *c = s->env.cfg;
    int64_t since = rd_now_ms() - (int64_t)c->fault_tolerance.poison.window_ms;
    unsigned n = rd_task_failures_since(t, since) + now_failing;
    unsigned max = c->fault_tolerance.poison.max_failures;
    return n >= max && (n >= 2 * max || !mass_failure(s, t, now_failing));
}

/* Fails `t` with a poison_task fault in one command (which alerts) instead
 * of placing it again. */
void rd_sched__quarantine(struct rd_sched *s, const struct rd_task *t, unsigned now_failing)
{
    const struct rd_config *c = s->env.cfg;
    char id[RD_UUID_STRLEN];
    if (rd_map_get(&s->inflight, t->id, strlen(t->id)) || rd_uuid_v4(id) != 0)
        return;
    int64_t since = rd_now_ms() - (int64_t)c->fault_tolerance.poison.window_ms;
    unsigned n = rd_task_failures_since(t, since) + now_failing;
    json_t *meta =
        json_pack("{s:s,s:s,s:I,s:i,s:I,s:i,s:s}", "task_id", t->id, "last_node_id", t->node_id,
                  "attempt", (json_int_t)t->attempt, "failures", (int)n, "window_ms",
                  (json_int_t)c->fault_tolerance.poison.window_ms, "max_failures",
                  (int)c->fault_tolerance.poison.max_failures, "last_error", t->result_json);
    char *meta_s = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(meta);
    struct rd_cmd cmd = rd_cmd_cluster_fault(
        0, id, RD_FAULT_POISON_TASK, RD_SEV_MAJOR, meta_s ? meta_s : "{}",
        "{\"action\":\"quarantine\",\"detail\":\"task failed; not placed again\"}");
    cmd.u.fopen.task_id = RD_STR(t->id);
    cmd.u.fopen.task_attempt = t->attempt;
    RD_WARN("recovery", "poison_task", "task=%s failures=%u window_ms=%llu last_node=%s fault=%s",
            t->id, n, (unsigned long long)c->fault_tolerance.poison.window_ms, t->node_id, id);
    s->poison_total++;
    rd_sched__propose_keyed(s, &cmd, t->id);
    free(meta_s);
}

/* ---- degraded mode ------------------------------------------------------- */

bool rd_sched_degraded(const struct rd_sched *s, unsigned *limit_pct)
{
    if (limit_pct != NULL)
        *limit_pct = s->performance_limit ? s->performance_limit
                                          : s->env.cfg->fault_tolerance.recovery_strategies
                                                .degraded_service.performance_limit;
    return s->env.analysis->partition_suspected || s->env.fsm->tasks_by_state[RD_TASK_PAUSED] > 0;
}

/* Paused tasks go back to pending (attempt + 1 when placed, so whoever
 * held them is fenced) once no partition is suspected. Not only when their
 * agent returns: an agent that really crashed during the partition never
 * does, and its tasks must not wait for it. */
void rd_sched__resume_paused(struct rd_sched *s)
{
    const struct rd_fsm *f = s->env.fsm;
    if (s->env.analysis->partition_suspected || f->tasks_by_state[RD_TASK_PAUSED] == 0)
        return;
    for (size_t i = 0; i < f->n_tasks; i++) {
        const struct rd_task *t = f->tasks[i];
        if (t->state != RD_TASK_PAUSED || rd_map_get(&s->inflight, t->id, strlen(t->id)))
            continue;
        RD_INFO("recovery", "task_resumed", "task=%s paused_on=%s", t->id,
                t->node_id[0] ? t->node_id : "-");
        if (!rd_sched__propose_assign(s, t, NULL, RD_TASK_PENDING))
            return;
    }
}
