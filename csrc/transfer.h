/* transfer: HTTP on libcurl. A pool of keep-alive easy handles per Client,
 * a share handle for DNS and TLS sessions, one attempt per xfer_perform().
 *
 * Everything here is pure C and meant to run with the GIL released; the pool is
 * guarded by its own mutex, so any number of threads may use one pool. Each
 * easy handle keeps its own connection (libcurl cannot share a connection cache
 * between concurrent threads); the pool hands out the most recently used handle
 * first so its connection is the one still alive. */
#ifndef S3_TRANSFER_H
#define S3_TRANSFER_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include <curl/curl.h>

#include "buf.h"

typedef struct {
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    CURL **idle;          /* LIFO of handles not in use */
    int nidle;
    CURLM **idle_multi;   /* LIFO of multi handles not in use, each with its connection */
    curl_socket_t *idle_multi_sock;  /* that connection's socket, as far as known */
    CURL **idle_multi_spare;         /* an easy handle kept with it, or NULL */
    int nidle_multi;
    int created;
    int max;
    long new_connections; /* TCP connections opened, for tests and benchmarks */
    pid_t pid;            /* the process the handles belong to */
    int ready;
} xfer_pool;

typedef struct {
    long connect_timeout_ms;
    long read_timeout_s;   /* a transfer that stalls this long fails */
    int verify;            /* TLS peer and host name */
    const char *ca_bundle; /* NULL: libcurl's own (none in scripts/build-deps' build) */
    /* set once per handle: they must not change while the pool lives */
    const char *proxy;      /* NULL: env_proxy and env_noproxy */
    const char *env_proxy;  /* the environment's proxy ("": none) and NO_PROXY, read
                             * once with the GIL: libcurl would read them itself on
                             * every transfer, without it, racing os.environ */
    const char *env_noproxy;
    const char *user_agent; /* NULL: none */
} xfer_opts;

/* Receives the body of a 2xx reply; returns 0, -1 to abort the transfer, or 1 to
 * pause it (the same bytes come again after curl_easy_pause(CURLPAUSE_CONT): the
 * sink must not have kept them). Pausing is for transfers on a multi handle. */
typedef int (*xfer_sink)(void *ud, const char *p, size_t n);

#define XFER_ERROR_BODY_MAX (1 << 20)
/* A 2xx body kept without a sink (an S3 reply document) longer than this fails
 * the transfer (sink_failed): no S3 reply is near it, a server that never ends
 * one must not grow memory. */
#define XFER_REPLY_BODY_MAX (1 << 20)

typedef struct {
    /* in: owned by the caller */
    const char *method;            /* GET HEAD PUT POST DELETE */
    const char *url;
    struct curl_slist *headers;
    const char *body;              /* PUT and POST */
    size_t body_len;
    xfer_sink sink;                /* NULL: a 2xx body goes into `body_out` */
    void *sink_ud;
    /* out: reset by each xfer_perform() */
    curl_socket_t sock;            /* the attempt's socket, as far as known */
    long status;
    buf_t head;                    /* header lines of the final response, "name: value\n" */
    buf_t body_out;                /* 2xx body without a sink; error bodies (capped) */
    CURLcode curl_rc;
    char errbuf[CURL_ERROR_SIZE];
    int sink_failed;
    size_t body_pos;
    int rewound;                   /* libcurl took the body back to send it again
                                    * (its own resend on a kept-alive connection
                                    * that died, not seen as an attempt) */
    /* the read timeout's watch: when a byte last moved either way (monotonic
     * seconds), the body bytes counted then, and whether the sink paused us */
    double last_move;
    curl_off_t moved;
    long stall_limit_s;
    int connected;                 /* the connect timeout's phase is over */
    int paused;
    int stalled;
} xfer_request;

int xfer_global_init(void);                       /* once, at module exec */
/* getpid() without the system call (kept current in a child by a fork handler). */
pid_t xfer_pid(void);
int xfer_pool_init(xfer_pool *p, int max);
void xfer_pool_destroy(xfer_pool *p);             /* all handles must be back */
/* In a child after fork(), abandons what the parent's pool held (its connections
 * are the parent's: they are neither used nor closed) and starts afresh. Call
 * with the GIL held, so one thread does it. 1: renewed, 0: nothing to do (the
 * process that made the pool), -1: out of memory. */
