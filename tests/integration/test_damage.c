/*
 * Damage on disk never loses acknowledged data silently (issue 11), on the
 * real binary with the damage of the issue made deterministic:
 *
 *   - 8 bytes flipped in the data of a batch a quarter into the last closed
 *     segment (after a clean stop);
 *   - kill -9 during writes, then 8 bytes flipped in a batch half-way into
 *     the open segment;
 *   - metadata1 and metadata2 deleted, or metadata1 zeroed.
 *
 * A single replica refuses to start (exit 1) with one line naming the file,
 * the entries lost and the commands in them (agents, tasks, checkpoints),
 * and the restore command, and changes nothing in its data directory;
 * --accept-data-loss starts it with an error line saying what was lost, the
 * damaged files kept in damaged-<time>/. A follower of three replicas under
 * writes, damaged the same ways, sets its state aside, asks the leader to
 * demote it, starts empty, catches up, is a voter again, and holds every
 * write acknowledged to the writer.
 */
#include "cmocka_all.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "rdt_ctest.h"

#define RUN_TIMEOUT_MS 15000

/* ---- the files ------------------------------------------------------------------ */

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

/* The batches of a segment file (libraft's format): offsets and entry counts. */
struct batches {
    size_t at[4096];
    uint64_t n[4096];
    unsigned count;
    uint64_t entries;
};

static void read_batches(const char *path, struct batches *out)
{
    size_t len;
    uint8_t *b = slurp(path, &len);
    memset(out, 0, sizeof(*out));
    assert_int_equal(le64(b), 1);
    size_t off = 8;
    while (off + 16 <= len && out->count < 4096) {
        uint64_t n = le64(b + off + 8);
        if (n == 0)
            break; /* an open segment's preallocated zeros */
        size_t size = 16 + 16 * n;
        for (uint64_t i = 0; i < n; i++)
            size += (uint32_t)b[off + 16 + 16 * i + 12] | (uint32_t)b[off + 16 + 16 * i + 13] << 8 |
                    (uint32_t)b[off + 16 + 16 * i + 14] << 16 |
                    (uint32_t)b[off + 16 + 16 * i + 15] << 24;
        out->at[out->count] = off;
        out->n[out->count++] = n;
        out->entries += n;
        off += size;
    }
    free(b);
}

/* Flips 8 bytes at `at`: the damage of the issue. */
static void flip8(const char *path, size_t at)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b[8];
    assert_int_equal(pread(fd, b, 8, (off_t)at), 8);
    for (int i = 0; i < 8; i++)
        b[i] ^= 0xff;
    assert_int_equal(pwrite(fd, b, 8, (off_t)at), 8);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

/* The closed segment with the highest first index (`name` gets its name). */
static void last_closed_segment(const char *raft, char name[64], uint64_t *first, uint64_t *end)
{
    DIR *d = opendir(raft);
    assert_non_null(d);
    struct dirent *e;
    *first = 0;
    while ((e = readdir(d)) != NULL) {
        unsigned long long a, b;
        int used = 0;
        if (sscanf(e->d_name, "%16llu-%16llu%n", &a, &b, &used) == 2 && used == 33 && a > *first) {
            *first = a;
            *end = b;
            snprintf(name, 64, "%s", e->d_name);
        }
    }
    closedir(d);
    assert_true(*first > 0);
}

/* The open segment holding entries (the lowest such open-N). */
static void open_segment_with_data(const char *raft, char name[64])
{
    DIR *d = opendir(raft);
    assert_non_null(d);
    struct dirent *e;
    unsigned long long best = 0;
    while ((e = readdir(d)) != NULL) {
        unsigned long long k;
        int used = 0;
        if (sscanf(e->d_name, "open-%llu%n", &k, &used) != 1 || (size_t)used != strlen(e->d_name))
            continue;
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", raft, e->d_name);
        uint8_t head[24] = {0};
        FILE *f = fopen(path, "rb");
        size_t got = f ? fread(head, 1, sizeof(head), f) : 0;
        if (f)
            fclose(f);
        if (got == sizeof(head) && le64(head) == 1 && le64(head + 16) > 0 &&
            (best == 0 || k < best)) {
            best = k;
            snprintf(name, 64, "%s", e->d_name);
        }
    }
    closedir(d);
    if (best == 0)
        fail_msg("no open segment with entries in %s", raft);
}

/* "name size mtime\n" of every file in raft/, and the mark's text: what a start changes. */
static char *state_of(const struct rdt_proc *p)
{
    char raft[400], path[700];
    snprintf(raft, sizeof(raft), "%s/raft", p->data_dir);
    struct dirent **names = NULL;
    int n = scandir(raft, &names, NULL, alphasort);
    assert_true(n >= 0);
    size_t cap = 8192 + (size_t)n * 320, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", raft, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && stat(path, &st) == 0)
            len += (size_t)snprintf(out + len, cap - len, "%s %lld %lld.%09ld\n", names[i]->d_name,
                                    (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                                    st.st_mtim.tv_nsec);
        free(names[i]);
    }
    free(names);
    for (int i = 1; i <= 2; i++) {
        snprintf(path, sizeof(path), "%s/acked%d", p->data_dir, i);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            len += fread(out + len, 1, cap - len - 1, f);
            out[len] = '\0';
            fclose(f);
        }
    }
    /* Nothing else appears in the data directory either (no damaged-*). */
    DIR *d = opendir(p->data_dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "damaged-", 8) == 0)
            len += (size_t)snprintf(out + len, cap - len, "%s\n", e->d_name);
    if (d)
        closedir(d);
    return out;
}

