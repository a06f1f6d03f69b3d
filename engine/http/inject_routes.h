/* The fault-injection daemon's /debug/ routes (inject_routes.c). */
#ifndef RD_HTTP_INJECT_ROUTES_H
#define RD_HTTP_INJECT_ROUTES_H

struct rd_http_req;

/* rd_http_env.debug for recoveryd-fi; `data` is the engine's struct rd_fsm. */
void rd_inject_debug_route(struct rd_http_req *hr, void *data);

#endif
