/*
 * The Lua policy host (policy.h): loads a policy directory into a sandboxed
 * LuaJIT state, converts events and views to Lua tables, runs select and the
 * chosen strategy's plan under a wall-clock budget and a memory cap, and
 * validates the plan into JSON.
 *
 * Error discipline: every Lua API call that can raise (any allocation can,
 * once the cap is reached) runs inside lua_cpcall, so nothing ever reaches
 * the panic function. C code running inside a protected call holds no heap
 * memory of its own across calls that may raise: what it builds hangs off a
 * context struct that the unprotected caller frees.
 */
#include "policy/policy.h"

#include "common/log.h"
#include "common/util.h"
#include "policy/bounds.h"
#include "recoveryd/error.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The budget's clock: the kernel's monotonic clock, which the deadline
 * timer below runs on. Read here rather than through rd_mono_ns, so a
 * program that gives the engine another clock (tests/sim) keeps budgets in
 * real time and the deadline and its timer on the same clock. The same
 * clock as rd_mono_ns in the engine; async-signal-safe. */
static uint64_t budget_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#define COMP          "policy"
#define CHUNK_PREFIX  "policies/"
#define HOOK_COUNT    1000        /* VM instructions between two budget checks */
#define BIG_BLOCK     (64 * 1024) /* allocations that check the deadline too */
#define SANDBOX_KEY   "recoveryd.sandbox"
#define MAX_ID_LEN    255
#define MAX_TEXT_LEN  1024
#define MAX_ORDER     1000000000.0
#define VERSION_CHARS 16

struct policy_file {
    char name[RD_POLICY_MAX_NAME + 1]; /* file stem */
    int fn_ref;                        /* registry ref of select or plan */
    int line;                          /* line where that function is defined */
};

struct rd_policy_host {
    lua_State *L;
    /* Capping allocator (the lua_State's ud points here). */
    size_t mem_used;
    size_t mem_limit;
    bool mem_refused; /* an allocation was refused since the flag was reset */
    bool cleaning;    /* the collection after a failed call: the cap is lifted */
    /* Budget hook. */
    uint64_t budget_ms;          /* per rd_policy_plan call */
    uint64_t call_budget_ms;     /* budget of the call running now (for messages) */
    uint64_t deadline_ns;        /* budget_now_ns() deadline; 0 when no call runs */
    bool timed_out;              /* the hook raised the budget error */
    volatile sig_atomic_t tight; /* the deadline signal set the hook to every instruction */
    int sampled_line;            /* last line of policy code the hook saw */
    /* Where the view's nodes of the call running now come from, built and
     * converted when a policy first reads view.nodes (push_view);
     * `call_seq` tells a view kept from an earlier call, whose nodes are
     * gone. `view_own` is the source of a view that holds its nodes. */
    struct rd_policy_nodes *view_nodes;
    struct rd_policy_nodes view_own;
    bool nodes_oom; /* building view.nodes failed in the call running now */
    double call_seq;
    char version[VERSION_CHARS + 1];
    struct policy_file select;
    struct policy_file hooks[RD_HOOK_COUNT]; /* select.lua's optional hooks (LUA_NOREF: none) */
    unsigned n_strategies;
    struct policy_file strategies[RD_POLICY_MAX_FILES];
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static struct rd_policy_host *host_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

/* ---- the sandbox's C parts -------------------------------------------- */

/*
 * Every allocation of the state goes through here. Growing past the cap
 * returns NULL, which LuaJIT turns into a "not enough memory" error in the
 * running protected call; shrinking never fails (Lua relies on it).
 */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct rd_policy_host *h = ud;
    if (ptr == NULL)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        h->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && h->mem_used - osize + nsize > h->mem_limit && !h->cleaning) {
        h->mem_refused = true;
        return NULL;
    }
    /*
     * A large block is what linear work on a large string or table (a
     * concatenation, a table growing) allocates, and the budget hook only
     * fires every HOOK_COUNT instructions: a loop of `s .. "x"` on an 8 MiB
     * string held the loop ten times its budget before it did. Past the
     * deadline such an allocation fails, and the call with it, as an overrun.
     */
    if (nsize > osize && nsize >= BIG_BLOCK && h->deadline_ns != 0 &&
        budget_now_ns() > h->deadline_ns) {
        h->timed_out = true;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p == NULL) {
        if (nsize <= osize)
            return ptr;
        h->mem_refused = true;
        return NULL;
    }
    h->mem_used = h->mem_used - osize + nsize;
    return p;
}

/*
 * Count hook: remembers the line it interrupted (for memory-error messages)
 * and raises the budget error past the deadline. It fires only in
 * interpreted code, which is why the JIT is kept off (see policy.h). Once
 * over budget it raises again at every firing, so error handlers in policy
 * code cannot keep running either.
 */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    struct rd_policy_host *h = host_of(L);
    if (lua_getinfo(L, "l", ar) && ar->currentline > 0)
        h->sampled_line = ar->currentline;
    if (h->deadline_ns == 0 || budget_now_ns() <= h->deadline_ns)
        return;
    h->timed_out = true;
    char msg[200];
    const char *src = "?";
    if (lua_getinfo(L, "S", ar))
        src = ar->short_src;
    snprintf(msg, sizeof(msg), "%s:%d: over the %llu ms budget", src, ar->currentline,
             (unsigned long long)h->call_budget_ms);
    lua_pushstring(L, msg);
    lua_error(L);
}

/*
 * The deadline timer. The count hook fires every HOOK_COUNT instructions,
 * and one instruction can be long work on a large string (`a < b` or
 * `a .. b` on 8 MiB strings: a thousand of them held the loop for 0.4 s).
 * So each call also arms a one-shot timer for its deadline whose signal,
 * delivered to the calling thread, sets the hook to fire at the very next
 * instruction (lua_sethook may be called from a signal handler: luajit's
 * own interpreter stops a script on SIGINT that way). The handler touches
 * only the host this thread is running a call for.
 */
#define DEADLINE_SIGNAL (SIGRTMIN + 4)

static _Thread_local struct rd_policy_host *volatile active_host;
static _Thread_local bool thread_timer_ready;
static _Thread_local timer_t thread_timer;
/* When the timer will fire (0: not armed). Arming costs a system call
 * (about 1.5 us here, as much as a small plan call), so the timer is left
 * armed after a call, and a call whose deadline is later than that leaves
 * it alone: when it fires early, the handler arms it again for the running
 * call's deadline. Only this thread and its signal handler touch it. */
static _Thread_local volatile uint64_t armed_until;
static pthread_once_t signal_once = PTHREAD_ONCE_INIT;
static bool signal_ready;

static void budget_hook(lua_State *L, lua_Debug *ar);

static void set_timer(uint64_t at_ns)
{
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t)(at_ns / 1000000000ull);
    its.it_value.tv_nsec = (long)(at_ns % 1000000000ull);
    armed_until = at_ns;
    timer_settime(thread_timer, TIMER_ABSTIME, &its, NULL);
}

static void deadline_signal(int sig)
{
    (void)sig;
    int saved = errno;
    armed_until = 0;
    struct rd_policy_host *h = active_host;
    if (h != NULL && h->deadline_ns != 0 && !h->tight) {
        if (budget_now_ns() < h->deadline_ns) {
            set_timer(h->deadline_ns); /* fired for an earlier call */
        } else {
            h->tight = 1;
            lua_sethook(h->L, budget_hook, LUA_MASKCOUNT, 1);
        }
    }
    errno = saved;
}

static void install_signal(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = deadline_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    signal_ready = sigaction(DEADLINE_SIGNAL, &sa, NULL) == 0;
    if (!signal_ready)
        RD_WARN(COMP, "deadline_signal", "error=\"%s\" fallback=count_hook_only", strerror(errno));
}

/* Makes sure this thread's timer fires by h's deadline (best effort:
 * without it the count hook and the checks after C calls still apply). */
static void arm_deadline(struct rd_policy_host *h)
{
    pthread_once(&signal_once, install_signal);
    if (!signal_ready)
        return;
    if (!thread_timer_ready) {
        struct sigevent sev;
        memset(&sev, 0, sizeof(sev));
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_signo = DEADLINE_SIGNAL;
        sev._sigev_un._tid = gettid();
        if (timer_create(CLOCK_MONOTONIC, &sev, &thread_timer) != 0)
            return;
        thread_timer_ready = true;
    }
    h->tight = 0;
    active_host = h;
    uint64_t at = armed_until;
    if (at == 0 || at > h->deadline_ns)
        set_timer(h->deadline_ns);
}

