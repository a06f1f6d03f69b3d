/*
 * The node registry of the state machine: registered agents kept sorted by
 * id (so equal states serialise to equal bytes), their epochs (the fencing
 * token of DESIGN.md decision 3), states and the count per state; the
 * node_register and node_transition commands; the nodes section of a
 * snapshot.
 */
#include <stdlib.h>
#include <string.h>

#include "fsm_int.h"
#include "recoveryd/error.h"

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

void rd_fsm__nodes_clear(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        node_free(f->nodes[i]);
    free(f->nodes);
    rd_map_free(&f->by_id);
    f->nodes = NULL;
    f->n_nodes = f->cap_nodes = 0;
    memset(f->count_by_state, 0, sizeof(f->count_by_state));
    f->fleet_changes++;
}

void rd_fsm__nodes_move(struct rd_fsm *to, struct rd_fsm *from)
{
    to->nodes = from->nodes;
    to->n_nodes = from->n_nodes;
    to->cap_nodes = from->cap_nodes;
    to->by_id = from->by_id;
    memcpy(to->count_by_state, from->count_by_state, sizeof(to->count_by_state));
    to->fleet_changes++;
    from->nodes = NULL;
    from->n_nodes = from->cap_nodes = 0;
    rd_map_init(&from->by_id);
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

size_t rd_fsm_nodes_failed_since(const struct rd_fsm *f, int64_t since_ms)
{
    size_t n = 0;
    if (f->count_by_state[RD_NODE_FAILED] == 0)
        return 0;
    for (size_t i = 0; i < f->n_nodes; i++)
        n += f->nodes[i]->state == RD_NODE_FAILED && f->nodes[i]->updated_at >= since_ms;
    return n;
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
    f->fleet_changes++;
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
    f->fleet_changes++;
}

int rd_fsm__node_move(struct rd_fsm *f, struct rd_node *n, uint8_t state, struct rd_str reason,
                      int64_t time_ms)
{
    rd_fsm__dg_touch(f, RD_DG_NODE, n);
    if (set_str(&n->reason, reason) != 0)
        return RD_ENOMEM;
    set_state(f, n, state);
    n->updated_at = time_ms;
    return 0;
}

/* Where a registration takes a node that is already known. A node that
 * failed or was suspected proves itself in probation first; a draining node
 * stays draining (the operator's intent outlives the agent's restart). */
static uint8_t register_state(uint8_t old)
{
    switch (old) {
    case RD_NODE_FAILED:
    case RD_NODE_SUSPECT:
    case RD_NODE_PROBATION:
        return RD_NODE_PROBATION;
    case RD_NODE_DRAINING:
        return RD_NODE_DRAINING;
    default:
        return RD_NODE_ALIVE;
    }
}

static int apply_register(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_register *c = &cmd->u.reg;
    struct rd_node *n = (struct rd_node *)rd_fsm_node(f, c->node_id.p, c->node_id.len);
    /* An isolated node comes back only when an operator readmits it. */
    if (n != NULL && n->state == RD_NODE_ISOLATED) {
        f->result.node = n;
        f->result.old_state = n->state;
        f->result.status = RD_ECONFLICT;
        return 0;
    }
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
        rd_fsm__dg_add(f, RD_DG_NODE, n);
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
        rd_fsm__dg_touch(f, RD_DG_NODE, n);
        free(n->labels_json), free(n->health_url), free(n->address), free(n->reason);
        n->labels_json = labels;
        n->health_url = url;
        n->address = addr;
        n->reason = reason;
        f->result.old_state = n->state;
        n->epoch++;
        n->slots = c->slots;
        n->updated_at = cmd->time_ms;
        set_state(f, n, register_state(n->state));
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
    if ((n->state == RD_NODE_LEFT && c->state != RD_NODE_LEFT) ||
        (c->from_state != RD_STATE_ANY && c->from_state != n->state)) {
        f->result.status = RD_ECONFLICT;
        return 0;
    }
    /* resolve_faults is the faults' side: fsm.c applies it after the move. */
    return rd_fsm__node_move(f, n, c->state, c->reason, cmd->time_ms);
}

int rd_fsm__node_apply(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    return cmd->type == RD_CMD_NODE_REGISTER ? apply_register(f, cmd) : apply_transition(f, cmd);
}

/* ---- snapshot section --------------------------------------------------- */

void rd_fsm__node_write_one(struct rd_wbuf *w, const struct rd_node *n)
{
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

void rd_fsm__nodes_write(const struct rd_fsm *f, struct rd_wbuf *w)
{
    rd_w_u64(w, f->n_nodes);
    for (size_t i = 0; i < f->n_nodes; i++)
        rd_fsm__node_write_one(w, f->nodes[i]);
}

int rd_fsm__nodes_read(struct rd_fsm *f, struct rd_rbuf *r)
{
    uint64_t count = rd_r_u64(r);
    if (r->err || count > r->len) /* each node takes many bytes: a bound on garbage */
        return RD_ECORRUPT;
    for (uint64_t i = 0; i < count; i++) {
        struct rd_node *n = calloc(1, sizeof(*n));
        if (n == NULL)
            return RD_ENOMEM;
        struct rd_str id = rd_r_str(r); /* binary-safe: written with its length */
        n->epoch = rd_r_u64(r);
        n->state = rd_r_u8(r);
        n->slots = rd_r_u32(r);
        struct rd_str labels = rd_r_text(r), url = rd_r_text(r), addr = rd_r_text(r),
                      reason = rd_r_text(r);
        n->registered_at = rd_r_i64(r);
        n->updated_at = rd_r_i64(r);
        if (r->err || n->state >= RD_NODE_STATE_COUNT || id.len == 0 ||
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
    return 0;
}
