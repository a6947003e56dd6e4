/*
 * http: the HTTP/1.1 server on evhttp (see http.h for the reply contract).
 */
#include "http.h"

#include "http_guard.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h> /* the request's HTTP version */
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_ROUTES       32
#define MAX_HEADER_BYTES (16 * 1024)
#define REQUEST_ID_MAX   64

struct route_target {
    http_handler_fn handler; /* the layer's function */
    void *arg;               /* its context */
    int metrics_route;       /* index of the route's label in metrics */
};

struct http_server {
    struct event_base *base;                 /* the server's event loop */
    struct evhttp *evhttp;                   /* libevent's HTTP server */
    struct evhttp_bound_socket *listener;    /* NULL once we stop accepting */
    struct router *router;                   /* path templates -> route_target */
    struct route_target targets[MAX_ROUTES]; /* one per route */
    int target_count;                        /* used entries of targets */
    struct metrics *metrics;                 /* request counters and histograms */
    struct http_settings settings;           /* copy; host is owned */
    size_t in_flight;                        /* requests not answered yet */
    bool draining;                           /* shutting down: close connections after reply */
    bool in_dispatch;                        /* inside dispatch(): replies go the usual way */
    uint64_t id_state;                       /* request id generator state */
    int unmatched_route;                     /* metrics label for 404s, 405s and 413s */
    struct http_guard_hook *guard;           /* refuses oversized bodies on every connection */
};

struct http_request {
    struct evhttp_request *evreq; /* libevent's request; freed by libevent after the reply */
    struct http_server *server;   /* the server it arrived on */
    struct route_match match;     /* route and `{param}` segments */
    enum http_method method;      /* parsed method */
    int metrics_route;            /* label index for the latency histogram */
    struct timespec started;      /* monotonic arrival time */
    char id[REQUEST_ID_MAX + 1];  /* X-Request-ID */
};

/* ---- request ids ---- */

static bool request_id_is_sane(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len > REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == ':';
        if (!ok)
            return false;
    }
    return true;
}

