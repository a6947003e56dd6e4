/*
 * Unit tests for validate.c: the contract's FastAPI-shaped 422 errors.
 *
 * A client learns what was wrong with its request only from these entries, so each test pins
 * one promise of the contract: the `type` (missing, string_type, json_invalid,
 * string_too_short, string_too_long, string_unicode), the `loc` array (["body", field],
 * ["body", position] for JSON syntax, ["path", "key"]), one entry per problem when there are
 * several, lengths counted in bytes, and text that PostgreSQL can store (well-formed UTF-8, no
 * NUL). utf8_valid is tested at every boundary of the encoding. No sockets, no database.
 */
#include "validate.h"

#include "check_run.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VALUE 16 /* a small max_value_bytes, so over-long values stay readable */

/* ---- helpers ---- */

/* Validates body[0..len) (strlen when len is 0); returns the errors array, empty when valid. */
static json_t *errors_for(const char *body, size_t len)
{
    json_t *errors = json_array();
    struct write_request req;
    bool ok = validate_write_request(body, len ? len : strlen(body), MAX_VALUE, &req, errors);
    ck_assert_msg(ok == (json_array_size(errors) == 0), "result and errors disagree for %s", body);
    if (ok)
        write_request_cleanup(&req);
    else
        ck_assert_ptr_null(req.document); /* nothing left for the caller to free */
    return errors;
}

/* Asserts that error i has this type and loc (field NULL: loc is just [place]). */
static void assert_error(json_t *errors, size_t i, const char *type, const char *place,
                         const char *field)
{
    json_t *e = json_array_get(errors, i);
    ck_assert_msg(e != NULL, "no error #%zu", i);
    ck_assert_str_eq(json_string_value(json_object_get(e, "type")), type);
    ck_assert(json_is_string(json_object_get(e, "msg")));
    json_t *loc = json_object_get(e, "loc");
    ck_assert(json_is_array(loc));
    ck_assert_str_eq(json_string_value(json_array_get(loc, 0)), place);
    if (field == NULL) {
        ck_assert_uint_eq(json_array_size(loc), 1);
    } else {
        ck_assert_uint_eq(json_array_size(loc), 2);
        ck_assert_str_eq(json_string_value(json_array_get(loc, 1)), field);
    }
}

/* Expects exactly one error, of this type, at ["body", field]. */
static void expect_one(const char *body, size_t len, const char *type, const char *field)
{
    json_t *errors = errors_for(body, len);
    ck_assert_msg(json_array_size(errors) == 1, "%zu errors for %s", json_array_size(errors), body);
    assert_error(errors, 0, type, "body", field);
    json_decref(errors);
}

/* Expects one json_invalid error: loc ["body", position], a message and ctx.error. */
static void expect_json_invalid(const char *body, size_t len)
{
    json_t *errors = errors_for(body, len);
    ck_assert_msg(json_array_size(errors) == 1, "%zu errors for %s", json_array_size(errors), body);
    json_t *e = json_array_get(errors, 0);
    ck_assert_str_eq(json_string_value(json_object_get(e, "type")), "json_invalid");
    json_t *loc = json_object_get(e, "loc");
    ck_assert_uint_eq(json_array_size(loc), 2);
    ck_assert_str_eq(json_string_value(json_array_get(loc, 0)), "body");
    ck_assert(json_is_integer(json_array_get(loc, 1)));
    ck_assert(json_integer_value(json_array_get(loc, 1)) >= 0);
    ck_assert_str_eq(json_string_value(json_object_get(e, "msg")), "JSON decode error");
    ck_assert(json_is_string(json_object_get(json_object_get(e, "ctx"), "error")));
    json_decref(errors);
}

