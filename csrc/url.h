/* url: the storage's url() in C. url_setup() keeps the form the storage's settings
 * chose (public URL, plain, presigned); storage_url() builds it for a name that
 * storage.py would keep as it is; UrlMethod makes of that S3Storage.url itself.
 * With the GIL. */
#ifndef S3_URL_H
#define S3_URL_H

#include "client.h"

/* url_setup(mode, prefix, public_base, expires) -> None */
PyObject *url_setup(PyObject *client, PyObject *args);
/* storage_url(name, extra_params, client_method) -> str, or None: storage.py's path */
PyObject *url_storage(PyObject *client, PyObject *const *args, Py_ssize_t nargs);
/* UrlMethod(fallback): the type of S3Storage.url, a method descriptor */
extern PyType_Spec s3_url_method_spec;

#endif
