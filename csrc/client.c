/* Client: one per storage. Builds S3 requests, runs them through the transfer
 * pool with the GIL released, and maps the replies to Python objects.
 *
 * Inputs are copied into C memory (or held as Py_buffer views) before the GIL is
 * released; results are built into Python objects after it is taken back. The
 * signing-key cache is the only state shared between threads besides the pool,
 * and it has its own mutex. */
#include "module.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "buf.h"
#include "credentials.h"
#include "gzip.h"
#include "sigv4.h"
#include "transfer.h"
#include "xml.h"

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
    char *proxy;
    char *user_agent;
    pthread_mutex_t where_lock;
    unsigned where_gen;     /* bumped by each change of region */
    int aws_endpoint;       /* no endpoint_url: the host follows the region */
    int virtual_host;
    int https;
    int max_attempts;
    xfer_opts opts;
    xfer_pool pool;
    pthread_mutex_t key_lock;   /* guards the signing-key cache of every cred_set */
    cred_cache cred;            /* where the keys come from; anonymous: unsigned */
    int ready;
} Client;

/* ---- construction -------------------------------------------------------- */

static char *
dup_str(const char *s)
{
    size_t n;
    char *p;

    if (s == NULL)
        return NULL;
    n = strlen(s);
    p = malloc(n + 1);
    if (p)
        memcpy(p, s, n + 1);
    return p;
}

/* Buckets that can stand in a host name: 3 to 63 lower-case letters, digits,
 * hyphens and dots, in labels that neither start nor end with a hyphen, and not
 * an IPv4 address. (Dotted names are DNS names too, but they break the TLS
 * wildcard certificate *.s3.<region>.amazonaws.com: "auto" keeps them path-style
 * over TLS.) */
static int
dns_compatible(const char *b)
{
    size_t n = strlen(b), i;
    int all_digits_and_dots = 1;

    if (n < 3 || n > 63)
        return 0;
    for (i = 0; i < n; i++) {
        char ch = b[i];
        if (ch == '.') {
            if (i == 0 || i == n - 1 || b[i - 1] == '.' || b[i - 1] == '-' || b[i + 1] == '-')
                return 0;
        } else if (ch == '-') {
            if (i == 0 || i == n - 1)
                return 0;
            all_digits_and_dots = 0;
        } else if (ch >= 'a' && ch <= 'z') {
            all_digits_and_dots = 0;
        } else if (!(ch >= '0' && ch <= '9')) {
            return 0;
        }
    }
    return !all_digits_and_dots;
}

/* Characters a host name may hold: what addressing_style="virtual" puts there. */
static int
host_safe(const char *b)
{
    return b[0] && strspn(b, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789.-_") == strlen(b);
}

/* A region a reply hints at: lower-case letters, digits and '-', at most 32. It
 * goes into the credential scope and, on AWS, the host name. */
static int
region_hint_valid(const char *r, size_t n)
{
    size_t i;

    if (n == 0 || n > 32)
        return 0;
    for (i = 0; i < n; i++)
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
            return 0;
    return 1;
}

/* endpoint (and on AWS the host follows region) -> the bucket's URL, into *out */
static int
bucket_url(buf_t *out, const char *endpoint, const char *bucket, int virtual_host)
{
    sigv4_url u;

    if (sigv4_split_url(endpoint, &u) < 0)
        return -1;
    if (virtual_host)
        return buf_append(out, u.scheme, u.scheme_len) < 0 || buf_puts(out, "://") < 0 ||
                       buf_puts(out, bucket) < 0 || buf_putc(out, '.') < 0 ||
                       buf_append(out, u.host, u.host_len) < 0 ||
                       (u.path_given && buf_append(out, u.path, u.path_len) < 0) ||
                       buf_putc(out, '/') < 0
                   ? -1
                   : 0;
    return buf_puts(out, endpoint) < 0 || buf_putc(out, '/') < 0 ||
                   buf_append_uri(out, bucket, strlen(bucket), 0) < 0 || buf_putc(out, '/') < 0
               ? -1
               : 0;
}

/* An http(s)://host[:port][/path] URL without credentials or a query, trailing
 * slashes dropped, into *out; -1 when it is not one. */
static int
endpoint_copy(buf_t *out, const char *url)
{
    sigv4_url u;
    size_t n;

    if (sigv4_split_url(url, &u) < 0 || u.query_len || strchr(url, '@') ||
        strpbrk(url, " \t\r\n#"))
        return -1;
    for (n = 0; url[n]; n++)
        if ((unsigned char)url[n] < 0x20 || url[n] == 0x7f)
            return -1;
    while (n > 0 && url[n - 1] == '/')
        n--;
    return buf_append(out, url, n);
}

/* http(s)://[user:password@]host:port[/]: what a proxy setting may be. */
static int
proxy_valid(const char *p)
{
    const char *h, *end, *colon;
    size_t i;
    long port;
    char *stop;

    for (i = 0; p[i]; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return 0;
    if (strncasecmp(p, "http://", 7) == 0)
        h = p + 7;
    else if (strncasecmp(p, "https://", 8) == 0)
        h = p + 8;
    else
        return 0;
    end = h + strcspn(h, "/?#");
    if (*end && strcmp(end, "/") != 0)
        return 0;
    for (colon = end; colon > h && colon[-1] != '@'; colon--)
        ;
    h = colon;                              /* past any user:password@ */
    if (h == end)
        return 0;
    if (*h == '[') {
        colon = memchr(h, ']', (size_t)(end - h));
        if (colon == NULL || colon[1] != ':')
            return 0;
        colon++;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        if (colon == NULL || colon == h ||
            strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") <
                (size_t)(colon - h))
            return 0;
    }
    if (colon + 1 >= end || strspn(colon + 1, "0123456789") != (size_t)(end - colon - 1))
        return 0;
    port = strtol(colon + 1, &stop, 10);
    return stop == end && port >= 1 && port <= 65535;
}

/* 1 when every byte is printable ASCII other than space: what may go into the
 * URL's authority and the Host header as it is. */
static int
printable_token(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static void
client_free_strings(Client *self)
{
    free(self->endpoint);
    free(self->bucket);
    free(self->region);
    free(self->base);
    free(self->public_base);
    free(self->ca_bundle);
    free(self->proxy);
    free(self->user_agent);
    self->endpoint = self->bucket = self->region = self->base = self->ca_bundle = NULL;
    self->public_base = self->proxy = self->user_agent = NULL;
}

static int
client_init(PyObject *self_, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"bucket", "endpoint_url", "region", "access_key", "secret_key",
                             "session_token", "addressing_style", "connect_timeout",
                             "read_timeout", "max_connections", "max_attempts", "verify",
                             "ca_bundle", "profile", "anonymous", "proxy", "user_agent",
                             "public_endpoint_url", NULL};
    Client *self = (Client *)self_;
    const char *bucket, *endpoint = NULL, *region = NULL, *access = NULL,
                        *secret = NULL, *token = NULL, *style = "auto", *ca = NULL,
                        *profile = NULL, *proxy = NULL, *agent = NULL,
                        *public_endpoint = NULL;
    double connect_timeout = 60.0, read_timeout = 60.0;
    int max_connections = 10, max_attempts = 3, verify = 1, anonymous = 0;
    buf_t b = BUF_INIT, region_buf = BUF_INIT, cred_err = BUF_INIT, pub = BUF_INIT,
          ua = BUF_INIT;
    char region_default[64];
    cred_config cfg;
    int rc = -1;

    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Client is already initialised");
        return -1;
    }
    client_free_strings(self);   /* what a failed earlier __init__ left */
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$zzzzzsddiipzzpzzz", kwlist, &bucket,
                                     &endpoint, &region, &access, &secret, &token, &style,
                                     &connect_timeout, &read_timeout, &max_connections,
                                     &max_attempts, &verify, &ca, &profile, &anonymous, &proxy,
                                     &agent, &public_endpoint))
        return -1;
    if (region == NULL) {
        /* not given: the environment, then the profile, then us-east-1 */
        rc = cred_default_region(profile, &region_buf, &cred_err);
        if (rc == 0)
            snprintf(region_default, sizeof(region_default), "%s", region_buf.data);
        else
            PyErr_SetString(PyExc_ValueError, cred_err.len ? cred_err.data : "out of memory");
        buf_free(&region_buf);
        buf_free(&cred_err);
        if (rc < 0)
            return -1;
        rc = -1;
        region = region_default;
    }
    if (bucket[0] == '\0' || strchr(bucket, '/') || !printable_token(bucket)) {
        PyErr_SetString(PyExc_ValueError, "bucket must be a bucket name, without '/', spaces "
                        "or control characters");
        return -1;
    }
    if (region[0] == '\0')
        region = "us-east-1";   /* "": discover it, from the first redirect */
    if (strchr(region, '/') || !host_safe(region) || strlen(region) >= 64) {
        PyErr_SetString(PyExc_ValueError, "region must be a region name such as 'us-east-1'");
        return -1;
    }
    if ((access == NULL) != (secret == NULL)) {
        PyErr_SetString(PyExc_ValueError,
                        "access_key and secret_key go together: give both or neither");
        return -1;
    }
    if (anonymous && access) {
        PyErr_SetString(PyExc_ValueError,
                        "anonymous=True sends unsigned requests: give no access_key with it");
        return -1;
    }
    if (strcmp(style, "auto") != 0 && strcmp(style, "path") != 0 &&
        strcmp(style, "virtual") != 0) {
        PyErr_SetString(PyExc_ValueError,
                        "addressing_style must be 'auto', 'path' or 'virtual'");
        return -1;
    }
    if (!(connect_timeout > 0) || !(read_timeout > 0) || connect_timeout > 1e6 ||
        read_timeout > 1e6 || max_connections < 1 ||
        max_connections > 1000 || max_attempts < 1 || max_attempts > 20) {
        PyErr_SetString(PyExc_ValueError,
                        "timeouts must be 0 to 1e6 seconds, max_connections 1 to 1000 and "
                        "max_attempts 1 to 20");
        return -1;
    }
    if (strcmp(style, "virtual") == 0 && !host_safe(bucket)) {
        PyErr_SetString(PyExc_ValueError,
                        "addressing_style 'virtual' needs a bucket name that can be part of a "
                        "host name");
        return -1;
    }
    if (proxy && !proxy_valid(proxy)) {
        /* not echoed: it may hold user:password@ */
        PyErr_SetString(PyExc_ValueError,
                        "proxy must be http(s)://host:port (credentials as "
                        "http://user:password@host:port)");
        return -1;
    }
    if (agent && (agent[0] == '\0' || strlen(agent) > 256 ||
                  strspn(agent, " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~") != strlen(agent))) {
        PyErr_SetString(PyExc_ValueError,
                        "user_agent must be 1 to 256 printable ASCII characters");
        return -1;
    }
    if (endpoint) {
        if (!printable_token(endpoint) || endpoint_copy(&b, endpoint) < 0) {
            /* not echoed: it may hold user:password@ */
            PyErr_SetString(PyExc_ValueError,
                            "endpoint_url must be http(s)://host[:port], without credentials, "
                            "a query, spaces or control characters");
            return -1;
        }
    } else if (buf_printf(&b, "https://s3.%s.amazonaws.com", region) < 0) {
        goto done;
    }
    if (public_endpoint && public_endpoint[0] && endpoint_copy(&pub, public_endpoint) < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "public_endpoint_url must be http(s)://host[:port], without "
                        "credentials or a query");
        goto done;
    }
    if (agent == NULL && buf_printf(&ua, "django-s3-storage libcurl/%s",
                                    curl_version_info(CURLVERSION_NOW)->version) < 0)
        goto done;
    self->endpoint = dup_str(b.data);
    self->bucket = dup_str(bucket);
    self->region = dup_str(region);
    self->ca_bundle = dup_str(ca);
    self->proxy = dup_str(proxy);
    self->user_agent = dup_str(agent ? agent : ua.data);
    if (!self->endpoint || !self->bucket || !self->region || (ca && !self->ca_bundle) ||
        (proxy && !self->proxy) || !self->user_agent)
        goto done;
    self->aws_endpoint = endpoint == NULL;
    self->https = strncasecmp(self->endpoint, "https:", 6) == 0;
    if (strcmp(style, "virtual") == 0)
        self->virtual_host = 1;
    else if (strcmp(style, "auto") == 0)
        self->virtual_host = self->aws_endpoint && dns_compatible(bucket) &&
                             !(self->https && strchr(bucket, '.'));
    /* the bucket's URL, and the one the public sees */
    buf_clear(&ua);
    if (bucket_url(&ua, self->endpoint, bucket, self->virtual_host) < 0 ||
        (self->base = dup_str(ua.data)) == NULL)
        goto done;
    if (pub.len) {
        buf_clear(&ua);
        if (bucket_url(&ua, pub.data, bucket, self->virtual_host) < 0 ||
            (self->public_base = dup_str(ua.data)) == NULL)
            goto done;
    }
    self->max_attempts = max_attempts;
    self->opts.connect_timeout_ms = (long)(connect_timeout * 1000.0);
    if (self->opts.connect_timeout_ms < 1)
        self->opts.connect_timeout_ms = 1;
    self->opts.read_timeout_s = (long)(read_timeout + 0.999);
    self->opts.verify = verify;
    self->opts.ca_bundle = self->ca_bundle;
    self->opts.proxy = self->proxy;
    self->opts.user_agent = self->user_agent;
    memset(&cfg, 0, sizeof(cfg));
    cfg.access_key = access;
    cfg.secret_key = secret;
    cfg.session_token = token;
    cfg.profile = profile;
    cfg.region = self->region;
    cfg.anonymous = anonymous;
    cfg.md = self->st->sha256;
    cfg.verify = verify;
    cfg.ca_bundle = self->ca_bundle;
    cfg.connect_timeout_ms = self->opts.connect_timeout_ms;
    cfg.read_timeout_s = self->opts.read_timeout_s;
    if (cred_cache_init(&self->cred, &cfg, &cred_err) < 0) {
        PyErr_SetString(PyExc_ValueError, cred_err.data ? cred_err.data : "out of memory");
        goto done;
    }
    if (xfer_pool_init(&self->pool, max_connections) < 0) {
        cred_cache_destroy(&self->cred);
        goto done;
    }
    pthread_mutex_init(&self->key_lock, NULL);
    pthread_mutex_init(&self->where_lock, NULL);
    self->where_gen = 0;
    self->ready = 1;
    rc = 0;
