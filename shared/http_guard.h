/*
 * http_guard: refuses oversized request bodies before they are read, with the contract's JSON.
 *
 * libevent 2.1 enforces evhttp_set_max_body_size itself, but answers with an HTML page and
 * offers no hook between reading the headers and reading the body. So each connection's input
 * passes through this small filter, which looks at each request's header block: when
 * Content-Length exceeds the limit, it rewrites the header to `Content-Length: 0` plus a marker
 * header, and the server's dispatcher answers 413 {"detail":"Request body too large"} at once.
 * The body is dropped as it arrives, never stored, and the connection stays usable: closing it
 * while the client is still sending would make the kernel reset the connection, and the client
 * would never read the 413. Everything else (including pipelined requests) passes through. Chunked
 * bodies cannot be judged from the header; libevent's own limit still stops them (with its own HTML
 * 413).
 */
#ifndef LAYERS_HTTP_GUARD_H
#define LAYERS_HTTP_GUARD_H

#include <stddef.h>

struct evbuffer;
struct event_base;
struct bufferevent;

#define HTTP_GUARD_MARKER "X-Layers-Body-Too-Large"

struct http_guard;

struct http_guard *http_guard_create(size_t max_body_bytes);
void http_guard_free(struct http_guard *guard);

/*
 * Moves what can be passed on from src to dst, rewriting or dropping as described above.
 * Pure buffer work (unit-testable without sockets).
 */
void http_guard_filter(struct http_guard *guard, struct evbuffer *src, struct evbuffer *dst);

/* Sets the limit for http_guard_bufferevent; http_guard_cleanup frees the connection table. */
void http_guard_init(size_t max_body_bytes);
void http_guard_cleanup(void);

/* An evhttp_set_bevcb callback: a socket bufferevent whose input passes through the filter. */
struct bufferevent *http_guard_bufferevent(struct event_base *base, void *arg);

#endif
