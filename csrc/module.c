/* The module: multi-phase init, one state struct, the exception types, and the
 * pure functions (signing, gzip) that need no Client. */
#include "module.h"
#include "rsa.h"

#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <libxml/parser.h>

#include "buf.h"
#include "gzip.h"
#include "sigv4.h"
#include "transfer.h"
#include "url.h"

static s3_state *
get_state(PyObject *module)
{
    return (s3_state *)PyModule_GetState(module);
}

static int
set_attr_str(PyObject *o, const char *name, const char *v)
{
    PyObject *s;
    int rc;

    if (v == NULL || v[0] == '\0')
        return PyObject_SetAttrString(o, name, Py_None);
    s = PyUnicode_DecodeUTF8(v, (Py_ssize_t)strlen(v), "replace");
    if (s == NULL)
        return -1;
    rc = PyObject_SetAttrString(o, name, s);
    Py_DECREF(s);
    return rc;
}

/* Text for a message, with what could forge a log line shown escaped: C0 and
 * C1 control characters, DEL, U+2028/U+2029, and the backslash itself. */
static int
escape_text(buf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");

    if (buf_append(b, "", 0) < 0)   /* data is "" even when nothing follows */
        return -1;
    for (; *p; p++) {
        int rc;
        if (*p == '\\')
            rc = buf_puts(b, "\\\\");
        else if (*p == '\n')
            rc = buf_puts(b, "\\n");
        else if (*p == '\r')
            rc = buf_puts(b, "\\r");
        else if (*p == '\t')
            rc = buf_puts(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            rc = buf_printf(b, "\\x%02x", *p);
        else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            rc = buf_printf(b, "\\x%02x", p[1]);
            p++;
        } else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            rc = buf_printf(b, "\\u%04x", p[2] == 0xa8 ? 0x2028 : 0x2029);
            p += 2;
        } else
            rc = buf_putc(b, (char)*p);
        if (rc < 0)
            return -1;
    }
    return 0;
}

