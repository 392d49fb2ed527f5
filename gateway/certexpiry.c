/* Days until certificates expire, as a gauge: see certexpiry.h. */
#include "certexpiry.h"

#include <math.h>
#include <openssl/asn1.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>

#include "pushgw.h"
#include "util/clock.h"

#define SECONDS_PER_DAY 86400.0

static void collect(void *arg, struct pgw_metrics *metrics)
{
    struct pgw_certexpiry *self = arg;
    int64_t now_s = pgw_clock_wall_ms() / 1000;

    (void)metrics;
    for (size_t i = 0; i < self->n; i++)
        pgw_metric_set(self->entries[i].series,
                       (double)(self->entries[i].not_after_s - now_s) /
                           SECONDS_PER_DAY);
}

int pgw_certexpiry_init(struct pgw_certexpiry *self,
                        struct pgw_metrics *metrics)
{
    static const char *const labels[] = {"app", "certificate"};
    int rc;

    self->n = 0;
    self->entries = calloc(PGW_CERTEXPIRY_MAX, sizeof(*self->entries));
    if (!self->entries)
        return PGW_ERR_NOMEM;
    rc = pgw_metrics_register(
        metrics, PGW_METRIC_GAUGE, "pushgw_certificate_expiry_days",
        "Days until the certificate expires (negative: expired), by app "
        "(empty: the gateway's own) and certificate.",
        labels, 2, PGW_CERTEXPIRY_MAX, NULL, 0, &self->family);
    if (rc == 0)
        rc = pgw_metrics_add_collector(metrics, collect, self);
    if (rc < 0) {
        free(self->entries);
        self->entries = NULL;
    }
    return rc;
}

void pgw_certexpiry_release(struct pgw_certexpiry *self)
{
    free(self->entries);
    self->entries = NULL;
    self->n = 0;
}

void pgw_certexpiry_clear(struct pgw_certexpiry *self)
{
    for (size_t i = 0; i < self->n; i++)
        pgw_metric_set(self->entries[i].series, NAN);
    self->n = 0;
}

int pgw_certexpiry_add(struct pgw_certexpiry *self, const char *app,
                       const char *name, int64_t not_after_s)
{
    struct pgw_metric_series *s;

    if (self->n >= PGW_CERTEXPIRY_MAX)
        return PGW_ERR_TOO_LARGE;
    s = pgw_metrics_series2(self->family, app, name);
    if (!s)
        return PGW_ERR_NOMEM;
    self->entries[self->n].series = s;
    self->entries[self->n].not_after_s = not_after_s;
    self->n++;
    return 0;
}

int pgw_certexpiry_add_pem(struct pgw_certexpiry *self, const char *app,
                           const char *name, const char *path)
{
    FILE *f = fopen(path, "re");
    X509 *cert;
    struct tm tm;
    int rc = PGW_ERR_CRYPTO;

    if (!f)
        return PGW_ERR_IO;
    cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (cert && ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
        rc = pgw_certexpiry_add(self, app, name, (int64_t)timegm(&tm));
    X509_free(cert);
    return rc;
}
