/*
 * The scheduler's placement pass at scale (tests/bench/placement/run.sh):
 * rd_sched__place_pending on a real state machine of NODES agents and TASKS
 * tasks, against the pass as it was before the pending heap and the
 * placement index (a walk over the whole task table for the pending ones,
 * a sort, and a score of every node per task: reproduced below from
 * rd_sched__choose_scan, the same scan), in the same run on the same state.
 * Proposals go to a log that takes them and refuses them after the pass
 * (outside the timing), so each pass starts from the same state.
 *
 *   bench_placement [--nodes N] [--tasks N] [--reps N] [--old-max-s S]
 *
 * Cases (tasks spread over the agents' slots):
 *   initial    every task pending, room for all: one pass places them all
 *   storm      20 % of the agents failed, their tasks pending (the rest run):
 *              the pass places them on the others (a recovery's moves make
 *              the same choice per task: rd_sched__choose)
 *   saturated  every agent full, 20 % more tasks pending: nothing fits
 *   trickle    every task running but 100 pending, room for them
 * Each prints the pass's CPU time (the thread's), old and new, the placements (both must make
 * the same ones: exit 1 when they differ) and the speed-up. The old pass of
 * a case is skipped once one took longer than --old-max-s (reported).
 *
 * Then (first, and alone with --pass rebalance) the rebalancing pass,
 * rd_sched__rebalance, on agents of 32 slots (the storm's), each pass from
 * a fresh leadership's state:
 *   rb-steady       every task placed evenly: nothing to balance
 *   rb-joined       a fifth of the agents empty (joined, or back after a
 *                   storm): the pass plans its bucket's moves (10 at the
 *                   default 60 a minute; rb-joined-1000 at 6,000 a minute)
 *   rb-cooling      the same, every task moved lately: nothing may move
 * Each prints the pass's CPU time and a digest of the moves it decided (the
 * proposals and where the held ones go), to compare builds: the moves must
 * be the same in every pass of a case (exit 1 when not).
 *
 * With --pass policy (and --policies DIR, the shipped policies/), the
 * passes that call the Lua policies with the whole view, on the same fleet:
 *   recover-N       N agents failed (10 tasks each, a recovery run open for
 *                   each): one rd_sched__recover pass, select + plan once
 *                   per lost agent; beside it the same pass with no
 *                   policies (the built-in fast recovery) as the reference
 *   rb-hook         rb-joined with the policies: one rebalancing pass, the
 *                   `rebalance` hook called once
 * Each prints the pass's CPU time and a digest of what it proposed (the
 * same in every pass, exit 1 when not; the same in two builds when they
 * plan alike).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "common/util.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "fsm/fsm.h"
#include "plugin/host.h"
#include "policy/policy.h"
#include "recover/sched.h"
#include "recover/sched_int.h"
#include "registry/registry.h"
#include "recoveryd/error.h"

/* ---- a log that keeps what is proposed, to refuse it after the pass ---- */

struct held {
    rd_submit_cb cb;
    void *data;
    char task[40];
    char node[RD_NODE_ID_MAX + 1];
};

struct bench_log {
    struct held *q;
    size_t n, cap;
};

static bool is_leader(void *data)
{
    (void)data;
    return true;
}

static int propose(void *data, const struct rd_cmd *cmd, rd_submit_cb cb, void *cb_data)
{
    struct bench_log *l = data;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->q = realloc(l->q, l->cap * sizeof(*l->q));
        if (l->q == NULL) {
            fprintf(stderr, "bench: out of memory\n");
            exit(2);
        }
    }
    struct held *h = &l->q[l->n++];
    h->cb = cb;
    h->data = cb_data;
    h->task[0] = h->node[0] = '\0';
    if (cmd->type == RD_CMD_TASK_ASSIGN) {
        snprintf(h->task, sizeof(h->task), "%.*s", (int)cmd->u.tassign.task_id.len,
                 cmd->u.tassign.task_id.p);
        snprintf(h->node, sizeof(h->node), "%.*s", (int)cmd->u.tassign.node_id.len,
                 cmd->u.tassign.node_id.p);
    }
    return 0;
}

