/*
 * What every backup target owes the engine (struct rd_backup_ops version 2,
 * plugin.h), as one body of cmocka tests run against each target plugin
 * through the fake host (fake_host.h), whatever stores the objects: a
 * directory (tests/unit/plugins/test_backup_file.c), a real S3 server
 * (tests/integration/test_backup_s3.c), a real PostgreSQL server
 * (tests/integration/test_backup_postgres.c).
 *
 * A test file sets bc_plugin and bc_cfg (its target's config) before the
 * tests run and lists BC_CONTRACT_TESTS among its own. Each test gets a
 * fresh instance and a namespace of its own ("t<N>/"): objects of one test
 * never meet another's. The bc_* helpers run one operation to its end
 * (fh_run_work) and check the rules of every callback: not from inside the
 * call, exactly once, on the loop, a one-line detail naming the target on
 * failure and none on success.
 *
 * Include from one test file only (it includes fake_host.h).
 */
#ifndef RD_TEST_BACKUP_CONTRACT_H
#define RD_TEST_BACKUP_CONTRACT_H

#include "fake_host.h"

#define BC_FN static __attribute__((unused))

static const char *bc_plugin;    /* "file", "s3", "postgres" */
static const char *(*bc_cfg)[2]; /* the instance's config rows */
static char bc_ns[32];           /* this test's namespace, "t<N>/" */
static unsigned bc_seq;

/* What one operation called back with. */
struct bc_result {
    int calls;
    int status;
    char detail[1024];
    bool had_detail;
    unsigned char *buf; /* read: a copy */
    size_t len;
    char **names; /* list: copies */
    uint64_t *sizes;
    size_t n;
};

static bool bc_in_call; /* an operation of the plugin is being called */

static void bc_result_free(struct bc_result *r)
{
    free(r->buf);
    for (size_t i = 0; i < r->n; i++)
        free(r->names[i]);
    free(r->names);
    free(r->sizes);
    memset(r, 0, sizeof *r);
}

static void bc_check_detail(struct bc_result *r, int status, const char *detail)
{
    if (bc_in_call)
        fail_msg("a %s callback fired from inside the call that started it", bc_plugin);
    if (!pthread_equal(pthread_self(), g_fh.loop_thread))
        fail_msg("a %s callback fired off the loop", bc_plugin);
    r->calls++;
    r->status = status;
    r->had_detail = detail != NULL;
    snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "");
    if (status == 0 && detail != NULL)
        fail_msg("%s: a detail on success: %s", bc_plugin, detail);
    if (detail != NULL) {
        if (strncmp(detail, bc_plugin, strlen(bc_plugin)) != 0 || detail[strlen(bc_plugin)] != ' ')
            fail_msg("detail does not start with the target's name '%s': %s", bc_plugin, detail);
        if (strchr(detail, '\n'))
            fail_msg("detail of more than one line: %s", detail);
    }
}

static void bc_done_cb(void *data, int status, const char *detail)
{
    struct bc_result *r = data;
    bc_check_detail(r, status, detail);
    if (status != 0 && detail == NULL)
        fail_msg("%s: failure %d without a detail", bc_plugin, status);
}

static void bc_read_cb(void *data, int status, const void *buf, size_t len)
{
    struct bc_result *r = data;
    bc_check_detail(r, status, NULL);
    if (status == 0) {
        assert_true(buf != NULL || len == 0);
        r->buf = malloc(len ? len : 1);
        assert_non_null(r->buf);
        if (len)
            memcpy(r->buf, buf, len);
        r->len = len;
    }
}

static void bc_list_cb(void *data, int status, const char *const *names, const uint64_t *sizes,
                       size_t n, const char *detail)
{
    struct bc_result *r = data;
    bc_check_detail(r, status, detail);
    if (status != 0) {
        assert_int_equal(n, 0);
        if (detail == NULL)
            fail_msg("%s: list failure %d without a detail", bc_plugin, status);
        return;
    }
    r->names = calloc(n ? n : 1, sizeof *r->names);
    r->sizes = calloc(n ? n : 1, sizeof *r->sizes);
    assert_true(r->names && r->sizes);
    for (size_t i = 0; i < n; i++) {
        r->names[i] = strdup(names[i]);
        r->sizes[i] = sizes[i];
        if (i > 0 && strcmp(names[i - 1], names[i]) >= 0)
            fail_msg("%s: list not in bytewise order: '%s' before '%s'", bc_plugin, names[i - 1],
                     names[i]);
    }
    r->n = n;
}

