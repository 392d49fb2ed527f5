/* TLS client identities from PEM or PKCS#12 files; see tls_identity.h. */
#include "tls_identity.h"

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "pushgw.h"
#include "util/file.h"

/* An identity file is a few kilobytes; anything far larger is not one. */
#define MAX_FILE_BYTES (1024 * 1024)
#define SUBJECT_MAX 512
#define UID_MAX 256

struct pgw_tls_identity {
    X509 *cert;
    EVP_PKEY *key;
    STACK_OF(X509) * chain; /* may be NULL */
    int64_t not_after;
    char uid[UID_MAX]; /* "" when absent */
    char subject[SUBJECT_MAX];
};

static void set_err(char *err, size_t len, const char *fmt, ...)
    PGW_PRINTF(3, 4);

static void set_err(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (!err || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static int read_file(const char *file, unsigned char **ret_buf, size_t *ret_len,
                     char *err, size_t err_len)
{
    char *buf = NULL;
    int rc = pgw_file_read(file, MAX_FILE_BYTES, &buf, ret_len);

    if (rc == PGW_ERR_IO)
        set_err(err, err_len, "cannot open '%s': %s", file, strerror(errno));
    else if (rc == PGW_ERR_TOO_LARGE)
        set_err(err, err_len, "'%s' is larger than %d bytes", file,
                MAX_FILE_BYTES);
    if (rc < 0)
        return rc == PGW_ERR_TOO_LARGE ? PGW_ERR_CRYPTO : rc;
    *ret_buf = (unsigned char *)buf;
    return 0;
}

/* Never prompts on a terminal (OpenSSL's default without a callback). */
static int pem_password(char *buf, int size, int rwflag, void *u)
{
    const char *pw = u;
    size_t n = pw ? strlen(pw) : 0;

    (void)rwflag;
    if (n == 0 || n > (size_t)size)
        return 0;
    memcpy(buf, pw, n);
    return (int)n;
}

/*
 * Keychain on macOS exports .p12 files encrypted with RC2, which OpenSSL 3
 * keeps in its legacy provider: loaded (with the default one, which an
 * explicit load would otherwise leave out) only when a file needs it.
 */
static bool load_legacy_provider(void)
{
    static OSSL_PROVIDER *legacy, *dflt;

    if (legacy)
        return false; /* already there: it did not help */
    dflt = OSSL_PROVIDER_load(NULL, "default");
    legacy = OSSL_PROVIDER_load(NULL, "legacy");
    return legacy != NULL && dflt != NULL;
}

static int load_p12(PKCS12 *p12, const char *password,
                    struct pgw_tls_identity *id, const char *file, char *err,
                    size_t err_len)
{
    int ok = PKCS12_parse(p12, password ? password : "", &id->key, &id->cert,
                          &id->chain);

    if (ok != 1 && load_legacy_provider())
        ok = PKCS12_parse(p12, password ? password : "", &id->key, &id->cert,
                          &id->chain);
    if (ok != 1) {
        set_err(err, err_len,
                "cannot open the PKCS#12 file '%s': wrong password or "
                "damaged file",
                file);
        return PGW_ERR_CRYPTO;
    }
    if (!id->cert || !id->key) {
        set_err(err, err_len, "'%s' holds no certificate with its key", file);
        return PGW_ERR_CRYPTO;
    }
    return 0;
}

static int load_pem(const unsigned char *buf, size_t len, const char *password,
                    struct pgw_tls_identity *id, const char *file, char *err,
                    size_t err_len)
{
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    X509 *x;

    if (!bio)
        return PGW_ERR_NOMEM;
    id->cert = PEM_read_bio_X509(bio, NULL, pem_password, NULL);
    while (id->cert &&
           (x = PEM_read_bio_X509(bio, NULL, pem_password, NULL)) != NULL) {
        if (!id->chain)
            id->chain = sk_X509_new_null();
        if (!id->chain || !sk_X509_push(id->chain, x)) {
            X509_free(x);
            BIO_free(bio);
            return PGW_ERR_NOMEM;
        }
    }
    BIO_free(bio);
    if (!id->cert) {
        set_err(err, err_len, "'%s' holds no certificate (PEM or PKCS#12)",
                file);
        return PGW_ERR_CRYPTO;
    }
    bio = BIO_new_mem_buf(buf, (int)len);
    if (!bio)
        return PGW_ERR_NOMEM;
    id->key = PEM_read_bio_PrivateKey(bio, NULL, pem_password,
                                      (void *)(uintptr_t)password);
    BIO_free(bio);
    if (!id->key) {
        set_err(err, err_len,
                "'%s' holds no private key for its certificate (or its "
                "password is wrong)",
                file);
        return PGW_ERR_CRYPTO;
    }
    return 0;
}

static void describe(struct pgw_tls_identity *id)
{
    const X509_NAME *name = X509_get_subject_name(id->cert);
    const ASN1_TIME *na = X509_get0_notAfter(id->cert);
    struct tm tm;
    int i;

    memset(&tm, 0, sizeof(tm));
    if (na && ASN1_TIME_to_tm(na, &tm) == 1)
        id->not_after = (int64_t)timegm(&tm);
    i = X509_NAME_get_index_by_NID(name, NID_userId, -1);
    if (i >= 0) {
        const ASN1_STRING *s =
            X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
        unsigned char *utf8 = NULL;
        int n = ASN1_STRING_to_UTF8(&utf8, s);

        if (n > 0 && (size_t)n < sizeof(id->uid) &&
            memchr(utf8, '\0', (size_t)n) == NULL) {
            memcpy(id->uid, utf8, (size_t)n);
            id->uid[n] = '\0';
        }
        OPENSSL_free(utf8);
    }
    X509_NAME_oneline(name, id->subject, sizeof(id->subject));
}

int pgw_tls_identity_load(const char *file, const char *password,
                          struct pgw_tls_identity **ret_id, char *err,
                          size_t err_len)
{
    struct pgw_tls_identity *id = NULL;
    unsigned char *buf = NULL;
    const unsigned char *p;
    PKCS12 *p12 = NULL;
    size_t len = 0;
    int ret;

    ret = read_file(file, &buf, &len, err, err_len);
    if (ret < 0)
        return ret;
    ret = PGW_ERR_NOMEM;
    id = calloc(1, sizeof(*id));
    if (!id)
        goto out;
    p = buf;
    p12 = d2i_PKCS12(NULL, &p, (long)len);
    if (p12)
        ret = load_p12(p12, password, id, file, err, err_len);
    else
        ret = load_pem(buf, len, password, id, file, err, err_len);
    if (ret < 0)
        goto out;
    if (X509_check_private_key(id->cert, id->key) != 1) {
        set_err(err, err_len,
                "the private key in '%s' does not belong to its certificate",
                file);
        ret = PGW_ERR_CRYPTO;
        goto out;
    }
    describe(id);
    *ret_id = id;
    id = NULL;
    ret = 0;
out:
    ERR_clear_error();
    PKCS12_free(p12);
    if (buf)
        OPENSSL_cleanse(buf, len);
    free(buf);
    pgw_tls_identity_free(id);
    return ret;
}

int pgw_tls_identity_apply(const struct pgw_tls_identity *self,
                           struct ssl_ctx_st *ctx)
{
    int ok = SSL_CTX_use_certificate(ctx, self->cert) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, self->key) == 1 &&
             SSL_CTX_check_private_key(ctx) == 1;

    for (int i = 0; ok && self->chain && i < sk_X509_num(self->chain); i++)
        ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(self->chain, i)) == 1;
    ERR_clear_error();
    return ok ? 0 : PGW_ERR_CRYPTO;
}

int64_t pgw_tls_identity_not_after(const struct pgw_tls_identity *self)
{
    return self->not_after;
}

const char *pgw_tls_identity_uid(const struct pgw_tls_identity *self)
{
    return self->uid[0] ? self->uid : NULL;
}

const char *pgw_tls_identity_subject(const struct pgw_tls_identity *self)
{
    return self->subject;
}

void pgw_tls_identity_free(struct pgw_tls_identity *self)
{
    if (!self)
        return;
    X509_free(self->cert);
    EVP_PKEY_free(self->key);
    sk_X509_pop_free(self->chain, X509_free);
    free(self);
}
