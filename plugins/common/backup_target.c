/*
 * The backup target machinery (backup_target.h): name rules, operations
 * queued on the pool and called back once on the loop, stop.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* strdup, also when built outside this tree */
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup_target.h"

const char *bk_kind_name(int kind)
{
    switch (kind) {
    case BK_WRITE:
        return "write";
    case BK_READ:
        return "read";
    case BK_REMOVE:
        return "remove";
    case BK_LIST:
        return "list";
    }
    return "operation";
}

/* ---- names ------------------------------------------------------------------------- */

static bool name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '/' || c == '-';
}

/* Where `s` has a byte outside [A-Za-z0-9._/-], or NULL. */
static const char *bad_char(const char *s)
{
    for (; *s; s++)
        if (!name_char(*s))
            return s;
    return NULL;
}

bool bk_name_valid(const char *name, char *why, size_t len)
{
    if (name == NULL || name[0] == '\0') {
        snprintf(why, len, "an empty object name");
        return false;
    }
    size_t n = strlen(name);
    if (n > BK_NAME_MAX) {
        snprintf(why, len, "object name of %zu bytes (at most %d): %.40s...", n, BK_NAME_MAX, name);
        return false;
    }
    const char *bad = bad_char(name);
    if (bad) {
        snprintf(why, len, "object name '%s': byte 0x%02x at %zu is not one of [A-Za-z0-9._/-]",
                 name, (unsigned char)*bad, (size_t)(bad - name));
        return false;
    }
    if (name[0] == '/' || name[n - 1] == '/') {
        snprintf(why, len, "object name '%s' starts or ends with '/'", name);
        return false;
    }
    for (const char *c = name; c;) {
        const char *end = strchr(c, '/');
        size_t clen = end ? (size_t)(end - c) : strlen(c);
        if (clen == 0) {
            snprintf(why, len, "object name '%s' has an empty component ('//')", name);
            return false;
        }
        if ((clen == 1 && c[0] == '.') || (clen == 2 && c[0] == '.' && c[1] == '.')) {
            snprintf(why, len, "object name '%s' has a '.' or '..' component", name);
            return false;
        }
        c = end ? end + 1 : NULL;
    }
    return true;
}

bool bk_prefix_valid(const char *prefix, char *why, size_t len)
{
    if (prefix == NULL || prefix[0] == '\0')
        return true;
    size_t n = strlen(prefix);
    if (n > BK_NAME_MAX) {
        snprintf(why, len, "prefix of %zu bytes (at most %d)", n, BK_NAME_MAX);
        return false;
    }
    const char *bad = bad_char(prefix);
    if (bad) {
        snprintf(why, len, "prefix '%s': byte 0x%02x at %zu is not one of [A-Za-z0-9._/-]", prefix,
                 (unsigned char)*bad, (size_t)(bad - prefix));
        return false;
    }
    if (prefix[0] == '/' || strstr(prefix, "..")) {
        snprintf(why, len, "prefix '%s' starts with '/' or holds '..'", prefix);
        return false;
    }
    return true;
}

/* ---- details and lists -------------------------------------------------------------- */

void bk_fail(struct bk_op *op, int status, const char *fmt, ...)
{
    op->status = status;
    int n = snprintf(op->detail, sizeof op->detail, "%s ", op->t->plugin);
    if (n < 0 || (size_t)n >= sizeof op->detail)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->detail + n, sizeof op->detail - (size_t)n, fmt, ap);
    va_end(ap);
    /* One line: causes quoted from servers and libraries may hold newlines. */
    size_t len = strlen(op->detail);
    while (len > 0 && (op->detail[len - 1] == '\n' || op->detail[len - 1] == ' ' ||
                       op->detail[len - 1] == '\r'))
        op->detail[--len] = '\0';
    for (char *p = op->detail; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

int bk_list_add(struct bk_list *l, const char *name, size_t name_len, uint64_t size)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **names = realloc(l->names, cap * sizeof *names);
        if (!names)
            return RD_ENOMEM;
        l->names = names;
        uint64_t *sizes = realloc(l->sizes, cap * sizeof *sizes);
        if (!sizes)
            return RD_ENOMEM;
        l->sizes = sizes;
        l->cap = cap;
    }
    char *copy = malloc(name_len + 1);
    if (!copy)
        return RD_ENOMEM;
    memcpy(copy, name, name_len);
    copy[name_len] = '\0';
    l->names[l->n] = copy;
    l->sizes[l->n] = size;
    l->n++;
    return 0;
}

