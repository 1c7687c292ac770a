#include "gzip.h"

#include <string.h>

#define GZ_CHUNK 65536
#define GZ_WBITS (15 + 16)   /* gzip wrapper, not zlib's */

int
gz_deflate_init(gz_stream *g, int level)
{
    memset(g, 0, sizeof(*g));
    if (level < 0 || level > 9) {
        g->error = "gzip level must be between 0 and 9";
        return -1;
    }
    if (deflateInit2(&g->zs, level, Z_DEFLATED, GZ_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        g->error = "cannot start the gzip encoder";
        return -1;
    }
    g->active = 1;
    return 0;
}

int
gz_inflate_init(gz_stream *g)
{
    memset(g, 0, sizeof(*g));
    if (inflateInit2(&g->zs, GZ_WBITS) != Z_OK) {
        g->error = "cannot start the gzip decoder";
        return -1;
    }
    g->active = 1;
    g->inflate = 1;
    return 0;
}

/* One call of deflate or inflate on whatever input is set; appends output. */
static int
gz_step(gz_stream *g, int flush, buf_t *out, int *zrc)
{
    size_t before;

    if (buf_reserve(out, GZ_CHUNK) < 0) {
        g->error = "out of memory";
        return -1;
    }
    g->zs.next_out = (Bytef *)out->data + out->len;
    g->zs.avail_out = (uInt)(out->cap - out->len - 1);
    before = g->zs.avail_out;
    *zrc = g->inflate ? inflate(&g->zs, flush) : deflate(&g->zs, flush);
    out->len += before - g->zs.avail_out;
    out->data[out->len] = '\0';
    return 0;
}

int
gz_feed(gz_stream *g, const void *p, size_t n, int finish, buf_t *out)
{
    const unsigned char *in = p;
    int zrc;

    if (!g->active) {
        g->error = "gzip stream is not open";
        return -1;
    }
    do {
        /* zlib counts input in uInt: feed very large inputs in slices */
        uInt take = n > (1u << 30) ? (1u << 30) : (uInt)n;
        int last = finish && take == n;
        g->zs.next_in = (Bytef *)in;
        g->zs.avail_in = take;
        in += take;
        n -= take;
        for (;;) {
            if (gz_step(g, g->inflate ? Z_NO_FLUSH : (last ? Z_FINISH : Z_NO_FLUSH), out,
                        &zrc) < 0)
                return -1;
            if (g->inflate) {
                if (zrc == Z_STREAM_END) {
                    g->at_end = 1;
                    if (g->zs.avail_in == 0)
                        break;
                    /* another gzip member follows */
                    if (inflateReset(&g->zs) != Z_OK) {
                        g->error = "invalid gzip data";
                        return -1;
                    }
                    g->at_end = 0;
                    continue;
                }
                if (zrc == Z_OK) {
                    g->at_end = 0;
                    if (g->zs.avail_in == 0 && g->zs.avail_out != 0)
                        break;
                    continue;
                }
                if (zrc == Z_BUF_ERROR && g->zs.avail_in == 0)
                    break;
                g->error = zrc == Z_MEM_ERROR ? "out of memory" : "invalid gzip data";
                return -1;
            } else {
                if (zrc == Z_STREAM_END)
                    break;
                if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
                    g->error = "gzip encoding failed";
                    return -1;
                }
                if (!last && g->zs.avail_in == 0 && g->zs.avail_out != 0)
                    break;
            }
        }
    } while (n > 0);
    if (finish && g->inflate && !g->at_end) {
        g->error = "truncated gzip data";
        return -1;
    }
    return 0;
}

void
gz_end(gz_stream *g)
{
    if (g->active) {
        if (g->inflate)
            inflateEnd(&g->zs);
        else
            deflateEnd(&g->zs);
    }
    g->active = 0;
}

int
gz_compress(const void *p, size_t n, int level, buf_t *out, const char **error)
{
    gz_stream g;
    int rc = -1;

    if (gz_deflate_init(&g, level) < 0 || gz_feed(&g, p, n, 1, out) < 0)
        goto done;
    rc = 0;
done:
    if (rc < 0)
        *error = g.error;
    gz_end(&g);
    return rc;
}

int
gz_decompress(const void *p, size_t n, buf_t *out, const char **error)
{
    gz_stream g;
    int rc = -1;

    if (gz_inflate_init(&g) < 0 || gz_feed(&g, p, n, 1, out) < 0)
        goto done;
    rc = 0;
done:
    if (rc < 0)
        *error = g.error;
    gz_end(&g);
    return rc;
}
