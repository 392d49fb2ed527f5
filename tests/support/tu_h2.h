/*
 * A small blocking HTTP/2-over-TLS client, for talking to the mocks: one
 * connection, several concurrent streams, poll-based with timeouts. It
 * verifies the server certificate against a given CA file.
 */
#ifndef PUSHGW_TU_H2_H
#define PUSHGW_TU_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TU_H2_MAX_STREAMS 64

struct tu_h2_resp {
    int32_t stream_id;
    int status; /* 0 when no response headers came */
    char body[16384];
    size_t body_len;
    char apns_id[64];
    char retry_after[32];
    char content_type[64];
    uint32_t close_code; /* error code the stream closed with */
    bool closed;
    /* request body being sent */
    const char *req_body;
    size_t req_len, req_off;
};

struct tu_h2_conn {
    int fd;
    void *ssl_ctx;
    void *ssl;
    void *session;
    struct tu_h2_resp resp[TU_H2_MAX_STREAMS];
    int nresp;
    bool eof;
    bool wait_eof;
    int ping_acks;
    bool goaway;
    int32_t goaway_last;
    uint32_t goaway_code;
    char reqbodies[TU_H2_MAX_STREAMS][8192];
};

/*
 * Connects to 127.0.0.1:|port| with TLS (ALPN h2, verified with |ca_file|,
 * SNI localhost). NULL on failure (message on stderr). *ret_ms (may be
 * NULL) gets the handshake time in ms.
 */
struct tu_h2_conn *tu_h2_connect(int port, const char *ca_file, double *ret_ms);
void tu_h2_close(struct tu_h2_conn *c);
/*
 * Submits a request. |hdrs| is a NULL-terminated list of name, value
 * pairs; |body| (copied, up to 8 KiB) may be NULL. Returns the index of
 * its tu_h2_resp, or -1.
 */
int tu_h2_request(struct tu_h2_conn *c, const char *method, const char *path,
                  const char *const *hdrs, const char *body, size_t len);
/* Sends a PING. */
int tu_h2_ping(struct tu_h2_conn *c);
/*
 * Runs I/O until every submitted stream closed, the connection ended, or
 * |timeout_ms| passed. Returns 0 when all streams closed, 1 on EOF, -1 on
 * timeout.
 */
int tu_h2_run(struct tu_h2_conn *c, int timeout_ms);
/* Runs I/O until the peer closes (1) or |timeout_ms| passed (-1). */
int tu_h2_wait_eof(struct tu_h2_conn *c, int timeout_ms);
/* The peer's current SETTINGS_MAX_CONCURRENT_STREAMS. */
uint32_t tu_h2_remote_max_streams(struct tu_h2_conn *c);

#endif
