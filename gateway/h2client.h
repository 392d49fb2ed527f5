/*
 * h2client: a pool of HTTP/2 client connections over TLS to one origin,
 * driven by a libevent loop (bufferevent_openssl + nghttp2). Shared by the
 * apns and fcm modules; all nghttp2 code of the gateway lives here.
 *
 * Behaviour (DESIGN §11 "Connections"):
 * - TLS 1.2 or later, ALPN "h2" required, SNI for host names, peer
 *   verification always on: the system trust store plus |ca_file| when
 *   given; the certificate must match the origin's host name or IP address.
 * - The host is resolved with evdns afresh for every new connection; each
 *   address is tried in turn; |connect_timeout_ms| bounds DNS + TCP + TLS.
 * - With |proxy|, the proxy's name is resolved instead, and on the TCP
 *   connection to it a CONNECT host:port (Proxy-Authorization: Basic when
 *   it has credentials) opens a tunnel, then TLS (SNI and verification
 *   for the origin's host) and HTTP/2 run inside it as above. Any answer
 *   but 2xx is a failed connection attempt, logged with the proxy's
 *   status and reason; |connect_timeout_ms| bounds the whole.
 * - |connections| connections are opened on demand (at the first request)
 *   and kept: the minimum. Requests go to the ready connection with the
 *   fewest streams. While every stream of the ready connections is busy
 *   and requests wait, more are opened, as many at once as are ready and
 *   only while none is being set up, up to |max_connections|, provided the
 *   streams turn over (as many answers since the last growth as the ready
 *   connections take at once: a provider that hardly answers gets no
 *   more connections, only more waiting requests would). A connection
 *   above the minimum whose streams the others could have carried for a
 *   whole |idle_close_ms| (at most three quarters of their streams in use
 *   at the busiest moment, no request waiting) takes no new streams, sends
 *   GOAWAY(NO_ERROR) and closes once its last stream ends.
 * - Each new connection resolves the host afresh and starts at the
 *   address the pool's live connections use least, then tries the others
 *   in turn: connections spread over the provider's addresses.
 * - Per connection, never more streams than the peer's current
 *   SETTINGS_MAX_CONCURRENT_STREAMS (followed as it changes, down to 1) and
 *   |max_streams_per_conn|; requests beyond that wait in the pool's FIFO
 *   queue of at most |max_pending| requests (over it: PGW_H2_BUSY).
 * - A PING is sent after |ping_idle_ms| without any frame received; no
 *   answer within |ping_timeout_ms| declares the connection dead.
 * - GOAWAY: streams up to last-stream-id finish; the ones above it (and
 *   REFUSED_STREAM resets) are requeued automatically, up to
 *   |max_refused_retries| times per request, then reported PGW_H2_REFUSED.
 *   A request whose HEADERS never left before its connection died is
 *   requeued the same way (it cannot have been processed).
 * - After a failed connection attempt a slot waits 1 s, doubling to 60 s,
 *   with +-20 % jitter, before it connects again; success resets it.
 * - Receive windows: 16 MiB per connection and 1 MiB per stream, far above
 *   bandwidth x delay for answers (100,000 a second of about 100 bytes,
 *   200 ms away: 2 MB); what we send follows the peer's windows.
 * - Output is produced by nghttp2_session_mem_send into the bufferevent
 *   once per loop iteration, in 16 KiB pieces (full TLS records, h2out.h),
 *   and stops while more than 1 MiB is unwritten.
 * - :path and authorization headers (and any header flagged |no_index|)
 *   are sent as literal header fields without indexing.
 *
 * Single-threaded: every function must be called from the thread running
 * |base|. Connection-level events (connect failure with its reason, GOAWAY,
 * dead connection) are logged once each, prefixed with |name|; nothing is
 * logged per successful request.
 */
#ifndef PUSHGW_H2CLIENT_H
#define PUSHGW_H2CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct pgw_h2_pool;
struct pgw_tls_identity;

/* Defaults used when an option is 0 / NULL. */
#define PGW_H2_DEFAULT_CONNECTIONS 2
#define PGW_H2_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define PGW_H2_DEFAULT_REQUEST_TIMEOUT_MS 10000
#define PGW_H2_DEFAULT_PING_IDLE_MS 60000
#define PGW_H2_DEFAULT_PING_TIMEOUT_MS 10000
#define PGW_H2_DEFAULT_MAX_PENDING 100000
#define PGW_H2_DEFAULT_MAX_STREAMS 1000
#define PGW_H2_DEFAULT_MAX_RESPONSE_BODY 16384
#define PGW_H2_DEFAULT_MAX_REFUSED_RETRIES 10
#define PGW_H2_DEFAULT_IDLE_CLOSE_MS 60000
#define PGW_H2_MAX_CONNECTIONS 1000 /* connections, max_connections */

/* Hard limits on what a peer can make us keep. */
#define PGW_H2_MAX_RESPONSE_HEADERS 32
#define PGW_H2_MAX_HEADER_BYTES 8192 /* sum of name + value lengths */

