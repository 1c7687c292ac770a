#include "xml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/xmlerror.h>

static void
sax_fail(xml_sax *x, const char *msg)
{
    if (x->error == NULL)
        x->error = msg;
    xmlStopParser((xmlParserCtxtPtr)x->ctxt);
}

static void
sax_start(void *ud, const xmlChar *local, const xmlChar *prefix, const xmlChar *uri,
          int nns, const xmlChar **ns, int nattr, int ndef, const xmlChar **attrs)
{
    xml_sax *x = ud;

    (void)prefix; (void)uri; (void)nns; (void)ns; (void)nattr; (void)ndef; (void)attrs;
    if (x->depth >= XML_MAX_NESTING) {
        sax_fail(x, "XML nested too deeply");
        return;
    }
    if (x->depth < XML_MAX_DEPTH)
        x->path[x->depth] = (const char *)local;
    x->depth++;
    x->keep_text = x->depth > XML_MAX_DEPTH || x->on_start == NULL || x->on_start(x);
    buf_clear(&x->text);
}

static void
sax_end(void *ud, const xmlChar *local, const xmlChar *prefix, const xmlChar *uri)
{
    xml_sax *x = ud;

    (void)local; (void)prefix; (void)uri;
    if (x->error == NULL && x->on_end(x) < 0)
        sax_fail(x, x->error ? x->error : "unexpected XML reply");
    x->depth--;
    x->keep_text = 1;
    buf_clear(&x->text);
}

static void
sax_text(void *ud, const xmlChar *p, int n)
{
    xml_sax *x = ud;

    if (x->depth > XML_MAX_DEPTH || !x->keep_text)
        return;
    if (x->text.len + (size_t)n > XML_MAX_TEXT) {
        sax_fail(x, "XML element text too long");
        return;
    }
    if (buf_append(&x->text, p, (size_t)n) < 0)
        sax_fail(x, "out of memory");
}

static void
sax_refuse_dtd(void *ud, const xmlChar *name, const xmlChar *eid, const xmlChar *sid)
{
    (void)name; (void)eid; (void)sid;
    sax_fail(ud, "XML with a DTD is refused");
}

static void
sax_refuse_entity(void *ud, const xmlChar *name, int type, const xmlChar *pid,
                  const xmlChar *sid, xmlChar *content)
{
    (void)name; (void)type; (void)pid; (void)sid; (void)content;
    sax_fail(ud, "XML entity declarations are refused");
}

#if LIBXML_VERSION >= 21200
static void sax_silent(void *ud, const xmlError *e) { (void)ud; (void)e; }
#else
static void sax_silent(void *ud, xmlErrorPtr e) { (void)ud; (void)e; }
#endif

int
xml_sax_init(xml_sax *x, xml_end_fn on_end)
{
    xmlSAXHandler sax;
    xmlParserCtxtPtr ctxt;

    memset(x, 0, sizeof(*x));
    x->on_end = on_end;
    x->keep_text = 1;
    memset(&sax, 0, sizeof(sax));
    sax.initialized = XML_SAX2_MAGIC;
    sax.startElementNs = sax_start;
    sax.endElementNs = sax_end;
    sax.characters = sax_text;
    sax.cdataBlock = sax_text;
    sax.internalSubset = sax_refuse_dtd;
    sax.externalSubset = sax_refuse_dtd;
    sax.entityDecl = sax_refuse_entity;
    sax.serror = sax_silent;
    ctxt = xmlCreatePushParserCtxt(&sax, x, NULL, 0, NULL);
    if (ctxt == NULL) {
        x->error = "out of memory";
        return -1;
    }
    xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    x->ctxt = ctxt;
    return 0;
}

int
xml_sax_feed(xml_sax *x, const char *p, size_t n)
{
    while (n > 0 && x->error == NULL) {
        int take = n > (1u << 20) ? (1 << 20) : (int)n;
        if (xmlParseChunk((xmlParserCtxtPtr)x->ctxt, p, take, 0) != 0 && x->error == NULL)
            x->error = "malformed XML reply";
        p += take;
        n -= (size_t)take;
    }
    return x->error ? -1 : 0;
}

