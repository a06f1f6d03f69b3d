/*
 * Checkpoint repair (recover/repair.c) on a fake log: the choice of source
 * (an older version, else the newest completed backups in order, else
 * nothing), the data_corruption fault it opens and the repair that resolves
 * it, one repair per task with the task held meanwhile, a repair that lost
 * the race to a newer checkpoint, and the sweep that settles faults and
 * takes up repairs another leader left.
 */
#include "cmocka_all.h"

#include <jansson.h>

#include "recoveryd/error.h"
#include "sched_world.h"

#define TASK "00000000-0000-4000-8000-000000000001"
#define BK1  "bac00001-0000-4000-8000-000000000001"
#define BK2  "bac00002-0000-4000-8000-000000000002"
#define BK3  "bac00003-0000-4000-8000-000000000003"
#define BK4  "bac00004-0000-4000-8000-000000000004"

static void checkpoint(struct sched_world *w, uint64_t version, uint8_t keep)
{
    char data[32];
    snprintf(data, sizeof(data), "{\"step\":%llu}", (unsigned long long)version);
    struct rd_cmd c = {.type = RD_CMD_TASK_CHECKPOINT};
    c.u.tckpt.task_id = RD_STR(TASK);
    c.u.tckpt.attempt = sched_world_get(w, TASK)->attempt;
    c.u.tckpt.version = version;
    c.u.tckpt.data_json = RD_STR(data);
    c.u.tckpt.checksum = rd_checkpoint_checksum(data, strlen(data));
    c.u.tckpt.keep = keep;
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
}

/* TASK running on agent "a" with versions 1..n (the last `keep` held). */
static const struct rd_task *running_task(struct sched_world *w, uint64_t n, uint8_t keep)
{
    sched_world_agent(w, "a", 4, "{}");
    sched_world_task(w, 1, 5, false, 1, "{}");
    rd_sched_pass(&w->s);
    fake_log_step(&w->log);
    for (uint64_t v = 1; v <= n; v++)
        checkpoint(w, v, keep);
    const struct rd_task *t = sched_world_get(w, TASK);
    assert_string_equal(t->node_id, "a");
    assert_int_equal(t->state, RD_TASK_RUNNING);
    return t;
}

/* A byte of the newest checkpoint's data flips behind the machine's back. */
static void damage_newest(const struct rd_task *t)
{
    struct rd_checkpoint *c = (struct rd_checkpoint *)rd_task_checkpoint(t);
    c->data[c->size / 2] ^= 0x01;
    assert_false(rd_checkpoint_verifies(c));
}

struct outcome {
    int calls;
    int status;
};

static void repaired(void *data, int status)
{
    struct outcome *o = data;
    o->calls++;
    o->status = status;
}

/* The only data_corruption fault, and its metadata parsed. */
static const struct rd_fault *the_fault(struct sched_world *w, json_t **meta)
{
    const struct rd_fault *found = NULL;
    for (size_t i = 0; i < w->fsm.n_faults; i++) {
        if (w->fsm.faults[i]->type != RD_FAULT_DATA_CORRUPTION)
            continue;
        assert_null(found);
        found = w->fsm.faults[i];
    }
    assert_non_null(found);
    *meta = json_loads(found->metadata_json, 0, NULL);
    assert_non_null(*meta);
    return found;
}

static bool in_flight(struct sched_world *w)
{
    return rd_map_get(&w->s.inflight, TASK, strlen(TASK)) != NULL;
}

static void test_nothing_to_repair(void **state)
{
    struct sched_world *w = *state;
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, NULL, NULL), RD_ENOTFOUND);
    sched_world_agent(w, "a", 4, "{}");
    sched_world_task(w, 1, 5, false, 1, "{}");
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, NULL, NULL), 0); /* none */
    rd_sched_pass(&w->s);
    fake_log_step(&w->log);
    checkpoint(w, 1, 3);
    struct outcome o = {0};
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, repaired, &o), 0); /* verifies */
    const struct rd_checkpoint *c;
    assert_int_equal(rd_sched_resume_checkpoint(&w->s, sched_world_get(w, TASK), &c), 0);
    assert_int_equal(c->version, 1);
    assert_int_equal(o.calls, 0);
    assert_int_equal(w->log.n, 0);
}

