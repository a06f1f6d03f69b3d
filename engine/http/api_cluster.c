/*
 * Engine membership: GET/POST/DELETE /api/v1/cluster/replicas. Every change
 * is a raft configuration change (committed through the log); a new
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
#include "http.h"
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

static const struct raft_server *member(const struct rd_http_env *env, uint64_t id)
{
    const struct raft_configuration *conf = rd_replica_configuration(env->replica);
    for (unsigned i = 0; i < conf->n; i++)
        if (conf->servers[i].id == id)
            return &conf->servers[i];
    return NULL;
}

/* The change committed (or failed): answer with the membership now. */
static void changed(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    (void)value;
    if (rd_http_pending_alive(p)) {
        if (status == 0)
            rd_http_send_json(&p->hr, p->key[0] == 'a' ? 201 : 200, replicas_body(p->hr.env));
        else
            rd_http_send_rd_error(&p->hr, status, NULL);
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
    if (!json_is_integer(jid) || json_integer_value(jid) <= 0) {
        rd_http_bad_request(hr, "id", "id must be the replica's raft server id, above 0");
    } else if (role < 0 || (json_object_get(body, "role") && role_s == NULL)) {
        rd_http_bad_request(hr, "role", "role must be voter, standby or spare");
    } else if (address != NULL && (strlen(address) >= RD_CFG_STR ||
                                   rd_config_parse_hostport(address, host, &port) != 0)) {
        rd_http_bad_request(hr, "address", "address must be the replica's raft HOST:PORT");
    } else if (url != NULL && (strlen(url) > 255 || (strncmp(url, "http://", 7) != 0 &&
                                                     strncmp(url, "https://", 8) != 0))) {
        rd_http_bad_request(hr, "api_url", "api_url must be http://HOST:PORT or https://HOST:PORT");
    } else {
        uint64_t id = (uint64_t)json_integer_value(jid);
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
            rv = p ? rd_replica_assign(env->replica, id, role, changed, p) : RD_ENOMEM;
        } else if (address == NULL || url == NULL) {
            rd_http_bad_request(hr, address == NULL ? "address" : "api_url",
                                "a new replica needs its raft address and its api_url");
            goto out;
        } else {
            struct rd_cmd cmd = {.type = RD_CMD_REPLICA_INFO};
            cmd.u.rinfo.id = id;
            cmd.u.rinfo.api_url = RD_STR(url);
            char key[RD_CFG_STR + 64];
            int n =
                snprintf(key, sizeof(key), "a %llu %d %s", (unsigned long long)id, role, address);
            rd_http_propose(hr, &cmd, key, (size_t)n, url_written);
            goto out;
        }
        if (rv != 0) {
            rd_http_send_rd_error(p ? &p->hr : hr, rv, NULL);
            if (p)
                rd_http_pending_done(p);
        }
    }
out:
    json_decref(body);
}

static void url_forgotten(void *data, int status, uint64_t value)
{
    (void)data;
    (void)status;
    (void)value;
}

static void removed(void *data, int status, uint64_t value)
{
    struct rd_http_pending *p = data;
    const struct rd_http_env *env = p->hr.env;
    if (status == 0 && rd_replica_is_leader(env->replica)) {
        /* Forget its URL too (best effort: a stale URL only costs a poll). */
        struct rd_cmd cmd = {.type = RD_CMD_REPLICA_INFO};
        cmd.u.rinfo.id = strtoull(p->key, NULL, 10);
        cmd.u.rinfo.api_url = RD_STR("");
        rd_replica_propose(env->replica, &cmd, url_forgotten, NULL);
    }
    changed(data, status, value);
}

void rd_api_REPLICA_DELETE(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    h2o_iovec_t s = hr->params[0];
    char buf[24];
    char *end = NULL;
    unsigned long long id = 0;
    if (s.len > 0 && s.len < sizeof(buf)) {
        memcpy(buf, s.base, s.len);
        buf[s.len] = '\0';
        id = strtoull(buf, &end, 10);
    }
    if (id == 0 || end == NULL || *end != '\0') {
        rd_http_bad_request(hr, "id", "the path must end with the replica's raft server id");
        return;
    }
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
    int rv = rd_replica_remove(env->replica, id, removed, p);
    if (rv != 0) {
        rd_http_send_rd_error(&p->hr, rv, NULL);
        rd_http_pending_done(p);
    }
}
