/* libFuzzer target: the canonical request of SigV4 (csrc/sigv4.c) and the
 * percent-encoding under it (csrc/buf.c). A URL may come from a user's name, a
 * setting or a server's redirect; headers from settings and callables.
 *
 * Input: fields separated by NUL bytes: method, URL, payload hash, then header
 * name and value pairs. Also checks that buf_append_uri() escapes every byte
 * it must, that buf_append_unescaped() undoes it exactly, and that what
 * buf_is_escaped() accepts is its own canonical form. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sigv4.h"

#define MAX_FIELDS 34

static int
unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static void
check_uri_round_trip(const uint8_t *p, size_t n, int keep_slash)
{
    buf_t enc = BUF_INIT, dec = BUF_INIT;
    size_t i;

    if (buf_append_uri(&enc, (const char *)p, n, keep_slash) < 0 ||
        buf_append_unescaped(&dec, enc.data, enc.len) < 0)
        abort();
    for (i = 0; i < enc.len; i++) {
        unsigned char c = (unsigned char)enc.data[i];
        if (c == '%') {
            if (i + 2 >= enc.len || buf_hexval(enc.data[i + 1]) < 0 ||
                buf_hexval(enc.data[i + 2]) < 0)
                abort();
            i += 2;
        } else if (!unreserved(c) && !(keep_slash && c == '/')) {
            abort();
        }
    }
    if (dec.len != n || (n && memcmp(dec.data, p, n) != 0))
        abort();
    buf_free(&enc);
    buf_free(&dec);
}

/* buf_is_escaped() says yes only where decoding and encoding again gives the
 * input back: the signer then takes the input as its canonical form. */
static void
check_is_escaped(const uint8_t *p, size_t n, int keep_slash)
{
    buf_t dec = BUF_INIT, enc = BUF_INIT;

    if (!buf_is_escaped((const char *)p, n, keep_slash ? BUF_URI_KEEP_SLASH : BUF_URI_SIGV4))
        return;
    if (buf_append_unescaped(&dec, (const char *)p, n) < 0 ||
        buf_append_uri(&enc, dec.data ? dec.data : "", dec.len, keep_slash) < 0)
        abort();
    if (enc.len != n || (n && memcmp(enc.data, p, n) != 0))
        abort();
    buf_free(&dec);
    buf_free(&enc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *field[MAX_FIELDS];
    size_t len[MAX_FIELDS], nf = 0, i, start = 0;
    sigv4_header hdrs[(MAX_FIELDS - 3) / 2];
    size_t nh = 0;
    sigv4_url u;
    sigv4_ctx ctx;
    sigv4_stages st = SIGV4_STAGES_INIT;
    buf_t canonical = BUF_INIT, names = BUF_INIT, presigned = BUF_INIT;

    check_uri_round_trip(data, size, 0);
    check_uri_round_trip(data, size, 1);
    check_is_escaped(data, size, 0);
    check_is_escaped(data, size, 1);

    /* each field its own exact allocation: a read past one is caught */
    for (i = 0; i <= size && nf < MAX_FIELDS; i++) {
        if (i == size || data[i] == 0) {
            len[nf] = i - start;
            field[nf] = malloc(len[nf] + 1);
            if (field[nf] == NULL)
                abort();
            memcpy(field[nf], data + start, len[nf]);
            field[nf][len[nf]] = '\0';
            nf++;
            start = i + 1;
        }
    }
    if (nf < 3)
        goto done;
    for (i = 3; i + 1 < nf; i += 2) {
        hdrs[nh].name = field[i];
        hdrs[nh].name_len = len[i];
        hdrs[nh].value = field[i + 1];
        hdrs[nh].value_len = len[i + 1];
        nh++;
    }
    if (sigv4_split_url(field[1], &u) < 0)
        goto done;
    if (u.host_len == 0 || u.host + u.host_len > field[1] + len[1] ||
        u.query + u.query_len > field[1] + len[1] ||
        (u.path_given && u.path + u.path_len > field[1] + len[1]))
        abort();
    if (sigv4_canonical_request(&canonical, &names, field[0], &u, hdrs, nh, field[2], 1) < 0)
        abort();

    memset(&ctx, 0, sizeof(ctx));
    ctx.md = EVP_sha256();
    ctx.access_key = "AKIDEXAMPLE";
    ctx.secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    ctx.session_token = len[2] & 1 ? "token" : NULL;
    ctx.region = "us-east-1";
    ctx.service = len[0] & 1 ? "iam" : "s3";
    memcpy(ctx.amz_date, "20150830T123600Z", SIGV4_DATE_LEN + 1);
    if (sigv4_sign(&ctx, field[0], &u, hdrs, nh, field[2], &st) < 0 ||
        strlen(st.signature) != 64)
        abort();
    if (sigv4_presign(&ctx, field[0], field[1], 3600, &presigned) < 0)
        abort();
done:
    buf_free(&canonical);
    buf_free(&names);
    buf_free(&presigned);
    sigv4_stages_free(&st);
    for (i = 0; i < nf; i++)
        free(field[i]);
    return 0;
}
