/*
 * libFuzzer target: the token file parser (engine/http/auth.c,
 * security.tokens_file) on any bytes; a file it takes is then used as the
 * API uses it: every token's nodes= patterns matched against a node id, and
 * the input's first line looked up as a secret.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rd_tokens *t = NULL;
    char err[512];
    if (rd_tokens_parse("fuzz.tokens", (const char *)data, size, &t, err, sizeof(err)) != 0)
        return 0;
    for (size_t i = 0; i < t->n; i++) {
        (void)rd_nodes_match(t->v[i].nodes, "agent-1", 7);
        (void)rd_nodes_match(t->v[i].nodes, "rack7-a", 7);
        (void)rd_token_expired(&t->v[i], 1780000000000);
    }
    const char *nl = memchr(data, '\n', size);
    (void)rd_tokens_find(t, (const char *)data, nl ? (size_t)(nl - (const char *)data) : size);
    rd_tokens_free(t);
    return 0;
}
