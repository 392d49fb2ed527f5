/* Tests of the template set: loading, lookup, errors, reload. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "template.h"

static const char *alert_of(const cJSON *t)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(t, "alert");
    return cJSON_IsString(a) ? a->valuestring : NULL;
}

static void test_shipped_default(void **state)
{
    struct pgw_template_set *set = NULL;
    struct pgw_diag diag;
    const cJSON *t;
    char *text;

    (void)state;
    pgw_diag_init(&diag);
    assert_int_equal(
        pgw_template_set_load(PUSHGW_SOURCE_DIR "/templates", &diag, &set), 0);
    t = pgw_template_set_find(set, "any-app");
    assert_non_null(t);
    text = cJSON_PrintUnformatted(t);
    assert_string_equal(text, "{\"alert\":\"New message received\",\"badge\":"
                              "\"Increment\"}");
    free(text);
    pgw_template_set_unref(set);
    pgw_diag_release(&diag);
}

static void test_app_and_default(void **state)
{
    char *dir = tu_mkdtemp();
    struct pgw_template_set *set = NULL;
    struct pgw_diag diag;

    (void)state;
    free(tu_write_file(dir, "default.json", "{\"alert\":\"d\"}", 0644));
    free(tu_write_file(dir, "demo.json", "{\"alert\":\"demo\"}", 0644));
    free(tu_write_file(dir, "README.txt", "not json", 0644));
    pgw_diag_init(&diag);
    assert_int_equal(pgw_template_set_load(dir, &diag, &set), 0);
    assert_int_equal(pgw_template_set_count(set), 2);
    assert_string_equal(alert_of(pgw_template_set_find(set, "demo")), "demo");
    assert_string_equal(alert_of(pgw_template_set_find(set, "other")), "d");
    assert_string_equal(alert_of(pgw_template_set_find(set, NULL)), "d");
    pgw_template_set_unref(set);
    pgw_diag_release(&diag);
    tu_rm_rf(dir);
    free(dir);
}

static void test_no_default(void **state)
{
    char *dir = tu_mkdtemp();
    struct pgw_template_set *set = NULL;
    struct pgw_diag diag;

    (void)state;
    free(tu_write_file(dir, "demo.json", "{\"alert\":\"demo\"}", 0644));
    pgw_diag_init(&diag);
    assert_int_equal(pgw_template_set_load(dir, &diag, &set), 0);
    assert_null(pgw_template_set_find(set, "other"));
    pgw_template_set_unref(set);
    pgw_diag_release(&diag);
    tu_rm_rf(dir);
    free(dir);
}

struct bad_case {
    const char *content;
    const char *expect; /* substring of the diagnostic */
};

static void test_invalid_files(void **state)
{
    static const struct bad_case cases[] = {
        {"{\n  \"alert\": \"x\",\n  \"badge\" 1\n}", "line 3, column"},
        {"[1,2]", "must be a JSON object"},
        {"{\"a\":\"\xff\"}", "invalid UTF-8"},
        {"", "invalid JSON at line 1, column 1"},
        {"{} x", "trailing"},
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        char *dir = tu_mkdtemp();
        struct pgw_template_set *set = NULL;
        struct pgw_diag diag;

        free(tu_write_file(dir, "default.json", "{}", 0644));
        free(tu_write_file(dir, "bad.json", cases[i].content, 0644));
        pgw_diag_init(&diag);
        assert_int_equal(pgw_template_set_load(dir, &diag, &set),
                         PGW_ERR_CONFIG);
        assert_null(set);
        assert_int_equal(diag.n, 1);
        if (!strstr(diag.msgs[0], cases[i].expect) ||
            !strstr(diag.msgs[0], "bad.json"))
            fail_msg("case %zu: '%s'", i, diag.msgs[0]);
        pgw_diag_release(&diag);
        tu_rm_rf(dir);
        free(dir);
    }
}

static void test_too_large_file(void **state)
{
    char *dir = tu_mkdtemp();
    size_t n = PGW_TEMPLATE_MAX_FILE_BYTES + 10;
    char *big = malloc(n + 1);
    struct pgw_template_set *set = NULL;
    struct pgw_diag diag;

    (void)state;
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    free(tu_write_file(dir, "a.json", big, 0644));
    pgw_diag_init(&diag);
    assert_int_equal(pgw_template_set_load(dir, &diag, &set), PGW_ERR_CONFIG);
    assert_non_null(strstr(diag.msgs[0], "larger than"));
    pgw_diag_release(&diag);
    free(big);
    tu_rm_rf(dir);
    free(dir);
}

static void test_missing_dir(void **state)
{
    struct pgw_template_set *set = NULL;
    struct pgw_diag diag;

    (void)state;
    pgw_diag_init(&diag);
    assert_int_equal(
        pgw_template_set_load("/nonexistent/pushgw-templates", &diag, &set),
        PGW_ERR_IO);
    assert_int_equal(diag.n, 1);
    pgw_diag_release(&diag);
}

static void test_reload_all_or_nothing(void **state)
{
    char *dir = tu_mkdtemp();
    struct pgw_template_set *set = NULL, *held;
    struct pgw_diag diag;

    (void)state;
    free(tu_write_file(dir, "default.json", "{\"alert\":\"v1\"}", 0644));
    pgw_diag_init(&diag);
    assert_int_equal(pgw_template_set_load(dir, &diag, &set), 0);
    held = pgw_template_set_ref(set); /* an event still using v1 */

    /* A broken file: the whole reload fails and v1 stays. */
    free(tu_write_file(dir, "default.json", "{\"alert\":\"v2\"}", 0644));
    free(tu_write_file(dir, "demo.json", "{oops", 0644));
    assert_int_equal(pgw_template_set_reload(&set, dir, &diag), PGW_ERR_CONFIG);
    assert_ptr_equal(set, held);
    assert_string_equal(alert_of(pgw_template_set_find(set, "x")), "v1");

    free(tu_write_file(dir, "demo.json", "{\"alert\":\"demo\"}", 0644));
    assert_int_equal(pgw_template_set_reload(&set, dir, &diag), 0);
    assert_string_equal(alert_of(pgw_template_set_find(set, "x")), "v2");
    assert_string_equal(alert_of(pgw_template_set_find(set, "demo")), "demo");
    /* The old set is still valid for its holder. */
    assert_string_equal(alert_of(pgw_template_set_find(held, "x")), "v1");
    pgw_template_set_unref(held);
    pgw_template_set_unref(set);
    pgw_diag_release(&diag);
    tu_rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_default),
        cmocka_unit_test(test_app_and_default),
        cmocka_unit_test(test_no_default),
        cmocka_unit_test(test_invalid_files),
        cmocka_unit_test(test_too_large_file),
        cmocka_unit_test(test_missing_dir),
        cmocka_unit_test(test_reload_all_or_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
