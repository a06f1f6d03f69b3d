/*
 * `recoveryd restore` (docs/backup.md): a data directory for a new cluster
 * from a backup and the archive after it, like `etcdutl snapshot restore`
 * with point-in-time recovery on top.
 *
 * Runs on a private libuv loop in the command's own process: the target is
 * the same backup plugin the engine writes through, loaded by the plugin
 * host from an instance config the URL stands for (url.c). It picks the
 * backup (the newest complete one, by its manifest, or --backup), checks
 * size, checksum and digest, replays the archived commands after the
 * backup's index up to --to-index / --to-time into the state, forgets the
 * old cluster's replica URLs (and records the new ones given with --peer),
 * and writes a raft data directory with libraft's own uv I/O: bootstrapped
 * with the new configuration, the state installed as a snapshot at the
 * backup's (or the replay's last) index. Every replica restored from the
 * same source with the same peers gets the same bytes, so they start as one
 * cluster with one state.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <raft.h>
#include <raft/uv.h>

#include "backup_int.h"
#include "net/httpc.h"
#include "plugin/host.h"
#include "recoveryd/error.h"
#include "registry/registry.h"

#define SOURCE_NAME "restore-source"

struct restore {
    const struct rd_restore_opts *o;
    FILE *out;
    char *err;
    size_t errlen;
    uv_loop_t loop;
    bool loop_inited;
    struct rd_config cfg;
    struct rd_fsm view; /* the plugin host's (empty) view of agents */
    struct rd_registry registry;
    struct rd_httpc *httpc;
    struct rd_plugin_host host;
    bool host_loaded;
    bool host_stopped;
    struct rd_restore_io io; /* the target, on the loop */
    struct rd_fsm fsm;       /* the state being restored */
    bool fsm_inited;
};

