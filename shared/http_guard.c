/*
 * http_guard: refuses oversized bodies before storing them (see http_guard.h).
 *
 * Per connection the filter is a small state machine that follows HTTP/1.1 message framing just
 * far enough to find where each request ends; each state is a position in the byte stream:
 *
 *   HEADER -> BODY -> HEADER                                   a body of Content-Length bytes
 *   HEADER -> CHUNK_SIZE -> BODY -> CHUNK_END -> CHUNK_SIZE     a chunked body, chunk by chunk,
 *                        -> TRAILER -> HEADER                  up to its zero-size last chunk
 *   any -> PASS                                                framing it cannot follow
 *   HEADER -> DISCARD                                          framing read two ways: refused
 *
 * and `closing` is set when a refused body goes on past its allowance: everything is dropped
 * from then on, and the connection is closed.
 *
 * Alongside, `refused` says whether the current body's bytes are dropped, and `pending` holds a
 * chunked request, exactly as received, until its last chunk or its refusal (http_guard.h says
 * why; pending_limit bounds it).
 *
 * The framing is parsed as evhttp parses it (lines end in CRLF or a bare LF; Transfer-Encoding
 * must be exactly "chunked"), so both agree where a request ends. Malformed framing switches to
 * PASS, withheld bytes first: evhttp then refuses it itself and closes the connection, which is
 * all a broken client is owed. (libevent 2.1 answers bad chunk framing, and chunk extensions,
 * which it does not accept, with its HTML 413 rather than a 400.)
 */
#include "http_guard.h"

#include "xalloc.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Above evhttp's own header limit; also bounds one line of chunk framing. */
#define GUARD_MAX_HEADER_BYTES (20 * 1024)

enum guard_state {
    GUARD_HEADER,     /* at the start of a request: its header block */
    GUARD_BODY,       /* inside a Content-Length body or one chunk's data: body_left bytes */
    GUARD_CHUNK_SIZE, /* at a chunk-size line: hex size, optional ";extensions" */
    GUARD_CHUNK_END,  /* at the line break that closes a chunk's data */
    GUARD_TRAILER,    /* after the last chunk: trailer lines, then an empty line */
    GUARD_PASS,       /* framing it cannot follow: everything passes, for evhttp to judge */
    GUARD_DISCARD,    /* after an ambiguous request: everything is dropped until the close */
};

/* Of a refused body, this much is dropped while the connection stays usable (so that a client
 * still sending it can read the 413); past it, the connection is closed. */
#define GUARD_MIN_DROP_BYTES (1024 * 1024)

struct http_guard {
    size_t max_body;          /* MAX_BODY_BYTES */
    enum guard_state state;   /* see above */
    bool chunked;             /* the current body is chunked: BODY is one chunk's data */
    bool refused;             /* the current body is over the limit: its bytes are dropped */
    size_t body_left;         /* bytes of the current body or chunk still to come (GUARD_BODY) */
    size_t body_seen;         /* data bytes of the current chunked body so far */
    size_t dropped;           /* bytes of the current refused request dropped so far */
    bool closing;             /* dropped passed drop_limit(): the connection is to be closed */
    bool busy;                /* over the server's connection limit: the next request is refused */
    struct evbuffer *pending; /* the chunked request withheld so far, exactly as received */
    size_t head_len;          /* the length of its header block, at the start of pending */
};

/* Back to the start of a request, as on a new connection. */
static void guard_reset(struct http_guard *guard)
{
    guard->state = GUARD_HEADER;
    guard->chunked = false;
    guard->refused = false;
    guard->body_left = 0;
    guard->body_seen = 0;
    guard->dropped = 0;
    evbuffer_drain(guard->pending, evbuffer_get_length(guard->pending));
    guard->head_len = 0;
}

struct http_guard *http_guard_create(size_t max_body_bytes)
{
    struct http_guard *guard = xcalloc(1, sizeof *guard);
    guard->max_body = max_body_bytes;
    guard->pending = evbuffer_new();
    guard_reset(guard);
    return guard;
}

void http_guard_free(struct http_guard *guard)
{
    if (guard == NULL)
        return;
    evbuffer_free(guard->pending);
    free(guard);
}