static const struct rd_backup_ops *bc_ops(void)
{
    const struct rd_backup_ops *ops = g_fh.desc->ops;
    assert_int_equal(ops->version, RD_BACKUP_OPS_VERSION);
    assert_true(ops->size >= sizeof(struct rd_backup_ops));
    return ops;
}

/* The operation started (rv 0) calls back once, after the call, in fh_run_work. */
static void bc_finish(int rv, struct bc_result *r)
{
    if (rv != 0)
        fail_msg("%s: the call returned %d (%s)", bc_plugin, rv, rd_err_name(rv));
    assert_int_equal(r->calls, 0);
    fh_run_work();
    assert_int_equal(r->calls, 1);
}

/* `name` in this test's namespace (static buffer, one at a time). */
BC_FN const char *bc_name(const char *name)
{
    static char buf[2][512];
    static int i;
    i ^= 1;
    snprintf(buf[i], sizeof buf[i], "%s%s", bc_ns, name);
    return buf[i];
}

/* Writes `len` bytes as `name` (a full object name); the callback's status. */
BC_FN int bc_write_full(const char *name, const void *buf, size_t len, struct bc_result *r)
{
    memset(r, 0, sizeof *r);
    bc_in_call = true;
    int rv = bc_ops()->write(g_fh.state, name, buf, len, bc_done_cb, r);
    bc_in_call = false;
    bc_finish(rv, r);
    return r->status;
}

BC_FN int bc_write(const char *name, const void *buf, size_t len)
{
    struct bc_result r;
    int st = bc_write_full(bc_name(name), buf, len, &r);
    if (st != 0)
        print_message("%s write %s: %d %s\n", bc_plugin, name, st, r.detail);
    return st;
}

BC_FN int bc_write_str(const char *name, const char *text)
{
    return bc_write(name, text, strlen(text));
}

/* Reads `name` (in the namespace) into r (bc_result_free it). */
BC_FN int bc_read(const char *name, struct bc_result *r)
{
    memset(r, 0, sizeof *r);
    bc_in_call = true;
    int rv = bc_ops()->read(g_fh.state, bc_name(name), bc_read_cb, r);
    bc_in_call = false;
    bc_finish(rv, r);
    return r->status;
}

BC_FN int bc_remove(const char *name, struct bc_result *r)
{
    memset(r, 0, sizeof *r);
    bc_in_call = true;
    int rv = bc_ops()->remove(g_fh.state, bc_name(name), bc_done_cb, r);
    bc_in_call = false;
    bc_finish(rv, r);
    return r->status;
}

/* Lists `prefix` (in the namespace) into r; names come back without the
 * namespace (stripped here). */
BC_FN int bc_list(const char *prefix, struct bc_result *r)
{
    memset(r, 0, sizeof *r);
    bc_in_call = true;
    int rv = bc_ops()->list(g_fh.state, bc_name(prefix), bc_list_cb, r);
    bc_in_call = false;
    bc_finish(rv, r);
    size_t ns = strlen(bc_ns);
    for (size_t i = 0; i < r->n; i++) {
        assert_memory_equal(r->names[i], bc_ns, ns);
        memmove(r->names[i], r->names[i] + ns, strlen(r->names[i]) - ns + 1);
    }
    return r->status;
}

/* Asserts the object holds exactly `len` bytes `want`. */
BC_FN void bc_assert_object(const char *name, const void *want, size_t len)
{
    struct bc_result r;
    int st = bc_read(name, &r);
    if (st != 0)
        fail_msg("%s read %s: %d (%s)", bc_plugin, name, st, rd_err_name(st));
    assert_int_equal(r.len, len);
    if (len)
        assert_memory_equal(r.buf, want, len);
    bc_result_free(&r);
}

BC_FN void bc_assert_absent(const char *name)
{
    struct bc_result r;
    assert_int_equal(bc_read(name, &r), RD_ENOTFOUND);
    assert_null(r.buf);
    bc_result_free(&r);
}

/* ---- setup ----------------------------------------------------------------------- */

