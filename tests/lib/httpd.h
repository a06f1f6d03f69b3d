/*
 * A real HTTP server for tests and benchmarks, on h2o and its own libuv
 * loop in a thread: the health endpoints of simulated agents and the
 * receiver of webhook alerts. Each endpoint is its own listening port on
 * 127.0.0.1, so it can fail the way a real process does:
 *
 *   RDT_EP_OK      answers 200 {"status":"ok"} (POST bodies are recorded)
 *   RDT_EP_STATUS  answers with the status set (503 by default)
 *   RDT_EP_HANG    accepts, reads the request and never answers
 *   RDT_EP_DOWN    the listener is closed and open connections are shut
 *                  down: new connections are refused, as after a crash
 *
 * Modes can be changed from any thread at any time.
 */
#ifndef RDT_HTTPD_H
#define RDT_HTTPD_H

#include <stddef.h>
#include <stdint.h>

enum rdt_ep_mode { RDT_EP_OK = 0, RDT_EP_STATUS, RDT_EP_HANG, RDT_EP_DOWN };

struct rdt_httpd;

/* Starts a server with `n` endpoints (ports). NULL on failure. */
struct rdt_httpd *rdt_httpd_start(unsigned n);

uint16_t rdt_httpd_port(struct rdt_httpd *s, unsigned ep);

/* Changes an endpoint's behaviour; `status` is used with RDT_EP_STATUS.
 * Going DOWN waits until the listener is closed; coming back from DOWN
 * listens again on the same port. 0 or -1. */
int rdt_httpd_set(struct rdt_httpd *s, unsigned ep, enum rdt_ep_mode mode, int status);

/* The same for the `n` endpoints `eps` at once (one wake-up of the server's
 * thread, one walk over its endpoints): -1, and nothing changed, when one
 * is out of range. */
int rdt_httpd_set_many(struct rdt_httpd *s, const unsigned *eps, unsigned n, enum rdt_ep_mode mode,
                       int status);

/* Requests an endpoint answered or accepted so far. */
unsigned rdt_httpd_hits(struct rdt_httpd *s, unsigned ep);

/* A copy of the i-th POST body an endpoint accepted with 2xx (malloc'd), or NULL. */
char *rdt_httpd_body(struct rdt_httpd *s, unsigned ep, unsigned i);
unsigned rdt_httpd_bodies(struct rdt_httpd *s, unsigned ep);

void rdt_httpd_stop(struct rdt_httpd *s);

#endif
