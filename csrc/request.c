/* request: one S3 call, built, signed, sent and retried. See request.h. */
#include "request.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sigv4.h"


void
call_init(s3_call *k, Client *c, const char *method)
{
    memset(k, 0, sizeof(*k));
    k->client = c;
    k->method = method;
    k->spool_fd = -1;
}

void
call_free(s3_call *k)
{
    int i;

    for (i = 0; i < k->nh; i++) {
        free(k->hname[i]);
        free(k->hvalue[i]);
    }
    free(k->key);
    buf_free(&k->url);
    if (k->has_view)
        PyBuffer_Release(&k->view);
    curl_slist_free_all(k->attempt_headers);
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

int
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
    k->hname[k->nh] = strdup(name);
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
int
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
    if (h == NULL || !client_region_valid(h, len) ||
        (strlen(k->region) == len && memcmp(k->region, h, len) == 0))
        return 0;
    memcpy(out, h, len);
    out[len] = '\0';
    return 1;
}

/* The UTF-8 of an object key: 1 to 1024 bytes, no NUL. An empty key would make
 * a bucket request of an object one (a presigned GET of it lists the bucket). */
const char *
call_key_utf8(PyObject *key, Py_ssize_t *n)
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

int
call_set_key(s3_call *k, PyObject *key)
{
    const char *s;
    Py_ssize_t n;

    s = call_key_utf8(key, &n);
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

    k->out_total += n;
    if (k->out_total > CALL_MAX_LIST_REPLY) {
        k->sink_error = "the listing page is over 8 MiB";
        return -1;
    }
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

    if (dir == NULL || dir[0] == '\0')   /* $TMPDIR, read by the caller with the GIL */
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
        if (xml_list_init(&k->list, k->list_keys_only) < 0)
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
    const char *sig;
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
        sig = strstr(auth.data, "Signature=");
        if (sig)
            snprintf(k->signature, sizeof(k->signature), "%s", sig + 10);
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

void
call_set_body(s3_call *k, const char *p, size_t n)
{
    k->body = p ? p : "";
    k->body_len = n;
    k->has_body = 1;
}

/* Content-MD5 on every body (every S3-compatible server checks it), signed with
 * the other headers. The payload itself goes as UNSIGNED-PAYLOAD: the signed MD5
 * covers it over plain HTTP as well, at a third of the cost of a SHA-256. */
int
call_prepare_body(s3_call *k)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int i;

    if (!k->has_body) {
        strcpy(k->payload_hash, SIGV4_EMPTY_SHA256);
        return 0;
    }
    strcpy(k->payload_hash, SIGV4_UNSIGNED);
    for (i = 0; i < k->nh; i++)
        if (strcasecmp(k->hname[i], "Content-MD5") == 0)
            return 0;
    if (k->nh >= CALL_MAX_HEADERS ||
        EVP_Digest(k->body, k->body_len, md, &mdlen, k->client->st->md5, NULL) != 1 ||
        EVP_EncodeBlock((unsigned char *)k->content_md5, md, (int)mdlen) != 24 ||
        (k->hname[k->nh] = strdup("Content-MD5")) == NULL)
        goto fail;
    if ((k->hvalue[k->nh] = strdup(k->content_md5)) == NULL) {
        free(k->hname[k->nh]);
        goto fail;
    }
    k->nh++;
    return 0;
fail:
    k->local_error = "cannot hash the request body";
    return -1;
}

int
call_attempt_begin(s3_call *k)
{
    if (k->client->log.on)
        k->t0 = xfer_now();
    k->have_reply = 0;
    k->transport_failed = 0;
    k->req.method = k->method;
    if (k->has_body) {
        k->req.body = k->body;
        k->req.body_len = k->body_len;
    }
    curl_slist_free_all(k->attempt_headers);
    k->attempt_headers = NULL;
    if (sink_reset(k) < 0 || call_refresh_where(k) < 0 ||
        (k->attempt_headers = build_headers(k, k->payload_hash)) == NULL) {
        k->local_error = "out of memory";
        return -1;
    }
    k->req.headers = k->attempt_headers;
    return 0;
}

