/* The HTTP CONNECT proxy URL and exchange; see proxy.h. */
#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "pushgw.h"
#include "util/buf.h"

static void why_set(char *why, size_t size, const char *msg)
{
    if (why && size)
        snprintf(why, size, "%s", msg);
}

/* |s|[0..n) percent-decoded into a new string; NULL on a bad escape, a
 * NUL byte or a value over PGW_PROXY_MAX_CREDENTIAL (|*ret_bad| set), or
 * out of memory. */
static char *decode(const char *s, size_t n, int *ret_bad)
{
    char *out;
    size_t o = 0;

    *ret_bad = 0;
    if (n > 3 * PGW_PROXY_MAX_CREDENTIAL) {
        *ret_bad = 1;
        return NULL;
    }
    out = malloc(n + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (c == '%') {
            if (n - i < 3 || pgw_hex_value(s[i + 1]) < 0 ||
                pgw_hex_value(s[i + 2]) < 0)
                goto bad;
            c = (char)(pgw_hex_value(s[i + 1]) * 16 + pgw_hex_value(s[i + 2]));
            i += 2;
            if (c == '\0')
                goto bad;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    if (o > PGW_PROXY_MAX_CREDENTIAL)
        goto bad;
    return out;
bad:
    explicit_bzero(out, n + 1);
    free(out);
    *ret_bad = 1;
    return NULL;
}

void pgw_proxy_free_secret(char *secret)
{
    if (!secret)
        return;
    explicit_bzero(secret, strlen(secret));
    free(secret);
}

void pgw_proxy_free(struct pgw_proxy *proxy)
{
    if (!proxy)
        return;
    pgw_proxy_free_secret(proxy->password);
    free(proxy->user);
    free(proxy->host);
    free(proxy->hostport);
    free(proxy);
}

/* "host:port" or "[v6]:port" of |p|[0..n) into |proxy|. */
static int parse_hostport(struct pgw_proxy *proxy, const char *p, size_t n,
                          char *why, size_t why_size)
{
    const char *hs, *he, *colon;
    unsigned long port;
    char digits[8], *end;
    size_t dl;

    if (n > 0 && p[0] == '[') {
        hs = p + 1;
        he = memchr(hs, ']', n - 1);
        if (!he) {
            why_set(why, why_size, "unterminated '[' in the host");
            return PGW_ERR_INVAL;
        }
        colon = he + 1 < p + n && he[1] == ':' ? he + 1 : NULL;
        if (he + 1 < p + n && !colon) {
            why_set(why, why_size, "unexpected text after the host");
            return PGW_ERR_INVAL;
        }
    } else {
        hs = p;
        colon = memchr(p, ':', n);
        he = colon ? colon : p + n;
    }
    if (he == hs || he - hs > 253) {
        why_set(why, why_size, "no host");
        return PGW_ERR_INVAL;
    }
    for (const char *c = hs; c < he; c++) {
        if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '%' || *c == '[' ||
            *c == ']' || *c == '\\') {
            why_set(why, why_size, "invalid character in the host");
            return PGW_ERR_INVAL;
        }
    }
    if (!colon) {
        why_set(why, why_size, "no port: write host:port");
        return PGW_ERR_INVAL;
    }
    dl = (size_t)(p + n - colon - 1);
    if (dl == 0 || dl >= sizeof(digits) ||
        strspn(colon + 1, "0123456789") < dl) {
        why_set(why, why_size, "invalid port");
        return PGW_ERR_INVAL;
    }
    memcpy(digits, colon + 1, dl);
    digits[dl] = '\0';
    errno = 0;
    port = strtoul(digits, &end, 10);
    if (errno || *end || port == 0 || port > 65535) {
        why_set(why, why_size, "invalid port");
        return PGW_ERR_INVAL;
    }
    proxy->host = strndup(hs, (size_t)(he - hs));
    if (!proxy->host)
        return PGW_ERR_NOMEM;
    snprintf(proxy->port, sizeof(proxy->port), "%lu", port);
    if (asprintf(&proxy->hostport,
                 strchr(proxy->host, ':') ? "[%s]:%s" : "%s:%s", proxy->host,
                 proxy->port) < 0) {
        proxy->hostport = NULL;
        return PGW_ERR_NOMEM;
    }
    return 0;
}

int pgw_proxy_parse(const char *url, const char *password,
                    struct pgw_proxy **ret_proxy, char *why, size_t why_size)
{
    struct pgw_proxy *proxy = NULL;
    const char *a, *at, *colon;
    size_t alen;
    int bad, ret = PGW_ERR_INVAL;

    if (!url || !ret_proxy) {
        why_set(why, why_size, "no URL");
        return PGW_ERR_INVAL;
    }
    if (strncasecmp(url, "http://", 7) != 0) {
        why_set(why, why_size,
                strncasecmp(url, "https://", 8) == 0
                    ? "https:// proxies are not supported: use http:// "
                      "(the tunnel inside is TLS all the same)"
                    : "expected an http:// URL");
        return PGW_ERR_INVAL;
    }
    a = url + 7;
    alen = strcspn(a, "/?#");
    if (a[alen] != '\0' && strcmp(a + alen, "/") != 0) {
        why_set(why, why_size, "a proxy URL has no path, query or fragment");
        return PGW_ERR_INVAL;
    }
    proxy = calloc(1, sizeof(*proxy));
    if (!proxy)
        return PGW_ERR_NOMEM;
    at = memrchr(a, '@', alen);
    if (at) {
        colon = memchr(a, ':', (size_t)(at - a));
        if (colon == a || at == a) {
            why_set(why, why_size, "empty user name");
            goto out;
        }
        proxy->user = decode(a, (size_t)((colon ? colon : at) - a), &bad);
        if (!proxy->user) {
            ret = bad ? PGW_ERR_INVAL : PGW_ERR_NOMEM;
            why_set(why, why_size, "invalid user name");
            goto out;
        }
        if (colon) {
            proxy->password = decode(colon + 1, (size_t)(at - colon - 1), &bad);
            if (!proxy->password) {
                ret = bad ? PGW_ERR_INVAL : PGW_ERR_NOMEM;
                why_set(why, why_size, "invalid password");
                goto out;
            }
        }
        if (strchr(proxy->user, ':')) {
            why_set(why, why_size, "a user name cannot hold ':'");
            goto out;
        }
    }
    if (password) {
        if (!proxy->user || proxy->password) {
            why_set(why, why_size,
                    "a password from a file needs a URL with a user name and "
                    "no password (http://user@host:port)");
            goto out;
        }
        if (strlen(password) > PGW_PROXY_MAX_CREDENTIAL) {
            why_set(why, why_size, "password too long");
            goto out;
        }
        proxy->password = strdup(password);
        if (!proxy->password) {
            ret = PGW_ERR_NOMEM;
            goto out;
        }
    }
    ret = parse_hostport(proxy, at ? at + 1 : a,
                         alen - (at ? (size_t)(at + 1 - a) : 0), why, why_size);
    if (ret)
        goto out;
    *ret_proxy = proxy;
    proxy = NULL;
out:
    pgw_proxy_free(proxy);
    return ret;
}

int pgw_proxy_connect_request(const struct pgw_proxy *proxy,
                              const char *authority, char **ret_request)
{
    char *cred = NULL, *b64 = NULL, *req = NULL;
    size_t clen = 0;
    int ret = PGW_ERR_NOMEM;

    if (proxy->user) {
        if (asprintf(&cred, "%s:%s", proxy->user,
                     proxy->password ? proxy->password : "") < 0) {
            cred = NULL;
            goto out;
        }
        clen = strlen(cred);
        b64 = malloc(4 * ((clen + 2) / 3) + 1);
        if (!b64)
            goto out;
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)cred,
                        (int)clen);
    }
    if (asprintf(&req,
                 "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s%s"
                 "User-Agent: pushgw/" PUSHGW_VERSION "\r\n\r\n",
                 authority, authority, b64 ? "Proxy-Authorization: Basic " : "",
                 b64 ? b64 : "", b64 ? "\r\n" : "") < 0) {
        req = NULL;
        goto out;
    }
    *ret_request = req;
    ret = 0;
