/*
 * The /debug/ routes of the fault-injection daemon (recoveryd-fi), for tests
 * that corrupt one replica's state on purpose (issue 11). Compiled only into
 * the rdinject library, never into the default recoveryd (tests/symbols).
 *
 *   POST /debug/corrupt?what=node|checkpoint&id=ID   rd_fsm_inject_corrupt()
 *   POST /debug/digest_skew                          rd_fsm_inject_digest_skew()
 *   POST /debug/hand_over?to=ID                      rd_replica_hand_over()
 *
 * The handover is the raft leadership transfer that a storage fault or a
 * diverged digest starts, to the voter a test names (one whose disk hangs
 * never catches up, so the transfer holds for an election timeout): raft
 * refuses every proposal meanwhile.
 */
#ifdef RD_FAULT_INJECTION

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm.h"
#include "http.h"
#include "inject_routes.h"
#include "recoveryd/error.h"
#include "replica/replica.h"

static void hand_over(struct rd_http_req *hr)
{
    const char *to = rd_http_query(hr, "to");
    char *end = NULL;
    unsigned long long id = to != NULL ? strtoull(to, &end, 10) : 0;
    if (to != NULL && (end == to || *end != '\0')) {
        rd_http_bad_request(hr, "to", "to must be a replica id");
        return;
    }
    int rv = rd_replica_hand_over(hr->env->replica, id, "debug route");
    if (rv != 0) {
        rd_http_send_rd_error(hr, rv, "handover refused");
        return;
    }
    rd_http_send_json(hr, 200, json_pack("{s:b,s:I}", "handing_over", 1, "to", (json_int_t)id));
}

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
    else if (h2o_memis(req->path.base, plen, H2O_STRLIT("/debug/hand_over"))) {
        hand_over(hr);
        return;
    } else {
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
