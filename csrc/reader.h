/* reader: the Reader type, a raw binary stream over one S3 object.
 *
 * One open-ended GET streams the body into a bounded buffer on the Reader's own
 * curl multi handle, paused whenever buffer_size bytes wait to be read; a seek
 * outside what a forward read reaches drops that transfer, and the next read
 * sends `Range: bytes=pos-` with `If-Match: <ETag>`. gzip-stored objects may be
 * inflated as they stream (positions are then in decoded bytes). The stored
 * bytes are MD5-checked against a plain ETag when they all came in, in order.
 *
 * A Reader belongs to one thread at a time: a call while another thread is
 * inside one (waiting on the network, the GIL released) raises RuntimeError.
 * It holds a reference to its Client, and an extra easy handle of the Client's
 * pool while a transfer is open (never one the pool counts: open readers never
 * make other calls wait), given back at the end of the body, on close() and on
 * dealloc. Its connection lives in a multi handle of the pool's, kept for its
 * ranged GETs and, when its last body was read to the end, for the next Reader.
 * In a child after fork() those are the parent's: left alone, the child goes on
 * with a ranged GET of its own. */
#ifndef S3_READER_H
#define S3_READER_H

#include "client.h"

#define READER_DEFAULT_BUFFER (1 << 20)

/* With the GIL: a Reader of `key` (str), its first GET sent and answered (the
 * GIL released meanwhile). NULL with an exception: S3NotFoundError for a
 * missing key, S3Error for other failures, ValueError for a bad argument. */
PyObject *reader_open(Client *c, PyObject *key, int decompress, Py_ssize_t buffer_size,
                      int verify);

#endif
