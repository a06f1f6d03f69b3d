/*
 * Mutual TLS between replicas (cluster.tls; docs/security.md), with real
 * recoveryd processes on loopback and certificates made by
 * deploy/make-certs.sh:
 * - three replicas with certificates from one CA elect a leader, replicate
 *   writes and survive kill -9 of the leader;
 * - a fourth with a certificate of the cluster CA joins (--join, added and
 *   promoted) and gets the log; a fifth with another CA's is refused by the
 *   leader that dials it and gets nothing;
 * - a wiped follower catches up over TLS by a snapshot install;
 * - a fourth replica with a certificate from another CA, and a fifth with
 *   no TLS at all, are refused by every member (a peer_refused line naming
 *   the reason), never learn the log, while the cluster keeps writing;
 * - a plain TCP client sending libraft's handshake and a RequestVote of a
 *   far higher term gets nothing back and moves no term (the same bytes
 *   move the term of a plaintext replica: the attack is real);
 * - a TLS client without a certificate, or with replica 2's certificate
 *   claiming to be replica 3, is refused;
 * - a start is refused for a non-loopback raft address without TLS, and for
 *   missing, unreadable or mismatched certificate files, naming the key and
 *   the file.
 */
#include "cmocka_all.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_server.h"

#define RUN_TIMEOUT_MS 15000

static struct rdt_cluster cl;
static char certs[256]; /* <tmp>/cluster (CA + replicas 1-4), <tmp>/other (another CA + 4) */
static bool skipped;

static const char extra[] = "storage:\n"
                            "  snapshot_threshold: 256\n"
                            "  snapshot_trailing: 16\n"
                            "plugins:\n"
                            "  instances:\n"
                            "    - {name: heartbeat, required: true}\n"
                            "    - {name: log}\n";

static const char tls_yaml[] = "  tls: {ca: ca.crt, cert: replica.crt, key: replica.key}\n";

/* ---- certificates ------------------------------------------------------------ */

static int run_make_certs(const char *dir, const char *ids[])
{
    char script[512], log[400];
    snprintf(script, sizeof script, "%s/deploy/make-certs.sh", RD_SOURCE_DIR);
    snprintf(log, sizeof log, "%s/make-certs.log", certs);
    char *argv[12] = {(char *)"/bin/sh", script, (char *)dir};
    int n = 3;
    for (int i = 0; ids[i] != NULL && n < 11; i++)
        argv[n++] = (char *)ids[i];
    argv[n] = NULL;
    int rc = rdt_server_run(argv, NULL, log, RDT_SAME_USER, RDT_SAME_USER, 60000);
    if (rc != 0)
        rdt_server_print_log(log, 20);
    return rc;
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[4096];
    size_t n;
    int rc = in && out ? 0 : -1;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        rc = fwrite(buf, 1, n, out) == n ? 0 : -1;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "copy %s -> %s failed\n", from, to);
    return rc;
}

/* Into the replica's directory: ca.crt, replica.crt, replica.key. */
static int put_certs(struct rdt_proc *p, const char *ca_from, const char *set, int id)
{
    char from[400], to[400];
    snprintf(to, sizeof to, "%s/ca.crt", p->dir);
    if (copy_file(ca_from, to) != 0)
        return -1;
    snprintf(from, sizeof from, "%s/%s/replica-%d.crt", certs, set, id);
    snprintf(to, sizeof to, "%s/replica.crt", p->dir);
    if (copy_file(from, to) != 0)
        return -1;
    snprintf(from, sizeof from, "%s/%s/replica-%d.key", certs, set, id);
    snprintf(to, sizeof to, "%s/replica.key", p->dir);
    return copy_file(from, to);
}

static int prepare_member(struct rdt_proc *p, int i)
{
    char ca[400];
    snprintf(ca, sizeof ca, "%s/cluster/ca.crt", certs);
    return put_certs(p, ca, "cluster", i + 1);
}

