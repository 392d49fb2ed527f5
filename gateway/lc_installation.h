/*
 * LeanCloud/Parse `_Installation` objects (DESIGN §15.3, §15.4): the JSON
 * an SDK sends, or a line of a console export, mapped to and from an
 * installations row, with LeanCloud's `__op` operations and its error
 * shape. Pure: no I/O, no logging, no clock.
 *
 * One object is applied to a record: a new one (pgw_lc_installation_init)
 * or the row as stored. Each field is checked as it is applied, then
 * pgw_lc_installation_check() checks the record as a whole (a deviceType,
 * a token of the device type's form, the size of the other fields). Fields:
 *
 *   deviceType      "ios" | "android"; another value: 135
 *   deviceToken     iOS: hexadecimal, 64..200 digits, lower-cased;
 *                   Android: the FCM token (Parse's form)
 *   registrationId  Android: the FCM token (LeanCloud's FCM module); it
 *                   wins over deviceToken; kept in `extra` for iOS
 *   vendor          "fcm" (any case) or absent/null; another vendor: 135
 *   installationId  string, lower-cased (Parse)
 *   channels        array of strings; ops Add, AddUnique, Remove, Delete
 *   badge           integer; op Increment {"amount": n} (default 1)
 *   timeZone apnsTopic apnsTeamId deviceProfile   strings
 *   valid           boolean
 *   objectId createdAt updatedAt   kept only with PGW_LC_APPLY_IMPORT
 *                   (ISO strings or {"__type":"Date","iso":…}); read-only
 *                   otherwise (ignored, as the SDKs may echo them)
 *   any other field kept in `extra` as it is; ops Delete, Increment, Add,
 *                   AddUnique, Remove work there too
 *
 * A null value or {"__op":"Delete"} clears a field. An unknown __op is
 * 107 naming it; an op on a field of the wrong type is 111. A field name
 * starting with "__" or holding '$' or '.' is 107; the other fields take
 * at most PGW_LC_MAX_EXTRA_BYTES (116).
 *
 * For `pushgw import` (lc-import), one export object maps with:
 *
 *     struct pgw_lc_installation row;
 *     struct pgw_lc_error err;
 *     if (pgw_lc_installation_from_export(obj, &row, &err) < 0)
 *         skip the line: err.reason is a short key for the summary
 *         ("unsupported_vendor", "missing_token", …), err.error the
 *         sentence naming the field;
 *     else
 *         upsert row (object_id, created_at_ms, updated_at_ms are the
 *         export's, 0/NULL when it had none), then
 *         pgw_lc_installation_release(&row);
 */
#ifndef PUSHGW_LC_INSTALLATION_H
#define PUSHGW_LC_INSTALLATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "pushgw.h"

/* LeanCloud error codes (DESIGN §15.2; LeanCloud's error code list). */
enum {
    PGW_LC_INTERNAL = 1,          /* database down, out of memory */
    PGW_LC_NOT_FOUND = 101,       /* no object with that objectId */
    PGW_LC_INVALID_JSON = 107,    /* malformed JSON, unknown __op */
    PGW_LC_INCORRECT_TYPE = 111,  /* a field of the wrong type */
    PGW_LC_INVALID_CHANNEL = 112, /* empty or too long channel */
    PGW_LC_INVALID_TOKEN = 114,   /* token of the wrong form */
    PGW_LC_TOO_LARGE = 116,       /* body or object over its cap */
    PGW_LC_FORBIDDEN = 119,       /* needs the master key */
    PGW_LC_MISSING_FIELD = 135,   /* required or unsupported value */
    PGW_LC_IMMUTABLE = 136,       /* deviceType/installationId change */
    PGW_LC_UNAUTHORIZED = 401,    /* bad or missing key or signature */
};

/* Caps, for what one phone registers. */
#define PGW_LC_MAX_CHANNELS 1000
#define PGW_LC_MAX_CHANNEL_BYTES 256 /* IM client ids are at most 64 */
#define PGW_LC_MAX_STRING_BYTES 1024 /* timeZone, apnsTopic, … */
#define PGW_LC_MAX_TOKEN_BYTES 4096  /* FCM tokens are ~160 */
#define PGW_LC_MIN_IOS_TOKEN_HEX 64
#define PGW_LC_MAX_IOS_TOKEN_HEX 200 /* Apple: may grow past 32 bytes */
#define PGW_LC_MIN_FCM_TOKEN_BYTES 8
#define PGW_LC_OBJECT_ID_BYTES 24
#define PGW_LC_MAX_OBJECT_ID_BYTES 64      /* imported ids kept as they are */
#define PGW_LC_MAX_EXTRA_BYTES (64 * 1024) /* printed `extra` */

