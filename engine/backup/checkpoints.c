/*
 * A task's checkpoints read back from a completed backup, for the repair of
 * a checkpoint that failed its checksum (recover/repair.c; DESIGN.md
 * decision 9): the image is read from the backup's target and checked
 * against the record (size, checksum of its bytes), then decoded into a
 * scratch state machine on the libuv thread pool (rd_fsm_restore touches
 * nothing shared), where the task's checkpoints are copied out; the caller
 * gets them on the loop. Images are as large as the state, so one is read
 * and decoded at a time; further requests wait in order.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup_int.h"
#include "common/log.h"
#include "recoveryd/error.h"

struct rd_backup_ckpt_read {
    struct rd_backups *b;
    struct rd_backup_ckpt_read *next; /* in the queue */
    char id[65];
    char target[64];
    char task_id[40];
    uint64_t size, checksum; /* what the record says of the image */
    rd_backup_ckpts_cb cb;
    void *data;
    uint8_t *img;
    size_t img_len;
    uv_work_t work;
    int status;
    char error[512];
    struct rd_checkpoint ckpts[RD_TASK_MAX_KEEP];
    unsigned n;
};

static void start_next(struct rd_backups *b);

static void read_free(struct rd_backup_ckpt_read *c)
{
    for (unsigned i = 0; i < c->n; i++)
        free(c->ckpts[i].data);
    free(c->img);
    free(c);
}

/* Answers the caller and lets the next request go. */
static void finish(struct rd_backup_ckpt_read *c)
{
    struct rd_backups *b = c->b;
    b->ckpt_reading = NULL;
    if (c->status != 0)
        RD_WARN("backup", "checkpoints_unreadable",
                "id=%s target=%s task=%s error=%s detail=\"%s\"", c->id, c->target, c->task_id,
                rd_err_name(c->status), c->error);
    c->cb(c->data, c->status, c->ckpts, c->status == 0 ? c->n : 0,
          c->status == 0 ? NULL : c->error);
    read_free(c);
    start_next(b);
}

/* Off the loop: decode the image, copy the task's checkpoints out. */
static void decode_work(uv_work_t *w)
{
    struct rd_backup_ckpt_read *c = w->data;
    struct rd_fsm scratch;
    rd_fsm_init(&scratch);
    int rv = rd_fsm_restore(&scratch, c->img, c->img_len);
    free(c->img);
    c->img = NULL;
    if (rv != 0) {
        c->status = rv == RD_ENOMEM ? RD_ENOMEM : RD_ECORRUPT;
        snprintf(c->error, sizeof(c->error), "the image of backup %s does not decode: %s", c->id,
                 scratch.errmsg);
        rd_fsm_close(&scratch);
        return;
    }
    const struct rd_task *t = rd_fsm_task(&scratch, c->task_id);
    for (unsigned k = 0; t != NULL && k < t->n_ckpts; k++) {
        struct rd_checkpoint *to = &c->ckpts[c->n];
        *to = t->ckpts[k];
        to->data = malloc((size_t)to->size + 1);
        if (to->data == NULL) {
            c->status = RD_ENOMEM;
            snprintf(c->error, sizeof(c->error), "out of memory copying checkpoints");
            break;
        }
        memcpy(to->data, t->ckpts[k].data, to->size);
        to->data[to->size] = '\0';
        c->n++;
    }
    rd_fsm_close(&scratch);
}

static void decode_done(uv_work_t *w, int status)
{
    struct rd_backup_ckpt_read *c = w->data;
    c->b->work_inflight--;
    if (status != 0) {
        c->status = RD_ESHUTDOWN;
        snprintf(c->error, sizeof(c->error), "the engine is shutting down");
    }
    finish(c);
}

static void image_read(void *data, int status, const void *buf, size_t len)
{
    struct rd_backup_ckpt_read *c = data;
    char name[RD_BACKUP_NAME_MAX];
    rd_backup_image_name(c->id, name);
    if (status != 0) {
        c->status = status;
        snprintf(c->error, sizeof(c->error), "cannot read %s from target %s: %s", name, c->target,
                 status == RD_ENOTFOUND ? "it is missing" : rd_strerror(status));
        finish(c);
        return;
    }
    uint64_t sum = rd_fnv1a(RD_FNV_INIT, buf, len);
    if (len != c->size || sum != c->checksum) {
        char s1[17], s2[17];
        rd_backup_hex16(sum, s1);
        rd_backup_hex16(c->checksum, s2);
        c->status = RD_ECORRUPT;
        snprintf(c->error, sizeof(c->error),
                 "%s on target %s holds %zu bytes hashing to %s; the record says %" PRIu64
                 " bytes hashing to %s: the object was damaged or replaced",
                 name, c->target, len, s1, c->size, s2);
        finish(c);
        return;
    }
    c->img = malloc(len ? len : 1);
    if (c->img == NULL) {
        c->status = RD_ENOMEM;
        snprintf(c->error, sizeof(c->error), "out of memory reading %s (%zu bytes)", name, len);
        finish(c);
        return;
    }
    memcpy(c->img, buf, len);
    c->img_len = len;
    c->work.data = c;
    if (uv_queue_work(c->b->env.loop, &c->work, decode_work, decode_done) != 0) {
        c->status = RD_EIO;
        snprintf(c->error, sizeof(c->error), "cannot queue the decoding of %s", name);
        finish(c);
        return;
    }
    c->b->work_inflight++;
}

