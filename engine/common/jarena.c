/* Scratch memory for jansson's parse of small request bodies (jarena.h). */
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "jarena.h"

#define ARENA_SIZE 8192

static struct {
    alignas(max_align_t) unsigned char buf[ARENA_SIZE];
    size_t used;        /* bump offset (the owner's only) */
    atomic_size_t live; /* allocations in buf not freed yet */
    pthread_t owner;    /* the thread that installed it */
    bool installed;
    unsigned long long parses;
} arena;

static _Thread_local bool parsing; /* inside rd_jarena_loadb on the owner */

static bool in_arena(const void *p)
{
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)arena.buf;
    return a >= b && a < b + ARENA_SIZE;
}

static void *arena_malloc(size_t n)
{
    if (parsing) {
        size_t at = (arena.used + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
        if (n <= ARENA_SIZE && at <= ARENA_SIZE - n) {
            arena.used = at + n;
            atomic_fetch_add_explicit(&arena.live, 1, memory_order_relaxed);
            return arena.buf + at;
        }
    }
    return malloc(n);
}

static void arena_free(void *p)
{
    if (in_arena(p))
        atomic_fetch_sub_explicit(&arena.live, 1, memory_order_release);
    else
        free(p);
}

void rd_jarena_install(void)
{
    if (arena.installed)
        return;
    arena.owner = pthread_self();
    arena.installed = true;
    json_set_alloc_funcs(arena_malloc, arena_free);
}

json_t *rd_jarena_loadb(const char *buf, size_t len, size_t flags, json_error_t *err)
{
    if (!arena.installed || !pthread_equal(arena.owner, pthread_self()) ||
        atomic_load_explicit(&arena.live, memory_order_acquire) != 0)
        return json_loadb(buf, len, flags, err);
    arena.used = 0;
    arena.parses++;
    parsing = true;
    json_t *v = json_loadb(buf, len, flags, err);
    parsing = false;
    return v;
}

size_t rd_jarena_live(void)
{
    return atomic_load(&arena.live);
}

unsigned long long rd_jarena_parses(void)
{
    return arena.parses;
}
