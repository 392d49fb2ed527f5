/*
 * FCM HTTP v1 sends (DESIGN §8, §9; PROTOCOLS part B): one
 * POST {url}/v1/projects/{project_id}/messages:send per device token over
 * the shared HTTP/2 pool of the FCM origin, authorised with the access
 * token of the app's service account (oauth), and the answer mapped to a
 * struct pgw_outcome.
 *
 * The message body is built by payload_fcm; this module sends the bytes
 * it is given. One struct pgw_fcm holds one h2 pool for [fcm] url (shared
 * by every app) and one token source per service account.
 *
 * Logging: FINAL and INVALIDATE outcomes are logged here at debug level
 * with Google's message (the device token masked); the caller logs the
 * one line per final outcome. Connection problems are logged by h2client,
 * token endpoint failures by oauth.
 */
#ifndef PUSHGW_FCM_H
#define PUSHGW_FCM_H

#include <stddef.h>
#include <stdint.h>

#include "curlmulti.h"
#include "h2client.h"
#include "oauth.h"
#include "outcome.h"
#include "pushgw.h"

struct event_base;
struct evdns_base;

/* Largest body accepted by pgw_fcm_send() (FCM's own limit is 4096 bytes
 * of message; the envelope adds a little). */
#define PGW_FCM_SEND_MAX_BODY 65536
/* Largest number of service accounts. */
#define PGW_FCM_MAX_ACCOUNTS 1024
/* QUOTA_EXCEEDED / 429: never retry sooner (PROTOCOLS B4). */
#define PGW_FCM_QUOTA_MIN_RETRY_MS 60000

struct pgw_fcm_options {
    const char *url;       /* [fcm] url: "https://host[:port][/prefix]" */
    const char *token_url; /* [fcm] token_url */
    const char *ca_file;   /* [fcm] ca_file; NULL or "": none */
    /* The pool's settings: sizes, timeouts, backoff, and the [fcm] proxy,
     * which the token requests use too (0 and NULL: h2client's defaults).
     * Its origin, name, ca_file and max_pending are ignored: they come
     * from the fields here. */
    struct pgw_h2_pool_options pool;
    /* Budget of one access token request; 0: 10000. */
    unsigned token_timeout_ms;
    size_t max_inflight;      /* sends at once; 0: PGW_H2_DEFAULT_MAX_PENDING */
    pgw_oauth_clock_fn clock; /* NULL: real clock (token cache, dates) */
    void *clock_arg;
};

struct pgw_fcm;
struct pgw_fcm_account;

/*
 * Creates the FCM sender on |base|, resolving with |dns| and fetching
 * tokens through |cm| (all three must outlive it). |opts| is copied.
 * Free with pgw_fcm_free(). Returns 0, PGW_ERR_INVAL (bad url or
 * options), PGW_ERR_TLS (ca_file unusable) or PGW_ERR_NOMEM.
 */
int pgw_fcm_new(struct event_base *base, struct evdns_base *dns,
                struct pgw_curlmulti *cm, const struct pgw_fcm_options *opts,
                struct pgw_fcm **ret_fcm);

/*
 * Completes every send still in flight with a RETRY outcome (reason
 * "cancelled"; callbacks run inside this call and must not send), then
 * frees the pool, the token sources and the accounts. NULL is a no-op.
 * Not from a send callback.
 */
void pgw_fcm_free(struct pgw_fcm *self);

/*
 * The account of the service account file |sa_path|, loaded on first use
 * (the same path twice gives the same account). The account lives until
 * pgw_fcm_free(). On failure adds the reasons to |diag| (may be NULL);
 * returns 0 or the errors of pgw_oauth_sa_load(), PGW_ERR_BUSY (too many
 * accounts), PGW_ERR_NOMEM.
 */
int pgw_fcm_account(struct pgw_fcm *self, const char *sa_path,
                    struct pgw_diag *diag,
                    struct pgw_fcm_account **ret_account);

