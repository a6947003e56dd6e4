/*
 * http_conn: the load generator's HTTP/1.1 client connection (see http_conn.h).
 *
 * A connection's read event is added once, when it opens, and stays (EV_PERSIST): an answer is
 * read as it arrives, and a server closing an idle connection is noticed at once. A request is
 * written straight away; only the rest of a partial write (or a connect still under way) waits
 * for a write event. Each request re-arms the read event's timeout, which changes a timer, not
 * the kernel's interest list.
 */
#define _GNU_SOURCE /* memmem */
#include "http_conn.h"

#include "xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define FIRST_BUFFER 4096 /* bytes; doubled as answers need */

struct http_conn {
    struct event_base *base;           /* the loop it runs on */
    struct sockaddr_storage addr;      /* the server */
    socklen_t addr_len;                /* its length */
    struct timeval timeout;            /* for each answer */
    int fd;                            /* -1 while closed */
    struct event *readable;            /* EV_READ | EV_PERSIST on fd, with the answer's timeout */
    struct event *writable;            /* EV_WRITE on fd: the rest of a request */
    struct event *failed;              /* reports a request that could not start, one pass later */
    char *out;                         /* the request in flight */
    size_t out_len, out_sent, out_cap; /* its bytes, those written, the buffer's size */
    char *in;                          /* what has arrived of its answer */
    size_t in_len, in_cap;             /* bytes received, the buffer's size (> in_len) */
    http_conn_cb cb;                   /* non-NULL while a request is in flight */
    void *arg;                         /* its argument */
};

/* ---- the answer parser ---- */

/* A header's value: after the colon, without surrounding blanks. */
static void header_value(const char *colon, const char *eol, const char **v, size_t *len)
{
    const char *start = colon + 1;
    while (start < eol && (*start == ' ' || *start == '\t'))
        start++;
    const char *end = eol;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *v = start, *len = (size_t)(end - start);
}

static int names_equal(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

static int value_has(const char *v, size_t len, const char *token)
{
    size_t n = strlen(token);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(v + i, token, n) == 0)
            return 1;
    return 0;
}

/*
 * Walks a chunked body of `avail` bytes: INCOMPLETE, BAD, or DONE with its joined length and the
 * bytes it took. With `join`, moves each chunk's data down behind the previous one (done only
 * once the body is known to be complete, so that a later walk reads the original bytes).
 */
static enum http_answer_state walk_chunks(char *body, size_t avail, int join, size_t *joined,
                                          size_t *used)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *eol = memmem(body + in, avail - in, "\r\n", 2);
        if (eol == NULL)
            return HTTP_ANSWER_INCOMPLETE;
        size_t size = 0, digits = 0;
        const char *p = body + in;
        for (; p < eol && isxdigit((unsigned char)*p); p++, digits++) {
            if (size > HTTP_CONN_MAX_ANSWER)
                return HTTP_ANSWER_BAD;
            size = size * 16 +
                   (size_t)(isdigit((unsigned char)*p) ? *p - '0' : (*p | 0x20) - 'a' + 10);
        }
        if (digits == 0 || (p < eol && *p != ';' && *p != ' ' && *p != '\t'))
            return HTTP_ANSWER_BAD;
        in = (size_t)(eol - body) + 2;
        if (size == 0) { /* the last chunk, then trailer lines up to an empty one */
            for (;;) {
                eol = memmem(body + in, avail - in, "\r\n", 2);
                if (eol == NULL)
                    return HTTP_ANSWER_INCOMPLETE;
                size_t line = (size_t)(eol - (body + in));
                in += line + 2;
                if (line == 0) {
                    *joined = out, *used = in;
                    return HTTP_ANSWER_DONE;
                }
            }
        }
        if (size > HTTP_CONN_MAX_ANSWER)
            return HTTP_ANSWER_BAD;
        if (avail - in < size + 2)
            return HTTP_ANSWER_INCOMPLETE;
        if (body[in + size] != '\r' || body[in + size + 1] != '\n')
            return HTTP_ANSWER_BAD;
        if (join)
            memmove(body + out, body + in, size);
        out += size, in += size + 2;
    }
}