static int fail(struct restore *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct restore *r, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- the target, synchronously (the loop runs until the callback) -------------- */

struct call {
    bool done;
    int status;
    char detail[512];
    uint8_t *buf;
    size_t len;
    char **names;
    size_t n;
};

static void run_until(uv_loop_t *loop, const bool *done)
{
    while (!*done && uv_run(loop, UV_RUN_ONCE))
        ;
}

static void read_cb(void *data, int status, const void *buf, size_t len)
{
    struct call *c = data;
    c->status = status;
    if (status == 0) {
        c->buf = malloc(len ? len : 1);
        if (c->buf == NULL)
            c->status = RD_ENOMEM;
        else
            memcpy(c->buf, buf, len);
        c->len = len;
    }
    c->done = true;
}

int rd_restore__get(struct rd_restore_io *io, const char *name, uint8_t **buf, size_t *len)
{
    struct call c = {0};
    *buf = NULL;
    *len = 0;
    int rv = io->ops->read(io->state, name, read_cb, &c);
    if (rv != 0)
        return rv;
    run_until(io->loop, &c.done);
    if (!c.done)
        return RD_EIO;
    *buf = c.buf;
    *len = c.len;
    return c.status;
}

static void list_cb(void *data, int status, const char *const *names, const uint64_t *sizes,
                    size_t n, const char *detail)
{
    struct call *c = data;
    (void)sizes;
    c->status = status;
    if (detail != NULL)
        snprintf(c->detail, sizeof(c->detail), "%s", detail);
    if (status == 0 && n > 0) {
        c->names = calloc(n, sizeof(*c->names));
        if (c->names == NULL) {
            c->status = RD_ENOMEM;
        } else {
            c->n = n;
            for (size_t i = 0; i < n; i++)
                if ((c->names[i] = strdup(names[i])) == NULL)
                    c->status = RD_ENOMEM;
        }
    }
    c->done = true;
}

void rd_restore__names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int rd_restore__list(struct rd_restore_io *io, const char *prefix, char ***names, size_t *n,
                     char *detail, size_t dlen)
{
    struct call c = {0};
    *names = NULL;
    *n = 0;
    detail[0] = '\0';
    int rv = io->ops->list(io->state, prefix, list_cb, &c);
    if (rv != 0)
        return rv;
    run_until(io->loop, &c.done);
    if (!c.done)
        return RD_EIO;
    snprintf(detail, dlen, "%s", c.detail);
    if (c.status != 0) {
        rd_restore__names_free(c.names, c.n);
        return c.status;
    }
    *names = c.names;
    *n = c.n;
    return 0;
}

/* ---- opening the target ------------------------------------------------------------------- */

static bool observe_nothing(void *data, const char *detector, const struct rd_observation *obs)
{
    (void)data, (void)detector, (void)obs;
    return false;
}

static int open_target(struct restore *r)
{
    struct rd_backup_url url;
    char uerr[512];
    if (rd_backup_url_parse(r->o->from, &url, uerr, sizeof(uerr)) != 0)
        return fail(r, RD_EINVAL, "--from: %s", uerr);
    rd_config_defaults(&r->cfg);
    if (r->o->plugins_dir != NULL)
        snprintf(r->cfg.plugins.dir, sizeof(r->cfg.plugins.dir), "%s", r->o->plugins_dir);
    r->cfg.origin[RD_CFG_PLUGINS_DIR] = r->o->plugins_dir ? RD_CFG_FROM_FLAG : 0;
    struct rd_cfg_plugin *p = &r->cfg.plugins.instances[0];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), SOURCE_NAME);
    snprintf(p->plugin, sizeof(p->plugin), "%s", url.plugin);
    p->required = true;
    for (unsigned i = 0; i < url.n; i++) {
        snprintf(p->config[i].key, sizeof(p->config[i].key), "%s", url.kv[i].key);
        snprintf(p->config[i].value, sizeof(p->config[i].value), "%s", url.kv[i].value);
    }
    p->n_config = url.n;
    r->cfg.plugins.n_instances = 1;
    int rv = uv_loop_init(&r->loop);
    if (rv != 0)
        return fail(r, RD_EIO, "cannot start an event loop: %s", uv_strerror(rv));
    r->loop_inited = true;
    rd_fsm_init(&r->view);
    rd_registry_init(&r->registry);
    if (rd_httpc_new(&r->loop, &r->httpc) != 0)
        return fail(r, RD_EIO, "cannot start the HTTP client (libcurl)");
    struct rd_plugin_env env = {
        .loop = &r->loop,
        .cfg = &r->cfg,
        .fsm = &r->view,
        .registry = &r->registry,
        .httpc = r->httpc,
        .observe = observe_nothing,
    };
    char perr[1024];
    r->host_loaded = true;
    rv = rd_plugin_host_load(&r->host, &env, perr, sizeof(perr));
    if (rv == 0)
        rv = rd_plugin_host_start(&r->host, perr, sizeof(perr));
    if (rv != 0)
        return fail(r, rv, "--from %s: the %s backup plugin: %s", r->o->from, url.plugin, perr);
    const char *why;
    r->io.loop = &r->loop;
    rv = rd_plugin_host_backup(&r->host, SOURCE_NAME, &r->io.ops, &r->io.state, &why);
    if (rv != 0)
        return fail(r, rv, "--from %s: plugin %s is not a usable backup target: %s", r->o->from,
                    url.plugin, why);
    return 0;
}

static void host_stopped(void *data)
{
    struct restore *r = data;
    r->host_stopped = true;
}

static void httpc_closed(void *data)
{
    struct restore *r = data;
    r->httpc = NULL;
}

static void close_target(struct restore *r)
{
    if (!r->loop_inited)
        return;
    if (r->host_loaded) {
        rd_plugin_host_stop(&r->host, host_stopped, r);
        while ((!r->host_stopped || rd_plugin_host_busy(&r->host)) && uv_run(&r->loop, UV_RUN_ONCE))
            ;
    }
    if (r->httpc != NULL) {
        rd_httpc_close(r->httpc, httpc_closed, r);
        while (r->httpc != NULL && uv_run(&r->loop, UV_RUN_ONCE))
            ;
    }
    if (r->host_loaded)
        rd_plugin_host_close(&r->host);
    rd_registry_close(&r->registry);
    rd_fsm_close(&r->view);
    uv_run(&r->loop, UV_RUN_NOWAIT);
    uv_loop_close(&r->loop);
    r->loop_inited = false;
}

/* ---- choosing the backup -------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The manifest of the backup to restore: --backup, or the newest complete
 * one (by creation time, then index). */
