/*
 * The HTTP edge under attack (docs/security.md, "HTTP edge"): one daemon on
 * loopback, a well-behaved agent heartbeating from 127.0.0.1 while one
 * attacker (tests/attack/h2attack.py, from its own 127.0.0.x address) runs
 * each attack in turn. For every attack: the attacker is cut off (GOAWAY
 * ENHANCE_YOUR_CALM, or the connection closed), the daemon's resident memory
 * stays bounded, and every heartbeat succeeds with a p99 within a generous
 * bound (the measured figures are tests/bench/attacks/run.sh's, in
 * docs/benchmarks.md). Without python3 the test is skipped (77).
 */
#include "cmocka_all.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"

#ifndef RD_PYTHON3
#define RD_PYTHON3 ""
#endif

#define N_TASKS   1000
#define MAX_BEATS 20000

static struct rdt_proc proc;
static long long epoch;
static int next_source = 10;

static const char yaml[] = "server:\n"
                           "  edge:\n"
                           "    request_timeout: 2s\n"
                           "    idle_timeout: 3s\n"
                           "fault_tolerance:\n"
                           "  detection:\n"
                           "    heartbeat_interval: 2s\n";

/* ---- the well-behaved agent -------------------------------------------- */

struct agent {
    pthread_t thread;
    volatile bool stop;
    int beats, failures;
    double ms[MAX_BEATS];
    long rss_peak_kb;
    char why[256];
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int dial(const char *source)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in src = {.sin_family = AF_INET};
    inet_pton(AF_INET, source, &src.sin_addr);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(proc.port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = 10};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One heartbeat on a kept-alive HTTP/1.1 connection: its status (0: the
 * connection failed). Reads the whole answer (Content-Length). */
static int heartbeat(int fd)
{
    char body[96], req[512], buf[4096];
    int bl = snprintf(body, sizeof(body), "{\"epoch\":%lld,\"load\":{\"slots_used\":0}}", epoch);
    int n = snprintf(req, sizeof(req),
                     "POST /api/v1/nodes/agent-1/heartbeat HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     bl, body);
    if (write(fd, req, (size_t)n) != n)
        return 0;
    size_t got = 0;
    const char *end = NULL;
    while (end == NULL) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (r <= 0)
            return 0;
        got += (size_t)r;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    const char *cl = strcasestr(buf, "content-length:");
    size_t want = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
    while (got < want && got < sizeof(buf) - 1) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (r <= 0)
            return 0;
        got += (size_t)r;
    }
    return atoi(buf + 9);
}

/* Heartbeats at 100 a second until told to stop; samples the daemon's RSS. */
static void *agent_run(void *arg)
{
    struct agent *ag = arg;
    int fd = dial("127.0.0.1");
    while (!ag->stop && ag->beats < MAX_BEATS) {
        int64_t t0 = now_us();
        int st = fd >= 0 ? heartbeat(fd) : 0;
        double ms = (double)(now_us() - t0) / 1000.0;
        ag->ms[ag->beats++] = ms;
        if (st != 200) {
            if (ag->failures++ == 0)
                snprintf(ag->why, sizeof(ag->why), "heartbeat %d: status %d", ag->beats, st);
            if (fd >= 0)
                close(fd);
            fd = dial("127.0.0.1"); /* an agent reconnects */
        }
        long kb = rss_kb(proc.pid);
        if (kb > ag->rss_peak_kb)
            ag->rss_peak_kb = kb;
        int64_t pause = 10000 - (now_us() - t0);
        if (pause > 0)
            usleep((useconds_t)pause);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double p99(struct agent *ag)
{
    qsort(ag->ms, (size_t)ag->beats, sizeof(double), cmp_double);
    return ag->beats ? ag->ms[(ag->beats * 99) / 100] : 0;
}

/* ---- the attacker -------------------------------------------------------- */

static json_t *attack_on(const struct rdt_proc *target, const char *name, const char *const *extra)
{
    char script[512], port[16], source[32];
    snprintf(script, sizeof(script), "%s/tests/attack/h2attack.py", RD_SOURCE_DIR);
    snprintf(port, sizeof(port), "%u", target->port);
    snprintf(source, sizeof(source), "127.0.0.%d", next_source++);
    const char *argv[24] = {RD_PYTHON3, script, name, "--port", port, "--source", source};
    int n = 7;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 22; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int rc = rdt_run((char *const *)argv, 120000, &out, &err);
    if (rc != 0) {
        rdt_proc_print_log_tail(target, 40);
        fail_msg("%s: exit %d\n%s\n%s", name, rc, out ? out : "", err ? err : "");
    }
    json_error_t je;
    json_t *res = json_loads(out, 0, &je);
    if (res == NULL)
        fail_msg("%s: not JSON: %s", name, out);
    printf("attack %s\n", out);
    free(out);
    free(err);
    return res;
}

static json_t *attack(const char *name, const char *const *extra)
{
    return attack_on(&proc, name, extra);
}

/*
 * Runs one attack while the agent heartbeats: the agent never fails, its
 * p99 stays under the bound, the daemon's RSS grows by less than 64 MiB.
 * Returns the attacker's report.
 */
static json_t *under_attack(const char *name, const char *const *extra)
{
    /* The agent (re)registers first: the setup's thousand submissions, or
     * a slow previous case on a loaded machine, can outlast its lease, and
     * what is measured is whether it stays alive under the attack. */
    assert_int_equal(rdt_register(&proc, "agent-1", 1, &epoch), 0);
    long rss0 = rss_kb(proc.pid);
    struct agent *ag = calloc(1, sizeof(*ag));
    assert_non_null(ag);
    assert_int_equal(pthread_create(&ag->thread, NULL, agent_run, ag), 0);
    rdt_sleep_ms(300);
    /* The agent's window: the attack and at least 5 s from its start, so
     * the p99 is over some 500 heartbeats whether the cut came at once or not. */
    int64_t until = rdt_now_ms() + 5000;
    json_t *res = attack(name, extra);
    while (rdt_now_ms() < until)
        rdt_sleep_ms(50);
    ag->stop = true;
    pthread_join(ag->thread, NULL);
    double bound = 250.0 * rdt_time_factor();
    double q = p99(ag);
    printf("attack %s: %d heartbeats, %d failed, p99 %.2f ms, max %.2f ms, RSS %ld -> %ld kB\n",
           name, ag->beats, ag->failures, q, ag->beats ? ag->ms[ag->beats - 1] : 0, rss0,
           ag->rss_peak_kb);
    if (ag->failures != 0)
        fail_msg("%s: %d of %d heartbeats failed (%s)", name, ag->failures, ag->beats, ag->why);
    if (q > bound)
        fail_msg("%s: heartbeat p99 %.1f ms over %.0f ms", name, q, bound);
    if (ag->rss_peak_kb - rss0 > 64 * 1024)
        fail_msg("%s: RSS grew from %ld to %ld kB", name, rss0, ag->rss_peak_kb);
    assert_true(rdt_proc_alive(&proc));
    free(ag);
    return res;
}

static void assert_calmed(json_t *res, const char *reason)
{
    assert_true(json_is_true(json_object_get(res, "cut_off")));
    json_t *g = json_object_get(res, "goaway");
    if (!json_is_object(g))
        fail_msg("no GOAWAY seen: %s", json_dumps(res, 0));
    assert_string_equal(json_string_value(json_object_get(g, "code")), "ENHANCE_YOUR_CALM");
    assert_non_null(strstr(json_string_value(json_object_get(g, "debug")), reason));
}

static int open_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 2;
}

/* ---- the attacks ----------------------------------------------------------- */

static void test_rapid_reset(void **state)
{
    (void)state;
    const char *const extra[] = {
        "--path", "/api/v1/tasks?limit=1000", "--duration", "5", "--reconnect", NULL};
    json_t *res = under_attack("rapid_reset", extra);
    assert_calmed(res, "reset");
    /* Connecting again at once: refused while the address is blocked. */
    json_int_t again = json_integer_value(json_object_get(res, "reconnects"));
    assert_true(again > 0);
    assert_int_equal(json_integer_value(json_object_get(res, "refused")), again);
    /* Cut off early: far from the 121k streams (in 10 s) an open door took.
     * The count is the attacker's: what it wrote before it read the GOAWAY
     * and the close that follows it (250-500 ms later), so it grows with
     * the machine's speed (5,500 seen on a quiet one); the engine itself
     * answered at most the reset budget (the log line below). */
    assert_true(json_integer_value(json_object_get(res, "streams")) < 20000);
    json_decref(res);
    char *log = rdt_proc_log(&proc);
    assert_non_null(strstr(log, "event=client_cut peer=127.0.0."));
    assert_non_null(strstr(log, "reason=stream_resets"));
    free(log);
}

static void test_continuation_flood(void **state)
{
    (void)state;
    const char *const extra[] = {"--duration", "5", NULL};
    json_t *res = under_attack("continuation", extra);
    assert_calmed(res, "header list");
    json_decref(res);
}

static void test_huge_header_list(void **state)
{
    (void)state;
    json_t *res = under_attack("huge_headers", NULL);
    assert_calmed(res, "header list");
    json_decref(res);
}

static void test_hpack_amplification(void **state)
{
    (void)state;
    const char *const extra[] = {"--duration", "5", NULL};
    json_t *res = under_attack("hpack_amp", extra);
    assert_calmed(res, "header list");
    json_decref(res);
}

static void test_unfinished_bodies(void **state)
{
    (void)state;
    const char *const extra[] = {"--duration", "5", NULL};
    json_t *res = under_attack("unfinished_bodies", extra);
    assert_calmed(res, "request bodies");
    /* The default 4 MiB per connection, not 100 x 7.6 MiB. */
    assert_true(json_integer_value(json_object_get(res, "body_bytes_sent")) < 64 << 20);
    json_decref(res);
}

static void test_empty_data_flood(void **state)
{
    (void)state;
    const char *const extra[] = {"--duration", "5", NULL};
    json_t *res = under_attack("empty_data", extra);
    assert_calmed(res, "frames without request data");
    json_decref(res);
}

static void test_idle_connections(void **state)
{
    (void)state;
    int fds0 = open_fds(proc.pid);
    const char *const extra[] = {"--conns", "400", "--duration", "8", NULL};
    json_t *res = under_attack("idle_conns", extra);
    /* 128 held (the per-address cap), the rest refused; the held ones
     * closed by the idle timeout (3 s here). */
    json_int_t opened = json_integer_value(json_object_get(res, "opened"));
    json_int_t closed = json_integer_value(json_object_get(res, "closed_by_server"));
    assert_int_equal(opened, 400);
    assert_int_equal(closed, 400);
    json_decref(res);
    char *log = rdt_proc_log(&proc);
    assert_non_null(strstr(log, "reason=max_per_address"));
    free(log);
    int64_t deadline = rdt_now_ms() + 5000;
    while (open_fds(proc.pid) > fds0 + 4 && rdt_now_ms() < deadline)
        rdt_sleep_ms(50);
    assert_true(open_fds(proc.pid) <= fds0 + 4);
}

static void test_slowloris_h2(void **state)
{
    (void)state;
    const char *const extra[] = {"--conns", "20", "--duration", "8", NULL};
    json_t *res = under_attack("slowloris", extra);
    assert_true(json_is_true(json_object_get(res, "cut_off")));
    json_t *g = json_object_get(res, "goaway");
    assert_non_null(strstr(json_string_value(json_object_get(g, "debug")), "not complete in time"));
    json_decref(res);
}

static void test_slowloris_h1(void **state)
{
    (void)state;
    const char *const extra[] = {"--conns", "20", "--duration", "8", NULL};
    json_t *res = under_attack("slowloris_h1", extra);
    assert_true(json_is_true(json_object_get(res, "cut_off")));
    assert_int_equal(json_integer_value(json_object_get(res, "cut")), 20);
    json_decref(res);
}

/*
 * Over TLS (ALPN h2) the edge stands in front of h2o's HTTP/2 reader too,
 * whether the handshake ends in a read or in a write (TLS 1.3 tickets): a
 * daemon of its own, with a throwaway certificate.
 */
static void test_tls(void **state)
{
    (void)state;
    struct rdt_proc tls = {0};
    assert_int_equal(rdt_proc_prepare(&tls), 0);
    char cert[400], key[400], conf[1024];
    snprintf(cert, sizeof(cert), "%s/cert.pem", tls.dir);
    snprintf(key, sizeof(key), "%s/key.pem", tls.dir);
    char *argv[] = {"/usr/bin/openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    key,
                    "-out",
                    cert,
                    "-days",
                    "2",
                    "-subj",
                    "/CN=127.0.0.1",
                    NULL};
    assert_int_equal(rdt_run(argv, 30000, NULL, NULL), 0);
    rdt_tls_ca = cert; /* the harness's own requests (readiness) go over TLS */
    snprintf(tls.base_url, sizeof(tls.base_url), "https://127.0.0.1:%u", (unsigned)tls.port);
    snprintf(conf, sizeof(conf), "server:\n  tls:\n    cert: %s\n    key: %s\n", cert, key);
    assert_int_equal(rdt_proc_start(&tls, conf), 0);
    long rss0 = rss_kb(tls.pid);
    static const struct {
        const char *attack, *reason, *cut;
    } cases[] = {
        {"rapid_reset", "reset", "stream_resets"},
        {"hpack_amp", "header list", "header_list"},
        {"unfinished_bodies", "request bodies", "request_body"},
        {"empty_data", "frames without request data", "empty_frames"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const extra[] = {"--tls", "--duration", "5", "--path", "/health", NULL};
        char series[128];
        snprintf(series, sizeof(series), "recoveryd_http_connections_cut_total{reason=\"%s\"}",
                 cases[i].cut);
        long long cuts = rdt_metric(&tls, series);
        json_t *res = attack_on(&tls, cases[i].attack, extra);
        if (json_is_object(json_object_get(res, "goaway"))) {
            assert_calmed(res, cases[i].reason);
        } else {
            /* The engine closed while the attacker was still writing: the
             * peer's unread bytes make the close a reset, and a reset may
             * discard the GOAWAY before the attacker reads it (seen once
             * over TLS under a loaded ASan build). The cut is then shown by
             * the closed connection and the engine's count of the reason. */
            assert_true(json_is_true(json_object_get(res, "cut_off")));
            assert_true(json_is_true(json_object_get(res, "closed")));
            if (rdt_metric(&tls, series) <= cuts) {
                rdt_proc_print_log_tail(&tls, 30);
                fail_msg("%s over TLS: closed without a GOAWAY and no cut counted for %s",
                         cases[i].attack, cases[i].cut);
            }
        }
        json_decref(res);
    }
    long rss = rss_kb(tls.pid);
    if (rss - rss0 > 64 * 1024)
        fail_msg("TLS: RSS grew from %ld to %ld kB", rss0, rss);
    int code = -1;
    assert_int_equal(rdt_proc_stop(&tls, &code), 0);
    assert_int_equal(code, 0);
    rdt_proc_cleanup(&tls);
    rdt_tls_ca = NULL;
}

/* What the edge did is counted in /metrics, by reason. */
static void test_metrics(void **state)
{
    (void)state;
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&proc, RDT_H1, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    static const char *const positive[] = {
        "recoveryd_http_connections_cut_total{reason=\"stream_resets\"} ",
        "recoveryd_http_connections_cut_total{reason=\"header_list\"} ",
        "recoveryd_http_connections_cut_total{reason=\"request_body\"} ",
        "recoveryd_http_connections_cut_total{reason=\"empty_frames\"} ",
        "recoveryd_http_connections_cut_total{reason=\"request_timeout\"} ",
        "recoveryd_http_connections_cut_total{reason=\"idle\"} ",
        "recoveryd_http_connections_refused_total{reason=\"blocked\"} ",
        "recoveryd_http_connections_refused_total{reason=\"max_per_address\"} ",
    };
    for (size_t i = 0; i < sizeof(positive) / sizeof(positive[0]); i++) {
        const char *at = strstr(r.body, positive[i]);
        if (at == NULL || atoll(at + strlen(positive[i])) < 1) {
            char line[160];
            snprintf(line, sizeof(line), "%s", at ? at : "(missing)");
            rdt_resp_free(&r);
            fail_msg("/metrics: %.100s", line);
        }
    }
    assert_non_null(strstr(r.body, "\nrecoveryd_http_connections_max "));
    rdt_resp_free(&r);
}

/* ---- setup -------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    if (rdt_proc_start(&proc, yaml) != 0)
        return -1;
    if (rdt_register(&proc, "agent-1", 1, &epoch) != 0)
        return -1;
    /* Tasks for the expensive read the rapid reset asks for. */
    for (int i = 0; i < N_TASKS; i++) {
        struct rdt_resp r = {0};
        if (rdt_post(&proc, RDT_H1, "/api/v1/tasks", "{\"priority\":1,\"payload\":{\"n\":1}}",
                     &r) != 0 ||
            r.status != 201) {
            rdt_resp_free(&r);
            return -1;
        }
        rdt_resp_free(&r);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int code = -1;
    int rc = rdt_proc_stop(&proc, &code);
    rdt_proc_cleanup(&proc);
    return rc == 0 && code == 0 ? 0 : -1;
}

int main(void)
{
    if (RD_PYTHON3[0] == '\0') {
        fprintf(stderr, "skipped: no python3 for tests/attack/h2attack.py\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rapid_reset),
        cmocka_unit_test(test_continuation_flood),
        cmocka_unit_test(test_huge_header_list),
        cmocka_unit_test(test_hpack_amplification),
        cmocka_unit_test(test_unfinished_bodies),
        cmocka_unit_test(test_empty_data_flood),
        cmocka_unit_test(test_idle_connections),
        cmocka_unit_test(test_slowloris_h2),
        cmocka_unit_test(test_slowloris_h1),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_tls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
