/*
 * Tests of the operator's metrics: selfmetrics (pushgw_build_info and
 * process_*, /proc/self/stat parsing) and certexpiry
 * (pushgw_certificate_expiry_days).
 */
#include "testutil.h"

#include <math.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certexpiry.h"
#include "metrics.h"
#include "pushgw.h"
#include "selfmetrics.h"

/* The value of the sample line that starts with |prefix| in |text|. */
static double sample(const char *text, const char *prefix)
{
    const char *p = text;
    size_t n = strlen(prefix);

    while (p && *p) {
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    fail_msg("no sample '%s' in:\n%s", prefix, text);
    return 0;
}

static char *render(struct pgw_metrics *m)
{
    char *text = NULL;
    size_t len;

    assert_int_equal(pgw_metrics_render(m, &text, &len), 0);
    return text;
}

static void test_parse_stat(void **state)
{
    /* A command name with spaces and parentheses; utime 150, stime 50,
     * starttime 1000 ticks, vsize 123456789, rss 300 pages. */
    const char *line = "4242 (pushgw (x) y) S 1 4242 4242 0 -1 4194560 10 0 "
                       "0 0 150 50 0 0 20 0 3 0 1000 123456789 300 "
                       "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 "
                       "0 0 0 0 0\n";
    struct pgw_proc_stat st;
    (void)state;

    assert_int_equal(
        pgw_selfmetrics_parse_stat(line, 100, 4096, 1700000000, &st), 0);
    assert_true(fabs(st.cpu_seconds - 2.0) < 1e-9);
    assert_true(fabs(st.start_time_s - 1700000010.0) < 1e-6);
    assert_int_equal(st.virtual_bytes, 123456789);
    assert_int_equal(st.resident_bytes, 300 * 4096);

    assert_int_equal(
        pgw_selfmetrics_parse_stat("4242 pushgw S 1", 100, 4096, 0, &st),
        PGW_ERR_INVAL);
    assert_int_equal(
        pgw_selfmetrics_parse_stat("4242 (pushgw) S 1 2", 100, 4096, 0, &st),
        PGW_ERR_INVAL);
}

static void test_build_and_process(void **state)
{
    struct pgw_metrics *m = NULL;
    struct pgw_selfmetrics sm;
    char *text;
    (void)state;

    assert_int_equal(pgw_metrics_new(&m), 0);
    assert_int_equal(pgw_selfmetrics_init(&sm, m, "1.2.3", "abcdef"), 0);
    text = render(m);
    assert_non_null(
        strstr(text, "pushgw_build_info{version=\"1.2.3\",commit=\"abcdef\"} "
                     "1\n"));
    assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter"));
    assert_true(sample(text, "process_resident_memory_bytes") > 1e6);
    assert_true(sample(text, "process_virtual_memory_bytes") >=
                sample(text, "process_resident_memory_bytes"));
    assert_true(sample(text, "process_open_fds") >= 3);
    assert_true(sample(text, "process_max_fds") >=
                sample(text, "process_open_fds"));
    /* Started within the last hour, by the wall clock. */
    assert_true(fabs(sample(text, "process_start_time_seconds") -
                     (double)time(NULL)) < 3600);
    free(text);
    pgw_metrics_free(m);
}

/* A self-signed certificate that expires in |days| days, as PEM in |dir|. */
static char *write_cert(const char *dir, long days)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    char *path = NULL;
    FILE *f;

    assert_non_null(key);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    assert_true(asprintf(&path, "%s/cert-%ld.pem", dir, days) > 0);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
    return path;
}

static void test_certificate_expiry(void **state)
{
    char *dir = tu_mkdtemp();
    char *in10 = write_cert(dir, 10), *expired = write_cert(dir, -2);
    char *junk = tu_write_file(dir, "junk.pem", "not a certificate\n", 0600);
    char *missing = NULL;
    struct pgw_metrics *m = NULL;
    struct pgw_certexpiry ce;
    char *text;
    double v;
    (void)state;

    assert_int_equal(pgw_metrics_new(&m), 0);
    assert_int_equal(pgw_certexpiry_init(&ce, m), 0);
    assert_int_equal(pgw_certexpiry_add_pem(&ce, "", "webhook_tls", in10), 0);
    assert_int_equal(pgw_certexpiry_add_pem(&ce, "demo", "apns:old", expired),
                     0);
    assert_int_equal(pgw_certexpiry_add_pem(&ce, "demo", "x", junk),
                     PGW_ERR_CRYPTO);
    assert_true(asprintf(&missing, "%s/none.pem", dir) > 0);
    assert_int_equal(pgw_certexpiry_add_pem(&ce, "demo", "x", missing),
                     PGW_ERR_IO);

    text = render(m);
    v = sample(text, "pushgw_certificate_expiry_days{app=\"\","
                     "certificate=\"webhook_tls\"}");
    assert_true(v > 9.9 && v <= 10.0);
    v = sample(text, "pushgw_certificate_expiry_days{app=\"demo\","
                     "certificate=\"apns:old\"}");
    assert_true(v < -1.9 && v > -2.1);
    free(text);

    /* A reload that lists none: the old series say NaN, not stale days. */
    pgw_certexpiry_clear(&ce);
    text = render(m);
    assert_true(isnan(sample(text, "pushgw_certificate_expiry_days{app=\"\","
                                   "certificate=\"webhook_tls\"}")));
    free(text);

    pgw_metrics_free(m);
    pgw_certexpiry_release(&ce);
    tu_rm_rf(dir);
    free(in10);
    free(expired);
    free(junk);
    free(missing);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat),
        cmocka_unit_test(test_build_and_process),
        cmocka_unit_test(test_certificate_expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
