/* writer: the _s3.Writer type. See writer.h. */
#include "writer.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "multipart.h"
#include "request.h"

typedef struct {
    PyObject_HEAD
    Client *client;              /* a strong reference */
    s3_call put;                 /* the key and the object headers: the single PUT,
                                    or the CreateMultipartUpload */
    int put_ready;
    mpu m;
    int mpu_ready;               /* m initialised (the threshold was passed) */
    buf_t pending;               /* the bytes while they stay within the threshold */
    unsigned long long threshold;
    size_t part_size;
    long long size_hint;
    int max_inflight;
    int etag_md5;                /* no SSE-KMS asked for: ETags may be MD5s */
    int if_none_match;           /* commit only if the key is free (If-None-Match: *) */
    unsigned long long written;
    int closed;
    int busy;                    /* a method runs (and may have released the GIL) */
    pid_t pid;                   /* the process that owns the upload and its handles */
} Writer;

static const char *const writer_kw[] = {"part_size", "threshold", "max_inflight", "size_hint",
                                        "if_none_match", NULL};

/* ---- construction -------------------------------------------------------- */

static int
kw_long(PyObject *kw, const char *name, long long *out)
{
    PyObject *v = kw ? PyDict_GetItemString(kw, name) : NULL;

    if (v == NULL)
        return 0;
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "%s must be int", name);
        return -1;
    }
    *out = PyLong_AsLongLong(v);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s is out of range", name);
        return -1;
    }
    return 0;
}

PyObject *
writer_new(Client *c, PyObject *args, PyObject *kw)
{
    PyObject *key;
    long long part_size = WRITER_DEFAULT_PART, threshold = WRITER_DEFAULT_PART;
    long long max_inflight = 0, size_hint = -1;
    PyObject *cond = kw ? PyDict_GetItemString(kw, "if_none_match") : NULL;
    PyTypeObject *tp;
    Writer *w;
    int i;

    if (cond != NULL && !PyBool_Check(cond)) {
        PyErr_SetString(PyExc_TypeError, "if_none_match must be True or False");
        return NULL;
    }
    if (client_ready(c) < 0 || !PyArg_ParseTuple(args, "U:writer", &key) ||
        kw_long(kw, "part_size", &part_size) < 0 || kw_long(kw, "threshold", &threshold) < 0 ||
        kw_long(kw, "max_inflight", &max_inflight) < 0 ||
        kw_long(kw, "size_hint", &size_hint) < 0)
        return NULL;
    if (part_size < (long long)MPU_MIN_PART || part_size > (long long)MPU_MAX_PART) {
        PyErr_SetString(PyExc_ValueError,
                        "part_size must be 5 MiB to 5 GiB, S3's limits on a part");
        return NULL;
    }
    if (threshold < 0 || threshold > (long long)MPU_MAX_PART) {
        PyErr_SetString(PyExc_ValueError,
                        "threshold must be 0 to 5 GiB, the most one PutObject takes");
        return NULL;
    }
    if (max_inflight < 0 || max_inflight > 1000) {
        PyErr_SetString(PyExc_ValueError, "max_inflight must be 0 (the pool's size) to 1000");
        return NULL;
    }
    if (size_hint < -1) {
        PyErr_SetString(PyExc_ValueError, "size_hint must be >= 0, or -1 when unknown");
        return NULL;
    }
    tp = c->st->writer_type;
    w = (Writer *)tp->tp_alloc(tp, 0);
    if (w == NULL)
        return NULL;
    w->client = (Client *)Py_NewRef((PyObject *)c);
    w->pid = xfer_pid();
    call_init(&w->put, c, "PUT");
    w->put_ready = 1;
    if (call_set_key(&w->put, key) < 0 || call_add_object_headers(&w->put, kw, writer_kw) < 0) {
        Py_DECREF(w);
        return NULL;
    }
    w->threshold = (unsigned long long)threshold;
    w->part_size = (size_t)part_size;
    w->size_hint = size_hint;
    w->max_inflight = (int)max_inflight;
    w->etag_md5 = 1;
    w->if_none_match = cond == Py_True;
    for (i = 0; i < w->put.nh; i++)
        if (strcasecmp(w->put.hname[i], "x-amz-server-side-encryption") == 0 &&
            strncasecmp(w->put.hvalue[i], "aws:kms", 7) == 0)
            w->etag_md5 = 0;   /* SSE-KMS: ETags are no MD5s */
    return (PyObject *)w;
}

