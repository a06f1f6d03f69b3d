/*
 * bench_failover: one trial of the failover benchmark
 * (tests/bench/failover/run.sh starts the replicas, runs this once per trial
 * and restarts the replica it killed).
 *
 * A writer thread keeps registering one node (POST /api/v1/nodes, a write
 * committed by a majority) back to back, each request with a 1 s timeout,
 * over HTTP/1.1 with one connection per replica, as a client of a replicated
 * recoveryd would: it follows a 307 to the leader (Location), and on a 503, a
 * transport error (a SIGKILLed replica's port refuses at once) or a timeout it
 * tries the next replica, pausing 10 ms after each round of failures.
 *
 * Once writes flow (a warm-up of --warmup-ms plus a jitter, so the kill lands
 * anywhere in the leader's heartbeat period), the main thread finds the
 * leader (GET /health: "role"), sends it SIGKILL by its pid, and measures the
 * time from the kill to the first 2xx answer from another replica. It also
 * polls the survivors' /health every 10 ms to tell when one of them says it
 * leads (the election's share of the time). It prints one line:
 *
 *   TRIAL n=.. killed=I old_term=.. ack_ms=.. elected_ms=.. new_leader=J
 *         new_term=.. refused=.. reset=.. unavailable=.. timeouts=..
 *         redirects=.. other=.. warm_writes=.. warm_max_ms=..
 *
 * where I and J are 1-based indexes into the --replica list. Exit: 0 when
 * a write was acknowledged after the kill, 4 when none came within
 * --give-up-s, 1 on a setup error (no leader, kill failed), 2 on bad usage.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_REPLICAS 7
#define NODE_ID      "bench-failover-writer"
#define POLL_MS      10
#define PROBE_MS     200L /* one GET /health */
#define ROUND_PAUSE  10   /* ms after a round of failures */

struct replica {
    char url[200];
    pid_t pid;
};

struct opts {
    struct replica r[MAX_REPLICAS];
    unsigned n;
    unsigned trial, warmup_ms, jitter_ms, timeout_ms, give_up_s;
};

struct counts {
    uint64_t ok, refused, reset, unavailable, timeouts, redirects, other;
};

struct bench {
    struct opts o;
    pthread_t writer;
    atomic_bool stop;
    _Atomic int64_t kill_ns; /* 0 until the kill */
    atomic_int killed;       /* index of the killed replica, -1 before */
    _Atomic uint64_t acks;   /* 2xx answers so far */
    /* set once by the writer: the first acknowledgment after the kill */
    _Atomic int64_t first_ack_ns;
    atomic_int first_ack_replica;
    /* the writer's counts after the kill (read by main after the join) */
    struct counts after;
    int64_t write_max_ns; /* the slowest write before the kill */
};

/* ---- options ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_failover --replica URL=PID --replica URL=PID ... [--trial N]\n"
               "         [--warmup-ms MS] [--jitter-ms MS] [--timeout-ms MS] [--give-up-s S]\n"
               "  --replica     a replica's API URL and its process id (2 to 7 of them)\n"
               "  --trial       the trial's number: printed, and it seeds the jitter (1)\n"
               "  --warmup-ms   writes before the kill (default 500)\n"
               "  --jitter-ms   plus a uniform 0..this, so the kill lands anywhere (default 200)\n"
               "  --timeout-ms  one write's timeout (default 1000)\n"
               "  --give-up-s   no acknowledgment after the kill within this long: exit 4 "
               "(default 20)\n");
}

static bool parse_replica(const char *s, void *ctx)
{
    struct opts *o = ctx;
    const char *eq = strrchr(s, '=');
    unsigned pid;
    if (o->n == MAX_REPLICAS || eq == NULL || (size_t)(eq - s) >= sizeof(o->r[0].url) || eq == s ||
        !rdb_parse_uint(eq + 1, 2, 1u << 30, &pid))
        return false;
    memcpy(o->r[o->n].url, s, (size_t)(eq - s));
    o->r[o->n].url[eq - s] = '\0';
    o->r[o->n].pid = (pid_t)pid;
    o->n++;
    return true;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){
        .trial = 1, .warmup_ms = 500, .jitter_ms = 200, .timeout_ms = 1000, .give_up_s = 20};
    const struct rdb_opt opts[] = {
        {"replica", .fn = parse_replica},
        {"trial", .num = &o->trial, .min = 1, .max = 1000000},
        {"warmup-ms", .num = &o->warmup_ms, .min = 0, .max = 600000},
        {"jitter-ms", .num = &o->jitter_ms, .min = 0, .max = 600000},
        {"timeout-ms", .num = &o->timeout_ms, .min = 10, .max = 600000},
        {"give-up-s", .num = &o->give_up_s, .min = 1, .max = 3600},
        {NULL},
    };
    if (rdb_parse_opts(argc, argv, opts, o, usage) != 0 || o->n < 2) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* ---- the writer ------------------------------------------------------------------- */