/* A fresh instance of the target and a namespace of its own. */
BC_FN int bc_setup(void **state)
{
    (void)state;
    snprintf(bc_ns, sizeof bc_ns, "t%u/", ++bc_seq);
    int rv = fh_init(bc_plugin, "target", bc_cfg);
    if (rv != 0) {
        print_error("%s init: %d %s\n", bc_plugin, rv, g_fh.error);
        return -1;
    }
    assert_int_equal(g_fh.desc->kind, RD_PLUGIN_BACKUP);
    fh_start();
    fh_run_work(); /* what start() queued */
    return 0;
}

/* Stops the instance as the host does (unless the test did) and destroys it. */
BC_FN int bc_teardown(void **state)
{
    (void)state;
    if (!g_fh.desc)
        return 0;
    if (!g_fh.stopping)
        fh_stop(true);
    fh_run_work();
    assert_int_equal(g_fh.done_calls, 1);
    fh_destroy();
    return 0;
}

/* ---- the contract ------------------------------------------------------------------- */

/* Bytes 0-255 over and over (NULs and high bytes included), `n` long. */
static unsigned char *bc_bytes(size_t n, unsigned seed)
{
    unsigned char *b = malloc(n ? n : 1);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 7 + seed + (i >> 8));
    return b;
}

static void bc_test_write_read(void **state)
{
    (void)state;
    unsigned char *b = bc_bytes(70000, 1);
    assert_int_equal(bc_write("backups/1.img", b, 70000), 0);
    bc_assert_object("backups/1.img", b, 70000);
    /* Written as a copy: the caller's buffer may change right after the call. */
    struct bc_result r;
    memset(&r, 0, sizeof r);
    int rv = bc_ops()->write(g_fh.state, bc_name("backups/2.img"), b, 100, bc_done_cb, &r);
    unsigned char *orig = bc_bytes(100, 1);
    memset(b, 0xee, 100);
    bc_finish(rv, &r);
    assert_int_equal(r.status, 0);
    bc_assert_object("backups/2.img", orig, 100);
    free(orig);
    free(b);
}

