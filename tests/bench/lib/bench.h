/*
 * What the benchmarks' load generators (tests/bench/<name>/) have in common:
 * process set-up, clocks, option parsing, a reproducible random source,
 * RFC 3339 times, nearest-rank statistics and histograms, response buffers
 * for libcurl, HTTP handles and their finished transfers, opening HTTP/2
 * connections with the libcurl 7.88 workaround, and what an agent reads in
 * the engine's answers. Prefix rdb_.
 * Monotonic milliseconds come from rdtestlib: rdt_now_ms() (tests/lib/harness.h).
 *
 * Not thread-safe unless said otherwise; the clocks, rdb_sleep_*, rdb_uniform
 * on a caller's own state and the buffer functions may be used from any thread.
 */
#ifndef RDB_BENCH_H
#define RDB_BENCH_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <curl/curl.h>
#include <jansson.h>

/* ---- the process ----------------------------------------------------------- */

/* Set once SIGINT or SIGTERM arrives (after rdb_init()): loops end early and
 * the report still prints. */
extern volatile sig_atomic_t rdb_interrupted;

/*
 * What every load generator does before its run: SIGINT and SIGTERM set
 * rdb_interrupted, SIGPIPE is ignored, the soft limit on open files is raised
 * to the hard one (one port or connection per agent), stdout is line-buffered
 * (the run scripts read it as it comes) and libcurl is initialised. 0, or -1
 * when libcurl cannot be.
 */
int rdb_init(void);

/* libcurl's global cleanup, at the end of main. */
void rdb_end(void);

/* CPU this process used so far, user and system, in seconds. */
void rdb_self_cpu(double *user_s, double *system_s);

/* Prints "\nload generator CPU: U s user + S s system\n". */
void rdb_print_self_cpu(void);

/* The process's CPU (every thread's) from a moment on: rdb_cpu_mark takes
 * the moment, rdb_cpu_since what was used since (wall-clock `secs` on the
 * monotonic clock), rdb_print_cpu_since prints "load generator CPU while
 * measuring: ..." with the CPU per request of the `requests` that ended
 * since (nothing when the moment was not taken: at_ms 0). */
struct rdb_cpu_mark {
    double user_s, system_s;
    int64_t at_ms; /* monotonic ms (rdb_now_ns); 0: not taken */
};
struct rdb_cpu_used {
    double user_s, system_s, secs;
};
void rdb_cpu_mark(struct rdb_cpu_mark *m);
struct rdb_cpu_used rdb_cpu_since(const struct rdb_cpu_mark *m);
void rdb_print_cpu_since(const struct rdb_cpu_mark *m, uint64_t requests);

/* ---- clocks ---------------------------------------------------------------- */

/* Monotonic nanoseconds. */
int64_t rdb_now_ns(void);

/* Wall-clock milliseconds since the epoch (to compare with the engine's stamps). */
int64_t rdb_wall_ms(void);

/*
 * Sleep until the monotonic time `deadline_ns`, or for `ms`; both return at
 * once when rdb_interrupted is set (rdt_sleep_ms() sleeps on: a benchmark
 * stops on Ctrl-C). For pacing only, never instead of waiting for a condition.
 */
void rdb_sleep_until_ns(int64_t deadline_ns);
void rdb_sleep_ms(int64_t ms);

/* ---- options, randomness, times ---------------------------------------------- */

/* A decimal in [min, max] filling the whole of `s`; false otherwise. */
bool rdb_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);

/*
 * One long option of a load generator, for rdb_parse_opts(); exactly one of
 * num (a decimal in [min, max]), str (the argument as given), flag (no
 * argument: set to true) and fn (false when the argument is bad; given the
 * ctx of rdb_parse_opts) is set. A list of them ends with a NULL name.
 */
struct rdb_opt {
    const char *name; /* without the leading "--" */
    unsigned *num;
    unsigned min, max;
    const char **str;
    bool *flag;
    bool (*fn)(const char *arg, void *ctx);
};

/*
 * Parses the long options in argv by `opts`. --help prints usage(stdout) and
 * exits 0. 0, or -1 on an unknown option, a missing or bad value or an
 * argument that is not an option (the caller prints usage(stderr) and exits 2).
 */
int rdb_parse_opts(int argc, char **argv, const struct rdb_opt *opts, void *ctx,
                   void (*usage)(FILE *f));

