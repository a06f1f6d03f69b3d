/*
 * recoveryctl: the operator's command line for recoveryd, on
 * librecoveryd-client. Commands, options, files and exit codes are in
 * recoveryctl.1 (and `recoveryctl --help`); the exit codes are the EX_*
 * below.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "recoveryd/client.h"

#include "config.h"
#include "out.h"

enum {
    EX_OK = 0,
    EX_ERROR = 1,       /* the engine refused, or another failure */
    EX_USAGE = 2,       /* bad command line or configuration */
    EX_NOTFOUND = 3,    /* no such node, task, fault, backup, ... */
    EX_UNAVAILABLE = 4, /* no endpoint answered, or no leader / no quorum */
    EX_AUTH = 5,        /* 401 or 403 */
    EX_CONFLICT = 6,    /* the object's state does not allow it (409) */
    EX_UNKNOWN = 7,     /* a write whose outcome is unknown: check before retrying */
    EX_CHECK = 8,       /* a check failed: backup damaged or failed, replicas diverged */
};

struct opts {
    const char *endpoints, *token, *cacert, *config, *color;
    bool json, watch, wait, critical, help, all;
    double interval;
    long count, timeout_ms;
    const char *state, *node, *status, *target, *principal, *action, *since, *until, *order,
        *severity, *type, *cursor, *limit, *reason, *payload, *strategy, *role, *address, *api_url,
        *task_id, *deadline, *resolution;
    int priority, slots, max_attempts;
    const char *labels[64];
    int nlabels;
    const char *used[64]; /* command options given, by long name */
    int nused;
};

struct ctx {
    rdc_client *c;
    struct opts o;
    bool compact; /* JSON on one line (--watch) */
};

typedef int (*cmd_fn)(struct ctx *x, char **args, int nargs);

struct cmd {
    const char *group; /* "nodes", "cluster replicas" */
    const char *verb;  /* NULL: the group alone is the command */
    cmd_fn fn;
    int min_args, max_args;
    bool watch; /* --watch allowed */
    const char *usage;
    const char *opts; /* its own options, space-separated ("state limit cursor") */
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- errors ------------------------------------------------------------------------ */

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("recoveryctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(recoveryctl --help lists the commands and options)\n", stderr);
    va_end(ap);
    return EX_USAGE;
}

/* Says why a call failed and gives its exit code. */
static int api_error(struct ctx *x, int rc, const char *what)
{
    const char *code = rdc_errcode(x->c);
    const char *msg = rdc_errmsg(x->c);
    fprintf(stderr, "recoveryctl: %s: %s%s%s%s\n", what, msg[0] ? msg : rdc_strerror(rc),
            code[0] ? " (" : "", code, code[0] ? ")" : "");
    switch (rc) {
    case RDC_ENOTFOUND:
        return EX_NOTFOUND;
    case RDC_EUNREACHABLE:
        fprintf(stderr, "recoveryctl: check --endpoints (or RECOVERYD_ENDPOINTS) and that "
                        "recoveryd runs there\n");
        return EX_UNAVAILABLE;
    case RDC_EUNAVAILABLE:
        return EX_UNAVAILABLE;
    case RDC_EAUTH:
        return EX_AUTH;
    case RDC_ECONFLICT:
    case RDC_EFENCED:
        return EX_CONFLICT;
    case RDC_EUNKNOWN:
        fprintf(stderr, "recoveryctl: the change may or may not have been made: look before "
                        "trying again\n");
        return EX_UNKNOWN;
    case RDC_EINVAL:
        return EX_USAGE;
    default:
        return EX_ERROR;
    }
}

/* ---- small helpers ----------------------------------------------------------------- */

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static long long num(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static const char *reltime(const json_t *o, const char *key, char *buf, size_t len)
{
    return out_reltime(str(o, key), buf, len);
}

/* Query parameters, NULL-terminated pairs (rdc_params). */
struct params {
    const char *kv[40];
    int n;
};

static void param(struct params *p, const char *k, const char *v)
{
    if (v != NULL && p->n < 38) {
        p->kv[p->n++] = k;
        p->kv[p->n++] = v;
    }
    p->kv[p->n] = NULL;
}

/* The list parameters every list takes. */
static void page_params(struct ctx *x, struct params *p)
{
    param(p, "limit", x->o.limit);
    param(p, "cursor", x->o.cursor);
}

static void more_hint(struct ctx *x, const json_t *page)
{
    const char *next = str(page, "next_cursor");
    if (next != NULL && !x->o.json)
        fprintf(stderr, "(more: --cursor %s)\n", next);
}

typedef int (*list_fn)(rdc_client *c, const char *const *params, json_t **out);

/* One page of a list, or with --all every page (1000 at most) in one document. */
static int list_pages(struct ctx *x, list_fn fn, const struct params *p, json_t **out)
{
    int rc = fn(x->c, p->kv, out);
    if (rc != 0 || !x->o.all)
        return rc;
    json_t *items = json_object_get(*out, "items");
    for (int page = 1; page < 1000 && rc == 0; page++) {
        const char *next = str(*out, "next_cursor");
        if (next == NULL)
            break;
        char cursor[256];
        snprintf(cursor, sizeof cursor, "%s", next);
        struct params q = *p;
        param(&q, "cursor", cursor);
        json_t *more = NULL;
        if ((rc = fn(x->c, q.kv, &more)) == 0) {
            json_array_extend(items, json_object_get(more, "items"));
            json_object_set(*out, "next_cursor", json_object_get(more, "next_cursor"));
        }
        json_decref(more);
    }
    if (rc != 0) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

/* Prints an object as aligned "key  value" lines; times get their age. */
static void print_object(const json_t *o)
{
    size_t w = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        if (strlen(k) > w)
            w = strlen(k);
    }
    json_object_foreach((json_t *)o, k, v)
    {
        char buf[2048], rel[64];
        out_value(v, buf, sizeof buf);
        const char *color = json_is_string(v) ? out_state_color(json_string_value(v)) : NULL;
        size_t kl = strlen(k);
        bool time = json_is_string(v) && kl > 3 && strcmp(k + kl - 3, "_at") == 0;
        printf("%s%-*s%s  %s%s%s", out_color(C_BOLD), (int)w, k, out_color(C_RESET),
               out_color(color), buf, color ? out_color(C_RESET) : "");
        if (time)
            printf(" (%s)", out_reltime(json_string_value(v), rel, sizeof rel));
        putchar('\n');
    }
}

/* The answer of a get or a change: the document with --json, else the object. */
static int show(struct ctx *x, json_t *doc)
{
    if (x->o.json)
        out_json(doc, x->compact);
    else
        print_object(doc);
    json_decref(doc);
    return EX_OK;
}

/* One record by id: `get` it, then `then` (show, check_verdict) or the
 * engine's error naming the id. */
static int get_one(struct ctx *x, int (*get)(rdc_client *, const char *, json_t **), const char *id,
                   int (*then)(struct ctx *, json_t *))
{
    json_t *doc = NULL;
    int rc = get(x->c, id, &doc);
    if (rc != 0) {
        json_decref(doc);
        return api_error(x, rc, id);
    }
    return then(x, doc);
}

static void sleep_interruptible(double seconds)
{
    int64_t end = out_now_ms() + (int64_t)(seconds * 1000);
    while (!interrupted && out_now_ms() < end) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0)
        return false;
    *out = v;
    return true;
}

/* ---- status ------------------------------------------------------------------------- */

static const char *const node_states[] = {"alive",     "suspect",  "failed", "isolated",
                                          "probation", "draining", "left"};
#define N_NODE_STATES (sizeof node_states / sizeof node_states[0])

/* Counts agents by state over every page of GET /api/v1/nodes. */
static int count_agents(struct ctx *x, json_t *counts)
{
    char cursor[256] = "";
    for (int page = 0; page < 100; page++) {
        struct params p = {0};
        param(&p, "limit", "1000");
        param(&p, "stale", "true");
        if (cursor[0])
            param(&p, "cursor", cursor);
        json_t *doc = NULL;
        int rc = rdc_nodes_list(x->c, p.kv, &doc);
        if (rc != 0)
            return rc;
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(doc, "items"), i, n)
        {
            const char *s = str(n, "state");
            if (s != NULL)
                json_object_set_new(
                    counts, s, json_integer(json_integer_value(json_object_get(counts, s)) + 1));
        }
        const char *next = str(doc, "next_cursor");
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        json_decref(doc);
        if (cursor[0] == '\0')
            break;
    }
    return 0;
}

/* The cluster at a glance. Every read is a stale one (?stale=true), from the
 * replica that answers: status shows what it can during an election or
 * without a quorum (which it then says) instead of waiting for a leader. */