static int group_setup(void **state)
{
    (void)state;
    char openssl[256];
    if (rdt_which("openssl", openssl, sizeof openssl) != 0) {
        fprintf(stderr, "no openssl command: these tests need it to make certificates\n");
        skipped = true;
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(certs, sizeof certs, "%s/rdt-raft-tls-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(certs) == NULL)
        return -1;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/cluster", certs);
    const char *members[] = {"1", "2", "3", "4", NULL};
    if (run_make_certs(dir, members) != 0)
        return -1;
    snprintf(dir, sizeof dir, "%s/other", certs);
    const char *intruder[] = {"4", NULL};
    if (run_make_certs(dir, intruder) != 0)
        return -1;
    /* The intruder trusts both CAs: it can check the members' certificates
     * (the cluster CA is no secret) and its own start check passes. */
    char both[400], a[400], b[400];
    snprintf(both, sizeof both, "%s/other/both.crt", certs);
    snprintf(a, sizeof a, "%s/cluster/ca.crt", certs);
    snprintf(b, sizeof b, "%s/other/ca.crt", certs);
    FILE *f = fopen(both, "w");
    char *ta = NULL, *tb = NULL;
    size_t la = 0, lb = 0;
    FILE *fa = fopen(a, "r"), *fb = fopen(b, "r");
    if (!f || !fa || !fb || getdelim(&ta, &la, '\0', fa) < 0 || getdelim(&tb, &lb, '\0', fb) < 0)
        return -1;
    fprintf(f, "%s%s", ta, tb);
    free(ta);
    free(tb);
    fclose(fa);
    fclose(fb);
    return fclose(f) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (certs[0] && !getenv("RDT_KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", certs);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", certs);
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    if (skipped)
        return 0;
    cl.prepare = prepare_member;
    return rdt_cluster_start(&cl, 3, extra, tls_yaml);
}

static int teardown(void **state)
{
    (void)state;
    rdt_cluster_cleanup(&cl);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------- */

static int first;

static bool register_agent(const char *id, int timeout_ms)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":1}}", id);
    struct rdt_resp r = {0};
    int rc = rdt_cluster_request(&cl, &first, "POST", "/api/v1/nodes", body, timeout_ms, &r);
    bool ok = rc == 0 && r.status == 201;
    if (!ok)
        print_message("register %s: rc %d status %ld %s\n", id, rc, r.status, r.body ? r.body : "");
    rdt_resp_free(&r);
    return ok;
}

/* GET `path` on `p`: the status. */
static long get_status(struct rdt_proc *p, const char *path)
{
    struct rdt_resp r = {0};
    long st = rdt_get(p, RDT_H1, path, &r) == 0 ? r.status : 0;
    rdt_resp_free(&r);
    return st;
}

/* /health's `key` (an integer) on `p`, -1 when unreadable. */
static long long health_int(struct rdt_proc *p, const char *key)
{
    struct rdt_resp r = {0};
    long long v = -1;
    if (rdt_get(p, RDT_H1, "/health", &r) == 0 && r.status == 200 &&
        json_is_integer(json_object_get(r.json, key)))
        v = json_integer_value(json_object_get(r.json, key));
    rdt_resp_free(&r);
    return v;
}

/* Waits until `p`'s log holds every one of `needles` on one line. */
static bool log_has_line(struct rdt_proc *p, const char *a, const char *b, int timeout_ms)
{
    int64_t deadline = rdt_now_ms() + timeout_ms;
    for (;;) {
        char *log = rdt_proc_log(p);
        bool found = false;
        for (char *line = log; log && line && *line && !found;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            found = strstr(line, a) && (!b || strstr(line, b));
            line = nl ? nl + 1 : NULL;
        }
        free(log);
        if (found)
            return true;
        if (rdt_now_ms() > deadline)
            return false;
        rdt_sleep_ms(50);
    }
}

/* Every member has applied agent `id` (its own state). */
static void expect_on_members(const char *id, int timeout_ms)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/nodes/%s?stale=true", id);
    for (int i = 0; i < cl.n; i++) {
        int64_t deadline = rdt_now_ms() + timeout_ms;
        while (get_status(&cl.procs[i], path) != 200) {
            if (rdt_now_ms() > deadline)
                fail_msg("replica %d lacks acknowledged agent %s", i + 1, id);
            rdt_sleep_ms(20);
        }
    }
}

/* libraft's handshake (protocol 1, id, address) then a RequestVote that
 * would depose any leader: term `term`, a log far ahead, disrupt_leader. */
static size_t forge_vote(unsigned char *buf, uint64_t id, uint64_t term)
{
    const char addr[] = "127.0.0.1:9"; /* 12 bytes with its NUL: padded to 16 */
    uint64_t words[] = {1, id, 16};
    size_t off = 0;
    for (int w = 0; w < 3; w++, off += 8)
        for (int k = 0; k < 8; k++)
            buf[off + k] = (unsigned char)(words[w] >> (8 * k));
    memset(buf + off, 0, 16);
    memcpy(buf + off, addr, sizeof addr);
    off += 16;
    /* Message preamble: type 3 (RequestVote), 0, version 2, 0, 4 x 0, body length. */
    unsigned char pre[8] = {3, 0, 2, 0, 0, 0, 0, 0};
    memcpy(buf + off, pre, 8);
    off += 8;
    uint64_t body[] = {40, term, id, 1000000000ULL, term, 1 /* disrupt_leader */};
    for (int w = 0; w < 6; w++, off += 8)
        for (int k = 0; k < 8; k++)
            buf[off + k] = (unsigned char)(body[w] >> (8 * k));
    return off;
}

static int connect_port(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Reads until EOF or an error within `timeout_ms`: the bytes read, or -1
 * when the connection was still open then. */
static ssize_t read_until_closed(int fd, int timeout_ms)
{
    ssize_t total = 0;
    int64_t deadline = rdt_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - rdt_now_ms());
        if (left <= 0)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, left) <= 0)
            continue;
        char buf[512];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return total;
        total += n;
    }
}

