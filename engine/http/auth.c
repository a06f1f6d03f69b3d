#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/util.h"
#include "http/auth.h"
#include "recoveryd/error.h"

static const char *const role_names[] = {
    [RD_ROLE_NONE] = "none",         [RD_ROLE_AGENT] = "agent", [RD_ROLE_READER] = "reader",
    [RD_ROLE_OPERATOR] = "operator", [RD_ROLE_ADMIN] = "admin",
};

const char *rd_role_name(enum rd_role role)
{
    return (unsigned)role < RD_ARRAY_SIZE(role_names) ? role_names[role] : "none";
}

int rd_role_parse(const char *s)
{
    for (int r = RD_ROLE_AGENT; r <= RD_ROLE_ADMIN; r++)
        if (s != NULL && strcmp(s, role_names[r]) == 0)
            return r;
    return -1;
}

void rd_token_hash(const char *secret, size_t len, unsigned char out[RD_TOKEN_HASH_LEN])
{
    /* Fetched once: EVP_sha256() makes OpenSSL 3 look the algorithm up on
     * every digest, which is most of the cost of hashing a short secret. */
    static EVP_MD *md;
    if (md == NULL)
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
    unsigned int n = RD_TOKEN_HASH_LEN;
    if (EVP_Digest(secret, len, out, &n, md != NULL ? md : EVP_sha256(), NULL) != 1)
        memset(out, 0, RD_TOKEN_HASH_LEN); /* matches nothing: no token hashes to all zeros */
}

int rd_token_secret_new(char out[RD_TOKEN_SECRET_LEN + 1])
{
    unsigned char b[32];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return RD_EIO;
    memcpy(out, "rdt_", 4);
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(out + 4 + 2 * i, 3, "%02x", b[i]);
    return 0;
}

int rd_token_line(const char *id, const char *role, const char *secret, const char *expires,
                  const char *nodes, char *out, size_t outlen)
{
    unsigned char h[RD_TOKEN_HASH_LEN];
    rd_token_hash(secret, strlen(secret), h);
    char hex[2 * RD_TOKEN_HASH_LEN + 1];
    for (size_t i = 0; i < sizeof(h); i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    int n =
        snprintf(out, outlen, "%s %s sha256:%s%s%s%s%s", id, role, hex, expires ? " expires=" : "",
                 expires ? expires : "", nodes ? " nodes=" : "", nodes ? nodes : "");
    return n < 0 || (size_t)n >= outlen ? RD_EINVAL : 0;
}

/* ---- the file ----------------------------------------------------------- */

struct parse {
    const char *name;
    int line;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int fail(struct parse *p, const char *fmt, ...)
{
    int n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, p->line);
    if (n < 0 || (size_t)n >= p->errlen)
        return RD_ECONFIG;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return RD_ECONFIG;
}

static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Checks a nodes= list: comma-separated node ids, each optionally ending in
 * '*' (a prefix, possibly empty: "*" is every node). */
static int check_nodes(struct parse *p, const char *s)
{
    if (*s == '\0')
        return fail(p, "nodes= is empty: list the node ids the agent may act as");
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        size_t idn = n > 0 && s[n - 1] == '*' ? n - 1 : n;
        if (memchr(s, '*', idn) != NULL)
            return fail(p, "nodes=: '%.*s': '*' may only end a pattern", (int)n, s);
        if (n == 0 || (idn > 0 && !rd_node_id_valid(s, idn)))
            return fail(p, "nodes=: '%.*s' is not a node id or a prefix ending in '*'", (int)n, s);
        s += n + (comma ? 1 : 0);
        if (comma && *s == '\0')
            return fail(p, "nodes= ends with ','");
    }
    return 0;
}

