/* The engine replicas as this replica sees them (cluster.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "metrics/metrics.h"
#include "plugin/host.h"
#include "replica/damage.h"
#include "replica/replica.h"
#include "net/httpc.h"
#include "recoveryd/error.h"

/* Unanswered this long: unreachable (three polls). */
#define UNREACHABLE_NS (3ULL * RD_CLUSTER_POLL_MS * 1000000ULL)

struct poll {
    struct rd_cluster *c;
    uint64_t id;
    uint64_t sent_ns;
};

static struct rd_peer *peer_of(struct rd_cluster *c, uint64_t id)
{
    for (unsigned i = 0; i < c->n_peers; i++)
        if (c->peers[i].id == id)
            return &c->peers[i];
    return NULL;
}

const struct rd_peer *rd_cluster_peer(struct rd_cluster *c, uint64_t id)
{
    return peer_of(c, id);
}

static bool is_voter(struct rd_cluster *c, uint64_t id)
{
    const struct raft_configuration *conf = rd_replica_configuration(c->replica);
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == id)
            return conf->servers[i].role == RAFT_VOTER;
    return false;
}

/* The peers follow raft's configuration: new members appear, removed ones go. */
static void sync_members(struct rd_cluster *c)
{
    const struct raft_configuration *conf = rd_replica_configuration(c->replica);
    uint64_t self = c->cfg->cluster.replica_id;
    struct rd_peer kept[RD_FSM_MAX_REPLICAS];
    unsigned n = 0;
    for (unsigned i = 0; i < conf->n && n < RD_FSM_MAX_REPLICAS; i++) {
        uint64_t id = conf->servers[i].id;
        if (id == self)
            continue;
        struct rd_peer *old = peer_of(c, id);
        if (old != NULL) {
            kept[n++] = *old;
        } else {
            /* Reachable until proven otherwise: three polls unanswered. */
            memset(&kept[n], 0, sizeof(kept[n]));
            kept[n].id = id;
            kept[n].reachable = true;
            kept[n].last_ok_ns = rd_mono_ns();
            n++;
        }
    }
    memcpy(c->peers, kept, n * sizeof(kept[0]));
    c->n_peers = n;
}

static void poll_done(void *data, const struct rd_http_response *resp)
{
    struct poll *p = data;
    struct rd_cluster *c = p->c;
    uint64_t id = p->id;
    uint64_t sent_ns = p->sent_ns;
    struct rd_peer *peer = peer_of(c, id);
    free(p);
    if (peer == NULL)
        return; /* removed meanwhile */
    peer->in_flight = false;
    peer->polled = true;
    json_t *j = resp->status == 200 ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    if (j != NULL && json_integer_value(json_object_get(j, "replica_id")) == (json_int_t)id) {
        peer->last_ok_ns = rd_mono_ns();
        peer->rtt_ns = peer->last_ok_ns - sent_ns;
        peer->answered = true;
        if (!peer->reachable)
            RD_INFO("cluster", "replica_reachable", "id=%llu", (unsigned long long)peer->id);
        peer->reachable = true;
        peer->unreachable_since_ns = 0;
        snprintf(peer->role, sizeof(peer->role), "%s",
                 json_string_value(json_object_get(j, "role")) ?: "unknown");
        peer->term = (uint64_t)json_integer_value(json_object_get(j, "term"));
        peer->applied_index = (uint64_t)json_integer_value(json_object_get(j, "applied_index"));
        peer->commit_index = (uint64_t)json_integer_value(json_object_get(j, "commit_index"));
    } else {
        c->polls_failed++;
        RD_DEBUG("cluster", "poll_failed", "id=%llu status=%d error=\"%s\"", (unsigned long long)id,
                 resp->status, resp->error ? resp->error : "");
    }
    json_decref(j);
}