static int cmd_status(struct ctx *x, char **args, int nargs)
{
    json_t *health = NULL, *faults = NULL, *open = NULL, *recs = NULL, *backups = NULL;
    json_t *agents = json_object();
    for (size_t i = 0; i < N_NODE_STATES; i++)
        json_object_set_new(agents, node_states[i], json_integer(0));
    int rc = rdc_cluster_health(x->c, &health);
    const char *what = "cluster health";
    if (rc == 0 && (what = "agents", rc = count_agents(x, agents)) == 0 &&
        (what = "faults", rc = rdc_request(x->c, "GET", "/api/v1/faults/status?stale=true", NULL, 0,
                                           &faults)) == 0) {
        rdc_params po = {"status", "open", "limit", "5", "stale", "true", NULL};
        rdc_params pr = {"limit", "100", "stale", "true", NULL};
        rdc_params pb = {"limit", "1", "stale", "true", NULL};
        if ((rc = rdc_faults_list(x->c, po, &open)) == 0 &&
            (what = "recoveries", rc = rdc_recoveries_list(x->c, pr, &recs)) == 0)
            what = "backups", rc = rdc_backups_list(x->c, pb, &backups);
    }
    if (rc != 0) {
        int ex = api_error(x, rc, what);
        json_decref(health), json_decref(faults), json_decref(open), json_decref(recs);
        json_decref(backups), json_decref(agents);
        return ex;
    }
    /* Running recoveries: those initiated or running (newest first, the last 100). */
    json_t *running = json_array();
    size_t ri;
    json_t *rr;
    json_array_foreach(json_object_get(recs, "items"), ri, rr)
    {
        const char *st = str(rr, "status");
        if (st != NULL && (strcmp(st, "initiated") == 0 || strcmp(st, "running") == 0))
            json_array_append(running, rr);
    }
    json_object_set_new(recs, "items", running);
    json_t *quorum = json_object_get(health, "quorum");
    json_t *last = json_array_get(json_object_get(backups, "items"), 0);
    json_t *doc =
        json_pack("{s:s?,s:O?,s:O,s:O,s:O,s:O,s:O}", "overall_health",
                  str(health, "overall_health"), "quorum", quorum, "agents", agents, "faults",
                  faults, "open_faults", json_object_get(open, "items"), "running_recoveries",
                  json_object_get(recs, "items"), "last_backup", last ? last : json_null());
    if (x->o.json) {
        out_json(doc, x->compact);
    } else {
        char b1[64], b2[64];
        const char *overall = str(health, "overall_health");
        json_t *leader = json_object_get(quorum, "leader");
        bool has_quorum = json_is_true(json_object_get(quorum, "has_quorum"));
        printf("%sCluster%s      %s%s%s  leader %s, term %lld, quorum %s\n", out_color(C_BOLD),
               out_color(C_RESET), out_color(out_state_color(overall)), overall ? overall : "?",
               out_color(C_RESET),
               json_is_integer(leader) ? out_value(leader, b1, sizeof b1) : "none",
               num(quorum, "term"), has_quorum ? "yes" : "NO");
        printf("%sReplicas%s\n", out_color(C_BOLD), out_color(C_RESET));
        struct table t;
        table_init(&t, 5, (const char *[]){"  ID", "ROLE", "VOTER", "REACHABLE", "APPLIED"});
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(quorum, "replicas"), i, r)
        {
            table_addf(&t, NULL, "  %lld", num(r, "id"));
            table_add(&t, str(r, "role"), out_state_color(str(r, "role")));
            table_add(&t, str(r, "voter_role"), NULL);
            bool reach = json_is_true(json_object_get(r, "reachable"));
            table_add(&t, reach ? "yes" : "no", reach ? NULL : C_RED);
            table_add(&t, out_value(json_object_get(r, "applied_index"), b1, sizeof b1), NULL);
        }
        table_print(&t, stdout);
        table_free(&t);
        long long total = 0;
        char line[512] = "";
        size_t o = 0;
        for (size_t k = 0; k < N_NODE_STATES; k++) {
            long long n = num(agents, node_states[k]);
            if (strcmp(node_states[k], "left") != 0)
                total += n;
            if (n > 0)
                o += (size_t)snprintf(line + o, sizeof line - o, ", %s%lld %s%s",
                                      out_color(out_state_color(node_states[k])), n, node_states[k],
                                      out_color(C_RESET));
        }
        printf("%sAgents%s       %lld%s%s\n", out_color(C_BOLD), out_color(C_RESET), total,
               total > 0 ? ":" : "", line[0] ? line + 1 : "");
        printf("%sFaults%s       %lld open, %lld in the last hour, mode %s\n", out_color(C_BOLD),
               out_color(C_RESET), num(faults, "active_faults"), num(faults, "faults_last_hour"),
               str(faults, "mode") ? str(faults, "mode") : "?");
        json_t *f;
        json_array_foreach(json_object_get(open, "items"), i, f)
        {
            printf("  %s %s on %s, %s\n", str(f, "severity_level"), str(f, "fault_type"),
                   str(f, "node_id") ? str(f, "node_id") : "the cluster",
                   reltime(f, "detected_at", b1, sizeof b1));
        }
        size_t nrec = json_array_size(json_object_get(recs, "items"));
        printf("%sRecoveries%s   %zu running\n", out_color(C_BOLD), out_color(C_RESET), nrec);
        json_array_foreach(json_object_get(recs, "items"), i, f)
        {
            printf("  %s on %s: %lld/%lld tasks, started %s\n", str(f, "recovery_id"),
                   str(f, "node_id"), num(f, "tasks_recovered"), num(f, "tasks_total"),
                   reltime(f, "started_at", b1, sizeof b1));
        }
        if (last != NULL) {
            json_t *size = json_object_get(last, "size");
            printf("%sLast backup%s  %s%s%s %s on %s%s%s\n", out_color(C_BOLD), out_color(C_RESET),
                   out_color(out_state_color(str(last, "status"))), str(last, "status"),
                   out_color(C_RESET), reltime(last, "started_at", b1, sizeof b1),
                   str(last, "target"), json_is_integer(size) ? ", " : "",
                   json_is_integer(size) ? out_size((double)json_integer_value(size), b2, sizeof b2)
                                         : "");
        } else {
            printf("%sLast backup%s  none\n", out_color(C_BOLD), out_color(C_RESET));
        }
    }
    json_decref(doc);
    json_decref(health), json_decref(faults), json_decref(open), json_decref(recs);
    json_decref(backups), json_decref(agents);
    return EX_OK;
}

/* ---- nodes ---------------------------------------------------------------------------- */

/* A list: every page asked for (--all), then the engine's JSON (--json) or a
 * table of `ncols` columns, one row per item by `row`, and a hint when more
 * pages follow. */
static int show_list(struct ctx *x, list_fn fn, struct params *p, const char *what, int ncols,
                     const char *const *cols, void (*row)(struct table *t, const json_t *item))
{
    page_params(x, p);
    json_t *doc = NULL;
    int rc = list_pages(x, fn, p, &doc);
    if (rc != 0)
        return api_error(x, rc, what);
    if (x->o.json) {
        out_json(doc, x->compact);
    } else {
        struct table t;
        table_init(&t, ncols, cols);
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(doc, "items"), i, n) row(&t, n);
        table_print(&t, stdout);
        table_free(&t);
        more_hint(x, doc);
    }
    json_decref(doc);
    return EX_OK;
}

static void nodes_list_row(struct table *t, const json_t *n)
{
    char b[64];
    table_add(t, str(n, "node_id"), NULL);
    table_add(t, str(n, "state"), out_state_color(str(n, "state")));
    table_addf(t, NULL, "%lld", num(n, "epoch"));
    table_addf(t, NULL, "%lld/%lld", num(json_object_get(n, "load"), "slots_used"),
               num(json_object_get(n, "capacity"), "slots"));
    table_addf(t, NULL, "%lld", num(n, "tasks"));
    table_add(t, reltime(n, "last_heartbeat_at", b, sizeof b), NULL);
    json_t *phi = json_object_get(n, "phi");
    if (json_is_number(phi))
        table_addf(t, NULL, "%.1f", json_number_value(phi));
    else
        table_add(t, NULL, NULL);
    table_add(t, str(n, "reason"), NULL);
}

static int cmd_nodes_list(struct ctx *x, char **args, int nargs)
{
    struct params p = {0};
    param(&p, "state", x->o.state);
    static const char *const cols[] = {"NODE",  "STATE",     "EPOCH", "SLOTS",
                                       "TASKS", "HEARTBEAT", "PHI",   "REASON"};
    return show_list(x, rdc_nodes_list, &p, "nodes list", 8, cols, nodes_list_row);
}

static int cmd_node_get(struct ctx *x, char **args, int nargs)
{
    return get_one(x, rdc_node_get, args[0], show);
}

/* Polls the node until its tasks moved off (drain --wait). */
static int wait_drained(struct ctx *x, const char *id, long long initial)
{
    struct progress pr;
    progress_start(&pr, "draining", "tasks");
    long long left = initial;
    while (!interrupted && left > 0) {
        double el = (double)(out_now_ms() - pr.start_ms) / 1000.0;
        double moved = (double)(initial - left);
        double rate = el > 0 ? moved / el : -1;
        progress_update(&pr, moved / (double)initial, rate, rate > 0 ? (double)left / rate : -1);
        sleep_interruptible(0.5);
        json_t *n = NULL;
        int rc = rdc_node_get(x->c, id, &n);
        if (rc != 0) {
            json_decref(n);
            progress_end(&pr, moved / (double)initial, "interrupted");
            return api_error(x, rc, id);
        }
        left = num(n, "tasks");
        const char *state = str(n, "state");
        bool still = state != NULL && strcmp(state, "draining") == 0;
        json_decref(n);
        if (!still && left > 0) {
            progress_end(&pr, (double)(initial - left) / (double)initial, "no longer draining");
            return EX_CONFLICT;
        }
    }
    if (interrupted) {
        progress_end(&pr, (double)(initial - left) / (double)initial, "interrupted");
        return EX_ERROR;
    }
    progress_end(&pr, 1, "done: no task left");
    return EX_OK;
}

