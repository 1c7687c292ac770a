/* libFuzzer target: the ListBucketResult SAX parser (csrc/xml.c), fed in pieces
 * as curl's write callback feeds it. The first byte picks the piece size, so the
 * fuzzer also explores where the reply is cut. Checks that every string the
 * parser kept lies inside its arena, and reads each LastModified as client.c
 * does (xml_iso_epoch). */
#include <stdint.h>
#include <stdlib.h>

#include "xml.h"

static void
check_str(const xml_list *l, const xml_str *s)
{
    if (s->off > l->arena.len || s->len > l->arena.len - s->off)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xml_list l;
    size_t piece, i;
    int ok, keys_only;

    if (size < 1)
        return 0;
    piece = data[0] >= 0xc0 ? size : (size_t)(data[0] % 97) + 1;
    keys_only = data[0] & 1;
    data++;
    size--;
    if (xml_list_init(&l, keys_only) < 0)
        abort();
    ok = 1;
    for (i = 0; i < size && ok; i += piece)
        ok = xml_sax_feed(&l.sax, (const char *)data + i, size - i < piece ? size - i : piece) == 0;
    if (ok)
        ok = xml_sax_finish(&l.sax) == 0;
    if (!ok && l.sax.error == NULL)
        abort();   /* a failure always says why */
    for (i = 0; i < l.nobjects; i++) {
        check_str(&l, &l.objects[i].key);
        check_str(&l, &l.objects[i].etag);
        check_str(&l, &l.objects[i].last_modified);
        check_str(&l, &l.objects[i].storage_class);
        if (l.objects[i].size < 0)
            abort();
        (void)xml_iso_epoch((l.arena.data ? l.arena.data : "") + l.objects[i].last_modified.off,
                            l.objects[i].last_modified.len);
    }
    for (i = 0; i < l.nprefixes; i++)
        check_str(&l, &l.prefixes[i]);
    if (l.has_next_token)
        check_str(&l, &l.next_token);
    xml_list_free(&l);
    return 0;
}
