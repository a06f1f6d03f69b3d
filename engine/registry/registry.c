#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "registry.h"

void rd_registry_init(struct rd_registry *r)
{
    memset(r, 0, sizeof(*r));
    rd_map_init(&r->by_id);
}

void rd_registry_close(struct rd_registry *r)
{
    for (size_t i = 0; i < r->by_id.cap; i++) {
        struct rd_map_slot *s = &r->by_id.slots[i];
        if (s->value != NULL) {
            struct rd_soft *soft = s->value;
            free(soft->told);
            free(soft->node_id);
        }
    }
    rd_map_free(&r->by_id);
    for (size_t c = 0; c < r->n_chunks; c++)
        rd_nofork_free(r->chunks[c], RD_SOFT_CHUNK * sizeof(struct rd_soft));
    free(r->chunks);
    free(r->free_slots);
}

static uint32_t slot_take(struct rd_registry *r)
{
    return r->n_free > 0 ? r->free_slots[--r->n_free] : r->next_slot++;
}

static void slot_give(struct rd_registry *r, uint32_t slot)
{
    if (r->n_free == r->cap_free) {
        size_t ncap = r->cap_free ? r->cap_free * 2 : 64;
        uint32_t *n = realloc(r->free_slots, ncap * sizeof(*n));
        if (n == NULL)
            return; /* the slot is not reused: harmless */
        r->free_slots = n;
        r->cap_free = ncap;
    }
    r->free_slots[r->n_free++] = slot;
}

/* The soft state of `slot` (zeroed when unused), its chunk mapped on first
 * use; NULL on ENOMEM. */
static struct rd_soft *soft_at(struct rd_registry *r, uint32_t slot)
{
    size_t c = slot / RD_SOFT_CHUNK;
    if (c >= r->n_chunks) {
        size_t n = r->n_chunks ? r->n_chunks * 2 : 16;
        while (n <= c)
            n *= 2;
        struct rd_soft **t = realloc(r->chunks, n * sizeof(*t));
        if (t == NULL)
            return NULL;
        memset(t + r->n_chunks, 0, (n - r->n_chunks) * sizeof(*t));
        r->chunks = t;
        r->n_chunks = n;
    }
    if (r->chunks[c] == NULL &&
        (r->chunks[c] = rd_nofork_realloc(NULL, 0, RD_SOFT_CHUNK * sizeof(struct rd_soft))) == NULL)
        return NULL;
    return &r->chunks[c][slot % RD_SOFT_CHUNK];
}

/* Back to unused: its memory freed, zeroed, the slot free again. */
static void soft_drop(struct rd_registry *r, struct rd_soft *s)
{
    uint32_t slot = s->slot;
    free(s->told);
    free(s->node_id);
    memset(s, 0, sizeof(*s));
    slot_give(r, slot);
}

struct rd_soft *rd_registry_get(struct rd_registry *r, const char *id, size_t len)
{
    return rd_map_get(&r->by_id, id, len);
}

struct rd_soft *rd_registry_touch(struct rd_registry *r, const char *id, size_t len, uint64_t epoch,
                                  uint64_t now_ns, uint64_t grace_ns)
{
    struct rd_soft *s = rd_map_get(&r->by_id, id, len);
    if (s == NULL) {
        uint32_t slot = slot_take(r);
        s = soft_at(r, slot);
        if (s == NULL) {
            slot_give(r, slot);
            return NULL;
        }
        s->slot = slot;
        s->node_id = rd_strndup(id, len);
        s->id_len = len;
        if (s->node_id == NULL || rd_map_put(&r->by_id, s->node_id, len, s) != 0) {
            soft_drop(r, s);
            return NULL;
        }
        s->epoch = epoch;
        s->grace_until_ns = now_ns + grace_ns;
        s->watch_wall_ms = rd_now_ms();
        s->generation = ++r->generation;
        return s;
    }
    if (s->epoch != epoch) {
        char *keep = s->node_id;
        uint32_t slot = s->slot;
        struct rd_told *told = s->told; /* kept for the new epoch, emptied */
        uint32_t cap_told = s->cap_told;
        memset(s, 0, sizeof(*s));
        s->node_id = keep;
        s->slot = slot;
        s->told = told;
        s->cap_told = cap_told;
        s->id_len = len;
        s->epoch = epoch;
        s->grace_until_ns = now_ns + grace_ns;
        s->watch_wall_ms = rd_now_ms();
        s->generation = ++r->generation;
    }
    return s;
}

void rd_registry_heartbeat(struct rd_registry *r, struct rd_soft *s, uint64_t now_ns,
                           int64_t wall_ms, uint32_t slots_used, const struct rd_node_metrics *m)
{
    s->heartbeats++;
    s->last_mono_ns = now_ns;
    s->last_wall_ms = wall_ms;
    s->slots_used = slots_used;
    if (m != NULL && m->present)
        s->metrics = *m;
    r->heartbeats_total++;
}

void rd_registry_state_entered(struct rd_registry *r, struct rd_soft *s)
{
    (void)r;
    s->heartbeats_at_state = s->heartbeats;
}