static int node_change(struct ctx *x, char **args, const char *verb)
{
    json_t *doc = NULL;
    int rc;
    if (strcmp(verb, "drain") == 0)
        rc = rdc_node_drain(x->c, args[0], x->o.reason, &doc);
    else if (strcmp(verb, "isolate") == 0)
        rc = rdc_node_isolate(x->c, args[0], x->o.reason, &doc);
    else if (strcmp(verb, "readmit") == 0)
        rc = rdc_node_readmit(x->c, args[0], x->o.reason, &doc);
    else
        rc = rdc_node_remove(x->c, args[0], &doc);
    if (rc != 0) {
        json_decref(doc);
        char what[300];
        snprintf(what, sizeof what, "%s %s", verb, args[0]);
        return api_error(x, rc, what);
    }
    long long tasks = num(doc, "tasks");
    if (x->o.json) {
        out_json(doc, x->compact);
    } else {
        printf("%s: %s%s%s (%lld tasks)\n", args[0], out_color(out_state_color(str(doc, "state"))),
               str(doc, "state"), out_color(C_RESET), tasks);
    }
    json_decref(doc);
    if (x->o.wait && strcmp(verb, "drain") == 0 && tasks > 0)
        return wait_drained(x, args[0], tasks);
    return EX_OK;
}

static int cmd_node_drain(struct ctx *x, char **args, int nargs)
{
    return node_change(x, args, "drain");
}

static int cmd_node_isolate(struct ctx *x, char **args, int nargs)
{
    return node_change(x, args, "isolate");
}

static int cmd_node_readmit(struct ctx *x, char **args, int nargs)
{
    return node_change(x, args, "readmit");
}

static int cmd_node_remove(struct ctx *x, char **args, int nargs)
{
    return node_change(x, args, "remove");
}

/* ---- tasks ---------------------------------------------------------------------------- */

static void tasks_list_row(struct table *t, const json_t *n)
{
    char b[64];
    table_add(t, str(n, "task_id"), NULL);
    table_add(t, str(n, "state"), out_state_color(str(n, "state")));
    table_addf(t, NULL, "%lld%s", num(n, "priority"),
               json_is_true(json_object_get(n, "critical")) ? "!" : "");
    table_add(t, str(n, "node_id"), NULL);
    table_addf(t, NULL, "%lld", num(n, "attempt"));
    json_t *cp = json_object_get(n, "checkpoint");
    if (json_is_object(cp))
        table_addf(t, NULL, "v%lld", num(cp, "version"));
    else
        table_add(t, NULL, NULL);
    table_add(t, reltime(n, "updated_at", b, sizeof b), NULL);
}

static int cmd_tasks_list(struct ctx *x, char **args, int nargs)
{
    struct params p = {0};
    char prio[8];
    if (x->o.nlabels > 1)
        return usage_error("tasks list: one --label at a time");
    snprintf(prio, sizeof prio, "%d", x->o.priority);
    param(&p, "state", x->o.state);
    param(&p, "node_id", x->o.node);
    param(&p, "priority", x->o.priority >= 0 ? prio : NULL);
    param(&p, "label", x->o.nlabels > 0 ? x->o.labels[0] : NULL);
    static const char *const cols[] = {"TASK",    "STATE",      "PRIO",   "NODE",
                                       "ATTEMPT", "CHECKPOINT", "UPDATED"};
    return show_list(x, rdc_tasks_list, &p, "tasks list", 7, cols, tasks_list_row);
}

static int cmd_task_get(struct ctx *x, char **args, int nargs)
{
    return get_one(x, rdc_task_get, args[0], show);
}

static int cmd_task_submit(struct ctx *x, char **args, int nargs)
{
    json_t *spec = json_object();
    if (x->o.payload != NULL) {
        json_error_t je;
        json_t *payload = json_loads(x->o.payload, JSON_DECODE_ANY, &je);
        if (payload == NULL) {
            json_decref(spec);
            return usage_error("--payload: not JSON: %s", je.text);
        }
        json_object_set_new(spec, "payload", payload);
    }
    if (x->o.task_id != NULL)
        json_object_set_new(spec, "task_id", json_string(x->o.task_id));
    if (x->o.priority >= 0)
        json_object_set_new(spec, "priority", json_integer(x->o.priority));
    if (x->o.critical)
        json_object_set_new(spec, "critical", json_true());
    if (x->o.max_attempts > 0)
        json_object_set_new(spec, "max_attempts", json_integer(x->o.max_attempts));
    if (x->o.deadline != NULL)
        json_object_set_new(spec, "deadline", json_string(x->o.deadline));
    if (x->o.slots > 0 || x->o.nlabels > 0) {
        json_t *req = json_object();
        if (x->o.slots > 0)
            json_object_set_new(req, "slots", json_integer(x->o.slots));
        if (x->o.nlabels > 0) {
            json_t *labels = json_object();
            for (int i = 0; i < x->o.nlabels; i++) {
                const char *eq = strchr(x->o.labels[i], '=');
                char key[256];
                snprintf(key, sizeof key, "%.*s", (int)(eq - x->o.labels[i]), x->o.labels[i]);
                json_object_set_new(labels, key, json_string(eq + 1));
            }
            json_object_set_new(req, "labels", labels);
        }
        json_object_set_new(spec, "requirements", req);
    }
    json_t *doc = NULL;
    int rc = rdc_task_submit(x->c, spec, &doc);
    json_decref(spec);
    if (rc != 0) {
        json_decref(doc);
        return api_error(x, rc, "tasks submit");
    }
    if (x->o.json)
        out_json(doc, x->compact);
    else
        printf("%s %s%s%s (%s)\n", str(doc, "task_id"),
               out_color(out_state_color(str(doc, "state"))), str(doc, "state"), out_color(C_RESET),
               rdc_status(x->c) == 201 ? "submitted" : "exists already");
    json_decref(doc);
    return EX_OK;
}

/* tasks cancel and tasks retry: the task as the engine answers it. */
static int task_action(struct ctx *x, char **args, bool cancel)
{
    json_t *doc = NULL;
    int rc = cancel ? rdc_task_cancel_reason(x->c, args[0], x->o.reason, &doc)
                    : rdc_task_retry(x->c, args[0], &doc);
    if (rc != 0) {
        json_decref(doc);
        char what[300];
        snprintf(what, sizeof what, "%s %s", cancel ? "cancel" : "retry", args[0]);
        return api_error(x, rc, what);
    }
    if (x->o.json)
        out_json(doc, x->compact);
    else
        printf("%s %s%s%s (attempt %lld)\n", args[0], out_color(out_state_color(str(doc, "state"))),
               str(doc, "state"), out_color(C_RESET), num(doc, "attempt"));
    json_decref(doc);
    return EX_OK;
}

static int cmd_task_cancel(struct ctx *x, char **args, int nargs)
{
    return task_action(x, args, true);
}

static int cmd_task_retry(struct ctx *x, char **args, int nargs)
{
    return task_action(x, args, false);
}

/* ---- faults, recoveries ------------------------------------------------------------ */

static void faults_list_row(struct table *t, const json_t *n)
{
    char b1[64], b2[64];
    const char *sev = str(n, "severity_level");
    table_add(t, str(n, "id"), NULL);
    table_add(t, str(n, "node_id"), NULL);
    table_add(t, str(n, "fault_type"), NULL);
    table_add(t, sev,
              sev && (strcmp(sev, "critical") == 0 || strcmp(sev, "major") == 0) ? C_RED
                                                                                 : C_YELLOW);
    table_add(t, str(n, "status"), out_state_color(str(n, "status")));
    table_add(t, reltime(n, "detected_at", b1, sizeof b1), NULL);
    table_add(t, str(n, "resolved_at") ? reltime(n, "resolved_at", b2, sizeof b2) : NULL, NULL);
}

static int cmd_faults_list(struct ctx *x, char **args, int nargs)
{
    struct params p = {0};
    param(&p, "node_id", x->o.node);
    param(&p, "status", x->o.status);
    param(&p, "severity_level", x->o.severity);
    param(&p, "fault_type", x->o.type);
    param(&p, "since", x->o.since);
    static const char *const cols[] = {"FAULT",  "NODE",     "TYPE",    "SEVERITY",
                                       "STATUS", "DETECTED", "RESOLVED"};
    return show_list(x, rdc_faults_list, &p, "faults list", 7, cols, faults_list_row);
}

static int cmd_fault_get(struct ctx *x, char **args, int nargs)
{
    return get_one(x, rdc_fault_get, args[0], show);
}

/* ---- conflicts (availability mode) ------------------------------------------------ */