/* splitmix64: a cheap, well-mixed sequence; ids only need to be unique, not secret. */
static uint64_t next_id(struct http_server *server)
{
    uint64_t z = (server->id_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void assign_request_id(struct http_request *req)
{
    const char *given = http_request_header(req, "X-Request-ID");
    if (given != NULL && request_id_is_sane(given))
        snprintf(req->id, sizeof req->id, "%s", given);
    else
        snprintf(req->id, sizeof req->id, "%016llx", (unsigned long long)next_id(req->server));
}

/* ---- replies ---- */

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Copies text for a log line: control bytes, DEL and backslashes as \xNN (a path cannot move
 * the terminal's cursor or forge a line), cut with "..." when longer than out. */
static void log_safe(const char *text, char *out, size_t size)
{
    size_t n = 0;
    for (; text != NULL && *text != '\0'; text++) {
        unsigned char c = (unsigned char)*text;
        bool plain = c >= 0x20 && c != 0x7f && c != '\\';
        if (n + (plain ? 1 : 4) + 4 > size) {
            memcpy(out + n, "...", 3);
            n += 3;
            break;
        }
        if (plain)
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, size - n, "\\x%02x", c);
    }
    out[n] = '\0';
}

/*
 * A reply sent later than its request's callback (after a database or Redis answer) is written
 * to the socket at once, here, rather than when the loop next finds the socket writable. evhttp
 * adds the reply to the connection's output and turns its write event on; the loop then waits,
 * learns the socket is writable, writes, turns the write event off and the read event back on:
 * an extra wake-up, and an epoll_ctl, a reply. Written now, and evhttp told so
 * (bufferevent_trigger runs its "output written" callback, which frees the request and starts
 * reading the next), the write event is turned on and off within one loop turn, which the
 * changelist folds into nothing. What cannot be written at once (a full socket buffer) is left
 * to the write event, as before. Not done for a reply sent from inside the request's own
 * callback (evhttp still holds the connection there), nor on a connection that closes after
 * the reply (evhttp would free it inside this call). Returns the connection's bufferevent to
 * write to after evhttp_send_reply, or NULL.
 */
static struct bufferevent *reply_now_target(const struct http_request *req)
{
    struct evhttp_request *evreq = req->evreq;
    struct evhttp_connection *evcon = evhttp_request_get_connection(evreq);
    if (req->server->in_dispatch || req->server->draining || evcon == NULL || evreq->major != 1 ||
        evreq->minor < 1)
        return NULL;
    const char *in = evhttp_find_header(evhttp_request_get_input_headers(evreq), "Connection");
    const char *out = evhttp_find_header(evhttp_request_get_output_headers(evreq), "Connection");
    if ((in != NULL && evutil_ascii_strcasecmp(in, "close") == 0) ||
        (out != NULL && evutil_ascii_strcasecmp(out, "close") == 0))
        return NULL; /* evhttp's own test (evhttp_is_connection_close) */
    return evhttp_connection_get_bufferevent(evcon);
}

static void write_reply_now(struct bufferevent *bev)
{
    struct evbuffer *output = bufferevent_get_output(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    while (evbuffer_get_length(output) > 0 && evbuffer_write(output, fd) > 0)
        continue;
    if (evbuffer_get_length(output) == 0)
        bufferevent_trigger(bev, EV_WRITE, 0); /* may free the connection: bev is not used after */
}

void http_reply_buffer(struct http_request *req, int status, const char *content_type,
                       struct evbuffer *body)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req->evreq);
    evhttp_add_header(headers, "Content-Type", content_type);
    evhttp_add_header(headers, "X-Request-ID", req->id);
    if (req->server->draining)
        evhttp_add_header(headers, "Connection", "close");
    if (req->method == HTTP_HEAD) {
        /* A HEAD reply has the headers of the GET reply, and no body (RFC 9110 9.3.2). */
        char length[24];
        snprintf(length, sizeof length, "%zu", evbuffer_get_length(body));
        evhttp_add_header(headers, "Content-Length", length);
        evbuffer_drain(body, evbuffer_get_length(body));
    }
    /* Log before sending: on a closed connection the send frees evreq (and its uri). */
    double seconds = seconds_since(&req->started);
    metrics_observe(req->server->metrics, req->metrics_route, status, seconds);
    if (log_threshold <= LOG_LEVEL_INFO) { /* escaping the path cost ~7,000 instructions a reply */
        char uri[256];
        log_safe(evhttp_request_get_uri(req->evreq), uri, sizeof uri);
        RLOG_INFO(req->id, "%s %s %d %.3fms", http_method_name(req->method), uri, status,
                  seconds * 1000.0);
    }
    struct bufferevent *now = reply_now_target(req);
    evhttp_send_reply(req->evreq, status, NULL, body);
    req->server->in_flight--;
    free(req);
    if (now != NULL)
        write_reply_now(now);
}

/* ---- replies as JSON ---- */

/* Where http_json_dump writes: buf's size bytes, len used so far. */
struct json_out {
    char *buf;   /* the caller's */
    size_t size; /* its bytes */
    size_t len;  /* written so far */
};

static bool out_add(struct json_out *out, const char *s, size_t n)
{
    if (n > out->size - out->len)
        return false;
    memcpy(out->buf + out->len, s, n);
    out->len += n;
    return true;
}

/* A string, escaped as jansson's dumper escapes it with JSON_COMPACT; false at a byte above
 * 0x7F (jansson checks UTF-8 there and may refuse it: the caller lets jansson do it) or when
 * full. */
static bool out_string(struct json_out *out, const char *s, size_t n)
{
    if (!out_add(out, "\"", 1))
        return false;
    size_t run = 0; /* bytes before s[i] that need no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            run++;
            continue;
        }
        if (c >= 0x80 || !out_add(out, s + i - run, run))
            return false;
        run = 0;
        char seq[8];
        const char *text = seq;
        switch (c) {
        case '"':
            text = "\\\"";
            break;
        case '\\':
            text = "\\\\";
            break;
        case '\b':
            text = "\\b";
            break;
        case '\f':
            text = "\\f";
            break;
        case '\n':
            text = "\\n";
            break;
        case '\r':
            text = "\\r";
            break;
        case '\t':
            text = "\\t";
            break;
        default:
            snprintf(seq, sizeof seq, "\\u%04X", c);
            break;
        }
        if (!out_add(out, text, strlen(text)))
            return false;
    }
    return out_add(out, s + n - run, run) && out_add(out, "\"", 1);
}

/* One value; false for what it leaves to jansson (a real, a non-ASCII string, deep nesting). */
static bool out_value(struct json_out *out, const json_t *v, int depth)
{
    if (depth > 8)
        return false;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (!out_add(out, "{", 1))
            return false;
        bool first = true;
        const char *name;
        size_t name_len;
        json_t *member;
        json_object_keylen_foreach((json_t *)v, name, name_len, member)
        {
            if ((!first && !out_add(out, ",", 1)) || !out_string(out, name, name_len) ||
                !out_add(out, ":", 1) || !out_value(out, member, depth + 1))
                return false;
            first = false;
        }
        return out_add(out, "}", 1);
    }
    case JSON_ARRAY: {
        if (!out_add(out, "[", 1))
            return false;
        for (size_t i = 0; i < json_array_size(v); i++)
            if ((i > 0 && !out_add(out, ",", 1)) ||
                !out_value(out, json_array_get(v, i), depth + 1))
                return false;
        return out_add(out, "]", 1);
    }
    case JSON_STRING:
        return out_string(out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: {
        char text[32];
        int n = snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return n > 0 && out_add(out, text, (size_t)n);
    }
    case JSON_TRUE:
        return out_add(out, "true", 4);
    case JSON_FALSE:
        return out_add(out, "false", 5);
    case JSON_NULL:
        return out_add(out, "null", 4);
    case JSON_REAL:
        break;
    }
    return false;
}

size_t http_json_dump(const json_t *body, char *buf, size_t size)
{
    struct json_out out = {buf, size, 0};
    if (body != NULL && (json_is_object(body) || json_is_array(body)) && out_value(&out, body, 0))
        return out.len;
    /* 15 significant digits: 0.602 prints as 0.602, not 0.60199999999999998 */
    return json_dumpb(body, buf, size, JSON_COMPACT | JSON_REAL_PRECISION(15));
}

#define JSON_REPLY_GUESS 512 /* bytes reserved for a reply's JSON first (a read: about 200) */

/*
 * Writes body as compact JSON straight into buf's memory, in one piece (http_json_dump says
 * why). A body larger than the guess is written again into as much room as it needs. Nothing
 * is written for a NULL body or one jansson cannot dump (as json_dump_callback did).
 */
static void dump_json(struct evbuffer *buf, const json_t *body)
{
    size_t room = JSON_REPLY_GUESS;
    for (int attempt = 0; attempt < 2; attempt++) {
        struct evbuffer_iovec space;
        if (evbuffer_reserve_space(buf, (ev_ssize_t)room, &space, 1) < 1 || space.iov_len < room)
            return; /* out of memory: an empty body */
        size_t length = http_json_dump(body, space.iov_base, space.iov_len);
        if (length <= space.iov_len) { /* whole (0: nothing to write) */
            space.iov_len = length;
            if (length > 0)
                (void)evbuffer_commit_space(buf, &space, 1);
            return;
        }
        room = length; /* the next reserve replaces this uncommitted space */
    }
}

void http_reply_json(struct http_request *req, int status, json_t *body)
{
    struct evbuffer *buf = evbuffer_new();
    dump_json(buf, body);
    json_decref(body);
    http_reply_buffer(req, status, "application/json", buf);
    evbuffer_free(buf);
}

void http_reply_error(struct http_request *req, int status, const char *detail)
{
    http_reply_json(req, status, json_pack("{s:s, s:s}", "detail", detail, "request_id", req->id));
}

void http_reply_validation(struct http_request *req, json_t *errors)
{
    http_reply_json(req, 422, json_pack("{s:o}", "detail", errors));
}

static void reply_detail(struct http_request *req, int status, const char *detail)
{
    http_reply_json(req, status, json_pack("{s:s}", "detail", detail));
}

/* ---- request accessors ---- */

const char *http_request_id(const struct http_request *req)
{
    return req->id;
}

enum http_method http_request_method(const struct http_request *req)
{
    return req->method;
}

struct route_param http_request_param(const struct http_request *req, int i)
{
    return req->match.params[i];
}

const char *http_request_body(struct http_request *req, size_t *len)
{
    struct evbuffer *input = evhttp_request_get_input_buffer(req->evreq);
    *len = evbuffer_get_length(input);
    if (*len == 0)
        return "";
    return (const char *)evbuffer_pullup(input, -1);
}

const char *http_request_header(const struct http_request *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(req->evreq), name);
}