/* The newest snapshot's data file in `raft` (its name without ".meta"),
 * and its size; fails when there is none. */
static void newest_snapshot(const char *raft, char name[64], size_t *size)
{
    DIR *d = opendir(raft);
    assert_non_null(d);
    struct dirent *e;
    unsigned long long best = 0;
    name[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        unsigned long long t, i, ts;
        int used = 0;
        if (sscanf(e->d_name, "snapshot-%llu-%llu-%llu%n", &t, &i, &ts, &used) == 3 &&
            e->d_name[used] == '\0' && i > best) {
            best = i;
            snprintf(name, 64, "%s", e->d_name);
        }
    }
    closedir(d);
    if (name[0] == '\0')
        fail_msg("no snapshot in %s", raft);
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", raft, name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    *size = (size_t)st.st_size;
}

/* How many snapshots (data files with their .meta) `raft` holds. */
static unsigned count_snapshots(const char *raft)
{
    DIR *d = opendir(raft);
    assert_non_null(d);
    struct dirent *e;
    unsigned n = 0;
    while ((e = readdir(d)) != NULL) {
        unsigned long long t, i, ts;
        int used = 0;
        if (sscanf(e->d_name, "snapshot-%llu-%llu-%llu%n", &t, &i, &ts, &used) == 3 &&
            strcmp(e->d_name + used, ".meta") == 0)
            n++;
    }
    closedir(d);
    return n;
}

/*
 * Agents s-1, s-2, ... registered until `raft` holds `want` snapshots (at
 * least `min` agents): snapshots are taken by a forked child, later on a
 * loaded machine, so the count of writes alone does not say how many exist.
 */
static int register_until_snapshots(struct rdt_proc *p, int min, unsigned want)
{
    char raft[400], id[32];
    snprintf(raft, sizeof(raft), "%s/raft", p->data_dir);
    int i = 0;
    while (i < min || count_snapshots(raft) < want) {
        if (i >= 5000)
            fail_msg("%u snapshots wanted in %s, %u after %d writes", want, raft,
                     count_snapshots(raft), i);
        snprintf(id, sizeof(id), "s-%d", ++i);
        assert_int_equal(rdt_register(p, id, 1, NULL), 0);
    }
    return i;
}

/* The damaged-<time>/ directory of `p` (fails when there is none). */
static void damaged_dir(const struct rdt_proc *p, char *out, size_t cap)
{
    DIR *d = opendir(p->data_dir);
    assert_non_null(d);
    struct dirent *e;
    out[0] = '\0';
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "damaged-", 8) == 0)
            snprintf(out, cap, "%s/%s", p->data_dir, e->d_name);
    closedir(d);
    if (out[0] == '\0')
        fail_msg("no damaged-<time>/ directory in %s", p->data_dir);
}

static bool file_exists(const char *dir, const char *sub, const char *name)
{
    char path[900];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
    return stat(path, &st) == 0;
}

static void expect_in(const char *what, const char *text, const char *needle)
{
    if (text == NULL || strstr(text, needle) == NULL)
        fail_msg("%s should contain \"%s\"; it was:\n%s", what, needle, text ? text : "(null)");
}

/* The daemon's one "recoveryd: " line on stderr. */
static char *the_reason(const char *err)
{
    char *found = NULL;
    int n = 0;
    for (const char *l = err; l != NULL && *l != '\0';) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        if (strncmp(l, "recoveryd: ", 11) == 0) {
            n++;
            free(found);
            found = strndup(l, len);
        }
        l = end ? end + 1 : NULL;
    }
    if (n != 1)
        fail_msg("expected one \"recoveryd: ...\" line on stderr, got %d:\n%s", n, err);
    return found;
}

/*
 * Starts `p`'s binary on its data directory (without the harness: it must
 * refuse) and returns its reason line; the data directory must be as it
 * was, to the byte.
 */
/* `p`'s data directory is as state_of() saw it in `before` (freed). */
static void expect_unchanged(const struct rdt_proc *p, char *before)
{
    char *after = state_of(p);
    if (strcmp(before, after) != 0)
        fail_msg("the refused start changed %s:\nbefore:\n%safter:\n%s", p->data_dir, before,
                 after);
    free(before);
    free(after);
}

static char *expect_refused(struct rdt_proc *p)
{
    char *before = state_of(p);
    char *out = NULL, *err = NULL;
    int code = rdt_proc_run_once(p, NULL, rdt_ms(RUN_TIMEOUT_MS), &out, &err);
    if (code != 1)
        fail_msg("a damaged single replica started: exit %d, want 1\nstderr:\n%s", code,
                 err ? err : "");
    char *reason = the_reason(err);
    expect_in("stderr", err, "level=error comp=raft event=data_damaged");
    expect_in("stderr", err, "action=refused");
    if (strstr(err, "event=started") != NULL)
        fail_msg("raft started on a damaged directory:\n%s", err);
    expect_unchanged(p, before);
    free(out);
    free(err);
    expect_in("the reason", reason, p->data_dir);
    expect_in("the reason", reason, "nothing was changed");
    char restore[600];
    snprintf(restore, sizeof(restore),
             "move it aside (mv %s %s.damaged), then recoveryd restore --from <backup target URL> "
             "--data-dir %s --raft-address 127.0.0.1:%u (docs/backup.md, \"Restore\")",
             p->data_dir, p->data_dir, p->data_dir, (unsigned)p->raft_port);
    expect_in("the reason", reason, restore);
    expect_in("the reason", reason, "--accept-data-loss");
    return reason;
}

