#include "map.h"
#include "util.h"
#include "recoveryd/error.h"

#include <stdlib.h>
#include <string.h>

static const char tomb_marker;
#define RD_MAP_TOMB (&tomb_marker)

void rd_map_init(struct rd_map *m)
{
    memset(m, 0, sizeof(*m));
}

void rd_map_free(struct rd_map *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static uint64_t hash_key(const char *key, size_t len)
{
    return rd_fnv1a(RD_FNV_INIT, key, len);
}

static struct rd_map_slot *find(const struct rd_map *m, const char *key, size_t len, uint64_t h)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct rd_map_slot *s = &m->slots[i];
        if (s->key == NULL)
            return NULL;
        if (s->key != RD_MAP_TOMB && s->hash == h && s->key_len == len &&
            memcmp(s->key, key, len) == 0)
            return s;
    }
}

static int grow(struct rd_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    /* Rehash in place of tombstones when the table is mostly dead. */
    if (m->cap && m->len * 2 < m->cap)
        ncap = m->cap;
    struct rd_map_slot *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return RD_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        struct rd_map_slot *s = &m->slots[i];
        if (s->key == NULL || s->key == RD_MAP_TOMB)
            continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].key != NULL)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    m->used = m->len;
    return 0;
}

void *rd_map_get(const struct rd_map *m, const char *key, size_t key_len)
{
    struct rd_map_slot *s = find(m, key, key_len, hash_key(key, key_len));
    return s ? s->value : NULL;
}

int rd_map_put(struct rd_map *m, const char *key, size_t key_len, void *value)
{
    uint64_t h = hash_key(key, key_len);
    struct rd_map_slot *s = find(m, key, key_len, h);
    if (s != NULL) {
        s->key = key;
        s->value = value;
        return 0;
    }
    if ((m->used + 1) * 4 > m->cap * 3) {
        int rv = grow(m);
        if (rv != 0)
            return rv;
    }
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->slots[i].key != NULL && m->slots[i].key != RD_MAP_TOMB)
        i = (i + 1) & mask;
    if (m->slots[i].key == NULL)
        m->used++;
    m->slots[i] = (struct rd_map_slot){key, key_len, h, value};
    m->len++;
    return 0;
}

void *rd_map_del(struct rd_map *m, const char *key, size_t key_len)
{
    struct rd_map_slot *s = find(m, key, key_len, hash_key(key, key_len));
    if (s == NULL)
        return NULL;
    void *v = s->value;
    s->key = RD_MAP_TOMB;
    s->value = NULL;
    m->len--;
    return v;
}
