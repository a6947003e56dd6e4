/*
 * Unit tests for http_guard_filter (http_guard.c): the per-connection filter that refuses
 * oversized bodies from their Content-Length, fed bytes by hand: pipelined requests, headers
 * split across reads, oversized and chunked bodies.
 */
#include "http_guard.h"

#include <check.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

static struct http_guard *guard;
static struct evbuffer *in, *out;

static void setup(void)
{
    guard = http_guard_create(10);
    in = evbuffer_new();
    out = evbuffer_new();
}

static void teardown(void)
{
    http_guard_free(guard);
    evbuffer_free(in);
    evbuffer_free(out);
}

static void feed(const char *text)
{
    evbuffer_add(in, text, strlen(text));
    http_guard_filter(guard, in, out);
}

static char *output(void)
{
    size_t len = evbuffer_get_length(out);
    char *text = malloc(len + 1);
    evbuffer_remove(out, text, len);
    text[len] = '\0';
    return text;
}

START_TEST(small_requests_pass_unchanged)
{
    const char req[] =
        "POST /write HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /ping HTTP/1.1\r\n\r\n";
    feed(req);
    char *text = output();
    ck_assert_str_eq(text, req);
    free(text);
}
END_TEST

START_TEST(split_header_is_held_until_complete)
{
    feed("GET /ping HTTP/1.1\r\nHost: x");
    ck_assert_uint_eq(evbuffer_get_length(out), 0);
    feed("\r\n\r\n");
    char *text = output();
    ck_assert_str_eq(text, "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    free(text);
}
END_TEST

START_TEST(oversized_body_is_dropped_and_marked)
{
    feed("POST /write HTTP/1.1\r\ncontent-length: 12\r\nHost: x\r\n\r\n01234567");
    feed("89AB");
    char *text = output();
    ck_assert(strstr(text, "Content-Length: 0\r\n") != NULL);
    ck_assert(strstr(text, HTTP_GUARD_MARKER ": 1\r\n") != NULL);
    ck_assert(strstr(text, "Host: x\r\n") != NULL);
    ck_assert(strstr(text, "content-length: 12") == NULL);
    ck_assert(strstr(text, "0123") == NULL); /* the body never passes */
    free(text);
    feed("GET /ping HTTP/1.1\r\n\r\n"); /* after the 12 bytes, requests pass again */
    text = output();
    ck_assert_str_eq(text, "GET /ping HTTP/1.1\r\n\r\n");
    free(text);
}
END_TEST

START_TEST(chunked_bodies_pass)
{
    const char req[] = "POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n";
    feed(req);
    char *text = output();
    ck_assert_str_eq(text, req);
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http_guard");
    TCase *tc = tcase_create("http_guard");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, small_requests_pass_unchanged);
    tcase_add_test(tc, split_header_is_held_until_complete);
    tcase_add_test(tc, oversized_body_is_dropped_and_marked);
    tcase_add_test(tc, chunked_bodies_pass);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
