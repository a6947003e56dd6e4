/*
 * Unit tests for histogram.c: buckets tile the whole range without gaps and within 1/64 of
 * their values; percentiles are those of the recorded values (to bucket precision, never above
 * the maximum); merging two histograms is recording into one.
 */
#include "histogram.h"

#include "check_run.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

START_TEST(buckets_tile_the_range)
{
    /* Consecutive buckets are adjacent, and each is at most 1/64 of its lowest value wide. */
    for (unsigned b = 0; b < 64 * 57 + 127; b++) {
        uint64_t low = histogram_bucket_low(b), high = histogram_bucket_high(b);
        ck_assert_uint_le(low, high);
        ck_assert_uint_eq(histogram_bucket_low(b + 1), high + 1);
        ck_assert_uint_le(high - low, low / 64);
        ck_assert_uint_eq(histogram_bucket_of(low), b);
        ck_assert_uint_eq(histogram_bucket_of(high), b);
    }
    ck_assert_uint_eq(histogram_bucket_high(64 * 57 + 127), UINT64_MAX);
}
END_TEST

START_TEST(small_values_are_exact)
{
    for (uint64_t v = 0; v < 128; v++) {
        ck_assert_uint_eq(histogram_bucket_of(v), v);
        ck_assert_uint_eq(histogram_bucket_high(histogram_bucket_of(v)), v);
    }
}
END_TEST

START_TEST(percentiles_of_one_to_a_thousand)
{
    struct histogram *h = histogram_create();
    for (uint64_t v = 1; v <= 1000; v++)
        histogram_record(h, v);
    ck_assert_uint_eq(histogram_count(h), 1000);
    ck_assert_uint_eq(histogram_max(h), 1000);
    ck_assert(histogram_mean(h) > 500.49 && histogram_mean(h) < 500.51);
    /* the 500th value is 500; its bucket [496, 503] reports 503 */
    uint64_t p50 = histogram_percentile(h, 50);
    ck_assert_uint_ge(p50, 500);
    ck_assert_uint_le(p50, 500 + 500 / 64);
    uint64_t p99 = histogram_percentile(h, 99);
    ck_assert_uint_ge(p99, 990);
    ck_assert_uint_le(p99, 1000); /* never above the maximum */
    ck_assert_uint_eq(histogram_percentile(h, 100), 1000);
    ck_assert_uint_eq(histogram_percentile(h, 0), 1);
    histogram_free(h);
}
END_TEST

START_TEST(one_slow_request_in_a_hundred_is_the_p99)
{
    /* 99 fast answers and one slow one: p99 is fast, p99.9 and max the slow one. Nothing is
     * added for the time the slow one held its connection (no coordinated-omission filling). */
    struct histogram *h = histogram_create();
    for (int i = 0; i < 99; i++)
        histogram_record(h, 200);
    histogram_record(h, 1000000);
    ck_assert_uint_eq(histogram_count(h), 100);
    ck_assert_uint_le(histogram_percentile(h, 99), 203);
    ck_assert_uint_eq(histogram_percentile(h, 99.9), 1000000);
    ck_assert_uint_eq(histogram_max(h), 1000000);
    histogram_free(h);
}
END_TEST

START_TEST(merge_is_recording_into_one)
{
    struct histogram *a = histogram_create(), *b = histogram_create(), *all = histogram_create();
    for (uint64_t v = 1; v < 100000; v += 7) {
        histogram_record(v % 2 ? a : b, v);
        histogram_record(all, v);
    }
    histogram_merge(a, b);
    ck_assert_uint_eq(histogram_count(a), histogram_count(all));
    ck_assert_uint_eq(histogram_max(a), histogram_max(all));
    for (double p = 0; p <= 100; p += 0.5)
        ck_assert_uint_eq(histogram_percentile(a, p), histogram_percentile(all, p));
    histogram_reset(a);
    ck_assert_uint_eq(histogram_count(a), 0);
    ck_assert_uint_eq(histogram_percentile(a, 99), 0);
    histogram_free(a);
    histogram_free(b);
    histogram_free(all);
}
END_TEST

START_TEST(free_null_is_a_no_op)
{
    histogram_free(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("histogram");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, buckets_tile_the_range);
    tcase_add_test(tc, small_values_are_exact);
    tcase_add_test(tc, percentiles_of_one_to_a_thousand);
    tcase_add_test(tc, one_slow_request_in_a_hundred_is_the_p99);
    tcase_add_test(tc, merge_is_recording_into_one);
    tcase_add_test(tc, free_null_is_a_no_op);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
