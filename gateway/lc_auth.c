/* LeanCloud X-LC-Key / X-LC-Sign: checking requests, signing hook calls. */
#include "lc_auth.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest key accepted in a header (a longer one is wrong anyway). */
#define LC_AUTH_MAX_KEY_BYTES 512

static bool key_equal(const char *given, size_t n, const char *want)
{
    size_t wn;

    if (!want || !*want)
        return false;
    wn = strlen(want);
    /* the length is no secret; the bytes are compared in constant time */
    return n == wn && CRYPTO_memcmp(given, want, n) == 0;
}

/* md5(|ts| as given + |key|) in lowercase hex into |hex| (33 bytes). */
static int md5_hex(const char *ts, size_t ts_len, const char *key, char hex[33])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    if (!ctx)
        return PGW_ERR_CRYPTO;
    ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, ts, ts_len) == 1 &&
         EVP_DigestUpdate(ctx, key, strlen(key)) == 1 &&
         EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 16;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return PGW_ERR_CRYPTO;
    for (unsigned i = 0; i < 16; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0xf];
    }
    hex[32] = '\0';
    return 0;
}

static int check_key(const struct pgw_lc_keys *keys, const char *key,
                     enum pgw_lc_auth_level *ret_level)
{
    size_t n = strlen(key);
    const char *comma = memchr(key, ',', n);

    if (n > LC_AUTH_MAX_KEY_BYTES)
        return PGW_ERR_AUTH;
    if (comma) {
        if (strcmp(comma + 1, "master") != 0 ||
            !key_equal(key, (size_t)(comma - key), keys->master_key))
            return PGW_ERR_AUTH;
        *ret_level = PGW_LC_AUTH_MASTER;
        return 0;
    }
    if (key_equal(key, n, keys->app_key)) {
        *ret_level = PGW_LC_AUTH_APP;
        return 0;
    }
    /* leanengine takes the bare master key as the app key too */
    if (key_equal(key, n, keys->master_key)) {
        *ret_level = PGW_LC_AUTH_APP;
        return 0;
    }
    return PGW_ERR_AUTH;
}

static int check_sign(const struct pgw_lc_keys *keys, const char *sign,
                      int64_t now_ms, enum pgw_lc_auth_level *ret_level)
{
    const char *c1 = strchr(sign, ','), *c2, *ts;
    size_t ts_len;
    bool master = false;
    const char *key;
    char lower[33], want[33];
    int64_t t = 0, age, max_age;

    if (!c1 || c1 - sign != 32)
        return PGW_ERR_AUTH;
    ts = c1 + 1;
    c2 = strchr(ts, ',');
    ts_len = c2 ? (size_t)(c2 - ts) : strlen(ts);
    if (c2) {
        if (strcmp(c2 + 1, "master") != 0)
            return PGW_ERR_AUTH;
        master = true;
    }
    if (ts_len == 0 || ts_len > 15)
        return PGW_ERR_AUTH;
    for (size_t i = 0; i < ts_len; i++) {
        if (!isdigit((unsigned char)ts[i]))
            return PGW_ERR_AUTH;
        t = t * 10 + (ts[i] - '0');
    }
    key = master ? keys->master_key : keys->app_key;
    if (!key || !*key)
        return PGW_ERR_AUTH;
    for (int i = 0; i < 32; i++)
        lower[i] = (char)tolower((unsigned char)sign[i]);
    lower[32] = '\0';
    if (md5_hex(ts, ts_len, key, want) < 0 ||
        CRYPTO_memcmp(lower, want, 32) != 0)
        return PGW_ERR_AUTH;
    age = now_ms - t;
    if (age < 0)
        age = -age;
    max_age = master ? PGW_LC_AUTH_MASTER_SIGN_MAX_AGE_MS
                     : PGW_LC_AUTH_APP_SIGN_MAX_AGE_MS;
    if (age > max_age)
        return PGW_ERR_AUTH;
    *ret_level = master ? PGW_LC_AUTH_MASTER : PGW_LC_AUTH_APP;
    return 0;
}

int pgw_lc_auth_check(const struct pgw_lc_keys *keys, const char *id,
                      const char *key, const char *sign, int64_t now_ms,
                      enum pgw_lc_auth_level *ret_level)
{
    enum pgw_lc_auth_level level = PGW_LC_AUTH_NONE;

    if (!keys || !keys->app_id || !id || strcmp(id, keys->app_id) != 0)
        return PGW_ERR_AUTH;
    if (key && check_key(keys, key, &level) == 0) {
        *ret_level = level;
        return 0;
    }
    if (sign && check_sign(keys, sign, now_ms, &level) == 0) {
        *ret_level = level;
        return 0;
    }
    return PGW_ERR_AUTH;
}

int pgw_lc_auth_sign(const char *key, int64_t now_ms, bool master, char *buf,
                     size_t size)
{
    char ts[24], hex[33];
    size_t n;
    int rc;

    if (!key || !*key || size < PGW_LC_AUTH_SIGN_BYTES || now_ms < 0)
        return PGW_ERR_INVAL;
    n = pgw_fmt_i64(ts, now_ms);
    if ((rc = md5_hex(ts, n, key, hex)) < 0)
        return rc;
    snprintf(buf, size, "%s,%s%s", hex, ts, master ? ",master" : "");
    return 0;
}
