/* Plain HTTP/1.1 to the daemon (see tu_http.h). */
#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Answers of the daemon are small: anything bigger is a bug. */
#define TU_HTTP_MAX_BODY (1u << 20)

struct tu_http {
    CURL *c;
    char *body;
    size_t len;
    int retry_after;
    double last_us;
};

struct tu_http *tu_http_new(void)
{
    struct tu_http *h = calloc(1, sizeof(*h));

    assert_non_null(h);
    h->c = curl_easy_init();
    assert_non_null(h->c);
    return h;
}

void tu_http_free(struct tu_http *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->c);
    free(h->body);
    free(h);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct tu_http *h = arg;
    size_t n = size * nmemb;
    char *p;

    if (h->len + n > TU_HTTP_MAX_BODY)
        return 0;
    p = realloc(h->body, h->len + n + 1);
    if (!p)
        return 0;
    memcpy(p + h->len, data, n);
    h->len += n;
    p[h->len] = '\0';
    h->body = p;
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct tu_http *h = arg;
    size_t n = size * nmemb;

    if (n > 12 && strncasecmp(data, "Retry-After:", 12) == 0)
        h->retry_after = atoi(data + 12);
    return n;
}

int tu_http_post(struct tu_http *h, int port, const char *path, const char *key,
                 const char *ctype, const char *body, size_t len,
                 int timeout_ms, char **ret_body, int *ret_retry_after)
{
    struct curl_slist *hd = NULL;
    char line[512];
    char url[256];
    long status = 0;

    free(h->body);
    h->body = calloc(1, 1);
    assert_non_null(h->body);
    h->len = 0;
    h->retry_after = -1;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(h->c, CURLOPT_URL, url);
    curl_easy_setopt(h->c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h->c, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h->c, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(h->c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h->c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(h->c, CURLOPT_POST, 1L);
        curl_easy_setopt(h->c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h->c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        snprintf(line, sizeof(line), "Content-Type: %s",
                 ctype ? ctype : "application/json");
        hd = curl_slist_append(hd, line);
        assert_non_null(hd);
    } else {
        curl_easy_setopt(h->c, CURLOPT_HTTPGET, 1L);
    }
    if (key) {
        snprintf(line, sizeof(line), "X-LC-Hook-Key: %s", key);
        hd = curl_slist_append(hd, line);
    }
    hd = curl_slist_append(hd, "Expect:");
    assert_non_null(hd);
    curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, hd);
    if (curl_easy_perform(h->c) == CURLE_OK)
        curl_easy_getinfo(h->c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h->c, CURLINFO_TOTAL_TIME, &h->last_us);
    h->last_us *= 1e6;
    curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hd);
    if (ret_body) {
        *ret_body = h->body;
        h->body = NULL;
        h->len = 0;
    }
    if (ret_retry_after)
        *ret_retry_after = h->retry_after;
    return (int)status;
}

double tu_http_last_us(const struct tu_http *h)
{
    return h->last_us;
}

int tu_http_once(int port, const char *path, const char *key, const char *ctype,
                 const char *body, char **ret_body)
{
    struct tu_http *h = tu_http_new();
    int st = tu_http_post(h, port, path, key, ctype, body,
                          body ? strlen(body) : 0, 10000, ret_body, NULL);

    tu_http_free(h);
    return st;
}

int tu_tcp_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fail_msg("cannot connect to 127.0.0.1:%d", port);
    }
    return fd;
}
