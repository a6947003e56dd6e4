/*
 * server: a layer's HTTP server, on top of the process life cycle (process.h).
 *
 * Every layer's main() fills a `struct server_spec` (its name, the settings sets it uses, and
 * three callbacks) and calls server_main(). process.c runs the program (`--help`, settings,
 * logging, signals, the event loop, the maintenance timer); this module adds what only an HTTP
 * server has, the same way for all layers: the HTTP settings (the HTTP set below), the listener,
 * the built-in routes (`/metrics`; `/ping`, which touches no backend and so measures the
 * HTTP layer alone; `/openapi.json` and `/docs`, api_docs.h), metrics, and the draining of requests on a stop signal:
 *
 *   SIGTERM/SIGINT -> [drain delay, still accepting] -> stop accepting
 *                  -> wait for in-flight requests (SHUTDOWN_TIMEOUT_MS from the signal)
 *                  -> layer stop() closes its connections -> exit 0.
 *
 * The layer's start() creates its pools and routes and calls server_ready() when its
 * databases are ready (schema created): only then does the server listen.
 */
#ifndef LAYERS_SERVER_H
#define LAYERS_SERVER_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct http_server;
struct metrics;
struct process;
struct resolver;
struct server;

/* The settings every HTTP server has (the HTTP set). */
struct server_config {
    char *host;           /* HOST */
    long port;            /* PORT */
    long max_body_bytes;  /* MAX_BODY_BYTES */
    long max_value_bytes; /* MAX_VALUE_BYTES */
    long http_timeout_s;  /* HTTP_TIMEOUT_S */
    long read_timeout_s;  /* HTTP_READ_TIMEOUT_S */
    long max_connections; /* HTTP_MAX_CONNECTIONS */
    char *docs_dir;       /* DOCS_DIR: Swagger UI's assets for /docs ("" = not installed) */
};

struct server_spec {
    const char *program;           /* "l1-connection-pooling" */
    const char *layer;             /* "1-connection-pooling", as /health reports it */
    const char *summary;           /* one line for --help */
    long default_port;             /* 8000 + N */
    const struct config_set *sets; /* the settings sets the layer uses (pool, Redis, its own) */
    size_t set_count;              /* entries in sets */
    unsigned metric_modules;       /* METRIC_MODULE_* the layer uses */
    /* Creates pools and routes; calls server_ready() (now or later). false = exit 1. */
    bool (*start)(struct server *server, void *layer);
    /* Once a second: pool upkeep, health checks... (may be NULL) */
    void (*maintain)(void *layer);
    /* After the last in-flight request: close connections, free everything. */
    void (*stop)(void *layer);
    /* The layer's OpenAPI document (openapi_document.h), served at /openapi.json; start-up
     * fails when the layer's routes differ from its operations. NULL: none (a warning). */
    const char *openapi_json;
    /* After a stop signal, keep accepting this many ms before closing the listener (the
     * layer's /ready answers 503 meanwhile, so a load balancer stops sending first). NULL: 0.
     * Read when the signal comes; part of SHUTDOWN_TIMEOUT_MS. */
    const long *drain_delay_ms;
};

/* Runs the server; returns the process exit code. */
int server_main(int argc, char **argv, const struct server_spec *spec, void *layer);

/* Starts listening (once the layer's databases are ready). */
void server_ready(struct server *server);

struct event_base *server_base(struct server *server);
struct http_server *server_http(struct server *server);
struct metrics *server_metrics(struct server *server);
/* Asynchronous host name lookups on the server's loop (resolve.h). */
struct resolver *server_resolver(struct server *server);
/* The process underneath (its settings, its stop state). */
struct process *server_process(struct server *server);
const struct server_config *server_config(const struct server *server);
const struct server_spec *server_spec(const struct server *server);

#endif