/* ---- single replica ---------------------------------------------------------- */

static const char *single_yaml = "fault_tolerance:\n"
                                 "  detection:\n"
                                 "    heartbeat_interval: 30s\n";

/* One replica started on `yaml`, in *state. */
static int start_single(void **state, const char *yaml)
{
    struct rdt_proc *p = calloc(1, sizeof(*p));
    *state = p;
    if (p == NULL || rdt_proc_start(p, yaml) != 0 || rdt_wait_ready(p, 15000) != 0) {
        if (p)
            rdt_proc_cleanup(p);
        free(p);
        *state = NULL;
        return -1;
    }
    return 0;
}

static int single_setup(void **state)
{
    return start_single(state, single_yaml);
}

static int single_teardown(void **state)
{
    struct rdt_proc *p = *state;
    if (p) {
        rdt_proc_cleanup(p);
        free(p);
    }
    return 0;
}

static bool has_agent(struct rdt_proc *p, const char *id)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/nodes/%s", id);
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
    long st = r.status;
    rdt_resp_free(&r);
    assert_true(st == 200 || st == 404);
    return st == 200;
}

/*
 * What an operator's agents write: agents d-1..d-20, 8 tasks placed on
 * d-1 with 3 checkpoint versions each, then agents d-21..d-40; all
 * acknowledged.
 */
static void write_workload(struct rdt_proc *p)
{
    char id[32];
    long long epoch = 0;
    assert_int_equal(rdt_register(p, "d-1", 64, &epoch), 0);
    for (int i = 2; i <= 20; i++) {
        snprintf(id, sizeof(id), "d-%d", i);
        assert_int_equal(rdt_register(p, id, 1, NULL), 0);
    }
    char tasks[8][64];
    for (int t = 0; t < 8; t++) {
        struct rdt_resp r = {0};
        assert_int_equal(rdt_post(p, RDT_H1, "/api/v1/tasks", "{\"payload\":{\"n\":1}}", &r), 0);
        assert_int_equal(r.status, 201);
        snprintf(tasks[t], sizeof(tasks[t]), "%s",
                 json_string_value(json_object_get(r.json, "task_id")));
        rdt_resp_free(&r);
    }
    for (int t = 0; t < 8; t++) {
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/tasks/%s", tasks[t]);
        long long attempt = 0;
        for (int64_t until = rdt_now_ms() + rdt_ms(10000); attempt == 0;) {
            struct rdt_resp r = {0};
            assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
            attempt = json_integer_value(json_object_get(r.json, "attempt"));
            rdt_resp_free(&r);
            if (attempt == 0) {
                assert_true(rdt_now_ms() < until);
                rdt_sleep_ms(10);
            }
        }
        for (int v = 1; v <= 3; v++) {
            char url[256], body[128];
            snprintf(url, sizeof(url), "%s/api/v1/tasks/%s/checkpoint", p->base_url, tasks[t]);
            snprintf(body, sizeof(body), "{\"attempt\":%lld,\"version\":%d,\"data\":{\"step\":%d}}",
                     attempt, v, v);
            struct rdt_resp r = {0};
            assert_int_equal(rdt_http(RDT_H1, "PUT", url, body, strlen(body), &r), 0);
            assert_int_equal(r.status, 200);
            rdt_resp_free(&r);
        }
    }
    for (int i = 21; i <= 40; i++) {
        snprintf(id, sizeof(id), "d-%d", i);
        assert_int_equal(rdt_register(p, id, 1, NULL), 0);
    }
}

/* --accept-data-loss: it starts, says what was lost in an error line, keeps the files. */
static char *start_accepting_loss(struct rdt_proc *p)
{
    p->errors_expected = true;
    snprintf(p->extra_arg, sizeof(p->extra_arg), "--accept-data-loss");
    assert_int_equal(rdt_proc_start(p, single_yaml), 0);
    assert_int_equal(rdt_wait_ready(p, 15000), 0);
    p->extra_arg[0] = '\0';
    char *log = rdt_proc_log(p);
    assert_non_null(log);
    expect_in("the log", log, "level=error comp=raft event=data_loss_accepted");
    return log;
}

/* The replica takes a write, and still holds it after a clean restart. */
static void takes_writes_and_restarts(struct rdt_proc *p)
{
    int code = -1;
    assert_int_equal(rdt_register(p, "after", 1, NULL), 0);
    assert_int_equal(rdt_proc_stop(p, &code), 0);
    assert_int_equal(code, 0);
    assert_int_equal(rdt_proc_restart(p), 0);
    assert_int_equal(rdt_wait_ready(p, 15000), 0);
    assert_true(has_agent(p, "after"));
}

