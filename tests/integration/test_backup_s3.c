/*
 * The s3 backup target (build/plugins/s3.so) against a real S3 server this
 * test starts: @20minutes/s3rver (tests/integration/s3rver.js; scripts/
 * bootstrap installs it into .deps/npm), which checks SigV4 signatures with
 * its credentials S3RVER/S3RVER. The plugin runs in the fake host
 * (fake_host.h), its requests really go over loopback. First the contract
 * every target keeps (backup_contract.h), then what is the s3 target's own:
 * lists of several ListObjectsV2 pages, a wrong secret or key refused by
 * the server (so signing is really tested), the keys under the prefix,
 * credentials from the environment, a missing bucket, an endpoint where
 * nothing listens, config errors.
 *
 * Pages: s3rver walks its directory tree to list, so keys come out in that
 * order ("a/y/1" before "a/y-1"), not in S3's UTF-8 binary order, and a
 * continuation token (the last key of a page) then skips keys. The plugin
 * sorts every list, which covers the order; the pages are tested with keys
 * whose walk order is their binary order (test_list_pages), the contract
 * with pages of 1000.
 *
 * Without the server's package or node (scripts/bootstrap not run) the test
 * says so and exits 77 (skipped); a server that is installed but does not
 * start is a failure.
 */
#include "backup_contract.h"

#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"
#include "rdt_server.h"

#define BUCKET     "recoveryd-test"
#define PREFIX     "cluster-a/"
#define S3RVER_PKG RD_SOURCE_DIR "/.deps/npm/node_modules/@20minutes/s3rver"
#define NPM_NODE   RD_SOURCE_DIR "/.deps/npm/node_modules/.bin/node"
#define LAUNCHER   RD_SOURCE_DIR "/tests/integration/s3rver.js"

static char root[512];
static char endpoint[64];
static struct rdt_server server;
static const char *cfg[][2] = {
    {"endpoint", endpoint},   {"bucket", BUCKET}, {"prefix", PREFIX}, {"access_key", "S3RVER"},
    {"secret_key", "S3RVER"}, {"timeout", "30s"}, {NULL, NULL},
};

/* ---- the server ---------------------------------------------------------------------- */

static int start_server(void)
{
    char node[512], data[700], port_file[700], log[700];
    if (access(NPM_NODE, X_OK) == 0) /* node 22 from npm where the system's is too old */
        snprintf(node, sizeof node, "%s", NPM_NODE);
    else if (rdt_which("node", node, sizeof node) != 0)
        node[0] = '\0';
    snprintf(data, sizeof data, "%s/s3", root);
    snprintf(port_file, sizeof port_file, "%s/s3.port", root);
    snprintf(log, sizeof log, "%s/s3rver.log", root);
    /* s3rver makes its continuation tokens with DES, which OpenSSL 3 keeps in
     * its legacy provider. */
    char *argv[] = {
        node, "--openssl-legacy-provider", LAUNCHER, S3RVER_PKG, data, BUCKET, port_file, NULL};
    if (rdt_server_start(&server, argv, NULL, root, log, RDT_SAME_USER, 0) != 0)
        return -1;
    int64_t deadline = rdt_now_ms() + rdt_ms(60000);
    for (int delay = 5;; delay = delay < 100 ? delay * 2 : 100) {
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
        if (!rdt_server_alive(&server)) {
            fprintf(stderr,
                    "test_backup_s3: FAILED: the S3 server exited (%d) before it "
                    "listened\n",
                    server.exit_code);
            rdt_server_print_log(log, 30);
            return -1;
        }
        if (rdt_now_ms() > deadline) {
            fprintf(stderr, "test_backup_s3: FAILED: the S3 server did not listen within %d ms\n",
                    rdt_ms(60000));
            rdt_server_print_log(log, 30);
            return -1;
        }
        rdt_sleep_ms(delay); /* between looks for the port file */
    }
}

static int group_setup(void **state)
{
    (void)state;
    if (rdt_tmpdir(root, sizeof root) != 0)
        return -1;
    bc_plugin = "s3";
    bc_cfg = cfg;
    return start_server();
}

static int group_teardown(void **state)
{
    (void)state;
    rdt_server_stop(&server, SIGTERM, 10000);
    return rdt_rmtree(root);
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* A request of the test's own, signed with the server's credentials:
 * `path` after the endpoint. Returns the HTTP status (0: none). */
static long raw(const char *method, const char *path, const char *body)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", endpoint, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
    curl_easy_setopt(c, CURLOPT_USERPWD, "S3RVER:S3RVER");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return status;
}

/* An instance of its own with `rows` (replacing this test's default one). */
static int reinit(const char *(*rows)[2])
{
    assert_int_equal(bc_teardown(NULL), 0);
    int rv = fh_init("s3", "other", rows);
    if (rv == 0) {
        fh_start();
        fh_run_work();
    }
    return rv;
}

