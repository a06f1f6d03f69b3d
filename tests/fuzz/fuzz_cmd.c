/*
 * libFuzzer target: what a corrupt log feeds the state machine. The input is
 * a sequence of entries, each a 2-byte little-endian length and that many
 * bytes; each is decoded (rd_cmd_decode) and applied (rd_fsm_apply) in order
 * to a fresh machine, so a corrupt entry meets the state real entries built.
 * The machine must refuse what it cannot read, never crash, and keep its
 * incremental digest equal to a full recomputation.
 */
#include <stdint.h>
#include <stdlib.h>

#include "fsm/cmd.h"
#include "fsm/digest.h"
#include "fsm/fsm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rd_fsm f;
    if (rd_fsm_init(&f) != 0)
        return 0;
    size_t off = 0;
    while (off + 2 <= size) {
        size_t len = (size_t)data[off] | (size_t)data[off + 1] << 8;
        off += 2;
        if (len > size - off)
            len = size - off;
        struct rd_cmd cmd;
        (void)rd_cmd_decode(data + off, len, &cmd);
        const struct rd_fsm_result *res = NULL;
        (void)rd_fsm_apply(&f, data + off, len, &res);
        off += len;
    }
    if (rd_fsm_digest(&f) != rd_fsm_digest_full(&f))
        abort();
    rd_fsm_close(&f);
    return 0;
}
