/* client: the Client type, one per storage. Its configuration (endpoint, bucket,
 * region, addressing, TLS, proxy), its connection pool and its credentials; the
 * thin Python entry points of each S3 operation live in client.c, the request
 * layer they share in request.c, and the streaming File types in reader.c and
 * writer.c.
 *
 * Everything a Client holds is guarded for threads: the pool by its own mutex,
 * the region and the URLs that follow it by where_lock, the signing-key cache of
 * every credential set by key_lock. */
#ifndef S3_CLIENT_H
#define S3_CLIENT_H

#include "module.h"

#include <pthread.h>

#include "credentials.h"
#include "log.h"
#include "transfer.h"

typedef struct {
    PyObject_HEAD
    s3_state *st;           /* valid while the type (and so the module) lives */
    /* endpoint, region and base change when S3 says the bucket lives in another
     * region: read them under where_lock, and copy what outlives the lock */
    char *endpoint;         /* scheme://host[:port][/path], no trailing slash */
    char *bucket;
    char *region;
    char *base;             /* the URL of the bucket, ending in "/" */
    char *public_base;      /* NULL: url() and presign() use base */
    char *ca_bundle;
    char *system_ca;        /* the system's CA bundle: where ca_bundle is NULL */
    char *proxy;
    char *env_proxy;        /* without proxy: the environment's, read at creation */
    char *env_noproxy;      /* and its NO_PROXY ("": none) */
    char *user_agent;
    pthread_mutex_t where_lock;
    unsigned where_gen;     /* bumped by each change of region */
    int aws_endpoint;       /* no endpoint_url: the host follows the region */
    int virtual_host;
    int https;
    int max_attempts;
    xfer_opts opts;
    xfer_pool pool;
    req_log log;            /* the request log (set_log); its own lock */
    pthread_mutex_t key_lock;   /* guards the signing-key cache of every cred_set */
    cred_cache cred;            /* where the keys come from; anonymous: unsigned */
    /* the storage's url(), set by url_setup(): which form, the escaped key prefix
     * ("" or "prefix/" escaped) and its raw length, the public URL's base */
    int url_mode;               /* URL_MODE_* */
    char *url_prefix;
    size_t url_prefix_raw;
    char *url_public;
    long url_expires;
    int ready;
} Client;

/* Keeps `region` as the bucket's: the signing region, and on AWS's own endpoint
 * the host too. Pure C, for any thread; -1: out of memory, nothing changed. */
int client_set_region(Client *c, const char *region);
/* Whether a region named by a server's reply may be used: letters, digits, '-'. */
int client_region_valid(const char *r, size_t n);
/* With the GIL: after fork(), renews what the child inherited. 0, or -1 with an
 * exception set. */
int client_check_fork(Client *c);
/* With the GIL: the credentials to sign with, valid for `min_valid` more seconds
 * when that can be had; *out stays NULL for an anonymous Client. 0, or -1 with an
 * exception set. Release *out with cred_release(&c->cred, *out). */
int client_creds(Client *c, long min_valid, cred_set **out);
/* With the GIL: -1 with an exception when __init__ did not run. */
int client_ready(Client *c);
/* With the GIL: the presigned form of `url` (NUL-terminated, its query included),
 * signed for `region` now (ts NULL) or at `ts`; the URL as it is for an anonymous
 * Client. A new str, or NULL with an exception set. */
PyObject *client_sign_url(Client *c, const char *method, const char *url, size_t len,
                          long expires, const char *ts, const char *region);

#endif
