/*
 * Unit tests for http_guard_filter (http_guard.c): the per-connection filter that refuses
 * oversized bodies, from their Content-Length or by counting their chunks, before the rest of
 * them is stored.
 *
 * The filter sits between the socket and evhttp and sees the bytes in whatever pieces TCP
 * delivers, so the tests feed it by hand, in pieces (byte by byte, and split at every offset):
 * small requests and pipelined ones pass byte for byte, a header split anywhere is held until it
 * is complete, an oversized request comes out as the same request with `Content-Length: 0` and
 * the marker header while its body is dropped however it arrives, a chunked request is withheld
 * until its last chunk and then passes unchanged, or, at the chunk that would take it over the
 * limit, comes out as its headers with the marker and no body while the rest is dropped, the next
 * request on the connection passes again, and malformed chunk framing and over-long header blocks
 * are left to libevent; framing that could be read two ways (Content-Length twice, not plain
 * digits, or beside Transfer-Encoding; a client's own marker header) comes out as the headers
 * with the bad-framing marker, and nothing after it passes. Pure buffer work: no sockets.
 */
#include "http_guard.h"

#include "check_run.h"

#include <check.h>
#include <event2/buffer.h>
#include <stdio.h>
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

/*
 * Feeds input to a fresh filter whole, byte by byte, and in two pieces split at every offset,
 * and expects the same output every time: nothing may depend on where TCP splits the stream.
 */
