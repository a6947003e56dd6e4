/*
 * Unit tests for router.c: matching path templates, 404 versus 405 (with the Allow header's
 * methods), and percent-decoding of path segments. Pure string work: no sockets.
 */
#include "router.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static struct router *router;
static int write_route, read_route, health_route;

static void setup(void)
{
    router = router_create();
    write_route = router_add(router, HTTP_POST, "/write", "write");
    read_route = router_add(router, HTTP_GET, "/read/{key}", "read");
    health_route = router_add(router, HTTP_GET, "/health", "health");
    router_add(router, HTTP_PUT, "/write", "put-write");
}

static void teardown(void)
{
    router_free(router);
}

START_TEST(matches_literal_and_param_routes)
{
    struct route_match m;
    ck_assert_int_eq(router_match(router, HTTP_POST, "/write", &m), ROUTER_MATCH);
    ck_assert_int_eq(m.route, write_route);
    ck_assert_str_eq(m.data, "write");
    ck_assert_int_eq(router_match(router, HTTP_GET, "/read/a%2Fb", &m), ROUTER_MATCH);
    ck_assert_int_eq(m.route, read_route);
    ck_assert_int_eq(m.param_count, 1);
    ck_assert_uint_eq(m.params[0].len, 5);
    ck_assert(strncmp(m.params[0].raw, "a%2Fb", 5) == 0);
    ck_assert_str_eq(router_template(router, read_route), "/read/{key}");
}
END_TEST

START_TEST(a_param_is_exactly_one_segment)
{
    struct route_match m;
    ck_assert_int_eq(router_match(router, HTTP_GET, "/read/a/b", &m), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(router, HTTP_GET, "/read", &m), ROUTER_NOT_FOUND);
    /* An empty segment still matches; the handler reports the empty key (422). */
    ck_assert_int_eq(router_match(router, HTTP_GET, "/read/", &m), ROUTER_MATCH);
    ck_assert_uint_eq(m.params[0].len, 0);
}
END_TEST

START_TEST(not_found_versus_method_not_allowed)
{
    struct route_match m;
    ck_assert_int_eq(router_match(router, HTTP_GET, "/nope", &m), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(router, HTTP_GET, "/health/", &m), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(router, HTTP_GET, "", &m), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(router, HTTP_GET, "/write", &m), ROUTER_METHOD_NOT_ALLOWED);
    ck_assert_uint_eq(m.allowed, HTTP_POST | HTTP_PUT);
    char allow[64];
    router_format_allow(m.allowed, allow, sizeof allow);
    ck_assert_str_eq(allow, "POST, PUT");
    ck_assert_int_eq(router_match(router, HTTP_DELETE, "/read/x", &m), ROUTER_METHOD_NOT_ALLOWED);
    router_format_allow(m.allowed, allow, sizeof allow);
    ck_assert_str_eq(allow, "GET");
}
END_TEST

static const char *decode(const char *in)
{
    static char out[256];
    size_t len;
    if (!percent_decode(in, strlen(in), out, &len))
        return NULL;
    ck_assert_uint_eq(len, strlen(out)); /* no NUL in these cases */
    return out;
}

START_TEST(percent_decoding)
{
    ck_assert_str_eq(decode("a%2Fb"), "a/b");
    ck_assert_str_eq(decode("key%20with%20space"), "key with space");
    ck_assert_str_eq(decode("%E6%B5%8B%e8%af%95"), "测试");
    ck_assert_str_eq(decode("plus+stays"), "plus+stays");
    ck_assert_str_eq(decode(""), "");
    ck_assert_ptr_null(decode("%zz"));
    ck_assert_ptr_null(decode("%4"));
    ck_assert_ptr_null(decode("abc%"));
    char out[8];
    size_t len;
    ck_assert(percent_decode("a%00b", 5, out, &len));
    ck_assert_uint_eq(len, 3); /* NUL decoded; the validator refuses it later */
    ck_assert_int_eq(out[1], 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("router");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, matches_literal_and_param_routes);
    tcase_add_test(tc, a_param_is_exactly_one_segment);
    tcase_add_test(tc, not_found_versus_method_not_allowed);
    tcase_add_test(tc, percent_decoding);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
