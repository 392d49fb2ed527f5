/*
 * The FCM HTTP v1 request body of DESIGN §8 for one content variant.
 * Built ONCE per (event, variant) by pgw_payload_fcm_build(); per device
 * only the token is written in by pgw_payload_fcm_body().
 * Pure: no I/O, no logging (dropped reserved keys are reported to the
 * caller, which logs the warning).
 */
#ifndef PUSHGW_PAYLOAD_FCM_H
#define PUSHGW_PAYLOAD_FCM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "payload.h"
#include "pushgw.h"

#define PGW_PAYLOAD_FCM_MAX_BODY 4096 /* bytes, the body without the token */

struct pgw_fcm_payload {
    /* The body is head + JSON-escaped token + tail (not NUL-terminated). */
    char *head;
    size_t head_len;
    char *tail;
    size_t tail_len;
    int64_t ttl_s;          /* android.ttl, seconds */
    bool silent;            /* data-only message */
    bool shortened;         /* the alert body was cut to fit */
    size_t n_dropped;       /* reserved data keys dropped */
    char first_dropped[64]; /* the first of them, for the warning */
};

/*
 * Maps the resolved content |content| (an object; not modified): "alert"
 * (a string, or a dictionary's body/title) → notification.body, "title" →
 * notification.title, "sound" and "action" → android.notification sound
 * and click_action, "_notificationChannel" → android.notification
 * channel_id, "collapse-id" → android.collapse_key, "badge" and
 * "silent" dropped; "silent": true → no notification blocks (alert, title
 * and action then go into data); every other key → data, as a string
 * (non-strings JSON-encoded); reserved data keys (from, message_type,
 * any key starting with google or gcm) dropped and counted. android.priority is
 * "HIGH"; android.ttl = |expires_at_s| - |now_s|, at most |validity_s|. The
 * body without the token must fit PGW_PAYLOAD_FCM_MAX_BODY, else the alert body
 * is shortened on a UTF-8 boundary ending in "…". On success stores a new
 * payload in |*ret_p| (free with pgw_payload_fcm_free()). Errors, with
 * |*ret_reason| (if not NULL) set: PGW_PAYLOAD_ERR_EXPIRED ("expired"),
 * PGW_ERR_TOO_LARGE
 * ("payload_too_large"), PGW_ERR_NOMEM.
 */
int pgw_payload_fcm_build(const cJSON *content, int64_t expires_at_s,
                          int64_t now_s, int64_t validity_s,
                          struct pgw_fcm_payload **ret_p,
                          const char **ret_reason);

void pgw_payload_fcm_free(struct pgw_fcm_payload *p);

/*
 * A retry sends the first attempt's body again, but FCM's ttl is relative:
 * rewrites android.ttl of |body| (|*len| bytes, as pgw_payload_fcm_build()
 * wrote it) to |ttl_s| seconds, in place. The new value is never longer
 * than the old one when |ttl_s| is the time left (it only shrinks).
 * Returns 0, or PGW_ERR_INVAL (no ttl where the builder puts it, or
 * |ttl_s| < 0, or longer than the old value): |body| is then unchanged.
 */
int pgw_payload_fcm_set_ttl(char *body, size_t *len, int64_t ttl_s);

/* Exact body length for |token|. */
size_t pgw_payload_fcm_body_len(const struct pgw_fcm_payload *p,
                                const char *token);

/*
 * Writes the body for |token| into |buf| of |cap| bytes; stores the
 * length in |*ret_len|. Errors: PGW_ERR_TOO_LARGE when |cap| is short.
 */
int pgw_payload_fcm_body(const struct pgw_fcm_payload *p, const char *token,
                         char *buf, size_t cap, size_t *ret_len);

#endif
