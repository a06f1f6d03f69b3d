/*
 * The live event stream's source (GET /api/v1/events, docs/events.md): one
 * bounded ring of this replica's recent events, each already formatted as
 * one Server-Sent Events frame.
 *
 * Log-derived events (nodes, faults, tasks, recovery runs, backups,
 * consistency results) come from the state machine's observers while an
 * entry applies, on every replica (followers too): they are collected with
 * rd_events_log() and pushed together by rd_events_commit() when the entry
 * is done, so every replica gives them the same ids. Local events (leader
 * changes, policy reloads, alerts) are pushed at once by rd_events_local().
 *
 * An event's id is "INDEX.ORD": the raft index of the entry that caused it
 * and its ordinal within that entry; a local event takes the applied index
 * and the next ordinal. Ids only grow in the ring, so a client resumes by
 * id (rd_events_resume). The ring is complete after its floor: every event
 * with an id above the floor is held; one evicted, or skipped by a snapshot
 * restore, raises it. A stream holds only its position, a sequence number.
 *
 * No h2o in here (tests/unit/events). Loop-thread only.
 */
#ifndef RD_EVENTS_H
#define RD_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rd_event_kind {
    RD_EV_NODE = 0,        /* a node's state changed (registered, failed, drained, left...) */
    RD_EV_FAULT_OPENED,    /* a fault record was opened */
    RD_EV_FAULT_RESOLVED,  /* a fault record was resolved */
    RD_EV_TASK,            /* a task changed state or agent (submitted, placed, moved, ended) */
    RD_EV_RECOVERY_OPENED, /* a recovery run began */
    RD_EV_RECOVERY_CLOSED, /* a recovery run ended */
    RD_EV_BACKUP,          /* a backup began, completed, failed, was verified or removed */
    RD_EV_CONSISTENCY,     /* a consistency check's verdict */
    RD_EV_LEADER,          /* local: this replica's view of the leader changed */
    RD_EV_POLICY_RELOAD,   /* local: a policy reload succeeded or failed */
    RD_EV_ALERT,           /* local: this replica raised or resolved an alert */
    RD_EV_CONFLICT,        /* availability mode: a write of a superseded attempt was recorded */
    RD_EV_KIND_COUNT
};

/* "node", "fault_opened", ...; NULL for a kind out of range. */
const char *rd_event_kind_name(int kind);
/* The kind named by [s, s+len), or -1. */
int rd_event_kind_parse(const char *s, size_t len);

#define RD_EVENTS_NODE_MAX 255 /* bytes of the node an event is about */

/* An event id: the raft index and the ordinal within it. */
struct rd_event_id {
    uint64_t index;
    uint32_t ord;
};

/* -1, 0, 1 as a is before, equal to or after b. */
int rd_event_id_cmp(struct rd_event_id a, struct rd_event_id b);
/* Parses "INDEX.ORD" or "INDEX" (ord 0 then means "after INDEX's last
 * event": INDEX.ORD_MAX). false for anything else. */
bool rd_event_id_parse(const char *s, size_t len, struct rd_event_id *out);

struct rd_event {
    uint64_t seq; /* position in the ring's history, from 0 */
    struct rd_event_id id;
    uint8_t kind;
    uint16_t node_len;
    char *node;  /* the node it is about ("" for none), inside this allocation */
    size_t len;  /* bytes of frame */
    char *frame; /* "id: ..\nevent: ..\ndata: {..}\n\n", inside this allocation */
};

struct rd_events_pending {
    uint8_t kind;
    bool local; /* a local event raised during the apply: after the entry's own */
    char node[RD_EVENTS_NODE_MAX + 1];
    json_t *fields;
};

struct rd_events {
    struct rd_event **slots; /* slots[seq % cap] */
    size_t cap;
    uint64_t head;            /* seq of the oldest event held */
    uint64_t next;            /* seq the next event gets */
    size_t bytes;             /* frames held */
    struct rd_event_id last;  /* the newest id handed out */
    struct rd_event_id floor; /* every event with an id above this is held */
    uint64_t restores_seen;   /* the machine's restore count at the last look */
    /* Log-derived events of the entry being applied. */
    struct rd_events_pending *pend;
    size_t n_pend, cap_pend;
    size_t cmd_from; /* pend[cmd_from..n_pend): the command being applied's */
    uint64_t pend_index;
    int64_t last_time_ms; /* of the newest entry committed */
    uint64_t pushed;      /* events pushed (recoveryd_events_total) */
    uint64_t evicted;     /* events that left the ring for room */
    uint64_t dropped_nomem;
    /* Called after events were pushed (the streams send them). */
    void (*notify)(void *data);
    void *notify_data;
};

/* An empty ring of `cap` events (at least 2). 0 or RD_ENOMEM. */
int rd_events_init(struct rd_events *ev, size_t cap);
void rd_events_close(struct rd_events *ev);

/*
 * A log-derived event of the entry at `index`, being applied: `fields`
 * (stolen) are the record's; pushed by rd_events_commit(). `node` may be
 * NULL.
 */
void rd_events_log(struct rd_events *ev, uint64_t index, int kind, const char *node,
                   json_t *fields);
/* The entry at `index` applied at leader time `time_ms`: its events go
 * into the ring, in the order they were given. */
void rd_events_commit(struct rd_events *ev, uint64_t index, int64_t time_ms);
/*
 * A local event (stolen `fields`): now, at the applied index `applied`; or,
 * raised while the entry at `applying` applies (not 0), after that entry's
 * own events, so the log-derived ids stay the same on every replica.
 */
void rd_events_local(struct rd_events *ev, uint64_t applied, uint64_t applying, int64_t time_ms,
                     int kind, const char *node, json_t *fields);
/*
 * The machine restored a snapshot (its restore count `restores` moved since
 * the last call): the events up to `applied` were never seen here, so the
 * floor rises to it.
 */
void rd_events_note_restores(struct rd_events *ev, uint64_t restores, uint64_t applied);

/* The event at `seq`, or NULL when it is no longer (or not yet) held. */
const struct rd_event *rd_events_at(const struct rd_events *ev, uint64_t seq);
/*
 * Where a client that saw `after` resumes: true and the seq of the first
 * event after it, or false when the ring no longer holds everything after
 * it (the client must resync; it then goes on from ev->next).
 */
bool rd_events_resume(const struct rd_events *ev, struct rd_event_id after, uint64_t *seq);

/* ---- from the state machine (sources.c) --------------------------------- */

struct rd_fsm;
struct rd_node;
struct rd_fault;
struct rd_task;
struct rd_cmd;

/* The observers' events (fsm.h), while the entry at `index` applies. */
void rd_events_node(struct rd_events *ev, uint64_t index, const struct rd_node *n, int old_state);
void rd_events_fault(struct rd_events *ev, uint64_t index, const struct rd_fault *x);
/* Only a change of state or agent is an event (checkpoint writes are not). */
void rd_events_task(struct rd_events *ev, uint64_t index, const struct rd_task *t, int old_state,
                    const char *old_node);
/*
 * A command of the entry at `index` is applied (the on_command observer,
 * once per command, alone or in a batch): the events of the records it
 * changed that have no observer of their own (recovery runs, backups, check
 * verdicts, conflicts) are added, and a placement's task event names the
 * recovery run that made it.
 */
void rd_events_command(struct rd_events *ev, const struct rd_fsm *f, uint64_t index,
                       const struct rd_cmd *cmd);
/* The entry at `index` is applied (the on_entry observer): its events go
 * into the ring. */
void rd_events_entry(struct rd_events *ev, const struct rd_fsm *f, uint64_t index, int64_t time_ms);

#endif
