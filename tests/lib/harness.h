/*
 * Integration test harness: runs the real `recoveryd` binary (RD_BINARY) in a
 * temporary directory on free loopback ports and talks to it over real
 * sockets with libcurl (HTTP/1.1 and HTTP/2 with prior knowledge).
 *
 * Every function returns 0 on success and -1 on failure after printing why
 * on stderr (with the tail of the daemon's log when the daemon is involved).
 * The harness never uses cmocka's assertions, so tests decide what a failure
 * means. Single-threaded: call everything from the test's main thread.
 *
 * The harness only ever signals processes it spawned itself (`p->pid`), and
 * forgets a pid as soon as it has reaped it, so a recycled pid is never hit.
 * Set RDT_KEEP=1 in the environment to keep the temporary directories.
 */
#ifndef RDT_HARNESS_H
#define RDT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <jansson.h>

#ifndef RD_BINARY
#error "RD_BINARY (path of the built recoveryd) must be defined"
#endif
#ifndef RD_SOURCE_DIR
#error "RD_SOURCE_DIR (repository root) must be defined"
#endif

/* ---- daemon processes ---------------------------------------------------- */

/*
 * One daemon under test. Zero it (`struct rdt_proc p = {0};`) before the first
 * rdt_proc_start(); the paths and ports are filled in then and kept for every
 * restart, so a restarted daemon finds its data and answers on the same URL.
 */
struct rdt_proc {
    pid_t pid;               /* > 0 while the daemon runs (not yet reaped) */
    char dir[256];           /* temporary directory holding everything below */
    char data_dir[300];      /* DIR/data, passed as --data-dir */
    char config_path[300];   /* DIR/config.yaml, passed as --config */
    char log_path[300];      /* DIR/recoveryd.log: stdout + stderr, appended */
    uint16_t port;           /* API port on 127.0.0.1, passed as --listen */
    uint16_t raft_port;      /* cluster.raft_address port on 127.0.0.1 */
    char base_url[64];       /* "http://127.0.0.1:PORT" */
    char extra_yaml[4096];   /* top-level YAML sections appended to config.yaml */
    int exit_code;           /* last reaped exit code (128 + signal); -1 until one is */
    char plugins_dir[300];   /* --plugins-dir; "" = the build's plugins (rdt_plugins_dir()) */
    char policies_dir[300];  /* --policies-dir; "" = the repository's policies/ */
    char cluster_yaml[2048]; /* lines under `cluster:` after raft_address (replica_id,
                                peers, join, timeouts), each indented two spaces */
    char host[48];           /* address the API and raft listen on; "" = 127.0.0.1. Set
                                before rdt_proc_prepare(): base_url is made from it */
    char netns[32];          /* network namespace (as `ip netns` names it) the daemon
                                runs in; "" = the test's own (see rdt_net_setup()) */
    unsigned max_files;      /* RLIMIT_NOFILE of the daemon (soft and hard); 0 = inherited */
    char extra_arg[64];      /* one more command-line argument ("--force-new-cluster"); "" = none */
    bool errors_expected;    /* the test provokes level=error lines: rdt_proc_cleanup() lets
                                them pass (sanitizer reports never pass) */
    char binary[300];        /* the daemon to run; "" = RD_BINARY (recoveryd). RD_BINARY_FI is
                                the fault-injection build with its /debug/ routes */
    char logging_yaml[256];  /* lines under `logging:` ("  format: json\n"), each indented two
                                spaces; `level: debug` unless they set the level */
    bool fresh_ports;        /* the harness drew port and raft_port for the last
                                rdt_proc_start() (nothing had set them): until
                                rdt_wait_ready() succeeds, a daemon that exits because another
                                process took one of them is started again on new ones */
    int ports_lost;          /* starts that exited that way (their "already in use" error
                                lines then pass rdt_proc_cleanup()'s check) */
    long log_mark_;          /* size of the log when the daemon was last spawned */
};

/*
 * Starts the daemon (working directory DIR, so relative defaults such as
 * policies.dir resolve inside it) and waits (15 s at most) until GET /health
 * answers 200 from it (the listening socket of its port is the daemon's own,
 * not that of another process which took the port).
 * On first use creates the temporary directory (under $TMPDIR or /tmp), picks
 * two free loopback ports and creates DIR/data. Another process (a daemon of
 * a test running in parallel) may take a picked port before the daemon binds
 * it: the daemon then exits ("... is already in use by another process"),
 * and when this start picked the ports (`fresh_ports`), the harness draws new
 * ones, empties DIR/data and starts it again, up to 3 times, here or in
 * rdt_wait_ready(). Ports set before the start (rdt_proc_prepare(), an
 * earlier start, a restart) never move. Every call (re)writes
 * config.yaml: `cluster.raft_address`, `logging.level: debug`, then
 * `extra_yaml` (NULL for none), which holds further top-level sections such as
 * `fault_tolerance:` or `server:` (not `cluster:` or `logging:`, which the
 * harness writes). The daemon must not be running. Returns 0 or -1; on -1 no
 * process is left running.
 */
