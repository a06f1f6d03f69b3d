/*
 * The backup target plugins (file, s3, postgres) in the real engine: the
 * host loads them, validates their declared keys (FILE:LINE errors from
 * --check-config), inits and starts them (file makes its directory on the
 * pool), lists them in /api/v1/plugins, reports an init failure (s3 without
 * credentials), and stops them with the daemon. Their operations are tested
 * in unit/plugins/backup_file, integration/test_backup_s3 and
 * integration/test_backup_postgres.
 */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"

/* The instance `name` of /api/v1/plugins (a new reference), or NULL. */
static json_t *instance(struct rdt_proc *p, const char *name)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, "/api/v1/plugins", &r), 0);
    assert_int_equal(r.status, 200);
    json_t *x, *found = NULL;
    size_t i;
    json_array_foreach(rdt_json_path(r.json, "items"), i, x)
    {
        if (strcmp(json_string_value(json_object_get(x, "name")), name) == 0)
            found = json_incref(x);
    }
    rdt_resp_free(&r);
    return found;
}

static void expect_instance(struct rdt_proc *p, const char *name, const char *plugin,
                            const char *state)
{
    json_t *x = instance(p, name);
    if (!x)
        fail_msg("no instance %s in /api/v1/plugins", name);
    assert_string_equal(json_string_value(json_object_get(x, "plugin")), plugin);
    assert_string_equal(json_string_value(json_object_get(x, "kind")), "backup");
    const char *st = json_string_value(json_object_get(x, "state"));
    if (strcmp(st, state) != 0)
        fail_msg("%s: state %s, expected %s (error: %s)", name, st, state,
                 json_string_value(json_object_get(x, "error")));
    json_decref(x);
}

static void test_targets_load_start_and_stop(void **state)
{
    (void)state;
    struct rdt_proc p;
    memset(&p, 0, sizeof p);
    assert_int_equal(rdt_proc_prepare(&p), 0);
    p.errors_expected = true; /* the s3 instance without credentials fails its init */
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "plugins:\n"
             "  instances:\n"
             "    - {name: heartbeat, required: true}\n"
             "    - name: bk_file\n"
             "      plugin: file\n"
             "      required: true\n"
             "      config:\n"
             "        dir: %s/backups/cluster-a\n"
             "    - name: bk_s3\n"
             "      plugin: s3\n"
             "      required: true\n"
             "      config:\n"
             "        endpoint: http://127.0.0.1:9\n"
             "        bucket: recoveryd-backups\n"
             "        prefix: prod/\n"
             "        access_key: AKIDEXAMPLE\n"
             "        secret_key: wJalrXUtnFEMI\n"
             "        timeout: 5s\n"
             "    - name: bk_pg\n"
             "      plugin: postgres\n"
             "      required: true\n"
             "      config:\n"
             "        conninfo: host=/nonexistent dbname=ops\n"
             "        table: backup.objects\n"
             "    - name: bk_s3_nokeys\n"
             "      plugin: s3\n"
             "      config:\n"
             "        endpoint: http://127.0.0.1:9\n"
             "        bucket: recoveryd-backups\n",
             p.dir);
    /* No credentials anywhere for bk_s3_nokeys. */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    assert_int_equal(rdt_proc_start(&p, yaml), 0);
    assert_int_equal(rdt_wait_ready(&p, rdt_ms(15000)), 0);
    expect_instance(&p, "bk_file", "file", "running");
    expect_instance(&p, "bk_s3", "s3", "running");
    expect_instance(&p, "bk_pg", "postgres", "running");
    expect_instance(&p, "bk_s3_nokeys", "s3", "failed");
    json_t *x = instance(&p, "bk_s3_nokeys");
    assert_non_null(strstr(json_string_value(json_object_get(x, "error")), "no credentials"));
    json_decref(x);

    /* The file target made its directory at start (on the pool): wait for it. */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/backups/cluster-a", p.dir);
    struct stat st;
    int64_t deadline = rdt_now_ms() + rdt_ms(10000);
    while (stat(dir, &st) != 0) {
        assert_true(rdt_now_ms() < deadline);
        rdt_sleep_ms(10); /* between looks */
    }
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);

    int code = -1;
    assert_int_equal(rdt_proc_stop(&p, &code), 0);
    assert_int_equal(code, 0);
    rdt_proc_cleanup(&p);
}

/* --check-config with `body` as the config: exit 1 and `want` on stderr. */
static void expect_refused(const char *dir, const char *body, const char *want)
{
    char path[512];
    snprintf(path, sizeof path, "%s/check.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(body, f);
    assert_int_equal(fclose(f), 0);
    char *const argv[] = {(char *)RD_BINARY,
                          (char *)"--check-config",
                          (char *)"--config",
                          path,
                          (char *)"--plugins-dir",
                          (char *)rdt_plugins_dir(),
                          (char *)"--policies-dir",
                          (char *)RD_SOURCE_DIR "/policies",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = rdt_run(argv, rdt_ms(10000), &out, &err);
    char where[600];
    snprintf(where, sizeof where, "%s:%s", path, want);
    if (rc != 1 || !err || !strstr(err, where))
        fail_msg("--check-config exited %d; expected 1 and '%s' on stderr:\n%s", rc, where,
                 err ? err : "");
    free(out);
    free(err);
}

static void test_keys_validated_by_the_host(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(rdt_tmpdir(dir, sizeof dir), 0);
    expect_refused(dir,
                   "plugins:\n"
                   "  instances:\n"
                   "    - name: bk\n"
                   "      plugin: file\n"
                   "      config: {}\n",
                   "3: plugins.instances[0].config.dir: required by plugin file");
    expect_refused(dir,
                   "plugins:\n"
                   "  instances:\n"
                   "    - name: bk\n"
                   "      plugin: s3\n"
                   "      config:\n"
                   "        endpoint: http://127.0.0.1:9000\n"
                   "        bucket: b-1\n"
                   "        timeout: fast\n",
                   "8: plugins.instances[0].config.timeout: expected a duration");
    expect_refused(dir,
                   "plugins:\n"
                   "  instances:\n"
                   "    - name: bk\n"
                   "      plugin: postgres\n"
                   "      config:\n"
                   "        colour: blue\n",
                   "6: plugins.instances[0].config.colour: unknown key for plugin postgres "
                   "(expected one of: conninfo, table, timeout)");
    rdt_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targets_load_start_and_stop),
        cmocka_unit_test(test_keys_validated_by_the_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
