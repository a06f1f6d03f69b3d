/*
 * Engine membership: GET/POST/DELETE /api/v1/cluster/replicas, and POST
 * /api/v1/cluster/replicas/{id}/rejoin (a replica whose state is gone leaves
 * the voters before it starts empty, and returns once caught up). Every
 * change is a raft configuration change (committed through the log); a new
 * replica's API URL is written to the log first (replica_info), so every
 * replica can redirect to it and poll it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "cluster/cluster.h"
#include "config/config.h"
#include "detect/analysis.h"
#include "fsm/fsm.h"
#include "plugin/host.h"
#include "policy/policy.h"
#include "recover/sched.h"
#include "registry/registry.h"
#include "replica/replica.h"
#include "common/log.h"
#include "http.h"
#include "input_limits.h"
#include "recoveryd/error.h"

static json_t *replicas_body(const struct rd_http_env *env)
{
    uint64_t leader;
    const char *addr;
    rd_replica_leader(env->replica, &leader, &addr);
    return json_pack("{s:o,s:I,s:I,s:o}", "leader",
                     leader ? json_integer((json_int_t)leader) : json_null(), "term",
                     (json_int_t)rd_replica_term(env->replica), "self",
                     (json_int_t)env->cfg->cluster.replica_id, "replicas",
                     rd_cluster_replicas_json(env->cluster));
}

void rd_api_REPLICAS_LIST(struct rd_http_req *hr)
{
    rd_http_send_json(hr, 200, replicas_body(hr->env));
}

static int parse_role(const char *s)
{
    if (s == NULL || strcmp(s, "voter") == 0)
        return RAFT_VOTER;
    if (strcmp(s, "standby") == 0)
        return RAFT_STANDBY;
    if (strcmp(s, "spare") == 0)
        return RAFT_SPARE;
    return -1;
}

/* The replica id from the path (digits only, 1 to RD_LIMIT_INT); answers 400
 * itself and returns 0. */
static unsigned long long path_replica_id(struct rd_http_req *hr)
{
    h2o_iovec_t s = hr->params[0];
    uint64_t id = rd_limits_parse_id(s.base, s.len, (uint64_t)RD_LIMIT_INT);
    if (id == 0)
        rd_http_bad_limit(hr, "id", RD_LIMIT_INT,
                          "the replica id in the path must be a raft server id, an integer from 1 "
                          "to %lld, got '%.32s'",
                          RD_LIMIT_INT, s.len > 32 ? "(too long)" : s.base);
    return id;
}

static const struct raft_server *member(const struct rd_http_env *env, uint64_t id)
{
    const struct raft_configuration *conf = rd_replica_configuration(env->replica);
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == id)
            return &conf->servers[i];
    return NULL;
}

static void url_forgotten(void *data, int status, uint64_t value)
{
    (void)data;
    (void)status;
    (void)value;
}

/* Forgets replica `id`'s API URL (best effort: a stale URL only costs a poll). */
static void forget_url(const struct rd_http_env *env, uint64_t id)
{
    if (!rd_replica_is_leader(env->replica))
        return;
    struct rd_cmd cmd = {.type = RD_CMD_REPLICA_INFO};
    cmd.u.rinfo.id = id;
    cmd.u.rinfo.api_url = RD_STR("");
    rd_replica_propose(env->replica, &cmd, url_forgotten, NULL);
}