static void test_repair_from_an_older_version(void **state)
{
    struct sched_world *w = *state;
    const struct rd_task *t = running_task(w, 3, 3);
    damage_newest(t);
    unsigned before = w->log.proposals;
    struct outcome o1 = {0}, o2 = {0};
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, repaired, &o1), 1);
    /* One repair per task: a second caller joins it; the task is held. */
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, repaired, &o2), 1);
    const struct rd_checkpoint *c = NULL;
    assert_int_equal(rd_sched_resume_checkpoint(&w->s, t, &c), RD_EBUSY);
    assert_true(in_flight(w));
    fake_log_step(&w->log);
    /* The fault, then the repair that resolves it. */
    assert_int_equal(w->log.proposals - before, 2);
    assert_int_equal(w->log.types[before], RD_CMD_FAULT_OPEN);
    assert_int_equal(w->log.types[before + 1], RD_CMD_CHECKPOINT_RESTORE);
    assert_int_equal(o1.calls, 1);
    assert_int_equal(o1.status, 0);
    assert_int_equal(o2.calls, 1);
    assert_false(in_flight(w));
    assert_int_equal(t->n_ckpts, 2);
    assert_int_equal(rd_task_checkpoint(t)->version, 2);
    assert_true(rd_checkpoint_verifies(rd_task_checkpoint(t)));
    assert_int_equal(rd_sched_resume_checkpoint(&w->s, t, &c), 0);
    assert_int_equal(c->version, 2);
    json_t *m;
    const struct rd_fault *x = the_fault(w, &m);
    assert_int_equal(x->severity, RD_SEV_MAJOR);
    assert_string_equal(x->node_id, "a");
    assert_int_equal(x->status, RD_FAULT_RESOLVED);
    assert_string_equal(x->resolution, "checkpoint restored from version 2");
    assert_string_equal(json_string_value(json_object_get(m, "task_id")), TASK);
    assert_int_equal(json_integer_value(json_object_get(m, "version")), 3);
    assert_string_equal(json_string_value(json_object_get(m, "restored_from")), "version 2");
    json_decref(m);
    assert_int_equal(w->s.repairs_total[RD_REPAIR_FROM_VERSION], 1);
    /* Nothing left to do. */
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, NULL, NULL), 0);
}

/* ---- backups ---- */

struct fake_backups {
    char asked[8][65];
    unsigned n_asked;
    rd_sched_backup_cb cb;
    void *cb_data;
};

static int fake_backup_checkpoints(void *data, const char *backup_id, const char *task_id,
                                   rd_sched_backup_cb cb, void *cb_data)
{
    struct fake_backups *fb = data;
    assert_string_equal(task_id, TASK);
    assert_null(fb->cb); /* one read at a time */
    snprintf(fb->asked[fb->n_asked++], 65, "%s", backup_id);
    if (strcmp(backup_id, BK4) == 0)
        return RD_ECONFLICT; /* its target is not configured here */
    fb->cb = cb;
    fb->cb_data = cb_data;
    return 0;
}

/* Answers the read in flight with `n` checkpoints (the last `bad` damaged). */
static void answer(struct fake_backups *fb, int status, uint64_t first, unsigned n, unsigned bad)
{
    struct rd_checkpoint ck[4] = {{0}};
    char data[4][32];
    for (unsigned i = 0; i < n; i++) {
        snprintf(data[i], sizeof(data[i]), "{\"step\":%llu}", (unsigned long long)(first + i));
        ck[i] = (struct rd_checkpoint){.version = first + i,
                                       .at = 100 + (int64_t)i,
                                       .checksum = rd_checkpoint_checksum(data[i], strlen(data[i])),
                                       .size = (uint32_t)strlen(data[i]),
                                       .data = data[i]};
        if (i >= n - bad)
            ck[i].checksum ^= 1;
    }
    rd_sched_backup_cb cb = fb->cb;
    fb->cb = NULL;
    cb(fb->cb_data, status, ck, n, status ? "the object is missing" : NULL);
}

