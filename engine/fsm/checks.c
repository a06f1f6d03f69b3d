/*
 * Consistency checks (issue 11). SKELETON: the commands are accepted and
 * change nothing yet; the section is empty.
 */
#include "fsm_int.h"
#include "recoveryd/error.h"

const struct rd_check *rd_fsm_check_find(const struct rd_fsm *f, const char *id)
{
    (void)f;
    (void)id;
    return NULL;
}

const struct rd_check_local *rd_fsm_check_local(const struct rd_fsm *f, const char *id)
{
    (void)f;
    (void)id;
    return NULL;
}

int rd_fsm__check_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    (void)f;
    (void)cmd;
    return 0;
}

void rd_fsm__checks_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    (void)f;
    rd_w_u32(w, 0);
}

int rd_fsm__checks_read(struct rd_fsm *f, struct rd_rbuf *r)
{
    (void)f;
    return rd_r_u32(r) == 0 && !r->err ? 0 : RD_ECORRUPT;
}

void rd_fsm__checks_clear(struct rd_fsm *f)
{
    (void)f;
}

void rd_fsm__checks_move(struct rd_fsm *to, struct rd_fsm *from)
{
    (void)to;
    (void)from;
}
