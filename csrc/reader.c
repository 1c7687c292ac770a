/* reader: a raw binary stream over one S3 object, GETs streamed into a bounded
 * buffer. See reader.h.
 *
 * Positions: `buf` holds what read() delivers for positions [base, base + len)
 * (stored bytes, or decoded ones when decompressing); `pos` is tell(). Bytes
 * before `pos` stay until compaction, so a short seek back costs nothing. The
 * network side counts stored bytes: `net_off` is the offset of the next one.
 *
 * Threads: the fields below the GIL line are touched without the GIL by the
 * driving thread only (the busy flag keeps every other one out). */
#include "reader.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "request.h"

#define READER_MAX_BUFFER (1 << 30)
#define READER_GZ_SLICE 4096   /* stored bytes inflated at a time: bounds one step's output */
#define READER_POLL_MS 1000
#define READER_RESERVE_MAX (64 << 20)   /* the most a read() reserves on a claim */
/* An attempt that moved this many stored bytes before it failed starts the count of
 * attempts afresh: a long read survives a cut every few MiB, but a server that
 * sends a little and stalls (or cuts) each time meets max_attempts, not one read
 * timeout per byte. */
#define READER_FRESH_BYTES (1 << 20)

enum { MD5_NONE, MD5_RUNNING, MD5_GOOD, MD5_BAD };
enum { DRIVE_OK, DRIVE_AGAIN, DRIVE_FAIL };

typedef struct {
    PyObject_HEAD
    Client *client;           /* a reference: the pool outlives every transfer */
    PyObject *key;
    PyObject *meta;           /* the first reply's head_object dict, made when asked */
    buf_t head0;              /* the first reply's header lines, for meta */
    int decompress, verify;
    size_t buffer_size;
    int busy, closed;
    pid_t pid;                /* the process whose handles `multi` and `h` are */
    /* ---- below: C only, touched without the GIL by the busy thread ---- */
    CURLM *multi;
    curl_socket_t multi_sock; /* the socket of the connection `multi` keeps, if known */
    CURL *h;                  /* the open transfer's handle; NULL: none */
    CURL *spare;              /* the last transfer's handle, for the next; NULL: none */
    s3_call call;             /* the GET of that transfer (or the next attempt's) */
    int call_live;            /* call_free() is due */
    long long call_start;     /* the stored offset the call's Range asks for */
    int attempt;
    double delay;             /* before the next attempt */
    /* the object, from the first reply */
    int have_object;
    char etag[160];
    long long stored_len;
    long long size;           /* what read() delivers in all; -1: unknown */
    int decompressing;
    /* the open transfer */
    long long range_start;
    int head_checked, paused, dropping;
    /* the stored bytes */
    long long net_off;
    long long bytes_received;
    long requests;
    EVP_MD_CTX *md5;
    long long md5_next;       /* the digest covers stored bytes [0, md5_next) */
    int md5_state;
    gz_stream gz;
    buf_t pending;            /* stored bytes waiting for room to inflate */
    size_t pending_off;
    /* what read() delivers */
    buf_t buf;
    long long base, pos;
    int produced_all;         /* base + buf.len is the end of the stream */
    /* a failure latched without the GIL */
    const char *err_code, *err_msg;
    int call_failed;          /* the call ended badly: call_raise() says how */
} Reader;

/* ---- the buffer (no GIL) --------------------------------------------------- */

static size_t
reader_ahead(const Reader *r)
{
    long long end = r->base + (long long)r->buf.len;

    return end > r->pos ? (size_t)(end - r->pos) : 0;
}

/* Whether the stream must wait for read() to take bytes: buffer_size of them
 * wait, or stored bytes wait to be inflated into a full buffer. */
static int
reader_full(const Reader *r)
{
    return reader_ahead(r) >= r->buffer_size || r->pending_off < r->pending.len;
}

/* Drops what lies before pos: at once when that is all of it (no copy), else
 * once half a buffer of it piled up, so memory stays near 2 * buffer_size. */
static void
reader_compact(Reader *r)
{
    long long behind = r->pos - r->base;
    size_t drop;

    if (behind <= 0 || r->buf.len == 0)
        return;
    drop = behind >= (long long)r->buf.len ? r->buf.len : (size_t)behind;
    if (drop < r->buf.len && drop < r->buffer_size / 2)
        return;
    memmove(r->buf.data, r->buf.data + drop, r->buf.len - drop);
    r->buf.len -= drop;
    r->base += (long long)drop;
}

static int
reader_fail(Reader *r, const char *code, const char *msg)
{
    if (r->err_msg == NULL) {
        r->err_code = code;
        r->err_msg = msg;
    }
    return -1;
}

/* ---- integrity (no GIL) ---------------------------------------------------- */

/* Whether the ETag is one MD5 of the stored bytes: 32 hex digits, quoted or not,
 * and not sealed by SSE-KMS or SSE-C (whose ETags are not the MD5). */