int xfer_pool_check_fork(xfer_pool *p);
/* One attempt: 0 when an HTTP response arrived (whatever its status), -1 on a
 * transport failure (r->curl_rc and r->errbuf say what). Call without the GIL. */
int xfer_perform(xfer_pool *p, const xfer_opts *o, xfer_request *r);
void xfer_request_free(xfer_request *r);

/* For a caller that drives transfers itself on a curl multi handle (several at once,
 * or one that pauses). Take a pooled handle (wait: block until one is free; else
 * NULL when the pool is exhausted), or an extra one outside the pool's count
 * (closed when given back to a full pool); set it up for r (CURLOPT_PRIVATE points
 * to r); when curl says the transfer is done, xfer_finish() with its result
 * (0: a response, -1: transport failure) and, after curl_multi_remove_handle(),
 * xfer_give() it back. All without the GIL. */
CURL *xfer_take(xfer_pool *p, const xfer_opts *o, int wait);
CURL *xfer_take_extra(xfer_pool *p, const xfer_opts *o);
void xfer_setup(CURL *h, const xfer_opts *o, xfer_request *r);
int xfer_finish(CURL *h, xfer_request *r, CURLcode rc);
void xfer_give(xfer_pool *p, CURL *h);
/* What xfer_give() counts of a transfer's new connections, for a handle its
 * driver keeps for the next transfer instead. */
void xfer_count_connects(xfer_pool *p, CURL *h);
/* A multi handle for such a driver. On a multi handle connections live in the
 * multi handle's cache, not the easy handle's: the pool keeps idle multi handles
 * (most recently used first) with the one connection each kept, so that the next
 * driver to the same server reuses it. Give it back with no transfer in it; a
 * full pool closes it. NULL: out of memory. Pure C, any thread. *sock gets the
 * socket of the connection it kept as far as known (xfer_request.sock of its last
 * transfer, given back with it), or CURL_SOCKET_BAD: libcurl tells the socket of a
 * multi handle's connection to no one between transfers. *spare gets the easy
 * handle given back with it (in no multi handle; an extra one, set up for no
 * request), or NULL: a driver's next transfer needs no new handle. */
CURLM *xfer_multi_take(xfer_pool *p, curl_socket_t *sock, CURL **spare);
void xfer_multi_give(xfer_pool *p, CURLM *m, curl_socket_t sock, CURL *spare);

/* The value of a response header (case-insensitive name), or NULL. */
const char *xfer_header(const xfer_request *r, const char *name, size_t *len);
/* The same lookup in header lines kept apart from their request. */
const char *xfer_header_in(const buf_t *head, const char *name, size_t *len);

/* Whether an attempt that ended so is worth another: transport failures that
 * did not come from the sink, 5xx gateways, 429 and the throttling codes. */
int xfer_retryable(const xfer_request *r, int transport_failed, const char *s3_code);
/* Whether a retryable failure is throttling (429, SlowDown and the like), whose
 * backoff starts at 1 s rather than 50 ms. */
int xfer_throttled(const xfer_request *r, int transport_failed, const char *s3_code);
/* The wait in seconds before retry `retry` (1 for the first), as botocore's
 * standard mode computes it: jitter * min(base * 2^(retry-1), 20) with base 1 s
 * for throttling and 50 ms otherwise, jitter in [0, 1); raised towards
 * retry_after (seconds, < 0: none) by at most 5 s. Pure: for the tests too. */
double xfer_backoff_delay(int retry, int throttled, double jitter, double retry_after);
/* Monotonic seconds. */
double xfer_now(void);
/* The wait before attempt `attempt` + 1, as xfer_backoff_delay() says for this
 * reply (its x-amz-retry-after header included) and a random jitter. */
double xfer_backoff_seconds(const xfer_request *r, int attempt, int transport_failed,
                            const char *s3_code);
void xfer_sleep(double seconds);

#endif