static void test_single_flip_in_last_closed_segment(void **state)
{
    struct rdt_proc *p = *state;
    write_workload(p);
    int code = -1;
    assert_int_equal(rdt_proc_stop(p, &code), 0);
    assert_int_equal(code, 0);

    char raft[400], name[64], path[600];
    uint64_t first, end;
    snprintf(raft, sizeof(raft), "%s/raft", p->data_dir);
    last_closed_segment(raft, name, &first, &end);
    snprintf(path, sizeof(path), "%s/%s", raft, name);
    struct batches b;
    read_batches(path, &b);
    assert_true(b.count >= 8);
    assert_int_equal(b.entries, end - first + 1);
    /* 8 bytes in the data of the batch a quarter in. */
    unsigned k = b.count / 4;
    uint64_t lost_first = first;
    for (unsigned i = 0; i < k; i++)
        lost_first += b.n[i];
    flip8(path, b.at[k] + 16 + 16 * b.n[k] + 8);

    char *reason = expect_refused(p);
    char want[256];
    snprintf(want, sizeof(want),
             "raft/%s: the batch at byte %zu is damaged (data checksum mismatch)", name, b.at[k]);
    expect_in("the reason", reason, want);
    snprintf(want, sizeof(want), "entries %llu-%llu (%llu entries", (unsigned long long)lost_first,
             (unsigned long long)end, (unsigned long long)(end - lost_first + 1));
    expect_in("the reason", reason, want);
    expect_in("the reason", reason, "agent registrations");
    expect_in("the reason", reason, "checkpoint writes");
    expect_in("the reason", reason, "acknowledged to clients");
    fprintf(stderr, "refused: %s\n", reason);
    free(reason);

    char *log = start_accepting_loss(p);
    snprintf(want, sizeof(want), "lost_first=%llu lost_last=%llu", (unsigned long long)lost_first,
             (unsigned long long)end);
    expect_in("the log", log, want);
    free(log);
    char aside[700];
    damaged_dir(p, aside, sizeof(aside));
    assert_true(file_exists(aside, "raft", name));
    /* The loss is what it said: the first agents are there, the last is not. */
    assert_true(has_agent(p, "d-1"));
    assert_false(has_agent(p, "d-40"));
    /* Started again without the flag: nothing to complain about. */
    takes_writes_and_restarts(p);
}

/* Snapshots every 64 entries: the tests of a damaged snapshot. */
/* Snapshots at full speed (cpu_share 100%): a paced child (the default
 * 10%) can still be imaging when the writes end, and the log then still
 * holds what the newest snapshot covers, so its damage would lose nothing. */
static const char *single_snap_yaml = "storage:\n"
                                      "  snapshot_threshold: 64\n"
                                      "  snapshot_trailing: 16\n"
                                      "fault_tolerance:\n"
                                      "  detection:\n"
                                      "    heartbeat_interval: 30s\n"
                                      "  backup:\n"
                                      "    cpu_share: 100%\n";

static int single_snap_setup(void **state)
{
    return start_single(state, single_snap_yaml);
}

/*
 * 8 bytes flipped in the newest snapshot's data (its .meta intact, so
 * libraft would load it and fail with "persisted data is corrupted ()"):
 * the replica refuses, naming the snapshot and the restore; with
 * --accept-data-loss it starts from what is left (the older snapshot) and
 * keeps the damaged one aside.
 */
static void test_single_flip_in_snapshot(void **state)
{
    struct rdt_proc *p = *state;
    /* Two snapshots: the test is about starting from the older one. */
    int written = register_until_snapshots(p, 300, 2);
    int code = -1;
    assert_int_equal(rdt_proc_stop(p, &code), 0);
    assert_int_equal(code, 0);
    char raft[400], name[64], path[600];
    size_t size;
    snprintf(raft, sizeof(raft), "%s/raft", p->data_dir);
    newest_snapshot(raft, name, &size);
    snprintf(path, sizeof(path), "%s/%s", raft, name);
    assert_true(size > 64);
    flip8(path, size / 2);

    char *reason = expect_refused(p);
    char want[256];
    snprintf(want, sizeof(want), "raft/%s: the snapshot is damaged (snapshot: checksum", name);
    expect_in("the reason", reason, want);
    /* Whether entries after the older snapshot were compacted away depends
     * on when the forked snapshots finished: the report says which. */
    bool lossless = strstr(reason, "no entry would be lost") != NULL;
    if (!lossless)
        expect_in("the reason", reason, "acknowledged to clients");
    expect_in("the reason", reason, "recoveryd restore --from");
    fprintf(stderr, "refused: %s\n", reason);
    free(reason);

    char *log = start_accepting_loss(p);
    snprintf(want, sizeof(want), "event=data_loss_accepted file=raft/%s", name);
    expect_in("the log", log, want);
    free(log);
    char aside[700];
    damaged_dir(p, aside, sizeof(aside));
    assert_true(file_exists(aside, "raft", name));
    /* The oldest agents are in the older snapshot (and, when the log after
     * it was whole, the newest too); the damaged one is gone from the raft
     * directory, and the replica takes writes again. */
    assert_true(has_agent(p, "s-1"));
    snprintf(want, sizeof(want), "s-%d", written);
    assert_true(has_agent(p, want) == lossless);
    assert_false(file_exists(p->data_dir, "raft", name));
    takes_writes_and_restarts(p);
}