static int choose(struct restore *r, struct rd_backup_manifest *chosen)
{
    char name[RD_BACKUP_NAME_MAX], merr[256];
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv;
    if (r->o->backup_id != NULL) {
        rd_backup_manifest_name(r->o->backup_id, name);
        rv = rd_restore__get(&r->io, name, &buf, &len);
        if (rv == RD_ENOTFOUND)
            return fail(r, rv,
                        "--backup %s: %s has no manifest %s: the backup is not there, or it "
                        "never completed",
                        r->o->backup_id, r->o->from, name);
        if (rv != 0)
            return fail(r, rv, "--backup %s: cannot read %s from %s: %s", r->o->backup_id, name,
                        r->o->from, rd_strerror(rv));
        rv = rd_backup_manifest_decode(buf, len, chosen, merr, sizeof(merr));
        free(buf);
        if (rv != 0)
            return fail(r, RD_ECORRUPT, "--backup %s: %s: %s", r->o->backup_id, name, merr);
        return 0;
    }
    char **names, detail[512];
    size_t n;
    rv = rd_restore__list(&r->io, RD_BACKUP_PREFIX, &names, &n, detail, sizeof(detail));
    if (rv != 0)
        return fail(r, rv, "cannot list the backups in %s: %s", r->o->from,
                    detail[0] ? detail : rd_strerror(rv));
    bool found = false;
    unsigned unreadable = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ends_with(names[i], ".json"))
            continue;
        struct rd_backup_manifest m;
        if (rd_restore__get(&r->io, names[i], &buf, &len) != 0) {
            unreadable++;
            continue;
        }
        rv = rd_backup_manifest_decode(buf, len, &m, merr, sizeof(merr));
        free(buf);
        if (rv != 0) {
            fprintf(r->out, "restore: skipping %s: %s\n", names[i], merr);
            unreadable++;
            continue;
        }
        if (r->o->to_index != 0 && m.index > r->o->to_index)
            continue; /* taken after the point asked for */
        if (r->o->has_to_time && m.created_at_ms > r->o->to_time_ms)
            continue;
        if (!found || m.created_at_ms > chosen->created_at_ms ||
            (m.created_at_ms == chosen->created_at_ms && m.index > chosen->index)) {
            *chosen = m;
            found = true;
        }
    }
    rd_restore__names_free(names, n);
    if (!found)
        return fail(r, RD_ENOTFOUND,
                    "%s holds no complete backup%s (no readable backups/<id>.json manifest%s)",
                    r->o->from,
                    r->o->to_index || r->o->has_to_time ? " taken before the point asked for" : "",
                    unreadable ? "; some were unreadable, see above" : "");
    return 0;
}

/* ---- the image ------------------------------------------------------------------------------- */

static int load_image(struct restore *r, const struct rd_backup_manifest *m, uint8_t **img,
                      size_t *len)
{
    char sum[17], want[17];
    int rv = rd_restore__get(&r->io, m->image, img, len);
    if (rv == RD_ENOTFOUND)
        return fail(r, RD_ECORRUPT,
                    "backup %s: its image %s is missing from %s although its manifest is there",
                    m->backup_id, m->image, r->o->from);
    if (rv != 0)
        return fail(r, rv, "backup %s: cannot read %s from %s: %s", m->backup_id, m->image,
                    r->o->from, rd_strerror(rv));
    if (*len != m->size)
        return fail(r, RD_ECORRUPT,
                    "backup %s is damaged: %s holds %zu bytes, its manifest says %" PRIu64
                    ": pick another with --backup",
                    m->backup_id, m->image, *len, m->size);
    uint64_t h = rd_fnv1a(RD_FNV_INIT, *img, *len);
    if (h != m->checksum) {
        rd_backup_hex16(h, sum);
        rd_backup_hex16(m->checksum, want);
        return fail(r, RD_ECORRUPT,
                    "backup %s is damaged: %s hashes to %s, its manifest says %s: pick another "
                    "with --backup",
                    m->backup_id, m->image, sum, want);
    }
    rd_fsm_init(&r->fsm);
    r->fsm_inited = true;
    rv = rd_fsm_restore(&r->fsm, *img, *len);
    if (rv != 0)
        return fail(r, RD_ECORRUPT, "backup %s does not decode: %s", m->backup_id, r->fsm.errmsg);
    /* rd_fsm_restore hashed every record it read (the digest's rebuild from
     * scratch): a full recomputation here would be that walk again. */
    uint64_t d = rd_fsm_digest(&r->fsm);
    if (d != m->digest) {
        rd_backup_hex16(d, sum);
        rd_backup_hex16(m->digest, want);
        return fail(r, RD_ECORRUPT,
                    "backup %s is damaged: its state digests to %s, its manifest says %s",
                    m->backup_id, sum, want);
    }
    return 0;
}

