/*
 * The live event stream, GET /api/v1/events (docs/events.md), against real
 * daemons: a scripted incident seen in order; resuming with Last-Event-ID
 * and ?since= (nothing missed, nothing repeated); a resync when the ring no
 * longer holds what follows the id; followers stream the same log-derived
 * events with the same ids; filters; HTTP/2; a consumer that falls behind
 * is dropped, one that reads nothing is cut off and the engine's memory
 * stays put; the caps per principal and in total; roles.
 */
#include "cmocka_all.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "http/auth.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"
#include "rdt_sse.h"

#define TASK "0e0e0e0e-1f1f-4a2a-8b3b-4c4c4c4c4c4c"

static const char yaml_1x[] = "fault_tolerance:\n"
                              "  detection:\n"
                              "    heartbeat_interval: 100ms\n"
                              "    failure_threshold: 3\n"
                              "    recovery_threshold: 2\n"
                              "  partition:\n"
                              "    min_nodes: 100\n"
                              "plugins:\n"
                              "  instances:\n"
                              "    - {name: heartbeat, required: true}\n";

static char yaml[512];
static int hb_ms;
static struct rdt_proc proc; /* the incident's daemon, kept for the tests after it */

/* ---- helpers ---------------------------------------------------------------- */

/* Every event a stream gave, in order. */
struct seen {
    struct rdt_sse_event *v;
    size_t n, cap;
};

static void seen_add(struct seen *s, struct rdt_sse_event *e)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = *e;
    memset(e, 0, sizeof(*e));
}

static void seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->n; i++)
        rdt_sse_event_free(&s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* Moves every event the stream has now (without waiting) into `s`. */
static void drain(struct rdt_sse *st, struct seen *s)
{
    struct rdt_sse_event e;
    while (rdt_sse_read(st, 0) > 0)
        ;
    while (rdt_sse_take(st, &e) == 1)
        seen_add(s, &e);
}

static const char *field(const struct rdt_sse_event *e, const char *name)
{
    return json_string_value(json_object_get(e->json, name));
}

/* "INDEX.ORD" as a number pair compared; -1, 0, 1. */
static int id_cmp(const char *a, const char *b)
{
    unsigned long long ai = 0, bi = 0;
    unsigned ao = 0, bo = 0;
    sscanf(a, "%llu.%u", &ai, &ao);
    sscanf(b, "%llu.%u", &bi, &bo);
    if (ai != bi)
        return ai < bi ? -1 : 1;
    return ao < bo ? -1 : ao > bo ? 1 : 0;
}

/* Ids only grow along a stream: nothing repeated, nothing out of order. */
static void assert_ids_grow(const struct seen *s)
{
    const char *prev = NULL;
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].id[0] == '\0')
            continue;
        if (prev != NULL && id_cmp(prev, s->v[i].id) >= 0)
            fail_msg("event %zu: id %s after %s", i, s->v[i].id, prev);
        prev = s->v[i].id;
    }
}

/* The first event from `from` on of `kind` whose `key` is `value` (NULL:
 * any); its position, or -1. */
static long find(const struct seen *s, size_t from, const char *kind, const char *key,
                 const char *value)
{
    for (size_t i = from; i < s->n; i++) {
        if (strcmp(s->v[i].kind, kind) != 0)
            continue;
        if (key != NULL && (field(&s->v[i], key) == NULL || strcmp(field(&s->v[i], key), value)))
            continue;
        return (long)i;
    }
    return -1;
}

static long long reg(struct rdt_proc *p, const char *node)
{
    long long epoch = 0;
    assert_int_equal(rdt_register(p, node, 2, &epoch), 0);
    return epoch;
}

static long beat(const char *node, long long epoch)
{
    struct rdt_resp r = {0};
    rdt_heartbeat(&proc, RDT_H1, node, epoch, 0, &r);
    long st = r.status;
    rdt_resp_free(&r);
    return st;
}

static long post(struct rdt_proc *p, const char *path, const char *body)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_post(p, RDT_H1, path, body, &r), 0);
    long st = r.status;
    rdt_resp_free(&r);
    return st;
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return v;
}

static int setup(void **state)
{
    (void)state;
    rdt_scale_durations(yaml_1x, yaml, sizeof(yaml));
    hb_ms = rdt_ms(100);
    if (rdt_proc_start(&proc, yaml) != 0)
        return -1;
    return rdt_wait_ready(&proc, 15000);
}