const char *http_request_query(const struct http_request *req)
{
    return evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req->evreq));
}

void *http_request_arg(const struct http_request *req)
{
    const struct route_target *target = req->match.data;
    return target->arg;
}

void http_request_set_header(struct http_request *req, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(req->evreq), name, value);
}

/* ---- dispatch ---- */

static enum http_method method_of(struct evhttp_request *evreq)
{
    switch (evhttp_request_get_command(evreq)) {
    case EVHTTP_REQ_GET:
        return HTTP_GET;
    case EVHTTP_REQ_HEAD:
        return HTTP_HEAD;
    case EVHTTP_REQ_POST:
        return HTTP_POST;
    case EVHTTP_REQ_PUT:
        return HTTP_PUT;
    case EVHTTP_REQ_DELETE:
        return HTTP_DELETE;
    case EVHTTP_REQ_PATCH:
        return HTTP_PATCH;
    case EVHTTP_REQ_OPTIONS:
        return HTTP_OPTIONS;
    default:
        return HTTP_OTHER;
    }
}

static void dispatch_request(struct http_server *server, struct evhttp_request *evreq)
{
    struct http_request *req = xcalloc(1, sizeof *req);
    req->evreq = evreq;
    req->server = server;
    req->method = method_of(evreq);
    req->metrics_route = server->unmatched_route;
    clock_gettime(CLOCK_MONOTONIC, &req->started);
    server->in_flight++;
    assign_request_id(req);

    if (http_request_header(req, HTTP_GUARD_MARKER) != NULL) {
        /* Marked by the connection guard (http_guard.c): the body is not kept. */
        reply_detail(req, 413, "Request body too large");
        return;
    }
    if (http_request_header(req, HTTP_GUARD_BUSY_MARKER) != NULL) {
        /* Over HTTP_MAX_CONNECTIONS (http_guard.c): refused, and the connection closes. */
        http_request_set_header(req, "Connection", "close");
        http_request_set_header(req, "Retry-After", "1");
        reply_detail(req, 503, "Too many connections");
        return;
    }
    if (http_request_header(req, HTTP_GUARD_BAD_MARKER) != NULL) {
        /* Framing that could be read two ways (http_guard.c): the guard drops the rest of the
         * connection's input, so nothing more can be read from it. */
        http_request_set_header(req, "Connection", "close");
        reply_detail(req, 400, "Malformed request framing");
        return;
    }
    if (evreq->major == 1 && evreq->minor >= 1 && http_request_header(req, "Host") == NULL) {
        reply_detail(req, 400, "Missing Host header"); /* HTTP/1.1 requires one (RFC 9112 3.2) */
        return;
    }

    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(evreq));
    if (path == NULL || path[0] == '\0')
        path = "/";
    switch (router_match(server->router, req->method, path, &req->match)) {
    case ROUTER_NOT_FOUND:
        reply_detail(req, 404, "Not Found");
        return;
    case ROUTER_METHOD_NOT_ALLOWED: {
        char allow[96];
        router_format_allow(req->match.allowed, allow, sizeof allow);
        http_request_set_header(req, "Allow", allow);
        reply_detail(req, 405, "Method Not Allowed");
        return;
    }
    case ROUTER_MATCH:
        break;
    }
    struct route_target *target = req->match.data;
    req->metrics_route = target->metrics_route;
    target->handler(req, target->arg);
}

