/* Unit tests for jwt: ES256 signatures verified with OpenSSL, claims,
 * the 50-minute cache and the 20-minute refresh rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "jwt.h"
#include "pushgw.h"
#include "testutil.h"

static int64_t test_now;

static int64_t test_clock(void *arg)
{
    (void)arg;
    return test_now;
}

struct keypair {
    EVP_PKEY *pkey;
    char *pem; /* PKCS#8 private key */
    size_t pem_len;
};

static void make_key(struct keypair *kp, const char *type)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long n;

    if (strcmp(type, "ec") == 0)
        kp->pkey = EVP_EC_gen("P-256");
    else
        kp->pkey = EVP_RSA_gen(2048);
    assert_non_null(kp->pkey);
    assert_non_null(bio);
    assert_int_equal(
        PEM_write_bio_PKCS8PrivateKey(bio, kp->pkey, NULL, NULL, 0, NULL, NULL),
        1);
    n = BIO_get_mem_data(bio, &data);
    assert_true(n > 0);
    kp->pem = malloc((size_t)n + 1);
    assert_non_null(kp->pem);
    memcpy(kp->pem, data, (size_t)n);
    kp->pem[n] = '\0';
    kp->pem_len = (size_t)n;
    BIO_free(bio);
}

static void free_key(struct keypair *kp)
{
    EVP_PKEY_free(kp->pkey);
    free(kp->pem);
}

/* Decodes base64url (no padding) into |out|; returns the length or -1. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        int v;
        char c = in[i];

        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    return o;
}

/* Verifies the ES256 signature of |token| with |pkey|: 1 ok, 0 bad. */
static int verify_token(const char *token, EVP_PKEY *pkey)
{
    const char *dot2 = strrchr(token, '.');
    unsigned char raw[80], der[128], *p = der;
    long rawlen;
    ECDSA_SIG *sig;
    BIGNUM *r, *s;
    int derlen, ok;
    EVP_MD_CTX *md;

    if (!dot2)
        return 0;
    rawlen = b64url_decode(dot2 + 1, strlen(dot2 + 1), raw);
    if (rawlen != 64)
        return 0;
    sig = ECDSA_SIG_new();
    r = BN_bin2bn(raw, 32, NULL);
    s = BN_bin2bn(raw + 32, 32, NULL);
    assert_non_null(sig);
    assert_int_equal(ECDSA_SIG_set0(sig, r, s), 1);
    derlen = i2d_ECDSA_SIG(sig, &p);
    assert_true(derlen > 0);
    md = EVP_MD_CTX_new();
    assert_non_null(md);
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey),
                     1);
    ok = EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)token,
                          (size_t)(dot2 - token)) == 1;
    EVP_MD_CTX_free(md);
    ECDSA_SIG_free(sig);
    return ok;
}

static char *decode_part(const char *token, int index)
{
    const char *start = token, *end;
    unsigned char buf[512];
    long n;
    char *out;

    while (index-- > 0) {
        start = strchr(start, '.');
        assert_non_null(start);
        start++;
    }
    end = strchr(start, '.');
    if (!end)
        end = start + strlen(start);
    n = b64url_decode(start, (size_t)(end - start), buf);
    assert_true(n >= 0);
    out = malloc((size_t)n + 1);
    assert_non_null(out);
    memcpy(out, buf, (size_t)n);
    out[n] = '\0';
    return out;
}

static void test_base64url(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"", 0, ""},
        {"f", 1, "Zg"},
        {"fo", 2, "Zm8"},
        {"foo", 3, "Zm9v"},
        {"foob", 4, "Zm9vYg"},
        {"fooba", 5, "Zm9vYmE"},
        {"foobar", 6, "Zm9vYmFy"},
        {"\xfb\xff", 2, "-_8"},
        {"\xff\xfe\xfd", 3, "__79"},
    };
    char out[32];
    size_t i;

    (void)state;
    for (i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        size_t n = pgw_jwt_base64url((const unsigned char *)cases[i].in,
                                     cases[i].len, out);

        assert_string_equal(out, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
    }
}