static int teardown(void **state)
{
    (void)state;
    rdt_proc_cleanup(&proc);
    return 0;
}

/* ---- the incident ------------------------------------------------------------ */

static struct seen incident; /* what the first stream saw, for the resume tests */

/*
 * Two agents; a task lands on one of them, which then stops heartbeating:
 * it turns suspect, its fault opens and it fails, a recovery run moves the
 * task to the other agent and closes; the agent comes back through
 * probation and its fault resolves. One stream sees every step, in order.
 */
static void test_incident_in_order(void **state)
{
    (void)state;
    struct rdt_sse st;
    assert_int_equal(rdt_sse_open(&st, proc.port, "/api/v1/events", NULL, 0), 0);
    /* The stream is open (its first comment came) before anything happens. */
    for (int64_t until = rdt_now_ms() + 5000; st.status == 0;) {
        assert_true(rdt_now_ms() < until);
        rdt_sse_read(&st, 100);
    }
    assert_int_equal(st.status, 200);
    assert_string_equal(st.content_type, "text/event-stream");

    long long e1 = reg(&proc, "agent-1"), e2 = reg(&proc, "agent-2");
    assert_int_equal(post(&proc, "/api/v1/tasks", "{\"task_id\":\"" TASK "\"}"), 201);
    /* Both beat until the task is placed; the one holding it then stops. */
    const char *victim = NULL, *other = NULL;
    long long ev = 0, eo = 0;
    for (int64_t until = rdt_now_ms() + rdt_ms(5000); victim == NULL;) {
        beat("agent-1", e1);
        beat("agent-2", e2);
        drain(&st, &incident);
        long i = find(&incident, 0, "task", "state", "assigned");
        if (i >= 0) {
            victim =
                strcmp(field(&incident.v[i], "node_id"), "agent-1") == 0 ? "agent-1" : "agent-2";
            other = strcmp(victim, "agent-1") == 0 ? "agent-2" : "agent-1";
            ev = strcmp(victim, "agent-1") == 0 ? e1 : e2;
            eo = strcmp(victim, "agent-1") == 0 ? e2 : e1;
        }
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(hb_ms / 2);
    }
    (void)ev;
    /* The other keeps beating until the run closed. */
    for (int64_t until = rdt_now_ms() + rdt_ms(10000);
         find(&incident, 0, "recovery_closed", NULL, NULL) < 0;) {
        assert_int_equal(beat(other, eo), 200);
        drain(&st, &incident);
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(hb_ms);
    }
    /* The victim comes back: registers again (probation), beats until alive. */
    long long ev2 = reg(&proc, victim);
    for (int64_t until = rdt_now_ms() + rdt_ms(10000);
         find(&incident, 0, "fault_resolved", NULL, NULL) < 0;) {
        beat(victim, ev2);
        beat(other, eo);
        drain(&st, &incident);
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(hb_ms / 2);
    }
    drain(&st, &incident);
    rdt_sse_close(&st);

    /* Every step, in this order (suspect may come between placement and the
     * fault, or be skipped when the detector is sure at once). */
    struct {
        const char *kind, *key, *value;
    } steps[] = {
        {"node", "node_id", "agent-1"},
        {"node", "node_id", "agent-2"},
        {"task", "state", "pending"},
        {"task", "state", "assigned"},
        {"fault_opened", "node_id", victim},
        {"node", "state", "failed"},
        {"recovery_opened", "node_id", victim},
        {"task", "state", "recovering"},
        {"recovery_closed", "status", "succeeded"},
        {"node", "state", "probation"},
        /* one entry: the fault resolves, then the node is alive */
        {"fault_resolved", "node_id", victim},
        {"node", "state", "alive"},
    };
    size_t at = 0;
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        long i = find(&incident, at, steps[k].kind, steps[k].key, steps[k].value);
        if (i < 0) {
            for (size_t x = 0; x < incident.n; x++)
                fprintf(stderr, "  %s %s %s\n", incident.v[x].id, incident.v[x].kind,
                        incident.v[x].data ? incident.v[x].data : "");
        }
        if (i < 0)
            fail_msg("step %zu (%s %s=%s) not seen after event %zu", k, steps[k].kind, steps[k].key,
                     steps[k].value, at);
        at = (size_t)i + 1;
    }
    assert_ids_grow(&incident);
    /* The fault, its node and the move say what they are about. */
    long f = find(&incident, 0, "fault_opened", NULL, NULL);
    assert_string_equal(field(&incident.v[f], "node"), victim);
    assert_string_equal(field(&incident.v[f], "fault_type"), "crash");
    assert_non_null(field(&incident.v[f], "fault_id"));
    long m = find(&incident, 0, "task", "state", "recovering");
    assert_string_equal(field(&incident.v[m], "task_id"), TASK);
    assert_string_equal(field(&incident.v[m], "old_node_id"), victim);
    assert_string_equal(field(&incident.v[m], "node_id"), other);
    long rc = find(&incident, 0, "recovery_closed", NULL, NULL);
    assert_string_equal(field(&incident.v[m], "recovery_id"),
                        field(&incident.v[rc], "recovery_id"));
    assert_int_equal(json_integer_value(json_object_get(incident.v[rc].json, "recovered")), 1);
    /* Each event's data: its id, kind, index and time. */
    for (size_t i = 0; i < incident.n; i++) {
        const struct rdt_sse_event *e = &incident.v[i];
        assert_non_null(e->json);
        assert_string_equal(field(e, "id"), e->id);
        assert_string_equal(field(e, "kind"), e->kind);
        assert_true(rdt_is_rfc3339_utc(field(e, "time")));
        unsigned long long idx = 0;
        sscanf(e->id, "%llu.", &idx);
        assert_int_equal(json_integer_value(json_object_get(e->json, "index")), idx);
    }
    /* The leader raised the fault's alert, and resolved it. */
    assert_true(find(&incident, 0, "alert", "fingerprint", field(&incident.v[f], "fault_id")) >= 0);
    fprintf(stderr, "incident: %zu events, %s to %s\n", incident.n, incident.v[0].id,
            incident.v[incident.n - 1].id);
}

