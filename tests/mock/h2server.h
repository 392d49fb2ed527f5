/*
 * The HTTP/2-over-TLS server shared by mock_apns and mock_fcm: one
 * libevent loop, bufferevent_openssl (ALPN h2 only), nghttp2 sessions,
 * fault injection, a request record file and GET /_mock/stats. The
 * application (APNs or FCM behaviour) supplies one callback that answers a
 * complete request synchronously; the server delays, sends and counts.
 */
#ifndef PUSHGW_MOCK_H2SERVER_H
#define PUSHGW_MOCK_H2SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define MOCK_MAX_HEADERS 32
/* Request bodies above this are counted but not stored (body_overflow). */
#define MOCK_BODY_CAP (64 * 1024)
/* Bytes of per-connection storage the application may use (conn_tag). */
#define MOCK_CONN_TAG 64

struct mock_server;

/* Options common to both mocks; filled by mock_opts_parse(). */
struct mock_opts {
    const char *prog;
    const char *listen;
    const char *port_file;
    const char *cert;
    const char *key;
    const char *record;
    uint32_t max_streams;
    uint64_t lower_after;
    uint32_t lower_to;
    uint64_t goaway_after;
    uint64_t fail_every;
    int fail_status;
    const char *fail_reason;
    long retry_after; /* -1: none */
    long delay_ms;
    uint64_t close_after;
    long stall_read_ms; /* after a connection's first request, stop reading */
    bool no_ping_ack;
    bool garbage;          /* answer TLS with bytes that are not HTTP/2 */
    const char *client_ca; /* ask for client certificates issued by it */
    long tls_delay_ms;
    bool quiet;
    bool verbose;
};

struct mock_hdr {
    const char *name;
    const char *value;
    size_t valuelen;
    bool never_indexed; /* HPACK: a literal the sender asked never to index */
};

/* One complete request, and the answer the application writes into it. */
struct mock_req {
    struct mock_server *server;
    uint64_t conn_id; /* 1-based, per accepted connection */
    int32_t stream_id;
    uint64_t conn_seq;  /* n-th request on this connection */
    int64_t ts_us;      /* wall clock when the request completed, in us */
    const char *method; /* pseudo headers, "" when absent */
    const char *path;
    const char *authority;
    struct mock_hdr hdrs[MOCK_MAX_HEADERS]; /* regular headers, in order */
    int nhdrs;
    bool hdr_overflow;  /* more headers or header bytes than stored */
    const char *body;   /* NUL-terminated copy of the body */
    size_t body_len;    /* total bytes received */
    bool body_overflow; /* body_len > MOCK_BODY_CAP: body is truncated */
    char *conn_tag;     /* MOCK_CONN_TAG bytes, "" on a new connection */
    /* The subject UID of the client certificate the connection verified
     * (--client-ca), "" when it presented none. */
    const char *client_uid;
    int status; /* the answer: set by mock_req_respond() */
};

struct mock_app {
    const char *name;
    void *ctx;
    /* Answers |req|: must call mock_req_respond() (else 500). */
    void (*handle)(void *ctx, struct mock_req *req);
    /* Appends extra stats members like ",\"k\":1" into |buf|; returns len. */
    int (*stats)(void *ctx, char *buf, size_t len);
};

/* Sets the defaults. */
void mock_opts_init(struct mock_opts *o, const char *prog);
/*
 * Tries the common option |name| (e.g. "--listen") with its |value| (may
 * be NULL when the option takes none). Returns 2 when it used the value,
 * 1 when it used only the name, 0 when it is not a common option, -1 when
 * the value is missing or invalid.
 */
int mock_opts_parse(struct mock_opts *o, const char *name, const char *value);
/* The usage text of the common options. */
extern const char mock_opts_usage[];

/*
 * Runs the server until SIGTERM or SIGINT. Returns the process exit code
 * (0 after a signal, 1 on a start-up error, reported on stderr).
 */
int mock_server_run(const struct mock_opts *o, const struct mock_app *app);

/* The value of the first header |name| (lowercase) or NULL; *ret_count
 * (may be NULL) gets how many times it occurs. */
const char *mock_req_header(const struct mock_req *req, const char *name,
                            int *ret_count);
/* Sets the status and, if |body| is not NULL, a copied body. 0 or -1. */
int mock_req_respond(struct mock_req *req, int status, const char *body,
                     size_t len);
/* Adds a response header (copied; up to 8 of them). 0 or -1 if full. */
int mock_req_add_header(struct mock_req *req, const char *name,
                        const char *value);

/*
 * Counts one request toward --fail-every; returns the status to answer
 * instead (with *ret_reason) when this is the N-th one, else 0.
 */
int mock_server_fault(struct mock_server *srv, const char **ret_reason);
/* True when --record is set; the application then builds a line. */
bool mock_server_recording(const struct mock_server *srv);
/* Appends |line| and a newline to the record file, flushed. */
void mock_server_record(struct mock_server *srv, const char *line);
/*
 * Completes the record line |o| of |req| with "body" (|body| when the
 * request body parsed as JSON, else the raw text, else null), writes it
 * with mock_server_record() and frees |o|.
 */
void mock_req_record_json(struct mock_req *req, cJSON *o, const cJSON *body);
/* The bound port. */
uint16_t mock_server_port(const struct mock_server *srv);
/* Cached wall clock of the loop, in microseconds. */
int64_t mock_server_now_us(struct mock_server *srv);

/* A random lowercase canonical UUID into |out| (37 bytes). */
void mock_uuid(struct mock_server *srv, char out[37]);

#endif