/* ---- the tests ------------------------------------------------------------------- */

static void test_mtls_cluster_replicates_and_survives_leader_kill(void **state)
{
    (void)state;
    if (skipped)
        skip();
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    char id[32];
    for (int k = 0; k < 20; k++) {
        snprintf(id, sizeof id, "t-%d", k);
        assert_true(register_agent(id, 5000));
    }
    expect_on_members("t-19", 5000);
    /* The links are authenticated: the leader saw both followers' certificates. */
    for (int i = 0; i < cl.n; i++) {
        char subject[32];
        snprintf(subject, sizeof subject, "/CN=replica-%d", i + 1);
        if (i != L && !log_has_line(&cl.procs[L], "event=peer_authenticated", subject, 1000))
            fail_msg("the leader (replica %d) logged no link with %s", L + 1, subject);
    }
    assert_int_equal(rdt_proc_kill9(&cl.procs[L]), 0);
    first = (L + 1) % cl.n;
    assert_true(register_agent("t-after-kill", rdt_ms(10000)));
    int L2 = rdt_cluster_leader(&cl, 5000);
    assert_true(L2 >= 0 && L2 != L);
    assert_int_equal(rdt_proc_restart(&cl.procs[L]), 0);
    assert_true(register_agent("t-after-restart", 5000));
    expect_on_members("t-19", rdt_ms(10000));
    expect_on_members("t-after-kill", rdt_ms(10000));
    expect_on_members("t-after-restart", rdt_ms(10000));
}

/* A wiped follower is brought back over TLS by a snapshot install (one large
 * message: the pump's reads and writes span many buffers) and the entries
 * after it. */
static void test_wiped_follower_catches_up_over_tls(void **state)
{
    (void)state;
    if (skipped)
        skip();
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    int F = (L + 1) % cl.n;
    struct rdt_proc *p = &cl.procs[F];
    assert_int_equal(rdt_proc_kill9(p), 0);
    first = L;
    char id[64];
    for (int k = 0; k < 1000; k++) {
        /* Long ids: a state of some 100 KiB to ship. */
        snprintf(id, sizeof id, "catch-up-agent-with-a-long-name-%04d", k);
        assert_true(register_agent(id, 5000));
    }
    assert_int_equal(rdt_rmtree(p->data_dir), 0);
    assert_int_equal(mkdir(p->data_dir, 0700), 0);
    assert_int_equal(rdt_proc_restart(p), 0);
    assert_int_equal(rdt_wait_ready(p, rdt_ms(20000)), 0);
    assert_true(register_agent("after-catch-up", 5000));
    for (int k = 0; k < 1000; k += 111) {
        char path[128];
        snprintf(path, sizeof path, "/api/v1/nodes/catch-up-agent-with-a-long-name-%04d?stale=true",
                 k);
        assert_int_equal(get_status(p, path), 200);
    }
    expect_on_members("after-catch-up", rdt_ms(10000));
    assert_true(log_has_line(p, "event=snapshot_restored", NULL, 1000));
}