/* Reads a stream until it gave the event with id `last` (or times out). */
static void read_until(struct rdt_sse *st, struct seen *out, const char *last)
{
    for (int64_t until = rdt_now_ms() + 5000;;) {
        drain(st, out);
        if (out->n > 0 && out->v[out->n - 1].id[0] && id_cmp(out->v[out->n - 1].id, last) >= 0)
            return;
        assert_true(rdt_now_ms() < until);
        rdt_sse_read(st, 100);
    }
}

/* Resuming from the middle of the incident gives exactly what followed:
 * the same events, the same bytes, nothing missed, nothing repeated. */
static void test_resume_misses_nothing(void **state)
{
    (void)state;
    assert_true(incident.n > 10);
    const char *last = incident.v[incident.n - 1].id;
    for (int how = 0; how < 2; how++) {
        size_t k = incident.n / (how ? 3 : 2);
        struct rdt_sse st;
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/events%s%s", how ? "?since=" : "",
                 how ? incident.v[k].id : "");
        assert_int_equal(rdt_sse_open(&st, proc.port, path, how ? NULL : incident.v[k].id, 0), 0);
        struct seen again = {0};
        read_until(&st, &again, last);
        rdt_sse_close(&st);
        /* Local events (alerts) of later times may follow; compare the run. */
        assert_true(again.n >= incident.n - k - 1);
        for (size_t i = 0; i < incident.n - k - 1; i++) {
            assert_string_equal(again.v[i].id, incident.v[k + 1 + i].id);
            assert_string_equal(again.v[i].kind, incident.v[k + 1 + i].kind);
            assert_string_equal(again.v[i].data, incident.v[k + 1 + i].data);
        }
        seen_free(&again);
    }
    /* From the start (?since=0): everything this replica applied, in order. */
    struct rdt_sse st;
    assert_int_equal(rdt_sse_open(&st, proc.port, "/api/v1/events?since=0", NULL, 0), 0);
    struct seen all = {0};
    read_until(&st, &all, last);
    rdt_sse_close(&st);
    assert_string_equal(all.v[0].kind, "leader");
    assert_true(find(&all, 0, "node", "node_id", "agent-1") >= 0);
    assert_ids_grow(&all);
    seen_free(&all);
}

