/* SigningKey: an RSA private key loaded once from PEM, signing with RSA-SHA1
 * (PKCS #1 v1.5), which CloudFront's signed URLs use. The key never leaves the
 * object: no repr, message or pickle shows it. Signing needs no network, so the
 * GIL is kept (a 2048-bit signature is about a millisecond). */
#include "rsa.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

typedef struct {
    PyObject_HEAD
    EVP_PKEY *key;
    int bits;
} SigningKey;

static int
signing_key_init(PyObject *self_, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"pem", NULL};
    SigningKey *self = (SigningKey *)self_;
    Py_buffer pem = {0};
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;
    int rc = -1;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*:SigningKey", kwlist, &pem))
        return -1;
    if (pem.len <= 0 || pem.len > 64 * 1024 || (bio = BIO_new_mem_buf(pem.buf, (int)pem.len)) == NULL) {
        PyErr_SetString(PyExc_ValueError, "the key is not a PEM RSA private key");
        goto done;
    }
    /* no passphrase callback: an encrypted key fails instead of prompting */
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
    ERR_clear_error();
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA || EVP_PKEY_get_bits(key) < 1024) {
        /* nothing of the key in the message */
        PyErr_SetString(PyExc_ValueError, "the key is not an unencrypted PEM RSA private key "
                                          "of 1024 bits or more");
        goto done;
    }
    EVP_PKEY_free(self->key);
    self->key = key;
    self->bits = EVP_PKEY_get_bits(key);
    key = NULL;
    rc = 0;
done:
    EVP_PKEY_free(key);
    BIO_free(bio);
    PyBuffer_Release(&pem);
    return rc;
}

static PyObject *
signing_key_sign_sha1(PyObject *self_, PyObject *arg)
{
    SigningKey *self = (SigningKey *)self_;
    EVP_MD_CTX *ctx = NULL;
    Py_buffer data = {0};
    PyObject *out = NULL, *result = NULL;
    size_t len = 0;

    if (self->key == NULL) {
        PyErr_SetString(PyExc_ValueError, "SigningKey is not initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if ((ctx = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestSignInit(ctx, NULL, EVP_sha1(), NULL, self->key) != 1 ||
        EVP_DigestSign(ctx, NULL, &len, data.buf, (size_t)data.len) != 1 ||
        (out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len)) == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "RSA-SHA1 signing failed");
        goto done;
    }
    if (EVP_DigestSign(ctx, (unsigned char *)PyBytes_AS_STRING(out), &len, data.buf,
                       (size_t)data.len) != 1) {
        PyErr_SetString(PyExc_ValueError, "RSA-SHA1 signing failed");
        goto done;
    }
    if (_PyBytes_Resize(&out, (Py_ssize_t)len) < 0)
        goto done;
    result = out;
    out = NULL;
done:
    ERR_clear_error();
    Py_XDECREF(out);
    EVP_MD_CTX_free(ctx);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *
signing_key_repr(PyObject *self_)
{
    SigningKey *self = (SigningKey *)self_;

    return PyUnicode_FromFormat("<SigningKey RSA-%d>", self->bits);
}

static PyObject *
signing_key_reduce(PyObject *self_, PyObject *unused)
{
    (void)self_;
    (void)unused;
    PyErr_SetString(PyExc_TypeError, "a SigningKey cannot be pickled");
    return NULL;
}

static void
signing_key_dealloc(PyObject *self_)
{
    SigningKey *self = (SigningKey *)self_;
    PyTypeObject *tp = Py_TYPE(self_);

    EVP_PKEY_free(self->key);
    self->key = NULL;
    tp->tp_free(self_);
    Py_DECREF(tp);
}

static PyMethodDef signing_key_methods[] = {
    {"sign_sha1", signing_key_sign_sha1, METH_O,
     "sign_sha1(data) -> bytes: the RSA-SHA1 (PKCS #1 v1.5) signature of data"},
    {"__reduce__", signing_key_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot signing_key_slots[] = {
    {Py_tp_init, signing_key_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, signing_key_dealloc},
    {Py_tp_repr, signing_key_repr},
    {Py_tp_methods, signing_key_methods},
    {Py_tp_doc, "SigningKey(pem): an RSA private key, loaded once, for CloudFront's "
                "signed URLs"},
    {0, NULL},
};

PyType_Spec s3_signing_key_spec = {
    .name = "django_s3_storage._s3.SigningKey",
    .basicsize = sizeof(SigningKey),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = signing_key_slots,
};
