/*
 * Snapshots of the whole state machine (snapshot.c). Part of the state
 * machine's API: include fsm.h.
 */
#ifndef RD_FSM_SNAPSHOT_H
#define RD_FSM_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

struct rd_fsm;

/*
 * Serialises the whole state into `out` (initialised by the caller), zstd
 * compressed behind a small header. Deterministic: equal states give equal
 * bytes. Returns 0 or an RD_E* code; the caller frees `out` either way.
 */
int rd_fsm_snapshot(const struct rd_fsm *f, struct rd_wbuf *out);

/*
 * rd_fsm_snapshot() in two steps, for a caller that must not compress on the
 * loop (a backup of a large state): rd_fsm_snapshot_raw() serialises the
 * state into `raw` (initialised by the caller; loop thread, the state at
 * this one instant), and rd_fsm_snapshot_pack() turns those bytes into the
 * snapshot rd_fsm_snapshot() would have written, in `out` (initialised by
 * the caller). Pack touches no machine: any thread may run it. Both return
 * 0 or an RD_E* code; the caller frees `raw` and `out` either way.
 */
int rd_fsm_snapshot_raw(const struct rd_fsm *f, struct rd_wbuf *raw);
int rd_fsm_snapshot_pack(const void *raw, size_t len, struct rd_wbuf *out);

/*
 * The same snapshot, streamed: the state is walked twice (once only
 * counting its length, once through a small buffer into the checksum and
 * the compressor), so
 * the whole serialised state is never in memory, only its compressed image.
 * For a forked child that takes a backup's image (engine/replica/image.c):
 * its memory and its cache footprint stay small beside the loop's. 0 with
 * `out` and *raw_len, or RD_E*.
 */
int rd_fsm_snapshot_stream(const struct rd_fsm *f, struct rd_wbuf *out, uint64_t *raw_len);

/* Checks an image without decoding it: header, size, decompression and
 * checksum of the raw state. 0, or RD_ECORRUPT / RD_EUNSUPPORTED / RD_ENOMEM
 * with the reason in `why`. Touches no machine: any thread. */
int rd_fsm_snapshot_check(const void *buf, size_t len, char *why, size_t n);

/*
 * Replaces the state with the one in a snapshot. The new state is built
 * aside and swapped in only when the whole snapshot decoded, so a corrupt
 * snapshot leaves the machine as it was (RD_ECORRUPT / RD_EUNSUPPORTED).
 * The caller keeps `buf`.
 */
int rd_fsm_restore(struct rd_fsm *f, const void *buf, size_t len);

#endif