static void
writer_dealloc(PyObject *self_)
{
    Writer *w = (Writer *)self_;
    PyTypeObject *tp = Py_TYPE(self_);

    if (w->pid != xfer_pid()) {
        /* a child after fork(): the upload is the parent's, its handles and
         * memory in whatever state the parent's pump had them at the fork (a
         * pointer freed and not yet cleared): neither aborted, closed nor freed
         * here; its pages stay shared with the parent. The Client's locks are
         * renewed first (one may have been held at the fork) */
        PyObject *exc = s3_exc_take();
        if (client_check_fork(w->client) < 0)
            PyErr_Clear();
        s3_exc_restore(exc);
        w->mpu_ready = 0;
        w->closed = 1;
    }
    if (w->mpu_ready && !w->closed) {
        /* gone unclosed: never committed, and no part left stored */
        PyObject *exc = s3_exc_take();
        if (mpu_abort(&w->m) < 0)
            PyErr_Clear();
        s3_exc_restore(exc);
    }
    if (w->mpu_ready)
        mpu_free(&w->m);
    if (w->put_ready)
        call_free(&w->put);
    buf_free(&w->pending);
    Py_XDECREF(w->client);
    tp->tp_free(self_);
    Py_DECREF(tp);
}

/* ---- the upload ---------------------------------------------------------- */

static int
writer_enter(Writer *w, int closed_ok)
{
    if (w->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this Writer is in use by another thread");
        return -1;
    }
    if (w->closed && !closed_ok) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a closed Writer");
        return -1;
    }
    if (w->pid != xfer_pid()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this Writer belongs to the parent process (it was opened before fork())");
        return -1;
    }
    w->busy = 1;
    return 0;
}

/* With an exception set: the upload is aborted (the exception kept) and the
 * Writer closed. Returns -1. */
static int
writer_fail(Writer *w)
{
    PyObject *exc = s3_exc_take();

    if (w->mpu_ready && mpu_abort(&w->m) < 0)
        PyErr_Clear();
    if (w->mpu_ready)
        mpu_end(&w->m);
    s3_exc_restore(exc);
    w->closed = 1;
    buf_free(&w->pending);
    return -1;
}

/* Bytes into the multipart upload: copied, hashed and sent without the GIL. */
static int
writer_feed(Writer *w, const char *p, size_t n)
{
    for (;;) {
        size_t took;
        int state;
        if (mpu_prepare(&w->m) < 0)
            return writer_fail(w);
        Py_BEGIN_ALLOW_THREADS
        took = mpu_feed(&w->m, p, n, &state);
        Py_END_ALLOW_THREADS
        req_log_flush(&w->m.client->log);
        p += took;
        n -= took;
        if (state < 0) {
            mpu_raise(&w->m);
            return writer_fail(w);
        }
        if (n == 0 && state == 0)
            return 0;
    }
}

/* The threshold is passed: CreateMultipartUpload, then what was buffered. */
static int
writer_begin(Writer *w)
{
    if (mpu_init(&w->m, w->client, w->put.key, strlen(w->put.key), w->part_size, w->size_hint,
                 w->max_inflight, w->etag_md5) < 0) {
        w->mpu_ready = 1;
        PyErr_NoMemory();
        return writer_fail(w);
    }
    w->mpu_ready = 1;
    w->m.if_none_match = w->if_none_match;   /* on the Complete, not on the Create */
    if (mpu_begin(&w->m, &w->put) < 0)
        return writer_fail(w);
    if (w->pending.len && writer_feed(w, w->pending.data, w->pending.len) < 0)
        return -1;
    buf_free(&w->pending);
    return 0;
}

