/*
 * router: route table and percent-decoding (see router.h).
 */
#include "router.h"

#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTER_MAX_ROUTES   32
#define ROUTER_MAX_SEGMENTS 8

struct route {
    enum http_method method;             /* the one method this route answers */
    char *template;                      /* "/read/{key}", for logs and metrics */
    char *segments[ROUTER_MAX_SEGMENTS]; /* split template; NULL entry = `{param}` */
    int segment_count;                   /* number of segments */
    void *data;                          /* the caller's handler */
};

struct router {
    struct route routes[ROUTER_MAX_ROUTES]; /* in registration order */
    int count;                              /* used entries */
};

struct router *router_create(void)
{
    return xcalloc(1, sizeof(struct router));
}

void router_free(struct router *router)
{
    if (router == NULL)
        return;
    for (int i = 0; i < router->count; i++) {
        free(router->routes[i].template);
        for (int s = 0; s < router->routes[i].segment_count; s++)
            free(router->routes[i].segments[s]);
    }
    free(router);
}

int router_add(struct router *router, enum http_method method, const char *path_template,
               void *data)
{
    if (router->count == ROUTER_MAX_ROUTES || path_template[0] != '/') {
        fprintf(stderr, "fatal: bad route %s\n", path_template);
        abort(); /* a programming error, found at start-up */
    }
    struct route *route = &router->routes[router->count];
    route->method = method;
    route->template = xstrdup(path_template);
    route->data = data;
    const char *p = path_template + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (route->segment_count == ROUTER_MAX_SEGMENTS)
            abort();
        bool is_param = len >= 2 && p[0] == '{' && p[len - 1] == '}';
        route->segments[route->segment_count++] = is_param ? NULL : xstrndup(p, len);
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return router->count++;
}

const char *router_template(const struct router *router, int route)
{
    return router->routes[route].template;
}

enum http_method router_method(const struct router *router, int route)
{
    return router->routes[route].method;
}

int router_count(const struct router *router)
{
    return router->count;
}

/* Compares a route's segments with the request path; collects params on success. */
static bool path_matches(const struct route *route, const char *path, struct route_match *out)
{
    const char *p = path + 1;
    out->param_count = 0;
    for (int s = 0; s < route->segment_count; s++) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        bool last = s == route->segment_count - 1;
        if (last != (slash == NULL))
            return false; /* request has fewer or more segments */
        if (route->segments[s] == NULL) {
            if (out->param_count < ROUTER_MAX_PARAMS)
                out->params[out->param_count++] = (struct route_param){p, len};
        } else if (strlen(route->segments[s]) != len || memcmp(route->segments[s], p, len) != 0) {
            return false;
        }
        if (slash)
            p = slash + 1;
    }
    return true;
}

enum router_result router_match(const struct router *router, enum http_method method,
                                const char *path, struct route_match *out)
{
    memset(out, 0, sizeof *out);
    out->route = -1;
    if (path[0] != '/')
        return ROUTER_NOT_FOUND;
    for (int i = 0; i < router->count; i++) {
        struct route_match candidate;
        memset(&candidate, 0, sizeof candidate);
        if (!path_matches(&router->routes[i], path, &candidate))
            continue;
        if (router->routes[i].method == method) {
            candidate.route = i;
            candidate.data = router->routes[i].data;
            *out = candidate;
            return ROUTER_MATCH;
        }
        out->allowed |= router->routes[i].method;
    }
    return out->allowed ? ROUTER_METHOD_NOT_ALLOWED : ROUTER_NOT_FOUND;
}

const char *http_method_name(enum http_method method)
{
    switch (method) {
    case HTTP_GET:
        return "GET";
    case HTTP_HEAD:
        return "HEAD";
    case HTTP_POST:
        return "POST";
    case HTTP_PUT:
        return "PUT";
    case HTTP_DELETE:
        return "DELETE";
    case HTTP_PATCH:
        return "PATCH";
    case HTTP_OPTIONS:
        return "OPTIONS";
    case HTTP_OTHER:
        break;
    }
    return "OTHER";
}

void router_format_allow(unsigned methods, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (unsigned bit = HTTP_GET; bit < HTTP_OTHER; bit <<= 1) {
        if (!(methods & bit))
            continue;
        int n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "",
                         http_method_name((enum http_method)bit));
        if (n < 0 || (size_t)n >= outlen - used)
            return;
        used += (size_t)n;
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool percent_decode(const char *in, size_t len, char *out, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] != '%') {
            out[o++] = in[i];
            continue;
        }
        if (i + 2 >= len)
            return false; /* truncated escape */
        int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
        if (hi < 0 || lo < 0)
            return false;
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    *out_len = o;
    return true;
}
