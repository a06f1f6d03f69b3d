#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "fsm/fsm.h"
#include "plugin/host.h"
#include "registry/registry.h"
#include "replica/replica.h"

#define TICK_MS 100

static uint64_t ms_ns(uint64_t ms)
{
    return ms * 1000000ULL;
}

static const struct rd_config *cfg_of(struct rd_analysis *a)
{
    return a->cfg;
}

/* ---- proposals ----------------------------------------------------------- */

enum stage { STAGE_NONE = 0, STAGE_SUSPECT, STAGE_FAILED, STAGE_OTHER };

/* A proposal about an agent, or the partition's record. */
enum part { PART_NONE = 0, PART_OPEN, PART_RESOLVE };

struct proposal {
    struct rd_analysis *a;
    char node_id[RD_NODE_ID_MAX + 1]; /* the agent, or the partition's record */
    enum stage stage;
    uint64_t since_ns;
    enum part partition;
};

static void evaluate(struct rd_analysis *a, const struct rd_node *n, struct rd_detect *s);
static void trouble_sync(struct rd_analysis *a, const struct rd_node *n, struct rd_detect *s);
static void held_sync(struct rd_analysis *a, const struct rd_node *n, struct rd_detect *s);

/* The analysis's soft state of the node whose registry part is `soft`
 * (afresh for a new node or epoch); NULL on ENOMEM (the node then waits for
 * a later signal). */
static struct rd_detect *det_of(struct rd_analysis *a, struct rd_soft *soft)
{
    if (soft == NULL)
        return NULL;
    if (soft->slot >= a->n_by_slot) {
        /* Out of the forked children's sight: every heartbeat's verdicts
         * write here. */
        struct rd_detect *b = rd_nofork_slots(a->by_slot, &a->n_by_slot, sizeof(*b), soft->slot);
        if (b == NULL)
            return NULL;
        a->by_slot = b;
    }
    struct rd_detect *d = &a->by_slot[soft->slot];
    if (d->generation != soft->generation) {
        if (d->troubled && a->troubled > 0)
            a->troubled--;
        if (d->held && a->held > 0)
            a->held--;
        bool watched = d->watched; /* its slot stays in the list: once */
        memset(d, 0, sizeof(*d));
        d->generation = soft->generation;
        d->watched = watched;
    }
    d->soft = soft;
    return d;
}

/* Puts the slot of `d` in the tick's watch list (once); if the list cannot
 * grow, the next tick walks every agent instead. */
static void watch(struct rd_analysis *a, struct rd_detect *d)
{
    if (d->watched)
        return;
    if (a->n_watch == a->cap_watch) {
        size_t cap = a->cap_watch ? a->cap_watch * 2 : 256;
        uint32_t *w = realloc(a->watch, cap * sizeof(*w));
        if (w == NULL) {
            a->walk_all = true;
            return;
        }
        a->watch = w;
        a->cap_watch = cap;
    }
    a->watch[a->n_watch++] = d->soft->slot;
    d->watched = true;
}

/* The analysis's state of a node, as every input but the tick's walk takes
 * it: whatever touches it may call for a judgement, so the tick looks. */
static struct rd_detect *det(struct rd_analysis *a, struct rd_soft *soft)
{
    struct rd_detect *d = det_of(a, soft);
    if (d != NULL)
        watch(a, d);
    return d;
}

/* Refused by the log, not by the machine: nothing was applied, the state is
 * what the proposal was judged on (a leadership transfer, which refuses
 * every proposal for up to an election timeout; leadership lost; a storage
 * fault). */
static bool log_refused(int status)
{
    switch (status) {
    case RD_ENOTLEADER:
    case RD_ESHUTDOWN:
    case RD_EOUTCOME_UNKNOWN:
    case RD_EIO:
    case RD_ENOSPACE:
    case RD_ENOMEM:
    case RD_EBUSY:
        return true;
    }
    return false;
}

static void proposal_done(void *data, int status, uint64_t value)
{
    struct proposal *p = data;
    struct rd_analysis *a = p->a;
    (void)value;
    if (p->partition != PART_NONE) {
        a->partition_proposing = false;
        /* Not on record: the next tick proposes it again. */
        if (log_refused(status) && p->partition == PART_OPEN && a->partition_suspected &&
            strcmp(p->node_id, a->partition_fault_id) == 0)
            a->partition_unfiled = true;
        else if (log_refused(status) && p->partition == PART_RESOLVE)
            snprintf(a->partition_unresolved, sizeof(a->partition_unresolved), "%s", p->node_id);
    } else {
        struct rd_detect *s = det(a, rd_registry_get(a->registry, p->node_id, strlen(p->node_id)));
        if (s != NULL)
            s->proposing = s->proposing_down = false;
        if (s != NULL && p->stage == STAGE_FAILED)
            s->failure_proposed_ns = 0; /* applied (a guard event since) or not */
        if (status == 0 && p->since_ns != 0) {
            double secs = (double)(a->clock() - p->since_ns) / 1e9;
            if (p->stage == STAGE_SUSPECT)
                rd_hist_observe(&a->latency_suspect, secs);
            else if (p->stage == STAGE_FAILED)
                rd_hist_observe(&a->latency_failed, secs);
        }
        if (status != 0) {
            a->proposals_refused++;
            RD_DEBUG("analysis", "proposal_refused", "node=%s error=%s", p->node_id,
                     rd_err_name(status));
        }
        /* The state may call for another step (suspect -> failed). Not
         * after the log refused the proposal: judged again at once it would
         * be proposed again into the same refusal, within this turn of the
         * loop (a leadership transfer's refused group of 256 refilled
         * itself every turn, and once overran: 14c1099). The next tick
         * judges the agent again (it still looks bad, or is suspect), or
         * its next heartbeat does (on probation). */
        const struct rd_node *n = rd_fsm_node(a->fsm, p->node_id, strlen(p->node_id));
        if (s != NULL)
            trouble_sync(a, n != NULL && n->state != RD_NODE_LEFT ? n : NULL, s);
        if (s != NULL)
            held_sync(a, n, s);
        if (s != NULL && n != NULL && !log_refused(status) && a->log.is_leader(a->log.data))
            evaluate(a, n, s);
    }
    free(p);
}

