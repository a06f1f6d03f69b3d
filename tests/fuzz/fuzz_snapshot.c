/*
 * libFuzzer target: the snapshot decoder (rd_fsm_restore). The first byte
 * picks how the rest is used: even, as a snapshot file as it is (header,
 * zstd frame, checksum); odd, as the uncompressed state, packed first with
 * rd_fsm_snapshot_pack so that it passes the checksum and reaches the state
 * decoder itself. A decoded state is written out and read back: the same
 * bytes, and a digest equal to a full recomputation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/digest.h"
#include "fsm/fsm.h"
#include "fsm/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct rd_fsm f;
    if (rd_fsm_init(&f) != 0)
        return 0;
    struct rd_wbuf packed;
    rd_w_init(&packed);
    const uint8_t *snap = data + 1;
    size_t len = size - 1;
    if ((data[0] & 1) && rd_fsm_snapshot_pack(data + 1, size - 1, &packed) == 0) {
        snap = packed.p;
        len = packed.len;
    }
    if (rd_fsm_restore(&f, snap, len) == 0) {
        if (rd_fsm_digest(&f) != rd_fsm_digest_full(&f))
            abort();
        struct rd_wbuf again;
        rd_w_init(&again);
        if (rd_fsm_snapshot(&f, &again) == 0) {
            struct rd_fsm g;
            rd_fsm_init(&g);
            if (rd_fsm_restore(&g, again.p, again.len) != 0 ||
                rd_fsm_digest(&g) != rd_fsm_digest(&f))
                abort(); /* what this version writes it must read back */
            rd_fsm_close(&g);
        }
        rd_w_free(&again);
    }
    rd_w_free(&packed);
    rd_fsm_close(&f);
    return 0;
}
