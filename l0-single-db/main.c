/*
 * Layer 0: single database, connection per request. Configuration, routes and start-up.
 *
 * The starting point of the ten layers: one server, one PostgreSQL, and a fresh connection
 * for every request (connect_per_request.c). Everything else (HTTP, validation, timeouts,
 * metrics, graceful shutdown) comes from the shared core and stays the same in every layer.
 */
#include "handlers.h"

#include "http.h"
#include "metrics.h"
#include "openapi_document.h"
#include "pool_config.h"
#include "records.h"
#include "schema.h"
#include "server.h"

static struct layer layer;

static const struct config_set layer_sets[] = {
    PG_CONFIG_SET(&layer.database_url, &layer.connect_timeout_ms, &layer.query_timeout_ms,
                  "postgresql://layers@127.0.0.1:15400/layers"),
};

static void on_schema_ready(void *arg)
{
    server_ready(arg);
}

static bool start(struct server *server, void *arg)
{
    struct layer *l = arg;
    l->server = server;
    l->max_value_bytes = (size_t)server_config(server)->max_value_bytes;
    /* One query per connection: preparing statements would only add a round trip. */
    l->pg = (struct pgconn_settings){.url = l->database_url,
                                     .application = "l0-single-db",
                                     .connect_timeout_ms = l->connect_timeout_ms,
                                     .query_timeout_ms = l->query_timeout_ms,
                                     .prepare = false,
                                     .resolver = server_resolver(server)};

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", handle_write, l);
    http_route(http, HTTP_GET, "/read/{key}", handle_read, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);

    l->schema =
        schema_ensure(server_base(server), &l->pg, RECORDS_SQL_SCHEMA, on_schema_ready, server);
    return true;
}

static void stop(void *arg)
{
    struct layer *l = arg;
    schema_task_free(l->schema);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l0-single-db",
        .layer = "0-single-db",
        .summary = "key/value API on PostgreSQL, one new connection per request",
        .default_port = 8000,
        CONFIG_SETS(layer_sets),
        .metric_modules = METRIC_MODULE_PG,
        .start = start,
        .maintain = NULL,
        .stop = stop,
        .openapi_json = layer_openapi_json,
    };
    return server_main(argc, argv, &spec, &layer);
}