/* ?kind= and ?node= pick events; bad filters and ids are 400 naming them. */
static void test_filters(void **state)
{
    (void)state;
    const char *last = incident.v[incident.n - 1].id;
    struct rdt_sse st;
    struct seen s = {0};
    assert_int_equal(rdt_sse_open(&st, proc.port,
                                  "/api/v1/events?since=0&kind=fault_opened,fault_resolved", NULL,
                                  0),
                     0);
    for (int64_t until = rdt_now_ms() + 5000; find(&s, 0, "fault_resolved", NULL, NULL) < 0;) {
        assert_true(rdt_now_ms() < until);
        rdt_sse_read(&st, 100);
        drain(&st, &s);
    }
    rdt_sse_close(&st);
    assert_true(s.n >= 2);
    for (size_t i = 0; i < s.n; i++)
        assert_true(strcmp(s.v[i].kind, "fault_opened") == 0 ||
                    strcmp(s.v[i].kind, "fault_resolved") == 0);
    seen_free(&s);
    assert_int_equal(rdt_sse_open(&st, proc.port, "/api/v1/events?since=0&node=agent-2", NULL, 0),
                     0);
    read_until(&st, &s, "0.0");
    for (int64_t until = rdt_now_ms() + 1000; rdt_now_ms() < until;) {
        rdt_sse_read(&st, 50);
        drain(&st, &s);
    }
    rdt_sse_close(&st);
    assert_true(s.n >= 2);
    for (size_t i = 0; i < s.n; i++)
        assert_string_equal(field(&s.v[i], "node"), "agent-2");
    seen_free(&s);
    (void)last;

    /* HEAD: the headers, no stream. */
    struct rdt_resp r = {0};
    char url[128];
    snprintf(url, sizeof(url), "%s/api/v1/events", proc.base_url);
    for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
        assert_int_equal(rdt_http((enum rdt_proto)proto, "HEAD", url, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.content_type, "text/event-stream");
        rdt_resp_free(&r);
    }
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/events?kind=node,nodes", &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(rdt_err_code(&r), "bad_request");
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.field")), "kind");
    rdt_resp_free(&r);
    assert_int_equal(rdt_get(&proc, RDT_H1, "/api/v1/events?since=12.x", &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(json_string_value(rdt_json_path(r.json, "error.details.field")), "since");
    rdt_resp_free(&r);
}

struct h2_read {
    char buf[65536];
    size_t len;
};

static size_t h2_write(char *p, size_t size, size_t n, void *data)
{
    struct h2_read *h = data;
    size_t len = size * n;
    size_t take = len < sizeof(h->buf) - 1 - h->len ? len : sizeof(h->buf) - 1 - h->len;
    memcpy(h->buf + h->len, p, take);
    h->len += take;
    h->buf[h->len] = '\0';
    /* Enough once the first agent's registration came: stop the transfer. */
    return strstr(h->buf, "\"node_id\":\"agent-1\"") != NULL ? 0 : len;
}

/* The same stream over HTTP/2 (h2c with prior knowledge). */
static void test_http2(void **state)
{
    (void)state;
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof(url), "%s/api/v1/events?since=0&kind=node", proc.base_url);
    struct h2_read h = {.len = 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h2_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode rc = curl_easy_perform(c);
    assert_int_equal(rc, CURLE_WRITE_ERROR); /* stopped by us, not a timeout */
    long status = 0, version = 0;
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_HTTP_VERSION, &version);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    assert_int_equal(status, 200);
    assert_int_equal(version, CURL_HTTP_VERSION_2_0);
    assert_string_equal(ct, "text/event-stream");
    assert_non_null(strstr(h.buf, "event: node\ndata: {"));
    assert_non_null(strstr(h.buf, "\nid: "));
    curl_easy_cleanup(c);
}

/* ---- resync: resuming from an id the ring no longer holds --------------------- */

static void test_resync(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, "server:\n  events:\n    ring_size: 16\n"), 0);
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    char node[32];
    for (int i = 0; i < 24; i++) { /* 24 events: the first ones leave the ring */
        snprintf(node, sizeof(node), "n-%02d", i);
        reg(&p, node);
    }
    assert_int_equal(rdt_wait_metric(&p, "recoveryd_events_ring_events", 16, 5000), 16);
    /* From the start (?since=0), or from the first registration's index:
     * the ring no longer holds what follows, so resync first. */
    struct rdt_sse st;
    struct rdt_sse_event e;
    assert_int_equal(rdt_sse_open(&st, p.port, "/api/v1/events?since=0", NULL, 0), 0);
    assert_int_equal(rdt_sse_next(&st, &e, 5000), 1);
    assert_string_equal(e.kind, "resync");
    rdt_sse_event_free(&e);
    rdt_sse_close(&st);
    assert_int_equal(rdt_sse_open(&st, p.port, "/api/v1/events", "1.0", 0), 0);
    assert_int_equal(rdt_sse_next(&st, &e, 5000), 1);
    assert_string_equal(e.kind, "resync");
    assert_string_equal(e.id, "");
    assert_non_null(e.json);
    rdt_sse_event_free(&e);
    /* ... then it goes on live: the next registration, nothing older. */
    reg(&p, "n-live");
    assert_int_equal(rdt_sse_next(&st, &e, 5000), 1);
    assert_string_equal(e.kind, "node");
    assert_string_equal(field(&e, "node_id"), "n-live");
    char live_id[32];
    snprintf(live_id, sizeof(live_id), "%s", e.id);
    rdt_sse_event_free(&e);
    rdt_sse_close(&st);
    /* From an id the ring still follows: no resync, the next event. */
    reg(&p, "n-after");
    assert_int_equal(rdt_sse_open(&st, p.port, "/api/v1/events", live_id, 0), 0);
    assert_int_equal(rdt_sse_next(&st, &e, 5000), 1);
    assert_string_equal(e.kind, "node");
    assert_string_equal(field(&e, "node_id"), "n-after");
    rdt_sse_event_free(&e);
    rdt_sse_close(&st);
    rdt_proc_cleanup(&p);
}

