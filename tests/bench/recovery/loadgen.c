/*
 * bench_recovery_loadgen: the task recovery benchmark's load generator
 * (tests/bench/recovery/run.sh starts the engine and runs this).
 *
 * One process, one thread of libcurl's multi interface (HTTP/2 multiplexed,
 * see rdb_h2_prior_knowledge in tests/bench/lib/bench.h), simulates a fleet
 * of agents against a running recoveryd:
 *
 *   - every agent registers with a health endpoint of its own, a real port
 *     of an rdt_httpd server (tests/lib/httpd.h) in a thread of this process,
 *     and heartbeats every interval +/- jitter with load.slots_used;
 *   - the tasks are submitted once the fleet is registered (priorities 0-9,
 *     not critical, so policies/select.lua picks fast_recovery for a crash);
 *     an agent takes the `assignments` of its heartbeat answers, drops the
 *     `revoked` ones, checkpoints each task at once when it receives it
 *     (resuming from the version it was handed) and then every second, with
 *     {"attempt", "version": last acknowledged + 1, "data": {"n": version}};
 *   - once every task runs and the warm-up has passed, a share of the agents
 *     crash at once: no more heartbeats, their endpoint refuses connections.
 *     They stay as zombies: they go on checkpointing their old tasks with
 *     their old attempt, every write of which must be fenced once the task
 *     moved, and at the end they try to complete them;
 *   - after the measured time every agent completes what it holds, and each
 *     task and its checkpoint is read back from the engine.
 *
 * It prints the time from the crash to each moved task's assignment reaching
 * its new agent and to its first checkpoint there, the checkpoint throughput
 * of the healthy agents during the recovery as a share of before, the tasks
 * and acknowledged checkpoint versions lost, the tasks completed by two
 * attempts, and PASS/FAIL per target. Exit: 0 when the run took place and
 * the correctness figures hold, 3 when one of them fails (whatever the
 * timings), 1 on a setup error, 2 on bad usage.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "harness.h"
#include "httpd.h"

#define N_CONNS        4  /* connections with prior knowledge (bench.h) */
#define SETUP_INFLIGHT 64 /* registrations, submissions and reads at a time */
#define MAX_HOLDS      64 /* tasks one agent can hold at once */
#define TARGET_ASSIGN  2000
#define TARGET_CKPT    2500
#define TARGET_SHARE   90.0
#define MIN_WINDOW_MS  5000
#define MAX_BASE_MS    10000
#define RUN_LIMIT_MS   60000 /* for the fleet to register and every task to run */
#define FINISH_MS      15000 /* for every task to be completed at the end */

struct opts {
    const char *url;
    unsigned agents, per_agent, crash_share, slots;
    unsigned warmup_s, duration_s;
    unsigned interval_ms, jitter_ms, ckpt_ms;
    uint64_t seed;
};

struct agent {
    char id[32];
    bool doomed;  /* crashes at the crash */
    bool crashed; /* from the crash on: a zombie */
    long long epoch;
    bool registered, hb_in_flight;
    int64_t hb_due;
    unsigned n_holds; /* holds[] used so far (inactive ones are reused) */
    struct rdb_hold holds[MAX_HOLDS];
};

struct task {
    char id[40];
    bool running;           /* some checkpoint was acknowledged */
    uint32_t crash_attempt; /* the attempt a crashed agent held at the crash; 0: not moved */
    unsigned crash_agent;   /* that agent */
    int64_t assigned_ms;    /* crash to the new agent's heartbeat answer carrying it */
    int64_t first_ckpt_ms;  /* crash to the first acknowledged checkpoint there */
    uint64_t handed_version, max_acked;
    bool lost_at_move; /* resumed from below an acknowledged version */
    unsigned n_done;   /* distinct attempts whose complete was answered 2xx */
    uint32_t done_attempt[4];
    /* what the engine says at the end */
    char state[16];
    long long final_attempt, ckpt_version;
    bool ckpt_data_ok;
};

enum rkind {
    R_REGISTER,
    R_SUBMIT,
    R_HEARTBEAT,
    R_CKPT,
    R_COMPLETE,
    R_GET_TASK,
    R_GET_CKPT,
    R_GET_FAULTS,
    R_GET_STATUS
};

struct req {
    struct req *next_free;
    CURL *easy;
    enum rkind kind;
    unsigned agent, task, hold;
    uint32_t attempt;
    uint64_t version;
    int64_t sent_ms;
    char url[320], body[320];
    struct rdb_buf resp;
};

/* One acknowledged checkpoint of an agent that stays healthy. */
struct ack {
    int64_t ms;
    int32_t rtt_ms;
    bool moved; /* on a task moved off a crashed agent */
};

struct counts {
    uint64_t sent, ok, fenced, stale, conflict, other, errors;
};

enum phase { P_REGISTER, P_SUBMIT, P_WARMUP, P_RECOVERY, P_COMPLETE, P_VERIFY, P_DONE };

struct bench {
    struct opts o;
    struct agent *agents;
    struct task *tasks;
    unsigned n_tasks, n_doomed, n_moved;
    enum phase phase;
    struct rdt_httpd *httpd;
    CURLM *multi;
    struct curl_slist *hdrs;
    struct req *free_reqs;
    unsigned setup_next, setup_done, setup_inflight, setup_failed;
    uint64_t rng;
    int64_t start_ms, running_ms, crash_ms, crash_wall_ms, end_ms, recovered_ms, finish_ms;
    pthread_t downer;
    bool downer_started;
    _Atomic int64_t down_took_ms;
    struct ack *acks;
    size_t n_acks, cap_acks;
    struct counts hb, ckpt, zombie, done, zombie_done;
    uint64_t zombie_ok_before, zombie_ok_after, zombie_ok_above; /* accepted zombie writes */
    unsigned reregistered, hold_overflow, unknown_tasks;
    /* from the engine, at the end */
    int64_t *detected_ms; /* per agent: crash to its fault record, -1 = none */
    char (*fault_type)[24];
    long long engine_p50, engine_p99;
    unsigned read_errors;
};

/* ---- small helpers ---------------------------------------------------------- */

static const char *fmt_lat(struct rdb_lat s, char *buf, size_t len)
{
    if (s.n == 0)
        snprintf(buf, len, "none (0/%zu)", s.of);
    else
        snprintf(buf, len, "p50 %lld ms, p99 %lld ms, max %lld ms (%zu/%zu)", (long long)s.p50,
                 (long long)s.p99, (long long)s.max, s.n, s.of);
    return buf;
}

