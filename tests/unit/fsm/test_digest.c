/*
 * The incremental digest (engine/fsm/digest.c) against a full
 * recomputation: thousands of random commands of every type, valid and
 * refused (stale epochs, wrong attempts, stale checkpoint versions with
 * retention, duplicate ids, verdicts twice, archive positions going back,
 * checkpoint repairs of versions held, gone or moved on, unreadable bytes),
 * and after every single apply rd_fsm_digest() must equal
 * rd_fsm_digest_full(). Every few hundred commands the machine is
 * snapshotted and restored into a second one that then applies the same
 * commands: both must agree all along. The caps (faults, recovery runs) are
 * driven past their limits in their own tests.
 *
 * RD_DIGEST_STEPS in the environment sets the commands per seed (default
 * 4000); a failure names the seed and the step.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"
#include "fsm_test.h"
#include "recoveryd/error.h"

/* splitmix64: a small deterministic generator (the seed names the run). */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static unsigned pick(unsigned n)
{
    return (unsigned)(rnd() % n);
}
static bool chance(unsigned percent)
{
    return pick(100) < percent;
}

#define N_NODES   10
#define N_TASKS   40
#define N_FAULTS  60
#define N_RUNS    12
#define N_BACKUPS 24
#define N_CHECKS  24

static char node_ids[N_NODES][16], task_ids[N_TASKS][40], fault_ids[N_FAULTS][40],
    run_ids[N_RUNS][40], backup_ids[N_BACKUPS][40], check_ids[N_CHECKS][40];

static void make_ids(void)
{
    for (int i = 0; i < N_NODES; i++)
        snprintf(node_ids[i], sizeof(node_ids[i]), "node-%02d", i);
    for (int i = 0; i < N_TASKS; i++)
        snprintf(task_ids[i], sizeof(task_ids[i]), "7a5k%04d-0000-4000-8000-000000000000", i);
    for (int i = 0; i < N_FAULTS; i++)
        snprintf(fault_ids[i], sizeof(fault_ids[i]), "fa17%04d-0000-4000-8000-000000000000", i);
    for (int i = 0; i < N_RUNS; i++)
        snprintf(run_ids[i], sizeof(run_ids[i]), "7e40%04d-0000-4000-8000-000000000000", i);
    for (int i = 0; i < N_BACKUPS; i++)
        snprintf(backup_ids[i], sizeof(backup_ids[i]), "bac0%04d-0000-4000-8000-000000000000", i);
    for (int i = 0; i < N_CHECKS; i++)
        snprintf(check_ids[i], sizeof(check_ids[i]), "c4ec%04d-0000-4000-8000-000000000000", i);
}

static const char *any_node(void)
{
    return node_ids[pick(N_NODES)];
}

/* The node's epoch most of the time, else 0 (operator) or a stale one. */
static uint64_t epoch_for(const struct rd_fsm *f, const char *node)
{
    const struct rd_node *n = rd_fsm_node(f, node, strlen(node));
    uint64_t e = n ? n->epoch : 1;
    unsigned c = pick(10);
    if (c < 7)
        return e;
    if (c < 8)
        return 0;
    return e > 1 && chance(50) ? e - 1 : e + 1;
}

/* The task's attempt most of the time, else a wrong one. */
static uint32_t attempt_for(const struct rd_fsm *f, const char *task)
{
    const struct rd_task *t = rd_fsm_task(f, task);
    uint32_t a = t ? t->attempt : 0;
    return chance(80) ? a : a + 1 + pick(3);
}

static char scratch[8][160];
static const char *text(int slot, const char *prefix)
{
    snprintf(scratch[slot], sizeof(scratch[slot]), "%s-%u", prefix, pick(1000));
    return scratch[slot];
}

static const char *json(int slot)
{
    snprintf(scratch[slot], sizeof(scratch[slot]), "{\"k\":%u,\"zone\":\"%c\"}", pick(50),
             'a' + pick(4));
    return scratch[slot];
}

/* RD_STR evaluates its argument twice: once here, for arguments that draw
 * random numbers. */
static struct rd_str S(const char *s) {
    return RD_STR(s);
}