/* A body {"key": key, "value": value} built by jansson (so any string is escaped right). */
static char *body_of(const char *key, const char *value)
{
    json_t *doc = json_pack("{s:s, s:s}", "key", key, "value", value);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ---- utf8_valid ---- */

#define VALID(bytes)   ck_assert_msg(utf8_valid(bytes, sizeof bytes - 1), #bytes " is valid")
#define INVALID(bytes) ck_assert_msg(!utf8_valid(bytes, sizeof bytes - 1), #bytes " is invalid")

START_TEST(utf8_accepts_every_boundary)
{
    ck_assert(utf8_valid("", 0));
    VALID("plain ascii");
    VALID("\x7F");             /* U+007F, last one-byte */
    VALID("\xC2\x80");         /* U+0080, first two-byte */
    VALID("\xDF\xBF");         /* U+07FF */
    VALID("\xE0\xA0\x80");     /* U+0800, first three-byte */
    VALID("\xED\x9F\xBF");     /* U+D7FF, just below the surrogates */
    VALID("\xEE\x80\x80");     /* U+E000, just above them */
    VALID("\xEF\xBF\xBF");     /* U+FFFF */
    VALID("\xF0\x90\x80\x80"); /* U+10000, first four-byte */
    VALID("\xF4\x8F\xBF\xBF"); /* U+10FFFF, the last code point */
    VALID("测试 ключ 😀");
    ck_assert(utf8_valid("a\0b", 3)); /* NUL is well-formed; the NUL check is separate */
}
END_TEST

START_TEST(utf8_refuses_overlongs)
{
    INVALID("\xC0\x80");         /* NUL in two bytes */
    INVALID("\xC0\xAF");         /* '/' in two bytes */
    INVALID("\xC1\xBF");         /* U+007F in two bytes */
    INVALID("\xE0\x80\x80");     /* NUL in three bytes */
    INVALID("\xE0\x9F\xBF");     /* U+07FF in three bytes */
    INVALID("\xF0\x80\x80\x80"); /* NUL in four bytes */
    INVALID("\xF0\x8F\xBF\xBF"); /* U+FFFF in four bytes */
}
END_TEST

START_TEST(utf8_refuses_surrogates)
{
    INVALID("\xED\xA0\x80");             /* U+D800 */
    INVALID("\xED\xAF\xBF");             /* U+DBFF */
    INVALID("\xED\xB0\x80");             /* U+DC00 */
    INVALID("\xED\xBF\xBF");             /* U+DFFF */
    INVALID("\xED\xA0\xBD\xED\xB8\x80"); /* a CESU-8 pair for U+1F600 */
}
END_TEST

START_TEST(utf8_refuses_above_10ffff_and_bad_bytes)
{
    INVALID("\xF4\x90\x80\x80"); /* U+110000 */
    INVALID("\xF5\x80\x80\x80");
    INVALID("\xF7\xBF\xBF\xBF");
    INVALID("\xF8\x88\x80\x80\x80"); /* old five-byte form */
    INVALID("\xFC\x84\x80\x80\x80\x80");
    INVALID("\xFE");
    INVALID("\xFF");
    INVALID("\x80"); /* a continuation byte on its own */
    INVALID("\xBF");
    INVALID("a\x80z");
}
END_TEST

START_TEST(utf8_refuses_truncated_sequences)
{
    INVALID("\xC2");
    INVALID("\xE0\xA0");
    INVALID("\xF0\x90\x80");
    INVALID("abc\xE6\xB5"); /* at the end of the text */
    INVALID("\xE6\xB5x");   /* followed by ASCII instead of a continuation */
    INVALID("\xF0\x9F\x98 ");
    /* Only len bytes count: a sequence cut by len is truncated. */
    ck_assert(!utf8_valid("\xC3\xA9", 1));
    ck_assert(utf8_valid("\xC3\xA9\xFF", 2));
}
END_TEST

/* ---- accepted bodies ---- */

START_TEST(valid_body_is_accepted)
{
    const char *body = "{\"key\":\"k1\",\"value\":\"hello\",\"ignored\":[1,2]}";
    json_t *errors = json_array();
    struct write_request req;
    ck_assert(validate_write_request(body, strlen(body), MAX_VALUE, &req, errors));
    ck_assert_uint_eq(json_array_size(errors), 0);
    ck_assert_ptr_nonnull(req.document);
    ck_assert_uint_eq(req.key_len, 2);
    ck_assert_str_eq(req.key, "k1");
    ck_assert_uint_eq(req.value_len, 5);
    ck_assert_str_eq(req.value, "hello");
    write_request_cleanup(&req);
    ck_assert_ptr_null(req.document);
    json_decref(errors);
}
END_TEST

START_TEST(empty_value_and_255_byte_key_are_accepted)
{
    json_t *errors = json_array();
    struct write_request req;
    const char *empty_value = "{\"key\":\"k\",\"value\":\"\"}";
    ck_assert(validate_write_request(empty_value, strlen(empty_value), MAX_VALUE, &req, errors));
    ck_assert_uint_eq(req.value_len, 0);
    ck_assert_str_eq(req.value, "");
    write_request_cleanup(&req);

    char *key = repeat('k', KEY_MAX_BYTES);
    char *body = body_of(key, "0123456789abcdef"); /* value of exactly MAX_VALUE bytes */
    ck_assert(validate_write_request(body, strlen(body), MAX_VALUE, &req, errors));
    ck_assert_uint_eq(req.key_len, 255);
    ck_assert_uint_eq(req.value_len, MAX_VALUE);
    write_request_cleanup(&req);
    free(body);
    free(key);

    /* 85 three-byte characters: 255 bytes, the limit exactly. */
    char wide[256] = "";
    for (int i = 0; i < 85; i++)
        strcat(wide, "测");
    body = body_of(wide, "v");
    ck_assert(validate_write_request(body, strlen(body), MAX_VALUE, &req, errors));
    ck_assert_uint_eq(req.key_len, 255);
    write_request_cleanup(&req);
    free(body);

    ck_assert_uint_eq(json_array_size(errors), 0);
    json_decref(errors);
}
END_TEST

START_TEST(escaped_unicode_is_decoded)
{
    json_t *errors = json_array();
    struct write_request req;
    const char *body = "{\"key\":\"\\u6d4b\\ud83d\\ude00\",\"value\":\"a\\/b\\n\"}";
    ck_assert(validate_write_request(body, strlen(body), MAX_VALUE, &req, errors));
    ck_assert_str_eq(req.key, "测😀");
    ck_assert_uint_eq(req.key_len, 7);
    ck_assert_str_eq(req.value, "a/b\n");
    write_request_cleanup(&req);
    json_decref(errors);
}
END_TEST

/* ---- each 422 type ---- */

START_TEST(missing_fields_and_bodies)
{
    expect_one("{\"value\":\"v\"}", 0, "missing", "key");
    expect_one("{\"key\":\"k\"}", 0, "missing", "value");
    expect_one("", 0, "missing", NULL);
    expect_one(" \t\r\n", 0, "missing", NULL);

    json_t *errors = errors_for("{\"key\":\"k\"}", 0);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 0), "msg")),
                     "Field required");
    json_decref(errors);

    /* An empty body given with its length (not found by strlen). */
    errors = json_array();
    struct write_request req;
    ck_assert(!validate_write_request("ignored", 0, MAX_VALUE, &req, errors));
    assert_error(errors, 0, "missing", "body", NULL);
    json_decref(errors);
}
END_TEST

