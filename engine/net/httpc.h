/*
 * Asynchronous HTTP client on the engine's libuv loop.
 *
 * libcurl's multi *socket* interface driven by libuv: one uv_poll per socket
 * curl asks us to watch and one uv_timer for curl's own timeout, so nothing
 * ever blocks the loop (curl's threaded resolver does DNS off the loop).
 * Connections are kept alive and reused through the multi handle; DNS
 * answers are not kept (a new connection resolves its host again). HTTP/1.1
 * only, no redirects, no proxy (not even from the environment).
 *
 * Besides http:// and https:// it understands `tcp://HOST:PORT`: a plain TCP
 * connect (libuv, with getaddrinfo on the thread pool for names) that answers
 * status 200 when the connection is established and closes it at once.
 *
 * Outcomes, as struct rd_http_response (recoveryd/plugin.h) describes them:
 *   answered 2xx        status = code, cause RD_PROBE_NONE, error ""
 *   answered non-2xx    status = code, cause RD_PROBE_STATUS, error "status N"
 *   connection refused  status 0, cause RD_PROBE_REFUSED
 *   no answer in time   status 0, cause RD_PROBE_TIMEOUT
 *   anything else       status 0, cause RD_PROBE_NETWORK (DNS, reset, ...)
 *   cancelled           status 0, cause RD_PROBE_NETWORK, error "cancelled"
 * `error` is never NULL. The body is the response body (NUL-terminated,
 * body_len without the NUL), cut at RD_HTTPC_BODY_MAX bytes: a longer answer
 * ends the transfer there and is reported with its status and the first
 * RD_HTTPC_BODY_MAX bytes. Everything in the response is valid only during
 * the callback.
 *
 * Threads: loop thread only, like the loop it runs on.
 */
#ifndef RD_NET_HTTPC_H
#define RD_NET_HTTPC_H

#include <stddef.h>

#include <uv.h>

#include "recoveryd/plugin.h"

#define RD_HTTPC_BODY_MAX           (1024u * 1024u) /* response bodies are cut here */
#define RD_HTTPC_DEFAULT_TIMEOUT_MS 10000           /* when a request says 0 */
/* Connections to one host at once; more requests wait for one (their timeout
 * runs while they wait). Far below a server's per-address cap (ours:
 * server.edge.max_per_address, 128), so the engine never trips it. */
#define RD_HTTPC_MAX_PER_HOST 32

struct rd_httpc; /* opaque */

/*
 * Creates a client on `loop` (which must outlive it). On 0 `*out` is the
 * client, to be released with rd_httpc_close(); RD_ENOMEM or RD_EINTERNAL
 * otherwise (nothing to release).
 */
int rd_httpc_new(uv_loop_t *loop, struct rd_httpc **out);

/*
 * Starts one request. `owner` (any pointer, may be NULL) groups requests for
 * rd_httpc_cancel_owner(). The client copies what it keeps of `req` (URL,
 * method, body, content type) before returning; the caller keeps ownership
 * of `req`. `req->timeout_ms` bounds the whole exchange and the connect
 * (0: RD_HTTPC_DEFAULT_TIMEOUT_MS).
 *
 * Returns 0 and then `cb(data, resp)` fires exactly once, on the loop, never
 * from inside this call (but possibly from inside rd_httpc_cancel_owner() or
 * rd_httpc_close()). Returns RD_EINVAL (no cb, no URL, a URL that is not a
 * well-formed http://, https:// or tcp://HOST:PORT), RD_ESHUTDOWN (the client
 * is closing) or RD_ENOMEM / RD_EINTERNAL; then `cb` never fires.
 *
 * A callback may start new requests, cancel owners or close the client.
 */
int rd_httpc_request(struct rd_httpc *c, void *owner, const struct rd_http_request *req,
                     rd_http_cb cb, void *data);

/*
 * The same with an Authorization header (`authorization` is its value, for
 * example "Bearer rdt_...", or NULL for none). For the engine's own calls to
 * the other replicas' APIs (security.peer_token_file), never for plugins.
 */
int rd_httpc_request_auth(struct rd_httpc *c, void *owner, const struct rd_http_request *req,
                          const char *authorization, rd_http_cb cb, void *data);

/*
 * Ends every request of `owner` pending when called: each callback fires
 * once, synchronously, before this returns, with status 0, cause
 * RD_PROBE_NETWORK and error "cancelled". Requests the callbacks start are
 * not affected.
 */
void rd_httpc_cancel_owner(struct rd_httpc *c, void *owner);

/* Requests whose callback has not fired yet. */
size_t rd_httpc_pending(struct rd_httpc *c);

/*
 * Cancels every pending request (their callbacks fire before this returns,
 * as for rd_httpc_cancel_owner()), refuses new ones with RD_ESHUTDOWN, closes
 * all connections and libuv handles, frees the client and then calls
 * `done(data)` on the loop (never from inside this call; `done` may be NULL).
 * Between this call and `done`, rd_httpc_request() answers RD_ESHUTDOWN and
 * rd_httpc_cancel_owner() and rd_httpc_close() do nothing (so callbacks fired
 * by the close may still call them); after `done` the client is gone.
 */
void rd_httpc_close(struct rd_httpc *c, void (*done)(void *data), void *data);

#endif