/* Refuses what the pass proposed (the scheduler forgets it): the state is
 * as before the pass. */
static void refuse_all(struct bench_log *l)
{
    for (size_t i = 0; i < l->n; i++)
        l->q[i].cb(l->q[i].data, RD_ECONFLICT, 0);
    l->n = 0;
}

/* ---- the world ------------------------------------------------------------ */

struct world {
    uv_loop_t loop;
    struct rd_config cfg;
    struct rd_fsm fsm;
    struct rd_registry registry;
    struct bench_log log;
    struct rd_analysis analysis;  /* zeroed: no partition */
    struct rd_plugin_host alerts; /* zeroed: no instance */
    struct rd_policy_host *policy;
    bool shutting_down;
    uint64_t leader_since_ns;
    struct rd_sched s;
};

static void apply(struct world *w, struct rd_cmd c)
{
    struct rd_wbuf b;
    rd_w_init(&b);
    if (c.time_ms == 0)
        c.time_ms = rd_now_ms();
    const struct rd_fsm_result *res = NULL;
    if (rd_cmd_encode(&c, &b) != 0 || rd_fsm_apply(&w->fsm, b.p, b.len, &res) != 0) {
        fprintf(stderr, "bench: a command did not apply\n");
        exit(2);
    }
    rd_w_free(&b);
}

/* A policy's failure, counted by the scheduler (and reported by the case). */
static void policy_error(void *data, const char *msg)
{
    (void)data;
    fprintf(stderr, "bench: policy error: %s\n", msg);
}

static void node_id(char *out, size_t len, size_t i)
{
    snprintf(out, len, "agent-%06zu", i);
}

static void world_init(struct world *w, size_t nodes, uint32_t slots)
{
    memset(w, 0, sizeof(*w));
    uv_loop_init(&w->loop);
    rd_config_defaults(&w->cfg);
    rd_fsm_init(&w->fsm);
    rd_registry_init(&w->registry);
    w->leader_since_ns = rd_mono_ns();
    char id[32];
    for (size_t i = 0; i < nodes; i++) {
        node_id(id, sizeof(id), i);
        struct rd_cmd c = {.type = RD_CMD_NODE_REGISTER};
        c.u.reg.node_id = RD_STR(id);
        c.u.reg.slots = slots;
        c.u.reg.labels_json = RD_STR("{}");
        c.u.reg.health_url = RD_STR("");
        c.u.reg.address = RD_STR("");
        apply(w, c);
    }
    struct rd_sched_env env = {
        .loop = &w->loop,
        .cfg = &w->cfg,
        .fsm = &w->fsm,
        .registry = &w->registry,
        .log = {.data = &w->log, .is_leader = is_leader, .propose = propose},
        .analysis = &w->analysis,
        .alerts = &w->alerts,
        .policy = &w->policy,
        .policy_error = policy_error,
        .shutting_down = &w->shutting_down,
        .leader_since_ns = &w->leader_since_ns,
    };
    rd_sched_init(&w->s, &env);
}

static void world_close(struct world *w)
{
    rd_sched_close(&w->s);
    free(w->log.q);
    rd_registry_close(&w->registry);
    rd_fsm_close(&w->fsm);
    uv_loop_close(&w->loop);
}

static const char *submit(struct world *w, size_t i)
{
    static char id[40];
    snprintf(id, sizeof(id), "%08zx-0000-4000-8000-%012zu", i * 2654435761u % 0xffffffffu, i);
    struct rd_cmd c = {.type = RD_CMD_TASK_SUBMIT};
    c.u.tsubmit.task_id = RD_STR(id);
    c.u.tsubmit.priority = (uint8_t)(i % 10);
    c.u.tsubmit.slots = 1;
    c.u.tsubmit.labels_json = RD_STR("{}");
    c.u.tsubmit.payload_json = RD_STR("{}");
    c.u.tsubmit.max_attempts = 5;
    c.time_ms = 1000 + (int64_t)i;
    apply(w, c);
    return id;
}