struct pgw_h2_pool_options {
    /* "https://host[:port]" (port 443 by default); IPv6 as "[::1]:port".
     * Required. Only the https scheme is accepted. */
    const char *origin;
    /* Extra trust anchors (PEM file) on top of the system store; NULL or
     * "" for none. Verification itself cannot be turned off. */
    const char *ca_file;
    /* Prefix for log messages, e.g. "apns/production/TEAM000001"; NULL:
     * the origin. */
    const char *name;
    unsigned connections; /* the minimum; 0: PGW_H2_DEFAULT_... */
    /* The bound when saturated; 0 or below |connections|: |connections|
     * (a fixed pool). */
    unsigned max_connections;
    /* How long a connection above the minimum must have been unneeded
     * before it closes; 0: PGW_H2_DEFAULT_IDLE_CLOSE_MS. */
    unsigned idle_close_ms;
    unsigned connect_timeout_ms; /* DNS + TCP + TLS; 0: default */
    /* From submit to the final answer, queueing included; 0: default. */
    unsigned request_timeout_ms;
    unsigned ping_idle_ms;         /* 0: default */
    unsigned ping_timeout_ms;      /* 0: default */
    size_t max_pending;            /* queued, not yet on a stream; 0: dflt */
    unsigned max_streams_per_conn; /* our own cap; 0: default */
    size_t max_response_body;      /* bytes kept; the rest is dropped */
    unsigned max_refused_retries;  /* 0: default; see above */
    /* Reconnect backoff; 0: 1000 and 60000 (tests shorten them). */
    unsigned backoff_initial_ms;
    unsigned backoff_max_ms;
    /* A client certificate every connection presents (TLS client
     * authentication, e.g. APNs certificates); NULL: none. Used only while
     * pgw_h2_pool_new() runs: the pool keeps OpenSSL's own references. */
    const struct pgw_tls_identity *identity;
    /* An HTTP proxy every connection tunnels through with CONNECT,
     * "http://[user[:password]@]host:port" (proxy.h); NULL or "": none.
     * |proxy_password| (NULL: none) is the password when it is not in the
     * URL. Neither appears in a log line. */
    const char *proxy;
    const char *proxy_password;
};

struct pgw_h2_header {
    const char *name; /* lowercase */
    const char *value;
    size_t name_len;  /* 0: strlen(name) */
    size_t value_len; /* 0: strlen(value) */
    int no_index;     /* send as a literal without indexing */
    /* Indexed on the first request of a connection that has index-once
     * headers, a literal without indexing on the later ones: Apple's advice
     * for apns-id, apns-expiration and apns-collapse-id, whose values
     * change from push to push and would otherwise fill APNs' small
     * HPACK table (its name stays indexed). Ignored with |no_index|. */
    int index_once;
};

struct pgw_h2_request {
    const char *method; /* "POST" */
    const char *path;   /* ":path", e.g. "/3/device/<token>"; never indexed */
    const struct pgw_h2_header *headers; /* |n_headers| extra headers */
    size_t n_headers;
    const void *body; /* may be NULL when |body_len| is 0 */
    size_t body_len;
};

enum pgw_h2_result_kind {
    /* The peer answered: |status|, |headers|, |body| are set. */
    PGW_H2_RESPONSE = 0,
    /* The peer did not process it (GOAWAY above last-stream-id or
     * REFUSED_STREAM, after the automatic retries): safe to retry. */
    PGW_H2_REFUSED,
    /* No answer within request_timeout_ms (it may have been processed). */
    PGW_H2_TIMEOUT,
    /* The connection died while the request was on it (may have been
     * processed), or the peer reset the stream. */
    PGW_H2_CONN_LOST,
    /* The pending queue was full; nothing was sent. */
    PGW_H2_BUSY,
    /* No connection could be established (DNS, TCP, proxy, TLS,
     * verification, ALPN); |error| says why. Nothing was sent. */
    PGW_H2_CONNECT_FAILED,
    /* pgw_h2_pool_free() ran before the request finished. */
    PGW_H2_CANCELLED,
};

struct pgw_h2_result {
    enum pgw_h2_result_kind kind;
    int status; /* PGW_H2_RESPONSE: the :status; otherwise 0 */
    /* PGW_H2_RESPONSE: the response headers (pseudo-headers excluded),
     * at most PGW_H2_MAX_RESPONSE_HEADERS; NUL-terminated strings. */
    const struct pgw_h2_header *headers;
    size_t n_headers;
    /* PGW_H2_RESPONSE: the body, NUL-terminated, at most
     * max_response_body bytes; |body_truncated| when more came. */
    const char *body;
    size_t body_len;
    int body_truncated;
    /* Other kinds: a one-line reason ("could not connect to
     * 'host:443': certificate verify failed: …"); "" otherwise. */
    const char *error;
};

