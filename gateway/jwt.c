/* ES256 provider tokens for APNs; see jwt.h. */
#include "jwt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "pushgw.h"
#include "util/clock.h"
#include "util/file.h"

#define KEY_FILE_MAX (64 * 1024)

struct pgw_jwt {
    char team_id[PGW_JWT_ID_MAX + 1];
    char key_id[PGW_JWT_ID_MAX + 1];
    EVP_PKEY *key;
    pgw_jwt_clock_fn clock;
    void *clock_arg;
    /* "bearer " followed by the token, NUL-terminated; NULL when none. */
    char *bearer;
    int64_t iat;
    uint64_t n_signed;
};

static const char B64URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t pgw_jwt_base64url(const unsigned char *in, size_t len, char *out)
{
    size_t i, o = 0;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        out[o++] = B64URL[(v >> 6) & 63];
        out[o++] = B64URL[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        out[o++] = B64URL[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int valid_id(const char *s)
{
    size_t n = 0;

    if (!s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return n >= 1 && n <= PGW_JWT_ID_MAX;
}

static int64_t default_clock(void *arg)
{
    (void)arg;
    return pgw_clock_wall_ms() / 1000;
}

int pgw_jwt_new(const char *team_id, const char *key_id, const char *pem,
                size_t pem_len, struct pgw_jwt **ret_jwt)
{
    struct pgw_jwt *self = NULL;
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;
    char curve[32];
    size_t curve_len = 0;
    int ret;

    if (!valid_id(team_id) || !valid_id(key_id) || !pem || !ret_jwt ||
        pem_len > INT32_MAX)
        return PGW_ERR_INVAL;
    bio = BIO_new_mem_buf(pem, (int)pem_len);
    if (!bio) {
        ret = PGW_ERR_NOMEM;
        goto out;
    }
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(key, "group", curve, sizeof(curve),
                                       &curve_len) != 1 ||
        (strcmp(curve, "prime256v1") != 0 && strcmp(curve, "P-256") != 0)) {
        ret = PGW_ERR_CRYPTO;
        goto out;
    }
    self = calloc(1, sizeof(*self));
    if (!self) {
        ret = PGW_ERR_NOMEM;
        goto out;
    }
    snprintf(self->team_id, sizeof(self->team_id), "%s", team_id);
    snprintf(self->key_id, sizeof(self->key_id), "%s", key_id);
    self->key = key;
    key = NULL;
    self->clock = default_clock;
    *ret_jwt = self;
    self = NULL;
    ret = 0;
out:
    ERR_clear_error();
    EVP_PKEY_free(key);
    BIO_free(bio);
    free(self);
    return ret;
}

int pgw_jwt_new_from_file(const char *team_id, const char *key_id,
                          const char *path, struct pgw_jwt **ret_jwt)
{
    char *buf = NULL;
    size_t n = 0;
    int ret;

    if (!path)
        return PGW_ERR_INVAL;
    ret = pgw_file_read(path, KEY_FILE_MAX, &buf, &n);
    if (ret != 0)
        return ret;
    ret = pgw_jwt_new(team_id, key_id, buf, n, ret_jwt);
    /* the private key should not linger in freed memory */
    OPENSSL_cleanse(buf, n);
    free(buf);
    return ret;
}

void pgw_jwt_free(struct pgw_jwt *self)
{
    if (!self)
        return;
    EVP_PKEY_free(self->key);
    free(self->bearer);
    free(self);
}

void pgw_jwt_set_clock(struct pgw_jwt *self, pgw_jwt_clock_fn fn, void *arg)
{
    self->clock = fn ? fn : default_clock;
    self->clock_arg = fn ? arg : NULL;
}

/* Signs a new token for |now|; the old one stays on failure. */
static int sign(struct pgw_jwt *self, int64_t now)
{
    char header[128], claims[160];
    char hb64[200], cb64[240], sb64[100];
    unsigned char der[128], raw[64];
    const unsigned char *p;
    size_t der_len = sizeof(der), hl, cl, sl, total;
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *sig = NULL;
    const BIGNUM *r, *s;
    char *input = NULL, *bearer = NULL;
    int ret = PGW_ERR_CRYPTO;

    snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"kid\":\"%s\"}",
             self->key_id);
    snprintf(claims, sizeof(claims), "{\"iss\":\"%s\",\"iat\":%lld}",
             self->team_id, (long long)now);
    hl = pgw_jwt_base64url((const unsigned char *)header, strlen(header), hb64);
    cl = pgw_jwt_base64url((const unsigned char *)claims, strlen(claims), cb64);
    total = 7 + hl + 1 + cl + 1 + 86 + 1;
    bearer = malloc(total);
    if (!bearer) {
        ret = PGW_ERR_NOMEM;
        goto out;
    }
    input = bearer + 7;
    memcpy(bearer, "bearer ", 7);
    memcpy(input, hb64, hl);
    input[hl] = '.';
    memcpy(input + hl + 1, cb64, cl);
    input[hl + 1 + cl] = '\0';

    md = EVP_MD_CTX_new();
    if (!md) {
        ret = PGW_ERR_NOMEM;
        goto out;
    }
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, self->key) != 1 ||
        EVP_DigestSign(md, der, &der_len, (const unsigned char *)input,
                       hl + 1 + cl) != 1)
        goto out;
    /* JWS wants the raw r || s (32 bytes each), not OpenSSL's DER. */
    p = der;
    sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!sig)
        goto out;
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
        goto out;
    sl = pgw_jwt_base64url(raw, sizeof(raw), sb64);
    input[hl + 1 + cl] = '.';
    memcpy(input + hl + 1 + cl + 1, sb64, sl + 1);
    free(self->bearer);
    self->bearer = bearer;
    bearer = NULL;
    self->iat = now;
    self->n_signed++;
    ret = 0;
