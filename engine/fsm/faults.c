/*
 * Fault records in the state machine (the requirement's fault_records), in
 * order of opening: fault_open (which may move its node, or quarantine a
 * poison task, in the same step) and fault_resolve; the open count per node
 * and overall; pruning of resolved records; the faults section of a snapshot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm_int.h"
#include "recoveryd/error.h"

static void fault_free(struct rd_fault *x)
{
    if (x == NULL)
        return;
    free(x->node_id);
    free(x->recovery_action_json);
    free(x->metadata_json);
    free(x->resolution);
    free(x);
}

void rd_fsm__faults_clear(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_faults; i++)
        fault_free(f->faults[i]);
    free(f->faults);
    rd_map_free(&f->faults_by_id);
    f->faults = NULL;
    f->n_faults = f->cap_faults = 0;
    f->fault_seq = 0;
    f->open_faults = 0;
}

void rd_fsm__faults_move(struct rd_fsm *to, struct rd_fsm *from)
{
    to->faults = from->faults;
    to->n_faults = from->n_faults;
    to->cap_faults = from->cap_faults;
    to->faults_by_id = from->faults_by_id;
    to->fault_seq = from->fault_seq;
    to->open_faults = from->open_faults;
    from->faults = NULL;
    from->n_faults = from->cap_faults = 0;
    rd_map_init(&from->faults_by_id);
}

const struct rd_fault *rd_fsm_fault(const struct rd_fsm *f, const char *id)
{
    return rd_map_get(&f->faults_by_id, id, strlen(id));
}

size_t rd_fsm_fault_index(const struct rd_fsm *f, uint64_t seq)
{
    size_t lo = 0, hi = f->n_faults;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->faults[mid]->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t rd_fsm_node_open_faults(const struct rd_fsm *f, const char *node_id)
{
    const struct rd_node *n = rd_fsm_node(f, node_id, strlen(node_id));
    return n ? n->open_faults : 0;
}

static struct rd_node *fault_node(struct rd_fsm *f, const struct rd_fault *x)
{
    return x->node_id[0] ? (struct rd_node *)rd_fsm_node(f, x->node_id, strlen(x->node_id)) : NULL;
}

static void fault_mark_resolved(struct rd_fsm *f, struct rd_fault *x, int64_t t, char *why)
{
    rd_fsm__dg_touch(f, RD_DG_FAULT, x);
    free(x->resolution);
    x->resolution = why;
    x->status = RD_FAULT_RESOLVED;
    x->resolved_at = t;
    f->open_faults--;
    struct rd_node *n = fault_node(f, x);
    if (n != NULL && n->open_faults > 0)
        n->open_faults--;
    if (f->on_fault != NULL)
        f->on_fault(f->on_fault_data, x);
}

int rd_fsm__faults_resolve_node(struct rd_fsm *f, struct rd_node *n, int64_t t, struct rd_str why)
{
    for (size_t i = f->n_faults; i-- > 0 && n->open_faults > 0;) {
        struct rd_fault *x = f->faults[i];
        if (x->status != RD_FAULT_OPEN_ST || strcmp(x->node_id, n->node_id) != 0)
            continue;
        char *w = rd_str_dup(why);
        if (w == NULL)
            return RD_ENOMEM;
        fault_mark_resolved(f, x, t, w);
    }
    return 0;
}

int rd_fsm__fault_resolve(struct rd_fsm *f, struct rd_str id, int64_t t, struct rd_str why)
{
    char key[64];
    if (id.len == 0 || id.len >= sizeof(key))
        return 0;
    memcpy(key, id.p, id.len);
    key[id.len] = '\0';
    struct rd_fault *x = (struct rd_fault *)rd_fsm_fault(f, key);
    if (x == NULL || x->status != RD_FAULT_OPEN_ST)
        return 0;
    char *w = rd_str_dup(why);
    if (w == NULL)
        return RD_ENOMEM;
    fault_mark_resolved(f, x, t, w);
    f->result.fault = x;
    return 0;
}

int rd_fsm__faults_resolve_task(struct rd_fsm *f, struct rd_str task_id, int64_t t,
                                struct rd_str why)
{
    /* metadata is canonical compact JSON: the member reads "task_id":"<id>". */
    char needle[96];
    if (task_id.len == 0 || task_id.len > 64 || rd_str_has_nul(task_id))
        return 0;
    snprintf(needle, sizeof(needle), "\"task_id\":\"%.*s\"", (int)task_id.len, task_id.p);
    for (size_t i = 0; i < f->n_faults && f->open_faults > 0; i++) {
        struct rd_fault *x = f->faults[i];
        if (x->status != RD_FAULT_OPEN_ST || x->node_id[0] != '\0' ||
            (x->type != RD_FAULT_POISON_TASK && x->type != RD_FAULT_HANG) ||
            strstr(x->metadata_json, needle) == NULL)
            continue;
        char *w = rd_str_dup(why);
        if (w == NULL)
            return RD_ENOMEM;
        fault_mark_resolved(f, x, t, w);
    }
    return 0;
}

