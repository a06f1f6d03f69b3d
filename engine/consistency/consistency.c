/* Consistency checks, the leader's side (consistency.h). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "consistency.h"
#include "net/httpc.h"
#include "recoveryd/error.h"

#define MS_NS 1000000ULL

static uint64_t self_id(const struct rd_consistency *c)
{
    return c->env.cfg->cluster.replica_id;
}

static bool leading(const struct rd_consistency *c)
{
    return c->env.log.is_leader(c->env.log.data);
}

static void tick(uv_timer_t *t);

static void arm(struct rd_consistency *c, uint64_t ms)
{
    if (c->started)
        uv_timer_start(&c->timer, tick, ms, 0);
}

/* ---- the verdict --------------------------------------------------------- */

int rd_consistency_decide(const struct rd_digest_answer *a, unsigned n, unsigned voters,
                          uint64_t *majority, uint64_t *diverged, unsigned *n_diverged)
{
    *n_diverged = 0;
    *majority = 0;
    bool found = false;
    for (unsigned i = 0; i < n && !found; i++) {
        if (!a[i].answered)
            continue;
        unsigned same = 0;
        for (unsigned j = 0; j < n; j++)
            same += a[j].answered && a[j].digest == a[i].digest;
        if (2 * same > voters) {
            *majority = a[i].digest;
            found = true;
        }
    }
    if (!found)
        return RD_CHECK_INCOMPLETE;
    for (unsigned i = 0; i < n; i++)
        if (a[i].answered && a[i].digest != *majority)
            diverged[(*n_diverged)++] = a[i].id;
    return *n_diverged ? RD_CHECK_MISMATCH : RD_CHECK_CONSISTENT;
}

/* ---- faults of diverged replicas ---------------------------------------- */

/* The replica an open data_corruption fault is about, or 0. */
uint64_t rd_consistency_fault_replica(const struct rd_fault *x, uint64_t *index, char *check,
                                      size_t n)
{
    if (x->type != RD_FAULT_DATA_CORRUPTION || x->status != RD_FAULT_OPEN_ST)
        return 0;
    json_t *m = json_loads(x->metadata_json, 0, NULL);
    json_t *id = json_object_get(m, "replica_id");
    const char *c = json_string_value(json_object_get(m, "check_id"));
    /* A checkpoint's repair is a data_corruption fault too: no replica_id. */
    uint64_t v = json_is_integer(id) && c != NULL ? (uint64_t)json_integer_value(id) : 0;
    if (index != NULL)
        *index = (uint64_t)json_integer_value(json_object_get(m, "index"));
    if (check != NULL && n > 0)
        snprintf(check, n, "%s", c ? c : "");
    json_decref(m);
    return v;
}

static uint64_t fault_replica(const struct rd_fault *x, uint64_t *index)
{
    return rd_consistency_fault_replica(x, index, NULL, 0);
}

static const struct rd_fault *open_fault_of(const struct rd_consistency *c, uint64_t id)
{
    const struct rd_fsm *f = c->env.fsm;
    for (size_t i = f->n_faults; i-- > 0;)
        if (f->faults[i]->status == RD_FAULT_OPEN_ST && fault_replica(f->faults[i], NULL) == id)
            return f->faults[i];
    return NULL;
}

static void proposed(void *data, int status, uint64_t value)
{
    (void)value;
    const char *what = data;
    if (status != 0)
        RD_WARN("consistency", "proposal_failed", "what=%s error=%s", what, rd_err_name(status));
}

static void open_fault(struct rd_consistency *c, uint64_t id, uint64_t digest, uint64_t majority)
{
    if (open_fault_of(c, id) != NULL)
        return;
    char fid[RD_UUID_STRLEN], meta[512];
    if (rd_uuid_v4(fid) != 0)
        return;
    snprintf(meta, sizeof(meta),
             "{\"replica_id\":%" PRIu64 ",\"check_id\":\"%s\",\"index\":%" PRIu64
             ",\"digest\":\"%016" PRIx64 "\",\"expected\":\"%016" PRIx64 "\"}",
             id, c->g.id, c->g.index, digest, majority);
    struct rd_cmd cmd =
        rd_cmd_cluster_fault(0, fid, RD_FAULT_DATA_CORRUPTION, RD_SEV_CRITICAL, meta, "\"repair\"");
    /* Audited: the replica that diverged (it repairs itself by rejoining),
     * the check that found it the cause. */
    char target[32];
    snprintf(target, sizeof(target), "replica %" PRIu64, id);
    rd_cmd_audit_engine(&cmd, "replica_diverged", target, c->g.id);
    c->env.log.propose(c->env.log.data, &cmd, proposed, "data_corruption fault");
    RD_ERROR("consistency", "replica_diverged",
             "replica=%" PRIu64 " check=%s index=%" PRIu64 " digest=%016" PRIx64
             " expected=%016" PRIx64,
             id, c->g.id, c->g.index, digest, majority);
}