static int
reader_md5_checkable(Reader *r)
{
    const xfer_request *q = &r->call.req;
    const char *e = r->etag, *v;
    size_t n = strlen(e), len = 0;

    if (n == 34 && e[0] == '"' && e[33] == '"') {
        e++;
        n = 32;
    }
    if (n != 32 || strspn(e, "0123456789abcdefABCDEF") < 32)
        return 0;
    v = xfer_header(q, "x-amz-server-side-encryption", &len);
    if (v && len >= 7 && strncasecmp(v, "aws:kms", 7) == 0)
        return 0;
    if (xfer_header(q, "x-amz-server-side-encryption-customer-algorithm", &len))
        return 0;
    return 1;
}

static void
reader_md5_conclude(Reader *r)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    static const char hexdigit[] = "0123456789abcdef";
    const char *e = r->etag[0] == '"' ? r->etag + 1 : r->etag;

    r->md5_state = MD5_BAD;
    if (EVP_DigestFinal_ex(r->md5, md, &mdlen) != 1 || mdlen != 16)
        return;
    /* in order: a shorter ETag stops at its NUL, which matches no digit */
    for (i = 0; i < 32; i++)
        if (tolower((unsigned char)e[i]) != hexdigit[i % 2 ? md[i / 2] & 15 : md[i / 2] >> 4])
            return;
    r->md5_state = MD5_GOOD;
}

/* n stored bytes at net_off: the part the digest has not seen yet, when they
 * follow on from what it saw (a gap leaves the object unverified). */
static void
reader_md5_feed(Reader *r, const char *p, size_t n)
{
    long long start = r->net_off, end = start + (long long)n;
    size_t skip;

    if (r->md5_state != MD5_RUNNING || start > r->md5_next || end <= r->md5_next)
        return;
    skip = (size_t)(r->md5_next - start);
    if (EVP_DigestUpdate(r->md5, p + skip, n - skip) != 1) {
        r->md5_state = MD5_NONE;
        return;
    }
    r->md5_next = end;
    if (r->md5_next == r->stored_len)
        reader_md5_conclude(r);
}

static int
reader_md5_start(Reader *r)
{
    r->md5_next = 0;
    if (EVP_DigestInit_ex(r->md5, r->client->st->md5, NULL) != 1)
        return reader_fail(r, "ClientError", "cannot start the MD5 digest");
    r->md5_state = MD5_RUNNING;
    if (r->stored_len == 0)
        reader_md5_conclude(r);
    return 0;
}

/* ---- the replies (no GIL) -------------------------------------------------- */

