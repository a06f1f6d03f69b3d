/*
 * The objects of a backup target: names and the manifest (docs/backup.md).
 * Pure functions: no loop, no I/O.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "recoveryd/error.h"

void rd_backup_image_name(const char *id, char out[RD_BACKUP_NAME_MAX])
{
    snprintf(out, RD_BACKUP_NAME_MAX, RD_BACKUP_PREFIX "%s.img", id);
}

void rd_backup_manifest_name(const char *id, char out[RD_BACKUP_NAME_MAX])
{
    snprintf(out, RD_BACKUP_NAME_MAX, RD_BACKUP_PREFIX "%s.json", id);
}

void rd_backup_hex16(uint64_t v, char out[17])
{
    snprintf(out, 17, "%016" PRIx64, v);
}

int rd_backup_parse_hex16(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    if (s == NULL || strlen(s) != 16)
        return RD_EPARSE;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return RD_EPARSE;
        x = x << 4 | (uint64_t)d;
    }
    *v = x;
    return 0;
}

unsigned rd_backup_image_format(const void *img, size_t len)
{
    const uint8_t *p = img;
    if (len < 12 || memcmp(p, "RDSNAP\0\1", 8) != 0)
        return 0;
    return (unsigned)p[8] | (unsigned)p[9] << 8 | (unsigned)p[10] << 16 | (unsigned)p[11] << 24;
}

char *rd_backup_manifest_encode(const struct rd_backup_manifest *m)
{
    char created[RD_TIME_STRLEN], sum[17], dig[17];
    rd_time_format(m->created_at_ms, created);
    rd_backup_hex16(m->checksum, sum);
    rd_backup_hex16(m->digest, dig);
    json_t *o =
        json_pack("{s:i,s:s,s:s,s:I,s:I,s:s,s:I,s:s,s:i,s:I,s:s,s:s,s:s}", "manifest_version",
                  (int)m->manifest_version, "backup_id", m->backup_id, "cluster_id", m->cluster_id,
                  "index", (json_int_t)m->index, "term", (json_int_t)m->term, "created_at", created,
                  "created_at_ms", (json_int_t)m->created_at_ms, "engine_version",
                  m->engine_version, "snapshot_format", (int)m->snapshot_format, "size",
                  (json_int_t)m->size, "checksum", sum, "digest", dig, "image", m->image);
    if (o == NULL)
        return NULL;
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* Copies string field `key` into `dst` (`cap` bytes). */
static int get_str(json_t *o, const char *key, char *dst, size_t cap, bool required, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL && !required) {
        dst[0] = '\0';
        return 0;
    }
    const char *s = json_string_value(v);
    if (s == NULL || strlen(s) >= cap) {
        snprintf(err, errlen, "manifest: field %s: expected a string of at most %zu bytes", key,
                 cap - 1);
        return RD_EPARSE;
    }
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

static int get_u64(json_t *o, const char *key, uint64_t *dst, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        snprintf(err, errlen, "manifest: field %s: expected an integer of at least 0", key);
        return RD_EPARSE;
    }
    *dst = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_hex(json_t *o, const char *key, uint64_t *dst, char *err, size_t errlen)
{
    if (rd_backup_parse_hex16(json_string_value(json_object_get(o, key)), dst) != 0) {
        snprintf(err, errlen, "manifest: field %s: expected 16 lower-case hex digits", key);
        return RD_EPARSE;
    }
    return 0;
}

int rd_backup_manifest_decode(const void *buf, size_t len, struct rd_backup_manifest *m, char *err,
                              size_t errlen)
{
    memset(m, 0, sizeof(*m));
    json_error_t jerr;
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL || !json_is_object(o)) {
        snprintf(err, errlen, "manifest: not a JSON object%s%s", o ? "" : ": ", o ? "" : jerr.text);
        json_decref(o);
        return RD_EPARSE;
    }
    int rv = 0;
    uint64_t version = 0, created = 0, format = 0;
    if ((rv = get_u64(o, "manifest_version", &version, err, errlen)) != 0)
        goto out;
    if (version != RD_BACKUP_MANIFEST_VERSION) {
        snprintf(err, errlen, "manifest: version %" PRIu64 ", this recoveryd reads version %d",
                 version, RD_BACKUP_MANIFEST_VERSION);
        rv = RD_EUNSUPPORTED;
        goto out;
    }
    m->manifest_version = (unsigned)version;
    if ((rv = get_str(o, "backup_id", m->backup_id, sizeof(m->backup_id), true, err, errlen)) ||
        (rv = get_str(o, "cluster_id", m->cluster_id, sizeof(m->cluster_id), true, err, errlen)) ||
        (rv = get_u64(o, "index", &m->index, err, errlen)) ||
        (rv = get_u64(o, "term", &m->term, err, errlen)) ||
        (rv = get_u64(o, "created_at_ms", &created, err, errlen)) ||
        (rv = get_str(o, "engine_version", m->engine_version, sizeof(m->engine_version), false, err,
                      errlen)) ||
        (rv = get_u64(o, "snapshot_format", &format, err, errlen)) ||
        (rv = get_u64(o, "size", &m->size, err, errlen)) ||
        (rv = get_hex(o, "checksum", &m->checksum, err, errlen)) ||
        (rv = get_hex(o, "digest", &m->digest, err, errlen)) ||
        (rv = get_str(o, "image", m->image, sizeof(m->image), true, err, errlen)))
        goto out;
    m->created_at_ms = (int64_t)created;
    m->snapshot_format = (unsigned)format;
    if (m->backup_id[0] == '\0') {
        snprintf(err, errlen, "manifest: field backup_id is empty");
        rv = RD_EPARSE;
    }
out:
    json_decref(o);
    return rv;
}