/* Membership over TLS: replica 4 with a certificate of the cluster CA joins
 * (--join, then added and promoted on the leader) and gets the log; replica
 * 5 with another CA's certificate, added the same way, is refused by the
 * leader when it dials it and never gets anything. */
static void test_join_needs_a_cluster_certificate(void **state)
{
    (void)state;
    if (skipped)
        skip();
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    first = L;
    assert_true(register_agent("before-join", 5000));
    struct rdt_proc *p4 = &cl.procs[3], *p5 = &cl.procs[4];
    memset(p4, 0, sizeof *p4);
    memset(p5, 0, sizeof *p5);
    char ca[400];
    for (int k = 0; k < 2; k++) {
        struct rdt_proc *p = k == 0 ? p4 : p5;
        assert_int_equal(rdt_proc_prepare(p), 0);
        snprintf(p->cluster_yaml, sizeof p->cluster_yaml, "  replica_id: %d\n  join: true\n%s",
                 4 + k, tls_yaml);
        if (k == 0) {
            snprintf(ca, sizeof ca, "%s/cluster/ca.crt", certs);
            assert_int_equal(put_certs(p, ca, "cluster", 4), 0);
        } else {
            /* Its certificate (the other CA's) names replica-4, not 5: the
             * id check off so that it starts; the leader refuses its CA. */
            snprintf(p->cluster_yaml, sizeof p->cluster_yaml,
                     "  replica_id: 5\n  join: true\n"
                     "  tls: {ca: ca.crt, cert: replica.crt, key: replica.key, "
                     "check_replica_id: false}\n");
            snprintf(ca, sizeof ca, "%s/other/both.crt", certs);
            assert_int_equal(put_certs(p, ca, "other", 4), 0);
        }
        assert_int_equal(rdt_proc_start(p, extra), 0);
    }
    cl.n = 5; /* the teardown stops them too */
    struct rdt_resp r = {0};
    char body[256];
    for (int id = 4; id <= 5; id++) {
        struct rdt_proc *p = id == 4 ? p4 : p5;
        snprintf(body, sizeof body,
                 "{\"id\":%d,\"role\":\"standby\",\"address\":\"127.0.0.1:%u\",\"api_url\":\"%s\"}",
                 id, (unsigned)p->raft_port, p->base_url);
        assert_int_equal(
            rdt_cluster_request(&cl, &first, "POST", "/api/v1/cluster/replicas", body, 10000, &r),
            0);
        if (r.status != 201)
            fail_msg("adding replica %d: %ld %s", id, r.status, r.body ? r.body : "");
        rdt_resp_free(&r);
        if (id == 4) {
            assert_int_equal(rdt_cluster_request(&cl, &first, "POST", "/api/v1/cluster/replicas",
                                                 "{\"id\":4,\"role\":\"voter\"}", 10000, &r),
                             0);
            assert_int_equal(r.status, 200);
            rdt_resp_free(&r);
        }
    }
    assert_true(register_agent("after-join", 5000));
    /* Replica 4 has the whole log; replica 5 nothing. */
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    while (get_status(p4, "/api/v1/nodes/after-join?stale=true") != 200) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(20);
    }
    assert_int_equal(get_status(p4, "/api/v1/nodes/before-join?stale=true"), 200);
    L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0 && L < 3);
    if (!log_has_line(&cl.procs[L], "direction=out", "id=5 reason=\"peer certificate rejected",
                      rdt_ms(5000)))
        fail_msg("the leader did not refuse replica 5's certificate");
    assert_int_equal(get_status(p5, "/api/v1/nodes/before-join?stale=true"), 404);
    assert_int_equal(get_status(p5, "/api/v1/nodes/after-join?stale=true"), 404);
    p5->errors_expected = true; /* it never hears from a leader */
}