/* The state of rdb_uniform() for a given seed (never 0). */
uint64_t rdb_seed(uint64_t seed);

/* xorshift64*: uniform in [lo, hi), reproducible for a given seed. */
double rdb_uniform(uint64_t *state, double lo, double hi);

/* interval_ms +/- a uniform jitter_ms, rounded to the millisecond. */
int64_t rdb_jittered_ms(uint64_t *state, unsigned interval_ms, unsigned jitter_ms);

/*
 * RFC 3339 UTC as the engine writes it ("2026-11-24T03:04:05.123Z"; more
 * fraction digits are cut to milliseconds, fewer padded) to milliseconds
 * since the epoch. 0, or -1 when `s` is NULL or not that shape.
 */
int rdb_parse_time(const char *s, int64_t *ms);

/* The reverse: "2026-11-24T03:04:05.123Z" into `out` (30 bytes are enough). */
void rdb_format_time(int64_t ms, char *out, size_t len);

/* ---- statistics -------------------------------------------------------------- */

/* Sorts `n` values in ascending order. */
void rdb_sort_i64(int64_t *v, size_t n);

/* Nearest-rank quantile q (0-1) of the `n` sorted values; 0 when n is 0. */
int64_t rdb_quantile(const int64_t *sorted, size_t n, double q);

/* p50, p99 and max of `n` values out of `of` expected (the rest never came). */
struct rdb_lat {
    size_t n, of;
    int64_t p50, p99, max;
};

/* Sorts v[0..n) in place and takes its nearest-rank p50, p99 and max (all 0
 * when n is 0). */
struct rdb_lat rdb_lat_of(int64_t *v, size_t n, size_t of);

/*
 * A histogram of microseconds in RDB_HIST_SLOTS slots of width_us each;
 * what lies beyond them counts in `over` (and max_us). Zeroed, then width_us
 * set (rdb_hist_init).
 */
#define RDB_HIST_SLOTS 40000

struct rdb_hist {
    unsigned width_us;
    uint64_t n, over;
    int64_t max_us;
    uint32_t slot[RDB_HIST_SLOTS];
};

void rdb_hist_init(struct rdb_hist *h, unsigned width_us);
/* Adds one value (a negative one as 0). */
void rdb_hist_add(struct rdb_hist *h, int64_t us);
/* The upper edge of the slot holding nearest-rank quantile q (0-1); the max
 * when it lies beyond the last slot; 0 when empty. */
int64_t rdb_hist_quantile(const struct rdb_hist *h, double q);
/* Adds `from` to `to` (of the same width). */
void rdb_hist_merge(struct rdb_hist *to, const struct rdb_hist *from);

/* ---- a queue of due times ------------------------------------------------------- */

/*
 * What is due next among many (agents' heartbeats, tasks' checkpoints): a
 * binary min-heap of (due, index), so a load generator's cost per event does
 * not grow with the fleet (a walk over every agent per loop turn does).
 */
struct rdb_due {
    int64_t due;
    unsigned idx;
};

struct rdb_dueq {
    struct rdb_due *v;
    size_t n, cap;
};

/* Room for `cap` entries (it never grows): 0, or -1 when out of memory. */
int rdb_dueq_init(struct rdb_dueq *q, size_t cap);
void rdb_dueq_free(struct rdb_dueq *q);
/* Adds `idx` due at `due`; false when full. */
bool rdb_dueq_push(struct rdb_dueq *q, int64_t due, unsigned idx);
/* The earliest entry into *out, taken out when its due is at or before
 * `now`: true then; false (and *out the earliest, if any) otherwise. */
bool rdb_dueq_pop_due(struct rdb_dueq *q, int64_t now, struct rdb_due *out);

/* ---- response buffers ---------------------------------------------------------- */

/*
 * A response body, NUL-terminated, filled by rdb_buf_write (a libcurl
 * CURLOPT_WRITEFUNCTION with CURLOPT_WRITEDATA = the buffer). A zeroed one
 * grows with realloc (release it with rdb_buf_free); one made by
 * rdb_buf_fixed() keeps the first size - 1 bytes in the caller's storage and
 * drops the rest (answers of which only the start matters).
 */
struct rdb_buf {
    char *p; /* NULL until something arrived (growing) */
    size_t len, cap;
    bool fixed;
};

