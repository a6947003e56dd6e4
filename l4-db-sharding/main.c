/*
 * Layer 4: database sharding. Configuration, routes and start-up.
 *
 * What is new since layer 2: the shards (SHARD_URLS, any number, and SHARD_STRATEGY), a pool
 * per shard (with the same DB_POOL_* settings each), the previous layout while resharding
 * (SHARD_PREVIOUS_*), a per-shard deadline for work on all shards (SHARD_CHECK_TIMEOUT_MS), and
 * GET /stats. Each shard has its URL: the pool set it lists has no DATABASE_URL.
 */
#include "handlers.h"

#include "backends.h"
#include "cache_aside.h"
#include "clock.h"
#include "http.h"
#include "layout.h"
#include "log.h"
#include "metrics.h"
#include "openapi_document.h"
#include "pool_config.h"
#include "process.h"
#include "records.h"
#include "redis.h"
#include "server.h"
#include "shard_map.h"
#include "single_flight.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct layer layer;

static const struct config_row layer_rows[] = {
    {"SHARD_CHECK_TIMEOUT_MS", CONFIG_INT, "1000", 10, 60000,
     "deadline of each shard in /health and /stats (then marked unreachable)",
     &layer.check_timeout_ms, NULL},
};

static const struct config_set layer_sets[] = {
    POOL_EACH_CONFIG_SET(&layer.db),
    SHARD_CONFIG_SET(&layer.sharding,
                     "postgresql://layers@127.0.0.1:15440/layers,"
                     "postgresql://layers@127.0.0.1:15441/layers,"
                     "postgresql://layers@127.0.0.1:15442/layers",
                     ""),
    REDIS_CONFIG_SET(&layer.redis_url, &layer.redis_timeout_ms, "redis://127.0.0.1:16440/0"),
    CACHE_CONFIG_SET(&layer.cache_ttl_s),
    CONFIG_SET("layer 4", layer_rows),
};

/* Listening waits for every shard's table, but no longer than this: a shard that is down at
 * start-up must not keep the other shards' keys offline. Its schema task keeps retrying once a
 * second; until it succeeds, that shard's keys fail (503) and /health shows it. */
#define SCHEMA_WAIT_MS 5000

static void on_layout_agreed(void *arg)
{
    struct layer *l = arg;
    if (l->listening)
        return;
    l->listening = true;
    server_ready(l->server);
}

static void on_layout_refused(const char *why, void *arg)
{
    struct layer *l = arg;
    LOG_ERROR("refusing to serve: %s", why);
    process_exit(server_process(l->server), 1);
}

/* Every shard's tables exist: check that they were filled under this layout, then listen. */
static void check_layout(struct layer *l)
{
    if (l->layout == NULL)
        l->layout = layout_check_start(l->shards, on_layout_agreed, on_layout_refused, l);
}

static void on_schema_ready(void *arg)
{
    check_layout(arg);
}

static void listen_without_every_shard(struct layer *l)
{
    if (l->listening || monotonic_ms() - l->started_ms < SCHEMA_WAIT_MS)
        return;
    check_layout(l); /* the shards that answer are checked now, the others when they do */
    LOG_WARN("not every shard answered within %d ms: serving the others' keys meanwhile",
             SCHEMA_WAIT_MS);
    l->listening = true;
    server_ready(l->server);
}

/* 32 bits of FNV-1a: enough to tell layouts apart in a cache prefix. */
static unsigned layout_fingerprint(const char *text)
{
    unsigned h = 2166136261u;
    for (; *text; text++)
        h = (h ^ (unsigned char)*text) * 16777619u;
    return h;
}

static bool start(struct server *server, void *arg)
{
    struct layer *l = arg;
    l->server = server;
    l->max_value_bytes = (size_t)server_config(server)->max_value_bytes;
    if (!pool_config_check(&l->db))
        return false;
    l->db.resolver = server_resolver(server); /* host names off the event loop */
    char err[512];
    l->shards = shard_set_create(server_base(server), &l->sharding, &l->db, "l4-db-sharding",
                                 server_metrics(server), err, sizeof err);
    if (l->shards == NULL) {
        LOG_ERROR("%s", err);
        return false;
    }
    const struct shard_map *map = shard_set_map(l->shards);
    LOG_INFO("%d shards, %s%s%s", shard_map_count(map), shard_map_describe(map),
             shard_set_previous_map(l->shards) ? "; resharding from " : "",
             shard_set_previous_map(l->shards)
                 ? shard_map_describe(shard_set_previous_map(l->shards))
                 : "");
    metrics_add_gauges(server_metrics(server), shard_set_render_gauges, l->shards);
    l->redis = backends_start_redis(server, l->redis_url, l->redis_timeout_ms);
    if (l->redis == NULL)
        return false;
    /* Cached entries name their shard, so each layout has its own: a server in another
     * layout (before or after resharding) never reads this one's entries. */
    snprintf(l->cache_prefix, sizeof l->cache_prefix, "l4:%08x",
             layout_fingerprint(shard_map_describe(map)));
    struct cache_settings cs = {l->cache_prefix, l->cache_ttl_s, NULL};
    l->cache = cache_aside_create(l->redis, &cs, server_metrics(server));
    l->flights = single_flight_create();

    struct http_server *http = server_http(server);
    http_route(http, HTTP_POST, "/write", handle_write, l);
    http_route(http, HTTP_GET, "/read/{key}", handle_read, l);
    http_route(http, HTTP_GET, "/health", handle_health, l);
    http_route(http, HTTP_GET, "/stats", handle_stats, l);

    l->started_ms = monotonic_ms();
    size_t schema_len = strlen(RECORDS_SQL_SCHEMA) + strlen(LAYOUT_SQL_SCHEMA) + 1;
    l->schema_sql = xmalloc(schema_len);
    snprintf(l->schema_sql, schema_len, "%s%s", RECORDS_SQL_SCHEMA, LAYOUT_SQL_SCHEMA);
    shard_set_ensure_schema(l->shards, l->schema_sql, on_schema_ready, l);
    return true;
}

static void maintain(void *arg)
{
    struct layer *l = arg;
    listen_without_every_shard(l);
    layout_check_retry(l->layout);
    shard_set_maintain(l->shards);
    redis_maintain(l->redis);
    cache_aside_maintain(l->cache);
}

static void stop(void *arg)
{
    struct layer *l = arg;
    cache_aside_free(l->cache);
    redis_free(l->redis);
    single_flight_free(l->flights);
    layout_check_free(l->layout);
    shard_set_free(l->shards);
    free(l->schema_sql);
}

int main(int argc, char **argv)
{
    static const struct server_spec spec = {
        .program = "l4-db-sharding",
        .layer = "4-db-sharding",
        .summary = "key/value API on N PostgreSQL shards, with a Redis cache-aside in front",
        .default_port = 8004,
        CONFIG_SETS(layer_sets),
        .metric_modules = METRIC_MODULE_PG | METRIC_MODULE_POOL | METRIC_MODULE_REDIS |
                          METRIC_MODULE_CACHE | METRIC_MODULE_SHARD,
        .start = start,
        .maintain = maintain,
        .stop = stop,
        .openapi_json = layer_openapi_json,
    };
    return server_main(argc, argv, &spec, &layer);
}
