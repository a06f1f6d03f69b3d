/*
 * Descriptors exhausted: the daemon runs with a low RLIMIT_NOFILE, idle
 * clients take every descriptor it has left, and large writes force libraft
 * to open new log segments it has no descriptor for. libraft 0.22.1 crashed
 * here (a failed append, then one more: UvAppend with no entries); with the
 * project's patches and the replica's storage-fault handling the daemon must
 * refuse writes with an error naming the cause, keep serving reads over a
 * connection it already has, resume writing by itself once the idle clients
 * go, lose no acknowledged write across a restart, and exit cleanly.
 */
#include "cmocka_all.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_metrics.h"

#define MAX_FILES 128
#define N_IDLE    200
#define BLOB      (400 * 1000)
#define MAX_TASKS 200

static struct rdt_proc proc;
static char *blob_body;
static char acked[MAX_TASKS][64];
static int n_acked;

/* No descriptor reserve: idle clients may take them all (what this test
 * provokes); test_descriptors_reserved runs with the default reserve. */
static const char yaml[] = "storage:\n"
                           "  segment_size: 4MiB\n"
                           "server:\n"
                           "  max_body: 2MiB\n"
                           "  edge:\n"
                           "    reserved_fds: 0\n"
                           "    max_connections: 1000\n"
                           "    max_connections_per_address: 1000\n"
                           "fault_tolerance:\n"
                           "  detection:\n"
                           "    heartbeat_interval: 30s\n";

static const char yaml_reserved[] = "storage:\n"
                                    "  segment_size: 4MiB\n"
                                    "server:\n"
                                    "  max_body: 2MiB\n"
                                    "fault_tolerance:\n"
                                    "  detection:\n"
                                    "    heartbeat_interval: 30s\n";

/* A connection with a read deadline: a daemon that stops answering fails
 * the test instead of hanging it. */
static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(proc.port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 30};
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* CPU seconds the process has used (user + system), from /proc/PID/stat. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the name may hold spaces */
    unsigned long utime = 0, stime = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* The daemon is not spinning (e.g. on accept4 failing with EMFILE): under a
 * third of a core over two seconds of idle clients. */
static void assert_not_spinning(void)
{
    double c0 = cpu_seconds(proc.pid);
    rdt_sleep_ms(2000);
    double used = cpu_seconds(proc.pid) - c0;
    if (used > 0.66)
        fail_msg("the daemon used %.2f s of CPU in 2 s with idle clients only", used);
}

/* One HTTP/1.1 request on a kept-alive connection; the status (0 when the
 * connection failed) and the body (malloc'd, NUL-terminated) in *body. */
static int request(int fd, const char *method, const char *path, const char *json, char **body)
{
    char head[256];
    size_t len = json ? strlen(json) : 0;
    int n =
        snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n%s\r\n",
                 method, path, len, json ? "Content-Type: application/json\r\n" : "");
    *body = NULL;
    if (write(fd, head, (size_t)n) != n)
        return 0;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, json + off, len - off);
        if (w <= 0)
            return 0;
        off += (size_t)w;
    }
    size_t cap = 1 << 16, got = 0;
    char *buf = malloc(cap + 1);
    char *end = NULL;
    while (end == NULL) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r <= 0) {
            free(buf);
            return 0;
        }
        got += (size_t)r;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = atoi(buf + 9);
    const char *cl = strcasestr(buf, "content-length:");
    size_t clen = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
    size_t hlen = (size_t)(end + 4 - buf);
    if (hlen + clen > cap) {
        cap = hlen + clen;
        buf = realloc(buf, cap + 1);
    }
    while (got < hlen + clen) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r <= 0) {
            free(buf);
            return 0;
        }
        got += (size_t)r;
    }
    *body = strndup(buf + hlen, clen);
    free(buf);
    return status;
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

/* Submits a task with a 400 kB payload over `fd`: its status; the id of an
 * acknowledged one is remembered. */
static int write_task(int fd, char **body)
{
    int st = request(fd, "POST", "/api/v1/tasks", blob_body, body);
    if (st == 201 && n_acked < MAX_TASKS) {
        json_error_t e;
        json_t *j = json_loads(*body, 0, &e);
        const char *id = json_string_value(json_object_get(j, "task_id"));
        assert_non_null(id);
        snprintf(acked[n_acked++], sizeof(acked[0]), "%s", id);
        json_decref(j);
    }
    return st;
}

