/*
 * Backup targets named by URL (`recoveryd restore --from`): the URL is
 * mapped onto the same backup plugins the engine writes through, with the
 * instance config they declare (plugins/file, plugins/s3, plugins/postgres).
 * Pure: no I/O.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backup.h"
#include "recoveryd/error.h"

/* The plugins' config keys a URL fills. */
#define FILE_KEY_DIR    "dir"
#define S3_KEY_BUCKET   "bucket"
#define S3_KEY_PREFIX   "prefix"
#define PG_KEY_CONNINFO "conninfo"
#define PG_KEY_TABLE    "table"
#define PG_QUERY_TABLE  "table"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return RD_EINVAL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes `n` bytes of `s` into `out` (`cap` bytes); -1 on a bad
 * escape, a NUL byte or no room. */
static int decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
            if (c == '\0')
                return -1;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

static int add(struct rd_backup_url *u, const char *key, const char *value, char *err,
               size_t errlen)
{
    if (u->n == RD_BACKUP_URL_MAX_KEYS)
        return fail(err, errlen, "too many settings in the URL (at most %d)",
                    RD_BACKUP_URL_MAX_KEYS);
    for (unsigned i = 0; i < u->n; i++)
        if (strcmp(u->kv[i].key, key) == 0)
            return fail(err, errlen, "%s is given twice in the URL", key);
    if (strlen(key) >= sizeof(u->kv[0].key) || strlen(value) >= sizeof(u->kv[0].value))
        return fail(err, errlen, "%s in the URL is too long (at most %zu bytes)", key,
                    sizeof(u->kv[0].value) - 1);
    snprintf(u->kv[u->n].key, sizeof(u->kv[0].key), "%s", key);
    snprintf(u->kv[u->n].value, sizeof(u->kv[0].value), "%s", value);
    u->n++;
    return 0;
}

/* Plugin config keys are [a-z0-9_]; a query parameter names one. */
static bool key_ok(const char *k)
{
    if (*k == '\0')
        return false;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '_'))
            return false;
    return true;
}

/* Adds every `k=v` of the query `q` (`n` bytes) as a setting. */
static int add_query(struct rd_backup_url *u, const char *url, const char *q, size_t n, char *err,
                     size_t errlen)
{
    const char *end = q + n;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        char key[64], value[RD_CFG_STR];
        if (stop == q) {
            q = stop + 1;
            continue;
        }
        if (eq == NULL || decode(q, (size_t)(eq - q), key, sizeof(key)) != 0 || !key_ok(key) ||
            decode(eq + 1, (size_t)(stop - eq - 1), value, sizeof(value)) != 0)
            return fail(err, errlen,
                        "%s: expected query parameters like ?endpoint=http://host:9000&region=x "
                        "(names of a-z 0-9 _), got '%.*s'",
                        url, (int)(stop - q), q);
        int rv = add(u, key, value, err, errlen);
        if (rv != 0)
            return rv;
        q = stop + 1;
    }
    return 0;
}

static int parse_file(const char *url, const char *rest, struct rd_backup_url *u, char *err,
                      size_t errlen)
{
    /* file:///abs/path: an empty host and an absolute path. */
    if (rest[0] != '/')
        return fail(err, errlen,
                    "%s: expected file:///ABSOLUTE/PATH (three slashes: no host, an absolute "
                    "directory)",
                    url);
    if (strchr(rest, '?') != NULL || strchr(rest, '#') != NULL)
        return fail(err, errlen, "%s: a file:// URL takes no query or fragment", url);
    char dir[RD_CFG_STR];
    if (decode(rest, strlen(rest), dir, sizeof(dir)) != 0)
        return fail(err, errlen, "%s: bad percent-escape, or a path over %zu bytes", url,
                    sizeof(dir) - 1);
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        dir[--len] = '\0';
    snprintf(u->plugin, sizeof(u->plugin), "file");
    return add(u, FILE_KEY_DIR, dir, err, errlen);
}