static void alert_no_quorum(struct rd_cluster *c, bool resolved)
{
    char summary[256], fp[64];
    snprintf(fp, sizeof(fp), "no-quorum-%llu", (unsigned long long)c->cfg->cluster.replica_id);
    snprintf(summary, sizeof(summary),
             resolved ? "engine replica %llu reaches a majority again"
                      : "engine replica %llu cannot reach a majority of the replicas: it "
                        "commits nothing and serves stale reads only",
             (unsigned long long)c->cfg->cluster.replica_id);
    struct rd_alert a = {.fingerprint = fp,
                         .resolved = resolved,
                         .alertname = "NoQuorum",
                         .node_id = "",
                         .fault_type = "partition",
                         .severity = "critical",
                         .summary = summary,
                         .description = summary,
                         .starts_at_ms = rd_now_ms(),
                         .ends_at_ms = resolved ? rd_now_ms() : 0,
                         .scope = RD_ALERT_REPLICA};
    rd_plugin_host_alert(c->alerts, &a);
}

static void stale_fault_done(void *data, int status, uint64_t value)
{
    struct rd_cluster *c = data;
    (void)value;
    c->resolving_stale = false;
    if (status != 0)
        RD_DEBUG("cluster", "fault_resolve_refused", "error=%s", rd_err_name(status));
}

struct fault_op {
    struct rd_cluster *c;
    uint64_t id;
};

static void fault_done(void *data, int status, uint64_t value)
{
    struct fault_op *op = data;
    (void)value;
    struct rd_peer *peer = peer_of(op->c, op->id);
    if (peer != NULL) {
        peer->fault_proposing = false;
        if (status != 0 && peer->unreachable_since_ns != 0)
            peer->fault_id[0] = '\0'; /* not recorded: try again next tick */
    }
    free(op);
}

/* Leader: a voter unreachable past alert_after is a partition fault. */
static void judge_peer(struct rd_cluster *c, struct rd_peer *p, uint64_t now)
{
    uint64_t after = c->cfg->fault_tolerance.partition.alert_after_ms * 1000000ULL;
    bool open = p->fault_id[0] != '\0';
    bool down = !p->reachable && p->unreachable_since_ns != 0 &&
                now >= p->unreachable_since_ns + after && is_voter(c, p->id);
    if (p->fault_proposing || open == down || !rd_replica_is_leader(c->replica))
        return;
    struct rd_cmd cmd = {0};
    char meta[256];
    if (down) {
        if (rd_uuid_v4(p->fault_id) != 0)
            return;
        snprintf(meta, sizeof(meta),
                 "{\"replica_id\":%llu,\"detail\":\"engine replica unreachable from the leader "
                 "for %llu ms\"}",
                 (unsigned long long)p->id,
                 (unsigned long long)((now - p->unreachable_since_ns) / 1000000ULL));
        cmd = rd_cmd_cluster_fault(cmd.time_ms, p->fault_id, RD_FAULT_PARTITION, RD_SEV_MAJOR, meta,
                                   "{\"action\":\"none\",\"detail\":\"the majority side goes on; "
                                   "the replica catches up when the network heals\"}");
        RD_WARN("cluster", "replica_partitioned", "id=%llu fault=%s", (unsigned long long)p->id,
                p->fault_id);
    } else {
        cmd.type = RD_CMD_FAULT_RESOLVE;
        cmd.u.fresolve.id = RD_STR(p->fault_id);
        cmd.u.fresolve.node_id = RD_STR("");
        cmd.u.fresolve.note = RD_STR("the replica answers again");
        RD_INFO("cluster", "replica_back", "id=%llu", (unsigned long long)p->id);
    }
    struct fault_op *op = calloc(1, sizeof(*op));
    if (op != NULL) {
        op->c = c;
        op->id = p->id;
        if (rd_replica_propose(c->replica, &cmd, fault_done, op) == 0) {
            p->fault_proposing = true;
            if (!down)
                p->fault_id[0] = '\0';
            op = NULL;
        }
    }
    if (op != NULL && down)
        p->fault_id[0] = '\0';
    free(op);
}

/*
 * The leader takes over the replica partition faults that are open in the
 * log (opened by a previous leader, or by itself before a restart): those
 * about a member are resolved when it answers; those about this replica or
 * about a replica that is no longer a member are resolved now.
 */