out:
    if (cred) {
        explicit_bzero(cred, clen);
        free(cred);
    }
    if (b64) {
        explicit_bzero(b64, strlen(b64));
        free(b64);
    }
    return ret;
}

int pgw_proxy_parse_answer(const char *buf, size_t len, int *ret_status,
                           char *reason, size_t reason_size)
{
    const char *end = NULL, *eol, *p;
    size_t n = 0, head;
    int status = 0;

    /* The status line alone can be judged before the head is complete. */
    if (len >= 5 && strncmp(buf, "HTTP/", 5) != 0)
        return PGW_ERR_PROTO;
    if (len < 5 && strncmp(buf, "HTTP/", len) != 0)
        return PGW_ERR_PROTO;
    for (size_t i = 0; i + 3 < len; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' &&
            buf[i + 3] == '\n') {
            end = buf + i + 4;
            break;
        }
    }
    if (!end)
        return len >= PGW_PROXY_MAX_ANSWER ? PGW_ERR_TOO_LARGE : 0;
    head = (size_t)(end - buf);
    if (head > PGW_PROXY_MAX_ANSWER)
        return PGW_ERR_TOO_LARGE;
    eol = memchr(buf, '\r', head);
    /* "HTTP/1.x SSS[ reason]" */
    if (!eol || eol - buf < 12 || strncmp(buf, "HTTP/1.", 7) != 0 ||
        buf[7] < '0' || buf[7] > '9' || buf[8] != ' ')
        return PGW_ERR_PROTO;
    for (p = buf + 9; p < buf + 12; p++) {
        if (*p < '0' || *p > '9')
            return PGW_ERR_PROTO;
        status = status * 10 + (*p - '0');
    }
    if (p < eol && *p != ' ')
        return PGW_ERR_PROTO;
    if (p < eol)
        p++;
    if (reason_size) {
        for (; p < eol && n + 1 < reason_size; p++)
            reason[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
        reason[n] = '\0';
    }
    *ret_status = status;
    return (int)head;
}
