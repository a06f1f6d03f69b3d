/*
 * recoveryctl's terminal output: colour (only on a terminal, never with
 * NO_COLOR), aligned tables, relative times, sizes and a progress bar.
 */
#ifndef RECOVERYCTL_OUT_H
#define RECOVERYCTL_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* SGR colours; out_color() gives "" when colour is off. */
#define C_RESET  "\033[0m"
#define C_BOLD   "\033[1m"
#define C_RED    "\033[31m"
#define C_GREEN  "\033[32m"
#define C_YELLOW "\033[33m"
#define C_BLUE   "\033[34m"
#define C_DIM    "\033[2m"

/* "auto" (a terminal on stdout and no NO_COLOR), "always" or "never". 0, or -1 on another word. */
int out_set_color(const char *mode);
bool out_color_on(void);
/* `sgr` when colour is on, else "". */
const char *out_color(const char *sgr);
/* The colour of a state word (alive green, failed red, ...); NULL for none. */
const char *out_state_color(const char *state);

/*
 * An aligned table: columns separated by two spaces, the header in bold on a
 * terminal. Cells are copied. Add a row's cells in order with table_add(),
 * then table_print() and table_free().
 */
struct table {
    int ncols;
    const char *heads[16];
    char **cells;
    const char **colors;
    size_t n, cap;
};
void table_init(struct table *t, int ncols, const char *const *heads);
/* One cell of the current row, in `color` (NULL: none); NULL text prints "-". */
void table_add(struct table *t, const char *text, const char *color);
void table_addf(struct table *t, const char *color, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void table_print(const struct table *t, FILE *f);
void table_free(struct table *t);

/* Seconds since the epoch of an RFC 3339 UTC time, or -1. */
int64_t out_parse_time(const char *rfc3339);
/* "5s ago", "3m ago", "2h ago", "4d ago", "in 10s"; "-" for NULL. Into `buf`. */
const char *out_reltime(const char *rfc3339, char *buf, size_t len);
/* "1.2 MiB", "512 B". */
const char *out_size(double bytes, char *buf, size_t len);
/* "12s", "3m04s", "1h02m". */
const char *out_duration(double seconds, char *buf, size_t len);
/* A JSON value as text: strings bare, null "-", others compact JSON. Into `buf`. */
const char *out_value(const json_t *v, char *buf, size_t len);

/* The document on stdout, indented, with a newline. */
void out_json(const json_t *doc, bool compact);

/*
 * A progress bar on stderr: on a terminal one line redrawn in place
 * ("label [#####.....]  42%  3.1 tasks/s  ETA 12s"), elsewhere one line at
 * each quarter and at the end.
 */
struct progress {
    const char *label;
    const char *unit; /* of the rate ("tasks", "B"); NULL: no rate */
    int64_t start_ms;
    bool tty;
    int last_quarter;
    bool drawn;
};
void progress_start(struct progress *p, const char *label, const char *unit);
/* `frac` from 0 to 1; `rate` in units per second (< 0: unknown); `eta_s` (< 0: unknown). */
void progress_update(struct progress *p, double frac, double rate, double eta_s);
/* Ends the line; `what` is printed after the bar ("done", "failed"). */
void progress_end(struct progress *p, double frac, const char *what);
int64_t out_now_ms(void);

#endif