int
xml_sax_finish(xml_sax *x)
{
    if (x->error == NULL && xmlParseChunk((xmlParserCtxtPtr)x->ctxt, NULL, 0, 1) != 0 &&
        x->error == NULL)
        x->error = "malformed XML reply";
    return x->error ? -1 : 0;
}

void
xml_sax_free(xml_sax *x)
{
    if (x->ctxt) {
        xmlParserCtxtPtr ctxt = x->ctxt;
        if (ctxt->myDoc)
            xmlFreeDoc(ctxt->myDoc);
        xmlFreeParserCtxt(ctxt);
    }
    x->ctxt = NULL;
    buf_free(&x->text);
}

int
xml_at(const xml_sax *x, int depth, const char *const *names)
{
    int i;

    if (x->depth != depth || depth > XML_MAX_DEPTH)
        return 0;
    for (i = 0; i < depth; i++)
        if (strcmp(x->path[i], names[i]) != 0)
            return 0;
    return 1;
}

/* ---- ListBucketResult -------------------------------------------------- */

static int
arena_str(xml_list *l, xml_str *s)
{
    s->off = l->arena.len;
    s->len = l->sax.text.len;
    return buf_append(&l->arena, l->sax.text.data ? l->sax.text.data : "", s->len);
}

static int
parse_ll(const buf_t *t, long long *out)
{
    char *end;

    if (t->len == 0 || t->len > 20)
        return -1;
    errno = 0;
    *out = strtoll(t->data, &end, 10);
    return (errno || end != t->data + t->len || *out < 0) ? -1 : 0;
}

static int
grow(void **arr, size_t *cap, size_t n, size_t size)
{
    void *p;
    size_t c;

    if (n < *cap)
        return 0;
    c = *cap ? *cap * 2 : 64;
    p = realloc(*arr, c * size);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = c;
    return 0;
}

/* Undoes encoding-type=url in place (the result is never longer): '+' is a
 * space, %XX a byte; a malformed escape stays as it is. */
static void
url_decode_in_place(char *a, xml_str *s)
{
    char *p = a + s->off, *w = p;
    size_t i, n = s->len;

    for (i = 0; i < n; i++) {
        int hi, lo;
        if (p[i] == '+') {
            *w++ = ' ';
        } else if (p[i] == '%' && i + 2 < n && (hi = buf_hexval(p[i + 1])) >= 0 &&
                   (lo = buf_hexval(p[i + 2])) >= 0) {
            *w++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *w++ = p[i];
        }
    }
    s->len = (size_t)(w - (a + s->off));
}

static void
list_decode(xml_list *l)
{
    size_t i;

    if (l->arena.data == NULL)
        return;
    for (i = 0; i < l->nobjects; i++)
        url_decode_in_place(l->arena.data, &l->objects[i].key);
    for (i = 0; i < l->nprefixes; i++)
        url_decode_in_place(l->arena.data, &l->prefixes[i]);
}

/* With keys_only, the text of an object's other fields is not even kept. */
static int
list_start(const xml_sax *x)
{
    const char *name = x->path[x->depth - 1];

    if (x->depth != 3 || !((const xml_list *)x)->keys_only)
        return 1;
    return (name[0] == 'K' && strcmp(name, "Key") == 0) ||
           (name[0] == 'P' && strcmp(name, "Prefix") == 0);
}

static int
list_entry_room(xml_list *l)
{
    if (l->nobjects + l->nprefixes < XML_MAX_LIST_ENTRIES)
        return 0;
    l->sax.error = "the listing page holds more than 10000 keys and prefixes";
    return -1;
}

/* An object's field (path ListBucketResult/Contents/name). */
static int
list_object_field(xml_list *l, const char *name)
{
    xml_object *o = &l->cur;

    if (strcmp(name, "Key") == 0)
        return arena_str(l, &o->key);
    if (l->keys_only)
        return 0;
    if (strcmp(name, "ETag") == 0)
        return arena_str(l, &o->etag);
    if (strcmp(name, "LastModified") == 0)
        return arena_str(l, &o->last_modified);
    if (strcmp(name, "StorageClass") == 0)
        return arena_str(l, &o->storage_class);
    if (strcmp(name, "Size") == 0 && parse_ll(&l->sax.text, &o->size) < 0) {
        l->sax.error = "bad Size in the listing";
        return -1;
    }
    return 0;
}