static void adopt_open_faults(struct rd_cluster *c)
{
    const struct rd_fsm *f = c->fsm;
    uint64_t self = c->cfg->cluster.replica_id;
    if (!rd_replica_is_leader(c->replica) || f->open_faults == 0 || c->resolving_stale)
        return;
    size_t open_seen = 0; /* stop once every open fault was seen, not at the oldest record */
    for (size_t i = f->n_faults; i-- > 0 && open_seen < f->open_faults;) {
        const struct rd_fault *x = f->faults[i];
        if (x->status != RD_FAULT_OPEN_ST)
            continue;
        open_seen++;
        if (x->type != RD_FAULT_PARTITION || x->node_id[0])
            continue;
        json_t *meta = json_loads(x->metadata_json, 0, NULL);
        json_t *rid = meta ? json_object_get(meta, "replica_id") : NULL;
        uint64_t id = json_is_integer(rid) ? (uint64_t)json_integer_value(rid) : 0;
        json_decref(meta);
        if (id == 0)
            continue; /* the agents' mass-failure guard's own fault */
        struct rd_peer *p = peer_of(c, id);
        if (p != NULL && id != self) {
            if (p->fault_id[0] == '\0' && !p->fault_proposing)
                snprintf(p->fault_id, sizeof(p->fault_id), "%s", x->id);
            continue;
        }
        char key[64];
        snprintf(key, sizeof(key), "%s", x->id);
        struct rd_cmd cmd = {.type = RD_CMD_FAULT_RESOLVE};
        cmd.u.fresolve.id = RD_STR(key);
        cmd.u.fresolve.node_id = RD_STR("");
        cmd.u.fresolve.note = RD_STR(id == self ? "the replica leads the cluster"
                                                : "the replica is no longer a member");
        /* One at a time: the next tick sees it resolved and goes on. */
        if (rd_replica_propose(c->replica, &cmd, stale_fault_done, c) == 0)
            c->resolving_stale = true;
        if (c->resolving_stale)
            return;
    }
}

static void tick(uv_timer_t *t)
{
    struct rd_cluster *c = t->data;
    sync_members(c); /* before reading the clock: new peers are stamped now */
    adopt_open_faults(c);
    uint64_t now = rd_mono_ns();
    for (unsigned i = 0; i < c->n_peers; i++) {
        struct rd_peer *p = &c->peers[i];
        if (p->reachable && now > p->last_ok_ns + UNREACHABLE_NS) {
            p->reachable = false;
            p->unreachable_since_ns = p->last_ok_ns;
            RD_WARN("cluster", "replica_unreachable", "id=%llu", (unsigned long long)p->id);
        }
        judge_peer(c, p, now);
        const char *url = rd_cluster_api_url(c, p->id);
        if (p->in_flight || url == NULL || c->httpc == NULL)
            continue;
        char full[320];
        snprintf(full, sizeof(full), "%s/health", url);
        struct rd_http_request req = {
            .method = "GET", .url = full, .timeout_ms = RD_CLUSTER_POLL_MS};
        struct poll *pl = calloc(1, sizeof(*pl));
        if (pl == NULL)
            continue;
        pl->c = c;
        pl->id = p->id;
        pl->sent_ns = rd_mono_ns();
        if (rd_httpc_request(c->httpc, c, &req, poll_done, pl) == 0) {
            p->in_flight = true;
            c->polls_total++;
        } else {
            free(pl);
        }
    }
    /* No quorum for longer than alert_after: say so, from this side. */
    bool quorum = rd_cluster_has_quorum(c);
    uint64_t after = c->cfg->fault_tolerance.partition.alert_after_ms * 1000000ULL;
    if (quorum) {
        if (c->no_quorum_alerted)
            alert_no_quorum(c, true);
        c->no_quorum_since_ns = 0;
        c->no_quorum_alerted = false;
    } else {
        if (c->no_quorum_since_ns == 0) {
            c->no_quorum_since_ns = now;
            RD_WARN("cluster", "no_quorum", "replica=%llu",
                    (unsigned long long)c->cfg->cluster.replica_id);
        }
        if (!c->no_quorum_alerted && now - c->no_quorum_since_ns >= after) {
            c->no_quorum_alerted = true;
            alert_no_quorum(c, false);
        }
    }
}

void rd_cluster_init(struct rd_cluster *c, uv_loop_t *loop, const struct rd_config *cfg,
                     const struct rd_fsm *fsm, struct rd_replica *replica,
                     struct rd_plugin_host *alerts)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->cfg = cfg;
    c->fsm = fsm;
    c->replica = replica;
    c->alerts = alerts;
}