/* Drops the oldest resolved records beyond RD_FSM_MAX_FAULTS that are
 * exported (all of them when export is off), and beyond the export's hard
 * bound the oldest resolved ones whatever they are (export.h). */
static void prune_faults(struct rd_fsm *f)
{
    if (f->n_faults <= RD_FSM_MAX_FAULTS)
        return;
    size_t excess = f->n_faults - RD_FSM_MAX_FAULTS, kept = 0;
    size_t bound = rd_fsm_export_bound(f, RD_FSM_MAX_FAULTS);
    size_t forced = f->n_faults > bound ? f->n_faults - bound : 0;
    for (size_t i = 0; i < f->n_faults; i++) {
        struct rd_fault *x = f->faults[i];
        bool done = rd_fsm_export_done(f, x->changed);
        if (x->status == RD_FAULT_RESOLVED && ((excess > 0 && done) || forced > 0)) {
            if (!done)
                rd_fsm__export_lost(f, RD_EXPORT_FAULTS);
            rd_map_del(&f->faults_by_id, x->id, strlen(x->id));
            rd_fsm__dg_remove(f, RD_DG_FAULT, x);
            fault_free(x);
            excess -= excess > 0;
            forced -= forced > 0;
        } else {
            f->faults[kept++] = x;
        }
    }
    f->n_faults = kept;
}

static int fault_insert(struct rd_fsm *f, struct rd_fault *x)
{
    if (f->n_faults == f->cap_faults) {
        size_t ncap = f->cap_faults ? f->cap_faults * 2 : 64;
        struct rd_fault **nf = realloc(f->faults, ncap * sizeof(*nf));
        if (nf == NULL)
            return RD_ENOMEM;
        f->faults = nf;
        f->cap_faults = ncap;
    }
    if (rd_map_put(&f->faults_by_id, x->id, strlen(x->id), x) != 0)
        return RD_ENOMEM;
    f->faults[f->n_faults++] = x;
    if (x->status == RD_FAULT_OPEN_ST) {
        f->open_faults++;
        struct rd_node *n = fault_node(f, x);
        if (n != NULL)
            n->open_faults++;
    }
    return 0;
}

