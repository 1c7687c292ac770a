#include "transfer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/* The process's id, kept by a fork handler: every call compares it with the id
 * its pool was made in, and getpid() is a system call each time. */
static volatile pid_t current_pid;

static void
after_fork_child(void)
{
    current_pid = getpid();
}

pid_t
xfer_pid(void)
{
    return current_pid;
}

int
xfer_global_init(void)
{
    current_pid = getpid();
    if (pthread_atfork(NULL, NULL, after_fork_child) != 0)
        return -1;
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static void
share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
    xfer_pool *p = ud;

    (void)h; (void)access;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&p->share_locks[data]);
}

static void
share_unlock(CURL *h, curl_lock_data data, void *ud)
{
    xfer_pool *p = ud;

    (void)h;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&p->share_locks[data]);
}

/* A share handle for DNS and TLS sessions, with locks that start unlocked. */
static int
share_setup(xfer_pool *p)
{
    int i;

    p->share = curl_share_init();
    if (p->share == NULL)
        return -1;
    for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&p->share_locks[i], NULL);
    curl_share_setopt(p->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(p->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(p->share, CURLSHOPT_USERDATA, p);
    curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return 0;
}

int
xfer_pool_init(xfer_pool *p, int max)
{
    memset(p, 0, sizeof(*p));
    if (max < 1)
        max = 1;
    p->idle = calloc((size_t)max, sizeof(CURL *));
    p->idle_multi = calloc((size_t)max, sizeof(CURLM *));
    p->idle_multi_sock = calloc((size_t)max, sizeof(curl_socket_t));
    p->idle_multi_spare = calloc((size_t)max, sizeof(CURL *));
    if (p->idle == NULL || p->idle_multi == NULL || p->idle_multi_sock == NULL ||
        p->idle_multi_spare == NULL || share_setup(p) < 0) {
        free(p->idle);
        free(p->idle_multi);
        free(p->idle_multi_sock);
        free(p->idle_multi_spare);
        return -1;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->max = max;
    p->pid = xfer_pid();
    p->ready = 1;
    return 0;
}

int
xfer_pool_check_fork(xfer_pool *p)
{
    if (!p->ready || p->pid == xfer_pid())
        return 0;
    /* The child has one thread, and the inherited locks may be in any state.
     * The inherited handles and share handle are dropped without cleanup. */
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->nidle = 0;
    p->nidle_multi = 0;
    p->created = 0;
    p->new_connections = 0;
    p->pid = xfer_pid();
    if (share_setup(p) < 0) {
        p->ready = 0;
        return -1;
    }
    return 1;
}

void
xfer_pool_destroy(xfer_pool *p)
{
    int i;

    if (!p->ready)
        return;
    if (p->pid == xfer_pid()) {
        for (i = 0; i < p->nidle; i++)
            curl_easy_cleanup(p->idle[i]);
        for (i = 0; i < p->nidle_multi; i++) {
            curl_multi_cleanup(p->idle_multi[i]);
            if (p->idle_multi_spare[i])
                curl_easy_cleanup(p->idle_multi_spare[i]);
        }
        curl_share_cleanup(p->share);
        for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
            pthread_mutex_destroy(&p->share_locks[i]);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
    }
    /* else: a child that never made a request; the handles are the parent's */
    free(p->idle);
    free(p->idle_multi);
    free(p->idle_multi_sock);
    free(p->idle_multi_spare);
    memset(p, 0, sizeof(*p));
}

/* Options that stay for the handle's life: set once, never reset, so the
 * handle's connection and TLS session survive from one request to the next. */
static CURL *
new_handle(xfer_pool *p, const xfer_opts *o)
{
    CURL *h = curl_easy_init();

    if (h == NULL)
        return NULL;
    curl_easy_setopt(h, CURLOPT_SHARE, p->share);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);   /* keys may hold "./" and "../" */
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(h, CURLOPT_MAXCONNECTS, 1L);
    /* one request per connection at a time, as the pool assumes: no HTTP/2 over TLS */
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    if (o->user_agent)
        curl_easy_setopt(h, CURLOPT_USERAGENT, o->user_agent);
    if (o->proxy) {
        curl_easy_setopt(h, CURLOPT_PROXY, o->proxy);
        /* a proxy given outright serves every host: NO_PROXY is for the
         * environment's proxies (botocore does the same) */
        curl_easy_setopt(h, CURLOPT_NOPROXY, "");
        curl_easy_setopt(h, CURLOPT_PROXY_SSL_VERIFYPEER, o->verify ? 1L : 0L);
        curl_easy_setopt(h, CURLOPT_PROXY_SSL_VERIFYHOST, o->verify ? 2L : 0L);
        if (o->ca_bundle)
            curl_easy_setopt(h, CURLOPT_PROXY_CAINFO, o->ca_bundle);
    } else {
        curl_easy_setopt(h, CURLOPT_PROXY, o->env_proxy ? o->env_proxy : "");   /* "": none */
        curl_easy_setopt(h, CURLOPT_NOPROXY, o->env_noproxy ? o->env_noproxy : "");
    }
    return h;
}

CURL *
xfer_take(xfer_pool *p, const xfer_opts *o, int wait)
{
    CURL *h = NULL;
    int create = 0;

    pthread_mutex_lock(&p->lock);
    while (wait && p->nidle == 0 && p->created >= p->max)
        pthread_cond_wait(&p->cond, &p->lock);
    if (p->nidle > 0) {
        h = p->idle[--p->nidle];
    } else if (p->created < p->max) {
        p->created++;
        create = 1;
    }
    pthread_mutex_unlock(&p->lock);
    if (create && (h = new_handle(p, o)) == NULL) {
        pthread_mutex_lock(&p->lock);
        p->created--;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
    return h;
}

CURL *
xfer_take_extra(xfer_pool *p, const xfer_opts *o)
{
    return new_handle(p, o);
}

void
xfer_count_connects(xfer_pool *p, CURL *h)
{
    long connects = 0;

    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
    pthread_mutex_lock(&p->lock);
    p->new_connections += connects;
    pthread_mutex_unlock(&p->lock);
}

void
xfer_give(xfer_pool *p, CURL *h)
{
    long connects = 0;
    int keep;

    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
    pthread_mutex_lock(&p->lock);
    /* a handle beyond what the idle list holds (an extra one) is closed */
    keep = p->nidle < p->max;
    if (keep)
        p->idle[p->nidle++] = h;
    p->new_connections += connects;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (!keep)
        curl_easy_cleanup(h);
}

CURLM *
xfer_multi_take(xfer_pool *p, curl_socket_t *sock, CURL **spare)
{
    CURLM *m = NULL;

    *sock = CURL_SOCKET_BAD;
    *spare = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->nidle_multi > 0) {
        m = p->idle_multi[--p->nidle_multi];
        *sock = p->idle_multi_sock[p->nidle_multi];
        *spare = p->idle_multi_spare[p->nidle_multi];
    }
    pthread_mutex_unlock(&p->lock);
    if (m == NULL && (m = curl_multi_init()) != NULL)
        curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 1L);
    return m;
}

