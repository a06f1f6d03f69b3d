/* The token file parser, token lookup, node patterns (engine/http/auth.c). */
#include "cmocka_all.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/auth.h"
#include "recoveryd/error.h"

/* sha256("secret-a") and sha256("secret-b"), computed here, not copied. */
static char hash_a[80], hash_b[80];

static void hex_hash(const char *secret, char out[80])
{
    unsigned char h[RD_TOKEN_HASH_LEN];
    rd_token_hash(secret, strlen(secret), h);
    strcpy(out, "sha256:");
    for (int i = 0; i < RD_TOKEN_HASH_LEN; i++)
        sprintf(out + 7 + 2 * i, "%02x", h[i]);
}

static int setup(void **state)
{
    (void)state;
    hex_hash("secret-a", hash_a);
    hex_hash("secret-b", hash_b);
    return 0;
}

static struct rd_tokens *parse_ok(const char *text)
{
    struct rd_tokens *t = NULL;
    char err[512] = "";
    int rv = rd_tokens_parse("tokens", text, strlen(text), &t, err, sizeof(err));
    if (rv != 0)
        fail_msg("parse failed: %s", err);
    return t;
}

static void test_known_answer_hash(void **state)
{
    (void)state;
    char h[80];
    hex_hash("abc", h); /* FIPS 180-2 example */
    assert_string_equal(h,
                        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_parse_and_find(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof(text),
             "# comment\n"
             "\n"
             "  ops   operator  %s  expires=2099-01-01T00:00:00Z\r\n"
             "ag agent %s nodes=agent-1,rack7-*\n"
             "   # indented comment",
             hash_a, hash_b);
    struct rd_tokens *t = parse_ok(text);
    assert_int_equal(t->n, 2);
    const struct rd_token *a = rd_tokens_find(t, "secret-a", 8);
    assert_non_null(a);
    assert_string_equal(a->id, "ops");
    assert_int_equal(a->role, RD_ROLE_OPERATOR);
    assert_int_equal(a->line, 3);
    assert_true(a->expires_ms > 0);
    assert_false(rd_token_expired(a, 0));
    assert_true(rd_token_expired(a, a->expires_ms));
    const struct rd_token *b = rd_tokens_find(t, "secret-b", 8);
    assert_non_null(b);
    assert_int_equal(b->role, RD_ROLE_AGENT);
    assert_int_equal(b->expires_ms, 0);
    assert_false(rd_token_expired(b, INT64_MAX));
    assert_string_equal(b->nodes, "agent-1,rack7-*");
    /* Not the secret, a prefix of it, or its hash. */
    assert_null(rd_tokens_find(t, "secret-c", 8));
    assert_null(rd_tokens_find(t, "secret-", 7));
    assert_null(rd_tokens_find(t, hash_a, strlen(hash_a)));
    assert_null(rd_tokens_find(NULL, "secret-a", 8));
    rd_tokens_free(t);
}

static void test_empty_file(void **state)
{
    (void)state;
    struct rd_tokens *t = parse_ok("");
    assert_int_equal(t->n, 0);
    assert_null(rd_tokens_find(t, "", 0));
    rd_tokens_free(t);
}

static void test_node_patterns(void **state)
{
    (void)state;
    const char *p = "agent-1,rack7-*";
    assert_true(rd_nodes_match(p, "agent-1", 7));
    assert_false(rd_nodes_match(p, "agent-10", 8)); /* exact, not a prefix */
    assert_false(rd_nodes_match(p, "agent-", 6));
    assert_true(rd_nodes_match(p, "rack7-", 6));
    assert_true(rd_nodes_match(p, "rack7-node-3", 12));
    assert_false(rd_nodes_match(p, "rack7", 5));
    assert_false(rd_nodes_match(p, "rack8-x", 7));
    assert_false(rd_nodes_match("", "agent-1", 7));
    assert_true(rd_nodes_match("*", "anything", 8));
}

/* Each bad file is refused with its line and what is wrong. */
static void test_errors_name_the_line(void **state)
{
    (void)state;
    struct {
        const char *fmt; /* %s: hash_a, %2$s: hash_b */
        const char *want;
    } cases[] = {
        {"x reader\n", "tokens:1: expected 'ID ROLE sha256:HEX"},
        {"# c\nx boss %s\n", "tokens:2: role 'boss' of token x"},
        {"x reader sha256:abc\n", "tokens:1: hash of token x: expected sha256: and 64 hex"},
        {"bad/id reader %s\n", "tokens:1: token id 'bad/id' may only hold"},
        {"x reader %s expires=tomorrow\n", "tokens:1: expires= of token x: expected an RFC 3339"},
        {"x agent %s\n", "tokens:1: agent token x needs nodes="},
        {"x reader %s nodes=a\n", "tokens:1: token x: nodes= is for agent tokens only"},
        {"x agent %s nodes=a,,b\n", "tokens:1: nodes=: '' is not a node id"},
        {"x agent %s nodes=a*b\n", "tokens:1: nodes=: 'a*b': '*' may only end a pattern"},
        {"x agent %s nodes=a,\n", "tokens:1: nodes= ends with ','"},
        {"x reader %s colour=blue\n", "tokens:1: token x: unexpected 'colour=blue'"},
        {"x reader %s\nx admin %2$s\n", "tokens:2: token id x is already used at line 1"},
        {"x reader %s\ny admin %1$s\n", "tokens:2: token y has the same hash as token x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[1024], err[512] = "";
        snprintf(text, sizeof(text), cases[i].fmt, hash_a, hash_b);
        struct rd_tokens *t = (struct rd_tokens *)1;
        int rv = rd_tokens_parse("tokens", text, strlen(text), &t, err, sizeof(err));
        if (rv != RD_ECONFIG || strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: rv %d, error '%s', wanted '%s'", i, rv, err, cases[i].want);
        assert_null(t);
    }
}

static void test_line_limits(void **state)
{
    (void)state;
    char *big = malloc(8192);
    memset(big, 'a', 8191);
    big[8191] = '\0';
    struct rd_tokens *t;
    char err[512];
    assert_int_equal(rd_tokens_parse("tokens", big, 8191, &t, err, sizeof(err)), RD_ECONFIG);
    assert_non_null(strstr(err, "tokens:1: line is over"));
    free(big);
    const char nul[] = "x reader\0 y";
    assert_int_equal(rd_tokens_parse("tokens", nul, sizeof(nul) - 1, &t, err, sizeof(err)),
                     RD_ECONFIG);
    assert_non_null(strstr(err, "NUL byte"));
}

static void test_new_secret_and_line_round_trip(void **state)
{
    (void)state;
    char s1[RD_TOKEN_SECRET_LEN + 1], s2[RD_TOKEN_SECRET_LEN + 1];
    assert_int_equal(rd_token_secret_new(s1), 0);
    assert_int_equal(rd_token_secret_new(s2), 0);
    assert_int_equal(strlen(s1), RD_TOKEN_SECRET_LEN);
    assert_memory_equal(s1, "rdt_", 4);
    assert_string_not_equal(s1, s2);
    char line[1024];
    assert_int_equal(
        rd_token_line("a1", "agent", s1, "2099-01-01T00:00:00Z", "agent-*", line, sizeof(line)), 0);
    assert_null(strstr(line, s1)); /* the file never holds the secret */
    struct rd_tokens *t = parse_ok(line);
    const struct rd_token *k = rd_tokens_find(t, s1, strlen(s1));
    assert_non_null(k);
    assert_string_equal(k->id, "a1");
    assert_true(rd_nodes_match(k->nodes, "agent-9", 7));
    assert_null(rd_tokens_find(t, s2, strlen(s2)));
    rd_tokens_free(t);
}

static void test_roles(void **state)
{
    (void)state;
    assert_int_equal(rd_role_parse("agent"), RD_ROLE_AGENT);
    assert_int_equal(rd_role_parse("admin"), RD_ROLE_ADMIN);
    assert_int_equal(rd_role_parse("none"), -1);
    assert_int_equal(rd_role_parse("Admin"), -1);
    assert_int_equal(rd_role_parse(NULL), -1);
    assert_string_equal(rd_role_name(RD_ROLE_OPERATOR), "operator");
    assert_string_equal(rd_role_name(RD_ROLE_NONE), "none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer_hash),
        cmocka_unit_test(test_parse_and_find),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_node_patterns),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_line_limits),
        cmocka_unit_test(test_new_secret_and_line_round_trip),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