/* One random command, encoded, with the state of `f` to aim at. */
static struct rd_wbuf
random_command(const struct rd_fsm *f, int64_t t)
{
    struct rd_cmd c = {.time_ms = t};
    const char *node = any_node();
    const char *task = task_ids[pick(N_TASKS)];
    switch (pick(28)) {
    case 0:
        c.type = RD_CMD_NOOP;
        break;
    case 1:
    case 2:
        c.type = RD_CMD_NODE_REGISTER;
        c.u.reg.node_id = S(node);
        c.u.reg.slots = 1 + pick(4);
        c.u.reg.labels_json = S(json(0));
        c.u.reg.health_url = S(chance(50) ? "" : text(1, "http://h"));
        c.u.reg.address = S(chance(50) ? "" : text(2, "10.0.0"));
        break;
    case 3:
    case 4:
        c.type = RD_CMD_NODE_TRANSITION;
        c.u.trans.node_id = S(node);
        c.u.trans.epoch = epoch_for(f, node);
        c.u.trans.state = (uint8_t)pick(RD_NODE_STATE_COUNT);
        c.u.trans.reason = S(text(0, "why"));
        c.u.trans.from_state = chance(70) ? RD_STATE_ANY : (uint8_t)pick(RD_NODE_STATE_COUNT);
        c.u.trans.resolve_faults = (uint8_t)chance(40);
        break;
    case 5:
    case 6: {
        c.type = RD_CMD_FAULT_OPEN;
        c.u.fopen.id = S(fault_ids[pick(N_FAULTS)]);
        c.u.fopen.node_id = S(chance(15) ? "" : node);
        c.u.fopen.fault_type = (uint8_t)pick(RD_FAULT_TYPE_COUNT);
        c.u.fopen.severity = (uint8_t)pick(RD_SEV_COUNT);
        c.u.fopen.metadata_json = S(json(0));
        c.u.fopen.recovery_action_json = S("null");
        c.u.fopen.set_state = chance(50) ? RD_STATE_ANY : (uint8_t)pick(RD_NODE_STATE_COUNT);
        c.u.fopen.epoch = epoch_for(f, node);
        c.u.fopen.from_state = chance(80) ? RD_STATE_ANY : (uint8_t)pick(RD_NODE_STATE_COUNT);
        c.u.fopen.task_id = S(chance(20) ? task : "");
        c.u.fopen.task_attempt = attempt_for(f, task);
        break;
    }
    case 7:
        c.type = RD_CMD_FAULT_RESOLVE;
        c.u.fresolve.id = S(chance(25) ? "" : fault_ids[pick(N_FAULTS)]);
        c.u.fresolve.node_id = S(node);
        c.u.fresolve.note = S(text(0, "note"));
        break;
    case 8:
        c.type = RD_CMD_TASK_SUBMIT;
        c.u.tsubmit.task_id = S(task);
        c.u.tsubmit.priority = (uint8_t)pick(10);
        c.u.tsubmit.critical = (uint8_t)chance(20);
        c.u.tsubmit.slots = 1 + pick(2);
        c.u.tsubmit.labels_json = S("{}");
        c.u.tsubmit.payload_json = S(json(0));
        c.u.tsubmit.max_attempts = pick(5);
        c.u.tsubmit.deadline_ms = chance(30) ? t + (int64_t)pick(100) : 0;
        break;
    case 9:
    case 10: {
        c.type = RD_CMD_TASK_ASSIGN;
        c.u.tassign.task_id = S(task);
        c.u.tassign.attempt = attempt_for(f, task);
        bool none = chance(20);
        c.u.tassign.node_id = S(none ? "" : node);
        c.u.tassign.node_epoch = none ? 0 : epoch_for(f, node);
        c.u.tassign.state = chance(30)   ? RD_TASK_RECOVERING
                            : chance(10) ? RD_TASK_PAUSED
                                         : RD_TASK_ASSIGNED;
        bool in_run = chance(30);
        c.u.tassign.recovery_id = S(in_run ? run_ids[pick(N_RUNS)] : "");
        c.u.tassign.item_id = S(in_run ? text(1, "item") : "");
        c.u.tassign.strategy = S(chance(50) ? "" : "safe_recovery");
        c.u.tassign.note = S(chance(50) ? "" : "no room");
        break;
    }
    case 11:
    case 12: {
        c.type = RD_CMD_TASK_CHECKPOINT;
        const struct rd_task *tk = rd_fsm_task(f, task);
        const struct rd_checkpoint *last = tk ? rd_task_checkpoint(tk) : NULL;
        uint64_t v = last ? last->version : 0;
        c.u.tckpt.task_id = S(task);
        c.u.tckpt.attempt = attempt_for(f, task);
        c.u.tckpt.version = chance(85) ? v + 1 + pick(3) : (v > 0 ? v - pick(2) : 0);
        const char *data = json(0);
        c.u.tckpt.data_json = S(data);
        c.u.tckpt.checksum = rd_fnv1a(RD_FNV_INIT, data, strlen(data));
        c.u.tckpt.keep = (uint8_t)pick(6); /* 0 means 1 */
        break;
    }
    case 13: {
        static const uint8_t to[] = {RD_TASK_COMPLETED, RD_TASK_FAILED, RD_TASK_CANCELLED,
                                     RD_TASK_PAUSED, RD_TASK_PENDING};
        c.type = RD_CMD_TASK_FINISH;
        c.u.tfinish.task_id = S(task);
        c.u.tfinish.attempt = chance(15) ? 0 : attempt_for(f, task);
        c.u.tfinish.state = to[pick(5)];
        c.u.tfinish.result_json = S(json(0));
        break;
    }
    case 14:
        c.type = pick(2) ? RD_CMD_RECOVERY_OPEN : RD_CMD_RECOVERY_CLOSE;
        if (c.type == RD_CMD_RECOVERY_OPEN) {
            c.u.ropen.id = S(run_ids[pick(N_RUNS)]);
            c.u.ropen.node_id = S(node);
            c.u.ropen.strategy = S(chance(50) ? "" : "fast_recovery");
            c.u.ropen.reason = S(text(0, "reason"));
        } else {
            c.u.rclose.id = S(run_ids[pick(N_RUNS)]);
            c.u.rclose.status = (uint8_t)(RD_REC_SUCCEEDED + pick(3));
            c.u.rclose.strategy = S(chance(50) ? "" : "degraded_service");
        }
        break;
    case 15:
        c.type = RD_CMD_REPLICA_INFO;
        c.u.rinfo.id = 1 + pick(20);
        c.u.rinfo.api_url = S(chance(25) ? "" : text(0, "http://replica"));
        break;
    case 16:
    case 17: {
        c.type = RD_CMD_BACKUP;
        c.u.backup.op = (uint8_t)pick(RD_BACKUP_OP_COUNT);
        c.u.backup.id = S(backup_ids[pick(N_BACKUPS)]);
        c.u.backup.target = S(chance(50) ? "file" : "s3");
        c.u.backup.index = rnd() % 100000;
        c.u.backup.term = 1 + pick(5);
        c.u.backup.size = rnd() % 1000000;
        c.u.backup.checksum = rnd();
        c.u.backup.digest = rnd();
        c.u.backup.ok = (uint8_t)chance(70);
        c.u.backup.error = S(chance(50) ? "" : text(0, "error"));
        break;
    }
    case 18: {
        c.type = RD_CMD_ARCHIVE;
        uint64_t at = f->archive.index;
        c.u.archive.target = S(chance(80) ? "s3" : "file");
        c.u.archive.index = chance(80) ? at + pick(100) : (at > 10 ? at - 1 - pick(10) : 0);
        c.u.archive.object = S(text(0, "archive/seg"));
        break;
    }
    case 19:
        c.type = RD_CMD_CLUSTER_ID;
        c.u.cid.id = S(chance(70) ? "cluster-one" : "cluster-two");
        break;
    case 20:
        c.type = RD_CMD_CHECK;
        c.u.check.id = S(check_ids[pick(N_CHECKS)]);
        break;
    case 21:
        c.type = RD_CMD_CHECK_RESULT;
        c.u.cresult.id = S(check_ids[pick(N_CHECKS)]);
        c.u.cresult.status = (uint8_t)pick(RD_CHECK_STATUS_COUNT);
        c.u.cresult.digests_json = S(chance(20) ? "" : "{\"1\":\"0000000000000001\"}");
        c.u.cresult.diverged_json = S(chance(20) ? "" : "[]");
        break;
    case 22:
        c.type = RD_CMD_AUDIT; /* a record alone (its part below) */
        break;
    case 23:
        /* The export position: on or off, forward or (late) back. */
        c.type = RD_CMD_RECORDS_EXPORT;
        c.u.rexport.enabled = (uint8_t)chance(80);
        c.u.rexport.index = f->n_applied > 5 ? f->n_applied - pick(5) : 0;
        c.u.rexport.max_retained = chance(50) ? 0 : 1 + pick(50);
        break;
    case 24:
    case 25:
        /* Cancel, retry, or a prune of finished tasks (some long finished). */
        c.type = RD_CMD_TASK_LIFECYCLE;
        c.u.tlife.op = (uint8_t)pick(RD_TASK_OP_COUNT);
        c.u.tlife.task_id = S(c.u.tlife.op == RD_TASK_OP_PRUNE && chance(80) ? "" : task);
        c.u.tlife.reason = S(chance(50) ? "" : text(0, "why"));
        c.u.tlife.retention_ms = (int64_t)pick(200);
        c.u.tlife.max = pick(4);
        break;
    case 26: {
        /* A conflict (availability mode): mostly of an older attempt, now
         * and then of the live one or one never seen (refused); the same
         * write twice sometimes (its record answers). */
        static const char *const cids[] = {"cf-1", "cf-2", "cf-3", "cf-4", "cf-5", "cf-6"};
        static char cid[40];
        snprintf(cid, sizeof(cid), "%s-%u", cids[pick(6)], pick(50));
        const struct rd_task *tk = rd_fsm_task(f, task);
        uint32_t a = tk ? tk->attempt : 0;
        c.type = RD_CMD_CONFLICT;
        c.u.conflict.id = S(cid);
        c.u.conflict.task_id = S(task);
        c.u.conflict.attempt = chance(75) && a > 1 ? 1 + pick(a - 1) : a + pick(2);
        c.u.conflict.kind = (uint8_t)pick(RD_CONFLICT_KIND_COUNT);
        const struct rd_checkpoint *last = tk ? rd_task_checkpoint(tk) : NULL;
        c.u.conflict.version = c.u.conflict.kind != RD_CONFLICT_CHECKPOINT ? 0
                               : last && chance(30)                        ? last->version
                                                    : 1 + pick(8) + (last ? last->version : 0);
        const char *data = json(0);
        c.u.conflict.data_json = S(data);
        c.u.conflict.checksum = rd_fnv1a(RD_FNV_INIT, data, strlen(data));
        c.u.conflict.node_id = S(chance(70) ? node : "");
        c.u.conflict.resolution = (uint8_t)pick(RD_CONFLICT_RES_COUNT);
        c.u.conflict.resolved_by = (uint8_t)pick(2);
        c.u.conflict.reason = S(chance(50) ? "" : text(1, "why"));
        c.u.conflict.keep = (uint8_t)pick(5);
        break;
    }
    default: {
        /* A repair: mostly aimed at the newest version and a held older one
         * (or a backup's copy), now and then at what moved on or is gone;
         * sometimes settling a fault, open, resolved or unknown. */
        c.type = RD_CMD_CHECKPOINT_RESTORE;
        const struct rd_task *tk = rd_fsm_task(f, task);
        const struct rd_checkpoint *last = tk ? rd_task_checkpoint(tk) : NULL;
        uint64_t bad = last ? last->version : 1 + pick(3);
        if (bad == 0 || chance(15)) /* a version 0 (taken at first) is never repaired */
            bad += 1 + pick(2);
        c.u.crestore.task_id = S(task);
        c.u.crestore.bad_version = bad;
        c.u.crestore.from_backup = (uint8_t)chance(40);
        if (c.u.crestore.from_backup) {
            const char *data = json(0);
            c.u.crestore.version = bad - pick(bad < 3 ? (unsigned)bad : 3);
            c.u.crestore.at = t - (int64_t)pick(100);
            c.u.crestore.data_json = S(data);
            c.u.crestore.checksum = rd_fnv1a(RD_FNV_INIT, data, strlen(data));
        } else {
            uint64_t v = tk && tk->n_ckpts > 1 && chance(85)
                             ? tk->ckpts[pick(tk->n_ckpts - 1)].version
                         : bad > 1 ? bad - 1
                                   : 0;
            c.u.crestore.version = v ? v : 1;
            if (c.u.crestore.version >= bad)
                c.u.crestore.bad_version = c.u.crestore.version + 1;
            c.u.crestore.data_json = S("");
        }
        c.u.crestore.source = S(c.u.crestore.from_backup ? text(1, "backup") : "version 1");
        c.u.crestore.fault_id = S(chance(40) ? fault_ids[pick(N_FAULTS)] : "");
        break;
    }
    }
    /* Audit records: with a change (applied or refused) or alone, pruned
     * by count and by age now and then. */
    if (c.type == RD_CMD_AUDIT || chance(30)) {
        static char who[32], cause[32];
        snprintf(who, sizeof(who), "op-%u", pick(5));
        snprintf(cause, sizeof(cause), "run-%u", pick(1000));
        rd_cmd_audit_engine(&c, chance(50) ? "node_isolate" : "task_move", chance(50) ? node : task,
                            chance(50) ? "" : cause);
        c.audit.principal = S(chance(50) ? "recoveryd" : who);
        c.audit.role = (uint8_t)pick(5);
        c.audit.status = (uint16_t)(200 + pick(300));
        c.audit.keep = pick(40);
        c.audit.max_age_s = chance(90) ? 0 : 1 + pick(3);
    }
    struct rd_wbuf w;
    rd_w_init(&w);
    assert_int_equal(rd_cmd_encode(&c, &w), 0);
    /* Now and then bytes no replica can read (refused, nothing changes). */
    if (chance(1) && w.len > 1)
        w.p[chance(50) ? 0 : 1] = 0xee;
    return w;
}