/* ---- the header block ---- */

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

/* Whether a header line is the named field (case-insensitive name). */
static bool line_is_field(const char *line, const char *name)
{
    size_t name_len = strlen(name);
    return strncasecmp(line, name, name_len) == 0 && line[name_len] == ':';
}

/* Finds "Name: value" in a NUL-terminated header block; returns the value or NULL. */
static const char *header_value(const char *block, const char *name)
{
    const char *line = strchr(block, '\n'); /* skip the request line */
    while (line != NULL && line[1] != '\0') {
        line++;
        if (line_is_field(line, name)) {
            const char *value = line + strlen(name) + 1;
            while (*value == ' ' || *value == '\t')
                value++;
            return value;
        }
        line = strchr(line, '\n');
    }
    return NULL;
}

/* Whether a header value is exactly `word` (any case, trailing blanks allowed), as evhttp asks. */
static bool value_is(const char *value, const char *word)
{
    size_t len = strlen(word);
    if (strncasecmp(value, word, len) != 0)
        return false;
    value += len;
    while (*value == ' ' || *value == '\t' || *value == '\r')
        value++;
    return *value == '\n';
}

/* Skips blanks (not line breaks). */
static const char *skip_blanks(const char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    return text;
}

/* The value of a Content-Length as plain decimal digits (at most 18) up to the end of its line,
 * or -1 when it is anything else: a sign, a blank inside, a letter, nothing. */
static long long plain_length(const char *value)
{
    value = skip_blanks(value);
    long long n = 0;
    int digits = 0;
    for (; *value >= '0' && *value <= '9'; value++, digits++) {
        if (digits == 18)
            return -1;
        n = n * 10 + (*value - '0');
    }
    value = skip_blanks(value);
    if (*value == '\r')
        value++;
    return digits > 0 && *value == '\n' ? n : -1;
}

/*
 * Whether the framing of a header block (NUL-terminated) could be read two ways: Content-Length
 * twice with different values, or not plain digits, or beside Transfer-Encoding (RFC 9112 6.3
 * lets a server refuse that), or a marker header that only this filter may write.
 */
static bool framing_is_ambiguous(const char *block)
{
    long long length = -1;
    bool has_length = false, has_encoding = false;
    for (const char *line = strchr(block, '\n'); line != NULL && line[1] != '\0';
         line = strchr(line, '\n')) {
        line++;
        if (line_is_field(line, HTTP_GUARD_MARKER) || line_is_field(line, HTTP_GUARD_BAD_MARKER) ||
            line_is_field(line, HTTP_GUARD_BUSY_MARKER))
            return true;
        if (line_is_field(line, "Transfer-Encoding")) {
            has_encoding = true;
        } else if (line_is_field(line, "Content-Length")) {
            long long n = plain_length(line + strlen("Content-Length") + 1);
            if (n < 0 || (has_length && n != length))
                return true;
            length = n;
            has_length = true;
        }
    }
    return has_length && has_encoding;
}

/*
 * Passes on a refused request's header block (NUL-terminated, len bytes) without its body: every
 * Content-Length and Transfer-Encoding line goes, and `Content-Length: 0` plus the marker for
 * the dispatcher (HTTP_GUARD_MARKER or HTTP_GUARD_BAD_MARKER) take the place of the first.
 */
static void add_refused_header(struct evbuffer *dst, const char *block, size_t len,
                               const char *marker)
{
    bool marked = false;
    const char *line = block;
    while (line < block + len) {
        const char *end = memchr(line, '\n', (size_t)(block + len - line));
        end = end != NULL ? end + 1 : block + len; /* (the block ends with a line break) */
        if (line != block &&
            (line_is_field(line, "Content-Length") || line_is_field(line, "Transfer-Encoding"))) {
            if (!marked)
                evbuffer_add_printf(dst, "Content-Length: 0\r\n%s: 1\r\n", marker);
            marked = true;
        } else if (line != block && end == block + len) { /* the blank line: mark, if not yet */
            if (!marked)
                evbuffer_add_printf(dst, "Content-Length: 0\r\n%s: 1\r\n", marker);
            marked = true;
            evbuffer_add(dst, line, (size_t)(end - line));
        } else if (!line_is_field(line, HTTP_GUARD_MARKER) &&
                   !line_is_field(line, HTTP_GUARD_BAD_MARKER) &&
                   !line_is_field(line, HTTP_GUARD_BUSY_MARKER)) {
            evbuffer_add(dst, line, (size_t)(end - line));
        }
        line = end;
    }
}

