/*
 * Who may call the API: the bearer tokens of security.tokens_file, the
 * client certificates of security.client_ca, and the roles (principal.h).
 *
 * The token file (docs/security.md) is one token a line:
 *
 *     # id      role      hash                                   options
 *     ops-ana   operator  sha256:9f86d081884c7d65...(64 hex)     expires=2027-01-01T00:00:00Z
 *     agents-a  agent     sha256:...                             nodes=agent-1,agent-2,rack7-*
 *
 * `id` is 1-63 characters of [A-Za-z0-9._:-], unique; `role` one of agent,
 * reader, operator, admin; the hash is the SHA-256 of the whole secret (the
 * file never holds a secret); `expires=` an RFC 3339 time after which the
 * token is refused; `nodes=` (agents only, and required for them) the node
 * ids the agent may act as, each exact or a prefix ending in `*`. Blank
 * lines and lines starting with `#` are skipped.
 *
 * The parser keeps no state; the set it makes is read-only afterwards.
 * Loop-thread only otherwise (it is swapped by a reload).
 */
#ifndef RD_HTTP_AUTH_H
#define RD_HTTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/map.h"
#include "http/principal.h"

#define RD_TOKEN_ID_MAX    63
#define RD_TOKEN_NODES_MAX 1024 /* bytes of one nodes= list */
#define RD_TOKEN_HASH_LEN  32
#define RD_TOKEN_FILE_MAX  (4u << 20)
/* "rdt_" and 64 hex digits of 32 random bytes. */
#define RD_TOKEN_SECRET_LEN 68

struct rd_token {
    char id[RD_TOKEN_ID_MAX + 1];
    enum rd_role role;
    unsigned char hash[RD_TOKEN_HASH_LEN];
    int64_t expires_ms;             /* 0 = never */
    char nodes[RD_TOKEN_NODES_MAX]; /* agents: "a,b,c-*" as written; "" otherwise */
    int line;                       /* 1-based line in the file */
};

struct rd_tokens {
    size_t n;
    struct rd_token *v;
    struct rd_map by_hash; /* hash bytes -> struct rd_token * */
};

/* "agent", "reader", "operator", "admin"; "none" for RD_ROLE_NONE. */
const char *rd_role_name(enum rd_role role);
/* The role named `s`, or -1 (RD_ROLE_NONE is not a name one can give). */
int rd_role_parse(const char *s);

/*
 * Parses a token file's text; `name` stands for the file in messages. On 0
 * `*out` is the new set (rd_tokens_free); on RD_ECONFIG `err` says what is
 * wrong as "NAME:LINE: ...", and nothing is allocated. RD_ENOMEM too.
 */
int rd_tokens_parse(const char *name, const char *text, size_t len, struct rd_tokens **out,
                    char *err, size_t errlen);
/* Reads `path` and parses it (RD_EIO when it cannot be read). */
int rd_tokens_load(const char *path, struct rd_tokens **out, char *err, size_t errlen);
void rd_tokens_free(struct rd_tokens *t);

/*
 * The token whose secret is `secret` (hashed, then compared in constant
 * time), or NULL. Expiry is the caller's to check (rd_token_expired).
 */
const struct rd_token *rd_tokens_find(const struct rd_tokens *t, const char *secret, size_t len);
bool rd_token_expired(const struct rd_token *t, int64_t now_ms);
/* True when `node` matches one of `patterns` ("a,b,rack7-*", as nodes=). */
bool rd_nodes_match(const char *patterns, const char *node, size_t len);

/* SHA-256 of `len` bytes. */
void rd_token_hash(const char *secret, size_t len, unsigned char out[RD_TOKEN_HASH_LEN]);
/* A new random secret ("rdt_" + 64 hex digits, NUL-terminated). 0 or RD_EIO. */
int rd_token_secret_new(char out[RD_TOKEN_SECRET_LEN + 1]);
/* The file line for a secret: "ID ROLE sha256:HEX[ expires=..][ nodes=..]". */
int rd_token_line(const char *id, const char *role, const char *secret, const char *expires,
                  const char *nodes, char *out, size_t outlen);

/*
 * Reads security.peer_token_file: its first line is the secret this replica
 * presents to the other replicas' APIs; `out` gets "Bearer <secret>".
 * 0, RD_EIO or RD_ECONFIG with `err` naming the file.
 */
int rd_peer_token_read(const char *path, char *out, size_t outlen, char *err, size_t errlen);

#endif