static void resolve_fault(struct rd_consistency *c, uint64_t id)
{
    const struct rd_fault *x = open_fault_of(c, id);
    if (x == NULL)
        return;
    char note[160];
    snprintf(note, sizeof(note), "consistency check %s matched the majority at index %" PRIu64,
             c->g.id, c->g.index);
    struct rd_cmd cmd = {.type = RD_CMD_FAULT_RESOLVE};
    cmd.u.fresolve.id = RD_STR(x->id);
    cmd.u.fresolve.node_id = RD_STR("");
    cmd.u.fresolve.note = RD_STR(note);
    char target[32];
    snprintf(target, sizeof(target), "replica %" PRIu64, id);
    rd_cmd_audit_engine(&cmd, "replica_repaired", target, x->id);
    c->env.log.propose(c->env.log.data, &cmd, proposed, "data_corruption resolve");
    RD_INFO("consistency", "replica_repaired", "replica=%" PRIu64 " check=%s", id, c->g.id);
}

/* ---- committing the verdict --------------------------------------------- */

static void act(struct rd_consistency *c, int status, uint64_t majority, const uint64_t *diverged,
                unsigned n_diverged)
{
    if (status == RD_CHECK_INCOMPLETE)
        return;
    for (unsigned i = 0; i < c->g.n; i++) {
        const struct rd_digest_answer *a = &c->g.r[i];
        if (a->answered && a->digest == majority)
            resolve_fault(c, a->id);
    }
    for (unsigned k = 0; k < n_diverged; k++) {
        uint64_t id = diverged[k], digest = 0;
        for (unsigned i = 0; i < c->g.n; i++)
            if (c->g.r[i].id == id)
                digest = c->g.r[i].digest;
        open_fault(c, id, digest, majority);
        if (id == self_id(c)) {
            /* The leader is the odd one out: a replica of the majority
             * leads from here and repairs this one. */
            rd_replica_hand_over(c->env.replica, 0, "state digest diverged from the majority");
            continue;
        }
        /* It repairs itself: every replica applies the fault, the one it
         * names moves its state aside and rejoins (rd_engine_rejoin). */
        c->repairs_total++;
    }
    c->recheck_after_ns = rd_mono_ns() + RD_CONSISTENCY_RECHECK_MS * MS_NS;
}

struct verdict {
    struct rd_consistency *c;
    int status;
    uint64_t majority;
    uint64_t diverged[RD_FSM_MAX_REPLICAS];
    unsigned n_diverged;
};

static void verdict_committed(void *data, int status, uint64_t value)
{
    (void)value;
    struct verdict *v = data;
    struct rd_consistency *c = v->c;
    c->proposing = false;
    if (status == 0) {
        c->checks_total[v->status]++;
        c->last_check_ms = (uint64_t)rd_now_ms();
        RD_INFO("consistency", "checked", "check=%s index=%" PRIu64 " status=%s diverged=%u",
                c->g.id, c->g.index, rd_check_status_name(v->status), v->n_diverged);
        act(c, v->status, v->majority, v->diverged, v->n_diverged);
    } else {
        RD_WARN("consistency", "verdict_failed", "check=%s error=%s", c->g.id, rd_err_name(status));
    }
    c->g.active = false;
    free(v);
    arm(c, RD_CONSISTENCY_POLL_MS);
}

