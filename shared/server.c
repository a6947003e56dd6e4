/*
 * server: the HTTP part of a layer server, on the process life cycle (see server.h).
 */
#include "server.h"

#include "api_docs.h"
#include "clock.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "process.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DRAIN_POLL_MS  20
#define DRAIN_FLUSH_MS 200 /* after the last reply, time for it to leave the socket buffer */
#define HTTP_ROW_COUNT 8

struct server {
    const struct server_spec *spec;         /* the layer's description */
    void *layer;                            /* the layer's context */
    struct process *process;                /* loop, signals, settings (process.h) */
    struct server_config config;            /* the HTTP set's values */
    struct config_row rows[HTTP_ROW_COUNT]; /* the HTTP set, pointing into config */
    char port_default[16];                  /* the layer's default PORT, as text */
    struct http_server *http;               /* HTTP server */
    struct metrics *metrics;                /* counters and histograms */
    struct api_docs *docs;                  /* /openapi.json and /docs */
    struct event *drain;                    /* polls in-flight requests during shutdown */
    long long drain_deadline_ms;            /* give up waiting at this time */
    long long drained_at_ms;                /* when the last in-flight request was answered */
    long long close_at_ms;                  /* the drain delay ends: stop accepting then */
    bool listener_closed;                   /* stop accepting was done */
    bool listening;                         /* server_ready() was called */
};

/* The HTTP set (first, so PORT heads --help), then the layer's sets. */
static struct config_set *build_sets(struct server *server, size_t *count)
{
    struct server_config *c = &server->config;
    snprintf(server->port_default, sizeof server->port_default, "%ld", server->spec->default_port);
    const struct config_row rows[HTTP_ROW_COUNT] = {
        {"PORT", CONFIG_INT, server->port_default, 1, 65535, "TCP port to listen on", &c->port,
         NULL},
        {"HOST", CONFIG_STRING, "127.0.0.1", 0, 0, "address to listen on (0.0.0.0 in containers)",
         &c->host, NULL},
        {"MAX_BODY_BYTES", CONFIG_INT, "1048576", 1024, 64L << 20,
         "larger request bodies get 413 unread", &c->max_body_bytes, NULL},
        {"MAX_VALUE_BYTES", CONFIG_INT, "524288", 0, 32L << 20,
         "longest value accepted by POST /write", &c->max_value_bytes, NULL},
        {"HTTP_TIMEOUT_S", CONFIG_INT, "30", 1, 3600,
         "a client connection idle or stalled this long is closed", &c->http_timeout_s, NULL},
        {"HTTP_READ_TIMEOUT_S", CONFIG_INT, "15", 1, 3600,
         "a request must arrive whole (headers and body) this soon after its first byte",
         &c->read_timeout_s, NULL},
        {"HTTP_MAX_CONNECTIONS", CONFIG_INT, "4096", 1, 1000000,
         "client connections at once; more are answered 503 and closed", &c->max_connections,
         NULL},
        {"DOCS_DIR", CONFIG_STRING, "", 0, 0,
         "Swagger UI's files for /docs (swagger-ui-dist; ./layers env sets it)", &c->docs_dir,
         NULL},
    };
    memcpy(server->rows, rows, sizeof rows);
    *count = 1 + server->spec->set_count;
    struct config_set *sets = xcalloc(*count, sizeof *sets);
    sets[0] = (struct config_set)CONFIG_SET("HTTP", server->rows);
    if (server->spec->set_count > 0)
        memcpy(sets + 1, server->spec->sets, server->spec->set_count * sizeof *sets);
    return sets;
}

/* ---- built-in routes ---- */

static void handle_metrics(struct http_request *req, void *arg)
{
    struct server *server = arg;
    struct evbuffer *buf = evbuffer_new();
    metrics_render(server->metrics, buf);
    http_reply_buffer(req, 200, "text/plain; version=0.0.4", buf);
    evbuffer_free(buf);
}

static void render_in_flight(struct evbuffer *out, void *arg)
{
    struct server *server = arg;
    evbuffer_add_printf(out,
                        "# HELP http_requests_in_flight Requests received and not answered yet.\n"
                        "# TYPE http_requests_in_flight gauge\nhttp_requests_in_flight %zu\n",
                        http_server_in_flight(server->http));
}