static void test_sign_and_verify(void **state)
{
    struct keypair kp, other;
    struct pgw_jwt *jwt = NULL;
    const char *tok, *auth;
    char *hdr, *claims, *copy;

    (void)state;
    make_key(&kp, "ec");
    make_key(&other, "ec");
    assert_int_equal(
        pgw_jwt_new("TEAM000001", "KEY0000001", kp.pem, kp.pem_len, &jwt), 0);
    pgw_jwt_set_clock(jwt, test_clock, NULL);
    test_now = 1700000000;
    assert_int_equal(pgw_jwt_issued_at(jwt), 0);
    assert_int_equal(pgw_jwt_token(jwt, &tok), 0);
    hdr = decode_part(tok, 0);
    claims = decode_part(tok, 1);
    assert_string_equal(hdr, "{\"alg\":\"ES256\",\"kid\":\"KEY0000001\"}");
    assert_string_equal(claims, "{\"iss\":\"TEAM000001\",\"iat\":1700000000}");
    assert_true(verify_token(tok, kp.pkey));
    assert_false(verify_token(tok, other.pkey));
    /* a changed claim no longer verifies */
    copy = strdup(tok);
    assert_non_null(copy);
    copy[strchr(copy, '.') - copy + 3] ^= 1;
    assert_false(verify_token(copy, kp.pkey));
    free(copy);
    assert_int_equal(pgw_jwt_authorization(jwt, &auth), 0);
    assert_memory_equal(auth, "bearer ", 7);
    assert_string_equal(auth + 7, tok);
    assert_int_equal(pgw_jwt_issued_at(jwt), 1700000000);
    assert_int_equal(pgw_jwt_signed_count(jwt), 1);
    assert_string_equal(pgw_jwt_team_id(jwt), "TEAM000001");
    assert_string_equal(pgw_jwt_key_id(jwt), "KEY0000001");
    free(hdr);
    free(claims);
    pgw_jwt_free(jwt);
    free_key(&kp);
    free_key(&other);
}

static void test_cache_49_50_minutes(void **state)
{
    struct keypair kp;
    struct pgw_jwt *jwt = NULL;
    const char *tok;
    char *first;
    int i;

    (void)state;
    make_key(&kp, "ec");
    assert_int_equal(pgw_jwt_new("TEAM1", "KEY1", kp.pem, kp.pem_len, &jwt), 0);
    pgw_jwt_set_clock(jwt, test_clock, NULL);
    test_now = 1000000;
    assert_int_equal(pgw_jwt_token(jwt, &tok), 0);
    first = strdup(tok);
    assert_non_null(first);
    /* reused for every request up to 49:59 */
    for (i = 0; i < 100; i++) {
        test_now = 1000000 + i * 30;
        assert_int_equal(pgw_jwt_token(jwt, &tok), 0);
        assert_string_equal(tok, first);
    }
    test_now = 1000000 + 49 * 60;
    assert_int_equal(pgw_jwt_token(jwt, &tok), 0);
    assert_string_equal(tok, first);
    test_now = 1000000 + 50 * 60 - 1;
    assert_int_equal(pgw_jwt_token(jwt, &tok), 0);
    assert_string_equal(tok, first);
    assert_int_equal(pgw_jwt_signed_count(jwt), 1);
    /* 50 minutes: a new token with the new iat */
    test_now = 1000000 + 50 * 60;
    assert_int_equal(pgw_jwt_token(jwt, &tok), 0);
    assert_string_not_equal(tok, first);
    assert_int_equal(pgw_jwt_issued_at(jwt), 1000000 + 50 * 60);
    assert_int_equal(pgw_jwt_signed_count(jwt), 2);
    assert_true(verify_token(tok, kp.pkey));
    /* a clock that jumps back re-signs instead of using a future iat */
    test_now = 1000000 + 10 * 60;
    assert_int_equal(pgw_jwt_token(jwt, &tok), 0);
    assert_int_equal(pgw_jwt_issued_at(jwt), 1000000 + 10 * 60);
    assert_int_equal(pgw_jwt_signed_count(jwt), 3);
    free(first);
    pgw_jwt_free(jwt);
    free_key(&kp);
}