static void conflicts_list_row(struct table *t, const json_t *n)
{
    char b[64];
    json_t *v = json_object_get(n, "version");
    table_add(t, str(n, "conflict_id"), NULL);
    table_add(t, str(n, "task_id"), NULL);
    table_add(t, str(n, "kind"), NULL);
    table_addf(t, NULL, "%lld/%lld", num(n, "attempt"), num(n, "task_attempt"));
    if (json_is_integer(v))
        table_addf(t, NULL, "%lld", (long long)json_integer_value(v));
    else
        table_add(t, NULL, NULL);
    table_add(t, str(n, "node_id"), NULL);
    table_add(t, str(n, "resolution"), NULL);
    table_add(t, json_is_true(json_object_get(n, "adopted")) ? "yes" : "no", NULL);
    table_add(t, str(n, "resolved_by"), NULL);
    table_add(t, reltime(n, "at", b, sizeof b), NULL);
}

static int cmd_conflicts_list(struct ctx *x, char **args, int nargs)
{
    struct params p = {0};
    param(&p, "task_id", x->o.task_id);
    param(&p, "resolution", x->o.resolution);
    param(&p, "since", x->o.since);
    static const char *const cols[] = {"CONFLICT", "TASK",     "KIND",    "ATTEMPT/NOW", "VERSION",
                                       "NODE",     "RESOLVED", "ADOPTED", "BY",          "AT"};
    return show_list(x, rdc_conflicts_list, &p, "conflicts list", 10, cols, conflicts_list_row);
}

static int cmd_conflict_get(struct ctx *x, char **args, int nargs)
{
    return get_one(x, rdc_conflict_get, args[0], show);
}

static void recoveries_list_row(struct table *t, const json_t *n)
{
    char b1[64], b2[64];
    table_add(t, str(n, "recovery_id"), NULL);
    table_add(t, str(n, "node_id"), NULL);
    table_add(t, str(n, "strategy"), NULL);
    table_add(t, str(n, "status"), out_state_color(str(n, "status")));
    table_addf(t, NULL, "%lld/%lld", num(n, "tasks_recovered"), num(n, "tasks_total"));
    table_add(t, reltime(n, "started_at", b1, sizeof b1), NULL);
    int64_t s = out_parse_time(str(n, "started_at"));
    int64_t e = out_parse_time(str(n, "completed_at"));
    table_add(t, s >= 0 && e >= 0 ? out_duration((double)(e - s), b2, sizeof b2) : NULL, NULL);
}

static int cmd_recoveries_list(struct ctx *x, char **args, int nargs)
{
    struct params p = {0};
    param(&p, "node_id", x->o.node);
    param(&p, "status", x->o.status);
    static const char *const cols[] = {"RECOVERY", "NODE",    "STRATEGY", "STATUS",
                                       "TASKS",    "STARTED", "TOOK"};
    return show_list(x, rdc_recoveries_list, &p, "recoveries list", 7, cols, recoveries_list_row);
}

static int cmd_recovery_get(struct ctx *x, char **args, int nargs)
{
    return get_one(x, rdc_recovery_get, args[0], show);
}

static bool recovery_done(const char *s)
{
    return s != NULL &&
           (strcmp(s, "succeeded") == 0 || strcmp(s, "partial") == 0 || strcmp(s, "failed") == 0);
}

static int cmd_recovery_trigger(struct ctx *x, char **args, int nargs)
{
    json_t *doc = NULL;
    int rc = rdc_recovery_trigger(x->c, args[0], x->o.strategy, &doc);
    if (rc != 0) {
        json_decref(doc);
        return api_error(x, rc, "recoveries trigger");
    }
    char id[64];
    snprintf(id, sizeof id, "%s", str(doc, "recovery_id") ? str(doc, "recovery_id") : "");
    long long total = num(doc, "tasks_total");
    if (!x->o.wait) {
        if (x->o.json)
            out_json(doc, x->compact);
        else
            printf("recovery %s of %s: %lld tasks\n", id, args[0], total);
        json_decref(doc);
        return EX_OK;
    }
    json_decref(doc);
    struct progress pr;
    progress_start(&pr, "recovering", "tasks");
    json_t *run = NULL;
    for (;;) {
        json_decref(run);
        run = NULL;
        if ((rc = rdc_recovery_get(x->c, id, &run)) != 0) {
            progress_end(&pr, 0, "failed");
            json_decref(run);
            return api_error(x, rc, id);
        }
        long long done = num(run, "tasks_recovered") + num(run, "tasks_failed");
        long long all = num(run, "tasks_total");
        double frac = all > 0 ? (double)done / (double)all : 0;
        if (recovery_done(str(run, "status")) || interrupted)
            break;
        double el = (double)(out_now_ms() - pr.start_ms) / 1000.0;
        double rate = el > 0 ? (double)done / el : -1;
        progress_update(&pr, frac, rate, rate > 0 ? (double)(all - done) / rate : -1);
        sleep_interruptible(0.3);
    }
    const char *status = str(run, "status");
    progress_end(&pr, 1, interrupted ? "interrupted" : status);
    int ex = interrupted ? EX_ERROR : strcmp(status, "succeeded") == 0 ? EX_OK : EX_CHECK;
    show(x, run);
    return ex;
}

/* ---- backups --------------------------------------------------------------------------- */

static void backup_row(struct table *t, const json_t *n)
{
    char b1[64], b2[64];
    table_add(t, str(n, "backup_id"), NULL);
    table_add(t, str(n, "target"), NULL);
    table_add(t, str(n, "status"), out_state_color(str(n, "status")));
    json_t *size = json_object_get(n, "size");
    table_add(
        t, json_is_integer(size) ? out_size((double)json_integer_value(size), b1, sizeof b1) : NULL,
        NULL);
    json_t *index = json_object_get(n, "index");
    table_add(t, json_is_integer(index) ? out_value(index, b2, sizeof b2) : NULL, NULL);
    table_add(t, reltime(n, "started_at", b1, sizeof b1), NULL);
    json_t *v = json_object_get(n, "verified");
    table_add(t,
              json_is_true(v)    ? "ok"
              : json_is_false(v) ? "DAMAGED"
                                 : NULL,
              json_is_false(v) ? C_RED : C_GREEN);
}

static const char *const backup_heads[] = {"BACKUP", "TARGET",  "STATUS",  "SIZE",
                                           "INDEX",  "STARTED", "VERIFIED"};

static int cmd_backups_list(struct ctx *x, char **args, int nargs)
{
    struct params p = {0};
    param(&p, "status", x->o.status);
    param(&p, "target", x->o.target);
    return show_list(x, rdc_backups_list, &p, "backups list", 7, backup_heads, backup_row);
}

static int cmd_backup_get(struct ctx *x, char **args, int nargs)
{
    return get_one(x, rdc_backup_get, args[0], show);
}

/* Backup create --wait: polls each backup until none runs. */
static int wait_backups(struct ctx *x, json_t *ids, double estimate)
{
    struct progress pr;
    progress_start(&pr, "backup", NULL);
    if (estimate < 1)
        estimate = 1;
    json_t *records = json_array();
    int rc = 0;
    while (!interrupted) {
        json_array_clear(records);
        bool running = false;
        size_t i;
        json_t *id;
        json_array_foreach(ids, i, id)
        {
            json_t *b = NULL;
            rc = rdc_backup_get(x->c, json_string_value(id), &b);
            if (rc == RDC_ENOTFOUND) { /* queued: its record appears once it begins */
                json_decref(b);
                running = true;
                rc = 0;
                continue;
            }
            if (rc != 0) {
                json_decref(b);
                break;
            }
            if (strcmp(str(b, "status"), "running") == 0)
                running = true;
            json_array_append_new(records, b);
        }
        if (rc != 0 || !running)
            break;
        double el = (double)(out_now_ms() - pr.start_ms) / 1000.0;
        double frac = el / estimate;
        progress_update(&pr, frac > 0.99 ? 0.99 : frac, -1, estimate > el ? estimate - el : -1);
        sleep_interruptible(0.25);
    }
    if (rc != 0) {
        progress_end(&pr, 0, "failed");
        json_decref(records);
        return api_error(x, rc, "backup");
    }
    if (interrupted) {
        progress_end(&pr, 0, "interrupted (the backup goes on)");
        json_decref(records);
        return EX_ERROR;
    }
    double el = (double)(out_now_ms() - pr.start_ms) / 1000.0;
    long long bytes = 0;
    bool failed = false;
    size_t i;
    json_t *b;
    json_array_foreach(records, i, b)
    {
        bytes += num(b, "size");
        failed |= strcmp(str(b, "status"), "completed") != 0;
    }
    char what[160], s1[32], s2[32];
    snprintf(what, sizeof what, "%s: %s, %s/s", failed ? "FAILED" : "done",
             out_size((double)bytes, s1, sizeof s1),
             out_size(el > 0 ? (double)bytes / el : (double)bytes, s2, sizeof s2));
    progress_end(&pr, 1, what);
    if (x->o.json) {
        out_json(records, x->compact);
    } else {
        struct table t;
        table_init(&t, 7, backup_heads);
        json_array_foreach(records, i, b) backup_row(&t, b);
        table_print(&t, stdout);
        table_free(&t);
        json_array_foreach(records, i, b)
        {
            if (str(b, "error") != NULL)
                fprintf(stderr, "recoveryctl: backup %s: %s\n", str(b, "backup_id"),
                        str(b, "error"));
        }
    }
    json_decref(records);
    return failed ? EX_CHECK : EX_OK;
}

