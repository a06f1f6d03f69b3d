#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "common/drained.h"
#include "fsm/fsm.h"
#include "host.h"
#include "net/httpc.h"
#include "registry/registry.h"

/* Size of the descriptor as each minor version defined it: a plugin built
 * against minor N must provide at least this many bytes. */
static const size_t descriptor_size_by_minor[] = {
    sizeof(struct rd_plugin_descriptor), /* 1.0 */
    sizeof(struct rd_plugin_descriptor), /* 1.1: backup ops version 2, descriptor unchanged */
    sizeof(struct rd_plugin_descriptor), /* 1.2: alert ops version 2, descriptor unchanged */
    sizeof(struct rd_plugin_descriptor), /* 1.3: rd_observation's trend, descriptor unchanged */
    sizeof(struct rd_plugin_descriptor), /* 1.4: the host's table_realloc, descriptor unchanged */
    sizeof(struct rd_plugin_descriptor), /* 1.5: the host's input_drained_ns, same descriptor */
};
/* A minor added without its line here would be read past the table. */
_Static_assert(sizeof(descriptor_size_by_minor) / sizeof(descriptor_size_by_minor[0]) ==
                   RD_PLUGIN_ABI_MINOR + 1,
               "descriptor_size_by_minor needs a line for every minor");

static const char *kind_name(int kind)
{
    switch (kind) {
    case RD_PLUGIN_DETECTOR:
        return "detector";
    case RD_PLUGIN_BACKUP:
        return "backup";
    case RD_PLUGIN_ALERT:
        return "alert";
    }
    return "unknown";
}

static const char *inst_state_name(enum rd_inst_state s)
{
    switch (s) {
    case RD_INST_LOADED:
        return "loaded";
    case RD_INST_RUNNING:
        return "running";
    case RD_INST_FAILED:
        return "failed";
    case RD_INST_STOPPED:
        return "stopped";
    }
    return "unknown";
}

int rd_plugin_check(const struct rd_plugin_descriptor *d, const char *file, char *err,
                    size_t errlen)
{
    if (d == NULL) {
        snprintf(err, errlen, "%s: rd_plugin_entry() returned NULL", file);
        return RD_EINVAL;
    }
    if (d->abi_major != RD_PLUGIN_ABI_MAJOR) {
        snprintf(err, errlen,
                 "%s: plugin ABI %u.%u, but this recoveryd speaks ABI %d.%d: rebuild the plugin "
                 "against this recoveryd's plugin.h",
                 file, d->abi_major, d->abi_minor, RD_PLUGIN_ABI_MAJOR, RD_PLUGIN_ABI_MINOR);
        return RD_EUNSUPPORTED;
    }
    if (d->abi_minor > RD_PLUGIN_ABI_MINOR) {
        snprintf(err, errlen,
                 "%s: plugin ABI %u.%u is newer than this recoveryd's ABI %d.%d: upgrade "
                 "recoveryd or rebuild the plugin",
                 file, d->abi_major, d->abi_minor, RD_PLUGIN_ABI_MAJOR, RD_PLUGIN_ABI_MINOR);
        return RD_EUNSUPPORTED;
    }
    size_t want = descriptor_size_by_minor[d->abi_minor];
    if (d->size < want) {
        snprintf(err, errlen,
                 "%s: plugin descriptor is %u bytes, ABI %u.%u needs at least %zu (built "
                 "against a different plugin.h?); this recoveryd speaks ABI %d.%d",
                 file, d->size, d->abi_major, d->abi_minor, want, RD_PLUGIN_ABI_MAJOR,
                 RD_PLUGIN_ABI_MINOR);
        return RD_EUNSUPPORTED;
    }
    if (d->build_sig == NULL || strcmp(d->build_sig, RD_PLUGIN_BUILD_SIG) != 0) {
        snprintf(err, errlen,
                 "%s: plugin build signature '%s' does not match this recoveryd's '%s'", file,
                 d->build_sig ? d->build_sig : "(none)", RD_PLUGIN_BUILD_SIG);
        return RD_EUNSUPPORTED;
    }
    if (d->name == NULL || d->name[0] == '\0' || d->init == NULL || d->ops == NULL) {
        snprintf(err, errlen, "%s: plugin descriptor lacks a name, init() or ops", file);
        return RD_EINVAL;
    }
    const uint32_t *ops = d->ops; /* every ops table starts with version, size */
    switch (d->kind) {
    case RD_PLUGIN_DETECTOR:
        if (ops[0] < 1 || ops[1] < sizeof(struct rd_detector_ops)) {
            snprintf(err, errlen,
                     "%s: detector ops version %u size %u, host needs version 1 size %zu", file,
                     ops[0], ops[1], sizeof(struct rd_detector_ops));
            return RD_EUNSUPPORTED;
        }
        break;
    case RD_PLUGIN_ALERT:
        /* Version 1 (send only) still loads: a plugin built before ABI 1.2. */
        if (ops[0] < 1 || ops[1] < offsetof(struct rd_alert_ops, leadership) ||
            (ops[0] >= 2 && ops[1] < sizeof(struct rd_alert_ops))) {
            snprintf(err, errlen,
                     "%s: alert ops version %u size %u, host needs version 1 size %zu or "
                     "version 2 size %zu",
                     file, ops[0], ops[1], offsetof(struct rd_alert_ops, leadership),
                     sizeof(struct rd_alert_ops));
            return RD_EUNSUPPORTED;
        }
        break;
    case RD_PLUGIN_BACKUP:
        if (ops[0] < 2 || ops[1] < sizeof(struct rd_backup_ops)) {
            snprintf(err, errlen,
                     "%s: backup ops version %u size %u, host needs version 2 size %zu", file,
                     ops[0], ops[1], sizeof(struct rd_backup_ops));
            return RD_EUNSUPPORTED;
        }
        break;
    default:
        snprintf(err, errlen, "%s: unknown plugin kind %d", file, d->kind);
        return RD_EINVAL;
    }
    return 0;
}

