/*
 * Damage on disk never loses acknowledged data silently (issue 11).
 *
 * libraft reads its directory as a crash left it: a batch that fails its
 * checksum at the end of the log is taken for a torn write and cut off, a
 * damaged last closed segment is renamed corrupt-* and dropped, a missing
 * metadata file means "term 0, no vote". Each of these can throw away
 * entries this replica acknowledged, or the vote it cast, without a line
 * above info. So, before raft reads anything:
 *
 * - the acknowledged mark, <data_dir>/acked1 and acked2 (struct rd_mark),
 *   says how far the log reached: every entry up to `applied` was applied
 *   here (answers to clients go out only after the apply) and stored on
 *   this disk; with the term and vote raft had, and the members' API URLs
 *   (to rejoin through). The replica writes it off the loop, at most every
 *   RD_MARK_PERIOD_MS and only when it changed, and once more at a clean
 *   shutdown, alternately into the two files (as libraft does with
 *   metadata1/2), each write whole, checksummed, numbered and fdatasync'ed
 *   on a descriptor held from start: a torn write leaves the other file,
 *   and no descriptor is needed while running (a process out of them
 *   still keeps its mark);
 * - rd_scan() reads the raft directory read-only, the way libraft will
 *   load it (metadata1/2, the newest valid snapshot, closed and open
 *   segments, every batch's checksums), and finds where the loadable log
 *   ends and why;
 * - rd_judge() compares the two: damage (a checksum failure that is not a
 *   torn final write, a missing segment, metadata missing, zeroed or behind
 *   the term or vote the log or the mark prove, fewer entries than
 *   acknowledged) names the file, what is lost (the index range, and the
 *   commands still readable there: agents, tasks, checkpoints) and how to
 *   recover.
 *
 * What the mark does not cover: acknowledgements of the last
 * RD_MARK_PERIOD_MS (plus one fsync) before a crash. Damage there is still
 * found when it is physical (a closed segment, or valid data after the bad
 * batch); only a bad *final* batch of the open segment written in that
 * window looks exactly like a torn write, and is cut off with a warning
 * line (event=torn_write_dropped), never silently.
 *
 * Blocking file I/O: call at start (before the loop serves) or from the
 * thread pool.
 */
#ifndef RD_DAMAGE_H
#define RD_DAMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define RD_MARK_FILE      "acked" /* acked1, acked2 */
#define RD_MARK_PERIOD_MS 100
#define RD_MARK_MEMBERS   (RD_CFG_MAX_PEERS + 1)

/* ---- the acknowledged mark --------------------------------------------------- */

struct rd_mark {
    uint64_t seq;     /* numbers the writes: the file holding the higher one is the mark */
    uint64_t applied; /* min(last applied, last stored): acknowledged entries end here or before */
    uint64_t stored;  /* last entry persisted on this disk */
    uint64_t term;    /* raft's current term and vote (metadata1/2 must hold at least these) */
    uint64_t vote;
    bool clean;         /* written after raft closed at a clean shutdown */
    int64_t written_ms; /* wall clock of the write */
    unsigned n_members; /* raft's configuration: whom to ask when rejoining */
    struct {
        uint64_t id;
        char api_url[RD_CFG_STR]; /* "" when unknown */
    } members[RD_MARK_MEMBERS];
};

/* Text form (one "key value" per line, then "checksum <fnv1a-64>"). Returns
 * the length written (< cap), or -1 when it does not fit. */
int rd_mark_encode(const struct rd_mark *m, char *buf, size_t cap);
/* 0, or RD_ECORRUPT with `why` when the text or its checksum is wrong. */
int rd_mark_decode(const char *buf, size_t len, struct rd_mark *m, char *why, size_t n);
/* The newer valid one of <data_dir>/acked1 and acked2: 0, RD_ENOTFOUND (no
 * mark yet), RD_ECORRUPT (neither is valid) or RD_EIO, with `why`. */
int rd_mark_load(const char *data_dir, struct rd_mark *m, char *why, size_t n);

/* Both files, open for writing (created when missing). */
struct rd_mark_files {
    int fd[2]; /* -1 when closed */
};
/* 0 or RD_EIO with `why` (then nothing is left open). */
int rd_mark_open(const char *data_dir, struct rd_mark_files *f, char *why, size_t n);
/* Writes `m` whole into file 1 + m->seq % 2 and fdatasyncs it. 0 or RD_EIO. */
int rd_mark_write(struct rd_mark_files *f, const struct rd_mark *m, char *why, size_t n);
void rd_mark_close(struct rd_mark_files *f);
/* Open, write, close (tests, repairs). 0 or RD_EIO with `why`. */
int rd_mark_store(const char *data_dir, const struct rd_mark *m, char *why, size_t n);
/* Moves both files (those present) from `data_dir` into `to_dir`. 0 or RD_EIO. */
int rd_mark_move(const char *data_dir, const char *to_dir, char *why, size_t n);