static PyObject *
writer_write(PyObject *self_, PyObject *data)
{
    Writer *w = (Writer *)self_;
    Py_buffer view;
    PyObject *res = NULL;
    int rc;

    if (PyUnicode_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "write() takes bytes-like data, not str");
        return NULL;
    }
    if (writer_enter(w, 0) < 0)
        return NULL;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        w->busy = 0;
        return NULL;
    }
    if (!w->mpu_ready && w->written + (unsigned long long)view.len <= w->threshold) {
        rc = buf_append(&w->pending, view.buf, (size_t)view.len);
        if (rc < 0)
            PyErr_NoMemory();
    } else {
        rc = w->mpu_ready ? 0 : writer_begin(w);
        if (rc == 0)
            rc = writer_feed(w, view.buf, (size_t)view.len);
    }
    if (rc == 0) {
        w->written += (unsigned long long)view.len;
        res = PyLong_FromSsize_t(view.len);
    }
    PyBuffer_Release(&view);
    w->busy = 0;
    return res;
}

/* One PutObject of what was buffered, its ETag checked against the MD5 sent. */
static PyObject *
writer_put(Writer *w)
{
    unsigned char md5[32];
    char stored[MPU_ETAG_MAX];
    const char *etag;
    size_t len = 0;
    PyObject *res = NULL;

    /* the condition goes on the request that commits: here, not on a Create */
    if (w->if_none_match && call_add_header(&w->put, "If-None-Match", "*", 1) < 0)
        return NULL;
    call_set_body(&w->put, w->pending.data, w->pending.len);
    if (call_perform(&w->put) < 0) {
        /* a 412 after an earlier attempt (ours, or libcurl's own resend on a
         * kept-alive connection that died) handed over the body: if the object
         * stored is ours, that attempt stored it and its reply was lost. Without
         * one, the name was taken by another writer, whatever its bytes. */
        if (!w->if_none_match || w->put.req.status != 412 || !w->put.sent_before ||
            EVP_DecodeBlock(md5, (const unsigned char *)w->put.content_md5, 24) != 18 ||
            mpu_ours_after_retry(w->client, w->put.key, md5, 0, stored) != 1)
            return NULL;
        etag = stored;
        len = strlen(stored);
    } else {
        etag = xfer_header(&w->put.req, "etag", &len);
    }
    if (etag && w->etag_md5 && !mpu_etag_opaque(&w->put.req) &&
        EVP_DecodeBlock(md5, (const unsigned char *)w->put.content_md5, 24) == 18 &&
        mpu_etag_is_md5(etag, len, md5) == 0)
        return mpu_raise_mismatch(w->client, w->put.key,
                                  "the ETag is not the MD5 of the bytes sent");
    res = PyDict_New();
    if (res == NULL ||
        call_dict_set_take(res, "ETag", etag ? call_str_n(etag, len) : Py_NewRef(Py_None)) < 0 ||
        call_dict_set_take(res, "Parts", PyLong_FromLong(0)) < 0 ||
        call_dict_set_take(res, "Size", PyLong_FromUnsignedLongLong(w->written)) < 0)
        Py_CLEAR(res);
    return res;
}

