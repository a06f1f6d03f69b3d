/*
 * The file backup target (build/plugins/file.so) against the fake host: the
 * contract every target keeps (backup_contract.h) on a temporary directory,
 * then what is the file target's own: the layout and modes on disk, a write
 * that fails midway (a file size limit, a name that is a directory, a full
 * file system) leaving no temporary file and the old object intact,
 * temporary files ignored and refused as names, a relative dir, a missing
 * dir, config errors.
 *
 * The full file system is a small tmpfs this test mounts: that one case
 * needs root (CAP_SYS_ADMIN) and is skipped without it (the test then exits
 * 77 if nothing failed); as root, a mount that fails is a failure.
 */
#include "backup_contract.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"

static char root[512]; /* this run's temporary directory */
static char dir[600];  /* the target's dir: root/backups (made by the plugin) */
static const char *cfg[][2] = {{"dir", dir}, {NULL, NULL}};
static bool skipped;
static char mounted[700]; /* the tmpfs of test_full_file_system while mounted */

/* The path of object `name` of this test. */
static const char *obj_path(const char *name)
{
    static char p[1200];
    snprintf(p, sizeof p, "%s/%s%s", dir, bc_ns, name);
    return p;
}

/* Files under `path` whose name starts with ".rd-tmp-", recursively. */
static int temp_files(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[1200];
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        if (strncmp(de->d_name, ".rd-tmp-", 8) == 0)
            n++;
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            n += temp_files(sub);
    }
    closedir(d);
    return n;
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* ---- layout -------------------------------------------------------------------------- */

static void test_layout_and_modes(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(stat(dir, &st), 0); /* made at start */
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);

    assert_int_equal(bc_write_str("backups/x/1.img", "image"), 0);
    assert_int_equal(stat(obj_path("backups/x/1.img"), &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 5);
    assert_int_equal(stat(obj_path("backups/x"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(temp_files(dir), 0);

    /* The bytes are the file's, as written. */
    FILE *f = fopen(obj_path("backups/x/1.img"), "r");
    assert_non_null(f);
    char buf[16] = "";
    assert_int_equal(fread(buf, 1, sizeof buf, f), 5);
    fclose(f);
    assert_memory_equal(buf, "image", 5);
    assert_true(g_fh.n_logs > 0);
    assert_string_equal(g_fh.logs[0].event, "backup_dir");
}

/* ---- failed writes ---------------------------------------------------------------- */

static void test_failed_write_keeps_old_object(void **state)
{
    (void)state;
    unsigned char *old = bc_bytes(1000, 9);
    assert_int_equal(bc_write("backups/big.img", old, 1000), 0);

    /* A file size limit makes write() fail midway through the new object,
     * after 64 KiB of it were written to the temporary file. */
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = 64 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    size_t n = 1u << 20;
    unsigned char *b = bc_bytes(n, 4);
    struct bc_result r;
    int st = bc_write_full(bc_name("backups/big.img"), b, n, &r);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, prev);

    assert_int_equal(st, RD_ETOOLARGE);
    print_message("detail: %s\n", r.detail);
    assert_non_null(strstr(r.detail, "file write "));
    assert_non_null(strstr(r.detail, "backups/big.img"));
    assert_non_null(strstr(r.detail, strerror(EFBIG)));
    assert_int_equal(temp_files(dir), 0);
    bc_assert_object("backups/big.img", old, 1000);
    free(b);
    free(old);
}

static void test_name_that_is_a_directory(void **state)
{
    (void)state;
    struct bc_result r;
    assert_int_equal(bc_write_str("d/e", "inner"), 0);
    /* "d" is a directory: the rename fails, nothing is left behind. */
    assert_int_equal(bc_write_full(bc_name("d"), "outer", 5, &r), RD_EIO);
    print_message("detail: %s\n", r.detail);
    assert_non_null(strstr(r.detail, "file write "));
    assert_non_null(strstr(r.detail, "rename"));
    assert_non_null(strstr(r.detail, strerror(EISDIR)));
    assert_int_equal(temp_files(dir), 0);
    bc_assert_object("d/e", "inner", 5);
    bc_assert_absent("d"); /* a directory is no object */
    assert_int_equal(bc_remove("d", &r), 0);
    bc_assert_object("d/e", "inner", 5);

    /* "d/e" is an object: "d/e/f" cannot be made under it. */
    assert_int_equal(bc_write_full(bc_name("d/e/f"), "deeper", 6, &r), RD_EIO);
    assert_non_null(strstr(r.detail, "create directory"));
    assert_non_null(strstr(r.detail, strerror(ENOTDIR)));
    bc_assert_object("d/e", "inner", 5);
    bc_assert_absent("d/e/f");
}

/* True when this process may mount: root with CAP_SYS_ADMIN in effect. */
static bool may_mount(void)
{
    if (geteuid() != 0)
        return false;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return true;
    char line[256];
    uint64_t caps = UINT64_MAX;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "CapEff: %" SCNx64, &caps) == 1)
            break;
    fclose(f);
    return (caps >> 21) & 1u; /* CAP_SYS_ADMIN */
}

