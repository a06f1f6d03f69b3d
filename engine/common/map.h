/*
 * A string-keyed hash map (open addressing, linear probing, tombstones).
 * The map stores `key` and `value` pointers; it owns neither: the key must
 * live as long as its entry (usually it points into the value).
 */
#ifndef RD_MAP_H
#define RD_MAP_H

#include <stddef.h>
#include <stdint.h>

struct rd_map_slot {
    const char *key; /* NULL = empty; RD_MAP_TOMB = deleted */
    size_t key_len;
    uint64_t hash;
    void *value;
};

struct rd_map {
    struct rd_map_slot *slots;
    size_t cap;  /* power of two, or 0 */
    size_t len;  /* live entries */
    size_t used; /* live + tombstones */
};

void rd_map_init(struct rd_map *m);
void rd_map_free(struct rd_map *m);

/* The value for `key` or NULL. */
void *rd_map_get(const struct rd_map *m, const char *key, size_t key_len);

/* Inserts or replaces. Returns 0 or RD_ENOMEM (the map is unchanged then). */
int rd_map_put(struct rd_map *m, const char *key, size_t key_len, void *value);

/* Removes `key`; returns its value or NULL. */
void *rd_map_del(struct rd_map *m, const char *key, size_t key_len);

#endif