/* Element names are compared once the root is known to be ListBucketResult
 * (checked once: a document has one root). */
static int
list_end(xml_sax *x)
{
    xml_list *l = (xml_list *)x;
    const char *name = x->depth >= 2 ? x->path[1] : NULL;

    if (l->root == 0)
        l->root = strcmp(x->path[0], "ListBucketResult") == 0 ? 1 : -1;
    if (x->depth == 1) {
        if (l->root < 0) {
            x->error = "the reply is not a ListBucketResult";
            return -1;
        }
        /* EncodingType may come after the keys it describes */
        if (l->url_encoded)
            list_decode(l);
        return 0;
    }
    if (l->root < 0)
        return 0;
    if (x->depth == 3) {
        if (strcmp(name, "Contents") == 0)
            return list_object_field(l, x->path[2]);
        if (strcmp(name, "CommonPrefixes") != 0 || strcmp(x->path[2], "Prefix") != 0)
            return 0;
        if (list_entry_room(l) < 0 ||
            grow((void **)&l->prefixes, &l->cap_prefixes, l->nprefixes, sizeof(xml_str)) < 0)
            return -1;
        return arena_str(l, &l->prefixes[l->nprefixes++]);
    }
    if (x->depth != 2)
        return 0;
    if (strcmp(name, "Contents") == 0) {
        if (list_entry_room(l) < 0 ||
            grow((void **)&l->objects, &l->cap_objects, l->nobjects, sizeof(xml_object)) < 0)
            return -1;
        l->objects[l->nobjects++] = l->cur;
        memset(&l->cur, 0, sizeof(l->cur));
    } else if (strcmp(name, "IsTruncated") == 0) {
        l->is_truncated = x->text.len == 4 && memcmp(x->text.data, "true", 4) == 0;
    } else if (strcmp(name, "EncodingType") == 0) {
        l->url_encoded = x->text.len == 3 && memcmp(x->text.data, "url", 3) == 0;
    } else if (strcmp(name, "NextContinuationToken") == 0) {
        l->has_next_token = 1;
        return arena_str(l, &l->next_token);
    }
    return 0;
}

int
xml_list_init(xml_list *l, int keys_only)
{
    memset(l, 0, sizeof(*l));
    l->keys_only = keys_only;
    if (xml_sax_init(&l->sax, list_end) < 0)
        return -1;
    l->sax.on_start = list_start;
    return 0;
}

void
xml_list_free(xml_list *l)
{
    xml_sax_free(&l->sax);
    buf_free(&l->arena);
    free(l->objects);
    free(l->prefixes);
    l->objects = NULL;
    l->prefixes = NULL;
    l->nobjects = l->nprefixes = l->cap_objects = l->cap_prefixes = 0;
}

/* ---- Error and CopyObjectResult ---------------------------------------- */

typedef struct {
    xml_sax sax;
    xml_reply *out;
} reply_parser;

static void
copy_text(const xml_sax *x, char *dst, size_t size)
{
    size_t n = x->text.len < size - 1 ? x->text.len : size - 1;

    if (n)
        memcpy(dst, x->text.data, n);
    dst[n] = '\0';
}

static int
reply_end(xml_sax *x)
{
    xml_reply *r = ((reply_parser *)x)->out;
    const char *name;

    if (x->depth == 1) {
        snprintf(r->root, sizeof(r->root), "%s", x->path[0]);
        return 0;
    }
    if (x->depth != 2)
        return 0;
    name = x->path[1];
    if (strcmp(name, "Code") == 0)
        copy_text(x, r->code, sizeof(r->code));
    else if (strcmp(name, "Message") == 0)
        copy_text(x, r->message, sizeof(r->message));
    else if (strcmp(name, "RequestId") == 0)
        copy_text(x, r->request_id, sizeof(r->request_id));
    else if (strcmp(name, "Region") == 0)
        copy_text(x, r->region, sizeof(r->region));
    else if (strcmp(name, "Endpoint") == 0)
        copy_text(x, r->endpoint, sizeof(r->endpoint));
    else if (strcmp(name, "ETag") == 0)
        copy_text(x, r->etag, sizeof(r->etag));
    else if (strcmp(name, "LastModified") == 0)
        copy_text(x, r->last_modified, sizeof(r->last_modified));
    return 0;
}