/* The new cluster's replicas: the old one's URLs are forgotten, the ones
 * given with --peer recorded, through the machine's own command (the same
 * on every replica restored with the same peers: the time is the state's). */
static int fresh_replicas(struct restore *r)
{
    struct rd_fsm *f = &r->fsm;
    uint64_t ids[RD_FSM_MAX_REPLICAS + RD_CFG_MAX_PEERS];
    const char *urls[RD_FSM_MAX_REPLICAS + RD_CFG_MAX_PEERS];
    unsigned n = 0;
    for (unsigned i = 0; i < f->n_replicas; i++) {
        ids[n] = f->replicas[i].id;
        urls[n++] = "";
    }
    for (unsigned i = 0; i < r->o->n_peers; i++) {
        if (r->o->peers[i].api_url[0] == '\0')
            continue;
        unsigned k = 0;
        while (k < n && ids[k] != r->o->peers[i].id)
            k++;
        ids[k] = r->o->peers[i].id;
        urls[k] = r->o->peers[i].api_url;
        if (k == n)
            n++;
    }
    for (unsigned i = 0; i < n; i++) {
        struct rd_cmd cmd = {.type = RD_CMD_REPLICA_INFO, .time_ms = f->last_time_ms};
        cmd.u.rinfo.id = ids[i];
        cmd.u.rinfo.api_url = RD_STR(urls[i]);
        struct rd_wbuf w;
        rd_w_init(&w);
        int rv = rd_cmd_encode(&cmd, &w);
        const struct rd_fsm_result *res;
        if (rv == 0)
            rv = rd_fsm_apply(f, w.p, w.len, &res);
        rd_w_free(&w);
        if (rv != 0)
            return fail(r, rv, "cannot reset the replicas' URLs: %s", f->errmsg);
    }
    return 0;
}

/*
 * The new cluster's id: the same for every replica restored from the same
 * backup to the same point with the same peers (etcd derives its restored
 * cluster's id from the initial cluster the same way), another for any
 * other restore.
 */
static void new_cluster_id(struct restore *r, const struct rd_backup_manifest *m, uint64_t index,
                           char out[RD_UUID_STRLEN])
{
    char seed[1024];
    int o = snprintf(seed, sizeof(seed), "%s|%s|%" PRIu64, m->cluster_id, m->backup_id, index);
    for (unsigned i = 0; i < r->o->n_peers && o < (int)sizeof(seed); i++)
        o += snprintf(seed + o, sizeof(seed) - (size_t)o, "|%" PRIu64 "=%s", r->o->peers[i].id,
                      r->o->peers[i].address);
    if (r->o->n_peers == 0 && o < (int)sizeof(seed))
        snprintf(seed + o, sizeof(seed) - (size_t)o, "|%" PRIu64 "=%s", r->o->replica_id,
                 r->o->raft_address);
    uint64_t h1 = rd_fnv1a(RD_FNV_INIT, seed, strlen(seed));
    uint64_t h2 = rd_fnv1a(h1 ^ 0x9e3779b97f4a7c15ULL, seed, strlen(seed));
    /* A version 4 layout (random-looking), variant 10xx. */
    snprintf(out, RD_UUID_STRLEN,
             "%08" PRIx32 "-%04" PRIx32 "-4%03" PRIx32 "-%04" PRIx32 "-%012" PRIx64,
             (uint32_t)(h1 >> 32), (uint32_t)(h1 >> 16) & 0xffff, (uint32_t)h1 & 0xfff,
             0x8000 | ((uint32_t)(h2 >> 48) & 0x3fff), (uint64_t)(h2 & 0xffffffffffffULL));
}

/* ---- the raft data directory --------------------------------------------------------------- */

struct raft_call {
    bool done;
    int status;
};

static void put_cb(struct raft_io_snapshot_put *req, int status)
{
    struct raft_call *c = req->data;
    c->status = status;
    c->done = true;
}

