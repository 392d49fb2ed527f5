/*
 * The framing of requests (see httpframe.h).
 *
 * libevent 2.1 gives no hook between a request's headers and its body, and
 * answers what it refuses itself with an HTML page: a Content-Length over
 * its body limit, headers over its header limit. It also takes the first
 * of two Content-Length headers and lets Transfer-Encoding win over
 * Content-Length, which is how requests are smuggled past a proxy that
 * reads the other one. So each connection's input is followed as evhttp
 * will read it, request by request (the request line and headers, then
 * the body by Content-Length or by chunks), from a callback on its input
 * buffer that runs when bytes arrive, before evhttp parses them:
 *   - a repeated or invalid Content-Length, a repeated Transfer-Encoding,
 *     or both: 400;
 *   - a Content-Length over |max_body|, or chunks adding up to more: 413;
 *   - headers over |max_header|: 431.
 * The offending header is renamed in place ("Content-Length" becomes
 * "xxxxxxxxxxxxxx", same length), so evhttp reads no body by it; a chunk
 * size over the limit becomes "0" and its first two data bytes an empty
 * trailer line; headers over the limit end at an empty line written over
 * the start of the line that crossed it. evhttp then hands the request to
 * the listener's on_request(), which answers the refusal as JSON with
 * Connection: close (|refuse_at| counts requests, so a pipelined request
 * before the refused one is served normally). Lines are only ever looked at
 * whole, and evhttp only consumes whole lines, so every line is seen before
 * evhttp reads it.
 */
#include "httpframe.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#define FRAME_COPY 128 /* bytes of a line looked at */

void pgw_httpframe_reset(struct pgw_httpframe *f)
{
    f->st = PGW_FS_HEAD;
    f->head_bytes = 0;
    f->seen_first_line = false;
    f->n_cl = f->n_te = 0;
    f->chunked = false;
    f->cl = 0;
}

/* The request whose head is being read (or was just read, |done|) is
 * refused with |code|; the first refusal stays. */
static void frame_refuse(struct pgw_httpframe *f, bool done, int code,
                         const char *why, const char *field)
{
    if (f->refuse_code != 0)
        return;
    f->refuse_code = code;
    f->refuse_why = why;
    f->refuse_field = field;
    f->refuse_at = f->heads + (done ? 0 : 1);
}

/* Writes |n| bytes of |src| over the buffer from |pos| on. */
static void overwrite(struct evbuffer *buf, size_t pos, const char *src,
                      size_t n)
{
    struct evbuffer_ptr p;
    struct evbuffer_iovec v[8];
    int k;

    if (evbuffer_ptr_set(buf, &p, pos, EVBUFFER_PTR_SET) < 0)
        return;
    k = evbuffer_peek(buf, (ev_ssize_t)n, &p, v, 8);
    for (int i = 0; i < k && i < 8 && n > 0; i++) {
        size_t m = v[i].iov_len < n ? v[i].iov_len : n;
        memcpy(v[i].iov_base, src, m);
        src += m;
        n -= m;
    }
}