/* Replica 4 with a certificate of another CA; replica 5 without TLS. */
static void test_intruders_refused_cluster_serves(void **state)
{
    (void)state;
    if (skipped)
        skip();
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    long long term = health_int(&cl.procs[L], "term");
    struct rdt_proc in[2];
    memset(in, 0, sizeof in);
    for (int k = 0; k < 2; k++) {
        struct rdt_proc *p = &in[k];
        int myid = 4 + k;
        assert_int_equal(rdt_proc_prepare(p), 0);
        /* It thinks it is a voter of a cluster of the three and itself. */
        size_t off =
            (size_t)snprintf(p->cluster_yaml, sizeof p->cluster_yaml,
                             "  replica_id: %d\n%s  peers:\n", myid, k == 0 ? tls_yaml : "");
        for (int i = 0; i < 3; i++)
            off += (size_t)snprintf(p->cluster_yaml + off, sizeof p->cluster_yaml - off,
                                    "    - {id: %d, address: 127.0.0.1:%u}\n", i + 1,
                                    (unsigned)cl.procs[i].raft_port);
        snprintf(p->cluster_yaml + off, sizeof p->cluster_yaml - off,
                 "    - {id: %d, address: 127.0.0.1:%u}\n", myid, (unsigned)p->raft_port);
        if (k == 0) {
            char ca[400];
            snprintf(ca, sizeof ca, "%s/other/both.crt", certs);
            assert_int_equal(put_certs(p, ca, "other", 4), 0);
        }
        assert_int_equal(rdt_proc_start(p, extra), 0);
    }
    /* Every member refuses both, saying why. */
    for (int i = 0; i < cl.n; i++) {
        if (!log_has_line(&cl.procs[i], "event=peer_refused",
                          "reason=\"peer certificate rejected: ", rdt_ms(10000)))
            fail_msg("replica %d did not refuse the foreign certificate", i + 1);
        if (!log_has_line(&cl.procs[i], "event=peer_refused",
                          "reason=\"TLS handshake failed: wrong version number", rdt_ms(10000)))
            fail_msg("replica %d did not refuse the plaintext replica", i + 1);
    }
    /* The cluster keeps writing while they knock. */
    for (int k = 0; k < 10; k++) {
        char id[32];
        snprintf(id, sizeof id, "i-%d", k);
        assert_true(register_agent(id, 5000));
    }
    expect_on_members("i-9", 5000);
    /* Nothing reached them, and nothing of them reached the members. */
    for (int k = 0; k < 2; k++) {
        assert_int_equal(get_status(&in[k], "/api/v1/nodes/i-9?stale=true"), 404);
        assert_int_equal(health_int(&in[k], "leader"), 0);
    }
    int L2 = rdt_cluster_leader(&cl, 5000);
    assert_int_equal(L2, L);
    assert_int_equal(health_int(&cl.procs[L], "term"), term);
    for (int k = 0; k < 2; k++) {
        in[k].errors_expected = true; /* they never find a quorum */
        rdt_proc_cleanup(&in[k]);
    }
}

/* Plain TCP with libraft's handshake and a vote request: nothing comes back
 * and no term moves; the same bytes do move a plaintext replica's term. */
static void test_plain_handshake_gets_nothing(void **state)
{
    (void)state;
    if (skipped)
        skip();
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    long long terms[3];
    for (int i = 0; i < cl.n; i++)
        terms[i] = health_int(&cl.procs[i], "term");
    unsigned char msg[256];
    for (int i = 0; i < cl.n; i++) {
        size_t n = forge_vote(msg, 9, (uint64_t)terms[i] + 1000);
        int fd = connect_port(cl.procs[i].raft_port);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, msg, n), (ssize_t)n);
        ssize_t got = read_until_closed(fd, rdt_ms(5000));
        close(fd);
        if (got != 0)
            fail_msg("replica %d: %s", i + 1,
                     got < 0 ? "connection still open" : "bytes came back to a plain client");
        assert_true(log_has_line(&cl.procs[i], "event=peer_refused", "wrong version number", 2000));
    }
    rdt_sleep_ms(500); /* what a vote would have done is done by now */
    for (int i = 0; i < cl.n; i++)
        assert_int_equal(health_int(&cl.procs[i], "term"), terms[i]);
    assert_int_equal(rdt_cluster_leader(&cl, 5000), L);

    /* The control: a plaintext replica (loopback) takes the same bytes. */
    struct rdt_proc plain = {0};
    assert_int_equal(rdt_proc_start(&plain, extra), 0);
    assert_int_equal(rdt_wait_ready(&plain, 10000), 0);
    long long t0 = health_int(&plain, "term");
    size_t n = forge_vote(msg, 9, (uint64_t)t0 + 1000);
    int fd = connect_port(plain.raft_port);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, msg, n), (ssize_t)n);
    int64_t deadline = rdt_now_ms() + rdt_ms(5000);
    while (health_int(&plain, "term") < t0 + 1000 && rdt_now_ms() < deadline)
        rdt_sleep_ms(20);
    close(fd);
    assert_true(health_int(&plain, "term") >= t0 + 1000);
    plain.errors_expected = true;
    rdt_proc_cleanup(&plain);
}