static bool propose(struct rd_analysis *a, const struct rd_cmd *cmd, struct rd_detect *s,
                    enum stage stage, enum part partition)
{
    struct proposal *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return false;
    p->a = a;
    p->stage = stage;
    p->partition = partition;
    if (s != NULL) {
        snprintf(p->node_id, sizeof(p->node_id), "%s", s->soft->node_id);
        p->since_ns = s->bad_since_ns;
    } else if (partition == PART_OPEN) {
        snprintf(p->node_id, sizeof(p->node_id), "%s", a->partition_fault_id);
    } else if (partition == PART_RESOLVE) {
        snprintf(p->node_id, sizeof(p->node_id), "%.*s", (int)cmd->u.fresolve.id.len,
                 cmd->u.fresolve.id.p);
    }
    int rv = a->log.propose(a->log.data, cmd, proposal_done, p);
    if (rv != 0) {
        free(p);
        return false;
    }
    a->proposals_total++;
    if (s != NULL) {
        s->proposing = true;
        s->proposing_down = stage == STAGE_SUSPECT || stage == STAGE_FAILED;
        held_sync(a, rd_fsm_node(a->fsm, s->soft->node_id, s->soft->id_len), s);
    }
    if (partition != PART_NONE)
        a->partition_proposing = true;
    return true;
}

/* ---- classification -------------------------------------------------------- */

static const char *verdict_name(int v)
{
    return v == RD_VERDICT_OK ? "ok" : v == RD_VERDICT_SUSPECT ? "suspect" : "failed";
}

static const char *cause_name(int c)
{
    switch (c) {
    case RD_PROBE_REFUSED:
        return "refused";
    case RD_PROBE_TIMEOUT:
        return "timeout";
    case RD_PROBE_STATUS:
        return "status";
    case RD_PROBE_NETWORK:
        return "network";
    }
    return "none";
}

/* Saturated, by the agent's own report: CPU or memory nearly full. Slow
 * answers alone are `degraded` (or `hang` when probes time out): latency
 * rises for many reasons besides load. */
#define OVERLOAD_CPU 0.9
#define OVERLOAD_MEM 0.95
static bool looks_overloaded(const struct rd_detect *s)
{
    return s->soft->metrics.present &&
           (s->soft->metrics.cpu >= OVERLOAD_CPU || s->soft->metrics.mem >= OVERLOAD_MEM);
}

/* What kind of fault the signals describe, and how bad it is. */
static void classify(const struct rd_node *n, const struct rd_detect *s, int *type, int *sev)
{
    bool hb_bad = s->hb != RD_VERDICT_OK;
    bool probe_bad = s->probe != RD_VERDICT_OK;
    bool has_probe = n->health_url[0] != '\0';
    if (hb_bad) {
        if (has_probe && !probe_bad) {
            /* The process answers its probe but its heartbeats do not arrive. */
            *type = RD_FAULT_NETWORK, *sev = RD_SEV_MAJOR;
        } else if (has_probe && s->probe_cause == RD_PROBE_TIMEOUT) {
            *type = looks_overloaded(s) ? RD_FAULT_OVERLOAD : RD_FAULT_HANG;
            *sev = RD_SEV_MAJOR;
        } else if (has_probe && s->probe_cause == RD_PROBE_STATUS) {
            *type = RD_FAULT_DEGRADED, *sev = RD_SEV_MAJOR;
        } else if (has_probe && s->probe_cause == RD_PROBE_NETWORK) {
            *type = RD_FAULT_NETWORK, *sev = RD_SEV_MAJOR;
        } else {
            /* Nothing answers (refused), or nothing else to ask: the process is gone. */
            *type = RD_FAULT_CRASH, *sev = RD_SEV_CRITICAL;
        }
    } else if (probe_bad) {
        /* Heartbeats still arrive: the process lives but does not serve. */
        switch (s->probe_cause) {
        case RD_PROBE_TIMEOUT:
            *type = looks_overloaded(s) ? RD_FAULT_OVERLOAD : RD_FAULT_HANG;
            break;
        case RD_PROBE_NETWORK:
            *type = RD_FAULT_NETWORK;
            break;
        default:
            *type = RD_FAULT_DEGRADED;
            break;
        }
        *sev = RD_SEV_MAJOR;
    } else if (s->metrics_verdict != RD_VERDICT_OK) {
        *type = looks_overloaded(s) ? RD_FAULT_OVERLOAD : RD_FAULT_DEGRADED;
        *sev = s->metrics_verdict == RD_VERDICT_FAILED ? RD_SEV_MAJOR : RD_SEV_MINOR;
    } else {
        *type = RD_FAULT_DEGRADED, *sev = RD_SEV_WARNING;
    }
}

static char *fault_metadata(const struct rd_node *n, const struct rd_detect *s, uint64_t now,
                            bool predicted)
{
    json_t *m = json_pack(
        "{s:{s:s,s:s,s:s},s:s,s:I,s:b}", "signals", "heartbeat", verdict_name(s->hb), "probe",
        verdict_name(s->probe), "metrics", verdict_name(s->metrics_verdict), "probe_cause",
        cause_name(s->probe_cause), "epoch", (json_int_t)n->epoch, "predicted", predicted);
    if (m == NULL)
        return NULL;
    if (s->phi > 0)
        json_object_set_new(m, "phi", json_real(s->phi));
    if (s->bad_since_ns != 0 && now > s->bad_since_ns)
        json_object_set_new(m, "detection_latency_ms",
                            json_integer((json_int_t)((now - s->bad_since_ns) / 1000000)));
    if (predicted) {
        json_object_set_new(m, "eta_ms", json_integer((json_int_t)s->predicted_eta_ms));
        json_object_set_new(m, "trend", json_real(s->predicted_trend));
    }
    if (s->metric[0])
        json_object_set_new(m, "metric", json_string(s->metric));
    if (s->detail[0])
        json_object_set_new(m, "detail", json_string(s->detail));
    if (s->soft->metrics.present)
        json_object_set_new(m, "last_metrics",
                            json_pack("{s:f,s:f,s:f,s:f}", "error_rate",
                                      s->soft->metrics.error_rate, "latency_ms",
                                      s->soft->metrics.latency_ms, "cpu", s->soft->metrics.cpu,
                                      "mem", s->soft->metrics.mem));
    char *out = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(m);
    return out;
}

/* ---- flap damping and the mass-failure guard ----------------------------- */

static bool any_bad(const struct rd_detect *s)
{
    return s->hb != RD_VERDICT_OK || s->probe != RD_VERDICT_OK;
}

/* Node `n` (NULL: gone) works by the state machine under the epoch the
 * verdicts of `s` are about; draining agents too when `draining`. */
static bool works(const struct rd_node *n, const struct rd_detect *s, bool draining)
{
    return n != NULL &&
           (n->state == RD_NODE_ALIVE || n->state == RD_NODE_PROBATION ||
            (draining && n->state == RD_NODE_DRAINING)) &&
           s->soft->epoch == n->epoch;
}

