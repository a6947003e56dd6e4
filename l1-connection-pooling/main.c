/*
 * Layer 1: connection pooling. Configuration, routes and start-up.
 *
 * What is new since layer 0: the DB_POOL_* settings and a pool created at start-up, which
 * keeps DB_POOL_MIN_SIZE connections open and lends them to requests; GET /pool-stats shows
 * what it does.
 */
#include "handlers.h"

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "records.h"
#include "schema.h"
#include "server.h"

static struct layer1 layer;

static const struct config_row layer_rows[] = {
    {"DATABASE_URL", CONFIG_URL, "postgresql://layers@127.0.0.1:15410/layers", 0, 0,
     "PostgreSQL connection URL", &layer.database_url},
    {"DB_CONNECT_TIMEOUT_MS", CONFIG_INT, "2000", 100, 60000, "deadline for opening a connection",
     &layer.connect_timeout_ms},
    {"DB_QUERY_TIMEOUT_MS", CONFIG_INT, "5000", 100, 600000,
     "statement_timeout; the client gives up 1 s later", &layer.query_timeout_ms},
    {"DB_POOL_MIN_SIZE", CONFIG_INT, "2", 0, 1000, "connections kept open when idle",
     &layer.min_size},
    {"DB_POOL_MAX_SIZE", CONFIG_INT, "10", 1, 1000, "most connections the pool opens",
     &layer.max_size},
    {"DB_POOL_ACQUIRE_TIMEOUT_MS", CONFIG_INT, "2000", 1, 600000,
     "longest wait for a free connection (then 503)", &layer.acquire_timeout_ms},
    {"DB_POOL_MAX_WAITING", CONFIG_INT, "1000", 1, 1000000,
     "requests allowed to wait for a connection (more get 503 at once)", &layer.max_waiting},
    {"DB_POOL_MAX_LIFETIME_S", CONFIG_INT, "1800", 1, 86400,
     "connections older than this are replaced", &layer.max_lifetime_s},
    {"DB_POOL_IDLE_TIMEOUT_S", CONFIG_INT, "300", 1, 86400,
     "idle connections above the minimum are closed after this", &layer.idle_timeout_s},
};

static void on_schema_ready(void *arg)
{
    server_ready(arg);
}

static bool start(struct server *server, void *arg)
{
    struct layer1 *l = arg;
    l->server = server;
    l->max_value_bytes = (size_t)server_config(server)->max_value_bytes;
    if (l->min_size > l->max_size) {
        LOG_ERROR("DB_POOL_MIN_SIZE (%ld) must not exceed DB_POOL_MAX_SIZE (%ld)", l->min_size,
                  l->max_size);
        return false;
    }
    /* Pooled connections live long: each prepares its statements once (pgconn.h). */
    struct pgconn_settings pg = {l->database_url, "l1-connection-pooling", l->connect_timeout_ms,
                                 l->query_timeout_ms, true};
    struct pool_settings ps = {(int)l->min_size,         (int)l->max_size,
                               l->acquire_timeout_ms,    (int)l->max_waiting,
                               l->max_lifetime_s * 1000, l->idle_timeout_s * 1000};
    l->pool = pool_create_pg(server_base(server), &ps, &pg, server_metrics(server));
    metrics_add_gauges(server_metrics(server), pool_render_gauges, l->pool);

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
    struct layer1 *l = arg;
    pool_maintain(l->pool);
}

static void stop(void *arg)
{
    struct layer1 *l = arg;
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
        .rows = layer_rows,
        .row_count = sizeof layer_rows / sizeof layer_rows[0],
        .metric_modules = METRIC_MODULE_PG | METRIC_MODULE_POOL,
        .start = start,
        .maintain = maintain,
        .stop = stop,
    };
    return server_main(argc, argv, &spec, &layer);
}