/* Outcomes per command type: [type][0] applied, [type][1] refused. */
static unsigned outcomes[RD_CMD_TYPE_MAX][2];

static void step(struct rd_fsm *f, const struct rd_wbuf *w, uint64_t seed, int i)
{
    const struct rd_fsm_result *res;
    int rv = rd_fsm_apply(f, w->p, w->len, &res);
    if (rv == 0 && res->type < RD_CMD_TYPE_MAX)
        outcomes[res->type][res->status != 0]++;
    uint64_t inc = rd_fsm_digest(f), full = rd_fsm_digest_full(f);
    if (inc != full)
        fail_msg("seed %llu step %d (%s, status %d): incremental digest %016llx, full %016llx",
                 (unsigned long long)seed, i, rd_cmd_type_name(res->type), res->status,
                 (unsigned long long)inc, (unsigned long long)full);
}

static void restore_copy(const struct rd_fsm *from, struct rd_fsm *to)
{
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(from, &snap), 0);
    int rv = rd_fsm_restore(to, snap.p, snap.len);
    rd_w_free(&snap);
    if (rv != 0)
        fail_msg("restore: %s", to->errmsg);
    assert_true(rd_fsm_digest(to) == rd_fsm_digest_full(to));
    assert_true(rd_fsm_digest(to) == rd_fsm_digest(from));
}