/* Ends h's call for the timer: a later signal leaves h alone. */
static void disarm_deadline(struct rd_policy_host *h)
{
    if (active_host != h)
        return;
    active_host = NULL;
    if (h->tight) {
        lua_sethook(h->L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
        h->tight = 0;
    }
}

/* Moves the running call's deadline `ns` later: time the host spent for the
 * call (building view.nodes), not the policy's. */
static void extend_deadline(struct rd_policy_host *h, uint64_t ns)
{
    if (h->deadline_ns == 0)
        return;
    h->deadline_ns += ns;
    if (h->tight) { /* the old deadline's signal came meanwhile */
        h->tight = 0;
        lua_sethook(h->L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
    }
    arm_deadline(h);
}

/* The host has decided this call ends: a policy's pcall must not hide it. */
static bool aborting(lua_State *L)
{
    struct rd_policy_host *h = host_of(L);
    return h->timed_out || h->mem_refused || h->nodes_oom;
}

/*
 * Message handler for every call into policy code: keeps "file:line: msg"
 * and adds the innermost policy line when the message has none (error
 * objects that are not strings, error("x", 0)). No traceback.
 */
static int msgh(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    if (strncmp(msg, CHUNK_PREFIX, strlen(CHUNK_PREFIX)) == 0) {
        lua_pushstring(L, msg);
        return 1;
    }
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0 && ar.source[0] == '@') {
            lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
            return 1;
        }
    }
    lua_pushstring(L, msg);
    return 1;
}

/* pcall(f, ...) that re-raises the host's budget and memory errors. */
static int sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (status != 0 && aborting(L))
        return lua_error(L);
    luaL_checkstack(L, 1, "pcall");
    lua_pushboolean(L, status == 0);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/*
 * The policy's xpcall handler, called through this C closure. LuaJIT calls
 * error handlers before unwinding, so for the budget error (raised inside
 * the count hook) the handler would run with hooks disabled: a handler that
 * loops would never be stopped. While the host is aborting the call the
 * policy's handler is skipped.
 */
static int xpcall_handler(lua_State *L)
{
    if (aborting(L))
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* xpcall(f, handler, ...) likewise. */
static int sb_xpcall(lua_State *L)
{
    luaL_checkany(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    /* [f, handler, args...] -> [wrapped handler, f, args...] */
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_replace(L, 1);
    lua_replace(L, 2);
    int status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 1);
    if (status != 0 && aborting(L))
        return lua_error(L);
    lua_pushboolean(L, status == 0);
    lua_replace(L, 1);
    return lua_gettop(L);
}

/* print(...) -> one debug line in the engine log, with the caller's line. */
static int sb_print(lua_State *L)
{
    if (rd_log_get_level() > RD_LOG_DEBUG)
        return 0;
    char text[400];
    size_t off = 0;
    text[0] = '\0';
    int n = lua_gettop(L);
    for (int i = 1; i <= n && off < sizeof(text) - 1; i++) {
        const char *s;
        switch (lua_type(L, i)) {
        case LUA_TSTRING:
        case LUA_TNUMBER:
            s = lua_tostring(L, i);
            break;
        case LUA_TBOOLEAN:
            s = lua_toboolean(L, i) ? "true" : "false";
            break;
        default:
            s = luaL_typename(L, i);
            break;
        }
        int w = snprintf(text + off, sizeof(text) - off, "%s%s", i > 1 ? "\t" : "", s);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    lua_Debug ar;
    const char *src = "?";
    int line = 0;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar)) {
        src = ar.short_src;
        line = ar.currentline;
    }
    char quoted[sizeof(text) * 2 + 8];
    RD_DEBUG(COMP, "print", "src=%s:%d msg=%s", src, line,
             rd_log_quote(quoted, sizeof(quoted), text));
    return 0;
}

/*
 * ---- C library calls under the budget ----------------------------------
 *
 * The count hook runs between VM instructions, never inside a C function,
 * and a pattern with a few quantifiers is exponential: string.find on 400
 * bytes held the loop for minutes. So the string and table functions whose
 * work can grow faster than their input, or that could run long, are
 * replaced in the real library tables (which strings index through their
 * metatable, and which every environment copies) by wrappers that
 *  - price the call before it runs (policy/bounds.h) and refuse it when its
 *    worst case does not fit in the time left in the budget: the refusal
 *    ends the call like the budget error does (pcall cannot catch it);
 *  - check the deadline again when the real function returns.
 * The real function is upvalue 1 of its wrapper, its name upvalue 2.
 */

/* The budget error raised from a wrapper: "policies/FILE:LINE: why". */
static int over_budget(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int over_budget(lua_State *L, const char *fmt, ...)
{
    struct rd_policy_host *h = host_of(L);
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    h->timed_out = true;
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        h->sampled_line = ar.currentline;
    luaL_where(L, 1);
    lua_pushstring(L, why);
    lua_concat(L, 2);
    return lua_error(L);
}

static const char *wrapped_name(lua_State *L)
{
    return lua_tostring(L, lua_upvalueindex(2));
}

/* Steps that still fit in the running call's budget (policy/bounds.h). */
static double steps_left(const struct rd_policy_host *h)
{
    if (h->deadline_ns == 0)
        return HUGE_VAL; /* no call runs: nothing to protect */
    uint64_t now = budget_now_ns();
    return now >= h->deadline_ns ? 0 : (double)(h->deadline_ns - now) / RD_POLICY_NS_PER_STEP;
}

/* Refuses a call priced at `steps` that the budget cannot afford; `why`
 * says what is too large ("pattern too complex for a subject of %zu bytes"). */
static void afford(lua_State *L, double steps, const char *why, size_t n)
{
    struct rd_policy_host *h = host_of(L);
    double left = steps_left(h);
    if (steps <= left)
        return;
    char what[120];
    snprintf(what, sizeof(what), why, n);
    over_budget(L, "%s: %s (up to %.3g steps of about %d ns, %.3g left in the %llu ms budget)",
                wrapped_name(L), what, steps, RD_POLICY_NS_PER_STEP, left,
                (unsigned long long)h->call_budget_ms);
}

/* Calls the real function with this call's arguments; checks the deadline
 * when it returns. */
static int call_real(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    struct rd_policy_host *h = host_of(L);
    if (h->deadline_ns != 0 && budget_now_ns() > h->deadline_ns)
        over_budget(L, "over the %llu ms budget (in %s)", (unsigned long long)h->call_budget_ms,
                    wrapped_name(L));
    return lua_gettop(L);
}

/* string.find / match / gsub: (s, pattern, ...). */
static int sb_pattern(lua_State *L)
{
    size_t n, plen;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *p = luaL_checklstring(L, 2, &plen);
    bool find = strcmp(wrapped_name(L), "string.find") == 0;
    double left = steps_left(host_of(L));
    if (find && (lua_toboolean(L, 4) || rd_pattern_is_plain(p, plen)))
        afford(L, rd_plain_find_steps(plen, n),
               "plain text too long to search in a subject of %zu bytes", n);
    else
        afford(L, rd_pattern_steps(p, plen, s, n, true, left),
               "pattern too complex for a subject of %zu bytes", n);
    return call_real(L);
}

/* gmatch's iterator: the real one, with the deadline checked after each step. */
static int sb_gmatch_step(lua_State *L)
{
    lua_settop(L, 0);
    return call_real(L);
}

/* string.gmatch(s, pattern): the whole iteration is priced at once. */
static int sb_gmatch(lua_State *L)
{
    size_t n, plen;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *p = luaL_checklstring(L, 2, &plen);
    afford(L, rd_pattern_steps(p, plen, s, n, false, steps_left(host_of(L))),
           "pattern too complex for a subject of %zu bytes", n);
    call_real(L);
    lua_settop(L, 1);
    lua_pushstring(L, "string.gmatch iterator");
    lua_pushcclosure(L, sb_gmatch_step, 2);
    return 1;
}

/* string.rep(s, n [, sep]): at most RD_POLICY_MAX_REP bytes. */
static int sb_rep(lua_State *L)
{
    size_t len, seplen = 0;
    luaL_checklstring(L, 1, &len);
    double k = luaL_checknumber(L, 2);
    luaL_optlstring(L, 3, "", &seplen);
    double total = k >= 1 ? k * (double)len + (k - 1) * (double)seplen : 0;
    if (total > (double)RD_POLICY_MAX_REP || k > (double)RD_POLICY_MAX_REP) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "string.rep: a result of %.0f bytes (%.0f copies) is over the limit of %zu bytes",
                 total, k, RD_POLICY_MAX_REP);
        return luaL_error(L, "%s", msg);
    }
    return call_real(L);
}

