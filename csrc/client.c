/* Client: one per storage. Its configuration, and the thin Python entry points
 * of each S3 operation: arguments in, one call of the request layer, results out.
 *
 * Inputs are copied into C memory (or held as Py_buffer views) before the GIL is
 * released; results are built into Python objects after it is taken back. */
#include "client.h"

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
#include "reader.h"
#include "request.h"
#include "sigv4.h"
#include "url.h"
#include "writer.h"


/* ---- construction -------------------------------------------------------- */

#define CLIENT_BUCKET_MAX 255     /* bytes of a bucket name */
#define CLIENT_ENDPOINT_MAX 2048  /* bytes of an endpoint URL: it makes every URL and Host */

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
int
client_region_valid(const char *r, size_t n)
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

    if (strlen(p) > CLIENT_ENDPOINT_MAX)
        return 0;
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

/* The first of `names` set in the environment, with libcurl's precedence, and
 * its name; "" when none is. Read with the GIL (os.environ writes hold it). */
static const char *
env_first(const char *const *names, const char **which)
{
    const char *v;

    for (*which = names[0]; *names; names++)
        if ((v = getenv(*names)) != NULL) {
            *which = *names;
            return v;
        }
    return "";
}

/* Without a proxy setting, the environment's proxy for the endpoint's scheme and
 * NO_PROXY, as libcurl would read them (http_proxy in lower case only), copied
 * once: a value with control characters or over 2048 characters is a ValueError
 * naming the variable, not its value (it may hold a password). -1: set. */
