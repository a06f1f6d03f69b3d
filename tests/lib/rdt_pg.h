/*
 * A real PostgreSQL server for a test (header-only, like the other test
 * fakes): Debian's postgresql package (the newest
 * /usr/lib/postgresql/<version>/bin), a private data directory and socket
 * directory under `root` (no TCP port: nothing to collide with), run as the
 * postgres user when the test runs as root (PostgreSQL refuses root). The
 * database collates with ICU's "en", an order that is not bytewise.
 *
 * The test fills `root` (rdt_tmpdir), calls find_bindir() (false: no
 * package, the test skips), start_server(), and stops `server` at the end
 * (rdt_pg_group_setup and rdt_pg_group_teardown do the first and the last
 * for a cmocka group); `conninfo`, `sockdir` and PG_PORT say where it
 * listens. A test that stopped the server starts it again on the same data
 * with launch_server(). rdt_pg_db() and rdt_pg_query() are the test's own
 * connection and queries.
 */
#ifndef RDT_PG_H
#define RDT_PG_H

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
#include "rdt_server.h"

#define PG_PORT "5432" /* on a socket in the test's own directory: no collision */

static char bindir[256];
static char root[512];
static char sockdir[600];
static char conninfo[700];
static struct rdt_server server;
static uid_t pg_uid = RDT_SAME_USER;
static gid_t pg_gid;

/* ---- the server ---------------------------------------------------------------------- */

/* The newest installed PostgreSQL's bin directory (15 on Debian 12). */
static bool find_bindir(void)
{
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0)
        return false;
    int best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        int v = atoi(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"));
        if (v > best) {
            best = v;
            snprintf(bindir, sizeof bindir, "%.*s", (int)(strlen(g.gl_pathv[i]) - 7),
                     g.gl_pathv[i]); /* without "/initdb" */
        }
    }
    globfree(&g);
    return best >= 0;
}

/* A path the server's user owns (as root: chown to postgres). */
static int own(const char *path)
{
    if (pg_uid != RDT_SAME_USER && chown(path, pg_uid, pg_gid) != 0) {
        fprintf(stderr, "rdt_pg: chown %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int launch_server(void);

static int start_server(void)
{
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw) {
            fprintf(stderr, "rdt_pg: FAILED: running as root, PostgreSQL "
                            "installed, but no postgres user to run it as\n");
            return -1;
        }
        pg_uid = pw->pw_uid;
        pg_gid = pw->pw_gid;
    }
    char data[700], log[700], initdb[300];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(sockdir, sizeof sockdir, "%s/sock", root);
    snprintf(log, sizeof log, "%s/postgres.log", root);
    snprintf(initdb, sizeof initdb, "%s/initdb", bindir);
    if (own(root) != 0 || mkdir(sockdir, 0700) != 0 || own(sockdir) != 0)
        return -1;

    char *init_argv[] = {initdb,
                         "-D",
                         data,
                         "-U",
                         "recoveryd",
                         "-A",
                         "trust",
                         "-E",
                         "UTF8",
                         "--locale=C.UTF-8",
                         "--locale-provider=icu",
                         "--icu-locale=en",
                         "--no-sync",
                         "--no-instructions",
                         NULL};
    int rc = rdt_server_run(init_argv, NULL, log, pg_uid, pg_gid, rdt_ms(120000));
    if (rc != 0) {
        fprintf(stderr, "rdt_pg: FAILED: initdb exited %d\n", rc);
        rdt_server_print_log(log, 30);
        return -1;
    }
    return launch_server();
}

/* Starts postgres on the data directory initdb made (again, after a stop),
 * and waits until it accepts connections. */
static int launch_server(void)
{
    char data[700], log[700], postgres[300];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(log, sizeof log, "%s/postgres.log", root);
    snprintf(postgres, sizeof postgres, "%s/postgres", bindir);
    char *argv[] = {
        postgres, "-D",        data, "-k", sockdir, "-p", PG_PORT, "-c", "listen_addresses=",
        "-c",     "fsync=off", NULL};
    if (rdt_server_start(&server, argv, NULL, root, log, pg_uid, pg_gid) != 0)
        return -1;
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s dbname=postgres user=recoveryd", sockdir,
             PG_PORT);
    int64_t deadline = rdt_now_ms() + rdt_ms(60000);
    for (int delay = 5;; delay = delay < 100 ? delay * 2 : 100) {
        if (PQping(conninfo) == PQPING_OK)
            return 0;
        if (!rdt_server_alive(&server)) {
            fprintf(stderr,
                    "rdt_pg: FAILED: postgres exited (%d) before it "
                    "accepted connections\n",
                    server.exit_code);
            rdt_server_print_log(log, 30);
            return -1;
        }
        if (rdt_now_ms() > deadline) {
            fprintf(stderr,
                    "rdt_pg: FAILED: postgres did not accept connections "
                    "within %d ms\n",
                    rdt_ms(60000));
            rdt_server_print_log(log, 30);
            return -1;
        }
        rdt_sleep_ms(delay); /* between pings */
    }
}

/* A cmocka group's setup and teardown: a private root and the server in it. */
static inline int rdt_pg_group_setup(void **state)
{
    (void)state;
    if (rdt_tmpdir(root, sizeof root) != 0)
        return -1;
    return start_server();
}

static inline int rdt_pg_group_teardown(void **state)
{
    (void)state;
    rdt_server_stop(&server, SIGINT, 30000); /* fast shutdown */
    return rdt_rmtree(root);
}

/* The test's own connection (fails the test when it cannot connect). */
static inline PGconn *rdt_pg_db(void)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", conninfo, PQerrorMessage(c));
    return c;
}

/* Runs `sql` (failing the test on an error) and returns the first column of
 * the first row ("" when none), in a static buffer. */
static inline const char *rdt_pg_query(PGconn *c, const char *sql)
{
    static char out[4096];
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    snprintf(out, sizeof out, "%s",
             st == PGRES_TUPLES_OK && PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return out;
}

#endif
