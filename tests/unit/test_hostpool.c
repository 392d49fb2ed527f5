/* Tests of hostpool: the per-host admission policy of pooled requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "hostpool.h"
#include "pushgw.h"

#define H1 "http://127.0.0.1:80"
#define H2 "https://hook.example:443"

/* At most |limit| run; the rest wait in arrival order up to the queue's
 * size; past it nothing is admitted; each release hands over one turn. */
static void test_limit_queue_full_fifo(void **state)
{
    struct pgw_hostpool *p = NULL;
    struct pgw_hostpool_slot s[6];

    (void)state;
    memset(s, 0, sizeof(s));
    assert_int_equal(pgw_hostpool_new(&p), 0);
    assert_int_equal(pgw_hostpool_admit(p, &s[0], H1, 2, 3), PGW_HOSTPOOL_RUN);
    assert_int_equal(pgw_hostpool_admit(p, &s[1], H1, 2, 3), PGW_HOSTPOOL_RUN);
    for (int i = 2; i < 5; i++)
        assert_int_equal(pgw_hostpool_admit(p, &s[i], H1, 2, 3),
                         PGW_HOSTPOOL_WAIT);
    assert_int_equal(pgw_hostpool_admit(p, &s[5], H1, 2, 3), PGW_HOSTPOOL_FULL);
    assert_null(s[5].host);
    assert_int_equal(pgw_hostpool_running(p, H1), 2);
    assert_int_equal(pgw_hostpool_waiting(p, H1), 3);

    /* Another host has its own slots. */
    assert_int_equal(pgw_hostpool_admit(p, &s[5], H2, 1, 0), PGW_HOSTPOOL_RUN);

    assert_ptr_equal(pgw_hostpool_release(p, &s[1]), &s[2]);
    assert_true(s[2].running);
    assert_ptr_equal(pgw_hostpool_release(p, &s[0]), &s[3]);
    assert_ptr_equal(pgw_hostpool_release(p, &s[2]), &s[4]);
    assert_int_equal(pgw_hostpool_running(p, H1), 2);
    assert_int_equal(pgw_hostpool_waiting(p, H1), 0);
    assert_null(pgw_hostpool_release(p, &s[3]));
    assert_null(pgw_hostpool_release(p, &s[4]));
    assert_int_equal(pgw_hostpool_running(p, H1), 0);
    /* Released twice, or never admitted: a no-op. */
    assert_null(pgw_hostpool_release(p, &s[4]));
    assert_null(pgw_hostpool_release(p, &s[5]));
    assert_null(pgw_hostpool_release(p, &s[5]));
    assert_int_equal(pgw_hostpool_running(p, H2), 0);
    pgw_hostpool_free(p);
}

/* A waiting request that is abandoned gives up its place without taking
 * a running slot; one that arrives while others wait does not overtake
 * them. */
static void test_cancel_waiting_and_no_overtaking(void **state)
{
    struct pgw_hostpool *p = NULL;
    struct pgw_hostpool_slot s[4];

    (void)state;
    memset(s, 0, sizeof(s));
    assert_int_equal(pgw_hostpool_new(&p), 0);
    assert_int_equal(pgw_hostpool_admit(p, &s[0], H1, 1, 10), PGW_HOSTPOOL_RUN);
    assert_int_equal(pgw_hostpool_admit(p, &s[1], H1, 1, 10),
                     PGW_HOSTPOOL_WAIT);
    assert_int_equal(pgw_hostpool_admit(p, &s[2], H1, 1, 10),
                     PGW_HOSTPOOL_WAIT);
    assert_null(pgw_hostpool_release(p, &s[1])); /* cancelled while waiting */
    assert_int_equal(pgw_hostpool_waiting(p, H1), 1);
    assert_int_equal(pgw_hostpool_running(p, H1), 1);
    /* The limit is raised while s[2] waits: the newcomer still queues. */
    assert_int_equal(pgw_hostpool_admit(p, &s[3], H1, 3, 10),
                     PGW_HOSTPOOL_WAIT);
    assert_ptr_equal(pgw_hostpool_release(p, &s[0]), &s[2]);
    assert_int_equal(pgw_hostpool_waiting(p, H1), 1);
    pgw_hostpool_free(p); /* with slots admitted: frees the hosts anyway */
}

static void test_invalid(void **state)
{
    struct pgw_hostpool *p = NULL;
    struct pgw_hostpool_slot s;

    (void)state;
    memset(&s, 0, sizeof(s));
    assert_int_equal(pgw_hostpool_new(&p), 0);
    assert_int_equal(pgw_hostpool_admit(p, &s, H1, 0, 10), PGW_ERR_INVAL);
    assert_int_equal(pgw_hostpool_admit(p, &s, NULL, 1, 10), PGW_ERR_INVAL);
    assert_int_equal(pgw_hostpool_running(p, "nowhere"), 0);
    pgw_hostpool_free(p);
    pgw_hostpool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_queue_full_fifo),
        cmocka_unit_test(test_cancel_waiting_and_no_overtaking),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
