/* libFuzzer target: the response header parser of csrc/transfer.c: curl's
 * header callback (on_header, static: the file is included whole), then the
 * lookups every caller makes (xfer_header) and the retry decisions that read
 * headers (x-amz-retry-after). Input: the header block as a server sends it;
 * each line goes to on_header in an allocation of its own exact size, as curl
 * promises nothing past the line. */
#include "../csrc/transfer.c"

#include <stdint.h>

static const char *const lookups[] = {
    "content-length", "content-range", "content-encoding", "etag", "last-modified",
    "x-amz-request-id", "x-amz-retry-after", "x-amz-bucket-region",
    "x-amz-meta-uncompressed_size", "x-amz-server-side-encryption", "", NULL,
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xfer_request r;
    size_t i = 0, j;

    memset(&r, 0, sizeof(r));
    while (i < size) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t n = nl ? (size_t)(nl - (data + i)) + 1 : size - i;
        char *line = malloc(n);
        if (line == NULL)
            abort();
        memcpy(line, data + i, n);
        if (on_header(line, 1, n, &r) != n) {
            free(line);
            break;   /* out of memory: curl fails the transfer */
        }
        free(line);
        i += n;
    }
    if (r.head.len && r.head.data[r.head.len] != '\0')
        abort();
    for (j = 0; lookups[j]; j++) {
        size_t len = 0;
        const char *v = xfer_header(&r, lookups[j], &len);
        if (v && (v < r.head.data || v + len > r.head.data + r.head.len))
            abort();
    }
    for (j = 1; j <= 5; j++) {
        double d = xfer_backoff_seconds(&r, (int)j, 0, "SlowDown");
        if (!(d >= 0.0 && d <= 25.0))
            abort();
    }
    (void)xfer_retryable(&r, 0, NULL);
    xfer_request_free(&r);
    return 0;
}