done:
    /* the argument checks raised already; what fails past them is memory */
    if (rc < 0 && !PyErr_Occurred())
        PyErr_NoMemory();
    buf_free(&b);
    buf_free(&cred_err);
    buf_free(&pub);
    buf_free(&ua);
    return rc;
}

static PyObject *
client_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    Client *self;

    (void)args; (void)kw;
    self = (Client *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->st = (s3_state *)PyType_GetModuleState(type);
    if (self->st == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
client_dealloc(PyObject *self_)
{
    Client *self = (Client *)self_;
    PyTypeObject *tp = Py_TYPE(self_);

    if (self->ready) {
        xfer_pool_destroy(&self->pool);
        pthread_mutex_destroy(&self->key_lock);
        cred_cache_destroy(&self->cred);
        pthread_mutex_destroy(&self->where_lock);
    }
    client_free_strings(self);
    tp->tp_free(self_);
    Py_DECREF(tp);
}

static int client_check_fork(Client *c);

/* Copies of the region and the endpoint as they are now, for the GIL's side
 * (Python objects are built from the copies, outside the lock). */
static int
client_where(Client *c, char region[64], char **endpoint)
{
    if (client_check_fork(c) < 0)
        return -1;
    pthread_mutex_lock(&c->where_lock);
    strcpy(region, c->region);
    if (endpoint)
        *endpoint = dup_str(c->endpoint);
    pthread_mutex_unlock(&c->where_lock);
    if (endpoint && *endpoint == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *
client_repr(PyObject *self_)
{
    Client *self = (Client *)self_;
    char region[64];
    char *endpoint;
    PyObject *res;

    /* never the credentials */
    if (!self->ready)
        return PyUnicode_FromString("<Client (not initialised)>");
    if (client_where(self, region, &endpoint) < 0)
        return NULL;
    res = PyUnicode_FromFormat("<Client bucket=%s endpoint=%s region=%s %s>", self->bucket,
                               endpoint, region, self->cred.anonymous ? "anonymous" : "signed");
    free(endpoint);
    return res;
}

static int
check_ready(Client *self)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Client.__init__ was not called");
        return -1;
    }
    return 0;
}

/* ---- one S3 call --------------------------------------------------------- */

enum { SINK_BUFFER, SINK_LIST, SINK_BODY };

#define CALL_MAX_HEADERS 40
#define CALL_MAX_HEADER_VALUE 8192   /* bytes; servers refuse far less in total */
#define CALL_MAX_METADATA 2048       /* S3: names and values of x-amz-meta-* together */

typedef struct {
    Client *client;
    const char *method;
    buf_t url;
    size_t base_len;                 /* url starts with the bucket's URL, this long */
    unsigned where_gen;              /* the client's where_gen when url and region were taken */
    char region[64];                 /* the region this attempt signs for */
    int redirected;                  /* a region redirect was followed */
    char *key;                       /* for messages; NULL for bucket calls */
    char *hname[CALL_MAX_HEADERS];   /* malloc'ed copies */
    char *hvalue[CALL_MAX_HEADERS];
    int nh;
    Py_buffer body;
    int has_body;
    int sink_kind;
    int reply_on_success;            /* CopyObject: a 200 may carry an Error document */
    /* sinks */
    xml_list list;
    int list_ready;
    gz_stream gz;
    int gz_checked;                  /* the first body byte has been seen */
    int decompress;                  /* undo Content-Encoding: gzip */
    buf_t scratch;                   /* gunzip output on its way to `out` */
    buf_t out;                       /* the body while it fits in spool_max */
    size_t out_total;                /* bytes of body, in memory or in the file */
    size_t spool_max;                /* 0: always in memory */
    char *spool_dir;                 /* NULL: $TMPDIR or /tmp */
    int spool_fd;                    /* -1 until the body spills to a file */
    const char *sink_error;
    /* results */
    xfer_request req;
    xml_reply reply;
    int have_reply;
    int transport_failed;
    int ok;
    const char *local_error;         /* out of memory and the like */
    cred_set *creds;                 /* what this call signs with; NULL: unsigned */
    int creds_refused;               /* ExpiredToken and the like: renew, run again */
    int creds_retried;
} s3_call;

static void
call_init(s3_call *k, Client *c, const char *method)
{
    memset(k, 0, sizeof(*k));
    k->client = c;
    k->method = method;
    k->spool_fd = -1;
}

static void
call_free(s3_call *k)
{
    int i;

    for (i = 0; i < k->nh; i++) {
        free(k->hname[i]);
        free(k->hvalue[i]);
    }
    free(k->key);
    buf_free(&k->url);
    if (k->has_body)
        PyBuffer_Release(&k->body);
    if (k->list_ready)
        xml_list_free(&k->list);
    gz_end(&k->gz);
    buf_free(&k->out);
    buf_free(&k->scratch);
    free(k->spool_dir);
    if (k->spool_fd >= 0)
        close(k->spool_fd);
    xfer_request_free(&k->req);
    cred_release(&k->client->cred, k->creds);
    k->creds = NULL;
}

/* The last guard before the wire: a header value holds no control character
 * (TAB included: SigV4 servers disagree on how to canonicalise it) and stays
 * under CALL_MAX_HEADER_VALUE bytes. The value itself is never echoed. */
static int
check_header_value(const char *name, const char *value, size_t value_len)
{
    size_t i;

    if (value_len > CALL_MAX_HEADER_VALUE) {
        PyErr_Format(PyExc_ValueError, "the %s header value is %zu bytes; at most %d are sent",
                     name, value_len, CALL_MAX_HEADER_VALUE);
        return -1;
    }
    for (i = 0; i < value_len; i++) {
        unsigned char ch = (unsigned char)value[i];
        if (ch < 0x20 || ch == 0x7f) {
            char hex[8];
            snprintf(hex, sizeof(hex), "\\x%02x", ch);
            PyErr_Format(PyExc_ValueError,
                         "the %s header may not contain control characters (%s at byte %zu)",
                         name, hex, i);
            return -1;
        }
    }
    return 0;
}

static int
call_add_header(s3_call *k, const char *name, const char *value, size_t value_len)
{
    char *v;

    if (k->nh >= CALL_MAX_HEADERS) {
        PyErr_SetString(PyExc_ValueError, "too many headers");
        return -1;
    }
    if (check_header_value(name, value, value_len) < 0)
        return -1;
    v = malloc(value_len + 1);
    if (v == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(v, value, value_len);
    v[value_len] = '\0';
    k->hname[k->nh] = dup_str(name);
    k->hvalue[k->nh] = v;
    if (k->hname[k->nh] == NULL) {
        free(v);
        PyErr_NoMemory();
        return -1;
    }
    k->nh++;
    return 0;
}

/* Starts k->url with the bucket's URL and takes the signing region with it,
 * both as they are now (a redirect in another thread may change them later). */
static int
call_put_base(s3_call *k)
{
    Client *c = k->client;
    int rc;

    pthread_mutex_lock(&c->where_lock);
    rc = buf_puts(&k->url, c->base);
    k->base_len = strlen(c->base);
    k->where_gen = c->where_gen;
    strcpy(k->region, c->region);     /* shorter than 64: checked where it is set */
    pthread_mutex_unlock(&c->where_lock);
    return rc;
}

/* Before each attempt, without the GIL: when the client's region changed since
 * the call took its URL (a redirect, here or in another thread), the call
 * follows. -1: out of memory. */
static int
call_refresh_where(s3_call *k)
{
    Client *c = k->client;
    buf_t u = BUF_INIT;
    int rc = 0;

    pthread_mutex_lock(&c->where_lock);
    if (k->where_gen != c->where_gen) {
        if (buf_puts(&u, c->base) < 0 ||
            buf_append(&u, k->url.data + k->base_len, k->url.len - k->base_len) < 0) {
            rc = -1;
        } else {
            buf_free(&k->url);
            k->url = u;
            u = (buf_t)BUF_INIT;
            k->base_len = strlen(c->base);
            k->where_gen = c->where_gen;
            strcpy(k->region, c->region);
        }
    }
    pthread_mutex_unlock(&c->where_lock);
    buf_free(&u);
    k->req.url = k->url.data;
    return rc;
}

/* Keeps `region` as the bucket's: the signing region, and on AWS's own endpoint
 * the host too. Pure C, for any thread; -1: out of memory, nothing changed. */
static int
client_set_region(Client *c, const char *region)
{
    buf_t ep = BUF_INIT, base = BUF_INIT;
    char *new_region = NULL, *new_ep = NULL, *new_base = NULL, *t;
    int rc = -1;

    if (c->aws_endpoint &&
        (buf_printf(&ep, "https://s3.%s.amazonaws.com", region) < 0 ||
         bucket_url(&base, ep.data, c->bucket, c->virtual_host) < 0 ||
         (new_ep = dup_str(ep.data)) == NULL || (new_base = dup_str(base.data)) == NULL))
        goto done;
    if ((new_region = dup_str(region)) == NULL)
        goto done;
    pthread_mutex_lock(&c->where_lock);
    if (strcmp(c->region, region) != 0) {
        /* swapped: the old strings are freed below, once no reader can hold them */
        t = c->region, c->region = new_region, new_region = t;
        if (new_ep) {
            t = c->endpoint, c->endpoint = new_ep, new_ep = t;
            t = c->base, c->base = new_base, new_base = t;
        }
        c->where_gen++;
    }
    pthread_mutex_unlock(&c->where_lock);
    rc = 0;
done:
    free(new_region);
    free(new_ep);
    free(new_base);
    buf_free(&ep);
    buf_free(&base);
    return rc;
}

/* "bucket.s3.eu-west-1.amazonaws.com", "s3.dualstack.eu-west-1.amazonaws.com",
 * "bucket.s3-eu-west-1.amazonaws.com" -> "eu-west-1" (not NUL-terminated). */
static const char *
endpoint_region(const char *e, size_t *len)
{
    static const char suffix[] = ".amazonaws.com";
    size_t n = strlen(e), sl = sizeof(suffix) - 1;
    const char *end, *p;

    if (n <= sl || strcasecmp(e + n - sl, suffix) != 0)
        return NULL;
    end = e + n - sl;
    for (p = end; p > e && p[-1] != '.'; p--)
        ;
    if ((size_t)(end - p) == 13 && strncmp(p, "s3-external-1", 13) == 0) {
        *len = 9;
        return "us-east-1";
    }
    if (end - p > 3 && strncmp(p, "s3-", 3) == 0) {
        *len = (size_t)(end - p - 3);
        return p + 3;
    }
    if ((p - e >= 3 && strncmp(p - 3, "s3.", 3) == 0 && (p - 3 == e || p[-4] == '.')) ||
        (p - e >= 10 && strncmp(p - 10, "dualstack.", 10) == 0)) {
        *len = (size_t)(end - p);
        return p;
    }
    return NULL;
}

/* The region a failed reply says the bucket is in, when it is not the one this
 * attempt signed for: its x-amz-bucket-region header, or the <Region> or the
 * <Endpoint> of a redirect or an AuthorizationHeaderMalformed document. */
static int
call_region_hint(s3_call *k, char out[64])
{
    size_t len = 0;
    const char *h = xfer_header(&k->req, "x-amz-bucket-region", &len);
    const char *code = k->have_reply ? k->reply.code : "";

    if (h == NULL &&
        (k->req.status == 301 || k->req.status == 307 ||
         strcmp(code, "PermanentRedirect") == 0 || strcmp(code, "TemporaryRedirect") == 0 ||
         strcmp(code, "AuthorizationHeaderMalformed") == 0)) {
        if (k->have_reply && k->reply.region[0]) {
            h = k->reply.region;
            len = strlen(h);
        } else if (k->have_reply && k->reply.endpoint[0]) {
            h = endpoint_region(k->reply.endpoint, &len);
        }
    }
    if (h == NULL || !region_hint_valid(h, len) ||
        (strlen(k->region) == len && memcmp(k->region, h, len) == 0))
        return 0;
    memcpy(out, h, len);
    out[len] = '\0';
    return 1;
}

/* The UTF-8 of an object key: 1 to 1024 bytes, no NUL. An empty key would make
 * a bucket request of an object one (a presigned GET of it lists the bucket). */
static const char *
key_utf8(PyObject *key, Py_ssize_t *n)
{
    const char *s;

    if (!PyUnicode_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "key must be str");
        return NULL;
    }
    s = PyUnicode_AsUTF8AndSize(key, n);
    if (s == NULL)
        return NULL;
    if (*n == 0 || *n > 1024) {
        PyErr_SetString(PyExc_ValueError, "an S3 key is 1 to 1024 bytes of UTF-8");
        return NULL;
    }
    if (memchr(s, '\0', (size_t)*n)) {
        PyErr_SetString(PyExc_ValueError, "an S3 key may not contain NUL");
        return NULL;
    }
    return s;
}

static int
call_set_key(s3_call *k, PyObject *key)
{
    const char *s;
    Py_ssize_t n;

    s = key_utf8(key, &n);
    if (s == NULL || client_check_fork(k->client) < 0)
        return -1;
    k->key = malloc((size_t)n + 1);
    if (k->key == NULL || call_put_base(k) < 0 || buf_append_uri(&k->url, s, (size_t)n, 1) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(k->key, s, (size_t)n + 1);
    return 0;
}

/* sinks: called from the curl write callback, without the GIL */

static int
sink_list(void *ud, const char *p, size_t n)
{
    s3_call *k = ud;

    if (xml_sax_feed(&k->list.sax, p, n) < 0) {
        k->sink_error = k->list.sax.error;
        return -1;
    }
    return 0;
}

static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* An unlinked temporary file: it vanishes with its last descriptor. */
static int
spool_open(const char *dir)
{
    buf_t path = BUF_INIT;
    int fd = -1;

    if (dir == NULL || dir[0] == '\0')
        dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/tmp";
#ifdef O_TMPFILE
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
#endif
    if (buf_puts(&path, dir) < 0 || buf_puts(&path, "/django-s3-storage-XXXXXX") < 0)
        goto done;
    fd = mkostemp(path.data, O_CLOEXEC);
    if (fd >= 0)
        unlink(path.data);
done:
    buf_free(&path);
    return fd;
}

/* The body goes to memory while it fits in spool_max bytes, then to a temporary
 * file: memory stays bounded whatever the object's size, or its gzip ratio. */
static int
out_write(s3_call *k, const char *p, size_t n)
{
    if (k->spool_fd < 0 && (k->spool_max == 0 || k->out.len + n <= k->spool_max)) {
        if (buf_append(&k->out, p, n) < 0) {
            k->sink_error = "out of memory";
            return -1;
        }
        k->out_total += n;
        return 0;
    }
    if (k->spool_fd < 0) {
        k->spool_fd = spool_open(k->spool_dir);
        if (k->spool_fd < 0 || write_all(k->spool_fd, k->out.data, k->out.len) < 0) {
            k->sink_error = "cannot write the download to a temporary file";
            return -1;
        }
        buf_free(&k->out);
    }
    if (write_all(k->spool_fd, p, n) < 0) {
        k->sink_error = "cannot write the download to a temporary file";
        return -1;
    }
    k->out_total += n;
    return 0;
}

/* gunzip output, chunk by chunk, into out_write(): at most one curl chunk's
 * worth of decoded bytes is ever held in `scratch`. */
static int
gunzip_to_out(s3_call *k, const char *p, size_t n, int finish)
{
    int rc;

    buf_clear(&k->scratch);
    if (gz_feed(&k->gz, p, n, finish, &k->scratch) < 0) {
        k->sink_error = k->gz.error;
        return -1;
    }
    rc = out_write(k, k->scratch.data, k->scratch.len);
    buf_clear(&k->scratch);
    return rc;
}

static int
sink_body(void *ud, const char *p, size_t n)
{
    s3_call *k = ud;

    if (!k->gz_checked) {
        size_t len = 0;
        const char *enc = k->decompress ? xfer_header(&k->req, "content-encoding", &len) : NULL;
        k->gz_checked = 1;
        if (enc && len == 4 && strncasecmp(enc, "gzip", 4) == 0 && gz_inflate_init(&k->gz) < 0) {
            k->sink_error = k->gz.error;
            return -1;
        }
    }
    if (k->gz.active)
        return gunzip_to_out(k, p, n, 0);
    return out_write(k, p, n);
}

/* Back to the state before the first byte: every attempt starts clean. */
static int
sink_reset(s3_call *k)
{
    k->sink_error = NULL;
    buf_clear(&k->out);
    k->out_total = 0;
    if (k->spool_fd >= 0) {
        close(k->spool_fd);
        k->spool_fd = -1;
    }
    if (k->sink_kind == SINK_LIST) {
        if (k->list_ready)
            xml_list_free(&k->list);
        k->list_ready = 0;
        if (xml_list_init(&k->list) < 0)
            return -1;
        k->list_ready = 1;
        k->req.sink = sink_list;
        k->req.sink_ud = k;
    } else if (k->sink_kind == SINK_BODY) {
        gz_end(&k->gz);
        k->gz_checked = 0;
        k->req.sink = sink_body;
        k->req.sink_ud = k;
    }
    return 0;
}

static int
sink_finish(s3_call *k)
{
    if (k->sink_kind == SINK_LIST && xml_sax_finish(&k->list.sax) < 0) {
        k->sink_error = k->list.sax.error;
        return -1;
    }
    if (k->sink_kind == SINK_BODY && k->gz.active && gunzip_to_out(k, "", 0, 1) < 0)
        return -1;
    return 0;
}

static struct curl_slist *
slist_add(struct curl_slist *l, const char *name, const char *value, int *failed)
{
    buf_t line = BUF_INIT;
    struct curl_slist *n;

    if (*failed)
        return l;
    /* curl reads "Name: " as "remove Name"; "Name;" sends it empty */
    if (buf_puts(&line, name) < 0 ||
        buf_puts(&line, value[strspn(value, " \t")] ? ": " : ";") < 0 ||
        buf_puts(&line, value[strspn(value, " \t")] ? value : "") < 0) {
        *failed = 1;
        buf_free(&line);
        return l;
    }
    n = curl_slist_append(l, line.data);
    buf_free(&line);
    if (n == NULL) {
        *failed = 1;
        return l;
    }
    return n;
}

/* "Name:" tells curl not to send a header it would add by itself. */
static struct curl_slist *
slist_remove(struct curl_slist *l, const char *name, int *failed)
{
    char line[64];
    struct curl_slist *n;

    if (*failed)
        return l;
    snprintf(line, sizeof(line), "%s:", name);
    n = curl_slist_append(l, line);
    if (n == NULL) {
        *failed = 1;
        return l;
    }
    return n;
}

/* The headers of one attempt, signed at the time of that attempt. */
static struct curl_slist *
build_headers(s3_call *k, const char *payload_hash)
{
    Client *c = k->client;
    sigv4_header h[CALL_MAX_HEADERS + 4];
    sigv4_ctx ctx;
    sigv4_url u;
    buf_t host = BUF_INIT, auth = BUF_INIT;
    struct curl_slist *l = NULL;
    size_t nh = 0;
    int i, failed = 0;

    if (sigv4_split_url(k->url.data, &u) < 0 || buf_append(&host, u.host, u.host_len) < 0)
        goto fail;
    l = slist_add(l, "Host", host.data, &failed);
    for (i = 0; i < k->nh; i++) {
        l = slist_add(l, k->hname[i], k->hvalue[i], &failed);
        h[nh++] = (sigv4_header){k->hname[i], strlen(k->hname[i]), k->hvalue[i],
                                 strlen(k->hvalue[i])};
    }
    /* no 100-continue round trip (and no RGW stall after a refused PUT) */
    if (k->has_body || strcmp(k->method, "PUT") == 0 || strcmp(k->method, "POST") == 0)
        l = slist_remove(l, "Expect", &failed);
    if (k->creds) {
        /* the set is this call's own reference: another thread may swap the
         * Client's credentials meanwhile, never these */
        const cred_set *cr = k->creds;
        memset(&ctx, 0, sizeof(ctx));
        ctx.md = c->st->sha256;
        ctx.access_key = cr->access_key;
        ctx.secret_key = cr->secret_key;
        ctx.session_token = cr->session_token;
        ctx.region = k->region;
        ctx.service = "s3";
        ctx.cache = &k->creds->key_cache;
        ctx.cache_lock = &c->key_lock;
        sigv4_format_date(time(NULL), ctx.amz_date);
        h[nh++] = (sigv4_header){"host", 4, host.data, host.len};
        h[nh++] = (sigv4_header){"x-amz-date", 10, ctx.amz_date, SIGV4_DATE_LEN};
        h[nh++] = (sigv4_header){"x-amz-content-sha256", 20, payload_hash,
                                 strlen(payload_hash)};
        if (cr->session_token)
            h[nh++] = (sigv4_header){"x-amz-security-token", 20, cr->session_token,
                                     strlen(cr->session_token)};
        if (sigv4_authorization(&ctx, k->method, &u, h, nh, payload_hash, &auth) < 0)
            goto fail;
        l = slist_add(l, "x-amz-date", ctx.amz_date, &failed);
        l = slist_add(l, "x-amz-content-sha256", payload_hash, &failed);
        if (cr->session_token)
            l = slist_add(l, "x-amz-security-token", cr->session_token, &failed);
        l = slist_add(l, "Authorization", auth.data, &failed);
    }
    if (failed)
        goto fail;
    buf_free(&host);
    buf_free(&auth);
    return l;
fail:
    curl_slist_free_all(l);
    buf_free(&host);
    buf_free(&auth);
    return NULL;
}

/* Whether the server refused temporary credentials that a renewal may replace. */
static int
creds_refused(const cred_set *cr, const char *code)
{
    if (cr == NULL || !cr->refreshable || code == NULL)
        return 0;
    return strcmp(code, "ExpiredToken") == 0 || strcmp(code, "InvalidToken") == 0 ||
           strcmp(code, "TokenRefreshRequired") == 0 ||
           strcmp(code, "ExpiredTokenException") == 0 ||
           (cr->session_token && strcmp(code, "InvalidAccessKeyId") == 0);
}

/* Runs the call with retries. No GIL here: only C memory is touched. */
static void
call_run(s3_call *k)
{
    Client *c = k->client;
    char payload_hash[65];
    struct curl_slist *headers;
    char hint[64];
    int attempt, rc;

    if (k->has_body && !c->https) {
        /* over plain HTTP the body is signed; TLS protects it otherwise */
        if (sigv4_sha256_hex(c->st->sha256, k->body.buf, (size_t)k->body.len, payload_hash) < 0) {
            k->local_error = "cannot hash the request body";
            return;
        }
    } else if (k->has_body) {
        strcpy(payload_hash, SIGV4_UNSIGNED);
    } else {
        strcpy(payload_hash, SIGV4_EMPTY_SHA256);
    }
    k->req.method = k->method;
    if (k->has_body) {
        k->req.body = k->body.buf;
        k->req.body_len = (size_t)k->body.len;
    }
    for (attempt = 1;; attempt++) {
        k->have_reply = 0;
        k->transport_failed = 0;
        if (sink_reset(k) < 0 || call_refresh_where(k) < 0 ||
            (headers = build_headers(k, payload_hash)) == NULL) {
            k->local_error = "out of memory";
            return;
        }
        k->req.headers = headers;
        rc = xfer_perform(&c->pool, &c->opts, &k->req);
        k->req.headers = NULL;
        curl_slist_free_all(headers);
        if (rc < 0) {
            if (k->req.sink_failed)
                return;   /* the reply itself was bad: k->sink_error says how */
            k->transport_failed = 1;
            if (attempt < c->max_attempts && xfer_retryable(&k->req, 1, NULL)) {
                xfer_backoff(&k->req, attempt, 1, NULL);
                continue;
            }
            return;
        }
        if (k->req.status >= 200 && k->req.status < 300) {
            if (sink_finish(k) < 0)
                return;
            /* a copy answered with no document (some S3 servers): its ETag is a header */
            if (!k->reply_on_success ||
                strspn(k->req.body_out.data ? k->req.body_out.data : "", " \t\r\n") ==
                    k->req.body_out.len) {
                k->ok = 1;
                return;
            }
            if (xml_parse_reply(k->req.body_out.data ? k->req.body_out.data : "",
                                k->req.body_out.len, &k->reply, &k->sink_error) < 0)
                return;
            k->have_reply = 1;
            if (strcmp(k->reply.root, "Error") != 0) {
                k->ok = 1;
                return;
            }
        } else if (k->req.body_out.len > 0) {
            const char *ignored;
            k->have_reply = xml_parse_reply(k->req.body_out.data, k->req.body_out.len,
                                            &k->reply, &ignored) == 0;
        }
        if (k->have_reply && !k->creds_retried && creds_refused(k->creds, k->reply.code)) {
            k->creds_refused = 1;   /* call_perform renews them and runs the call again */
            return;
        }
        if (!k->redirected && k->req.status >= 300 && call_region_hint(k, hint)) {
            /* the bucket lives in another region: once more, there; the client
             * keeps that region. A redirect is not a failed attempt. */
            k->redirected = 1;
            if (client_set_region(c, hint) < 0) {
                k->local_error = "out of memory";
                return;
            }
            attempt--;
            continue;
        }
        if (attempt < c->max_attempts &&
            xfer_retryable(&k->req, 0, k->have_reply ? k->reply.code : NULL)) {
            xfer_backoff(&k->req, attempt, 0, k->have_reply ? k->reply.code : NULL);
            continue;
        }
        return;
    }
}

static const char *
status_code_name(long status)
{
    switch (status) {
    case 301: return "PermanentRedirect";
    case 304: return "NotModified";
    case 400: return "BadRequest";
    case 403: return "AccessDenied";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 412: return "PreconditionFailed";
    case 416: return "InvalidRange";
    case 500: return "InternalError";
    case 503: return "ServiceUnavailable";
    default: return "HTTPError";
    }
}

/* With the GIL: turns a failed call into the exception it deserves. */
static PyObject *
call_raise(s3_call *k)
{
    Client *c = k->client;
    s3_state *st = c->st;
    char reqid[128] = "";
    const char *code, *msg;
    size_t len = 0;
    const char *h;
    buf_t m = BUF_INIT;
    PyObject *res;

    if (k->local_error) {
        if (strcmp(k->local_error, "out of memory") == 0)
            return PyErr_NoMemory();
        return s3_raise(st, 0, "ClientError", k->local_error, NULL, c->bucket, k->key);
    }
    if (k->transport_failed) {
        code = k->req.curl_rc == CURLE_OPERATION_TIMEDOUT ? "Timeout"
               : (k->req.curl_rc == CURLE_COULDNT_CONNECT ||
                  k->req.curl_rc == CURLE_COULDNT_RESOLVE_HOST)
                   ? "EndpointConnectionError"
                   : "TransportError";
        int failed;
        pthread_mutex_lock(&c->where_lock);
        failed = buf_printf(&m, "%s %s failed: %s", k->method, c->endpoint, k->req.errbuf) < 0;
        pthread_mutex_unlock(&c->where_lock);
        if (failed)
            return PyErr_NoMemory();
        res = s3_raise(st, 0, code, m.data, NULL, c->bucket, k->key);
        buf_free(&m);
        return res;
    }
    if (k->sink_error && !(k->have_reply && strcmp(k->reply.root, "Error") == 0))
        return s3_raise(st, (int)k->req.status, "InvalidReply", k->sink_error, NULL, c->bucket,
                        k->key);
    h = xfer_header(&k->req, "x-amz-request-id", &len);
    if (h && len < sizeof(reqid)) {
        memcpy(reqid, h, len);
        reqid[len] = '\0';
    }
    if (k->have_reply && k->reply.code[0]) {
        code = k->reply.code;
        msg = k->reply.message;
        if (k->reply.request_id[0])
            return s3_raise(st, (int)k->req.status, code, msg, k->reply.request_id, c->bucket,
                            k->key);
    } else {
        code = status_code_name(k->req.status);
        msg = NULL;
    }
    return s3_raise(st, (int)k->req.status, code, msg, reqid, c->bucket, k->key);
}

/* With the GIL, so that after a fork exactly one thread renews what the child
 * inherited: the pool, and the key lock (which another thread may have held). */
static int
client_check_fork(Client *c)
{
    switch (xfer_pool_check_fork(&c->pool)) {
    case 1:
        pthread_mutex_init(&c->key_lock, NULL);
        cred_after_fork(&c->cred);
        pthread_mutex_init(&c->where_lock, NULL);
        return 0;
    case -1:
        PyErr_SetString(PyExc_MemoryError, "cannot renew the connection pool after fork()");
        return -1;
    default:
        return 0;
    }
}

/* With the GIL: the credentials to sign with, valid for `min_valid` more
 * seconds when that can be had; *out stays NULL for an anonymous Client. A
 * resolution or renewal runs without the GIL; the source is logged once. */
static int
client_creds(Client *c, long min_valid, cred_set **out)
{
    buf_t err = BUF_INIT;
    const char *code = "CredentialsError";
    char source[256];
    cred_env env;
    int rc;

    *out = NULL;
    if (c->cred.anonymous)
        return 0;
    rc = cred_get(&c->cred, min_valid, NULL, out, &code, &err);
    if (rc == 1) {
        cred_env_load(&env);
        Py_BEGIN_ALLOW_THREADS
        rc = cred_get(&c->cred, min_valid, &env, out, &code, &err);
        Py_END_ALLOW_THREADS
        cred_env_free(&env);
    }
    if (rc < 0)
        s3_raise(c->st, 0, code, err.data ? err.data : "out of memory", NULL, c->bucket, NULL);
    buf_free(&err);
    if (rc == 0 && cred_take_log(&c->cred, source, sizeof(source))) {
        PyObject *logging = PyImport_ImportModule("logging"), *logger = NULL, *r = NULL;
        if (logging)
            logger = PyObject_CallMethod(logging, "getLogger", "s", "django_s3_storage");
        if (logger)
            r = PyObject_CallMethod(logger, "info", "ss", "credentials from %s", source);
        if (r == NULL)
            PyErr_Clear();   /* a broken logging setup does not fail the request */
        Py_XDECREF(r);
        Py_XDECREF(logger);
        Py_XDECREF(logging);
    }
    return rc < 0 ? -1 : 0;
}

static int
call_perform(s3_call *k)
{
    if (client_check_fork(k->client) < 0)
        return -1;
    for (;;) {
        if (k->creds == NULL && client_creds(k->client, 0, &k->creds) < 0)
            return -1;
        Py_BEGIN_ALLOW_THREADS
        call_run(k);
        Py_END_ALLOW_THREADS
        if (!k->creds_refused)
            break;
        /* ExpiredToken, InvalidToken: renewed credentials, and one more run */
        k->creds_refused = 0;
        k->creds_retried = 1;
        cred_invalidate(&k->client->cred, k->creds);
        cred_release(&k->client->cred, k->creds);
        k->creds = NULL;
    }
    if (!k->ok) {
        call_raise(k);
        return -1;
    }
    return 0;
}

/* ---- results --------------------------------------------------------------- */

static int
dict_set_take(PyObject *d, const char *name, PyObject *v)
{
    int rc;

    if (v == NULL)
        return -1;
    rc = PyDict_SetItemString(d, name, v);
    Py_DECREF(v);
    return rc;
}

static PyObject *
str_n(const char *p, size_t n)
{
    return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "replace");
}

/* ISO 8601 as S3 writes it in listings, "2009-10-12T17:50:30.000Z", to epoch seconds. */
static double
iso_epoch(const char *p, size_t n)
{
    char tmp[40];
    struct tm tm;
    int y, mo, d, h, mi;
    double s;

    if (n == 0 || n >= sizeof(tmp))
        return 0.0;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    memset(&tm, 0, sizeof(tm));
    if (sscanf(tmp, "%d-%d-%dT%d:%d:%lf", &y, &mo, &d, &h, &mi, &s) != 6)
        return 0.0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = 0;
    return (double)timegm(&tm) + s;
}

typedef struct {
    const char *header;
    const char *key;
    int kind;   /* 0 str, 1 int, 2 HTTP date as epoch seconds */
} head_field;

static const head_field head_fields[] = {
    {"content-length", "ContentLength", 1},
    {"content-type", "ContentType", 0},
    {"content-encoding", "ContentEncoding", 0},
    {"cache-control", "CacheControl", 0},
    {"content-disposition", "ContentDisposition", 0},
    {"content-language", "ContentLanguage", 0},
    {"content-range", "ContentRange", 0},
    {"etag", "ETag", 0},
    {"last-modified", "LastModified", 2},
    {"expires", "Expires", 0},
    {"x-amz-storage-class", "StorageClass", 0},
    {"x-amz-server-side-encryption", "ServerSideEncryption", 0},
    {"x-amz-server-side-encryption-aws-kms-key-id", "SSEKMSKeyId", 0},
    {"x-amz-version-id", "VersionId", 0},
    {"x-amz-website-redirect-location", "WebsiteRedirectLocation", 0},
    {NULL, NULL, 0},
};

/* The reply's headers in boto3's head_object shape (LastModified in epoch seconds). */
static PyObject *
head_dict(const xfer_request *r)
{
    PyObject *d = PyDict_New(), *meta = NULL;
    const head_field *f;
    const char *p, *end;

    if (d == NULL)
        return NULL;
    for (f = head_fields; f->header; f++) {
        size_t len = 0;
        const char *v = xfer_header(r, f->header, &len);
        PyObject *o;
        if (v == NULL)
            continue;
        if (f->kind == 1) {
            char tmp[32];
            if (len == 0 || len >= sizeof(tmp))
                continue;
            memcpy(tmp, v, len);
            tmp[len] = '\0';
            o = PyLong_FromString(tmp, NULL, 10);
            if (o == NULL) {
                PyErr_Clear();
                continue;
            }
        } else if (f->kind == 2) {
            char tmp[64];
            time_t t;
            if (len >= sizeof(tmp))
                continue;
            memcpy(tmp, v, len);
            tmp[len] = '\0';
            t = curl_getdate(tmp, NULL);
            if (t == (time_t)-1)
                continue;
            o = PyFloat_FromDouble((double)t);
        } else {
            o = str_n(v, len);
        }
        if (dict_set_take(d, f->key, o) < 0)
            goto fail;
    }
    meta = PyDict_New();
    if (meta == NULL)
        goto fail;
    p = r->head.data;
    end = p ? p + r->head.len : NULL;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *colon;
        if (eol == NULL)
            eol = end;
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && colon - p > 11 && strncasecmp(p, "x-amz-meta-", 11) == 0) {
            const char *v = colon + 1, *ve = eol;
            PyObject *name, *value, *lower;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\r'))
                ve--;
            name = str_n(p + 11, (size_t)(colon - p - 11));
            if (name == NULL)
                goto fail;
            lower = PyObject_CallMethod(name, "lower", NULL);
            Py_DECREF(name);
            value = str_n(v, (size_t)(ve - v));
            if (lower == NULL || value == NULL || PyDict_SetItem(meta, lower, value) < 0) {
                Py_XDECREF(lower);
                Py_XDECREF(value);
                goto fail;
            }
            Py_DECREF(lower);
            Py_DECREF(value);
        }
        p = eol + 1;
    }
    if (PyDict_SetItemString(d, "Metadata", meta) < 0)
        goto fail;
    Py_DECREF(meta);
    return d;
fail:
    Py_XDECREF(meta);
    Py_DECREF(d);
    return NULL;
}

