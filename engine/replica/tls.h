/*
 * Mutual TLS between replicas (cluster.tls; docs/security.md): a
 * `struct raft_uv_transport` that owns the TCP sockets of the raft port and
 * speaks TLS 1.2+ on them with OpenSSL (memory BIOs over libuv reads and
 * writes), both ends presenting a certificate from the cluster CA. Raft only
 * ever sees one end of a socketpair (a uv_pipe_t); this transport pumps the
 * bytes between the other end and the TLS connection, with back-pressure
 * both ways, and closes each side when the other closes.
 *
 * On the wire, inside TLS, the stream is exactly libraft's TCP transport's:
 * the dialling replica first sends libraft's handshake (protocol 1, its raft
 * id, its address), then raft's messages. The accepting side reads that
 * handshake itself and hands raft the rest, as libraft's transport does.
 *
 * With cluster.tls.check_replica_id (the default) a peer's certificate must
 * also name `replica-<id>` (its subject CN or a DNS subjectAltName) for the
 * raft id it claims in its handshake (inbound) or is dialled as (outbound):
 * one replica's certificate cannot speak for another.
 *
 * Loop-thread only.
 */
#ifndef RD_REPLICA_TLS_H
#define RD_REPLICA_TLS_H

#include <raft.h>
#include <raft/uv.h>
#include <stddef.h>
#include <uv.h>

#include "config/config.h"

/*
 * Makes `t` (its `version` and `data` are kept) this transport, listening on
 * cfg->cluster.raft_address once t->listen() is called. Loads and checks
 * cluster.tls.ca, cert and key now: 0, or RD_ECONFIG with a message naming
 * the key and the file in `err` ("cluster.tls.key: /etc/x.key does not match
 * the certificate in cluster.tls.cert /etc/x.crt"), RD_ENOMEM. `cfg` must
 * outlive the transport.
 */
int rd_raft_tls_init(struct raft_uv_transport *t, uv_loop_t *loop, const struct rd_config *cfg,
                     char *err, size_t cap);

/* Releases what rd_raft_tls_init() allocated: after t->close() called back,
 * or when listen was never called. */
void rd_raft_tls_free(struct raft_uv_transport *t);

#endif
