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
    cap = b->cap ? b->cap : 256;   /* a signature's strings in one allocation each */
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

/* Which bytes stay as they are, by table: bit 1 SigV4's unreserved
 * (A-Z a-z 0-9 - . _ ~), bit 2 '/', bit 4 what Django's filepath_to_uri keeps
 * besides those (! ' ( ) *). */
#define U_UNRES 1
#define U_SLASH 2
#define U_DJANGO 4
static const unsigned char uri_keep[256] = {
    ['-'] = U_UNRES, ['.'] = U_UNRES, ['_'] = U_UNRES, ['~'] = U_UNRES, ['/'] = U_SLASH,
    ['!'] = U_DJANGO, ['\''] = U_DJANGO, ['('] = U_DJANGO, [')'] = U_DJANGO, ['*'] = U_DJANGO,
    ['0'] = U_UNRES, ['1'] = U_UNRES, ['2'] = U_UNRES, ['3'] = U_UNRES, ['4'] = U_UNRES,
    ['5'] = U_UNRES, ['6'] = U_UNRES, ['7'] = U_UNRES, ['8'] = U_UNRES, ['9'] = U_UNRES,
    ['A'] = U_UNRES, ['B'] = U_UNRES, ['C'] = U_UNRES, ['D'] = U_UNRES, ['E'] = U_UNRES,
    ['F'] = U_UNRES, ['G'] = U_UNRES, ['H'] = U_UNRES, ['I'] = U_UNRES, ['J'] = U_UNRES,
    ['K'] = U_UNRES, ['L'] = U_UNRES, ['M'] = U_UNRES, ['N'] = U_UNRES, ['O'] = U_UNRES,
    ['P'] = U_UNRES, ['Q'] = U_UNRES, ['R'] = U_UNRES, ['S'] = U_UNRES, ['T'] = U_UNRES,
    ['U'] = U_UNRES, ['V'] = U_UNRES, ['W'] = U_UNRES, ['X'] = U_UNRES, ['Y'] = U_UNRES,
    ['Z'] = U_UNRES,
    ['a'] = U_UNRES, ['b'] = U_UNRES, ['c'] = U_UNRES, ['d'] = U_UNRES, ['e'] = U_UNRES,
    ['f'] = U_UNRES, ['g'] = U_UNRES, ['h'] = U_UNRES, ['i'] = U_UNRES, ['j'] = U_UNRES,
    ['k'] = U_UNRES, ['l'] = U_UNRES, ['m'] = U_UNRES, ['n'] = U_UNRES, ['o'] = U_UNRES,
    ['p'] = U_UNRES, ['q'] = U_UNRES, ['r'] = U_UNRES, ['s'] = U_UNRES, ['t'] = U_UNRES,
    ['u'] = U_UNRES, ['v'] = U_UNRES, ['w'] = U_UNRES, ['x'] = U_UNRES, ['y'] = U_UNRES,
    ['z'] = U_UNRES,
};

size_t
buf_escape_into(char *dst, const char *p, size_t n, int mode)
{
    const unsigned char keep = mode == BUF_URI_DJANGO ? (U_UNRES | U_SLASH | U_DJANGO)
                               : mode == BUF_URI_KEEP_SLASH ? (U_UNRES | U_SLASH) : U_UNRES;
    char *o = dst;
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (uri_keep[c] & keep) {
            *o++ = (char)c;
        } else {
            o[0] = '%';
            o[1] = hex_upper[c >> 4];
            o[2] = hex_upper[c & 15];
            o += 3;
        }
    }
    return (size_t)(o - dst);
}

int
buf_append_uri(buf_t *b, const char *p, size_t n, int keep_slash)
{
    if (buf_reserve(b, 3 * n) < 0)
        return -1;
    b->len += buf_escape_into(b->data + b->len, p, n,
                              keep_slash ? BUF_URI_KEEP_SLASH : BUF_URI_SIGV4);
    b->data[b->len] = '\0';
    return 0;
}

int
buf_is_escaped(const char *p, size_t n, int mode)
{
    const unsigned char keep = mode == BUF_URI_DJANGO ? (U_UNRES | U_SLASH | U_DJANGO)
                               : mode == BUF_URI_KEEP_SLASH ? (U_UNRES | U_SLASH) : U_UNRES;
    size_t i;
    int hi, lo;
    unsigned char d;

    for (i = 0; i < n; i++) {
        if (uri_keep[(unsigned char)p[i]] & keep)
            continue;
        /* an escape of a byte the encoding escapes, in upper-case hex */
        if (p[i] != '%' || i + 2 >= n || (hi = buf_hexval(p[i + 1])) < 0 ||
            (lo = buf_hexval(p[i + 2])) < 0)
            return 0;
        d = (unsigned char)(hi * 16 + lo);
        if ((uri_keep[d] & keep) || p[i + 1] != hex_upper[d >> 4] ||
            p[i + 2] != hex_upper[d & 15])
            return 0;
        i += 2;
    }
    return 1;
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

void
buf_hide_userinfo(char *text)
{
    static const char stops[] = " \t\r\n'\"<>`()[]{}";
    char *tok = text, *end, *at, *from, *q;
    size_t n;

    while (*tok) {
        tok += strspn(tok, stops);
        n = strcspn(tok, stops);
        end = tok + n;
        at = NULL;
        for (q = tok; q < end; q++)
            if (*q == '@')
                at = q;
        if (at == NULL) {
            tok = end;
            continue;
        }
        /* scheme://user:password@host: the scheme stays */
        from = tok;
        for (q = tok; q + 3 <= at; q++)
            if (memcmp(q, "://", 3) == 0) {
                from = q + 3;
                break;
            }
        if (at - from >= 3) {
            memcpy(from, "***", 3);
            memmove(from + 3, at, strlen(at) + 1);
            tok = from + 3 + (size_t)(end - at);
        } else {
            memset(from, '*', (size_t)(at - from));
            tok = end;
        }
    }
}
