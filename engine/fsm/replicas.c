/*
 * What the log knows of the engine's replicas beyond raft's configuration:
 * their API URLs, sorted by id (replica_info commands), for redirects and
 * health polls; the replicas section of a snapshot (format 3 on).
 */
#include <string.h>

#include "fsm_int.h"
#include "recoveryd/error.h"

void rd_fsm__replicas_clear(struct rd_fsm *f)
{
    memset(f->replicas, 0, sizeof(f->replicas));
    f->n_replicas = 0;
}

void rd_fsm__replicas_move(struct rd_fsm *to, struct rd_fsm *from)
{
    memcpy(to->replicas, from->replicas, sizeof(to->replicas));
    to->n_replicas = from->n_replicas;
    rd_fsm__replicas_clear(from);
}

const char *rd_fsm_replica_url(const struct rd_fsm *f, uint64_t id)
{
    for (unsigned i = 0; i < f->n_replicas; i++)
        if (f->replicas[i].id == id)
            return f->replicas[i].api_url;
    return NULL;
}

int rd_fsm__replica_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_replica_info *c = &cmd->u.rinfo;
    /* A URL with a NUL inside would be stored cut short, maybe empty, and a
     * snapshot holding an empty URL does not read back: refused. */
    if (memchr(c->api_url.p, '\0', c->api_url.len) != NULL) {
        f->result.status = RD_EINVAL;
        return 0;
    }
    unsigned i = 0;
    while (i < f->n_replicas && f->replicas[i].id < c->id)
        i++;
    bool found = i < f->n_replicas && f->replicas[i].id == c->id;
    if (c->api_url.len == 0) { /* forget */
        if (found) {
            memmove(&f->replicas[i], &f->replicas[i + 1],
                    (f->n_replicas - i - 1) * sizeof(f->replicas[0]));
            f->n_replicas--;
        }
        return 0;
    }
    if (!found) {
        if (f->n_replicas == RD_FSM_MAX_REPLICAS) {
            f->result.status = RD_ECONFLICT;
            return 0;
        }
        memmove(&f->replicas[i + 1], &f->replicas[i], (f->n_replicas - i) * sizeof(f->replicas[0]));
        f->n_replicas++;
    }
    memset(&f->replicas[i], 0, sizeof(f->replicas[i]));
    f->replicas[i].id = c->id;
    memcpy(f->replicas[i].api_url, c->api_url.p, c->api_url.len);
    return 0;
}

/* ---- snapshot section --------------------------------------------------- */

void rd_fsm__replicas_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u32(w, f->n_replicas);
    for (unsigned i = 0; i < f->n_replicas; i++) {
        rd_w_u64(w, f->replicas[i].id);
        rd_w_str(w, f->replicas[i].api_url, strlen(f->replicas[i].api_url));
    }
}

int rd_fsm__replicas_read(struct rd_fsm *f, struct rd_rbuf *r)
{
    uint32_t n = rd_r_u32(r);
    if (r->err || n > RD_FSM_MAX_REPLICAS)
        return RD_ECORRUPT;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id = rd_r_u64(r);
        struct rd_str url = rd_r_text(r);
        if (r->err || id == 0 || url.len == 0 || url.len > 255 ||
            (i > 0 && id <= f->replicas[i - 1].id))
            return RD_ECORRUPT;
        f->replicas[i].id = id;
        memcpy(f->replicas[i].api_url, url.p, url.len);
        f->n_replicas = i + 1;
    }
    return 0;
}