static int attempt_next(s3_call *k, int rc, int *attempt, double *delay);
static void call_log_code(const s3_call *k, char *out, size_t size);

/* How the attempt that just ended goes on; the request log records it. */
int
call_attempt_end(s3_call *k, int rc, int *attempt, double *delay)
{
    int was = *attempt, next = attempt_next(k, rc, attempt, delay);
    req_log_entry e;

    if (!k->client->log.on)
        return next;
    memset(&e, 0, sizeof(e));
    snprintf(e.method, sizeof(e.method), "%s", k->method);
    e.key = k->key ? strdup(k->key) : NULL;
    e.status = rc < 0 ? 0 : k->req.status;
    e.attempt = was;
    e.again = next != CALL_DONE;
    e.ms = (xfer_now() - k->t0) * 1000.0;
    /* the body sent, or received: in memory or spooled (a Reader's: as counted) */
    if (k->has_body)
        e.bytes = k->body_len;
    else if (k->out_total > 0 || k->req.body_out.len > 0)
        e.bytes = k->out_total > 0 ? k->out_total : k->req.body_out.len;
    else if (k->req.moved > 0)
        e.bytes = (unsigned long long)k->req.moved;
    if (rc < 0)
        snprintf(e.code, sizeof(e.code), "curl %d", (int)k->req.curl_rc);
    else
        call_log_code(k, e.code, sizeof(e.code));
    req_log_add(&k->client->log, &e);
    return next;
}

static int
attempt_next(s3_call *k, int rc, int *attempt, double *delay)
{
    Client *c = k->client;
    char hint[64];

    k->req.headers = NULL;
    curl_slist_free_all(k->attempt_headers);
    k->attempt_headers = NULL;
    *delay = 0.0;
    if (rc < 0) {
        if (k->req.sink_failed) {
            /* the reply itself was bad: k->sink_error says how */
            if (k->sink_error == NULL)
                k->sink_error = "the reply's body is too long for an S3 reply";
            return CALL_DONE;
        }
        k->transport_failed = 1;
        if (*attempt < c->max_attempts && xfer_retryable(&k->req, 1, NULL)) {
            *delay = xfer_backoff_seconds(&k->req, *attempt, 1, NULL);
            (*attempt)++;
            return CALL_AGAIN;
        }
        return CALL_DONE;
    }
    if (k->req.status >= 200 && k->req.status < 300) {
        if (sink_finish(k) < 0)
            return CALL_DONE;
        /* a copy answered with no document (some S3 servers): its ETag is a header */
        if (!k->reply_on_success ||
            strspn(k->req.body_out.data ? k->req.body_out.data : "", " \t\r\n") ==
                k->req.body_out.len) {
            k->ok = 1;
            return CALL_DONE;
        }
        if (xml_parse_reply(k->req.body_out.data ? k->req.body_out.data : "",
                            k->req.body_out.len, &k->reply, &k->sink_error) < 0)
            return CALL_DONE;
        k->have_reply = 1;
        if (strcmp(k->reply.root, "Error") != 0) {
            k->ok = 1;
            return CALL_DONE;
        }
    } else if (k->req.body_out.len > 0) {
        const char *ignored;
        k->have_reply = xml_parse_reply(k->req.body_out.data, k->req.body_out.len,
                                        &k->reply, &ignored) == 0;
    }
    if (k->have_reply && !k->creds_retried && creds_refused(k->creds, k->reply.code) &&
        cred_invalidate(&k->client->cred, k->creds)) {
        k->creds_refused = 1;   /* renewed credentials, then the call runs again */
        return CALL_RENEW;
    }
    if (!k->redirected && k->req.status >= 300 && call_region_hint(k, hint)) {
        /* the bucket lives in another region: once more, there; the client
         * keeps that region. A redirect is not a failed attempt. */
        k->redirected = 1;
        if (client_set_region(c, hint) < 0) {
            k->local_error = "out of memory";
            return CALL_DONE;
        }
        return CALL_AGAIN;
    }
    if (*attempt < c->max_attempts &&
        xfer_retryable(&k->req, 0, k->have_reply ? k->reply.code : NULL)) {
        *delay = xfer_backoff_seconds(&k->req, *attempt, 0, k->have_reply ? k->reply.code : NULL);
        (*attempt)++;
        return CALL_AGAIN;
    }
    return CALL_DONE;
}

