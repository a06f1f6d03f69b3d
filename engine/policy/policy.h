/*
 * The Lua policy host: recovery strategies as sandboxed LuaJIT scripts
 * (DESIGN.md decision 7: policies decide, the engine acts).
 *
 * A host is one loaded generation of every *.lua file of a policy directory:
 * `select.lua` (which strategy handles an event) plus one file per strategy
 * (`fast_recovery.lua`, `safe_recovery.lua`, `degraded_service.lua`, or any
 * custom one). policies/README.md is the contract for policy authors.
 *
 * Build the new, swap on success (STYLE.md 7): rd_policy_load() builds a
 * whole new generation in its own lua_State and runs every file's self_test;
 * the engine keeps its current host until the new one loaded, then swaps and
 * frees the old one. Loading never touches another host.
 *
 * Sandbox, per generation:
 * - lua_newstate with a capping allocator: no allocation beyond
 *   `memory_limit` bytes for the whole state; a memory bomb fails its call
 *   with RD_ENOMEM and the host stays usable;
 * - a wall-clock budget per call, enforced by a count hook (every 1000 VM
 *   instructions). The JIT is never opened, switched off for the whole
 *   engine and off for every loaded chunk (LUAJIT_MODE_ALLFUNC): count hooks
 *   never fire inside compiled traces, and with the JIT on a plain
 *   `while true do end` was measured to run forever despite the hook;
 * - text chunks only (bytecode is refused); each file runs in its own
 *   environment built from an allow-list: assert error ipairs next pairs
 *   pcall xpcall select tonumber tostring type unpack print _VERSION, and
 *   copies of string (without dump), table, math, bit. No io, os, package,
 *   require, load*, dofile, debug, jit, ffi, coroutine, getmetatable,
 *   setmetatable, getfenv/setfenv, raw*, collectgarbage, newproxy.
 *   string.dump is also removed from the real string table that strings
 *   index through their metatable, so ("").dump is nil too. print goes to
 *   the engine log at debug level. pcall/xpcall cannot swallow a timeout or
 *   a memory error: they re-raise it.
 * - C library calls the hook cannot interrupt (issue 12: one string.find
 *   held the loop for 471 s): string.find/match/gmatch/gsub and table.sort
 *   are wrapped in the real library tables (so `s:find` is covered too).
 *   Each call is priced before it runs (policy/bounds.h: an upper bound on
 *   the matcher's backtracking from the pattern and the subject, or on a
 *   plain find's memcmp work) and refused when its worst case does not fit
 *   in the time left; the refusal ends the call like the budget error
 *   (RD_ETIMEOUT, pcall cannot hide it). string.rep refuses results over
 *   RD_POLICY_MAX_REP (1 MiB) as an ordinary error. The deadline is checked
 *   again when a wrapped function returns and when select, plan, a file's
 *   top level or self_test return, so time spent where no hook fires still
 *   fails the call. At the deadline a one-shot timer (a real-time signal to
 *   the calling thread) sets the hook to fire at the next instruction, and
 *   allocations of 64 KiB or more past it fail: one VM instruction can be
 *   long work on a large string. The collection after a failed call runs
 *   with the memory cap lifted, so a state filled to the cap recovers.
 *
 * Threads: a host is used by one thread at a time (the loop thread); hosts
 * are independent of each other. The only process-wide state is the
 * deadline timer's signal handler (SIGRTMIN + 4, installed at the first
 * call) and one POSIX timer per thread that has made a call.
 */
#ifndef RD_POLICY_H
#define RD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define RD_POLICY_ERRLEN      512        /* a comfortable size for `err` buffers */
#define RD_POLICY_MAX_FILES   32         /* *.lua files per directory, select.lua included */
#define RD_POLICY_MAX_FILE    (1u << 20) /* bytes per policy file */
#define RD_POLICY_MAX_NAME    40         /* file stem: [a-z][a-z0-9_]{0,39} */
#define RD_POLICY_MAX_ACTIONS 10000      /* actions in one plan */
#define RD_POLICY_JSON_DEPTH  32         /* nesting of event/view objects */
#define RD_POLICY_LOAD_FACTOR 10         /* top level + self_test get budget x this at load */