void
xfer_multi_give(xfer_pool *p, CURLM *m, curl_socket_t sock, CURL *spare)
{
    int keep;

    pthread_mutex_lock(&p->lock);
    keep = p->nidle_multi < p->max;
    if (keep) {
        p->idle_multi_sock[p->nidle_multi] = sock;
        p->idle_multi_spare[p->nidle_multi] = spare;
        p->idle_multi[p->nidle_multi++] = m;
    }
    pthread_mutex_unlock(&p->lock);
    if (!keep) {
        curl_multi_cleanup(m);   /* closes the connection it kept */
        if (spare)
            curl_easy_cleanup(spare);
    }
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double
xfer_now(void)
{
    return now_s();
}

/* The read timeout: a transfer fails when no byte moved either way (headers,
 * body up or down) for read_timeout_s. libcurl's own low-speed check averages
 * over its last 5 s, so after an upload it would fire about 5 s late. A
 * transfer our sink paused is waiting on its reader, not on the server. */
static int
on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
            curl_off_t ulnow)
{
    xfer_request *r = ud;
    double now = now_s();

    (void)dltotal; (void)ultotal;
    if (!r->connected || r->paused || dlnow + ulnow != r->moved) {
        r->moved = dlnow + ulnow;
        r->last_move = now;
        return 0;
    }
    if (now - r->last_move >= (double)r->stall_limit_s) {
        r->stalled = 1;
        return 1;
    }
    return 0;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* Connected (or reusing a connection): the connect timeout's part is over, the
 * read timeout's begins. */
static int
on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    xfer_request *r = ud;

    (void)primary_ip; (void)local_ip; (void)primary_port; (void)local_port;
    r->connected = 1;
    r->last_move = now_s();
    return CURL_PREREQFUNC_OK;
}
#endif

