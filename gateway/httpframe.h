/*
 * httpframe: follows one HTTP/1.1 connection's input as evhttp will read
 * it, request by request, and refuses the ambiguous or oversized ones
 * before evhttp reads them (see httpframe.c for why and how). Used by the
 * listener on every connection; works on the connection's input buffer
 * only, never logs.
 */
#ifndef PUSHGW_HTTPFRAME_H
#define PUSHGW_HTTPFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* The head's bytes (request line and headers, line ends included) past
 * which it is refused; evhttp's own limit must be set this much higher so
 * ours acts. */
#define PGW_HTTPFRAME_HEADER_SLACK 4096

/* How far a connection's input has been followed ("framing"). */
enum pgw_httpframe_state {
    PGW_FS_HEAD,       /* request line and headers */
    PGW_FS_BODY,       /* |left| bytes of a Content-Length body */
    PGW_FS_CHUNK_SIZE, /* a chunk-size line */
    PGW_FS_CHUNK_DATA, /* |left| bytes of a chunk */
    PGW_FS_TRAILER,    /* trailer lines, up to an empty one */
    PGW_FS_OFF,        /* no longer followed: refused, or evhttp's own error */
};

struct pgw_httpframe {
    enum pgw_httpframe_state st;
    size_t scanned;    /* bytes of the input buffer looked at */
    size_t head_bytes; /* of the head being read */
    bool seen_first_line;
    unsigned n_cl, n_te;
    bool chunked;
    uint64_t cl;
    uint64_t left;
    uint64_t body_total; /* chunked */
    unsigned heads;      /* request heads read whole */
    unsigned delivered;  /* requests handed to on_request() */
    unsigned refuse_at;  /* the request refused (1-based), or 0 */
    int refuse_code;
    const char *refuse_why;   /* static */
    const char *refuse_field; /* static */
    size_t pending_crlf;      /* bytes of an empty line still to write */
};

/* The limits a connection is held to. */
struct pgw_httpframe_limits {
    size_t max_header; /* head bytes: over it 431 */
    size_t max_body;   /* body bytes: over it 413 */
};

/* Starts (or restarts) |f| at the head of a request; a zeroed frame then
 * reset is a new connection's. */
void pgw_httpframe_reset(struct pgw_httpframe *f);

/*
 * Follows the bytes of |buf| that |f| has not looked at yet (call it when
 * bytes arrive, before evhttp parses them; lower |f->scanned| by what
 * evhttp drained). A request to refuse is marked in |f| (refuse_at,
 * refuse_code, refuse_why, refuse_field) and its bytes rewritten so that
 * evhttp reads no body by the offending header.
 */
void pgw_httpframe_scan(const struct pgw_httpframe_limits *l,
                        struct pgw_httpframe *f, struct evbuffer *buf);

#endif
