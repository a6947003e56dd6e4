/*
 * Unit tests for record.c: a record survives the cache JSON both ways (binary-safe value,
 * extras kept); a malformed cache entry is a miss (NULL), never a reply; the read reply has
 * every member of the contract, found and not found, and extras never overwrite them.
 */
#include "record.h"

#include "check_run.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define T1 "2026-11-22T09:09:18.386354Z"
#define T2 "2026-11-22T09:10:00.000001Z"

static struct record *sample(void)
{
    return record_create("k/1", 3, "v\"al", 4, T1, T2);
}

START_TEST(cache_round_trip)
{
    struct record *rec = sample();
    record_set_extra(rec, "shard_id", json_integer(2));
    size_t len;
    char *data = record_to_cache(rec, &len);
    ck_assert_uint_eq(len, strlen(data));
    ck_assert_ptr_null(strstr(data, "k/1")); /* the key is the cache's, not the entry's */
    struct record *back = record_from_cache("k/1", 3, data, len);
    ck_assert_ptr_nonnull(back);
    size_t n;
    ck_assert_str_eq(record_key(back, &n), "k/1");
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(record_value(back, &n), "v\"al");
    ck_assert_uint_eq(n, 4);
    ck_assert_str_eq(record_created_at(back), T1);
    ck_assert_str_eq(record_updated_at(back), T2);
    ck_assert_int_eq(json_integer_value(record_extra(back, "shard_id")), 2);
    ck_assert_ptr_null(record_extra(back, "other"));
    free(data);
    record_free(back);
    record_free(rec);
}
END_TEST

START_TEST(value_is_binary_safe)
{
    struct record *rec = record_create("k", 1, "a\0b", 3, T1, T2);
    size_t len, n;
    char *data = record_to_cache(rec, &len);
    struct record *back = record_from_cache("k", 1, data, len);
    ck_assert_ptr_nonnull(back);
    const char *v = record_value(back, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(v, "a\0b", 3);
    free(data);
    record_free(back);
    record_free(rec);
}
END_TEST

START_TEST(malformed_cache_entries_are_misses)
{
    static const char *const bad[] = {
        "",                                                      /* empty */
        "not json",                                              /* not JSON */
        "[1,2]",                                                 /* not an object */
        "\"text\"",                                              /* a string */
        "{\"value\":\"v\",\"created_at\":\"" T1 "\"}",           /* updated_at missing */
        "{\"created_at\":\"" T1 "\",\"updated_at\":\"" T2 "\"}", /* value missing */
        "{\"value\":1,\"created_at\":\"" T1 "\",\"updated_at\":\"" T2 "\"}", /* not a string */
        "{\"value\":\"v\",\"created_at\":null,\"updated_at\":\"" T2 "\"}",   /* null */
        "{\"value\":\"v\",\"created_at\":\"" T1 "\",\"updated_at\":\"" T2,   /* torn */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(record_from_cache("k", 1, bad[i], strlen(bad[i])) == NULL, "entry %zu", i);
    const char *good = "{\"value\":\"\",\"created_at\":\"" T1 "\",\"updated_at\":\"" T2 "\"}";
    struct record *rec = record_from_cache("k", 1, good, strlen(good)); /* an empty value is one */
    ck_assert_ptr_nonnull(rec);
    record_free(rec);
}
END_TEST

START_TEST(read_reply_found_and_not_found)
{
    struct record *rec = sample();
    json_t *reply = record_read_reply(rec, "ignored", 7);
    ck_assert(json_is_true(json_object_get(reply, "success")));
    ck_assert_str_eq(json_string_value(json_object_get(reply, "key")), "k/1");
    ck_assert_str_eq(json_string_value(json_object_get(reply, "value")), "v\"al");
    ck_assert_str_eq(json_string_value(json_object_get(reply, "created_at")), T1);
    ck_assert_str_eq(json_string_value(json_object_get(reply, "updated_at")), T2);
    ck_assert(json_is_null(json_object_get(reply, "message")));
    ck_assert_uint_eq(json_object_size(reply), 6);
    json_decref(reply);
    record_free(rec);

    reply = record_read_reply(NULL, "gone", 4);
    ck_assert(json_is_false(json_object_get(reply, "success")));
    ck_assert_str_eq(json_string_value(json_object_get(reply, "key")), "gone");
    ck_assert(json_is_null(json_object_get(reply, "value")));
    ck_assert(json_is_null(json_object_get(reply, "created_at")));
    ck_assert(json_is_null(json_object_get(reply, "updated_at")));
    ck_assert_str_eq(json_string_value(json_object_get(reply, "message")), "Key not found");
    ck_assert_uint_eq(json_object_size(reply), 6);
    json_decref(reply);
}
END_TEST

START_TEST(extras_never_replace_contract_members)
{
    /* A cache entry carrying "success" or "message" (a foreign writer) cannot change the reply. */
    const char *entry = "{\"value\":\"v\",\"created_at\":\"" T1 "\",\"updated_at\":\"" T2
                        "\",\"success\":false,\"message\":\"x\",\"read_count\":3}";
    struct record *rec = record_from_cache("k", 1, entry, strlen(entry));
    ck_assert_ptr_nonnull(rec);
    ck_assert_ptr_null(record_extra(rec, "success"));
    record_set_extra(rec, "key", json_string("other")); /* ignored */
    json_t *reply = record_read_reply(rec, "k", 1);
    ck_assert(json_is_true(json_object_get(reply, "success")));
    ck_assert(json_is_null(json_object_get(reply, "message")));
    ck_assert_str_eq(json_string_value(json_object_get(reply, "key")), "k");
    ck_assert_int_eq(json_integer_value(json_object_get(reply, "read_count")), 3);
    json_decref(reply);
    record_free(rec);
}
END_TEST

START_TEST(write_reply)
{
    json_t *reply = record_write_reply("a b", 3);
    ck_assert(json_is_true(json_object_get(reply, "success")));
    ck_assert_str_eq(json_string_value(json_object_get(reply, "key")), "a b");
    ck_assert_str_eq(json_string_value(json_object_get(reply, "message")),
                     "Data written successfully");
    ck_assert_uint_eq(json_object_size(reply), 3);
    json_decref(reply);
    record_free(NULL); /* a no-op */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("record");
    TCase *tc = tcase_create("record");
    tcase_add_test(tc, cache_round_trip);
    tcase_add_test(tc, value_is_binary_safe);
    tcase_add_test(tc, malformed_cache_entries_are_misses);
    tcase_add_test(tc, read_reply_found_and_not_found);
    tcase_add_test(tc, extras_never_replace_contract_members);
    tcase_add_test(tc, write_reply);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