/* ---- options ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f, "usage: bench_recovery_loadgen [--url URL] [--agents N] [--tasks-per-agent N]\n"
           "         [--crash-share PCT] [--slots N] [--warmup S] [--duration S]\n"
           "         [--interval-ms MS] [--jitter-ms MS] [--checkpoint-ms MS] [--seed N]\n"
           "  --url              the engine's API (default http://127.0.0.1:8080)\n"
           "  --agents           simulated agents (default 200, at least 2)\n"
           "  --tasks-per-agent  tasks submitted per agent (default 10)\n"
           "  --crash-share      percentage of the agents that crash (default 20)\n"
           "  --slots            capacity.slots of each agent (default twice the tasks per agent)\n"
           "  --warmup           seconds between every task running and the crash (default 20)\n"
           "  --duration         seconds measured after the crash (default 30, at least 5)\n"
           "  --interval-ms      heartbeat interval (default 500)\n"
           "  --jitter-ms        uniform jitter around it, +/- (default 100)\n"
           "  --checkpoint-ms    time between two checkpoints of a task (default 1000)\n"
           "  --seed             seed of the jitter (default 42)\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.url = "http://127.0.0.1:8080",
                       .agents = 200,
                       .per_agent = 10,
                       .crash_share = 20,
                       .warmup_s = 20,
                       .duration_s = 30,
                       .interval_ms = 500,
                       .jitter_ms = 100,
                       .ckpt_ms = 1000};
    unsigned seed = 42;
    const struct rdb_opt opts[] = {
        {"url", .str = &o->url},
        {"agents", .num = &o->agents, .min = 2, .max = 20000},
        {"tasks-per-agent", .num = &o->per_agent, .min = 1, .max = MAX_HOLDS / 4},
        {"crash-share", .num = &o->crash_share, .min = 1, .max = 99},
        {"slots", .num = &o->slots, .min = 1, .max = MAX_HOLDS / 2},
        {"warmup", .num = &o->warmup_s, .min = 1, .max = 86400},
        {"duration", .num = &o->duration_s, .min = 5, .max = 86400},
        {"interval-ms", .num = &o->interval_ms, .min = 10, .max = 600000},
        {"jitter-ms", .num = &o->jitter_ms, .min = 0, .max = 600000},
        {"checkpoint-ms", .num = &o->ckpt_ms, .min = 10, .max = 600000},
        {"seed", .num = &seed, .min = 1, .max = UINT32_MAX},
        {NULL},
    };
    int rc = rdb_parse_opts(argc, argv, opts, NULL, usage);
    o->seed = seed;
    if (o->slots == 0)
        o->slots = 2 * o->per_agent;
    if (rc != 0 || o->jitter_ms >= o->interval_ms || o->slots < o->per_agent) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* ---- requests ------------------------------------------------------------------ */

static struct req *req_new(struct bench *b, enum rkind kind)
{
    struct req *r = b->free_reqs;
    if (r != NULL) {
        b->free_reqs = r->next_free;
    } else {
        r = calloc(1, sizeof(*r));
        if (r == NULL ||
            (r->easy = rdb_easy_new(rdb_h2_version(), b->hdrs, 5000L, r, &r->resp)) == NULL) {
            free(r);
            return NULL;
        }
    }
    r->kind = kind;
    r->agent = r->task = r->hold = 0;
    r->attempt = 0;
    r->version = 0;
    r->url[0] = r->body[0] = '\0';
    return r;
}

/* Starts r: a GET without a body, else `method` (POST or PUT) with r->body. */
static bool req_start(struct bench *b, struct req *r, const char *method)
{
    rdb_buf_clear(&r->resp);
    curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
    if (method == NULL) {
        curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
        curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, strcmp(method, "PUT") == 0 ? "PUT" : NULL);
    }
    r->sent_ms = rdt_now_ms();
    if (curl_multi_add_handle(b->multi, r->easy) != CURLM_OK) {
        r->next_free = b->free_reqs;
        b->free_reqs = r;
        return false;
    }
    return true;
}

static void req_free_all(struct bench *b)
{
    while (b->free_reqs) {
        struct req *r = b->free_reqs;
        b->free_reqs = r->next_free;
        curl_easy_cleanup(r->easy);
        rdb_buf_free(&r->resp);
        free(r);
    }
}

/* The error code of a 409 answer: fenced, stale_version or conflict. */
static const char *error_code(const struct req *r)
{
    const char *resp = r->resp.p;
    if (resp == NULL)
        return "";
    if (strstr(resp, "\"stale_version\""))
        return "stale_version";
    if (strstr(resp, "\"fenced\""))
        return "fenced";
    if (strstr(resp, "\"conflict\""))
        return "conflict";
    return "";
}

static void count(struct counts *c, CURLcode rc, long status, const struct req *r)
{
    if (rc != CURLE_OK)
        c->errors++;
    else if (status >= 200 && status < 300)
        c->ok++;
    else if (status == 409 && strcmp(error_code(r), "fenced") == 0)
        c->fenced++;
    else if (status == 409 && strcmp(error_code(r), "stale_version") == 0)
        c->stale++;
    else if (status == 409 && strcmp(error_code(r), "conflict") == 0)
        c->conflict++;
    else
        c->other++;
}

/* ---- the fleet -------------------------------------------------------------------- */

static struct task *task_by_id(struct bench *b, const char *id)
{
    unsigned i = rdb_task_index(id);
    return i < b->n_tasks ? &b->tasks[i] : NULL;
}

static unsigned holds_active(const struct agent *a)
{
    unsigned n = 0;
    for (unsigned i = 0; i < a->n_holds; i++)
        n += a->holds[i].active;
    return n;
}

static void start_register(struct bench *b, unsigned i)
{
    struct req *r = req_new(b, R_REGISTER);
    if (r == NULL)
        return;
    r->agent = i;
    snprintf(r->url, sizeof(r->url), "%s/api/v1/nodes", b->o.url);
    snprintf(r->body, sizeof(r->body),
             "{\"node_id\":\"%s\",\"capacity\":{\"slots\":%u},"
             "\"health_url\":\"http://127.0.0.1:%u/health\"}",
             b->agents[i].id, b->o.slots, rdt_httpd_port(b->httpd, i));
    req_start(b, r, "POST");
}

