/*
 * librecoveryd-client's replica rules (include/recoveryd/client.h) against
 * scripted fake replicas: real sockets on loopback, each answering from a
 * list of canned answers (or not at all), so the cases a real cluster only
 * shows by chance happen every time: 503 not_leader and outcome_unknown,
 * a hanging leader, a 307, a 429, the error mapping, the agent timeout.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "recoveryd/client.h"

/* ---- a scripted replica ---------------------------------------------------------- */

struct canned {
    int status;
    const char *body;
    const char *headers; /* extra header lines, each ending with \r\n */
    int hang_ms;         /* wait this long before answering */
};

struct fake {
    int fd;
    uint16_t port;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t mu;
    struct canned script[8];
    int n, next;
    int hits;
    char head[8][2048]; /* request line and headers of each hit */
    char body[8][4096]; /* the body of each hit */
};

static void reply(struct fake *f, int c, const struct canned *a)
{
    for (int waited = 0; waited < a->hang_ms && !atomic_load(&f->stop); waited += 10)
        usleep(10000);
    char buf[8192];
    const char *body = a->body ? a->body : "";
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n%s",
                     a->status, strlen(body), a->headers ? a->headers : "", body);
    ssize_t w = send(c, buf, (size_t)n, MSG_NOSIGNAL);
    (void)w;
}

static void *serve(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            continue;
        char req[8192] = "";
        size_t len = 0;
        char *end = NULL;
        while (len < sizeof req - 1 && (end = strstr(req, "\r\n\r\n")) == NULL) {
            ssize_t r = read(c, req + len, sizeof req - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            req[len] = '\0';
        }
        if (end == NULL) {
            close(c);
            continue;
        }
        size_t head_len = (size_t)(end - req) + 4;
        const char *cl = strcasestr(req, "content-length:");
        size_t want = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
        while (len < head_len + want && len < sizeof req - 1) {
            ssize_t r = read(c, req + len, sizeof req - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
        }
        req[len] = '\0';
        pthread_mutex_lock(&f->mu);
        int i = f->next < f->n ? f->next++ : f->n - 1;
        struct canned a = f->script[i];
        if (f->hits < 8) {
            snprintf(f->head[f->hits], sizeof f->head[0], "%.*s", (int)head_len, req);
            snprintf(f->body[f->hits], sizeof f->body[0], "%s", req + head_len);
        }
        f->hits++;
        pthread_mutex_unlock(&f->mu);
        reply(f, c, &a);
        close(c);
    }
    return NULL;
}

/* Starts a fake replica answering `n` canned answers in turn (the last one forever). */
static struct fake *fake_start(int n, ...)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        f->script[i] = va_arg(ap, struct canned);
    va_end(ap);
    f->n = n;
    pthread_mutex_init(&f->mu, NULL);
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->fd, 16), 0);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);
    return f;
}

static int fake_hits(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    int h = f->hits;
    pthread_mutex_unlock(&f->mu);
    return h;
}

static void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    close(f->fd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static rdc_client *client_for(const char *token, long timeout_ms, long retry_ms, int n, ...)
{
    char eps[512] = "";
    size_t o = 0;
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        struct fake *f = va_arg(ap, struct fake *);
        o += (size_t)snprintf(eps + o, sizeof eps - o, "%shttp://127.0.0.1:%u", i ? "," : "",
                              f->port);
    }
    va_end(ap);
    struct rdc_options opts = {
        .endpoints = eps, .token = token, .timeout_ms = timeout_ms, .retry_ms = retry_ms};
    rdc_client *c = NULL;
    char err[256];
    if (rdc_client_new(&opts, &c, err, sizeof err) != 0)
        fail_msg("rdc_client_new: %s", err);
    return c;
}

#define NOT_LEADER                                                                                 \
    (struct canned)                                                                                \
    {                                                                                              \
        503, "{\"error\":{\"code\":\"not_leader\",\"message\":\"an election\",\"details\":{}}}",   \
            "Retry-After: 1\r\n", 0                                                                \
    }
#define UNKNOWN                                                                                    \
    (struct canned)                                                                                \
    {                                                                                              \
        503,                                                                                       \
            "{\"error\":{\"code\":\"outcome_unknown\",\"message\":\"leadership lost while "        \
            "committing\",\"details\":{}}}",                                                       \
            "Retry-After: 1\r\n", 0                                                                \
    }