static int parse_s3(const char *url, const char *rest, struct rd_backup_url *u, char *err,
                    size_t errlen)
{
    const char *q = strchr(rest, '?');
    size_t plen = q ? (size_t)(q - rest) : strlen(rest);
    const char *slash = memchr(rest, '/', plen);
    size_t blen = slash ? (size_t)(slash - rest) : plen;
    char bucket[RD_CFG_STR], prefix[RD_CFG_STR];
    if (blen == 0 || decode(rest, blen, bucket, sizeof(bucket)) != 0)
        return fail(err, errlen,
                    "%s: expected s3://BUCKET[/PREFIX][?endpoint=http://host:port&region=...]",
                    url);
    for (const char *c = bucket; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '.'))
            return fail(err, errlen,
                        "%s: bucket '%s': expected a bucket name of a-z 0-9 . - (S3's rules)", url,
                        bucket);
    prefix[0] = '\0';
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t n = plen - blen - 1;
        if (decode(p, n, prefix, sizeof(prefix)) != 0)
            return fail(err, errlen, "%s: bad percent-escape in the prefix", url);
        /* A folder: the plugin puts the prefix before each object's name
         * as it is, so "s3://b/prod" means keys "prod/backups/..." (a prefix
         * without the slash can be given as ?prefix=). */
        size_t len = strlen(prefix);
        while (len > 0 && prefix[len - 1] == '/')
            prefix[--len] = '\0';
        if (len > 0 && len + 1 < sizeof(prefix)) {
            prefix[len] = '/';
            prefix[len + 1] = '\0';
        }
    }
    snprintf(u->plugin, sizeof(u->plugin), "s3");
    int rv = add(u, S3_KEY_BUCKET, bucket, err, errlen);
    if (rv == 0 && prefix[0] != '\0')
        rv = add(u, S3_KEY_PREFIX, prefix, err, errlen);
    if (rv == 0 && q != NULL)
        rv = add_query(u, url, q + 1, strlen(q + 1), err, errlen);
    return rv;
}

static int parse_postgres(const char *url, struct rd_backup_url *u, char *err, size_t errlen)
{
    /* libpq reads the URL itself (docs: "Connection URIs"); only our own
     * parameter, the table, is taken out of its query. */
    char conninfo[RD_CFG_STR], table[RD_CFG_STR] = "";
    size_t o = 0;
    const char *q = strchr(url, '?');
    size_t base = q ? (size_t)(q - url) : strlen(url);
    if (base >= sizeof(conninfo))
        return fail(err, errlen, "%s: longer than %zu bytes", url, sizeof(conninfo) - 1);
    memcpy(conninfo, url, base);
    o = base;
    if (q != NULL) {
        const char *p = q + 1, *end = url + strlen(url);
        char sep = '?';
        while (p < end) {
            const char *amp = memchr(p, '&', (size_t)(end - p));
            const char *stop = amp ? amp : end;
            size_t n = (size_t)(stop - p);
            size_t klen = strlen(PG_QUERY_TABLE);
            if (n > klen && memcmp(p, PG_QUERY_TABLE "=", klen + 1) == 0) {
                if (decode(p + klen + 1, n - klen - 1, table, sizeof(table)) != 0 ||
                    table[0] == '\0')
                    return fail(err, errlen, "%s: table: expected a table name", url);
            } else if (n > 0) {
                if (o + n + 2 >= sizeof(conninfo))
                    return fail(err, errlen, "%s: longer than %zu bytes", url,
                                sizeof(conninfo) - 1);
                conninfo[o++] = sep;
                memcpy(conninfo + o, p, n);
                o += n;
                sep = '&';
            }
            p = stop + 1;
        }
    }
    conninfo[o] = '\0';
    snprintf(u->plugin, sizeof(u->plugin), "postgres");
    int rv = add(u, PG_KEY_CONNINFO, conninfo, err, errlen);
    if (rv == 0 && table[0] != '\0')
        rv = add(u, PG_KEY_TABLE, table, err, errlen);
    return rv;
}

int rd_backup_url_parse(const char *url, struct rd_backup_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (url == NULL || url[0] == '\0')
        return fail(err, errlen,
                    "no backup target URL: expected file:///PATH, s3://BUCKET/PREFIX?endpoint=... "
                    "or postgres://...");
    if (strncmp(url, "file://", 7) == 0)
        return parse_file(url, url + 7, out, err, errlen);
    if (strncmp(url, "s3://", 5) == 0)
        return parse_s3(url, url + 5, out, err, errlen);
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return parse_postgres(url, out, err, errlen);
    return fail(err, errlen,
                "%s: unknown kind of target: expected file:///PATH, "
                "s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=REGION, or "
                "postgres://USER@HOST/DB?table=TABLE (postgresql:// too)",
                url);
}