static void place_as(struct world *w, const char *task, size_t node, uint8_t state)
{
    char id[32];
    node_id(id, sizeof(id), node);
    const struct rd_task *t = rd_fsm_task(&w->fsm, task);
    const struct rd_node *n = rd_fsm_node(&w->fsm, id, strlen(id));
    struct rd_cmd c = {.type = RD_CMD_TASK_ASSIGN};
    c.u.tassign.task_id = RD_STR(task);
    c.u.tassign.attempt = t->attempt;
    c.u.tassign.node_id = RD_STR(id);
    c.u.tassign.node_epoch = n->epoch;
    c.u.tassign.state = state;
    apply(w, c);
}

static void place(struct world *w, const char *task, size_t node)
{
    place_as(w, task, node, RD_TASK_RUNNING);
}

static void fail_node(struct world *w, size_t node)
{
    char id[32];
    node_id(id, sizeof(id), node);
    struct rd_cmd c = {.type = RD_CMD_NODE_TRANSITION};
    c.u.trans.node_id = RD_STR(id);
    c.u.trans.state = RD_NODE_FAILED;
    c.u.trans.reason = RD_STR("bench");
    c.u.trans.from_state = RD_STATE_ANY;
    apply(w, c);
}

/* Back to pending, off its (failed) agent, as a recovery that found no
 * room leaves it. */
static void unplace(struct world *w, const struct rd_task *t)
{
    char id[40];
    snprintf(id, sizeof(id), "%s", t->id);
    struct rd_cmd c = {.type = RD_CMD_TASK_ASSIGN};
    c.u.tassign.task_id = RD_STR(id);
    c.u.tassign.attempt = t->attempt;
    c.u.tassign.node_id = RD_STR("");
    c.u.tassign.state = RD_TASK_PENDING;
    apply(w, c);
}

/* ---- the pass before this change ------------------------------------------ */

static void old_place_pending(struct rd_sched *s, uint32_t *extra)
{
    const struct rd_fsm *f = s->env.fsm;
    if (f->tasks_by_state[RD_TASK_PENDING] == 0)
        return;
    size_t n = 0;
    struct rd_task **todo = malloc(f->tasks_by_state[RD_TASK_PENDING] * sizeof(*todo));
    if (todo == NULL)
        return;
    for (size_t i = 0; i < f->n_tasks && n < f->tasks_by_state[RD_TASK_PENDING]; i++) {
        struct rd_task *t = f->tasks[i];
        if (t->state != RD_TASK_PENDING || rd_map_get(&s->inflight, t->id, strlen(t->id)))
            continue;
        if (rd_sched__poisoned(s, t, 0))
            rd_sched__quarantine(s, t, 0);
        else
            todo[n++] = t;
    }
    qsort(todo, n, sizeof(*todo), rd_task_cmp_urgency);
    for (size_t k = 0; k < n; k++) {
        struct rd_task *t = todo[k];
        size_t best = rd_sched__choose_scan(s, t, extra, 100);
        if (best == SIZE_MAX)
            continue;
        if (!rd_sched__propose_assign(s, t, f->nodes[best], RD_TASK_ASSIGNED))
            break;
        extra[best] += t->slots;
        s->placements_total++;
    }
    free(todo);
}

/* The thread's CPU time: what the pass costs the loop, whatever else the
 * shared machine runs meanwhile. */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* One pass of `which` (0 old, 1 new): its CPU time in ns; the placements it
 * proposed, counted and hashed in order into `digest` (to compare the two). */