int rdt_proc_start(struct rdt_proc *p, const char *extra_yaml);

/*
 * Creates the temporary directory, DIR/data and the ports without starting
 * the daemon, so a test can put something under DIR/data first (a small
 * filesystem, say). rdt_proc_start() then uses them. 0 or -1.
 */
int rdt_proc_prepare(struct rdt_proc *p);

/*
 * The CA file trusted for https:// URLs (NULL: the system's). A test of a
 * TLS daemon sets it and rewrites p->base_url to https:// after
 * rdt_proc_prepare(); every helper then speaks TLS (HTTP/2 by ALPN).
 */
extern const char *rdt_tls_ca;

/*
 * Credentials every request of the helpers sends when set: a bearer token
 * (the secret; NULL: no Authorization header) and, over https://, a client
 * certificate and its key (PEM paths; NULL: none).
 */
extern const char *rdt_bearer;
extern const char *rdt_client_cert;
extern const char *rdt_client_key;

/* The build's plugin directory (passed to every daemon as --plugins-dir). */
const char *rdt_plugins_dir(void);

/* Starts the daemon again with the same directory, ports and config file. */
int rdt_proc_restart(struct rdt_proc *p);

/* Sends `sig` to the running daemon. 0, or -1 when it is not running. */
int rdt_proc_signal(struct rdt_proc *p, int sig);

/* SIGKILL and reap. 0, or -1 when it was not running. */
int rdt_proc_kill9(struct rdt_proc *p);

/*
 * Waits up to `timeout_ms` for the daemon to exit on its own and reaps it.
 * Returns its exit code (128 + signal number when a signal ended it), also
 * stored in `*exit_status` when not NULL; -1 when it did not exit in time
 * (it is then left running) or was not running.
 */
int rdt_proc_wait(struct rdt_proc *p, int timeout_ms, int *exit_status);

/*
 * SIGTERM, then waits up to 20 s for the exit. Returns the exit code as
 * rdt_proc_wait() does, also in `*exit_status` when not NULL; on -1 (no exit
 * in time) the daemon has been killed with SIGKILL and its log tail printed.
 */
int rdt_proc_stop(struct rdt_proc *p, int *exit_status);

/* True while the daemon runs; reaps it (and forgets its pid) once it exited. */
bool rdt_proc_alive(struct rdt_proc *p);

/*
 * Stops the daemon if it runs (SIGTERM, as rdt_proc_stop()) and removes its
 * directory (unless RDT_KEEP). Fails the running test (cmocka) when the
 * daemon exited non-zero at SIGTERM (a sanitizer's report, a failed
 * shutdown) or its log has a sanitizer's report or, unless `errors_expected`,
 * a level=error line; the directory is then kept and its path printed.
 */
void rdt_proc_cleanup(struct rdt_proc *p);

/* Whole log file, NUL-terminated; the caller frees it. NULL on error. */
char *rdt_proc_log(const struct rdt_proc *p);
/* True when p's log (as it is now) contains `needle`. */
bool rdt_proc_log_has(const struct rdt_proc *p, const char *needle);

/* Prints the last `lines` lines of the daemon's log on stderr. */
void rdt_proc_print_log_tail(const struct rdt_proc *p, int lines);
/* Waits (up to timeout_ms: callers scale it, rdt_ms) until a line of p's log
 * contains `needle`: 0, or -1 with the log's tail printed when it never
 * came or the daemon exited first. */
int rdt_await_log(struct rdt_proc *p, const char *needle, int timeout_ms);

/*
 * A cmocka setup's daemon: a new rdt_proc in *state, started with `yaml` and
 * ready within `timeout_ms`. 0, or -1 with *state NULL and nothing left.
 */
int rdt_setup_ready(void **state, const char *yaml, int timeout_ms);

/* Polls GET /ready until it answers 200. 0, or -1 after `timeout_ms`. A
 * daemon that exits meanwhile because it lost a port it was started on
 * fresh (`fresh_ports`) is started again on new ones, and waited for again. */
int rdt_wait_ready(struct rdt_proc *p, int timeout_ms);

/*
 * First line of `log` that reports an error: a structured line with
 * `level=error`, or a sanitizer report. Returns a malloc'd copy of that line
 * (the caller frees it) or NULL when there is none.
 */