/* ---- followers ----------------------------------------------------------------- */

static bool log_derived(const char *kind)
{
    return strcmp(kind, "leader") != 0 && strcmp(kind, "alert") != 0 &&
           strcmp(kind, "policy_reload") != 0;
}

/* Every replica streams the same log-derived events, with the same ids and
 * the same data, from the log it applied. */
static void test_followers_same_events(void **state)
{
    (void)state;
    struct rdt_cluster c = {0};
    assert_int_equal(rdt_cluster_start(&c, 3, NULL, NULL), 0);
    int first = 0;
    struct rdt_resp r = {0};
    for (int i = 0; i < 3; i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"node_id\":\"f-%d\",\"capacity\":{\"slots\":1}}", i);
        assert_int_equal(rdt_cluster_request(&c, &first, "POST", "/api/v1/nodes", body, 10000, &r),
                         0);
        assert_int_equal(r.status, 201);
        rdt_resp_free(&r);
    }
    assert_int_equal(rdt_cluster_request(&c, &first, "POST", "/api/v1/nodes/f-1/drain",
                                         "{\"reason\":\"maintenance\"}", 10000, &r),
                     0);
    assert_int_equal(r.status, 200);
    rdt_resp_free(&r);
    struct seen s[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        struct rdt_sse st;
        assert_int_equal(rdt_sse_open(&st, c.procs[i].port, "/api/v1/events?since=0", NULL, 0), 0);
        for (int64_t until = rdt_now_ms() + 10000;
             find(&s[i], 0, "node", "state", "draining") < 0;) {
            assert_true(rdt_now_ms() < until);
            rdt_sse_read(&st, 100);
            drain(&st, &s[i]);
        }
        rdt_sse_close(&st);
        assert_ids_grow(&s[i]);
    }
    /* The log-derived events, replica by replica, up to the drain. */
    struct seen l[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        long end = find(&s[i], 0, "node", "state", "draining");
        for (long k = 0; k <= end; k++)
            if (log_derived(s[i].v[k].kind))
                seen_add(&l[i], &s[i].v[k]);
    }
    assert_int_equal(l[0].n, 4);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(l[i].n, l[0].n);
        for (size_t k = 0; k < l[0].n; k++) {
            assert_string_equal(l[i].v[k].id, l[0].v[k].id);
            assert_string_equal(l[i].v[k].data, l[0].v[k].data);
        }
    }
    /* Each replica tells who leads. */
    for (int i = 0; i < 3; i++)
        assert_true(find(&s[i], 0, "leader", NULL, NULL) >= 0);
    for (int i = 0; i < 3; i++) {
        seen_free(&l[i]);
        seen_free(&s[i]);
    }
    rdt_cluster_cleanup(&c);
}

/* ---- slow and stalled consumers -------------------------------------------------- */

/* Many big events, fast: `rounds` of isolating then readmitting `n` agents
 * with 500-character reasons, each round's requests in parallel. */