/*
 * The only snapshot damaged, and the log before it already compacted away:
 * nothing can be rebuilt, the configuration included. With
 * --accept-data-loss the single replica starts over from its configured
 * cluster (it is the only voter): it becomes leader, empty, and takes
 * writes (before, it came up as a follower of nobody, never ready).
 */
static void test_single_flip_in_only_snapshot(void **state)
{
    struct rdt_proc *p = *state;
    register_until_snapshots(p, 200, 1);
    int code = -1;
    assert_int_equal(rdt_proc_stop(p, &code), 0);
    assert_int_equal(code, 0);
    char raft[400], name[64], path[600];
    size_t size;
    snprintf(raft, sizeof(raft), "%s/raft", p->data_dir);
    /* Only the newest snapshot stays; the segments it covers are removed
     * as a compaction would have (those before its index). */
    newest_snapshot(raft, name, &size);
    unsigned long long t, snap_index, ts;
    assert_int_equal(sscanf(name, "snapshot-%llu-%llu-%llu", &t, &snap_index, &ts), 3);
    DIR *d = opendir(raft);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long a, b;
        int used = 0;
        bool older_snap =
            strncmp(e->d_name, "snapshot-", 9) == 0 && strncmp(e->d_name, name, strlen(name)) != 0;
        bool covered = sscanf(e->d_name, "%llu-%llu%n", &a, &b, &used) == 2 &&
                       e->d_name[used] == '\0' && b <= snap_index;
        if (older_snap || covered) {
            snprintf(path, sizeof(path), "%s/%s", raft, e->d_name);
            assert_int_equal(unlink(path), 0);
        }
    }
    closedir(d);
    assert_int_equal(count_snapshots(raft), 1);
    snprintf(path, sizeof(path), "%s/%s", raft, name);
    flip8(path, size / 2);

    char *reason = expect_refused(p);
    expect_in("the reason", reason, "the snapshot is damaged");
    free(reason);

    char *log = start_accepting_loss(p);
    char want[256];
    snprintf(want, sizeof(want), "event=data_loss_accepted file=raft/%s", name);
    expect_in("the log", log, want);
    expect_in("the log", log, "event=started_over");
    free(log);
    assert_false(has_agent(p, "s-1"));
    takes_writes_and_restarts(p);
}

/*
 * --force-new-cluster on a raft directory with a term and vote but no entry
 * and no snapshot (what is left when every file of the log was lost):
 * nothing to recover, said so, exit 1 (libraft's recover would abort on an
 * empty log), nothing changed.
 */
static void test_single_force_new_cluster_on_empty_log(void **state)
{
    struct rdt_proc *p = *state;
    assert_int_equal(rdt_register(p, "gone", 1, NULL), 0);
    int code = -1;
    assert_int_equal(rdt_proc_stop(p, &code), 0);
    assert_int_equal(code, 0);
    char raft[400], path[600];
    snprintf(raft, sizeof(raft), "%s/raft", p->data_dir);
    DIR *d = opendir(raft);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, "metadata", 8) == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", raft, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    /* The acknowledged mark lost too (else it names the lost entries). */
    for (int i = 1; i <= 2; i++) {
        snprintf(path, sizeof(path), "%s/acked%d", p->data_dir, i);
        assert_true(unlink(path) == 0 || errno == ENOENT);
    }
    char *before = state_of(p);
    char *out = NULL, *err = NULL;
    code = rdt_proc_run_once(p, "--force-new-cluster", rdt_ms(RUN_TIMEOUT_MS), &out, &err);
    if (code != 1)
        fail_msg("--force-new-cluster on an empty log: exit %d, want 1\nstderr:\n%s", code,
                 err ? err : "");
    expect_in("stderr", err, "holds a term and vote but no log entry or snapshot");
    expect_in("stderr", err, "nothing to recover");
    expect_unchanged(p, before);
    free(out);
    free(err);
}

/* A writer of agents in a thread, killed with its daemon. */
struct writer {
    struct rdt_proc *p;
    atomic_bool stop;
    atomic_int acked;
};

static void *write_agents(void *arg)
{
    struct writer *w = arg;
    char url[160], body[128];
    snprintf(url, sizeof(url), "%s/api/v1/nodes", w->p->base_url);
    for (int k = 0; !atomic_load(&w->stop); k++) {
        snprintf(body, sizeof(body), "{\"node_id\":\"k-%d\",\"capacity\":{\"slots\":1}}", k);
        struct rdt_resp r = {0};
        int rc = rdt_http(RDT_H1, "POST", url, body, strlen(body), &r);
        if (rc == 0 && r.status == 201)
            atomic_fetch_add(&w->acked, 1);
        rdt_resp_free(&r);
        if (rc != 0)
            break; /* the daemon is gone */
    }
    return NULL;
}

/* The `applied` of the acknowledged mark of `p` (the larger of its two
 * files; 0 when there is none yet). */