void rdb_buf_fixed(struct rdb_buf *b, char *storage, size_t size);
size_t rdb_buf_write(char *data, size_t size, size_t n, void *buf);
/* Empties it for the next answer (keeps its memory). */
void rdb_buf_clear(struct rdb_buf *b);
/* Frees what a growing buffer holds and zeroes it; a fixed one is only emptied. */
void rdb_buf_free(struct rdb_buf *b);

/* ---- HTTP handles ------------------------------------------------------------- */

/*
 * A handle for a multi loop: HTTP `version` (rdb_h2_version() or
 * CURL_HTTP_VERSION_1_1), the headers `hdrs` (may be NULL), no signals,
 * `timeout_ms` per transfer, CURLOPT_PRIVATE `priv`, the answer into `resp`
 * (rdb_buf_write), and over HTTP/2 waiting for a multiplexed connection
 * rather than opening another (PIPEWAIT). NULL when out of memory.
 */
CURL *rdb_easy_new(long version, struct curl_slist *hdrs, long timeout_ms, void *priv,
                   struct rdb_buf *resp);

/*
 * A handle for blocking requests: HTTP/1.1, no signals, `timeout_ms` for the
 * whole request and for connecting, the headers `hdrs` (may be NULL), the
 * answer into `resp`.
 */
void rdb_easy_blocking(CURL *e, long timeout_ms, struct curl_slist *hdrs, struct rdb_buf *resp);

/*
 * One blocking request on `e`, reset first (its connection is kept) and set
 * up by rdb_easy_blocking(): `method` (GET, POST, PUT...) on `url` with the
 * JSON `body` (NULL: none), the answer in `resp` (emptied first). The HTTP
 * status, or -1 when no answer came.
 */
long rdb_request(CURL *e, const char *method, const char *url, const char *body,
                 struct curl_slist *hdrs, long timeout_ms, struct rdb_buf *resp);

/* A finished transfer of a multi handle. */
struct rdb_done {
    CURL *easy;
    void *priv;    /* its CURLOPT_PRIVATE */
    CURLcode rc;   /* the transfer's result */
    long status;   /* the HTTP status; 0 unless rc is CURLE_OK */
    int64_t us;    /* its total time */
    int64_t rx_us; /* to the answer's arrival at the socket (h2c's rx_us); `us` when not known */
};

/* The next finished transfer of `multi`, removed from it: true with `d`
 * filled, false when none is left. */
bool rdb_next_done(CURLM *multi, struct rdb_done *d);

/* ---- HTTP/2 -------------------------------------------------------------------- */

/*
 * HTTP/2 with prior knowledge where libcurl can reuse such a connection.
 * libcurl before 8.0.0 (Debian 12 ships 7.88.1) fails every request after the
 * first on a prior-knowledge connection ("Error in the HTTP2 framing layer",
 * curl/curl#10634, fixed by #10643). There a connection is upgraded instead
 * (h2c) by a first request without a body (rdb_h2_open) and every later
 * request is multiplexed on it; one connection only, because pre-opened
 * spares would idle out and a POST that opens a new connection by upgrade
 * while others are busy can fail ("Transferred a partial file").
 */
bool rdb_h2_prior_knowledge(void);

/* CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE where it works, CURL_HTTP_VERSION_2_0 (upgrade) else. */
long rdb_h2_version(void);

/* How many connections to open: `want` with prior knowledge, 1 with an upgrade. */
int rdb_h2_conns(int want);

/* A multi handle that multiplexes HTTP/2 streams over at most
 * rdb_h2_conns(want) connections per host. NULL on failure. */
CURLM *rdb_h2_multi(int want);

/*
 * Opens `n` HTTP/2 connections of `multi` (whose CURLMOPT_MAX_HOST_CONNECTIONS
 * allows them) to `base_url`, each by a GET of base_url/health without
 * PIPEWAIT, so that each takes a connection of its own and none is opened
 * later by a request with a body. Waits 10 s at most. Returns how many
 * answered over HTTP/2; prints on stderr why each other one did not. Call it
 * before any other transfer is added to `multi` (it reads its messages).
 */
int rdb_h2_open(CURLM *multi, const char *base_url, int n);

