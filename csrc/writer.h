/* writer: the _s3.Writer type, a file-like upload of one object. Bytes are
 * buffered while they stay within the threshold (close() then sends one
 * PutObject); past it the upload goes multipart (multipart.h), with parts in
 * flight while the caller produces more. close() commits, abort() drops; a
 * Writer that goes away unclosed never commits.
 *
 * With the GIL, like any Python object; the network waits release it. One
 * thread at a time: a second one gets RuntimeError rather than a race. One
 * process: in a child after fork() its methods raise RuntimeError, and dropping
 * it there leaves the parent's upload alone. */
#ifndef S3_WRITER_H
#define S3_WRITER_H

#include "client.h"

#define WRITER_DEFAULT_PART ((long long)8 << 20)

/* Client.writer(key, *, part_size=, threshold=, max_inflight=, size_hint=,
 * if_none_match=, **object_headers): validates everything, sends nothing. A new
 * reference, or NULL with an exception set. if_none_match=True sends
 * If-None-Match: * on the request that commits (the PutObject, or the
 * CompleteMultipartUpload, never the Create): a server that honours it answers
 * 412 PreconditionFailed when the key exists, and close() raises that S3Error
 * (a multipart upload aborted). */
PyObject *writer_new(Client *c, PyObject *args, PyObject *kw);

#endif
