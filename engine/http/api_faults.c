/* Fault records and the fault system's status; the plugin list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
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

static json_t *json_or_string(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(text);
}

static json_t *fault_json(const struct rd_fault *x)
{
    char det[RD_TIME_STRLEN], res[RD_TIME_STRLEN];
    rd_time_format(x->detected_at, det);
    if (x->resolved_at)
        rd_time_format(x->resolved_at, res);
    json_t *meta = json_or_string(x->metadata_json);
    if (json_is_object(meta) && x->resolution[0])
        json_object_set_new(meta, "resolution", json_string(x->resolution));
    return json_pack("{s:s,s:s?,s:s,s:s,s:s,s:o,s:o,s:s,s:o,s:I}", "id", x->id, "node_id",
                     x->node_id[0] ? x->node_id : NULL, "fault_type", rd_fault_type_name(x->type),
                     "severity_level", rd_severity_name(x->severity), "detected_at", det,
                     "resolved_at", x->resolved_at ? json_string(res) : json_null(),
                     "recovery_action", json_or_string(x->recovery_action_json), "status",
                     rd_fault_status_name(x->status), "metadata", meta, "seq", (json_int_t)x->seq);
}

void rd_api_FAULTS_RECORDS(struct rd_http_req *hr)
{
    const struct rd_fsm *f = hr->env->fsm;
    int limit = rd_api_list_limit(hr);
    if (limit < 0)
        return;
    const char *node = rd_http_query(hr, "node_id");
    const char *st = rd_http_query(hr, "status");
    const char *sev = rd_http_query(hr, "severity_level");
    const char *type = rd_http_query(hr, "fault_type");
    const char *since = rd_http_query(hr, "since");
    const char *cursor = rd_http_query(hr, "cursor");
    int want_status = -1, want_sev = -1, want_type = -1;
    int64_t since_ms = 0;
    if (node != NULL && !rd_node_id_valid(node, strlen(node))) {
        rd_http_bad_request(hr, "node_id", "node_id must be 1-255 characters of [A-Za-z0-9._:-]");
        return;
    }
    if (st != NULL && (want_status = rd_fault_status_parse(st)) < 0) {
        rd_http_bad_request(hr, "status", "status must be open or resolved");
        return;
    }
    if (sev != NULL && (want_sev = rd_severity_parse(sev)) < 0) {
        rd_http_bad_request(hr, "severity_level",
                            "severity_level must be critical, major, minor or warning");
        return;
    }
    if (type != NULL && (want_type = rd_fault_type_parse(type)) < 0) {
        rd_http_bad_request(hr, "fault_type",
                            "fault_type must be crash, hang, network, overload, degraded, "
                            "partition, data_corruption, policy_error, manual or poison_task");
        return;
    }
    if (since != NULL && rd_time_parse(since, &since_ms) != 0) {
        rd_http_bad_request(hr, "since",
                            "since must be an RFC 3339 time like 2026-11-24T03:04:05Z");
        return;
    }
    /* Newest first; the cursor is the seq of the last record returned. */
    size_t i = f->n_faults;
    if (cursor != NULL && cursor[0] != '\0') {
        char *end;
        unsigned long long seq = strtoull(cursor, &end, 10);
        if (*end != '\0' || seq == 0) {
            rd_http_bad_request(hr, "cursor", "cursor is not one this server returned");
            return;
        }
        i = rd_fsm_fault_index(f, seq);
    }
    json_t *items = json_array();
    uint64_t last = 0;
    bool more = false;
    while (i-- > 0) {
        const struct rd_fault *x = f->faults[i];
        if (x->detected_at < since_ms)
            break; /* records are in order of detection */
        if ((node && strcmp(node, x->node_id) != 0) ||
            (want_status >= 0 && x->status != want_status) ||
            (want_sev >= 0 && x->severity != want_sev) || (want_type >= 0 && x->type != want_type))
            continue;
        if ((int)json_array_size(items) == limit) {
            more = true;
            break;
        }
        json_array_append_new(items, fault_json(x));
        last = x->seq;
    }
    char next[32];
    snprintf(next, sizeof(next), "%llu", (unsigned long long)last);
    rd_http_send_json(hr, 200,
                      json_pack("{s:o,s:o}", "items", items, "next_cursor",
                                more ? json_string(next) : json_null()));
}