/* Runs the call with retries. No GIL here: only C memory is touched. */
void
call_run(s3_call *k)
{
    Client *c = k->client;
    double delay;
    int attempt = 1, rc, next;

    if (call_prepare_body(k) < 0)
        return;
    for (;;) {
        int redirected = k->redirected;

        if (call_attempt_begin(k) < 0)
            return;
        rc = xfer_perform(&c->pool, &c->opts, &k->req);
        if (k->req.rewound)
            k->sent_before = 1;
        next = call_attempt_end(k, rc, &attempt, &delay);
        if (next != CALL_AGAIN)
            return;
        /* a body the server read may have been stored, unless it sent us to the
         * bucket's region: that refusal stored nothing */
        if (k->has_body && k->redirected == redirected &&
            (k->req.body_pos > 0 || k->body_len == 0))
            k->sent_before = 1;
        xfer_sleep(delay);
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

#define LEAK_TEXT "(the server's text is not shown: it repeats a secret of the request)"

/* The secrets AWS_S3_PROXY may hold: its password as given and percent-decoded,
 * and the Basic credential libcurl sends (base64 of the decoded user:password). */
static int
proxy_secrets(const Client *c, buf_t *raw, buf_t *plain, buf_t *basic)
{
    const char *s = c->proxy ? strstr(c->proxy, "://") : NULL;
    const char *at, *colon;
    buf_t up = BUF_INIT;
    int rc = -1;

    if (s == NULL)
        return 0;
    s += 3;
    /* user:password ends at the last '@' before the path, as proxy_valid() reads it */
    for (at = s + strcspn(s, "/?#"); at > s && at[-1] != '@'; at--)
        ;
    if (at == s)
        return 0;
    at--;
    colon = memchr(s, ':', (size_t)(at - s));
    if (colon == NULL)
        colon = at;
    if (buf_append_unescaped(&up, s, (size_t)(colon - s)) < 0 || buf_putc(&up, ':') < 0)
        goto done;
    if (colon < at && (buf_append(raw, colon + 1, (size_t)(at - colon - 1)) < 0 ||
                       buf_append_unescaped(plain, colon + 1, (size_t)(at - colon - 1)) < 0 ||
                       buf_append(&up, plain->data, plain->len) < 0))
        goto done;
    if (buf_reserve(basic, 4 * (up.len / 3 + 1) + 1) < 0)
        goto done;
    basic->len = (size_t)EVP_EncodeBlock((unsigned char *)basic->data,
                                         (const unsigned char *)up.data, (int)up.len);
    rc = 0;
done:
    buf_free_secure(&up);
    return rc;
}

/* Whether a server's text repeats one of `secrets` (NULL entries skipped): a
 * server or proxy that echoes the request (its headers) in an error document
 * would put the token, the signature or the proxy's password in messages and logs. */
static int
call_text_leaks(const char *text, const char *const *secrets, size_t n)
{
    size_t i;

    if (text == NULL || text[0] == '\0')
        return 0;
    for (i = 0; i < n; i++)
        if (cred_text_repeats(text, secrets[i]))
            return 1;
    return 0;
}

/* The secrets of a call that a server's text must not repeat: the secret key,
 * the session token, the signature, and what AWS_S3_PROXY holds. No GIL needed. */
typedef struct {
    buf_t praw, pplain, pbasic;
    const char *list[6];
} call_secrets;

static int
call_secrets_get(const s3_call *k, call_secrets *s)
{
    memset(s, 0, sizeof(*s));
    if (proxy_secrets(k->client, &s->praw, &s->pplain, &s->pbasic) < 0)
        return -1;
    s->list[0] = k->creds ? k->creds->secret_key : NULL;
    s->list[1] = k->creds ? k->creds->session_token : NULL;
    s->list[2] = k->signature;
    s->list[3] = s->praw.data;
    s->list[4] = s->pplain.data;
    s->list[5] = s->pbasic.data;
    return 0;
}

static void
call_secrets_free(call_secrets *s)
{
    buf_free_secure(&s->praw);
    buf_free_secure(&s->pplain);
    buf_free_secure(&s->pbasic);
}

/* The reply's error code for the request log: "" when there is none, or when it
 * repeats a secret of the request (as call_raise() keeps it out of messages). */
static void
call_log_code(const s3_call *k, char *out, size_t size)
{
    call_secrets s;

    out[0] = '\0';
    if (!k->have_reply || !k->reply.code[0])
        return;
    if (call_secrets_get(k, &s) == 0 && !call_text_leaks(k->reply.code, s.list, 6))
        snprintf(out, size, "%s", k->reply.code);
    call_secrets_free(&s);
}

/* With the GIL: turns a failed call into the exception it deserves. */
PyObject *
call_raise(s3_call *k)
{
    Client *c = k->client;
    s3_state *st = c->st;
    char reqid[128] = "";
    const char *code, *msg;
    size_t len = 0;
    const char *h;
    buf_t m = BUF_INIT;
    call_secrets sec;
    const char **secrets = sec.list;
    const char *rid = reqid;
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
        int failed, leaks;
        if (call_secrets_get(k, &sec) < 0) {
            call_secrets_free(&sec);
            return PyErr_NoMemory();
        }
        /* libcurl's text, its URLs' user:password@ hidden already (xfer_finish) */
        leaks = call_text_leaks(k->req.errbuf, secrets, 6);
        call_secrets_free(&sec);
        pthread_mutex_lock(&c->where_lock);
        failed = buf_printf(&m, "%s %s failed: %s", k->method, c->endpoint,
                            leaks ? "(libcurl's text is not shown: it repeats a secret)"
                                  : k->req.errbuf) < 0;
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
    if (call_secrets_get(k, &sec) < 0) {
        res = PyErr_NoMemory();
        goto done;
    }
    if (call_text_leaks(reqid, secrets, 6))
        reqid[0] = '\0';
    if (k->have_reply && k->reply.code[0]) {
        code = call_text_leaks(k->reply.code, secrets, 6) ? status_code_name(k->req.status)
                                                          : k->reply.code;
        msg = call_text_leaks(k->reply.message, secrets, 6) ? LEAK_TEXT : k->reply.message;
        if (k->reply.request_id[0] && !call_text_leaks(k->reply.request_id, secrets, 6))
            rid = k->reply.request_id;
    } else {
        code = status_code_name(k->req.status);
        msg = NULL;
    }
    res = s3_raise(st, (int)k->req.status, code, msg, rid, c->bucket, k->key);
done:
    call_secrets_free(&sec);
    return res;
}

int
call_take_creds(s3_call *k)
{
    if (k->creds_refused) {
        /* ExpiredToken, InvalidToken: renewed credentials, and one more run */
        k->creds_refused = 0;
        k->creds_retried = 1;
        cred_release(&k->client->cred, k->creds);
        k->creds = NULL;
    }
    if (k->creds == NULL && client_creds(k->client, 0, &k->creds) < 0)
        return -1;
    return 0;
}

int
call_perform(s3_call *k)
{
    if (client_check_fork(k->client) < 0)
        return -1;
    for (;;) {
        if (call_take_creds(k) < 0)
            return -1;
        Py_BEGIN_ALLOW_THREADS
        call_run(k);
        Py_END_ALLOW_THREADS
        req_log_flush(&k->client->log);
        if (!k->creds_refused)
            break;
    }
    if (!k->ok) {
        call_raise(k);
        return -1;
    }
    return 0;
}

/* ---- results --------------------------------------------------------------- */

int
call_dict_set_take(PyObject *d, const char *name, PyObject *v)
{
    int rc;

    if (v == NULL)
        return -1;
    rc = PyDict_SetItemString(d, name, v);
    Py_DECREF(v);
    return rc;
}

PyObject *
call_str_n(const char *p, size_t n)
{
    return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "replace");
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
PyObject *
call_head_dict(const buf_t *head)
{
    PyObject *d = PyDict_New(), *meta = NULL;
    const head_field *f;
    const char *p, *end;

    if (d == NULL)
        return NULL;
    for (f = head_fields; f->header; f++) {
        size_t len = 0;
        const char *v = xfer_header_in(head, f->header, &len);
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
            o = call_str_n(v, len);
        }
        if (call_dict_set_take(d, f->key, o) < 0)
            goto fail;
    }
    meta = PyDict_New();
    if (meta == NULL)
        goto fail;
    p = head->data;
    end = p ? p + head->len : NULL;
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
            name = call_str_n(p + 11, (size_t)(colon - p - 11));
            if (name == NULL)
                goto fail;
            lower = PyObject_CallMethod(name, "lower", NULL);
            Py_DECREF(name);
            value = call_str_n(v, (size_t)(ve - v));
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

/* headers= may not set what the request itself sets, what a keyword above sets,
 * or metadata (metadata=) */
static const char *const reserved_headers[] = {
    "host", "authorization", "content-length", "content-md5", "transfer-encoding",
    "expect", "connection", "te", "upgrade", "range", "x-amz-date", "x-amz-content-sha256",
    "x-amz-security-token", "x-amz-copy-source", "x-amz-decoded-content-length",
    "if-match", "if-none-match", NULL,
};

static int
header_name_ok(const char *n, Py_ssize_t nl)
{
    const kw_header *f;
    const char *const *r;
    Py_ssize_t i;

    if (nl < 1 || nl > 64)
        return 0;
    for (i = 0; i < nl; i++)
        if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') ||
              (n[i] >= '0' && n[i] <= '9') || n[i] == '-'))
            return 0;
    if (strncasecmp(n, "x-amz-meta-", 11) == 0 || strncasecmp(n, "x-amz-copy-source-", 18) == 0)
        return 0;
    for (r = reserved_headers; *r; r++)
        if (strcasecmp(n, *r) == 0)
            return 0;
    for (f = object_headers; f->kw; f++)
        if (strcasecmp(n, f->header) == 0)
            return 0;
    return 1;
}