/* Starts the oldest waiting request, unless one is under way. */
static void start_next(struct rd_backups *b)
{
    while (b->ckpt_reading == NULL && b->ckpt_head != NULL) {
        struct rd_backup_ckpt_read *c = b->ckpt_head;
        b->ckpt_head = c->next;
        if (b->ckpt_head == NULL)
            b->ckpt_tail = NULL;
        b->ckpt_reading = c;
        const struct rd_backup_ops *ops;
        void *state;
        const char *why = NULL;
        char name[RD_BACKUP_NAME_MAX];
        rd_backup_image_name(c->id, name);
        int rv = rd_backup__target(b, c->target, &ops, &state, &why);
        if (rv == 0)
            rv = ops->read(state, name, image_read, c);
        if (rv != 0) {
            /* The callback will not fire: answer now (finish goes on). */
            c->status = rv;
            snprintf(c->error, sizeof(c->error), "cannot read %s from target %s: %s", name,
                     c->target, why ? why : rd_strerror(rv));
            finish(c);
            return; /* finish started the next one */
        }
    }
}

int rd_backup_task_checkpoints(struct rd_backups *b, const char *id, const char *task_id,
                               rd_backup_ckpts_cb cb, void *data)
{
    const struct rd_backup *r = rd_fsm_backup_find(b->env.fsm, id);
    if (r == NULL) {
        snprintf(b->errmsg, sizeof(b->errmsg), "no backup %s", id);
        return RD_ENOTFOUND;
    }
    if (r->status != RD_BACKUP_COMPLETED) {
        snprintf(b->errmsg, sizeof(b->errmsg), "backup %s is %s: only a completed one holds data",
                 id, rd_backup_status_name(r->status));
        return RD_ECONFLICT;
    }
    const struct rd_backup_ops *ops;
    void *state;
    const char *why;
    if (rd_backup__target(b, r->target, &ops, &state, &why) != 0) {
        snprintf(b->errmsg, sizeof(b->errmsg),
                 "backup %s is on target %s, which cannot be read here: %s", id, r->target, why);
        return RD_ECONFLICT;
    }
    struct rd_backup_ckpt_read *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return RD_ENOMEM;
    c->b = b;
    snprintf(c->id, sizeof(c->id), "%s", id);
    snprintf(c->target, sizeof(c->target), "%s", r->target);
    snprintf(c->task_id, sizeof(c->task_id), "%s", task_id);
    c->size = r->size;
    c->checksum = r->checksum;
    c->cb = cb;
    c->data = data;
    /* First in line with nothing under way: starts now. A read that cannot
     * start is refused here, so the callback never fires inside this call. */
    if (b->ckpt_reading == NULL && b->ckpt_head == NULL) {
        char name[RD_BACKUP_NAME_MAX];
        rd_backup_image_name(c->id, name);
        b->ckpt_reading = c;
        int rv = ops->read(state, name, image_read, c);
        if (rv != 0) {
            b->ckpt_reading = NULL;
            snprintf(b->errmsg, sizeof(b->errmsg), "cannot read %s from target %s: %s", name,
                     r->target, rd_strerror(rv));
            free(c);
            return rv;
        }
        return 0;
    }
    /* Else it waits its turn (also when called from a callback of the read
     * that just ended: the next one starts right after that callback). */
    if (b->ckpt_tail != NULL)
        b->ckpt_tail->next = c;
    else
        b->ckpt_head = c;
    b->ckpt_tail = c;
    return 0;
}

void rd_backup__ckpt_close(struct rd_backups *b)
{
    /* The loop ended: queued requests never started, and none will answer. */
    while (b->ckpt_head != NULL) {
        struct rd_backup_ckpt_read *c = b->ckpt_head;
        b->ckpt_head = c->next;
        read_free(c);
    }
    b->ckpt_tail = NULL;
}