static int apply_fault_open(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_fault_open *c = &cmd->u.fopen;
    /* The decoder takes ids of up to 64 bytes; a fault's is a UUID and its
     * record holds 39 (an entry with a longer one overflowed it: found by
     * tests/fuzz/fuzz_cmd). */
    char id[sizeof(((struct rd_fault *)0)->id)];
    if (c->id.len >= sizeof(id) || rd_str_has_nul(c->id)) {
        f->result.status = RD_EINVAL;
        return 0;
    }
    memcpy(id, c->id.p, c->id.len);
    id[c->id.len] = '\0';
    if (rd_fsm_fault(f, id) != NULL) { /* a retried proposal: once is enough */
        f->result.status = RD_EEXISTS;
        f->result.fault = rd_fsm_fault(f, id);
        return 0;
    }
    struct rd_node *n = NULL;
    if (c->node_id.len > 0) {
        n = (struct rd_node *)rd_fsm_node(f, c->node_id.p, c->node_id.len);
        if (n == NULL) {
            f->result.status = RD_ENOTFOUND;
            return 0;
        }
        f->result.node = n;
        f->result.old_state = n->state;
        if (c->set_state != RD_STATE_ANY) {
            if (c->epoch != 0 && c->epoch != n->epoch) {
                f->result.status = RD_EFENCED;
                return 0;
            }
            if (n->state == RD_NODE_LEFT ||
                (c->from_state != RD_STATE_ANY && c->from_state != n->state)) {
                f->result.status = RD_ECONFLICT;
                return 0;
            }
        }
    }
    if (c->task_id.len > 0) { /* a quarantine: the task must still be as decided */
        int st = rd_fsm__task_quarantine_check(f, c->task_id, c->task_attempt);
        if (st != 0) {
            f->result.status = st;
            f->result.node = NULL;
            return 0;
        }
    }
    struct rd_fault *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return RD_ENOMEM;
    memcpy(x->id, id, c->id.len + 1);
    x->node_id = rd_str_dup(c->node_id);
    x->metadata_json = rd_str_dup(c->metadata_json);
    x->recovery_action_json = rd_str_dup(c->recovery_action_json);
    x->resolution = rd_str_dup(RD_STR(""));
    if (!x->node_id || !x->metadata_json || !x->recovery_action_json || !x->resolution) {
        fault_free(x);
        return RD_ENOMEM;
    }
    x->seq = f->fault_seq + 1;
    x->type = c->fault_type;
    x->severity = c->severity;
    x->status = RD_FAULT_OPEN_ST;
    x->detected_at = cmd->time_ms;
    if (fault_insert(f, x) != 0) {
        rd_map_del(&f->faults_by_id, x->id, strlen(x->id));
        fault_free(x);
        return RD_ENOMEM;
    }
    rd_fsm__dg_add(f, RD_DG_FAULT, x);
    f->fault_seq++;
    if (n != NULL && c->set_state != RD_STATE_ANY && c->set_state != n->state) {
        char reason[96];
        snprintf(reason, sizeof(reason), "fault %s: %s", x->id, rd_fault_type_name(x->type));
        int rv = rd_fsm__node_move(f, n, c->set_state, RD_STR(reason), cmd->time_ms);
        if (rv != 0)
            return rv;
    } else {
        f->result.node = NULL; /* the node did not change */
    }
    f->result.fault = x;
    if (f->on_fault != NULL)
        f->on_fault(f->on_fault_data, x);
    if (c->task_id.len > 0) {
        char why[96];
        /* A task's fault is a poison task's quarantine, or (hang) its
         * deadline passing (tasks.h: deadline_ms). */
        if (x->type == RD_FAULT_POISON_TASK)
            snprintf(why, sizeof(why), "quarantined as a poison task (fault %s)", x->id);
        else
            snprintf(why, sizeof(why), "deadline passed: failed with %s fault %s",
                     rd_fault_type_name(x->type), x->id);
        int rv = rd_fsm__task_quarantine(f, c->task_id, why, cmd->time_ms);
        if (rv != 0)
            return rv;
    }
    prune_faults(f);
    return 0;
}

