/*
 * Unit tests for router.c: the route table and percent-decoding of path segments.
 *
 * Every layer answers 404 and 405 through this table, and every `{key}` it reads comes out of
 * percent_decode, so these tests pin the rules a client sees: a `{param}` is exactly one whole
 * segment (an encoded `%2F` stays inside it), a trailing slash is a different path, the router
 * is given paths without their query string, 405 carries the methods for `Allow` in a fixed
 * order, and `+` in a path is a plus sign. Pure string work: no sockets, no event loop.
 */
#include "router.h"

#include "check_run.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static struct router *router;
static int write_route, put_route, read_route, head_read_route, health_route;

static void setup(void)
{
    router = router_create();
    write_route = router_add(router, HTTP_POST, "/write", "write");
    read_route = router_add(router, HTTP_GET, "/read/{key}", "read");
    head_read_route = router_add(router, HTTP_HEAD, "/read/{key}", "head-read");
    health_route = router_add(router, HTTP_GET, "/health", "health");
    put_route = router_add(router, HTTP_PUT, "/write", "put-write");
}

static void teardown(void)
{
    router_free(router);
}

START_TEST(routes_are_numbered_in_registration_order)
{
    ck_assert_int_eq(write_route, 0);
    ck_assert_int_eq(read_route, 1);
    ck_assert_int_eq(head_read_route, 2);
    ck_assert_int_eq(health_route, 3);
    ck_assert_int_eq(put_route, 4);
    ck_assert_str_eq(router_template(router, read_route), "/read/{key}");
    ck_assert_str_eq(router_template(router, write_route), "/write");
}
END_TEST

START_TEST(literal_route_matches_its_method)
{
    struct route_match m;
    ck_assert_int_eq(router_match(router, HTTP_POST, "/write", &m), ROUTER_MATCH);
    ck_assert_int_eq(m.route, write_route);
    ck_assert_str_eq(m.data, "write");
    ck_assert_int_eq(m.param_count, 0);

    /* Same path, another registered method: its own route. */
    ck_assert_int_eq(router_match(router, HTTP_PUT, "/write", &m), ROUTER_MATCH);
    ck_assert_int_eq(m.route, put_route);
    ck_assert_str_eq(m.data, "put-write");
}
END_TEST

START_TEST(param_segment_is_captured_raw)
{
    const char *path = "/read/a%2Fb";
    struct route_match m;
    ck_assert_int_eq(router_match(router, HTTP_GET, path, &m), ROUTER_MATCH);
    ck_assert_int_eq(m.route, read_route);
    ck_assert_str_eq(m.data, "read");
    ck_assert_int_eq(m.param_count, 1);
    /* Still encoded, and pointing into the caller's path (no copy). */
    ck_assert_ptr_eq(m.params[0].raw, path + strlen("/read/"));
    ck_assert_uint_eq(m.params[0].len, strlen("a%2Fb"));

    ck_assert_int_eq(router_match(router, HTTP_HEAD, "/read/k", &m), ROUTER_MATCH);
    ck_assert_int_eq(m.route, head_read_route);
}
END_TEST

START_TEST(several_params_come_in_template_order)
{
    struct router *r = router_create();
    int route = router_add(r, HTTP_GET, "/shards/{shard}/keys/{key}", NULL);
    struct route_match m;
    ck_assert_int_eq(router_match(r, HTTP_GET, "/shards/s7/keys/k%20x", &m), ROUTER_MATCH);
    ck_assert_int_eq(m.route, route);
    ck_assert_int_eq(m.param_count, 2);
    ck_assert_uint_eq(m.params[0].len, 2);
    ck_assert(memcmp(m.params[0].raw, "s7", 2) == 0);
    ck_assert_uint_eq(m.params[1].len, 5);
    ck_assert(memcmp(m.params[1].raw, "k%20x", 5) == 0);
    /* A literal segment between params must match exactly. */
    ck_assert_int_eq(router_match(r, HTTP_GET, "/shards/s7/key/k", &m), ROUTER_NOT_FOUND);
    router_free(r);
}
END_TEST

START_TEST(param_is_exactly_one_segment)
{
    struct route_match m;
    ck_assert_int_eq(router_match(router, HTTP_GET, "/read/a/b", &m), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(router, HTTP_GET, "/read", &m), ROUTER_NOT_FOUND);
    /* An empty segment still matches: the handler answers 422 string_too_short, not 404. */
    ck_assert_int_eq(router_match(router, HTTP_GET, "/read/", &m), ROUTER_MATCH);
    ck_assert_int_eq(m.param_count, 1);
    ck_assert_uint_eq(m.params[0].len, 0);
}
END_TEST

