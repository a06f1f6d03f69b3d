/*
 * Backups, archiving and restore end to end on the postgres target, against
 * a real PostgreSQL this test starts (Debian's postgresql: initdb and
 * postgres on a socket in the test's own directory, as the postgres user
 * when the test runs as root): a daemon backs up and archives into a table,
 * a backup verifies, the daemon is killed (-9), and `recoveryd restore
 * --from postgresql:///...` gives a new replica every registration. Without
 * PostgreSQL the test says so and exits 77 (skipped).
 */
#include "cmocka_all.h"

#include <errno.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_disaster.h"
#include "rdt_pg.h"
#include "rdt_server.h"

static void test_backup_archive_restore_on_postgres(void **state)
{
    (void)state;
    char instance[1024], url[1024];
    snprintf(instance, sizeof instance,
             "    - name: db\n"
             "      plugin: postgres\n"
             "      config: {conninfo: \"%s\", table: rd_objects}\n",
             conninfo);
    /* libpq's URI form, with the table as our own parameter. */
    snprintf(url, sizeof url,
             "postgresql:///postgres?host=%s&port=%s&user=recoveryd&table=rd_objects", sockdir,
             PG_PORT);
    rdt_disaster_on(instance, "pg", url);
}

int main(void)
{
    if (!find_bindir()) {
        fprintf(stderr, "SKIPPED test_backup_restore_postgres: PostgreSQL is not installed (no "
                        "/usr/lib/postgresql/*/bin/initdb): run scripts/bootstrap\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_archive_restore_on_postgres),
    };
    return cmocka_run_group_tests(tests, rdt_pg_group_setup, rdt_pg_group_teardown);
}
