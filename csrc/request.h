/* request: one S3 call. Builds its URL and headers, signs each attempt, runs it
 * through the Client's pool with retries (botocore's standard mode), follows a
 * region redirect once, renews refused temporary credentials once, and turns a
 * failure into the exception it deserves.
 *
 * call_init, call_add_header, call_set_key and the result builders run with the
 * GIL; call_run and the attempt functions without it (they touch C memory only);
 * call_perform releases the GIL around call_run. A driver of its own (multipart
 * parts on a curl multi handle) uses call_attempt_begin / call_attempt_end around
 * each transfer instead of call_run. */
#ifndef S3_REQUEST_H
#define S3_REQUEST_H

#include "client.h"
#include "gzip.h"
#include "xml.h"

enum { SINK_BUFFER, SINK_LIST, SINK_BODY };

#define CALL_MAX_HEADERS 40
#define CALL_MAX_HEADER_VALUE 8192   /* bytes; servers refuse far less in total */
/* bytes of one listing page: 1,000 keys of 1,024 bytes, percent-encoded, fit twice */
#define CALL_MAX_LIST_REPLY (8 << 20)
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
    Py_buffer view;                  /* the caller's bytes, when has_view */
    int has_view;
    const char *body;                /* PUT and POST: the payload (view's or the caller's) */
    size_t body_len;
    int has_body;
    char content_md5[32];            /* base64 of the body's MD5, set by call_prepare_body */
    int sink_kind;
    int reply_on_success;            /* CopyObject: a 200 may carry an Error document */
    /* sinks */
    xml_list list;
    int list_ready;
    int list_keys_only;              /* a listing of names alone (listdir) */
    gz_stream gz;
    int gz_checked;                  /* the first body byte has been seen */
    int decompress;                  /* undo Content-Encoding: gzip */
    buf_t scratch;                   /* gunzip output on its way to `out` */
    buf_t out;                       /* the body while it fits in spool_max */
    size_t out_total;                /* bytes of body, in memory or in the file */
    size_t spool_max;                /* 0: always in memory */
    char *spool_dir;                 /* NULL: /tmp (get_object passes $TMPDIR) */
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
    int sent_before;                 /* an earlier attempt, ours or libcurl's, handed
                                      * the server the body: it may have been stored */
    struct curl_slist *attempt_headers;  /* the signed headers of the attempt in flight */
    double t0;                       /* when the attempt began (the request log's) */
    char signature[65];              /* the last attempt's, kept out of error texts */
    char payload_hash[65];
} s3_call;

void call_init(s3_call *k, Client *c, const char *method);
void call_free(s3_call *k);
/* With the GIL: a header for every attempt; its value is checked (no control
 * characters, at most CALL_MAX_HEADER_VALUE bytes). -1 with an exception set. */
int call_add_header(s3_call *k, const char *name, const char *value, size_t value_len);
/* With the GIL: the URL of the bucket (bucket calls) or of the key (object calls). */
int call_put_base(s3_call *k);
int call_set_key(s3_call *k, PyObject *key);
/* With the GIL: object headers from keyword arguments (content_type, metadata, acl,
 * ...); names in other_kw are skipped; anything unknown is a TypeError. */
int call_add_object_headers(s3_call *k, PyObject *kw, const char *const *other_kw);
/* The body of a PUT or POST, in C memory that outlives the call. Without the GIL:
 * hashes it (Content-MD5, signed) before the first attempt. -1: k->local_error. */
void call_set_body(s3_call *k, const char *p, size_t n);
int call_prepare_body(s3_call *k);
/* Without the GIL: all attempts, with backoff between them. k->ok says how it ended. */
void call_run(s3_call *k);
/* Without the GIL. Begin: the attempt's URL and signed headers into k->req (-1:
 * k->local_error). End: after its transfer ended with rc (0: a response, -1: a
 * transport failure); frees the attempt's headers and returns CALL_DONE (k->ok
 * says how), CALL_AGAIN (retry after *delay seconds; *attempt is what the next
 * one counts as) or CALL_RENEW (new credentials needed: with the GIL). */
enum { CALL_DONE, CALL_AGAIN, CALL_RENEW };
int call_attempt_begin(s3_call *k);
int call_attempt_end(s3_call *k, int rc, int *attempt, double *delay);
/* With the GIL: the call's credentials (kept in k->creds), then call_run without the
 * GIL, renewing refused credentials once; -1 with the exception set. */
int call_perform(s3_call *k);
/* With the GIL: the exception for a call that did not end well; returns NULL. */
PyObject *call_raise(s3_call *k);
/* With the GIL: sets k->creds if unset. -1 with an exception. */
int call_take_creds(s3_call *k);

/* The UTF-8 of an object key: 1 to 1024 bytes, no NUL; NULL with an exception. */
const char *call_key_utf8(PyObject *key, Py_ssize_t *n);

/* ---- results, with the GIL ---- */
int call_dict_set_take(PyObject *d, const char *name, PyObject *v);
PyObject *call_str_n(const char *p, size_t n);
/* A reply's headers as boto3's head_object gives them (ContentType, ETag, ...). */
PyObject *call_head_dict(const buf_t *head);
/* {"ETag": ..., "LastModified": ...} of a PUT or a copy. */
PyObject *call_etag_result(s3_call *k);

#endif
