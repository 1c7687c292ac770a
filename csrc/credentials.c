#include "credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "xml.h"

extern char **environ;

#define FILE_MAX (1 << 20)          /* shared files */
#define TOKEN_FILE_MAX (64 << 10)   /* web identity and container token files */
#define REPLY_MAX (64 << 10)        /* JSON and XML credential replies */
#define IMDS_TIMEOUT_MS 1000
#define CONTAINER_TIMEOUT_MS 2000
#define PROFILE_DEPTH 5

/* ---- small helpers ------------------------------------------------------- */

static char *
dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static char *
dup_s(const char *s)
{
    return s ? dup_n(s, strlen(s)) : NULL;
}

static void
wipe_free(char **s)
{
    if (*s) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

/* Printable ASCII: 0x21-0x7e, or 0x20-0x7e with spaces. */
static int
printable(const char *v, size_t n, int spaces)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch > 0x7e || ch < (spaces ? 0x20 : 0x21))
            return 0;
    }
    return 1;
}

int
cred_check_value(int kind, const char *v, size_t n, const char *what, buf_t *err)
{
    static const size_t max[] = {128, 256, 16384};
    static const char *const name[] = {"an access key id", "a secret key", "a session token"};

    if (n >= 1 && n <= max[kind] && printable(v, n, kind == 2))
        return 0;
    buf_printf(err, "%s is not %s: it must be 1 to %zu printable ASCII characters%s", what,
               name[kind], max[kind], kind == 2 ? " without control characters"
                                                 : " without spaces or control characters");
    return -1;
}

static void
set_free(cred_set *s)
{
    if (s == NULL)
        return;
    wipe_free(&s->access_key);
    wipe_free(&s->secret_key);
    wipe_free(&s->session_token);
    sigv4_cache_reset(&s->key_cache);
    OPENSSL_cleanse(&s->key_cache, sizeof(s->key_cache));
    free(s);
}

/* ---- the environment snapshot ------------------------------------------- */

void
cred_env_load(cred_env *e)
{
    size_t n = 0, i;

    e->vars = NULL;
    e->n = 0;
    while (environ && environ[n])
        n++;
    e->vars = calloc(n + 1, sizeof(char *));
    if (e->vars == NULL)
        return;
    for (i = 0; i < n; i++) {
        e->vars[e->n] = dup_s(environ[i]);
        if (e->vars[e->n])
            e->n++;
    }
}

void
cred_env_free(cred_env *e)
{
    size_t i;

    for (i = 0; i < e->n; i++)
        wipe_free(&e->vars[i]);
    free(e->vars);
    e->vars = NULL;
    e->n = 0;
}

const char *
cred_env_get(const cred_env *e, const char *name)
{
    size_t nl = strlen(name), i;

    for (i = 0; e && i < e->n; i++)
        if (strncmp(e->vars[i], name, nl) == 0 && e->vars[i][nl] == '=')
            return e->vars[i] + nl + 1;
    return NULL;
}

/* ---- one resolution of the chain ----------------------------------------- */

typedef struct {
    cred_cache *c;
    const cred_env *env;
    buf_t tried;        /* what was looked at, for "no credentials" */
    buf_t err;          /* why a source that is configured failed */
    buf_t source;       /* where the winner came from */
} chain;

/* An environment variable, NULL when unset or empty. */
static const char *
envv(const chain *ch, const char *name)
{
    const char *v = cred_env_get(ch->env, name);

    return v && v[0] ? v : NULL;
}

static void
tried(chain *ch, const char *fmt, const char *a)
{
    if (ch->tried.len)
        buf_puts(&ch->tried, "; ");
    buf_printf(&ch->tried, fmt, a ? a : "");
}

/* A new set from the values found; each is checked first, and its source named
 * in the message when it is refused. */
static int
set_make(chain *ch, const char *ak, const char *sk, const char *tok, time_t exp,
         int refreshable, const char *const what[3], cred_set **out)
{
    cred_set *s;

    if (cred_check_value(0, ak, strlen(ak), what[0], &ch->err) < 0 ||
        cred_check_value(1, sk, strlen(sk), what[1], &ch->err) < 0 ||
        (tok && tok[0] && cred_check_value(2, tok, strlen(tok), what[2], &ch->err) < 0))
        return -1;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto oom;
    s->refs = 1;
    s->refreshable = refreshable;
    s->expiration = exp;
    s->access_key = dup_s(ak);
    s->secret_key = dup_s(sk);
    s->session_token = tok && tok[0] ? dup_s(tok) : NULL;
    sigv4_cache_reset(&s->key_cache);
    if (s->access_key == NULL || s->secret_key == NULL || (tok && tok[0] && !s->session_token))
        goto oom;
    *out = s;
    return 1;
oom:
    set_free(s);
    buf_puts(&ch->err, "out of memory");
    return -1;
}

/* ---- files ------------------------------------------------------------------ */

/* 0 with the file in `out`, 1 when it does not exist, -1 with a message. */
static int
read_file(chain *ch, const char *path, size_t max, const char *what, buf_t *out)
{
    struct stat st;
    char tmp[4096];
    int fd = -1, rc = -1;
    ssize_t r;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            rc = 1;
            goto done;
        }
        buf_printf(&ch->err, "cannot read %s %s: %s", what, path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        buf_printf(&ch->err, "%s %s is not a regular file of at most %zu bytes", what, path,
                   max);
        goto done;
    }
    for (;;) {
        r = read(fd, tmp, sizeof(tmp));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            buf_printf(&ch->err, "cannot read %s %s: %s", what, path, strerror(errno));
            goto done;
        }
        if (r == 0)
            break;
        if (out->len + (size_t)r > max) {
            buf_printf(&ch->err, "%s %s is longer than %zu bytes", what, path, max);
            goto done;
        }
        if (buf_append(out, tmp, (size_t)r) < 0) {
            buf_puts(&ch->err, "out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    OPENSSL_cleanse(tmp, sizeof(tmp));
    if (fd >= 0)
        close(fd);
    return rc;
}

enum {
    P_KEY, P_SECRET, P_TOKEN, P_REGION, P_PROCESS, P_ROLE_ARN, P_SOURCE_PROFILE,
    P_TOKEN_FILE, P_SESSION_NAME, P_EXTERNAL_ID, P_DURATION, P_CREDENTIAL_SOURCE,
    P_MFA_SERIAL, P_COUNT
};

static const char *const profile_keys[P_COUNT] = {
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "region",
    "credential_process", "role_arn", "source_profile", "web_identity_token_file",
    "role_session_name", "external_id", "duration_seconds", "credential_source", "mfa_serial",
};

typedef struct {
    char *v[P_COUNT];
    int found;
    char creds_path[PATH_MAX];
    char config_path[PATH_MAX];
} profile_t;

static void
profile_free(profile_t *p)
{
    int i;

    for (i = 0; i < P_COUNT; i++)
        wipe_free(&p->v[i]);
    p->found = 0;
}

static void
trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r'))
        (*e)--;
}

/* Whether a section header (between the brackets) names the profile. */
static int
section_matches(const char *s, const char *e, const char *name, int config)
{
    size_t nl = strlen(name);

    trim(&s, &e);
    if (config && (size_t)(e - s) > 8 && strncmp(s, "profile", 7) == 0 &&
        (s[7] == ' ' || s[7] == '\t')) {
        s += 8;
        trim(&s, &e);
    } else if (config && strcmp(name, "default") != 0) {
        return 0;   /* [name] in the config file is only ever [default] */
    }
    return (size_t)(e - s) == nl && memcmp(s, name, nl) == 0;
}

/* The keys of one section of an INI file, read as botocore's configparser
 * reads it; values already set by an earlier file are replaced (the
 * credentials file wins). A line indented deeper than the key line before it
 * (in the same section) continues that key's value, as a nested block such as
 * "s3 =\n  addressing_style = path" does; any other indented line is a line of
 * its own. */
static void
ini_section(const buf_t *f, const char *name, int config, profile_t *p)
{
    const char *l = f->data, *end = f->data + f->len;
    int in = 0, i, has_key = 0;
    size_t indent, level = 0;

    while (l && l < end) {
        const char *eol = memchr(l, '\n', (size_t)(end - l)), *s, *e, *eq;
        if (eol == NULL)
            eol = end;
        s = l;
        e = eol;
        trim(&s, &e);
        indent = (size_t)(s - l);
        l = eol + 1;
        if (s == e || *s == '#' || *s == ';')
            continue;   /* neither ends nor starts a value */
        if (has_key && indent > level)
            continue;   /* a continuation of the key before */
        level = indent;
        if (*s == '[') {
            const char *close = memchr(s, ']', (size_t)(e - s));
            in = close && section_matches(s + 1, close, name, config);
            if (in)
                p->found = 1;
            has_key = 0;
            continue;
        }
        eq = s;
        while (eq < e && *eq != '=' && *eq != ':')
            eq++;
        if (eq == e)
            continue;
        has_key = 1;
        if (!in)
            continue;
        {
            const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
            trim(&ks, &ke);
            trim(&vs, &ve);
            for (i = 0; i < P_COUNT; i++)
                if (strlen(profile_keys[i]) == (size_t)(ke - ks) &&
                    strncasecmp(ks, profile_keys[i], (size_t)(ke - ks)) == 0) {
                    wipe_free(&p->v[i]);
                    p->v[i] = dup_n(vs, (size_t)(ve - vs));
                }
        }
    }
}

