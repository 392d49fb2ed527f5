/* The installation cache: deep copies, expiry, the byte bound and its
 * least-recently-used order, eviction by name and by app, growth. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "icache.h"

/* A device of |id| with channels |a| (and |b| unless NULL). */
struct dev {
    struct pgw_installation d;
    char token[32], type[16];
    const char *chan[2];
};

static void make_dev(struct dev *x, int64_t id, const char *type, const char *a,
                     const char *b)
{
    memset(x, 0, sizeof(*x));
    snprintf(x->token, sizeof(x->token), "token-%lld", (long long)id);
    snprintf(x->type, sizeof(x->type), "%s", type);
    x->chan[0] = a;
    x->chan[1] = b;
    x->d.id = id;
    assert_int_equal(pgw_platform_parse(x->type, &x->d.platform), 0);
    x->d.device_token = x->token;
    x->d.channels = x->chan;
    x->d.n_channels = b ? 2 : 1;
    x->d.badge = 7;
    x->d.apns_topic = id % 2 ? "com.example.topic" : NULL;
    x->d.installation_id = NULL;
}

static bool get(struct pgw_icache *c, const char *app, const char *name,
                int64_t now, const struct pgw_installation **dev, size_t *n)
{
    return pgw_icache_get(c, app, name, now, dev, n);
}

static void test_put_get_copies(void **state)
{
    struct pgw_icache *c = pgw_icache_new(1 << 20, 1000);
    struct dev a, b;
    const struct pgw_installation *p[2] = {&a.d, &b.d}, *dev;
    size_t n = 99;
    struct pgw_icache_stats st;
    (void)state;

    assert_non_null(c);
    make_dev(&a, 1, "ios", "Jerry", "Tom");
    make_dev(&b, 2, "android", "Jerry", NULL);
    assert_false(get(c, "demo", "Jerry", 0, &dev, &n));
    assert_int_equal(pgw_icache_put(c, "demo", "Jerry", p, 2, 0), 0);
    /* the source may change or go: the entry is a copy */
    strcpy(a.token, "changed");
    a.chan[1] = "Spike";
    assert_true(get(c, "demo", "Jerry", 10, &dev, &n));
    assert_int_equal(n, 2);
    assert_int_equal(dev[0].id, 1);
    assert_string_equal(dev[0].device_token, "token-1");
    assert_int_equal(dev[0].platform, PGW_PLATFORM_IOS);
    assert_int_equal(dev[0].n_channels, 2);
    assert_string_equal(dev[0].channels[1], "Tom");
    assert_string_equal(dev[0].apns_topic, "com.example.topic");
    assert_null(dev[0].installation_id);
    assert_int_equal(dev[0].badge, 0); /* badges are not kept */
    assert_int_equal(dev[1].id, 2);
    assert_null(dev[1].apns_topic);
    assert_int_equal(dev[1].n_channels, 1);
    /* other apps and names are other entries; none is an answer too */
    assert_false(get(c, "other", "Jerry", 10, &dev, &n));
    assert_int_equal(pgw_icache_put(c, "demo", "Nobody", NULL, 0, 0), 0);
    assert_true(get(c, "demo", "Nobody", 10, &dev, &n));
    assert_int_equal(n, 0);
    /* a put replaces */
    assert_int_equal(pgw_icache_put(c, "demo", "Jerry", p + 1, 1, 0), 0);
    assert_true(get(c, "demo", "Jerry", 10, &dev, &n));
    assert_int_equal(n, 1);
    assert_int_equal(dev[0].id, 2);
    pgw_icache_get_stats(c, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 2);
    assert_true(st.bytes > 0);
    pgw_icache_free(c);
    pgw_icache_free(NULL);
    assert_null(pgw_icache_new(0, 1000));
    assert_null(pgw_icache_new(100, 0));
}

static void test_expiry(void **state)
{
    struct pgw_icache *c = pgw_icache_new(1 << 20, 1000);
    const struct pgw_installation *dev;
    size_t n;
    struct pgw_icache_stats st;
    (void)state;

    assert_int_equal(pgw_icache_put(c, "demo", "Jerry", NULL, 0, 5000), 0);
    assert_true(get(c, "demo", "Jerry", 5999, &dev, &n));
    assert_false(get(c, "demo", "Jerry", 6000, &dev, &n));
    pgw_icache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    pgw_icache_free(c);
}

