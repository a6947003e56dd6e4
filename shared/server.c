/*
 * server: start-up, built-in routes, maintenance and graceful shutdown (see server.h).
 */
#include "server.h"

#include "clock.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "resolve.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define DRAIN_POLL_MS  20
#define DRAIN_FLUSH_MS 200 /* after the last reply, time for it to leave the socket buffer */

struct server {
    const struct server_spec *spec; /* the layer's description */
    void *layer;                    /* the layer's context */
    struct server_config config;    /* common settings */
    struct event_base *base;        /* the one event loop */
    struct http_server *http;       /* HTTP server */
    struct metrics *metrics;        /* counters and histograms */
    struct resolver *resolver;      /* host names to addresses, off the loop */
    struct event *sigterm, *sigint; /* shutdown signals */
    struct event *maintenance;      /* once a second */
    struct event *drain;            /* polls in-flight requests during shutdown */
    long long drain_deadline_ms;    /* give up waiting at this time */
    long long drained_at_ms;        /* when the last in-flight request was answered, or 0 */
    bool listening;                 /* server_ready() was called */
    bool failed;                    /* could not listen: exit 1 */
    bool stopping;                  /* a shutdown signal arrived */
};

static struct config_row common_rows(struct server_config *c, const struct server_spec *spec, int i,
                                     char *port_default)
{
    snprintf(port_default, 16, "%ld", spec->default_port);
    const struct config_row rows[] = {
        {"PORT", CONFIG_INT, port_default, 1, 65535, "TCP port to listen on", &c->port},
        {"HOST", CONFIG_STRING, "127.0.0.1", 0, 0, "address to listen on (0.0.0.0 in containers)",
         &c->host},
        {"LOG_LEVEL", CONFIG_STRING, "info", 0, 0, "debug, info, warn or error", &c->log_level},
        {"MAX_BODY_BYTES", CONFIG_INT, "1048576", 1024, 64L << 20,
         "larger request bodies get 413 unread", &c->max_body_bytes},
        {"MAX_VALUE_BYTES", CONFIG_INT, "524288", 0, 32L << 20,
         "longest value accepted by POST /write", &c->max_value_bytes},
        {"HTTP_TIMEOUT_S", CONFIG_INT, "30", 1, 3600,
         "a client connection idle or stalled this long is closed", &c->http_timeout_s},
        {"SHUTDOWN_TIMEOUT_MS", CONFIG_INT, "10000", 0, 600000,
         "how long SIGTERM waits for in-flight requests", &c->shutdown_timeout_ms},
    };
    return rows[i];
}

#define COMMON_ROW_COUNT 7

/* The common rows followed by the layer's, in one table. */
static struct config_row *all_rows(struct server *server, size_t *count, char *port_default)
{
    const struct server_spec *spec = server->spec;
    *count = COMMON_ROW_COUNT + spec->row_count;
    struct config_row *rows = xcalloc(*count, sizeof *rows);
    for (int i = 0; i < COMMON_ROW_COUNT; i++)
        rows[i] = common_rows(&server->config, spec, i, port_default);
    memcpy(rows + COMMON_ROW_COUNT, spec->rows, spec->row_count * sizeof *rows);
    return rows;
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

/* ---- shutdown ---- */

static void finish_shutdown(struct server *server)
{
    size_t left = http_server_in_flight(server->http);
    if (left > 0)
        LOG_WARN("shutdown: %zu requests still in flight after %ld ms; closing anyway", left,
                 server->config.shutdown_timeout_ms);
    else
        LOG_INFO("shutdown: all requests answered");
    event_base_loopexit(server->base, NULL);
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct server *server = arg;
    (void)fd, (void)what;
    long long now = monotonic_ms();
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

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *server = arg;
    (void)what;
    if (server->stopping)
        return;
    server->stopping = true;
    LOG_INFO("shutdown: signal %d; no new connections, finishing %zu in-flight requests", (int)sig,
             http_server_in_flight(server->http));
    http_server_stop_accepting(server->http);
    server->drain_deadline_ms = monotonic_ms() + server->config.shutdown_timeout_ms;
    on_drain(-1, 0, server);
}

static void on_maintenance(evutil_socket_t fd, short what, void *arg)
{
    struct server *server = arg;
    (void)fd, (void)what;
    if (server->spec->maintain != NULL)
        server->spec->maintain(server->layer);
}

/* ---- start-up ---- */

void server_ready(struct server *server)
{
    char err[256];
    if (server->stopping || server->listening)
        return;
    if (!http_server_listen(server->http, err, sizeof err)) {
        LOG_ERROR("%s", err);
        server->stopping = true;
        server->failed = true;
        event_base_loopexit(server->base, NULL);
        return;
    }
    server->listening = true;
    LOG_INFO("%s listening on http://%s:%ld", server->spec->program, server->config.host,
             server->config.port);
}

static bool load_config(struct server *server, int argc, char **argv, bool *exit_now)
{
    char port_default[16], err[512];
    size_t count;
    struct config_row *rows = all_rows(server, &count, port_default);
    bool ok = true;
    *exit_now = false;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("%s: %s\n\nUsage: %s [--help]\n\n", server->spec->program, server->spec->summary,
               server->spec->program);
        config_usage(rows, count, stdout);
        *exit_now = true;
    } else if (argc > 1) {
        fprintf(stderr, "%s: unknown argument '%s' (try --help)\n", server->spec->program, argv[1]);
        ok = false;
    } else if (!config_load(rows, count, NULL, NULL, err, sizeof err)) {
        fprintf(stderr, "%s: configuration error: %s\n", server->spec->program, err);
        ok = false;
    } else {
        enum log_level level = LOG_LEVEL_INFO;
        if (!log_level_parse(server->config.log_level, &level)) {
            fprintf(stderr,
                    "%s: configuration error: LOG_LEVEL=%s (use debug, info, warn, error)\n",
                    server->spec->program, server->config.log_level);
            ok = false;
        }
        log_threshold = level;
        if (ok) {
            fprintf(stderr, "%s (%s) configuration:\n", server->spec->program, server->spec->layer);
            config_print(rows, count, stderr);
        }
    }
    free(rows);
    return ok;
}