#define ACCEPTED                                                                                   \
    (struct canned)                                                                                \
    {                                                                                              \
        202, "{\"backup_id\":\"b\",\"status\":\"initiated\"}", NULL, 0                             \
    }

/* ---- the rules ---------------------------------------------------------------------- */

/* 503 not_leader: nothing was done; the next replica gets the write. */
static void test_not_leader_moves_on(void **state)
{
    struct fake *a = fake_start(1, NOT_LEADER), *b = fake_start(1, ACCEPTED);
    rdc_client *c = client_for(NULL, 1000, 5000, 2, a, b);
    json_t *out = NULL;
    assert_int_equal(rdc_backup_trigger(c, NULL, &out), 0);
    assert_string_equal(json_string_value(json_object_get(out, "backup_id")), "b");
    json_decref(out);
    assert_int_equal(fake_hits(a), 1);
    assert_int_equal(fake_hits(b), 1);
    /* The next call goes where the last answer came from. */
    assert_int_equal(rdc_backup_trigger(c, NULL, NULL), 0);
    assert_int_equal(fake_hits(a), 1);
    rdc_client_free(c);
    fake_stop(a);
    fake_stop(b);
}

/* outcome_unknown: a write that is not idempotent is not sent again. */
static void test_outcome_unknown_not_retried(void **state)
{
    struct fake *a = fake_start(1, UNKNOWN), *b = fake_start(1, ACCEPTED);
    rdc_client *c = client_for(NULL, 1000, 5000, 2, a, b);
    json_t *out = NULL;
    assert_int_equal(rdc_backup_trigger(c, NULL, &out), RDC_EUNKNOWN);
    assert_null(out);
    assert_string_equal(rdc_errcode(c), "outcome_unknown");
    assert_non_null(strstr(rdc_errmsg(c), "leadership lost while committing"));
    assert_int_equal(fake_hits(b), 0);
    rdc_client_free(c);
    fake_stop(a);
    fake_stop(b);
}

/* outcome_unknown: an idempotent write (a checkpoint) is sent again, the same. */
static void test_outcome_unknown_idempotent_retried(void **state)
{
    struct fake *a = fake_start(1, UNKNOWN);
    struct fake *b = fake_start(1, (struct canned){200, "{\"version\":3}", NULL, 0});
    rdc_client *c = client_for(NULL, 1000, 5000, 2, a, b);
    json_t *data = json_pack("{s:i}", "step", 3), *out = NULL;
    assert_int_equal(rdc_agent_checkpoint(c, "t1", 2, 3, data, &out), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "version")), 3);
    json_decref(out);
    json_decref(data);
    assert_int_equal(fake_hits(b), 1);
    assert_string_equal(a->body[0], b->body[0]);
    assert_non_null(strstr(b->body[0], "\"attempt\":2"));
    assert_non_null(strstr(b->head[0], "PUT /api/v1/tasks/t1/checkpoint"));
    rdc_client_free(c);
    fake_stop(a);
    fake_stop(b);
}

/* A leader that accepts and never answers (SIGSTOPped): reads move on after
 * the timeout; a write that is not idempotent is reported unknown. */
static void test_hanging_replica(void **state)
{
    struct fake *a = fake_start(1, (struct canned){200, "{}", NULL, 3000});
    struct fake *b =
        fake_start(1, (struct canned){200, "{\"items\":[],\"next_cursor\":null}", NULL, 0});
    rdc_client *c = client_for(NULL, 300, 5000, 2, a, b);
    int64_t t0 = rdt_now_ms();
    json_t *out = NULL;
    assert_int_equal(rdc_nodes_list(c, NULL, &out), 0);
    assert_true(json_is_array(json_object_get(out, "items")));
    json_decref(out);
    assert_true(rdt_now_ms() - t0 < 2000);
    rdc_client_free(c);

    c = client_for(NULL, 300, 5000, 2, a, b);
    int hits_b = fake_hits(b);
    assert_int_equal(rdc_backup_trigger(c, NULL, NULL), RDC_EUNKNOWN);
    assert_non_null(strstr(rdc_errmsg(c), "may have been applied"));
    assert_int_equal(fake_hits(b), hits_b);
    rdc_client_free(c);
    fake_stop(a);
    fake_stop(b);
}

