/*
 * apns: sends prepared pushes to Apple's provider API over h2client pools,
 * one pool per (environment, team) so a connection never carries two
 * teams, signs with the team's ES256 key (jwt) and maps each answer to a
 * struct pgw_outcome (DESIGN §9):
 *   200 → DELIVERED (provider_id = apns-id);
 *   410 → INVALIDATE (invalid_since_ms from the JSON "timestamp");
 *   400 BadDeviceToken / DeviceTokenNotForTopic → INVALIDATE;
 *   403 ExpiredProviderToken → new token (20-minute floor per key) and one
 *       internal retry; when that is not possible → RETRY;
 *   503 Shutdown (that server is shutting down) → one internal resend at
 *       once; a second one → RETRY;
 *   429, 5xx, refused, timeout, connection lost, connect failure, busy →
 *       RETRY (retry_after_ms from Retry-After when given);
 *   any other status → FINAL with the provider's reason.
 * Single-threaded (the loop's thread). Logs connection-level events only
 * (through h2client), never per push.
 */
#ifndef PUSHGW_APNS_H
#define PUSHGW_APNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h2client.h"
#include "outcome.h"

struct event_base;
struct evdns_base;
struct pgw_jwt;
struct pgw_apns;
struct pgw_tls_identity;

#define PGW_APNS_PRODUCTION_URL "https://api.push.apple.com"
#define PGW_APNS_DEVELOPMENT_URL "https://api.sandbox.push.apple.com"
#define PGW_APNS_MAX_TEAMS 64 /* signing identities: teams and certificates */
#define PGW_APNS_ID_MAX 64

enum pgw_apns_env {
    PGW_APNS_PRODUCTION = 0,
    PGW_APNS_DEVELOPMENT = 1,
};

struct pgw_apns_options {
    const char *production_url;  /* NULL: PGW_APNS_PRODUCTION_URL */
    const char *development_url; /* NULL: PGW_APNS_DEVELOPMENT_URL */
    const char *ca_file;         /* extra trust anchor; NULL/"": none */
    /* Every pool's settings, one pool per (environment, team): sizes,
     * timeouts, backoff, [apns] proxy (0 and NULL: h2client's defaults).
     * Its origin, name, ca_file and identity are ignored: each pool gets
     * its own. */
    struct pgw_h2_pool_options pool;
};

/*
 * One push, headers and body already built (payload_apns). Strings are
 * NUL-terminated and copied by pgw_apns_send().
 */
struct pgw_apns_push {
    enum pgw_apns_env env;
    const char *team_id;      /* pgw_apns_add_team() or _add_cert() */
    const char *device_token; /* hex; goes into :path /3/device/<token> */
    const char *topic;        /* apns-topic, required */
    const char *push_type;    /* apns-push-type; NULL: omitted */
    int priority;             /* apns-priority; 0: omitted */
    int64_t expiration;       /* apns-expiration (s); < 0: omitted */
    const char *collapse_id;  /* apns-collapse-id; NULL/"": omitted */
    const char *apns_id;      /* apns-id (UUID); NULL/"": omitted */
    const char *body;         /* JSON payload */
    size_t body_len;
};

/*
 * Runs exactly once per accepted push, never inside pgw_apns_send();
 * |outcome| is valid only during the call. May send more pushes; must
 * not free the apns object.
 */
typedef void (*pgw_apns_cb)(void *arg, const struct pgw_outcome *outcome);

/*
 * Creates the sender; pools are made on first use. |base| and |dns| must
 * outlive it; |opts| is copied. Free with pgw_apns_free().
 * Errors: PGW_ERR_INVAL, PGW_ERR_NOMEM.
 */
int pgw_apns_new(struct event_base *base, struct evdns_base *dns,
                 const struct pgw_apns_options *opts,
                 struct pgw_apns **ret_apns);

/*
 * Registers |team_id|'s signing key |key_id| from the .p8 file |key_file|.
 * Errors: PGW_ERR_CONFLICT (team already added), PGW_ERR_BUSY (more than
 * PGW_APNS_MAX_TEAMS), and those of pgw_jwt_new_from_file().
 */
int pgw_apns_add_team(struct pgw_apns *self, const char *team_id,
                      const char *key_id, const char *key_file);

/*
 * Registers a certificate identity named |id| (a push selects it through
 * pgw_apns_push.team_id): its pools authenticate with TLS client
 * certificates and send no authorization header. |production| (required)
 * is presented to the production endpoint, |development| (NULL: the
 * production one) to the development endpoint. Both are owned by |self|
 * from then on, also on failure. Errors: PGW_ERR_INVAL, PGW_ERR_CONFLICT
 * (|id| taken), PGW_ERR_BUSY (more than PGW_APNS_MAX_TEAMS identities).
 */
int pgw_apns_add_cert(struct pgw_apns *self, const char *id,
                      struct pgw_tls_identity *production,
                      struct pgw_tls_identity *development);

/* Same with a ready token cache; |jwt| is owned by |self| from then on,
 * also on failure. */
int pgw_apns_add_team_jwt(struct pgw_apns *self, struct pgw_jwt *jwt);

/* The token cache of |team_id| (to set a test clock), or NULL. */
struct pgw_jwt *pgw_apns_team_jwt(struct pgw_apns *self, const char *team_id);

/*
 * Sends |push|; |cb|(|arg|, outcome) runs once later. Returns 0, or
 * PGW_ERR_NOTFOUND (unknown team), PGW_ERR_INVAL (missing token/topic,
 * token not hex or longer than 200), PGW_ERR_CRYPTO (token signing
 * failed), PGW_ERR_NOMEM, PGW_ERR_TLS (pool setup failed: bad ca_file):
 * then |cb| never runs.
 */
int pgw_apns_send(struct pgw_apns *self, const struct pgw_apns_push *push,
                  pgw_apns_cb cb, void *arg);

/* Sum of every pool's statistics (h2client.h), for metrics. */
void pgw_apns_stats(const struct pgw_apns *self,
                    struct pgw_h2_pool_stats *ret_stats);

/* Completes outstanding pushes with RETRY "cancelled" and frees |self|;
 * NULL is a no-op. Not from inside a pgw_apns_cb. */
void pgw_apns_free(struct pgw_apns *self);

/*
 * The suffix Apple requires on the bundle id for |push_type| (".voip",
 * ".complication", ".pushkit.fileprovider", ".location-query",
 * ".push-type.liveactivity", ".voip-ptt"), or NULL when the topic is the
 * bundle id itself. pgw_apns_send() appends it to a topic that does not
 * end with it already.
 */
const char *pgw_apns_topic_suffix(const char *push_type);
bool pgw_apns_topic_has_suffix(const char *topic, const char *suffix);

/*
 * Pure mapping of an APNs answer to an outcome (no token refresh here:
 * 403 ExpiredProviderToken maps to RETRY). |body| may be NULL; |apns_id|
 * is the header value or NULL; |retry_after_ms| the Retry-After header
 * read by pgw_retry_after_parse() (util/retry_after.h; -1: none).
 */
void pgw_apns_classify(int status, const char *body, size_t body_len,
                       const char *apns_id, int64_t retry_after_ms,
                       struct pgw_outcome *ret_outcome);

#endif
