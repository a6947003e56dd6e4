/*
 * Unit tests for the answer parser of http_conn.c: an answer with a Content-Length, one split
 * at every byte, a chunked one (joined), one ended by the server's close, "Connection: close",
 * and answers this client must refuse (not HTTP, a bad length, two lengths that disagree, bad
 * chunk framing, a body cut short by the close).
 */
#include "http_conn.h"

#include "check_run.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static char buf[4096];
static struct http_answer answer;

/* Parses `text` (copied into buf) as received so far. */
static enum http_answer_state parse(const char *text, size_t len, int eof)
{
    memcpy(buf, text, len);
    return http_answer_parse(buf, len, eof, &answer);
}

static enum http_answer_state parse_all(const char *text, int eof)
{
    return parse(text, strlen(text), eof);
}

static const char *body(void)
{
    buf[answer.body_offset + answer.body_len] = '\0';
    return buf + answer.body_offset;
}

START_TEST(an_answer_with_a_length_is_read_whole)
{
    const char *text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       "content-length: 11\r\n\r\n{\"ok\":true}";
    ck_assert_int_eq(parse_all(text, 0), HTTP_ANSWER_DONE);
    ck_assert_int_eq(answer.status, 200);
    ck_assert_str_eq(body(), "{\"ok\":true}");
    ck_assert_uint_eq(answer.consumed, strlen(text));
    ck_assert_int_eq(answer.close, 0);
    /* every shorter prefix is incomplete, and with the connection closed there, bad */
    for (size_t cut = 0; cut < strlen(text); cut++) {
        ck_assert_int_eq(parse(text, cut, 0), HTTP_ANSWER_INCOMPLETE);
        ck_assert_int_eq(parse(text, cut, 1), HTTP_ANSWER_BAD);
    }
}
END_TEST

START_TEST(a_chunked_body_is_joined)
{
    const char *text = "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
    for (size_t cut = 0; cut < strlen(text); cut++)
        ck_assert_int_eq(parse(text, cut, 0), HTTP_ANSWER_INCOMPLETE);
    ck_assert_int_eq(parse_all(text, 0), HTTP_ANSWER_DONE);
    ck_assert_int_eq(answer.status, 503);
    ck_assert_str_eq(body(), "hello, world");
    ck_assert_uint_eq(answer.consumed, strlen(text));
}
END_TEST

START_TEST(close_ends_an_answer_without_a_length)
{
    const char *text = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npong";
    ck_assert_int_eq(parse_all(text, 0), HTTP_ANSWER_INCOMPLETE);
    ck_assert_int_eq(parse_all(text, 1), HTTP_ANSWER_DONE);
    ck_assert_str_eq(body(), "pong");
    ck_assert_int_eq(answer.close, 1);
    ck_assert_int_eq(
        parse_all("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 0),
        HTTP_ANSWER_DONE);
    ck_assert_int_eq(answer.close, 1);
    ck_assert_int_eq(parse_all("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0),
                     HTTP_ANSWER_DONE);
    ck_assert_int_eq(answer.close, 1); /* HTTP/1.0 closes unless it says keep-alive */
}
END_TEST

START_TEST(what_is_not_an_answer_is_refused)
{
    const char *bad[] = {
        "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n1x",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(parse_all(bad[i], 0) == HTTP_ANSWER_BAD, "accepted: %s", bad[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http_conn");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, an_answer_with_a_length_is_read_whole);
    tcase_add_test(tc, a_chunked_body_is_joined);
    tcase_add_test(tc, close_ends_an_answer_without_a_length);
    tcase_add_test(tc, what_is_not_an_answer_is_refused);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