/* A decimal of 1 to 18 digits. */
static int
parse_ll(const char *p, size_t n, long long *out)
{
    long long v = 0;
    size_t i;

    if (n == 0 || n > 18)
        return -1;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

/* "bytes a-b/t" */
static int
parse_content_range(const char *p, size_t n, long long *a, long long *b, long long *t)
{
    const char *end = p + n, *dash, *slash;

    if (n < 6 || strncasecmp(p, "bytes ", 6) != 0)
        return -1;
    p += 6;
    dash = memchr(p, '-', (size_t)(end - p));
    slash = dash ? memchr(dash, '/', (size_t)(end - dash)) : NULL;
    if (slash == NULL || parse_ll(p, (size_t)(dash - p), a) < 0 ||
        parse_ll(dash + 1, (size_t)(slash - dash - 1), b) < 0 ||
        parse_ll(slash + 1, (size_t)(end - slash - 1), t) < 0)
        return -1;
    return 0;
}

/* The first reply makes the object what this Reader reads: its length, ETag
 * and encoding. Every later one (206) must be a part of that same object. */
static int
reader_check_first(Reader *r)
{
    const xfer_request *q = &r->call.req;
    const char *v;
    size_t len = 0;
    long long n;

    if (q->status != 200)
        return reader_fail(r, "InvalidReply", "the GET was not answered with 200 OK");
    /* this reply's head, kept for meta and content_encoding (most readers never
     * ask for them): a retry's 206 later replaces q->head, not this */
    buf_clear(&r->head0);
    if (buf_append(&r->head0, q->head.data ? q->head.data : "", q->head.len) < 0)
        return reader_fail(r, "ClientError", "out of memory");
    v = xfer_header(q, "content-length", &len);
    if (v == NULL || parse_ll(v, len, &r->stored_len) < 0)
        return reader_fail(r, "InvalidReply", "the reply has no valid Content-Length");
    v = xfer_header(q, "etag", &len);
    if (v) {
        if (len >= sizeof(r->etag))
            return reader_fail(r, "InvalidReply", "the reply's ETag is too long");
        memcpy(r->etag, v, len);
        r->etag[len] = '\0';
    }
    v = xfer_header(q, "content-encoding", &len);
    if (r->decompress && v && len == 4 && strncasecmp(v, "gzip", 4) == 0) {
        if (gz_inflate_init(&r->gz) < 0)
            return reader_fail(r, "ClientError", r->gz.error);
        r->decompressing = 1;
        r->size = -1;
        v = xfer_header(q, "x-amz-meta-uncompressed_size", &len);
        if (v == NULL)   /* Ceph RGW hands '_' in metadata names back as '-' */
            v = xfer_header(q, "x-amz-meta-uncompressed-size", &len);
        if (v && parse_ll(v, len, &n) == 0)
            r->size = n;
    } else {
        r->size = r->stored_len;
    }
    r->have_object = 1;
    if (r->verify && reader_md5_checkable(r))
        return reader_md5_start(r);
    return 0;
}

static int
reader_check_part(Reader *r)
{
    const xfer_request *q = &r->call.req;
    const char *v;
    size_t len = 0;
    long long a, b, t;

    if (r->range_start == 0 && q->status == 200) {
        /* from the start again, asked without a Range */
        v = xfer_header(q, "content-length", &len);
        if (v == NULL || parse_ll(v, len, &t) < 0 || t != r->stored_len)
            return reader_fail(r, "PreconditionFailed",
                               "the object changed while it was being read (its length differs)");
    } else if (q->status != 206) {
        return reader_fail(r, "InvalidReply",
                           "the ranged GET was not answered with 206 Partial Content");
    } else {
        v = xfer_header(q, "content-range", &len);
        if (v == NULL || parse_content_range(v, len, &a, &b, &t) < 0 || a != r->range_start ||
            b != r->stored_len - 1 || t != r->stored_len)
            return reader_fail(r, "InvalidReply",
                               "the reply's Content-Range disagrees with the range asked for");
    }
    v = xfer_header(q, "etag", &len);
    if (r->etag[0] && (v == NULL || len != strlen(r->etag) || memcmp(v, r->etag, len) != 0))
        return reader_fail(r, "PreconditionFailed",
                           "the object changed while it was being read (its ETag differs)");
    /* the stream starts over from the first byte: so may the digest */
    if (r->range_start == 0 && r->md5_state == MD5_RUNNING && r->md5_next > 0)
        return reader_md5_start(r);
    return 0;
}

static int
reader_check_head(Reader *r)
{
    r->head_checked = 1;
    return r->have_object ? reader_check_part(r) : reader_check_first(r);
}

/* ---- the stream (no GIL) --------------------------------------------------- */

/* Inflates waiting stored bytes while the buffer has room. */
static int
reader_inflate(Reader *r)
{
    while (r->pending_off < r->pending.len && reader_ahead(r) < r->buffer_size) {
        size_t take = r->pending.len - r->pending_off;
        if (take > READER_GZ_SLICE)
            take = READER_GZ_SLICE;
        reader_compact(r);
        if (gz_feed(&r->gz, r->pending.data + r->pending_off, take, 0, &r->buf) < 0)
            return reader_fail(r, "InvalidReply", r->gz.error);
        r->pending_off += take;
    }
    if (r->pending_off == r->pending.len) {
        buf_clear(&r->pending);
        r->pending_off = 0;
    }
    return 0;
}

/* Whether all of the stream is in the buffer: the stored bytes all came, and
 * when decompressing, they are all inflated and the gzip data ended cleanly. */
static int
reader_update_end(Reader *r)
{
    if (r->produced_all || !r->have_object || r->net_off < r->stored_len)
        return 0;
    if (r->decompressing) {
        if (r->pending_off < r->pending.len)
            return 0;
        if (gz_feed(&r->gz, "", 0, 1, &r->buf) < 0)
            return reader_fail(r, "InvalidReply", r->gz.error);
    }
    r->produced_all = 1;
    return 0;
}

/* The curl write callback's sink: stored bytes at net_off. */
static int
reader_sink(void *ud, const char *p, size_t n)
{
    Reader *r = ud;

    if (r->dropping || r->err_msg)
        return -1;
    if (!r->head_checked && reader_check_head(r) < 0)
        return -1;
    if (reader_full(r)) {
        if (r->decompressing && reader_inflate(r) < 0)
            return -1;
        if (reader_full(r)) {
            r->paused = 1;
            return 1;
        }
    }
    if ((unsigned long long)n > (unsigned long long)(r->stored_len - r->net_off))
        return reader_fail(r, "InvalidReply", "the server sent more bytes than the object has");
    reader_md5_feed(r, p, n);
    r->net_off += (long long)n;
    r->bytes_received += (long long)n;
    if (r->decompressing) {
        if (buf_append(&r->pending, p, n) < 0)
            return reader_fail(r, "ClientError", "out of memory");
        return reader_inflate(r);
    }
    reader_compact(r);
    if (buf_append(&r->buf, p, n) < 0)
        return reader_fail(r, "ClientError", "out of memory");
    return 0;
}

/* A transfer's handle, out of the multi handle: kept for the reader's next
 * transfer (and then given back with the multi handle), not made afresh each
 * time; a second one goes back to the pool. */
static void
reader_keep_handle(Reader *r, CURL *h)
{
    if (r->spare == NULL) {
        xfer_count_connects(&r->client->pool, h);
        r->spare = h;
    } else {
        xfer_give(&r->client->pool, h);
    }
}

/* Ends the open transfer where it stands; curl closes a connection whose reply
 * was not read to its end. The handle stays for the next transfer. */
static void
reader_drop(Reader *r)
{
    CURL *h = r->h;

    if (h == NULL)
        return;
    if (r->paused) {
        /* unpausing hands curl's held bytes to the sink, which refuses them:
         * nothing stays paused on a handle that goes back to the pool */
        r->dropping = 1;
        curl_easy_pause(h, CURLPAUSE_CONT);
        r->dropping = 0;
    }
    curl_multi_remove_handle(r->multi, h);
    xfer_finish(h, &r->call.req, CURLE_OK);
    reader_keep_handle(r, h);
    r->h = NULL;
    r->paused = 0;
}

/* One attempt of the call at net_off, on an extra handle of the pool's: never a
 * counted one, which an idle open Reader would hold for as long as it stays
 * open, and a call waiting for the pool (head_object in the same thread) would
 * wait for ever. A pooled handle would bring no connection either: on a multi
 * handle, connections live in the multi handle's cache. */
static int
reader_start(Reader *r)
{
    Client *c = r->client;
    CURL *h;

    if (call_attempt_begin(&r->call) < 0)
        return reader_fail(r, "ClientError", r->call.local_error);
    r->call.req.sink = reader_sink;
    r->call.req.sink_ud = r;
    h = r->spare ? r->spare : xfer_take_extra(&c->pool, &c->opts);
    r->spare = NULL;
    if (h == NULL)
        return reader_fail(r, "ClientError", "cannot create a connection handle");
    xfer_setup(h, &c->opts, &r->call.req);
    r->call.req.sock = r->multi_sock;   /* the multi's connection, not the handle's */
    if (curl_multi_add_handle(r->multi, h) != CURLM_OK) {
        xfer_finish(h, &r->call.req, CURLE_OK);
        r->spare = h;   /* it ran no transfer: kept, its last one counted already */
        return reader_fail(r, "ClientError", "cannot start a transfer");
    }
    r->h = h;
    r->range_start = r->net_off;
    r->head_checked = 0;
    r->paused = 0;
    r->requests++;
    return 0;
}

/* The open transfer ended with rc: its handle goes back, and the request layer
 * judges the attempt (retry, renew, or done). */
static int
reader_done(Reader *r, CURLcode rc)
{
    CURL *h = r->h;
    int xr, next, progress = r->net_off - r->range_start >= READER_FRESH_BYTES;

    curl_multi_remove_handle(r->multi, h);
    xr = xfer_finish(h, &r->call.req, rc);
    r->multi_sock = r->call.req.sock;
    reader_keep_handle(r, h);
    r->h = NULL;
    r->paused = 0;
    if (r->err_msg)
        return DRIVE_FAIL;
    if (xr == 0 && r->call.req.status >= 200 && r->call.req.status < 300) {
        if (!r->head_checked && reader_check_head(r) < 0)
            return DRIVE_FAIL;
        if (r->net_off < r->stored_len) {
            /* a reply that ended before its end: as a cut connection */
            xr = -1;
            r->call.req.curl_rc = CURLE_PARTIAL_FILE;
            snprintf(r->call.req.errbuf, sizeof(r->call.req.errbuf), "the body ended early");
        }
    }
    if (progress)
        r->attempt = 1;   /* the bytes moved on by a MiB: the retries count afresh */
    next = call_attempt_end(&r->call, xr, &r->attempt, &r->delay);
    if (next != CALL_DONE)
        return DRIVE_AGAIN;   /* CALL_RENEW: call_take_creds() renews */
    if (r->call.ok)
        return DRIVE_OK;
    if (r->call.local_error) {
        reader_fail(r, "ClientError", r->call.local_error);
        return DRIVE_FAIL;
    }
    r->call_failed = 1;
    return DRIVE_FAIL;
}

/* Drives the open transfer until `want` bytes wait in the buffer, the stream
 * ended, or the transfer did (DRIVE_AGAIN: another GET is due). */
static int
reader_drive(Reader *r, size_t want)
{
    CURLMsg *msg;
    int running, left, rc;

    for (;;) {
        if (r->decompressing && reader_inflate(r) < 0)
            return DRIVE_FAIL;
        if (reader_update_end(r) < 0 || r->err_msg)
            return DRIVE_FAIL;
        /* once the last byte is in, curl ends the transfer at once: take that
         * too, so that the handle goes back */
        if ((reader_ahead(r) >= want || r->produced_all) &&
            !(r->h && !r->paused && r->net_off >= r->stored_len))
            return DRIVE_OK;
        if (r->h == NULL)
            return DRIVE_AGAIN;
        if (r->paused && !reader_full(r)) {
            r->paused = 0;
            curl_easy_pause(r->h, CURLPAUSE_CONT);   /* may call the sink at once */
            if (r->err_msg)
                return DRIVE_FAIL;
        }
        if (curl_multi_perform(r->multi, &running) != CURLM_OK) {
            reader_fail(r, "ClientError", "the transfer failed in libcurl");
            return DRIVE_FAIL;
        }
        while ((msg = curl_multi_info_read(r->multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == r->h) {
                rc = reader_done(r, msg->data.result);
                if (rc != DRIVE_OK)
                    return rc;
                break;
            }
        }
        if (r->h == NULL || r->paused || reader_ahead(r) >= want)
            continue;
        curl_multi_poll(r->multi, NULL, 0, READER_POLL_MS, NULL);
    }
}

/* ---- with the GIL ---------------------------------------------------------- */

static PyObject *
reader_raise(Reader *r)
{
    Client *c = r->client;
    char reqid[128] = "";
    const char *h;
    size_t len = 0;

    if (r->err_msg)
        return s3_raise(c->st, 0, r->err_code, r->err_msg, NULL, c->bucket, r->call.key);
    if (r->call_failed && r->call.req.status == 412) {
        h = xfer_header(&r->call.req, "x-amz-request-id", &len);
        if (h && len < sizeof(reqid)) {
            memcpy(reqid, h, len);
            reqid[len] = '\0';
        }
        return s3_raise(c->st, 412, "PreconditionFailed",
                        "the object changed since it was opened (If-Match on its ETag failed)",
                        reqid, c->bucket, r->call.key);
    }
    return call_raise(&r->call);
}

/* The GET for the bytes at net_off: the same call again when it is a retry of
 * those bytes, else a new one (Range and If-Match once the object is known). */
static int
reader_prepare(Reader *r)
{
    char range[48];

    if (!r->call_live || r->call_start != r->net_off) {
        if (r->call_live)
            call_free(&r->call);
        call_init(&r->call, r->client, "GET");
        r->call_live = 1;
        r->call_start = r->net_off;
        if (call_set_key(&r->call, r->key) < 0)
            return -1;
        snprintf(range, sizeof(range), "bytes=%lld-", r->net_off);
        if (r->have_object &&
            ((r->net_off > 0 && call_add_header(&r->call, "Range", range, strlen(range)) < 0) ||
             (r->etag[0] &&
              call_add_header(&r->call, "If-Match", r->etag, strlen(r->etag)) < 0)))
            return -1;
    }
    return call_take_creds(&r->call);
}

/* Starts the stream afresh at stored offset `at` (0 when decompressing). */
static void
reader_restart(Reader *r, long long at)
{
    reader_drop(r);
    buf_clear(&r->buf);
    buf_clear(&r->pending);
    r->pending_off = 0;
    r->produced_all = 0;
    r->attempt = 1;
    r->net_off = at;
    r->base = at;
    r->err_code = r->err_msg = NULL;   /* a new stream: a lasting fault comes back */
    r->call_failed = 0;
    r->call_start = -1;                /* and a new call for it */
    if (r->decompressing) {
        gz_end(&r->gz);
        if (gz_inflate_init(&r->gz) < 0)
            reader_fail(r, "ClientError", r->gz.error);
    }
}

/* Before a read: a position that reading on cannot reach starts the stream
 * again (raw: at pos; decoded: from the start, then forward). */
static void
reader_reposition(Reader *r)
{
    long long end = r->base + (long long)r->buf.len;

    if (!r->have_object || (r->pos >= r->base && r->pos <= end))
        return;
    if (r->decompressing) {
        if (r->pos < r->base)
            reader_restart(r, 0);
        return;
    }
    if (r->pos > end && r->h != NULL && r->pos - end <= (long long)r->buffer_size)
        return;   /* near ahead: read on and drop */
    reader_restart(r, r->pos < r->stored_len ? r->pos : r->stored_len);
    r->base = r->pos;
}

/* Until `want` bytes (at most buffer_size) wait at pos, or the stream ended.
 * 0, or -1 with an exception. What came before a failure is still delivered. */
static int
reader_fill(Reader *r, size_t want)
{
    int need_get;

    if (want > r->buffer_size)
        want = r->buffer_size;
    reader_reposition(r);
    for (;;) {
        reader_update_end(r);
        if (reader_ahead(r) >= want || r->produced_all)
            return 0;
        if (r->err_msg || r->call_failed) {
            /* a failure is latched: raised once what came before it is read */
            if (reader_ahead(r) > 0)
                return 0;
            reader_raise(r);
            return -1;
        }
        /* stored bytes still to come, and no transfer to bring them */
        need_get = r->h == NULL && (!r->have_object || r->net_off < r->stored_len);
        if (need_get && reader_prepare(r) < 0)
            return -1;
        Py_BEGIN_ALLOW_THREADS
        if (need_get) {
            xfer_sleep(r->delay);
            r->delay = 0.0;
        }
        if (!need_get || reader_start(r) == 0)
            reader_drive(r, want);
        Py_END_ALLOW_THREADS
        req_log_flush(&r->client->log);
    }
}

/* Up to n bytes at pos into dst: fewer only at the end. -1 with an exception.
 * The bytes that end a stream whose MD5 did not match are never delivered. */
static Py_ssize_t
reader_copy(Reader *r, char *dst, size_t n)
{
    size_t got = 0, k;

    while (got < n) {
        if (reader_fill(r, n - got) < 0) {
            if (got == 0)
                return -1;
            PyErr_Clear();   /* a short read now; the next one raises */
            break;
        }
        k = reader_ahead(r);
        if (k > n - got)
            k = n - got;
        if (r->md5_state == MD5_BAD && r->produced_all &&
            r->pos + (long long)k == r->base + (long long)r->buf.len) {
            s3_raise(r->client->st, 0, "ChecksumMismatch",
                     "the object's bytes do not match its ETag (MD5)", NULL,
                     r->client->bucket, r->call.key);
            return -1;
        }
        if (k == 0)
            break;
        memcpy(dst + got, r->buf.data + (r->pos - r->base), k);
        r->pos += (long long)k;
        got += k;
    }
    return (Py_ssize_t)got;
}

/* In a child after fork(): the open transfer, its handle and the multi handle
 * (with its connection) are the parent's, left as they are, neither used nor
 * closed (a shared socket would split one body between the two processes). The
 * stream goes on at net_off with a GET of the child's own, as after a cut. */
static void
reader_forget_parent(Reader *r)
{
    if (r->pid == xfer_pid())
        return;
    r->pid = xfer_pid();
    r->h = NULL;
    r->spare = NULL;
    r->paused = 0;
    r->multi = NULL;
    r->multi_sock = CURL_SOCKET_BAD;
}

static int
reader_enter(Reader *r)
{
    if (r->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this Reader is in use by another thread (a Reader is not thread-safe)");
        return -1;
    }
    if (r->closed) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed file.");
        return -1;
    }
    reader_forget_parent(r);
    if (r->multi == NULL) {
        if (client_check_fork(r->client) < 0)
            return -1;
        if ((r->multi = xfer_multi_take(&r->client->pool, &r->multi_sock, &r->spare)) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    r->busy = 1;
    return 0;
}

/* Up to `limit` bytes at pos (fewer only at the end). Memory follows what comes,
 * not `limit`: a read starts from the size the reply claims (its Content-Length,
 * or the uncompressed size of a decoded one), but the server may lie: at most
 * READER_RESERVE_MAX of it is taken on trust, and the buffer grows from there. */
static PyObject *
reader_read_upto(Reader *r, Py_ssize_t limit)
{
    long long left = r->size - r->pos;
    Py_ssize_t cap, got = 0, k;
    PyObject *out;

    if (left < 0)
        left = 0;
    if (!r->decompressing && left < limit)
        limit = (Py_ssize_t)left;
    if (!r->decompressing)
        cap = limit;
    else if (r->size >= 0 && left < PY_SSIZE_T_MAX)
        cap = (Py_ssize_t)left + 1 < limit ? (Py_ssize_t)left + 1 : limit;
    else
        cap = (Py_ssize_t)r->buffer_size < limit ? (Py_ssize_t)r->buffer_size : limit;
    if (cap > READER_RESERVE_MAX)
        cap = READER_RESERVE_MAX;
    out = PyBytes_FromStringAndSize(NULL, cap);
    if (out == NULL)
        return NULL;
    while (got < limit) {
        if (got == cap) {
            cap = cap < limit / 2 ? cap * 2 : limit;
            if (_PyBytes_Resize(&out, cap) < 0)
                return NULL;
        }
        k = reader_copy(r, PyBytes_AS_STRING(out) + got, (size_t)(cap - got));
        if (k < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (k == 0)
            break;
        got += k;
    }
    if (got < cap && _PyBytes_Resize(&out, got) < 0)
        return NULL;
    return out;
}

static PyObject *
reader_read(PyObject *self, PyObject *args)
{
    Reader *r = (Reader *)self;
    Py_ssize_t n = -1;
    PyObject *out;

    if (!PyArg_ParseTuple(args, "|n:read", &n) || reader_enter(r) < 0)
        return NULL;
    out = reader_read_upto(r, n < 0 ? PY_SSIZE_T_MAX : n);
    r->busy = 0;
    return out;
}

static PyObject *
reader_readall_method(PyObject *self, PyObject *unused)
{
    Reader *r = (Reader *)self;
    PyObject *out;

    (void)unused;
    if (reader_enter(r) < 0)
        return NULL;
    out = reader_read_upto(r, PY_SSIZE_T_MAX);
    r->busy = 0;
    return out;
}

static PyObject *
reader_readinto(PyObject *self, PyObject *arg)
{
    Reader *r = (Reader *)self;
    Py_buffer view;
    Py_ssize_t got;

    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    if (reader_enter(r) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    got = reader_copy(r, view.buf, (size_t)view.len);
    r->busy = 0;
    PyBuffer_Release(&view);
    return got < 0 ? NULL : PyLong_FromSsize_t(got);
}

static PyObject *
reader_unsupported(const char *what)
{
    PyObject *io = PyImport_ImportModule("io"), *exc;

    if (io == NULL)
        return NULL;
    exc = PyObject_GetAttrString(io, "UnsupportedOperation");
    Py_DECREF(io);
    if (exc == NULL)
        return NULL;
    PyErr_SetString(exc, what);
    Py_DECREF(exc);
    return NULL;
}

/* Seeks are lazy: the next read decides what the new position costs. */
static PyObject *
reader_seek(PyObject *self, PyObject *args)
{
    Reader *r = (Reader *)self;
    long long offset, to;
    int whence = 0;
    PyObject *res = NULL;

    if (!PyArg_ParseTuple(args, "L|i:seek", &offset, &whence) || reader_enter(r) < 0)
        return NULL;
    if (whence == 0) {
        to = offset;
    } else if (whence == 1) {
        to = r->pos + offset;
    } else if (whence == 2) {
        if (r->size < 0) {
            reader_unsupported("the decompressed size of this object is unknown: "
                               "it cannot be sought from its end");
            goto done;
        }
        to = r->size + offset;
    } else {
        PyErr_Format(PyExc_ValueError, "invalid whence (%d, should be 0, 1 or 2)", whence);
        goto done;
    }
    if (to < 0) {
        PyErr_Format(PyExc_ValueError, "negative seek position %lld", to);
        goto done;
    }
    r->pos = to;
    res = PyLong_FromLongLong(to);
done:
    r->busy = 0;
    return res;
}

static PyObject *
reader_tell(PyObject *self, PyObject *unused)
{
    Reader *r = (Reader *)self;

    (void)unused;
    if (reader_enter(r) < 0)
        return NULL;
    r->busy = 0;
    return PyLong_FromLongLong(r->pos);
}

/* Frees what the stream holds; the Reader stays a closed Reader. */
static void
reader_release(Reader *r)
{
    reader_forget_parent(r);   /* never the parent's handles into this pool */
    reader_drop(r);
    if (r->call_live) {
        call_free(&r->call);
        r->call_live = 0;
    }
    if (r->multi) {
        /* with the connection of a body read to its end, and the handle, for the
         * next Reader */
        xfer_multi_give(&r->client->pool, r->multi, r->multi_sock, r->spare);
        r->multi = NULL;
    } else if (r->spare) {
        xfer_give(&r->client->pool, r->spare);
    }
    r->spare = NULL;
    gz_end(&r->gz);
    buf_free(&r->buf);
    buf_free(&r->pending);
    r->pending_off = 0;
    if (r->md5) {
        EVP_MD_CTX_free(r->md5);
        r->md5 = NULL;
    }
}

static PyObject *
reader_close(PyObject *self, PyObject *unused)
{
    Reader *r = (Reader *)self;

    (void)unused;
    if (r->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this Reader is in use by another thread (a Reader is not thread-safe)");
        return NULL;
    }
    if (!r->closed) {
        r->closed = 1;
        reader_release(r);
    }
    Py_RETURN_NONE;
}

static PyObject *
reader_enter_ctx(PyObject *self, PyObject *unused)
{
    Reader *r = (Reader *)self;

    (void)unused;
    if (r->closed) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed file.");
        return NULL;
    }
    return Py_NewRef(self);
}

static PyObject *
reader_exit_ctx(PyObject *self, PyObject *args)
{
    (void)args;
    return reader_close(self, NULL);
}

static PyObject *
reader_bool_method(PyObject *self, int value)
{
    if (((Reader *)self)->closed) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed file.");
        return NULL;
    }
    return PyBool_FromLong(value);
}

static PyObject *
reader_readable(PyObject *self, PyObject *unused)
{
    (void)unused;
    return reader_bool_method(self, 1);
}

static PyObject *
reader_writable(PyObject *self, PyObject *unused)
{
    (void)unused;
    return reader_bool_method(self, 0);
}

static PyObject *
reader_isatty(PyObject *self, PyObject *unused)
{
    (void)unused;
    return reader_bool_method(self, 0);
}

static PyObject *
reader_fileno(PyObject *self, PyObject *unused)
{
    (void)self; (void)unused;
    return reader_unsupported("an S3 object has no file descriptor");
}

static PyObject *
reader_flush(PyObject *self, PyObject *unused)
{
    (void)unused;
    if (((Reader *)self)->closed) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on closed file.");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- the type ---------------------------------------------------------------- */

PyObject *
reader_open(Client *c, PyObject *key, int decompress, Py_ssize_t buffer_size, int verify)
{
    PyTypeObject *tp = c->st->reader_type;
    Reader *r;

    if (buffer_size < 1 || buffer_size > READER_MAX_BUFFER) {
        PyErr_Format(PyExc_ValueError, "buffer_size must be between 1 and %d bytes",
                     READER_MAX_BUFFER);
        return NULL;
    }
    r = (Reader *)tp->tp_alloc(tp, 0);
    if (r == NULL)
        return NULL;
    r->client = (Client *)Py_NewRef((PyObject *)c);
    r->pid = xfer_pid();
    r->key = Py_NewRef(key);
    r->decompress = decompress;
    r->verify = verify;
    r->buffer_size = (size_t)buffer_size;
    r->size = -1;
    r->attempt = 1;
    if (client_check_fork(c) < 0)
        goto fail;
    r->multi = xfer_multi_take(&c->pool, &r->multi_sock, &r->spare);
    r->md5 = EVP_MD_CTX_new();
    if (r->multi == NULL || r->md5 == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    r->busy = 1;
    if (reader_fill(r, 1) < 0) {
        r->busy = 0;
        goto fail;
    }
    r->busy = 0;
    return (PyObject *)r;
fail:
    Py_DECREF(r);
    return NULL;
}

static int
reader_traverse(PyObject *self, visitproc visit, void *arg)
{
    Reader *r = (Reader *)self;

    Py_VISIT(Py_TYPE(self));
    Py_VISIT(r->client);
    Py_VISIT(r->key);
    Py_VISIT(r->meta);
    return 0;
}

static int
reader_clear(PyObject *self)
{
    Py_CLEAR(((Reader *)self)->meta);
    return 0;
}

static void
reader_dealloc(PyObject *self)
{
    Reader *r = (Reader *)self;
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    if (r->client)
        reader_release(r);   /* needs the Client's pool: before the reference goes */
    Py_CLEAR(r->meta);
    buf_free(&r->head0);
    Py_CLEAR(r->key);
    Py_CLEAR(r->client);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
reader_get_closed(PyObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((Reader *)self)->closed);
}

static PyObject *
reader_get_meta(PyObject *self, void *closure)
{
    Reader *r = (Reader *)self;

    (void)closure;
    if (r->meta == NULL)
        r->meta = call_head_dict(&r->head0);
    return Py_XNewRef(r->meta);
}

static PyObject *
reader_get_size(PyObject *self, void *closure)
{
    Reader *r = (Reader *)self;

    (void)closure;
    if (r->size < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(r->size);
}

static PyObject *
reader_get_content_encoding(PyObject *self, void *closure)
{
    Reader *r = (Reader *)self;
    const char *v;
    size_t len = 0;

    (void)closure;
    v = xfer_header_in(&r->head0, "content-encoding", &len);
    if (v == NULL)
        Py_RETURN_NONE;
    return call_str_n(v, len);
}

static PyObject *
reader_get_decompressing(PyObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((Reader *)self)->decompressing);
}

static PyObject *
reader_get_bytes_received(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLongLong(((Reader *)self)->bytes_received);
}

static PyObject *
reader_get_requests(PyObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLong(((Reader *)self)->requests);
}

static PyMethodDef reader_methods[] = {
    {"read", reader_read, METH_VARARGS,
     "read(n=-1) -> bytes: n bytes (fewer only at the end), or all that is left"},
    {"readall", reader_readall_method, METH_NOARGS, "readall() -> bytes: all that is left"},
    {"readinto", reader_readinto, METH_O,
     "readinto(b) -> int: fills b (less only at the end); 0 at the end"},
    {"seek", reader_seek, METH_VARARGS,
     "seek(offset, whence=0) -> int. Lazy: a position within the buffer or a little ahead "
     "costs no request; elsewhere the next read sends a ranged GET (decompressing: reads "
     "forward, or from the start when going back)."},
    {"tell", reader_tell, METH_NOARGS, "tell() -> int"},
    {"close", reader_close, METH_NOARGS, "close(): ends the transfer; idempotent"},
    {"readable", reader_readable, METH_NOARGS, "True"},
    {"writable", reader_writable, METH_NOARGS, "False"},
    {"seekable", reader_readable, METH_NOARGS, "True"},
    {"isatty", reader_isatty, METH_NOARGS, "False"},
    {"fileno", reader_fileno, METH_NOARGS, "raises io.UnsupportedOperation"},
    {"flush", reader_flush, METH_NOARGS, "does nothing"},
    {"__enter__", reader_enter_ctx, METH_NOARGS, NULL},
    {"__exit__", reader_exit_ctx, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef reader_getset[] = {
    {"closed", reader_get_closed, NULL, NULL, NULL},
    {"meta", reader_get_meta, NULL,
     "the object's head_object dict, from the first reply (ContentLength: as stored)", NULL},
    {"size", reader_get_size, NULL,
     "what read() delivers in all: the stored length, or when decompressing the "
     "x-amz-meta-uncompressed_size (None when absent)", NULL},
    {"content_encoding", reader_get_content_encoding, NULL, "the Content-Encoding as stored",
     NULL},
    {"decompressing", reader_get_decompressing, NULL, "whether gzip is undone as it streams",
     NULL},
    {"bytes_received", reader_get_bytes_received, NULL, "body bytes taken from the network",
     NULL},
    {"requests", reader_get_requests, NULL, "GETs sent so far", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot reader_slots[] = {
    {Py_tp_doc, "A raw binary stream over one S3 object, made by Client.reader(): one "
                "streaming GET paused at buffer_size bytes, lazy ranged GETs after a seek. "
                "Not thread-safe: a call from a second thread meanwhile raises RuntimeError."},
    {Py_tp_dealloc, reader_dealloc},
    {Py_tp_traverse, reader_traverse},
    {Py_tp_clear, reader_clear},
    {Py_tp_methods, reader_methods},
    {Py_tp_getset, reader_getset},
    {0, NULL},
};

PyType_Spec s3_reader_spec = {
    .name = "django_s3_storage._s3.Reader",
    .basicsize = sizeof(Reader),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = reader_slots,
};
