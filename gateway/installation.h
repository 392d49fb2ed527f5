/*
 * One device: a row of `installations` (DESIGN §10), the one type the
 * store returns, the cache keeps, render reads from an event file and
 * resolve decides on. Pure: no I/O, no logging.
 */
#ifndef PUSHGW_INSTALLATION_H
#define PUSHGW_INSTALLATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pgw_platform {
    PGW_PLATFORM_IOS = 0,
    PGW_PLATFORM_ANDROID = 1,
};
#define PGW_PLATFORM_COUNT 2

/* "ios" / "android" (the column device_type); pgw_platform_parse()
 * returns 0 or PGW_ERR_INVAL (anything else, NULL included). */
const char *pgw_platform_name(enum pgw_platform p);
int pgw_platform_parse(const char *s, enum pgw_platform *ret_p);

/*
 * Borrowed strings: whoever hands one out says how long they live (the
 * store: during its callback). The fields come in this order so that
 * positional initialisers of the common ones stay short.
 */
struct pgw_installation {
    int64_t id;
    enum pgw_platform platform;
    const char *device_token;
    const char *const *channels;
    size_t n_channels;
    /* From the store: after the increment when its lookup made one;
     * without one, the stored value, or 0 when its cache answered. From
     * an event file (render): the stored value, before any increment. */
    int32_t badge;
    const char *apns_topic;      /* NULL: the app's */
    const char *apns_team_id;    /* NULL: the app's default team */
    const char *installation_id; /* the client's id; may be NULL */
};

/*
 * What one push's lookups match besides the recipients' channels, and
 * what they write to the matched iOS rows' badges (docs/SERVICE.md,
 * "Teams and badges"). Derived once per push from its content and its
 * app by pgw_push_event_match() (push.h), and used by every lookup of
 * that push: the dispatcher's, render's, a broadcast's pages. The team
 * rule is said twice, in C by pgw_installation_team_matches() and in
 * SQL by STORE_SQL_TEAM_MATCH (store_int.h), which must agree: a row the
 * SQL matches has its badge written, and one the C refuses gets no push.
 */
struct pgw_installation_match {
    /* iOS devices of this team only (the push's _apns_team_id); NULL:
     * every team. Android devices have no team and always match. */
    const char *apns_team_id;
    /* The app's default team ([app:ID] apns_team_id; NULL: none, as for
     * an app with certificates only): the team of an iOS device that
     * names none. */
    const char *default_team;
    /* Set the matched iOS rows' badge to |badge| (a numeric badge in the
     * content, as Parse does), so that a later "Increment" continues
     * from it. Never together with an increment. */
    bool set_badge;
    int32_t badge;
};

/*
 * Whether |inst| is of the team |m| pushes to: an Android device always;
 * an iOS device when |m| names no team, or its team (its apns_team_id,
 * else |m|'s default team) is |m|'s. |m| NULL: every device.
 */
bool pgw_installation_team_matches(const struct pgw_installation_match *m,
                                   const struct pgw_installation *inst);

#endif
