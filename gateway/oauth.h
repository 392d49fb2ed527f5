/*
 * Google service accounts and OAuth2 access tokens for FCM HTTP v1
 * (PROTOCOLS B2): the service account JSON file, the RS256 JWT-bearer
 * assertion, and a per-account token source that fetches access tokens
 * over curl_multi on the event loop, caches them, renews them ahead of
 * expiry and never has more than one token request in flight.
 */
#ifndef PUSHGW_OAUTH_H
#define PUSHGW_OAUTH_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "curlmulti.h"
#include "pushgw.h"

#define PGW_OAUTH_FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define PGW_OAUTH_GRANT_TYPE "urn:ietf:params:oauth:grant-type:jwt-bearer"
/* Largest service account file read. */
#define PGW_OAUTH_SA_MAX_BYTES (64 * 1024)
/* Assertion lifetime (Google's maximum is one hour). */
#define PGW_OAUTH_ASSERTION_LIFETIME_S 3600
/* Renew this long before expiry (less for tokens living under 10 min:
 * then half their lifetime). */
#define PGW_OAUTH_RENEW_BEFORE_S 300
/* Largest token endpoint answer and access token accepted. */
#define PGW_OAUTH_MAX_RESPONSE 65536
#define PGW_OAUTH_MAX_TOKEN_LEN 4096
/* Largest number of sends waiting for one token. */
#define PGW_OAUTH_MAX_WAITERS 100000

/* A loaded service account. */
struct pgw_oauth_sa {
    char *path;           /* the file it came from ("" when parsed) */
    char *client_email;   /* JWT iss */
    char *project_id;     /* FCM project */
    char *private_key_id; /* JWT kid; NULL when absent */
    char *token_uri;      /* informational: [fcm] token_url is used */
    EVP_PKEY *key;        /* RSA private key */
};

/*
 * Reads the service account JSON at |path|: client_email, private_key (an
 * RSA PEM key), project_id are required; private_key_id and token_uri are
 * optional; "type", when present, must be "service_account". On success
 * stores it in |*ret_sa| (free with pgw_oauth_sa_free()). On failure adds
 * one line per problem to |diag| (may be NULL), naming the file and the
 * field, and returns PGW_ERR_IO (missing or unreadable file),
 * PGW_ERR_TOO_LARGE, PGW_ERR_INVAL (bad JSON or field), PGW_ERR_CRYPTO
 * (private_key unusable) or PGW_ERR_NOMEM. Never logs; never puts key
 * material in |diag|.
 */
int pgw_oauth_sa_load(const char *path, struct pgw_diag *diag,
                      struct pgw_oauth_sa **ret_sa);

/* As pgw_oauth_sa_load() on the |len| bytes of |json|; |origin| names the
 * source in messages. */
int pgw_oauth_sa_parse(const char *json, size_t len, const char *origin,
                       struct pgw_diag *diag, struct pgw_oauth_sa **ret_sa);

void pgw_oauth_sa_free(struct pgw_oauth_sa *sa);

/*
 * Builds the signed assertion for |sa| (pure): header {"alg":"RS256",
 * "typ":"JWT"[,"kid"]}, claims iss = client_email, scope = |scope|,
 * aud = |aud|, iat = |now_s|, exp = |now_s| + |lifetime_s| (1..3600).
 * Stores a malloc'd NUL-terminated string in |*ret_jwt|.
 * Returns 0, PGW_ERR_INVAL, PGW_ERR_CRYPTO or PGW_ERR_NOMEM.
 */
int pgw_oauth_make_assertion(const struct pgw_oauth_sa *sa, const char *aud,
                             const char *scope, int64_t now_s,
                             int64_t lifetime_s, char **ret_jwt);