char *rdt_log_error_line(const char *log);

/* ---- HTTP client ----------------------------------------------------------- */

enum rdt_proto {
    RDT_H1, /* HTTP/1.1 */
    RDT_H2, /* HTTP/2 over cleartext, prior knowledge (no Upgrade) */
};

/*
 * A response. The request functions overwrite it whole (free a previous
 * response in it first); release it with rdt_resp_free(). The fields after
 * `allow` are the harness's bookkeeping, readable by tests.
 */
struct rdt_resp {
    long status;            /* HTTP status, 0 when no status line arrived */
    long http_version;      /* CURL_HTTP_VERSION_1_1 or CURL_HTTP_VERSION_2_0 */
    char *body;             /* NUL-terminated (NULL when empty) */
    size_t body_len;        /* without the NUL */
    json_t *json;           /* parsed body, or NULL when it is not JSON */
    char content_type[128]; /* header values, "" when absent */
    char retry_after[32];
    char allow[128];
    char location[256];
    char applied_index[32];           /* X-Recoveryd-Applied-Index */
    char www_authenticate[128];       /* WWW-Authenticate */
    char request_id[64];              /* X-Request-Id */
    int curl_code;                    /* CURLcode of the transfer */
    char curl_error[CURL_ERROR_SIZE]; /* curl's message when curl_code != 0 */
    size_t body_cap_;
    struct curl_slist *req_headers_;
};

/*
 * One request on a new connection. `body` (may be NULL) is sent as-is with
 * `Content-Type: application/json`; the URL path is sent as written (no dot
 * segment squashing), so tests may send percent-encoded ids. Returns 0 when a
 * complete response arrived (whatever its status), -1 otherwise (`out` still
 * holds what is known, and must still be freed).
 */
int rdt_http(enum rdt_proto proto, const char *method, const char *url, const char *body,
             size_t body_len, struct rdt_resp *out);

/* Releases what `r` holds and zeroes it. */
void rdt_resp_free(struct rdt_resp *r);

/* rdt_http() on p->base_url + `path`. `json_text` may be NULL (no body). */
int rdt_get(struct rdt_proc *p, enum rdt_proto proto, const char *path, struct rdt_resp *out);
int rdt_post(struct rdt_proc *p, enum rdt_proto proto, const char *path, const char *json_text,
             struct rdt_resp *out);
int rdt_delete(struct rdt_proc *p, enum rdt_proto proto, const char *path, struct rdt_resp *out);

/* error.code of an error body, or NULL when the body is not that shape. */
const char *rdt_err_code(const struct rdt_resp *r);

/*
 * For curl multi users: a configured easy handle for one request that fills
 * `out` (overwritten at once; it must outlive the transfer). `body` is copied. When the
 * transfer is done, call rdt_easy_finish() with its result, then
 * curl_easy_cleanup(). NULL on error.
 */
CURL *rdt_easy_new(enum rdt_proto proto, const char *method, const char *url, const char *body,
                   size_t body_len, long timeout_ms, struct rdt_resp *out);

/* Records status, version and JSON into `out`. 0 when `rc` is CURLE_OK. */
int rdt_easy_finish(CURL *easy, CURLcode rc, struct rdt_resp *out);

/* ---- agent helpers ---------------------------------------------------------- */

/*
 * POST /api/v1/nodes {"node_id", "capacity": {"slots"}} over HTTP/1.1,
 * expecting 201. Stores the granted epoch in `*epoch_out` when not NULL.
 */
int rdt_register(struct rdt_proc *p, const char *node_id, int slots, long long *epoch_out);

/*
 * POST /api/v1/nodes/{id}/heartbeat {"epoch", "load": {"slots_used"}}; the
 * response (any status) is left in `out`. Returns rdt_http()'s result.
 */
int rdt_heartbeat(struct rdt_proc *p, enum rdt_proto proto, const char *node_id, long long epoch,
                  int slots_used, struct rdt_resp *out);

/* ---- clusters of daemons ---------------------------------------------------- */

#define RDT_MAX_REPLICAS 5

/*
 * `n` daemons (replica ids 1..n) on loopback that bootstrap one raft
 * cluster: every config lists all of them as peers with their API URLs.
 * `extra_yaml` is appended to each config (as rdt_proc_start's), and
 * `cluster_extra` to each `cluster:` section (e.g. "  election_timeout:
 * 300ms\n"). rdt_cluster_start() returns once every replica answers /ready
 * (a leader is known and it applied up to the leader's commit).
 */