static int cmd_backup_create(struct ctx *x, char **args, int nargs)
{
    json_t *doc = NULL;
    int rc = rdc_backup_trigger(x->c, x->o.target, &doc);
    if (rc != 0) {
        json_decref(doc);
        return api_error(x, rc, "backups create");
    }
    if (x->o.wait) {
        int ex = wait_backups(x, json_object_get(doc, "backup_ids"),
                              json_number_value(json_object_get(doc, "estimated_time")));
        json_decref(doc);
        return ex;
    }
    if (x->o.json) {
        out_json(doc, x->compact);
    } else {
        size_t i;
        json_t *id;
        json_array_foreach(json_object_get(doc, "backup_ids"), i, id)
        {
            printf("backup %s to %s %s\n", json_string_value(id),
                   json_string_value(json_array_get(json_object_get(doc, "targets"), i)),
                   json_is_true(json_object_get(doc, "queued")) ? "queued" : "started");
        }
    }
    json_decref(doc);
    return EX_OK;
}

struct verify_progress {
    struct progress pr;
    double estimate; /* seconds */
};

static void on_verify_progress(void *arg, long elapsed_ms)
{
    struct verify_progress *v = arg;
    double el = (double)elapsed_ms / 1000.0;
    double frac = el / v->estimate;
    progress_update(&v->pr, frac > 0.99 ? 0.99 : frac, -1,
                    v->estimate > el ? v->estimate - el : -1);
}

static int cmd_backup_verify(struct ctx *x, char **args, int nargs)
{
    /* The estimate: as long as taking the backup took (at least 1 s). */
    json_t *rec = NULL;
    int rc = rdc_backup_get(x->c, args[0], &rec);
    if (rc != 0) {
        json_decref(rec);
        return api_error(x, rc, args[0]);
    }
    int64_t s = out_parse_time(str(rec, "started_at")),
            e = out_parse_time(str(rec, "completed_at"));
    long long size = num(rec, "size");
    json_decref(rec);
    struct verify_progress v = {.estimate = s >= 0 && e > s ? (double)(e - s) : 1};
    progress_start(&v.pr, "verify", NULL);
    rdc_set_progress(x->c, on_verify_progress, &v);
    json_t *doc = NULL;
    rc = rdc_backup_verify(x->c, args[0], &doc);
    rdc_set_progress(x->c, NULL, NULL);
    if (rc != 0) {
        progress_end(&v.pr, 0, "failed");
        json_decref(doc);
        return api_error(x, rc, "verify");
    }
    bool ok = json_is_true(json_object_get(doc, "verified"));
    double el = (double)(out_now_ms() - v.pr.start_ms) / 1000.0;
    char what[128], s1[32], s2[32];
    snprintf(what, sizeof what, "%s: %s read, %s/s", ok ? "verified" : "DAMAGED",
             out_size((double)size, s1, sizeof s1),
             out_size(el > 0 ? (double)size / el : (double)size, s2, sizeof s2));
    progress_end(&v.pr, 1, what);
    if (!ok)
        fprintf(stderr, "recoveryctl: backup %s is damaged: %s\n", args[0],
                str(doc, "error") ? str(doc, "error") : "(no detail)");
    show(x, doc);
    return ok ? EX_OK : EX_CHECK;
}

/* recoveryd next to this program (build/bin, or ../sbin once installed), else from PATH. */
static void find_daemon(char *out, size_t len)
{
    const char *env = getenv("RECOVERYD_BIN");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            *slash = '\0';
            const char *tries[] = {"%s/recoveryd", "%s/../sbin/recoveryd"};
            for (size_t i = 0; i < 2; i++) {
                snprintf(out, len, tries[i], self);
                if (access(out, X_OK) == 0)
                    return;
            }
        }
    }
    snprintf(out, len, "recoveryd");
}

/* `recoveryctl restore ARGS`: `recoveryd restore ARGS`, its exit code passed on. With
 * --json (before `restore`), its output and exit code as one document. */
static int cmd_restore(struct ctx *x, char **args, int nargs)
{
    char daemon[PATH_MAX];
    find_daemon(daemon, sizeof daemon);
    char **argv = calloc((size_t)nargs + 3, sizeof *argv);
    if (argv == NULL)
        return EX_ERROR;
    argv[0] = daemon;
    argv[1] = (char *)"restore";
    for (int i = 0; i < nargs; i++)
        argv[i + 2] = args[i];
    int fds[2] = {-1, -1};
    if (x->o.json && pipe(fds) != 0) {
        free(argv);
        return EX_ERROR;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (fds[1] >= 0) {
            dup2(fds[1], STDOUT_FILENO);
            dup2(fds[1], STDERR_FILENO);
            close(fds[0]);
            close(fds[1]);
        }
        execvp(daemon, argv);
        fprintf(stderr, "recoveryctl: cannot run %s: %s (set RECOVERYD_BIN)\n", daemon,
                strerror(errno));
        _exit(127);
    }
    free(argv);
    if (pid < 0)
        return EX_ERROR;
    char *output = NULL;
    size_t olen = 0;
    if (fds[0] >= 0) {
        close(fds[1]);
        FILE *mem = open_memstream(&output, &olen);
        char buf[4096];
        ssize_t n;
        while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
            if (n > 0)
                fwrite(buf, 1, (size_t)n, mem);
        fclose(mem);
        close(fds[0]);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (x->o.json) {
        json_t *doc = json_pack("{s:s,s:i,s:s}", "command", daemon, "exit_code", code, "output",
                                output ? output : "");
        out_json(doc, x->compact);
        json_decref(doc);
    }
    free(output);
    return code == 127 ? EX_ERROR : code;
}

/* ---- policies, replicas, audit, consistency ---------------------------------------- */

static int cmd_policies_reload(struct ctx *x, char **args, int nargs)
{
    json_t *doc = NULL;
    int rc = rdc_policies_reload(x->c, &doc);
    if (rc != 0) {
        json_decref(doc);
        return api_error(x, rc, "policies reload");
    }
    if (x->o.json)
        out_json(doc, x->compact);
    else
        printf("policies reloaded on %s: %s (was %s)\n", rdc_endpoint(x->c),
               str(doc, "policy_version"), str(doc, "previous_version"));
    json_decref(doc);
    return EX_OK;
}

static int print_replicas(struct ctx *x, json_t *doc)
{
    if (x->o.json) {
        out_json(doc, x->compact);
    } else {
        struct table t;
        table_init(
            &t, 7,
            (const char *[]){"ID", "ADDRESS", "ROLE", "VOTER", "REACHABLE", "APPLIED", "API"});
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(doc, "replicas"), i, r)
        {
            char b[64];
            table_addf(&t, NULL, "%lld%s", num(r, "id"),
                       json_is_true(json_object_get(r, "self")) ? "*" : "");
            table_add(&t, str(r, "address"), NULL);
            table_add(&t, str(r, "role"), out_state_color(str(r, "role")));
            table_add(&t, str(r, "voter_role"), NULL);
            bool reach = json_is_true(json_object_get(r, "reachable"));
            table_add(&t, reach ? "yes" : "no", reach ? NULL : C_RED);
            table_add(&t, out_value(json_object_get(r, "applied_index"), b, sizeof b), NULL);
            table_add(&t, str(r, "api_url"), NULL);
        }
        table_print(&t, stdout);
        table_free(&t);
        char b[32];
        printf("leader %s, term %lld (* answered)\n",
               out_value(json_object_get(doc, "leader"), b, sizeof b), num(doc, "term"));
    }
    json_decref(doc);
    return EX_OK;
}

static int cmd_replicas_list(struct ctx *x, char **args, int nargs)
{
    json_t *doc = NULL;
    int rc = rdc_replicas_list(x->c, &doc);
    if (rc != 0)
        return api_error(x, rc, "cluster replicas list");
    return print_replicas(x, doc);
}

static int replica_id(const char *s, uint64_t *id)
{
    if (!parse_u64(s, id))
        return usage_error("'%s' is not a replica id (a whole number above 0)", s);
    return 0;
}

static int cmd_replica_add(struct ctx *x, char **args, int nargs)
{
    uint64_t id;
    if (replica_id(args[0], &id) != 0)
        return EX_USAGE;
    if (x->o.address == NULL || x->o.api_url == NULL)
        return usage_error("cluster replicas add: --address HOST:PORT and --api-url URL are "
                           "required");
    json_t *doc = NULL;
    int rc = rdc_replica_add(x->c, id, x->o.address, x->o.api_url, x->o.role, &doc);
    if (rc != 0) {
        json_decref(doc);
        return api_error(x, rc, "cluster replicas add");
    }
    return print_replicas(x, doc);
}

static int cmd_replica_promote(struct ctx *x, char **args, int nargs)
{
    uint64_t id;
    if (replica_id(args[0], &id) != 0)
        return EX_USAGE;
    json_t *doc = NULL;
    int rc = rdc_replica_set_role(x->c, id, x->o.role ? x->o.role : "voter", &doc);
    if (rc != 0) {
        json_decref(doc);
        return api_error(x, rc, "cluster replicas promote");
    }
    return print_replicas(x, doc);
}

