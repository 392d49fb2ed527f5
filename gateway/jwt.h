/*
 * jwt: APNs provider tokens (ES256 JWT, RFC 7515/7518) and their cache.
 *
 * One struct pgw_jwt per (team id, key id): it holds the signing key and
 * the current token, shared by every connection of that team. The token
 * is re-signed when it is PGW_JWT_MAX_AGE_S old, and never twice within
 * PGW_JWT_MIN_REFRESH_S (APNs answers TooManyProviderTokenUpdates
 * otherwise), even when a caller asks after ExpiredProviderToken.
 *
 * Pure: no logging; the only I/O is reading the key file in
 * pgw_jwt_new_from_file(). Not thread-safe (one per loop).
 */
#ifndef PUSHGW_JWT_H
#define PUSHGW_JWT_H

#include <stddef.h>
#include <stdint.h>

#define PGW_JWT_MAX_AGE_S (50 * 60)
#define PGW_JWT_MIN_REFRESH_S (20 * 60)
/* Longest team id / key id accepted (Apple's are 10 characters). */
#define PGW_JWT_ID_MAX 64

struct pgw_jwt;

/* A clock in seconds since the epoch; |arg| is the one given with it. */
typedef int64_t (*pgw_jwt_clock_fn)(void *arg);

/*
 * Creates a token cache for |team_id| and |key_id| (1..PGW_JWT_ID_MAX
 * characters of [A-Za-z0-9._-]) signing with the P-256 private key in
 * |pem| (|pem_len| bytes; PKCS#8 "PRIVATE KEY" as in Apple's .p8 files,
 * or "EC PRIVATE KEY"). No token is signed yet. Free with pgw_jwt_free().
 * Errors: PGW_ERR_INVAL (bad ids), PGW_ERR_CRYPTO (not a P-256 private
 * key), PGW_ERR_NOMEM.
 */
int pgw_jwt_new(const char *team_id, const char *key_id, const char *pem,
                size_t pem_len, struct pgw_jwt **ret_jwt);

/* Same, reading the key from the file |path|; PGW_ERR_IO when it cannot
 * be read (errno kept), PGW_ERR_TOO_LARGE over 64 KiB. */
int pgw_jwt_new_from_file(const char *team_id, const char *key_id,
                          const char *path, struct pgw_jwt **ret_jwt);

/* Frees |self| and its key; NULL is a no-op. */
void pgw_jwt_free(struct pgw_jwt *self);

/* Replaces the clock (default: time(NULL)); for tests. |fn| NULL resets. */
void pgw_jwt_set_clock(struct pgw_jwt *self, pgw_jwt_clock_fn fn, void *arg);

/*
 * The current token (header.claims.signature, base64url), signing a new
 * one first when there is none or it is PGW_JWT_MAX_AGE_S old (or the
 * clock went back before its iat). *|ret_token| stays valid until the next
 * call that re-signs (pgw_jwt_token, pgw_jwt_refresh) or pgw_jwt_free.
 * Errors: PGW_ERR_CRYPTO (signing failed), PGW_ERR_NOMEM.
 */
int pgw_jwt_token(struct pgw_jwt *self, const char **ret_token);

/* The same token as "bearer <token>", the authorization header value. */
int pgw_jwt_authorization(struct pgw_jwt *self, const char **ret_value);

/*
 * The provider rejected |rejected| as expired: re-sign, unless the current
 * token is already a different one (someone refreshed) or is younger than
 * PGW_JWT_MIN_REFRESH_S. Writes the token to use now to *|ret_value| (as
 * "bearer <token>") and whether it is new to *|ret_changed| (0/1).
 * Errors: as pgw_jwt_token.
 */
int pgw_jwt_refresh(struct pgw_jwt *self, const char *rejected,
                    const char **ret_value, int *ret_changed);

/* The iat of the current token (0 when none yet) and the number of tokens
 * signed so far. */
int64_t pgw_jwt_issued_at(const struct pgw_jwt *self);
uint64_t pgw_jwt_signed_count(const struct pgw_jwt *self);

const char *pgw_jwt_team_id(const struct pgw_jwt *self);
const char *pgw_jwt_key_id(const struct pgw_jwt *self);

/* base64url without padding of |len| bytes into |out| (room for
 * 4 * ceil(len / 3) + 1 bytes); returns the length written. */
size_t pgw_jwt_base64url(const unsigned char *in, size_t len, char *out);

#endif
