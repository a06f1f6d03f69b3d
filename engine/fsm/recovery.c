/* Recovery runs and their task_recovery records, in the state machine. */
#include <stdlib.h>
#include <string.h>

#include "fsm_int.h"
#include "recoveryd/error.h"

static void item_free(struct rd_recovery_item *it)
{
    free(it->failed_node_id);
    free(it->recovery_node_id);
    free(it->strategy);
    free(it->error);
}

static void run_free(struct rd_recovery *r)
{
    if (r == NULL)
        return;
    for (uint32_t i = 0; i < r->n_items; i++)
        item_free(&r->items[i]);
    free(r->items);
    free(r->node_id);
    free(r->strategy);
    free(r->reason);
    free(r);
}

void rd_fsm__recoveries_clear(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_recoveries; i++)
        run_free(f->recoveries[i]);
    free(f->recoveries);
    rd_map_free(&f->recoveries_by_id);
    rd_map_init(&f->recoveries_by_id);
    f->recoveries = NULL;
    f->n_recoveries = f->cap_recoveries = 0;
}

void rd_fsm__recoveries_move(struct rd_fsm *to, struct rd_fsm *from)
{
    to->recoveries = from->recoveries;
    to->n_recoveries = from->n_recoveries;
    to->cap_recoveries = from->cap_recoveries;
    to->recoveries_by_id = from->recoveries_by_id;
    from->recoveries = NULL;
    from->n_recoveries = from->cap_recoveries = 0;
    rd_map_init(&from->recoveries_by_id);
}

const struct rd_recovery *rd_fsm_recovery(const struct rd_fsm *f, const char *id)
{
    return rd_map_get(&f->recoveries_by_id, id, strlen(id));
}

static bool open_status(uint8_t s)
{
    return s == RD_REC_INITIATED || s == RD_REC_RUNNING;
}

const struct rd_recovery *rd_fsm_open_recovery(const struct rd_fsm *f, const char *node_id)
{
    for (size_t i = f->n_recoveries; i-- > 0;) {
        const struct rd_recovery *r = f->recoveries[i];
        if (open_status(r->status) && strcmp(r->node_id, node_id) == 0)
            return r;
    }
    return NULL;
}

static int insert(struct rd_fsm *f, struct rd_recovery *r)
{
    if (f->n_recoveries == f->cap_recoveries) {
        size_t ncap = f->cap_recoveries ? f->cap_recoveries * 2 : 16;
        struct rd_recovery **nr = realloc(f->recoveries, ncap * sizeof(*nr));
        if (nr == NULL)
            return RD_ENOMEM;
        f->recoveries = nr;
        f->cap_recoveries = ncap;
    }
    if (rd_map_put(&f->recoveries_by_id, r->id, strlen(r->id), r) != 0)
        return RD_ENOMEM;
    f->recoveries[f->n_recoveries++] = r;
    return 0;
}

/* Drops the oldest finished runs beyond RD_FSM_MAX_RECOVERIES that are
 * exported (all of them when export is off), and beyond the export's hard
 * bound the oldest finished ones whatever they are (export.h). */
static void prune(struct rd_fsm *f)
{
    if (f->n_recoveries <= RD_FSM_MAX_RECOVERIES)
        return;
    size_t excess = f->n_recoveries - RD_FSM_MAX_RECOVERIES, kept = 0;
    size_t bound = rd_fsm_export_bound(f, RD_FSM_MAX_RECOVERIES);
    size_t forced = f->n_recoveries > bound ? f->n_recoveries - bound : 0;
    for (size_t i = 0; i < f->n_recoveries; i++) {
        struct rd_recovery *r = f->recoveries[i];
        bool done = rd_fsm_export_done(f, r->changed);
        if (!open_status(r->status) && ((excess > 0 && done) || forced > 0)) {
            if (!done)
                rd_fsm__export_lost(f, RD_EXPORT_RECOVERIES);
            rd_map_del(&f->recoveries_by_id, r->id, strlen(r->id));
            rd_fsm__dg_remove(f, RD_DG_RECOVERY, r);
            run_free(r);
            excess -= excess > 0;
            forced -= forced > 0;
        } else {
            f->recoveries[kept++] = r;
        }
    }
    f->n_recoveries = kept;
}

static int str_id(struct rd_str s, char out[40])
{
    if (s.len == 0 || s.len >= 40 || rd_str_has_nul(s))
        return RD_EINVAL;
    memcpy(out, s.p, s.len);
    out[s.len] = '\0';
    return 0;
}