PyObject *
s3_raise(s3_state *st, int status, const char *code, const char *message,
         const char *request_id, const char *bucket, const char *key)
{
    int missing = status == 404 || (code && (strcmp(code, "NoSuchKey") == 0));
    PyObject *type = missing ? st->S3NotFoundError : st->S3Error;
    PyObject *exc = NULL, *text = NULL, *num = NULL;
    buf_t ec = BUF_INIT, em = BUF_INIT, er = BUF_INIT, ek = BUF_INIT;

    /* the server's words and the key may carry anything: escaped in the text,
     * as they are in the attributes */
    if (escape_text(&ec, code && code[0] ? code : "Error") < 0 ||
        escape_text(&em, message) < 0 || escape_text(&er, request_id) < 0 ||
        escape_text(&ek, key) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (status > 0)
        text = PyUnicode_FromFormat("%s (HTTP %d%s%s)%s%s%s%s", ec.data, status,
                                    ek.data[0] ? ", key " : "", ek.data,
                                    em.data[0] ? ": " : "", em.data,
                                    er.data[0] ? ", request id " : "", er.data);
    else
        text = PyUnicode_FromFormat("%s: %s", ec.data, em.data);
    if (text == NULL)
        goto done;
    /* a missing key carries ENOENT, as FileNotFoundError from open() does */
    exc = missing ? PyObject_CallFunction(type, "iO", 2, text) : PyObject_CallOneArg(type, text);
    if (exc == NULL)
        goto done;
    num = PyLong_FromLong(status);
    if (num == NULL || PyObject_SetAttrString(exc, "status", num) < 0 ||
        set_attr_str(exc, "code", code) < 0 || set_attr_str(exc, "message", message) < 0 ||
        set_attr_str(exc, "request_id", request_id) < 0 ||
        set_attr_str(exc, "bucket", bucket) < 0 || set_attr_str(exc, "key", key) < 0)
        goto done;
    PyErr_SetObject(type, exc);
done:
    buf_free(&ec);
    buf_free(&em);
    buf_free(&er);
    buf_free(&ek);
    Py_XDECREF(text);
    Py_XDECREF(exc);
    Py_XDECREF(num);
    return NULL;
}

PyObject *
s3_exc_take(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;

    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

void
s3_exc_restore(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (exc == NULL)
        return;
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* ---- signing ----------------------------------------------------------- */

typedef struct {
    const char *region, *access_key, *secret_key, *timestamp, *session_token, *service;
} sign_args;

static int
fill_ctx(s3_state *st, const sign_args *a, sigv4_ctx *c)
{
    memset(c, 0, sizeof(*c));
    if (sigv4_check_date(a->timestamp) < 0) {
        PyErr_SetString(PyExc_ValueError, "timestamp must look like YYYYMMDDTHHMMSSZ");
        return -1;
    }
    c->md = st->sha256;
    c->access_key = a->access_key;
    c->secret_key = a->secret_key;
    c->session_token = a->session_token;
    c->region = a->region;
    c->service = a->service;
    memcpy(c->amz_date, a->timestamp, SIGV4_DATE_LEN + 1);
    return 0;
}

static PyObject *
presign_v4(PyObject *module, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"method", "url", "region", "access_key", "secret_key", "expires",
                             "timestamp", "session_token", "service", NULL};
    const char *method, *url;
    long expires = -1;   /* -1: not given */
    sign_args a = {NULL, NULL, NULL, NULL, NULL, "s3"};
    sigv4_ctx c;
    buf_t out = BUF_INIT;
    PyObject *res = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "ss|$ssslszs", kwlist, &method, &url,
                                     &a.region, &a.access_key, &a.secret_key, &expires,
                                     &a.timestamp, &a.session_token, &a.service))
        return NULL;
    if (!a.region || !a.access_key || !a.secret_key || !a.timestamp || expires == -1) {
        PyErr_SetString(PyExc_TypeError,
                        "presign_v4() needs region, access_key, secret_key, expires and timestamp");
        return NULL;
    }
    if (expires < 1 || expires > 604800) {
        PyErr_SetString(PyExc_ValueError, "expires must be between 1 and 604800 seconds");
        return NULL;
    }
    if (fill_ctx(get_state(module), &a, &c) < 0)
        return NULL;
    if (sigv4_presign(&c, method, url, expires, &out) < 0) {
        PyErr_SetString(PyExc_ValueError, "cannot presign: the URL must be http(s)://host/...");
        goto done;
    }
    res = PyUnicode_FromStringAndSize(out.data, (Py_ssize_t)out.len);
done:
    buf_free(&out);
    return res;
}

/* Collects the headers of a dict as UTF-8 pointers owned by the dict's values. */
static int
dict_headers(PyObject *headers, sigv4_header **out, size_t *n, int extra)
{
    Py_ssize_t pos = 0, i = 0, count;
    PyObject *k, *v;
    sigv4_header *h;

    if (!PyDict_Check(headers)) {
        PyErr_SetString(PyExc_TypeError, "headers must be a dict");
        return -1;
    }
    count = PyDict_Size(headers);
    h = PyMem_Calloc((size_t)count + (size_t)extra, sizeof(*h));
    if (h == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    while (PyDict_Next(headers, &pos, &k, &v)) {
        Py_ssize_t kl, vl;
        if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "header names and values must be str");
            PyMem_Free(h);
            return -1;
        }
        h[i].name = PyUnicode_AsUTF8AndSize(k, &kl);
        h[i].value = PyUnicode_AsUTF8AndSize(v, &vl);
        if (h[i].name == NULL || h[i].value == NULL) {
            PyMem_Free(h);
            return -1;
        }
        h[i].name_len = (size_t)kl;
        h[i].value_len = (size_t)vl;
        i++;
    }
    *out = h;
    *n = (size_t)i;
    return 0;
}

static int
has_header(const sigv4_header *h, size_t n, const char *name)
{
    size_t i, nl = strlen(name);

    for (i = 0; i < n; i++)
        if (h[i].name_len == nl && strncasecmp(h[i].name, name, nl) == 0)
            return 1;
    return 0;
}

