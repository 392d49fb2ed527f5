/*
 * Plain HTTP/1.1 to the daemon's listeners on loopback (libcurl): a
 * keep-alive client, one per thread.
 */
#ifndef PUSHGW_TU_HTTP_H
#define PUSHGW_TU_HTTP_H

#include <stddef.h>

struct tu_http;

/* A new client (fails the test when out of memory); tu_http_free(NULL)
 * is a no-op. */
struct tu_http *tu_http_new(void);
void tu_http_free(struct tu_http *h);
/*
 * POSTs |body| (|len| bytes) to http://127.0.0.1:|port||path| with the
 * hook key |key| (NULL: none) and |ctype| (NULL: application/json); a
 * GET when |body| is NULL. Returns the status (0: no answer within
 * |timeout_ms|); the answer body in |*ret_body| (free(), may be NULL)
 * and the Retry-After header value in |*ret_retry_after| (-1 when absent;
 * may be NULL). Answers are capped at 1 MiB.
 */
int tu_http_post(struct tu_http *h, int port, const char *path, const char *key,
                 const char *ctype, const char *body, size_t len,
                 int timeout_ms, char **ret_body, int *ret_retry_after);
/* The time of the last transfer in microseconds (curl's total time). */
double tu_http_last_us(const struct tu_http *h);
/* One request on a client of its own: POST when |body| is not NULL
 * (its length is strlen(body)), else GET; 10 s timeout. */
int tu_http_once(int port, const char *path, const char *key, const char *ctype,
                 const char *body, char **ret_body);
/* A blocking TCP connection to |port| on loopback, for a client that
 * writes its own bytes; fails the test when it cannot connect. */
int tu_tcp_connect(int port);

#endif