START_TEST(non_strings_are_string_type)
{
    const char *keys[] = {"1", "1.5", "null", "true", "{}", "{\"a\":1}", "[]", "[\"k\"]"};
    char body[64];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        snprintf(body, sizeof body, "{\"key\":%s,\"value\":\"v\"}", keys[i]);
        expect_one(body, 0, "string_type", "key");
        snprintf(body, sizeof body, "{\"key\":\"k\",\"value\":%s}", keys[i]);
        expect_one(body, 0, "string_type", "value");
    }
    json_t *errors = errors_for("{\"key\":7,\"value\":\"v\"}", 0);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 0), "msg")),
                     "Input should be a valid string");
    json_decref(errors);
}
END_TEST

START_TEST(huge_numbers_are_string_type)
{
    /* Valid JSON (RFC 8259 sets no limit on integers): a number where a string belongs. */
    expect_one("{\"key\":123456789012345678901234567890,\"value\":\"v\"}", 0, "string_type", "key");
}
END_TEST

START_TEST(malformed_json_is_json_invalid)
{
    expect_json_invalid("{\"key\":", 0);
    expect_json_invalid("{\"key\" \"k\"}", 0);
    expect_json_invalid("{'key':'k','value':'v'}", 0);
    expect_json_invalid("{\"key\":\"k\",\"value\":\"v\",}", 0);
    expect_json_invalid("{\"key\":\"k\",\"value\":\"v\"} trailing", 0);
    expect_json_invalid("{\"key\":\"k\",\"value\":\"v\"}{}", 0);
    expect_json_invalid("{\"key\":\"\\x41\",\"value\":\"v\"}", 0); /* not a JSON escape */
    expect_json_invalid("{\"key\":\"k\",\"value\":\"v\"}\xff", 0); /* bad byte outside strings */
}
END_TEST