static void backup_record(struct sched_world *w, const char *id, uint64_t index, bool complete)
{
    struct rd_cmd c = {.type = RD_CMD_BACKUP};
    c.u.backup.op = RD_BACKUP_OP_BEGIN;
    c.u.backup.id = RD_STR(id);
    c.u.backup.target = RD_STR("local");
    c.u.backup.error = RD_STR("");
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
    c.u.backup.op = complete ? RD_BACKUP_OP_COMPLETE : RD_BACKUP_OP_FAIL;
    c.u.backup.index = index;
    c.u.backup.error = RD_STR(complete ? "" : "disk full");
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
}

static void test_backups_newest_first(void **state)
{
    struct sched_world *w = *state;
    backup_record(w, BK1, 10, true);
    backup_record(w, BK2, 30, true);
    backup_record(w, BK3, 40, false); /* failed: never read */
    backup_record(w, BK4, 20, true);
    const struct rd_backup *out[4];
    assert_int_equal(rd_sched__repair_backups(&w->fsm, out, 4), 3);
    assert_string_equal(out[0]->id, BK2);
    assert_string_equal(out[1]->id, BK4);
    assert_string_equal(out[2]->id, BK1);
    assert_int_equal(rd_sched__repair_backups(&w->fsm, out, 2), 2);
    assert_string_equal(out[0]->id, BK2);
    assert_string_equal(out[1]->id, BK4);
}

static void test_pick_from_a_backup(void **state)
{
    (void)state;
    char d1[] = "{\"step\":1}", d2[] = "{\"step\":2}", d3[] = "{\"step\":3}";
    struct rd_checkpoint ck[3] = {
        {.version = 1, .checksum = rd_checkpoint_checksum(d1, 10), .size = 10, .data = d1},
        {.version = 2, .checksum = rd_checkpoint_checksum(d2, 10), .size = 10, .data = d2},
        {.version = 3, .checksum = rd_checkpoint_checksum(d3, 10) ^ 1, .size = 10, .data = d3},
    };
    /* Newest first, but not past the bad version, and only if it verifies. */
    assert_int_equal(rd_sched__repair_pick(ck, 3, 5)->version, 2);
    assert_int_equal(rd_sched__repair_pick(ck, 2, 5)->version, 2);
    assert_int_equal(rd_sched__repair_pick(ck, 3, 1)->version, 1);
    assert_null(rd_sched__repair_pick(ck, 3, 0));
    assert_null(rd_sched__repair_pick(ck, 0, 5));
    ck[0].checksum ^= 1;
    assert_null(rd_sched__repair_pick(ck, 3, 1));
}

static void test_repair_from_a_backup(void **state)
{
    struct sched_world *w = *state;
    struct fake_backups fb = {0};
    w->s.env.backup_checkpoints = fake_backup_checkpoints;
    w->s.env.backup_data = &fb;
    backup_record(w, BK1, 10, true);
    backup_record(w, BK2, 30, true);
    backup_record(w, BK3, 40, false);
    backup_record(w, BK4, 35, true);
    const struct rd_task *t = running_task(w, 3, 1); /* only version 3 held */
    damage_newest(t);
    struct outcome o = {0};
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, repaired, &o), 1);
    /* BK4 first (newest completed), whose target cannot be read here; then BK2. */
    assert_int_equal(fb.n_asked, 2);
    assert_string_equal(fb.asked[0], BK4);
    assert_string_equal(fb.asked[1], BK2);
    answer(&fb, 0, 2, 2, 1); /* versions 2 and 3, 3 damaged there too: 2 will do */
    assert_int_equal(w->log.n, 1);
    fake_log_step(&w->log);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, 0);
    assert_int_equal(t->n_ckpts, 1);
    const struct rd_checkpoint *c = rd_task_checkpoint(t);
    assert_int_equal(c->version, 2);
    assert_int_equal(c->at, 100);
    assert_string_equal(c->data, "{\"step\":2}");
    assert_true(rd_checkpoint_verifies(c));
    json_t *m;
    const struct rd_fault *x = the_fault(w, &m);
    assert_string_equal(json_string_value(json_object_get(m, "restored_from")), "backup " BK2);
    assert_string_equal(x->resolution, "checkpoint restored from backup " BK2);
    json_decref(m);
    assert_int_equal(w->s.repairs_total[RD_REPAIR_FROM_BACKUP], 1);
}

