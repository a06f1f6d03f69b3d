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
 * Replaces the state with the one in a snapshot. The new state is built
 * aside and swapped in only when the whole snapshot decoded, so a corrupt
 * snapshot leaves the machine as it was (RD_ECORRUPT / RD_EUNSUPPORTED).
 * The caller keeps `buf`.
 */
int rd_fsm_restore(struct rd_fsm *f, const void *buf, size_t len);

#endif