/*
 * Parses a token endpoint answer body {"access_token":…, "expires_in":…,
 * "token_type":"Bearer"} (pure). The token must be 1..PGW_OAUTH_MAX_TOKEN_LEN
 * visible ASCII characters; expires_in defaults to 3600 and must be
 * 1..86400; token_type, when given, must be Bearer. Stores a malloc'd token
 * and the lifetime. Returns 0, PGW_ERR_PROTO or PGW_ERR_NOMEM.
 */
int pgw_oauth_parse_token_response(const char *body, size_t len,
                                   char **ret_token, int64_t *ret_expires_in_s);

/* Milliseconds since the epoch; tests inject their own. */
typedef int64_t (*pgw_oauth_clock_fn)(void *arg);

struct pgw_oauth_options {
    const char *token_url;    /* required: [fcm] token_url, also the aud */
    const char *ca_file;      /* extra trust anchor; NULL or "": none */
    const char *scope;        /* NULL: PGW_OAUTH_FCM_SCOPE */
    long timeout_ms;          /* per token request; 0: 10000 */
    pgw_oauth_clock_fn clock; /* NULL: the real clock */
    void *clock_arg;
    /* An HTTP proxy for the token requests and its password
     * (curlmulti.h); NULL: direct */
    const char *proxy;
    const char *proxy_password;
};

struct pgw_oauth;

/*
 * Creates a token source for |sa| (borrowed: it must outlive the source)
 * issuing requests through |cm|. |opts| is copied. Free with
 * pgw_oauth_free(). Returns 0, PGW_ERR_INVAL or PGW_ERR_NOMEM.
 */
int pgw_oauth_new(struct pgw_curlmulti *cm, const struct pgw_oauth_sa *sa,
                  const struct pgw_oauth_options *opts,
                  struct pgw_oauth **ret_oauth);

/* Cancels the token request in flight and calls every waiter with
 * PGW_ERR_CLOSED, then frees |self|. NULL is a no-op. Not from a waiter. */
void pgw_oauth_free(struct pgw_oauth *self);

/*
 * The cached access token if it can still be used, else NULL. Never
 * blocks and calls nothing. Past the renewal point (PGW_OAUTH_RENEW_BEFORE_S
 * before expiry) it starts a background renewal, if none is in flight,
 * and still returns the current token until shortly before it expires.
 * The string stays valid until the next call into |self|: copy it.
 */
const char *pgw_oauth_token(struct pgw_oauth *self);

/*
 * Called once a token request ends: |err| 0 and the new |token| (valid
 * during the call only), or an error (PGW_ERR_AUTH: the endpoint refused
 * the assertion; PGW_ERR_PROTO: bad answer; PGW_ERR_TIMEOUT, PGW_ERR_IO,
 * PGW_ERR_TLS: transport; PGW_ERR_CLOSED: the source is being freed) and
 * |token| NULL. It may call pgw_oauth_token(), _wait() and _invalidate();
 * it must not free the source.
 */
typedef void (*pgw_oauth_token_cb)(int err, const char *token, void *arg);

/*
 * Waits for the next token: starts a token request unless one is in
 * flight, and queues |cb|. |cb| runs exactly once, from the loop, never
 * from inside this call. However many callers wait, one request is made.
 * Returns 0, or (and then |cb| never runs) PGW_ERR_BUSY (too many
 * waiters), PGW_ERR_NOMEM, or the error of the last failed request while
 * its retry backoff (1 s doubling to 60 s) lasts.
 */
int pgw_oauth_wait(struct pgw_oauth *self, pgw_oauth_token_cb cb, void *arg);

/*
 * Tells the source that |token| was rejected (HTTP 401 on a send). If it
 * is the cached token it is dropped, so the next pgw_oauth_token() returns
 * NULL and a wait fetches a new one; an older token is ignored, so many
 * concurrent 401s cause one renewal.
 */
void pgw_oauth_invalidate(struct pgw_oauth *self, const char *token);

/* Token requests started since creation (successful or not). */
uint64_t pgw_oauth_requests(const struct pgw_oauth *self);

#endif
