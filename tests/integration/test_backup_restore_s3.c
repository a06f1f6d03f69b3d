/*
 * Backups, archiving and restore end to end on the s3 target, against a real
 * S3 server this test starts (@20minutes/s3rver, which checks SigV4
 * signatures; tests/integration/s3rver.js, installed by scripts/bootstrap):
 * a daemon backs up and archives to a bucket, a backup verifies, the daemon
 * is killed (-9), and `recoveryd restore --from s3://...` gives a new
 * replica every registration. Without the server's package or node the
 * test says so and exits 77 (skipped).
 */
#include "cmocka_all.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_disaster.h"
#include "rdt_server.h"

#define BUCKET     "rd-restore"
#define S3RVER_PKG RD_SOURCE_DIR "/.deps/npm/node_modules/@20minutes/s3rver"
#define NPM_NODE   RD_SOURCE_DIR "/.deps/npm/node_modules/.bin/node"
#define LAUNCHER   RD_SOURCE_DIR "/tests/integration/s3rver.js"

static char root[512];
static char endpoint[64];
static struct rdt_server server;

static int start_server(void)
{
    char node[512], data[700], port_file[700], log[700];
    if (access(NPM_NODE, X_OK) == 0)
        snprintf(node, sizeof node, "%s", NPM_NODE);
    else if (rdt_which("node", node, sizeof node) != 0)
        node[0] = '\0';
    snprintf(data, sizeof data, "%s/s3", root);
    snprintf(port_file, sizeof port_file, "%s/s3.port", root);
    snprintf(log, sizeof log, "%s/s3rver.log", root);
    char *argv[] = {
        node, "--openssl-legacy-provider", LAUNCHER, S3RVER_PKG, data, BUCKET, port_file, NULL};
    if (rdt_server_start(&server, argv, NULL, root, log, RDT_SAME_USER, 0) != 0)
        return -1;
    for (int64_t deadline = rdt_now_ms() + rdt_ms(60000);;) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            unsigned port = 0;
            int ok = fscanf(f, "%u", &port);
            fclose(f);
            if (ok == 1 && port > 0 && port < 65536) {
                snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u", port);
                return 0;
            }
        }
        if (!rdt_server_alive(&server) || rdt_now_ms() > deadline) {
            fprintf(stderr, "test_backup_restore_s3: the S3 server did not start\n");
            rdt_server_print_log(log, 30);
            return -1;
        }
        rdt_sleep_ms(20); /* between looks for the port file */
    }
}

static int group_setup(void **state)
{
    (void)state;
    if (rdt_tmpdir(root, sizeof root) != 0)
        return -1;
    return start_server();
}

static int group_teardown(void **state)
{
    (void)state;
    rdt_server_stop(&server, SIGTERM, 10000);
    return rdt_rmtree(root);
}

static void test_backup_archive_restore_on_s3(void **state)
{
    (void)state;
    char instance[1024], url[512];
    snprintf(instance, sizeof instance,
             "    - name: offsite\n"
             "      plugin: s3\n"
             "      config: {endpoint: \"%s\", bucket: %s, prefix: prod/, access_key: S3RVER, "
             "secret_key: S3RVER}\n",
             endpoint, BUCKET);
    snprintf(url, sizeof url, "s3://%s/prod?endpoint=%s&access_key=S3RVER&secret_key=S3RVER",
             BUCKET, endpoint);
    rdt_disaster_on(instance, "s3", url);
}

int main(void)
{
    if (access(S3RVER_PKG "/package.json", R_OK) != 0) {
        fprintf(stderr,
                "SKIPPED test_backup_restore_s3: the S3 server is not installed (%s): run "
                "scripts/bootstrap\n",
                S3RVER_PKG);
        return RDT_EXIT_SKIP;
    }
    char node[512];
    if (access(NPM_NODE, X_OK) != 0 && rdt_which("node", node, sizeof node) != 0) {
        fprintf(stderr, "SKIPPED test_backup_restore_s3: no node to run the S3 server: run "
                        "scripts/bootstrap\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_archive_restore_on_s3),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