/*
 * table.sort(t [, comp]): with a Lua comparator the hook runs in it; with
 * none (or a C one) all of the n log n comparisons are C. A comparison
 * costs a step or so, more for long strings.
 */
static int sb_sort(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_type(L, 2) != LUA_TFUNCTION || lua_iscfunction(L, 2)) {
        double n = (double)lua_objlen(L, 1);
        double steps = 2 * n * log2(n + 2);
        if (steps <= steps_left(host_of(L))) {
            size_t longest = 0;
            for (int i = 1; i <= (int)n; i++) {
                lua_rawgeti(L, 1, i);
                if (lua_type(L, -1) == LUA_TSTRING && lua_objlen(L, -1) > longest)
                    longest = lua_objlen(L, -1);
                lua_pop(L, 1);
            }
            steps *= 1 + (double)longest / 256;
        }
        afford(L, steps, "%zu values to sort without a Lua comparator", (size_t)n);
    }
    return call_real(L);
}

/* table.concat: linear, but a large one still checks the deadline after. */
static int sb_plain(lua_State *L)
{
    return call_real(L);
}

/* Replaces lib[name] (a C function) by `fn` with the real one as upvalue. */
static void wrap(lua_State *L, const char *lib, const char *name, lua_CFunction fn)
{
    lua_getglobal(L, lib);
    lua_getfield(L, -1, name);
    lua_pushfstring(L, "%s.%s", lib, name);
    lua_pushcclosure(L, fn, 2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

static int panic_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    RD_ERROR(COMP, "lua_panic", "msg=%s", msg ? msg : "?");
    abort();
}

/* Base functions a policy may use (pcall, xpcall and print are ours). */
static const char *const base_allowed[] = {
    "assert",   "error",    "ipairs", "next",   "pairs",    "select",
    "tonumber", "tostring", "type",   "unpack", "_VERSION",
};

/* Libraries a policy gets a private copy of. */
static const char *const libs_allowed[] = {"string", "table", "math", "bit"};

/*
 * Opens the allowed libraries into the state's real globals (which policies
 * never see), strips string.dump from the real string table, and stores the
 * allow-listed template under SANDBOX_KEY in the registry.
 */
static int setup_protected(lua_State *L)
{
    static const struct {
        const char *name;
        lua_CFunction open;
    } libs[] = {
        {"", luaopen_base},
        {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table},
        {LUA_MATHLIBNAME, luaopen_math},
        {LUA_BITLIBNAME, luaopen_bit},
    };
    for (size_t i = 0; i < RD_ARRAY_SIZE(libs); i++) {
        lua_pushcfunction(L, libs[i].open);
        lua_pushstring(L, libs[i].name);
        lua_call(L, 1, 0);
    }
    /* Strings index the real string table through their metatable. */
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    /* The C calls the budget hook cannot interrupt, priced and checked. */
    wrap(L, LUA_STRLIBNAME, "find", sb_pattern);
    wrap(L, LUA_STRLIBNAME, "match", sb_pattern);
    wrap(L, LUA_STRLIBNAME, "gsub", sb_pattern);
    wrap(L, LUA_STRLIBNAME, "gmatch", sb_gmatch);
    wrap(L, LUA_STRLIBNAME, "rep", sb_rep);
    wrap(L, LUA_TABLIBNAME, "sort", sb_sort);
    wrap(L, LUA_TABLIBNAME, "concat", sb_plain);

    lua_newtable(L);
    for (size_t i = 0; i < RD_ARRAY_SIZE(base_allowed); i++) {
        lua_getglobal(L, base_allowed[i]);
        lua_setfield(L, -2, base_allowed[i]);
    }
    for (size_t i = 0; i < RD_ARRAY_SIZE(libs_allowed); i++) {
        lua_getglobal(L, libs_allowed[i]);
        lua_setfield(L, -2, libs_allowed[i]);
    }
    lua_pushcfunction(L, sb_pcall);
    lua_setfield(L, -2, "pcall");
    lua_pushcfunction(L, sb_xpcall);
    lua_setfield(L, -2, "xpcall");
    lua_pushcfunction(L, sb_print);
    lua_setfield(L, -2, "print");
    lua_setfield(L, LUA_REGISTRYINDEX, SANDBOX_KEY);
    return 0;
}

/* Pushes a fresh environment: the template with private library copies. */
static void push_env(lua_State *L)
{
    lua_newtable(L);
    int env = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_KEY);
    int tpl = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, tpl) != 0) { /* key value */
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_newtable(L);
            int copy = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, copy - 1) != 0) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, copy);
            }
            lua_replace(L, -2); /* key copy */
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, env); /* key */
    }
    lua_pop(L, 1); /* template */
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
}