const char *rd_cluster_api_url(struct rd_cluster *c, uint64_t id)
{
    static char self_url[RD_CFG_STR + 16];
    if (id == 0)
        return NULL;
    const char *logged = rd_fsm_replica_url(c->fsm, id);
    if (logged != NULL)
        return logged;
    for (unsigned i = 0; i < c->cfg->cluster.n_peers; i++) {
        if (c->cfg->cluster.peers[i].id == id && c->cfg->cluster.peers[i].api_url[0])
            return c->cfg->cluster.peers[i].api_url;
    }
    if (id == c->cfg->cluster.replica_id) {
        const char *h = c->cfg->server.listen_host;
        snprintf(self_url, sizeof(self_url), strchr(h, ':') ? "http://[%s]:%u" : "http://%s:%u", h,
                 c->cfg->server.listen_port);
        return self_url;
    }
    return NULL;
}

void rd_cluster_start(struct rd_cluster *c, struct rd_httpc *httpc)
{
    if (c->started)
        return;
    c->httpc = httpc;
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, tick, RD_CLUSTER_POLL_MS, RD_CLUSTER_POLL_MS);
    c->started = true;
}

void rd_cluster_stop(struct rd_cluster *c)
{
    if (c->rejoin.timer_on) {
        uv_timer_stop(&c->rejoin.timer);
        uv_close((uv_handle_t *)&c->rejoin.timer, NULL);
        c->rejoin.timer_on = false;
    }
    if (c->httpc != NULL)
        rd_httpc_cancel_owner(c->httpc, &c->rejoin);
    if (!c->started) {
        c->httpc = NULL;
        return;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, NULL);
    c->started = false;
    if (c->httpc != NULL)
        rd_httpc_cancel_owner(c->httpc, c);
    c->httpc = NULL;
}

bool rd_cluster_has_quorum(struct rd_cluster *c)
{
    struct rd_replica *r = c->replica;
    sync_members(c); /* a member added since the last poll is presumed reachable */
    uint64_t leader;
    const char *addr;
    rd_replica_leader(r, &leader, &addr);
    if (leader == 0)
        return false;
    const struct raft_configuration *conf = rd_replica_configuration(r);
    unsigned voters = 0, reachable = 0;
    uint64_t self = c->cfg->cluster.replica_id;
    for (unsigned i = 0; i < conf->n; i++) {
        if (conf->servers[i].role != RAFT_VOTER)
            continue;
        voters++;
        const struct rd_peer *p = peer_of(c, conf->servers[i].id);
        if (conf->servers[i].id == self || (p != NULL && p->reachable))
            reachable++;
    }
    return reachable * 2 > voters;
}

bool rd_cluster_caught_up(struct rd_cluster *c, uint64_t *leader_commit)
{
    struct rd_replica *r = c->replica;
    uint64_t leader, applied = rd_replica_applied_index(r);
    const char *addr;
    rd_replica_leader(r, &leader, &addr);
    *leader_commit = 0;
    if (leader == 0)
        return false;
    if (leader == c->cfg->cluster.replica_id) {
        *leader_commit = rd_replica_commit_index(r);
        return applied >= *leader_commit;
    }
    sync_members(c);
    const struct rd_peer *p = peer_of(c, leader);
    /* The leader must have answered lately, as the leader: its commit index
     * is then at most two polls old. An answer from before a partition (the
     * peer still counts as reachable for three missed polls) or from when it
     * was not leading could be behind what it has committed since. */
    if (p == NULL || !p->reachable || !p->answered || strcmp(p->role, "leader") != 0 ||
        rd_mono_ns() - p->last_ok_ns > 2ULL * RD_CLUSTER_POLL_MS * 1000000ULL)
        return false;
    *leader_commit =
        p->commit_index > rd_replica_commit_index(r) ? p->commit_index : rd_replica_commit_index(r);
    return applied >= *leader_commit;
}

