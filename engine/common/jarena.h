/*
 * Scratch memory for jansson's parse of small request bodies.
 *
 * A heartbeat's body is about 100 bytes, and jansson makes 15-20 small
 * allocations to parse it (the lexer's buffer, each object's table, each
 * key, each value), all freed when the route is done with it. In the
 * leader of the 10,000-agent storm half of the parse's time was malloc and
 * free (5% of the loop's CPU, docs/benchmarks.md): the engine's heap is
 * busy with checkpoints and raft entries of every size, and those small
 * allocations took malloc's slow paths. rd_jarena_loadb parses into a
 * fixed buffer instead, and a free of anything in it is only counted; once
 * every allocation in it has been freed, the next parse starts from its
 * beginning again.
 *
 * Nothing can dangle: while anything parsed there is still held (a value
 * kept past its route), the buffer is not reused, and parses that do not
 * fit take jansson's ordinary allocations. Only the thread that installed
 * it parses into it; jansson on any other thread allocates as before.
 * Under ASan what is not handed out, or was freed, is poisoned: a use
 * after free is reported as it is for malloc's memory.
 */
#ifndef RD_JARENA_H
#define RD_JARENA_H

#include <jansson.h>
#include <stddef.h>

/* Installs the allocator in jansson (json_set_alloc_funcs) for this
 * thread's parses. Safe at any time: what was allocated before is freed
 * as before. */
void rd_jarena_install(void);

/* json_loadb into the scratch buffer when it is free and installed on
 * this thread, else as json_loadb. */
json_t *rd_jarena_loadb(const char *buf, size_t len, size_t flags, json_error_t *err);

/* Allocations in the buffer not freed yet, and parses that took it (tests). */
size_t rd_jarena_live(void);
unsigned long long rd_jarena_parses(void);

#endif