static int cmd_replica_remove(struct ctx *x, char **args, int nargs)
{
    uint64_t id;
    if (replica_id(args[0], &id) != 0)
        return EX_USAGE;
    json_t *doc = NULL;
    int rc = rdc_replica_remove(x->c, id, &doc);
    if (rc != 0) {
        json_decref(doc);
        return api_error(x, rc, "cluster replicas remove");
    }
    return print_replicas(x, doc);
}

static void audit_row(struct table *t, const json_t *n)
{
    char b[64];
    json_t *oc = json_object_get(n, "outcome");
    long long st = num(oc, "status");
    table_addf(t, NULL, "%lld", num(n, "seq"));
    table_add(t, reltime(n, "time", b, sizeof b), NULL);
    table_add(t, str(n, "principal"), NULL);
    table_add(t, str(n, "role"), NULL);
    table_add(t, str(n, "action"), NULL);
    table_add(t, str(n, "target"), NULL);
    table_addf(t, st >= 400 ? C_RED : NULL, "%lld%s%s", st, str(oc, "error") ? " " : "",
               str(oc, "error") ? str(oc, "error") : "");
}

static int cmd_audit(struct ctx *x, char **args, int nargs)
{
    struct params p = {0};
    param(&p, "principal", x->o.principal);
    param(&p, "action", x->o.action);
    param(&p, "target", x->o.target);
    param(&p, "since", x->o.since);
    param(&p, "until", x->o.until);
    param(&p, "order", x->o.order);
    static const char *const cols[] = {"SEQ",    "TIME",   "PRINCIPAL", "ROLE",
                                       "ACTION", "TARGET", "OUTCOME"};
    return show_list(x, rdc_audit_list, &p, "audit", 7, cols, audit_row);
}

/* The verdict of a check: 0 consistent, EX_CHECK otherwise. */
static int check_verdict(struct ctx *x, json_t *doc)
{
    const char *status = str(doc, "status");
    bool ok = status != NULL && strcmp(status, "consistent") == 0;
    if (x->o.json) {
        out_json(doc, x->compact);
    } else {
        char b[64];
        printf("check %s at index %lld: %s%s%s\n", str(doc, "check_id"), num(doc, "index"),
               out_color(out_state_color(status)), status, out_color(C_RESET));
        struct table t;
        table_init(&t, 3, (const char *[]){"  REPLICA", "DIGEST", "VERDICT"});
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(doc, "digests"), k, v)
        {
            bool diverged = false;
            size_t i;
            json_t *d;
            json_array_foreach(json_object_get(doc, "diverged"), i, d)
            {
                diverged |= json_integer_value(d) == strtoll(k, NULL, 10);
            }
            table_addf(&t, NULL, "  %s", k);
            table_add(&t, out_value(v, b, sizeof b), NULL);
            table_add(&t,
                      json_is_null(v) ? "no answer"
                      : diverged      ? "DIVERGED"
                                      : "agrees",
                      diverged          ? C_RED
                      : json_is_null(v) ? C_YELLOW
                                        : C_GREEN);
        }
        table_print(&t, stdout);
        table_free(&t);
    }
    json_decref(doc);
    return ok ? EX_OK : EX_CHECK;
}

static int cmd_consistency_check(struct ctx *x, char **args, int nargs)
{
    json_t *doc = NULL;
    int rc = rdc_consistency_check(x->c, &doc);
    if (rc != 0) {
        json_decref(doc);
        return api_error(x, rc, "consistency check");
    }
    char id[64];
    snprintf(id, sizeof id, "%s", str(doc, "check_id") ? str(doc, "check_id") : "");
    json_decref(doc);
    /* The leader gathers the digests for up to 10 s. */
    struct progress pr;
    progress_start(&pr, "checking", NULL);
    for (;;) {
        doc = NULL;
        if ((rc = rdc_consistency_get(x->c, id, &doc)) != 0) {
            json_decref(doc);
            progress_end(&pr, 0, "failed");
            return api_error(x, rc, id);
        }
        const char *status = str(doc, "status");
        if (status == NULL || strcmp(status, "pending") != 0 || interrupted)
            break;
        json_decref(doc);
        double el = (double)(out_now_ms() - pr.start_ms) / 1000.0;
        progress_update(&pr, el / 10 > 0.99 ? 0.99 : el / 10, -1, el < 10 ? 10 - el : -1);
        sleep_interruptible(0.2);
    }
    progress_end(&pr, 1, str(doc, "status"));
    return check_verdict(x, doc);
}

static int cmd_consistency_get(struct ctx *x, char **args, int nargs)
{
    return get_one(x, rdc_consistency_get, args[0], check_verdict);
}

static void consistency_list_row(struct table *t, const json_t *n)
{
    char b[64], d[256];
    table_add(t, str(n, "check_id"), NULL);
    table_addf(t, NULL, "%lld", num(n, "index"));
    table_add(t, str(n, "status"), out_state_color(str(n, "status")));
    table_add(t, reltime(n, "started_at", b, sizeof b), NULL);
    json_t *dv = json_object_get(n, "diverged");
    table_add(t, json_array_size(dv) ? out_value(dv, d, sizeof d) : NULL, NULL);
}

static int cmd_consistency_list(struct ctx *x, char **args, int nargs)
{
    struct params p = {0};
    param(&p, "status", x->o.status);
    static const char *const cols[] = {"CHECK", "INDEX", "STATUS", "STARTED", "DIVERGED"};
    return show_list(x, rdc_consistency_list, &p, "consistency list", 5, cols,
                     consistency_list_row);
}

/* ---- the command table and main ------------------------------------------------------ */

static const struct cmd cmds[] = {
    {"status", NULL, cmd_status, 0, 0, true, "status", ""},
    {"nodes", "list", cmd_nodes_list, 0, 0, true, "nodes list [--state S]",
     "state limit cursor all"},
    {"nodes", "get", cmd_node_get, 1, 1, false, "nodes get NODE", ""},
    {"nodes", "drain", cmd_node_drain, 1, 1, false, "nodes drain NODE [--reason R] [--wait]",
     "reason wait"},
    {"nodes", "isolate", cmd_node_isolate, 1, 1, false, "nodes isolate NODE [--reason R]",
     "reason"},
    {"nodes", "readmit", cmd_node_readmit, 1, 1, false, "nodes readmit NODE [--reason R]",
     "reason"},
    {"nodes", "remove", cmd_node_remove, 1, 1, false, "nodes remove NODE", ""},
    {"tasks", "list", cmd_tasks_list, 0, 0, true,
     "tasks list [--state S] [--node N] [--priority 0-9] [--label K=V]",
     "state node priority label limit cursor all"},
    {"tasks", "get", cmd_task_get, 1, 1, false, "tasks get TASK", ""},
    {"tasks", "submit", cmd_task_submit, 0, 0, false,
     "tasks submit [--payload JSON] [--priority 0-9] [--critical] [--slots N] [--label K=V] "
     "[--max-attempts N] [--deadline TIME] [--task-id UUID]",
     "payload priority critical slots label max-attempts deadline task-id"},
    {"tasks", "cancel", cmd_task_cancel, 1, 1, false, "tasks cancel TASK [--reason R]", "reason"},
    {"tasks", "retry", cmd_task_retry, 1, 1, false, "tasks retry TASK", ""},
    {"faults", "list", cmd_faults_list, 0, 0, true,
     "faults list [--status open|resolved] [--node N] [--severity S] [--type T] [--since TIME]",
     "status node severity type since limit cursor all"},
    {"faults", "get", cmd_fault_get, 1, 1, false, "faults get FAULT", ""},
    {"conflicts", "list", cmd_conflicts_list, 0, 0, true,
     "conflicts list [--task-id TASK] [--resolution keep_newer|keep_progress|fail_task] "
     "[--since TIME]",
     "task-id resolution since limit cursor all"},
    {"conflicts", "get", cmd_conflict_get, 1, 1, false, "conflicts get CONFLICT", ""},
    {"recoveries", "list", cmd_recoveries_list, 0, 0, true,
     "recoveries list [--status S] [--node N]", "status node limit cursor all"},
    {"recoveries", "get", cmd_recovery_get, 1, 1, false, "recoveries get RECOVERY", ""},
    {"recoveries", "trigger", cmd_recovery_trigger, 1, 1, false,
     "recoveries trigger NODE [--strategy S] [--wait]", "strategy wait"},
    {"backups", "create", cmd_backup_create, 0, 0, false, "backups create [--target T] [--wait]",
     "target wait"},
    {"backups", "list", cmd_backups_list, 0, 0, true, "backups list [--status S] [--target T]",
     "status target limit cursor all"},
    {"backups", "get", cmd_backup_get, 1, 1, false, "backups get BACKUP", ""},
    {"backups", "verify", cmd_backup_verify, 1, 1, false, "backups verify BACKUP", ""},
    {"restore", NULL, cmd_restore, 0, 1000, false,
     "restore --from URL --data-dir DIR [...]   (recoveryd restore --help)", ""},
    {"policies", "reload", cmd_policies_reload, 0, 0, false, "policies reload", ""},
    {"cluster replicas", "list", cmd_replicas_list, 0, 0, true, "cluster replicas list", ""},
    {"cluster replicas", "add", cmd_replica_add, 1, 1, false,
     "cluster replicas add ID --address HOST:PORT --api-url URL [--role voter|standby|spare]",
     "address api-url role"},
    {"cluster replicas", "promote", cmd_replica_promote, 1, 1, false,
     "cluster replicas promote ID [--role voter|standby|spare]", "role"},
    {"cluster replicas", "remove", cmd_replica_remove, 1, 1, false, "cluster replicas remove ID",
     ""},
    {"audit", NULL, cmd_audit, 0, 0, true,
     "audit [--principal P] [--action A] [--target T] [--since T] [--until T] [--order asc]",
     "principal action target since until order limit cursor all"},
    {"consistency", "check", cmd_consistency_check, 0, 0, false, "consistency check", ""},
    {"consistency", "list", cmd_consistency_list, 0, 0, true, "consistency list [--status S]",
     "status limit cursor all"},
    {"consistency", "get", cmd_consistency_get, 1, 1, false, "consistency get CHECK", ""},
};
#define N_CMDS (sizeof cmds / sizeof cmds[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: recoveryctl [OPTIONS] COMMAND [ARGS] [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < N_CMDS; i++)
        fprintf(f, "  %s\n", cmds[i].usage);
    fprintf(f,
            "\noptions:\n"
            "  -e, --endpoints URLS  comma-separated base URLs of the replicas\n"
            "                        (RECOVERYD_ENDPOINTS, config file; http://127.0.0.1:8080)\n"
            "      --token TOKEN     bearer token (RECOVERYD_TOKEN, config file)\n"
            "      --cacert FILE     CA for https endpoints (RECOVERYD_CACERT, config file)\n"
            "      --config FILE     client config (~/.config/recoveryd/client.yaml)\n"
            "      --timeout MS      time limit of one request to one replica (5000)\n"
            "      --json            the engine's JSON on stdout instead of tables\n"
            "  -w, --watch           redraw status or a list every --interval seconds (2)\n"
            "      --count N         stop --watch after N refreshes\n"
            "      --color WHEN      auto (a terminal, no NO_COLOR), always or never\n"
            "      --wait            wait for drain, backups create, recoveries trigger, with a "
            "progress bar\n"
            "      --limit N, --cursor C   paging of lists (--limit: items a page)\n"
            "      --all             every page of a list\n"
            "  -h, --help, --version\n"
            "\nexit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 unavailable (no endpoint "
            "answered,\nno leader or no quorum), 5 not authorized, 6 conflict, 7 outcome unknown, "
            "8 check failed\n(backup damaged or failed, replicas diverged). See recoveryctl(1).\n");
}

