/* recoveryctl's terminal output (out.h). */
#include "out.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool color_on;

int out_set_color(const char *mode)
{
    if (strcmp(mode, "always") == 0) {
        color_on = true;
    } else if (strcmp(mode, "never") == 0) {
        color_on = false;
    } else if (strcmp(mode, "auto") == 0) {
        /* https://no-color.org: any non-empty NO_COLOR turns colour off. */
        const char *nc = getenv("NO_COLOR");
        const char *term = getenv("TERM");
        color_on = isatty(STDOUT_FILENO) && (nc == NULL || nc[0] == '\0') &&
                   !(term != NULL && strcmp(term, "dumb") == 0);
    } else {
        return -1;
    }
    return 0;
}

bool out_color_on(void)
{
    return color_on;
}

const char *out_color(const char *sgr)
{
    return color_on && sgr != NULL ? sgr : "";
}

const char *out_state_color(const char *s)
{
    if (s == NULL)
        return NULL;
    static const struct {
        const char *word, *color;
    } map[] = {
        {"alive", C_GREEN},       {"completed", C_GREEN},   {"succeeded", C_GREEN},
        {"healthy", C_GREEN},     {"consistent", C_GREEN},  {"resolved", C_GREEN},
        {"leader", C_BOLD},       {"running", C_BLUE},      {"assigned", C_BLUE},
        {"initiated", C_BLUE},    {"pending", C_DIM},       {"suspect", C_YELLOW},
        {"probation", C_YELLOW},  {"draining", C_YELLOW},   {"degraded", C_YELLOW},
        {"recovering", C_YELLOW}, {"partial", C_YELLOW},    {"paused", C_YELLOW},
        {"open", C_YELLOW},       {"failed", C_RED},        {"isolated", C_RED},
        {"critical", C_RED},      {"mismatch", C_RED},      {"left", C_DIM},
        {"cancelled", C_DIM},     {"incomplete", C_YELLOW},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].word, s) == 0)
            return map[i].color;
    return NULL;
}

/* ---- tables ----------------------------------------------------------------------- */

void table_init(struct table *t, int ncols, const char *const *heads)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    for (int i = 0; i < ncols && i < 16; i++)
        t->heads[i] = heads[i];
}

void table_add(struct table *t, const char *text, const char *color)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **cells = realloc(t->cells, cap * sizeof *cells);
        const char **colors = realloc(t->colors, cap * sizeof *colors);
        if (cells == NULL || colors == NULL) {
            fprintf(stderr, "recoveryctl: out of memory\n");
            exit(1);
        }
        t->cells = cells;
        t->colors = colors;
        t->cap = cap;
    }
    t->cells[t->n] = strdup(text != NULL && text[0] != '\0' ? text : "-");
    t->colors[t->n] = color;
    t->n++;
}

void table_addf(struct table *t, const char *color, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    table_add(t, buf, color);
}

/* Display width of UTF-8 text (one column per code point). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

void table_print(const struct table *t, FILE *f)
{
    size_t w[16] = {0};
    for (int c = 0; c < t->ncols; c++)
        w[c] = width(t->heads[c]);
    for (size_t i = 0; i < t->n; i++) {
        size_t cw = width(t->cells[i]);
        if (cw > w[i % (size_t)t->ncols])
            w[i % (size_t)t->ncols] = cw;
    }
    for (int c = 0; c < t->ncols; c++) {
        bool last = c == t->ncols - 1;
        fprintf(f, "%s%s%s", out_color(C_BOLD), t->heads[c], out_color(C_RESET));
        if (!last)
            fprintf(f, "%*s", (int)(w[c] - width(t->heads[c]) + 2), "");
    }
    fputc('\n', f);
    for (size_t i = 0; i < t->n; i++) {
        int c = (int)(i % (size_t)t->ncols);
        bool last = c == t->ncols - 1;
        const char *color = t->colors[i] ? out_color(t->colors[i]) : "";
        fprintf(f, "%s%s%s", color, t->cells[i], color[0] ? C_RESET : "");
        if (!last)
            fprintf(f, "%*s", (int)(w[c] - width(t->cells[i]) + 2), "");
        else
            fputc('\n', f);
    }
}

void table_free(struct table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->colors);
    memset(t, 0, sizeof *t);
}

/* ---- values ---------------------------------------------------------------------- */

int64_t out_parse_time(const char *s)
{
    if (s == NULL)
        return -1;
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest == NULL)
        return -1;
    return (int64_t)timegm(&tm);
}