static void
home_path(const chain *ch, const char *var, const char *rel, char out[PATH_MAX])
{
    const char *v = envv(ch, var), *home = envv(ch, "HOME");

    out[0] = '\0';
    if (v && v[0] == '~' && v[1] == '/' && home)
        snprintf(out, PATH_MAX, "%s%s", home, v + 1);
    else if (v)
        snprintf(out, PATH_MAX, "%s", v);
    else if (home)
        snprintf(out, PATH_MAX, "%s/.aws/%s", home, rel);
}

/* Loads a profile from both files. 0 (p->found says whether it exists), -1. */
static int
profile_load(chain *ch, const char *name, profile_t *p)
{
    buf_t f = BUF_INIT;
    int rc = -1, r;

    memset(p, 0, sizeof(*p));
    home_path(ch, "AWS_CONFIG_FILE", "config", p->config_path);
    home_path(ch, "AWS_SHARED_CREDENTIALS_FILE", "credentials", p->creds_path);
    if (p->config_path[0]) {
        if ((r = read_file(ch, p->config_path, FILE_MAX, "the AWS config file", &f)) < 0)
            goto done;
        if (r == 0)
            ini_section(&f, name, 1, p);
        buf_free_secure(&f);
    }
    if (p->creds_path[0]) {
        if ((r = read_file(ch, p->creds_path, FILE_MAX, "the AWS credentials file", &f)) < 0)
            goto done;
        if (r == 0)
            ini_section(&f, name, 0, p);
    }
    rc = 0;
done:
    buf_free_secure(&f);
    return rc;
}

/* ---- JSON: one flat object of strings and numbers ------------------------ */

static const char *
json_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* A string starting at *pp (on the quote) into `out`; *pp ends past it. */
static int
json_string(const char **pp, const char *e, buf_t *out)
{
    const char *p = *pp + 1;

    buf_clear(out);
    while (p < e && *p != '"') {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20)
            return -1;
        if (ch != '\\') {
            if (buf_putc(out, (char)ch) < 0)
                return -1;
            p++;
            continue;
        }
        if (++p >= e)
            return -1;
        switch (*p) {
        case '"': case '\\': case '/': ch = (unsigned char)*p; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            int i;
            if (e - p < 5)
                return -1;
            for (i = 1; i <= 4; i++) {
                int h = buf_hexval(p[i]);
                if (h < 0)
                    return -1;
                cp = cp * 16 + (unsigned)h;
            }
            p += 4;
            if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
                return -1;   /* no NUL in a C string; nothing we read needs more than the BMP */
            if (cp < 0x80) {
                ch = (unsigned char)cp;
                break;
            }
            if (cp < 0x800) {
                if (buf_putc(out, (char)(0xc0 | (cp >> 6))) < 0)
                    return -1;
            } else if (buf_putc(out, (char)(0xe0 | (cp >> 12))) < 0 ||
                       buf_putc(out, (char)(0x80 | ((cp >> 6) & 0x3f))) < 0) {
                return -1;
            }
            ch = (unsigned char)(0x80 | (cp & 0x3f));
            break;
        }
        default:
            return -1;
        }
        if (buf_putc(out, (char)ch) < 0)
            return -1;
        p++;
    }
    if (p >= e)
        return -1;
    *pp = p + 1;
    return 0;
}

/* Parses {"name": value, ...}: vals[i] gets a copy of names[i]'s value (numbers
 * and literals as written), or stays NULL, as it does for null (botocore reads a
 * null token as none, not as the token "null"). Nested values are refused. */
static int
json_flat(const char *p, size_t n, const char *const *names, char **vals)
{
    const char *e = p + n;
    buf_t k = BUF_INIT, v = BUF_INIT;
    int rc = -1, i, null;

    p = json_ws(p, e);
    if (p >= e || *p != '{')
        goto done;
    p = json_ws(p + 1, e);
    if (p < e && *p == '}') {
        p++;
        goto end;
    }
    for (;;) {
        if (p >= e || *p != '"' || json_string(&p, e, &k) < 0)
            goto done;
        p = json_ws(p, e);
        if (p >= e || *p != ':')
            goto done;
        p = json_ws(p + 1, e);
        if (p >= e)
            goto done;
        null = 0;
        if (*p == '"') {
            if (json_string(&p, e, &v) < 0)
                goto done;
        } else {
            const char *s = p;
            while (p < e && ((*p && strchr("+-.eE", *p)) || (*p >= '0' && *p <= '9') ||
                             (*p >= 'a' && *p <= 'z')))
                p++;
            if (p == s)
                goto done;   /* an object or an array */
            buf_clear(&v);
            if (buf_append(&v, s, (size_t)(p - s)) < 0)
                goto done;
            null = p - s == 4 && memcmp(s, "null", 4) == 0;
        }
        for (i = 0; names[i]; i++)
            if (k.len == strlen(names[i]) && memcmp(k.data, names[i], k.len) == 0) {
                wipe_free(&vals[i]);
                if (!null && (vals[i] = dup_n(v.data ? v.data : "", v.len)) == NULL)
                    goto done;
            }
        p = json_ws(p, e);
        if (p < e && *p == ',') {
            p = json_ws(p + 1, e);
            continue;
        }
        if (p < e && *p == '}') {
            p++;
            break;
        }
        goto done;
    }
end:
    p = json_ws(p, e);
    rc = p == e ? 0 : -1;
done:
    buf_free_secure(&k);
    buf_free_secure(&v);
    return rc;
}

/* Whether s matches `pattern`, where 'd' stands for a digit. */
static int
shape_is(const char *s, const char *pattern)
{
    for (; *pattern; s++, pattern++)
        if (*pattern == 'd' ? !(*s >= '0' && *s <= '9') : *s != *pattern)
            return 0;
    return 1;
}

/* "2024-01-02T03:04:05Z", with optional fractions and a numeric offset; every
 * field is digits (no sign, no blank: sscanf alone would take " -1"). */
