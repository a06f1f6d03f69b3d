/*
 * Upper bounds on the work of the Lua string library's C functions that the
 * policy sandbox wraps (policy.c): the budget's count hook cannot interrupt
 * a C call, so each call is priced before it runs and refused when its worst
 * case does not fit the time left in the budget.
 *
 * The unit is a "step": about one backtracking step of the pattern matcher
 * (one single-character test and its bookkeeping), or a few hundred bytes of
 * memcmp for a plain find. RD_POLICY_NS_PER_STEP converts steps to time;
 * the bounds overestimate real work, often by orders of magnitude, never
 * under (tests/unit/policy/test_policy.c measures them against real calls).
 *
 * Pure functions of the pattern and the subject; no Lua state involved.
 */
#ifndef RD_POLICY_BOUNDS_H
#define RD_POLICY_BOUNDS_H

#include <stdbool.h>
#include <stddef.h>

/* Wall-clock nanoseconds one step may take, generously: the worst real
 * calls measured took about 1 ns per step of their bound. */
#define RD_POLICY_NS_PER_STEP 10

/* Longest string string.rep may build, in bytes. */
#define RD_POLICY_MAX_REP ((size_t)1 << 20)

/*
 * Steps a pattern-matching call may take at most: string.find (not plain),
 * string.match, string.gmatch (the whole iteration) or string.gsub (all
 * matches; not the replacement's own cost) of pattern `p` (`plen` bytes)
 * over subject `s` (`n` bytes). `anchor_ok` is false for gmatch, where a
 * leading '^' anchors nothing. The bound uses the subject: a quantified
 * class branches at most as often as the longest run of subject bytes it
 * matches, when finding those runs itself costs less than `budget` steps;
 * otherwise every run counts as the whole subject. Malformed patterns are
 * priced up to where the matcher would raise its error.
 */
double rd_pattern_steps(const char *p, size_t plen, const char *s, size_t n, bool anchor_ok,
                        double budget);

/* Steps of a plain find of `plen` bytes in `n` bytes (memchr + memcmp at
 * each candidate position: (n - plen + 1) x plen bytes at worst). */
double rd_plain_find_steps(size_t plen, size_t n);

/* True when `p` has none of the pattern special characters, so string.find
 * searches for it as plain text. */
bool rd_pattern_is_plain(const char *p, size_t plen);

#endif