/* 307: the same method and body again at Location; the leader is asked first next time. */
static void test_redirect_followed(void **state)
{
    struct fake *leader = fake_start(1, (struct canned){201, "{\"task_id\":\"x\"}", NULL, 0});
    char loc[128];
    snprintf(loc, sizeof loc, "Location: http://127.0.0.1:%u/api/v1/tasks\r\n", leader->port);
    struct fake *follower = fake_start(
        1, (struct canned){307,
                           "{\"error\":{\"code\":\"not_leader\",\"message\":\"follower\","
                           "\"details\":{}}}",
                           loc, 0});
    rdc_client *c = client_for("s3cret", 1000, 5000, 1, follower);
    json_t *spec = json_pack("{s:i}", "priority", 7);
    assert_int_equal(rdc_task_submit(c, spec, NULL), 0);
    json_decref(spec);
    assert_int_equal(fake_hits(leader), 1);
    assert_string_equal(follower->body[0], leader->body[0]);
    assert_non_null(strstr(leader->body[0], "\"task_id\":\"")); /* chosen by the library */
    assert_non_null(strstr(leader->head[0], "POST /api/v1/tasks "));
    assert_non_null(strstr(leader->head[0], "Authorization: Bearer s3cret"));
    char want[64];
    snprintf(want, sizeof want, "http://127.0.0.1:%u", leader->port);
    assert_string_equal(rdc_endpoint(c), want);
    assert_int_equal(rdc_task_submit(c, NULL, NULL), 0);
    assert_int_equal(fake_hits(follower), 1);
    assert_int_equal(fake_hits(leader), 2);
    rdc_client_free(c);
    fake_stop(leader);
    fake_stop(follower);
}

/* 429: waits Retry-After, then the same replica again. */
static void test_rate_limited_waits(void **state)
{
    struct fake *a = fake_start(
        2,
        (struct canned){
            429, "{\"error\":{\"code\":\"rate_limited\",\"message\":\"8 wait\",\"details\":{}}}",
            "Retry-After: 1\r\n", 0},
        ACCEPTED);
    rdc_client *c = client_for(NULL, 1000, 5000, 1, a);
    int64_t t0 = rdt_now_ms();
    assert_int_equal(rdc_backup_trigger(c, NULL, NULL), 0);
    assert_true(rdt_now_ms() - t0 >= 1000);
    assert_int_equal(fake_hits(a), 2);
    rdc_client_free(c);
    fake_stop(a);
}

/* The engine's errors: code, message and status kept; the right RDC_E*. */
static void test_errors_mapped(void **state)
{
    struct fake *a =
        fake_start(4,
                   (struct canned){404,
                                   "{\"error\":{\"code\":\"not_found\",\"message\":\"node n is not "
                                   "registered\",\"details\":{}}}",
                                   NULL, 0},
                   (struct canned){409,
                                   "{\"error\":{\"code\":\"fenced\",\"message\":\"attempt 1 is not "
                                   "current\",\"details\":{}}}",
                                   NULL, 0},
                   (struct canned){401,
                                   "{\"error\":{\"code\":\"unauthorized\",\"message\":\"no token\","
                                   "\"details\":{}}}",
                                   NULL, 0},
                   (struct canned){200, "not json", NULL, 0});
    rdc_client *c = client_for(NULL, 1000, 5000, 1, a);
    json_t *out = NULL;
    assert_int_equal(rdc_node_get(c, "n", &out), RDC_ENOTFOUND);
    assert_string_equal(rdc_errcode(c), "not_found");
    assert_string_equal(rdc_errmsg(c), "node n is not registered");
    assert_int_equal(rdc_status(c), 404);
    assert_null(out); /* the error body stays the client's */
    assert_string_equal(json_string_value(rdt_json_path((json_t *)rdc_error_body(c), "error.code")),
                        "not_found");
    assert_int_equal(rdc_agent_complete(c, "t", 1, NULL, NULL), RDC_EFENCED);
    assert_int_equal(rdc_nodes_list(c, NULL, NULL), RDC_EAUTH);
    assert_int_equal(rdc_nodes_list(c, NULL, NULL), RDC_EPROTO);
    assert_string_equal(rdc_err_name(RDC_EPROTO), "RDC_EPROTO");
    rdc_client_free(c);
    fake_stop(a);

    /* Bad options: a clear error, no client. */
    struct rdc_options bad = {.endpoints = "127.0.0.1:8080"};
    rdc_client *none = NULL;
    char err[256];
    assert_int_equal(rdc_client_new(&bad, &none, err, sizeof err), RDC_EINVAL);
    assert_null(none);
    assert_non_null(strstr(err, "'127.0.0.1:8080' is not a base URL"));
}

