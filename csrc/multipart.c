/* multipart: a multipart upload as a state machine. See multipart.h. */
#include "multipart.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

/* ---- sizes ------------------------------------------------------------- */

size_t
mpu_part_size_for(size_t part_size, long long size_hint, int number)
{
    size_t s = part_size;

    if (size_hint >= 0) {
        unsigned long long need =
            ((unsigned long long)size_hint + MPU_MAX_PARTS - 1) / MPU_MAX_PARTS;
        const unsigned long long mib = 1 << 20;
        need = (need + mib - 1) / mib * mib;
        if (need > s)
            s = need > MPU_MAX_PART ? MPU_MAX_PART : (size_t)need;
        return s;
    }
    for (; number > MPU_GROW_EVERY && s < MPU_MAX_PART; number -= MPU_GROW_EVERY)
        s *= 2;
    return s > MPU_MAX_PART ? MPU_MAX_PART : s;
}

int
mpu_inflight_limit(size_t part_size, int max_inflight, int pool_max)
{
    size_t budget = MPU_MEMORY_BUDGET / part_size;   /* in flight and filling */
    int n = max_inflight > 0 ? max_inflight : pool_max;

    if (budget >= 2 && (size_t)n > budget - 1)
        n = (int)(budget - 1);
    else if (budget < 2)
        n = 1;
    return n < 1 ? 1 : n;
}

static double
now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- ETags ------------------------------------------------------------- */

/* The ETag without its quotes (and a weak "W/" prefix). */
static const char *
etag_bare(const char *e, size_t len, size_t *out)
{
    if (len >= 2 && e[0] == 'W' && e[1] == '/') {
        e += 2;
        len -= 2;
    }
    if (len >= 2 && e[0] == '"' && e[len - 1] == '"') {
        e++;
        len -= 2;
    }
    *out = len;
    return e;
}

static int
hex_equal(const char *hex, const unsigned char *bin, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        char hi = (char)(hex[2 * i] | 0x20), lo = (char)(hex[2 * i + 1] | 0x20);
        if (hi != digits[bin[i] >> 4] || lo != digits[bin[i] & 15])
            return 0;
    }
    return 1;
}

static int
all_hex(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (buf_hexval(p[i]) < 0)
            return 0;
    return 1;
}

int
mpu_etag_is_md5(const char *etag, size_t len, const unsigned char md5[16])
{
    size_t n;
    const char *e = etag_bare(etag, len, &n);

    if (n != 32 || !all_hex(e, 32))
        return -1;
    return hex_equal(e, md5, 16);
}

/* 1: "<md5 of the parts' MD5s>-<count>", 0: that form but other values, -1: no
 * such form. */
static int
etag_is_multipart(const char *etag, size_t len, const unsigned char md5[16], int count)
{
    size_t n;
    const char *e = etag_bare(etag, len, &n);
    char tail[16];

    if (n < 34 || n > 40 || e[32] != '-' || !all_hex(e, 32) ||
        strspn(e + 33, "0123456789") != n - 33)
        return -1;
    snprintf(tail, sizeof(tail), "%d", count);
    return hex_equal(e, md5, 16) && strlen(tail) == n - 33 && memcmp(e + 33, tail, n - 33) == 0;
}

int
mpu_etag_opaque(const xfer_request *r)
{
    size_t len = 0;
    const char *sse = xfer_header(r, "x-amz-server-side-encryption", &len);

    if (sse && len >= 7 && strncasecmp(sse, "aws:kms", 7) == 0)
        return 1;
    return xfer_header(r, "x-amz-server-side-encryption-customer-algorithm", &len) != NULL;
}

/* ---- calls ------------------------------------------------------------- */

/* An object call built in C (no GIL needed): the key's URL, then `query`
 * (already encoded, starting with '?') and the upload id when asked. */
static int
object_call(mpu *m, s3_call *k, const char *method, const char *query, int with_id)
{
    call_init(k, m->client, method);
    k->key = malloc(m->key_len + 1);
    if (k->key == NULL)
        return -1;
    memcpy(k->key, m->key, m->key_len + 1);
    if (call_put_base(k) < 0 || buf_append_uri(&k->url, m->key, m->key_len, 1) < 0 ||
        buf_puts(&k->url, query) < 0)
        return -1;
    if (with_id && buf_append(&k->url, m->upload_id_q.data, m->upload_id_q.len) < 0)
        return -1;
    return 0;
}

