/*
 * http_guard: refuses oversized bodies before reading them (see http_guard.h).
 *
 * Per connection the filter is in one of four states: reading a HEADER block, passing a BODY
 * of known length, DISCARDing the body of a refused request as it arrives, or PASSing
 * everything (chunked bodies, or a header block too big to judge).
 */
#include "http_guard.h"

#include "xalloc.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GUARD_MAX_HEADER_BYTES (20 * 1024) /* above evhttp's own header limit */

enum guard_state { GUARD_HEADER, GUARD_BODY, GUARD_DISCARD, GUARD_PASS };

struct http_guard {
    size_t max_body;                /* MAX_BODY_BYTES */
    enum guard_state state;         /* see above */
    size_t body_left;               /* bytes of the current body still to pass (GUARD_BODY) */
    struct bufferevent *underlying; /* the socket; outlives the filter until its output drains */
};

struct http_guard *http_guard_create(size_t max_body_bytes)
{
    struct http_guard *guard = xcalloc(1, sizeof *guard);
    guard->max_body = max_body_bytes;
    return guard;
}

void http_guard_free(struct http_guard *guard)
{
    free(guard);
}

/* Length of the header block at the start of src (through the blank line), or 0. */
static size_t header_block_length(struct evbuffer *src)
{
    struct evbuffer_ptr crlf = evbuffer_search(src, "\r\n\r\n", 4, NULL);
    struct evbuffer_ptr lf = evbuffer_search(src, "\n\n", 2, NULL);
    size_t best = 0;
    if (crlf.pos >= 0)
        best = (size_t)crlf.pos + 4;
    if (lf.pos >= 0 && (best == 0 || (size_t)lf.pos + 2 < best))
        best = (size_t)lf.pos + 2;
    return best;
}

/* Finds "Name: value" in a header block (case-insensitive name); returns the value or NULL. */
static const char *header_value(const char *block, const char *name, size_t *line_start,
                                size_t *line_end)
{
    size_t name_len = strlen(name);
    const char *line = strchr(block, '\n'); /* skip the request line */
    while (line != NULL && line[1] != '\0') {
        line++;
        const char *end = strchr(line, '\n');
        if (end == NULL)
            return NULL;
        if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            *line_start = (size_t)(line - block);
            *line_end = (size_t)(end - block) + 1;
            const char *value = line + name_len + 1;
            while (*value == ' ' || *value == '\t')
                value++;
            return value;
        }
        line = end;
    }
    return NULL;
}

/* Handles one complete header block of len bytes at the start of src. */
static void take_header(struct http_guard *guard, struct evbuffer *src, struct evbuffer *dst,
                        size_t len)
{
    char *block = xmalloc(len + 1);
    evbuffer_remove(src, block, len);
    block[len] = '\0';
    size_t start, end;
    const char *chunked = header_value(block, "Transfer-Encoding", &start, &end);
    const char *length = header_value(block, "Content-Length", &start, &end);
    unsigned long long body = length ? strtoull(length, NULL, 10) : 0;

    if (chunked != NULL) {
        guard->state = GUARD_PASS; /* libevent's own max_body_size applies */
        evbuffer_add(dst, block, len);
    } else if (length != NULL && body > guard->max_body) {
        /* Same request line and headers, but no body, and a marker for the dispatcher. */
        evbuffer_add(dst, block, start);
        evbuffer_add_printf(dst, "Content-Length: 0\r\n" HTTP_GUARD_MARKER ": 1\r\n");
        evbuffer_add(dst, block + end, len - end);
        guard->body_left = (size_t)body;
        guard->state = GUARD_DISCARD;
    } else {
        evbuffer_add(dst, block, len);
        guard->body_left = (size_t)body;
        guard->state = guard->body_left ? GUARD_BODY : GUARD_HEADER;
    }
    free(block);
}

void http_guard_filter(struct http_guard *guard, struct evbuffer *src, struct evbuffer *dst)
{
    for (;;) {
        size_t available = evbuffer_get_length(src);
        if (available == 0)
            return;
        switch (guard->state) {
        case GUARD_PASS:
            evbuffer_add_buffer(dst, src);
            return;
        case GUARD_DISCARD: {
            /* The refused body streams past, never stored; then the next request. */
            size_t n = available < guard->body_left ? available : guard->body_left;
            evbuffer_drain(src, n);
            guard->body_left -= n;
            if (guard->body_left == 0)
                guard->state = GUARD_HEADER;
            break;
        }
        case GUARD_BODY: {
            size_t n = available < guard->body_left ? available : guard->body_left;
            evbuffer_remove_buffer(src, dst, n);
            guard->body_left -= n;
            if (guard->body_left == 0)
                guard->state = GUARD_HEADER;
            break;
        }
        case GUARD_HEADER: {
            size_t len = header_block_length(src);
            if (len == 0) {
                if (available > GUARD_MAX_HEADER_BYTES)
                    guard->state = GUARD_PASS; /* evhttp will refuse it */
                else
                    return; /* wait for the rest of the header */
                break;
            }
            take_header(guard, src, dst, len);
            break;
        }
        }
    }
}

