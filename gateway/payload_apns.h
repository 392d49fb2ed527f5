/*
 * The APNs request of DESIGN §8 for one content variant: body and headers.
 * Built ONCE per (event, variant) by pgw_payload_apns_build(); per device
 * only the badge number (for "Increment") is patched in by
 * pgw_payload_apns_body(), and the apns-id computed by pgw_payload_apns_id().
 * Pure: no I/O, no logging.
 */
#ifndef PUSHGW_PAYLOAD_APNS_H
#define PUSHGW_PAYLOAD_APNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "payload.h"
#include "pushgw.h"

#define PGW_APNS_MAX_BODY 4096      /* bytes */
#define PGW_APNS_MAX_BODY_VOIP 5120 /* bytes, apns-push-type voip */
#define PGW_APNS_MAX_COLLAPSE_ID 64 /* bytes */
/* Room kept for the badge number: "-2147483648". */
#define PGW_APNS_BADGE_RESERVE 11
#define PGW_APNS_UUID_LEN 36

struct pgw_apns_payload {
    /*
     * The body, without the badge number when |badge_increment|: the
     * device's number goes at byte |badge_at|. Not NUL-terminated.
     */
    char *body;
    size_t body_len;
    bool badge_increment;
    size_t badge_at;
    /* A numeric badge: the number sent (the same for every device). */
    bool badge_number;
    int32_t badge;
    char push_type[16]; /* apns-push-type */
    int priority;       /* apns-priority: 10, 5 or 1 */
    char *collapse_id;  /* apns-collapse-id, NULL when none */
    int64_t expiration; /* apns-expiration, Unix seconds */
    bool shortened;     /* the alert body was cut to fit */
};

/*
 * Maps the resolved content |content| (an object; not modified) to an APNs
 * request: aps keys into "aps" (an "aps" object in the content is the
 * base), "title"/"subtitle" merged into the alert dictionary, other keys
 * kept as top-level custom keys; "apns-push-type", "apns-priority" and
 * "collapse-id" become headers. "badge": a number is sent as an integer
 * (cut to int32; |badge_number| and |badge| say which), "Increment"
 * (case-sensitive, as the LeanCloud guide says) leaves room for the
 * device's number, anything else ("increment" too) is dropped. Push type: the
 * key if valid, else "background" when aps has content-available and none of
 * alert, badge, sound, else "alert". Priority: the key if 1, 5 or 10, else 5
 * for background, else 10. The body (counting PGW_APNS_BADGE_RESERVE for an
 * Increment badge) must fit PGW_APNS_MAX_BODY (5120 for voip): else the alert
 * body is shortened on a UTF-8 boundary ending in "…". |expires_at_s| is the
 * event timestamp plus validity_s; |now_s| the time. On success stores a new
 * payload in |*ret_p| (free with pgw_payload_apns_free()). Errors, with
 * |*ret_reason| (if not NULL) set to an outcome reason: PGW_PAYLOAD_ERR_EXPIRED
 * ("expired": now_s >= expires_at_s), PGW_ERR_TOO_LARGE ("payload_too_large"),
 * PGW_ERR_INVAL
 * ("bad_collapse_id": over 64 bytes, or bytes other than visible ASCII
 * and inner spaces: a final failure, never retried), PGW_ERR_NOMEM.
 */
int pgw_payload_apns_build(const cJSON *content, int64_t expires_at_s,
                           int64_t now_s, struct pgw_apns_payload **ret_p,
                           const char **ret_reason);

void pgw_payload_apns_free(struct pgw_apns_payload *p);

/* Upper bound of the body length of any device (buffer size to pass). */
size_t pgw_payload_apns_body_max(const struct pgw_apns_payload *p);

/*
 * Writes the body for a device whose badge after the increment is |badge|
 * (ignored unless |p->badge_increment|) into |buf| of |cap| bytes; stores
 * its length in |*ret_len|. Errors: PGW_ERR_TOO_LARGE when |cap| is short.
 */
int pgw_payload_apns_body(const struct pgw_apns_payload *p, int32_t badge,
                          char *buf, size_t cap, size_t *ret_len);

/*
 * The apns-id of the push of event |event_id| to installation
 * |installation_id|: a canonical lowercase version-4-format UUID made from
 * SHA-256(event_id, installation_id), so a retry keeps its id. Writes 36
 * characters and a NUL into |ret_uuid|.
 */
void pgw_payload_apns_id(const char *event_id, int64_t installation_id,
                         char ret_uuid[PGW_APNS_UUID_LEN + 1]);

/* The same in two steps, the first once per event: the event's key, then
 * the id of each installation from it. */
#define PGW_APNS_ID_KEY_LEN 32
void pgw_payload_apns_id_key(const char *event_id,
                             unsigned char ret_key[PGW_APNS_ID_KEY_LEN]);
void pgw_payload_apns_id_from_key(const unsigned char key[PGW_APNS_ID_KEY_LEN],
                                  int64_t installation_id,
                                  char ret_uuid[PGW_APNS_UUID_LEN + 1]);

#endif
