/* url: the storage's url() in C (see url.h). The forms and the names taken here
 * are the ones storage.py's _s3_url() builds the same way; tests/test_url_fast.py
 * compares the two byte for byte. */
#include "url.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <structmember.h>

#include "buf.h"

/* url_setup(mode, prefix, public_base, expires): what the storage's url() needs
 * that only changes with its settings. mode: 0 none (storage_url() always answers
 * None), 1 the public URL (public_base joined with the escaped name), 2 the plain
 * URL, 3 presigned for `expires` seconds. */
PyObject *
url_setup(PyObject *self_, PyObject *args)
{
    Client *self = (Client *)self_;
    const char *prefix, *pub;
    Py_ssize_t np, npub;
    int mode;
    long expires;
    char *p = NULL, *q = NULL;

    if (client_ready(self) < 0 ||
        !PyArg_ParseTuple(args, "is#s#l:url_setup", &mode, &prefix, &np, &pub, &npub, &expires))
        return NULL;
    if (mode < 0 || mode > 3 || (mode == 3 && (expires < 1 || expires > 604800)) ||
        memchr(prefix, '\0', (size_t)np) != NULL || memchr(pub, '\0', (size_t)npub) != NULL) {
        PyErr_SetString(PyExc_ValueError,
                        "url_setup: mode 0-3, expires 1-604800 seconds, no NUL in prefix or base");
        return NULL;
    }
    p = malloc(3 * (size_t)np + 2);
    q = malloc((size_t)npub + 1);
    if (p == NULL || q == NULL) {
        free(p);
        free(q);
        return PyErr_NoMemory();
    }
    p[buf_escape_into(p, prefix, (size_t)np, BUF_URI_KEEP_SLASH)] = '\0';
    memcpy(q, pub, (size_t)npub + 1);
    free(self->url_prefix);
    free(self->url_public);
    self->url_prefix = p;
    self->url_prefix_raw = (size_t)np;
    self->url_public = q;
    self->url_expires = expires;
    self->url_mode = mode;
    Py_RETURN_NONE;
}

/* Whether url() may take `name` as it is: the storage's _object_key() keeps
 * such a name unchanged (not empty, no "//" or "/.", not starting with '.' or
 * '/', not ending with '/', printable); with `public`, no '\\' either (Django's
 * filepath_to_uri makes it a '/'). */
