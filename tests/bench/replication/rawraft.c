/*
 * bench_replication_rawraft: the replication benchmark's raw libraft
 * reference (tests/bench/replication/run.sh starts three of these).
 *
 * One replica of a 3-voter cluster of the same patched libraft 0.22.1 that
 * recoveryd links, with recoveryd's settings (uv I/O with its fsync per
 * append, TCP transport, election 300 ms, heartbeat 50 ms, pre-vote, 256
 * entries in flight, snapshots every 65536 entries keeping 1024) and a state
 * machine that does nothing but count. No HTTP, no JSON, no encoding: the
 * library's own rate. The replica that wins the election keeps exactly N
 * raft_apply calls in flight (entries of --size bytes) for --duration seconds
 * after --warmup at each of --levels, measures each from the call to its
 * callback and prints, per level, the line loadgen.c prints:
 *
 *   RESULT target=libraft inflight=N ok=.. secs=.. rate=.. p50_us=.. p99_us=.. ...
 *
 * then exits 0; the others run until SIGTERM (exit 0).
 *
 *   bench_replication_rawraft --id 1 --dir D --peer 1=127.0.0.1:P1 --peer 2=... --peer 3=...
 *       [--levels 1,16,256] [--duration 10] [--warmup 1] [--size 256]
 *
 * Exit: 0, 1 on a raft error, 2 on bad usage.
 */
#include <getopt.h>
#include <raft.h>
#include <raft/uv.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define MAX_PEERS  5
#define MAX_LEVELS 8
#define MAX_SLOTS  4096
#define MAX_LAT    (1u << 22)

struct slot {
    struct raft_apply req;
    uint64_t t0;
};

static struct {
    uv_loop_t *loop;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct raft_fsm fsm;
    uint64_t applied;
    uv_timer_t tick;
    uv_signal_t term;
    unsigned id;
    unsigned n_peers;
    unsigned peer_id[MAX_PEERS];
    char peer_addr[MAX_PEERS][64];
    unsigned levels[MAX_LEVELS];
    unsigned n_levels;
    double duration, warmup;
    size_t size;
    /* the load, on the leader */
    bool running;
    unsigned level;
    unsigned depth;
    uint64_t start_ns, measure_ns, end_ns;
    struct slot slots[MAX_SLOTS];
    uint64_t *lat; /* µs, answers within the window */
    size_t n_lat;
    uint64_t errors;
    uint64_t cpu0_us;
    bool stopping;
    int rc;
} g;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    (void)fsm;
    (void)buf;
    g.applied++;
    *result = NULL;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
    (void)fsm;
    *bufs = raft_malloc(sizeof(**bufs));
    if (*bufs == NULL)
        return RAFT_NOMEM;
    (*bufs)[0].len = 8;
    (*bufs)[0].base = raft_malloc(8);
    if ((*bufs)[0].base == NULL)
        return RAFT_NOMEM;
    memcpy((*bufs)[0].base, &g.applied, 8);
    *n = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    (void)fsm;
    if (buf->len >= 8)
        memcpy(&g.applied, buf->base, 8);
    raft_free(buf->base);
    return 0;
}

static void close_all(void);

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(void)
{
    double secs = (double)(g.end_ns - g.measure_ns) / 1e9;
    qsort(g.lat, g.n_lat, sizeof(*g.lat), cmp_u64);
    uint64_t p50 = g.n_lat ? g.lat[(g.n_lat - 1) / 2] : 0;
    uint64_t p99 = g.n_lat ? g.lat[(size_t)((double)(g.n_lat - 1) * 0.99)] : 0;
    uint64_t max = g.n_lat ? g.lat[g.n_lat - 1] : 0;
    double sum = 0;
    for (size_t i = 0; i < g.n_lat; i++)
        sum += (double)g.lat[i];
    double rate = (double)g.n_lat / secs;
    double cpu = g.n_lat ? (double)(cpu_us() - g.cpu0_us) / (double)g.n_lat : 0;
    printf("libraft alone, %u in flight: %zu commits in %.2f s, %.1f/s, p50 %.2f ms, p99 %.2f ms, "
           "max %.2f ms, %llu errors, leader CPU %.1f us per commit\n",
           g.depth, g.n_lat, secs, rate, (double)p50 / 1000, (double)p99 / 1000, (double)max / 1000,
           (unsigned long long)g.errors, cpu);
    printf("RESULT target=libraft inflight=%u ok=%zu secs=%.3f rate=%.1f p50_us=%llu p99_us=%llu "
           "mean_us=%.0f max_us=%llu other=0 errors=%llu leader_cpu_us=%.1f\n",
           g.depth, g.n_lat, secs, rate, (unsigned long long)p50, (unsigned long long)p99,
           g.n_lat ? sum / (double)g.n_lat : 0, (unsigned long long)max,
           (unsigned long long)g.errors, cpu);
    fflush(stdout);
}

