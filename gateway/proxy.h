/*
 * proxy: the outbound HTTP proxy of [apns] proxy and [fcm] proxy, and the
 * HTTP/1.1 CONNECT exchange that opens a tunnel through it (RFC 9110
 * §9.3.6). The URL is "http://[user[:password]@]host:port"; user and
 * password are percent-decoded, so a password holding '@' or ':' is
 * written %40 or %3A. Pure: no I/O, no logging; the h2client's connect
 * step and the curl requests of OAuth use it.
 */
#ifndef PUSHGW_PROXY_H
#define PUSHGW_PROXY_H

#include <stddef.h>

/* A proxy's answer head longer than this is refused: a CONNECT answer is
 * a status line and a few headers. */
#define PGW_PROXY_MAX_ANSWER 8192
/* The longest user or password kept. */
#define PGW_PROXY_MAX_CREDENTIAL 1024
/* What pgw_proxy_parse() writes into |why|. */
#define PGW_PROXY_WHY_MAX 128

struct pgw_proxy {
    char *host; /* without brackets */
    char port[8];
    /* "host:port" ("[v6]:port"): names the proxy in logs and in curl's
     * CURLOPT_PROXY (with "http://" before it); never holds credentials */
    char *hostport;
    char *user;     /* decoded; NULL when the URL has none */
    char *password; /* decoded, secret; NULL when none */
};

/*
 * Parses |url|. |password|, when not NULL, is the password from a file
 * ([apns] proxy_password_file): the URL must then name a user and no
 * password. On success stores a new proxy in |*ret_proxy| (free with
 * pgw_proxy_free()). Errors: PGW_ERR_INVAL with a reason in |why| (never
 * the credentials), PGW_ERR_NOMEM.
 */
int pgw_proxy_parse(const char *url, const char *password,
                    struct pgw_proxy **ret_proxy, char *why, size_t why_size);

/* Frees |proxy|, wiping the credentials. NULL is a no-op. */
void pgw_proxy_free(struct pgw_proxy *proxy);

/* Wipes and frees a string that may hold credentials (a proxy URL or
 * password). NULL is a no-op. */
void pgw_proxy_free_secret(char *secret);

/*
 * The CONNECT request for |authority| ("host:port" of the origin, as
 * sent in Host too), with Proxy-Authorization: Basic when |proxy| has a
 * user. Stores a malloc'd NUL-terminated text in |*ret_request|; it holds
 * the credentials: wipe it before freeing. Returns 0 or PGW_ERR_NOMEM.
 */
int pgw_proxy_connect_request(const struct pgw_proxy *proxy,
                              const char *authority, char **ret_request);

/*
 * Reads the answer head in |buf| (|len| bytes received so far). Returns
 * 0 while the head is incomplete; the length of the head (up to and with
 * the blank line) once complete, with its status in |*ret_status| and the
 * reason phrase, printable ASCII only and cut to |reason_size|, in
 * |reason|; PGW_ERR_PROTO when it is not an HTTP/1.x answer,
 * PGW_ERR_TOO_LARGE when it is longer than PGW_PROXY_MAX_ANSWER.
 */
int pgw_proxy_parse_answer(const char *buf, size_t len, int *ret_status,
                           char *reason, size_t reason_size);

#endif
