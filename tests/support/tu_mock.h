/*
 * The mock servers of tests/mock (APNs and FCM: HTTP/2 over TLS) and the
 * hook server of tests/service (HTTP/1.1), started as processes on
 * loopback. This is the one way tests start them.
 */
#ifndef PUSHGW_TU_MOCK_H
#define PUSHGW_TU_MOCK_H

#include <stdbool.h>

enum tu_mock_kind {
    TU_MOCK_APNS,
    TU_MOCK_FCM,
    TU_MOCK_HOOK,
    TU_MOCK_PROXY, /* tests/mock/connect_proxy.c: HTTP CONNECT, plain TCP */
};

struct tu_mock {
    enum tu_mock_kind kind;
    int pid;      /* 0 when not running */
    int port;     /* the port it listens on */
    char url[64]; /* https://127.0.0.1:<port> (http:// for hook, proxy) */
    char *dir;    /* the folder of its files */
    char *record; /* one JSON line per request (tu_records.h) */
    char *log;    /* its stdout and stderr */
    /* private */
    char *port_file;
    char *cert;
    bool own_dir;
    bool accounts;
};

struct tu_mock_options {
    /* Where its files go, as <name>.jsonl, .log and .port; NULL: a new
     * temporary folder, removed by tu_mock_stop(). */
    const char *dir;
    const char *name; /* NULL: "apns", "fcm", "hook" or "proxy" */
    int port;         /* 0: any free port */
    /* The TLS certificate: <cert>.pem and <cert>.key of the test PKI
     * (PUSHGW_TEST_CERTS_DIR); NULL: "server". */
    const char *cert;
    /* The test PKI's accounts: APNs teams TEAM000001 and TEAM000002, the
     * FCM service account of project pushgw-test. */
    bool accounts;
    const char *const *args; /* more arguments (NULL-terminated) or NULL */
};

/* The mock binaries of this build tree. */
extern const char *const tu_mock_apns_bin;
extern const char *const tu_mock_fcm_bin;
extern const char *const tu_hook_server_bin;
extern const char *const tu_mkjwt_bin;
extern const char *const tu_connect_proxy_bin;
/* The test PKI's folder and its CA certificate. */
extern const char *const tu_certs_dir;
extern const char *const tu_ca_file;

/*
 * Starts a mock of |kind| with options |o| (NULL: defaults) and waits
 * until it listens; fails the test, with the mock's log, if it does not.
 */
void tu_mock_start(struct tu_mock *m, enum tu_mock_kind kind,
                   const struct tu_mock_options *o);
/* Sends |sig| and waits for the mock to exit (SIGKILL after 10 s);
 * returns its exit status, 128+signal when a signal ended it. Keeps its
 * files. */
int tu_mock_signal(struct tu_mock *m, int sig);
/* Kills the mock at once (SIGKILL), keeping its files. */
void tu_mock_kill(struct tu_mock *m);
/*
 * Starts the mock again after tu_mock_kill() or tu_mock_signal(), on
 * |port| (0: any), with the same record and log files and |args| instead
 * of the first start's extra arguments. Retries while the port is still
 * held by the previous process.
 */
void tu_mock_restart(struct tu_mock *m, int port, const char *const *args);
/* Stops the mock (SIGTERM) if it runs, removes its folder if it made one
 * and frees |m|'s strings. Returns the exit status as tu_mock_signal(),
 * or -1 when it was not running. */
int tu_mock_stop(struct tu_mock *m);

#endif