int
mpu_init(mpu *m, Client *c, const char *key, size_t key_len, size_t part_size,
         long long size_hint, int max_inflight, int etag_md5)
{
    int i;

    memset(m, 0, sizeof(*m));
    m->client = c;
    m->failed_slot = -1;
    m->next_part = 1;
    m->grow = size_hint < 0;
    m->part_size = mpu_part_size_for(part_size, size_hint, 1);
    m->max_inflight = max_inflight;
    m->etag_md5 = etag_md5;
    m->nslots = mpu_inflight_limit(m->part_size, max_inflight, c->pool.max);
    m->slots = calloc((size_t)m->nslots, sizeof(mpu_slot));
    if (m->slots == NULL)
        return -1;
    for (i = 0; i < m->nslots; i++)   /* before anything can fail: mpu_free frees them */
        call_init(&m->slots[i].call, c, "PUT");
    if (pthread_mutex_init(&m->pump_lock, NULL) != 0)
        return -1;
    if (pthread_cond_init(&m->pump_cond, NULL) != 0) {
        pthread_mutex_destroy(&m->pump_lock);
        return -1;
    }
    m->pump_ready = 1;
    m->key = malloc(key_len + 1);
    m->multi = curl_multi_init();
    if (m->key == NULL || m->multi == NULL)
        return -1;
    memcpy(m->key, key, key_len);
    m->key[key_len] = '\0';
    m->key_len = key_len;
    return 0;
}

/* ---- the pump ------------------------------------------------------------ */

static void drive_pass(mpu *m);
static void drive_wait(mpu *m);

/* Whether the pump has something to drive: a part running or queued. A part
 * waiting for renewed credentials (MPU_RENEW) waits for the caller, who fetches
 * them with the GIL; the others go on meanwhile. */
static int
pump_work(const mpu *m)
{
    int i;

    if (m->failed || m->multi == NULL || m->inflight == 0)
        return 0;
    if (m->running > 0)
        return 1;
    for (i = 0; i < m->nslots; i++)
        if (m->slots[i].state == MPU_QUEUED)
            return 1;
    return 0;
}

static void *
pump_main(void *arg)
{
    mpu *m = arg;

    pthread_mutex_lock(&m->pump_lock);
    while (!m->pump_stop) {
        if (__atomic_load_n(&m->pump_want, __ATOMIC_SEQ_CST) || !pump_work(m)) {
            pthread_cond_wait(&m->pump_cond, &m->pump_lock);
            continue;
        }
        drive_pass(m);
        if (pump_work(m) && !__atomic_load_n(&m->pump_want, __ATOMIC_SEQ_CST))
            drive_wait(m);   /* a second at most; the caller wakes it to take m back */
    }
    pthread_mutex_unlock(&m->pump_lock);
    return NULL;
}

/* The caller takes m back from the pump (a no-op when it has it, when there is
 * no pump, or in a child after fork(), where the pump is the parent's). */
static void
pump_hold(mpu *m)
{
    if (!m->pump_on || m->pump_held || m->pump_pid != xfer_pid())
        return;
    __atomic_store_n(&m->pump_want, 1, __ATOMIC_SEQ_CST);
    if (m->multi)
        curl_multi_wakeup(m->multi);
    pthread_mutex_lock(&m->pump_lock);
    m->pump_held = 1;
}

/* The caller goes away (mpu_feed returns): the pump drives what is in flight,
 * started the first time there is something. Without a thread (it could not be
 * made), the parts move in the caller's calls only. */
static void
pump_release(mpu *m)
{
    if (!m->pump_on) {
        if (!m->pump_ready || !pump_work(m))
            return;
        m->pump_stop = 0;
        __atomic_store_n(&m->pump_want, 0, __ATOMIC_SEQ_CST);
        if (pthread_create(&m->pump, NULL, pump_main, m) != 0)
            return;
        m->pump_on = 1;
        m->pump_pid = xfer_pid();
        return;
    }
    if (!m->pump_held)
        return;
    m->pump_held = 0;
    __atomic_store_n(&m->pump_want, 0, __ATOMIC_SEQ_CST);
    pthread_cond_signal(&m->pump_cond);
    pthread_mutex_unlock(&m->pump_lock);
}

