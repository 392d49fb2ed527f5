/*
 * h2out: nghttp2 output into a libevent buffer in pieces of one full TLS
 * record. nghttp2_session_mem_send hands out a frame or less at a time;
 * added one by one they fill 4 KiB evbuffer chains, and a TLS bufferevent
 * writes one record and one write(2) per chain. Gathered into 16 KiB
 * pieces a record carries four times as much. Used by the gateway's
 * HTTP/2 client and by the test mocks' server.
 */
#ifndef PUSHGW_H2OUT_H
#define PUSHGW_H2OUT_H

#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>
#include <stddef.h>

/* The largest TLS plaintext record. */
#define PGW_H2OUT_PIECE 16384

/*
 * Moves output of |session| into |out| until nghttp2 has none left or
 * |out| holds |high_water| bytes or more. Returns 0, an nghttp2 error
 * code (< 0) from nghttp2_session_mem_send, or NGHTTP2_ERR_NOMEM when
 * the buffer cannot grow.
 */
int pgw_h2out_send(nghttp2_session *session, struct evbuffer *out,
                   size_t high_water);

#endif