static void test_bound_and_lru(void **state)
{
    struct pgw_icache *c;
    struct dev a;
    const struct pgw_installation *p[1] = {&a.d}, *dev;
    size_t n, one;
    struct pgw_icache_stats st;
    char name[32];
    (void)state;

    make_dev(&a, 1, "ios", "x", NULL);
    /* the size of one entry, to set a bound of five */
    c = pgw_icache_new(1 << 20, 1000);
    assert_int_equal(pgw_icache_put(c, "demo", "n0", p, 1, 0), 0);
    pgw_icache_get_stats(c, &st);
    one = st.bytes;
    pgw_icache_free(c);

    c = pgw_icache_new(5 * one + one / 2, 1000);
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        assert_int_equal(pgw_icache_put(c, "demo", name, p, 1, 0), 0);
    }
    /* n0 used last: n1 is the least recently used */
    assert_true(get(c, "demo", "n0", 1, &dev, &n));
    assert_int_equal(pgw_icache_put(c, "demo", "n5", p, 1, 0), 0);
    assert_false(get(c, "demo", "n1", 1, &dev, &n));
    assert_true(get(c, "demo", "n0", 1, &dev, &n));
    assert_true(get(c, "demo", "n5", 1, &dev, &n));
    pgw_icache_get_stats(c, &st);
    assert_int_equal(st.entries, 5);
    assert_int_equal(st.evicted, 1);
    assert_true(st.bytes <= 5 * one + one / 2);
    pgw_icache_free(c);

    /* an entry larger than the bound is not cached */
    c = pgw_icache_new(one - 1, 1000);
    assert_int_equal(pgw_icache_put(c, "demo", "n0", p, 1, 0), 0);
    assert_false(get(c, "demo", "n0", 1, &dev, &n));
    pgw_icache_free(c);
}

static void test_evict(void **state)
{
    struct pgw_icache *c = pgw_icache_new(1 << 20, 1000);
    const struct pgw_installation *dev;
    size_t n;
    struct pgw_icache_stats st;
    (void)state;

    assert_int_equal(pgw_icache_put(c, "demo", "a", NULL, 0, 0), 0);
    assert_int_equal(pgw_icache_put(c, "demo", "b", NULL, 0, 0), 0);
    assert_int_equal(pgw_icache_put(c, "other", "a", NULL, 0, 0), 0);
    assert_int_equal(pgw_icache_put(c, "other", "c", NULL, 0, 0), 0);
    pgw_icache_evict(c, "demo", "a");
    assert_false(get(c, "demo", "a", 0, &dev, &n));
    assert_true(get(c, "other", "a", 0, &dev, &n));
    pgw_icache_evict(c, "demo", "missing");
    pgw_icache_evict(c, "other", NULL);
    assert_false(get(c, "other", "a", 0, &dev, &n));
    assert_false(get(c, "other", "c", 0, &dev, &n));
    assert_true(get(c, "demo", "b", 0, &dev, &n));
    pgw_icache_clear(c);
    assert_false(get(c, "demo", "b", 0, &dev, &n));
    pgw_icache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    /* app and name are two keys, not one string */
    assert_int_equal(pgw_icache_put(c, "ab", "c", NULL, 0, 0), 0);
    assert_false(get(c, "a", "bc", 0, &dev, &n));
    pgw_icache_free(c);
}

/* Many entries: the table grows and every one is still found. */
static void test_many(void **state)
{
    struct pgw_icache *c = pgw_icache_new(64 << 20, 1000);
    struct dev a;
    const struct pgw_installation *p[1] = {&a.d}, *dev;
    size_t n;
    char name[32];
    (void)state;

    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof(name), "client-%d", i);
        make_dev(&a, i + 1, "ios", name, NULL);
        assert_int_equal(pgw_icache_put(c, "demo", name, p, 1, 0), 0);
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof(name), "client-%d", i);
        assert_true(get(c, "demo", name, 0, &dev, &n));
        assert_int_equal(n, 1);
        assert_int_equal(dev[0].id, i + 1);
        assert_string_equal(dev[0].channels[0], name);
    }
    pgw_icache_free(c);
}

/* A miss is false, never an error code (-1 was also PGW_ERR_NOMEM), and
 * writes nothing; a cached empty answer is a hit with no devices. */
static void test_miss_is_not_an_error(void **state)
{
    struct pgw_icache *c = pgw_icache_new(1 << 20, 1000);
    const struct pgw_installation *dev = NULL;
    size_t n = 99;

    (void)state;
    assert_non_null(c);
    assert_false(pgw_icache_get(c, "demo", "Nobody", 0, &dev, &n));
    assert_null(dev);
    assert_int_equal(n, 99);
    assert_int_equal(pgw_icache_put(c, "demo", "Nobody", NULL, 0, 0), 0);
    assert_true(pgw_icache_get(c, "demo", "Nobody", 0, &dev, &n));
    assert_int_equal(n, 0);
    pgw_icache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_copies),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_bound_and_lru),
        cmocka_unit_test(test_evict),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_miss_is_not_an_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