/*
 * The same for one connection without waiting, for a loop that drives
 * `multi` itself (a load generator that reopens its connection while it
 * runs): rdb_h2_opening_start adds the GET of base_url/health to `multi`
 * (nothing else may be in it until the opening is done, as above), to be
 * connected within RDB_H2_CONNECT_MS and answered within `timeout_ms`; 0, or
 * -1 when it could not be added. The caller hands the finished transfer it
 * reads (rdb_next_done, d->easy == o->easy) to rdb_h2_opening_done: true when
 * the connection speaks HTTP/2 (the transfer's resources are freed either
 * way). rdb_h2_opening_cancel takes an opening still under way out of
 * `multi` (nothing when none is).
 */
#define RDB_H2_CONNECT_MS 1000

struct rdb_h2_opening {
    CURL *easy; /* NULL: none under way */
};

int rdb_h2_opening_start(struct rdb_h2_opening *o, CURLM *multi, const char *base_url,
                         long timeout_ms);
bool rdb_h2_opening_done(struct rdb_h2_opening *o, const struct rdb_done *d);
void rdb_h2_opening_cancel(struct rdb_h2_opening *o, CURLM *multi);

/* ---- what an agent reads ----------------------------------------------------- */

/* The tasks the benchmarks submit are named by index: TASK_PREFIX and 12 digits. */
#define RDB_TASK_PREFIX "00000000-0000-4000-8000-"

/* Task `i`'s id into `out` (37 bytes are enough). */
void rdb_task_id(unsigned i, char *out, size_t len);

/* The index in a task id made by rdb_task_id, or UINT32_MAX when `id` is
 * NULL or not one. */
unsigned rdb_task_index(const char *id);

/* A task as a simulated agent holds it: the attempt it was handed is its
 * fencing token. */
struct rdb_hold {
    unsigned task; /* its index (rdb_task_index) */
    uint32_t attempt;
    uint64_t version; /* the last acknowledged (or handed over) version */
    int64_t due;      /* its next write, monotonic ms */
    bool active, in_flight, completing;
};

/*
 * Where an agent holding holds[0..*n) (room for `cap`) keeps a newly handed
 * (task, attempt): the slot of that task's older attempt, else a slot
 * neither active nor in flight, else a new one (*n grows). -1 when it holds
 * that attempt or a newer one already (handed over again until its first
 * checkpoint commits: nothing to do), -2 when every slot is taken.
 */
int rdb_hold_slot(struct rdb_hold *holds, unsigned *n, unsigned cap, unsigned task,
                  uint32_t attempt);

/* The epoch of a registration's answer: its "epoch" when `status` is 201
 * with JSON, else 0. */
long long rdb_epoch_of(long status, const char *body);

/* One entry of a heartbeat answer's "assignments". */
struct rdb_assignment {
    const char *task_id;
    long long attempt;
    uint64_t version; /* of its checkpoint; 0 when it has none */
};

/*
 * A heartbeat's 200 answer `body`: hands each of its "assignments" to
 * take() and each task id in "revoked" to drop(), with `ctx`. When both are
 * empty, as in almost every answer, nothing is parsed.
 */
void rdb_heartbeat_answer(const char *body, void (*take)(void *ctx, const struct rdb_assignment *a),
                          void (*drop)(void *ctx, const char *task_id), void *ctx);

/* ---- replicas --------------------------------------------------------------- */

/* What a replica says of itself in GET /health. */
struct rdb_health {
    char role[16]; /* "leader", "follower", "candidate"...; "?" when absent */
    long long term, replica_id;
};

/*
 * GET base_url/health on `e` (reset first; its connection is kept), over
 * HTTP/1.1 within `timeout_ms` (connecting included). 0 with `out` filled
 * when the answer was 200 with JSON; -1 otherwise (out->role is "?").
 */
int rdb_health(CURL *e, const char *base_url, long timeout_ms, struct rdb_health *out);

/*
 * Asks each of the `n` replicas in turn until one says it leads, pausing
 * 50 ms between rounds, for `timeout_ms` at most or until rdb_interrupted
 * (each request within `request_ms`). The leader's index, its answer in
 * `out`; -1 when none said so.
 */
int rdb_find_leader(CURL *e, const char *const *urls, unsigned n, long request_ms,
                    int64_t timeout_ms, struct rdb_health *out);

/* ---- following the leader ------------------------------------------------------ */