static unsigned long long mark_applied(const struct rdt_proc *p)
{
    unsigned long long best = 0;
    for (int i = 1; i <= 2; i++) {
        char path[400], buf[256] = {0};
        snprintf(path, sizeof(path), "%s/acked%d", p->data_dir, i);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *a = strstr(buf, "\napplied ");
        unsigned long long v = a ? strtoull(a + 9, NULL, 10) : 0;
        if (v > best)
            best = v;
    }
    return best;
}

static void test_single_kill9_then_flip_in_open_segment(void **state)
{
    struct rdt_proc *p = *state;
    struct writer w = {.p = p};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_agents, &w), 0);
    /* Killed while it writes, once the mark covers a few hundred entries. */
    for (int64_t until = rdt_now_ms() + rdt_ms(15000); mark_applied(p) < 300;) {
        assert_true(rdt_now_ms() < until);
        rdt_sleep_ms(5);
    }
    assert_int_equal(rdt_proc_kill9(p), 0); /* during writes */
    atomic_store(&w.stop, true);
    pthread_join(t, NULL);

    char raft[400], name[64], path[600];
    snprintf(raft, sizeof(raft), "%s/raft", p->data_dir);
    open_segment_with_data(raft, name);
    snprintf(path, sizeof(path), "%s/%s", raft, name);
    struct batches b;
    read_batches(path, &b);
    assert_true(b.count >= 100);
    unsigned k = b.count / 2;
    flip8(path, b.at[k] + 16 + 16 * b.n[k] + 8);

    char *reason = expect_refused(p);
    char want[256];
    snprintf(want, sizeof(want),
             "raft/%s: the batch at byte %zu is damaged (data checksum mismatch", name, b.at[k]);
    expect_in("the reason", reason, want);
    expect_in("the reason", reason, "good entries after it");
    expect_in("the reason", reason, "agent registrations");
    expect_in("the reason", reason, "acknowledged to clients");
    fprintf(stderr, "refused: %s\n", reason);
    free(reason);
    free(start_accepting_loss(p));
    char aside[700];
    damaged_dir(p, aside, sizeof(aside));
    assert_true(file_exists(aside, "raft", name));
    assert_true(has_agent(p, "k-0"));
}

static void test_single_metadata_deleted_or_zeroed(void **state)
{
    struct rdt_proc *p = *state;
    write_workload(p);
    int code = -1;
    assert_int_equal(rdt_proc_stop(p, &code), 0);
    char m1[400], m2[400];
    snprintf(m1, sizeof(m1), "%s/raft/metadata1", p->data_dir);
    snprintf(m2, sizeof(m2), "%s/raft/metadata2", p->data_dir);
    unlink(m1);
    unlink(m2);
    char *reason = expect_refused(p);
    expect_in("the reason", reason, "raft/metadata1 and raft/metadata2 are missing");
    expect_in("the reason", reason, "the term and the vote this replica cast are lost");
    expect_in("the reason", reason, "No entry is lost");
    free(reason);
    free(start_accepting_loss(p));
    assert_true(has_agent(p, "d-40")); /* nothing of the log was lost */

    /* metadata1 zeroed (the newest file, whichever it is now, as libraft wrote it). */
    assert_int_equal(rdt_proc_stop(p, &code), 0);
    struct stat st;
    const char *newest = stat(m1, &st) == 0 ? m1 : m2;
    int fd = open(newest, O_WRONLY);
    assert_true(fd >= 0);
    char zero[32] = {0};
    assert_int_equal(pwrite(fd, zero, sizeof(zero), 0), 32);
    close(fd);
    reason = expect_refused(p);
    expect_in("the reason", reason, "is not in libraft's format (zeroed or overwritten)");
    expect_in("the reason", reason, newest == m1 ? "raft/metadata1" : "raft/metadata2");
    free(reason);
    free(start_accepting_loss(p));
    assert_true(has_agent(p, "d-40"));
}

/* ---- a follower of three ------------------------------------------------------------ */

static struct rdt_cluster cl;

static const char cluster_yaml[] = "fault_tolerance:\n"
                                   "  partition:\n"
                                   "    min_nodes: 100\n"
                                   "plugins:\n"
                                   "  instances:\n"
                                   "    - {name: heartbeat, required: true}\n"
                                   "    - {name: log}\n";

static const char cluster_snap_yaml[] = "storage:\n"
                                        "  snapshot_threshold: 128\n"
                                        "  snapshot_trailing: 32\n"
                                        "fault_tolerance:\n"
                                        "  backup:\n"
                                        "    cpu_share: 100%\n" /* as single_snap_yaml */
                                        "  partition:\n"
                                        "    min_nodes: 100\n"
                                        "plugins:\n"
                                        "  instances:\n"
                                        "    - {name: heartbeat, required: true}\n"
                                        "    - {name: log}\n";

static int cluster_setup(void **state)
{
    (void)state;
    return rdt_cluster_start(&cl, 3, cluster_yaml, NULL);
}

static int cluster_snap_setup(void **state)
{
    (void)state;
    return rdt_cluster_start(&cl, 3, cluster_snap_yaml, NULL);
}

static int cluster_teardown(void **state)
{
    (void)state;
    if (getenv("RDT_VERBOSE"))
        for (int i = 0; i < cl.n; i++)
            rdt_proc_print_log_tail(&cl.procs[i], 60);
    rdt_cluster_cleanup(&cl);
    return 0;
}