/* The ACK of what just arrived goes now, not after the delayed-ACK timer: a server
 * that writes the headers and the body in two sends (Ceph RGW does) holds the body
 * back (Nagle) until the headers are acknowledged, 40 ms on Linux. The flag is not
 * sticky, so it is set again at each response. The socket is the one the handle
 * kept from its last transfer, or the one opened for this one (on_sockopt);
 * best effort: a setsockopt that fails changes nothing. */
static void
ack_now(const xfer_request *r)
{
#ifdef TCP_QUICKACK
    int one = 1;

    if (r->sock != CURL_SOCKET_BAD)
        (void)setsockopt(r->sock, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
#else
    (void)r;
#endif
}

static int
on_sockopt(void *ud, curl_socket_t s, curlsocktype purpose)
{
    xfer_request *r = ud;

    if (purpose == CURLSOCKTYPE_IPCXN)
        r->sock = s;
    return CURL_SOCKOPT_OK;
}

static size_t
on_header(char *p, size_t size, size_t n, void *ud)
{
    xfer_request *r = ud;
    size_t len = size * n, l = len;

    r->last_move = now_s();

    while (l > 0 && (p[l - 1] == '\n' || p[l - 1] == '\r'))
        l--;
    if (l >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* a new response (after a 100 Continue or an interim reply): its three
         * digits, read inside the line (curl's is not NUL-terminated) */
        const char *sp = memchr(p, ' ', l);
        size_t i = sp ? (size_t)(sp - p) + 1 : l, digits = 0;
        long status = 0;
        for (; i < l && digits < 3 && p[i] >= '0' && p[i] <= '9'; i++, digits++)
            status = status * 10 + (p[i] - '0');
        buf_clear(&r->head);
        r->status = digits == 3 && (i == l || p[i] == ' ') ? status : 0;
        ack_now(r);
        return len;
    }
    if (l == 0)
        return len;
    if (buf_append(&r->head, p, l) < 0 || buf_putc(&r->head, '\n') < 0)
        return 0;
    return len;
}

static size_t
on_body(char *p, size_t size, size_t n, void *ud)
{
    xfer_request *r = ud;
    size_t len = size * n;

    r->last_move = now_s();
    if (r->status >= 200 && r->status < 300) {
        if (r->sink) {
            int rc = r->sink(r->sink_ud, p, len);
            if (rc < 0) {
                r->sink_failed = 1;
                return 0;
            }
            r->paused = rc > 0;
            return rc > 0 ? CURL_WRITEFUNC_PAUSE : len;
        }
        if (len > XFER_REPLY_BODY_MAX - r->body_out.len) {
            r->sink_failed = 1;
            return 0;
        }
        return buf_append(&r->body_out, p, len) < 0 ? 0 : len;
    }
    /* an error document: keep the start of it, drop the rest */
    if (r->body_out.len < XFER_ERROR_BODY_MAX) {
        size_t room = XFER_ERROR_BODY_MAX - r->body_out.len;
        if (buf_append(&r->body_out, p, len < room ? len : room) < 0)
            return 0;
    }
    return len;
}

static size_t
on_read(char *dst, size_t size, size_t n, void *ud)
{
    xfer_request *r = ud;
    size_t want = size * n, left = r->body_len - r->body_pos;

    if (want > left)
        want = left;
    if (want)
        memcpy(dst, r->body + r->body_pos, want);
    r->body_pos += want;
    return want;
}

static int
on_seek(void *ud, curl_off_t offset, int origin)
{
    xfer_request *r = ud;

    if (origin != SEEK_SET || offset < 0 || (size_t)offset > r->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    if ((size_t)offset < r->body_pos)
        r->rewound = 1;
    r->body_pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

void
xfer_setup(CURL *h, const xfer_opts *o, xfer_request *r)
{
    int upload = r->body != NULL || strcmp(r->method, "PUT") == 0;

    /* the connection the handle kept, if any (libcurl knows it between transfers
     * only); a new one replaces it in on_sockopt */
    r->sock = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &r->sock) != CURLE_OK)
        r->sock = CURL_SOCKET_BAD;
    r->status = 0;
    r->curl_rc = CURLE_OK;
    r->errbuf[0] = '\0';
    r->sink_failed = 0;
    r->body_pos = 0;
    r->rewound = 0;
    r->last_move = now_s();
    r->moved = 0;
    r->stall_limit_s = o->read_timeout_s;
    r->connected = LIBCURL_VERSION_NUM < 0x075000;   /* no PREREQFUNCTION: watch it all */
    r->paused = 0;
    r->stalled = 0;
    buf_clear(&r->head);
    buf_clear(&r->body_out);
    /* the method: undo whatever the handle's previous request set */
    curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 0L);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
    if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (upload) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
        if (strcmp(r->method, "PUT") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }
    curl_easy_setopt(h, CURLOPT_URL, r->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, r);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
    curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, r);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_PRIVATE, r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    /* no CURLOPT_LOW_SPEED_*: on_progress keeps the read timeout to the second */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 0L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, r);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
