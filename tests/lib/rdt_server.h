/*
 * Servers a test runs besides recoveryd (PostgreSQL, an S3 server): started
 * with stdin from /dev/null and their output appended to a log file, killed
 * with the test if it dies (PR_SET_PDEATHSIG, set after any change of user
 * since such a change clears it), optionally as another user (root running
 * PostgreSQL, which refuses to run as root).
 *
 * As harness.h: 0 or -1 after printing why on stderr, no cmocka assertions,
 * from the test's main thread; only pids started here are ever signalled,
 * and a pid is forgotten once reaped.
 */
#ifndef RDT_SERVER_H
#define RDT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct rdt_server {
    pid_t pid;     /* > 0 while it runs (not yet reaped) */
    int exit_code; /* last reaped exit code (128 + signal), -1 until one is */
    char log_path[512];
};

/* "Run as this user": a uid and gid, or RDT_SAME_USER for both. */
#define RDT_SAME_USER ((uid_t)-1)

/*
 * Starts argv (argv[0] an absolute path) with the environment plus `env`
 * ("KEY=VALUE" strings ending with NULL, or NULL), in `cwd` (NULL: the
 * test's), output appended to `log_path`, as `uid`/`gid` (with no
 * supplementary groups) unless uid is RDT_SAME_USER.
 */
int rdt_server_start(struct rdt_server *s, char *const argv[], char *const env[], const char *cwd,
                     const char *log_path, uid_t uid, gid_t gid);

/* True while it runs; reaps it (exit_code) once it ended. */
bool rdt_server_alive(struct rdt_server *s);

/* Sends `sig` and waits up to `timeout_ms` for the exit, then SIGKILL.
 * Returns the exit code, or -1 when it had to be killed or was not running. */
int rdt_server_stop(struct rdt_server *s, int sig, int timeout_ms);

/* Runs argv to completion the same way (output appended to `log_path`).
 * Returns its exit code, or -1 when it could not run or outlived
 * `timeout_ms` (it is killed then). */
int rdt_server_run(char *const argv[], char *const env[], const char *log_path, uid_t uid,
                   gid_t gid, int timeout_ms);

/* Prints the last `lines` lines of `log_path` on stderr. */
void rdt_server_print_log(const char *log_path, int lines);

/* The absolute path of program `name` in PATH (then /usr/sbin, /usr/bin,
 * /sbin, /bin) into `out`. 0 or -1 (not found, nothing printed). */
int rdt_which(const char *name, char *out, size_t len);

#endif
