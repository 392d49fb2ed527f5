/* Retry-After (see retry_after.h). */
#include "util/retry_after.h"

#include <stddef.h>
#include <string.h>
#include <time.h>

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static int64_t bounded(int64_t ms)
{
    if (ms < 0)
        return 0;
    return ms > PGW_RETRY_AFTER_MAX_MS ? PGW_RETRY_AFTER_MAX_MS : ms;
}

/* delta-seconds: digits only; a huge number saturates at the bound. */
static int64_t parse_delta(const char *p)
{
    int64_t s = 0;

    for (; *p >= '0' && *p <= '9'; p++)
        if (s <= PGW_RETRY_AFTER_MAX_MS / 1000)
            s = s * 10 + (*p - '0');
    if (*skip_space(p) != '\0')
        return -1;
    return bounded(s * 1000);
}

/*
 * HTTP-date in its three forms. The daemon never calls setlocale(), so
 * strptime() reads English day and month names.
 */
static int64_t parse_date(const char *value, int64_t now_ms)
{
    static const char *const forms[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
        "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
        "%a %b %e %H:%M:%S %Y",      /* asctime */
    };

    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        struct tm tm;
        const char *end;
        time_t t;

        memset(&tm, 0, sizeof(tm));
        end = strptime(value, forms[i], &tm);
        if (!end || *skip_space(end) != '\0')
            continue;
        t = timegm(&tm);
        if (t == (time_t)-1)
            return -1;
        return bounded((int64_t)t * 1000 - now_ms);
    }
    return -1;
}

int64_t pgw_retry_after_parse(const char *value, int64_t now_ms)
{
    if (!value)
        return -1;
    value = skip_space(value);
    if (*value >= '0' && *value <= '9')
        return parse_delta(value);
    if (*value == '\0')
        return -1;
    return parse_date(value, now_ms);
}
