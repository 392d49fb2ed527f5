/* URL credentials and hosts; see url.h. */
#include "util/url.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The authority of |url|: its start, and its length (up to / ? #). */
static const char *authority(const char *url, size_t *ret_len)
{
    const char *p = strstr(url, "://");

    p = p ? p + 3 : url;
    *ret_len = strcspn(p, "/?#");
    return p;
}

const char *pgw_url_redact(const char *url, char *buf, size_t size)
{
    size_t alen, ulen;
    const char *a, *at, *colon;

    if (size == 0)
        return buf;
    a = authority(url, &alen);
    at = memrchr(a, '@', alen);
    colon = at ? memchr(a, ':', (size_t)(at - a)) : NULL;
    if (!colon) {
        snprintf(buf, size, "%s", url);
        return buf;
    }
    ulen = (size_t)(colon - url) + 1; /* scheme://user: */
    snprintf(buf, size, "%.*s***%s", (int)ulen, url, at);
    return buf;
}

bool pgw_url_is_loopback(const char *url)
{
    size_t alen, hlen;
    const char *a = authority(url, &alen), *at = memrchr(a, '@', alen);
    const char *host = at ? at + 1 : a;
    char h[256];

    alen -= (size_t)(host - a);
    if (host[0] == '[') {
        const char *end = memchr(host, ']', alen);

        return end && end - host == 4 && memcmp(host, "[::1]", 5) == 0;
    }
    hlen = strcspn(host, ":/?#");
    if (hlen > alen)
        hlen = alen;
    if (hlen == 0 || hlen >= sizeof(h))
        return false;
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    if (strcasecmp(h, "localhost") == 0)
        return true;
    return strncmp(h, "127.", 4) == 0 && strspn(h, "0123456789.") == hlen;
}
