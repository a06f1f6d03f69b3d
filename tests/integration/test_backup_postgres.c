/*
 * The postgres backup target (build/plugins/postgres.so) against a real
 * PostgreSQL server this test starts: Debian's postgresql package (initdb
 * and postgres from /usr/lib/postgresql/<version>/bin), a private temporary
 * data directory and socket directory (no TCP port: nothing to collide
 * with), run as the postgres user when the test runs as root (PostgreSQL
 * refuses root). The database collates with ICU's "en", an order that is
 * not bytewise, so the contract's list order proves the plugin's COLLATE
 * "C". The plugin runs in the fake host (fake_host.h).
 *
 * First the contract every target keeps (backup_contract.h), then what is
 * the postgres target's own: the table it creates, a schema-qualified table,
 * a reconnection after the server ended its connection, a server that is
 * not there, a role without rights, libpq's environment, config errors.
 *
 * Without the package (no initdb) the test says so and exits 77 (skipped);
 * with it, a server that does not start is a failure.
 */
#include "backup_contract.h"

#include <errno.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_pg.h"
#include "rdt_server.h"

static const char *cfg[][2] = {{"conninfo", conninfo}, {"timeout", "30s"}, {NULL, NULL}};

static int group_setup(void **state)
{
    bc_plugin = "postgres";
    bc_cfg = cfg;
    return rdt_pg_group_setup(state);
}

static int reinit(const char *(*rows)[2])
{
    assert_int_equal(bc_teardown(NULL), 0);
    int rv = fh_init("postgres", "other", rows);
    if (rv == 0) {
        fh_start();
        fh_run_work();
    }
    return rv;
}

/* ---- postgres's own --------------------------------------------------------------------- */

static void test_table_created(void **state)
{
    (void)state;
    assert_int_equal(bc_write_str("backups/1.json", "{}"), 0);
    PGconn *c = rdt_pg_db();
    assert_string_equal(
        rdt_pg_query(
            c, "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', ' "
               "ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = "
               "'recoveryd_backup_objects'"),
        "name text NO, data bytea NO, size bigint NO, updated_at timestamp with time zone NO");
    assert_string_equal(rdt_pg_query(c,
                                     "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON "
                                     "a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE "
                                     "i.indrelid = 'recoveryd_backup_objects'::regclass AND "
                                     "i.indisprimary"),
                        "name");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT encode(data, 'escape') || ' ' || size || ' ' || (updated_at > now() - "
             "interval '1 hour') FROM recoveryd_backup_objects WHERE name = '%sbackups/1.json'",
             bc_ns);
    assert_string_equal(rdt_pg_query(c, sql), "{} 2 true");
    PQfinish(c);
}

static void test_schema_table(void **state)
{
    (void)state;
    PGconn *c = rdt_pg_db();
    rdt_pg_query(c, "CREATE SCHEMA IF NOT EXISTS backup_schema");
    const char *rows[][2] = {{"conninfo", conninfo}, {"table", "backup_schema.objs"}, {NULL, NULL}};
    assert_int_equal(reinit(rows), 0);
    assert_int_equal(bc_write_str("x", "in a schema"), 0);
    bc_assert_object("x", "in a schema", 11);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT size FROM backup_schema.objs WHERE name = '%sx'", bc_ns);
    assert_string_equal(rdt_pg_query(c, sql), "11");
    PQfinish(c);
}

static void test_reconnects(void **state)
{
    (void)state;
    assert_int_equal(bc_write_str("a", "1"), 0);
    PGconn *c = rdt_pg_db();
    const char *pid =
        rdt_pg_query(c, "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE "
                        "application_name = 'recoveryd'");
    assert_true(pid[0] != '\0');
    char before[64];
    snprintf(before, sizeof before, "%s", pid);
    /* The server ends the plugin's connection (a restart, an idle timeout). */
    assert_string_equal(rdt_pg_query(c, "SELECT bool_and(pg_terminate_backend(pid)) FROM "
                                        "pg_stat_activity WHERE application_name = 'recoveryd'"),
                        "t");
    assert_int_equal(bc_write_str("b", "2"), 0);
    bc_assert_object("a", "1", 1);
    bc_assert_object("b", "2", 1);
    const char *after =
        rdt_pg_query(c, "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE "
                        "application_name = 'recoveryd'");
    assert_true(after[0] != '\0');
    assert_string_not_equal(after, before);
    PQfinish(c);
}

static void test_server_not_there(void **state)
{
    (void)state;
    char nowhere[800];
    snprintf(nowhere, sizeof nowhere, "host=%s/none port=%s dbname=postgres user=recoveryd", root,
             PG_PORT);
    const char *rows[][2] = {{"conninfo", nowhere}, {NULL, NULL}};
    assert_int_equal(reinit(rows), 0);
    struct bc_result r;
    assert_int_equal(bc_write_full(bc_name("x"), "x", 1, &r), RD_EIO);
    print_message("detail: %s\n", r.detail);
    char want[900];
    snprintf(want, sizeof want,
             "postgres write %sx: connect to host=%s/none port=%s dbname=postgres "
             "user=recoveryd: ",
             bc_ns, root, PG_PORT);
    assert_memory_equal(r.detail, want, strlen(want));
    assert_non_null(strstr(r.detail, "No such file or directory"));
    assert_int_equal(bc_read("x", &r), RD_EIO); /* not "absent": unknown */
    bc_result_free(&r);
    assert_int_equal(bc_list("", &r), RD_EIO);
}