static void start_heartbeat(struct bench *b, struct agent *a)
{
    struct req *r = req_new(b, R_HEARTBEAT);
    if (r == NULL)
        return;
    r->agent = (unsigned)(a - b->agents);
    snprintf(r->url, sizeof(r->url), "%s/api/v1/nodes/%s/heartbeat", b->o.url, a->id);
    snprintf(r->body, sizeof(r->body), "{\"epoch\":%lld,\"load\":{\"slots_used\":%u}}", a->epoch,
             holds_active(a));
    a->hb_in_flight = req_start(b, r, "POST");
    b->hb.sent += a->hb_in_flight;
}

/* A checkpoint (or at the end a completion) of hold h of agent a. */
static void start_write(struct bench *b, struct agent *a, struct rdb_hold *h, bool complete)
{
    struct req *r = req_new(b, complete ? R_COMPLETE : R_CKPT);
    if (r == NULL)
        return;
    const char *id = b->tasks[h->task].id;
    r->agent = (unsigned)(a - b->agents);
    r->hold = (unsigned)(h - a->holds);
    r->task = h->task;
    r->attempt = h->attempt;
    r->version = h->version + (complete ? 0 : 1);
    if (complete) {
        snprintf(r->url, sizeof(r->url), "%s/api/v1/tasks/%s/complete", b->o.url, id);
        snprintf(r->body, sizeof(r->body), "{\"attempt\":%u,\"result\":{\"n\":%llu}}", h->attempt,
                 (unsigned long long)h->version);
    } else {
        snprintf(r->url, sizeof(r->url), "%s/api/v1/tasks/%s/checkpoint", b->o.url, id);
        snprintf(r->body, sizeof(r->body),
                 "{\"attempt\":%u,\"version\":%llu,\"data\":{\"n\":%llu}}", h->attempt,
                 (unsigned long long)r->version, (unsigned long long)r->version);
    }
    h->in_flight = req_start(b, r, complete ? "POST" : "PUT");
    struct counts *c =
        a->crashed ? (complete ? &b->zombie_done : &b->zombie) : (complete ? &b->done : &b->ckpt);
    c->sent += h->in_flight;
}

/* A heartbeat answer being read: the agent it answered, and when. */
struct answer {
    struct bench *b;
    struct agent *a;
    int64_t now;
};

/* An assignment from a heartbeat answer: the agent holds the task from now on. */
static void take(void *ctx, const struct rdb_assignment *as)
{
    struct answer *ans = ctx;
    struct bench *b = ans->b;
    struct agent *a = ans->a;
    int64_t now = ans->now;
    struct task *t = task_by_id(b, as->task_id);
    long long attempt = as->attempt;
    uint64_t version = as->version;
    if (t == NULL || attempt < 1) {
        b->unknown_tasks++;
        return;
    }
    int slot = rdb_hold_slot(a->holds, &a->n_holds, MAX_HOLDS, (unsigned)(t - b->tasks),
                             (uint32_t)attempt);
    if (slot == -2)
        b->hold_overflow++;
    if (slot < 0)
        return;
    struct rdb_hold *h = &a->holds[slot];
    *h = (struct rdb_hold){.task = (unsigned)(t - b->tasks),
                           .attempt = (uint32_t)attempt,
                           .version = version,
                           .due = now, /* it checkpoints at once when it resumes a task */
                           .active = true,
                           .in_flight = h->in_flight,
                           .completing = b->phase >= P_COMPLETE};
    if (t->crash_attempt != 0 && (uint32_t)attempt > t->crash_attempt && t->assigned_ms == 0) {
        t->assigned_ms = now > b->crash_ms ? now - b->crash_ms : 1;
        t->handed_version = version;
        /* Resumed from below a version already acknowledged: that version is lost. */
        t->lost_at_move |= version < t->max_acked;
    }
}

static void drop(void *ctx, const char *task_id)
{
    struct answer *ans = ctx;
    struct bench *b = ans->b;
    struct agent *a = ans->a;
    struct task *t = task_by_id(b, task_id);
    for (unsigned i = 0; t && i < a->n_holds; i++)
        if (a->holds[i].task == (unsigned)(t - b->tasks))
            a->holds[i].active = false;
}

static void on_heartbeat(struct bench *b, struct req *r, CURLcode rc, long status, int64_t now)
{
    struct agent *a = &b->agents[r->agent];
    a->hb_in_flight = false;
    count(&b->hb, rc, status, r);
    if (rc == CURLE_OK && status == 409) {
        /* Declared failed while it runs: drop everything, register again. */
        for (unsigned i = 0; i < a->n_holds; i++)
            a->holds[i].active = false;
        a->registered = false;
        b->reregistered++;
        start_register(b, r->agent);
        return;
    }
    if (rc != CURLE_OK || status != 200 || a->crashed)
        return;
    rdb_heartbeat_answer(r->resp.p, take, drop, &(struct answer){b, a, now});
}

static void note_ack(struct bench *b, const struct task *t, int64_t now, int64_t rtt)
{
    if (b->n_acks == b->cap_acks) {
        size_t cap = b->cap_acks ? 2 * b->cap_acks : 65536;
        struct ack *n = realloc(b->acks, cap * sizeof(*n));
        if (n == NULL)
            return;
        b->acks = n;
        b->cap_acks = cap;
    }
    b->acks[b->n_acks++] = (struct ack){now, (int32_t)rtt, t->crash_attempt != 0};
}

static void on_checkpoint(struct bench *b, struct req *r, CURLcode rc, long status, int64_t now)
{
    struct agent *a = &b->agents[r->agent];
    struct rdb_hold *h = &a->holds[r->hold];
    struct task *t = &b->tasks[r->task];
    bool mine = h->active && h->task == r->task && h->attempt == r->attempt;
    bool zombie = a->crashed && b->crash_ms != 0 && r->sent_ms >= b->crash_ms;
    h->in_flight = false;
    count(zombie ? &b->zombie : &b->ckpt, rc, status, r);
    if (rc != CURLE_OK)
        return;
    if (status == 200) {
        t->running = true;
        if (r->version > t->max_acked)
            t->max_acked = r->version;
        if (mine)
            h->version = r->version;
        if (zombie) {
            /* Fencing must refuse every write sent after the move arrived. */
            bool after = t->assigned_ms != 0 && r->sent_ms - b->crash_ms >= t->assigned_ms;
            b->zombie_ok_after += after;
            b->zombie_ok_before += !after;
            if (t->assigned_ms != 0 && r->version > t->handed_version) {
                b->zombie_ok_above++;
                t->lost_at_move = true; /* acknowledged, and not what the new agent resumed */
            }
        } else if (!a->doomed) {
            note_ack(b, t, now, now - r->sent_ms);
            if (mine && t->crash_attempt != 0 && r->attempt > t->crash_attempt &&
                t->first_ckpt_ms == 0)
                t->first_ckpt_ms = now > b->crash_ms ? now - b->crash_ms : 1;
        }
    } else if (status == 409 && mine && !zombie) {
        const char *code = error_code(r);
        if (strcmp(code, "stale_version") == 0) {
            json_t *j = json_loads(r->resp.p, 0, NULL);
            json_t *d = json_object_get(json_object_get(j, "error"), "details");
            json_int_t stored = json_integer_value(json_object_get(d, "stored_version"));
            if (stored > 0 && (uint64_t)stored > h->version)
                h->version = (uint64_t)stored;
            json_decref(j);
        } else if (strcmp(code, "fenced") == 0) {
            h->active = false; /* moved away: drop it */
        }
    }
}