/*
 * Why an object was refused: |status| the HTTP status to answer, |code|
 * and |error| LeanCloud's {"code","error"}, |field| the field named in
 * |error| ("" for the body as a whole), |reason| a short stable key
 * ("unsupported_device_type", "unsupported_vendor", "missing_token",
 * "bad_token", "missing_device_type", "bad_type", "bad_op", "bad_channel",
 * "too_large", "immutable", "bad_date", "bad_json") for counting.
 */
struct pgw_lc_error {
    int status;
    int code;
    char field[64];
    char reason[32];
    char error[256];
};

/* Fills |err| (|fmt| printf-style makes |error|). */
void pgw_lc_error_set(struct pgw_lc_error *err, int status, int code,
                      const char *field, const char *reason, const char *fmt,
                      ...) PGW_PRINTF(6, 7);

/* {"code":N,"error":"…"} in a new string (free()), or NULL (no memory). */
char *pgw_lc_error_json(const struct pgw_lc_error *err);

/*
 * An installation. Strings are owned (free with _release), NULL when not
 * set. |extra| is a JSON object, never NULL after _init.
 */
struct pgw_lc_installation {
    int64_t id; /* installations.id; 0: not stored */
    char *object_id;
    char *device_type; /* "ios" or "android" (after check) */
    char *device_token;
    char *installation_id;
    char **channels;
    size_t n_channels;
    int badge;
    char *time_zone;
    char *apns_topic;
    char *apns_team_id;
    char *device_profile;
    char *vendor; /* NULL or "fcm" */
    bool valid;
    cJSON *extra;
    int64_t created_at_ms; /* 0: unknown (the database's now()) */
    int64_t updated_at_ms;
};

/* An empty record: valid, badge 0, no channels, extra {}. Returns 0 or
 * PGW_ERR_NOMEM. */
int pgw_lc_installation_init(struct pgw_lc_installation *self);
void pgw_lc_installation_release(struct pgw_lc_installation *self);
/* A deep copy of |src| into |dst| (not initialised). 0 or NOMEM. */
int pgw_lc_installation_copy(struct pgw_lc_installation *dst,
                             const struct pgw_lc_installation *src);

/* pgw_lc_installation_apply() flags. */
enum {
    /* objectId, createdAt and updatedAt are taken (an export) */
    PGW_LC_APPLY_IMPORT = 1,
};

/*
 * Applies the JSON object |obj| (plain values and __ops) to |self|.
 * Changing deviceType, or an installationId already set, of a stored
 * record (id != 0) is 136. Returns 0; PGW_ERR_INVAL with |err| filled;
 * PGW_ERR_NOMEM. On error |self| may be partly changed: apply to a copy
 * when the original must survive.
 */
int pgw_lc_installation_apply(struct pgw_lc_installation *self,
                              const cJSON *obj, unsigned flags,
                              struct pgw_lc_error *err);

/*
 * Checks and completes |self| as a whole: a supported deviceType, a token
 * of its form (iOS hex lower-cased), vendor only on Android. 0 or
 * PGW_ERR_INVAL with |err| filled.
 */
int pgw_lc_installation_check(struct pgw_lc_installation *self,
                              struct pgw_lc_error *err);

/*
 * init + apply(PGW_LC_APPLY_IMPORT) + check of one export object. On
 * success |ret| is filled (release it); on failure it is released already.
 * Returns 0, PGW_ERR_INVAL (|err| filled), PGW_ERR_NOMEM.
 */
int pgw_lc_installation_from_export(const cJSON *obj,
                                    struct pgw_lc_installation *ret,
                                    struct pgw_lc_error *err);

/*
 * The object as the API returns it: objectId, createdAt, updatedAt (ISO
 * with milliseconds, UTC), the fields above that are set (registrationId
 * instead of deviceToken for vendor fcm), then |extra|'s fields. A new
 * cJSON object (cJSON_Delete()) or NULL (no memory).
 */
cJSON *pgw_lc_installation_to_json(const struct pgw_lc_installation *self);

/* |ms| since the epoch as "2026-12-07T15:13:02.123Z" into |buf| (>= 32). */
void pgw_lc_format_date(int64_t ms, char *buf, size_t size);
/* An ISO 8601 date-time (UTC "Z" or a ±hh:mm offset; fraction optional)
 * to ms since the epoch: 0 or PGW_ERR_INVAL. */
int pgw_lc_parse_date(const char *s, int64_t *ret_ms);

#endif