/* ---- configuration binding ------------------------------------------------ */

static const char *key_type_name(int t)
{
    switch (t) {
    case RD_KEY_STRING:
        return "a string";
    case RD_KEY_INT:
        return "an integer";
    case RD_KEY_DOUBLE:
        return "a number";
    case RD_KEY_BOOL:
        return "true or false";
    case RD_KEY_DURATION:
        return "a duration like 250ms, 10s, 2m";
    case RD_KEY_PERCENT:
        return "a percentage like 80%";
    case RD_KEY_SIZE:
        return "a size like 4096, 512KiB, 8MiB";
    }
    return "a value";
}

/* Parses `text` as `k` into `v`; 0 or RD_EINVAL. */
static int parse_value(const struct rd_plugin_key *k, const char *text, struct rd_plugin_value *v)
{
    char *end;
    double num = 0;
    snprintf(v->text, sizeof(v->text), "%s", text);
    v->key = k;
    switch (k->type) {
    case RD_KEY_STRING:
        return 0;
    case RD_KEY_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0 || strcmp(text, "on") == 0)
            v->b = true;
        else if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0 || strcmp(text, "off") == 0)
            v->b = false;
        else
            return RD_EINVAL;
        return 0;
    case RD_KEY_INT: {
        errno = 0;
        long long x = strtoll(text, &end, 10);
        if (errno || end == text || *end != '\0')
            return RD_EINVAL;
        v->i = x;
        v->d = (double)x;
        v->u = x < 0 ? 0 : (uint64_t)x;
        num = (double)x;
        break;
    }
    case RD_KEY_DOUBLE:
        errno = 0;
        num = strtod(text, &end);
        if (errno || end == text || *end != '\0' || !isfinite(num))
            return RD_EINVAL;
        v->d = num;
        v->i = (int64_t)num;
        break;
    case RD_KEY_DURATION:
        if (rd_config_parse_duration(text, &v->u) != 0)
            return RD_EINVAL;
        num = (double)v->u;
        break;
    case RD_KEY_PERCENT: {
        unsigned p;
        if (rd_config_parse_percent(text, &p) != 0)
            return RD_EINVAL;
        v->u = p;
        num = p;
        break;
    }
    case RD_KEY_SIZE: {
        size_t sz;
        if (rd_config_parse_size(text, &sz) != 0)
            return RD_EINVAL;
        v->u = sz;
        num = (double)sz;
        break;
    }
    default:
        return RD_EINVAL;
    }
    v->d = v->d ? v->d : num;
    if (!(k->min == 0 && k->max == 0) && (num < k->min || num > k->max))
        return RD_EINVAL;
    return 0;
}

static void key_expectation(const struct rd_plugin_key *k, char *buf, size_t len)
{
    if (!(k->min == 0 && k->max == 0) && k->type != RD_KEY_STRING && k->type != RD_KEY_BOOL)
        snprintf(buf, len, "%s from %g to %g%s", key_type_name(k->type), k->min, k->max,
                 k->type == RD_KEY_DURATION ? " ms" : "");
    else
        snprintf(buf, len, "%s", key_type_name(k->type));
}

