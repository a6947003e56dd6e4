/*
 * Unit tests of layer 7's stream entry ids (cqrs.c): parsing "ms-seq" and the stream's order,
 * which consistency tokens wait on (README "Ordering").
 */
#include "cqrs.h"

#include "check_run.h"

#include <check.h>
#include <stdlib.h>

START_TEST(stream_ids_parse)
{
    struct cqrs_stream_id id;
    ck_assert(cqrs_stream_id_parse("1700000000000-0", &id));
    ck_assert_uint_eq(id.ms, 1700000000000ULL);
    ck_assert_uint_eq(id.seq, 0);
    ck_assert(cqrs_stream_id_parse("0-0", &id));
    ck_assert(cqrs_stream_id_parse("18446744073709551615-18446744073709551615", &id));
    ck_assert_uint_eq(id.seq, 18446744073709551615ULL);
    const char *bad[] = {"", "-", "1-", "-1", "1", "1-2-3", "a-1", "1-b", " 1-2", "1-2 ",
                         "+1-2", "1--2", NULL};
    for (int i = 0; bad[i] != NULL; i++)
        ck_assert_msg(!cqrs_stream_id_parse(bad[i], &id), "accepted '%s'", bad[i]);
    ck_assert(!cqrs_stream_id_parse(NULL, &id));
}
END_TEST

START_TEST(stream_ids_order_by_time_then_sequence)
{
    struct cqrs_stream_id a = {5, 9}, b = {6, 0}, c = {6, 1}, d = {6, 1};
    ck_assert_int_lt(cqrs_stream_id_cmp(&a, &b), 0); /* the millisecond first */
    ck_assert_int_gt(cqrs_stream_id_cmp(&b, &a), 0);
    ck_assert_int_lt(cqrs_stream_id_cmp(&b, &c), 0); /* then the sequence */
    ck_assert_int_gt(cqrs_stream_id_cmp(&c, &b), 0);
    ck_assert_int_eq(cqrs_stream_id_cmp(&c, &d), 0);
    /* Not text order: "10-0" comes after "9-0". */
    struct cqrs_stream_id nine, ten;
    ck_assert(cqrs_stream_id_parse("9-0", &nine) && cqrs_stream_id_parse("10-0", &ten));
    ck_assert_int_lt(cqrs_stream_id_cmp(&nine, &ten), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cqrs");
    TCase *tc = tcase_create("pure");
    tcase_add_test(tc, stream_ids_parse);
    tcase_add_test(tc, stream_ids_order_by_time_then_sequence);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