static uint64_t one_pass(struct world *w, int which, size_t *placed, uint64_t *digest)
{
    const struct rd_fsm *f = &w->fsm;
    uint32_t *extra = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*extra));
    if (extra == NULL)
        exit(2);
    rd_sched__labels_reset(&w->s);
    uint64_t t0 = cpu_ns();
    if (which == 0)
        old_place_pending(&w->s, extra);
    else
        rd_sched__place_pending(&w->s, extra);
    uint64_t ns = cpu_ns() - t0;
    uint64_t h = RD_FNV_INIT;
    *placed = 0;
    for (size_t i = 0; i < w->log.n; i++) {
        if (w->log.q[i].task[0] == '\0')
            continue;
        h = rd_fnv1a(h, w->log.q[i].task, strlen(w->log.q[i].task));
        h = rd_fnv1a(h, w->log.q[i].node, strlen(w->log.q[i].node));
        (*placed)++;
    }
    *digest = h;
    refuse_all(&w->log);
    rd_sched__labels_reset(&w->s);
    free(extra);
    return ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int failures;

static void run_case(const char *name, struct world *w, int reps, double old_max_s)
{
    uint64_t old_ns[64], new_ns[64], old_digest = 0, new_digest = 0;
    size_t old_placed = 0, new_placed = 0;
    int old_reps = 0;
    for (int r = 0; r < reps; r++) {
        new_ns[r] = one_pass(w, 1, &new_placed, &new_digest);
        if (old_reps == 0 || (double)old_ns[old_reps - 1] / 1e9 < old_max_s)
            old_ns[old_reps++] = one_pass(w, 0, &old_placed, &old_digest);
    }
    qsort(new_ns, (size_t)reps, sizeof(new_ns[0]), cmp_u64);
    qsort(old_ns, (size_t)old_reps, sizeof(old_ns[0]), cmp_u64);
    double o = (double)old_ns[old_reps / 2] / 1e6, n = (double)new_ns[reps / 2] / 1e6;
    bool same = old_placed == new_placed && old_digest == new_digest;
    if (!same)
        failures++;
    printf("%-10s nodes=%zu tasks=%zu pending=%zu: old %.3f ms CPU (median of %d), new %.3f ms "
           "(median of %d), %.0fx; placed %zu / %zu (%s)\n",
           name, w->fsm.n_nodes, w->fsm.n_tasks, rd_fsm_pending_count(&w->fsm), o, old_reps, n,
           reps, n > 0 ? o / n : 0.0, old_placed, new_placed,
           same ? "the same placements" : "DIFFERENT placements");
    fflush(stdout);
}

/* ---- the rebalancing pass ------------------------------------------------- */

/* One rebalancing pass (rd_sched__rebalance) from a fresh leadership's
 * state (nothing moved, a full bucket, no quiet time): its CPU time in ns;
 * `moved` gets the moves it decided (proposed for queued tasks, held for
 * their next checkpoint for running ones) and `digest` hashes them: the
 * proposals in order and the slots the pass added to each node (where the
 * held ones go). With `cooling`, every task was moved lately (noted before
 * the timing): nothing may move. */
static uint64_t rb_pass(struct world *w, bool cooling, size_t *moved, uint64_t *digest)
{
    const struct rd_fsm *f = &w->fsm;
    struct rd_sched *s = &w->s;
    rd_sched__rebalance_stop(s);
    s->rb_tokens_ns = 0;
    s->rb_quiet_until_ns = s->rb_backoff_until_ns = s->rb_changed_ns = 0;
    if (cooling)
        for (size_t i = 0; i < f->n_tasks; i++)
            rd_sched__note_moved(s, f->tasks[i]->id);
    uint32_t *extra = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*extra));
    if (extra == NULL)
        exit(2);
    rd_sched__labels_reset(s);
    uint64_t t0 = cpu_ns();
    rd_sched__rebalance(s, extra);
    uint64_t ns = cpu_ns() - t0;
    uint64_t h = RD_FNV_INIT;
    *moved = s->rb_pending.len;
    for (size_t i = 0; i < w->log.n; i++) {
        if (w->log.q[i].task[0] == '\0')
            continue;
        h = rd_fnv1a(h, w->log.q[i].task, strlen(w->log.q[i].task));
        h = rd_fnv1a(h, w->log.q[i].node, strlen(w->log.q[i].node));
        (*moved)++;
    }
    for (size_t i = 0; i < f->n_nodes; i++)
        if (extra[i] != 0) {
            h = rd_fnv1a(h, (const char *)&i, sizeof(i));
            h = rd_fnv1a(h, (const char *)&extra[i], sizeof(extra[i]));
        }
    *digest = h;
    refuse_all(&w->log);
    rd_sched__labels_reset(s);
    free(extra);
    return ns;
}