/* One non-empty line split into words: fills `t`. */
static int parse_line(struct parse *p, char *words[], int nw, struct rd_token *t)
{
    if (nw < 3)
        return fail(p,
                    "expected 'ID ROLE sha256:HEX [expires=RFC3339] [nodes=LIST]', got %d "
                    "word%s",
                    nw, nw == 1 ? "" : "s");
    size_t idlen = strlen(words[0]);
    if (idlen == 0 || idlen > RD_TOKEN_ID_MAX)
        return fail(p, "token id '%.64s' must be 1-%d characters", words[0], RD_TOKEN_ID_MAX);
    for (size_t i = 0; i < idlen; i++)
        if (!id_char(words[0][i]))
            return fail(p, "token id '%s' may only hold [A-Za-z0-9._:-]", words[0]);
    memcpy(t->id, words[0], idlen + 1);
    int role = rd_role_parse(words[1]);
    if (role < 0)
        return fail(p, "role '%.32s' of token %s: expected agent, reader, operator or admin",
                    words[1], t->id);
    t->role = (enum rd_role)role;
    const char *h = words[2];
    if (strncmp(h, "sha256:", 7) != 0 || strlen(h) != 7 + 2 * RD_TOKEN_HASH_LEN)
        return fail(p,
                    "hash of token %s: expected sha256: and 64 hex digits (the SHA-256 of "
                    "the secret; `recoveryd token new` prints the line)",
                    t->id);
    for (size_t i = 0; i < RD_TOKEN_HASH_LEN; i++) {
        int hi = hexval(h[7 + 2 * i]), lo = hexval(h[8 + 2 * i]);
        if (hi < 0 || lo < 0)
            return fail(p, "hash of token %s: '%c%c' is not hex", t->id, h[7 + 2 * i],
                        h[8 + 2 * i]);
        t->hash[i] = (unsigned char)(hi * 16 + lo);
    }
    bool have_exp = false, have_nodes = false;
    for (int i = 3; i < nw; i++) {
        const char *w = words[i];
        if (strncmp(w, "expires=", 8) == 0 && !have_exp) {
            have_exp = true;
            if (rd_time_parse(w + 8, &t->expires_ms) != 0 || t->expires_ms <= 0)
                return fail(p,
                            "expires= of token %s: expected an RFC 3339 time like "
                            "2027-01-31T00:00:00Z, got '%.40s'",
                            t->id, w + 8);
        } else if (strncmp(w, "nodes=", 6) == 0 && !have_nodes) {
            have_nodes = true;
            if (strlen(w + 6) >= sizeof(t->nodes))
                return fail(p, "nodes= of token %s is over %zu bytes", t->id, sizeof(t->nodes) - 1);
            int rv = check_nodes(p, w + 6);
            if (rv != 0)
                return rv;
            memcpy(t->nodes, w + 6, strlen(w + 6) + 1);
        } else {
            return fail(p, "token %s: unexpected '%.40s' (expected expires= or nodes=, once each)",
                        t->id, w);
        }
    }
    if (t->role == RD_ROLE_AGENT && !have_nodes)
        return fail(p, "agent token %s needs nodes=: the node ids it may act as", t->id);
    if (t->role != RD_ROLE_AGENT && have_nodes)
        return fail(p, "token %s: nodes= is for agent tokens only (its role is %s)", t->id,
                    rd_role_name(t->role));
    t->line = p->line;
    return 0;
}

void rd_tokens_free(struct rd_tokens *t)
{
    if (t == NULL)
        return;
    rd_map_free(&t->by_hash);
    free(t->v);
    free(t);
}

#define MAX_WORDS 8

