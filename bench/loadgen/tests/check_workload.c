/*
 * Unit tests for workload.c: the Zipf table (probabilities 1/r^s normalised, the hottest key's
 * share, ranks scattered as a permutation of the keys), uniform draws covering the key space,
 * mixed's 10% writes, the preload and verify sequences, and the value of a key.
 */
#include "workload.h"

#include "check_run.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

START_TEST(zipf_probabilities_follow_one_over_rank)
{
    struct zipf *z = zipf_create(10000, 0.99);
    double h = 0;
    for (int i = 1; i <= 10000; i++)
        h += 1 / pow(i, 0.99);
    ck_assert(fabs(zipf_probability(z, 1) - 1 / h) < 1e-12);
    ck_assert(fabs(zipf_probability(z, 10) - 1 / pow(10, 0.99) / h) < 1e-12);
    /* as bench/README.md says: the hottest key about 10%, the top 100 about half */
    ck_assert(zipf_probability(z, 1) > 0.09 && zipf_probability(z, 1) < 0.11);
    ck_assert_uint_eq(zipf_rank(z, 0.0), 1);
    ck_assert_uint_eq(zipf_rank(z, 0.999999999), 10000);
    zipf_free(z);
}
END_TEST

START_TEST(zipf_ranks_scatter_as_a_permutation)
{
    for (uint64_t n = 1000; n <= 1010; n++) {
        struct zipf *z = zipf_create(n, 0.99);
        char *seen = calloc(n + 1, 1);
        for (uint64_t r = 1; r <= n; r++) {
            uint64_t k = zipf_key(z, r);
            ck_assert(k >= 1 && k <= n);
            ck_assert(!seen[k]);
            seen[k] = 1;
        }
        /* the two hottest keys are not neighbours */
        ck_assert_uint_gt(llabs((long long)zipf_key(z, 1) - (long long)zipf_key(z, 2)), 1);
        free(seen);
        zipf_free(z);
    }
}
END_TEST

START_TEST(zipf_draws_match_the_table)
{
    struct zipf *z = zipf_create(10000, 0.99);
    struct rng rng;
    rng_init(&rng, 42);
    int hottest = 0, n = 200000;
    for (int i = 0; i < n; i++) {
        struct request r = workload_next(WORKLOAD_READ_ZIPF, 10000, z, &rng);
        ck_assert_int_eq(r.kind, REQUEST_READ_HIT);
        hottest += r.key == zipf_key(z, 1);
    }
    double share = (double)hottest / n, want = zipf_probability(z, 1);
    ck_assert(fabs(share - want) < 0.005);
    zipf_free(z);
}
END_TEST

START_TEST(uniform_draws_cover_the_keys)
{
    struct rng rng;
    rng_init(&rng, 7);
    char seen[101] = {0};
    for (int i = 0; i < 10000; i++) {
        struct request r = workload_next(WORKLOAD_READ_HIT, 100, NULL, &rng);
        ck_assert(r.key >= 1 && r.key <= 100);
        seen[r.key] = 1;
    }
    for (int k = 1; k <= 100; k++)
        ck_assert(seen[k]);
    struct request miss = workload_next(WORKLOAD_READ_MISS, 100, NULL, &rng);
    ck_assert_int_eq(miss.kind, REQUEST_READ_MISS);
    ck_assert(miss.key >= 1 && miss.key <= 1000000000);
}
END_TEST

START_TEST(mixed_is_ten_percent_writes)
{
    struct zipf *z = zipf_create(1000, 0.99);
    struct rng rng;
    rng_init(&rng, 3);
    int writes = 0, n = 100000;
    for (int i = 0; i < n; i++)
        writes += workload_next(WORKLOAD_MIXED, 1000, z, &rng).kind == REQUEST_WRITE;
    ck_assert(writes > n * 0.09 && writes < n * 0.11);
    zipf_free(z);
}
END_TEST

START_TEST(threads_draw_different_streams)
{
    struct rng a, b;
    rng_init(&a, 1);
    rng_init(&b, 2);
    ck_assert_uint_ne(rng_next(&a), rng_next(&b));
    for (int i = 0; i < 1000; i++) {
        double u = rng_uniform(&a);
        ck_assert(u >= 0 && u < 1);
    }
}
END_TEST

