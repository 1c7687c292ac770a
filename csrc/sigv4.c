#include "sigv4.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

int
sigv4_split_url(const char *url, sigv4_url *u)
{
    const char *p, *auth, *auth_end, *at, *colon;
    size_t n;

    memset(u, 0, sizeof(*u));
    p = strstr(url, "://");
    if (p == NULL)
        return -1;
    u->scheme = url;
    u->scheme_len = (size_t)(p - url);
    if (!((u->scheme_len == 4 && strncasecmp(url, "http", 4) == 0) ||
          (u->scheme_len == 5 && strncasecmp(url, "https", 5) == 0)))
        return -1;
    auth = p + 3;
    auth_end = auth + strcspn(auth, "/?#");
    /* drop any userinfo */
    for (at = auth; at < auth_end && *at != '@'; at++)
        ;
    if (at < auth_end)
        auth = at + 1;
    if (auth == auth_end)
        return -1;
    u->host = auth;
    u->host_len = (size_t)(auth_end - auth);
    /* drop the scheme's default port, as the Host header does */
    colon = NULL;
    if (auth[0] != '[') {
        colon = memchr(auth, ':', u->host_len);
    } else {
        const char *close = memchr(auth, ']', u->host_len);
        if (close && close + 1 < auth_end && close[1] == ':')
            colon = close + 1;
    }
    if (colon == auth)
        return -1;   /* a port without a host: "https://:443/" would sign an empty Host */
    if (colon) {
        n = (size_t)(auth_end - colon - 1);
        if ((u->scheme_len == 4 && n == 2 && memcmp(colon + 1, "80", 2) == 0) ||
            (u->scheme_len == 5 && n == 3 && memcmp(colon + 1, "443", 3) == 0))
            u->host_len = (size_t)(colon - auth);
    }
    p = auth_end;
    n = strcspn(p, "?#");
    if (n == 0) {
        u->path = "/";
        u->path_len = 1;
    } else {
        u->path = p;
        u->path_len = n;
        u->path_given = 1;
    }
    p += n;
    if (*p == '?') {
        p++;
        u->query = p;
        u->query_len = strcspn(p, "#");
    } else {
        u->query = p;
        u->query_len = 0;
    }
    return 0;
}

