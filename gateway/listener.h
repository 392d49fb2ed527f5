/*
 * One HTTP/1.1 listener (libevent's evhttp) with a route table: the
 * webhook, the admin listener and every later HTTP API are a listener
 * plus the routes their modules register. New APIs add routes, never a
 * branch in someone else's switch.
 *
 * A listener owns: the bound socket (|address|, "host:port" or
 * "[v6]:port"; port 0 picks one), TLS when a certificate and key are
 * given, the slow-client guards (a read/write timeout per connection and
 * a deadline per request, both |timeout_ms|: a client trickling a request
 * is closed like an idle one), the header and body limits, and the
 * answers to everything no route takes:
 *   unknown path                    404 {"error":"not found","field":""}
 *   method the path's routes lack   405, Allow: the methods they take
 *   body over |max_body_bytes|      413 {"error":"body over N bytes",…},
 *                                   declared or chunked, before it is read
 *   repeated or invalid Content-Length, repeated Transfer-Encoding, or
 *   both                            400, field "Content-Length" (or
 *                                   "Transfer-Encoding")
 *   headers over |max_header_bytes| 431
 *   after pgw_listener_close()      503 "shutting down", Connection: close
 * Every answer the listener makes itself is JSON with "error" and "field"
 * (pgw_listener_send_error()); the 400s, 413s and 431s close the
 * connection (its next bytes cannot be trusted) and are reported to
 * |refused| first (for counting), with the route that matched.
 *
 * Routes. A pattern is a path of '/'-separated segments; a segment
 * "{name}" matches one non-empty segment and captures it,
 * percent-decoded, into pgw_route_match.ids[] (in order; NULL when the
 * decoded value is empty, longer than PGW_LISTENER_MAX_ID_BYTES or holds
 * a NUL: the route still matches and the handler refuses it). So
 * "/1.1/installations" is one exact path and "/1.1/installations/{id}"
 * its prefix with an id tail; "/v1/apps/{appId}/receivers-offline" has
 * one in the middle. Routes are tried in the order registered; the query
 * string is not part of the path (evhttp_request_get_evhttp_uri()).
 *
 * Handlers (the contract):
 * - Thread: a handler runs on the thread of the listener's |base| (the
 *   webhook's: the intake thread; the admin listener's: the main loop).
 *   A listener on the main loop may call the store, the dispatcher and
 *   the metrics directly; a listener on another thread may not.
 * - Answer exactly once, with evhttp_send_reply() or the helpers below:
 *   now, on the listener's thread (pgw_listener_send_json(),
 *   pgw_listener_send_error()), or later from any thread
 *   (pgw_listener_reply_json(), pgw_listener_reply_error(): the answer is
 *   posted to the listener's thread and sent there).
 * - The request (struct evhttp_request) is evhttp's: it frees it once the
 *   answer is written (or the listener is freed). Never free it; never
 *   use it after answering; across threads pass the pointer only, never
 *   touch it outside the listener's thread. A request whose client went
 *   away stays valid until answered.
 * - The body is whole when the handler runs, at most |max_body_bytes|
 *   (pgw_listener_body()); headers with evhttp_request_get_input_headers().
 * - Work for the main loop from another thread: wrap it in a struct that
 *   embeds struct pgw_xmsg (xqueue.h), post it to a mailbox read by the
 *   main loop (pgw_xqueue_post()), do the work there, and answer from
 *   there with pgw_listener_reply_*() and the request's pointer. Keep the
 *   listener alive until every such answer has been posted: the owner
 *   stops the thread, drains the main-side mailbox (answering what is
 *   left, e.g. 503), and only then frees the listener, which sends the
 *   answers still queued.
 *
 * Create, register every route, then run the base's loop: routes are
 * read without a lock. Free on the listener's thread, or on any thread
 * once that thread's loop has stopped for good.
 */
#ifndef PUSHGW_LISTENER_H
#define PUSHGW_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct evbuffer;
struct evhttp_request;
struct pgw_listener;

/* Longest decoded {id} segment; longer ones are captured as NULL. */
#define PGW_LISTENER_MAX_ID_BYTES 256
/* {…} segments per pattern. */
#define PGW_LISTENER_MAX_IDS 4
/* evhttp's own body limit, above ours so that ours acts first. */
#define PGW_LISTENER_BODY_SLACK (64 * 1024)
#define PGW_LISTENER_RETRY_AFTER_DOWN "5"

/* Method bits: evhttp's EVHTTP_REQ_* values (event2/http.h). */

struct pgw_route_match {
    const char *path;                      /* the request's path */
    const char *ids[PGW_LISTENER_MAX_IDS]; /* see "Routes" */
    size_t n_ids;
};

/* A route's handler; |m| is valid during the call only. */
typedef void (*pgw_route_fn)(struct evhttp_request *req,
                             const struct pgw_route_match *m, void *ctx);