START_TEST(preload_writes_every_key_once_verify_samples_evenly)
{
    struct request r;
    ck_assert_uint_eq(workload_sequence_length(WORKLOAD_PRELOAD, 500, 0), 500);
    for (uint64_t i = 0; i < 500; i++) {
        ck_assert(workload_sequence(WORKLOAD_PRELOAD, 500, 0, i, &r));
        ck_assert_int_eq(r.kind, REQUEST_WRITE);
        ck_assert_uint_eq(r.key, i + 1);
    }
    ck_assert(!workload_sequence(WORKLOAD_PRELOAD, 500, 0, 500, &r));
    ck_assert_uint_eq(workload_sequence_length(WORKLOAD_VERIFY, 10000, 0), 10000);
    ck_assert_uint_eq(workload_sequence_length(WORKLOAD_VERIFY, 10000, 100), 100);
    ck_assert(workload_sequence(WORKLOAD_VERIFY, 10000, 100, 0, &r));
    ck_assert_int_eq(r.kind, REQUEST_READ_HIT);
    ck_assert_uint_eq(r.key, 1);
    ck_assert(workload_sequence(WORKLOAD_VERIFY, 10000, 100, 99, &r));
    ck_assert_uint_eq(r.key, 10000);
    ck_assert(!workload_sequence(WORKLOAD_VERIFY, 10000, 100, 100, &r));
}
END_TEST

START_TEST(each_key_has_its_own_value)
{
    char a[101], b[101], short_value[5];
    value_for_key(1, 100, a);
    value_for_key(12, 100, b);
    ck_assert_uint_eq(strlen(a), 100);
    ck_assert_str_ne(a, b);
    ck_assert(strncmp(a, "bench:1=vvv", 11) == 0);
    value_for_key(12345, 4, short_value);
    ck_assert_str_eq(short_value, "benc");
}
END_TEST

START_TEST(polyglot_mixes_both_stores)
{
    struct rng rng;
    rng_init(&rng, 42);
    int count[REQUEST_SUMMARY + 1] = {0};
    enum { N = 100000 };
    for (int i = 0; i < N; i++) {
        struct request r = workload_next(WORKLOAD_POLYGLOT, 1000, NULL, &rng);
        ck_assert(r.key >= 1 && r.key <= 1000);
        count[r.kind]++;
    }
    ck_assert_int_eq(count[REQUEST_READ_MISS] + count[REQUEST_PING], 0);
    ck_assert(count[REQUEST_READ_HIT] > N * 0.38 && count[REQUEST_READ_HIT] < N * 0.42);
    ck_assert(count[REQUEST_TXN_READ] > N * 0.28 && count[REQUEST_TXN_READ] < N * 0.32);
    ck_assert(count[REQUEST_WRITE] > N * 0.09 && count[REQUEST_WRITE] < N * 0.11);
    ck_assert(count[REQUEST_TXN_WRITE] > N * 0.14 && count[REQUEST_TXN_WRITE] < N * 0.16);
    ck_assert(count[REQUEST_SUMMARY] > N * 0.04 && count[REQUEST_SUMMARY] < N * 0.06);
    struct request w = workload_next(WORKLOAD_TXN_WRITE, 10, NULL, &rng);
    ck_assert_int_eq(w.kind, REQUEST_TXN_WRITE);
    ck_assert(w.key >= 1 && w.key <= TXN_USERS);
}
END_TEST

START_TEST(workload_names)
{
    enum workload_kind k;
    ck_assert(workload_parse("read-zipf", &k));
    ck_assert_int_eq(k, WORKLOAD_READ_ZIPF);
    ck_assert_str_eq(workload_name(WORKLOAD_MIXED), "mixed");
    ck_assert(!workload_parse("read", &k));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("workload");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, zipf_probabilities_follow_one_over_rank);
    tcase_add_test(tc, zipf_ranks_scatter_as_a_permutation);
    tcase_add_test(tc, zipf_draws_match_the_table);
    tcase_add_test(tc, uniform_draws_cover_the_keys);
    tcase_add_test(tc, mixed_is_ten_percent_writes);
    tcase_add_test(tc, threads_draw_different_streams);
    tcase_add_test(tc, preload_writes_every_key_once_verify_samples_evenly);
    tcase_add_test(tc, each_key_has_its_own_value);
    tcase_add_test(tc, workload_names);
    tcase_add_test(tc, polyglot_mixes_both_stores);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