/* Keeps `*flag` and its count `*count` in step with `want`. */
static void count_sync(size_t *count, bool *flag, bool want)
{
    if (want && !*flag)
        (*count)++;
    else if (!want && *flag && *count > 0)
        (*count)--;
    *flag = want;
}

/* Keeps `s` counted in a->troubled exactly while node `n` (NULL: gone)
 * works by the state machine (alive, on probation or draining) under the
 * epoch the verdicts are about and a verdict says it is in trouble (a
 * heartbeat or probe verdict not ok, or a metrics verdict at its limit).
 * A committed suspect is counted by the state machine's count instead, a
 * failed agent as a guard event once its failure applies: until then, its
 * failure proposed or refused, it is still counted here. So every agent in
 * trouble is counted once, by the same count whether the guard is asked
 * while an agent is judged or at the tick. */
static void trouble_sync(struct rd_analysis *a, const struct rd_node *n, struct rd_detect *s)
{
    count_sync(&a->troubled, &s->troubled,
               works(n, s, true) && (any_bad(s) || s->metrics_verdict == RD_VERDICT_FAILED));
}

/* Keeps `s` counted in a->held exactly while placement must keep off node
 * `n` (NULL: gone; rd_analysis_troubled): it works by the state machine
 * under the epoch the verdicts are about, and a verdict leads to suspect or
 * failed, or a proposal to make it so is on its way through the log. (A
 * node that does not work is no placement's target anyway: failed agents
 * that never came back do not keep the count above 0.) */
static void held_sync(struct rd_analysis *a, const struct rd_node *n, struct rd_detect *s)
{
    count_sync(&a->held, &s->held,
               works(n, s, false) &&
                   (any_bad(s) || s->metrics_verdict == RD_VERDICT_FAILED || s->proposing_down));
}

static void record_flap(struct rd_analysis *a, struct rd_detect *s, uint64_t now)
{
    uint64_t window = ms_ns(cfg_of(a)->fault_tolerance.detection.flap_window_ms);
    unsigned kept = 0;
    for (unsigned i = 0; i < s->n_flaps; i++)
        if (now - s->flap_times[i] <= window)
            s->flap_times[kept++] = s->flap_times[i];
    if (kept == RD_ARRAY_SIZE(s->flap_times)) {
        memmove(s->flap_times, s->flap_times + 1, (kept - 1) * sizeof(s->flap_times[0]));
        kept--;
    }
    s->flap_times[kept++] = now;
    s->n_flaps = (uint8_t)kept;
}

static bool flapping(struct rd_analysis *a, const struct rd_detect *s, uint64_t now)
{
    const struct rd_config *c = cfg_of(a);
    uint64_t window = ms_ns(c->fault_tolerance.detection.flap_window_ms);
    unsigned n = 0;
    for (unsigned i = 0; i < s->n_flaps; i++)
        if (now - s->flap_times[i] <= window)
            n++;
    return n >= c->fault_tolerance.detection.flap_threshold;
}

/* A failure decided at `when`, recorded when it applies: kept in order of
 * decision (one taken by the log later may apply first). */
static void guard_record(struct rd_analysis *a, uint64_t when)
{
    if (a->n_events == RD_GUARD_EVENTS) {
        memmove(a->events, a->events + 1, (RD_GUARD_EVENTS - 1) * sizeof(a->events[0]));
        a->n_events--;
    }
    unsigned i = a->n_events;
    while (i > 0 && a->events[i - 1] > when)
        i--;
    memmove(a->events + i + 1, a->events + i, (a->n_events - i) * sizeof(a->events[0]));
    a->events[i] = when;
    a->n_events++;
}

/* Agents failed within the mass-failure window at `now`: the events (in
 * order of decision) that aged out of it are pruned. */
static unsigned guard_recent(struct rd_analysis *a, uint64_t now)
{
    uint64_t window = ms_ns(a->cfg->fault_tolerance.partition.mass_failure_window_ms);
    unsigned i = 0;
    while (i < a->n_events && now - a->events[i] > window)
        i++;
    if (i > 0) {
        memmove(a->events, a->events + i, (a->n_events - i) * sizeof(a->events[0]));
        a->n_events -= i;
    }
    return a->n_events;
}

static size_t live_nodes(struct rd_analysis *a)
{
    const struct rd_fsm *f = a->fsm;
    return f->n_nodes - f->count_by_state[RD_NODE_LEFT];
}

/*
 * True when the share of agents in trouble says "partition", not
 * "failures". In trouble now: suspected (committed, or as the detectors see
 * it: trouble_sync), or failed within the window (a guard event once the
 * failure applies; until then the agent counts as itself). Agents that
 * came back do not count, so the guard lifts as soon as they do. One count
 * whoever asks (the agent being judged is in it already), so that judging
 * an agent and the tick cannot disagree: they did, and a hung disk,
 * refusing every failure, made the guard open and close every tick
 * (docs/architecture.md).
 */
static bool guard_tripped(struct rd_analysis *a, uint64_t now)
{
    const struct rd_config *c = cfg_of(a);
    size_t total = live_nodes(a);
    if (total < c->fault_tolerance.partition.min_nodes)
        return false;
    size_t bad = a->fsm->count_by_state[RD_NODE_SUSPECT] + a->troubled + guard_recent(a, now);
    a->guard_bad = bad;
    return bad * 100 >= (size_t)c->fault_tolerance.partition.mass_failure_share * total;
}

/* The partition's record (what tripped the guard: suspects, as the
 * detectors see them, and failures within its window; the suspect count
 * alone is often 0 here, their transitions still on their way through the
 * log). One the log refuses is proposed again by the next tick, with the
 * same id. */
static void partition_file(struct rd_analysis *a)
{
    char meta[256];
    snprintf(meta, sizeof(meta),
             "{\"affected_nodes\":%zu,\"total_nodes\":%zu,\"share_threshold\":%u,"
             "\"detail\":\"mass failure: agents are assumed cut off, not dead\"}",
             a->guard_bad, live_nodes(a), cfg_of(a)->fault_tolerance.partition.mass_failure_share);
    struct rd_cmd cmd = rd_cmd_cluster_fault(
        0, a->partition_fault_id, RD_FAULT_PARTITION, RD_SEV_CRITICAL, meta,
        "{\"action\":\"hold\",\"detail\":\"no agent is failed while the partition lasts\"}");
    a->partition_unfiled = !propose(a, &cmd, NULL, STAGE_OTHER, PART_OPEN);
}

/* What the working agents in trouble (a->troubled) are troubled by, for
 * the line that says the guard tripped: a false trip (the engine's own
 * slowness seen as the fleet's) and a real partition differ in it. */
