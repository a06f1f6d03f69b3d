/*
 * The dashboard's files (server.ui_dir, docs/dashboard.md) as the engine
 * serves them, over HTTP/1.1 and HTTP/2: the types h2o names, /ui
 * redirected to /ui/, a missing file 404, no other method, and no path
 * that climbs out of the directory (sent as written: "..", "%2e%2e",
 * "%2f", "//"). The page in a browser is tests/ui (it needs chromium).
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char g_yaml[] = "server:\n"
                             "  ui_dir: " RD_SOURCE_DIR "/ui\n";

static int setup(void **state)
{
    return rdt_setup_ready(state, g_yaml, 15000);
}

static int teardown(void **state)
{
    struct rdt_proc *p = *state;
    if (p != NULL) {
        int code = -1;
        if (p->pid > 0)
            assert_int_equal(rdt_proc_stop(p, &code), 0);
        rdt_proc_cleanup(p);
        free(p);
    }
    return 0;
}

static void expect_file(struct rdt_proc *p, enum rdt_proto proto, const char *path,
                        const char *type, const char *needle)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, proto, path, &r), 0);
    if (r.status != 200 || strncmp(r.content_type, type, strlen(type)) != 0)
        fail_msg("GET %s: %ld %s, expected 200 %s", path, r.status, r.content_type, type);
    assert_non_null(r.body);
    assert_non_null(strstr(r.body, needle));
    rdt_resp_free(&r);
}

static void test_files(void **state)
{
    struct rdt_proc *p = *state;
    for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
        expect_file(p, proto, "/ui/", "text/html", "<script type=\"module\" src=\"js/app.js\">");
        expect_file(p, proto, "/ui/index.html", "text/html", "<title>recoveryd</title>");
        expect_file(p, proto, "/ui/app.css", "text/css", ":root");
        expect_file(p, proto, "/ui/js/app.js", "application/javascript", "import");
        expect_file(p, proto, "/ui/js/views/agents.js", "application/javascript", "export");

        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(p, proto, "/ui", &r), 0);
        assert_int_equal(r.status, 301);
        assert_non_null(strstr(r.location, "/ui/"));
        rdt_resp_free(&r);

        assert_int_equal(rdt_get(p, proto, "/ui/nope.js", &r), 0);
        assert_int_equal(r.status, 404);
        rdt_resp_free(&r);

        assert_int_equal(rdt_post(p, proto, "/ui/index.html", "{}", &r), 0);
        assert_int_equal(r.status, 405);
        rdt_resp_free(&r);
    }
}

/* Nothing outside ui/: not the config, not the tree, not /etc. */
static void test_no_traversal(void **state)
{
    struct rdt_proc *p = *state;
    static const char *const paths[] = {
        "/ui/../../../../../../etc/passwd",
        "/ui/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/ui/..%2f..%2f..%2f..%2f..%2fetc/passwd",
        "/ui/%2e%2e%2f%2e%2e%2fCMakeLists.txt",
        "/ui//etc/passwd",
        "/ui/../CMakeLists.txt",
        "/ui/js/../../CMakeLists.txt",
        "/ui/js/..%2f..%2fCMakeLists.txt",
        "/ui/.%2e/CMakeLists.txt",
        "/ui/../deploy/recoveryd.yaml",
    };
    for (int proto = RDT_H1; proto <= RDT_H2; proto++) {
        for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
            struct rdt_resp r = {0};
            assert_int_equal(rdt_get(p, proto, paths[i], &r), 0);
            const char *b = r.body ? r.body : "";
            if (r.status == 200 || strstr(b, "root:") || strstr(b, "cmake_minimum_required") ||
                strstr(b, "fault_tolerance"))
                fail_msg("GET %s: %ld, served something outside ui/: %.80s", paths[i], r.status, b);
            rdt_resp_free(&r);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_traversal, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