/* Idle connections from one address (127.0.0.2) take at most 16 handshake
 * slots; the rest are closed at once, and a replica restarted meanwhile (from
 * 127.0.0.1) still gets in and catches up. */
static void test_idle_connections_from_one_host_are_capped(void **state)
{
    (void)state;
    if (skipped)
        skip();
    int L = rdt_cluster_leader(&cl, 5000);
    assert_true(L >= 0);
    enum { N = 40 };
    int fds[N];
    for (int k = 0; k < N; k++) {
        fds[k] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002); /* 127.0.0.2 */
        struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(cl.procs[L].raft_port)};
        dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_true(fds[k] >= 0);
        assert_int_equal(bind(fds[k], (struct sockaddr *)&src, sizeof src), 0);
        assert_int_equal(connect(fds[k], (struct sockaddr *)&dst, sizeof dst), 0);
    }
    assert_true(log_has_line(&cl.procs[L], "event=peer_refused",
                             "handshakes already in progress from this address", 2000));
    /* Which ones the leader closed (EOF at once); the others wait. */
    bool open[N];
    int closed = 0;
    for (int k = 0; k < N; k++) {
        open[k] = read_until_closed(fds[k], 20) < 0;
        closed += !open[k];
    }
    if (closed < N - 16)
        fail_msg("%d of %d idle connections were closed: at most 16 may wait", closed, N);
    /* A follower restarted now dials the leader from 127.0.0.1 and gets in. */
    int F = (L + 1) % cl.n;
    assert_int_equal(rdt_proc_kill9(&cl.procs[F]), 0);
    first = L;
    assert_true(register_agent("while-idle-conns", 5000));
    assert_int_equal(rdt_proc_restart(&cl.procs[F]), 0);
    expect_on_members("while-idle-conns", 5000);
    /* ...while the idle ones still held their slots (the leader closes them
     * 5 s after they came): otherwise this proved nothing. */
    int still = 0;
    for (int k = 0; k < N; k++) {
        struct pollfd pfd = {.fd = fds[k], .events = POLLIN};
        still += open[k] && poll(&pfd, 1, 0) == 0;
        close(fds[k]);
    }
    if (still == 0)
        fail_msg("the idle connections timed out before the follower caught up: too slow to tell");
}

/* A TLS client of the cluster CA's trust: without a certificate, and with
 * replica 2's certificate claiming raft id 3 (then 2: accepted). */
static SSL *tls_client(SSL_CTX *ctx, uint16_t port, int *fd_out)
{
    int fd = connect_port(port);
    if (fd < 0)
        return NULL;
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    *fd_out = fd;
    return ssl;
}