static void handle_ping(struct http_request *req, void *arg)
{
    (void)arg;
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* ---- shutdown: draining in-flight requests ---- */

static void finish_shutdown(struct server *server)
{
    size_t left = http_server_in_flight(server->http);
    if (left > 0)
        LOG_WARN("shutdown: %zu requests still in flight after %ld ms; closing anyway", left,
                 process_config(server->process)->shutdown_timeout_ms);
    else
        LOG_INFO("shutdown: all requests answered");
    process_exit(server->process, 0);
}

static void close_listener(struct server *server)
{
    LOG_INFO("shutdown: no new connections, finishing %zu in-flight requests",
             http_server_in_flight(server->http));
    http_server_stop_accepting(server->http);
    server->listener_closed = true;
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct server *server = arg;
    (void)fd, (void)what;
    long long now = monotonic_ms();
    if (!server->listener_closed) {
        if (now < server->close_at_ms && now < server->drain_deadline_ms) {
            struct timeval tv = ms_to_timeval((long)(server->close_at_ms - now));
            event_add(server->drain, &tv);
            return;
        }
        close_listener(server);
    }
    if (http_server_in_flight(server->http) == 0 && server->drained_at_ms == 0)
        server->drained_at_ms = now;
    bool flushed = server->drained_at_ms != 0 && now - server->drained_at_ms >= DRAIN_FLUSH_MS;
    if (flushed || now >= server->drain_deadline_ms) {
        finish_shutdown(server);
        return;
    }
    struct timeval tv = ms_to_timeval(DRAIN_POLL_MS);
    event_add(server->drain, &tv);
}

static void server_drain(void *arg)
{
    struct server *server = arg;
    long long now = monotonic_ms();
    long delay = server->spec->drain_delay_ms != NULL && server->listening
                     ? *server->spec->drain_delay_ms
                     : 0;
    server->drain_deadline_ms = now + process_config(server->process)->shutdown_timeout_ms;
    server->close_at_ms = now + delay;
    if (delay > 0)
        LOG_INFO("shutdown: serving %ld ms more (drain delay: not ready) before closing", delay);
    on_drain(-1, 0, server);
}

/* ---- the process callbacks ---- */

static bool server_start(struct process *process, void *arg)
{
    struct server *server = arg;
    server->process = process;
    struct event_base *base = process_base(process);
    server->metrics = metrics_create(server->spec->metric_modules);
    struct http_settings http = {server->config.host,
                                 (int)server->config.port,
                                 (size_t)server->config.max_body_bytes,
                                 (int)server->config.http_timeout_s,
                                 (int)server->config.read_timeout_s,
                                 (int)server->config.max_connections};
    server->http = http_server_create(base, &http, server->metrics);
    http_route(server->http, HTTP_GET, "/metrics", handle_metrics, server);
    http_route(server->http, HTTP_GET, "/ping", handle_ping, server);
    if (server->spec->openapi_json == NULL)
        LOG_WARN("%s has no OpenAPI document: /openapi.json answers 404", server->spec->program);
    server->docs = api_docs_create(server->spec->openapi_json, server->config.docs_dir);
    api_docs_routes(server->docs, server->http);
    metrics_add_gauges(server->metrics, render_in_flight, server);
    server->drain = evtimer_new(base, on_drain, server);
    LOG_INFO("%s (%s) starting", server->spec->program, server->spec->layer);
    if (!server->spec->start(server, server->layer))
        return false;
    /* The layer's routes are all added by now: they must be the document's operations. */
    char err[256];
    if (!api_docs_check_routes(server->docs, http_server_router(server->http), err, sizeof err)) {
        LOG_ERROR("%s", err);
        return false;
    }
    return true;
}

static void server_maintain(void *arg)
{
    struct server *server = arg;
    if (server->spec->maintain != NULL)
        server->spec->maintain(server->layer);
}

static void server_stop(void *arg)
{
    struct server *server = arg;
    server->spec->stop(server->layer);
    http_server_free(server->http);
    api_docs_free(server->docs); /* after the connections that may still send its bytes */
    if (server->drain)
        event_free(server->drain);
    metrics_free(server->metrics);
}

void server_ready(struct server *server)
{
    char err[256];
    if (process_stopping(server->process) || server->listening)
        return;
    if (!http_server_listen(server->http, err, sizeof err)) {
        LOG_ERROR("%s", err);
        process_exit(server->process, 1);
        return;
    }
    server->listening = true;
    LOG_INFO("%s listening on http://%s:%ld", server->spec->program, server->config.host,
             server->config.port);
}

int server_main(int argc, char **argv, const struct server_spec *spec, void *layer)
{
    struct server server = {.spec = spec, .layer = layer};
    size_t set_count;
    struct config_set *sets = build_sets(&server, &set_count);
    const struct process_spec process = {
        .program = spec->program,
        .summary = spec->summary,
        .sets = sets,
        .set_count = set_count,
        .start = server_start,
        .maintain = server_maintain,
        .drain = server_drain,
        .stop = server_stop,
    };
    int status = process_main(argc, argv, &process, &server);
    free(sets);
    return status;
}

struct event_base *server_base(struct server *server)
{
    return process_base(server->process);
}

struct resolver *server_resolver(struct server *server)
{
    return process_resolver(server->process);
}

struct process *server_process(struct server *server)
{
    return server->process;
}

struct http_server *server_http(struct server *server)
{
    return server->http;
}

struct metrics *server_metrics(struct server *server)
{
    return server->metrics;
}

const struct server_config *server_config(const struct server *server)
{
    return &server->config;
}

const struct server_spec *server_spec(const struct server *server)
{
    return server->spec;
}