START_TEST(non_objects_are_json_invalid)
{
    expect_json_invalid("[1]", 0);
    expect_json_invalid("[{\"key\":\"k\",\"value\":\"v\"}]", 0);
    expect_json_invalid("\"str\"", 0);
    expect_json_invalid("42", 0);
    expect_json_invalid("null", 0);
    expect_json_invalid("true", 0);
}
END_TEST

START_TEST(json_invalid_position_points_at_the_problem)
{
    json_t *errors = errors_for("{\"key\" \"k\"}", 0);
    json_t *loc = json_object_get(json_array_get(errors, 0), "loc");
    json_int_t position = json_integer_value(json_array_get(loc, 1));
    ck_assert_int_ge(position, 6); /* after `{"key"`, where the colon is missing */
    ck_assert_int_le(position, 10);
    json_decref(errors);
}
END_TEST

START_TEST(empty_key_is_string_too_short)
{
    expect_one("{\"key\":\"\",\"value\":\"v\"}", 0, "string_too_short", "key");
    json_t *errors = errors_for("{\"key\":\"\",\"value\":\"v\"}", 0);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 0), "msg")),
                     "String should have at least 1 character");
    json_decref(errors);
}
END_TEST

START_TEST(long_key_and_value_are_string_too_long)
{
    char *key = repeat('k', KEY_MAX_BYTES + 1);
    char *body = body_of(key, "v");
    expect_one(body, 0, "string_too_long", "key");
    free(body);
    free(key);

    expect_one("{\"key\":\"k\",\"value\":\"0123456789abcdefX\"}", 0, "string_too_long", "value");

    /* Bytes, not characters: 86 three-byte characters are 258 bytes. */
    char wide[300] = "";
    for (int i = 0; i < 86; i++)
        strcat(wide, "测");
    body = body_of(wide, "v");
    expect_one(body, 0, "string_too_long", "key");
    free(body);
    body = body_of("k", "测测测测测测"); /* 6 characters, 18 bytes > MAX_VALUE */
    expect_one(body, 0, "string_too_long", "value");
    free(body);
}
END_TEST

START_TEST(value_limit_is_the_callers)
{
    const char *body = "{\"key\":\"k\",\"value\":\"abcd\"}";
    json_t *errors = json_array();
    struct write_request req;
    ck_assert(!validate_write_request(body, strlen(body), 3, &req, errors));
    assert_error(errors, 0, "string_too_long", "body", "value");
    json_decref(errors);
    errors = json_array();
    ck_assert(validate_write_request(body, strlen(body), 4, &req, errors));
    ck_assert_uint_eq(req.value_len, 4);
    write_request_cleanup(&req);
    json_decref(errors);
}
END_TEST

START_TEST(bad_text_is_string_unicode)
{
    expect_one("{\"key\":\"a\xff\",\"value\":\"v\"}", 0, "string_unicode", "key");
    expect_one("{\"key\":\"bad\xff\xfe\",\"value\":\"v\"}", 0, "string_unicode", "key");
    expect_one("{\"key\":\"\xC0\xAF\",\"value\":\"v\"}", 0, "string_unicode", "key");
    expect_one("{\"key\":\"\xED\xA0\x80\",\"value\":\"v\"}", 0, "string_unicode", "key");
    expect_one("{\"key\":\"\xE6\xB5\",\"value\":\"v\"}", 0, "string_unicode", "key");
    expect_one("{\"key\":\"k\",\"value\":\"x\xF4\x90\x80\x80\"}", 0, "string_unicode", "value");
    expect_one("{\"key\":\"k\",\"value\":\"a\\u0000b\"}", 0, "string_unicode", "value");
    expect_one("{\"key\":\"\\u0000\",\"value\":\"v\"}", 0, "string_unicode", "key");
}
END_TEST

