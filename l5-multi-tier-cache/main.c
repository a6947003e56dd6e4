/*
 * Layer 5: multi-tier cache. Configuration, routes and start-up.
 *
 * What is new since layer 2: the in-process tier's bounds and TTL (L1_CACHE_SIZE,
 * L1_CACHE_MAX_BYTES, L1_CACHE_TTL), a subscription to the invalidation channel (and a heartbeat
 * on it, once a second from the maintenance timer), GET /stats and POST /clear-cache.
 */
#include "handlers.h"

#include "backends.h"
#include "cache_aside.h"
#include "http.h"
#include "l1_cache.h"
#include "l1_coherence.h"
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
    {"L1_CACHE_SIZE", CONFIG_INT, "10000", 1, 10000000, "most entries in the in-process tier",
     &layer.l1_size, NULL},
    {"L1_CACHE_MAX_BYTES", CONFIG_INT, "67108864", 1024, 1L << 36,
     "most bytes of keys and values in the in-process tier", &layer.l1_max_bytes, NULL},
    {"L1_CACHE_TTL", CONFIG_INT, "30", 1, 86400, "seconds an in-process entry lives",
     &layer.l1_ttl_s, NULL},
    {"L2_CACHE_TTL", CONFIG_INT, "300", 1, 86400 * 30,
     "seconds a Redis entry lives (plus up to 10% jitter)", &layer.l2_ttl_s, NULL},
};

static const struct config_set layer_sets[] = {
    POOL_CONFIG_SET(&layer.db, "postgresql://layers@127.0.0.1:15450/layers"),
    REDIS_CONFIG_SET(&layer.redis_url, &layer.redis_timeout_ms, "redis://127.0.0.1:16450/0"),
    CONFIG_SET("layer 5", layer_rows),
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
    l->pool = backends_start_pool(server, &l->db, "l5-multi-tier-cache", &pg);
    if (l->pool == NULL)
        return false;
    l->redis = backends_start_redis(server, l->redis_url, l->redis_timeout_ms);
    if (l->redis == NULL)
        return false;
    struct cache_settings cs = {"l5", l->l2_ttl_s, LAYER5_INVALIDATION_CHANNEL};
    l->l2 = cache_aside_create(l->redis, &cs, server_metrics(server));
    l->l1 = l1_cache_create((size_t)l->l1_size, (size_t)l->l1_max_bytes, l->l1_ttl_s * 1000);
    l->flights = single_flight_create();
    struct l1_coherence_settings coherence = {l->redis_url, l->redis_timeout_ms,
                                              LAYER5_INVALIDATION_CHANNEL,
                                              LAYER5_HEARTBEAT_TIMEOUT_MS};
    l->coherence = l1_coherence_create(server_base(server), server_resolver(server), &coherence,
                                       l->l1, l->flights, l->redis, server_metrics(server));
    if (l->coherence == NULL)
        return false;

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", handle_write, l);
    http_route(http, HTTP_GET, "/read/{key}", handle_read, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);
    http_route(http, HTTP_GET, "/stats", handle_stats, l);
    http_route(http, HTTP_POST, "/clear-cache", handle_clear_cache, l);

    l->schema =
        schema_ensure(server_base(server), &pg, RECORDS_SQL_SCHEMA, on_schema_ready, server);
    return true;
}

static void maintain(void *arg)
{
    struct layer *l = arg;
    pool_maintain(l->pool);
    redis_maintain(l->redis);
    cache_aside_maintain(l->l2);
    l1_coherence_heartbeat(l->coherence);
}

static void stop(void *arg)
{
    struct layer *l = arg;
    schema_task_free(l->schema);
    l1_coherence_free(l->coherence);
    cache_aside_free(l->l2);
    redis_free(l->redis);
    l1_cache_free(l->l1);
    single_flight_free(l->flights);
    pool_free(l->pool);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l5-multi-tier-cache",
        .layer = "5-multi-tier-cache",
        .summary = "key/value API with an in-process cache, Redis and PostgreSQL as three tiers",
        .default_port = 8005,
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
