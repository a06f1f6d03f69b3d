/*
 * Helpers for the state machine's unit tests beyond tests/lib/fsm_cmds.h:
 * applying a command and taking its verdict, and builders for the commands
 * that file lacks (recovery runs, moves that belong to a run, a fully
 * specified registration, replica URLs, backups, the archive position, the
 * cluster id, consistency checks, checkpoint repairs). They could join fsm_cmds.h; they live beside
 * the tests that use them until the test tree settles (issue 10).
 */
#ifndef RD_TEST_FSM_TEST_H
#define RD_TEST_FSM_TEST_H

#include "cmocka_all.h"

#include <stdio.h>

#include "fsm/fsm.h"
#include "fsm_cmds.h"

/* Applies `w` (then frees it) and returns the machine's verdict. */
static inline const struct rd_fsm_result *apply(struct rd_fsm *f, struct rd_wbuf w)
{
    const struct rd_fsm_result *res = NULL;
    assert_int_equal(rd_fsm_apply(f, w.p, w.len, &res), 0);
    rd_w_free(&w);
    return res;
}

static inline struct rd_wbuf fsm_encode(const struct rd_cmd *c)
{
    struct rd_wbuf w;
    rd_w_init(&w);
    assert_int_equal(rd_cmd_encode(c, &w), 0);
    return w;
}

/* Encodes the commands (freeing them) as one batch entry (cmd.h format 3). */
static inline struct rd_wbuf fsm_batch_of(struct rd_wbuf *cmds, unsigned n)
{
    int64_t newest = 0;
    for (unsigned i = 0; i < n; i++) {
        struct rd_cmd c;
        if (rd_cmd_decode(cmds[i].p, cmds[i].len, &c) == 0 && c.time_ms > newest)
            newest = c.time_ms;
    }
    struct rd_wbuf w;
    rd_w_init(&w);
    rd_cmd_batch_begin(&w, n, newest);
    for (unsigned i = 0; i < n; i++) {
        rd_cmd_batch_add(&w, cmds[i].p, cmds[i].len);
        rd_w_free(&cmds[i]);
    }
    assert_int_equal(w.err, 0);
    return w;
}

/* Snapshots `f`, restores it into a fresh machine `g` and checks they
 * agree. */
static inline void round_trip(const struct rd_fsm *f, struct rd_fsm *g)
{
    struct rd_wbuf snap;
    rd_w_init(&snap);
    assert_int_equal(rd_fsm_snapshot(f, &snap), 0);
    rd_fsm_init(g);
    assert_int_equal(rd_fsm_restore(g, snap.p, snap.len), 0);
    rd_w_free(&snap);
    assert_true(rd_fsm_digest(f) == rd_fsm_digest(g));
    assert_true(rd_fsm_digest_full(g) == rd_fsm_digest(g));
}

/* Registers `n` agents in a scrambled order, a third of them then suspect or
 * left: a state of some size for the snapshot tests. */
static inline void fill(struct rd_fsm *f, int n)
{
    char id[32];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "node-%04d", (i * 7919) % n);
        apply(f, cmd_register(id, (uint32_t)(i % 16 + 1), 1000 + i));
        if (i % 3 == 0)
            apply(f, cmd_transition(id, 0, i % 2 ? RD_NODE_SUSPECT : RD_NODE_LEFT, 2000 + i));
    }
}

/* A registration with every field given. */
static inline struct rd_wbuf cmd_register_full(const char *id, uint32_t slots, const char *labels,
                                               const char *health_url, const char *address,
                                               int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_NODE_REGISTER, .time_ms = t};
    c.u.reg.node_id = RD_STR(id);
    c.u.reg.slots = slots;
    c.u.reg.labels_json = RD_STR(labels);
    c.u.reg.health_url = RD_STR(health_url);
    c.u.reg.address = RD_STR(address);
    return fsm_encode(&c);
}

static inline struct rd_wbuf cmd_recovery_open(const char *id, const char *node,
                                               const char *strategy, const char *reason, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_RECOVERY_OPEN, .time_ms = t};
    c.u.ropen.id = RD_STR(id);
    c.u.ropen.node_id = RD_STR(node);
    c.u.ropen.strategy = RD_STR(strategy);
    c.u.ropen.reason = RD_STR(reason);
    return fsm_encode(&c);
}

static inline struct rd_wbuf cmd_recovery_close(const char *id, int status, const char *strategy,
                                                int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_RECOVERY_CLOSE, .time_ms = t};
    c.u.rclose.id = RD_STR(id);
    c.u.rclose.status = (uint8_t)status;
    c.u.rclose.strategy = RD_STR(strategy);
    return fsm_encode(&c);
}

/*
 * A move that belongs to recovery run `run` as task_recovery record `item`:
 * to `node` (RECOVERING) or, with node "", back to pending (`note` says why,
 * "" for the machine's default text).
 */
static inline struct rd_wbuf cmd_recovery_move(const char *task, uint32_t attempt, const char *node,
                                               uint64_t epoch, const char *run, const char *item,
                                               const char *strategy, const char *note, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_TASK_ASSIGN, .time_ms = t};
    c.u.tassign.task_id = RD_STR(task);
    c.u.tassign.attempt = attempt;
    c.u.tassign.node_id = RD_STR(node);
    c.u.tassign.node_epoch = epoch;
    c.u.tassign.state = RD_TASK_RECOVERING;
    c.u.tassign.recovery_id = RD_STR(run);
    c.u.tassign.item_id = RD_STR(item);
    c.u.tassign.strategy = RD_STR(strategy);
    c.u.tassign.note = RD_STR(note);
    return fsm_encode(&c);
}

