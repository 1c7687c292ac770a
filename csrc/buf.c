#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

int
buf_reserve(buf_t *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > (size_t)-1 - b->len - 1)
        return -1;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > ((size_t)-1) / 2 ? need : cap * 2;
    p = realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int
buf_append(buf_t *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int
buf_puts(buf_t *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int
buf_putc(buf_t *b, char c)
{
    return buf_append(b, &c, 1);
}

int
buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int
buf_put_long(buf_t *b, long v)
{
    char tmp[24];
    int i = (int)sizeof(tmp);
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    return buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

static const char hex_lower[] = "0123456789abcdef";
static const char hex_upper[] = "0123456789ABCDEF";

int
buf_append_hex(buf_t *b, const unsigned char *p, size_t n)
{
    size_t i;

    if (buf_reserve(b, 2 * n) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        b->data[b->len++] = hex_lower[p[i] >> 4];
        b->data[b->len++] = hex_lower[p[i] & 15];
    }
    b->data[b->len] = '\0';
    return 0;
}

static int
is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

int
buf_append_uri(buf_t *b, const char *p, size_t n, int keep_slash)
{
    size_t i;

    if (buf_reserve(b, 3 * n) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            b->data[b->len++] = (char)c;
        } else {
            b->data[b->len++] = '%';
            b->data[b->len++] = hex_upper[c >> 4];
            b->data[b->len++] = hex_upper[c & 15];
        }
    }
    b->data[b->len] = '\0';
    return 0;
}

int
buf_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
buf_append_unescaped(buf_t *b, const char *p, size_t n)
{
    size_t i;
    int hi, lo;

    if (buf_reserve(b, n) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n && (hi = buf_hexval(p[i + 1])) >= 0 &&
            (lo = buf_hexval(p[i + 2])) >= 0) {
            b->data[b->len++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            b->data[b->len++] = p[i];
        }
    }
    b->data[b->len] = '\0';
    return 0;
}

void
buf_clear(buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void
buf_free(buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void
buf_free_secure(buf_t *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->cap);
    buf_free(b);
}