/* The pump stops for good (joined). In a child after fork() the thread is the
 * parent's: nothing to stop, and the lock is not touched. */
static void
pump_end(mpu *m)
{
    if (!m->pump_on)
        return;
    m->pump_on = 0;
    if (m->pump_pid != xfer_pid())
        return;
    m->pump_on = 1;
    pump_hold(m);
    m->pump_stop = 1;
    m->pump_held = 0;
    pthread_cond_signal(&m->pump_cond);
    pthread_mutex_unlock(&m->pump_lock);
    pthread_join(m->pump, NULL);
    m->pump_on = 0;
}

/* Takes a running slot off the multi handle, its handle back to the pool. */
static void
slot_stop(mpu *m, mpu_slot *s)
{
    if (s->h == NULL)
        return;
    curl_multi_remove_handle(m->multi, s->h);
    xfer_finish(s->h, &s->call.req, CURLE_ABORTED_BY_CALLBACK);
    xfer_give(&m->client->pool, s->h);
    s->h = NULL;
    m->running--;
}

void
mpu_end(mpu *m)
{
    pump_end(m);
}

void
mpu_free(mpu *m)
{
    int i, own = m->pump_pid == 0 || m->pump_pid == xfer_pid();

    pump_end(m);
    if (m->pump_ready && own) {
        pthread_cond_destroy(&m->pump_cond);
        pthread_mutex_destroy(&m->pump_lock);
    }
    for (i = 0; m->slots && i < m->nslots; i++) {
        slot_stop(m, &m->slots[i]);
        call_free(&m->slots[i].call);
        free(m->slots[i].data);
    }
    if (m->multi)
        curl_multi_cleanup(m->multi);
    free(m->slots);
    free(m->fill);
    free(m->parts);
    free(m->key);
    buf_free(&m->upload_id);
    buf_free(&m->upload_id_q);
    memset(m, 0, sizeof(*m));
    m->failed_slot = -1;
}

/* The upload id goes into every later query: printable ASCII, bounded. */
static int
upload_id_valid(const buf_t *id)
{
    size_t i;

    if (id->len == 0 || id->len > XML_MAX_UPLOAD_ID)
        return 0;
    for (i = 0; i < id->len; i++)
        if ((unsigned char)id->data[i] <= 0x20 || (unsigned char)id->data[i] >= 0x7f)
            return 0;
    return 1;
}