#if LIBCURL_VERSION_NUM >= 0x075000
    curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(h, CURLOPT_PREREQDATA, r);
#endif
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, o->verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
    /* only when given: a NULL would also drop libcurl's built-in CA bundle */
    if (o->ca_bundle)
        curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_bundle);
}

int
xfer_finish(CURL *h, xfer_request *r, CURLcode rc)
{
    r->curl_rc = rc;
    /* no pointer into this request may outlive it */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_READDATA, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, NULL);
    curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, NULL);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, NULL);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, NULL);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 1L);
#if LIBCURL_VERSION_NUM >= 0x075000
    curl_easy_setopt(h, CURLOPT_PREREQDATA, NULL);
#endif
    curl_easy_setopt(h, CURLOPT_PRIVATE, NULL);
    if (r->stalled && r->curl_rc == CURLE_ABORTED_BY_CALLBACK) {
        /* a timeout like libcurl's own: retried, and reported as a Timeout */
        r->curl_rc = CURLE_OPERATION_TIMEDOUT;
        snprintf(r->errbuf, sizeof(r->errbuf),
                 "no data moved for %ld s (the read timeout)", r->stall_limit_s);
    }
    if (r->curl_rc != CURLE_OK) {
        if (r->errbuf[0] == '\0') {
            strncpy(r->errbuf, curl_easy_strerror(r->curl_rc), sizeof(r->errbuf) - 1);
            r->errbuf[sizeof(r->errbuf) - 1] = '\0';
        }
        buf_hide_userinfo(r->errbuf);
        return -1;
    }
    return 0;
}

