/*
 * The /debug/ routes of the fault-injection daemon (recoveryd-fi), for tests
 * that corrupt one replica's state on purpose (issue 11). Compiled only into
 * the rdinject library, never into the default recoveryd (tests/symbols).
 *
 *   POST /debug/corrupt?what=node|checkpoint&id=ID   rd_fsm_inject_corrupt()
 *   POST /debug/digest_skew                          rd_fsm_inject_digest_skew()
 */
#ifdef RD_FAULT_INJECTION

#include <stdio.h>
#include <string.h>

#include "fsm/fsm.h"
#include "http.h"
#include "inject_routes.h"
#include "recoveryd/error.h"

void rd_inject_debug_route(struct rd_http_req *hr, void *data)
{
    struct rd_fsm *f = data;
    h2o_req_t *req = hr->req;
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    int rv;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        rd_http_send_error(hr, 405, "method_not_allowed", NULL, "debug routes take POST");
        return;
    }
    if (h2o_memis(req->path.base, plen, H2O_STRLIT("/debug/corrupt")))
        rv = rd_fsm_inject_corrupt(f, rd_http_query(hr, "what"), rd_http_query(hr, "id"));
    else if (h2o_memis(req->path.base, plen, H2O_STRLIT("/debug/digest_skew")))
        rv = rd_fsm_inject_digest_skew(f);
    else {
        rd_http_send_error(hr, 404, "not_found", NULL, "no debug route %.*s", (int)plen,
                           req->path.base);
        return;
    }
    if (rv != 0) {
        rd_http_send_rd_error(hr, rv, "injection refused");
        return;
    }
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)rd_fsm_digest(f));
    rd_http_send_json(hr, 200, json_pack("{s:b,s:s}", "injected", 1, "digest", hex));
}

#endif