static int
parse_time(const char *s, time_t *out)
{
    int y, mo, d, h, mi, sec, n = 0;
    long off = 0;
    struct tm tm;
    const char *p;

    if (!shape_is(s, "dddd-dd-ddTdd:dd:dd") ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return -1;
    p = s + n;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, sign = *p == '-' ? -1 : 1;
        size_t rest = strlen(p + 1);
        if (rest == 5 && shape_is(p + 1, "dd:dd") && sscanf(p + 1, "%2d:%2d", &oh, &om) == 2)
            p += 6;
        else if (rest == 4 && shape_is(p + 1, "dddd") && sscanf(p + 1, "%2d%2d", &oh, &om) == 2)
            p += 5;
        else
            return -1;
        if (oh > 23 || om > 59)
            return -1;
        off = sign * (oh * 3600L + om * 60L);
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = timegm(&tm) - off;
    return 0;
}

/* A set from a JSON reply: names[0..3] are the key id, secret, token and
 * expiration members; `what` is the source, for messages. */
static int
set_from_json(chain *ch, const buf_t *body, const char *const names[5], const char *expect,
              const char *what, int refreshable, cred_set **out)
{
    char *vals[5] = {NULL, NULL, NULL, NULL, NULL};
    char w0[160], w1[160], w2[160];
    const char *const whats[3] = {w0, w1, w2};
    const char *nn[6] = {names[0], names[1], names[2], names[3], names[4], NULL};
    time_t exp = 0;
    int rc = -1, i;

    if (json_flat(body->data ? body->data : "", body->len, nn, vals) < 0) {
        buf_printf(&ch->err, "%s did not answer a flat JSON object", what);
        goto done;
    }
    if (expect && vals[4] && strcmp(vals[4], expect) != 0) {
        buf_printf(&ch->err, "%s answered %s %s, not %s", what, names[4],
                   printable(vals[4], strlen(vals[4]), 1) && strlen(vals[4]) < 64 ? vals[4]
                                                                                  : "(invalid)",
                   expect);
        goto done;
    }
    if (expect && strcmp(names[4], "Version") == 0 && vals[4] == NULL) {
        buf_printf(&ch->err, "%s did not give Version 1", what);
        goto done;
    }
    if (vals[0] == NULL || vals[1] == NULL) {
        buf_printf(&ch->err, "%s did not give %s and %s", what, names[0], names[1]);
        goto done;
    }
    if (vals[3] && parse_time(vals[3], &exp) < 0) {
        buf_printf(&ch->err, "%s gave an %s that is not an ISO 8601 time", what, names[3]);
        goto done;
    }
    snprintf(w0, sizeof(w0), "%s from %s", names[0], what);
    snprintf(w1, sizeof(w1), "%s from %s", names[1], what);
    snprintf(w2, sizeof(w2), "%s from %s", names[2], what);
    rc = set_make(ch, vals[0], vals[1], vals[2], exp, refreshable, whats, out);
done:
    for (i = 0; i < 5; i++)
        wipe_free(&vals[i]);
    return rc;
}

/* ---- HTTP for credentials: a short-lived handle ----------------------------- */

typedef struct {
    long status;
    buf_t body;
    int too_big;
    char errbuf[CURL_ERROR_SIZE];
} http_reply;

static size_t
http_write(char *p, size_t size, size_t n, void *ud)
{
    http_reply *r = ud;
    size_t len = size * n;

    if (r->body.len + len > REPLY_MAX) {
        r->too_big = 1;
        return 0;
    }
    return buf_append(&r->body, p, len) < 0 ? 0 : len;
}

/* How a credentials request travels. */
enum {
    HTTP_LOCAL,    /* a link-local or loopback service: never through a proxy */
    HTTP_AWS,      /* an AWS host (STS): the environment's proxy; TLS always
                      verified (AWS_CA_BUNDLE from the environment may name the CAs) */
    HTTP_CUSTOM,   /* an endpoint the environment names (AWS_ENDPOINT_URL_STS):
                      as HTTP_AWS, but with the storage's own verify and CA bundle */
};

/* The first of `names` set in the environment snapshot, or "". */
const char *const cred_https_proxy_vars[] = {"https_proxy", "HTTPS_PROXY", "all_proxy",
                                             "ALL_PROXY", NULL};
const char *const cred_http_proxy_vars[] = {"http_proxy", "all_proxy", "ALL_PROXY", NULL};
const char *const cred_no_proxy_vars[] = {"no_proxy", "NO_PROXY", NULL};

static const char *
env_first(const chain *ch, const char *const *names)
{
    const char *v;

    for (; *names; names++)
        if ((v = envv(ch, *names)) != NULL)
            return v;
    return "";
}

/* 0 when a reply arrived (any status), -1 on a transport failure (errbuf).
 * Nothing is read from the process environment here (libcurl would read the
 * proxy variables without the GIL, racing os.environ): the proxy, NO_PROXY
 * and AWS_CA_BUNDLE come from the snapshot, with libcurl's own precedence. */
static int
http_call(const chain *ch, const char *method, const char *url,
          struct curl_slist *headers, const char *body, long timeout_ms, int kind,
          http_reply *r)
{
    const cred_cache *c = ch->c;
    CURL *h = NULL;
    CURLcode rc;
    long connect_ms = c->connect_timeout_ms < timeout_ms ? c->connect_timeout_ms : timeout_ms;
    const char *proxy = "", *noproxy = "*", *ca = envv(ch, "AWS_CA_BUNDLE");
    int verify = 1;

    r->status = 0;
    r->too_big = 0;
    r->errbuf[0] = '\0';
    if (kind != HTTP_LOCAL) {
        proxy = env_first(ch, strncasecmp(url, "https:", 6) == 0 ? cred_https_proxy_vars
                                                                 : cred_http_proxy_vars);
        noproxy = env_first(ch, cred_no_proxy_vars);
    }
    if (kind == HTTP_CUSTOM) {
        verify = c->verify;
        if (c->ca_bundle)
            ca = c->ca_bundle;
    }
    if (ca == NULL)
        ca = c->system_ca;   /* the extension's libcurl has no CA bundle of its own */
    if (strlen(proxy) > 2048 || !printable(proxy, strlen(proxy), 0) ||
        strlen(noproxy) > 4096 || !printable(noproxy, strlen(noproxy), 1)) {
        snprintf(r->errbuf, sizeof(r->errbuf), "the proxy or NO_PROXY setting in the "
                                               "environment holds control characters or is "
                                               "too long");
        return -1;
    }
    if (ca && (strlen(ca) >= PATH_MAX || !printable(ca, strlen(ca), 1))) {
        snprintf(r->errbuf, sizeof(r->errbuf), "AWS_CA_BUNDLE in the environment is not a path");
        return -1;
    }
    if ((h = curl_easy_init()) == NULL) {
        strcpy(r->errbuf, "cannot create a connection handle");
        return -1;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms > 0 ? connect_ms : timeout_ms);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    if (ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    curl_easy_setopt(h, CURLOPT_PROXY, proxy);       /* "": none */
    curl_easy_setopt(h, CURLOPT_NOPROXY, noproxy);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        if (r->too_big)
            snprintf(r->errbuf, sizeof(r->errbuf), "the reply is longer than %d bytes",
                     REPLY_MAX);
        else if (r->errbuf[0] == '\0')
            snprintf(r->errbuf, sizeof(r->errbuf), "%s", curl_easy_strerror(rc));
        buf_hide_userinfo(r->errbuf);
        return -1;
    }
    return 0;
}

/* An endpoint from the environment: http(s)://host[:port][/path], no
 * credentials, no control characters. Trailing slashes are dropped. */
static int
check_endpoint(chain *ch, const char *v, const char *var, buf_t *out)
{
    sigv4_url u;
    size_t n = strlen(v);

    if (n > 2048 || !printable(v, n, 0) || sigv4_split_url(v, &u) < 0 || strchr(v, '@') ||
        u.query_len || u.host_len == 0) {
        buf_printf(&ch->err, "%s in the environment is not an http(s)://host[:port] URL", var);
        return -1;
    }
    while (n > 0 && v[n - 1] == '/')
        n--;
    if (buf_append(out, v, n) < 0) {
        buf_puts(&ch->err, "out of memory");
        return -1;
    }
    return 0;
}

#define SECRET_RUN 16   /* this many bytes of a secret in a row are a leak */

/* Whether `text` holds SECRET_RUN bytes in a row of `secret` (all of it when
 * it is shorter): a server that echoes a secret, cut short or in part. */
static int
shares_run(const char *text, const char *secret)
{
    size_t tn = strlen(text), sn = secret ? strlen(secret) : 0, run, i;

    if (sn == 0)
        return 0;
    run = sn < SECRET_RUN ? sn : SECRET_RUN;
    if (tn < run)
        return 0;
    for (i = 0; i + run <= sn; i++)
        if (memmem(text, tn, secret + i, run))
            return 1;
    return 0;
}

int
cred_text_repeats(const char *text, const char *secret)
{
    if (text == NULL || secret == NULL || strlen(secret) < 8)
        return 0;
    return shares_run(text, secret);
}

/* A message from a server, safe to show: printable, short, and sharing no run
 * of bytes with any of the `nsecrets` secrets the request carried (NULL
 * entries are skipped). */
static void
put_server_text(buf_t *b, const char *s, const char *const *secrets, size_t nsecrets)
{
    size_t n = strlen(s), i;

    for (i = 0; i < nsecrets; i++)
        if (secrets[i] && shares_run(s, secrets[i])) {
            buf_puts(b, "(the server's text is not shown: it repeats a secret)");
            return;
        }
    if (n > 300)
        n = 300;
    for (i = 0; i < n; i++)
        buf_putc(b, (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f ? s[i] : '?');
}

/* Header lists may carry tokens and signatures: wiped before they are freed. */
static void
slist_free_secure(struct curl_slist *l)
{
    struct curl_slist *i;

    for (i = l; i; i = i->next)
        if (i->data)
            OPENSSL_cleanse(i->data, strlen(i->data));
    curl_slist_free_all(l);
}

/* ---- STS ----------------------------------------------------------------- */

typedef struct {
    xml_sax sax;   /* first: the callback casts back */
    char *v[4];    /* AccessKeyId, SecretAccessKey, SessionToken, Expiration */
    char code[64];
    char message[512];
} sts_parser;

static int
sts_end(xml_sax *x)
{
    static const char *const names[4] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                                         "Expiration"};
    sts_parser *p = (sts_parser *)x;
    const char *name, *parent;
    int i;

    if (x->depth < 2 || x->depth > XML_MAX_DEPTH)
        return 0;
    name = x->path[x->depth - 1];
    parent = x->path[x->depth - 2];
    if (strcmp(parent, "Credentials") == 0) {
        for (i = 0; i < 4; i++)
            if (strcmp(name, names[i]) == 0) {
                wipe_free(&p->v[i]);
                p->v[i] = dup_n(x->text.data ? x->text.data : "", x->text.len);
                if (p->v[i] == NULL) {
                    x->error = "out of memory";
                    return -1;
                }
            }
        if (x->text.data)
            OPENSSL_cleanse(x->text.data, x->text.len);
    } else if (strcmp(parent, "Error") == 0) {
        char *dst = strcmp(name, "Code") == 0 ? p->code
                    : strcmp(name, "Message") == 0 ? p->message : NULL;
        size_t size = dst == p->code ? sizeof(p->code) : sizeof(p->message);
        if (dst) {
            size_t n = x->text.len < size - 1 ? x->text.len : size - 1;
            memcpy(dst, x->text.data ? x->text.data : "", n);
            dst[n] = '\0';
        }
    }
    return 0;
}

/* The STS endpoint and the region its signature is scoped to. */
static int
sts_endpoint(chain *ch, buf_t *url, const char **region, int *custom)
{
    const char *v = envv(ch, "AWS_ENDPOINT_URL_STS"), *var = "AWS_ENDPOINT_URL_STS";
    const char *mode = envv(ch, "AWS_STS_REGIONAL_ENDPOINTS");

    *region = ch->c->region && ch->c->region[0] ? ch->c->region : "us-east-1";
    if (v == NULL) {
        v = envv(ch, "AWS_ENDPOINT_URL");
        var = "AWS_ENDPOINT_URL";
    }
    *custom = v != NULL;
    if (v)
        return check_endpoint(ch, v, var, url) < 0 || buf_putc(url, '/') < 0 ? -1 : 0;
    if (mode && strcasecmp(mode, "legacy") == 0) {
        *region = "us-east-1";
        return buf_puts(url, "https://sts.amazonaws.com/");
    }
    if (mode && strcasecmp(mode, "regional") != 0) {
        buf_puts(&ch->err, "AWS_STS_REGIONAL_ENDPOINTS in the environment must be 'regional' "
                           "or 'legacy'");
        return -1;
    }
    return buf_printf(url, "https://sts.%s.amazonaws.com/", *region);
}

/* One STS call whose reply holds Credentials. `signer` NULL: unsigned (web
 * identity). `hide` is a secret the form carries, never echoed. */
static int
sts_call(chain *ch, const char *form, const cred_set *signer, const char *what,
         const char *hide, cred_set **out)
{
    static const char *const whats_fmt[3] = {"AccessKeyId", "SecretAccessKey", "SessionToken"};
    cred_cache *c = ch->c;
    buf_t url = BUF_INIT, auth = BUF_INIT, host = BUF_INIT, line = BUF_INIT;
    struct curl_slist *hl = NULL, *t;
    http_reply r;
    sts_parser sp;
    const char *region;
    char w[3][200];
    const char *const whats[3] = {w[0], w[1], w[2]};
    char sig[65] = "";
    /* what an error text must not repeat, even in part: the request's signature
     * too (an echo of it could be replayed for a while) */
    const char *const secrets[4] = {hide, signer ? signer->session_token : NULL,
                                    signer ? signer->secret_key : NULL, sig};
    int rc = -1, i, parsed = 0, custom = 0;
    time_t exp = 0;

    memset(&r, 0, sizeof(r));
    memset(&sp, 0, sizeof(sp));
    if (sts_endpoint(ch, &url, &region, &custom) < 0) {
        if (ch->err.len == 0)
            buf_puts(&ch->err, "out of memory");
        goto done;
    }
    hl = curl_slist_append(hl, "Content-Type: application/x-www-form-urlencoded; charset=utf-8");
    if (hl && (t = curl_slist_append(hl, "Expect:")))
        hl = t;
    if (hl && (t = curl_slist_append(hl, "Accept: text/xml")))
        hl = t;
    if (hl == NULL)
        goto oom;
    if (signer) {
        sigv4_ctx ctx;
        sigv4_url u;
        sigv4_header h[4];
        char hash[65];
        const char *v;
        size_t nh = 0;
        memset(&ctx, 0, sizeof(ctx));
        ctx.md = c->md;
        ctx.access_key = signer->access_key;
        ctx.secret_key = signer->secret_key;
        ctx.session_token = signer->session_token;
        ctx.region = region;
        ctx.service = "sts";
        sigv4_format_date(time(NULL), ctx.amz_date);
        if (sigv4_split_url(url.data, &u) < 0 || buf_append(&host, u.host, u.host_len) < 0 ||
            sigv4_sha256_hex(c->md, form, strlen(form), hash) < 0)
            goto oom;
        h[nh++] = (sigv4_header){"host", 4, host.data, host.len};
        h[nh++] = (sigv4_header){"content-type", 12,
                                 "application/x-www-form-urlencoded; charset=utf-8", 48};
        h[nh++] = (sigv4_header){"x-amz-date", 10, ctx.amz_date, SIGV4_DATE_LEN};
        if (signer->session_token)
            h[nh++] = (sigv4_header){"x-amz-security-token", 20, signer->session_token,
                                     strlen(signer->session_token)};
        if (sigv4_authorization(&ctx, "POST", &u, h, nh, hash, &auth) < 0 ||
            (v = strstr(auth.data, "Signature=")) == NULL ||
            snprintf(sig, sizeof(sig), "%s", v + 10) < 0 ||
            buf_printf(&line, "X-Amz-Date: %s", ctx.amz_date) < 0 ||
            (t = curl_slist_append(hl, line.data)) == NULL)
            goto oom;
        hl = t;
        if (signer->session_token) {
            buf_free_secure(&line);
            if (buf_printf(&line, "X-Amz-Security-Token: %s", signer->session_token) < 0 ||
                (t = curl_slist_append(hl, line.data)) == NULL)
                goto oom;
            hl = t;
        }
        buf_free_secure(&line);
        if (buf_printf(&line, "Authorization: %s", auth.data) < 0 ||
            (t = curl_slist_append(hl, line.data)) == NULL)
            goto oom;
        hl = t;
    }
    if (http_call(ch, "POST", url.data, hl, form, c->connect_timeout_ms + c->read_timeout_s * 1000,
                  custom ? HTTP_CUSTOM : HTTP_AWS, &r) < 0) {
        buf_printf(&ch->err, "%s: STS at %s failed: %s", what, url.data, r.errbuf);
        goto done;
    }
    if (xml_sax_init(&sp.sax, sts_end) == 0 &&
        xml_sax_feed(&sp.sax, r.body.data ? r.body.data : "", r.body.len) == 0 &&
        xml_sax_finish(&sp.sax) == 0)
        parsed = 1;
    if (r.status != 200) {
        buf_printf(&ch->err, "%s: STS at %s answered HTTP %ld", what, url.data, r.status);
        if (parsed && sp.code[0]) {
            buf_puts(&ch->err, " ");
            put_server_text(&ch->err, sp.code, secrets, 4);
        }
        if (parsed && sp.message[0]) {
            buf_puts(&ch->err, ": ");
            put_server_text(&ch->err, sp.message, secrets, 4);
        }
        goto done;
    }
    if (!parsed || !sp.v[0] || !sp.v[1] || !sp.v[2] || !sp.v[3]) {
        buf_printf(&ch->err, "%s: STS at %s sent a reply without Credentials%s%s", what,
                   url.data, parsed ? "" : ": ", parsed ? "" : sp.sax.error ? sp.sax.error : "");
        goto done;
    }
    if (parse_time(sp.v[3], &exp) < 0) {
        buf_printf(&ch->err, "%s: STS sent an Expiration that is not an ISO 8601 time", what);
        goto done;
    }
    for (i = 0; i < 3; i++)
        snprintf(w[i], sizeof(w[i]), "%s from STS (%s)", whats_fmt[i], what);
    rc = set_make(ch, sp.v[0], sp.v[1], sp.v[2], exp, 1, whats, out) < 0 ? -1 : 1;
    goto done;
oom:
    buf_puts(&ch->err, "out of memory");
done:
    for (i = 0; i < 4; i++)
        wipe_free(&sp.v[i]);
    if (sp.sax.ctxt) {
        if (sp.sax.text.data)
            OPENSSL_cleanse(sp.sax.text.data, sp.sax.text.cap);
        xml_sax_free(&sp.sax);
    }
    slist_free_secure(hl);
    buf_free(&url);
    buf_free_secure(&auth);
    buf_free(&host);
    buf_free_secure(&line);
    buf_free_secure(&r.body);
    return rc;
}

static int
check_name(chain *ch, const char *v, size_t min, size_t max, const char *extra,
           const char *what)
{
    size_t n = strlen(v), i;

    for (i = 0; i < n; i++) {
        char k = v[i];
        if (!((k >= 'a' && k <= 'z') || (k >= 'A' && k <= 'Z') || (k >= '0' && k <= '9') ||
              strchr(extra, k)))
            break;
    }
    if (n >= min && n <= max && i == n)
        return 0;
    buf_printf(&ch->err, "%s must be %zu to %zu characters of A-Z a-z 0-9 %s", what, min, max,
               extra);
    return -1;
}

static int
form_add(buf_t *f, const char *name, const char *value)
{
    return buf_printf(f, "%s%s=", f->len ? "&" : "", name) < 0 ||
           buf_append_uri(f, value, strlen(value), 0) < 0 ? -1 : 0;
}

/* Checks the role ARN and the session name of an STS call; a missing session
 * name becomes one of ours, kept in `name`. -1 with ch->err set. */
static int
role_params(chain *ch, const char *role_arn, const char **session, buf_t *name)
{
    if (check_name(ch, role_arn, 20, 2048, ":/+=,.@_-", "the role ARN") < 0)
        return -1;
    if (*session != NULL)
        return check_name(ch, *session, 2, 64, "+=,.@_-", "the role session name");
    if (buf_printf(name, "django-s3-storage-%ld", (long)time(NULL)) < 0) {
        buf_puts(&ch->err, "out of memory");
        return -1;
    }
    *session = name->data;
    return 0;
}

static int
assume_role(chain *ch, const char *role_arn, const char *session, const char *external_id,
            const char *duration, const cred_set *signer, const char *what, cred_set **out)
{
    buf_t form = BUF_INIT, name = BUF_INIT;
    int rc = -1;

    if (role_params(ch, role_arn, &session, &name) < 0)
        goto done;
    if (form_add(&form, "Action", "AssumeRole") < 0 ||
        (duration && form_add(&form, "DurationSeconds", duration) < 0) ||
        (external_id && form_add(&form, "ExternalId", external_id) < 0) ||
        form_add(&form, "RoleArn", role_arn) < 0 ||
        form_add(&form, "RoleSessionName", session) < 0 ||
        form_add(&form, "Version", "2011-06-15") < 0)
        goto oom;
    if (duration && check_name(ch, duration, 3, 5, "", "duration_seconds") < 0)
        goto done;
    if (external_id && check_name(ch, external_id, 2, 1224, "+=,.@:/_-", "external_id") < 0)
        goto done;
    rc = sts_call(ch, form.data, signer, what, NULL, out);
    goto done;
oom:
    buf_puts(&ch->err, "out of memory");
done:
    buf_free(&form);
    buf_free(&name);
    return rc;
}

/* AssumeRoleWithWebIdentity; the token file is read anew on every call. */
static int
web_identity(chain *ch, const char *role_arn, const char *token_file, const char *session,
             const char *what, cred_set **out)
{
    buf_t form = BUF_INIT, tok = BUF_INIT, name = BUF_INIT;
    const char *s, *e;
    int rc = -1, r;

    r = read_file(ch, token_file, TOKEN_FILE_MAX, "the web identity token file", &tok);
    if (r != 0) {
        if (r > 0)
            buf_printf(&ch->err, "%s: the web identity token file %s does not exist", what,
                       token_file);
        goto done;
    }
    s = tok.data ? tok.data : "";
    e = s + tok.len;
    while (s < e && strchr(" \t\r\n", *s))
        s++;
    while (e > s && strchr(" \t\r\n", e[-1]))
        e--;
    if (e == s || !printable(s, (size_t)(e - s), 0)) {
        buf_printf(&ch->err, "%s: the web identity token file %s does not hold one token of "
                             "printable ASCII", what, token_file);
        goto done;
    }
    tok.data[e - tok.data] = '\0';
    if (role_params(ch, role_arn, &session, &name) < 0)
        goto done;
    if (form_add(&form, "Action", "AssumeRoleWithWebIdentity") < 0 ||
        form_add(&form, "RoleArn", role_arn) < 0 ||
        form_add(&form, "RoleSessionName", session) < 0 ||
        form_add(&form, "Version", "2011-06-15") < 0 ||
        form_add(&form, "WebIdentityToken", s) < 0)
        goto oom;
    rc = sts_call(ch, form.data, NULL, what, s, out);
    goto done;
oom:
    buf_puts(&ch->err, "out of memory");
done:
    buf_free_secure(&form);
    buf_free_secure(&tok);
    buf_free(&name);
    return rc;
}

/* ---- credential_process ------------------------------------------------------ */

static long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Nothing but stdin, stdout and stderr reaches the process: libcurl's pooled
 * sockets are not close-on-exec. glibc 2.34 has the file action for it. */
static int
spawn_close_from_3(posix_spawn_file_actions_t *fa)
{
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 34)
    return posix_spawn_file_actions_addclosefrom_np(fa, 3);
#else
    (void)fa;
    return 0;
#endif
#else
    (void)fa;
    return 0;
#endif
}