int rd_tokens_parse(const char *name, const char *text, size_t len, struct rd_tokens **out,
                    char *err, size_t errlen)
{
    struct parse p = {.name = name, .line = 0, .err = err, .errlen = errlen};
    *out = NULL;
    if (len > RD_TOKEN_FILE_MAX)
        return fail(&p, "the file is over %u bytes", RD_TOKEN_FILE_MAX);
    struct rd_tokens *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return RD_ENOMEM;
    rd_map_init(&set->by_hash);
    size_t cap = 0;
    int rv = 0;
    const char *s = text, *end = text + len;
    char buf[4096];
    while (s < end && rv == 0) {
        p.line++;
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        const char *ls = s;
        s = nl ? nl + 1 : end;
        if (n > 0 && ls[n - 1] == '\r')
            n--;
        if (n >= sizeof(buf)) {
            rv = fail(&p, "line is over %zu bytes", sizeof(buf) - 1);
            break;
        }
        if (memchr(ls, '\0', n) != NULL) {
            rv = fail(&p, "NUL byte in the line");
            break;
        }
        memcpy(buf, ls, n);
        buf[n] = '\0';
        char *words[MAX_WORDS + 1];
        int nw = 0;
        char *save = NULL;
        for (char *w = strtok_r(buf, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save)) {
            if (nw == 0 && w[0] == '#')
                break;
            if (nw == MAX_WORDS) {
                rv = fail(&p, "too many words (at most %d)", MAX_WORDS);
                break;
            }
            words[nw++] = w;
        }
        if (rv != 0 || nw == 0)
            continue;
        if (set->n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct rd_token *nv = realloc(set->v, ncap * sizeof(*nv));
            if (nv == NULL) {
                rv = RD_ENOMEM;
                break;
            }
            set->v = nv;
            cap = ncap;
        }
        struct rd_token *t = &set->v[set->n];
        memset(t, 0, sizeof(*t));
        rv = parse_line(&p, words, nw, t);
        if (rv != 0)
            break;
        for (size_t i = 0; i < set->n; i++) {
            if (strcmp(set->v[i].id, t->id) == 0)
                rv = fail(&p, "token id %s is already used at line %d", t->id, set->v[i].line);
            else if (memcmp(set->v[i].hash, t->hash, RD_TOKEN_HASH_LEN) == 0)
                rv = fail(&p, "token %s has the same hash as token %s (line %d)", t->id,
                          set->v[i].id, set->v[i].line);
            if (rv != 0)
                break;
        }
        if (rv == 0)
            set->n++;
    }
    /* The map points into v: fill it once v no longer moves. */
    for (size_t i = 0; i < set->n && rv == 0; i++)
        rv = rd_map_put(&set->by_hash, (const char *)set->v[i].hash, RD_TOKEN_HASH_LEN, &set->v[i]);
    if (rv != 0) {
        rd_tokens_free(set);
        return rv;
    }
    *out = set;
    return 0;
}

int rd_tokens_load(const char *path, struct rd_tokens **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return RD_EIO;
    }
    char *buf = malloc(RD_TOKEN_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return RD_ENOMEM;
    }
    size_t n = fread(buf, 1, RD_TOKEN_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    int rv;
    if (bad) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        rv = RD_EIO;
    } else {
        rv = rd_tokens_parse(path, buf, n, out, err, errlen);
    }
    free(buf);
    return rv;
}

const struct rd_token *rd_tokens_find(const struct rd_tokens *t, const char *secret, size_t len)
{
    if (t == NULL)
        return NULL;
    unsigned char h[RD_TOKEN_HASH_LEN];
    rd_token_hash(secret, len, h);
    /* The lookup is by the hash (which tells nothing about a secret); the
     * final comparison is constant-time all the same. */
    const struct rd_token *tok = rd_map_get(&t->by_hash, (const char *)h, sizeof(h));
    if (tok == NULL || CRYPTO_memcmp(tok->hash, h, sizeof(h)) != 0)
        return NULL;
    return tok;
}

bool rd_token_expired(const struct rd_token *t, int64_t now_ms)
{
    return t->expires_ms != 0 && now_ms >= t->expires_ms;
}

bool rd_nodes_match(const char *patterns, const char *node, size_t len)
{
    const char *s = patterns;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        if (n > 0 && s[n - 1] == '*') {
            if (len >= n - 1 && memcmp(node, s, n - 1) == 0)
                return true;
        } else if (n == len && memcmp(node, s, n) == 0) {
            return true;
        }
        s += n + (comma ? 1 : 0);
    }
    return false;
}

int rd_peer_token_read(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return RD_EIO;
    }
    char line[512];
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    size_t n = got ? strcspn(line, "\r\n") : 0;
    line[n] = '\0';
    bool ok = n > 0;
    for (size_t i = 0; i < n && ok; i++)
        ok = line[i] > 0x20 && line[i] < 0x7f;
    if (!ok || n + 8 > outlen) {
        snprintf(err, errlen, "%s:1: expected the secret of a token (one line, no spaces)", path);
        return RD_ECONFIG;
    }
    snprintf(out, outlen, "Bearer %s", line);
    return 0;
}
