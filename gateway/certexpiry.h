/*
 * Certificate expiry as a metric: pushgw_certificate_expiry_days{app,
 * certificate}, the days left until a certificate's notAfter (negative
 * once expired), worked out when /metrics is rendered. Its owner (serve)
 * lists the certificates at start and after each reload: the webhook
 * listener's TLS certificate (app ""), and whatever else expires — APNs
 * certificate identities are added with pgw_certexpiry_add() and
 * pgw_tls_identity_not_after(). Token keys (.p8) and service accounts do
 * not expire and are not listed. Reads certificate files; never logs.
 */
#ifndef PUSHGW_CERTEXPIRY_H
#define PUSHGW_CERTEXPIRY_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

/* Certificates listed at once; more are refused (PGW_ERR_TOO_LARGE). */
#define PGW_CERTEXPIRY_MAX 256

struct pgw_certexpiry_entry {
    struct pgw_metric_series *series;
    int64_t not_after_s;
};

/* Embedded: _init() / _release(). */
struct pgw_certexpiry {
    struct pgw_metric_family *family;
    struct pgw_certexpiry_entry *entries;
    size_t n;
};

/* Registers the family and its collector in |metrics| (which must outlive
 * |self|). Errors: those of pgw_metrics_register(), PGW_ERR_NOMEM. */
int pgw_certexpiry_init(struct pgw_certexpiry *self,
                        struct pgw_metrics *metrics);
void pgw_certexpiry_release(struct pgw_certexpiry *self);

/* Forgets every certificate (their series read NaN until listed again):
 * before listing those of a new configuration. */
void pgw_certexpiry_clear(struct pgw_certexpiry *self);

/*
 * Lists the certificate |name| of |app| ("" for the gateway's own),
 * expiring at |not_after_s| (Unix seconds). Errors: PGW_ERR_TOO_LARGE,
 * PGW_ERR_NOMEM.
 */
int pgw_certexpiry_add(struct pgw_certexpiry *self, const char *app,
                       const char *name, int64_t not_after_s);

/*
 * As pgw_certexpiry_add() for the first certificate of the PEM file
 * |path|. Errors: PGW_ERR_IO (cannot read), PGW_ERR_CRYPTO (no
 * certificate), and those of pgw_certexpiry_add().
 */
int pgw_certexpiry_add_pem(struct pgw_certexpiry *self, const char *app,
                           const char *name, const char *path);

#endif