/* `f` takes its records' new hashes after more than `f_pending` wait, its
 * restored shadow `g` after more than `g_pending` (0: after every command):
 * when the hashes are taken never changes a digest. */
static void run_seed(uint64_t seed, int steps, size_t f_pending, size_t g_pending)
{
    struct rd_fsm f, g;
    rd_fsm_init(&f);
    rd_fsm_init(&g);
    f.dg.pending_max = f_pending;
    g.dg.pending_max = g_pending;
    rng_state = seed;
    bool shadow = false;
    for (int i = 0; i < steps; i++) {
        struct rd_wbuf w = random_command(&f, 1000 + i * 7 + (int64_t)pick(5));
        step(&f, &w, seed, i);
        if (shadow) {
            step(&g, &w, seed, i);
            if (rd_fsm_digest(&g) != rd_fsm_digest(&f))
                fail_msg("seed %llu step %d: a restored machine diverged from its source",
                         (unsigned long long)seed, i);
        }
        rd_w_free(&w);
        if (i % 400 == 399) {
            restore_copy(&f, &g);
            shadow = true;
        }
    }
    /* The end state restores to the same digest, both ways computed. */
    restore_copy(&f, &g);
    rd_fsm_close(&f);
    rd_fsm_close(&g);
}

static void test_incremental_equals_full_under_random_commands(void **state)
{
    int steps = 4000;
    const char *env = getenv("RD_DIGEST_STEPS");
    if (env != NULL && atoi(env) > 0)
        steps = atoi(env);
    make_ids();
    memset(outcomes, 0, sizeof(outcomes));
    const uint64_t seeds[] = {1, 42, 20261202};
    for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
        run_seed(seeds[s], steps, 0, RD_DG_PENDING_MAX); /* eager, then lazy after restore */
        run_seed(seeds[s], steps, 5, 0);                 /* flushes often, from a full list */
    }
    /* The generator reached both sides of every command type. */
    for (int t = RD_CMD_NOOP; t < RD_CMD_TYPE_MAX; t++) {
        print_message("%-18s applied %5u refused %5u\n", rd_cmd_type_name(t), outcomes[t][0],
                      outcomes[t][1]);
        assert_true(outcomes[t][0] > 0);
        if (t != RD_CMD_NOOP && t != RD_CMD_REPLICA_INFO && t != RD_CMD_AUDIT &&
            t != RD_CMD_RECORDS_EXPORT)
            assert_true(outcomes[t][1] > 0);
    }
}