/* ---- s3's own ---------------------------------------------------------------------- */

static void test_wrong_secret_refused(void **state)
{
    (void)state;
    const char *rows[][2] = {{"endpoint", endpoint},   {"bucket", BUCKET},      {"prefix", PREFIX},
                             {"access_key", "S3RVER"}, {"secret_key", "WRONG"}, {NULL, NULL}};
    assert_int_equal(reinit(rows), 0);
    struct bc_result r;
    assert_int_equal(bc_write_full(bc_name("x.img"), "data", 4, &r), RD_EIO);
    print_message("detail: %s\n", r.detail);
    char want[256];
    snprintf(want, sizeof want, "s3 PUT %s/%s/%s%sx.img: 403 SignatureDoesNotMatch", endpoint,
             BUCKET, PREFIX, bc_ns);
    assert_memory_equal(r.detail, want, strlen(want));
    /* Not "absent": refused. */
    assert_int_equal(bc_read("x.img", &r), RD_EIO);
    bc_result_free(&r);
    assert_int_equal(bc_list("", &r), RD_EIO);
    assert_non_null(strstr(r.detail, "s3 GET "));
    assert_non_null(strstr(r.detail, "403 SignatureDoesNotMatch"));
    assert_int_equal(fh_counter("backup_ops_failed"), 3);

    const char *rows2[][2] = {{"endpoint", endpoint},
                              {"bucket", BUCKET},
                              {"access_key", "NOBODY"},
                              {"secret_key", "S3RVER"},
                              {NULL, NULL}};
    assert_int_equal(reinit(rows2), 0);
    assert_int_equal(bc_write_full(bc_name("x.img"), "data", 4, &r), RD_EIO);
    print_message("detail: %s\n", r.detail);
    assert_non_null(strstr(r.detail, "403 InvalidAccessKeyId"));
}

static void test_keys_under_prefix(void **state)
{
    (void)state;
    assert_int_equal(bc_write_str("backups/1.json", "{\"manifest_version\":1}"), 0);
    char path[512];
    snprintf(path, sizeof path, "/%s/%s%sbackups/1.json", BUCKET, PREFIX, bc_ns);
    assert_int_equal(raw("GET", path, NULL), 200);

    /* Keys beside the prefix, or no object name of ours, are not listed. */
    snprintf(path, sizeof path, "/%s/cluster-b/%sbackups/2.json", BUCKET, bc_ns);
    assert_int_equal(raw("PUT", path, "other cluster"), 200);
    snprintf(path, sizeof path, "/%s/%s%sbackups/a%%2Bb", BUCKET, PREFIX, bc_ns); /* a+b */
    assert_int_equal(raw("PUT", path, "not a name of ours"), 200);
    struct bc_result r;
    assert_int_equal(bc_list("", &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.names[0], "backups/1.json");
    assert_int_equal(r.sizes[0], 22);
    bc_result_free(&r);
}

static void test_list_pages(void **state)
{
    (void)state;
    const char *rows[][2] = {
        {"endpoint", endpoint},   {"bucket", BUCKET}, {"prefix", PREFIX}, {"access_key", "S3RVER"},
        {"secret_key", "S3RVER"}, {"max_keys", "2"},  {NULL, NULL}};
    assert_int_equal(reinit(rows), 0);
    static const char *const names[] = {"archive/03", "archive/00", "archive/01", "backups/1",
                                        "archive/02", "archive/04", "backups/0"};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(bc_write(names[i], "0123456789", i + 1), 0);
    struct bc_result r;
    assert_int_equal(bc_list("", &r), 0); /* 4 pages of 2 */
    assert_int_equal(r.n, 7);
    static const char *const all[] = {"archive/00", "archive/01", "archive/02", "archive/03",
                                      "archive/04", "backups/0",  "backups/1"};
    static const uint64_t sizes[] = {2, 3, 5, 1, 6, 7, 4};
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(r.names[i], all[i]);
        assert_int_equal(r.sizes[i], sizes[i]);
    }
    bc_result_free(&r);
    assert_int_equal(bc_list("archive/0", &r), 0); /* 3 pages, the last one full */
    assert_int_equal(r.n, 5);
    bc_result_free(&r);
    assert_int_equal(bc_list("backups/", &r), 0); /* one page, exactly full */
    assert_int_equal(r.n, 2);
    bc_result_free(&r);
}

