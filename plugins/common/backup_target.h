/*
 * What the backup target plugins (file, s3, postgres) share: the object
 * name rules of plugin.h, and the machinery of struct rd_backup_ops version
 * 2 around one blocking `perform` function per target.
 *
 * A target's state embeds struct bk_target first. Each operation the engine
 * starts (write, read, remove, list) is checked on the loop (a bad name is
 * refused with RD_EINVAL before anything is queued), becomes a struct bk_op
 * handed to host->queue_work, runs the target's perform() on a thread of the
 * pool (blocking calls are fine there; it must not call the host API), and
 * fires its callback exactly once on the loop, from the after-work callback.
 * stop() calls the host's done() once no operation is in flight any more.
 *
 * Compiled into each target's .so (plugins/<name>/CMakeLists.txt), not a
 * library of its own: a plugin depends on nothing but recoveryd/plugin.h at
 * run time.
 */
#ifndef RD_PLUGINS_BACKUP_TARGET_H
#define RD_PLUGINS_BACKUP_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "recoveryd/plugin.h"

#define BK_NAME_MAX   255 /* plugin.h: object names are at most 255 bytes */
#define BK_DETAIL_LEN 512

enum bk_kind { BK_WRITE = 1, BK_READ, BK_REMOVE, BK_LIST };

/* The objects a list operation found, in any order until bk_list_sort(). */
struct bk_list {
    char **names;
    uint64_t *sizes;
    size_t n, cap;
};

struct bk_target;

/* One operation in flight. Owned by the machinery; perform() fills in
 * status, detail and the results. */
struct bk_op {
    struct bk_target *t;
    int kind;    /* enum bk_kind */
    char *name;  /* the object name, or the prefix of a list */
    void *buf;   /* write: a copy of the bytes; read: the bytes found (malloc'd,
                  * or pointing into `extra`) */
    size_t len;  /* of buf */
    void *extra; /* read: what holds the bytes when not malloc'd (a PGresult),
                  * released by the target's free_extra after the callback */
    rd_backup_done_cb done_cb;
    rd_backup_read_cb read_cb;
    rd_backup_list_cb list_cb;
    void *data;
    int status;                 /* 0 or RD_E*, set by perform() */
    char detail[BK_DETAIL_LEN]; /* one line when status != 0 */
    struct bk_list list;        /* list: what perform() found */
};

struct bk_target {
    rd_plugin_instance_t *inst;
    const struct rd_host_api *host;
    const char *plugin; /* "file", "s3", "postgres": the first word of every detail */
    /* Runs on a thread of the pool: does the operation, sets op->status and
     * op->detail (bk_fail) and, for read and list, the results. */
    void (*perform)(struct bk_target *t, struct bk_op *op);
    /* Optional: refuses a name this target cannot store (beyond the common
     * rules); fills `why` and returns false. On the loop. */
    bool (*name_ok)(const char *name, char *why, size_t len);
    /* Releases op->extra after the callback (on the loop), if a target sets it. */
    void (*free_extra)(void *extra);
    unsigned pending; /* operations queued and not yet called back */
    bool stopping;
    void (*stop_done)(rd_plugin_instance_t *inst);
    uint64_t *ops_failed; /* counter backup_ops_failed, or a dummy */
    uint64_t dummy_counter;
};

/* Sets up the common part at init() (host->counter "backup_ops_failed"). */
void bk_target_init(struct bk_target *t, rd_plugin_instance_t *inst, const struct rd_host_api *host,
                    const char *plugin);

/* Queues `fn` on the pool and `after` on the loop, counted as in flight, so
 * that stop() waits for it too (used for work of the target's own, such as
 * preparing a directory at start). 0 or RD_E*. */
int bk_target_queue(struct bk_target *t, rd_work_cb fn, rd_after_work_cb after, void *data);
/* Call from the `after` of bk_target_queue() once done with `data`. */
void bk_target_queued_done(struct bk_target *t);

/* stop(): done() now when nothing is in flight, else after the last one. */
void bk_target_stop(struct bk_target *t, void (*done)(rd_plugin_instance_t *inst));

/* The four operations of struct rd_backup_ops version 2 (`state` is the
 * target's state, which starts with struct bk_target). */
int bk_write(void *state, const char *name, const void *buf, size_t len, rd_backup_done_cb done,
             void *data);
int bk_read(void *state, const char *name, rd_backup_read_cb done, void *data);
int bk_remove(void *state, const char *name, rd_backup_done_cb done, void *data);
int bk_list(void *state, const char *prefix, rd_backup_list_cb done, void *data);

/*
 * True when `name` is an object name as plugin.h defines it, made strict
 * enough to map onto a path: 1-255 bytes of [A-Za-z0-9._/-], not starting or
 * ending with '/', no empty component ("a//b"), no "." or ".." component.
 * Otherwise false with the reason in `why`.
 */
bool bk_name_valid(const char *name, char *why, size_t len);

/* True when `prefix` may start names: "" or up to 255 bytes of the same
 * characters, not starting with '/' and without "..". */
bool bk_prefix_valid(const char *prefix, char *why, size_t len);

/* Sets op->status and a one-line op->detail ("<plugin> <what>"), printf-like.
 * Newlines and other control characters in the result become spaces. */
void bk_fail(struct bk_op *op, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends an object to a list (copies `name`, `name_len` bytes). 0 or RD_ENOMEM. */
int bk_list_add(struct bk_list *l, const char *name, size_t name_len, uint64_t size);
/* Sorts by name, bytewise (strcmp: unsigned bytes). */
void bk_list_sort(struct bk_list *l);
void bk_list_free(struct bk_list *l);

/* The operation's word for details: "write", "read", "remove", "list". */
const char *bk_kind_name(int kind);

#endif