static void test_full_file_system(void **state)
{
    (void)state;
    if (!may_mount()) {
        print_message("skipped: mounting a small tmpfs needs root (CAP_SYS_ADMIN)\n");
        skipped = true;
        skip();
    }
    char small[700], sdir[800];
    snprintf(small, sizeof small, "%s/small", root);
    assert_int_equal(mkdir(small, 0700), 0);
    if (mount("rd-test", small, "tmpfs", 0, "size=256k,mode=0700") != 0)
        fail_msg("running as root but cannot mount a tmpfs on %s: %s", small, strerror(errno));
    snprintf(mounted, sizeof mounted, "%s", small);
    snprintf(sdir, sizeof sdir, "%s/b", small);
    const char *scfg[][2] = {{"dir", sdir}, {NULL, NULL}};
    /* An instance of its own, on the small file system. */
    assert_int_equal(bc_teardown(NULL), 0);
    assert_int_equal(fh_init("file", "small", scfg), 0);
    fh_start();
    fh_run_work();

    unsigned char *old = bc_bytes(10000, 5);
    assert_int_equal(bc_write("x.img", old, 10000), 0);
    size_t n = 1u << 20;
    unsigned char *b = bc_bytes(n, 6);
    struct bc_result r;
    int st = bc_write_full(bc_name("x.img"), b, n, &r);
    print_message("detail: %s\n", r.detail);
    assert_int_equal(st, RD_ENOSPACE);
    assert_non_null(strstr(r.detail, "file write "));
    assert_non_null(strstr(r.detail, "x.img"));
    assert_non_null(strstr(r.detail, strerror(ENOSPC)));
    assert_int_equal(temp_files(sdir), 0);
    bc_assert_object("x.img", old, 10000);
    /* Space again: the same write succeeds. */
    struct bc_result rr;
    assert_int_equal(bc_remove("x.img", &rr), 0);
    assert_int_equal(bc_write("x.img", b, 200000), 0);
    bc_assert_object("x.img", b, 200000);
    free(b);
    free(old);

    fh_stop(true);
    fh_run_work();
    fh_destroy();
    if (umount(small) != 0)
        fail_msg("umount %s: %s", small, strerror(errno));
    mounted[0] = '\0';
}

/* ---- temporary and foreign files ----------------------------------------------------- */

