/*
 * Unit tests of layer 9's pure parts: the hybrid logical clock (hlc.h) and the region table,
 * latency matrix and failover choice (regions.h). No sockets.
 */
#include "check_run.h"
#include "hlc.h"
#include "regions.h"

#include <stdint.h>

START_TEST(stamps_follow_physical_time)
{
    struct hlc clock;
    hlc_init(&clock, 0);
    uint64_t a = hlc_now(&clock, 1000);
    ck_assert_uint_eq(a, (uint64_t)1000 << HLC_LOGICAL_BITS);
    ck_assert_int_eq(hlc_physical_ms(a), 1000);
    uint64_t b = hlc_now(&clock, 1001);
    ck_assert_uint_eq(b, (uint64_t)1001 << HLC_LOGICAL_BITS);
}
END_TEST

START_TEST(stamps_in_one_millisecond_still_grow)
{
    struct hlc clock;
    hlc_init(&clock, 0);
    uint64_t a = hlc_now(&clock, 1000);
    uint64_t b = hlc_now(&clock, 1000);
    uint64_t c = hlc_now(&clock, 999); /* the wall clock stepped back */
    ck_assert_uint_eq(b, a + 1);
    ck_assert_uint_eq(c, a + 2);
    ck_assert_int_eq(hlc_physical_ms(c), 1000);
}
END_TEST

START_TEST(a_clock_behind_stamps_above_what_it_observed)
{
    struct hlc ahead, behind;
    hlc_init(&ahead, 0);
    hlc_init(&behind, -5000); /* REGION_CLOCK_OFFSET_MS=...=-5000 */
    uint64_t remote = hlc_now(&ahead, 100000);
    ck_assert_uint_lt(hlc_now(&behind, 100000), remote); /* alone it would lose */
    hlc_observe(&behind, remote);
    uint64_t mine = hlc_now(&behind, 100001);
    ck_assert_uint_gt(mine, remote);
    hlc_observe(&behind, 5); /* an older stamp changes nothing */
    ck_assert_uint_gt(hlc_now(&behind, 100001), mine);
}
END_TEST

START_TEST(region_names_and_links)
{
    ck_assert_int_eq(region_find("eu-west", 7), 1);
    ck_assert_int_eq(region_find("EU-WEST", 7), -1);
    ck_assert_int_eq(region_find("eu-wes", 6), -1);
    ck_assert_str_eq(region_upper(2), "ASIA-PAC");
    ck_assert_str_eq(region_suffix(0), "us_east");
    bool seen[LINK_COUNT] = {false};
    for (int from = 0; from < REGION_COUNT; from++)
        for (int to = 0; to < REGION_COUNT; to++) {
            if (from == to)
                continue;
            int link = region_link(from, to);
            ck_assert(link >= 0 && link < LINK_COUNT && !seen[link]);
            seen[link] = true;
        }
    ck_assert_int_eq(region_link(0, 1), 0);
    ck_assert_int_eq(region_link(2, 1), 5);
}
END_TEST

START_TEST(the_matrix_has_defaults_and_overrides)
{
    struct region_matrix m;
    char err[256];
    ck_assert(region_matrix_parse(NULL, &m, err, sizeof err));
    ck_assert(m.ms[0][1] == 40 && m.ms[1][0] == 40 && m.ms[0][2] == 90 && m.ms[2][1] == 80);
    ck_assert(m.ms[1][1] == 0);
    ck_assert(region_matrix_parse("asia-pac:eu-west=5,us-east:eu-west=0.5", &m, err, sizeof err));
    ck_assert(m.ms[1][2] == 5 && m.ms[2][1] == 5 && m.ms[0][1] == 0.5 && m.ms[0][2] == 90);
    ck_assert(!region_matrix_parse("us-east:mars=5", &m, err, sizeof err));
    ck_assert(strstr(err, "us-east, eu-west, asia-pac") != NULL);
    ck_assert(!region_matrix_parse("us-east:us-east=5", &m, err, sizeof err));
    ck_assert(!region_matrix_parse("us-east:eu-west=", &m, err, sizeof err));
    ck_assert(!region_matrix_parse("us-east:eu-west=-1", &m, err, sizeof err));
    ck_assert(!region_matrix_parse("us-east=5", &m, err, sizeof err));
}
END_TEST

START_TEST(clock_offsets_parse)
{
    long long off[REGION_COUNT];
    char err[256];
    ck_assert(region_offsets_parse("", off, err, sizeof err));
    ck_assert(off[0] == 0 && off[1] == 0 && off[2] == 0);
    ck_assert(region_offsets_parse("eu-west=-5000,asia-pac=250", off, err, sizeof err));
    ck_assert(off[0] == 0 && off[1] == -5000 && off[2] == 250);
    ck_assert(!region_offsets_parse("eu-west", off, err, sizeof err));
    ck_assert(!region_offsets_parse("moon=5", off, err, sizeof err));
}
END_TEST

START_TEST(a_down_region_is_served_by_the_nearest_healthy_one)
{
    struct region_matrix m;
    char err[256];
    ck_assert(region_matrix_parse(NULL, &m, err, sizeof err));
    bool all[REGION_COUNT] = {true, true, true};
    for (int i = 0; i < REGION_COUNT; i++)
        ck_assert_int_eq(region_serving(&m, i, all), i);
    bool no_eu[REGION_COUNT] = {true, false, true};
    ck_assert_int_eq(region_serving(&m, 1, no_eu), 0); /* 40 ms before 80 ms */
    bool no_us[REGION_COUNT] = {false, true, true};
    ck_assert_int_eq(region_serving(&m, 0, no_us), 1); /* 40 ms before 90 ms */
    bool only_asia[REGION_COUNT] = {false, false, true};
    ck_assert_int_eq(region_serving(&m, 0, only_asia), 2);
    bool none[REGION_COUNT] = {false, false, false};
    ck_assert_int_eq(region_serving(&m, 1, none), -1);
    ck_assert(region_matrix_parse("us-east:eu-west=80", &m, err, sizeof err));
    ck_assert_int_eq(region_serving(&m, 1, no_eu), 2); /* a tie: asia-pac < us-east by name */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("l9 units");
    suite_add_tcase(s, check_tcase("hlc", NULL, NULL, 10,
                                   (const TTest *const[]){stamps_follow_physical_time,
                                                          stamps_in_one_millisecond_still_grow,
                                                          a_clock_behind_stamps_above_what_it_observed,
                                                          NULL}));
    suite_add_tcase(s, check_tcase("regions", NULL, NULL, 10,
                                   (const TTest *const[]){region_names_and_links,
                                                          the_matrix_has_defaults_and_overrides,
                                                          clock_offsets_parse,
                                                          a_down_region_is_served_by_the_nearest_healthy_one,
                                                          NULL}));
    return check_run(s, CK_FORK_GETENV) == 0 ? 0 : 1;
}