static void bc_test_overwrite(void **state)
{
    (void)state;
    assert_int_equal(bc_write_str("backups/m.json", "{\"v\":1,\"long\":\"xxxxxxxxxxxx\"}"), 0);
    assert_int_equal(bc_write_str("backups/m.json", "{\"v\":2}"), 0);
    bc_assert_object("backups/m.json", "{\"v\":2}", 7);
    struct bc_result r;
    assert_int_equal(bc_list("backups/", &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.names[0], "backups/m.json");
    assert_int_equal(r.sizes[0], 7);
    bc_result_free(&r);
}

static void bc_test_empty_and_large(void **state)
{
    (void)state;
    assert_int_equal(bc_write("empty", "", 0), 0);
    bc_assert_object("empty", "", 0);
    size_t big = 8u << 20;
    unsigned char *b = bc_bytes(big, 3);
    assert_int_equal(bc_write("big.img", b, big), 0);
    bc_assert_object("big.img", b, big);
    struct bc_result r;
    assert_int_equal(bc_list("", &r), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.names[0], "big.img");
    assert_int_equal(r.sizes[0], big);
    assert_string_equal(r.names[1], "empty");
    assert_int_equal(r.sizes[1], 0);
    bc_result_free(&r);
    free(b);
}

static void bc_test_read_absent(void **state)
{
    (void)state;
    struct bc_result r;
    assert_int_equal(bc_read("backups/none.img", &r), RD_ENOTFOUND);
    assert_null(r.buf);
    bc_result_free(&r);
    assert_int_equal(bc_write_str("backups/some.img", "x"), 0);
    bc_assert_absent("backups/some.im");
    bc_assert_absent("backups/some.img.json");
}

static void bc_test_remove(void **state)
{
    (void)state;
    struct bc_result r;
    assert_int_equal(bc_write_str("archive/1-2.zst", "segment"), 0);
    assert_int_equal(bc_write_str("archive/3-4.zst", "segment2"), 0);
    assert_int_equal(bc_remove("archive/1-2.zst", &r), 0);
    assert_false(r.had_detail);
    bc_assert_absent("archive/1-2.zst");
    bc_assert_object("archive/3-4.zst", "segment2", 8);
    /* Absent: removed already, or never there. */
    assert_int_equal(bc_remove("archive/1-2.zst", &r), 0);
    assert_int_equal(bc_remove("never/there", &r), 0);
    assert_int_equal(bc_list("archive/", &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.names[0], "archive/3-4.zst");
    bc_result_free(&r);
}

static void bc_test_list(void **state)
{
    (void)state;
    /* Written out of order; '-' < '.' < '/' < 'B' < 'Z' < '_' < 'x' bytewise,
     * an order no natural-language collation keeps. */
    static const char *const names[] = {"a/yB",  "a/x", "a/y/1", "b/1",   "a/Z",
                                        "a/y.1", "a_b", "axb",   "a/y-1", "a/y/2/3"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char body[32];
        memset(body, 'o', sizeof body);
        assert_int_equal(bc_write(names[i], body, i + 1), 0);
    }
    struct bc_result r;
    static const char *const under_a[] = {"a/Z",   "a/x",     "a/y-1", "a/y.1",
                                          "a/y/1", "a/y/2/3", "a/yB"};
    static const uint64_t under_a_sizes[] = {5, 2, 9, 6, 3, 10, 1};
    assert_int_equal(bc_list("a/", &r), 0);
    assert_int_equal(r.n, 7);
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(r.names[i], under_a[i]);
        assert_int_equal(r.sizes[i], under_a_sizes[i]);
    }
    bc_result_free(&r);

    /* A prefix that ends inside a component. */
    assert_int_equal(bc_list("a/y", &r), 0);
    assert_int_equal(r.n, 5);
    assert_string_equal(r.names[0], "a/y-1");
    assert_string_equal(r.names[4], "a/yB");
    bc_result_free(&r);
    assert_int_equal(bc_list("a/y/", &r), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.names[0], "a/y/1");
    assert_string_equal(r.names[1], "a/y/2/3");
    bc_result_free(&r);

    /* '_' is a character of names, not a wildcard. */
    assert_int_equal(bc_list("a_", &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.names[0], "a_b");
    bc_result_free(&r);

    /* Everything in the namespace, then nothing. */
    assert_int_equal(bc_list("", &r), 0);
    assert_int_equal(r.n, 10);
    assert_string_equal(r.names[0], "a/Z");
    assert_string_equal(r.names[7], "a_b");
    assert_string_equal(r.names[8], "axb");
    assert_string_equal(r.names[9], "b/1");
    bc_result_free(&r);
    assert_int_equal(bc_list("c", &r), 0);
    assert_int_equal(r.n, 0);
    bc_result_free(&r);
    assert_int_equal(bc_list("a/x/", &r), 0);
    assert_int_equal(r.n, 0);
    bc_result_free(&r);
}

/* A refused name or prefix: RD_EINVAL from the call, nothing queued, no callback. */
static void bc_refused(const char *name)
{
    const struct rd_backup_ops *ops = bc_ops();
    struct bc_result r;
    memset(&r, 0, sizeof r);
    size_t queued = g_fh.n_work;
    assert_int_equal(ops->write(g_fh.state, name, "x", 1, bc_done_cb, &r), RD_EINVAL);
    assert_int_equal(ops->read(g_fh.state, name, bc_read_cb, &r), RD_EINVAL);
    assert_int_equal(ops->remove(g_fh.state, name, bc_done_cb, &r), RD_EINVAL);
    assert_int_equal(g_fh.n_work, queued);
    fh_run_work();
    assert_int_equal(r.calls, 0);
}

static void bc_test_names_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",    "/abs",  "a/../b", "..",     "../up",     "a/..",        "a//b",        "trailing/",
        "./a", "a/./b", ".",      "sp ace", "tab\t",     "uni\xc3\xa9", "back\\slash", "a%b",
        "a*b", "a?b",   "a:b",    "a+b",    "new\nline", "quo\"te",     "a'b",         "~home",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        bc_refused(bad[i]);
    const struct rd_backup_ops *ops = bc_ops();
    struct bc_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(ops->write(g_fh.state, NULL, "x", 1, bc_done_cb, &r), RD_EINVAL);

    /* 255 bytes is the longest name (in components of 63 bytes: the longest
     * name, not the longest file name, is what this is about). */
    char name[300];
    size_t ns = strlen(bc_ns);
    memcpy(name, bc_ns, ns);
    for (size_t i = 0; i < 255 - ns; i++)
        name[ns + i] = i % 64 == 63 ? '/' : 'n';
    name[255] = '\0';
    assert_int_equal(bc_write_full(name, "long", 4, &r), 0);
    name[255] = 'n';
    name[256] = '\0';
    bc_refused(name);

    /* Prefixes: "" lists all; a bad one is refused. */
    static const char *const bad_prefix[] = {"/abs", "a/../", "..", "sp ace", "a%"};
    for (size_t i = 0; i < sizeof bad_prefix / sizeof *bad_prefix; i++) {
        memset(&r, 0, sizeof r);
        assert_int_equal(ops->list(g_fh.state, bad_prefix[i], bc_list_cb, &r), RD_EINVAL);
        assert_int_equal(g_fh.n_work, 0);
    }
    assert_int_equal(bc_list("", &r), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(strlen(r.names[0]) + ns, 255);
    bc_result_free(&r);
}

#define BC_CONCURRENT 10

static void bc_test_concurrent(void **state)
{
    (void)state;
    /* Started together, run on several threads at once (fh_run_work). */
    const struct rd_backup_ops *ops = bc_ops();
    struct bc_result r[BC_CONCURRENT];
    unsigned char *b[BC_CONCURRENT];
    char names[BC_CONCURRENT][64];
    memset(r, 0, sizeof r);
    for (int i = 0; i < BC_CONCURRENT; i++) {
        snprintf(names[i], sizeof names[i], "%sc/%02d", bc_ns, i);
        b[i] = bc_bytes(1000 + (size_t)i * 100, (unsigned)i);
        assert_int_equal(
            ops->write(g_fh.state, names[i], b[i], 1000 + (size_t)i * 100, bc_done_cb, &r[i]), 0);
    }
    fh_run_work();
    for (int i = 0; i < BC_CONCURRENT; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, 0);
    }
    memset(r, 0, sizeof r);
    for (int i = 0; i < BC_CONCURRENT; i++)
        assert_int_equal(ops->read(g_fh.state, names[i], bc_read_cb, &r[i]), 0);
    fh_run_work();
    for (int i = 0; i < BC_CONCURRENT; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, 0);
        assert_int_equal(r[i].len, 1000 + (size_t)i * 100);
        assert_memory_equal(r[i].buf, b[i], r[i].len);
        bc_result_free(&r[i]);
        free(b[i]);
    }
    struct bc_result l;
    assert_int_equal(bc_list("c/", &l), 0);
    assert_int_equal(l.n, BC_CONCURRENT);
    bc_result_free(&l);
}