static int apply_fault_resolve(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_fault_resolve *c = &cmd->u.fresolve;
    if (c->id.len == 0) {
        struct rd_node *n = (struct rd_node *)rd_fsm_node(f, c->node_id.p, c->node_id.len);
        if (n == NULL) {
            f->result.status = RD_ENOTFOUND;
            return 0;
        }
        return rd_fsm__faults_resolve_node(f, n, cmd->time_ms, c->note);
    }
    char id[64];
    if (c->id.len >= sizeof(id) || rd_str_has_nul(c->id)) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    memcpy(id, c->id.p, c->id.len);
    id[c->id.len] = '\0';
    struct rd_fault *x = (struct rd_fault *)rd_fsm_fault(f, id);
    if (x == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    f->result.fault = x;
    if (x->status == RD_FAULT_RESOLVED)
        return 0; /* idempotent */
    char *w = rd_str_dup(c->note);
    if (w == NULL)
        return RD_ENOMEM;
    fault_mark_resolved(f, x, cmd->time_ms, w);
    return 0;
}

int rd_fsm__fault_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    return cmd->type == RD_CMD_FAULT_OPEN ? apply_fault_open(f, cmd) : apply_fault_resolve(f, cmd);
}

/* ---- snapshot section --------------------------------------------------- */

void rd_fsm__fault_write_one(struct rd_wbuf *w, const struct rd_fault *x)
{
    rd_w_u64(w, x->seq);
    rd_w_str(w, x->id, strlen(x->id));
    rd_w_str(w, x->node_id, strlen(x->node_id));
    rd_w_u8(w, x->type);
    rd_w_u8(w, x->severity);
    rd_w_u8(w, x->status);
    rd_w_i64(w, x->detected_at);
    rd_w_i64(w, x->resolved_at);
    rd_w_str(w, x->recovery_action_json, strlen(x->recovery_action_json));
    rd_w_str(w, x->metadata_json, strlen(x->metadata_json));
    rd_w_str(w, x->resolution, strlen(x->resolution));
}

void rd_fsm__faults_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u64(w, f->fault_seq);
    rd_w_u64(w, f->n_faults);
    for (size_t i = 0; i < f->n_faults; i++)
        rd_fsm__fault_write_one(w, f->faults[i]);
}

int rd_fsm__faults_read(struct rd_fsm *f, struct rd_rbuf *r)
{
    f->fault_seq = rd_r_u64(r);
    uint64_t count = rd_r_u64(r);
    if (r->err || count > r->len)
        return RD_ECORRUPT;
    for (uint64_t i = 0; i < count; i++) {
        struct rd_fault *x = calloc(1, sizeof(*x));
        if (x == NULL)
            return RD_ENOMEM;
        x->seq = rd_r_u64(r);
        struct rd_str id = rd_r_text(r), node = rd_r_text(r);
        x->type = rd_r_u8(r);
        x->severity = rd_r_u8(r);
        x->status = rd_r_u8(r);
        x->detected_at = rd_r_i64(r);
        x->resolved_at = rd_r_i64(r);
        struct rd_str action = rd_r_text(r), meta = rd_r_text(r), why = rd_r_text(r);
        if (r->err || id.len == 0 || id.len >= sizeof(x->id) || rd_str_has_nul(id) ||
            x->type >= RD_FAULT_TYPE_COUNT || x->severity >= RD_SEV_COUNT ||
            x->status >= RD_FAULT_STATUS_COUNT ||
            (f->n_faults > 0 && f->faults[f->n_faults - 1]->seq >= x->seq)) {
            free(x);
            return RD_ECORRUPT;
        }
        memcpy(x->id, id.p, id.len);
        x->id[id.len] = '\0';
        x->node_id = rd_str_dup(node);
        x->recovery_action_json = rd_str_dup(action);
        x->metadata_json = rd_str_dup(meta);
        x->resolution = rd_str_dup(why);
        if (!x->node_id || !x->recovery_action_json || !x->metadata_json || !x->resolution ||
            rd_fsm_fault(f, x->id) != NULL || fault_insert(f, x) != 0) {
            fault_free(x);
            return RD_ECORRUPT;
        }
    }
    return 0;
}