struct rd_policy_host; /* opaque; one loaded generation of all policy files */

/*
 * Loads every *.lua file in `dir` (dotfiles are ignored; select.lua is
 * required, plus at least one strategy file) into a fresh sandboxed
 * lua_State, checks each file's returned table (name equal to the file stem;
 * select.lua has `select`, strategies have `plan`; every file has
 * `self_test`) and runs each self_test. Chunk names are "@policies/<file>",
 * so Lua errors read "policies/<file>:LINE: message" whatever `dir` is.
 *
 * `budget_ms` (>= 1) bounds each rd_policy_plan call; loading runs each
 * file's top level and self_test with budget_ms x RD_POLICY_LOAD_FACTOR.
 * `memory_limit` caps the Lua state's memory in bytes (the empty sandbox
 * takes about 100 KiB).
 *
 * Returns 0 and sets *out to a new host owned by the caller (release with
 * rd_policy_free). On error returns RD_ECONFIG (missing or unreadable
 * directory or file, syntax error, bytecode, a bad returned table, a failing
 * or over-budget self_test, ...), RD_ENOMEM (the host's own allocation
 * failed) or RD_EINVAL (NULL arguments), writes "FILE:LINE: message" (or
 * "FILE: message" when there is no line) into `err` and leaves *out
 * untouched.
 */
int rd_policy_load(const char *dir, uint64_t budget_ms, size_t memory_limit,
                   struct rd_policy_host **out, char *err, size_t errlen);

/* Closes the host's lua_State and frees it. NULL is a no-op. */
void rd_policy_free(struct rd_policy_host *h);

/*
 * The generation's version: 16 hex digits of a content hash (FNV-1a 64) over
 * every loaded file's name and bytes. Changes when any file changes, is
 * added or removed. Owned by the host.
 */
const char *rd_policy_version(const struct rd_policy_host *h);

/* True when this generation has a strategy file named `name` (API checks of
 * a requested strategy). */
bool rd_policy_has_strategy(const struct rd_policy_host *h, const char *name);

/* The actions a plan may hold (policies/README.md has each one's fields). */
enum rd_action_kind {
    RD_ACT_REASSIGN = 0,
    RD_ACT_WAIT,
    RD_ACT_PAUSE,
    RD_ACT_ISOLATE,
    RD_ACT_CHECK_CONSISTENCY,
    RD_ACT_ALERT,
    RD_ACT_DEGRADE,
    RD_ACT_KIND_COUNT
};

/* One validated action; the fields its kind does not use are NULL / 0. */
struct rd_action {
    enum rd_action_kind kind;
    char *task_id;        /* reassign, wait, pause, check_consistency */
    char *node_id;        /* reassign: the target (NULL: placement chooses); isolate */
    char *text;           /* wait: the reason (may be NULL); alert: the summary */
    const char *severity; /* alert: critical, major, minor or warning (static) */
    long long order;      /* reassign: lower first (the plan is sorted by it already) */
    unsigned percent;     /* degrade: performance_limit, 0-100 */
};

/* A strategy's plan, validated and typed once, in the host. */
struct rd_plan {
    char strategy[RD_POLICY_MAX_NAME + 1]; /* the strategy that planned it */
    struct rd_action *actions;
    size_t n;
};

/* The name of an action kind ("reassign", ...). */
const char *rd_action_name(enum rd_action_kind k);
/* Releases what a plan holds (not the struct itself). */
void rd_plan_free(struct rd_plan *p);
/* The plan as JSON ({"strategy", "actions": [{"action", fields...}]}), for
 * logs and tests; NULL on ENOMEM. */
json_t *rd_plan_json(const struct rd_plan *p);

/*
 * The view's `nodes` (one object per agent, policies/README.md), built only
 * when a policy reads view.nodes: the JSON of a fleet of 10,000 agents costs
 * milliseconds to build, and the shipped policies never read it. The host
 * calls `build(data)` the first time a call reads view.nodes while `built`
 * is NULL, and keeps the array it returns (a new reference; NULL when out of
 * memory) in `built`: every later call given the same source uses it, so a
 * pass that makes several calls builds it at most once. The time `build`
 * takes does not count against the call's budget. The caller releases what
 * was built with rd_policy_nodes_release after its last call.
 */
