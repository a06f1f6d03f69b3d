/*
 * Conflict records in the state machine (issue 17; conflicts.h): in
 * availability mode the leader turns a write of a superseded attempt into
 * RD_CMD_CONFLICT, with the resolution it chose (select.lua's on_conflict
 * hook, or the config's). Apply decides nothing the command does not say,
 * except what only the state can tell: the task is gone (refused), the
 * attempt may still write (refused: not a conflict), the task finished
 * (recorded with keep_newer by the engine), the write was recorded before
 * (its record answers) and whether a checkpoint is newer than the stored
 * one (adopted or not). The resolution's effect on the task is tasks.c's
 * (rd_fsm__task_conflict). Records are kept in order of seq in an array
 * whose live part starts at `conflict_head` (the oldest goes from the
 * front, in O(1)), with a map by id and one by the write they record (the
 * same write again is found in O(1), in apply and in the HTTP handler), at
 * most RD_FSM_MAX_CONFLICTS, and go with their task when it is pruned.
 *
 * Section (snapshot format 8 on): u64 last seq | u64 count | count records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "fsm_int.h"
#include "recoveryd/error.h"

static void conflict_free(struct rd_conflict *c)
{
    if (c == NULL)
        return;
    free(c->node_id);
    free(c->task_node_id);
    free(c->reason);
    free(c->data);
    free(c);
}

/* The live records, oldest first. */
static struct rd_conflict **live(const struct rd_fsm *f)
{
    return f->conflicts ? f->conflicts + f->conflict_head : NULL;
}

void rd_fsm__conflicts_clear(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_conflicts; i++)
        conflict_free(live(f)[i]);
    free(f->conflicts);
    rd_map_free(&f->conflicts_by_id);
    rd_map_init(&f->conflicts_by_id);
    rd_map_free(&f->conflicts_by_write);
    rd_map_init(&f->conflicts_by_write);
    f->conflicts = NULL;
    f->n_conflicts = f->cap_conflicts = f->conflict_head = 0;
    f->conflict_seq = 0;
}

void rd_fsm__conflicts_move(struct rd_fsm *to, struct rd_fsm *from)
{
    to->conflicts = from->conflicts;
    to->conflict_head = from->conflict_head;
    to->n_conflicts = from->n_conflicts;
    to->cap_conflicts = from->cap_conflicts;
    to->conflicts_by_id = from->conflicts_by_id;
    to->conflicts_by_write = from->conflicts_by_write;
    to->conflict_seq = from->conflict_seq;
    from->conflicts = NULL;
    from->n_conflicts = from->cap_conflicts = from->conflict_head = 0;
    from->conflict_seq = 0;
    rd_map_init(&from->conflicts_by_id);
    rd_map_init(&from->conflicts_by_write);
}

const struct rd_conflict *const *rd_fsm_conflicts(const struct rd_fsm *f, size_t *n)
{
    *n = f->n_conflicts;
    return (const struct rd_conflict *const *)live(f);
}

const struct rd_conflict *rd_fsm_conflict_find(const struct rd_fsm *f, const char *id)
{
    return rd_map_get(&f->conflicts_by_id, id, strlen(id));
}

