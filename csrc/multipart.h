/* multipart: one multipart upload as a state machine. Parts of a fixed size
 * are filled from the caller's bytes, hashed (Content-MD5, and the binary MD5
 * kept for the final ETag check), signed and sent several at once on one curl
 * multi handle (on extra handles of the pool's, never counted ones: parts stay
 * in flight between the caller's writes); each part retries on its own schedule (a not-before time, no
 * sleeping while others run); the upload is completed with the list of parts,
 * or aborted so that no part stays stored.
 *
 *   mpu_init -> mpu_begin (CreateMultipartUpload) -> { mpu_feed / mpu_drive }*
 *     -> mpu_finish (the last part, every part done) -> mpu_complete
 *   any failure -> mpu_abort (AbortMultipartUpload)
 *
 * Threads and the GIL: an mpu belongs to one thread at a time (the Writer's busy
 * flag guards that). mpu_begin, mpu_prepare, mpu_complete, mpu_abort and
 * mpu_raise run with the GIL (credentials, Python exceptions; call_perform
 * releases it around the network); mpu_feed, mpu_finish and mpu_drive run
 * without it and touch C memory only. Between the caller's calls (after mpu_feed
 * returned, before its next mpu_* call) a thread of ours, the pump, drives the
 * parts in flight and their retries: a part would otherwise stall, and the
 * server time it out, while the caller does other things between two writes.
 * The pump touches C memory only; every mpu_* call takes m back from it first
 * (waking its wait on the sockets). Memory: at most max_inflight part buffers
 * in flight plus the one being filled; the caller's bytes are copied, never
 * kept. */
#ifndef S3_MULTIPART_H
#define S3_MULTIPART_H

#include <pthread.h>
#include <sys/types.h>

#include "request.h"

#define MPU_MIN_PART ((size_t)5 << 20)          /* S3's smallest part (but the last) */
#define MPU_MAX_PART ((size_t)5 << 30)          /* and its largest */
#define MPU_MAX_PARTS 10000
#define MPU_GROW_EVERY 1000                     /* without a size hint: parts per doubling */
#define MPU_MEMORY_BUDGET ((size_t)40 << 20)    /* part buffers in flight and filling */

enum { MPU_FREE, MPU_QUEUED, MPU_RUNNING, MPU_RENEW };

typedef struct {
    int state;
    int number;                  /* 1 to MPU_MAX_PARTS */
    char *data;                  /* the part's bytes: owned, resent as they are */
    size_t len, cap;
    unsigned char md5[16];
    s3_call call;                /* UploadPart; its creds stay with the slot */
    int call_ready;              /* call holds a part (call_free before reuse) */
    int attempt;
    double not_before;           /* monotonic seconds: a retry waits until then */
    CURL *h;                     /* while running */
} mpu_slot;

typedef struct {
    char etag[130];              /* the server's, as it gave it (quotes and all) */
    unsigned char md5[16];
} mpu_part;

typedef struct {
    Client *client;              /* borrowed: the owner keeps the Client alive */
    char *key;                   /* UTF-8, for part URLs and messages */
    size_t key_len;
    buf_t upload_id;             /* as the server gave it (validated) */
    buf_t upload_id_q;           /* URI-encoded, for query strings */
    size_t part_size;            /* of the first part */
    int grow;                    /* no size hint: double every MPU_GROW_EVERY parts */
    int max_inflight;            /* as asked (0: the pool's size), before the budget */
    int etag_md5;                /* ETags may be MD5s (no SSE-KMS asked for) */
    int if_none_match;           /* the Complete commits only if the key is free */
    CURLM *multi;
    mpu_slot *slots;
    int nslots;
    int inflight;                /* slots not FREE */
    int running;                 /* slots on the multi handle */
    char *fill;                  /* the part being filled */
    size_t fill_len, fill_cap;
    int next_part;               /* the number the part being filled will get */
    mpu_part *parts;             /* parts[n - 1]: part n, once the server has it */
    unsigned long long total;    /* bytes handed to mpu_feed */
    int begun, finished, aborted;
    int need_renew;              /* a slot waits in MPU_RENEW */
    int failed;
    int failed_slot;             /* the slot whose call failed, or -1 */
    int mismatch;                /* ChecksumMismatch: *_error says where */
    const char *local_error;     /* a static string */
    /* the pump: a thread that drives the parts while the caller is away */
    pthread_t pump;
    pthread_mutex_t pump_lock;   /* held by whoever drives: the pump, or the caller */
    pthread_cond_t pump_cond;
    int pump_ready;              /* pump_lock and pump_cond initialised */
    int pump_on;                 /* the thread runs, in process pump_pid */
    pid_t pump_pid;
    int pump_held;               /* the caller holds pump_lock (the caller's flag) */
    int pump_want;               /* the caller waits for pump_lock (atomic) */
    int pump_stop;
} mpu;

