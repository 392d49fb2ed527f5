/*
 * The result of one push attempt to a provider (DESIGN §9), shared by the
 * apns and fcm modules and the dispatcher that acts on it.
 */
#ifndef PUSHGW_OUTCOME_H
#define PUSHGW_OUTCOME_H

#include <stdint.h>

enum pgw_outcome_kind {
    PGW_OUTCOME_DELIVERED = 0, /* provider accepted it (200) */
    PGW_OUTCOME_RETRY,         /* try again later (backoff, Retry-After) */
    PGW_OUTCOME_INVALIDATE,    /* the token is dead: mark installation */
    PGW_OUTCOME_FINAL,         /* failed for good; the token stays valid */
};

#define PGW_OUTCOME_REASON_MAX 64

struct pgw_outcome {
    enum pgw_outcome_kind kind;
    int status; /* HTTP status, 0 when no answer (connection, timeout) */
    /* Provider reason ("BadDeviceToken", "UNREGISTERED") or ours
     * ("timeout", "connection_lost", "refused", "busy", "expired",
     * "payload_too_large", "bad_profile"): lowercase-free, as received. */
    char reason[PGW_OUTCOME_REASON_MAX];
    /* RETRY: do not retry before this many ms from now (0: backoff). */
    int64_t retry_after_ms;
    /* INVALIDATE from APNs 410: when the token stopped being valid, in ms
     * since the epoch (0 when the provider gave none). */
    int64_t invalid_since_ms;
    /* The provider's id for the push (apns-id, FCM message name) or "". */
    char provider_id[160];
};

#endif
