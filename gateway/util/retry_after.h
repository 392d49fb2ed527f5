/*
 * The Retry-After header of an HTTP answer (RFC 9110 §10.2.3), one rule
 * for APNs and FCM: delta-seconds ("120") or an HTTP-date (IMF-fixdate
 * "Sun, 06 Nov 1994 08:49:37 GMT", and the obsolete RFC 850 and asctime
 * forms a recipient must accept), bounded. Pure: the time is passed in.
 */
#ifndef PUSHGW_UTIL_RETRY_AFTER_H
#define PUSHGW_UTIL_RETRY_AFTER_H

#include <stdint.h>

/* The longest wait honoured: a provider asking for more is waited on for
 * a day, and the push's own validity ends it sooner. */
#define PGW_RETRY_AFTER_MAX_MS (24LL * 3600 * 1000)

/*
 * The wait that the header value |value| asks for, in ms, at the wall
 * clock time |now_ms| (ms since the epoch): 0 for a date in the past,
 * at most PGW_RETRY_AFTER_MAX_MS. Spaces and tabs around the value are
 * ignored. Returns -1 when |value| is NULL, empty or malformed (signs,
 * fractions and trailing text included).
 */
int64_t pgw_retry_after_parse(const char *value, int64_t now_ms);

#endif