/* The size of part `number` (1-based), from the part size asked for and the size
 * hint (-1: none): grown to whole MiB so that the hint fits in MPU_MAX_PARTS, or,
 * without a hint, doubled every MPU_GROW_EVERY parts; at most MPU_MAX_PART. */
size_t mpu_part_size_for(size_t part_size, long long size_hint, int number);
/* The slot count: max_inflight (0: pool_max) within the memory budget, at least 1. */
int mpu_inflight_limit(size_t part_size, int max_inflight, int pool_max);

/* Pure C. -1: out of memory. Nothing is sent yet. */
int mpu_init(mpu *m, Client *c, const char *key, size_t key_len, size_t part_size,
             long long size_hint, int max_inflight, int etag_md5);
/* With the upload over (completed, aborted, failed): its pump thread joined, by
 * the thread that took the upload back from it. mpu_free() does it otherwise. */
void mpu_end(mpu *m);
void mpu_free(mpu *m);               /* without the GIL is fine: nothing is sent */

/* With the GIL: CreateMultipartUpload, sent by `create` (an s3_call that holds
 * the key and the object headers; it is used up). -1 with an exception set. */
int mpu_begin(mpu *m, s3_call *create);
/* With the GIL, before a stretch without it: credentials for the slots that will
 * sign (fresh ones for free slots; renewed ones for MPU_RENEW slots, which are
 * queued again). -1 with an exception set (the upload is not aborted). */
int mpu_prepare(mpu *m);

/* Without the GIL. Copies bytes into the part being filled and sends each part
 * that fills up, waiting for a free slot when max are in flight; then drives the
 * transfers once without blocking, and leaves them to the pump. Returns the bytes
 * taken; *state says how it ended (m's own fields may change under the pump
 * afterwards): 0, -1 failed (call mpu_raise, then mpu_abort) or 1 credentials
 * to renew (mpu_prepare, then feed the rest). */
size_t mpu_feed(mpu *m, const char *p, size_t n, int *state);
/* Without the GIL: the last part sent, then every part waited for. 0 done,
 * 1 credentials to renew (mpu_prepare, then call again), -1 failed. */
int mpu_finish(mpu *m);
/* Without the GIL: one pass over the transfers (start what may start, read what
 * ended); with wait_all, until none is in flight. 0, 1 (renew), -1 (failed). */
int mpu_drive(mpu *m, int wait_all);

/* With the GIL, after mpu_finish returned 0: CompleteMultipartUpload (with
 * If-None-Match: * when m->if_none_match), the ETag checked against the parts'
 * MD5s (a mismatch deletes the object). Returns {"ETag", "Parts", "Size"} or NULL
 * with an exception (the upload aborted: a 412 PreconditionFailed too). */
PyObject *mpu_complete(mpu *m);
/* With the GIL: stops what is in flight and sends AbortMultipartUpload (retried
 * like any call; NoSuchUpload counts as done). Idempotent. -1 with an exception. */
int mpu_abort(mpu *m);
/* With the GIL: the exception for a failed upload (m->failed). Returns NULL. */
PyObject *mpu_raise(mpu *m);

/* 1: the ETag (quotes allowed) is the plain MD5 given, 0: it is a plain MD5 but
 * another one, -1: it is no plain MD5 (then it says nothing). */
int mpu_etag_is_md5(const char *etag, size_t len, const unsigned char md5[16]);
/* Whether a reply says the object is encrypted in a way whose ETag is no MD5
 * (SSE-KMS, SSE-C). */
int mpu_etag_opaque(const xfer_request *r);
#define MPU_ETAG_MAX 80
/* With the GIL, after a commit was refused as if an earlier attempt of it had
 * committed (412 to If-None-Match: *, NoSuchUpload to a Complete) and one had
 * handed over the body (s3_call.sent_before): whether the object stored under key
 * is ours, by a HEAD and its ETag (count 0: the plain MD5 given, else the
 * multipart form of count parts with md5 the MD5 of their MD5s). 1: ours, its
 * ETag in etag_out, the pending exception dropped; 0: not ours or cannot tell
 * (SSE-KMS, SSE-C, the HEAD failed), the pending exception kept. */
int mpu_ours_after_retry(Client *c, const char *key, const unsigned char md5[16], int count,
                         char etag_out[MPU_ETAG_MAX]);
/* With the GIL: deletes the object whose ETag did not match (errors dropped) and
 * raises S3Error "ChecksumMismatch". Returns NULL. */
PyObject *mpu_raise_mismatch(Client *c, const char *key, const char *what);

#endif