/* No older version, no backup with a good copy: the task starts over, the
 * fault stays open and says why, and this leadership does not look again. */
static void test_nothing_good(void **state)
{
    struct sched_world *w = *state;
    struct fake_backups fb = {0};
    w->s.env.backup_checkpoints = fake_backup_checkpoints;
    w->s.env.backup_data = &fb;
    backup_record(w, BK1, 10, true);
    backup_record(w, BK2, 30, true);
    const struct rd_task *t = running_task(w, 3, 1);
    damage_newest(t);
    struct outcome o = {0};
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, repaired, &o), 1);
    answer(&fb, RD_ENOTFOUND, 0, 0, 0); /* BK2: unreadable */
    assert_string_equal(fb.asked[1], BK1);
    answer(&fb, 0, 1, 1, 0); /* BK1: holds version 1 only... */
    /* ...which verifies and is older: it is the copy. */
    fake_log_step(&w->log);
    assert_int_equal(o.status, 0);
    assert_int_equal(rd_task_checkpoint(t)->version, 1);

    /* Again, with no backup that helps: BK2 holds nothing, BK1 a bad copy. */
    checkpoint(w, 2, 1);
    damage_newest(t);
    o = (struct outcome){0};
    fb.n_asked = 0;
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, repaired, &o), 1);
    answer(&fb, 0, 0, 0, 0);
    answer(&fb, 0, 2, 1, 1);
    fake_log_step(&w->log);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, RD_ECORRUPT);
    assert_false(in_flight(w));
    const struct rd_fault *x = NULL;
    for (size_t i = 0; i < w->fsm.n_faults; i++)
        if (w->fsm.faults[i]->status == RD_FAULT_OPEN_ST)
            x = w->fsm.faults[i];
    assert_non_null(x);
    json_t *m = json_loads(x->metadata_json, 0, NULL);
    assert_true(json_is_null(json_object_get(m, "restored_from")));
    assert_int_equal(json_integer_value(json_object_get(m, "version")), 2);
    const char *reason = json_string_value(json_object_get(m, "reason"));
    assert_non_null(strstr(reason, "backup " BK2 " holds no checkpoint of it"));
    assert_non_null(strstr(reason, "backup " BK1 " holds no version that verifies"));
    json_decref(m);
    assert_int_equal(w->s.repairs_total[RD_REPAIR_NONE], 1);
    /* Known now: no search, no second fault; the hand-over starts over. */
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, repaired, &o), RD_ECORRUPT);
    const struct rd_checkpoint *c = (void *)1;
    assert_int_equal(rd_sched_resume_checkpoint(&w->s, t, &c), 0);
    assert_null(c);
    assert_int_equal(w->log.n, 0);
    /* A new leadership looks again, and reuses the open fault. */
    size_t faults = w->fsm.n_faults;
    rd_sched__repair_stop(&w->s);
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, NULL, NULL), 1);
    answer(&fb, 0, 0, 0, 0);
    answer(&fb, 0, 0, 0, 0);
    fake_log_step(&w->log);
    assert_int_equal(w->fsm.n_faults, faults);
}

/* Without backups to read and without an older version: nothing good. */
static void test_no_backups_configured(void **state)
{
    struct sched_world *w = *state;
    const struct rd_task *t = running_task(w, 2, 1);
    damage_newest(t);
    struct outcome o = {0};
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, repaired, &o), 1);
    fake_log_step(&w->log);
    assert_int_equal(o.status, RD_ECORRUPT);
    json_t *m;
    const struct rd_fault *x = the_fault(w, &m);
    assert_int_equal(x->status, RD_FAULT_OPEN_ST);
    assert_non_null(
        strstr(json_string_value(json_object_get(m, "reason")), "no completed backup to read"));
    json_decref(m);
}

/* A checkpoint written while the repair was on its way wins; the sweep then
 * settles the fault. */