static void burst(struct rdt_proc *p, int n, int rounds)
{
    char reason[501];
    memset(reason, 'r', 500);
    reason[500] = '\0';
    char body[600];
    snprintf(body, sizeof(body), "{\"reason\":\"%s\"}", reason);
    for (int i = 0; i < n; i++) {
        char node[220];
        snprintf(node, sizeof(node), "burst-%03d-%0200d", i, 0);
        reg(p, node);
    }
    CURLM *m = curl_multi_init();
    struct rdt_resp *resp = calloc((size_t)n, sizeof(*resp));
    CURL **easy = calloc((size_t)n, sizeof(*easy));
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i++) {
            char url[400];
            snprintf(url, sizeof(url), "%s/api/v1/nodes/burst-%03d-%0200d/%s", p->base_url, i, 0,
                     r % 2 ? "readmit" : "isolate");
            easy[i] = rdt_easy_new(RDT_H1, "POST", url, body, strlen(body), 10000, &resp[i]);
            curl_multi_add_handle(m, easy[i]);
        }
        int running = 1;
        while (running) {
            curl_multi_perform(m, &running);
            if (running)
                curl_multi_poll(m, NULL, 0, 100, NULL);
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL)
            if (msg->msg == CURLMSG_DONE)
                for (int i = 0; i < n; i++)
                    if (easy[i] == msg->easy_handle)
                        rdt_easy_finish(easy[i], msg->data.result, &resp[i]);
        for (int i = 0; i < n; i++) {
            if (resp[i].status != 200)
                fail_msg("burst round %d agent %d: %ld %s %s", r, i, resp[i].status,
                         resp[i].curl_error, resp[i].body ? resp[i].body : "");
            curl_multi_remove_handle(m, easy[i]);
            curl_easy_cleanup(easy[i]);
            rdt_resp_free(&resp[i]);
        }
    }
    free(easy);
    free(resp);
    curl_multi_cleanup(m);
}

/* A consumer that reads too slowly for the ring is dropped with a final
 * `dropped` event, and can resume (here: is told to resync). */
static void test_slow_consumer_dropped(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    assert_int_equal(
        rdt_proc_start(&p, "server:\n  events:\n    ring_size: 256\n    stall_timeout: 1h\n"), 0);
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    struct rdt_sse st;
    assert_int_equal(rdt_sse_open(&st, p.port, "/api/v1/events", NULL, 4096), 0);
    for (int64_t until = rdt_now_ms() + 5000; st.status == 0;) {
        assert_true(rdt_now_ms() < until);
        rdt_sse_read(&st, 100);
    }
    /* It stops reading while thousands of events pass (6 MiB: more than
     * the sockets hold, so h2o stops asking for more). */
    burst(&p, 40, 150);
    /* It reads again: what was on the way, then the end. */
    struct seen s = {0};
    struct rdt_sse_event e;
    int rv;
    while ((rv = rdt_sse_next(&st, &e, 10000)) == 1)
        seen_add(&s, &e);
    assert_int_equal(rv, -1); /* the stream ended (not a timeout) */
    assert_true(s.n > 1);
    struct rdt_sse_event *d = &s.v[s.n - 1];
    assert_string_equal(d->kind, "dropped");
    assert_string_equal(field(d, "reason"), "behind");
    assert_non_null(strstr(field(d, "message"), "Last-Event-ID"));
    assert_ids_grow(&s);
    /* Its last id is long gone from the ring: resuming says resync. */
    const char *last = NULL;
    for (size_t i = 0; i < s.n; i++)
        if (s.v[i].id[0])
            last = s.v[i].id;
    rdt_sse_close(&st);
    assert_non_null(last);
    assert_int_equal(rdt_sse_open(&st, p.port, "/api/v1/events", last, 0), 0);
    assert_int_equal(rdt_sse_next(&st, &e, 5000), 1);
    assert_string_equal(e.kind, "resync");
    rdt_sse_event_free(&e);
    rdt_sse_close(&st);
    seen_free(&s);
    assert_true(rdt_metric(&p, "recoveryd_events_streams_ended_total{reason=\"behind\"}") >= 1);
    rdt_proc_cleanup(&p);
}

/* A consumer that reads nothing at all is cut off after stall_timeout, and
 * the engine's memory does not grow with what it did not read. */