static int gc_protected(lua_State *L)
{
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

/* Raises a formatted message (no position added: callers write their own). */
static int throwf(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int throwf(lua_State *L, const char *fmt, ...)
{
    char msg[RD_POLICY_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lua_pushstring(L, msg);
    return lua_error(L);
}

/*
 * After policy code returns: a call that ran past its deadline is over
 * budget even when no hook fired to say so (the time went into C calls, or
 * the last VM instructions before the return).
 */
static void check_returned_in_time(lua_State *L, const char *file, int line, const char *what)
{
    struct rd_policy_host *h = host_of(L);
    uint64_t now = budget_now_ns();
    if (h->deadline_ns == 0 || now <= h->deadline_ns)
        return;
    h->timed_out = true;
    double over = (double)(now - h->deadline_ns) / 1e6;
    if (line > 0)
        throwf(L, CHUNK_PREFIX "%s:%d: over the %llu ms budget (%s returned %.1f ms late)", file,
               line, (unsigned long long)h->call_budget_ms, what, over);
    throwf(L, CHUNK_PREFIX "%s: over the %llu ms budget (%s returned %.1f ms late)", file,
           (unsigned long long)h->call_budget_ms, what, over);
}

/* ---- loading ---------------------------------------------------------- */

static const char *const hook_names[RD_HOOK_COUNT] = {"predicted", "rebalance", "on_conflict"};

struct load_ctx {
    struct rd_policy_host *h;
    const char *file; /* "fast_recovery.lua" */
    const char *buf;
    size_t len;
    struct policy_file *pf; /* name already filled in */
    bool is_select;
};

static int function_line(lua_State *L, int idx)
{
    lua_Debug ar;
    lua_pushvalue(L, idx);
    if (!lua_getinfo(L, ">S", &ar))
        return 0;
    return ar.linedefined;
}

static int load_protected(lua_State *L)
{
    struct load_ctx *c = lua_touserdata(L, 1);
    char chunk[RD_POLICY_MAX_NAME + 32];
    snprintf(chunk, sizeof(chunk), "@" CHUNK_PREFIX "%s", c->file);
    const char *src = chunk + 1;

    lua_settop(L, 0);
    lua_pushcfunction(L, msgh); /* 1 */
    if (luaL_loadbufferx(L, c->buf, c->len, chunk, "t") != 0) {
        const char *msg = lua_tostring(L, -1);
        if (msg != NULL && strncmp(msg, CHUNK_PREFIX, strlen(CHUNK_PREFIX)) == 0)
            return lua_error(L);
        return throwf(L, "%s: %s", src, msg ? msg : "cannot load");
    }
    /* 2: the chunk. Its functions and every nested one stay interpreted. */
    luaJIT_setmode(L, 2, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_OFF);
    push_env(L);
    lua_setfenv(L, 2);
    if (lua_pcall(L, 0, 1, 1) != 0)
        return lua_error(L);
    check_returned_in_time(L, c->file, 0, "the file's top level");
    /* 2: the returned module */
    if (lua_type(L, 2) != LUA_TTABLE)
        return throwf(L, "%s: must return a table { name = \"%s\", ... }, returned %s", src,
                      c->pf->name, luaL_typename(L, 2));
    lua_getfield(L, 2, "name"); /* 3 */
    if (lua_type(L, 3) != LUA_TSTRING || strcmp(lua_tostring(L, 3), c->pf->name) != 0)
        return throwf(L,
                      "%s: the returned table's name must be \"%s\" (the file name), is %s%.64s%s",
                      src, c->pf->name, lua_type(L, 3) == LUA_TSTRING ? "\"" : "",
                      lua_type(L, 3) == LUA_TSTRING ? lua_tostring(L, 3) : luaL_typename(L, 3),
                      lua_type(L, 3) == LUA_TSTRING ? "\"" : "");
    const char *fn = c->is_select ? "select" : "plan";
    lua_getfield(L, 2, fn); /* 4 */
    if (lua_type(L, 4) != LUA_TFUNCTION)
        return throwf(L, "%s: the returned table has no %s function", src, fn);
    lua_getfield(L, 2, "self_test"); /* 5 */
    if (lua_type(L, 5) != LUA_TFUNCTION)
        return throwf(L, "%s: the returned table has no self_test function", src);
    int self_test_line = function_line(L, 5);
    if (lua_pcall(L, 0, 0, 1) != 0) {
        lua_pushstring(L, " (self_test failed)");
        lua_concat(L, 2);
        return lua_error(L);
    }
    check_returned_in_time(L, c->file, self_test_line, "self_test");
    /* select.lua's optional hooks: functions, or absent. */
    for (int k = 0; c->is_select && k < RD_HOOK_COUNT; k++) {
        lua_getfield(L, 2, hook_names[k]);
        if (lua_type(L, -1) == LUA_TFUNCTION) {
            c->h->hooks[k].line = function_line(L, lua_gettop(L));
            c->h->hooks[k].fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        } else if (lua_type(L, -1) != LUA_TNIL) {
            return throwf(L, "%s: %s must be a function (a hook), is a %s", src, hook_names[k],
                          luaL_typename(L, -1));
        } else {
            lua_pop(L, 1);
        }
    }
    /* Keep the function itself: later changes to the module table do not matter. */
    c->pf->line = function_line(L, 4);
    lua_pushvalue(L, 4);
    c->pf->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

struct src_file {
    char file[RD_POLICY_MAX_NAME + 8]; /* "name.lua" */
    char *buf;
    size_t len;
};

static int cmp_src(const void *a, const void *b)
{
    const struct src_file *x = a, *y = b;
    /* select.lua first, then by name */
    bool xs = strcmp(x->file, "select.lua") == 0, ys = strcmp(y->file, "select.lua") == 0;
    if (xs != ys)
        return xs ? -1 : 1;
    return strcmp(x->file, y->file);
}

static bool stem_valid(const char *s, size_t len)
{
    if (len == 0 || len > RD_POLICY_MAX_NAME || s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    return true;
}

static void free_sources(struct src_file *files, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(files[i].buf);
}

/* Reads `path` (`size` bytes by stat) into f->buf (owned by `f`). */
static int read_file(const char *path, size_t size, struct src_file *f, char *err, size_t errlen)
{
    if (size > RD_POLICY_MAX_FILE) {
        set_err(err, errlen, "%s: larger than %u bytes", path, RD_POLICY_MAX_FILE);
        return RD_ECONFIG;
    }
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return RD_ECONFIG;
    }
    /* One byte more than stat said, to notice a file that grew meanwhile. */
    f->buf = malloc(size + 1);
    if (f->buf == NULL) {
        fclose(fp);
        set_err(err, errlen, "%s: out of memory", path);
        return RD_ENOMEM;
    }
    f->len = fread(f->buf, 1, size + 1, fp);
    int failed = ferror(fp);
    fclose(fp);
    if (failed || f->len != size) {
        set_err(err, errlen, "%s: read error or changed while being read", path);
        return RD_ECONFIG;
    }
    return 0;
}

/* Lists and reads dir's *.lua files, sorted (select.lua first). */
static int read_dir(const char *dir, struct src_file *files, unsigned *n, char *err, size_t errlen)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        set_err(err, errlen, "%s: cannot open the policy directory: %s", dir, strerror(errno));
        return RD_ECONFIG;
    }
    int rc = 0;
    struct dirent *de;
    char path[4096];
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        if (name[0] == '.' || len < 4 || strcmp(name + len - 4, ".lua") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            set_err(err, errlen, "%s: not a regular file", path);
            rc = RD_ECONFIG;
        } else if (!stem_valid(name, len - 4)) {
            set_err(err, errlen,
                    "%s: policy file names must match [a-z][a-z0-9_]{0,%d}.lua (the stem is "
                    "the policy's name)",
                    path, RD_POLICY_MAX_NAME - 1);
            rc = RD_ECONFIG;
        } else if (*n == RD_POLICY_MAX_FILES) {
            set_err(err, errlen, "%s: more than %d policy files", dir, RD_POLICY_MAX_FILES);
            rc = RD_ECONFIG;
        } else {
            struct src_file *f = &files[*n];
            memset(f, 0, sizeof(*f));
            snprintf(f->file, sizeof(f->file), "%s", name);
            (*n)++;
            rc = read_file(path, (size_t)st.st_size, f, err, errlen);
        }
    }
    closedir(d);
    if (rc == 0) {
        qsort(files, *n, sizeof(files[0]), cmp_src);
        if (*n == 0 || strcmp(files[0].file, "select.lua") != 0) {
            set_err(err, errlen, "%s/select.lua: missing (every policy directory needs select.lua)",
                    dir);
            rc = RD_ECONFIG;
        } else if (*n == 1) {
            set_err(err, errlen, "%s: no strategy files besides select.lua", dir);
            rc = RD_ECONFIG;
        }
    }
    return rc;
}

/*
 * Composes the message of a failed protected call into `err` and returns the
 * RD_E* code: the budget error, a memory error, or `fallback` with the Lua
 * message. LuaJIT calls no message handler for memory errors, so their line
 * is the last one the budget hook sampled in this function, or else
 * `def_line`, where the running function is defined (0: none).
 */
static int failure(struct rd_policy_host *h, int status, const char *file, const char *what,
                   int def_line, int fallback, char *err, size_t errlen)
{
    lua_State *L = h->L;
    const char *msg = lua_tostring(L, -1);
    if (h->timed_out) {
        if (msg != NULL && strncmp(msg, CHUNK_PREFIX, strlen(CHUNK_PREFIX)) == 0)
            set_err(err, errlen, "%s", msg);
        else if (h->sampled_line > 0 || def_line > 0)
            set_err(err, errlen, CHUNK_PREFIX "%s:%d: over the %llu ms budget", file,
                    h->sampled_line > 0 ? h->sampled_line : def_line,
                    (unsigned long long)h->call_budget_ms);
        else
            set_err(err, errlen, CHUNK_PREFIX "%s: over the %llu ms budget", file,
                    (unsigned long long)h->call_budget_ms);
        return RD_ETIMEOUT;
    }
    if (h->mem_refused || status == LUA_ERRMEM) {
        int line = h->sampled_line > 0 ? h->sampled_line : def_line;
        const char *where = h->sampled_line > 0 ? "; line last sampled by the budget hook"
                            : def_line > 0      ? "; line where it is defined"
                                                : "";
        if (line > 0)
            set_err(err, errlen,
                    CHUNK_PREFIX "%s:%d: %s: not enough memory (over the memory limit of %zu "
                                 "bytes%s)",
                    file, line, what, h->mem_limit, where);
        else
            set_err(err, errlen,
                    CHUNK_PREFIX "%s: %s: not enough memory (over the memory limit of %zu bytes)",
                    file, what, h->mem_limit);
        return RD_ENOMEM;
    }
    set_err(err, errlen, "%s", msg != NULL ? msg : "unknown error");
    return fallback;
}

static void begin_call(struct rd_policy_host *h, uint64_t budget_ms)
{
    h->timed_out = false;
    h->mem_refused = false;
    h->nodes_oom = false;
    h->sampled_line = 0;
    h->call_budget_ms = budget_ms;
    h->deadline_ns = budget_now_ns() + budget_ms * 1000000ull;
    arm_deadline(h);
}

/* After a failed call: drop the stack and whatever garbage the call left. */
static void end_call(struct rd_policy_host *h, bool failed)
{
    disarm_deadline(h);
    h->deadline_ns = 0;
    h->view_nodes = NULL; /* the caller's, freed after the call */
    h->view_own.built = NULL;
    lua_settop(h->L, 0);
    if (failed) {
        /* A call that filled the state to its cap leaves no room even for
         * the closure lua_cpcall allocates: without lifting the cap for the
         * collection, the garbage would stay and every later call fail. */
        h->mem_refused = false;
        h->cleaning = true;
        if (lua_cpcall(h->L, gc_protected, NULL) != 0)
            lua_settop(h->L, 0);
        h->cleaning = false;
    }
}

int rd_policy_load(const char *dir, uint64_t budget_ms, size_t memory_limit,
                   struct rd_policy_host **out, char *err, size_t errlen)
{
    set_err(err, errlen, "%s", "");
    if (dir == NULL || out == NULL)
        return RD_EINVAL;
    if (budget_ms == 0 || budget_ms > 3600000) {
        set_err(err, errlen, "%s: policies.budget must be between 1ms and 1h", dir);
        return RD_ECONFIG;
    }

    struct src_file *files = calloc(RD_POLICY_MAX_FILES, sizeof(*files));
    if (files == NULL) {
        set_err(err, errlen, "%s: out of memory", dir);
        return RD_ENOMEM;
    }
    unsigned n = 0;
    int rc = read_dir(dir, files, &n, err, errlen);
    struct rd_policy_host *h = NULL;
    if (rc != 0)
        goto done;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        set_err(err, errlen, "%s: out of memory", dir);
        rc = RD_ENOMEM;
        goto done;
    }
    h->mem_limit = memory_limit;
    h->budget_ms = budget_ms;
    h->select.fn_ref = LUA_NOREF;
    for (int k = 0; k < RD_HOOK_COUNT; k++) {
        h->hooks[k].fn_ref = LUA_NOREF;
        snprintf(h->hooks[k].name, sizeof(h->hooks[k].name), "select");
    }

    uint64_t hash = RD_FNV_INIT;
    for (unsigned i = 0; i < n; i++) {
        uint64_t len = files[i].len;
        hash = rd_fnv1a(hash, files[i].file, strlen(files[i].file) + 1);
        hash = rd_fnv1a(hash, &len, sizeof(len));
        hash = rd_fnv1a(hash, files[i].buf, files[i].len);
    }
    snprintf(h->version, sizeof(h->version), "%016llx", (unsigned long long)hash);

    h->L = lua_newstate(capped_alloc, h);
    if (h->L == NULL) {
        if (h->mem_refused) {
            set_err(err, errlen, "%s: policies.memory_limit %zu bytes is too small for a Lua state",
                    dir, memory_limit);
            rc = RD_ECONFIG;
        } else {
            set_err(err, errlen, "%s: cannot create a Lua state", dir);
            rc = RD_ENOMEM;
        }
        goto done;
    }
    lua_atpanic(h->L, panic_handler);
    /* Count hooks never fire inside compiled traces: keep everything interpreted. */
    luaJIT_setmode(h->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(h->L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
    if (lua_cpcall(h->L, setup_protected, NULL) != 0) {
        set_err(err, errlen, "%s: cannot set up the sandbox (policies.memory_limit %zu bytes): %s",
                dir, memory_limit, lua_tostring(h->L, -1));
        rc = RD_ECONFIG;
        goto done;
    }

    for (unsigned i = 0; i < n; i++) {
        bool is_select = i == 0;
        struct policy_file *pf = is_select ? &h->select : &h->strategies[h->n_strategies];
        snprintf(pf->name, sizeof(pf->name), "%.*s", (int)(strlen(files[i].file) - 4),
                 files[i].file);
        pf->fn_ref = LUA_NOREF;
        struct load_ctx lc = {h, files[i].file, files[i].buf, files[i].len, pf, is_select};
        begin_call(h, budget_ms * RD_POLICY_LOAD_FACTOR);
        int status = lua_cpcall(h->L, load_protected, &lc);
        if (status != 0) {
            failure(h, status, files[i].file, "loading", 0, RD_ECONFIG, err, errlen);
            end_call(h, true);
            rc = RD_ECONFIG;
            goto done;
        }
        end_call(h, false);
        if (!is_select)
            h->n_strategies++;
    }
    RD_DEBUG(COMP, "loaded", "dir=%s version=%s strategies=%u memory=%zu", dir, h->version,
             h->n_strategies, h->mem_used);

done:
    free_sources(files, n);
    free(files);
    if (rc != 0) {
        rd_policy_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void rd_policy_free(struct rd_policy_host *h)
{
    if (h == NULL)
        return;
    if (h->L != NULL)
        lua_close(h->L);
    free(h);
}

const char *rd_policy_version(const struct rd_policy_host *h)
{
    return h != NULL ? h->version : "";
}

static const struct policy_file *find_strategy(const struct rd_policy_host *h, const char *name)
{
    for (unsigned i = 0; h != NULL && name != NULL && i < h->n_strategies; i++)
        if (strcmp(h->strategies[i].name, name) == 0)
            return &h->strategies[i];
    return NULL;
}

bool rd_policy_has_strategy(const struct rd_policy_host *h, const char *name)
{
    return find_strategy(h, name) != NULL;
}

/* ---- calls: JSON in, plan out ----------------------------------------- */

struct plan_ctx {
    struct rd_policy_host *h;
    json_t *event;
    json_t *view;
    struct rd_policy_nodes *nodes; /* NULL: the view's own */
    json_t *plan;                  /* built here; the caller frees it on error */
    const struct policy_file *pf;  /* the file running now */
    const char *what;              /* "select" or "plan" */
    const struct policy_file *strategy;
    bool json_oom; /* a jansson allocation failed */
};

static int push_json(lua_State *L, json_t *j, const char *what, int depth);

/* Object `j` as a table, its nulls and member `skip` (if any) left out. */
static void push_object(lua_State *L, json_t *j, const char *what, int depth, const json_t *skip)
{
    lua_createtable(L, 0, (int)json_object_size(j));
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        if (json_is_null(v) || v == skip)
            continue;
        lua_pushstring(L, key);
        push_json(L, v, what, depth + 1);
        lua_rawset(L, -3);
    }
}

static int push_json(lua_State *L, json_t *j, const char *what, int depth)
{
    if (depth > RD_POLICY_JSON_DEPTH)
        return throwf(L, "%s nests deeper than %d levels", what, RD_POLICY_JSON_DEPTH);
    luaL_checkstack(L, 4, what);
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        push_object(L, j, what, depth, NULL);
        break;
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(j, i);
            if (json_is_null(v))
                continue;
            push_json(L, v, what, depth + 1);
            lua_rawseti(L, -2, (int)(i + 1));
        }
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        lua_pushnumber(L, (lua_Number)json_integer_value(j));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(j));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
        lua_pushnil(L);
        break;
    }
    return 0;
}