int rd_fsm__recovery_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    char id[40];
    if (cmd->type == RD_CMD_RECOVERY_OPEN) {
        const struct rd_cmd_recovery_open *c = &cmd->u.ropen;
        if (str_id(c->id, id) != 0) {
            f->result.status = RD_EINVAL;
            return 0;
        }
        if (rd_fsm_recovery(f, id) != NULL) {
            f->result.status = RD_EEXISTS;
            return 0;
        }
        const struct rd_node *n = rd_fsm_node(f, c->node_id.p, c->node_id.len);
        if (n == NULL) {
            f->result.status = RD_ENOTFOUND;
            return 0;
        }
        struct rd_recovery *r = calloc(1, sizeof(*r));
        if (r == NULL)
            return RD_ENOMEM;
        memcpy(r->id, id, strlen(id) + 1);
        r->node_id = rd_str_dup(c->node_id);
        r->strategy = rd_str_dup(c->strategy);
        r->reason = rd_str_dup(c->reason);
        if (!r->node_id || !r->strategy || !r->reason || insert(f, r) != 0) {
            rd_map_del(&f->recoveries_by_id, r->id, strlen(r->id));
            run_free(r);
            return RD_ENOMEM;
        }
        r->status = RD_REC_INITIATED;
        r->started_at = cmd->time_ms;
        r->total = n->n_tasks;
        rd_fsm__dg_add(f, RD_DG_RECOVERY, r);
        prune(f);
        return 0;
    }
    const struct rd_cmd_recovery_close *c = &cmd->u.rclose;
    struct rd_recovery *r =
        str_id(c->id, id) == 0 ? (struct rd_recovery *)rd_fsm_recovery(f, id) : NULL;
    if (r == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    if (!open_status(r->status))
        return 0; /* closed already: idempotent */
    rd_fsm__dg_touch(f, RD_DG_RECOVERY, r);
    if (c->strategy.len > 0) {
        char *st = rd_str_dup(c->strategy);
        if (st == NULL)
            return RD_ENOMEM;
        free(r->strategy);
        r->strategy = st;
    }
    r->status = c->status;
    r->completed_at = cmd->time_ms;
    return 0;
}

int rd_fsm__recovery_item(struct rd_fsm *f, const struct rd_cmd_task_assign *c,
                          const struct rd_task *t, const char *old_node, int64_t time_ms)
{
    char id[40], item[40];
    struct rd_str strategy = c->strategy;
    if (str_id(c->recovery_id, id) != 0 || str_id(c->item_id, item) != 0)
        return 0;
    struct rd_recovery *r = (struct rd_recovery *)rd_fsm_recovery(f, id);
    if (r == NULL || !open_status(r->status))
        return 0; /* the move stands; the run is gone or closed */
    rd_fsm__dg_touch(f, RD_DG_RECOVERY, r);
    if (r->n_items == r->cap_items) {
        uint32_t ncap = r->cap_items ? r->cap_items * 2 : 8;
        struct rd_recovery_item *ni = realloc(r->items, ncap * sizeof(*ni));
        if (ni == NULL)
            return RD_ENOMEM;
        r->items = ni;
        r->cap_items = ncap;
    }
    struct rd_recovery_item *it = &r->items[r->n_items];
    memset(it, 0, sizeof(*it));
    memcpy(it->id, item, strlen(item) + 1);
    memcpy(it->task_id, t->id, strlen(t->id) + 1);
    it->failed_node_id = rd_str_dup(RD_STR(old_node));
    it->recovery_node_id = rd_str_dup(RD_STR(t->node_id));
    it->strategy = strategy.len ? rd_str_dup(strategy) : rd_str_dup(RD_STR(r->strategy));
    bool placed = t->node_id[0] != '\0';
    it->error = placed        ? rd_str_dup(RD_STR(""))
                : c->note.len ? rd_str_dup(c->note)
                              : rd_str_dup(RD_STR("no agent had room: back to pending"));
    if (!it->failed_node_id || !it->recovery_node_id || !it->strategy || !it->error) {
        item_free(it);
        return RD_ENOMEM;
    }
    /* An automatic run opens before its policy chose: the first strategy
     * that moves a task is the run's. */
    if (r->strategy[0] == '\0' && it->strategy[0] != '\0') {
        char *st = strdup(it->strategy);
        if (st == NULL) {
            item_free(it);
            return RD_ENOMEM;
        }
        free(r->strategy);
        r->strategy = st;
    }
    it->started_at = r->started_at;
    it->completed_at = time_ms;
    it->success = placed ? 1 : 0;
    r->n_items++;
    if (placed)
        r->recovered++;
    else
        r->failed++;
    r->status = RD_REC_RUNNING;
    return 0;
}