START_TEST(trailing_slash_is_another_path)
{
    struct route_match m;
    ck_assert_int_eq(router_match(router, HTTP_GET, "/health/", &m), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(router, HTTP_POST, "/write/", &m), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(router, HTTP_GET, "/read/k/", &m), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(router, HTTP_GET, "//health", &m), ROUTER_NOT_FOUND);

    /* The root template matches "/" only. */
    struct router *r = router_create();
    int root = router_add(r, HTTP_GET, "/", NULL);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/", &m), ROUTER_MATCH);
    ck_assert_int_eq(m.route, root);
    ck_assert_int_eq(router_match(r, HTTP_GET, "//", &m), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/x", &m), ROUTER_NOT_FOUND);
    router_free(r);
}
END_TEST

START_TEST(paths_are_matched_without_query_string)
{
    /* http.c passes evhttp_uri_get_path(), which has no query: a `?` here is path text. */
    struct route_match m;
    ck_assert_int_eq(router_match(router, HTTP_GET, "/health", &m), ROUTER_MATCH);
    ck_assert_int_eq(router_match(router, HTTP_GET, "/health?verbose=1", &m), ROUTER_NOT_FOUND);
}
END_TEST

START_TEST(unknown_paths_are_not_found)
{
    struct route_match m;
    const char *paths[] = {"/nope", "", "health", "/healt", "/healthz", "/write/x", "/READ/k"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        ck_assert_msg(router_match(router, HTTP_GET, paths[i], &m) == ROUTER_NOT_FOUND,
                      "'%s' should be 404", paths[i]);
        ck_assert_int_eq(m.route, -1);
        ck_assert_ptr_null(m.data);
        ck_assert_uint_eq(m.allowed, 0);
    }
}
END_TEST

START_TEST(other_method_is_405_with_allowed_mask)
{
    struct route_match m;
    ck_assert_int_eq(router_match(router, HTTP_GET, "/write", &m), ROUTER_METHOD_NOT_ALLOWED);
    ck_assert_uint_eq(m.allowed, HTTP_POST | HTTP_PUT);
    ck_assert_int_eq(m.route, -1);
    ck_assert_ptr_null(m.data);
    char allow[96];
    router_format_allow(m.allowed, allow, sizeof allow);
    ck_assert_str_eq(allow, "POST, PUT");

    ck_assert_int_eq(router_match(router, HTTP_DELETE, "/read/x", &m), ROUTER_METHOD_NOT_ALLOWED);
    ck_assert_uint_eq(m.allowed, HTTP_GET | HTTP_HEAD);
    router_format_allow(m.allowed, allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, HEAD");

    /* Methods the server does not route at all are refused the same way. */
    ck_assert_int_eq(router_match(router, HTTP_OTHER, "/health", &m), ROUTER_METHOD_NOT_ALLOWED);
    ck_assert_uint_eq(m.allowed, HTTP_GET);
}
END_TEST

START_TEST(allow_lists_methods_in_fixed_order)
{
    char allow[96];
    router_format_allow(HTTP_DELETE | HTTP_GET, allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, DELETE");
    router_format_allow(HTTP_GET | HTTP_HEAD | HTTP_POST | HTTP_PUT | HTTP_DELETE | HTTP_PATCH |
                            HTTP_OPTIONS | HTTP_OTHER,
                        allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS");
    router_format_allow(0, allow, sizeof allow);
    ck_assert_str_eq(allow, "");

    /* Registration order does not matter either. */
    struct router *r = router_create();
    router_add(r, HTTP_PATCH, "/x", NULL);
    router_add(r, HTTP_GET, "/x", NULL);
    struct route_match m;
    ck_assert_int_eq(router_match(r, HTTP_POST, "/x", &m), ROUTER_METHOD_NOT_ALLOWED);
    router_format_allow(m.allowed, allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, PATCH");
    router_free(r);
}
END_TEST

START_TEST(allow_never_overflows_a_small_buffer)
{
    /* Heap-allocated at the exact size, so that AddressSanitizer sees any overrun. */
    char *small = malloc(8);
    router_format_allow(HTTP_GET | HTTP_HEAD | HTTP_POST, small, 8);
    ck_assert_uint_lt(strlen(small), 8);
    ck_assert(strncmp(small, "GET, HEAD, POST", strlen(small)) == 0);
    free(small);
}
END_TEST

START_TEST(method_names)
{
    ck_assert_str_eq(http_method_name(HTTP_GET), "GET");
    ck_assert_str_eq(http_method_name(HTTP_HEAD), "HEAD");
    ck_assert_str_eq(http_method_name(HTTP_POST), "POST");
    ck_assert_str_eq(http_method_name(HTTP_PUT), "PUT");
    ck_assert_str_eq(http_method_name(HTTP_DELETE), "DELETE");
    ck_assert_str_eq(http_method_name(HTTP_PATCH), "PATCH");
    ck_assert_str_eq(http_method_name(HTTP_OPTIONS), "OPTIONS");
    ck_assert_str_eq(http_method_name(HTTP_OTHER), "OTHER");
}
END_TEST

/* Decodes a NUL-free string; NULL when percent_decode refuses it. */
static const char *decode(const char *in)
{
    static char out[256];
    size_t len = 12345;
    if (!percent_decode(in, strlen(in), out, &len))
        return NULL;
    ck_assert_uint_eq(len, strlen(out));
    return out;
}

START_TEST(percent_decoding)
{
    ck_assert_str_eq(decode("plain-key_1.2~"), "plain-key_1.2~");
    ck_assert_str_eq(decode(""), "");
    ck_assert_str_eq(decode("a%2Fb"), "a/b");
    ck_assert_str_eq(decode("a%2fb"), "a/b");
    ck_assert_str_eq(decode("key%20with%20space"), "key with space");
    ck_assert_str_eq(decode("%E6%B5%8B%e8%af%95"), "测试");
    ck_assert_str_eq(decode("%D0%BA%D0%BB%D1%8E%D1%87"), "ключ");
    ck_assert_str_eq(decode("%F0%9F%98%80"), "\xF0\x9F\x98\x80");
    ck_assert_str_eq(decode("%25"), "%");
    ck_assert_str_eq(decode("%2541"), "%41"); /* decoded once, not twice */
    ck_assert_str_eq(decode("%41%42c"), "ABc");
}
END_TEST

START_TEST(plus_is_kept_in_paths)
{
    ck_assert_str_eq(decode("plus+sign"), "plus+sign");
    ck_assert_str_eq(decode("+"), "+");
    ck_assert_str_eq(decode("%2B"), "+");
}
END_TEST

START_TEST(malformed_escapes_are_refused)
{
    const char *bad[] = {"%zz", "%4", "%", "abc%", "abc%4", "%4g", "%g4", "%%41", "a% b", "%-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(decode(bad[i]) == NULL, "'%s' should be refused", bad[i]);
}
END_TEST

START_TEST(decoding_reads_only_len_bytes)
{
    char out[16];
    size_t len;
    /* "%41" cut after two bytes is a truncated escape, whatever follows in memory. */
    ck_assert(!percent_decode("%41", 2, out, &len));
    ck_assert(percent_decode("a%41XYZ", 4, out, &len));
    ck_assert_uint_eq(len, 2);
    ck_assert_str_eq(out, "aA");
}
END_TEST

START_TEST(decoded_nul_is_kept_for_the_validator)
{
    char out[8];
    size_t len;
    ck_assert(percent_decode("a%00b", 5, out, &len));
    ck_assert_uint_eq(len, 3);
    ck_assert(memcmp(out, "a\0b", 4) == 0); /* and NUL-terminated after it */
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("router");
    TCase *table = tcase_create("route table");
    tcase_add_checked_fixture(table, setup, teardown);
    tcase_add_test(table, routes_are_numbered_in_registration_order);
    tcase_add_test(table, literal_route_matches_its_method);
    tcase_add_test(table, param_segment_is_captured_raw);
    tcase_add_test(table, several_params_come_in_template_order);
    tcase_add_test(table, param_is_exactly_one_segment);
    tcase_add_test(table, trailing_slash_is_another_path);
    tcase_add_test(table, paths_are_matched_without_query_string);
    tcase_add_test(table, unknown_paths_are_not_found);
    tcase_add_test(table, other_method_is_405_with_allowed_mask);
    tcase_add_test(table, allow_lists_methods_in_fixed_order);
    tcase_add_test(table, allow_never_overflows_a_small_buffer);
    tcase_add_test(table, method_names);
    suite_add_tcase(suite, table);

    TCase *decoding = tcase_create("percent-decoding");
    tcase_add_test(decoding, percent_decoding);
    tcase_add_test(decoding, plus_is_kept_in_paths);
    tcase_add_test(decoding, malformed_escapes_are_refused);
    tcase_add_test(decoding, decoding_reads_only_len_bytes);
    tcase_add_test(decoding, decoded_nul_is_kept_for_the_validator);
    suite_add_tcase(suite, decoding);

    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
