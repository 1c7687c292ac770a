/* libFuzzer target: what csrc/credentials.c reads from outside the process
 * (the file is included whole: its parsers are static). The first byte picks
 * the parser, the rest is its input:
 *   0  the shared config file (ini_section, config rules), profile "dev"
 *   1  the shared credentials file (ini_section), profile "default"
 *   2  credential_process output (set_from_json, Version 1)
 *   3  the container endpoint's JSON (set_from_json)
 *   4  the instance metadata JSON (set_from_json, Code Success)
 *   5  an STS reply, AssumeRole or AssumeRoleWithWebIdentity (sts_end)
 *   6  a time from any of them (parse_time)
 *   7  a server's message shown in an error (put_server_text), the IMDS role
 *      name check (check_name), endpoints and regions from the environment
 *      (check_endpoint, container_host_ok, region_ok) */
#include "../csrc/credentials.c"

#include <stdint.h>

static const char *const process_names[5] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                                             "Expiration", "Version"};
static const char *const container_names[5] = {"AccessKeyId", "SecretAccessKey", "Token",
                                               "Expiration", NULL};
static const char *const imds_names[5] = {"AccessKeyId", "SecretAccessKey", "Token",
                                          "Expiration", "Code"};

static void
fuzz_json(chain *ch, const char *p, size_t n, const char *const names[5], const char *expect)
{
    buf_t body = BUF_INIT;
    cred_set *s = NULL;

    if (buf_append(&body, p, n) < 0)
        return;
    if (set_from_json(ch, &body, names, expect, "fuzz", 1, &s) > 0) {
        if (s == NULL || s->access_key == NULL || s->secret_key == NULL ||
            !printable(s->access_key, strlen(s->access_key), 0) ||
            !printable(s->secret_key, strlen(s->secret_key), 0))
            abort();
        set_free(s);
    } else if (ch->err.len == 0) {
        abort();   /* a refusal always says why */
    }
    buf_free_secure(&body);
}

static void
fuzz_sts(const char *p, size_t n)
{
    sts_parser sp;
    int i;

    memset(&sp, 0, sizeof(sp));
    if (xml_sax_init(&sp.sax, sts_end) == 0 && xml_sax_feed(&sp.sax, p, n) == 0 &&
        xml_sax_finish(&sp.sax) == 0) {
        time_t t;
        if (memchr(sp.code, '\0', sizeof(sp.code)) == NULL ||
            memchr(sp.message, '\0', sizeof(sp.message)) == NULL)
            abort();
        if (sp.v[3])
            (void)parse_time(sp.v[3], &t);
    }
    for (i = 0; i < 4; i++)
        wipe_free(&sp.v[i]);
    xml_sax_free(&sp.sax);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cred_cache cache;
    chain ch;
    const char *p;
    size_t n;

    if (size < 1)
        return 0;
    p = (const char *)data + 1;
    n = size - 1;
    memset(&cache, 0, sizeof(cache));
    memset(&ch, 0, sizeof(ch));
    ch.c = &cache;
    switch (data[0] % 8) {
    case 0:
    case 1: {
        buf_t f = BUF_INIT;
        profile_t prof;
        int i;
        memset(&prof, 0, sizeof(prof));
        if (buf_append(&f, p, n) == 0)
            ini_section(&f, data[0] % 8 ? "default" : "dev", data[0] % 8 == 0, &prof);
        for (i = 0; i < P_COUNT; i++)
            if (prof.v[i] && strlen(prof.v[i]) > n)
                abort();
        profile_free(&prof);
        buf_free(&f);
        break;
    }
    case 2:
        fuzz_json(&ch, p, n, process_names, "1");
        break;
    case 3:
        fuzz_json(&ch, p, n, container_names, NULL);
        break;
    case 4:
        fuzz_json(&ch, p, n, imds_names, "Success");
        break;
    case 5:
        fuzz_sts(p, n);
        break;
    case 6: {
        char *s = malloc(n + 1);
        time_t t;
        if (s == NULL)
            abort();
        memcpy(s, p, n);
        s[n] = '\0';
        if (parse_time(s, &t) == 0 && t < 0)
            abort();   /* years before 1970 are refused */
        free(s);
        break;
    }
    default: {
        char *s = malloc(n + 1);
        const char *secrets[3] = {"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL, "FQoGZXIvYXdzE"};
        buf_t out = BUF_INIT;
        size_t i;
        if (s == NULL)
            abort();
        memcpy(s, p, n);
        s[n] = '\0';
        put_server_text(&out, s, secrets, 3);
        for (i = 0; i < out.len; i++)
            if ((unsigned char)out.data[i] < 0x20 || (unsigned char)out.data[i] >= 0x7f)
                abort();
        if (out.len && (memmem(out.data, out.len, "wJalrXUtnFEMI/K7", 16) ||
                        memmem(out.data, out.len, "FQoGZXIvYXdzE", 13)))
            abort();
        (void)check_name(&ch, s, 1, 128, "+=,.@_-", "the role");
        /* endpoints from the environment: STS, instance metadata, the container */
        buf_clear(&out);
        if (check_endpoint(&ch, s, "AWS_ENDPOINT_URL_STS", &out) == 0) {
            sigv4_url u;
            if (sigv4_split_url(out.data, &u) < 0 || u.host_len == 0 || strchr(out.data, '@'))
                abort();
            for (i = 0; i < out.len; i++)
                if ((unsigned char)out.data[i] <= 0x20 || (unsigned char)out.data[i] >= 0x7f)
                    abort();
        }
        if (container_host_ok(s) && strncasecmp(s, "https://", 8) != 0 &&
            strncasecmp(s, "http://", 7) != 0)
            abort();
        (void)region_ok(s);
        buf_free(&out);
        free(s);
        break;
    }
    }
    buf_free(&ch.err);
    buf_free(&ch.tried);
    buf_free(&ch.source);
    return 0;
}
