/*
 * TLS: with server.tls.cert and key, the one port speaks TLS and offers h2
 * and http/1.1 by ALPN. A certificate that cannot be loaded stops the start
 * with a message naming the key.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct rdt_proc proc;
static char cert[400], key[400];

static int setup(void **state)
{
    if (rdt_proc_prepare(&proc) != 0)
        return -1;
    snprintf(cert, sizeof(cert), "%s/cert.pem", proc.dir);
    snprintf(key, sizeof(key), "%s/key.pem", proc.dir);
    char *argv[] = {"/usr/bin/openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    key,
                    "-out",
                    cert,
                    "-days",
                    "2",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                    NULL};
    char *err = NULL;
    int rc = rdt_run(argv, 30000, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "openssl req failed: %s\n", err ? err : "");
    free(err);
    rdt_tls_ca = cert;
    snprintf(proc.base_url, sizeof(proc.base_url), "https://127.0.0.1:%u", (unsigned)proc.port);
    return rc == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    rdt_proc_cleanup(&proc);
    return 0;
}

static void test_tls_serves_h2_and_http1(void **state)
{
    char yaml[1024];
    snprintf(yaml, sizeof(yaml), "server:\n  tls:\n    cert: %s\n    key: %s\n", cert, key);
    assert_int_equal(rdt_proc_start(&proc, yaml), 0);
    assert_int_equal(rdt_wait_ready(&proc, 15000), 0);
    long long epoch;
    assert_int_equal(rdt_register(&proc, "tls-agent", 2, &epoch), 0);
    for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&proc, (enum rdt_proto)proto, "/api/v1/nodes/tls-agent", &r), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.http_version,
                         proto == RDT_H2 ? CURL_HTTP_VERSION_2_0 : CURL_HTTP_VERSION_1_1);
        assert_string_equal(json_string_value(rdt_json_path(r.json, "node_id")), "tls-agent");
        rdt_resp_free(&r);
    }
    /* Cleartext on the TLS port gets no HTTP answer. */
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/health", (unsigned)proc.port);
    struct rdt_resp r = {0};
    rdt_http(RDT_H1, "GET", url, NULL, 0, &r);
    assert_true(r.status != 200);
    rdt_resp_free(&r);
    int code = -1;
    assert_int_equal(rdt_proc_stop(&proc, &code), 0);
    assert_int_equal(code, 0);
}

static void test_bad_certificate_stops_the_start(void **state)
{
    char yaml[1024];
    snprintf(yaml, sizeof(yaml), "server:\n  tls:\n    cert: %s.missing\n    key: %s\n", cert, key);
    assert_int_not_equal(rdt_proc_start(&proc, yaml), 0);
    assert_int_equal(proc.exit_code, 1);
    char *log = rdt_proc_log(&proc);
    assert_non_null(strstr(log, "server.tls.cert: cannot load the PEM certificate chain"));
    free(log);
    /* A key that does not match the certificate. */
    snprintf(yaml, sizeof(yaml), "server:\n  tls:\n    cert: %s\n    key: %s\n", cert, cert);
    assert_int_not_equal(rdt_proc_start(&proc, yaml), 0);
    log = rdt_proc_log(&proc);
    assert_non_null(strstr(log, "server.tls.key: cannot load"));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_serves_h2_and_http1),
        cmocka_unit_test(test_bad_certificate_stops_the_start),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