struct troubles {
    size_t hb_late, hb_silent, probe_bad, metrics_bad;
};

static struct troubles troubled_by(const struct rd_analysis *a)
{
    struct troubles t = {0};
    for (size_t i = 0; i < a->n_by_slot; i++) {
        const struct rd_detect *d = &a->by_slot[i];
        if (!d->troubled)
            continue;
        if (d->hb == RD_VERDICT_FAILED)
            t.hb_silent++;
        else if (d->hb != RD_VERDICT_OK)
            t.hb_late++;
        if (d->probe != RD_VERDICT_OK)
            t.probe_bad++;
        if (d->metrics_verdict == RD_VERDICT_FAILED)
            t.metrics_bad++;
    }
    return t;
}

static void partition_open(struct rd_analysis *a, uint64_t now)
{
    a->partition_suspected = true;
    a->partition_since_ns = now;
    rd_uuid_v4(a->partition_fault_id);
    struct troubles by = troubled_by(a);
    RD_WARN("analysis", "partition_suspected",
            "affected=%zu suspect=%zu total=%zu troubled=%zu hb_late=%zu hb_silent=%zu "
            "probe_bad=%zu metrics_bad=%zu failed_recent=%u",
            a->guard_bad, a->fsm->count_by_state[RD_NODE_SUSPECT], live_nodes(a), a->troubled,
            by.hb_late, by.hb_silent, by.probe_bad, by.metrics_bad, a->n_events);
    partition_file(a);
}

/* The end of the record `id`; one the log refuses is proposed again by the
 * next tick. */
static void partition_resolve(struct rd_analysis *a, const char *id)
{
    char keep[sizeof(a->partition_unresolved)];
    snprintf(keep, sizeof(keep), "%s", id); /* `id` may be partition_unresolved */
    struct rd_cmd cmd = {.type = RD_CMD_FAULT_RESOLVE};
    cmd.u.fresolve.id = RD_STR(keep);
    cmd.u.fresolve.node_id = RD_STR("");
    cmd.u.fresolve.note = RD_STR("the share of agents in trouble dropped below the threshold");
    bool proposed = propose(a, &cmd, NULL, STAGE_OTHER, PART_RESOLVE);
    snprintf(a->partition_unresolved, sizeof(a->partition_unresolved), "%s", proposed ? "" : keep);
}

/* The agents the guard held come back one heartbeat at a time when a
 * partition heals, and the share drops below the threshold while the last
 * of them are still silent: judged at once they would all be failed in the
 * closing tick (the storm: 71 of 143). Each held agent gets one lease of
 * grace, as a new leader gives every agent: back within it, it is alive
 * again; still silent after it, it is judged (and counted) as usual. */
static void partition_grace(struct rd_analysis *a, uint64_t now)
{
    const struct rd_fsm *f = a->fsm;
    uint64_t until = now + rd_config_lease_ms(a->cfg) * 1000000ULL;
    for (size_t i = 0; i < f->n_nodes && f->count_by_state[RD_NODE_SUSPECT] > 0; i++) {
        const struct rd_node *n = f->nodes[i];
        struct rd_soft *soft = n->state == RD_NODE_SUSPECT
                                   ? rd_registry_get(a->registry, n->node_id, n->id_len)
                                   : NULL;
        if (soft != NULL && soft->grace_until_ns < until)
            soft->grace_until_ns = until;
    }
}

static void partition_close(struct rd_analysis *a)
{
    a->partition_suspected = false;
    partition_grace(a, a->clock());
    rd_hist_observe(&a->partition_merge, (double)(a->clock() - a->partition_since_ns) / 1e9);
    RD_INFO("analysis", "partition_over", "suspect=%zu", a->fsm->count_by_state[RD_NODE_SUSPECT]);
    if (a->partition_unfiled)
        a->partition_unfiled = false; /* never on record: nothing to resolve */
    else
        partition_resolve(a, a->partition_fault_id);
}

/* ---- the decision -------------------------------------------------------- */

/* A node fails on a signal at its full threshold, or on two signals. */
static bool failing(const struct rd_detect *s)
{
    return s->hb == RD_VERDICT_FAILED || s->probe == RD_VERDICT_FAILED ||
           s->metrics_verdict == RD_VERDICT_FAILED ||
           (s->hb != RD_VERDICT_OK && s->probe != RD_VERDICT_OK);
}

static void propose_transition(struct rd_analysis *a, const struct rd_node *n, struct rd_detect *s,
                               int to, bool resolve, const char *reason, enum stage stage)
{
    struct rd_cmd cmd = {.type = RD_CMD_NODE_TRANSITION};
    cmd.u.trans.node_id = (struct rd_str){n->node_id, (uint32_t)n->id_len};
    cmd.u.trans.epoch = n->epoch;
    cmd.u.trans.state = (uint8_t)to;
    cmd.u.trans.reason = RD_STR(reason);
    cmd.u.trans.from_state = n->state;
    cmd.u.trans.resolve_faults = resolve;
    propose(a, &cmd, s, stage, PART_NONE);
}

/* False when it could not be proposed (the log refused it at once). */
static bool propose_fault(struct rd_analysis *a, const struct rd_node *n, struct rd_detect *s,
                          int type, int sev, int set_state, bool predicted, uint64_t now)
{
    char id[RD_UUID_STRLEN];
    char *meta = fault_metadata(n, s, now, predicted);
    if (meta == NULL || rd_uuid_v4(id) != 0) {
        free(meta);
        return false;
    }
    char action[160];
    if (set_state == RD_NODE_FAILED)
        snprintf(action, sizeof(action),
                 "{\"action\":\"isolate\",\"detail\":\"epoch %llu fenced; tasks to be moved\"}",
                 (unsigned long long)n->epoch);
    else
        snprintf(action, sizeof(action), "%s",
                 predicted ? "{\"action\":\"watch\",\"detail\":\"predicted: drain early\"}"
                           : "{\"action\":\"watch\"}");
    struct rd_cmd cmd = {.type = RD_CMD_FAULT_OPEN};
    cmd.u.fopen.id = RD_STR(id);
    cmd.u.fopen.node_id = (struct rd_str){n->node_id, (uint32_t)n->id_len};
    cmd.u.fopen.fault_type = (uint8_t)type;
    cmd.u.fopen.severity = (uint8_t)sev;
    cmd.u.fopen.metadata_json = RD_STR(meta);
    cmd.u.fopen.recovery_action_json = RD_STR(action);
    cmd.u.fopen.set_state = (uint8_t)set_state;
    cmd.u.fopen.epoch = n->epoch;
    cmd.u.fopen.from_state = set_state == RD_STATE_ANY ? RD_STATE_ANY : n->state;
    /* Taking an agent out of service is an audited engine action; the
     * fault it opens is the cause (a warning that moves nothing is not). */
    if (set_state != RD_STATE_ANY)
        rd_cmd_audit_engine(&cmd, "isolate_by_analysis", n->node_id, id);
    bool failure = set_state == RD_NODE_FAILED;
    bool proposed = propose(a, &cmd, s, failure ? STAGE_FAILED : STAGE_OTHER, PART_NONE);
    if (proposed && failure) {
        s->failure_proposed_ns = now; /* a guard event when it applies */
    } else if (proposed) {
        s->warn_open = true;
        s->warn_predicted |= predicted;
    }
    free(meta);
    return proposed;
}

