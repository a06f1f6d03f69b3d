/*
 * engine/backup/url.c: `recoveryd restore --from` URLs onto the backup
 * plugins and their instance config, and every way a URL can be wrong.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <string.h>

#include "backup/backup.h"
#include "recoveryd/error.h"

static const char *value(const struct rd_backup_url *u, const char *key)
{
    for (unsigned i = 0; i < u->n; i++)
        if (strcmp(u->kv[i].key, key) == 0)
            return u->kv[i].value;
    return NULL;
}

static void parse_ok(const char *url, struct rd_backup_url *u)
{
    char err[512] = "";
    int rv = rd_backup_url_parse(url, u, err, sizeof(err));
    if (rv != 0)
        fail_msg("%s: %s", url, err);
}

static void expect_bad(const char *url, const char *needle)
{
    struct rd_backup_url u;
    char err[512] = "";
    int rv = rd_backup_url_parse(url, &u, err, sizeof(err));
    if (rv != RD_EINVAL || strstr(err, needle) == NULL)
        fail_msg("%s: expected RD_EINVAL with \"%s\", got %d \"%s\"", url ? url : "(null)", needle,
                 rv, err);
}

static void test_file(void **state)
{
    (void)state;
    struct rd_backup_url u;
    parse_ok("file:///srv/backups", &u);
    assert_string_equal(u.plugin, "file");
    assert_int_equal(u.n, 1);
    assert_string_equal(value(&u, "dir"), "/srv/backups");
    parse_ok("file:///srv/my%20backups/", &u);
    assert_string_equal(value(&u, "dir"), "/srv/my backups");
    parse_ok("file:///", &u);
    assert_string_equal(value(&u, "dir"), "/");
    expect_bad("file://host/srv", "expected file:///ABSOLUTE/PATH");
    expect_bad("file://srv", "expected file:///ABSOLUTE/PATH");
    expect_bad("file:///srv?x=1", "takes no query");
    expect_bad("file:///srv/%zz", "bad percent-escape");
    expect_bad("file:///srv/%00", "bad percent-escape");
}

static void test_s3(void **state)
{
    (void)state;
    struct rd_backup_url u;
    parse_ok("s3://rd-backups/prod/eu?endpoint=http://127.0.0.1:9000&region=eu-west-1", &u);
    assert_string_equal(u.plugin, "s3");
    assert_string_equal(value(&u, "bucket"), "rd-backups");
    assert_string_equal(value(&u, "prefix"), "prod/eu/");
    assert_string_equal(value(&u, "endpoint"), "http://127.0.0.1:9000");
    assert_string_equal(value(&u, "region"), "eu-west-1");
    assert_int_equal(u.n, 4);
    parse_ok("s3://bkt", &u);
    assert_int_equal(u.n, 1);
    assert_null(value(&u, "prefix"));
    parse_ok("s3://bkt/?endpoint=http%3A%2F%2Fh%3A1", &u);
    assert_null(value(&u, "prefix"));
    assert_string_equal(value(&u, "endpoint"), "http://h:1");
    parse_ok("s3://bkt?prefix=raw-", &u);
    assert_string_equal(value(&u, "prefix"), "raw-");
    parse_ok("s3://bkt/", &u);
    assert_null(value(&u, "prefix"));
    expect_bad("s3:///prefix", "expected s3://BUCKET");
    expect_bad("s3://Bucket/x", "bucket 'Bucket'");
    expect_bad("s3://b?endpoint", "expected query parameters");
    expect_bad("s3://b?End=x", "expected query parameters");
    expect_bad("s3://b?region=a&region=b", "region is given twice");
    expect_bad("s3://b/p?prefix=q", "prefix is given twice");
}

static void test_postgres(void **state)
{
    (void)state;
    struct rd_backup_url u;
    parse_ok("postgres://rd@localhost:5432/rd?table=bk&sslmode=disable", &u);
    assert_string_equal(u.plugin, "postgres");
    assert_string_equal(value(&u, "conninfo"), "postgres://rd@localhost:5432/rd?sslmode=disable");
    assert_string_equal(value(&u, "table"), "bk");
    parse_ok("postgresql:///rd?host=/tmp/pg", &u);
    assert_string_equal(value(&u, "conninfo"), "postgresql:///rd?host=/tmp/pg");
    assert_null(value(&u, "table"));
    parse_ok("postgres://h/db?table=t", &u);
    assert_string_equal(value(&u, "conninfo"), "postgres://h/db");
    expect_bad("postgres://h/db?table=", "table: expected a table name");
}

static void test_unknown(void **state)
{
    (void)state;
    expect_bad(NULL, "no backup target URL");
    expect_bad("", "no backup target URL");
    expect_bad("ftp://x/y", "unknown kind of target");
    expect_bad("/srv/backups", "unknown kind of target");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_s3),
        cmocka_unit_test(test_postgres),
        cmocka_unit_test(test_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
