/*
 * JWT helpers for the mock servers, mkjwt and their tests: base64url,
 * parsing a compact JWS, verifying ES256 (raw r||s) and RS256, signing.
 * Pure: no I/O except the PEM loaders, never logs.
 */
#ifndef PUSHGW_MOCKJWT_H
#define PUSHGW_MOCKJWT_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <cjson/cJSON.h>

/* Longest compact JWT accepted. */
#define MOCK_JWT_MAX 8192

/*
 * Decodes base64url |in| (|len| bytes, no padding required) into |out|
 * (|cap| bytes). Returns the decoded length, or -1 on a bad character or
 * when |out| is too small.
 */
long mock_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* Encodes |len| bytes; returns a malloc'd NUL-terminated string or NULL. */
char *mock_b64url_encode(const uint8_t *in, size_t len);

/* A parsed compact JWS. */
struct mock_jwt {
    cJSON *header;           /* decoded header object */
    cJSON *claims;           /* decoded claims object */
    const char *signed_part; /* "header.claims", points into the token */
    size_t signed_len;
    uint8_t sig[512];
    size_t sig_len;
};

/*
 * Parses |token| (|len| bytes): three base64url parts, header and claims
 * JSON objects. Returns 0 and fills *ret (release with mock_jwt_release;
 * it points into |token|, which must outlive it), or -1 if malformed.
 */
int mock_jwt_parse(const char *token, size_t len, struct mock_jwt *ret);
void mock_jwt_release(struct mock_jwt *jwt);

/* String member |name| of |obj|, or NULL when absent or not a string. */
const char *mock_json_str(const cJSON *obj, const char *name);

/*
 * Verifies the signature with |pub|: ES256 needs a 64-byte raw r||s over a
 * P-256 key, RS256 PKCS#1 v1.5 SHA-256. Returns 0 when valid, -1 if not.
 */
int mock_jwt_verify_es256(const struct mock_jwt *jwt, EVP_PKEY *pub);
int mock_jwt_verify_rs256(const struct mock_jwt *jwt, EVP_PKEY *pub);

/*
 * Signs |header_json|.|claims_json| with |key| (ES256 gives raw r||s;
 * RS256 PKCS#1 v1.5). Returns the malloc'd compact JWT or NULL.
 */
char *mock_jwt_sign(EVP_PKEY *key, int es256, const char *header_json,
                    const char *claims_json);

/* PEM loaders (public key, or private key such as a .p8); NULL on error. */
EVP_PKEY *mock_pem_load_pub(const char *path);
EVP_PKEY *mock_pem_load_priv(const char *path);

#endif