static void test_tls_clients_without_the_right_certificate(void **state)
{
    (void)state;
    if (skipped)
        skip();
    char ca[400], crt[400], key[400];
    snprintf(ca, sizeof ca, "%s/cluster/ca.crt", certs);
    snprintf(crt, sizeof crt, "%s/cluster/replica-2.crt", certs);
    snprintf(key, sizeof key, "%s/cluster/replica-2.key", certs);
    struct rdt_proc *p = &cl.procs[0];
    unsigned char msg[256];
    char buf[64];

    /* No certificate: TLS 1.3 lets the client finish, then the server says no. */
    SSL_CTX *bare = SSL_CTX_new(TLS_client_method());
    assert_int_equal(SSL_CTX_load_verify_locations(bare, ca, NULL), 1);
    SSL_CTX_set_verify(bare, SSL_VERIFY_PEER, NULL);
    int fd = -1;
    SSL *ssl = tls_client(bare, p->raft_port, &fd);
    assert_non_null(ssl);
    if (SSL_connect(ssl) == 1) {
        size_t n = forge_vote(msg, 2, 1000);
        SSL_write(ssl, msg, (int)n);
        assert_true(SSL_read(ssl, buf, sizeof buf) <= 0);
    }
    SSL_free(ssl);
    close(fd);
    assert_true(log_has_line(p, "event=peer_refused", "peer did not return a certificate", 2000));

    /* Replica 2's certificate, claiming to be replica 3. */
    SSL_CTX *two = SSL_CTX_new(TLS_client_method());
    assert_int_equal(SSL_CTX_load_verify_locations(two, ca, NULL), 1);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(two, crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(two, key, SSL_FILETYPE_PEM), 1);
    SSL_CTX_set_verify(two, SSL_VERIFY_PEER, NULL);
    ssl = tls_client(two, p->raft_port, &fd);
    assert_non_null(ssl);
    assert_int_equal(SSL_connect(ssl), 1);
    size_t n = forge_vote(msg, 3, 1000);
    assert_true(SSL_write(ssl, msg, (int)n) > 0);
    assert_true(SSL_read(ssl, buf, sizeof buf) <= 0); /* closed on us */
    SSL_free(ssl);
    close(fd);
    assert_true(log_has_line(p, "event=peer_refused", "does not name replica-3", 2000));

    /* The same certificate as itself: the link is kept (raft reads from it). */
    ssl = tls_client(two, p->raft_port, &fd);
    assert_non_null(ssl);
    assert_int_equal(SSL_connect(ssl), 1);
    forge_vote(msg, 2, 0);
    assert_int_equal(SSL_write(ssl, msg, 40), 40); /* libraft's handshake only */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int ready = poll(&pfd, 1, 500);
    if (ready > 0) {
        /* Something to read: must not be the end of the link. */
        int r = SSL_read(ssl, buf, sizeof buf);
        assert_true(r > 0 || SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ);
    }
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(bare);
    SSL_CTX_free(two);
}