static void io_closed(struct raft_io *io)
{
    struct raft_call *c = io->data;
    c->done = true;
}

static int write_raft(struct restore *r, const char *raft_dir, const void *img, size_t len,
                      uint64_t index)
{
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int rv = 0;
    const char *self = r->o->raft_address;
    if (r->o->n_peers == 0) {
        rv = raft_configuration_add(&conf, r->o->replica_id, self, RAFT_VOTER);
    } else {
        for (unsigned i = 0; i < r->o->n_peers && rv == 0; i++)
            rv = raft_configuration_add(&conf, r->o->peers[i].id, r->o->peers[i].address,
                                        RAFT_VOTER);
        for (unsigned i = 0; i < r->o->n_peers; i++)
            if (r->o->peers[i].id == r->o->replica_id)
                self = r->o->peers[i].address;
    }
    if (rv != 0) {
        raft_configuration_close(&conf);
        return fail(r, RD_ENOMEM, "cannot build the raft configuration: %s", raft_strerror(rv));
    }
    struct raft_uv_transport transport = {.version = 1};
    struct raft_io io;
    memset(&io, 0, sizeof(io));
    if ((rv = raft_uv_tcp_init(&transport, &r->loop)) != 0) {
        raft_configuration_close(&conf);
        return fail(r, RD_EIO, "raft transport: %s", raft_strerror(rv));
    }
    if ((rv = raft_uv_init(&io, &r->loop, raft_dir, &transport)) != 0) {
        raft_uv_tcp_close(&transport);
        raft_configuration_close(&conf);
        return fail(r, RD_EIO, "raft storage in %s: %s", raft_dir, raft_strerror(rv));
    }
    raft_uv_set_segment_size(&io, r->cfg.storage.segment_size);
    int code = 0;
    rv = io.init(&io, r->o->replica_id, self);
    if (rv != 0) {
        code = fail(r, RD_EIO, "raft storage in %s: %s", raft_dir, io.errmsg);
        goto close;
    }
    /* The configuration as the first entry (term 1), then the state as a
     * snapshot at the backup's index: the entry goes behind the snapshot,
     * and the replica starts from the snapshot alone. */
    rv = io.bootstrap(&io, &conf);
    if (rv != 0) {
        code = fail(r, RD_EIO, "raft bootstrap in %s: %s (%s)", raft_dir, raft_strerror(rv),
                    io.errmsg);
        goto close;
    }
    raft_term term;
    raft_id vote;
    struct raft_snapshot *loaded = NULL;
    raft_index start;
    struct raft_entry *entries = NULL;
    size_t n_entries = 0;
    rv = io.load(&io, &term, &vote, &loaded, &start, &entries, &n_entries);
    if (rv != 0) {
        code = fail(r, RD_EIO, "raft load in %s: %s (%s)", raft_dir, raft_strerror(rv), io.errmsg);
        goto close;
    }
    for (size_t i = 0; i < n_entries; i++)
        if (entries[i].batch != NULL && (i == 0 || entries[i].batch != entries[i - 1].batch))
            raft_free(entries[i].batch);
    raft_free(entries);
    struct raft_buffer buf = {.base = (void *)img, .len = len};
    struct raft_snapshot snap = {
        .index = index,
        .term = 1,
        .configuration = conf,
        .configuration_index = 1,
        .bufs = &buf,
        .n_bufs = 1,
    };
    struct raft_call put = {0};
    struct raft_io_snapshot_put req = {.data = &put};
    rv = io.snapshot_put(&io, 0, &req, &snap, put_cb);
    if (rv == 0)
        run_until(&r->loop, &put.done);
    if (rv != 0 || put.status != 0) {
        code = fail(r, RD_EIO, "writing the snapshot in %s: %s (%s)", raft_dir,
                    raft_strerror(rv ? rv : put.status), io.errmsg);
        goto close;
    }
close:;
    struct raft_call closed = {0};
    io.data = &closed;
    io.close(&io, io_closed);
    run_until(&r->loop, &closed.done);
    raft_uv_close(&io);
    raft_uv_tcp_close(&transport);
    raft_configuration_close(&conf);
    return code;
}

