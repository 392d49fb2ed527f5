/* LeanCloud request authentication and hook-call signing. */
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#include "lc_auth.h"

#define NOW 1700000000000LL
/* md5("1700000000000appkey") and md5("1700000000000masterkey"), made by
 * node's crypto as leancloud-storage makes them */
#define APP_SIGN "54c13acf6ac04dd9585fe202a973c7cc,1700000000000"
#define MASTER_SIGN "640409e79b290dc96eb56fd5f17814f9,1700000000000,master"

static const struct pgw_lc_keys keys = {"lcid", "appkey", "masterkey"};

static const struct {
    const char *id, *key, *sign;
    int64_t now;
    int rc;
    enum pgw_lc_auth_level level;
} cases[] = {
    {"lcid", "appkey", NULL, NOW, 0, PGW_LC_AUTH_APP},
    {"lcid", "masterkey,master", NULL, NOW, 0, PGW_LC_AUTH_MASTER},
    {"lcid", "masterkey", NULL, NOW, 0, PGW_LC_AUTH_APP},
    {"lcid", NULL, APP_SIGN, NOW, 0, PGW_LC_AUTH_APP},
    {"lcid", NULL, MASTER_SIGN, NOW, 0, PGW_LC_AUTH_MASTER},
    /* upper-case hex is accepted, as leanengine lower-cases */
    {"lcid", NULL, "54C13ACF6AC04DD9585FE202A973C7CC,1700000000000", NOW, 0,
     PGW_LC_AUTH_APP},
    /* a wrong key falls back to a good signature */
    {"lcid", "nope", APP_SIGN, NOW, 0, PGW_LC_AUTH_APP},
    /* clock skew within the windows, both directions */
    {"lcid", NULL, APP_SIGN, NOW + PGW_LC_AUTH_APP_SIGN_MAX_AGE_MS, 0,
     PGW_LC_AUTH_APP},
    {"lcid", NULL, APP_SIGN, NOW - PGW_LC_AUTH_APP_SIGN_MAX_AGE_MS, 0,
     PGW_LC_AUTH_APP},
    {"lcid", NULL, MASTER_SIGN, NOW + PGW_LC_AUTH_MASTER_SIGN_MAX_AGE_MS, 0,
     PGW_LC_AUTH_MASTER},
    /* stale */
    {"lcid", NULL, APP_SIGN, NOW + PGW_LC_AUTH_APP_SIGN_MAX_AGE_MS + 1,
     PGW_ERR_AUTH, 0},
    {"lcid", NULL, MASTER_SIGN, NOW + PGW_LC_AUTH_MASTER_SIGN_MAX_AGE_MS + 1,
     PGW_ERR_AUTH, 0},
    {"lcid", NULL, MASTER_SIGN, NOW - PGW_LC_AUTH_MASTER_SIGN_MAX_AGE_MS - 1,
     PGW_ERR_AUTH, 0},
    /* wrong */
    {"other", "appkey", NULL, NOW, PGW_ERR_AUTH, 0},
    {NULL, "appkey", NULL, NOW, PGW_ERR_AUTH, 0},
    {"lcid", NULL, NULL, NOW, PGW_ERR_AUTH, 0},
    {"lcid", "appke", NULL, NOW, PGW_ERR_AUTH, 0},
    {"lcid", "appkey,master", NULL, NOW, PGW_ERR_AUTH, 0},
    {"lcid", "masterkey,admin", NULL, NOW, PGW_ERR_AUTH, 0},
    {"lcid", "", NULL, NOW, PGW_ERR_AUTH, 0},
    /* the app key's signature does not make a master one */
    {"lcid", NULL, "54c13acf6ac04dd9585fe202a973c7cc,1700000000000,master", NOW,
     PGW_ERR_AUTH, 0},
    {"lcid", NULL, "54c13acf6ac04dd9585fe202a973c7cd,1700000000000", NOW,
     PGW_ERR_AUTH, 0},
    {"lcid", NULL, "54c13acf6ac04dd9585fe202a973c7cc,1700000000001", NOW,
     PGW_ERR_AUTH, 0},
    {"lcid", NULL, "54c13acf6ac04dd9585fe202a973c7cc", NOW, PGW_ERR_AUTH, 0},
    {"lcid", NULL, "54c13acf6ac04dd9585fe202a973c7cc,", NOW, PGW_ERR_AUTH, 0},
    {"lcid", NULL, "54c13acf6ac04dd9585fe202a973c7cc,17x", NOW, PGW_ERR_AUTH,
     0},
    {"lcid", NULL, "54c13acf,1700000000000", NOW, PGW_ERR_AUTH, 0},
    {"lcid", NULL, ",", NOW, PGW_ERR_AUTH, 0},
    {"lcid", NULL, "", NOW, PGW_ERR_AUTH, 0},
};

static void test_check(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum pgw_lc_auth_level level = PGW_LC_AUTH_NONE;
        int rc = pgw_lc_auth_check(&keys, cases[i].id, cases[i].key,
                                   cases[i].sign, cases[i].now, &level);
        if (rc != cases[i].rc || (rc == 0 && level != cases[i].level))
            fail_msg("case %zu: rc %d level %d", i, rc, (int)level);
    }
}

static void test_missing_keys(void **state)
{
    const struct pgw_lc_keys none = {"lcid", NULL, NULL};
    const struct pgw_lc_keys app_only = {"lcid", "appkey", NULL};
    enum pgw_lc_auth_level level;

    (void)state;
    assert_int_equal(
        pgw_lc_auth_check(&none, "lcid", "", APP_SIGN, NOW, &level),
        PGW_ERR_AUTH);
    assert_int_equal(pgw_lc_auth_check(&app_only, "lcid", ",master",
                                       MASTER_SIGN, NOW, &level),
                     PGW_ERR_AUTH);
    assert_int_equal(
        pgw_lc_auth_check(&app_only, "lcid", NULL, APP_SIGN, NOW, &level), 0);
}

static void test_sign(void **state)
{
    char buf[PGW_LC_AUTH_SIGN_BYTES];
    enum pgw_lc_auth_level level;

    (void)state;
    assert_int_equal(pgw_lc_auth_sign("appkey", NOW, false, buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, APP_SIGN);
    assert_int_equal(pgw_lc_auth_sign("masterkey", NOW, true, buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, MASTER_SIGN);
    assert_int_equal(pgw_lc_auth_check(&keys, "lcid", NULL, buf, NOW, &level),
                     0);
    assert_int_equal(level, PGW_LC_AUTH_MASTER);
    assert_int_equal(pgw_lc_auth_sign(NULL, NOW, true, buf, sizeof(buf)),
                     PGW_ERR_INVAL);
    assert_int_equal(pgw_lc_auth_sign("k", NOW, true, buf, 10), PGW_ERR_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_missing_keys),
        cmocka_unit_test(test_sign),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
