/* recoveryctl's configuration file (config.h), read with libyaml's document API. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

static char *read_file(const char *path, size_t max, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n > max) {
        snprintf(err, err_len, "%s: larger than %zu bytes", path, max);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static const char *scalar(yaml_node_t *n)
{
    return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The value node `v` of `key` at `path` into `cfg`. */
static int load_key(yaml_document_t *doc, const char *path, const char *key, yaml_node_t *v,
                    struct ctl_config *cfg, char *err, size_t err_len)
{
    unsigned long line = (unsigned long)v->start_mark.line + 1;
    if (strcmp(key, "endpoints") == 0) {
        char buf[4096] = "";
        size_t o = 0;
        if (v->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top;
                 i++) {
                const char *s = scalar(yaml_document_get_node(doc, *i));
                if (s == NULL) {
                    snprintf(err, err_len, "%s:%lu: endpoints: expected a list of URLs", path,
                             line);
                    return -1;
                }
                o += (size_t)snprintf(buf + o, o < sizeof buf ? sizeof buf - o : 0, "%s%s",
                                      o ? "," : "", s);
            }
        } else if (scalar(v) != NULL) {
            snprintf(buf, sizeof buf, "%s", scalar(v));
        } else {
            snprintf(err, err_len, "%s:%lu: endpoints: expected a list of URLs", path, line);
            return -1;
        }
        free(cfg->endpoints);
        cfg->endpoints = strdup(buf);
        return 0;
    }
    const char *s = scalar(v);
    if (s == NULL) {
        snprintf(err, err_len, "%s:%lu: %s: expected a single value", path, line, key);
        return -1;
    }
    if (strcmp(key, "token") == 0) {
        free(cfg->token);
        cfg->token = strdup(s);
    } else if (strcmp(key, "token_file") == 0) {
        char *t = read_file(s, 4096, err, err_len);
        if (t == NULL)
            return -1;
        t[strcspn(t, "\r\n")] = '\0';
        free(cfg->token);
        cfg->token = t;
    } else if (strcmp(key, "cacert") == 0) {
        free(cfg->cacert);
        cfg->cacert = strdup(s);
    } else if (strcmp(key, "timeout") == 0) {
        char *end = NULL;
        long ms = strtol(s, &end, 10);
        if (end == s || (*end != '\0' && strcmp(end, "ms") != 0) || ms <= 0 || ms > 600000) {
            snprintf(err, err_len,
                     "%s:%lu: timeout: expected milliseconds from 1 to 600000, got '%s'", path,
                     line, s);
            return -1;
        }
        cfg->timeout_ms = ms;
    } else {
        snprintf(err, err_len,
                 "%s:%lu: unknown key '%s' (known: endpoints, token, token_file, cacert, timeout)",
                 path, line, key);
        return -1;
    }
    return 0;
}

int ctl_config_load(const char *path, struct ctl_config *cfg, char *err, size_t err_len)
{
    char def[1024];
    bool optional = path == NULL;
    if (path == NULL) {
        const char *xdg = getenv("XDG_CONFIG_HOME");
        const char *home = getenv("HOME");
        if (xdg != NULL && xdg[0] == '/')
            snprintf(def, sizeof def, "%s/recoveryd/client.yaml", xdg);
        else if (home != NULL && home[0] != '\0')
            snprintf(def, sizeof def, "%s/.config/recoveryd/client.yaml", home);
        else
            return 0;
        path = def;
    }
    FILE *probe = fopen(path, "r");
    if (probe == NULL) {
        if (optional && errno == ENOENT)
            return 0;
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    fclose(probe);
    char *text = read_file(path, 1 << 20, err, err_len);
    if (text == NULL)
        return -1;
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = -1;
    if (!yaml_parser_initialize(&parser)) {
        free(text);
        snprintf(err, err_len, "%s: out of memory", path);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, err_len, "%s:%lu: %s", path, (unsigned long)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "YAML syntax error");
        yaml_parser_delete(&parser);
        free(text);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        rc = 0; /* empty file */
    } else if (root->type != YAML_MAPPING_NODE) {
        snprintf(err, err_len, "%s:%lu: expected a mapping of keys (endpoints, token, ...)", path,
                 (unsigned long)root->start_mark.line + 1);
    } else {
        rc = 0;
        for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
             rc == 0 && pr < root->data.mapping.pairs.top; pr++) {
            const char *key = scalar(yaml_document_get_node(&doc, pr->key));
            yaml_node_t *v = yaml_document_get_node(&doc, pr->value);
            if (key == NULL) {
                snprintf(err, err_len, "%s: a key that is not a word", path);
                rc = -1;
            } else {
                rc = load_key(&doc, path, key, v, cfg, err, err_len);
            }
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(text);
    return rc;
}

void ctl_config_free(struct ctl_config *cfg)
{
    free(cfg->endpoints);
    free(cfg->token);
    free(cfg->cacert);
    memset(cfg, 0, sizeof *cfg);
}
