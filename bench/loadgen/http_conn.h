/*
 * http_conn: one keep-alive HTTP/1.1 client connection of the load generator, on a libevent
 * loop, with one request in flight at a time.
 *
 * Why not evhttp's client, as the servers use evhttp's server: the load generator runs on the
 * same two cores as the servers it measures, so every microsecond it spends is taken from them.
 * evhttp's client builds a request object and a header list per request, parses every reply
 * header into a list, asks the kernel how much there is to read before each read (ioctl) and
 * turns the connection's read and write events off and on around every request: about 30 us of
 * CPU a request here, as much as the API of layer 6 spends on a write. This one writes a request
 * the caller formatted with one write() and reads its answer with one read(), its read event
 * armed once per connection: bench/results/2026-12-04-vm-loadgen-raw-client measured both.
 *
 * What it understands of an answer is what the servers of this project send and what a checked
 * benchmark needs: the status line, Content-Length or a chunked body, "Connection: close" (the
 * connection is then closed and the next request opens a new one), an answer ended by the
 * server closing the connection. Anything else (a malformed status line or header, an answer
 * larger than HTTP_CONN_MAX_ANSWER) is a failed request, as are a refused connection, a reset,
 * and no complete answer within the timeout; the connection is then closed.
 */
#ifndef LAYERS_BENCH_HTTP_CONN_H
#define LAYERS_BENCH_HTTP_CONN_H

#include <stddef.h>

struct event_base;
struct sockaddr;

#define HTTP_CONN_MAX_ANSWER (16u << 20) /* bytes of one answer, headers included */

/*
 * Called once per request: `status` 100..599 with the body (NUL terminated after its `len`
 * bytes, valid until the callback returns), or 0 when no complete answer came. The callback may
 * send the next request on the same connection.
 */
typedef void (*http_conn_cb)(void *arg, int status, const char *body, size_t len);

struct http_conn;

/* A connection to `addr` (copied), opened at its first request; `timeout_s` bounds the wait for
 * each answer (from the send to its last byte). */
struct http_conn *http_conn_new(struct event_base *base, const struct sockaddr *addr,
                                size_t addr_len, double timeout_s);
/* Closes the connection; an unanswered request's callback is not called. NULL is a no-op. */
void http_conn_free(struct http_conn *c);
/* Sends `len` bytes of a complete request (copied). Returns 0, and `cb` is called once, later
 * (a connection that cannot be opened or written fails one loop pass later, not inside this
 * call); -1, and `cb` is never called, when a request is already in flight or `cb` is NULL. */
int http_conn_send(struct http_conn *c, const char *request, size_t len, http_conn_cb cb,
                   void *arg);

/* ---- the answer parser, on its own for the unit tests (tests/check_http_conn.c) ---- */

enum http_answer_state {
    HTTP_ANSWER_INCOMPLETE, /* more bytes needed */
    HTTP_ANSWER_DONE,       /* a whole answer: the fields of struct http_answer are set */
    HTTP_ANSWER_BAD,        /* not an HTTP answer this client understands */
};

struct http_answer {
    int status;         /* 100..599 */
    size_t body_offset; /* where the body starts in the buffer (a chunked body is joined) */
    size_t body_len;    /* its bytes */
    size_t consumed;    /* bytes of the buffer the answer took */
    int close;          /* the server closes the connection after it */
};

/*
 * Reads one answer from the first `len` bytes of `buf` (received so far; `eof` when the
 * server has closed the connection, which ends an answer without a length). A chunked body is
 * joined in place, so `buf` may change when the answer is complete.
 */
enum http_answer_state http_answer_parse(char *buf, size_t len, int eof, struct http_answer *a);

#endif