/* Builds the view's nodes from `src` for the call running now, outside its
 * budget; raises (past the policy's pcall) when that fails. */
static void build_nodes(lua_State *L, struct rd_policy_host *h, struct rd_policy_nodes *src)
{
    uint64_t t0 = budget_now_ns();
    json_t *nodes = src->build(src->data);
    extend_deadline(h, budget_now_ns() - t0);
    if (!json_is_array(nodes)) {
        json_decref(nodes);
        h->nodes_oom = true;
        throwf(L, "out of memory building view.nodes");
    }
    src->built = nodes;
}

/* view.nodes read for the first time in a call (the view's __index; upvalue
 * 1: the call's sequence number): built if no call built them yet,
 * converted and kept in the view. */
static int view_index(lua_State *L)
{
    struct rd_policy_host *h = host_of(L);
    struct rd_policy_nodes *src = h->view_nodes;
    if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "nodes") != 0 || src == NULL ||
        lua_tonumber(L, lua_upvalueindex(1)) != h->call_seq) {
        lua_pushnil(L); /* not nodes, or a view kept past its call */
        return 1;
    }
    if (src->built == NULL && src->build != NULL)
        build_nodes(L, h, src);
    if (src->built == NULL) {
        lua_pushnil(L);
        return 1;
    }
    push_json(L, src->built, "view", 1);
    lua_pushstring(L, "nodes");
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

