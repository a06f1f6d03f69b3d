/*
 * s3: a backup target in any S3-compatible object store, through libcurl
 * and its built-in AWS Signature Version 4 signing (CURLOPT_AWS_SIGV4).
 *
 * Object NAME is the key PREFIX + NAME in BUCKET, addressed path-style
 * (ENDPOINT/BUCKET/KEY), which every S3 implementation accepts and which
 * needs no DNS name per bucket. write is one PUT (atomic in S3: a reader
 * sees the old object or the new one), read a GET (404 NoSuchKey:
 * RD_ENOTFOUND), remove a DELETE (an absent key is fine), list
 * ListObjectsV2 with the prefix, page after page (continuation tokens).
 * Every request carries the SHA-256 of its body (x-amz-content-sha256,
 * signed), so a body damaged on the way is refused by the store.
 *
 * Credentials: access_key and secret_key, or when both are empty the
 * environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
 * AWS_SESSION_TOKEN, sent as x-amz-security-token), read at init.
 *
 * libcurl 7.88 (Debian 12) signs the query string as it is given, so the
 * plugin writes it in canonical form itself: parameters sorted by name,
 * values percent-encoded as RFC 3986 says (list_url()).
 *
 * Requests run on the pool (backup_target.h), one easy handle each, with up
 * to three attempts for transport errors and 5xx answers (every operation
 * here is idempotent). curl_global_init() runs once, at init on the loop.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* strdup, nanosleep, also when built outside this tree */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "../common/backup_target.h"
#include "recoveryd/plugin.h"

#define ATTEMPTS       3
#define ERROR_BODY_MAX (64 * 1024)        /* kept of an error answer */
#define LIST_BODY_MAX  (16 * 1024 * 1024) /* one ListObjectsV2 page (1000 keys are ~300 KiB) */
#define EMPTY_SHA256   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3 {
    struct bk_target base; /* first: the ops get this state */
    char *endpoint;        /* http(s)://host[:port][/path], no trailing '/' */
    char *bucket;
    char *prefix;
    char *sigv4;  /* "aws:amz:REGION:s3" */
    char *access; /* access key id */
    char *secret;
    char *token; /* session token, or NULL */
    long timeout_ms;
    long max_keys;
    bool curl_inited;
};