int rd_cluster_check_change(struct rd_cluster *c, uint64_t id, int role, char *why, size_t n)
{
    const struct raft_configuration *conf = rd_replica_configuration(c->replica);
    uint64_t self = c->cfg->cluster.replica_id;
    unsigned voters = 0, reachable = 0;
    bool was_voter = false;
    sync_members(c);
    for (unsigned i = 0; i < conf->n; i++) {
        const struct raft_server *s = &conf->servers[i];
        int r = s->id == id ? role : s->role;
        if (s->id == id)
            was_voter = s->role == RAFT_VOTER;
        if (r != RAFT_VOTER)
            continue;
        voters++;
        const struct rd_peer *p = peer_of(c, s->id);
        if (s->id == self || (p != NULL && p->answered && p->reachable))
            reachable++;
    }
    if (!was_voter || role == RAFT_VOTER)
        return 0;
    if (voters == 0) {
        snprintf(why, n,
                 "replica %llu is the last voter: without one nothing can be elected or "
                 "committed again; add another voter first",
                 (unsigned long long)id);
        return RD_ECONFLICT;
    }
    unsigned quorum = voters / 2 + 1;
    if (reachable < quorum) {
        snprintf(why, n,
                 "after this change %u voter%s would remain, of which %u %s reachable from "
                 "replica %llu: a quorum needs %u; bring the unreachable voters back first",
                 voters, voters == 1 ? "" : "s", reachable, reachable == 1 ? "is" : "are",
                 (unsigned long long)self, quorum);
        return RD_ECONFLICT;
    }
    return 0;
}

static const char *voter_role_name(int role)
{
    return role == RAFT_VOTER ? "voter" : role == RAFT_STANDBY ? "standby" : "spare";
}

json_t *rd_cluster_replicas_json(struct rd_cluster *c)
{
    struct rd_replica *r = c->replica;
    const struct raft_configuration *conf = rd_replica_configuration(r);
    uint64_t self = c->cfg->cluster.replica_id, leader;
    const char *laddr;
    rd_replica_leader(r, &leader, &laddr);
    sync_members(c);
    json_t *out = json_array();
    for (unsigned i = 0; i < conf->n; i++) {
        const struct raft_server *s = &conf->servers[i];
        const struct rd_peer *p = peer_of(c, s->id);
        bool me = s->id == self;
        const char *role = me                ? rd_replica_role_name(r)
                           : s->id == leader ? "leader"
                           : p && p->role[0] ? p->role
                                             : "unknown";
        json_t *applied = me ? json_integer((json_int_t)rd_replica_applied_index(r))
                          : p && p->polled && p->reachable
                              ? json_integer((json_int_t)p->applied_index)
                              : json_null();
        const char *url = rd_cluster_api_url(c, s->id);
        json_array_append_new(out, json_pack("{s:I,s:s,s:s,s:s,s:b,s:o,s:s?,s:b}", "id",
                                             (json_int_t)s->id, "address", s->address, "role", role,
                                             "voter_role", voter_role_name(s->role), "reachable",
                                             me || (p && p->reachable), "applied_index", applied,
                                             "api_url", url, "self", me));
    }
    return out;
}

/* ---- rejoining (issue 11) ----------------------------------------------------- */

#define REJOIN_TICK_MS       200
#define REJOIN_WARN_EVERY_NS (5ULL * 1000 * 1000 * 1000)

static const char *role_word(int role)
{
    return role == RAFT_VOTER     ? "voter"
           : role == RAFT_STANDBY ? "standby"
           : role == RAFT_SPARE   ? "spare"
                                  : "none";
}

static int role_of_word(const char *s)
{
    if (s == NULL)
        return -1;
    return strcmp(s, "voter") == 0     ? RAFT_VOTER
           : strcmp(s, "standby") == 0 ? RAFT_STANDBY
           : strcmp(s, "spare") == 0   ? RAFT_SPARE
                                       : -1;
}

static const char *phase_word(enum rd_rejoin_phase p)
{
    switch (p) {
    case RD_REJOIN_LEAVING:
        return "leaving";
    case RD_REJOIN_CATCHING_UP:
        return "catching_up";
    case RD_REJOIN_RETURNING:
        return "returning";
    case RD_REJOIN_DONE:
        return "done";
    default:
        return "none";
    }
}

static void rejoin_add_url(struct rd_rejoin *j, const char *url)
{
    if (url == NULL || url[0] == '\0' || j->n_urls == RD_REJOIN_MAX_URLS ||
        strlen(url) >= RD_CFG_STR)
        return;
    for (unsigned i = 0; i < j->n_urls; i++)
        if (strcmp(j->urls[i], url) == 0)
            return;
    snprintf(j->urls[j->n_urls++], RD_CFG_STR, "%s", url);
}