const char *out_duration(double s, char *buf, size_t len)
{
    long v = (long)(s + 0.5);
    if (v < 60)
        snprintf(buf, len, "%lds", v);
    else if (v < 3600)
        snprintf(buf, len, "%ldm%02lds", v / 60, v % 60);
    else if (v < 86400)
        snprintf(buf, len, "%ldh%02ldm", v / 3600, v / 60 % 60);
    else
        snprintf(buf, len, "%ldd%02ldh", v / 86400, v / 3600 % 24);
    return buf;
}

const char *out_reltime(const char *rfc3339, char *buf, size_t len)
{
    int64_t t = out_parse_time(rfc3339);
    if (t < 0) {
        snprintf(buf, len, "%s", rfc3339 ? rfc3339 : "-");
        return buf;
    }
    int64_t d = (int64_t)time(NULL) - t;
    int64_t a = d < 0 ? -d : d;
    char n[32];
    if (a < 60)
        snprintf(n, sizeof n, "%llds", (long long)a);
    else if (a < 3600)
        snprintf(n, sizeof n, "%lldm", (long long)(a / 60));
    else if (a < 86400)
        snprintf(n, sizeof n, "%lldh", (long long)(a / 3600));
    else
        snprintf(n, sizeof n, "%lldd", (long long)(a / 86400));
    snprintf(buf, len, d < 0 ? "in %s" : "%s ago", n);
    return buf;
}

const char *out_size(double b, char *buf, size_t len)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4)
        b /= 1024, u++;
    if (u == 0)
        snprintf(buf, len, "%.0f B", b);
    else
        snprintf(buf, len, "%.1f %s", b, units[u]);
    return buf;
}

const char *out_value(const json_t *v, char *buf, size_t len)
{
    if (v == NULL || json_is_null(v)) {
        snprintf(buf, len, "-");
    } else if (json_is_string(v)) {
        snprintf(buf, len, "%s", json_string_value(v));
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        snprintf(buf, len, "%s", s ? s : "?");
        free(s);
    }
    return buf;
}

void out_json(const json_t *doc, bool compact)
{
    char *s = json_dumps(doc, (compact ? JSON_COMPACT : JSON_INDENT(2)) | JSON_ENCODE_ANY |
                                  JSON_PRESERVE_ORDER);
    if (s != NULL) {
        puts(s);
        free(s);
    }
    fflush(stdout);
}

/* ---- progress ---------------------------------------------------------------------- */

int64_t out_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void progress_start(struct progress *p, const char *label, const char *unit)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit;
    p->start_ms = out_now_ms();
    p->tty = isatty(STDERR_FILENO);
    p->last_quarter = -1;
}

static void draw(struct progress *p, double frac, double rate, double eta_s, const char *what)
{
    if (frac < 0)
        frac = 0;
    if (frac > 1)
        frac = 1;
    enum { W = 30 };
    char bar[W + 1];
    int fill = (int)(frac * W + 0.5);
    for (int i = 0; i < W; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[W] = '\0';
    char r[64] = "", e[48] = "", el[32], tmp[32];
    if (p->unit != NULL && rate >= 0) {
        if (strcmp(p->unit, "B") == 0)
            snprintf(r, sizeof r, "  %s/s", out_size(rate, tmp, sizeof tmp));
        else
            snprintf(r, sizeof r, "  %.1f %s/s", rate, p->unit);
    }
    if (what == NULL && eta_s >= 0)
        snprintf(e, sizeof e, "  ETA %s", out_duration(eta_s, tmp, sizeof tmp));
    out_duration((double)(out_now_ms() - p->start_ms) / 1000.0, el, sizeof el);
    fprintf(stderr, "%s%s [%s] %3d%%%s  %s%s%s%s", p->tty ? "\r\033[K" : "", p->label, bar,
            (int)(frac * 100), r, el, e, what ? "  " : "", what ? what : "");
    if (!p->tty || what != NULL)
        fputc('\n', stderr);
    fflush(stderr);
    p->drawn = true;
}

void progress_update(struct progress *p, double frac, double rate, double eta_s)
{
    if (!p->tty) {
        int q = (int)(frac * 4);
        if (q == p->last_quarter || q >= 4)
            return;
        p->last_quarter = q;
    }
    draw(p, frac, rate, eta_s, NULL);
}

void progress_end(struct progress *p, double frac, const char *what)
{
    draw(p, frac, -1, -1, what);
}
