/*
 * Unit tests of shard_map: the contract's reference vectors for the modulo strategy, how evenly
 * each strategy spreads keys, and what fraction of the keys moves when a shard is added.
 */
#include "shard_map.h"

#include "check_run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS 20000

static struct shard_map *make(const char *strategy, int n, const char *ranges)
{
    char err[256];
    struct shard_map *map = shard_map_create(strategy, n, ranges, err, sizeof err);
    ck_assert_msg(map != NULL, "%s/%d: %s", strategy, n, err);
    return map;
}

static int lookup(const struct shard_map *map, const char *key)
{
    return shard_map_lookup(map, key, strlen(key));
}

static void key_of(int i, char *out, size_t len)
{
    snprintf(out, len, "user:%d", i);
}

/* Keys for ranges: "00000" to "99995", 2,000 per leading digit. */
static void ordered_key_of(int i, char *out, size_t len)
{
    snprintf(out, len, "%05d", i * 5);
}

/* Checks every shard holds within `tolerance` (a fraction) of KEYS / N. */
static void assert_even(const struct shard_map *map, double tolerance)
{
    int n = shard_map_count(map), counts[SHARD_MAX] = {0};
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        key_of(i, key, sizeof key);
        int s = lookup(map, key);
        ck_assert(s >= 0 && s < n);
        counts[s]++;
    }
    double mean = (double)KEYS / n;
    for (int s = 0; s < n; s++)
        ck_assert_msg(counts[s] > mean * (1 - tolerance) && counts[s] < mean * (1 + tolerance),
                      "%s: shard %d holds %d keys, mean %.0f", shard_map_describe(map), s,
                      counts[s], mean);
}

/* The fraction of KEYS that lands elsewhere under `after`; with `only_to` >= 0, also checks
 * that every moved key went to that shard. */
static double moved_fraction(const struct shard_map *before, const struct shard_map *after,
                             int only_to)
{
    int moved = 0;
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        key_of(i, key, sizeof key);
        int to = lookup(after, key);
        if (lookup(before, key) != to) {
            moved++;
            if (only_to >= 0)
                ck_assert_msg(to == only_to, "%s moved to shard %d, not %d", key, to, only_to);
        }
    }
    return (double)moved / KEYS;
}

START_TEST(modulo_reference_vectors)
{
    struct shard_map *map = make("modulo", 3, "");
    ck_assert_int_eq(lookup(map, "test_key"), 2);
    ck_assert_int_eq(lookup(map, "user:123"), 2);
    ck_assert_int_eq(lookup(map, "product:456"), 0);
    ck_assert_int_eq(lookup(map, "order:789"), 1);
    ck_assert_int_eq(lookup(map, "session:abc"), 2);
    ck_assert_int_eq(lookup(map, "a"), 1);
    ck_assert_int_eq(lookup(map, "unicode_测试_key"), 2);
    ck_assert_str_eq(shard_map_describe(map), "modulo/3");
    shard_map_free(map);
    /* MD5("") = d41d8cd98f00b204e9800998ecf8427e; its first 8 bytes, big-endian. */
    ck_assert_uint_eq(shard_md5_u64("", 0), 0xd41d8cd98f00b204ULL);
}
END_TEST

START_TEST(jump_hash_known_values)
{
    /* Values of the paper's reference implementation (as other ports test it: go-jump,
     * ClickHouse's jumpConsistentHash, the Rust crates). */
    ck_assert_int_eq(shard_jump_hash(0, 1), 0);
    ck_assert_int_eq(shard_jump_hash(1, 1), 0);
    ck_assert_int_eq(shard_jump_hash(1, 60), 55);
    ck_assert_int_eq(shard_jump_hash(2, 60), 46);
    ck_assert_int_eq(shard_jump_hash(42, 57), 43);
    ck_assert_int_eq(shard_jump_hash(256, 1024), 520);
    ck_assert_int_eq(shard_jump_hash(0xDEAD10CCULL, 666), 361);
    for (uint64_t k = 0; k < 1000; k++) {
        int b = shard_jump_hash(k, 10);
        ck_assert(b >= 0 && b < 10);
        /* Monotone: a key only moves to the newly added bucket. */
        int c = shard_jump_hash(k, 11);
        ck_assert(c == b || c == 10);
    }
}
END_TEST

START_TEST(every_strategy_spreads_evenly)
{
    for (int n = 2; n <= 8; n++) {
        struct shard_map *m = make("modulo", n, "");
        struct shard_map *j = make("jump", n, "");
        assert_even(m, 0.10);
        assert_even(j, 0.10);
        shard_map_free(m);
        shard_map_free(j);
    }
    /* Ranges are exactly as even as their boundaries: digits 0-3, 4-6, 7-9. */
    struct shard_map *r = make("range", 3, "4,7");
    int counts[3] = {0};
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        ordered_key_of(i, key, sizeof key);
        counts[lookup(r, key)]++;
    }
    ck_assert_int_eq(counts[0], 8000);
    ck_assert_int_eq(counts[1], 6000);
    ck_assert_int_eq(counts[2], 6000);
    shard_map_free(r);
}
END_TEST