static void on_complete(struct bench *b, struct req *r, CURLcode rc, long status)
{
    struct agent *a = &b->agents[r->agent];
    struct rdb_hold *h = &a->holds[r->hold];
    struct task *t = &b->tasks[r->task];
    bool mine = h->active && h->task == r->task && h->attempt == r->attempt;
    h->in_flight = false;
    count(a->crashed ? &b->zombie_done : &b->done, rc, status, r);
    if (rc == CURLE_OK && status >= 200 && status < 300) {
        bool seen = false;
        for (unsigned i = 0; i < t->n_done; i++)
            seen |= t->done_attempt[i] == r->attempt;
        if (!seen && t->n_done < 4)
            t->done_attempt[t->n_done++] = r->attempt;
    }
    /* Answered: done. A zombie tries once; the others retry errors and 5xx. */
    if (mine && (a->crashed || (rc == CURLE_OK && status < 500)))
        h->active = false;
    else if (mine)
        h->due = rdt_now_ms() + 200;
}

static void on_registered(struct bench *b, struct req *r, CURLcode rc, long status)
{
    struct agent *a = &b->agents[r->agent];
    a->epoch = rdb_epoch_of(status, r->resp.p);
    if (b->phase == P_REGISTER) {
        b->setup_inflight--;
        b->setup_done++;
    }
    if (a->epoch <= 0) {
        if (b->setup_failed++ < 5)
            fprintf(stderr, "loadgen: registering %s: %s, HTTP %ld: %.200s\n", a->id,
                    curl_easy_strerror(rc), status, r->resp.p ? r->resp.p : "");
        return;
    }
    a->registered = true;
    /* Its first heartbeat at a random point of the first interval. */
    a->hb_due = rdt_now_ms() + (int64_t)rdb_uniform(&b->rng, 0, b->o.interval_ms);
}

static void on_setup(struct bench *b, struct req *r, CURLcode rc, long status)
{
    b->setup_inflight--;
    b->setup_done++;
    bool ok = rc == CURLE_OK && status >= 200 && status < 300;
    json_t *j = ok ? json_loads(r->resp.p, 0, NULL) : NULL;
    struct task *t = r->kind == R_GET_TASK || r->kind == R_GET_CKPT ? &b->tasks[r->task] : NULL;
    if (r->kind == R_SUBMIT && !ok && b->setup_failed++ < 5)
        fprintf(stderr, "loadgen: submitting a task: %s, HTTP %ld: %.200s\n",
                curl_easy_strerror(rc), status, r->resp.p ? r->resp.p : "");
    if (r->kind != R_SUBMIT && j == NULL && !(r->kind == R_GET_CKPT && status == 404))
        b->read_errors++;
    if (r->kind == R_GET_TASK && j != NULL) {
        const char *state = json_string_value(json_object_get(j, "state"));
        snprintf(t->state, sizeof(t->state), "%s", state ? state : "?");
        t->final_attempt = json_integer_value(json_object_get(j, "attempt"));
    } else if (r->kind == R_GET_CKPT && j != NULL) {
        t->ckpt_version = json_integer_value(json_object_get(j, "version"));
        json_t *n = json_object_get(json_object_get(j, "data"), "n");
        t->ckpt_data_ok = json_integer_value(n) == t->ckpt_version;
    } else if (r->kind == R_GET_FAULTS && j != NULL) {
        /* The agent's first fault record after the crash. */
        json_t *item;
        size_t i;
        json_array_foreach(json_object_get(j, "items"), i, item)
        {
            int64_t at;
            const char *type = json_string_value(json_object_get(item, "fault_type"));
            if (type == NULL ||
                rdb_parse_time(json_string_value(json_object_get(item, "detected_at")), &at) != 0 ||
                at < b->crash_wall_ms - 1000)
                continue;
            int64_t *d = &b->detected_ms[r->agent];
            if (*d < 0 || at - b->crash_wall_ms < *d) {
                *d = at - b->crash_wall_ms;
                const char *sev = json_string_value(json_object_get(item, "severity_level"));
                snprintf(b->fault_type[r->agent], sizeof(b->fault_type[0]), "%s/%s", type,
                         sev ? sev : "?");
            }
        }
    } else if (r->kind == R_GET_STATUS && j != NULL) {
        json_t *l = json_object_get(j, "detection_latency_ms");
        b->engine_p50 = json_is_integer(json_object_get(l, "p50"))
                            ? json_integer_value(json_object_get(l, "p50"))
                            : -1;
        b->engine_p99 = json_is_integer(json_object_get(l, "p99"))
                            ? json_integer_value(json_object_get(l, "p99"))
                            : -1;
    }
    json_decref(j);
}

/* Hands every finished transfer to its handler and recycles it. */
static void drain(struct bench *b)
{
    struct rdb_done d;
    while (rdb_next_done(b->multi, &d)) {
        CURLcode rc = d.rc;
        long status = d.status;
        struct req *r = d.priv;
        int64_t now = rdt_now_ms();
        switch (r->kind) {
        case R_REGISTER:
            on_registered(b, r, rc, status);
            break;
        case R_HEARTBEAT:
            on_heartbeat(b, r, rc, status, now);
            break;
        case R_CKPT:
            on_checkpoint(b, r, rc, status, now);
            break;
        case R_COMPLETE:
            on_complete(b, r, rc, status);
            break;
        default:
            on_setup(b, r, rc, status);
        }
        r->next_free = b->free_reqs;
        b->free_reqs = r;
    }
}

/* ---- the schedule ----------------------------------------------------------------- */

/* Sends the heartbeats, checkpoints and completions that are due; returns
 * the monotonic time of the next one. */
