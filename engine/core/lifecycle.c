/* The task life cycle's leader side (lifecycle.h). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/util.h"
#include "lifecycle.h"
#include "recoveryd/error.h"

void rd_lifecycle_init(struct rd_lifecycle *lc, const struct rd_lifecycle_env *env)
{
    memset(lc, 0, sizeof(*lc));
    lc->env = *env;
}

static void done(void *data, int status, uint64_t value)
{
    struct rd_lifecycle *lc = data;
    (void)value;
    if (lc->outstanding > 0)
        lc->outstanding--;
    if (status == 0)
        lc->deadlines_total++;
    if (status != 0 && status != RD_EFENCED && status != RD_ECONFLICT && status != RD_ENOTFOUND &&
        status != RD_ESHUTDOWN)
        RD_WARN("lifecycle", "proposal_failed", "error=%s", rd_err_name(status));
}

/* A prune committed: `value` is how many tasks it dropped. */
static void pruned(void *data, int status, uint64_t value)
{
    struct rd_lifecycle *lc = data;
    if (lc->outstanding > 0)
        lc->outstanding--;
    if (status == 0)
        lc->pruned_total += value;
    else if (status != RD_ESHUTDOWN)
        RD_WARN("lifecycle", "prune_failed", "error=%s", rd_err_name(status));
}

/* Fails `t` with a hang fault: its deadline passed (attempt-fenced, so a
 * task that finished or moved meanwhile is left alone). */
static void deadline_passed(struct rd_lifecycle *lc, const struct rd_task *t)
{
    char id[RD_UUID_STRLEN], deadline[RD_TIME_STRLEN];
    if (rd_uuid_v4(id) != 0)
        return;
    rd_time_format(t->deadline_ms, deadline);
    json_t *meta = json_pack("{s:s,s:s,s:s,s:I,s:s}", "task_id", t->id, "reason",
                             "deadline_exceeded", "deadline", deadline, "attempt",
                             (json_int_t)t->attempt, "last_node_id", t->node_id);
    char *meta_s = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(meta);
    struct rd_cmd cmd = rd_cmd_cluster_fault(
        0, id, RD_FAULT_HANG, RD_SEV_MINOR, meta_s ? meta_s : "{}",
        "{\"action\":\"fail_task\",\"detail\":\"deadline passed; task failed and revoked\"}");
    cmd.u.fopen.task_id = RD_STR(t->id);
    cmd.u.fopen.task_attempt = t->attempt;
    rd_cmd_audit_engine(&cmd, "task_deadline", t->id, id);
    if (lc->env.log.propose(lc->env.log.data, &cmd, done, lc) == 0) {
        lc->outstanding++;
        RD_WARN("lifecycle", "task_deadline", "task=%s deadline=%s node=%s fault=%s", t->id,
                deadline, t->node_id, id);
    }
    free(meta_s);
}

void rd_lifecycle_tick(struct rd_lifecycle *lc)
{
    const struct rd_fsm *f = lc->env.fsm;
    if (!lc->env.log.is_leader(lc->env.log.data) || lc->outstanding > 0)
        return;
    int64_t now = rd_fsm_stamp(f);
    /* The passed deadlines from the FSM's heap: no walk over every task. */
    const struct rd_task *passed[RD_LIFECYCLE_DEADLINES_MAX];
    size_t n = rd_fsm_deadlines_passed(f, now, passed, RD_LIFECYCLE_DEADLINES_MAX);
    for (size_t i = 0; i < n; i++)
        deadline_passed(lc, passed[i]);
    if (lc->outstanding > 0 || (uint64_t)now < lc->next_prune_ms)
        return;
    /* Finished tasks are looked at every quarter of the retention (1s to 1m). */
    int64_t keep = (int64_t)lc->env.cfg->fault_tolerance.tasks.retention_ms;
    int64_t every = keep / 4 < 1000 ? 1000 : keep / 4 > 60000 ? 60000 : keep / 4;
    lc->next_prune_ms = (uint64_t)(now + every);
    n = rd_fsm_tasks_prunable(f, now, keep, RD_LIFECYCLE_PRUNE_MAX);
    if (n == 0)
        return;
    struct rd_cmd cmd = {.type = RD_CMD_TASK_LIFECYCLE};
    cmd.u.tlife.op = RD_TASK_OP_PRUNE;
    cmd.u.tlife.task_id = RD_STR("");
    cmd.u.tlife.reason = RD_STR("");
    cmd.u.tlife.retention_ms = keep;
    cmd.u.tlife.max = RD_LIFECYCLE_PRUNE_MAX;
    if (lc->env.log.propose(lc->env.log.data, &cmd, pruned, lc) == 0) {
        lc->outstanding++;
        RD_INFO("lifecycle", "tasks_pruned", "count=%zu retention_ms=%lld", n, (long long)keep);
        if (n == RD_LIFECYCLE_PRUNE_MAX)
            lc->next_prune_ms = 0; /* more wait: the next tick goes on */
    }
}

static void tick(uv_timer_t *t)
{
    rd_lifecycle_tick(t->data);
}

/* The timer lives from leadership to its loss (closed there, as the
 * scheduler's). */
void rd_lifecycle_start(struct rd_lifecycle *lc)
{
    if (lc->started)
        return;
    uv_timer_init(lc->env.loop, &lc->timer);
    lc->timer.data = lc;
    lc->started = true;
    lc->outstanding = 0; /* a proposal of an earlier leadership answered or not */
    lc->next_prune_ms = 0;
    uv_timer_start(&lc->timer, tick, RD_LIFECYCLE_TICK_MS, RD_LIFECYCLE_TICK_MS);
}

void rd_lifecycle_stop(struct rd_lifecycle *lc)
{
    if (!lc->started)
        return;
    uv_timer_stop(&lc->timer);
    uv_close((uv_handle_t *)&lc->timer, NULL);
    lc->started = false;
}