static int replica_of(const struct bench *b, const char *url)
{
    for (unsigned i = 0; url && i < b->o.n; i++) {
        size_t n = strlen(b->o.r[i].url);
        if (strncmp(url, b->o.r[i].url, n) == 0 && (url[n] == '/' || url[n] == '\0'))
            return (int)i;
    }
    return -1;
}

static void *writer_main(void *arg)
{
    struct bench *b = arg;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    char mem[2048];
    struct rdb_buf bf;
    rdb_buf_fixed(&bf, mem, sizeof(mem));
    CURL *easy[MAX_REPLICAS] = {0};
    for (unsigned i = 0; i < b->o.n; i++) {
        if ((easy[i] = curl_easy_init()) == NULL)
            goto out;
        rdb_easy_blocking(easy[i], (long)b->o.timeout_ms, hdrs, &bf);
        char url[256];
        snprintf(url, sizeof(url), "%s/api/v1/nodes", b->o.r[i].url);
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS,
                         "{\"node_id\":\"" NODE_ID "\",\"capacity\":{\"slots\":1}}");
    }
    /* "whichever replica": a different one each trial; redirects lead on. */
    unsigned cur = b->o.trial % b->o.n, fails = 0;
    struct counts before_kill = {0};
    while (!atomic_load(&b->stop) && !rdb_interrupted) {
        rdb_buf_clear(&bf);
        int64_t sent = rdb_now_ns();
        CURLcode rc = curl_easy_perform(easy[cur]);
        int64_t now = rdb_now_ns();
        long status = 0;
        if (rc == CURLE_OK)
            curl_easy_getinfo(easy[cur], CURLINFO_RESPONSE_CODE, &status);
        int64_t kill_ns = atomic_load(&b->kill_ns);
        bool after = kill_ns != 0 && now > kill_ns;
        struct counts *c = after ? &b->after : &before_kill;
        if (rc == CURLE_OK && status >= 200 && status < 300) {
            atomic_fetch_add(&b->acks, 1);
            if (!after && now - sent > b->write_max_ns)
                b->write_max_ns = now - sent;
            /* The killed replica cannot answer after the kill: anything from
             * it was written before and only read late. */
            if (after && (int)cur != atomic_load(&b->killed) &&
                atomic_load(&b->first_ack_ns) == 0) {
                atomic_store(&b->first_ack_replica, (int)cur);
                atomic_store(&b->first_ack_ns, now);
            }
            c->ok++;
            fails = 0;
            continue;
        }
        if (rc == CURLE_OK && status == 307) {
            char *loc = NULL;
            curl_easy_getinfo(easy[cur], CURLINFO_REDIRECT_URL, &loc);
            int to = replica_of(b, loc);
            if (to >= 0) {
                c->redirects++;
                cur = (unsigned)to;
                continue;
            }
        }
        if (rc == CURLE_COULDNT_CONNECT)
            c->refused++;
        else if (rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR)
            c->reset++; /* the request in flight when its replica died */
        else if (rc == CURLE_OPERATION_TIMEDOUT)
            c->timeouts++;
        else if (rc == CURLE_OK && status == 503)
            c->unavailable++;
        else
            c->other++;
        cur = (cur + 1) % b->o.n;
        if (++fails % b->o.n == 0)
            rdb_sleep_ms(ROUND_PAUSE);
    }
out:
    for (unsigned i = 0; i < b->o.n; i++)
        if (easy[i])
            curl_easy_cleanup(easy[i]);
    curl_slist_free_all(hdrs);
    return NULL;
}

/* ---- the trial ------------------------------------------------------------------- */