static int64_t send_due(struct bench *b, int64_t now)
{
    int64_t next = now + 100;
    /* Heartbeats go on while the engine is read: no agent fails meanwhile. */
    bool beat = b->phase <= P_VERIFY, writes = b->phase >= P_SUBMIT && b->phase <= P_COMPLETE;
    for (unsigned i = 0; i < b->o.agents; i++) {
        struct agent *a = &b->agents[i];
        if (beat && a->registered && !a->crashed && !a->hb_in_flight) {
            if (a->hb_due <= now) {
                start_heartbeat(b, a);
                a->hb_due += rdb_jittered_ms(&b->rng, b->o.interval_ms, b->o.jitter_ms);
                if (a->hb_due < now - (int64_t)b->o.interval_ms)
                    a->hb_due = now; /* fell far behind: no catching up in a burst */
            }
            next = a->hb_due < next ? a->hb_due : next;
        }
        for (unsigned k = 0; writes && k < a->n_holds; k++) {
            struct rdb_hold *h = &a->holds[k];
            if (!h->active || h->in_flight)
                continue;
            if (h->due <= now) {
                start_write(b, a, h, h->completing);
                int64_t due = h->due + b->o.ckpt_ms;
                h->due = due < now ? now : due;
            }
            next = h->due < next ? h->due : next;
        }
    }
    return next;
}

/* ---- the phases ------------------------------------------------------------------- */

static void *take_endpoints_down(void *arg)
{
    struct bench *b = arg;
    for (unsigned i = 0; i < b->o.agents; i++)
        if (b->agents[i].doomed)
            rdt_httpd_set(b->httpd, i, RDT_EP_DOWN, 0);
    atomic_store(&b->down_took_ms, rdt_now_ms() - b->crash_ms);
    return NULL;
}

/* The doomed agents crash at once: heartbeats stop now, endpoints close in a thread. */
static void crash(struct bench *b, int64_t now)
{
    b->crash_ms = now;
    b->crash_wall_ms = rdb_wall_ms();
    b->end_ms = now + (int64_t)b->o.duration_s * 1000;
    for (unsigned i = 0; i < b->o.agents; i++) {
        struct agent *a = &b->agents[i];
        if (!a->doomed)
            continue;
        a->crashed = true;
        for (unsigned k = 0; k < a->n_holds; k++) {
            struct rdb_hold *h = &a->holds[k];
            if (h->active && b->tasks[h->task].crash_attempt == 0) {
                b->tasks[h->task].crash_attempt = h->attempt;
                b->tasks[h->task].crash_agent = i;
                b->n_moved++;
            }
        }
    }
    b->downer_started = pthread_create(&b->downer, NULL, take_endpoints_down, b) == 0;
    fprintf(stderr, "loadgen: crashed %u agents holding %u tasks; measuring for %u s\n",
            b->n_doomed, b->n_moved, b->o.duration_s);
}

static void start_complete(struct bench *b, int64_t now)
{
    b->phase = P_COMPLETE;
    b->finish_ms = now + FINISH_MS;
    for (unsigned i = 0; i < b->o.agents; i++) {
        struct agent *a = &b->agents[i];
        for (unsigned k = 0; k < a->n_holds; k++) {
            struct rdb_hold *h = &a->holds[k];
            if (!h->active)
                continue;
            h->completing = true;
            h->due = now;
            if (a->crashed && !h->in_flight)
                start_write(b, a, h, true); /* zombies first */
        }
    }
}

static bool all_completed(struct bench *b)
{
    for (unsigned i = 0; i < b->n_tasks; i++)
        if (b->tasks[i].n_done == 0)
            return false;
    for (unsigned i = 0; i < b->o.agents; i++)
        for (unsigned k = 0; k < b->agents[i].n_holds; k++)
            if (b->agents[i].holds[k].in_flight)
                return false;
    return true;
}

/* The verification reads: each task, its checkpoint, the crashed agents'
 * fault records, the engine's own detection latency. */
static void start_read(struct bench *b, unsigned job)
{
    struct req *r;
    if (job < 2 * b->n_tasks) {
        r = req_new(b, job % 2 ? R_GET_CKPT : R_GET_TASK);
        if (r == NULL)
            return;
        r->task = job / 2;
        snprintf(r->url, sizeof(r->url), "%s/api/v1/tasks/%s%s", b->o.url, b->tasks[r->task].id,
                 job % 2 ? "/checkpoint" : "");
    } else if (job < 2 * b->n_tasks + b->o.agents) {
        r = req_new(b, R_GET_FAULTS);
        if (r == NULL)
            return;
        r->agent = job - 2 * b->n_tasks;
        snprintf(r->url, sizeof(r->url), "%s/api/v1/faults/records?limit=100&node_id=%s", b->o.url,
                 b->agents[r->agent].id);
    } else {
        r = req_new(b, R_GET_STATUS);
        if (r == NULL)
            return;
        snprintf(r->url, sizeof(r->url), "%s/api/v1/faults/status", b->o.url);
    }
    b->setup_inflight += req_start(b, r, NULL);
}

static void start_submit(struct bench *b, unsigned i)
{
    struct req *r = req_new(b, R_SUBMIT);
    if (r == NULL)
        return;
    snprintf(r->url, sizeof(r->url), "%s/api/v1/tasks", b->o.url);
    snprintf(r->body, sizeof(r->body),
             "{\"task_id\":\"%s\",\"priority\":%u,\"critical\":false,\"payload\":{\"i\":%u}}",
             b->tasks[i].id, i % 10, i);
    b->setup_inflight += req_start(b, r, "POST");
}

