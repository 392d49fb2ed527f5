/*
 * One device's push (DESIGN §8, §9), shared by `serve` (dispatch, retry)
 * and `render`, so both reach the same outcome for every device:
 *   - the per-device step: from the resolved content, the event's
 *     payloads, the app and one installation, either nothing (not a
 *     recipient, another team), a failure with its outcome reason
 *     (bad_profile, no_apns_team, no_apns_topic, unknown_team,
 *     no_fcm_account, payload_too_large, expired…), or a push ready to
 *     send: headers and body in one buffer;
 *   - the retry row codec: a push as the text stored in `retries`, and
 *     back, so a retry sends exactly the first attempt's request;
 *   - retry planning: backoff doubling to a cap with jitter, the
 *     provider's Retry-After honoured, the last attempt, and the cut-off
 *     at the event's validity.
 * Pure: no I/O, no logging, the clock and the jitter passed in.
 */
#ifndef PUSHGW_PUSH_H
#define PUSHGW_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "apns.h"
#include "config.h"
#include "outcome.h"
#include "payload_apns.h"
#include "payload_fcm.h"
#include "resolve.h"

enum pgw_provider {
    PGW_PROVIDER_APNS = 0,
    PGW_PROVIDER_FCM = 1,
};
#define PGW_PROVIDER_COUNT 2

/* "apns", "fcm": the provider label of metrics and stored rows. */
extern const char *const pgw_provider_names[PGW_PROVIDER_COUNT];

/* One push to one installation, ready to send. Strings live in |buf|
 * (one allocation per push; freed with pgw_push_release()). */
struct pgw_push {
    enum pgw_provider provider;
    int64_t installation_id;
    int attempts;          /* made so far */
    int64_t expires_at_ms; /* not sent at or after this */
    /* APNs */
    enum pgw_apns_env env;
    int priority;
    int64_t expiration;
    char push_type[16];
    char apns_id[PGW_APNS_UUID_LEN + 1];
    char *team;
    char *topic;
    char *collapse_id; /* NULL: none */
    /* both */
    char *token;
    char *body; /* not NUL-terminated */
    size_t body_len;
    char *buf;
};

/* Frees the strings of |p| (not |p|). */
void pgw_push_release(struct pgw_push *p);

/*
 * The payloads of one event, built once per content variant (index =
 * platform * 2 + mentioned) and shared by its devices. The iOS ones are
 * built before the devices are looked up (whether one increments the
 * badge decides how the lookup runs); the Android ones with the first
 * Android device, as most events reach one device.
 */
struct pgw_push_event {
    const struct pgw_resolved *res; /* borrowed */
    const char *event_id;           /* borrowed: seeds the apns-id */
    int64_t now_s;
    int64_t validity_s; /* [delivery] validity_s: bounds the FCM ttl */
    bool built[PGW_PLATFORM_COUNT];
    struct pgw_apns_payload *apns[4];
    const char *apns_err[4];
    struct pgw_fcm_payload *fcm[4];
    const char *fcm_err[4];
    bool apns_id_key_set;
    unsigned char apns_id_key[PGW_APNS_ID_KEY_LEN];
};

/* |res| and |event_id| must outlive |e|; release with
 * pgw_push_event_release(). */
void pgw_push_event_init(struct pgw_push_event *e,
                         const struct pgw_resolved *res, const char *event_id,
                         int64_t now_s, int64_t validity_s);
void pgw_push_event_release(struct pgw_push_event *e);

/* Outcome reason of a push with nothing in it for its platform. */
#define PGW_PUSH_REASON_NO_CONTENT "no_content"

/* Builds the payloads of |platform|'s variants (once; a payload that
 * cannot be built keeps its reason for the devices that need it). A
 * variant with nothing for the platform once the keys for pushgw are
 * stripped (iOS: the body would be {"aps":{}}; Android: neither a
 * notification nor data) is not sent: "no_content". */
void pgw_push_event_build(struct pgw_push_event *e, enum pgw_platform platform);

/* True when an iOS payload of |e| increments the badge (the iOS
 * variants built). */
bool pgw_push_event_increments(const struct pgw_push_event *e);

/* The app as its pushes need it. */
struct pgw_push_app;

/*
 * The lookup rule of |res|'s pushes for |app| (installation.h), team part
 * only: _apns_team_id and the app's default team. What a lookup that
 * writes no badge uses (render's).
 */
void pgw_push_match_init(const struct pgw_resolved *res,
                         const struct pgw_app *app,
                         struct pgw_installation_match *ret_m);

/*
 * The whole lookup rule of |e|'s pushes for |app|, the one place the team
 * and badge rules are derived (the dispatcher's lookups and a broadcast's
 * pages use it): the team part as pgw_push_match_init(); and, when no iOS
 * variant increments the badge and every iOS variant has a payload with
 * the same number as badge, that number to set (a negative one sets 0: a
 * count is never below 0). Variants that differ (a mentioned one with
 * another number or none, or one with nothing to send) set nothing: the
 * lookup does not know which devices are mentioned. Nothing is set for a
 * bad _profile (nothing is sent to iOS). Builds the iOS payloads if not
 * built yet.
 */
