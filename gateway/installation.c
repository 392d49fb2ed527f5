/* Platform names of installations (see installation.h). */
#include "installation.h"

#include <string.h>

#include "pushgw.h"

const char *pgw_platform_name(enum pgw_platform p)
{
    return p == PGW_PLATFORM_IOS ? "ios" : "android";
}

int pgw_platform_parse(const char *s, enum pgw_platform *ret_p)
{
    if (s && strcmp(s, "ios") == 0) {
        *ret_p = PGW_PLATFORM_IOS;
        return 0;
    }
    if (s && strcmp(s, "android") == 0) {
        *ret_p = PGW_PLATFORM_ANDROID;
        return 0;
    }
    return PGW_ERR_INVAL;
}
