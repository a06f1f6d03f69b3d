/*
 * A full disk: the data directory lives on a small ext4 filesystem (a loop
 * image this test makes and mounts), which is then filled up. Writes must
 * fail with 507 no_space naming the directory, the engine must stay up, and
 * writes must resume once space is freed. Every acknowledged registration
 * must survive a kill -9 afterwards. Needs root (CAP_SYS_ADMIN, to mount):
 * without it the test says so and exits 77, which ctest reports as skipped.
 * As root, a loop image that cannot be made or mounted is a failure: this is
 * the only test of the 507 no_space path, and it must not pass unseen.
 */
#include "cmocka_all.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_metrics.h"
#include "rdt_ctest.h"

#define MAX_NODES 4000

static struct rdt_proc proc;
static char image[400];
static bool mounted;

static const char yaml[] = "storage:\n"
                           "  segment_size: 4MiB\n"
                           "  snapshot_threshold: 256\n"
                           "  snapshot_trailing: 16\n"
                           "fault_tolerance:\n"
                           "  detection:\n"
                           "    heartbeat_interval: 30s\n";

static int run(char *const argv[])
{
    char *out = NULL, *err = NULL;
    int rc = rdt_run(argv, 30000, &out, &err);
    if (rc != 0)
        fprintf(stderr, "test_full_disk: %s failed (%d): %s%s\n", argv[0], rc, out ? out : "",
                err ? err : "");
    free(out);
    free(err);
    return rc;
}

/* True when this process may mount: root with CAP_SYS_ADMIN in effect (not,
 * say, root in a container that dropped it). */
static bool may_mount(void)
{
    if (geteuid() != 0)
        return false;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return true; /* no way to tell: let mount say */
    char line[256];
    uint64_t caps = UINT64_MAX;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "CapEff: %" SCNx64, &caps) == 1)
            break;
    fclose(f);
    return (caps >> 21) & 1u; /* CAP_SYS_ADMIN */
}

static int setup(void **state)
{
    if (rdt_proc_prepare(&proc) != 0)
        return -1;
    snprintf(image, sizeof(image), "%s/disk.img", proc.dir);
    int fd = open(image, O_CREAT | O_WRONLY, 0600);
    if (fd < 0 || ftruncate(fd, 40 << 20) != 0)
        return -1;
    close(fd);
    char *mkfs[] = {"/sbin/mkfs.ext4", "-q", "-F", image, NULL};
    char *mount[] = {"/bin/mount", "-o", "loop", image, proc.data_dir, NULL};
    if (run(mkfs) != 0 || run(mount) != 0) {
        fprintf(stderr, "test_full_disk: FAILED: running as root but cannot make and mount a loop "
                        "ext4 image (are loop devices available?)\n");
        return -1;
    }
    mounted = true;
    if (rdt_proc_start(&proc, yaml) != 0 || rdt_wait_ready(&proc, 15000) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    if (proc.pid > 0)
        rdt_proc_kill9(&proc);
    if (mounted) {
        char *umount[] = {"/bin/umount", proc.data_dir, NULL};
        run(umount);
    }
    rdt_proc_cleanup(&proc);
    return 0;
}

/* Writes zeros into `path` until the filesystem is full. */
static void fill(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char block[1 << 16];
    for (;;) {
        ssize_t n = write(fd, block, sizeof(block));
        if (n < 0) {
            assert_int_equal(errno, ENOSPC);
            break;
        }
    }
    fsync(fd);
    close(fd);
}

/* A registration carrying ~16 KiB of labels, so the log fills fast. */
static long do_register(int i, struct rdt_resp *r)
{
    static char body[20000];
    char pad[256];
    memset(pad, 'x', 250);
    pad[250] = '\0';
    int n = snprintf(body, sizeof(body), "{\"node_id\":\"disk-%05d\",\"labels\":{", i);
    for (int l = 0; l < 64; l++)
        n += snprintf(body + n, sizeof(body) - (size_t)n, "%s\"l%02d\":\"%s\"", l ? "," : "", l,
                      pad);
    snprintf(body + n, sizeof(body) - (size_t)n, "}}");
    assert_int_equal(rdt_post(&proc, RDT_H1, "/api/v1/nodes", body, r), 0);
    return r->status;
}

static void test_full_disk_refuses_writes_and_loses_nothing(void **state)
{
    assert_true(mounted);
    static bool acked[MAX_NODES];
    char filler[512];
    snprintf(filler, sizeof(filler), "%s/filler", proc.data_dir);
    fill(filler);

    int full = 0, created = 0, i = 0;
    for (; i < MAX_NODES && full < 20; i++) {
        struct rdt_resp r = {0};
        long status = do_register(i, &r);
        if (status == 201) {
            acked[i] = true;
            created++;
        } else {
            assert_int_equal(status, 507);
            assert_string_equal(rdt_err_code(&r), "no_space");
            const char *msg = json_string_value(rdt_json_path(r.json, "error.message"));
            assert_non_null(msg);
            assert_non_null(strstr(msg, proc.data_dir));
            full++;
        }
        rdt_resp_free(&r);
    }
    assert_int_equal(full, 20); /* the disk did fill up within MAX_NODES writes */

    struct rdt_resp h = {0};
    assert_int_equal(rdt_get(&proc, RDT_H2, "/health", &h), 0);
    assert_int_equal(h.status, 200);
    rdt_resp_free(&h);
    /* Counted as what they were, server errors (the availability alert rule
     * reads status=~"5.."): at least the 20 refusals. */
    assert_true(rdt_metric(&proc, "recoveryd_http_requests_total{route=\"nodes_register\","
                                  "status=\"507\"}") >= 20);

    /* Free the space: writes resume (await it, bounded). */
    assert_int_equal(unlink(filler), 0);
    int64_t deadline = rdt_now_ms() + 10000;
    bool resumed = false;
    for (; i < MAX_NODES && !resumed && rdt_now_ms() < deadline; i++) {
        struct rdt_resp r = {0};
        long status = do_register(i, &r);
        if (status == 201) {
            acked[i] = resumed = true;
            created++;
        } else {
            assert_int_equal(status, 507);
            rdt_sleep_ms(20);
        }
        rdt_resp_free(&r);
    }
    assert_true(resumed);

    /* Nothing acknowledged is lost, even across kill -9. */
    assert_int_equal(rdt_proc_kill9(&proc), 0);
    assert_int_equal(rdt_proc_restart(&proc), 0);
    assert_int_equal(rdt_wait_ready(&proc, 15000), 0);
    int found = 0;
    for (int k = 0; k < i; k++) {
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/nodes/disk-%05d", k);
        struct rdt_resp r = {0};
        assert_int_equal(rdt_get(&proc, RDT_H1, path, &r), 0);
        if (acked[k]) {
            assert_int_equal(r.status, 200);
            found++;
        }
        rdt_resp_free(&r);
    }
    assert_int_equal(found, created);
    fprintf(stderr,
            "test_full_disk: %d acknowledged, %d refused with 507, all %d present after kill -9\n",
            created, full, found);
}

int main(void)
{
    if (!may_mount()) {
        fprintf(stderr, "SKIPPED test_full_disk: needs root (CAP_SYS_ADMIN) to mount a loop "
                        "filesystem\n");
        return RDT_EXIT_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_disk_refuses_writes_and_loses_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