out:
    ERR_clear_error();
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    free(bearer);
    return ret;
}

static int current(struct pgw_jwt *self)
{
    int64_t now = self->clock(self->clock_arg);

    if (self->bearer && now >= self->iat && now - self->iat < PGW_JWT_MAX_AGE_S)
        return 0;
    return sign(self, now);
}

int pgw_jwt_token(struct pgw_jwt *self, const char **ret_token)
{
    int ret = current(self);

    if (ret != 0)
        return ret;
    *ret_token = self->bearer + 7;
    return 0;
}

int pgw_jwt_authorization(struct pgw_jwt *self, const char **ret_value)
{
    int ret = current(self);

    if (ret != 0)
        return ret;
    *ret_value = self->bearer;
    return 0;
}

int pgw_jwt_refresh(struct pgw_jwt *self, const char *rejected,
                    const char **ret_value, int *ret_changed)
{
    int64_t now;
    int ret;

    if (rejected && strncmp(rejected, "bearer ", 7) == 0)
        rejected += 7;
    now = self->clock(self->clock_arg);
    if (self->bearer && rejected && strcmp(self->bearer + 7, rejected) != 0) {
        /* already replaced since that request was sent */
        ret = current(self);
        if (ret != 0)
            return ret;
        *ret_value = self->bearer;
        *ret_changed = 0;
        return 0;
    }
    if (self->bearer && now >= self->iat &&
        now - self->iat < PGW_JWT_MIN_REFRESH_S) {
        *ret_value = self->bearer;
        *ret_changed = 0;
        return 0;
    }
    ret = sign(self, now);
    if (ret != 0)
        return ret;
    *ret_value = self->bearer;
    *ret_changed = 1;
    return 0;
}

int64_t pgw_jwt_issued_at(const struct pgw_jwt *self)
{
    return self->bearer ? self->iat : 0;
}

uint64_t pgw_jwt_signed_count(const struct pgw_jwt *self)
{
    return self->n_signed;
}

const char *pgw_jwt_team_id(const struct pgw_jwt *self)
{
    return self->team_id;
}

const char *pgw_jwt_key_id(const struct pgw_jwt *self)
{
    return self->key_id;
}