/* Handles one complete header block of len bytes at the start of src. */
static void take_header(struct http_guard *guard, struct evbuffer *src, struct evbuffer *dst,
                        size_t len)
{
    char *block = xmalloc(len + 1);
    evbuffer_remove(src, block, len);
    block[len] = '\0';
    const char *encoding = header_value(block, "Transfer-Encoding");
    const char *length = header_value(block, "Content-Length");
    unsigned long long body = length ? strtoull(length, NULL, 10) : 0;

    guard_reset(guard);
    if (guard->busy) {
        add_refused_header(dst, block, len, HTTP_GUARD_BUSY_MARKER);
        guard->state = GUARD_DISCARD;
    } else if (framing_is_ambiguous(block)) {
        add_refused_header(dst, block, len, HTTP_GUARD_BAD_MARKER);
        guard->state = GUARD_DISCARD;
    } else if (encoding != NULL && value_is(encoding, "chunked")) {
        /* No length up front (a Content-Length is ignored): withheld, judged chunk by chunk. */
        evbuffer_add(guard->pending, block, len);
        guard->head_len = len;
        guard->chunked = true;
        guard->state = GUARD_CHUNK_SIZE;
    } else if (length != NULL && body > guard->max_body) {
        add_refused_header(dst, block, len, HTTP_GUARD_MARKER);
        guard->body_left = (size_t)body;
        guard->refused = true;
        guard->state = GUARD_BODY;
    } else {
        evbuffer_add(dst, block, len);
        guard->body_left = (size_t)body;
        guard->state = guard->body_left ? GUARD_BODY : GUARD_HEADER;
    }
    free(block);
}

/* ---- a chunked request, withheld ---- */

/*
 * The most a withheld chunked request may take: its header block, its data (at most the limit),
 * and as much again plus a long line for framing (chunk lines, extensions, trailers).
 */
static size_t pending_limit(const struct http_guard *guard)
{
    return guard->head_len + 2 * guard->max_body + GUARD_MAX_HEADER_BYTES;
}

/* The most of a refused request dropped before its connection is closed: 4 times the limit,
 * at least GUARD_MIN_DROP_BYTES. */
static size_t drop_limit(const struct http_guard *guard)
{
    size_t limit = guard->max_body <= SIZE_MAX / 4 ? guard->max_body * 4 : SIZE_MAX;
    return limit > GUARD_MIN_DROP_BYTES ? limit : GUARD_MIN_DROP_BYTES;
}

/* Refuses the withheld chunked request: evhttp gets its header block, marked and bodiless. */
static void refuse_chunked(struct http_guard *guard, struct evbuffer *dst)
{
    char *block = xmalloc(guard->head_len + 1);
    evbuffer_remove(guard->pending, block, guard->head_len);
    block[guard->head_len] = '\0';
    add_refused_header(dst, block, guard->head_len, HTTP_GUARD_MARKER);
    free(block);
    evbuffer_drain(guard->pending, evbuffer_get_length(guard->pending));
    guard->refused = true;
}

/*
 * Takes the first n bytes of src as the current request's: passed on, withheld with the rest of
 * a chunked request, or dropped when the request is refused.
 */
static void forward(struct http_guard *guard, struct evbuffer *src, struct evbuffer *dst, size_t n)
{
    if (guard->refused) {
        evbuffer_drain(src, n);
        guard->dropped += n;
        if (guard->dropped > drop_limit(guard))
            guard->closing = true; /* no honest client sends this much after a refusal */
    } else if (guard->chunked) {
        evbuffer_remove_buffer(src, guard->pending, n);
        if (evbuffer_get_length(guard->pending) > pending_limit(guard))
            refuse_chunked(guard, dst); /* framing far beyond any honest client's */
    } else {
        evbuffer_remove_buffer(src, dst, n);
    }
}

