/*
 * The broadcasts' bound on their pushes in flight
 * (pgw_broadcast_pace_answer(), broadcast.h): it shrinks while answers
 * queue, grows while it holds sends back and they do not, and stays
 * within its minimum and the dispatcher's cap; once reached, sends resume
 * a batch at a time. The sender itself is
 * tested end to end in tests/service/test_broadcast.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

#include "broadcast.h"

/* Feeds |rounds| rounds of answers: the fastest |base_us|, the others
 * |rtt_us|; |limited|: the caller's limit held a send back in each. */
static void feed(struct pgw_broadcast_pace *pc, int rounds, int64_t base_us,
                 int64_t rtt_us, bool limited, size_t max)
{
    for (int r = 0; r < rounds; r++) {
        size_t n = pc->limit / 2 + 64;

        pc->limited = limited;
        for (size_t i = 0; i < n; i++)
            pgw_broadcast_pace_answer(pc, i == 0 ? base_us : rtt_us, max);
    }
}

static void test_starts(void **state)
{
    struct pgw_broadcast_pace pc;
    (void)state;

    pgw_broadcast_pace_init(&pc);
    assert_int_equal(pc.limit, PGW_BROADCAST_PACE_START);
    /* within a round nothing moves */
    pgw_broadcast_pace_answer(&pc, 100000, 10000);
    assert_int_equal(pc.limit, PGW_BROADCAST_PACE_START);
}

static void test_queue_shrinks(void **state)
{
    struct pgw_broadcast_pace pc;
    (void)state;

    pgw_broadcast_pace_init(&pc);
    /* answers 20 ms over the fastest: a quarter less each round */
    feed(&pc, 1, 1000, 21000, true, 10000);
    assert_int_equal(pc.limit, PGW_BROADCAST_PACE_START * 3 / 4);
    feed(&pc, 30, 1000, 21000, true, 10000);
    assert_int_equal(pc.limit, PGW_BROADCAST_PACE_MIN);
}

static void test_no_queue_grows(void **state)
{
    struct pgw_broadcast_pace pc;
    size_t before;
    (void)state;

    pgw_broadcast_pace_init(&pc);
    /* 2 ms over the fastest, held back: an eighth more each round */
    feed(&pc, 1, 1000, 3000, true, 10000);
    assert_int_equal(pc.limit,
                     PGW_BROADCAST_PACE_START + PGW_BROADCAST_PACE_START / 8);
    /* not held back: the limit was not what bounded it, so it stays */
    before = pc.limit;
    feed(&pc, 5, 1000, 3000, false, 10000);
    assert_int_equal(pc.limit, before);
    /* up to the dispatcher's cap, no further */
    feed(&pc, 60, 1000, 3000, true, 2000);
    assert_int_equal(pc.limit, 2000);
}

/* A far provider: 150 ms answers without a queue are no queue, so the
 * limit grows as deep as the round trip needs. */
static void test_far_provider(void **state)
{
    struct pgw_broadcast_pace pc;
    (void)state;

    pgw_broadcast_pace_init(&pc);
    feed(&pc, 20, 150000, 152000, true, 10000);
    assert_true(pc.limit > 4000);
    /* then its answers queue 30 ms more: it shrinks */
    {
        size_t before = pc.limit;

        feed(&pc, 1, 150000, 182000, true, 10000);
        assert_true(pc.limit < before);
    }
}

/* The time without a queue is the fastest of the last rounds: once the
 * rounds that saw a fast answer are old, a slower path is the base. */
static void test_base_follows(void **state)
{
    struct pgw_broadcast_pace pc;
    (void)state;

    pgw_broadcast_pace_init(&pc);
    feed(&pc, 1, 500, 2000, true, 10000);
    /* the path got slower for good: 50 ms, no queue on it */
    feed(&pc, PGW_BROADCAST_PACE_BASES + 1, 50000, 50000, true, 10000);
    {
        size_t before = pc.limit;

        feed(&pc, 3, 50000, 51000, true, 10000);
        assert_true(pc.limit > before);
    }
}

/* Once the limit is reached, sends resume with a batch's room free,
 * then go on up to the limit. */
static void test_sends_in_batches(void **state)
{
    struct pgw_broadcast_pace pc;
    size_t lim, batch;
    (void)state;

    pgw_broadcast_pace_init(&pc);
    lim = pc.limit;
    batch = pgw_broadcast_pace_batch(&pc);
    assert_true(batch >= PGW_BROADCAST_PACE_BATCH && batch < lim);
    assert_true(pgw_broadcast_pace_may_send(&pc, 0));
    assert_true(pgw_broadcast_pace_may_send(&pc, lim - 1));
    assert_false(pc.limited);
    assert_false(pgw_broadcast_pace_may_send(&pc, lim));
    assert_true(pc.limited);
    /* a few answers: not yet */
    assert_false(pgw_broadcast_pace_may_send(&pc, lim - 1));
    assert_false(pgw_broadcast_pace_may_send(&pc, lim - batch + 1));
    /* a batch's room: it goes, and on to the limit */
    assert_true(pgw_broadcast_pace_may_send(&pc, lim - batch));
    assert_true(pgw_broadcast_pace_may_send(&pc, lim - 1));
    assert_false(pgw_broadcast_pace_may_send(&pc, lim));
}

/* The batch is a share of the limit, never under the least batch. */
static void test_batch_follows_limit(void **state)
{
    struct pgw_broadcast_pace pc;
    (void)state;

    pgw_broadcast_pace_init(&pc);
    pc.limit = PGW_BROADCAST_PACE_BATCH * PGW_BROADCAST_PACE_BATCH_DIV - 1;
    assert_int_equal(pgw_broadcast_pace_batch(&pc), PGW_BROADCAST_PACE_BATCH);
    pc.limit = 40 * PGW_BROADCAST_PACE_BATCH_DIV;
    assert_int_equal(pgw_broadcast_pace_batch(&pc), 40);
    pc.limit = 3200;
    assert_int_equal(pgw_broadcast_pace_batch(&pc),
                     3200 / PGW_BROADCAST_PACE_BATCH_DIV);
    /* the room it waits for, at a deep limit */
    assert_false(pgw_broadcast_pace_may_send(&pc, 3200));
    assert_false(pgw_broadcast_pace_may_send(&pc, 3200 - 799));
    assert_true(pgw_broadcast_pace_may_send(&pc, 3200 - 800));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts),
        cmocka_unit_test(test_queue_shrinks),
        cmocka_unit_test(test_no_queue_grows),
        cmocka_unit_test(test_far_provider),
        cmocka_unit_test(test_base_follows),
        cmocka_unit_test(test_sends_in_batches),
        cmocka_unit_test(test_batch_follows_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