static void test_stalled_consumer_cut(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    assert_int_equal(
        rdt_proc_start(&p, "server:\n  events:\n    ring_size: 256\n    stall_timeout: 500ms\n"),
        0);
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    /* What the same burst costs without a stream (the log, audit records,
     * the allocator's arenas): the stalled stream must add next to nothing. */
    burst(&p, 40, 20);
    long r0 = rss_kib(p.pid);
    burst(&p, 40, 150);
    long before = rss_kib(p.pid);
    struct rdt_sse st;
    assert_int_equal(rdt_sse_open(&st, p.port, "/api/v1/events", NULL, 4096), 0);
    for (int64_t until = rdt_now_ms() + 5000; st.status == 0;) {
        assert_true(rdt_now_ms() < until);
        rdt_sse_read(&st, 100);
    }
    int64_t t0 = rdt_now_ms();
    burst(&p, 40, 150); /* 6000 events of 1 KiB this consumer never reads */
    fprintf(stderr, "burst: %lld ms; streams ended behind %lld stalled %lld\n",
            (long long)(rdt_now_ms() - t0),
            rdt_metric(&p, "recoveryd_events_streams_ended_total{reason=\"behind\"}"),
            rdt_metric(&p, "recoveryd_events_streams_ended_total{reason=\"stalled\"}"));
    assert_int_equal(
        rdt_wait_metric(&p, "recoveryd_events_streams_ended_total{reason=\"stalled\"}", 1, 10000),
        1);
    assert_int_equal(rdt_metric(&p, "recoveryd_events_streams"), 0);
    assert_true(rdt_metric(&p, "recoveryd_events_ring_events") <= 256);
    long after = rss_kib(p.pid);
    fprintf(stderr,
            "stalled consumer: RSS %ld KiB, %ld after a burst without a stream, %ld after the "
            "same burst with a stalled one\n",
            r0, before, after);
    assert_true(after - before < before - r0 + 3 * 1024);
    /* The client, reading again, finds its connection closed. */
    int rv;
    struct rdt_sse_event e;
    while ((rv = rdt_sse_next(&st, &e, 10000)) == 1)
        rdt_sse_event_free(&e);
    assert_int_equal(rv, -1);
    rdt_sse_close(&st);
    p.errors_expected = false;
    rdt_proc_cleanup(&p);
}

/* ---- caps and roles ------------------------------------------------------------ */

static char sec_r1[80], sec_r2[80], sec_agent[80];

static void test_caps_and_roles(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_prepare(&p), 0);
    char path[400], line[600];
    snprintf(path, sizeof(path), "%s/tokens", p.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    snprintf(sec_r1, sizeof(sec_r1), "rdt_%064d", 1);
    snprintf(sec_r2, sizeof(sec_r2), "rdt_%064d", 2);
    snprintf(sec_agent, sizeof(sec_agent), "rdt_%064d", 3);
    assert_int_equal(rd_token_line("r1", "reader", sec_r1, NULL, NULL, line, sizeof(line)), 0);
    fprintf(f, "%s\n", line);
    assert_int_equal(rd_token_line("r2", "operator", sec_r2, NULL, NULL, line, sizeof(line)), 0);
    fprintf(f, "%s\n", line);
    assert_int_equal(rd_token_line("a1", "agent", sec_agent, NULL, "x-*", line, sizeof(line)), 0);
    fprintf(f, "%s\n", line);
    fclose(f);
    char y[700];
    snprintf(y, sizeof(y),
             "security:\n  tokens_file: %s\nserver:\n  events:\n    max_streams: 3\n"
             "    max_streams_per_principal: 2\n    keepalive: 300ms\n",
             path);
    rdt_bearer = sec_r2;
    assert_int_equal(rdt_proc_start(&p, y), 0);
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    struct rdt_sse st[4];
    /* No token: 401; an agent: 403. */
    rdt_bearer = NULL;
    assert_int_equal(rdt_sse_open(&st[0], p.port, "/api/v1/events", NULL, 0), 0);
    while (rdt_sse_read(&st[0], 2000) > 0 && !st[0].eof && !st[0].headers_done)
        ;
    assert_int_equal(st[0].status, 401);
    rdt_sse_close(&st[0]);
    rdt_bearer = sec_agent;
    assert_int_equal(rdt_sse_open(&st[0], p.port, "/api/v1/events", NULL, 0), 0);
    while (rdt_sse_read(&st[0], 2000) > 0 && !st[0].headers_done)
        ;
    assert_int_equal(st[0].status, 403);
    rdt_sse_close(&st[0]);
    /* The reader: two streams, the third over its cap (429). */
    rdt_bearer = sec_r1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rdt_sse_open(&st[i], p.port, "/api/v1/events", NULL, 0), 0);
        while (rdt_sse_read(&st[i], 2000) > 0 && !st[i].headers_done)
            ;
    }
    assert_int_equal(st[0].status, 200);
    assert_int_equal(st[1].status, 200);
    assert_int_equal(st[2].status, 429);
    while (rdt_sse_read(&st[2], 500) > 0)
        ;
    json_t *j = json_loads(st[2].body, 0, NULL);
    assert_string_equal(json_string_value(rdt_json_path(j, "error.code")), "too_many_streams");
    assert_int_equal(json_integer_value(rdt_json_path(j, "error.details.limit")), 2);
    json_decref(j);
    rdt_sse_close(&st[2]);
    /* The operator: one, then the total cap (503). */
    rdt_bearer = sec_r2;
    for (int i = 2; i < 4; i++) {
        assert_int_equal(rdt_sse_open(&st[i], p.port, "/api/v1/events", NULL, 0), 0);
        while (rdt_sse_read(&st[i], 2000) > 0 && !st[i].headers_done)
            ;
    }
    assert_int_equal(st[2].status, 200);
    assert_int_equal(st[3].status, 503);
    rdt_sse_close(&st[3]);
    assert_int_equal(rdt_metric(&p, "recoveryd_events_streams"), 3);
    assert_int_equal(rdt_metric(&p, "recoveryd_events_streams_refused_total{limit=\"principal\"}"),
                     1);
    assert_int_equal(rdt_metric(&p, "recoveryd_events_streams_refused_total{limit=\"total\"}"), 1);
    /* A stream closed frees its place (HTTP/1.1: h2o sees it at the next
     * write, a keepalive at the latest). */
    rdt_sse_close(&st[0]);
    assert_int_equal(
        rdt_wait_metric(&p, "recoveryd_events_streams_ended_total{reason=\"client\"}", 1, 5000), 1);
    rdt_bearer = sec_r1;
    assert_int_equal(rdt_sse_open(&st[0], p.port, "/api/v1/events", NULL, 0), 0);
    while (rdt_sse_read(&st[0], 2000) > 0 && !st[0].headers_done)
        ;
    assert_int_equal(st[0].status, 200);
    for (int i = 0; i < 3; i++)
        rdt_sse_close(&st[i]);
    rdt_bearer = sec_r2;
    p.errors_expected = false;
    rdt_proc_cleanup(&p);
    rdt_bearer = NULL;
}