static void conclude(struct rd_consistency *c)
{
    struct verdict *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return; /* tried again at the next tick */
    v->c = c;
    v->status =
        rd_consistency_decide(c->g.r, c->g.n, c->g.n, &v->majority, v->diverged, &v->n_diverged);
    json_t *digests = json_object(), *div = json_array();
    for (unsigned i = 0; i < c->g.n; i++) {
        char key[24], hex[17];
        snprintf(key, sizeof(key), "%" PRIu64, c->g.r[i].id);
        snprintf(hex, sizeof(hex), "%016" PRIx64, c->g.r[i].digest);
        json_object_set_new(digests, key, c->g.r[i].answered ? json_string(hex) : json_null());
    }
    for (unsigned k = 0; k < v->n_diverged; k++)
        json_array_append_new(div, json_integer((json_int_t)v->diverged[k]));
    char *dj = json_dumps(digests, JSON_COMPACT | JSON_SORT_KEYS);
    char *vj = json_dumps(div, JSON_COMPACT);
    json_decref(digests);
    json_decref(div);
    struct rd_cmd cmd = {.type = RD_CMD_CHECK_RESULT};
    cmd.u.cresult.id = RD_STR(c->g.id);
    cmd.u.cresult.status = (uint8_t)v->status;
    cmd.u.cresult.digests_json = RD_STR(dj ? dj : "{}");
    cmd.u.cresult.diverged_json = RD_STR(vj ? vj : "[]");
    int rv = c->env.log.propose(c->env.log.data, &cmd, verdict_committed, v);
    free(dj);
    free(vj);
    if (rv != 0) {
        free(v);
        RD_WARN("consistency", "verdict_failed", "check=%s error=%s", c->g.id, rd_err_name(rv));
        c->g.active = false; /* the record stays pending; the next check goes on */
        return;
    }
    c->proposing = true;
}

/* ---- gathering the digests ---------------------------------------------- */

struct ask {
    struct rd_consistency *c;
    uint64_t id;
    char check[65];
};

static struct rd_digest_answer *answer_of(struct rd_consistency *c, uint64_t id)
{
    for (unsigned i = 0; i < c->g.n; i++)
        if (c->g.r[i].id == id)
            return &c->g.r[i];
    return NULL;
}

static void asked(void *data, const struct rd_http_response *resp)
{
    struct ask *a = data;
    struct rd_consistency *c = a->c;
    struct rd_digest_answer *r =
        c->g.active && strcmp(c->g.id, a->check) == 0 ? answer_of(c, a->id) : NULL;
    if (r != NULL) {
        r->in_flight = false;
        if (resp->status == 200) {
            json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
            const char *hex = json_string_value(json_object_get(j, "digest"));
            char *end = NULL;
            uint64_t d = hex ? strtoull(hex, &end, 16) : 0;
            if (hex != NULL && end != NULL && *end == '\0' && strlen(hex) == 16) {
                r->digest = d;
                r->answered = true;
            }
            json_decref(j);
        }
    }
    free(a);
}

static void ask(struct rd_consistency *c, struct rd_digest_answer *r)
{
    const char *url = c->httpc ? rd_cluster_api_url(c->env.cluster, r->id) : NULL;
    if (url == NULL)
        return;
    char full[512];
    snprintf(full, sizeof(full), "%s/api/v1/consistency/checks/%s/local", url, c->g.id);
    struct ask *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return;
    a->c = c;
    a->id = r->id;
    snprintf(a->check, sizeof(a->check), "%s", c->g.id);
    struct rd_http_request req = {.method = "GET", .url = full, .timeout_ms = 1000};
    const char *auth = c->env.cfg->security.peer_authorization;
    if (rd_httpc_request_auth(c->httpc, c, &req, auth[0] ? auth : NULL, asked, a) == 0)
        r->in_flight = true;
    else
        free(a);
}

/* One gathering step: ask who has not answered, conclude when all did or
 * the time is up. */
static void gather(struct rd_consistency *c)
{
    struct rd_digest_answer *own = answer_of(c, self_id(c));
    if (own != NULL && !own->answered) {
        const struct rd_check_local *l = rd_fsm_check_local(c->env.fsm, c->g.id);
        if (l != NULL) {
            own->digest = l->digest;
            own->answered = true;
        }
    }
    bool all = true;
    for (unsigned i = 0; i < c->g.n; i++) {
        struct rd_digest_answer *r = &c->g.r[i];
        if (r->answered)
            continue;
        all = false;
        if (r->id != self_id(c) && !r->in_flight)
            ask(c, r);
    }
    if (all || rd_mono_ns() >= c->g.deadline_ns) {
        bool waiting = false;
        for (unsigned i = 0; i < c->g.n; i++)
            waiting |= c->g.r[i].in_flight;
        if (!waiting || all)
            conclude(c);
    }
}