enum http_answer_state http_answer_parse(char *buf, size_t len, int eof, struct http_answer *a)
{
    enum http_answer_state more = eof ? HTTP_ANSWER_BAD : HTTP_ANSWER_INCOMPLETE;
    if (len > HTTP_CONN_MAX_ANSWER)
        return HTTP_ANSWER_BAD;
    char *blank = memmem(buf, len, "\r\n\r\n", 4);
    if (blank == NULL)
        return more;
    size_t head = (size_t)(blank - buf) + 4;
    /* "HTTP/1.x NNN" then a space or the line's end */
    if (head < 16 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
        buf[8] != ' ' || !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
        !isdigit((unsigned char)buf[11]) || (buf[12] != ' ' && buf[12] != '\r'))
        return HTTP_ANSWER_BAD;
    int status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (status < 200 || status > 599)
        return HTTP_ANSWER_BAD; /* 1xx: never asked for (no Expect sent) */
    int close = buf[7] == '0', chunked = 0;
    long long length = -1;
    char *line = memchr(buf, '\n', head) + 1;
    while (line < buf + head - 2) {
        char *eol = memmem(line, (size_t)(buf + head - line), "\r\n", 2);
        char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon == NULL || colon == line)
            return HTTP_ANSWER_BAD;
        const char *v;
        size_t vlen;
        header_value(colon, eol, &v, &vlen);
        size_t nlen = (size_t)(colon - line);
        if (names_equal(line, nlen, "content-length")) {
            long long n = 0;
            if (vlen == 0 || vlen > 10)
                return HTTP_ANSWER_BAD;
            for (size_t i = 0; i < vlen; i++) {
                if (!isdigit((unsigned char)v[i]))
                    return HTTP_ANSWER_BAD;
                n = n * 10 + (v[i] - '0');
            }
            if (length >= 0 && n != length)
                return HTTP_ANSWER_BAD;
            length = n;
        } else if (names_equal(line, nlen, "transfer-encoding")) {
            chunked = value_has(v, vlen, "chunked");
        } else if (names_equal(line, nlen, "connection")) {
            if (value_has(v, vlen, "close"))
                close = 1;
            else if (value_has(v, vlen, "keep-alive"))
                close = 0;
        }
        line = eol + 2;
    }
    *a = (struct http_answer){.status = status, .body_offset = head, .close = close};
    if (status == 204 || status == 304) {
        a->consumed = head;
    } else if (chunked) {
        size_t joined, used;
        enum http_answer_state s = walk_chunks(buf + head, len - head, 0, &joined, &used);
        if (s != HTTP_ANSWER_DONE)
            return s == HTTP_ANSWER_BAD ? s : more;
        walk_chunks(buf + head, len - head, 1, &joined, &used);
        a->body_len = joined, a->consumed = head + used;
    } else if (length >= 0) {
        if (length > (long long)HTTP_CONN_MAX_ANSWER)
            return HTTP_ANSWER_BAD;
        if (len - head < (size_t)length)
            return more;
        a->body_len = (size_t)length, a->consumed = head + (size_t)length;
    } else { /* the body ends where the connection does */
        if (!eof)
            return HTTP_ANSWER_INCOMPLETE;
        a->body_len = len - head, a->consumed = len, a->close = 1;
    }
    return HTTP_ANSWER_DONE;
}

/* ---- the connection ---- */

static void conn_close(struct http_conn *c)
{
    if (c->fd < 0)
        return;
    event_free(c->readable);
    event_free(c->writable);
    c->readable = c->writable = NULL;
    close(c->fd);
    c->fd = -1;
    c->in_len = 0;
}

/* Ends the request in flight without an answer. */
static void fail(struct http_conn *c)
{
    http_conn_cb cb = c->cb;
    c->cb = NULL;
    conn_close(c);
    if (cb != NULL)
        cb(c->arg, 0, NULL, 0);
}

/* Writes what is left of the request; false on an error (the connection is then failed). */
static int flush(struct http_conn *c)
{
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_sent += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN)) {
            event_add(c->writable, NULL); /* connecting, or the socket's buffer is full */
            return 1;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return 0;
        }
    }
    return 1;
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct http_conn *c = arg;
    if (c->cb != NULL && !flush(c))
        fail(c);
}

