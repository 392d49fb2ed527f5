/* A blocking HTTP/2-over-TLS client (see tu_h2.h). */
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct tu_h2_resp *find(struct tu_h2_conn *c, int32_t id)
{
    for (int i = 0; i < c->nresp; i++)
        if (c->resp[i].stream_id == id)
            return &c->resp[i];
    return NULL;
}

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len,
                       int flags, void *ud)
{
    struct tu_h2_conn *c = ud;
    int n;

    (void)s;
    (void)flags;
    ERR_clear_error();
    n = SSL_write(c->ssl, data, (int)len);
    if (n <= 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f,
                     const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen, uint8_t flags, void *ud)
{
    struct tu_h2_resp *r = find(ud, f->hd.stream_id);
    char v[64];

    (void)s;
    (void)flags;
    if (!r || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    snprintf(v, sizeof(v), "%.*s", (int)(vlen < 63 ? vlen : 63),
             (const char *)value);
    if (nlen == 7 && !memcmp(name, ":status", 7))
        r->status = atoi(v);
    else if (nlen == 7 && !memcmp(name, "apns-id", 7))
        snprintf(r->apns_id, sizeof(r->apns_id), "%s", v);
    else if (nlen == 11 && !memcmp(name, "retry-after", 11))
        snprintf(r->retry_after, sizeof(r->retry_after), "%.31s", v);
    else if (nlen == 12 && !memcmp(name, "content-type", 12))
        snprintf(r->content_type, sizeof(r->content_type), "%s", v);
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *ud)
{
    struct tu_h2_resp *r = find(ud, id);

    (void)s;
    (void)flags;
    if (r && r->body_len + len < sizeof(r->body)) {
        memcpy(r->body + r->body_len, data, len);
        r->body_len += len;
        r->body[r->body_len] = '\0';
    }
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    struct tu_h2_resp *r = find(ud, id);

    (void)s;
    if (r) {
        r->closed = true;
        r->close_code = code;
    }
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct tu_h2_conn *c = ud;

    (void)s;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK))
        c->ping_acks++;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true;
        c->goaway_last = f->goaway.last_stream_id;
        c->goaway_code = f->goaway.error_code;
    }
    return 0;
}

static ssize_t body_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                       uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct tu_h2_resp *r = src->ptr;
    size_t n = r->req_len - r->req_off;

    (void)s;
    (void)id;
    (void)ud;
    if (n > len)
        n = len;
    memcpy(buf, r->req_body + r->req_off, n);
    r->req_off += n;
    if (r->req_off == r->req_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

struct tu_h2_conn *tu_h2_connect(int port, const char *ca_file, double *ret_ms)
{
    struct tu_h2_conn *c = calloc(1, sizeof(*c));
    struct sockaddr_in sa = {0};
    nghttp2_session_callbacks *cbs = NULL;
    const unsigned char *alpn = NULL;
    unsigned alpnlen = 0;
    double t0;
    int one = 1;
    struct timeval tv = {10, 0};

    if (!c)
        return NULL;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    t0 = now_ms();
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto fail;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ssl_ctx ||
        SSL_CTX_load_verify_locations(c->ssl_ctx, ca_file, NULL) != 1)
        goto fail;
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_alpn_protos(c->ssl_ctx, (const unsigned char *)"\x02h2", 3);
    c->ssl = SSL_new(c->ssl_ctx);
    if (!c->ssl)
        goto fail;
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    SSL_set1_host(c->ssl, "localhost");
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1) {
        fprintf(stderr, "tu_h2_connect: TLS handshake failed: %s\n",
                ERR_reason_error_string(ERR_get_error()));
        goto fail;
    }
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpnlen);
    if (alpnlen != 2 || memcmp(alpn, "h2", 2))
        goto fail;
    if (ret_ms)
        *ret_ms = now_ms() - t0;
    if (nghttp2_session_callbacks_new(&cbs))
        goto fail;
    nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
    if (nghttp2_session_client_new((nghttp2_session **)&c->session, cbs, c))
        goto fail;
    nghttp2_session_callbacks_del(cbs);
    cbs = NULL;
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, NULL, 0);
    return c;