/* Runs the command with /bin/sh -c, as the AWS CLI does (it is the user's own
 * configuration); stdout is captured and capped; the process (its whole group)
 * is killed past the Client's read timeout; stderr is the process's own. */
static int
run_process(chain *ch, const char *cmd, const char *what, buf_t *out)
{
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    char *empty_env[] = {NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t mask;
    int pfd[2] = {-1, -1}, fa_ok = 0, at_ok = 0, status = 0, rc = -1, err;
    pid_t pid = -1;
    long limit_s = ch->c->read_timeout_s > 0 ? ch->c->read_timeout_s : 60;
    long deadline = now_ms() + limit_s * 1000L;
    char tmp[4096];

    if (pipe2(pfd, O_CLOEXEC) < 0) {
        buf_printf(&ch->err, "%s: cannot make a pipe: %s", what, strerror(errno));
        goto done;
    }
    if (posix_spawn_file_actions_init(&fa) != 0)
        goto oom;
    fa_ok = 1;
    if (posix_spawnattr_init(&at) != 0)
        goto oom;
    at_ok = 1;
    if (posix_spawn_file_actions_adddup2(&fa, pfd[1], 1) != 0 ||
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
        spawn_close_from_3(&fa) != 0 ||
        sigemptyset(&mask) != 0 || posix_spawnattr_setsigmask(&at, &mask) != 0 ||
        sigaddset(&mask, SIGPIPE) != 0 || sigaddset(&mask, SIGXFSZ) != 0 ||
        posix_spawnattr_setsigdefault(&at, &mask) != 0 ||
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                          POSIX_SPAWN_SETSIGDEF) != 0 ||
        posix_spawnattr_setpgroup(&at, 0) != 0)
        goto oom;
    err = posix_spawn(&pid, "/bin/sh", &fa, &at, argv,
                      ch->env && ch->env->vars ? ch->env->vars : empty_env);
    if (err != 0) {
        pid = -1;
        buf_printf(&ch->err, "%s: cannot start /bin/sh: %s", what, strerror(err));
        goto done;
    }
    close(pfd[1]);
    pfd[1] = -1;
    for (;;) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        long left = deadline - now_ms();
        ssize_t r;
        int pr;
        if (left <= 0) {
            buf_printf(&ch->err, "%s did not finish within %ld s", what, limit_s);
            goto done;
        }
        pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0) {
            buf_printf(&ch->err, "%s: %s", what, strerror(errno));
            goto done;
        }
        if (pr == 0)
            continue;
        r = read(pfd[0], tmp, sizeof(tmp));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            buf_printf(&ch->err, "%s: %s", what, strerror(errno));
            goto done;
        }
        if (r == 0)
            break;
        if (out->len + (size_t)r > REPLY_MAX) {
            buf_printf(&ch->err, "%s wrote more than %d bytes", what, REPLY_MAX);
            goto done;
        }
        if (buf_append(out, tmp, (size_t)r) < 0)
            goto oom;
    }
    /* stdout is closed: the process is on its way out */
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            pid = -1;
            break;
        }
        if (w < 0 && errno != EINTR) {
            pid = -1;     /* SIGCHLD ignored: the status is lost; the output decides */
            status = 0;
            break;
        }
        if (now_ms() >= deadline) {
            buf_printf(&ch->err, "%s did not exit within %ld s", what, limit_s);
            goto done;
        }
        {
            struct timespec ts = {0, 5000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFEXITED(status))
            buf_printf(&ch->err, "%s exited with status %d", what, WEXITSTATUS(status));
        else
            buf_printf(&ch->err, "%s was killed by signal %d", what,
                       WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        goto done;
    }
    rc = 0;
    goto done;
oom:
    buf_puts(&ch->err, "out of memory");
done:
    if (pid > 0) {
        /* kill only while the leader is still ours, alive or unreaped, so its
         * pid (and the group's id) cannot have been reused; a SIGCHLD handler
         * elsewhere that reaped it first leaves nothing here to kill */
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        }
    }
    OPENSSL_cleanse(tmp, sizeof(tmp));
    if (pfd[0] >= 0)
        close(pfd[0]);
    if (pfd[1] >= 0)
        close(pfd[1]);
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (at_ok)
        posix_spawnattr_destroy(&at);
    return rc;
}

