#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "recoveryd/error.h"

static const char *const kind_names[RD_EV_KIND_COUNT] = {
    "node",          "fault_opened",    "fault_resolved",
    "task",          "recovery_opened", "recovery_closed",
    "backup",        "consistency",     "leader",
    "policy_reload", "alert",           "conflict",
};

const char *rd_event_kind_name(int kind)
{
    return kind >= 0 && kind < RD_EV_KIND_COUNT ? kind_names[kind] : NULL;
}

int rd_event_kind_parse(const char *s, size_t len)
{
    for (int k = 0; k < RD_EV_KIND_COUNT; k++)
        if (strlen(kind_names[k]) == len && memcmp(kind_names[k], s, len) == 0)
            return k;
    return -1;
}

int rd_event_id_cmp(struct rd_event_id a, struct rd_event_id b)
{
    if (a.index != b.index)
        return a.index < b.index ? -1 : 1;
    if (a.ord != b.ord)
        return a.ord < b.ord ? -1 : 1;
    return 0;
}

/* Decimal digits [s, s+len) into `out`, at most `max`. */
static bool parse_dec(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool rd_event_id_parse(const char *s, size_t len, struct rd_event_id *out)
{
    const char *dot = memchr(s, '.', len);
    uint64_t index, ord = UINT32_MAX;
    if (!parse_dec(s, dot ? (size_t)(dot - s) : len, INT64_MAX, &index))
        return false;
    if (dot != NULL && !parse_dec(dot + 1, len - (size_t)(dot + 1 - s), UINT32_MAX, &ord))
        return false;
    out->index = index;
    out->ord = (uint32_t)ord;
    return true;
}

int rd_events_init(struct rd_events *ev, size_t cap)
{
    memset(ev, 0, sizeof(*ev));
    if (cap < 2)
        cap = 2;
    ev->slots = calloc(cap, sizeof(*ev->slots));
    if (ev->slots == NULL)
        return RD_ENOMEM;
    ev->cap = cap;
    ev->floor = (struct rd_event_id){0, UINT32_MAX};
    return 0;
}

static void clear_pending(struct rd_events *ev)
{
    for (size_t i = 0; i < ev->n_pend; i++)
        json_decref(ev->pend[i].fields);
    ev->n_pend = 0;
    ev->cmd_from = 0;
}

void rd_events_close(struct rd_events *ev)
{
    if (ev->slots != NULL)
        for (uint64_t s = ev->head; s < ev->next; s++)
            free(ev->slots[s % ev->cap]);
    clear_pending(ev);
    free(ev->pend);
    free(ev->slots);
    memset(ev, 0, sizeof(*ev));
}

/* The next id at `index`: ordinals count within an index; ids never go back
 * (a replica that rejoined starts its log again: its ids go on from the last). */
static struct rd_event_id next_id(struct rd_events *ev, uint64_t index)
{
    struct rd_event_id id;
    if (index > ev->last.index)
        id = (struct rd_event_id){index, 0};
    else
        id = (struct rd_event_id){ev->last.index, ev->last.ord + 1};
    ev->last = id;
    return id;
}

/* Formats and pushes one event (fields stolen), evicting the oldest when full. */
static void push(struct rd_events *ev, struct rd_event_id id, int64_t time_ms, int kind,
                 const char *node, json_t *fields)
{
    if (fields == NULL)
        fields = json_object();
    char ids[48], at[RD_TIME_STRLEN];
    snprintf(ids, sizeof(ids), "%llu.%u", (unsigned long long)id.index, id.ord);
    rd_time_format(time_ms, at);
    size_t nlen = node ? strnlen(node, RD_EVENTS_NODE_MAX) : 0;
    json_object_set_new(fields, "id", json_string(ids));
    json_object_set_new(fields, "kind", json_string(kind_names[kind]));
    json_object_set_new(fields, "index", json_integer((json_int_t)id.index));
    json_object_set_new(fields, "time", json_string(at));
    json_object_set_new(fields, "node", nlen ? json_stringn(node, nlen) : json_null());
    char *data = json_dumps(fields, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(fields);
    if (data == NULL) {
        ev->dropped_nomem++;
        return;
    }
    /* JSON_COMPACT never writes a newline: the data is one line. */
    int flen = snprintf(NULL, 0, "id: %s\nevent: %s\ndata: %s\n\n", ids, kind_names[kind], data);
    struct rd_event *e = malloc(sizeof(*e) + nlen + 1 + (size_t)flen + 1);
    if (e == NULL) {
        free(data);
        ev->dropped_nomem++;
        return;
    }
    e->id = id;
    e->kind = (uint8_t)kind;
    e->node = (char *)(e + 1);
    memcpy(e->node, node ? node : "", nlen);
    e->node[nlen] = '\0';
    e->node_len = (uint16_t)nlen;
    e->frame = e->node + nlen + 1;
    e->len = (size_t)flen;
    snprintf(e->frame, (size_t)flen + 1, "id: %s\nevent: %s\ndata: %s\n\n", ids, kind_names[kind],
             data);
    free(data);
    if (ev->next - ev->head == ev->cap) {
        struct rd_event *old = ev->slots[ev->head % ev->cap];
        if (rd_event_id_cmp(old->id, ev->floor) > 0)
            ev->floor = old->id;
        ev->bytes -= old->len;
        free(old);
        ev->head++;
        ev->evicted++;
    }
    e->seq = ev->next++;
    ev->slots[e->seq % ev->cap] = e;
    ev->bytes += e->len;
    ev->pushed++;
}

static void add_pending(struct rd_events *ev, uint64_t index, int kind, bool local,
                        const char *node, json_t *fields)
{
    /* Events of an entry whose apply never finished (it failed) go now. */
    if (ev->n_pend > 0 && ev->pend_index != index)
        rd_events_commit(ev, ev->pend_index, ev->last_time_ms);
    if (ev->n_pend == ev->cap_pend) {
        size_t cap = ev->cap_pend ? ev->cap_pend * 2 : 8;
        struct rd_events_pending *p = realloc(ev->pend, cap * sizeof(*p));
        if (p == NULL) {
            ev->dropped_nomem++;
            json_decref(fields);
            return;
        }
        ev->pend = p;
        ev->cap_pend = cap;
    }
    struct rd_events_pending *p = &ev->pend[ev->n_pend++];
    p->kind = (uint8_t)kind;
    p->local = local;
    snprintf(p->node, sizeof(p->node), "%s", node ? node : "");
    p->fields = fields;
    ev->pend_index = index;
}

void rd_events_log(struct rd_events *ev, uint64_t index, int kind, const char *node, json_t *fields)
{
    if (kind < 0 || kind >= RD_EV_KIND_COUNT) {
        json_decref(fields);
        return;
    }
    add_pending(ev, index, kind, false, node, fields);
}

void rd_events_commit(struct rd_events *ev, uint64_t index, int64_t time_ms)
{
    if (ev->n_pend == 0 || ev->pend_index != index)
        return;
    /* The entry's own events first, then local ones raised meanwhile. */
    for (int local = 0; local < 2; local++) {
        for (size_t i = 0; i < ev->n_pend; i++) {
            struct rd_events_pending *p = &ev->pend[i];
            if (p->local != (local == 1))
                continue;
            push(ev, next_id(ev, index), local ? rd_now_ms() : time_ms, p->kind, p->node,
                 p->fields);
            p->fields = NULL;
        }
    }
    ev->n_pend = 0;
    ev->cmd_from = 0;
    if (time_ms > ev->last_time_ms)
        ev->last_time_ms = time_ms;
    if (ev->notify != NULL)
        ev->notify(ev->notify_data);
}

void rd_events_local(struct rd_events *ev, uint64_t applied, uint64_t applying, int64_t time_ms,
                     int kind, const char *node, json_t *fields)
{
    if (kind < 0 || kind >= RD_EV_KIND_COUNT) {
        json_decref(fields);
        return;
    }
    if (applying != 0) {
        add_pending(ev, applying, kind, true, node, fields);
        return;
    }
    push(ev, next_id(ev, applied), time_ms, kind, node, fields);
    if (ev->notify != NULL)
        ev->notify(ev->notify_data);
}

void rd_events_note_restores(struct rd_events *ev, uint64_t restores, uint64_t applied)
{
    if (restores == ev->restores_seen)
        return;
    ev->restores_seen = restores;
    struct rd_event_id f = {applied, UINT32_MAX};
    if (rd_event_id_cmp(f, ev->floor) > 0)
        ev->floor = f;
}

const struct rd_event *rd_events_at(const struct rd_events *ev, uint64_t seq)
{
    if (seq < ev->head || seq >= ev->next)
        return NULL;
    return ev->slots[seq % ev->cap];
}

bool rd_events_resume(const struct rd_events *ev, struct rd_event_id after, uint64_t *seq)
{
    if (rd_event_id_cmp(after, ev->floor) < 0)
        return false;
    /* Ids grow with seq: the first event after `after`, by bisection. */
    uint64_t lo = ev->head, hi = ev->next;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (rd_event_id_cmp(ev->slots[mid % ev->cap]->id, after) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *seq = lo;
    return true;
}
