/*
 * Layer 2: read cache (Redis cache-aside). Configuration, routes and start-up.
 *
 * What is new since layer 1: a Redis connection (REDIS_URL, REDIS_TIMEOUT_MS), the cache's
 * TTL (CACHE_TTL), and GET /cache-stats.
 */
#include "handlers.h"

#include "backends.h"
#include "cache_aside.h"
#include "http.h"
#include "metrics.h"
#include "openapi_document.h"
#include "pool_config.h"
#include "records.h"
#include "redis.h"
#include "schema.h"
#include "server.h"
#include "single_flight.h"

static struct layer layer;

static const struct config_row layer_rows[] = {
    {"CACHE_FILL_DELAY_MS", CONFIG_INT, "0", 0, 60000,
     "test hook: delay between a database read and its cache fill", &layer.fill_delay_ms, NULL},
};

static const struct config_set layer_sets[] = {
    POOL_CONFIG_SET(&layer.db, "postgresql://layers@127.0.0.1:15420/layers"),
    REDIS_CONFIG_SET(&layer.redis_url, &layer.redis_timeout_ms, "redis://127.0.0.1:16420/0"),
    CACHE_CONFIG_SET(&layer.cache_ttl_s),
    CONFIG_SET("layer 2", layer_rows),
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
    l->pool = backends_start_pool(server, &l->db, "l2-read-cache", &pg);
    if (l->pool == NULL)
        return false;
    l->redis = backends_start_redis(server, l->redis_url, l->redis_timeout_ms);
    if (l->redis == NULL)
        return false;
    struct cache_settings cs = {"l2", l->cache_ttl_s, NULL};
    l->cache = cache_aside_create(l->redis, &cs, server_metrics(server));
    l->flights = single_flight_create();

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", handle_write, l);
    http_route(http, HTTP_GET, "/read/{key}", handle_read, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);
    http_route(http, HTTP_GET, "/cache-stats", handle_cache_stats, l);

    l->schema =
        schema_ensure(server_base(server), &pg, RECORDS_SQL_SCHEMA, on_schema_ready, server);
    return true;
}

static void maintain(void *arg)
{
    struct layer *l = arg;
    pool_maintain(l->pool);
    redis_maintain(l->redis);
    cache_aside_maintain(l->cache);
}

static void stop(void *arg)
{
    struct layer *l = arg;
    schema_task_free(l->schema);
    cache_aside_free(l->cache);
    redis_free(l->redis);
    single_flight_free(l->flights);
    pool_free(l->pool);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l2-read-cache",
        .layer = "2-read-cache",
        .summary = "key/value API on PostgreSQL with a Redis cache-aside in front",
        .default_port = 8002,
        CONFIG_SETS(layer_sets),
        .metric_modules =
            METRIC_MODULE_PG | METRIC_MODULE_POOL | METRIC_MODULE_REDIS | METRIC_MODULE_CACHE,
        .start = start,
        .maintain = maintain,
        .stop = stop,
        .openapi_json = layer_openapi_json,
    };
    return server_main(argc, argv, &spec, &layer);
}