/*
 * Parses a chunk-size line (without its line break): hex digits, then optionally blanks and
 * ";extensions", which are skipped. false when it is not one.
 */
static bool parse_chunk_size(const char *text, size_t len, size_t *size)
{
    size_t i = 0, value = 0;
    for (; i < len && isxdigit((unsigned char)text[i]); i++) {
        if (value > SIZE_MAX / 16)
            return false; /* too long to be a size */
        int c = tolower((unsigned char)text[i]);
        value = value * 16 + (size_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
    }
    if (i == 0)
        return false;
    while (i < len && (text[i] == ' ' || text[i] == '\t'))
        i++;
    if (i < len && text[i] != ';')
        return false;
    *size = value;
    return true;
}

/*
 * Handles one complete framing line of len bytes (text_len without its line break) at the start
 * of src, in state CHUNK_SIZE, CHUNK_END or TRAILER.
 */
static void take_framing_line(struct http_guard *guard, struct evbuffer *src, struct evbuffer *dst,
                              size_t text_len, size_t len)
{
    const char *text = (const char *)evbuffer_pullup(src, (ev_ssize_t)len);
    size_t size;
    switch (guard->state) {
    case GUARD_CHUNK_SIZE:
        if (!parse_chunk_size(text, text_len, &size)) {
            guard->state = GUARD_PASS;
            return;
        }
        if (!guard->refused && size > guard->max_body - guard->body_seen)
            refuse_chunked(guard, dst); /* this chunk would take the body over the limit */
        forward(guard, src, dst, len);
        if (!guard->refused)
            guard->body_seen += size;
        guard->body_left = size;
        guard->state = size > 0 ? GUARD_BODY : GUARD_TRAILER;
        return;
    case GUARD_CHUNK_END:
        if (text_len != 0) {
            guard->state = GUARD_PASS; /* the data was longer than its size said */
            return;
        }
        forward(guard, src, dst, len);
        guard->state = GUARD_CHUNK_SIZE;
        return;
    case GUARD_TRAILER:
        forward(guard, src, dst, len);
        if (text_len == 0) { /* the request is complete: within the limit, it goes on whole */
            evbuffer_add_buffer(dst, guard->pending);
            guard->state = GUARD_HEADER;
        }
        return;
    default:
        return;
    }
}

/* ---- the filter ---- */

/* Takes what the current state can take from src; false when it must wait for more input. */
static bool take_some(struct http_guard *guard, struct evbuffer *src, struct evbuffer *dst)
{
    size_t available = evbuffer_get_length(src);
    if (guard->closing) {
        evbuffer_drain(src, available);
        return true;
    }
    switch (guard->state) {
    case GUARD_PASS:
        evbuffer_add_buffer(dst, guard->pending); /* a withheld request first, unchanged */
        evbuffer_add_buffer(dst, src);
        return true;
    case GUARD_DISCARD:
        evbuffer_drain(src, available);
        return true;
    case GUARD_BODY: {
        size_t n = available < guard->body_left ? available : guard->body_left;
        forward(guard, src, dst, n);
        guard->body_left -= n;
        if (guard->body_left == 0)
            guard->state = guard->chunked ? GUARD_CHUNK_END : GUARD_HEADER;
        return true;
    }
    case GUARD_HEADER: {
        size_t len = header_block_length(src);
        if (len > 0)
            take_header(guard, src, dst, len);
        else if (available > GUARD_MAX_HEADER_BYTES)
            guard->state = GUARD_PASS; /* evhttp will refuse it */
        return len > 0 || guard->state == GUARD_PASS;
    }
    case GUARD_CHUNK_SIZE:
    case GUARD_CHUNK_END:
    case GUARD_TRAILER: {
        size_t eol_len = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(src, NULL, &eol_len, EVBUFFER_EOL_CRLF);
        if (eol.pos >= 0 && (size_t)eol.pos <= GUARD_MAX_HEADER_BYTES)
            take_framing_line(guard, src, dst, (size_t)eol.pos, (size_t)eol.pos + eol_len);
        else if (available > GUARD_MAX_HEADER_BYTES)
            guard->state = GUARD_PASS; /* no sane framing line is this long */
        return eol.pos >= 0 || guard->state == GUARD_PASS;
    }
    }
    return false;
}

void http_guard_filter(struct http_guard *guard, struct evbuffer *src, struct evbuffer *dst)
{
    while (evbuffer_get_length(src) > 0 && take_some(guard, src, dst))
        continue;
}

bool http_guard_wants_close(const struct http_guard *guard)
{
    return guard->closing;
}

void http_guard_refuse_busy(struct http_guard *guard)
{
    guard->busy = true;
}

bool http_guard_idle(const struct http_guard *guard)
{
    return guard->state == GUARD_HEADER;
}

/* ---- attaching the filter to evhttp's connections ----
 *
 * evhttp reads each connection through a bufferevent that evhttp_set_bevcb lets us create. We
 * create an ordinary socket bufferevent (so replies, keep-alive and closing work exactly as
 * without us) and hook its input buffer: every time the socket appends bytes, the callback takes
 * the new bytes out, passes them through http_guard_filter and puts back what may be read.
 *
 * The filter state lives with the connection: allocated with its bufferevent, freed by the
 * connection's close callback (evhttp_connection_set_closecb, which evhttp calls once when it
 * closes or frees a server-side connection). The connection does not exist yet inside the
 * bevcb callback (evhttp creates it right after, with our bufferevent), so the close callback is
 * set from an event activated there: it runs later in the same pass of the event loop, after
 * evhttp has made the connection and before the loop looks at the socket again, so no byte, and
 * no close, can come first. evhttp hands its connection to the bufferevent's callbacks as their
 * argument, which is how we find it (bufferevent_getcb).
 */

struct http_guard_hook {
    size_t max_body;          /* MAX_BODY_BYTES */
    int read_timeout_s;       /* HTTP_READ_TIMEOUT_S */
    int max_connections;      /* HTTP_MAX_CONNECTIONS */
    int connections;          /* open now */
    struct evbuffer *scratch; /* temporary holder for bytes already passed (one loop thread) */
};

struct guard_conn {
    struct http_guard_hook *hook;  /* the server's limit and scratch buffer */
    struct bufferevent *bev;       /* the connection's bufferevent (evhttp owns it) */
    struct http_guard *guard;      /* its filter state */
    struct evbuffer *held;         /* new bytes taken out of the input, waiting to be filtered */
    struct evbuffer_cb_entry *cb;  /* our hook on the input buffer */
    struct event *bind;            /* one-shot: sets the close callback once evhttp is ready */
    bool busy;                     /* inside our own buffer surgery: ignore the callbacks it causes */
    bool shut;                     /* reading was shut down: evhttp will close it */
    struct event *deadline;        /* the current request's read deadline (read_timeout_s) */
    bool guard_busy;               /* over the connection limit: the deadline runs from connect */
};

static void conn_free(struct guard_conn *conn)
{
    conn->hook->connections--;
    evbuffer_remove_cb_entry(bufferevent_get_input(conn->bev), conn->cb);
    if (conn->bind != NULL)
        event_free(conn->bind);
    event_free(conn->deadline);
    http_guard_free(conn->guard);
    evbuffer_free(conn->held);
    free(conn);
}

/* evhttp closes or frees the connection: its filter goes with it. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    conn_free(arg);
}

static void on_bind(evutil_socket_t fd, short what, void *arg)
{
    struct guard_conn *conn = arg;
    (void)fd, (void)what;
    event_free(conn->bind);
    conn->bind = NULL;
    void *evcon = NULL;
    bufferevent_getcb(conn->bev, NULL, NULL, NULL, &evcon);
    if (evcon == NULL) { /* evhttp did not take the bufferevent (out of memory): nothing to hook */
        conn_free(conn);
        return;
    }
    evhttp_connection_set_closecb(evcon, on_close, conn);
    if (conn->hook->connections > conn->hook->max_connections + HTTP_GUARD_BUSY_ALLOWANCE)
        evhttp_connection_free(evcon); /* far past the limit: closed unanswered (on_close frees) */
}