/* Resolved faults past RD_FSM_MAX_FAULTS are pruned in apply: the pruned
 * records leave the sums. */
static void test_digest_through_fault_pruning(void **state)
{
    struct rd_fsm f, g;
    rd_fsm_init(&f);
    rd_fsm_init(&g);
    apply(&f, cmd_register("n", 1, 1));
    char id[40];
    for (int i = 0; i < RD_FSM_MAX_FAULTS; i++) {
        snprintf(id, sizeof(id), "f-%06d", i);
        apply(&f, cmd_fault_open(id, "n", RD_FAULT_HANG, RD_SEV_MINOR, RD_STATE_ANY, 0, 10 + i));
        apply(&f, cmd_fault_resolve(id, "", 10 + i));
    }
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "g-%06d", i);
        assert_int_equal(apply(&f, cmd_fault_open(id, "n", RD_FAULT_HANG, RD_SEV_MINOR,
                                                  RD_STATE_ANY, 0, 100000 + i))
                             ->status,
                         0);
        assert_int_equal(f.n_faults, RD_FSM_MAX_FAULTS);
        assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    }
    assert_null(rd_fsm_fault(&f, "f-000002"));
    assert_non_null(rd_fsm_fault(&f, "f-000003"));
    restore_copy(&f, &g);
    rd_fsm_close(&f);
    rd_fsm_close(&g);
}