/* The change committed (or failed): answer with the membership now. */
static void changed(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    (void)value;
    bool add = p->key[0] == 'a';
    unsigned long long id = 0;
    char address[RD_CFG_STR] = "";
    if (add)
        sscanf(p->key, "a %llu %*d %255s", &id, address);
    else
        id = strtoull(p->key, NULL, 10);
    /* A new member that never answered was taken out again (replica.c): its URL goes too. */
    if (add && status == RD_ETIMEOUT)
        forget_url(p->hr.env, id);
    if (rd_http_pending_alive(p)) {
        if (status == 0) {
            rd_http_send_json(&p->hr, add ? 201 : 200, replicas_body(p->hr.env));
        } else if (status == RD_ETIMEOUT) {
            p->hr.audited = false; /* the failure is a record too */
            rd_http_send_error(
                &p->hr, 504, "replica_unreachable",
                json_pack("{s:I,s:s?}", "id", (json_int_t)id, "address", add ? address : NULL),
                add ? "replica %llu at %s did not answer the leader's catch-up: it was not added "
                      "(the membership is as before); start it and retry"
                    : "replica %llu%s did not answer the leader's catch-up: its role is unchanged",
                id, add ? address : "");
        } else {
            p->hr.audited = false; /* the failure is a record too */
            rd_http_send_rd_error(&p->hr, status, NULL);
        }
    }
    rd_http_pending_done(p);
}

/* The new replica's API URL is in the log: now raft adds it. */
static void url_written(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    (void)value;
    const struct rd_http_env *env = p->hr.env;
    if (status == 0) {
        /* key: "a <id> <role> <address>" */
        unsigned long long id = 0;
        int role = 0;
        char address[RD_CFG_STR] = "";
        sscanf(p->key, "a %llu %d %255s", &id, &role, address);
        status = rd_replica_add(env->replica, id, address, role, changed, p);
        if (status == 0)
            return;
    }
    p->hr.audited = false; /* the failure is a record too */
    if (rd_http_pending_alive(p))
        rd_http_send_rd_error(&p->hr, status, NULL);
    rd_http_pending_done(p);
}

/*
 * {"id", "role": "voter" | "standby" | "spare", "address"?, "api_url"?}:
 * a new id is added (address and api_url required) with that role; a
 * member gets the role (promote a standby to voter, demote, ...).
 */
