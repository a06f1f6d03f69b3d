#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/log.h"
#include "common/util.h"
#include "fsm_int.h"
#include "recoveryd/error.h"

#define SNAP_MAGIC "RDSNAP\0\1"
#define SNAP_FORMAT                                                                                \
    3 /* 3: replica API URLs; 2: tasks carry failure times; 1 and 2 are still read */

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

static void state_clear(struct rd_fsm *f)
{
    for (size_t i = 0; i < f->n_nodes; i++)
        node_free(f->nodes[i]);
    free(f->nodes);
    rd_map_free(&f->by_id);
    for (size_t i = 0; i < f->n_faults; i++)
        fault_free(f->faults[i]);
    free(f->faults);
    rd_map_free(&f->faults_by_id);
    f->faults = NULL;
    f->n_faults = f->cap_faults = 0;
    f->fault_seq = 0;
    f->open_faults = 0;
    rd_fsm__tasks_clear(f);
    rd_fsm__recoveries_clear(f);
    f->nodes = NULL;
    f->n_nodes = f->cap_nodes = 0;
    f->n_applied = 0;
    f->last_time_ms = 0;
    memset(f->count_by_state, 0, sizeof(f->count_by_state));
    memset(f->replicas, 0, sizeof(f->replicas));
    f->n_replicas = 0;
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
        set_state(f, n, register_state(n->state));
    }
    f->result.node = n;
    return 0;
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

/* Resolves every open fault of `n` (a node that recovered or left). */
static int resolve_node_faults(struct rd_fsm *f, struct rd_node *n, int64_t t, struct rd_str why)
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