struct entry {
    char *name;
    uint64_t size;
};

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

void bk_list_sort(struct bk_list *l)
{
    if (l->n < 2)
        return;
    struct entry *e = malloc(l->n * sizeof *e);
    if (!e) { /* sort the names alone would lose the sizes: a slow sort in place */
        for (size_t i = 1; i < l->n; i++)
            for (size_t j = i; j > 0 && strcmp(l->names[j - 1], l->names[j]) > 0; j--) {
                char *tn = l->names[j];
                l->names[j] = l->names[j - 1];
                l->names[j - 1] = tn;
                uint64_t ts = l->sizes[j];
                l->sizes[j] = l->sizes[j - 1];
                l->sizes[j - 1] = ts;
            }
        return;
    }
    for (size_t i = 0; i < l->n; i++)
        e[i] = (struct entry){l->names[i], l->sizes[i]};
    qsort(e, l->n, sizeof *e, entry_cmp);
    for (size_t i = 0; i < l->n; i++) {
        l->names[i] = e[i].name;
        l->sizes[i] = e[i].size;
    }
    free(e);
}

void bk_list_free(struct bk_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->sizes);
    *l = (struct bk_list){0};
}

/* ---- the machinery ---------------------------------------------------------------- */

void bk_target_init(struct bk_target *t, rd_plugin_instance_t *inst, const struct rd_host_api *host,
                    const char *plugin)
{
    t->inst = inst;
    t->host = host;
    t->plugin = plugin;
    t->ops_failed = host->counter(inst, "backup_ops_failed",
                                  "Backup target operations (write, read, remove, list) that "
                                  "failed.");
    if (!t->ops_failed)
        t->ops_failed = &t->dummy_counter;
}

static void maybe_stopped(struct bk_target *t)
{
    if (t->stopping && t->pending == 0 && t->stop_done) {
        void (*done)(rd_plugin_instance_t *) = t->stop_done;
        t->stop_done = NULL;
        done(t->inst);
    }
}

void bk_target_stop(struct bk_target *t, void (*done)(rd_plugin_instance_t *inst))
{
    t->stopping = true;
    t->stop_done = done;
    maybe_stopped(t);
}

int bk_target_queue(struct bk_target *t, rd_work_cb fn, rd_after_work_cb after, void *data)
{
    if (t->stopping)
        return RD_ESHUTDOWN;
    int rv = t->host->queue_work(t->inst, fn, after, data);
    if (rv == 0)
        t->pending++;
    return rv;
}

void bk_target_queued_done(struct bk_target *t)
{
    t->pending--;
    maybe_stopped(t);
}

static void op_free(struct bk_op *op)
{
    free(op->name);
    free(op->buf);
    bk_list_free(&op->list);
    free(op);
}

static void op_work(void *data)
{
    struct bk_op *op = data;
    op->t->perform(op->t, op);
}

static void op_after(void *data, int status)
{
    struct bk_op *op = data;
    struct bk_target *t = op->t;
    if (status != 0 && op->status == 0) /* the host gave up on the work item */
        bk_fail(op, status, "%s %s: not run: the engine is stopping", bk_kind_name(op->kind),
                op->name);
    if (op->status != 0)
        (*t->ops_failed)++;
    const char *detail = op->status != 0 ? op->detail : NULL;
    switch (op->kind) {
    case BK_WRITE:
    case BK_REMOVE:
        op->done_cb(op->data, op->status, detail);
        break;
    case BK_READ:
        if (op->status == 0)
            op->read_cb(op->data, 0, op->buf ? op->buf : "", op->len);
        else
            op->read_cb(op->data, op->status, NULL, 0);
        break;
    case BK_LIST:
        if (op->status == 0)
            op->list_cb(op->data, 0, (const char *const *)op->list.names, op->list.sizes,
                        op->list.n, NULL);
        else
            op->list_cb(op->data, op->status, NULL, NULL, 0, detail);
        break;
    }
    if (op->extra) { /* the bytes read belong to `extra` */
        op->buf = NULL;
        if (t->free_extra)
            t->free_extra(op->extra);
    }
    op_free(op);
    bk_target_queued_done(t);
}