size_t rd_fsm_conflict_index(const struct rd_fsm *f, uint64_t seq)
{
    size_t lo = 0, hi = f->n_conflicts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (live(f)[mid]->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const struct rd_conflict *rd_fsm_conflict_by_seq(const struct rd_fsm *f, uint64_t seq)
{
    size_t i = rd_fsm_conflict_index(f, seq);
    return i < f->n_conflicts && live(f)[i]->seq == seq ? live(f)[i] : NULL;
}

/* The key of a write in conflicts_by_write, into `out`; its length. */
static size_t write_key(char out[RD_CONFLICT_WRITE_KEY_MAX], const char *task_id, uint32_t attempt,
                        int kind, uint64_t version)
{
    size_t n = strnlen(task_id, 39);
    memcpy(out, task_id, n);
    out[n++] = '\0';
    memcpy(out + n, &attempt, sizeof(attempt));
    n += sizeof(attempt);
    out[n++] = (char)(uint8_t)kind;
    memcpy(out + n, &version, sizeof(version));
    return n + sizeof(version);
}

const struct rd_conflict *rd_fsm_conflict_same(const struct rd_fsm *f, const char *task_id,
                                               uint32_t attempt, int kind, uint64_t version)
{
    char key[RD_CONFLICT_WRITE_KEY_MAX];
    size_t n = write_key(key, task_id, attempt, kind, version);
    return rd_map_get(&f->conflicts_by_write, key, n);
}

/* Appends `c` (its seq set): seq only grows, so the array stays in seq
 * order. */
static int insert(struct rd_fsm *f, struct rd_conflict *c)
{
    struct rd_conflict **nc = rd_array_room(f->conflicts, sizeof(*nc), &f->conflict_head,
                                            f->n_conflicts, &f->cap_conflicts, 16);
    if (nc == NULL)
        return RD_ENOMEM;
    f->conflicts = nc;
    c->write_key_len =
        (uint8_t)write_key(c->write_key, c->task_id, c->attempt, c->kind, c->version);
    if (rd_map_put(&f->conflicts_by_id, c->id, strlen(c->id), c) != 0)
        return RD_ENOMEM;
    /* The newest record of a write answers for it (only a snapshot could
     * hold two). */
    if (rd_map_put(&f->conflicts_by_write, c->write_key, c->write_key_len, c) != 0) {
        rd_map_del(&f->conflicts_by_id, c->id, strlen(c->id));
        return RD_ENOMEM;
    }
    f->conflicts[f->conflict_head + f->n_conflicts++] = c;
    return 0;
}

/* Takes `c` out of both maps (not out of the array). */
static void unmap(struct rd_fsm *f, const struct rd_conflict *c)
{
    rd_map_del(&f->conflicts_by_id, c->id, strlen(c->id));
    if (rd_map_get(&f->conflicts_by_write, c->write_key, c->write_key_len) == c)
        rd_map_del(&f->conflicts_by_write, c->write_key, c->write_key_len);
}

/* Drops the record `c` from the machine (digest, maps) and frees it. */
static void drop(struct rd_fsm *f, struct rd_conflict *c)
{
    rd_fsm__dg_remove(f, RD_DG_CONFLICT, c);
    unmap(f, c);
    conflict_free(c);
}

void rd_fsm__conflicts_drop_pruned(struct rd_fsm *f)
{
    struct rd_conflict **cs = live(f);
    size_t kept = 0;
    for (size_t i = 0; i < f->n_conflicts; i++) {
        if (rd_fsm_task(f, cs[i]->task_id) == NULL)
            drop(f, cs[i]);
        else
            cs[kept++] = cs[i];
    }
    f->n_conflicts = kept;
    if (kept == 0)
        f->conflict_head = 0;
}

/* The oldest go beyond the bound: from the front, in O(1) each. */
static void trim(struct rd_fsm *f)
{
    while (f->n_conflicts > RD_FSM_MAX_CONFLICTS) {
        drop(f, f->conflicts[f->conflict_head]);
        f->conflicts[f->conflict_head++] = NULL;
        f->n_conflicts--;
    }
    if (f->n_conflicts == 0)
        f->conflict_head = 0;
}

/* A new record of `cmd` for `t` as it is before the resolution (nothing in
 * the machine yet); NULL on ENOMEM. */
static struct rd_conflict *record_of(const struct rd_cmd *cmd, const struct rd_task *t, uint8_t res,
                                     uint8_t by, struct rd_str reason)
{
    const struct rd_cmd_conflict *c = &cmd->u.conflict;
    struct rd_conflict *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    memcpy(r->id, c->id.p, c->id.len);
    snprintf(r->task_id, sizeof(r->task_id), "%s", t->id);
    r->attempt = c->attempt;
    r->task_attempt = t->attempt;
    r->kind = c->kind;
    r->resolution = res;
    r->resolved_by = by;
    r->version = c->version;
    const struct rd_checkpoint *last = rd_task_checkpoint(t);
    r->stored_version = last ? last->version : 0;
    r->checksum = c->checksum;
    r->node_id = rd_str_dup(c->node_id);
    r->task_node_id = rd_str_dup(RD_STR(t->node_id));
    r->reason = rd_str_dup(reason);
    r->data = rd_str_dup(c->data_json);
    r->data_size = c->data_json.len;
    r->at = cmd->time_ms;
    if (!r->node_id || !r->task_node_id || !r->reason || !r->data) {
        conflict_free(r);
        return NULL;
    }
    return r;
}

int rd_fsm__conflict_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_conflict *c = &cmd->u.conflict;
    char tid[40];
    struct rd_task *t = NULL;
    if (!rd_str_has_nul(c->task_id) && !rd_str_has_nul(c->id) && !rd_str_has_nul(c->node_id)) {
        memcpy(tid, c->task_id.p, c->task_id.len);
        tid[c->task_id.len] = '\0';
        t = (struct rd_task *)rd_fsm_task(f, tid);
    }
    if (t == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    f->result.task = t;
    /* Not a conflict: an attempt the task never had, or one that may write. */
    if (c->attempt == 0 || c->attempt > t->attempt) {
        f->result.status = RD_EFENCED;
        return 0;
    }
    if (!rd_fsm__task_superseded(t, c->attempt)) {
        f->result.status = RD_ECONFLICT;
        return 0;
    }
    /* The same write again: its record answers, nothing changes. */
    const struct rd_conflict *same =
        rd_fsm_conflict_same(f, t->id, c->attempt, c->kind, c->version);
    if (same != NULL) {
        f->result.value = same->seq;
        f->result.task = NULL;
        return 0;
    }
    char rid[40];
    memcpy(rid, c->id.p, c->id.len);
    rid[c->id.len] = '\0';
    if (rd_fsm_conflict_find(f, rid) != NULL) { /* an id used for another write */
        f->result.status = RD_EEXISTS;
        f->result.task = NULL;
        return 0;
    }
    uint8_t res = c->resolution, by = c->resolved_by;
    struct rd_str reason = c->reason;
    if (rd_task_finished(t)) {
        res = RD_CONFLICT_KEEP_NEWER;
        by = RD_CONFLICT_BY_ENGINE;
        reason = RD_STR("task finished");
    }
    struct rd_conflict *r = record_of(cmd, t, res, by, reason);
    if (r == NULL)
        return RD_ENOMEM;
    r->seq = f->conflict_seq + 1;
    if (insert(f, r) != 0) {
        conflict_free(r);
        return RD_ENOMEM;
    }
    int old_state = t->state;
    char old_node[RD_NODE_ID_MAX + 1];
    snprintf(old_node, sizeof(old_node), "%s", t->node_id);
    bool adopted = false, changed = false;
    int rv = rd_fsm__task_conflict(f, t, cmd, res, &adopted, &changed);
    if (rv != 0) { /* the task is as it was: so is the record list */
        f->n_conflicts--;
        unmap(f, r);
        conflict_free(r);
        return rv;
    }
    f->conflict_seq = r->seq;
    r->adopted = adopted ? 1 : 0;
    rd_fsm__dg_add(f, RD_DG_CONFLICT, r);
    f->conflicts_written[r->kind][r->resolution]++;
    f->result.value = r->seq;
    trim(f);
    f->result.task = changed ? t : NULL;
    if (changed && f->on_task != NULL)
        f->on_task(f->on_task_data, t, old_state, old_node);
    return 0;
}

/* ---- snapshot section ------------------------------------------------------ */

void rd_fsm__conflict_write_one(struct rd_wbuf *w, const struct rd_conflict *c)
{
    rd_w_str(w, c->id, strlen(c->id));
    rd_w_u64(w, c->seq);
    rd_w_str(w, c->task_id, strlen(c->task_id));
    rd_w_u32(w, c->attempt);
    rd_w_u32(w, c->task_attempt);
    rd_w_u8(w, c->kind);
    rd_w_u8(w, c->resolution);
    rd_w_u8(w, c->resolved_by);
    rd_w_u8(w, c->adopted);
    rd_w_u64(w, c->version);
    rd_w_u64(w, c->stored_version);
    rd_w_u64(w, c->checksum);
    rd_w_str(w, c->node_id, strlen(c->node_id));
    rd_w_str(w, c->task_node_id, strlen(c->task_node_id));
    rd_w_str(w, c->reason, strlen(c->reason));
    rd_w_str(w, c->data, c->data_size);
    rd_w_i64(w, c->at);
}

void rd_fsm__conflicts_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u64(w, f->conflict_seq);
    rd_w_u64(w, f->n_conflicts);
    for (size_t i = 0; i < f->n_conflicts; i++)
        rd_fsm__conflict_write_one(w, live(f)[i]);
}

/* `s` into `out` (a text of 1-39 bytes); false when it is not one. */
static bool id_into(struct rd_str s, char out[40])
{
    if (s.len == 0 || s.len >= 40)
        return false;
    memcpy(out, s.p, s.len);
    out[s.len] = '\0';
    return true;
}

int rd_fsm__conflicts_read(struct rd_fsm *f, struct rd_rbuf *r)
{
    f->conflict_seq = rd_r_u64(r);
    uint64_t count = rd_r_u64(r);
    if (r->err || count > r->len)
        return RD_ECORRUPT;
    uint64_t prev = 0;
    for (uint64_t i = 0; i < count; i++) {
        struct rd_conflict *c = calloc(1, sizeof(*c));
        if (c == NULL)
            return RD_ENOMEM;
        struct rd_str id = rd_r_text(r);
        c->seq = rd_r_u64(r);
        struct rd_str task = rd_r_text(r);
        c->attempt = rd_r_u32(r);
        c->task_attempt = rd_r_u32(r);
        c->kind = rd_r_u8(r);
        c->resolution = rd_r_u8(r);
        c->resolved_by = rd_r_u8(r);
        c->adopted = rd_r_u8(r);
        c->version = rd_r_u64(r);
        c->stored_version = rd_r_u64(r);
        c->checksum = rd_r_u64(r);
        struct rd_str node = rd_r_text(r), task_node = rd_r_text(r), reason = rd_r_text(r);
        struct rd_str data = rd_r_str(r); /* written with its size */
        c->at = rd_r_i64(r);
        bool bad = r->err || !id_into(id, c->id) || !id_into(task, c->task_id) || c->seq <= prev ||
                   c->seq > f->conflict_seq || c->kind >= RD_CONFLICT_KIND_COUNT ||
                   c->resolution >= RD_CONFLICT_RES_COUNT ||
                   c->resolved_by >= RD_CONFLICT_BY_COUNT || c->adopted > 1 ||
                   rd_fsm_conflict_find(f, c->id) != NULL;
        if (!bad) {
            c->node_id = rd_str_dup(node);
            c->task_node_id = rd_str_dup(task_node);
            c->reason = rd_str_dup(reason);
            c->data = rd_str_dup(data);
            c->data_size = data.len;
            bad = !c->node_id || !c->task_node_id || !c->reason || !c->data;
        }
        if (bad || insert(f, c) != 0) {
            conflict_free(c);
            return RD_ECORRUPT;
        }
        prev = c->seq;
    }
    return 0;
}