/* ---- snapshot section --------------------------------------------------- */

void rd_fsm__recovery_write_one(struct rd_wbuf *w, const struct rd_recovery *r)
{
    rd_w_str(w, r->id, strlen(r->id));
    rd_w_str(w, r->node_id, strlen(r->node_id));
    rd_w_str(w, r->strategy, strlen(r->strategy));
    rd_w_str(w, r->reason, strlen(r->reason));
    rd_w_u8(w, r->status);
    rd_w_i64(w, r->started_at);
    rd_w_i64(w, r->completed_at);
    rd_w_u32(w, r->total);
    rd_w_u32(w, r->recovered);
    rd_w_u32(w, r->failed);
    rd_w_u32(w, r->n_items);
    for (uint32_t k = 0; k < r->n_items; k++) {
        const struct rd_recovery_item *it = &r->items[k];
        rd_w_str(w, it->id, strlen(it->id));
        rd_w_str(w, it->task_id, strlen(it->task_id));
        rd_w_str(w, it->failed_node_id, strlen(it->failed_node_id));
        rd_w_str(w, it->recovery_node_id, strlen(it->recovery_node_id));
        rd_w_str(w, it->strategy, strlen(it->strategy));
        rd_w_i64(w, it->started_at);
        rd_w_i64(w, it->completed_at);
        rd_w_u8(w, it->success);
        rd_w_str(w, it->error, strlen(it->error));
    }
}

void rd_fsm__recoveries_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u64(w, f->n_recoveries);
    for (size_t i = 0; i < f->n_recoveries; i++)
        rd_fsm__recovery_write_one(w, f->recoveries[i]);
}

int rd_fsm__recoveries_read(struct rd_fsm *f, struct rd_rbuf *rb)
{
    uint64_t count = rd_r_u64(rb);
    if (rb->err || count > rb->len)
        return RD_ECORRUPT;
    for (uint64_t i = 0; i < count; i++) {
        struct rd_recovery *r = calloc(1, sizeof(*r));
        if (r == NULL)
            return RD_ENOMEM;
        struct rd_str id = rd_r_text(rb), node = rd_r_text(rb), strategy = rd_r_text(rb),
                      reason = rd_r_text(rb);
        r->status = rd_r_u8(rb);
        r->started_at = rd_r_i64(rb);
        r->completed_at = rd_r_i64(rb);
        r->total = rd_r_u32(rb);
        r->recovered = rd_r_u32(rb);
        r->failed = rd_r_u32(rb);
        uint32_t n_items = rd_r_u32(rb);
        bool bad = rb->err || str_id(id, r->id) != 0 || r->status >= RD_REC_STATUS_COUNT ||
                   n_items > rb->len || rd_fsm_recovery(f, r->id) != NULL;
        if (!bad && n_items > 0) {
            r->items = calloc(n_items, sizeof(*r->items));
            bad = r->items == NULL;
            r->cap_items = n_items;
        }
        for (uint32_t k = 0; !bad && k < n_items; k++) {
            struct rd_recovery_item *it = &r->items[k];
            struct rd_str iid = rd_r_text(rb), tid = rd_r_text(rb), fn = rd_r_text(rb),
                          rn = rd_r_text(rb), st = rd_r_text(rb);
            it->started_at = rd_r_i64(rb);
            it->completed_at = rd_r_i64(rb);
            it->success = rd_r_u8(rb);
            struct rd_str err = rd_r_text(rb);
            if (rb->err || str_id(iid, it->id) != 0 || str_id(tid, it->task_id) != 0) {
                bad = true;
                break;
            }
            it->failed_node_id = rd_str_dup(fn);
            it->recovery_node_id = rd_str_dup(rn);
            it->strategy = rd_str_dup(st);
            it->error = rd_str_dup(err);
            r->n_items++;
            bad = !it->failed_node_id || !it->recovery_node_id || !it->strategy || !it->error;
        }
        if (!bad) {
            r->node_id = rd_str_dup(node);
            r->strategy = rd_str_dup(strategy);
            r->reason = rd_str_dup(reason);
            bad = !r->node_id || !r->strategy || !r->reason;
        }
        if (bad || insert(f, r) != 0) {
            run_free(r);
            return RD_ECORRUPT;
        }
    }
    return 0;
}