static int bind_config(struct rd_plugin_instance *in, const char *file, char *err, size_t errlen)
{
    const struct rd_cfg_plugin *c = in->cfg;
    const struct rd_plugin_key *keys = in->desc->keys;
    /* Every configured key must be declared, and hold a valid value. */
    for (unsigned i = 0; i < c->n_config; i++) {
        const struct rd_cfg_kv *kv = &c->config[i];
        const struct rd_plugin_key *k = NULL;
        for (size_t j = 0; keys && keys[j].name; j++)
            if (strcmp(keys[j].name, kv->key) == 0)
                k = &keys[j];
        if (k == NULL) {
            char list[256] = "";
            size_t o = 0;
            for (size_t j = 0; keys && keys[j].name && o < sizeof(list) - 2; j++)
                o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", j ? ", " : "",
                                      keys[j].name);
            snprintf(err, errlen,
                     "%s:%d: plugins.instances[%u].config.%s: unknown key for plugin %s "
                     "(expected one of: %s)",
                     file, kv->line, in->index, kv->key, in->desc->name, list[0] ? list : "none");
            return RD_ECONFIG;
        }
    }
    in->n_values = 0;
    for (size_t j = 0; keys && keys[j].name && in->n_values < RD_CFG_MAX_PLUGIN_KEYS; j++) {
        const struct rd_plugin_key *k = &keys[j];
        const struct rd_cfg_kv *kv = rd_config_plugin_value(c, k->name);
        const char *text = kv ? kv->value : k->default_value;
        if (text == NULL) {
            snprintf(err, errlen,
                     "%s:%d: plugins.instances[%u].config.%s: required by plugin %s (%s)", file,
                     c->line, in->index, k->name, in->desc->name, k->help ? k->help : "");
            return RD_ECONFIG;
        }
        struct rd_plugin_value *v = &in->values[in->n_values++];
        memset(v, 0, sizeof(*v));
        if (parse_value(k, text, v) != 0) {
            char want[160];
            key_expectation(k, want, sizeof(want));
            snprintf(err, errlen, "%s:%d: plugins.instances[%u].config.%s: expected %s, got '%s'",
                     file, kv ? kv->line : c->line, in->index, k->name, want, text);
            return RD_ECONFIG;
        }
    }
    return 0;
}

/* ---- the host API ------------------------------------------------------- */

static struct rd_plugin_value *find_value(rd_plugin_instance_t *inst, const char *key)
{
    for (unsigned i = 0; i < inst->n_values; i++)
        if (strcmp(inst->values[i].key->name, key) == 0)
            return &inst->values[i];
    return NULL;
}

static void api_log(rd_plugin_instance_t *inst, int level, const char *event, const char *fmt, ...)
{
    char comp[80], msg[1024];
    snprintf(comp, sizeof(comp), "plugin.%s", inst->cfg->name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    enum rd_log_level l = level <= RD_PLOG_DEBUG  ? RD_LOG_DEBUG
                          : level == RD_PLOG_INFO ? RD_LOG_INFO
                          : level == RD_PLOG_WARN ? RD_LOG_WARN
                                                  : RD_LOG_ERROR;
    rd_log(l, comp, event, "%s", msg);
}

static const char *api_instance_name(rd_plugin_instance_t *inst)
{
    return inst->cfg->name;
}

static void api_set_error(rd_plugin_instance_t *inst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(inst->errmsg, sizeof(inst->errmsg), fmt, ap);
    va_end(ap);
}

static const char *api_config_string(rd_plugin_instance_t *inst, const char *key)
{
    struct rd_plugin_value *v = find_value(inst, key);
    return v ? v->text : NULL;
}

static int64_t api_config_int(rd_plugin_instance_t *inst, const char *key)
{
    struct rd_plugin_value *v = find_value(inst, key);
    return v ? v->i : 0;
}

static double api_config_double(rd_plugin_instance_t *inst, const char *key)
{
    struct rd_plugin_value *v = find_value(inst, key);
    return v ? v->d : 0;
}

static bool api_config_bool(rd_plugin_instance_t *inst, const char *key)
{
    struct rd_plugin_value *v = find_value(inst, key);
    return v ? v->b : false;
}

static uint64_t api_config_uint(rd_plugin_instance_t *inst, const char *key)
{
    struct rd_plugin_value *v = find_value(inst, key);
    return v ? v->u : 0;
}

static void api_detection_params(rd_plugin_instance_t *inst, struct rd_detection_params *out)
{
    const struct rd_config *cfg = inst->host->env.cfg;
    out->heartbeat_interval_ms = cfg->fault_tolerance.detection.heartbeat_interval_ms;
    out->health_check_timeout_ms = cfg->fault_tolerance.detection.health_check_timeout_ms;
    out->failure_threshold = cfg->fault_tolerance.detection.failure_threshold;
    out->recovery_threshold = cfg->fault_tolerance.detection.recovery_threshold;
}

static int64_t api_now_ms(void)
{
    return rd_now_ms();
}

struct rd_timer {
    uv_timer_t uv;
    rd_plugin_instance_t *inst;
    rd_timer_cb cb;
    void *data;
    struct rd_timer *next;
    bool once;
};

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void timer_unlink(struct rd_timer *t)
{
    for (struct rd_timer **p = &t->inst->timers; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            return;
        }
    }
}