/* ---- keyword headers shared by put_object and copy_object ---------------- */

typedef struct {
    const char *kw;
    const char *header;
} kw_header;

static const kw_header object_headers[] = {
    {"content_type", "Content-Type"},
    {"content_encoding", "Content-Encoding"},
    {"cache_control", "Cache-Control"},
    {"content_disposition", "Content-Disposition"},
    {"content_language", "Content-Language"},
    {"acl", "x-amz-acl"},
    {"storage_class", "x-amz-storage-class"},
    {"server_side_encryption", "x-amz-server-side-encryption"},
    {"sse_kms_key_id", "x-amz-server-side-encryption-aws-kms-key-id"},
    {"metadata_directive", "x-amz-metadata-directive"},
    {NULL, NULL},
};

static int
add_metadata(s3_call *k, PyObject *meta)
{
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    size_t total = 0;

    if (!PyDict_Check(meta)) {
        PyErr_SetString(PyExc_TypeError, "metadata must be a dict of str to str");
        return -1;
    }
    while (PyDict_Next(meta, &pos, &name, &value)) {
        const char *n, *v;
        Py_ssize_t nl, vl, i;
        buf_t h = BUF_INIT;
        int rc;
        if (!PyUnicode_Check(name) || !PyUnicode_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "metadata must be a dict of str to str");
            return -1;
        }
        n = PyUnicode_AsUTF8AndSize(name, &nl);
        v = PyUnicode_AsUTF8AndSize(value, &vl);
        if (n == NULL || v == NULL)
            return -1;
        for (i = 0; i < nl; i++) {
            char ch = n[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '-' || ch == '_' || ch == '.')) {
                PyErr_Format(PyExc_ValueError, "metadata name %R is not a valid header name",
                             name);
                return -1;
            }
        }
        if (nl == 0) {
            PyErr_SetString(PyExc_ValueError, "metadata names may not be empty");
            return -1;
        }
        for (i = 0; i < vl; i++) {
            if ((unsigned char)v[i] > 0x7e) {
                PyErr_Format(PyExc_ValueError, "the value of metadata %R is not US-ASCII, the "
                             "only characters S3 accepts in metadata", name);
                return -1;
            }
        }
        total += (size_t)nl + (size_t)vl;
        if (total > CALL_MAX_METADATA) {
            PyErr_Format(PyExc_ValueError, "metadata names and values add up to more than "
                         "%d bytes, the most S3 accepts", CALL_MAX_METADATA);
            return -1;
        }
        if (buf_puts(&h, "x-amz-meta-") < 0 || buf_append(&h, n, (size_t)nl) < 0) {
            buf_free(&h);
            PyErr_NoMemory();
            return -1;
        }
        rc = call_add_header(k, h.data, v, (size_t)vl);
        buf_free(&h);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Maps the keyword arguments to headers; anything unknown is a TypeError. */