static void test_role_without_rights(void **state)
{
    (void)state;
    PGconn *c = rdt_pg_db();
    rdt_pg_query(c,
                 "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reader') THEN "
                 "CREATE ROLE reader LOGIN; END IF; END $$");
    char ci[800];
    snprintf(ci, sizeof ci, "host=%s port=%s dbname=postgres user=reader", sockdir, PG_PORT);
    /* PostgreSQL 15: nobody but the owner may create in schema public. */
    const char *rows[][2] = {{"conninfo", ci}, {"table", "reader_objects"}, {NULL, NULL}};
    assert_int_equal(reinit(rows), 0);
    struct bc_result r;
    assert_int_equal(bc_write_full(bc_name("x"), "x", 1, &r), RD_EIO);
    print_message("detail: %s\n", r.detail);
    assert_non_null(strstr(r.detail, "postgres write "));
    assert_non_null(strstr(r.detail, "prepare table reader_objects"));
    assert_non_null(strstr(r.detail, "ERROR 42501: permission denied for schema public"));

    /* A table it may read but not write: the statement's own error. */
    rdt_pg_query(
        c, "CREATE TABLE IF NOT EXISTS ro_objects (name text PRIMARY KEY, data bytea NOT NULL, "
           "size bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())");
    rdt_pg_query(c, "GRANT SELECT ON ro_objects TO reader");
    const char *rows2[][2] = {{"conninfo", ci}, {"table", "ro_objects"}, {NULL, NULL}};
    assert_int_equal(reinit(rows2), 0);
    bc_assert_absent("x");
    assert_int_equal(bc_write_full(bc_name("x"), "x", 1, &r), RD_EIO);
    print_message("detail: %s\n", r.detail);
    assert_non_null(strstr(r.detail, "table ro_objects on "));
    assert_non_null(strstr(r.detail, "ERROR 42501: permission denied for table ro_objects"));
    PQfinish(c);
}

static void test_environment(void **state)
{
    (void)state;
    /* conninfo empty: libpq's own environment variables. */
    setenv("PGHOST", sockdir, 1);
    setenv("PGPORT", PG_PORT, 1);
    setenv("PGUSER", "recoveryd", 1);
    setenv("PGDATABASE", "postgres", 1);
    const char *rows[][2] = {{"conninfo", ""}, {NULL, NULL}};
    assert_int_equal(reinit(rows), 0);
    assert_int_equal(bc_write_str("env", "from PG*"), 0);
    bc_assert_object("env", "from PG*", 8);
    char want[800];
    snprintf(want, sizeof want,
             "table=recoveryd_backup_objects host=%s port=%s dbname=postgres "
             "user=recoveryd",
             sockdir, PG_PORT);
    assert_string_equal(g_fh.logs[0].msg, want);
    unsetenv("PGHOST");
    unsetenv("PGPORT");
    unsetenv("PGUSER");
    unsetenv("PGDATABASE");
}

static void test_config_errors(void **state)
{
    (void)state;
    assert_int_equal(bc_teardown(NULL), 0);
    static const struct {
        const char *key, *value, *error;
    } bad[] = {
        {"table", "Bad-Name", "table"},
        {"table", "a.b.c", "table"},
        {"table", "x; DROP TABLE y", "table"},
        {"table", "", "table"},
        {"conninfo", "nonsense without equals", "conninfo"},
        {"conninfo", "postgresql://[bad", "conninfo"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *rows[][2] = {{bad[i].key, bad[i].value}, {"conninfo", conninfo}, {NULL, NULL}};
        int rv = fh_init("postgres", "bad", rows);
        if (rv != RD_ECONFIG || !strstr(g_fh.error, bad[i].error))
            fail_msg("%s='%s': init %d, error '%s' (expected one naming %s)", bad[i].key,
                     bad[i].value, rv, g_fh.error, bad[i].error);
        fh_reset();
    }
}

#define T(f) cmocka_unit_test_setup_teardown(f, bc_setup, bc_teardown)

int main(void)
{
    if (!find_bindir()) {
        fprintf(stderr, "SKIPPED test_backup_postgres: PostgreSQL is not installed (no "
                        "/usr/lib/postgresql/*/bin/initdb): run scripts/bootstrap\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        BC_CONTRACT_TESTS,   T(test_table_created),    T(test_schema_table),
        T(test_reconnects),  T(test_server_not_there), T(test_role_without_rights),
        T(test_environment), T(test_config_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, rdt_pg_group_teardown);
}
