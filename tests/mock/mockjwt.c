/* JWT helpers for the mock servers; see mockjwt.h. */
#include "mockjwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

long mock_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;

    /* Tolerate '=' padding at the end only. */
    while (len > 0 && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= cap)
                return -1;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)n;
}

char *mock_b64url_encode(const uint8_t *in, size_t len)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(len / 3 * 4 + 5);
    size_t n = 0, i = 0;

    if (!out)
        return NULL;
    for (; i + 2 < len; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = tbl[v >> 18];
        out[n++] = tbl[(v >> 12) & 63];
        out[n++] = tbl[(v >> 6) & 63];
        out[n++] = tbl[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[n++] = tbl[v >> 18];
        out[n++] = tbl[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[n++] = tbl[v >> 18];
        out[n++] = tbl[(v >> 12) & 63];
        out[n++] = tbl[(v >> 6) & 63];
    }
    out[n] = '\0';
    return out;
}

static cJSON *decode_part(const char *p, size_t len)
{
    uint8_t buf[MOCK_JWT_MAX];
    long n = mock_b64url_decode(p, len, buf, sizeof(buf));
    cJSON *obj;

    if (n <= 0)
        return NULL;
    obj = cJSON_ParseWithLength((const char *)buf, (size_t)n);
    if (obj && !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

int mock_jwt_parse(const char *token, size_t len, struct mock_jwt *ret)
{
    const char *d1, *d2, *end = token + len;
    struct mock_jwt jwt = {0};
    long n;

    if (len == 0 || len > MOCK_JWT_MAX)
        return -1;
    d1 = memchr(token, '.', len);
    if (!d1)
        return -1;
    d2 = memchr(d1 + 1, '.', (size_t)(end - d1 - 1));
    if (!d2 || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)))
        return -1;
    jwt.header = decode_part(token, (size_t)(d1 - token));
    jwt.claims = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
    n = mock_b64url_decode(d2 + 1, (size_t)(end - d2 - 1), jwt.sig,
                           sizeof(jwt.sig));
    if (!jwt.header || !jwt.claims || n <= 0) {
        mock_jwt_release(&jwt);
        return -1;
    }
    jwt.sig_len = (size_t)n;
    jwt.signed_part = token;
    jwt.signed_len = (size_t)(d2 - token);
    *ret = jwt;
    return 0;
}

void mock_jwt_release(struct mock_jwt *jwt)
{
    cJSON_Delete(jwt->header);
    cJSON_Delete(jwt->claims);
    jwt->header = jwt->claims = NULL;
}

const char *mock_json_str(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static int verify_der(EVP_PKEY *pub, const char *msg, size_t msglen,
                      const uint8_t *sig, size_t siglen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = 0;

    if (md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1)
        ok = EVP_DigestVerify(md, sig, siglen, (const uint8_t *)msg, msglen) ==
             1;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

int mock_jwt_verify_es256(const struct mock_jwt *jwt, EVP_PKEY *pub)
{
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    uint8_t *der = NULL;
    int derlen, rv = -1;

    if (jwt->sig_len != 64 || EVP_PKEY_base_id(pub) != EVP_PKEY_EC)
        return -1;
    es = ECDSA_SIG_new();
    r = BN_bin2bn(jwt->sig, 32, NULL);
    s = BN_bin2bn(jwt->sig + 32, 32, NULL);
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1)
        goto out;
    r = s = NULL; /* owned by es now */
    derlen = i2d_ECDSA_SIG(es, &der);
    if (derlen <= 0)
        goto out;
    rv =
        verify_der(pub, jwt->signed_part, jwt->signed_len, der, (size_t)derlen);
out:
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return rv;
}

int mock_jwt_verify_rs256(const struct mock_jwt *jwt, EVP_PKEY *pub)
{
    if (EVP_PKEY_base_id(pub) != EVP_PKEY_RSA)
        return -1;
    return verify_der(pub, jwt->signed_part, jwt->signed_len, jwt->sig,
                      jwt->sig_len);
}

char *mock_jwt_sign(EVP_PKEY *key, int es256, const char *header_json,
                    const char *claims_json)
{
    char *h = NULL, *c = NULL, *sigb64 = NULL, *input = NULL, *out = NULL;
    uint8_t *sig = NULL, raw[64];
    const uint8_t *p;
    size_t siglen = 0, inlen;
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *es = NULL;

    h = mock_b64url_encode((const uint8_t *)header_json, strlen(header_json));
    c = mock_b64url_encode((const uint8_t *)claims_json, strlen(claims_json));
    if (!h || !c)
        goto out;
    inlen = strlen(h) + 1 + strlen(c);
    input = malloc(inlen + 1);
    if (!input)
        goto out;
    snprintf(input, inlen + 1, "%s.%s", h, c);
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (uint8_t *)input, inlen) != 1)
        goto out;
    sig = malloc(siglen);
    if (!sig || EVP_DigestSign(md, sig, &siglen, (uint8_t *)input, inlen) != 1)
        goto out;
    if (es256) {
        const BIGNUM *r, *s;
        p = sig;
        es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
        if (!es)
            goto out;
        ECDSA_SIG_get0(es, &r, &s);
        if (BN_bn2binpad(r, raw, 32) != 32 ||
            BN_bn2binpad(s, raw + 32, 32) != 32)
            goto out;
        sigb64 = mock_b64url_encode(raw, 64);
    } else {
        sigb64 = mock_b64url_encode(sig, siglen);
    }
    if (!sigb64)
        goto out;
    out = malloc(inlen + 2 + strlen(sigb64));
    if (out)
        sprintf(out, "%s.%s", input, sigb64);
out:
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    free(sig);
    free(sigb64);
    free(input);
    free(h);
    free(c);
    return out;
}

EVP_PKEY *mock_pem_load_pub(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k;

    if (!f)
        return NULL;
    k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

EVP_PKEY *mock_pem_load_priv(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k;

    if (!f)
        return NULL;
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}
