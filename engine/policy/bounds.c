/*
 * Work bounds for the string library calls the policy sandbox wraps
 * (bounds.h). Written from the pattern syntax of the Lua 5.1 manual
 * (section 5.4.1), not from the library's matcher.
 *
 * How a backtracking matcher spends its time: it tries the pattern at each
 * start position (one, when anchored with '^'); at each pattern item it
 * either tests one subject byte and goes on, or branches. A class followed
 * by '*', '+' or '-' tries every length up to the run of subject bytes the
 * class matches; one followed by '?' tries two. So with T(j) the work of the
 * items from j on, for one start position:
 *
 *   plain class c          T(j) = cost(c) + T(j+1)
 *   c* / c+  (run r)       T(j) = (r+1) cost(c) + (r+1) T(j+1)
 *   c-       (run r)       T(j) = (r+1) (cost(c) + T(j+1))
 *   c?                     T(j) = cost(c) + 2 T(j+1)
 *   %bxy, %1-%9            T(j) = (n+1) + T(j+1)    (a scan or a compare)
 *   %f[set], (, ), $       T(j) = cost + T(j+1)
 *   end of pattern         1
 *
 * When nothing after item j can fail ('*', '-', '?' items and captures),
 * the first branch tried succeeds, so item j branches once. The total is
 * starts x T(0), plus the scan that found the runs.
 */
#include "policy/bounds.h"

#include <string.h>

#define ESC '%'

/* A class item of the pattern: p[0..len) ("a", ".", "%d", "[^%s,]"). */
struct cls {
    const char *p;
    size_t len;
};

/* One pattern item. */
enum item_kind {
    IT_CLASS,    /* a single class, maybe quantified */
    IT_SCAN,     /* %b or a back-reference: up to n+1 per try */
    IT_FIXED,    /* (, ), %f[set], $ at the end: constant */
    IT_MALFORMED /* the matcher raises its error here */
};

struct item {
    enum item_kind kind;
    struct cls c;
    char quant; /* '*', '+', '-', '?' or 0 */
    bool can_fail;
    size_t next; /* offset of the next item */
};

static bool is_lower(int c)
{
    return c >= 'a' && c <= 'z';
}
static bool is_upper(int c)
{
    return c >= 'A' && c <= 'Z';
}
static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}
static bool is_alpha(int c)
{
    return is_lower(c) || is_upper(c);
}
static bool is_alnum(int c)
{
    return is_alpha(c) || is_digit(c);
}

/*
 * Whether byte `c` is in the class `%<k>` (k a letter). Letters without a
 * class of their own are taken to match every byte: a run that is too long
 * only makes the bound larger.
 */
static bool in_escape_class(int c, int k)
{
    bool r;
    switch (k | 0x20) {
    case 'a':
        r = is_alpha(c);
        break;
    case 'c':
        r = c < 32 || c == 127;
        break;
    case 'd':
        r = is_digit(c);
        break;
    case 'l':
        r = is_lower(c);
        break;
    case 'p':
        r = c > 32 && c < 127 && !is_alnum(c);
        break;
    case 's':
        r = c == ' ' || (c >= '\t' && c <= '\r');
        break;
    case 'u':
        r = is_upper(c);
        break;
    case 'w':
        r = is_alnum(c);
        break;
    case 'x':
        r = is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
        break;
    case 'z':
        r = c == 0;
        break;
    default:
        return true;
    }
    return is_upper(k) ? !r : r;
}

/* `%x` with x a letter is a class; any other escaped byte is itself. */
static bool in_escape(int c, int k)
{
    return is_alpha(k) ? in_escape_class(c, k) : c == k;
}

/* Whether byte `c` is in the set "[...]" (p[0] == '[', p[len-1] == ']'). */
static bool in_set(int c, const char *p, size_t len)
{
    size_t i = 1, end = len - 1;
    bool neg = i < end && p[i] == '^';
    if (neg)
        i++;
    bool hit = false;
    while (i < end && !hit) {
        unsigned char x = (unsigned char)p[i];
        if (x == ESC && i + 1 < end) {
            hit = in_escape(c, (unsigned char)p[i + 1]);
            i += 2;
        } else if (i + 2 < end && p[i + 1] == '-') {
            hit = c >= x && c <= (unsigned char)p[i + 2];
            i += 3;
        } else {
            hit = c == x;
            i++;
        }
    }
    return neg ? !hit : hit;
}

static bool in_class(int c, const struct cls *k)
{
    switch (k->p[0]) {
    case '.':
        return true;
    case ESC:
        return in_escape(c, (unsigned char)k->p[1]);
    case '[':
        return in_set(c, k->p, k->len);
    default:
        return c == (unsigned char)k->p[0];
    }
}

/* The length of the class at p[i] ("%d": 2, "[...]": to its ']'); 0 when
 * malformed (an escape or a set that the pattern's end cuts off). */
static size_t class_len(const char *p, size_t plen, size_t i)
{
    if (p[i] == ESC)
        return i + 1 < plen ? 2 : 0;
    if (p[i] != '[')
        return 1;
    size_t j = i + 1;
    if (j < plen && p[j] == '^')
        j++;
    /* The first byte of the set is a member even when it is ']'. */
    do {
        if (j >= plen)
            return 0;
        if (p[j++] == ESC) {
            if (j >= plen)
                return 0;
            j++;
        }
    } while (j >= plen || p[j] != ']');
    return j + 1 - i;
}