static int
credential_process(chain *ch, const char *cmd, const char *what, cred_set **out)
{
    static const char *const names[5] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                                         "Expiration", "Version"};
    buf_t b = BUF_INIT;
    int rc = -1;

    if (!printable(cmd, strlen(cmd), 1) || cmd[0] == '\0') {
        buf_printf(&ch->err, "%s: the command is empty or holds control characters", what);
        goto done;
    }
    if (run_process(ch, cmd, what, &b) < 0)
        goto done;
    rc = set_from_json(ch, &b, names, "1", what, 1, out);
    if (rc > 0 && (*out)->expiration == 0)
        (*out)->refreshable = 0;   /* no Expiration: static keys */
done:
    buf_free_secure(&b);
    return rc;
}

/* ---- the sources --------------------------------------------------------------- */

static int
src_explicit(chain *ch, cred_set **out)
{
    static const char *const what[3] = {"access_key (AWS_ACCESS_KEY_ID)",
                                        "secret_key (AWS_SECRET_ACCESS_KEY)",
                                        "session_token (AWS_SESSION_TOKEN)"};
    cred_cache *c = ch->c;

    if (c->access_key == NULL) {
        tried(ch, "the storage's settings: no AWS_ACCESS_KEY_ID", NULL);
        return 0;
    }
    buf_puts(&ch->source, "the storage's settings");
    return set_make(ch, c->access_key, c->secret_key, c->session_token, 0, 0, what, out);
}

/* AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: the environment as a source of
 * its own, or as a role's credential_source = Environment. */