static void release_config(struct server *server)
{
    char port_default[16];
    size_t count;
    struct config_row *rows = all_rows(server, &count, port_default);
    config_release(rows, count);
    free(rows);
}

static void free_server(struct server *server)
{
    http_server_free(server->http);
    if (server->sigterm)
        event_free(server->sigterm);
    if (server->sigint)
        event_free(server->sigint);
    if (server->maintenance)
        event_free(server->maintenance);
    if (server->drain)
        event_free(server->drain);
    metrics_free(server->metrics);
    resolver_free(server->resolver);
    if (server->base)
        event_base_free(server->base);
    release_config(server);
}

/* Every client and every database connection is a file descriptor: allow as many as the
 * system lets this process have (the soft limit is often 1024). */
static void raise_fd_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
            LOG_WARN("could not raise the open-file limit");
    }
}

int server_main(int argc, char **argv, const struct server_spec *spec, void *layer)
{
    struct server server = {.spec = spec, .layer = layer};
    bool exit_now;
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up must not kill the server */
    raise_fd_limit();
    if (!load_config(&server, argc, argv, &exit_now)) {
        release_config(&server);
        return 1;
    }
    if (exit_now) {
        release_config(&server);
        return 0;
    }

    server.base = event_base_new();
    server.metrics = metrics_create(spec->metric_modules);
    server.resolver = resolver_create(server.base);
    struct http_settings http = {server.config.host, (int)server.config.port,
                                 (size_t)server.config.max_body_bytes,
                                 (int)server.config.http_timeout_s};
    server.http = http_server_create(server.base, &http, server.metrics);
    http_route(server.http, HTTP_GET, "/metrics", handle_metrics, &server);
    http_route(server.http, HTTP_GET, "/ping", handle_ping, &server);
    metrics_add_gauges(server.metrics, render_in_flight, &server);

    server.sigterm = evsignal_new(server.base, SIGTERM, on_signal, &server);
    server.sigint = evsignal_new(server.base, SIGINT, on_signal, &server);
    server.maintenance = event_new(server.base, -1, EV_PERSIST, on_maintenance, &server);
    server.drain = evtimer_new(server.base, on_drain, &server);
    struct timeval second = {1, 0};
    event_add(server.sigterm, NULL);
    event_add(server.sigint, NULL);
    event_add(server.maintenance, &second);

    int status = 0;
    if (!spec->start(&server, layer)) {
        status = 1;
    } else {
        event_base_dispatch(server.base);
        status = server.failed ? 1 : 0;
    }
    spec->stop(layer);
    free_server(&server);
    LOG_INFO("%s stopped", spec->program);
    return status;
}

struct event_base *server_base(struct server *server)
{
    return server->base;
}

struct resolver *server_resolver(struct server *server)
{
    return server->resolver;
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
