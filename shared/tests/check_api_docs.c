/*
 * Unit tests for api_docs.c's start-up check: a layer's route table against its OpenAPI
 * document. A route added without its document, a documented operation the server does not
 * serve, or the same path under another method must each be found, so that a server whose
 * document is out of date refuses to start (and CI fails) instead of publishing a wrong API.
 * No sockets: a router and a document built in memory.
 */
#include "api_docs.h"

#include "check_run.h"
#include "router.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static const char document[] = "{\"openapi\":\"3.1.0\",\"paths\":{"
                               "\"/write\":{\"post\":{},\"put\":{}},"
                               "\"/read/{key}\":{\"get\":{}},"
                               "\"/health\":{\"get\":{}}}}";

static struct router *router;
static struct api_docs *docs;
static char err[256];

static void setup(void)
{
    router = router_create();
    router_add(router, HTTP_POST, "/write", NULL);
    router_add(router, HTTP_PUT, "/write", NULL);
    router_add(router, HTTP_GET, "/read/{key}", NULL);
    router_add(router, HTTP_GET, "/health", NULL);
    docs = api_docs_create(document, "");
    err[0] = '\0';
}

static void teardown(void)
{
    api_docs_free(docs);
    router_free(router);
}

START_TEST(routes_and_document_agree)
{
    ck_assert(api_docs_check_routes(docs, router, err, sizeof err));
}
END_TEST

START_TEST(an_undocumented_route_is_found)
{
    router_add(router, HTTP_GET, "/stats", NULL);
    ck_assert(!api_docs_check_routes(docs, router, err, sizeof err));
    ck_assert_msg(strstr(err, "GET /stats") != NULL, "%s", err);
}
END_TEST

START_TEST(an_undocumented_method_is_found)
{
    router_add(router, HTTP_DELETE, "/write", NULL);
    ck_assert(!api_docs_check_routes(docs, router, err, sizeof err));
    ck_assert_msg(strstr(err, "DELETE /write") != NULL, "%s", err);
}
END_TEST

START_TEST(a_documented_operation_not_served_is_found)
{
    struct router *fewer = router_create();
    router_add(fewer, HTTP_POST, "/write", NULL);
    router_add(fewer, HTTP_GET, "/read/{key}", NULL);
    router_add(fewer, HTTP_GET, "/health", NULL);
    bool ok = api_docs_check_routes(docs, fewer, err, sizeof err);
    router_free(fewer);
    ck_assert(!ok);
    ck_assert_msg(strstr(err, "put /write") != NULL, "%s", err);
}
END_TEST

START_TEST(a_layer_without_document_is_not_checked)
{
    struct api_docs *none = api_docs_create(NULL, NULL);
    router_add(router, HTTP_GET, "/stats", NULL);
    ck_assert(api_docs_check_routes(none, router, err, sizeof err));
    ck_assert(!api_docs_installed(none));
    api_docs_free(none);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("api_docs");
    TCase *tc = tcase_create("routes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, routes_and_document_agree);
    tcase_add_test(tc, an_undocumented_route_is_found);
    tcase_add_test(tc, an_undocumented_method_is_found);
    tcase_add_test(tc, a_documented_operation_not_served_is_found);
    tcase_add_test(tc, a_layer_without_document_is_not_checked);
    suite_add_tcase(suite, tc);
    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