static void rejoin_wait(struct rd_cluster *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void rejoin_wait(struct rd_cluster *c, const char *fmt, ...)
{
    struct rd_rejoin *j = &c->rejoin;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->last_error, sizeof(j->last_error), fmt, ap);
    va_end(ap);
    uint64_t now = rd_mono_ns();
    if (j->last_warn_ns == 0 || now - j->last_warn_ns >= REJOIN_WARN_EVERY_NS) {
        j->last_warn_ns = now;
        RD_WARN("cluster", "rejoin_waiting", "phase=%s tries=%llu after_ms=%llu error=\"%s\"",
                phase_word(j->phase), (unsigned long long)j->tries,
                (unsigned long long)((now - j->since_ns) / 1000000), j->last_error);
    }
    if (j->n_urls > 0)
        j->next_url = (j->next_url + 1) % j->n_urls;
}

static void rejoin_finish(struct rd_cluster *c)
{
    struct rd_rejoin *j = &c->rejoin;
    j->phase = RD_REJOIN_DONE;
    if (rd_rejoin_clear(c->cfg->storage.data_dir) != 0)
        RD_WARN("cluster", "rejoin_note_left", "dir=%s", c->cfg->storage.data_dir);
    if (j->timer_on)
        uv_timer_stop(&j->timer);
    RD_INFO("cluster", "rejoined", "role=%s applied=%llu after_ms=%llu",
            j->member ? role_word(j->previous_role) : "none",
            (unsigned long long)rd_replica_applied_index(c->replica),
            (unsigned long long)((rd_mono_ns() - j->since_ns) / 1000000));
}

static void rejoin_send(struct rd_cluster *c);

/* The leader demoted this replica (or does not know it): raft starts here. */
static void rejoin_left(struct rd_cluster *c)
{
    struct rd_rejoin *j = &c->rejoin;
    j->phase = RD_REJOIN_CATCHING_UP;
    int rv = j->left(j->left_data);
    if (rv != 0) {
        RD_ERROR("cluster", "rejoin_failed", "error=%s detail=\"raft could not start\"",
                 rd_err_name(rv));
        j->phase = RD_REJOIN_NONE;
        if (j->timer_on)
            uv_timer_stop(&j->timer);
        return;
    }
    if (!j->member)
        rejoin_finish(c);
}

static void rejoin_answered(void *data, const struct rd_http_response *resp)
{
    struct rd_cluster *c = data;
    struct rd_rejoin *j = &c->rejoin;
    j->in_flight = false;
    if (j->phase != RD_REJOIN_LEAVING && j->phase != RD_REJOIN_RETURNING)
        return;
    if (resp->status == 0 && resp->error != NULL && strcmp(resp->error, "cancelled") == 0)
        return;
    json_t *body = resp->body_len > 0 ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    json_t *err = json_object_get(body, "error");
    const char *message = json_string_value(json_object_get(err, "message"));
    if (resp->status == 307) {
        const char *leader =
            json_string_value(json_object_get(json_object_get(err, "details"), "leader"));
        bool again = leader != NULL && j->redirect[0] == '\0';
        if (again)
            snprintf(j->redirect, sizeof(j->redirect), "%s", leader);
        json_decref(body);
        if (again)
            rejoin_send(c);
        else
            rejoin_wait(c, "redirected twice");
        return;
    }
    j->redirect[0] = '\0';
    if (resp->status == 200 && j->phase == RD_REJOIN_LEAVING) {
        int prev = role_of_word(json_string_value(json_object_get(body, "previous_role")));
        json_decref(body);
        j->member = true;
        if (j->previous_role < 0 && prev >= 0) {
            /* Kept in the note: a rejoin resumed later still knows it. */
            struct rd_rejoin_note note;
            char why[256];
            j->previous_role = prev;
            if (rd_rejoin_load(c->cfg->storage.data_dir, &note) != 0)
                note = (struct rd_rejoin_note){.moved = true, .since_ms = rd_now_ms()};
            note.previous_role = prev;
            if (rd_rejoin_store(c->cfg->storage.data_dir, &note, why, sizeof(why)) != 0)
                RD_WARN("cluster", "rejoin_note_unwritten", "error=\"%s\"", why);
        }
        RD_INFO("cluster", "rejoin_demoted",
                "previous_role=%s role=standby tries=%llu detail=\"the leader made this replica a "
                "standby: it starts empty and catches up\"",
                role_word(j->previous_role), (unsigned long long)j->tries);
        rejoin_left(c);
        return;
    }
    if (resp->status == 404 && j->phase == RD_REJOIN_LEAVING) {
        json_decref(body);
        j->member = false;
        RD_WARN("cluster", "rejoin_not_member",
                "detail=\"replica %llu is not a member of the cluster: it starts empty and waits "
                "to be added (POST /api/v1/cluster/replicas on the leader)\"",
                (unsigned long long)c->cfg->cluster.replica_id);
        rejoin_left(c);
        return;
    }
    if (resp->status == 200 && j->phase == RD_REJOIN_RETURNING) {
        json_decref(body);
        rejoin_finish(c);
        return;
    }
    if (resp->status != 0)
        rejoin_wait(c, "status %d: %s", resp->status, message ? message : "(no message)");
    else
        rejoin_wait(c, "%s", resp->error ? resp->error : "no answer");
    json_decref(body);
}