void rd_api_FAULT_GET(struct rd_http_req *hr)
{
    h2o_iovec_t id = hr->params[0];
    char buf[64];
    const struct rd_fault *x = NULL;
    if (id.len < sizeof(buf)) {
        memcpy(buf, id.base, id.len);
        buf[id.len] = '\0';
        x = rd_fsm_fault(hr->env->fsm, buf);
    }
    if (x == NULL) {
        rd_http_send_error(hr, 404, "not_found", NULL, "no fault record %.*s", (int)id.len,
                           id.base);
        return;
    }
    rd_http_send_json(hr, 200, fault_json(x));
}

void rd_api_FAULTS_STATUS(struct rd_http_req *hr)
{
    const struct rd_http_env *env = hr->env;
    const struct rd_fsm *f = env->fsm;
    int64_t hour_ago = rd_now_ms() - 3600 * 1000;
    size_t last_hour = 0;
    for (size_t i = f->n_faults; i-- > 0 && f->faults[i]->detected_at >= hour_ago;)
        last_hour++;
    const struct rd_hist *h = &env->analysis->latency_failed;
    json_t *latency = json_pack(
        "{s:o,s:o}", "p50",
        h->count ? json_integer((json_int_t)(rd_hist_quantile(h, 0.5) * 1000)) : json_null(), "p99",
        h->count ? json_integer((json_int_t)(rd_hist_quantile(h, 0.99) * 1000)) : json_null());
    bool partition = env->analysis->partition_suspected;
    /* Tasks moved by recovery runs that found a new agent, over all moves. */
    uint64_t moved = 0, ok = 0;
    for (size_t i = 0; i < f->n_recoveries; i++) {
        moved += f->recoveries[i]->recovered + f->recoveries[i]->failed;
        ok += f->recoveries[i]->recovered;
    }
    json_t *rate = moved ? json_real((double)ok / (double)moved) : json_null();
    rd_http_send_json(
        hr, 200,
        json_pack("{s:I,s:I,s:o,s:o,s:s,s:b,s:s,s:b}", "active_faults", (json_int_t)f->open_faults,
                  "faults_last_hour", (json_int_t)last_hour, "detection_latency_ms", latency,
                  "recovery_success_rate", rate, "mode",
                  rd_sched_degraded(env->sched, NULL) ? "degraded" : "normal",
                  "partition_suspected", partition, "policy_version",
                  rd_policy_version(*env->policy), "leader", rd_replica_is_leader(env->replica)));
}

void rd_api_PLUGINS_LIST(struct rd_http_req *hr)
{
    rd_http_send_json(hr, 200, json_pack("{s:o}", "items", rd_plugin_host_json(hr->env->plugins)));
}

void rd_api_POLICIES_RELOAD(struct rd_http_req *hr)
{
    char err[RD_POLICY_ERRLEN];
    char before[64];
    snprintf(before, sizeof(before), "%s", rd_policy_version(*hr->env->policy));
    if (hr->env->reload_policies(hr->env->reload_data, err, sizeof(err)) != 0) {
        /* The token file is reloaded with the policies (docs/security.md). */
        bool tokens = strncmp(err, "security.tokens_file:", 21) == 0;
        rd_http_send_error(hr, 400, "bad_request",
                           json_pack("{s:s,s:s}", "field",
                                     tokens ? "security.tokens_file" : "policies", "policy_version",
                                     rd_policy_version(*hr->env->policy)),
                           "%s%s",
                           tokens ? "reload failed: "
                                  : "policy reload failed, the previous policies stay in force: ",
                           err);
        return;
    }
    rd_http_send_json(hr, 200,
                      json_pack("{s:s,s:s}", "policy_version", rd_policy_version(*hr->env->policy),
                                "previous_version", before));
}
