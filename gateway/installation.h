/*
 * One device: a row of `installations` (DESIGN §10), the one type the
 * store returns, the cache keeps, render reads from an event file and
 * resolve decides on. Pure: no I/O, no logging.
 */
#ifndef PUSHGW_INSTALLATION_H
#define PUSHGW_INSTALLATION_H

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
    const char *apns_team_id;    /* NULL: any team */
    const char *installation_id; /* the client's id; may be NULL */
};

#endif