static void begin_gathering(struct rd_consistency *c, const char *id, uint64_t index)
{
    memset(&c->g, 0, sizeof(c->g));
    c->g.active = true;
    snprintf(c->g.id, sizeof(c->g.id), "%s", id);
    c->g.index = index;
    c->g.deadline_ns = rd_mono_ns() + RD_CONSISTENCY_WAIT_MS * MS_NS;
    const struct raft_configuration *conf = rd_replica_configuration(c->env.replica);
    for (unsigned i = 0; i < conf->n && c->g.n < RD_FSM_MAX_REPLICAS; i++)
        if (conf->servers[i].role == RAFT_VOTER)
            c->g.r[c->g.n++].id = conf->servers[i].id;
}

/* ---- proposing a check ----------------------------------------------------- */

struct trigger {
    struct rd_consistency *c;
    rd_consistency_cb cb;
    void *data;
    char id[RD_UUID_STRLEN];
};

static void check_committed(void *data, int status, uint64_t value)
{
    (void)value;
    struct trigger *t = data;
    struct rd_consistency *c = t->c;
    c->proposing = false;
    const struct rd_check *rec = status == 0 ? rd_fsm_check_find(c->env.fsm, t->id) : NULL;
    if (status == 0 && rec == NULL)
        status = RD_EINTERNAL;
    if (status == 0 && leading(c) && c->started)
        begin_gathering(c, t->id, rec->index);
    if (t->cb)
        t->cb(t->data, status, t->id, rec ? rec->index : 0);
    free(t);
    arm(c, 0);
}

int rd_consistency_trigger(struct rd_consistency *c, rd_consistency_cb cb, void *data)
{
    if (!leading(c))
        return RD_ENOTLEADER;
    if (c->g.active) { /* one at a time: the one being gathered answers */
        if (cb)
            cb(data, 0, c->g.id, c->g.index);
        return 0;
    }
    if (c->proposing)
        return RD_ECONFLICT;
    struct trigger *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return RD_ENOMEM;
    if (rd_uuid_v4(t->id) != 0) {
        free(t);
        return RD_EINTERNAL;
    }
    t->c = c;
    t->cb = cb;
    t->data = data;
    struct rd_cmd cmd = {.type = RD_CMD_CHECK};
    cmd.u.check.id = RD_STR(t->id);
    int rv = c->env.log.propose(c->env.log.data, &cmd, check_committed, t);
    if (rv != 0) {
        free(t);
        return rv;
    }
    c->proposing = true;
    return 0;
}

/* ---- the schedule ---------------------------------------------------------- */

/* When the next scheduled check is due: one interval after the newest check
 * in the log (whoever led then), so leader changes do not postpone it; never
 * more than an interval from now, since that check's start is the wall clock
 * of whoever started it, which may be ahead of this replica's (a clock
 * stepped back, a leader whose clock ran fast). */
static uint64_t next_due_ns(const struct rd_consistency *c)
{
    uint64_t interval = c->env.cfg->fault_tolerance.backup.consistency_check_interval_ms;
    size_t n = 0;
    const struct rd_check *const *all = rd_fsm_checks(c->env.fsm, &n);
    int64_t last = n ? all[n - 1]->started_at_ms : 0;
    return rd_due_mono_ns(last ? last : rd_now_ms(), interval);
}

/* A replica an open data_corruption fault names is back from its repair:
 * a voter again (it was demoted while it rejoined) that has applied past
 * the check that found it diverged. Then it is checked again (at most every
 * RD_CONSISTENCY_RECHECK_MS), so its fault resolves as soon as it matches,
 * whoever leads by then. */
static bool recheck_due(struct rd_consistency *c)
{
    if (rd_mono_ns() < c->recheck_after_ns)
        return false;
    const struct rd_fsm *f = c->env.fsm;
    const struct raft_configuration *conf = rd_replica_configuration(c->env.replica);
    for (size_t i = f->n_faults; i-- > 0;) {
        uint64_t index = 0, id = fault_replica(f->faults[i], &index);
        if (id == 0 || id == self_id(c))
            continue;
        bool voter = false;
        for (unsigned k = 0; k < conf->n; k++)
            voter |= conf->servers[k].id == id && conf->servers[k].role == RAFT_VOTER;
        const struct rd_peer *p = rd_cluster_peer(c->env.cluster, id);
        if (voter && p != NULL && p->reachable && p->answered && p->applied_index >= index)
            return true;
    }
    return false;
}

