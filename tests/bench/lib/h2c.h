/*
 * h2c: a small HTTP/2 client for load generators, on nghttp2 (what libcurl
 * itself uses), over one non-blocking cleartext TCP connection with prior
 * knowledge (h2o takes the connection preface directly).
 *
 * Why not libcurl's multi interface: libcurl 7.88 writes each frame of each
 * transfer with its own send(2), and on loopback each send also runs the
 * receiver's TCP path; with 20,000 requests/s that was a quarter of the
 * load generator's CPU. Here every request submitted between two
 * h2c_step() calls goes out in ONE send(2) (h2c_step first writes whatever
 * nghttp2 has pending into one buffer), and everything readable is read
 * and handed to nghttp2 at once.
 *
 * The caller submits requests (h2c_submit: at most h2c_room() at a time,
 * the server's MAX_CONCURRENT_STREAMS and the client's own limit) and
 * calls h2c_step() from its loop; each request ends exactly once in the
 * `done` callback, from within h2c_step() (which may submit again from
 * there): answered (err H2C_OK, its status and body), reset by the server
 * (H2C_ERESET, RST_STREAM or refused by a GOAWAY), timed out
 * (H2C_ETIMEOUT: its stream is cancelled), or with the connection
 * (H2C_ECONNECT when it never opened, H2C_ELOST when it broke: then every
 * request still in flight ends so, and the connection is down until
 * h2c_connect() again). Single-threaded: one h2c per thread.
 */
#ifndef RD_BENCH_H2C_H
#define RD_BENCH_H2C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum h2c_err { H2C_OK = 0, H2C_ECONNECT, H2C_ELOST, H2C_ERESET, H2C_ETIMEOUT };

enum h2c_state { H2C_DOWN = 0, H2C_CONNECTING, H2C_OPEN };

/* A request that ended. `body` (NUL-terminated, `len` bytes) is valid
 * during the callback only. */
struct h2c_resp {
    void *user; /* h2c_submit's */
    int err;    /* enum h2c_err */
    int status; /* the HTTP status when err is H2C_OK, else 0 */
    const char *body;
    size_t len;
    int64_t us; /* from h2c_submit to its end */
    /* From h2c_submit to the arrival at the socket of the bytes that ended
     * it (the kernel's receive stamp): `us` without the time the caller's
     * thread took to get to them. At most `us`; `us` when no stamp came. */
    int64_t rx_us;
};

typedef void h2c_done_fn(void *ctx, const struct h2c_resp *r);

struct h2c;

/* A client that keeps at most `max_streams` requests in flight and reports
 * to done(ctx, ...). NULL when out of memory. */
struct h2c *h2c_new(unsigned max_streams, h2c_done_fn *done, void *ctx);

/* Closes it without reporting what was in flight. */
void h2c_free(struct h2c *c);

/*
 * Opens a connection to `base_url` ("http://host:port", a path after it
 * ignored) without blocking: it connects within h2c_step(), within
 * `connect_ms` (else every request submitted meanwhile ends with
 * H2C_ECONNECT). A connection already there is dropped first (as
 * h2c_drop). Requests can be submitted at once: they go out once it is
 * connected. 0, or -1 when the URL is not one or no socket could be made.
 */
int h2c_connect(struct h2c *c, const char *base_url, int connect_ms);

/* Closes the connection and forgets its requests in flight without
 * reporting them (the caller took them back). */
void h2c_drop(struct h2c *c);

enum h2c_state h2c_state(const struct h2c *c);

/* How many more requests it takes now: 0 while it is down or the server
 * said GOAWAY. */
unsigned h2c_room(const struct h2c *c);

/* Requests in flight (submitted and not ended). */
unsigned h2c_in_flight(const struct h2c *c);

/*
 * Submits `method` on `path` with the JSON `body` of `len` bytes (copied;
 * NULL: none), to end within `timeout_ms` (0: no limit), reporting with
 * `user`. 0, or -1 when it takes none now (h2c_room() is 0) or out of
 * memory: then nothing is reported.
 */
int h2c_submit(struct h2c *c, const char *method, const char *path, const char *body, size_t len,
               int timeout_ms, void *user);

/*
 * Writes what is pending (in one send), waits up to `wait_ms` for the
 * connection to be readable (or writable while connecting or while a
 * write is unfinished), reads all there is, ends timed-out requests and
 * reports what ended. Sleeps `wait_ms` when there is no connection. The
 * number of requests reported.
 */
int h2c_step(struct h2c *c, int wait_ms);

/* h2c_step over `n` clients at once (at most H2C_STEP_MAX): one poll for
 * all of them (a load generator's worker with several connections). */
#define H2C_STEP_MAX 16
int h2c_step_many(struct h2c *const *cs, unsigned n, int wait_ms);

const char *h2c_strerror(int err);

#endif