/* headers={name: value}: more headers of the object (Expires, x-amz-tagging, ...) */
static int
add_extra_headers(s3_call *k, PyObject *headers)
{
    Py_ssize_t pos = 0, nl, vl;
    PyObject *name, *value;
    const char *n, *v;

    if (!PyDict_Check(headers)) {
        PyErr_SetString(PyExc_TypeError, "headers must be a dict of str to str");
        return -1;
    }
    while (PyDict_Next(headers, &pos, &name, &value)) {
        if (!PyUnicode_Check(name) || !PyUnicode_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "headers must be a dict of str to str");
            return -1;
        }
        if ((n = PyUnicode_AsUTF8AndSize(name, &nl)) == NULL ||
            (v = PyUnicode_AsUTF8AndSize(value, &vl)) == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < vl; i++)
            if ((unsigned char)v[i] > 0x7e) {
                PyErr_Format(PyExc_ValueError, "headers: the value of %R is not US-ASCII",
                             name);
                return -1;
            }
        if (!header_name_ok(n, nl)) {
            PyErr_Format(PyExc_ValueError, "headers: %R is not a header name this call may "
                         "set (letters, digits and '-'; not one the request or another "
                         "argument sets)", name);
            return -1;
        }
        if (call_add_header(k, n, v, (size_t)vl) < 0)
            return -1;
    }
    return 0;
}

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
int
call_add_object_headers(s3_call *k, PyObject *kw, const char *const *other_kw)
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
        if (strcmp(n, "headers") == 0) {
            if (value != Py_None && add_extra_headers(k, value) < 0)
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


PyObject *
call_etag_result(s3_call *k)
{
    PyObject *d = PyDict_New();
    size_t len = 0;
    const char *etag;

    if (d == NULL)
        return NULL;
    if (k->have_reply && k->reply.etag[0]) {
        if (call_dict_set_take(d, "ETag", PyUnicode_FromString(k->reply.etag)) < 0 ||
            call_dict_set_take(d, "LastModified",
                          PyFloat_FromDouble(xml_iso_epoch(k->reply.last_modified,
                                                      strlen(k->reply.last_modified)))) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    } else if ((etag = xfer_header(&k->req, "etag", &len)) != NULL) {
        if (call_dict_set_take(d, "ETag", call_str_n(etag, len)) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}