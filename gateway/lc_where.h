/*
 * The audience of a push-API request (DESIGN §15.5): LeanCloud's `where`
 * query over `_Installation`, and its `channels`, compiled to a
 * parameterised SQL condition over the installations table. Pure: no
 * I/O, no logging, no clock.
 *
 * Fields and the columns they name (alias `i`):
 *
 *   channels       i.channels (text[])
 *   deviceType     i.device_type        installationId  i.installation_id
 *   objectId       i.object_id          deviceToken     i.device_token
 *   deviceProfile  i.device_profile     apnsTeamId      i.apns_team_id
 *   timeZone       i.time_zone
 *
 * Operators: a plain value (equality), $in, $nin, $all, $exists, $ne, and
 * $and / $or (non-empty arrays) of such queries; several operators in one
 * field object, and several members of one query, are ANDed. Meaning, as
 * MongoDB gives it to LeanCloud and Parse:
 *
 *   on channels (an array)         on the other fields (scalars)
 *   "x"      contains x            = x
 *   $in      overlaps the list     one of the list (empty: nothing)
 *   $nin     contains none of it   none of the list, or absent (empty:
 *                                  every device)
 *   $all     contains all of it    equals every item (empty: nothing)
 *            (empty: nothing)
 *   $ne      does not contain x    not x, or absent
 *   $exists  true: some channel,   true: IS NOT NULL, false: IS NULL
 *            false: none (channels
 *            is never NULL: [] is
 *            how "no channels" is
 *            stored and answered)
 *
 * Values are strings (valid UTF-8; the checked reader pgw_json_parse()
 * also refuses "\u0000", which cJSON would cut a string at). Anything else
 * is an error naming what is refused, never a broader audience: an
 * unknown field (`badge`, `createdAt`, a nested `a.b`) or operator
 * (`$regex`, `$gt`, `$relatedTo`, `$select`, `$inQuery`, `$nor`, …) is
 * 107; a value of the wrong type (a number, null, a Pointer, a non-array
 * $in, a non-boolean $exists, an empty $or, a non-object query) is 111;
 * a query over the bounds below is 116. Every value travels as a
 * parameter; the SQL text holds only column names, operators and $n
 * placeholders (numbered in order from |first|), so no query can produce
 * a SQL syntax error.
 *
 * Usage:
 *
 *     struct pgw_where w;
 *     struct pgw_lc_error err;
 *     if (pgw_where_compile(where, channels, 3, &w, &err) < 0)
 *         answer err.status with err.code and err.error;
 *     ... "SELECT … FROM installations i WHERE i.app_id = $1 AND i.valid
 *          AND i.id > $2 AND (" w.sql ")", params w.params[0..n_params)
 *     pgw_where_release(&w);
 *
 * `where` and `channels` may each be NULL (absent): both absent is every
 * device of the app (w.sql "true"); both present is their conjunction.
 * The request's `channels` means {"channels": {"$in": [...]}}: an empty
 * list names no device. A JSON null for either is 111, not "absent".
 */
#ifndef PUSHGW_LC_WHERE_H
#define PUSHGW_LC_WHERE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "lc_installation.h"
#include "pushgw.h"

/* Bounds on one query: what a real app sends is far below them. */
#define PGW_WHERE_MAX_DEPTH 8    /* nested $and / $or */
#define PGW_WHERE_MAX_PARAMS 256 /* values, each one parameter */
#define PGW_WHERE_MAX_SQL 65536  /* bytes of the compiled condition */

struct pgw_where {
    char *sql;     /* a boolean SQL expression; placeholders from $first */
    char **params; /* text values ($in lists as Postgres array literals) */
    size_t n_params;
};

/*
 * Compiles |where| (a JSON object or NULL) and |channels| (a JSON array
 * of strings or NULL) with placeholders numbered from |first| (≥ 1).
 * Returns PGW_OK and fills |out| (release with pgw_where_release), or a
 * negative error with |err| filled and |out| empty: PGW_ERR_INVAL (status
 * 400, code 107 for an unsupported operator or field, 111 for a value of
 * the wrong type; err.field names it), PGW_ERR_TOO_LARGE (400, code 116:
 * over a bound), PGW_ERR_NOMEM (500, code 1). The parameters take about
 * the bytes of the values (twice at most, for quotes and backslashes):
 * the caller's body cap bounds them.
 */
int pgw_where_compile(const cJSON *where, const cJSON *channels, int first,
                      struct pgw_where *out, struct pgw_lc_error *err);

/* Frees what |w| holds and empties it (NULL or empty: nothing). */
void pgw_where_release(struct pgw_where *w);

#endif
