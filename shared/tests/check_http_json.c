/*
 * Unit tests for http_json_dump (http.c): every reply body it writes itself is byte for byte
 * what jansson's json_dumpb writes (the bodies the contract's tests check were written by
 * jansson), escapes included; what it leaves to jansson (reals, non-ASCII strings) comes out the
 * same too; a buffer too small gets the length it needs, as from json_dumpb.
 */
#include "http.h"

#include "check_run.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* http_json_dump's text equals json_dumpb's, and its length; takes body. */
static void same_as_jansson(json_t *body)
{
    char ours[4096], theirs[4096];
    size_t n = http_json_dump(body, ours, sizeof ours);
    size_t m = json_dumpb(body, theirs, sizeof theirs, FLAGS);
    ck_assert_uint_eq(n, m);
    ck_assert_uint_lt(n, sizeof ours);
    ck_assert_msg(memcmp(ours, theirs, n) == 0, "%.*s != %.*s", (int)n, ours, (int)m, theirs);
    json_decref(body);
}

START_TEST(read_replies_match_jansson)
{
    same_as_jansson(json_pack("{s:b, s:s, s:s, s:s, s:s, s:n}", "success", 1, "key", "bench:1",
                              "value", "vvvv", "created_at", "2026-11-22T09:09:18.386354Z",
                              "updated_at", "2026-11-22T09:09:18.386354Z", "message"));
    same_as_jansson(json_pack("{s:b, s:s, s:n, s:n, s:n, s:s}", "success", 0, "key", "k", "value",
                              "created_at", "updated_at", "message", "Key not found"));
    same_as_jansson(json_pack("{s:b, s:s, s:i, s:I, s:b}", "success", 1, "key", "a/b", "shard_id",
                              -3, "big", (json_int_t)9007199254740993LL, "from_cache", 0));
}
END_TEST

START_TEST(every_ascii_byte_is_escaped_as_jansson_does)
{
    char all[128];
    for (int i = 0; i < 128; i++)
        all[i] = (char)i; /* NUL, every control character, quotes, backslash, slash, DEL */
    same_as_jansson(json_pack("{s:s%}", "value", all, sizeof all));
    same_as_jansson(json_pack("{s%:s}", "k\"\\\n\x01", (size_t)5, "\t")); /* a member name */
    same_as_jansson(json_pack("{s:s}", "", ""));
}
END_TEST

START_TEST(nesting_and_what_jansson_writes_match)
{
    same_as_jansson(json_pack("{s:{s:[i, s, n, b, {}], s:[]}, s:o}", "detail", "errors", 1, "x", 1,
                              "empty", "list", json_array()));
    same_as_jansson(json_pack("[{s:s}, [], {}]", "a", "b"));
    same_as_jansson(json_pack("{s:f, s:s}", "latency_ms", 0.602, "k", "v"));  /* a real */
    same_as_jansson(json_pack("{s:s}", "value", "caf\xc3\xa9 \xe2\x82\xac")); /* non-ASCII */
    json_t *deep = json_array();
    for (int i = 0; i < 20; i++)
        deep = json_pack("[o]", deep);
    same_as_jansson(deep);
}
END_TEST

START_TEST(a_small_buffer_gets_the_length_it_needs)
{
    json_t *body = json_pack("{s:s, s:s}", "key", "bench:12", "value", "0123456789abcdef");
    char full[256], small[8];
    size_t need = json_dumpb(body, full, sizeof full, FLAGS);
    ck_assert_uint_eq(http_json_dump(body, small, sizeof small), need);
    ck_assert_uint_eq(http_json_dump(body, full, need), need);
    ck_assert_uint_eq(http_json_dump(NULL, full, sizeof full), 0);
    json_decref(body);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http_json");
    TCase *tc = tcase_create("dump");
    tcase_add_test(tc, read_replies_match_jansson);
    tcase_add_test(tc, every_ascii_byte_is_escaped_as_jansson_does);
    tcase_add_test(tc, nesting_and_what_jansson_writes_match);
    tcase_add_test(tc, a_small_buffer_gets_the_length_it_needs);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
