/* The request log: see log.h. */
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include "module.h"

void
req_log_init(req_log *l)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
}

static void
drop_entries(req_log_entry *q, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        free(q[i].key);
        q[i].key = NULL;
    }
}

void
req_log_destroy(req_log *l)
{
    if (l->q != NULL)
        drop_entries(l->q, l->n);
    free(l->q);
    l->q = NULL;
    l->n = 0;
    l->on = 0;
    Py_CLEAR(l->fn);
    pthread_mutex_destroy(&l->lock);
}

void
req_log_after_fork(req_log *l)
{
    pthread_mutex_init(&l->lock, NULL);
}

int
req_log_set(req_log *l, PyObject *fn)
{
    PyObject *old;

    if (fn == Py_None)
        fn = NULL;
    if (fn != NULL && !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "set_log() takes a callable or None");
        return -1;
    }
    if (fn != NULL && l->q == NULL &&
        (l->q = calloc(REQ_LOG_MAX, sizeof(req_log_entry))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    pthread_mutex_lock(&l->lock);
    old = l->fn;
    Py_XINCREF(fn);
    l->fn = fn;
    l->on = fn != NULL;
    pthread_mutex_unlock(&l->lock);
    Py_XDECREF(old);
    return 0;
}

void
req_log_add(req_log *l, req_log_entry *e)
{
    pthread_mutex_lock(&l->lock);
    if (l->on && l->q != NULL && l->n < REQ_LOG_MAX) {
        l->q[l->n++] = *e;
        e->key = NULL;
    } else {
        l->dropped++;
    }
    pthread_mutex_unlock(&l->lock);
    free(e->key);
    e->key = NULL;
}

/* Hands the records to the function, in the order they were made. A failing
 * function is reported as unraisable: the log never changes an operation's result. */
void
req_log_flush(req_log *l)
{
    req_log_entry batch[16];
    unsigned long dropped;
    PyObject *fn, *exc, *r;
    int n, i;

    if (!l->on || l->n == 0)
        return;
    exc = s3_exc_take();
    for (;;) {
        pthread_mutex_lock(&l->lock);
        n = l->n < 16 ? l->n : 16;
        memcpy(batch, l->q, (size_t)n * sizeof(req_log_entry));
        memmove(l->q, l->q + n, (size_t)(l->n - n) * sizeof(req_log_entry));
        l->n -= n;
        dropped = l->dropped;
        l->dropped = 0;
        fn = l->fn;
        Py_XINCREF(fn);
        pthread_mutex_unlock(&l->lock);
        for (i = 0; i < n; i++) {
            if (fn != NULL) {
                r = PyObject_CallFunction(fn, "szliidKzk", batch[i].method, batch[i].key,
                                          batch[i].status, batch[i].attempt, batch[i].again,
                                          batch[i].ms, batch[i].bytes,
                                          batch[i].code[0] ? batch[i].code : NULL,
                                          i == 0 ? dropped : 0UL);
                if (r == NULL)
                    PyErr_WriteUnraisable(fn);
                Py_XDECREF(r);
            }
            free(batch[i].key);
        }
        Py_XDECREF(fn);
        if (n == 0)
            break;
    }
    s3_exc_restore(exc);
}