/* One small document, whole: leading white space skipped (S3 keeps a long
 * request alive with spaces before the document), parsed, the parser freed. */
static int
parse_whole(xml_sax *x, xml_end_fn on_end, const char *p, size_t n, const char **error)
{
    int rc = -1;

    while (n > 0 && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
        n--;
    }
    if (xml_sax_init(x, on_end) < 0)
        goto done;
    if (xml_sax_feed(x, p, n) < 0 || xml_sax_finish(x) < 0)
        goto done;
    rc = 0;
done:
    if (rc < 0)
        *error = x->error ? x->error : "malformed XML reply";
    xml_sax_free(x);
    return rc;
}

int
xml_parse_reply(const char *p, size_t n, xml_reply *out, const char **error)
{
    reply_parser rp;

    memset(out, 0, sizeof(*out));
    rp.out = out;
    return parse_whole(&rp.sax, reply_end, p, n, error);
}

/* ---- InitiateMultipartUploadResult ------------------------------------- */

typedef struct {
    xml_sax sax;
    buf_t *out;
    int found;
} upload_id_parser;

static const char *const P_UPLOAD_ID[] = {"InitiateMultipartUploadResult", "UploadId"};

static int
upload_id_end(xml_sax *x)
{
    upload_id_parser *u = (upload_id_parser *)x;

    if (x->depth == 1 && strcmp(x->path[0], "InitiateMultipartUploadResult") != 0) {
        x->error = "the reply is not an InitiateMultipartUploadResult";
        return -1;
    }
    if (!xml_at(x, 2, P_UPLOAD_ID))
        return 0;
    if (u->found || x->text.len == 0 || x->text.len > XML_MAX_UPLOAD_ID) {
        x->error = "the reply's UploadId is missing, repeated or too long";
        return -1;
    }
    u->found = 1;
    buf_clear(u->out);
    return buf_append(u->out, x->text.data, x->text.len);
}

int
xml_parse_upload_id(const char *p, size_t n, buf_t *out, const char **error)
{
    upload_id_parser u;

    u.out = out;
    u.found = 0;
    if (parse_whole(&u.sax, upload_id_end, p, n, error) < 0)
        return -1;
    if (!u.found) {
        *error = "the reply has no UploadId";
        return -1;
    }
    return 0;
}

/* ---- times ------------------------------------------------------------- */

/* The value S3 writes in LastModified; what a server sends is parsed, so every
 * field is checked (digits, in range) before it becomes a struct tm: sscanf's %d
 * alone took "-2147483648" as a year, and y - 1900 overflowed. */
double
xml_iso_epoch(const char *p, size_t n)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    struct tm tm;
    double frac = 0.0, scale = 0.1;
    size_t i;
    int v[6], k;

    if (n < sizeof(shape) - 1 || n > 40)
        return 0.0;
    for (i = 0; i < sizeof(shape) - 1; i++)
        if (shape[i] == 'd' ? !(p[i] >= '0' && p[i] <= '9') : p[i] != shape[i])
            return 0.0;
    for (k = 0; k < 6; k++) {   /* at 0, 5, 8, 11, 14, 17: 4 digits, then 2 each */
        size_t at = k == 0 ? 0 : 2 + 3 * (size_t)k, len = k == 0 ? 4 : 2;
        v[k] = 0;
        for (i = at; i < at + len; i++)
            v[k] = v[k] * 10 + (p[i] - '0');
    }
    i = sizeof(shape) - 1;
    if (i < n && p[i] == '.')
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++, scale /= 10)
            frac += (p[i] - '0') * scale;
    if (i < n && p[i] == 'Z')
        i++;
    if (i != n || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 ||
        v[5] > 60)
        return 0.0;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    return (double)timegm(&tm) + frac;
}