void rd_api_REPLICAS_CHANGE(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    json_t *body = rd_http_body_object(hr);
    if (body == NULL)
        return;
    json_t *jid = json_object_get(body, "id");
    const char *role_s = json_string_value(json_object_get(body, "role"));
    const char *address = json_string_value(json_object_get(body, "address"));
    const char *url = json_string_value(json_object_get(body, "api_url"));
    int role = parse_role(role_s);
    char host[RD_CFG_STR];
    uint16_t port;
    json_t *jaddr = json_object_get(body, "address"), *jurl = json_object_get(body, "api_url");
    if (!rd_limits_int_in(jid, 1, RD_LIMIT_INT)) {
        rd_http_bad_limit(hr, "id", RD_LIMIT_INT,
                          "id must be the replica's raft server id, an integer from 1 to %lld",
                          RD_LIMIT_INT);
    } else if (role < 0 || (json_object_get(body, "role") && role_s == NULL)) {
        rd_http_bad_request(hr, "role", "role must be voter, standby or spare");
    } else if ((jaddr != NULL && address == NULL) ||
               (address != NULL && json_string_length(jaddr) > RD_LIMIT_REPLICA_ADDR)) {
        rd_http_bad_limit(hr, "address", RD_LIMIT_REPLICA_ADDR,
                          "address must be the replica's raft HOST:PORT, at most %d characters",
                          RD_LIMIT_REPLICA_ADDR);
    } else if (address != NULL && rd_config_parse_hostport(address, host, &port) != 0) {
        rd_http_bad_request(hr, "address",
                            "address must be the replica's raft HOST:PORT (a host name, an IPv4 "
                            "address or a [bracketed] IPv6 address, and a port from 1 to 65535)");
    } else if ((jurl != NULL && url == NULL) ||
               (url != NULL &&
                (json_string_length(jurl) > RD_LIMIT_API_URL_LEN ||
                 (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)))) {
        rd_http_bad_limit(hr, "api_url", RD_LIMIT_API_URL_LEN,
                          "api_url must be http://HOST:PORT or https://HOST:PORT, at most %d "
                          "characters",
                          RD_LIMIT_API_URL_LEN);
    } else {
        uint64_t id = (uint64_t)json_integer_value(jid);
        snprintf(hr->audit_target, sizeof(hr->audit_target), "%llu", (unsigned long long)id);
        const struct raft_server *m = member(env, id);
        struct rd_http_pending *p = NULL;
        int rv;
        if (m != NULL) {
            char why[256];
            if (m->role == role) {
                rd_http_send_error(hr, 409, "conflict", NULL, "replica %llu is already a %s",
                                   (unsigned long long)id, role_s ? role_s : "voter");
                goto out;
            }
            if (rd_cluster_check_change(env->cluster, id, role, why, sizeof(why)) != 0) {
                rd_http_send_error(hr, 409, "conflict", NULL, "%s", why);
                goto out;
            }
            p = rd_http_defer(hr);
            if (p != NULL) {
                snprintf(p->key, sizeof(p->key), "%llu", (unsigned long long)id);
                rd_http_audit_ahead(&p->hr);
            }
            rv = p ? rd_replica_assign(env->replica, id, role, changed, p) : RD_ENOMEM;
        } else if (address == NULL || url == NULL) {
            rd_http_bad_request(hr, address == NULL ? "address" : "api_url",
                                "a new replica needs its raft address and its api_url");
            goto out;
        } else {
            struct rd_cmd cmd = {.type = RD_CMD_REPLICA_INFO};
            cmd.u.rinfo.id = id;
            cmd.u.rinfo.api_url = RD_STR(url);
            /* "a <id> <role> <address>" fits the pending record's key whole. */
            _Static_assert(2 + 16 + 1 + 1 + 1 + RD_LIMIT_REPLICA_ADDR <
                               sizeof(((struct rd_http_pending *)0)->key),
                           "a replica address must fit a pending key");
            char key[RD_CFG_STR + 64];
            int n =
                snprintf(key, sizeof(key), "a %llu %d %s", (unsigned long long)id, role, address);
            rd_http_propose(hr, &cmd, key, (size_t)n, url_written);
            goto out;
        }
        if (rv != 0) {
            if (p)
                p->hr.audited = false; /* the failure is a record too */
            rd_http_send_rd_error(p ? &p->hr : hr, rv, NULL);
            if (p)
                rd_http_pending_done(p);
        }
    }
out:
    json_decref(body);
}

static void removed(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    const struct rd_http_env *env = p->hr.env;
    if (status == 0) /* forget its URL too */
        forget_url(env, strtoull(p->key, NULL, 10));
    changed(data, status, value);
}

void rd_api_REPLICA_DELETE(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    unsigned long long id = path_replica_id(hr);
    if (id == 0)
        return;
    if (member(env, id) == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL, "replica %llu is not a member", id);
        return;
    }
    char why[256];
    if (rd_cluster_check_change(env->cluster, id, -1, why, sizeof(why)) != 0) {
        rd_http_send_error(hr, 409, "conflict", NULL, "%s", why);
        return;
    }
    struct rd_http_pending *p = rd_http_defer(hr);
    if (p == NULL) {
        rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
        return;
    }
    snprintf(p->key, sizeof(p->key), "%llu", id);
    rd_http_audit_ahead(&p->hr);
    int rv = rd_replica_remove(env->replica, id, removed, p);
    if (rv != 0) {
        p->hr.audited = false; /* the failure is a record too */
        rd_http_send_rd_error(&p->hr, rv, NULL);
        rd_http_pending_done(p);
    }
}

/* ---- rejoin (issue 11) ----------------------------------------------------- */

static const char *role_name(int role)
{
    return role == RAFT_VOTER ? "voter" : role == RAFT_STANDBY ? "standby" : "spare";
}