static int
add_object_headers(s3_call *k, PyObject *kw, const char *const *other_kw)
{
    Py_ssize_t pos = 0;
    PyObject *name, *value;

    if (kw == NULL)
        return 0;
    while (PyDict_Next(kw, &pos, &name, &value)) {
        const char *n = PyUnicode_AsUTF8(name);
        const kw_header *f;
        const char *const *o;
        int known = 0;
        if (n == NULL)
            return -1;
        for (o = other_kw; o && *o; o++)
            if (strcmp(n, *o) == 0)
                known = 1;
        if (known)
            continue;
        if (strcmp(n, "metadata") == 0) {
            if (value != Py_None && add_metadata(k, value) < 0)
                return -1;
            continue;
        }
        for (f = object_headers; f->kw; f++)
            if (strcmp(n, f->kw) == 0)
                break;
        if (f->kw == NULL) {
            PyErr_Format(PyExc_TypeError, "unexpected keyword argument '%s'", n);
            return -1;
        }
        if (value == Py_None)
            continue;
        if (!PyUnicode_Check(value)) {
            PyErr_Format(PyExc_TypeError, "%s must be str", n);
            return -1;
        }
        {
            Py_ssize_t vl;
            const char *v = PyUnicode_AsUTF8AndSize(value, &vl);
            if (v == NULL || call_add_header(k, f->header, v, (size_t)vl) < 0)
                return -1;
        }
    }
    return 0;
}