/* Moves from phase to phase; -1 when the run cannot go on. */
static int advance(struct bench *b, int64_t now)
{
    unsigned total = b->phase == P_REGISTER ? b->o.agents
                     : b->phase == P_SUBMIT ? b->n_tasks
                                            : 2 * b->n_tasks + b->o.agents + 1;
    if (b->phase == P_REGISTER || b->phase == P_SUBMIT || b->phase == P_VERIFY) {
        while (b->setup_next < total && b->setup_inflight < SETUP_INFLIGHT) {
            unsigned i = b->setup_next++;
            if (b->phase == P_REGISTER) {
                start_register(b, i);
                b->setup_inflight++;
            } else if (b->phase == P_SUBMIT) {
                start_submit(b, i);
            } else {
                start_read(b, i);
            }
        }
    }
    if (b->phase != P_VERIFY && b->phase != P_DONE && b->start_ms + RUN_LIMIT_MS < now &&
        b->running_ms == 0) {
        unsigned running = 0;
        for (unsigned i = 0; i < b->n_tasks; i++)
            running += b->tasks[i].running;
        fprintf(stderr, "loadgen: after %d s, %u of %u tasks run\n", RUN_LIMIT_MS / 1000, running,
                b->n_tasks);
        return -1;
    }
    switch (b->phase) {
    case P_REGISTER:
    case P_SUBMIT:
        if (b->setup_done < total)
            return 0;
        if (b->setup_failed > 0) {
            fprintf(stderr, "loadgen: %u %s failed\n", b->setup_failed,
                    b->phase == P_REGISTER ? "registrations" : "submissions");
            return -1;
        }
        b->phase = b->phase == P_REGISTER ? P_SUBMIT : P_WARMUP;
        b->setup_next = b->setup_done = 0;
        return 0;
    case P_WARMUP:
        if (b->running_ms == 0) {
            for (unsigned i = 0; i < b->n_tasks; i++)
                if (!b->tasks[i].running)
                    return 0;
            b->running_ms = now;
            fprintf(stderr, "loadgen: all %u tasks run after %.1f s; the crash in %u s\n",
                    b->n_tasks, (double)(now - b->start_ms) / 1000, b->o.warmup_s);
        }
        if (now >= b->running_ms + (int64_t)b->o.warmup_s * 1000) {
            crash(b, now);
            b->phase = P_RECOVERY;
        }
        return 0;
    case P_RECOVERY:
        if (b->recovered_ms == 0) {
            bool all = true;
            for (unsigned i = 0; i < b->n_tasks && all; i++)
                all = b->tasks[i].crash_attempt == 0 || b->tasks[i].first_ckpt_ms != 0;
            if (all)
                b->recovered_ms = now;
        }
        if (now >= b->end_ms || rdb_interrupted)
            start_complete(b, now);
        return 0;
    case P_COMPLETE:
        if (all_completed(b) || now >= b->finish_ms) {
            b->phase = P_VERIFY;
            b->setup_next = b->setup_done = 0;
        }
        return 0;
    case P_VERIFY:
        if (b->setup_done == total)
            b->phase = P_DONE;
        return 0;
    default:
        return 0;
    }
}

/* ---- the report ------------------------------------------------------------------ */

struct window {
    int64_t from, to; /* ms from the crash */
    double own_rate, all_rate;
    struct rdb_lat rtt;
};

/* The healthy agents' acknowledged checkpoints in [from, to) from the crash. */
static struct window window_of(struct bench *b, int64_t from, int64_t to)
{
    struct window w = {.from = from, .to = to};
    int64_t *v = malloc((b->n_acks ? b->n_acks : 1) * sizeof(*v));
    size_t n = 0, own = 0;
    for (size_t i = 0; v && i < b->n_acks; i++) {
        int64_t t = b->acks[i].ms - b->crash_ms;
        if (t < from || t >= to)
            continue;
        own += !b->acks[i].moved;
        v[n++] = b->acks[i].rtt_ms;
    }
    double secs = (double)(to - from) / 1000;
    w.own_rate = (double)own / secs;
    w.all_rate = (double)n / secs;
    if (v)
        w.rtt = rdb_lat_of(v, n, n);
    free(v);
    return w;
}

struct outcome {
    unsigned completed, lost, never_moved, versions_lost, double_done, moved_twice, strays;
    unsigned data_bad, attempts_off;
};

static struct outcome outcome_of(struct bench *b)
{
    struct outcome o = {0};
    for (unsigned i = 0; i < b->n_tasks; i++) {
        const struct task *t = &b->tasks[i];
        bool completed = strcmp(t->state, "completed") == 0;
        bool reached = t->crash_attempt == 0 || t->assigned_ms != 0;
        o.completed += completed;
        o.never_moved += !reached;
        o.lost += !completed || !reached;
        o.versions_lost += t->ckpt_version < (long long)t->max_acked || t->lost_at_move;
        o.data_bad += t->ckpt_version > 0 && !t->ckpt_data_ok;
        o.double_done += t->n_done > 1;
        /* Every move bumps the attempt: once for a moved task, never for the others
         * (a move to an agent that crashed too, not yet detected, is a second one). */
        o.moved_twice += t->crash_attempt != 0 && t->final_attempt > t->crash_attempt + 1;
        o.strays += t->crash_attempt == 0 && t->final_attempt > 1;
        o.attempts_off += t->n_done == 1 && (long long)t->done_attempt[0] != t->final_attempt;
    }
    return o;
}

enum moved_field { M_ASSIGNED, M_FIRST_CKPT, M_AFTER_FAULT };

/* Over the moved tasks: crash to the assignment's arrival, to the first
 * checkpoint, or from the old agent's fault record to the arrival. */
static struct rdb_lat moved_lat(struct bench *b, enum moved_field f)
{
    int64_t *v = calloc(b->n_tasks + 1, sizeof(*v));
    size_t n = 0;
    for (unsigned i = 0; v && i < b->n_tasks; i++) {
        const struct task *t = &b->tasks[i];
        int64_t d = b->detected_ms[t->crash_agent];
        if (t->crash_attempt == 0 || (f == M_FIRST_CKPT ? !t->first_ckpt_ms : !t->assigned_ms))
            continue;
        if (f == M_AFTER_FAULT && d < 0)
            continue;
        v[n++] = f == M_ASSIGNED     ? t->assigned_ms
                 : f == M_FIRST_CKPT ? t->first_ckpt_ms
                                     : t->assigned_ms - d;
    }
    struct rdb_lat s = rdb_lat_of(v, n, b->n_moved);
    free(v);
    return s;
}