static void propose_resolve_warnings(struct rd_analysis *a, const struct rd_node *n,
                                     struct rd_detect *s)
{
    struct rd_cmd cmd = {.type = RD_CMD_FAULT_RESOLVE};
    cmd.u.fresolve.id = RD_STR("");
    cmd.u.fresolve.node_id = (struct rd_str){n->node_id, (uint32_t)n->id_len};
    cmd.u.fresolve.note = RD_STR("signals back to normal");
    if (propose(a, &cmd, s, STAGE_OTHER, PART_NONE))
        s->warn_open = s->warn_predicted = false;
}

static unsigned probation_needed(struct rd_analysis *a, const struct rd_detect *s, uint64_t now)
{
    const struct rd_config *c = cfg_of(a);
    unsigned need = c->fault_tolerance.detection.recovery_threshold;
    if (flapping(a, s, now))
        need *= c->fault_tolerance.detection.flap_penalty;
    return need;
}

static void evaluate(struct rd_analysis *a, const struct rd_node *n, struct rd_detect *s)
{
    trouble_sync(a, n, s);
    if (s->proposing || s->soft->epoch != n->epoch || !a->log.is_leader(a->log.data))
        return;
    uint64_t now = a->clock();
    bool in_grace = now < s->soft->grace_until_ns;
    int state = n->state;
    if (state == RD_NODE_FAILED || state == RD_NODE_ISOLATED || state == RD_NODE_LEFT)
        return; /* fenced: the agent must register again */

    if (!any_bad(s) && s->metrics_verdict != RD_VERDICT_FAILED) {
        if (state == RD_NODE_SUSPECT) {
            bool flap = flapping(a, s, now);
            RD_DEBUG("analysis", "recovered", "node=%s flaps=%u flapping=%d", n->node_id,
                     (unsigned)s->n_flaps, flap);
            s->bad_since_ns = 0;
            propose_transition(a, n, s, flap ? RD_NODE_PROBATION : RD_NODE_ALIVE, !flap,
                               flap ? "signals ok again; flapping: probation" : "signals ok again",
                               STAGE_OTHER);
            return;
        }
        if (state == RD_NODE_PROBATION && s->hb == RD_VERDICT_OK &&
            s->soft->heartbeats - s->soft->heartbeats_at_state >= probation_needed(a, s, now)) {
            propose_transition(a, n, s, RD_NODE_ALIVE, true, "probation passed", STAGE_OTHER);
            return;
        }
        /* Metrics anomalies and predictions: a record, the node keeps working. */
        bool warn = s->metrics_verdict == RD_VERDICT_SUSPECT || s->predicted;
        /* A prediction that comes while an anomaly's record is open gets a
         * record of its own: policies act on predicted records. */
        if (warn && (!s->warn_open || (s->predicted && !s->warn_predicted)) && !in_grace) {
            int type, sev;
            classify(n, s, &type, &sev);
            if (s->metrics_verdict == RD_VERDICT_OK && s->predicted)
                sev = RD_SEV_WARNING;
            propose_fault(a, n, s, type, sev, RD_STATE_ANY, s->predicted, now);
        } else if (!warn && s->warn_open) {
            propose_resolve_warnings(a, n, s);
        }
        return;
    }
    if (in_grace)
        return; /* one full lease before anything judges the agent */

    if (failing(s)) {
        /* Heartbeats failed while the probe still says ok: that "ok" may
         * predate the silence (the probe runs on its own schedule). Give the
         * probe one round (an interval plus the health check timeout) to
         * tell a crash (refused) from a network fault (it keeps answering)
         * before anything is classified; the benchmark saw crashes recorded
         * as network faults, which send the tasks to safe_recovery. */
        const struct rd_config *c = cfg_of(a);
        uint64_t hold = ms_ns(c->fault_tolerance.detection.heartbeat_interval_ms +
                              c->fault_tolerance.detection.health_check_timeout_ms);
        if (s->hb == RD_VERDICT_FAILED && s->probe == RD_VERDICT_OK &&
            s->metrics_verdict != RD_VERDICT_FAILED && n->health_url[0] != '\0' &&
            s->hb_failed_ns != 0 && now - s->hb_failed_ns < hold && state == RD_NODE_SUSPECT)
            return;
        if (a->partition_suspected || guard_tripped(a, now)) {
            a->guard_blocked_total++;
            if (!a->partition_suspected && !a->partition_proposing)
                partition_open(a, now);
            if (state != RD_NODE_SUSPECT) {
                record_flap(a, s, now);
                propose_transition(a, n, s, RD_NODE_SUSPECT, false,
                                   "failing, held as suspect: partition suspected", STAGE_SUSPECT);
            }
            return;
        }
        int type, sev;
        classify(n, s, &type, &sev);
        if (state != RD_NODE_SUSPECT)
            record_flap(a, s, now);
        /* Counted as a suspect, or a troubled working agent, until its
         * failure applies; as a guard event from then on (node_changed). */
        /* Said once the log has taken it: a hung disk refuses it at once,
         * tick after tick (4,276 lines for 228 agents in 7 s of a storm). */
        if (propose_fault(a, n, s, type, sev, RD_NODE_FAILED, false, now))
            RD_WARN("analysis", "node_failed",
                    "node=%s epoch=%llu type=%s severity=%s hb=%s probe=%s/%s", n->node_id,
                    (unsigned long long)n->epoch, rd_fault_type_name(type), rd_severity_name(sev),
                    verdict_name(s->hb), verdict_name(s->probe), cause_name(s->probe_cause));
        return;
    }
    if (state != RD_NODE_SUSPECT) {
        record_flap(a, s, now);
        propose_transition(a, n, s, RD_NODE_SUSPECT, false,
                           s->hb != RD_VERDICT_OK ? "heartbeats late" : "probe failed",
                           STAGE_SUSPECT);
        if (!a->partition_suspected && !a->partition_proposing && guard_tripped(a, now))
            partition_open(a, now);
    }
}

