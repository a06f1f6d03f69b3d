#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/util.h"
#include "recoveryd/error.h"
#include "replica.h"

struct submit {
    struct raft_apply req;
    struct rd_replica *r;
    rd_submit_cb cb;
    void *data;
    uint64_t t0;
};

static int map_raft_error(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOMEM:
        return RD_ENOMEM;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
        return RD_ENOTLEADER;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED:
        return RD_ESHUTDOWN;
    case RAFT_NOSPACE:
        return RD_ENOSPACE;
    case RAFT_TOOBIG:
        return RD_ETOOLARGE;
    case RAFT_CORRUPT:
        return RD_ECORRUPT;
    default:
        return RD_EIO;
    }
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static const char *state_name(int state)
{
    switch (state) {
    case RAFT_LEADER:
        return "leader";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_FOLLOWER:
        return "follower";
    default:
        return "unavailable";
    }
}

static void watch_cb(uv_timer_t *t)
{
    struct rd_replica *r = t->data;
    int state = raft_state(&r->raft);
    if (state == r->last_state)
        return;
    bool was = r->last_state == RAFT_LEADER, is = state == RAFT_LEADER;
    RD_INFO("raft", "role_changed", "from=%s to=%s term=%llu", state_name(r->last_state),
            state_name(state), (unsigned long long)raft_current_term(&r->raft));
    r->last_state = state;
    if (was != is && r->on_role != NULL)
        r->on_role(r->on_role_data, is);
}

int rd_replica_start(struct rd_replica *r, uv_loop_t *loop, const struct rd_config *cfg,
                     struct rd_fsm *fsm)
{
    int rv;
    r->loop = loop;
    r->cfg = cfg;
    r->fsm = fsm;
    r->last_state = RAFT_UNAVAILABLE;
    snprintf(r->raft_dir, sizeof(r->raft_dir), "%s/raft", cfg->storage.data_dir);
    if ((rv = make_dirs(r->raft_dir)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "cannot create data directory %s: %s", r->raft_dir,
                 strerror(-rv));
        return RD_EIO;
    }
    /* libraft's TCP transport needs version 1 set before init (else RAFT_INVALID). */
    r->transport.version = 1;
    r->transport.data = NULL;
    if ((rv = raft_uv_tcp_init(&r->transport, loop)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft transport: %s", raft_strerror(rv));
        return RD_EIO;
    }
    if ((rv = raft_uv_init(&r->io, loop, r->raft_dir, &r->transport)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft storage in %s: %s", r->raft_dir,
                 raft_strerror(rv));
        raft_uv_tcp_close(&r->transport);
        return RD_EIO;
    }
    raft_uv_set_segment_size(&r->io, cfg->storage.segment_size);
    if ((rv = raft_init(&r->raft, &r->io, &fsm->raft, cfg->cluster.replica_id,
                        cfg->cluster.raft_address)) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft init: %s", raft_errmsg(&r->raft));
        raft_uv_close(&r->io);
        raft_uv_tcp_close(&r->transport);
        return RD_EIO;
    }
    r->inited = true;
    r->raft.data = r;
    raft_set_election_timeout(&r->raft, (unsigned)cfg->cluster.election_timeout_ms);
    raft_set_heartbeat_timeout(&r->raft, (unsigned)cfg->cluster.heartbeat_timeout_ms);
    raft_set_pre_vote(&r->raft, cfg->cluster.pre_vote);
    raft_set_max_inflight_entries(&r->raft, cfg->cluster.max_inflight);
    raft_set_snapshot_threshold(&r->raft, cfg->storage.snapshot_threshold);
    raft_set_snapshot_trailing(&r->raft, cfg->storage.snapshot_trailing);

    struct raft_configuration conf;
    raft_configuration_init(&conf);
    if (cfg->cluster.n_peers == 0) {
        rv = raft_configuration_add(&conf, cfg->cluster.replica_id, cfg->cluster.raft_address,
                                    RAFT_VOTER);
    } else {
        rv = 0;
        for (unsigned i = 0; i < cfg->cluster.n_peers && rv == 0; i++)
            rv = raft_configuration_add(&conf, cfg->cluster.peers[i].id,
                                        cfg->cluster.peers[i].address, RAFT_VOTER);
    }
    if (rv == 0) {
        rv = raft_bootstrap(&r->raft, &conf);
        if (rv == RAFT_CANTBOOTSTRAP) /* existing data: a restart, fine */
            rv = 0;
    }
    raft_configuration_close(&conf);
    if (rv == 0)
        rv = raft_start(&r->raft);
    if (rv != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft start in %s: %s (%s)", r->raft_dir,
                 raft_strerror(rv), raft_errmsg(&r->raft));
        /* raft_close releases io and transport through its callback chain;
         * the caller runs the loop to finish it. */
        return rv == RAFT_NOSPACE ? RD_ENOSPACE : RD_EIO;
    }
    r->started = true;
    uv_timer_init(loop, &r->watch);
    r->watch.data = r;
    uv_timer_start(&r->watch, watch_cb, 0, 10);
    RD_INFO("raft", "started", "id=%llu address=%s dir=%s applied=%llu",
            (unsigned long long)cfg->cluster.replica_id, cfg->cluster.raft_address, r->raft_dir,
            (unsigned long long)raft_last_applied(&r->raft));
    return 0;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct submit *s = req->data;
    struct rd_replica *r = s->r;
    int st;
    uint64_t value = 0;
    r->inflight--;
    if (status != 0) {
        st = map_raft_error(status);
        r->commit_errors_total++;
        RD_WARN("raft", "commit_failed", "error=%s", raft_strerror(status));
    } else {
        rd_fsm_unpack(result, &st, &value);
        r->commits_total++;
        rd_hist_observe(&r->commit_latency, (double)(rd_mono_ns() - s->t0) / 1e9);
    }
    rd_submit_cb cb = s->cb;
    void *data = s->data;
    free(s);
    cb(data, st, value);
}

