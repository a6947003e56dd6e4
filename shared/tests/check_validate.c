/*
 * Unit tests for validate.c: the contract's 422 errors (type, loc, several at once), UTF-8 and
 * NUL checks, byte lengths, and path keys. No sockets, no database.
 */
#include "validate.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VALUE 16

/* Validates body; returns the errors array (caller frees), empty when valid. */
static json_t *errors_for(const char *body, size_t len)
{
    json_t *errors = json_array();
    struct write_request req;
    bool ok = validate_write_request(body, len ? len : strlen(body), MAX_VALUE, &req, errors);
    ck_assert(ok == (json_array_size(errors) == 0));
    if (ok)
        write_request_cleanup(&req);
    return errors;
}

static void expect_error(const char *body, size_t len, const char *type, const char *field)
{
    json_t *errors = errors_for(body, len);
    ck_assert_msg(json_array_size(errors) >= 1, "no error for %s", body);
    json_t *e = json_array_get(errors, 0);
    ck_assert_str_eq(json_string_value(json_object_get(e, "type")), type);
    json_t *loc = json_object_get(e, "loc");
    ck_assert_str_eq(json_string_value(json_array_get(loc, 0)), "body");
    if (field != NULL)
        ck_assert_str_eq(json_string_value(json_array_get(loc, 1)), field);
    ck_assert(json_is_string(json_object_get(e, "msg")));
    json_decref(errors);
}

START_TEST(utf8)
{
    ck_assert(utf8_valid("plain", 5));
    ck_assert(utf8_valid("测试", strlen("测试")));
    ck_assert(utf8_valid("\xF0\x9F\x98\x80", 4));  /* emoji */
    ck_assert(!utf8_valid("\xC0\xAF", 2));         /* overlong '/' */
    ck_assert(!utf8_valid("\xED\xA0\x80", 3));     /* surrogate */
    ck_assert(!utf8_valid("\xF4\x90\x80\x80", 4)); /* above U+10FFFF */
    ck_assert(!utf8_valid("\xE6\xB5", 2));         /* truncated */
    ck_assert(!utf8_valid("\xFF", 1));
}
END_TEST

START_TEST(valid_bodies)
{
    json_t *errors = json_array();
    struct write_request req;
    const char *ok = "{\"key\":\"k\",\"value\":\"\",\"other\":1}";
    ck_assert(validate_write_request(ok, strlen(ok), MAX_VALUE, &req, errors));
    ck_assert_str_eq(req.key, "k");
    ck_assert_uint_eq(req.value_len, 0);
    write_request_cleanup(&req);

    char key[300];
    memset(key, 'k', 255);
    snprintf(key + 255, sizeof key - 255, "%s", "");
    char body[400];
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"0123456789abcdef\"}", key);
    ck_assert(validate_write_request(body, strlen(body), MAX_VALUE, &req, errors));
    ck_assert_uint_eq(req.key_len, 255);
    write_request_cleanup(&req);
    ck_assert_uint_eq(json_array_size(errors), 0);
    json_decref(errors);
}
END_TEST

START_TEST(every_error_type)
{
    expect_error("{\"value\":\"v\"}", 0, "missing", "key");
    expect_error("{\"key\":\"k\"}", 0, "missing", "value");
    expect_error("", 0, "missing", NULL);
    expect_error(" \n", 0, "missing", NULL);
    expect_error("{\"key\":1,\"value\":\"v\"}", 0, "string_type", "key");
    expect_error("{\"key\":null,\"value\":\"v\"}", 0, "string_type", "key");
    expect_error("{\"key\":\"k\",\"value\":{}}", 0, "string_type", "value");
    expect_error("{\"key\":\"k\",\"value\":[]}", 0, "string_type", "value");
    expect_error("{\"key\":", 0, "json_invalid", NULL);
    expect_error("{\"key\":\"k\",\"value\":\"v\"} x", 0, "json_invalid", NULL);
    expect_error("[1]", 0, "json_invalid", NULL);
    expect_error("\"str\"", 0, "json_invalid", NULL);
    expect_error("{\"key\":\"\",\"value\":\"v\"}", 0, "string_too_short", "key");
    expect_error("{\"key\":\"k\",\"value\":\"0123456789abcdefX\"}", 0, "string_too_long", "value");
    expect_error("{\"key\":\"a\xff\",\"value\":\"v\"}", 0, "string_unicode", "key");
    expect_error("{\"key\":\"k\",\"value\":\"a\\u0000b\"}", 0, "string_unicode", "value");

    char key[300], body[400];
    memset(key, 'k', 256);
    key[256] = '\0';
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"v\"}", key);
    expect_error(body, 0, "string_too_long", "key");
}
END_TEST

START_TEST(several_errors_at_once)
{
    json_t *errors = errors_for("{\"key\":\"\",\"value\":5}", 0);
    ck_assert_uint_eq(json_array_size(errors), 2);
    json_decref(errors);
}
END_TEST

START_TEST(json_invalid_has_position)
{
    json_t *errors = errors_for("{\"key\" \"k\"}", 0);
    json_t *loc = json_object_get(json_array_get(errors, 0), "loc");
    ck_assert(json_is_integer(json_array_get(loc, 1)));
    json_decref(errors);
}
END_TEST

static void expect_path_error(const char *raw, const char *type)
{
    json_t *errors = json_array();
    size_t len;
    char *key = validate_path_key(raw, strlen(raw), &len, errors);
    ck_assert_ptr_null(key);
    json_t *e = json_array_get(errors, 0);
    ck_assert_str_eq(json_string_value(json_object_get(e, "type")), type);
    json_t *loc = json_object_get(e, "loc");
    ck_assert_str_eq(json_string_value(json_array_get(loc, 0)), "path");
    ck_assert_str_eq(json_string_value(json_array_get(loc, 1)), "key");
    json_decref(errors);
}

START_TEST(path_keys)
{
    json_t *errors = json_array();
    size_t len;
    char *key = validate_path_key("a%2Fb%20c", 9, &len, errors);
    ck_assert_str_eq(key, "a/b c");
    ck_assert_uint_eq(len, 5);
    free(key);
    json_decref(errors);
    expect_path_error("", "string_too_short");
    expect_path_error("%zz", "string_unicode");
    expect_path_error("%FF", "string_unicode");
    expect_path_error("a%00", "string_unicode");
    char raw[300];
    memset(raw, 'x', 256);
    raw[256] = '\0';
    expect_path_error(raw, "string_too_long");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("validate");
    TCase *tc = tcase_create("validate");
    tcase_add_test(tc, utf8);
    tcase_add_test(tc, valid_bodies);
    tcase_add_test(tc, every_error_type);
    tcase_add_test(tc, several_errors_at_once);
    tcase_add_test(tc, json_invalid_has_position);
    tcase_add_test(tc, path_keys);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