struct rdt_cluster {
    int n;
    struct rdt_proc procs[RDT_MAX_REPLICAS];
    const char *binary; /* set before the start: every replica runs it (rdt_proc.binary) */
    /* Set before the start (or NULL): called for each replica once its
     * directory exists and before any starts, e.g. to put its certificates
     * there. 0, or -1 to fail the start. */
    int (*prepare)(struct rdt_proc *p, int i);
};

int rdt_cluster_start(struct rdt_cluster *c, int n, const char *extra_yaml,
                      const char *cluster_extra);
void rdt_cluster_cleanup(struct rdt_cluster *c);
/* Index of the replica that says it leads (GET /health role), or -1 after
 * `timeout_ms`. Skips stopped processes. */
int rdt_cluster_leader(struct rdt_cluster *c, int timeout_ms);
/*
 * What an agent does: sends the request to replica `*first` (updated to the
 * one that answered), follows 307 to the leader, and on 503 or no answer
 * tries the next replica, until a non-503 answer or `timeout_ms`. Returns
 * rdt_http()'s result of the last try.
 */
int rdt_cluster_request(struct rdt_cluster *c, int *first, const char *method, const char *path,
                        const char *body, int timeout_ms, struct rdt_resp *out);

/*
 * Where a test's requests go: one daemon (`p`, over HTTP/1.1), or a cluster
 * (`c`, as rdt_cluster_request() sends them, from replica `first`).
 */
struct rdt_target {
    struct rdt_proc *p;
    struct rdt_cluster *c;
    int first;
};

/* `method` on `path` with the JSON `body` (or NULL) to `t`; on a cluster
 * within `timeout_ms`. rdt_http()'s result, the answer in `out`. */
int rdt_target_request(struct rdt_target *t, const char *method, const char *path, const char *body,
                       int timeout_ms, struct rdt_resp *out);

/* The entry of a heartbeat answer's "assignments" for `task_id` (borrowed
 * from `answer`), or NULL. */
json_t *rdt_assignment_of(json_t *answer, const char *task_id);

/*
 * What an agent waiting for a task does: heartbeats `node_id` (`epoch`, no
 * slot used) through `t` every 20 ms until an answer hands it `task_id`, for
 * `timeout_ms` at most. That assignment (a new reference), or NULL when a
 * request failed, an answer was not 200 or time ran out; `why` (may be NULL)
 * says which. The last answer's JSON goes to `*answer` when not NULL (a new
 * reference; NULL when it had none).
 */
json_t *rdt_await_assignment(struct rdt_target *t, const char *node_id, long long epoch,
                             const char *task_id, int timeout_ms, json_t **answer, char *why,
                             size_t why_len);

/* ---- replicas in network namespaces ------------------------------------------ */

/*
 * One network namespace per replica (root only), so that the network between
 * replicas can be cut while the test, in its own namespace, still reaches
 * every replica's API:
 *
 *   - replica i runs in namespace rdt<pid><a+i> and listens (API and raft) on
 *     addr[i] = 10.77.Y.(i+1), Y chosen per test process (a /24 that nothing on
 *     the machine uses yet);
 *   - a veth pair rdt<pid>h<i+1> (test's side, root_addr[i] = 10.77.Y.(101+i))
 *     <-> e0 (replica's side, addr[i]), point to point: the test's only way
 *     in, never cut, and no replica can reach another through it (nothing
 *     forwards);
 *   - a veth pair between every two replicas' namespaces (m<j+1> in i's, m<i+1>
 *     in j's) carrying all their traffic (raft and the engine's /health polls)
 *     through a /32 route: this is what rdt_net_cut() cuts.
 *
 * Needs `ip` and `tc` (iproute2) only: no iptables, no bridge, no forwarding.
 */
enum rdt_cut {
    RDT_CUT_NONE = 0,
    /* Every packet between the two is dropped silently (a pfifo of length 0 on
     * both ends of their link), like an iptables DROP both ways: established
     * TCP connections hang and new ones time out. */
    RDT_CUT_DROP,
    /* Their link is down on both ends and its routes are gone: connecting
     * fails at once (no route to host), like a pulled cable. */
    RDT_CUT_DOWN,
};

struct rdt_net {
    int n;                                /* replicas (namespaces), 0 when not set up */
    char ns[RDT_MAX_REPLICAS][32];        /* namespace names */
    char veth[RDT_MAX_REPLICAS][16];      /* test's ends of the access veths */
    char addr[RDT_MAX_REPLICAS][16];      /* replica i's address */
    char root_addr[RDT_MAX_REPLICAS][16]; /* test's end of replica i's access link */
    enum rdt_cut cut[RDT_MAX_REPLICAS][RDT_MAX_REPLICAS]; /* symmetric */
    bool made_ns[RDT_MAX_REPLICAS];
    bool made_veth[RDT_MAX_REPLICAS];
};