static PyObject *
writer_close(PyObject *self_, PyObject *unused)
{
    Writer *w = (Writer *)self_;
    PyObject *res = NULL;
    int rc;

    (void)unused;
    if (writer_enter(w, 1) < 0)
        return NULL;
    if (w->closed) {
        w->busy = 0;
        Py_RETURN_NONE;
    }
    if (!w->mpu_ready) {
        res = writer_put(w);
        w->closed = 1;
        buf_free(&w->pending);
        w->busy = 0;
        return res;
    }
    for (;;) {
        if (mpu_prepare(&w->m) < 0) {
            writer_fail(w);
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = mpu_finish(&w->m);
        Py_END_ALLOW_THREADS
        req_log_flush(&w->m.client->log);
        if (rc < 0) {
            mpu_raise(&w->m);
            writer_fail(w);
            goto done;
        }
        if (rc == 0)
            break;
    }
    res = mpu_complete(&w->m);   /* aborts by itself when it fails */
    mpu_end(&w->m);
    w->closed = 1;
done:
    w->busy = 0;
    return res;
}

static PyObject *
writer_abort(PyObject *self_, PyObject *unused)
{
    Writer *w = (Writer *)self_;
    int rc = 0;

    (void)unused;
    if (writer_enter(w, 1) < 0)
        return NULL;
    if (!w->closed && w->mpu_ready)
        rc = mpu_abort(&w->m);
    if (w->mpu_ready && w->pid == xfer_pid())
        mpu_end(&w->m);
    w->closed = 1;
    buf_free(&w->pending);
    w->busy = 0;
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
writer_enter_ctx(PyObject *self_, PyObject *unused)
{
    Writer *w = (Writer *)self_;

    (void)unused;
    if (w->closed) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a closed Writer");
        return NULL;
    }
    return Py_NewRef(self_);
}

static PyObject *
writer_exit_ctx(PyObject *self_, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *r;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "__exit__ takes 3 arguments");
        return NULL;
    }
    if (args[0] != Py_None) {
        /* the caller's exception goes on; the upload does not */
        r = writer_abort(self_, NULL);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
        Py_RETURN_FALSE;
    }
    r = writer_close(self_, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *
writer_part_size_for(PyObject *cls, PyObject *args)
{
    long long part_size, size_hint;
    int number;

    (void)cls;
    if (!PyArg_ParseTuple(args, "LLi:_part_size_for", &part_size, &size_hint, &number))
        return NULL;
    if (part_size < (long long)MPU_MIN_PART || part_size > (long long)MPU_MAX_PART ||
        number < 1) {
        PyErr_SetString(PyExc_ValueError, "part_size must be 5 MiB to 5 GiB, number >= 1");
        return NULL;
    }
    return PyLong_FromSize_t(mpu_part_size_for((size_t)part_size, size_hint, number));
}

/* ---- attributes ---------------------------------------------------------- */

static PyObject *
writer_get_closed(PyObject *self_, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((Writer *)self_)->closed);
}

static PyObject *
writer_get_written(PyObject *self_, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(((Writer *)self_)->written);
}

static PyObject *
writer_get_upload_id(PyObject *self_, void *closure)
{
    Writer *w = (Writer *)self_;

    (void)closure;
    if (!w->mpu_ready || w->m.upload_id.len == 0)
        Py_RETURN_NONE;
    return PyUnicode_DecodeASCII(w->m.upload_id.data, (Py_ssize_t)w->m.upload_id.len, "replace");
}

static PyObject *
writer_repr(PyObject *self_)
{
    Writer *w = (Writer *)self_;

    return PyUnicode_FromFormat("<Writer bucket=%s key=%s bytes_written=%llu%s>",
                                w->client->bucket, w->put.key ? w->put.key : "",
                                w->written, w->closed ? " closed" : "");
}

static PyMethodDef writer_methods[] = {
    {"write", writer_write, METH_O,
     "write(data) -> int: all of the bytes-like data is taken (copied); returns its length"},
    {"close", writer_close, METH_NOARGS,
     "close() -> {'ETag', 'Parts', 'Size'} or None when already closed: commits the upload "
     "(one PutObject within the threshold, else CompleteMultipartUpload); a failure aborts it"},
    {"abort", writer_abort, METH_NOARGS,
     "abort(): drops the upload (AbortMultipartUpload when one began); idempotent"},
    {"__enter__", writer_enter_ctx, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))writer_exit_ctx, METH_FASTCALL,
     "close() after the block, abort() when it raised"},
    {"_part_size_for", writer_part_size_for, METH_VARARGS | METH_STATIC,
     "_part_size_for(part_size, size_hint, number) -> the size of part `number` (for the tests)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef writer_getset[] = {
    {"closed", writer_get_closed, NULL, "closed, committed or aborted", NULL},
    {"bytes_written", writer_get_written, NULL, "bytes taken by write() so far", NULL},
    {"upload_id", writer_get_upload_id, NULL, "the multipart upload's id, None before one",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot writer_slots[] = {
    {Py_tp_doc, "Writer: an upload of one object, made by Client.writer(). Bytes within the "
                "threshold go as one PutObject on close(); past it as a multipart upload with "
                "parts in flight while more are written. close() commits; abort(), an "
                "exception in a with block, or the Writer going away unclosed drops it."},
    {Py_tp_dealloc, writer_dealloc},
    {Py_tp_repr, writer_repr},
    {Py_tp_methods, writer_methods},
    {Py_tp_getset, writer_getset},
    {0, NULL},
};

PyType_Spec s3_writer_spec = {
    .name = "django_s3_storage._s3.Writer",
    .basicsize = sizeof(Writer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = writer_slots,
};