static void start_level(void);

static int send_one(unsigned k);

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)result;
    struct slot *s = req->data;
    uint64_t t = now_ns();
    if (status != 0) {
        g.errors++;
        fprintf(stderr, "rawraft: apply failed: %s\n", raft_strerror(status));
    } else if (t >= g.measure_ns && t <= g.end_ns && g.n_lat < MAX_LAT) {
        g.lat[g.n_lat++] = (t - s->t0) / 1000;
    }
    if (!g.running || g.stopping)
        return;
    if (t > g.end_ns) {
        /* The level is over once every slot came back. */
        s->t0 = 0;
        for (unsigned i = 0; i < g.depth; i++)
            if (g.slots[i].t0 != 0)
                return;
        g.running = false;
        report();
        g.level++;
        if (g.level < g.n_levels)
            start_level();
        else
            close_all();
        return;
    }
    if (send_one((unsigned)(s - g.slots)) != 0) {
        s->t0 = 0;
        g.rc = 1;
        close_all();
    }
}

static int send_one(unsigned k)
{
    struct slot *s = &g.slots[k];
    struct raft_buffer buf;
    buf.len = (g.size + 7) / 8 * 8;
    buf.base = raft_malloc(buf.len);
    if (buf.base == NULL)
        return RAFT_NOMEM;
    memset(buf.base, 'a' + (int)(k % 26), buf.len);
    s->req.data = s;
    s->t0 = now_ns();
    int rv = raft_apply(&g.raft, &s->req, &buf, 1, apply_cb);
    if (rv != 0) {
        raft_free(buf.base);
        fprintf(stderr, "rawraft: raft_apply: %s (%s)\n", raft_strerror(rv), raft_errmsg(&g.raft));
    }
    return rv;
}

static void start_level(void)
{
    g.depth = g.levels[g.level];
    g.n_lat = 0;
    g.errors = 0;
    g.start_ns = now_ns();
    g.measure_ns = g.start_ns + (uint64_t)(g.warmup * 1e9);
    g.end_ns = g.measure_ns + (uint64_t)(g.duration * 1e9);
    g.cpu0_us = 0;
    g.running = true;
    for (unsigned i = 0; i < g.depth; i++) {
        if (send_one(i) != 0) {
            g.rc = 1;
            close_all();
            return;
        }
    }
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
    if (g.running && g.cpu0_us == 0 && now_ns() >= g.measure_ns)
        g.cpu0_us = cpu_us();
    if (!g.running && g.level == 0 && raft_state(&g.raft) == RAFT_LEADER) {
        /* A first entry of this term commits before the load starts. */
        fprintf(stderr, "rawraft: replica %u leads; levels start\n", g.id);
        start_level();
    }
}

static void raft_closed(struct raft *r)
{
    (void)r;
    raft_uv_close(&g.io);
    raft_uv_tcp_close(&g.transport);
}

static void close_all(void)
{
    if (g.stopping)
        return;
    g.stopping = true;
    uv_timer_stop(&g.tick);
    uv_close((uv_handle_t *)&g.tick, NULL);
    uv_close((uv_handle_t *)&g.term, NULL);
    raft_close(&g.raft, raft_closed);
}

