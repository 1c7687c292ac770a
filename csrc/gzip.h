/* gzip: streaming gzip encode/decode on zlib, in the gzip format browsers read.
 *
 * Pure C: safe with the GIL released. A gz_stream belongs to one thread at a
 * time; gz_end() frees it and is safe to call on a zeroed or ended stream. */
#ifndef S3_GZIP_H
#define S3_GZIP_H

#include <stddef.h>
#include <zlib.h>

#include "buf.h"

typedef struct {
    z_stream zs;
    int active;     /* 1 between init and end */
    int inflate;    /* 1: decoder, 0: encoder */
    int at_end;     /* decoder: the last member ended exactly at the input's end */
    const char *error;
} gz_stream;

int gz_deflate_init(gz_stream *g, int level);   /* level 0-9 */
int gz_inflate_init(gz_stream *g);
/* Feeds n bytes and appends what comes out to `out`. An encoder writes the
 * gzip trailer when `finish` is set; a decoder checks that the data ended
 * cleanly when `finish` is set. -1 on error, with g->error set. */
int gz_feed(gz_stream *g, const void *p, size_t n, int finish, buf_t *out);
void gz_end(gz_stream *g);

int gz_compress(const void *p, size_t n, int level, buf_t *out, const char **error);
int gz_decompress(const void *p, size_t n, buf_t *out, const char **error);

#endif
