/* credentials: where a Client's keys come from, and when they are renewed.
 *
 * The chain boto3 users rely on, first hit wins: the keys given to the Client,
 * the environment, the shared files (static keys, credential_process, role_arn
 * with source_profile or web_identity_token_file), web identity from the
 * environment, the container endpoint, and the instance metadata service
 * (IMDSv2). Resolution is lazy: nothing happens until the first request.
 *
 * Thread-safety: one cred_cache per Client, guarded by its own mutex. A
 * cred_set is immutable once published and reference counted, so a thread that
 * signs with one keeps it valid while another thread swaps in a fresher one.
 * Temporary credentials are renewed by ONE thread a few minutes before they
 * expire while the others keep signing with the current ones; inside the last
 * minute (or once expired) callers wait for that one renewal.
 *
 * The environment is read only through a cred_env snapshot taken with the GIL
 * held, so nothing here races with os.environ being changed. Secrets are
 * wiped before their memory is freed; no message ever carries one. */
#ifndef S3_CREDENTIALS_H
#define S3_CREDENTIALS_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

#include "buf.h"
#include "sigv4.h"

#define CRED_ADVISORY_S 300   /* one thread renews this long before expiry */
#define CRED_MANDATORY_S 60   /* everyone waits for the renewal inside this */
#define CRED_RETRY_S 5        /* a failed resolution is not tried again before this */
#define CRED_REFUSED_S 30     /* at most one renewal for a refusal in this long */

typedef struct {
    int refs;                  /* guarded by the cache's lock */
    int refreshable;           /* temporary: a renewal may give fresher ones */
    char *access_key;
    char *secret_key;
    char *session_token;       /* NULL when there is none */
    time_t expiration;         /* 0: does not expire */
    sigv4_key_cache key_cache; /* derived from this secret only */
} cred_set;

/* A copy of the process environment (every "NAME=value"), taken with the GIL. */
typedef struct {
    char **vars;
    size_t n;
} cred_env;

typedef struct {
    const char *access_key;    /* the Client's own keys, or NULL */
    const char *secret_key;
    const char *session_token;
    const char *profile;       /* NULL: AWS_PROFILE, then "default" */
    const char *region;        /* for the STS endpoint and its signature */
    int anonymous;
    const EVP_MD *md;          /* SHA-256, for signing AssumeRole */
    int verify;                /* TLS for STS and the container endpoint */
    const char *ca_bundle;
    const char *system_ca;     /* where neither ca_bundle nor AWS_CA_BUNDLE says */
    long connect_timeout_ms;
    long read_timeout_s;
} cred_config;

typedef struct {
    /* configuration: copied by cred_cache_init, read-only afterwards */
    char *access_key, *secret_key, *session_token, *profile, *region, *ca_bundle,
         *system_ca;
    int anonymous;
    const EVP_MD *md;
    int verify;
    long connect_timeout_ms, read_timeout_s;
    /* state, guarded by lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    cred_set *current;
    int refreshing;            /* one thread is renewing */
    unsigned gen;              /* bumped by each finished renewal */
    const char *fail_code;     /* the last renewal's failure, NULL when it worked */
    buf_t fail_err;            /* ... and its message (never a secret) */
    time_t fail_until;         /* with nothing valid held: that failure is the
                                  answer until then, no new resolution */
    long issued_for;           /* the lifetime `current` had when it was issued */
    long asked_for;            /* the longest min_valid a renewal was asked for */
    int stale;                 /* the server refused `current` */
    time_t refused_at;         /* when a refusal last asked for a renewal */
    time_t next_must;          /* no mandatory renewal before (while still valid) */
    time_t next_may;           /* no advisory renewal before */
    char source[256];          /* where `current` came from, for the log */
    int log_pending;           /* read without the lock as a hint only */
    int ready;
} cred_cache;

/* With the GIL. Copies and validates the configuration; explicit keys that are
 * malformed give -1 with a message in `err` naming the argument. */
int cred_cache_init(cred_cache *c, const cred_config *cfg, buf_t *err);
void cred_cache_destroy(cred_cache *c);
/* In a child after fork(), with the GIL: locks renewed, no renewal in flight. */
void cred_after_fork(cred_cache *c);

/* Credentials valid for at least `min_valid` more seconds when they can be had
 * (0: any valid ones). 0: *out holds a reference (cred_release() it). -1: no
 * credentials: `code` is "NoCredentials" or "CredentialsError" and `err` says
 * which sources were tried and why (never a secret). 1: only when env is NULL:
 * a renewal is due, call again with an environment snapshot and without the
 * GIL. With env set this may run network requests and a credential_process.
 * Threads that wait on a renewal that fails get its error, and while nothing
 * valid is held a failure stays the answer for CRED_RETRY_S seconds. */
int cred_get(cred_cache *c, long min_valid, const cred_env *env, cred_set **out,
             const char **code, buf_t *err);
void cred_release(cred_cache *c, cred_set *s);
/* The server refused `used` (ExpiredToken, InvalidToken): 1 when the call may
 * run again with other credentials (the next cred_get() renews, or another
 * thread already has); 0 for keys that cannot be renewed, and for a refusal
 * within CRED_REFUSED_S of the last one that renewed: a source whose fresh
 * credentials are refused too is not asked again for every request. */
int cred_invalidate(cred_cache *c, const cred_set *used);
/* 1 once, after the first resolution: `out` gets the source to log. */
int cred_take_log(cred_cache *c, char *out, size_t size);

/* The environment's proxy variables, NULL-terminated, in libcurl's order of
 * precedence (http_proxy in lower case only, as libcurl reads it): for https and
 * http URLs, and NO_PROXY. The S3 client and the credential requests share them. */
extern const char *const cred_https_proxy_vars[];
extern const char *const cred_http_proxy_vars[];
extern const char *const cred_no_proxy_vars[];

void cred_env_load(cred_env *e);       /* with the GIL; on out of memory, empty */
void cred_env_free(cred_env *e);
const char *cred_env_get(const cred_env *e, const char *name);

/* With the GIL, at Client construction: AWS_REGION, AWS_DEFAULT_REGION, the
 * profile's region in the config file, then "us-east-1". -1 with `err` set
 * when a value found is not a region name. */
int cred_default_region(const char *profile, buf_t *out, buf_t *err);

/* Checks a value before it may sign: kind 0 key id, 1 secret, 2 session token.
 * -1 with a message naming `what` (never the value). */
int cred_check_value(int kind, const char *v, size_t n, const char *what, buf_t *err);

/* Whether a server's `text` repeats `secret`, whole or 16 bytes of it in a row (a
 * server or proxy that echoes the request back). Secrets shorter than 8 bytes,
 * which no real key is and which would match every text, never match. Pure C. */
int cred_text_repeats(const char *text, const char *secret);

#endif
