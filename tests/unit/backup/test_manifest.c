/*
 * engine/backup/manifest.c: object names, the manifest's JSON both ways
 * (every field, and every way a manifest can be wrong), hex digests, the
 * image header's format.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup/backup.h"
#include "recoveryd/error.h"

static struct rd_backup_manifest sample(void)
{
    struct rd_backup_manifest m = {
        .manifest_version = RD_BACKUP_MANIFEST_VERSION,
        .index = 12345,
        .term = 7,
        .created_at_ms = 1796229910934,
        .snapshot_format = 4,
        .size = 987654,
        .checksum = 0x0123456789abcdefULL,
        .digest = 0xfedcba9876543210ULL,
    };
    snprintf(m.backup_id, sizeof(m.backup_id), "3240122a-6708-4b7b-ba90-1d33ca9f1e4d");
    snprintf(m.cluster_id, sizeof(m.cluster_id), "304e49d7-d39b-461b-ad9b-8a2a6568d1fb");
    snprintf(m.engine_version, sizeof(m.engine_version), "0.1.0");
    rd_backup_image_name(m.backup_id, m.image);
    return m;
}

static void test_names(void **state)
{
    (void)state;
    char name[RD_BACKUP_NAME_MAX];
    rd_backup_image_name("abc", name);
    assert_string_equal(name, "backups/abc.img");
    rd_backup_manifest_name("abc", name);
    assert_string_equal(name, "backups/abc.json");
}

static void test_hex16(void **state)
{
    (void)state;
    char hex[17];
    uint64_t v = 0;
    rd_backup_hex16(0x00000000000000abULL, hex);
    assert_string_equal(hex, "00000000000000ab");
    assert_int_equal(rd_backup_parse_hex16(hex, &v), 0);
    assert_true(v == 0xab);
    rd_backup_hex16(UINT64_MAX, hex);
    assert_string_equal(hex, "ffffffffffffffff");
    assert_int_equal(rd_backup_parse_hex16(hex, &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(rd_backup_parse_hex16("FFFFFFFFFFFFFFFF", &v), RD_EPARSE);
    assert_int_equal(rd_backup_parse_hex16("fffffffffffffff", &v), RD_EPARSE);
    assert_int_equal(rd_backup_parse_hex16("fffffffffffffffff", &v), RD_EPARSE);
    assert_int_equal(rd_backup_parse_hex16("00000000000000xg", &v), RD_EPARSE);
    assert_int_equal(rd_backup_parse_hex16(NULL, &v), RD_EPARSE);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct rd_backup_manifest m = sample(), back;
    char *json = rd_backup_manifest_encode(&m);
    assert_non_null(json);
    /* The layout docs/backup.md promises: readable by anyone. */
    assert_non_null(strstr(json, "\"manifest_version\": 1"));
    assert_non_null(strstr(json, "\"created_at\": \"2026-12-02T16:45:10.934Z\""));
    assert_non_null(strstr(json, "\"checksum\": \"0123456789abcdef\""));
    assert_non_null(
        strstr(json, "\"image\": \"backups/3240122a-6708-4b7b-ba90-1d33ca9f1e4d.img\""));
    char err[256];
    assert_int_equal(rd_backup_manifest_decode(json, strlen(json), &back, err, sizeof(err)), 0);
    assert_memory_equal(&m, &back, sizeof(m));
    free(json);
}

/* Replaces the first `from` in `json` by `to` into `out`. */
static void edit(const char *json, const char *from, const char *to, char *out, size_t len)
{
    const char *at = strstr(json, from);
    assert_non_null(at);
    snprintf(out, len, "%.*s%s%s", (int)(at - json), json, to, at + strlen(from));
}

static void expect_bad(const char *text, int code, const char *needle)
{
    struct rd_backup_manifest m;
    char err[256] = "";
    int rv = rd_backup_manifest_decode(text, strlen(text), &m, err, sizeof(err));
    if (rv != code || strstr(err, needle) == NULL)
        fail_msg("expected %d with \"%s\", got %d \"%s\" for %s", code, needle, rv, err, text);
}

static void test_bad_manifests(void **state)
{
    (void)state;
    struct rd_backup_manifest m = sample();
    char *json = rd_backup_manifest_encode(&m);
    char buf[2048];
    expect_bad("", RD_EPARSE, "not a JSON object");
    expect_bad("[1,2]", RD_EPARSE, "not a JSON object");
    expect_bad("{\"manifest_version\":1,", RD_EPARSE, "not a JSON object");
    edit(json, "\"manifest_version\": 1", "\"manifest_version\": 2", buf, sizeof(buf));
    expect_bad(buf, RD_EUNSUPPORTED, "version 2, this recoveryd reads version 1");
    edit(json, "\"index\": 12345", "\"index\": \"12345\"", buf, sizeof(buf));
    expect_bad(buf, RD_EPARSE, "field index: expected an integer");
    edit(json, "\"term\": 7", "\"term\": -7", buf, sizeof(buf));
    expect_bad(buf, RD_EPARSE, "field term");
    edit(json, "\"checksum\": \"0123456789abcdef\"", "\"checksum\": \"0123\"", buf, sizeof(buf));
    expect_bad(buf, RD_EPARSE, "field checksum: expected 16 lower-case hex digits");
    edit(json, "\"digest\": \"fedcba9876543210\"", "\"digest\": 5", buf, sizeof(buf));
    expect_bad(buf, RD_EPARSE, "field digest");
    edit(json, "\"backup_id\": \"3240122a-6708-4b7b-ba90-1d33ca9f1e4d\"", "\"backup_id\": \"\"",
         buf, sizeof(buf));
    expect_bad(buf, RD_EPARSE, "backup_id is empty");
    edit(json, "\"image\": ", "\"picture\": ", buf, sizeof(buf));
    expect_bad(buf, RD_EPARSE, "field image");
    /* A field added by a later manifest of the same version is ignored. */
    edit(json, "\"term\": 7", "\"term\": 7, \"extra\": true", buf, sizeof(buf));
    struct rd_backup_manifest back;
    char err[256];
    assert_int_equal(rd_backup_manifest_decode(buf, strlen(buf), &back, err, sizeof(err)), 0);
    free(json);
}

static void test_image_format(void **state)
{
    (void)state;
    uint8_t img[16] = {'R', 'D', 'S', 'N', 'A', 'P', 0, 1, 4, 0, 0, 0};
    assert_int_equal(rd_backup_image_format(img, sizeof(img)), 4);
    assert_int_equal(rd_backup_image_format(img, 11), 0);
    img[0] = 'X';
    assert_int_equal(rd_backup_image_format(img, sizeof(img)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),        cmocka_unit_test(test_hex16),
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_bad_manifests),
        cmocka_unit_test(test_image_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