START_TEST(invalid_byte_after_backslash_is_refused)
{
    /*
     * `\` followed by a byte that is not UTF-8 is an invalid escape: the body must be refused
     * (json_invalid or string_unicode), never stored as some other key.
     */
    const char *body = "{\"key\":\"a\\\xff\",\"value\":\"v\"}";
    json_t *errors = json_array();
    struct write_request req;
    bool ok = validate_write_request(body, strlen(body), MAX_VALUE, &req, errors);
    ck_assert_msg(!ok, "accepted, with key \"%s\" (%zu bytes)", ok ? req.key : "",
                  ok ? req.key_len : 0);
    const char *type = json_string_value(json_object_get(json_array_get(errors, 0), "type"));
    ck_assert(strcmp(type, "json_invalid") == 0 || strcmp(type, "string_unicode") == 0);
    json_decref(errors);
}
END_TEST

START_TEST(a_parse_error_quoting_half_a_character_is_still_reported)
{
    /*
     * Found by fuzz/fuzz_validate: jansson's error text quotes the input where it stopped
     * ("invalid escape near '"\u16" and the first byte of a two-byte character), cut in the
     * middle of the character. That text is not UTF-8, jansson refused to make a string of it,
     * and the 422 came out with no error at all.
     */
    const char *body = "{\"key\":\"k\",\"value\":\"\\u16\xcf\x9a\x9a\xa0" "eeee\"}";
    expect_json_invalid(body, 0);
}
END_TEST

START_TEST(several_errors_are_reported_at_once)
{
    json_t *errors = errors_for("{\"key\":\"\",\"value\":5}", 0);
    ck_assert_uint_eq(json_array_size(errors), 2);
    assert_error(errors, 0, "string_too_short", "body", "key");
    assert_error(errors, 1, "string_type", "body", "value");
    json_decref(errors);

    errors = errors_for("{}", 0);
    ck_assert_uint_eq(json_array_size(errors), 2);
    assert_error(errors, 0, "missing", "body", "key");
    assert_error(errors, 1, "missing", "body", "value");
    json_decref(errors);

    errors = errors_for("{\"key\":\"\xff\",\"value\":\"0123456789abcdefX\"}", 0);
    ck_assert_uint_eq(json_array_size(errors), 2);
    assert_error(errors, 0, "string_unicode", "body", "key");
    assert_error(errors, 1, "string_too_long", "body", "value");
    json_decref(errors);
}
END_TEST

START_TEST(errors_are_appended_to_the_callers_array)
{
    json_t *errors = json_array();
    validation_error_add(errors, "custom", "query", NULL, "first");
    struct write_request req;
    ck_assert(!validate_write_request("{}", 2, MAX_VALUE, &req, errors));
    ck_assert_uint_eq(json_array_size(errors), 3);
    assert_error(errors, 0, "custom", "query", NULL);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 0), "msg")), "first");
    assert_error(errors, 1, "missing", "body", "key");
    json_decref(errors);
}
END_TEST

/* ---- path keys ---- */

/* Decodes raw; asserts success and returns the key (caller frees). */
static char *path_key(const char *raw, size_t *len)
{
    json_t *errors = json_array();
    char *key = validate_path_key(raw, strlen(raw), len, errors);
    ck_assert_msg(key != NULL, "'%s' refused", raw);
    ck_assert_uint_eq(json_array_size(errors), 0);
    json_decref(errors);
    return key;
}

static void expect_path_error(const char *raw, const char *type)
{
    json_t *errors = json_array();
    size_t len = 777;
    ck_assert_ptr_null(validate_path_key(raw, strlen(raw), &len, errors));
    ck_assert_uint_eq(json_array_size(errors), 1);
    assert_error(errors, 0, type, "path", "key");
    json_decref(errors);
}