/*
 * Called on the listener's thread just before the listener itself
 * refuses a request that matched a route with |code| (400, 413 or 431,
 * see above), so the route's owner can count it; |ctx| is the route's.
 */
typedef void (*pgw_listener_refused_fn)(void *arg, struct evhttp_request *req,
                                        const struct pgw_route_match *m,
                                        void *ctx, int code);

struct pgw_listener_options {
    struct event_base *base;   /* handlers run on its thread */
    const char *name;          /* for log lines: "webhook", "admin", "client" */
    const char *address;       /* host:port */
    const char *tls_cert_file; /* PEM chain; NULL or "": plain HTTP */
    const char *tls_key_file;  /* PEM key; with tls_cert_file */
    unsigned timeout_ms;       /* idle and per-request; 0: 15000 */
    size_t max_header_bytes;   /* 0: 16384 */
    size_t max_body_bytes;     /* 0: 1048576 */
    /* Open connections; over it the one idle the longest is closed, and
     * with none idle the listener stops accepting until one closes or goes
     * idle. 0: no cap. */
    size_t max_connections;
    pgw_listener_refused_fn refused; /* may be NULL */
    void *refused_arg;
};

/*
 * Binds |opts->address| on |opts->base|, loads the TLS certificate when
 * given, and logs one line ("<name> listener started", with the address,
 * port and TLS). Errors, each logged once: PGW_ERR_CONFIG (bad address),
 * PGW_ERR_TLS (certificate or key unusable), PGW_ERR_IO (bind failed),
 * PGW_ERR_INVAL (missing options), PGW_ERR_NOMEM.
 */
int pgw_listener_new(const struct pgw_listener_options *opts,
                     struct pgw_listener **ret_l);

/*
 * Adds a route: requests whose path matches |pattern| and whose method is
 * in |methods| (EVHTTP_REQ_* bits) go to |fn| with |ctx|. |pattern| is
 * copied. Before the loop runs only (see above). Errors: PGW_ERR_INVAL
 * (a malformed pattern, more than PGW_LISTENER_MAX_IDS ids, no methods),
 * PGW_ERR_NOMEM.
 */
int pgw_listener_route(struct pgw_listener *self, unsigned methods,
                       const char *pattern, pgw_route_fn fn, void *ctx);

/*
 * Any thread: true while the listener does not accept: at
 * |max_connections| with none idle, or paused after accept() ran out of
 * file descriptors with none idle to close (EMFILE, ENFILE: it closes the
 * connection idle the longest, else pauses 250 ms; one log line per
 * 10 s).
 */
bool pgw_listener_saturated(const struct pgw_listener *self);

/* The bound port, or -1 once closed. Any thread. */
int pgw_listener_port(const struct pgw_listener *self);

/*
 * Listener's thread: later bodies are limited to |max_body_bytes| (0:
 * 1048576) — a SIGHUP reload.
 */
void pgw_listener_set_max_body(struct pgw_listener *self,
                               size_t max_body_bytes);

/*
 * Listener's thread: stops accepting (the socket closes); requests on
 * connections still open are answered 503 "shutting down" with
 * Connection: close. Idempotent.
 */
void pgw_listener_close(struct pgw_listener *self);

/* ---- answering ---------------------------------------------------------- */

/* Appends |s| to |buf| as a JSON string (quotes included); -1 without
 * memory. */
int pgw_listener_json_string(struct evbuffer *buf, const char *s);

/* The whole body (contiguous; "" when empty) and its length. */
const char *pgw_listener_body(struct evhttp_request *req, size_t *ret_len);

/* Listener's thread: answers |code| with |body| (may be NULL: empty) as
 * application/json. |body| stays the caller's (it is drained). */
void pgw_listener_send_json(struct evhttp_request *req, int code,
                            struct evbuffer *body);

/*
 * Listener's thread: answers |code| with {"error":|error|,"field":|field|}
 * (|field| NULL: ""), and Retry-After: |retry_after| unless NULL. Out of
 * memory: the status with an empty body.
 */
void pgw_listener_send_error(struct evhttp_request *req, int code,
                             const char *error, const char *field,
                             const char *retry_after);

/*
 * Any thread: the answer to |req| (a request of this listener), sent
 * later on the listener's thread. |json| is taken (freed by the
 * listener). |close| adds Connection: close. |retry_after| must be a
 * static string. Out of memory: logged, and the request is left to its
 * connection's deadline.
 */
void pgw_listener_reply_json(struct pgw_listener *self,
                             struct evhttp_request *req, int code,
                             struct evbuffer *json, bool close);
void pgw_listener_reply_error(struct pgw_listener *self,
                              struct evhttp_request *req, int code,
                              const char *error, const char *field,
                              const char *retry_after, bool close);

/*
 * Closes the socket and every connection; the answers still queued by
 * pgw_listener_reply_*() are sent first (best effort: the connections
 * then close). See above for the thread. NULL is a no-op.
 */
void pgw_listener_free(struct pgw_listener *self);

#endif
