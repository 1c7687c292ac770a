/* module: the extension's state, its exception types and the helpers that turn
 * core errors into Python exceptions. Everything here needs the GIL. */
#ifndef S3_MODULE_H
#define S3_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <openssl/evp.h>

typedef struct {
    PyTypeObject *client_type;
    PyTypeObject *reader_type;
    PyTypeObject *writer_type;
    PyTypeObject *signing_key_type;
    PyTypeObject *url_method_type;
    PyObject *S3Error;          /* OSError subclass: code, status, request_id, bucket, key */
    PyObject *S3NotFoundError;  /* S3Error and FileNotFoundError */
    EVP_MD *sha256;             /* fetched once; shared read-only by every thread */
    EVP_MD *md5;                /* Content-MD5 and ETag checks */
} s3_state;

/* Raises S3Error (or S3NotFoundError when status is 404 / code NoSuchKey) with
 * the given fields; any of the strings may be NULL. Returns NULL. */
PyObject *s3_raise(s3_state *st, int status, const char *code, const char *message,
                   const char *request_id, const char *bucket, const char *key);

/* The exception being raised, taken out (NULL: none) and put back: for cleanup
 * that makes calls of its own while an error is on its way up. */
PyObject *s3_exc_take(void);
void s3_exc_restore(PyObject *exc);

/* client.c */
extern PyType_Spec s3_client_spec;
/* reader.c */
extern PyType_Spec s3_reader_spec;
/* writer.c */
extern PyType_Spec s3_writer_spec;

#endif