/* {"id","phase","role","previous_role"}, once the change (or the barrier) committed. */
static void rejoin_answer(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    (void)value;
    if (rd_http_pending_alive(p)) {
        /* key: "<phase> <id> <previous role> <role>" */
        char phase[16] = "";
        unsigned long long id = 0;
        int prev = 0, role = 0;
        sscanf(p->key, "%15s %llu %d %d", phase, &id, &prev, &role);
        if (status == 0) {
            rd_http_send_json(&p->hr, 200,
                              json_pack("{s:I,s:s,s:s,s:s}", "id", (json_int_t)id, "phase", phase,
                                        "role", role_name(role), "previous_role", role_name(prev)));
        } else {
            p->hr.audited = false; /* the failure is a record too */
            rd_http_send_rd_error(&p->hr, status, NULL);
        }
        if (status == 0)
            RD_INFO("cluster", strcmp(phase, "leave") == 0 ? "replica_left" : "replica_returned",
                    "id=%llu role=%s previous_role=%s", id, role_name(role), role_name(prev));
    }
    rd_http_pending_done(p);
}

/*
 * {"phase": "leave"}: the replica's state is gone (damaged, or diverged):
 * it stops being a voter (standby: it still receives the log) before it
 * starts empty, so that its empty log can never help elect a leader that
 * lacks committed entries. {"phase": "return", "role": "voter"}: it caught
 * up; libraft catches it up to the last entry and makes it a voter again.
 * Both answer once the configuration committed (a barrier when it already
 * is in that role), with the role it had before.
 */
void rd_api_REPLICA_REJOIN(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    unsigned long long id = path_replica_id(hr);
    if (id == 0)
        return;
    json_t *body = rd_http_body_object(hr);
    if (body == NULL)
        return;
    const char *phase = json_string_value(json_object_get(body, "phase"));
    const char *role_s = json_string_value(json_object_get(body, "role"));
    int role = parse_role(role_s);
    bool leave = phase != NULL && strcmp(phase, "leave") == 0;
    const struct raft_server *m = member(env, id);
    if (phase == NULL || (!leave && strcmp(phase, "return") != 0)) {
        rd_http_bad_request(hr, "phase", "phase must be leave or return");
    } else if (role < 0 || (json_object_get(body, "role") && role_s == NULL)) {
        rd_http_bad_request(hr, "role", "role must be voter, standby or spare");
    } else if (m == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL,
                           "replica %llu is not a member: add it with POST "
                           "/api/v1/cluster/replicas",
                           id);
    } else if (leave && id == env->cfg->cluster.replica_id) {
        rd_http_send_error(hr, 409, "conflict", NULL,
                           "replica %llu leads the cluster: it cannot rejoin from itself; "
                           "transfer the leadership first",
                           id);
    } else {
        int prev = m->role, want = leave ? RAFT_STANDBY : role;
        char why[256];
        if (leave && prev == RAFT_VOTER &&
            rd_cluster_check_change(env->cluster, id, RAFT_STANDBY, why, sizeof(why)) != 0) {
            rd_http_send_error(hr, 409, "conflict", NULL, "%s", why);
            goto out;
        }
        struct rd_http_pending *p = rd_http_defer(hr);
        if (p == NULL) {
            rd_http_send_rd_error(hr, RD_ENOMEM, NULL);
            goto out;
        }
        snprintf(p->key, sizeof(p->key), "%s %llu %d %d", leave ? "leave" : "return", id, prev,
                 want);
        if (leave && prev == RAFT_VOTER)
            RD_WARN("cluster", "replica_rejoining",
                    "id=%llu detail=\"its state is gone: demoted to standby until it caught up\"",
                    id);
        rd_http_audit_ahead(&p->hr);
        /* Already in that role: answer once that configuration is committed. */
        int rv = prev == want ? rd_replica_read_barrier(env->replica, rejoin_answer, p)
                              : rd_replica_assign(env->replica, id, want, rejoin_answer, p);
        if (rv != 0) {
            p->hr.audited = false; /* the failure is a record too */
            rd_http_send_rd_error(&p->hr, rv, NULL);
            rd_http_pending_done(p);
        }
    }
out:
    json_decref(body);
}
