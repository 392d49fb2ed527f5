/*
 * What the two payload builders (payload_apns, payload_fcm) share: their
 * error for an expired push, the outcome reasons of their errors, and the
 * marker byte they print where a per-device value goes. Pure.
 */
#ifndef PUSHGW_PAYLOAD_H
#define PUSHGW_PAYLOAD_H

#include "pushgw.h"

/* A push whose validity has passed: the caller counts it as "expired". */
#define PGW_PAYLOAD_ERR_EXPIRED PGW_ERR_TIMEOUT

/* Outcome reasons (outcome.h) for the errors of the builders. */
#define PGW_PAYLOAD_REASON_EXPIRED "expired"
#define PGW_PAYLOAD_REASON_TOO_LARGE "payload_too_large"
#define PGW_PAYLOAD_REASON_COLLAPSE_ID "bad_collapse_id"

/*
 * Printed once per variant where the per-device value (the APNs badge
 * number, the FCM token) goes, then split there: cJSON escapes 0x01 in
 * every string, so the raw byte cannot appear anywhere else in the text.
 */
#define PGW_PAYLOAD_MARK "\x01"

#endif