void
sigv4_format_date(time_t t, char out[SIGV4_DATE_LEN + 1])
{
    struct tm tm;
    int year, i, v[6];
    char *o = out;

    gmtime_r(&t, &tm);
    year = tm.tm_year + 1900;
    if (year < 0 || year > 9999) {
        strftime(out, SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
        return;
    }
    /* by hand: strftime() costs more than the rest of a presigned URL's date */
    *o++ = (char)('0' + year / 1000);
    *o++ = (char)('0' + year / 100 % 10);
    v[0] = tm.tm_mon + 1;
    v[1] = tm.tm_mday;
    v[2] = tm.tm_hour;
    v[3] = tm.tm_min;
    v[4] = tm.tm_sec;
    v[5] = year % 100;
    *o++ = (char)('0' + v[5] / 10);
    *o++ = (char)('0' + v[5] % 10);
    for (i = 0; i < 5; i++) {
        if (i == 2)
            *o++ = 'T';
        *o++ = (char)('0' + v[i] / 10 % 10);
        *o++ = (char)('0' + v[i] % 10);
    }
    *o++ = 'Z';
    *o = '\0';
}

int
sigv4_check_date(const char *s)
{
    int i;

    if (strlen(s) != SIGV4_DATE_LEN || s[8] != 'T' || s[15] != 'Z')
        return -1;
    for (i = 0; i < 15; i++)
        if (i != 8 && (s[i] < '0' || s[i] > '9'))
            return -1;
    return 0;
}

void
sigv4_cache_reset(sigv4_key_cache *cache)
{
    OPENSSL_cleanse(cache, sizeof(*cache));
}

int
sigv4_sha256_hex(const EVP_MD *md, const void *p, size_t n, char out[65])
{
    unsigned char d[32];
    unsigned int dl = 0;
    static const char hx[] = "0123456789abcdef";
    int i;

    if (!EVP_Digest(p, n, d, &dl, md, NULL) || dl != 32)
        return -1;
    for (i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = '\0';
    return 0;
}

/* ---- canonical request ------------------------------------------------- */

typedef struct {
    size_t name_off, name_len, value_off, value_len;
} qparam;

static int
qparam_cmp(const char *arena, const qparam *a, const qparam *b)
{
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int r = memcmp(arena + a->name_off, arena + b->name_off, n);
    if (r == 0 && a->name_len != b->name_len)
        return a->name_len < b->name_len ? -1 : 1;
    if (r != 0)
        return r;
    n = a->value_len < b->value_len ? a->value_len : b->value_len;
    r = memcmp(arena + a->value_off, arena + b->value_off, n);
    if (r == 0 && a->value_len != b->value_len)
        return a->value_len < b->value_len ? -1 : 1;
    return r;
}

/* Whether the query is its own canonical form: every parameter non-empty,
 * "name=value" with both strictly encoded, in order (as the presigned URLs and
 * the requests this package builds are). */
static int
query_is_canonical(const char *q, size_t qlen)
{
    const char *p = q, *end = q + qlen, *stop, *eq;
    qparam prev = {0, 0, 0, 0}, cur;
    int first = 1;

    while (p < end) {
        stop = memchr(p, '&', (size_t)(end - p));
        if (stop == NULL)
            stop = end;
        else if (stop + 1 == end)
            return 0;               /* a trailing '&': an empty parameter */
        eq = memchr(p, '=', (size_t)(stop - p));
        if (stop == p || eq == NULL || !buf_is_escaped(p, (size_t)(eq - p), BUF_URI_SIGV4) ||
            !buf_is_escaped(eq + 1, (size_t)(stop - eq - 1), BUF_URI_SIGV4))
            return 0;
        cur.name_off = (size_t)(p - q);
        cur.name_len = (size_t)(eq - p);
        cur.value_off = (size_t)(eq + 1 - q);
        cur.value_len = (size_t)(stop - eq - 1);
        if (!first && qparam_cmp(q, &prev, &cur) > 0)
            return 0;
        prev = cur;
        first = 0;
        p = stop + 1;
    }
    return 1;
}

/* Each name and value is decoded and encoded again the strict SigV4 way, so a
 * URL that a caller encoded differently (lower-case hex, a bare '~') still
 * signs the same; parameters are sorted by name, then value. */
static int
canonical_query(buf_t *out, const char *q, size_t qlen)
{
    buf_t arena = BUF_INIT, tmp = BUF_INIT;
    qparam *params = NULL;
    size_t np = 0, cap = 0, i, j;
    const char *p = q, *end = q + qlen;
    int rc = -1;

    if (query_is_canonical(q, qlen))
        return buf_append(out, q, qlen);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *name_end = eq ? eq : stop;
        qparam qp;

        if (stop > p) {
            if (np == cap) {
                qparam *n2;
                cap = cap ? cap * 2 : 16;
                n2 = realloc(params, cap * sizeof(*params));
                if (n2 == NULL)
                    goto done;
                params = n2;
            }
            buf_clear(&tmp);
            if (buf_append_unescaped(&tmp, p, (size_t)(name_end - p)) < 0)
                goto done;
            qp.name_off = arena.len;
            if (buf_append_uri(&arena, tmp.data, tmp.len, 0) < 0)
                goto done;
            qp.name_len = arena.len - qp.name_off;
            buf_clear(&tmp);
            if (eq && buf_append_unescaped(&tmp, eq + 1, (size_t)(stop - eq - 1)) < 0)
                goto done;
            qp.value_off = arena.len;
            if (buf_append_uri(&arena, tmp.data ? tmp.data : "", tmp.len, 0) < 0)
                goto done;
            qp.value_len = arena.len - qp.value_off;
            params[np++] = qp;
        }
        p = amp ? amp + 1 : end;
    }
    /* insertion sort: parameter lists are short */
    for (i = 1; i < np; i++) {
        qparam key = params[i];
        for (j = i; j > 0 && qparam_cmp(arena.data, &params[j - 1], &key) > 0; j--)
            params[j] = params[j - 1];
        params[j] = key;
    }
    for (i = 0; i < np; i++) {
        if ((i && buf_putc(out, '&') < 0) ||
            buf_append(out, arena.data + params[i].name_off, params[i].name_len) < 0 ||
            buf_putc(out, '=') < 0 ||
            buf_append(out, arena.data + params[i].value_off, params[i].value_len) < 0)
            goto done;
    }
    rc = 0;
done:
    free(params);
    buf_free(&arena);
    buf_free(&tmp);
    return rc;
}

static int
canonical_uri(buf_t *out, const char *path, size_t n, int s3_uri)
{
    buf_t dec = BUF_INIT, once = BUF_INIT;
    int rc = -1;

    if (s3_uri && buf_is_escaped(path, n, BUF_URI_KEEP_SLASH))
        return buf_append(out, path, n);
    if (buf_append_unescaped(&dec, path, n) < 0 ||
        buf_append_uri(s3_uri ? out : &once, dec.data, dec.len, 1) < 0)
        goto done;
    /* other services sign the path encoded twice */
    if (!s3_uri && buf_append_uri(out, once.data, once.len, 1) < 0)
        goto done;
    rc = 0;
done:
    buf_free(&dec);
    buf_free(&once);
    return rc;
}

static int
header_name_cmp(const sigv4_header *a, const sigv4_header *b)
{
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int r = strncasecmp(a->name, b->name, n);
    if (r == 0 && a->name_len != b->name_len)
        return a->name_len < b->name_len ? -1 : 1;
    return r;
}

/* Trims the value and folds each run of white space to one space. */
static int
append_header_value(buf_t *out, const char *v, size_t n)
{
    size_t i = 0, end = n;
    int space = 0;

    while (i < end && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r'))
        i++;
    while (end > i && (v[end - 1] == ' ' || v[end - 1] == '\t' ||
                       v[end - 1] == '\n' || v[end - 1] == '\r'))
        end--;
    for (; i < end; i++) {
        char c = v[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = 1;
            continue;
        }
        if (space && buf_putc(out, ' ') < 0)
            return -1;
        space = 0;
        if (buf_putc(out, c) < 0)
            return -1;
    }
    return 0;
}

static int
append_lower(buf_t *out, const char *s, size_t n)
{
    size_t i;

    if (buf_reserve(out, n) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        char c = s[i];
        out->data[out->len++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    out->data[out->len] = '\0';
    return 0;
}

int
sigv4_canonical_request(buf_t *out, buf_t *signed_names, const char *method,
                        const sigv4_url *u, sigv4_header *h, size_t nh,
                        const char *payload_hash, int s3_uri)
{
    size_t i, j;

    for (i = 1; i < nh; i++) {
        sigv4_header key = h[i];
        for (j = i; j > 0 && header_name_cmp(&h[j - 1], &key) > 0; j--)
            h[j] = h[j - 1];
        h[j] = key;
    }
    if (buf_puts(out, method) < 0 || buf_putc(out, '\n') < 0 ||
        canonical_uri(out, u->path, u->path_len, s3_uri) < 0 ||
        buf_putc(out, '\n') < 0 ||
        canonical_query(out, u->query, u->query_len) < 0 ||
        buf_putc(out, '\n') < 0)
        return -1;
    for (i = 0; i < nh; i++) {
        int same = i > 0 && header_name_cmp(&h[i - 1], &h[i]) == 0;
        if (same) {
            /* a repeated header: its values join with commas, in order given */
            out->len--;   /* the '\n' */
            if (buf_putc(out, ',') < 0)
                return -1;
        } else {
            if (append_lower(out, h[i].name, h[i].name_len) < 0 || buf_putc(out, ':') < 0)
                return -1;
            if ((signed_names->len && buf_putc(signed_names, ';') < 0) ||
                append_lower(signed_names, h[i].name, h[i].name_len) < 0)
                return -1;
        }
        if (append_header_value(out, h[i].value, h[i].value_len) < 0 ||
            buf_putc(out, '\n') < 0)
            return -1;
    }
    if (buf_putc(out, '\n') < 0 || buf_append(out, signed_names->data ? signed_names->data : "",
                                              signed_names->len) < 0 ||
        buf_putc(out, '\n') < 0 || buf_puts(out, payload_hash) < 0)
        return -1;
    return 0;
}

/* "DATE/REGION/SERVICE/aws4_request"; plain appends, as this runs on every signature */
static int
append_scope(buf_t *out, const sigv4_ctx *c)
{
    if (buf_append(out, c->amz_date, 8) < 0 || buf_putc(out, '/') < 0 ||
        buf_puts(out, c->region) < 0 || buf_putc(out, '/') < 0 ||
        buf_puts(out, c->service) < 0 || buf_puts(out, "/aws4_request") < 0)
        return -1;
    return 0;
}

int
sigv4_string_to_sign(const sigv4_ctx *c, const buf_t *canonical, buf_t *out)
{
    char hash[65];

    if (sigv4_sha256_hex(c->md, canonical->data, canonical->len, hash) < 0)
        return -1;
    if (buf_puts(out, "AWS4-HMAC-SHA256\n") < 0 || buf_puts(out, c->amz_date) < 0 ||
        buf_putc(out, '\n') < 0 || append_scope(out, c) < 0 || buf_putc(out, '\n') < 0 ||
        buf_append(out, hash, 64) < 0)
        return -1;
    return 0;
}

/* HMAC-SHA256 on a digest context: OpenSSL 3's one-shot HMAC() looks the MAC
 * implementation up on every call, which costs more than the hashing here. */
static int
hmac(const EVP_MD *md, const void *key, size_t klen, const void *p, size_t n,
     unsigned char out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char k[64], pad[64], inner[32];
    unsigned int len = 0;
    int i, rc = -1;

    if (ctx == NULL)
        return -1;
    memset(k, 0, sizeof(k));
    if (klen > sizeof(k)) {
        if (!EVP_Digest(key, klen, k, &len, md, NULL))
            goto done;
    } else if (klen) {
        memcpy(k, key, klen);
    }
    for (i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, pad, 64) ||
        !EVP_DigestUpdate(ctx, p, n) || !EVP_DigestFinal_ex(ctx, inner, &len) || len != 32)
        goto done;
    for (i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, pad, 64) ||
        !EVP_DigestUpdate(ctx, inner, 32) || !EVP_DigestFinal_ex(ctx, out, &len) || len != 32)
        goto done;
    rc = 0;
done:
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(inner, sizeof(inner));
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int
signing_key(const sigv4_ctx *c, unsigned char key[32])
{
    sigv4_key_cache *cache = c->cache;
    buf_t k = BUF_INIT;
    unsigned char a[32], b[32];
    int cacheable, hit = 0, rc = -1;

    cacheable = cache && strlen(c->region) < sizeof(cache->region) &&
                strlen(c->service) < sizeof(cache->service);
    if (cacheable) {
        if (c->cache_lock)
            pthread_mutex_lock(c->cache_lock);
        if (cache->valid && memcmp(cache->date, c->amz_date, 8) == 0 &&
            strcmp(cache->region, c->region) == 0 && strcmp(cache->service, c->service) == 0) {
            memcpy(key, cache->key, 32);
            hit = 1;
        }
        if (c->cache_lock)
            pthread_mutex_unlock(c->cache_lock);
        if (hit)
            return 0;
    }
    if (buf_puts(&k, "AWS4") < 0 || buf_puts(&k, c->secret_key) < 0 ||
        hmac(c->md, k.data, k.len, c->amz_date, 8, a) < 0 ||
        hmac(c->md, a, 32, c->region, strlen(c->region), b) < 0 ||
        hmac(c->md, b, 32, c->service, strlen(c->service), a) < 0 ||
        hmac(c->md, a, 32, "aws4_request", 12, key) < 0)
        goto done;
    if (cacheable) {
        if (c->cache_lock)
            pthread_mutex_lock(c->cache_lock);
        memcpy(cache->date, c->amz_date, 8);
        cache->date[8] = '\0';
        strcpy(cache->region, c->region);
        strcpy(cache->service, c->service);
        memcpy(cache->key, key, 32);
        cache->valid = 1;
        if (c->cache_lock)
            pthread_mutex_unlock(c->cache_lock);
    }
    rc = 0;
done:
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    buf_free_secure(&k);
    return rc;
}

int
sigv4_signature(const sigv4_ctx *c, const buf_t *sts, char out[65])
{
    unsigned char key[32], sig[32];
    static const char hx[] = "0123456789abcdef";
    int i, rc = -1;

    if (signing_key(c, key) < 0 || hmac(c->md, key, 32, sts->data, sts->len, sig) < 0)
        goto done;
    for (i = 0; i < 32; i++) {
        out[2 * i] = hx[sig[i] >> 4];
        out[2 * i + 1] = hx[sig[i] & 15];
    }
    out[64] = '\0';
    rc = 0;
done:
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

static int
is_s3(const sigv4_ctx *c)
{
    return strcmp(c->service, "s3") == 0;
}

int
sigv4_sign(const sigv4_ctx *c, const char *method, const sigv4_url *u, sigv4_header *hdrs,
           size_t nhdrs, const char *payload_hash, sigv4_stages *out)
{
    if (sigv4_canonical_request(&out->canonical, &out->signed_names, method, u, hdrs, nhdrs,
                                payload_hash, is_s3(c)) < 0 ||
        sigv4_string_to_sign(c, &out->canonical, &out->string_to_sign) < 0 ||
        sigv4_signature(c, &out->string_to_sign, out->signature) < 0)
        return -1;
    return 0;
}

void
sigv4_stages_free(sigv4_stages *s)
{
    buf_free(&s->canonical);
    buf_free(&s->signed_names);
    buf_free(&s->string_to_sign);
}

int
sigv4_authorization(const sigv4_ctx *c, const char *method, const sigv4_url *u,
                    sigv4_header *hdrs, size_t nhdrs, const char *payload_hash, buf_t *out)
{
    sigv4_stages st = SIGV4_STAGES_INIT;
    int rc = -1;

    if (sigv4_sign(c, method, u, hdrs, nhdrs, payload_hash, &st) < 0)
        goto done;
    if (buf_puts(out, "AWS4-HMAC-SHA256 Credential=") < 0 || buf_puts(out, c->access_key) < 0 ||
        buf_putc(out, '/') < 0 || append_scope(out, c) < 0 ||
        buf_puts(out, ", SignedHeaders=") < 0 ||
        buf_append(out, st.signed_names.data, st.signed_names.len) < 0 ||
        buf_puts(out, ", Signature=") < 0 || buf_append(out, st.signature, 64) < 0)
        goto done;
    rc = 0;
done:
    sigv4_stages_free(&st);
    return rc;
}

int
sigv4_presign(const sigv4_ctx *c, const char *method, const char *url, long expires,
              buf_t *out)
{
    buf_t scope = BUF_INIT, query = BUF_INIT;
    sigv4_stages st = SIGV4_STAGES_INIT;
    sigv4_url u, signed_u;
    sigv4_header host;
    int rc = -1;

    if (sigv4_split_url(url, &u) < 0)
        goto done;
    if (buf_puts(&scope, c->access_key) < 0 || buf_putc(&scope, '/') < 0 ||
        append_scope(&scope, c) < 0)
        goto done;
    if (buf_append(&query, u.query, u.query_len) < 0 ||
        (u.query_len && buf_putc(&query, '&') < 0) ||
        buf_puts(&query, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=") < 0 ||
        buf_append_uri(&query, scope.data, scope.len, 0) < 0 ||
        buf_puts(&query, "&X-Amz-Date=") < 0 || buf_puts(&query, c->amz_date) < 0 ||
        buf_puts(&query, "&X-Amz-Expires=") < 0 || buf_put_long(&query, expires) < 0)
        goto done;
    if (c->session_token && c->session_token[0] &&
        (buf_puts(&query, "&X-Amz-Security-Token=") < 0 ||
         buf_append_uri(&query, c->session_token, strlen(c->session_token), 0) < 0))
        goto done;
    if (buf_puts(&query, "&X-Amz-SignedHeaders=host") < 0)
        goto done;
    signed_u = u;
    signed_u.query = query.data;
    signed_u.query_len = query.len;
    host.name = "host";
    host.name_len = 4;
    host.value = u.host;
    host.value_len = u.host_len;
    if (sigv4_sign(c, method, &signed_u, &host, 1, SIGV4_UNSIGNED, &st) < 0)
        goto done;
    /* the URL up to its query, with "/" when it has no path */
    if (buf_append(out, url, strcspn(url, "?#")) < 0 ||
        (!u.path_given && buf_putc(out, '/') < 0) ||
        buf_putc(out, '?') < 0 || buf_append(out, query.data, query.len) < 0 ||
        buf_puts(out, "&X-Amz-Signature=") < 0 || buf_append(out, st.signature, 64) < 0)
        goto done;
    rc = 0;
done:
    buf_free(&scope);
    buf_free(&query);
    sigv4_stages_free(&st);
    return rc;
}
