/*
 * A small blocking HTTP/2-over-TLS client for the mocks' own tests: one
 * connection, several concurrent streams, poll-based with timeouts. It
 * verifies the server certificate against a given CA file.
 */
#ifndef PUSHGW_MOCK_TCLIENT_H
#define PUSHGW_MOCK_TCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TC_MAX_STREAMS 64

struct tc_resp {
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

struct tc_conn {
    int fd;
    void *ssl_ctx;
    void *ssl;
    void *session;
    struct tc_resp resp[TC_MAX_STREAMS];
    int nresp;
    bool eof;
    bool wait_eof;
    int ping_acks;
    bool goaway;
    int32_t goaway_last;
    uint32_t goaway_code;
    char reqbodies[TC_MAX_STREAMS][8192];
};

/*
 * Connects to 127.0.0.1:|port| with TLS (ALPN h2, verified with |ca_file|,
 * SNI localhost). NULL on failure (message on stderr). *ret_ms (may be
 * NULL) gets the handshake time in ms.
 */
struct tc_conn *tc_connect(int port, const char *ca_file, double *ret_ms);
void tc_close(struct tc_conn *c);
/*
 * Submits a request. |hdrs| is a NULL-terminated list of name, value
 * pairs; |body| (copied, up to 8 KiB) may be NULL. Returns the index of
 * its tc_resp, or -1.
 */
int tc_request(struct tc_conn *c, const char *method, const char *path,
               const char *const *hdrs, const char *body, size_t len);
/* Sends a PING. */
int tc_ping(struct tc_conn *c);
/*
 * Runs I/O until every submitted stream closed, the connection ended, or
 * |timeout_ms| passed. Returns 0 when all streams closed, 1 on EOF, -1 on
 * timeout.
 */
int tc_run(struct tc_conn *c, int timeout_ms);
/* Runs I/O until the peer closes (1) or |timeout_ms| passed (-1). */
int tc_wait_eof(struct tc_conn *c, int timeout_ms);
/* The peer's current SETTINGS_MAX_CONCURRENT_STREAMS. */
uint32_t tc_remote_max_streams(struct tc_conn *c);

#endif

/* A mock server process started for a test. */
#include <sys/types.h>
struct tc_mock {
    pid_t pid;
    int port;
    char dir[256];    /* temp folder, removed by tc_mock_stop */
    char record[300]; /* the --record file */
    char out[300];    /* the child's stdout */
};

/*
 * Starts |bin| with --cert/--key from |certs_dir|, --port-file, --record
 * and --quiet, plus |args| (NULL-terminated); waits for the port. 0 or -1.
 */
int tc_mock_start(struct tc_mock *m, const char *bin, const char *certs_dir,
                  const char *const *args);
/* Sends |sig| and waits; returns the exit status (or 128+signal), -1 if
 * it did not exit within 10 s. Keeps the folder. */
int tc_mock_signal_wait(struct tc_mock *m, int sig);
/* SIGTERM, wait, remove the folder; returns the exit status as above. */
int tc_mock_stop(struct tc_mock *m);
/* Reads a whole file (malloc'd) or NULL. */
char *tc_read_file(const char *path);