/* Stops reading the connection: evhttp sees the end of its input, as if the client had closed,
 * and closes the connection its usual way (answers under way included). */
static void shut_reading(struct guard_conn *conn)
{
    if (conn->shut)
        return;
    conn->shut = true;
    event_del(conn->deadline);
    shutdown(bufferevent_getfd(conn->bev), SHUT_RD);
}

/* The request did not arrive whole within read_timeout_s (or nothing came at all on a
 * connection over the limit). */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    shut_reading(arg);
}

/* Arms the read deadline when a request has begun, disarms it when the filter is between
 * requests again. */
static void watch_deadline(struct guard_conn *conn)
{
    bool reading = !http_guard_idle(conn->guard) || evbuffer_get_length(conn->held) > 0;
    if (reading && !event_pending(conn->deadline, EV_TIMEOUT, NULL)) {
        struct timeval t = {conn->hook->read_timeout_s, 0};
        event_add(conn->deadline, &t);
    } else if (!reading && !conn->guard_busy) {
        event_del(conn->deadline);
    }
}

static void on_input(struct evbuffer *input, const struct evbuffer_cb_info *info, void *arg)
{
    struct guard_conn *conn = arg;
    if (info->n_added == 0 || conn->busy)
        return; /* evhttp consumed bytes, or our own moves: nothing new to look at */
    conn->busy = true;
    /* The input holds [bytes already passed][the n_added new ones]: take the new ones out. */
    struct evbuffer *scratch = conn->hook->scratch;
    size_t passed = evbuffer_get_length(input) - info->n_added;
    evbuffer_remove_buffer(input, scratch, passed);
    evbuffer_add_buffer(conn->held, input);
    evbuffer_add_buffer(input, scratch);
    http_guard_filter(conn->guard, conn->held, input);
    conn->busy = false;
    if (http_guard_wants_close(conn->guard)) /* past a refused body's allowance */
        shut_reading(conn);
    else if (!conn->shut)
        watch_deadline(conn);
}

