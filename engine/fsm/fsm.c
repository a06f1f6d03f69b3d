#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/util.h"
#include "fsm.h"
#include "recoveryd/error.h"

#define SNAP_MAGIC  "RDSNAP\0\1"
#define SNAP_FORMAT 1

static void node_free(struct rd_node *n)
{
    if (n == NULL)
        return;
    free(n->node_id);
    free(n->labels_json);
    free(n->health_url);
    free(n->address);
    free(n->reason);
    free(n);
}

static void state_clear(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        node_free(f->nodes[i]);
    free(f->nodes);
    rd_map_free(&f->by_id);
    f->nodes = NULL;
    f->n_nodes = f->cap_nodes = 0;
    f->n_applied = 0;
    f->last_time_ms = 0;
    memset(f->count_by_state, 0, sizeof(f->count_by_state));
}

static int cmp_id(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}

/* Index of the first node whose id is >= id. */
static size_t lower_bound(const struct rd_fsm *f, const char *id, size_t len)
{
    size_t lo = 0, hi = f->n_nodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct rd_node *n = f->nodes[mid];
        if (cmp_id(n->node_id, n->id_len, id, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t rd_fsm_node_after(const struct rd_fsm *f, const char *id, size_t len)
{
    size_t i = lower_bound(f, id, len);
    if (i < f->n_nodes && cmp_id(f->nodes[i]->node_id, f->nodes[i]->id_len, id, len) == 0)
        i++;
    return i;
}

const struct rd_node *rd_fsm_node(const struct rd_fsm *f, const char *id, size_t len)
{
    return rd_map_get(&f->by_id, id, len);
}

/* Inserts `n` in order; the caller checked it is not there. */
static int node_insert(struct rd_fsm *f, struct rd_node *n)
{
    if (f->n_nodes == f->cap_nodes) {
        size_t ncap = f->cap_nodes ? f->cap_nodes * 2 : 64;
        struct rd_node **nn = realloc(f->nodes, ncap * sizeof(*nn));
        if (nn == NULL)
            return RD_ENOMEM;
        f->nodes = nn;
        f->cap_nodes = ncap;
    }
    if (rd_map_put(&f->by_id, n->node_id, n->id_len, n) != 0)
        return RD_ENOMEM;
    size_t i = lower_bound(f, n->node_id, n->id_len);
    memmove(&f->nodes[i + 1], &f->nodes[i], (f->n_nodes - i) * sizeof(*f->nodes));
    f->nodes[i] = n;
    f->n_nodes++;
    f->count_by_state[n->state]++;
    return 0;
}

/* Replaces *slot with a copy of `s`; on ENOMEM the old value stays. */
static int set_str(char **slot, struct rd_str s)
{
    char *d = rd_str_dup(s);
    if (d == NULL)
        return RD_ENOMEM;
    free(*slot);
    *slot = d;
    return 0;
}

static void set_state(struct rd_fsm *f, struct rd_node *n, uint8_t state)
{
    f->count_by_state[n->state]--;
    n->state = state;
    f->count_by_state[state]++;
}

static int apply_register(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_register *c = &cmd->u.reg;
    struct rd_node *n = (struct rd_node *)rd_fsm_node(f, c->node_id.p, c->node_id.len);
    if (n == NULL) {
        n = calloc(1, sizeof(*n));
        if (n == NULL)
            return RD_ENOMEM;
        n->node_id = rd_str_dup(c->node_id);
        n->labels_json = rd_str_dup(c->labels_json);
        n->health_url = rd_str_dup(c->health_url);
        n->address = rd_str_dup(c->address);
        n->reason = rd_str_dup(RD_STR("registered"));
        if (!n->node_id || !n->labels_json || !n->health_url || !n->address || !n->reason) {
            node_free(n);
            return RD_ENOMEM;
        }
        n->id_len = c->node_id.len;
        n->epoch = 1;
        n->state = RD_NODE_ALIVE;
        n->slots = c->slots;
        n->registered_at = n->updated_at = cmd->time_ms;
        int rv = node_insert(f, n);
        if (rv != 0) {
            rd_map_del(&f->by_id, n->node_id, n->id_len);
            node_free(n);
            return rv;
        }
        f->result.old_state = -1;
    } else {
        /* Allocate everything first so a failure changes nothing. */
        char *labels = rd_str_dup(c->labels_json);
        char *url = rd_str_dup(c->health_url);
        char *addr = rd_str_dup(c->address);
        char *reason = rd_str_dup(RD_STR("registered"));
        if (!labels || !url || !addr || !reason) {
            free(labels), free(url), free(addr), free(reason);
            return RD_ENOMEM;
        }
        free(n->labels_json), free(n->health_url), free(n->address), free(n->reason);
        n->labels_json = labels;
        n->health_url = url;
        n->address = addr;
        n->reason = reason;
        f->result.old_state = n->state;
        n->epoch++;
        n->slots = c->slots;
        n->updated_at = cmd->time_ms;
        set_state(f, n, RD_NODE_ALIVE);
    }
    f->result.node = n;
    return 0;
}

static int apply_transition(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_transition *c = &cmd->u.trans;
    struct rd_node *n = (struct rd_node *)rd_fsm_node(f, c->node_id.p, c->node_id.len);
    if (n == NULL) {
        f->result.status = RD_ENOTFOUND;
        return 0;
    }
    f->result.node = n;
    f->result.old_state = n->state;
    if (c->epoch != 0 && c->epoch != n->epoch) {
        f->result.status = RD_EFENCED;
        return 0;
    }
    /* A node that left comes back only by registering again (new epoch). */
    if (n->state == RD_NODE_LEFT && c->state != RD_NODE_LEFT) {
        f->result.status = RD_ECONFLICT;
        return 0;
    }
    if (set_str(&n->reason, c->reason) != 0)
        return RD_ENOMEM;
    set_state(f, n, c->state);
    n->updated_at = cmd->time_ms;
    return 0;
}

int rd_fsm_apply(struct rd_fsm *f, const void *buf, size_t len, const struct rd_fsm_result **out)
{
    struct rd_cmd cmd;
    memset(&f->result, 0, sizeof(f->result));
    f->result.old_state = -1;
    if (out)
        *out = &f->result;
    int rv = rd_cmd_decode(buf, len, &cmd);
    if (rv != 0) {
        snprintf(f->errmsg, sizeof(f->errmsg),
                 "cannot apply command (format %u, type %u, %zu bytes): %s",
                 len > 0 ? ((const uint8_t *)buf)[0] : 0, len > 1 ? ((const uint8_t *)buf)[1] : 0,
                 len, rd_strerror(rv));
        f->result.status = rv;
        return rv;
    }
    f->result.type = cmd.type;
    switch (cmd.type) {
    case RD_CMD_NOOP:
        break;
    case RD_CMD_NODE_REGISTER:
        rv = apply_register(f, &cmd);
        break;
    case RD_CMD_NODE_TRANSITION:
        rv = apply_transition(f, &cmd);
        break;
    }
    if (rv != 0) {
        f->result.status = rv;
        f->result.node = NULL;
        snprintf(f->errmsg, sizeof(f->errmsg), "apply %s: %s", rd_cmd_type_name(cmd.type),
                 rd_strerror(rv));
        return rv;
    }
    f->n_applied++;
    if (cmd.time_ms > f->last_time_ms)
        f->last_time_ms = cmd.time_ms;
    if (f->result.node != NULL)
        f->result.value = f->result.node->epoch;
    if (f->result.status == 0 && f->result.node != NULL && f->on_node != NULL)
        f->on_node(f->on_node_data, f->result.node, f->result.old_state);
    return 0;
}

/* ---- snapshots ---------------------------------------------------------- */

static void write_state(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u64(w, f->n_applied);
    rd_w_i64(w, f->last_time_ms);
    rd_w_u64(w, f->n_nodes);
    for (size_t i = 0; i < f->n_nodes; i++) {
        const struct rd_node *n = f->nodes[i];
        rd_w_str(w, n->node_id, n->id_len);
        rd_w_u64(w, n->epoch);
        rd_w_u8(w, n->state);
        rd_w_u32(w, n->slots);
        rd_w_str(w, n->labels_json, strlen(n->labels_json));
        rd_w_str(w, n->health_url, strlen(n->health_url));
        rd_w_str(w, n->address, strlen(n->address));
        rd_w_str(w, n->reason, strlen(n->reason));
        rd_w_i64(w, n->registered_at);
        rd_w_i64(w, n->updated_at);
    }
}

static int read_state(struct rd_fsm *f, const void *p, size_t len)
{
    struct rd_rbuf r;
    rd_r_init(&r, p, len);
    f->n_applied = rd_r_u64(&r);
    f->last_time_ms = rd_r_i64(&r);
    uint64_t count = rd_r_u64(&r);
    if (r.err || count > len) /* each node takes many bytes: a bound on garbage */
        return RD_ECORRUPT;
    for (uint64_t i = 0; i < count; i++) {
        struct rd_node *n = calloc(1, sizeof(*n));
        if (n == NULL)
            return RD_ENOMEM;
        struct rd_str id = rd_r_str(&r);
        n->epoch = rd_r_u64(&r);
        n->state = rd_r_u8(&r);
        n->slots = rd_r_u32(&r);
        struct rd_str labels = rd_r_str(&r), url = rd_r_str(&r), addr = rd_r_str(&r),
                      reason = rd_r_str(&r);
        n->registered_at = rd_r_i64(&r);
        n->updated_at = rd_r_i64(&r);
        if (r.err || n->state >= RD_NODE_STATE_COUNT || id.len == 0 ||
            rd_fsm_node(f, id.p, id.len) != NULL) {
            free(n);
            return RD_ECORRUPT;
        }
        n->node_id = rd_str_dup(id);
        n->id_len = id.len;
        n->labels_json = rd_str_dup(labels);
        n->health_url = rd_str_dup(url);
        n->address = rd_str_dup(addr);
        n->reason = rd_str_dup(reason);
        if (!n->node_id || !n->labels_json || !n->health_url || !n->address || !n->reason) {
            node_free(n);
            return RD_ENOMEM;
        }
        if (node_insert(f, n) != 0) {
            node_free(n);
            return RD_ENOMEM;
        }
    }
    return r.off == r.len ? 0 : RD_ECORRUPT;
}

int rd_fsm_snapshot(const struct rd_fsm *f, struct rd_wbuf *out)
{
    struct rd_wbuf raw;
    rd_w_init(&raw);
    write_state(f, &raw);
    if (raw.err) {
        int rv = raw.err;
        rd_w_free(&raw);
        return rv;
    }
    size_t bound = ZSTD_compressBound(raw.len);
    rd_w_bytes(out, SNAP_MAGIC, 8);
    rd_w_u32(out, SNAP_FORMAT);
    rd_w_u64(out, raw.len);
    rd_w_u64(out, rd_fnv1a(RD_FNV_INIT, raw.p, raw.len));
    size_t hdr = out->len;
    /* Reserve room for the compressed frame, then compress in place. */
    rd_w_bytes(out, raw.p, 0);
    if (out->err == 0 && out->cap < hdr + bound) {
        uint8_t *np = realloc(out->p, hdr + bound);
        if (np == NULL)
            out->err = RD_ENOMEM;
        else {
            out->p = np;
            out->cap = hdr + bound;
        }
    }
    if (out->err) {
        rd_w_free(&raw);
        return out->err;
    }
    size_t z = ZSTD_compress(out->p + hdr, bound, raw.p, raw.len, 3);
    rd_w_free(&raw);
    if (ZSTD_isError(z))
        return RD_EINTERNAL;
    out->len = hdr + z;
    return 0;
}

int rd_fsm_restore(struct rd_fsm *f, const void *buf, size_t len)
{
    struct rd_rbuf r;
    rd_r_init(&r, buf, len);
    const uint8_t *magic = rd_r_bytes(&r, 8);
    uint32_t format = rd_r_u32(&r);
    uint64_t raw_len = rd_r_u64(&r);
    uint64_t sum = rd_r_u64(&r);
    if (r.err || memcmp(magic, SNAP_MAGIC, 8) != 0) {
        snprintf(f->errmsg, sizeof(f->errmsg), "snapshot: bad magic or short header");
        return RD_ECORRUPT;
    }
    if (format != SNAP_FORMAT) {
        snprintf(f->errmsg, sizeof(f->errmsg), "snapshot: format %u, this version reads %u", format,
                 SNAP_FORMAT);
        return RD_EUNSUPPORTED;
    }
    unsigned long long frame = ZSTD_getFrameContentSize(r.p + r.off, r.len - r.off);
    if (frame != raw_len || raw_len > (1ULL << 34)) {
        snprintf(f->errmsg, sizeof(f->errmsg), "snapshot: size mismatch");
        return RD_ECORRUPT;
    }
    uint8_t *raw = malloc(raw_len ? raw_len : 1);
    if (raw == NULL)
        return RD_ENOMEM;
    size_t got = ZSTD_decompress(raw, raw_len, r.p + r.off, r.len - r.off);
    if (ZSTD_isError(got) || got != raw_len || rd_fnv1a(RD_FNV_INIT, raw, got) != sum) {
        free(raw);
        snprintf(f->errmsg, sizeof(f->errmsg), "snapshot: checksum or decompression failed");
        return RD_ECORRUPT;
    }
    struct rd_fsm fresh;
    rd_fsm_init(&fresh);
    int rv = read_state(&fresh, raw, got);
    free(raw);
    if (rv != 0) {
        state_clear(&fresh);
        snprintf(f->errmsg, sizeof(f->errmsg), "snapshot: %s", rd_strerror(rv));
        return rv;
    }
    state_clear(f);
    f->nodes = fresh.nodes;
    f->n_nodes = fresh.n_nodes;
    f->cap_nodes = fresh.cap_nodes;
    f->by_id = fresh.by_id;
    f->n_applied = fresh.n_applied;
    f->last_time_ms = fresh.last_time_ms;
    memcpy(f->count_by_state, fresh.count_by_state, sizeof(f->count_by_state));
    f->restores++;
    return 0;
}

uint64_t rd_fsm_digest(const struct rd_fsm *f)
{
    struct rd_wbuf raw;
    rd_w_init(&raw);
    write_state(f, &raw);
    uint64_t h = raw.err ? 0 : rd_fnv1a(RD_FNV_INIT, raw.p, raw.len);
    rd_w_free(&raw);
    return h;
}

/* ---- raft glue ---------------------------------------------------------- */

static int fsm_apply_cb(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
    struct rd_fsm *f = rf->data;
    const struct rd_fsm_result *res;
    int rv = rd_fsm_apply(f, buf->base, buf->len, &res);
    *result = rd_fsm_pack(res->status, res->value);
    if (rv == RD_ENOMEM)
        return RAFT_NOMEM;
    /* An unreadable command is refused for this entry only: stopping here
     * would wedge the replica forever; the error travels in the result and
     * the log (errmsg), and the digest check will show any divergence. */
    return 0;
}

static int fsm_snapshot_cb(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n)
{
    struct rd_fsm *f = rf->data;
    struct rd_wbuf w;
    rd_w_init(&w);
    int rv = rd_fsm_snapshot(f, &w);
    if (rv != 0) {
        rd_w_free(&w);
        return RAFT_NOMEM;
    }
    /* raft's default heap is malloc/free, so the buffers pass straight over;
     * raft frees both the array and the data (fsm version 1). */
    *bufs = raft_malloc(sizeof(**bufs));
    if (*bufs == NULL) {
        rd_w_free(&w);
        return RAFT_NOMEM;
    }
    (*bufs)[0].base = w.p;
    (*bufs)[0].len = w.len;
    *n = 1;
    return 0;
}

static int fsm_restore_cb(struct raft_fsm *rf, struct raft_buffer *buf)
{
    struct rd_fsm *f = rf->data;
    int rv = rd_fsm_restore(f, buf->base, buf->len);
    if (rv != 0)
        return rv == RD_ENOMEM ? RAFT_NOMEM : RAFT_CORRUPT;
    raft_free(buf->base);
    return 0;
}

int rd_fsm_init(struct rd_fsm *f)
{
    memset(f, 0, sizeof(*f));
    rd_map_init(&f->by_id);
    f->raft.version = 1;
    f->raft.data = f;
    f->raft.apply = fsm_apply_cb;
    f->raft.snapshot = fsm_snapshot_cb;
    f->raft.restore = fsm_restore_cb;
    return 0;
}

void rd_fsm_close(struct rd_fsm *f)
{
    state_clear(f);
}