/*
 * Pushes the view as push_json does, but for its `nodes` (from `src`, else
 * the view's own array), built and converted only when the policy reads
 * view.nodes (then once per call): a view of 10,000 agents took tens of ms
 * to convert, once per lost agent in a storm, and milliseconds to build, and
 * the shipped policies never read it. `pairs(view)` lists `nodes` only once
 * read (the sandbox has no rawget or getmetatable that would tell).
 */
static void push_view(lua_State *L, struct rd_policy_host *h, json_t *view,
                      struct rd_policy_nodes *src)
{
    json_t *nodes = json_object_get(view, "nodes");
    h->call_seq++;
    h->view_nodes = NULL;
    if (src == NULL && !json_is_array(nodes)) {
        push_json(L, view, "view", 0);
        return;
    }
    if (src == NULL) {
        h->view_own = (struct rd_policy_nodes){.built = nodes}; /* borrowed */
        src = &h->view_own;
    }
    luaL_checkstack(L, 6, "view");
    push_object(L, view, "view", 0, nodes);
    lua_createtable(L, 0, 1);
    lua_pushnumber(L, h->call_seq);
    lua_pushcclosure(L, view_index, 1);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    h->view_nodes = src;
}

/* Raises "policies/FILE:LINE: plan returned ...: why" for a malformed plan. */
static int bad_plan(lua_State *L, struct plan_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad_plan(lua_State *L, struct plan_ctx *c, const char *fmt, ...)
{
    char why[RD_POLICY_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return throwf(L, CHUNK_PREFIX "%s.lua:%d: %s returned %s", c->pf->name, c->pf->line, c->what,
                  why);
}

/* Attaches `v` (new reference) to `obj` under `key`, or raises out of memory. */
static void jset(lua_State *L, struct plan_ctx *c, json_t *obj, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0) {
        c->json_oom = true;
        throwf(L, "out of memory building the plan");
    }
}

enum field_type { F_TASK_ID, F_NODE_ID, F_TEXT, F_ORDER, F_SEVERITY, F_PERCENT };

struct field_spec {
    const char *key;
    enum field_type type;
    bool required;
};

struct action_spec {
    const char *name;
    struct field_spec fields[3];
};

/* The action schema (policies/README.md). Unlisted fields are refused. */
static const struct action_spec action_specs[] = {
    {"reassign",
     {{"task_id", F_TASK_ID, true}, {"target", F_NODE_ID, false}, {"order", F_ORDER, false}}},
    {"wait", {{"task_id", F_TASK_ID, true}, {"reason", F_TEXT, false}}},
    {"pause", {{"task_id", F_TASK_ID, true}}},
    {"isolate", {{"node_id", F_NODE_ID, true}}},
    {"check_consistency", {{"task_id", F_TASK_ID, true}}},
    {"alert", {{"severity", F_SEVERITY, true}, {"summary", F_TEXT, true}}},
    {"degrade", {{"performance_limit", F_PERCENT, true}}},
};

static const char *const severities[] = {"critical", "major", "minor", "warning"};

static const char *type_want(enum field_type t)
{
    switch (t) {
    case F_TASK_ID:
        return "a task id (1-255 printable bytes)";
    case F_NODE_ID:
        return "a node id (1-255 of [A-Za-z0-9._:-])";
    case F_TEXT:
        return "a string of at most 1024 bytes";
    case F_ORDER:
        return "an integer";
    case F_SEVERITY:
        return "one of critical, major, minor, warning";
    case F_PERCENT:
        return "an integer from 0 to 100";
    }
    return "?";
}

static bool printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* Converts the value at the top of the stack to JSON; NULL when it does not fit `t`. */
static json_t *field_value(lua_State *L, enum field_type t, bool *ok)
{
    *ok = false;
    int lt = lua_type(L, -1);
    if (t == F_ORDER || t == F_PERCENT) {
        if (lt != LUA_TNUMBER)
            return NULL;
        lua_Number v = lua_tonumber(L, -1);
        double lo = t == F_ORDER ? -MAX_ORDER : 0, hi = t == F_ORDER ? MAX_ORDER : 100;
        if (!(v >= lo && v <= hi) || v != (lua_Number)(long long)v)
            return NULL;
        *ok = true;
        return json_integer((json_int_t)v);
    }
    if (lt != LUA_TSTRING)
        return NULL;
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    switch (t) {
    case F_TASK_ID:
        *ok = len >= 1 && len <= MAX_ID_LEN && printable(s, len);
        break;
    case F_NODE_ID:
        *ok = len <= MAX_ID_LEN && strlen(s) == len && rd_node_id_valid(s, len);
        break;
    case F_TEXT:
        *ok = len <= MAX_TEXT_LEN && strlen(s) == len;
        break;
    case F_SEVERITY:
        for (size_t i = 0; i < RD_ARRAY_SIZE(severities); i++)
            *ok = *ok || strcmp(s, severities[i]) == 0;
        break;
    default:
        break;
    }
    return *ok ? json_stringn(s, len) : NULL;
}

static const char *short_str(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : luaL_typename(L, idx);
}

/* Validates actions[i] (at the top of the stack) and appends it to `arr`. */
static void build_action(lua_State *L, struct plan_ctx *c, json_t *arr, int i)
{
    int t = lua_gettop(L);
    if (lua_type(L, t) != LUA_TTABLE)
        bad_plan(L, c, "actions[%d]: a %s, expected a table", i, luaL_typename(L, t));
    lua_getfield(L, t, "action");
    if (lua_type(L, -1) != LUA_TSTRING)
        bad_plan(L, c, "actions[%d]: action must be a string, is %s", i, luaL_typename(L, -1));
    const char *name = lua_tostring(L, -1);
    const struct action_spec *spec = NULL;
    for (size_t k = 0; k < RD_ARRAY_SIZE(action_specs); k++)
        if (strcmp(action_specs[k].name, name) == 0)
            spec = &action_specs[k];
    if (spec == NULL)
        bad_plan(L, c,
                 "actions[%d]: unknown action '%.64s' (known: reassign, wait, pause, isolate, "
                 "check_consistency, alert, degrade)",
                 i, name);
    lua_pop(L, 1);

    json_t *a = json_object();
    if (a == NULL || json_array_append_new(arr, a) != 0) {
        c->json_oom = true;
        throwf(L, "out of memory building the plan");
    }
    jset(L, c, a, "action", json_string(spec->name));

    /* Refuse unknown fields: a typo (targt = ...) must not pass silently. */
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            bad_plan(L, c, "actions[%d] (%s): a %s key, expected field names", i, spec->name,
                     luaL_typename(L, -1));
        const char *key = lua_tostring(L, -1);
        bool known = strcmp(key, "action") == 0;
        for (size_t k = 0; !known && k < RD_ARRAY_SIZE(spec->fields) && spec->fields[k].key; k++)
            known = strcmp(key, spec->fields[k].key) == 0;
        if (!known)
            bad_plan(L, c, "actions[%d] (%s): unknown field '%.64s'", i, spec->name, key);
    }

    for (size_t k = 0; k < RD_ARRAY_SIZE(spec->fields) && spec->fields[k].key; k++) {
        const struct field_spec *f = &spec->fields[k];
        lua_getfield(L, t, f->key);
        if (lua_isnil(L, -1)) {
            if (f->required)
                bad_plan(L, c, "actions[%d] (%s): missing %s", i, spec->name, f->key);
            if (f->type == F_ORDER)
                jset(L, c, a, f->key, json_integer(i));
            lua_pop(L, 1);
            continue;
        }
        bool ok;
        json_t *v = field_value(L, f->type, &ok);
        if (!ok)
            bad_plan(L, c, "actions[%d] (%s): %s must be %s, is %s%.64s%s", i, spec->name, f->key,
                     type_want(f->type), lua_type(L, -1) == LUA_TSTRING ? "'" : "",
                     short_str(L, -1), lua_type(L, -1) == LUA_TSTRING ? "'" : "");
        jset(L, c, a, f->key, v);
        lua_pop(L, 1);
    }
    lua_settop(L, t - 1);
}

/*
 * The reassign actions run by their `order` (lower first; equal orders keep
 * the plan's order), in the places the plan gave its reassigns: the other
 * actions (a wait before the moves, an alert after them) stay where they are.
 */
struct move {
    json_int_t order;
    size_t pos; /* index in the plan: the slot, and the tie-break */
    json_t *action;
};