int
xfer_perform(xfer_pool *p, const xfer_opts *o, xfer_request *r)
{
    CURL *h = xfer_take(p, o, 1);
    int rc;

    if (h == NULL) {
        r->curl_rc = CURLE_OUT_OF_MEMORY;
        strcpy(r->errbuf, "cannot create a connection handle");
        return -1;
    }
    xfer_setup(h, o, r);
    rc = xfer_finish(h, r, curl_easy_perform(h));
    xfer_give(p, h);
    return rc;
}

void
xfer_request_free(xfer_request *r)
{
    buf_free(&r->head);
    buf_free(&r->body_out);
}

const char *
xfer_header(const xfer_request *r, const char *name, size_t *len)
{
    return xfer_header_in(&r->head, name, len);
}

const char *
xfer_header_in(const buf_t *head, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = head->data, *end;

    if (p == NULL)
        return NULL;   /* a reply without header lines (and NULL + 0 is undefined) */
    end = p + head->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
                ve--;
            *len = (size_t)(ve - v);
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

/* botocore's throttling codes; with 429 their backoff starts at 1 s */
static const char *const throttling_codes[] = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException", NULL,
};

/* transient: retried with a backoff that starts at 50 ms */
static const char *const transient_codes[] = {
    "RequestTimeout", "RequestTimeoutException", "InternalError", NULL,
};

static int
code_in(const char *code, const char *const *list)
{
    int i;

    if (code && code[0])
        for (i = 0; list[i]; i++)
            if (strcmp(code, list[i]) == 0)
                return 1;
    return 0;
}

int
xfer_retryable(const xfer_request *r, int transport_failed, const char *code)
{
    if (transport_failed) {
        switch (r->curl_rc) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SSL_CONNECT_ERROR:
            return 1;
        default:
            return 0;
        }
    }
    if (r->status == 429 || r->status == 500 || r->status == 502 || r->status == 503 ||
        r->status == 504)
        return 1;
    return code_in(code, throttling_codes) || code_in(code, transient_codes);
}

int
xfer_throttled(const xfer_request *r, int transport_failed, const char *code)
{
    if (transport_failed)
        return 0;
    return r->status == 429 || code_in(code, throttling_codes);
}

#define BACKOFF_MAX_S 20.0
#define RETRY_AFTER_MAX_EXTRA_S 5.0

double
xfer_backoff_delay(int retry, int throttled, double jitter, double retry_after)
{
    double window = throttled ? 1.0 : 0.05, t;
    int i;

    for (i = 1; i < retry && window < BACKOFF_MAX_S; i++)
        window *= 2.0;
    if (window > BACKOFF_MAX_S)
        window = BACKOFF_MAX_S;
    if (!(jitter >= 0.0))
        jitter = 0.0;
    if (jitter > 1.0)
        jitter = 1.0;
    t = jitter * window;
    if (retry_after > t)
        t = retry_after < t + RETRY_AFTER_MAX_EXTRA_S ? retry_after : t + RETRY_AFTER_MAX_EXTRA_S;
    return t;
}

double
xfer_backoff_seconds(const xfer_request *r, int attempt, int transport_failed, const char *code)
{
    struct timespec now;
    unsigned int seed;
    double retry_after = -1.0;
    size_t len = 0;
    const char *h = transport_failed ? NULL : xfer_header(r, "x-amz-retry-after", &len);

    if (h && len > 0 && len < 10 && strspn(h, "0123456789") >= len)
        retry_after = strtol(h, NULL, 10) / 1000.0;   /* milliseconds */
    clock_gettime(CLOCK_MONOTONIC, &now);
    seed = (unsigned int)now.tv_nsec ^ (unsigned int)now.tv_sec ^ (unsigned int)pthread_self();
    return xfer_backoff_delay(attempt, xfer_throttled(r, transport_failed, code),
                              (double)rand_r(&seed) / ((double)RAND_MAX + 1.0), retry_after);
}

void
xfer_sleep(double s)
{
    struct timespec ts;

    if (!(s > 0.0))
        return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

