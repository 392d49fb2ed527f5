/*
 * The checked JSON reader shared by every module that reads JSON from a
 * peer or a file (event, resolve, template, render, oauth, the HTTP API):
 * a strict parse, typed getters that say which field is wrong and why,
 * and the escaped length and shortening of strings for the payload
 * builders. Pure: no I/O, no logging.
 *
 * cJSON accepts invalid UTF-8, raw control characters in strings and any
 * nesting up to its own limit; pgw_json_parse() checks the raw text first
 * (strict UTF-8 as util/utf8.h; no "\u0000"; nesting depth, string length
 * and array size caps) and only then hands it to cJSON.
 */
#ifndef PUSHGW_UTIL_JSON_H
#define PUSHGW_UTIL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "pushgw.h"

/* Caps of the checked reader. */
#define PGW_JSON_MAX_DEPTH 32               /* nested objects/arrays */
#define PGW_JSON_MAX_ARRAY_ITEMS 100000     /* items in one array */
#define PGW_JSON_MAX_STRING_BYTES (1 << 20) /* raw bytes of one string */

struct pgw_json_limits {
    int max_depth;           /* <= PGW_JSON_MAX_DEPTH */
    size_t max_array_items;  /* per array */
    size_t max_string_bytes; /* raw (escaped) bytes per string */
};

/* The default limits above. */
void pgw_json_limits_default(struct pgw_json_limits *ret_lim);

/*
 * Checks then parses the |len| bytes at |buf| (no NUL needed) as exactly one
 * JSON value (whitespace around it allowed) within |lim| (NULL: defaults).
 * On success stores the tree in |*ret_json| (free with cJSON_Delete()).
 * Errors: PGW_ERR_INVAL (not JSON, bad UTF-8, over a cap), PGW_ERR_NOMEM;
 * then |*ret_offset| (if not NULL) is the byte offset of the problem and
 * |*ret_why| (if not NULL) a static lowercase reason.
 */
int pgw_json_parse(const char *buf, size_t len,
                   const struct pgw_json_limits *lim, cJSON **ret_json,
                   size_t *ret_offset, const char **ret_why);

/*
 * Why an input was refused, in the form the HTTP API answers
 * {"error": reason, "field": field}. |field| is "" when the problem is the
 * input as a whole ("invalid JSON at byte 12").
 */
struct pgw_json_error {
    char field[64];
    char reason[160];
};

/*
 * Fills |err| (when not NULL) with |field| and the formatted reason, both
 * cut to fit; returns |rc|, so that `return pgw_json_fail(...)` reads well.
 */
int pgw_json_fail(struct pgw_json_error *err, int rc, const char *field,
                  const char *fmt, ...) PGW_PRINTF(4, 5);

/* The member |name| of the object |obj| (case-sensitive); NULL when |obj|
 * is not an object, or the member is absent or JSON null. */
const cJSON *pgw_json_member(const cJSON *obj, const char *name);

/* True when |obj| has a member |name| (case-sensitive), null included.
 * cJSON_HasObjectItem() ignores case: a case-insensitive test with a
 * case-sensitive delete once looped forever. */
bool pgw_json_has_key(const cJSON *obj, const char *name);

/* Deletes every member |name| of |obj| (case-sensitive; an object parsed
 * from text may hold a name more than once). */
void pgw_json_delete_key(cJSON *obj, const char *name);

/* Flags of the typed getters. */
#define PGW_JSON_REQUIRED 0x1 /* absent or null is an error */
#define PGW_JSON_NONEMPTY 0x2 /* strings: "" is an error */

/*
 * The typed getters read the member |name| of |obj| (absent and null are
 * the same). Each returns 1 with |*ret| set when the member is there and
 * valid; 0 when it is absent and not PGW_JSON_REQUIRED (|*ret| untouched);
 * PGW_ERR_INVAL with |err| (if not NULL) naming |name| and saying why:
 * "is required", "must be a string", "must not be empty",
 * "longer than N bytes", "must be an integer from A to B",
 * "must be a boolean", "must be an object", "must be an array",
 * "more than N items".
 */

/* A string of at most |max_bytes| bytes; |*ret| points into |obj|. */
int pgw_json_get_string(const cJSON *obj, const char *name, unsigned flags,
                        size_t max_bytes, const char **ret,
                        struct pgw_json_error *err);

/* An integral number within [|min|, |max|]. */
int pgw_json_get_int(const cJSON *obj, const char *name, unsigned flags,
                     int64_t min, int64_t max, int64_t *ret,
                     struct pgw_json_error *err);

int pgw_json_get_bool(const cJSON *obj, const char *name, unsigned flags,
                      bool *ret, struct pgw_json_error *err);

/* An object; |*ret| points into |obj|. */
int pgw_json_get_object(const cJSON *obj, const char *name, unsigned flags,
                        const cJSON **ret, struct pgw_json_error *err);

/* An array of at most |max_items| items; |*ret| points into |obj|. */
int pgw_json_get_array(const cJSON *obj, const char *name, unsigned flags,
                       size_t max_items, const cJSON **ret,
                       struct pgw_json_error *err);

/*
 * True, with |*ret| set, when |it| is a number with an integral value
 * within [|min|, |max|] (|min| and |max| within ±2^53, where doubles are
 * exact).
 */
bool pgw_json_int_value(const cJSON *it, int64_t min, int64_t max,
                        int64_t *ret);

/*
 * The number of bytes cJSON prints for the string |s| of |len| bytes,
 * without the surrounding quotes (escapes counted).
 */
size_t pgw_json_escaped_len(const char *s, size_t len);

/*
 * Writes the string |s| of |len| bytes escaped as cJSON prints it, without
 * the quotes, into |dst| (pgw_json_escaped_len() bytes, no NUL); returns
 * that length.
 */
size_t pgw_json_escape(char *dst, const char *s, size_t len);

/*
 * Shortens the string item |str| (valid UTF-8) so that its printed
 * (escaped) length drops by at least |excess| bytes, cutting on a
 * character boundary and appending "…" (U+2026). Errors:
 * PGW_ERR_TOO_LARGE when even an empty prefix is not short enough (|str|
 * unchanged), PGW_ERR_NOMEM.
 */
int pgw_json_shorten(cJSON *str, size_t excess);

#endif