static void api_timer_stop(rd_timer_t *t)
{
    if (t == NULL)
        return;
    timer_unlink(t);
    uv_timer_stop(&t->uv);
    uv_close((uv_handle_t *)&t->uv, timer_closed);
}

static void timer_fire(uv_timer_t *uvt)
{
    struct rd_timer *t = uvt->data;
    rd_timer_cb cb = t->cb;
    void *data = t->data;
    if (t->once)
        api_timer_stop(t); /* freed after the callback returns (uv_close is deferred) */
    cb(data);
}

static rd_timer_t *api_timer_start(rd_plugin_instance_t *inst, uint64_t first_ms,
                                   uint64_t repeat_ms, rd_timer_cb cb, void *data)
{
    if (inst->stopping || cb == NULL)
        return NULL;
    struct rd_timer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    uv_timer_init(inst->host->env.loop, &t->uv);
    t->uv.data = t;
    t->inst = inst;
    t->cb = cb;
    t->data = data;
    t->once = repeat_ms == 0;
    t->next = inst->timers;
    inst->timers = t;
    uv_timer_start(&t->uv, timer_fire, first_ms, repeat_ms);
    return t;
}

struct work {
    uv_work_t req;
    rd_plugin_instance_t *inst;
    rd_work_cb work;
    rd_after_work_cb done;
    void *data;
};

static void work_run(uv_work_t *req)
{
    struct work *w = req->data;
    w->work(w->data);
}

static void work_after(uv_work_t *req, int status)
{
    struct work *w = req->data;
    w->inst->pending_work--;
    if (w->done)
        w->done(w->data, status == UV_ECANCELED ? RD_ESHUTDOWN : 0);
    free(w);
}

static int api_queue_work(rd_plugin_instance_t *inst, rd_work_cb fn, rd_after_work_cb done,
                          void *data)
{
    if (inst->stopping || fn == NULL)
        return RD_ESHUTDOWN;
    struct work *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return RD_ENOMEM;
    w->req.data = w;
    w->inst = inst;
    w->work = fn;
    w->done = done;
    w->data = data;
    if (uv_queue_work(inst->host->env.loop, &w->req, work_run, work_after) != 0) {
        free(w);
        return RD_EIO;
    }
    inst->pending_work++;
    return 0;
}

static int api_http_request(rd_plugin_instance_t *inst, const struct rd_http_request *req,
                            rd_http_cb cb, void *data)
{
    if (inst->stopping || inst->host->httpc == NULL)
        return RD_ESHUTDOWN;
    return rd_httpc_request(inst->host->httpc, inst, req, cb, data);
}

static void api_observe(rd_plugin_instance_t *inst, const struct rd_observation *obs)
{
    struct rd_plugin_host *h = inst->host;
    h->observations_total++;
    /* A plugin built before minor 3 hands a shorter struct: no trend. */
    struct rd_observation old;
    if (obs != NULL && inst->desc->abi_minor < 3) {
        memset(&old, 0, sizeof(old));
        memcpy(&old, obs, offsetof(struct rd_observation, trend));
        obs = &old;
    }
    if (inst->desc->kind != RD_PLUGIN_DETECTOR || obs == NULL || obs->node_id == NULL ||
        !h->env.observe(h->env.observe_data, inst->cfg->name, obs))
        h->observations_ignored++;
}

static size_t api_node_count(rd_plugin_instance_t *inst)
{
    return inst->host->env.fsm->n_nodes;
}