static void tick(uv_timer_t *t)
{
    struct rd_consistency *c = t->data;
    if (!leading(c)) {
        c->next_check_ns = 0;
        c->g.active = false; /* a new leader concludes nothing of ours */
        arm(c, RD_CONSISTENCY_POLL_MS * 5);
        return;
    }
    if (c->g.active) {
        if (!c->proposing)
            gather(c);
        arm(c, RD_CONSISTENCY_POLL_MS);
        return;
    }
    if (c->next_check_ns == 0)
        c->next_check_ns = next_due_ns(c);
    uint64_t now = rd_mono_ns();
    if (!c->proposing && (now >= c->next_check_ns || recheck_due(c))) {
        if (rd_consistency_trigger(c, NULL, NULL) == 0)
            c->next_check_ns = 0; /* recomputed from the new record */
    }
    uint64_t wait = c->next_check_ns > now ? (c->next_check_ns - now) / MS_NS : 0;
    arm(c, wait < RD_CONSISTENCY_POLL_MS * 5 ? (wait ? wait : RD_CONSISTENCY_POLL_MS)
                                             : RD_CONSISTENCY_POLL_MS * 5);
}

void rd_consistency_init(struct rd_consistency *c, const struct rd_consistency_env *env)
{
    memset(c, 0, sizeof(*c));
    c->env = *env;
}

int rd_consistency_start(struct rd_consistency *c, struct rd_httpc *httpc)
{
    c->httpc = httpc;
    int rv = uv_timer_init(c->env.loop, &c->timer);
    if (rv != 0)
        return RD_EINTERNAL;
    c->timer.data = c;
    c->started = true;
    arm(c, RD_CONSISTENCY_POLL_MS);
    return 0;
}

void rd_consistency_stop(struct rd_consistency *c)
{
    if (!c->started)
        return;
    c->started = false;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, NULL);
    if (c->httpc)
        rd_httpc_cancel_owner(c->httpc, c);
    c->httpc = NULL;
    c->g.active = false;
}

void rd_consistency_close(struct rd_consistency *c)
{
    (void)c;
}

void rd_consistency_metrics(const struct rd_consistency *c, struct rd_mbuf *b)
{
    rd_mbuf_printf(b, "# HELP recoveryd_consistency_checks_total Consistency check verdicts "
                      "committed by this replica as leader.\n"
                      "# TYPE recoveryd_consistency_checks_total counter\n");
    for (int s = RD_CHECK_CONSISTENT; s < RD_CHECK_STATUS_COUNT; s++)
        rd_mbuf_printf(b, "recoveryd_consistency_checks_total{status=\"%s\"} %" PRIu64 "\n",
                       rd_check_status_name(s), c->checks_total[s]);
    rd_mbuf_printf(b,
                   "# HELP recoveryd_consistency_repairs_total Diverged replicas this leader "
                   "started repairing.\n# TYPE recoveryd_consistency_repairs_total counter\n"
                   "recoveryd_consistency_repairs_total %" PRIu64 "\n",
                   c->repairs_total);
    size_t diverged = 0;
    const struct rd_fsm *f = c->env.fsm;
    for (size_t i = f->n_faults; i-- > 0;)
        diverged += fault_replica(f->faults[i], NULL) != 0;
    rd_mbuf_printf(b,
                   "# HELP recoveryd_consistency_diverged_replicas Replicas with an open "
                   "data_corruption fault (their state differs from the majority's).\n"
                   "# TYPE recoveryd_consistency_diverged_replicas gauge\n"
                   "recoveryd_consistency_diverged_replicas %zu\n",
                   diverged);
    size_t n = 0;
    const struct rd_check *const *all = rd_fsm_checks(f, &n);
    double last = 0;
    for (size_t i = n; i-- > 0;)
        if (all[i]->status != RD_CHECK_PENDING) {
            last = (double)all[i]->completed_at_ms / 1000.0;
            break;
        }
    rd_mbuf_printf(b,
                   "# HELP recoveryd_consistency_last_check_timestamp_seconds When the newest "
                   "consistency check in the log got its verdict (0: never).\n"
                   "# TYPE recoveryd_consistency_last_check_timestamp_seconds gauge\n"
                   "recoveryd_consistency_last_check_timestamp_seconds %.3f\n",
                   last);
}