/* Drops the oldest resolved records beyond RD_FSM_MAX_FAULTS. */
static void prune_faults(struct rd_fsm *f)
{
    if (f->n_faults <= RD_FSM_MAX_FAULTS)
        return;
    size_t excess = f->n_faults - RD_FSM_MAX_FAULTS, kept = 0;
    for (size_t i = 0; i < f->n_faults; i++) {
        struct rd_fault *x = f->faults[i];
        if (excess > 0 && x->status == RD_FAULT_RESOLVED) {
            rd_map_del(&f->faults_by_id, x->id, strlen(x->id));
            fault_free(x);
            excess--;
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
    char id[64];
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
    f->fault_seq++;
    if (n != NULL && c->set_state != RD_STATE_ANY && c->set_state != n->state) {
        char reason[96];
        snprintf(reason, sizeof(reason), "fault %s: %s", x->id, rd_fault_type_name(x->type));
        if (set_str(&n->reason, RD_STR(reason)) != 0)
            return RD_ENOMEM;
        set_state(f, n, c->set_state);
        n->updated_at = cmd->time_ms;
    } else {
        f->result.node = NULL; /* the node did not change */
    }
    f->result.fault = x;
    if (f->on_fault != NULL)
        f->on_fault(f->on_fault_data, x);
    if (c->task_id.len > 0) {
        char why[96];
        snprintf(why, sizeof(why), "quarantined as a poison task (fault %s)", x->id);
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
        return resolve_node_faults(f, n, cmd->time_ms, c->note);
    }
    char id[64];
    if (c->id.len >= sizeof(id)) {
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
    if (set_str(&n->reason, c->reason) != 0)
        return RD_ENOMEM;
    set_state(f, n, c->state);
    n->updated_at = cmd->time_ms;
    if (c->resolve_faults)
        return resolve_node_faults(f, n, cmd->time_ms, c->reason);
    return 0;
}

const char *rd_fsm_replica_url(const struct rd_fsm *f, uint64_t id)
{
    for (unsigned i = 0; i < f->n_replicas; i++)
        if (f->replicas[i].id == id)
            return f->replicas[i].api_url;
    return NULL;
}

static int apply_replica_info(struct rd_fsm *f, const struct rd_cmd *cmd)
{
    const struct rd_cmd_replica_info *c = &cmd->u.rinfo;
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
    case RD_CMD_FAULT_OPEN:
        rv = apply_fault_open(f, &cmd);
        break;
    case RD_CMD_FAULT_RESOLVE:
        rv = apply_fault_resolve(f, &cmd);
        break;
    case RD_CMD_TASK_SUBMIT:
    case RD_CMD_TASK_ASSIGN:
    case RD_CMD_TASK_CHECKPOINT:
    case RD_CMD_TASK_FINISH:
        rv = rd_fsm__task_apply(f, &cmd);
        break;
    case RD_CMD_REPLICA_INFO:
        rv = apply_replica_info(f, &cmd);
        break;
    case RD_CMD_RECOVERY_OPEN:
    case RD_CMD_RECOVERY_CLOSE:
        rv = rd_fsm__recovery_apply(f, &cmd);
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
    rd_w_u64(w, f->fault_seq);
    rd_w_u64(w, f->n_faults);
    for (size_t i = 0; i < f->n_faults; i++) {
        const struct rd_fault *x = f->faults[i];
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
    rd_fsm__tasks_write(f, w);
    rd_fsm__recoveries_write(f, w);
    rd_w_u32(w, f->n_replicas);
    for (unsigned i = 0; i < f->n_replicas; i++) {
        rd_w_u64(w, f->replicas[i].id);
        rd_w_str(w, f->replicas[i].api_url, strlen(f->replicas[i].api_url));
    }
}

static int read_faults(struct rd_fsm *f, struct rd_rbuf *r)
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
        struct rd_str id = rd_r_str(r), node = rd_r_str(r);
        x->type = rd_r_u8(r);
        x->severity = rd_r_u8(r);
        x->status = rd_r_u8(r);
        x->detected_at = rd_r_i64(r);
        x->resolved_at = rd_r_i64(r);
        struct rd_str action = rd_r_str(r), meta = rd_r_str(r), why = rd_r_str(r);
        if (r->err || id.len == 0 || id.len >= sizeof(x->id) || x->type >= RD_FAULT_TYPE_COUNT ||
            x->severity >= RD_SEV_COUNT || x->status >= RD_FAULT_STATUS_COUNT ||
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

static int read_state(struct rd_fsm *f, const void *p, size_t len, unsigned format)
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
    int rv = read_faults(f, &r);
    if (rv == 0)
        rv = rd_fsm__tasks_read(f, &r, format);
    if (rv == 0)
        rv = rd_fsm__recoveries_read(f, &r);
    if (rv == 0 && format >= 3) {
        uint32_t n = rd_r_u32(&r);
        if (r.err || n > RD_FSM_MAX_REPLICAS)
            return RD_ECORRUPT;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t id = rd_r_u64(&r);
            struct rd_str url = rd_r_str(&r);
            if (r.err || id == 0 || url.len == 0 || url.len > 255 ||
                (i > 0 && id <= f->replicas[i - 1].id))
                return RD_ECORRUPT;
            f->replicas[i].id = id;
            memcpy(f->replicas[i].api_url, url.p, url.len);
            f->n_replicas = i + 1;
        }
    }
    if (rv != 0)
        return rv;
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
    if (format < 1 || format > SNAP_FORMAT) {
        snprintf(f->errmsg, sizeof(f->errmsg), "snapshot: format %u, this version reads 1 to %u",
                 format, SNAP_FORMAT);
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
    int rv = read_state(&fresh, raw, got, format);
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
    f->faults = fresh.faults;
    f->n_faults = fresh.n_faults;
    f->cap_faults = fresh.cap_faults;
    f->faults_by_id = fresh.faults_by_id;
    f->fault_seq = fresh.fault_seq;
    f->open_faults = fresh.open_faults;
    rd_fsm__tasks_move(f, &fresh);
    rd_fsm__recoveries_move(f, &fresh);
    memcpy(f->replicas, fresh.replicas, sizeof(f->replicas));
    f->n_replicas = fresh.n_replicas;
    f->n_applied = fresh.n_applied;
    f->last_time_ms = fresh.last_time_ms;
    memcpy(f->count_by_state, fresh.count_by_state, sizeof(f->count_by_state));
    f->restores++;
    return 0;
}

int64_t rd_fsm_stamp(const struct rd_fsm *f)
{
    int64_t now = rd_now_ms();
    return now > f->last_time_ms ? now : f->last_time_ms;
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
    if (rv != 0) {
        RD_ERROR("fsm", "snapshot_refused", "bytes=%zu error=\"%s\"", buf->len, f->errmsg);
        return rv == RD_ENOMEM ? RAFT_NOMEM : RAFT_CORRUPT;
    }
    RD_INFO("fsm", "snapshot_restored", "bytes=%zu nodes=%zu tasks=%zu applied=%llu", buf->len,
            f->n_nodes, f->n_tasks, (unsigned long long)f->n_applied);
    raft_free(buf->base);
    return 0;
}

int rd_fsm_init(struct rd_fsm *f)
{
    memset(f, 0, sizeof(*f));
    rd_map_init(&f->by_id);
    rd_map_init(&f->faults_by_id);
    rd_map_init(&f->tasks_by_id);
    rd_map_init(&f->recoveries_by_id);
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