static atomic_bool bg_stop;
static char bg_acked[20000][16];
static atomic_int bg_n;

static void *bg_writer(void *arg)
{
    (void)arg;
    int at = 0;
    for (int k = 0; !atomic_load(&bg_stop) && atomic_load(&bg_n) < 20000; k++) {
        char body[128], id[16];
        snprintf(id, sizeof(id), "bg-%d", k);
        snprintf(body, sizeof(body), "{\"node_id\":\"%s\",\"capacity\":{\"slots\":1}}", id);
        struct rdt_resp r = {0};
        int rc = rdt_cluster_request(&cl, &at, "POST", "/api/v1/nodes", body, 5000, &r);
        if (rc == 0 && r.status == 201) {
            int n = atomic_load(&bg_n);
            snprintf(bg_acked[n], sizeof(bg_acked[0]), "%s", id);
            atomic_store(&bg_n, n + 1);
        }
        rdt_resp_free(&r);
    }
    return NULL;
}

static void bg_progress(int more)
{
    int want = atomic_load(&bg_n) + more;
    for (int64_t until = rdt_now_ms() + rdt_ms(15000); atomic_load(&bg_n) < want;) {
        if (rdt_now_ms() > until)
            fail_msg("writes stalled at %d (wanted %d)", atomic_load(&bg_n), want);
        rdt_sleep_ms(5);
    }
}

/* Some replica of the cluster other than `skip` logged `needle`. */
static void expect_in_other_logs(int skip, const char *needle)
{
    for (int i = 0; i < cl.n; i++)
        if (i != skip && rdt_proc_log_has(&cl.procs[i], needle))
            return;
    for (int i = 0; i < cl.n; i++)
        if (i != skip)
            rdt_proc_print_log_tail(&cl.procs[i], 20);
    fail_msg("no replica but %d logged \"%s\"", skip + 1, needle);
}

/* Every acknowledged agent is on replica `i` (its own state: a stale read). */
static void expect_all_on(int i, int n)
{
    struct rdt_proc *p = &cl.procs[i];
    int64_t deadline = rdt_now_ms() + rdt_ms(15000);
    for (int k = 0; k < n; k++) {
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/nodes/%s?stale=true", bg_acked[k]);
        for (;;) {
            struct rdt_resp r = {0};
            assert_int_equal(rdt_get(p, RDT_H1, path, &r), 0);
            long st = r.status;
            rdt_resp_free(&r);
            if (st == 200)
                break;
            if (rdt_now_ms() > deadline)
                fail_msg("replica %d lacks acknowledged agent %s (status %ld)", i + 1, bg_acked[k],
                         st);
            rdt_sleep_ms(20);
        }
    }
}

/* The voter role of replica `id` in the leader's membership. */
static const char *voter_role(int leader, int id, char *buf, size_t cap)
{
    struct rdt_resp r = {0};
    assert_int_equal(rdt_get(&cl.procs[leader], RDT_H1, "/api/v1/cluster/replicas", &r), 0);
    buf[0] = '\0';
    size_t i;
    json_t *x;
    json_array_foreach(rdt_json_path(r.json, "replicas"), i, x)
    {
        if (json_integer_value(json_object_get(x, "id")) == id)
            snprintf(buf, cap, "%s", json_string_value(json_object_get(x, "voter_role")));
    }
    rdt_resp_free(&r);
    return buf;
}

enum damage { FLIP_CLOSED, KILL9_FLIP_OPEN, METADATA_DELETED, FLIP_SNAPSHOT };

