/* buf: a growable byte buffer, the one container every other file uses.
 *
 * Allocates with malloc/realloc, never with the Python allocator, so it can be
 * used while the GIL is released. A buffer owns its data; buf_free() releases it
 * and leaves an empty buffer that may be used again. Not thread-safe: one owner. */
#ifndef S3_BUF_H
#define S3_BUF_H

#include <stddef.h>

typedef struct {
    char *data;   /* NUL-terminated after any successful append (not counted in len) */
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

int buf_reserve(buf_t *b, size_t extra);              /* 0, or -1 on out of memory */
int buf_append(buf_t *b, const void *p, size_t n);
int buf_puts(buf_t *b, const char *s);
int buf_putc(buf_t *b, char c);
int buf_printf(buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_put_long(buf_t *b, long v);                   /* decimal */
int buf_append_hex(buf_t *b, const unsigned char *p, size_t n);   /* lower-case hex */
/* Percent-encodes as SigV4 wants: every byte but A-Z a-z 0-9 - . _ ~ becomes %XX
 * (upper-case hex); '/' is kept as is when keep_slash is set. */
int buf_append_uri(buf_t *b, const char *p, size_t n, int keep_slash);
/* The same escape, by table, into dst (room for 3 * n bytes; no NUL written):
 * returns the bytes written. BUF_URI_DJANGO keeps what Django's filepath_to_uri
 * keeps (SigV4's unreserved, '/', and ! ' ( ) *). */
enum { BUF_URI_SIGV4 = 0, BUF_URI_KEEP_SLASH = 1, BUF_URI_DJANGO = 2 };
size_t buf_escape_into(char *dst, const char *p, size_t n, int mode);
/* Whether p is already what decoding its %XX escapes (as buf_append_unescaped
 * does) and encoding again in `mode` gives: then the round trip can be skipped. */
int buf_is_escaped(const char *p, size_t n, int mode);
/* Decodes %XX escapes (a malformed escape is copied literally). */
int buf_hexval(char c);                               /* 0-15, or -1 */
int buf_append_unescaped(buf_t *b, const char *p, size_t n);
void buf_clear(buf_t *b);                              /* len = 0, keeps memory */
void buf_free(buf_t *b);
/* Wipes the contents before freeing: for buffers that held secrets. */
void buf_free_secure(buf_t *b);
/* Hides what comes before the last '@' of each word of a text (after its
 * "scheme://", which stays): libcurl quotes a proxy URL it cannot parse, password
 * and all, in its error texts. Over-hiding (an '@' in a path) costs nothing. */
void buf_hide_userinfo(char *text);

#endif