static const struct rd_plugin_key keys[] = {
    {"endpoint", RD_KEY_STRING, NULL, 0, 0,
     "the store's URL, http://HOST:PORT or https://HOST[:PORT] (path-style requests)"},
    {"bucket", RD_KEY_STRING, NULL, 0, 0, "the bucket the objects go to (it must exist)"},
    {"prefix", RD_KEY_STRING, "", 0, 0,
     "put before every object name to make its key, e.g. recoveryd/prod/"},
    {"region", RD_KEY_STRING, "us-east-1", 0, 0, "the region requests are signed for"},
    {"access_key", RD_KEY_STRING, "", 0, 0,
     "access key id; empty: AWS_ACCESS_KEY_ID from the environment"},
    {"secret_key", RD_KEY_STRING, "", 0, 0,
     "secret access key; empty: AWS_SECRET_ACCESS_KEY from the environment"},
    {"timeout", RD_KEY_DURATION, "10m", 1000, 86400000,
     "how long one request may take, the transfer of an image included"},
    {"max_keys", RD_KEY_INT, "1000", 1, 1000, "keys asked for per ListObjectsV2 page"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* ---- answers ------------------------------------------------------------------------ */

struct body {
    char *p;
    size_t len, cap;
    size_t max; /* beyond it the rest is dropped (`truncated`) */
    bool truncated;
    bool oom;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > b->max) {
        b->truncated = true;
        n = b->max > b->len ? b->max - b->len : 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return 0; /* curl stops with CURLE_WRITE_ERROR */
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return size * nmemb;
}

struct upload {
    const char *p;
    size_t len, off;
};

static size_t on_read(char *dst, size_t size, size_t nmemb, void *arg)
{
    struct upload *u = arg;
    size_t n = size * nmemb;
    if (n > u->len - u->off)
        n = u->len - u->off;
    memcpy(dst, u->p + u->off, n);
    u->off += n;
    return n;
}

/* curl rewinds an upload it must send again (a redirect, a retried connection). */
static int on_seek(void *arg, curl_off_t offset, int origin)
{
    struct upload *u = arg;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > u->len)
        return CURL_SEEKFUNC_CANTSEEK;
    u->off = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/*
 * The text of the first <tag>...</tag> in `xml` (from `from`), at most `len`
 * bytes, with XML's predefined entities and character references decoded.
 * Returns where the element ends, or NULL when there is none.
 *
 * A small scanner instead of an XML parser: the answers read here are S3's
 * ListBucketResult and Error documents, whose elements of interest (Key,
 * Size, IsTruncated, NextContinuationToken, Code, Message) hold text only and
 * are never nested in elements of the same name.
 */
static const char *xml_text(const char *from, const char *end, const char *tag, char *out,
                            size_t len)
{
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    size_t olen = strlen(open), clen = strlen(close);
    const char *s = NULL;
    for (const char *p = from; p + olen <= end; p++)
        if (*p == '<' && memcmp(p, open, olen) == 0) {
            s = p + olen;
            break;
        }
    if (!s)
        return NULL;
    const char *e = NULL;
    for (const char *p = s; p + clen <= end; p++)
        if (*p == '<' && memcmp(p, close, clen) == 0) {
            e = p;
            break;
        }
    if (!e)
        return NULL;
    size_t o = 0;
    for (const char *p = s; p < e && o + 1 < len;) {
        if (*p != '&') {
            out[o++] = *p++;
            continue;
        }
        const char *semi = memchr(p, ';', (size_t)(e - p));
        if (!semi) {
            out[o++] = *p++;
            continue;
        }
        size_t n = (size_t)(semi - p);
        long cp = -1;
        if (n == 4 && memcmp(p, "&amp", 4) == 0)
            cp = '&';
        else if (n == 3 && memcmp(p, "&lt", 3) == 0)
            cp = '<';
        else if (n == 3 && memcmp(p, "&gt", 3) == 0)
            cp = '>';
        else if (n == 5 && memcmp(p, "&quot", 5) == 0)
            cp = '"';
        else if (n == 5 && memcmp(p, "&apos", 5) == 0)
            cp = '\'';
        else if (n > 2 && p[1] == '#')
            cp = p[2] == 'x' ? strtol(p + 3, NULL, 16) : strtol(p + 2, NULL, 10);
        if (cp <= 0 || cp > 0x7f) /* not ASCII: not a name of ours, keep it as written */
            out[o++] = *p++;
        else {
            out[o++] = (char)cp;
            p = semi + 1;
        }
    }
    out[o] = '\0';
    return e + clen;
}

/* "403 SignatureDoesNotMatch: The request signature..." of an S3 error answer. */
static void describe_error(long status, const struct body *b, char *out, size_t len)
{
    char code[128] = "", msg[256] = "";
    if (b->p) {
        xml_text(b->p, b->p + b->len, "Code", code, sizeof code);
        xml_text(b->p, b->p + b->len, "Message", msg, sizeof msg);
    }
    if (code[0] && msg[0])
        snprintf(out, len, "%ld %s: %s", status, code, msg);
    else if (code[0])
        snprintf(out, len, "%ld %s", status, code);
    else
        snprintf(out, len, "%ld (no S3 error code in the answer)", status);
}

static int status_of(long http, const char *code)
{
    if (strcmp(code, "EntityTooLarge") == 0)
        return RD_ETOOLARGE;
    if (http == 408 || http == 504 || strcmp(code, "RequestTimeout") == 0)
        return RD_ETIMEOUT;
    if (http == 507)
        return RD_ENOSPACE;
    return RD_EIO;
}

/* ---- requests (pool threads) ------------------------------------------------------ */

static void sha256_hex(const void *p, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        out[0] = '\0';
        return;
    }
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

struct req {
    const char *method; /* "PUT", "GET", "DELETE" */
    const char *url;
    const void *body; /* PUT */
    size_t body_len;
    size_t max; /* of the answer kept */
    /* out */
    long status; /* HTTP status, 0 when none arrived */
    CURLcode rc;
    char error[CURL_ERROR_SIZE];
    struct body answer;
};

/* One attempt; the answer in r. */
static void attempt(struct s3 *s, struct req *r, const char *payload_sha)
{
    free(r->answer.p);
    r->answer = (struct body){.max = r->max};
    r->status = 0;
    r->error[0] = '\0';
    CURL *c = curl_easy_init();
    if (!c) {
        r->rc = CURLE_OUT_OF_MEMORY;
        snprintf(r->error, sizeof r->error, "curl_easy_init failed");
        return;
    }
    char h_sha[128], h_token[4096];
    snprintf(h_sha, sizeof h_sha, "x-amz-content-sha256: %s", payload_sha);
    struct curl_slist *headers = curl_slist_append(NULL, h_sha);
    if (s->token && headers) {
        snprintf(h_token, sizeof h_token, "x-amz-security-token: %s", s->token);
        struct curl_slist *more = curl_slist_append(headers, h_token);
        if (more)
            headers = more;
    }
    struct upload up = {.p = r->body, .len = r->body_len};
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* on a pool thread: no SIGALRM for DNS */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s->timeout_ms < 10000 ? s->timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
    curl_easy_setopt(c, CURLOPT_USERNAME, s->access);
    curl_easy_setopt(c, CURLOPT_PASSWORD, s->secret);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->answer);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (strcmp(r->method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
        curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, &up);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "DELETE") == 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    r->rc = curl_easy_perform(c);
    if (r->rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else if (r->error[0] == '\0')
        snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(r->rc));
    if (r->answer.oom && r->rc != CURLE_OK)
        snprintf(r->error, sizeof r->error, "out of memory for the answer");
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
}

static bool transient(const struct req *r)
{
    if (r->rc != CURLE_OK)
        return !r->answer.oom && r->rc != CURLE_URL_MALFORMAT &&
               r->rc != CURLE_UNSUPPORTED_PROTOCOL && r->rc != CURLE_OPERATION_TIMEDOUT;
    return r->status >= 500 && r->status != 501;
}

/* The request with its attempts (100 ms, then 400 ms apart). */
static void run(struct s3 *s, struct req *r)
{
    char sha[65] = EMPTY_SHA256;
    if (r->body_len > 0)
        sha256_hex(r->body, r->body_len, sha);
    for (int i = 0; i < ATTEMPTS; i++) {
        if (i > 0) {
            struct timespec ts = {0, (i == 1 ? 100 : 400) * 1000000L};
            nanosleep(&ts, NULL); /* a pool thread, not the loop */
        }
        attempt(s, r, sha);
        if (!transient(r))
            return;
    }
}

/* Fails `op` with what request `r` said ("s3 PUT URL: 403 Code: Message"). */
static void fail_req(struct bk_op *op, const struct req *r)
{
    if (r->rc != CURLE_OK) {
        bk_fail(op, r->rc == CURLE_OPERATION_TIMEDOUT ? RD_ETIMEOUT : RD_EIO, "%s %s: %s",
                r->method, r->url, r->error);
        return;
    }
    char why[512], code[128] = "";
    describe_error(r->status, &r->answer, why, sizeof why);
    if (r->answer.p)
        xml_text(r->answer.p, r->answer.p + r->answer.len, "Code", code, sizeof code);
    bk_fail(op, status_of(r->status, code), "%s %s: %s", r->method, r->url, why);
}

static char *object_url(struct s3 *s, const char *name)
{
    size_t n = strlen(s->endpoint) + strlen(s->bucket) + strlen(s->prefix) + strlen(name) + 3;
    char *url = malloc(n);
    if (url) /* every character of the key is unreserved or '/': nothing to encode */
        snprintf(url, n, "%s/%s/%s%s", s->endpoint, s->bucket, s->prefix, name);
    return url;
}

static void do_put(struct s3 *s, struct bk_op *op, const char *url)
{
    struct req r = {
        .method = "PUT", .url = url, .body = op->buf, .body_len = op->len, .max = ERROR_BODY_MAX};
    run(s, &r);
    if (r.rc != CURLE_OK || r.status < 200 || r.status > 299)
        fail_req(op, &r);
    free(r.answer.p);
}

static void do_get(struct s3 *s, struct bk_op *op, const char *url)
{
    struct req r = {.method = "GET", .url = url, .max = SIZE_MAX};
    run(s, &r);
    char code[128] = "";
    if (r.rc == CURLE_OK && r.status == 404 && r.answer.p)
        xml_text(r.answer.p, r.answer.p + r.answer.len, "Code", code, sizeof code);
    if (r.rc == CURLE_OK && r.status == 200) {
        op->buf = r.answer.p;
        op->len = r.answer.len;
        return;
    }
    if (r.rc == CURLE_OK && r.status == 404 && strcmp(code, "NoSuchBucket") != 0)
        bk_fail(op, RD_ENOTFOUND, "GET %s: 404 %s: no such object", url,
                code[0] ? code : "Not Found");
    else
        fail_req(op, &r);
    free(r.answer.p);
}

static void do_delete(struct s3 *s, struct bk_op *op, const char *url)
{
    struct req r = {.method = "DELETE", .url = url, .max = ERROR_BODY_MAX};
    run(s, &r);
    char code[128] = "";
    if (r.rc == CURLE_OK && r.status == 404 && r.answer.p)
        xml_text(r.answer.p, r.answer.p + r.answer.len, "Code", code, sizeof code);
    bool absent = r.rc == CURLE_OK && r.status == 404 && strcmp(code, "NoSuchBucket") != 0;
    if (!absent && (r.rc != CURLE_OK || r.status < 200 || r.status > 299))
        fail_req(op, &r);
    free(r.answer.p);
}

/* Appends `s` percent-encoded as RFC 3986 asks of SigV4's canonical query. */
static size_t encode(char *out, size_t o, size_t len, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s && o + 4 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

/* ENDPOINT/BUCKET?continuation-token=..&list-type=2&max-keys=N&prefix=..: the
 * parameters in canonical order, since curl signs the query as written. */
static void list_url(struct s3 *s, const char *prefix, const char *token, char *out, size_t len)
{
    size_t o = (size_t)snprintf(out, len, "%s/%s?", s->endpoint, s->bucket);
    if (o >= len)
        o = len - 1;
    if (token[0]) {
        o += (size_t)snprintf(out + o, len - o, "continuation-token=");
        o = encode(out, o < len ? o : len - 1, len, token);
        o += (size_t)snprintf(out + o, len - o, "&");
    }
    o += (size_t)snprintf(out + o, len - o, "list-type=2&max-keys=%ld&prefix=", s->max_keys);
    char full[2 * BK_NAME_MAX + 8];
    snprintf(full, sizeof full, "%s%s", s->prefix, prefix);
    encode(out, o < len ? o : len - 1, len, full);
}

/* Adds the <Contents> of one ListBucketResult page to op->list. Returns 0,
 * or -1 with the failure set on `op`. */
static int take_page(struct s3 *s, struct bk_op *op, const struct body *b, const char *url,
                     bool *truncated, char *token, size_t token_len)
{
    const char *p = b->p, *end = b->p + b->len;
    if (!p || !strstr(p, "<ListBucketResult")) {
        bk_fail(op, RD_EIO, "GET %s: 200 but not a ListBucketResult: %.80s", url, p ? p : "");
        return -1;
    }
    size_t plen = strlen(s->prefix);
    char key[2048], size[32], why[8];
    for (;;) {
        const char *c = strstr(p, "<Contents>");
        if (!c)
            break;
        const char *ce = strstr(c, "</Contents>");
        if (!ce) {
            bk_fail(op, RD_EIO, "GET %s: a <Contents> without its end", url);
            return -1;
        }
        if (xml_text(c, ce, "Key", key, sizeof key) && strlen(key) + 1 < sizeof key &&
            xml_text(c, ce, "Size", size, sizeof size) && strncmp(key, s->prefix, plen) == 0 &&
            bk_name_valid(key + plen, why, sizeof why)) {
            /* Keys that are no object name of ours (written by others) are not listed. */
            if (bk_list_add(&op->list, key + plen, strlen(key + plen), strtoull(size, NULL, 10)) !=
                0) {
                bk_fail(op, RD_ENOMEM, "list %s: out of memory after %zu objects", op->name,
                        op->list.n);
                return -1;
            }
        }
        p = ce + strlen("</Contents>");
    }
    char flag[16] = "";
    xml_text(b->p, end, "IsTruncated", flag, sizeof flag);
    *truncated = strcmp(flag, "true") == 0;
    token[0] = '\0';
    if (*truncated && !xml_text(b->p, end, "NextContinuationToken", token, token_len)) {
        bk_fail(op, RD_EIO, "GET %s: IsTruncated without a NextContinuationToken", url);
        return -1;
    }
    return 0;
}

static void do_list(struct s3 *s, struct bk_op *op)
{
    char token[2048] = "", url[8192];
    for (unsigned page = 0;; page++) {
        list_url(s, op->name, token, url, sizeof url);
        struct req r = {.method = "GET", .url = url, .max = LIST_BODY_MAX};
        run(s, &r);
        bool truncated = false;
        int rv = -1;
        if (r.rc != CURLE_OK || r.status != 200)
            fail_req(op, &r);
        else if (r.answer.truncated)
            bk_fail(op, RD_ETOOLARGE, "GET %s: a page of more than %d bytes", url, LIST_BODY_MAX);
        else
            rv = take_page(s, op, &r.answer, url, &truncated, token, sizeof token);
        free(r.answer.p);
        if (rv != 0) {
            bk_list_free(&op->list);
            return;
        }
        if (!truncated)
            break;
        if (page > 1000000) {
            bk_fail(op, RD_EIO, "list %s: more than a million pages", op->name);
            bk_list_free(&op->list);
            return;
        }
    }
    bk_list_sort(&op->list); /* S3 lists in UTF-8 binary order already: to be sure */
}

static void perform(struct bk_target *t, struct bk_op *op)
{
    struct s3 *s = (struct s3 *)t;
    if (op->kind == BK_LIST) {
        do_list(s, op);
        return;
    }
    char *url = object_url(s, op->name);
    if (!url) {
        bk_fail(op, RD_ENOMEM, "%s %s: out of memory", bk_kind_name(op->kind), op->name);
        return;
    }
    if (op->kind == BK_WRITE)
        do_put(s, op, url);
    else if (op->kind == BK_READ)
        do_get(s, op, url);
    else
        do_delete(s, op, url);
    free(url);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static bool bucket_ok(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return false;
    for (const char *p = b; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
            return false;
    return true;
}

static void s3_free(struct s3 *s)
{
    free(s->endpoint);
    free(s->bucket);
    free(s->prefix);
    free(s->sigv4);
    free(s->access);
    free(s->secret);
    free(s->token);
    s->endpoint = s->bucket = s->prefix = s->sigv4 = s->access = s->secret = s->token = NULL;
    if (s->curl_inited)
        curl_global_cleanup();
    s->curl_inited = false;
}

static char *dup_or_null(const char *v)
{
    return v && v[0] ? strdup(v) : NULL;
}

static int s3_init(rd_plugin_instance_t *inst, const struct rd_host_api *host, void *state)
{
    struct s3 *s = state;
    bk_target_init(&s->base, inst, host, "s3");
    s->base.perform = perform;
    const char *endpoint = host->config_string(inst, "endpoint");
    const char *bucket = host->config_string(inst, "bucket");
    const char *prefix = host->config_string(inst, "prefix");
    const char *region = host->config_string(inst, "region");
    const char *access = host->config_string(inst, "access_key");
    const char *secret = host->config_string(inst, "secret_key");
    char why[BK_DETAIL_LEN];
    if (!endpoint ||
        (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0) ||
        strlen(endpoint) < 9 || strpbrk(endpoint, "?# ")) {
        host->set_error(inst, "endpoint: expected http://HOST:PORT or https://HOST, got '%s'",
                        endpoint ? endpoint : "");
        return RD_ECONFIG;
    }
    if (!bucket || !bucket_ok(bucket)) {
        host->set_error(inst, "bucket: expected 3-63 characters of a-z 0-9 . -, got '%s'",
                        bucket ? bucket : "");
        return RD_ECONFIG;
    }
    if (!bk_prefix_valid(prefix, why, sizeof why)) {
        host->set_error(inst, "prefix: %s", why);
        return RD_ECONFIG;
    }
    if (!region || !region[0] || strlen(region) > 64 || strpbrk(region, ": ")) {
        host->set_error(inst, "region: expected a region name such as us-east-1, got '%s'",
                        region ? region : "");
        return RD_ECONFIG;
    }
    bool from_env = (!access || !access[0]) && (!secret || !secret[0]);
    if (from_env) {
        access = getenv("AWS_ACCESS_KEY_ID");
        secret = getenv("AWS_SECRET_ACCESS_KEY");
    }
    if (!access || !access[0] || !secret || !secret[0]) {
        host->set_error(inst, from_env ? "no credentials: access_key and secret_key are empty and "
                                         "AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set"
                                       : "access_key and secret_key: set both or neither (then "
                                         "they come from AWS_ACCESS_KEY_ID and "
                                         "AWS_SECRET_ACCESS_KEY)");
        return RD_ECONFIG;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        host->set_error(inst, "curl_global_init failed");
        return RD_EIO;
    }
    s->curl_inited = true;
    s->endpoint = strdup(endpoint);
    s->bucket = strdup(bucket);
    s->prefix = strdup(prefix ? prefix : "");
    s->access = strdup(access);
    s->secret = strdup(secret);
    s->token = from_env ? dup_or_null(getenv("AWS_SESSION_TOKEN")) : NULL;
    size_t n = strlen(region) + 16;
    s->sigv4 = malloc(n);
    if (!s->endpoint || !s->bucket || !s->prefix || !s->access || !s->secret || !s->sigv4) {
        s3_free(s);
        host->set_error(inst, "out of memory");
        return RD_ENOMEM;
    }
    snprintf(s->sigv4, n, "aws:amz:%s:s3", region);
    size_t len = strlen(s->endpoint);
    while (len > 8 && s->endpoint[len - 1] == '/')
        s->endpoint[--len] = '\0';
    s->timeout_ms = (long)host->config_uint(inst, "timeout");
    s->max_keys = (long)host->config_int(inst, "max_keys");
    if (s->max_keys < 1 || s->max_keys > 1000)
        s->max_keys = 1000;
    return 0;
}

static int s3_start(void *state)
{
    struct s3 *s = state;
    s->base.host->log(s->base.inst, RD_PLOG_INFO, "backup_target", "url=%s/%s/%s", s->endpoint,
                      s->bucket, s->prefix);
    return 0;
}

static void s3_stop(void *state, void (*done)(rd_plugin_instance_t *inst))
{
    struct s3 *s = state;
    bk_target_stop(&s->base, done);
}

static void s3_destroy(void *state)
{
    s3_free(state);
}

static const struct rd_backup_ops ops = {
    .version = RD_BACKUP_OPS_VERSION,
    .size = sizeof(struct rd_backup_ops),
    .write = bk_write,
    .read = bk_read,
    .remove = bk_remove,
    .list = bk_list,
};

static const struct rd_plugin_descriptor descriptor = {
    RD_PLUGIN_HEADER,
    .name = "s3",
    .version = "1.0.0",
    .kind = RD_PLUGIN_BACKUP,
    .description = "keeps backup objects in an S3-compatible object store (one PUT per object, "
                   "SigV4-signed by libcurl)",
    .keys = keys,
    .state_size = sizeof(struct s3),
    .init = s3_init,
    .start = s3_start,
    .stop = s3_stop,
    .destroy = s3_destroy,
    .ops = &ops,
};

RD_PLUGIN_EXPORT const struct rd_plugin_descriptor *rd_plugin_entry(void)
{
    return &descriptor;
}