/* DIR must not exist, or be an empty directory. */
static int check_data_dir(struct restore *r, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return fail(r, RD_EIO, "--data-dir %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return fail(r, RD_EEXISTS, "--data-dir %s exists and is not a directory", dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return fail(r, RD_EIO, "--data-dir %s: %s", dir, strerror(errno));
    struct dirent *e;
    char first[256] = "";
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(first, sizeof(first), "%s", e->d_name);
        break;
    }
    closedir(d);
    if (first[0] != '\0')
        return fail(r, RD_EEXISTS,
                    "--data-dir %s is not empty (it holds %s): restore writes a new data "
                    "directory; move the old one aside (mv %s %s.old) or name another",
                    dir, first, dir, dir);
    return 0;
}

static int make_dir(struct restore *r, const char *dir)
{
    char path[RD_CFG_STR + 16];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return fail(r, RD_EIO, "cannot create %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return fail(r, RD_EIO, "cannot create %s: %s", path, strerror(errno));
    return 0;
}

/* ---- the command ------------------------------------------------------------------------------
 */

int rd_restore(const struct rd_restore_opts *o, FILE *out, char *err, size_t errlen)
{
    static struct restore r; /* large (the plugin host): off the stack */
    memset(&r, 0, sizeof(r));
    r.o = o;
    r.out = out;
    r.err = err;
    r.errlen = errlen;
    err[0] = '\0';
    uint8_t *img = NULL;
    size_t img_len = 0;
    struct rd_wbuf snap;
    rd_w_init(&snap);
    char raft_dir[RD_CFG_STR + 16];
    int rv = check_data_dir(&r, o->data_dir);
    if (rv == 0)
        rv = open_target(&r);
    struct rd_backup_manifest m;
    if (rv == 0)
        rv = choose(&r, &m);
    if (rv == 0) {
        char created[RD_TIME_STRLEN];
        rd_time_format(m.created_at_ms, created);
        fprintf(out,
                "restore: backup %s of cluster %s: index %" PRIu64 ", term %" PRIu64
                ", taken %s, %" PRIu64 " bytes\n",
                m.backup_id, m.cluster_id[0] ? m.cluster_id : "(unnamed)", m.index, m.term, created,
                m.size);
        rv = load_image(&r, &m, &img, &img_len);
    }
    uint64_t index = m.index;
    if (rv == 0) {
        char dig[17];
        rd_backup_hex16(m.digest, dig);
        fprintf(out, "restore: checksum and digest %s verified\n", dig);
        rv = rd_backup__replay(&r.fsm, &r.io, &m, o, &index, out, err, errlen);
    }
    if (rv == 0)
        rv = fresh_replicas(&r);
    char cluster[RD_UUID_STRLEN] = "";
    if (rv == 0) {
        new_cluster_id(&r, &m, index, cluster);
        rd_fsm_rename_cluster(&r.fsm, cluster);
    }
    if (rv == 0) {
        rv = rd_fsm_snapshot(&r.fsm, &snap);
        if (rv != 0)
            fail(&r, rv, "cannot write the restored state: %s", rd_strerror(rv));
    }
    if (rv == 0) {
        snprintf(raft_dir, sizeof(raft_dir), "%s/raft", o->data_dir);
        rv = make_dir(&r, raft_dir);
    }
    if (rv == 0)
        rv = write_raft(&r, raft_dir, snap.p, snap.len, index);
    if (rv == 0) {
        char dig[17];
        rd_backup_hex16(rd_fsm_digest(&r.fsm), dig);
        fprintf(out, "restore: wrote %s: new cluster %s at index %" PRIu64 " (state digest %s), ",
                o->data_dir, cluster, index, dig);
        if (o->n_peers == 0) {
            fprintf(out, "one voter: replica %" PRIu64 " at %s\n", o->replica_id, o->raft_address);
        } else {
            fprintf(out, "voters:");
            for (unsigned i = 0; i < o->n_peers; i++)
                fprintf(out, " %" PRIu64 "=%s", o->peers[i].id, o->peers[i].address);
            fprintf(out, "\n");
        }
        fprintf(out,
                "restore: start recoveryd with --data-dir %s, replica id %" PRIu64
                " and the same peers\n",
                o->data_dir, o->replica_id);
    }
    free(img);
    rd_w_free(&snap);
    if (r.fsm_inited)
        rd_fsm_close(&r.fsm);
    close_target(&r);
    return rv;
}