static void report_latencies(struct bench *b)
{
    char s[160];
    int64_t *v = calloc(b->o.agents, sizeof(*v));
    if (v == NULL)
        return;
    size_t n = 0;
    for (unsigned i = 0; i < b->o.agents; i++)
        if (b->agents[i].doomed && b->detected_ms[i] >= 0)
            v[n++] = b->detected_ms[i];
    printf("crash detected (the agent's fault record, detected_at): %s\n",
           fmt_lat(rdb_lat_of(v, n, b->n_doomed), s, sizeof(s)));
    /* The fault types the crashed agents got (normally all crash/critical). */
    printf("  their fault records:");
    unsigned shown = 0;
    for (unsigned i = 0; i < b->o.agents; i++) {
        const char *type = b->fault_type[i];
        bool first = b->agents[i].doomed && type[0];
        for (unsigned k = 0; first && k < i; k++)
            first = !(b->agents[k].doomed && strcmp(b->fault_type[k], type) == 0);
        if (!first)
            continue;
        unsigned c = 0;
        for (unsigned k = i; k < b->o.agents; k++)
            c += b->agents[k].doomed && strcmp(b->fault_type[k], type) == 0;
        printf("%s %u x %s", shown++ ? "," : "", c, type);
    }
    printf("%s\n", shown ? "" : " none");
    unsigned healthy_faults = 0;
    for (unsigned i = 0; i < b->o.agents; i++)
        healthy_faults += !b->agents[i].doomed && b->detected_ms[i] >= 0;
    printf("  healthy agents with a fault record after the crash: %u\n", healthy_faults);
    free(v);
    printf("assignment at the new agent (crash to the heartbeat answer carrying it): %s\n",
           fmt_lat(moved_lat(b, M_ASSIGNED), s, sizeof(s)));
    printf("first checkpoint at the new agent (crash to its acknowledgement): %s\n",
           fmt_lat(moved_lat(b, M_FIRST_CKPT), s, sizeof(s)));
    /* After detection: placement, its commit, and the wait for the new agent's
     * next heartbeat (assignments travel only in heartbeat answers). */
    printf("  of which from the old agent's fault record to the assignment's arrival: %s\n",
           fmt_lat(moved_lat(b, M_AFTER_FAULT), s, sizeof(s)));
    unsigned shown_twice = 0;
    for (unsigned i = 0; i < b->n_tasks; i++) {
        const struct task *t = &b->tasks[i];
        if (t->crash_attempt == 0 || t->final_attempt <= t->crash_attempt + 1)
            continue;
        if (shown_twice++ == 0)
            printf("  moved more than once (attempt at the crash -> at the end, crash to "
                   "assignment):");
        if (shown_twice <= 10)
            printf(" %u->%lld %lld ms;", t->crash_attempt, t->final_attempt,
                   (long long)t->assigned_ms);
    }
    if (shown_twice)
        printf("%s\n", shown_twice > 10 ? " ..." : "");
}

static void report(struct bench *b, struct outcome o, struct window base, struct window rec)
{
    printf("\n== task recovery benchmark ==\n");
    printf("%u agents of %u slots, %u tasks (%u per agent, priorities 0-9, not critical); "
           "heartbeats every %u +/- %u ms, checkpoints every %u ms; HTTP/2 (%s, %d connection%s) "
           "to %s\n",
           b->o.agents, b->o.slots, b->n_tasks, b->o.per_agent, b->o.interval_ms, b->o.jitter_ms,
           b->o.ckpt_ms, rdb_h2_prior_knowledge() ? "prior knowledge" : "h2c upgrade",
           rdb_h2_conns(N_CONNS), rdb_h2_conns(N_CONNS) > 1 ? "s" : "", b->o.url);
    printf("all tasks ran %.1f s after the start; warm-up %u s; %u agents (%u%%) crashed holding "
           "%u tasks (endpoints down within %lld ms); measured %u s after%s\n",
           (double)(b->running_ms - b->start_ms) / 1000, b->o.warmup_s, b->n_doomed,
           b->o.crash_share, b->n_moved, (long long)atomic_load(&b->down_took_ms), b->o.duration_s,
           rdb_interrupted ? " (interrupted early)" : "");
    report_latencies(b);
    if (b->engine_p50 >= 0)
        printf("engine's own detection latency (GET /api/v1/faults/status): p50 %lld ms, p99 %lld "
               "ms\n",
               b->engine_p50, b->engine_p99);
    if (b->recovered_ms)
        printf("every moved task checkpointed at its new agent %.2f s after the crash\n",
               (double)(b->recovered_ms - b->crash_ms) / 1000);
    else
        printf("NOT every moved task checkpointed at a new agent within the %u s\n",
               b->o.duration_s);
    char s1[160], s2[160];
    printf("healthy agents' checkpoints: %.0f/s on their own tasks in [%+.1f s, 0) before the "
           "crash; %.0f/s on the same tasks in [0, %+.1f s) during the recovery (%.1f%%), "
           "%.0f/s with the moved tasks\n",
           base.own_rate, (double)base.from / 1000, rec.own_rate, (double)rec.to / 1000,
           base.own_rate > 0 ? 100 * rec.own_rate / base.own_rate : 0.0, rec.all_rate);
    printf("  checkpoint round trip before: %s\n", fmt_lat(base.rtt, s1, sizeof(s1)));
    printf("  checkpoint round trip during: %s\n", fmt_lat(rec.rtt, s2, sizeof(s2)));
    const struct counts *c = &b->ckpt;
    printf("checkpoints (not zombies): %llu sent, %llu ok, %llu fenced, %llu stale_version, "
           "%llu other, %llu transport errors\n",
           (unsigned long long)c->sent, (unsigned long long)c->ok, (unsigned long long)c->fenced,
           (unsigned long long)c->stale, (unsigned long long)c->other,
           (unsigned long long)c->errors);
    c = &b->hb;
    printf("heartbeats: %llu sent, %llu ok, %llu answered 409 (healthy agents declared failed and "
           "registered again: %u), %llu other, %llu transport errors\n",
           (unsigned long long)c->sent, (unsigned long long)c->ok, (unsigned long long)c->fenced,
           b->reregistered, (unsigned long long)c->other, (unsigned long long)c->errors);
    c = &b->zombie;
    printf("zombie checkpoints after the crash: %llu sent; accepted %llu before their task's "
           "move reached its new agent, %llu after (must be 0), %llu above the version handed "
           "over; %llu fenced, %llu other, %llu transport errors\n",
           (unsigned long long)c->sent, (unsigned long long)b->zombie_ok_before,
           (unsigned long long)b->zombie_ok_after, (unsigned long long)b->zombie_ok_above,
           (unsigned long long)c->fenced, (unsigned long long)(c->other + c->stale + c->conflict),
           (unsigned long long)c->errors);
    c = &b->zombie_done;
    printf("zombie completions: %llu sent, %llu accepted, %llu fenced, %llu other\n",
           (unsigned long long)c->sent, (unsigned long long)c->ok, (unsigned long long)c->fenced,
           (unsigned long long)(c->other + c->conflict + c->errors + c->stale));
    c = &b->done;
    printf("completions: %llu sent, %llu ok, %llu fenced, %llu conflict, %llu other, %llu "
           "transport errors\n",
           (unsigned long long)c->sent, (unsigned long long)c->ok, (unsigned long long)c->fenced,
           (unsigned long long)c->conflict, (unsigned long long)(c->other + c->stale),
           (unsigned long long)c->errors);
    printf("tasks at the end: %u completed of %u; moved tasks that never reached a healthy agent "
           "%u; moved more than once (the engine's attempt) %u; tasks of healthy agents moved %u; "
           "completed attempt "
           "not the engine's %u; checkpoint data not matching its version %u\n",
           o.completed, b->n_tasks, o.never_moved, o.moved_twice, o.strays, o.attempts_off,
           o.data_bad);
    if (b->hold_overflow || b->unknown_tasks || b->read_errors)
        printf("oddities: %u assignments over %d held tasks, %u unknown tasks, %u failed reads\n",
               b->hold_overflow, MAX_HOLDS, b->unknown_tasks, b->read_errors);
}

