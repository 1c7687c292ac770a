/* log: the request log behind the `django_s3_storage` logger. Each attempt of
 * each request is recorded where it ends, by whichever thread ran it and without
 * the GIL; the records go to the Python function of Client.set_log() the next
 * time the client holds the GIL (the end of an operation, a Reader's read, a
 * Writer's write). With no function set nothing is recorded: one int read. */
#ifndef S3_LOG_H
#define S3_LOG_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>

#define REQ_LOG_MAX 256   /* records held between two flushes; more are counted */

typedef struct {
    char method[8];
    char *key;                 /* malloc'ed; NULL: a call on the bucket */
    long status;               /* 0: no reply */
    int attempt;               /* 1, 2, ... */
    int again;                 /* another attempt follows (retry, redirect, renewal) */
    double ms;
    unsigned long long bytes;  /* body bytes moved, either way */
    char code[64];             /* S3's error code, "curl N" for a transport failure */
} req_log_entry;

typedef struct {
    pthread_mutex_t lock;
    PyObject *fn;              /* NULL: no log */
    int on;                    /* fn != NULL, read by any thread */
    req_log_entry *q;          /* REQ_LOG_MAX, made by the first set */
    int n;
    unsigned long dropped;
} req_log;

void req_log_init(req_log *l);
void req_log_destroy(req_log *l);        /* with the GIL */
void req_log_after_fork(req_log *l);     /* in a child: the lock afresh */
int req_log_set(req_log *l, PyObject *fn);   /* with the GIL; fn or None */
void req_log_add(req_log *l, req_log_entry *e);   /* any thread; takes e->key */
void req_log_flush(req_log *l);          /* with the GIL; keeps a pending exception */

#endif