enum {
    OPT_TOKEN = 256,
    OPT_CACERT,
    OPT_CONFIG,
    OPT_JSON,
    OPT_COLOR,
    OPT_NO_COLOR,
    OPT_INTERVAL,
    OPT_COUNT,
    OPT_TIMEOUT,
    OPT_WAIT,
    OPT_ALL,
    OPT_STATE,
    OPT_NODE,
    OPT_STATUS,
    OPT_TARGET,
    OPT_PRINCIPAL,
    OPT_ACTION,
    OPT_SINCE,
    OPT_UNTIL,
    OPT_ORDER,
    OPT_SEVERITY,
    OPT_TYPE,
    OPT_CURSOR,
    OPT_LIMIT,
    OPT_REASON,
    OPT_PAYLOAD,
    OPT_PRIORITY,
    OPT_CRITICAL,
    OPT_SLOTS,
    OPT_LABEL,
    OPT_MAX_ATTEMPTS,
    OPT_TASK_ID,
    OPT_DEADLINE,
    OPT_RESOLUTION,
    OPT_STRATEGY,
    OPT_ROLE,
    OPT_ADDRESS,
    OPT_API_URL,
    OPT_VERSION,
};

static const struct option long_opts[] = {
    {"endpoints", required_argument, NULL, 'e'},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"json", no_argument, NULL, OPT_JSON},
    {"color", required_argument, NULL, OPT_COLOR},
    {"no-color", no_argument, NULL, OPT_NO_COLOR},
    {"watch", no_argument, NULL, 'w'},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"count", required_argument, NULL, OPT_COUNT},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"wait", no_argument, NULL, OPT_WAIT},
    {"all", no_argument, NULL, OPT_ALL},
    {"state", required_argument, NULL, OPT_STATE},
    {"node", required_argument, NULL, OPT_NODE},
    {"status", required_argument, NULL, OPT_STATUS},
    {"target", required_argument, NULL, OPT_TARGET},
    {"principal", required_argument, NULL, OPT_PRINCIPAL},
    {"action", required_argument, NULL, OPT_ACTION},
    {"since", required_argument, NULL, OPT_SINCE},
    {"until", required_argument, NULL, OPT_UNTIL},
    {"order", required_argument, NULL, OPT_ORDER},
    {"severity", required_argument, NULL, OPT_SEVERITY},
    {"type", required_argument, NULL, OPT_TYPE},
    {"cursor", required_argument, NULL, OPT_CURSOR},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"reason", required_argument, NULL, OPT_REASON},
    {"payload", required_argument, NULL, OPT_PAYLOAD},
    {"priority", required_argument, NULL, OPT_PRIORITY},
    {"critical", no_argument, NULL, OPT_CRITICAL},
    {"slots", required_argument, NULL, OPT_SLOTS},
    {"label", required_argument, NULL, OPT_LABEL},
    {"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
    {"task-id", required_argument, NULL, OPT_TASK_ID},
    {"deadline", required_argument, NULL, OPT_DEADLINE},
    {"resolution", required_argument, NULL, OPT_RESOLUTION},
    {"strategy", required_argument, NULL, OPT_STRATEGY},
    {"role", required_argument, NULL, OPT_ROLE},
    {"address", required_argument, NULL, OPT_ADDRESS},
    {"api-url", required_argument, NULL, OPT_API_URL},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* A whole number from `lo` to `hi` for option `name`. */
static int int_arg(const char *name, const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return usage_error("--%s: expected a whole number from %ld to %ld, got '%s'", name, lo, hi,
                           s);
    *out = v;
    return 0;
}

/* getopt_long over argv: `stop_at_word` stops at the first word (the global
 * options before the command). 0, EX_USAGE, or -1 after --help/--version. */
static int parse_opts(int argc, char **argv, bool stop_at_word, struct opts *o)
{
    optind = 0; /* GNU: start over */
    opterr = 0;
    const char *spec = stop_at_word ? "+:e:wh" : ":e:wh";
    int ch;
    long v;
    int li = -1;
    while ((ch = getopt_long(argc, argv, spec, long_opts, &li)) != -1) {
        if (ch >= OPT_WAIT && ch <= OPT_API_URL && li >= 0 && o->nused < 64)
            o->used[o->nused++] = long_opts[li].name;
        li = -1;
        switch (ch) {
        case 'e':
            o->endpoints = optarg;
            break;
        case OPT_TOKEN:
            o->token = optarg;
            break;
        case OPT_CACERT:
            o->cacert = optarg;
            break;
        case OPT_CONFIG:
            o->config = optarg;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_COLOR:
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "always") != 0 &&
                strcmp(optarg, "never") != 0)
                return usage_error("--color: expected auto, always or never, got '%s'", optarg);
            o->color = optarg;
            break;
        case OPT_NO_COLOR:
            o->color = "never";
            break;
        case 'w':
            o->watch = true;
            break;
        case OPT_INTERVAL: {
            char *end = NULL;
            double d = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(d >= 0.1 && d <= 3600))
                return usage_error("--interval: expected seconds from 0.1 to 3600, got '%s'",
                                   optarg);
            o->interval = d;
            break;
        }
        case OPT_COUNT:
            if (int_arg("count", optarg, 1, 1000000, &o->count) != 0)
                return EX_USAGE;
            break;
        case OPT_TIMEOUT:
            if (int_arg("timeout", optarg, 1, 600000, &o->timeout_ms) != 0)
                return EX_USAGE;
            break;
        case OPT_WAIT:
            o->wait = true;
            break;
        case OPT_ALL:
            o->all = true;
            break;
        case OPT_STATE:
            o->state = optarg;
            break;
        case OPT_NODE:
            o->node = optarg;
            break;
        case OPT_STATUS:
            o->status = optarg;
            break;
        case OPT_TARGET:
            o->target = optarg;
            break;
        case OPT_PRINCIPAL:
            o->principal = optarg;
            break;
        case OPT_ACTION:
            o->action = optarg;
            break;
        case OPT_SINCE:
            o->since = optarg;
            break;
        case OPT_UNTIL:
            o->until = optarg;
            break;
        case OPT_ORDER:
            o->order = optarg;
            break;
        case OPT_SEVERITY:
            o->severity = optarg;
            break;
        case OPT_TYPE:
            o->type = optarg;
            break;
        case OPT_CURSOR:
            o->cursor = optarg;
            break;
        case OPT_LIMIT:
            if (int_arg("limit", optarg, 1, 1000, &v) != 0)
                return EX_USAGE;
            o->limit = optarg;
            break;
        case OPT_REASON:
            o->reason = optarg;
            break;
        case OPT_PAYLOAD:
            o->payload = optarg;
            break;
        case OPT_PRIORITY:
            if (int_arg("priority", optarg, 0, 9, &v) != 0)
                return EX_USAGE;
            o->priority = (int)v;
            break;
        case OPT_CRITICAL:
            o->critical = true;
            break;
        case OPT_SLOTS:
            if (int_arg("slots", optarg, 1, 65536, &v) != 0)
                return EX_USAGE;
            o->slots = (int)v;
            break;
        case OPT_LABEL:
            if (strchr(optarg, '=') == NULL || optarg[0] == '=')
                return usage_error("--label: expected KEY=VALUE, got '%s'", optarg);
            if (o->nlabels == 64)
                return usage_error("--label: at most 64");
            o->labels[o->nlabels++] = optarg;
            break;
        case OPT_MAX_ATTEMPTS:
            if (int_arg("max-attempts", optarg, 1, 1000, &v) != 0)
                return EX_USAGE;
            o->max_attempts = (int)v;
            break;
        case OPT_TASK_ID:
            o->task_id = optarg;
            break;
        case OPT_DEADLINE:
            o->deadline = optarg;
            break;
        case OPT_RESOLUTION:
            if (strcmp(optarg, "keep_newer") != 0 && strcmp(optarg, "keep_progress") != 0 &&
                strcmp(optarg, "fail_task") != 0)
                return usage_error(
                    "--resolution: expected keep_newer, keep_progress or fail_task, got '%s'",
                    optarg);
            o->resolution = optarg;
            break;
        case OPT_STRATEGY:
            o->strategy = optarg;
            break;
        case OPT_ROLE:
            if (strcmp(optarg, "voter") != 0 && strcmp(optarg, "standby") != 0 &&
                strcmp(optarg, "spare") != 0)
                return usage_error("--role: expected voter, standby or spare, got '%s'", optarg);
            o->role = optarg;
            break;
        case OPT_ADDRESS:
            o->address = optarg;
            break;
        case OPT_API_URL:
            o->api_url = optarg;
            break;
        case 'h':
            o->help = true;
            break;
        case OPT_VERSION:
            printf("recoveryctl %s (librecoveryd-client)\n", RDC_VERSION_STRING);
            return -1;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            if (optopt != 0)
                return usage_error("unknown option -%c", optopt);
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    return 0;
}