static void test_refresh_20_minute_rule(void **state)
{
    struct keypair kp;
    struct pgw_jwt *jwt = NULL;
    const char *auth, *now_auth;
    char *first, *second;
    int changed = -1;

    (void)state;
    make_key(&kp, "ec");
    assert_int_equal(pgw_jwt_new("TEAM1", "KEY1", kp.pem, kp.pem_len, &jwt), 0);
    pgw_jwt_set_clock(jwt, test_clock, NULL);
    test_now = 5000000;
    assert_int_equal(pgw_jwt_authorization(jwt, &auth), 0);
    first = strdup(auth);
    assert_non_null(first);
    /* ExpiredProviderToken 10 minutes later: too soon, same token */
    test_now += 10 * 60;
    assert_int_equal(pgw_jwt_refresh(jwt, first, &now_auth, &changed), 0);
    assert_int_equal(changed, 0);
    assert_string_equal(now_auth, first);
    test_now += 10 * 60 - 1; /* 19:59 */
    assert_int_equal(pgw_jwt_refresh(jwt, first, &now_auth, &changed), 0);
    assert_int_equal(changed, 0);
    assert_int_equal(pgw_jwt_signed_count(jwt), 1);
    /* at 20 minutes: refreshed */
    test_now += 1;
    assert_int_equal(pgw_jwt_refresh(jwt, first, &now_auth, &changed), 0);
    assert_int_equal(changed, 1);
    assert_string_not_equal(now_auth, first);
    assert_true(verify_token(now_auth + 7, kp.pkey));
    second = strdup(now_auth);
    assert_non_null(second);
    /* a late answer about the old token does not refresh again */
    assert_int_equal(pgw_jwt_refresh(jwt, first + 7, &now_auth, &changed), 0);
    assert_int_equal(changed, 0);
    assert_string_equal(now_auth, second);
    /* nor does the new token being rejected right away */
    assert_int_equal(pgw_jwt_refresh(jwt, second, &now_auth, &changed), 0);
    assert_int_equal(changed, 0);
    assert_int_equal(pgw_jwt_signed_count(jwt), 2);
    assert_int_equal(pgw_jwt_issued_at(jwt), 5000000 + 20 * 60);
    free(first);
    free(second);
    pgw_jwt_free(jwt);
    free_key(&kp);
}

static void test_bad_inputs(void **state)
{
    struct keypair ec, rsa;
    struct pgw_jwt *jwt = NULL;
    char *dir, *path;
    const char *tok;

    (void)state;
    make_key(&ec, "ec");
    make_key(&rsa, "rsa");
    assert_int_equal(pgw_jwt_new("", "KEY1", ec.pem, ec.pem_len, &jwt),
                     PGW_ERR_INVAL);
    assert_int_equal(pgw_jwt_new("TE\"AM", "KEY1", ec.pem, ec.pem_len, &jwt),
                     PGW_ERR_INVAL);
    assert_int_equal(pgw_jwt_new("TEAM", NULL, ec.pem, ec.pem_len, &jwt),
                     PGW_ERR_INVAL);
    assert_int_equal(pgw_jwt_new("TEAM", "KEY1", rsa.pem, rsa.pem_len, &jwt),
                     PGW_ERR_CRYPTO);
    assert_int_equal(pgw_jwt_new("TEAM", "KEY1", "garbage", 7, &jwt),
                     PGW_ERR_CRYPTO);
    assert_null(jwt);
    assert_int_equal(
        pgw_jwt_new_from_file("TEAM", "KEY1", "/nonexistent/x.p8", &jwt),
        PGW_ERR_IO);
    dir = tu_mkdtemp();
    assert_non_null(dir);
    path = tu_write_file(dir, "AuthKey_KEY1.p8", ec.pem, 0600);
    assert_non_null(path);
    assert_int_equal(pgw_jwt_new_from_file("TEAM", "KEY1", path, &jwt), 0);
    assert_int_equal(pgw_jwt_token(jwt, &tok), 0);
    assert_true(verify_token(tok, ec.pkey));
    pgw_jwt_free(jwt);
    pgw_jwt_free(NULL);
    free(path);
    tu_rm_rf(dir);
    free(dir);
    free_key(&ec);
    free_key(&rsa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_sign_and_verify),
        cmocka_unit_test(test_cache_49_50_minutes),
        cmocka_unit_test(test_refresh_20_minute_rule),
        cmocka_unit_test(test_bad_inputs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
