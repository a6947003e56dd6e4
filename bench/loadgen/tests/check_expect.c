/*
 * Unit tests for expect.c: the right answers pass; a wrong status, a read answering
 * "success":false, another key's value, a value of the wrong length, a missing key that has a
 * value, a write that did not succeed and a body that is not JSON are all caught, each with a
 * reason.
 */
#include "expect.h"

#include "check_run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char why[160];

static enum expect_result check(struct request req, size_t value_bytes, int status,
                                const char *body)
{
    return expect_reply(&req, value_bytes, status, body, strlen(body), why, sizeof(why));
}

/* A contract-shaped read reply for bench:K holding `value`. */
static const char *read_reply(uint64_t key, const char *value)
{
    static char body[512];
    snprintf(body, sizeof(body),
             "{\"success\":true,\"key\":\"bench:%llu\",\"value\":\"%s\",\"created_at\":"
             "\"2026-11-22T09:09:18.386354Z\",\"updated_at\":\"2026-11-22T09:09:18.386354Z\","
             "\"message\":null,\"from_cache\":true}",
             (unsigned long long)key, value);
    return body;
}

static const struct request HIT_7 = {REQUEST_READ_HIT, 7};

START_TEST(a_right_read_passes)
{
    char value[101];
    value_for_key(7, 100, value);
    ck_assert_int_eq(check(HIT_7, 100, 200, read_reply(7, value)), EXPECT_OK);
}
END_TEST

START_TEST(a_wrong_read_fails)
{
    char value[101], other[101];
    value_for_key(7, 100, value);
    value_for_key(8, 100, other);
    ck_assert_int_eq(check(HIT_7, 100, 200, read_reply(7, other)), EXPECT_BAD_BODY);
    ck_assert_ptr_nonnull(strstr(why, "value"));
    ck_assert_int_eq(check(HIT_7, 100, 200, read_reply(8, value)), EXPECT_BAD_BODY);
    ck_assert_ptr_nonnull(strstr(why, "key"));
    /* the harness's self-test: expecting 101-byte values of 100-byte ones */
    ck_assert_int_eq(check(HIT_7, 101, 200, read_reply(7, value)), EXPECT_BAD_BODY);
    ck_assert_int_eq(check(HIT_7, 100, 200,
                           "{\"success\":false,\"key\":\"bench:7\",\"value\":null,"
                           "\"message\":\"Key not found\"}"),
                     EXPECT_BAD_BODY);
    ck_assert_ptr_nonnull(strstr(why, "success"));
    ck_assert_int_eq(check(HIT_7, 100, 200, "not json"), EXPECT_BAD_BODY);
    ck_assert_int_eq(check(HIT_7, 100, 200, "[1]"), EXPECT_BAD_BODY);
    ck_assert_int_eq(check(HIT_7, 100, 200, ""), EXPECT_BAD_BODY);
    /* "success":true inside a value is not success */
    ck_assert_int_eq(check(HIT_7, 100, 200, "{\"value\":\"\\\"success\\\":true\"}"),
                     EXPECT_BAD_BODY);
}
END_TEST

START_TEST(a_status_other_than_200_fails)
{
    ck_assert_int_eq(check(HIT_7, 100, 503, "{\"detail\":\"Database unavailable\"}"),
                     EXPECT_BAD_STATUS);
    ck_assert_str_eq(why, "status 503");
    struct request ping = {REQUEST_PING, 0};
    ck_assert_int_eq(check(ping, 100, 200, "pong"), EXPECT_OK);
    ck_assert_int_eq(check(ping, 100, 404, "{}"), EXPECT_BAD_STATUS);
}
END_TEST

START_TEST(misses_must_say_not_found)
{
    struct request miss = {REQUEST_READ_MISS, 42};
    ck_assert_int_eq(check(miss, 100, 200,
                           "{\"success\":false,\"key\":\"miss:42\",\"value\":null,\"created_at\":"
                           "null,\"updated_at\":null,\"message\":\"Key not found\"}"),
                     EXPECT_OK);
    ck_assert_int_eq(
        check(miss, 100, 200, "{\"success\":false,\"key\":\"miss:42\",\"value\":\"x\"}"),
        EXPECT_BAD_BODY);
    ck_assert_int_eq(check(miss, 100, 200, "{\"success\":false,\"key\":\"miss:4\",\"value\":null}"),
                     EXPECT_BAD_BODY);
}
END_TEST

START_TEST(layer_8s_replies_are_checked)
{
    struct request write = {REQUEST_TXN_WRITE, 3}, list = {REQUEST_TXN_READ, 3},
                   summary = {REQUEST_SUMMARY, 3};
    ck_assert_int_eq(check(write, 100, 200,
                           "{\"success\":true,\"transaction_id\":9,\"stored_in\":\"PostgreSQL\"}"),
                     EXPECT_OK);
    ck_assert_int_eq(check(write, 100, 200, "{\"success\":true,\"stored_in\":\"PostgreSQL\"}"),
                     EXPECT_BAD_BODY);
    ck_assert_int_eq(check(list, 100, 200,
                           "{\"success\":true,\"key\":\"bench-user:3\",\"value\":[]}"),
                     EXPECT_OK);
    ck_assert_int_eq(check(list, 100, 200,
                           "{\"success\":false,\"key\":\"bench-user:3\",\"value\":null}"),
                     EXPECT_OK);
    ck_assert_int_eq(check(list, 100, 200,
                           "{\"success\":true,\"key\":\"bench-user:4\",\"value\":[]}"),
                     EXPECT_BAD_BODY);
    ck_assert_int_eq(check(list, 100, 200,
                           "{\"success\":true,\"key\":\"bench-user:3\",\"value\":null}"),
                     EXPECT_BAD_BODY);
    ck_assert_int_eq(check(summary, 100, 200,
                           "{\"success\":true,\"user_id\":\"bench-user:3\",\"transactions\":{}}"),
                     EXPECT_OK);
    ck_assert_int_eq(check(summary, 100, 503, "{\"detail\":\"Database unavailable\"}"),
                     EXPECT_BAD_STATUS);
}
END_TEST

START_TEST(writes_must_succeed)
{
    struct request write = {REQUEST_WRITE, 3};
    ck_assert_int_eq(check(write, 100, 200,
                           "{\"success\":true,\"key\":\"bench:3\",\"message\":\"Data written "
                           "successfully to shard 1\",\"shard_id\":1}"),
                     EXPECT_OK);
    ck_assert_int_eq(check(write, 100, 200, "{\"success\":false,\"key\":\"bench:3\"}"),
                     EXPECT_BAD_BODY);
    ck_assert_int_eq(check(write, 100, 422, "{\"detail\":[]}"), EXPECT_BAD_STATUS);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("expect");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, a_right_read_passes);
    tcase_add_test(tc, a_wrong_read_fails);
    tcase_add_test(tc, a_status_other_than_200_fails);
    tcase_add_test(tc, misses_must_say_not_found);
    tcase_add_test(tc, writes_must_succeed);
    tcase_add_test(tc, layer_8s_replies_are_checked);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