static void term_cb(uv_signal_t *s, int sig)
{
    (void)s;
    (void)sig;
    close_all();
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_replication_rawraft --id N --dir DIR --peer ID=HOST:PORT (x3)\n"
                    "       [--levels 1,16,256] [--duration S] [--warmup S] [--size BYTES]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *levels = "1,16,256";
    g.duration = 10;
    g.warmup = 1;
    g.size = 256;
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},       {"dir", required_argument, NULL, 'd'},
        {"peer", required_argument, NULL, 'p'},     {"levels", required_argument, NULL, 'l'},
        {"duration", required_argument, NULL, 't'}, {"warmup", required_argument, NULL, 'w'},
        {"size", required_argument, NULL, 's'},     {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            g.id = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'd':
            dir = optarg;
            break;
        case 'p': {
            unsigned id;
            char addr[64];
            if (g.n_peers == MAX_PEERS || sscanf(optarg, "%u=%63s", &id, addr) != 2 || id == 0)
                usage();
            g.peer_id[g.n_peers] = id;
            snprintf(g.peer_addr[g.n_peers], sizeof(g.peer_addr[0]), "%s", addr);
            g.n_peers++;
            break;
        }
        case 'l':
            levels = optarg;
            break;
        case 't':
            g.duration = atof(optarg);
            break;
        case 'w':
            g.warmup = atof(optarg);
            break;
        case 's':
            g.size = (size_t)strtoul(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    for (const char *p = levels; *p && g.n_levels < MAX_LEVELS;) {
        unsigned n = (unsigned)strtoul(p, NULL, 10);
        if (n == 0 || n > MAX_SLOTS)
            usage();
        g.levels[g.n_levels++] = n;
        p = strchr(p, ',');
        if (p == NULL)
            break;
        p++;
    }
    const char *self = NULL;
    for (unsigned i = 0; i < g.n_peers; i++)
        if (g.peer_id[i] == g.id)
            self = g.peer_addr[i];
    if (dir == NULL || self == NULL || g.n_levels == 0 || g.duration <= 0 || g.size == 0)
        usage();
    g.lat = malloc(MAX_LAT * sizeof(*g.lat));
    if (g.lat == NULL)
        return 1;
    g.loop = uv_default_loop();
    g.fsm.version = 1;
    g.fsm.apply = fsm_apply;
    g.fsm.snapshot = fsm_snapshot;
    g.fsm.restore = fsm_restore;
    int rv;
    g.transport.version = 1; /* raft_uv_init refuses a transport without one */
    if ((rv = raft_uv_tcp_init(&g.transport, g.loop)) != 0 ||
        (rv = raft_uv_init(&g.io, g.loop, dir, &g.transport)) != 0) {
        fprintf(stderr, "rawraft: raft_uv_init in %s: %s\n", dir, raft_strerror(rv));
        return 1;
    }
    raft_uv_set_auto_recovery(&g.io, false);
    if ((rv = raft_init(&g.raft, &g.io, &g.fsm, g.id, self)) != 0) {
        fprintf(stderr, "rawraft: raft_init: %s\n", raft_strerror(rv));
        return 1;
    }
    raft_set_election_timeout(&g.raft, 300);
    raft_set_heartbeat_timeout(&g.raft, 50);
    raft_set_pre_vote(&g.raft, true);
    raft_set_max_inflight_entries(&g.raft, 256);
    raft_set_snapshot_threshold(&g.raft, 65536);
    raft_set_snapshot_trailing(&g.raft, 1024);
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    for (unsigned i = 0; i < g.n_peers; i++)
        if ((rv = raft_configuration_add(&conf, g.peer_id[i], g.peer_addr[i], RAFT_VOTER)) != 0)
            return 1;
    rv = raft_bootstrap(&g.raft, &conf);
    raft_configuration_close(&conf);
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
        fprintf(stderr, "rawraft: raft_bootstrap: %s\n", raft_strerror(rv));
        return 1;
    }
    if ((rv = raft_start(&g.raft)) != 0) {
        fprintf(stderr, "rawraft: raft_start: %s (%s)\n", raft_strerror(rv), raft_errmsg(&g.raft));
        return 1;
    }
    uv_timer_init(g.loop, &g.tick);
    uv_timer_start(&g.tick, tick_cb, 10, 10);
    uv_signal_init(g.loop, &g.term);
    uv_signal_start(&g.term, term_cb, SIGTERM);
    uv_run(g.loop, UV_RUN_DEFAULT);
    uv_loop_close(g.loop);
    free(g.lat);
    return g.rc;
}
