/*
 * Writes the binary seeds of tests/fuzz/corpus/ (the log entries and
 * snapshots the state machine's targets start from), made with the same
 * builders as the state machine's tests: `make_fuzz_seeds DIR` writes
 * the files of DIR/cmd/ and DIR/snapshot/. The JSON and YAML seeds are plain files.
 */
#include "cmocka_all.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fsm/snapshot.h"
#include "fsm_test.h"

static const char *g_dir;

static void write_file(const char *sub, const char *name, const uint8_t *p, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_dir, sub);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", g_dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* Entries framed as fuzz_cmd reads them: a 2-byte length, the bytes. */
static void frame(struct rd_wbuf *seq, struct rd_wbuf w, struct rd_fsm *f)
{
    rd_w_u8(seq, (uint8_t)(w.len & 0xff));
    rd_w_u8(seq, (uint8_t)(w.len >> 8));
    rd_w_bytes(seq, w.p, w.len);
    const struct rd_fsm_result *res = NULL;
    if (f != NULL)
        rd_fsm_apply(f, w.p, w.len, &res);
    rd_w_free(&w);
}

#define TASK1 "0b5e9c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b"
#define TASK2 "1c6f0d2b-3a4e-4f6a-9b0c-1d2e3f4a5b6c"
#define FAULT "2d7a1e3c-4b5f-4a7b-8c1d-2e3f4a5b6c7d"
#define RUN   "3e8b2f4d-5c6a-4b8c-9d2e-3f4a5b6c7d8e"

/* A history that touches most of the machine, applied to `f` as it is framed. */
static void history(struct rd_wbuf *seq, struct rd_fsm *f)
{
    int64_t t = 1780000000000;
    frame(seq, cmd_cluster_id("c1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8", t++), f);
    frame(seq,
          cmd_register_full("agent-1", 4, "{\"zone\":\"a\"}", "http://127.0.0.1:9/h",
                            "10.0.0.1:7000", t++),
          f);
    frame(seq, cmd_register("agent-2", 2, t++), f);
    frame(seq, cmd_task_submit(TASK1, 9, 1, 1, 5, t++), f);
    frame(seq, cmd_task_submit(TASK2, 5, 0, 2, 3, t++), f);
    frame(seq, cmd_task_assign(TASK1, 1, "agent-1", 1, t++), f);
    frame(seq, cmd_task_ckpt(TASK1, 1, 1, "{\"step\":1}", 3, t++), f);
    frame(seq, cmd_task_ckpt(TASK1, 1, 2, "{\"step\":2}", 3, t++), f);
    frame(seq,
          cmd_fault_open(FAULT, "agent-1", RD_FAULT_CRASH, RD_SEV_CRITICAL, RD_NODE_FAILED, 1, t++),
          f);
    frame(seq, cmd_recovery_open(RUN, "agent-1", "fast_recovery", FAULT, t++), f);
    frame(seq,
          cmd_recovery_move(TASK1, 2, "agent-2", 1, RUN, "6b1e5c7a-8f9d-4e1f-8a5b-6c7d8e9f0a1b",
                            "fast_recovery", "moved", t++),
          f);
    frame(seq, cmd_recovery_close(RUN, RD_REC_SUCCEEDED, "fast_recovery", t++), f);
    frame(seq, cmd_fault_resolve(FAULT, "agent-1", t++), f);
    frame(seq, cmd_task_finish(TASK1, 2, RD_TASK_COMPLETED, "{\"ok\":true}", t++), f);
    frame(seq, cmd_transition("agent-2", 0, RD_NODE_LEFT, t++), f);
    frame(seq, cmd_replica_info(2, "http://127.0.0.1:8081", t++), f);
    frame(seq, cmd_backup_begin("4f9c3a5e-6d7b-4c9d-8e3f-4a5b6c7d8e9f", "local", t++), f);
    frame(seq, cmd_check("5a0d4b6f-7e8c-4d0e-9f4a-5b6c7d8e9f0a", t++), f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    struct rd_fsm f;
    rd_fsm_init(&f);
    struct rd_wbuf seq;
    rd_w_init(&seq);
    history(&seq, &f);
    write_file("cmd", "history", seq.p, seq.len);
    rd_w_free(&seq);
    rd_w_init(&seq);
    frame(&seq, cmd_register("agent-9", 1, 1), NULL);
    write_file("cmd", "register", seq.p, seq.len);
    rd_w_free(&seq);

    /* A snapshot of that state as written (first byte even) and its raw
     * state (odd: fuzz_snapshot packs it). */
    struct rd_wbuf snap, raw, out;
    rd_w_init(&snap);
    rd_w_init(&raw);
    rd_w_u8(&snap, 0);
    rd_w_u8(&raw, 1);
    if (rd_fsm_snapshot(&f, &out) != 0)
        return 1;
    rd_w_bytes(&snap, out.p, out.len);
    rd_w_free(&out);
    rd_w_init(&out);
    if (rd_fsm_snapshot_raw(&f, &out) != 0)
        return 1;
    rd_w_bytes(&raw, out.p, out.len);
    rd_w_free(&out);
    write_file("snapshot", "history", snap.p, snap.len);
    write_file("snapshot", "history-raw", raw.p, raw.len);
    rd_w_free(&snap);
    rd_w_free(&raw);
    rd_fsm_close(&f);
    return 0;
}