static void node_view(struct rd_plugin_host *h, const struct rd_node *n, struct rd_node_view *v)
{
    struct rd_soft *s = rd_registry_get(h->env.registry, n->node_id, n->id_len);
    v->slot = s ? s->slot : UINT32_MAX;
    v->node_id = n->node_id;
    v->epoch = n->epoch;
    v->state = rd_node_state_name(n->state);
    v->health_url = n->health_url;
    v->labels_json = n->labels_json;
    v->slots = n->slots;
}

static int api_node_at(rd_plugin_instance_t *inst, size_t i, struct rd_node_view *out)
{
    const struct rd_fsm *f = inst->host->env.fsm;
    if (i >= f->n_nodes || f->nodes[i]->state == RD_NODE_LEFT)
        return RD_ENOTFOUND;
    node_view(inst->host, f->nodes[i], out);
    return 0;
}

static uint64_t *api_counter(rd_plugin_instance_t *inst, const char *name, const char *help)
{
    for (unsigned i = 0; i < inst->n_counters; i++)
        if (strcmp(inst->counters[i].name, name) == 0)
            return &inst->counters[i].value;
    if (inst->n_counters == RD_PLUGIN_MAX_COUNTERS || name == NULL || name[0] == '\0')
        return NULL;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return NULL;
    struct rd_plugin_counter *c = &inst->counters[inst->n_counters++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->help, sizeof(c->help), "%s", help ? help : name);
    c->value = 0;
    return &c->value;
}

static uint64_t api_input_drained_ns(rd_plugin_instance_t *inst)
{
    const struct rd_plugin_env *env = &inst->host->env;
    uint64_t now = rd_mono_ns();
    return env->drained != NULL ? rd_drained_at(env->drained, now) : now;
}

static void init_api(struct rd_host_api *a)
{
    memset(a, 0, sizeof(*a));
    a->abi_major = RD_PLUGIN_ABI_MAJOR;
    a->abi_minor = RD_PLUGIN_ABI_MINOR;
    a->size = sizeof(*a);
    a->log = api_log;
    a->instance_name = api_instance_name;
    a->set_error = api_set_error;
    a->config_string = api_config_string;
    a->config_int = api_config_int;
    a->config_double = api_config_double;
    a->config_bool = api_config_bool;
    a->config_uint = api_config_uint;
    a->detection_params = api_detection_params;
    a->now_ns = rd_mono_ns;
    a->now_ms = api_now_ms;
    a->timer_start = api_timer_start;
    a->timer_stop = api_timer_stop;
    a->queue_work = api_queue_work;
    a->http_request = api_http_request;
    a->observe = api_observe;
    a->node_count = api_node_count;
    a->node_at = api_node_at;
    a->counter = api_counter;
    a->table_realloc = rd_nofork_realloc;
    a->input_drained_ns = api_input_drained_ns;
}

/* ---- lifecycle ------------------------------------------------------------ */

static int load_one(const struct rd_config *cfg, struct rd_plugin_instance *in, char *err,
                    size_t errlen)
{
    const char *file = cfg->path[0] ? cfg->path : "(defaults)";
    snprintf(in->path, sizeof(in->path), "%s/%s.so", cfg->plugins.dir, in->cfg->plugin);
    void *dl = dlopen(in->path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        /* Name where the directory came from too: a relative plugins.dir in
         * the file is resolved against the file's directory. */
        char where[320], origin[RD_CFG_ERRLEN];
        if (in->cfg->line > 0)
            snprintf(where, sizeof(where), "%s:%d: ", file, in->cfg->line);
        else
            where[0] = '\0'; /* a built-in instance has no line */
        snprintf(err, errlen, "%splugins.instances[%u]: cannot load plugin %s: %s (%s)", where,
                 in->index, in->path, dlerror(),
                 rd_config_origin(cfg, RD_CFG_PLUGINS_DIR, origin, sizeof(origin)));
        return RD_ECONFIG;
    }
    rd_plugin_entry_fn entry;
    *(void **)&entry = dlsym(dl, RD_PLUGIN_ENTRY);
    if (entry == NULL) {
        snprintf(err, errlen, "%s: not a recoveryd plugin (no %s symbol)", in->path,
                 RD_PLUGIN_ENTRY);
        return RD_EUNSUPPORTED;
    }
    const struct rd_plugin_descriptor *d = entry();
    int rv = rd_plugin_check(d, in->path, err, errlen);
    if (rv != 0)
        return rv;
    in->desc = d;
    return bind_config(in, file, err, errlen);
}