struct rd_policy_nodes {
    json_t *(*build)(void *data);
    void *data;
    json_t *built; /* NULL until a policy read view.nodes */
};

/* Frees what `n` built (the source can build again); NULL is a no-op. */
void rd_policy_nodes_release(struct rd_policy_nodes *n);

/*
 * Calls select(event, view), then the chosen strategy's plan(event, view),
 * under one budget and the memory cap. `event` and `view` are JSON objects
 * (policies/README.md has their shape), borrowed; each Lua call gets its own
 * freshly converted tables, so what one call changes in them is seen by
 * nobody else (JSON null becomes nil; numbers become Lua numbers).
 * view.nodes is converted to Lua only when the policy reads it (then once
 * per call); it comes from `nodes` when that is not NULL (a `nodes` member
 * of `view` is then left out), else from the view's own `nodes` array.
 *
 * The returned plan is validated against the action schema and typed into
 * `*plan_out` (released with rd_plan_free); a reassign always has an order
 * (its 1-based position when the policy gave none) and a target only when
 * the policy chose one; the reassigns come sorted by order.
 *
 * Returns 0 and fills *plan_out, or leaves it untouched and returns:
 * RD_EINVAL   the policy raised an error, returned a malformed plan (unknown
 *             action or field, missing task_id, wrong type, ...) or select
 *             named an unknown strategy;
 * RD_ETIMEOUT the call ran past budget_ms, or a string or table library
 *             call it made could not fit in what was left of it;
 * RD_ENOMEM   the Lua state hit memory_limit (or a conversion's allocation
 *             failed, or `nodes` could not build them);
 * with "policies/FILE:LINE: why" in `err` (for memory errors the line is the
 * last one the budget hook sampled, "near line N"). The host stays usable
 * after any failure.
 */
int rd_policy_plan(struct rd_policy_host *h, json_t *event, json_t *view,
                   struct rd_policy_nodes *nodes, struct rd_plan *plan_out, char *err,
                   size_t errlen);

/*
 * The optional hooks of select.lua, besides select (policies/README.md,
 * "Hooks"): `predicted(event, view)` answers a predicted fault with "drain"
 * or "watch"; `rebalance(event, view)` returns the list of the proposed
 * moves' task ids it allows; `on_conflict(event, view)` answers a conflict
 * (availability mode: a write of a superseded attempt) with "keep_newer",
 * "keep_progress" or "fail_task". A hook that select.lua defines is loaded
 * with it (a value that is not a function refuses the load).
 */
enum rd_policy_hook {
    RD_HOOK_PREDICTED = 0,
    RD_HOOK_REBALANCE,
    RD_HOOK_ON_CONFLICT,
    RD_HOOK_COUNT
};

/* True when this generation's select.lua defines `hook`. */
bool rd_policy_has_hook(const struct rd_policy_host *h, enum rd_policy_hook hook);

/*
 * Calls select.lua's `hook(event, view)` under the budget and the memory
 * cap, as rd_policy_plan does (view.nodes too: from `nodes` when not NULL).
 * Its answer, validated, in `*answer` (a new reference): RD_HOOK_PREDICTED a
 * JSON string "drain" or "watch"; RD_HOOK_ON_CONFLICT a JSON string
 * "keep_newer", "keep_progress" or "fail_task"; RD_HOOK_REBALANCE a JSON
 * array of task ids (strings of 1-255 printable bytes, at most
 * RD_POLICY_MAX_ACTIONS). Returns 0; RD_ENOTFOUND when select.lua has no
 * such hook (nothing called); RD_EINVAL (an error raised, or an answer of
 * the wrong shape), RD_ETIMEOUT, RD_ENOMEM with
 * "policies/select.lua:LINE: why" in `err`.
 */
int rd_policy_hook(struct rd_policy_host *h, enum rd_policy_hook hook, json_t *event, json_t *view,
                   struct rd_policy_nodes *nodes, json_t **answer, char *err, size_t errlen);

#endif