/* ---- the batch ----------------------------------------------------------- */

/*
 * Observations are judged in batches (issue 16). A detector's check may
 * report many agents at once (a partition cuts off a third of the fleet, and
 * one heartbeat check finds them all failed); judged one by one as they came,
 * the first were failed before the others were counted by the guard, and it
 * tripped late (73 of 647 cut-off agents failed in a 2,000-agent storm). So
 * an observation records its verdict, and the guard counts the agent, at
 * once; the agent is judged when the batch is flushed, after every report
 * of the batch is in. The loop flushes in the turn of the observations: a
 * check handle after its callbacks, and an idle handle so that the poll in
 * between does not wait (no added latency).
 */

static void flush_check_cb(uv_check_t *h)
{
    rd_analysis_flush(h->data);
}

static void flush_idle_cb(uv_idle_t *h)
{
    (void)h; /* only there so that the loop's poll does not wait for I/O */
}

static void batch_arm(struct rd_analysis *a, bool on)
{
    if (!a->started || a->flush_armed == on)
        return;
    if (on) {
        uv_check_start(&a->flush_check, flush_check_cb);
        uv_idle_start(&a->flush_idle, flush_idle_cb);
    } else {
        uv_check_stop(&a->flush_check);
        uv_idle_stop(&a->flush_idle);
    }
    a->flush_armed = on;
}

/* Queues node `n` (its soft state `s`) to be judged at the flush. False
 * when it cannot (ENOMEM): the caller judges it at once instead. */
static bool batch_add(struct rd_analysis *a, const struct rd_node *n, struct rd_detect *s)
{
    if (s->queued)
        return true;
    size_t need = a->batch_len + n->id_len + 1;
    if (need > a->batch_cap) {
        size_t cap = a->batch_cap != 0 ? a->batch_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *b = realloc(a->batch, cap);
        if (b == NULL)
            return false;
        a->batch = b;
        a->batch_cap = cap;
    }
    memcpy(a->batch + a->batch_len, n->node_id, n->id_len);
    a->batch[need - 1] = '\0';
    a->batch_len = need;
    s->queued = true;
    batch_arm(a, true);
    return true;
}

/* Walks the batch: each queued agent still known (the same node and epoch
 * as when it was observed) is taken out of it and, with `judge`, judged.
 * Agents queued meanwhile (by a synchronous callback of a proposal) are
 * walked too. */
static void batch_walk(struct rd_analysis *a, bool judge)
{
    for (size_t off = 0; off < a->batch_len;) {
        const char *id = a->batch + off;
        size_t len = strlen(id);
        off += len + 1;
        const struct rd_node *n = rd_fsm_node(a->fsm, id, len);
        struct rd_detect *s = det(a, rd_registry_get(a->registry, id, len));
        if (s == NULL || !s->queued)
            continue; /* forgotten, or a new epoch since: nothing to judge */
        s->queued = false;
        if (judge && n != NULL && n->state != RD_NODE_LEFT)
            evaluate(a, n, s); /* `id` may be gone from here (the batch grew) */
    }
    a->batch_len = 0;
    batch_arm(a, false);
}

void rd_analysis_flush(struct rd_analysis *a)
{
    batch_walk(a, true);
}

/* ---- inputs -------------------------------------------------------------- */

bool rd_analysis_observe(struct rd_analysis *a, const char *detector,
                         const struct rd_observation *obs)
{
    if (!a->started || !a->log.is_leader(a->log.data))
        return false;
    size_t len = strlen(obs->node_id);
    const struct rd_node *n = rd_fsm_node(a->fsm, obs->node_id, len);
    if (n == NULL || n->epoch != obs->epoch || n->state == RD_NODE_LEFT)
        return false;
    struct rd_soft *soft = rd_registry_get(a->registry, obs->node_id, len);
    if (soft == NULL || soft->epoch != n->epoch)
        return false;
    struct rd_detect *s = det(a, soft);
    if (s == NULL)
        return false;
    int v = obs->verdict;
    if (v < RD_VERDICT_OK || v > RD_VERDICT_FAILED)
        return false;
    bool was_bad = any_bad(s);
    switch (obs->signal) {
    case RD_SIG_HEARTBEAT:
        if (v == RD_VERDICT_FAILED && s->hb != RD_VERDICT_FAILED)
            s->hb_failed_ns = a->clock();
        else if (v != RD_VERDICT_FAILED)
            s->hb_failed_ns = 0;
        s->hb = (int8_t)v;
        s->phi = obs->value;
        break;
    case RD_SIG_PROBE:
        s->probe = (int8_t)v;
        if (v != RD_VERDICT_OK)
            s->probe_cause = (uint8_t)obs->probe_cause;
        break;
    case RD_SIG_METRICS:
        s->metrics_verdict = (int8_t)v;
        s->predicted = obs->predicted;
        s->predicted_eta_ms = obs->eta_ms;
        s->predicted_trend = obs->trend;
        snprintf(s->metric, sizeof(s->metric), "%s", obs->metric ? obs->metric : "");
        break;
    default:
        return false;
    }
    trouble_sync(a, n, s); /* before any judging: the guard counts it from here */
    held_sync(a, n, s);
    if (v != RD_VERDICT_OK || obs->predicted) {
        snprintf(s->detail, sizeof(s->detail), "%s: %s", detector,
                 obs->detail ? obs->detail : verdict_name(v));
        uint64_t since = obs->since_ns ? obs->since_ns : a->clock();
        if (!was_bad || s->bad_since_ns == 0 || since < s->bad_since_ns)
            s->bad_since_ns = since;
    }
    /* Judged with the rest of its batch, once the guard has counted them
     * all (counted already: trouble_sync above). */
    if (!batch_add(a, n, s))
        evaluate(a, n, s);
    return true;
}

void rd_analysis_heartbeat(struct rd_analysis *a, const struct rd_node *n, struct rd_soft *soft)
{
    struct rd_detect *s;
    if (a->started && (n->state == RD_NODE_PROBATION || n->state == RD_NODE_SUSPECT) &&
        (s = det(a, soft)) != NULL)
        evaluate(a, n, s);
}

void rd_analysis_fault_applied(struct rd_analysis *a, int type, int severity)
{
    if (type >= 0 && type < RD_FAULT_TYPE_COUNT && severity >= 0 && severity < RD_SEV_COUNT)
        a->faults_opened[type][severity]++;
}

/* Periodic: the guard winds down when agents come back, and agents whose
 * grace ran out while a signal was already bad get judged (detectors report
 * changes, not levels, so nothing else would wake them). */