/* Finished recovery runs past RD_FSM_MAX_RECOVERIES are pruned. */
static void test_digest_through_recovery_pruning(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n", 1, 1));
    char id[40];
    for (int i = 0; i < RD_FSM_MAX_RECOVERIES + 3; i++) {
        snprintf(id, sizeof(id), "r-%06d", i);
        assert_int_equal(apply(&f, cmd_recovery_open(id, "n", "", "test", 10 + i))->status, 0);
        assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
        assert_int_equal(apply(&f, cmd_recovery_close(id, RD_REC_SUCCEEDED, "", 10 + i))->status,
                         0);
    }
    assert_int_equal(f.n_recoveries, RD_FSM_MAX_RECOVERIES);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

/* What the digest covers: each kind of change moves it, and equal states
 * built in different orders of independent records agree. */
static void test_digest_covers_every_kind(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    uint64_t seen[16];
    int n = 0;
    seen[n++] = rd_fsm_digest(&f);
    apply(&f, cmd_register("n", 1, 1));
    seen[n++] = rd_fsm_digest(&f);
    apply(&f, cmd_task_submit("t", 1, 0, 1, 3, 2));
    seen[n++] = rd_fsm_digest(&f);
    apply(&f, cmd_fault_open("x", "n", RD_FAULT_HANG, RD_SEV_MINOR, RD_STATE_ANY, 0, 3));
    seen[n++] = rd_fsm_digest(&f);
    apply(&f, cmd_recovery_open("r", "n", "", "why", 4));
    seen[n++] = rd_fsm_digest(&f);
    apply(&f, cmd_replica_info(1, "http://a:1", 5));
    seen[n++] = rd_fsm_digest(&f);
    apply(&f, cmd_backup_begin("b", "file", 6));
    seen[n++] = rd_fsm_digest(&f);
    apply(&f, cmd_archive("file", 3, "o", 7));
    seen[n++] = rd_fsm_digest(&f);
    apply(&f, cmd_cluster_id("c", 8));
    seen[n++] = rd_fsm_digest(&f);
    apply(&f, cmd_check("k", 9));
    seen[n++] = rd_fsm_digest(&f);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            assert_true(seen[i] != seen[j]);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));

    /* Two nodes registered in either order, at the same times: one state. */
    struct rd_fsm a, b;
    rd_fsm_init(&a);
    rd_fsm_init(&b);
    apply(&a, cmd_register("p", 1, 7));
    apply(&a, cmd_register("q", 1, 7));
    apply(&b, cmd_register("q", 1, 7));
    apply(&b, cmd_register("p", 1, 7));
    assert_true(rd_fsm_digest(&a) == rd_fsm_digest(&b));
    rd_fsm_close(&a);
    rd_fsm_close(&b);
    rd_fsm_close(&f);
}

