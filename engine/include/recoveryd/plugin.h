/*
 * recoveryd plugin ABI: the one header a plugin author needs.
 *
 * A plugin is a shared object in the configured plugin directory that
 * exports one function,
 *
 *     const struct rd_plugin_descriptor *rd_plugin_entry(void);
 *
 * returning a constant descriptor. Before the host calls anything else in
 * the library it checks, in this order, the descriptor's abi_major (must be
 * equal), abi_minor (must not be newer than the host's), size (must cover
 * every field of the declared minor) and build_sig (must equal the host's),
 * and refuses a mismatch with a message naming the file and both versions.
 * A loaded library is never unloaded.
 *
 * A plugin (the class: what the .so provides) is separate from its instances
 * (each configured use, with its own name, config and state). The descriptor
 * declares the config keys an instance accepts; the host validates an
 * instance's config against them (file:line errors) before init().
 *
 * Threads: every callback runs on the engine's loop thread and must not
 * block. Blocking work goes through host->queue_work (the libuv thread pool);
 * network I/O through host->http_request. All strings handed to a plugin are
 * valid only during the call unless said otherwise: copy what you keep.
 *
 * A plugin calls nothing of the engine but what the host API table offers
 * (the engine exports no other symbol to plugins), and declares duration
 * defaults with their unit ("0ms", not "0").
 *
 * Versioning: structures only grow by appending fields. A plugin built
 * against minor N that wants a host function added in minor M > N checks
 * host->size before calling it (RD_HOST_HAS(host, field)).
 *
 * Build: cc -shared -fPIC -fvisibility=hidden -I<recoveryd>/engine/include
 * and mark rd_plugin_entry with RD_PLUGIN_EXPORT. plugins/examples/ holds the
 * smallest complete detector.
 */
#ifndef RECOVERYD_PLUGIN_H
#define RECOVERYD_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_PLUGIN_ABI_MAJOR 1
/* 1: backup ops version 2 (list). 2: struct rd_alert's cluster, replica and
 * scope; alert ops version 2 (leadership, dead_letter_at). 3: struct
 * rd_observation's trend. 4: the host's table_realloc. 5: the host's
 * input_drained_ns. */
#define RD_PLUGIN_ABI_MINOR 5

/* What must match between host and plugin beyond the version numbers:
 * the data model and the compiler family's layout rules. */
#if defined(__x86_64__)
#define RD__ARCH "x86_64"
#elif defined(__aarch64__)
#define RD__ARCH "aarch64"
#else
#define RD__ARCH "other"
#endif
#define RD__STR2(x) #x
#define RD__STR(x)  RD__STR2(x)
#define RD_PLUGIN_BUILD_SIG                                                                        \
    "recoveryd-abi-" RD__STR(RD_PLUGIN_ABI_MAJOR) "/" RD__ARCH "/ptr" RD__STR(                     \
        __SIZEOF_POINTER__) "/long" RD__STR(__SIZEOF_LONG__)

#define RD_PLUGIN_EXPORT __attribute__((visibility("default")))
#define RD_PLUGIN_ENTRY  "rd_plugin_entry"

/* True when the host provides `field` (a function added in a later minor). */
#define RD_HOST_HAS(host, field)                                                                   \
    ((host)->size >= offsetof(struct rd_host_api, field) + sizeof((host)->field) &&                \
     (host)->field != NULL)

enum rd_plugin_kind {
    RD_PLUGIN_DETECTOR = 1, /* watches agents, emits observations */
    RD_PLUGIN_BACKUP = 2,   /* stores and fetches backups of the engine's state */
    RD_PLUGIN_ALERT = 3,    /* delivers alerts (open and resolved) */
};

enum rd_log_lvl { RD_PLOG_DEBUG = 0, RD_PLOG_INFO, RD_PLOG_WARN, RD_PLOG_ERROR };

/* ---- configuration keys ------------------------------------------------ */

enum rd_key_type {
    RD_KEY_STRING = 1,
    RD_KEY_INT,      /* integer, min/max apply */
    RD_KEY_DOUBLE,   /* number, min/max apply */
    RD_KEY_BOOL,     /* true/false */
    RD_KEY_DURATION, /* 250ms, 10s, 2m, 1h, 7d -> milliseconds; min/max in ms */
    RD_KEY_PERCENT,  /* 80% -> 80 */
    RD_KEY_SIZE,     /* 4096, 512KiB, 8MiB -> bytes */
};