/* Backup records: BEGIN on `target`. */
static inline struct rd_wbuf cmd_backup_begin(const char *id, const char *target, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_BACKUP, .time_ms = t};
    c.u.backup.op = RD_BACKUP_OP_BEGIN;
    c.u.backup.id = RD_STR(id);
    c.u.backup.target = RD_STR(target);
    c.u.backup.error = RD_STR("");
    return fsm_encode(&c);
}

/* COMPLETE: the image at `index`/`term`, its size, checksum and digest. */
static inline struct rd_wbuf cmd_backup_complete(const char *id, uint64_t index, uint64_t term,
                                                 uint64_t size, uint64_t checksum, uint64_t digest,
                                                 int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_BACKUP, .time_ms = t};
    c.u.backup.op = RD_BACKUP_OP_COMPLETE;
    c.u.backup.id = RD_STR(id);
    c.u.backup.target = RD_STR("");
    c.u.backup.index = index;
    c.u.backup.term = term;
    c.u.backup.size = size;
    c.u.backup.checksum = checksum;
    c.u.backup.digest = digest;
    c.u.backup.error = RD_STR("");
    return fsm_encode(&c);
}

/* FAIL, VERIFY (`ok`, `error`) and REMOVE. */
static inline struct rd_wbuf cmd_backup_op(int op, const char *id, int ok, const char *error,
                                           int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_BACKUP, .time_ms = t};
    c.u.backup.op = (uint8_t)op;
    c.u.backup.id = RD_STR(id);
    c.u.backup.target = RD_STR("");
    c.u.backup.ok = (uint8_t)ok;
    c.u.backup.error = RD_STR(error);
    return fsm_encode(&c);
}

static inline struct rd_wbuf cmd_archive(const char *target, uint64_t index, const char *object,
                                         int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_ARCHIVE, .time_ms = t};
    c.u.archive.target = RD_STR(target);
    c.u.archive.index = index;
    c.u.archive.object = RD_STR(object);
    return fsm_encode(&c);
}

static inline struct rd_wbuf cmd_records_export(int enabled, uint64_t index, uint64_t max_retained,
                                                int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_RECORDS_EXPORT, .time_ms = t};
    c.u.rexport.enabled = (uint8_t)enabled;
    c.u.rexport.index = index;
    c.u.rexport.max_retained = max_retained;
    return fsm_encode(&c);
}

static inline struct rd_wbuf cmd_cluster_id(const char *id, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_CLUSTER_ID, .time_ms = t};
    c.u.cid.id = RD_STR(id);
    return fsm_encode(&c);
}

static inline struct rd_wbuf cmd_check(const char *id, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_CHECK, .time_ms = t};
    c.u.check.id = RD_STR(id);
    return fsm_encode(&c);
}

static inline struct rd_wbuf cmd_check_result(const char *id, int status, const char *digests,
                                              const char *diverged, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_CHECK_RESULT, .time_ms = t};
    c.u.cresult.id = RD_STR(id);
    c.u.cresult.status = (uint8_t)status;
    c.u.cresult.digests_json = RD_STR(digests);
    c.u.cresult.diverged_json = RD_STR(diverged);
    return fsm_encode(&c);
}

/* A checkpoint repair that keeps held `version` (newer ones go). */
static inline struct rd_wbuf cmd_ckpt_keep(const char *task, uint64_t bad, uint64_t version,
                                           const char *fault_id, int64_t t)
{
    char source[32];
    snprintf(source, sizeof(source), "version %llu", (unsigned long long)version);
    struct rd_cmd c = {.type = RD_CMD_CHECKPOINT_RESTORE, .time_ms = t};
    c.u.crestore.task_id = RD_STR(task);
    c.u.crestore.bad_version = bad;
    c.u.crestore.version = version;
    c.u.crestore.data_json = RD_STR("");
    c.u.crestore.source = RD_STR(source);
    c.u.crestore.fault_id = RD_STR(fault_id);
    return fsm_encode(&c);
}

/* A checkpoint repair that puts `version` back as backup `backup` held it. */
static inline struct rd_wbuf cmd_ckpt_from_backup(const char *task, uint64_t bad, uint64_t version,
                                                  int64_t at, const char *data, const char *backup,
                                                  const char *fault_id, int64_t t)
{
    char source[96];
    snprintf(source, sizeof(source), "backup %s", backup);
    struct rd_cmd c = {.type = RD_CMD_CHECKPOINT_RESTORE, .time_ms = t};
    c.u.crestore.task_id = RD_STR(task);
    c.u.crestore.bad_version = bad;
    c.u.crestore.version = version;
    c.u.crestore.from_backup = 1;
    c.u.crestore.at = at;
    c.u.crestore.checksum = rd_fnv1a(RD_FNV_INIT, data, strlen(data));
    c.u.crestore.data_json = RD_STR(data);
    c.u.crestore.source = RD_STR(source);
    c.u.crestore.fault_id = RD_STR(fault_id);
    return fsm_encode(&c);
}

/* A replica's API URL ("" forgets the replica). */
static inline struct rd_wbuf cmd_replica_info(uint64_t id, const char *url, int64_t t)
{
    struct rd_cmd c = {.type = RD_CMD_REPLICA_INFO, .time_ms = t};
    c.u.rinfo.id = id;
    c.u.rinfo.api_url = RD_STR(url);
    return fsm_encode(&c);
}

#endif