/* PASS/FAIL per target; false when a correctness figure fails. */
static bool report_targets(struct bench *b, struct outcome o, struct window base, struct window rec)
{
    struct rdb_lat as = moved_lat(b, M_ASSIGNED), ck = moved_lat(b, M_FIRST_CKPT);
    double share = base.own_rate > 0 ? 100 * rec.own_rate / base.own_rate : 0;
    bool ok = as.n == as.of && as.p99 <= TARGET_ASSIGN;
    printf("\n%s assignment reaches the new agent within %d ms p99: %lld ms (%zu/%zu)\n",
           ok ? "PASS" : "FAIL", TARGET_ASSIGN, (long long)as.p99, as.n, as.of);
    ok = ck.n == ck.of && ck.p99 <= TARGET_CKPT;
    printf("%s first checkpoint there within %d ms p99: %lld ms (%zu/%zu)\n", ok ? "PASS" : "FAIL",
           TARGET_CKPT, (long long)ck.p99, ck.n, ck.of);
    printf("%s healthy agents' checkpoint throughput during the recovery at least %.0f%% of "
           "before: %.1f%%\n",
           share >= TARGET_SHARE ? "PASS" : "FAIL", TARGET_SHARE, share);
    printf("%s tasks lost: %u\n", o.lost == 0 ? "PASS" : "FAIL", o.lost);
    printf("%s acknowledged checkpoint versions lost: %u\n", o.versions_lost == 0 ? "PASS" : "FAIL",
           o.versions_lost);
    printf("%s tasks completed by two attempts: %u\n", o.double_done == 0 ? "PASS" : "FAIL",
           o.double_done);
    printf("%s zombie writes accepted after the move reached the new agent: %llu\n",
           b->zombie_ok_after == 0 ? "PASS" : "FAIL", (unsigned long long)b->zombie_ok_after);
    return o.lost == 0 && o.versions_lost == 0 && o.double_done == 0 && b->zombie_ok_after == 0;
}

/* ---- main ---------------------------------------------------------------------------- */

static int setup(struct bench *b)
{
    unsigned n = b->o.agents;
    b->n_tasks = n * b->o.per_agent;
    b->agents = calloc(n, sizeof(*b->agents));
    b->tasks = calloc(b->n_tasks, sizeof(*b->tasks));
    b->detected_ms = calloc(n, sizeof(*b->detected_ms));
    b->fault_type = calloc(n, sizeof(*b->fault_type));
    b->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    b->multi = rdb_h2_multi(N_CONNS);
    if (!b->agents || !b->tasks || !b->detected_ms || !b->fault_type || !b->hdrs || !b->multi)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        struct agent *a = &b->agents[i];
        snprintf(a->id, sizeof(a->id), "agent-%05u", i + 1);
        /* The crashed share, spread evenly over the fleet. */
        a->doomed = (i + 1) * b->o.crash_share / 100 != i * b->o.crash_share / 100;
        b->n_doomed += a->doomed;
        b->detected_ms[i] = -1;
    }
    for (unsigned i = 0; i < b->n_tasks; i++)
        rdb_task_id(i, b->tasks[i].id, sizeof(b->tasks[i].id));
    b->engine_p50 = b->engine_p99 = -1;
    b->httpd = rdt_httpd_start(n);
    return b->httpd ? 0 : -1;
}

static int run(struct bench *b)
{
    if (setup(b) != 0) {
        fprintf(stderr, "loadgen: cannot set up %u agents and their endpoints\n", b->o.agents);
        return 1;
    }
    /* Before any request with a body (see rdb_h2_prior_knowledge). */
    if (rdb_h2_open(b->multi, b->o.url, rdb_h2_conns(N_CONNS)) == 0) {
        fprintf(stderr, "loadgen: cannot reach %s\n", b->o.url);
        return 1;
    }
    b->start_ms = rdt_now_ms();
    while (b->phase != P_DONE) {
        if (rdb_interrupted && b->phase < P_RECOVERY) {
            fprintf(stderr, "loadgen: interrupted before the crash\n");
            return 1;
        }
        int running;
        curl_multi_perform(b->multi, &running);
        drain(b);
        int64_t now = rdt_now_ms();
        if (advance(b, now) != 0)
            return 1;
        int64_t wait = send_due(b, now) - rdt_now_ms();
        curl_multi_poll(b->multi, NULL, 0, wait > 0 ? (int)(wait < 100 ? wait : 100) : 0, NULL);
    }
    if (b->downer_started)
        pthread_join(b->downer, NULL);
    int64_t base_ms = (int64_t)b->o.warmup_s * 1000;
    base_ms = base_ms < MAX_BASE_MS ? base_ms : MAX_BASE_MS;
    int64_t rec_to = b->recovered_ms ? b->recovered_ms - b->crash_ms : b->end_ms - b->crash_ms;
    rec_to = rec_to < MIN_WINDOW_MS ? MIN_WINDOW_MS : rec_to;
    struct window base = window_of(b, -base_ms, 0), rec = window_of(b, 0, rec_to);
    struct outcome o = outcome_of(b);
    report(b, o, base, rec);
    bool ok = report_targets(b, o, base, rec);
    rdb_print_self_cpu();
    return ok ? 0 : 3;
}

int main(int argc, char **argv)
{
    static struct bench b;
    if (parse_opts(argc, argv, &b.o) != 0)
        return 2;
    b.rng = rdb_seed(b.o.seed);
    if (rdb_init() != 0)
        return 1;
    int rc = run(&b);
    req_free_all(&b);
    if (b.multi)
        curl_multi_cleanup(b.multi);
    curl_slist_free_all(b.hdrs);
    rdt_httpd_stop(b.httpd);
    free(b.acks);
    free(b.agents);
    free(b.tasks);
    free(b.detected_ms);
    free(b.fault_type);
    rdb_end();
    return rc;
}