static int
client_env_proxy(Client *self)
{
    const char *names[2], *vals[2];
    char **out[2] = {&self->env_proxy, &self->env_noproxy};
    size_t i, j;

    vals[0] = env_first(self->https ? cred_https_proxy_vars : cred_http_proxy_vars, &names[0]);
    vals[1] = env_first(cred_no_proxy_vars, &names[1]);
    for (i = 0; i < 2; i++) {
        for (j = 0; vals[i][j]; j++)
            if ((unsigned char)vals[i][j] < 0x20 || vals[i][j] == 0x7f)
                break;
        if (vals[i][j] || j > CLIENT_ENDPOINT_MAX) {
            PyErr_Format(PyExc_ValueError, "%s in the environment must be at most %d "
                         "characters without control characters", names[i],
                         CLIENT_ENDPOINT_MAX);
            return -1;
        }
        if ((*out[i] = dup_str(vals[i])) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
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
    free(self->system_ca);
    free(self->proxy);
    free(self->env_proxy);
    free(self->env_noproxy);
    free(self->user_agent);
    free(self->url_prefix);
    free(self->url_public);
    self->url_prefix = self->url_public = NULL;
    self->url_mode = 0;
    self->endpoint = self->bucket = self->region = self->base = self->ca_bundle = NULL;
    self->public_base = self->proxy = self->user_agent = self->system_ca = NULL;
    self->env_proxy = self->env_noproxy = NULL;
}

static int
client_init(PyObject *self_, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"bucket", "endpoint_url", "region", "access_key", "secret_key",
                             "session_token", "addressing_style", "connect_timeout",
                             "read_timeout", "max_connections", "max_attempts", "verify",
                             "ca_bundle", "profile", "anonymous", "proxy", "user_agent",
                             "public_endpoint_url", "system_ca_bundle", NULL};
    Client *self = (Client *)self_;
    const char *bucket, *endpoint = NULL, *region = NULL, *access = NULL,
                        *secret = NULL, *token = NULL, *style = "auto", *ca = NULL,
                        *profile = NULL, *proxy = NULL, *agent = NULL,
                        *public_endpoint = NULL, *system_ca = NULL;
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
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$zzzzzsddiipzzpzzzz", kwlist, &bucket,
                                     &endpoint, &region, &access, &secret, &token, &style,
                                     &connect_timeout, &read_timeout, &max_connections,
                                     &max_attempts, &verify, &ca, &profile, &anonymous, &proxy,
                                     &agent, &public_endpoint, &system_ca))
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
    /* 255: S3's oldest (us-east-1) bucket names; today's stop at 63. The name goes
     * into the path or the Host header of every request. */
    if (bucket[0] == '\0' || strlen(bucket) > CLIENT_BUCKET_MAX || strchr(bucket, '/') ||
        !printable_token(bucket)) {
        PyErr_SetString(PyExc_ValueError, "bucket must be a bucket name of 1 to 255 "
                        "characters, without '/', spaces or control characters");
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
                        "proxy must be http(s)://host:port of at most 2048 characters "
                        "(credentials as http://user:password@host:port)");
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
        if (strlen(endpoint) > CLIENT_ENDPOINT_MAX || !printable_token(endpoint) ||
            endpoint_copy(&b, endpoint) < 0) {
            /* not echoed: it may hold user:password@ */
            PyErr_SetString(PyExc_ValueError,
                            "endpoint_url must be http(s)://host[:port] of at most 2048 "
                            "characters, without credentials, a query, spaces or control "
                            "characters");
            return -1;
        }
    } else if (buf_printf(&b, "https://s3.%s.amazonaws.com", region) < 0) {
        goto done;
    }
    if (public_endpoint && public_endpoint[0] &&
        (strlen(public_endpoint) > CLIENT_ENDPOINT_MAX ||
         endpoint_copy(&pub, public_endpoint) < 0)) {
        PyErr_SetString(PyExc_ValueError,
                        "public_endpoint_url must be http(s)://host[:port] of at most 2048 "
                        "characters, without credentials or a query");
        goto done;
    }
    if (agent == NULL && buf_printf(&ua, "django-s3-storage libcurl/%s",
                                    curl_version_info(CURLVERSION_NOW)->version) < 0)
        goto done;
    self->endpoint = dup_str(b.data);
    self->bucket = dup_str(bucket);
    self->region = dup_str(region);
    self->ca_bundle = dup_str(ca);
    self->system_ca = dup_str(system_ca);
    self->proxy = dup_str(proxy);
    self->user_agent = dup_str(agent ? agent : ua.data);
    if (!self->endpoint || !self->bucket || !self->region || (ca && !self->ca_bundle) ||
        (system_ca && !self->system_ca) ||
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
    self->opts.ca_bundle = self->ca_bundle ? self->ca_bundle : self->system_ca;
    self->opts.proxy = self->proxy;
    if (!self->proxy && client_env_proxy(self) < 0)
        goto done;
    self->opts.env_proxy = self->env_proxy;
    self->opts.env_noproxy = self->env_noproxy;
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
    cfg.system_ca = self->system_ca;
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
    req_log_init(&self->log);
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
    req_log_destroy(&self->log);
    tp->tp_free(self_);
    Py_DECREF(tp);
}


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

int
client_ready(Client *self)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Client.__init__ was not called");
        return -1;
    }
    return 0;
}


/* Keeps `region` as the bucket's: the signing region, and on AWS's own endpoint
 * the host too. Pure C, for any thread; -1: out of memory, nothing changed. */
int
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

/* With the GIL, so that after a fork exactly one thread renews what the child
 * inherited: the pool, and the key lock (which another thread may have held). */
