/*
 * file: a backup target that keeps each object as a file under a directory
 * (a local disk, or a volume mounted into the pod in Kubernetes).
 *
 * Object `backups/x.img` is the file DIR/backups/x.img; directories are
 * created as needed (0700, files 0600). A write goes to a temporary file in
 * the object's own directory (".rd-tmp-" and six random characters), is
 * written and fsync'd, renamed over the object and the directory fsync'd:
 * a reader sees the old object or the new one, never part of one, and a
 * write that fails at any point removes its temporary file and leaves the
 * old object as it was. A crash mid-write can leave a temporary file: list
 * ignores them and names starting with ".rd-tmp-" are refused as objects,
 * so they are safe to delete whenever no recoveryd writes.
 *
 * `dir` is taken as written; a relative one is resolved against recoveryd's
 * working directory when the instance is initialised (the host passes plugin
 * keys as text: it resolves relative paths only for its own keys, against
 * the config file's directory), so an absolute path is the one to give.
 * It is created (0700, with its parents) at start when missing.
 *
 * Every file system call runs on the pool (backup_target.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkostemp */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/backup_target.h"
#include "recoveryd/plugin.h"

#define TMP_PREFIX     ".rd-tmp-"
#define TMP_PREFIX_LEN (sizeof(TMP_PREFIX) - 1)
#define DIR_MAX        3000 /* leaves room for a 255-byte name and a temporary suffix */

struct ft {
    struct bk_target base; /* first: the ops get this state */
    char *dir;             /* absolute, without a trailing '/', not "/" itself */
};

static const struct rd_plugin_key keys[] = {
    {"dir", RD_KEY_STRING, NULL, 0, 0,
     "directory the objects are files under (created 0700 when missing); a relative path is "
     "resolved against recoveryd's working directory"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* ---- helpers (pool threads) -------------------------------------------------------- */

static int errno_status(int e)
{
    switch (e) {
    case ENOSPC:
    case EDQUOT:
        return RD_ENOSPACE;
    case EFBIG:
        return RD_ETOOLARGE;
    case ENOMEM:
        return RD_ENOMEM;
    }
    return RD_EIO;
}

/* fsync of directory `path`: makes the entries just created, renamed or
 * removed in it durable. 0 or errno. */
static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int rv = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return rv;
}

/*
 * Creates directory `path` and its missing parents (0700), fsyncing the
 * parent of each directory made. `path` is modified during the call and
 * restored. 0, or errno with the directory that failed in `failed`.
 */
static int make_dirs(char *path, char *failed, size_t flen)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        snprintf(failed, flen, "%s", path);
        return ENOTDIR;
    }
    if (errno != ENOENT) {
        snprintf(failed, flen, "%s", path);
        return errno;
    }
    char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        *slash = '\0';
        int rv = make_dirs(path, failed, flen);
        *slash = '/';
        if (rv != 0)
            return rv;
    }
    if (mkdir(path, 0700) != 0) {
        int e = errno;
        if (e != EEXIST || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            snprintf(failed, flen, "%s", path);
            return e == EEXIST ? ENOTDIR : e;
        }
        return 0; /* made meanwhile by another write */
    }
    if (slash) { /* the new entry lives in the parent */
        char *cut = slash == path ? slash + 1 : slash;
        char c = *cut;
        *cut = '\0';
        int rv = sync_dir(path);
        *cut = c;
        if (rv != 0) {
            snprintf(failed, flen, "%s (syncing its parent)", path);
            return rv;
        }
    }
    return 0;
}