/* "  123 " as a byte count; false unless digits only (spaces around). */
static bool parse_length(const char *v, uint64_t *ret)
{
    uint64_t n = 0;
    bool any = false;

    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v >= '0' && *v <= '9'; v++) {
        if (n > (UINT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (uint64_t)(*v - '0');
        any = true;
    }
    while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
        v++;
    *ret = n;
    return any && *v == '\0';
}

/* |s| equals |word| (case-insensitive) with blanks around. */
static bool value_is(const char *s, const char *word)
{
    size_t n = strlen(word);

    while (*s == ' ' || *s == '\t')
        s++;
    if (strncasecmp(s, word, n) != 0)
        return false;
    for (s += n; *s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'; s++)
        ;
    return *s == '\0';
}

/* A header line of the head being read, at |pos|; |text| its first bytes
 * (NUL-terminated). */
static void frame_header(const struct pgw_httpframe_limits *l,
                         struct pgw_httpframe *f, struct evbuffer *buf,
                         size_t pos, const char *text, bool cut)
{
    static const char cl_name[] = "content-length";
    static const char te_name[] = "transfer-encoding";
    static const char blank[] = "xxxxxxxxxxxxxxxxx";
    const char *colon = strchr(text, ':');
    size_t name_len = colon != NULL ? (size_t)(colon - text) : 0;
    bool is_cl = name_len == sizeof(cl_name) - 1 &&
                 strncasecmp(text, cl_name, name_len) == 0;
    bool is_te = name_len == sizeof(te_name) - 1 &&
                 strncasecmp(text, te_name, name_len) == 0;
    uint64_t n = 0;

    if (!is_cl && !is_te)
        return;
    if (cut) {
        /* evhttp would read a value we did not see whole */
        frame_refuse(f, false, 400, "header value too long",
                     is_cl ? "Content-Length" : "Transfer-Encoding");
    } else if (is_cl) {
        f->n_cl++;
        if (!parse_length(colon + 1, &n))
            frame_refuse(f, false, 400, "invalid Content-Length",
                         "Content-Length");
        else if (f->n_cl > 1)
            frame_refuse(f, false, 400, "repeated Content-Length",
                         "Content-Length");
        else if (f->n_te > 0)
            frame_refuse(f, false, 400, "Content-Length with Transfer-Encoding",
                         "Content-Length");
        else if (n > l->max_body)
            frame_refuse(f, false, 413, "body over the limit", "");
        else
            f->cl = n;
    } else {
        f->n_te++;
        if (f->n_te > 1)
            frame_refuse(f, false, 400, "repeated Transfer-Encoding",
                         "Transfer-Encoding");
        else if (f->n_cl > 0)
            frame_refuse(f, false, 400, "Content-Length with Transfer-Encoding",
                         "Content-Length");
        else
            f->chunked = value_is(colon + 1, "chunked");
    }
    /* Once this request is refused, evhttp reads no body by any header
     * still to come. */
    if (f->refuse_code != 0 && f->refuse_at == f->heads + 1)
        overwrite(buf, pos, blank, name_len);
}

/* Writes what is left of the empty line that ends a refused chunked
 * body (see frame_chunk_size()). */
static void frame_write_pending(struct pgw_httpframe *f, struct evbuffer *buf,
                                size_t len)
{
    while (f->pending_crlf > 0 && f->scanned < len) {
        overwrite(buf, f->scanned, &"\r\n"[2 - f->pending_crlf], 1);
        f->scanned++;
        f->pending_crlf--;
    }
}

/* A chunk-size line at |pos|, |line_len| bytes with its end. */
static void frame_chunk_size(const struct pgw_httpframe_limits *l,
                             struct pgw_httpframe *f, struct evbuffer *buf,
                             size_t pos, size_t line_len, const char *text)
{
    char *end = NULL;
    unsigned long long n;
    size_t content = strcspn(text, "\r\n");

    if (content == 0)
        return; /* evhttp skips empty lines between chunks */
    n = strtoull(text, &end, 16);
    if (end == text ||
        (*end != ' ' && *end != '\r' && *end != '\n' && *end != '\0')) {
        f->st = PGW_FS_OFF; /* evhttp refuses it itself */
        return;
    }
    if (n == 0) {
        f->st = PGW_FS_TRAILER;
        return;
    }
    f->body_total += n;
    if (f->body_total <= l->max_body && f->body_total >= n) {
        f->left = n;
        f->st = PGW_FS_CHUNK_DATA;
        return;
    }
    /* "0" and spaces: the last chunk for evhttp, then an empty trailer
     * line over the data's first two bytes, and the request is whole. */
    {
        char zero[FRAME_COPY];
        size_t k =
            line_len - (line_len >= 2 && text[line_len - 2] == '\r' ? 2 : 1);

        if (k > sizeof(zero))
            k = sizeof(zero);
        memset(zero, ' ', k);
        zero[0] = '0';
        overwrite(buf, pos, zero, k);
    }
    frame_refuse(f, true, 413, "body over the limit", "");
    f->pending_crlf = 2;
    f->st = PGW_FS_OFF;
}

/* A whole line at |pos| of |line_len| bytes (its end included). */
static void frame_line(const struct pgw_httpframe_limits *l,
                       struct pgw_httpframe *f, struct evbuffer *buf,
                       size_t pos, size_t line_len)
{
    char text[FRAME_COPY + 1];
    size_t take = line_len < FRAME_COPY ? line_len : FRAME_COPY;
    struct evbuffer_ptr p;
    bool empty;

    evbuffer_ptr_set(buf, &p, pos, EVBUFFER_PTR_SET);
    if (evbuffer_copyout_from(buf, &p, text, take) != (ev_ssize_t)take) {
        f->st = PGW_FS_OFF;
        return;
    }
    text[take] = '\0';
    empty = text[0] == '\n' || (text[0] == '\r' && text[1] == '\n');
    switch (f->st) {
    case PGW_FS_HEAD:
        if (!f->seen_first_line) {
            /* empty lines before a request line are skipped */
            f->seen_first_line = !empty;
            f->head_bytes += empty ? 0 : line_len;
            return;
        }
        f->head_bytes += line_len;
        if (f->head_bytes > l->max_header && !empty) {
            overwrite(buf, pos, "\r\n", line_len >= 2 ? 2 : 1);
            frame_refuse(f, false, 431, "headers too large", "");
            empty = true;
        } else if (!empty) {
            frame_header(l, f, buf, pos, text, line_len > FRAME_COPY);
            return;
        }
        /* the end of the head */
        f->heads++;
        if (f->refuse_code != 0) {
            f->st = PGW_FS_OFF;
        } else if (f->chunked) {
            f->st = PGW_FS_CHUNK_SIZE;
            f->body_total = 0;
        } else if (f->cl > 0) {
            f->left = f->cl;
            f->st = PGW_FS_BODY;
        } else {
            pgw_httpframe_reset(f);
        }
        return;
    case PGW_FS_CHUNK_SIZE:
        frame_chunk_size(l, f, buf, pos, line_len, text);
        return;
    case PGW_FS_TRAILER:
        if (empty)
            pgw_httpframe_reset(f);
        return;
    default:
        return;
    }
}

/* Follows the bytes of |buf| not looked at yet. */
void pgw_httpframe_scan(const struct pgw_httpframe_limits *l,
                        struct pgw_httpframe *f, struct evbuffer *buf)
{
    size_t len = evbuffer_get_length(buf);

    frame_write_pending(f, buf, len);
    while (f->scanned < len && f->st != PGW_FS_OFF) {
        if (f->st == PGW_FS_BODY || f->st == PGW_FS_CHUNK_DATA) {
            uint64_t avail = len - f->scanned;
            uint64_t take = f->left < avail ? f->left : avail;

            f->scanned += (size_t)take;
            f->left -= take;
            if (f->left == 0) {
                if (f->st == PGW_FS_BODY)
                    pgw_httpframe_reset(f);
                else
                    f->st = PGW_FS_CHUNK_SIZE;
            }
            continue;
        }
        struct evbuffer_ptr start, nl;
        evbuffer_ptr_set(buf, &start, f->scanned, EVBUFFER_PTR_SET);
        nl = evbuffer_search(buf, "\n", 1, &start);
        if (nl.pos < 0) {
            /* A partial line: a head growing past the limit ends here if
             * two of its bytes are in. */
            size_t partial = len - f->scanned;
            if (f->st == PGW_FS_HEAD && f->seen_first_line &&
                f->head_bytes + partial > l->max_header && partial >= 2) {
                overwrite(buf, f->scanned, "\r\n", 2);
                frame_refuse(f, false, 431, "headers too large", "");
                f->heads++;
                f->st = PGW_FS_OFF;
            }
            return;
        }
        size_t line_len = (size_t)nl.pos - f->scanned + 1;
        frame_line(l, f, buf, f->scanned, line_len);
        f->scanned += line_len;
        frame_write_pending(f, buf, len);
    }
}