/* Parses the item at p[i] into *it. */
static void parse_item(const char *p, size_t plen, size_t i, struct item *it)
{
    memset(it, 0, sizeof(*it));
    it->kind = IT_FIXED;
    it->can_fail = true;
    switch (p[i]) {
    case '(':
        it->can_fail = false;
        it->next = i + 1 + (i + 1 < plen && p[i + 1] == ')');
        return;
    case ')':
        it->can_fail = false;
        it->next = i + 1;
        return;
    case '$':
        if (i + 1 == plen) {
            it->next = plen;
            return;
        }
        break;
    case ESC:
        if (i + 1 < plen && p[i + 1] == 'b') {
            it->kind = i + 3 < plen ? IT_SCAN : IT_MALFORMED;
            it->next = i + 4;
            return;
        }
        if (i + 1 < plen && p[i + 1] == 'f') {
            size_t l = i + 2 < plen && p[i + 2] == '[' ? class_len(p, plen, i + 2) : 0;
            it->kind = l ? IT_FIXED : IT_MALFORMED;
            it->c = (struct cls){p + i + 2, l};
            it->next = i + 2 + l;
            return;
        }
        if (i + 1 < plen && is_digit((unsigned char)p[i + 1])) {
            it->kind = IT_SCAN;
            it->next = i + 2;
            return;
        }
        break;
    default:
        break;
    }
    size_t l = class_len(p, plen, i);
    if (l == 0) {
        it->kind = IT_MALFORMED;
        it->next = plen;
        return;
    }
    it->kind = IT_CLASS;
    it->c = (struct cls){p + i, l};
    it->next = i + l;
    if (it->next < plen && strchr("*+-?", p[it->next]) != NULL) {
        it->quant = p[it->next++];
        it->can_fail = it->quant == '+';
    }
}

/* The longest run of bytes of s[0..n) in class k. */
static size_t longest_run(const char *s, size_t n, const struct cls *k)
{
    size_t best = 0, cur = 0;
    for (size_t i = 0; i < n; i++) {
        cur = in_class((unsigned char)s[i], k) ? cur + 1 : 0;
        if (cur > best)
            best = cur;
    }
    return best;
}

double rd_pattern_steps(const char *p, size_t plen, const char *s, size_t n, bool anchor_ok,
                        double budget)
{
    double starts = (double)n + 1;
    size_t first = 0;
    if (anchor_ok && plen > 0 && p[0] == '^') {
        starts = 1;
        first = 1;
    }
    /* Pass 1: the last item that can fail (nothing after it can), and what
     * finding the runs would cost. */
    size_t count = 0, last_fallible = 0;
    double scan = 0;
    struct item it;
    for (size_t i = first; i < plen; i = it.next) {
        parse_item(p, plen, i, &it);
        count++;
        if (it.can_fail)
            last_fallible = count;
        if (it.kind == IT_CLASS && it.quant)
            scan += (double)n * (double)it.c.len;
        if (it.kind == IT_MALFORMED)
            break;
    }
    bool use_runs = scan <= budget;

    /* Pass 2: T(0) = sum over j of (product of b_i, i < j) x a_j, + product. */
    double prod = 1, sum = 0, all = (double)n + 1;
    size_t j = 0;
    for (size_t i = first; i < plen; i = it.next) {
        parse_item(p, plen, i, &it);
        j++;
        bool tail_safe = j >= last_fallible; /* nothing after item j can fail */
        double a = 1, b = 1;
        switch (it.kind) {
        case IT_CLASS: {
            double cost = (double)it.c.len;
            if (it.quant == 0) {
                a = cost;
                break;
            }
            double r = use_runs ? (double)longest_run(s, n, &it.c) : (double)n;
            if (it.quant == '?') {
                a = cost;
                b = tail_safe || r == 0 ? 1 : 2;
            } else if (it.quant == '-') {
                b = tail_safe ? 1 : r + 1;
                a = (r + 1) * cost; /* stepping over the run, one byte a try */
            } else {
                a = (r + 1) * cost; /* the count of the run */
                b = tail_safe ? 1 : r + 1;
            }
            break;
        }
        case IT_SCAN:
            a = all;
            break;
        case IT_FIXED:
            a = it.c.len ? (double)it.c.len : 1;
            break;
        case IT_MALFORMED:
            a = 1;
            break;
        }
        sum += prod * a;
        prod *= b;
        if (it.kind == IT_MALFORMED)
            break;
    }
    sum += prod; /* the end of the pattern */
    return starts * sum + (use_runs ? scan : 0);
}

double rd_plain_find_steps(size_t plen, size_t n)
{
    if (plen > n)
        return 1;
    /* memcmp ran at 25-56 GB/s here: a step (10 ns) is priced at 64 bytes
     * of it, and each candidate position costs a memchr and a call besides. */
    double positions = (double)(n - plen) + 1;
    return positions * (1.0 + (double)plen / 64.0) + 1;
}

bool rd_pattern_is_plain(const char *p, size_t plen)
{
    /* Any special byte anywhere makes it a pattern: when in doubt, the
     * matcher's (larger) bound applies. */
    for (size_t i = 0; i < plen; i++)
        if (p[i] != '\0' && strchr("^$*+?.([%-", p[i]) != NULL)
            return false;
    return true;
}