/* The account's project id (from its service account file). */
const char *pgw_fcm_account_project(const struct pgw_fcm_account *account);

/* The account's token source (for stats and tests). */
struct pgw_oauth *pgw_fcm_account_oauth(struct pgw_fcm_account *account);

struct pgw_fcm_request {
    struct pgw_fcm_account *account;
    /* The device token the body targets: for logs (masked) only. */
    const char *device_token;
    /* The JSON body {"message":{"token":…,…}} from payload_fcm; copied. */
    const char *body;
    size_t body_len;
};

/*
 * Called exactly once per accepted send, from the loop, never from inside
 * pgw_fcm_send(). |outcome| is valid during the call only. It may send
 * again; it must not free the sender.
 */
typedef void (*pgw_fcm_cb)(void *arg, const struct pgw_outcome *outcome);

/*
 * Sends |req| (copied). With no valid access token the send waits for the
 * one token request in flight. A 401 (not THIRD_PARTY_AUTH_ERROR) renews
 * the token and retries once. Transport failures become RETRY outcomes
 * (reasons "refused", "timeout", "connection_lost", "busy",
 * "connect_failed", "auth_unavailable", "cancelled").
 * Returns 0, or PGW_ERR_INVAL (no account, body or callback),
 * PGW_ERR_TOO_LARGE (body over PGW_FCM_SEND_MAX_BODY), PGW_ERR_BUSY
 * (max_inflight reached), PGW_ERR_CLOSED, PGW_ERR_NOMEM: then |cb| never
 * runs.
 */
int pgw_fcm_send(struct pgw_fcm *self, const struct pgw_fcm_request *req,
                 pgw_fcm_cb cb, void *arg);

/* Sends whose callback has not run yet. */
size_t pgw_fcm_inflight(const struct pgw_fcm *self);

/* The statistics of the FCM connection pool (h2client.h), for metrics. */
void pgw_fcm_stats(const struct pgw_fcm *self,
                   struct pgw_h2_pool_stats *ret_stats);

/* ---- pure mapping (no I/O, no logging) -------------------------------- */

/*
 * Maps an FCM answer to |ret_outcome| (DESIGN §9): |status|, the body
 * (may be NULL), and the Retry-After delay from pgw_retry_after_parse()
 * (util/retry_after.h; -1: none).
 * - 200 → DELIVERED, provider_id = "name" of the body.
 * - errorCode UNREGISTERED or SENDER_ID_MISMATCH (details[] entries of
 *   type google.firebase.fcm.v1.FcmError) → INVALIDATE.
 * - QUOTA_EXCEEDED or 429 → RETRY after max(60 s, Retry-After).
 * - UNAVAILABLE, INTERNAL, any 5xx → RETRY after Retry-After (0: backoff).
 * - 401 with THIRD_PARTY_AUTH_ERROR / APNS_AUTH_ERROR → FINAL; any other
 *   401 (the access token was refused after the one renewal) → RETRY.
 * - INVALID_ARGUMENT and any other status → FINAL.
 * |reason| is the errorCode, else error.status ("INVALID_ARGUMENT",
 * "PERMISSION_DENIED"), else "HTTP_<status>". When |ret_message| is not
 * NULL it receives Google's error.message (at most |message_size| bytes,
 * "" when none).
 */
void pgw_fcm_classify(int status, const char *body, size_t body_len,
                      int64_t retry_after_ms, struct pgw_outcome *ret_outcome,
                      char *ret_message, size_t message_size);

/* Maps a failed h2 attempt (any kind but PGW_H2_RESPONSE) to a RETRY
 * outcome with the reasons listed at pgw_fcm_send(). */
void pgw_fcm_classify_transport(enum pgw_h2_result_kind kind,
                                struct pgw_outcome *ret_outcome);

/* True when a 401 answer asks for a new access token (not
 * THIRD_PARTY_AUTH_ERROR / APNS_AUTH_ERROR). */
int pgw_fcm_is_token_rejected(int status, const char *body, size_t body_len);

#endif