struct bufferevent *http_guard_bufferevent(struct event_base *base, void *arg)
{
    struct http_guard_hook *hook = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    struct guard_conn *conn = xcalloc(1, sizeof *conn);
    conn->hook = hook;
    conn->bev = bev;
    conn->guard = http_guard_create(hook->max_body);
    conn->held = evbuffer_new();
    conn->cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, conn);
    /* While an answer waits to leave, evhttp keeps reading (to notice a close) but parses
     * nothing: a client that pipelines and never reads would pile up its requests here. Past
     * this much unparsed input, the socket is not read until evhttp has taken some. evhttp
     * takes a Content-Length body only once it is whole, and the filter passes a chunked one
     * whole: the mark leaves room for the largest request the filter lets through. */
    size_t largest = 2 * hook->max_body + 2 * GUARD_MAX_HEADER_BYTES;
    bufferevent_setwatermark(bev, EV_READ, 0,
                             largest > HTTP_GUARD_INPUT_MAX ? largest : HTTP_GUARD_INPUT_MAX);
    conn->bind = event_new(base, -1, 0, on_bind, conn);
    conn->deadline = evtimer_new(base, on_deadline, conn);
    event_active(conn->bind, EV_TIMEOUT, 0);
    if (++hook->connections > hook->max_connections) {
        /* Over the limit: its first request is answered 503 and it closes; if it sends
         * nothing, the deadline closes it. */
        http_guard_refuse_busy(conn->guard);
        conn->guard_busy = true;
        struct timeval t = {hook->read_timeout_s, 0};
        event_add(conn->deadline, &t);
    }
    return bev;
}

struct http_guard_hook *http_guard_hook_create(size_t max_body_bytes, int read_timeout_s,
                                               int max_connections)
{
    struct http_guard_hook *hook = xcalloc(1, sizeof *hook);
    hook->max_body = max_body_bytes;
    hook->read_timeout_s = read_timeout_s;
    hook->max_connections = max_connections;
    hook->scratch = evbuffer_new();
    return hook;
}

int http_guard_hook_connections(const struct http_guard_hook *hook)
{
    return hook->connections;
}

void http_guard_hook_free(struct http_guard_hook *hook)
{
    if (hook == NULL)
        return;
    evbuffer_free(hook->scratch);
    free(hook);
}