/* Idle streams get keepalive comments; at shutdown they end with one last
 * event. */
static void test_keepalive(void **state)
{
    (void)state;
    struct rdt_proc p = {0};
    assert_int_equal(rdt_proc_start(&p, "server:\n  events:\n    keepalive: 200ms\n"), 0);
    assert_int_equal(rdt_wait_ready(&p, 15000), 0);
    struct rdt_sse st;
    assert_int_equal(rdt_sse_open(&st, p.port, "/api/v1/events?kind=backup", NULL, 0), 0);
    struct rdt_sse_event e;
    for (int64_t until = rdt_now_ms() + 5000; st.keepalives < 3;) {
        assert_true(rdt_now_ms() < until);
        rdt_sse_read(&st, 100);
        while (rdt_sse_take(&st, &e) == 1)
            rdt_sse_event_free(&e);
    }
    assert_int_equal(rdt_proc_signal(&p, SIGTERM), 0);
    assert_int_equal(rdt_sse_next(&st, &e, 10000), 1);
    assert_string_equal(e.kind, "shutdown");
    assert_string_equal(field(&e, "reason"), "shutdown");
    rdt_sse_event_free(&e);
    assert_int_equal(rdt_sse_next(&st, &e, 10000), -1);
    rdt_sse_close(&st);
    assert_int_equal(rdt_proc_wait(&p, 20000, NULL), 0);
    rdt_proc_cleanup(&p);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest incident_tests[] = {
        cmocka_unit_test(test_incident_in_order),
        cmocka_unit_test(test_resume_misses_nothing),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_http2),
    };
    const struct CMUnitTest other_tests[] = {
        cmocka_unit_test(test_resync),
        cmocka_unit_test(test_followers_same_events),
        cmocka_unit_test(test_slow_consumer_dropped),
        cmocka_unit_test(test_stalled_consumer_cut),
        cmocka_unit_test(test_caps_and_roles),
        cmocka_unit_test(test_keepalive),
    };
    int failed = cmocka_run_group_tests_name("incident", incident_tests, setup, teardown);
    failed += cmocka_run_group_tests_name("streams", other_tests, NULL, NULL);
    seen_free(&incident);
    curl_global_cleanup();
    return failed;
}