static int move_cmp(const void *a, const void *b)
{
    const struct move *x = a, *y = b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int order_reassigns(json_t *arr)
{
    size_t n = 0, total = json_array_size(arr);
    struct move *m = total ? malloc(total * sizeof(*m)) : NULL;
    if (total && m == NULL)
        return RD_ENOMEM;
    for (size_t i = 0; i < total; i++) {
        json_t *a = json_array_get(arr, i);
        if (strcmp(json_string_value(json_object_get(a, "action")), "reassign") == 0)
            m[n++] = (struct move){json_integer_value(json_object_get(a, "order")), i, a};
    }
    if (n > 1)
        qsort(m, n, sizeof(*m), move_cmp);
    /* Slots in plan order are the sorted positions' original indexes. */
    size_t *slots = n ? malloc(n * sizeof(*slots)) : NULL;
    if (n && slots == NULL) {
        free(m);
        return RD_ENOMEM;
    }
    for (size_t i = 0, k = 0; i < total; i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(arr, i), "action")),
                   "reassign") == 0)
            slots[k++] = i;
    for (size_t i = 0; i < n; i++)
        json_incref(m[i].action);
    for (size_t i = 0; i < n; i++)
        json_array_set_new(arr, slots[i], m[i].action);
    free(slots);
    free(m);
    return 0;
}

/* Validates the plan table at `idx` into c->plan. */
static void build_plan(lua_State *L, struct plan_ctx *c, int idx)
{
    c->plan = json_object();
    if (c->plan == NULL) {
        c->json_oom = true;
        throwf(L, "out of memory building the plan");
    }
    jset(L, c, c->plan, "strategy", json_string(c->pf->name));
    json_t *arr = json_array();
    jset(L, c, c->plan, "actions", arr);

    if (lua_type(L, idx) != LUA_TTABLE)
        bad_plan(L, c, "a %s, expected a table { actions = { ... } }", luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "actions") != 0)
            bad_plan(L, c, "an unknown field '%.64s' (a plan has only actions)", short_str(L, -1));
    }
    lua_getfield(L, idx, "actions");
    int acts = lua_gettop(L);
    if (lua_type(L, acts) != LUA_TTABLE)
        bad_plan(L, c, "actions as a %s, expected a list of actions", luaL_typename(L, acts));
    size_t n = lua_objlen(L, acts);
    if (n > RD_POLICY_MAX_ACTIONS)
        bad_plan(L, c, "%zu actions, more than %d", n, RD_POLICY_MAX_ACTIONS);
    /* A list: keys exactly 1..n. */
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, acts) != 0) {
        lua_pop(L, 1);
        lua_Number k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (!(k >= 1 && k <= (lua_Number)n && k == (lua_Number)(long long)k))
            bad_plan(L, c, "actions that are not a list (key %s%.64s)",
                     lua_type(L, -1) == LUA_TSTRING ? "" : "of type ", short_str(L, -1));
        count++;
    }
    if (count != n)
        bad_plan(L, c, "actions that are not a list (holes)");
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, acts, (int)i);
        build_action(L, c, arr, (int)i);
    }
    if (order_reassigns(arr) != 0) {
        c->json_oom = true;
        throwf(L, "out of memory building the plan");
    }
    lua_settop(L, acts - 1);
}

static int plan_protected(lua_State *L)
{
    struct plan_ctx *c = lua_touserdata(L, 1);
    struct rd_policy_host *h = c->h;
    lua_settop(L, 0);
    lua_pushcfunction(L, msgh); /* 1 */
    /*
     * One private copy of each per call (2, 3), shared by select and plan:
     * converting is most of a call's cost (policies/README.md), and nothing
     * a policy changes in them outlives the call or reaches the engine.
     */
    push_json(L, c->event, "event", 0);
    push_view(L, h, c->view, c->nodes);

    c->pf = &h->select;
    c->what = "select";
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->select.fn_ref);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    h->sampled_line = 0;
    if (lua_pcall(L, 2, 1, 1) != 0)
        return lua_error(L);
    check_returned_in_time(L, "select.lua", h->select.line, "select");
    if (lua_type(L, 4) != LUA_TSTRING)
        return throwf(L, CHUNK_PREFIX "select.lua:%d: select returned %s, expected a strategy name",
                      h->select.line, luaL_typename(L, 4));
    c->strategy = find_strategy(h, lua_tostring(L, 4));
    if (c->strategy == NULL)
        return throwf(L, CHUNK_PREFIX "select.lua:%d: select returned unknown strategy '%.64s'",
                      h->select.line, lua_tostring(L, 4));
    lua_settop(L, 3);

    c->pf = c->strategy;
    c->what = "plan";
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->strategy->fn_ref);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    h->sampled_line = 0;
    if (lua_pcall(L, 2, 1, 1) != 0)
        return lua_error(L);
    char file[RD_POLICY_MAX_NAME + 8];
    snprintf(file, sizeof(file), "%s.lua", c->strategy->name);
    check_returned_in_time(L, file, c->strategy->line, "plan");
    build_plan(L, c, 4);
    return 0;
}

const char *rd_action_name(enum rd_action_kind k)
{
    return k < RD_ACT_KIND_COUNT ? action_specs[k].name : "unknown";
}

void rd_plan_free(struct rd_plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->actions[i].task_id);
        free(p->actions[i].node_id);
        free(p->actions[i].text);
    }
    free(p->actions);
    p->actions = NULL;
    p->n = 0;
}

static char *dup_field(json_t *a, const char *key, bool *oom)
{
    const char *v = json_string_value(json_object_get(a, key));
    char *d = v ? strdup(v) : NULL;
    if (v != NULL && d == NULL)
        *oom = true;
    return d;
}

/* The validated JSON plan (build_plan) typed once: 0 or RD_ENOMEM. */
static int plan_typed(json_t *j, struct rd_plan *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->strategy, sizeof(out->strategy), "%s",
             json_string_value(json_object_get(j, "strategy")));
    json_t *arr = json_object_get(j, "actions");
    size_t n = json_array_size(arr);
    out->actions = n ? calloc(n, sizeof(*out->actions)) : NULL;
    if (n && out->actions == NULL)
        return RD_ENOMEM;
    bool oom = false;
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(arr, i);
        struct rd_action *x = &out->actions[i];
        const char *name = json_string_value(json_object_get(a, "action"));
        for (int k = 0; k < RD_ACT_KIND_COUNT; k++)
            if (strcmp(action_specs[k].name, name) == 0)
                x->kind = (enum rd_action_kind)k;
        x->task_id = dup_field(a, "task_id", &oom);
        x->node_id = dup_field(a, x->kind == RD_ACT_REASSIGN ? "target" : "node_id", &oom);
        x->text = dup_field(a, x->kind == RD_ACT_ALERT ? "summary" : "reason", &oom);
        const char *sev = json_string_value(json_object_get(a, "severity"));
        for (size_t k = 0; sev != NULL && k < RD_ARRAY_SIZE(severities); k++)
            if (strcmp(severities[k], sev) == 0)
                x->severity = severities[k];
        x->order = json_integer_value(json_object_get(a, "order"));
        x->percent = (unsigned)json_integer_value(json_object_get(a, "performance_limit"));
        out->n = i + 1;
    }
    if (oom) {
        rd_plan_free(out);
        return RD_ENOMEM;
    }
    return 0;
}

json_t *rd_plan_json(const struct rd_plan *p)
{
    json_t *arr = json_array();
    json_t *j = json_pack("{s:s,s:o}", "strategy", p->strategy, "actions", arr);
    if (j == NULL)
        return NULL;
    for (size_t i = 0; i < p->n; i++) {
        const struct rd_action *x = &p->actions[i];
        json_t *a = json_pack("{s:s}", "action", rd_action_name(x->kind));
        if (a == NULL || json_array_append_new(arr, a) != 0) {
            json_decref(j);
            return NULL;
        }
        if (x->task_id)
            json_object_set_new(a, "task_id", json_string(x->task_id));
        if (x->node_id)
            json_object_set_new(a, x->kind == RD_ACT_REASSIGN ? "target" : "node_id",
                                json_string(x->node_id));
        if (x->text)
            json_object_set_new(a, x->kind == RD_ACT_ALERT ? "summary" : "reason",
                                json_string(x->text));
        if (x->severity)
            json_object_set_new(a, "severity", json_string(x->severity));
        if (x->kind == RD_ACT_REASSIGN)
            json_object_set_new(a, "order", json_integer(x->order));
        if (x->kind == RD_ACT_DEGRADE)
            json_object_set_new(a, "performance_limit", json_integer(x->percent));
    }
    return j;
}