static bool write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t n = write(fd, p, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (n == 0) {
            errno = EIO;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* ---- the operations (pool threads) --------------------------------------------------- */

static void do_write(struct ft *f, struct bk_op *op)
{
    char path[PATH_MAX], parent[PATH_MAX], tmp[PATH_MAX], failed[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", f->dir, op->name);
    snprintf(parent, sizeof parent, "%s", path);
    *strrchr(parent, '/') = '\0'; /* the object's directory: f->dir or below */
    int e = make_dirs(parent, failed, sizeof failed);
    if (e != 0) {
        bk_fail(op, errno_status(e), "write %s: create directory %s: %s", op->name, failed,
                strerror(e));
        return;
    }
    snprintf(tmp, sizeof tmp, "%s/%sXXXXXX", parent, TMP_PREFIX);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        bk_fail(op, errno_status(e), "write %s: create a temporary file in %s: %s", op->name,
                parent, strerror(e));
        return;
    }
    const char *step = "write";
    if (!write_all(fd, op->buf, op->len))
        goto fail;
    step = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    step = "close";
    int rc = close(fd);
    fd = -1;
    if (rc != 0)
        goto fail;
    step = "rename";
    if (rename(tmp, path) != 0)
        goto fail;
    e = sync_dir(parent);
    if (e != 0) /* the new object is in place; only its durability is in doubt */
        bk_fail(op, errno_status(e), "write %s: fsync directory %s: %s", op->name, parent,
                strerror(e));
    return;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    if (strcmp(step, "rename") == 0)
        bk_fail(op, errno_status(e), "write %s: rename %s to %s: %s", op->name, tmp, path,
                strerror(e));
    else
        bk_fail(op, errno_status(e), "write %s: %s %s (%zu bytes): %s", op->name, step, tmp,
                op->len, strerror(e));
}

static void do_read(struct ft *f, struct bk_op *op)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", f->dir, op->name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            bk_fail(op, RD_ENOTFOUND, "read %s: %s: no such object", op->name, path);
        else
            bk_fail(op, errno_status(e), "read %s: open %s: %s", op->name, path, strerror(e));
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        bk_fail(op, errno_status(e), "read %s: stat %s: %s", op->name, path, strerror(e));
        close(fd);
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        bk_fail(op, RD_ENOTFOUND, "read %s: %s is a directory, not an object", op->name, path);
        close(fd);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        bk_fail(op, RD_EIO, "read %s: %s is not a regular file", op->name, path);
        close(fd);
        return;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            bk_fail(op, RD_ENOMEM, "read %s: %s: out of memory for %zu bytes", op->name, path, cap);
            close(fd);
            return;
        }
        if (len == cap) { /* it grew since fstat (someone else's file) */
            char *more = realloc(buf, cap * 2);
            if (!more)
                free(buf);
            buf = more;
            cap *= 2;
            continue;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            bk_fail(op, errno_status(e), "read %s: read %s: %s", op->name, path, strerror(e));
            free(buf);
            close(fd);
            return;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    op->buf = buf;
    op->len = len;
}

static void do_remove(struct ft *f, struct bk_op *op)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", f->dir, op->name);
    if (unlink(path) != 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR || e == EISDIR)
            return; /* no such object: removing it is done */
        bk_fail(op, errno_status(e), "remove %s: unlink %s: %s", op->name, path, strerror(e));
        return;
    }
    *strrchr(path, '/') = '\0';
    int e = sync_dir(path);
    if (e != 0)
        bk_fail(op, errno_status(e), "remove %s: fsync directory %s: %s", op->name, path,
                strerror(e));
}

/* True when directory `rel` ("a/b") can hold names starting with `prefix`. */
static bool may_hold(const char *rel, size_t rel_len, const char *prefix, size_t plen)
{
    /* Names under it start with "rel/": one of the two must start with the other. */
    size_t n = rel_len + 1 < plen ? rel_len + 1 : plen;
    if (n <= rel_len)
        return strncmp(rel, prefix, n) == 0;
    return strncmp(rel, prefix, rel_len) == 0 && prefix[rel_len] == '/';
}

/*
 * Adds the objects under `path` (whose first `root_len` bytes are the target
 * directory) starting with `prefix`. `path` is a PATH_MAX buffer, extended
 * and restored. 0, or a failure set on `op`.
 */
static int walk(struct bk_op *op, char *path, size_t root_len)
{
    size_t plen = strlen(op->name);
    DIR *d = opendir(path);
    if (!d) {
        int e = errno;
        if (e == ENOENT && strlen(path) == root_len)
            return 0; /* no directory yet: no objects */
        bk_fail(op, errno_status(e), "list %s: open directory %s: %s", op->name, path, strerror(e));
        return -1;
    }
    size_t len = strlen(path);
    int rv = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0) {
                int e = errno;
                bk_fail(op, errno_status(e), "list %s: read directory %s: %s", op->name, path,
                        strerror(e));
                rv = -1;
            }
            break;
        }
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 ||
            strncmp(n, TMP_PREFIX, TMP_PREFIX_LEN) == 0)
            continue;
        size_t nlen = strlen(n);
        if (len + 1 + nlen >= PATH_MAX)
            continue;
        path[len] = '/';
        memcpy(path + len + 1, n, nlen + 1);
        const char *rel = path + root_len + 1;
        size_t rel_len = len + nlen - root_len;
        char why[8];
        struct stat st;
        /* Only names that are object names: lost+found, editors' files and
         * the like are not this target's. */
        if (rel_len > BK_NAME_MAX || !bk_name_valid(rel, why, sizeof why) ||
            fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            path[len] = '\0';
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (may_hold(rel, rel_len, op->name, plen))
                rv = walk(op, path, root_len);
        } else if (S_ISREG(st.st_mode) && strncmp(rel, op->name, plen) == 0) {
            if (bk_list_add(&op->list, rel, rel_len, (uint64_t)st.st_size) != 0) {
                bk_fail(op, RD_ENOMEM, "list %s: out of memory after %zu objects", op->name,
                        op->list.n);
                rv = -1;
            }
        }
        path[len] = '\0';
        if (rv != 0)
            break;
    }
    closedir(d);
    return rv;
}

