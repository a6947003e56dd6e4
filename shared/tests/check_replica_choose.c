/*
 * Unit tests of replica_router's pure parts: LSN text in and out, and replica_choose() (skip a
 * replica that is down, too far behind, or has not replayed what the read must see; fewest
 * reads in flight; ties in turn; the primary when none is usable).
 */
#include "replica_router.h"

#include "check_run.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

START_TEST(lsns_parse_and_format)
{
    uint64_t lsn;
    ck_assert(lsn_parse("0/4025200", &lsn));
    ck_assert_uint_eq(lsn, 0x4025200);
    ck_assert(lsn_parse("16/b374d848", &lsn));
    ck_assert_uint_eq(lsn, (UINT64_C(0x16) << 32) | 0xB374D848);
    char text[LSN_TEXT_MAX];
    lsn_format(lsn, text);
    ck_assert_str_eq(text, "16/B374D848");
    lsn_format(UINT64_MAX, text);
    ck_assert_str_eq(text, "FFFFFFFF/FFFFFFFF");
    const char *bad[] = {"", "/", "0/", "/1", "0x1/2", "1/2/3", "123456789/0", "g/1", "1 /2", NULL};
    for (int i = 0; bad[i] != NULL; i++)
        ck_assert_msg(!lsn_parse(bad[i], &lsn), "accepted '%s'", bad[i]);
    ck_assert(!lsn_parse(NULL, &lsn));
}
END_TEST

START_TEST(choose_skips_down_lagging_and_behind)
{
    struct replica_view r[3] = {
        {true, 0, 100, 0},
        {true, 0, 100, 0},
        {true, 0, 100, 0},
    };
    ck_assert_int_eq(replica_choose(r, 3, 1000, 0, 0, 0), 0);
    r[0].healthy = false;
    ck_assert_int_eq(replica_choose(r, 3, 1000, 0, 0, 0), 1);
    r[1].lag_ms = 1001;
    ck_assert_int_eq(replica_choose(r, 3, 1000, 0, 0, 0), 2);
    ck_assert_int_eq(replica_choose(r, 3, 1000, 101, 0, 0), -1); /* must see 101: none has */
    r[2].replayed = 101;
    ck_assert_int_eq(replica_choose(r, 3, 1000, 101, 0, 0), 2);
    ck_assert_int_eq(replica_choose(r, 3, 1000, 0, 1u << 2, 0), -1); /* 2 failed this read */
}
END_TEST

START_TEST(choose_fewest_in_flight_then_in_turn)
{
    struct replica_view r[3] = {
        {true, 0, 1, 2},
        {true, 0, 1, 1},
        {true, 0, 1, 1},
    };
    ck_assert_int_eq(replica_choose(r, 3, 1000, 0, 0, 0), 1);
    ck_assert_int_eq(replica_choose(r, 3, 1000, 0, 0, 2), 2); /* a tie: the next in turn */
    r[0].outstanding = 0;
    ck_assert_int_eq(replica_choose(r, 3, 1000, 0, 0, 1), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("replica_choose");
    TCase *tc = tcase_create("pure");
    tcase_add_test(tc, lsns_parse_and_format);
    tcase_add_test(tc, choose_skips_down_lagging_and_behind);
    tcase_add_test(tc, choose_fewest_in_flight_then_in_turn);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