/* An answer is complete: hands its body over, the buffer emptied first (the callback may send). */
static void deliver(struct http_conn *c, const struct http_answer *a)
{
    http_conn_cb cb = c->cb;
    c->cb = NULL;
    char *body = c->in + a->body_offset;
    body[a->body_len] = '\0';             /* in_cap > in_len >= body_offset + body_len */
    int extra = a->consumed != c->in_len; /* bytes nobody asked for: the connection is not sane */
    c->in_len = 0;
    if (a->close || extra)
        conn_close(c); /* the buffer stays: body is still valid */
    cb(c->arg, a->status, body, a->body_len);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    if (what & EV_TIMEOUT) {
        if (c->cb != NULL)
            fail(c); /* no whole answer in time; an idle connection's timer is left to lapse */
        return;
    }
    if (c->in_cap - c->in_len < 2) {
        if (c->in_cap > HTTP_CONN_MAX_ANSWER) {
            fail(c);
            return;
        }
        c->in_cap *= 2;
        c->in = xrealloc(c->in, c->in_cap);
    }
    ssize_t n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len - 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (c->cb == NULL) { /* idle: the server closed it, reset it, or sent what nobody asked */
        conn_close(c);
        return;
    }
    if (n < 0) {
        fail(c);
        return;
    }
    c->in_len += (size_t)n;
    struct http_answer a;
    switch (http_answer_parse(c->in, c->in_len, n == 0, &a)) {
    case HTTP_ANSWER_INCOMPLETE:
        return;
    case HTTP_ANSWER_BAD:
        fail(c);
        return;
    case HTTP_ANSWER_DONE:
        deliver(c, &a);
        return;
    }
}

static void on_failed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    fail(arg);
}

/* Opens the socket and starts connecting; false if that failed at once. */
static int conn_open(struct http_conn *c)
{
    c->fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return 0;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&c->addr, c->addr_len) != 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return 0;
    }
    c->readable = event_new(c->base, c->fd, EV_READ | EV_PERSIST, on_readable, c);
    c->writable = event_new(c->base, c->fd, EV_WRITE, on_writable, c);
    if (c->readable == NULL || c->writable == NULL)
        abort(); /* out of memory, as xmalloc */
    return 1;
}

struct http_conn *http_conn_new(struct event_base *base, const struct sockaddr *addr,
                                size_t addr_len, double timeout_s)
{
    struct http_conn *c = xcalloc(1, sizeof *c);
    c->base = base;
    memcpy(&c->addr, addr, addr_len < sizeof c->addr ? addr_len : sizeof c->addr);
    c->addr_len = (socklen_t)addr_len;
    c->timeout.tv_sec = (time_t)timeout_s;
    c->timeout.tv_usec = (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6);
    c->fd = -1;
    c->failed = evtimer_new(base, on_failed, c);
    if (c->failed == NULL)
        abort();
    c->in_cap = c->out_cap = FIRST_BUFFER;
    c->in = xmalloc(c->in_cap);
    c->out = xmalloc(c->out_cap);
    return c;
}

void http_conn_free(struct http_conn *c)
{
    if (c == NULL)
        return;
    conn_close(c);
    event_free(c->failed);
    free(c->in);
    free(c->out);
    free(c);
}

int http_conn_send(struct http_conn *c, const char *request, size_t len, http_conn_cb cb, void *arg)
{
    if (c->cb != NULL || cb == NULL)
        return -1;
    c->cb = cb, c->arg = arg;
    if (len > c->out_cap) {
        c->out_cap = len;
        c->out = xrealloc(c->out, c->out_cap);
    }
    memcpy(c->out, request, len);
    c->out_len = len, c->out_sent = 0;
    /* A failure here is reported one loop pass later, never from inside this call: a caller
     * that sends again from its callback does not recurse while a server is down. */
    if ((c->fd < 0 && !conn_open(c)) || !flush(c)) {
        conn_close(c);
        event_active(c->failed, EV_TIMEOUT, 1);
        return 0;
    }
    event_add(c->readable, &c->timeout); /* already added: this only re-arms its timer */
    return 0;
}
