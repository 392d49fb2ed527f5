/*
 * A request of the push API (DESIGN §15.5, `POST /1.1/push`): its body
 * checked and turned into the row the push API stores (api_pushes,
 * migration 0009). Pure: no I/O, no logging, the time passed in.
 *
 * Top-level keys (LeanCloud's REST push parameters):
 *
 *   data                 required object: the content (DESIGN §7.3–§8):
 *                        `ios`/`android` objects, `_profile` ("dev" or
 *                        "prod"), `_apns_team_id`, badge a number or
 *                        "Increment"; made into each platform's payload
 *                        as the sender makes it (pgw_resolve_api_push,
 *                        push.c): one a provider would refuse (size,
 *                        collapse-id) is refused, and so is a content
 *                        with nothing for either platform. No event
 *                        variables.
 *   channels             array of strings: devices on any of them
 *   where                object: a query over installations (lc_where.h)
 *   prod                 "dev" | "prod"; absent: a header X-LC-Prod
 *                        other than "1" means dev (LeanCloud's rule; the
 *                        JS SDK sends "0" after AV.setProduction(false));
 *                        "1" or no header: the content's _profile decides
 *   expiration_time      ISO date (or {"__type":"Date","iso":…})
 *   expiration_interval  seconds (a number or a string of digits),
 *                        counted from push_time, else from now
 *   push_time            ISO date; at or before now: now
 *   flow_control         integer >= 1000 (devices per second)
 *   req_id               <= 64 bytes: the same id within 5 minutes is
 *                        the first request's push (the store decides)
 *   notification_id      <= 64 bytes
 *   apns_team_id         the content's `_apns_team_id` (the same value
 *                        when both are given)
 *   _notificationChannel the content's `_notificationChannel` (Android)
 *
 * Any other top-level key is refused (107 naming it): LeanCloud's `cql`
 * and `topic` are not supported, and a key pushgw does not know may be a
 * misspelt `channels` or `where` — ignoring it would broaden the audience.
 *
 * The stored query is `where` with `channels` folded in as
 * {"channels":{"$in":[…]}} (both: {"$and":[where, that]}); neither: {}
 * (every device of the app). It is compiled here, exactly as the sender
 * compiles it, so a query that does not compile is never stored.
 *
 * Errors are LeanCloud's (lc_installation.h): 400 with 107 (a bad or
 * unsupported value, query or key), 111 (a value of the wrong type), 116
 * (a payload over the providers' size), 135 (data missing).
 */
#ifndef PUSHGW_LC_PUSHREQ_H
#define PUSHGW_LC_PUSHREQ_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "lc_installation.h"
#include "pushgw.h"

/* FCM's longest ttl (28 days); APNs keeps a push about as long. A push
 * cannot be valid longer once sent. */
#define PGW_LC_PUSH_MAX_TTL_S (28LL * 24 * 3600)
/* A push_time further ahead is a mistake (a wrong year), not a plan. */
#define PGW_LC_PUSH_MAX_SCHEDULE_S (30LL * 24 * 3600)
/* LeanCloud's minimum of flow_control. */
#define PGW_LC_PUSH_MIN_FLOW_CONTROL 1000
#define PGW_LC_PUSH_MAX_ID_BYTES 64 /* req_id, notification_id */
/* The dedup window of req_id (LeanCloud's). */
#define PGW_LC_PUSH_REQ_ID_WINDOW_S 300

/* The row to store. Owned strings, freed by pgw_lc_pushreq_release(). */
struct pgw_lc_pushreq {
    char *data;            /* JSON object text */
    char *query;           /* JSON object text (channels folded in) */
    const char *profile;   /* "dev", "prod" or NULL (static) */
    int64_t push_at_ms;    /* 0: now */
    int64_t expires_at_ms; /* > push time */
    int flow_control;      /* 0: none */
    char *req_id;          /* NULL: none */
    char *notification_id; /* NULL: none */
};

/*
 * Checks the request body |body| (a JSON object) with the header
 * X-LC-Prod |prod_header| (NULL: absent), at |now_ms|, with the default
 * validity |validity_s| ([delivery] validity_s). Returns 0 with |ret|
 * filled (release it), PGW_ERR_INVAL with |err| filled (|ret| empty), or
 * PGW_ERR_NOMEM.
 */
int pgw_lc_pushreq_parse(const cJSON *body, const char *prod_header,
                         int64_t now_ms, int64_t validity_s,
                         struct pgw_lc_pushreq *ret, struct pgw_lc_error *err);

void pgw_lc_pushreq_release(struct pgw_lc_pushreq *self);

#endif
