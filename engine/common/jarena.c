/* Scratch memory for jansson's parse of small request bodies (jarena.h). */
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <sanitizer/asan_interface.h> /* no-ops unless built with ASan */

#include "jarena.h"

#define ARENA_SIZE 8192
/* Each allocation is preceded by its size (aligned as malloc's), so that
 * under ASan a freed one is poisoned again: a use after free, or a double
 * free, of what a parse made is reported as it is for malloc's memory. */
#define HDR alignof(max_align_t)

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
        size_t at = (arena.used + HDR - 1) & ~(HDR - 1);
        if (n <= ARENA_SIZE - HDR && at <= ARENA_SIZE - HDR - n) {
            unsigned char *h = arena.buf + at;
            ASAN_UNPOISON_MEMORY_REGION(h, HDR + n);
            *(size_t *)(void *)h = n;
            arena.used = at + HDR + n;
            atomic_fetch_add_explicit(&arena.live, 1, memory_order_relaxed);
            return h + HDR;
        }
    }
    return malloc(n);
}

static void arena_free(void *p)
{
    if (!in_arena(p)) {
        free(p);
        return;
    }
    unsigned char *h = (unsigned char *)p - HDR;
    ASAN_POISON_MEMORY_REGION(h, HDR + *(size_t *)(void *)h);
    atomic_fetch_sub_explicit(&arena.live, 1, memory_order_release);
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
    ASAN_POISON_MEMORY_REGION(arena.buf, ARENA_SIZE); /* nothing in it is held */
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