struct rd_plugin_key {
    const char *name;          /* [a-z0-9_]+ */
    int type;                  /* enum rd_key_type */
    const char *default_value; /* as written in YAML; NULL = required */
    double min, max;           /* for numbers and durations; min == max == 0: no bound */
    const char *help;          /* one line, shown in errors and docs */
};

/* ---- what the host tells plugins about agents -------------------------- */

enum rd_node_event {
    RD_NODE_EV_ADDED = 1,   /* registered, or seen at start / when this replica became leader */
    RD_NODE_EV_EPOCH = 2,   /* registered again: a new epoch */
    RD_NODE_EV_STATE = 3,   /* changed state */
    RD_NODE_EV_REMOVED = 4, /* left */
};

struct rd_node_view {
    const char *node_id;
    uint64_t epoch;
    const char *state;      /* "alive", "suspect", ... */
    const char *health_url; /* "" when none */
    const char *labels_json;
    uint32_t slots;
    /* A small dense number the host gives each agent while it is known to
     * this leader (from 0, reused after RD_NODE_EV_REMOVED): index arrays
     * with it instead of hashing node ids on every heartbeat. */
    uint32_t slot;
};

struct rd_heartbeat_view {
    const char *node_id;
    uint64_t epoch;
    uint64_t arrival_ns; /* monotonic clock */
    uint32_t slots_used;
    bool has_metrics;
    double error_rate; /* 0-1 */
    double latency_ms;
    double cpu;      /* 0-1 share, as the agent reports it */
    double mem;      /* 0-1 share */
    double progress; /* tasks' progress counter (monotonic), or -1 */
    uint32_t slot;   /* as in struct rd_node_view */
};

/* The detection block of the configuration, as every detector sees it. */
struct rd_detection_params {
    uint64_t heartbeat_interval_ms;
    uint64_t health_check_timeout_ms;
    unsigned failure_threshold;
    unsigned recovery_threshold;
};

/* ---- what detectors tell the host -------------------------------------- */

enum rd_signal {
    RD_SIG_HEARTBEAT = 1, /* heartbeat arrivals (phi-accrual and the like) */
    RD_SIG_PROBE = 2,     /* active health probe */
    RD_SIG_METRICS = 3,   /* business metrics and their trends */
};

enum rd_verdict {
    RD_VERDICT_OK = 0,      /* healthy by this signal */
    RD_VERDICT_SUSPECT = 1, /* one signal of trouble: enough to suspect, never to fail */
    RD_VERDICT_FAILED = 2,  /* this signal alone reached its failure threshold */
};

/* Why a probe failed (RD_SIG_PROBE): tells a dead process from a hung one. */
enum rd_probe_cause {
    RD_PROBE_NONE = 0,
    RD_PROBE_REFUSED = 1,   /* nothing listens, or the agent dropped the connection: gone */
    RD_PROBE_TIMEOUT = 2,   /* connected or routed but no answer in time: hung or overloaded */
    RD_PROBE_STATUS = 3,    /* answered, with a non-2xx status */
    RD_PROBE_NETWORK = 4,   /* unreachable host, DNS, other transport errors */
    RD_PROBE_CANCELLED = 5, /* the host ended the request (the instance stops): says
                             * nothing about the agent */
};

struct rd_observation {
    const char *node_id;
    uint64_t epoch;     /* the epoch observed; stale epochs are ignored */
    int signal;         /* enum rd_signal */
    int verdict;        /* enum rd_verdict */
    double value;       /* phi, probe latency ms, anomaly score ... */
    int probe_cause;    /* enum rd_probe_cause, for RD_SIG_PROBE */
    bool predicted;     /* a trend heads for a limit (metrics) */
    double eta_ms;      /* with predicted: estimated time to failure */
    const char *metric; /* with RD_SIG_METRICS: which metric, or NULL */
    uint64_t since_ns;  /* monotonic time the trouble began (last good sign), 0 = now */
    const char *detail; /* one human line, or NULL */
    /* Appended in ABI minor 3 (the host reads it only from plugins of minor
     * 3 or later): with predicted, the metric's trend, its rise per second. */
    double trend;
};