int
client_check_fork(Client *c)
{
    switch (xfer_pool_check_fork(&c->pool)) {
    case 1:
        pthread_mutex_init(&c->key_lock, NULL);
        cred_after_fork(&c->cred);
        pthread_mutex_init(&c->where_lock, NULL);
        req_log_after_fork(&c->log);
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
int
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
/* ---- methods ------------------------------------------------------------- */

/* A HEAD of the key into k (initialised here, freed by the caller): 0, or -1
 * with the exception set. */
static int
head_run(Client *self, PyObject *key, s3_call *k)
{
    call_init(k, self, "HEAD");
    if (call_set_key(k, key) < 0)
        return -1;
    return call_perform(k);
}

static PyObject *
client_head_object(PyObject *self_, PyObject *key)
{
    Client *self = (Client *)self_;
    s3_call k;
    PyObject *res = NULL;

    if (client_ready(self) < 0)
        return NULL;
    if (head_run(self, key, &k) == 0)
        res = call_head_dict(&k.req.head);
    call_free(&k);
    return res;
}

/* exists(key): a HEAD of the key, True or False, no dict built: what the
 * storage's exists() asks. A 404 (the key, or the bucket, is missing) is False;
 * any other failure raises, as head_object() does. */
static PyObject *
client_exists(PyObject *self_, PyObject *key)
{
    Client *self = (Client *)self_;
    s3_call k;
    PyObject *res = NULL;

    if (client_ready(self) < 0)
        return NULL;
    if (head_run(self, key, &k) == 0) {
        res = Py_NewRef(Py_True);
    } else if (k.req.status == 404 && PyErr_ExceptionMatches(self->st->S3NotFoundError)) {
        PyErr_Clear();
        res = Py_NewRef(Py_False);
    }
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

    if (client_ready(self) < 0 ||
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
    if (spool_dir == NULL && spool_max > 0)
        spool_dir = getenv("TMPDIR");   /* read here, with the GIL (os.environ writes hold it) */
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
    meta = call_head_dict(&k.req.head);
    if (meta && k.gz.active) {
        /* what the caller now holds is the decoded body */
        if (PyDict_DelItemString(meta, "ContentEncoding") < 0 ||
            call_dict_set_take(meta, "ContentLength", PyLong_FromSize_t(k.out_total)) < 0)
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
client_reader(PyObject *self_, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"key", "decompress", "buffer_size", "verify", NULL};
    Client *self = (Client *)self_;
    PyObject *key;
    Py_ssize_t buffer_size = READER_DEFAULT_BUFFER;
    int decompress = 1, verify = 1;

    if (client_ready(self) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kw, "U|$pnp:reader", kwlist, &key, &decompress,
                                     &buffer_size, &verify))
        return NULL;
    return reader_open(self, key, decompress, buffer_size, verify);
}

static PyObject *
client_put_object(PyObject *self_, PyObject *args, PyObject *kw)
{
    Client *self = (Client *)self_;
    PyObject *key, *body, *res = NULL;
    s3_call k;

    if (client_ready(self) < 0 || !PyArg_ParseTuple(args, "UO:put_object", &key, &body))
        return NULL;
    call_init(&k, self, "PUT");
    if (call_set_key(&k, key) < 0 || call_add_object_headers(&k, kw, NULL) < 0)
        goto done;
    if (PyUnicode_Check(body)) {
        PyErr_SetString(PyExc_TypeError, "body must be bytes-like, not str");
        goto done;
    }
    if (PyObject_GetBuffer(body, &k.view, PyBUF_SIMPLE) < 0)
        goto done;
    k.has_view = 1;
    call_set_body(&k, k.view.buf, (size_t)k.view.len);
    if (call_perform(&k) < 0)
        goto done;
    res = call_etag_result(&k);
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

    if (client_ready(self) < 0 || !PyArg_ParseTuple(args, "UU:copy_object", &src, &dst))
        return NULL;
    call_init(&k, self, "PUT");
    k.reply_on_success = 1;
    if (call_set_key(&k, dst) < 0 || call_add_object_headers(&k, kw, own) < 0)
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
    s = b ? call_key_utf8(src, &n) : NULL;
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
    res = call_etag_result(&k);
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

    if (client_ready(self) < 0)
        return NULL;
    call_init(&k, self, "DELETE");
    if (call_set_key(&k, key) < 0 || call_perform(&k) < 0)
        goto done;
    res = Py_NewRef(Py_None);
done:
    call_free(&k);
    return res;
}

static PyObject *
client_writer(PyObject *self_, PyObject *args, PyObject *kw)
{
    return writer_new((Client *)self_, args, kw);
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

/* A listed key or common prefix as a name relative to the listing's prefix
 * (`base`, nbase bytes), as listdir() shows it: a common prefix without its
 * trailing '/'s. NULL with *outside set for one that does not start with the
 * prefix: a server's reply that cannot be right. */
static PyObject *
list_relative(const char *p, size_t n, const char *base, size_t nbase, int strip, int *outside)
{
    if (n < nbase || (nbase && memcmp(p, base, nbase) != 0)) {
        *outside = 1;
        return NULL;
    }
    p += nbase;
    n -= nbase;
    while (strip && n && p[n - 1] == '/')
        n--;
    return call_str_n(p, n);
}

/* The listing's page as a dict. With `base` (relative=True): Contents and
 * CommonPrefixes are names relative to the prefix (the prefix's own key left
 * out), and nothing else of an object is built: what listdir() needs. */
static PyObject *
list_result(s3_call *k, const char *base, size_t nbase)
{
    xml_list *l = &k->list;
    const char *a = l->arena.data ? l->arena.data : "";
    PyObject *d = NULL, *contents = NULL, *prefixes = NULL;
    size_t i, n = 0;
    int outside = 0;

    contents = PyList_New((Py_ssize_t)l->nobjects);
    prefixes = PyList_New((Py_ssize_t)l->nprefixes);
    d = PyDict_New();
    if (contents == NULL || prefixes == NULL || d == NULL)
        goto fail;
    for (i = 0; i < l->nobjects; i++) {
        xml_object *o = &l->objects[i];
        PyObject *t;

        if (base != NULL && o->key.len == nbase && memcmp(a + o->key.off, base, nbase) == 0)
            continue;   /* the "directory" object itself */
        if (base != NULL)
            t = list_relative(a + o->key.off, o->key.len, base, nbase, 0, &outside);
        else
            t = Py_BuildValue(
                "(NLNdN)", call_str_n(a + o->key.off, o->key.len), o->size,
                call_str_n(a + o->etag.off, o->etag.len),
                xml_iso_epoch(a + o->last_modified.off, o->last_modified.len),
                call_str_n(a + o->storage_class.off, o->storage_class.len));
        if (t == NULL)
            goto fail;
        PyList_SET_ITEM(contents, (Py_ssize_t)n, t);
        n++;
    }
    if (n < l->nobjects && PyList_SetSlice(contents, (Py_ssize_t)n, PY_SSIZE_T_MAX, NULL) < 0)
        goto fail;
    for (i = 0; i < l->nprefixes; i++) {
        PyObject *s = base != NULL
            ? list_relative(a + l->prefixes[i].off, l->prefixes[i].len, base, nbase, 1, &outside)
            : call_str_n(a + l->prefixes[i].off, l->prefixes[i].len);
        if (s == NULL)
            goto fail;
        PyList_SET_ITEM(prefixes, (Py_ssize_t)i, s);
    }
    if (PyDict_SetItemString(d, "Contents", contents) < 0 ||
        PyDict_SetItemString(d, "CommonPrefixes", prefixes) < 0 ||
        PyDict_SetItemString(d, "IsTruncated", l->is_truncated ? Py_True : Py_False) < 0)
        goto fail;
    if (l->has_next_token && l->is_truncated) {
        if (call_dict_set_take(d, "NextContinuationToken",
                          call_str_n(a + l->next_token.off, l->next_token.len)) < 0)
            goto fail;
    } else if (PyDict_SetItemString(d, "NextContinuationToken", Py_None) < 0) {
        goto fail;
    }
    Py_DECREF(contents);
    Py_DECREF(prefixes);
    return d;
fail:
    if (outside)
        s3_raise(k->client->st, (int)k->req.status, "InvalidReply",
                 "the listing gave a key outside the prefix it was asked for", NULL,
                 k->client->bucket, NULL);
    Py_XDECREF(contents);
    Py_XDECREF(prefixes);
    Py_XDECREF(d);
    return NULL;
}

static PyObject *
client_list_objects(PyObject *self_, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"prefix", "delimiter", "continuation_token", "start_after",
                             "max_keys", "relative", NULL};
    Client *self = (Client *)self_;
    PyObject *prefix = Py_None, *delimiter = Py_None, *token = Py_None, *after = Py_None;
    PyObject *res = NULL;
    int max_keys = 0, relative = 0;
    const char *base = NULL;
    Py_ssize_t nbase = 0;
    buf_t q = BUF_INIT;
    s3_call k;

    if (client_ready(self) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kw, "|O$OOOip", kwlist, &prefix, &delimiter, &token,
                                     &after, &max_keys, &relative))
        return NULL;
    if (relative) {
        base = "";
        if (prefix != Py_None && (!PyUnicode_Check(prefix) ||
                                  (base = PyUnicode_AsUTF8AndSize(prefix, &nbase)) == NULL)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "prefix must be a str or None");
            return NULL;
        }
    }
    call_init(&k, self, "GET");
    k.sink_kind = SINK_LIST;
    k.list_keys_only = relative;
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
    if (k.list.is_truncated && (!k.list.has_next_token || k.list.next_token.len == 0)) {
        /* a caller that stopped here would take a part of the listing for all of it */
        s3_raise(self->st, (int)k.req.status, "InvalidReply",
                 "the listing says IsTruncated but gives no NextContinuationToken",
                 NULL, self->bucket, NULL);
        goto done;
    }
    res = list_result(&k, base, (size_t)nbase);
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

    if (client_ready(self) < 0)
        return NULL;
    if ((s = call_key_utf8(key, &n)) == NULL)
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

/* The presigned form of `url` (NUL-terminated, its query included), signed for
 * `region` now or at `ts`. With the GIL. */
PyObject *
client_sign_url(Client *self, const char *method, const char *url, size_t len, long expires,
         const char *ts, const char *region)
{
    PyObject *res = NULL;
    buf_t out = BUF_INIT;
    sigv4_ctx ctx;
    cred_set *creds = NULL;

    if (self->cred.anonymous)
        return PyUnicode_FromStringAndSize(url, (Py_ssize_t)len);
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
    if (sigv4_presign(&ctx, method, url, expires, &out) < 0)
        PyErr_NoMemory();
    else
        res = PyUnicode_FromStringAndSize(out.data, (Py_ssize_t)out.len);
done:
    cred_release(&self->cred, creds);
    buf_free(&out);
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
    buf_t u = BUF_INIT;
    char region[64];
    int rc;

    if (client_ready(self) < 0 ||
        !PyArg_ParseTupleAndKeywords(args, kw, "sU|$lOz", kwlist, &method, &key, &expires,
                                     &query, &ts))
        return NULL;
    if (expires < 1 || expires > 604800) {
        PyErr_SetString(PyExc_ValueError, "expires must be between 1 and 604800 seconds");
        return NULL;
    }
    if ((s = call_key_utf8(key, &n)) == NULL || client_check_fork(self) < 0)
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
    res = client_sign_url(self, method, u.data, u.len, expires, ts, region);
done:
    buf_free(&u);
    return res;
}

/* set_log(fn or None): each attempt of each request goes to fn(method, key,
 * status, attempt, again, ms, bytes, code, dropped) with the GIL */
static PyObject *
client_set_log(PyObject *self_, PyObject *fn)
{
    Client *self = (Client *)self_;

    if (req_log_set(&self->log, fn) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
client_get_log_enabled(PyObject *self_, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((Client *)self_)->log.on);
}

static PyObject *
client_get_connections(PyObject *self_, void *closure)
{
    Client *self = (Client *)self_;
    long n;

    (void)closure;
    if (client_ready(self) < 0)
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

    if (client_ready(self) < 0)
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

    if (client_ready(self) < 0)
        return NULL;
    if (!PyUnicode_Check(arg) || (r = PyUnicode_AsUTF8AndSize(arg, &n)) == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "region must be str");
        return NULL;
    }
    if (!client_region_valid(r, (size_t)n) || strlen(r) != (size_t)n) {
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
    {"exists", client_exists, METH_O,
     "exists(key) -> bool: a HEAD; False for 404, other failures raise"},
    {"head_object", client_head_object, METH_O,
     "head_object(key) -> dict in boto3's head_object shape (LastModified: epoch seconds)"},
    {"get_object", (PyCFunction)(void (*)(void))client_get_object, METH_VARARGS | METH_KEYWORDS,
     "get_object(key, *, start=None, end=None, decompress=False, spool_max=0, spool_dir=None)"
     " -> (body, dict)\n\nend is inclusive; decompress undoes Content-Encoding: gzip as the "
     "bytes arrive. body is bytes, or, when spool_max > 0 and the body is larger, a binary "
     "file object on an unlinked temporary file in spool_dir."},
    {"reader", (PyCFunction)(void (*)(void))client_reader, METH_VARARGS | METH_KEYWORDS,
     "reader(key, *, decompress=True, buffer_size=1048576, verify=True) -> Reader\n\nA raw "
     "binary stream over the object: its first GET is sent at once (a missing key raises "
     "S3NotFoundError here) and paused once buffer_size bytes wait to be read; gzip-stored "
     "objects are inflated as they stream unless decompress=False; a plain MD5 ETag is "
     "checked when the object is read to its end unless verify=False."},
    {"put_object", (PyCFunction)(void (*)(void))client_put_object, METH_VARARGS | METH_KEYWORDS,
     "put_object(key, body, *, content_type=None, content_encoding=None, cache_control=None, "
     "content_disposition=None, content_language=None, acl=None, storage_class=None, "
     "server_side_encryption=None, sse_kms_key_id=None, metadata=None) -> {'ETag': ...}"},
    {"copy_object", (PyCFunction)(void (*)(void))client_copy_object,
     METH_VARARGS | METH_KEYWORDS,
     "copy_object(source_key, key, *, metadata_directive=None, source_bucket=None, and the "
     "put_object headers) -> {'ETag': ..., 'LastModified': ...}"},
    {"delete_object", client_delete_object, METH_O, "delete_object(key) -> None"},
    {"writer", (PyCFunction)(void (*)(void))client_writer, METH_VARARGS | METH_KEYWORDS,
     "writer(key, *, part_size=8 MiB, threshold=8 MiB, max_inflight=0, size_hint=-1, "
     "if_none_match=False, and the put_object headers) -> Writer\n\nA single PutObject on "
     "close() while the bytes stay within threshold, else a multipart upload of part_size "
     "parts (grown to fit size_hint in 10,000 parts) with up to max_inflight (0: the pool's "
     "size) in flight. if_none_match=True commits only if the key is free (If-None-Match: * "
     "on the PutObject or the CompleteMultipartUpload): else S3Error PreconditionFailed."},
    {"list_objects", (PyCFunction)(void (*)(void))client_list_objects,
     METH_VARARGS | METH_KEYWORDS,
     "list_objects(prefix=None, *, delimiter=None, continuation_token=None, start_after=None, "
     "max_keys=0, relative=False) -> dict\n\nOne ListObjectsV2 page: Contents is a list of "
     "(key, size, etag, last_modified epoch seconds, storage_class); CommonPrefixes a list of "
     "str; IsTruncated; NextContinuationToken. relative=True: Contents and CommonPrefixes are "
     "the names after the prefix (a common prefix without its trailing '/'s, the prefix's own "
     "key left out), nothing else built; a key outside the prefix is an InvalidReply."},
    {"url", client_url, METH_O, "url(key) -> the object's plain, unsigned URL"},
    {"set_log", client_set_log, METH_O,
     "set_log(fn or None): fn(method, key, status, attempt, again, ms, bytes, code, dropped) "
     "for each attempt of each request, called with the GIL after the operation"},
    {"url_setup", url_setup, METH_VARARGS,
     "url_setup(mode, prefix, public_base, expires): the form storage_url() builds"},
    {"storage_url", (PyCFunction)(void (*)(void))url_storage, METH_FASTCALL,
     "storage_url(name, extra_params, client_method) -> str, or None: the storage's path"},
    {"presign", (PyCFunction)(void (*)(void))client_presign, METH_VARARGS | METH_KEYWORDS,
     "presign(method, key, *, expires=3600, query=None, timestamp=None) -> str"},
    {"_follow_region", client_follow_region, METH_O,
     "_follow_region(region): what a redirect to that region does (for the tests)"},
    {"_backoff_delay", client_backoff_delay, METH_VARARGS | METH_STATIC,
     "_backoff_delay(retry, throttled, jitter, retry_after=-1.0) -> seconds (for the tests)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef client_getset[] = {
    {"log_enabled", client_get_log_enabled, NULL, "whether set_log() gave a function", NULL},
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
                "verify=True, ca_bundle=None, system_ca_bundle=None, profile=None, anonymous=False, proxy=None, "
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