static void expect_in_any_split(const char *input, const char *expected)
{
    size_t len = strlen(input);
    char *piece = malloc(len + 1);
    for (size_t at = 0; at <= len + 1; at++) {
        teardown();
        setup();
        if (at == len + 1) {
            feed_bytewise(input);
        } else {
            memcpy(piece, input, at);
            piece[at] = '\0';
            feed(piece);
            feed(input + at);
        }
        char *text = output();
        ck_assert_msg(strcmp(text, expected) == 0, "split at %zu: got \"%s\"", at, text);
        ck_assert_uint_eq(evbuffer_get_length(in), 0); /* nothing held back at the end */
        free(text);
    }
    free(piece);
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

/* ---- chunked bodies ---- */

#define CHUNKED_POST "POST /write HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
#define PING         "GET /ping HTTP/1.1\r\n\r\n"
/* What the filter passes on for CHUNKED_POST once its body is over the limit. */
#define REFUSED_POST "POST /write HTTP/1.1\r\nContent-Length: 0\r\n" HTTP_GUARD_MARKER ": 1\r\n\r\n"

START_TEST(chunked_body_within_the_limit_passes_unchanged)
{
    /* 4 + 6 data bytes: exactly the limit. */
    const char req[] = CHUNKED_POST "4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n" PING;
    expect_in_any_split(req, req);
}
END_TEST

START_TEST(chunked_request_is_withheld_until_its_last_chunk)
{
    feed(CHUNKED_POST "4\r\nabcd\r\n");
    ck_assert_uint_eq(evbuffer_get_length(out), 0); /* its size is not known yet */
    ck_assert_uint_eq(evbuffer_get_length(in), 0);
    feed("1\r\ne\r\n0\r\n");
    ck_assert_uint_eq(evbuffer_get_length(out), 0); /* trailers may follow */
    feed("\r\n" PING);
    expect_output(CHUNKED_POST "4\r\nabcd\r\n1\r\ne\r\n0\r\n\r\n" PING);
}
END_TEST

START_TEST(chunk_extensions_trailers_and_bare_lf_are_followed)
{
    /* The filter finds the end of this request, so the oversized one after it is judged. */
    const char req[] = "POST /write HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n"
                       "3;name=\"v\"\r\nabc\n"
                       "07 ;last\r\n0123456\r\n"
                       "0\r\nExpires: never\r\nX-Check: 1\n\r\n";
    const char next[] = "POST /write HTTP/1.1\r\nContent-Length: 11\r\n\r\n0123456789A";
    char input[512], expected[512];
    snprintf(input, sizeof input, "%s%s", req, next);
    snprintf(expected, sizeof expected,
             "%sPOST /write HTTP/1.1\r\nContent-Length: 0\r\n" HTTP_GUARD_MARKER ": 1\r\n\r\n",
             req);
    expect_in_any_split(input, expected);
}
END_TEST

START_TEST(oversized_chunked_request_is_refused_at_the_chunk_over_the_limit)
{
    /* 6 data bytes are withheld; the next chunk (5) would make 11: the request goes on without
     * a body, marked, and the rest of it (more chunks, the last chunk, a trailer) is dropped. */
    expect_in_any_split(CHUNKED_POST "6\r\nabcdef\r\n5\r\nghijk\r\n3\r\nlmn\r\n"
                                     "0\r\nX-Trailer: 1\r\n\r\n" PING,
                        REFUSED_POST PING);
}
END_TEST

START_TEST(one_large_chunk_is_refused_at_its_size_line)
{
    feed(CHUNKED_POST "40\r\n");
    expect_output(REFUSED_POST); /* at once, before any of its data */
    for (int i = 0; i < 8; i++) {
        feed("01234567"); /* the 0x40 bytes of data are dropped as they arrive */
        ck_assert_uint_eq(evbuffer_get_length(out), 0);
        ck_assert_uint_eq(evbuffer_get_length(in), 0);
    }
    feed("\r\n0\r\n\r\n");
    ck_assert_uint_eq(evbuffer_get_length(out), 0);
    feed(PING); /* the connection goes on */
    expect_output(PING);
}
END_TEST

START_TEST(refused_chunks_with_extensions_and_bare_lf_are_dropped)
{
    expect_in_any_split(CHUNKED_POST "B;x=y\nabcdefghijk\n0;z\nX-T: 1\n\n" PING, REFUSED_POST PING);
}
END_TEST

START_TEST(a_refused_body_past_its_allowance_closes_the_connection)
{
    /* 1 MiB (the floor of the allowance, 4 x LIMIT being less) is dropped with the connection
     * kept; a client still sending after that is not reading its 413. */
    feed("POST /write HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n");
    expect_output(REFUSED_POST);
    char *chunk = malloc(64 * 1024);
    memset(chunk, 'x', 64 * 1024);
    for (int i = 0; i < 16; i++) {
        evbuffer_add(in, chunk, 64 * 1024);
        http_guard_filter(guard, in, out);
    }
    ck_assert(!http_guard_wants_close(guard)); /* exactly 1 MiB: still the allowance */
    evbuffer_add(in, chunk, 1);
    http_guard_filter(guard, in, out);
    ck_assert(http_guard_wants_close(guard));
    feed(PING); /* nothing passes any more */
    ck_assert_uint_eq(evbuffer_get_length(out), 0);
    ck_assert_uint_eq(evbuffer_get_length(in), 0);
    free(chunk);
}
END_TEST

/* ---- framing that could be read two ways (request smuggling): 400, the rest dropped ---- */

#define BAD_POST "POST /write HTTP/1.1\r\nContent-Length: 0\r\n" HTTP_GUARD_BAD_MARKER ": 1\r\n"

START_TEST(content_length_beside_chunked_is_refused)
{
    /* A proxy that believes the Content-Length would forward the chunks as the next request. */
    expect_in_any_split(
        "POST /write HTTP/1.1\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nok\r\n0\r\n\r\n" PING,
        BAD_POST "\r\n");
}
END_TEST

START_TEST(content_length_beside_any_transfer_encoding_is_refused)
{
    feed("POST /write HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 11\r\n\r\n");
    expect_output(BAD_POST "\r\n");
}
END_TEST

START_TEST(refused_framing_keeps_the_other_headers)
{
    expect_in_any_split("POST /write HTTP/1.1\r\nContent-Length: 3\r\nHost: x\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n20\r\n",
                        BAD_POST "Host: x\r\n\r\n");
}
END_TEST

START_TEST(two_different_content_lengths_are_refused)
{
    /* The first wins in evhttp, the last in some proxies: the body would hide a request. */
    expect_in_any_split("POST /write HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 36\r\n"
                        "\r\nhelloGET /admin HTTP/1.1\r\n\r\n",
                        BAD_POST "\r\n");
}
END_TEST

START_TEST(the_same_content_length_twice_passes)
{
    const char req[] = "POST /write HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    expect_in_any_split(req, req);
}
END_TEST

START_TEST(a_content_length_that_is_not_plain_digits_is_refused)
{
    const char *values[] = {"+36", "-1", "1e3", "0x10", "3 6", "", "1234567890123456789"};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        teardown();
        setup();
        char req[128];
        snprintf(req, sizeof req, "POST /write HTTP/1.1\r\nContent-Length: %s\r\n\r\n", values[i]);
        feed(req);
        char *text = output();
        ck_assert_msg(strcmp(text, BAD_POST "\r\n") == 0, "Content-Length '%s': %s", values[i],
                      text);
        free(text);
    }
}
END_TEST

