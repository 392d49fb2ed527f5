/*
 * tls_identity: a TLS client identity (certificate, private key and the
 * chain that came with them) loaded from a PEM file holding both, or from
 * a PKCS#12 (.p12) file with its password — the two forms in which Apple
 * hands out APNs certificates. The identity is presented by h2client
 * pools that authenticate with a certificate instead of a token.
 *
 * Pure apart from reading the file: never logs; errors are returned with
 * a one-line reason.
 */
#ifndef PUSHGW_TLS_IDENTITY_H
#define PUSHGW_TLS_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

struct ssl_ctx_st;
struct pgw_tls_identity;

#define PGW_TLS_IDENTITY_ERR_MAX 256

/*
 * Loads |file|: PKCS#12 when it is DER that parses as one, else PEM that
 * must hold a certificate and its private key (in any order, the first
 * certificate being the leaf; further certificates are its chain).
 * |password| decrypts the PKCS#12 file or an encrypted PEM key (NULL or
 * "": none). Checks that the key belongs to the certificate.
 * On success stores a new identity in |*ret_id| (free with
 * pgw_tls_identity_free()). Errors, with a reason written to |err| (size
 * |err_len|, may be 0): PGW_ERR_IO (cannot read), PGW_ERR_CRYPTO (not a
 * certificate with its key, wrong password, key does not match),
 * PGW_ERR_NOMEM.
 */
int pgw_tls_identity_load(const char *file, const char *password,
                          struct pgw_tls_identity **ret_id, char *err,
                          size_t err_len);

/*
 * Makes |ctx| present |self| as its client certificate (certificate, key
 * and chain; OpenSSL keeps its own references). 0 or PGW_ERR_CRYPTO.
 */
int pgw_tls_identity_apply(const struct pgw_tls_identity *self,
                           struct ssl_ctx_st *ctx);

/* The certificate's notAfter as Unix seconds. */
int64_t pgw_tls_identity_not_after(const struct pgw_tls_identity *self);

/*
 * The subject's UID (OID 0.9.2342.19200300.100.1.1), which Apple sets to
 * the app's bundle id in APNs certificates, or NULL when absent. Valid as
 * long as |self|.
 */
const char *pgw_tls_identity_uid(const struct pgw_tls_identity *self);

/* The subject as one line (e.g. for check-config), never NULL. */
const char *pgw_tls_identity_subject(const struct pgw_tls_identity *self);

/* NULL is a no-op. */
void pgw_tls_identity_free(struct pgw_tls_identity *self);

#endif