static int
url_plain_name(PyObject *name, const char *s, Py_ssize_t n, int public)
{
    Py_ssize_t i, len;

    if (n == 0 || s[0] == '.' || s[0] == '/' || s[n - 1] == '/')
        return 0;
    for (i = 0; i < n; i++) {
        if (s[i] == '/' && (s[i + 1] == '/' || s[i + 1] == '.'))
            return 0;
        if (public && s[i] == '\\')
            return 0;
    }
    if (PyUnicode_IS_ASCII(name)) {
        for (i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return 0;
        return 1;
    }
    len = PyUnicode_GET_LENGTH(name);
    for (i = 0; i < len; i++)
        if (!Py_UNICODE_ISPRINTABLE(PyUnicode_READ_CHAR(name, i)))
            return 0;
    return 1;
}

/* The storage's url() of a name for the form url_setup() chose, byte for byte
 * what storage.py's own path builds; None for whatever it leaves to that path
 * (other names, extra parameters, other methods, very long URLs), errors
 * included. method NULL: url()'s default, "get_object". */
static PyObject *
url_build(Client *self, PyObject *name, PyObject *extra, PyObject *method)
{
    char url[4096];
    const char *s, *base;
    Py_ssize_t n;
    size_t len, blen, plen;
    char region[64];

    if (!self->ready || self->url_mode == 0 || !PyUnicode_CheckExact(name) ||
        (extra != Py_None && (!PyDict_CheckExact(extra) || PyDict_GET_SIZE(extra))) ||
        (method != NULL && (!PyUnicode_CheckExact(method) ||
                            PyUnicode_CompareWithASCIIString(method, "get_object"))))
        Py_RETURN_NONE;
    s = PyUnicode_AsUTF8AndSize(name, &n);
    if (s == NULL) {
        PyErr_Clear();   /* storage.py's path says what is wrong with it */
        Py_RETURN_NONE;
    }
    if (!url_plain_name(name, s, n, self->url_mode == 1))
        Py_RETURN_NONE;
    if (self->url_mode == 1) {
        blen = strlen(self->url_public);
        if (blen + 3 * (size_t)n >= sizeof(url))
            Py_RETURN_NONE;
        memcpy(url, self->url_public, blen);
        len = blen + buf_escape_into(url + blen, s, (size_t)n, BUF_URI_DJANGO);
        return PyUnicode_FromStringAndSize(url, (Py_ssize_t)len);
    }
    /* the key: prefix "/" name, at most 1,024 bytes as S3 takes */
    if (self->url_prefix_raw + (self->url_prefix_raw ? 1 : 0) + (size_t)n > 1024)
        Py_RETURN_NONE;
    if (client_check_fork(self) < 0)
        return NULL;
    plen = strlen(self->url_prefix);
    pthread_mutex_lock(&self->where_lock);
    base = self->public_base ? self->public_base : self->base;   /* as url(), presign() */
    blen = strlen(base);
    if (blen + plen + 1 + 3 * (size_t)n >= sizeof(url)) {
        pthread_mutex_unlock(&self->where_lock);
        Py_RETURN_NONE;
    }
    memcpy(url, base, blen);
    strcpy(region, self->region);
    pthread_mutex_unlock(&self->where_lock);
    len = blen;
    if (plen) {
        memcpy(url + len, self->url_prefix, plen);
        len += plen;
        url[len++] = '/';
    }
    len += buf_escape_into(url + len, s, (size_t)n, BUF_URI_KEEP_SLASH);
    url[len] = '\0';
    if (self->url_mode == 2)
        return PyUnicode_FromStringAndSize(url, (Py_ssize_t)len);
    return client_sign_url(self, "GET", url, len, self->url_expires, NULL, region);
}

PyObject *
url_storage(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "storage_url(name, extra_params, client_method)");
        return NULL;
    }
    return url_build((Client *)self, args[0], args[1], args[2]);
}

/* UrlMethod(fallback): S3Storage.url as a method descriptor, so that
 * storage.url(name) is one C call with no Python frame. It answers url(name),
 * url(name, extra_params) and url(name, extra_params, client_method) from the
 * storage's Client (its `_client`) when url_build() does; every other call
 * (keywords, other names, the checks and errors of storage.py) goes to
 * fallback, the Python function it stands for, with the same arguments. */
typedef struct {
    PyObject_HEAD
    PyObject *fallback;         /* def url(self, name, ...) in storage.py */
    PyObject *client_attr;      /* "_client", interned */
    PyTypeObject *client_type;
    vectorcallfunc vectorcall;
} UrlMethod;

/* The storage's `_client`: from its __dict__ (a Python-level attribute lookup
 * would run the __getattr__ hook's machinery); missing there, from getattr(),
 * which sets the storage up again. A new reference, or NULL with an exception. */
static PyObject *
url_client(PyObject *storage, PyObject *attr)
{
    PyObject *dict, *client = NULL;

    dict = PyObject_GenericGetDict(storage, NULL);
    if (dict == NULL)
        PyErr_Clear();
    else
        client = PyDict_GetItemWithError(dict, attr);
    Py_XINCREF(client);
    Py_XDECREF(dict);
    if (client == NULL && !PyErr_Occurred())
        client = PyObject_GetAttr(storage, attr);
    return client;
}