int
mpu_begin(mpu *m, s3_call *k)
{
    const char *err = NULL;
    Client *c = m->client;
    int i, typed = 0;

    /* libcurl would label a POST form-urlencoded, and S3 would keep that as the
     * object's type: S3's own default instead, as a PUT without one gets */
    for (i = 0; i < k->nh; i++)
        typed |= strcasecmp(k->hname[i], "Content-Type") == 0;
    if (!typed && call_add_header(k, "Content-Type", "binary/octet-stream", 19) < 0)
        return -1;
    k->method = "POST";
    k->reply_on_success = 1;   /* a 200 may carry an Error document */
    if (buf_puts(&k->url, "?uploads") < 0) {
        PyErr_NoMemory();
        return -1;
    }
    if (call_perform(k) < 0)
        return -1;
    if (xml_parse_upload_id(k->req.body_out.data ? k->req.body_out.data : "",
                            k->req.body_out.len, &m->upload_id, &err) < 0 ||
        !upload_id_valid(&m->upload_id)) {
        buf_free(&m->upload_id);   /* never shown, never used */
        s3_raise(c->st, (int)k->req.status, "InvalidReply",
                 err ? err : "the UploadId is not printable ASCII", NULL, c->bucket, m->key);
        return -1;
    }
    if (buf_append_uri(&m->upload_id_q, m->upload_id.data, m->upload_id.len, 0) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    m->begun = 1;   /* from here on, a failure aborts the upload the server holds */
    m->parts = calloc(MPU_MAX_PARTS, sizeof(mpu_part));
    if (m->parts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Whether the credentials are due for a renewal (a fetch over the network):
 * asked without the GIL's environment, which does not fetch. */
static int
creds_due(Client *c)
{
    cred_set *s = NULL;
    const char *code = NULL;
    buf_t err = BUF_INIT;
    int rc;

    if (c->cred.anonymous)
        return 0;
    rc = cred_get(&c->cred, 0, NULL, &s, &code, &err);
    buf_free(&err);
    if (rc == 0)
        cred_release(&c->cred, s);
    return rc == 1;
}

int
mpu_prepare(mpu *m)
{
    cred_set *warm = NULL;
    int i;

    if (creds_due(m->client)) {
        /* the fetch runs while the pump drives the parts in flight: a slow
         * credential source stalls no part that has its credentials */
        pump_release(m);
        if (client_creds(m->client, 0, &warm) < 0)
            return -1;
        cred_release(&m->client->cred, warm);
    }
    pump_hold(m);
    for (i = 0; i < m->nslots; i++) {
        mpu_slot *s = &m->slots[i];
        if (s->state == MPU_FREE && s->call.creds && !s->call.creds_refused) {
            /* fresh ones for the next part: a long upload outlives temporary keys */
            cred_release(&m->client->cred, s->call.creds);
            s->call.creds = NULL;
        }
        if ((s->state == MPU_FREE || s->state == MPU_RENEW) && call_take_creds(&s->call) < 0)
            return -1;
        if (s->state == MPU_RENEW) {
            s->state = MPU_QUEUED;
            s->not_before = 0.0;
        }
    }
    m->need_renew = 0;
    return 0;
}

static void
fail(mpu *m, int slot, const char *local_error)
{
    if (m->failed)
        return;
    m->failed = 1;
    m->failed_slot = slot;
    m->local_error = local_error;
}

/* ---- parts ------------------------------------------------------------- */

static size_t
fill_size(const mpu *m)
{
    return m->grow ? mpu_part_size_for(m->part_size, -1, m->next_part) : m->part_size;
}

static int
limit(const mpu *m)
{
    int n = mpu_inflight_limit(fill_size(m), m->max_inflight, m->client->pool.max);

    return n < m->nslots ? n : m->nslots;
}

/* A part's reply has no body worth keeping: whatever comes is dropped, so that
 * a server cannot make it grow memory. */
static int
sink_discard(void *ud, const char *p, size_t n)
{
    (void)ud; (void)p; (void)n;
    return 0;
}

/* The slot's call made ready for part s->number: a new URL and body; the
 * credentials it holds stay. Hashes the part (Content-MD5 and its MD5). */
static int
slot_setup(mpu *m, mpu_slot *s)
{
    cred_set *cr = s->call.creds;
    char query[64];
    unsigned char raw[32];

    s->call.creds = NULL;
    call_free(&s->call);
    snprintf(query, sizeof(query), "?partNumber=%d&uploadId=", s->number);
    if (object_call(m, &s->call, "PUT", query, 1) < 0) {
        s->call.creds = cr;
        return -1;
    }
    s->call.creds = cr;
    s->call.req.sink = sink_discard;   /* SINK_BUFFER calls keep the sink they are given */
    call_set_body(&s->call, s->data, s->len);
    /* Content-MD5 comes from the request layer; its binary form for the ETags */
    if (call_prepare_body(&s->call) < 0 ||
        EVP_DecodeBlock(raw, (const unsigned char *)s->call.content_md5, 24) != 18)
        return -1;
    memcpy(s->md5, raw, 16);
    s->attempt = 1;
    s->not_before = 0.0;
    return 0;
}

/* The server has the part: its ETag checked and kept for the Complete. */
static void
part_done(mpu *m, int i)
{
    mpu_slot *s = &m->slots[i];
    mpu_part *p = &m->parts[s->number - 1];
    size_t len = 0, j;
    const char *e = xfer_header(&s->call.req, "etag", &len);

    if (e == NULL) {
        /* a server that names no ETag: the MD5 is what S3 would have said */
        static const char digits[] = "0123456789abcdef";
        p->etag[0] = '"';
        for (j = 0; j < 16; j++) {
            p->etag[1 + 2 * j] = digits[s->md5[j] >> 4];
            p->etag[2 + 2 * j] = digits[s->md5[j] & 15];
        }
        p->etag[33] = '"';
        p->etag[34] = '\0';
    } else {
        if (len == 0 || len >= sizeof(p->etag)) {
            fail(m, i, "a part's ETag is empty or too long");
            return;
        }
        for (j = 0; j < len; j++) {
            if ((unsigned char)e[j] < 0x20 || (unsigned char)e[j] >= 0x7f) {
                fail(m, i, "a part's ETag holds control or non-ASCII characters");
                return;
            }
        }
        if (m->etag_md5 && !mpu_etag_opaque(&s->call.req) &&
            mpu_etag_is_md5(e, len, s->md5) == 0) {
            m->mismatch = !m->failed;
            fail(m, i, "a part's ETag is not the MD5 of the bytes sent");
            return;
        }
        memcpy(p->etag, e, len);
        p->etag[len] = '\0';
    }
    memcpy(p->md5, s->md5, 16);
    s->state = MPU_FREE;
    m->inflight--;
    /* a slot beyond what the budget allows now (parts grew) gives its memory back */
    if (i >= limit(m)) {
        free(s->data);
        s->data = NULL;
        s->cap = 0;
    }
}

/* Starts the queued parts whose time has come, each on an extra handle of the
 * pool's, never a counted one: parts stay in flight between write() calls (the
 * pump drives them then), and a counted handle held by them would make a call
 * from the caller's thread (or a second Writer there) wait for the pool for as
 * long as the upload stays open. The slots bound the parts in flight (the pool's size by default); a
 * pooled handle would bring no connection either: on a multi handle,
 * connections live in the multi handle's cache. */
static int
start_ready(mpu *m, double now)
{
    int i;

    for (i = 0; i < m->nslots; i++) {
        mpu_slot *s = &m->slots[i];
        CURL *h;
        if (s->state != MPU_QUEUED || s->not_before > now)
            continue;
        h = xfer_take_extra(&m->client->pool, &m->client->opts);
        if (h == NULL) {
            fail(m, i, "cannot create a connection handle");
            return -1;
        }
        if (call_attempt_begin(&s->call) < 0) {
            xfer_give(&m->client->pool, h);
            fail(m, i, NULL);
            return -1;
        }
        xfer_setup(h, &m->client->opts, &s->call.req);
        if (curl_multi_add_handle(m->multi, h) != CURLM_OK) {
            xfer_finish(h, &s->call.req, CURLE_FAILED_INIT);
            xfer_give(&m->client->pool, h);
            fail(m, i, "cannot add a transfer to the multi handle");
            return -1;
        }
        s->h = h;
        s->state = MPU_RUNNING;
        m->running++;
    }
    return 0;
}

/* Reads what curl says has ended and moves each part on. */
static void
read_done(mpu *m, double now)
{
    CURLMsg *msg;
    int left, i;

    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        CURL *h = msg->easy_handle;
        CURLcode result = msg->data.result;
        mpu_slot *s = NULL;
        double delay = 0.0;
        int rc, next;

        if (msg->msg != CURLMSG_DONE)
            continue;
        for (i = 0; i < m->nslots; i++)
            if (m->slots[i].h == h)
                s = &m->slots[i];
        if (s == NULL)
            continue;
        i = (int)(s - m->slots);
        rc = xfer_finish(h, &s->call.req, result);
        curl_multi_remove_handle(m->multi, h);
        xfer_give(&m->client->pool, h);
        s->h = NULL;
        m->running--;
        next = call_attempt_end(&s->call, rc, &s->attempt, &delay);
        if (next == CALL_AGAIN) {
            s->state = MPU_QUEUED;
            s->not_before = now + delay;
        } else if (next == CALL_RENEW) {
            s->state = MPU_RENEW;
            m->need_renew = 1;
        } else if (s->call.ok) {
            part_done(m, i);
        } else {
            fail(m, i, NULL);
        }
    }
}

/* One pass over the transfers: start what may start, read what ended. */
static void
drive_pass(mpu *m)
{
    int still = 0;

    if (!m->failed && start_ready(m, now_s()) == 0)
        curl_multi_perform(m->multi, &still);
    if (!m->failed)
        read_done(m, now_s());
}

/* Waits for one of ours to move or end, or a retry's time, a second at most. */
static void
drive_wait(mpu *m)
{
    double now = now_s(), wake = now + 1.0;
    long timeout_ms;
    int i;

    for (i = 0; i < m->nslots; i++)
        if (m->slots[i].state == MPU_QUEUED && m->slots[i].not_before > now &&
            m->slots[i].not_before < wake)
            wake = m->slots[i].not_before;
    timeout_ms = wake > now ? (long)((wake - now) * 1000.0) + 1 : 0;
    if (timeout_ms > 0 || m->running > 0)
        curl_multi_poll(m->multi, NULL, 0, (int)(timeout_ms > 1000 ? 1000 : timeout_ms), NULL);
}

int
mpu_drive(mpu *m, int wait_all)
{
    int busy;

    pump_hold(m);
    for (;;) {
        drive_pass(m);
        if (m->failed)
            return -1;
        if (m->need_renew)
            return 1;
        busy = wait_all ? m->inflight > 0 : m->inflight >= limit(m);
        if (wait_all < 0 || !busy)
            return 0;
        drive_wait(m);
    }
}

/* The part being filled goes: into a free slot (waiting for one), hashed, queued.
 * 0, 1 (renew first; the part stays where it is), -1 failed. */
static int
add_part(mpu *m)
{
    mpu_slot *s = NULL;
    char *t;
    size_t tc;
    int i, rc;

    if (m->next_part > MPU_MAX_PARTS) {
        fail(m, -1, "the upload needs more than 10,000 parts: give a size_hint or a larger "
                    "part_size");
        return -1;
    }
    while (m->inflight >= limit(m))
        if ((rc = mpu_drive(m, 0)) != 0)
            return rc;
    for (i = 0; i < m->nslots && s == NULL; i++)
        if (m->slots[i].state == MPU_FREE)
            s = &m->slots[i];
    if (s == NULL) {
        fail(m, -1, "no free part slot");
        return -1;
    }
    /* the buffers change places: the bytes are never copied twice */
    t = s->data, s->data = m->fill, m->fill = t;
    tc = s->cap, s->cap = m->fill_cap, m->fill_cap = tc;
    s->len = m->fill_len;
    m->fill_len = 0;
    s->number = m->next_part++;
    if (slot_setup(m, s) < 0) {
        fail(m, -1, "out of memory");
        return -1;
    }
    s->state = MPU_QUEUED;
    m->inflight++;
    return 0;
}

size_t
mpu_feed(mpu *m, const char *p, size_t n, int *state)
{
    size_t taken = 0;

    pump_hold(m);
    *state = m->failed ? -1 : 0;
    if (m->failed || m->finished)
        return 0;
    for (;;) {
        size_t want = fill_size(m), take;
        if (m->fill_len >= want) {
            if (add_part(m) != 0) {
                *state = m->failed ? -1 : 1;
                return taken;
            }
            continue;
        }
        if (taken == n)
            break;
        if (m->fill_cap < want) {
            /* contents do not matter here: free and allocate, no copy */
            free(m->fill);
            m->fill = malloc(want);
            m->fill_cap = m->fill ? want : 0;
            if (m->fill == NULL) {
                fail(m, -1, "out of memory");
                *state = -1;
                return taken;
            }
        }
        take = want - m->fill_len < n - taken ? want - m->fill_len : n - taken;
        memcpy(m->fill + m->fill_len, p + taken, take);
        m->fill_len += take;
        taken += take;
        m->total += take;
    }
    mpu_drive(m, -1);
    /* read before the pump may change it */
    *state = m->failed ? -1 : m->need_renew ? 1 : 0;
    if (*state == 0)
        pump_release(m);   /* the parts move on while the caller is away */
    return taken;
}

int
mpu_finish(mpu *m)
{
    int rc;

    pump_hold(m);
    if (m->failed)
        return -1;
    if (m->fill_len > 0 && (rc = add_part(m)) != 0)
        return rc;
    rc = mpu_drive(m, 1);
    if (rc == 0)
        m->finished = 1;
    return rc;
}

/* ---- the end ----------------------------------------------------------- */

/* The parts' connections live in the multi handle's cache (a handle added to a
 * multi handle uses that one's): closed once nothing is in flight any more, not
 * kept open for as long as the Writer object lives. */
static void
close_connections(mpu *m)
{
    if (m->multi && m->running == 0) {
        curl_multi_cleanup(m->multi);
        m->multi = NULL;
    }
}

static int
xml_escaped(buf_t *b, const char *s)
{
    for (; *s; s++) {
        int rc;
        switch (*s) {
        case '&': rc = buf_puts(b, "&amp;"); break;
        case '<': rc = buf_puts(b, "&lt;"); break;
        case '>': rc = buf_puts(b, "&gt;"); break;
        case '"': rc = buf_puts(b, "&quot;"); break;
        default: rc = buf_putc(b, *s);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* The MD5 of the parts' MD5s, which a multipart ETag is on S3. */
static int
parts_md5(mpu *m, int count, unsigned char out[16])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    int i, rc = -1;

    if (ctx == NULL || EVP_DigestInit_ex(ctx, m->client->st->md5, NULL) != 1)
        goto done;
    for (i = 0; i < count; i++)
        if (EVP_DigestUpdate(ctx, m->parts[i].md5, 16) != 1)
            goto done;
    if (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != 16)
        goto done;
    rc = 0;
done:
    EVP_MD_CTX_free(ctx);
    return rc;
}

int
mpu_ours_after_retry(Client *c, const char *key, const unsigned char md5[16], int count,
                     char etag_out[MPU_ETAG_MAX])
{
    s3_call k;
    const char *etag;
    size_t len = 0, key_len = strlen(key);
    int rc = 0;
    PyObject *exc = s3_exc_take();

    call_init(&k, c, "HEAD");
    k.key = malloc(key_len + 1);
    if (k.key == NULL)
        goto done;
    memcpy(k.key, key, key_len + 1);
    if (call_put_base(&k) < 0 || buf_append_uri(&k.url, key, key_len, 1) < 0)
        goto done;
    if (call_perform(&k) < 0) {
        PyErr_Clear();
        goto done;
    }
    etag = xfer_header(&k.req, "etag", &len);
    if (etag == NULL || len >= MPU_ETAG_MAX || mpu_etag_opaque(&k.req))
        goto done;
    if ((count == 0 ? mpu_etag_is_md5(etag, len, md5)
                    : etag_is_multipart(etag, len, md5, count)) == 1) {
        memcpy(etag_out, etag, len);
        etag_out[len] = '\0';
        rc = 1;
    }
done:
    call_free(&k);
    if (rc == 1)
        Py_XDECREF(exc);
    else
        s3_exc_restore(exc);
    return rc;
}

PyObject *
mpu_raise_mismatch(Client *c, const char *key, const char *what)
{
    s3_call d;
    mpu tmp;

    /* never leave wrong data stored: the object goes, whatever that costs */
    memset(&tmp, 0, sizeof(tmp));
    tmp.client = c;
    tmp.key = (char *)key;
    tmp.key_len = strlen(key);
    if (object_call(&tmp, &d, "DELETE", "", 0) == 0 && call_perform(&d) < 0)
        PyErr_Clear();
    call_free(&d);
    return s3_raise(c->st, 0, "ChecksumMismatch", what, NULL, c->bucket, key);
}

PyObject *
mpu_complete(mpu *m)
{
    Client *c = m->client;
    s3_call k;
    buf_t body = BUF_INIT;
    unsigned char md5[16];
    char stored[MPU_ETAG_MAX];
    const char *etag;
    size_t len = 0;
    int count = m->next_part - 1, i, check, earlier = 0;
    PyObject *res = NULL, *exc;

    pump_hold(m);
    memset(&k, 0, sizeof(k));
    if (object_call(m, &k, "POST", "?uploadId=", 1) < 0 ||
        buf_puts(&body, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/"
                        "2006-03-01/\">") < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < count; i++) {
        if (buf_printf(&body, "<Part><PartNumber>%d</PartNumber><ETag>", i + 1) < 0 ||
            xml_escaped(&body, m->parts[i].etag) < 0 ||
            buf_puts(&body, "</ETag></Part>") < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    if (buf_puts(&body, "</CompleteMultipartUpload>") < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (call_add_header(&k, "Content-Type", "application/xml", 15) < 0 ||
        (m->if_none_match && call_add_header(&k, "If-None-Match", "*", 1) < 0))
        goto done;
    call_set_body(&k, body.data, body.len);
    k.reply_on_success = 1;   /* S3 may answer 200 and an Error document */
    if (call_perform(&k) < 0) {
        /* refused as if an earlier attempt had committed (a retry of ours, or
         * libcurl's own resend on a kept-alive connection that died): if one
         * handed over the body and the object stored is ours, it had */
        if (!k.sent_before ||
            !((k.req.status == 412 && m->if_none_match) || k.req.status == 404 ||
              (k.have_reply && strcmp(k.reply.code, "NoSuchUpload") == 0)) ||
            parts_md5(m, count, md5) < 0 || mpu_ours_after_retry(c, m->key, md5, count, stored) != 1)
            goto done;
        earlier = 1;
    }
    m->finished = 2;   /* the object exists: an abort no longer helps */
    close_connections(m);
    if (earlier) {
        etag = stored;
        len = strlen(stored);
    } else if (k.have_reply && k.reply.etag[0]) {
        etag = k.reply.etag;
        len = strlen(etag);
    } else {
        etag = xfer_header(&k.req, "etag", &len);   /* NULL: nothing to check against */
    }
    if (parts_md5(m, count, md5) < 0) {
        PyErr_SetString(PyExc_MemoryError, "cannot hash the parts' MD5s");
        goto done;
    }
    check = etag && m->etag_md5 && !mpu_etag_opaque(&k.req)
                ? etag_is_multipart(etag, len, md5, count)
                : -1;
    if (check == 0) {
        mpu_raise_mismatch(c, m->key, "the multipart ETag is not the MD5 of the parts sent");
        goto done;
    }
    res = PyDict_New();
    if (res == NULL ||
        call_dict_set_take(res, "ETag", etag ? call_str_n(etag, len) : Py_NewRef(Py_None)) < 0 ||
        call_dict_set_take(res, "Parts", PyLong_FromLong(count)) < 0 ||
        call_dict_set_take(res, "Size", PyLong_FromUnsignedLongLong(m->total)) < 0)
        Py_CLEAR(res);
done:
    if (res == NULL && m->finished != 2) {
        /* not committed: the upload is aborted, the first exception kept */
        exc = s3_exc_take();
        if (mpu_abort(m) < 0)
            PyErr_Clear();
        s3_exc_restore(exc);
    }
    buf_free(&body);
    call_free(&k);
    return res;
}

int
mpu_abort(mpu *m)
{
    s3_call k;
    int i, rc = -1;

    pump_hold(m);
    if (!m->begun || m->aborted || m->finished == 2)
        return 0;
    for (i = 0; i < m->nslots; i++) {
        slot_stop(m, &m->slots[i]);
        if (m->slots[i].state != MPU_FREE) {
            m->slots[i].state = MPU_FREE;
            m->inflight--;
        }
    }
    m->aborted = 1;
    close_connections(m);
    if (object_call(m, &k, "DELETE", "?uploadId=", 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (call_perform(&k) < 0) {
        /* already gone is what was wanted */
        if (k.req.status == 404 || (k.have_reply && strcmp(k.reply.code, "NoSuchUpload") == 0)) {
            PyErr_Clear();
            rc = 0;
        }
        goto done;
    }
    rc = 0;
done:
    call_free(&k);
    return rc;
}

PyObject *
mpu_raise(mpu *m)
{
    Client *c = m->client;

    pump_hold(m);
    if (m->mismatch)
        return s3_raise(c->st, 0, "ChecksumMismatch", m->local_error, NULL, c->bucket, m->key);
    if (m->failed_slot >= 0 && m->local_error == NULL)
        return call_raise(&m->slots[m->failed_slot].call);
    return s3_raise(c->st, 0, "ClientError", m->local_error ? m->local_error : "upload failed",
                    NULL, c->bucket, m->key);
}
