/* xml: the S3 replies, parsed by a libxml2 SAX push parser as the bytes arrive.
 *
 * Pure C: safe with the GIL released; one parser per request. DTDs are refused
 * outright (no entity declarations, so no expansion, and nothing loaded from the
 * network); the first error is latched and the parser stopped. */
#ifndef S3_XML_H
#define S3_XML_H

#include <stddef.h>

#include "buf.h"

#define XML_MAX_DEPTH 8          /* element names kept; deeper ones are only counted */
#define XML_MAX_TEXT (1 << 20)   /* the longest text one element may carry */
#define XML_MAX_NESTING 64       /* S3 replies nest 3 deep; more is refused */
#define XML_MAX_LIST_ENTRIES 10000 /* keys and prefixes of a page: S3 sends 1,000 at most */

typedef struct xml_sax xml_sax;
/* Called at the end of each element; x->text holds its text. Return -1 to stop. */
typedef int (*xml_end_fn)(xml_sax *x);
/* Called at the start of each element kept in path: 1 to keep its text, 0 to drop it. */
typedef int (*xml_start_fn)(const xml_sax *x);

struct xml_sax {
    void *ctxt;                     /* xmlParserCtxtPtr */
    const char *path[XML_MAX_DEPTH]; /* element names, root first: the parser's own
                                     * interned strings, valid until xml_sax_free */
    int depth;
    buf_t text;
    int keep_text;                  /* the current element's text is wanted */
    xml_start_fn on_start;          /* NULL: every element's text is kept */
    xml_end_fn on_end;
    const char *error;              /* first error, a static string */
};

int xml_sax_init(xml_sax *x, xml_end_fn on_end);
int xml_sax_feed(xml_sax *x, const char *p, size_t n);
int xml_sax_finish(xml_sax *x);
void xml_sax_free(xml_sax *x);
/* 1 when the element being closed has this path (root first), else 0. */
int xml_at(const xml_sax *x, int depth, const char *const *names);

/* ListBucketResult (ListObjectsV2). Strings live in `arena` as (offset, length). */
typedef struct { size_t off, len; } xml_str;
typedef struct {
    xml_str key, etag, last_modified, storage_class;
    long long size;
} xml_object;

typedef struct {
    xml_sax sax;                    /* first: the callbacks cast back to xml_list */
    buf_t arena;
    xml_object *objects;
    size_t nobjects, cap_objects;
    xml_str *prefixes;
    size_t nprefixes, cap_prefixes;
    xml_str next_token;
    int has_next_token;
    int is_truncated;
    int url_encoded;                /* <EncodingType>url</EncodingType> was in the reply */
    int keys_only;                  /* only Key of an object: no ETag, Size and the rest */
    int root;                       /* 1: the root is ListBucketResult, -1: it is not */
    xml_object cur;
} xml_list;

/* keys_only: the objects' keys alone are read (their other fields stay empty). */
int xml_list_init(xml_list *l, int keys_only);
void xml_list_free(xml_list *l);
/* Feed with xml_sax_feed(&l->sax, ...), end with xml_sax_finish(&l->sax). When the
 * reply says <EncodingType>url</EncodingType> (asked for with encoding-type=url), the
 * keys and common prefixes are decoded ('+' is a space, %XX a byte) when the document
 * ends; NextContinuationToken is opaque and never encoded. */

/* The small replies: the Error document and CopyObjectResult (S3 may send an
 * Error document with status 200 for a copy, so one parser reads both). */
typedef struct {
    char root[40];
    char code[64];
    char message[512];
    char request_id[128];
    char region[64];
    char endpoint[256];             /* a redirect's: bucket.s3.<region>.amazonaws.com */
    char etag[130];
    char last_modified[40];
} xml_reply;

/* Leading white space is skipped. */
int xml_parse_reply(const char *p, size_t n, xml_reply *out, const char **error);

/* InitiateMultipartUploadResult: its UploadId into `out` (cleared first), whole:
 * at most XML_MAX_UPLOAD_ID bytes, or the reply is refused. -1 with *error set
 * (a static string) when the document is not one or has no UploadId. The
 * CompleteMultipartUploadResult needs nothing of its own: xml_parse_reply reads
 * its root and ETag, and an Error document that comes with a 200. */
#define XML_MAX_UPLOAD_ID 1024
int xml_parse_upload_id(const char *p, size_t n, buf_t *out, const char **error);

/* A time as S3 writes it in listings and copy results, "2009-10-12T17:50:30.000Z",
 * in seconds since the epoch; 0.0 when it is not one. */
double xml_iso_epoch(const char *p, size_t n);

#endif