int rd_plugin_host_load(struct rd_plugin_host *h, const struct rd_plugin_env *env, char *err,
                        size_t errlen)
{
    h->env = *env;
    h->httpc = env->httpc;
    init_api(&h->api);
    const struct rd_config *cfg = env->cfg;
    h->n = 0;
    for (unsigned i = 0; i < cfg->plugins.n_instances; i++) {
        struct rd_plugin_instance *in = &h->insts[h->n];
        memset(in, 0, sizeof(*in));
        in->host = h;
        in->cfg = &cfg->plugins.instances[i];
        in->index = i;
        int rv = load_one(cfg, in, err, errlen);
        if (rv != 0)
            return rv;
        h->n++;
        in->state = calloc(1, in->desc->state_size ? in->desc->state_size : 1);
        if (in->state == NULL) {
            snprintf(err, errlen, "plugin %s: out of memory", in->cfg->name);
            return RD_ENOMEM;
        }
        in->errmsg[0] = '\0';
        rv = in->desc->init(in, &h->api, in->state);
        if (rv != 0) {
            in->st = RD_INST_FAILED;
            if (in->errmsg[0] == '\0')
                snprintf(in->errmsg, sizeof(in->errmsg), "init failed: %s", rd_strerror(rv));
            RD_ERROR("plugins", "init_failed", "instance=%s plugin=%s required=%s error=\"%s\"",
                     in->cfg->name, in->path, in->cfg->required ? "true" : "false", in->errmsg);
            if (in->cfg->required) {
                snprintf(err, errlen, "plugin instance %s (%s) is required and its init failed: %s",
                         in->cfg->name, in->path, in->errmsg);
                return RD_ECONFIG;
            }
            continue;
        }
        RD_INFO("plugins", "loaded", "instance=%s plugin=%s kind=%s version=%s", in->cfg->name,
                in->desc->name, kind_name(in->desc->kind),
                in->desc->version ? in->desc->version : "");
    }
    return 0;
}

int rd_plugin_check_config(const struct rd_config *cfg, char *err, size_t errlen)
{
    static struct rd_plugin_instance in; /* large: keep it off the stack */
    for (unsigned i = 0; i < cfg->plugins.n_instances; i++) {
        memset(&in, 0, sizeof(in));
        in.cfg = &cfg->plugins.instances[i];
        in.index = i;
        int rv = load_one(cfg, &in, err, errlen);
        if (rv != 0)
            return rv;
    }
    return 0;
}

int rd_plugin_host_start(struct rd_plugin_host *h, char *err, size_t errlen)
{
    for (unsigned i = 0; i < h->n; i++) {
        struct rd_plugin_instance *in = &h->insts[i];
        if (in->st != RD_INST_LOADED)
            continue;
        int rv = in->desc->start ? in->desc->start(in->state) : 0;
        if (rv != 0) {
            in->st = RD_INST_FAILED;
            if (in->errmsg[0] == '\0')
                snprintf(in->errmsg, sizeof(in->errmsg), "start failed: %s", rd_strerror(rv));
            RD_ERROR("plugins", "start_failed", "instance=%s error=\"%s\"", in->cfg->name,
                     in->errmsg);
            if (in->cfg->required) {
                snprintf(err, errlen, "plugin instance %s is required and failed to start: %s",
                         in->cfg->name, in->errmsg);
                return RD_ECONFIG;
            }
            continue;
        }
        in->st = RD_INST_RUNNING;
    }
    return 0;
}

static void stop_done(rd_plugin_instance_t *inst)
{
    struct rd_plugin_host *h = inst->host;
    inst->st = RD_INST_STOPPED;
    if (h->stopping > 0 && --h->stopping == 0 && h->stopped_cb != NULL) {
        void (*cb)(void *) = h->stopped_cb;
        h->stopped_cb = NULL;
        cb(h->stopped_data);
    }
}

void rd_plugin_host_stop(struct rd_plugin_host *h, void (*cb)(void *data), void *data)
{
    h->stopped_cb = cb;
    h->stopped_data = data;
    h->stopping = 1; /* held until every stop was called */
    for (unsigned i = 0; i < h->n; i++) {
        struct rd_plugin_instance *in = &h->insts[i];
        if (in->st != RD_INST_RUNNING)
            continue;
        in->stopping = true;
        while (in->timers)
            api_timer_stop(in->timers);
        if (h->httpc)
            rd_httpc_cancel_owner(h->httpc, in);
        h->stopping++;
        if (in->desc->stop)
            in->desc->stop(in->state, stop_done);
        else
            stop_done(in);
    }
    if (--h->stopping == 0 && h->stopped_cb != NULL) {
        h->stopped_cb = NULL;
        cb(data);
    }
}