static int
env_keys(chain *ch, cred_set **out)
{
    static const char *const what[3] = {"AWS_ACCESS_KEY_ID in the environment",
                                        "AWS_SECRET_ACCESS_KEY in the environment",
                                        "AWS_SESSION_TOKEN in the environment"};
    const char *ak = envv(ch, "AWS_ACCESS_KEY_ID"), *sk = envv(ch, "AWS_SECRET_ACCESS_KEY");

    if (ak == NULL && sk == NULL) {
        tried(ch, "the environment: no AWS_ACCESS_KEY_ID", NULL);
        return 0;
    }
    if (ak == NULL || sk == NULL) {
        buf_printf(&ch->err, "%s is set in the environment but %s is not",
                   ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                   ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        return -1;
    }
    buf_puts(&ch->source, "the environment");
    return set_make(ch, ak, sk, envv(ch, "AWS_SESSION_TOKEN"), 0, 0, what, out);
}

static int
src_env(chain *ch, cred_set **out)
{
    if (ch->c->profile) {
        /* as boto3's Session(profile_name=...): a profile named by the storage wins
         * over keys the environment happens to hold (AWS_PROFILE does not) */
        tried(ch, "the environment: not used, the storage names profile '%s'", ch->c->profile);
        return 0;
    }
    return env_keys(ch, out);
}

static int src_container(chain *ch, cred_set **out);
static int src_imds(chain *ch, cred_set **out);

/* One profile: role_arn first, then static keys, then credential_process. */
static int
profile_creds(chain *ch, const char *name, int depth, int must_exist, cred_set **out)
{
    profile_t p;
    buf_t what = BUF_INIT, w[3] = {BUF_INIT, BUF_INIT, BUF_INIT};
    cred_set *src = NULL;
    int rc = -1, i;

    if (depth > PROFILE_DEPTH) {
        buf_printf(&ch->err, "profile '%s': source_profile chains deeper than %d (a loop?)",
                   name, PROFILE_DEPTH);
        return -1;
    }
    if (strlen(name) > 128 || !printable(name, strlen(name), 1) || strchr(name, ']')) {
        buf_puts(&ch->err, "the profile name must be printable ASCII without ']'");
        return -1;
    }
    if (profile_load(ch, name, &p) < 0)
        goto done;
    if (!p.found) {
        if (must_exist) {
            buf_printf(&ch->err, "profile '%s' is in neither %s nor %s", name,
                       p.creds_path[0] ? p.creds_path : "(no credentials file)",
                       p.config_path[0] ? p.config_path : "(no config file)");
            goto done;
        }
        buf_printf(&what, "the shared files: no profile '%s' in %s or %s", name,
                   p.creds_path[0] ? p.creds_path : "(no HOME)",
                   p.config_path[0] ? p.config_path : "(no HOME)");
        tried(ch, "%s", what.data);
        rc = 0;
        goto done;
    }
    buf_printf(&what, "profile '%s'", name);
    if (p.v[P_ROLE_ARN] && p.v[P_ROLE_ARN][0]) {
        if (p.v[P_MFA_SERIAL]) {
            buf_printf(&ch->err, "%s needs an MFA code (mfa_serial), which a server cannot "
                                 "type", what.data);
            goto done;
        }
        if (p.v[P_SOURCE_PROFILE]) {
            const char *sp = p.v[P_SOURCE_PROFILE];
            if (strcmp(sp, name) == 0 && p.v[P_KEY] && p.v[P_SECRET]) {
                const char *const ws[3] = {"aws_access_key_id of the source profile",
                                           "aws_secret_access_key of the source profile",
                                           "aws_session_token of the source profile"};
                if (set_make(ch, p.v[P_KEY], p.v[P_SECRET], p.v[P_TOKEN], 0, 0, ws, &src) < 0)
                    goto done;
            } else if ((rc = profile_creds(ch, sp, depth + 1, 1, &src)) <= 0) {
                rc = -1;
                goto done;
            }
            buf_clear(&ch->source);
            buf_printf(&ch->source, "profile '%s' (role_arn with source_profile '%s')", name,
                       sp);
        } else if (p.v[P_TOKEN_FILE]) {
            buf_clear(&ch->source);
            buf_printf(&ch->source, "profile '%s' (role_arn with web_identity_token_file)",
                       name);
            rc = web_identity(ch, p.v[P_ROLE_ARN], p.v[P_TOKEN_FILE], p.v[P_SESSION_NAME],
                              what.data, out);
            goto done;
        } else if (p.v[P_CREDENTIAL_SOURCE]) {
            const char *cs = p.v[P_CREDENTIAL_SOURCE];
            size_t mark = ch->tried.len;
            rc = strcmp(cs, "Environment") == 0 ? env_keys(ch, &src)
                 : strcmp(cs, "EcsContainer") == 0 ? src_container(ch, &src)
                 : strcmp(cs, "Ec2InstanceMetadata") == 0 ? src_imds(ch, &src) : -2;
            if (rc == -2)
                buf_printf(&ch->err, "%s: credential_source must be Environment, EcsContainer "
                                     "or Ec2InstanceMetadata", what.data);
            else if (rc == 0)
                buf_printf(&ch->err, "%s: its credential_source %s has no credentials (%s)",
                           what.data, cs, ch->tried.data + mark + (mark ? 2 : 0));
            if (rc <= 0) {
                rc = -1;
                goto done;
            }
            buf_clear(&ch->source);
            buf_printf(&ch->source, "profile '%s' (role_arn with credential_source %s)", name,
                       cs);
        } else {
            buf_printf(&ch->err, "%s has role_arn but no source_profile, "
                                 "web_identity_token_file or credential_source", what.data);
            goto done;
        }
        rc = assume_role(ch, p.v[P_ROLE_ARN], p.v[P_SESSION_NAME], p.v[P_EXTERNAL_ID],
                         p.v[P_DURATION], src, what.data, out);
        goto done;
    }
    if (p.v[P_KEY] || p.v[P_SECRET]) {
        if (!p.v[P_KEY] || !p.v[P_SECRET]) {
            buf_printf(&ch->err, "%s has only one of aws_access_key_id and "
                                 "aws_secret_access_key", what.data);
            goto done;
        }
        for (i = 0; i < 3; i++)
            buf_printf(&w[i], "%s of %s", profile_keys[i], what.data);
        {
            const char *const ws[3] = {w[0].data, w[1].data, w[2].data};
            buf_clear(&ch->source);
            buf_printf(&ch->source, "profile '%s' (static keys)", name);
            rc = set_make(ch, p.v[P_KEY], p.v[P_SECRET], p.v[P_TOKEN], 0, 0, ws, out);
        }
        goto done;
    }
    if (p.v[P_PROCESS]) {
        buf_puts(&what, " (credential_process)");
        buf_clear(&ch->source);
        buf_printf(&ch->source, "profile '%s' (credential_process)", name);
        rc = credential_process(ch, p.v[P_PROCESS], what.data, out);
        goto done;
    }
    if (must_exist && depth > 0) {
        buf_printf(&ch->err, "source profile '%s' has no credentials", name);
        goto done;
    }
    tried(ch, "the shared files: profile '%s' holds no credentials", name);
    rc = 0;
done:
    if (src) {
        src->refs = 0;
        set_free(src);
    }
    profile_free(&p);
    buf_free(&what);
    for (i = 0; i < 3; i++)
        buf_free(&w[i]);
    return rc;
}

static int
src_profile(chain *ch, cred_set **out)
{
    const char *name = ch->c->profile;
    int given = name != NULL;

    if (name == NULL && (name = envv(ch, "AWS_PROFILE")) != NULL)
        given = 1;
    if (name == NULL)
        name = "default";
    return profile_creds(ch, name, 0, given, out);
}

static int
src_web_identity(chain *ch, cred_set **out)
{
    const char *file = envv(ch, "AWS_WEB_IDENTITY_TOKEN_FILE"), *role = envv(ch, "AWS_ROLE_ARN");

    if (file == NULL || role == NULL) {
        tried(ch, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN not both set",
              NULL);
        return 0;
    }
    buf_puts(&ch->source, "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)");
    return web_identity(ch, role, file, envv(ch, "AWS_ROLE_SESSION_NAME"),
                        "web identity from the environment", out);
}

/* A literal IPv4 address 127.a.b.c: four decimal parts of 0 to 255. */
static int
loopback_v4(const char *h, size_t n)
{
    size_t i = 0;
    int part, digits, value = 0;

    for (part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || h[i] != '.')
                return 0;
            i++;
        }
        /* a fourth digit is enough to refuse the part: value stays below 10,000 */
        for (value = 0, digits = 0; i < n && digits <= 3 && h[i] >= '0' && h[i] <= '9';
             i++, digits++)
            value = value * 10 + (h[i] - '0');
        if (digits == 0 || digits > 3 || value > 255 || (part == 0 && value != 127))
            return 0;
    }
    return i == n;
}

/* Plain http is only for the hosts the container agents listen on, told by
 * the address as written: no name is resolved for this (libcurl answers
 * "localhost" itself, with a loopback address). */
static int
container_host_ok(const char *url)
{
    static const char *const hosts[] = {"localhost", "169.254.170.2", "169.254.170.23",
                                        "[::1]", "[fd00:ec2::23]", NULL};
    sigv4_url u;
    size_t n;
    int i;

    if (sigv4_split_url(url, &u) < 0)
        return 0;
    if (u.scheme_len == 5)
        return 1;   /* https */
    n = u.host_len;
    if (u.host[0] == '[') {
        const char *close = memchr(u.host, ']', u.host_len);
        n = close ? (size_t)(close - u.host) + 1 : n;
    } else {
        const char *colon = memchr(u.host, ':', u.host_len);
        n = colon ? (size_t)(colon - u.host) : n;
    }
    if (loopback_v4(u.host, n))
        return 1;
    for (i = 0; hosts[i]; i++)
        if (strlen(hosts[i]) == n && strncasecmp(u.host, hosts[i], n) == 0)
            return 1;
    return 0;
}