static void do_list(struct ft *f, struct bk_op *op)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", f->dir);
    if (walk(op, path, strlen(path)) == 0)
        bk_list_sort(&op->list);
    else
        bk_list_free(&op->list);
}

static void perform(struct bk_target *t, struct bk_op *op)
{
    struct ft *f = (struct ft *)t;
    switch (op->kind) {
    case BK_WRITE:
        do_write(f, op);
        break;
    case BK_READ:
        do_read(f, op);
        break;
    case BK_REMOVE:
        do_remove(f, op);
        break;
    case BK_LIST:
        do_list(f, op);
        break;
    }
}

/* Temporary files are this plugin's own: no object may look like one. */
static bool name_ok(const char *name, char *why, size_t len)
{
    for (const char *c = name; c; c = strchr(c, '/') ? strchr(c, '/') + 1 : NULL)
        if (strncmp(c, TMP_PREFIX, TMP_PREFIX_LEN) == 0) {
            snprintf(why, len,
                     "object name '%s': components starting with '%s' are the file "
                     "target's temporary files",
                     name, TMP_PREFIX);
            return false;
        }
    return true;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

struct prepare {
    struct ft *f;
    int err;
    char failed[PATH_MAX + 32];
};

static void prepare_work(void *data)
{
    struct prepare *p = data;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", p->f->dir);
    p->err = make_dirs(path, p->failed, sizeof p->failed);
}

static void prepare_done(void *data, int status)
{
    struct prepare *p = data;
    struct ft *f = p->f;
    if (status == 0 && p->err != 0)
        f->base.host->log(f->base.inst, RD_PLOG_ERROR, "backup_dir_failed",
                          "dir=%s error=\"create directory %s: %s\"", f->dir, p->failed,
                          strerror(p->err));
    else if (status == 0)
        f->base.host->log(f->base.inst, RD_PLOG_INFO, "backup_dir", "dir=%s", f->dir);
    free(p);
    bk_target_queued_done(&f->base);
}

static int ft_init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    struct ft *f = state;
    bk_target_init(&f->base, inst, host, "file");
    f->base.perform = perform;
    f->base.name_ok = name_ok;
    const char *dir = host->config_string(inst, "dir");
    if (!dir || dir[0] == '\0') {
        host->set_error(inst, "dir: expected the directory backups go to, got nothing");
        return RD_ECONFIG;
    }
    char cwd[PATH_MAX] = "";
    if (dir[0] != '/' && !getcwd(cwd, sizeof cwd)) {
        host->set_error(inst, "dir: '%s' is relative and the working directory is unknown (%s)",
                        dir, strerror(errno));
        return RD_ECONFIG;
    }
    size_t need = strlen(cwd) + 1 + strlen(dir) + 1;
    if (need > DIR_MAX) {
        host->set_error(inst, "dir: expected a path of at most %d bytes, got %zu: %.60s...",
                        DIR_MAX, need, dir);
        return RD_ECONFIG;
    }
    f->dir = malloc(need);
    if (!f->dir) {
        host->set_error(inst, "out of memory");
        return RD_ENOMEM;
    }
    snprintf(f->dir, need, "%s%s%s", cwd, cwd[0] ? "/" : "", dir);
    size_t n = strlen(f->dir);
    while (n > 1 && f->dir[n - 1] == '/')
        f->dir[--n] = '\0';
    if (strcmp(f->dir, "/") == 0) {
        host->set_error(inst, "dir: expected a directory for backups, got the root directory");
        free(f->dir);
        f->dir = NULL;
        return RD_ECONFIG;
    }
    return 0;
}

static int ft_start(void *state)
{
    struct ft *f = state;
    struct prepare *p = calloc(1, sizeof *p);
    if (!p)
        return RD_ENOMEM;
    p->f = f;
    int rv = bk_target_queue(&f->base, prepare_work, prepare_done, p);
    if (rv != 0)
        free(p);
    return rv;
}

static void ft_stop(void *state, void (*done)(rd_plugin_instance_t *inst))
{
    struct ft *f = state;
    bk_target_stop(&f->base, done);
}

static void ft_destroy(void *state)
{
    struct ft *f = state;
    free(f->dir);
    f->dir = NULL;
}

static const struct rd_backup_ops ops = {
    .version = RD_BACKUP_OPS_VERSION,
    .size = sizeof(struct rd_backup_ops),
    .write = bk_write,
    .read = bk_read,
    .remove = bk_remove,
    .list = bk_list,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = "file",
    .version = "1.0.0",
    .kind = RD_PLUGIN_BACKUP,
    .description = "keeps backup objects as files under a directory, written atomically "
                   "(temporary file, fsync, rename, fsync of the directory)",
    .keys = keys,
    .state_size = sizeof(struct ft),
    .init = ft_init,
    .start = ft_start,
    .stop = ft_stop,
    .destroy = ft_destroy,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}