static void test_a_newer_checkpoint_wins(void **state)
{
    struct sched_world *w = *state;
    const struct rd_task *t = running_task(w, 3, 3);
    damage_newest(t);
    struct outcome o = {0};
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, repaired, &o), 1);
    checkpoint(w, 4, 3); /* committed before the repair's entries */
    fake_log_step(&w->log);
    assert_int_equal(o.status, RD_ECONFLICT);
    assert_int_equal(rd_task_checkpoint(t)->version, 4);
    json_t *m;
    const struct rd_fault *x = the_fault(w, &m);
    json_decref(m);
    assert_int_equal(x->status, RD_FAULT_OPEN_ST);
    rd_sched__repair_sweep(&w->s);
    fake_log_step(&w->log);
    assert_int_equal(x->status, RD_FAULT_RESOLVED);
    assert_string_equal(x->resolution, "checkpoint version 4, written since, verifies");
}

/* A fault a previous leader opened without committing the repair: the
 * sweep takes the repair up and resolves that fault. */
static void test_sweep_takes_up_a_repair(void **state)
{
    struct sched_world *w = *state;
    const struct rd_task *t = running_task(w, 3, 3);
    damage_newest(t);
    struct rd_cmd c = rd_cmd_cluster_fault(
        0, "f0000001-0000-4000-8000-000000000001", RD_FAULT_DATA_CORRUPTION, RD_SEV_MAJOR,
        "{\"restored_from\":\"version 2\",\"task_id\":\"" TASK "\",\"version\":3}",
        "\"restore_checkpoint\"");
    assert_int_equal(fake_log_apply(&w->log, c)->status, 0);
    rd_sched__repair_sweep(&w->s);
    assert_true(in_flight(w));
    fake_log_step(&w->log);
    assert_int_equal(w->fsm.n_faults, 1);
    assert_int_equal(w->fsm.faults[0]->status, RD_FAULT_RESOLVED);
    assert_int_equal(rd_task_checkpoint(t)->version, 2);
    /* The sweep runs at most once a second and finds nothing more. */
    rd_sched__repair_sweep(&w->s);
    assert_int_equal(w->log.n, 0);
}

/* A proposal about the task holds its key already (a move on its way): the
 * repair runs beside it and leaves that key to its owner. */
static void test_repair_beside_a_proposal_in_flight(void **state)
{
    struct sched_world *w = *state;
    const struct rd_task *t = running_task(w, 3, 3);
    damage_newest(t);
    sched_world_agent(w, "b", 4, "{}");
    assert_true(
        rd_sched__propose_assign(&w->s, t, rd_fsm_node(&w->fsm, "b", 1), RD_TASK_RECOVERING));
    assert_true(in_flight(w));
    struct outcome o = {0};
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, repaired, &o), 1);
    fake_log_step(&w->log);
    assert_int_equal(o.status, 0);
    assert_false(in_flight(w));
    assert_string_equal(t->node_id, "b");
    assert_int_equal(rd_task_checkpoint(t)->version, 2);
}

/* A follower repairs nothing; its hand-over (were it asked) is the newest
 * version that verifies, as before repairs existed. */
static void test_not_the_leader(void **state)
{
    struct sched_world *w = *state;
    const struct rd_task *t = running_task(w, 3, 3);
    damage_newest(t);
    w->log.follower = true;
    assert_int_equal(rd_sched_repair_checkpoint(&w->s, TASK, NULL, NULL), RD_ENOTLEADER);
    const struct rd_checkpoint *c;
    assert_int_equal(rd_sched_resume_checkpoint(&w->s, t, &c), 0);
    assert_int_equal(c->version, 2);
    assert_false(in_flight(w));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_to_repair, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_repair_from_an_older_version, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_backups_newest_first, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test(test_pick_from_a_backup),
        cmocka_unit_test_setup_teardown(test_repair_from_a_backup, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_nothing_good, sched_world_setup, sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_no_backups_configured, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_a_newer_checkpoint_wins, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_takes_up_a_repair, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_repair_beside_a_proposal_in_flight, sched_world_setup,
                                        sched_world_teardown),
        cmocka_unit_test_setup_teardown(test_not_the_leader, sched_world_setup,
                                        sched_world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