static PyObject *
url_method_call(PyObject *self_, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    UrlMethod *self = (UrlMethod *)self_;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *client, *res;

    /* args[0] is the storage */
    if (kwnames == NULL && nargs >= 2 && nargs <= 4) {
        client = url_client(args[0], self->client_attr);
        if (client == NULL)
            return NULL;
        res = Py_IS_TYPE(client, self->client_type)
                  ? url_build((Client *)client, args[1], nargs > 2 ? args[2] : Py_None,
                              nargs > 3 ? args[3] : NULL)
                  : Py_NewRef(Py_None);
        Py_DECREF(client);
        if (res != Py_None)
            return res;  /* the URL, or an error */
        Py_DECREF(res);
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static int
url_method_init(PyObject *self_, PyObject *args, PyObject *kw)
{
    UrlMethod *self = (UrlMethod *)self_;
    s3_state *st = PyType_GetModuleState(Py_TYPE(self_));
    PyObject *fallback;

    if (st == NULL || !PyArg_ParseTuple(args, "O:UrlMethod", &fallback))
        return -1;
    if ((kw != NULL && PyDict_GET_SIZE(kw)) || !PyFunction_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "UrlMethod(fallback): a Python function");
        return -1;
    }
    Py_XSETREF(self->client_attr, PyUnicode_InternFromString("_client"));
    if (self->client_attr == NULL)
        return -1;
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    self->client_type = st->client_type;
    self->vectorcall = url_method_call;
    return 0;
}

static PyObject *
url_method_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static PyObject *
url_method_get_doc(PyObject *self_, void *closure)
{
    UrlMethod *self = (UrlMethod *)self_;

    (void)closure;
    if (self->fallback == NULL)
        Py_RETURN_NONE;
    return PyObject_GetAttrString(self->fallback, "__doc__");
}

/* What a function has and the descriptor has not (__name__, __qualname__,
 * __annotations__; __module__, which the type's own would hide) comes from the
 * function it stands for, as functools.wraps would have copied it: pickle names
 * a bound method by __name__, repr() shows __qualname__. */
static PyObject *
url_method_getattro(PyObject *self_, PyObject *name)
{
    UrlMethod *self = (UrlMethod *)self_;
    PyObject *res;

    if (self->fallback != NULL && PyUnicode_Check(name) &&
        PyUnicode_CompareWithASCIIString(name, "__module__") == 0)
        return PyObject_GetAttr(self->fallback, name);
    res = PyObject_GenericGetAttr(self_, name);
    if (res != NULL || self->fallback == NULL || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return res;
    PyErr_Clear();
    return PyObject_GetAttr(self->fallback, name);
}

/* pickle and copy take it for the global it is: S3Storage.url of its module. */
static PyObject *
url_method_reduce(PyObject *self_, PyObject *unused)
{
    UrlMethod *self = (UrlMethod *)self_;

    (void)unused;
    if (self->fallback == NULL) {
        PyErr_SetString(PyExc_TypeError, "cannot pickle a UrlMethod without its function");
        return NULL;
    }
    return PyObject_GetAttrString(self->fallback, "__qualname__");
}

static int
url_method_traverse(PyObject *self_, visitproc visit, void *arg)
{
    UrlMethod *self = (UrlMethod *)self_;

    Py_VISIT(Py_TYPE(self_));
    Py_VISIT(self->fallback);
    return 0;
}

static int
url_method_clear(PyObject *self_)
{
    UrlMethod *self = (UrlMethod *)self_;

    Py_CLEAR(self->fallback);
    Py_CLEAR(self->client_attr);
    return 0;
}

static void
url_method_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    url_method_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMemberDef url_method_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(UrlMethod, vectorcall), READONLY, NULL},
    {"__wrapped__", T_OBJECT, offsetof(UrlMethod, fallback), READONLY,
     "the Python function it stands for"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef url_method_methods[] = {
    {"__reduce__", url_method_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef url_method_getset[] = {
    {"__doc__", url_method_get_doc, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot url_method_slots[] = {
    {Py_tp_init, url_method_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, url_method_get},
    {Py_tp_traverse, url_method_traverse},
    {Py_tp_clear, url_method_clear},
    {Py_tp_dealloc, url_method_dealloc},
    {Py_tp_members, url_method_members},
    {Py_tp_getset, url_method_getset},
    {Py_tp_methods, url_method_methods},
    {Py_tp_getattro, url_method_getattro},
    {0, NULL},
};

PyType_Spec s3_url_method_spec = {
    .name = "django_s3_storage._s3.UrlMethod",
    .basicsize = sizeof(UrlMethod),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
             Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = url_method_slots,
};