static void dispatch(struct evhttp_request *evreq, void *arg)
{
    struct http_server *server = arg;
    server->in_dispatch = true; /* a reply sent from here goes the usual way (reply_now_target) */
    dispatch_request(server, evreq);
    server->in_dispatch = false;
}

/* ---- server life cycle ---- */

/*
 * Client connections must never use up the process's descriptors: then accept() fails with
 * EMFILE while the connection waits in the backlog, libevent retries at once, for ever (a busy
 * loop logging a warning each time), and nothing else is served. So the soft descriptor limit
 * is raised to the hard one, and client connections are capped below it, leaving a reserve for
 * the database pools, Redis, the resolver and the log: HTTP_MAX_CONNECTIONS, or less when the
 * descriptors are fewer. The guard answers connections past the cap 503 and closes them.
 */
static int connection_limit(int wanted)
{
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) != 0)
        return wanted;
    if (nofile.rlim_cur < nofile.rlim_max) {
        struct rlimit raised = {nofile.rlim_max, nofile.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            nofile = raised;
    }
    long long descriptors =
        nofile.rlim_cur == RLIM_INFINITY ? 1LL << 20 : (long long)nofile.rlim_cur;
    long long reserve = descriptors / 4 > 64 ? descriptors / 4 : 64;
    long long room = descriptors - reserve - HTTP_GUARD_BUSY_ALLOWANCE;
    int limit = room < wanted ? (int)(room > 1 ? room : 1) : wanted;
    if (limit < wanted)
        LOG_WARN("at most %d client connections (HTTP_MAX_CONNECTIONS is %d, but the process may "
                 "open %lld descriptors)",
                 limit, wanted, descriptors);
    return limit;
}