/* ---- methods ------------------------------------------------------------- */

static PyObject *
client_head_object(PyObject *self_, PyObject *key)
{
    Client *self = (Client *)self_;
    s3_call k;
    PyObject *res = NULL;

    if (check_ready(self) < 0)
        return NULL;
    call_init(&k, self, "HEAD");
    if (call_set_key(&k, key) < 0 || call_perform(&k) < 0)
        goto done;
    res = head_dict(&k.req);
done:
    call_free(&k);
    return res;
}

static PyObject *
client_get_object(PyObject *self_, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "start", "end", "decompress", "spool_max", "spool_dir",
                             NULL};
    Client *self = (Client *)self_;
    PyObject *key, *start = Py_None, *end = Py_None, *res = NULL, *body = NULL, *meta = NULL;
    const char *spool_dir = NULL;
    Py_ssize_t spool_max = 0;
    int decompress = 0;
    s3_call k;

    if (check_ready(self) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kw, "U|$OOpnz", kwlist, &key, &start, &end,
                                     &decompress, &spool_max, &spool_dir))
        return NULL;
    if (spool_max < 0) {
        PyErr_SetString(PyExc_ValueError, "spool_max must be >= 0 (0: keep the body in memory)");
        return NULL;
    }
    call_init(&k, self, "GET");
    k.sink_kind = SINK_BODY;
    k.decompress = decompress;
    k.spool_max = (size_t)spool_max;
    if (spool_dir && (k.spool_dir = dup_str(spool_dir)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (call_set_key(&k, key) < 0)
        goto done;
    if (start != Py_None || end != Py_None) {
        long long s = 0, e = -1;
        char range[64];
        if (start != Py_None && (s = PyLong_AsLongLong(start)) == -1 && PyErr_Occurred())
            goto done;
        if (end != Py_None && (e = PyLong_AsLongLong(end)) == -1 && PyErr_Occurred())
            goto done;
        if (s < 0 || (end != Py_None && e < s)) {
            PyErr_SetString(PyExc_ValueError, "a range needs 0 <= start <= end (end inclusive)");
            goto done;
        }
        if (end == Py_None)
            snprintf(range, sizeof(range), "bytes=%lld-", s);
        else
            snprintf(range, sizeof(range), "bytes=%lld-%lld", s, e);
        if (call_add_header(&k, "Range", range, strlen(range)) < 0)
            goto done;
    }
    if (call_perform(&k) < 0)
        goto done;
    if (k.spool_fd >= 0) {
        /* a file object that owns the descriptor from here on */
        PyObject *io;
        if (lseek(k.spool_fd, 0, SEEK_SET) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        io = PyImport_ImportModule("io");
        if (io == NULL)
            goto done;
        body = PyObject_CallMethod(io, "open", "is", k.spool_fd, "rb");
        Py_DECREF(io);
        if (body == NULL)
            goto done;
        k.spool_fd = -1;
    } else {
        body = PyBytes_FromStringAndSize(k.out.data ? k.out.data : "", (Py_ssize_t)k.out.len);
        if (body == NULL)
            goto done;
    }
    meta = head_dict(&k.req);
    if (meta && k.gz.active) {
        /* what the caller now holds is the decoded body */
        if (PyDict_DelItemString(meta, "ContentEncoding") < 0 ||
            dict_set_take(meta, "ContentLength", PyLong_FromSize_t(k.out_total)) < 0)
            goto done;
    }
    if (meta)
        res = PyTuple_Pack(2, body, meta);
done:
    Py_XDECREF(body);
    Py_XDECREF(meta);
    call_free(&k);
    return res;
}

static PyObject *
etag_result(s3_call *k)
{
    PyObject *d = PyDict_New();
    size_t len = 0;
    const char *etag;

    if (d == NULL)
        return NULL;
    if (k->have_reply && k->reply.etag[0]) {
        if (dict_set_take(d, "ETag", PyUnicode_FromString(k->reply.etag)) < 0 ||
            dict_set_take(d, "LastModified",
                          PyFloat_FromDouble(iso_epoch(k->reply.last_modified,
                                                       strlen(k->reply.last_modified)))) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    } else if ((etag = xfer_header(&k->req, "etag", &len)) != NULL) {
        if (dict_set_take(d, "ETag", str_n(etag, len)) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

static PyObject *
client_put_object(PyObject *self_, PyObject *args, PyObject *kw)
{
    Client *self = (Client *)self_;
    PyObject *key, *body, *res = NULL;
    s3_call k;

    if (check_ready(self) < 0 || !PyArg_ParseTuple(args, "UO:put_object", &key, &body))
        return NULL;
    call_init(&k, self, "PUT");
    if (call_set_key(&k, key) < 0 || add_object_headers(&k, kw, NULL) < 0)
        goto done;
    if (PyUnicode_Check(body)) {
        PyErr_SetString(PyExc_TypeError, "body must be bytes-like, not str");
        goto done;
    }
    if (PyObject_GetBuffer(body, &k.body, PyBUF_SIMPLE) < 0)
        goto done;
    k.has_body = 1;
    if (call_perform(&k) < 0)
        goto done;
    res = etag_result(&k);
done:
    call_free(&k);
    return res;
}

static PyObject *
client_copy_object(PyObject *self_, PyObject *args, PyObject *kw)
{
    static const char *const own[] = {"source_bucket", NULL};
    Client *self = (Client *)self_;
    PyObject *src, *dst, *res = NULL, *src_bucket = NULL;
    s3_call k;
    buf_t source = BUF_INIT;
    const char *s, *b;
    Py_ssize_t n;

    if (check_ready(self) < 0 || !PyArg_ParseTuple(args, "UU:copy_object", &src, &dst))
        return NULL;
    call_init(&k, self, "PUT");
    k.reply_on_success = 1;
    if (call_set_key(&k, dst) < 0 || add_object_headers(&k, kw, own) < 0)
        goto done;
    if (kw && (src_bucket = PyDict_GetItemString(kw, "source_bucket")) != NULL &&
        src_bucket != Py_None) {
        if (!PyUnicode_Check(src_bucket)) {
            PyErr_SetString(PyExc_TypeError, "source_bucket must be str");
            goto done;
        }
        b = PyUnicode_AsUTF8(src_bucket);
    } else {
        b = self->bucket;
    }
    s = b ? key_utf8(src, &n) : NULL;
    if (s == NULL)
        goto done;
    if (buf_putc(&source, '/') < 0 || buf_append_uri(&source, b, strlen(b), 0) < 0 ||
        buf_putc(&source, '/') < 0 || buf_append_uri(&source, s, (size_t)n, 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (call_add_header(&k, "x-amz-copy-source", source.data, source.len) < 0 ||
        call_perform(&k) < 0)
        goto done;
    res = etag_result(&k);
done:
    buf_free(&source);
    call_free(&k);
    return res;
}

static PyObject *
client_delete_object(PyObject *self_, PyObject *key)
{
    Client *self = (Client *)self_;
    s3_call k;
    PyObject *res = NULL;

    if (check_ready(self) < 0)
        return NULL;
    call_init(&k, self, "DELETE");
    if (call_set_key(&k, key) < 0 || call_perform(&k) < 0)
        goto done;
    res = Py_NewRef(Py_None);
done:
    call_free(&k);
    return res;
}

static int
add_query(buf_t *q, const char *name, PyObject *value)
{
    const char *v;
    Py_ssize_t n;

    if (value == NULL || value == Py_None)
        return 0;
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be str", name);
        return -1;
    }
    v = PyUnicode_AsUTF8AndSize(value, &n);
    if (v == NULL)
        return -1;
    if (buf_putc(q, q->len ? '&' : '?') < 0 || buf_append_uri(q, name, strlen(name), 0) < 0 ||
        buf_putc(q, '=') < 0 || buf_append_uri(q, v, (size_t)n, 0) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *
list_result(s3_call *k)
{
    xml_list *l = &k->list;
    const char *a = l->arena.data ? l->arena.data : "";
    PyObject *d = NULL, *contents = NULL, *prefixes = NULL;
    size_t i;

    contents = PyList_New((Py_ssize_t)l->nobjects);
    prefixes = PyList_New((Py_ssize_t)l->nprefixes);
    d = PyDict_New();
    if (contents == NULL || prefixes == NULL || d == NULL)
        goto fail;
    for (i = 0; i < l->nobjects; i++) {
        xml_object *o = &l->objects[i];
        PyObject *t = Py_BuildValue(
            "(NLNdN)", str_n(a + o->key.off, o->key.len), o->size,
            str_n(a + o->etag.off, o->etag.len),
            iso_epoch(a + o->last_modified.off, o->last_modified.len),
            str_n(a + o->storage_class.off, o->storage_class.len));
        if (t == NULL)
            goto fail;
        PyList_SET_ITEM(contents, (Py_ssize_t)i, t);
    }
    for (i = 0; i < l->nprefixes; i++) {
        PyObject *s = str_n(a + l->prefixes[i].off, l->prefixes[i].len);
        if (s == NULL)
            goto fail;
        PyList_SET_ITEM(prefixes, (Py_ssize_t)i, s);
    }
    if (PyDict_SetItemString(d, "Contents", contents) < 0 ||
        PyDict_SetItemString(d, "CommonPrefixes", prefixes) < 0 ||
        PyDict_SetItemString(d, "IsTruncated", l->is_truncated ? Py_True : Py_False) < 0)
        goto fail;
    if (l->has_next_token && l->is_truncated) {
        if (dict_set_take(d, "NextContinuationToken",
                          str_n(a + l->next_token.off, l->next_token.len)) < 0)
            goto fail;
    } else if (PyDict_SetItemString(d, "NextContinuationToken", Py_None) < 0) {
        goto fail;
    }
    Py_DECREF(contents);
    Py_DECREF(prefixes);
    return d;
fail:
    Py_XDECREF(contents);
    Py_XDECREF(prefixes);
    Py_XDECREF(d);
    return NULL;
}

static PyObject *
client_list_objects(PyObject *self_, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"prefix", "delimiter", "continuation_token", "start_after",
                             "max_keys", NULL};
    Client *self = (Client *)self_;
    PyObject *prefix = Py_None, *delimiter = Py_None, *token = Py_None, *after = Py_None;
    PyObject *res = NULL;
    int max_keys = 0;
    buf_t q = BUF_INIT;
    s3_call k;

    if (check_ready(self) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kw, "|O$OOOi", kwlist, &prefix, &delimiter, &token,
                                     &after, &max_keys))
        return NULL;
    call_init(&k, self, "GET");
    k.sink_kind = SINK_LIST;
    /* parameters in sorted order, so the wire query is already canonical */
    if (add_query(&q, "continuation-token", token) < 0 ||
        add_query(&q, "delimiter", delimiter) < 0)
        goto done;
    /* keys XML 1.0 cannot carry (control characters) come percent-encoded */
    if (buf_puts(&q, q.len ? "&encoding-type=url&list-type=2"
                           : "?encoding-type=url&list-type=2") < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (max_keys > 0 && buf_printf(&q, "&max-keys=%d", max_keys) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (add_query(&q, "prefix", prefix == Py_None ? NULL : prefix) < 0 ||
        add_query(&q, "start-after", after) < 0)
        goto done;
    if (client_check_fork(self) < 0)
        goto done;
    if (call_put_base(&k) < 0 || buf_append(&k.url, q.data, q.len) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (call_perform(&k) < 0)
        goto done;
    res = list_result(&k);
done:
    buf_free(&q);
    call_free(&k);
    return res;
}

static PyObject *
client_url(PyObject *self_, PyObject *key)
{
    Client *self = (Client *)self_;
    const char *s;
    Py_ssize_t n;
    buf_t u = BUF_INIT;
    PyObject *res = NULL;
    int rc;

    if (check_ready(self) < 0)
        return NULL;
    if ((s = key_utf8(key, &n)) == NULL)
        return NULL;
    if (self->public_base || !self->aws_endpoint) {
        /* neither changes after __init__: only AWS's own host follows the region */
        rc = buf_puts(&u, self->public_base ? self->public_base : self->base);
    } else {
        if (client_check_fork(self) < 0)
            return NULL;
        pthread_mutex_lock(&self->where_lock);
        rc = buf_puts(&u, self->base);
        pthread_mutex_unlock(&self->where_lock);
    }
    if (rc < 0 || buf_append_uri(&u, s, (size_t)n, 1) < 0)
        PyErr_NoMemory();
    else
        res = PyUnicode_FromStringAndSize(u.data, (Py_ssize_t)u.len);
    buf_free(&u);
    return res;
}

static PyObject *
client_presign(PyObject *self_, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"method", "key", "expires", "query", "timestamp", NULL};
    Client *self = (Client *)self_;
    const char *method, *s, *ts = NULL;
    PyObject *key, *query = Py_None, *res = NULL;
    long expires = 3600;
    Py_ssize_t n;
    buf_t u = BUF_INIT, out = BUF_INIT;
    sigv4_ctx ctx;
    cred_set *creds = NULL;
    char region[64];
    int rc;

    if (check_ready(self) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kw, "sU|$lOz", kwlist, &method, &key, &expires,
                                     &query, &ts))
        return NULL;
    if (expires < 1 || expires > 604800) {
        PyErr_SetString(PyExc_ValueError, "expires must be between 1 and 604800 seconds");
        return NULL;
    }
    if ((s = key_utf8(key, &n)) == NULL || client_check_fork(self) < 0)
        return NULL;
    /* the public URL, when there is one: its host is the one signed */
    pthread_mutex_lock(&self->where_lock);
    rc = buf_puts(&u, self->public_base ? self->public_base : self->base);
    strcpy(region, self->region);
    pthread_mutex_unlock(&self->where_lock);
    if (rc < 0 || buf_append_uri(&u, s, (size_t)n, 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (query != Py_None) {
        Py_ssize_t pos = 0;
        PyObject *qk, *qv;
        buf_t q = BUF_INIT;
        if (!PyDict_Check(query)) {
            PyErr_SetString(PyExc_TypeError, "query must be a dict of str to str");
            goto done;
        }
        while (PyDict_Next(query, &pos, &qk, &qv)) {
            const char *name = PyUnicode_Check(qk) ? PyUnicode_AsUTF8(qk) : NULL;
            if (name == NULL) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "query must be a dict of str to str");
                buf_free(&q);
                goto done;
            }
            if (add_query(&q, name, qv) < 0) {
                buf_free(&q);
                goto done;
            }
        }
        rc = buf_append(&u, q.data ? q.data : "", q.len);
        buf_free(&q);
        if (rc < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    if (self->cred.anonymous) {
        res = PyUnicode_FromStringAndSize(u.data, (Py_ssize_t)u.len);
        goto done;
    }
    /* credentials that outlive the URL, when fresher ones can be had */
    if (client_creds(self, expires, &creds) < 0)
        goto done;
    memset(&ctx, 0, sizeof(ctx));
    ctx.md = self->st->sha256;
    ctx.access_key = creds->access_key;
    ctx.secret_key = creds->secret_key;
    ctx.session_token = creds->session_token;
    ctx.region = region;
    ctx.service = "s3";
    ctx.cache = &creds->key_cache;
    ctx.cache_lock = &self->key_lock;
    if (ts) {
        if (sigv4_check_date(ts) < 0) {
            PyErr_SetString(PyExc_ValueError, "timestamp must look like YYYYMMDDTHHMMSSZ");
            goto done;
        }
        memcpy(ctx.amz_date, ts, SIGV4_DATE_LEN + 1);
    } else {
        sigv4_format_date(time(NULL), ctx.amz_date);
    }
    if (sigv4_presign(&ctx, method, u.data, expires, &out) < 0)
        PyErr_NoMemory();
    else
        res = PyUnicode_FromStringAndSize(out.data, (Py_ssize_t)out.len);
done:
    cred_release(&self->cred, creds);
    buf_free(&u);
    buf_free(&out);
    return res;
}

static PyObject *
client_get_connections(PyObject *self_, void *closure)
{
    Client *self = (Client *)self_;
    long n;

    (void)closure;
    if (check_ready(self) < 0)
        return NULL;
    pthread_mutex_lock(&self->pool.lock);
    n = self->pool.new_connections;
    pthread_mutex_unlock(&self->pool.lock);
    return PyLong_FromLong(n);
}

static PyObject *
client_get_str(PyObject *self_, void *closure)
{
    Client *self = (Client *)self_;
    const char *which = closure;
    char region[64], *endpoint = NULL;
    PyObject *res;

    if (check_ready(self) < 0)
        return NULL;
    if (strcmp(which, "bucket") == 0)
        return PyUnicode_FromString(self->bucket);
    if (strcmp(which, "user_agent") == 0)
        return PyUnicode_FromString(self->user_agent);
    if (strcmp(which, "region") == 0 || strcmp(which, "endpoint_url") == 0) {
        if (client_where(self, region, which[0] == 'e' ? &endpoint : NULL) < 0)
            return NULL;
        res = PyUnicode_FromString(endpoint ? endpoint : region);
        free(endpoint);
        return res;
    }
    return PyUnicode_FromString(self->virtual_host ? "virtual" : "path");
}

/* What a redirect does, without one: for the tests of the URLs that follow. */
static PyObject *
client_follow_region(PyObject *self_, PyObject *arg)
{
    Client *self = (Client *)self_;
    const char *r;
    Py_ssize_t n;
    int rc;

    if (check_ready(self) < 0)
        return NULL;
    if (!PyUnicode_Check(arg) || (r = PyUnicode_AsUTF8AndSize(arg, &n)) == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "region must be str");
        return NULL;
    }
    if (!region_hint_valid(r, (size_t)n) || strlen(r) != (size_t)n) {
        PyErr_SetString(PyExc_ValueError, "not a region name");
        return NULL;
    }
    if (client_check_fork(self) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = client_set_region(self, r);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *
client_backoff_delay(PyObject *cls, PyObject *args)
{
    int retry, throttled;
    double jitter, retry_after = -1.0;

    (void)cls;
    if (!PyArg_ParseTuple(args, "ipd|d:_backoff_delay", &retry, &throttled, &jitter,
                          &retry_after))
        return NULL;
    return PyFloat_FromDouble(xfer_backoff_delay(retry, throttled, jitter, retry_after));
}

static PyMethodDef client_methods[] = {
    {"head_object", client_head_object, METH_O,
     "head_object(key) -> dict in boto3's head_object shape (LastModified: epoch seconds)"},
    {"get_object", (PyCFunction)(void (*)(void))client_get_object, METH_VARARGS | METH_KEYWORDS,
     "get_object(key, *, start=None, end=None, decompress=False, spool_max=0, spool_dir=None)"
     " -> (body, dict)\n\nend is inclusive; decompress undoes Content-Encoding: gzip as the "
     "bytes arrive. body is bytes, or, when spool_max > 0 and the body is larger, a binary "
     "file object on an unlinked temporary file in spool_dir."},
    {"put_object", (PyCFunction)(void (*)(void))client_put_object, METH_VARARGS | METH_KEYWORDS,
     "put_object(key, body, *, content_type=None, content_encoding=None, cache_control=None, "
     "content_disposition=None, content_language=None, acl=None, storage_class=None, "
     "server_side_encryption=None, sse_kms_key_id=None, metadata=None) -> {'ETag': ...}"},
    {"copy_object", (PyCFunction)(void (*)(void))client_copy_object,
     METH_VARARGS | METH_KEYWORDS,
     "copy_object(source_key, key, *, metadata_directive=None, source_bucket=None, and the "
     "put_object headers) -> {'ETag': ..., 'LastModified': ...}"},
    {"delete_object", client_delete_object, METH_O, "delete_object(key) -> None"},
    {"list_objects", (PyCFunction)(void (*)(void))client_list_objects,
     METH_VARARGS | METH_KEYWORDS,
     "list_objects(prefix=None, *, delimiter=None, continuation_token=None, start_after=None, "
     "max_keys=0) -> dict\n\nOne ListObjectsV2 page: Contents is a list of (key, size, etag, "
     "last_modified epoch seconds, storage_class); CommonPrefixes a list of str; IsTruncated; "
     "NextContinuationToken."},
    {"url", client_url, METH_O, "url(key) -> the object's plain, unsigned URL"},
    {"presign", (PyCFunction)(void (*)(void))client_presign, METH_VARARGS | METH_KEYWORDS,
     "presign(method, key, *, expires=3600, query=None, timestamp=None) -> str"},
    {"_follow_region", client_follow_region, METH_O,
     "_follow_region(region): what a redirect to that region does (for the tests)"},
    {"_backoff_delay", client_backoff_delay, METH_VARARGS | METH_STATIC,
     "_backoff_delay(retry, throttled, jitter, retry_after=-1.0) -> seconds (for the tests)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef client_getset[] = {
    {"connections_opened", client_get_connections, NULL,
     "TCP connections this client has opened so far", NULL},
    {"bucket", client_get_str, NULL, NULL, "bucket"},
    {"region", client_get_str, NULL, NULL, "region"},
    {"endpoint_url", client_get_str, NULL, NULL, "endpoint_url"},
    {"user_agent", client_get_str, NULL, "the User-Agent header sent", "user_agent"},
    {"addressing_style", client_get_str, NULL, "'path' or 'virtual', as resolved",
     "addressing_style"},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot client_slots[] = {
    {Py_tp_doc, "Client(bucket, *, endpoint_url=None, region=None, access_key=None, "
                "secret_key=None, session_token=None, addressing_style='auto', "
                "connect_timeout=60.0, read_timeout=60.0, max_connections=10, max_attempts=3, "
                "verify=True, ca_bundle=None, profile=None, anonymous=False, proxy=None, "
                "user_agent=None, public_endpoint_url=None)\n\nAn S3 client for one bucket: "
                "thread-safe, with a pool of keep-alive connections; every request releases "
                "the GIL. Without access_key the credentials come from the environment, the "
                "shared files, web identity, the container or the instance metadata, on the "
                "first request; anonymous=True sends unsigned requests. region=None: "
                "AWS_REGION, AWS_DEFAULT_REGION, the profile's, or us-east-1; region='' starts "
                "at us-east-1 and follows S3's redirects; the client keeps the region a "
                "redirect names."},
    {Py_tp_new, client_new},
    {Py_tp_init, client_init},
    {Py_tp_dealloc, client_dealloc},
    {Py_tp_repr, client_repr},
    {Py_tp_methods, client_methods},
    {Py_tp_getset, client_getset},
    {0, NULL},
};

PyType_Spec s3_client_spec = {
    .name = "django_s3_storage._s3.Client",
    .basicsize = sizeof(Client),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = client_slots,
};
