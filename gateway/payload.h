/*
 * What the two payload builders (payload_apns, payload_fcm) share: their
 * error for an expired push, the outcome reasons of their errors, the
 * marker byte they print where a per-device value goes, and printing
 * within the provider's size limit. Pure.
 */
#ifndef PUSHGW_PAYLOAD_H
#define PUSHGW_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

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

/*
 * Prints |root| unformatted into a new string (free with free())
 * of at most |max_len| bytes: when it is longer, the string item |text|
 * inside |root| (NULL: none) is shortened as pgw_json_shorten() does,
 * and |root| printed again. Stores the string in |*ret_text| and whether
 * |text| was cut in |*ret_shortened|. Errors: PGW_ERR_TOO_LARGE (no
 * |text|, or too long even shortened), PGW_ERR_NOMEM.
 */
int pgw_payload_print(cJSON *root, cJSON *text, size_t max_len, char **ret_text,
                      bool *ret_shortened);

#endif
