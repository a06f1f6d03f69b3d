/*
 * Consistency checks in the state machine (issue 11; DESIGN.md decision 9).
 * A check is a log command: every replica that applies it computes its
 * state digest right there, before the check's own record joins the state,
 * so every replica digests exactly the same prefix of the log. That digest
 * is local (a diverged replica's differs by definition): it goes to a ring
 * of the last RD_FSM_CHECK_LOCAL_KEEP and to the on_check observer, which
 * reports it to the leader. The leader's verdict comes back as a
 * check_result command (pending -> consistent, mismatch or incomplete).
 * Records are kept in order with a map by id, at most RD_FSM_MAX_CHECKS
 * (the oldest finished ones go first).
 *
 * Section (snapshot format 4 on): u64 count | count records.
 */
#include <stdlib.h>
#include <string.h>

#include "fsm_int.h"
#include "recoveryd/error.h"

static void check_free(struct rd_check *c)
{
    if (c == NULL)
        return;
    free(c->digests_json);
    free(c->diverged_json);
    free(c);
}

void rd_fsm__checks_clear(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_checks; i++)
        check_free(f->checks[i]);
    free(f->checks);
    rd_map_free(&f->checks_by_id);
    rd_map_init(&f->checks_by_id);
    f->checks = NULL;
    f->n_checks = f->cap_checks = 0;
    /* The local ring is not state: it stays (fsm.h). */
}

void rd_fsm__checks_move(struct rd_fsm *to, struct rd_fsm *from)
{
    to->checks = from->checks;
    to->n_checks = from->n_checks;
    to->cap_checks = from->cap_checks;
    to->checks_by_id = from->checks_by_id;
    from->checks = NULL;
    from->n_checks = from->cap_checks = 0;
    rd_map_init(&from->checks_by_id);
}

const struct rd_check *const *rd_fsm_checks(const struct rd_fsm *f, size_t *n)
{
    *n = f->n_checks;
    return (const struct rd_check *const *)f->checks;
}

const struct rd_check *rd_fsm_check_find(const struct rd_fsm *f, const char *id)
{
    return rd_map_get(&f->checks_by_id, id, strlen(id));
}

const struct rd_check_local *rd_fsm_check_local(const struct rd_fsm *f, const char *id)
{
    /* Newest first. */
    for (unsigned k = 0; k < f->n_check_local; k++) {
        unsigned i =
            (f->check_local_next + RD_FSM_CHECK_LOCAL_KEEP - 1 - k) % RD_FSM_CHECK_LOCAL_KEEP;
        if (strcmp(f->check_local[i].id, id) == 0)
            return &f->check_local[i];
    }
    return NULL;
}

static int insert(struct rd_fsm *f, struct rd_check *c)
{
    if (f->n_checks == f->cap_checks) {
        size_t ncap = f->cap_checks ? f->cap_checks * 2 : 16;
        struct rd_check **nc = realloc(f->checks, ncap * sizeof(*nc));
        if (nc == NULL)
            return RD_ENOMEM;
        f->checks = nc;
        f->cap_checks = ncap;
    }
    if (rd_map_put(&f->checks_by_id, c->id, strlen(c->id), c) != 0)
        return RD_ENOMEM;
    f->checks[f->n_checks++] = c;
    return 0;
}

/* Drops the oldest records that are not pending beyond RD_FSM_MAX_CHECKS. */
static void prune(struct rd_fsm *f)
{
    if (f->n_checks <= RD_FSM_MAX_CHECKS)
        return;
    size_t excess = f->n_checks - RD_FSM_MAX_CHECKS, kept = 0;
    for (size_t i = 0; i < f->n_checks; i++) {
        struct rd_check *c = f->checks[i];
        if (excess > 0 && c->status != RD_CHECK_PENDING) {
            rd_map_del(&f->checks_by_id, c->id, strlen(c->id));
            rd_fsm__dg_remove(f, RD_DG_CHECK, c);
            check_free(c);
            excess--;
        } else {
            f->checks[kept++] = c;
        }
    }
    f->n_checks = kept;
}

static int apply_check(struct rd_fsm *f, const struct rd_cmd *cmd, const char *id)
{
    if (rd_fsm_check_find(f, id) != NULL) { /* a retried proposal: once is enough */
        f->result.status = RD_EEXISTS;
        return 0;
    }
    /* The digest first: of the state every replica holds before this entry. */
    uint64_t digest = rd_fsm_digest(f);
    struct rd_check *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return RD_ENOMEM;
    memcpy(c->id, id, strlen(id) + 1);
    c->index = f->applying_index;
    c->started_at_ms = cmd->time_ms;
    c->status = RD_CHECK_PENDING;
    if (insert(f, c) != 0) {
        rd_map_del(&f->checks_by_id, c->id, strlen(c->id));
        check_free(c);
        return RD_ENOMEM;
    }
    rd_fsm__dg_add(f, RD_DG_CHECK, c);
    prune(f);

    struct rd_check_local *l = &f->check_local[f->check_local_next];
    memset(l, 0, sizeof(*l));
    memcpy(l->id, id, strlen(id) + 1);
    l->index = c->index;
    l->digest = digest;
    f->check_local_next = (f->check_local_next + 1) % RD_FSM_CHECK_LOCAL_KEEP;
    if (f->n_check_local < RD_FSM_CHECK_LOCAL_KEEP)
        f->n_check_local++;
    f->result.value = c->index; /* the proposer learns where its check landed */
    if (f->on_check != NULL)
        f->on_check(f->on_check_data, l);
    return 0;
}