static void tick(uv_timer_t *t)
{
    rd_analysis_tick(t->data);
}

/* A signal or a record that may call for a judgement (or its end), or a
 * suspect state to leave. */
static bool calls_for_judgement(const struct rd_node *n, const struct rd_detect *s)
{
    return any_bad(s) || s->metrics_verdict != RD_VERDICT_OK || s->predicted || s->warn_open ||
           n->state == RD_NODE_SUSPECT;
}

/* Whether the tick must look at node `n` again: a judgement to make, a
 * count to keep in step, or a proposal on its way. */
static bool needs_look(const struct rd_node *n, const struct rd_detect *s)
{
    return calls_for_judgement(n, s) || s->troubled || s->held || s->proposing;
}

static bool fenced(const struct rd_node *n)
{
    return n->state == RD_NODE_FAILED || n->state == RD_NODE_ISOLATED || n->state == RD_NODE_LEFT;
}

/* One agent at the tick: its counts kept in step, and judged when a
 * signal or its state calls for it. */
static void look(struct rd_analysis *a, const struct rd_node *n, struct rd_detect *s)
{
    trouble_sync(a, n, s);
    if (!s->proposing && calls_for_judgement(n, s))
        evaluate(a, n, s);
}

/* Every agent (a new leadership, the backstop), a table lookup each: its
 * counts kept in step, and watched if it needs a look (taken by the walk
 * of the watched that follows: one judgement per agent and tick). */
static void walk_all(struct rd_analysis *a)
{
    a->walk_all = false;
    a->ticks_since_walk = 0;
    a->walks_total++;
    for (size_t i = 0; i < a->fsm->n_nodes; i++) {
        const struct rd_node *n = a->fsm->nodes[i];
        if (fenced(n))
            continue;
        struct rd_detect *s = det_of(a, rd_registry_get(a->registry, n->node_id, n->id_len));
        if (s == NULL)
            continue;
        trouble_sync(a, n, s);
        if (needs_look(n, s))
            watch(a, s);
    }
}

/* The watched agents: each looked at, and out of the list once clean.
 * Agents watched while it runs (a proposal's synchronous answer) are
 * looked at in the same pass. */
static void walk_watched(struct rd_analysis *a)
{
    size_t kept = 0;
    for (size_t i = 0; i < a->n_watch; i++) {
        uint32_t slot = a->watch[i];
        struct rd_detect *s = slot < a->n_by_slot ? &a->by_slot[slot] : NULL;
        if (s == NULL || !s->watched)
            continue;
        const struct rd_soft *soft = s->soft;
        const struct rd_node *n =
            soft != NULL && soft->node_id != NULL && soft->generation == s->generation
                ? rd_fsm_node(a->fsm, soft->node_id, soft->id_len)
                : NULL;
        if (n != NULL && !fenced(n)) {
            look(a, n, s);
            s = &a->by_slot[slot]; /* a judgement's inputs may have grown the table */
            if (needs_look(n, s)) {
                a->watch[kept++] = slot;
                continue;
            }
        }
        s->watched = false; /* clean, fenced (node_changed keeps its counts) or gone */
    }
    a->n_watch = kept;
}

void rd_analysis_tick(struct rd_analysis *a)
{
    rd_analysis_flush(a); /* what was observed before this pass is judged first */
    if (!a->log.is_leader(a->log.data))
        return;
    a->passes_total++; /* counted first: /metrics, on this thread, sees it after the pass */
    uint64_t now = a->clock();
    if (!a->partition_proposing && a->partition_suspected && a->partition_unfiled)
        partition_file(a);
    else if (!a->partition_proposing && a->partition_unresolved[0] != '\0')
        partition_resolve(a, a->partition_unresolved);
    if (a->partition_suspected && !a->partition_proposing && !guard_tripped(a, now))
        partition_close(a);
    /* Detectors report changes, not levels: an agent whose grace ran out
     * while a signal was already bad, or that stays suspect, is judged
     * here. Only the watched ones: a walk over 10,000 agents ten times a
     * second was 4% of a storm's leader (a table lookup each). */
    if (a->walk_all || ++a->ticks_since_walk >= RD_ANALYSIS_WALK_TICKS)
        walk_all(a);
    walk_watched(a);
}

void rd_analysis_init(struct rd_analysis *a, uv_loop_t *loop, const struct rd_config *cfg,
                      const struct rd_fsm *fsm, struct rd_registry *registry,
                      struct rd_proposer log, struct rd_plugin_host *detectors)
{
    memset(a, 0, sizeof(*a));
    a->detectors = detectors;
    a->loop = loop;
    a->cfg = cfg;
    a->fsm = fsm;
    a->registry = registry;
    a->log = log;
    a->clock = rd_mono_ns;
    a->walk_all = true;
    a->partition_merge.bounds = rd_hist_bounds_long;
    /* The duration scale: the detection-latency rule compares the p99 with
     * 30 s, which the latency scale (up to 10 s) could never exceed. */
    a->latency_suspect.bounds = rd_hist_bounds_long;
    a->latency_failed.bounds = rd_hist_bounds_long;
}

int rd_analysis_take_heartbeat(struct rd_analysis *a, const struct rd_heartbeat_in *hb,
                               const struct rd_node **node, struct rd_soft **soft)
{
    const struct rd_node *n = rd_fsm_node(a->fsm, hb->node_id, hb->id_len);
    *node = n;
    *soft = NULL;
    if (n == NULL)
        return RD_ENOTFOUND;
    /* Fenced: the agent must drop its tasks and register again. */
    if (hb->epoch != n->epoch || n->state == RD_NODE_LEFT || n->state == RD_NODE_ISOLATED ||
        n->state == RD_NODE_FAILED)
        return RD_EFENCED;
    uint64_t now = a->clock();
    struct rd_soft *s = rd_registry_touch(a->registry, hb->node_id, hb->id_len, n->epoch, now,
                                          rd_config_lease_ms(a->cfg) * 1000000ULL);
    if (s == NULL)
        return RD_ENOMEM;
    rd_registry_heartbeat(a->registry, s, now, rd_now_ms(), hb->slots_used, &hb->metrics);
    struct rd_heartbeat_view hv = {
        .node_id = n->node_id,
        .epoch = n->epoch,
        .arrival_ns = now,
        .slots_used = hb->slots_used,
        .has_metrics = hb->metrics.present,
        .error_rate = hb->metrics.error_rate,
        .latency_ms = hb->metrics.latency_ms,
        .cpu = hb->metrics.cpu,
        .mem = hb->metrics.mem,
        .progress = hb->progress,
        .slot = s->slot,
    };
    if (a->detectors != NULL)
        rd_plugin_host_heartbeat(a->detectors, &hv);
    rd_analysis_heartbeat(a, n, s);
    *soft = s;
    return 0;
}

