/* The mock server processes (see tu_mock.h). */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CERTS PUSHGW_TEST_CERTS_DIR

const char *const tu_mock_apns_bin = TU_MOCK_APNS_BIN;
const char *const tu_mock_fcm_bin = TU_MOCK_FCM_BIN;
const char *const tu_hook_server_bin = TU_HOOK_SERVER_BIN;
const char *const tu_mkjwt_bin = TU_MKJWT_BIN;
const char *const tu_connect_proxy_bin = TU_CONNECT_PROXY_BIN;
const char *const tu_certs_dir = CERTS;
const char *const tu_ca_file = CERTS "/ca.pem";

/* The longest command line: the fixed part and the caller's. */
#define MOCK_MAX_ARGS 64
/* Restarts on a port that the previous process may still hold. */
#define MOCK_RESTART_TRIES 50

static const char *const apns_accounts[] = {
    "--team", "TEAM000001:KEY0000001:" CERTS "/AuthKey_KEY0000001.pub.pem",
    "--team", "TEAM000002:KEY0000002:" CERTS "/AuthKey_KEY0000002.pub.pem",
    NULL};
static const char *const fcm_accounts[] = {
    "--service-account-pub",
    CERTS "/fcm-sa.pub.pem",
    "--client-email",
    "pushgw@pushgw-test.iam.gserviceaccount.com",
    "--project",
    "pushgw-test",
    NULL};

static const char *kind_name(enum tu_mock_kind kind)
{
    switch (kind) {
    case TU_MOCK_APNS:
        return "apns";
    case TU_MOCK_FCM:
        return "fcm";
    case TU_MOCK_HOOK:
        return "hook";
    case TU_MOCK_PROXY:
        return "proxy";
    }
    return "mock";
}

static void add(const char **argv, size_t *n, const char *arg)
{
    if (*n + 1 >= MOCK_MAX_ARGS)
        fail_msg("mock command line too long");
    argv[(*n)++] = arg;
    argv[*n] = NULL;
}

static void add_all(const char **argv, size_t *n, const char *const *args)
{
    for (size_t i = 0; args && args[i]; i++)
        add(argv, n, args[i]);
}

/* Starts the process once; true when it listens on |port| (any when 0). */
static bool spawn_once(struct tu_mock *m, int port, const char *const *args)
{
    const char *argv[MOCK_MAX_ARGS];
    char listen[64], cert[512], key[512];
    size_t n = 0;
    int got = -1;
    int status;
    bool exited = false;

    argv[0] = NULL;
    unlink(m->port_file);
    if (m->kind == TU_MOCK_HOOK) {
        add(argv, &n, tu_hook_server_bin);
    } else if (m->kind == TU_MOCK_PROXY) {
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        add(argv, &n, tu_connect_proxy_bin);
        add(argv, &n, "--listen");
        add(argv, &n, listen);
    } else {
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        snprintf(cert, sizeof(cert), "%s/%s.pem", CERTS, m->cert);
        snprintf(key, sizeof(key), "%s/%s.key", CERTS, m->cert);
        add(argv, &n,
            m->kind == TU_MOCK_APNS ? tu_mock_apns_bin : tu_mock_fcm_bin);
        add(argv, &n, "--listen");
        add(argv, &n, listen);
        add(argv, &n, "--cert");
        add(argv, &n, cert);
        add(argv, &n, "--key");
        add(argv, &n, key);
        add(argv, &n, "--quiet");
        if (m->accounts)
            add_all(argv, &n,
                    m->kind == TU_MOCK_APNS ? apns_accounts : fcm_accounts);
    }
    add(argv, &n, "--port-file");
    add(argv, &n, m->port_file);
    add(argv, &n, "--record");
    add(argv, &n, m->record);
    add_all(argv, &n, args);
    m->pid = tu_spawn(argv, m->log);
    assert_true(m->pid > 0);
    /* Ready when the port file is written; gone when it exited. */
    TU_POLL_UNTIL((got = tu_wait_port_file(m->port_file, 0)) > 0 ||
                      (exited = waitpid(m->pid, &status, WNOHANG) == m->pid),
                  TU_START_MS);
    if (got > 0 && (port == 0 || got == port)) {
        m->port = got;
        snprintf(m->url, sizeof(m->url), "%s://127.0.0.1:%d",
                 m->kind == TU_MOCK_HOOK || m->kind == TU_MOCK_PROXY ? "http"
                                                                     : "https",
                 got);
        return true;
    }
    if (!exited)
        tu_stop(m->pid, SIGKILL);
    m->pid = 0;
    return false;
}

static void fail_with_log(const struct tu_mock *m)
{
    char *log = tu_read_file(m->log);

    fail_msg("mock %s did not start: %s", kind_name(m->kind),
             log ? log : "(no log)");
}

void tu_mock_start(struct tu_mock *m, enum tu_mock_kind kind,
                   const struct tu_mock_options *o)
{
    static const struct tu_mock_options none;
    const char *name;
    char file[128];

    if (!o)
        o = &none;
    name = o->name ? o->name : kind_name(kind);
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    m->accounts = o->accounts;
    m->cert = strdup(o->cert ? o->cert : "server");
    m->own_dir = !o->dir;
    m->dir = o->dir ? strdup(o->dir) : tu_mkdtemp();
    assert_non_null(m->cert);
    assert_non_null(m->dir);
    snprintf(file, sizeof(file), "%s.jsonl", name);
    m->record = tu_path(m->dir, file);
    snprintf(file, sizeof(file), "%s.log", name);
    m->log = tu_path(m->dir, file);
    snprintf(file, sizeof(file), "%s.port", name);
    m->port_file = tu_path(m->dir, file);
    if (!spawn_once(m, o->port, o->args))
        fail_with_log(m);
}

int tu_mock_signal(struct tu_mock *m, int sig)
{
    int rc = -1;

    if (m->pid > 0)
        rc = tu_stop(m->pid, sig);
    m->pid = 0;
    return rc;
}

void tu_mock_kill(struct tu_mock *m)
{
    tu_mock_signal(m, SIGKILL);
}

void tu_mock_restart(struct tu_mock *m, int port, const char *const *args)
{
    tu_mock_kill(m);
    for (int i = 0; i < MOCK_RESTART_TRIES; i++) {
        if (spawn_once(m, port, args))
            return;
        tu_sleep_ms(100);
    }
    fail_with_log(m);
}

int tu_mock_stop(struct tu_mock *m)
{
    int rc = tu_mock_signal(m, SIGTERM);

    if (m->own_dir && m->dir && getenv("PUSHGW_TEST_KEEP") == NULL)
        tu_rm_rf(m->dir);
    free(m->dir);
    free(m->record);
    free(m->log);
    free(m->port_file);
    free(m->cert);
    memset(m, 0, sizeof(*m));
    return rc;
}