static void test_temp_and_foreign_files_ignored(void **state)
{
    (void)state;
    assert_int_equal(bc_write_str("a/real", "1"), 0);
    /* A crash mid-write leaves a temporary file; others leave their own. */
    put_file(obj_path(".rd-tmp-AbC123"), "partial");
    put_file(obj_path("a/.rd-tmp-XyZ789"), "partial");
    put_file(obj_path("has space"), "not ours");
    char lf[1200];
    snprintf(lf, sizeof lf, "%s", obj_path("lost+found"));
    assert_int_equal(mkdir(lf, 0700), 0);
    put_file(obj_path("lost+found/x"), "not ours");
    char target[1200];
    snprintf(target, sizeof target, "%s", obj_path("a/real"));
    assert_int_equal(symlink(target, obj_path("a/link")), 0);

    struct bc_result r;
    assert_int_equal(bc_list("", &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.names[0], "a/real");
    bc_result_free(&r);

    /* Names the file target keeps for itself. */
    assert_int_equal(bc_ops()->write(g_fh.state, bc_name(".rd-tmp-x"), "x", 1, bc_done_cb, &r),
                     RD_EINVAL);
    assert_int_equal(bc_ops()->read(g_fh.state, bc_name("a/.rd-tmp-XyZ789"), bc_read_cb, &r),
                     RD_EINVAL);
    assert_int_equal(g_fh.n_work, 0);
    /* A name that only contains the marker is fine. */
    assert_int_equal(bc_write_str("a/x.rd-tmp-y", "ok"), 0);
}

static void test_missing_dir(void **state)
{
    (void)state;
    assert_int_equal(bc_write_str("k", "v"), 0);
    /* Someone removed the whole directory while running. */
    assert_int_equal(rdt_rmtree(dir), 0);
    struct bc_result r;
    assert_int_equal(bc_list("", &r), 0);
    assert_int_equal(r.n, 0);
    bc_result_free(&r);
    bc_assert_absent("k");
    assert_int_equal(bc_remove("k", &r), 0);
    /* Written again, it is made again. */
    assert_int_equal(bc_write_str("k", "v2"), 0);
    bc_assert_object("k", "v2", 2);
}

static void test_relative_dir(void **state)
{
    (void)state;
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(root), 0);
    const char *rcfg[][2] = {{"dir", "rel/backups/"}, {NULL, NULL}};
    assert_int_equal(bc_teardown(NULL), 0);
    assert_int_equal(fh_init("file", "rel", rcfg), 0);
    assert_int_equal(chdir(cwd), 0); /* resolved at init: the later cwd does not matter */
    fh_start();
    fh_run_work();
    assert_int_equal(bc_write_str("o", "relative"), 0);
    char p[1200];
    snprintf(p, sizeof p, "%s/rel/backups/%so", root, bc_ns);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 8);
    char real[PATH_MAX], want[PATH_MAX + 32];
    assert_non_null(realpath(root, real)); /* what getcwd() says in it */
    snprintf(want, sizeof want, "dir=%s/rel/backups", real);
    assert_string_equal(g_fh.logs[0].msg, want);
}

static void test_config_errors(void **state)
{
    (void)state;
    assert_int_equal(bc_teardown(NULL), 0);
    const char *none[][2] = {{NULL, NULL}};
    assert_int_equal(fh_init("file", "nodir", none), RD_ECONFIG);
    assert_non_null(strstr(g_fh.error, "dir"));
    fh_reset();
    const char *slash[][2] = {{"dir", "/"}, {NULL, NULL}};
    assert_int_equal(fh_init("file", "slash", slash), RD_ECONFIG);
    assert_non_null(strstr(g_fh.error, "root directory"));
    fh_reset();
    /* The key the host validates: declared, required. */
    const struct rd_plugin_descriptor *d = fh_load("file");
    assert_string_equal(d->keys[0].name, "dir");
    assert_int_equal(d->keys[0].type, RD_KEY_STRING);
    assert_null(d->keys[0].default_value);
    assert_null(d->keys[1].name);
}

/* ---- main ---------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (rdt_tmpdir(root, sizeof root) != 0)
        return -1;
    snprintf(dir, sizeof dir, "%s/backups", root);
    bc_plugin = "file";
    bc_cfg = cfg;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (mounted[0])
        umount2(mounted, MNT_DETACH);
    return rdt_rmtree(root);
}

#define T(f) cmocka_unit_test_setup_teardown(f, bc_setup, bc_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BC_CONTRACT_TESTS,
        T(test_layout_and_modes),
        T(test_failed_write_keeps_old_object),
        T(test_name_that_is_a_directory),
        T(test_full_file_system),
        T(test_temp_and_foreign_files_ignored),
        T(test_missing_dir),
        T(test_relative_dir),
        T(test_config_errors),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return rdt_exit_code(failed, skipped);
}