void rd_analysis_reset(struct rd_analysis *a)
{
    a->partition_suspected = false;
    a->partition_proposing = false;
    a->partition_unfiled = false;
    a->partition_unresolved[0] = '\0';
    a->n_events = 0;
    a->troubled = 0;
    a->held = 0;
    a->batch_len = 0; /* the verdicts it named are forgotten below */
    batch_arm(a, false);
    /* The detectors start afresh with a new leadership and report only
     * changes: a verdict kept from this replica's previous leadership (a
     * node left suspect) would never be cleared by them, and the node would
     * stay suspect, counted by the guard, however well it heartbeats. */
    if (a->by_slot != NULL)
        memset(a->by_slot, 0, a->n_by_slot * sizeof(*a->by_slot));
    a->n_watch = 0; /* every agent looked at once by the first tick */
    a->walk_all = true;
}

void rd_analysis_node_changed(struct rd_analysis *a, struct rd_soft *soft, const struct rd_node *n,
                              int old_state)
{
    struct rd_detect *s = det(a, soft);
    if (s == NULL)
        return;
    /* A failure this leader decided: a guard event from now on, within
     * the window from its decision (it was counted as a suspect or a
     * troubled agent until now). */
    if (n->state == RD_NODE_FAILED && old_state != RD_NODE_FAILED && s->failure_proposed_ns != 0) {
        guard_record(a, s->failure_proposed_ns);
        s->failure_proposed_ns = 0;
    }
    trouble_sync(a, n->state == RD_NODE_LEFT ? NULL : n, s);
    held_sync(a, n, s);
}

void rd_analysis_start(struct rd_analysis *a)
{
    if (a->started)
        return;
    uv_timer_init(a->loop, &a->tick);
    a->tick.data = a;
    uv_timer_start(&a->tick, tick, TICK_MS, TICK_MS);
    uv_check_init(a->loop, &a->flush_check);
    a->flush_check.data = a;
    uv_idle_init(a->loop, &a->flush_idle);
    a->flush_idle.data = a;
    a->started = true;
}

void rd_analysis_stop(struct rd_analysis *a)
{
    if (!a->started)
        return;
    uv_timer_stop(&a->tick);
    uv_close((uv_handle_t *)&a->tick, NULL);
    batch_walk(a, false); /* not the leader any more: nothing is judged */
    uv_close((uv_handle_t *)&a->flush_check, NULL);
    uv_close((uv_handle_t *)&a->flush_idle, NULL);
    a->started = false;
}

void rd_analysis_metrics(struct rd_analysis *a, struct rd_mbuf *b)
{
    rd_metric_header(b, "recoveryd_detection_latency_seconds", "histogram",
                     "Time from the start of an agent's trouble to the committed decision.");
    rd_metric_hist(b, "recoveryd_detection_latency_seconds", "stage=\"suspect\"",
                   &a->latency_suspect);
    rd_metric_hist(b, "recoveryd_detection_latency_seconds", "stage=\"failed\"",
                   &a->latency_failed);
    rd_metric_header(b, "recoveryd_faults_total", "counter",
                     "Fault records opened, by fault_type and severity_level.");
    for (int t = 0; t < RD_FAULT_TYPE_COUNT; t++)
        for (int s = 0; s < RD_SEV_COUNT; s++)
            if (a->faults_opened[t][s])
                rd_mbuf_printf(b,
                               "recoveryd_faults_total{fault_type=\"%s\",severity=\"%s\"} %llu\n",
                               rd_fault_type_name(t), rd_severity_name(s),
                               (unsigned long long)a->faults_opened[t][s]);
    rd_metric_header(b, "recoveryd_faults_open", "gauge", "Fault records not yet resolved.");
    rd_mbuf_printf(b, "recoveryd_faults_open %zu\n", a->fsm->open_faults);
    rd_metric_header(b, "recoveryd_partition_suspected", "gauge",
                     "1 while the mass-failure guard holds back failures.");
    rd_mbuf_printf(b, "recoveryd_partition_suspected %d\n", a->partition_suspected ? 1 : 0);
    rd_metric_header(b, "recoveryd_partition_merge_duration_seconds", "histogram",
                     "Time from a partition suspected (the mass-failure guard tripped) to its "
                     "end (the share of agents in trouble back under the threshold), on this "
                     "leader.");
    rd_metric_hist(b, "recoveryd_partition_merge_duration_seconds", "", &a->partition_merge);
    rd_metric_header(b, "recoveryd_guard_blocked_total", "counter",
                     "Failures the mass-failure guard held back as suspect.");
    rd_mbuf_printf(b, "recoveryd_guard_blocked_total %llu\n",
                   (unsigned long long)a->guard_blocked_total);
    rd_metric_header(b, "recoveryd_analysis_proposals_total", "counter",
                     "Decisions proposed to the log by the analysis.");
    rd_mbuf_printf(b, "recoveryd_analysis_proposals_total %llu\n",
                   (unsigned long long)a->proposals_total);
    rd_metric_header(b, "recoveryd_analysis_passes_total", "counter",
                     "Periodic passes of the analysis over the agents in trouble (as leader).");
    rd_mbuf_printf(b, "recoveryd_analysis_passes_total %llu\n",
                   (unsigned long long)a->passes_total);
}

bool rd_analysis_phi(struct rd_analysis *a, struct rd_soft *soft, double *phi)
{
    struct rd_detect *d = det(a, soft);
    if (d == NULL || d->hb == RD_VERDICT_OK)
        return false;
    *phi = d->phi;
    return true;
}

bool rd_analysis_troubled(const struct rd_analysis *a, const struct rd_node *n)
{
    if (!a->started || a->held == 0)
        return false;
    const struct rd_soft *soft = rd_registry_get(a->registry, n->node_id, n->id_len);
    if (soft == NULL || soft->epoch != n->epoch || soft->slot >= a->n_by_slot)
        return false;
    const struct rd_detect *s = &a->by_slot[soft->slot];
    if (s->generation != soft->generation)
        return false; /* nothing observed of this registration yet */
    return s->held;
}

void rd_analysis_close(struct rd_analysis *a)
{
    rd_nofork_free(a->by_slot, a->n_by_slot * sizeof(*a->by_slot));
    a->by_slot = NULL;
    free(a->batch);
    a->batch = NULL;
    free(a->watch);
    a->watch = NULL;
    a->n_watch = a->cap_watch = 0;
    a->batch_len = a->batch_cap = 0;
    a->n_by_slot = 0;
}