void rd_policy_nodes_release(struct rd_policy_nodes *n)
{
    if (n == NULL)
        return;
    json_decref(n->built);
    n->built = NULL;
}

int rd_policy_plan(struct rd_policy_host *h, json_t *event, json_t *view,
                   struct rd_policy_nodes *nodes, struct rd_plan *plan_out, char *err,
                   size_t errlen)
{
    set_err(err, errlen, "%s", "");
    if (h == NULL || plan_out == NULL) {
        set_err(err, errlen, "policy host: missing host or result pointer");
        return RD_EINVAL;
    }
    if (!json_is_object(event) || !json_is_object(view)) {
        set_err(err, errlen, "policy host: event and view must be JSON objects");
        return RD_EINVAL;
    }
    struct plan_ctx c = {
        .h = h, .event = event, .view = view, .nodes = nodes, .pf = &h->select, .what = "select"};
    begin_call(h, h->budget_ms);
    int status = lua_cpcall(h->L, plan_protected, &c);
    if (status == 0) {
        end_call(h, false);
        int rv = plan_typed(c.plan, plan_out);
        json_decref(c.plan);
        if (rv != 0)
            set_err(err, errlen, "policy host: out of memory typing the plan");
        return rv;
    }
    char file[RD_POLICY_MAX_NAME + 8];
    snprintf(file, sizeof(file), "%s.lua", c.pf->name);
    int rc = c.json_oom || h->nodes_oom
                 ? RD_ENOMEM
                 : failure(h, status, file, c.what, c.pf->line, RD_EINVAL, err, errlen);
    if (h->nodes_oom)
        set_err(err, errlen, "policy host: out of memory building view.nodes for %s", file);
    else if (c.json_oom)
        set_err(err, errlen, "policy host: out of memory building the plan of %s", file);
    end_call(h, true);
    json_decref(c.plan);
    RD_DEBUG(COMP, "call_failed", "version=%s code=%s", h->version, rd_err_name(rc));
    return rc;
}

/* ---- select.lua's hooks ----------------------------------------------- */

bool rd_policy_has_hook(const struct rd_policy_host *h, enum rd_policy_hook hook)
{
    return h != NULL && hook < RD_HOOK_COUNT && h->hooks[hook].fn_ref != LUA_NOREF;
}

struct hook_ctx {
    struct rd_policy_host *h;
    enum rd_policy_hook hook;
    json_t *event, *view;
    struct rd_policy_nodes *nodes; /* NULL: the view's own */
    json_t *answer;                /* built here; the caller frees it on error */
    bool json_oom;
};

static int bad_answer(lua_State *L, const struct hook_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad_answer(lua_State *L, const struct hook_ctx *c, const char *fmt, ...)
{
    char why[RD_POLICY_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return throwf(L, CHUNK_PREFIX "select.lua:%d: %s returned %s", c->h->hooks[c->hook].line,
                  hook_names[c->hook], why);
}

/* predicted: "drain" or "watch". */
static void predicted_answer(lua_State *L, struct hook_ctx *c, int idx)
{
    const char *a = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
    if (a == NULL || (strcmp(a, "drain") != 0 && strcmp(a, "watch") != 0))
        bad_answer(L, c, "%s%.64s%s, expected \"drain\" or \"watch\"", a ? "'" : "a ",
                   a ? a : luaL_typename(L, idx), a ? "'" : "");
    c->answer = json_string(a);
    c->json_oom = c->answer == NULL;
}

/* on_conflict: "keep_newer", "keep_progress" or "fail_task". */
static void on_conflict_answer(lua_State *L, struct hook_ctx *c, int idx)
{
    const char *a = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
    if (a == NULL || (strcmp(a, "keep_newer") != 0 && strcmp(a, "keep_progress") != 0 &&
                      strcmp(a, "fail_task") != 0))
        bad_answer(L, c, "%s%.64s%s, expected \"keep_newer\", \"keep_progress\" or \"fail_task\"",
                   a ? "'" : "a ", a ? a : luaL_typename(L, idx), a ? "'" : "");
    c->answer = json_string(a);
    c->json_oom = c->answer == NULL;
}

/* rebalance: a list of task ids. */
static void rebalance_answer(lua_State *L, struct hook_ctx *c, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        bad_answer(L, c, "a %s, expected a list of task ids", luaL_typename(L, idx));
    size_t n = lua_objlen(L, idx);
    if (n > RD_POLICY_MAX_ACTIONS)
        bad_answer(L, c, "%zu task ids, more than %d", n, RD_POLICY_MAX_ACTIONS);
    c->answer = json_array();
    if (c->answer == NULL) {
        c->json_oom = true;
        throwf(L, "out of memory");
    }
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        size_t len = 0;
        const char *id = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (id == NULL || len == 0 || len > MAX_ID_LEN || !printable(id, len))
            bad_answer(L, c, "[%zu]: %s, expected a task id (1-%d printable bytes)", i,
                       id ? "a malformed string" : luaL_typename(L, -1), MAX_ID_LEN);
        if (json_array_append_new(c->answer, json_stringn(id, len)) != 0) {
            c->json_oom = true;
            throwf(L, "out of memory");
        }
        lua_pop(L, 1);
    }
    /* A list only: no other keys (a typo such as { alow = ... } must not pass). */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        bool ok = lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) >= 1 &&
                  lua_tonumber(L, -2) <= (lua_Number)n &&
                  lua_tonumber(L, -2) == (lua_Number)(long long)lua_tonumber(L, -2);
        if (!ok)
            bad_answer(L, c, "a table with key %s, expected a list of task ids", short_str(L, -2));
        lua_pop(L, 1);
    }
}

static int hook_protected(lua_State *L)
{
    struct hook_ctx *c = lua_touserdata(L, 1);
    struct rd_policy_host *h = c->h;
    lua_settop(L, 0);
    lua_pushcfunction(L, msgh); /* 1 */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->hooks[c->hook].fn_ref);
    push_json(L, c->event, "event", 0);
    push_view(L, h, c->view, c->nodes);
    h->sampled_line = 0;
    if (lua_pcall(L, 2, 1, 1) != 0)
        return lua_error(L);
    check_returned_in_time(L, "select.lua", h->hooks[c->hook].line, hook_names[c->hook]);
    if (c->hook == RD_HOOK_PREDICTED)
        predicted_answer(L, c, 2);
    else if (c->hook == RD_HOOK_ON_CONFLICT)
        on_conflict_answer(L, c, 2);
    else
        rebalance_answer(L, c, 2);
    return 0;
}

int rd_policy_hook(struct rd_policy_host *h, enum rd_policy_hook hook, json_t *event, json_t *view,
                   struct rd_policy_nodes *nodes, json_t **answer, char *err, size_t errlen)
{
    set_err(err, errlen, "%s", "");
    if (h == NULL || answer == NULL || hook >= RD_HOOK_COUNT || !json_is_object(event) ||
        !json_is_object(view)) {
        set_err(err, errlen, "policy host: bad hook call");
        return RD_EINVAL;
    }
    if (h->hooks[hook].fn_ref == LUA_NOREF)
        return RD_ENOTFOUND;
    struct hook_ctx c = {.h = h, .hook = hook, .event = event, .view = view, .nodes = nodes};
    begin_call(h, h->budget_ms);
    int status = lua_cpcall(h->L, hook_protected, &c);
    if (status == 0) {
        end_call(h, false);
        *answer = c.answer;
        return 0;
    }
    int rc = c.json_oom || h->nodes_oom ? RD_ENOMEM
                                        : failure(h, status, "select.lua", hook_names[hook],
                                                  h->hooks[hook].line, RD_EINVAL, err, errlen);
    if (h->nodes_oom)
        set_err(err, errlen, "policy host: out of memory building view.nodes for select.lua's %s",
                hook_names[hook]);
    else if (c.json_oom)
        set_err(err, errlen, "policy host: out of memory reading select.lua's %s answer",
                hook_names[hook]);
    end_call(h, true);
    json_decref(c.answer);
    RD_DEBUG(COMP, "hook_failed", "version=%s hook=%s code=%s", h->version, hook_names[hook],
             rd_err_name(rc));
    return rc;
}