static const struct rd_fsm *observed_fsm;
static int observed_calls, observed_mismatches;

static void digest_in_observer(void *data, const struct rd_fault *x)
{
    (void)data;
    (void)x;
    observed_calls++;
    observed_mismatches += rd_fsm_digest(observed_fsm) != rd_fsm_digest_full(observed_fsm);
}

/* Inside an apply (an observer: records touched, not yet committed) the
 * digest still describes the state as it is at that moment. */
static void test_digest_inside_an_apply(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    observed_fsm = &f;
    observed_calls = observed_mismatches = 0;
    f.on_fault = digest_in_observer;
    apply(&f, cmd_register("n", 1, 1));
    apply(&f, cmd_fault_open("x", "n", RD_FAULT_CRASH, RD_SEV_CRITICAL, RD_NODE_FAILED, 1, 2));
    apply(&f, cmd_fault_open("y", "n", RD_FAULT_HANG, RD_SEV_MINOR, RD_STATE_ANY, 0, 3));
    struct rd_cmd c = {.type = RD_CMD_NODE_TRANSITION, .time_ms = 4};
    c.u.trans.node_id = RD_STR("n");
    c.u.trans.state = RD_NODE_ALIVE;
    c.u.trans.reason = RD_STR("back");
    c.u.trans.from_state = RD_STATE_ANY;
    c.u.trans.resolve_faults = 1; /* resolves both: two observer calls */
    apply(&f, fsm_encode(&c));
    assert_int_equal(observed_calls, 4);
    assert_int_equal(observed_mismatches, 0);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

/* The pending list: a record changed again and again waits once; a machine
 * that takes its hashes late digests like one that takes them after every
 * command; past pending_max, and at an audit, the list is flushed. */
static void test_pending_hashes(void **state)
{
    struct rd_fsm lazy, eager;
    rd_fsm_init(&lazy);
    rd_fsm_init(&eager);
    eager.dg.pending_max = 0;
    struct rd_fsm *both[] = {&lazy, &eager};
    for (int m = 0; m < 2; m++) {
        struct rd_fsm *f = both[m];
        apply(f, cmd_register("n", 4, 1));
        apply(f, cmd_task_submit("t", 1, 0, 1, 3, 2));
        apply(f, cmd_task_assign("t", 0, "n", 1, 3));
        for (uint64_t v = 1; v <= 200; v++)
            assert_int_equal(
                apply(f, cmd_task_ckpt("t", 1, v, "{\"step\":1}", 3, 3 + (int64_t)v))->status, 0);
        assert_true(rd_fsm_digest(f) == rd_fsm_digest_full(f));
    }
    assert_true(rd_fsm_digest(&lazy) == rd_fsm_digest(&eager));
    assert_int_equal(eager.dg.n_touched, 0);
    assert_int_equal(lazy.dg.n_touched, 2); /* the node and the task, once each */

    /* New records join the list, changed ones wait once. (Records leaving
     * it from the middle: the audit records the random commands prune,
     * test_incremental_equals_full_under_random_commands.) */
    for (int m = 0; m < 2; m++) {
        struct rd_fsm *f = both[m];
        apply(f, cmd_fault_open("x", "n", RD_FAULT_HANG, RD_SEV_MINOR, RD_STATE_ANY, 0, 300));
        apply(f, cmd_fault_open("y", "n", RD_FAULT_HANG, RD_SEV_MINOR, RD_STATE_ANY, 0, 301));
        apply(f, cmd_fault_resolve("x", "", 302));
        assert_true(rd_fsm_digest(f) == rd_fsm_digest_full(f));
    }
    assert_true(rd_fsm_digest(&lazy) == rd_fsm_digest(&eager));

    /* Past pending_max the list is flushed at the end of the command. */
    lazy.dg.pending_max = 3;
    apply(&lazy, cmd_register("m", 1, 400));
    assert_int_equal(lazy.dg.n_touched, 0);
    apply(&eager, cmd_register("m", 1, 400));
    assert_true(rd_fsm_digest(&lazy) == rd_fsm_digest(&eager));
    assert_true(rd_fsm_digest(&lazy) == rd_fsm_digest_full(&lazy));

    /* The audit flushes first: nothing waits after it, nothing was wrong. */
    apply(&lazy, cmd_task_ckpt("t", 1, 201, "{}", 3, 401));
    assert_int_equal(lazy.dg.n_touched, 1);
    assert_int_equal(rd_fsm_digest_audit(&lazy), 0);
    assert_int_equal(lazy.dg.n_touched, 0);
    rd_fsm_close(&lazy);
    rd_fsm_close(&eager);
}

/* A record changed behind the digest's back (memory corruption, a bug in
 * apply) is invisible to the incremental digest until the audit (run at
 * every snapshot) recomputes it; then the digest covers it, so the next
 * consistency check compares the real state. An audit of a sound machine
 * changes nothing. */
static void test_audit_catches_a_silent_change(void **state)
{
    struct rd_fsm f;
    rd_fsm_init(&f);
    apply(&f, cmd_register("n1", 1, 1));
    apply(&f, cmd_register("n2", 1, 2));
    apply(&f, cmd_task_submit("t", 1, 0, 1, 3, 3));
    uint64_t sound = rd_fsm_digest(&f);
    assert_int_equal(rd_fsm_digest_audit(&f), 0);
    assert_true(rd_fsm_digest(&f) == sound);
    assert_int_equal(f.digest_audits, 1);

    struct rd_node *n = f.nodes[1];
    n->labels_json[0] ^= 0x01; /* "{" -> "z": nothing re-hashes it */
    assert_true(rd_fsm_digest(&f) == sound);
    assert_true(rd_fsm_digest_full(&f) != sound);
    assert_int_equal(rd_fsm_digest_audit(&f), 1);
    assert_int_equal(f.digest_audit_fixes, 1);
    assert_true(rd_fsm_digest(&f) != sound);
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    /* Applying goes on from the corrected digest. */
    apply(&f, cmd_register("n3", 1, 4));
    assert_true(rd_fsm_digest(&f) == rd_fsm_digest_full(&f));
    rd_fsm_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_catches_a_silent_change),
        cmocka_unit_test(test_incremental_equals_full_under_random_commands),
        cmocka_unit_test(test_digest_through_fault_pruning),
        cmocka_unit_test(test_digest_through_recovery_pruning),
        cmocka_unit_test(test_digest_covers_every_kind),
        cmocka_unit_test(test_digest_inside_an_apply),
        cmocka_unit_test(test_pending_hashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