START_TEST(path_keys_are_decoded)
{
    size_t len;
    char *key = path_key("a%2Fb%20c", &len);
    ck_assert_uint_eq(len, 5);
    ck_assert_str_eq(key, "a/b c");
    free(key);
    key = path_key("plus+sign", &len);
    ck_assert_str_eq(key, "plus+sign");
    free(key);
    key = path_key("unicode_%E6%B5%8B%E8%AF%95", &len);
    ck_assert_str_eq(key, "unicode_测试");
    ck_assert_uint_eq(len, strlen("unicode_测试"));
    free(key);
    key = path_key("raw_测试", &len); /* unencoded UTF-8 bytes are fine too */
    ck_assert_str_eq(key, "raw_测试");
    free(key);
}
END_TEST

START_TEST(path_key_length_is_counted_after_decoding)
{
    /* 255 escapes: 765 raw bytes, 255 decoded bytes, accepted. */
    char raw[3 * 256 + 1] = "";
    for (int i = 0; i < 255; i++)
        strcat(raw, "%41");
    size_t len;
    char *key = path_key(raw, &len);
    ck_assert_uint_eq(len, 255);
    free(key);
    strcat(raw, "%41");
    expect_path_error(raw, "string_too_long");
    expect_path_error("", "string_too_short");
}
END_TEST

START_TEST(bad_path_keys_are_string_unicode)
{
    expect_path_error("%zz", "string_unicode");
    expect_path_error("abc%4", "string_unicode");
    expect_path_error("%FF", "string_unicode");
    expect_path_error("%FF%FE", "string_unicode");
    expect_path_error("%C0%AF", "string_unicode"); /* overlong '/' */
    expect_path_error("%ED%A0%80", "string_unicode");
    expect_path_error("%E6%B5", "string_unicode");
    expect_path_error("a%00", "string_unicode");
    expect_path_error("a\xff", "string_unicode");
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("validate");
    TCase *utf8 = tcase_create("utf8_valid");
    tcase_add_test(utf8, utf8_accepts_every_boundary);
    tcase_add_test(utf8, utf8_refuses_overlongs);
    tcase_add_test(utf8, utf8_refuses_surrogates);
    tcase_add_test(utf8, utf8_refuses_above_10ffff_and_bad_bytes);
    tcase_add_test(utf8, utf8_refuses_truncated_sequences);
    suite_add_tcase(suite, utf8);

    TCase *body = tcase_create("write body");
    tcase_add_test(body, valid_body_is_accepted);
    tcase_add_test(body, empty_value_and_255_byte_key_are_accepted);
    tcase_add_test(body, escaped_unicode_is_decoded);
    tcase_add_test(body, missing_fields_and_bodies);
    tcase_add_test(body, non_strings_are_string_type);
    tcase_add_test(body, huge_numbers_are_string_type);
    tcase_add_test(body, malformed_json_is_json_invalid);
    tcase_add_test(body, non_objects_are_json_invalid);
    tcase_add_test(body, json_invalid_position_points_at_the_problem);
    tcase_add_test(body, empty_key_is_string_too_short);
    tcase_add_test(body, long_key_and_value_are_string_too_long);
    tcase_add_test(body, value_limit_is_the_callers);
    tcase_add_test(body, bad_text_is_string_unicode);
    tcase_add_test(body, invalid_byte_after_backslash_is_refused);
    tcase_add_test(body, a_parse_error_quoting_half_a_character_is_still_reported);
    tcase_add_test(body, several_errors_are_reported_at_once);
    tcase_add_test(body, errors_are_appended_to_the_callers_array);
    suite_add_tcase(suite, body);

    TCase *path = tcase_create("path key");
    tcase_add_test(path, path_keys_are_decoded);
    tcase_add_test(path, path_key_length_is_counted_after_decoding);
    tcase_add_test(path, bad_path_keys_are_string_unicode);
    suite_add_tcase(suite, path);

    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