/* ---- alerts ------------------------------------------------------------ */

/* What an alert is about, so a plugin knows whether to hold it (re-send it
 * while it fires, as Alertmanager expects) and for how long. */
enum rd_alert_scope {
    /* The cluster's replicated state (a fault record): firing until the
     * leader resolves it. Only the leader raises these; when this replica
     * stops leading a plugin stops re-sending them (the new leader raises
     * every open one again when it takes over). */
    RD_ALERT_LEADER = 0,
    /* This replica itself (NoQuorum): firing until this replica resolves it,
     * whoever leads. */
    RD_ALERT_REPLICA = 1,
    /* A one-off notice (a recovery run passed its max_time, a policy's
     * alert action): never resolved; not re-sent (Alertmanager lets it end
     * after its resolve_timeout). */
    RD_ALERT_EVENT = 2,
};

struct rd_alert {
    const char *fingerprint; /* stable id (the fault record's id) */
    bool resolved;           /* false: firing */
    const char *alertname;   /* "AgentFault", "PartitionSuspected", ... */
    const char *node_id;     /* "" for cluster-wide alerts */
    const char *fault_type;
    const char *severity;
    const char *summary;
    const char *description;
    int64_t starts_at_ms;    /* wall clock */
    int64_t ends_at_ms;      /* 0 while firing */
    const char *labels_json; /* extra labels as a JSON object, or NULL */
    /* Appended in ABI minor 2 (the host fills cluster and replica). */
    const char *cluster; /* cluster.name */
    const char *replica; /* cluster.node_id of the replica that raised it */
    int scope;           /* enum rd_alert_scope */
};

/* ---- the host API -------------------------------------------------------- */

typedef struct rd_plugin_instance rd_plugin_instance_t;
typedef struct rd_timer rd_timer_t;

struct rd_http_request {
    const char *method; /* "GET", "POST" */
    const char *url;    /* http://, https://, or tcp://HOST:PORT for a plain connect
                         * (answered with status 200 when it connects) */
    const char *body;   /* NULL for none; copied by the host */
    size_t body_len;
    const char *content_type; /* NULL: application/json when body != NULL */
    uint64_t timeout_ms;
};

struct rd_http_response {
    int status;        /* HTTP status, 0 when no response arrived */
    int cause;         /* enum rd_probe_cause when status == 0 */
    const char *error; /* human text when status == 0 */
    const char *body;
    size_t body_len;
    uint64_t elapsed_ns;
};

typedef void (*rd_http_cb)(void *data, const struct rd_http_response *resp);
typedef void (*rd_timer_cb)(void *data);
typedef void (*rd_work_cb)(void *data);
typedef void (*rd_after_work_cb)(void *data, int status);

struct rd_host_api {
    uint32_t abi_major;
    uint32_t abi_minor;
    size_t size; /* sizeof(struct rd_host_api) as the host was built */

