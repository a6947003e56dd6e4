/*
 * http: the HTTP/1.1 server every layer uses, on libevent's evhttp.
 *
 * It owns what is the same for every request in every layer: routing by method and path
 * template, 404 and 405 (with Allow) as JSON, the body-size limit (413), connection timeouts,
 * the X-Request-ID header, one access-log line and one latency observation per request.
 * Handlers only see a `struct http_request` and answer it with one of the http_reply_* calls.
 *
 * Callback contract (STYLE rule 9): a handler is called once per matched request. It, or the
 * asynchronous flow it starts, must call exactly one http_reply_* for that request, also when
 * the client has already gone away; the reply frees the request (libevent 2.1 frees its
 * evhttp_request when a reply is sent on a closed connection), so the request must never be
 * touched afterwards. A flow keeps the request pointer until then and no longer.
 */
#ifndef LAYERS_HTTP_H
#define LAYERS_HTTP_H

#include "router.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct evbuffer;
struct metrics;

struct http_settings {
    const char *host;      /* address to listen on, e.g. "127.0.0.1" or "0.0.0.0" */
    int port;              /* TCP port */
    size_t max_body_bytes; /* larger bodies get 413 without being read */
    int timeout_s;         /* read/write/idle timeout of a client connection */
    int read_timeout_s;    /* a request must arrive whole this soon after its first byte */
    int max_connections;   /* client connections at once; more get 503 and are closed */
};

struct http_server;
struct http_request;

typedef void (*http_handler_fn)(struct http_request *req, void *arg);

struct http_server *http_server_create(struct event_base *base,
                                       const struct http_settings *settings,
                                       struct metrics *metrics);
void http_server_free(struct http_server *server);

/* Adds a route (before listening). `arg` is passed to the handler. */
void http_route(struct http_server *server, enum http_method method, const char *path_template,
                http_handler_fn handler, void *arg);

/* The route table (to compare it with the API document, api_docs.h). */
const struct router *http_server_router(const struct http_server *server);

bool http_server_listen(struct http_server *server, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Stops accepting connections; replies from now on carry `Connection: close`. */
void http_server_stop_accepting(struct http_server *server);

/* Requests received but not answered yet. */
size_t http_server_in_flight(const struct http_server *server);

/* ---- the request, for handlers ---- */

const char *http_request_id(const struct http_request *req);
enum http_method http_request_method(const struct http_request *req);

/* The i-th `{param}` segment, still percent-encoded. */
struct route_param http_request_param(const struct http_request *req, int i);

/* The request body as one contiguous block (valid until the reply). */
const char *http_request_body(struct http_request *req, size_t *len);

/* An input header, or NULL. */
const char *http_request_header(const struct http_request *req, const char *name);

/* The raw query string (after `?`, still percent-encoded), or NULL when there is none. */
const char *http_request_query(const struct http_request *req);

/* The `arg` its route was added with (a layer's context): the one way to reach the layer from
 * a request, also in callbacks that are given only the request. */
void *http_request_arg(const struct http_request *req);

/* Adds a response header (before the reply). */
void http_request_set_header(struct http_request *req, const char *name, const char *value);

/*
 * body as compact JSON into buf, as json_dumpb(body, buf, size, JSON_COMPACT |
 * JSON_REAL_PRECISION(15)) writes it, byte for byte: returns its length, larger than size when it
 * did not fit (then buf holds nothing usable), 0 when it cannot be dumped. Objects, arrays,
 * ASCII strings, integers, true, false and null are written here, in one pass; anything else
 * (a real, a string with non-ASCII bytes, deep nesting) by jansson, whose dumper took 19,400
 * instructions for a read's reply against 4,300 here (callgrind; it checks every object for
 * cycles through a hash table keyed by its printed address, and hands the text out in dozens of
 * pieces).
 */
size_t http_json_dump(const json_t *body, char *buf, size_t size)
    __attribute__((warn_unused_result));

/* Replies with `body` as compact JSON; takes ownership of body. Frees req. */
void http_reply_json(struct http_request *req, int status, json_t *body);

/* Replies with a prepared buffer (its content is moved). Frees req. */
void http_reply_buffer(struct http_request *req, int status, const char *content_type,
                       struct evbuffer *body);

/* {"detail": detail, "request_id": id}: for 5xx errors and 503 "X unavailable". Frees req. */
void http_reply_error(struct http_request *req, int status, const char *detail);

/* 422 {"detail": errors}; takes ownership of errors. Frees req. */
void http_reply_validation(struct http_request *req, json_t *errors);

#endif
