/*
 * LeanCloud request authentication (DESIGN §15.1, §15.2), both sides:
 * checking the headers of a /1.1/ request, and signing pushgw's own calls
 * to a LeanEngine hook. Pure: no I/O, no logging, no clock (the time is
 * passed in).
 *
 * A request names its app with X-LC-Id and proves a key with one of
 *   X-LC-Key: <app_key>                      app
 *   X-LC-Key: <master_key>,master            master
 *   X-LC-Sign: <md5(ts + app_key)>,<ts>      app (the JS SDK's default)
 *   X-LC-Sign: <md5(ts + master_key)>,<ts>,master   master
 * with ts in milliseconds and the md5 in hex (either case), exactly as
 * leancloud-storage 4.x makes them and leanengine 3.x checks them.
 *
 * Age of a signature: LeanCloud's SDKs sign with the phone's clock, and
 * the app key ships inside every app, so an app-key signature proves
 * little beyond the key itself; refusing a phone whose clock is a few
 * hours off would only break its registration. A master-key signature is
 * worth replaying, so it is held to a tight window. Beyond its window, in
 * either direction, a signature is stale: 401 like a wrong one.
 */
#ifndef PUSHGW_LC_AUTH_H
#define PUSHGW_LC_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pushgw.h"

#define PGW_LC_AUTH_APP_SIGN_MAX_AGE_MS (24LL * 3600 * 1000)
#define PGW_LC_AUTH_MASTER_SIGN_MAX_AGE_MS (15LL * 60 * 1000)
/* "<32 hex>,<13+ digits>,master" and a NUL fit */
#define PGW_LC_AUTH_SIGN_BYTES 64

enum pgw_lc_auth_level {
    PGW_LC_AUTH_NONE = 0,
    PGW_LC_AUTH_APP = 1,    /* the app key */
    PGW_LC_AUTH_MASTER = 2, /* the master key */
};

/* One app's LeanCloud identity; a NULL key cannot be used. */
struct pgw_lc_keys {
    const char *app_id;
    const char *app_key;
    const char *master_key;
};

/*
 * Checks a request's headers (NULL when absent: |id| X-LC-Id, |key|
 * X-LC-Key, |sign| X-LC-Sign) against |keys| at |now_ms|. X-LC-Key is
 * tried first, then X-LC-Sign. Keys are compared in constant time.
 * Returns 0 and the level proved in *|ret_level|, or PGW_ERR_AUTH (no or
 * wrong id, key or signature; a stale signature).
 */
int pgw_lc_auth_check(const struct pgw_lc_keys *keys, const char *id,
                      const char *key, const char *sign, int64_t now_ms,
                      enum pgw_lc_auth_level *ret_level);

/*
 * The X-LC-Sign value for |key| at |now_ms| ("<md5 hex>,<ts>" and
 * ",master" when |master|) into |buf| of |size| (>=
 * PGW_LC_AUTH_SIGN_BYTES). Returns 0, PGW_ERR_INVAL (no key, small
 * buffer), PGW_ERR_CRYPTO.
 */
int pgw_lc_auth_sign(const char *key, int64_t now_ms, bool master, char *buf,
                     size_t size);

#endif