/* ---- attaching the filter to evhttp's connections ----
 *
 * evhttp reads each connection through a bufferevent that evhttp_set_bevcb lets us create. We
 * create an ordinary socket bufferevent (so replies, keep-alive and closing work exactly as
 * without us) and hook its input buffer: every time the socket appends bytes, the callback takes
 * the new bytes out, passes them through http_guard_filter and puts back what may be read.
 *
 * The per-connection state lives in a table indexed by file descriptor: libevent gives an
 * evbuffer callback one pointer (the bufferevent here) and no hook when a connection is freed, so
 * state cannot be allocated per connection. A row is reset when a new bufferevent shows up on its
 * descriptor; the table is the one file-level variable of the core (one HTTP server a process).
 */

struct guard_row {
    struct bufferevent *bev;  /* the connection this row currently describes */
    struct http_guard *guard; /* its filter state (allocated once per row, reused) */
    struct evbuffer *held;    /* new bytes taken out of the input, waiting to be filtered */
    bool busy;                /* inside our own buffer surgery: ignore the callbacks it causes */
};

static struct {
    size_t max_body;          /* MAX_BODY_BYTES */
    struct guard_row *rows;   /* indexed by file descriptor */
    size_t count;             /* allocated rows */
    struct evbuffer *scratch; /* temporary holder for bytes already passed */
} guards;

static struct guard_row *row_for(struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= guards.count) {
        size_t count = (size_t)fd * 2 + 16;
        guards.rows = xrealloc(guards.rows, count * sizeof *guards.rows);
        memset(guards.rows + guards.count, 0, (count - guards.count) * sizeof *guards.rows);
        guards.count = count;
    }
    struct guard_row *row = &guards.rows[fd];
    if (row->guard == NULL) {
        row->guard = http_guard_create(guards.max_body);
        row->held = evbuffer_new();
    }
    if (row->bev != bev) { /* a new connection on this descriptor: start afresh */
        row->bev = bev;
        row->guard->state = GUARD_HEADER;
        row->guard->body_left = 0;
        evbuffer_drain(row->held, evbuffer_get_length(row->held));
    }
    return row;
}

static void on_input(struct evbuffer *input, const struct evbuffer_cb_info *info, void *arg)
{
    if (info->n_added == 0)
        return; /* evhttp consumed bytes: nothing new to look at */
    struct guard_row *row = row_for(arg);
    if (row == NULL || row->busy)
        return;
    row->busy = true;
    /* The input holds [bytes already passed][the n_added new ones]: take the new ones out. */
    size_t passed = evbuffer_get_length(input) - info->n_added;
    evbuffer_remove_buffer(input, guards.scratch, passed);
    evbuffer_add_buffer(row->held, input);
    evbuffer_add_buffer(input, guards.scratch);
    http_guard_filter(row->guard, row->held, input);
    row->busy = false;
}

struct bufferevent *http_guard_bufferevent(struct event_base *base, void *arg)
{
    (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    /* A row still naming this address describes a freed connection: forget it. */
    for (size_t i = 0; i < guards.count; i++)
        if (guards.rows[i].bev == bev)
            guards.rows[i].bev = NULL;
    evbuffer_add_cb(bufferevent_get_input(bev), on_input, bev);
    return bev;
}

void http_guard_init(size_t max_body_bytes)
{
    guards.max_body = max_body_bytes;
    if (guards.scratch == NULL)
        guards.scratch = evbuffer_new();
}

void http_guard_cleanup(void)
{
    for (size_t i = 0; i < guards.count; i++) {
        http_guard_free(guards.rows[i].guard);
        if (guards.rows[i].held)
            evbuffer_free(guards.rows[i].held);
    }
    free(guards.rows);
    if (guards.scratch)
        evbuffer_free(guards.scratch);
    memset(&guards, 0, sizeof guards);
}
