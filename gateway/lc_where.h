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
 * Operators: a plain value (equality; on channels: "contains"), $in, $nin,
 * $all, $exists, $ne, and $and / $or of such queries. Values are strings
 * (any JSON type elsewhere is 107 naming the field). Anything else is an
 * error naming the operator or field — never a broader audience. Every
 * value travels as a parameter; the SQL text holds only column names,
 * operators and $n placeholders, so no query can produce a SQL syntax
 * error.
 *
 * Usage:
 *
 *     struct pgw_where w;
 *     struct pgw_lc_error err;
 *     if (pgw_where_compile(where, channels, 3, &w, &err) < 0)
 *         answer err (400, code 107, err.field names what is refused);
 *     ... "SELECT … FROM installations i WHERE i.app_id = $1 AND i.valid
 *          AND i.id > $2 AND (" w.sql ")", params w.params[0..n_params)
 *     pgw_where_release(&w);
 *
 * `where` and `channels` may each be NULL (absent): both absent is every
 * device of the app (w.sql "true"); both present is their conjunction.
 */
#ifndef PUSHGW_LC_WHERE_H
#define PUSHGW_LC_WHERE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "lc_installation.h"
#include "pushgw.h"

/* Bounds on one query: what a real app sends is far below them. */
#define PGW_WHERE_MAX_DEPTH 8     /* nested $and / $or */
#define PGW_WHERE_MAX_PARAMS 256  /* values, each one parameter */
#define PGW_WHERE_MAX_SQL 65536   /* bytes of the compiled condition */

struct pgw_where {
    char *sql;      /* a boolean SQL expression; placeholders from $first */
    char **params;  /* text values ($in lists as Postgres array literals) */
    size_t n_params;
};

/*
 * Compiles |where| (a JSON object or NULL) and |channels| (a JSON array
 * of strings or NULL) with placeholders numbered from |first| (≥ 1).
 * Returns PGW_OK and fills |out| (release with pgw_where_release), or a
 * negative PGW_ERR_* with |err| filled (status 400, code 107 for an
 * unsupported operator or field, 111 for a value of the wrong type) and
 * |out| empty.
 */
int pgw_where_compile(const cJSON *where, const cJSON *channels, int first,
                      struct pgw_where *out, struct pgw_lc_error *err);

void pgw_where_release(struct pgw_where *w);

#endif