static void test_env_credentials(void **state)
{
    (void)state;
    const char *rows[][2] = {{"endpoint", endpoint}, {"bucket", BUCKET}, {NULL, NULL}};
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    assert_int_equal(reinit(rows), 0);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    /* Read at init: still signed right once the environment changed. */
    assert_int_equal(bc_write_str("env.img", "from the environment"), 0);
    bc_assert_object("env.img", "from the environment", 20);

    assert_int_equal(reinit(rows), RD_ECONFIG);
    assert_non_null(strstr(g_fh.error, "AWS_ACCESS_KEY_ID"));
    fh_reset();
    const char *half[][2] = {
        {"endpoint", endpoint}, {"bucket", BUCKET}, {"access_key", "S3RVER"}, {NULL, NULL}};
    assert_int_equal(fh_init("s3", "half", half), RD_ECONFIG);
    assert_non_null(strstr(g_fh.error, "both or neither"));
    fh_reset();
}

static void test_missing_bucket(void **state)
{
    (void)state;
    const char *rows[][2] = {{"endpoint", endpoint},
                             {"bucket", "no-such-bucket"},
                             {"access_key", "S3RVER"},
                             {"secret_key", "S3RVER"},
                             {NULL, NULL}};
    assert_int_equal(reinit(rows), 0);
    struct bc_result r;
    assert_int_equal(bc_write_full(bc_name("x"), "x", 1, &r), RD_EIO);
    print_message("detail: %s\n", r.detail);
    assert_non_null(strstr(r.detail, "404 NoSuchBucket"));
    /* A missing bucket is no missing object. */
    assert_int_equal(bc_read("x", &r), RD_EIO);
    bc_result_free(&r);
    assert_int_equal(bc_remove("x", &r), RD_EIO);
    assert_non_null(strstr(r.detail, "s3 DELETE "));
    assert_non_null(strstr(r.detail, "NoSuchBucket"));
}

static void test_nothing_listens(void **state)
{
    (void)state;
    uint16_t a, b;
    assert_int_equal(rdt_free_ports(&a, &b), 0);
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%u", a);
    const char *rows[][2] = {{"endpoint", dead},
                             {"bucket", BUCKET},
                             {"access_key", "S3RVER"},
                             {"secret_key", "S3RVER"},
                             {NULL, NULL}};
    assert_int_equal(reinit(rows), 0);
    struct bc_result r;
    assert_int_equal(bc_write_full(bc_name("x"), "x", 1, &r), RD_EIO);
    print_message("detail: %s\n", r.detail);
    char want[128];
    snprintf(want, sizeof want, "s3 PUT %s/%s/%sx: ", dead, BUCKET, bc_ns);
    assert_memory_equal(r.detail, want, strlen(want));
    assert_non_null(strstr(r.detail, "onnect")); /* "Failed to connect ...", curl's words */
}

static void test_config_errors(void **state)
{
    (void)state;
    assert_int_equal(bc_teardown(NULL), 0);
    static const struct {
        const char *key, *value, *error;
    } bad[] = {
        {"endpoint", "ftp://127.0.0.1", "endpoint"},
        {"endpoint", "127.0.0.1:9000", "endpoint"},
        {"bucket", "Upper_Case", "bucket"},
        {"bucket", "ab", "bucket"},
        {"prefix", "/abs/", "prefix"},
        {"prefix", "a b/", "prefix"},
        {"region", "us:east", "region"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        /* The bad row first: the fake host takes the first row of a key. */
        const char *rows[][2] = {{bad[i].key, bad[i].value}, {"endpoint", endpoint},
                                 {"bucket", BUCKET},         {"access_key", "S3RVER"},
                                 {"secret_key", "S3RVER"},   {NULL, NULL}};
        assert_int_equal(fh_init("s3", "bad", rows), RD_ECONFIG);
        if (!strstr(g_fh.error, bad[i].error))
            fail_msg("%s=%s: error '%s' does not name %s", bad[i].key, bad[i].value, g_fh.error,
                     bad[i].error);
        fh_reset();
    }
}

#define T(f) cmocka_unit_test_setup_teardown(f, bc_setup, bc_teardown)

int main(void)
{
    if (access(S3RVER_PKG "/package.json", R_OK) != 0) {
        fprintf(stderr,
                "SKIPPED test_backup_s3: the S3 server is not installed (%s): run "
                "scripts/bootstrap\n",
                S3RVER_PKG);
        return RDT_EXIT_SKIP;
    }
    char node[512];
    if (access(NPM_NODE, X_OK) != 0 && rdt_which("node", node, sizeof node) != 0) {
        fprintf(stderr, "SKIPPED test_backup_s3: no node to run the S3 server: run "
                        "scripts/bootstrap\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        BC_CONTRACT_TESTS,         T(test_list_pages),      T(test_wrong_secret_refused),
        T(test_keys_under_prefix), T(test_env_credentials), T(test_missing_bucket),
        T(test_nothing_listens),   T(test_config_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
