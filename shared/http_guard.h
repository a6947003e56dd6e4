/*
 * http_guard: refuses oversized request bodies before they are stored, with the contract's JSON.
 *
 * libevent 2.1 enforces evhttp_set_max_body_size itself, but answers with an HTML page and
 * offers no hook between reading the headers and reading the body. So each connection's input
 * passes through this small filter, which follows each request's framing just far enough to know
 * where its body ends, and rewrites a request whose body is over the limit into one that carries
 * a marker header instead, which the server's dispatcher answers with 413
 * {"detail":"Request body too large"}:
 *
 * - Content-Length over the limit: the header becomes `Content-Length: 0` plus the marker, at once.
 * - Transfer-Encoding: chunked carries no length up front, so the filter withholds the request
 *   while it reads the chunk framing and counts the data bytes. When the last chunk arrives within
 *   the limit, the request goes on to evhttp unchanged; when a chunk would take the body over it,
 *   evhttp gets the headers alone, the Transfer-Encoding replaced as above. (The marker cannot
 *   follow the body instead: libevent 2.1 throws trailer fields away.) What is withheld is at
 *   most the limit plus some framing, and evhttp would keep a whole body before the handler runs
 *   anyway; the cost is time: a chunked request with `Expect: 100-continue` gets no early
 *   100 Continue, and its client sends the body after its own wait (curl: 1 s).
 *
 * Framing that a proxy in front could read another way (request smuggling) is refused with
 * 400 and the connection closed: two Content-Length headers with different values, one that is
 * not plain digits (`+36`, `1e3`), Content-Length beside Transfer-Encoding, and this filter's
 * own marker headers sent by a client. The header block goes on without its framing headers,
 * with `Content-Length: 0` and the bad-framing marker instead, and everything after it on the
 * connection is dropped: nobody can know where the next request starts.
 *
 * The rest of a refused body is dropped as it arrives, never stored, and the connection stays
 * usable: closing it while the client is still sending would make the kernel reset the
 * connection, and the client would never read the 413. But only up to four times the limit (at
 * least 1 MiB): a client that goes on sending past that is not reading answers, and its
 * connection is closed (reading is shut down, which evhttp takes for the client's close). Everything else (bodies within the limit,
 * pipelined requests) passes through unchanged. Framing the filter cannot follow (a malformed
 * chunk line, an over-long header block) is passed on for libevent to refuse.
 */
#ifndef LAYERS_HTTP_GUARD_H
#define LAYERS_HTTP_GUARD_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct event_base;
struct bufferevent;

#define HTTP_GUARD_MARKER     "X-Layers-Body-Too-Large" /* the dispatcher answers 413 */
#define HTTP_GUARD_BAD_MARKER "X-Layers-Bad-Framing"    /* 400, and the connection closes */
#define HTTP_GUARD_BUSY_MARKER "X-Layers-Too-Many-Connections" /* 503, and it closes */

struct http_guard;

struct http_guard *http_guard_create(size_t max_body_bytes);
void http_guard_free(struct http_guard *guard);

/*
 * Moves what can be passed on from src to dst, rewriting or dropping as described above. Takes
 * the input in any split: an incomplete header block or framing line stays in src until the rest
 * arrives (bounded), body bytes never stay. Pure buffer work (unit-testable without sockets).
 */
void http_guard_filter(struct http_guard *guard, struct evbuffer *src, struct evbuffer *dst);

/* Whether the connection should be closed: a refused body went on past its allowance. */
bool http_guard_wants_close(const struct http_guard *guard);

/* From now on, the next request comes out marked HTTP_GUARD_BUSY_MARKER (no body), and
 * everything after it is dropped: a connection over the server's limit. */
void http_guard_refuse_busy(struct http_guard *guard);

/* Whether the filter is between requests with nothing of the next one seen yet. */
bool http_guard_idle(const struct http_guard *guard);

/*
 * One per HTTP server: the limit its connections' filters apply. Free it after evhttp_free
 * (which closes the connections, and with them their filters). NULL is a no-op for free.
 */
struct http_guard_hook;
/*
 * Besides the body limit, the hook enforces per connection:
 * - read_timeout_s: a request must arrive whole (header block and body) within this many
 *   seconds of its first byte; a slower client (slowloris: a header byte every few seconds) is
 *   closed. Idle time between requests is evhttp's timeout (HTTP_TIMEOUT_S).
 * - the input not yet parsed: HTTP_GUARD_INPUT_MAX or room for the largest request (a
 *   bufferevent read watermark).
 * - max_connections: past this many open connections, a new one is answered 503 "Too many
 *   connections" (its first request, marked) and closed; one that sends nothing is closed
 *   after read_timeout_s. Past HTTP_GUARD_BUSY_ALLOWANCE more, new connections are closed at
 *   once, unanswered: a flood of them cannot use up the descriptors.
 */
#define HTTP_GUARD_BUSY_ALLOWANCE 64
/* Unparsed input a connection may hold (at least; more when a request within the limits can be
 * larger: twice the body limit plus headers): past it, its socket is not read until evhttp
 * takes some (a client pipelining requests without reading the answers waits in its own send
 * buffer, not in the server's memory). */
#define HTTP_GUARD_INPUT_MAX (256 * 1024)
struct http_guard_hook *http_guard_hook_create(size_t max_body_bytes, int read_timeout_s,
                                               int max_connections);
/* Open connections now, and the most there have been. */
int http_guard_hook_connections(const struct http_guard_hook *hook);
void http_guard_hook_free(struct http_guard_hook *hook);

/*
 * An evhttp_set_bevcb callback (arg: the http_guard_hook): a socket bufferevent whose input
 * passes through a filter of its own, freed when evhttp closes the connection.
 */
struct bufferevent *http_guard_bufferevent(struct event_base *base, void *hook);

#endif
