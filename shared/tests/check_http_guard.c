/*
 * Unit tests for http_guard_filter (http_guard.c): the per-connection filter that refuses
 * oversized bodies from their Content-Length, before a byte of them is stored.
 *
 * The filter sits between the socket and evhttp and sees the bytes in whatever pieces TCP
 * delivers, so the tests feed it by hand, in pieces: small requests and pipelined ones pass
 * byte for byte, a header split anywhere is held until it is complete, an oversized request
 * comes out as the same request with `Content-Length: 0` and the marker header while its body
 * is dropped however it arrives, the next request on the connection passes again, and chunked
 * bodies and over-long header blocks are left to libevent. Pure buffer work: no sockets.
 */
#include "http_guard.h"

#include <check.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT 10 /* max_body_bytes for these tests */

static struct http_guard *guard;
static struct evbuffer *in, *out;

static void setup(void)
{
    guard = http_guard_create(LIMIT);
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

/* Everything passed on so far, as a string (caller frees); empties the output. */
static char *output(void)
{
    size_t len = evbuffer_get_length(out);
    char *text = malloc(len + 1);
    evbuffer_remove(out, text, len);
    text[len] = '\0';
    return text;
}

static void expect_output(const char *expected)
{
    char *text = output();
    ck_assert_str_eq(text, expected);
    free(text);
}

/* Feeds text one byte at a time. */
static void feed_bytewise(const char *text)
{
    char one[2] = {0, 0};
    for (size_t i = 0; text[i] != '\0'; i++) {
        one[0] = text[i];
        feed(one);
    }
}

/* ---- what passes ---- */

START_TEST(small_requests_pass_unchanged)
{
    const char req[] =
        "POST /write HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /ping HTTP/1.1\r\n\r\n";
    feed(req);
    expect_output(req);
    ck_assert_uint_eq(evbuffer_get_length(in), 0);
}
END_TEST

START_TEST(body_of_exactly_the_limit_passes)
{
    const char req[] = "POST /write HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
    feed(req);
    expect_output(req);
}
END_TEST

START_TEST(requests_fed_byte_by_byte_pass_unchanged)
{
    const char req[] = "POST /write HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
                       "GET /read/k HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /write HTTP/1.1\r\nContent-Length: 2\r\n\r\nok";
    feed_bytewise(req);
    expect_output(req);
}
END_TEST

START_TEST(split_header_is_held_until_complete)
{
    feed("GET /ping HTTP/1.1\r\nHost: x");
    ck_assert_uint_eq(evbuffer_get_length(out), 0);
    feed("\r\n\r");
    ck_assert_uint_eq(evbuffer_get_length(out), 0);
    feed("\n");
    expect_output("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
}
END_TEST

START_TEST(header_like_text_elsewhere_is_ignored)
{
    /* In the request line, in another header's name, in a longer name: not Content-Length. */
    const char req[] = "GET /Content-Length:99 HTTP/1.1\r\n"
                       "X-Content-Length: 99\r\n"
                       "Content-Length-99: 1\r\n\r\n";
    feed(req);
    expect_output(req);
}
END_TEST

/* ---- what is refused ---- */

START_TEST(oversized_request_is_rewritten_exactly)
{
    feed("POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nAccept: */*\r\n\r\n");
    expect_output("POST /write HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: 0\r\n" HTTP_GUARD_MARKER ": 1\r\n"
                  "Accept: */*\r\n\r\n");
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
    ck_assert_uint_eq(evbuffer_get_length(in), 0); /* nor is it kept */
    feed("GET /ping HTTP/1.1\r\n\r\n");            /* after the 12 bytes, requests pass again */
    expect_output("GET /ping HTTP/1.1\r\n\r\n");
}
END_TEST

START_TEST(next_request_in_the_same_read_as_the_dropped_tail_passes)
{
    feed("POST /write HTTP/1.1\r\nContent-Length: 12\r\n\r\n0123");
    char *text = output();
    ck_assert(strstr(text, HTTP_GUARD_MARKER) != NULL);
    free(text);
    feed("456789AB"
         "GET /ping HTTP/1.1\r\n\r\n");
    expect_output("GET /ping HTTP/1.1\r\n\r\n");
}
END_TEST

START_TEST(oversized_request_fed_byte_by_byte_is_refused)
{
    feed_bytewise("POST /write HTTP/1.1\r\nContent-Length: 20\r\n\r\n"
                  "01234567890123456789"
                  "POST /write HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    expect_output("POST /write HTTP/1.1\r\n"
                  "Content-Length: 0\r\n" HTTP_GUARD_MARKER ": 1\r\n\r\n"
                  "POST /write HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
}
END_TEST

START_TEST(bare_lf_headers_are_judged_too)
{
    feed("POST /write HTTP/1.1\nContent-Length:   50\nHost: x\n\n0123456789");
    char *text = output();
    ck_assert(strstr(text, HTTP_GUARD_MARKER ": 1") != NULL);
    ck_assert(strstr(text, "50") == NULL);
    ck_assert(strstr(text, "Host: x") != NULL);
    ck_assert(strstr(text, "0123") == NULL);
    free(text);
}
END_TEST

/* ---- what is left to libevent ---- */

START_TEST(chunked_bodies_pass)
{
    const char req[] = "POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n";
    feed(req);
    expect_output(req);
    /* Its chunks cannot be judged by this filter: from now on everything passes. */
    feed("0123456789abcdef0123456789abcdef\r\n0\r\n\r\n");
    expect_output("0123456789abcdef0123456789abcdef\r\n0\r\n\r\n");
}
END_TEST

START_TEST(chunked_wins_over_a_large_content_length)
{
    const char req[] =
        "POST /write HTTP/1.1\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\n\r\n";
    feed(req);
    expect_output(req);
}
END_TEST

START_TEST(over_long_header_block_passes_for_evhttp_to_refuse)
{
    size_t len = 21 * 1024;
    char *junk = malloc(len + 1);
    memcpy(junk, "GET / HTTP/1.1\r\nX: ", 19);
    memset(junk + 19, 'a', len - 19);
    junk[len] = '\0';
    feed(junk);
    char *text = output();
    ck_assert_uint_eq(strlen(text), len);
    ck_assert(memcmp(text, junk, len) == 0);
    free(text);
    free(junk);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("http_guard");
    TCase *tc = tcase_create("http_guard");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, small_requests_pass_unchanged);
    tcase_add_test(tc, body_of_exactly_the_limit_passes);
    tcase_add_test(tc, requests_fed_byte_by_byte_pass_unchanged);
    tcase_add_test(tc, split_header_is_held_until_complete);
    tcase_add_test(tc, header_like_text_elsewhere_is_ignored);
    tcase_add_test(tc, oversized_request_is_rewritten_exactly);
    tcase_add_test(tc, oversized_body_is_dropped_and_marked);
    tcase_add_test(tc, next_request_in_the_same_read_as_the_dropped_tail_passes);
    tcase_add_test(tc, oversized_request_fed_byte_by_byte_is_refused);
    tcase_add_test(tc, bare_lf_headers_are_judged_too);
    tcase_add_test(tc, chunked_bodies_pass);
    tcase_add_test(tc, chunked_wins_over_a_large_content_length);
    tcase_add_test(tc, over_long_header_block_passes_for_evhttp_to_refuse);
    suite_add_tcase(suite, tc);

    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
