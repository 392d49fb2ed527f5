/* util/url: credentials redacted, loopback hosts recognised. */
#include "testutil.h"

#include <string.h>

#include "util/url.h"

static void test_redact(void **state)
{
    static const char *const cases[][2] = {
        {"http://user:s3cret@10.1.2.3/hook", "http://user:***@10.1.2.3/hook"},
        {"https://u:p@h:8443/x?y=1", "https://u:***@h:8443/x?y=1"},
        {"postgresql://app:pa:ss@db/pushgw", "postgresql://app:***@db/pushgw"},
        {"http://user@h/x", "http://user@h/x"},
        {"http://h/x?a=b:c@d", "http://h/x?a=b:c@d"},
        {"https://h:443/p", "https://h:443/p"},
        {"not a url", "not a url"},
    };
    char buf[128];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(pgw_url_redact(cases[i][0], buf, sizeof(buf)),
                            cases[i][1]);
    /* never more than asked for, always terminated */
    pgw_url_redact("http://user:s3cret@10.1.2.3/hook", buf, 12);
    assert_int_equal(strlen(buf), 11);
    assert_null(strstr(buf, "s3cret"));
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(pgw_url_is_loopback("http://127.0.0.1:3000/hook"));
    assert_true(pgw_url_is_loopback("http://127.9.8.7/hook"));
    assert_true(pgw_url_is_loopback("http://localhost/hook"));
    assert_true(pgw_url_is_loopback("http://LOCALHOST:80"));
    assert_true(pgw_url_is_loopback("http://[::1]:8080/x"));
    assert_true(pgw_url_is_loopback("http://u:p@127.0.0.1/x"));
    assert_false(pgw_url_is_loopback("http://10.0.0.1/hook"));
    assert_false(pgw_url_is_loopback("http://127.example.com/hook"));
    assert_false(pgw_url_is_loopback("http://localhost.evil.com/"));
    assert_false(pgw_url_is_loopback("http://[::2]/"));
    assert_false(pgw_url_is_loopback("http://127.0.0.1@evil.com/"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