/*
 * Builds the namespaces and links above for `n` (2..RDT_MAX_REPLICAS)
 * replicas. Returns 0 when ready; 1 when this machine does not allow it (not
 * root, no iproute2, `ip netns add` or veth refused), with the reason in
 * `why`; -1 on another failure (printed), among them a namespace or link
 * name already taken (something left behind is a failure, never a skip).
 * On 1 and -1 everything it created is already removed. Also removes
 * namespaces of this scheme left behind by a test process that no longer
 * exists (and holds no process).
 */
int rdt_net_setup(struct rdt_net *net, int n, char *why, size_t why_len);

/* Cuts the link between replicas `a` and `b` (indexes from 0), or heals it
 * (RDT_CUT_NONE). Each is a no-op when already in that state. 0 or -1. */
int rdt_net_cut(struct rdt_net *net, int a, int b, enum rdt_cut how);
/* Cuts replica `a` from every other replica. 0 or -1. */
int rdt_net_isolate(struct rdt_net *net, int a, enum rdt_cut how);
/* Heals every cut link. 0 or -1. */
int rdt_net_heal_all(struct rdt_net *net);

/*
 * Removes every namespace, link and rule rdt_net_setup() made (the cuts live
 * inside the namespaces and go with them). Stop the daemons first (a
 * namespace lasts until its last process exits). Safe on a zeroed or
 * already torn down `net`. Also run from SIGINT, SIGTERM, SIGHUP and SIGQUIT
 * handlers installed by rdt_net_setup(), which then end the process.
 */
void rdt_net_teardown(struct rdt_net *net);

/* rdt_cluster_start() with replica i in net->ns[i] on net->addr[i]. */
int rdt_cluster_start_net(struct rdt_cluster *c, const struct rdt_net *net, const char *extra_yaml,
                          const char *cluster_extra);

/* ---- small utilities -------------------------------------------------------- */

/* The value at a dotted path ("quorum.replicas", "error.details.field"). */
json_t *rdt_json_path(json_t *root, const char *dotted);

/* True when `s` is an RFC 3339 UTC time such as 2026-11-24T03:04:05.123Z. */
bool rdt_is_rfc3339_utc(const char *s);

/* Monotonic milliseconds. */
int64_t rdt_now_ms(void);

/* Sleeps `ms` milliseconds (between polls, never instead of one). */
void rdt_sleep_ms(int ms);

/* Makes a fresh temporary directory into `buf` (size `len`). 0 or -1. */
int rdt_tmpdir(char *buf, size_t len);

/* Removes `dir` recursively (nftw, symlinks not followed). 0 or -1. */
int rdt_rmtree(const char *dir);

/*
 * Two distinct TCP ports free on 127.0.0.1, chosen at random below the
 * kernel's ephemeral range. 0 or -1.
 */
int rdt_free_ports(uint16_t *a, uint16_t *b);

/*
 * A TCP listener on 127.0.0.1:`*port` (0: any free port, written back),
 * with SO_REUSEADDR as the daemon's own bind, so that nobody else can bind
 * the port while the test holds it. Fails the test when it cannot.
 */
int rdt_hold_port(uint16_t *port);

/*
 * For tests of the harness: the next daemon whose ports the harness picks
 * (rdt_proc_start() or rdt_proc_prepare() of a new rdt_proc) gets `api` and
 * `raft` (0: drawn as usual) without checking that they are free, once. The
 * environment variable RDT_FORCE_PORTS=API[,RAFT] does the same for the
 * first daemon of a test process, to check any test's start by hand.
 */
void rdt_force_next_ports(uint16_t api, uint16_t raft);

/*
 * Runs `argv` (argv[0] is the path) to completion with stdin from /dev/null,
 * capturing stdout and stderr into malloc'd NUL-terminated strings (either
 * pointer may be NULL to discard). Returns the exit code (128 + signal when a
 * signal ended it), or -1 when it could not run or outlived `timeout_ms` (it
 * is then killed). The caller frees `*out` and `*err` in every case.
 */
int rdt_run(char *const argv[], int timeout_ms, char **out, char **err);

/*
 * Runs `p`'s daemon in the foreground (its config, address, data, plugin
 * and policy directories, and `extra` when not NULL) as rdt_run does: for
 * starts that must be refused.
 */
int rdt_proc_run_once(struct rdt_proc *p, const char *extra, int timeout_ms, char **out,
                      char **err);

#endif