bool rd_plugin_host_busy(const struct rd_plugin_host *h)
{
    for (unsigned i = 0; i < h->n; i++)
        if (h->insts[i].pending_work > 0)
            return true;
    return false;
}

void rd_plugin_host_close(struct rd_plugin_host *h)
{
    for (unsigned i = 0; i < h->n; i++) {
        struct rd_plugin_instance *in = &h->insts[i];
        while (in->timers)
            api_timer_stop(in->timers);
        if (in->desc && in->desc->destroy && in->st != RD_INST_FAILED)
            in->desc->destroy(in->state);
        free(in->state);
        in->state = NULL;
    }
    h->n = 0;
}

/* ---- backup targets ------------------------------------------------------- */

const char *rd_plugin_host_backup_at(const struct rd_plugin_host *h, unsigned i)
{
    for (unsigned k = 0; k < h->n; k++) {
        const struct rd_plugin_instance *in = &h->insts[k];
        if (in->desc != NULL && in->desc->kind == RD_PLUGIN_BACKUP && i-- == 0)
            return in->cfg->name;
    }
    return NULL;
}

int rd_plugin_host_backup(struct rd_plugin_host *h, const char *name,
                          const struct rd_backup_ops **ops, void **state, const char **why)
{
    for (unsigned k = 0; k < h->n; k++) {
        struct rd_plugin_instance *in = &h->insts[k];
        if (strcmp(in->cfg->name, name) != 0)
            continue;
        if (in->desc == NULL || in->desc->kind != RD_PLUGIN_BACKUP) {
            *why = in->desc ? kind_name(in->desc->kind) : "not loaded";
            return RD_EINVAL;
        }
        if (in->st != RD_INST_RUNNING || in->stopping) {
            *why = in->errmsg[0]  ? in->errmsg
                   : in->stopping ? "it is stopping"
                                  : "it is not running";
            return RD_EIO;
        }
        *ops = in->desc->ops;
        *state = in->state;
        *why = NULL;
        return 0;
    }
    *why = "no such plugin instance";
    return RD_ENOTFOUND;
}

/* ---- events --------------------------------------------------------------- */

static bool live(const struct rd_plugin_instance *in, int kind)
{
    return in->st == RD_INST_RUNNING && !in->stopping && in->desc->kind == kind;
}

void rd_plugin_host_node(struct rd_plugin_host *h, int event, const struct rd_node *n)
{
    struct rd_node_view v;
    node_view(h, n, &v);
    for (unsigned i = 0; i < h->n; i++) {
        struct rd_plugin_instance *in = &h->insts[i];
        if (!live(in, RD_PLUGIN_DETECTOR))
            continue;
        const struct rd_detector_ops *ops = in->desc->ops;
        if (ops->on_node)
            ops->on_node(in->state, event, &v);
    }
}

void rd_plugin_host_heartbeat(struct rd_plugin_host *h, const struct rd_heartbeat_view *hb)
{
    for (unsigned i = 0; i < h->n; i++) {
        struct rd_plugin_instance *in = &h->insts[i];
        if (!live(in, RD_PLUGIN_DETECTOR))
            continue;
        const struct rd_detector_ops *ops = in->desc->ops;
        if (ops->on_heartbeat)
            ops->on_heartbeat(in->state, hb);
    }
}

/* The alert ops of an instance that provides version 2's functions. */
static const struct rd_alert_ops *alert_ops_v2(const struct rd_plugin_instance *in)
{
    const struct rd_alert_ops *ops = in->desc->ops;
    return ops->version >= 2 && ops->size >= sizeof(struct rd_alert_ops) ? ops : NULL;
}

void rd_plugin_host_alert(struct rd_plugin_host *h, const struct rd_alert *a)
{
    /* Every alert names its cluster and the replica that raised it. */
    struct rd_alert full = *a;
    const struct rd_config *cfg = h->env.cfg;
    if (full.cluster == NULL)
        full.cluster = cfg ? cfg->cluster.name : "";
    if (full.replica == NULL)
        full.replica = cfg ? cfg->cluster.node_id : "";
    for (unsigned i = 0; i < h->n; i++) {
        struct rd_plugin_instance *in = &h->insts[i];
        if (!live(in, RD_PLUGIN_ALERT))
            continue;
        const struct rd_alert_ops *ops = in->desc->ops;
        if (ops->send)
            ops->send(in->state, &full);
    }
}