    /* Logging: one line, with the instance's name as the component. */
    void (*log)(rd_plugin_instance_t *inst, int level, const char *event, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
    /* The instance's configured name and its error buffer (for init failures). */
    const char *(*instance_name)(rd_plugin_instance_t *inst);
    void (*set_error)(rd_plugin_instance_t *inst, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

    /* Config values of this instance (already validated against the keys). */
    const char *(*config_string)(rd_plugin_instance_t *inst, const char *key);
    int64_t (*config_int)(rd_plugin_instance_t *inst, const char *key);
    double (*config_double)(rd_plugin_instance_t *inst, const char *key);
    bool (*config_bool)(rd_plugin_instance_t *inst, const char *key);
    uint64_t (*config_uint)(rd_plugin_instance_t *inst,
                            const char *key); /* durations, sizes, percents */
    void (*detection_params)(rd_plugin_instance_t *inst, struct rd_detection_params *out);

    /* Clocks. */
    uint64_t (*now_ns)(void); /* monotonic */
    int64_t (*now_ms)(void);  /* wall clock */

    /* Timers on the loop. repeat_ms == 0: once. The host frees a timer when
     * it is stopped, right after a one-shot timer fired, and when the
     * instance stops: every rd_timer_t of an instance is invalid once the
     * host calls its stop() (the host stops them before that call). */
    rd_timer_t *(*timer_start)(rd_plugin_instance_t *inst, uint64_t first_ms, uint64_t repeat_ms,
                               rd_timer_cb cb, void *data);
    void (*timer_stop)(rd_timer_t *timer);

    /* Runs `work` on the thread pool, then `done` on the loop. 0 or RD_E*. */
    int (*queue_work)(rd_plugin_instance_t *inst, rd_work_cb work, rd_after_work_cb done,
                      void *data);

    /* Asynchronous HTTP request; `cb` fires exactly once on the loop, never
     * from inside this call. When the instance stops first, the host ends
     * its requests before calling stop() (status 0, cause
     * RD_PROBE_CANCELLED). 0 or RD_E* (then `cb` will not fire). */
    int (*http_request)(rd_plugin_instance_t *inst, const struct rd_http_request *req,
                        rd_http_cb cb, void *data);

    /* Detectors: report what a signal says about one agent. */
    void (*observe)(rd_plugin_instance_t *inst, const struct rd_observation *obs);

    /* The agents the engine knows (not left). `i` from 0; 0 or RD_ENOTFOUND. */
    size_t (*node_count)(rd_plugin_instance_t *inst);
    int (*node_at)(rd_plugin_instance_t *inst, size_t i, struct rd_node_view *out);

    /* A counter the host exports as recoveryd_plugin_<name>_total{instance="..."};
     * returns a pointer the plugin increments (valid until destroy), or NULL. */
    uint64_t *(*counter)(rd_plugin_instance_t *inst, const char *name, const char *help);

    /* Minor 4. Memory for the per-agent tables every heartbeat writes,
     * kept out of the engine's forked children: a raft snapshot or a backup
     * forks the engine, and while its child runs, each page the two share
     * is copied at its first write (at 10,000 agents, about a second of the
     * loop per fork). Resizes `p` (NULL: new) from `old_size` to `new_size`
     * bytes, whole pages; bytes beyond `old_size` are zero; it may move;
     * `new_size` 0 frees. NULL on ENOMEM, when `p` is unchanged. For tables
     * (a few large blocks), not small objects. Check RD_HOST_HAS first. */
    void *(*table_realloc)(void *p, size_t old_size, size_t new_size);

    /* Minor 5. The last moment (on now_ns's clock, at most now) the engine
     * had read everything sent to it. Arrivals are stamped when the loop
     * reads them, so while it is behind (a snapshot's fork, a CPU taken by
     * others) what agents sent waits in socket buffers: a detector that
     * judges silence up to this moment, not now, does not blame the agents
     * for the engine's own lateness. It trails now by about one turn of the
     * loop (a long turn: a long way); bound how far back you judge. Check
     * RD_HOST_HAS first. */
    uint64_t (*input_drained_ns)(rd_plugin_instance_t *inst);
};

/* ---- per-kind operations (each versioned and only ever appended to) ---- */

#define RD_DETECTOR_OPS_VERSION 1
struct rd_detector_ops {
    uint32_t version;
    uint32_t size;
    /* An agent was added, re-registered, changed state or left. */
    void (*on_node)(void *state, int event, const struct rd_node_view *node);
    /* An accepted heartbeat (leader only). */
    void (*on_heartbeat)(void *state, const struct rd_heartbeat_view *hb);
};

/* An alert its receiver refused for good (a 4xx answer other than 408 and
 * 429): not retried, kept for operators (GET /api/v1/plugins). The strings
 * stay valid until the plugin's next callback. */
struct rd_dead_letter {
    int64_t at_ms;          /* wall clock of the refusal */
    int status;             /* the receiver's HTTP status */
    const char *answer;     /* the start of the receiver's answer (bounded), or "" */
    const char *alert_json; /* the alert, one JSON object (one element of the request) */
};

#define RD_ALERT_OPS_VERSION 2
struct rd_alert_ops {
    uint32_t version;
    uint32_t size;
    /* Deliver (or queue) one alert; must not block. */
    void (*send)(void *state, const struct rd_alert *alert);
    /* Appended in version 2 (ABI minor 2); either may be NULL. */
    /* This replica became the leader (true: the open faults' alerts follow)
     * or stopped leading (false: stop re-sending RD_ALERT_LEADER alerts). */
    void (*leadership)(void *state, bool leader);
    /* The i-th dead letter, oldest first: 0, or RD_ENOTFOUND past the last. */
    int (*dead_letter_at)(void *state, size_t i, struct rd_dead_letter *out);
};

/*
 * Backup targets. A target stores named objects: the engine names them
 * (relative keys of [A-Za-z0-9._/-], no "..", at most 255 bytes, e.g.
 * "backups/<id>.zst", "backups/<id>.json", "archive/<first>-<last>.zst";
 * docs/backup.md has the layout) and the target maps them onto its medium (a
 * file under a directory, an S3 key under a prefix, a row in a table).
 *
 * write: store `len` bytes as object `name`, replacing any object of that
 *   name, atomically: a reader sees the whole old object or the whole new
 *   one, never part of one (temporary name, fsync, rename; one PUT; one
 *   transaction). `done` fires once the object is durable. The plugin copies
 *   `buf` before returning, or keeps it unchanged until `done` only when it
 *   says so in RD_BACKUP_BORROWS_BUF (version 2 never borrows).
 * read:  fetch object `name`; status RD_ENOTFOUND when it does not exist.
 *   `buf` is valid only during the callback.
 * remove: delete object `name`; removing an absent object succeeds.
 * list (version 2): the objects whose names start with `prefix`, in
 *   bytewise order of name, with their sizes; the arrays are valid only
 *   during the callback.
 *
 * Every callback fires exactly once, on the loop, never from inside the call
 * that started it; a call that returns an RD_E* code does not fire it. The
 * `detail` strings are one human line ("s3 PUT backups/x.zst: 403
 * SignatureDoesNotMatch"), or NULL on success. Slow or blocking I/O goes
 * through host->queue_work or host->http_request.
 */
#define RD_BACKUP_OPS_VERSION 2
typedef void (*rd_backup_done_cb)(void *data, int status, const char *detail);
typedef void (*rd_backup_read_cb)(void *data, int status, const void *buf, size_t len);
typedef void (*rd_backup_list_cb)(void *data, int status, const char *const *names,
                                  const uint64_t *sizes, size_t n, const char *detail);
struct rd_backup_ops {
    uint32_t version;
    uint32_t size;
    int (*write)(void *state, const char *name, const void *buf, size_t len, rd_backup_done_cb done,
                 void *data);
    int (*read)(void *state, const char *name, rd_backup_read_cb done, void *data);
    int (*remove)(void *state, const char *name, rd_backup_done_cb done, void *data);
    /* Appended in version 2 (ABI minor 1). */
    int (*list)(void *state, const char *prefix, rd_backup_list_cb done, void *data);
};

/* ---- the descriptor -------------------------------------------------------- */

struct rd_plugin_descriptor {
    /* Checked first, in this order, before anything else is read. */
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t size; /* sizeof(struct rd_plugin_descriptor) as the plugin was built */
    const char *build_sig;

    const char *name;    /* the plugin class, e.g. "heartbeat" */
    const char *version; /* the plugin's own version */
    int kind;            /* enum rd_plugin_kind */
    const char *description;
    const struct rd_plugin_key *keys; /* terminated by {NULL} */
    size_t state_size;                /* the host allocates and zeroes this much per instance */

    /* Lifecycle. init: validate and prepare (no I/O yet); 0 or RD_E* with
     * host->set_error. start: begin work. stop: wind down, call done(inst)
     * when finished (may be synchronous). destroy: free what init took. */
    int (*init)(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state);
    int (*start)(void *state);
    void (*stop)(void *state, void (*done)(rd_plugin_instance_t *inst));
    void (*destroy)(void *state);

    /* struct rd_detector_ops / rd_alert_ops / rd_backup_ops by kind. */
    const void *ops;
};

/* Fills the fields the host checks first. */
#define RD_PLUGIN_HEADER                                                                           \
    .abi_major = RD_PLUGIN_ABI_MAJOR, .abi_minor = RD_PLUGIN_ABI_MINOR,                            \
    .size = sizeof(struct rd_plugin_descriptor), .build_sig = RD_PLUGIN_BUILD_SIG

typedef const struct rd_plugin_descriptor *(*rd_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