static int apply_result(struct rd_fsm *f, const struct rd_cmd *cmd, const char *id)
{
    const struct rd_cmd_check_result *r = &cmd->u.cresult;
    struct rd_check *c = (struct rd_check *)rd_fsm_check_find(f, id);
    if (c == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    /* One verdict per check, and a verdict is not "pending". */
    if (c->status != RD_CHECK_PENDING || r->status == RD_CHECK_PENDING) {
        f->result.status = RD_ECONFLICT;
        return 0;
    }
    char *digests = r->digests_json.len ? rd_str_dup(r->digests_json) : NULL;
    char *diverged = r->diverged_json.len ? rd_str_dup(r->diverged_json) : NULL;
    if ((r->digests_json.len && digests == NULL) || (r->diverged_json.len && diverged == NULL)) {
        free(digests);
        free(diverged);
        return RD_ENOMEM;
    }
    rd_fsm__dg_touch(f, RD_DG_CHECK, c);
    free(c->digests_json);
    free(c->diverged_json);
    c->digests_json = digests;
    c->diverged_json = diverged;
    c->status = r->status;
    c->completed_at_ms = cmd->time_ms;
    return 0;
}

int rd_fsm__check_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    struct rd_str sid = cmd->type == RD_CMD_CHECK ? cmd->u.check.id : cmd->u.cresult.id;
    /* An id with a NUL inside would be cut short once stored (an empty one
     * makes a snapshot unreadable): refused. */
    if (memchr(sid.p, '\0', sid.len) != NULL) {
        f->result.status = RD_EINVAL;
        return 0;
    }
    char id[65];
    memcpy(id, sid.p, sid.len); /* decode: 1 to 64 bytes */
    id[sid.len] = '\0';
    return cmd->type == RD_CMD_CHECK ? apply_check(f, cmd, id) : apply_result(f, cmd, id);
}

/* ---- snapshot section --------------------------------------------------- */

void rd_fsm__check_write_one(struct rd_wbuf *w, const struct rd_check *c)
{
    rd_w_str(w, c->id, strlen(c->id));
    rd_w_u64(w, c->index);
    rd_w_i64(w, c->started_at_ms);
    rd_w_i64(w, c->completed_at_ms);
    rd_w_u8(w, c->status);
    rd_w_str(w, c->digests_json, c->digests_json ? strlen(c->digests_json) : 0);
    rd_w_str(w, c->diverged_json, c->diverged_json ? strlen(c->diverged_json) : 0);
}

void rd_fsm__checks_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u64(w, f->n_checks);
    for (size_t i = 0; i < f->n_checks; i++)
        rd_fsm__check_write_one(w, f->checks[i]);
}

int rd_fsm__checks_read(struct rd_fsm *f, struct rd_rbuf *r)
{
    uint64_t count = rd_r_u64(r);
    if (r->err || count > r->len)
        return RD_ECORRUPT;
    for (uint64_t i = 0; i < count; i++) {
        struct rd_check *c = calloc(1, sizeof(*c));
        if (c == NULL)
            return RD_ENOMEM;
        struct rd_str id = rd_r_text(r);
        c->index = rd_r_u64(r);
        c->started_at_ms = rd_r_i64(r);
        c->completed_at_ms = rd_r_i64(r);
        c->status = rd_r_u8(r);
        struct rd_str digests = rd_r_text(r), diverged = rd_r_text(r);
        bool bad = r->err || id.len == 0 || id.len >= sizeof(c->id) || rd_str_has_nul(id) ||
                   c->status >= RD_CHECK_STATUS_COUNT;
        if (!bad) {
            memcpy(c->id, id.p, id.len);
            c->id[id.len] = '\0';
            bad = rd_fsm_check_find(f, c->id) != NULL;
        }
        if (!bad && digests.len > 0)
            bad = (c->digests_json = rd_str_dup(digests)) == NULL;
        if (!bad && diverged.len > 0)
            bad = (c->diverged_json = rd_str_dup(diverged)) == NULL;
        if (bad || insert(f, c) != 0) {
            check_free(c);
            return RD_ECORRUPT;
        }
    }
    return 0;
}