static PyObject *
sign_common(PyObject *module, PyObject *args, PyObject *kw, int stages_only)
{
    static char *kwlist[] = {"method", "url", "headers", "payload_hash", "region",
                             "access_key", "secret_key", "timestamp", "session_token",
                             "service", NULL};
    const char *method, *url, *payload_hash;
    PyObject *headers, *res = NULL;
    sign_args a = {NULL, NULL, NULL, NULL, NULL, "s3"};
    sigv4_ctx c;
    sigv4_url u;
    sigv4_header *h = NULL;
    size_t nh = 0;
    sigv4_stages s = SIGV4_STAGES_INIT;
    buf_t auth = BUF_INIT;
    int s3;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "ssOs|$sssszs", kwlist, &method, &url, &headers,
                                     &payload_hash, &a.region, &a.access_key, &a.secret_key,
                                     &a.timestamp, &a.session_token, &a.service))
        return NULL;
    if (!a.region || !a.access_key || !a.secret_key || !a.timestamp) {
        PyErr_SetString(PyExc_TypeError,
                        "sign_v4() needs region, access_key, secret_key and timestamp");
        return NULL;
    }
    if (fill_ctx(get_state(module), &a, &c) < 0)
        return NULL;
    if (sigv4_split_url(url, &u) < 0) {
        PyErr_SetString(PyExc_ValueError, "the URL must be http(s)://host/...");
        return NULL;
    }
    if (dict_headers(headers, &h, &nh, 4) < 0)
        return NULL;
    s3 = strcmp(a.service, "s3") == 0;
    /* the headers this function adds are signed too */
    if (!has_header(h, nh, "host"))
        h[nh++] = (sigv4_header){"host", 4, u.host, u.host_len};
    if (!has_header(h, nh, "x-amz-date"))
        h[nh++] = (sigv4_header){"x-amz-date", 10, c.amz_date, SIGV4_DATE_LEN};
    if (s3 && !has_header(h, nh, "x-amz-content-sha256"))
        h[nh++] = (sigv4_header){"x-amz-content-sha256", 20, payload_hash, strlen(payload_hash)};
    if (a.session_token && a.session_token[0] && !has_header(h, nh, "x-amz-security-token"))
        h[nh++] = (sigv4_header){"x-amz-security-token", 20, a.session_token,
                                 strlen(a.session_token)};
    if (sigv4_sign(&c, method, &u, h, nh, payload_hash, &s) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (stages_only) {
        res = Py_BuildValue("(s#s#s)", s.canonical.data, (Py_ssize_t)s.canonical.len,
                            s.string_to_sign.data, (Py_ssize_t)s.string_to_sign.len,
                            s.signature);
        goto done;
    }
    if (buf_printf(&auth, "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, "
                          "SignedHeaders=%s, Signature=%s",
                   c.access_key, c.amz_date, c.region, c.service, s.signed_names.data,
                   s.signature) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    res = PyDict_New();
    if (res == NULL)
        goto done;
    {
        PyObject *v = PyUnicode_FromString(auth.data);
        if (v == NULL || PyDict_SetItemString(res, "Authorization", v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(res);
            goto done;
        }
        Py_DECREF(v);
        v = PyUnicode_FromString(c.amz_date);
        if (v == NULL || PyDict_SetItemString(res, "X-Amz-Date", v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(res);
            goto done;
        }
        Py_DECREF(v);
        if (s3) {
            v = PyUnicode_FromString(payload_hash);
            if (v == NULL || PyDict_SetItemString(res, "X-Amz-Content-Sha256", v) < 0) {
                Py_XDECREF(v);
                Py_CLEAR(res);
                goto done;
            }
            Py_DECREF(v);
        }
        if (a.session_token && a.session_token[0]) {
            v = PyUnicode_FromString(a.session_token);
            if (v == NULL || PyDict_SetItemString(res, "X-Amz-Security-Token", v) < 0) {
                Py_XDECREF(v);
                Py_CLEAR(res);
                goto done;
            }
            Py_DECREF(v);
        }
    }
done:
    PyMem_Free(h);
    sigv4_stages_free(&s);
    buf_free(&auth);
    return res;
}

static PyObject *
sign_v4(PyObject *module, PyObject *args, PyObject *kw)
{
    return sign_common(module, args, kw, 0);
}

static PyObject *
py_sigv4_stages(PyObject *module, PyObject *args, PyObject *kw)
{
    return sign_common(module, args, kw, 1);
}

/* ---- gzip ---------------------------------------------------------------- */

static PyObject *
gzip_common(PyObject *args, PyObject *kw, int compress)
{
    static char *ckw[] = {"data", "level", NULL};
    static char *dkw[] = {"data", NULL};
    Py_buffer data;
    int level = 9, rc;
    buf_t out = BUF_INIT;
    const char *error = NULL;
    PyObject *res = NULL;

    if (compress ? !PyArg_ParseTupleAndKeywords(args, kw, "y*|i", ckw, &data, &level)
                 : !PyArg_ParseTupleAndKeywords(args, kw, "y*", dkw, &data))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = compress ? gz_compress(data.buf, (size_t)data.len, level, &out, &error)
                  : gz_decompress(data.buf, (size_t)data.len, &out, &error);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        PyErr_SetString(PyExc_ValueError, error ? error : "gzip failed");
    else
        res = PyBytes_FromStringAndSize(out.data ? out.data : "", (Py_ssize_t)out.len);
    buf_free(&out);
    PyBuffer_Release(&data);
    return res;
}

static PyObject *
gzip_compress(PyObject *module, PyObject *args, PyObject *kw)
{
    (void)module;
    return gzip_common(args, kw, 1);
}

static PyObject *
gzip_decompress(PyObject *module, PyObject *args, PyObject *kw)
{
    (void)module;
    return gzip_common(args, kw, 0);
}

/* ---- module ------------------------------------------------------------ */

/* The module's attributes made on first use (PEP 562): curl_version() asks every
 * library libcurl links for its version, and Debian's OpenLDAP answers by
 * initialising itself (SASL plugins, ldap.conf, a host lookup): 4 to 5 ms that an
 * import, and url(), never need. */
static PyObject *
module_getattr(PyObject *module, PyObject *name)
{
    (void)module;
    if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "curl_version") == 0)
        return PyUnicode_FromString(curl_version());
    PyErr_Format(PyExc_AttributeError, "module 'django_s3_storage._s3' has no attribute %R",
                 name);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"__getattr__", module_getattr, METH_O, "curl_version: libcurl's full version string"},
    {"presign_v4", (PyCFunction)(void (*)(void))presign_v4, METH_VARARGS | METH_KEYWORDS,
     "presign_v4(method, url, *, region, access_key, secret_key, expires, timestamp, "
     "session_token=None, service='s3') -> str\n\nThe URL with the X-Amz-* query parameters "
     "of a SigV4 presigned request added (UNSIGNED-PAYLOAD)."},
    {"sign_v4", (PyCFunction)(void (*)(void))sign_v4, METH_VARARGS | METH_KEYWORDS,
     "sign_v4(method, url, headers, payload_hash, *, region, access_key, secret_key, "
     "timestamp, session_token=None, service='s3') -> dict\n\nThe headers that sign the "
     "request: Authorization, X-Amz-Date, and X-Amz-Security-Token / X-Amz-Content-Sha256."},
    {"_sigv4_stages", (PyCFunction)(void (*)(void))py_sigv4_stages, METH_VARARGS | METH_KEYWORDS,
     "As sign_v4, but returns (canonical_request, string_to_sign, signature), for tests."},
    {"gzip_compress", (PyCFunction)(void (*)(void))gzip_compress, METH_VARARGS | METH_KEYWORDS,
     "gzip_compress(data, level=9) -> bytes (gzip format)"},
    {"gzip_decompress", (PyCFunction)(void (*)(void))gzip_decompress,
     METH_VARARGS | METH_KEYWORDS, "gzip_decompress(data) -> bytes"},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *m)
{
    s3_state *st = get_state(m);
    PyObject *bases = NULL, *libcurl = NULL;
    int rc = -1;

    if (xfer_global_init() < 0) {
        PyErr_SetString(PyExc_ImportError, "libcurl failed to initialise");
        goto done;
    }
    xmlInitParser();
    st->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    st->md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    if (st->sha256 == NULL || st->md5 == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA-256 or no MD5");
        goto done;
    }
    st->S3Error = PyErr_NewExceptionWithDoc(
        "django_s3_storage._s3.S3Error",
        "An S3 request failed. Attributes: code (the S3 error code), status (HTTP status, "
        "0 when no reply came), message, request_id, bucket, key.",
        PyExc_OSError, NULL);
    if (st->S3Error == NULL)
        goto done;
    bases = PyTuple_Pack(2, st->S3Error, PyExc_FileNotFoundError);
    if (bases == NULL)
        goto done;
    st->S3NotFoundError = PyErr_NewExceptionWithDoc(
        "django_s3_storage._s3.S3NotFoundError", "The key (or bucket) does not exist.", bases,
        NULL);
    if (st->S3NotFoundError == NULL)
        goto done;
    st->client_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &s3_client_spec, NULL);
    if (st->client_type == NULL)
        goto done;
    st->reader_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &s3_reader_spec, NULL);
    if (st->reader_type == NULL)
        goto done;
    st->writer_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &s3_writer_spec, NULL);
    if (st->writer_type == NULL)
        goto done;
    st->signing_key_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &s3_signing_key_spec,
                                                                     NULL);
    if (st->signing_key_type == NULL)
        goto done;
    st->url_method_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &s3_url_method_spec, NULL);
    if (st->url_method_type == NULL)
        goto done;
    if (PyModule_AddObjectRef(m, "S3Error", st->S3Error) < 0 ||
        PyModule_AddObjectRef(m, "S3NotFoundError", st->S3NotFoundError) < 0 ||
        PyModule_AddObjectRef(m, "Client", (PyObject *)st->client_type) < 0 ||
        PyModule_AddObjectRef(m, "Reader", (PyObject *)st->reader_type) < 0 ||
        PyModule_AddObjectRef(m, "Writer", (PyObject *)st->writer_type) < 0 ||
        PyModule_AddObjectRef(m, "SigningKey", (PyObject *)st->signing_key_type) < 0 ||
        PyModule_AddObjectRef(m, "UrlMethod", (PyObject *)st->url_method_type) < 0 ||
        (libcurl = PyUnicode_FromFormat("libcurl/%s",
                                        curl_version_info(CURLVERSION_NOW)->version)) == NULL ||
        PyModule_AddObjectRef(m, "libcurl_version", libcurl) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(bases);
    Py_XDECREF(libcurl);
    return rc;
}

