/*
 * Layer 3: read replicas. Configuration, routes and start-up.
 *
 * What is new since layer 2: the primary (PRIMARY_DATABASE_URL) and its streaming replicas
 * (REPLICA_DATABASE_URLS, or one REPLICA_DATABASE_URL), a pool each with the same DB_POOL_*
 * settings, the lag past which a replica is skipped (MAX_REPLICA_LAG_MS), the lag checks on the
 * maintenance timer, and GET /stats. Its pools take their URLs from these settings: the pool
 * set it lists has no DATABASE_URL.
 */
#include "handlers.h"

#include "backends.h"
#include "cache_aside.h"
#include "cache_floor.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "openapi_document.h"
#include "pool_config.h"
#include "records.h"
#include "redis.h"
#include "server.h"
#include "single_flight.h"

static struct layer layer;

static const struct config_set layer_sets[] = {
    POOL_EACH_CONFIG_SET(&layer.db),
    REPLICA_CONFIG_SET(&layer.primary_url, &layer.replica_urls, &layer.replica_url,
                       &layer.max_lag_ms, "postgresql://layers@127.0.0.1:15430/layers",
                       "postgresql://layers@127.0.0.1:15431/layers,"
                       "postgresql://layers@127.0.0.1:15432/layers"),
    REDIS_CONFIG_SET(&layer.redis_url, &layer.redis_timeout_ms, "redis://127.0.0.1:16430/0"),
    CACHE_CONFIG_SET(&layer.cache_ttl_s),
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
    if (!pool_config_check(&l->db))
        return false;
    l->db.resolver = server_resolver(server); /* host names off the event loop */
    struct replica_settings rs = {l->primary_url,
                                  l->replica_urls[0] != '\0' ? l->replica_urls : l->replica_url,
                                  l->max_lag_ms};
    char err[256];
    l->router = replica_router_create(server_base(server), &rs, &l->db, "l3-read-replicas",
                                      server_metrics(server), err, sizeof err);
    if (l->router == NULL) {
        LOG_ERROR("%s", err);
        return false;
    }
    LOG_INFO("%d replicas, skipped beyond %ld ms of lag", replica_router_count(l->router),
             l->max_lag_ms);
    metrics_add_gauges(server_metrics(server), replica_router_render_gauges, l->router);
    l->redis = backends_start_redis(server, l->redis_url, l->redis_timeout_ms);
    if (l->redis == NULL)
        return false;
    struct cache_settings cs = {"l3", l->cache_ttl_s, NULL};
    l->cache = cache_aside_create(l->redis, &cs, server_metrics(server));
    l->floors = cache_floor_create(l->redis, "l3");
    l->flights = single_flight_create();

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", handle_write, l);
    http_route(http, HTTP_GET, "/read/{key}", handle_read, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);
    http_route(http, HTTP_GET, "/stats", handle_stats, l);

    replica_router_ensure_schema(l->router, RECORDS_SQL_SCHEMA, on_schema_ready, server);
    return true;
}

static void maintain(void *arg)
{
    struct layer *l = arg;
    replica_router_maintain(l->router);
    redis_maintain(l->redis);
    cache_aside_maintain(l->cache);
}

static void stop(void *arg)
{
    struct layer *l = arg;
    cache_aside_free(l->cache);
    cache_floor_free(l->floors);
    redis_free(l->redis);
    single_flight_free(l->flights);
    replica_router_free(l->router);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l3-read-replicas",
        .layer = "3-read-replicas",
        .summary = "key/value API on a PostgreSQL primary and its streaming replicas, with a "
                   "Redis cache-aside in front",
        .default_port = 8003,
        CONFIG_SETS(layer_sets),
        .metric_modules = METRIC_MODULE_PG | METRIC_MODULE_POOL | METRIC_MODULE_REDIS |
                          METRIC_MODULE_CACHE | METRIC_MODULE_REPLICA,
        .start = start,
        .maintain = maintain,
        .stop = stop,
        .openapi_json = layer_openapi_json,
    };
    return server_main(argc, argv, &spec, &layer);
}