/* ---- the raft directory as libraft will load it ----------------------------- */

enum rd_meta_state {
    RD_META_ABSENT = 0,
    RD_META_OK,
    RD_META_SHORT,      /* fewer than 32 bytes: libraft deletes it and forgets it */
    RD_META_BAD,        /* 32 bytes of another format (zeroed): libraft refuses to start */
    RD_META_ZERO,       /* version 0 */
    RD_META_LONG,       /* more than 32 bytes */
    RD_META_UNREADABLE, /* an I/O error */
};

/* Commands found in entries (lost ones are counted for the report). */
struct rd_cmd_count {
    uint64_t entries; /* entries read */
    uint64_t nodes;   /* agent registrations */
    uint64_t tasks;   /* task submissions */
    uint64_t checkpoints;
    uint64_t other;   /* other commands, configuration changes, barriers */
    int64_t first_ms; /* stamps of the oldest and newest command among them */
    int64_t last_ms;
};

#define RD_SCAN_NAME 64

struct rd_scan {
    struct {
        enum rd_meta_state state;
        uint64_t version, term, vote;
        long long size;
    } meta[2];             /* metadata1, metadata2 */
    bool meta_tie;         /* both at one version: libraft refuses */
    uint64_t term, vote;   /* what libraft will load (the higher version) */
    uint64_t meta_version; /* its version (0: none) */

    bool any_data;        /* segments or snapshots exist */
    unsigned n_snapshots; /* with a .meta and a data file */
    uint64_t snap_index;  /* the newest one whose .meta is valid (0: none) */
    uint64_t snap_term;
    char snap_bad[RD_SCAN_NAME]; /* a newer snapshot skipped: its .meta is damaged */
    /* Snapshots whose .meta holds but whose data fails its checks: libraft
     * would load the newest and fail; rd_repair moves them aside and the
     * scan reads the log from the older snapshot (or from the start). */
    unsigned n_snap_damaged;
    char snap_damaged[4][RD_SCAN_NAME]; /* data files, newest first */
    uint64_t snap_damaged_index;        /* the newest one's index */
    char snap_damaged_what[160];        /* why the newest one fails */

    unsigned n_closed, n_open;
    uint64_t last_index; /* the loadable log (or the snapshot) ends here */
    uint64_t last_term;  /* term of that entry */
    uint64_t max_term;   /* the highest term of any entry or snapshot on disk */
    uint64_t disk_last;  /* the highest index any file holds or names */

    /* The first damage above the snapshot: the loadable log stops before it. */
    bool damaged;
    char file[RD_SCAN_NAME]; /* the segment (or "" for a gap) */
    long long offset;        /* byte of the bad batch */
    char what[160];          /* "data checksum mismatch", "entries 10-20 missing" */
    bool gap;                /* no file holds the entries after last_index */

    /* A torn final write: a bad last batch of the open segment, nothing
     * valid after it. Acknowledged entries may or may not be in it: the
     * mark decides (rd_judge). */
    bool torn;
    char torn_file[RD_SCAN_NAME];
    long long torn_offset;

    /* Damage in segments the snapshot covers: nothing is lost, but libraft
     * would refuse to load them; rd_repair moves them aside. */
    /*
     * An open segment libraft failed to close (its finalization, truncate
     * and rename, failed: descriptors or space exhausted) while later ones
     * were closed: it holds exactly the entries missing between two closed
     * segments, which libraft alone cannot load. rd_repair_unfinalized
     * closes it under its name (nothing is lost).
     */
    char unfinalized[RD_SCAN_NAME];
    uint64_t unfinalized_first, unfinalized_last;
    long long unfinalized_end; /* bytes it keeps */

    unsigned n_stale_bad;
    char stale_bad[RD_SCAN_NAME]; /* the newest such segment */
    uint64_t stale_end;           /* its last index: it and older closed segments go */

    /* Where rd_repair cuts the log (the segment holding last_index + 1). */
    char cut_file[RD_SCAN_NAME];
    long long cut_offset; /* bytes kept */
    uint64_t cut_first;   /* its first index */

    struct rd_cmd_count lost; /* commands readable in entries past last_index */

    unsigned n_corrupt; /* corrupt-* files libraft left at earlier starts */
    char corrupt[RD_SCAN_NAME];
};

/* Reads `raft_dir` (which may not exist: an empty scan). 0, or RD_EIO with
 * `why` when it cannot be read at all. Changes nothing. */
int rd_scan(const char *raft_dir, struct rd_scan *s, char *why, size_t n);

/* ---- the verdict ------------------------------------------------------------- */

