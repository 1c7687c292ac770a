/* libFuzzer target: the gzip decoder (csrc/gzip.c) on hostile bytes, whole
 * (gz_decompress) and streamed in pieces (gz_feed, as a GET body arrives): both
 * must agree; and the encoder round trip on the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gzip.h"

#define GZ_MAX_RATIO 1032

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    buf_t whole = BUF_INIT, streamed = BUF_INIT, packed = BUF_INIT, back = BUF_INIT;
    const char *error = NULL;
    gz_stream g;
    size_t piece, i;
    int rc_whole, rc_streamed = 0;

    if (size < 1)
        return 0;
    piece = (size_t)(data[0] % 61) + 1;
    data++;
    size--;

    rc_whole = gz_decompress(data, size, &whole, &error);
    if (rc_whole < 0 && error == NULL)
        abort();

    if (gz_inflate_init(&g) < 0)
        abort();
    for (i = 0; i < size && rc_streamed == 0; i += piece) {
        size_t n = size - i < piece ? size - i : piece, before = streamed.len;
        rc_streamed = gz_feed(&g, data + i, n, i + n == size, &streamed);
        /* the bound the callers rely on: one call decodes at most deflate's
         * 1,032 to 1 of what it was given (plus the few bits zlib holds back) */
        if (streamed.len - before > GZ_MAX_RATIO * (n + 8))
            abort();
    }
    if (size == 0)
        rc_streamed = gz_feed(&g, "", 0, 1, &streamed);
    gz_end(&g);
    if (rc_whole != rc_streamed)
        abort();
    if (rc_whole == 0 && (whole.len != streamed.len ||
                          (whole.len && memcmp(whole.data, streamed.data, whole.len) != 0)))
        abort();

    if (gz_compress(data, size, data[-1] % 10, &packed, &error) < 0 ||
        gz_decompress(packed.data, packed.len, &back, &error) < 0 || back.len != size ||
        (size && memcmp(back.data, data, size) != 0))
        abort();

    buf_free(&whole);
    buf_free(&streamed);
    buf_free(&packed);
    buf_free(&back);
    return 0;
}