static int
module_traverse(PyObject *m, visitproc visit, void *arg)
{
    s3_state *st = get_state(m);

    Py_VISIT(st->client_type);
    Py_VISIT(st->reader_type);
    Py_VISIT(st->writer_type);
    Py_VISIT(st->signing_key_type);
    Py_VISIT(st->url_method_type);
    Py_VISIT(st->S3Error);
    Py_VISIT(st->S3NotFoundError);
    return 0;
}

static int
module_clear(PyObject *m)
{
    s3_state *st = get_state(m);

    Py_CLEAR(st->client_type);
    Py_CLEAR(st->reader_type);
    Py_CLEAR(st->writer_type);
    Py_CLEAR(st->signing_key_type);
    Py_CLEAR(st->url_method_type);
    Py_CLEAR(st->S3Error);
    Py_CLEAR(st->S3NotFoundError);
    return 0;
}

static void
module_free(void *m)
{
    s3_state *st = get_state((PyObject *)m);

    module_clear((PyObject *)m);
    if (st->sha256) {
        EVP_MD_free(st->sha256);
        st->sha256 = NULL;
    }
    if (st->md5) {
        EVP_MD_free(st->md5);
        st->md5 = NULL;
    }
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "django_s3_storage._s3",
    .m_doc = "The C core of django-s3-storage: SigV4, HTTP on libcurl, gzip, XML.",
    .m_size = sizeof(s3_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__s3(void)
{
    return PyModuleDef_Init(&module_def);
}