static void rb_case(const char *name, struct world *w, int reps, bool cooling)
{
    uint64_t ns[64], digest = 0, first = 0;
    size_t moved = 0;
    bool stable = true;
    for (int r = 0; r < reps; r++) {
        ns[r] = rb_pass(w, cooling, &moved, &digest);
        if (r == 0)
            first = digest;
        stable = stable && digest == first;
    }
    if (!stable)
        failures++;
    qsort(ns, (size_t)reps, sizeof(ns[0]), cmp_u64);
    printf("%-16s nodes=%zu tasks=%zu moves_per_minute=%u: %.3f ms CPU (median of %d, min "
           "%.3f, max %.3f); %zu moves, digest %016llx%s\n",
           name, w->fsm.n_nodes, w->fsm.n_tasks, w->cfg.fault_tolerance.rebalance.moves_per_minute,
           (double)ns[reps / 2] / 1e6, reps, (double)ns[0] / 1e6, (double)ns[reps - 1] / 1e6, moved,
           (unsigned long long)digest, stable ? "" : " (DIFFERENT moves between passes)");
    fflush(stdout);
}

/* 32 slots an agent (the storm's), every task placed (a third of them
 * queued, the rest running) over the first `busy` agents round robin. */
static void rb_world(struct world *w, size_t nodes, size_t tasks, size_t busy)
{
    world_init(w, nodes, 32);
    w->cfg.fault_tolerance.rebalance.settle_ms = 0; /* each pass may plan */
    for (size_t i = 0; i < tasks; i++) {
        char id[40];
        snprintf(id, sizeof(id), "%s", submit(w, i));
        place_as(w, id, i % busy, i % 3 == 0 ? RD_TASK_ASSIGNED : RD_TASK_RUNNING);
    }
}

static void rebalance_cases(struct world *w, size_t nodes, size_t tasks, int reps)
{
    /* Even: nothing to balance (every pass of a steady fleet). */
    rb_world(w, nodes, tasks, nodes);
    rb_case("rb-steady", w, reps, false);
    world_close(w);
    /* A fifth of the agents joined empty (or came back after a storm). */
    rb_world(w, nodes, tasks, nodes - nodes / 5);
    rb_case("rb-joined", w, reps, false);
    w->cfg.fault_tolerance.rebalance.moves_per_minute = 6000;
    rb_case("rb-joined-1000", w, reps, false);
    w->cfg.fault_tolerance.rebalance.moves_per_minute = 60;
    /* The same, every task moved lately: nothing may move. */
    rb_case("rb-cooling", w, reps, true);
    world_close(w);
}

/* ---- the passes that call the policies with the whole view --------------- */