static void bc_test_stop_waits(void **state)
{
    (void)state;
    /* stop() with an operation in flight: done() only once it called back;
     * nothing new is accepted meanwhile. */
    const struct rd_backup_ops *ops = bc_ops();
    struct bc_result r;
    memset(&r, 0, sizeof r);
    assert_int_equal(ops->write(g_fh.state, bc_name("late.img"), "late", 4, bc_done_cb, &r), 0);
    fh_stop(true);
    assert_int_equal(g_fh.done_calls, 0);
    struct bc_result r2;
    memset(&r2, 0, sizeof r2);
    assert_int_equal(ops->write(g_fh.state, bc_name("later.img"), "x", 1, bc_done_cb, &r2),
                     RD_ESHUTDOWN);
    assert_int_equal(ops->read(g_fh.state, bc_name("late.img"), bc_read_cb, &r2), RD_ESHUTDOWN);
    assert_int_equal(ops->list(g_fh.state, "", bc_list_cb, &r2), RD_ESHUTDOWN);
    fh_run_work();
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r2.calls, 0);
    assert_int_equal(g_fh.done_calls, 1);
}

#define BC_TEST(f) cmocka_unit_test_setup_teardown(f, bc_setup, bc_teardown)

#define BC_CONTRACT_TESTS                                                                          \
    BC_TEST(bc_test_write_read), BC_TEST(bc_test_overwrite), BC_TEST(bc_test_empty_and_large),     \
        BC_TEST(bc_test_read_absent), BC_TEST(bc_test_remove), BC_TEST(bc_test_list),              \
        BC_TEST(bc_test_names_refused), BC_TEST(bc_test_concurrent), BC_TEST(bc_test_stop_waits)

#endif
