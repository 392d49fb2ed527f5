/* Tests of util/file: reading a whole small file with a cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "pushgw.h"
#include "util/file.h"

static char path[64];

static int make_file(void **state)
{
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/test_util_file.XXXXXX");
    fd = mkstemp(path);
    if (fd < 0)
        return -1;
    if (write(fd, "hello\n", 6) != 6) {
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int remove_file(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static void test_reads_whole_file(void **state)
{
    char *buf = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(pgw_file_read(path, 6, &buf, &len), 0);
    assert_int_equal(len, 6);
    assert_string_equal(buf, "hello\n"); /* NUL-terminated */
    free(buf);
    assert_int_equal(pgw_file_read(path, 100, &buf, &len), 0);
    assert_int_equal(len, 6);
    free(buf);
}

static void test_cap_and_errors(void **state)
{
    char *buf = (char *)"untouched";
    size_t len = 42;

    (void)state;
    assert_int_equal(pgw_file_read(path, 5, &buf, &len), PGW_ERR_TOO_LARGE);
    assert_int_equal(pgw_file_read("/nonexistent/x", 5, &buf, &len),
                     PGW_ERR_IO);
    /* a directory opens but cannot be read */
    assert_int_equal(pgw_file_read("/tmp", 5, &buf, &len), PGW_ERR_IO);
    assert_string_equal(buf, "untouched");
    assert_int_equal(len, 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_whole_file),
        cmocka_unit_test(test_cap_and_errors),
    };

    return cmocka_run_group_tests(tests, make_file, remove_file);
}
