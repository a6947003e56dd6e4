/*
 * Layer 1: connection pooling. Configuration, routes and start-up.
 *
 * What is new since layer 0: the DB_POOL_* settings and a pool created at start-up, which
 * keeps DB_POOL_MIN_SIZE connections open and lends them to requests; GET /pool-stats shows
 * what it does.
 */
#include "handlers.h"

#include "backends.h"
#include "http.h"
#include "metrics.h"
#include "openapi_document.h"
#include "pool_config.h"
#include "records.h"
#include "schema.h"
#include "server.h"

static struct layer layer;

static const struct config_set layer_sets[] = {
    POOL_CONFIG_SET(&layer.db, "postgresql://layers@127.0.0.1:15410/layers"),
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
    struct pgconn_settings pg;
    l->pool = backends_start_pool(server, &l->db, "l1-connection-pooling", &pg);
    if (l->pool == NULL)
        return false;

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", handle_write, l);
    http_route(http, HTTP_GET, "/read/{key}", handle_read, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);
    http_route(http, HTTP_GET, "/pool-stats", handle_pool_stats, l);

    l->schema =
        schema_ensure(server_base(server), &pg, RECORDS_SQL_SCHEMA, on_schema_ready, server);
    return true;
}

static void maintain(void *arg)
{
    struct layer *l = arg;
    pool_maintain(l->pool);
}

static void stop(void *arg)
{
    struct layer *l = arg;
    schema_task_free(l->schema);
    pool_free(l->pool);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l1-connection-pooling",
        .layer = "1-connection-pooling",
        .summary = "key/value API on PostgreSQL through a connection pool",
        .default_port = 8001,
        CONFIG_SETS(layer_sets),
        .metric_modules = METRIC_MODULE_PG | METRIC_MODULE_POOL,
        .start = start,
        .maintain = maintain,
        .stop = stop,
        .openapi_json = layer_openapi_json,
    };
    return server_main(argc, argv, &spec, &layer);
}
