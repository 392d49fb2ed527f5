/* Tests of util/list: the one intrusive list of the gateway. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pushgw.h"
#include "util/list.h"

struct item {
    int id;
    struct pgw_list node;
};

/* Checks that |head| holds exactly the ids |want| in order, both ways. */
static void assert_ids(struct pgw_list *head, const int *want, size_t n)
{
    struct pgw_list *pos;
    size_t i = 0;

    pgw_list_for_each(pos, head)
    {
        assert_true(i < n);
        assert_int_equal(pgw_list_entry(pos, struct item, node)->id, want[i]);
        i++;
    }
    assert_int_equal(i, n);
    for (pos = head->prev; pos != head; pos = pos->prev)
        assert_int_equal(pgw_list_entry(pos, struct item, node)->id, want[--i]);
    assert_int_equal(pgw_list_empty(head), n == 0);
}

static void init_items(struct item *it, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        it[i].id = (int)i;
        pgw_list_init(&it[i].node);
    }
}

static void test_push_and_pop(void **state)
{
    struct pgw_list head = PGW_LIST_HEAD_INIT(head);
    struct item it[4];

    (void)state;
    init_items(it, 4);
    assert_true(pgw_list_empty(&head));
    assert_null(pgw_list_first(&head));
    assert_null(pgw_list_last(&head));
    assert_null(pgw_list_pop_front(&head));

    pgw_list_push_back(&head, &it[1].node);
    pgw_list_push_back(&head, &it[2].node);
    pgw_list_push_front(&head, &it[0].node);
    pgw_list_push_back(&head, &it[3].node);
    assert_ids(&head, (const int[]){0, 1, 2, 3}, 4);
    assert_ptr_equal(pgw_list_first(&head), &it[0].node);
    assert_ptr_equal(pgw_list_last(&head), &it[3].node);

    /* FIFO: pushed at the back, popped at the front */
    assert_ptr_equal(pgw_list_pop_front(&head), &it[0].node);
    assert_false(pgw_list_linked(&it[0].node));
    assert_ids(&head, (const int[]){1, 2, 3}, 3);
}

static void test_remove_anywhere(void **state)
{
    struct pgw_list head = PGW_LIST_HEAD_INIT(head);
    struct item it[5];

    (void)state;
    init_items(it, 5);
    for (size_t i = 0; i < 5; i++)
        pgw_list_push_back(&head, &it[i].node);
    assert_true(pgw_list_linked(&it[2].node));
    pgw_list_remove(&it[2].node); /* middle */
    assert_false(pgw_list_linked(&it[2].node));
    pgw_list_remove(&it[0].node); /* first */
    pgw_list_remove(&it[4].node); /* last */
    assert_ids(&head, (const int[]){1, 3}, 2);
    /* removing an unlinked node changes nothing */
    pgw_list_remove(&it[2].node);
    assert_ids(&head, (const int[]){1, 3}, 2);
    pgw_list_remove(&it[1].node);
    pgw_list_remove(&it[3].node);
    assert_ids(&head, NULL, 0);
}

static void test_remove_while_visiting(void **state)
{
    struct pgw_list head = PGW_LIST_HEAD_INIT(head);
    struct pgw_list *pos, *tmp;
    struct item it[6];

    (void)state;
    init_items(it, 6);
    for (size_t i = 0; i < 6; i++)
        pgw_list_push_back(&head, &it[i].node);
    pgw_list_for_each_safe(pos, tmp, &head)
    {
        if (pgw_list_entry(pos, struct item, node)->id % 2 == 0)
            pgw_list_remove(pos);
    }
    assert_ids(&head, (const int[]){1, 3, 5}, 3);
}

static void test_append_all(void **state)
{
    struct pgw_list a = PGW_LIST_HEAD_INIT(a);
    struct pgw_list b = PGW_LIST_HEAD_INIT(b);
    struct item it[4];

    (void)state;
    init_items(it, 4);
    pgw_list_append_all(&a, &b); /* both empty */
    assert_ids(&a, NULL, 0);
    pgw_list_push_back(&b, &it[2].node);
    pgw_list_push_back(&b, &it[3].node);
    pgw_list_append_all(&a, &b); /* into an empty list */
    assert_ids(&a, (const int[]){2, 3}, 2);
    assert_ids(&b, NULL, 0);
    pgw_list_push_back(&b, &it[0].node);
    pgw_list_push_back(&b, &it[1].node);
    pgw_list_append_all(&a, &b);
    assert_ids(&a, (const int[]){2, 3, 0, 1}, 4);
    assert_ids(&b, NULL, 0);
    pgw_list_append_all(&a, &b); /* from an empty list */
    assert_ids(&a, (const int[]){2, 3, 0, 1}, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_and_pop),
        cmocka_unit_test(test_remove_anywhere),
        cmocka_unit_test(test_remove_while_visiting),
        cmocka_unit_test(test_append_all),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