static void load_policies(struct world *w, const char *dir)
{
    char err[RD_POLICY_ERRLEN];
    if (rd_policy_load(dir, 50, (size_t)64 << 20, &w->policy, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench: loading %s: %s\n", dir, err);
        exit(2);
    }
}

/* One recovery pass: its CPU time; the moves it proposed, counted and hashed. */
static uint64_t recover_pass(struct world *w, size_t *moved, uint64_t *digest)
{
    const struct rd_fsm *f = &w->fsm;
    uint32_t *extra = calloc(f->n_nodes ? f->n_nodes : 1, sizeof(*extra));
    if (extra == NULL)
        exit(2);
    rd_sched__labels_reset(&w->s);
    uint64_t t0 = cpu_ns();
    rd_sched__recover(&w->s, extra);
    uint64_t ns = cpu_ns() - t0;
    uint64_t h = RD_FNV_INIT;
    *moved = 0;
    for (size_t i = 0; i < w->log.n; i++) {
        if (w->log.q[i].task[0] == '\0')
            continue;
        h = rd_fnv1a(h, w->log.q[i].task, strlen(w->log.q[i].task));
        h = rd_fnv1a(h, w->log.q[i].node, strlen(w->log.q[i].node));
        (*moved)++;
    }
    *digest = h;
    refuse_all(&w->log);
    rd_sched__labels_reset(&w->s);
    free(extra);
    return ns;
}

static void recover_case(const char *name, struct world *w, int reps)
{
    uint64_t ns[64], digest = 0, first = 0;
    size_t moved = 0;
    bool stable = true;
    for (int r = 0; r < reps; r++) {
        ns[r] = recover_pass(w, &moved, &digest);
        if (r == 0)
            first = digest;
        stable = stable && digest == first;
    }
    if (!stable || w->s.policy_errors_total != 0)
        failures++;
    qsort(ns, (size_t)reps, sizeof(ns[0]), cmp_u64);
    printf("%-16s nodes=%zu tasks=%zu policies=%s: %.3f ms CPU (median of %d, min %.3f, max "
           "%.3f); %zu moves, digest %016llx%s%s\n",
           name, w->fsm.n_nodes, w->fsm.n_tasks, w->policy ? "shipped" : "none (built-in)",
           (double)ns[reps / 2] / 1e6, reps, (double)ns[0] / 1e6, (double)ns[reps - 1] / 1e6, moved,
           (unsigned long long)digest, stable ? "" : " (DIFFERENT moves between passes)",
           w->s.policy_errors_total ? " (POLICY ERRORS)" : "");
    fflush(stdout);
}

/* `lost` agents failed, each with the tasks placed on it, a run open for each. */
static void recover_world(struct world *w, size_t nodes, size_t tasks, size_t lost)
{
    world_init(w, nodes, 32);
    for (size_t i = 0; i < tasks; i++) {
        char id[40];
        snprintf(id, sizeof(id), "%s", submit(w, i));
        place(w, id, i % nodes);
    }
    for (size_t k = 0; k < lost; k++) {
        size_t i = k * (nodes / lost);
        fail_node(w, i);
        char node[32], run[40];
        node_id(node, sizeof(node), i);
        snprintf(run, sizeof(run), "00000000-0000-4000-8000-%012zu", k);
        struct rd_cmd c = {.type = RD_CMD_RECOVERY_OPEN};
        c.u.ropen.id = RD_STR(run);
        c.u.ropen.node_id = RD_STR(node);
        c.u.ropen.strategy = RD_STR("");
        c.u.ropen.reason = RD_STR("node_failed");
        apply(w, c);
    }
}

static void policy_cases(struct world *w, size_t nodes, size_t tasks, int reps, const char *dir)
{
    static const size_t lost[] = {1, 20};
    for (size_t i = 0; i < RD_ARRAY_SIZE(lost); i++) {
        char name[32];
        recover_world(w, nodes, tasks, lost[i]);
        snprintf(name, sizeof(name), "recover-%zu", lost[i]);
        recover_case(name, w, reps);
        load_policies(w, dir);
        recover_case(name, w, reps);
        rd_policy_free(w->policy);
        w->policy = NULL;
        world_close(w);
    }
    rb_world(w, nodes, tasks, nodes - nodes / 5);
    load_policies(w, dir);
    rb_case("rb-hook", w, reps, false);
    if (w->s.rb_policy_errors != 0) {
        printf("rb-hook: %llu policy errors\n", (unsigned long long)w->s.rb_policy_errors);
        failures++;
    }
    rd_policy_free(w->policy);
    w->policy = NULL;
    world_close(w);
}

int main(int argc, char **argv)
{
    size_t nodes = 10000, tasks = 100000;
    int reps = 5;
    double old_max_s = 30;
    const char *pass = "all", *policies = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--nodes") == 0)
            nodes = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--tasks") == 0)
            tasks = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--old-max-s") == 0)
            old_max_s = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--pass") == 0)
            pass = argv[i + 1];
        else if (strcmp(argv[i], "--policies") == 0)
            policies = argv[i + 1];
        else {
            fprintf(stderr, "usage: bench_placement [--nodes N] [--tasks N] [--reps N] "
                            "[--old-max-s S] [--pass placement|rebalance|policy|all] "
                            "[--policies DIR]\n");
            return 2;
        }
    }
    if (nodes == 0 || tasks == 0 || reps < 1 || reps > 64) {
        fprintf(stderr, "bench_placement: nodes and tasks at least 1, reps 1 to 64\n");
        return 2;
    }
    rd_log_set_level(RD_LOG_ERROR);
    /* Enough slots for every task and a third more. */
    uint32_t slots = (uint32_t)((tasks * 4 / 3 + nodes - 1) / nodes);
    struct world *w = malloc(sizeof(*w));
    if (w == NULL)
        return 2;
    if (strcmp(pass, "policy") == 0) {
        if (policies == NULL) {
            fprintf(stderr, "bench_placement: --pass policy needs --policies DIR\n");
            free(w);
            return 2;
        }
        policy_cases(w, nodes, tasks, reps, policies);
        free(w);
        return failures ? 1 : 0;
    }
    if (strcmp(pass, "placement") != 0) {
        rebalance_cases(w, nodes, tasks, reps);
        if (strcmp(pass, "rebalance") == 0) {
            free(w);
            return failures ? 1 : 0;
        }
    }

    world_init(w, nodes, slots);
    for (size_t i = 0; i < tasks; i++)
        submit(w, i);
    run_case("initial", w, reps, old_max_s);
    /* Every task running, round robin. */
    for (size_t i = 0; i < w->fsm.n_tasks; i++) {
        char id[40];
        snprintf(id, sizeof(id), "%s", w->fsm.tasks[i]->id);
        place(w, id, i % nodes);
    }
    /* 100 of them back to pending. */
    for (size_t i = 0; i < 100 && i < w->fsm.n_tasks; i++)
        unplace(w, w->fsm.tasks[i * (w->fsm.n_tasks / 100 ? w->fsm.n_tasks / 100 : 1)]);
    run_case("trickle", w, reps, old_max_s);
    /* The storm: a fifth of the agents fail, their tasks wait to move. */
    for (size_t i = 0; i < nodes / 5; i++)
        fail_node(w, i * 5);
    for (size_t i = 0; i < w->fsm.n_tasks; i++) {
        const struct rd_task *t = w->fsm.tasks[i];
        if (t->state == RD_TASK_ASSIGNED &&
            rd_fsm_node(&w->fsm, t->node_id, strlen(t->node_id))->state == RD_NODE_FAILED)
            unplace(w, t);
    }
    run_case("storm", w, reps, old_max_s);
    world_close(w);

    /* Saturated: every slot taken, a fifth more waiting. */
    world_init(w, nodes, (uint32_t)((tasks + nodes - 1) / nodes));
    size_t full = (size_t)w->fsm.nodes[0]->slots * nodes;
    for (size_t i = 0; i < full + full / 5; i++) {
        const char *id = submit(w, i);
        if (i < full)
            place(w, id, i % nodes);
    }
    run_case("saturated", w, reps, old_max_s);
    world_close(w);
    free(w);
    return failures ? 1 : 0;
}