/* Runs `cmd` once, or again and again with --watch. */
static int run(struct ctx *x, const struct cmd *cmd, char **args, int nargs, const char *line)
{
    if (!x->o.watch)
        return cmd->fn(x, args, nargs);
    bool tty = isatty(STDOUT_FILENO);
    double interval = x->o.interval > 0 ? x->o.interval : 2;
    x->compact = true;
    int ex = EX_OK;
    for (long n = 0; !interrupted; n++) {
        if (!x->o.json) {
            char now[64];
            time_t t = time(NULL);
            strftime(now, sizeof now, "%Y-%m-%d %H:%M:%S", localtime(&t));
            if (tty)
                fputs("\033[H\033[2J", stdout);
            else if (n > 0)
                putchar('\n');
            printf("%sEvery %gs: recoveryctl %s%*s%s%s\n\n", out_color(C_DIM), interval, line, 4,
                   "", now, out_color(C_RESET));
        }
        ex = cmd->fn(x, args, nargs);
        fflush(stdout);
        if (x->o.count > 0 && n + 1 >= x->o.count)
            break;
        sleep_interruptible(interval);
    }
    return interrupted ? EX_OK : ex;
}

int main(int argc, char **argv)
{
    struct ctx x = {0};
    x.o.priority = -1;
    int rc = parse_opts(argc, argv, true, &x.o);
    if (rc != 0)
        return rc < 0 ? EX_OK : rc;
    int word = optind;
    if (word >= argc || strcmp(argv[word], "help") == 0) {
        usage(word >= argc && !x.o.help ? stderr : stdout);
        return word >= argc && !x.o.help ? EX_USAGE : EX_OK;
    }
    /* The command: one word, or two for "cluster replicas". */
    const char *group = argv[word];
    int nwords = 1;
    char grp[64];
    if (strcmp(group, "cluster") == 0) {
        if (word + 1 >= argc || strcmp(argv[word + 1], "replicas") != 0)
            return usage_error("cluster: expected 'cluster replicas list|add|promote|remove'");
        snprintf(grp, sizeof grp, "cluster replicas");
        group = grp;
        nwords = 2;
    }
    bool known_group = false;
    for (size_t i = 0; i < N_CMDS; i++)
        known_group |= strcmp(cmds[i].group, group) == 0;
    if (!known_group)
        return usage_error("unknown command '%s'", group);

    /* restore passes everything after it to `recoveryd restore`. */
    if (strcmp(group, "restore") == 0) {
        if (x.o.help) {
            usage(stdout);
            return EX_OK;
        }
        return cmd_restore(&x, argv + word + 1, argc - word - 1);
    }

    /* The rest: options anywhere, then the verb and its arguments. */
    int sub_argc = argc - word - nwords + 1;
    char **sub = calloc((size_t)sub_argc + 1, sizeof *sub);
    if (sub == NULL)
        return EX_ERROR;
    sub[0] = argv[0];
    for (int i = 1; i < sub_argc; i++)
        sub[i] = argv[word + nwords + i - 1];
    rc = parse_opts(sub_argc, sub, false, &x.o);
    if (rc != 0) {
        free(sub);
        return rc < 0 ? EX_OK : rc;
    }
    char **rest = sub + optind;
    int nrest = sub_argc - optind;
    const struct cmd *cmd = NULL;
    for (size_t i = 0; i < N_CMDS; i++) {
        if (strcmp(cmds[i].group, group) != 0)
            continue;
        if (cmds[i].verb == NULL) {
            cmd = &cmds[i];
            break;
        }
        if (nrest > 0 && strcmp(cmds[i].verb, rest[0]) == 0) {
            cmd = &cmds[i];
            rest++;
            nrest--;
            break;
        }
    }
    char line[512];
    snprintf(line, sizeof line, "%s%s%s", group, cmd && cmd->verb ? " " : "",
             cmd && cmd->verb ? cmd->verb : "");
    if (x.o.help) {
        usage(stdout);
        free(sub);
        return EX_OK;
    }
    if (cmd == NULL) {
        char verbs[256] = "";
        size_t o = 0;
        for (size_t i = 0; i < N_CMDS; i++)
            if (strcmp(cmds[i].group, group) == 0)
                o += (size_t)snprintf(verbs + o, sizeof verbs - o, "%s%s", o ? ", " : "",
                                      cmds[i].verb);
        rc = nrest > 0
                 ? usage_error("%s: unknown subcommand '%s' (expected %s)", group, rest[0], verbs)
                 : usage_error("%s: expected a subcommand: %s", group, verbs);
        free(sub);
        return rc;
    }
    if (nrest < cmd->min_args || nrest > cmd->max_args) {
        free(sub);
        return usage_error("%s: expected 'recoveryctl %s'", line, cmd->usage);
    }
    for (int i = 0; i < x.o.nused; i++) {
        size_t n = strlen(x.o.used[i]);
        const char *at = cmd->opts;
        while ((at = strstr(at, x.o.used[i])) != NULL &&
               !((at == cmd->opts || at[-1] == ' ') && (at[n] == ' ' || at[n] == '\0')))
            at += n;
        if (at == NULL) {
            free(sub);
            return usage_error("%s: --%s does not apply (usage: recoveryctl %s)", line, x.o.used[i],
                               cmd->usage);
        }
    }
    if (x.o.all && x.o.cursor != NULL) {
        free(sub);
        return usage_error("%s: --all starts at the first page: give --all or --cursor", line);
    }
    if (x.o.watch && !cmd->watch) {
        free(sub);
        return usage_error("%s: --watch is for status and lists", line);
    }

    /* Where to connect: flags, then the environment, then the config file. */
    struct ctl_config cfg = {0};
    char err[1024];
    if (ctl_config_load(x.o.config, &cfg, err, sizeof err) != 0) {
        ctl_config_free(&cfg);
        free(sub);
        fprintf(stderr, "recoveryctl: %s\n", err);
        return EX_USAGE;
    }
    const char *env_ep = getenv("RECOVERYD_ENDPOINTS"), *env_tok = getenv("RECOVERYD_TOKEN");
    const char *env_ca = getenv("RECOVERYD_CACERT");
    struct rdc_options ro = {
        .endpoints = x.o.endpoints         ? x.o.endpoints
                     : env_ep && env_ep[0] ? env_ep
                                           : cfg.endpoints,
        .token = x.o.token               ? x.o.token
                 : env_tok && env_tok[0] ? env_tok
                                         : cfg.token,
        .ca_file = x.o.cacert            ? x.o.cacert
                   : env_ca && env_ca[0] ? env_ca
                                         : cfg.cacert,
        .timeout_ms = x.o.timeout_ms ? x.o.timeout_ms : cfg.timeout_ms,
    };
    rc = rdc_client_new(&ro, &x.c, err, sizeof err);
    ctl_config_free(&cfg);
    if (rc != 0) {
        free(sub);
        fprintf(stderr, "recoveryctl: %s\n", err);
        return rc == RDC_EINVAL ? EX_USAGE : EX_ERROR;
    }
    out_set_color(x.o.color ? x.o.color : "auto");
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = run(&x, cmd, rest, nrest, line);
    rdc_client_free(x.c);
    free(sub);
    return rc;
}