int rd_replica_submit(struct rd_replica *r, struct rd_wbuf *w, rd_submit_cb cb, void *data)
{
    if (r->closing || !r->started)
        return RD_ESHUTDOWN;
    if (raft_state(&r->raft) != RAFT_LEADER)
        return RD_ENOTLEADER;
    if (w->err)
        return w->err;
    struct submit *s = malloc(sizeof(*s));
    if (s == NULL)
        return RD_ENOMEM;
    s->r = r;
    s->cb = cb;
    s->data = data;
    s->t0 = rd_mono_ns();
    s->req.data = s;
    /* libraft wants entry lengths in multiples of 8; decoders ignore the
     * zero padding (a body only grows by appending fields). */
    static const uint8_t zeros[8];
    if (w->len % 8 != 0)
        rd_w_bytes(w, zeros, 8 - w->len % 8);
    if (w->err) {
        free(s);
        return w->err;
    }
    /* raft's default heap is malloc: the writer's buffer passes over as is. */
    struct raft_buffer buf = {.base = w->p, .len = w->len};
    int rv = raft_apply(&r->raft, &s->req, &buf, 1, apply_cb);
    if (rv != 0) {
        RD_WARN("raft", "propose_failed", "error=\"%s\" detail=\"%s\"", raft_strerror(rv),
                raft_errmsg(&r->raft));
        free(s);
        /* 0.22 may already have put the entry in its log (and freed it on
         * the way out): the buffer is raft's either way. A leak in this rare
         * path is safer than a double free. */
        w->p = NULL;
        w->len = w->cap = 0;
        return map_raft_error(rv);
    }
    r->inflight++;
    w->p = NULL;
    w->len = w->cap = 0;
    return 0;
}

bool rd_replica_is_leader(struct rd_replica *r)
{
    return r->started && !r->closing && raft_state(&r->raft) == RAFT_LEADER;
}

void rd_replica_leader(struct rd_replica *r, uint64_t *id, const char **address)
{
    raft_id lid = 0;
    const char *addr = NULL;
    if (r->started)
        raft_leader(&r->raft, &lid, &addr);
    *id = lid;
    *address = addr;
}

uint64_t rd_replica_applied_index(struct rd_replica *r)
{
    return r->started ? raft_last_applied(&r->raft) : 0;
}

uint64_t rd_replica_commit_index(struct rd_replica *r)
{
    return r->started ? raft_commit_index(&r->raft) : 0;
}

uint64_t rd_replica_term(struct rd_replica *r)
{
    return r->started ? raft_current_term(&r->raft) : 0;
}

const char *rd_replica_role_name(struct rd_replica *r)
{
    return r->started ? state_name(raft_state(&r->raft)) : "unavailable";
}

static void watch_closed(uv_handle_t *h)
{
    (void)h;
}

static void raft_closed(struct raft *raft)
{
    struct rd_replica *r = raft->data;
    raft_uv_close(&r->io);
    raft_uv_tcp_close(&r->transport);
    RD_INFO("raft", "closed", "applied=%llu", (unsigned long long)raft_last_applied(raft));
    if (r->close_cb)
        r->close_cb(r->close_data);
}

void rd_replica_close(struct rd_replica *r, void (*cb)(void *data), void *data)
{
    r->close_cb = cb;
    r->close_data = data;
    if (r->closing)
        return;
    r->closing = true;
    if (r->started)
        uv_close((uv_handle_t *)&r->watch, watch_closed);
    if (!r->inited) {
        if (cb)
            cb(data);
        return;
    }
    raft_close(&r->raft, raft_closed);
}