static void follower_rejoins(enum damage kind)
{
    int L = rdt_cluster_leader(&cl, rdt_ms(5000));
    assert_true(L >= 0);
    int F = (L + 1) % cl.n;
    struct rdt_proc *f = &cl.procs[F];
    atomic_store(&bg_stop, false);
    atomic_store(&bg_n, 0);
    pthread_t writer;
    assert_int_equal(pthread_create(&writer, NULL, bg_writer, NULL), 0);
    bg_progress(300);

    char raft[400], name[64] = "", path[600];
    snprintf(raft, sizeof(raft), "%s/raft", f->data_dir);
    /* The follower's snapshots are taken by a forked child, later on a
     * loaded machine: the writes go on until it holds one. */
    for (int64_t until = rdt_now_ms() + rdt_ms(30000);
         kind == FLIP_SNAPSHOT && count_snapshots(raft) == 0;) {
        if (rdt_now_ms() > until)
            fail_msg("replica %d took no snapshot in 30 s", F + 1);
        bg_progress(20);
    }
    if (kind == KILL9_FLIP_OPEN) {
        assert_int_equal(rdt_proc_kill9(f), 0); /* during writes */
        open_segment_with_data(raft, name);
    } else {
        int code = -1;
        assert_int_equal(rdt_proc_stop(f, &code), 0);
        assert_int_equal(code, 0);
    }
    bg_progress(100); /* the others go on */
    if (kind == FLIP_CLOSED) {
        uint64_t first, end;
        last_closed_segment(raft, name, &first, &end);
    }
    if (kind == FLIP_SNAPSHOT) {
        size_t size;
        newest_snapshot(raft, name, &size);
        snprintf(path, sizeof(path), "%s/%s", raft, name);
        flip8(path, size / 2);
    } else if (kind == METADATA_DELETED) {
        snprintf(path, sizeof(path), "%s/metadata1", raft);
        unlink(path);
        snprintf(path, sizeof(path), "%s/metadata2", raft);
        unlink(path);
        snprintf(name, sizeof(name), "metadata1");
    } else {
        snprintf(path, sizeof(path), "%s/%s", raft, name);
        struct batches b;
        read_batches(path, &b);
        assert_true(b.count >= 8);
        unsigned k = kind == FLIP_CLOSED ? b.count / 4 : b.count / 2;
        flip8(path, b.at[k] + 16 + 16 * b.n[k] + 8);
    }

    /* Back: it moves its state aside and rejoins, while writes go on. */
    f->errors_expected = true;
    assert_int_equal(rdt_proc_restart(f), 0);
    if (rdt_await_log(f, "comp=cluster event=rejoined role=voter", rdt_ms(30000)) != 0)
        fail_msg("replica %d did not rejoin as a voter", F + 1);
    char want[128];
    snprintf(want, sizeof(want), "event=data_damaged file=raft/%s action=rejoin", name);
    if (!rdt_proc_log_has(f, want)) {
        rdt_proc_print_log_tail(f, 40);
        fail_msg("replica %d's log lacks \"%s\"", F + 1, want);
    }
    assert_true(rdt_proc_log_has(f, "event=rejoin_demoted previous_role=voter role=standby"));
    char aside[700];
    damaged_dir(f, aside, sizeof(aside));
    assert_true(file_exists(aside, "raft", name) || kind == METADATA_DELETED);
    assert_true(file_exists(aside, "", "acked1"));
    bg_progress(100);
    atomic_store(&bg_stop, true);
    pthread_join(writer, NULL);
    int n = atomic_load(&bg_n);
    fprintf(stderr, "replica %d rejoined; %d writes acknowledged during the test\n", F + 1, n);

    /* A voter again, in the leader's view, and it holds every acknowledged write. */
    L = rdt_cluster_leader(&cl, rdt_ms(5000));
    assert_true(L >= 0);
    char role[16];
    assert_string_equal(voter_role(L, F + 1, role, sizeof(role)), "voter");
    expect_all_on(F, n);
    for (int i = 0; i < cl.n; i++)
        if (i != F)
            expect_all_on(i, n);
    /* It can lead: its log is whole. Its demotion and return were logged
     * by the leader of the time, which need not be today's (under load a
     * leader may change meanwhile): one of the others logged each. */
    snprintf(want, sizeof(want), "event=replica_left id=%d role=standby previous_role=voter",
             F + 1);
    expect_in_other_logs(F, want);
    snprintf(want, sizeof(want), "event=replica_returned id=%d role=voter", F + 1);
    expect_in_other_logs(F, want);
    char *log;
    /* A restart afterwards is an ordinary one. */
    int code = -1;
    assert_int_equal(rdt_proc_stop(f, &code), 0);
    assert_int_equal(code, 0);
    assert_int_equal(rdt_proc_restart(f), 0);
    assert_int_equal(rdt_wait_ready(f, rdt_ms(15000)), 0);
    log = rdt_proc_log(f);
    const char *last_start = strstr(log, "event=rejoined");
    assert_non_null(last_start);
    if (strstr(last_start, "event=rejoining") != NULL)
        fail_msg("replica %d rejoined again at a clean restart", F + 1);
    free(log);
}

static void test_follower_flip_in_last_closed_segment_rejoins(void **state)
{
    (void)state;
    follower_rejoins(FLIP_CLOSED);
}

static void test_follower_kill9_flip_in_open_segment_rejoins(void **state)
{
    (void)state;
    follower_rejoins(KILL9_FLIP_OPEN);
}

static void test_follower_metadata_deleted_rejoins(void **state)
{
    (void)state;
    follower_rejoins(METADATA_DELETED);
}

static void test_follower_flip_in_snapshot_rejoins(void **state)
{
    (void)state;
    follower_rejoins(FLIP_SNAPSHOT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_single_flip_in_last_closed_segment, single_setup,
                                        single_teardown),
        cmocka_unit_test_setup_teardown(test_single_kill9_then_flip_in_open_segment, single_setup,
                                        single_teardown),
        cmocka_unit_test_setup_teardown(test_single_metadata_deleted_or_zeroed, single_setup,
                                        single_teardown),
        cmocka_unit_test_setup_teardown(test_single_flip_in_snapshot, single_snap_setup,
                                        single_teardown),
        cmocka_unit_test_setup_teardown(test_single_flip_in_only_snapshot, single_snap_setup,
                                        single_teardown),
        cmocka_unit_test_setup_teardown(test_single_force_new_cluster_on_empty_log, single_setup,
                                        single_teardown),
        cmocka_unit_test_setup_teardown(test_follower_flip_in_snapshot_rejoins, cluster_snap_setup,
                                        cluster_teardown),
        cmocka_unit_test_setup_teardown(test_follower_flip_in_last_closed_segment_rejoins,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_follower_kill9_flip_in_open_segment_rejoins,
                                        cluster_setup, cluster_teardown),
        cmocka_unit_test_setup_teardown(test_follower_metadata_deleted_rejoins, cluster_setup,
                                        cluster_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
