/*
 * log: the simplest alert plugin. Writes one line per alert through
 * host->log, at WARN while it fires and at INFO once resolved:
 *
 *   event=alert_firing alert=AgentFault node=a-1 type=crash severity=critical
 *       fingerprint=0d6f... summary="agent a-1 stopped answering"
 *
 * Values that could break the key=value shape (spaces, quotes, '=', control
 * bytes, empty) are quoted and escaped; summary always is. Counts what it
 * wrote in the counter alerts_sent. Written only against recoveryd/plugin.h.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "recoveryd/plugin.h"

#define VALUE_MAX 512 /* longer values are cut (with "...") */

struct logp {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    uint64_t *sent;
    uint64_t dummy;
};

static const struct rd_plugin_key keys[] = {
    {NULL, 0, NULL, 0, 0, NULL},
};

static bool needs_quotes(const char *s)
{
    if (*s == '\0')
        return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            return true;
    return false;
}

/* Writes `s` as a log value into `out` (quoted when `force` or needed). */
static const char *value(char *out, size_t len, const char *s, bool force)
{
    if (!s)
        s = "";
    if (!force && !needs_quotes(s)) {
        snprintf(out, len, "%s", s);
        if (strlen(s) >= len && len > 4)
            memcpy(out + len - 4, "...", 4);
        return out;
    }
    size_t o = 0;
    out[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        size_t n;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            n = 2;
        } else if (*p == '\n') {
            memcpy(esc, "\\n", 2);
            n = 2;
        } else if (*p == '\t') {
            memcpy(esc, "\\t", 2);
            n = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            n = (size_t)snprintf(esc, sizeof esc, "\\x%02x", *p);
        } else {
            esc[0] = (char)*p;
            n = 1;
        }
        if (o + n + 5 > len) { /* room for ...", NUL */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, esc, n);
        o += n;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static void send_alert(void *state, const struct rd_alert *a)
{
    struct logp *lp = state;
    if (!a)
        return;
    char alert[VALUE_MAX], node[VALUE_MAX], type[VALUE_MAX], sev[VALUE_MAX], fp[VALUE_MAX],
        summary[VALUE_MAX];
    lp->host->log(
        lp->inst, a->resolved ? RD_PLOG_INFO : RD_PLOG_WARN,
        a->resolved ? "alert_resolved" : "alert_firing",
        "alert=%s node=%s type=%s severity=%s fingerprint=%s summary=%s",
        value(alert, sizeof alert, a->alertname, false),
        value(node, sizeof node, a->node_id, false), value(type, sizeof type, a->fault_type, false),
        value(sev, sizeof sev, a->severity, false), value(fp, sizeof fp, a->fingerprint, false),
        value(summary, sizeof summary, a->summary, true));
    (*lp->sent)++;
}

static int logp_init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    struct logp *lp = state;
    lp->inst = inst;
    lp->host = host;
    lp->sent = host->counter(inst, "alerts_sent", "Alerts written to the log.");
    if (!lp->sent)
        lp->sent = &lp->dummy;
    return 0;
}

static int logp_start(void *state)
{
    (void)state;
    return 0;
}

static void logp_stop(void *state, void (*done)(rd_plugin_instance_t *inst))
{
    struct logp *lp = state;
    done(lp->inst);
}

static void logp_destroy(void *state)
{
    (void)state;
}

static const struct rd_alert_ops ops = {
    .version = RD_ALERT_OPS_VERSION,
    .size = sizeof(struct rd_alert_ops),
    .send = send_alert,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = "log",
    .version = "1.0.0",
    .kind = RD_PLUGIN_ALERT,
    .description = "Writes each alert as one log line (WARN while firing, INFO when resolved)",
    .keys = keys,
    .state_size = sizeof(struct logp),
    .init = logp_init,
    .start = logp_start,
    .stop = logp_stop,
    .destroy = logp_destroy,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}