struct http_server *http_server_create(struct event_base *base,
                                       const struct http_settings *settings,
                                       struct metrics *metrics)
{
    struct http_server *server = xcalloc(1, sizeof *server);
    server->base = base;
    server->settings = *settings;
    server->settings.host = xstrdup(settings->host);
    server->metrics = metrics;
    server->router = router_create();
    server->unmatched_route = -1;
    if (getrandom(&server->id_state, sizeof server->id_state, 0) != sizeof server->id_state)
        server->id_state = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)server;

    server->evhttp = evhttp_new(base);
    evhttp_set_max_body_size(server->evhttp, (ev_ssize_t)settings->max_body_bytes);
    evhttp_set_max_headers_size(server->evhttp, MAX_HEADER_BYTES);
    evhttp_set_timeout(server->evhttp, settings->timeout_s);
    /* Accept every method, so that unknown ones get our JSON 404/405, not libevent's HTML. */
    evhttp_set_allowed_methods(server->evhttp, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                   EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                                   EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(server->evhttp, dispatch, server);
    server->guard = http_guard_hook_create(settings->max_body_bytes, settings->read_timeout_s,
                                           connection_limit(settings->max_connections));
    evhttp_set_bevcb(server->evhttp, http_guard_bufferevent, server->guard);
    return server;
}

void http_server_free(struct http_server *server)
{
    if (server == NULL)
        return;
    evhttp_free(server->evhttp); /* closes the remaining (idle) connections, and their guards */
    http_guard_hook_free(server->guard);
    router_free(server->router);
    free((char *)server->settings.host);
    free(server);
}

void http_route(struct http_server *server, enum http_method method, const char *path_template,
                http_handler_fn handler, void *arg)
{
    if (server->target_count == MAX_ROUTES)
        abort(); /* a programming error, found at start-up */
    struct route_target *target = &server->targets[server->target_count++];
    target->handler = handler;
    target->arg = arg;
    target->metrics_route =
        metrics_route_register(server->metrics, http_method_name(method), path_template);
    router_add(server->router, method, path_template, target);
}

const struct router *http_server_router(const struct http_server *server)
{
    return server->router;
}

/* evhttp listens with a backlog of 128: a burst of new clients (500 at once in the tests, any
 * load test) overflows it, and the kernel drops their SYNs, which they retry only after 1, 3,
 * 7... seconds. The listener is opened here with the system's larger limit instead. */
#define LISTEN_BACKLOG SOMAXCONN

static bool numeric_address(const char *host, int port, struct sockaddr_storage *out, int *outlen)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (evutil_inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *outlen = (int)sizeof *v4;
        return true;
    }
    if (evutil_inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *outlen = (int)sizeof *v6;
        return true;
    }
    return false;
}

bool http_server_listen(struct http_server *server, char *err, size_t errlen)
{
    struct sockaddr_storage address;
    int address_len;
    if (!numeric_address(server->settings.host, server->settings.port, &address, &address_len)) {
        snprintf(err, errlen, "HOST must be a numeric address (e.g. 127.0.0.1 or 0.0.0.0), not %s",
                 server->settings.host);
        return false;
    }
    struct evconnlistener *socket = evconnlistener_new_bind(
        server->base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        LISTEN_BACKLOG, (struct sockaddr *)&address, address_len);
    if (socket != NULL)
        server->listener = evhttp_bind_listener(server->evhttp, socket);

    if (server->listener == NULL) {
        if (socket != NULL)
            evconnlistener_free(socket);
        snprintf(err, errlen, "cannot listen on %s:%d (is the port already in use?)",
                 server->settings.host, server->settings.port);
        return false;
    }
    return true;
}

void http_server_stop_accepting(struct http_server *server)
{
    if (server->listener != NULL) {
        evhttp_del_accept_socket(server->evhttp, server->listener);
        server->listener = NULL;
    }
    server->draining = true;
}

size_t http_server_in_flight(const struct http_server *server)
{
    return server->in_flight;
}