struct rd_damage_verdict {
    bool damaged;     /* refuse (single replica) or move aside and rejoin (cluster) */
    bool log_lost;    /* entries are lost: lost_first..lost_last */
    bool meta_lost;   /* term or vote lost or unreadable */
    bool torn;        /* a torn write outside the mark is dropped: warn */
    bool stale;       /* damage the snapshot covers: repaired without loss */
    bool unfinalized; /* an open segment libraft failed to close: closed without loss */
    uint64_t lost_first, lost_last;
    char file[RD_SCAN_NAME + 8]; /* "raft/<name>", or "raft" when no file is at fault */
    char report[2048];           /* what is damaged and what is lost, in sentences */
    char lost_summary[384];      /* "entries 1234-4420 (3187: 7 agent registrations, ...)" */
};

/* `mark` may be NULL (no mark: a directory from before the mark existed). */
void rd_judge(const struct rd_scan *s, const struct rd_mark *mark, struct rd_damage_verdict *v);

/* "<data_dir>/damaged-20261202T160102Z" for now, created (a suffix -2, -3
 * when taken). 0 or RD_EIO with `why`. */
int rd_damage_dir(const char *data_dir, char *out, size_t cap, char *why, size_t n);

/*
 * --accept-data-loss: copies every file of `raft_dir` into `aside` (kept
 * for inspection), then cuts the log where the scan says it stops being
 * loadable (the segment holding the cut is truncated at its last good batch
 * and renamed closed, later segments removed), moves the snapshot-covered
 * damaged segments away, and rewrites damaged metadata with a term at
 * least the highest known (`mark` may be NULL) and no vote. libraft then
 * loads exactly up to s->last_index. 0 or RD_EIO with `why`.
 */
int rd_repair(const char *raft_dir, const char *aside, const struct rd_scan *s,
              const struct rd_mark *mark, char *why, size_t n);

/*
 * Before rd_scan(): closes the open segments libraft failed to close while
 * running (a failed truncate/rename, e.g. no descriptor left), which leaves
 * a gap between closed segments whose entries sit in the oldest open
 * segments. Only when those open segments are intact and hold exactly the
 * gap's entries (terms and command times in order with the neighbours);
 * anything else is left to the damage check. `*closed` is the number of
 * segments closed, `done` names them. 0 or RD_EIO with `why`.
 */
int rd_close_stranded(const char *raft_dir, int *closed, char *done, size_t cap, char *why,
                      size_t n);

/*
 * Only the snapshot-covered damage (v->stale without other damage): moves
 * those segments into `aside`. 0 or RD_EIO with `why`.
 */
int rd_repair_stale(const char *raft_dir, const char *aside, const struct rd_scan *s, char *why,
                    size_t n);

/*
 * A torn write at byte 0 of an open segment (its format header is not
 * libraft's, a preallocated segment whose first write tore): libraft would
 * refuse the file ("unexpected format version") instead of cutting it off
 * as it does a torn batch, so it is moved into `aside` (it holds no entry
 * libraft could load). Nothing to do otherwise. 0 or RD_EIO with `why`.
 */
int rd_repair_torn_header(const char *raft_dir, const char *aside, const struct rd_scan *s,
                          char *why, size_t n);

/* Closes s->unfinalized as the segment it should have become. 0 or RD_EIO. */
int rd_repair_unfinalized(const char *raft_dir, const struct rd_scan *s, char *why, size_t n);

/* Renames `from` to `to` (same filesystem) and fsyncs both parents. 0 or RD_EIO. */
int rd_move_aside(const char *from, const char *to, char *why, size_t n);

/* ---- the rejoin note ---------------------------------------------------------- */

/*
 * <data_dir>/rejoin: this replica is rejoining from its peers (its state was
 * damaged, or diverged). Present from before its state moves aside until
 * the leader made it a voter again, so an interrupted rejoin resumes
 * (never a bootstrap, never a vote with an empty log).
 */
#define RD_REJOIN_FILE "rejoin"

struct rd_rejoin_note {
    bool moved;        /* the old state is already aside: raft/ holds the new log */
    int previous_role; /* RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE; -1 until the leader said */
    int64_t since_ms;
    char reason[512];
};

/* 0, RD_ENOTFOUND (none), or RD_ECORRUPT (unreadable: treat as not moved). */
int rd_rejoin_load(const char *data_dir, struct rd_rejoin_note *note);
/* Atomic and durable, like the mark. 0 or RD_EIO with `why`. */
int rd_rejoin_store(const char *data_dir, const struct rd_rejoin_note *note, char *why, size_t n);
/* Removes it (durably). 0 or RD_EIO. */
int rd_rejoin_clear(const char *data_dir);

/* Names of corrupt-* files in `raft_dir`, for comparing before and after raft
 * loaded it: the count, and the newest name in `name`. */
unsigned rd_corrupt_files(const char *raft_dir, char name[RD_SCAN_NAME]);

#endif