/* ---- refused starts ------------------------------------------------------------- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* Runs recoveryd on `yaml` (its own dir and ports): exit code, stderr in *err. */
static int start_with(const char *yaml, char **err)
{
    char dir[300], cfg[320], data[320], listen_arg[32];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/rdt-raft-tls-start-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(cfg, sizeof cfg, "%s/recoveryd.yaml", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    uint16_t api, unused;
    assert_int_equal(rdt_free_ports(&api, &unused), 0);
    snprintf(listen_arg, sizeof listen_arg, "127.0.0.1:%u", (unsigned)api);
    write_text(cfg, yaml);
    char *argv[14] = {(char *)RD_BINARY,
                      (char *)"--config",
                      cfg,
                      (char *)"--listen",
                      listen_arg,
                      (char *)"--data-dir",
                      data,
                      (char *)"--plugins-dir",
                      (char *)rdt_plugins_dir(),
                      (char *)"--policies-dir",
                      (char *)RD_SOURCE_DIR "/policies"};
    /* Only the config check when the yaml says so (a marker comment). */
    if (strstr(yaml, "# check-config") != NULL)
        argv[11] = (char *)"--check-config";
    int code = rdt_run(argv, RUN_TIMEOUT_MS, NULL, err);
    char rm[400];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return code;
}

static void expect_refused(const char *yaml, const char *needle1, const char *needle2)
{
    char *err = NULL;
    int code = start_with(yaml, &err);
    if (code != 1 || !err || !strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
        fail_msg("want exit 1 with '%s'%s%s, got %d:\n%s", needle1, needle2 ? " and " : "",
                 needle2 ? needle2 : "", code, err ? err : "");
    free(err);
}

static void test_refused_starts(void **state)
{
    (void)state;
    if (skipped)
        skip();
    uint16_t raft, unused;
    assert_int_equal(rdt_free_ports(&raft, &unused), 0);
    char yaml[2048];
    /* Non-loopback, no TLS. */
    snprintf(yaml, sizeof yaml, "cluster:\n  raft_address: 0.0.0.0:%u\n", (unsigned)raft);
    expect_refused(yaml, "cluster.raft_address: '0.0.0.0:", "is not a loopback address");
    /* ... allowed when said explicitly (the config check passes). */
    snprintf(yaml, sizeof yaml,
             "# check-config\ncluster:\n  raft_address: 0.0.0.0:%u\n"
             "  tls: {insecure_plaintext: true}\n",
             (unsigned)raft);
    char *err = NULL;
    int code = start_with(yaml, &err);
    if (code != 0)
        fail_msg("insecure_plaintext: exit %d: %s", code, err ? err : "");
    free(err);
    /* Part of the TLS settings only. */
    snprintf(yaml, sizeof yaml,
             "cluster:\n  raft_address: 127.0.0.1:%u\n  tls: {ca: %s/cluster/ca.crt}\n",
             (unsigned)raft, certs);
    expect_refused(yaml, "cluster.tls.cert: expected a PEM file", NULL);
    /* A missing key file. */
    snprintf(yaml, sizeof yaml,
             "cluster:\n  raft_address: 127.0.0.1:%u\n  replica_id: 1\n"
             "  tls: {ca: %s/cluster/ca.crt, cert: %s/cluster/replica-1.crt, key: %s/nope.key}\n",
             (unsigned)raft, certs, certs, certs);
    char want[400];
    snprintf(want, sizeof want, "cluster.tls.key: cannot read %s/nope.key", certs);
    expect_refused(yaml, want, "No such file or directory");
    /* A key of another certificate. */
    snprintf(yaml, sizeof yaml,
             "cluster:\n  raft_address: 127.0.0.1:%u\n  replica_id: 1\n"
             "  tls: {ca: %s/cluster/ca.crt, cert: %s/cluster/replica-1.crt, "
             "key: %s/cluster/replica-2.key}\n",
             (unsigned)raft, certs, certs, certs);
    snprintf(want, sizeof want, "cluster.tls.key: %s/cluster/replica-2.key does not match", certs);
    expect_refused(yaml, want, NULL);
    /* A certificate the CA did not sign. */
    snprintf(yaml, sizeof yaml,
             "cluster:\n  raft_address: 127.0.0.1:%u\n  replica_id: 4\n"
             "  tls: {ca: %s/cluster/ca.crt, cert: %s/other/replica-4.crt, "
             "key: %s/other/replica-4.key}\n",
             (unsigned)raft, certs, certs, certs);
    expect_refused(yaml, "cluster.tls.cert:", "does not verify against the CA in cluster.tls.ca");
    /* A certificate of another replica id. */
    snprintf(yaml, sizeof yaml,
             "cluster:\n  raft_address: 127.0.0.1:%u\n  replica_id: 1\n"
             "  tls: {ca: %s/cluster/ca.crt, cert: %s/cluster/replica-2.crt, "
             "key: %s/cluster/replica-2.key}\n",
             (unsigned)raft, certs, certs, certs);
    expect_refused(yaml, "cluster.tls.cert:", "does not name replica-1");
    /* A CA file with no certificate in it. */
    snprintf(yaml, sizeof yaml,
             "cluster:\n  raft_address: 127.0.0.1:%u\n  replica_id: 1\n"
             "  tls: {ca: %s/cluster/replica-1.key, cert: %s/cluster/replica-1.crt, "
             "key: %s/cluster/replica-1.key}\n",
             (unsigned)raft, certs, certs, certs);
    expect_refused(yaml, "cluster.tls.ca:", "holds no PEM CA certificate");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mtls_cluster_replicates_and_survives_leader_kill,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_wiped_follower_catches_up_over_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_join_needs_a_cluster_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intruders_refused_cluster_serves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_handshake_gets_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connections_from_one_host_are_capped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tls_clients_without_the_right_certificate, setup,
                                        teardown),
        cmocka_unit_test(test_refused_starts),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return rdt_exit_code(failed, skipped);
}
