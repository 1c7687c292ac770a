/* libFuzzer target: the small S3 replies (csrc/xml.c): the Error document,
 * CopyObjectResult and CompleteMultipartUploadResult (xml_parse_reply) and
 * InitiateMultipartUploadResult (xml_parse_upload_id), on the same bytes; and
 * the LastModified time parser (xml_iso_epoch) on the reply's and on the bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"

#define TERMINATED(f) (memchr((f), '\0', sizeof(f)) != NULL)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xml_reply r;
    buf_t id = BUF_INIT;
    const char *error = NULL;
    /* an exact copy: a read past the reply is a read past this allocation */
    char *p = malloc(size ? size : 1);

    if (p == NULL)
        return 0;
    memcpy(p, data, size);
    if (xml_parse_reply(p, size, &r, &error) < 0) {
        if (error == NULL)
            abort();
    } else if (!TERMINATED(r.root) || !TERMINATED(r.code) || !TERMINATED(r.message) ||
               !TERMINATED(r.request_id) || !TERMINATED(r.region) || !TERMINATED(r.endpoint) ||
               !TERMINATED(r.etag) || !TERMINATED(r.last_modified)) {
        abort();
    } else {
        (void)xml_iso_epoch(r.last_modified, strlen(r.last_modified));
    }
    /* the time parser on raw bytes too: it is what turns them into a struct tm */
    (void)xml_iso_epoch(p, size);
    error = NULL;
    if (xml_parse_upload_id(p, size, &id, &error) < 0) {
        if (error == NULL)
            abort();
    } else if (id.len == 0 || id.len > XML_MAX_UPLOAD_ID) {
        abort();
    }
    buf_free(&id);
    free(p);
    return 0;
}