void rd_registry_revoke(struct rd_registry *r, struct rd_soft *s, const char *task_id,
                        uint32_t attempt)
{
    (void)r;
    for (unsigned i = 0; i < s->n_revoked; i++)
        if (s->revoked[i].attempt == attempt && strcmp(s->revoked[i].task_id, task_id) == 0)
            return;
    if (s->n_revoked < RD_REVOKED_MAX) {
        struct rd_revocation *v = &s->revoked[s->n_revoked++];
        snprintf(v->task_id, sizeof(v->task_id), "%s", task_id);
        v->attempt = attempt;
    }
}

unsigned rd_registry_take_revoked(struct rd_registry *r, struct rd_soft *s,
                                  struct rd_revocation out[RD_REVOKED_MAX])
{
    (void)r;
    unsigned n = s->n_revoked;
    memcpy(out, s->revoked, n * sizeof(s->revoked[0]));
    s->n_revoked = 0;
    return n;
}

static int told_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct rd_told *)elem)->task_id);
}

static int told_cmp(const void *a, const void *b)
{
    return told_key_cmp(((const struct rd_told *)a)->task_id, b);
}

/* The entry of `task_id` among those sorted before this answer, or NULL. */
static struct rd_told *told_find(struct rd_soft *s, const char *task_id)
{
    if (s->n_told_sorted == 0)
        return NULL;
    return bsearch(task_id, s->told, s->n_told_sorted, sizeof(*s->told), told_key_cmp);
}

void rd_registry_tell_begin(struct rd_soft *s)
{
    for (uint32_t i = 0; i < s->n_told; i++)
        s->told[i].seen = false;
    s->n_told_sorted = s->n_told;
}

bool rd_registry_tell_due(struct rd_soft *s, const char *task_id, uint32_t attempt, uint64_t now_ns)
{
    struct rd_told *e = told_find(s, task_id);
    if (e == NULL)
        return true;
    e->seen = true;
    if (e->attempt != attempt) { /* placed here again: a new assignment */
        e->attempt = attempt;
        e->times = 0;
        e->due_ns = 0;
    }
    return now_ns >= e->due_ns;
}

void rd_registry_told(struct rd_soft *s, const char *task_id, uint32_t attempt, uint64_t now_ns,
                      uint64_t resend_ns)
{
    struct rd_told *e = told_find(s, task_id);
    if (e == NULL) {
        if (s->n_told == s->cap_told) {
            uint32_t ncap = s->cap_told ? s->cap_told * 2 : 8;
            struct rd_told *n = realloc(s->told, ncap * sizeof(*n));
            if (n == NULL)
                return; /* not recorded: told again in the next answer */
            s->told = n;
            s->cap_told = ncap;
        }
        e = &s->told[s->n_told++]; /* sorted in at rd_registry_tell_end */
        memset(e, 0, sizeof(*e));
        snprintf(e->task_id, sizeof(e->task_id), "%s", task_id);
        e->attempt = attempt;
    }
    if (e->attempt != attempt) {
        e->attempt = attempt;
        e->times = 0;
    }
    e->seen = true;
    if (e->times < UINT32_MAX)
        e->times++;
    uint64_t factor = 1; /* 1, 2, 4 ... RD_TOLD_BACKOFF_MAX for the 1st, 2nd, 3rd ... time */
    for (uint32_t i = 1; i < e->times && factor < RD_TOLD_BACKOFF_MAX; i++)
        factor *= 2;
    /* Saturating: an absurd lease must not wrap into an early resend. */
    e->due_ns =
        resend_ns > (UINT64_MAX - now_ns) / factor ? UINT64_MAX : now_ns + resend_ns * factor;
}

void rd_registry_tell_end(struct rd_soft *s)
{
    bool appended = s->n_told > s->n_told_sorted;
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->n_told; i++)
        if (s->told[i].seen)
            s->told[k++] = s->told[i];
    s->n_told = k;
    s->n_told_sorted = 0;
    if (appended)
        qsort(s->told, s->n_told, sizeof(*s->told), told_cmp);
    if (s->n_told == 0 && s->cap_told > 64) { /* a big node emptied: give the memory back */
        free(s->told);
        s->told = NULL;
        s->cap_told = 0;
    }
}

void rd_registry_untell_all(struct rd_registry *r)
{
    for (size_t i = 0; i < r->by_id.cap; i++) {
        struct rd_soft *soft = r->by_id.slots[i].value;
        if (soft != NULL)
            soft->n_told = 0;
    }
}

void rd_registry_watch_from(struct rd_registry *r, int64_t wall_ms)
{
    for (size_t i = 0; i < r->by_id.cap; i++) {
        struct rd_soft *soft = r->by_id.slots[i].value;
        if (soft != NULL)
            soft->watch_wall_ms = wall_ms;
    }
}

void rd_registry_forget(struct rd_registry *r, const char *id, size_t len)
{
    struct rd_soft *s = rd_map_del(&r->by_id, id, len);
    if (s != NULL)
        soft_drop(r, s);
}