/*
 * Called exactly once per submitted request, never from inside
 * pgw_h2_pool_submit() (always from the loop, or from pgw_h2_pool_free()
 * with PGW_H2_CANCELLED). |result| and everything it points to is valid
 * only during the call. The callback may submit new requests to the same
 * pool; it must not free the pool.
 */
typedef void (*pgw_h2_cb)(void *arg, const struct pgw_h2_result *result);

/*
 * The resolver the pools share: the name servers of /etc/resolv.conf and
 * the names of /etc/hosts. Without a readable resolv.conf (a bare
 * container) /etc/hosts and numeric addresses still work. NULL when out of
 * memory. Free with evdns_base_free(dns, 0).
 */
struct evdns_base *pgw_h2_dns_new(struct event_base *base);

/*
 * Creates a pool on |base|, resolving names with |dns| (both must outlive
 * the pool). |opts| is copied (strings too). No connection is opened
 * before the first request. Free with pgw_h2_pool_free().
 * Errors: PGW_ERR_INVAL (bad origin, proxy or options), PGW_ERR_TLS (ca_file
 * unreadable or TLS context setup failed), PGW_ERR_NOMEM.
 */
int pgw_h2_pool_new(struct event_base *base, struct evdns_base *dns,
                    const struct pgw_h2_pool_options *opts,
                    struct pgw_h2_pool **ret_pool);

/*
 * Queues |req| (copied entirely: the caller may free it on return) and
 * arranges for |cb|(|arg|, result) to run exactly once later.
 * Returns 0, or PGW_ERR_INVAL (no method/path, header over the limits),
 * PGW_ERR_NOMEM, PGW_ERR_CLOSED (pool being freed): then |cb| never runs.
 * A full queue is not an error: |cb| gets PGW_H2_BUSY.
 */
int pgw_h2_pool_submit(struct pgw_h2_pool *self,
                       const struct pgw_h2_request *req, pgw_h2_cb cb,
                       void *arg);

struct pgw_h2_pool_stats {
    /* Connections now, by state. */
    unsigned conns_connecting; /* resolving, TCP or TLS handshake */
    unsigned conns_ready;      /* accepting new streams */
    unsigned conns_draining;   /* GOAWAY received or closing */
    unsigned slots_backoff;    /* waiting before the next attempt */
    size_t in_flight;          /* requests on a stream */
    size_t pending;            /* requests queued */
    /* Totals since creation. */
    uint64_t connects_ok;
    uint64_t connect_failures;
    uint64_t goaways;
    uint64_t dead_connections; /* PING unanswered */
    uint64_t conns_lost;       /* closed by the peer or an I/O error */
    uint64_t requests_retried; /* requeued after refused/unsent */
    uint64_t responses;
    uint64_t timeouts;
    uint64_t timeouts_unsent; /* of those, before their HEADERS went out */
    /* Streams the ready connections take at once: what can be in flight
     * without waiting in the queue. */
    size_t capacity;
    /* Connections opened above the minimum because the pool was
     * saturated, and those closed again as unneeded (totals). */
    uint64_t conns_added;
    uint64_t conns_retired;
    /* The path's round trip: the smallest of the ready connections' TCP
     * minimum RTTs, in µs, as of the last tick; 0 while unknown. */
    uint32_t min_rtt_us;
};

/*
 * Whether a saturated pool (every stream busy, requests waiting) should open
 * more connections, from one request's answer: |answer_us|, its time from
 * being sent to its answer, and |busy_us|, the time the loop thread ran or
 * waited for a CPU over that same span. A saturated pool sends about each of
 * its streams once per answer's latency, so |busy_us| is the time it takes to
 * fill them. Grows when the answer took at least twice that: the thread sat
 * idle for half the round trip (a far provider, or one slow to answer), so more
 * streams raise the rate. Answers that come back about as fast as the thread
 * can send (a near provider, the thread busy) mean more connections only cost
 * CPU and memory. No sample (|answer_us| 0): false. Pure.
 */
bool pgw_h2_pool_should_grow(uint64_t answer_us, uint64_t busy_us);

/* Fills |ret_stats| (never fails). */
void pgw_h2_pool_stats(const struct pgw_h2_pool *self,
                       struct pgw_h2_pool_stats *ret_stats);

/* The last connection failure ("" when none); valid until the next call
 * into the pool. */
const char *pgw_h2_pool_last_error(const struct pgw_h2_pool *self);

/*
 * Closes every connection and completes every outstanding request with
 * PGW_H2_CANCELLED (callbacks run inside this call; they must not submit).
 * NULL is a no-op. Must not be called from inside a pgw_h2_cb.
 */
void pgw_h2_pool_free(struct pgw_h2_pool *self);

/* Case-insensitive lookup of a response header; NULL when absent. */
const char *pgw_h2_result_header(const struct pgw_h2_result *result,
                                 const char *name);

/* A static name for |kind| ("response", "refused", "timeout",
 * "connection_lost", "busy", "connect_failed", "cancelled"). */
const char *pgw_h2_result_kind_name(enum pgw_h2_result_kind kind);

#endif