static void test_descriptors_exhausted(void **state)
{
    (void)state;
    struct rlimit lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &lim), 0);
    if (lim.rlim_cur < N_IDLE + 64) {
        lim.rlim_cur = lim.rlim_max < 4096 ? lim.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    proc.max_files = MAX_FILES;
    assert_int_equal(rdt_proc_start(&proc, yaml), 0);
    blob_body = malloc(BLOB + 64);
    int o = snprintf(blob_body, 64, "{\"priority\":1,\"payload\":{\"blob\":\"");
    memset(blob_body + o, 'x', BLOB);
    strcpy(blob_body + o + BLOB, "\"}}");

    int keep = dial();
    assert_true(keep >= 0);
    char *body = NULL;
    assert_int_equal(request(keep, "POST", "/api/v1/nodes",
                             "{\"node_id\":\"a\",\"capacity\":{\"slots\":1}}", &body),
                     201);
    free(body);
    assert_int_equal(write_task(keep, &body), 201);
    free(body);

    /* Idle clients take every descriptor the daemon has left. */
    int idle[N_IDLE], n_idle = 0;
    for (int i = 0; i < N_IDLE; i++)
        if ((idle[n_idle] = dial()) >= 0)
            n_idle++;
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    while (open_fds(proc.pid) < MAX_FILES - 1 && rdt_now_ms() < deadline)
        rdt_sleep_ms(20);
    assert_true(open_fds(proc.pid) >= MAX_FILES - 1);
    assert_not_spinning();

    /* Large writes need new log segments: refused, never a crash. */
    int refused = 0;
    bool named = false;
    for (int i = 0; i < 40 && refused < 5; i++) {
        int st = write_task(keep, &body);
        assert_true(st == 201 || st == 503 || st == 507);
        if (st != 201) {
            refused++;
            if (strstr(body, "storage_unavailable") && strstr(body, "too many open files"))
                named = true;
        }
        free(body);
        assert_true(rdt_proc_alive(&proc));
    }
    assert_true(refused > 0);
    assert_true(named); /* 503 storage_unavailable, naming the cause */

    /* Reads go on over the connection it has. */
    assert_int_equal(request(keep, "GET", "/api/v1/nodes/a", NULL, &body), 200);
    free(body);

    /* The idle clients go: writes resume on their own. */
    for (int i = 0; i < n_idle; i++)
        close(idle[i]);
    int st = 0;
    char last[512] = "";
    deadline = rdt_now_ms() + rdt_ms(20000);
    while (st != 201 && rdt_now_ms() < deadline) {
        st = write_task(keep, &body);
        snprintf(last, sizeof(last), "%s", body ? body : "");
        free(body);
        if (st != 201)
            rdt_sleep_ms(100);
    }
    if (st != 201) {
        rdt_proc_print_log_tail(&proc, 40);
        fail_msg("writes did not resume once the idle clients went (%d open descriptors): %d %s",
                 open_fds(proc.pid), st, last);
    }
    close(keep);

    char *log = rdt_proc_log(&proc);
    assert_non_null(strstr(log, "event=storage_failed"));
    assert_non_null(strstr(log, "event=storage_recovered"));
    free(log);
    /* The failed appends are counted (docs/operations.md, "Metrics operators
     * expect"); the ones that went through were timed. */
    assert_true(rdt_metric(&proc, "recoveryd_raft_append_errors_total") > 0);
    assert_true(rdt_metric(&proc, "recoveryd_raft_append_duration_seconds_count") > 0);

    /* Every acknowledged write is there after a restart; a clean exit. */
    int code = -1;
    assert_int_equal(rdt_proc_stop(&proc, &code), 0);
    assert_int_equal(code, 0);
    proc.max_files = 0;
    assert_int_equal(rdt_proc_restart(&proc), 0);
    for (int i = 0; i < n_acked; i++) {
        struct rdt_resp r = {0};
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/tasks/%s", acked[i]);
        assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
        assert_int_equal(r.status, 200);
        rdt_resp_free(&r);
    }
    assert_int_equal(rdt_proc_stop(&proc, &code), 0);
    assert_int_equal(code, 0);
    free(blob_body);
}

/*
 * The default reserve: clients are refused before they take the descriptors
 * raft needs, so the same idle clients never stop a write; the refusals are
 * logged, and the daemon does not spin on them.
 */
static void test_descriptors_reserved(void **state)
{
    (void)state;
    struct rlimit lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &lim), 0);
    if (lim.rlim_cur < N_IDLE + 64) {
        lim.rlim_cur = lim.rlim_max < 4096 ? lim.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    proc.max_files = MAX_FILES;
    n_acked = 0;
    assert_int_equal(rdt_proc_start(&proc, yaml_reserved), 0);
    blob_body = malloc(BLOB + 64);
    int o = snprintf(blob_body, 64, "{\"priority\":1,\"payload\":{\"blob\":\"");
    memset(blob_body + o, 'x', BLOB);
    strcpy(blob_body + o + BLOB, "\"}}");

    int keep = dial();
    assert_true(keep >= 0);
    char *body = NULL;
    assert_int_equal(request(keep, "POST", "/api/v1/nodes",
                             "{\"node_id\":\"a\",\"capacity\":{\"slots\":1}}", &body),
                     201);
    free(body);

    int idle[N_IDLE], n_idle = 0;
    for (int i = 0; i < N_IDLE; i++)
        if ((idle[n_idle] = dial()) >= 0)
            n_idle++;
    /* The daemon refuses what is over the clients' share: wait for it. */
    char *log = NULL;
    int64_t deadline = rdt_now_ms() + 10000;
    while (rdt_now_ms() < deadline) {
        free(log);
        log = rdt_proc_log(&proc);
        if (strstr(log, "event=connection_refused") != NULL)
            break;
        rdt_sleep_ms(50);
    }
    assert_non_null(strstr(log, "event=connection_refused"));
    assert_non_null(strstr(log, "reason=max_connections"));
    free(log);
    int fds = open_fds(proc.pid);
    if (fds > MAX_FILES - 32)
        fail_msg("%d of %d descriptors in use with the reserve on", fds, MAX_FILES);
    assert_not_spinning();

    /* Writes that need new log segments all go through. */
    for (int i = 0; i < 20; i++) {
        int st = write_task(keep, &body);
        if (st != 201)
            fail_msg("write %d: status %d %s", i, st, body ? body : "");
        free(body);
    }
    log = rdt_proc_log(&proc);
    assert_null(strstr(log, "event=storage_failed"));
    free(log);
    for (int i = 0; i < n_idle; i++)
        close(idle[i]);
    close(keep);
    int code = -1;
    assert_int_equal(rdt_proc_stop(&proc, &code), 0);
    assert_int_equal(code, 0);
    free(blob_body);
}

static int teardown(void **state)
{
    (void)state;
    rdt_proc_cleanup(&proc);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_descriptors_exhausted, teardown),
        cmocka_unit_test_teardown(test_descriptors_reserved, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