static int
src_container(chain *ch, cred_set **out)
{
    static const char *const names[5] = {"AccessKeyId", "SecretAccessKey", "Token",
                                         "Expiration", NULL};
    const char *rel = envv(ch, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = envv(ch, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *tfile = envv(ch, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *tenv = envv(ch, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    buf_t url = BUF_INIT, tok = BUF_INIT, line = BUF_INIT;
    struct curl_slist *hl = NULL;
    http_reply r;
    int rc = -1;

    memset(&r, 0, sizeof(r));
    if (rel == NULL && full == NULL) {
        tried(ch, "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and "
                  "AWS_CONTAINER_CREDENTIALS_FULL_URI not set", NULL);
        return 0;
    }
    if (rel) {
        if (rel[0] != '/' || strlen(rel) > 1024 || !printable(rel, strlen(rel), 0)) {
            buf_puts(&ch->err, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI in the environment must "
                               "be a path starting with '/'");
            goto done;
        }
        if (buf_puts(&url, "http://169.254.170.2") < 0 || buf_puts(&url, rel) < 0)
            goto oom;
    } else {
        sigv4_url u;
        if (strlen(full) > 2048 || !printable(full, strlen(full), 0) ||
            sigv4_split_url(full, &u) < 0 || strchr(full, '@') || !container_host_ok(full)) {
            buf_puts(&ch->err, "AWS_CONTAINER_CREDENTIALS_FULL_URI in the environment must be "
                               "an https URL, or http to a loopback or container agent "
                               "address");
            goto done;
        }
        if (buf_puts(&url, full) < 0)
            goto oom;
    }
    if (tfile) {
        int fr = read_file(ch, tfile, TOKEN_FILE_MAX, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                           &tok);
        if (fr > 0)
            buf_printf(&ch->err, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s does not exist",
                       tfile);
        if (fr != 0)
            goto done;
        while (tok.len && strchr(" \t\r\n", tok.data[tok.len - 1]))
            tok.data[--tok.len] = '\0';
    } else if (tenv && buf_puts(&tok, tenv) < 0) {
        goto oom;
    }
    if (tok.len) {
        if (tok.len > 16384 || !printable(tok.data, tok.len, 1)) {
            buf_printf(&ch->err, "the container authorization token (%s) holds control "
                                 "characters or is too long",
                       tfile ? "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
                             : "AWS_CONTAINER_AUTHORIZATION_TOKEN");
            goto done;
        }
        if (buf_printf(&line, "Authorization: %s", tok.data) < 0 ||
            (hl = curl_slist_append(NULL, line.data)) == NULL)
            goto oom;
    }
    buf_puts(&ch->source, "the container endpoint");
    if (http_call(ch, "GET", url.data, hl, NULL, CONTAINER_TIMEOUT_MS, HTTP_LOCAL, &r) < 0) {
        buf_printf(&ch->err, "the container endpoint %s failed: %s", url.data, r.errbuf);
        goto done;
    }
    if (r.status != 200) {
        buf_printf(&ch->err, "the container endpoint %s answered HTTP %ld", url.data, r.status);
        goto done;
    }
    rc = set_from_json(ch, &r.body, names, NULL, "the container endpoint", 1, out);
    if (rc > 0 && (*out)->expiration == 0)
        (*out)->refreshable = 0;
    goto done;
oom:
    buf_puts(&ch->err, "out of memory");
done:
    slist_free_secure(hl);
    buf_free(&url);
    buf_free_secure(&tok);
    buf_free_secure(&line);
    buf_free_secure(&r.body);
    return rc;
}

static int
src_imds(chain *ch, cred_set **out)
{
    static const char *const names[5] = {"AccessKeyId", "SecretAccessKey", "Token",
                                         "Expiration", "Code"};
    const char *dis = envv(ch, "AWS_EC2_METADATA_DISABLED");
    const char *ep = envv(ch, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    buf_t base = BUF_INIT, url = BUF_INIT, line = BUF_INIT, role = BUF_INIT;
    struct curl_slist *hl = NULL, *th = NULL;
    http_reply r;
    int rc = -1;
    size_t n;

    memset(&r, 0, sizeof(r));
    if (dis && strcasecmp(dis, "true") == 0) {
        tried(ch, "instance metadata: disabled by AWS_EC2_METADATA_DISABLED", NULL);
        return 0;
    }
    if (ep) {
        if (check_endpoint(ch, ep, "AWS_EC2_METADATA_SERVICE_ENDPOINT", &base) < 0)
            goto done;
    } else if (buf_puts(&base, "http://169.254.169.254") < 0) {
        goto oom;
    }
    /* IMDSv2: a session token first; one attempt, one second */
    if (buf_printf(&url, "%s/latest/api/token", base.data) < 0 ||
        (th = curl_slist_append(NULL, "X-aws-ec2-metadata-token-ttl-seconds: 21600")) == NULL)
        goto oom;
    if (http_call(ch, "PUT", url.data, th, NULL, IMDS_TIMEOUT_MS, HTTP_LOCAL, &r) < 0) {
        tried(ch, "instance metadata: %s", r.errbuf);
        rc = 0;
        goto done;
    }
    if (r.status == 200) {
        n = r.body.len;
        if (n == 0 || n > 1024 || !printable(r.body.data, n, 0)) {
            buf_puts(&ch->err, "the instance metadata service sent a malformed session token");
            goto done;
        }
        if (buf_printf(&line, "X-aws-ec2-metadata-token: %s", r.body.data) < 0 ||
            (hl = curl_slist_append(NULL, line.data)) == NULL)
            goto oom;
    } else if (r.status != 404 && r.status != 405) {
        tried(ch, "instance metadata: the session token request answered HTTP %s",
              r.status == 403 ? "403" : "other than 200");
        rc = 0;
        goto done;
    }   /* 404, 405: an IMDSv1-only service */
    buf_clear(&url);
    buf_free_secure(&r.body);
    if (buf_printf(&url, "%s/latest/meta-data/iam/security-credentials/", base.data) < 0)
        goto oom;
    if (http_call(ch, "GET", url.data, hl, NULL, IMDS_TIMEOUT_MS, HTTP_LOCAL, &r) < 0) {
        buf_printf(&ch->err, "instance metadata: %s", r.errbuf);
        goto done;
    }
    if (r.status == 404) {
        tried(ch, "instance metadata: the instance has no IAM role", NULL);
        rc = 0;
        goto done;
    }
    n = r.body.data ? strcspn(r.body.data, "\r\n") : 0;
    if (r.status != 200 || buf_append(&role, r.body.data ? r.body.data : "", n) < 0 ||
        check_name(ch, role.data ? role.data : "", 1, 128, "+=,.@_-", "the IAM role name from "
                   "instance metadata") < 0) {
        if (ch->err.len == 0)
            buf_printf(&ch->err, "instance metadata: the role listing answered HTTP %ld",
                       r.status);
        goto done;
    }
    buf_clear(&url);
    buf_free_secure(&r.body);
    if (buf_printf(&url, "%s/latest/meta-data/iam/security-credentials/%s", base.data,
                   role.data) < 0)
        goto oom;
    buf_clear(&ch->source);
    buf_printf(&ch->source, "instance metadata (role %s)", role.data);
    if (http_call(ch, "GET", url.data, hl, NULL, IMDS_TIMEOUT_MS, HTTP_LOCAL, &r) < 0) {
        buf_printf(&ch->err, "instance metadata: %s", r.errbuf);
        goto done;
    }
    if (r.status != 200) {
        buf_printf(&ch->err, "instance metadata: the credentials of role %s answered HTTP %ld",
                   role.data, r.status);
        goto done;
    }
    rc = set_from_json(ch, &r.body, names, "Success", "instance metadata", 1, out);
    goto done;
oom:
    buf_puts(&ch->err, "out of memory");
done:
    slist_free_secure(hl);
    curl_slist_free_all(th);
    buf_free(&base);
    buf_free(&url);
    buf_free(&role);
    buf_free_secure(&line);
    buf_free_secure(&r.body);
    return rc;
}

/* The whole chain: 1 with *out, 0 nothing anywhere, -1 a source failed. */
static int
chain_run(chain *ch, cred_set **out)
{
    static int (*const sources[])(chain *, cred_set **) = {
        src_explicit, src_env, src_profile, src_web_identity, src_container, src_imds, NULL,
    };
    int i, rc;

    for (i = 0; sources[i]; i++) {
        buf_clear(&ch->source);
        rc = sources[i](ch, out);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- the cache ------------------------------------------------------------------ */

int
cred_cache_init(cred_cache *c, const cred_config *cfg, buf_t *err)
{
    memset(c, 0, sizeof(*c));
    if (cfg->access_key &&
        (cred_check_value(0, cfg->access_key, strlen(cfg->access_key),
                          "access_key (AWS_ACCESS_KEY_ID)", err) < 0 ||
         cred_check_value(1, cfg->secret_key, strlen(cfg->secret_key),
                          "secret_key (AWS_SECRET_ACCESS_KEY)", err) < 0 ||
         (cfg->session_token && cfg->session_token[0] &&
          cred_check_value(2, cfg->session_token, strlen(cfg->session_token),
                           "session_token (AWS_SESSION_TOKEN)", err) < 0)))
        return -1;
    if (cfg->profile && (cfg->profile[0] == '\0' || strlen(cfg->profile) > 128 ||
                         !printable(cfg->profile, strlen(cfg->profile), 1) ||
                         strchr(cfg->profile, ']'))) {
        buf_puts(err, "profile (AWS_S3_PROFILE) must be a profile name: printable ASCII "
                      "without ']'");
        return -1;
    }
    c->access_key = dup_s(cfg->access_key);
    c->secret_key = dup_s(cfg->secret_key);
    c->session_token = cfg->session_token && cfg->session_token[0]
                           ? dup_s(cfg->session_token) : NULL;
    c->profile = dup_s(cfg->profile);
    c->region = dup_s(cfg->region ? cfg->region : "");
    c->ca_bundle = dup_s(cfg->ca_bundle);
    c->system_ca = dup_s(cfg->system_ca);
    c->anonymous = cfg->anonymous;
    c->md = cfg->md;
    c->verify = cfg->verify;
    c->connect_timeout_ms = cfg->connect_timeout_ms;
    c->read_timeout_s = cfg->read_timeout_s;
    if ((cfg->access_key && !c->access_key) || (cfg->secret_key && !c->secret_key) ||
        (cfg->profile && !c->profile) || !c->region || (cfg->ca_bundle && !c->ca_bundle) ||
        (cfg->system_ca && !c->system_ca) ||
        (cfg->session_token && cfg->session_token[0] && !c->session_token)) {
        cred_cache_destroy(c);
        buf_puts(err, "out of memory");
        return -1;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->ready = 1;
    return 0;
}

void
cred_cache_destroy(cred_cache *c)
{
    if (c->ready) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
    }
    if (c->current && --c->current->refs == 0)
        set_free(c->current);
    c->current = NULL;
    buf_free(&c->fail_err);
    c->fail_code = NULL;
    wipe_free(&c->access_key);
    wipe_free(&c->secret_key);
    wipe_free(&c->session_token);
    free(c->profile);
    free(c->region);
    free(c->ca_bundle);
    free(c->system_ca);
    c->profile = c->region = c->ca_bundle = c->system_ca = NULL;
    c->ready = 0;
}

void
cred_after_fork(cred_cache *c)
{
    if (!c->ready)
        return;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->refreshing = 0;
}

/* Under the lock: one resolution by this thread, the lock released meanwhile.
 * 0: c->current is the new set. -1: `code` and `err` say why, and the cache
 * keeps them for the threads that waited on this renewal. */
static int
refresh(cred_cache *c, const cred_env *env, long min_valid, const char **code, buf_t *err)
{
    chain ch = {c, env, BUF_INIT, BUF_INIT, BUF_INIT};
    cred_set *s = NULL, *old;
    time_t now;
    size_t i;
    int rc;

    c->refreshing = 1;
    pthread_mutex_unlock(&c->lock);
    rc = chain_run(&ch, &s);
    pthread_mutex_lock(&c->lock);
    c->refreshing = 0;
    c->gen++;
    pthread_cond_broadcast(&c->cond);
    now = time(NULL);
    if (rc > 0 && s->expiration && s->expiration <= now) {
        /* as botocore: a source whose credentials are already expired failed */
        buf_clear(&ch.err);
        buf_printf(&ch.err, "%s handed out credentials that have already expired",
                   ch.source.len ? ch.source.data : "a source");
        set_free(s);
        s = NULL;
        rc = -1;
    }
    if (min_valid > c->asked_for)
        c->asked_for = min_valid;
    if (rc > 0) {
        c->fail_code = NULL;
        c->fail_until = 0;
        buf_clear(&c->fail_err);
        old = c->current;
        c->current = s;
        c->stale = 0;
        if (old && --old->refs == 0)
            set_free(old);
        c->issued_for = s->expiration ? s->expiration - now : 0;
        /* a source that hands out credentials this close to their expiry is not
         * asked again at once */
        c->next_must = s->expiration && s->expiration - now <= CRED_MANDATORY_S ? now + 5 : 0;
        c->next_may = s->expiration && s->expiration - now <= CRED_ADVISORY_S ? now + 30 : 0;
        if (c->source[0] == '\0') {
            snprintf(c->source, sizeof(c->source), "%s",
                     ch.source.data ? ch.source.data : "an unnamed source");
            c->log_pending = 1;
        }
        rc = 0;
    } else {
        c->next_must = now + CRED_RETRY_S;
        c->next_may = now + 30;
        buf_clear(err);
        if (rc == 0) {
            *code = "NoCredentials";
            buf_printf(err, "no AWS credentials found. Tried: %s. For unsigned requests set "
                            "AWS_S3_ANONYMOUS = True.", ch.tried.data ? ch.tried.data : "nothing");
        } else {
            *code = "CredentialsError";
            buf_puts(err, ch.err.data ? ch.err.data : "out of memory");
        }
        /* paths and names from the environment must not forge a log line */
        for (i = 0; i < err->len; i++)
            if ((unsigned char)err->data[i] < 0x20 || err->data[i] == 0x7f)
                err->data[i] = '?';
        /* kept for the threads that waited on this renewal, and as the answer
         * for a few seconds while nothing valid is held */
        buf_clear(&c->fail_err);
        c->fail_code = buf_append(&c->fail_err, err->data ? err->data : "", err->len) < 0
                           ? NULL : *code;
        c->fail_until = now + CRED_RETRY_S;
        rc = -1;
    }
    buf_free(&ch.tried);
    buf_free(&ch.err);
    buf_free(&ch.source);
    return rc;
}

static int
set_valid(const cred_cache *c, const cred_set *s, time_t now)
{
    return s && !c->stale && (s->expiration == 0 || s->expiration > now);
}

/* Under the lock: the failure kept by the last renewal, as this call's answer. */
static int
stored_failure(const cred_cache *c, const char **code, buf_t *err)
{
    *code = c->fail_code;
    buf_clear(err);
    return buf_append(err, c->fail_err.data ? c->fail_err.data : "", c->fail_err.len);
}

int
cred_get(cred_cache *c, long min_valid, const cred_env *env, cred_set **out,
         const char **code, buf_t *err)
{
    int rc = -1;

    *out = NULL;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        time_t now = time(NULL);
        cred_set *cur = c->current;
        int usable = set_valid(c, cur, now);
        long left = usable && cur->expiration ? (long)(cur->expiration - now) : LONG_MAX;
        int must = !usable || (cur->refreshable && left <= CRED_MANDATORY_S);
        /* a URL that must outlive the current set: renewed only when a fresh set
         * could cover it (one like the current one when it was new), or once to
         * find out, when no renewal was asked for this long a URL yet */
        int cover = left < min_valid &&
                    (min_valid + 60 <= c->issued_for || min_valid > c->asked_for);
        int may = usable && cur->refreshable && (left <= CRED_ADVISORY_S || cover) &&
                  now >= c->next_may;

        if (must && usable && now < c->next_must)
            must = 0;   /* renewed into that window a moment ago: use it while it lasts */
        if (!must && !may) {
            cur->refs++;
            *out = cur;
            rc = 0;
            break;
        }
        if (c->refreshing && !must) {
            cur->refs++;   /* another thread is renewing: keep signing meanwhile */
            *out = cur;
            rc = 0;
            break;
        }
        if (!usable && !c->refreshing && c->fail_code && now < c->fail_until) {
            rc = -1;       /* it failed a moment ago: not every request runs the chain */
            if (stored_failure(c, code, err) < 0)
                *code = "CredentialsError";
            break;
        }
        if (env == NULL) {   /* the caller holds the GIL: neither wait nor resolve here */
            rc = 1;
            break;
        }
        if (c->refreshing) {
            unsigned g = c->gen;
            while (c->refreshing && c->gen == g)
                pthread_cond_wait(&c->cond, &c->lock);
            if (c->gen != g && c->fail_code && !set_valid(c, c->current, time(NULL))) {
                rc = -1;   /* the renewal waited for failed: its answer is this one's */
                if (stored_failure(c, code, err) < 0)
                    *code = "CredentialsError";
                break;
            }
            continue;
        }
        if (refresh(c, env, min_valid, code, err) < 0 &&
            !(usable && set_valid(c, c->current, time(NULL))))
            break;   /* a failed renewal with nothing valid left */
        cur = c->current;
        cur->refs++;
        *out = cur;
        rc = 0;
        break;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void
cred_release(cred_cache *c, cred_set *s)
{
    int last;

    if (s == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    last = --s->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (last)
        set_free(s);
}

int
cred_invalidate(cred_cache *c, const cred_set *used)
{
    int rc = 0;

    pthread_mutex_lock(&c->lock);
    if (used && used->refreshable) {
        time_t now = time(NULL);

        /* 1 too when another thread renewed since, or asked for a renewal of
         * this set already: the call runs again with the new set */
        rc = 1;
        if (c->current == used && !c->stale && c->refused_at &&
            now - c->refused_at < CRED_REFUSED_S) {
            rc = 0;   /* the set a refusal renewed a moment ago is refused too */
        } else if (c->current == used && !c->stale) {
            c->stale = 1;
            c->next_must = 0;
            c->fail_until = 0;
            c->refused_at = now;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int
cred_take_log(cred_cache *c, char *out, size_t size)
{
    int rc = 0;

    if (!__atomic_load_n(&c->log_pending, __ATOMIC_RELAXED))
        return 0;
    pthread_mutex_lock(&c->lock);
    if (c->log_pending) {
        c->log_pending = 0;
        snprintf(out, size, "%s", c->source);
        rc = 1;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* ---- region ------------------------------------------------------------------ */

static int
region_ok(const char *v)
{
    size_t n = strlen(v), i;

    if (n == 0 || n > 50)
        return 0;
    for (i = 0; i < n; i++)
        if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '-'))
            return 0;
    return 1;
}

int
cred_default_region(const char *profile, buf_t *out, buf_t *err)
{
    static const char *const vars[] = {"AWS_REGION", "AWS_DEFAULT_REGION", NULL};
    cred_env env = {NULL, 0};
    cred_cache dummy;
    chain ch;
    profile_t p;
    const char *v;
    int rc = -1, i;

    memset(&dummy, 0, sizeof(dummy));
    memset(&p, 0, sizeof(p));
    for (i = 0; vars[i]; i++) {
        v = getenv(vars[i]);
        if (v && v[0]) {
            if (!region_ok(v)) {
                buf_printf(err, "%s in the environment is not a region name such as "
                                "'us-east-1'", vars[i]);
                return -1;
            }
            return buf_puts(out, v);
        }
    }
    cred_env_load(&env);
    ch = (chain){&dummy, &env, BUF_INIT, BUF_INIT, BUF_INIT};
    if (profile == NULL)
        profile = envv(&ch, "AWS_PROFILE");
    if (profile == NULL)
        profile = "default";
    if (strlen(profile) > 128 || strchr(profile, ']') || profile_load(&ch, profile, &p) < 0) {
        /* an unreadable file is the credential chain's to report */
        rc = buf_puts(out, "us-east-1");
        goto done;
    }
    if (p.v[P_REGION] && p.v[P_REGION][0]) {
        if (!region_ok(p.v[P_REGION])) {
            buf_printf(err, "the region of profile '%s' in %s is not a region name such as "
                            "'us-east-1'", profile, p.config_path);
            goto done;
        }
        rc = buf_puts(out, p.v[P_REGION]);
        goto done;
    }
    rc = buf_puts(out, "us-east-1");
done:
    profile_free(&p);
    buf_free(&ch.tried);
    buf_free(&ch.err);
    buf_free(&ch.source);
    cred_env_free(&env);
    return rc;
}
