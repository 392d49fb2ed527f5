/*
 * The app's server hook (DESIGN §7.1, §15.1): POSTs the LeanCloud
 * _receiversOffline parameters to [app:*] server_hook_url with
 * X-LC-Hook-Key and the app's LeanCloud identity (X-LC-Id, and X-LC-Sign
 * made with the master key, else X-LC-Key with the app key), so that a
 * stock LeanEngine app accepts the call, through curlmulti on the loop,
 * and parses the answer.
 * The body is pgw_event_hook_request()'s. The caller fails open: any
 * result but PGW_HOOK_OK means "go on as without a hook".
 */
#ifndef PUSHGW_HOOK_H
#define PUSHGW_HOOK_H

#include "config.h"
#include "curlmulti.h"
#include "event.h"
#include "resolve.h"

enum pgw_hook_result {
    PGW_HOOK_OK = 0,       /* 2xx with a valid answer */
    PGW_HOOK_HTTP_ERROR,   /* non-2xx */
    PGW_HOOK_TIMEOUT,      /* no answer within server_hook_timeout_ms */
    PGW_HOOK_BAD_ANSWER,   /* 2xx but not a valid answer */
    PGW_HOOK_UNREACHABLE,  /* connection, TLS or local failure */
    PGW_HOOK_UNAUTHORIZED, /* 401: the hook refuses pushgw's identity */
    PGW_HOOK_QUEUE_FULL,   /* not called: PGW_HOOK_MAX_QUEUED were waiting */
};

/*
 * Calls to one hook host (scheme, host, port) beyond [app:*]
 * server_hook_connections wait for a free connection, at most this many
 * of them; a call past that is not made (pgw_hook_call() returns
 * PGW_ERR_BUSY) and the event goes on without the hook. The timeout of a
 * call counts from when it is sent.
 */
#define PGW_HOOK_MAX_QUEUED 4096

/* After this many 401 answers in a row from one app's hook,
 * pgw_hook_authorized() says so (until that hook answers otherwise). */
#define PGW_HOOK_UNAUTHORIZED_NOT_READY 3

/* "ok", "http_error", "timeout", "bad_answer", "unreachable",
 * "unauthorized", "queue_full": the result label of pushgw_hook_requests_total.
 */
const char *pgw_hook_result_name(enum pgw_hook_result r);

/*
 * |answer| is set (and owned by the callee: free it with
 * pgw_resolve_hook_answer_free()) only when |result| is PGW_HOOK_OK.
 * |detail| is a one-line reason for logs ("" on success).
 */
typedef void (*pgw_hook_cb)(void *arg, enum pgw_hook_result result,
                            struct pgw_hook_answer *answer, const char *detail);

/*
 * Calls the hook of |app| (which must have a server_hook_url) for |ev|.
 * |ca_file| is an extra trust anchor for https hooks (NULL: system).
 * |cb| runs exactly once, later, from the loop. Returns 0, or
 * PGW_ERR_BUSY (the host's queue is full: count it as PGW_HOOK_QUEUE_FULL),
 * PGW_ERR_NOMEM or PGW_ERR_INVAL (then |cb| never runs and the caller goes
 * on without the hook).
 */
int pgw_hook_call(struct pgw_curlmulti *cm, const struct pgw_app *app,
                  const struct pgw_event *ev,
                  const struct pgw_event_limits *lim, const char *ca_file,
                  pgw_hook_cb cb, void *arg);

/*
 * For /readyz: false when some app's hook answered the last
 * PGW_HOOK_UNAUTHORIZED_NOT_READY calls or more with 401, with
 * *|ret_reason| naming the app (a string that lives as long as the
 * process). Every result of pgw_hook_call() counts. Thread-safe.
 */
bool pgw_hook_authorized(const char **ret_reason);

#endif
