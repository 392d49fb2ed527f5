/*
 * libcurl's multi interface driven by a libevent loop: every transfer's
 * sockets and curl's timer are events on the caller's event_base, so no
 * call ever blocks the loop (CURLMOPT_SOCKETFUNCTION, CURLMOPT_TIMERFUNCTION,
 * curl_multi_socket_action). Generic: the OAuth token fetch and the server
 * hook caller both submit requests here.
 *
 * Contract for every submitted request: when pgw_curlmulti_submit*() returns
 * 0, the completion callback is called exactly once, later, from the event
 * loop (never from inside the submit call), unless the request is cancelled
 * first with pgw_curlmulti_cancel(). When submit returns an error, the
 * callback is never called. Response bodies are capped.
 */
#ifndef PUSHGW_CURLMULTI_H
#define PUSHGW_CURLMULTI_H

#include <stddef.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "pushgw.h"

/* Response body cap when a request gives 0, and the largest cap allowed. */
#define PGW_CURLMULTI_DEFAULT_MAX_RESPONSE (1024 * 1024)
#define PGW_CURLMULTI_MAX_RESPONSE (16 * 1024 * 1024)
/* Whole-transfer timeout when a request gives 0. */
#define PGW_CURLMULTI_DEFAULT_TIMEOUT_MS 30000
/* Pending-request cap when pgw_curlmulti_new() is given 0. */
#define PGW_CURLMULTI_DEFAULT_MAX_PENDING 10000

struct pgw_curlmulti;
struct pgw_curl_req; /* one pending request; a handle for cancel only */

/* A simple request. Every pointer is borrowed for the submit call only. */
struct pgw_curl_request {
    const char *method; /* "GET", "POST", "PUT", …; NULL: POST with a body,
                         * GET without */
    const char *url;    /* http:// or https:// only */
    /* NULL-terminated list of "Name: value" lines, or NULL. */
    const char *const *headers;
    const void *body; /* may be NULL when |body_len| is 0 */
    size_t body_len;
    long timeout_ms;           /* whole transfer; 0: default */
    const char *ca_file;       /* extra trust anchor (PEM); NULL: system */
    size_t max_response_bytes; /* 0: default; at most the hard cap */
    /*
     * When not 0: at most this many requests to the URL's scheme, host
     * and port that also set it run at once, so at most that many
     * connections are open to that host (idle ones are kept for reuse);
     * the others wait, in order, up to |max_host_queue| of them, and
     * submit returns PGW_ERR_BUSY past that. |timeout_ms| counts from
     * when a request leaves the queue. Such requests never wait for
     * another request's connection to learn whether it multiplexes.
     */
    unsigned max_host_connections;
    size_t max_host_queue;
    /*
     * An HTTP proxy, "http://[user[:password]@]host:port" (proxy.h), and
     * its password when it is not in the URL; NULL: none. Every request
     * through it goes in a CONNECT tunnel, with Basic credentials when
     * the URL names a user. Without it, libcurl's environment variables
     * (https_proxy, no_proxy) apply as they always do.
     */
    const char *proxy;
    const char *proxy_password;
};

/* What the completion callback sees; valid during the callback only. */
struct pgw_curl_response {
    /* 0 when an HTTP answer arrived (any status). Otherwise
     * PGW_ERR_TIMEOUT, PGW_ERR_TLS (handshake or verification),
     * PGW_ERR_TOO_LARGE (body over the cap), PGW_ERR_IO (connect, reset,
     * protocol), PGW_ERR_NOMEM, or PGW_ERR_CLOSED (the multi was freed). */
    int err;
    long status;      /* HTTP status; 0 when no answer */
    const char *body; /* NUL-terminated (the NUL is not counted); never NULL */
    size_t body_len;
    const char *error; /* libcurl's description when |err| != 0, else "" */
    CURL *easy;        /* the transfer (for pgw_curlmulti_header()); NULL
                        * when |err| is PGW_ERR_CLOSED */
};

/* Called exactly once per request (see above). It may submit new
 * requests and cancel other pending ones; it must not free the multi. */
typedef void (*pgw_curlmulti_done_cb)(const struct pgw_curl_response *resp,
                                      void *arg);

/*
 * Creates a multi on |base| that allows |max_pending| requests at once
 * (0: PGW_CURLMULTI_DEFAULT_MAX_PENDING). Stores it in |*ret_cm| (free with
 * pgw_curlmulti_free()). Returns 0, PGW_ERR_NOMEM or PGW_ERR_IO (libcurl
 * could not be initialised).
 */
int pgw_curlmulti_new(struct event_base *base, size_t max_pending,
                      struct pgw_curlmulti **ret_cm);

/*
 * Stops every transfer, calls the callback of each pending request with
 * err = PGW_ERR_CLOSED (submits from those callbacks fail), then frees
 * |self|. NULL is a no-op. Must not be called from a completion callback.
 */
void pgw_curlmulti_free(struct pgw_curlmulti *self);

/*
 * Starts |req|. TLS peer and host verification are always on; only http
 * and https are allowed; redirects are not followed; HTTP/2 is used over
 * TLS when the server offers it. |cb| gets the answer (see above). When
 * |ret_req| is not NULL, it receives a handle valid until |cb| runs or the
 * request is cancelled.
 * Returns 0, PGW_ERR_INVAL (no url or callback, bad method, cap or proxy),
 * PGW_ERR_BUSY (max_pending reached, or the host's queue is full),
 * PGW_ERR_CLOSED (the multi is being
 * freed), PGW_ERR_NOMEM or PGW_ERR_IO.
 */
int pgw_curlmulti_submit(struct pgw_curlmulti *self,
                         const struct pgw_curl_request *req,
                         pgw_curlmulti_done_cb cb, void *arg,
                         struct pgw_curl_req **ret_req);

/* Aborts |req| (a handle from submit whose callback has not run yet); its
 * callback is never called. */
void pgw_curlmulti_cancel(struct pgw_curlmulti *self, struct pgw_curl_req *req);

/* The number of requests whose callback has not run yet (queued ones
 * included). */
size_t pgw_curlmulti_pending(const struct pgw_curlmulti *self);

/* The value of the first response header |name| (case-insensitive) of
 * |resp|, or NULL. Valid during the callback only. */
const char *pgw_curlmulti_header(const struct pgw_curl_response *resp,
                                 const char *name);

#endif