static int run(struct bench *b)
{
    /* Every GET /health within PROBE_MS (rdb_health). */
    CURL *probe = curl_easy_init();
    if (probe == NULL)
        return 1;
    const char *urls[MAX_REPLICAS];
    for (unsigned i = 0; i < b->o.n; i++)
        urls[i] = b->o.r[i].url;
    struct rdb_health h;
    /* The leader, as the replicas say. */
    int leader = rdb_find_leader(probe, urls, b->o.n, PROBE_MS, 10000, &h);
    long long old_term = h.term;
    if (leader < 0) {
        fprintf(stderr, "failover: no replica says it leads\n");
        curl_easy_cleanup(probe);
        return 1;
    }
    if (pthread_create(&b->writer, NULL, writer_main, b) != 0) {
        curl_easy_cleanup(probe);
        return 1;
    }
    /* Writes flow, then the kill at a point that varies from trial to trial. */
    uint64_t seed = (uint64_t)b->o.trial * 0x9E3779B97F4A7C15ULL;
    seed ^= seed >> 29;
    unsigned jitter = b->o.jitter_ms ? (unsigned)(seed % (b->o.jitter_ms + 1)) : 0;
    int64_t end = rdb_now_ns() + 10000000000LL;
    while (atomic_load(&b->acks) == 0 && rdb_now_ns() < end && !rdb_interrupted)
        rdb_sleep_ms(5);
    uint64_t before = atomic_load(&b->acks);
    rdb_sleep_ms(b->o.warmup_ms + jitter);
    uint64_t warm = atomic_load(&b->acks) - before;
    int rc = 0;
    if (before == 0) {
        fprintf(stderr, "failover: no write was acknowledged before the kill\n");
        rc = 1;
    } else {
        /* Check the leader again just before: it may have changed meanwhile. */
        if (rdb_health(probe, urls[leader], PROBE_MS, &h) != 0 || strcmp(h.role, "leader") != 0) {
            int now_leader = rdb_find_leader(probe, urls, b->o.n, PROBE_MS, 0, &h);
            if (now_leader >= 0)
                leader = now_leader, old_term = h.term;
        }
        atomic_store(&b->killed, leader);
        int64_t kill_ns = rdb_now_ns();
        atomic_store(&b->kill_ns, kill_ns);
        if (kill(b->o.r[leader].pid, SIGKILL) != 0) {
            fprintf(stderr, "failover: kill %d: %s\n", (int)b->o.r[leader].pid, strerror(errno));
            rc = 1;
        }
    }
    /* Until the first acknowledgment after the kill: who says it leads, and when. */
    int64_t kill_ns = atomic_load(&b->kill_ns);
    int64_t elected_ns = 0, give_up = kill_ns + (int64_t)b->o.give_up_s * 1000000000;
    int new_leader = -1;
    long long new_term = 0;
    while (rc == 0 && atomic_load(&b->first_ack_ns) == 0 && rdb_now_ns() < give_up &&
           !rdb_interrupted) {
        for (unsigned i = 0; elected_ns == 0 && i < b->o.n; i++) {
            if ((int)i != leader && rdb_health(probe, urls[i], PROBE_MS, &h) == 0 &&
                strcmp(h.role, "leader") == 0 && h.term > old_term) {
                elected_ns = rdb_now_ns();
                new_leader = (int)i;
                new_term = h.term;
            }
        }
        rdb_sleep_ms(POLL_MS);
    }
    atomic_store(&b->stop, true);
    pthread_join(b->writer, NULL);
    int64_t ack_ns = atomic_load(&b->first_ack_ns);
    int ack_replica = atomic_load(&b->first_ack_replica);
    if (new_leader < 0 && ack_ns != 0) {
        /* Elected between two polls and acknowledged before the next. */
        new_leader = ack_replica;
        if (rdb_health(probe, urls[ack_replica], PROBE_MS, &h) == 0)
            new_term = h.term;
    }
    curl_easy_cleanup(probe);
    if (rc != 0)
        return rc;
    const struct counts *c = &b->after;
    char ack[32], elected[32];
    snprintf(ack, sizeof(ack), ack_ns ? "%.0f" : "none", (double)(ack_ns - kill_ns) / 1e6);
    snprintf(elected, sizeof(elected), elected_ns ? "%.0f" : "unseen",
             (double)(elected_ns - kill_ns) / 1e6);
    printf("TRIAL n=%u killed=%d old_term=%lld ack_ms=%s elected_ms=%s new_leader=%d "
           "new_term=%lld refused=%llu reset=%llu unavailable=%llu timeouts=%llu redirects=%llu "
           "other=%llu "
           "warm_writes=%llu warm_max_ms=%.1f\n",
           b->o.trial, leader + 1, old_term, ack, elected, new_leader + 1, new_term,
           (unsigned long long)c->refused, (unsigned long long)c->reset,
           (unsigned long long)c->unavailable, (unsigned long long)c->timeouts,
           (unsigned long long)c->redirects, (unsigned long long)c->other, (unsigned long long)warm,
           b->write_max_ns / 1e6);
    return ack_ns ? 0 : 4;
}

int main(int argc, char **argv)
{
    static struct bench b;
    if (parse_opts(argc, argv, &b.o) != 0)
        return 2;
    atomic_store(&b.killed, -1);
    atomic_store(&b.first_ack_replica, -1);
    if (rdb_init() != 0)
        return 1;
    int rc = run(&b);
    rdb_end();
    return rc;
}
