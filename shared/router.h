/*
 * router: the route table, and percent-decoding of path segments.
 *
 * A route is a method and a path template whose segments are literals or `{param}` (one whole
 * segment each: `/read/{key}` matches `/read/a%2Fb` but not `/read/a/b`). Matching is pure
 * string work with no sockets, so it is unit-tested directly. The result distinguishes
 * "no such path" (404) from "path exists, other method" (405, with the methods for `Allow`).
 */
#ifndef LAYERS_ROUTER_H
#define LAYERS_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#define ROUTER_MAX_PARAMS 4

enum http_method {
    HTTP_GET = 1 << 0,
    HTTP_HEAD = 1 << 1,
    HTTP_POST = 1 << 2,
    HTTP_PUT = 1 << 3,
    HTTP_DELETE = 1 << 4,
    HTTP_PATCH = 1 << 5,
    HTTP_OPTIONS = 1 << 6,
    HTTP_OTHER = 1 << 7, /* any method we do not route (CONNECT, TRACE...) */
};

enum router_result { ROUTER_MATCH, ROUTER_NOT_FOUND, ROUTER_METHOD_NOT_ALLOWED };

struct route_param {
    const char *raw; /* the segment as sent, still percent-encoded; points into the path */
    size_t len;      /* its length */
};

struct route_match {
    int route;                                    /* index returned by router_add, on a match */
    void *data;                                   /* the pointer given to router_add */
    struct route_param params[ROUTER_MAX_PARAMS]; /* `{param}` segments, in template order */
    int param_count;                              /* how many of params are set */
    unsigned allowed;                             /* on 405: the methods that path accepts */
};

struct router;

struct router *router_create(void);
void router_free(struct router *router);

/* Adds a route; returns its index (0, 1, ...). Templates are fixed at start-up. */
int router_add(struct router *router, enum http_method method, const char *path_template,
               void *data);

/* Matches a request path (without the query string). */
enum router_result router_match(const struct router *router, enum http_method method,
                                const char *path, struct route_match *out);

const char *router_template(const struct router *router, int route);
enum http_method router_method(const struct router *router, int route);
/* Routes added so far (route indexes are 0 .. count-1). */
int router_count(const struct router *router);

/* Writes the Allow header value for a method mask, e.g. "GET, HEAD". */
void router_format_allow(unsigned methods, char *out, size_t outlen);

const char *http_method_name(enum http_method method);

/*
 * Percent-decodes in[0..len) into out (which has room for len + 1 bytes) and NUL-terminates it.
 * Returns false on a malformed escape ("%zz", "%4"). `+` is left as is: it means space only
 * in query strings, not in paths. The result may contain any byte, NUL included: callers
 * validate it (see validate.h).
 */
bool percent_decode(const char *in, size_t len, char *out, size_t *out_len)
    __attribute__((warn_unused_result));

#endif