START_TEST(adding_a_shard_moves_this_much)
{
    for (int n = 2; n <= 8; n++) {
        struct shard_map *m0 = make("modulo", n, ""), *m1 = make("modulo", n + 1, "");
        struct shard_map *j0 = make("jump", n, ""), *j1 = make("jump", n + 1, "");
        double modulo = moved_fraction(m0, m1, -1);
        double jump = moved_fraction(j0, j1, n);
        double ideal = 1.0 / (n + 1);
        /* modulo: a key stays only when h mod n == h mod (n+1): about 1/(n+1) stay. */
        ck_assert_msg(modulo > 1 - ideal - 0.03 && modulo < 1 - ideal + 0.03,
                      "modulo %d->%d moved %.3f", n, n + 1, modulo);
        /* jump: only the new shard's share moves, and all of it to the new shard. */
        ck_assert_msg(jump > ideal - 0.02 && jump < ideal + 0.02, "jump %d->%d moved %.3f", n,
                      n + 1, jump);
        shard_map_free(m0), shard_map_free(m1), shard_map_free(j0), shard_map_free(j1);
    }
}
END_TEST

START_TEST(splitting_a_range_moves_only_that_range)
{
    struct shard_map *before = make("range", 2, "5");
    struct shard_map *after = make("range", 3, "5,7"); /* split the upper range */
    char key[32];
    int moved = 0;
    for (int i = 0; i < KEYS; i++) {
        ordered_key_of(i, key, sizeof key);
        int a = lookup(before, key), b = lookup(after, key);
        if (a != b) {
            moved++;
            ck_assert_int_eq(a, 1);
            ck_assert_int_eq(b, 2);
            ck_assert(strcmp(key, "7") >= 0);
        }
    }
    ck_assert_int_eq(moved, 6000); /* the keys from "7" on, and no others */
    shard_map_free(before);
    shard_map_free(after);
}
END_TEST

START_TEST(range_boundaries)
{
    struct shard_map *map = make("range", 3, "g, n");
    ck_assert_int_eq(lookup(map, ""), 0);
    ck_assert_int_eq(lookup(map, "apple"), 0);
    ck_assert_int_eq(lookup(map, "g"), 1); /* a boundary starts its shard */
    ck_assert_int_eq(lookup(map, "m\xff"), 1);
    ck_assert_int_eq(lookup(map, "n"), 2);
    ck_assert_int_eq(lookup(map, "\xc3\xa9t\xc3\xa9"), 2); /* bytes compare unsigned */
    ck_assert_str_eq(shard_map_describe(map), "range/3/g,n");
    shard_map_free(map);
    struct shard_map *one = make("range", 1, "");
    ck_assert_int_eq(lookup(one, "anything"), 0);
    shard_map_free(one);
}
END_TEST

START_TEST(invalid_settings_are_refused)
{
    char err[256];
    ck_assert_ptr_null(shard_map_create("md5", 3, "", err, sizeof err));
    ck_assert(strstr(err, "unknown strategy") != NULL);
    ck_assert_ptr_null(shard_map_create("modulo", 0, "", err, sizeof err));
    ck_assert_ptr_null(shard_map_create("modulo", SHARD_MAX + 1, "", err, sizeof err));
    ck_assert_ptr_null(shard_map_create("jump", 3, "g,n", err, sizeof err));
    ck_assert_ptr_null(shard_map_create("range", 3, "g", err, sizeof err));
    ck_assert_ptr_null(shard_map_create("range", 3, "g,n,t", err, sizeof err));
    ck_assert_ptr_null(shard_map_create("range", 3, "n,g", err, sizeof err));
    ck_assert(strstr(err, "ascend") != NULL);
    ck_assert_ptr_null(shard_map_create("range", 3, "g,,n", err, sizeof err));
    ck_assert_ptr_null(shard_map_create("range", 3, "", err, sizeof err));
}
END_TEST

START_TEST(lists_split_at_commas)
{
    char *items[4];
    ck_assert_int_eq(shard_split_list(" a ,b,  c", items, 4), 3);
    ck_assert_str_eq(items[0], "a");
    ck_assert_str_eq(items[1], "b");
    ck_assert_str_eq(items[2], "c");
    for (int i = 0; i < 3; i++)
        free(items[i]);
    ck_assert_int_eq(shard_split_list("a,b,c", items, 2), -1);
    ck_assert_int_eq(shard_split_list("a,,c", items, 4), -1);
    ck_assert_int_eq(shard_split_list("", items, 4), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shard_map");
    TCase *tc = tcase_create("shard_map");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, modulo_reference_vectors);
    tcase_add_test(tc, jump_hash_known_values);
    tcase_add_test(tc, every_strategy_spreads_evenly);
    tcase_add_test(tc, adding_a_shard_moves_this_much);
    tcase_add_test(tc, splitting_a_range_moves_only_that_range);
    tcase_add_test(tc, range_boundaries);
    tcase_add_test(tc, invalid_settings_are_refused);
    tcase_add_test(tc, lists_split_at_commas);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