void rd_plugin_host_leadership(struct rd_plugin_host *h, bool leader)
{
    for (unsigned i = 0; i < h->n; i++) {
        struct rd_plugin_instance *in = &h->insts[i];
        if (!live(in, RD_PLUGIN_ALERT))
            continue;
        const struct rd_alert_ops *ops = alert_ops_v2(in);
        if (ops && ops->leadership)
            ops->leadership(in->state, leader);
    }
}

/* The dead letters of an alert instance as JSON, or NULL when it keeps none. */
static json_t *dead_letters_json(const struct rd_plugin_instance *in)
{
    if (in->desc == NULL || in->desc->kind != RD_PLUGIN_ALERT || in->st == RD_INST_FAILED ||
        in->state == NULL)
        return NULL;
    const struct rd_alert_ops *ops = alert_ops_v2(in);
    if (ops == NULL || ops->dead_letter_at == NULL)
        return NULL;
    json_t *arr = json_array();
    struct rd_dead_letter dl;
    for (size_t i = 0; arr && i < 100000 && ops->dead_letter_at(in->state, i, &dl) == 0; i++) {
        char at[RD_TIME_STRLEN];
        rd_time_format(dl.at_ms, at);
        json_t *alert = json_loads(dl.alert_json ? dl.alert_json : "", JSON_DECODE_ANY, NULL);
        json_array_append_new(arr, json_pack("{s:s,s:i,s:s,s:o}", "at", at, "status", dl.status,
                                             "answer", dl.answer ? dl.answer : "", "alert",
                                             alert ? alert : json_null()));
    }
    return arr;
}

void rd_plugin_host_metrics(struct rd_plugin_host *h, struct rd_mbuf *b)
{
    rd_metric_header(b, "recoveryd_plugin_up", "gauge",
                     "1 when a configured plugin instance runs, 0 when it failed.");
    for (unsigned i = 0; i < h->n; i++) {
        const struct rd_plugin_instance *in = &h->insts[i];
        rd_mbuf_printf(b,
                       "recoveryd_plugin_up{plugin_instance=\"%s\",plugin=\"%s\",kind=\"%s\"} %d\n",
                       in->cfg->name, in->desc->name, kind_name(in->desc->kind),
                       in->st == RD_INST_RUNNING ? 1 : 0);
    }
    rd_metric_header(b, "recoveryd_observations_total", "counter",
                     "Detector observations received from plugins.");
    rd_mbuf_printf(b, "recoveryd_observations_total %llu\n",
                   (unsigned long long)h->observations_total);
    /* One header per counter name, then every instance that has it. */
    for (unsigned i = 0; i < h->n; i++) {
        for (unsigned c = 0; c < h->insts[i].n_counters; c++) {
            const struct rd_plugin_counter *ct = &h->insts[i].counters[c];
            bool seen = false;
            for (unsigned j = 0; j < i && !seen; j++)
                for (unsigned k = 0; k < h->insts[j].n_counters && !seen; k++)
                    seen = strcmp(h->insts[j].counters[k].name, ct->name) == 0;
            if (seen)
                continue;
            rd_mbuf_printf(b,
                           "# HELP recoveryd_plugin_%s_total %s\n"
                           "# TYPE recoveryd_plugin_%s_total counter\n",
                           ct->name, ct->help, ct->name);
            for (unsigned j = i; j < h->n; j++)
                for (unsigned k = 0; k < h->insts[j].n_counters; k++)
                    if (strcmp(h->insts[j].counters[k].name, ct->name) == 0)
                        rd_mbuf_printf(b,
                                       "recoveryd_plugin_%s_total{plugin_instance=\"%s\"} %llu\n",
                                       ct->name, h->insts[j].cfg->name,
                                       (unsigned long long)h->insts[j].counters[k].value);
        }
    }
}

json_t *rd_plugin_host_json(struct rd_plugin_host *h)
{
    json_t *arr = json_array();
    for (unsigned i = 0; i < h->n; i++) {
        const struct rd_plugin_instance *in = &h->insts[i];
        json_t *item =
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:s?}", "name", in->cfg->name, "plugin",
                      in->desc->name, "kind", kind_name(in->desc->kind), "version",
                      in->desc->version ? in->desc->version : "", "state", inst_state_name(in->st),
                      "required", in->cfg->required, "error", in->errmsg[0] ? in->errmsg : NULL);
        json_t *dead = dead_letters_json(in);
        if (item && dead)
            json_object_set_new(item, "dead_letters", dead);
        else
            json_decref(dead);
        json_array_append_new(arr, item);
    }
    return arr;
}
