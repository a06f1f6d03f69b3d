/*
 * Backup records and the archive position (issue 11). SKELETON: the
 * commands are accepted and change nothing yet; the sections are empty.
 */
#include "fsm_int.h"
#include "recoveryd/error.h"

const struct rd_backup *rd_fsm_backup_find(const struct rd_fsm *f, const char *id)
{
    (void)f;
    (void)id;
    return NULL;
}

int rd_fsm__backup_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    (void)f;
    (void)cmd;
    return 0;
}

int rd_fsm__archive_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    (void)f;
    (void)cmd;
    return 0;
}

void rd_fsm__backups_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    (void)f;
    rd_w_u32(w, 0);
}

int rd_fsm__backups_read(struct rd_fsm *f, struct rd_rbuf *r)
{
    (void)f;
    return rd_r_u32(r) == 0 && !r->err ? 0 : RD_ECORRUPT;
}

void rd_fsm__backups_clear(struct rd_fsm *f)
{
    (void)f;
}

void rd_fsm__backups_move(struct rd_fsm *to, struct rd_fsm *from)
{
    (void)to;
    (void)from;
}