fail:
    nghttp2_session_callbacks_del(cbs);
    tu_h2_close(c);
    return NULL;
}

void tu_h2_close(struct tu_h2_conn *c)
{
    if (!c)
        return;
    if (c->session)
        nghttp2_session_del(c->session);
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->ssl_ctx)
        SSL_CTX_free(c->ssl_ctx);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

int tu_h2_request(struct tu_h2_conn *c, const char *method, const char *path,
                  const char *const *hdrs, const char *body, size_t len)
{
    nghttp2_nv nv[40];
    size_t n = 0;
    nghttp2_data_provider prd;
    struct tu_h2_resp *r;
    int32_t id;

    if (c->nresp >= TU_H2_MAX_STREAMS || len > sizeof(c->reqbodies[0]))
        return -1;
#define NV(N, V)                                                               \
    do {                                                                       \
        nv[n].name = (uint8_t *)(N);                                           \
        nv[n].namelen = strlen(N);                                             \
        nv[n].value = (uint8_t *)(V);                                          \
        nv[n].valuelen = strlen(V);                                            \
        nv[n].flags = NGHTTP2_NV_FLAG_NONE;                                    \
        n++;                                                                   \
    } while (0)
    NV(":method", method);
    NV(":scheme", "https");
    NV(":authority", "localhost");
    NV(":path", path);
    for (int i = 0; hdrs && hdrs[i] && n < 40; i += 2)
        NV(hdrs[i], hdrs[i + 1]);
#undef NV
    r = &c->resp[c->nresp];
    memset(r, 0, sizeof(*r));
    if (body) {
        memcpy(c->reqbodies[c->nresp], body, len);
        r->req_body = c->reqbodies[c->nresp];
        r->req_len = len;
    }
    prd.source.ptr = r;
    prd.read_callback = body_cb;
    id = nghttp2_submit_request(c->session, NULL, nv, n, body ? &prd : NULL,
                                NULL);
    if (id < 0)
        return -1;
    r->stream_id = id;
    return c->nresp++;
}

int tu_h2_ping(struct tu_h2_conn *c)
{
    return nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL) ? -1 : 0;
}

uint32_t tu_h2_remote_max_streams(struct tu_h2_conn *c)
{
    return nghttp2_session_get_remote_settings(
        c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

static bool all_closed(struct tu_h2_conn *c)
{
    for (int i = 0; i < c->nresp; i++)
        if (!c->resp[i].closed)
            return false;
    return true;
}

int tu_h2_run(struct tu_h2_conn *c, int timeout_ms)
{
    double end = now_ms() + timeout_ms;
    uint8_t buf[16384];

    for (;;) {
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int left, n;
        if (!c->eof && nghttp2_session_send(c->session) != 0)
            c->eof = true;
        if (c->eof)
            return 1;
        if (all_closed(c) && c->nresp > 0 && !c->wait_eof &&
            !nghttp2_session_want_write(c->session))
            return 0;
        left = (int)(end - now_ms());
        if (left <= 0)
            return c->nresp && all_closed(c) && !c->wait_eof ? 0 : -1;
        if (SSL_pending(c->ssl) == 0 && poll(&pfd, 1, left) <= 0)
            continue;
        ERR_clear_error();
        n = SSL_read(c->ssl, buf, sizeof(buf));
        if (n <= 0) {
            c->eof = true;
            return 1;
        }
        if (nghttp2_session_mem_recv(c->session, buf, (size_t)n) < 0) {
            c->eof = true;
            return 1;
        }
    }
}

int tu_h2_wait_eof(struct tu_h2_conn *c, int timeout_ms)
{
    int rc;

    c->wait_eof = true;
    rc = tu_h2_run(c, timeout_ms);
    c->wait_eof = false;
    return rc;
}