/* Checks and queues `op` (taking it: freed on error). */
static int op_start(struct bk_target *t, struct bk_op *op)
{
    int rv = bk_target_queue(t, op_work, op_after, op);
    if (rv != 0)
        op_free(op);
    return rv;
}

/* 0, or RD_EINVAL (logged) when `name` (a prefix for a list) is refused. */
static int check_name(struct bk_target *t, int kind, const char *name)
{
    char why[BK_DETAIL_LEN];
    bool ok = kind == BK_LIST ? bk_prefix_valid(name, why, sizeof why)
                              : bk_name_valid(name, why, sizeof why);
    if (ok && kind != BK_LIST && t->name_ok)
        ok = t->name_ok(name, why, sizeof why);
    if (ok)
        return 0;
    t->host->log(t->inst, RD_PLOG_WARN, "backup_name_refused", "%s %s: %s", t->plugin,
                 bk_kind_name(kind), why);
    return RD_EINVAL;
}

/* A new operation on a checked name, or NULL (out of memory). */
static struct bk_op *op_new(struct bk_target *t, int kind, const char *name, void *data)
{
    struct bk_op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->t = t;
    op->kind = kind;
    op->data = data;
    op->name = strdup(name);
    if (!op->name) {
        free(op);
        return NULL;
    }
    return op;
}

int bk_write(void *state, const char *name, const void *buf, size_t len, rd_backup_done_cb done,
             void *data)
{
    struct bk_target *t = state;
    if (t->stopping)
        return RD_ESHUTDOWN;
    if (!done || (!buf && len > 0))
        return RD_EINVAL;
    int rv = check_name(t, BK_WRITE, name);
    if (rv != 0)
        return rv;
    struct bk_op *op = op_new(t, BK_WRITE, name, data);
    if (!op)
        return RD_ENOMEM;
    op->done_cb = done;
    op->len = len;
    op->buf = malloc(len ? len : 1); /* version 2 never borrows `buf` */
    if (!op->buf) {
        op_free(op);
        return RD_ENOMEM;
    }
    if (len)
        memcpy(op->buf, buf, len);
    return op_start(t, op);
}

int bk_read(void *state, const char *name, rd_backup_read_cb done, void *data)
{
    struct bk_target *t = state;
    if (t->stopping)
        return RD_ESHUTDOWN;
    if (!done)
        return RD_EINVAL;
    int rv = check_name(t, BK_READ, name);
    if (rv != 0)
        return rv;
    struct bk_op *op = op_new(t, BK_READ, name, data);
    if (!op)
        return RD_ENOMEM;
    op->read_cb = done;
    return op_start(t, op);
}

int bk_remove(void *state, const char *name, rd_backup_done_cb done, void *data)
{
    struct bk_target *t = state;
    if (t->stopping)
        return RD_ESHUTDOWN;
    if (!done)
        return RD_EINVAL;
    int rv = check_name(t, BK_REMOVE, name);
    if (rv != 0)
        return rv;
    struct bk_op *op = op_new(t, BK_REMOVE, name, data);
    if (!op)
        return RD_ENOMEM;
    op->done_cb = done;
    return op_start(t, op);
}

int bk_list(void *state, const char *prefix, rd_backup_list_cb done, void *data)
{
    struct bk_target *t = state;
    if (t->stopping)
        return RD_ESHUTDOWN;
    if (!done)
        return RD_EINVAL;
    if (!prefix)
        prefix = "";
    int rv = check_name(t, BK_LIST, prefix);
    if (rv != 0)
        return rv;
    struct bk_op *op = op_new(t, BK_LIST, prefix, data);
    if (!op)
        return RD_ENOMEM;
    op->list_cb = done;
    return op_start(t, op);
}