void pgw_push_event_match(struct pgw_push_event *e, const struct pgw_app *app,
                          struct pgw_installation_match *ret_m);

struct pgw_push_app {
    const struct pgw_config *cfg; /* every team with a key (all apps) */
    const struct pgw_app *app;
    /* The APNs identity of pushes that name no team (the default team's
     * key, else the app's certificates), NULL: none; the default topic,
     * NULL: none (struct pgw_runtime_app). */
    const char *apns_identity;
    const char *apns_topic;
    bool has_fcm_account;
};

enum pgw_push_result {
    PGW_PUSH_SEND = 0, /* |*ret_p| is ready */
    PGW_PUSH_NONE,     /* the device gets nothing: nothing to record */
    PGW_PUSH_FAIL,     /* the push failed before it could be sent */
};

/* Why a push failed before it could be sent. */
struct pgw_push_failure {
    enum pgw_provider provider;
    bool expired;       /* the validity passed: "expired", not "failed" */
    const char *reason; /* an outcome reason, static */
};

/*
 * The per-device step: what |inst| gets from the event |e| of |app|.
 * |badge| is the device's badge after the increment (used when the
 * payload increments it). On PGW_PUSH_SEND fills |*ret_p| (release with
 * pgw_push_release()); on PGW_PUSH_FAIL fills |*ret_fail| and leaves
 * |*ret_p| with no buffer. Outcome reasons: "bad_profile",
 * "no_apns_team" (the app has no APNs key), "no_apns_topic",
 * "unknown_team" (no key for the team the push goes to),
 * "no_fcm_account", "payload_too_large", "expired", "bad_collapse_id",
 * "payload_error", "out_of_memory".
 */
enum pgw_push_result pgw_push_make(struct pgw_push_event *e,
                                   const struct pgw_push_app *app,
                                   const struct pgw_installation *inst,
                                   int32_t badge, struct pgw_push *ret_p,
                                   struct pgw_push_failure *ret_fail);

/*
 * Invalidation only on evidence (DESIGN §9): whether the INVALIDATE
 * answer |o| to |p| shows that the device's token is dead, rather than
 * that it belongs to the other APNs environment or topic than the push
 * chose. pushgw does not know a device's environment (installations have
 * none) and assumes production, the environment of App Store builds and
 * the default of the LeanCloud guide ("production certificate"). So an
 * APNs 400 BadDeviceToken or DeviceTokenNotForTopic is evidence only for
 * a push to production on the app's plain topic (push types alert and
 * background); a push to development (_profile "dev") or to a push
 * type's own topic (voip, complication, …) that gets one fails with that
 * reason and the device stays valid. APNs 410 and every FCM answer that
 * invalidates are evidence whatever the push.
 */
bool pgw_push_answer_is_evidence(const struct pgw_push *p,
                                 const struct pgw_outcome *o);

/*
 * The retry row codec: |p| of app |app_id| as the request text stored
 * with a retry (free() it), or NULL on PGW_ERR_NOMEM.
 */
char *pgw_push_encode(const struct pgw_push *p, const char *app_id);

/*
 * Rebuilds into |*ret_p| the push stored as |request| for |provider|
 * ("apns" or "fcm"): provider, strings, headers. The caller sets
 * installation_id, attempts and expires_at_ms from the row. Returns 0
 * or PGW_ERR_INVAL (not a request this codec wrote), PGW_ERR_NOMEM;
 * |*ret_p| holds no buffer on error.
 */
int pgw_push_decode(const char *request, const char *provider,
                    struct pgw_push *ret_p);

/* [delivery]'s retry settings. */
struct pgw_retry_policy {
    int max_attempts;
    int64_t base_ms; /* the first delay */
    int64_t max_ms;  /* the cap of the doubling */
};

void pgw_retry_policy_from_config(const struct pgw_config *cfg,
                                  struct pgw_retry_policy *ret_pol);

/*
 * The delay before attempt |attempts| + 1: base_ms doubled per attempt
 * made after the first, at most max_ms, with jitter: in [delay/2, delay),
 * where |jitter| in [0, 1) picks the point (spreads the retries of a
 * burst that failed together).
 */
int64_t pgw_retry_backoff_ms(const struct pgw_retry_policy *pol, int attempts,
                             double jitter);

enum pgw_retry_plan {
    PGW_RETRY_AT = 0,  /* retry at |*ret_at_ms| */
    PGW_RETRY_FAILED,  /* that was the last attempt */
    PGW_RETRY_EXPIRED, /* the retry would come after the validity */
};

/*
 * What to do with a RETRY outcome |o| of a push made |attempts| times
 * (this one included) that expires at |expires_at_ms|, at |now_ms|: the
 * backoff, or the provider's Retry-After (|o->retry_after_ms|) when
 * longer. |*ret_at_ms| is written on PGW_RETRY_AT only.
 */
enum pgw_retry_plan pgw_retry_plan(const struct pgw_retry_policy *pol,
                                   int attempts, const struct pgw_outcome *o,
                                   int64_t expires_at_ms, int64_t now_ms,
                                   double jitter, int64_t *ret_at_ms);

#endif