static void rejoin_send(struct rd_cluster *c)
{
    struct rd_rejoin *j = &c->rejoin;
    const char *base = NULL;
    if (j->redirect[0] != '\0') {
        base = j->redirect;
    } else if (j->phase == RD_REJOIN_RETURNING) {
        uint64_t leader;
        const char *addr;
        rd_replica_leader(c->replica, &leader, &addr);
        base = leader != 0 ? rd_cluster_api_url(c, leader) : NULL;
    }
    if (base == NULL && j->n_urls > 0)
        base = j->urls[j->next_url % j->n_urls];
    if (base == NULL || c->httpc == NULL) {
        rejoin_wait(c, "no peer API URL is known");
        return;
    }
    char url[RD_CFG_STR + 128];
    snprintf(url, sizeof(url), "%s/api/v1/cluster/replicas/%llu/rejoin", base,
             (unsigned long long)c->cfg->cluster.replica_id);
    const char *body = j->phase == RD_REJOIN_LEAVING ? "{\"phase\":\"leave\"}"
                                                     : "{\"phase\":\"return\",\"role\":\"voter\"}";
    /* A return waits for the leader to catch this replica up first. */
    struct rd_http_request req = {.method = "POST",
                                  .url = url,
                                  .body = body,
                                  .body_len = strlen(body),
                                  .timeout_ms = j->phase == RD_REJOIN_LEAVING ? 5000 : 30000};
    j->tries++;
    const char *auth = c->cfg->security.peer_authorization;
    if (rd_httpc_request_auth(c->httpc, &c->rejoin, &req, auth[0] ? auth : NULL, rejoin_answered,
                              c) == 0)
        j->in_flight = true;
    else
        rejoin_wait(c, "cannot send to %s", url);
}

static void rejoin_tick(uv_timer_t *t)
{
    struct rd_cluster *c = t->data;
    struct rd_rejoin *j = &c->rejoin;
    if (j->in_flight)
        return;
    uint64_t commit = 0;
    switch (j->phase) {
    case RD_REJOIN_LEAVING:
    case RD_REJOIN_RETURNING:
        rejoin_send(c);
        break;
    case RD_REJOIN_CATCHING_UP:
        if (!rd_cluster_caught_up(c, &commit) || commit == 0)
            break;
        if (j->previous_role != RAFT_VOTER) {
            rejoin_finish(c);
            break;
        }
        RD_INFO("cluster", "rejoin_caught_up", "applied=%llu leader_commit=%llu",
                (unsigned long long)rd_replica_applied_index(c->replica),
                (unsigned long long)commit);
        j->phase = RD_REJOIN_RETURNING;
        rejoin_send(c);
        break;
    default:
        break;
    }
}

