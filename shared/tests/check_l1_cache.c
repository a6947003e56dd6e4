/*
 * Unit tests for l1_cache.c: the entry and byte bounds, TTL expiry, replacement, and SIEVE's
 * eviction order (a visited entry survives a pass of the hand; an unvisited one goes first).
 */
#include "l1_cache.h"

#include "check_run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool has(struct l1_cache *c, const char *key, long long now)
{
    const char *data;
    size_t len;
    return l1_cache_get(c, key, strlen(key), now, &data, &len);
}

static void put(struct l1_cache *c, const char *key, const char *value, long long now)
{
    l1_cache_put(c, key, strlen(key), value, strlen(value), now);
}

START_TEST(get_put_replace_remove)
{
    struct l1_cache *c = l1_cache_create(10, 1000, 1000);
    const char *data;
    size_t len;
    ck_assert(!l1_cache_get(c, "a", 1, 0, &data, &len));
    put(c, "a", "one", 0);
    ck_assert(l1_cache_get(c, "a", 1, 0, &data, &len));
    ck_assert_uint_eq(len, 3);
    ck_assert(memcmp(data, "one", 3) == 0);
    put(c, "a", "three", 0);
    ck_assert(l1_cache_get(c, "a", 1, 0, &data, &len));
    ck_assert_str_eq(data, "three");
    struct l1_cache_stats s;
    l1_cache_get_stats(c, &s);
    ck_assert_uint_eq(s.entries, 1);
    ck_assert_uint_eq(s.bytes, 1 + 5);
    l1_cache_remove(c, "a", 1);
    ck_assert(!has(c, "a", 0));
    l1_cache_get_stats(c, &s);
    ck_assert_uint_eq(s.bytes, 0);
    l1_cache_free(c);
}
END_TEST

START_TEST(entries_expire)
{
    struct l1_cache *c = l1_cache_create(10, 1000, 100);
    put(c, "a", "v", 1000);
    ck_assert(has(c, "a", 1099));
    ck_assert(!has(c, "a", 1100));
    struct l1_cache_stats s;
    l1_cache_get_stats(c, &s);
    ck_assert_uint_eq(s.entries, 0);
    ck_assert_uint_eq(s.expirations, 1);
    l1_cache_free(c);
}
END_TEST

START_TEST(entry_bound_holds)
{
    struct l1_cache *c = l1_cache_create(100, 1 << 20, 100000);
    char key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        put(c, key, "value", 0);
        if (i % 7 == 0)
            has(c, key, 0);
    }
    struct l1_cache_stats s;
    l1_cache_get_stats(c, &s);
    ck_assert_uint_eq(s.entries, 100);
    ck_assert_uint_eq(s.evictions, 9900);
    l1_cache_free(c);
}
END_TEST

START_TEST(byte_bound_holds)
{
    struct l1_cache *c = l1_cache_create(1000, 1000, 100000);
    char key[32], value[101];
    memset(value, 'v', 100);
    value[100] = '\0';
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        put(c, key, value, 0);
        struct l1_cache_stats s;
        l1_cache_get_stats(c, &s);
        ck_assert_uint_le(s.bytes, 1000);
    }
    char huge[2000];
    memset(huge, 'h', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    put(c, "huge", huge, 0); /* larger than the whole cache: not stored */
    ck_assert(!has(c, "huge", 0));
    l1_cache_free(c);
}
END_TEST

START_TEST(sieve_keeps_visited_entries)
{
    struct l1_cache *c = l1_cache_create(3, 1000, 100000);
    put(c, "a", "1", 0);
    put(c, "b", "2", 0);
    put(c, "c", "3", 0);
    ck_assert(has(c, "a", 0)); /* a is visited */
    put(c, "d", "4", 0);       /* the hand passes a (clears its bit) and evicts b */
    ck_assert(has(c, "a", 0));
    ck_assert(!has(c, "b", 0));
    ck_assert(has(c, "c", 0));
    ck_assert(has(c, "d", 0));
    l1_cache_clear(c);
    struct l1_cache_stats s;
    l1_cache_get_stats(c, &s);
    ck_assert_uint_eq(s.entries, 0);
    ck_assert_uint_eq(s.bytes, 0);
    l1_cache_free(c);
}
END_TEST

START_TEST(a_scan_does_not_flush_the_hot_set)
{
    /* Ten hot keys read between every insert of a long scan of cold keys: SIEVE keeps them. */
    struct l1_cache *c = l1_cache_create(20, 1 << 20, 100000);
    char key[32];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "hot%d", i);
        put(c, key, "h", 0);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "cold%d", i);
        put(c, key, "c", 0);
        for (int h = 0; h < 10; h++) {
            snprintf(key, sizeof key, "hot%d", h);
            ck_assert_msg(has(c, key, 0), "hot%d evicted at step %d", h, i);
        }
    }
    l1_cache_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("l1_cache");
    TCase *tc = tcase_create("l1_cache");
    tcase_add_test(tc, get_put_replace_remove);
    tcase_add_test(tc, entries_expire);
    tcase_add_test(tc, entry_bound_holds);
    tcase_add_test(tc, byte_bound_holds);
    tcase_add_test(tc, sieve_keeps_visited_entries);
    tcase_add_test(tc, a_scan_does_not_flush_the_hot_set);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
