/* sigv4: AWS Signature Version 4 for headers and presigned query strings.
 *
 * Pure C, no Python and no I/O: safe to call with the GIL released. Every stage
 * (canonical request, string to sign, signature) is a function of its own so the
 * tests can check each one against the published vectors. */
#ifndef S3_SIGV4_H
#define S3_SIGV4_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

#include "buf.h"

#define SIGV4_DATE_LEN 16   /* "YYYYMMDDTHHMMSSZ" */
#define SIGV4_UNSIGNED "UNSIGNED-PAYLOAD"
#define SIGV4_EMPTY_SHA256 \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} sigv4_header;

/* The derived signing key for one (date, region, service). The owner of the
 * cache also owns the secret: it must call sigv4_cache_reset() whenever the
 * secret changes. Guarded by sigv4_ctx.cache_lock when that is set. */
typedef struct {
    char date[9];
    char region[64];
    char service[32];
    unsigned char key[32];
    int valid;
} sigv4_key_cache;

typedef struct {
    const EVP_MD *md;              /* SHA-256, fetched once by the module */
    const char *access_key;
    const char *secret_key;
    const char *session_token;     /* NULL or "" when there is none */
    const char *region;
    const char *service;
    char amz_date[SIGV4_DATE_LEN + 1];
    sigv4_key_cache *cache;        /* NULL: derive the key on every call */
    pthread_mutex_t *cache_lock;   /* NULL: the caller serialises use of the cache */
} sigv4_ctx;

/* The parts of a URL that signing needs, as pointers into the URL itself. */
typedef struct {
    const char *scheme; size_t scheme_len;
    const char *host; size_t host_len;     /* host[:port], default port dropped */
    const char *path; size_t path_len;     /* "/" when the URL has no path */
    int path_given;                        /* 0: path is that static "/" */
    const char *query; size_t query_len;   /* without '?' */
} sigv4_url;

int sigv4_split_url(const char *url, sigv4_url *out);   /* -1: not http(s), or no host */
void sigv4_format_date(time_t t, char out[SIGV4_DATE_LEN + 1]);
int sigv4_check_date(const char *s);                             /* -1 if malformed */
void sigv4_cache_reset(sigv4_key_cache *cache);

int sigv4_sha256_hex(const EVP_MD *md, const void *p, size_t n, char out[65]);

/* Stage 1. Sorts `hdrs` in place (stably, by lower-cased name). Appends the
 * canonical request to `out` and the signed-header list to `signed_names`. */
int sigv4_canonical_request(buf_t *out, buf_t *signed_names, const char *method,
                            const sigv4_url *u, sigv4_header *hdrs, size_t nhdrs,
                            const char *payload_hash, int s3_uri);
/* Stage 2: appends the string to sign for `canonical`. */
int sigv4_string_to_sign(const sigv4_ctx *c, const buf_t *canonical, buf_t *out);
/* Stage 3: hex signature of `sts`, using (and filling) the context's cache. */
int sigv4_signature(const sigv4_ctx *c, const buf_t *sts, char out[65]);

/* All three stages of one request, kept for whoever wants to look at them. */
typedef struct {
    buf_t canonical;
    buf_t signed_names;
    buf_t string_to_sign;
    char signature[65];
} sigv4_stages;

#define SIGV4_STAGES_INIT {BUF_INIT, BUF_INIT, BUF_INIT, {0}}

/* Runs the three stages (the canonical URI by S3's rules when the service is
 * "s3"). The caller frees `out` with sigv4_stages_free(), also after a failure. */
int sigv4_sign(const sigv4_ctx *c, const char *method, const sigv4_url *u,
               sigv4_header *hdrs, size_t nhdrs, const char *payload_hash,
               sigv4_stages *out);
void sigv4_stages_free(sigv4_stages *s);

/* The value of the Authorization header for a request whose signed headers are
 * `hdrs` (the caller includes host, x-amz-date, and the others it signs). */
int sigv4_authorization(const sigv4_ctx *c, const char *method, const sigv4_url *u,
                        sigv4_header *hdrs, size_t nhdrs, const char *payload_hash,
                        buf_t *out);
/* Appends the whole presigned URL (the URL given, then the X-Amz-* parameters). */
int sigv4_presign(const sigv4_ctx *c, const char *method, const char *url,
                  long expires, buf_t *out);

#endif
