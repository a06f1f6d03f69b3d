/*
 * Fault injection into the state machine, for tests of consistency checks
 * and repair (issue 11). Compiled only into the rdinject library (with
 * RD_FAULT_INJECTION defined: engine/CMakeLists.txt), never into rdcore or
 * the default recoveryd binary (tests/symbols checks that the symbols are
 * absent there).
 *
 * What it does is what a bug in apply or a flipped bit in memory would do:
 * a record's bytes change on one replica only. The corrupted record is
 * re-hashed through the touch list, so the incremental digest shows the
 * change (the replica diverges and its next check says so); the digest skew
 * instead leaves the state alone and corrupts only the incremental sum, so
 * only a full recomputation (rd_fsm_digest_full) catches it.
 */
#ifdef RD_FAULT_INJECTION

#include <string.h>

#include "fsm_int.h"
#include "recoveryd/error.h"

/* Flips the low bit of the middle byte of `s` (NUL-terminated, printable:
 * the result stays non-NUL, so the length stays). */
static int flip(char *s, size_t len)
{
    if (len == 0)
        return RD_EINVAL;
    size_t at = len / 2;
    s[at] = (char)(s[at] ^ 0x01);
    if (s[at] == '\0')
        s[at] = (char)0x01; /* was 0x01: keep a byte there */
    return 0;
}

int rd_fsm_inject_corrupt(struct rd_fsm *f, const char *what, const char *id)
{
    if (what == NULL || id == NULL)
        return RD_EINVAL;
    int rv;
    if (strcmp(what, "node") == 0) {
        struct rd_node *n = (struct rd_node *)rd_fsm_node(f, id, strlen(id));
        if (n == NULL)
            return RD_ENOTFOUND;
        rd_fsm__dg_touch(f, RD_DG_NODE, n);
        rv = flip(n->labels_json, strlen(n->labels_json));
    } else if (strcmp(what, "checkpoint") == 0) {
        struct rd_task *t = (struct rd_task *)rd_fsm_task(f, id);
        if (t == NULL)
            return RD_ENOTFOUND;
        if (t->n_ckpts == 0)
            return RD_ENOTFOUND;
        rd_fsm__dg_touch(f, RD_DG_TASK, t);
        struct rd_checkpoint *c = &t->ckpts[t->n_ckpts - 1];
        rv = flip(c->data, c->size);
    } else {
        return RD_EINVAL;
    }
    rd_fsm__dg_commit(f);
    return rv;
}

int rd_fsm_inject_digest_skew(struct rd_fsm *f)
{
    f->dg.sum[RD_DG_NODE] += 0x9e3779b97f4a7c15ULL;
    return 0;
}

#endif