/*
 * Where a load generator sends its writes when the cluster's leader changes
 * under it: a follower answers 307 (Location and details.leader name the
 * leader), 503 not_leader during an election (details.leader when known) and
 * 503 no_quorum when it cannot reach a majority; a killed leader refuses
 * connections, a stopped one never answers. The load generator asks
 * rdb_not_leader() of each answer and tells rdb_leader_refused() or
 * rdb_leader_failed(); the base URL moves to the leader named, or else to the
 * next replica of its list (no more than once per RDB_LEADER_RETRY_MS), and
 * the generation goes up: each worker then reopens its connections to the
 * new base URL and sends again what was refused. The time without a leader
 * runs from the first refusal (or failure) to the next answer that is not
 * one (rdb_leader_ok). Thread-safe (one mutex; rdb_leader_ok and
 * rdb_leader_gen take it only during an outage).
 */
#define RDB_URL_MAX         256
#define RDB_MAX_REPLICAS    16
#define RDB_LEADER_RETRY_MS 200  /* between two tries of the next replica */
#define RDB_LEADER_STALL_MS 2000 /* without an answer before a timeout means a lost leader */
#define RDB_LEADER_DEAD_MS  1000 /* a replica found unreachable is not taken back for this long */

struct rdb_leader {
    pthread_mutex_t mu;
    char urls[RDB_MAX_REPLICAS][RDB_URL_MAX]; /* the replicas given */
    unsigned n;
    char url[RDB_URL_MAX];      /* the base URL in use */
    int idx;                    /* its index in urls; -1 when named and not among them */
    _Atomic unsigned gen;       /* goes up at each switch; starts at 1 */
    _Atomic int64_t down_since; /* monotonic ms of the outage's first refusal; 0: none */
    _Atomic int64_t last_ok;    /* monotonic ms of the last answer from a leader */
    int64_t last_switch;
    char dead[RDB_URL_MAX]; /* the last one found unreachable, and when */
    int64_t dead_at;
    unsigned switches, named, tried, outages;
    int64_t leaderless_ms, longest_ms; /* the outages' total and longest */
};

/* From a comma-separated list of base URLs (the first is where it starts;
 * a trailing "/" is dropped). 0, or -1 when the list is empty, too long or
 * holds an empty or overlong URL (rdb_leader_free it all the same). */
int rdb_leader_init(struct rdb_leader *l, const char *list, int64_t now_ms);
void rdb_leader_free(struct rdb_leader *l);

/* The generation in use and its base URL into `url`. */
unsigned rdb_leader_get(struct rdb_leader *l, char *url, size_t len);
unsigned rdb_leader_gen(struct rdb_leader *l);

/*
 * Whether an answer (HTTP `status`, `body` possibly cut short) refuses for
 * want of a leader: 307, 503 not_leader or 503 no_quorum. The leader's base
 * URL it names (details.leader) into `leader` ("" when none or unreadable).
 */
bool rdb_not_leader(long status, const char *body, char *leader, size_t len);

/*
 * A request sent on generation `gen` was refused by rdb_not_leader(), naming
 * `leader` (NULL or "": none). Starts an outage, and moves to the leader
 * named (unless that one was found unreachable in the last
 * RDB_LEADER_DEAD_MS: followers name their old leader until they elect
 * another) or else to the next replica, unless `gen` is no longer the one in
 * use or the last try of a replica was less than RDB_LEADER_RETRY_MS ago.
 * True when it switched now.
 */
bool rdb_leader_refused(struct rdb_leader *l, unsigned gen, const char *leader, int64_t now_ms);

/*
 * A request sent on generation `gen` got no answer (transport result `rc`):
 * a refused connection, or any other failure once no answer came for
 * RDB_LEADER_STALL_MS, counts as rdb_leader_refused() without a name; other
 * failures (one timeout on a busy leader) change nothing. True when the
 * request should be sent again: `gen` is no longer (or now not) the one in
 * use.
 */
bool rdb_leader_failed(struct rdb_leader *l, unsigned gen, CURLcode rc, int64_t now_ms);

/* An answer that is no refusal came (any status below 500): ends the outage. */
void rdb_leader_ok(struct rdb_leader *l, int64_t now_ms);

/* Prints "leader: ..." with the switches and the time without a leader. */
void rdb_leader_print(struct rdb_leader *l, int64_t now_ms);

/*
 * Puts `url`'s path from "/api/" on (its whole path when it has no "/api/")
 * behind `base`, in place (`len` bytes). 0, or -1 when it would not fit
 * (unchanged then).
 */
int rdb_rebase_url(char *url, size_t len, const char *base);

#endif