/* Agent calls time out after a third of the lease once registered. */
static void test_agent_timeout_from_lease(void **state)
{
    struct fake *a =
        fake_start(2,
                   (struct canned){201,
                                   "{\"node_id\":\"n\",\"epoch\":4,\"heartbeat_interval_ms\":100,"
                                   "\"lease_ms\":600}",
                                   NULL, 0},
                   (struct canned){200, "{}", NULL, 5000});
    rdc_client *c = client_for(NULL, 0, 500, 1, a);
    assert_int_equal(rdc_agent_register(c, "n", 1, NULL, NULL), 0);
    int64_t t0 = rdt_now_ms();
    int rc = rdc_agent_heartbeat(c, "n", 4, 0, NULL, NULL);
    int64_t took = rdt_now_ms() - t0;
    assert_int_equal(rc, RDC_EUNREACHABLE);
    if (took > 1500)
        fail_msg("the heartbeat took %lld ms: the 200 ms agent timeout was not applied",
                 (long long)took);
    rdc_client_free(c);
    fake_stop(a);
}

/* Revocations name the attempt: only the attempt run is dropped. */
static void test_heartbeat_revokes(void **state)
{
    json_t *hb = json_loads("{\"assignments\":[],\"revoked\":[\"t1\",\"t2\"],"
                            "\"revocations\":[{\"task_id\":\"t1\",\"attempt\":3},"
                            "{\"task_id\":\"t2\",\"attempt\":1}]}",
                            0, NULL);
    assert_non_null(hb);
    assert_int_equal(rdc_heartbeat_revokes(hb, "t1", 3), 1);
    assert_int_equal(rdc_heartbeat_revokes(hb, "t2", 2), 0); /* placed back: attempt 2 runs */
    assert_int_equal(rdc_heartbeat_revokes(hb, "t3", 1), 0);
    json_decref(hb);
    /* An engine without "revocations": "revoked" alone decides. */
    hb = json_loads("{\"assignments\":[],\"revoked\":[\"t1\"]}", 0, NULL);
    assert_int_equal(rdc_heartbeat_revokes(hb, "t1", 7), 1);
    assert_int_equal(rdc_heartbeat_revokes(hb, "t2", 7), 0);
    json_decref(hb);
}

/* recoveryctl on the same rules: an unknown outcome is exit 7 and says to look first. */
static void test_recoveryctl_outcome_unknown(void **state)
{
    struct fake *a = fake_start(1, UNKNOWN), *b = fake_start(1, ACCEPTED);
    char eps[128];
    snprintf(eps, sizeof eps, "http://127.0.0.1:%u,http://127.0.0.1:%u", a->port, b->port);
    char *const argv[] = {(char *)RD_RECOVERYCTL, (char *)"--endpoints", eps,
                          (char *)"backups",      (char *)"create",      NULL};
    char *out = NULL, *err = NULL;
    int code = rdt_run(argv, 30000, &out, &err);
    if (code != 7 || strstr(err, "may or may not have been made") == NULL)
        fail_msg("exit %d, stderr: %s", code, err ? err : "");
    assert_int_equal(fake_hits(b), 0);
    free(out);
    free(err);
    fake_stop(a);
    fake_stop(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_leader_moves_on),
        cmocka_unit_test(test_outcome_unknown_not_retried),
        cmocka_unit_test(test_outcome_unknown_idempotent_retried),
        cmocka_unit_test(test_hanging_replica),
        cmocka_unit_test(test_redirect_followed),
        cmocka_unit_test(test_rate_limited_waits),
        cmocka_unit_test(test_errors_mapped),
        cmocka_unit_test(test_agent_timeout_from_lease),
        cmocka_unit_test(test_heartbeat_revokes),
        cmocka_unit_test(test_recoveryctl_outcome_unknown),
    };
    unsetenv("RECOVERYD_ENDPOINTS");
    unsetenv("RECOVERYD_TOKEN");
    unsetenv("RECOVERYD_CACERT");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