int rd_cluster_rejoin(struct rd_cluster *c, struct rd_httpc *httpc, const char *reason,
                      int (*left)(void *data), void *data)
{
    struct rd_rejoin *j = &c->rejoin;
    if (j->phase == RD_REJOIN_LEAVING || j->phase == RD_REJOIN_CATCHING_UP ||
        j->phase == RD_REJOIN_RETURNING)
        return RD_EBUSY;
    bool timer_on = j->timer_on;
    uv_timer_t timer = j->timer;
    memset(j, 0, sizeof(*j));
    j->timer_on = timer_on;
    j->timer = timer;
    j->previous_role = -1;
    j->left = left;
    j->left_data = data;
    uint64_t self = c->cfg->cluster.replica_id;
    for (unsigned i = 0; i < c->cfg->cluster.n_peers; i++)
        if (c->cfg->cluster.peers[i].id != self)
            rejoin_add_url(j, c->cfg->cluster.peers[i].api_url);
    const struct rd_replica *r = c->replica;
    for (unsigned i = 0; r->has_mark_start && i < r->mark_start.n_members; i++)
        if (r->mark_start.members[i].id != self)
            rejoin_add_url(j, r->mark_start.members[i].api_url);
    const struct raft_configuration *conf = rd_replica_configuration(c->replica);
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id != self)
            rejoin_add_url(j, rd_fsm_replica_url(c->fsm, conf->servers[i].id));
    if (j->n_urls == 0) {
        RD_ERROR("cluster", "rejoin_failed",
                 "detail=\"no other replica's API URL is known (cluster.peers with api_url, or "
                 "the members in the acknowledged mark): this replica cannot rejoin by itself\"");
        return RD_EINVAL;
    }
    struct rd_rejoin_note note;
    char why[256];
    int rv = rd_rejoin_load(c->cfg->storage.data_dir, &note);
    if (rv == 0) {
        j->previous_role = note.previous_role;
    } else {
        /* A rejoin asked for while running: the note comes first, so that a
         * crash before the state moved aside still ends in a rejoin. */
        note =
            (struct rd_rejoin_note){.moved = false, .previous_role = -1, .since_ms = rd_now_ms()};
        snprintf(note.reason, sizeof(note.reason), "%s", reason ? reason : "rejoin requested");
        if (rd_rejoin_store(c->cfg->storage.data_dir, &note, why, sizeof(why)) != 0)
            RD_WARN("cluster", "rejoin_note_unwritten", "error=\"%s\"", why);
    }
    if (c->httpc == NULL)
        c->httpc = httpc;
    j->phase = RD_REJOIN_LEAVING;
    j->since_ns = rd_mono_ns();
    RD_WARN("cluster", "rejoining",
            "peers=%u reason=\"%s\" detail=\"asking the leader to demote this replica before "
            "raft starts here\"",
            j->n_urls, note.reason);
    if (!j->timer_on) {
        uv_timer_init(c->loop, &j->timer);
        j->timer.data = c;
        j->timer_on = true;
    }
    uv_timer_start(&j->timer, rejoin_tick, 0, REJOIN_TICK_MS);
    return 0;
}

enum rd_rejoin_phase rd_cluster_rejoin_phase(const struct rd_cluster *c)
{
    return c->rejoin.phase;
}

void rd_cluster_metrics(struct rd_cluster *c, struct rd_mbuf *b)
{
    rd_metric_header(b, "recoveryd_peer_up", "gauge",
                     "1 while the other replica answers this one's GET /health polls (every "
                     "500 ms; 0 after 1.5 s without an answer, or before its first).");
    for (unsigned i = 0; i < c->n_peers; i++) {
        const struct rd_peer *p = &c->peers[i];
        rd_mbuf_printf(b, "recoveryd_peer_up{peer=\"%llu\"} %d\n", (unsigned long long)p->id,
                       p->reachable && p->answered ? 1 : 0);
    }
    rd_metric_header(b, "recoveryd_peer_rtt_seconds", "gauge",
                     "Round-trip time of the last answered GET /health poll of the other "
                     "replica (HTTP over the API address; absent before its first answer).");
    for (unsigned i = 0; i < c->n_peers; i++) {
        const struct rd_peer *p = &c->peers[i];
        if (p->answered)
            rd_mbuf_printf(b, "recoveryd_peer_rtt_seconds{peer=\"%llu\"} %.6f\n",
                           (unsigned long long)p->id, (double)p->rtt_ns / 1e9);
    }
}
