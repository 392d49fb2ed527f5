/* The JSON-lines log format: fields, escaping, levels, masking. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static size_t fmt(char *buf, size_t size, long long ts, enum pgw_log_level lvl,
                  const struct pgw_log_field *f, size_t n, const char *fmt_,
                  ...) PGW_PRINTF(7, 8);

static size_t fmt(char *buf, size_t size, long long ts, enum pgw_log_level lvl,
                  const struct pgw_log_field *f, size_t n, const char *fmt_,
                  ...)
{
    va_list ap;
    size_t r;

    va_start(ap, fmt_);
    r = pgw_log_format(buf, size, ts, lvl, f, n, fmt_, ap);
    va_end(ap);
    return r;
}

static void test_format_basic(void **state)
{
    char buf[512];
    (void)state;

    /* 2026-11-27T00:45:07.123Z */
    fmt(buf, sizeof(buf), 1795740307123LL, PGW_LOG_WARN, NULL, 0,
        "could not connect to '%s': %s", "api.push.apple.com:443", "timed out");
    assert_string_equal(buf, "{\"ts\":\"2026-11-27T00:45:07.123Z\","
                             "\"level\":\"warn\",\"msg\":\"could not connect "
                             "to 'api.push.apple.com:443': timed out\"}\n");
}

static void test_format_fields_and_escaping(void **state)
{
    const struct pgw_log_field f[] = {
        PGW_LF_STR("app", "de\"mo\\"),
        PGW_LF_INT("count", -42),
        PGW_LF_STR("nul", NULL),
        PGW_LF_STR("ctl", "a\nb\tc\x01"),
        PGW_LF_STR("utf8", "\xe4\xbd\xa0\xe5\xa5\xbd"),
    };
    char buf[512];
    cJSON *j;
    (void)state;

    fmt(buf, sizeof(buf), 0, PGW_LOG_INFO, f, PGW_ARRAY_SIZE(f), "m %d", 1);
    j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "ts")->valuestring,
                        "1970-01-01T00:00:00.000Z");
    assert_string_equal(cJSON_GetObjectItem(j, "level")->valuestring, "info");
    assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring, "m 1");
    assert_string_equal(cJSON_GetObjectItem(j, "app")->valuestring, "de\"mo\\");
    assert_int_equal(cJSON_GetObjectItem(j, "count")->valueint, -42);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "nul")));
    assert_string_equal(cJSON_GetObjectItem(j, "ctl")->valuestring,
                        "a\nb\tc\x01");
    assert_string_equal(cJSON_GetObjectItem(j, "utf8")->valuestring,
                        "\xe4\xbd\xa0\xe5\xa5\xbd");
    assert_non_null(strstr(buf, "\\u0001"));
    assert_int_equal(buf[strlen(buf) - 1], '\n');
    cJSON_Delete(j);
}

static void test_format_truncation_reports_length(void **state)
{
    char small[16];
    char big[256];
    size_t need, got;
    (void)state;

    need = fmt(small, sizeof(small), 0, PGW_LOG_ERROR, NULL, 0, "hello");
    got = fmt(big, sizeof(big), 0, PGW_LOG_ERROR, NULL, 0, "hello");
    assert_int_equal(need, got);
    assert_int_equal(strlen(big), got);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void test_levels_filter_and_emit(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    int formatted = 0;
    (void)state;

    assert_non_null(mem);
    pgw_log_set_stream(mem);
    pgw_log_set_level(PGW_LOG_WARN);
    pgw_log_info("hidden %d", formatted++);
    pgw_log_debug("hidden %d", formatted++);
    /* Disabled levels do not evaluate their arguments. */
    assert_int_equal(formatted, 0);
    pgw_log_warn("shown %d", 1);
    pgw_log_errorf(PGW_FIELDS(PGW_LF_STR("k", "v")), "shown %d", 2);
    fflush(mem);
    assert_non_null(strstr(buf, "\"msg\":\"shown 1\""));
    assert_non_null(strstr(buf, "\"level\":\"error\",\"msg\":\"shown 2\","
                                "\"k\":\"v\""));
    assert_null(strstr(buf, "hidden"));
    pgw_log_set_stream(NULL);
    pgw_log_set_level(PGW_LOG_INFO);
    fclose(mem);
    free(buf);
}

static void test_long_line_stays_json(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char *big = malloc(10000);
    cJSON *j;
    (void)state;

    memset(big, 'x', 9999);
    big[9999] = '\0';
    pgw_log_set_stream(mem);
    pgw_log_warnf(PGW_FIELDS(PGW_LF_STR("big", big)), "long");
    fflush(mem);
    j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_int_equal(strlen(cJSON_GetObjectItem(j, "big")->valuestring), 9999);
    cJSON_Delete(j);
    pgw_log_set_stream(NULL);
    fclose(mem);
    free(buf);
    free(big);
}

static void test_level_parse(void **state)
{
    enum pgw_log_level l;
    (void)state;

    assert_int_equal(pgw_log_level_parse("debug", &l), 0);
    assert_int_equal(l, PGW_LOG_DEBUG);
    assert_int_equal(pgw_log_level_parse("error", &l), 0);
    assert_int_equal(l, PGW_LOG_ERROR);
    assert_int_equal(pgw_log_level_parse("verbose", &l), PGW_ERR_INVAL);
    assert_int_equal(pgw_log_level_parse("INFO", &l), PGW_ERR_INVAL);
}

static void test_mask_token(void **state)
{
    char buf[32];
    (void)state;

    assert_string_equal(
        pgw_log_mask_token(buf, sizeof(buf), "0123456789abcdef"),
        "01234567\xe2\x80\xa6");
    assert_string_equal(pgw_log_mask_token(buf, sizeof(buf), "short"), "short");
    assert_string_equal(pgw_log_mask_token(buf, sizeof(buf), NULL), "(none)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_basic),
        cmocka_unit_test(test_format_fields_and_escaping),
        cmocka_unit_test(test_format_truncation_reports_length),
        cmocka_unit_test(test_levels_filter_and_emit),
        cmocka_unit_test(test_long_line_stays_json),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_mask_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
