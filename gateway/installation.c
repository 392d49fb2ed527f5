/* Platform names of installations and the team rule (see installation.h). */
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

bool pgw_installation_team_matches(const struct pgw_installation_match *m,
                                   const struct pgw_installation *inst)
{
    const char *team;

    if (!m || !m->apns_team_id || inst->platform != PGW_PLATFORM_IOS)
        return true;
    /* As STORE_SQL_TEAM_MATCH: coalesce(apns_team_id, default) = team. */
    team = inst->apns_team_id ? inst->apns_team_id : m->default_team;
    return team && strcmp(team, m->apns_team_id) == 0;
}
