/* Small helpers shared by every module: clocks, time formatting, ids. */
#ifndef RD_UTIL_H
#define RD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RD_TIME_STRLEN 32 /* "2026-11-24T03:04:05.123Z" + NUL, with room */
#define RD_NODE_ID_MAX 255
#define RD_UUID_STRLEN 37

#define RD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Wall-clock milliseconds since the Unix epoch (leader stamps, records). */
int64_t rd_now_ms(void);

/* Monotonic nanoseconds (latencies, timeouts); never goes backwards. */
uint64_t rd_mono_ns(void);

/* When something due one `interval_ms` after the wall-clock stamp `since_ms`
 * is due, as rd_mono_ns() time: never before now, and never more than an
 * interval from now, since the stamp may be another host's clock, or this
 * one's before a step (schedules that follow a replicated record's start). */
uint64_t rd_due_mono_ns(int64_t since_ms, uint64_t interval_ms);

/* Formats `ms` as RFC 3339 UTC with milliseconds into `out`. */
void rd_time_format(int64_t ms, char out[RD_TIME_STRLEN]);

/* Parses RFC 3339 ("2026-11-24T03:04:05Z", optional fraction, Z or +hh:mm). */
int rd_time_parse(const char *s, int64_t *ms);

/* True when `id` is 1-255 chars of [A-Za-z0-9._:-] (API.md). */
bool rd_node_id_valid(const char *id, size_t len);

/* Fills `out` with a random (v4) UUID string from the kernel's CSPRNG. */
int rd_uuid_v4(char out[RD_UUID_STRLEN]);

/* True when `s` is a UUID in canonical 8-4-4-4-12 hex form. */
bool rd_uuid_valid(const char *s);

/* FNV-1a 64-bit over `len` bytes, continuing from `h` (start: RD_FNV_INIT). */
#define RD_FNV_INIT 0xcbf29ce484222325ULL
uint64_t rd_fnv1a(uint64_t h, const void *data, size_t len);

/*
 * Decompresses the one zstd frame [p, p+n) that says it holds `want` bytes
 * into *out (malloc'd; the caller frees it) and *got, growing the buffer as
 * bytes actually come out, never past `want`: a damaged header that claims
 * gigabytes costs nothing until the frame delivers them (a 44-byte snapshot
 * claiming 16 GiB made the restore allocate it at once; seen while writing
 * tests/fuzz/fuzz_snapshot). 0, RD_ECORRUPT (not one whole frame: damaged,
 * truncated, longer than it said, or bytes after it) or RD_ENOMEM.
 */
int rd_zstd_inflate(const void *p, size_t n, size_t want, uint8_t **out, size_t *got);

/* strdup that aborts on out-of-memory is not used: callers check NULL. */
char *rd_strndup(const char *s, size_t n);

/*
 * Room for one more element after the live part [*head, *head + n) of the
 * array `arr` of *cap elements of `size` bytes, whose front is dropped from
 * (records kept oldest first, the oldest going first). When the array is
 * full, the live part slides down to the front if half or more of it is
 * space left by dropped elements (once per as many appends: O(1) each),
 * else the array doubles (to `first_cap` at first). Returns the array,
 * perhaps moved; NULL on ENOMEM, when it is unchanged.
 */
void *rd_array_room(void *arr, size_t size, size_t *head, size_t n, size_t *cap, size_t first_cap);

/*
 * Memory the engine's forked children never see (issue 16): pages mapped
 * with MADV_DONTFORK, for the per-agent soft state every heartbeat writes
 * (the registry's, the analysis's, the detector plugins'). A raft snapshot
 * or a backup forks the engine (replica/image.c) and the child images the
 * state machine only; while it runs, the first write to each page the two
 * share copies that page. At 10,000 agents every agent's soft state is
 * written within one heartbeat interval, so each fork cost the loop about
 * a second of copy-on-write faults, all at once (docs/benchmarks.md).
 * Pages the child does not have are never copied. The child must not
 * touch this memory: it is not mapped there.
 *
 * rd_nofork_realloc resizes `p` (NULL: new) from `old` to `size` bytes
 * (both rounded up to whole pages); bytes beyond `old` are zero. It may
 * move the block. `size` 0 frees it (as rd_nofork_free). NULL on ENOMEM,
 * when `p` is unchanged. Blocks are whole pages: meant for tables, not for
 * small objects.
 */
void *rd_nofork_realloc(void *p, size_t old, size_t size);
void rd_nofork_free(void *p, size_t size);

/* A table of *n elements of `elem` bytes by registry slot, grown (doubling,
 * from 256; new elements zero) to hold index `slot`, with
 * rd_nofork_realloc. The table, perhaps moved; NULL on ENOMEM, when it is
 * unchanged. */
void *rd_nofork_slots(void *p, size_t *n, size_t elem, size_t slot);

#endif