START_TEST(a_client_cannot_send_the_markers)
{
    /* Only the filter writes them: a client's own is refused, not obeyed. */
    expect_in_any_split("GET /read/x HTTP/1.1\r\n" HTTP_GUARD_MARKER ": 1\r\n\r\n" PING,
                        "GET /read/x HTTP/1.1\r\nContent-Length: 0\r\n" HTTP_GUARD_BAD_MARKER
                        ": 1\r\n\r\n");
    expect_in_any_split("GET /read/x HTTP/1.1\r\nHost: h\r\n" HTTP_GUARD_BAD_MARKER ": 1\r\n\r\n",
                        "GET /read/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
                        HTTP_GUARD_BAD_MARKER ": 1\r\n\r\n");
}
END_TEST

START_TEST(framing_beyond_its_allowance_is_refused_too)
{
    /* One data byte a chunk, each with a 5000-byte extension: within the limit in data, but
     * withholding it would take memory without bound. */
    char *ext = malloc(5001);
    memset(ext, 'x', 5000);
    ext[5000] = '\0';
    feed(CHUNKED_POST);
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(evbuffer_get_length(out), 0);
        feed("1;");
        feed(ext);
        feed("\r\na\r\n");
    }
    expect_output(REFUSED_POST);
    feed("0\r\n\r\n" PING);
    expect_output(PING);
    free(ext);
}
END_TEST

/* ---- what is left to libevent ---- */

START_TEST(malformed_chunk_framing_passes_for_evhttp_to_refuse)
{
    /* Not a size; a size too large for any number; data longer than its size; a size whose
     * digits run into other text. From there on everything passes unchanged. */
    const char *bad[] = {
        CHUNKED_POST "zz\r\nabc\r\n0\r\n\r\n",
        CHUNKED_POST "10000000000000000\r\n0123456789abcdef0123\r\n",
        CHUNKED_POST "3\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
        CHUNKED_POST "3x\r\nabc\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_in_any_split(bad[i], bad[i]);
}
END_TEST

/* 21 KiB of input starting with `prefix`, padded with `fill`, reaches evhttp unchanged. */
static void expect_long_input_passed(const char *prefix, char fill)
{
    size_t len = 21 * 1024, head = strlen(prefix);
    char *junk = malloc(len + 1);
    memcpy(junk, prefix, head);
    memset(junk + head, fill, len - head);
    junk[len] = '\0';
    feed(junk);
    char *text = output();
    ck_assert_uint_eq(strlen(text), len);
    ck_assert(memcmp(text, junk, len) == 0);
    free(text);
    free(junk);
}

START_TEST(over_long_chunk_line_passes_for_evhttp_to_refuse)
{
    expect_long_input_passed(CHUNKED_POST "1;", 'e');
}
END_TEST

START_TEST(over_long_header_block_passes_for_evhttp_to_refuse)
{
    expect_long_input_passed("GET / HTTP/1.1\r\nX: ", 'a');
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
    tcase_add_test(tc, chunked_body_within_the_limit_passes_unchanged);
    tcase_add_test(tc, chunked_request_is_withheld_until_its_last_chunk);
    tcase_add_test(tc, chunk_extensions_trailers_and_bare_lf_are_followed);
    tcase_add_test(tc, oversized_chunked_request_is_refused_at_the_chunk_over_the_limit);
    tcase_add_test(tc, one_large_chunk_is_refused_at_its_size_line);
    tcase_add_test(tc, refused_chunks_with_extensions_and_bare_lf_are_dropped);
    tcase_add_test(tc, a_refused_body_past_its_allowance_closes_the_connection);
    tcase_add_test(tc, content_length_beside_chunked_is_refused);
    tcase_add_test(tc, content_length_beside_any_transfer_encoding_is_refused);
    tcase_add_test(tc, refused_framing_keeps_the_other_headers);
    tcase_add_test(tc, two_different_content_lengths_are_refused);
    tcase_add_test(tc, the_same_content_length_twice_passes);
    tcase_add_test(tc, a_content_length_that_is_not_plain_digits_is_refused);
    tcase_add_test(tc, a_client_cannot_send_the_markers);
    tcase_add_test(tc, framing_beyond_its_allowance_is_refused_too);
    tcase_add_test(tc, malformed_chunk_framing_passes_for_evhttp_to_refuse);
    tcase_add_test(tc, over_long_chunk_line_passes_for_evhttp_to_refuse);
    tcase_add_test(tc, over_long_header_block_passes_for_evhttp_to_refuse);
    suite_add_tcase(suite, tc);

    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
